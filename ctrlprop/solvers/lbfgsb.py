"""L-BFGS-B for small problems with little overhead: the limited-memory matrix formed densely.

:func:`lbfgsb` minimizes one function ``f(x)`` of n variables within box bounds by the
L-BFGS-B framework of Byrd, Lu, Nocedal & Zhu (1995) -- a generalized Cauchy point, a
subspace minimization on the variables it leaves free, a line search for the strong Wolfe
conditions -- as ``scipy.optimize.minimize(method="L-BFGS-B")`` does, with scipy's options
(``maxcor``, ``gtol``, ``ftol``, ``maxls``) and stopping rules.  What differs is the cost
around the evaluations: scipy converts the bounds with Python loops over the variables on
every call (about 0.3 ms for 30 bounded variables) and works through its own wrapper on
every evaluation, which is most of a small receding-horizon step.  Here the n x n L-BFGS
matrix is formed explicitly (O(n^2) memory, O(m n^2) per iteration: meant for n up to a
few hundred, the controls of an MPC horizon), and one call, :func:`search_direction`,
computes an iteration's direction: on numpy, or compiled by numba with the extra
``ctrlprop[fast]`` (:mod:`ctrlprop.solvers.lbfgsb_kernels`, the same steps in loops).

Notation: x, g, lo, hi are [n]; the m newest pairs s_j = x_{j+1} - x_j, y_j = g_{j+1} - g_j
(oldest first) with theta = y.y / s.y of the newest pair.

    B = theta I, then for each stored pair (oldest first) the BFGS update
        B <- B - (B s)(B s)^T / (s^T B s) + y y^T / (y^T s)
    (the matrix of the compact representation, positive definite: a pair is stored only
    when s.y > eps y.y).

    Generalized Cauchy point: the first local minimizer of the quadratic model
        q(z) = g.z + 1/2 z^T B z,  z = x(t) - x,  x(t) = P(x - t g)
    along the projected steepest-descent path, walking its breakpoints t_i (where x_i
    reaches a bound) in order; on each segment the direction d is -g without the variables
    already at a bound, q'(t) = g.d + d^T B z, q''(t) = d^T B d.

    Subspace minimization: with the variables F strictly inside the bounds at the Cauchy
    point x_c, du = -(B_FF)^-1 r_F, r = g + B (x_c - x); the candidate P(x_c + du) if it
    is a descent direction from x (Morales & Nocedal 2011), else x_c + a du with the
    largest a <= 1 that stays feasible.

    Line search along d = x_bar - x: the strong Wolfe conditions with scipy's constants
        f(x + a d) <= f(x) + 1e-3 a g.d,   |g(x + a d).d| <= 0.9 |g.d|
    (bracketing, then cubic interpolation; a bracket narrower than 0.1 times its larger
    end keeps its best point of sufficient decrease), a <= the largest feasible step; the first
    iteration starts from a = 1 when every variable has both bounds, else 1 / |d|.  A
    failed search restarts from an empty memory; failing with an empty memory stops.

Stopping (scipy's): ``max_i |P(x - g)_i - x_i| <= gtol``, or an iteration that lowers f by
at most ``ftol max(|f|, |f_new|, 1)``, or ``maxiter`` iterations.
"""

import math

import numpy as np
from scipy.optimize import OptimizeResult

from ..core import compiled
from ..core.checks import check_int, check_nonneg, check_within

__all__ = ["lbfgsb", "search_direction", "LBFGSB_OPTIONS"]

_KERNELS = __package__ + ".lbfgsb_kernels"    # search_direction compiled (numba)

# the options an entry point passes through (scipy's names for L-BFGS-B)
LBFGSB_OPTIONS = ("maxcor", "gtol", "ftol", "maxls")

CONVERGED, MAXITER, LINESEARCH, CALLBACK = 0, 1, 2, 3
C1, C2 = 1e-3, 0.9          # sufficient decrease and curvature constants (scipy's dcsrch)
XTOL = 0.1                  # a bracket narrower than XTOL times its larger end ends the search
BIG = 1e10                  # step bound without bounds along the direction (scipy's)
EPS = float(np.finfo(float).eps)


