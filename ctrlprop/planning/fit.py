"""Training a network on data: one entry point over scipy.optimize and Adam.

:func:`fit` builds a :class:`~ctrlprop.WeightObjective`, hands it to
``scipy.optimize.minimize`` (``obj(x) -> (E, grad)`` with ``jac=True``, plus the exact
``hessp`` for the Newton methods), to ``scipy.optimize.least_squares`` (``residuals`` and
the exact ``jacobian``, dense or matrix-free) or to minibatch Adam
(:mod:`ctrlprop.solvers`), and watches every iteration: the history of training and
validation loss, early stopping on a validation set, the user's callback, a progress
display, and a guard against a non-finite loss.  Adam also trains on out-of-core arrays
(:class:`~ctrlprop.StreamedObjective`), block by block.  Iterations are counted the solver's way
(one per ``minimize`` callback, one per Jacobian of ``least_squares``, one per epoch of
Adam); iteration 0 is the starting point.
"""

import time

import numpy as np

from ..core.arrays import RowView, column_moments, is_out_of_core
from ..core.checks import check_data, check_dtype, check_int, check_sample_weight
from ..core.ensemble import Ensemble
from ..core.network import Network
from ..core.scaling import data_scaling
from ..core.threads import blas_threads, resolve_threads
from ..objectives.ensemble import EnsembleObjective, bootstrap_counts
from ..objectives.weights import StreamedObjective, WeightObjective, as_mask
from ..solvers.adam import ADAM_OPTIONS, adam
from ..solvers.methods import resolve
from ..solvers.progress import Progress
from ..solvers.result import (CALLBACK, CONVERGED, EARLY_STOP, NONFINITE, STATUS, Notifier,
                              Result, warn_unless_success)
from ..solvers.scipy_solve import run_least_squares, run_minimize, solver_options
from ..solvers.starts import check_seed

__all__ = ["fit", "FIT_METHODS", "ENSEMBLE_FIT_METHODS"]

FIT_METHODS = ("L-BFGS-B", "BFGS", "CG", "TNC", "SLSQP", "Newton-CG", "trust-ncg",
               "trust-krylov", "trust-constr", "lm", "trf", "dogbox", "adam")
# an ensemble trains with the gradient methods (its objective has no Hessian product or
# residual Jacobian) and in memory
ENSEMBLE_FIT_METHODS = ("L-BFGS-B", "BFGS", "CG", "TNC", "SLSQP", "adam")
_DEFAULT_MAXITER = {"minimize": 1000, "least_squares": 100, "stochastic": 200}
_DENSE_JACOBIAN_MAX = 2.5e7      # entries (200 MB); above it trf/dogbox go matrix-free
DEFAULT_BLOCK_ROWS = 65536       # out-of-core Adam without block_size: about this many rows


