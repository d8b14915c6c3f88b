"""Solving control problems, one or many at once: :func:`optimize_controls`.

It builds a :class:`ctrlprop.control.ControlObjective`, chooses the start
points of every run (``u0``, ``restarts`` random points within the bounds, or
the best of ``screen`` screened points), and solves with a scipy method (one
problem at a time) or with :func:`solve_lm`.

:func:`solve_lm` is a projected Levenberg-Marquardt method run on N independent
least-squares problems together (the K targets of a batch, times the number of
starts): every evaluation is one forward pass and ``n_outputs`` input-only
backward passes for all unfinished problems, and every step solves the N small
``m x m`` systems with one stacked ``np.linalg.solve``.  Each problem has its
own damping, its own active set of bounds and its own stopping test, and stops
being evaluated once it has converged (the work buffers shrink with the active
set).

For one problem, with ``r(u)``, ``J(u)`` the residuals and their Jacobian,
``g = J^T r``, ``A = J^T J`` and bounds ``lo <= u <= hi``::

    fixed_i = (u_i <= lo_i and g_i > 0) or (u_i >= hi_i and g_i < 0)   (active bounds)
    (A + lam diag(D)) d = -g          on the free variables, d_i = 0 on the fixed ones
    u'   = u + d, except that a variable crossing a bound stops half-way between u_i
           and the bound, or on the bound if u_i is within 1e-3 of its range from it
    s    = u' - u
    pred = -(g^T s + 1/2 s^T A s),  rho = (E(u) - E(u')) / pred
    accept if rho > 1e-4:  lam *= max(1/3, 1 - (2 rho - 1)^3),  nu = 2
    else:                  lam *= nu,  nu *= 2                   (Nielsen's update)

``D`` is the running maximum of ``diag(A)`` (Marquardt's scaling, so the method
is invariant to the units of each control).  A problem stops when the
projected gradient ``u - clip(u - g, lo, hi)`` is below ``gtol`` (status 1),
an accepted step lowers E by less than ``ftol * E`` with ``rho > 1/4``
(status 2), or a step is shorter than ``xtol * (xtol + |u|)`` (status 3); it
fails after ``maxiter`` steps (status 0), if E is not finite at the start
(status -1), or if the damping overflows (status -2).
"""

import numpy as np
from scipy.optimize import Bounds, OptimizeResult, least_squares, minimize

from ..core.checks import canonical_method
from ..core.threads import auto_threads, blas_threads
from ..objectives.control import ControlObjective
from ..solvers.batch_lm import LM_MESSAGES, LM_OPTIONS, solve_lm

__all__ = ["optimize_controls", "ControlResult", "solve_lm", "LM_MESSAGES"]

LM_MESSAGES = {
    1: "projected gradient below gtol",
    2: "relative reduction of E below ftol",
    3: "step below xtol",
    0: "maximum number of iterations reached",
    -1: "objective is not finite at the start",
    -2: "damping overflow: no decrease of E found",
}

SNAP = 1e-3          # within this fraction of its range a variable may land on a bound

LM_OPTIONS = {"maxiter": 100, "ftol": 1e-10, "xtol": 1e-10, "gtol": 1e-10, "lambda0": 1.0}


