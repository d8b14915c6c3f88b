"""Parking a car through a learned model of its dynamics: the iLQG car of Tassa, Mansard & Todorov.

    python scenarios/car_parking.py            # full size, a few minutes (model cached in out/)
    python scenarios/car_parking.py --quick    # small sizes, under 30 s

Problem (``demo_car`` of Tassa's iLQG code, "Control-Limited Differential Dynamic
Programming", ICRA 2014).  A car with state ``[x, y, theta, v]`` -- the middle of the rear
axle, the heading, the front-wheel speed -- steers with the front-wheel angle ``|w| <= 0.5``
and accelerates with ``|a| <= 2`` (``cp.Car``: axle distance 2, h = 0.03 s).  From
``x0 = [1, 1, 3 pi/2, 0]`` (facing down, at rest) it must, in T = 500 steps (15 s), park at the
origin facing along +x, at rest.  The cost (``cp.plants.car_trajectory_cost``) is a small
control cost ``1e-2 (w^2 + 0.01 a^2)``, a running cost ``1e-3 (sabs(x, 0.1) + sabs(y, 0.1))``
that rewards being near the origin early, and a final cost
``[0.1, 0.1, 1, 0.3] . sabs(x_T, [0.01, 0.01, 0.01, 1])`` (``sabs`` the pseudo-Huber
``sqrt(x^2 + p^2) - p``): the heading must be right to about 0.01 rad.  The final cost reads
theta itself, not modulo 2 pi, so the car must turn clockwise by 3 pi/2; the optimum found
waits near the spot for about 7 s (the running cost), then drives a fast loop at full lock
(speed up to 7) and brakes into the spot.  The problem has several local optima (this loop at
J ~ 1.7, a reversing manoeuvre at ~ 2.0, and optima that get the heading right far from the
spot); which one L-BFGS-B reaches depends on where it starts, on the true dynamics as well.

Method.
1. Data from the true plant.  Transitions ``(x, u) -> x_next`` from states drawn uniformly in
   the region the manoeuvre visits: heading in [-pi/2, 2 pi] (the task turns from 3 pi/2 to 0;
   a margin of pi/2 on each side), speed in [-8, 8] (the optimum reaches about 7), position in
   [-8, 3]^2; controls uniform within their limits.  Random interaction from x0 would not do:
   random steering at rest barely moves the car, and the plans need fast, sharply turning
   states.
2. The model (``cp.fit``, L-BFGS-B, 10 % held out): a residual model, ``x_{t+1} = x_t +
   f(x_t, u_t)`` (``cp.Dynamics(..., residual=True)``).  The increments are small (about
   ``h v``, a few hundredths) next to the state, so a network predicting ``x_{t+1}`` itself
   would spend its precision on copying ``x_t``; the increment is a smooth, O(1)-after-scaling
   function -- ``b(v, w) cos theta``, ``b(v, w) sin theta``, ``asin(h v sin w / 2)``, ``h a``.
   The network is a DAG built with ``cp.Network.from_edges``: two tanh layers fed by
   ``theta, v, w, a`` only -- no edge leaves the ``x, y`` input units, because driving does
   not depend on where the car is (translation invariance; the model is then valid anywhere
   and the data need not cover the plane) -- plus direct linear edges from those inputs to the
   outputs (the speed increment ``h a`` is exactly linear; the skip edges cut the speed error
   tenfold and the others by about a third at equal size).  Nothing else about the geometry is
   given: the trigonometry and the products are learned.
3. Plan through the frozen model: ``cp.optimize_trajectory`` minimises the car cost (passed
   as a custom ``trajectory`` term of ``cp.TrajectoryCost``, with the quadratic terms off) over
   the 500 x 2 controls with L-BFGS-B, the control limits as bounds; the gradient is
   back-propagated through the 500 copies of the network (BPTT).  Because of the local optima
   it starts from zero controls and from ``n_noisy`` sequences of small random controls
   (0.1 N(0, 1), how ``demo_car`` starts iLQG), and keeps the plan of lowest MODEL cost -- the
   true cost is not known to a planner.
4. Execute on the TRUE car, two ways: (a) open loop, the plan as it is; a model error of
   1e-4 per step adds up over 500 steps (mostly through the heading), so the car stops a few
   centimetres to decimetres from the spot; (b) shrinking-horizon replanning: the remaining
   ``T - k`` controls are re-optimised through the same model from the measured true state
   (warm-started from the rest of the current plan) every ``replan_every`` steps, and every
   quarter of the remaining time when that is shorter (the final cost is sharp, and short
   replans are cheap).  (``cp.mpc`` keeps a fixed horizon that slides forward; this task has
   a fixed end time, so the loop here shrinks the horizon instead.)
5. Reference: the same cost on the TRUE dynamics -- BPTT with the plant's exact
   ``Car.jacobians`` (``true_objective`` below), the same L-BFGS-B and bounds -- from the same
   starts, and from the controls the replanned run applied (the true optimum next to it:
   replanning keeps improving the timing of the manoeuvre, a flat direction where a single
   L-BFGS-B run stalls, so it often ends below the single runs).  The lowest cost found is
   the true-dynamics optimum J*.

Metrics (all costs on the true dynamics, the same cost): the final distance to the origin, the
final heading and speed, and the cost of (a) and (b) against J* (``cost_gap_*`` = J / J* - 1);
``cost_gap_open_loop_same_starts`` compares (a) with the best true-dynamics run from the same
starts (the plan a perfect model would have given); the model's test error and its one-step
error along the executed path; timings, including one gradient through the learned model and
through the true plant.  --quick trains a smaller model on less data, plans from two starts,
replans less often and runs the true dynamics only from the replanned controls, with a low
iteration cap (the horizon stays 500).

Outputs (in --out, default out/car_parking): paths.png (left: the car drawn along the
true-dynamics optimum, the learned-model plan executed open loop -- with the path the model
predicted for it, dashed -- and the replanned run; right: a zoom on the parking spot),
gallery.png (the left panel, small, for the README), time_series.png (states and controls
against time for the three), convergence.png (cost against L-BFGS-B iteration from every
start, through the model and on the true dynamics), training.png (the model's training
curve), and metrics.json.
"""

