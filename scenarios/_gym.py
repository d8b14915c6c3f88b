"""The learn-plan-act loop on a gymnasium environment, shared by the gym_* scenarios.

A scenario gives a spec: the environment id, its sizes for a full and a --quick run
(``learn_and_plan`` arguments), the published reference returns to draw, and its goal.
This module runs the loop, writes learning_curve.png, trajectory.png, transitions.npz
(every transition collected, so a run can be resumed or inspected), model.npz (the last
fitted network or ensemble: ``cp.load``, then ``cp.Dynamics(net, n_obs, residual=True,
...)`` with the spec's fit options) and metrics.json, and prints the summary.
"""

import os
import time

import numpy as np

import ctrlprop as cp
import ctrlprop.envs

from _common import parse_args, write_metrics


def run(name, doc, spec, argv=None, extra=None):
    """Run the scenario ``name`` from ``spec``; returns the metrics dict.  ``extra(args)``,
    when given, returns more metrics (a dict) to record."""
    args = parse_args(name, doc, argv)
    cfg = dict(spec["quick"] if args.quick else spec["full"])
    env = cp.envs.make(spec["env_id"])
    task = cp.envs.task(spec["env_id"])
    cost = task.cost(**cfg.pop("cost", {}))
    if "Q" in cfg:              # a quadratic shaping term on the observations, added
        cost = cp.TrajectoryCost(Q=cfg.pop("Q"), trajectory=cost.trajectory)
    t0 = time.perf_counter()
    res = cp.learn_and_plan(env, cost, seed=args.seed, progress=args.progress,
                            checkpoint=os.path.join(args.out, "transitions.npz"), **cfg)
    seconds = time.perf_counter() - t0
    cp.save(res.model.net, os.path.join(args.out, "model.npz"))
    final = res.evaluations[-1]
    goal = spec["goal"]
    if goal["kind"] == "mean":
        met = bool(res.returns[-1] >= goal["value"] and res.steps[-1] <= goal["steps"])
    else:                                     # every evaluation episode reaches the value
        met = bool(np.all(final.returns >= goal["value"]) and res.steps[-1] <= goal["steps"])
    first = final.data.select([final.data.episode_ids()[0]])
    plots(args, spec, res, first,
          "one evaluation episode" if cfg["eval_episodes"] else "the last scored episode")
    metrics = {
        "env": spec["env_id"],
        "returns": np.round(res.returns, 2),
        "returns_std": np.round(res.returns_std, 2),
        "steps": res.steps,
        "final_mean_return": round(float(res.returns[-1]), 2),
        "final_min_return": round(float(final.returns.min()), 2),
        "final_episodes": int(final.returns.size),
        "final_episodes_at_goal": int((final.returns >= goal["value"]).sum()),
        "interaction_steps": int(res.steps[-1]),
        "goal": goal,
        "goal_met": met,
        "compute_seconds": round(seconds, 1),
        "mpc_ms_per_step": np.round(res.history["ms_per_step"], 2),
        "fit_seconds": np.round(res.history["fit_time"], 1),
        "one_step_rmse": np.round(res.history["one_step_rmse"], 5),
        "one_step_rmse_on": res.model.report.measured_on,
        "multi_step_rmse_last": np.round(res.model.report.multi_step_rmse[-1], 4),
        "references": [list(r) for r in spec["references"]],
        "status": res.message,
    }
    if extra is not None:
        metrics.update(extra(args))
    write_metrics(args, name, metrics)
    return metrics


def plots(args, spec, res, episode, which):
    """learning_curve.png and trajectory.png (``episode``, the first scored episode of the
    last scored model, described by ``which``)."""
    g = spec["goal"]
    fig = cp.plot.plot_learning_curve(
        res.steps, res.returns, res.returns_std, references=spec["references"],
        goal=(g["value"], g["steps"]),
        title=f"{spec['env_id']}: MPC through a learned model (seed {args.seed})")
    cp.plot.save_figure(fig, os.path.join(args.out, "learning_curve.png"))
    S = np.vstack([episode.obs, episode.next_obs[-1:]])
    fig = cp.plot.plot_time_series(
        S, episode.actions, state_labels=spec.get("obs_labels"),
        control_labels=spec.get("action_labels"),
        title=f"{spec['env_id']}: {which}, return "
              f"{episode.rewards.sum():.1f} over {len(episode)} steps")
    cp.plot.save_figure(fig, os.path.join(args.out, "trajectory.png"))
