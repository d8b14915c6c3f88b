"""optimize_trajectory (LQR closed form, Gauss-Newton, batches, restarts, bounds) and mpc."""

import numpy as np
import pytest
from scipy.optimize import Bounds

import ctrlprop as cp
from conftest import random_dag, sin_model


def linear_model(A, B, residual=False):
    """A linear network whose weights are exactly x' = A x + B u (or x + (A - I) x + B u)."""
    n, m = B.shape
    net = cp.Network.mlp([n + m, n], hidden="linear", output="linear")
    W = np.hstack([A - np.eye(n) if residual else A, B])
    w = np.zeros(net.n_weights)
    for k, (s, d) in enumerate(net.weight_labels):
        w[k] = 0.0 if s == "bias" else W[d - n - m, s]
    net.weights = w
    return cp.Dynamics(net, n, residual=residual)


def spd(rng, k):
    M = rng.standard_normal((k, k))
    return M @ M.T / k + 0.2 * np.eye(k)


def riccati(A, B, Q, Qf, R, T, x0):
    """Finite-horizon LQR for J = 1/2 sum_{t=1}^{T-1} x'Qx + 1/2 x_T'Qf x_T
    + 1/2 sum_{t=0}^{T-1} u'Ru (no state cost at t = 0): optimal controls, states and cost."""
    P = Qf
    K = [None] * T
    for t in range(T - 1, -1, -1):
        K[t] = np.linalg.solve(R + B.T @ P @ B, B.T @ P @ A)
        P = (Q if t > 0 else 0 * Q) + A.T @ P @ (A - B @ K[t])
    xs, us = [x0], []
    for t in range(T):
        us.append(-K[t] @ xs[-1])
        xs.append(A @ xs[-1] + B @ us[-1])
    return np.array(us), np.array(xs), 0.5 * float(x0 @ P @ x0)


@pytest.fixture
def lqr(rng):
    n, m, T = 3, 2, 12
    A = np.eye(n) + 0.3 * rng.standard_normal((n, n))
    B = rng.standard_normal((n, m))
    Q, Qf, R = spd(rng, n), 3 * spd(rng, n), spd(rng, m)
    x0 = rng.standard_normal(n)
    return A, B, Q, Qf, R, T, x0


@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("method", ["lm", "trf", "L-BFGS-B"])
def test_linear_model_reproduces_finite_horizon_lqr(lqr, method, residual):
    A, B, Q, Qf, R, T, x0 = lqr
    U, X, J = riccati(A, B, Q, Qf, R, T, x0)
    opts = dict(gtol=1e-10, ftol=1e-15) if method == "L-BFGS-B" else None
    res = cp.optimize_trajectory(linear_model(A, B, residual), x0, T,
                                 cp.TrajectoryCost(Q=Q, Qf=Qf, R=R), method=method,
                                 maxiter=10000 if method == "L-BFGS-B" else None, options=opts)
    assert res.success, res.message
    np.testing.assert_allclose(res.controls, U, atol=1e-5)
    np.testing.assert_allclose(res.states, X, atol=1e-5)
    assert res.fun == pytest.approx(J, rel=1e-9)


def test_lqr_gradient_vanishes_at_the_riccati_solution(lqr):
    A, B, Q, Qf, R, T, x0 = lqr
    U, _, J = riccati(A, B, Q, Qf, R, T, x0)
    Jc, g = cp.bptt(linear_model(A, B), x0, U, dict(Q=Q, Qf=Qf, R=R))
    assert Jc == pytest.approx(J, rel=1e-12)
    assert np.abs(g).max() < 1e-10 * max(1.0, J)