def search_direction(x, g, lo, hi, S, Y, k, theta, gtol, B, xc, d):
    """One iteration's search direction: the Cauchy point and the subspace step.

    Returns ``(pg, gd, amax)``: the projected gradient's inf-norm at x and, when it is
    above ``gtol`` (else both 0), the slope ``g.d`` along the direction written into d
    (n,) and the largest step ``a`` with ``x + a d`` within the bounds (inf if none).
    Works in B (n, n) (the L-BFGS matrix of the k oldest-first pairs in S, Y (m, n)) and
    xc (n,) (the generalized Cauchy point); see the module notes.  This is the numpy
    reference; with ``ctrlprop[fast]`` its compiled mirror
    (:func:`ctrlprop.solvers.lbfgsb_kernels.search_direction`) runs instead.
    """
    n = x.shape[0]
    pg = np.abs(np.minimum(np.maximum(x - g, lo), hi) - x).max() if n else 0.0
    if pg <= gtol:
        return pg, 0.0, 0.0
    # the L-BFGS matrix: theta I and the k BFGS updates, oldest first
    B[:, :] = 0.0
    for i in range(n):
        B[i, i] = theta
    for j in range(k):
        s, y = S[j], Y[j]
        Bs = B @ s
        B -= np.outer(Bs, Bs / (s @ Bs))
        B += np.outer(y, y / (y @ s))
    # breakpoints of the path P(x - t g); variables at t = 0 do not move
    t = np.full(n, np.inf)
    neg, pos = g < 0.0, g > 0.0
    t[neg] = (x[neg] - hi[neg]) / g[neg]
    t[pos] = (x[pos] - lo[pos]) / g[pos]
    p = -g                              # the path's direction
    p[t <= 0.0] = 0.0
    xc[:] = x
    Bd = B @ p
    Bz = np.zeros(n)
    fp = -(p @ p)
    fpp = p @ Bd
    dtmin = -fp / fpp if fpp > 0.0 else 0.0
    told = 0.0
    order = np.argsort(t, kind="mergesort")          # ties in index order
    for idx in range(n):
        b = order[idx]
        tb = t[b]
        if tb <= 0.0:
            continue
        if tb == np.inf or dtmin < tb - told:
            break
        # the segment's minimizer is beyond its end: x_b reaches its bound
        Bz += (tb - told) * Bd
        xc[b] = hi[b] if p[b] > 0.0 else lo[b]
        Bd -= p[b] * B[b]               # B is symmetric: row b is column b
        p[b] = 0.0
        told = tb
        fp = g @ p + p @ Bz
        fpp = p @ Bd
        if fp >= 0.0:
            dtmin = 0.0
            break
        dtmin = -fp / fpp if fpp > 0.0 else 0.0
    moving = p != 0.0
    xc[moving] = np.minimum(np.maximum(x[moving] + (told + dtmin) * p[moving], lo[moving]),
                            hi[moving])
    # subspace minimization over the variables strictly inside their bounds at xc; the
    # direction d = x_bar - x
    d[:] = xc - x
    F = np.nonzero((xc > lo) & (xc < hi))[0]
    if F.size:
        r = g + B @ d
        du = -np.linalg.solve(B[F][:, F], r[F])
        xF = xc[F]
        d[F] = np.minimum(np.maximum(xF + du, lo[F]), hi[F]) - x[F]
        if g @ d >= 0.0:                # not a descent direction: the largest feasible
            a = 1.0                     # fraction of the subspace step instead
            up, down = du > 0.0, du < 0.0
            if up.any():
                a = min(a, ((hi[F][up] - xF[up]) / du[up]).min())
            if down.any():
                a = min(a, ((lo[F][down] - xF[down]) / du[down]).min())
            d[F] = xF + a * du - x[F]
    # the largest feasible step along d
    amax = np.inf
    up, down = d > 0.0, d < 0.0
    if up.any():
        amax = min(amax, ((hi[up] - x[up]) / d[up]).min())
    if down.any():
        amax = min(amax, ((lo[down] - x[down]) / d[down]).min())
    return pg, g @ d, amax


def _cubic_min(a1, f1, d1, a2, f2, d2):
    """Minimizer of the cubic through (a1, f1, f'=d1) and (a2, f2, f'=d2), or the midpoint
    when it has none."""
    e1 = d1 + d2 - 3.0 * (f1 - f2) / (a1 - a2)
    disc = e1 * e1 - d1 * d2
    if not (disc >= 0.0 and math.isfinite(disc)):
        return 0.5 * (a1 + a2)
    e2 = math.copysign(math.sqrt(disc), a2 - a1)
    den = d2 - d1 + 2.0 * e2
    if den == 0.0 or not math.isfinite(den):
        return 0.5 * (a1 + a2)
    return a2 - (a2 - a1) * (d2 + e2 - e1) / den


