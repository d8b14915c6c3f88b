"""Training a network on data: one entry point over scipy.optimize and Adam.

:func:`fit` builds a :class:`~ctrlprop.objectives.WeightObjective`, hands it to
``scipy.optimize.minimize`` (``obj(x) -> (E, grad)`` with ``jac=True``, plus
``hessp`` for the Newton methods), to ``scipy.optimize.least_squares``
(``residuals`` and ``jacobian``), or to a minibatch Adam loop, and watches every
iteration: the history of training and validation loss, early stopping on a
validation set, the user's callback, a progress display, and a guard against a
non-finite loss.  The iterations are counted the solver's way (one per
``minimize`` callback, one per Jacobian of ``least_squares``, one per epoch of
Adam); iteration 0 is the starting point.
"""

import sys
import time
import warnings

import numpy as np
from scipy.optimize import OptimizeResult, least_squares, minimize

from ..core.checks import canonical_method, check_data, check_sample_weight
from ..core.scaling import data_scaling
from ..core.threads import blas_threads, resolve_threads
from ..objectives.weights import WeightObjective, as_mask

__all__ = ["fit", "MINIMIZE_METHODS", "LEAST_SQUARES_METHODS", "STOCHASTIC_METHODS"]

MINIMIZE_METHODS = ("L-BFGS-B", "BFGS", "CG", "Newton-CG", "TNC", "SLSQP", "trust-ncg",
                    "trust-krylov", "trust-constr")
LEAST_SQUARES_METHODS = ("lm", "trf", "dogbox")
STOCHASTIC_METHODS = ("adam",)
_HESSP = ("Newton-CG", "trust-ncg", "trust-krylov", "trust-constr")
_DEFAULT_MAXITER = {"minimize": 1000, "least_squares": 100, "adam": 200}
_DENSE_JACOBIAN_MAX = 2.5e7      # entries (200 MB); above it trf/dogbox go matrix-free
_ADAM = dict(learning_rate=1e-3, batch_size=128, beta1=0.9, beta2=0.999, eps=1e-8,
             shuffle=True)


class _Stop(Exception):
    """Raised inside the solver to end the fit; carries the reason and result status."""

    def __init__(self, message, status, success):
        super().__init__(message)
        self.message, self.status, self.success = message, status, success


