"""Model-predictive control: re-optimize the trajectory through the model at every step.

At step k, from the measured state x_k, the controls of the next ``horizon`` steps are
optimized through the learned model (warm-started from the previous plan shifted by one
step, its last control repeated), the first control is applied to the true system, and
its next state is measured.  The model's one-step prediction is kept next to what the
system did, so model error is visible.

:class:`Planner` is one such controller, stateful over an episode (``reset``, then one
``plan`` or call per step); :func:`mpc` runs it in closed loop on a plant callable or on
an environment with the gymnasium interface (:mod:`ctrlprop.core.environment`).
"""

import time

import numpy as np

from ..core.checks import as_float, check_int, check_state
from ..core.environment import as_environment
from ..core.threads import blas_threads
from ..objectives.cost import as_cost
from ..objectives.ddp_terms import DDPTerms
from ..objectives.trajectory import TrajectoryObjective, check_horizon, check_model
from ..solvers.ddp import ddp, ddp_options
from ..solvers.methods import resolve
from ..solvers.progress import Progress
from ..solvers.result import CALLBACK, CONVERGED, NONFINITE, Notifier, Result
from ..solvers.scipy_solve import solver_options
from ..solvers.starts import check_seed
from .sampling import Sampler
from .trajectory import check_controls_start, check_method, solve_once, trajectory_bounds

__all__ = ["mpc", "Planner", "MPCResult", "MPCError", "MPC_METHODS"]

MPC_METHODS = ("L-BFGS-B", "dense-lbfgsb", "BFGS", "CG", "TNC", "SLSQP", "Newton-CG",
               "trust-ncg", "trust-krylov", "trust-constr", "lm", "trf", "dogbox", "ilqr", "ddp",
               "cem", "mppi", "cem-gd")


class MPCResult(Result):
    """Closed-loop record of :func:`mpc` (a :class:`~ctrlprop.Result`).

    Attributes
    ----------
    x, controls : ndarray, (K, m)
        Controls applied (K = steps completed; ``x`` is ``controls``).  For an
        environment: the actions as sent (in the action space's dtype, as float64).
    states : ndarray, (K+1, n)
        Measured states x_0 .. x_K (an environment's observations).
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
        Seconds spent optimizing at each step (the system's step excluded).
    rewards : ndarray (K,) or None
        The environment's rewards (None for a plant callable).
    episode_return : float or None
        Their sum (None for a plant callable).
    terminated, truncated : bool
        The environment ended the episode (always False for a plant callable).
    history : dict of (K,) arrays
        Per step: ``"fun"`` (the predicted cost of the plan), ``"nit"``, ``"nfev"``,
        ``"status"`` of the step's solve, ``"time"`` (= time_per_step), ``"replanned"``
        (the step optimized a plan; False between plans with ``replan_every`` > 1).
    nit, nfev : int
        Solver iterations and evaluations over all steps.
    success : bool
        Every step ran (until ``steps`` or the environment's end of the episode).  A
        step's solve that stops at ``maxiter`` is MPC working as designed (its plan is
        applied); per-step codes are in ``history["status"]`` and the message counts the
        steps whose solve did not converge.
    status : int
        CONVERGED (0) when every step ran, CALLBACK (2) when the callback stopped the
        loop.
    message : str
    method : str
        The solver of every step.
    """


class MPCError(ValueError):
    """The MPC loop stopped on a bad plant or environment output; ``.result`` holds what
    was done so far (an :class:`MPCResult` over the completed steps)."""

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


