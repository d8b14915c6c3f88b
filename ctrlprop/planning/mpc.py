"""Model-predictive control: re-optimize the trajectory through the model at every step.

At step k, from the measured state x_k, the controls of the next ``horizon`` steps are
optimized through the learned model (warm-started from the previous plan shifted by one
step, its last control repeated), the first control is applied to the true plant, and the
plant's next state is measured.  The model's one-step prediction is kept next to what the
plant did, so model error is visible.
"""

import time

import numpy as np
from scipy.optimize import OptimizeResult

from ..core.checks import as_float, check_int
from ..core.threads import blas_threads
from ..objectives.cost import as_cost
from ..objectives.trajectory import TrajectoryObjective, check_model, check_horizon
from .trajectory import canonical, check_bounds, initial_controls, solve

__all__ = ["mpc", "MPCResult", "MPCError"]


class MPCResult(OptimizeResult):
    """Closed-loop record of :func:`mpc` (an ``OptimizeResult``).

    Attributes
    ----------
    states : ndarray, (K+1, n)
        Measured plant states x_0 .. x_K (K = steps completed).
    controls : ndarray, (K, m)
        Controls applied.
    predicted : ndarray, (K, n)
        The model's prediction of x_{k+1} when u_k was chosen; compare with states[1:].
    prediction_error : ndarray, (K,)
        ``|states[k+1] - predicted[k]|`` (Euclidean).
    plans : ndarray, (K, horizon, m)
        The optimized control sequence at every step.
    plan_cost : ndarray, (K,)
        Predicted cost of each plan.
    time_per_step : ndarray, (K,)
        Seconds spent optimizing at each step (the plant call excluded).
    nit, nfev : ndarray, (K,)
        Solver iterations and evaluations per step.
    cost : float
        The cost J of the executed trajectory (same weights, horizon K; a goal
        trajectory is read at times 1..K).
    success : bool
        All steps ran (False when a callback stopped the loop).
    message : str
    """


class MPCError(ValueError):
    """The MPC loop stopped on a bad plant output; ``.result`` holds what was done so far
    (an :class:`MPCResult` over the completed steps)."""

    def __init__(self, message, result):
        super().__init__(message)
        self.result = result


def _absolute(a, need, name, width):
    """A per-time array (N, width) covering ``need`` absolute times, or a clear error."""
    if a.shape[0] < need:
        raise ValueError(f"{name} given as a sequence must cover every time the MPC loop "
                         f"looks at: at least {need} rows of {width} (steps + horizon - 1), "
                         f"got {a.shape}")
    return a


