"""scipy.optimize behind one calling convention: iteration limits, callbacks, status codes.

:func:`run_minimize` and :func:`run_least_squares` wrap ``scipy.optimize.minimize`` and
``scipy.optimize.least_squares`` for the entry points (and ``run_minimize`` runs
ctrlprop's own minimize-family method, ``dense-lbfgsb`` (:mod:`ctrlprop.solvers.lbfgsb`),
under the same rules):

* ``maxiter`` is the one iteration limit (``options`` may not carry one too): minimize's
  ``maxiter`` (TNC's ``maxfun``: TNC counts function evaluations), least_squares'
  ``max_nfev`` (residual evaluations, about one per iteration for trf, dogbox and lm);
* ``options`` the method does not take raise (a ValueError naming them) instead of
  scipy's warning or TypeError;
* the exact ``hessp`` / ``hess`` / constraints are passed to the methods that use them;
* ``notify`` (a :class:`~ctrlprop.solvers.result.Notifier`, or any callable of the
  fields ``x``, ``fun``, ``nit``) sees every iteration -- minimize's callback, or each
  accepted Jacobian evaluation of least_squares -- and can stop the run, which then
  returns its last iterate: True stops with status CALLBACK, an int with that status
  (this works the same for every method, including those whose scipy callback cannot
  stop them);
* a non-finite objective stops the run with status NONFINITE and the last finite iterate;
* the returned :class:`Result` carries ctrlprop's status code, the solver's own
  (``solver_status``, ``solver_message``) and ``history["fun"]``: the objective at the
  start and after every iteration.
"""

import inspect
import warnings

import numpy as np
from scipy.optimize import Bounds, OptimizeWarning, least_squares, minimize
from scipy.sparse.linalg import LinearOperator

from ..core.checks import check_int
from .lbfgsb import LBFGSB_OPTIONS, lbfgsb
from .result import (CALLBACK, CONVERGED, EARLY_STOP, FAILED, MAXITER, NONFINITE, STATUS, Result,
                     scipy_status)

__all__ = ["LIMIT_KEYS", "LEAST_SQUARES_OPTIONS", "solver_options", "run_minimize",
           "run_least_squares"]

LIMIT_KEYS = ("maxiter", "maxfun", "max_nfev", "maxfev", "max_iter")

# least_squares keywords that ctrlprop sets itself (the problem, the method, the bounds, the
# iteration limit, the callback): the others may come through ``options``
_LS_OWN = ("fun", "x0", "jac", "bounds", "method", "max_nfev", "args", "kwargs", "callback")
LEAST_SQUARES_OPTIONS = tuple(k for k in inspect.signature(least_squares).parameters
                              if k not in _LS_OWN)


def solver_options(options, maxiter, default=None, least=0):
    """``(options copy, maxiter)``: options as a dict without any iteration limit (those go
    through ``maxiter``), maxiter an int >= least or ``default``."""
    if options is None:
        options = {}
    elif not isinstance(options, dict):
        raise TypeError(f"options must be a dict or None, got {type(options).__name__}")
    clash = [k for k in LIMIT_KEYS if k in options]
    if clash:
        raise ValueError(f"options[{clash[0]!r}] is an iteration limit: give it as the "
                         f"maxiter= keyword (one meaning everywhere), not inside options")
    if maxiter is not None:
        maxiter = check_int(maxiter, "maxiter", least)
    return dict(options), (default if maxiter is None else maxiter)


class _Stop(Exception):
    def __init__(self, status):
        super().__init__(STATUS[status])
        self.status = status


