"""Exact Hessian-vector products of a trajectory cost with respect to the controls.

:func:`trajectory_hessp` gives ``H(u) p`` for :meth:`TrajectoryObjective.hessp
<ctrlprop.TrajectoryObjective.hessp>` -- what ``scipy.optimize.minimize`` asks for with
``method="Newton-CG"``, ``"trust-ncg"``, ``"trust-krylov"`` or ``"trust-constr"`` -- by
forward-over-reverse differentiation through time (the second-order adjoint): one forward
tangent sweep and one backward sweep of the adjoint and of its R-derivative, each step
through the network's :class:`~ctrlprop.core.engine.Trace` (``jvp``, ``backward``,
``hvp``), which works in raw units and applies the network's own input/output scaling.

The quadratic terms of the cost (Q, Qf, R, S) enter with their exact Hessians.  The custom
callables give gradients only, so their Hessian product is the central difference of their
gradient along the tangent (see :func:`trajectory_hessp`); it is exact, up to round-off,
for custom terms that are quadratic.
"""

import numpy as np

from .cost import TrajectoryCost

__all__ = ["trajectory_hessp"]

# Step of the central difference for the custom terms, relative to the size of the point:
# eps^(1/3) balances the truncation error O(h^2) against the round-off O(eps / h).
FD_STEP = np.finfo(float).eps ** (1.0 / 3.0)

# ------------------------------------------------------------------------------------------
# The math.  Notation: x_t is [n] (the state), u_t is [m] (the control), e_t the exogenous
# inputs (fixed); t = 0 .. T-1 are the T steps; B independent trajectories are carried as a
# batch (every line below holds per trajectory, and the network is called on the B
# trajectories of a step at once).  The model is
#
#     x_{t+1} = F(x_t, u_t, e_t) = f(x_t, u_t, e_t)    (+ x_t when residual)
#
# with f the network, A_t = dF/dx_t, B_t = dF/du_t, and J(x_1 .. x_T, u_0 .. u_{T-1}) the
# cost with explicit partials c_t = dJ/dx_t (c_0 = 0 for the quadratic terms) and
# k_t = dJ/du_t.  The gradient is the adjoint (BPTT) sweep:
#
#     lambda_T = c_T
#     lambda_t = c_t + A_t^T lambda_{t+1}                  t = T-1 .. 1
#     g_t      = dJ/du_t = k_t + B_t^T lambda_{t+1}        t = T-1 .. 0
#
# H p is the directional derivative R{g} = d/dr g(u + r p)|_{r=0} (Pearlmutter's R-operator).
# Forward, the tangent of the rollout (R{u_t} = du_t = p_t, R{x_0} = 0, R{e_t} = 0):
#
#     dx_0 = 0,   dx_{t+1} = A_t dx_t + B_t du_t  (+ dx_t when residual: A_t has the I)
#
# which is Trace.jvp of step t with input direction v_t = (dx_t, du_t, 0).  Then the cost
# Hessian applied to the tangent, R{c_t} and R{k_t}; for the quadratic terms exactly
#
#     R{c_t} = Q dx_t (1 <= t < T),   R{c_T} = Qf dx_T,   R{c_0} = 0
#     R{k_t} = R du_t + S (du_t - du_{t-1}) - S (du_{t+1} - du_t)   (missing terms at the ends)
#
# (the gradient of the same quadratic terms with goal 0, evaluated at (dx, du)).  Backward,
# differentiating the adjoint sweep, with the network's input Hessian of the scalar
# lambda_{t+1}^T F(x_t, u_t, e_t) entering through the tangent of A_t, B_t:
#
#     R{lambda_T} = R{c_T}
#     R{lambda_t} = R{c_t} + A_t^T R{lambda_{t+1}} + [d2(lambda_{t+1}^T f)/dx_t d(x_t, u_t)] v_t
#     (H p)_t     = R{k_t} + B_t^T R{lambda_{t+1}} + [d2(lambda_{t+1}^T f)/du_t d(x_t, u_t)] v_t
#
# The last two terms of both lines are one Trace.hvp at step t: seeded with the output
# cotangent dY = lambda_{t+1} and R{dE/dY} = R{lambda_{t+1}} (a constant in RY), along the
# input direction v_t, it returns R{J_f^T lambda_{t+1}} over all inputs, raw units:
# its state rows go into R{lambda_t}, its control rows into (H p)_t, its exogenous rows are
# dropped.  The first-order lambda_t comes from Trace.backward of the same trace.  With
# residual=True the identity path adds lambda_{t+1} to lambda_t and R{lambda_{t+1}} to
# R{lambda_t} (the identity has no curvature).  Cost: T forward passes and T jvps forward;
# T forward passes again, T vector-Jacobian products and T hvps backward.  Each step's trace
# is made where it is used, in the network's shared buffers (nothing is allocated per step
# and no trace is kept across another forward pass).
#
# Custom cost terms (running, terminal, trajectory) give gradients c(z) but no Hessian,
# z = (x_0 .. x_T, u_0 .. u_{T-1}) of the whole batch.  Their R{c}, R{k} is approximated by
#
#     [c(z + h d) - c(z - h d)] / (2 h),   d = (dx, du),   h = FD_STEP (1 + |z|_inf) / |d|_inf
#
# (FD_STEP = eps^(1/3) ~ 6e-6): a central difference along the tangent.  Its truncation
# error is (h^2 / 6) c'''[d, d, d] and its round-off ~ eps |c| / h; for terms whose
# curvature varies on the scale of z both are ~ eps^(2/3) ~ 4e-11 relative.  The step
# h |d| ~ FD_STEP (1 + |z|) is absolute, so for terms whose curvature varies on a fixed
# scale the truncation error is ~ (FD_STEP (1 + |z|))^2 / 6 relative: ~1e-9 at |z| ~ 10,
# ~1e-6 at |z| ~ 200 (e.g. cos(x) of large states).  Exact up to round-off for quadratic
# custom terms (their gradient is affine).
# ------------------------------------------------------------------------------------------


