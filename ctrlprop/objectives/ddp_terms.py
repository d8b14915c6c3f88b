"""The objective side of iLQR / DDP through a learned model: :class:`DDPTerms`.

Notation: x is [n] (the state), u is [m] (the control), e the exogenous inputs; t = 0 ..
T-1 are the T steps and B trajectories are carried as a batch (axis 0 of every array).
The model is ``x_{t+1} = F(x_t, u_t, e_t) = f(x_t, u_t, e_t)`` (``+ x_t`` when residual)
with f the network, and the cost is a :class:`~ctrlprop.TrajectoryCost`.

:class:`DDPTerms` gives the solver (:func:`ctrlprop.solvers.ddp.ddp`) its callables:

* ``step(t, Z, U)`` -- one step of the model for the batch;
* ``cost(Z, U)`` -- the trajectory cost J of every trajectory;
* ``jacobians(Z, U)`` -- ``f_x``, ``f_u`` per step, from the network's input Jacobians
  (:meth:`Dynamics.linearize <ctrlprop.Dynamics.linearize>` on all B T steps at once);
* ``cost_derivatives(Z, U)`` -- ``l_x, l_u, l_xx, l_uu, l_ux`` per step (index T: terminal);
* ``curvature(t, v)`` -- ``v . F_xx, v . F_ux, v . F_uu`` for DDP (:func:`dynamics_curvature`);
* ``closed_loop`` -- the forward pass as one compiled call
  (:class:`~ctrlprop.objectives.unroll.ClosedLoop`) when the compiled path runs the model.

:meth:`DDPTerms.callables` gives them all as the solver's keyword arguments.

The state the solver sees (``Z``) is x, augmented when the cost has a control-rate term.

Control rate, exactly.  The term ``1/2 (u_t - u_{t-1})^T S (u_t - u_{t-1})`` couples two
steps, which a per-step quadratic model cannot hold.  With ``S != 0`` (and T > 1) the
state is augmented with the previous control, ``z_t = [x_t; p_t]``, ``p_t = u_{t-1}``
(``p_0 = 0``, unused), and ``z_{t+1} = [F(x_t, u_t); u_t]``: the term is then a function
of ``(z_t, u_t)`` at every step t >= 1, with exact derivatives ``l_u = S d``,
``l_p = -S d`` (d = u_t - p_t), ``l_uu = S``, ``l_pp = S``, ``l_up = -S``.  The solver's
gains are then (m, n + m): feedback on x_t - states_t and on u_{t-1} - controls_{t-1}.

Quadratic terms (Q, Qf, R, S) enter with their exact Hessians.  A custom term (running,
terminal, trajectory) gives its exact Hessian blocks when the callable has a ``hessian``
attribute (the protocol of :func:`custom_hessian_blocks`; the car costs of
:mod:`ctrlprop.plants` do); otherwise its blocks are approximated by central differences
of its gradients.
"""

import numpy as np

from .cost import TrajectoryCost, as_cost
from .second_order import FD_STEP
from .trajectory import check_horizon, check_model
from .unroll import ClosedLoop

__all__ = ["DDPTerms", "dynamics_curvature", "custom_hessian_blocks", "CURVATURE_BYTES"]

# DDP's second derivatives of the dynamics are computed for the whole horizon at once and
# stored, (B, T, n, n+m, n+m), when they take at most this many bytes; above it (large
# states, long horizons, big batches) each step's contraction with the costate is computed
# when the backward pass asks for it.
CURVATURE_BYTES = 64 * 2 ** 20
# samples per batched Hessian product (directions x steps) while filling them
_CURVATURE_CHUNK = 20_000


def _finite_rows(R):
    """(R with non-finite rows replaced by 0, mask of the rows that were finite)."""
    ok = np.isfinite(R).all(axis=1)
    return (R if ok.all() else np.where(ok[:, None], R, 0.0)), ok


