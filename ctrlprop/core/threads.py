"""BLAS thread control: run small problems on one thread.

numpy and scipy each load their own OpenBLAS, and each starts a pool of
threads that spin while waiting for work.  For the small matrix products of a
typical forward model (tens of units, thousands of samples) the threads cost
more than they save, and two pools spinning against each other inside an
optimizer loop (numpy for the objective, scipy for L-BFGS-B's own algebra)
made small fits about 3x slower on a 2-core machine.  So ctrlprop limits the
BLAS pools to one thread for small problems and leaves them alone for large
ones.

The rule (:func:`auto_threads`): a weight gradient over ``K`` samples costs
about ``6 * n_weights * K`` floating-point operations.  Below ``SMALL_WORK``
(``1e9`` flops, ~30 ms on one core) one thread is used; above it the pools keep
their own setting (all cores by default).  The threshold comes from the cost of
contention measured on a 2-core machine: a 2.2 ms objective took 15-20 ms per
evaluation inside L-BFGS-B with two threads per pool, so a second thread, which
at best halves the objective's time, pays off only once one evaluation takes
more than about twice that overhead.  ``benchmarks/bench_training.py`` prints
1-thread and all-core times around the threshold to check it on a machine.

Users override it with ``threads=n`` in the training functions
(``threads=None``, the default, applies this rule), or wrap their own code in
``with blas_threads(n):``.
"""

from contextlib import contextmanager

from .checks import check_int

__all__ = ["blas_threads", "auto_threads", "resolve_threads", "SMALL_WORK"]

SMALL_WORK = 1e9          # flops per objective evaluation below which one thread is used

_controller = None
# the limits of the blas_threads blocks now open (innermost last): a block asking for the
# limit already in force costs nothing (threadpoolctl's limit takes ~50 us, which MPC would
# pay at every step)
_active = []


def _get_controller():
    """The process-wide threadpoolctl controller (library discovery is done once, ~0.2 ms)."""
    global _controller
    if _controller is None:
        import scipy.linalg  # noqa: F401  (load scipy's BLAS so that it is controlled too)
        from threadpoolctl import ThreadpoolController
        _controller = ThreadpoolController()
    return _controller


@contextmanager
def blas_threads(n):
    """Limit every loaded BLAS library (numpy's, scipy's, ...) to ``n`` threads inside a block.

    Parameters
    ----------
    n : int or None
        Number of threads; None leaves the libraries as they are.

    Examples
    --------
    >>> with blas_threads(1):
    ...     res = scipy.optimize.minimize(obj, x0, jac=True)    # doctest: +SKIP
    """
    n = check_int(n, "n", 1, allow_none=True)
    if n is None or (_active and _active[-1] == n):
        yield                     # nothing to do, or already limited to n by an outer block
        return
    with _get_controller().limit(limits=n, user_api="blas"):
        _active.append(n)
        try:
            yield
        finally:
            _active.pop()


def auto_threads(n_weights, n_samples):
    """The thread count ctrlprop chooses for a problem size: 1 if small, else None.

    Parameters
    ----------
    n_weights : int
        Weights (or parameters) whose gradient one evaluation computes.
    n_samples : int
        Samples (batch size) of one evaluation.

    Returns
    -------
    int or None
        1 when ``6 * n_weights * n_samples < SMALL_WORK``; None (the BLAS
        libraries' own setting, normally all cores) otherwise.
    """
    return 1 if 6.0 * n_weights * n_samples < SMALL_WORK else None


def resolve_threads(threads, n_weights, n_samples):
    """The ``threads=`` argument of the training functions: None -> :func:`auto_threads`,
    a positive int -> itself (anything else raises)."""
    if threads is None:
        return auto_threads(n_weights, n_samples)
    return check_int(threads, "threads", 1, allow_none=True)
