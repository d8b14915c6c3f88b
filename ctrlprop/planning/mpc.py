"""Model-predictive control: re-optimize the trajectory through the model at every step.

At step k, from the measured state x_k, the controls of the next ``horizon`` steps are
optimized through the learned model (warm-started from the previous plan shifted by one
step, its last control repeated), the first control is applied to the true plant, and the
plant's next state is measured.  The model's one-step prediction is kept next to what the
plant did, so model error is visible.
"""

import time

import numpy as np

from ..core.checks import as_float, check_int, check_state
from ..core.threads import blas_threads
from ..objectives.cost import as_cost
from ..objectives.trajectory import TrajectoryObjective, check_horizon, check_model
from ..solvers.methods import resolve
from ..solvers.progress import Progress
from ..solvers.result import CALLBACK, CONVERGED, Notifier, Result
from ..solvers.scipy_solve import solver_options
from .trajectory import check_controls_start, solve_once, trajectory_bounds

__all__ = ["mpc", "MPCResult", "MPCError", "MPC_METHODS"]

MPC_METHODS = ("L-BFGS-B", "BFGS", "CG", "TNC", "SLSQP", "Newton-CG", "trust-ncg",
               "trust-krylov", "trust-constr", "lm", "trf", "dogbox")


class MPCResult(Result):
    """Closed-loop record of :func:`mpc` (a :class:`~ctrlprop.Result`).

    Attributes
    ----------
    x, controls : ndarray, (K, m)
        Controls applied (K = steps completed; ``x`` is ``controls``).
    states : ndarray, (K+1, n)
        Measured plant states x_0 .. x_K.
    fun : float
        The cost J of the executed trajectory (the same cost, horizon K; a goal
        trajectory is read at times 1..K).
    predicted : ndarray, (K, n)
        The model's prediction of x_{k+1} when u_k was chosen; compare with states[1:].
    prediction_error : ndarray, (K,)
        ``|states[k+1] - predicted[k]|`` (Euclidean).
    plans : ndarray, (K, horizon, m)
        The optimized control sequence at every step.
    time_per_step : ndarray, (K,)
        Seconds spent optimizing at each step (the plant call excluded).
    history : dict of (K,) arrays
        Per step: ``"fun"`` (the predicted cost of the plan), ``"nit"``, ``"nfev"``,
        ``"status"`` of the step's solve, ``"time"`` (= time_per_step).
    nit, nfev : int
        Solver iterations and evaluations over all steps.
    success : bool
        Every step ran.  A step's solve that stops at ``maxiter`` is MPC working as
        designed (its plan is applied); per-step codes are in ``history["status"]`` and
        the message counts the steps whose solve did not converge.
    status : int
        CONVERGED (0) when every step ran, CALLBACK (2) when the callback stopped the
        loop.
    message : str
    method : str
        The solver of every step.
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


def mpc(model, plant, x0, steps, horizon, cost=None, *, u0=None, bounds=None, method=None,
        maxiter=20, options=None, callback=None, progress=False, exo=None):
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
        First plan's initial controls (default as in :func:`optimize_trajectory`).
    bounds : optional
        Control limits in any form of :func:`ctrlprop.core.checks.parse_bounds`
        (scalars or (m,) per control: the same limits at every step), enforced on
        every plan.
    method : str, optional
        Solver, as in :func:`optimize_trajectory` (None: "L-BFGS-B"; not batch-lbfgs).
    maxiter : int
        Iteration limit of every step's solve (default 20), with the meaning of
        :func:`optimize_trajectory`'s.
    options : dict, optional
        Further solver options (no iteration limits: use maxiter).
    callback : callable, optional
        ``callback(intermediate_result)`` after every step, with a Result holding ``x``
        (the control applied), ``fun`` (the plan's predicted cost), ``nit`` (the step's
        solver iterations), ``step`` (k), ``state`` (the measured x_{k+1}) and ``plan``
        (H, m).  Returning True or raising StopIteration stops the loop.
    progress : bool
        Show a progress line over the steps (needs tqdm).
    exo : array_like, optional
        The model's exogenous inputs: (e,) constant, or (N, e) over absolute times
        0..N-1 with N >= steps + horizon - 1.

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
    method = resolve(method, MPC_METHODS, "L-BFGS-B", "mpc")
    options, maxiter = solver_options(options, maxiter, 20, least=1)
    notify = Notifier(callback)
    X0, batched = model.check_x0(x0)
    if batched:
        raise ValueError(f"mpc controls one plant: x0 must have shape ({model.n_states},), "
                         f"got {np.shape(x0)}")
    n, m = model.n_states, model.n_controls
    lo, hi = trajectory_bounds(bounds, H, m)
    if not (np.all(lo == lo[:1]) and np.all(hi == hi[:1])):
        raise ValueError("mpc bounds must be the same at every step (scalars or (m,) per "
                         "control): the horizon slides over absolute time")
    U = check_controls_start(model, u0, lo, hi, H, 1)[0]
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
        if E.ndim not in (1, 2):
            e = model.n_exo
            raise ValueError(f"mpc drives one plant over absolute time: exo must be ({e},) "
                             f"(constant) or (N, {e}) over times 0..N-1, got shape {E.shape}")
        if E.ndim == 2:
            exo_seq = _absolute(E, need, "exo", model.n_exo)

    obj = TrajectoryObjective(model, X0[0], H,
                              cost.with_goal(goal[:H]) if goal_seq else cost,
                              exo_seq[:H] if exo_seq is not None else exo)
    rec = dict(states=[X0[0].copy()], controls=[], predicted=[], plans=[], fun=[], time=[],
               nit=[], nfev=[], status=[])
    x = X0[0].copy()
    stopped = False
    quiet = Notifier(None)
    with Progress(progress, "mpc", K, unit="step") as bar, blas_threads(1):
        for k in range(K):
            t0 = time.perf_counter()
            if k:
                obj.set_x0(x)
                if goal_seq:
                    obj.set_cost(cost.with_goal(goal[k:k + H]))
                if exo_seq is not None:
                    obj.set_exo(exo_seq[k:k + H])
                U = np.clip(np.concatenate([U[1:], U[-1:]]), lo, hi)   # warm start: shift
            res = solve_once(obj, U.reshape(-1), method, (lo, hi), maxiter, options, quiet,
                             None)
            U = res.x.reshape(H, m)
            pred = obj.states(res.x)[1]
            rec["time"].append(time.perf_counter() - t0)
            rec["fun"].append(obj.value(res.x))
            rec["plans"].append(U.copy())
            rec["nit"].append(int(res.nit))
            rec["nfev"].append(int(res.nfev))
            rec["status"].append(int(res.status))
            u_k = U[0].copy()
            try:
                x_next = check_state(plant(x.copy(), u_k.copy()), (n,), f"step {k}: the plant")
            except ValueError as e:
                raise MPCError(str(e), _result(rec, model, cost, goal_seq,
                                               f"stopped at step {k}: {e}", False,
                                               method.name)) from None
            rec["controls"].append(u_k)
            rec["predicted"].append(pred)
            rec["states"].append(x_next)
            x = x_next
            bar.update(fun=rec["fun"][-1])
            if notify(x=u_k.copy(), fun=rec["fun"][-1], nit=rec["nit"][-1], step=k,
                      state=x.copy(), plan=U.copy()):
                stopped = True
                break
    return _result(rec, model, cost, goal_seq, None, stopped, method.name)


def _result(rec, model, cost, goal_seq, message, stopped, method):
    """Assemble the MPCResult from the per-step records."""
    n, m = model.n_states, model.n_controls
    K = len(rec["controls"])
    S = np.array(rec["states"]).reshape(K + 1, n)
    Uc = np.array(rec["controls"]).reshape(K, m)
    P = np.array(rec["predicted"]).reshape(K, n)
    hist = {k: np.array(rec[k][:K], dtype=float if k in ("fun", "time") else int)
            for k in ("fun", "nit", "nfev", "status", "time")}
    bad = int((hist["status"] != CONVERGED).sum())
    if stopped:
        status, msg = CALLBACK, f"stopped by the callback after step {K - 1}"
    else:
        status, msg = CONVERGED, f"completed {K} steps"
    if bad:
        msg += f"; {bad} of {K} step solves stopped before converging (the per-step maxiter)"
    if message is not None:
        msg = message
    r = MPCResult(x=Uc, controls=Uc, states=S, predicted=P,
                  prediction_error=np.linalg.norm(S[1:] - P, axis=1),
                  plans=np.array(rec["plans"][:K]), time_per_step=hist["time"],
                  history=hist, nit=int(hist["nit"].sum()), nfev=int(hist["nfev"].sum()),
                  success=bool(status == CONVERGED and message is None), status=status,
                  message=msg, steps_done=K, fun=np.nan, method=method)
    if K:
        c = cost.with_goal(cost.goal[:K]) if goal_seq else cost
        vals, _, _ = c.bind(n, m, K, 1).evaluate(S[:, :, None], Uc[:, :, None])
        r.fun = float(vals[0])
    return r
