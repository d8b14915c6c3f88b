"""Inequality constraints along trajectories, and their augmented-Lagrangian cost term.

Notation: x is [n], u is [m], T steps, B trajectories; a constraint has k components per
step.  A constraint is a function of each control and the state it leads to::

    c(x_{t+1}, u_t) <= 0,      t = 0 .. T-1

so every state the controls decide is constrained (x_1 .. x_T) and x_0, which is given,
is not.  :class:`StateBounds` are ``lo <= x_t <= hi``; :class:`PathConstraint` wraps any
differentiable ``c`` that returns its values and Jacobians on a batch.

The augmented Lagrangian (Powell-Hestenes-Rockafellar form, for inequalities) adds to the
cost, per trajectory b, step t and component i, with multiplier lam >= 0 and weight rho::

    psi(c, lam) = 1/(2 rho) * (max(0, lam + rho c)^2 - lam^2)

    d psi / dc = max(0, lam + rho c) =: mu          (the updated multiplier)

Its gradient in (x_{t+1}, u_t) is ``mu c_x``, ``mu c_u``.  Its Hessian blocks (for
iLQR/DDP) are Gauss-Newton, ``rho [lam + rho c > 0] c_x^T c_x`` etc.: exact for
constraints linear in (x, u) such as state bounds; the term ``mu c_xx`` of a curved
constraint is dropped, and so are the blocks coupling u_t with x_{t+1} (different steps).
"""

import numpy as np

from ..core.checks import check_box, check_callable, check_int

__all__ = ["StateBounds", "PathConstraint", "Constraints", "as_constraints",
           "AugmentedLagrangian"]


class StateBounds:
    """``lo <= x_t <= hi`` for t = 1 .. T (x_0 is given).

    Parameters
    ----------
    lo, hi : array_like, shape (n,)
        Bounds per state (``-inf``/``inf``: none), ``lo <= hi``.
    """

    def __init__(self, lo, hi):
        self.lo, self.hi = lo, hi = check_box(lo, hi, ("lo", "hi"), "state bounds")
        self.upper = np.flatnonzero(np.isfinite(hi))
        self.lower = np.flatnonzero(np.isfinite(lo))
        self.k = self.upper.size + self.lower.size
        if not self.k:
            raise ValueError("state bounds are all infinite: there is nothing to constrain")

    def check(self, n, m):
        if self.lo.size != n:
            raise ValueError(f"constraints: state bounds must have {n} entries (the "
                             f"model's states), got {self.lo.size}")

    def __call__(self, X, U):
        """c (B, T, k), c_x (B, T, k, n), c_u (B, T, k, m) for states X (B, T, n)."""
        B, T, n = X.shape
        c = np.concatenate([X[..., self.upper] - self.hi[self.upper],
                            self.lo[self.lower] - X[..., self.lower]], axis=-1)
        J = np.zeros((self.k, n))
        J[np.arange(self.upper.size), self.upper] = 1.0
        J[self.upper.size + np.arange(self.lower.size), self.lower] = -1.0
        return c, np.broadcast_to(J, (B, T, self.k, n)), np.zeros((B, T, self.k, U.shape[-1]))

    def __repr__(self):
        return f"StateBounds(lo={self.lo.tolist()}, hi={self.hi.tolist()})"


class PathConstraint:
    """A differentiable constraint ``c(x_{t+1}, u_t) <= 0`` with k components.

    Parameters
    ----------
    fun : callable
        ``fun(X, U) -> (c, c_x, c_u)`` on a batch: X (B, T, n) the states x_1 .. x_T,
        U (B, T, m) the controls u_0 .. u_{T-1}; c (B, T, k), c_x (B, T, k, n),
        c_u (B, T, k, m) (None for zero).
    k : int
        Components per step.
    name : str
        What the constraint is called in messages.
    """

    def __init__(self, fun, k, name="constraint"):
        self.fun = check_callable(fun, "fun", "fun(X, U) -> (c, c_x, c_u)", allow_none=False)
        self.k = check_int(k, "k", 1)
        self.name = str(name)

    def check(self, n, m):
        pass

    def __call__(self, X, U):
        out = self.fun(X, U)
        if not isinstance(out, (tuple, list)) or len(out) != 3:
            raise TypeError(f"{self.name} must return (c, c_x, c_u), got "
                            f"{type(out).__name__}")
        B, T, n = X.shape
        m, k = U.shape[-1], self.k
        arrays = []
        for a, shape, what in zip(out, ((B, T, k), (B, T, k, n), (B, T, k, m)),
                                  ("values c", "Jacobian c_x", "Jacobian c_u")):
            if a is None and what != "values c":
                arrays.append(np.zeros(shape))
                continue
            a = np.asarray(a, dtype=float)
            if a.shape != shape:
                raise ValueError(f"{self.name} must return {what} of shape {shape}, got "
                                 f"{a.shape}")
            arrays.append(a)
        return tuple(arrays)

    def __repr__(self):
        return f"PathConstraint({self.name!r}, k={self.k})"


