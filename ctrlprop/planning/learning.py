"""Learning a model from interaction and planning through it.

:func:`fit_dynamics` trains a :class:`~ctrlprop.Dynamics` on recorded
:class:`~ctrlprop.Transitions` and measures it on held-out episodes;
:func:`learn_and_plan` runs the loop of model-based control: random warm-up data, then
repeatedly fit (warm-started) -> act with MPC through the model -> append the data, with
evaluation episodes after every fit (or, with ``eval_episodes=0``, the returns of the MPC
episodes collected).
"""

import copy
import inspect
import time
import warnings

import numpy as np

from ..core.arrays import RowView
from ..core.checks import as_list, check_bool, check_int, check_nonneg
from ..core.environment import Environment
from ..core.parallel import check_executor
from ..core.ensemble import Ensemble
from ..core.network import Network
from ..core.transitions import Transitions
from ..objectives.ensemble_unroll import check_disagreement
from ..objectives.trajectory import Dynamics
from ..solvers.progress import Progress
from ..solvers.result import (CALLBACK, CONVERGED, FAILED, ConvergenceWarning, Notifier,
                              Result)
from .episodes import CollectError, collect, episode_scores, evaluate
from .fit import fit
from .mpc import Planner
from .store import TransitionStore

__all__ = ["fit_dynamics", "learn_and_plan", "LearnResult", "LearnError"]


# ---------------------------------------------------------------- fit_dynamics
def _split(ep, validation, seed, block):
    """(train rows, validation rows) as boolean masks.

    Every episode is cut into blocks of ``block`` consecutive steps, and a block is held
    out when a uniform draw seeded by ``(seed, episode, block index)`` falls below
    ``validation`` (at least one block held out, at least one kept).  The draw depends on
    the block alone, so as data grows a block stays on its side of the split (a model
    warm-started on earlier data is never validated on rows it was trained on), and new
    episodes contribute to the validation set as much as old ones (a warm-started refit
    is judged on the data it is refitted for too).
    """
    N = len(ep)
    if validation == 0:
        return np.ones(N, bool), np.zeros(N, bool)
    first = np.r_[0, np.flatnonzero(np.diff(ep)) + 1]             # first row of each run
    start = np.repeat(first, np.diff(np.r_[first, N]))
    blk = (np.arange(N) - start) // block
    keys, inv = np.unique(np.stack([ep, blk], axis=1), axis=0, return_inverse=True)
    draws = np.array([np.random.default_rng([seed, int(e), int(b)]).random()
                      for e, b in keys])
    held = draws < validation
    if keys.shape[0] >= 2:
        if not held.any():
            held[np.argmin(draws)] = True
        if held.all():
            held[np.argmax(draws)] = False
    else:
        held[:] = False
    val = held[inv.reshape(-1)]
    if not val.any():                         # one block in all: hold out its last rows
        val = np.arange(N) >= N - max(1, int(round(validation * N)))
    return ~val, val


def _windows(episode, rows, H):
    """Starts (W,) of the open-loop windows: H consecutive selected rows of one episode."""
    N = len(episode)
    if N < H:
        return np.zeros(0, dtype=int)
    cs = np.r_[0, np.cumsum(rows)]
    r = np.arange(N - H + 1)
    full = cs[r + H] - cs[r] == H                  # every row of the window is selected
    same = episode[r + H - 1] == episode[r]        # episodes are contiguous runs
    return r[full & same]


PREDICTION_ROWS = 65536     # rows per block of prediction_errors
PREDICTION_BATCH = 256      # rows (one-step) or windows (rollouts) per model call there: the
                            # model caches its rollout buffers per batch size, so a batch of
                            # every window would leave GBs in the fitted model (measured:
                            # 1.3 GB for 5,000 HalfCheetah rows, an ensemble of 5, H = 10)


