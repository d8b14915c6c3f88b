"""Acting in an environment: recording transitions (:func:`collect`) and scoring a policy
(:func:`evaluate`), over the one episode loop of this module.

A *policy* is any of

* ``None``: actions drawn uniformly from the action space's box;
* a :class:`~ctrlprop.Network` controller with n_obs inputs and n_act outputs
  (``u = c(obs)``);
* a :class:`~ctrlprop.Planner` (receding-horizon control through a model), reset at
  every episode start;
* any callable ``policy(obs) -> action``; when it has a ``reset()`` method, that is called
  at every episode start.

Episode ``i`` of a run seeded by ``seed`` is reset with a seed derived from ``(seed, i)``
(:func:`ctrlprop.core.environment.episode_seed`) and random actions in it come from a
generator seeded the same way, so an episode does not depend on how many came before it.
"""

import inspect
import os
import time

import numpy as np

from ..core.checks import as_float, check_int
from ..core.environment import Environment, episode_seed, is_environment
from ..core.parallel import ParallelError, check_executor, choose_chunk, chunks, run_tasks
from ..core.network import Network
from ..core.transitions import Transitions
from ..solvers.progress import Progress
from ..solvers.result import Result
from .store import TransitionStore, TransitionWriter

__all__ = ["collect", "evaluate", "episode_scores", "CollectError", "as_policy"]


class CollectError(RuntimeError):
    """Acting in the environment failed part-way; ``.data`` holds every transition
    recorded before the failure (a :class:`~ctrlprop.Transitions`)."""

    def __init__(self, message, data):
        super().__init__(message)
        self.data = data


class _Uniform:
    """Uniform random actions in a bounded box, reseeded per episode."""

    def __init__(self, low, high):
        self.low, self.high = low, high
        self.rng = None

    def reset(self, seed):
        self.rng = np.random.default_rng(seed)

    def __call__(self, obs):
        return self.rng.uniform(self.low, self.high)


class _Controller:
    """A Network controller u = c(obs)."""

    def __init__(self, net):
        self.net = net

    def reset(self, seed):
        pass

    def __call__(self, obs):
        return self.net.forward(obs)


class _Callable:
    """A user's policy(obs), with its reset() called at episode starts if it has one."""

    def __init__(self, f):
        self.f = f

    def reset(self, seed):
        r = getattr(self.f, "reset", None)
        if callable(r):
            r()

    def __call__(self, obs):
        return self.f(obs)


class _Timed:
    """A policy whose calls are timed (``seconds`` in all, ``calls``)."""

    def __init__(self, pol):
        self.pol, self.seconds, self.calls = pol, 0.0, 0

    def reset(self, seed):
        self.pol.reset(seed)

    def __call__(self, obs):
        t0 = time.perf_counter()
        a = self.pol(obs)
        self.seconds += time.perf_counter() - t0
        self.calls += 1
        return a


def as_policy(policy, env):
    """A policy (see the module docstring) as an object with ``reset(seed)`` and
    ``__call__(obs)``, checked against the Environment ``env``."""
    if policy is None:
        if not env.bounded:
            raise ValueError(f"random actions need a bounded action space; {env.name} has "
                             f"low={env.low}, high={env.high}: pass a policy")
        return _Uniform(env.low, env.high)
    if isinstance(policy, Network):
        if (policy.n_inputs, policy.n_outputs) != (env.n_obs, env.n_act):
            raise ValueError(f"policy: a controller network needs {env.n_obs} inputs (observations) "
                             f"and {env.n_act} outputs (actions), got "
                             f"{policy.n_inputs} and {policy.n_outputs}")
        return _Controller(policy)
    if callable(policy):
        return _Callable(policy)
    raise TypeError(f"policy must be None (random), a Network controller, a Planner or a "
                    f"callable policy(obs) -> action, got {type(policy).__name__}")


