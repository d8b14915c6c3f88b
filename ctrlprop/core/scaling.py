"""Input/output standardisation learned from data.

A network stores its standardisation (``net.set_scaling``) and the engine
applies it, so users always pass and receive raw units, and every gradient and
Jacobian is in raw units.  Internally the network sees

    x_int = (x - mean_x) / scale_x          and reports   y = y_int * scale_y + mean_y,

so its weights work on numbers of order one whatever the units of the data:
the usual weight initialisation then fits, and the optimizer's steps are
equally sized in every direction.  This module learns those numbers from a
data set and converts arrays between raw and internal units.
"""

import numpy as np

from .arrays import STATS_ROWS, check_rows, column_moments, is_out_of_core
from .checks import as_float, check_data

__all__ = ["data_scaling", "learn_scaling", "standardize"]


def data_scaling(A, name="A"):
    """Mean and scale of every column of ``A``.

    The scale is the standard deviation (``ddof=0``); a constant column (its
    standard deviation at most ``1e-12 * max(1, |mean|)``) gets scale 1, so it
    is only centred.  Both come from one pass over blocks of rows
    (:func:`ctrlprop.core.arrays.column_moments`, which also checks that every entry is
    finite), so an out-of-core array is never read whole, and the same rows in memory or
    on disk give the same numbers bit for bit.

    Parameters
    ----------
    A : array_like, shape (K, n), or out-of-core array, shape (K, n) or (K,)
        Out of core: an np.memmap, a zarr, dask or h5py array (see
        :mod:`ctrlprop.core.arrays`); a 1-D one is one column.
    name : str
        Used in error messages.

    Returns
    -------
    mean, scale : ndarray, shape (n,)
    """
    if is_out_of_core(A):
        check_rows(A, name)
    else:
        A = as_float(A, name)
        if A.ndim != 2 or A.shape[0] == 0:
            raise ValueError(f"{name} must be a non-empty 2-D array (K, n), got shape "
                             f"{A.shape}")
    K, mean, m2 = column_moments(A, name, STATS_ROWS)
    scale = np.sqrt(m2 / K)
    const = scale <= 1e-12 * np.maximum(1.0, np.abs(mean))
    scale[const] = 1.0
    return mean, scale


def learn_scaling(net, X, Y, inputs=True, outputs=True):
    """Learn standardisation from a data set and store it on ``net``.

    Parameters
    ----------
    net : Network
    X : array_like, shape (K, n_inputs)
    Y : array_like, shape (K, n_outputs)
    inputs, outputs : bool
        Which side to standardise; a side set to False is stored as
        unscaled (None).

    Returns
    -------
    Network
        ``net`` itself (its ``input_scaling`` / ``output_scaling`` set).

    Notes
    -----
    The weights are not changed: a network trained for other scaling
    computes a different function afterwards.  Learn the scaling *before*
    training (``ctrlprop.fit`` does it with ``scale=True``).
    """
    X, Y = check_data(net, X, Y)
    xm, xs = data_scaling(X, "X") if inputs else (None, None)
    ym, ys = data_scaling(Y, "Y") if outputs else (None, None)
    net.set_scaling(xm, xs, ym, ys)
    return net


def standardize(net, X=None, Y=None):
    """Raw arrays in the network's internal units.

    Parameters
    ----------
    net : Network
    X : array_like, shape (K, n_inputs), optional
        Returned as ``(X - mean_x) / scale_x``.
    Y : array_like, shape (K, n_outputs), optional
        Returned as ``(Y - mean_y) / scale_y``.

    Returns
    -------
    ndarray, or a tuple ``(X_int, Y_int)`` when both are given.
    Sides without scaling are returned unchanged (as float arrays).
    """
    out = []
    for A, sc, name in ((X, net.input_scaling, "X"), (Y, net.output_scaling, "Y")):
        if A is None:
            continue
        A = as_float(A, name)
        n = net.n_inputs if name == "X" else net.n_outputs
        if A.ndim not in (1, 2) or A.shape[-1] != n:
            raise ValueError(f"{name} must have shape (K, {n}) or ({n},), got {A.shape}")
        out.append(A.copy() if sc is None else (A - sc[0]) / sc[1])
    if not out:
        raise ValueError("standardize needs X, Y or both")
    return out[0] if len(out) == 1 else tuple(out)
