"""The car-around-an-obstacle scenario in --quick mode: the constraint holds on the learned
model and on the true car, which the unconstrained plan would violate."""

import pytest

from conftest import check_outputs
import car_obstacle  # on sys.path via conftest


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("car_obstacle")
    return out, car_obstacle.main(["--quick", "--seed", "0", "--out", str(out),
                                   "--no-progress"])


def test_the_obstacle_is_avoided_on_the_true_car(run):
    _, m = run
    r = m["obstacle_radius"]
    assert m["free_true_violation_m"] > 0.5 * r         # the obstacle sits on the free path
    assert m["model_violation"] <= 1e-6                  # the stated tolerance (default tol)
    assert m["open_loop_true_violation_m"] == 0.0 and m["replanned_true_violation_m"] == 0.0
    assert m["replanned_parking_error"] < 0.1            # and the car still parks


def test_files(run):
    out, m = run
    check_outputs(out, ["paths.png"], "car_obstacle", m,
                  ["model_violation", "replanned_true_violation_m"])