def _record(env, pol, seed, steps=None, episodes=None, episode_steps=None, bar=None,
            first_episode=0, sink=None):
    """Run episodes until ``steps`` transitions or ``episodes`` episodes; the Transitions
    (None when the rows went to ``sink``, a TransitionWriter, instead), and the error that
    stopped the run (None when it completed; its episode index is in the error's
    ``episode`` attribute where the exception type allows one)."""
    n, m = env.n_obs, env.n_act
    cols = {k: [] for k in ("obs", "actions", "next_obs", "rewards", "terminated",
                            "truncated", "episode")}
    total, i, error = 0, first_episode, None
    try:
        while (steps is None or total < steps) and \
                (episodes is None or i < first_episode + episodes):
            s = episode_seed(seed, i)
            obs = env.reset(s)
            pol.reset(s)
            if sink is not None:
                sink.new_episode()
            t = 0
            while True:
                a = env.action(as_float(pol(obs.copy()), "the policy's action"))
                nxt, r, term, trunc = env.step(a, t)
                t += 1
                total += 1
                cut = episode_steps is not None and t >= episode_steps
                last = steps is not None and total >= steps
                row = (("obs", obs), ("actions", a.astype(np.float64)), ("next_obs", nxt),
                       ("rewards", r), ("terminated", term),
                       ("truncated", trunc or (cut and not term)), ("episode", i))
                if sink is None:
                    for k, v in row:
                        cols[k].append(v)
                else:
                    sink.add(*(v for _, v in row[:-1]))
                if bar is not None:
                    bar.update(1)
                obs = nxt
                if term or trunc or cut or last:
                    break
            i += 1
    except Exception as e:             # keep what was recorded; the caller re-raises
        error = e
        try:
            error.episode = i
        except AttributeError:
            pass
    if sink is not None:
        data = None
    elif not cols["obs"]:
        data = Transitions.empty(n, m)
    else:
        data = Transitions(np.array(cols["obs"]).reshape(-1, n),
                           np.array(cols["actions"]).reshape(-1, m),
                           np.array(cols["next_obs"]).reshape(-1, n),
                           np.array(cols["rewards"], dtype=float),
                           np.array(cols["terminated"], dtype=bool),
                           np.array(cols["truncated"], dtype=bool),
                           np.array(cols["episode"], dtype=np.int64))
    return data, error


def _raise(error, data, what):
    """Re-raise a failure of the loop as a CollectError carrying the data."""
    raise CollectError(f"{what} stopped after {len(data)} transitions "
                       f"({type(error).__name__}: {error}); the error's .data holds them",
                       data) from error


def collect(env, steps, policy=None, seed=0, *, episode_steps=None, progress=False, out=None):
    """Record ``steps`` transitions of ``policy`` acting in ``env``.

    Parameters
    ----------
    env : environment
        An object with the gymnasium interface (gymnasium's environments, or a built-in
        plant's :meth:`~ctrlprop.plants.Plant.env`).
    steps : int
        Number of transitions N >= 1 (episodes are run one after another; the last one
        stops at N).
    policy : None, Network, Planner or callable, optional
        See :mod:`ctrlprop.planning.episodes`; None is uniform random in the action
        space.
    seed : int
        Seeds every episode's reset and the random actions (per episode).
    episode_steps : int, optional
        End an episode after this many steps (its last row is marked ``truncated``);
        default: when the environment ends it.
    progress : bool
        Show a progress line over the steps (needs tqdm).
    out : str, os.PathLike or TransitionWriter, optional
        Write the transitions to disk as they come instead of holding them in memory: a
        path creates a :class:`~ctrlprop.TransitionWriter` there (npz shards; a store
        already at the path raises) and closes it at the end; a writer you opened (any
        format, ``mode="a"`` to add to a store) is flushed, not closed.  Memory then holds
        one shard of rows at most.

    Returns
    -------
    Transitions, or TransitionStore with ``out``
        N rows; episodes are numbered 0, 1, ... (with ``out``: after those already in the
        store).

    Raises
    ------
    CollectError
        When the environment or the policy fails part-way; its ``data`` attribute holds
        the transitions recorded until then (with ``out``: the store, every row recorded
        written to it).
    """
    env = Environment(env)
    N = check_int(steps, "steps", 1)
    check_int(seed, "seed", 0)
    E = check_int(episode_steps, "episode_steps", 1, allow_none=True)
    pol = as_policy(policy, env)
    writer, own = _writer(out, env)
    try:
        with Progress(progress, "collect", N, unit="step") as bar:
            data, error = _record(env, pol, seed, steps=N, episode_steps=E,
                                  bar=bar if bar.bar is not None else None, sink=writer)
    finally:
        if writer is not None:
            writer.close() if own else writer.flush()
    if writer is not None:
        data = TransitionStore(writer.path)
    if error is not None:
        _raise(error, data, "collect")
    return data