import os
import sys
import time

import numpy as np
from scipy.optimize import Bounds, minimize

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import cached_model, parse_args, run_main, write_metrics  # noqa: E402

import ctrlprop as cp  # noqa: E402
from ctrlprop.plants import CAR_T, CAR_X0, car_trajectory_cost  # noqa: E402

NAME = "car_parking"
# the sampling box of the training states [x, y, theta, v] (see the docstring)
BOX_LOW = np.array([-8.0, -8.0, -np.pi / 2, -8.0])
BOX_HIGH = np.array([3.0, 3.0, 2 * np.pi, 8.0])

# n_noisy: random starts besides zero controls; true_iter: cap of the true-dynamics runs from
# the same starts (0: not run); polish_iter: cap of the true-dynamics run from the replanned
# controls
FULL = {"n_train": 20000, "hidden": 64, "fit_iter": 3000, "n_noisy": 3, "plan_iter": 2000,
        "replan_every": 5, "replan_iter": 50, "true_iter": 2000, "polish_iter": 1000,
        "n_test": 20000}
QUICK = {"n_train": 5000, "hidden": 32, "fit_iter": 1500, "n_noisy": 1, "plan_iter": 400,
         "replan_every": 25, "replan_iter": 30, "true_iter": 0, "polish_iter": 150,
         "n_test": 5000}


# ---- the model ----------------------------------------------------------------------------
def car_network(hidden, seed=0):
    """The increment network: inputs [x, y, theta, v, w, a], 4 outputs; x, y unconnected.

    Units 0-5 are the inputs, then two tanh layers of ``hidden`` units fed (the first) by
    inputs 2-5, then 4 linear outputs fed by the second layer and directly by inputs 2-5.
    """
    used = range(2, 6)                                   # theta, v, w, a
    h1 = range(6, 6 + hidden)
    h2 = range(6 + hidden, 6 + 2 * hidden)
    out = range(6 + 2 * hidden, 6 + 2 * hidden + 4)
    edges = ([(i, j) for i in used for j in h1] + [(i, j) for i in h1 for j in h2]
             + [(i, j) for i in h2 for j in out] + [(i, j) for i in used for j in out])
    return cp.Network.from_edges(6, edges, ["tanh"] * (2 * hidden) + ["linear"] * 4,
                                 outputs=list(out), seed=seed)


def transitions(car, n, rng):
    """``n`` transitions from the sampling box: X = [x, u] (n, 6), Y = increments (n, 4)."""
    x = rng.uniform(BOX_LOW, BOX_HIGH, (n, 4))
    u = car.sample_controls(n, rng)
    return np.hstack([x, u]), car.state_difference(x, car.step(x, u))


