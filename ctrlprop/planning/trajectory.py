"""Trajectory optimization through a learned model: :func:`optimize_trajectory`.

Notation: x is [n], u is [m], T steps; a batch of B initial states, R starts each.

The objective is the trajectory cost J of :class:`~ctrlprop.TrajectoryCost` (with the
lecture's 1/2) as a function of the control sequence; its gradient is one rollout and one
BPTT sweep (:class:`~ctrlprop.TrajectoryObjective`).  The methods:

* a gradient method of ``scipy.optimize.minimize`` (exact Hessian products for Newton-CG,
  trust-ncg, trust-krylov, trust-constr);
* a least-squares method (Gauss-Newton / Levenberg-Marquardt on the exact residual form
  of the quadratic cost, ``J = 1/2 |r|^2``, with the exact (T n x T m) Jacobian);
* ``"batch-lbfgs"``: a projected L-BFGS run on every trajectory at once, each with its
  own memory, line search and convergence test (:mod:`ctrlprop.solvers.batch_lbfgs`);
* ``"ilqr"`` and ``"ddp"``: iLQR and DDP through the learned model on every trajectory at
  once, control limits by the box QP of control-limited DDP, returning the local feedback
  policy (gains) with the plan (:mod:`ctrlprop.solvers.ddp`, with the model's and cost's
  derivatives from :mod:`ctrlprop.objectives.ddp_terms`).

With scipy methods a batch (initial states x starts) is one summed problem in one
vectorized rollout (its trajectories share the solver's line search and memory), or, with
``independent=True``, one solver run per trajectory.
"""

import itertools
import warnings

import numpy as np
from scipy.optimize import NonlinearConstraint

from ..core.checks import check_int, check_nonneg, check_within, parse_bounds
from ..core.parallel import (BATCH_CHUNK, ParallelError, ProblemError, check_executor,
                             choose_chunk, chunks, run_tasks)
from ..core.threads import blas_threads
from ..objectives.constraints import AugmentedLagrangian, as_constraints
from ..objectives.cost import TrajectoryCost, as_cost
from ..objectives.ddp_terms import DDPTerms
from ..objectives.trajectory import TrajectoryObjective, check_horizon, check_model
from ..solvers.batch_lbfgs import BATCH_LBFGS_OPTIONS, batch_lbfgs
from ..solvers.ddp import ddp, ddp_options
from ..solvers.sampling import sampling_options
from ..solvers.starts import check_seed
from ..solvers.methods import METHODS, resolve
from ..solvers.progress import Progress
from ..solvers.result import (CALLBACK, CONVERGED, FAILED, MAXITER, NONFINITE, STATUS,
                              ConvergenceWarning, Notifier, Result, warn_unless_success)
from ..solvers.scipy_solve import run_least_squares, run_minimize, solver_options
from ..solvers.starts import default_start, random_starts
from .sampling import DEFAULT_SAMPLING_MAXITER, Sampler, repeat_cost, repeat_exo

__all__ = ["optimize_trajectory", "TrajectoryResult", "TRAJECTORY_METHODS", "solve_once"]

TRAJECTORY_METHODS = ("L-BFGS-B", "dense-lbfgsb", "BFGS", "CG", "TNC", "SLSQP", "Newton-CG",
                      "trust-ncg", "trust-krylov", "trust-constr", "lm", "trf", "dogbox",
                      "batch-lbfgs", "ilqr", "ddp", "cem", "mppi", "cem-gd")
_BATCH_STATUS = {0: CONVERGED, 1: MAXITER, 2: FAILED, 3: CALLBACK}


class TrajectoryResult(Result):
    """Result of :func:`optimize_trajectory` (a :class:`~ctrlprop.Result`).

    Attributes
    ----------
    x, controls : ndarray, (T, m) or (B, T, m)
        The best control sequence of every initial state (``x`` is ``controls``).
    states : ndarray, (T+1, n) or (B, T+1, n)
    fun : float or ndarray (B,)
        The trajectory cost J of each returned trajectory.
    success, status : bool / int, or (B,) arrays for a batch
        Of the run that produced each returned trajectory.
    message : str
    nit, nfev, njev, nhev : int
        Iterations, and evaluations of the objective, its gradient and Hessian products.
    history : dict
        ``"fun"``: the solver's objective (J summed over every trajectory optimized)
        before the first and after every iteration.
    all_controls, all_states, all_fun, best
        With ``restarts``: every start's result, axes (start, ...) or (problem, start,
        ...), and the index of the start returned.
    constraint_violation : float or ndarray (B,)
        With ``constraints``: the largest ``max(0, c)`` of each returned trajectory.
    multipliers : ndarray, (T, K) or (B, T, K)
        With ``constraints`` (augmented Lagrangian): the multipliers of the K constraint
        components per step; ``history["violation"]`` has the largest violation after
        every outer iteration.
    gains : ndarray, (T, m, n) or (B, T, m, n)
        Methods "ilqr" and "ddp" only: the feedback gains K_t of the returned trajectory's
        backward pass.  The local policy around the plan is
        ``u_t = controls_t + gains_t (x_t - states_t) + gains_prev_t (u_{t-1} -
        controls_{t-1})`` (clipped to the bounds); a control at its bound has zero gains.
    gains_prev : ndarray, (T, m, m) or (B, T, m, m)
        "ilqr"/"ddp": feedback on the previous control's deviation, nonzero only with a
        control-rate cost S (whose exact treatment augments the state with u_{t-1}).
    feedforward : ndarray, (T, m) or (B, T, m)
        "ilqr"/"ddp": the backward pass's remaining open-loop step k_t at the returned
        trajectory (about 0 at convergence).
    method : str
    """