def _zoom_trial(lo, hi):
    """The next trial step between the bracket's ends lo (the lower value, its slope
    pointing into the bracket) and hi, as Moré & Thuente's step for a higher value at hi:
    the cubic's minimizer if it is nearer lo than the quadratic's (through f_lo, f'_lo,
    f_hi), else halfway between the two; the midpoint if that falls outside."""
    a1, f1, d1, a2, f2 = lo[0], lo[1], lo[2], hi[0], hi[1]
    c = _cubic_min(a1, f1, d1, a2, f2, hi[2])
    den = 2.0 * (f1 - f2 + d1 * (a2 - a1))
    q = a1 + d1 * (a2 - a1) ** 2 / den if den != 0.0 else c
    a = c if abs(c - a1) < abs(q - a1) else c + 0.5 * (q - c)
    if not (min(a1, a2) < a < max(a1, a2)):
        a = 0.5 * (a1 + a2)
    return a


def _line_search(phi, f0, d0, a, amax, maxls):
    """Strong Wolfe search on phi(a) -> (f, slope, x, g): (a, f, x, g) or None after maxls
    trials without a point of sufficient decrease (Nocedal & Wright, Alg. 3.5 and 3.6)."""
    prev = (0.0, f0, d0, None, None)
    best = None                         # the best trial with sufficient decrease
    lo = hi = None
    for trial in range(maxls):
        if lo is not None:              # zoom: a trial inside the bracket [lo, hi]
            if abs(hi[0] - lo[0]) <= XTOL * max(lo[0], hi[0]):
                break                   # the bracket is narrow: keep the best trial
            a = _zoom_trial(lo, hi)
        fa, da, xa, ga = phi(a)
        cur = (a, fa, da, xa, ga)
        armijo = math.isfinite(fa) and math.isfinite(da) and fa <= f0 + C1 * a * d0
        if armijo and (best is None or fa < best[1]):
            best = cur
        if lo is None:                  # bracketing phase
            if not armijo or (trial > 0 and fa >= prev[1]):
                lo, hi = prev, cur
            elif abs(da) <= -C2 * d0:
                return a, fa, xa, ga
            elif da >= 0.0:
                lo, hi = cur, prev
            elif a >= amax:
                return a, fa, xa, ga    # the feasible limit, still descending
            else:
                prev = cur
                a = min(4.0 * a, amax)
            continue
        if not armijo or fa >= lo[1]:
            hi = cur
        else:
            if abs(da) <= -C2 * d0:
                return a, fa, xa, ga
            if da * (hi[0] - lo[0]) >= 0.0:
                hi = lo
            lo = cur
    if best is not None and best[3] is not None:
        return best[0], best[1], best[3], best[4]
    return None


def _checked_call(fun, x, n):
    out = fun(x)
    try:
        f, g = out
    except (TypeError, ValueError):
        raise TypeError("fun must return a pair (value, gradient (n,))") from None
    g = np.array(g, dtype=np.float64)        # a copy: fun may reuse its gradient's buffer
    if g.shape != (n,):
        raise ValueError(f"fun must return a gradient of shape ({n},), got {g.shape}")
    return float(f), g


