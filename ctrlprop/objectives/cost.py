"""The trajectory cost: quadratic terms toward a goal, plus the user's own differentiable terms.

For states ``x_0 .. x_T`` and controls ``u_0 .. u_{T-1}``, with the lecture's 1/2 (the
convention of every ctrlprop objective and of ``scipy.optimize.least_squares``, so that a
weight of 1 means the same here as in :class:`~ctrlprop.ControlObjective`)::

    J = 1/2 sum_{t=1}^{T-1} (x_t - g_t)^T Q  (x_t - g_t)      running state cost (not at x_0)
      + 1/2               (x_T - g_T)^T Qf (x_T - g_T)      terminal state cost
      + 1/2 sum_{t=0}^{T-1}  u_t^T R u_t                      control cost
      + 1/2 sum_{t=1}^{T-1} (u_t - u_{t-1})^T S (u_t - u_{t-1})   control-rate cost
      + sum_b [running(X, U) + terminal(x_T) + trajectory(states, controls)]   (optional)

The custom terms are added as they are (no factor is applied to them).

``Q, Qf`` (n x n) and ``R, S`` (m x m) are each a scalar (times the identity), a vector
(diagonal) or a symmetric positive semi-definite matrix; ``Qf`` defaults to ``Q``.

Custom terms are callables evaluated on the whole batch of trajectories at once
(``B`` trajectories; ``B = 1`` for a single one), each returning its value and gradient:

* ``running(X, U) -> (value, grad_x, grad_u)`` with ``X`` (B, T, n) the states
  ``x_0 .. x_{T-1}`` and ``U`` (B, T, m) the controls: the cost sum_t l(x_t, u_t).
  ``value`` is (B, T) (per step, summed here) or (B,); ``grad_x`` (B, T, n) and
  ``grad_u`` (B, T, m), either may be None for zero.
* ``terminal(xT) -> (value, grad)`` with ``xT`` (B, n); ``value`` (B,), ``grad`` (B, n).
* ``trajectory(states, controls) -> (value, grad_states, grad_controls)`` with
  ``states`` (B, T+1, n) and ``controls`` (B, T, m); ``value`` (B,), gradients of
  the shapes of the inputs (either may be None).

The arrays handed to these callables are read-only views: copy them to modify.

A term may also have a ``value`` method taking the same arguments and returning the value
alone (as :class:`ctrlprop.envs.TaskCost` does): where only costs are needed (the sampling
planners' candidates, iLQR/DDP's line search, reported costs) it is called instead, and no
gradient is built.
"""

import numpy as np

from .metric import Metric

__all__ = ["TrajectoryCost"]


class TrajectoryCost:
    """The trajectory cost ``J`` of :mod:`ctrlprop.trajcost` (see the module docstring).

    Parameters
    ----------
    goal : array_like, optional
        The goal states g: one state (n,), a goal trajectory (T, n) for ``g_1 .. g_T``
        (or (T+1, n) for ``g_0 .. g_T``, ``g_0`` unused), or one per trajectory of a batch:
        (B, 1, n), (B, T, n) or (B, T+1, n).  A 2-D goal is always a trajectory; give a
        batch of single goals as (B, 1, n).  Default: the origin.
    Q, Qf, R, S : float, array_like (k,) or (k, k)
        Weights of the running state cost, the terminal state cost (default: ``Q``), the
        control cost and the control-rate cost: scalar, diagonal or symmetric PSD matrix.
    running, terminal, trajectory : callable, optional
        Custom differentiable terms, batched (signatures in the module docstring).

    Notes
    -----
    Dimensions are checked when the cost meets a model and a horizon (``bind``), with
    errors naming the weight, the expected shapes and the shape given.
    """

    def __init__(self, goal=None, Q=1.0, Qf=None, R=0.0, S=0.0, running=None, terminal=None,
                 trajectory=None):
        self.Q = Metric.validate(Q, "Q")
        self.Qf = None if Qf is None else Metric.validate(Qf, "Qf")
        self.R = Metric.validate(R, "R")
        self.S = Metric.validate(S, "S")
        if goal is not None:
            try:
                goal = np.array(goal, dtype=np.float64)
            except (TypeError, ValueError):
                raise TypeError(f"goal must be a numeric array, got {type(goal).__name__}") \
                    from None
            if goal.ndim not in (1, 2, 3):
                raise ValueError(f"goal must be a state (n,), a trajectory (T, n) or a batch "
                                 f"(B, 1 | T | T+1, n); got shape {goal.shape}")
            if not np.all(np.isfinite(goal)):
                raise ValueError("goal contains NaN or inf")
        self.goal = goal
        for name, f in (("running", running), ("terminal", terminal), ("trajectory", trajectory)):
            if f is not None and not callable(f):
                raise TypeError(f"{name} must be callable or None, got {type(f).__name__}")
        self.running, self.terminal, self.trajectory = running, terminal, trajectory

    @property
    def custom(self):
        """True when a custom (callable) term is present."""
        return any(f is not None for f in (self.running, self.terminal, self.trajectory))

    def with_goal(self, goal):
        """A copy of this cost with another goal."""
        return TrajectoryCost(goal, self.Q, self.Qf, self.R, self.S, self.running,
                              self.terminal, self.trajectory)

    def bind(self, n, m, T, B):
        """The cost for n states, m controls, horizon T and batch B (validates dimensions)."""
        return BoundCost(self, n, m, T, B)

    def __repr__(self):
        parts = [f"{k}={'matrix' if getattr(self, k).ndim == 2 else getattr(self, k).tolist()}"
                 for k in ("Q", "R", "S")]
        if self.Qf is not None:
            parts.append("Qf=" + ("matrix" if self.Qf.ndim == 2 else str(self.Qf.tolist())))
        if self.goal is not None:
            parts.append(f"goal{self.goal.shape}")
        parts += [k for k in ("running", "terminal", "trajectory") if getattr(self, k)]
        return "TrajectoryCost(" + ", ".join(parts) + ")"


