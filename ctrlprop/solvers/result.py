"""One result type, one set of status codes, one callback protocol for every entry point.

Every solve returns a :class:`Result` (a ``scipy.optimize.OptimizeResult``) with

=========  ==================================================================
x          the optimized variables in their natural shape
fun        the objective at ``x`` (per problem for a batch of problems)
success    True when the solver's convergence test was met
status     one of the codes below, the same meaning everywhere
message    a sentence for people
nit, nfev  iterations and objective evaluations
history    dict of per-iteration arrays, at least ``"fun"``
=========  ==================================================================

and entry points add their domain fields under shared names (``controls``, ``states``,
``outputs``; multi-start records ``all_controls``, ``all_fun``, ... with axes
(problem, start, ...)).  The solver's own code and message are kept in ``solver_status``
and ``solver_message`` where they differ.

A solve that ends without success warns with :class:`ConvergenceWarning` (as
scikit-learn does), except when the caller's callback stopped it.  Bad input never
warns: it raises.

Callbacks follow scipy's modern form: ``callback(intermediate_result)`` receives a
:class:`Result` with at least ``x``, ``fun`` and ``nit``; returning True or raising
``StopIteration`` stops the solve, which then returns its last iterate.
"""

import warnings

import numpy as np
from scipy.optimize import OptimizeResult

from ..core.checks import check_callable

__all__ = ["Result", "ConvergenceWarning", "STATUS", "CONVERGED", "MAXITER", "CALLBACK",
           "EARLY_STOP", "NONFINITE", "FAILED", "Notifier", "warn_unless_success"]

CONVERGED, MAXITER, CALLBACK, EARLY_STOP, NONFINITE, FAILED = 0, 1, 2, 3, 4, 5
STATUS = {
    CONVERGED: "converged",
    MAXITER: "iteration limit reached",
    CALLBACK: "stopped by the callback",
    EARLY_STOP: "early stopping: the validation loss stopped improving",
    NONFINITE: "the objective became non-finite (NaN or inf); the last finite iterate is kept",
    FAILED: "the solver could not make further progress (line search or damping failed)",
}


class ConvergenceWarning(UserWarning):
    """A solve ended without meeting its convergence test (never used for bad input)."""


class Result(OptimizeResult):
    """The result of every ctrlprop solve (an ``OptimizeResult``; see the module docstring)."""


def warn_unless_success(res, what, stacklevel=3):
    """Warn with ConvergenceWarning when ``res`` did not succeed and no callback stopped it
    (``success`` and ``status`` may be per-problem arrays)."""
    status = np.atleast_1d(res.status).ravel()
    success = np.atleast_1d(res.success).ravel()
    failed = ~success & ~np.isin(status, (CALLBACK,))
    if not failed.any():
        return
    count = f" ({int(failed.sum())} of {failed.size} problems)" if failed.size > 1 else ""
    warnings.warn(f"{what}: {res.message}{count}", ConvergenceWarning, stacklevel=stacklevel)


class Notifier:
    """The callback protocol: ``notify(**fields) -> bool`` builds the intermediate Result,
    advances the progress bar (when there is one), calls the user's callback and says
    whether to stop (a True return or StopIteration)."""

    def __init__(self, callback, bar=None):
        self.callback = check_callable(callback, "callback", "callback(intermediate_result)")
        self.bar = bar

    def with_bar(self, bar):
        """The same callback, also advancing the progress bar ``bar`` (a Progress)."""
        return Notifier(self.callback, bar if bar is not None and bar.bar is not None else None)

    def __bool__(self):
        return self.callback is not None or self.bar is not None

    def __call__(self, **fields):
        if self.bar is not None:
            self.bar.update(fun=fields.get("fun"))
        if self.callback is None:
            return False
        try:
            return self.callback(Result(**fields)) is True
        except StopIteration:
            return True


def scipy_status(res, family):
    """The ctrlprop status code of a scipy result from ``minimize`` or ``least_squares``."""
    if family == "least_squares":
        if res.status > 0:
            return CONVERGED
        return MAXITER if res.status == 0 else FAILED
    if res.success:
        return CONVERGED
    msg = str(res.message).lower()
    if "iteration" in msg or "maximum number" in msg or "max. number" in msg or "limit" in msg:
        return MAXITER
    if "nan" in msg or "inf" in msg.split():
        return NONFINITE
    return FAILED
