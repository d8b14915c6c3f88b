"""The training objective in scipy.optimize's vocabulary.

:class:`WeightObjective` is the sum-of-squares error of a network over a data
set as a function of (some of) its weights::

    E(w) = 1/2 sum_k s_k |y(x_k; w) - t_k|^2  +  1/2 l2 |w_nb|^2

with optional sample weights ``s_k`` and an L2 penalty on the free non-bias
weights ``w_nb`` (biases are *not* regularised).  It offers what the scipy
solvers ask for: ``obj(x) -> (E, grad)`` for ``minimize(..., jac=True)``,
``obj.hessp`` (exact, R-operator) for Newton-CG / trust-ncg / trust-krylov, and
``obj.residuals`` / ``obj.jacobian`` (or the matrix-free
``obj.jacobian_operator``) for ``least_squares``.  ``x`` is the vector of
*free* weights: all of them, or those selected by a mask (the others stay
frozen at their values when the objective was built).
"""

import threading

import numpy as np
from ..core.arrays import STATS_ROWS, read_rows
from ..core.checks import check_data, check_dtype, check_int, check_nonneg, check_sample_weight
from ..core.engine import SecondOrder
from ..core.network import Network

__all__ = ["WeightObjective", "StreamedObjective"]


# ---------------------------------------------------------------- validation


def as_mask(net, trainable):
    """The boolean mask of trained weights, from None (all), a mask, or unit indices.

    Parameters
    ----------
    net : Network
    trainable : None, bool array_like of shape (n_weights,), or iterable of int
        None trains every weight; a boolean mask selects entries of
        ``net.weights``; a collection of computing-unit indices trains every
        weight *into* those units (incoming connections and bias).

    Returns
    -------
    ndarray of bool, shape (n_weights,)
    """
    if trainable is None:
        return np.ones(net.n_weights, bool)
    arr = np.asarray(trainable) if not isinstance(trainable, (set, frozenset)) else None
    if arr is not None and arr.dtype == bool:
        if arr.shape != (net.n_weights,):
            raise ValueError(f"a trainable mask must have shape ({net.n_weights},) "
                             f"(one entry per weight), got {arr.shape}")
        if not arr.any():
            raise ValueError("the trainable mask selects no weight")
        return arr.copy()
    if isinstance(trainable, (str, bytes, dict)) or not hasattr(trainable, "__iter__") \
            or (arr is not None and arr.ndim == 0):
        raise TypeError(f"trainable must be None, a boolean mask over the weights or a list of "
                        f"unit indices, got {type(trainable).__name__}: {trainable!r:.60}")
    units = list(trainable)
    if not units:
        raise ValueError("trainable lists no unit")
    for u in units:
        if isinstance(u, (bool, np.bool_)) or not isinstance(u, (int, np.integer)):
            raise TypeError(f"trainable must be a boolean mask over the weights or a list of "
                            f"unit indices, got element {u!r}")
        if not net.n_inputs <= u < net.n_units:
            raise ValueError(f"trainable unit {u} is not a computing unit; computing units are "
                             f"{net.n_inputs}..{net.n_units - 1}")
    return net.units_weights(units)


def _free_part(g, all_free, free):
    """The free entries of a full-length engine array g (n_weights,) as a new float64 array
    (the engine's arrays are float32 for a float32 objective)."""
    return g.astype(np.float64) if all_free else g[free].astype(np.float64, copy=False)


def _bias_mask(net):
    """True for the bias entries of ``net.weights``."""
    return np.array([s == "bias" for s, _ in net.weight_labels], bool)