class Planner:
    """A receding-horizon controller through a model: at every call, optimize the next
    ``horizon`` controls from the given state and return the first.

    Parameters
    ----------
    model : Dynamics
        The (learned) model used for planning.
    horizon : int
        Planning horizon H >= 1.
    cost : TrajectoryCost or dict, optional
        The planning cost over the horizon.  A goal given as a trajectory (N, n) is a
        reference over absolute times 1..N of the episode: the plan at step k sees its
        entries k+1 .. k+H.
    bounds : optional
        Control limits in any form of :func:`ctrlprop.core.checks.parse_bounds`, the same
        at every step (scalars or (m,) per control).
    method : str, optional
        Solver, as in :func:`optimize_trajectory` (None: "L-BFGS-B"; one of
        ``MPC_METHODS``).  For a small plant in real time, "dense-lbfgsb" solves the same
        problem as "L-BFGS-B" without scipy's per-call setup (about 0.3 ms for 30 bounded
        controls).
    maxiter : int
        Iteration limit of every step's solve (default 20).
    options : dict, optional
        Further solver options (no iteration limits: use maxiter).
    exo : array_like, optional
        The model's exogenous inputs: (e,) constant, or (N, e) over absolute times 0..N-1.
    u0 : array_like, shape (H, m), optional
        The first plan's initial controls (default as in :func:`optimize_trajectory`).
    replan_every : int
        Optimize every this many steps (default 1: every step).  In between, "ilqr" and
        "ddp" apply their local feedback policy ``u = controls_j + gains_j (x - states_j)``
        (j steps after the plan, clipped to the bounds), the other methods the plan's
        controls open loop.  At most the horizon.
    dtype : np.float64 or np.float32, optional
        The precision of the planning rollouts: None (default) the model's; np.float32
        plans through ``model.astype(np.float32)`` (the network's passes in single
        precision; the controls, predictions and costs handed back are float64).
    seed : int
        Seeds the sampling planners ("cem", "mppi", "cem-gd"): episode i (counted by
        :meth:`reset`) draws from ``np.random.default_rng([seed, i])``, so a run is
        reproducible.  The sampling planners warm-start every plan from the previous
        one's *mean* (cem, mppi; cem-gd: from its refined answer) shifted by a step, the
        sampling spread starting afresh (``options["init_std"]``); ``maxiter`` is their
        iterations per plan.  A plan's ``nfev`` counts the trajectories rolled out, and
        :attr:`transitions` the model transitions of all plans so far.

    Attributes
    ----------
    transitions : int
        Model transitions rolled out by the sampling planners' plans so far.
    calls, seconds : int, float
        Calls of :meth:`plan` (every step, also those between plans) and the seconds spent
        in them, since construction: ``1e3 * seconds / calls`` is the planning time in
        milliseconds per step.

    Notes
    -----
    ``planner(x)`` returns the control (m,) for state x; :meth:`plan` returns it with the
    step's record.  :meth:`reset` starts a new episode (absolute time 0, the first plan
    from ``u0``); :func:`ctrlprop.collect` calls it at every episode start.  The plan is
    warm-started from the previous one shifted by a step.  BLAS runs on one thread inside
    each call (the small products of a rollout are fastest that way).
    """

    def __init__(self, model, horizon, cost=None, *, bounds=None, method=None, maxiter=20,
                 options=None, exo=None, u0=None, replan_every=1, seed=0, dtype=None):
        check_model(model)
        self.model = model = model if dtype is None else model.astype(dtype)
        self.horizon = H = check_horizon(horizon)
        self.method = resolve(method, MPC_METHODS, "L-BFGS-B", "mpc")
        self.options, self.maxiter = solver_options(options, maxiter, 20, least=1)
        self.seed = check_seed(seed)
        self.ddp = self.method.family == "ddp"
        self.sampling = self.method.family == "sampling"
        if self.ddp:
            self.settings = ddp_options(self.options, self.method.name)
        self.replan_every = check_int(replan_every, "replan_every", 1)
        if self.replan_every > H:
            raise ValueError(f"replan_every must be at most the horizon ({H}), got "
                             f"{self.replan_every}")
        n, m = model.n_states, model.n_controls
        lo, hi = trajectory_bounds(bounds, H, m)
        if not (np.all(lo == lo[:1]) and np.all(hi == hi[:1])):
            raise ValueError("mpc bounds must be the same at every step (scalars or (m,) "
                             "per control): the horizon slides over absolute time")
        self.lo, self.hi = lo, hi
        self.u0 = check_controls_start(model, u0, lo, hi, H, 1)[0]
        self.cost = cost = as_cost(cost)
        goal = cost.goal
        if goal is not None and goal.ndim == 3:
            raise ValueError("mpc plans one trajectory: the goal must be a state (n,) or a "
                             "reference trajectory (N, n)")
        if goal is not None and goal.shape[-1] != n:
            raise ValueError(f"the goal must have {n} entries per state (the model has {n} "
                             f"states), got shape {goal.shape}")
        self.goal_seq = goal is not None and goal.ndim == 2
        self.exo_seq, exo0 = None, exo
        if exo is not None:
            E = as_float(exo, "exo")
            if E.ndim not in (1, 2):
                e = model.n_exo
                raise ValueError(f"mpc drives one system over absolute time: exo must be "
                                 f"({e},) (constant) or (N, {e}) over times 0..N-1, got "
                                 f"shape {E.shape}")
            if E.ndim == 2:
                self.exo_seq = E
                exo0 = _absolute(E, H, "exo", model.n_exo)[:H]
        if self.goal_seq:
            _absolute(goal, H, "goal", n)
        self.exo_now = exo0
        self.obj = TrajectoryObjective(model, np.zeros(n), H,
                                       cost.with_goal(goal[:H]) if self.goal_seq else cost,
                                       exo0)
        if self.sampling or model.is_ensemble:
            check_method(self.obj, self.method, lo, hi, self.options)
        self.sampler = None
        if self.sampling:
            self.sampler = Sampler(model, np.zeros((1, n)), H, self.obj.cost, exo0,
                                   self.method.name, self.options)
        self.transitions = 0
        self.calls, self.seconds = 0, 0.0
        self._episode = 0
        self.reset()

    def covers(self, steps):
        """Raise unless the goal and exo sequences cover ``steps`` steps of an episode."""
        need = steps + self.horizon - 1
        if self.goal_seq:
            _absolute(self.cost.goal, need, "goal", self.model.n_states)
        if self.exo_seq is not None:
            _absolute(self.exo_seq, need, "exo", self.model.n_exo)

    def reset(self):
        """Start a new episode: absolute time 0, the next plan from ``u0``."""
        self.k = 0
        self.U = self.u0.copy()
        self.last = None          # the last plan: (time, plan Result, Z, gains, u applied)
        self.rng = np.random.default_rng([self.seed, self._episode])
        self._episode += 1

    def plan(self, x):
        """Optimize the plan from state ``x`` (n,) at the current time and advance it.

        Returns
        -------
        Result
            ``x`` (the control to apply, (m,)), ``plan`` (H, m), ``predicted`` (the
            model's x_{k+1}), ``fun`` (the plan's predicted cost), ``nit``, ``nfev``,
            ``status`` of the solve, ``time`` (seconds), ``step`` (k), ``replanned``
            (False for a step between plans with ``replan_every`` > 1: then ``nit`` is
            0 and ``fun``, ``status``, ``plan`` are the last plan's).
        """
        t0 = time.perf_counter()
        k, H, obj = self.k, self.horizon, self.obj
        x = check_state(x, (self.model.n_states,), "the planner's state")
        if self.last is not None and k - self.last[0] < self.replan_every:
            return self._follow(x, t0)
        if self.goal_seq:
            self.covers(k + 1)
        if self.exo_seq is not None:
            _absolute(self.exo_seq, k + H, "exo", self.model.n_exo)
        with blas_threads(1):
            obj.set_x0(x)
            U = self.U
            if k:
                if self.goal_seq:
                    obj.set_cost(self.cost.with_goal(self.cost.goal[k:k + H]))
                if self.exo_seq is not None:
                    self.exo_now = self.exo_seq[k:k + H]
                    obj.set_exo(self.exo_now)
                j = k - self.last[0] if self.last is not None else 1
                U = np.clip(np.concatenate([U[j:], np.repeat(U[-1:], j, axis=0)]),
                            self.lo, self.hi)                         # warm start: shift
            Z = K = fun = None
            if self.ddp:
                terms = DDPTerms(self.model, x, H, obj.cost, self.exo_now)
                out = ddp(x0=terms.initial_states(), U0=U[None], lo=self.lo, hi=self.hi,
                          **terms.callables(second_order=self.method.name == "ddp"),
                          maxiter=self.maxiter, **self.settings)
                U = out["controls"][0]
                Z, K = out["states"][0], out["gains"][0]
                nit, nfev, status = int(out["nit"][0]), int(out["nfev"]), int(out["status"][0])
            elif self.sampling:
                self.sampler.set_problem(x[None], obj.cost, self.exo_now)
                out = self.sampler.solve(U[None], self.lo, self.hi, self.maxiter, self.rng)
                self.transitions += out["transitions"]
                nit, nfev = int(out["nit"]), int(out["nfev"])
                status = CONVERGED if np.isfinite(out["fun"][0]) else NONFINITE
                warm = out["x" if self.method.name == "cem-gd" else "mean"][0]
                U = out["x"][0]
            else:
                res = solve_once(obj, U.reshape(-1), self.method, (self.lo, self.hi),
                                 self.maxiter, self.options, Notifier(None), None)
                U = res.x.reshape(H, self.model.n_controls)
                nit, nfev, status = int(res.nit), int(res.nfev), int(res.status)
                fun = res.fun         # the objective's value at res.x: no second evaluation
            self.U = warm if self.sampling else U
            pred = obj.states(U.reshape(-1))[1]
            if fun is None:
                fun = obj.value(U.reshape(-1))
        step = Result(x=U[0].copy(), plan=U.copy(), predicted=pred, fun=float(fun), nit=nit,
                      nfev=nfev, status=status, time=time.perf_counter() - t0, step=k,
                      replanned=True)
        self.last = [k, step, Z, K, U[0].copy()]
        self.k = k + 1
        self.calls += 1
        self.seconds += step.time
        return step

    def _follow(self, x, t0):
        """A step between plans: the plan's feedback policy (ilqr/ddp) or its controls."""
        k0, plan, Z, K, u_prev = self.last
        j = self.k - k0
        U = plan.plan
        u = U[j].copy()
        if K is not None:
            z = x if Z.shape[1] == x.size else np.concatenate([x, u_prev])
            u = np.clip(u + K[j] @ (z - Z[j]), self.lo[0], self.hi[0])
        self.last[4] = u.copy()
        e = self.exo_now
        if e is not None and np.ndim(e) == 2:        # the plan's exo rows: this step's
            e = e[j]
        with blas_threads(1):
            pred = self.model.step(x, u, e)
        step = Result(x=u, plan=U.copy(), predicted=pred, fun=plan.fun, nit=0, nfev=0,
                      status=plan.status, time=time.perf_counter() - t0, step=self.k,
                      replanned=False)
        self.k += 1
        self.calls += 1
        self.seconds += step.time
        return step

    def __call__(self, x):
        """The control (m,) to apply at state x (n,) (see :meth:`plan`)."""
        return self.plan(x).x

    def close(self):
        """Stop the sampling planner's worker threads (``options["workers"]`` > 1); they
        start again at the next plan.  Without it they end with the planner."""
        if self.sampler is not None:
            self.sampler.close()

    def __repr__(self):
        return (f"Planner(horizon={self.horizon}, method={self.method.name!r}, "
                f"maxiter={self.maxiter}, model={self.model!r})")