def dynamics_curvature(model, x, u, lam, exo=None):
    """Second derivatives of one step contracted with a costate: ``sum_i lam_i d2F_i``.

    For ``F(x, u, e)`` the model's step (the residual identity adds nothing to the second
    derivatives) and ``w = (x, u)``, the matrix ``sum_i lam_i d2F_i/dw dw`` is the input
    Hessian of the network seeded with the output cotangent ``lam``: one
    :meth:`Trace.hvp <ctrlprop.core.engine.Trace.hvp>` (``dY = lam``, ``RdY = 0``) along
    each input direction e_j, j < n + m, all directions stacked as samples of one batch.

    Parameters
    ----------
    model : Dynamics
    x : ndarray, shape (K, n)
    u : ndarray, shape (K, m)
    lam : ndarray, shape (K, n)
        The costate of the step's outputs (V_x at the next step, in DDP).
    exo : ndarray, shape (K, e), optional
        Exogenous inputs (required when the model has them).

    Returns
    -------
    lam_fxx : ndarray, shape (K, n, n)
    lam_fux : ndarray, shape (K, m, n)
    lam_fuu : ndarray, shape (K, m, m)

    Raises
    ------
    TypeError
        When model is not a Dynamics.
    ValueError
        When the arrays' shapes do not match the model or each other.
    """
    check_model(model)
    n, m, e = model.n_states, model.n_controls, model.n_exo
    x, u, lam = (np.asarray(a, dtype=float) for a in (x, u, lam))
    if x.ndim != 2 or x.shape[1] != n:
        raise ValueError(f"x must have shape (K, {n}), got {x.shape}")
    K = x.shape[0]
    if u.shape != (K, m):
        raise ValueError(f"u must have shape ({K}, {m}), got {u.shape}")
    if lam.shape != (K, n):
        raise ValueError(f"lam must have shape ({K}, {n}), got {lam.shape}")
    parts = [x, u]
    if e:
        if exo is None:
            raise ValueError(f"the model has {e} exogenous inputs: pass exo of shape ({K}, {e})")
        exo = np.asarray(exo, dtype=float)
        if exo.shape != (K, e):
            raise ValueError(f"exo must have shape ({K}, {e}), got {exo.shape}")
        parts.append(exo)
    elif exo is not None:
        raise ValueError("the model has no exogenous inputs (n_exo=0) but exo was given")
    rows = np.concatenate(parts, axis=1)
    d, ni = n + m, rows.shape[1]
    R = np.tile(rows, (d, 1))                                 # sample j*K + k: direction j
    V = np.zeros((d * K, ni))
    V[np.arange(d * K), np.repeat(np.arange(d), K)] = 1.0
    dY = np.tile(lam, (d, 1))
    H = model.net.trace(R).hvp(dY, np.zeros_like(dY), v_x=V, wrt="inputs")
    M = H.reshape(d, K, ni)[:, :, :d].transpose(1, 2, 0)     # M[k, i, j] = (H_k e_j)_i
    M = 0.5 * (M + M.transpose(0, 2, 1))
    return M[:, :n, :n].copy(), M[:, n:, :n].copy(), M[:, n:, n:].copy()


def _exact_blocks(f, args, shapes, name):
    """The Hessian blocks ``f.hessian(*args)`` checked against ``shapes``."""
    out = f.hessian(*args)
    if len(shapes) == 1:
        out = (out,)
    if not isinstance(out, (tuple, list)) or len(out) != len(shapes):
        raise TypeError(f"the {name} cost's hessian must return {len(shapes)} arrays, got "
                        f"{type(out).__name__}")
    blocks = []
    for a, shape, what in zip(out, shapes, ("h_xx", "h_uu", "h_ux")):
        a = np.asarray(a, dtype=float)
        if a.shape != shape:
            raise ValueError(f"the {name} cost's hessian must give {what} of shape {shape}, "
                             f"got {a.shape}")
        blocks.append(a)
    return blocks


