"""The car-parking scenario end to end in --quick mode: metrics, plots, metrics.json; its
true-dynamics gradient and its translation-invariant network."""

import numpy as np
import pytest

import ctrlprop as cp

from conftest import check_outputs
import car_parking  # on sys.path via conftest


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("car_parking")
    metrics = car_parking.main(["--quick", "--seed", "0", "--out", str(out)])
    return out, metrics


def test_parks_on_the_true_car(run):
    _, m = run
    assert m["horizon"] == 500
    # in the model, the plan parks (the final cost's position scale is 0.01)
    assert m["model_predicted_final_distance"] < 0.1
    # on the true car: replanning from measured states parks it, at rest, facing +x
    assert m["final_distance_replanned"] < 0.2
    assert abs(m["final_heading_replanned"]) < 0.02
    assert abs(m["final_speed_replanned"]) < 0.1
    assert m["n_replans"] > 10
    # open loop, model error accumulates over 500 steps but the car still ends near the spot
    # (a model with wrong geometry ends metres away)
    assert m["final_distance_open_loop"] < 0.6
    assert abs(m["final_heading_open_loop"]) < 0.05


def test_cost_close_to_the_true_dynamics_optimum(run):
    _, m = run
    # the reference is the lowest true-dynamics cost found, and a parking one
    assert m["cost_true_optimum"] <= min(m["cost_replanned"], m["cost_true_from_replanned"])
    assert m["final_distance_true_optimum"] < 0.05
    assert 1.5 < m["cost_true_optimum"] < 2.2          # demo_car's optimum is about 1.7
    assert m["cost_gap_replanned"] < 0.03
    assert m["cost_gap_open_loop"] < 0.1
    assert m["cost_gap_replanned"] < m["cost_gap_open_loop"]
    starts = m["plan_starts"]
    assert len(starts) == 2 and starts[0]["start"] == "zero"
    chosen = [s for s in starts if s["start"] == m["plan_start"]][0]
    assert chosen["model_cost"] == min(s["model_cost"] for s in starts)


def test_model_is_accurate_where_it_is_used(run):
    _, m = run
    assert all(e < 0.03 for e in m["model_test_rel_rmse"])     # rmse / std per increment
    assert m["fraction_outside_training_box"] == 0.0
    # one step along the executed path: increments are about 0.03 v, v up to ~7
    assert m["model_one_step_error_median"] < 1e-3
    assert m["max_speed_replanned"] < 8.0


def test_files(run):
    out, m = run
    check_outputs(out, ("paths.png", "time_series.png", "convergence.png", "training.png"), "car_parking", m, ["final_distance_replanned", "cost_gap_replanned"])


@pytest.mark.parametrize("x0", [car_parking.CAR_X0, np.array([0.5, -0.3, 1.0, 2.0])])
def test_true_dynamics_gradient(x0):
    car, T = cp.Car(), 15
    fun = car_parking.true_objective(car, x0, T)
    rng = np.random.default_rng(3)
    u = rng.uniform(0.9 * car.u_low, 0.9 * car.u_high, (T, 2)).ravel()
    assert cp.check_objective(fun, u).ok
    # the value is the car cost of the true rollout
    S = car.rollout(x0, u.reshape(T, 2))
    assert fun(u)[0] == pytest.approx(cp.plants.car_trajectory_cost(S, u.reshape(T, 2))[0])


def test_network_ignores_position():
    net = car_parking.car_network(6, seed=1)
    assert net.n_inputs == 6 and net.n_outputs == 4
    sources = {lab[0] for lab in net.weight_labels if lab[0] != "bias"}
    assert 0 not in sources and 1 not in sources
    rng = np.random.default_rng(0)
    X = rng.standard_normal((20, 6))
    Xs = X.copy()
    Xs[:, :2] += rng.uniform(-5, 5, (20, 2))
    np.testing.assert_array_equal(net.forward(X), net.forward(Xs))


def test_starting_controls_within_limits():
    car = cp.Car()
    starts = car_parking.starting_controls(car, 50, 3, seed=0)
    assert [s[0] for s in starts] == ["zero", "random 1", "random 2", "random 3"]
    assert not starts[0][1].any()
    for _, u in starts:
        assert u.shape == (50, 2)
        assert np.all(u >= car.u_low) and np.all(u <= car.u_high)
    assert np.std(starts[1][1]) > 0.05
