"""Training an ensemble: every member's least-squares loss on its own resample, at once.

With E members and bootstrap counts ``c_ek`` (how often sample k was drawn into member e's
resample of the K samples; a multinomial draw of K with equal probabilities)::

    E(W) = sum_e [ 1/2 sum_k c_ek s_k |y_e(x_k) - y_k|^2 + 1/2 l2 |w_e,nb|^2 ]

Weighting sample k by ``c_ek`` is exactly training member e on its resample (a sample
drawn twice counts twice), and keeps the inputs shared: one ensemble pass (a stacked
product per weight block, see :mod:`ctrlprop.core.ensemble`) evaluates every member on
the K samples, and the gradient with respect to member e's weights involves only member
e's terms, so one quasi-Newton run over the E * n_weights variables trains every member.
"""

import numpy as np

from ..core.checks import as_float, check_data, check_finite, check_sample_weight
from ..core.ensemble import Ensemble
from ..core.network import BIAS

__all__ = ["EnsembleObjective", "bootstrap_counts"]


def bootstrap_counts(E, K, rng):
    """(E, K) float counts: row e is how often each of K samples is drawn into a bootstrap
    resample of size K (``rng.multinomial(K, [1/K] * K)`` per member)."""
    return rng.multinomial(K, np.full(K, 1.0 / K), size=E).astype(np.float64)


class EnsembleObjective:
    """The ensemble's training loss as a function of all members' weights, for scipy.

    ``obj(x) -> (E, grad)`` with ``x`` the members' weights flattened, (E * n_weights,)
    ordered (member, weight).

    Parameters
    ----------
    ens : Ensemble
    X : array_like, shape (K, n_inputs)
    Y : array_like, shape (K, n_outputs)
        Raw units, shared by the members.
    l2 : float
        Penalty on every member's non-bias weights.
    sample_weight : array_like, shape (K,), optional
    counts : array_like, shape (E, K), optional
        Per-member sample multiplicities (:func:`bootstrap_counts`); None: every member
        sees every sample once.
    """

    def __init__(self, ens, X, Y, l2=0.0, sample_weight=None, counts=None):
        if not isinstance(ens, Ensemble):
            raise TypeError(f"ens must be a ctrlprop Ensemble, got {type(ens).__name__}")
        self.net = ens
        self.X, self.Y = check_data(ens.net, X, Y)
        K, E = self.X.shape[0], ens.size
        self.K, self.n = K, E * ens.n_weights
        sw = check_sample_weight(sample_weight, K)
        C = np.ones((E, K)) if counts is None else check_finite(as_float(counts, "counts"),
                                                                 "counts")
        if C.shape != (E, K) or (C < 0).any():
            raise ValueError(f"counts must be a non-negative ({E}, {K}) array (members, "
                             f"samples), got shape {C.shape}")
        self.C = C if sw is None else C * sw
        if isinstance(l2, bool) or not isinstance(l2, (int, float, np.floating, np.integer)) \
                or not np.isfinite(l2) or l2 < 0:
            raise ValueError(f"l2 must be a non-negative number, got {l2!r}")
        nb = np.array([s != BIAS for s, _ in ens.net.weight_labels], float)
        self._reg = None if l2 == 0 else np.tile(float(l2) * nb, E)
        self.x0 = ens.weights.ravel().copy()
        self.nfev = 0
        self._bufs = {}       # work arrays per batch size, this objective's own: the
                              # ensemble's shared cache keeps none of the training data's size

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_bufs"] = {}                      # engine state: rebuilt on first use
        return state

    @property
    def total_weight(self):
        """Sum of the sample weights over members and samples (the MSE's normaliser, per
        output: ``MSE = 2 E_data / (total_weight * n_outputs)``)."""
        return float(self.C.sum())

    def full(self, x):
        """The members' weights (E, n_weights) of the flat variables x."""
        return np.asarray(x, float).reshape(self.net.size, self.net.n_weights).copy()

    def _check_x(self, x):
        x = as_float(x, "x")
        if x.shape != (self.n,):
            raise ValueError(f"x must have shape ({self.n},) (members x weights), got {x.shape}")
        return x

    def penalty(self, x):
        """``1/2 l2 sum_e |w_e,nb|^2``."""
        return 0.0 if self._reg is None else 0.5 * float(np.dot(self._reg * x, x))

    def _loss(self, x, rows, grad):
        W = self._check_x(x).reshape(self.net.size, -1)
        X, Y = (self.X, self.Y) if rows is None else (self.X[rows], self.Y[rows])
        C = self.C if rows is None else self.C[:, rows]
        b = self._bufs.get(X.shape[0])
        if b is None:
            if len(self._bufs) >= self.net.plan.MAX_CACHED_BATCH_SIZES:
                self._bufs.pop(next(iter(self._bufs)))
            b = self._bufs[X.shape[0]] = self.net.plan.new_buffers(X.shape[0])
        tr = self.net.trace(X, weights=W, buffers=b)
        R = tr.outputs() - Y                                   # (E, K, n_out)
        CR = C[:, :, None] * R
        f = 0.5 * float(np.sum(CR * R))
        self.nfev += 1
        if not grad:
            return f, None
        return f, tr.backward(CR, wrt="weights").ravel()

    def data_loss(self, x):
        """``1/2 sum_e sum_k c_ek s_k |y_e(x_k) - y_k|^2``."""
        return self._loss(x, None, False)[0]

    def value(self, x):
        """The loss with the penalty."""
        return self.data_loss(x) + self.penalty(x)

    def __call__(self, x):
        """``(E, dE/dx)``."""
        f, g = self._loss(x, None, True)
        if self._reg is not None:
            f += self.penalty(x)
            g += self._reg * x
        return f, g

    def minibatch(self, x, idx):
        """Data loss over the samples idx and the gradient of it plus ``len(idx)/K`` of the
        penalty (Adam's protocol, as :meth:`WeightObjective.minibatch`)."""
        idx = np.asarray(idx)
        if idx.ndim != 1 or idx.size == 0 or not np.issubdtype(idx.dtype, np.integer) \
                or idx.min() < 0 or idx.max() >= self.K:
            raise ValueError(f"idx must be a non-empty 1-D array of sample indices in "
                             f"0..{self.K - 1}, got {idx!r:.80}")
        f, g = self._loss(x, idx, True)
        if self._reg is not None:
            g += (len(idx) / self.K) * (self._reg * x)
        return f, g

    def __repr__(self):
        return (f"EnsembleObjective(members={self.net.size}, samples={self.K}, "
                f"variables={self.n})")
