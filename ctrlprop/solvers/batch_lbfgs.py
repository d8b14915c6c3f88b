"""Batched projected L-BFGS: B independent bound-constrained problems solved at once.

:func:`batch_lbfgs` minimizes B separate functions ``f_b(x_b)`` (x_b of n variables,
box bounds lo_b <= x_b <= hi_b) that are evaluated together by one vectorized call
``fun(X) -> (values (B,), grads (B, n))``.  Unlike handing the sum ``sum_b f_b`` to one
solver, every problem keeps its own curvature memory, step size, line search and
convergence test, so a hard problem neither slows nor disturbs the easy ones, while
each evaluation still costs one vectorized call for the whole batch.
"""

import numpy as np
from scipy.optimize import Bounds, OptimizeResult

from ..core.checks import check_int, check_nonneg, check_within, parse_bounds

__all__ = ["batch_lbfgs", "BATCH_LBFGS_OPTIONS"]

# the options an entry point passes through to batch_lbfgs (maxcor is its ``m``)
BATCH_LBFGS_OPTIONS = ("maxcor", "gtol", "ftol", "maxls")

RUNNING, CONVERGED, MAXITER, LINESEARCH, CALLBACK = -1, 0, 1, 2, 3
STATUS = {CONVERGED: "converged", MAXITER: "reached maxiter",
          LINESEARCH: "line search failed", CALLBACK: "stopped by the callback"}
C1 = 1e-4               # Armijo sufficient-decrease constant


def _call(fun, X, B, n):
    """Evaluate fun at X and check it returned values (B,) and grads (B, n)."""
    out = fun(X)
    try:
        f, g = out
    except (TypeError, ValueError):
        raise TypeError("fun must return a pair (values (B,), grads (B, n))") from None
    f, g = np.asarray(f, dtype=np.float64), np.asarray(g, dtype=np.float64)
    if f.shape != (B,) or g.shape != (B, n):
        raise ValueError(f"fun must return values of shape ({B},) and grads of shape "
                         f"({B}, {n}); got {f.shape} and {g.shape}")
    return f, g


def _pg_norm(X, G, lo, hi):
    """Inf-norm of the projected gradient P(x - g) - x per problem, (B,)."""
    return np.abs(np.clip(X - G, lo, hi) - X).max(axis=1) if X.shape[1] else np.zeros(len(X))


def _dot(A, C):
    """Row-wise dot products of two (B, n) arrays, (B,)."""
    return np.einsum("bi,bi->b", A, C)


# Direction (two-loop recursion, vectorized over problems).  Problem b stores its last
# pairs s = x_{k+1} - x_k, y = g_{k+1} - g_k newest first in S[b, j], Y[b, j] with
# rho_j = 1 / (y_j . s_j); empty slots have rho = 0, so they drop out of both loops:
#     q = g;  for j = 0..M-1:  a_j = rho_j s_j . q,  q -= a_j y_j
#     r = gamma q   with gamma = s_0 . y_0 / y_0 . y_0   (1 while the memory is empty)
#     for j = M-1..0:  b_j = rho_j y_j . r,  r += (a_j - b_j) s_j
# gives r = H g with H the L-BFGS inverse-Hessian estimate, positive definite because a
# pair is stored only when y . s > eps y . y.
def _two_loop(Q, S, Y, rho, gamma):
    """r = H q for every problem: Q (B, n), S and Y (B, M, n), rho (B, M), gamma (B,)."""
    M = S.shape[1]
    q = Q.copy()
    a = np.empty((len(Q), M))
    for j in range(M):
        a[:, j] = rho[:, j] * _dot(S[:, j], q)
        q -= a[:, j, None] * Y[:, j]
    q *= gamma[:, None]
    for j in range(M - 1, -1, -1):
        q += (a[:, j] - rho[:, j] * _dot(Y[:, j], q))[:, None] * S[:, j]
    return q