def test_batch_of_initial_states_equals_individual_solves(lqr, rng):
    A, B, Q, Qf, R, T, _ = lqr
    model = linear_model(A, B)
    X0 = rng.standard_normal((4, 3))
    goals = rng.standard_normal((4, T, 3))
    cost = cp.TrajectoryCost(goal=goals, Q=Q, Qf=Qf, R=R, S=0.3)
    for method in ("lm", "trf"):
        res = cp.optimize_trajectory(model, X0, T, cost, method=method)
        assert res.controls.shape == (4, T, 2) and res.states.shape == (4, T + 1, 3)
        assert res.fun.shape == (4,)
        for b in range(4):
            one = cp.optimize_trajectory(model, X0[b], T, cost.with_goal(goals[b]), method="lm")
            np.testing.assert_allclose(res.controls[b], one.controls, atol=1e-7)
            assert res.fun[b] == pytest.approx(one.fun, rel=1e-9)


def test_batch_with_restarts_and_per_trajectory_goals(lqr, rng):
    A, B, Q, Qf, R, T, _ = lqr
    model = linear_model(A, B)
    X0, goals = rng.standard_normal((2, 3)), rng.standard_normal((2, 1, 3))
    cost = cp.TrajectoryCost(goal=goals, Q=Q, Qf=Qf, R=R)
    res = cp.optimize_trajectory(model, X0, T, cost, method="trf", restarts=2, seed=1)
    assert res.all_controls.shape == (2, 3, T, 2) and res.all_fun.shape == (2, 3)
    assert res.controls.shape == (2, T, 2) and res.best.shape == (2,)
    for b in range(2):
        one = cp.optimize_trajectory(model, X0[b], T, cost.with_goal(goals[b, 0]), method="lm")
        np.testing.assert_allclose(res.all_fun[b], one.fun, rtol=1e-8)   # convex: all equal
        np.testing.assert_allclose(res.controls[b], one.controls, atol=1e-6)


@pytest.mark.parametrize("method", ["BFGS", "CG", "Newton-CG", "TNC", "SLSQP", "trust-constr"])
def test_every_gradient_method_runs(rng, method):
    model = cp.Dynamics(random_dag(rng, n_in=3, n_comp=5, n_out=2), 2, residual=True)
    u0 = 0.1 * rng.standard_normal((5, 1))
    res = cp.optimize_trajectory(model, [0.3, -0.2], 5, dict(goal=[0.5, 0.5], R=0.1), u0=u0,
                                 method=method,
                                 maxiter=50)
    start = cp.bptt(model, [0.3, -0.2], u0, dict(goal=[0.5, 0.5], R=0.1))[0]
    assert res.method == method and res.fun < start
    assert res.history["fun"][0] == pytest.approx(start) and res.controls.shape == (5, 1)


def test_gauss_newton_on_a_nonlinear_model_reaches_a_stationary_point(rng):
    net = random_dag(rng, n_in=3, n_comp=5, n_out=2, transfers=["tanh", "linear"])
    model = cp.Dynamics(net, 2, residual=True)
    cost = cp.TrajectoryCost(goal=[0.5, -0.5], Q=1.0, Qf=5.0, R=0.1, S=0.2)
    x0 = rng.standard_normal(2)
    res = cp.optimize_trajectory(model, x0, 8, cost, method="lm")
    _, g = cp.bptt(model, x0, res.controls, cost)
    assert np.abs(g).max() < 1e-6
    lb = cp.optimize_trajectory(model, x0, 8, cost, u0=res.controls)   # already optimal
    assert lb.fun <= res.fun * (1 + 1e-9)


def test_result_fields_and_history(rng):
    net = random_dag(rng, n_in=4, n_comp=6, n_out=2)
    model = cp.Dynamics(net, 2)
    cost = dict(goal=[1.0, 0.0], R=0.05)
    u0 = 0.1 * rng.standard_normal((10, 2))
    res = cp.optimize_trajectory(model, [0.2, -0.1], 10, cost, u0=u0)
    assert isinstance(res, cp.TrajectoryResult)
    np.testing.assert_allclose(res.states, model.rollout([0.2, -0.1], res.controls), rtol=1e-12)
    assert res.fun == pytest.approx(cp.bptt(model, [0.2, -0.1], res.controls, cost)[0])
    assert res.history["fun"][0] == pytest.approx(cp.bptt(model, [0.2, -0.1], u0, cost)[0])
    assert len(res.history["fun"]) == res.nit + 1
    assert np.all(np.diff(res.history["fun"]) <= 1e-12 * res.history["fun"][0])
    assert res.history["fun"][-1] == pytest.approx(res.fun)
    seen = []
    cp.optimize_trajectory(model, [0.2, -0.1], 10, cost, u0=u0,
                           callback=lambda r: seen.append((r.x.shape, r.fun)))
    assert seen and all(s == (10, 2) for s, _ in seen)


