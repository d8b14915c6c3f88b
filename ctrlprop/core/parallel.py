"""Independent problems fanned out over a ``concurrent.futures.Executor``.

Every entry point that solves independent problems (``optimize_controls`` on a batch,
``optimize_trajectory`` on independent trajectories, ``evaluate`` over episodes, the
scenario sweeps) takes ``executor=``: any object with the ``concurrent.futures.Executor``
interface -- ``ProcessPoolExecutor``, ``dask.distributed.Client.get_executor()``,
loky's -- or None to run in this process.  Nothing here imports Dask; it only speaks the
standard interface.

The rules, stated once:

* **Chunks.**  N problems are cut into contiguous chunks of ``chunk_size`` problems
  (:func:`choose_chunk`): by default at most 16 chunks, each at least ``minimum`` problems
  (256 for the batched solvers, whose vectorization needs wide batches; 1 where every
  problem is solved on its own).  The serial run (``executor=None``) solves the whole
  batch at once unless ``chunk_size`` is given; with it, the same chunks here.
* **Reproducible.**  Random starts are drawn in the caller for the whole batch, episode i
  is seeded from ``(seed, i)``, and every task is a pure function of what it is sent.
  A problem solved alone (a scipy method, an episode) gives the same bits whatever the
  chunking; a problem of a batched solver depends, at the level of BLAS rounding (about
  1e-10), on the width of the batch it is solved in (OpenBLAS picks kernels by matrix
  shape), so it is bit-identical for the same chunks: an executor run equals the serial
  run with the same ``chunk_size``.
* **Failures.**  All tasks are waited for.  If any failed, :class:`ParallelError` names
  the problem indices of each failed task (the exact problem when the task solves its
  problems one at a time) and carries the results of every task that succeeded.
* **What is shipped.**  A task is a module-level function and its arguments, pickled:
  networks (graph + one weight vector), objectives, costs, plants (a few hundred kB).
"""

import concurrent.futures as cf

import numpy as np

__all__ = ["check_executor", "choose_chunk", "chunks", "run_tasks", "ParallelError",
           "ProblemError", "MAX_CHUNKS", "BATCH_CHUNK"]

MAX_CHUNKS = 16
"""At most this many chunks by default: enough to balance a few workers, few enough that
per-task overhead (pickling, scheduling: about a millisecond) stays negligible."""

BATCH_CHUNK = 256
"""Smallest default chunk for the batched solvers (batch-lm, batch-lbfgs, ilqr, ddp)."""


def check_executor(executor, callback=None):
    """``executor`` (None or an object with ``submit``), or a TypeError; a ValueError when
    a ``callback`` is given with an executor (it would run on the workers)."""
    if executor is not None and callback is not None and callable(getattr(executor, "submit",
                                                                          None)):
        raise ValueError("callback cannot be combined with executor= (it would run on the "
                         "workers); use progress=True, or executor=None")
    if executor is None or callable(getattr(executor, "submit", None)):
        return executor
    raise TypeError(f"executor must be None or a concurrent.futures.Executor (an object with "
                    f"submit(fn, *args)), e.g. ProcessPoolExecutor() or a dask.distributed "
                    f"Client's get_executor(), got {type(executor).__name__}")


def choose_chunk(n, given=None, minimum=1):
    """Problems per chunk for ``n`` problems.

    ``given`` (an int >= 1, the user's ``chunk_size=``) is taken as it is; None gives
    ``max(minimum, ceil(n / MAX_CHUNKS))``.
    """
    if given is not None:
        if isinstance(given, (bool, np.bool_)) or not isinstance(given, (int, np.integer)) \
                or given < 1:
            raise ValueError(f"chunk_size must be a positive integer or None, got {given!r}")
        return int(given)
    return max(int(minimum), -(-int(n) // MAX_CHUNKS), 1)


def chunks(n, size):
    """The chunks of ``n`` problems as ``range`` objects of at most ``size`` problems."""
    return [range(a, min(a + size, n)) for a in range(0, n, size)]


class ProblemError(RuntimeError):
    """Raised by a task that solves its problems one at a time: problem ``problem``
    failed with ``error`` (its message and type are kept; the exception chains it)."""

    def __init__(self, problem, error):
        super().__init__(f"problem {problem} failed: {type(error).__name__}: {error}")
        self.problem, self.error = problem, error

    def __reduce__(self):
        return (ProblemError, (self.problem, self.error))


class ParallelError(RuntimeError):
    """Some tasks failed.

    Attributes
    ----------
    failed : list of (range, BaseException)
        The problems of each failed task (a one-problem range when the failing problem is
        known) and its exception.
    results : list
        One entry per task in order: its result, or None for a failed task.
    chunks : list of range
        The problems of every task.
    """

    def __init__(self, what, failed, results, chunks):
        first = failed[0]
        names = "; ".join(_name(p) + f": {type(e).__name__}: {e}" for p, e in failed[:3])
        more = f" (and {len(failed) - 3} more)" if len(failed) > 3 else ""
        super().__init__(f"{what}: {len(failed)} of {len(chunks)} tasks failed -- {names}{more}"
                         f"; the error's .results hold the other tasks' results")
        self.failed, self.results, self.chunks = failed, results, chunks
        self.__cause__ = first[1]

    def __reduce__(self):
        return (_rebuild_parallel_error, (str(self), self.failed, self.results, self.chunks))


def _rebuild_parallel_error(message, failed, results, chunks):
    e = ParallelError.__new__(ParallelError)
    RuntimeError.__init__(e, message)
    e.failed, e.results, e.chunks = failed, results, chunks
    return e


def _name(problems):
    if len(problems) == 1:
        return f"problem {problems[0]}"
    return f"problems {problems[0]}..{problems[-1]}"


def run_tasks(executor, fn, args, problems, what, done=None):
    """``[fn(*a) for a in args]``, serially or on ``executor``, with the failure rules above.

    Parameters
    ----------
    executor : None or Executor
        None runs the tasks here, in order; an exception then propagates at once.
    fn : callable
        A module-level function (it is pickled by reference).
    args : list of tuple
        The arguments of every task.
    problems : list of range
        The problems of every task (for messages).
    what : str
        The entry point, for messages.
    done : callable, optional
        ``done(n)`` after a task of n problems completed (progress).

    Returns
    -------
    list
        The results in task order.

    Raises
    ------
    ParallelError
        With an executor, when any task failed (after all of them ended).
    """
    if executor is None:
        out = []
        for a, p in zip(args, problems):
            out.append(fn(*a))
            if done is not None:
                done(len(p))
        return out
    futures = {executor.submit(fn, *a): i for i, a in enumerate(args)}
    try:
        return _gather(futures, problems, what, done)
    finally:                                  # an interrupt: do not leave work queued
        for f in futures:
            f.cancel()


def _gather(futures, problems, what, done):
    """Wait for every future; the results in task order, or a ParallelError."""
    results, failed = [None] * len(futures), []
    for f in cf.as_completed(futures):
        i = futures[f]
        try:
            results[i] = f.result()
        except BaseException as e:           # noqa: BLE001 -- every failure is reported
            if isinstance(e, KeyboardInterrupt):
                raise
            p = problems[i]
            if isinstance(e, ProblemError):
                p = range(e.problem, e.problem + 1)
            failed.append((p, e))
            continue
        if done is not None:
            done(len(problems[i]))
    if failed:
        failed.sort(key=lambda pe: pe[0][0])
        raise ParallelError(what, failed, results, problems)
    return results