def mpc(model, plant, x0, steps, horizon, cost=None, *, u0=None, bounds=None, method=None,
        maxiter=20, options=None, callback=None, progress=False, exo=None, seed=None,
        replan_every=1):
    """Receding-horizon control of a plant or environment through a learned model.

    Parameters
    ----------
    model : Dynamics
        The (learned) model used for planning.
    plant : callable or environment
        The true system: ``plant(x, u) -> x_next``, one state (n,) and control (m,) at a
        time, returning a finite (n,) array; or an object with the gymnasium interface
        (``reset``, ``step``, Box ``action_space``/``observation_space``), whose
        observations are the model's states: it is reset with ``seed``, its rewards are
        recorded, and the loop ends early when it terminates or truncates the episode.
    x0 : array_like, shape (n,), or None
        The plant's initial state; None for an environment (it starts from ``reset``).
    steps : int
        Number of closed-loop steps K >= 1 (at most, for an environment).
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
        every plan.  For an environment the default is its action space's box.
    method : str, optional
        Solver, as in :func:`optimize_trajectory` (None: "L-BFGS-B"; not batch-lbfgs;
        "dense-lbfgsb" for the least overhead per step, see :class:`Planner`).
    maxiter : int
        Iteration limit of every step's solve (default 20), with the meaning of
        :func:`optimize_trajectory`'s.
    options : dict, optional
        Further solver options (no iteration limits: use maxiter).
    callback : callable, optional
        ``callback(intermediate_result)`` after every step, with a Result holding ``x``
        (the control applied), ``fun`` (the plan's predicted cost), ``nit`` (the step's
        solver iterations), ``step`` (k), ``state`` (the measured x_{k+1}) and ``plan``
        (H, m), and ``reward`` for an environment.  Returning True or raising
        StopIteration stops the loop.
    progress : bool
        Show a progress line over the steps (needs tqdm).
    exo : array_like, optional
        The model's exogenous inputs: (e,) constant, or (N, e) over absolute times
        0..N-1 with N >= steps + horizon - 1.
    seed : int, optional
        The environment's reset seed (refused for a plant callable); it also seeds the
        sampling planners (0 when None, see :class:`Planner`).
    replan_every : int
        Optimize every this many steps (default 1); in between, "ilqr"/"ddp" apply the
        plan's feedback gains, other methods its controls (see :class:`Planner`).

    Returns
    -------
    MPCResult

    Raises
    ------
    MPCError
        When the plant returns an array of the wrong shape or with NaN/inf (or an
        environment a bad observation or reward); the error's ``result`` attribute holds
        the closed-loop record up to that step.

    Notes
    -----
    The whole closed loop -- plans and plant steps -- runs with BLAS on one thread (the
    planner's small products are fastest that way, see :class:`Planner`).
    """
    check_model(model)
    env = as_environment(plant, x0, seed, "plant")
    if env is not None:
        if (env.n_obs, env.n_act) != (model.n_states, model.n_controls):
            raise ValueError(f"the environment has {env.n_obs} observations and {env.n_act} "
                             f"actions, the model {model.n_states} states and "
                             f"{model.n_controls} controls")
        if bounds is None and env.bounded:
            bounds = [(a, b) for a, b in zip(env.low, env.high)]
    elif not callable(plant):
        raise TypeError(f"plant must be callable as plant(x, u) -> x_next or an environment "
                        f"with the gymnasium interface, got {type(plant).__name__}")
    K = check_int(steps, "steps", 1)
    planner = Planner(model, horizon, cost, bounds=bounds, method=method, maxiter=maxiter,
                      options=options, exo=exo, u0=u0, replan_every=replan_every,
                      seed=0 if seed is None else seed)
    planner.covers(K)
    notify = Notifier(callback)
    n = model.n_states
    if env is None:
        X0, batched = model.check_x0(x0)
        if batched:
            raise ValueError(f"mpc controls one plant: x0 must have shape ({n},), "
                             f"got {np.shape(x0)}")
        x = X0[0].copy()
    else:
        x = env.reset(seed)
    rec = dict(states=[x.copy()], controls=[], predicted=[], plans=[], fun=[], time=[],
               nit=[], nfev=[], status=[], rewards=[], replanned=[])
    stopped, ended = False, (False, False)
    parts = (rec, model, planner, env)
    # one BLAS thread for the whole loop (each plan is small and asks for it anyway): set
    # once here, the planner's per-step blocks then cost nothing (threadpoolctl's limit
    # takes ~50 us, about 5 % of a small plan)
    with Progress(progress, "mpc", K, unit="step") as bar, blas_threads(1):
        for k in range(K):
            step = planner.plan(x)
            for key in ("fun", "time", "nit", "nfev", "status", "replanned"):
                rec[key].append(getattr(step, key))
            rec["plans"].append(step.plan)
            u_k = step.x
            try:
                if env is None:
                    x_next = check_state(plant(x.copy(), u_k.copy()), (n,),
                                         f"step {k}: the plant")
                else:
                    a = env.action(u_k)
                    x_next, r, term, trunc = env.step(a, k)
                    u_k = a.astype(np.float64)
            except ValueError as e:
                raise MPCError(str(e), _result(*parts, f"stopped at step {k}: {e}", False,
                                               ended)) from None
            rec["controls"].append(u_k)
            rec["predicted"].append(step.predicted)
            rec["states"].append(x_next)
            extra = {}
            if env is not None:
                rec["rewards"].append(r)
                ended = (term, trunc)
                extra["reward"] = r
            x = x_next
            bar.update(fun=step.fun)
            if notify(x=u_k.copy(), fun=step.fun, nit=step.nit, step=k, state=x.copy(),
                      plan=step.plan.copy(), **extra):
                stopped = True
                break
            if any(ended):
                break
    return _result(*parts, None, stopped, ended)