class _Tracker:
    """Counts evaluations, remembers the last iterate, records history, stops on request."""

    def __init__(self, x0, notify, reshape):
        self.nfev = self.njev = self.nhev = self.nit = 0
        self.x = np.array(x0, dtype=np.float64)
        self.f = None
        self.hist = []
        self.notify, self.reshape = notify, reshape
        self._last = (None, None)

    def evaluated(self, x, f):
        self.nfev += 1
        if not np.isfinite(f):
            raise _Stop(NONFINITE)
        self._last = (x, f)

    def value_at(self, x):
        lx, lf = self._last
        return lf if lx is not None and np.array_equal(lx, x) else None

    def iteration(self, x, f):
        """Record an iterate (nit 0 is the start); raise _Stop when notify asks to stop."""
        self.x, self.f = np.array(x, dtype=np.float64), float(f)
        self.hist.append(self.f)
        stop = self.nit and self.notify and self.notify(x=self.reshape(self.x), fun=self.f,
                                                        nit=self.nit)
        self.nit += 1
        if stop:                  # True: the callback; an int: the caller's status code
            raise _Stop(CALLBACK if stop is True else int(stop))

    def stopped(self, stop, family):
        return Result(x=self.x, fun=np.nan if self.f is None else self.f,
                      success=stop.status == EARLY_STOP,
                      status=stop.status,
                      message=STATUS[stop.status], nit=max(self.nit - 1, 0), nfev=self.nfev,
                      njev=self.njev, nhev=self.nhev, history={"fun": np.array(self.hist)},
                      solver_status=None, solver_message=STATUS[stop.status], family=family)


class _Pinned:
    """Variables pinned by their bounds (lo == hi) taken out of the problem the solver sees
    (scipy's minimize fails when every variable is pinned, least_squares on any)."""

    def __init__(self, x0, bounds):
        lo, hi = bounds
        self.free = np.flatnonzero(lo != hi)
        self.base = np.where(lo == hi, lo, x0)
        self.bounds = (lo[self.free], hi[self.free])

    def embed(self, z):
        x = self.base.copy()
        x[self.free] = z
        return x

    def direction(self, p):
        v = np.zeros(self.base.size)
        v[self.free] = p
        return v

    def pinned_result(self, value):
        """The result when every variable is pinned: nothing to optimize."""
        return Result(x=self.base.copy(), fun=float(value), success=True, status=CONVERGED,
                      message=STATUS[CONVERGED] + " (every variable is fixed by its bounds)",
                      nit=0, nfev=1, njev=0, nhev=0, history={"fun": np.array([value])},
                      solver_status=None, solver_message="every variable is fixed")


def _pins(x0, bounds):
    """A _Pinned for bounds that pin some variable, else None."""
    if bounds is None or not np.any(bounds[0] == bounds[1]):
        return None
    return _Pinned(np.asarray(x0, dtype=np.float64), bounds)


