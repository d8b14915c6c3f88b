"""Input validation shared by the modules: each raises an error that names the argument."""

import numpy as np

from .arrays import STATS_ROWS, check_rows, is_out_of_core, read_rows


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


def check_int(v, name, lo=None, allow_none=False):
    """The one integer check: ``v`` as an int, or a TypeError/ValueError naming ``name``.

    Parameters
    ----------
    v : object
        An int or numpy integer (not a bool); None too when ``allow_none``.
    name : str
        The argument's name, for the messages.
    lo : int, optional
        The smallest accepted value.
    allow_none : bool
        Pass None through (e.g. "no limit", "leave as it is").

    Returns
    -------
    int or None
    """
    if v is None and allow_none:
        return None
    alt = "None or " if allow_none else ""
    if isinstance(v, (bool, np.bool_)) or not hasattr(v, "__index__"):
        raise TypeError(f"{name} must be {alt}an integer, got {v!r}")
    v = int(v)
    if lo is not None and v < lo:
        kind = {0: " (a non-negative integer)", 1: " (a positive integer)"}.get(lo, "")
        raise ValueError(f"{name} must be {alt}at least {lo}{kind}, got {v}")
    return v


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
    """``v`` as a finite float >= 0, or a TypeError/ValueError naming it.

    A bool or a string is refused (TypeError), not read as 1.0 / a number.
    """
    if isinstance(v, (bool, np.bool_, str, bytes)):
        raise TypeError(f"{name} must be a non-negative number, got {type(v).__name__}: "
                        f"{v!r:.60}")
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a non-negative number, got {v!r}") from None
    if not np.isfinite(x) or x < 0:
        raise ValueError(f"{name} must be a finite non-negative number, got {v!r}")
    return x


def check_dtype(dtype, name="dtype"):
    """``dtype`` as ``np.dtype('float64')`` or ``np.dtype('float32')`` (given as the numpy
    type, its name or a dtype), else a ValueError/TypeError naming ``name``."""
    if isinstance(dtype, (bool, np.bool_)) or dtype is None:
        raise TypeError(f"{name} must be np.float64 or np.float32, got {dtype!r}")
    try:
        d = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{name} must be np.float64 or np.float32, got {dtype!r:.60}") from None
    if d not in (np.dtype(np.float64), np.dtype(np.float32)):
        raise ValueError(f"{name} must be np.float64 or np.float32, got {d}")
    return d