def prediction_errors(model, data, rows=None, horizon=10):
    """One-step and open-loop multi-step prediction errors of ``model`` on ``data``.

    Parameters
    ----------
    model : Dynamics
    data : Transitions or TransitionStore
        Read in blocks of ``PREDICTION_ROWS`` rows (plus the ``horizon - 1`` rows after a
        block that its last windows reach); the model is called on at most
        ``PREDICTION_BATCH`` rows or windows at a time (it keeps work buffers per batch size).
    rows : bool array (N,), optional
        The rows to measure on (default all).
    horizon : int
        Open-loop horizon H: from every row where H consecutive steps of one episode
        follow, the model is rolled out on the recorded actions and compared with the
        recorded observations.

    Returns
    -------
    Result
        ``one_step_rmse`` (n,) per state, ``multi_step_rmse`` (H, n) per step ahead and
        state (NaN when no window fits), ``windows`` (how many), ``rows``.
    """
    N = len(data)
    rows = np.ones(N, bool) if rows is None else rows
    H = check_int(horizon, "horizon", 1)
    n = model.n_states
    sq1, cnt, sqH, W = np.zeros(n), 0, np.zeros((H, n)), 0
    for a in range(0, max(N, 1), PREDICTION_ROWS):
        b = min(a + PREDICTION_ROWS, N)
        blk = data[a:min(b + H - 1, N)]
        sel = rows[a:a + len(blk)]
        inner = np.zeros(len(blk), bool)
        inner[:b - a] = sel[:b - a]
        one = np.flatnonzero(inner)
        for c in range(0, one.size, PREDICTION_BATCH):
            r = one[c:c + PREDICTION_BATCH]
            pred = model.step(blk.obs[r], blk.actions[r])
            sq1 += ((pred - blk.next_obs[r]) ** 2).sum(axis=0)
        cnt += int(one.size)
        starts = _windows(blk.episode, sel, H)
        starts = starts[starts < b - a]
        for c in range(0, starts.size, PREDICTION_BATCH):
            w = starts[c:c + PREDICTION_BATCH, None] + np.arange(H)     # (W, H) rows
            S = model.rollout(blk.obs[w[:, 0]], blk.actions[w])          # (W, H+1, n)
            sqH += ((S[:, 1:] - blk.next_obs[w]) ** 2).sum(axis=0)
        W += int(starts.size)
    with np.errstate(invalid="ignore", divide="ignore"):
        one = np.sqrt(sq1 / cnt)
    multi = np.sqrt(sqH / W) if W else np.full((H, n), np.nan)
    return Result(one_step_rmse=one, multi_step_rmse=multi, windows=W, rows=int(rows.sum()))