def _writer(out, env):
    """(TransitionWriter or None, whether collect opened it) for collect's ``out``."""
    if out is None:
        return None, False
    if isinstance(out, TransitionWriter):
        if (out.n_obs, out.n_act) != (env.n_obs, env.n_act):
            raise ValueError(f"out: the writer has n_obs={out.n_obs}, n_act={out.n_act}; the "
                             f"environment {env.n_obs} and {env.n_act}")
        return out, False
    if isinstance(out, (str, os.PathLike)):
        return TransitionWriter(out, env.n_obs, env.n_act), True
    raise TypeError(f"out must be None, a path or a TransitionWriter, got "
                    f"{type(out).__name__}")


def _as_env(env):
    """An Environment from an environment or a factory ``env() -> environment``."""
    if not is_environment(env) and not isinstance(env, Environment) and callable(env):
        try:
            inspect.signature(env).bind()
        except (TypeError, ValueError):
            raise TypeError(f"env must have the gymnasium interface (reset(seed=...), "
                            f"step(action), action_space and observation_space Boxes) or be "
                            f"a factory env() taking no arguments, got "
                            f"{getattr(env, '__name__', type(env).__name__)}, a callable "
                            f"that needs arguments") from None
        made = env()
        if not is_environment(made):
            raise TypeError(f"env: the factory {getattr(env, '__name__', env)!r} returned "
                            f"{type(made).__name__}, not an environment")
        return Environment(made)
    return Environment(env)


def _evaluate_task(env, policy, seed, first, n, episode_steps):
    """Episodes first .. first + n - 1 on a worker: (Transitions, error or None, seconds
    in the policy, policy calls)."""
    e = _as_env(env)
    pol = _Timed(as_policy(policy, e))
    data, error = _record(e, pol, seed, episodes=n, episode_steps=episode_steps,
                          first_episode=first)
    return data, error, pol.seconds, pol.calls