def batch_lbfgs(fun, X0, lo=None, hi=None, maxiter=500, m=10, gtol=1e-6, ftol=1e-10,
                maxls=20, callback=None):
    """Minimize B independent bound-constrained problems with one vectorized objective.

    Parameters
    ----------
    fun : callable
        ``fun(X) -> (values, grads)`` with X (B, n), values (B,) and grads (B, n); row b
        of the output must depend on row b of X only.  Problems that are not moving in
        a call (accepted, converged or stopped) are passed at their current point.
    X0 : array_like, shape (B, n)
        Starting points; they must lie within the bounds (they are not clipped).
    lo, hi : array_like, scalar, (n,) or (B, n), optional
        Box bounds (None or -inf/+inf for no bound).
    maxiter : int
        Iteration limit per problem.
    m : int
        Number of correction pairs kept per problem (scipy's ``maxcor``).
    gtol : float
        A problem converges when the inf-norm of its projected gradient ``P(x - g) - x``
        is <= gtol ...
    ftol : float
        ... or when one iteration decreases its value by <= ``ftol * max(|f|, |f_new|, 1)``.
    maxls : int
        Trial points per line search.
    callback : callable, optional
        ``callback(X, values)`` after every iteration; returning True stops the run.

    Returns
    -------
    OptimizeResult
        ``x`` (B, n), ``fun`` (B,), ``jac`` (B, n), ``nit`` (B,) iterations per problem,
        ``converged`` (B,) bool, ``problem_status`` (B,) (0 converged, 1 maxiter,
        2 line search failed, 3 stopped by the callback), ``status`` (the largest),
        ``success`` (all converged), ``message``, ``nfev`` (vectorized calls of fun) and
        ``history`` (sum of the values before the first and after every iteration).
    """
    if not callable(fun):
        raise TypeError(f"fun must be callable, got {type(fun).__name__}")
    X = np.array(X0, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] < 1:
        raise ValueError(f"X0 must have shape (B, n) with B >= 1, got {X.shape}")
    if not np.all(np.isfinite(X)):
        raise ValueError("X0 contains NaN or inf")
    B, n = X.shape
    maxiter, M, maxls = (check_int(maxiter, "maxiter", 1), check_int(m, "m (maxcor)", 1),
                         check_int(maxls, "maxls", 1))
    gtol, ftol = check_nonneg(gtol, "gtol"), check_nonneg(ftol, "ftol")
    lo, hi = parse_bounds(Bounds(-np.inf if lo is None else lo, np.inf if hi is None else hi),
                          n, (B, n), name="bounds")
    check_within(X, lo, hi, "X0")

    f, G = _call(fun, X, B, n)
    nfev = 1
    if not np.all(np.isfinite(f)) or not np.all(np.isfinite(G)):
        b = np.flatnonzero(~(np.isfinite(f) & np.isfinite(G).all(axis=1)))[0]
        raise ValueError(f"fun is not finite at the start of problem {b}")
    S, Y = np.zeros((B, M, n)), np.zeros((B, M, n))
    rho, gamma = np.zeros((B, M)), np.ones(B)
    nstored, nit = np.zeros(B, dtype=int), np.zeros(B, dtype=int)
    status = np.where(_pg_norm(X, G, lo, hi) <= gtol, CONVERGED, RUNNING)
    history = [float(f.sum())]
    Xt = np.empty_like(X)

    while True:
        status[(status == RUNNING) & (nit >= maxiter)] = MAXITER
        act = status == RUNNING
        if not act.any():
            break
        # Active set: a variable at a bound whose gradient points out of the box is held
        # (zero direction); the direction on the free set F is d_F = -(H g_F)_F, a descent
        # direction since g . d = -g_F' H g_F < 0 for H positive definite.
        free = ~(((X <= lo) & (G > 0)) | ((X >= hi) & (G < 0)))
        D = _two_loop(G * free, S, Y, rho, gamma)
        D *= np.where(free, -1.0, 0.0)
        gd = _dot(G, D)
        # First step 1 (the quasi-Newton step); with an empty memory |d|_2 <= 1, as scipy.
        dn = np.sqrt(_dot(D, D))
        alpha = np.where(nstored > 0, 1.0, 1.0 / np.maximum(dn, 1.0))
        # Projected backtracking line search, per problem, on the path x(a) = P(x + a d):
        #     accept a when  f(x(a)) <= f(x) + c1 g . (x(a) - x)  and  g . (x(a) - x) < 0
        # (for small a the projection only drops components that would leave the box
        # uphill, so the path descends and the test is met).  Otherwise the next a is the
        # minimizer of the quadratic through f(x), slope g . d and f(x + a d), kept in
        # [0.1 a, 0.5 a].  Every trial is one call of fun with the others held at x.
        pend = act.copy()
        acc = np.zeros(B, dtype=bool)
        Xn, fn, Gn = X.copy(), f.copy(), G.copy()
        for _ in range(maxls):
            np.copyto(Xt, X)
            Xt[pend] = np.clip(X[pend] + alpha[pend, None] * D[pend], lo[pend], hi[pend])
            ft, Gt = _call(fun, Xt, B, n)
            nfev += 1
            gs = _dot(G, Xt - X)
            with np.errstate(invalid="ignore"):
                ok = pend & np.isfinite(ft) & np.isfinite(Gt).all(axis=1) & (gs < 0) & \
                    (ft <= f + C1 * gs)
            Xn[ok], fn[ok], Gn[ok] = Xt[ok], ft[ok], Gt[ok]
            acc |= ok
            pend &= ~ok
            if not pend.any():
                break
            with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
                den = 2.0 * (ft - f - gd * alpha)
                aq = np.where(np.isfinite(ft) & (den > 0), -gd * alpha ** 2 / den, 0.1 * alpha)
            alpha = np.where(pend, np.clip(np.nan_to_num(aq), 0.1 * alpha, 0.5 * alpha), alpha)

        # Memory update for accepted steps, when the curvature y . s is positive.
        s, y = Xn - X, Gn - G
        sy, yy = _dot(s, y), _dot(y, y)
        upd = acc & (sy > np.finfo(float).eps * yy)
        if upd.any():
            S[upd, 1:], Y[upd, 1:], rho[upd, 1:] = S[upd, :-1], Y[upd, :-1], rho[upd, :-1]
            S[upd, 0], Y[upd, 0], rho[upd, 0] = s[upd], y[upd], 1.0 / sy[upd]
            gamma[upd] = sy[upd] / yy[upd]
            nstored[upd] = np.minimum(nstored[upd] + 1, M)
        # A failed line search restarts from steepest descent; failing with an empty
        # memory ends that problem.
        fail = act & ~acc
        status[fail & (nstored == 0)] = LINESEARCH
        reset = fail & (nstored > 0)
        S[reset], Y[reset], rho[reset], gamma[reset], nstored[reset] = 0.0, 0.0, 0.0, 1.0, 0
        # Convergence tests on the accepted problems.
        small = (f - fn) <= ftol * np.maximum(np.maximum(np.abs(f), np.abs(fn)), 1.0)
        X[acc], f[acc], G[acc] = Xn[acc], fn[acc], Gn[acc]
        nit[acc] += 1
        status[acc & (small | (_pg_norm(X, G, lo, hi) <= gtol))] = CONVERGED
        history.append(float(f.sum()))
        if callback is not None and callback(X.copy(), f.copy()) is True:
            status[status == RUNNING] = CALLBACK
            break

    conv = status == CONVERGED
    counts = ", ".join(f"{int((status == k).sum())} {v}" for k, v in STATUS.items()
                       if k != CONVERGED and (status == k).any())
    msg = f"{int(conv.sum())} of {B} problems converged" + (f" ({counts})" if counts else "")
    return OptimizeResult(x=X, fun=f, jac=G, nit=nit, converged=conv, problem_status=status,
                          status=int(status.max()), success=bool(conv.all()), message=msg,
                          nfev=nfev, history=np.array(history))