def custom_hessian_blocks(cost, states, controls):
    """Per-step Hessian blocks of a cost's custom terms: exact where the term gives them,
    else by central differences of its gradients.

    Exact blocks: a custom callable with a ``hessian`` attribute, called on the same
    arrays as the term itself, returning

    * ``running.hessian(X, U) -> (h_xx (B, T, n, n), h_uu (B, T, m, m), h_ux (B, T, m, n))``
      with X the states x_0 .. x_{T-1};
    * ``terminal.hessian(xT) -> h_xx (B, n, n)``;
    * ``trajectory.hessian(states, controls) -> (h_xx (B, T+1, n, n), h_uu (B, T, m, m),
      h_ux (B, T, m, n))``: its step-diagonal blocks (all DDP uses).

    Finite differences, for the others: for the step-separable terms (``running`` is a sum
    over steps of l(x_t, u_t); ``terminal`` depends on x_T alone) moving coordinate j of
    every step at once by h changes the gradient at step t by h times column j of that
    step's Hessian, so

        [H]_{:, j}  ~=  [g(z + h e_j) - g(z - h e_j)] / (2 h)      (all steps at once)

    costs 2 (n + m) gradient evaluations of the batch.  A ``trajectory`` term may couple
    steps; its step-diagonal blocks (all DDP can use: the cross-step blocks are dropped)
    are the same difference with one step moved at a time, 2 ((T+1) n + T m) evaluations.
    The step is ``h = FD_STEP (1 + max(|states|, |controls|))``, FD_STEP = eps^(1/3), the
    rule of :mod:`ctrlprop.objectives.second_order`: truncation O(h^2) against round-off
    O(eps / h); exact up to round-off for quadratic custom terms.  The blocks are
    symmetrized.

    Parameters
    ----------
    cost : TrajectoryCost or dict
        Only its custom terms are used (the quadratic terms have exact Hessians).
    states : ndarray, shape (B, T+1, n)
    controls : ndarray, shape (B, T, m)

    Returns
    -------
    h_xx : ndarray, shape (B, T+1, n, n)
        Blocks d2/dx_t2 (index T: the terminal state).
    h_uu : ndarray, shape (B, T, m, m)
    h_ux : ndarray, shape (B, T, m, n)

    Raises
    ------
    ValueError
        When states and controls do not have matching shapes, or a ``hessian`` returns
        blocks of the wrong shapes.
    """
    cost = as_cost(cost)
    S = np.asarray(states, dtype=float)
    U = np.asarray(controls, dtype=float)
    if S.ndim != 3 or U.ndim != 3 or U.shape[0] != S.shape[0] or S.shape[1] != U.shape[1] + 1:
        raise ValueError(f"states must have shape (B, T+1, n) and controls (B, T, m) with the "
                         f"same B and T; got {S.shape} and {U.shape}")
    B, T, m = U.shape
    n = S.shape[2]
    hxx = np.zeros((B, T + 1, n, n))
    huu = np.zeros((B, T, m, m))
    hxu = np.zeros((B, T, n, m))                    # d2/dx_t du_t (row x, column u)
    hux = np.zeros((B, T, m, n))                    # d2/du_t dx_t
    exact = {k: f is not None and callable(getattr(f, "hessian", None))
             for k, f in (("running", cost.running), ("terminal", cost.terminal),
                          ("trajectory", cost.trajectory))}
    if exact["running"]:
        a, b, c = _exact_blocks(cost.running, (S[:, :T].copy(), U.copy()),
                                ((B, T, n, n), (B, T, m, m), (B, T, m, n)), "running")
        hxx[:, :T] += a
        huu += b
        hxu += c.transpose(0, 1, 3, 2)
        hux += c
    if exact["terminal"]:
        hxx[:, T] += _exact_blocks(cost.terminal, (S[:, T].copy(),), ((B, n, n),),
                                   "terminal")[0]
    if exact["trajectory"]:
        a, b, c = _exact_blocks(cost.trajectory, (S.copy(), U.copy()),
                                ((B, T + 1, n, n), (B, T, m, m), (B, T, m, n)), "trajectory")
        hxx += a
        huu += b
        hxu += c.transpose(0, 1, 3, 2)
        hux += c
    h = FD_STEP * (1.0 + max(np.abs(S).max(initial=0.0), np.abs(U).max(initial=0.0)))
    St, Ut = S.transpose(1, 2, 0), U.transpose(1, 2, 0)      # the cost's (T+1, n, B) layout
    parts = []
    running = None if exact["running"] else cost.running
    terminal = None if exact["terminal"] else cost.terminal
    if running is not None or terminal is not None:
        parts.append((TrajectoryCost(None, 0.0, None, 0.0, 0.0, running, terminal)
                      .bind(n, m, T, B), True))
    if cost.trajectory is not None and not exact["trajectory"]:
        parts.append((TrajectoryCost(None, 0.0, None, 0.0, 0.0, trajectory=cost.trajectory)
                      .bind(n, m, T, B), False))

    def diff(bound, dS, dU):
        _, gxp, gup = bound.evaluate(St + h * dS, Ut + h * dU)
        _, gxm, gum = bound.evaluate(St - h * dS, Ut - h * dU)
        return (((gxp - gxm) / (2 * h)).transpose(2, 0, 1),
                ((gup - gum) / (2 * h)).transpose(2, 0, 1))

    zS, zU = np.zeros_like(St), np.zeros_like(Ut)
    for bound, separable in parts:
        for s in ([None] if separable else range(T + 1)):
            at = slice(None) if s is None else s          # the step(s) moved and read
            for j in range(n):
                dS = zS.copy()
                dS[at, j] = 1.0
                gx, gu = diff(bound, dS, zU)
                hxx[:, at, :, j] += gx[:, at]
                if s is None:
                    hux[:, :T, :, j] += gu
                elif s < T:
                    hux[:, s, :, j] += gu[:, s]
            if s is not None and s == T:
                continue
            for j in range(m):
                dU = zU.copy()
                dU[at, j] = 1.0
                gx, gu = diff(bound, zS, dU)
                huu[:, at, :, j] += gu[:, at]
                if s is None:
                    hxu[:, :T, :, j] += gx[:, :T]
                else:
                    hxu[:, s, :, j] += gx[:, s]
    hxx = 0.5 * (hxx + hxx.transpose(0, 1, 3, 2))
    huu = 0.5 * (huu + huu.transpose(0, 1, 3, 2))
    hux = 0.5 * (hux + hxu.transpose(0, 1, 3, 2))
    return hxx, huu, hux


