"""State and path constraints along trajectories: against an explicit QP (linear dynamics,
quadratic cost, linear constraints), the exact constraint Jacobians and the
augmented-Lagrangian term against finite differences, a curved obstacle, bad input."""

import warnings

import numpy as np
import pytest
from scipy.optimize import minimize, LinearConstraint

import ctrlprop as cp
from ctrlprop.objectives.constraints import AugmentedLagrangian, PathConstraint, StateBounds, \
    as_constraints
from ctrlprop.objectives.trajectory import TrajectoryObjective
from ctrlprop.planning.trajectory import _scipy_constraints

A = np.array([[1.0, 0.1], [0.0, 1.0]])
B = np.array([[0.0], [0.1]])
T, X0 = 20, np.array([1.0, 0.0])


def linear_model():
    X = np.random.default_rng(0).uniform(-1, 1, (20, 3))
    net = cp.Network.mlp([3, 2], hidden="linear")
    cp.fit(net, X, X[:, :2] @ A.T + X[:, 2:] @ B.T, method="lm")
    return cp.Dynamics(net, 2)


def explicit_qp(vmin, umax):
    """min 1/2 sum_{t=1}^T |x_t|^2 + 0.05 sum u_t^2  s.t. x_t[1] >= vmin, |u_t| <= umax,
    as a QP in U by x_{t+1} = A x_t + B u_t, solved to high accuracy."""
    Phi = np.zeros((T, 2, 2))
    G = np.zeros((T, 2, T))
    P = np.eye(2)
    for t in range(T):
        P = A @ P
        Phi[t] = P
        for s in range(t + 1):
            G[t, :, s] = (np.linalg.matrix_power(A, t - s) @ B)[:, 0]
    Gf, c0 = G.reshape(2 * T, T), (Phi @ X0).reshape(2 * T)
    H = Gf.T @ Gf + 0.1 * np.eye(T)
    f = Gf.T @ c0
    rows = G[:, 1, :]                                     # x_t[1] = rows U + c0_v
    con = LinearConstraint(rows, vmin - (Phi @ X0)[:, 1], np.inf)
    r = minimize(lambda u: (0.5 * u @ H @ u + f @ u, H @ u + f), np.zeros(T), jac=True,
                 method="SLSQP", constraints=[con], bounds=[(-umax, umax)] * T,
                 options=dict(ftol=1e-15, maxiter=1000))          # active set: exact on a QP
    assert r.success
    return r.x, 0.5 * r.x @ H @ r.x + f @ r.x + 0.5 * c0 @ c0


@pytest.mark.parametrize("method", ["L-BFGS-B", "ilqr", "ddp", "SLSQP", "trust-constr"])
def test_state_bounds_match_the_explicit_qp(method):
    u_qp, J_qp = explicit_qp(-0.3, 0.8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)      # trust-constr's quasi-Newton note
        r = cp.optimize_trajectory(linear_model(), X0, T, dict(Q=1.0, R=0.1), method=method,
                                   bounds=(-0.8, 0.8), maxiter=500,
                                   options={"ftol": 1e-12} if method == "SLSQP" else None,
                                   constraints=StateBounds([-np.inf, -0.3], [np.inf, np.inf]))
    assert r.success and r.constraint_violation <= 1e-6
    assert r.states[1:, 1].min() >= -0.3 - 1e-6 and np.abs(r.controls).max() <= 0.8
    np.testing.assert_allclose(r.controls[:, 0], u_qp, atol=1e-4)
    assert abs(r.fun - J_qp) <= 1e-6 * J_qp
    qp_free = cp.optimize_trajectory(linear_model(), X0, T, dict(Q=1.0, R=0.1),
                                     bounds=(-0.8, 0.8), maxiter=500)
    assert qp_free.states[1:, 1].min() < -0.35             # the constraint is active


def obstacle(center, radius):
    """Keep the point (x_0, x_1) of the state outside a disc: r^2 - |p - center|^2 <= 0."""
    def c(X, U):
        d = X[..., :2] - center
        val = radius ** 2 - (d * d).sum(-1)
        cx = np.zeros(X.shape[:-1] + (1, X.shape[-1]))
        cx[..., 0, :2] = -2.0 * d
        return val[..., None], cx, None
    return PathConstraint(c, 1, name="obstacle")


def point_mass():
    """x = [px, py, vx, vy], u = [ax, ay], dt = 0.1 (an exact linear model)."""
    Ad = np.eye(4)
    Ad[0, 2] = Ad[1, 3] = 0.1
    Bd = np.zeros((4, 2))
    Bd[2, 0] = Bd[3, 1] = 0.1
    X = np.random.default_rng(1).uniform(-1, 1, (40, 6))
    net = cp.Network.mlp([6, 4], hidden="linear")
    cp.fit(net, X, X[:, :4] @ Ad.T + X[:, 4:] @ Bd.T, method="lm")
    return cp.Dynamics(net, 4)