def fit_dynamics(data, hidden=(64, 64), residual=True, model=None, *, transfer="tanh",
                 method=None, maxiter=None, options=None, l2=0.0, validation=0.2,
                 patience=100, horizon=10, seed=0, callback=None, progress=False,
                 ensemble=None, propagation=None, disagreement=None):
    """Train a dynamics model ``obs_{t+1} = F(obs_t, action_t)`` on recorded transitions.

    Parameters
    ----------
    data : Transitions or TransitionStore
        A :class:`~ctrlprop.TransitionStore` (transitions on disk) is trained on by
        streaming: the episode column (8 bytes a row) and the split's masks (2 bytes a
        row) are held in memory, everything else is read in blocks of rows; the default
        method is then "adam" (the full-batch methods raise), with the block order of
        ``options["block_size"]`` (see :func:`ctrlprop.fit`) over the training rows.
        The split and the weights are those of the same transitions in memory with the
        same ``method`` and ``options``, bit for bit.
    hidden : sequence of int
        Hidden layer sizes of a new model (ignored with ``model``).
    residual : bool
        A new model predicts the increment ``obs_{t+1} - obs_t`` (ignored with ``model``:
        its own setting is kept).
    model : Dynamics, optional
        Warm start: train a copy of this model from its weights, keeping its scaling
        (so the warm start is exact).  It is not modified.
    transfer : str
        Hidden transfer function of a new model.
    method, maxiter, options, l2, callback, progress
        As for :func:`ctrlprop.fit` (default L-BFGS-B, 1000 iterations; "adam", 200
        epochs, for a TransitionStore).  L-BFGS-B fits the smooth plants well, but on
        contact-rich data it can stall far from the minimum: on 5,000 HalfCheetah-v5
        transitions a 64-64 tanh model fitted by it (300 to 3,000 iterations) predicted the
        held-out increments worse than a least-squares linear model (relative RMSE 0.45-0.56
        against 0.34), where ``method="adam"`` (200 epochs, a few seconds) reached 0.34;
        check ``report.one_step_rmse`` against a linear fit when a planner does badly.
    patience : int or None
        Stop when the validation loss has not improved for this many iterations (default
        100: a full-batch method's validation loss wanders in its first iterations).
    validation : float
        Fraction held out, in [0, 1): episodes are cut into blocks of ``horizon``
        consecutive steps and each block is held out with this probability, by a draw
        seeded by ``seed``, the episode and the block, so that the same rows stay held out
        as the data grows and every episode, old or new, contributes to the validation set
        (at least one block held out and one kept).  The fit keeps the weights of lowest
        validation loss and stops after ``patience`` iterations without improvement.
    horizon : int
        Steps of the open-loop prediction error measured on the held-out blocks (and the
        block length of the split).
    seed : int
        Seeds the new model's weights and the choice of held-out episodes (keep it fixed
        over warm-started refits, as :func:`learn_and_plan` does).
    ensemble : int, optional
        A new model is an :class:`~ctrlprop.Ensemble` of this many members, each trained
        on its own bootstrap resample of the training rows (:func:`ctrlprop.fit`); the
        errors below are then those of the members' mean prediction.  A ``model`` that is
        an ensemble is refit the same way.
    propagation, disagreement
        Of a new ensemble model (see :class:`~ctrlprop.Dynamics`).

    Returns
    -------
    Dynamics
        The trained model.  Its ``report`` attribute (a Result) holds the fit's
        ``fit`` result, and, measured on the held-out rows, ``one_step_rmse`` (n,),
        ``multi_step_rmse`` (H, n) (the error of an open-loop rollout on the recorded
        actions, per step ahead), ``n_train`` and ``n_validation`` rows and the
        ``validation_rows`` (N,) bool and the ``validation_episodes`` (those with a
        held-out block).  Errors are in the observations' units.
    """
    on_disk = isinstance(data, TransitionStore)
    if not (on_disk or isinstance(data, Transitions)):
        raise TypeError(f"data must be ctrlprop Transitions (see ctrlprop.collect) or a "
                        f"TransitionStore, got {type(data).__name__}")
    if len(data) < 2:
        raise ValueError(f"data must hold at least 2 transitions to fit a model, got "
                         f"{len(data)}")
    v = check_nonneg(validation, "validation")
    if not v < 1:
        raise ValueError(f"validation must be a fraction in [0, 1), got {validation}")
    H = check_int(horizon, "horizon", 1)
    n, m = data.n_obs, data.n_act
    if model is None:
        sizes = [n + m] + [check_int(h, f"hidden[{i}]", 1) for i, h in
                           enumerate(as_list(hidden, "hidden", "a sequence of layer sizes"))]
        net = Network.mlp(sizes + [n], hidden=transfer, seed=seed)
        if ensemble is None and (propagation is not None or disagreement is not None):
            raise ValueError("propagation= and disagreement= are for an ensemble model: pass "
                             "ensemble= (the number of members) too")
        if ensemble is not None:
            net = Ensemble(net, check_int(ensemble, "ensemble (number of members)", 1),
                           seed=seed)
        dyn = Dynamics(net, n, residual=residual, propagation=propagation,
                       disagreement=disagreement)
        scale = True
    else:
        if not isinstance(model, Dynamics):
            raise TypeError(f"model must be a Dynamics (a warm start), got "
                            f"{type(model).__name__}")
        same = ((ensemble is None or (model.is_ensemble and ensemble == model.n_members))
                and (propagation is None or propagation == model.propagation)
                and (disagreement is None
                     or np.array_equal(check_disagreement(disagreement, n),
                                       model.disagreement)))
        if not same:
            raise ValueError(f"ensemble=, propagation= and disagreement= shape a new model; "
                             f"model= keeps its own ({model.n_members} member(s), "
                             f"propagation {model.propagation!r}), which they contradict")
        if (model.n_states, model.n_controls, model.n_exo) != (n, m, 0):
            raise ValueError(f"the model has {model.n_states} states, {model.n_controls} "
                             f"controls and {model.n_exo} exogenous inputs; the data "
                             f"{n} observations and {m} actions")
        dyn = copy.deepcopy(model)
        dyn.__dict__.pop("report", None)
        scale = False
    episode = data.episode[:] if on_disk else data.episode       # (N,) int64 in memory
    train, val = _split(episode, v, seed, H)
    X, Y = data.training_pairs(dyn.residual)
    if on_disk:                                 # stream: views of the rows on each side
        method = "adam" if method is None else method
        Xt, Yt = RowView(X, train), RowView(Y, train)
        Xv, Yv = (RowView(X, val), RowView(Y, val)) if val.any() else (None, None)
    else:
        Xt, Yt = X[train], Y[train]
        Xv, Yv = (X[val], Y[val]) if val.any() else (None, None)
    res = fit(dyn.net, Xt, Yt, method, l2=l2, maxiter=maxiter, options=options,
              validation=None if Xv is None else (Xv, Yv), patience=patience,
              scale=scale, callback=callback, progress=progress, seed=seed)
    err = prediction_errors(dyn, data, val if val.any() else train, H)
    dyn.report = Result(fit=res, one_step_rmse=err.one_step_rmse,
                        multi_step_rmse=err.multi_step_rmse, n_train=int(train.sum()),
                        n_validation=int(val.sum()),
                        validation_rows=val, validation_episodes=np.unique(episode[val]),
                        measured_on="validation" if val.any() else "training")
    return dyn


