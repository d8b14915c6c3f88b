"""Transfer functions: the table ``name -> (h, h', h'')``.

Each unit ``j`` computes ``o_j = h_j(z_j)``.  The back-propagation recursion
needs ``h'_j(z_j)``; the exact Hessian-vector product (R-operator) also needs
``h''_j(z_j)``.  Where possible the derivatives are written in terms of the
unit's *output* ``o`` (``tanh' = 1 - o^2``, ``logistic' = o (1 - o)``), so the
forward pass need not keep ``z``; a transfer whose derivative needs ``z``
says so with ``needs_z=True`` and the engine then keeps ``z`` for it.

Every callable writes into ``out`` (a preallocated buffer) so that the hot loop
allocates nothing:

* ``h(z, out)``            -- ``out[:] = h(z)``; ``out`` may be ``z`` itself.
* ``dh(z, o, out)``         -- ``out[:] = h'(z)``.
* ``d2h(z, o, out)``        -- ``out[:] = h''(z)``.

Users register their own function with :func:`register_transfer`, either as a
plain pair of array functions ``(h, h')`` (derivative in terms of ``z``) or
with a third function for ``h''`` to enable exact Hessian-vector products.
"""

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from .checks import check_bool

__all__ = ["Transfer", "register_transfer", "get_transfer", "transfer_names"]


@dataclass(frozen=True)
class Transfer:
    """One transfer function with its first and second derivatives.

    Parameters
    ----------
    name : str
        Registered name (saved in model files).
    h, dh, d2h : callable
        ``h(z, out)``, ``dh(z, o, out)``, ``d2h(z, o, out)``, each writing into
        ``out`` (arrays of equal shape).  ``d2h`` may be None, in which case
        exact Hessian-vector products through this transfer raise.
    needs_z : bool
        True when ``dh`` or ``d2h`` read ``z`` (otherwise they read only ``o``).
    linear : bool
        True only for the identity, which lets the engine skip work.
    """

    name: str
    h: Callable
    dh: Callable
    d2h: Optional[Callable] = None
    needs_z: bool = True
    linear: bool = False
    builtin: bool = False
    source: tuple = ()
    fwd_builder: Optional[Callable] = None
    delta_builder: Optional[Callable] = None

    def __reduce__(self):
        # pickled by name: a built-in resolves anywhere; a user transfer must be registered
        # under the same name in the process that unpickles it
        return (_by_name, (self.name,))

    # The engine runs precompiled lists of ``(function, args)`` steps; these two
    # methods give the steps for this transfer on fixed buffers.
    def fwd_ops(self, z, o):
        """Steps computing ``o = h(z)`` (``o`` may be ``z``)."""
        if self.fwd_builder is not None:
            return self.fwd_builder(z, o)
        if self.linear:
            return [] if z is o else [(np.copyto, (o, z))]
        return [(self.h, (z, o))]

    def delta_ops(self, z, o, g, d):
        """Steps computing the deltas ``d = h'(z) * g`` (``d`` may be ``g`` only if linear)."""
        if self.linear:
            return [] if d is g else [(np.copyto, (d, g))]
        if self.delta_builder is not None:
            return self.delta_builder(z, o, g, d)
        return [(self.dh, (z, o, d)), (np.multiply, (d, g, d))]


# ---------------------------------------------------------------- built-ins
def _copy(z, out):
    if out is not z:
        np.copyto(out, z)


def _one(z, o, out):
    out.fill(1.0)


def _zero(z, o, out):
    out.fill(0.0)


_ONE = np.ones(1)


def _tanh_d(z, o, out):                       # 1 - o^2
    np.multiply(o, o, out=out)
    np.subtract(_ONE, out, out=out)


def _tanh_d2(z, o, out):                      # -2 o (1 - o^2)
    np.multiply(o, o, out=out)
    np.subtract(1.0, out, out=out)
    out *= o
    out *= -2.0


def _logistic(z, out):                        # overflow-safe: exp(-|z|) <= 1
    e = np.exp(-np.abs(z))
    np.divide(1.0, 1.0 + e, out=out, where=z >= 0)
    np.divide(e, 1.0 + e, out=out, where=z < 0)


def _logistic_d(z, o, out):                   # o (1 - o)
    np.subtract(1.0, o, out=out)
    out *= o


def _logistic_d2(z, o, out):                  # o (1 - o) (1 - 2 o)
    np.subtract(1.0, o, out=out)
    out *= o
    out *= 1.0 - 2.0 * o


def _relu(z, out):
    np.maximum(z, 0.0, out=out)


def _relu_d(z, o, out):
    np.greater(o, 0.0, out=out)


def _softplus(z, out):                        # log(1 + e^z) = max(z, 0) + log1p(e^-|z|)
    t = np.log1p(np.exp(-np.abs(z)))
    np.maximum(z, 0.0, out=out)
    out += t


def _softplus_d(z, o, out):                   # logistic(z)
    _logistic(z, out)


def _softplus_d2(z, o, out):                  # s (1 - s), s = logistic(z)
    _logistic(z, out)
    out *= 1.0 - out


def _sin(z, out):
    np.sin(z, out=out)


