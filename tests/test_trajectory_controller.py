"""Controller training through a frozen model (distal teacher) and closed-loop runs."""

import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st
from scipy.linalg import solve_discrete_are

import ctrlprop as cp
from conftest import random_dag
from test_trajectory import assert_gradient, fd_resolvable
from test_trajectory_opt import linear_model, spd

dags = st.integers(0, 2 ** 32 - 1).map(lambda s: np.random.default_rng(s))


def scale(net, rng):
    net.set_scaling(rng.standard_normal(net.n_inputs), rng.uniform(0.5, 2, net.n_inputs),
                    rng.standard_normal(net.n_outputs), rng.uniform(0.5, 2, net.n_outputs))


def naive_closed_loop_cost(model, ctrl, X0, T, goal, Q, Qf, R, S_):
    """Mean J over the initial states, one network call at a time (the lecture's 1/2)."""
    tot = 0.0
    for b, x in enumerate(X0):
        g = goal[b] if goal is not None else np.zeros(len(x))
        xs, us = [x], []
        for t in range(T):
            inp = xs[-1] if ctrl.n_inputs == len(x) else np.concatenate([xs[-1], g])
            us.append(ctrl.forward(inp))
            xs.append(model.step(xs[-1], us[-1]))
        J = sum((xs[t] - g) @ Q @ (xs[t] - g) for t in range(1, T))
        J += (xs[T] - g) @ Qf @ (xs[T] - g)
        J += sum(u @ R @ u for u in us)
        J += sum((us[t] - us[t - 1]) @ S_ @ (us[t] - us[t - 1]) for t in range(1, T))
        tot += 0.5 * J
    return tot / len(X0)


@settings(max_examples=12, deadline=None)
@given(rng=dags, T=st.sampled_from([1, 3, 6]), residual=st.booleans(), scaled=st.booleans(),
       with_goal=st.booleans())
def test_controller_gradient_matches_finite_differences(rng, T, residual, scaled, with_goal):
    n, m, B = 2, int(rng.integers(1, 3)), 3
    model_net = random_dag(rng, n_in=n + m, n_comp=n + 3, n_out=n)
    ctrl = random_dag(rng, n_in=2 * n if with_goal else n, n_comp=m + 2, n_out=m)
    if scaled:
        scale(model_net, rng)
        scale(ctrl, rng)
    model = cp.Dynamics(model_net, n, residual=residual)
    X0 = rng.standard_normal((B, n))
    goal = rng.standard_normal((B, n)) if with_goal else None
    Q, Qf, R, S_ = spd(rng, n), spd(rng, n), spd(rng, m), spd(rng, m)
    obj = cp.ControllerObjective(model, ctrl, X0, T, dict(Q=Q, Qf=Qf, R=R, S=S_), goal=goal)
    v = ctrl.weights.copy()
    f, g = obj(v)
    assert f == pytest.approx(naive_closed_loop_cost(model, ctrl, X0, T, goal, Q, Qf, R, S_),
                              rel=1e-10)
    assume(fd_resolvable(f, g))
    assert_gradient(obj, v)


def test_controller_gradient_with_custom_cost_exo_and_weight_decay(rng):
    n, m = 2, 1
    net = random_dag(rng, n_in=n + m + 1, n_comp=5, n_out=n)
    model = cp.Dynamics(net, n, n_exo=1)
    ctrl = cp.Network.mlp([n, 4, m], hidden="tanh", output="tanh", seed=1)
    ctrl.set_scaling(y_scale=[2.0])                     # u = 2 tanh(.)
    cost = cp.TrajectoryCost(Q=0.5, R=0.1, terminal=lambda x: ((x ** 4).sum(1), 4 * x ** 3))
    obj = cp.ControllerObjective(model, ctrl, rng.standard_normal((4, n)), 5, cost,
                                 exo=rng.standard_normal((5, 1)), l2=0.3)
    chk = cp.check_objective(obj, ctrl.weights + 0.1, tol=1e-6)
    assert chk.ok, chk
    S, U = obj.rollout()
    assert S.shape == (4, 6, n) and U.shape == (4, 5, m) and np.all(np.abs(U) < 2)


def test_linear_controller_learns_the_infinite_horizon_lqr_gain(rng):
    # with Qf = P (the DARE solution) the finite-horizon optimum is u = -K x at every step,
    # K = (R + B'PB)^-1 B'PA, so a bias-free linear controller must converge to -K
    n, m = 3, 2
    A = np.eye(n) + 0.2 * rng.standard_normal((n, n))
    B = rng.standard_normal((n, m))
    Q, R = spd(rng, n), spd(rng, m)
    P = solve_discrete_are(A, B, Q, R)
    K = np.linalg.solve(R + B.T @ P @ B, B.T @ P @ A)
    model = linear_model(A, B)
    w_model = model.net.weights.copy()
    ctrl = cp.Network.mlp([n, m], hidden="linear", output="linear", bias=False, seed=4)
    res = cp.train_controller(model, ctrl, rng.standard_normal((16, n)), 10,
                              dict(Q=Q, Qf=P, R=R),
                              maxiter=2000, options=dict(gtol=1e-12, ftol=1e-16))
    G = np.zeros((m, n))
    for k, (s, d) in enumerate(ctrl.weight_labels):
        G[d - n, s] = ctrl.weights[k]
    np.testing.assert_allclose(G, -K, atol=1e-5)
    assert np.array_equal(model.net.weights, w_model)      # the model stays frozen
    assert np.array_equal(res.x, ctrl.weights) and res.controller is ctrl
    assert res.history["fun"][-1] <= res.history["fun"][0] and res.costs.shape == (16,)