# ---------------------------------------------------------------- learn_and_plan
class LearnResult(Result):
    """Result of :func:`learn_and_plan` (a :class:`~ctrlprop.Result`).

    Attributes
    ----------
    returns : ndarray (I+1,), or (I,) with ``eval_episodes=0``
        Mean return of MPC through every fitted model: index 0 the warm-up's fit, index k
        the fit of iteration k.  With evaluation episodes, those episodes' mean; with
        ``eval_episodes=0``, the mean over the whole episodes that model collected in the
        next iteration (the last model collects nothing, so it has no entry).
    returns_std : ndarray, as ``returns``
    steps : ndarray of int, as ``returns``
        Interaction steps: with evaluation episodes, the steps of data collection
        (warm-up included; evaluation episodes are not counted and their data is not
        trained on) when the evaluated model had been fitted; with ``eval_episodes=0``,
        every environment step taken up to the end of the scored episodes.
    model : Dynamics
        The last fitted model.
    data : Transitions
        Every transition collected.
    fun : float
        Minus the last mean evaluation return (the cost the loop lowers).
    history : dict of arrays, as ``returns``
        Entry k describes model k: ``"fun"`` (minus the mean return), ``"return"``,
        ``"return_std"``, ``"steps"``,
        ``"one_step_rmse"`` (the model's one-step error averaged over states, on the
        held-out episodes; on the training rows when ``fit`` sets ``validation=0``),
        ``"fit_time"``, ``"act_time"`` (collecting the data it was fitted on: the
        warm-up for k = 0), ``"eval_time"`` (seconds scoring it: with
        ``eval_episodes=0`` the next iteration's collection) and ``"ms_per_step"``
        (planning milliseconds per environment step in the scored episodes).
    evaluations : list of Result
        Every :func:`ctrlprop.evaluate` result (per-episode returns and lengths); with
        ``eval_episodes=0`` the same fields for the scored collected episodes.
    success, status, message, nit (rounds completed after the warm-up)
    nfev : int
        Environment steps taken: every collected transition (also those of ``data`` given
        to resume) and every evaluation step (none with ``eval_episodes=0``).
    """


class LearnError(RuntimeError):
    """:func:`learn_and_plan` failed part-way; ``.result`` is a :class:`LearnResult` with
    everything done before the failure: all the data collected, the last model, the
    returns measured."""

    def __init__(self, message, result):
        super().__init__(message)
        self.result = result