def train_model(car, cfg, seed, progress=False):
    """Fit the increment network to true-plant transitions; returns (net, history dict)."""
    X, Y = transitions(car, cfg["n_train"], np.random.default_rng([seed, 0]))
    net = car_network(cfg["hidden"], seed)
    res = cp.fit(net, X, Y, method="L-BFGS-B", maxiter=cfg["fit_iter"], validation=0.1,
                 progress=progress,
                 patience=None, seed=seed)
    hist = {k: np.asarray(v).tolist() for k, v in res.history.items() if v is not None}
    hist["message"] = res.message
    return net, hist


def load_or_train(args, car, cfg):
    """The cached model and its training history, or a freshly trained pair."""
    settings = {"box": [BOX_LOW.tolist(), BOX_HIGH.tolist()], "seed": args.seed,
                "structure": "translation-invariant residual, skip edges",
                **{k: cfg[k] for k in ("n_train", "hidden", "fit_iter")}}
    return cached_model(args, "car-dynamics", settings,
                        lambda: train_model(car, cfg, args.seed, args.progress))


# ---- optimisation -------------------------------------------------------------------------
def car_cost():
    """The car-parking cost as a TrajectoryCost: only the custom term, no quadratic terms."""
    return cp.TrajectoryCost(Q=0.0, trajectory=car_trajectory_cost)


def true_objective(car, x0, T):
    """``fun(u) -> (J, dJ/du)`` of the car cost on the TRUE dynamics, u flat (2T,).

    BPTT with the plant's exact Jacobians ``A_t = df/dx``, ``B_t = df/du`` at (x_t, u_t).
    """
    def fun(u):
        U = u.reshape(T, 2)
        S = car.rollout(x0, U)
        J, gS, gU = car_trajectory_cost(S, U)
        A, B = car.jacobians(S[:-1], U)
        # lambda_T = dJ/dx_T;  dJ/du_t = gU_t + lambda_{t+1} B_t;
        # lambda_t = gS_t + lambda_{t+1} A_t
        lam = gS[T].copy()
        g = np.empty((T, 2))
        for t in range(T - 1, -1, -1):
            g[t] = gU[t] + lam @ B[t]
            lam = gS[t] + lam @ A[t]
        return J, g.ravel()
    return fun


def optimize_true(car, x0, T, maxiter, u0=None):
    """L-BFGS-B on the true dynamics from ``u0`` (T, 2) (default zeros); returns a dict."""
    fun = true_objective(car, x0, T)
    u0 = np.zeros(2 * T) if u0 is None else np.asarray(u0, float).ravel()
    bounds = list(zip(np.tile(car.u_low, T), np.tile(car.u_high, T)))
    hist = []

    def record(intermediate_result):              # scipy passes the iterate's result
        hist.append(intermediate_result.fun)

    t0 = time.perf_counter()
    with cp.blas_threads(1):
        hist.append(fun(u0)[0])
        res = minimize(fun, u0, jac=True, method="L-BFGS-B", bounds=bounds,
                       options={"maxiter": maxiter}, callback=record)
    seconds = time.perf_counter() - t0
    U = res.x.reshape(T, 2)
    return {"controls": U, "states": car.rollout(x0, U), "cost": float(res.fun),
            "history": np.array(hist), "seconds": seconds, "nit": int(res.nit),
            "nfev": int(res.nfev), "message": str(res.message)}


