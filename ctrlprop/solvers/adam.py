"""Minibatch Adam (Kingma & Ba 2015) on a sum-over-samples objective.

One iteration is one epoch: a pass over the data in minibatches (shuffled each epoch when
``shuffle``), one Adam update per minibatch::

    m <- b1 m + (1 - b1) g ;   v <- b2 v + (1 - b2) g^2
    x <- x - lr sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps sqrt(1 - b2^t))

The batch order.  Without ``block_size`` an epoch visits a permutation of all samples
(``rng.shuffle`` of the previous epoch's order) cut into minibatches of ``batch_size``.
With ``block_size = L`` the samples are cut into contiguous blocks ``[jL, (j+1)L)`` (the
last may be shorter) and an epoch is, with ``shuffle``::

    for j in rng.permutation(n_blocks):           # the blocks in a shuffled order
        load_block(j, upcoming)                   # e.g. read the block from disk
        rows = j L + rng.permutation(L_j)         # its rows shuffled
        minibatches rows[a:a + batch_size], a = 0, batch_size, ...

(no shuffling: blocks and rows in order), so only one block is needed at a time and the
minibatches never cross a block (the last one of a block is shorter unless ``batch_size``
divides ``L``).  The order depends on the sample count, the options and the generator only:
the same data in memory or on disk gets the same minibatches.
"""

import numpy as np

from ..core.checks import check_int
from .result import MAXITER, NONFINITE, STATUS, Result

__all__ = ["adam", "ADAM_OPTIONS"]

ADAM_OPTIONS = dict(learning_rate=1e-3, batch_size=128, beta1=0.9, beta2=0.999, eps=1e-8,
                    shuffle=True, block_size=None)


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
    L = check_int(o["block_size"], "options['block_size']", 1, allow_none=True)
    return dict(learning_rate=lr, beta1=b1, beta2=b2, eps=eps, batch_size=B,
                shuffle=bool(o["shuffle"]), block_size=L)


def adam(minibatch, x0, n_samples, maxiter, options, rng, notify, *, load_block=None):
    """Minimize ``sum_k e_k(x)`` by minibatch Adam.

    Parameters
    ----------
    minibatch : callable
        ``minibatch(x, idx) -> (E_idx, grad)``: the loss over the samples ``idx`` (indices
        in 0..n_samples-1; with ``block_size``, all in the block last loaded) and its
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
    load_block : callable, optional
        With ``options["block_size"]``: ``load_block(j, upcoming)`` before the minibatches
        of block ``j`` (see the module docstring for the order), with ``upcoming`` the
        block after it in this epoch (None for the last), e.g. to read it ahead.

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
    L = o["block_size"]
    if L is None:
        sizes = None
        order = np.arange(K)
    else:
        sizes = np.minimum(L, K - L * np.arange(-(-K // L)))         # rows per block
        base = np.arange(min(L, K))
        perm, order = np.empty_like(base), np.empty_like(base)
    nfev, status, E_sum, epoch = 0, MAXITER, np.nan, 0
    b1c, b2c = 1 - b1, 1 - b2
    for epoch in range(1, maxiter + 1):
        E_sum = 0.0
        if sizes is None:
            if o["shuffle"]:
                rng.shuffle(order)
            batches = ((None, order[a:a + B]) for a in range(0, K, B))
        else:
            batches = _block_batches(sizes, L, B, o["shuffle"], rng, base, perm, order,
                                     load_block)
        for _, idx in batches:
            E, g = minibatch(x, idx)
            nfev += 1
            if not (np.isfinite(E) and np.all(np.isfinite(g))):
                status = NONFINITE
                break
            E_sum += E
            t += 1
            m *= b1
            np.multiply(g, b1c, out=tmp)
            m += tmp
            np.multiply(g, g, out=tmp)
            v *= b2
            tmp *= b2c
            v += tmp
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


def _block_batches(sizes, L, B, shuffle, rng, base, perm, order, load_block):
    """One epoch's minibatches over blocks (see the module docstring): pairs
    ``(block, sample indices)``, the indices a view of a preallocated array."""
    blocks = rng.permutation(sizes.size) if shuffle else np.arange(sizes.size)
    for i, j in enumerate(blocks):
        n = int(sizes[j])
        if load_block is not None:
            load_block(int(j), int(blocks[i + 1]) if i + 1 < blocks.size else None)
        p = perm[:n]
        np.copyto(p, base[:n])
        if shuffle:
            rng.shuffle(p)                     # = rng.permutation(n), without allocating
        o = order[:n]
        np.add(p, int(j) * L, out=o)
        for a in range(0, n, B):
            yield j, o[a:a + B]
