"""The arm-reaching scenario end to end in --quick mode: metrics, plots, metrics.json."""

import pytest

from conftest import check_outputs
import arm_reach  # on sys.path via conftest


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("arm_reach")
    metrics = arm_reach.main(["--quick", "--seed", "0", "--out", str(out)])
    return out, metrics


def test_reaches_targets_on_the_true_arm(run):
    _, m = run
    # judged on the true kinematics: within 1 % of the reach (0.024) for nearly every target
    assert m["success_threshold"] == pytest.approx(0.024)
    assert m["success_rate"] >= 0.95
    assert m["median_error"] < 0.008                    # a third of the threshold
    assert m["n_reachable_targets"] > 250
    # the outer rim (near-singular postures) is reported on its own and reached too
    assert m["n_rim_targets"] > 0 and m["success_rate_rim"] >= 0.8
    # beyond the reach the hand stretches toward the target: close to the best possible
    assert m["n_beyond_reach"] > 0
    assert m["beyond_reach_median_excess"] < 0.024


def test_model_is_accurate(run):
    _, m = run
    assert m["model_test_rmse"] < 0.012                 # per coordinate, on fresh postures
    # with lam = 1e-4 the optimizer's own miss in the model is far below the model error
    assert m["median_model_error"] < 0.1 * m["model_test_median_error"]


def test_control_cost_tradeoff(run):
    _, m = run
    rows = {r["lam"]: r for r in m["lam_sweep"]}
    chosen, big, none = rows[m["lam"]], rows[0.1], rows[0.0]
    # a large weight biases the hand away from the target (the miss grows with lam) ...
    assert big["median_model_error"] > 100 * chosen["median_model_error"]
    assert big["success_rate"] < chosen["success_rate"] - 0.3
    # ... and no weight leaves the redundancy unresolved: postures far from the rest shape
    assert none["median_shape_deviation"] > 2 * chosen["median_shape_deviation"]
    assert chosen["median_shape_deviation"] == pytest.approx(m["median_shape_deviation"])


def test_files(run):
    out, m = run
    check_outputs(out, ("postures.png", "error_map.png", "training.png", "tradeoff.png"), "arm_reach", m, ["success_rate"])


def test_cached_model_is_reused(run, capsys):
    out, m = run
    again = arm_reach.main(["--quick", "--seed", "0", "--out", str(out)])
    assert again["model_cached"] is True and again["train_seconds"] == 0.0
    assert again["success_rate"] == pytest.approx(m["success_rate"])
    assert again["model_test_rmse"] == pytest.approx(m["model_test_rmse"])