def evaluate(env, policy, episodes=10, seed=0, *, episode_steps=None, progress=False,
             executor=None, chunk_size=None):
    """Score ``policy`` on ``episodes`` whole episodes of ``env``.

    Parameters
    ----------
    env : environment, or a factory ``env() -> environment``
        With an executor, the environment is pickled to every task (or the factory is
        called there, e.g. ``functools.partial(gymnasium.make, "Pendulum-v1")`` for
        environments that do not pickle); what cannot be pickled fails every task, and
        the CollectError says so.
    policy : None, Network, Planner or callable
        As for :func:`collect`.  With an executor each task gets its own copy, reset at
        every episode start as in the serial run.
    episodes : int
        Number of episodes E >= 1.
    seed : int
        Episode i is reset with the seed derived from ``(seed, i)``.
    episode_steps : int, optional
        Cut every episode after this many steps (default: the environment ends it).
    progress : bool
    executor : concurrent.futures.Executor, optional
        Run the episodes in chunks on this executor (``ProcessPoolExecutor``,
        ``dask.distributed.Client.get_executor()``, ...).  Episode i is seeded from
        ``(seed, i)`` wherever it runs, so the result is the serial run's bit for bit for
        any chunking (a policy whose actions depend on earlier episodes beyond its
        ``reset`` would differ).
    chunk_size : int, optional
        Episodes per task; default the episodes in at most 16 tasks.

    Returns
    -------
    Result
        ``returns`` (E,) (sum of rewards per episode), ``lengths`` (E,) (steps),
        ``mean_return``, ``std_return``, ``terminated`` (E,) (the episode ended by
        termination rather than truncation), ``data`` (the Transitions), ``policy_ms``
        (milliseconds per call of the policy, e.g. a Planner's planning time per step,
        measured where the episodes ran).

    Raises
    ------
    CollectError
        As :func:`collect`; with an executor, after every task ended, naming the failed
        episodes, with ``data`` holding every transition recorded by any task (a worker
        that died takes its task's transitions with it).
    """
    executor = check_executor(executor)
    n_ep = check_int(episodes, "episodes", 1)
    check_int(seed, "seed", 0)
    E = check_int(episode_steps, "episode_steps", 1, allow_none=True)
    choose_chunk(n_ep, chunk_size, 1)                 # checks chunk_size in both modes
    if executor is None:
        env = _as_env(env)
        pol = _Timed(as_policy(policy, env))
        with Progress(progress, "evaluate", n_ep, unit="episode") as bar:
            data, error = _record(env, pol, seed, episodes=n_ep, episode_steps=E)
            bar.update(n_ep)
        if error is not None:
            _raise(error, data, "evaluate")
        seconds, calls = pol.seconds, pol.calls
    else:
        data, seconds, calls = _evaluate_parallel(env, policy, seed, n_ep, E, progress,
                                                  executor, chunk_size)
    out = episode_scores(data)
    out.policy_ms = 1e3 * seconds / max(calls, 1)
    return out


def _evaluate_parallel(env, policy, seed, n_ep, E, progress, executor, chunk_size):
    """evaluate's episodes in chunks on ``executor``; the Transitions of all of them."""
    e = _as_env(env)                                  # checks env and policy here, once
    as_policy(policy, e)
    parts = chunks(n_ep, choose_chunk(n_ep, chunk_size, 1))
    args = [(env, policy, seed, p.start, len(p), E) for p in parts]
    with Progress(progress, "evaluate", n_ep, unit="episode") as bar:
        try:
            out = run_tasks(executor, _evaluate_task, args, parts, "evaluate",
                            None if bar.bar is None else bar.update)
            lost = []
        except ParallelError as pe:
            out = [r for r in pe.results if r is not None]
            lost = pe.failed
    datas = [o[0] for o in out if len(o[0])]
    data = (Transitions.concatenate(datas) if datas else Transitions.empty(e.n_obs, e.n_act))
    errors = [(o[0], o[1]) for o in out if o[1] is not None]
    if lost or errors:
        where = [f"episodes {p[0]}..{p[-1]} ({type(x).__name__}: {x})" for p, x in lost]
        where += [f"episode {getattr(x, 'episode', '?')} ({type(x).__name__}: {x})"
                  for _, x in errors]
        first = lost[0][1] if lost else errors[0][1]
        raise CollectError(f"evaluate: {len(where)} of {len(parts)} tasks failed -- "
                           + "; ".join(where[:3]) + f"; the error's .data holds the "
                           f"{len(data)} transitions recorded by the others", data) from first
    return data, sum(o[2] for o in out), sum(o[3] for o in out)


def episode_scores(data):
    """:func:`evaluate`'s Result (without ``policy_ms``) from the Transitions of whole
    episodes: ``returns``, ``lengths``, ``mean_return``, ``std_return``, ``terminated``,
    ``data``."""
    ids = data.episode_ids()
    lengths = np.array([(data.episode == i).sum() for i in ids])
    ends = np.cumsum(lengths) - 1
    returns = data.returns()
    return Result(returns=returns, lengths=lengths, mean_return=float(returns.mean()),
                  std_return=float(returns.std()), terminated=data.terminated[ends].copy(),
                  data=data)
