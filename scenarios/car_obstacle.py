"""Parking the car around an obstacle: a state constraint along the trajectory, through the
learned model, executed on the true car.

    python scenarios/car_obstacle.py            # full size (the car_parking model is reused)
    python scenarios/car_obstacle.py --quick    # small sizes, under 30 s

The car and cost of ``car_parking.py`` (Tassa, Mansard & Todorov 2014: from
``[1, 1, 3 pi/2, 0]`` to the origin facing +x, at rest, in T = 500 steps), and its learned
translation-invariant model (trained or loaded from the same cache).  First the plan without
the obstacle; then a disc of radius ``radius`` is put on that path (centred on its point
farthest from both the start and the spot), and the rear-axle point ``(x, y)`` must stay
outside it at every step::

    c(x_{t+1}) = r^2 - |(x, y)_{t+1} - centre|^2 <= 0,      t = 0 .. T-1

a :class:`ctrlprop.PathConstraint` handed to ``cp.optimize_trajectory(..., constraints=...)``:
augmented-Lagrangian outer iterations around L-BFGS-B through the model (BPTT), warm-started
from the unconstrained plan.  The plan is then run on the TRUE car open loop and with
shrinking-horizon replanning (the constraint kept in every replan), and the constraint's
largest violation on the true car is reported with the parking error and the cost.

Outputs in out/car_obstacle: paths.png, metrics.json.
"""

import os
import time
import warnings

import numpy as np
from scipy.optimize import Bounds

import ctrlprop as cp
from ctrlprop.plants import CAR_T, CAR_X0, car_trajectory_cost

from _common import parse_args, write_metrics, run_main
import car_parking as park

NAME = "car_obstacle"
FULL = dict(park.FULL, radius=0.5, al_iter=500, replan_every=25, replan_iter=50)
QUICK = dict(park.QUICK, radius=0.4, al_iter=150, replan_every=100, replan_iter=20)


def obstacle(centre, radius):
    """The disc constraint on the rear-axle point, with its Jacobian."""
    centre = np.asarray(centre, float)

    def c(X, U):
        d = X[..., :2] - centre
        cx = np.zeros(X.shape[:-1] + (1, 4))
        cx[..., 0, :2] = -2.0 * d
        return (radius ** 2 - (d * d).sum(-1))[..., None], cx, None
    return cp.PathConstraint(c, 1, name="obstacle")


def place(S, x0):
    """The obstacle centre: the point of path S farthest from both the start and the spot."""
    p = S[1:-1, :2]
    score = np.minimum(np.hypot(*(p - x0[:2]).T), np.hypot(*p.T))
    return p[int(np.argmax(score))]


def clearance(S, centre, radius):
    """Largest violation max(0, r - distance) of the disc along states S (metres)."""
    d = np.hypot(*(S[1:, :2] - centre).T)
    return float(max(0.0, radius - d.min())), float(d.min())


