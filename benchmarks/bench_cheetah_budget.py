"""HalfCheetah: the return against the planner's budget, on one model of the scenario's data.

Does a bigger sampling budget than the scenario's (2 CEM iterations of 200 candidates, then
5 elites refined by 10 batched L-BFGS iterations, horizon 25) give a higher return?  One
ensemble (5 residual 23-64-64-17 tanh members, Adam) is fitted on the transitions of a
scenario run (``python scenarios/gym_half_cheetah.py`` writes them to
``out/gym_half_cheetah/transitions.npz``), then the true environment is driven by MPC
through it with each planner below, for the same seeded episodes:

* the scenario's planner, in float64 and in float32 rollouts (``Planner(dtype=)``);
* 3 iterations of 300 candidates (float32);
* PETS's CEM budget, 5 iterations of 500 candidates (float32).

It reports the returns (mean and standard error over the episodes) and the planning
milliseconds per step (``workers=2``: run it on a quiet 2-core machine).

Run: ``python benchmarks/bench_cheetah_budget.py [--data PATH] [--episodes N]
[--epochs N] [--episode-steps N]`` (defaults: the scenario's output, 3 episodes of 1,000
steps, 300 epochs; about 25 min).
"""

import argparse
import os
import sys
import time
import warnings

import numpy as np

import ctrlprop as cp
import ctrlprop.envs
from _util import machine_note, table

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scenarios"))
import gym_half_cheetah  # noqa: E402

SPEC = gym_half_cheetah.SPEC["full"]
PLAN = gym_half_cheetah.PLAN
OPTS = PLAN["options"]
PLANNERS = [
    ("scenario's (2 x 200), float64", dict(PLAN, dtype=np.float64)),
    ("scenario's (2 x 200), float32", dict(PLAN, dtype=np.float32)),
    ("3 x 300, float32", dict(PLAN, maxiter=3, dtype=np.float32,
                              options=dict(OPTS, population=300, elites=30))),
    ("5 x 500 (PETS's), float32", dict(PLAN, maxiter=5, dtype=np.float32,
                                       options=dict(OPTS, population=500, elites=50))),
]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.path.join("out", "gym_half_cheetah",
                                                   "transitions.npz"))
    ap.add_argument("--episodes", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=300)
    ap.add_argument("--episode-steps", type=int, default=None,
                    help="cut the episodes short (a quick check); default: 1,000 steps")
    args = ap.parse_args(argv)
    data = cp.Transitions.load(args.data)
    env = ctrlprop.envs.make("HalfCheetah-v5")
    cost = ctrlprop.envs.task("HalfCheetah-v5").cost()
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cp.ConvergenceWarning)
        model = cp.fit_dynamics(data, **dict(SPEC["fit"], maxiter=args.epochs))
    print(f"model: {len(data)} transitions, {args.epochs} Adam epochs, "
          f"{time.perf_counter() - t0:.0f} s", flush=True)
    rows = []
    for name, plan in PLANNERS:
        planner = cp.Planner(model, SPEC["horizon"], cost, bounds=(-1, 1), seed=0, **plan)
        ev = cp.evaluate(env, planner, args.episodes, seed=7,
                         episode_steps=args.episode_steps)
        planner.close()
        R = ev.returns
        se = R.std(ddof=1) / np.sqrt(len(R)) if len(R) > 1 else float("nan")
        rows.append([name, f"{R.mean():.0f} ± {se:.0f}", " ".join(f"{r:.0f}" for r in R),
                     f"{ev.policy_ms:.0f}"])
        print(rows[-1], flush=True)
    print(f"HalfCheetah-v5: MPC through one model of {len(data)} transitions, "
          f"{args.episodes} episodes of {args.episode_steps or 1000} steps (seeds (7, i))")
    print(machine_note())
    table(rows, ["planner", "return (mean ± s.e.)", "episodes", "ms/step"])


if __name__ == "__main__":
    sys.exit(main())
