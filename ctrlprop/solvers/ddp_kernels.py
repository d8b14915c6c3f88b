"""numba kernels of the iLQR solver (loaded by :mod:`ctrlprop.solvers.ddp` through
:func:`ctrlprop.core.compiled.extension`, only when the extra ``ctrlprop[fast]`` is
installed and the compiled path is on).

The backward pass of iLQR is a recursion over the T steps of small matrices (n x n, m x m):
on numpy it costs about 25 calls of 1-5 us per step whatever n and m are, which is the
whole per-iteration cost of iLQR on a small plant.  :func:`backward` runs the same
recursion -- the block comment of :mod:`ctrlprop.solvers.ddp`, iLQR's form or DDP's with
the second derivatives given as an array, with the box QP of control-limited DDP -- as one
compiled call over the batch, and :func:`box_qp` runs the projected-Newton QP of
:func:`ctrlprop.solvers.ddp.box_qp` on one problem.  The numpy functions stay the
reference: every test of ``test_ddp`` runs on both paths, and the two agree to rounding
(1e-12 relative).  The positive-definiteness test and the solves are LAPACK's
(``eigvalsh``, ``solve``), as on numpy.
"""

import numba
import numpy as np

_FLAGS = dict(cache=True, nogil=True, error_model="numpy")
_jit = numba.njit(**_FLAGS)
_inline = numba.njit(inline="always", **_FLAGS)


@_inline
def _product(X, Y, Z):
    """Z = X Y for small matrices, summed in index order (as the loops it replaced)."""
    for i in range(X.shape[0]):
        for j in range(Y.shape[1]):
            s = 0.0
            for a in range(X.shape[1]):
                s += X[i, a] * Y[a, j]
            Z[i, j] = s


@_inline
def _symmetrize(M):
    """M = (M + M^T) / 2 in place."""
    for i in range(M.shape[0]):
        for j in range(i, M.shape[0]):
            s = 0.5 * (M[i, j] + M[j, i])
            M[i, j] = s
            M[j, i] = s


@_inline
def _plus_tproduct(C, X, Y, Z):
    """Z = C + X^T Y for small matrices, summed in index order after C."""
    for i in range(X.shape[1]):
        for j in range(Y.shape[1]):
            s = C[i, j]
            for a in range(X.shape[0]):
                s += X[a, i] * Y[a, j]
            Z[i, j] = s


@_jit
def _pd_solve(H, rhs, X):
    """X = H^-1 rhs for a symmetric H (m, m), rhs (m, c); False (and X = 0) where H is not
    finite or not positive definite: its smallest eigenvalue <= 1e-13 max |H_ij|."""
    m, c = rhs.shape
    finite = True
    scale = 0.0
    for i in range(m):
        for j in range(m):
            if not np.isfinite(H[i, j]):
                finite = False
            scale = max(scale, abs(H[i, j]))
        for j in range(c):
            if not np.isfinite(rhs[i, j]):
                finite = False
    X[:] = 0.0
    if not finite:
        return False
    lam = np.linalg.eigvalsh(H)
    if not lam[0] > 1e-13 * max(scale, 2.2250738585072014e-308):
        return False
    X[:] = np.linalg.solve(H, rhs)
    return True


@_jit
def _qp_value(H, g, y):
    m = g.shape[0]
    a = 0.0
    for i in range(m):
        a += y[i] * g[i]
    b = 0.0
    for i in range(m):
        s = 0.0
        for j in range(m):
            s += H[i, j] * y[j]
        b += y[i] * s
    return a + 0.5 * b