def mpc(model, plant, x0, steps, horizon, cost=None, u0=None, bounds=None,
        method="L-BFGS-B", maxiter=20, exo=None, options=None, callback=None):
    """Receding-horizon control of a plant through a learned model.

    Parameters
    ----------
    model : Dynamics
        The (learned) model used for planning.
    plant : callable
        ``plant(x, u) -> x_next``: the true system, one state (n,) and control (m,) at a
        time.  Its output must be a finite (n,) array.
    x0 : array_like, shape (n,)
        The plant's initial state.
    steps : int
        Number of closed-loop steps K >= 1.
    horizon : int
        Planning horizon H >= 1.
    cost : TrajectoryCost or dict, optional
        The planning cost over the horizon.  A single goal state is used at every step; a
        goal given as a trajectory (N, n) is a reference over absolute times 1..N
        (N >= steps + horizon - 1), and each plan sees its next H entries.
    u0 : array_like, shape (H, m), optional
        First plan's initial controls (default zeros clipped into the bounds).
    bounds : (low, high), optional
        Control limits (scalar or (m,)), enforced on every plan.
    method : str
        Solver, as in :func:`optimize_trajectory`.
    maxiter : int
        Iteration cap per step (``max_nfev`` for least-squares methods, ``maxfun`` for TNC).
    exo : array_like, optional
        The model's exogenous inputs: (e,) constant, or (N, e) over absolute times
        0..N-1 with N >= steps + horizon - 1.
    options : dict, optional
        Further solver options.
    callback : callable, optional
        ``callback(k, x_k, u_k)`` after step k; returning True stops the loop.

    Returns
    -------
    MPCResult

    Raises
    ------
    MPCError
        When the plant returns an array of the wrong shape or with NaN/inf; the error's
        ``result`` attribute holds the closed-loop record up to that step.
    """
    check_model(model)
    if not callable(plant):
        raise TypeError(f"plant must be callable as plant(x, u) -> x_next, "
                        f"got {type(plant).__name__}")
    H = check_horizon(horizon)
    K = check_int(steps, "steps", 1)
    maxiter = check_int(maxiter, "maxiter", 1)
    method = canonical(method)
    X0, batched = model.check_x0(x0)
    if batched:
        raise ValueError(f"mpc controls one plant: x0 must have shape ({model.n_state},), "
                         f"got {np.shape(x0)}")
    n, m = model.n_state, model.n_control
    lohi = check_bounds(bounds, H, m)
    U = initial_controls(model, u0, H, 1, lohi)[0]
    cost = as_cost(cost)
    need = K + H - 1
    goal = cost.goal
    if goal is not None and goal.ndim == 3:
        raise ValueError("mpc plans one trajectory: the goal must be a state (n,) or a "
                         "reference trajectory (N, n)")
    goal_seq = goal is not None and goal.ndim == 2
    if goal_seq:
        _absolute(goal, need, "goal", n)
    exo_seq = None
    if exo is not None:
        E = as_float(exo, "exo")
        if E.ndim == 2:
            exo_seq = _absolute(E, need, "exo", model.n_exo)
    opts = dict(options or {})
    cap = {"lm": "max_nfev", "trf": "max_nfev", "dogbox": "max_nfev", "TNC": "maxfun"}
    if cap.get(method, "maxiter") in opts:
        raise ValueError(f"options[{cap.get(method, 'maxiter')!r}] conflicts with mpc's "
                         "per-step cap: pass maxiter=... instead")
    opts[cap.get(method, "maxiter")] = maxiter

    obj = TrajectoryObjective(model, X0[0], H,
                              cost.with_goal(goal[:H]) if goal_seq else cost,
                              exo_seq[:H] if exo_seq is not None else exo)
    rec = dict(states=[X0[0].copy()], controls=[], predicted=[], plans=[], plan_cost=[],
               time_per_step=[], nit=[], nfev=[])
    x = X0[0].copy()
    message, stopped = f"completed {K} steps", False
    with blas_threads(1):
        for k in range(K):
            t0 = time.perf_counter()
            if k:
                obj.set_x0(x)
                if goal_seq:
                    obj.set_cost(cost.with_goal(goal[k:k + H]))
                if exo_seq is not None:
                    obj.set_exo(exo_seq[k:k + H])
                U = np.concatenate([U[1:], U[-1:]])          # warm start: shift by one
                if lohi is not None:
                    U = np.clip(U, lohi[0], lohi[1])
            res, _, u = solve(obj, U.reshape(-1), method, lohi, opts)
            U = np.asarray(u, dtype=np.float64).reshape(H, m)
            pred = obj.states(U.reshape(-1))[1]
            rec["time_per_step"].append(time.perf_counter() - t0)
            rec["plan_cost"].append(obj.value(U.reshape(-1)))
            rec["plans"].append(U.copy())
            rec["nit"].append(int(getattr(res, "nit", 0)))
            rec["nfev"].append(int(res.nfev))
            u_k = U[0].copy()
            try:
                x_next = _check_plant_output(plant(x.copy(), u_k.copy()), n, k)
            except ValueError as e:
                raise MPCError(str(e), _result(rec, model, cost, goal_seq,
                                               f"stopped at step {k}: {e}", False)) from None
            rec["controls"].append(u_k)
            rec["predicted"].append(pred)
            rec["states"].append(x_next)
            x = x_next
            if callback is not None and callback(k, x, u_k):
                message, stopped = f"stopped by the callback after step {k}", True
                break
    return _result(rec, model, cost, goal_seq, message, not stopped)


def _check_plant_output(y, n, k):
    """The plant's next state as a finite (n,) array, or a ValueError naming step k."""
    try:
        a = np.array(y, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"step {k}: the plant returned {type(y).__name__}, not a numeric "
                         f"state of shape ({n},)") from None
    if a.shape != (n,):
        raise ValueError(f"step {k}: the plant returned a state of shape {a.shape}, "
                         f"expected ({n},)")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"step {k}: the plant returned NaN or inf: {a.tolist()}")
    return a


def _result(rec, model, cost, goal_seq, message, success):
    """Assemble the MPCResult from the per-step records."""
    n, m = model.n_state, model.n_control
    K = len(rec["controls"])
    S = np.array(rec["states"]).reshape(K + 1, n)
    Uc = np.array(rec["controls"]).reshape(K, m)
    P = np.array(rec["predicted"]).reshape(K, n)
    r = MPCResult(states=S, controls=Uc, predicted=P,
                  prediction_error=np.linalg.norm(S[1:] - P, axis=1),
                  plans=np.array(rec["plans"][:K]), plan_cost=np.array(rec["plan_cost"][:K]),
                  time_per_step=np.array(rec["time_per_step"][:K]),
                  nit=np.array(rec["nit"][:K], int), nfev=np.array(rec["nfev"][:K], int),
                  success=success, message=message, steps_done=K)
    r.cost = np.nan
    if K:
        c = cost.with_goal(cost.goal[:K]) if goal_seq else cost
        vals, _, _ = c.bind(n, m, K, 1).evaluate(S[:, :, None], Uc[:, :, None])
        r.cost = float(vals[0])
    return r