def replan(model, car, x0, T, plan, every, maxiter):
    """Shrinking-horizon replanning on the true car; returns a dict of the executed run.

    Executes ``plan`` (T, 2) on the true car and re-optimises the remaining ``T - k``
    controls through the model from the measured state x_k, warm-started from what is left
    of the current plan, every ``min(every, (T - k) // 4)`` steps (at least 1): drift
    matters most at the end, where the final cost is sharp, and short replans are cheap.
    """
    cost, bounds = car_cost(), Bounds(car.u_low, car.u_high)
    S, U = [np.array(x0, float)], []
    k, nit = 0, []
    t0 = time.perf_counter()
    while k < T:
        if k:
            res = cp.optimize_trajectory(model, S[-1], T - k, cost, u0=plan, bounds=bounds,
                                         maxiter=maxiter)
            plan = res.controls
            nit.append(res.nit)
        n = min(every, max(1, (T - k) // 4))
        for u in plan[:n]:
            S.append(car.step(S[-1], u))
            U.append(u)
        plan, k = plan[n:], k + n
    seconds = time.perf_counter() - t0
    S, U = np.array(S), np.array(U)
    return {"states": S, "controls": U, "cost": float(car_trajectory_cost(S, U)[0]),
            "seconds": seconds, "n_replans": len(nit),
            "mean_iterations": float(np.mean(nit)) if nit else 0.0}


def starting_controls(car, T, n_noisy, seed):
    """Starts of the optimisations: zero controls, then ``n_noisy`` sequences of small random
    controls (0.1 N(0, 1), as ``demo_car`` starts iLQG), clipped to the limits; list of
    (name, (T, 2) array)."""
    rng = np.random.default_rng([seed, 2])
    noisy = [(f"random {k + 1}",
              np.clip(0.1 * rng.standard_normal((T, 2)), car.u_low, car.u_high))
             for k in range(n_noisy)]
    return [("zero", np.zeros((T, 2)))] + noisy


def plan_from_starts(model, car, x0, T, starts, maxiter, progress=False):
    """Optimise through the model from every start; returns (results, index of the lowest
    model cost) -- the model's cost is all a planner without the true plant can compare."""
    results = []
    for _, u0 in starts:
        t0 = time.perf_counter()
        r = cp.optimize_trajectory(model, x0, T, car_cost(), u0=u0,
                                   bounds=Bounds(car.u_low, car.u_high), maxiter=maxiter,
                                   progress=progress)
        r.seconds = time.perf_counter() - t0
        results.append(r)
    return results, int(np.argmin([r.fun for r in results]))


def ms_per_gradient(fun, u, repeat=5):
    """Milliseconds per call of ``fun(u)`` (best of ``repeat``, each at a new point)."""
    best = np.inf
    for k in range(repeat):
        v = u * (1.0 - 1e-6 * (k + 1))          # a new point (no cached rollout), in bounds
        t0 = time.perf_counter()
        fun(v)
        best = min(best, time.perf_counter() - t0)
    return 1e3 * best


# ---- plots --------------------------------------------------------------------------------
LABELS = ("true-dynamics optimum", "learned-model plan, open loop",
          "learned model + replanning")
COLORS = ("0.15", "C1", "C0")


def car_moments(S, n_cars):
    """Step indices splitting the path S (T+1, 4) into equal lengths (with both ends)."""
    s = np.r_[0.0, np.cumsum(np.hypot(*np.diff(S[:, :2], axis=0).T))]
    return np.unique(np.searchsorted(s, np.linspace(0.0, s[-1], n_cars)).clip(0, len(S) - 1))


def draw_paths(ax, car, runs, predicted, n_cars):
    """The three paths on ``ax`` with the car drawn at the same moments on each, the model's
    prediction of the open-loop plan dashed, the start and the parking pose."""
    cp.plot.draw_car(ax, np.zeros(3), color="crimson", alpha=0.5, d=car.d)   # parking pose
    idx = car_moments(runs[0]["states"], n_cars)
    for run, label, c in zip(runs, LABELS, COLORS):
        S, U = run["states"], run["controls"]
        d = np.hypot(*S[-1, :2])
        ax.plot(S[:, 0], S[:, 1], color=c, lw=1.5, label=f"{label}: ends {d:.3f} from the origin")
        cp.plot.draw_car(ax, S[idx], wheel_angles=U[np.minimum(idx, len(U) - 1), 0],
                         color=c, alpha=0.55, d=car.d)
    d = np.hypot(*predicted[-1, :2])
    ax.plot(predicted[:, 0], predicted[:, 1], "--", color=COLORS[1], lw=1.0,
            label=f"open-loop plan as the model predicted it: ends {d:.3f} from the origin")
    ax.plot([], [], color="crimson", lw=1.0, alpha=0.5, label="parking pose (at the origin)")
    ax.plot(*CAR_X0[:2], "o", color="k", ms=4, label="start (facing down, at rest)")
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.grid(alpha=0.3)
    return len(idx)


def plot_paths(car, runs, predicted, path, n_cars=9):
    """Left: the car along the paths; right: a zoom on the parking spot."""
    fig, (ax, zoom) = cp.plot.new_figure(1, 2, figsize=(12.0, 6.8))
    k = draw_paths(ax, car, runs, predicted, n_cars)
    ax.set_title(f"Paths on the true car; the car drawn at {k} moments\n"
                 f"(the same moments on every path: the outlines coincide where they agree)",
                 fontsize="medium")
    last = int(round(1.0 / car.dt))                  # the zoom shows the last second
    for run, c in zip(runs, COLORS):
        S = run["states"]
        zoom.plot(S[-last:, 0], S[-last:, 1], color=c, lw=1.5)
        zoom.plot(S[-1, 0], S[-1, 1], "o", color=c, ms=7)
    zoom.plot(predicted[-last:, 0], predicted[-last:, 1], "--", color=COLORS[1], lw=1.0)
    zoom.plot(predicted[-1, 0], predicted[-1, 1], "o", mfc="none", color=COLORS[1], ms=7)
    zoom.plot(0, 0, "+", color="crimson", ms=14, mew=2)
    r = 1.25 * max(0.04, max(np.hypot(*S[-1, :2]) for S in
                             [run["states"] for run in runs] + [predicted]))
    zoom.set_xlim(-r, r)
    zoom.set_ylim(-r, r)
    zoom.set_aspect("equal", adjustable="box")
    zoom.set_xlabel("x")
    zoom.set_ylabel("y")
    zoom.grid(alpha=0.3)
    zoom.set_title("Zoom on the parking spot: the last second; dots: final positions\n"
                   "(hollow: where the model predicted the plan ends; +: the origin)",
                   fontsize="medium")
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncol=2,
               fontsize="small")
    cp.plot.save_figure(fig, path)


def plot_gallery(car, runs, predicted, path):
    """A small version of the paths (600 px wide) for the README gallery."""
    fig, ax = cp.plot.new_figure(figsize=(6.0, 6.9))
    draw_paths(ax, car, runs, predicted, 7)
    ax.set_title("Car parking through a learned model, on the true car", fontsize="medium")
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncol=1,
               fontsize="x-small")
    cp.plot.save_figure(fig, path, dpi=100)