def run_minimize(method, fun, x0, *, bounds=None, hessp=None, hess=None, constraints=None,
                 maxiter=None, options=None, notify=None, reshape=None):
    """``scipy.optimize.minimize(fun, x0, jac=True, ...)`` under ctrlprop's conventions.

    Parameters
    ----------
    method : Method
        A minimize-family method from :mod:`ctrlprop.solvers.methods`.
    fun : callable
        ``fun(x) -> (f, grad)`` on flat float vectors.
    x0 : ndarray, shape (n,)
    bounds : (lo, hi) of ndarray (n,), optional
        Passed as ``scipy.optimize.Bounds`` to methods that take bounds (the caller has
        checked that the method does when bounds are finite).
    hessp, hess : callable, optional
        Exact second-order information, passed where the method uses it.
    constraints : optional
        scipy constraints, for SLSQP and trust-constr.
    maxiter : int, optional
    options : dict, optional
        Other minimize options (already checked by :func:`solver_options`).
    notify : Notifier, optional
    reshape : callable, optional
        Maps the flat x to the natural shape shown to the callback.

    Returns
    -------
    Result
    """
    reshape = reshape or (lambda x: x)
    pin = _pins(x0, bounds) if method.bounds and constraints is None else None
    if pin is not None:                                # solve for the free variables only
        if not pin.free.size:
            return pin.pinned_result(fun(pin.base)[0])
        fr = pin.free
        res = run_minimize(
            method, lambda z: (lambda v, g: (v, g[fr]))(*fun(pin.embed(z))), x0[fr],
            bounds=pin.bounds,
            hessp=None if hessp is None else (
                lambda z, q: hessp(pin.embed(z), pin.direction(q))[fr]),
            hess=None if hess is None else (
                lambda z: np.asarray(hess(pin.embed(z)))[np.ix_(fr, fr)]),
            maxiter=maxiter, options=options, notify=notify,
            reshape=lambda z: reshape(pin.embed(z)))
        res.x = pin.embed(res.x)
        return res
    tr = _Tracker(x0, notify, reshape)
    opts = dict(options or {})
    if maxiter is not None:
        opts["maxfun" if method.name == "TNC" else "maxiter"] = maxiter

    def f(x):
        v, g = fun(x)
        tr.evaluated(x.copy(), v)
        tr.njev += 1
        if not tr.nit:                    # scipy's first evaluation is the start: iteration 0
            tr.iteration(x, v)
        return v, g

    def cb(intermediate_result):
        # an OptimizeResult for most methods; TNC passes the bare x
        x = getattr(intermediate_result, "x", intermediate_result)
        v = tr.value_at(x)
        if v is None:
            v = intermediate_result.fun if hasattr(intermediate_result, "fun") else f(x)[0]
        tr.iteration(x, float(v))

    if method.name == "dense-lbfgsb":
        return _run_lbfgsb(f, cb, x0, bounds, opts, tr)
    kw = dict(method=method.name, jac=True, callback=cb, options=opts)
    if bounds is not None and method.bounds:
        lo, hi = bounds
        if np.isfinite(lo).any() or np.isfinite(hi).any():
            kw["bounds"] = Bounds(lo, hi)
    if method.hessp and hessp is not None:
        def hp(x, p):
            tr.nhev += 1
            return hessp(x, p)
        kw["hessp"] = hp
    if method.hess and hess is not None:
        kw["hess"] = hess
    if method.constraints and constraints is not None:
        kw["constraints"] = constraints
    try:
        with warnings.catch_warnings():
            # scipy warns (most methods) or raises a TypeError (trust-constr) for an option
            # the method does not have; both become a ValueError naming options
            warnings.filterwarnings("error", "Unknown solver options", OptimizeWarning)
            try:
                res = minimize(f, x0, **kw)
            except OptimizeWarning as w:
                raise ValueError(f"options has keys that method {method.name!r} does not "
                                 f"take ({w}); see scipy.optimize.show_options('minimize', "
                                 f"{method.name!r})") from None
            except TypeError as e:
                if "unexpected keyword argument" not in str(e) or not any(
                        repr(k) in str(e) for k in opts):
                    raise
                raise TypeError(f"options has keys that method {method.name!r} does not take "
                                f"({e}); see scipy.optimize.show_options('minimize', "
                                f"{method.name!r})") from None
    except _Stop as stop:
        return tr.stopped(stop, "minimize")
    x = np.asarray(res.x, dtype=np.float64)
    if not tr.hist or not np.array_equal(x, tr.x):
        v = tr.value_at(x)
        tr.x, tr.f = x, float(res.fun) if v is None else v
        tr.hist.append(tr.f)
    status = scipy_status(res, "minimize")
    return Result(x=x, fun=tr.f, success=bool(res.success), status=status,
                  message=STATUS[status] + f" ({method.name}: {res.message})",
                  nit=int(getattr(res, "nit", tr.nit - 1)), nfev=tr.nfev, njev=tr.njev,
                  nhev=tr.nhev, history={"fun": np.array(tr.hist)},
                  solver_status=int(res.status), solver_message=str(res.message),
                  family="minimize")


_LBFGSB_STATUS = {0: CONVERGED, 1: MAXITER, 2: FAILED, 3: CALLBACK}


