"""The truck backer-upper scenario: its cost's gradient, its emulator's structure, and the whole
run in --quick mode (metrics on the true plant, plots, metrics.json, model cache)."""

import numpy as np
import pytest

import ctrlprop as cp

from conftest import check_outputs
import truck_backer as tb  # on sys.path via conftest

FILES = ("paths_mpc.png", "paths_controller.png", "dock_errors.png", "controller_training.png",
         "emulator_training.png", "comparison.png")


# ---- the cost -----------------------------------------------------------------------------
def _trajectories(T=40):
    """Four hand-made rollouts (4, T+1, 4), none within 1e-3 of an event boundary: docks
    (crossing x = 0 between steps) with the barriers active on the way; stays far from the
    dock; jackknifes (cab angle beyond 90 degrees) then comes back; leaves the yard (y > 10)."""
    t = np.arange(T + 1)
    S = np.zeros((4, T + 1, 4))
    S[0, :, 0] = 7.03 - 0.2 * t                        # crosses between t = 35 and 36
    S[0, :, 1] = 9.8 * np.cos(0.05 * t)                # starts beyond the yard barrier (9.5)
    S[0, :, 3] = 0.3 * np.sin(0.1 * t)
    S[0, :, 2] = S[0, :, 3] + np.radians(80) * np.exp(-0.1 * t)   # 80 deg: jackknife barrier
    S[1, :, 0] = 30.0 - 0.1 * t
    S[1, :, 1] = 4.0 + 0.05 * t
    S[1, :, 3] = 2.5 - 0.02 * t                        # heading far from the guide field
    S[1, :, 2] = S[1, :, 3] + 0.4
    S[2, :, 0] = 20.0 - 0.1 * t
    S[2, :, 1] = -3.0
    S[2, :, 2] = np.radians(110) * np.sin(np.pi * t / T)          # beyond 90 deg mid-way
    S[3, :, 0] = 39.7 - 0.05 * t                        # inside the x barrier (39.5) at first
    S[3, :, 1] = 9.0 + 0.1 * t + 0.013                 # leaves the yard at t = 10
    S[3, :, 3] = -1.2
    S[3, :, 2] = -1.0
    return S


@pytest.mark.parametrize("terminal", ["guide", "lane"])
@pytest.mark.parametrize("failures_end", [False, True])
def test_dock_cost_gradient_matches_finite_differences(terminal, failures_end):
    S = _trajectories()
    cost = tb.DockCost(terminal, failures_end)

    def fun(flat):
        val, G, gu = cost(flat.reshape(S.shape), None)
        assert gu is None
        return float(val.sum()), G.reshape(-1)

    check = cp.check_objective(fun, S.reshape(-1), eps=1e-6, tol=1e-6)
    assert check.ok, check
    val, G, _ = cost(S, None)
    assert val.shape == (4,) and np.all(val > 0)
    # every kind of term contributes a gradient somewhere: barriers, dock, terminal
    assert np.all(np.abs(G).reshape(4, -1).max(axis=1) > 0)


def test_dock_cost_closed_form():
    # straight in along a line: no barrier; the crossing is interpolated to x = 0 exactly
    T = 20
    S = np.zeros((1, T + 1, 4))
    S[0, :, 0] = 1.55 - 0.1 * np.arange(T + 1)         # x = 0.05 at t = 15, -0.05 at t = 16
    S[0, :, 1] = 0.3 + 0.02 * np.arange(T + 1)         # y = 0.6 at t = 15, 0.62 at t = 16
    S[0, :, 2] = S[0, :, 3] = 0.1
    val, _, _ = tb.DockCost("guide")(S, None)
    expected = 0.61 ** 2 + 2 * (1 - np.cos(0.1)) / np.radians(10) ** 2
    assert val[0] == pytest.approx(expected, rel=1e-12)
    # not reaching the dock: the lane terminal is 2 x + the dock cost at the end state
    S2 = S[:, :11]
    val, _, _ = tb.DockCost("lane")(S2, None)
    assert val[0] == pytest.approx(2 * 0.55 + 0.5 ** 2 + 2 * (1 - np.cos(0.1))
                                   / np.radians(10) ** 2, rel=1e-12)


def test_failures_end_the_rollout():
    S = _trajectories()
    keep, stop = tb.DockCost("lane", False)(S, None), tb.DockCost("lane", True)(S, None)
    # the docking and the far rollouts have no failure: same cost either way
    np.testing.assert_allclose(keep[0][:2], stop[0][:2], rtol=1e-12)
    # after the jackknife / the exit, the barriers stop accumulating and the gradient is zero
    assert stop[0][2] < keep[0][2] and stop[0][3] < keep[0][3]
    jk = np.flatnonzero(np.cos(S[2, :, 2] - S[2, :, 3]) < 0)[0]
    assert np.all(stop[1][2, jk + 1:] == 0) and np.any(keep[1][2, jk + 1:] != 0)


def test_dock_cost_rejects_unknown_terminal():
    with pytest.raises(ValueError, match="terminal"):
        tb.DockCost("parabola")