def lbfgsb(fun, x0, lo=None, hi=None, *, maxiter=15000, maxcor=10, gtol=1e-5,
           ftol=2.220446049250313e-09, maxls=20, callback=None):
    """Minimize ``fun`` within box bounds by L-BFGS-B with a dense limited-memory matrix.

    Parameters
    ----------
    fun : callable
        ``fun(x) -> (f, grad)`` with x (n,), f a float, grad (n,).  Its points always lie
        within the bounds.
    x0 : array_like, shape (n,)
        Start; it must lie within the bounds (it is not clipped).
    lo, hi : array_like, scalar or (n,), optional
        Box bounds (None or -inf/+inf for no bound).
    maxiter : int
        Iteration limit.
    maxcor : int
        Correction pairs kept (the limited memory m).
    gtol : float
        Converged when the inf-norm of the projected gradient ``P(x - g) - x`` is <= gtol
        ...
    ftol : float
        ... or when an iteration lowers f by at most ``ftol * max(|f|, |f_new|, 1)``.
    maxls : int
        Evaluations per line search at most.
    callback : callable, optional
        ``callback(intermediate_result)`` after every iteration, with an OptimizeResult
        of ``x`` and ``fun``; raising StopIteration stops the run (as in scipy).

    Returns
    -------
    OptimizeResult
        ``x`` (n,), ``fun``, ``jac`` (n,), ``nit``, ``nfev``, ``status`` (0 converged,
        1 maxiter, 2 line search failed, 3 stopped by the callback), ``success``,
        ``message``.
    """
    if not callable(fun):
        raise TypeError(f"fun must be callable, got {type(fun).__name__}")
    x = np.array(x0, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"x0 must have shape (n,), got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("x0 contains NaN or inf")
    n = x.size
    maxiter, M = check_int(maxiter, "maxiter", 0), check_int(maxcor, "maxcor", 1)
    maxls = check_int(maxls, "maxls", 1)
    gtol, ftol = check_nonneg(gtol, "gtol"), check_nonneg(ftol, "ftol")
    bl = [np.full(n, v, dtype=np.float64) if np.ndim(v) == 0 else
          np.array(v, dtype=np.float64) for v in (-np.inf if lo is None else lo,
                                                  np.inf if hi is None else hi)]
    for name, b in zip(("lo", "hi"), bl):
        if b.shape != (n,):
            raise ValueError(f"{name} must be a scalar or of shape ({n},), got {b.shape}")
        if np.isnan(b).any():
            raise ValueError(f"{name} contains NaN")
    lo, hi = bl
    if (lo > hi).any():
        raise ValueError(f"lo must be <= hi; lo > hi at index {int(np.argmax(lo > hi))}")
    check_within(x, lo, hi, "x0")
    kern = compiled.extension(_KERNELS)
    direction = search_direction if kern is None else kern.search_direction
    boxed = bool(np.isfinite(lo).all() and np.isfinite(hi).all())
    bounded = bool(np.isfinite(lo).any() or np.isfinite(hi).any())

    f, g = _checked_call(fun, x, n)
    nfev = 1
    S, Y = np.zeros((M, n)), np.zeros((M, n))
    k, theta, nit = 0, 1.0, 0
    B, xc, d = np.empty((n, n)), np.empty(n), np.empty(n)

    calls = [0]

    def phi(a):
        calls[0] += 1
        xt = np.multiply(d, a)              # x + a d, within the bounds up to rounding
        xt += x
        np.maximum(xt, lo, out=xt)
        np.minimum(xt, hi, out=xt)
        ft, gt = _checked_call(fun, xt, n)
        return ft, float(gt @ d), xt, gt

    status, msg = None, ""
    while status is None:
        pg, gd, amax = direction(x, g, lo, hi, S, Y, k, theta, gtol, B, xc, d)
        if pg <= gtol:
            status, msg = CONVERGED, "the projected gradient's inf-norm is <= gtol"
            break
        if nit >= maxiter:
            status, msg = MAXITER, "reached maxiter"
            break
        found = None
        if gd < 0.0:
            amax = min(amax, BIG)
            if nit == 0:
                amax = min(amax, 1.0) if bounded else amax
                a0 = 1.0 if boxed else min(1.0 / math.sqrt(float(d @ d)), amax)
            else:
                a0 = min(1.0, amax)
            found = _line_search(phi, f, gd, a0, amax, maxls)
            nfev += calls[0]
            calls[0] = 0
        if found is None:               # no descent or no acceptable step
            if k == 0:
                status, msg = LINESEARCH, "the line search found no lower point"
                break
            k, theta = 0, 1.0           # restart from an empty memory
            continue
        _, fn, xn, gn = found
        small = f - fn <= ftol * max(abs(f), abs(fn), 1.0)
        s, y = xn - x, gn - g
        sy, yy = float(s @ y), float(y @ y)
        if sy > EPS * yy:
            if k == M:
                S[:-1], Y[:-1] = S[1:].copy(), Y[1:].copy()
                k -= 1
            S[k], Y[k] = s, y
            k += 1
            theta = yy / sy
        x, f, g = xn, fn, gn
        nit += 1
        if callback is not None:
            try:
                callback(OptimizeResult(x=x.copy(), fun=f))
            except StopIteration:
                status, msg = CALLBACK, "stopped by the callback"
                break
        if small:
            status, msg = CONVERGED, "the relative reduction of f is <= ftol"
    return OptimizeResult(x=x, fun=f, jac=g, nit=nit, nfev=nfev, njev=nfev, status=status,
                          success=status == CONVERGED, message=msg)
