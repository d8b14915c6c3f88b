"""Quadratic cost weights: one validation and one factorisation for every objective.

A weight ``M`` of dimension n enters a cost as ``1/2 e^T M e``.  It is given as a scalar
(``M = c I``), a vector (the diagonal) or an (n, n) matrix, and must be a symmetric
positive semi-definite matrix: :class:`Metric` checks that, keeps a diagonal matrix as its
diagonal, and provides ``M V`` and a square root ``C`` with ``C^T C = M`` (the residual form
``1/2 |C e|^2``).  :class:`~ctrlprop.ControlObjective` (``Q``, ``R``) and
:class:`~ctrlprop.TrajectoryCost` (``Q``, ``Qf``, ``R``, ``S``) both use it.
"""

import numpy as np

__all__ = ["Metric"]

# The tolerance rule, relative to the weight's own scale s = max_ij |M_ij| (so that a weight
# and any positive multiple of it are accepted or rejected together):
#
#     symmetric               max_ij |M_ij - M_ji|  <=  TOL_SYMMETRY s
#     positive semi-definite  lambda_min(M_sym)     >= -TOL_PSD s,    M_sym = (M + M^T) / 2
#
# Round-off in forming a PSD matrix (A A^T, an inverse, a sum of outer products) leaves an
# asymmetry and negative eigenvalues of a few eps * n * s, far inside both thresholds.  The
# symmetric part M_sym is the weight used (1/2 e^T M e only sees it), and its square root
# clips the tolerated negative eigenvalues to 0:
#
#     M_sym = V diag(lambda) V^T   ->   C = diag(sqrt(max(lambda, 0))) V^T,   C^T C ~= M_sym
#
# (for a diagonal weight C = diag(sqrt(m_j)), exactly).
TOL_SYMMETRY = 1e-12
TOL_PSD = 1e-10


class Metric:
    """A symmetric positive semi-definite weight ``M`` of dimension n.

    Parameters
    ----------
    value : float, array_like (n,) or (n, n)
        A scalar (``M = value * I``), the diagonal, or the matrix; see :meth:`validate`
        for the accepted values.
    n : int
        The dimension.
    name : str
        The weight's name in error messages (``"Q"``, ``"R"``, ...).
    what : str
        What the n entries are, for error messages (``"states"``, ``"controls"``).
    drop_zero : bool
        A zero weight's :attr:`factor` has no rows (its residual rows are left out);
        otherwise it has n zero rows.

    Attributes
    ----------
    diag : ndarray, shape (n,), or None
        The diagonal, when M is diagonal (a scalar, a vector, or a diagonal matrix).
    full : ndarray, shape (n, n), or None
        The (symmetrised) matrix, when M is not diagonal.
    zero : bool
        M = 0.
    factor : ndarray, shape (rows, n)
        C with ``C^T C = M`` (rows = n, or 0 for a zero weight with ``drop_zero``).
    rows : int
    """

    def __init__(self, value, n, name, what="entries", drop_zero=False):
        a = self.validate(value, name)
        self.name, self.n = name, n
        if (a.ndim == 1 and a.shape != (n,)) or (a.ndim == 2 and a.shape != (n, n)):
            kind = "vector" if a.ndim == 1 else "matrix"
            raise ValueError(f"{name} must be a scalar, a length-{n} vector (diagonal) or a "
                             f"({n}, {n}) matrix for {n} {what}; got a {kind} of shape "
                             f"{a.shape}")
        if a.ndim == 2 and not np.any(a - np.diag(np.diag(a))):
            a = np.diag(a).copy()                      # a diagonal matrix: its diagonal
        if a.ndim < 2:
            self.diag, self.full = np.broadcast_to(a, (n,)).copy(), None
            self._col = self.diag[:, None]
            C = np.diag(np.sqrt(self.diag))
        else:
            self.diag, self.full = None, a
            lam, V = np.linalg.eigh(a)
            C = np.sqrt(np.clip(lam, 0.0, None))[:, None] * V.T
        self.zero = not np.any(a)
        self.factor = C[:0] if (self.zero and drop_zero) else C
        self.rows = self.factor.shape[0]

    @staticmethod
    def validate(value, name):
        """A weight checked without its dimension: a float array of 0, 1 or 2 dimensions.

        Parameters
        ----------
        value : float, array_like (k,) or (k, k)
        name : str
            Used in the error messages.

        Returns
        -------
        ndarray
            ``value`` as float64; a matrix is returned symmetrised, ``(M + M^T) / 2``.

        Raises
        ------
        TypeError
            For a non-numeric value (or a bool).
        ValueError
            For NaN or inf, more than two dimensions, a negative scalar or vector entry,
            a non-square matrix, or a matrix that is not symmetric positive semi-definite
            within the tolerance rule (see the comment above the class).
        """
        if isinstance(value, (bool, np.bool_)):
            raise TypeError(f"{name} must be a number, vector or matrix, got {value!r}")
        try:
            a = np.array(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"{name} must be a number, vector or matrix, got "
                            f"{type(value).__name__}") from None
        if a.ndim > 2:
            raise ValueError(f"{name} must be a scalar, a vector (diagonal) or a matrix, "
                             f"got an array of shape {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name} contains NaN or inf")
        if a.ndim < 2:
            if np.any(a < 0):
                raise ValueError(f"{name} must be non-negative (a cost weight), got "
                                 f"{a.tolist()}")
            return a
        if a.shape[0] != a.shape[1]:
            raise ValueError(f"{name} must be a square matrix, got shape {a.shape}")
        s = float(np.abs(a).max()) if a.size else 0.0
        asym = float(np.abs(a - a.T).max()) if a.size else 0.0
        if asym > TOL_SYMMETRY * s:
            raise ValueError(f"{name} must be a symmetric matrix: it differs from its "
                             f"transpose by {asym:.3g}, more than {TOL_SYMMETRY:g} * "
                             f"max|{name}| = {TOL_SYMMETRY * s:.3g}")
        a = 0.5 * (a + a.T)
        lam = np.linalg.eigvalsh(a)[0] if a.size else 0.0
        if lam < -TOL_PSD * s:
            raise ValueError(f"{name} must be positive semi-definite (a cost weight); its "
                             f"smallest eigenvalue is {lam:.3g}, below -{TOL_PSD:g} * "
                             f"max|{name}| = {-TOL_PSD * s:.3g}")
        return a

    def apply(self, V):
        """``M V`` along the second-to-last axis: V (..., n, K) -> (..., n, K)."""
        return self._col * V if self.full is None else np.matmul(self.full, V)

    def matrix(self):
        """M as an (n, n) array."""
        return np.diag(self.diag) if self.full is None else self.full

    def same_as(self, other):
        """True when ``other`` (a Metric) is the same matrix."""
        return np.array_equal(self.matrix(), other.matrix())

    def __repr__(self):
        kind = "zero" if self.zero else ("diagonal" if self.full is None else "matrix")
        return f"Metric({self.name}, n={self.n}, {kind})"