@_jit
def box_qp(H, g, lower, upper, x0, maxiter, x, free):
    """One box QP ``min 1/2 x^T H x + g^T x, lower <= x <= upper`` by projected Newton,
    from x0 projected; writes x (m,) and free (m,) (bool) and returns ok.  The algorithm
    and its stopping rules are :func:`ctrlprop.solvers.ddp.box_qp`'s."""
    m = g.shape[0]
    for i in range(m):
        x[i] = min(max(x0[i], lower[i]), upper[i])
        free[i] = True
    gscale = 0.0
    for i in range(m):
        gscale = max(gscale, abs(g[i]))
    gscale += 1.0
    ok = True
    val = _qp_value(H, g, x)
    q = np.empty(m)
    Hm = np.empty((m, m))
    rhs = np.empty((m, 1))
    sol = np.empty((m, 1))
    search = np.empty(m)
    cand = np.empty(m)
    xn = np.empty(m)
    for _ in range(maxiter):
        for i in range(m):
            s = g[i]
            for j in range(m):
                s += H[i, j] * x[j]
            q[i] = s
        nfree = 0
        gmax = 0.0
        for i in range(m):
            free[i] = not ((x[i] <= lower[i] and q[i] > 0) or (x[i] >= upper[i] and q[i] < 0))
            if free[i]:
                nfree += 1
                gmax = max(gmax, abs(q[i]))
        if nfree == 0 or gmax <= 1e-13 * gscale:
            break
        for i in range(m):
            s = g[i]
            for j in range(m):
                Hm[i, j] = H[i, j] if (free[i] and free[j]) else (1.0 if i == j else 0.0)
                if not free[j]:
                    s += H[i, j] * x[j]
            rhs[i, 0] = s if free[i] else 0.0
        if not _pd_solve(Hm, rhs, sol):
            ok = False
            break
        sdotg = 0.0
        for i in range(m):
            search[i] = -sol[i, 0] - x[i] if free[i] else 0.0
            sdotg += search[i] * q[i]
        if not sdotg < 0:
            break
        step = 1.0
        found = False
        while True:
            for i in range(m):
                cand[i] = min(max(x[i] + step * search[i], lower[i]), upper[i])
            vc = _qp_value(H, g, cand)
            if vc - val <= 0.1 * step * sdotg:
                xn[:] = cand
                vn = vc
                found = True
                break
            step *= 0.6
            if step < 1e-20:
                break
        if not found or not vn < val:
            break
        x[:] = xn
        val = vn
    for i in range(m):
        s = g[i]
        for j in range(m):
            s += H[i, j] * x[j]
        free[i] = not ((x[i] <= lower[i] and s > 0) or (x[i] >= upper[i] and s < 0))
    return ok