_FIELDS = ("goal", "Q", "Qf", "R", "S", "running", "terminal", "trajectory")


def _fields(cost):
    """The fields of a TrajectoryCost as a snapshot to compare against: an array as its
    dtype, shape and bytes (equal snapshots: bit-identical arrays), anything else itself
    (the callables compare by identity)."""
    return tuple((v.dtype.str, v.shape, v.tobytes()) if isinstance(v, np.ndarray) else v
                 for v in (getattr(cost, k) for k in _FIELDS))


def as_cost(cost):
    """A TrajectoryCost from None (defaults), a dict of its arguments, or itself."""
    if cost is None:
        return TrajectoryCost()
    if isinstance(cost, TrajectoryCost):
        return cost
    if isinstance(cost, dict):
        try:
            return TrajectoryCost(**cost)
        except TypeError as e:
            raise TypeError(f"cost dict: {e}") from None
    raise TypeError(f"cost must be a TrajectoryCost, a dict of its arguments or None, "
                    f"got {type(cost).__name__}")


def _goal_array(goal, n, T, B):
    """The goal as an array broadcastable to (T, n, B): g_1 .. g_T."""
    if goal is None:
        return np.zeros((1, n, 1))
    g = goal
    if g.shape[-1] != n:
        raise ValueError(f"goal must have {n} entries per state (the model has {n} states), "
                         f"got shape {g.shape}")
    if g.ndim == 1:
        return g.reshape(1, n, 1).copy()
    if g.ndim == 2:
        if g.shape[0] not in (T, T + 1):
            raise ValueError(f"a goal trajectory must have shape ({T}, {n}) for g_1..g_T or "
                             f"({T + 1}, {n}) for g_0..g_T (horizon {T}); got {g.shape}. "
                             f"Give a batch of single goals as (B, 1, {n})")
        return np.ascontiguousarray(g[-T:].reshape(T, n, 1))
    if g.shape[0] != B or g.shape[1] not in (1, T, T + 1):
        raise ValueError(f"a batch of goals must have shape ({B}, 1 | {T} | {T + 1}, {n}) for "
                         f"{B} trajectories of horizon {T}; got {g.shape}")
    g = g[:, -T:] if g.shape[1] > 1 else g
    return np.ascontiguousarray(g.transpose(1, 2, 0))


def _readonly(a):
    """A read-only view of a."""
    v = a.view()
    v.flags.writeable = False
    return v


def _check_out(name, a, shape, allow_none=True):
    """A callable's returned array as float64 of the given shape (None -> None)."""
    if a is None and allow_none:
        return None
    a = np.asarray(a, dtype=np.float64)
    if a.shape != shape:
        raise ValueError(f"the {name} must have shape {shape}, got {a.shape}")
    return a


