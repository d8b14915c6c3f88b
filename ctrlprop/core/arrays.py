"""Arrays larger than memory, read in blocks of rows: the core's view of out-of-core data.

An *out-of-core array* is an ``np.memmap``, or any array object (not an ndarray) with
``shape``, ``dtype``, ``chunks`` and ``__getitem__`` on row slices -- zarr arrays, dask
arrays, h5py datasets, and the lazy columns of a :class:`ctrlprop.TransitionStore`.  It is
recognised by what it has (duck typing): nothing here imports zarr, dask or h5py.  Every
other array_like (ndarrays, lists, tensors, data frames) is an in-memory array, converted
with ``np.asarray`` as always.

Rows are read as contiguous blocks and converted to float64 ndarrays (a dask slice is
``compute()``-d).  :func:`column_moments` makes one pass over blocks of a fixed number of
rows (:data:`STATS_ROWS`), checking that every entry is finite and merging the blocks' means
and centred sums of squares by Chan, Golub and LeVeque's pairwise update (accurate for
columns with a large offset, where a sum of squares of raw values would cancel), so the statistics
of an array depend only on its rows in order, not on where they are stored: an in-memory
array and the same rows on disk give the same numbers bit for bit.
"""

import numpy as np

__all__ = ["is_out_of_core", "check_rows", "read_rows", "RowArray", "RowView",
           "column_moments", "STATS_ROWS"]

STATS_ROWS = 65536          # rows per block of a statistics pass


def is_out_of_core(a):
    """True for an np.memmap, or an array object (not an ndarray) with ``shape``, ``dtype``,
    ``chunks`` and ``__getitem__`` (zarr, dask, h5py arrays, :class:`RowView`)."""
    if isinstance(a, np.memmap):
        return True
    if isinstance(a, np.ndarray):
        return False
    return all(hasattr(a, k) for k in ("shape", "dtype", "chunks", "__getitem__"))


def check_rows(a, name, width=None, rows=None):
    """Check an out-of-core array's shape and dtype without reading it.

    Parameters
    ----------
    a : out-of-core array, shape (K,) or (K, n)
    name : str
        The argument's name, for the messages.
    width : int, optional
        The number of columns required (a 1-D array counts as one column).
    rows : int, optional
        The number of rows required.

    Returns
    -------
    (K, n) : tuple of int
        The rows and columns as a 2-D array.

    Raises
    ------
    TypeError
        For a non-numeric dtype (complex, strings, objects), or an object without a shape.
    ValueError
        For a shape that is not (K,) or (K, n), zero rows, or a width or row count other
        than required.
    """
    try:
        shape = tuple(int(s) for s in a.shape)
        dtype = np.dtype(a.dtype)
    except (TypeError, ValueError, AttributeError):
        raise TypeError(f"{name} must be an array with a shape and a numeric dtype, got "
                        f"{type(a).__name__}") from None
    if dtype.kind not in "biuf":
        raise TypeError(f"{name} must have a real numeric dtype (bool, int or float), got "
                        f"{dtype} ({type(a).__name__})")
    if len(shape) not in (1, 2):
        raise ValueError(f"{name} must be a 1-D or 2-D array (K rows), got shape {shape}")
    K, n = shape[0], (shape[1] if len(shape) == 2 else 1)
    if width is not None and n != width:
        raise ValueError(f"{name} must have shape (K, {width}), got {shape}")
    if K == 0:
        raise ValueError(f"{name} is empty (0 samples)")
    if rows is not None and K != rows:
        raise ValueError(f"{name} has {K} rows, expected {rows} (one per sample)")
    return K, n