class _Monitor:
    """Per-iteration bookkeeping: history, best validation weights, patience, progress.

    ``step(x, E)`` records iteration ``it + 1`` and returns None to go on or a status
    code to stop (CALLBACK, EARLY_STOP), the protocol of the solvers' ``notify``.
    """

    def __init__(self, obj, val_obj, patience, notify, bar):
        self.obj, self.val_obj = obj, val_obj
        self.patience, self.notify, self.bar = patience, notify, bar
        # losses reported as (weighted) mean squared error per output, raw units:
        #   MSE = 2 E_data / (sum_k s_k * n_outputs)
        self.norm = 2.0 / (obj.total_weight * obj.net.n_outputs)
        if val_obj is not None:
            self.val_norm = 2.0 / (val_obj.total_weight * obj.net.n_outputs)
        self.it, self.t0 = -1, time.perf_counter()
        self.hist = {"iteration": [], "fun": [], "train_loss": [], "val_loss": [], "time": []}
        self.best_val, self.best_it, self.best_x = np.inf, -1, None
        self.last_x = obj.x0.copy()

    def step(self, x, E=None, train_loss=None):
        """Record the next iteration at free weights x; a status code to stop, or None."""
        self.it += 1
        if E is None:
            E = self.obj.value(x)
        if train_loss is None:
            train_loss = (E - self.obj.penalty(x)) * self.norm
        np.copyto(self.last_x, x)
        now = time.perf_counter() - self.t0
        val = np.nan
        if self.val_obj is not None:
            val = self.val_obj.data_loss(x) * self.val_norm
            if val < self.best_val:
                self.best_val, self.best_it, self.best_x = val, self.it, x.copy()
        h = self.hist
        for key, v in (("iteration", self.it), ("fun", E), ("train_loss", train_loss),
                       ("val_loss", val), ("time", now)):
            h[key].append(v)
        if self.it:
            if self.val_obj is None:
                self.bar.update(loss=train_loss)
            else:
                self.bar.update(loss=train_loss, val=val)
        if self.notify(x=self.obj.full(x), fun=E, nit=self.it, train_loss=train_loss,
                       val_loss=val, time=now):
            return CALLBACK
        if (self.val_obj is not None and self.patience is not None
                and self.it - self.best_it >= self.patience):
            return EARLY_STOP
        return None

    def solver_notify(self, x, fun, nit, **_):
        """The solvers' notify: record the iterate, say whether to stop."""
        return self.step(np.asarray(x, dtype=np.float64), fun)

    def history(self):
        """The history as a dict of arrays."""
        out = {k: np.asarray(v, dtype=float) for k, v in self.hist.items()}
        out["iteration"] = out["iteration"].astype(int)
        if self.val_obj is None:
            out["val_loss"] = None
        return out


def _solve(method, obj, mon, options, maxiter, rng):
    """Run the solver with the monitor as its notify; the solver's Result."""
    if method.family == "minimize":
        if method.name == "L-BFGS-B":
            options.setdefault("maxcor", 50)
        return run_minimize(method, obj, obj.x0, hessp=getattr(obj, "hessp", None),
                            maxiter=maxiter,
                            options=options, notify=mon.solver_notify)
    if method.family == "least_squares":
        kind = options.pop("jacobian", "auto")
        if kind not in ("auto", "dense", "operator"):
            raise ValueError(f"options['jacobian'] must be 'auto', 'dense' or 'operator', "
                             f"got {kind!r}")
        if kind == "auto":
            big = obj.K * obj.net.n_outputs * obj.n > _DENSE_JACOBIAN_MAX
            kind = "operator" if big and method.name != "lm" else "dense"
        if kind == "operator":
            if method.name == "lm":
                raise ValueError("method 'lm' (MINPACK) needs the dense Jacobian; use 'trf' "
                                 "or 'dogbox' with options={'jacobian': 'operator'}")
            options.setdefault("tr_solver", "lsmr")
        jac = obj.jacobian if kind == "dense" else obj.jacobian_operator
        return run_least_squares(method, obj.residuals, jac, obj.x0, maxiter=maxiter,
                                 options=options, notify=mon.solver_notify)

    def notify(x, fun, nit):                       # Adam's epoch loss is a minibatch sum
        return mon.step(x, train_loss=fun * mon.norm)
    load = obj.load_block if isinstance(obj, StreamedObjective) else None
    return adam(obj.minibatch, obj.x0, obj.K, maxiter, options, rng, notify, load_block=load)


def _validation_fraction(validation, K, unit="samples"):
    """None, the 2- or 3-tuple of explicit validation data, or (fraction, count held out of
    K ``unit``) from the ``validation`` argument."""
    if validation is None:
        return None
    if isinstance(validation, (tuple, list)):
        if len(validation) not in (2, 3):
            raise ValueError("validation must be a fraction in (0, 1) or a tuple (X_val, Y_val) "
                             f"or (X_val, Y_val, sample_weight_val), got a {len(validation)}-tuple")
        return tuple(validation) + (None,) * (3 - len(validation))
    if isinstance(validation, (bool, np.bool_)) or not isinstance(validation, (float, int)):
        raise TypeError(f"validation must be None, a fraction in (0, 1) or a tuple "
                        f"(X_val, Y_val), got {type(validation).__name__}")
    frac = float(validation)
    n_val = int(round(frac * K))
    if not 0 < frac < 1 or n_val < 1 or n_val >= K:
        hint = ("; use a fraction in (0, 1)" if unit == "samples" else
                "; use a fraction in (0, 1), or a smaller options['block_size']")
        raise ValueError(f"validation fraction {validation!r} of {K} {unit} leaves an empty "
                         f"training or validation set{hint}")
    return frac, n_val