def _sub_seed(seed, *keys):
    return int(np.random.SeedSequence([seed, *keys]).generate_state(1)[0])


def learn_and_plan(env, cost, iterations=5, steps_per_iteration=1000, horizon=20, seed=0, *,
                   warmup=None, model=None, data=None, fit=None, plan=None,
                   eval_episodes=10, episode_steps=None, checkpoint=None, callback=None,
                   progress=False, executor=None):
    """Model-based control by the loop: collect, fit, plan through the model, repeat.

    1. Warm-up: ``warmup`` transitions of uniform random actions (skipped when ``data``
       is given: resume from it).
    2. Fit the model on all the data (:func:`fit_dynamics`, warm-started from the
       previous model after the first fit) and evaluate MPC through it on
       ``eval_episodes`` episodes (none with ``eval_episodes=0``).
    3. ``iterations`` times: act with MPC through the model for ``steps_per_iteration``
       steps, append them to the data, and go to 2.

    Parameters
    ----------
    env : environment
        An object with the gymnasium interface.  Observations are the model's states.
    cost : TrajectoryCost or dict
        The planning cost on (observation, action) trajectories, e.g. a task's
        ``ctrlprop.envs.task(env_id).cost()``.
    iterations : int
        Rounds of act -> fit -> evaluate after the warm-up (>= 0).
    steps_per_iteration : int
        Environment steps collected with MPC per round.
    horizon : int
        MPC planning horizon.
    seed : int
        Seeds everything: the warm-up, every round's episodes (seeded by the seed and the
        number of transitions so far, so a resumed run does not repeat earlier starts),
        the evaluation episodes (the same every round, and different from the training
        ones), the model.
    warmup : int, optional
        Random warm-up steps (default: ``steps_per_iteration``).
    model : Dynamics, optional
        Start from this model (warm start of the first fit).
    data : Transitions, optional
        Resume from these transitions (e.g. a previous result's ``data``): no warm-up.
    fit : dict, optional
        Keyword arguments of :func:`fit_dynamics` (``hidden``, ``transfer``, ``maxiter``,
        ``l2``, ``validation``, ...).
    plan : dict, optional
        Keyword arguments of :class:`~ctrlprop.Planner` (``method``, ``maxiter``,
        ``options``, ``bounds``; the bounds default to the action space).
    eval_episodes : int
        Evaluation episodes after every fit (>= 0).  0: none; each model is scored by
        the whole episodes it collects in the next iteration, the training episodes'
        returns that PETS and mbrl-lib plot, at half the planning time when an iteration
        is one episode.  An episode the iteration's step budget cuts short is trained on
        but not scored; an iteration must hold at least one whole episode (a ValueError
        up front when ``episode_steps`` or the environment's time limit says it cannot).
    episode_steps : int, optional
        Cut episodes (collection and evaluation) after this many steps.
    checkpoint : str or path, optional
        Save the data there (:meth:`Transitions.save`) whenever it grows.
    callback : callable, optional
        ``callback(intermediate_result)`` after every scoring of a model (``iteration``
        is the model's index), with ``iteration``,
        ``fun``, ``mean_return``, ``steps``, ``model`` and ``data``; True or
        StopIteration ends the loop.
    progress : bool
        Show a progress line over the rounds (needs tqdm).
    executor : concurrent.futures.Executor, optional
        Run every round's evaluation episodes on this executor (:func:`ctrlprop.evaluate`
        with ``executor=``: the environment and the planner are pickled to the tasks; the
        returns are the serial run's bit for bit).  Collection stays here (its episodes
        follow one another through the data), so ``eval_episodes=0`` refuses one.

    Returns
    -------
    LearnResult

    Raises
    ------
    LearnError
        When a stage fails; its ``result`` holds all data collected up to the failure
        (transitions recorded inside the failing episode included).
    """
    envw = Environment(env)
    check_int(seed, "seed", 0)
    I = check_int(iterations, "iterations", 0)
    N = check_int(steps_per_iteration, "steps_per_iteration", 1)
    H = check_int(horizon, "horizon", 1)
    W = N if warmup is None else check_int(warmup, "warmup", 1)
    n_eval = check_int(eval_episodes, "eval_episodes", 0)
    E = check_int(episode_steps, "episode_steps", 1, allow_none=True)
    if not n_eval:
        limit = getattr(getattr(env, "spec", None), "max_episode_steps", None)
        known = [v for v in (E, limit) if v is not None]
        longest = min(known, default=0)
        if longest > N and I:
            raise ValueError(f"eval_episodes=0 scores the whole episodes of every iteration: "
                             f"steps_per_iteration ({N}) must hold one, and episodes last "
                             f"up to {longest} steps (episode_steps={E}, the environment's "
                             f"time limit {limit}); pass episode_steps <= {N}")
    if check_executor(executor) is not None and not n_eval:
        raise ValueError("executor= runs the evaluation episodes, and eval_episodes=0 has none "
                         "(collection stays serial): give eval_episodes >= 1 or no executor")
    fit_kw = dict(fit or {})
    plan_kw = dict(plan or {})
    for name, kw, target, bad in (("fit", fit_kw, fit_dynamics, ("data", "model", "seed")),
                                  ("plan", plan_kw, Planner, ("model", "horizon", "cost"))):
        clash = sorted(set(kw) & set(bad))
        if clash:
            raise ValueError(f"{name}= must not set {clash}: learn_and_plan sets them")
        known = set(inspect.signature(target).parameters) - set(bad)
        unknown = sorted(set(kw) - known)
        if unknown:
            raise TypeError(f"{name}= has unknown keys {unknown}; it takes {sorted(known)}")
    check_bool(progress, "progress")
    if "bounds" not in plan_kw and envw.bounded:
        plan_kw["bounds"] = [(a, b) for a, b in zip(envw.low, envw.high)]
    if data is not None and not isinstance(data, Transitions):
        raise TypeError(f"data must be Transitions (to resume), got {type(data).__name__}")
    if data is not None and (data.n_obs, data.n_act) != (envw.n_obs, envw.n_act):
        raise ValueError(f"data has {data.n_obs} observations and {data.n_act} actions, the "
                         f"environment {envw.n_obs} and {envw.n_act}")
    if model is None:                 # a stand-in of the model's kind, to check cost and plan now
        probe = Network.mlp([envw.n_obs + envw.n_act, envw.n_obs])
        members = fit_kw.get("ensemble")
        if members is not None:
            probe = Ensemble(probe, check_int(members, "fit['ensemble']", 1))
        model_probe = Dynamics(probe, envw.n_obs)
    else:
        model_probe = model
    Planner(model_probe, H, cost, **plan_kw)
    notify = Notifier(callback)
    eval_seed = _sub_seed(seed, 1)
    st = dict(data=data, model=model, returns=[], std=[], steps=[], rmse=[], fit_time=[],
              act_time=[], eval_time=[], ms=[], evals=[], it=0, collected=not n_eval)

    def grow(new):
        st["data"] = new if st["data"] is None else st["data"] + new
        if checkpoint is not None:
            st["data"].save(checkpoint)

    def act(n_steps, policy, s):
        try:
            new = collect(env, n_steps, policy, s, episode_steps=E)
        except CollectError as e:
            if len(e.data):
                grow(e.data)
            raise
        grow(new)
        return new

    def record(ev, seconds, ms):
        st["eval_time"].append(seconds)
        st["ms"].append(ms)
        st["evals"].append(ev)
        st["returns"].append(ev.mean_return)
        st["std"].append(ev.std_return)
        st["steps"].append(len(st["data"]))
        return notify(iteration=len(st["returns"]) - 1, fun=-ev.mean_return,
                      mean_return=ev.mean_return, steps=len(st["data"]),
                      model=st["model"], data=st["data"])

    stopped = False
    try:
        with Progress(progress, "learn_and_plan", I + 1, unit="fit") as bar:
            if st["data"] is None:
                t0 = time.perf_counter()
                act(W, None, _sub_seed(seed, 0))
                st["act_time"].append(time.perf_counter() - t0)
            else:
                st["act_time"].append(0.0)
            for it in range(I + 1):
                st["it"] = it
                if it:
                    t0 = time.perf_counter()
                    planner = Planner(st["model"], H, cost, **plan_kw)
                    new = act(N, planner, _sub_seed(seed, 2, len(st["data"])))  # unique
                    planner.close()                                        # across resumes
                    st["act_time"].append(time.perf_counter() - t0)
                    if not n_eval:
                        ev = _whole_episodes(new, it)
                        ev.policy_ms = 1e3 * planner.seconds / planner.calls
                        if record(ev, st["act_time"][-1], ev.policy_ms):
                            stopped = True
                            break
                t0 = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    st["model"] = fit_dynamics(st["data"], model=st["model"],
                                               seed=_sub_seed(seed, 3), **fit_kw)
                st["fit_time"].append(time.perf_counter() - t0)
                st["rmse"].append(float(np.mean(st["model"].report.one_step_rmse)))
                if not n_eval:
                    bar.update(**({"fun": -st["returns"][-1]} if st["returns"] else {}))
                    continue
                t0 = time.perf_counter()
                planner = Planner(st["model"], H, cost, **plan_kw)
                ev = evaluate(env, planner, n_eval, eval_seed, episode_steps=E,
                              executor=executor)
                planner.close()
                bar.update(fun=-ev.mean_return)
                if record(ev, time.perf_counter() - t0, ev.policy_ms):
                    stopped = True
                    break
    except Exception as e:
        raise LearnError(f"learn_and_plan failed in round {st['it']} "
                         f"({type(e).__name__}: {e}); the error's .result holds the "
                         f"{0 if st['data'] is None else len(st['data'])} transitions "
                         f"collected and the last model", _learn_result(st, False, str(e))) \
            from e
    return _learn_result(st, stopped, None)