@pytest.mark.parametrize("method", ["L-BFGS-B", "TNC", "trf", "dogbox"])
def test_bounds_are_never_violated(rng, method):
    net = random_dag(rng, n_in=3, n_comp=5, n_out=2)
    model = cp.Dynamics(net, 2)
    lo, hi = np.array([-0.2]), np.array([0.3])
    seen = []
    res = cp.optimize_trajectory(model, [1.0, -1.0], 6, dict(goal=[5.0, 5.0], Q=1.0),
                                 bounds=Bounds(lo, hi), method=method,
                                 callback=lambda r: seen.append(r.x.copy()))
    for U in seen + [res.controls]:
        assert np.all(U >= lo) and np.all(U <= hi)
    assert np.any(np.isclose(res.controls, lo) | np.isclose(res.controls, hi))   # active


def test_restarts_find_the_global_minimum_a_single_start_misses():
    model = sin_model()          # x_1 = sin(u_0): local minima near pi/6 + 2 pi k
    cost = dict(goal=[0.5], Qf=1.0, R=0.01)
    grid = np.linspace(-7, 7, 200001)
    best = np.min(0.5 * (np.sin(grid) - 0.5) ** 2 + 0.5 * 0.01 * grid ** 2)
    one = cp.optimize_trajectory(model, [0.0], 1, cost, u0=[[6.8]], bounds=(-7, 7))
    assert one.fun > best + 0.1                        # stuck in the local minimum near 6.8
    many = cp.optimize_trajectory(model, [0.0], 1, cost, u0=[[6.8]], bounds=(-7, 7),
                                  restarts=20, seed=3)
    assert many.fun == pytest.approx(best, abs=1e-9)
    assert many.all_fun.shape == (21,) and many.all_controls.shape == (21, 1, 1)
    assert many.all_fun[0] == pytest.approx(one.fun, rel=1e-9)   # start 0 is u0
    assert many.fun == many.all_fun[many.best] == many.all_fun.min()
    assert abs(many.controls[0, 0] - 0.51) < 0.05


# ---------------------------------------------------------------- bad input
def test_bad_optimizer_input(rng):
    model = cp.Dynamics(random_dag(rng, n_in=3, n_comp=4, n_out=2), 2)
    x0 = np.zeros(2)
    with pytest.raises(ValueError, match="unknown method 'nelder'"):
        cp.optimize_trajectory(model, x0, 4, method="nelder")
    with pytest.raises(ValueError, match="'lm' does not handle bounds"):
        cp.optimize_trajectory(model, x0, 4, method="lm", bounds=(-1, 1))
    with pytest.raises(ValueError, match="does not handle bounds"):
        cp.optimize_trajectory(model, x0, 4, method="BFGS", bounds=(-1, 1))
    with pytest.raises(ValueError, match=r"u0\[0, 2, 0\] = 2.0 is outside the bounds"):
        cp.optimize_trajectory(model, x0, 4, u0=[[0], [0], [2.0], [0]], bounds=(-1, 1))
    with pytest.raises(ValueError, match="bounds are infeasible"):
        cp.optimize_trajectory(model, x0, 4, bounds=(1, -1))
    with pytest.raises(ValueError, match="neither one .lo, hi. pair of numbers nor"):
        cp.optimize_trajectory(model, x0, 4, bounds=(np.zeros(3), 1))
    with pytest.raises(ValueError, match=r"bounds.lb has shape \(3,\), which does not fit"):
        cp.optimize_trajectory(model, x0, 4, bounds=Bounds(np.zeros(3), 1))
    with pytest.raises(ValueError, match=r"options\['maxiter'\] is an iteration limit"):
        cp.optimize_trajectory(model, x0, 4, options={"maxiter": 3})
    with pytest.raises(ValueError, match="unknown method 'trust-exact'.*not offered here"):
        cp.optimize_trajectory(model, x0, 4, method="trust-exact")
    with pytest.raises(ValueError, match="restarts"):
        cp.optimize_trajectory(model, x0, 4, restarts=-1)
    with pytest.raises(ValueError, match="residual form"):
        cp.optimize_trajectory(model, x0, 4, method="trf",
                               cost=dict(terminal=lambda x: ((x ** 2).sum(1), 2 * x)))
    with pytest.raises(ValueError, match=r"u0 must have 4 rows"):
        cp.optimize_trajectory(model, x0, 4, u0=np.zeros((3, 1)))
    with pytest.raises(ValueError, match="x0 must have shape"):
        cp.optimize_trajectory(model, np.zeros(3), 4)
    with pytest.raises(ValueError, match="horizon"):
        cp.optimize_trajectory(model, x0, 0)