class Constraints:
    """Several constraints evaluated together (components stacked: K in all)."""

    def __init__(self, parts, n, m):
        for p in parts:
            p.check(n, m)
        self.parts, self.n, self.m = list(parts), n, m
        self.K = sum(p.k for p in parts)

    def __call__(self, X, U):
        """Stacked c (B, T, K), c_x (B, T, K, n), c_u (B, T, K, m) at x_1..x_T, u_0..u_{T-1}."""
        outs = [p(X, U) for p in self.parts]
        return tuple(np.concatenate([o[i] for o in outs], axis=2) for i in range(3))

    def violation(self, states, controls):
        """Largest violation max(0, c) per trajectory (B,), states (B, T+1, n)."""
        c = self(states[:, 1:], controls)[0]
        return np.maximum(c, 0.0).max(axis=(1, 2))

    def values(self, states, controls):
        return self(states[:, 1:], controls)[0]


def as_constraints(constraints, n, m):
    """A Constraints from one constraint (StateBounds, PathConstraint) or a list of them."""
    items = constraints if isinstance(constraints, (list, tuple)) else [constraints]
    if not items or not all(isinstance(c, (StateBounds, PathConstraint)) for c in items):
        raise TypeError(f"constraints must be a StateBounds, a PathConstraint or a list of "
                        f"them, got {constraints!r:.80}")
    return Constraints(items, n, m)


class AugmentedLagrangian:
    """The augmented-Lagrangian term of the module docstring, as a custom ``trajectory``
    cost term (with Gauss-Newton ``hessian`` blocks), plus an optional base term.

    Parameters
    ----------
    constraints : Constraints
    lam : ndarray, shape (B, T, K)
        Multipliers (>= 0).
    rho : float
        Penalty weight (> 0).
    base : callable, optional
        The cost's own ``trajectory`` term, added (its ``hessian`` used when it has one,
        else this term offers none and DDP differences the sum).
    """

    def __init__(self, constraints, lam, rho, base=None):
        self.constraints, self.lam, self.rho, self.base = constraints, lam, float(rho), base
        if base is not None and not callable(getattr(base, "hessian", None)):
            self.hessian = None

    def take(self, rows):
        """The term for the trajectories ``rows`` (a slice) of its batch: the same
        constraints, weight and base term, with those trajectories' multipliers."""
        term = AugmentedLagrangian.__new__(AugmentedLagrangian)
        term.__dict__.update(self.__dict__)
        if self.lam.shape[0] > 1:
            term.lam = self.lam[rows]
        return term

    def __call__(self, states, controls):
        X = states[:, 1:]
        c, cx, cu = self.constraints(X, controls)
        lam, rho = self.lam, self.rho
        mu = np.maximum(0.0, lam + rho * c)
        val = ((mu * mu - lam * lam) / (2.0 * rho)).sum(axis=(1, 2))
        gS = np.zeros(states.shape)
        gS[:, 1:] = np.einsum("btk,btkn->btn", mu, cx)
        gU = np.einsum("btk,btkm->btm", mu, cu)
        if self.base is not None:
            v, gs, gu = self.base(states, controls)
            val = val + np.asarray(v, dtype=float)
            if gs is not None:
                gS += gs
            if gu is not None:
                gU += gu
        return val, gS, gU

    def hessian(self, states, controls):
        """Gauss-Newton step-diagonal blocks (see the module docstring), plus the base's."""
        B, T1, n = states.shape
        X = states[:, 1:]
        c, cx, cu = self.constraints(X, controls)
        w = self.rho * (self.lam + self.rho * c > 0)                 # (B, T, K)
        hxx = np.zeros((B, T1, n, n))
        hxx[:, 1:] = np.einsum("btk,btki,btkj->btij", w, cx, cx)
        huu = np.einsum("btk,btki,btkj->btij", w, cu, cu)
        hux = np.zeros((B, T1 - 1, controls.shape[-1], n))
        if self.base is not None:
            a, b, d = self.base.hessian(states, controls)
            hxx, huu, hux = hxx + a, huu + b, hux + d
        return hxx, huu, hux
