"""Finite-difference checks of gradients, public so users can test their own models."""

import numpy as np

__all__ = ["check_gradients", "check_objective", "numerical_gradient", "GradientCheck"]


class GradientCheck(dict):
    """Result of a gradient check: ``weights_error``, ``inputs_error``, ``max_error``, ``ok``.

    An error is ``max_i |analytic_i - numeric_i| / max(max_i |numeric_i|, 1e-8)``:
    the worst entry, relative to the gradient's size.
    """

    __getattr__ = dict.__getitem__

    def __repr__(self):
        return ("GradientCheck(" + ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else
                                             f"{k}={v}" for k, v in self.items()) + ")")


def _relerr(a, n):
    return float(np.max(np.abs(a - n)) / max(np.max(np.abs(n)), 1e-8)) if a.size else 0.0


def numerical_gradient(f, x, eps=1e-6):
    """Central differences of the scalar function ``f`` at ``x`` (any shape)."""
    x = np.array(x, dtype=float)
    g = np.empty_like(x)
    flat, gf = x.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        fp = f(x)
        flat[i] = old - eps
        fm = f(x)
        flat[i] = old
        gf[i] = (fp - fm) / (2 * eps)
    return g


def check_objective(fun, x, eps=1e-6, tol=1e-5):
    """Compare ``fun(x) -> (f, g)`` against central differences; return a GradientCheck."""
    x = np.asarray(x, dtype=float)
    _, g = fun(x)
    num = numerical_gradient(lambda v: fun(v)[0], x, eps)
    err = _relerr(np.asarray(g), num)
    return GradientCheck(max_error=err, ok=err <= tol)


def check_gradients(net, X, dY=None, eps=1e-6, tol=1e-5, seed=0):
    """Check ``net.backward`` against central differences of ``E = sum(dY * net.forward(X))``.

    Parameters
    ----------
    net : Network
    X : array_like, shape (K, n_inputs) or (n_inputs,)
    dY : array_like, shape of the outputs, optional
        Cotangent; random normal (seeded) when omitted.
    eps : float
        Finite-difference step.
    tol : float
        Threshold for ``ok``.

    Returns
    -------
    GradientCheck
        With ``weights_error``, ``inputs_error``, ``max_error`` and ``ok``.
    """
    X = np.asarray(X, dtype=float)
    w0 = net.weights.copy()
    if dY is None:
        Y = net.forward(X)
        dY = np.random.default_rng(seed).standard_normal(Y.shape)
    dY = np.asarray(dY, float)
    gw, gx = net.backward(X, dY)
    nw = numerical_gradient(lambda w: float(np.sum(dY * net.forward(X, weights=w))), w0, eps)
    nx = numerical_gradient(lambda x: float(np.sum(dY * net.forward(x))), X, eps)
    ew, ex = _relerr(gw, nw), _relerr(gx, nx)
    return GradientCheck(weights_error=ew, inputs_error=ex, max_error=max(ew, ex),
                         ok=max(ew, ex) <= tol)
