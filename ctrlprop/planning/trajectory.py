"""Trajectory optimization through a learned model: scipy's solvers on the BPTT objective.

:func:`optimize_trajectory` minimizes the trajectory cost over the control sequence with
any gradient method of ``scipy.optimize.minimize`` (the gradient is one BPTT sweep), or
with ``least_squares`` -- Gauss-Newton / Levenberg-Marquardt on the exact residual form
of the quadratic cost, with the exact (T n x T m) Jacobian of the states by the controls.
A batch of initial states and multi-start from random control sequences run as one
vectorized problem: every trajectory is a column of the same engine buffers, and the
optimizer sees the sum of their (independent) costs -- or, with ``method="batch-lbfgs"``
(:mod:`ctrlprop.batchlbfgs`), every trajectory keeps its own L-BFGS memory, line search and
convergence test while still sharing each vectorized rollout.
"""

import numpy as np
from scipy.optimize import Bounds, OptimizeResult, least_squares, minimize

from ..core.checks import as_float, canonical_method, check_int
from ..core.threads import blas_threads
from ..objectives.cost import as_cost
from ..objectives.trajectory import TrajectoryObjective, check_model, check_horizon
from ..solvers.batch_lbfgs import batch_lbfgs

__all__ = ["optimize_trajectory", "TrajectoryResult"]

MINIMIZE_METHODS = ("L-BFGS-B", "BFGS", "CG", "Newton-CG", "TNC", "SLSQP", "trust-constr")
LSQ_METHODS = ("lm", "trf", "dogbox")
BATCH_METHODS = ("batch-lbfgs",)
BOUNDED = ("L-BFGS-B", "TNC", "SLSQP", "trust-constr", "trf", "dogbox", "batch-lbfgs")
BATCH_OPTIONS = {"maxiter": "maxiter", "maxcor": "m", "m": "m", "gtol": "gtol",
                 "ftol": "ftol", "maxls": "maxls"}


class TrajectoryResult(OptimizeResult):
    """Result of :func:`optimize_trajectory` (an ``OptimizeResult`` with extra fields).

    Attributes
    ----------
    states : ndarray, (T+1, n) or (B, T+1, n)
    controls : ndarray, (T, m) or (B, T, m)
    cost : float or ndarray (B,)
        The trajectory cost J of each returned trajectory.
    fun : float
        The final value of what the solver minimized: J summed over every trajectory
        optimized (all initial states and all starts).
    history : ndarray
        ``fun`` before the first iteration and after each iteration (minimize methods),
        or at every residual evaluation (least-squares methods).
    x : ndarray
        The solver's final variable vector (all trajectories and starts, flattened).
    success, status, message, nit, nfev, njev, method
        As reported by scipy.
    all_states, all_controls, all_costs, best
        With ``restarts``: every start's result, (starts, ...) or (B, starts, ...), and
        the index of the start returned.
    """


def canonical(method):
    """Canonical method name, or an error listing the supported ones."""
    return canonical_method(method, [
        (MINIMIZE_METHODS, "gradient methods of scipy.optimize.minimize"),
        (LSQ_METHODS, "least-squares methods"), (BATCH_METHODS, "the batched solver")])


def check_bounds(bounds, T, m):
    """Bounds as (lo, hi) arrays (T, m), or None; lo <= hi checked."""
    if bounds is None:
        return None
    if isinstance(bounds, Bounds):
        lo, hi = bounds.lb, bounds.ub
    else:
        try:
            lo, hi = bounds
        except (TypeError, ValueError):
            raise TypeError("bounds must be a (low, high) pair or scipy.optimize.Bounds; low "
                            "and high are scalars, (m,) per control or (T, m) per step") from None
    out = []
    for name, v, default in (("low", lo, -np.inf), ("high", hi, np.inf)):
        a = np.full((T, m), default) if v is None else as_float(v, f"bounds {name}")
        if np.any(np.isnan(a)):
            raise ValueError(f"bounds {name} contains NaN")
        if a.shape == (T * m,) and a.shape != (m,):
            a = a.reshape(T, m)
        try:
            a = np.broadcast_to(a, (T, m)).copy()
        except ValueError:
            raise ValueError(f"bounds {name} must be a scalar, ({m},) or ({T}, {m}) for "
                             f"{m} controls and horizon {T}; got shape {a.shape}") from None
        out.append(a)
    lo, hi = out
    bad = np.argwhere(lo > hi)
    if len(bad):
        t, j = bad[0]
        raise ValueError(f"infeasible bounds: low > high for control {j} at step {t} "
                         f"({lo[t, j]} > {hi[t, j]}), {len(bad)} entries in all")
    return lo, hi


