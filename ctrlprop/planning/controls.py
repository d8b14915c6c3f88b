"""Solving control problems, one or many at once: :func:`optimize_controls`.

It builds a :class:`~ctrlprop.ControlObjective` for K problems (targets, with their
non-control inputs), chooses the start points of every run (``u0``, ``restarts`` random
points, or the best of ``screen`` screened points; :mod:`ctrlprop.solvers.starts`), and
solves with a scipy method (one problem and one start at a time) or with the batched
projected Levenberg-Marquardt of :mod:`ctrlprop.solvers.batch_lm` (all problems and starts
in one vectorized run).
"""

import numpy as np

from ..core.checks import as_float, check_int, check_within, parse_bounds
from ..core.parallel import (BATCH_CHUNK, ParallelError, ProblemError, check_executor,
                             choose_chunk, chunks, run_tasks)
from ..core.threads import auto_threads, blas_threads
from ..objectives.control import ControlObjective
from ..solvers.batch_lm import LM_MESSAGES, LM_OPTIONS, LM_STATUS, solve_lm
from ..solvers.methods import resolve
from ..solvers.progress import Progress
from ..solvers.result import CALLBACK, CONVERGED, STATUS, Notifier, Result, warn_unless_success
from ..solvers.scipy_solve import run_least_squares, run_minimize, solver_options
from ..solvers.starts import default_start, random_starts

__all__ = ["optimize_controls", "ControlResult", "CONTROL_METHODS"]

CONTROL_METHODS = ("batch-lm", "L-BFGS-B", "dense-lbfgsb", "BFGS", "CG", "TNC", "SLSQP",
                   "Newton-CG", "trust-ncg", "trust-krylov", "trust-constr", "trust-exact",
                   "dogleg", "lm", "trf", "dogbox")


class ControlResult(Result):
    """Result of :func:`optimize_controls` (a :class:`~ctrlprop.Result`).

    For one problem (a batch of K adds a leading K axis to every per-problem field):

    x, controls : ndarray (m,)      the best controls found (``x`` is ``controls``)
    outputs : ndarray (n_outputs,)  the model output there
    fun : float                     E at ``controls``
    error : float                   ``|outputs - target|``, unweighted
    violation : float               largest output-bound violation (0 without bounds)
    success, status                 of the run that produced ``controls``
    message : str                   a summary (per-problem messages in ``messages``)
    nit : int                       iterations of that run
    nfev : int                      evaluations (batched evaluations for "batch-lm")
    history : dict                  ``"fun"``: the objective summed over every problem and
                                    start, at the start and after every iteration (for
                                    scipy methods, run after run, with ``"run"`` giving the
                                    run of each entry)
    all_controls (S, m), all_fun (S,), all_success (S,), all_status (S,), starts (S, m),
    best : every run (S = restarts + 1), where it started, the index of the returned one
    method : str
    """


def _as_start(u0, lo, hi):
    """The (K, m) first start: u0 checked (inside the bounds, never clipped) or the default."""
    K, m = lo.shape
    if u0 is None:
        return default_start(lo, hi)
    U = as_float(u0, "u0")
    if U.shape not in ((m,), (K, m)):
        raise ValueError(f"u0 must have shape ({m},)" + (f" or ({K}, {m})" if K > 1 else "")
                         + f", got {U.shape}")
    if not np.all(np.isfinite(U)):
        raise ValueError("u0 contains NaN or inf")
    if U.ndim == 1:                                    # one start shared by every problem
        for k in range(K):
            check_within(U, lo[k], hi[k], "u0")
    return check_within(np.array(np.broadcast_to(U, (K, m))), lo, hi, "u0")


def _starts(obj, U0, lo, hi, restarts, screen, seed, init_scale):
    """Start points (K, S, m) of every run, S = restarts + 1.

    Without ``screen``: U0 and ``restarts`` random points per problem.  With ``screen = C
    >= restarts``: E is evaluated (forward passes only) at U0 and C random points, and the
    S best of them start the runs.
    """
    R, C = check_int(restarts, "restarts", 0), check_int(screen, "screen", 0)
    if C and C < R:
        raise ValueError(f"screen ({C}) must be at least restarts ({R}): the runs start "
                         "from the best screened points")
    pool = random_starts(U0, lo, hi, C or R, seed, init_scale)             # (K, P, m)
    if not C:
        return pool
    F = np.stack([obj.per_problem(pool[:, j], grad=False)[0]
                  for j in range(pool.shape[1])], axis=1)                   # (K, P)
    F[~np.isfinite(F)] = np.inf
    best = np.argsort(F, axis=1, kind="stable")[:, :R + 1]                 # (K, S)
    return np.take_along_axis(pool, best[:, :, None], axis=1)