def check_controls_start(model, u0, lo, hi, T, B):
    """The (B, T, m) first start: u0 (inside the bounds, never clipped) or the default."""
    m = model.n_controls
    if u0 is None:
        return np.broadcast_to(default_start(lo, hi), (B, T, m)).copy()
    U, batched = model.check_controls(u0, T, "u0")
    if batched and U.shape[0] != B:
        raise ValueError(f"u0 holds {U.shape[0]} control sequences for {B} initial states")
    U = np.broadcast_to(U, (B, T, m)).copy()
    return check_within(U, lo, hi, "u0")


def trajectory_bounds(bounds, T, m):
    """Control bounds as (lo, hi) arrays (T, m) by the one parser."""
    return parse_bounds(bounds, m, (T, m), name="bounds", what="controls")


def solve_once(obj, u, method, lohi, maxiter, options, notify, reshape, constraints=None):
    """One solve of a TrajectoryObjective from the flat start u with a scipy method.

    ``lohi``: (lo, hi) of shape (T, m) for every trajectory of obj; ``constraints``:
    scipy constraints (SLSQP, trust-constr).  Returns a Result with the flat ``x``.
    """
    check_method(obj, method, lohi[0], lohi[1], options)
    lo, hi = (np.tile(b.ravel(), obj.B) for b in lohi)
    bounded = bool(np.isfinite(lo).any() or np.isfinite(hi).any())
    if method.family == "least_squares":
        jac = (lambda x: obj.jacobian(x, sparse=False)) if method.name == "lm" else obj.jacobian
        return run_least_squares(method, obj.residuals, jac, u,
                                 bounds=(lo, hi) if bounded else None, maxiter=maxiter,
                                 options=options, notify=notify, reshape=reshape)
    return run_minimize(method, obj, u, bounds=(lo, hi) if bounded else None,
                        hessp=obj.hessp if method.hessp else None, constraints=constraints,
                        maxiter=maxiter, options=options, notify=notify,
                        reshape=reshape)