class _Monitor:
    """Per-iteration bookkeeping: history, best validation weights, patience, progress."""

    def __init__(self, obj, val_obj, patience, callback, progress):
        self.obj, self.val_obj = obj, val_obj
        self.patience, self.callback, self.progress = patience, callback, progress
        sw = obj.sample_weight
        # losses reported as (weighted) mean squared error per output, raw units:
        #   MSE = 2 E_data / (sum_k s_k * n_outputs)
        self.norm = 2.0 / ((obj.K if sw is None else sw.sum()) * obj.net.n_outputs)
        if val_obj is not None:
            swv = val_obj.sample_weight
            self.val_norm = 2.0 / ((val_obj.K if swv is None else swv.sum())
                                   * obj.net.n_outputs)
        self.it, self.t0 = -1, time.perf_counter()
        self.hist = {"iteration": [], "train_loss": [], "val_loss": [], "time": []}
        self.best_val, self.best_it, self.best_x = np.inf, -1, None
        self.last_x = obj.x0.copy()
        self.last_E = None
        self.nfev = self.njev = self.nhev = 0
        self._shown = -np.inf

    def step(self, x, E=None, train_loss=None):
        """Record iteration ``self.it + 1`` at free weights x; raise _Stop to end the fit."""
        self.it += 1
        if E is None:
            E = self.obj.value(x)
        if train_loss is None:
            train_loss = (E - self.obj._penalty(x)) * self.norm
        np.copyto(self.last_x, x)
        self.last_E = E
        now = time.perf_counter() - self.t0
        val = np.nan
        if self.val_obj is not None:
            val = self.val_obj.data_loss(x) * self.val_norm
            if val < self.best_val:
                self.best_val, self.best_it, self.best_x = val, self.it, x.copy()
        h = self.hist
        h["iteration"].append(self.it)
        h["train_loss"].append(train_loss)
        h["val_loss"].append(val)
        h["time"].append(now)
        if self.progress and (now - self._shown >= 1.0 or self.it == 0):
            self.show()
        if self.callback is not None:
            info = OptimizeResult(x=self.obj.full(x), fun=E, nit=self.it, train_loss=train_loss,
                                  val_loss=val, time=now)
            try:
                stop = self.callback(info)
            except StopIteration:
                stop = True
            if stop:
                raise _Stop(f"stopped by the callback at iteration {self.it}", 3, True)
        if (self.val_obj is not None and self.patience is not None
                and self.it - self.best_it >= self.patience):
            raise _Stop(f"early stopping: the validation loss did not improve for "
                        f"{self.patience} iterations; the weights of iteration {self.best_it} "
                        f"(validation loss {self.best_val:.4g}) were restored", 2, True)

    def show(self, final=False):
        """One progress line on stderr."""
        self._shown = time.perf_counter() - self.t0
        h = self.hist
        if not h["iteration"]:
            return
        val = "" if self.val_obj is None else f"  val {h['val_loss'][-1]:.4e}"
        best = "" if self.val_obj is None else f" (best {self.best_val:.4e} @ {self.best_it})"
        tag = "done" if final else "iter"
        print(f"[ctrlprop.fit] {tag} {h['iteration'][-1]:6d}  train {h['train_loss'][-1]:.4e}"
              f"{val}{best}  {self._shown:7.1f} s", file=sys.stderr, flush=True)

    def history(self):
        """The history as a dict of arrays."""
        out = {k: np.asarray(v, dtype=float) for k, v in self.hist.items()}
        out["iteration"] = out["iteration"].astype(int)
        if self.val_obj is None:
            out["val_loss"] = None
        return out


def _nonfinite(mon, what):
    """The _Stop for a non-finite loss or gradient."""
    return _Stop(f"stopped: the training {what} became non-finite (NaN or inf) after iteration "
                 f"{mon.it}; net.weights hold the last iterate with a finite loss (try a smaller "
                 f"step or learning rate, scale=True, or an l2 penalty)", 4, False)


# ---------------------------------------------------------------- solvers
def _run_minimize(method, obj, mon, options):
    """scipy.optimize.minimize with value+gradient (and hessp) wrapped for the monitor."""
    last = {"x": None, "E": None}

    def fun(x):
        E, g = obj(x)
        mon.nfev += 1
        mon.njev += 1
        if not (np.isfinite(E) and np.all(np.isfinite(g))):
            raise _nonfinite(mon, "loss")
        last["x"], last["E"] = x.copy(), E
        return E, g

    def hessp(x, p):
        mon.nhev += 1
        return obj.hessp(x, p)

    def cb(xk, *args):
        E = last["E"] if last["x"] is not None and np.array_equal(xk, last["x"]) else None
        mon.step(xk, E)

    kw = dict(jac=True, callback=cb, options=options)
    if method in _HESSP:
        kw["hessp"] = hessp
    mon.step(obj.x0)
    return minimize(fun, obj.x0, method=method, **kw)