@_jit
def backward(fx, fu, lx, lu, lxx, luu, lux, U, lo, hi, bounded, mu, k_prev, qp_maxiter,
             F2, second, k, K, dV1, dV2, ok):
    """The iLQR backward pass of every trajectory (shapes as ``ddp._backward``'s), or
    DDP's when ``second``, with the dynamics' second derivatives F2 (B, T, n, n+m, n+m)
    contracted with V_x; writes k (B, T, m), K (B, T, m, n), dV1, dV2 (B,) and ok (B,)."""
    B, T, n, m = fu.shape
    Vx = np.empty(n)
    Vxx = np.empty((n, n))
    VA = np.empty((n, n))
    VB = np.empty((n, m))
    Qx = np.empty(n)
    Qu = np.empty(m)
    Qxx = np.empty((n, n))
    Quu = np.empty((m, m))
    Qux = np.empty((m, n))
    Qr = np.empty((m, m))
    Rhs = np.empty((m, n + 1))
    Sol = np.empty((m, n + 1))
    Hm = np.empty((m, m))
    RK = np.empty((m, n))
    SK = np.empty((m, n))
    kt = np.empty(m)
    lob = np.empty(m)
    hib = np.empty(m)
    free = np.empty(m, np.bool_)
    Quk = np.empty(m)
    W = np.empty((m, n))
    for b in range(B):
        Vx[:] = lx[b, T]
        Vxx[:, :] = lxx[b, T]
        d1 = 0.0
        d2 = 0.0
        okb = True
        for t in range(T - 1, -1, -1):
            A = fx[b, t]
            Bm = fu[b, t]
            for j in range(n):
                s = lx[b, t, j]
                for i in range(n):
                    s += A[i, j] * Vx[i]
                Qx[j] = s
            for j in range(m):
                s = lu[b, t, j]
                for i in range(n):
                    s += Bm[i, j] * Vx[i]
                Qu[j] = s
            _product(Vxx, A, VA)
            _product(Vxx, Bm, VB)
            _plus_tproduct(lxx[b, t], A, VA, Qxx)          # Q_xx = l_xx + A^T V_xx A
            _plus_tproduct(luu[b, t], Bm, VB, Quu)         # Q_uu = l_uu + B^T V_xx B
            _plus_tproduct(lux[b, t], Bm, VA, Qux)         # Q_ux = l_ux + B^T V_xx A
            if second:                  # + V_x . F_xx, V_x . F_ux, V_x . F_uu
                F = F2[b, t]
                for a in range(n):
                    v = Vx[a]
                    for i in range(n):
                        for j in range(n):
                            Qxx[i, j] += v * F[a, i, j]
                    for i in range(m):
                        for j in range(n):
                            Qux[i, j] += v * F[a, n + i, j]
                        for j in range(m):
                            Quu[i, j] += v * F[a, n + i, n + j]
            _symmetrize(Quu)
            for i in range(m):
                for j in range(m):
                    Qr[i, j] = Quu[i, j] + (mu[b] if i == j else 0.0)
            if bounded:
                for i in range(m):
                    lob[i] = lo[b, t, i] - U[b, t, i]
                    hib[i] = hi[b, t, i] - U[b, t, i]
                okt = box_qp(Qr, Qu, lob, hib, k_prev[b, t], qp_maxiter, kt, free)
                for i in range(m):
                    for j in range(m):
                        Hm[i, j] = Qr[i, j] if (free[i] and free[j]) else \
                            (1.0 if i == j else 0.0)
                    for j in range(n):
                        RK[i, j] = Qux[i, j] if free[i] else 0.0
                pd = _pd_solve(Hm, RK, SK)
                okt = okt and pd
                for i in range(m):
                    for j in range(n):
                        W[i, j] = -SK[i, j]
            else:
                for i in range(m):
                    Rhs[i, 0] = Qu[i]
                    for j in range(n):
                        Rhs[i, j + 1] = Qux[i, j]
                okt = _pd_solve(Qr, Rhs, Sol)
                for i in range(m):
                    kt[i] = -Sol[i, 0]
                    for j in range(n):
                        W[i, j] = -Sol[i, j + 1]
            for i in range(m):
                if not np.isfinite(kt[i]):
                    okt = False
                for j in range(n):
                    if not np.isfinite(W[i, j]):
                        okt = False
            if not okt:
                okb = False
                kt[:] = 0.0
                W[:, :] = 0.0
            k[b, t] = kt
            K[b, t] = W
            # V_x = Q_x + K^T (Q_uu k + Q_u) + Q_ux^T k
            for i in range(m):
                s = 0.0
                for j in range(m):
                    s += Quu[i, j] * kt[j]
                Quk[i] = s
            for j in range(n):
                s = Qx[j]
                for i in range(m):
                    s += W[i, j] * (Quk[i] + Qu[i]) + Qux[i, j] * kt[i]
                Vx[j] = s
            # V_xx = Q_xx + K^T Q_uu K + K^T Q_ux + Q_ux^T K, symmetrized
            _product(Quu, W, RK)
            for i in range(n):
                for j in range(n):
                    s = Qxx[i, j]
                    for a in range(m):
                        s += W[a, i] * RK[a, j] + W[a, i] * Qux[a, j] + Qux[a, i] * W[a, j]
                    Vxx[i, j] = s
            _symmetrize(Vxx)
            for i in range(m):
                d1 += kt[i] * Qu[i]
                d2 += 0.5 * kt[i] * Quk[i]
        dV1[b] = d1
        dV2[b] = d2
        ok[b] = okb