# ---------------------------------------------------------------- MPC
DT = 0.1
A2 = np.array([[1.0, DT], [0.0, 1.0]])
B2 = np.array([[0.0], [DT]])


def plant(x, u):
    return A2 @ x + B2 @ u


def test_mpc_on_a_known_linear_plant_converges_to_the_goal():
    res = cp.mpc(linear_model(A2, B2), plant, [0.0, 0.0], 60, 20,
                 cost=dict(goal=[1.0, 0.0], Q=[1.0, 0.1], R=0.01), bounds=(-2, 2))
    assert res.success and res.steps_done == 60
    assert np.abs(res.states[-1] - [1.0, 0.0]).max() < 1e-3
    assert res.states.shape == (61, 2) and res.controls.shape == (60, 1)
    assert res.plans.shape == (60, 20, 1) and res.time_per_step.shape == (60,)
    assert np.all(res.time_per_step > 0) and np.all(np.abs(res.controls) <= 2)
    assert res.prediction_error.max() < 1e-12          # the model is exact
    np.testing.assert_allclose(res.controls[:, 0], res.plans[:, 0, 0])
    for k in range(60):                                 # what was applied is what the plant saw
        np.testing.assert_allclose(res.states[k + 1], plant(res.states[k], res.controls[k]))


def test_mpc_with_gauss_newton():
    res = cp.mpc(linear_model(A2, B2), plant, [0.0, 0.0], 60, 20, method="lm", maxiter=5,
                 cost=dict(goal=[1.0, 0.0], Q=[1.0, 0.1], R=0.01))
    assert np.abs(res.states[-1] - [1.0, 0.0]).max() < 1e-3
    assert np.all(res.history["nfev"] <= 6)


def test_mpc_with_a_wrong_model_still_converges_and_reports_prediction_error():
    model = linear_model(A2, 0.7 * B2)                  # the model underestimates the gain
    res = cp.mpc(model, plant, [0.0, 0.0], 80, 15,
                 cost=dict(goal=[1.0, 0.0], Q=[1.0, 0.1], R=0.01), maxiter=30)
    assert np.abs(res.states[-1] - [1.0, 0.0]).max() < 1e-2
    assert res.prediction_error.max() > 1e-4
    np.testing.assert_allclose(res.predicted[0], A2 @ [0.0, 0.0] + 0.7 * B2 @ res.controls[0])


def test_mpc_follows_a_reference_trajectory():
    K, H = 40, 10
    ref = np.stack([np.linspace(0, 1, K + H - 1), np.zeros(K + H - 1)], axis=1)
    res = cp.mpc(linear_model(A2, B2), plant, [0.0, 0.0], K, H,
                 cost=dict(goal=ref, Q=[10.0, 0.01], R=0.001))
    # 0.01 separates the right goal timing (error ~0.005) from a goal one step early or
    # late (~0.02)
    assert np.abs(res.states[1:, 0] - ref[:K, 0]).max() < 0.01
    with pytest.raises(ValueError, match=r"at least 49 rows"):
        cp.mpc(linear_model(A2, B2), plant, [0.0, 0.0], K, H, cost=dict(goal=ref[:-1]))