def _sin_d(z, o, out):
    np.cos(z, out=out)


def _sin_d2(z, o, out):                       # -sin(z) = -o
    np.negative(o, out=out)


def _tanh_fwd(z, o):
    return [(np.tanh, (z, o))]


def _tanh_delta(z, o, g, d):                  # d = g - g o^2
    return [(np.multiply, (o, o, d)), (np.multiply, (d, g, d)), (np.subtract, (g, d, d))]


def _logistic_delta(z, o, g, d):              # d = g o (1 - o)
    return [(np.subtract, (_ONE, o, d)), (np.multiply, (d, o, d)), (np.multiply, (d, g, d))]


_REGISTRY = {}


def _add(t):
    _REGISTRY[t.name] = t


_add(Transfer("linear", _copy, _one, _zero, needs_z=False, linear=True, builtin=True))
_add(Transfer("tanh", lambda z, out: np.tanh(z, out=out), _tanh_d, _tanh_d2,
              needs_z=False, builtin=True, fwd_builder=_tanh_fwd, delta_builder=_tanh_delta))
_add(Transfer("logistic", _logistic, _logistic_d, _logistic_d2, needs_z=False, builtin=True,
              delta_builder=_logistic_delta))
_add(Transfer("relu", _relu, _relu_d, _zero, needs_z=False, builtin=True))
_add(Transfer("softplus", _softplus, _softplus_d, _softplus_d2, needs_z=True, builtin=True))
_add(Transfer("sin", _sin, _sin_d, _sin_d2, needs_z=True, builtin=True))
_BUILTIN = frozenset(_REGISTRY)


def _by_name(name):
    """The registered transfer ``name``, for unpickling."""
    t = _REGISTRY.get(name)
    if t is None:
        raise ValueError(f"cannot unpickle: transfer function {name!r} is not registered in "
                         f"this process; call ctrlprop.register_transfer({name!r}, h, dh[, d2h]) "
                         "before loading (registered names: " + ", ".join(transfer_names()) + ")")
    return t


def transfer_names():
    """Return the registered transfer names, sorted."""
    return sorted(_REGISTRY)


def _wrap_user(name, h, dh, d2h):
    """Adapt plain array functions ``h(z)``, ``h'(z)``, ``h''(z)`` to the in-place protocol."""
    def f(z, out):
        out[...] = h(z)

    def df(z, o, out):
        out[...] = dh(z)

    def d2f(z, o, out):
        out[...] = d2h(z)
    return Transfer(name, f, df, None if d2h is None else d2f, needs_z=True,
                    source=(h, dh, d2h))


def register_transfer(name, h, dh, d2h=None, overwrite=False):
    """Register a user transfer function under ``name``.

    Parameters
    ----------
    name : str
        The name used in ``Network.from_edges(..., transfers=[name, ...])`` and
        saved in model files.  Register it again before loading such a file.
    h, dh : callable
        Elementwise array functions ``h(z)`` and ``h'(z)`` (derivative in terms
        of ``z``), each mapping an array to an array of the same shape.
    d2h : callable, optional
        ``h''(z)``; needed only for exact Hessian-vector products.
    overwrite : bool
        Replace an existing user registration of the same name.  Built-in
        names can never be replaced.

    Returns
    -------
    Transfer
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"transfer name must be a non-empty string, got {name!r}")
    overwrite = check_bool(overwrite, "overwrite")
    if name in _BUILTIN:
        raise ValueError(f"transfer {name!r} is built in and cannot be replaced; "
                         "register yours under another name")
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"transfer {name!r} is already registered; pass overwrite=True "
                         "to replace it")
    for label, fn in (("h", h), ("dh", dh)):
        if not callable(fn):
            raise TypeError(f"transfer {name!r}: {label} must be callable, got {type(fn).__name__}")
    if d2h is not None and not callable(d2h):
        raise TypeError(f"transfer {name!r}: d2h must be callable or None")
    t = _wrap_user(name, h, dh, d2h)
    _REGISTRY[name] = t
    return t


def get_transfer(spec, anonymous_name=None):
    """Resolve a transfer spec: a registered name, a Transfer, or an ``(h, h'[, h''])`` tuple."""
    if isinstance(spec, Transfer):
        return spec
    if isinstance(spec, str):
        try:
            return _REGISTRY[spec]
        except KeyError:
            raise ValueError(f"unknown transfer function {spec!r}; registered names are "
                             f"{transfer_names()} (add yours with ctrlprop.register_transfer)"
                             ) from None
    if isinstance(spec, (tuple, list)) and len(spec) in (2, 3) and all(callable(f) for f in spec):
        name = anonymous_name or getattr(spec[0], "__name__", "custom")
        t = _REGISTRY.get(name)
        if t is None:
            return register_transfer(name, *spec)
        if t.source[:len(spec)] == tuple(spec):
            return t
        raise ValueError(f"a different transfer is already registered as {name!r}; register "
                         "yours with ctrlprop.register_transfer under a unique name and pass "
                         "that name")
    raise ValueError(f"a transfer must be a registered name or an (h, h') pair of callables, "
                     f"got {spec!r}")