# ---------------------------------------------------------------- the objective
class _Work:
    """Preallocated work arrays of one batch size: engine buffers, residual R and C R.

    ``C`` is the objective's curvature weight (n_out, 1 or K) or None; with ``gather``
    there is room for a gathered minibatch (inputs, targets and per-sample C).
    """

    def __init__(self, plan, weights, C, K, gather=False):
        n_in, n_out, dt = plan.n_inputs, plan.n_out, plan.dtype
        self.bufs = plan.new_buffers(K, weights)
        self.R = np.empty((n_out, K), dt)
        self.CR = self.R if C is None else np.empty((n_out, K), dt)
        if gather:
            self.XT, self.TT = np.empty((n_in, K), dt), np.empty((n_out, K), dt)
            self.C = np.empty((n_out, K), dt) if C is not None and C.shape[1] > 1 else None

    def data_loss(self, XT, TT, C):
        """Forward pass of XT; R = Y_int - TT, CR = C R; returns 1/2 sum C R^2."""
        obj_plan = self.bufs.plan
        obj_plan.run_forward(self.bufs, XT, None)
        np.subtract(self.bufs.Y, TT, out=self.R)
        if C is not None:
            np.multiply(self.R, C, out=self.CR)
        return 0.5 * float(np.vdot(self.R, self.CR))


class _Weights:
    """What both weight objectives share: the free weights over captured full weights, the
    penalty, and one minibatch's gathered loss and gradient (subclasses set ``_XT``, ``_TT``
    and ``_C``, the data in internal units, unit-major)."""

    def _init_weights(self, net, l2, mask, w, in_scale, out_scale, dtype):
        """The weight bookkeeping, the engine's weights (of ``dtype``) and the penalty."""
        self.net, self.l2, self.mask = net, l2, mask
        self.dtype = dtype
        self._free = np.flatnonzero(self.mask)
        self._all = bool(self.mask.all())
        self.n = self._free.size
        self._w = w
        self.in_scale, self.out_scale = in_scale, out_scale
        self._plan = net.plan_for(dtype)
        self._wts = self._plan.new_weights()
        self._batches = {}
        # penalty: l2 on the free non-bias entries
        reg = np.where(_bias_mask(net), 0.0, self.l2)
        self._reg = reg[self._free] if self.l2 > 0 else None

    def _sy2(self):
        """The squared output scales (n_out,), ones without output scaling."""
        return (np.ones(self.net.n_outputs) if self.out_scale is None
                else self.out_scale[1] ** 2)

    # ------------------------------------------------------------ free <-> full
    def full(self, x):
        """The full weight vector (shape (n_weights,)) for free weights ``x`` (shape (n,))."""
        x = self._check_x(x)
        w = self._w.copy()
        w[self._free] = x
        return w

    def free(self, w):
        """The free entries (shape (n,)) of a full weight vector ``w`` (shape (n_weights,))."""
        w = np.asarray(w, dtype=np.float64)
        if w.shape != (self.net.n_weights,):
            raise ValueError(f"w must have shape ({self.net.n_weights},), got {w.shape}")
        return w[self._free].copy()

    def _check_x(self, x):
        """x as a float64 vector of length n."""
        if not (type(x) is np.ndarray and x.dtype == np.float64):
            x = np.asarray(x, dtype=np.float64)
        if x.shape != (self.n,):
            raise ValueError(f"x must have shape ({self.n},) (the free weights), got {x.shape}")
        return x

    def _load(self, x):
        """Copy the free weights x into the private weight holder."""
        if self._all:
            self._wts.load(x)
        else:
            self._w[self._free] = x
            self._wts.load(self._w)

    def penalty(self, x):
        """The penalty term ``1/2 l2 |w_nb|^2`` over the free non-bias weights x (n,): a float."""
        return self._penalty(x)

    def _penalty(self, x):
        """1/2 l2 |w_nb|^2 over the free non-bias weights."""
        if self._reg is None:
            return 0.0
        return 0.5 * float(np.dot(self._reg * x, x))

    def _work(self, cache, B, gather):
        """The work arrays of batch size B from ``cache`` (at most four sizes kept)."""
        w = cache.get(B)
        if w is None:
            if len(cache) >= 4:
                cache.pop(next(iter(cache)))
            w = cache[B] = _Work(self._plan, self._wts, self._C, B, gather=gather)
        return w

    def _gathered(self, x, idx):
        """Data loss and gradient (with the penalty's share B/K) over the columns ``idx``
        of ``_XT``, ``_TT`` (and a per-sample ``_C``), at checked free weights x."""
        B = len(idx)
        w = self._work(self._batches, B, True)
        self._load(x)
        np.take(self._XT, idx, axis=1, out=w.XT)
        np.take(self._TT, idx, axis=1, out=w.TT)
        C = self._C
        if C is not None and C.shape[1] > 1:
            np.take(C, idx, axis=1, out=w.C)
            C = w.C
        E = w.data_loss(w.XT, w.TT, C)
        self._plan.run_backward(w.bufs, w.CR, None, want_w=True, want_x=False)
        g = _free_part(w.bufs.grad, self._all, self._free)
        if self._reg is not None:
            g += (B / self.K) * self._reg * x
        return E, g