def _run_least_squares(method, obj, mon, options):
    """scipy.optimize.least_squares; each Jacobian (at an accepted point) is an iteration."""
    last = {"x": None, "E": None}

    def res(x):
        r = obj.residuals(x)
        mon.nfev += 1
        E = 0.5 * float(r @ r)
        if not np.isfinite(E):
            raise _nonfinite(mon, "loss")
        last["x"], last["E"] = x.copy(), E
        return r

    opts = dict(options)
    kind = opts.pop("jacobian", "auto")
    if kind not in ("auto", "dense", "operator"):
        raise ValueError(f"options['jacobian'] must be 'auto', 'dense' or 'operator', got {kind!r}")
    if kind == "auto":
        big = obj.K * obj.net.n_outputs * obj.n > _DENSE_JACOBIAN_MAX
        kind = "operator" if big and method != "lm" else "dense"
    if kind == "operator" and method == "lm":
        raise ValueError("method 'lm' (MINPACK) needs the dense Jacobian; use 'trf' or "
                         "'dogbox' with options={'jacobian': 'operator'}")
    make_jac = obj.jacobian if kind == "dense" else obj.jacobian_operator

    def jac(x):
        E = last["E"] if last["x"] is not None and np.array_equal(x, last["x"]) else None
        mon.step(x, E)
        mon.njev += 1
        return make_jac(x)

    return least_squares(res, obj.x0, jac=jac, method=method, **opts)


def _run_adam(obj, mon, options, maxiter, rng):
    """Minibatch Adam (Kingma & Ba); one iteration = one pass over the training data."""
    o = dict(_ADAM)
    unknown = set(options) - set(o)
    if unknown:
        raise ValueError(f"unknown adam option(s) {sorted(unknown)}; adam takes {sorted(o)}")
    o.update(options)
    lr, b1, b2, eps = (float(o[k]) for k in ("learning_rate", "beta1", "beta2", "eps"))
    B = int(o["batch_size"])
    if not (lr > 0 and 0 <= b1 < 1 and 0 <= b2 < 1 and eps > 0 and B >= 1):
        raise ValueError(f"adam options out of range: {o}")
    K = obj.K
    B = min(B, K)
    x = obj.x0.copy()
    m, v, t = np.zeros_like(x), np.zeros_like(x), 0
    step, tmp = np.empty_like(x), np.empty_like(x)
    order = np.arange(K)
    mon.step(x)
    for _ in range(maxiter):
        if o["shuffle"]:
            rng.shuffle(order)
        E_sum = 0.0
        for a in range(0, K, B):
            # m <- b1 m + (1-b1) g ;  v <- b2 v + (1-b2) g^2
            # x <- x - lr * sqrt(1-b2^t)/(1-b1^t) * m / (sqrt(v) + eps sqrt(1-b2^t))
            E, g = obj.minibatch(x, order[a:a + B])
            mon.nfev += 1
            if not (np.isfinite(E) and np.all(np.isfinite(g))):
                raise _nonfinite(mon, "loss")
            E_sum += E
            t += 1
            m *= b1
            m += (1 - b1) * g
            np.multiply(g, g, out=tmp)
            v *= b2
            v += (1 - b2) * tmp
            c2 = np.sqrt(1 - b2 ** t)
            np.sqrt(v, out=tmp)
            tmp += eps * c2
            np.divide(m, tmp, out=step)
            step *= lr * c2 / (1 - b1 ** t)
            x -= step
        if not np.all(np.isfinite(x)):
            raise _nonfinite(mon, "weights")
        mon.step(x, train_loss=E_sum * mon.norm)
    return OptimizeResult(x=x, success=False, status=1,
                          message=f"maximum number of epochs ({maxiter}) reached")


# ---------------------------------------------------------------- fit


def _split(X, Y, sw, validation, rng):
    """(training, validation) data from the ``validation`` argument."""
    if validation is None:
        return (X, Y, sw), None
    if isinstance(validation, (tuple, list)):
        if len(validation) not in (2, 3):
            raise ValueError("validation must be a fraction in (0, 1) or a tuple (X_val, Y_val) "
                             f"or (X_val, Y_val, sample_weight_val), got a {len(validation)}-tuple")
        return (X, Y, sw), tuple(validation) + (None,) * (3 - len(validation))
    if isinstance(validation, (bool, np.bool_)) or not isinstance(validation, (float, int)):
        raise TypeError(f"validation must be None, a fraction in (0, 1) or a tuple "
                        f"(X_val, Y_val), got {type(validation).__name__}")
    frac = float(validation)
    K = X.shape[0]
    n_val = int(round(frac * K))
    if not 0 < frac < 1 or n_val < 1 or n_val >= K:
        raise ValueError(f"validation fraction {validation!r} of {K} samples leaves an empty "
                         "training or validation set; use a fraction in (0, 1)")
    perm = rng.permutation(K)
    tr, va = np.sort(perm[n_val:]), np.sort(perm[:n_val])
    pick = (lambda idx: None) if sw is None else (lambda idx: sw[idx])
    return (X[tr], Y[tr], pick(tr)), (X[va], Y[va], pick(va))