# ---------------------------------------------------------------- bounds and starts
def bounds_arrays(bounds, K, m):
    """``lo, hi`` of shape (K, m) from None, m ``(lo, hi)`` pairs or a ``scipy.optimize.Bounds``
    (whose lb/ub may be (m,) or (K, m)); None or inf for an open side."""
    if bounds is None:
        return np.full((K, m), -np.inf), np.full((K, m), np.inf)
    if hasattr(bounds, "lb") and hasattr(bounds, "ub"):
        ends = []
        for name, a in (("lb", bounds.lb), ("ub", bounds.ub)):
            a = np.asarray(a, float)
            if a.shape not in ((), (m,), (K, m)):
                raise ValueError(f"bounds.{name} must have shape ({m},) or ({K}, {m}), "
                                 f"got {a.shape}")
            ends.append(np.array(np.broadcast_to(a, (K, m))))
        lo, hi = ends
    else:
        try:
            pairs = list(bounds)
        except TypeError:
            raise TypeError("bounds must be a sequence of (lo, hi) pairs or a "
                            f"scipy.optimize.Bounds, got {type(bounds).__name__}") from None
        if len(pairs) != m:
            raise ValueError(f"bounds must give one (lo, hi) pair per control ({m}), "
                             f"got {len(pairs)}")
        lo, hi = np.empty(m), np.empty(m)
        for i, p in enumerate(pairs):
            try:
                a, b = p
            except (TypeError, ValueError):
                raise ValueError(f"bounds[{i}] must be a (lo, hi) pair, got {p!r}") from None
            lo[i] = -np.inf if a is None else float(a)
            hi[i] = np.inf if b is None else float(b)
        lo, hi = np.tile(lo, (K, 1)), np.tile(hi, (K, 1))
    if np.isnan(lo).any() or np.isnan(hi).any():
        raise ValueError("bounds contain NaN (use None or +-inf for an open side)")
    if (lo == np.inf).any() or (hi == -np.inf).any():
        raise ValueError("bounds are infeasible: a lower bound of +inf or an upper bound of -inf")
    bad = np.argwhere(lo > hi)
    if len(bad):
        k, i = bad[0]
        where = f"control {i}" + (f" of problem {k}" if K > 1 else "")
        raise ValueError(f"bounds are infeasible: lo > hi for {len(bad)} entr(ies), first "
                         f"{where}: lo={lo[k, i]} > hi={hi[k, i]}")
    return lo, hi


def start_points(u0, lo, hi):
    """The (K, m) start: u0 checked to be finite and inside the bounds, or the default.

    Default: the middle of the bounds where both ends are finite, else 0 moved
    into the bounds.  A u0 outside the bounds is rejected (never clipped).
    """
    K, m = lo.shape
    if u0 is None:
        both = np.isfinite(lo) & np.isfinite(hi)
        return np.where(both, 0.5 * (np.where(both, lo, 0) + np.where(both, hi, 0)),
                        np.clip(0.0, lo, hi))
    try:
        U = np.asarray(u0, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"u0 must be a numeric array, got {type(u0).__name__}") from None
    if U.shape not in ((m,), (K, m)):
        raise ValueError(f"u0 must have shape ({m},)" + (f" or ({K}, {m})" if K > 1 else "")
                         + f", got {U.shape}")
    U = np.array(np.broadcast_to(U, (K, m)))
    if not np.all(np.isfinite(U)):
        raise ValueError("u0 contains NaN or inf")
    out = np.argwhere((U < lo) | (U > hi))
    if len(out):
        k, i = out[0]
        where = f"u0[{i}]" if K == 1 else f"u0[{k}, {i}]"
        raise ValueError(f"{where} = {U[k, i]} is outside the bounds [{lo[k, i]}, {hi[k, i]}] "
                         f"({len(out)} entr(ies) outside); give a start inside the bounds "
                         "(it is not clipped)")
    return U


def _count(v, name):
    """A non-negative int argument."""
    if isinstance(v, bool) or not hasattr(v, "__index__") or int(v) < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {v!r}")
    return int(v)