def plot_series(car, runs, path):
    """States and controls against time for the three runs."""
    names = ("x", "y", "heading theta (rad)", "speed v", "wheel angle w (rad)",
             "acceleration a")
    fig, axes = cp.plot.new_figure(6, 1, figsize=(7.5, 11.0), sharex=True)
    for run, label, c in zip(runs, LABELS, COLORS):
        S, U = run["states"], run["controls"]
        t = car.dt * np.arange(len(S))
        for i in range(4):
            axes[i].plot(t, S[:, i], color=c, lw=1.2, label=label)
        for j in range(2):
            axes[4 + j].step(t[:-1], U[:, j], where="post", color=c, lw=1.0, label=label)
    for j in range(2):
        for lim in (car.u_low[j], car.u_high[j]):
            axes[4 + j].axhline(lim, color="crimson", ls=":", lw=1.0)
    axes[2].axhline(0.0, color="0.6", lw=0.8)
    for ax, name in zip(axes, names):
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small", loc="lower left")
    axes[4].text(0.01, 0.9, "dotted: control limits", transform=axes[4].transAxes,
                 fontsize=7, va="top")
    axes[-1].set_xlabel("time (s)")
    axes[0].set_title("Car parking: states and controls on the true car")
    cp.plot.save_figure(fig, path)