def _apply_scaling(net, X, Y, mask):
    """Learn standardisation from the training data and store it (refusing to
    reinterpret frozen weights)."""
    xm, xs = data_scaling(X, "X")
    ym, ys = data_scaling(Y, "Y")
    if not mask.all():
        same = all(cur is not None and np.array_equal(cur[0], m) and np.array_equal(cur[1], s)
                   for cur, m, s in ((net.input_scaling, xm, xs), (net.output_scaling, ym, ys)))
        if not same:
            raise ValueError("scale=True would store a new input/output standardisation, but "
                             "some weights are frozen and were fit for the network's current "
                             "scaling; pass scale=False to keep the current scaling")
    net.set_scaling(xm, xs, ym, ys)


def fit(net, X, Y, method="L-BFGS-B", *, l2=0.0, sample_weight=None, trainable=None,
        validation=None, patience=20, maxiter=None, options=None, scale=True, threads=None,
        callback=None, progress=False, seed=0):
    """Train ``net`` on data ``(X, Y)`` by least squares; ``net.weights`` hold the result.

    Minimises ``E(w) = 1/2 sum_k s_k |y(x_k; w) - y_k|^2 + 1/2 l2 |w_nb|^2``
    (see :class:`~ctrlprop.WeightObjective`; biases are not penalised),
    starting from the network's current weights.

    Parameters
    ----------
    net : Network
    X : array_like, shape (K, n_inputs)
    Y : array_like, shape (K, n_outputs)
        Raw units (1-D is accepted for a single input or output).
    method : str
        A ``scipy.optimize.minimize`` method that uses gradients
        (``"L-BFGS-B"`` (default), ``"BFGS"``, ``"CG"``, ``"TNC"``, ``"SLSQP"``,
        or with exact Hessian products ``"Newton-CG"``, ``"trust-ncg"``,
        ``"trust-krylov"``, ``"trust-constr"``); a
        ``scipy.optimize.least_squares`` method (``"lm"``, ``"trf"``,
        ``"dogbox"``; ``"lm"`` forms the dense ``(K n_outputs, n)`` Jacobian
        and factors it every iteration, so it suits small problems; ``"trf"``
        and ``"dogbox"`` switch to a matrix-free Jacobian (LinearOperator,
        ``tr_solver="lsmr"``) above 2.5e7 entries, or when
        ``options={"jacobian": "operator"}``); or ``"adam"``, minibatch
        stochastic gradient descent for data sets too large for full-batch
        methods.  Names are case-insensitive.
    l2 : float
        L2 penalty on the non-bias weights (scikit-learn's ``alpha``).
    sample_weight : array_like, shape (K,), optional
    trainable : None, bool array (n_weights,), or iterable of int
        Train only these weights (a mask) or the weights into these units; the
        others stay bit-identical.  ``net.units_weights(units)`` builds masks.
    validation : None, float, or tuple
        A fraction of (X, Y) held out at random (seeded by ``seed``), or
        explicit ``(X_val, Y_val[, sample_weight_val])``.  With validation data
        the fit ends with the weights of the iteration of lowest validation
        loss, whatever stopped it.
    patience : int or None
        With validation data, stop when the validation loss has not improved
        for this many iterations (None: never stop early).
    maxiter : int, optional
        Iterations: 1000 for minimize methods (function evaluations for
        TNC, its ``maxfun``), 100 function evaluations (``max_nfev``) for
        least_squares methods, 200 epochs for Adam.
    options : dict, optional
        Passed to the solver: minimize's ``options`` (``"L-BFGS-B"`` defaults
        here to ``maxcor=50``, which converges faster on networks than scipy's
        10); least_squares keyword arguments (``ftol``, ``x_scale``,
        ``tr_solver``, ..., plus ``jacobian``: ``"auto"``, ``"dense"`` or
        ``"operator"``); for Adam ``learning_rate`` (1e-3), ``batch_size``
        (128), ``beta1`` (0.9), ``beta2`` (0.999), ``eps`` (1e-8),
        ``shuffle`` (True).
    scale : bool
        True (default): learn input and output standardisation from the
        training data (mean and standard deviation of every column) and store
        it on the network (``net.input_scaling``, ``net.output_scaling``,
        saved with the model); the optimiser then works on well-conditioned
        numbers.  False: keep whatever scaling the network has.  Refitting a
        trained network on other data with ``scale=True`` re-learns the
        scaling, so it starts from a different function; pass ``scale=False``
        to warm-start exactly.  With frozen weights, a *change* of scaling
        raises (the frozen weights would compute something else).
    threads : int or None
        BLAS threads during the fit; None picks by problem size (one thread
        for small problems, see :mod:`ctrlprop.threads`).
    callback : callable, optional
        ``callback(info)`` after every iteration (iteration 0 is the start)
        with an ``OptimizeResult`` holding ``x`` (full weights, a new array),
        ``fun``, ``nit``, ``train_loss``, ``val_loss`` (NaN without
        validation) and ``time`` (seconds since the start).  Returning True
        or raising ``StopIteration`` ends the fit.
    progress : bool
        Print a progress line to stderr about once a second.
    seed : int
        Seeds the validation split and Adam's shuffling.

    Returns
    -------
    OptimizeResult
        ``x`` (full weights, also stored in ``net.weights``), ``fun`` (E at
        x), ``success``, ``status``, ``message``, ``nit``, ``nfev``, ``njev``,
        ``nhev``, ``method``, ``history`` (dict of arrays ``iteration``,
        ``train_loss``, ``val_loss`` (None without validation), ``time``:
        losses are mean squared errors per output in raw units, without the
        penalty; Adam's training loss is the mean over the epoch's
        minibatches as they were visited), ``best_iteration`` and
        ``val_loss`` with validation data, ``threads`` (the BLAS thread limit
        used; None: left as it was), and ``solver_result`` (the solver's own
        result, when it finished).

    Notes
    -----
    A non-finite loss or gradient ends the fit with ``success=False``, a
    message saying so, and the weights of the last iterate whose loss was
    finite.  Bad data (row counts that differ, NaN or inf, empty arrays) and
    unknown methods raise ValueError before anything changes.
    """
    method = canonical_method(method, [
        (MINIMIZE_METHODS, "scipy.optimize.minimize"),
        (LEAST_SQUARES_METHODS, "scipy.optimize.least_squares"),
        (STOCHASTIC_METHODS, "minibatch")], "training method")
    kind = ("minimize" if method in MINIMIZE_METHODS else
            "least_squares" if method in LEAST_SQUARES_METHODS else "adam")
    X, Y = check_data(net, X, Y)
    sw = check_sample_weight(sample_weight, X.shape[0])
    mask = as_mask(net, trainable)
    if maxiter is None:
        maxiter = _DEFAULT_MAXITER[kind]
    elif isinstance(maxiter, bool) or not isinstance(maxiter, (int, np.integer)) or maxiter < 0:
        raise ValueError(f"maxiter must be a non-negative integer, got {maxiter!r}")
    if patience is not None and (isinstance(patience, bool) or not isinstance(
            patience, (int, np.integer)) or patience < 1):
        raise ValueError(f"patience must be a positive integer or None, got {patience!r}")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable, got {type(callback).__name__}")
    options = {} if options is None else dict(options)
    rng = np.random.default_rng(seed)
    (Xt, Yt, swt), val = _split(X, Y, sw, validation, rng)
    if val is not None:
        Xv, Yv = check_data(net, val[0], val[1], names=("X_val", "Y_val"))
        swv = check_sample_weight(val[2], Xv.shape[0])
    n_threads = resolve_threads(threads, int(mask.sum()),
                                min(int(options.get("batch_size", _ADAM["batch_size"])),
                                    Xt.shape[0]) if kind == "adam" else Xt.shape[0])

    old_scaling = (net.input_scaling, net.output_scaling)
    try:                              # on any error, leave the network as it was
        if scale:
            _apply_scaling(net, Xt, Yt, mask)
        obj = WeightObjective(net, Xt, Yt, l2=l2, sample_weight=swt, trainable=mask)
        val_obj = None if val is None else WeightObjective(net, Xv, Yv, sample_weight=swv,
                                                           trainable=mask)
        mon = _Monitor(obj, val_obj, patience, callback, progress)
        with blas_threads(n_threads), np.errstate(over="ignore", invalid="ignore",
                                                  divide="ignore"):
            solver_res, stop = _solve(kind, method, obj, mon, options, maxiter, rng)
            x, stop = _final_weights(obj, mon, solver_res, stop)
            E = obj.value(x)
    except BaseException:
        net.input_scaling, net.output_scaling = old_scaling
        raise
    if progress:
        mon.show(final=True)
    net.weights = w = obj.full(x)

    if stop is not None:
        success, status, message = stop.success, stop.status, stop.message
        if stop.status == 4:
            warnings.warn(message, RuntimeWarning, stacklevel=2)
    else:
        success = bool(getattr(solver_res, "success", True))
        status = int(getattr(solver_res, "status", 0))
        message = str(getattr(solver_res, "message", ""))
    out = OptimizeResult(x=w, fun=E, success=success, status=status, message=message,
                         nit=max(mon.it, 0), nfev=mon.nfev, njev=mon.njev, nhev=mon.nhev,
                         method=method, history=mon.history(), solver_result=solver_res,
                         threads=n_threads)
    if val_obj is not None:
        out.best_iteration, out.val_loss = mon.best_it, mon.best_val
    return out