def multi_starts(obj, U0, lo, hi, restarts=0, screen=0, seed=0):
    """The start points of every run: (S, K, m), S = restarts + 1, run 0 from U0 unless screened.

    Without ``screen``: U0 and ``restarts`` points drawn uniformly within the
    bounds.  With ``screen = C >= restarts``: E is evaluated (forward passes
    only) at U0 and C uniform points, and the S best of them start the runs.
    """
    R, C = _count(restarts, "restarts"), _count(screen, "screen")
    if not R and not C:
        return U0[None]
    if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
        i = int(np.argwhere(~(np.isfinite(lo) & np.isfinite(hi)))[0, 1])
        raise ValueError("restarts and screen draw start points uniformly within the bounds, "
                         f"so every control needs finite bounds; control {i} has "
                         f"[{lo.ravel()[i]}, {hi.ravel()[i]}]")
    if C and C < R:
        raise ValueError(f"screen ({C}) must be at least restarts ({R}): the runs start "
                         "from the best screened points")
    rng = np.random.default_rng(seed)
    rand = lo + (hi - lo) * rng.random((C or R,) + U0.shape)
    pool = np.concatenate([U0[None], rand])
    if not C:
        return pool
    F = np.stack([obj._value_grad(P.T, grad=False)[0] for P in pool])     # (C+1, K)
    F[~np.isfinite(F)] = np.inf
    best = np.argsort(F, axis=0, kind="stable")[:R + 1]                    # (S, K)
    return np.take_along_axis(pool, best[:, :, None], axis=0)


# ---------------------------------------------------------------- optimize_controls
_MINIMIZE = {n.lower(): n for n in ("CG", "BFGS", "Newton-CG", "L-BFGS-B", "TNC", "SLSQP", "dogleg",
                                    "trust-ncg", "trust-krylov", "trust-exact", "trust-constr")}
_BOUNDED = {"l-bfgs-b", "tnc", "slsqp", "trust-constr"}
_HESSP = {"newton-cg", "trust-ncg", "trust-krylov", "trust-constr"}
_HESS = {"dogleg", "trust-exact"}
_CONSTRAINED = {"slsqp", "trust-constr"}
_LSQ = {"trf", "dogbox", "lm"}
_BATCH = {"batch-lm"}


class ControlResult(OptimizeResult):
    """Result of :func:`optimize_controls` (a ``scipy.optimize.OptimizeResult``).

    Fields, for one problem (for a batch of K each gains a leading K axis):

    u, x : ndarray (m,)             the best control found (``x`` is an alias)
    y : ndarray (n_outputs,)        the model output at u
    fun : float                     E(u)
    error : float                   ``|y - y*|``, unweighted
    violation : float               largest output-bound violation (0 without bounds)
    success, status, message, nit   of the best run (``message`` summarises a batch,
                                    whose per-problem messages are in ``messages``)
    nfev : int                      evaluations (batched evaluations for "batch-lm")
    method : str
    u_all (S, m), fun_all (S,), success_all (S,), starts (S, m), best : every run
        (S = restarts + 1), where it started, and the index of the returned one
    runs : list of the S (S*K for a batch, run-major) scipy results (scipy methods only)
    """


def _canonical(method):
    """Lower-case method name, checked."""
    return canonical_method(method, [
        (sorted(_BATCH), "batched Levenberg-Marquardt"),
        (sorted(_MINIMIZE.values()), "gradient methods of scipy.optimize.minimize"),
        (sorted(_LSQ), "scipy.optimize.least_squares")]).lower()


def _scipy_run(obj, u0, lo, hi, method, options):
    """One scipy solve of a single-problem objective; the raw result."""
    bounded = bool(np.isfinite(lo).any() or np.isfinite(hi).any())
    if method in _LSQ:
        kw = dict(options)
        if bounded:
            kw["bounds"] = (lo, hi)
        return least_squares(obj.residuals, u0, jac=obj.jacobian, method=method, **kw)
    kw = dict(method=_MINIMIZE[method], jac=True, options=options)
    if bounded:
        kw["bounds"] = Bounds(lo, hi)
    if method in _HESSP:
        kw["hessp"] = obj.hessp
    if method in _HESS:
        kw["hess"] = obj.hess
    if method in _CONSTRAINED and len(obj._cidx):
        kw["constraints"] = [obj.constraints(hessian=method == "trust-constr")]
    return minimize(obj, u0, **kw)