@pytest.mark.parametrize("bad, msg", [
    (lambda x: np.zeros(3), r"step 3: the plant returned a state of shape \(3,\)"),
    (lambda x: np.array([np.nan, 0.0]), "step 3: the plant returned NaN"),
    (lambda x: "oops", "step 3: the plant returned str"),
])
def test_mpc_stops_on_a_bad_plant_and_returns_what_was_done(bad, msg):
    def flaky(x, u):
        flaky.calls += 1
        return bad(x) if flaky.calls == 4 else plant(x, u)
    flaky.calls = 0
    with pytest.raises(cp.MPCError, match=msg) as info:
        cp.mpc(linear_model(A2, B2), flaky, [0.0, 0.0], 10, 5, cost=dict(goal=[1.0, 0.0]))
    part = info.value.result
    assert isinstance(part, cp.MPCResult) and not part.success
    assert part.steps_done == 3
    assert part.states.shape == (4, 2) and part.controls.shape == (3, 1)
    assert part.time_per_step.shape == (3,) and "step 3" in part.message
    for k in range(3):
        np.testing.assert_allclose(part.states[k + 1], plant(part.states[k], part.controls[k]))


def test_mpc_callback_stops_and_bad_arguments():
    res = cp.mpc(linear_model(A2, B2), plant, [0.0, 0.0], 10, 5,
                 callback=lambda r: r.step == 2)
    assert res.steps_done == 3 and not res.success and "callback" in res.message
    model = linear_model(A2, B2)
    with pytest.raises(ValueError, match="mpc controls one plant"):
        cp.mpc(model, plant, np.zeros((2, 2)), 5, 5)
    with pytest.raises(ValueError, match="steps must be at least 1"):
        cp.mpc(model, plant, [0.0, 0.0], 0, 5)
    with pytest.raises(ValueError, match="horizon"):
        cp.mpc(model, plant, [0.0, 0.0], 5, 0)
    with pytest.raises(TypeError, match="plant must be callable"):
        cp.mpc(model, "plant", [0.0, 0.0], 5, 5)
    with pytest.raises(ValueError, match="maxiter"):
        cp.mpc(model, plant, [0.0, 0.0], 5, 5, maxiter=0)


def test_callback_returning_true_stops_the_optimisation():
    model = cp.Dynamics(cp.Network.mlp([2, 6, 1], seed=2), 1)
    calls = []

    def stop_after_two(intermediate_result):
        calls.append(intermediate_result.fun)
        return len(calls) >= 2
    res = cp.optimize_trajectory(model, [0.5], 10, dict(Q=1.0, R=0.1, goal=[1.0]),
                                 callback=stop_after_two)
    assert len(calls) == 2 and res.nit == 2 and res.status == 2 and not res.success


def test_mpc_refuses_a_conflicting_iteration_cap():
    model = cp.Dynamics(cp.Network.mlp([2, 4, 1], seed=0), 1)
    with pytest.raises(ValueError, match="is an iteration limit: give it as the maxiter="):
        cp.mpc(model, lambda x, u: x, [0.0], steps=2, horizon=3, cost=dict(Q=1.0),
               options={"maxiter": 5})


