"""Control objectives through a frozen model: the lecture's last point.

The weights are fixed and some inputs -- the controls ``u`` (input indices
``control``) -- are the parameters; the other inputs ``x`` (a context or
state) are given.  For one problem with target ``y*``::

    E(u) = 1/2 (y - y*)^T Q (y - y*) + 1/2 (u - u_rest)^T R (u - u_rest)
           + 1/2 rho sum_c v_c^2,        y = y(x, u)
    v_c  = max(0, y_c - hi_c) + min(0, y_c - lo_c)     (only with output_bounds)

``dE/du`` is the back-propagation pass seeded with ``dE/dy = Q (y - y*) + rho v``
and stopped at the (fake) input units, the weight products skipped, plus
``R (u - u_rest)``.  As least squares ``E = 1/2 |r|^2`` with residuals and
Jacobian (``S^T S = Q``, ``S_R^T S_R = R``)::

    r = [ S (y - y*) ;  sqrt(rho) v ;  S_R (u - u_rest) ]
    J = [ S dy/du    ;  sqrt(rho) [v != 0] dy/du ;  S_R ]

where ``dy/du`` is exact: one input-only backward pass per output.

A batch of K independent problems (targets ``(K, n_out)``, inputs ``(K, .)``)
is evaluated together, one forward pass for all of them.  The flat-vector
methods (``__call__``, ``residuals``, ``jacobian``, ``hessp``, ``hess``) then see
one problem in ``K * m`` variables whose E is the sum of the K objectives;
:meth:`ControlObjective.per_problem` and :meth:`ControlObjective.residuals_jacobian`
give the stacked per-problem forms.  :func:`ctrlprop.optimize_controls`
(:mod:`ctrlprop.control_batch`) solves them.
"""

import numpy as np
import scipy.sparse as sp
from scipy.optimize import NonlinearConstraint

from ..core import compiled
from ..core.checks import as_float, check_finite, check_indices, check_nonneg, parse_bounds
from ..core.network import Network
from .metric import Metric

__all__ = ["ControlObjective"]


def _block_diag(B):
    """Stacked blocks (K, r, c) as a block-diagonal CSR matrix (K*r, K*c)."""
    K, r, c = B.shape
    indptr = np.arange(0, K * r * c + 1, c)
    cols = (np.arange(K)[:, None, None] * c + np.arange(c)[None, None, :])
    indices = np.broadcast_to(cols, (K, r, c)).ravel()
    return sp.csr_matrix((B.ravel().copy(), indices, indptr), shape=(K * r, K * c))


class _Work:
    """Private engine buffers (on the given weights) and unit-major scratch arrays for a
    batch of n columns."""

    def __init__(self, plan, weights, n):
        self.n = n
        self.bufs = plan.new_buffers(n, weights)
        self.XT = np.zeros((plan.n_inputs, n))
        self.Y = np.empty((plan.n_out, n))
        self.dY = np.zeros((plan.n_out, n))
        self.seed = np.zeros((plan.n_out, n))
        self.all_rows = False        # XT holds the other inputs of all K problems in order
        self.kernel = None           # ControlObjective's compiled call on these buffers