def read_rows(a, start, stop, out=None):
    """Rows ``start:stop`` of ``a`` (in-memory or out-of-core) as a float64 2-D ndarray.

    Parameters
    ----------
    a : array, shape (K,) or (K, n)
    start, stop : int
    out : ndarray, shape (>= stop - start, n), optional
        Written into (its first ``stop - start`` rows, returned) instead of a new array.

    Returns
    -------
    ndarray, shape (stop - start, n), float64
    """
    block = a[start:stop]
    if hasattr(block, "compute") and not isinstance(block, np.ndarray):
        block = block.compute()
    block = np.asarray(block)
    if block.ndim == 1:
        block = block[:, None]
    if out is None:
        return np.array(block, dtype=np.float64)
    view = out[:stop - start]
    np.copyto(view, block, casting="unsafe")
    return view


def _as_ranges(rows, K):
    """Sorted (starts, stops) of the runs of a boolean mask (K,) or of (starts, stops)."""
    if isinstance(rows, tuple) and len(rows) == 2:
        starts = np.asarray(rows[0], dtype=np.int64).ravel()
        stops = np.asarray(rows[1], dtype=np.int64).ravel()
        if starts.shape != stops.shape or np.any(starts >= stops) or (
                starts.size and (starts[0] < 0 or stops[-1] > K
                                 or np.any(starts[1:] < stops[:-1]))):
            raise ValueError(f"rows must be sorted, disjoint, non-empty ranges in 0..{K}")
        return starts, stops
    m = np.asarray(rows)
    if m.dtype != bool or m.shape != (K,):
        raise ValueError(f"rows must be a boolean mask of shape ({K},) or (starts, stops) "
                         f"ranges, got {m.dtype} array of shape {m.shape}")
    d = np.diff(np.r_[0, m.view(np.int8), 0])
    return np.flatnonzero(d == 1).astype(np.int64), np.flatnonzero(d == -1).astype(np.int64)


class RowArray:
    """Base of the lazy out-of-core arrays: read by contiguous row slices only.

    A subclass sets ``shape`` (a tuple), ``dtype`` and ``chunks`` and implements
    ``_rows(a, b)`` -> ndarray of rows ``a:b`` (``0 <= a < b <= shape[0]``);
    ``x[i:j]`` then returns those rows and ``np.asarray(x)`` reads every row.
    """

    def __getitem__(self, key):
        if not isinstance(key, slice):
            raise TypeError(f"a {type(self).__name__} is read by row slices, got "
                            f"{type(key).__name__}")
        i, j, step = key.indices(self.shape[0])
        if step != 1:
            raise ValueError(f"a {type(self).__name__} is read by contiguous row slices "
                             f"(step 1)")
        if j <= i:
            return np.empty((0,) + tuple(self.shape[1:]), self.dtype)
        return self._rows(i, j)

    def __array__(self, dtype=None, copy=None):
        out = self[:]
        return out if dtype is None else out.astype(dtype)


class RowView(RowArray):
    """Some rows of an array, in order, as an out-of-core array (nothing is read).

    Reading rows ``i:j`` of the view reads the span of the underlying array that holds
    them (held-out rows in between included, once) and keeps the selected ones.

    Parameters
    ----------
    base : array, shape (K,) or (K, n)
        An out-of-core or in-memory array.
    rows : bool array (K,) or (starts, stops)
        The rows: a mask, or sorted disjoint ranges ``[starts[r], stops[r])``.

    Attributes
    ----------
    shape, dtype, chunks
        ``(n_selected,)`` or ``(n_selected, n)``; the base's dtype; one chunk.
    """

    def __init__(self, base, rows):
        K = int(base.shape[0])
        self.base = base
        self.starts, self.stops = _as_ranges(rows, K)
        self._cum = np.cumsum(self.stops - self.starts)
        n = int(self._cum[-1]) if self._cum.size else 0
        self.shape = (n,) + tuple(int(s) for s in base.shape[1:])
        self.dtype = np.dtype(base.dtype)
        self.chunks = (self.shape,)

    def _rows_of(self, i, j):
        """Base rows of view rows i:j: (span start, span stop, local indices or None)."""
        cum, starts = self._cum, self.starts
        r0 = int(np.searchsorted(cum, i, side="right"))
        r1 = int(np.searchsorted(cum, j - 1, side="right"))
        first = starts[r0] + i - (cum[r0] - (self.stops[r0] - starts[r0]))
        last = starts[r1] + (j - 1) - (cum[r1] - (self.stops[r1] - starts[r1]))
        if r0 == r1:
            return int(first), int(last) + 1, None
        s = np.maximum(starts[r0:r1 + 1], first)
        e = np.minimum(self.stops[r0:r1 + 1], last + 1)
        lengths = e - s
        local = np.repeat(s - first - np.r_[0, np.cumsum(lengths)[:-1]], lengths) \
            + np.arange(int(lengths.sum()))
        return int(first), int(last) + 1, local

    def _rows(self, i, j):
        a, b, local = self._rows_of(i, j)
        block = self.base[a:b]
        if hasattr(block, "compute") and not isinstance(block, np.ndarray):
            block = block.compute()
        block = np.asarray(block)
        return block if local is None else block[local]

    def __repr__(self):
        return (f"RowView({self.shape[0]} of {self.base.shape[0]} rows of "
                f"{type(self.base).__name__})")