# ---- the networks -------------------------------------------------------------------------
def test_emulator_is_periodic_and_translation_invariant():
    net, trainable = tb.build_emulator(8, seed=3)
    net.set_scaling(np.zeros(5), np.array([1, 1, 1, 1, tb.LIM]), np.zeros(4), np.ones(4))
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.uniform(0, 40, 20), rng.uniform(-10, 10, 20),
                         rng.uniform(-np.pi, np.pi, (20, 2)), rng.uniform(-0.7, 0.7, 20)])
    Y = net.forward(X)
    for j, shift in ((2, 2 * np.pi), (3, -2 * np.pi), (0, 13.0), (1, -7.0)):
        X2 = X.copy()
        X2[:, j] += shift
        np.testing.assert_allclose(net.forward(X2), Y, atol=1e-12)
    # the sin features are frozen; everything else trains
    assert 0 < trainable.sum() < net.n_weights
    assert not trainable[net.units_weights(list(range(5, 11)))].any()


def test_controller_is_periodic_and_bounded():
    ctrl, trainable = tb.build_controller(6, seed=1)
    rng = np.random.default_rng(1)
    w = ctrl.weights.copy()
    w[trainable] = rng.normal(0, 3, trainable.sum())          # large weights: saturates
    ctrl.weights = w
    X = np.column_stack([rng.uniform(0, 40, 30), rng.uniform(-10, 10, 30),
                         rng.uniform(-np.pi, np.pi, (30, 2))])
    U = ctrl.forward(X)
    assert np.all(np.abs(U) < tb.LIM)
    X2 = X.copy()
    X2[:, 2:] += 2 * np.pi * rng.integers(-2, 3, (30, 2))
    np.testing.assert_allclose(ctrl.forward(X2), U, atol=1e-12)


def test_unwrap_keeps_the_cab_trailer_angle_small():
    X = np.array([[5.0, 1.0, 3.0, -3.0], [5.0, 1.0, -3.1, 3.1]])
    Xu = tb.unwrap(X)
    np.testing.assert_allclose(Xu[:, :3], X[:, :3])
    np.testing.assert_allclose(cp.wrap_angle(Xu[:, 3]), cp.wrap_angle(X[:, 3]), atol=1e-12)
    assert np.all(np.abs(Xu[:, 2] - Xu[:, 3]) < np.pi / 2)


def test_fence_steps():
    plant = cp.TruckBackerUpper()
    # th1 = pi: the rear backs along +x; th1 = -pi/2: along +y; th1 = 0: toward the dock
    S = np.array([[38.0, 0.0, np.pi, np.pi], [20.0, 9.0, -np.pi / 2, -np.pi / 2],
                  [20.0, 9.0, 0.0, 0.0]])
    np.testing.assert_allclose(tb.fence_steps(plant, S)[:2], [20.0, 10.0])
    assert np.isinf(tb.fence_steps(plant, S)[2])


# ---- the scenario in --quick mode ---------------------------------------------------------
@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("truck_backer")
    metrics = tb.main(["--quick", "--seed", "0", "--out", str(out)])
    return out, metrics


def test_mpc_backs_the_truck_to_the_dock(run):
    _, m = run
    # judged on the true plant (TruckBackerUpper.docked: within 1.0 and 10 degrees)
    assert m["n_starts"] >= 10
    assert m["mpc_success_rate"] >= 0.75
    assert m["mpc_median_pos_error_success"] < 0.5
    assert m["mpc_median_angle_error_deg_success"] < 5.0
    assert m["mpc_replans"] >= 10                       # it did replan against the plant


def test_controller_backs_the_truck_to_the_dock(run):
    _, m = run
    # a controller that steers straight or at random docks almost never from these starts
    assert m["ctrl_extra_n_starts"] >= 200
    assert m["ctrl_extra_success_rate"] >= 0.4
    assert m["ctrl_reached_dock_line"] >= m["n_starts"] // 2
    assert m["ctrl_median_pos_error_success"] < 1.0
    assert m["ctrl_us_per_plant_step"] < 1e4


def test_emulator_is_accurate(run):
    _, m = run
    # one-step increments within 2 % (relative RMSE); 10-step predictions along the MPC runs
    assert max(m["emulator_one_step_relative_rmse"]) < 0.02
    assert m["mpc_prediction_error_median"] < 0.05
    assert m["mpc_prediction_angle_error_deg_median"] < 1.0


def test_outcomes_add_up(run):
    _, m = run
    for p in ("mpc", "ctrl"):
        n_fail = m["n_starts"] - m[f"{p}_n_success"]
        assert m[f"{p}_fence_failures"] + m[f"{p}_other_failures"] == n_fail
        ended = m[f"{p}_reached_dock_line"] + m[f"{p}_jackknifed"] + m[f"{p}_out_of_yard"]
        assert ended + m[f"{p}_timeout"] >= m["n_starts"]


def test_files(run):
    out, m = run
    check_outputs(out, FILES, "truck_backer", m, ["mpc_success_rate"])


def test_cached_models_are_reused(run):
    out, m = run
    again = tb.main(["--quick", "--seed", "0", "--out", str(out)])
    assert again["emulator_cached"] is True and again["ctrl_cached"] is True
    assert again["ctrl_train_seconds"] == 0.0
    assert again["ctrl_extra_success_rate"] == pytest.approx(m["ctrl_extra_success_rate"])
    assert again["emulator_one_step_rmse"] == pytest.approx(m["emulator_one_step_rmse"])
