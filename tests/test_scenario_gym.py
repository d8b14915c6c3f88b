"""The three gym scenarios end to end in --quick mode (real gymnasium / MuJoCo
environments): the learn-plan-act loop, its plots, transitions.npz and metrics.json."""

import json

import numpy as np
import pytest

pytest.importorskip("gymnasium")

import ctrlprop as cp

from conftest import check_outputs
import gym_half_cheetah  # on sys.path via conftest
import gym_inverted_pendulum
import gym_pendulum
import gym_reacher

PNGS = ("learning_curve.png", "trajectory.png")
KEYS = ("final_mean_return", "interaction_steps", "goal_met", "compute_seconds")


def run(module, tmp_path):
    metrics = module.main(["--quick", "--seed", "0", "--out", str(tmp_path), "--no-progress"])
    check_outputs(tmp_path, PNGS, module.NAME, metrics, KEYS)
    data = cp.Transitions.load(tmp_path / "transitions.npz")
    net = cp.load(tmp_path / "model.npz")              # the last fitted model's network
    assert net.n_outputs == data.n_obs and net.n_inputs >= data.n_obs + data.n_act
    cfg = module.SPEC["quick"]
    # every interaction step is in the data, warm-up included; evaluation is not
    assert len(data) == metrics["interaction_steps"] == \
        cfg["warmup"] + cfg["iterations"] * cfg["steps_per_iteration"]
    # with evaluation episodes, a point per fit at the steps it was fitted on; without
    # (eval_episodes=0), a point per model but the last, at the end of what it collected
    scored = range(cfg["iterations"] + 1) if cfg["eval_episodes"] else \
        range(1, cfg["iterations"] + 1)
    assert list(metrics["steps"]) == [cfg["warmup"] + i * cfg["steps_per_iteration"]
                                      for i in scored]
    return metrics, data


def test_gym_pendulum_quick(tmp_path):
    m, data = run(gym_pendulum, tmp_path)
    task = cp.envs.task("Pendulum-v1")
    # the recorded rewards are the environment's: the task's reward agrees on them
    np.testing.assert_allclose(task.reward(data.obs, data.actions, data.next_obs),
                               data.rewards, atol=2e-5)
    # MPC through a model fitted on 400 random steps beats random torques by a wide margin:
    # random actions score about -6 per step here (-600 over the 100-step episodes)
    rand = cp.evaluate(cp.envs.make("Pendulum-v1"), None, 2, seed=5, episode_steps=100)
    assert m["final_mean_return"] > rand.mean_return + 200


def test_gym_inverted_pendulum_quick(tmp_path):
    m, data = run(gym_inverted_pendulum, tmp_path)
    assert data.terminated.sum() >= 10                      # random actions fall over fast
    # from 300 random steps the model balances both 100-step evaluation episodes
    assert m["final_min_return"] == 100.0 and m["final_episodes_at_goal"] == 0
    assert not m["goal_met"]                                # quick runs are not the goal


def test_gym_reacher_quick(tmp_path):
    m, data = run(gym_reacher, tmp_path)
    rand = cp.evaluate(cp.envs.make("Reacher-v5"), None, 2, seed=5)
    assert m["final_mean_return"] > rand.mean_return
    with open(tmp_path / "metrics.json") as f:
        saved = json.load(f)
    assert len(saved["mpc_ms_per_step"]) == 2 and saved["env"] == "Reacher-v5"


def test_gym_half_cheetah_quick(tmp_path):
    m, data = run(gym_half_cheetah, tmp_path)
    assert data.n_obs == 17 and data.n_act == 6
    assert np.all(np.abs(data.actions) <= 1.0)              # the planner kept the box
    # scored by its collected episodes: a point per model but the last
    assert len(m["mpc_ms_per_step"]) == 2 and np.all(np.asarray(m["mpc_ms_per_step"]) > 0)
    ids = data.episode_ids()
    np.testing.assert_allclose(m["returns"], [data.select([i]).rewards.sum() for i in ids[-2:]],
                               atol=0.006)                  # metrics.json rounds to 0.01


def test_gym_half_cheetah_budget_flag(tmp_path, monkeypatch):
    seen = {}

    def fake_run(name, doc, spec, argv):
        seen.update(spec=spec, argv=argv)
        return {}
    monkeypatch.setattr(gym_half_cheetah, "run", fake_run)
    gym_half_cheetah.main(["--steps", "7500", "--quick"])
    assert seen["argv"] == ["--quick"]
    assert seen["spec"]["full"]["iterations"] == 5          # (7500 - 2000) // 1000
    assert gym_half_cheetah.SPEC["full"]["iterations"] == 48
