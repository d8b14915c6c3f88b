"""Learned dynamics unrolled over a horizon, and back-propagation through time.

A :class:`Dynamics` model wraps a Network whose inputs are ``[state (n), control (m),
exogenous (e)]`` and whose outputs are the next state (``residual=False``) or its increment
(``residual=True``)::

    x_{t+1} = F(x_t, u_t, e_t) = f(x_t, u_t, e_t)           or   x_t + f(x_t, u_t, e_t)

BPTT (the lecture's backward pass chained through time).  With the cost's gradient
``c_t = dJ/dx_t`` at every state and ``lambda_t = dJ/dx_t`` in total::

    lambda_T = c_T
    for t = T-1 .. 0:   seed step t's network outputs with lambda_{t+1} and run its delta
                        recursion (weights frozen: the weight products are skipped); the
                        deltas of its input units are  (gx_t, gu_t) = lambda_{t+1}^T df/d(x_t, u_t)
        dJ/du_t  = gu_t + dJ/du_t|cost
        lambda_t = c_t + gx_t  (+ lambda_{t+1} when residual: the identity path)

so the deltas of the state input units at step t+1 become the output deltas of step t.

The compiled rollout and sweep live in :mod:`ctrlprop.unroll`.
"""

from collections import OrderedDict

import numpy as np

from ..core.checks import as_float, check_dtype, check_finite, check_int
from ..core.ensemble import Ensemble
from ..core.network import Network
from .cost import TrajectoryCost, as_cost
from .ensemble_unroll import PROPAGATIONS, EnsembleUnroll, check_disagreement
from .unroll import Unroll

__all__ = ["Dynamics", "ModelDimensions", "TrajectoryObjective", "bptt"]


def check_horizon(horizon):
    """The horizon as an int >= 1, or a clear error."""
    return check_int(horizon, "horizon (number of steps)", 1)


