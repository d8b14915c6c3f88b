"""Controller training through a frozen model (Nguyen & Widrow; Jordan & Rumelhart's
"distal teacher"), and closed-loop simulation.

A controller network ``u_t = c(x_t[, goal]; v)`` drives the frozen dynamics model from
many initial states at once; the mean trajectory cost is back-propagated through the
model AND the controller at every step, and only the controller's weights v move::

    forward, t = 0 .. T-1:   u_t = c(x_t, g; v),   x_{t+1} = F(x_t, u_t)   (F = f, or x + f)
    backward, lambda_T = c_T (the cost's gradient at x_T); for t = T-1 .. 0:
        (gx_t, gu_t) = lambda_{t+1}^T df/d(x_t, u_t)          model: input deltas only
        du_t        = gu_t + dJ/du_t|cost                      the controller's output delta
        (dv_t, gc_t) = du_t^T dc/d(v, x_t)                     controller: weights and inputs
        dJ/dv      += dv_t
        lambda_t    = c_t + gx_t + gc_t  (+ lambda_{t+1} when residual)

``gc_t`` is the path through the controller's input: u_t depends on x_t, so the state
cotangent collects it too.  Bounded controls are the user's choice of the controller's
output transfer and scaling, e.g. tanh outputs and ``controller.set_scaling(y_scale=u_max)``
for ``u = u_max * tanh(.)``.  The trained controller is an ordinary Network (save, load,
:func:`closed_loop`).  The model's weights are never changed.
"""

import numpy as np

from ..core.checks import as_float, check_nonneg
from ..core.network import Network
from .trajectory import ModelDimensions, check_horizon, check_model
from .unroll import Scales, Unroll, affine_ops, fast_products, ident, prune
from .cost import as_cost

__all__ = ["ControllerObjective"]


def _check_controller(model, controller):
    """Raise unless the controller maps n (or 2n, with the goal) inputs to m outputs."""
    if not isinstance(controller, Network):
        raise TypeError(f"controller must be a ctrlprop Network, got "
                        f"{type(controller).__name__}")
    n, m = model.n_states, model.n_controls
    if controller.n_outputs != m:
        raise ValueError(f"the controller has {controller.n_outputs} outputs but the model "
                         f"takes {m} controls")
    if controller.n_inputs not in (n, 2 * n):
        raise ValueError(f"the controller must have {n} inputs (u = c(x)) or {2 * n} "
                         f"(u = c(x, goal)) for a model with {n} states, got "
                         f"{controller.n_inputs}")
    return controller.n_inputs == 2 * n


def check_goals(goal, n, B, needed):
    """Goal states as (B, n), or None; required when the controller reads the goal."""
    if goal is None:
        if needed:
            raise ValueError(f"the controller reads the goal ({2 * n} inputs): pass goal= "
                             f"as ({n},) or ({B}, {n})")
        return None
    g = as_float(goal, "goal")
    if g.shape == (n,):
        g = np.broadcast_to(g, (B, n))
    if g.shape != (B, n):
        raise ValueError(f"goal must have shape ({n},) or ({B}, {n}) for {B} initial "
                         f"states, got {g.shape}")
    if not np.all(np.isfinite(g)):
        raise ValueError("goal contains NaN or inf")
    return g.copy()