def column_moments(a, name, block_rows=STATS_ROWS, out=None):
    """Count, mean and centred sum of squares of every column, in one pass over row blocks.

    One block gives numpy's ``mean`` and ``std`` bit for bit (two passes: the mean, then
    the squared residuals).  With more blocks, each block's mean and centred sum of squares
    are refined by the residuals' sum (the corrected two-pass algorithm), the blocks after
    the first are shifted by the first block's mean (so the means merged are small numbers
    known to full precision), and they are merged into the running ones by the pairwise update of Chan,
    Golub and LeVeque (1979)::

        n = n_a + n_b,  d = mean_b - mean_a,  mean = mean_a + d n_b / n,
        M2 = M2_a + M2_b + d^2 n_a n_b / n

    which stays accurate when the columns have a large offset (no sum of squares of raw
    values is formed).  The same pass checks that every entry is finite.

    Parameters
    ----------
    a : array, shape (K,) or (K, n)
        In memory or out of core.
    name : str
        Named in the error for a NaN or an inf.
    block_rows : int
        Rows per block (the statistics depend on it at the rounding level only).
    out : ndarray, shape (>= block_rows, n), optional
        A work buffer for the blocks.

    Returns
    -------
    count : int
    mean, m2 : ndarray, shape (n,)
        ``m2`` is ``sum_k (a_k - mean)^2`` per column.

    Raises
    ------
    ValueError
        If an entry is NaN or inf (naming ``name`` and the first such rows).
    """
    K = int(a.shape[0])
    n = int(a.shape[1]) if len(a.shape) == 2 else 1
    count, shift, mean, m2 = 0, None, np.zeros(n), np.zeros(n)
    for s in range(0, K, block_rows):
        e = min(s + block_rows, K)
        B = read_rows(a, s, e, out)
        d = B - (0.0 if shift is None else shift)
        mb = d.mean(axis=0)
        if not np.all(np.isfinite(mb)):
            bad = ~np.isfinite(B)
            if bad.any():
                rows = s + np.flatnonzero(bad.any(axis=1))
                raise ValueError(f"{name} contains NaN or inf in row(s) "
                                 f"{rows[:5].tolist()} (the first in the block of rows "
                                 f"{s}..{e - 1})")
        d -= mb                             # two passes over the block, as np.std does,
        c = d.sum(axis=0)                   # and the residuals' sum, which corrects them
        np.multiply(d, d, out=d)
        q = d.sum(axis=0)
        nb = e - s
        mc, qc = mb + c / nb, q - c * c / nb
        if shift is None:                   # later blocks are shifted by the first's mean
            shift, first, mean, m2 = mb, (mb, q), c / nb, qc
        else:
            tot = count + nb
            delta = mc - mean
            mean = mean + delta * (nb / tot)
            m2 = m2 + qc + delta * delta * (count * nb / tot)
        count += nb
    if count <= block_rows:                 # one block: numpy's mean and std exactly
        return (count,) + first if count else (0, mean, m2)
    return count, shift + mean, m2

