"""Sampling planners' speed: ``options["workers"]`` 1 and 2, float64 and float32 rollouts.

One MPC plan of the HalfCheetah scenario's planner (``cem-gd``: 2 CEM iterations of 200
candidates under an ensemble of 5 residual 23-64-64-17 tanh models, the 5 best elites
refined by 10 batched L-BFGS iterations, horizon 25, the task's cost and a disagreement
penalty of 0.1), and one population rollout of its CEM phase alone (200 candidates x 5
members), for every combination of

* ``workers`` = 1 (the candidates' rollouts on one thread) and 2 (split across two);
* the model's ``dtype``: float64, and float32 (``Dynamics(ensemble, dtype=np.float32)``:
  the members' passes in single precision).

The model is the scenario's, fitted briefly on 3,000 random-action steps (needs
``ctrlprop[gym]``): the time of a plan depends on the model only through the refinement's
line searches.  Rounds interleaved, best of 7; every ratio is against workers=1, float64 in
the same run, and the rollouts' costs are compared with it.

Run: ``python benchmarks/bench_planner_speed.py`` (a quiet 2-core machine; about 30 s).
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
CONFIGS = [(1, np.float64), (2, np.float64), (1, np.float32), (2, np.float32)]


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
    models = {np.float64: dyn,
              np.float32: cp.Dynamics(dyn.net, dyn.n_states, residual=dyn.residual,
                                      dtype=np.float32, propagation=dyn.propagation,
                                      disagreement=dyn.disagreement)}
    cost = ctrlprop.envs.task("HalfCheetah-v5").cost()
    rng = np.random.default_rng(0)
    P = PLAN["options"]["population"]
    planners, samplers = [], []
    for w, dt in CONFIGS:
        opts = dict(PLAN["options"], workers=w)
        planners.append(cp.Planner(models[dt], H, cost, bounds=(-1, 1), method=PLAN["method"],
                                   maxiter=PLAN["maxiter"], options=opts, seed=0))
        samplers.append(Sampler(models[dt], x[None], H, cost, None, "cem",
                                dict(population=P, workers=w)))
    S = rng.uniform(-1, 1, (1, P, H, 6))
    fresh = [0]

    def rollout(s):
        def run():                      # a new population every call (no cached rollout)
            fresh[0] += 1
            s.evaluate(S + 1e-9 * fresh[0])
        return run
    with cp.blas_threads(1):
        f = [s.evaluate(S) for s in samplers]
        t_roll = timeit_many([rollout(s) for s in samplers], min_time=4.0)
        t_plan = timeit_many([lambda p=p: p.plan(x) for p in planners], min_time=12.0)
    rows = []
    for i, (w, dt) in enumerate(CONFIGS):
        diff = float(np.max(np.abs(f[i] - f[0]) / np.abs(f[0])))
        rows.append([str(w), np.dtype(dt).name, fmt_time(t_roll[i]),
                     f"{t_roll[0] / t_roll[i]:.2f}x", fmt_time(t_plan[i]),
                     f"{t_plan[0] / t_plan[i]:.2f}x", f"{diff:.1e}"])
    print(f"Sampling planners on HalfCheetah's ensemble: a population rollout ({P} candidates "
          f"x 5 members x {H} steps) and one cem-gd plan")
    print(machine_note())
    table(rows, ["workers", "dtype", "rollout", "speed-up", "cem-gd plan", "speed-up",
                 "rollout costs vs workers=1 float64 (relative)"])


if __name__ == "__main__":
    sys.exit(main())