def _solve_scipy(obj, starts, lo, hi, method, maxiter, options, notify, offset=0, name=False):
    """Every (problem, start) run by a scipy method, one after another.

    ``offset``: the index of obj's first problem in the whole batch (for the callback's
    ``problem`` and history's ``run``); ``name``: raise a ProblemError naming the problem
    when one fails (for tasks on an executor).
    """
    K, S, m = starts.shape
    bounded = bool(np.isfinite(lo).any() or np.isfinite(hi).any())
    one = obj.single()
    U = starts.copy()                   # runs a callback stop skips keep their starts
    status, nit = np.full((K, S), CALLBACK), np.zeros((K, S), int)
    success, messages = np.zeros((K, S), bool), np.full((K, S), STATUS[CALLBACK], object)
    hist, run_of, nfev, runs = [], [], 0, []
    for k in range(K):
        one.select(k)
        cons = None
        if method.constraints and obj.n_output_bounds:
            cons = [one.constraints(hessian=method.name == "trust-constr")]
        b = (lo[k], hi[k]) if bounded else None
        for s in range(S):
            sub = Notifier(None if not notify else
                           (lambda r, k=k, s=s: notify(**r, problem=offset + k, start=s)))
            try:
                if method.family == "least_squares":
                    res = run_least_squares(method, one.residuals, one.jacobian, starts[k, s],
                                            bounds=b, maxiter=maxiter, options=options,
                                            notify=sub)
                else:
                    res = run_minimize(method, one, starts[k, s], bounds=b, hessp=one.hessp,
                                       hess=one.hess, constraints=cons, maxiter=maxiter,
                                       options=options, notify=sub)
            except Exception as e:
                if name:
                    raise ProblemError(offset + k, e) from e
                raise
            U[k, s] = np.clip(res.x, lo[k], hi[k])
            status[k, s], success[k, s], nit[k, s] = res.status, res.success, res.nit
            messages[k, s], nfev = res.message, nfev + res.nfev
            hist.append(res.history["fun"])
            run_of.append(np.full(len(res.history["fun"]), (offset + k) * S + s))
            runs.append(res)
            if res.status == CALLBACK:
                break
        else:
            continue
        break
    history = {"fun": np.concatenate(hist), "run": np.concatenate(run_of)}
    return U, status, success, nit, messages, nfev, history


def _solve_batch(obj, starts, lo, hi, maxiter, options, notify, n_weights, offset=None):
    """Every (problem, start) column at once by solve_lm (``offset``: as for _solve)."""
    K, S, m = starts.shape
    extra = {} if offset is None else {"problems": range(offset, offset + K)}

    def cb(it, Uc, Ec):
        return notify(x=Uc.reshape(K, S, m), fun=float(np.nansum(Ec)), nit=it, **extra)
    with blas_threads(auto_threads(n_weights, S * K)):
        out = solve_lm(obj, starts.reshape(K * S, m), np.repeat(lo, S, axis=0),
                       np.repeat(hi, S, axis=0), None if S == 1 else np.repeat(np.arange(K), S),
                       maxiter=100 if maxiter is None else maxiter,
                       callback=cb if notify else None,
                       **{**LM_OPTIONS, **options})
    U = out["u"].reshape(K, S, m)
    code = np.array([LM_STATUS[c] for c in out["status"]]).reshape(K, S)
    if out["stopped"]:
        code[out["status"].reshape(K, S) == 0] = CALLBACK
    messages = np.array([LM_MESSAGES[c] if LM_STATUS[c] != CALLBACK else STATUS[CALLBACK]
                         for c in out["status"]], dtype=object).reshape(K, S)
    messages[code == CALLBACK] = STATUS[CALLBACK]
    return (U, code, code == CONVERGED, out["nit"].reshape(K, S), messages, out["nfev"],
            {"fun": out["history"]})