def initial_controls(model, u0, T, B, lohi):
    """u0 as (B, T, m): zeros (clipped into the bounds) when None; must lie within bounds."""
    m = model.n_control
    if u0 is None:
        U = np.zeros((B, T, m))
        return U if lohi is None else np.clip(U, lohi[0], lohi[1])
    U, batched = model.check_controls(u0, T, "u0")
    if batched and U.shape[0] != B:
        raise ValueError(f"u0 holds {U.shape[0]} control sequences for {B} initial states")
    U = np.broadcast_to(U, (B, T, m)).copy()
    if lohi is not None:
        bad = np.argwhere((U < lohi[0]) | (U > lohi[1]))
        if len(bad):
            b, t, j = bad[0]
            raise ValueError(f"u0 lies outside the bounds: control {j} at step {t} is "
                             f"{U[b, t, j]} not in [{lohi[0][t, j]}, {lohi[1][t, j]}] "
                             f"({len(bad)} entries in all); u0 is not clipped -- clip it "
                             f"yourself or widen the bounds")
    return U


def _starts(U, R, lohi, init_scale, seed):
    """(B*R, T, m): start 0 of each problem is U, the others random (uniform within finite
    bounds, else U + init_scale * N(0, 1) clipped into the bounds)."""
    if R == 1:
        return U
    rng = np.random.default_rng(seed)
    B, T, m = U.shape
    S = np.repeat(U[:, None], R, axis=1)
    noise = U[:, None] + init_scale * rng.standard_normal((B, R - 1, T, m))
    if lohi is not None:
        lo, hi = lohi
        fin = np.isfinite(lo) & np.isfinite(hi)
        uni = lo + (hi - lo) * rng.random((B, R - 1, T, m))
        noise = np.where(fin, uni, np.clip(noise, lo, hi))
    S[:, 1:] = noise
    return S.reshape(B * R, T, m)


def solve(obj, u, method, lohi=None, options=None, callback=None, shape=None):
    """Run one scipy solver on a TrajectoryObjective from the flat start u.

    ``callback(controls, total_cost)`` sees the controls reshaped to ``shape`` (default
    the objective's); with a minimize method, returning True stops the run.  Returns
    (scipy result, history list, final flat u).
    """
    options = dict(options or {})
    shape = obj.shape if shape is None else shape
    hist = [obj.value(u)]
    B = obj.B
    flat_lohi = None
    if lohi is not None:
        flat_lohi = (np.tile(lohi[0].ravel(), B), np.tile(lohi[1].ravel(), B))
    if method in LSQ_METHODS:
        obj._cost.check_residual_form()
        if method == "lm":
            if lohi is not None:
                raise ValueError("method 'lm' does not support bounds; use 'trf' or 'dogbox'")
            nr = obj._cost.n_residuals() * B
            if nr < obj.n_vars:
                raise ValueError(f"method 'lm' needs at least as many residuals as controls "
                                 f"({nr} < {obj.n_vars}); add a control cost R > 0 or use 'trf'")

        def fun(x):
            r = obj.residuals(x)
            hist.append(float(r @ r))
            if callback is not None:
                callback(x.reshape(shape), hist[-1])
            return r
        jac = (lambda x: obj.jacobian(x, sparse=False)) if method == "lm" else obj.jacobian
        b = (-np.inf, np.inf) if flat_lohi is None else flat_lohi
        res = least_squares(fun, u, jac=jac, bounds=b, method=method, **options)
        res.nit = res.nfev
        return res, hist, res.x

    def cb(xk, *args):
        f = obj.cached_total(xk)
        f = obj.value(xk) if f is None else f
        hist.append(f)
        if callback is not None and callback(np.reshape(xk, shape), f) is True:
            raise StopIteration        # scipy ends the run and reports it in the message
    if lohi is not None and method not in BOUNDED:
        raise ValueError(f"method {method!r} does not support bounds; use one of {list(BOUNDED)}")
    b = None if flat_lohi is None else Bounds(*flat_lohi)
    res = minimize(obj, u, jac=True, method=method, bounds=b, options=options, callback=cb)
    return res, hist, res.x


