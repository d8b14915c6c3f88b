"""Rollouts and BPTT through an ensemble dynamics model, with the expected cost over members.

Notation: E members ``F_e``, B candidate control sequences ``u_{0..T-1}`` (one per
trajectory of the batch), T steps.  Two ways to propagate (``Dynamics(propagation=)``):

``"members"`` (PETS's TS-inf with one particle per member: every candidate is rolled out
under every member, each member following its own trajectory)::

    x_{t+1}^e = F_e(x_t^e, u_t),   x_0^e = x_0
    J(u) = 1/E sum_e c(x^e, u) + w P,   P = sum_{t=1..T} sum_i lam_i Var_e(x_{t,i}^e)

``"mean"`` (the members' mean prediction is the next state)::

    y_t^e = F_e(x_t, u_t),   x_{t+1} = 1/E sum_e y_t^e
    J(u) = c(x, u) + w P,   P = sum_{t=0..T-1} sum_i lam_i Var_e(y_{t,i}^e)

``Var_e`` is the population variance over the members (``1/E sum_e (y^e - ybar)^2``) and
``w lam`` the ``disagreement`` weight (a number, or one per state).  Its gradient is
``dP/dy^e = 2 lam (y^e - ybar) / E``.  BPTT, for t = T-1 .. 0 (internal details as in
:mod:`ctrlprop.objectives.trajectory`; ``G_e`` the cotangent seeded at member e's outputs,
``(gx_e, gu_e)`` the deltas of its input units)::

    members:  G_e = lambda_{t+1}^e              lambda_t^e = c_t^e + gx_e (+ lambda_{t+1}^e)
    mean:     G_e = lambda_{t+1} / E + w dP/dy_t^e        lambda_t = c_t + sum_e gx_e (+ lambda_{t+1})
    dJ/du_t = dc/du_t + sum_e gu_e

(the bracket with a residual model).  Each step is one forward (and one backward) pass of
the ensemble's stacked level plan over all E x B trajectories.
"""

import numpy as np

from ..core.checks import as_float, check_finite
from .unroll import Scales

__all__ = ["EnsembleUnroll", "PROPAGATIONS", "check_disagreement"]

PROPAGATIONS = ("members", "mean")


def check_disagreement(w, n):
    """The disagreement weight as a float64 (n,) array (a number or n non-negative numbers)."""
    if isinstance(w, (bool, np.bool_)):
        raise TypeError(f"disagreement must be a number or {n} numbers, got {w!r}")
    a = check_finite(as_float(w, "disagreement"), "disagreement")
    if a.ndim == 0:
        a = np.full(n, float(a))
    if a.shape != (n,) or (a < 0).any():
        raise ValueError(f"disagreement must be a non-negative number or ({n},) non-negative "
                         f"weights (one per state), got {w!r:.80}")
    return a