def _solve_independent(obj, X0, starts, cost, exo, method, lohi, maxiter, options, notify,
                       offset=0, name=False, R=1):
    """One scipy run per trajectory of the batched objective; (Result over all, flat u,
    per-trajectory status and success).  ``offset``: the index of the first trajectory in
    the whole batch (of R starts per initial state); ``name``: a failure raises a
    ProblemError naming its initial state."""
    model, T, N = obj.model, obj.T, starts.shape[0]
    per_exo = exo is not None and np.ndim(exo) == 3
    runs = []
    for i in range(N):
        if runs and runs[-1].status == CALLBACK:    # stopped: the rest keep their starts
            runs.append(Result(x=starts[i].reshape(-1), status=CALLBACK, success=False,
                               nit=0, nfev=0, njev=0))
            continue
        cost_i = _take_cost(cost, slice(i, i + 1))
        obj_i = TrajectoryObjective(model, X0[i], T, cost_i,
                                    np.asarray(exo)[i] if per_exo else exo)
        sub = Notifier(None if not notify else
                       (lambda r, i=i: notify(**r, problem=offset + i)))
        try:
            runs.append(solve_once(obj_i, starts[i].reshape(-1), method, lohi, maxiter,
                                   options, sub, lambda x: x.reshape(T, -1)))
        except Exception as e:
            if name:
                raise ProblemError((offset + i) // R, e) from e
            raise
    u = np.concatenate([r.x for r in runs])
    status = np.array([r.status for r in runs])
    ok = sum(bool(r.success) for r in runs)
    res = Result(success=ok == N, status=int(status.max()),
                 message=f"{ok} of {N} independent runs converged",
                 nit=sum(r.nit for r in runs), nfev=sum(r.nfev for r in runs),
                 njev=sum(r.njev for r in runs), nhev=sum(r.get("nhev", 0) for r in runs),
                 history={"fun": np.array([obj.value(starts.reshape(-1)), obj.value(u)])})
    return res, u, status, status == CONVERGED


def _solve_batch(obj, starts, lohi, maxiter, options, notify, reshape):
    """Every trajectory of obj by batch_lbfgs; (Result, flat u, per-trajectory status and
    success)."""
    N, nb = starts.shape[0], starts[0].size
    kw = {("m" if k == "maxcor" else k): v for k, v in options.items()}

    def fun(X):
        _, g = obj(X.reshape(-1))
        return obj.last_costs.copy(), g.reshape(N, nb)
    iteration = itertools.count(1)

    def cb(X, v):
        return notify(x=reshape(X.reshape(-1)), fun=float(v.sum()), nit=next(iteration))
    r = batch_lbfgs(fun, starts.reshape(N, nb), lohi[0].ravel(), lohi[1].ravel(),
                    maxiter=500 if maxiter is None else maxiter,
                    callback=cb if notify else None, **kw)
    status = np.array([_BATCH_STATUS[int(s)] for s in r.problem_status])
    res = Result(success=bool(r.success), status=int(status.max()), message=r.message,
                 nit=int(r.nit.max()), nfev=int(r.nfev), njev=int(r.nfev),
                 history={"fun": np.asarray(r.history)})
    return res, r.x.reshape(-1), status, r.converged


def _solve_ddp(model, X0, starts, cost, exo, method, lohi, maxiter, options, notify,
               reshape):
    """Every trajectory by the batched iLQR/DDP solver; (Result, flat u, per-trajectory
    status and success, gains (N, T, m, n_aug), feedforward (N, T, m), n)."""
    settings = ddp_options(options, method.name)
    N, T, m = starts.shape
    terms = DDPTerms(model, X0, T, cost, exo)

    def cb(Z, U, J, it):
        return notify(x=reshape(U.reshape(-1)), fun=float(J.sum()), nit=it)
    out = ddp(x0=terms.initial_states(), U0=starts, lo=lohi[0], hi=lohi[1],
              **terms.callables(second_order=method.name == "ddp"),
              maxiter=100 if maxiter is None else maxiter,
              notify=cb if notify else None, **settings)
    status = out["status"]
    success = status == CONVERGED
    worst = int(status.max())
    msg = (f"{int(success.sum())} of {N} trajectories converged"
           + ("" if worst == CONVERGED else f"; the others: {STATUS[worst]}"))
    res = Result(success=bool(success.all()), status=worst, message=msg,
                 nit=int(out["nit"].max()), nfev=int(out["nfev"]), njev=int(out["njev"]),
                 history={"fun": np.asarray(out["history"])})
    return res, out["controls"].reshape(-1), status, success, out["gains"], out["feedforward"]


def check_method(obj, method, lo, hi, options):
    """What ``method`` cannot do with obj's trajectories (bounds it does not handle, too few
    residuals for 'lm', unknown batch-lbfgs or ilqr/ddp options): a ValueError, raised in
    the caller before any solve or task starts."""
    if obj.model.is_ensemble and (method.family in ("ddp", "least_squares") or method.hessp):
        raise ValueError(f"method {method.name!r} needs the model's step Jacobians, residuals or "
                         f"Hessian products, which an ensemble model does not offer; use a "
                         f"gradient method (L-BFGS-B, batch-lbfgs, ...) or a sampling planner "
                         f"(cem, mppi, cem-gd)")
    if method.family == "ddp":
        ddp_options(options, method.name)
    elif method.family == "sampling":
        sampling_options(options, method.name)
    elif method.name == "batch-lbfgs":
        bad = set(options) - set(BATCH_LBFGS_OPTIONS)
        if bad:
            raise ValueError(f"unknown option(s) {sorted(bad)} for method 'batch-lbfgs'; it "
                             f"takes {list(BATCH_LBFGS_OPTIONS)} (and maxiter=, per "
                             f"trajectory)")
    else:
        if (np.isfinite(lo).any() or np.isfinite(hi).any()) and not method.bounds:
            raise ValueError(f"method {method.name!r} does not handle bounds; use one of "
                             f"{[k for k in TRAJECTORY_METHODS if METHODS[k.lower()].bounds]}")
        if method.family == "least_squares":
            nr = obj.n_residuals                   # raises for custom cost terms
            if method.name == "lm" and nr < obj.n_vars:
                raise ValueError(f"method 'lm' needs at least as many residuals as controls "
                                 f"({nr} < {obj.n_vars}); add a control cost R > 0 or use "
                                 f"'trf'")


def _solve_sampling(model, X0, starts, cost, exo, method, lohi, maxiter, options, notify,
                    reshape, seed):
    """Every trajectory by a sampling planner (:class:`~ctrlprop.planning.sampling.Sampler`,
    seeded by ``seed``); (Result, flat u, per-trajectory status and success)."""
    N = starts.shape[0]
    sampler = Sampler(model, X0, starts.shape[1], cost, exo, method.name, options)
    rng = np.random.default_rng([check_seed(seed), 0x5A])
    maxiter = DEFAULT_SAMPLING_MAXITER[method.name] if maxiter is None else maxiter
    if method.name == "cem-gd" and maxiter < 1:
        raise ValueError(f"maxiter must be >= 1 for cem-gd (its CEM iterations give the elites "
                         f"it refines), got {maxiter}")
    note = None
    if notify:
        def note(x, fun, nit):
            return notify(x=reshape(x), fun=fun, nit=nit)
    try:
        out = sampler.solve(starts, lohi[0], lohi[1], maxiter, rng, note)
    finally:
        sampler.close()
    finite = np.isfinite(out["fun"])
    status = np.where(finite, CALLBACK if out["stopped"] else CONVERGED, NONFINITE)
    what = (f"{method.name}: {out['nit']} iterations of {sampler.P} candidates per "
            f"trajectory, {out['transitions']} model transitions")
    if method.name == "cem-gd" and "refined" in out:
        what += (f"; gradient refinement of the best {sampler.k} improved "
                 f"{int(out['refined'].sum())} of {N}")
    res = Result(success=bool(finite.all() and not out["stopped"]), status=int(status.max()),
                 message=what, nit=int(out["nit"]), nfev=int(out["nfev"]),
                 history=out["history"], transitions=out["transitions"],
                 gradient_sweeps=out["gradient_sweeps"])
    return res, out["x"].reshape(-1), status, finite & ~out["stopped"]


def _solve_all(model, obj, X0, starts, cost, exo, method, lohi, maxiter, options, notify,
               reshape, independent, scipy_cons=None, offset=0, name=False, R=1, seed=0):
    """Every trajectory of obj by ``method``; (Result, flat u, per-trajectory status and
    success, gains or None, feedforward or None)."""
    N = starts.shape[0]
    if method.family == "sampling":
        return _solve_sampling(model, X0, starts, cost, exo, method, lohi, maxiter, options,
                               notify, reshape, seed) + (None, None)
    if method.family == "ddp":
        return _solve_ddp(model, X0, starts, cost, exo, method, lohi, maxiter, options,
                          notify, reshape)
    if method.name == "batch-lbfgs":
        return _solve_batch(obj, starts, lohi, maxiter, options, notify, reshape) + (None, None)
    if independent:
        return _solve_independent(obj, X0, starts, cost, exo, method, lohi, maxiter, options,
                                  notify, offset, name, R) + (None, None)
    res = solve_once(obj, starts.reshape(-1), method, lohi, maxiter, options, notify, reshape,
                     scipy_cons)
    return (res, res.x, np.full(N, res.status), np.full(N, bool(res.success)), None, None)


def _take_rows(a, rows):
    """``a[rows]`` for a per-trajectory array (goal (N, T+1, n), exo (N, T, e)), else a."""
    return a[rows] if a is not None and np.ndim(a) == 3 else a


def _take_cost(cost, rows):
    """The cost of the trajectories ``rows`` of the batch: its goal rows, and for the
    augmented-Lagrangian term its multiplier rows (user terms get any batch as it is)."""
    term = cost.trajectory
    if isinstance(term, AugmentedLagrangian):
        term = term.take(rows)
    return TrajectoryCost(_take_rows(cost.goal, rows), cost.Q, cost.Qf, cost.R, cost.S,
                          cost.running, cost.terminal, trajectory=term)


def _trajectory_task(model, X0, starts, cost, exo, method, lohi, maxiter, options,
                     independent, offset, R):
    """One chunk of trajectories on a worker (no callback: it runs elsewhere)."""
    obj = TrajectoryObjective(model, X0, starts.shape[1], cost, exo)
    with blas_threads(1):
        return _solve_all(model, obj, X0, starts, cost, exo, method, lohi, maxiter, options,
                          Notifier(None), _identity, independent, offset=offset, name=True,
                          R=R)


def _identity(x):
    return x


def _merge_chunks(parts, one_at_a_time):
    """The chunks' (Result, u, status, success, gains, feedforward) as one batch's
    (iterations summed over one-at-a-time runs, else the most of any chunk)."""
    res = [p[0] for p in parts]
    status = np.concatenate([p[2] for p in parts])
    success = np.concatenate([p[3] for p in parts])
    L = max(len(r.history["fun"]) for r in res)
    worst, ok, N = int(status.max()), int(success.sum()), len(status)
    message = (f"{ok} of {N} independent runs converged" if one_at_a_time else
               f"{ok} of {N} trajectories converged"
               + ("" if worst == CONVERGED else f"; the others: {STATUS[worst]}"))
    out = Result(success=bool(success.all()), status=worst, message=message,
                 nit=(sum if one_at_a_time else max)(int(r.nit) for r in res),
                 nfev=sum(int(r.nfev) for r in res),
                 njev=sum(int(r.get("njev", 0) or 0) for r in res),
                 nhev=sum(int(r.get("nhev", 0) or 0) for r in res),
                 history={"fun": sum(np.pad(np.asarray(r.history["fun"], float),
                                            (0, L - len(r.history["fun"])), mode="edge")
                                     for r in res)})
    cat = (lambda i: None if parts[0][i] is None else np.concatenate([p[i] for p in parts]))
    return out, np.concatenate([p[1] for p in parts]), status, success, cat(4), cat(5)


def optimize_trajectory(model, x0, horizon, cost=None, *, u0=None, bounds=None, method=None,
                        maxiter=None, options=None, callback=None, progress=False, exo=None,
                        restarts=0, seed=0, init_scale=None, independent=False,
                        constraints=None, constraint_options=None, executor=None,
                        chunk_size=None):
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
        Initial controls; default the middle of finite bounds, else 0 moved into the
        bounds.  A u0 outside the bounds raises (it is never clipped).
    bounds : optional
        Control limits in any form of :func:`ctrlprop.core.checks.parse_bounds`:
        ``scipy.optimize.Bounds(lb, ub)`` with lb, ub scalars, (m,) or (T, m); one
        ``(lo, hi)`` pair for every control; or one pair per control.
    method : str, optional
        None (the default) is "L-BFGS-B".  Any of ``TRAJECTORY_METHODS``: gradient methods
        of ``scipy.optimize.minimize`` (Newton-CG, trust-ncg, trust-krylov and trust-constr
        get the exact Hessian product :meth:`TrajectoryObjective.hessp`), "dense-lbfgsb"
        (ctrlprop's L-BFGS-B with scipy's options and stopping rules and little per-call
        overhead, for small problems: see :mod:`ctrlprop.solvers.lbfgsb`), least-squares
        methods "lm", "trf", "dogbox" (exact Jacobian; quadratic costs only), or
        "batch-lbfgs" (every trajectory with its own L-BFGS memory, line search and
        convergence test, one vectorized rollout per evaluation; bounds by projection),
        "ilqr" or "ddp" (iLQR / DDP on every trajectory at once, each with its own
        regularization, line search and convergence test; bounds by the box QP of
        control-limited DDP; the result carries the feedback ``gains``), or a sampling
        planner "cem", "mppi" or "cem-gd" (every candidate of an iteration in one vectorized
        rollout, samples clipped into the bounds, seeded by ``seed``; cem-gd refines CEM's
        best elites by batch-lbfgs; see :mod:`ctrlprop.planning.sampling`; the result
        carries ``transitions`` and ``gradient_sweeps``).  An ensemble model takes the
        gradient methods, batch-lbfgs and the sampling planners.
    maxiter : int, optional
        Iteration limit: minimize's ``maxiter`` (TNC: function evaluations), least
        squares' ``max_nfev``, batch-lbfgs's iterations per trajectory (default 500),
        ilqr/ddp's iterations (default 100), the sampling iterations (cem and mppi 10,
        cem-gd 3).  None leaves scipy's default.
    options : dict, optional
        Other solver options (minimize's ``options``, least_squares' keywords, or for
        batch-lbfgs ``maxcor`` (10), ``gtol`` (1e-6), ``ftol`` (1e-10), ``maxls`` (20);
        for ilqr/ddp ``mu0`` (0), ``mu_min`` (1e-6), ``mu_max`` (1e10), ``mu_factor`` (2),
        the regularization schedule of Q_uu; ``tol`` (1e-10: converged when the full
        step's expected reduction is below tol (1 + J)); ``maxls`` (10 line-search steps
        1, 1/2, ...); ``accept`` (0.1, of the expected reduction); ``qp_maxiter`` (100);
        for cem ``population`` (400), ``elites`` (40), ``alpha`` (0.1), ``init_std`` (None:
        a quarter of the bound range, 1 where unbounded), ``min_std`` (1e-3), ``noise_beta``
        (0), ``keep_elites`` (0); for mppi ``population``, ``temperature`` (1), ``init_std``,
        ``noise_beta``; for cem-gd cem's and ``refine`` (5), ``gd_maxiter`` (20),
        ``gd_options`` (batch-lbfgs options); for all three ``workers`` (1: the threads a
        population's rollout is split across, see :mod:`ctrlprop.planning.sampling`)).
        Unknown keys raise a ValueError listing the accepted ones.  Iteration limits go
        through ``maxiter``.
    callback : callable, optional
        ``callback(intermediate_result)`` after every iteration, with a Result holding
        ``x`` (the controls, shape (T, m), (B, T, m), with an axis of starts before T
        under ``restarts``), ``fun`` (the solver's objective) and ``nit``; with
        ``independent=True`` also ``problem`` (the trajectory being solved).  Returning
        True or raising StopIteration stops the solve.
    progress : bool
        Show a progress line (iteration, objective, elapsed time); needs tqdm.
    exo : array_like, optional
        Exogenous inputs (see :class:`Dynamics`).
    restarts : int
        Extra random starts per initial state (uniform within two finite bounds, else
        u0 + N(0, 1) clipped; seeded by ``seed``); the best (lowest J) is returned and all
        are kept.
    seed : int
        Seeds the random starts and the sampling planners.
    init_scale : float, optional
        Draw every start as u0 + ``init_scale`` N(0, 1) clipped to the bounds instead
        (starts near u0, also for controls with two finite bounds).
    independent : bool
        With a scipy method: False (default) solves all trajectories as one summed
        problem; True gives each trajectory its own solver run, one after another.
        "batch-lbfgs", "ilqr" and "ddp" always treat them independently.
    constraints : StateBounds, PathConstraint or list of them, optional
        Inequalities ``c(x_{t+1}, u_t) <= 0`` for t = 0..T-1
        (:mod:`ctrlprop.objectives.constraints`).  SLSQP and trust-constr get them as
        scipy constraints with their exact Jacobians (through the state Jacobians of the
        rollout); the other minimize methods, batch-lbfgs, ilqr and ddp solve a sequence
        of augmented-Lagrangian problems (multiplier update ``lam <- max(0, lam + rho c)``,
        ``rho`` multiplied by ``rho_factor`` while the violation does not fall to a quarter)
        warm-started from each other.  Least-squares methods do not take them.
    constraint_options : dict, optional
        For the augmented Lagrangian: ``tol`` (1e-6: the largest violation accepted),
        ``outer_maxiter`` (20), ``rho`` (10: the first penalty weight), ``rho_factor``
        (10).  Unknown keys raise.
    executor : concurrent.futures.Executor, optional
        Solve the initial states in chunks on this executor (``ProcessPoolExecutor``,
        ``dask.distributed.Client.get_executor()``, ...), each chunk with all its
        restarts; for methods that treat trajectories independently ("batch-lbfgs",
        "ilqr", "ddp", or a scipy method with ``independent=True``).  The result is the
        serial run's with the same ``chunk_size``, bit for bit, and the unchunked run's to
        BLAS rounding (:mod:`ctrlprop.core.parallel`); with constraints the
        augmented-Lagrangian loop stays here and each inner solve is fanned out.  Not with
        a callback (it would run on the workers).  A failed task raises a
        :class:`~ctrlprop.core.parallel.ParallelError` naming its initial states and
        holding the other chunks' results.
    chunk_size : int, optional
        Initial states per chunk.  Default: without an executor the whole batch at once;
        with one, at most 16 chunks, of at least 256 initial states for the batched
        methods (their per-trajectory result depends on the batch width at the level of
        BLAS rounding), of at least 1 for ``independent=True``.  Given without an
        executor, the chunks are solved here one after another: the callback sees each
        chunk's iterations with ``problems`` (its initial states), and a stop skips the
        remaining chunks (they keep their starts, status 2).

    Returns
    -------
    TrajectoryResult

    Warns
    -----
    ConvergenceWarning
        When the solve ends without success (not when the callback stopped it).
    """
    check_model(model)
    T = check_horizon(horizon)
    method = resolve(method, TRAJECTORY_METHODS, "L-BFGS-B", "optimize_trajectory")
    if constraint_options is not None and constraints is None:
        raise ValueError("constraint_options were given without constraints")
    if constraints is not None and model.is_ensemble:
        raise ValueError("constraints are not offered for an ensemble model (each member's "
                         "trajectory would need its own multipliers); use the disagreement "
                         "penalty or a single-network model")
    if method.family == "sampling" and (constraints is not None or executor is not None
                                        or chunk_size is not None):
        raise ValueError(f"method {method.name!r} samples every trajectory's candidates in one "
                         f"rollout here: it does not take constraints, executor= or "
                         f"chunk_size= (bounds it does take); use a gradient method for "
                         f"constraints")
    if constraints is not None and method.name not in ("SLSQP", "trust-constr"):
        return _augmented_lagrangian(
            model, x0, T, cost, constraints, constraint_options, method,
            dict(u0=u0, bounds=bounds, maxiter=maxiter, options=options, callback=callback,
                 progress=progress, exo=exo, seed=seed, init_scale=init_scale,
                 independent=independent, executor=executor, chunk_size=chunk_size),
            restarts)
    options, maxiter = solver_options(options, maxiter)
    notify = Notifier(callback)
    X0, batched = model.check_x0(x0)
    B, m, n = X0.shape[0], model.n_controls, model.n_states
    R = check_int(restarts, "restarts", 0) + 1
    lo, hi = trajectory_bounds(bounds, T, m)
    U0 = check_controls_start(model, u0, lo, hi, T, B)
    cost = as_cost(cost)
    if not isinstance(independent, (bool, np.bool_)):
        raise TypeError(f"independent must be True or False, got {independent!r}")
    if R > 1:                                     # every start is one more trajectory
        cost, exo = repeat_cost(cost, R), repeat_exo(exo, R)
    starts = random_starts(U0, lo, hi, R - 1, seed, init_scale).reshape(B * R, T, m)
    X0 = np.repeat(X0, R, axis=0)
    obj = TrajectoryObjective(model, X0, T, cost, exo)
    shape = ((B,) if batched else ()) + ((R,) if R > 1 else ()) + (T, m)
    reshape = lambda x: np.reshape(x, shape)          # noqa: E731
    executor = check_executor(executor, notify.callback)
    independent_runs = method.family == "ddp" or method.name == "batch-lbfgs" or independent
    if executor is not None and not independent_runs:
        raise ValueError(f"executor= fans out independent trajectories; method "
                         f"{method.name!r} solves the batch as one summed problem: pass "
                         f"independent=True, or use 'batch-lbfgs', 'ilqr' or 'ddp'")
    check_method(obj, method, lo, hi, options)
    one_at_a_time = independent and method.family != "ddp" and method.name != "batch-lbfgs"
    size = choose_chunk(B, chunk_size, 1 if one_at_a_time else BATCH_CHUNK)
    if not independent_runs or (executor is None and chunk_size is None):
        size = B                    # one summed problem; serial by default: the whole batch
    parts = chunks(B, size)
    scipy_cons = None
    if constraints is not None:
        if independent:
            raise ValueError("constraints with SLSQP/trust-constr solve the batch as "
                             "one problem: leave independent=False")
        scipy_cons = _scipy_constraints(obj, as_constraints(constraints, n, m))
    rows = lambda p: slice(p.start * R, p.stop * R)          # noqa: E731
    lohi = (lo, hi)
    with Progress(progress, "optimize_trajectory",
                  B if executor is not None else maxiter,
                  unit="state" if executor is not None else "it") as bar, blas_threads(1):
        if len(parts) == 1 and executor is None:
            res, u, status, success, gains, ff = _solve_all(
                model, obj, X0, starts, cost, exo, method, lohi, maxiter, options,
                notify.with_bar(bar), reshape, independent, scipy_cons, seed=seed)
        elif executor is None:                      # serial chunks: the callback sees each
            out, note = [], notify.with_bar(bar)
            for p in parts:
                r_ = rows(p)
                c_p = _take_cost(cost, r_)
                shp = (len(p),) + shape[1:] if batched else shape
                sub = Notifier(None if not note else
                               (lambda r, p=p: note(**r, problems=p)))
                sub.bar = note.bar
                o = _solve_all(model, TrajectoryObjective(model, X0[r_], T, c_p,
                                                          _take_rows(exo, r_)),
                               X0[r_], starts[r_], c_p, _take_rows(exo, r_), method, lohi,
                               maxiter, options, sub,
                               lambda x, shp=shp: np.reshape(x, shp), independent,
                               offset=p.start * R, R=R)
                out.append(o)
                if np.any(o[2] == CALLBACK):      # stopped: the rest keep their starts
                    rest = starts[p.stop * R:]
                    if len(rest):
                        r_ = slice(p.stop * R, B * R)
                        J0 = TrajectoryObjective(model, X0[r_], T, _take_cost(cost, r_),
                                                 _take_rows(exo, r_)).value(rest.reshape(-1))
                        kept = Result(status=CALLBACK, nit=0, nfev=0,
                                      history={"fun": np.array([J0])})
                        g = None if o[4] is None else np.zeros((len(rest),) + o[4].shape[1:])
                        f = None if o[5] is None else np.zeros((len(rest),) + o[5].shape[1:])
                        out.append((kept, rest.reshape(-1), np.full(len(rest), CALLBACK),
                                    np.zeros(len(rest), bool), g, f))
                    break
            res, u, status, success, gains, ff = _merge_chunks(out, one_at_a_time)
        else:
            args = [(model, X0[rows(p)], starts[rows(p)],
                     _take_cost(cost, rows(p)), _take_rows(exo, rows(p)),
                     method, lohi, maxiter, options, independent, p.start * R, R)
                    for p in parts]
            done = None if bar.bar is None else (lambda k: bar.update(k))
            try:
                out = run_tasks(executor, _trajectory_task, args, parts,
                                "optimize_trajectory", done)
            except ParallelError as e:              # the chunks that ran, as Results
                e.results = [None if r is None else Result(
                    problems=p, all_controls=r[1].reshape(len(p), R, T, m),
                    all_status=r[2].reshape(len(p), R), all_success=r[3].reshape(len(p), R))
                    for p, r in zip(parts, e.results)]
                raise
            res, u, status, success, gains, ff = _merge_chunks(out, one_at_a_time)
    S = obj.states(u).reshape(B, R, T + 1, n)
    U = u.reshape(B, R, T, m)
    J = obj.costs(u).reshape(B, R)
    best = np.argmin(np.where(np.isfinite(J), J, np.inf), axis=1)
    k = np.arange(B)
    st, ct, fj = S[k, best], U[k, best].copy(), J[k, best]
    code = status.reshape(B, R)[k, best]
    ok = success.reshape(B, R)[k, best]
    out = TrajectoryResult(
        x=ct if batched else ct[0], controls=ct if batched else ct[0],
        states=st if batched else st[0], fun=fj if batched else float(fj[0]),
        success=ok if batched else bool(ok[0]), status=code if batched else int(code[0]),
        message=str(res.message), nit=int(res.nit), nfev=int(res.nfev),
        njev=int(res.get("njev", 0) or 0), nhev=int(res.get("nhev", 0) or 0),
        history=res.history, method=method.name)
    if method.family == "sampling":
        out.transitions, out.gradient_sweeps = res.transitions, res.gradient_sweeps
    if gains is not None:
        nz = gains.shape[-1]
        K = gains.reshape(B, R, T, m, nz)[k, best]
        Kp = K[..., n:] if nz > n else np.zeros((B, T, m, m))
        kf = ff.reshape(B, R, T, m)[k, best]
        out.gains, out.gains_prev, out.feedforward = (
            (K[..., :n].copy(), Kp.copy(), kf.copy()) if batched
            else (K[0, ..., :n].copy(), Kp[0].copy(), kf[0].copy()))
    if constraints is not None:
        v = as_constraints(constraints, n, m).violation(st, ct)
        out.constraint_violation = v if batched else float(v[0])
    if R > 1:
        out.all_states, out.all_controls, out.all_fun, out.best = (
            (S, U.copy(), J, best) if batched else (S[0], U[0].copy(), J[0], int(best[0])))
    warn_unless_success(out, "optimize_trajectory")
    return out



# ---------------------------------------------------------------- constraints
def _scipy_constraints(obj, cons):
    """``c(x_{t+1}, u_t) <= 0`` of every trajectory of obj as one scipy NonlinearConstraint
    on the flat controls, with its exact Jacobian ``c_x dx_{t+1}/dU + c_u``."""
    B, T, m = obj.B, obj.T, obj.model.n_controls
    n, K = obj.model.n_states, cons.K

    def parts(u):
        S = obj.states(u).reshape(B, T + 1, n)
        return cons(S[:, 1:], np.reshape(u, (B, T, m)))

    def fun(u):
        return parts(u)[0].reshape(-1)

    def jac(u):
        _, cx, cu = parts(u)
        JX = obj.state_jacobian(u)                                   # (B, T, n, T m)
        J = np.zeros((B, T, K, B, T * m))
        for b in range(B):
            blk = np.matmul(cx[b], JX[b])                            # (T, K, T m)
            for t in range(T):
                blk[t, :, t * m:(t + 1) * m] += cu[b, t]
            J[b, :, :, b] = blk
        return J.reshape(B * T * K, B * T * m)
    return NonlinearConstraint(fun, -np.inf, 0.0, jac=jac)


AL_OPTIONS = {"tol": 1e-6, "outer_maxiter": 20, "rho": 10.0, "rho_factor": 10.0}


def _al_options(options):
    """The augmented-Lagrangian settings from ``constraint_options``, checked."""
    if options is None:
        return dict(AL_OPTIONS)
    if not isinstance(options, dict):
        raise TypeError(f"constraint_options must be a dict, got {type(options).__name__}")
    bad = sorted(set(options) - set(AL_OPTIONS))
    if bad:
        raise ValueError(f"unknown constraint_options {bad}; accepted: {list(AL_OPTIONS)}")
    out = dict(AL_OPTIONS)
    for k, v in options.items():
        if k == "outer_maxiter":
            out[k] = check_int(v, "constraint_options['outer_maxiter']", 1)
        else:
            out[k] = check_nonneg(v, f"constraint_options[{k!r}]")
    if out["rho"] <= 0 or out["rho_factor"] <= 1:
        raise ValueError(f"constraint_options need rho > 0 and rho_factor > 1, got "
                         f"rho={out['rho']}, rho_factor={out['rho_factor']}")
    return out


def _augmented_lagrangian(model, x0, T, cost, constraints, constraint_options, method, kw,
                          restarts):
    """optimize_trajectory with constraints by the augmented Lagrangian (see its docs)."""
    if method.family == "least_squares":
        raise ValueError(f"method {method.name!r} cannot take constraints (their penalty has "
                         f"no residual form); use a minimize method, 'ilqr' or 'ddp'")
    n, m = model.n_states, model.n_controls
    cons = as_constraints(constraints, n, m)
    opts = _al_options(constraint_options)
    X0, batched = model.check_x0(x0)
    B = X0.shape[0]
    base = as_cost(cost)
    lam = np.zeros((1, T, cons.K))
    rho, prev, viol_hist, res = opts["rho"], np.inf, [], None
    nit = nfev = 0
    for it in range(opts["outer_maxiter"]):
        term = AugmentedLagrangian(cons, lam, rho, base.trajectory)
        c_al = TrajectoryCost(base.goal, base.Q, base.Qf, base.R, base.S, base.running,
                              base.terminal, trajectory=term)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            res = optimize_trajectory(model, x0, T, c_al, method=method.name,
                                      restarts=restarts if it == 0 else 0, **kw)
        nit += int(res.nit)
        nfev += int(res.nfev)
        S = np.reshape(res.states, (B, T + 1, n))
        U = np.reshape(res.controls, (B, T, m))
        c = cons.values(S, U)
        viol = np.maximum(c, 0.0).max(axis=(1, 2))
        viol_hist.append(float(viol.max()))
        lam = np.maximum(0.0, lam + rho * c)
        kw["u0"] = res.controls
        if viol.max() <= opts["tol"]:
            break
        if viol.max() > 0.25 * prev:
            rho *= opts["rho_factor"]
        prev = viol.max()
    obj = TrajectoryObjective(model, X0, T, base, kw["exo"])
    J = obj.costs(U.reshape(-1))
    ok = (viol <= opts["tol"]) & np.atleast_1d(res.success)
    out = TrajectoryResult(res)
    out.update(fun=J if batched else float(J[0]), constraint_violation=viol if batched
               else float(viol[0]), multipliers=lam if batched else lam[0],
               nit=nit, nfev=nfev, success=ok if batched else bool(ok[0]),
               outer_iterations=it + 1, method=method.name)
    out.history = dict(res.history, violation=np.array(viol_hist))
    if not ok.all():
        worst = float(viol.max())
        out.message = (f"after {it + 1} augmented-Lagrangian iterations the largest "
                       f"violation is {worst:.3g} (tol {opts['tol']:g})"
                       if worst > opts["tol"] else str(res.message))
        out.status = np.where(ok, CONVERGED, MAXITER) if batched else \
            (CONVERGED if ok[0] else MAXITER)
    else:
        out.message = (f"constraints met (largest violation {float(viol.max()):.3g}) after "
                       f"{it + 1} augmented-Lagrangian iterations")
    warn_unless_success(out, "optimize_trajectory")
    return out