def trajectory_hessp(model, cost, S, U, exo, P):
    """H(u) p of a trajectory cost: the second-order adjoint (see the comment above the code).

    Parameters
    ----------
    model : Dynamics
    cost : BoundCost
        The cost bound to the model's dimensions, horizon and batch
        (``TrajectoryCost.bind``).
    S : ndarray, shape (T+1, n, B)
        States of the rollout at the controls U, raw units.
    U : ndarray, shape (T, m, B)
        Controls, raw units.
    exo : ndarray broadcastable to (T, e, B), or None
        Exogenous inputs, raw units (None without any); their tangent is zero.
    P : ndarray, shape (T, m, B)
        The direction p.

    Returns
    -------
    HP : ndarray, shape (T, m, B)
        The Hessian of the total cost (summed over the batch) with respect to the controls,
        applied to P.  Exact for the quadratic terms; for custom callables their Hessian
        product is the central difference of their gradient along the tangent
        ``(dx, du)`` with step ``h = eps^(1/3) (1 + |z|_inf) / |(dx, du)|_inf``, z the
        states and controls: ~ eps^(2/3) relative for terms whose curvature varies on
        the scale of z, ~ (eps^(1/3) (1 + |z|))^2 / 6 for terms whose curvature varies on
        a unit scale (1e-9 at |z| ~ 10).
    """
    net = model.net
    (T, m, B), n = U.shape, S.shape[1]
    ni = net.n_inputs
    e = ni - n - m
    if not np.any(P):
        return np.zeros_like(P)
    # network inputs X_t (B, ni) and input directions V_t = (dx_t, du_t, 0) of every step
    X = np.empty((T, B, ni))
    X[:, :, :n] = S[:T].transpose(0, 2, 1)
    X[:, :, n:n + m] = U.transpose(0, 2, 1)
    if e:
        X[:, :, n + m:] = np.broadcast_to(exo, (T, e, B)).transpose(0, 2, 1)
    V = np.zeros((T, B, ni))
    V[:, :, n:n + m] = P.transpose(0, 2, 1)
    dS = np.zeros_like(S)                                    # dx_0 = 0

    # forward: dx_{t+1} = A_t dx_t + B_t du_t
    for t in range(T):
        tr = net.trace(X[t])
        dy = tr.jvp(v_x=V[t])                                # (B, n)
        if model.residual:
            dy += V[t, :, :n]
        dS[t + 1] = dy.T
        if t + 1 < T:
            V[t + 1, :, :n] = dy

    # the cost: first-order partials, and its Hessian applied to (dx, du)
    _, CX, CU = cost.evaluate(S, U)
    RCX, RCU = _cost_hessp(cost, S, U, dS, P)

    # backward: lambda_t and R{lambda_t}; (H p)_t from the control rows of each hvp
    HP = RCU
    lam, rlam = CX[T].T.copy(), RCX[T].T.copy()              # (B, n)
    for t in range(T - 1, -1, -1):
        tr = net.trace(X[t])
        h = tr.hvp(lam, lambda RY, r=rlam: r, v_x=V[t], wrt="inputs")    # (B, ni)
        HP[t] += h[:, n:n + m].T
        if t == 0:
            break
        g = tr.backward(lam, wrt="inputs")
        new_lam, new_rlam = CX[t].T + g[:, :n], RCX[t].T + h[:, :n]
        if model.residual:
            new_lam += lam
            new_rlam += rlam
        lam, rlam = new_lam, new_rlam
    return HP


def _cost_hessp(cost, S, U, dS, dU):
    """The cost's Hessian applied to (dS, dU): (R{dJ/dS} (T+1, n, B), R{dJ/dU} (T, m, B)).

    The quadratic terms exactly: their gradient with goal 0 at (dS, dU).  Custom terms by
    the central difference of their gradient along (dS, dU) (see the module comment).
    """
    c, (T, m, B), n = cost.cost, dU.shape, dS.shape[1]
    quad = TrajectoryCost(None, c.Q, c.Qf, c.R, c.S).bind(n, m, T, B)
    _, RCX, RCU = quad.evaluate(dS, dU)
    if not cost.custom:
        return RCX, RCU
    custom = TrajectoryCost(None, 0.0, None, 0.0, 0.0, c.running, c.terminal,
                            c.trajectory).bind(n, m, T, B)
    size = max(np.abs(S).max(), np.abs(U).max())
    dmax = max(np.abs(dS).max(), np.abs(dU).max())
    h = FD_STEP * (1.0 + size) / dmax
    _, gxp, gup = custom.evaluate(S + h * dS, U + h * dU)
    _, gxm, gum = custom.evaluate(S - h * dS, U - h * dU)
    RCX += (gxp - gxm) / (2.0 * h)
    RCU += (gup - gum) / (2.0 * h)
    return RCX, RCU