class EnsembleUnroll:
    """T steps of an ensemble Dynamics for B candidates (see the module docstring).

    The cost is evaluated on ``n_paths`` trajectories: E * B (members, column ``e * B + b``)
    or B (mean).  :meth:`combine` turns the per-path costs and cost gradients into the
    per-candidate expected cost plus the disagreement penalty.
    """

    def __init__(self, model, T, B):
        ens = model.net
        self.model, self.ens, self.T, self.B = model, ens, T, B
        self.E = E = ens.size
        self.n, self.m = n, m = model.n_states, model.n_controls
        self.members = model.propagation == "members"
        self.Ep = E if self.members else 1                  # state copies per candidate
        self.n_paths = self.Ep * B
        plan = ens.plan_for(model.dtype)        # float32 buffers for Dynamics(dtype=float32)
        self.wts = plan.new_weights()
        self.wts.load(ens.weights)
        self._W = ens.weights.copy()
        self.sc = Scales(ens)                               # columns, rebuilt by sync
        self.bufs = [plan.new_buffers(B, self.wts) for _ in range(T)]
        self.X = np.zeros((T + 1, self.Ep, n, B))           # raw states
        self.Yp = np.zeros((T, E, n, B))                    # raw member predictions
        self.U = np.zeros((T, m, B))
        self.exo = None
        self.lam = np.zeros((T + 1, self.Ep, n, B))
        self.GU = np.zeros((T, m, B))
        self._G = np.empty((E, n, B))                       # output cotangents of a step
        self._gx = np.empty((E, n, B))                      # state deltas of a step, raw
        self._gP = None
        self._x0 = np.zeros((B, n))

    def __getstate__(self):
        return dict(model=self.model, T=self.T, B=self.B, x0=self._x0, exo=self.exo,
                    U=self.U.copy())

    def __setstate__(self, state):
        self.__init__(state["model"], state["T"], state["B"])
        self.set_x0(state["x0"])
        self.set_exo(state["exo"])
        self.set_controls(state["U"])

    # ------------------------------------------------------------ inputs
    def sync(self):
        """Pick up new member weights or scaling; True if either changed (the raw states,
        controls and exogenous inputs are kept, so nothing else needs redoing)."""
        ens = self.ens
        changed = (ens.input_scaling is not self.sc.key[0]
                   or ens.output_scaling is not self.sc.key[1])
        if changed:
            self.sc = Scales(ens)
        if not np.array_equal(self._W, ens.weights):
            self._W = ens.weights.copy()
            self.wts.load(self._W)
            changed = True
        return changed

    def set_x0(self, X0):
        """Initial states, raw (B, n)."""
        self._x0 = np.array(X0, dtype=np.float64)
        self.X[0] = self._x0.T

    def set_controls(self, U):
        """Controls, raw (T, m, B) (or broadcastable)."""
        self.U[...] = U

    def set_exo(self, E):
        """Exogenous inputs, raw, broadcastable to (T, e, B); None without any."""
        self.exo = E

    def controls(self):
        return self.U

    # ------------------------------------------------------------ forward
    def forward(self):
        """Roll all E x B trajectories (members) or the B mean trajectories out."""
        n, m = self.n, self.m
        sc = self.sc
        mx, sx, my, sy = sc.mx, sc.sx, sc.my, sc.sy
        res = self.model.residual
        Uin = (self.U - mx[n:n + m]) / sx[n:n + m]                     # (T, m, B)
        Ein = None
        if self.exo is not None:
            Ein = (np.broadcast_to(self.exo, (self.T,) + self.exo.shape[1:2] + (self.B,))
                   - mx[n + m:]) / sx[n + m:]
        for t, b in enumerate(self.bufs):
            xin = b.Ov[0]                                              # (E, ni, B)
            np.subtract(self.X[t], mx[:n], out=xin[:, :n])
            xin[:, :n] /= sx[:n]
            xin[:, n:n + m] = Uin[t]
            if Ein is not None:
                xin[:, n + m:] = Ein[t]
            b.run_forward()
            Y = self.Yp[t]
            np.multiply(b.Y, sy, out=Y)
            Y += my
            if res:
                Y += self.X[t]
            if self.members:
                self.X[t + 1] = Y
            else:
                np.mean(Y, axis=0, out=self.X[t + 1, 0])

    def states(self):
        """Raw states of the paths, (T+1, n, n_paths) (column e * B + b)."""
        return self.X.transpose(0, 2, 1, 3).reshape(self.T + 1, self.n, self.n_paths)

    def member_states(self):
        """Raw states (Ep, B, T+1, n): per member (members) or the one mean path."""
        return self.X.transpose(1, 3, 0, 2).copy()

    def mean_states(self):
        """Raw states averaged over the members, (T+1, n, B)."""
        return self.X.mean(axis=1)

    def path_controls(self, U):
        """Controls (T, m, B) repeated for the paths: (T, m, n_paths)."""
        return np.tile(U, (1, 1, self.Ep)) if self.Ep > 1 else U

    # ------------------------------------------------------------ the expected cost
    def penalty(self, grad=True):
        """Disagreement ``P`` per candidate (B,) and its gradient dP/dy (T, E, n, B) (P
        alone without ``grad``)."""
        lam = self.model.disagreement
        Y = self.Yp
        dev = Y - Y.mean(axis=1, keepdims=True)
        gP = (2.0 / self.E) * lam[:, None] * dev if grad else None
        P = np.einsum("tenb,n->b", np.square(dev, out=dev), lam) / self.E
        return (P, gP) if grad else P

    def combine_values(self, vals):
        """Per-path costs (n_paths,) -> per-candidate expected cost plus penalty (B,):
        :meth:`combine` without the gradients."""
        v = vals.reshape(self.Ep, self.B).mean(axis=0)
        if self.model.disagreement.any():
            v = v + self.penalty(grad=False)
        return v

    def combine(self, vals, CX, CU):
        """Per-path costs (n_paths,), dJ/dx (T+1, n, n_paths) and dJ/du (T, m, n_paths) ->
        per-candidate expected cost plus penalty (B,) and dJ/du (T, m, B); CX is reweighted in
        place and the penalty's gradient kept for :meth:`backward`."""
        B, Ep, T, n = self.B, self.Ep, self.T, self.n
        v = vals.reshape(Ep, B).mean(axis=0)
        if Ep > 1:
            CX /= Ep
        CUb = CU.reshape(T, -1, Ep, B).sum(axis=2) / Ep
        self._gP = None
        if self.model.disagreement.any():
            P, gP = self.penalty()
            v = v + P
            if self.members:           # y_t^e is x_{t+1}^e: the gradient is a state cost
                CX[1:] += gP.transpose(0, 2, 1, 3).reshape(T, n, Ep * B)
            else:
                self._gP = gP
        return v, CUb

    # ------------------------------------------------------------ backward
    def backward(self, CX):
        """BPTT from dJ/dx of the paths CX (T+1, n, n_paths), raw (after :meth:`combine`)."""
        T, B, n, m, E, Ep = self.T, self.B, self.n, self.m, self.E, self.Ep
        sx, sy = self.sc.sx, self.sc.sy
        res = self.model.residual
        C = CX.reshape(T + 1, n, Ep, B).transpose(0, 2, 1, 3)          # (T+1, Ep, n, B)
        lam = self.lam
        lam[T] = C[T]
        self.GU.fill(0.0)
        G, gx = self._G, self._gx
        for t in range(T - 1, -1, -1):
            if self.members:
                np.multiply(lam[t + 1], sy, out=G)
            else:
                np.multiply(lam[t + 1], sy / E, out=G)
                if self._gP is not None:
                    G += self._gP[t] * sy
            b = self.bufs[t]
            b.run_backward(G, False, True)
            g0 = b.G[0]                                                # (E, ni, B) internal
            np.divide(g0[:, :n], sx[:n], out=gx)
            self.GU[t] += g0[:, n:n + m].sum(axis=0) / sx[n:n + m]
            if self.members:
                np.add(C[t], gx, out=lam[t])
            else:
                np.add(C[t, 0], gx.sum(axis=0), out=lam[t, 0])
            if res:
                lam[t] += lam[t + 1]

    def grad_controls(self):
        """dJ/du_t through the dynamics, raw (T, m, B)."""
        return self.GU

    def grad_x0(self, CX):
        """dJ/dx_0, raw (n, B) (after backward): every path starts at x_0."""
        return self.lam[0].sum(axis=0)

    def step_jacobians(self):
        raise ValueError("step Jacobians (least-squares methods, iLQR/DDP) are not offered for "
                         "an ensemble model; use a gradient method or a sampling planner")