def plot_convergence(plans, best, open_cost, true_runs, polish, J_ref, path):
    """Cost against iteration, through the model and on the true dynamics, from every start;
    the right panel zooms on the last few per cent."""
    fig, axes = cp.plot.new_figure(1, 2, figsize=(12.0, 4.8))
    end = len(plans[best].history["fun"]) - 1
    low = min(J_ref, min(np.min(r.history["fun"]) for r in plans))
    top = max(max(r.history["fun"][min(30, len(r.history["fun"]) - 1)] for r in plans), J_ref)
    for ax, ylim in zip(axes, ((0.97 * low, 1.05 * top), (0.995 * low, 1.06 * J_ref))):
        for i, r in enumerate(plans):
            h = r.history["fun"]
            ax.plot(np.arange(len(h)), h, color=COLORS[1], lw=2.0 if i == best else 0.8,
                    alpha=1.0 if i == best else 0.6,
                    label="learned model (the cost the model predicts); bold: the plan chosen"
                    if i == best else None)
        for i, r in enumerate(true_runs):
            h = r["history"]
            ax.plot(np.arange(len(h)), h, color=COLORS[0], lw=0.8, alpha=0.7,
                    label="true dynamics, from the same starts" if i == 0 else None)
        h = polish["history"]
        ax.plot(end + np.arange(len(h)), h, color=COLORS[2], lw=1.5,
                label="true dynamics, from the replanned run's controls")
        ax.axhline(open_cost, color=COLORS[1], ls="--", lw=1.0,
                   label=f"chosen plan executed open loop on the true car ({open_cost:.3f})")
        ax.axhline(J_ref, color="k", ls=":", lw=1.0,
                   label=f"true-dynamics optimum: lowest found ({J_ref:.3f})")
        ax.set_ylim(*ylim)
        ax.set_xlabel("L-BFGS-B iteration")
        ax.set_ylabel("trajectory cost J")
        ax.grid(alpha=0.3, which="both")
    axes[0].set_title(f"Optimising from {len(plans)} starts: through the learned model and "
                      f"on the true plant", fontsize="medium")
    axes[1].set_title("Zoom on the last few per cent", fontsize="medium")
    axes[1].text(0.98, 0.98, "blue: drawn from where the chosen plan ended", ha="right",
                 va="top", transform=axes[1].transAxes, fontsize="x-small", color=COLORS[2])
    axes[0].legend(fontsize="x-small")
    cp.plot.save_figure(fig, path)


# ---- main ---------------------------------------------------------------------------------
def final_report(car, S):
    """Final distance to the origin, heading and speed of a state trajectory."""
    x = S[-1]
    return {"distance": float(car.distance_to_origin(x)), "heading": float(x[2]),
            "speed": float(x[3])}


