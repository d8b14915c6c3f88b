"""Minibatch Adam (Kingma & Ba 2015) on a sum-over-samples objective.

One iteration is one epoch: a pass over the data in minibatches (shuffled each epoch when
``shuffle``), one Adam update per minibatch::

    m <- b1 m + (1 - b1) g ;   v <- b2 v + (1 - b2) g^2
    x <- x - lr sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps sqrt(1 - b2^t))
"""

import numpy as np

from .result import MAXITER, NONFINITE, STATUS, Result

__all__ = ["adam", "ADAM_OPTIONS"]

ADAM_OPTIONS = dict(learning_rate=1e-3, batch_size=128, beta1=0.9, beta2=0.999, eps=1e-8,
                    shuffle=True)


def adam_options(options):
    """The Adam settings from ``options`` (unknown keys and out-of-range values raise)."""
    o = dict(ADAM_OPTIONS)
    unknown = set(options) - set(o)
    if unknown:
        raise ValueError(f"unknown adam option(s) {sorted(unknown)}; adam takes {sorted(o)} "
                         "(and maxiter=, in epochs)")
    o.update(options)
    try:
        lr, b1, b2, eps = (float(o[k]) for k in ("learning_rate", "beta1", "beta2", "eps"))
        B = int(o["batch_size"])
    except (TypeError, ValueError):
        raise TypeError(f"adam options must be numbers, got {options}") from None
    if not (lr > 0 and 0 <= b1 < 1 and 0 <= b2 < 1 and eps > 0 and B >= 1):
        raise ValueError(f"adam options out of range (learning_rate > 0, 0 <= beta < 1, "
                         f"eps > 0, batch_size >= 1): {o}")
    return dict(learning_rate=lr, beta1=b1, beta2=b2, eps=eps, batch_size=B,
                shuffle=bool(o["shuffle"]))


def adam(minibatch, x0, n_samples, maxiter, options, rng, notify):
    """Minimize ``sum_k e_k(x)`` by minibatch Adam.

    Parameters
    ----------
    minibatch : callable
        ``minibatch(x, idx) -> (E_idx, grad)``: the loss over the samples ``idx`` and its
        gradient.
    x0 : ndarray, shape (n,)
    n_samples : int
    maxiter : int
        Epochs.
    options : dict
        See :data:`ADAM_OPTIONS`.
    rng : numpy Generator
        Shuffles the samples.
    notify : callable
        ``notify(x=..., fun=..., nit=...)`` after every epoch, with ``fun`` the sum of the
        minibatch losses as they were visited; True stops (CALLBACK), an int stops with
        that status.

    Returns
    -------
    Result
        ``x``, ``fun`` (the last epoch's summed minibatch loss), ``status`` (MAXITER after
        ``maxiter`` epochs, NONFINITE when a loss, gradient or the weights became
        non-finite: ``x`` is then the last finite epoch's), ``nit``, ``nfev``.
    """
    o = adam_options(options)
    lr, b1, b2, eps = o["learning_rate"], o["beta1"], o["beta2"], o["eps"]
    K = n_samples
    B = min(o["batch_size"], K)
    x = np.array(x0, dtype=np.float64)
    last = x.copy()
    m, v, t = np.zeros_like(x), np.zeros_like(x), 0
    step, tmp = np.empty_like(x), np.empty_like(x)
    order = np.arange(K)
    nfev, status, E_sum, epoch = 0, MAXITER, np.nan, 0
    for epoch in range(1, maxiter + 1):
        if o["shuffle"]:
            rng.shuffle(order)
        E_sum = 0.0
        for a in range(0, K, B):
            E, g = minibatch(x, order[a:a + B])
            nfev += 1
            if not (np.isfinite(E) and np.all(np.isfinite(g))):
                status = NONFINITE
                break
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
        if status == NONFINITE or not np.all(np.isfinite(x)):
            status, x = NONFINITE, last
            break
        np.copyto(last, x)
        stop = notify(x=x, fun=E_sum, nit=epoch)
        if stop:
            status = 2 if stop is True else int(stop)
            break
    return Result(x=x, fun=E_sum, success=False, status=status, nit=epoch, nfev=nfev,
                  message=STATUS[status] + (f" ({maxiter} epochs)" if status == MAXITER else ""))
