"""Sweeps: one task per setting (seeds, hyperparameters, scenario runs) on any executor.

:func:`sweep` maps a function over settings with the rules of
:mod:`ctrlprop.core.parallel` (all runs waited for; failures named, the other results
kept); :func:`run_script` is a task that runs a script in a fresh interpreter, which is
how the scenario scripts' ``--seeds/--workers/--scheduler`` options fan out.
"""

import subprocess
import sys

from ..core.parallel import check_executor, run_tasks
from ..solvers.progress import Progress

__all__ = ["sweep", "run_script"]


def _call(function, kwargs):
    return function(**kwargs)


def sweep(function, settings, *, executor=None, progress=False):
    """``[function(**s) for s in settings]``: a sweep over seeds or hyperparameters, one
    task per setting.

    Parameters
    ----------
    function : callable
        A picklable function (module-level, or a ``functools.partial`` of one) taking the
        settings as keyword arguments.
    settings : sequence of dict
        One dict of keyword arguments per run.
    executor : concurrent.futures.Executor, optional
        Where the runs go; None runs them here one after another.
    progress : bool
        Show a progress line over the runs (needs tqdm).

    Returns
    -------
    list
        The results in the order of ``settings``.

    Raises
    ------
    ParallelError
        With an executor, when some runs failed: ``failed`` names them (as indices into
        ``settings``), ``results`` holds the others.
    """
    executor = check_executor(executor)
    if not callable(function):
        raise TypeError(f"function must be callable, got {type(function).__name__}")
    settings = list(settings)
    if not all(isinstance(s, dict) for s in settings):
        raise TypeError("settings must be a sequence of dicts of keyword arguments, got "
                        + ", ".join(sorted({type(s).__name__ for s in settings})))
    parts = [range(i, i + 1) for i in range(len(settings))]
    with Progress(progress, "sweep", len(settings), unit="run") as bar:
        return run_tasks(executor, _call, [(function, s) for s in settings], parts, "sweep",
                         None if bar.bar is None else bar.update)


def run_script(path, args=(), *, cwd=None):
    """Run the Python script ``path`` with command-line ``args`` in a new interpreter (this
    one's executable); its standard output.  A picklable task for :func:`sweep` that
    needs nothing imported on the worker but ctrlprop.

    Raises
    ------
    RuntimeError
        When the script exits with a non-zero code; the message ends with the last lines
        of its standard error.
    """
    cmd = [sys.executable, str(path)] + [str(a) for a in args]
    out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if out.returncode:
        tail = "\n".join(out.stderr.strip().splitlines()[-8:])
        raise RuntimeError(f"{' '.join(cmd[1:])} exited with code {out.returncode}:\n{tail}")
    return out.stdout
