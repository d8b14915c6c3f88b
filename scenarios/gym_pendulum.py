"""Pendulum-v1 from scratch: learn a model from interaction and swing up by MPC through it.

The loop of :func:`ctrlprop.learn_and_plan` on gymnasium's Pendulum-v1: 400 random
steps, then four rounds of 400 steps of MPC through the model, refitting it (warm start)
after each, 2,000 interaction steps in all.  The planning cost is minus Pendulum-v1's own
reward (``ctrlprop.envs.task("Pendulum-v1").cost()``, exact in the observations), the
model a residual 4-64-64-3 tanh network on (cos, sin, theta_dot, torque).  After every fit,
20 evaluation episodes (not trained on, not counted as interaction).

Goal: a mean evaluation return >= -155 after <= 2,000 steps (SAC: -157 +- 89 after
20,000 steps, rl-baselines3-zoo).  Outputs in out/gym_pendulum: learning_curve.png,
trajectory.png, transitions.npz, model.npz, metrics.json.

The model is fitted on every transition (``validation=0.0``: with a few thousand steps,
holding a fifth out costs more than early stopping gains) for a fixed number of L-BFGS-B
iterations, warm-started from the previous round's model.
"""

from _common import run_main
from _gym import run

NAME = "gym_pendulum"
SPEC = {
    "env_id": "Pendulum-v1",
    "obs_labels": ["cos theta", "sin theta", "theta_dot"],
    "action_labels": ["torque"],
    "references": [("SAC, rl-baselines3-zoo", -157, 20000)],
    "goal": {"kind": "mean", "value": -155.0, "steps": 2000},
    "full": dict(warmup=400, iterations=4, steps_per_iteration=400, horizon=30,
                 fit=dict(hidden=(64, 64), maxiter=500, validation=0.0),
                 plan=dict(maxiter=20),
                 eval_episodes=20),
    "quick": dict(warmup=400, iterations=1, steps_per_iteration=200, horizon=25,
                  fit=dict(hidden=(32, 32), maxiter=300), plan=dict(maxiter=10),
                  eval_episodes=2, episode_steps=100),
}


def main(argv=None):
    return run(NAME, __doc__.splitlines()[0], SPEC, argv)


if __name__ == "__main__":
    run_main(__file__, main)
