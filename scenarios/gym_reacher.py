"""Reacher-v5 (MuJoCo) from scratch: learn a model from interaction and reach by MPC
through it.

The loop of :func:`ctrlprop.learn_and_plan` on gymnasium's Reacher-v5 (a two-link arm
reaching a random target, 50-step episodes): 1,000 random steps, then four rounds of
1,000 steps of MPC through the model, refitting it (warm start) after each, 5,000
interaction steps in all.  The planning cost is minus the task's own reward, exact in the
observations (``ctrlprop.envs.task("Reacher-v5").cost()``: the distance of the fingertip
to the target plus ``|a|^2``, with the control weight of gymnasium's code, 1, not the 0.1
of its docstring).  After every fit, 50 evaluation episodes (not trained on, not counted).

Goal: a mean evaluation return >= -3.75 (gymnasium's threshold) after <= 5,000 steps (SAC
-6.4 and PETS -12.3 after 200,000 steps, MBBL).  Outputs in out/gym_reacher:
learning_curve.png, trajectory.png, transitions.npz, metrics.json.
"""

from _gym import run

NAME = "gym_reacher"
SPEC = {
    "env_id": "Reacher-v5",
    "obs_labels": ["cos q1", "cos q2", "sin q1", "sin q2", "target x", "target y",
                   "q1 rate", "q2 rate", "tip - target x", "tip - target y"],
    "action_labels": ["shoulder torque", "elbow torque"],
    "references": [("gymnasium threshold", -3.75), ("SAC (MBBL)", -6.4, 200000),
                   ("PETS (MBBL)", -12.3, 200000)],
    "goal": {"kind": "mean", "value": -3.75, "steps": 5000},
    "full": dict(warmup=1000, iterations=4, steps_per_iteration=1000, horizon=15,
                 fit=dict(hidden=(64, 64), maxiter=500), plan=dict(maxiter=20),
                 eval_episodes=50),
    "quick": dict(warmup=300, iterations=1, steps_per_iteration=100, horizon=8,
                  fit=dict(hidden=(32,), maxiter=150), plan=dict(maxiter=5),
                  eval_episodes=2),
}


def main(argv=None):
    return run(NAME, __doc__.splitlines()[0], SPEC, argv)


if __name__ == "__main__":
    main()