class ControllerObjective(ModelDimensions):
    """Mean closed-loop trajectory cost as a function of the controller's weights.

    ``obj(v) -> (F, dF/dv)`` with ``F = mean_b J_b + l2/2 |v_nonbias|^2`` (biases not
    regularised), for ``scipy.optimize.minimize(obj, controller.weights, jac=True)``.

    Parameters
    ----------
    model : Dynamics
        The frozen dynamics model.
    controller : Network
        n inputs (u = c(x)) or 2n inputs (u = c(x, goal)), m outputs.
    x0 : array_like, shape (B, n) or (n,)
        Initial states, all rolled out together.
    horizon : int
    cost : TrajectoryCost or dict, optional
    goal : array_like, shape (n,) or (B, n), optional
        Goal state(s): the cost's goal (then the cost must not have one) and, for a
        2n-input controller, its second input.
    exo : array_like, optional
        The model's exogenous inputs.
    l2 : float
        Weight decay on the controller's non-bias weights.
    """

    def __init__(self, model, controller, x0, horizon, cost=None, goal=None, exo=None,
                 l2=0.0):
        check_model(model)
        reads_goal = _check_controller(model, controller)
        self.model, self.controller = model, controller
        self.T = T = check_horizon(horizon)
        X0, _ = model.check_x0(x0)
        self.B = B = X0.shape[0]
        n, m = model.n_states, model.n_controls
        self.goal = check_goals(goal, n, B, reads_goal)
        cost0 = cost = as_cost(cost)
        if self.goal is not None:
            if cost.goal is not None:
                raise ValueError("the goal was given twice (goal= and cost.goal); give it once")
            cost = cost.with_goal(self.goal[:, None, :])
        self.cost = cost
        self._cost = cost.bind(n, m, T, B)
        self.l2 = check_nonneg(l2, "l2")
        self._decay = np.array([s != "bias" for s, _ in controller.weight_labels], float)
        if model.is_ensemble:
            raise ValueError("train_controller needs a model built on a single Network; got an "
                             "ensemble model (train through one member: "
                             "Dynamics(model.net.member(0), ...))")
        self._ur = Unroll(model, T, B)
        self._ur.set_x0(X0)
        self._exo = model.check_exo(exo, T, B)
        self._ur.set_exo(self._exo)
        self._args = (X0, T, cost0, self.goal,            # for pickling (__reduce__)
                      None if exo is None else np.array(exo, dtype=np.float64))
        cp = controller.plan
        self._cw = cp.new_weights()
        self._cb = [cp.new_buffers(B, self._cw) for _ in range(T)]
        self._grad = np.empty(controller.n_weights)
        self._last = None
        self._compile()
        self.nfev = 0

    def __reduce__(self):
        # pickled as its constructor's arguments (the model, the controller and the problem
        # data): the compiled closed loop -- op lists over the buffers of both networks --
        # is rebuilt by the constructor on unpickling
        X0, T, cost, goal, exo = self._args
        return (ControllerObjective, (self.model, self.controller, X0, T, cost, goal, exo,
                                      self.l2))

    def _compile(self):
        """Build the closed-loop forward and backward op lists for the current scalings."""
        model, ur, T = self.model, self._ur, self.T
        n, m = model.n_states, model.n_controls
        ur.sync()
        ur.recompile()                                     # the model's steps (retargeted)
        sc, csc = ur.sc, Scales(self.controller)
        mx, sx, my, sy = sc.mx, sc.sx, sc.my, sc.sy
        cmx, csx, cmy, csy = csc.mx, csc.sx, csc.my, csc.sy
        self._key_scal = (model.net.input_scaling, model.net.output_scaling,
                          self.controller.input_scaling, self.controller.output_scaling)
        self._sc = (mx, sx, my, sy, cmx, csx, cmy, csy)
        if self.goal is not None:                          # goal rows: fixed per problem
            for cb in self._cb:
                np.copyto(cb.Ov[0][n:], (self.goal.T - cmx[n:]) / csx[n:])
        # forward, per step: controller state input  xc = (x - cmx)/csx  with x = x_in sx + mx;
        # model control input  (u - mx_u)/sx_u  with u = Yc csy + cmy; then the model's step
        a1, b1 = ident(sx[:n] / csx[:n], 1.0), ident((mx[:n] - cmx[:n]) / csx[:n], 0.0)
        a2 = ident(csy / sx[n:n + m], 1.0)
        b2 = ident((cmy - mx[n:n + m]) / sx[n:n + m], 0.0)
        self._crefresh, copies = [], {}
        fwd = []
        for t, cb in enumerate(self._cb):
            fwd += affine_ops(cb.Ov[0][:n], ur.x_in[t], a1, b1)
            fwd += fast_products(prune(cb.fwd_ops), self._cw, self._crefresh, copies)
            fwd += affine_ops(ur.IN[t, :m], cb.Y, a2, b2)
            fwd += ur.step_fwd[t]
        # backward: controller seed  csy * du_t = G0m_u * (csy / sx_u) + csy * CU_t;
        # sig_{t-1} = sy*c_t + G0m_x * (sy/sx_x) + G0c_x * (sy/csx_x)  (+ sig_t if residual)
        self._CUs = np.zeros((T, m, self.B))
        cdirect = self.controller.plan.out_direct
        self._csig = [cb.G[-1] if cdirect else np.empty((m, self.B)) for cb in self._cb]
        r_u = ident(csy / sx[n:n + m], 1.0)
        r_m = ident(sy / sx[:n], 1.0)
        r_c = ident(sy / csx[:n], 1.0)
        self._tmp = np.empty((n, self.B))
        sig, bwd = ur.sig, [(np.copyto, (ur.sig[T - 1], ur.Cs[T])), (self._grad.fill, (0.0,))]
        for t in range(T - 1, -1, -1):
            cb, gm = self._cb[t], ur.GB[t]
            if not ur.plan.out_direct:
                bwd.append((ur.plan.seed, (ur.bufs[t], sig[t], None)))
            bwd += ur.step_bwd[t]
            cs = self._csig[t]
            bwd += affine_ops(cs, gm[n:n + m], r_u, None)
            bwd.append((np.add, (cs, self._CUs[t], cs)))
            if not cdirect:
                bwd.append((self.controller.plan.seed, (cb, cs, None)))
            bwd += fast_products(prune(cb.bwd_ops(True, t > 0)), self._cw, self._crefresh,
                                  copies)
            bwd.append((np.add, (self._grad, cb.grad, self._grad)))
            if t == 0:
                break
            dst = sig[t - 1]
            bwd += affine_ops(dst, cb.G[0][:n], r_c, None)
            if r_m is None:
                bwd.append((np.add, (dst, gm[:n], dst)))
            else:
                bwd += [(np.multiply, (gm[:n], r_m, self._tmp)), (np.add, (dst, self._tmp, dst))]
            bwd.append((np.add, (dst, ur.Cs[t], dst)))
            if model.residual:
                bwd.append((np.add, (dst, sig[t], dst)))
        self._fwd, self._bwd = fwd, bwd

    def _sync(self, v):
        """Load the controller weights v; pick up changed model weights or any scaling."""
        model, c = self.model, self.controller
        key = (model.net.input_scaling, model.net.output_scaling, c.input_scaling,
               c.output_scaling)
        if any(a is not b for a, b in zip(key, self._key_scal)):
            self._compile()
        self._ur.sync()
        self._cw.load(v)
        for C, A in self._crefresh:
            np.copyto(C, A)

    def rollout(self, v=None):
        """Closed-loop states (B, T+1, n) and controls (B, T, m) with controller weights v
        (default: the controller's own)."""
        v = self._check_v(v)
        S, U = self._forward(v)
        return S.transpose(2, 0, 1).copy(), U.transpose(2, 0, 1).copy()

    def _check_v(self, v):
        """v as a flat float vector of the controller's weights."""
        if v is None:
            return self.controller.weights
        v = as_float(v, "v").reshape(-1)
        if v.size != self.controller.n_weights:
            raise ValueError(f"v must have {self.controller.n_weights} entries (the "
                             f"controller's weights), got {v.size}")
        return v

    def _forward(self, v):
        """Run the closed loop; raw states (T+1, n, B) and controls (T, m, B)."""
        self._sync(v)
        for f, a in self._fwd:
            f(*a)
        return self._ur.states(), self._ur.controls()

    def costs(self, v=None):
        """Per-initial-state trajectory costs (B,) of the closed loop."""
        S, U = self._forward(self._check_v(v))
        return self._cost.values(S, U)

    def __call__(self, v):
        """``(F, dF/dv)``: mean cost (+ weight decay) and its gradient (n_weights,)."""
        v = self._check_v(v)
        S, U = self._forward(v)
        vals, CX, CU = self._cost.evaluate(S, U)
        sy, csy = self._sc[3], self._sc[7]
        np.multiply(CX, sy, out=self._ur.Cs)
        np.multiply(CU, csy, out=self._CUs)
        for f, a in self._bwd:
            f(*a)
        self.nfev += 1
        self.last_costs = vals
        g = self._grad / self.B
        f = float(vals.mean())
        if self.l2:
            dv = self._decay * v
            f += 0.5 * self.l2 * float(dv @ dv)
            g += self.l2 * dv
        self._last = (v.copy(), f)
        return f, g

    def value(self, v):
        """F at v (reusing the last evaluation when it was at v)."""
        v = self._check_v(v)
        m, c = self.model.net, self.controller
        key = (m.input_scaling, m.output_scaling, c.input_scaling, c.output_scaling)
        if (self._last is not None and np.array_equal(v, self._last[0])
                and all(a is b for a, b in zip(key, self._key_scal))
                and np.array_equal(self._ur.wts.w, m.weights)):
            return self._last[1]
        return self(v)[0]