def test_independent_runs_equal_separate_solves_with_per_trajectory_goals():
    model = cp.Dynamics(cp.Network.mlp([3, 8, 2], seed=4), 2)
    X0 = np.array([[0.2, -0.1], [0.5, 0.3], [-0.4, 0.1]])
    goals = np.array([[[1.0, 0.0]], [[0.0, 1.0]], [[-1.0, 0.5]]])          # (B, 1, n)
    cost = cp.TrajectoryCost(goal=goals, Q=1.0, R=0.05, S=0.1)
    opts = {"gtol": 1e-10}
    seen = []
    res = cp.optimize_trajectory(model, X0, 6, cost, bounds=(-2, 2), independent=True,
                                 maxiter=200, options=opts,
                                 callback=lambda r: seen.append(r.problem))
    assert res.controls.shape == (3, 6, 1) and res.message == "3 of 3 independent runs converged"
    for b in range(3):
        one = cp.optimize_trajectory(model, X0[b], 6, cost.with_goal(goals[b, 0]), bounds=(-2, 2),
                                     maxiter=200, options=opts)
        np.testing.assert_allclose(res.controls[b], one.controls, atol=1e-12)
        assert res.fun[b] == pytest.approx(one.fun, rel=1e-12)
    assert sorted(set(seen)) == [0, 1, 2] and seen == sorted(seen)   # run after run


def test_independent_restarts_keep_every_start_and_return_the_best():
    model = cp.Dynamics(cp.Network.mlp([2, 8, 1], seed=7), 1)
    res = cp.optimize_trajectory(model, [0.3], 5, dict(Q=1.0, R=0.01, goal=[0.8]),
                                 bounds=(-3, 3), restarts=4, independent=True, seed=1)
    assert res.all_fun.shape == (5,) and res.fun == pytest.approx(res.all_fun.min())
    for k in range(5):                      # every start was optimized to its own optimum
        one = cp.optimize_trajectory(model, [0.3], 5, dict(Q=1.0, R=0.01, goal=[0.8]),
                                     u0=res.all_controls[k], bounds=(-3, 3))
        assert one.fun == pytest.approx(res.all_fun[k], rel=1e-6, abs=1e-9)


# ---------------------------------------------------------------- 0.1 defects (issue: one API)
def test_per_control_pairs_are_a_box_not_low_and_high_arrays():
    """0.1 read bounds=[(-1, 1), (-1, 1)] for two controls as low=(-1, 1), high=(-1, 1):
    both controls pinned, and scipy died with AttributeError: status."""
    model = cp.Dynamics(cp.Network.mlp([4, 8, 2], seed=3), 2)
    cost = cp.TrajectoryCost(goal=[0.4, -0.3], R=0.1)
    pairs = cp.optimize_trajectory(model, np.zeros(2), 5, cost, bounds=[(-1, 1), (-1, 1)])
    box = cp.optimize_trajectory(model, np.zeros(2), 5, cost,
                                 bounds=Bounds([-1, -1], [1, 1]))
    np.testing.assert_array_equal(pairs.controls, box.controls)
    assert pairs.success and np.all(np.abs(pairs.controls) <= 1)
    assert np.ptp(pairs.controls) > 0.01                 # not pinned at the ends of a box
    one = cp.optimize_trajectory(model, np.zeros(2), 5, cost, bounds=(-1, 1))
    np.testing.assert_array_equal(one.controls, box.controls)


@pytest.mark.parametrize("method", ["L-BFGS-B", "trf", "batch-lbfgs"])
def test_pinned_controls_are_held_and_the_rest_optimized(method):
    model = cp.Dynamics(cp.Network.mlp([4, 8, 2], seed=3), 2)
    cost = cp.TrajectoryCost(goal=[0.4, -0.3], R=0.1)
    lo, hi = np.array([0.25, -2.0]), np.array([0.25, 2.0])       # control 0 pinned
    res = cp.optimize_trajectory(model, np.zeros(2), 5, cost, bounds=Bounds(lo, hi),
                                 method=method)
    assert res.success and np.all(res.controls[:, 0] == 0.25)
    free = cp.TrajectoryObjective(model, np.zeros(2), 5, cost)
    g = free(res.controls.ravel())[1].reshape(5, 2)
    assert np.abs(g[:, 1]).max() < 1e-4                 # stationary in the free control
    every = cp.optimize_trajectory(model, np.zeros(2), 5, cost,
                                   bounds=Bounds([0.25, 0.5], [0.25, 0.5]), method=method)
    assert every.success and np.all(every.controls == [0.25, 0.5])