def _run_lbfgsb(f, cb, x0, bounds, opts, tr):
    """run_minimize's solve by :func:`ctrlprop.solvers.lbfgsb.lbfgsb` (f and cb: the
    tracked objective and callback)."""
    bad = sorted(set(opts) - set(LBFGSB_OPTIONS) - {"maxiter"})
    if bad:
        raise ValueError(f"options has keys that method 'dense-lbfgsb' does not take "
                         f"({bad}); it takes {list(LBFGSB_OPTIONS)} (and maxiter=)")
    lo, hi = (None, None) if bounds is None else bounds
    try:
        res = lbfgsb(f, x0, lo, hi, callback=cb, **opts)
    except _Stop as stop:
        return tr.stopped(stop, "minimize")
    x = res.x
    if not np.array_equal(x, tr.x):                 # the last iterate was not recorded
        tr.x, tr.f = x, float(res.fun)
        tr.hist.append(tr.f)
    status = _LBFGSB_STATUS[res.status]
    return Result(x=x, fun=tr.f, success=bool(res.success), status=status,
                  message=STATUS[status] + f" (dense-lbfgsb: {res.message})", nit=res.nit,
                  nfev=tr.nfev, njev=tr.njev, nhev=0, history={"fun": np.array(tr.hist)},
                  solver_status=int(res.status), solver_message=res.message,
                  family="minimize")


def run_least_squares(method, residuals, jacobian, x0, *, bounds=None, maxiter=None,
                      options=None, notify=None, reshape=None):
    """``scipy.optimize.least_squares(residuals, x0, jac=jacobian, ...)`` under ctrlprop's
    conventions: the objective is ``1/2 |r|^2``; each Jacobian evaluation (at an accepted
    point) is one iteration; ``maxiter`` is ``max_nfev``.

    Returns
    -------
    Result
    """
    reshape = reshape or (lambda x: x)
    unknown = sorted(set(options or {}) - set(LEAST_SQUARES_OPTIONS))
    if unknown:
        raise ValueError(f"options {unknown} are not options of least-squares method "
                         f"{method.name!r}; it takes {list(LEAST_SQUARES_OPTIONS)} (the "
                         "iteration limit goes through maxiter=, the callback through "
                         "callback=)")
    pin = _pins(x0, bounds)
    if pin is not None:                                # solve for the free variables only
        if not pin.free.size:
            r0 = residuals(pin.base)
            return pin.pinned_result(0.5 * float(np.dot(r0, r0)))
        fr = pin.free

        def jac_free(z):
            J = jacobian(pin.embed(z))
            if isinstance(J, LinearOperator):
                return LinearOperator((J.shape[0], fr.size), dtype=J.dtype,
                                      matvec=lambda q: J.matvec(pin.direction(q)),
                                      rmatvec=lambda u: J.rmatvec(u)[fr])
            return J[:, fr]
        res = run_least_squares(method, lambda z: residuals(pin.embed(z)), jac_free, x0[fr],
                                bounds=pin.bounds, maxiter=maxiter, options=options,
                                notify=notify, reshape=lambda z: reshape(pin.embed(z)))
        res.x = pin.embed(res.x)
        return res
    tr = _Tracker(x0, notify, reshape)
    kw = dict(options or {})
    if maxiter is not None:
        kw["max_nfev"] = max(int(maxiter), 1)

    def r(x):
        v = residuals(x)
        tr.evaluated(x.copy(), 0.5 * float(np.dot(v, v)))
        return v

    def jac(x, *args):
        tr.njev += 1
        v = tr.value_at(x)
        if v is None:
            v = 0.5 * float(np.sum(np.square(residuals(x))))
        tr.iteration(x, v)
        return jacobian(x)

    if bounds is not None:
        kw["bounds"] = bounds
    try:
        res = least_squares(r, x0, jac=jac, method=method.name, **kw)
    except _Stop as stop:
        return tr.stopped(stop, "least_squares")
    x = np.asarray(res.x, dtype=np.float64)
    f = 0.5 * float(np.dot(res.fun, res.fun))
    if not np.array_equal(x, tr.x):
        tr.hist.append(f)
    status = scipy_status(res, "least_squares")
    return Result(x=x, fun=f, success=bool(res.success) and status == 0, status=status,
                  message=STATUS[status] + f" ({method.name}: {res.message})",
                  nit=max(tr.nit - 1, 0) if tr.nit else 0, nfev=int(res.nfev), njev=tr.njev,
                  nhev=0, history={"fun": np.array(tr.hist)}, solver_status=int(res.status),
                  solver_message=str(res.message), family="least_squares")
