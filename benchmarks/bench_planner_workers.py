"""Sampling planners on worker threads: ``options["workers"]`` = 1 against 2.

One MPC plan of the HalfCheetah scenario's planner (``cem-gd``: 2 CEM iterations of 200
candidates under an ensemble of 5 residual 23-64-64-17 tanh models, the 5 best elites
refined by 10 batched L-BFGS iterations, horizon 25, the task's cost and a disagreement
penalty of 0.1), and one population rollout of its CEM phase alone (200 candidates x 5
members), with the candidates' rollouts on one thread and split across two.  The model is
the scenario's, fitted briefly on 3,000 random-action steps (needs ``ctrlprop[gym]``): the
time of a plan depends on the model only through the refinement's line searches.  Rounds
interleaved, best of 7; the costs of the two rollouts are compared.

Run: ``python benchmarks/bench_planner_workers.py`` (a quiet 2-core machine; about 15 s).
"""

import os
import sys
import warnings

import numpy as np

import ctrlprop as cp
import ctrlprop.envs
from ctrlprop.planning.sampling import Sampler
from _util import fmt_time, machine_note, table, timeit_many

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scenarios"))
import gym_half_cheetah  # noqa: E402

H = gym_half_cheetah.SPEC["full"]["horizon"]
PLAN = gym_half_cheetah.PLAN


def model():
    """The scenario's ensemble, fitted briefly (10 Adam epochs) on 3,000 random steps."""
    env = ctrlprop.envs.make("HalfCheetah-v5")
    data = cp.collect(env, 3000, seed=0)
    fit = dict(gym_half_cheetah.SPEC["full"]["fit"], maxiter=10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cp.ConvergenceWarning)
        return cp.fit_dynamics(data, **fit), data.obs[0]


def main():
    dyn, x = model()
    cost = ctrlprop.envs.task("HalfCheetah-v5").cost()
    rng = np.random.default_rng(0)
    P = PLAN["options"]["population"]
    planners, samplers = [], []
    for w in (1, 2):
        opts = dict(PLAN["options"], workers=w)
        planners.append(cp.Planner(dyn, H, cost, bounds=(-1, 1), method=PLAN["method"],
                                   maxiter=PLAN["maxiter"], options=opts, seed=0))
        samplers.append(Sampler(dyn, x[None], H, cost, None, "cem",
                                dict(population=P, workers=w)))
    S = rng.uniform(-1, 1, (1, P, H, 6))
    rows = []
    with cp.blas_threads(1):
        f1, f2 = (s.evaluate(S) for s in samplers)
        rel = float(np.max(np.abs(f2 - f1) / np.abs(f1)))
        fresh = [0]

        def rollout(s):
            def run():                  # a new population every call (no cached rollout)
                fresh[0] += 1
                s.evaluate(S + 1e-9 * fresh[0])
            return run
        t_roll = timeit_many([rollout(s) for s in samplers], min_time=2.0)
        t_plan = timeit_many([lambda p=p: p.plan(x) for p in planners], min_time=6.0)
    for name, t in ((f"CEM population rollout ({P} x 5 members x {H} steps)", t_roll),
                    (f"one cem-gd plan (scenario's planner, H={H})", t_plan)):
        rows.append([name, fmt_time(t[0]), fmt_time(t[1]), f"{t[0] / t[1]:.2f}x"])
    print("Sampling planners: the candidates' rollouts on 1 and 2 threads (float64)")
    print(machine_note())
    table(rows, ["case", "workers=1", "workers=2", "speed-up"])
    print(f"largest relative difference of the rollouts' costs: {rel:.1e}")


if __name__ == "__main__":
    sys.exit(main())