@pytest.mark.parametrize("method", ["L-BFGS-B", "ilqr", "SLSQP"])
def test_a_curved_obstacle_is_avoided(method):
    model = point_mass()
    cost = dict(goal=[2.0, 0.0, 0.0, 0.0], Q=[0.0, 0.0, 0.0, 0.0], Qf=100.0, R=0.1)
    con = obstacle(np.array([1.0, 0.0]), 0.4)
    x0 = np.array([0.0, 0.05, 0.0, 0.0])
    r = cp.optimize_trajectory(model, x0, 30, cost, method=method, constraints=con,
                               bounds=(-5, 5), maxiter=300)
    d = np.linalg.norm(r.states[1:, :2] - [1.0, 0.0], axis=1)
    assert r.success and d.min() >= 0.4 - 1e-5 and r.constraint_violation <= 1e-5
    assert np.linalg.norm(r.states[-1, :2] - [2.0, 0.0]) < 0.05     # and it gets there
    free = cp.optimize_trajectory(model, x0, 30, cost, bounds=(-5, 5), maxiter=300)
    assert np.linalg.norm(free.states[1:, :2] - [1.0, 0.0], axis=1).min() < 0.3


def test_scipy_constraint_jacobian_is_exact_on_a_nonlinear_model():
    rng = np.random.default_rng(2)
    net = cp.Network.mlp([4, 6, 2], seed=3)
    model = cp.Dynamics(net, 2, residual=True, n_exo=0)
    cons = as_constraints([obstacle(np.array([0.2, -0.1]), 0.3),
                           StateBounds([-0.5, -np.inf], [0.5, 0.4])], 2, 2)
    obj = TrajectoryObjective(model, rng.normal(size=(2, 2)) * 0.3, 5, dict(Q=1.0))
    nc = _scipy_constraints(obj, cons)
    u = rng.normal(size=obj.n_vars) * 0.5
    J = nc.jac(u)
    h = 1e-6
    fd = np.array([(nc.fun(u + h * e) - nc.fun(u - h * e)) / (2 * h) for e in np.eye(u.size)]).T
    np.testing.assert_allclose(J, fd, rtol=1e-6, atol=1e-8)
    assert J.shape == (2 * 5 * 4, obj.n_vars)                # 1 + 3 components per step


def test_augmented_lagrangian_term_gradient_and_gauss_newton_hessian():
    rng = np.random.default_rng(4)
    cons = as_constraints(StateBounds([-0.2, -0.3], [0.25, 0.3]), 2, 1)
    S, U = rng.normal(size=(3, 6, 2)) * 0.4, rng.normal(size=(3, 5, 1))
    lam = np.abs(rng.normal(size=(3, 5, cons.K))) * (rng.uniform(size=(3, 5, cons.K)) > 0.5)
    term = AugmentedLagrangian(cons, lam, 7.0)
    v, gS, gU = term(S, U)
    h = 1e-6
    for idx in [(0, 1, 0), (1, 3, 1), (2, 5, 0), (2, 0, 1)]:
        d = np.zeros_like(S)
        d[idx] = h
        fd = (term(S + d, U)[0] - term(S - d, U)[0]) / (2 * h)
        assert fd[idx[0]] == pytest.approx(gS[idx], rel=1e-6, abs=1e-9)
    assert not gS[:, 0].any()                               # x_0 is not constrained
    hxx, huu, hux = term.hessian(S, U)
    d = np.zeros_like(S)
    d[:, 2, 1] = h                                          # linear constraints: GN is exact
    fd = (term(S + d, U)[1] - term(S - d, U)[1]) / (2 * h)
    np.testing.assert_allclose(hxx[:, 2, :, 1], fd[:, 2], rtol=1e-5, atol=1e-7)


def test_bounds_hold_with_constraints_and_batches():
    model = linear_model()
    r = cp.optimize_trajectory(model, [[1.0, 0.0], [0.5, 0.2]], 15, dict(Q=1.0, R=0.1),
                               method="ilqr", bounds=(-0.5, 0.5), maxiter=200,
                               constraints=StateBounds([-np.inf, -0.25], [np.inf, np.inf]))
    assert r.constraint_violation.shape == (2,) and np.all(r.constraint_violation <= 1e-6)
    assert np.abs(r.controls).max() <= 0.5 and r.multipliers.shape == (2, 15, 1)
    assert r.history["violation"][-1] <= 1e-6


def test_constraint_bad_input():
    model = linear_model()
    sb = StateBounds([-1.0, -1.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="'lm' cannot take constraints"):
        cp.optimize_trajectory(model, X0, 5, method="lm", constraints=sb)
    with pytest.raises(ValueError, match="unknown constraint_options"):
        cp.optimize_trajectory(model, X0, 5, constraints=sb, constraint_options={"tl": 1})
    with pytest.raises(ValueError, match="without constraints"):
        cp.optimize_trajectory(model, X0, 5, constraint_options={"tol": 1e-3})
    with pytest.raises(ValueError, match="must have 2 entries"):
        cp.optimize_trajectory(model, X0, 5, constraints=StateBounds([0.0] * 3, [1.0] * 3))
    with pytest.raises(TypeError, match="constraints must be"):
        cp.optimize_trajectory(model, X0, 5, constraints="x >= 0")
    with pytest.raises(ValueError, match="lo <= hi"):
        StateBounds([1.0, 0.0], [0.0, 1.0])
    bad = PathConstraint(lambda X, U: (np.zeros(X.shape[:2] + (2,)), None, None), 1, "bad")
    with pytest.raises(ValueError, match=r"bad must return values c of shape \(1, 5, 1\)"):
        cp.optimize_trajectory(model, X0, 5, constraints=bad)
    with pytest.raises(ValueError, match="rho > 0"):
        cp.optimize_trajectory(model, X0, 5, constraints=sb, constraint_options={"rho": 0.0})
