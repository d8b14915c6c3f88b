"""mpc(method="ilqr"/"ddp") and replan_every: the feedback gains between re-plans against the
finite-horizon Riccati solution, warm starts, bounds, and agreement with the scipy methods."""

import numpy as np
import pytest

import ctrlprop as cp

A = np.array([[1.0, 0.1], [0.0, 1.0]])
B = np.array([[0.0], [0.1]])
Q, R, H = 1.0, 0.1, 10
COST = dict(Q=Q, R=R)


def exact_model():
    X = np.random.default_rng(0).uniform(-1, 1, (20, 3))
    net = cp.Network.mlp([3, 2], hidden="linear")
    cp.fit(net, X, X[:, :2] @ A.T + X[:, 2:] @ B.T, method="lm")
    return cp.Dynamics(net, 2)


def riccati_gains(T):
    """u_t = K_t x_t minimising 1/2 sum_{t=1}^{T} x'Qx + 1/2 sum_{t=0}^{T-1} u'Ru."""
    P = Q * np.eye(2)
    K = [None] * T
    for t in range(T - 1, -1, -1):
        K[t] = -np.linalg.solve(R * np.eye(1) + B.T @ P @ B, B.T @ P @ A)
        P = Q * np.eye(2) + A.T @ P @ (A + B @ K[t])
    return K


@pytest.mark.parametrize("method", ["ilqr", "ddp"])
def test_feedback_between_replans_is_the_riccati_policy(method):
    d = np.array([0.02, -0.05])                       # an unmodelled constant disturbance
    plant = lambda x, u: A @ x + B @ u + d            # noqa: E731
    K = riccati_gains(H)
    run = cp.mpc(exact_model(), plant, [1.0, 0.5], 20, H, COST, method=method,
                 replan_every=4, maxiter=10)
    x = np.array([1.0, 0.5])
    for t in range(20):
        u = K[t % 4] @ x                              # re-planned at t = 0, 4, 8, ...
        np.testing.assert_allclose(run.controls[t], u, atol=1e-8)
        x = plant(x, u)
        np.testing.assert_allclose(run.states[t + 1], x, atol=1e-8)
    assert list(run.history["replanned"].nonzero()[0]) == [0, 4, 8, 12, 16]
    assert np.all(run.history["nit"][~run.history["replanned"]] == 0)


def test_without_model_error_feedback_and_open_loop_follow_the_same_plan():
    kw = dict(replan_every=5, maxiter=30)
    exact = lambda x, u: A @ x + B @ u               # noqa: E731
    fb = cp.mpc(exact_model(), exact, [1.0, 0.5], 30, H, COST, method="ilqr", **kw)
    ol = cp.mpc(exact_model(), exact, [1.0, 0.5], 30, H, COST, method="L-BFGS-B",
                replan_every=5, maxiter=200, options=dict(gtol=1e-12, ftol=1e-15))
    np.testing.assert_allclose(fb.states, ol.states, atol=1e-6)


@pytest.mark.parametrize("method", ["ilqr", "ddp"])
def test_ilqr_mpc_agrees_with_lbfgs_mpc_and_respects_bounds(method, ):
    model = exact_model()
    plant = lambda x, u: A @ x + B @ u               # noqa: E731
    ref = cp.mpc(model, plant, [1.0, 0.5], 25, H, COST, bounds=(-0.8, 0.8), maxiter=200,
                 options=dict(gtol=1e-12, ftol=1e-15))
    run = cp.mpc(model, plant, [1.0, 0.5], 25, H, COST, bounds=(-0.8, 0.8), method=method,
                 maxiter=50)
    np.testing.assert_allclose(run.states, ref.states, atol=1e-6)
    assert np.all(np.abs(run.controls) <= 0.8) and np.abs(run.controls).max() == 0.8
    assert run.method == method and run.success


def test_feedback_is_clipped_to_the_bounds_and_nonlinear_models_work():
    rng = np.random.default_rng(3)
    net = cp.Network.mlp([3, 8, 2], seed=4)
    net.weights = net.weights * 0.3
    model = cp.Dynamics(net, 2, residual=True)
    plant = lambda x, u: model.step(x, u) + 0.05     # noqa: E731
    run = cp.mpc(model, plant, rng.uniform(-1, 1, 2), 12, 6, COST, method="ddp",
                 bounds=(-0.3, 0.3), replan_every=3, maxiter=20)
    assert np.all(np.abs(run.controls) <= 0.3)
    with pytest.raises(ValueError, match="replan_every must be at most the horizon"):
        cp.mpc(model, plant, [0.0, 0.0], 5, 3, method="ilqr", replan_every=4)
    with pytest.raises(ValueError, match="unknown option"):
        cp.mpc(model, plant, [0.0, 0.0], 5, 3, method="ilqr", options=dict(gtol=1e-3))