class BoundCost:
    """A TrajectoryCost for fixed dimensions: values, gradients and residuals on a batch.

    Arrays are time-major with the batch last (the engine's layout): states ``S``
    (T+1, n, B), controls ``U`` (T, m, B), all in raw units.
    """

    def __init__(self, cost, n, m, T, B):
        self.cost, self.n, self.m, self.T, self.B = cost, n, m, T, B
        self.Q = Metric(cost.Q, n, "Q", "states")
        self.Qf = self.Q if cost.Qf is None else Metric(cost.Qf, n, "Qf", "states")
        self.R = Metric(cost.R, m, "R", "controls")
        self.S = Metric(cost.S, m, "S", "controls")
        self.qf_differs = cost.Qf is not None and not self.Qf.same_as(self.Q)
        self.state_zero = self.Q.zero and self.Qf.zero     # no quadratic state term
        self.G = _goal_array(cost.goal, n, T, B)
        self.custom = cost.custom
        self._snapshot = _fields(cost)

    def is_for(self, cost):
        """True when ``cost`` is the TrajectoryCost this was bound from, unchanged since
        (every weight, the goal and the custom terms compared; a few microseconds, where
        binding again validates every weight matrix)."""
        return cost is self.cost and _fields(cost) == self._snapshot

    def evaluate(self, S, U):
        """Per-trajectory costs (B,) and the gradients dJ/dS (T+1, n, B), dJ/dU (T, m, B)."""
        return self._terms(S, U, True)

    def values(self, S, U):
        """Per-trajectory costs (B,) alone: :meth:`evaluate` without building the gradients
        (what a sampling planner or a line search needs); a custom term's ``value`` method
        is called where it has one."""
        return self._terms(S, U, False)[0]

    def _terms(self, S, U, grad):
        """(val, CX, CU) of :meth:`evaluate`; CX and CU are None unless ``grad``."""
        T = self.T
        CX = CU = None
        # E_t = x_t - g_t (t = 1..T); running weight Q for t < T, Qf at T
        if self.state_zero:
            val = np.zeros(self.B)
            if grad:
                CX = np.zeros_like(S)
        else:
            E = S[1:] - self.G
            WE = self.Q.apply(E)
            if self.qf_differs:
                WE[T - 1] = self.Qf.apply(E[T - 1])
            val = 0.5 * np.einsum("tib,tib->b", E, WE)
            if grad:
                CX = np.empty_like(S)
                CX[0] = 0.0
                CX[1:] = WE
        # 1/2 u_t^T R u_t (t = 0..T-1), 1/2 (u_t - u_{t-1})^T S (u_t - u_{t-1}) (t = 1..T-1)
        if self.R.zero:
            if grad:
                CU = np.zeros_like(U)
        else:
            RU = self.R.apply(U)
            val += 0.5 * np.einsum("tib,tib->b", U, RU)
            if grad:
                CU = RU
        if T > 1 and not self.S.zero:
            D = U[1:] - U[:-1]
            SD = self.S.apply(D)
            val += 0.5 * np.einsum("tib,tib->b", D, SD)
            if grad:
                CU[1:] += SD
                CU[:-1] -= SD
        if self.custom:
            val += self._custom(S, U, CX, CU)
        return val, CX, CU

    def _custom(self, S, U, CX, CU):
        """The user's terms' per-trajectory values; their gradients are added into CX, CU
        (without gradients, CX is None: a term's ``value`` method is used if it has one)."""
        c, T, B, n, m = self.cost, self.T, self.B, self.n, self.m
        grad = CX is not None
        val = np.zeros(B)
        Sb = _readonly(S.transpose(2, 0, 1))             # (B, T+1, n)
        Ub = _readonly(U.transpose(2, 0, 1))             # (B, T, m)
        if c.running is not None:
            v, gx, gu = _call(c.running, grad, 3, "running", Sb[:, :T], Ub)
            v = np.asarray(v, dtype=np.float64)
            if v.shape == (B, T):
                v = v.sum(axis=1)
            val += _check_out("running cost's value", v, (B,), False)
            if grad:
                gx = _check_out("running cost's grad_x", gx, (B, T, n))
                gu = _check_out("running cost's grad_u", gu, (B, T, m))
                if gx is not None:
                    CX[:T] += gx.transpose(1, 2, 0)
                if gu is not None:
                    CU += gu.transpose(1, 2, 0)
        if c.terminal is not None:
            v, g = _call(c.terminal, grad, 2, "terminal", Sb[:, T])
            val += _check_out("terminal cost's value", v, (B,), False)
            if grad:
                g = _check_out("terminal cost's gradient", g, (B, n))
                if g is not None:
                    CX[T] += g.T
        if c.trajectory is not None:
            v, gs, gu = _call(c.trajectory, grad, 3, "trajectory", Sb, Ub)
            val += _check_out("trajectory cost's value", v, (B,), False)
            if grad:
                gs = _check_out("trajectory cost's grad_states", gs, (B, T + 1, n))
                gu = _check_out("trajectory cost's grad_controls", gu, (B, T, m))
                if gs is not None:
                    CX += gs.transpose(1, 2, 0)
                if gu is not None:
                    CU += gu.transpose(1, 2, 0)
        return val

    # ------------------------------------------------------------ residual form
    # J = 1/2 |r|^2 with r = [C_Q E_1 .. C_Q E_{T-1}, C_Qf E_T, C_R u_0 .. C_R u_{T-1},
    #                     C_S (u_1 - u_0) .. C_S (u_{T-1} - u_{T-2})],  C^T C = W
    def check_residual_form(self):
        """Raise if the cost has no exact residual form (custom terms)."""
        if self.custom:
            raise ValueError("custom running/terminal/trajectory costs have no residual form; "
                             "use a minimize method (e.g. method='L-BFGS-B') with them")

    def n_residuals(self):
        """Residuals per trajectory."""
        k = self.T * self.n
        if not self.R.zero:
            k += self.T * self.m
        if not self.S.zero and self.T > 1:
            k += (self.T - 1) * self.m
        return k

    def residuals(self, S, U):
        """Residuals (B, n_residuals) with 1/2 sum of squares = J per trajectory."""
        T, B = self.T, self.B
        E = S[1:] - self.G
        parts = [np.matmul(self.Q.factor, E)]
        if self.qf_differs:
            parts[0][T - 1] = self.Qf.factor @ E[T - 1]
        if not self.R.zero:
            parts.append(np.matmul(self.R.factor, U))
        if not self.S.zero and T > 1:
            parts.append(np.matmul(self.S.factor, U[1:] - U[:-1]))
        return np.concatenate([p.transpose(2, 0, 1).reshape(B, -1) for p in parts], axis=1)

    def residual_jacobian(self, JX):
        """Per-trajectory Jacobians (B, n_residuals, T*m) from dx_{t+1}/dU, JX (B, T, n, T*m)."""
        T, n, m, B = self.T, self.n, self.m, self.B
        rows = [np.matmul(self.Q.factor, JX)]                        # (B, T, n, T*m)
        if self.qf_differs:
            rows[0][:, T - 1] = np.matmul(self.Qf.factor, JX[:, T - 1])
        rows = [rows[0].reshape(B, T * n, T * m)]
        if not self.R.zero:
            rows.append(np.broadcast_to(np.kron(np.eye(T), self.R.factor), (B, T * m, T * m)))
        if not self.S.zero and T > 1:
            Dif = np.eye(T - 1, T, 1) - np.eye(T - 1, T)             # u_{t} - u_{t-1}
            rows.append(np.broadcast_to(np.kron(Dif, self.S.factor), (B, (T - 1) * m, T * m)))
        return np.concatenate(rows, axis=1)


def _call(f, grad, k, name, *args):
    """A custom term's k returns (value, gradients ...); without ``grad``, from its
    ``value`` method when it has one: (value, None, ...)."""
    if not grad:
        fv = getattr(f, "value", None)
        if callable(fv):
            return (fv(*args),) + (None,) * (k - 1)
    return _unpack(f(*args), k, name)


def _unpack(out, k, name):
    """A callable's returned tuple of k items, or a TypeError naming the callable."""
    if not isinstance(out, (tuple, list)) or len(out) != k:
        want = {2: "(value, grad)", 3: "(value, grad_x, grad_u)"}[k]
        raise TypeError(f"the {name} cost must return {want}, got {type(out).__name__}"
                        + (f" of length {len(out)}" if isinstance(out, (tuple, list)) else ""))
    return out