def _whole_episodes(data, iteration):
    """The scores (:func:`episode_scores`) of the episodes of ``data`` that ended
    (terminated or truncated) within it."""
    ends = np.flatnonzero(np.r_[data.episode[1:] != data.episode[:-1], True])
    whole = data.episode[ends][data.terminated[ends] | data.truncated[ends]]
    if not whole.size:
        raise ValueError(f"eval_episodes=0: iteration {iteration} collected {len(data)} "
                         f"steps and no whole episode to score; give episode_steps <= "
                         f"steps_per_iteration")
    return episode_scores(data.select(whole))


def _learn_result(st, stopped, error):
    k = len(st["returns"])
    R = np.array(st["returns"], dtype=float)
    hist = {"fun": -R, "return": R, "return_std": np.array(st["std"], dtype=float),
            "steps": np.array(st["steps"], dtype=int),
            "one_step_rmse": np.array(st["rmse"][:k], dtype=float),
            "fit_time": np.array(st["fit_time"][:k], dtype=float),
            "act_time": np.array(st["act_time"][:k], dtype=float),
            "eval_time": np.array(st["eval_time"][:k], dtype=float),
            "ms_per_step": np.array(st["ms"][:k], dtype=float)}
    rounds = k if st["collected"] else k - 1     # collected: model k scored in round k + 1
    if error is not None:
        status, msg = FAILED, f"failed: {error}"
    elif stopped:
        status, msg = CALLBACK, f"stopped by the callback after round {rounds}"
    else:
        status, msg = CONVERGED, f"completed {rounds} rounds after the warm-up"
    return LearnResult(returns=R, returns_std=hist["return_std"], steps=hist["steps"],
                       model=st["model"], data=st["data"], history=hist,
                       evaluations=st["evals"], fun=float(-R[-1]) if k else np.nan,
                       x=None if st["model"] is None else st["model"].net.weights.copy(),
                       success=error is None,
                       status=status, message=msg, nit=max(rounds, 0),
                       nfev=(0 if st["data"] is None else len(st["data"]))
                       + (0 if st["collected"] else int(sum(len(e.data) for e in st["evals"]))))