class DDPTerms:
    """The model and cost of a trajectory problem as the callables of the DDP solver.

    Parameters
    ----------
    model : Dynamics
    x0 : array_like, shape (n,) or (B, n)
    horizon : int
        T >= 1 steps.
    cost : TrajectoryCost or dict, optional
        Default ``TrajectoryCost()``.
    exo : array_like, optional
        Exogenous inputs (see :class:`~ctrlprop.Dynamics`).

    Attributes
    ----------
    B, T, n, m : int
    n_aug : int
        Dimension of the solver's state z: n, or n + m when the cost has a control-rate
        term (S != 0, T > 1; see the module docstring).
    augmented : bool
    """

    def __init__(self, model, x0, horizon, cost=None, exo=None):
        check_model(model)
        self.model = model
        self.T = T = check_horizon(horizon)
        X0, _ = model.check_x0(x0)
        self.B = B = X0.shape[0]
        self.n, self.m = n, m = model.n_states, model.n_controls
        self.x0 = X0
        self.cost = as_cost(cost)
        self.bound = self.cost.bind(n, m, T, B)
        E = model.check_exo(exo, T, B)                      # (T, e, B)-broadcastable or None
        self.exo = None if E is None else \
            np.broadcast_to(E, (T, model.n_exo, B)).transpose(2, 0, 1).copy()   # (B, T, e)
        self.augmented = (not self.bound.S.zero) and T > 1
        self.n_aug = n + m if self.augmented else n
        self.quad = [b.matrix() for b in (self.bound.Q, self.bound.Qf, self.bound.R,
                                          self.bound.S)]
        self.goal = np.broadcast_to(self.bound.G, (T, n, B)).transpose(2, 0, 1)  # g_1..g_T
        self.rows = None

    def callables(self, second_order=False):
        """The keyword arguments of :func:`ctrlprop.solvers.ddp.ddp` for this problem:
        ``step``, ``cost``, ``jacobians``, ``cost_derivatives``; with ``second_order``
        (DDP) ``second_derivatives`` for the whole horizon when they fit in
        :data:`CURVATURE_BYTES`, else the per-step ``curvature`` (both None: iLQR); and
        ``closed_loop`` (a compiled forward pass, or None: the solver's loop of
        ``step``)."""
        nz = self.n_aug
        stored = self.B * self.T * nz * (nz + self.m) ** 2 * 8 <= CURVATURE_BYTES
        return dict(step=self.step, cost=self.cost_values, jacobians=self.jacobians,
                    cost_derivatives=self.cost_derivatives,
                    curvature=self.curvature if second_order and not stored else None,
                    second_derivatives=self.second_derivatives if second_order and stored
                    else None,
                    closed_loop=ClosedLoop.build(self.model, self.T, self.B, self.exo,
                                                 self.augmented))

    def initial_states(self):
        """The solver's initial states z_0, shape (B, n_aug)."""
        Z = np.zeros((self.B, self.n_aug))
        Z[:, :self.n] = self.x0
        return Z

    def _inputs(self, t, x, u):
        """Network input rows [x, u, e_t], (B, n_inputs); t is a step or None (all steps,
        x and u then (B, T, .))."""
        parts = [x, u]
        if self.exo is not None:
            parts.append(self.exo[:, t] if t is not None else self.exo)
        return np.concatenate(parts, axis=-1)

    def step(self, t, Z, U):
        """One model step of the batch: z_{t+1} (B, n_aug) from z_t (B, n_aug), u_t (B, m).
        Non-finite inputs give NaN rows (never an error)."""
        x = Z[:, :self.n]
        rows, ok = _finite_rows(self._inputs(t, x, U))
        Y = self.model.net.forward(rows)
        if self.model.residual:
            Y = Y + rows[:, :self.n]
        Y[~ok] = np.nan
        return np.concatenate([Y, U], axis=1) if self.augmented else Y

    def states(self, Z):
        """The model states x of solver states z: (..., n)."""
        return Z[..., :self.n]

    def cost_values(self, Z, U):
        """The trajectory cost J (B,) of states Z (B, T+1, n_aug) and controls U (B, T, m)."""
        S = self.states(Z)
        if not (np.isfinite(S).all() and np.isfinite(U).all()):
            J = np.full(self.B, np.nan)
            ok = np.isfinite(S).all(axis=(1, 2)) & np.isfinite(U).all(axis=(1, 2))
            if not ok.any():
                return J
            S, U = np.where(ok[:, None, None], S, 0.0), np.where(ok[:, None, None], U, 0.0)
            J[ok] = self.bound.values(S.transpose(1, 2, 0), U.transpose(1, 2, 0))[ok]
            return J
        return self.bound.values(S.transpose(1, 2, 0), U.transpose(1, 2, 0))

    def jacobians(self, Z, U):
        """Step Jacobians along the trajectory: f_x (B, T, n_aug, n_aug), f_u (B, T, n_aug, m).

        One :meth:`Dynamics.linearize` on all B T steps; it also keeps the network inputs
        of every step for :meth:`curvature`.  Non-finite steps give NaN Jacobians.
        """
        B, T, n, m = self.B, self.T, self.n, self.m
        rows = self._inputs(None, Z[:, :T, :n], U).reshape(B * T, -1)
        rows, ok = _finite_rows(rows)
        exo = None if self.exo is None else rows[:, None, n + m:]
        A, Bm = self.model.linearize(rows[:, :n], rows[:, n:n + m], exo)
        A[~ok], Bm[~ok] = np.nan, np.nan
        self.rows = rows.reshape(B, T, -1)
        nz = self.n_aug
        fx = np.zeros((B, T, nz, nz))
        fu = np.zeros((B, T, nz, m))
        fx[:, :, :n, :n] = A.reshape(B, T, n, n)
        fu[:, :, :n] = Bm.reshape(B, T, n, m)
        if self.augmented:
            fu[:, :, n:] = np.eye(m)
        return fx, fu

    def cost_derivatives(self, Z, U):
        """Gradients and Hessians of the cost per step, in the solver's state z.

        Parameters
        ----------
        Z : ndarray, shape (B, T+1, n_aug)
        U : ndarray, shape (B, T, m)

        Returns
        -------
        l_x : ndarray, shape (B, T+1, n_aug)
        l_u : ndarray, shape (B, T, m)
        l_xx : ndarray, shape (B, T+1, n_aug, n_aug)
        l_uu : ndarray, shape (B, T, m, m)
        l_ux : ndarray, shape (B, T, m, n_aug)
            Exact for the quadratic terms (the control rate through the augmented state);
            the custom terms' gradients exactly, their Hessians by
            :func:`custom_hessian_blocks`.
        """
        B, T, n, m, nz = self.B, self.T, self.n, self.m, self.n_aug
        Qm, Qfm, Rm, Sm = self.quad
        X = Z[:, :, :n]
        lx = np.zeros((B, T + 1, nz))
        lxx = np.zeros((B, T + 1, nz, nz))
        E = X[:, 1:] - self.goal                                       # x_t - g_t, t = 1..T
        lx[:, 1:T, :n] = E[:, :T - 1] @ Qm
        lx[:, T, :n] = E[:, T - 1] @ Qfm
        lxx[:, 1:T, :n, :n] = Qm
        lxx[:, T, :n, :n] = Qfm
        lu = U @ Rm
        luu = np.broadcast_to(Rm, (B, T, m, m)).copy()
        lux = np.zeros((B, T, m, nz))
        if self.augmented:
            d = U[:, 1:] - Z[:, 1:T, n:]                               # u_t - p_t, t >= 1
            Sd = d @ Sm
            lu[:, 1:] += Sd
            lx[:, 1:T, n:] -= Sd
            luu[:, 1:] += Sm
            lxx[:, 1:T, n:, n:] += Sm
            lux[:, 1:, :, n:] -= Sm
        if self.cost.custom:
            custom = TrajectoryCost(None, 0.0, None, 0.0, 0.0, self.cost.running,
                                    self.cost.terminal, self.cost.trajectory
                                    ).bind(n, m, T, B)
            _, gx, gu = custom.evaluate(X.transpose(1, 2, 0).copy(), U.transpose(1, 2, 0).copy())
            lx[:, :, :n] += gx.transpose(2, 0, 1)
            lu += gu.transpose(2, 0, 1)
            hxx, huu, hux = custom_hessian_blocks(self.cost, X, U)
            lxx[:, :, :n, :n] += hxx
            luu += huu
            lux[:, :, :, :n] += hux
        return lx, lu, lxx, luu, lux

    def second_derivatives(self):
        """The second derivatives of every step's model outputs at the trajectory of the
        last :meth:`jacobians` call, ``F2[b, t, i] = d2 F_i / dw dw`` for w = (z_t, u_t):
        shape (B, T, n_aug, n_aug + m, n_aug + m), symmetric in the last two axes (the
        solver's ``second_derivatives``; the augmented part of the step is linear: zeros).

        Output i's Hessians are :func:`dynamics_curvature` seeded with the unit costate
        e_i, for all B T steps at once (in chunks of about 20,000 direction-samples), so
        the horizon costs n batched Hessian products instead of T per-step ones."""
        if self.rows is None:
            raise RuntimeError("DDPTerms.second_derivatives needs a jacobians() call first")
        B, T, n, m = self.B, self.T, self.n, self.m
        d = n + m
        rows = self.rows.reshape(B * T, -1)
        F2 = np.empty((B * T, n, d, d))
        step = max(1, _CURVATURE_CHUNK // d)
        for s in range(0, B * T, step):
            r = rows[s:s + step]
            exo = r[:, d:] if self.exo is not None else None
            lam = np.zeros((r.shape[0], n))
            for i in range(n):
                lam[:] = 0.0
                lam[:, i] = 1.0
                cxx, cux, cuu = dynamics_curvature(self.model, r[:, :n], r[:, n:d], lam, exo)
                F2[s:s + step, i, :n, :n] = cxx
                F2[s:s + step, i, n:, :n] = cux
                F2[s:s + step, i, :n, n:] = cux.transpose(0, 2, 1)
                F2[s:s + step, i, n:, n:] = cuu
        F2 = F2.reshape(B, T, n, d, d)
        nz = self.n_aug
        if nz == n:
            return F2
        out = np.zeros((B, T, nz, nz + m, nz + m))          # z = [x; p]: w = (x, p, u)
        idx = np.r_[0:n, nz:nz + m]                          # x and u in w's order
        out[:, :, :n][..., idx[:, None], idx[None, :]] = F2
        return out

    def curvature(self, t, v):
        """DDP's second-order dynamics terms of step t at the trajectory of the last
        :meth:`jacobians` call, contracted with the costate v (B, n_aug) of z_{t+1}: one
        step's Hessian products (the solver's ``curvature``, used when the horizon's
        :meth:`second_derivatives` would not fit in :data:`CURVATURE_BYTES`).

        Returns ``(v.F_xx (B, n_aug, n_aug), v.F_ux (B, m, n_aug), v.F_uu (B, m, m))`` by
        :func:`dynamics_curvature` on the state part (the augmented part is linear).
        """
        if self.rows is None:
            raise RuntimeError("DDPTerms.curvature needs a jacobians() call first")
        n, m, nz = self.n, self.m, self.n_aug
        lam = v[:, :n]
        lam = np.where(np.isfinite(lam), lam, 0.0)
        r = self.rows[:, t]
        cxx, cux, cuu = dynamics_curvature(self.model, r[:, :n], r[:, n:n + m], lam,
                                           r[:, n + m:] if self.exo is not None else None)
        if nz == n:
            return cxx, cux, cuu
        Cxx = np.zeros((self.B, nz, nz))
        Cux = np.zeros((self.B, m, nz))
        Cxx[:, :n, :n] = cxx
        Cux[:, :, :n] = cux
        return Cxx, Cux, cuu
