"""Reacher-v5 (MuJoCo) from scratch: learn a model from interaction and reach by MPC
through it.

The loop of :func:`ctrlprop.learn_and_plan` on gymnasium's Reacher-v5 (a two-link arm
reaching a random target, 50-step episodes): 500 random steps, then nine rounds of 500
steps of MPC through the model, refitting it (warm start) after each, 5,000 interaction
steps in all.  (Random torques spin the arm at up to ~25 rad/s, a regime MPC never visits:
a short warm-up and more rounds of MPC data give the better model.)  The planning cost is minus the task's own reward, exact in the
observations (``ctrlprop.envs.task("Reacher-v5").cost()``: the distance of the fingertip
to the target plus ``|a|^2``, with the control weight of gymnasium's code, 1, not the 0.1
of its docstring).  After every fit, 50 evaluation episodes (not trained on, not counted).

Goal: a mean evaluation return >= -3.75 (gymnasium's threshold) after <= 5,000 steps (SAC
-6.4 and PETS -12.3 after 200,000 steps, MBBL).  Outputs in out/gym_reacher:
learning_curve.png, trajectory.png, transitions.npz, model.npz,
metrics.json.

``--oracle N`` also runs the same MPC (horizon, iterations, cost) with MuJoCo itself as the
model (finite-difference gradients through copies of the simulator state) on N episodes:
the return planning reaches when the model is exact, which separates what the learned
model costs from what the planner costs.

The model is fitted on every transition (``validation=0.0``: with a few thousand steps,
holding a fifth out costs more than early stopping gains) for a fixed number of L-BFGS-B
iterations, warm-started from the previous round's model.
"""

import sys
import time

import numpy as np
import scipy.optimize

import ctrlprop as cp
import ctrlprop.envs

from _common import run_main
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
    "full": dict(warmup=500, iterations=9, steps_per_iteration=500, horizon=15,
                 fit=dict(hidden=(64, 64), maxiter=1000, validation=0.0),
                 plan=dict(maxiter=20),
                 eval_episodes=50),
    "quick": dict(warmup=300, iterations=1, steps_per_iteration=100, horizon=8,
                  fit=dict(hidden=(32,), maxiter=150), plan=dict(maxiter=5),
                  eval_episodes=2),
}


def oracle(episodes, horizon, maxiter, seed=0):
    """Mean return of MPC through the true simulator (see the module docstring)."""
    env = cp.envs.make("Reacher-v5")
    sim = cp.envs.make("Reacher-v5").unwrapped
    sim.reset(seed=seed)
    task = cp.envs.task("Reacher-v5")
    lo, hi = task.bounds.lb, task.bounds.ub
    H = horizon

    def cost(flat, qpos, qvel):
        sim.set_state(qpos, qvel)
        return -sum(sim.step(u)[1] for u in flat.reshape(H, -1))

    def value_and_grad(flat, qpos, qvel, h=1e-5):
        f0 = cost(flat, qpos, qvel)
        g = np.empty_like(flat)
        for i in range(flat.size):
            e = flat.copy()
            e[i] += h
            g[i] = (cost(e, qpos, qvel) - f0) / h
        return f0, g

    returns = []
    for ep in range(episodes):
        env.reset(seed=cp.core.environment.episode_seed(seed + 1, ep))
        U, R, done = np.zeros((H, lo.size)), 0.0, False
        while not done:
            d = env.unwrapped.data
            qpos, qvel = d.qpos.copy(), d.qvel.copy()
            res = scipy.optimize.minimize(value_and_grad, U.ravel(), (qpos, qvel), jac=True,
                                          method="L-BFGS-B",
                                          bounds=list(zip(np.tile(lo, H), np.tile(hi, H))),
                                          options=dict(maxiter=maxiter))
            U = res.x.reshape(H, -1)
            _, r, term, trunc, _ = env.step(U[0])
            R += r
            done = term or trunc
            U = np.vstack([U[1:], U[-1:]])
        returns.append(R)
    return np.array(returns)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    n_oracle = 0
    if "--oracle" in argv:
        i = argv.index("--oracle")
        n_oracle = int(argv[i + 1])
        del argv[i:i + 2]

    def with_oracle(args):
        if not n_oracle:
            return {}
        cfg = SPEC["quick" if args.quick else "full"]
        t0 = time.perf_counter()
        R = oracle(n_oracle, cfg["horizon"], cfg["plan"]["maxiter"], args.seed)
        print(f"\nMPC through MuJoCo itself (horizon {cfg['horizon']}, "
              f"{cfg['plan']['maxiter']} L-BFGS-B iterations per step), {n_oracle} episodes: "
              f"mean return {R.mean():.2f} (min {R.min():.2f}), "
              f"{time.perf_counter() - t0:.0f} s")
        return {"oracle_episodes": n_oracle, "oracle_mean_return": round(float(R.mean()), 2),
                "oracle_returns": np.round(R, 2)}

    return run(NAME, __doc__.splitlines()[0], SPEC, argv, extra=with_oracle)


if __name__ == "__main__":
    run_main(__file__, main)