def _check_method(obj, method, lo, hi, options):
    """What ``method`` cannot do with obj's problems, raised here in the caller (not in
    tasks on an executor)."""
    if method.name == "batch-lm":
        bad = set(options) - set(LM_OPTIONS)
        if bad:
            raise ValueError(f"unknown batch-lm option(s) {sorted(bad)}; expected "
                             f"{sorted(LM_OPTIONS)} (and maxiter=)")
        return
    if (np.isfinite(lo).any() or np.isfinite(hi).any()) and not method.bounds:
        raise ValueError(f"method {method.name!r} does not handle bounds; use one of "
                         "'batch-lm', 'L-BFGS-B', 'TNC', 'SLSQP', 'trust-constr', 'trf', "
                         "'dogbox'")
    if method.name == "lm" and obj.n_residuals < obj.m:
        raise ValueError(f"method 'lm' needs at least as many residuals ({obj.n_residuals}) "
                         f"as controls ({obj.m}); add a control cost R or use 'trf'")


def _solve(obj, starts, lo, hi, method, maxiter, options, notify, n_weights, offset=None,
           name=False):
    """All runs of obj's problems by ``method``; (U, status, success, nit, messages, nfev,
    history).  ``offset``: None for the whole batch, else the index of obj's first problem
    in it (a chunk)."""
    if method.name == "batch-lm":
        return _solve_batch(obj, starts, lo, hi, maxiter, options, notify, n_weights, offset)
    with blas_threads(1):
        return _solve_scipy(obj, starts, lo, hi, method, maxiter, options, notify,
                            offset or 0, name)


def _control_task(obj, starts, lo, hi, method, maxiter, options, offset):
    """One chunk of problems on a worker (no callback: it runs elsewhere), on one BLAS
    thread (the workers share the machine's cores)."""
    with blas_threads(1):
        return _solve(obj, starts, lo, hi, method, maxiter, options, Notifier(None), 0,
                      offset, name=True)


def _merge(parts):
    """The chunks' (U, status, success, nit, messages, nfev, history) as one batch's.

    Histories: the scipy runs' entries one after another; batch-lm's per-iteration sums
    added over the chunks, a chunk that stopped earlier counting with its last value."""
    U, status, success, nit, messages = (np.concatenate([p[i] for p in parts])
                                         for i in range(5))
    nfev = sum(int(p[5]) for p in parts)
    hs = [p[6] for p in parts]
    if "run" in hs[0]:
        history = {k: np.concatenate([h[k] for h in hs]) for k in ("fun", "run")}
    else:
        L = max(len(h["fun"]) for h in hs)
        history = {"fun": sum(np.pad(h["fun"], (0, L - len(h["fun"])), mode="edge")
                              for h in hs)}
    return U, status, success, nit, messages, nfev, history


def _solve_chunked(obj, starts, lo, hi, method, maxiter, options, notify, n_weights,
                   executor, size, bar):
    """The problems in chunks of ``size``: here (with the callback) or on ``executor``."""
    K, S, m = starts.shape
    parts = chunks(K, size)
    if executor is None and len(parts) == 1:
        return _solve(obj, starts, lo, hi, method, maxiter, options, notify, n_weights)
    if executor is None:                            # serial: the callback sees every chunk
        out = []
        for p in parts:
            sl = slice(p.start, p.stop)
            r = _solve(obj.take(sl), starts[sl], lo[sl], hi[sl], method, maxiter, options,
                       notify, n_weights, p.start)
            out.append(r)
            if np.any(r[1] == CALLBACK):            # stopped: the rest keep their starts
                rest = slice(p.stop, K)
                if p.stop < K:
                    if "run" in r[6]:                # scipy runs: no history entries
                        h = {"fun": np.zeros(0), "run": np.zeros(0, int)}
                    else:                            # batch-lm: their E at the starts
                        sub = obj.take(rest)
                        h = {"fun": np.array([sum(float(np.nansum(
                            sub.per_problem(starts[rest, s], grad=False)[0]))
                            for s in range(S))])}
                    n = K - p.stop
                    out.append((starts[rest], np.full((n, S), CALLBACK),
                                np.zeros((n, S), bool), np.zeros((n, S), int),
                                np.full((n, S), STATUS[CALLBACK], dtype=object), 0, h))
                break
        return _merge(out)
    args = [(obj.take(slice(p.start, p.stop)), starts[p.start:p.stop], lo[p.start:p.stop],
             hi[p.start:p.stop], method, maxiter, options, p.start) for p in parts]
    done = None if bar.bar is None else (lambda n: bar.update(n))
    try:
        return _merge(run_tasks(executor, _control_task, args, parts, "optimize_controls",
                                done))
    except ParallelError as e:                      # the chunks that ran, as Results
        e.results = [None if r is None else Result(
            problems=p, all_controls=r[0], all_status=r[1], all_success=r[2], nit=r[3])
            for p, r in zip(parts, e.results)]
        raise