def optimize_controls(net, target, inputs=None, control=None, u0=None, bounds=None,
                      control_cost=0.0, method=None, restarts=0, seed=0, *, screen=0,
                      output_weights=None, u_rest=None, output_bounds=None, penalty=1e4,
                      hessian="exact", options=None):
    """Find the controls that drive a frozen network's outputs to a target.

    Minimises the :class:`ControlObjective` E(u) for one problem, or for K
    independent problems at once.

    Parameters
    ----------
    net : Network
    target : array_like, shape (n_outputs,) or (K, n_outputs)
    inputs : array_like, optional
        The non-control inputs, (n_inputs - m,) or (n_inputs,), or (K, .); see
        :class:`ControlObjective`.
    control : sequence of int, optional
        Input indices that are the controls; default every input.
    u0 : array_like, shape (m,) or (K, m), optional
        Start.  Default: the middle of the bounds where both ends are finite,
        else 0 moved into the bounds.  A start outside the bounds raises a
        ValueError (it is not clipped).
    bounds : sequence of (lo, hi) or scipy.optimize.Bounds, optional
        One pair per control (None for an open side); Bounds may hold (K, m)
        per-problem arrays.
    control_cost : float or array_like
        R of E (scalar, (m,) or (m, m)).
    method : str, optional
        ``"batch-lm"`` (the vectorized projected Levenberg-Marquardt of
        :mod:`ctrlprop.control_batch`, the default for a batch), a gradient
        method of ``scipy.optimize.minimize`` (``"L-BFGS-B"``, the default for
        one problem, ``"CG"``, ``"BFGS"``, ``"Newton-CG"``, ``"TNC"``,
        ``"SLSQP"``, ``"dogleg"``, ``"trust-ncg"``, ``"trust-krylov"``,
        ``"trust-exact"``, ``"trust-constr"``) or a ``least_squares`` method
        (``"trf"``, ``"dogbox"``, ``"lm"``).  scipy methods solve a batch one
        problem at a time.  Bounds need L-BFGS-B, TNC, SLSQP, trust-constr,
        trf, dogbox or batch-lm.
    restarts : int
        Extra runs from points drawn uniformly within the (finite) bounds; the
        run with the lowest E is returned and all are kept (``u_all``...).
    seed : int
        Seed of those draws.
    screen : int
        If > 0, E is first evaluated (forward passes only, all problems at
        once) at u0 and ``screen`` uniform points, and the ``restarts + 1``
        runs start from the best of them.
    output_weights, u_rest : optional
        W and u_rest of E.
    output_bounds : dict or sequence, optional
        Bounds on chosen outputs (see :class:`ControlObjective`).  SLSQP and
        trust-constr enforce them exactly, as nonlinear constraints with the
        exact Jacobian; every other method through the quadratic penalty
        ``penalty`` (then a bound can be exceeded by about ``dE/dy / penalty``).
    penalty : float
        Weight of that penalty.
    hessian : {"exact", "gauss-newton"}
        The Hessian given to Newton-CG, trust-* and dogleg (dogleg needs it
        positive definite: use "gauss-newton" with a control cost).
    options : dict, optional
        Passed to ``minimize(options=...)``, as keywords to ``least_squares``,
        or for batch-lm: ``maxiter`` (100), ``ftol``, ``xtol``, ``gtol`` (1e-10),
        ``lambda0`` (1.0: a cautious first step, between Gauss-Newton and
        scaled gradient descent; 1e-3 suits warm starts near the solution).

    Returns
    -------
    ControlResult
        ``u`` (m,) or (K, m), ``y``, ``fun``, ``error``, ``success`` ... and every
        run (``u_all``, ``fun_all``, ``success_all``, ``best``).  ``u`` is
        always inside the bounds (a scipy result a rounding error outside is
        projected back) and ``fun``, ``y`` are evaluated at the returned ``u``.
    """
    name = None if method is None else _canonical(method)
    exact = name in _CONSTRAINED and output_bounds is not None
    obj = ControlObjective(net, target, inputs, control, output_weights, control_cost,
                           u_rest, output_bounds, 0.0 if exact else penalty, hessian)
    K, m = obj.K, obj.m
    if name is None:
        name = "batch-lm" if obj.batched else "l-bfgs-b"
    if options is not None and not isinstance(options, dict):
        raise TypeError(f"options must be a dict, got {type(options).__name__}")
    options = dict(options or {})
    lo, hi = bounds_arrays(bounds, K, m)
    bounded = np.isfinite(lo).any() or np.isfinite(hi).any()
    if bounded and name not in _BOUNDED | _BATCH | {"trf", "dogbox"}:
        raise ValueError(f"method {method!r} does not handle bounds; use 'batch-lm', "
                         "'L-BFGS-B', 'TNC', 'SLSQP', 'trust-constr', 'trf' or 'dogbox'")
    if name == "lm" and obj.n_residuals < m:
        raise ValueError(f"method 'lm' needs at least as many residuals ({obj.n_residuals}) "
                         f"as controls ({m}); add a control_cost or use 'trf'")
    U0 = start_points(u0, lo, hi)
    starts = multi_starts(obj, U0, lo, hi, restarts, screen, seed)        # (S, K, m)
    S = starts.shape[0]

    runs = None
    if name in _BATCH:
        bad = set(options) - set(LM_OPTIONS)
        if bad:
            raise ValueError(f"unknown batch-lm option(s) {sorted(bad)}; "
                             f"expected {sorted(LM_OPTIONS)}")
        opts = {**LM_OPTIONS, **options}
        with blas_threads(auto_threads(net.n_weights, S * K)):
            out = solve_lm(obj, starts.reshape(S * K, m), np.tile(lo, (S, 1)),
                           np.tile(hi, (S, 1)), None if S == 1 else np.tile(np.arange(K), S),
                           **opts)
        U = out["u"].reshape(S, K, m)
        status, nit = out["status"].reshape(S, K), out["nit"].reshape(S, K)
        success, nfev = status > 0, out["nfev"]
        messages = np.array([LM_MESSAGES[c] for c in out["status"]]).reshape(S, K)
    else:
        one, runs = obj.single(), []
        U = np.empty((S, K, m))
        status, nit = np.zeros((S, K), int), np.zeros((S, K), int)
        success, messages, nfev = np.zeros((S, K), bool), np.empty((S, K), object), 0
        with blas_threads(1):
            for s in range(S):
                for k in range(K):
                    res = _scipy_run(one.select(k), starts[s, k], lo[k], hi[k], name, options)
                    U[s, k] = np.clip(res.x, lo[k], hi[k])
                    status[s, k], success[s, k] = res.status, res.success
                    nit[s, k] = res.get("nit", res.get("njev", 0))
                    messages[s, k], nfev = res.message, nfev + res.nfev
                    runs.append(res)
    F = np.stack([obj.per_problem(U[s], grad=False)[0] for s in range(S)])   # E at each end
    best = np.argmin(np.where(np.isfinite(F), F, np.inf), axis=0)            # (K,)
    kk = np.arange(K)
    u = U[best, kk]
    Y = obj.outputs(u).reshape(K, -1)
    r = ControlResult(
        u=u, x=u, y=Y, fun=F[best, kk], error=np.linalg.norm(Y - obj._T.T, axis=1),
        violation=obj.output_violation(Y), success=success[best, kk],
        status=status[best, kk], nit=nit[best, kk], nfev=nfev, method=_display(name),
        u_all=U, fun_all=F, success_all=success, best=best, starts=starts)
    if obj.batched:
        r.message = f"{int(r.success.sum())} of {K} problems converged"
        r.messages = messages[best, kk]
    else:
        for key in ("u", "x", "y", "fun", "error", "violation", "success", "status", "nit",
                    "best"):
            r[key] = r[key][0].item() if r[key][0].ndim == 0 else r[key][0]
        r.u_all, r.fun_all, r.success_all = U[:, 0], F[:, 0], success[:, 0]
        r.starts = starts[:, 0]
        r.message = messages[best[0], 0]
    if runs is not None:
        r.runs = runs
    return r


def _display(name):
    """The user-facing spelling of a method name."""
    return _MINIMIZE.get(name, name)
