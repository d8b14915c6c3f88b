"""numba kernel of :func:`ctrlprop.solvers.lbfgsb.lbfgsb` (loaded through
:func:`ctrlprop.core.compiled.extension`, only when the extra ``ctrlprop[fast]`` is
installed and the compiled path is on).

:func:`search_direction` computes what :func:`ctrlprop.solvers.lbfgsb.search_direction`
computes -- the L-BFGS matrix by the same BFGS updates, the Cauchy point by the same walk
over the breakpoints (in the same order: a stable sort), the subspace step and its
projection -- in loops over preallocated arrays, without the numpy calls (and, on
numba's side, the allocations and LAPACK dispatches) that made the numpy source cost
about 20 us per iteration for 30 variables even when compiled.  The subspace system is
solved by Cholesky (B_FF is positive definite), where numpy's reference uses LU.  The
numpy function stays the reference: ``test_lbfgsb`` runs on both paths and compares the
two directly.
"""

import numba
import numpy as np

_jit = numba.njit(cache=True, nogil=True, error_model="numpy")


@_jit
def _lbfgs_matrix(S, Y, k, theta, B, Bs):
    """B = theta I and the k BFGS updates of the oldest-first pairs S[:k], Y[:k]."""
    n = B.shape[0]
    for i in range(n):
        for j in range(n):
            B[i, j] = 0.0
        B[i, i] = theta
    for p in range(k):
        s, y = S[p], Y[p]
        for i in range(n):
            a = 0.0
            for j in range(n):
                a += B[i, j] * s[j]
            Bs[i] = a
        sBs = 0.0
        ys = 0.0
        for i in range(n):
            sBs += s[i] * Bs[i]
            ys += y[i] * s[i]
        for i in range(n):
            bi = Bs[i] / sBs
            yi = y[i] / ys
            for j in range(n):
                B[i, j] += y[j] * yi - Bs[j] * bi


@_jit
def _dot(a, b):
    s = 0.0
    for i in range(a.shape[0]):
        s += a[i] * b[i]
    return s


@_jit
def search_direction(x, g, lo, hi, S, Y, k, theta, gtol, B, xc, d):
    """:func:`ctrlprop.solvers.lbfgsb.search_direction`, compiled: the same arguments,
    results and work arrays."""
    n = x.shape[0]
    pg = 0.0
    for i in range(n):
        pg = max(pg, abs(min(max(x[i] - g[i], lo[i]), hi[i]) - x[i]))
    if pg <= gtol:
        return pg, 0.0, 0.0
    Bs = np.empty(n)
    _lbfgs_matrix(S, Y, k, theta, B, Bs)
    # breakpoints and the path's direction p
    t = np.empty(n)
    p = np.empty(n)
    for i in range(n):
        if g[i] < 0.0:
            t[i] = (x[i] - hi[i]) / g[i]
        elif g[i] > 0.0:
            t[i] = (x[i] - lo[i]) / g[i]
        else:
            t[i] = np.inf
        p[i] = 0.0 if t[i] <= 0.0 else -g[i]
        xc[i] = x[i]
    Bd = Bs                                   # reused: B p
    Bz = np.zeros(n)
    fp = 0.0
    fpp = 0.0
    for i in range(n):
        a = 0.0
        for j in range(n):
            a += B[i, j] * p[j]
        Bd[i] = a
        fp -= p[i] * p[i]
    fpp = _dot(p, Bd)
    dtmin = -fp / fpp if fpp > 0.0 else 0.0
    told = 0.0
    order = np.argsort(t, kind="mergesort")
    for idx in range(n):
        b = order[idx]
        tb = t[b]
        if tb <= 0.0:
            continue
        if tb == np.inf or dtmin < tb - told:
            break
        dt = tb - told
        xc[b] = hi[b] if p[b] > 0.0 else lo[b]
        pb = p[b]
        p[b] = 0.0
        fp = 0.0
        fpp = 0.0
        for i in range(n):
            Bz[i] += dt * Bd[i]
            Bd[i] -= pb * B[b, i]
            fp += g[i] * p[i] + p[i] * Bz[i]
            fpp += p[i] * Bd[i]
        told = tb
        if fp >= 0.0:
            dtmin = 0.0
            break
        dtmin = -fp / fpp if fpp > 0.0 else 0.0
    tc = told + dtmin
    for i in range(n):
        if p[i] != 0.0:
            xc[i] = min(max(x[i] + tc * p[i], lo[i]), hi[i])
    # subspace step on F = {lo < xc < hi}: (B_FF) du = -r_F, r = g + B (xc - x)
    nf = 0
    F = np.empty(n, dtype=np.int64)
    for i in range(n):
        d[i] = xc[i] - x[i]
        if lo[i] < xc[i] < hi[i]:
            F[nf] = i
            nf += 1
    if nf:
        L = np.empty((nf, nf))
        du = np.empty(nf)
        for a in range(nf):
            i = F[a]
            r = g[i]
            for j in range(n):
                r += B[i, j] * d[j]
            du[a] = -r
            for c in range(a + 1):
                L[a, c] = B[i, F[c]]
        for a in range(nf):                   # Cholesky, lower triangle in place
            for c in range(a):
                v = L[a, c]
                for e in range(c):
                    v -= L[a, e] * L[c, e]
                L[a, c] = v / L[c, c]
            v = L[a, a]
            for e in range(a):
                v -= L[a, e] * L[a, e]
            L[a, a] = np.sqrt(v)
        for a in range(nf):                   # forward and back substitution
            v = du[a]
            for e in range(a):
                v -= L[a, e] * du[e]
            du[a] = v / L[a, a]
        for a in range(nf - 1, -1, -1):
            v = du[a]
            for e in range(a + 1, nf):
                v -= L[e, a] * du[e]
            du[a] = v / L[a, a]
        gd = 0.0
        for a in range(nf):
            i = F[a]
            d[i] = min(max(xc[i] + du[a], lo[i]), hi[i]) - x[i]
        for i in range(n):
            gd += g[i] * d[i]
        if gd >= 0.0:                         # the largest feasible fraction instead
            s = 1.0
            for a in range(nf):
                i = F[a]
                if du[a] > 0.0:
                    s = min(s, (hi[i] - xc[i]) / du[a])
                elif du[a] < 0.0:
                    s = min(s, (lo[i] - xc[i]) / du[a])
            for a in range(nf):
                i = F[a]
                d[i] = xc[i] + s * du[a] - x[i]
    amax = np.inf
    gd = 0.0
    for i in range(n):
        gd += g[i] * d[i]
        if d[i] > 0.0:
            amax = min(amax, (hi[i] - x[i]) / d[i])
        elif d[i] < 0.0:
            amax = min(amax, (lo[i] - x[i]) / d[i])
    return pg, gd, amax
