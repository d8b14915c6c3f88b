"""HalfCheetah-v5 (MuJoCo) from scratch: an ensemble model and sampling polished by gradients.

The loop of :func:`ctrlprop.learn_and_plan` on gymnasium's HalfCheetah-v5 (17 observations,
6 torques in [-1, 1], 1000-step episodes): 2,000 random steps, then rounds of 1,000 steps of
MPC through the model, refitting it (warm start) after each.  The model is an
:class:`~ctrlprop.Ensemble` of 5 residual 23-64-64-17 tanh networks, each fitted on its own
bootstrap resample of the transitions (``fit_dynamics(ensemble=5, method="adam")``, 100
epochs per fit, each refit warm-started: L-BFGS-B, the library's default, under-fits this
contact-rich data, worse than a linear model; see :func:`ctrlprop.fit_dynamics`); the planner is
``cem-gd``: two CEM iterations of 200 candidates, every candidate rolled out under every
member (the expected cost over the members, PETS's TS-inf, plus 0.1 times the members'
disagreement, the variance of their predictions summed over states and steps: without it
the planner drives the model where it is wrong), then the 5 best elites refined
by 10 iterations of batched L-BFGS through the ensemble by BPTT, the candidates' rollouts
split across the 2 cores (``workers=2``), horizon 25 (with 15, the
planner dives nose-first for the forward speed it gives at once and the cheetah stays stuck
on its head, pitched about 1 rad, for the rest of the episode: on one model fitted on 16,000
transitions of an earlier run, two episodes returned 65 and 69 at horizon 15, 1,440 and
1,590 at 25; a pitch penalty of 1 or 5 at horizon 15 gave only 150-340).  The planning
cost is minus the task's reward (``ctrlprop.envs.task("HalfCheetah-v5").cost()``: the
forward velocity proxy and ``0.1 |a|^2``).  Each model is scored by the 1000-step episode it
collects in the next round (``eval_episodes=0``: the training episodes' returns, the curve
PETS plots; a separate evaluation episode would double the planning time), at the
interaction steps taken by the end of that episode.

Goal: an evaluation return >= 3,000 after <= 50,000 interaction steps in at most 2 hours on
2 cores (PETS 4,205 and SAC 1,746 at 50,000 steps on PETS's cheetah; random actions about
-280).  ``--steps N`` stops after N interaction steps (a shorter budget: the curve so far).
Outputs in out/gym_half_cheetah: learning_curve.png, trajectory.png, transitions.npz, model.npz,
metrics.json.
"""

import sys

from _common import run_main
from _gym import run

NAME = "gym_half_cheetah"
PLAN = dict(method="cem-gd", maxiter=2,
            options=dict(population=200, elites=20, refine=5, gd_maxiter=10, alpha=0.1,
                          workers=2))
SPEC = {
    "env_id": "HalfCheetah-v5",
    "obs_labels": None,
    "action_labels": ["bthigh", "bshin", "bfoot", "fthigh", "fshin", "ffoot"],
    "references": [("PETS (Chua et al. 2018)", 4205, 50000), ("SAC (PETS paper)", 1746, 50000),
                   ("random actions", -280)],
    "goal": {"kind": "mean", "value": 3000.0, "steps": 50000},
    "full": dict(warmup=2000, iterations=48, steps_per_iteration=1000, horizon=25,
                 fit=dict(hidden=(64, 64), ensemble=5, method="adam", maxiter=100,
                          validation=0.0, disagreement=0.1),
                 plan=PLAN, eval_episodes=0),
    "quick": dict(warmup=300, iterations=2, steps_per_iteration=100, horizon=5,
                  fit=dict(hidden=(16,), ensemble=2, method="adam", maxiter=5,
                           validation=0.0, disagreement=0.1),
                  plan=dict(method="cem-gd", maxiter=1,
                            options=dict(population=16, elites=4, refine=2, gd_maxiter=3,
                                         workers=2)),
                  eval_episodes=0, episode_steps=100),
}


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    spec = SPEC
    if "--steps" in argv:
        i = argv.index("--steps")
        steps = int(argv[i + 1])
        del argv[i:i + 2]
        full = dict(SPEC["full"])
        full["iterations"] = max(0, (steps - full["warmup"]) // full["steps_per_iteration"])
        spec = dict(SPEC, full=full)
    return run(NAME, __doc__.splitlines()[0], spec, argv)


if __name__ == "__main__":
    run_main(__file__, main)