def _solve_each(obj, X0, starts, cost, exo, method, lohi, options):
    """Solve each trajectory of the batched objective obj (initial states X0 (N, n), starts
    (N, T, m)) with its own solver run; return (aggregate result, history, flat u) as solve."""
    model, T, N = obj.model, obj.T, starts.shape[0]
    per_goal = cost.goal is not None and cost.goal.ndim == 3
    per_exo = exo is not None and np.ndim(exo) == 3
    runs = []
    for i in range(N):
        cost_i = cost.with_goal(cost.goal[i:i + 1]) if per_goal else cost
        obj_i = TrajectoryObjective(model, X0[i], T, cost_i,
                                    np.asarray(exo)[i] if per_exo else exo)
        runs.append(solve(obj_i, starts[i].reshape(-1), method, lohi, options)[0])
    u = np.concatenate([np.asarray(r.x, dtype=np.float64) for r in runs])
    ok = sum(bool(r.success) for r in runs)
    res = OptimizeResult(success=ok == N, status=max(int(r.status) for r in runs),
                         message=f"{ok} of {N} independent runs converged",
                         nit=sum(int(getattr(r, "nit", 0)) for r in runs),
                         nfev=sum(int(r.nfev) for r in runs),
                         njev=sum(int(getattr(r, "njev", 0) or 0) for r in runs))
    return res, [obj.value(starts.reshape(-1)), obj.value(u)], u


def _batch_options(options):
    """batch_lbfgs keyword arguments from the options dict; unknown keys are an error."""
    out = {}
    for k, v in dict(options or {}).items():
        if k not in BATCH_OPTIONS:
            raise ValueError(f"unknown option {k!r} for method 'batch-lbfgs'; it takes "
                             f"{sorted(BATCH_OPTIONS)}")
        if BATCH_OPTIONS[k] in out:
            raise ValueError("give the memory size once, as 'maxcor' or as 'm'")
        out[BATCH_OPTIONS[k]] = v
    return out


def _solve_batch(obj, starts, lohi, options, callback, shape):
    """Solve every trajectory of obj with batch_lbfgs (own memory, line search and test per
    trajectory, one vectorized rollout per evaluation); return (result, history, flat u)."""
    N = starts.shape[0]
    nb = starts[0].size

    def fun(X):
        _, g = obj(X.reshape(-1))
        return obj.last_costs.copy(), g.reshape(N, nb)
    lo, hi = (None, None) if lohi is None else (lohi[0].ravel(), lohi[1].ravel())
    cb = None if callback is None else (
        lambda X, v: callback(X.reshape(shape), float(v.sum())))
    r = batch_lbfgs(fun, starts.reshape(N, nb), lo, hi, callback=cb, **_batch_options(options))
    res = OptimizeResult(success=r.success, status=r.status, message=r.message,
                         nit=int(r.nit.max()), nfev=r.nfev, njev=r.nfev)
    return res, list(r.history), r.x.reshape(-1)