def _solve(kind, method, obj, mon, options, maxiter, rng):
    """Run the solver; return (its result or None, the _Stop that ended it or None)."""
    if kind == "minimize":
        options.setdefault("maxfun" if method == "TNC" else "maxiter", maxiter)
        if method == "L-BFGS-B":
            options.setdefault("maxcor", 50)
    elif kind == "least_squares":
        if "maxiter" in options:                 # scipy's name for least_squares' limit
            if "max_nfev" in options:
                raise ValueError("give options['max_nfev'] or options['maxiter'], not both")
            options["max_nfev"] = options.pop("maxiter")
        options.setdefault("max_nfev", max(maxiter, 1))
    try:
        if kind == "minimize":
            return _run_minimize(method, obj, mon, options), None
        if kind == "least_squares":
            return _run_least_squares(method, obj, mon, options), None
        return _run_adam(obj, mon, options, maxiter, rng), None
    except _Stop as stop:
        return None, stop


def _final_weights(obj, mon, solver_res, stop):
    """The free weights the fit ends with, and the (possibly new) _Stop.

    The solver's answer when it finished (recorded as a last iteration if it
    was not one), the last finite iterate when something stopped it, and with
    validation data always the iterate of lowest validation loss.
    """
    x = mon.last_x
    if stop is None:
        xs = np.asarray(solver_res.x, dtype=float)
        if not np.array_equal(xs, mon.last_x):
            E = obj.value(xs)
            if np.isfinite(E):
                x = xs
                try:
                    mon.step(xs, E)
                except _Stop as s:
                    stop = s
            else:
                stop = _nonfinite(mon, "loss")
    if mon.val_obj is not None and mon.best_x is not None:
        x = mon.best_x
    return x.copy(), stop