# ---------------------------------------------------------------- the objective
class ControlObjective:
    """E(u) of controls through a frozen network, in scipy.optimize's vocabulary.

    Parameters
    ----------
    net : Network
        The model.  Its weights and input/output scaling are copied now: later
        changes to ``net`` do not affect the objective.
    target : array_like, shape (n_outputs,) or (K, n_outputs)
        Desired outputs ``y*``; 2-D gives a batch of K problems.
    inputs : array_like, optional
        Values of the non-control inputs: shape ``(n_inputs - m,)`` (in input
        order) or ``(n_inputs,)`` (the control entries are ignored and may be
        NaN), or 2-D ``(K, .)`` per problem.  A 1-D row is shared by all
        problems of a batch.  Omit it when every input is a control.
    control : sequence of int, optional
        Indices of the inputs that are the controls (distinct); default all.
    Q : float or array_like, optional
        Output weights: a scalar, per-output weights ``(n_outputs,)`` or a PSD matrix
        ``(n_outputs, n_outputs)``.  Default 1.  (The same name as the state weight of
        :class:`~ctrlprop.TrajectoryCost`.)
    R : float or array_like
        Control weights: a scalar, ``(m,)`` or a PSD ``(m, m)`` matrix.  Default 0.
    u_rest : array_like, shape (m,) or (K, m), optional
        The control that costs nothing; default 0.
    output_bounds : optional
        Bounds on the outputs in any form of :func:`ctrlprop.core.checks.parse_bounds`
        (``scipy.optimize.Bounds``, one ``(lo, hi)`` pair for all outputs, one pair (or
        None) per output, or ``{output: (lo, hi)}``); None for an open side.  They enter E as the
        quadratic penalty with weight ``penalty`` and are also available as
        exact constraints (:meth:`constraints`).
    penalty : float
        rho >= 0.  With 0 the output bounds are left out of E (use them
        through :meth:`constraints`).
    hessian : {"exact", "gauss-newton"}
        What :meth:`hessp` and :meth:`hess` compute by default.

    Attributes
    ----------
    K, m, n_outputs, n_residuals : int
    control : ndarray of int, shape (m,)
    batched : bool
        True when target or inputs were 2-D.
    """

    def __init__(self, net, target, inputs=None, control=None, Q=None, R=0.0, u_rest=None,
                 output_bounds=None, penalty=1e4, hessian="exact"):
        if not isinstance(net, Network):
            raise TypeError(f"net must be a ctrlprop Network, got {type(net).__name__}")
        n_in, n_out = net.n_inputs, net.n_outputs
        self.net_n_inputs, self.n_outputs = n_in, n_out
        ctl = np.arange(n_in) if control is None else check_indices(control, n_in, "control")
        self.control = ctl
        self.m = m = len(ctl)
        oth = np.setdiff1d(np.arange(n_in), ctl)
        self._oth = oth

        T = check_finite(as_float(target, "target"), "target")
        if T.ndim not in (1, 2) or T.shape[-1] != n_out:
            raise ValueError(f"target must have shape ({n_out},) or (K, {n_out}) for a network "
                             f"with {n_out} outputs, got {T.shape}")
        Xo = self._other_inputs(inputs, n_in, ctl, oth)
        self.batched = T.ndim == 2 or Xo.ndim == 2
        K = max(T.shape[0] if T.ndim == 2 else 1, Xo.shape[0] if Xo.ndim == 2 else 1)
        if T.ndim == 2 and Xo.ndim == 2 and T.shape[0] != Xo.shape[0]:
            raise ValueError(f"target has {T.shape[0]} rows but inputs has {Xo.shape[0]}; "
                             "give one row per problem (or a single shared row)")
        if K == 0:
            raise ValueError("target is empty (0 problems)")
        self.K = K
        self._T = np.ascontiguousarray(np.broadcast_to(T, (K, n_out)).T)      # (n_out, K)
        self._Xo = np.ascontiguousarray(np.broadcast_to(Xo, (K, len(oth))).T)  # (n_oth, K)

        self.Q = Metric(1.0 if Q is None else Q, n_out, "Q", "outputs")
        self.R = Metric(R, m, "R", "controls", drop_zero=True)
        ur = np.zeros(m) if u_rest is None else check_finite(as_float(u_rest, "u_rest"), "u_rest")
        if ur.shape not in ((m,), (K, m)):
            raise ValueError(f"u_rest must have shape ({m},) or ({K}, {m}), got {ur.shape}")
        self._ur = np.ascontiguousarray(np.broadcast_to(ur, (K, m)).T)         # (m, K)

        lo, hi = parse_bounds(output_bounds, n_out, name="output_bounds", what="outputs")
        self._cidx = np.flatnonzero(np.isfinite(lo) | np.isfinite(hi))
        self._clo, self._chi = lo[self._cidx], hi[self._cidx]
        penalty = check_nonneg(penalty, "penalty")
        self.penalty = penalty
        self._n_pen = len(self._cidx) if penalty > 0 else 0
        if hessian not in ("exact", "gauss-newton"):
            raise ValueError(f"hessian must be 'exact' or 'gauss-newton', got {hessian!r}")
        self.hessian = hessian
        self.n_residuals = n_out + self._n_pen + self.R.rows

        # frozen model: a private weight copy, scaling snapshot, buffers per batch size
        self._w = net.weights.copy()
        self._net = net                     # for its structure (the plan) only
        self._plan = net.plan
        self._wts = self._plan.new_weights()
        self._wts.load(self._w)
        self._insc = None if net.input_scaling is None else tuple(
            a.copy() for a in net.input_scaling)
        self._outsc = None if net.output_scaling is None else tuple(
            a.copy() for a in net.output_scaling)
        self._sxc = None if self._insc is None else self._insc[1][ctl][:, None]
        self._sy = None if self._outsc is None else (self._outsc[1][:, None],
                                                     self._outsc[0][:, None])
        c0 = int(ctl[0])
        contiguous = np.array_equal(ctl, np.arange(c0, c0 + m))
        self._cs = slice(c0, c0 + m) if contiguous else ctl
        self._work = {}
        # the compiled one-call value and gradient (no output penalty): Q and R as matrices
        self._kq = np.ascontiguousarray(self.Q.matrix(), dtype=np.float64)
        self._kr = np.empty((0, 0)) if self.R.zero else np.ascontiguousarray(self.R.matrix())
        self._kctl = np.ascontiguousarray(ctl, dtype=np.int64)

    # ------------------------------------------------------------ pickling
    # The problem data are pickled (targets, inputs, weights Q and R, bounds, the captured
    # model weights and scaling, and the network for its structure); the engine's plan,
    # weight holder and work buffers (op lists over views of the work arrays) are rebuilt.
    def __getstate__(self):
        state = self.__dict__.copy()
        for k in ("_plan", "_wts", "_work"):
            del state[k]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._plan = self._net.plan
        self._wts = self._plan.new_weights()
        self._wts.load(self._w)
        self._work = {}

    @staticmethod
    def _other_inputs(inputs, n_in, ctl, oth):
        """The non-control inputs as (n_oth,) or (K, n_oth)."""
        n_oth = len(oth)
        if inputs is None:
            if n_oth:
                raise ValueError(f"inputs is required: the network has {n_in} inputs and "
                                 f"control lists {len(ctl)}; give the other {n_oth}")
            return np.zeros(0)
        X = as_float(inputs, "inputs")
        if X.ndim not in (1, 2) or X.shape[-1] not in (n_oth, n_in):
            raise ValueError(f"inputs must have shape ({n_oth},) or ({n_in},) (or 2-D with one "
                             f"row per problem), got {X.shape}")
        if X.shape[-1] == n_in and n_in != n_oth:
            X = X[..., oth]
        if X.ndim == 2 and X.shape[0] == 0:
            raise ValueError("inputs is empty (0 problems)")
        return check_finite(X, "inputs")

    # ------------------------------------------------------------ engine plumbing
    def _ws(self, n):
        """The workspace for n columns (cached by size)."""
        w = self._work.get(n)
        if w is None:
            if len(self._work) >= 24:
                self._work.pop(next(iter(self._work)))
            w = self._work[n] = _Work(self._plan, self._wts, n)
        return w

    def _forward(self, UT, rows=None, cap=None):
        """Forward pass of controls UT (m, n) for problems ``rows`` (None = all K).

        Returns (workspace, raw outputs (n_out, n), errors y - y* (n_out, n)).
        """
        n = UT.shape[1]
        ws = self._ws(cap or n)
        X = ws.XT
        if rows is None:                      # n == K: all problems in order
            if not ws.all_rows:
                X[self._oth, :n] = self._Xo
                ws.all_rows = True
            T = self._T
        else:
            X[self._oth, :n] = self._Xo[:, rows]
            ws.all_rows = False
            T = self._T[:, rows]
        X[self._cs, :n] = UT
        self._plan.run_forward(ws.bufs, X, self._insc)
        Y = ws.Y
        if self._sy is None:
            np.copyto(Y, ws.bufs.Y)
        else:
            np.multiply(ws.bufs.Y, self._sy[0], out=Y)
            Y += self._sy[1]
        Yn = Y[:, :n]
        return ws, Yn, Yn - T

    def _violation(self, Y):
        """v (n_c, n) of the bounded outputs: distance above hi (+) or below lo (-)."""
        Yc = Y[self._cidx]
        return (np.maximum(Yc - self._chi[:, None], 0.0)
                + np.minimum(Yc - self._clo[:, None], 0.0))

    def _energy_cot(self, Y, e, UT, rows):
        """(E (n,), dE/dy (n_out, n), du = u - u_rest (m, n)) at a forward pass."""
        # E = 1/2 e^T Q e + 1/2 rho |v|^2 + 1/2 du^T R du,   e = y - y*, du = u - u_rest
        # dE/dy = Q e + rho v   (v scattered to the bounded outputs)
        We = self.Q.apply(e)
        E = 0.5 * (e * We).sum(axis=0)
        if self._n_pen:
            v = self._violation(Y)
            E += 0.5 * self.penalty * np.einsum("jk,jk->k", v, v)
            We[self._cidx] += self.penalty * v
        du = UT - (self._ur if rows is None else self._ur[:, rows])
        if not self.R.zero:
            E += 0.5 * np.einsum("ik,ik->k", du, self.R.apply(du))
        return E, We, du

    def _grad_inputs(self, ws, n):
        """dE/du (m, n) in raw units from the input deltas after a backward pass."""
        G = ws.bufs.G[0][self._cs, :n]
        return G / self._sxc if self._sxc is not None else G.copy()

    def _value_grad(self, UT, rows=None, cap=None, grad=True):
        """(E (n,), dE/du (m, n) or None) for controls UT (m, n)."""
        ws, Y, e = self._forward(UT, rows, cap)
        E, dY, du = self._energy_cot(Y, e, UT, rows)
        if not grad:
            return E, None
        n = UT.shape[1]
        ws.dY[:, :n] = dY
        self._plan.run_backward(ws.bufs, ws.dY, self._outsc, want_w=False, want_x=True)
        g = self._grad_inputs(ws, n)
        if not self.R.zero:
            g += self.R.apply(du)
        return E, g

    def _jac_outputs(self, ws, n):
        """Exact dy/du (n, n_out, m) after a forward pass: one input-only backward per output."""
        Jy = np.empty((n, self.n_outputs, self.m))
        s = ws.seed
        for j in range(self.n_outputs):
            s[j] = 1.0
            self._plan.run_backward(ws.bufs, s, self._outsc, want_w=False, want_x=True)
            Jy[:, j, :] = self._grad_inputs(ws, n).T
            s[j] = 0.0
        return Jy

    def _rj(self, U, rows=None, cap=None, jac=True):
        """Residuals (n, n_res) and Jacobian (n, n_res, m) or None for controls U (n, m)."""
        # r = [S e; sqrt(rho) v; S_R du],  J = [S dy/du; sqrt(rho) [v != 0] dy/du; S_R]
        UT = U.T
        ws, Y, e = self._forward(UT, rows, cap)
        n, no, m = U.shape[0], self.n_outputs, self.m
        r = np.empty((n, self.n_residuals))
        W = self.Q
        r[:, :no] = (W.factor @ e).T
        p0, p1 = no, no + self._n_pen
        if self._n_pen:
            v = self._violation(Y)
            r[:, p0:p1] = np.sqrt(self.penalty) * v.T
        if self.R.rows:
            du = UT - (self._ur if rows is None else self._ur[:, rows])
            r[:, p1:] = (self.R.factor @ du).T
        if not jac:
            return r, None
        Jy = self._jac_outputs(ws, n)
        J = np.empty((n, self.n_residuals, m))
        if W.diag is not None:
            np.multiply(Jy, np.sqrt(W.diag)[None, :, None], out=J[:, :no])
        else:
            np.matmul(W.factor, Jy, out=J[:, :no])
        if self._n_pen:
            J[:, p0:p1] = np.sqrt(self.penalty) * (v.T != 0)[:, :, None] * Jy[:, self._cidx]
        if self.R.rows:
            J[:, p1:] = self.R.factor
        return r, J

    def columns_residuals_jacobian(self, U, rows=None, cap=None):
        """Residuals (N, n_residuals) and Jacobians (N, n_residuals, m) of N columns of
        controls U (N, m), column i being problem ``rows[i]`` (default: N = K, in order);
        ``cap`` >= N reuses the work buffers of that size (for shrinking active sets)."""
        return self._rj(np.asarray(U, dtype=np.float64), rows, cap)

    @property
    def n_controls(self):
        """Number of controls m."""
        return self.m

    @property
    def n_inputs(self):
        """Inputs of the network (controls and the others)."""
        return self.net_n_inputs

    @property
    def n_output_bounds(self):
        """Number of bounded outputs."""
        return len(self._cidx)

    def _as_U(self, u, name="u"):
        """u (flat K*m, or (K, m) / (m,)) as a (K, m) array, checked."""
        a = as_float(u, name)
        K, m = self.K, self.m
        if a.size != K * m or a.ndim > 2 or (a.ndim == 2 and a.shape != (K, m)):
            want = f"({K * m},) or ({K}, {m})" if self.batched else f"({m},)"
            raise ValueError(f"{name} must have shape {want}, got {a.shape}")
        return a.reshape(self.K, self.m)

    # ------------------------------------------------------------ scipy vocabulary
    def __call__(self, u):
        """E and its gradient, for ``scipy.optimize.minimize(obj, u0, jac=True)``.

        Parameters
        ----------
        u : array_like, shape (m,); for a batch (K*m,) or (K, m)

        Returns
        -------
        E : float
            The objective (summed over the problems of a batch).
        grad : ndarray, shape of u
        """
        if (type(u) is np.ndarray and u.dtype == np.float64 and u.ndim == 1
                and u.size == self.K * self.m and u.flags.c_contiguous):
            U = u.reshape(self.K, self.m)             # the common case, checked cheaply
        else:
            U = self._as_U(u)
        if not self._n_pen and compiled.ENABLED:
            ws = self._ws(self.K)
            if ws.bufs.ck is not None:                    # one compiled call (small batches)
                if not ws.all_rows:
                    ws.XT[self._oth] = self._Xo
                    ws.all_rows = True
                if ws.kernel is None:
                    ws.kernel = ws.bufs.ck.control_call(
                        ws.bufs, ws.XT, self._kctl, self._insc, self._T, self._kq,
                        self._outsc, self._kr, self._ur)
                g = np.empty((self.K, self.m))
                ws.bufs.gen += 1
                kernel, args = ws.kernel
                E = kernel(*args, U if U.flags.c_contiguous else np.ascontiguousarray(U), g)
                return E, g.reshape(np.shape(u))
        E, g = self._value_grad(U.T)
        return float(E.sum()), g.T.reshape(np.shape(u))

    def value(self, u):
        """E only (a forward pass, no backward), summed over a batch: float."""
        U = self._as_U(u)
        return float(self._value_grad(U.T, grad=False)[0].sum())

    def per_problem(self, U, grad=True):
        """Per-problem objectives and gradients of a batch.

        Parameters
        ----------
        U : array_like, shape (K, m)  (or (m,) for a single problem)

        Returns
        -------
        E : ndarray, shape (K,)
        grad : ndarray, shape (K, m), or None when ``grad=False``
        """
        U = self._as_U(U, "U")
        E, g = self._value_grad(U.T, grad=grad)
        return E, (None if g is None else g.T.copy())

    def outputs(self, u):
        """Model outputs at u: shape (n_outputs,), or (K, n_outputs) for a batch."""
        U = self._as_U(u)
        Y = self._forward(U.T)[1].T.copy()
        return Y if self.batched else Y[0]

    def residuals(self, u):
        """Residuals r with E = 1/2 |r|^2, for ``scipy.optimize.least_squares``.

        Returns
        -------
        ndarray, shape (n_residuals,); (K * n_residuals,) for a batch
        """
        return self._rj(self._as_U(u), jac=False)[0].ravel()

    def jacobian(self, u):
        """Exact dr/du: ndarray (n_residuals, m); for a batch a block-diagonal CSR
        matrix (K * n_residuals, K * m)."""
        J = self._rj(self._as_U(u))[1]
        return _block_diag(J) if self.batched else J[0]

    def residuals_jacobian(self, U):
        """Per-problem residuals and Jacobians of a batch.

        Parameters
        ----------
        U : array_like, shape (K, m)

        Returns
        -------
        r : ndarray, shape (K, n_residuals)
        J : ndarray, shape (K, n_residuals, m)
        """
        return self._rj(self._as_U(U, "U"))

    def _trace_cot(self, U):
        """(trace with private buffers, dE/dY (K, n_out), curvature of the output loss)."""
        X = np.empty((self.K, self.net_n_inputs))
        X[:, self._oth] = self._Xo.T
        X[:, self.control] = U
        tr = self._plan.forward(self._w, X, self._insc, self._outsc, keep=True)
        Y = tr.outputs().T
        E, dY, _ = self._energy_cot(Y, Y - self._T, U.T, None)
        act = (self._violation(Y) != 0) if self._n_pen else None

        def curvature(RY):        # R{dE/dy} = W RY + rho [v != 0] RY
            RYT = RY.T
            out = self.Q.apply(RYT)
            if act is not None:
                out[self._cidx] += self.penalty * act * RYT[self._cidx]
            return out.T
        return tr, dY.T, curvature

    def _hessp_stacked(self, U, P, kind):
        """H p per problem: U, P (K, m) -> (K, m)."""
        kind = self.hessian if kind is None else kind
        if kind == "gauss-newton":
            _, J = self._rj(U)
            return np.einsum("kri,krj,kj->ki", J, J, P)
        if kind != "exact":
            raise ValueError(f"kind must be 'exact' or 'gauss-newton', got {kind!r}")
        tr, dY, curv = self._trace_cot(U)
        VX = np.zeros((U.shape[0], self.net_n_inputs))
        VX[:, self.control] = P
        H = tr.hvp(dY, curv, v_x=VX, wrt="inputs")[:, self.control]
        if not self.R.zero:
            H += self.R.apply(P.T).T
        return H

    def hessp(self, u, p, kind=None):
        """Hessian of E times p, for Newton-CG / trust-ncg / trust-krylov / trust-constr.

        Parameters
        ----------
        u, p : array_like, shape (m,); for a batch (K*m,) or (K, m)
        kind : {"exact", "gauss-newton"}, optional
            Exact (Pearlmutter's R-operator through the network) or the
            Gauss-Newton ``J^T J``; default the objective's ``hessian``.

        Returns
        -------
        ndarray, shape of p
        """
        U, P = self._as_U(u), self._as_U(p, "p")
        return self._hessp_stacked(U, P, kind).reshape(np.shape(p))

    def hess(self, u, kind=None):
        """Full Hessian of E: ndarray (m, m); for a batch a block-diagonal CSR (K*m, K*m)."""
        U = self._as_U(u)
        K, m = self.K, self.m
        kind = self.hessian if kind is None else kind
        if kind == "gauss-newton":
            J = self._rj(U)[1]
            H = np.einsum("kri,krj->kij", J, J)
        else:                               # m Hessian-vector products, as one batch of K*m
            big = _Tiled(self, m)
            P = np.tile(np.eye(m), (K, 1))
            H = big.hessp(np.repeat(U, m, axis=0), P, kind).reshape(K, m, m)
        return _block_diag(H) if self.batched else H[0]

    def constraints(self, hessian=True):
        """The output bounds as an exact ``scipy.optimize.NonlinearConstraint``.

        Single problem.  ``jac`` is the exact dy/du of the bounded outputs and
        ``hess(u, v)`` the exact ``sum_c v_c d2y_c/du2`` (R-operator); pass
        ``hessian=False`` to leave it out (SLSQP does not use it).
        """
        if self.batched:
            raise ValueError("constraints() is for a single problem (this objective holds "
                             f"{self.K}); optimize_controls solves a batch one problem at a "
                             "time with SLSQP / trust-constr")
        if not len(self._cidx):
            raise ValueError("the objective has no output_bounds")
        c = self._cidx

        def fun(u):
            return self.outputs(u)[c]

        def jac(u):
            ws, _, _ = self._forward(self._as_U(u).T)
            return self._jac_outputs(ws, 1)[0][c]

        def hess(u, v):           # sum_c v_c d2y_c/du2: m R-operator products in one batch
            m = self.m
            X = np.empty((m, self.net_n_inputs))
            X[:, self._oth] = self._Xo.T
            X[:, self.control] = self._as_U(u)
            tr = self._plan.forward(self._w, X, self._insc, self._outsc, keep=True)
            dY = np.zeros((m, self.n_outputs))
            dY[:, c] = v
            VX = np.zeros_like(X)
            VX[:, self.control] = np.eye(m)
            H = tr.hvp(dY, np.zeros_like, v_x=VX, wrt="inputs")[:, self.control]
            return 0.5 * (H + H.T)
        if not hessian:
            return NonlinearConstraint(fun, self._clo, self._chi, jac=jac)
        return NonlinearConstraint(fun, self._clo, self._chi, jac=jac, hess=hess)

    def take(self, problems):
        """The objective of the problems ``problems`` (indices or a slice) of this batch, as
        its own batched ControlObjective (it shares the frozen model; pickling it ships
        only those problems' data)."""
        return _Subset(self, problems)

    def single(self):
        """A single-problem objective sharing this one's frozen model; its ``select(k)``
        makes it problem k of this batch (no copies of the model are made)."""
        return _Single(self)

    def output_violation(self, Y):
        """Largest violation of the output bounds per problem: Y (K, n_out) -> (K,)."""
        Y = np.atleast_2d(Y)
        if not len(self._cidx):
            return np.zeros(Y.shape[0])
        return np.abs(self._violation(Y.T)).max(axis=0)

    def __repr__(self):
        return (f"ControlObjective(K={self.K}, m={self.m}, control={self.control.tolist()}, "
                f"n_outputs={self.n_outputs}, n_residuals={self.n_residuals})")