def check_flag(v, name):
    """``v`` as a bool, or a TypeError naming ``name`` (a string or a number is not a flag)."""
    if not isinstance(v, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {v!r:.60}")
    return bool(v)


class Dynamics:
    """A learned dynamics model ``x_{t+1} = F(x_t, u_t[, e_t])`` built on a Network.

    Parameters
    ----------
    net : Network or Ensemble
        Inputs ``[state (n_states), control (m), exogenous (n_exo)]`` in that order,
        outputs the next state (n_states outputs), in raw units (the network's own
        input/output scaling is applied inside).  An :class:`~ctrlprop.Ensemble` makes an
        ensemble model: every objective built on it minimises the expected cost over the
        members (see ``propagation`` and :mod:`ctrlprop.objectives.ensemble_unroll`).
    n_states : int
        Number of state variables n.
    residual : bool
        The network predicts the increment: ``x_{t+1} = x_t + f(x_t, u_t)``.
    n_exo : int
        Number of exogenous inputs e (default 0); ``m = net.n_inputs - n_states - n_exo``.
    dtype : np.float64 or np.float32
        The precision of the rollouts and BPTT sweeps (their buffers and weight copy) of
        every trajectory objective, optimizer and MPC built on this model.  float32 runs the
        network's products in single precision; states, costs and gradients handed back are
        float64 (rounded from float32 rollouts), and so are the step Jacobians of
        ``TrajectoryObjective.jacobian`` (lm, trf, dogbox) and ``state_jacobian``.  iLQR/DDP's
        linearisations and the Hessian products run in float64.  For an ensemble, float32
        runs the members' passes; the raw states, predictions and the disagreement stay
        float64.
    propagation : {"members", "mean"}
        Ensembles only.  "members" (the default): each candidate control sequence is rolled
        out under every member, each member following its own trajectory (PETS's TS-inf,
        one particle per member), and the cost is the mean over the members.  "mean": the
        members' mean prediction is the next state (one trajectory per candidate).
    disagreement : float or array_like (n_states,)
        Ensembles only: weight ``w`` (or one per state) of the penalty
        ``w sum_t sum_i Var_e(y_{t,i}^e)`` on the members' disagreement added to every
        trajectory cost built on this model (default 0).

    Notes
    -----
    Exogenous inputs (disturbances, references, time features -- anything the model
    reads but the optimizer does not choose) are passed as ``exo=`` to every function
    that rolls the model out: an array (e,) constant over time, (T, e) one row per step
    shared by all trajectories of a batch, or (B, T, e) per trajectory.
    """

    CACHE = 4          # rollout buffers kept per (horizon, batch)

    def __init__(self, net, n_states, residual=False, n_exo=0, *, dtype=np.float64,
                 propagation=None, disagreement=None):
        if not isinstance(net, (Network, Ensemble)):
            raise TypeError(f"net must be a ctrlprop Network or Ensemble, got "
                            f"{type(net).__name__}")
        n, e = check_int(n_states, "n_states", 1), check_int(n_exo, "n_exo", 0)
        if net.n_outputs != n:
            raise ValueError(f"the network has {net.n_outputs} outputs but n_states={n}: a "
                             f"dynamics network outputs the next state (or its increment)")
        m = net.n_inputs - n - e
        if m < 1:
            raise ValueError(f"the network has {net.n_inputs} inputs, leaving {m} controls "
                             f"after n_states={n} states and n_exo={e} exogenous inputs; it "
                             "needs at least one")
        self.net, self.n_states, self.n_controls, self.n_exo = net, n, m, e
        self._residual = check_flag(residual, "residual")
        self._dtype = check_dtype(dtype)
        ens = isinstance(net, Ensemble)
        if not ens and (propagation is not None or disagreement is not None):
            raise ValueError("propagation= and disagreement= are for a model built on an "
                             "Ensemble; net is a single Network")
        if propagation is None:
            propagation = "members"
        if propagation not in PROPAGATIONS:
            raise ValueError(f"propagation must be one of {PROPAGATIONS}, got {propagation!r}")
        self._propagation = propagation
        self._disagreement = check_disagreement(0.0 if disagreement is None else disagreement, n)
        self._cache = OrderedDict()
        self._objectives = OrderedDict()        # bptt's objectives per (T, B, batched)

    # residual and dtype are fixed at construction: the compiled rollouts and objectives kept
    # for this model (its caches, cp.bptt's) are built for them
    @property
    def residual(self):
        """True when the network predicts the increment ``x_{t+1} - x_t`` (read-only)."""
        return self._residual

    @property
    def dtype(self):
        """The precision of the rollouts, np.float64 or np.float32 (read-only)."""
        return self._dtype

    def astype(self, dtype):
        """This model with rollouts of ``dtype``.

        Parameters
        ----------
        dtype : np.float64 or np.float32

        Returns
        -------
        Dynamics
            ``self`` when its dtype is ``dtype`` already; else a new model on the same
            network (later weight updates are seen by both), with the same residual flag,
            exogenous inputs, propagation and disagreement.
        """
        dtype = check_dtype(dtype)
        if dtype == self._dtype:
            return self
        ens = self.is_ensemble
        return Dynamics(self.net, self.n_states, self.residual, self.n_exo, dtype=dtype,
                        propagation=self.propagation if ens else None,
                        disagreement=self.disagreement if ens else None)

    @property
    def is_ensemble(self):
        """True for a model built on an :class:`~ctrlprop.Ensemble`."""
        return isinstance(self.net, Ensemble)

    @property
    def n_members(self):
        """Members of the ensemble (1 for a single network)."""
        return self.net.size if self.is_ensemble else 1

    @property
    def propagation(self):
        """How an ensemble propagates, "members" or "mean" (read-only)."""
        return self._propagation

    @property
    def disagreement(self):
        """The disagreement weights (n_states,) (zeros: none; read-only)."""
        return self._disagreement

    @property
    def n_inputs(self):
        """Inputs of the network: n_states + n_controls + n_exo."""
        return self.net.n_inputs

    @property
    def n_outputs(self):
        """Outputs of the network (= n_states)."""
        return self.net.n_outputs

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_cache"] = OrderedDict()          # compiled rollouts are rebuilt on use
        state["_objectives"] = OrderedDict()
        return state

    def __setstate__(self, state):
        state.setdefault("_objectives", OrderedDict())
        state.setdefault("_residual", state.pop("residual", False))     # 0.2.0 pickles
        state.setdefault("_dtype", np.dtype(state.pop("dtype", np.float64)))
        state.setdefault("_propagation", "members")
        if "_disagreement" not in state:
            state["_disagreement"] = np.zeros(state["n_states"])
        self.__dict__.update(state)

    def __repr__(self):
        dt = "" if self.dtype == np.float64 else f", dtype={self.dtype}"
        if self.is_ensemble:
            dt += f", propagation={self.propagation!r}"
            if self.disagreement.any():
                d = self.disagreement
                dt += f", disagreement={float(d[0]) if np.all(d == d[0]) else d.tolist()}"
        return (f"Dynamics(n_states={self.n_states}, n_controls={self.n_controls}, "
                f"n_exo={self.n_exo}, residual={self.residual}{dt}, net={self.net!r})")

    # ------------------------------------------------------------ validation
    def check_x0(self, x0, name="x0"):
        """Initial state(s) as (B, n) float array and whether a batch was given."""
        X = check_finite(as_float(x0, name), name)
        n = self.n_states
        if X.ndim == 1 and X.shape == (n,):
            return X[None, :].copy(), False
        if X.ndim == 2 and X.shape[1] == n and X.shape[0] >= 1:
            return X.copy(), True
        raise ValueError(f"{name} must have shape ({n},) or (B, {n}) for a model with {n} "
                         f"states, got {X.shape}")

    def check_controls(self, U, T=None, name="controls"):
        """Controls as (B or 1, T, m) and whether a batch was given."""
        U = check_finite(as_float(U, name), name)
        m = self.n_controls
        if U.ndim in (2, 3) and U.shape[-1] == m and U.shape[-2] >= 1 and U.shape[0] >= 1:
            if T is not None and U.shape[-2] != T:
                raise ValueError(f"{name} must have {T} rows (the horizon), got shape {U.shape}")
            return (U[None] if U.ndim == 2 else U), U.ndim == 3
        want = f"(T, {m}) or (B, T, {m})" if T is None else f"({T}, {m}) or (B, {T}, {m})"
        raise ValueError(f"{name} must have shape {want} for a model with {m} controls, "
                         f"got {U.shape}")

    def check_exo(self, exo, T, B):
        """Exogenous inputs as an array broadcastable to (T, e, B), or None without any."""
        e = self.n_exo
        if e == 0:
            if exo is not None:
                raise ValueError("the model has no exogenous inputs (n_exo=0) but exo was given")
            return None
        if exo is None:
            raise ValueError(f"the model has {e} exogenous inputs: pass exo= as ({e},), "
                             f"({T}, {e}) or (B, {T}, {e})")
        E = check_finite(as_float(exo, "exo"), "exo")
        if E.shape == (e,):
            return E.reshape(1, e, 1)
        if E.shape == (T, e):
            return E.reshape(T, e, 1)
        if E.ndim == 3 and E.shape == (B, T, e):
            return E.transpose(1, 2, 0)
        raise ValueError(f"exo must have shape ({e},), ({T}, {e}) or ({B}, {T}, {e}) for "
                         f"horizon {T} and batch {B}, got {E.shape}")

    # ------------------------------------------------------------ simulation
    def new_unroll(self, T, B):
        """Fresh rollout buffers for horizon T and batch B: an
        :class:`~ctrlprop.objectives.unroll.Unroll`, or an
        :class:`~ctrlprop.objectives.ensemble_unroll.EnsembleUnroll` for an ensemble."""
        return EnsembleUnroll(self, T, B) if self.is_ensemble else Unroll(self, T, B)

    def _unroll(self, T, B):
        """Cached rollout buffers for horizon T and batch B."""
        key = (T, B)
        u = self._cache.pop(key, None)
        if u is None:
            u = self.new_unroll(T, B)
            while len(self._cache) >= self.CACHE:
                self._cache.popitem(last=False)
        self._cache[key] = u
        return u

    def rollout(self, x0, U, exo=None, *, members=False):
        """States of the model driven by the controls U from x0.

        Parameters
        ----------
        x0 : array_like, shape (n,) or (B, n)
        U : array_like, shape (T, m) or (B, T, m)
            A single x0 or a single U is shared by the whole batch.
        exo : array_like, optional
            Exogenous inputs (see the class notes).
        members : bool
            Ensembles: return every member's trajectory (a leading axis of E;
            ``propagation="members"`` only).  False: the ensemble's prediction, the mean
            over the members' trajectories ("members") or the mean-propagated one ("mean").

        Returns
        -------
        states : ndarray, shape (T+1, n), or (B, T+1, n) when x0 or U is a batch; with
            ``members=True`` (E, T+1, n) or (E, B, T+1, n)
        """
        members = check_flag(members, "members")
        if members and not (self.is_ensemble and self.propagation == "members"):
            raise ValueError("members=True needs an ensemble model with propagation='members'")
        X0, bx = self.check_x0(x0)
        U3, bu = self.check_controls(U)
        B = _batch_size(X0.shape[0], U3.shape[0], ("x0", "U"))
        T = U3.shape[1]
        ur = self._unroll(T, B)
        ur.sync()
        ur.set_x0(np.broadcast_to(X0, (B, self.n_states)))
        ur.set_exo(self.check_exo(exo, T, B))
        ur.set_controls(np.broadcast_to(U3.transpose(1, 2, 0), (T, self.n_controls, B)))
        ur.forward()
        if members:
            S = ur.member_states()                        # (E, B, T+1, n)
            return S if (bx or bu) else S[:, 0]
        S = (ur.mean_states() if self.is_ensemble else ur.states()).transpose(2, 0, 1).copy()
        return S if (bx or bu) else S[0]

    def step(self, x, u, exo=None):
        """One step: the next state(s), shape of x ((n,) or (B, n)); for an ensemble the
        members' mean prediction."""
        X, bx = self.check_x0(x, "x")
        U = check_finite(as_float(u, "u"), "u")
        m = self.n_controls
        if U.shape != (m,) and not (U.ndim == 2 and U.shape[1] == m):
            raise ValueError(f"u must have shape ({m},) or (B, {m}), got {U.shape}")
        U = np.atleast_2d(U)
        B = _batch_size(X.shape[0], U.shape[0], ("x", "u"))
        parts = [np.broadcast_to(X, (B, self.n_states)), np.broadcast_to(U, (B, m))]
        if self.n_exo or exo is not None:
            E = self.check_exo(exo, 1, B)
            parts.append(np.broadcast_to(E[0].T, (B, self.n_exo)))
        Xin = np.concatenate(parts, axis=1)
        Y = self.net.forward(Xin)
        if self.is_ensemble:
            Y = Y.mean(axis=0)                            # the members' mean prediction
        if self.residual:
            Y = Y + Xin[:, :self.n_states]
        return Y if (bx or np.ndim(u) == 2) else Y[0]

    def linearize(self, x, u, exo=None):
        """Jacobians of one step at (x, u): A = dF/dx (n, n) and B = dF/du (n, m) (for an
        ensemble, of the members' mean prediction).

        With a batch x (B, n) and/or u (B, m), A is (B, n, n) and B is (B, n, m).
        """
        X, bx = self.check_x0(x, "x")
        U = np.atleast_2d(check_finite(as_float(u, "u"), "u"))
        m, n = self.n_controls, self.n_states
        if U.ndim != 2 or U.shape[1] != m:
            raise ValueError(f"u must have shape ({m},) or (B, {m}), got {np.shape(u)}")
        B = _batch_size(X.shape[0], U.shape[0], ("x", "u"))
        parts = [np.broadcast_to(X, (B, n)), np.broadcast_to(U, (B, m))]
        if self.n_exo or exo is not None:
            E = self.check_exo(exo, 1, B)
            parts.append(np.broadcast_to(E[0].T, (B, self.n_exo)))
        J = self.net.jacobian_inputs(np.concatenate(parts, axis=1))
        if self.is_ensemble:
            J = J.mean(axis=0)                            # of the mean prediction
        A, Bm = J[:, :, :n].copy(), J[:, :, n:n + m].copy()
        if self.residual:
            A += np.eye(n)
        return (A, Bm) if (bx or np.ndim(u) == 2) else (A[0], Bm[0])


def _batch_size(b1, b2, names):
    """The common batch size of two leading dimensions (1 broadcasts); ``names`` are the
    arguments they come from (states, controls), for the error."""
    if b1 != b2 and 1 not in (b1, b2):
        raise ValueError(f"batch sizes differ: {names[0]} holds {b1} initial states but "
                         f"{names[1]} holds {b2} control sequences (give equal batches, or "
                         "one of them unbatched to share it)")
    return max(b1, b2)


def check_model(model):
    """Raise unless model is a Dynamics."""
    if not isinstance(model, Dynamics):
        raise TypeError(f"model must be a ctrlprop.Dynamics (wrap a network with "
                        f"Dynamics(net, n_states)), got {type(model).__name__}")


class ModelDimensions:
    """``n_states`` and ``n_controls`` of an object's ``model`` (a Dynamics), for the
    objectives built on one."""

    @property
    def n_states(self):
        """State dimension n of the model."""
        return self.model.n_states

    @property
    def n_controls(self):
        """Control dimension m of the model."""
        return self.model.n_controls


class TrajectoryObjective(ModelDimensions):
    """The trajectory cost as a function of the controls, for ``scipy.optimize``.

    ``obj(u) -> (J, dJ/du)`` with ``u`` the flattened controls (B*T*m,) ordered
    (trajectory, step, control) and ``J`` the cost summed over the batch; the gradient
    takes one forward rollout and one BPTT sweep.  ``residuals``/``jacobian`` give the
    exact residual form for ``least_squares`` (quadratic costs only).  The buffers are
    allocated once here, so repeated calls allocate nothing in the per-step loops.

    Parameters
    ----------
    model : Dynamics
    x0 : array_like, shape (n,) or (B, n)
        Initial state(s); a batch gives B independent trajectories.
    horizon : int
        T >= 1 steps.
    cost : TrajectoryCost or dict, optional
        Default: ``TrajectoryCost()`` (Q = 1 toward the origin).
    exo : array_like, optional
        Exogenous inputs (see :class:`Dynamics`).
    """

    def __init__(self, model, x0, horizon, cost=None, exo=None):
        check_model(model)
        self.model = model
        self.T = T = check_horizon(horizon)
        X0, self.batched = model.check_x0(x0)
        self.B = B = X0.shape[0]
        m = model.n_controls
        self.shape = (B, T, m) if self.batched else (T, m)
        self.n_vars = B * T * m
        self.max_jacobian_size = 2e7
        self._ur = model.new_unroll(T, B)
        self._ens = model.is_ensemble
        self._key = np.full(self.n_vars, np.nan)
        self.set_cost(cost)
        self.set_x0(X0)
        self.set_exo(exo)
        self.nfev = 0
        self.last_costs = None        # per-trajectory costs at the last rollout (or None)

    # ------------------------------------------------------------ pickling
    # The Unroll pickles as its raw inputs and is rebuilt (see Unroll.__getstate__); the
    # last rollout's states and controls (views of its buffers) are dropped and the key
    # reset, so the first evaluation after unpickling rolls out afresh.
    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("_S", None)
        state.pop("_U", None)
        state["_key"] = np.full(self.n_vars, np.nan)
        return state

    # ------------------------------------------------------------ problem data
    def set_x0(self, x0):
        """Change the initial state(s) (same batch size)."""
        self._set_x0(self.model.check_x0(x0)[0])

    def _set_x0(self, X0):
        """set_x0 with X0 checked already, (B', n)."""
        if X0.shape[0] != self.B:
            raise ValueError(f"x0 must hold {self.B} initial states, got {X0.shape[0]}")
        self.x0 = X0
        self._ur.set_x0(X0)
        self._key[0] = np.nan
        self.last_costs = None

    def set_cost(self, cost):
        """Change the cost (a TrajectoryCost or dict)."""
        self.last_costs = None
        self.cost = c = as_cost(cost)
        paths = self.B
        if self._ens:                 # an ensemble's cost is evaluated on its paths
            paths = self._ur.n_paths
            if c.goal is not None and c.goal.ndim == 3 and paths != self.B:
                c = c.with_goal(np.tile(c.goal, (paths // self.B, 1, 1)))
        self._cost = c.bind(self.model.n_states, self.model.n_controls, self.T, paths)

    def set_exo(self, exo):
        """Change the exogenous inputs."""
        self._exo = self.model.check_exo(exo, self.T, self.B)     # (T, e, B)-broadcastable
        self._ur.set_exo(self._exo)
        self._key[0] = np.nan
        self.last_costs = None

    # ------------------------------------------------------------ evaluation
    def _check_u(self, u):
        """u as a flat float vector of n_vars entries."""
        if not (type(u) is np.ndarray and u.dtype == np.float64):
            u = as_float(u, "u")
        if u.size != self.n_vars:
            raise ValueError(f"u must have {self.n_vars} entries (controls of shape "
                             f"{self.shape}), got {u.size}")
        return u.reshape(-1)

    def _forward(self, u):
        """Roll out at u unless the last rollout was at u already."""
        ur = self._ur
        if not ur.sync() and np.array_equal(u, self._key):
            return
        self.last_costs = None
        U = u.reshape(self.B, self.T, self.model.n_controls).transpose(1, 2, 0)
        if getattr(self, "_Ubuf", None) is None:
            self._Ubuf = np.empty(U.shape)
        np.copyto(self._Ubuf, U)          # own copy: the caller may reuse its array
        ur.set_controls(self._Ubuf)
        ur.forward()
        self._S, self._U = ur.states(), self._Ubuf
        if self._ens:
            self._U = ur.path_controls(self._Ubuf)
        np.copyto(self._key, u)

    def _evaluate(self):
        """Per-trajectory costs (B,) at the last rollout, the cost's dJ/dU (T, m, B) and
        dJ/dS of the rollout's paths (an ensemble's expected cost over its
        members plus the disagreement penalty, see
        :mod:`~ctrlprop.objectives.ensemble_unroll`)."""
        vals, CX, CU = self._cost.evaluate(self._S, self._U)
        if self._ens:
            vals, CU = self._ur.combine(vals, CX, CU)
        return vals, CU, CX

    def _values(self):
        """Per-trajectory costs (B,) at the last rollout, no gradient built (as
        :meth:`_evaluate`'s first return)."""
        vals = self._cost.values(self._S, self._U)
        return self._ur.combine_values(vals) if self._ens else vals

    def _value_grad(self, u):
        """Costs (B,), dJ/dU (T, m, B) raw, and the state gradient CX."""
        self._forward(u)
        vals, CU, CX = self._evaluate()
        self._ur.backward(CX)
        CU += self._ur.grad_controls()
        self.nfev += 1
        self.last_costs = vals
        return vals, CU, CX

    def __call__(self, u):
        """``(J, dJ/du)``: total cost and its gradient, shape (n_vars,)."""
        u = self._check_u(u)
        vals, GU, _ = self._value_grad(u)
        return float(vals.sum()), GU.transpose(2, 0, 1).reshape(-1)

    def hessp(self, u, p):
        """Hessian of J at u times p, for Newton-CG / trust-ncg / trust-krylov / trust-constr.

        Forward-over-reverse through time (the second-order adjoint of
        :mod:`ctrlprop.objectives.second_order`): one tangent rollout and one backward
        sweep of the adjoint and its R-derivative through the network's R-operator.

        Parameters
        ----------
        u : array_like, shape (n_vars,)
            Flat controls, ordered (trajectory, step, control) like ``obj(u)``.
        p : array_like, shape (n_vars,)
            The direction, same layout.

        Returns
        -------
        ndarray, shape (n_vars,)
            ``H(u) p`` with H the Hessian of the total cost (summed over the batch).
            Exact for the quadratic terms (Q, Qf, R, S); the custom callables' part is
            the central difference of their gradients along the tangent (see
            :func:`~ctrlprop.objectives.second_order.trajectory_hessp`).

        Raises
        ------
        ValueError
            When u or p has not n_vars entries.
        TypeError
            When u or p is not numeric.
        """
        from .second_order import trajectory_hessp

        self._no_ensemble("hessp (Newton-CG, trust-ncg, trust-krylov, trust-constr)")
        u = self._check_u(u)
        if not (type(p) is np.ndarray and p.dtype == np.float64):
            p = as_float(p, "p")
        if p.size != self.n_vars:
            raise ValueError(f"p must have {self.n_vars} entries (controls of shape "
                             f"{self.shape}), got {p.size}")
        self._forward(u)
        T, m = self.T, self.shape[-1]
        P = p.reshape(self.B, T, m).transpose(1, 2, 0)
        HP = trajectory_hessp(self.model, self._cost, self._S, self._U, self._exo, P)
        return HP.transpose(2, 0, 1).reshape(-1)

    def cached_total(self, u):
        """Total cost at u if the last evaluation was there, else None (no work)."""
        if self.last_costs is not None and np.array_equal(u, self._key):
            return float(self.last_costs.sum())
        return None

    def value(self, u):
        """Total cost at u (a forward rollout only)."""
        u = self._check_u(u)
        self._forward(u)
        self.last_costs = self._values()
        return float(self.last_costs.sum())

    def value_and_grad(self, U, wrt_x0=False):
        """Costs and gradients with the problem's shapes.

        Parameters
        ----------
        U : array_like, shape ``self.shape`` ((T, m) or (B, T, m))
        wrt_x0 : bool
            Also return dJ/dx0.

        Returns
        -------
        J : float, or ndarray (B,) for a batch
        dJ_dU : ndarray, shape ``self.shape``
        dJ_dx0 : ndarray, shape (n,) or (B, n)  (only with ``wrt_x0=True``)
        """
        U = as_float(U, "U")
        if U.shape != self.shape:
            raise ValueError(f"U must have shape {self.shape}, got {U.shape}")
        vals, GU, CX = self._value_grad(U.reshape(-1))
        gU = GU.transpose(2, 0, 1)
        out = (vals, gU) if self.batched else (float(vals[0]), gU[0])
        if not wrt_x0:
            return out
        gx = np.asarray(self._ur.grad_x0(CX).T, dtype=np.float64)
        return out + (gx if self.batched else gx[0],)

    def states(self, u, *, members=False):
        """States of the rollout at u: (T+1, n) or (B, T+1, n).  For an ensemble the mean over
        the members' trajectories (see :meth:`Dynamics.rollout`), or with ``members=True``
        every member's: (E, T+1, n) or (E, B, T+1, n)."""
        members = check_flag(members, "members")
        self._forward(self._check_u(u))
        if self._ens:
            if members and self.model.propagation != "members":
                raise ValueError("members=True needs an ensemble model with "
                                 "propagation='members'")
            if members:
                S = self._ur.member_states()
                return S if self.batched else S[:, 0]
            S = self._ur.mean_states().transpose(2, 0, 1)
        elif members:
            raise ValueError("members=True needs an ensemble model")
        else:
            S = self._S.transpose(2, 0, 1).copy()
        return S if self.batched else S[0]

    def _no_ensemble(self, what):
        if self._ens:
            raise ValueError(f"{what} is not offered for an ensemble model (its expected cost "
                             "has no residual form or Hessian product here); use a gradient "
                             "method such as 'L-BFGS-B', or a sampling planner")

    def costs(self, u):
        """Per-trajectory costs (B,) at u."""
        self._forward(self._check_u(u))
        self.last_costs = self._values()
        return self.last_costs

    # ------------------------------------------------------------ least squares
    @property
    def n_residuals(self):
        """Length of :meth:`residuals` (B times the residuals per trajectory); a ValueError
        when the cost has custom terms, which have no residual form."""
        self._cost.check_residual_form()
        return self._cost.n_residuals() * self.B

    def residuals(self, u):
        """Residuals r(u) with ``1/2 |r|^2 = J`` (quadratic costs), shape (B * n_residuals,)."""
        self._no_ensemble("the residual form (lm, trf, dogbox, batch-lm)")
        self._cost.check_residual_form()
        self._forward(self._check_u(u))
        return self._cost.residuals(self._S, self._U).reshape(-1)

    DENSE_JACOBIAN = 1e6          # entries below which a batch's Jacobian is dense

    def state_jacobian(self, u):
        """Exact state Jacobians ``dx_{t+1}/dU`` of every trajectory: (B, T, n, T m).

        ``dx_{t+1}/du_s = B_t`` for s = t, ``A_t dx_t/du_s`` for s < t, 0 for s > t, with
        ``A_t, B_t`` the step Jacobians along the rollout at u.
        """
        self._no_ensemble("state_jacobian")
        self._forward(self._check_u(u))
        T, m, B, n = self.T, self.model.n_controls, self.B, self.model.n_states
        A, Bm = self._ur.step_jacobians()
        JX = np.zeros((B, T, n, T * m))
        for t in range(T):
            JX[:, t, :, t * m:(t + 1) * m] = Bm[t]
            if t:
                np.matmul(A[t], JX[:, t - 1, :, :t * m], out=JX[:, t, :, :t * m])
        return JX

    def jacobian(self, u, sparse=None):
        """Exact Jacobian dr/du, (B * n_res, n_vars): block-diagonal over a batch.

        ``sparse=None`` gives a dense array unless that would exceed ``DENSE_JACOBIAN``
        entries, then a scipy.sparse CSR matrix (least_squares then solves its trust-region
        steps iteratively, with lsmr); ``sparse=True/False`` forces the format.
        """
        self._no_ensemble("the residual Jacobian (lm, trf, dogbox, batch-lm)")
        c = self._cost
        c.check_residual_form()
        T, m, B = self.T, self.model.n_controls, self.B
        nr = c.n_residuals()
        if sparse is None:
            sparse = B > 1 and nr * T * m * B * B > self.DENSE_JACOBIAN
        sparse = bool(sparse)
        size = nr * T * m * (B if sparse else B * B)
        if size > self.max_jacobian_size:
            raise ValueError(f"the residual Jacobian would have {size:.3g} entries (more than "
                             f"max_jacobian_size={self.max_jacobian_size:.3g}); use a "
                             f"gradient method such as 'L-BFGS-B' for this problem size")
        Jb = c.residual_jacobian(self.state_jacobian(u))
        if B == 1:
            return Jb[0]
        if sparse:
            from scipy.sparse import block_diag
            return block_diag(list(Jb), format="csr")
        out = np.zeros((B * nr, B * T * m))
        for b in range(B):
            out[b * nr:(b + 1) * nr, b * T * m:(b + 1) * T * m] = Jb[b]
        return out


def bptt(model, x0, U, cost=None, exo=None, wrt_x0=False):
    """Trajectory cost and its gradient by back-propagation through time (one call).

    Parameters
    ----------
    model : Dynamics
    x0 : array_like, shape (n,) or (B, n)
    U : array_like, shape (T, m) or (B, T, m)
    cost : TrajectoryCost or dict, optional
    exo : array_like, optional
    wrt_x0 : bool
        Also return dJ/dx0.

    Returns
    -------
    J, dJ_dU[, dJ_dx0]
        As :meth:`TrajectoryObjective.value_and_grad`.  The objective behind the call is
        kept on the model (per horizon and batch size, the model's last ``CACHE``), so
        calling bptt repeatedly costs what a TrajectoryObjective costs.
    """
    check_model(model)
    wrt_x0 = check_flag(wrt_x0, "wrt_x0")
    X0, bx = model.check_x0(x0)
    U3, bu = model.check_controls(U, name="U")
    B = _batch_size(X0.shape[0], U3.shape[0], ("x0", "U"))
    if X0.shape[0] != B:
        X0 = np.repeat(X0, B, axis=0)
    batched, T = bool(bx or bu), U3.shape[1]
    # The objective (its compiled rollout, buffers and bound cost) is kept on the model per
    # (horizon, batch size, batched) and given this call's data: repeated calls cost what
    # TrajectoryObjective costs.  New weights or scaling of model.net are picked up by its
    # rollout on every call.
    # An objective is taken out of the cache while in use (a concurrent call on the same
    # model then builds its own); the cost is bound again unless it is the same object with
    # the same fields (it may have been changed in place).
    key = (T, B, batched)
    obj = model._objectives.pop(key, None)
    if obj is None:
        obj = TrajectoryObjective(model, X0 if batched else X0[0], T, cost, exo)
    else:
        obj._set_x0(X0)
        if not (isinstance(cost, TrajectoryCost) and obj._cost.is_for(cost)):
            obj.set_cost(cost)
        obj.set_exo(exo)
    if U3.shape[0] != B:
        U3 = np.broadcast_to(U3, (B,) + U3.shape[1:])
    out = obj.value_and_grad(U3 if batched else U3[0], wrt_x0=wrt_x0)
    model._objectives[key] = obj
    while len(model._objectives) > model.CACHE:
        model._objectives.popitem(last=False)
    return out