def replan(model, car, x0, T, plan, cons, every, maxiter):
    """Shrinking-horizon replanning on the true car with the constraint in every replan."""
    bounds = Bounds(car.u_low, car.u_high)
    S, U, k = [np.array(x0, float)], [], 0
    while k < T:
        if k:
            with warnings.catch_warnings():      # replans are capped at maxiter by design
                warnings.simplefilter("ignore", cp.ConvergenceWarning)
                res = cp.optimize_trajectory(model, S[-1], T - k, park.car_cost(), u0=plan,
                                             bounds=bounds, maxiter=maxiter,
                                             constraints=cons,
                                             constraint_options={"outer_maxiter": 5})
            plan = res.controls
        n = min(every, max(1, (T - k) // 4))
        for u in plan[:n]:
            S.append(car.step(S[-1], u))
            U.append(u)
        plan, k = plan[n:], k + n
    return np.array(S), np.array(U)


def plot(car, runs, centre, radius, path):
    fig, ax = cp.plot.new_figure(figsize=(7.0, 7.0))
    ang = np.linspace(0, 2 * np.pi, 200)
    ax.fill(centre[0] + radius * np.cos(ang), centre[1] + radius * np.sin(ang),
            color="crimson", alpha=0.45, label=f"obstacle (radius {radius:g})")
    for (label, S, U), c in zip(runs, ("0.6", "C1", "C0")):
        viol, dmin = clearance(S, centre, radius)
        ax.plot(S[:, 0], S[:, 1], color=c, lw=1.5,
                label=f"{label}: ends {np.hypot(*S[-1, :2]):.3f} from the spot, "
                      f"closest {dmin:.3f} to the centre")
        idx = park.car_moments(S, 5)
        cp.plot.draw_car(ax, S[idx], wheel_angles=U[np.minimum(idx, len(U) - 1), 0],
                         color=c, alpha=0.45, d=car.d)
    cp.plot.draw_car(ax, np.zeros(3), color="crimson", alpha=0.5, d=car.d)
    ax.plot(*CAR_X0[:2], "o", color="k", ms=4, label="start")
    ax.set_aspect("equal", adjustable="datalim")
    ax.grid(alpha=0.3)
    ax.set_title("Car parking around an obstacle, through the learned model, on the true car",
                 fontsize="medium")
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncol=1,
               fontsize="x-small")
    cp.plot.save_figure(fig, path, dpi=100)


def main(argv=None):
    args = parse_args(NAME, __doc__.splitlines()[0], argv)
    cfg = QUICK if args.quick else FULL
    car, x0 = cp.Car(), CAR_X0
    T = cfg.get("T", CAR_T)
    args_park = parse_args(park.NAME, "", ["--out", os.path.join(args.out, "model")]
                           + (["--quick"] if args.quick else []) + ["--seed", str(args.seed)]
                           + ([] if args.progress else ["--no-progress"]))
    net, info, _ = park.load_or_train(args_park, car, cfg)
    model = cp.Dynamics(net, 4, residual=True)
    bounds = Bounds(car.u_low, car.u_high)

    t0 = time.perf_counter()
    free = cp.optimize_trajectory(model, x0, T, park.car_cost(), bounds=bounds,
                                  maxiter=cfg["plan_iter"], u0=np.zeros((T, 2)))
    t_free = time.perf_counter() - t0
    centre, radius = place(free.states, x0), cfg["radius"]
    cons = obstacle(centre, radius)
    t0 = time.perf_counter()
    plan = cp.optimize_trajectory(model, x0, T, park.car_cost(), bounds=bounds,
                                  u0=free.controls, maxiter=cfg["al_iter"], constraints=cons)
    t_plan = time.perf_counter() - t0
    S_open = car.rollout(x0, plan.controls)
    t0 = time.perf_counter()
    S_re, U_re = replan(model, car, x0, T, plan.controls, cons, cfg["replan_every"],
                        cfg["replan_iter"])
    t_re = time.perf_counter() - t0
    S_free = car.rollout(x0, free.controls)
    runs = [("without the obstacle (plan, open loop)", S_free, free.controls),
            ("constrained plan, open loop", S_open, plan.controls),
            ("constrained, replanned", S_re, U_re)]
    plot(car, runs, centre, radius, os.path.join(args.out, "paths.png"))

    m = {"obstacle_centre": np.round(centre, 4), "obstacle_radius": radius,
         "model_violation": float(plan.constraint_violation),
         "model_outer_iterations": int(plan.outer_iterations),
         "model_plan_seconds": round(t_plan, 2), "free_plan_seconds": round(t_free, 2),
         "replan_seconds": round(t_re, 2), "plan_success": bool(plan.success)}
    for key, (label, S, U) in zip(("free", "open_loop", "replanned"), runs):
        viol, dmin = clearance(S, centre, radius)
        m[f"{key}_true_violation_m"] = round(viol, 5)
        m[f"{key}_min_distance_m"] = round(dmin, 5)
        m[f"{key}_parking_error"] = round(float(np.hypot(*S[-1, :2])), 4)
        m[f"{key}_true_cost"] = round(float(car_trajectory_cost(S, U)[0]), 4)
    write_metrics(args, NAME, m)
    return m


if __name__ == "__main__":
    run_main(__file__, main)
