"""Input validation shared by the modules: each raises an error that names the argument."""

import numpy as np


def as_float(a, name):
    """``a`` as a float64 ndarray, or a TypeError naming ``name``."""
    try:
        return np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a numeric array, got {type(a).__name__}: "
                        f"{a!r:.60}") from None


def check_finite(a, name):
    """Return ``a``, or raise a ValueError naming ``name`` and the first non-finite entries."""
    bad = ~np.isfinite(a)
    if bad.any():
        where = np.argwhere(bad)[:3].tolist()
        raise ValueError(f"{name} contains NaN or inf (at index {where})")
    return a


def check_int(v, name, lo):
    """``v`` as an int >= lo, or a TypeError/ValueError naming it."""
    if isinstance(v, (bool, np.bool_)) or not hasattr(v, "__index__"):
        raise TypeError(f"{name} must be an integer, got {v!r}")
    if int(v) < lo:
        raise ValueError(f"{name} must be at least {lo}, got {int(v)}")
    return int(v)


def check_indices(idx, n, what):
    """Validate a non-empty list of distinct integer indices in 0..n-1; return an intp array."""
    a = np.atleast_1d(np.asarray(idx))
    if a.ndim != 1 or a.size == 0 or not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{what} must be a non-empty list of integer indices, got {idx!r}")
    bad = a[(a < 0) | (a >= n)]
    if bad.size:
        raise ValueError(f"{what} index {bad.tolist()} out of range 0..{n - 1}")
    if len(set(a.tolist())) != a.size:
        raise ValueError(f"{what} repeats indices: {a.tolist()}")
    return a.astype(np.intp)


def check_nonneg(v, name):
    """``v`` as a finite float >= 0, or a TypeError/ValueError naming it."""
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a non-negative number, got {v!r}") from None
    if not np.isfinite(x) or x < 0:
        raise ValueError(f"{name} must be a finite non-negative number, got {v!r}")
    return x


def canonical_method(method, families, what="method"):
    """The canonical spelling of ``method`` (matched case-insensitively) among ``families``,
    a list of ``(names, description)``; a TypeError for a non-string, else a ValueError that
    lists every supported name."""
    if not isinstance(method, str):
        raise TypeError(f"{what} must be a string, got {type(method).__name__}")
    for names, _ in families:
        for m in names:
            if method.lower() == m.lower():
                return m
    choices = "; ".join(f"{list(names)} ({desc})" for names, desc in families)
    raise ValueError(f"unknown {what} {method!r}; choose one of {choices}")


def check_data(net, X, Y, names=("X", "Y")):
    """Validate a data set for ``net``; return 2-D float arrays ``(K, n_inputs), (K, n_outputs)``.

    1-D X (Y) is accepted as K samples when the network has one input (output).
    """
    out = []
    for A, name, n, side in ((X, names[0], net.n_inputs, "inputs"),
                             (Y, names[1], net.n_outputs, "outputs")):
        A = as_float(A, name)
        if A.ndim == 1 and n == 1:
            A = A[:, None]
        if A.ndim != 2 or A.shape[1] != n:
            raise ValueError(f"{name} must have shape (K, {n}) for a network with {n} {side}, "
                             f"got {A.shape}")
        if A.shape[0] == 0:
            raise ValueError(f"{name} is empty (0 samples)")
        bad = ~np.isfinite(A)
        if bad.any():
            rows = np.flatnonzero(bad.any(axis=1))
            raise ValueError(f"{name} contains NaN or inf in {len(rows)} row(s), the first at "
                             f"rows {rows[:5].tolist()}")
        out.append(A)
    if out[0].shape[0] != out[1].shape[0]:
        raise ValueError(f"{names[0]} has {out[0].shape[0]} rows but {names[1]} has "
                         f"{out[1].shape[0]}; they need one row per sample")
    return out[0], out[1]


def check_sample_weight(sw, K):
    """Validate sample weights: None or K finite non-negative numbers, not all zero."""
    if sw is None:
        return None
    sw = as_float(sw, "sample_weight")
    if sw.shape != (K,):
        raise ValueError(f"sample_weight must have shape ({K},) (one weight per sample), "
                         f"got {sw.shape}")
    if not np.all(np.isfinite(sw)) or np.any(sw < 0):
        raise ValueError("sample_weight must be finite and non-negative")
    if not np.any(sw > 0):
        raise ValueError("sample_weight is zero for every sample")
    return sw