def optimize_controls(net, target, inputs=None, control=None, *, u0=None, bounds=None, Q=None,
                      R=0.0, u_rest=None, output_bounds=None, penalty=1e4, hessian="exact",
                      method=None, maxiter=None, options=None, callback=None, progress=False,
                      restarts=0, seed=0, init_scale=None, screen=0, executor=None,
                      chunk_size=None):
    """Find the controls that drive a frozen network's outputs to a target.

    Minimises the :class:`~ctrlprop.ControlObjective`
    ``E(u) = 1/2 (y - y*)^T Q (y - y*) + 1/2 (u - u_rest)^T R (u - u_rest)`` (plus the
    output-bound penalty) for one problem, or for K independent problems at once.

    Parameters
    ----------
    net : Network
    target : array_like, shape (n_outputs,) or (K, n_outputs)
    inputs : array_like, optional
        The non-control inputs, (n_inputs - m,) or (n_inputs,), or (K, .); see
        :class:`~ctrlprop.ControlObjective`.
    control : sequence of int, optional
        Input indices that are the controls; default every input.
    u0 : array_like, shape (m,) or (K, m), optional
        Start.  Default: the middle of the bounds where both ends are finite, else 0
        moved into the bounds.  A start outside the bounds raises (it is never clipped).
    bounds : optional
        Control bounds in any form of :func:`ctrlprop.core.checks.parse_bounds`:
        ``scipy.optimize.Bounds(lb, ub)`` (lb, ub scalars, (m,) or (K, m) per problem),
        one ``(lo, hi)`` pair for every control, or one pair per control.
    Q, R, u_rest : optional
        Output weights (default 1), control weights (default 0) and the control that
        costs nothing (default 0): scalars, vectors (diagonal) or PSD matrices.
    output_bounds : optional
        Bounds on outputs, in the same forms (plus ``{output: (lo, hi)}``).  SLSQP and
        trust-constr enforce them exactly (nonlinear constraints with exact Jacobians);
        every other method through the quadratic penalty ``penalty``.
    penalty : float
        Weight of that penalty.
    hessian : {"exact", "gauss-newton"}
        The Hessian given to Newton-CG, trust-* and dogleg (dogleg needs it positive
        definite: use "gauss-newton" with R > 0).
    method : str, optional
        None (the default) is "batch-lm" for a batch and "L-BFGS-B" for one problem.
        Any of ``CONTROL_METHODS``: "batch-lm" (all problems and starts in one vectorized
        projected Levenberg-Marquardt run), a gradient method of
        ``scipy.optimize.minimize`` (exact ``hessp`` / ``hess`` where the method uses
        them), "dense-lbfgsb" (:mod:`ctrlprop.solvers.lbfgsb`) or a least_squares method ("lm", "trf", "dogbox"); scipy methods solve one
        problem and start at a time.  Bounds need batch-lm, L-BFGS-B, TNC, SLSQP,
        trust-constr, trf or dogbox.
    maxiter : int, optional
        Iteration limit per run: batch-lm's steps per problem (default 100), minimize's
        ``maxiter`` (TNC: evaluations), least_squares' ``max_nfev``.  None: the default.
    options : dict, optional
        Other solver options: minimize's ``options``, least_squares' keywords, or for
        batch-lm ``ftol``, ``xtol``, ``gtol`` (1e-10) and ``lambda0`` (1.0; 1e-3 suits
        warm starts near the solution).  Iteration limits go through ``maxiter``.
    callback : callable, optional
        ``callback(intermediate_result)`` after every iteration: a Result with ``x``
        (batch-lm: every column's controls (K, S, m); scipy methods: the run's controls
        (m,) with ``problem`` and ``start``), ``fun`` and ``nit``.  True or StopIteration
        stops (scipy methods: the remaining runs are skipped and keep their starts).
    progress : bool
        Show a progress line (needs tqdm).
    restarts : int
        Extra runs per problem from random points (uniform within two finite bounds, else
        ``u0 + N(0, 1)`` clipped), seeded by ``seed``; the run with the lowest E is
        returned and all are kept (``all_controls``...).
    seed : int
    init_scale : float, optional
        Draw every random point as ``u0 + init_scale * N(0, 1)`` clipped to the bounds
        instead (points near u0, also for controls with two finite bounds).
    screen : int
        If > 0, E is first evaluated (forward passes only) at u0 and ``screen`` random
        points per problem, and the ``restarts + 1`` runs start from the best of them.
    executor : concurrent.futures.Executor, optional
        Solve the batch in chunks on this executor (``ProcessPoolExecutor``,
        ``dask.distributed.Client.get_executor()``, ...); each task is shipped the frozen
        network and its chunk's problems.  The result is the serial run's with the same
        ``chunk_size``, bit for bit, and the unchunked run's to BLAS rounding
        (:mod:`ctrlprop.core.parallel`).  A callback cannot be combined with it (it would
        run on the workers); ``progress`` then counts finished problems.  A failed task
        raises a :class:`~ctrlprop.core.parallel.ParallelError` that names its problems
        and holds the other chunks' results.
    chunk_size : int, optional
        Problems per chunk.  Default: without an executor the whole batch at once; with
        one, at most 16 chunks of at least 256 problems for "batch-lm" (whose
        per-problem result depends on the batch width at the level of BLAS rounding), of
        at least 1 for scipy methods (one problem at a time: any chunking gives the same
        bits).  Given without an executor, the chunks are solved here one after another:
        the callback sees each chunk's iterations (batch-lm: ``x`` of the chunk and
        ``problems``, its indices; scipy methods: ``problem`` as always), and a stop
        skips the remaining chunks (they keep their starts, status 2).

    Returns
    -------
    ControlResult
        ``controls`` is always inside the bounds (a scipy result a rounding error outside
        is projected back) and ``fun``, ``outputs`` are evaluated there.

    Warns
    -----
    ConvergenceWarning
        When the returned run of some problem did not converge (not when the callback
        stopped it).
    """
    # exact output-bound constraints replace the penalty for the methods that take them
    given = None if method is None else resolve(method, CONTROL_METHODS, method,
                                                "optimize_controls")
    exact = given is not None and given.constraints and output_bounds is not None
    obj = ControlObjective(net, target, inputs, control, Q, R, u_rest, output_bounds,
                           0.0 if exact else penalty, hessian)
    K, m = obj.K, obj.m
    method = given or resolve(None, CONTROL_METHODS, "batch-lm" if obj.batched else "L-BFGS-B",
                              "optimize_controls")
    options, maxiter = solver_options(options, maxiter)
    notify = Notifier(callback)
    lo, hi = parse_bounds(bounds, m, (K, m), name="bounds", what="controls")
    U0 = _as_start(u0, lo, hi)
    executor = check_executor(executor, notify.callback)
    _check_method(obj, method, lo, hi, options)
    size = choose_chunk(K, chunk_size, BATCH_CHUNK if method.name == "batch-lm" else 1)
    if executor is None and chunk_size is None:
        size = K                    # serial by default: the whole batch at once
    starts = _starts(obj, U0, lo, hi, restarts, screen, seed, init_scale)  # (K, S, m)
    S = starts.shape[1]
    with Progress(progress, "optimize_controls", K if executor is not None else None,
                  unit="problem" if executor is not None else "it") as bar:
        U, status, success, nit, messages, nfev, history = _solve_chunked(
            obj, starts, lo, hi, method, maxiter, options,
            notify if executor is not None else notify.with_bar(bar), net.n_weights,
            executor, size, bar)
    F = np.stack([obj.per_problem(U[:, s], grad=False)[0] for s in range(S)], axis=1)  # (K, S)
    best = np.argmin(np.where(np.isfinite(F), F, np.inf), axis=1)                       # (K,)
    kk = np.arange(K)
    u = U[kk, best]
    Y = obj.outputs(u).reshape(K, -1)
    r = ControlResult(
        x=u, controls=u, outputs=Y, fun=F[kk, best],
        error=np.linalg.norm(Y - np.broadcast_to(as_float(target, "target"), Y.shape), axis=1),
        violation=obj.output_violation(Y), success=success[kk, best],
        status=status[kk, best], nit=nit[kk, best], nfev=int(nfev), method=method.name,
        all_controls=U, all_fun=F, all_success=success, all_status=status, best=best,
        starts=starts, history=history)
    if obj.batched:
        r.message = f"{int(r.success.sum())} of {K} problems converged" + (
            f"; {STATUS[CALLBACK]}" if np.any(r.status == CALLBACK) else "")
        r.messages = messages[kk, best]
    else:
        for key in ("x", "controls", "outputs", "fun", "error", "violation", "success",
                    "status", "nit", "best", "all_controls", "all_fun", "all_success",
                    "all_status", "starts"):
            v = r[key][0]
            r[key] = v.item() if np.ndim(v) == 0 else v
        r.success, r.status = bool(r.success), int(r.status)
        r.message = str(messages[0, r.best])
    warn_unless_success(r, "optimize_controls")
    return r