class WeightObjective(_Weights):
    """Sum-of-squares training error of a network as a function of its (free) weights.

    ``E(w) = 1/2 sum_k s_k |y(x_k; w) - t_k|^2 + 1/2 l2 |w_nb|^2`` where ``s_k``
    are the sample weights (1 by default), outputs and targets are in raw
    units, and ``w_nb`` are the free non-bias weights: **biases are not
    regularised** (nor are frozen weights, which are constants here).
    ``l2`` plays the role of scikit-learn's ``alpha`` (which divides both
    terms by the number of samples).  The loss is in raw units, so outputs
    of very different magnitudes weigh in proportion to their units.

    The network's weights are copied when the objective is built; calling it
    never changes ``net.weights``.  Its input/output scaling is also captured
    then: the penalty acts on the weights as stored, i.e. in the network's
    internal (standardised) units.

    Parameters
    ----------
    net : Network
    X : array_like, shape (K, n_inputs)
    Y : array_like, shape (K, n_outputs)
        Targets.
    l2 : float
        L2 penalty on the non-bias weights.
    sample_weight : array_like, shape (K,), optional
        Non-negative weight of every sample.
    trainable : None, bool array_like (n_weights,), or iterable of int
        Which weights are free (see :func:`as_mask`); the others are frozen at
        their current values.  ``x`` below has one entry per free weight, in
        the order of ``net.weights``.

    Attributes
    ----------
    x0 : ndarray, shape (n,)
        The free weights at construction (a starting point for scipy).
    mask : ndarray of bool, shape (n_weights,)
    n : int
        Number of free weights.

    Examples
    --------
    >>> obj = WeightObjective(net, X, Y)
    >>> res = scipy.optimize.minimize(obj, obj.x0, jac=True, method="L-BFGS-B")
    >>> net.weights = obj.full(res.x)                   # doctest: +SKIP
    """

    def __init__(self, net, X, Y, l2=0.0, sample_weight=None, trainable=None, *,
                 dtype=np.float64):
        if not isinstance(net, Network):
            raise TypeError(f"net must be a ctrlprop Network, got {type(net).__name__}")
        X, Y = check_data(net, X, Y)
        l2 = check_nonneg(l2, "l2")
        sw = check_sample_weight(sample_weight, X.shape[0])
        mask = as_mask(net, trainable)
        self._setup(net, X, Y, l2, sw, mask, net.weights.copy(), net.input_scaling,
                    net.output_scaling, check_dtype(dtype))
        self.x0 = self._w[self._free].copy()

    # ------------------------------------------------------------ pickling
    # Only the problem data are pickled -- the network, the data, the settings and what was
    # captured from the network at construction (its weights and scaling); the compiled
    # buffers and op lists (views of the work arrays) are rebuilt on unpickling.
    def __getstate__(self):
        return dict(net=self.net, X=self.X, Y=self.Y, l2=self.l2, sw=self.sample_weight,
                    mask=self.mask, w=self._w, in_scale=self.in_scale,
                    out_scale=self.out_scale, dtype=self.dtype, x0=self.x0)

    def __setstate__(self, state):
        state = dict(state)
        x0 = state.pop("x0")
        self._setup(**state)
        self.x0 = x0

    def _setup(self, net, X, Y, l2, sw, mask, w, in_scale, out_scale, dtype=np.float64):
        """Everything but x0, from checked problem data and the captured weights w and
        scaling: the internal-unit arrays (of ``dtype``), the work buffers, the penalty."""
        K = X.shape[0]
        dtype = np.dtype(dtype)
        self._init_weights(net, l2, mask, w, in_scale, out_scale, dtype)
        self.K = K
        self.sample_weight = sw
        self.X, self.Y = X, Y

        # everything the hot loop reads, in internal units and unit-major:
        #   XT = ((X - m_x) / s_x)^T,  TT = ((Y - m_y) / s_y)^T,  C = s_k s_y^2
        # so that with R = Y_int - T_int:  E_data = 1/2 sum C R^2  and
        # dE/dY_int = C R (the cotangent the engine takes in internal units).
        self._XT = np.ascontiguousarray(X.T if self.in_scale is None else
                                        ((X - self.in_scale[0]) / self.in_scale[1]).T, dtype)
        self._TT = np.ascontiguousarray(Y.T if self.out_scale is None else
                                        ((Y - self.out_scale[0]) / self.out_scale[1]).T, dtype)
        sy2 = self._sy2()
        if sw is None:
            self._C = None if self.out_scale is None else np.ascontiguousarray(sy2[:, None],
                                                                               dtype)
        else:
            self._C = np.ascontiguousarray(sy2[:, None] * sw[None, :], dtype)
        self._main = _Work(self._plan, self._wts, self._C, K)
        self._bufs = self._main.bufs
        self._R, self._CR = self._main.R, self._main.CR
        self._trace_key = None
        self._curvature = None

    # ------------------------------------------------------------ value and gradient
    def _forward_residual(self, x):
        """Forward pass; leaves R = Y_int - T_int and CR = C R; returns E."""
        self._load(x)
        return self._main.data_loss(self._XT, self._TT, self._C) + self._penalty(x)

    def __call__(self, x):
        """Objective value and gradient.

        Parameters
        ----------
        x : array_like, shape (n,)
            Free weights.

        Returns
        -------
        E : float
        grad : ndarray, shape (n,)
            A new array (safe for the solver to keep).
        """
        x = self._check_x(x)
        E = self._forward_residual(x)
        self._plan.run_backward(self._bufs, self._CR, None, want_w=True, want_x=False)
        g = _free_part(self._bufs.grad, self._all, self._free)
        if self._reg is not None:
            g += self._reg * x
        return E, g

    def value(self, x):
        """Objective value only (one forward pass), a float."""
        return self._forward_residual(self._check_x(x))

    def data_loss(self, x):
        """The data term ``1/2 sum_k s_k |y_k - t_k|^2`` alone (no penalty), a float."""
        x = self._check_x(x)
        return self._forward_residual(x) - self._penalty(x)

    @property
    def total_weight(self):
        """``sum_k s_k`` (K without sample weights), a float."""
        return float(self.K if self.sample_weight is None else self.sample_weight.sum())

    def gradient(self, x):
        """The gradient alone, shape (n,)."""
        return self(x)[1]

    def minibatch(self, x, idx):
        """Data loss and gradient over the samples ``idx`` (for stochastic methods).

        The penalty's share ``len(idx) / K`` is added to the gradient, so that
        the minibatch gradients of one pass over the data sum to the full
        gradient.  Work buffers are kept per batch size.

        Parameters
        ----------
        x : array_like, shape (n,)
        idx : array of int, shape (B,)
            Sample indices.

        Returns
        -------
        E_data : float
            ``1/2 sum_{k in idx} s_k |y_k - t_k|^2`` (no penalty).
        grad : ndarray, shape (n,)
            Gradient of ``E_data + (B / K) * penalty``.
        """
        x = self._check_x(x)
        idx = np.asarray(idx)
        if idx.ndim != 1 or idx.size == 0 or not np.issubdtype(idx.dtype, np.integer) \
                or idx.min() < 0 or idx.max() >= self.K:
            raise ValueError(f"idx must be a non-empty 1-D array of sample indices in "
                             f"0..{self.K - 1}, got {idx!r:.80}")
        return self._gathered(x, idx)

    # ------------------------------------------------------------ second order
    def _trace(self, w):
        """A private trace at full weights w, reused while w does not change."""
        key = w.tobytes()
        if self._trace_key != key:
            tr = self._plan.forward(w, self.X, self.in_scale, self.out_scale, keep=True)
            dY = tr.outputs() - self.Y                       # raw residual y - t
            if self.sample_weight is not None:
                dY *= self.sample_weight[:, None]            # dE/dY = s_k (y_k - t_k)
            self._trace_cache = (tr, dY)
            self._trace_key = key
        return self._trace_cache

    def _curv(self, x):
        """The engine's second-order products (private buffers) at free weights x.

        At a new point: the forward pass, ``dE/dY_int = C (Y_int - T_int)`` and the delta
        recursion from it, kept while x does not change (Newton-CG's inner loop).
        """
        so = self._curvature
        if so is None:
            plan = self._plan
            so = self._curvature = SecondOrder(plan.new_buffers(self.K, plan.new_weights()))
            self._curv_x = np.full(self.n, np.nan)
            self._curv_cot = np.empty((self.net.n_outputs, self.K))
        if not np.array_equal(x, self._curv_x):
            so.at(self.full(x), self._XT)
            cot = self._curv_cot
            np.subtract(so.bufs.Y, self._TT, out=cot)
            if self._C is not None:
                cot *= self._C
            so.seed(cot)
            np.copyto(self._curv_x, x)
        return so

    def _curvature_rdy(self, RY):
        """R{dE/dY_int} = C RY_int (in place on the engine's work array)."""
        if self._C is not None:
            RY *= self._C
        return RY

    def _direction(self, p, name="p"):
        """A free-weight direction as a full-length vector (zeros at frozen entries)."""
        p = np.asarray(p, dtype=np.float64)
        if p.shape != (self.n,):
            raise ValueError(f"{name} must have shape ({self.n},), got {p.shape}")
        if self._all:
            return p
        v = np.zeros(self.net.n_weights)
        v[self._free] = p
        return v

    def hessp(self, x, p):
        """Exact Hessian-vector product ``d^2E/dx^2 p`` (Pearlmutter's R-operator).

        Forward-over-reverse: one tangent pass and one second-order backward
        pass, about the cost of two gradients; it includes the residual
        curvature (it is not a Gauss-Newton approximation).  The forward pass
        and the deltas at ``x`` are kept, so repeated products at the same
        ``x`` (Newton-CG's inner loop) do not redo them.

        Parameters
        ----------
        x : array_like, shape (n,)
        p : array_like, shape (n,)

        Returns
        -------
        ndarray, shape (n,)
        """
        x = self._check_x(x)
        v = self._direction(p)
        Hv, _ = self._curv(x).hvp(self._curvature_rdy, v_w=v, want_x=False)
        Hv = _free_part(Hv, self._all, self._free)
        if self._reg is not None:
            Hv += self._reg * v[self._free]
        return Hv

    # ------------------------------------------------------------ least squares
    def residuals(self, x):
        """Residual vector r with ``E = 1/2 |r|^2``, for ``scipy.optimize.least_squares``.

        Rows ``(sample, output)`` hold ``sqrt(s_k) (y_kj - t_kj)`` in raw units;
        with ``l2 > 0`` they are followed by ``sqrt(l2) w`` for every free
        non-bias weight.

        Returns
        -------
        ndarray, shape (K * n_outputs [+ n_regularised],)
        """
        x = self._check_x(x)
        self._forward_residual(x)
        # raw residual = s_y R_int, unit-major -> (sample, output) rows
        r = self._R.T.astype(np.float64) * (1.0 if self.out_scale is None
                                            else self.out_scale[1])
        if self.sample_weight is not None:
            r = r * np.sqrt(self.sample_weight)[:, None]
        r = r.ravel()
        if self._reg is not None:
            nb = self._reg > 0
            r = np.concatenate([r, np.sqrt(self._reg[nb]) * x[nb]])
        return r

    def jacobian(self, x):
        """Jacobian of :meth:`residuals`, shape ``(len(residuals), n)``.

        Rows ``(sample, output)`` are ``sqrt(s_k) dy_kj/dx`` in raw units (then
        ``sqrt(l2)`` times identity rows for the regularised weights).
        """
        x = self._check_x(x)
        tr, _ = self._trace(self.full(x))
        J = tr.jacobian_weights()
        if not self._all:
            J = J[:, self._free]
        if self.sample_weight is not None:
            J *= np.repeat(np.sqrt(self.sample_weight), self.net.n_outputs)[:, None]
        if self._reg is not None:
            nb = np.flatnonzero(self._reg > 0)
            Jr = np.zeros((nb.size, self.n))
            Jr[np.arange(nb.size), nb] = np.sqrt(self._reg[nb])
            J = np.vstack([J, Jr])
        return J

    def jacobian_operator(self, x):
        """The Jacobian of :meth:`residuals` at ``x`` as a matrix-free LinearOperator.

        ``J @ v`` costs one tangent (forward-mode) pass and ``J.T @ u`` one
        backward pass, and nothing of size ``K n_outputs x n`` is stored, so
        ``least_squares(..., method="trf" or "dogbox")`` can use it (with
        ``tr_solver="lsmr"``) on data sets whose dense Jacobian would not fit.

        Returns
        -------
        scipy.sparse.linalg.LinearOperator, shape ``(len(residuals), n)``
        """
        from scipy.sparse.linalg import LinearOperator
        x = self._check_x(x).copy()
        K, n_out = self.K, self.net.n_outputs
        # r = sqrt(s_k) s_y (Y_int - T_int): J v = sqrt(s) s_y jvp_int(v),
        # J^T u = vjp_int(sqrt(s) s_y u)
        f = np.ones((n_out, 1)) if self.out_scale is None else self.out_scale[1][:, None].copy()
        if self.sample_weight is not None:
            f = f * np.sqrt(self.sample_weight)[None, :]
        nb = None if self._reg is None else np.flatnonzero(self._reg > 0)
        sq = None if nb is None else np.sqrt(self._reg[nb])
        m = K * n_out + (0 if nb is None else nb.size)

        def matvec(p):
            p = np.ravel(p)
            RY = self._curv(x).tangent(self._direction(p))
            r = (RY * f).T.ravel()
            return r if nb is None else np.concatenate([r, sq * p[nb]])

        def rmatvec(u):
            u = np.ravel(u)
            cT = u[:K * n_out].reshape(K, n_out).T * f
            bufs = self._curv(x).bufs
            self._plan.run_backward(bufs, np.ascontiguousarray(cT), None, want_w=True,
                                    want_x=False)
            g = _free_part(bufs.grad, self._all, self._free)
            if nb is not None:
                g[nb] += sq * u[K * n_out:]
            return g

        return LinearOperator((m, self.n), matvec=matvec, rmatvec=rmatvec, dtype=np.float64)

    def __repr__(self):
        return (f"WeightObjective(K={self.K}, n={self.n} free of {self.net.n_weights} weights, "
                f"l2={self.l2})")