class _Tiled(ControlObjective):
    """The objective's problems each repeated ``reps`` times (shares the frozen model)."""

    def __init__(self, base, reps):
        self.__dict__.update(base.__dict__)
        self.K = base.K * reps
        self.batched = True
        self._T = np.repeat(base._T, reps, axis=1)
        self._Xo = np.repeat(base._Xo, reps, axis=1)
        self._ur = np.repeat(base._ur, reps, axis=1)
        self._work = {}


class _Subset(ControlObjective):
    """Some problems of a batch objective (shares the frozen model): :meth:`take`."""

    def __init__(self, base, problems):
        self.__dict__.update(base.__dict__)
        idx = np.arange(base.K)[problems]
        if idx.size == 0:
            raise ValueError(f"take: no problems selected by {problems!r} of {base.K}")
        self.K, self.batched = idx.size, True
        self._T, self._Xo, self._ur = (np.ascontiguousarray(a[:, idx])
                                       for a in (base._T, base._Xo, base._ur))
        self._work = {}


class _Single(ControlObjective):
    """One problem of a batch objective at a time (shares the frozen model): :meth:`select`."""

    def __init__(self, base):
        self.__dict__.update(base.__dict__)
        self._base = base
        self.K, self.batched, self._work = 1, False, {}

    def select(self, k):
        """Make this the objective of problem k of the base (returns itself)."""
        b = self._base
        self._T, self._Xo, self._ur = b._T[:, k:k + 1], b._Xo[:, k:k + 1], b._ur[:, k:k + 1]
        for w in self._work.values():
            w.all_rows = False
            w.kernel = None          # its arguments hold the previous problem's arrays
        return self