def check_bool(v, name):
    """``v`` as a bool if it is True or False (a numpy bool too), else a TypeError naming
    ``name`` (no truthiness: 1, "yes", [True] and None are refused)."""
    if not isinstance(v, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {type(v).__name__}: {v!r:.60}")
    return bool(v)


def check_seed(seed, name="seed"):
    """``seed`` if numpy.random.default_rng takes it as documented -- None, an int >= 0, or
    a numpy Generator / BitGenerator / SeedSequence -- else a TypeError/ValueError naming
    ``name`` (numpy's own error does not)."""
    if seed is None or isinstance(seed, (np.random.Generator, np.random.BitGenerator,
                                         np.random.SeedSequence)):
        return seed
    if isinstance(seed, (bool, np.bool_)) or not hasattr(seed, "__index__"):
        raise TypeError(f"{name} must be None, an integer >= 0 or a numpy Generator, "
                        f"got {type(seed).__name__}: {seed!r:.60}")
    return check_int(seed, name, 0)


def as_list(v, name, what):
    """The items of ``v`` as a list, or a TypeError naming ``name`` and ``what`` it must be
    (e.g. "a sequence of (source, destination) pairs") for a string, a dict or anything
    that is not iterable."""
    if not isinstance(v, (str, bytes, dict)):
        try:
            return list(v)
        except TypeError:
            pass
    raise TypeError(f"{name} must be {what}, got {type(v).__name__}: {v!r:.60}")


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


def check_data(net, X, Y, names=("X", "Y"), *, stream=False):
    """Validate a data set for ``net``; return 2-D float arrays ``(K, n_inputs), (K, n_outputs)``.

    1-D X (Y) is accepted as K samples when the network has one input (output).  With
    ``stream``, an out-of-core array (:func:`ctrlprop.core.arrays.is_out_of_core`) is
    returned as it is after checking its shape and dtype, without reading it (its entries
    are checked by the pass that reads it, :func:`ctrlprop.core.arrays.column_moments`).
    """
    out = []
    for A, name, n, side in ((X, names[0], net.n_inputs, "inputs"),
                             (Y, names[1], net.n_outputs, "outputs")):
        if stream and is_out_of_core(A):
            if len(A.shape) == 1 and n != 1 or len(A.shape) == 2 and A.shape[1] != n:
                raise ValueError(f"{name} must have shape (K, {n}) for a network with {n} "
                                 f"{side}, got {tuple(A.shape)}")
            check_rows(A, name, n)
            out.append(A)
            continue
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


def check_sample_weight(sw, K, *, stream=False):
    """Validate sample weights: None or K finite non-negative numbers, not all zero.

    With ``stream``, out-of-core weights are checked in one pass over blocks and returned
    as they are.
    """
    if sw is None:
        return None
    if stream and is_out_of_core(sw):
        if len(sw.shape) != 1:
            raise ValueError(f"sample_weight must have shape ({K},) (one weight per sample), "
                             f"got {tuple(sw.shape)}")
        check_rows(sw, "sample_weight", rows=K)
        blocks = (read_rows(sw, s, min(s + STATS_ROWS, K)) for s in range(0, K, STATS_ROWS))
        flags = [(bool(np.all(np.isfinite(b)) and not np.any(b < 0)), bool(np.any(b > 0)))
                 for b in blocks]
        ok, positive = all(f[0] for f in flags), any(f[1] for f in flags)
    else:
        sw = as_float(sw, "sample_weight")
        if sw.shape != (K,):
            raise ValueError(f"sample_weight must have shape ({K},) (one weight per sample), "
                             f"got {sw.shape}")
        ok, positive = bool(np.all(np.isfinite(sw)) and not np.any(sw < 0)), bool(np.any(sw > 0))
    if not ok:
        raise ValueError("sample_weight must be finite and non-negative")
    if not positive:
        raise ValueError("sample_weight is zero for every sample")
    return sw


# ---------------------------------------------------------------- bounds
BOUNDS_FORMS = ("None (no bounds); scipy.optimize.Bounds(lb, ub) with lb, ub scalars or arrays "
                "of shape {shapes}; one (lo, hi) pair of scalars for every variable; a "
                "sequence of {n} (lo, hi) pairs, one per variable (scipy.optimize.minimize's "
                "form); or a dict {{index: (lo, hi)}} bounding some variables. None or +-inf "
                "is an open side")


def _end(v, name):
    """One side of a (lo, hi) pair: a float (None -> nan marker handled by caller)."""
    if v is None:
        return None
    if isinstance(v, (bool, np.bool_)) or np.ndim(v) != 0:
        raise ValueError(f"{name} must be a number or None, got {v!r}")
    try:
        return float(v)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number or None, got {type(v).__name__}") from None


def _pair(p, name):
    """(lo, hi) floats from a pair of scalars/None, or a ValueError naming ``name``."""
    if isinstance(p, (str, bytes, dict)) or not hasattr(p, "__len__") or len(p) != 2:
        raise ValueError(f"{name} must be a (lo, hi) pair of numbers or None, got {p!r:.80}")
    lo, hi = _end(p[0], f"{name}[0]"), _end(p[1], f"{name}[1]")
    return -np.inf if lo is None else lo, np.inf if hi is None else hi


def parse_bounds(bounds, n, shape=None, name="bounds", what="variables"):
    """The one bounds parser: ``(lo, hi)`` float arrays of ``shape`` from any accepted form.

    Parameters
    ----------
    bounds : None, scipy.optimize.Bounds, (lo, hi), sequence of n (lo, hi), or dict
        ``Bounds(lb, ub)``: ``lb`` and ``ub`` broadcast to ``shape`` (scalars, (n,), or any
        trailing part of ``shape`` such as (T, n)).  A pair of scalars bounds every
        variable alike; a sequence of ``n`` pairs bounds each variable (per-variable arrays
        go through ``Bounds``; a None entry leaves that variable open); ``{index: (lo, hi)}``
        bounds the listed variables only.
        No form changes its meaning with ``n``: a sequence is always read as pairs.
    n : int
        Number of variables (the last axis of ``shape``).
    shape : tuple of int, optional
        Shape of the returned arrays; default ``(n,)``.  Pairs and dicts give the same
        bounds along the leading axes.
    name, what : str
        Used in error messages ("bounds", "controls").

    Returns
    -------
    lo, hi : ndarray of ``shape``
        -inf / +inf on open sides.

    Raises
    ------
    ValueError, TypeError
        For a malformed or infeasible value (lo > hi, NaN, lo = +inf, hi = -inf), with the
        accepted forms in the message.
    """
    shape = (n,) if shape is None else tuple(shape)
    forms = BOUNDS_FORMS.format(n=n, shapes=" or ".join(
        str(shape[i:]) for i in range(len(shape) - 1, -1, -1)))
    if bounds is None:
        return np.full(shape, -np.inf), np.full(shape, np.inf)
    if hasattr(bounds, "lb") and hasattr(bounds, "ub"):                  # scipy Bounds
        ends = []
        for side, v in (("lb", bounds.lb), ("ub", bounds.ub)):
            a = as_float(v, f"{name}.{side}")
            try:
                ends.append(np.array(np.broadcast_to(a, shape)))
            except ValueError:
                raise ValueError(f"{name}.{side} has shape {a.shape}, which does not fit "
                                 f"{shape} ({n} {what}); accepted: {forms}") from None
        lo, hi = ends
    elif isinstance(bounds, dict):
        lo, hi = np.full(n, -np.inf), np.full(n, np.inf)
        for j, p in bounds.items():
            if isinstance(j, (bool, np.bool_)) or not isinstance(j, (int, np.integer)):
                raise ValueError(f"{name} keys must be indices of {what}, got {j!r}; "
                                 f"accepted: {forms}")
            if not 0 <= j < n:
                raise ValueError(f"{name} index {j} out of range 0..{n - 1} ({n} {what})")
            if p is not None:
                lo[j], hi[j] = _pair(p, f"{name}[{j}]")
        lo, hi = np.broadcast_to(lo, shape).copy(), np.broadcast_to(hi, shape).copy()
    elif isinstance(bounds, (str, bytes)) or not hasattr(bounds, "__len__"):
        raise TypeError(f"{name} must be one of: {forms}; got {type(bounds).__name__}")
    else:
        items = list(bounds)
        scalar = [x is None or np.ndim(x) == 0 for x in items]
        if len(items) == 2 and all(scalar):                              # one pair for all
            a, b = _pair(items, name)
            lo, hi = np.full(shape, a), np.full(shape, b)
        elif any(x is not None and np.ndim(x) == 0 for x in items):
            raise ValueError(f"{name} is neither one (lo, hi) pair of numbers nor a sequence "
                             f"of pairs: {bounds!r:.80}; accepted: {forms}")
        elif len(items) != n:
            raise ValueError(f"{name} gives {len(items)} (lo, hi) pairs for {n} {what}; "
                             f"accepted: {forms}")
        else:
            pairs = np.array([(-np.inf, np.inf) if p is None else _pair(p, f"{name}[{i}]")
                              for i, p in enumerate(items)])
            lo = np.broadcast_to(pairs[:, 0], shape).copy()
            hi = np.broadcast_to(pairs[:, 1], shape).copy()
    if np.isnan(lo).any() or np.isnan(hi).any():
        raise ValueError(f"{name} contain NaN (use None or +-inf for an open side)")
    bad = np.argwhere((lo > hi) | (lo == np.inf) | (hi == -np.inf))
    if len(bad):
        i = tuple(int(k) for k in bad[0])
        hint = ("; a sequence is read as one (lo, hi) pair per variable: give per-variable "
                "arrays as scipy.optimize.Bounds(lb, ub)") if isinstance(bounds, (list, tuple)) \
            else ""
        raise ValueError(f"{name} are infeasible: lo > hi (or lo = +inf, hi = -inf) in "
                         f"{len(bad)} entr(ies), the first at index {list(i)}: "
                         f"lo={lo[i]}, hi={hi[i]}{hint}")
    return lo, hi


def check_box(low, high, names=("low", "high"), what="a box"):
    """Two bound vectors (k,) of one shape, ``low <= high``, no NaN (infinite entries are
    open ends): float64 copies, or a TypeError/ValueError naming them."""
    a, b = as_float(low, names[0]), as_float(high, names[1])
    if a.ndim != 1 or a.shape != b.shape or a.size == 0:
        raise ValueError(f"{what}: {names[0]} and {names[1]} must be non-empty vectors of one "
                         f"shape, got {a.shape} and {b.shape}")
    if np.isnan(a).any() or np.isnan(b).any() or np.any(a > b):
        raise ValueError(f"{what} needs {names[0]} <= {names[1]} without NaN, got "
                         f"{names[0]}={a}, {names[1]}={b}")
    return a.copy(), b.copy()


def check_within(U, lo, hi, name):
    """Raise a ValueError (naming ``name`` and the first entry) if U is outside [lo, hi]."""
    lo, hi = np.broadcast_to(lo, U.shape), np.broadcast_to(hi, U.shape)
    out = np.argwhere((U < lo) | (U > hi))
    if len(out):
        i = tuple(int(k) for k in out[0])
        raise ValueError(f"{name}{list(i)} = {U[i]} is outside the bounds [{lo[i]}, {hi[i]}] "
                         f"({len(out)} entr(ies) outside); {name} is never clipped: give a "
                         "start inside the bounds")
    return U


def check_state(y, n, what):
    """A plant's returned state as a finite float array of shape ``n`` (a tuple), else a
    ValueError naming ``what`` (e.g. "step 3: the plant")."""
    try:
        a = np.array(y, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{what} returned {type(y).__name__}, not a numeric state of shape "
                         f"{n}") from None
    if a.shape != n:
        raise ValueError(f"{what} returned a state of shape {a.shape}, expected {n}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{what} returned NaN or inf: {a.ravel()[:6].tolist()}")
    return a


def check_callable(f, name, signature, allow_none=True):
    """``f`` if it is callable (or None, when ``allow_none``), else a TypeError naming
    ``name`` and its signature."""
    if (f is None and allow_none) or callable(f):
        return f
    alt = " (or None)" if allow_none else ""
    raise TypeError(f"{name} must be callable as {signature}{alt}, got {type(f).__name__}")