def _split(X, Y, sw, validation, rng):
    """(training, validation) data from the ``validation`` argument."""
    v = _validation_fraction(validation, X.shape[0])
    if v is None:
        return (X, Y, sw), None
    if len(v) == 3:
        return (X, Y, sw), v
    perm = rng.permutation(X.shape[0])
    tr, va = np.sort(perm[v[1]:]), np.sort(perm[:v[1]])
    pick = (lambda idx: None) if sw is None else (lambda idx: sw[idx])
    return (X[tr], Y[tr], pick(tr)), (X[va], Y[va], pick(va))


def _split_blocks(X, Y, sw, validation, rng, L):
    """As :func:`_split` for streamed data: a fraction holds out whole blocks of L rows
    (``round(f * n_blocks)`` of them, ``rng.permutation(n_blocks)[:n]``), as RowViews."""
    K = int(X.shape[0])
    nb = -(-K // L)
    v = _validation_fraction(validation, nb, f"blocks of options['block_size'] = {L} rows")
    if v is None:
        return (X, Y, sw), None
    if len(v) == 3:
        return (X, Y, sw), v
    perm = rng.permutation(nb)
    out = []
    for blocks in (np.sort(perm[v[1]:]), np.sort(perm[:v[1]])):
        starts = blocks * L
        rows = (starts, np.minimum(starts + L, K))
        out.append(tuple(None if A is None else RowView(A, rows) for A in (X, Y, sw)))
    return out[0], out[1]


def _streamed_data(net, X, Y, sw, validation, rng, L, scale):
    """Checked training and validation data for the streamed path, every out-of-core array
    read once (its NaN check; the training inputs' and targets' scaling statistics when
    ``scale``): ``(Xt, Yt, swt), val, scaling``."""
    X, Y = check_data(net, X, Y, stream=True)
    sw = check_sample_weight(sw, X.shape[0], stream=True)
    (Xt, Yt, swt), val = _split_blocks(X, Y, sw, validation, rng, L)
    if val is not None:
        Xv, Yv = check_data(net, val[0], val[1], names=("X_val", "Y_val"), stream=True)
        val = (Xv, Yv, check_sample_weight(val[2], Xv.shape[0], stream=True))
    scaling = None
    if scale:
        scaling = data_scaling(Xt, "X") + data_scaling(Yt, "Y")
    else:
        for A, name in ((Xt, "X"), (Yt, "Y")):
            if is_out_of_core(A):
                column_moments(A, name)
    if val is not None:
        for A, name in zip(val[:2], ("X_val", "Y_val")):
            if is_out_of_core(A):
                column_moments(A, name)
    return (Xt, Yt, swt), val, scaling


def _apply_scaling(net, xm, xs, ym, ys, mask):
    """Store the standardisation learned from the training data (refusing to reinterpret
    frozen weights)."""
    if not mask.all():
        same = all(cur is not None and np.array_equal(cur[0], m) and np.array_equal(cur[1], s)
                   for cur, m, s in ((net.input_scaling, xm, xs), (net.output_scaling, ym, ys)))
        if not same:
            raise ValueError("scale=True would store a new input/output standardisation, but "
                             "some weights are frozen and were fit for the network's current "
                             "scaling; pass scale=False to keep the current scaling")
    net.set_scaling(xm, xs, ym, ys)


def _out_of_core_argument(X, Y, sample_weight, validation):
    """The name of the first out-of-core array among the data arguments, or None."""
    named = [("X", X), ("Y", Y), ("sample_weight", sample_weight)]
    if isinstance(validation, (tuple, list)):
        named += list(zip(("X_val", "Y_val", "sample_weight_val"), validation))
    return next((name for name, a in named if is_out_of_core(a)), None)


def fit(net, X, Y, method=None, *, l2=0.0, sample_weight=None, trainable=None,
        validation=None, patience=20, maxiter=None, options=None, scale=True, threads=None,
        callback=None, progress=False, seed=0, dtype=np.float64, bootstrap=None):
    """Train ``net`` on data ``(X, Y)`` by least squares; ``net.weights`` hold the result.

    Minimises ``E(w) = 1/2 sum_k s_k |y(x_k; w) - y_k|^2 + 1/2 l2 |w_nb|^2``
    (see :class:`~ctrlprop.WeightObjective`; biases are not penalised),
    starting from the network's current weights.

    Parameters
    ----------
    net : Network or Ensemble
        An :class:`~ctrlprop.Ensemble` trains every member at once, each on its own
        bootstrap resample of the training rows (see ``bootstrap`` and
        :class:`~ctrlprop.objectives.ensemble.EnsembleObjective`), with the methods
        ``ENSEMBLE_FIT_METHODS`` (the gradient methods and Adam, data in memory, float64,
        every weight trained); ``x`` and ``net.weights`` are then (E, n_weights) and the
        losses are means over the members.
    X : array_like, shape (K, n_inputs)
    Y : array_like, shape (K, n_outputs)
        Raw units (1-D is accepted for a single input or output).  With ``method="adam"``
        they may be out-of-core arrays -- an ``np.memmap``, a zarr, dask or h5py array, a
        :class:`~ctrlprop.TransitionStore`'s training pairs (see
        :mod:`ctrlprop.core.arrays`) -- which are never copied into memory: they are read
        in blocks of rows (``options["block_size"]``), once for the NaN check and the
        scaling statistics, then once per epoch for the minibatches and once per epoch
        for the loss in ``history["fun"]``.  Full-batch methods given an out-of-core
        array raise a ValueError (pass ``np.asarray(X)`` to load it).
    method : str, optional
        None (the default) is "L-BFGS-B".  Any of ``FIT_METHODS``: a gradient method of
        ``scipy.optimize.minimize`` (Newton-CG, trust-ncg, trust-krylov and trust-constr
        get the exact Hessian product); a ``scipy.optimize.least_squares`` method ("lm"
        forms the dense (K n_outputs, n) Jacobian and factors it every iteration, so it
        suits small problems; "trf" and "dogbox" switch to a matrix-free Jacobian
        (LinearOperator, ``tr_solver="lsmr"``) above 2.5e7 entries, or with
        ``options={"jacobian": "operator"}``); or "adam", minibatch stochastic gradient
        descent for data sets too large for full-batch methods.  Case-insensitive.
    l2 : float
        L2 penalty on the non-bias weights (scikit-learn's ``alpha``).
    sample_weight : array_like, shape (K,), optional
        In memory or (with Adam) out of core.
    trainable : None, bool array (n_weights,), or iterable of int
        Train only these weights (a mask) or the weights into these units; the
        others stay bit-identical.  ``net.units_weights(units)`` builds masks.
    validation : None, float, or tuple
        A fraction of (X, Y) held out at random (seeded by ``seed``), or
        explicit ``(X_val, Y_val[, sample_weight_val])`` (out of core too, with Adam:
        then evaluated block by block).  With validation data
        the fit ends with the weights of the iteration of lowest validation
        loss, whatever stopped it.  A fraction ``f`` holds out ``round(f K)`` samples
        drawn by ``rng.permutation(K)``; with Adam blocks (``block_size``, or out-of-core
        data) it holds out whole blocks instead: ``round(f n_blocks)`` of the blocks of
        ``block_size`` consecutive rows, the first of ``rng.permutation(n_blocks)``
        (the training blocks keep their order and are the blocks Adam visits).
    patience : int or None
        With validation data, stop when the validation loss has not improved
        for this many iterations (None: never stop early).
    maxiter : int, optional
        Iterations: 1000 for minimize methods (TNC: function evaluations), 100 residual
        evaluations (``max_nfev``) for least_squares methods, 200 epochs for Adam.
    options : dict, optional
        Other solver options (iteration limits go through ``maxiter``): minimize's
        ``options`` ("L-BFGS-B" defaults here to ``maxcor=50``, which converges faster on
        networks than scipy's 10); least_squares keyword arguments (``ftol``,
        ``x_scale``, ``tr_solver``, ..., plus ``jacobian``: "auto", "dense" or
        "operator"); for Adam ``learning_rate`` (1e-3), ``batch_size`` (128), ``beta1``
        (0.9), ``beta2`` (0.999), ``eps`` (1e-8), ``shuffle`` (True) and ``block_size``
        (rows per block L; None: each epoch shuffles all samples).  With ``block_size``
        an epoch visits the blocks of L consecutive rows in a shuffled order and the rows
        of each block shuffled, minibatches cut from the block in memory (see
        :mod:`ctrlprop.solvers.adam`): the same data in memory, in an np.memmap, a zarr
        or a dask array then give the same weights and history bit for bit.  Out-of-core
        data without ``block_size`` get ``L = batch_size * max(1, 65536 // batch_size)``
        (65536 rows at the default batch size; ``DEFAULT_BLOCK_ROWS``).  Memory: one
        block of inputs and targets, raw and in internal units, plus the forward buffers
        of ``EVAL_ROWS`` (8192) samples.
    scale : bool
        True (default): learn input and output standardisation from the training data
        (mean and standard deviation of every column) and store it on the network
        (saved with the model); the optimiser then works on well-conditioned numbers.
        False: keep whatever scaling the network has (use it to warm-start exactly).
        With frozen weights, a *change* of scaling raises.
    threads : int or None
        BLAS threads during the fit; None picks by problem size (one thread for small
        problems, see :mod:`ctrlprop.core.threads`).
    callback : callable, optional
        ``callback(intermediate_result)`` after every iteration (iteration 0 is the
        start) with a Result holding ``x`` (full weights), ``fun``, ``nit``,
        ``train_loss``, ``val_loss`` (NaN without validation) and ``time`` (seconds).
        Returning True or raising ``StopIteration`` ends the fit.
    progress : bool
        Show a live progress line (iteration, loss, validation loss, elapsed time);
        needs tqdm (``pip install 'ctrlprop[progress]'``).
    seed : int
        Seeds the validation split and Adam's shuffling.
    bootstrap : bool or None
        Ensembles only: member e's loss weights training row k by how often k is drawn
        into a resample of the training rows with replacement (``rng.multinomial``, seeded
        by ``seed`` after the validation split).  None (the default) is True for an
        ensemble; False trains every member on all rows (members then differ by their
        initial weights only).
    dtype : np.float64 or np.float32
        The precision of the forward and backward passes: the engine's buffers, its copy of
        the weights during the fit and the (standardised) data.  float32 halves the memory
        and runs the products in single precision (about twice as fast at large batches);
        the solver's own state, the returned weights, losses and gradients stay float64.
        Suited to Adam; a full-batch method's line search sees the loss only to float32
        rounding (about 1e-7 relative) and may stop there.

    Returns
    -------
    Result
        ``x`` (full weights, also stored in ``net.weights``), ``fun`` (E at x),
        ``success``, ``status`` (0 converged, 1 iteration limit, 2 callback, 3 early
        stopping -- a success --, 4 non-finite loss, 5 solver failure), ``message``,
        ``nit``, ``nfev``, ``njev``, ``nhev``, ``method``, ``history`` (dict of arrays
        ``iteration``, ``fun`` (E), ``train_loss``, ``val_loss`` (None without
        validation), ``time``: losses are mean squared errors per output in raw units,
        without the penalty; Adam's training loss is the mean over the epoch's
        minibatches as they were visited), ``best_iteration`` and ``val_loss`` with
        validation data, ``threads`` (the BLAS thread limit used; None: left as it was).

    Warns
    -----
    ConvergenceWarning
        When the fit ends without success (iteration limit, non-finite loss -- the
        weights are then those of the last finite iterate -- or solver failure).

    Notes
    -----
    Bad data (row counts that differ, NaN or inf, empty arrays) and unknown methods raise
    ValueError or TypeError before anything changes (out-of-core data: after the one
    pass that reads them).
    """
    ensemble = isinstance(net, Ensemble)
    if not (ensemble or isinstance(net, Network)):
        raise TypeError(f"net must be a ctrlprop Network or Ensemble, got {type(net).__name__}")
    if bootstrap is not None and not isinstance(bootstrap, (bool, np.bool_)):
        raise TypeError(f"bootstrap must be True, False or None, got {bootstrap!r:.60}")
    if bootstrap and not ensemble:
        raise ValueError("bootstrap=True resamples the data per member of an Ensemble; net is "
                         "a single Network")
    method = resolve(method, ENSEMBLE_FIT_METHODS if ensemble else FIT_METHODS, "L-BFGS-B",
                     "fit of an Ensemble" if ensemble else "fit")
    dtype = check_dtype(dtype)
    if ensemble:
        if dtype != np.float64:
            raise ValueError(f"an Ensemble trains in float64; got dtype={dtype}")
        if trainable is not None:
            raise ValueError("trainable= is not offered for an Ensemble (every weight of "
                             "every member is trained); got a value")
        if options is not None and isinstance(options, dict) and "block_size" in options:
            raise ValueError("options['block_size'] (streamed Adam) is not offered for an "
                             "Ensemble, whose data are trained in memory")
    options, maxiter = solver_options(options, maxiter, _DEFAULT_MAXITER[method.family])
    stochastic = method.family == "stochastic"
    ooc = _out_of_core_argument(X, Y, sample_weight, validation)
    if ooc is not None and (ensemble or not stochastic):
        if ensemble:
            raise ValueError(f"{ooc} is an out-of-core array; an Ensemble trains in memory: "
                             f"pass np.asarray({ooc}) to load it")
        raise ValueError(f"{ooc} is an out-of-core array; method {method.name!r} is full-batch "
                         f"and needs every row in memory: use method='adam', which reads "
                         f"blocks of rows, or pass np.asarray({ooc}) to load it")
    L = None
    if stochastic:
        L = check_int(options.get("block_size"), "options['block_size']", 1, allow_none=True)
        if L is None and ooc is not None:
            B = check_int(options.get("batch_size", ADAM_OPTIONS["batch_size"]),
                          "options['batch_size']", 1)
            L = options["block_size"] = B * max(1, DEFAULT_BLOCK_ROWS // B)
    mask = np.ones(net.n_weights, bool) if ensemble else as_mask(net, trainable)
    if patience is not None and (isinstance(patience, bool) or not isinstance(
            patience, (int, np.integer)) or patience < 1):
        raise ValueError(f"patience must be a positive integer or None, got {patience!r}")
    notify = Notifier(callback)
    if not isinstance(scale, (bool, np.bool_)):
        raise TypeError(f"scale must be True or False, got {scale!r}")
    rng = np.random.default_rng(check_seed(seed))
    scaling = None
    if L is None:
        X, Y = check_data(net, X, Y)
        sw = check_sample_weight(sample_weight, X.shape[0])
        (Xt, Yt, swt), val = _split(X, Y, sw, validation, rng)
        if val is not None:
            Xv, Yv = check_data(net, val[0], val[1], names=("X_val", "Y_val"))
            swv = check_sample_weight(val[2], Xv.shape[0])
        if scale:
            scaling = data_scaling(Xt, "X") + data_scaling(Yt, "Y")
    else:
        (Xt, Yt, swt), val, scaling = _streamed_data(net, X, Y, sample_weight, validation,
                                                     rng, L, scale)
        if val is not None:
            Xv, Yv, swv = val
    n_threads = resolve_threads(threads, int(mask.sum()) * (net.size if ensemble else 1),
                                min(int(options.get("batch_size", ADAM_OPTIONS["batch_size"])),
                                    Xt.shape[0]) if stochastic else Xt.shape[0])

    old_scaling = (net.input_scaling, net.output_scaling)
    try:                              # on any error, leave the network as it was
        if scale:
            _apply_scaling(net, *scaling, mask)
        if ensemble:
            counts = (bootstrap_counts(net.size, Xt.shape[0], rng)
                      if bootstrap is None or bootstrap else None)
            obj = EnsembleObjective(net, Xt, Yt, l2=l2, sample_weight=swt, counts=counts)
            val_obj = None if val is None else EnsembleObjective(net, Xv, Yv,
                                                                 sample_weight=swv)
        elif L is not None:
            obj = StreamedObjective(net, Xt, Yt, l2=l2, sample_weight=swt, trainable=mask,
                                    block_size=L, dtype=dtype)
            val_obj = None if val is None else StreamedObjective(
                net, Xv, Yv, sample_weight=swv, trainable=mask, block_size=L, dtype=dtype)
        else:
            obj = WeightObjective(net, Xt, Yt, l2=l2, sample_weight=swt, trainable=mask,
                                  dtype=dtype)
            val_obj = None if val is None else WeightObjective(net, Xv, Yv,
                                                               sample_weight=swv,
                                                               trainable=mask, dtype=dtype)
        with Progress(progress, "fit", maxiter, unit="epoch" if stochastic else "it") as bar, \
                blas_threads(n_threads), np.errstate(over="ignore", invalid="ignore",
                                                     divide="ignore"):
            mon = _Monitor(obj, val_obj, patience, notify, bar)
            first = mon.step(obj.x0)
            if first is None:
                res = _solve(method, obj, mon, options, maxiter, rng)
            else:
                res = Result(x=obj.x0, status=first, nit=0, nfev=1, njev=0, nhev=0,
                             message=STATUS[first])
            x, status = _final_weights(obj, mon, res)
            E = obj.value(x)
    except BaseException:
        net.input_scaling, net.output_scaling = old_scaling
        raise
    net.weights = w = obj.full(x)
    message = STATUS[status]
    if status == EARLY_STOP:
        message = (f"early stopping: the validation loss did not improve for {patience} "
                   f"iterations; the weights of iteration {mon.best_it} (validation loss "
                   f"{mon.best_val:.4g}) were restored")
    elif status == NONFINITE:
        message = (f"stopped: the training loss became non-finite (NaN or inf) after iteration "
                   f"{mon.it}; net.weights hold the last iterate with a finite loss (try a "
                   "smaller step or learning rate, scale=True, or an l2 penalty)")
    elif status != CALLBACK and res.get("solver_message"):
        message = f"{message} ({method.name}: {res.solver_message})"
    out = Result(x=w, fun=E, success=status in (CONVERGED, EARLY_STOP), status=status,
                 message=message, nit=max(mon.it, 0), nfev=int(res.get("nfev", 0)),
                 njev=int(res.get("njev", 0) or 0), nhev=int(res.get("nhev", 0) or 0),
                 method=method.name, history=mon.history(), threads=n_threads)
    if val_obj is not None:
        out.best_iteration, out.val_loss = mon.best_it, mon.best_val
    warn_unless_success(out, "fit")
    return out



def _final_weights(obj, mon, res):
    """The free weights the fit ends with, and its status.

    The solver's answer (recorded as a last iteration if it was not one; a non-finite
    answer falls back to the last finite iterate), and with validation data always the
    iterate of lowest validation loss.
    """
    x, status = mon.last_x, int(res.status)
    xs = np.asarray(res.x, dtype=float)
    if status not in (CALLBACK, EARLY_STOP, NONFINITE) and not np.array_equal(xs, mon.last_x):
        E = obj.value(xs)
        if np.isfinite(E):
            x = xs
            stop = mon.step(xs, E)
            if stop is not None and stop != EARLY_STOP:
                status = stop
        else:
            status = NONFINITE
    if mon.val_obj is not None and mon.best_x is not None:
        x = mon.best_x
    return x.copy(), status