def _result(rec, model, planner, env, message, stopped, ended):
    """Assemble the MPCResult from the per-step records."""
    n, m = model.n_states, model.n_controls
    cost = planner.cost
    K = len(rec["controls"])
    S = np.array(rec["states"]).reshape(K + 1, n)
    Uc = np.array(rec["controls"]).reshape(K, m)
    P = np.array(rec["predicted"]).reshape(K, n)
    hist = {k: np.array(rec[k][:K], dtype=float if k in ("fun", "time") else int)
            for k in ("fun", "nit", "nfev", "status", "time")}
    hist["replanned"] = np.array(rec["replanned"][:K], dtype=bool)
    bad = int(((hist["status"] != CONVERGED) & hist["replanned"]).sum())
    if stopped:
        status, msg = CALLBACK, f"stopped by the callback after step {K - 1}"
    else:
        status, msg = CONVERGED, f"completed {K} steps"
        if ended[0]:
            msg += " (the environment terminated the episode)"
        elif ended[1]:
            msg += " (the environment truncated the episode)"
    if bad:
        msg += f"; {bad} of {K} step solves stopped before converging (the per-step maxiter)"
    if message is not None:
        msg = message
    rewards = None if env is None else np.array(rec["rewards"][:K], dtype=float)
    r = MPCResult(x=Uc, controls=Uc, states=S, predicted=P,
                  prediction_error=np.linalg.norm(S[1:] - P, axis=1),
                  plans=np.array(rec["plans"][:K]).reshape(K, planner.horizon, m),
                  time_per_step=hist["time"], history=hist, nit=int(hist["nit"].sum()),
                  nfev=int(hist["nfev"].sum()),
                  success=bool(status == CONVERGED and message is None), status=status,
                  message=msg, steps_done=K, fun=np.nan, method=planner.method.name,
                  rewards=rewards,
                  episode_return=None if rewards is None else float(rewards.sum()),
                  terminated=bool(ended[0]), truncated=bool(ended[1]))
    if K:
        c = cost.with_goal(cost.goal[:K]) if planner.goal_seq else cost
        vals = c.bind(n, m, K, 1).values(S[:, :, None], Uc[:, :, None])
        r.fun = float(vals[0])
    return r