EVAL_ROWS = 8192            # columns per forward pass when a streamed objective is evaluated


class StreamedObjective(_Weights):
    """The objective of :class:`WeightObjective` over data read in blocks of rows.

    ``E(w) = 1/2 sum_k s_k |y(x_k; w) - t_k|^2 + 1/2 l2 |w_nb|^2``, the same function, for
    data too large for memory: only one block of ``block_size`` rows is in memory at a time
    (in internal units, as :class:`WeightObjective` holds all of them).  It serves the
    stochastic methods: :meth:`load_block` reads block ``j`` (rows ``[j L, (j+1) L)``),
    :meth:`minibatch` takes samples of the loaded block, and :meth:`value` and
    :meth:`data_loss` pass over every block.  Nothing is read at construction (the data are
    not checked for NaN here: :func:`ctrlprop.fit` checks them in its statistics pass).

    Parameters
    ----------
    net : Network
    X : array, shape (K, n_inputs)
    Y : array, shape (K, n_outputs)
        Out-of-core arrays (see :mod:`ctrlprop.core.arrays`: np.memmap, zarr, dask, h5py,
        a :class:`ctrlprop.TransitionStore`'s columns) or in-memory arrays.
    l2 : float
    sample_weight : array, shape (K,), optional
        In memory or out of core; checked in one pass at construction.
    trainable : None, bool array_like (n_weights,), or iterable of int
        As for :class:`WeightObjective`.
    block_size : int
        Rows per block L.

    Attributes
    ----------
    x0, mask, n, K
        As for :class:`WeightObjective`.
    block_size : int
    n_blocks : int
    """

    def __init__(self, net, X, Y, *, l2=0.0, sample_weight=None, trainable=None,
                 block_size=65536, dtype=np.float64):
        if not isinstance(net, Network):
            raise TypeError(f"net must be a ctrlprop Network, got {type(net).__name__}")
        X, Y = check_data(net, X, Y, stream=True)
        l2 = check_nonneg(l2, "l2")
        sw = check_sample_weight(sample_weight, X.shape[0], stream=True)
        mask = as_mask(net, trainable)
        L = check_int(block_size, "block_size", 1)
        self._setup(net, X, Y, l2, sw, mask, net.weights.copy(), net.input_scaling,
                    net.output_scaling, L, check_dtype(dtype))
        self.x0 = self._w[self._free].copy()

    def __getstate__(self):
        return dict(net=self.net, X=self.X, Y=self.Y, l2=self.l2, sw=self.sample_weight,
                    mask=self.mask, w=self._w, in_scale=self.in_scale,
                    out_scale=self.out_scale, block_size=self.block_size, dtype=self.dtype,
                    x0=self.x0)

    def __setstate__(self, state):
        state = dict(state)
        x0 = state.pop("x0")
        self._setup(**state)
        self.x0 = x0

    def _setup(self, net, X, Y, l2, sw, mask, w, in_scale, out_scale, block_size,
               dtype=np.float64):
        """Everything but x0: the block buffers (raw and internal units), the penalty."""
        dtype = np.dtype(dtype)
        self._init_weights(net, l2, mask, w, in_scale, out_scale, dtype)
        K = int(X.shape[0])
        L = min(block_size, K)
        self.K, self.block_size, self.n_blocks = K, L, -(-K // L)
        self.X, self.Y, self.sample_weight = X, Y, sw
        n_in, n_out = net.n_inputs, net.n_outputs
        self._raw = [np.empty((L, n_in)), np.empty((L, n_out)), np.empty((L, 1))]
        self._XT, self._TT = np.empty((n_in, L), dtype), np.empty((n_out, L), dtype)
        self._sy2c = self._sy2()[:, None]
        if sw is not None:
            self._C = np.empty((n_out, L), dtype)
        else:
            self._C = None if out_scale is None else np.ascontiguousarray(self._sy2c, dtype)
        self._local = np.empty(L, dtype=np.intp)
        self._evals = {}
        self._block = (-1, 0, 0)                   # (j, first row, rows) of the loaded block
        self._pending = None                       # (block, thread, result) read ahead
        self._total = None

    @property
    def total_weight(self):
        """``sum_k s_k`` (K without sample weights), a float (one pass over the weights)."""
        if self._total is None:
            sw = self.sample_weight
            self._total = float(self.K) if sw is None else float(sum(
                read_rows(sw, a, min(a + STATS_ROWS, self.K)).sum()
                for a in range(0, self.K, STATS_ROWS)))
        return self._total

    def _in_memory(self, A):
        """True when rows of A are read as views (a float64 2-D ndarray): nothing to read."""
        return type(A) is np.ndarray and A.dtype == np.float64 and A.ndim == 2

    def _read_raw(self, j):
        """Rows of block j of every out-of-core array into the raw buffers: a dict."""
        a = j * self.block_size
        b = min(a + self.block_size, self.K)
        return {which: read_rows(A, a, b, self._raw[which])
                for which, A in enumerate((self.X, self.Y, self.sample_weight))
                if A is not None and not self._in_memory(A)}

    def _start_read(self, j):
        """Read block j's raw rows in a background thread (joined by :meth:`load_block`)."""
        box = {}

        def work():
            try:
                box["raw"] = self._read_raw(j)
            except BaseException as e:             # noqa: BLE001 -- re-raised when joined
                box["error"] = e
        t = threading.Thread(target=work, daemon=True)
        t.start()
        self._pending = (j, t, box)

    def _join_read(self):
        """Wait for the background read; (block, raw rows or None, error or None)."""
        j, t, box = self._pending
        self._pending = None
        t.join()
        return j, box.get("raw"), box.get("error")

    def load_block(self, j, upcoming=None):
        """Read block ``j`` (rows ``[j L, min((j+1) L, K))``) into memory; its samples are
        then the ones :meth:`minibatch` takes.

        ``upcoming``: the block that will be loaded next, if known; its rows are then read
        in a background thread while block ``j`` is computed on (for arrays that are not
        float64 ndarrays already in memory).  The values are the same either way.
        """
        j = check_int(j, "j", 0)
        if j >= self.n_blocks:
            raise ValueError(f"block {j} out of range 0..{self.n_blocks - 1}")
        if upcoming is not None:
            upcoming = check_int(upcoming, "upcoming", 0)
            if upcoming >= self.n_blocks:
                raise ValueError(f"upcoming block {upcoming} out of range "
                                 f"0..{self.n_blocks - 1}")
        if self._block[0] != j:
            raw = None
            if self._pending is not None:
                got, raw, error = self._join_read()
                if got != j:
                    raw = None
                elif error is not None:
                    raise error
            if raw is None:
                raw = self._read_raw(j)
            self._block = (-1, 0, 0)
            a = j * self.block_size
            b = min(a + self.block_size, self.K)
            n = b - a
            for which, A, scaling, out in ((0, self.X, self.in_scale, self._XT[:, :n]),
                                           (1, self.Y, self.out_scale, self._TT[:, :n])):
                src = raw[which] if which in raw else A[a:b]
                if scaling is None:
                    np.copyto(out, src.T)
                else:                      # (A - m) / s, as WeightObjective computes it
                    np.subtract(src.T, scaling[0][:, None], out=out)
                    out /= scaling[1][:, None]
            if self.sample_weight is not None:
                wb = raw[2] if 2 in raw else self.sample_weight[a:b, None]
                np.multiply(self._sy2c, wb.T, out=self._C[:, :n])
            self._block = (j, a, n)
        if upcoming is not None and upcoming != j and self._pending is None and any(
                A is not None and not self._in_memory(A)
                for A in (self.X, self.Y, self.sample_weight)):
            self._start_read(upcoming)

    def minibatch(self, x, idx):
        """Data loss and gradient over the samples ``idx`` of the loaded block.

        As :meth:`WeightObjective.minibatch` (the penalty's share ``len(idx) / K`` is in the
        gradient), with ``idx`` sample indices in the block last loaded by
        :meth:`load_block`.

        Parameters
        ----------
        x : array_like, shape (n,)
        idx : array of int, shape (B,)

        Returns
        -------
        E_data : float
        grad : ndarray, shape (n,)
        """
        x = self._check_x(x)
        idx = np.asarray(idx)
        j, a, n = self._block
        B = idx.size
        if j < 0 or idx.ndim != 1 or B == 0 or B > n or \
                not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(f"idx must be a non-empty 1-D array of sample indices of the "
                             f"loaded block (call load_block first), got {idx!r:.80}")
        local = self._local[:B]
        np.subtract(idx, a, out=local)
        if local.min() < 0 or local.max() >= n:
            raise ValueError(f"idx must be sample indices of the loaded block {j} (rows "
                             f"{a}..{a + n - 1}), got {idx!r:.80}")
        return self._gathered(x, local)

    def data_loss(self, x):
        """The data term ``1/2 sum_k s_k |y_k - t_k|^2`` (no penalty), a float: one pass
        over every block, forward passes of at most ``EVAL_ROWS`` samples."""
        x = self._check_x(x)
        self._load(x)
        E = 0.0
        for j in range(self.n_blocks):
            self.load_block(j, j + 1 if j + 1 < self.n_blocks else None)
            n = self._block[2]
            for c in range(0, n, EVAL_ROWS):
                e = min(c + EVAL_ROWS, n)
                w = self._work(self._evals, e - c, False)
                C = self._C
                if C is not None and C.shape[1] > 1:
                    C = C[:, c:e]
                E += w.data_loss(self._XT[:, c:e], self._TT[:, c:e], C)
        return E

    def value(self, x):
        """Objective value (data loss plus penalty), a float: one pass over the blocks."""
        x = self._check_x(x)
        return self.data_loss(x) + self._penalty(x)

    def __repr__(self):
        return (f"StreamedObjective(K={self.K} in {self.n_blocks} blocks of "
                f"{self.block_size}, n={self.n} free of {self.net.n_weights} weights, "
                f"l2={self.l2})")