def main(argv=None):
    args = parse_args(NAME, __doc__.splitlines()[0], argv)
    cfg = QUICK if args.quick else FULL
    car, T, x0 = cp.Car(), CAR_T, CAR_X0

    net, info, history = load_or_train(args, car, cfg)
    model = cp.Dynamics(net, 4, residual=True)
    Xte, Yte = transitions(car, cfg["n_test"], np.random.default_rng([args.seed, 1]))
    rel_rmse = np.sqrt(np.mean((net.forward(Xte) - Yte) ** 2, axis=0)) / Yte.std(axis=0)

    # 3. plan through the model from every start, keep the lowest model cost;
    # 4a. execute it open loop on the true car
    starts = starting_controls(car, T, cfg["n_noisy"], args.seed)
    plans, best = plan_from_starts(model, car, x0, T, starts, cfg["plan_iter"], args.progress)
    plan = plans[best]
    S_open = car.rollout(x0, plan.controls)
    open_run = {"states": S_open, "controls": plan.controls,
                "cost": float(car_trajectory_cost(S_open, plan.controls)[0])}
    # 4b. shrinking-horizon replanning from the measured state
    re_run = replan(model, car, x0, T, plan.controls, cfg["replan_every"], cfg["replan_iter"])
    # 5. the reference: L-BFGS-B on the true dynamics from the same starts, and from the
    #    controls the replanned run applied (the true local optimum next to it); the lowest
    #    cost found is the true-dynamics optimum the learned solutions are measured against
    true_runs = [optimize_true(car, x0, T, cfg["true_iter"], u0=u0) for _, u0 in starts] \
        if cfg["true_iter"] else []
    polish = optimize_true(car, x0, T, cfg["polish_iter"], u0=re_run["controls"])
    ref = min(true_runs + [polish], key=lambda r: r["cost"])
    ref_name = "the replanned run's controls" if ref is polish else \
        f"start '{starts[true_runs.index(ref)][0]}'"
    runs = (ref, open_run, re_run)

    # model error where it was used: one step from every state of the replanned run
    S, U = re_run["states"], re_run["controls"]
    step_err = np.linalg.norm(model.step(S[:-1], U) - S[1:], axis=1)
    # the model reads only theta and v of the state: were they inside the sampling box?
    outside = float(np.mean(np.any((S[:, 2:] < BOX_LOW[2:]) | (S[:, 2:] > BOX_HIGH[2:]),
                                   axis=1)))
    obj_model = cp.TrajectoryObjective(model, x0, T, car_cost())
    u_ref = ref["controls"].ravel()
    ms_model = ms_per_gradient(obj_model, u_ref)
    ms_true = ms_per_gradient(true_objective(car, x0, T), u_ref)

    plot_paths(car, runs, plan.states, os.path.join(args.out, "paths.png"))
    plot_gallery(car, runs, plan.states, os.path.join(args.out, "gallery.png"))
    plot_series(car, runs, os.path.join(args.out, "time_series.png"))
    plot_convergence(plans, best, open_run["cost"], true_runs, polish, ref["cost"],
                     os.path.join(args.out, "convergence.png"))
    if history is not None:
        fig = cp.plot.plot_training_curves(
            history, keys=["train_loss", "val_loss"],
            title=f"Increment model: (theta, v, w, a) -> 2 x {cfg['hidden']} tanh -> 4\n"
                  f"plus skip edges; mean squared error per output")
        cp.plot.save_figure(fig, os.path.join(args.out, "training.png"))
    else:
        print("note: the cached model has no saved training history; training.png not drawn "
              "(run with --retrain to redraw it)")

    J_ref = ref["cost"]
    # the same optimiser from the same starts on the true dynamics: what the plan would have
    # been with a perfect model (full size only)
    same = min(r["cost"] for r in true_runs) if true_runs else None
    fin = {k: final_report(car, r["states"]) for k, r in
           (("true_optimum", ref), ("open_loop", open_run), ("replanned", re_run))}
    model_fin = final_report(car, plan.states)
    metrics = {
        "final_distance_replanned": fin["replanned"]["distance"],
        "final_distance_open_loop": fin["open_loop"]["distance"],
        "final_distance_true_optimum": fin["true_optimum"]["distance"],
        "cost_replanned": re_run["cost"],
        "cost_open_loop": open_run["cost"],
        "cost_true_optimum": J_ref,
        "cost_gap_replanned": re_run["cost"] / J_ref - 1.0,
        "cost_gap_open_loop": open_run["cost"] / J_ref - 1.0,
        "final_heading_replanned": fin["replanned"]["heading"],
        "final_heading_open_loop": fin["open_loop"]["heading"],
        "final_heading_true_optimum": fin["true_optimum"]["heading"],
        "final_speed_replanned": fin["replanned"]["speed"],
        "final_speed_open_loop": fin["open_loop"]["speed"],
        "final_speed_true_optimum": fin["true_optimum"]["speed"],
        "model_predicted_cost": float(plan.fun),
        "model_predicted_final_distance": model_fin["distance"],
        "max_speed_replanned": float(np.abs(S[:, 3]).max()),
        "fraction_outside_training_box": outside,
        "model_test_rel_rmse": rel_rmse.tolist(),
        "model_one_step_error_median": float(np.median(step_err)),
        "model_one_step_error_max": float(step_err.max()),
        "n_train": cfg["n_train"],
        "hidden": cfg["hidden"],
        "model_cached": info["cached"],
        "train_seconds": info["train_seconds"],
        "plan_start": starts[best][0],
        "plan_seconds": round(sum(r.seconds for r in plans), 3),
        "plan_iterations": int(sum(r.nit for r in plans)),
        "plan_starts": [{"start": name, "model_cost": float(r.fun),
                         "true_cost_open_loop": float(car_trajectory_cost(
                             car.rollout(x0, r.controls), r.controls)[0]),
                         "iterations": int(r.nit), "seconds": round(r.seconds, 3)}
                        for (name, _), r in zip(starts, plans)],
        "replan_seconds": round(re_run["seconds"], 3),
        "n_replans": re_run["n_replans"],
        "replan_every": cfg["replan_every"],
        "replan_mean_iterations": re_run["mean_iterations"],
        "reference": f"true dynamics from {ref_name}",
        "true_starts": [{"start": name, "cost": r["cost"], "iterations": r["nit"],
                         "seconds": round(r["seconds"], 3)}
                        for (name, _), r in zip(starts, true_runs)],
        "true_seconds": round(sum(r["seconds"] for r in true_runs), 3),
        "cost_true_same_starts": same,
        "cost_gap_open_loop_same_starts": None if same is None else open_run["cost"] / same - 1,
        "cost_true_from_replanned": polish["cost"],
        "true_seconds_from_replanned": round(polish["seconds"], 3),
        "true_iterations_from_replanned": polish["nit"],
        "ms_per_gradient_model": round(ms_model, 3),
        "ms_per_gradient_true": round(ms_true, 3),
        "horizon": T,
    }
    write_metrics(args, NAME, metrics)
    return metrics


if __name__ == "__main__":
    run_main(__file__, main)