def optimize_trajectory(model, x0, horizon, cost=None, u0=None, bounds=None,
                        method="L-BFGS-B", exo=None, restarts=0, seed=0, init_scale=1.0,
                        options=None, callback=None, independent=False):
    """Optimal control sequence(s) through a learned dynamics model.

    Parameters
    ----------
    model : Dynamics
    x0 : array_like, shape (n,) or (B, n)
        Initial state, or B initial states optimized together (one vectorized rollout).
    horizon : int
        Number of steps T >= 1.
    cost : TrajectoryCost or dict, optional
        The trajectory cost (default ``TrajectoryCost()``: Q = 1 toward the origin).
    u0 : array_like, shape (T, m) or (B, T, m), optional
        Initial controls; default zeros (clipped into the bounds).  A u0 outside the
        bounds is rejected (ValueError), not clipped.
    bounds : (low, high) or scipy.optimize.Bounds, optional
        Control limits, each a scalar, (m,) or (T, m); None or +-inf for no limit.
    method : str
        A gradient method of ``scipy.optimize.minimize`` ("L-BFGS-B", "BFGS", "CG",
        "Newton-CG", "TNC", "SLSQP", "trust-constr") or a least-squares (Gauss-Newton)
        method of ``scipy.optimize.least_squares`` ("lm", "trf", "dogbox") using the exact
        Jacobian; the latter need a quadratic cost (no custom terms).  Or "batch-lbfgs":
        projected L-BFGS run on every trajectory (initial state x start) at once, each
        with its own curvature memory, backtracking line search and convergence test,
        every evaluation one vectorized rollout of the whole batch
        (:func:`ctrlprop.batchlbfgs.batch_lbfgs`); bounds by projection.  It behaves like
        ``independent=True`` at the cost per evaluation of the joint problem.
    exo : array_like, optional
        Exogenous inputs (see :class:`Dynamics`).
    restarts : int
        Extra random starts per initial state, all optimized in the same vectorized
        problem; the best (lowest J) is returned and all are kept.
    seed : int
        Seed of the random starts.
    init_scale : float
        Standard deviation of random starts for controls without finite bounds.
    options : dict, optional
        ``minimize`` options (e.g. maxiter, gtol), or ``least_squares`` keyword
        arguments (e.g. max_nfev, ftol) for the least-squares methods.  "batch-lbfgs"
        takes maxiter (per trajectory, default 500), maxcor or m (pairs kept, 10), gtol
        (projected-gradient inf-norm, 1e-6), ftol (relative decrease per iteration,
        1e-10) and maxls (trials per line search, 20).
    callback : callable, optional
        ``callback(controls, total_cost)`` after every iteration (every residual
        evaluation for least squares); controls are (T, m), (B, T, m) for a batch, with
        an axis of starts before T with ``restarts``: (R, T, m) or (B, R, T, m).
        With a minimize method, returning True stops the optimisation.
    independent : bool
        False (default): all trajectories (initial states x starts) form one summed
        problem, one vectorized rollout per evaluation, one solver run -- they share its
        line search and curvature memory.  True: each trajectory gets its own solver run
        (its own line search and memory), one after another; slower per evaluation but
        each problem converges on its own, which matters for hard non-convex costs.
        ``history`` is then the total cost before and after; no callback.  With
        "batch-lbfgs" every trajectory is already solved on its own and this flag
        changes nothing.

    Returns
    -------
    TrajectoryResult
        With "batch-lbfgs": ``success`` when every trajectory converged, ``message``
        counts them, ``nit`` is the largest iteration count of a trajectory, ``nfev``
        the number of vectorized evaluations, ``history`` the total cost before and
        after every iteration.
    """
    check_model(model)
    T = check_horizon(horizon)
    method = canonical(method)
    X0, batched = model.check_x0(x0)
    B, m = X0.shape[0], model.n_control
    R = check_int(restarts, "restarts", 0) + 1
    lohi = check_bounds(bounds, T, m)
    U0 = initial_controls(model, u0, T, B, lohi)
    cost = as_cost(cost)
    if R > 1:                                     # every start is one more trajectory
        if cost.goal is not None and cost.goal.ndim == 3:
            cost = cost.with_goal(np.repeat(cost.goal, R, axis=0))
        if exo is not None and np.ndim(exo) == 3:
            exo = np.repeat(np.asarray(exo, float), R, axis=0)
    starts = _starts(U0, R, lohi, float(init_scale), seed)
    X0 = np.repeat(X0, R, axis=0)
    obj = TrajectoryObjective(model, X0, T, cost, exo)
    shape = ((B,) if batched else ()) + ((R,) if R > 1 else ()) + (T, m)
    with blas_threads(1):
        if method in BATCH_METHODS:
            res, hist, u = _solve_batch(obj, starts, lohi, options, callback, shape)
        elif independent:
            if callback is not None:
                raise ValueError("callback is not supported with independent=True")
            res, hist, u = _solve_each(obj, X0, starts, cost, exo, method, lohi, options)
        else:
            res, hist, u = solve(obj, starts.reshape(-1), method, lohi, options, callback,
                                 shape)
    u = np.asarray(u, dtype=np.float64)
    S = obj.states(u).reshape(B, R, T + 1, model.n_state)
    U = u.reshape(B, R, T, m)
    J = obj.costs(u).reshape(B, R)
    best = np.argmin(J, axis=1)
    pick = np.arange(B)
    out = TrajectoryResult(
        x=u, fun=float(J.sum()), history=np.array(hist), method=method,
        success=bool(res.success), status=int(res.status), message=str(res.message),
        nit=int(getattr(res, "nit", 0)), nfev=int(res.nfev),
        njev=int(getattr(res, "njev", 0) or 0))
    st, ct, co = S[pick, best], U[pick, best].copy(), J[pick, best]
    out.states, out.controls, out.cost = (st, ct, co) if batched else (st[0], ct[0],
                                                                      float(co[0]))
    if R > 1:
        out.all_states, out.all_controls, out.all_costs, out.best = (
            (S, U.copy(), J, best) if batched else (S[0], U[0].copy(), J[0], int(best[0])))
    return out
