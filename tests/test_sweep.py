"""Sweeps: ctrlprop.sweep on executors, and the scenario scripts' --seeds/--workers options."""

import json
import os
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor

import pytest

import ctrlprop as cp

SCENARIOS = os.path.join(os.path.dirname(__file__), os.pardir, "scenarios")

# a scenario-shaped script: the standard options, one metric that depends on the seed,
# and a failure for seed 13
FAKE = '''
import sys
sys.path.insert(0, {scenarios!r})
from _common import parse_args, run_main, write_metrics

def main(argv=None):
    args = parse_args("fake", "a fake scenario", argv)
    if args.seed == 13:
        raise RuntimeError("seed 13 is unlucky")
    return write_metrics(args, "fake", {{"score": 10.0 * args.seed, "label": "x"}})

if __name__ == "__main__":
    run_main(__file__, main)
'''


def _power(base, exponent):
    return base ** exponent


def test_sweep_returns_the_results_in_order_on_any_executor():
    settings = [{"base": b, "exponent": 2} for b in range(6)]
    serial = cp.sweep(_power, settings)
    with ProcessPoolExecutor(2) as ex:
        par = cp.sweep(_power, settings, executor=ex)
    assert serial == par == [b * b for b in range(6)]


def test_sweep_names_the_failed_setting_and_keeps_the_others():
    settings = [{"base": 2, "exponent": 1}, {"base": 0, "exponent": -1},
                {"base": 3, "exponent": 2}]
    with ProcessPoolExecutor(2) as ex, pytest.raises(cp.ParallelError, match="problem 1") as e:
        cp.sweep(_power, settings, executor=ex)
    assert e.value.results == [2, None, 9]


def test_sweep_rejects_bad_arguments():
    with pytest.raises(TypeError, match="settings must be a sequence of dicts"):
        cp.sweep(_power, [(2, 1)])
    with pytest.raises(TypeError, match="function must be callable"):
        cp.sweep(3, [{}])


def _fake(tmp_path):
    path = tmp_path / "fake.py"
    path.write_text(FAKE.format(scenarios=os.path.abspath(SCENARIOS)))
    return path


def test_a_scenario_sweep_over_seeds_on_two_workers_writes_each_run_and_a_summary(tmp_path):
    path = _fake(tmp_path)
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, str(path), "--seeds", "1", "2", "4", "--workers",
                           "2", "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    for s in (1, 2, 4):
        with open(out / f"seed_{s}" / "metrics.json") as f:
            assert json.load(f)["score"] == 10.0 * s
    with open(out / "sweep.json") as f:
        summary = json.load(f)
    assert summary["summary"]["score"]["mean"] == pytest.approx(70.0 / 3)
    assert summary["failed"] == []


def test_a_failed_seed_is_reported_and_the_other_seeds_are_kept(tmp_path):
    path = _fake(tmp_path)
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, str(path), "--seeds", "3", "13", "--workers", "2",
                           "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "seed 13 failed" in done.stdout and "seed 13 is unlucky" in done.stdout
    with open(out / "sweep.json") as f:
        summary = json.load(f)
    assert summary["failed"] == ["13"] and list(summary["per_seed"]) == ["3"]


def test_sweep_options_need_seeds(tmp_path):
    path = _fake(tmp_path)
    done = subprocess.run([sys.executable, str(path), "--workers", "2"], capture_output=True,
                          text=True, cwd=tmp_path, timeout=120)
    assert done.returncode != 0 and "give --seeds too" in done.stderr


def test_seed_is_not_read_as_an_abbreviation_of_seeds(tmp_path):
    # --seed 5 runs the scenario once; were it taken for --seeds, every run would sweep again
    path = _fake(tmp_path)
    done = subprocess.run([sys.executable, str(path), "--seed", "5", "--out",
                           str(tmp_path / "one")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    with open(tmp_path / "one" / "metrics.json") as f:
        assert json.load(f)["score"] == 50.0
    assert not (tmp_path / "one" / "sweep.json").exists()