def test_trained_controller_is_an_ordinary_network(rng, tmp_path):
    dt = 0.1
    A = np.array([[1.0, dt], [0.0, 1.0]])
    B = np.array([[0.0], [dt]])
    model = linear_model(A, B)
    ctrl = cp.Network.mlp([4, 8, 1], hidden="tanh", output="tanh", seed=0)
    ctrl.set_scaling(y_scale=[3.0])                     # bounded: |u| < 3
    X0 = rng.uniform(-1, 1, (32, 2))
    goals = np.column_stack([rng.uniform(-1, 1, 32), np.zeros(32)])
    res = cp.train_controller(model, ctrl, X0, 40, dict(Q=[1.0, 0.1], Qf=10.0, R=0.01),
                              goal=goals, maxiter=300)
    assert res.history["fun"][-1] < 0.5 * res.history["fun"][0]
    ctrl.save(tmp_path / "ctrl.npz")
    loaded = cp.load(tmp_path / "ctrl.npz")
    x0, g = np.array([0.5, 0.0]), np.array([-0.5, 0.0])
    r1 = cp.closed_loop(ctrl, model, x0, 60, goal=g)
    S1, U1 = r1.states, r1.controls
    r2 = cp.closed_loop(loaded, lambda x, u: A @ x + B @ u, x0, 60, goal=g)
    S2, U2 = r2.states, r2.controls
    np.testing.assert_allclose(S1, S2, atol=1e-12)
    assert S1.shape == (61, 2) and U1.shape == (60, 1) and np.all(np.abs(U1) < 3)
    assert abs(S1[-1, 0] - g[0]) < 0.1 * abs(x0[0] - g[0])       # it steers to the goal
    rb = cp.closed_loop(ctrl, model, X0[:5], 10, goal=goals[:5])
    SB, UB = rb.states, rb.controls
    assert SB.shape == (5, 11, 2) and UB.shape == (5, 10, 1)
    np.testing.assert_allclose(SB[:, :, :], res.states[:5, :11], atol=1e-12)


def test_controller_bad_input(rng):
    model = linear_model(np.eye(2), np.ones((2, 1)))
    X0 = rng.standard_normal((3, 2))
    with pytest.raises(ValueError, match="2 outputs but the model takes 1 controls"):
        cp.ControllerObjective(model, cp.Network.mlp([2, 2]), X0, 3)
    with pytest.raises(ValueError, match=r"must have 2 inputs \(u = c\(x\)\) or 4"):
        cp.ControllerObjective(model, cp.Network.mlp([3, 1]), X0, 3)
    with pytest.raises(ValueError, match="reads the goal"):
        cp.ControllerObjective(model, cp.Network.mlp([4, 1]), X0, 3)
    with pytest.raises(ValueError, match="given twice"):
        cp.ControllerObjective(model, cp.Network.mlp([2, 1]), X0, 3, dict(goal=[1.0, 0.0]),
                               goal=[1.0, 0.0])
    with pytest.raises(ValueError, match=r"goal must have shape \(2,\) or \(3, 2\)"):
        cp.ControllerObjective(model, cp.Network.mlp([4, 1]), X0, 3, goal=np.zeros((2, 2)))
    with pytest.raises(TypeError, match="controller must be a ctrlprop Network"):
        cp.ControllerObjective(model, "c", X0, 3)
    with pytest.raises(ValueError, match="l2"):
        cp.ControllerObjective(model, cp.Network.mlp([2, 1]), X0, 3, l2=-1.0)
    obj = cp.ControllerObjective(model, cp.Network.mlp([2, 1]), X0, 3)
    with pytest.raises(ValueError, match="3 entries"):
        obj(np.zeros(5))
    with pytest.raises(TypeError, match="Dynamics model, a callable"):
        cp.closed_loop(cp.Network.mlp([2, 1]), 3, X0[0], 5)


def test_closed_loop_checks_what_the_plant_returns():
    ctrl = cp.Network.mlp([2, 3, 1], seed=0)
    with pytest.raises(ValueError, match=r"step 0: the plant returned a state of shape \(3,\)"):
        cp.closed_loop(ctrl, lambda x, u: np.zeros(3), [0.1, 0.2], 5)
    with pytest.raises(ValueError, match="step 1: the plant returned NaN or inf"):
        cp.closed_loop(ctrl, lambda x, u: x / 10 if abs(x[0]) > 0.05 else x * np.nan,
                       [0.1, 0.2], 5)
    r = cp.closed_loop(ctrl, lambda x, u: 0.5 * x, [[0.1, 0.2], [1.0, 2.0]], 3)
    S, U = r.states, r.controls
    np.testing.assert_allclose(S[:, -1], 0.125 * np.array([[0.1, 0.2], [1.0, 2.0]]))
