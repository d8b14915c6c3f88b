"""Arm reaching through a learned forward model: Jordan & Rumelhart's distal teacher.

    python scenarios/arm_reach.py            # full size: ~3 min to train, then cached
    python scenarios/arm_reach.py --quick    # small sizes, under 30 s

Problem.  A planar arm of three links (1.0, 0.8, 0.6; reach 2.4) with joint angles q -- the
base turns through [-180, 180] degrees, the elbow and wrist through [-150, 150] -- must put its
hand on targets spread over its workspace.  Three joints for two coordinates: every reachable
target has a one-parameter family of postures (the arm is redundant), so "the" answer needs a
criterion.

Method (the distal teacher).
1. Learn the forward kinematics q -> hand position from random postures of the true arm
   (``cp.PlanarArm``): a generic tanh network 3-64-64-2 fitted by ``cp.fit`` (L-BFGS-B,
   10 % held out for validation).  The model is not told the geometry: a layer of sine units
   would represent this map exactly (a sum of sinusoids of sums of joint angles), a generic
   network is the honest test, as in Jordan & Rumelhart.
2. Freeze it and solve, for all targets y* at once (``cp.optimize_controls``, batched
   projected Levenberg-Marquardt, the joint limits as bounds)::

       min_q  1/2 |f(q) - y*|^2 + 1/2 lam sum_j c_j (q_j - q_rest_j)^2,   c = (0, 1, 1)

   where f is the model, not the arm: the hand error is back-propagated through the network
   to its input units, the joint angles.
3. Judge every posture on the TRUE kinematics: a target is reached when the true hand is
   within 1 % of the reach (0.024) of it.

The control cost and its trade-off.  The cost pulls the elbow and wrist toward a rest shape
(60 and 60 degrees); the base is free, since turning the whole arm toward a target should cost
nothing.  Of the postures that reach a target, the cost picks the one nearest the rest shape:
that resolves the redundancy.  But it also biases the hand.  At the minimum
``J^T (f - y*) = -lam C (q - q_rest)``, so the hand stops about ``lam |q - q_rest| / sigma``
short of the target (sigma the smaller singular value of the Jacobian J, small near the outer
rim where the arm is almost straight).  A large lam gives natural postures that miss (lam = 0.1:
a quarter of the targets reached); lam = 0 gives exact reaches in the model with arbitrary
postures, wherever the start leads.  lam = 1e-4 is the small-cost limit made practical: its
miss (median 5e-5, measured in the model) is far below the model's own error (~1e-3) and the
threshold, while the posture is still the one nearest rest -- the limit lam -> 0+ selects it;
a smaller lam only flattens the cost along the self-motion, so Levenberg-Marquardt needs more
iterations to slide there.  The script measures all of this: a sweep over lam (success rate,
median true and model-space error, median deviation from the rest shape) is printed, saved in
metrics.json and plotted.

Starts.  Every target starts from the rest shape with the base turned so that the model's hand
points at the target.  The base stops at +-180 degrees, so for targets behind the arm (angles
near +-180) that start can lie on the wrong side of the stop; E is also screened at 32 random
postures and the best 3 run too (all targets at once), which catches those cases.

Targets.  A square grid over [-2.4, 2.4]^2.  With these joint limits the arm reaches the whole
disk |p| <= 2.4, even its own base (the links 1, 0.8, 0.6 close a 3-4-5 triangle with the
elbow at 143 degrees and the wrist at 90, inside the limits), so there is no inner dead zone.
The grid's corners beyond the reach are unreachable: they are reported separately (how much
farther the hand ends than the nearest reachable point) and left blank on the error map.
Reachable targets in the outer rim (|p| > 0.95 reach, reached only by near-straight,
near-singular postures) count in the success rate and are also reported on their own.

Outputs (in --out, default out/arm_reach): postures.png (true postures for eight targets, with
the chosen lam and with lam = 0), error_map.png (true hand error over the workspace, failures
marked), training.png (forward-model training curve), tradeoff.png (the lam sweep), and
metrics.json.
"""

import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import cached_model, parse_args, run_main, write_metrics  # noqa: E402

import ctrlprop as cp  # noqa: E402

NAME = "arm_reach"
LENGTHS = (1.0, 0.8, 0.6)
REST = np.array([0.0, np.pi / 3, np.pi / 3])     # base angle ignored (zero cost weight)
JOINT_COST = np.array([0.0, 1.0, 1.0])           # c_j: the base turns for free
LAM = 1e-4                                       # control-cost weight (see the docstring)
SWEEP = (0.0, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
SUCCESS_FRACTION = 0.01                          # success: true error < 1 % of the reach
RIM = 0.95                                       # outer rim: |p| > RIM * reach
SCREEN, RESTARTS = 32, 3
VALIDATION = 0.1                                 # fraction of the data held out

FULL = {"n_train": 20000, "hidden": [64, 64], "maxiter": 5000, "grid": 41, "n_test": 20000}
QUICK = {"n_train": 4000, "hidden": [40, 40], "maxiter": 1500, "grid": 21, "n_test": 5000}


def train_model(arm, cfg, seed, progress=False):
    """Fit a tanh network to random postures of the true arm; returns (net, history dict)."""
    rng = np.random.default_rng(seed)
    X, Y = arm.training_data(cfg["n_train"], rng)
    net = cp.Network.mlp([arm.n_joints, *cfg["hidden"], 2], hidden="tanh", seed=seed)
    res = cp.fit(net, X, Y, method="L-BFGS-B", maxiter=cfg["maxiter"], validation=VALIDATION,
                 progress=progress,
                 patience=None, seed=seed)
    hist = {k: np.asarray(v).tolist() for k, v in res.history.items() if v is not None}
    hist["message"] = res.message
    return net, hist


def load_or_train(args, arm, cfg):
    """The cached model and its training history, or a freshly trained pair."""
    settings = {"lengths": LENGTHS, "limits": [arm.q_low.tolist(), arm.q_high.tolist()],
                "seed": args.seed, "transfer": "tanh", "validation": VALIDATION,
                "method": "L-BFGS-B", **{k: cfg[k] for k in ("n_train", "hidden", "maxiter")}}
    return cached_model(args, "arm-fk", settings, lambda: train_model(arm, cfg, args.seed, args.progress))


def workspace_grid(arm, n):
    """Grid axis (n,) and the grid points (n*n, 2), row-major in y then x."""
    g = np.linspace(-arm.reach, arm.reach, n)
    return g, np.stack(np.meshgrid(g, g), axis=-1).reshape(-1, 2)


def start_postures(net, targets):
    """Rest shape, base turned so that the model's hand points at each target: (K, 3)."""
    hand = net.forward(REST[None])[0]
    u0 = np.tile(REST, (len(targets), 1))
    u0[:, 0] = cp.wrap_angle(np.arctan2(targets[:, 1], targets[:, 0])
                             - np.arctan2(hand[1], hand[0]))
    return u0


def reach(net, arm, targets, lam, seed):
    """Optimise the postures for all targets at once through the frozen model."""
    return cp.optimize_controls(
        net, targets, u0=start_postures(net, targets), bounds=list(zip(arm.q_low, arm.q_high)),
        R=lam * JOINT_COST, u_rest=REST, method="batch-lm",
        screen=SCREEN, restarts=RESTARTS, seed=seed)


def shape_deviation(q):
    """|(elbow, wrist) - rest shape| per posture, radians."""
    return np.linalg.norm(q[:, 1:] - REST[1:], axis=1)


def lam_sweep(net, arm, targets, threshold, seed):
    """Success, errors and posture deviation for every control-cost weight in SWEEP."""
    rows = []
    for lam in SWEEP:
        t0 = time.perf_counter()
        res = reach(net, arm, targets, lam, seed)
        sec = time.perf_counter() - t0
        err = np.linalg.norm(arm.fk(res.controls) - targets, axis=1)
        rows.append({"lam": lam, "success_rate": float(np.mean(err < threshold)),
                     "median_error": float(np.median(err)),
                     "median_model_error": float(np.median(res.error)),
                     "median_shape_deviation": float(np.median(shape_deviation(res.controls))),
                     "median_iterations": float(np.median(res.nit)), "seconds": round(sec, 3)})
    return rows


def showcase_targets(arm):
    """Eight targets on a spiral: every direction, from near the base to near the rim."""
    ang = np.radians(np.arange(8) * 45.0 + 20.0)
    rad = arm.reach * np.linspace(0.15, 0.93, 8)
    return np.stack([rad * np.cos(ang), rad * np.sin(ang)], axis=1)


# ---- plots --------------------------------------------------------------------------------
def plot_postures(arm, net, targets, seed, path):
    """True postures for the showcase targets with the chosen lam and with lam = 0."""
    fig, axes = cp.plot.new_figure(1, 2, figsize=(10.0, 5.2))
    rest = arm.joint_positions(np.array([0.0, *REST[1:]]))
    circle = np.linspace(0.0, 2.0 * np.pi, 200)
    errors = {}
    for ax, lam in zip(axes, (LAM, 0.0)):
        q = reach(net, arm, targets, lam, seed).controls
        errors[lam] = err = np.linalg.norm(arm.fk(q) - targets, axis=1)
        ax.plot(arm.reach * np.cos(circle), arm.reach * np.sin(circle), ":", color="0.5",
                lw=1, label=f"reach {arm.reach:g}")
        ax.plot(rest[:, 0], rest[:, 1], "--o", color="k", lw=1.0, ms=3, alpha=0.7, zorder=1,
                label="rest shape (base at 0)")
        for k in range(len(targets)):
            cp.plot.draw_arm(ax, arm, q[k], color=f"C{k}", target=targets[k])
        ax.plot([], [], "x", color="crimson", mew=2, label="target")
        what = ": the postures nearest the rest shape" if lam else \
            " (no control cost): arbitrary postures"
        ax.set_title(f"lam = {lam:g}{what}\ntrue hand errors {err.min():.1e} to "
                     f"{err.max():.1e}", fontsize="medium")
        lim = 1.06 * arm.reach
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.set_xlabel("x")
        ax.set_ylabel("y")
        ax.grid(alpha=0.3)
    axes[0].legend(loc="lower left", fontsize="small")
    fig.suptitle("Postures found through the learned model, drawn with the true kinematics")
    cp.plot.save_figure(fig, path)
    return errors[LAM]


def plot_errors(g, err_grid, failed, reachable_rate, threshold, path):
    """True hand error over the workspace; cells beyond reach blank, failures marked."""
    fig = cp.plot.plot_error_map(
        g, g, err_grid, log=True, circle=g[-1],
        colorbar_label="true hand error |fk(q) - target|",
        title=f"Reaching error over the workspace: {100 * reachable_rate:.1f} % within "
              f"{threshold:.3f}\n(grid corners beyond the reach left blank)")
    ax = fig.axes[0]
    if len(failed):
        ax.plot(failed[:, 0], failed[:, 1], "x", color="red", ms=7, mew=1.5,
                label=f"error >= {threshold:.3f} ({len(failed)})")
        ax.legend(loc="lower left", fontsize="small")
    cp.plot.save_figure(fig, path)


def plot_tradeoff(rows, threshold, path):
    """Success rate, errors and posture deviation against the control-cost weight."""
    fig, axes = cp.plot.new_figure(1, 3, figsize=(13.0, 3.8))
    tiny = SWEEP[1] / 10.0                     # where lam = 0 is drawn on the log axis
    lam = np.array([r["lam"] or tiny for r in rows])
    ticks = [tiny, *[r["lam"] for r in rows if r["lam"]]]
    labels = ["0", *[f"{t:g}" for t in ticks[1:]]]
    col = {k: np.array([r[k] for r in rows]) for k in rows[0]}
    axes[0].plot(lam, 100 * col["success_rate"], "o-")
    axes[0].set_ylabel("success rate (%)")
    axes[1].plot(lam, col["median_error"], "o-", label="true arm")
    axes[1].plot(lam, col["median_model_error"], "s--", label="model (optimizer's miss)")
    axes[1].axhline(threshold, color="crimson", lw=1, label=f"threshold {threshold:.3f}")
    axes[1].set_yscale("log")
    axes[1].set_ylabel("median hand error")
    axes[1].legend(fontsize="small")
    axes[2].plot(lam, col["median_shape_deviation"], "o-", color="C2")
    axes[2].set_ylabel("median |(elbow, wrist) - rest| (rad)")
    for ax, title in zip(axes, ("targets reached", "bias of the control cost",
                                "posture chosen (redundancy)")):
        ax.set_xscale("log")
        ax.set_xticks(ticks, labels)
        ax.minorticks_off()
        ax.set_xlabel("control-cost weight lam")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.axvline(LAM, color="0.6", ls=":", lw=1, label="chosen lam" if ax is axes[0] else None)
    axes[0].legend(fontsize="small", loc="lower left")
    cp.plot.save_figure(fig, path)


# ---- main ---------------------------------------------------------------------------------
def main(argv=None):
    args = parse_args(NAME, __doc__.splitlines()[0], argv)
    cfg = QUICK if args.quick else FULL
    arm = cp.PlanarArm(LENGTHS)
    threshold = SUCCESS_FRACTION * arm.reach

    net, info, history = load_or_train(args, arm, cfg)
    Xte, Yte = arm.training_data(cfg["n_test"], np.random.default_rng([args.seed, 1]))
    d = net.forward(Xte) - Yte
    test_rmse = float(np.sqrt(np.mean(d ** 2)))
    test_err = np.linalg.norm(d, axis=1)

    g, P = workspace_grid(arm, cfg["grid"])
    r = np.hypot(P[:, 0], P[:, 1])
    inside = r <= arm.reach * (1 + 1e-12)
    T = P[inside]
    t0 = time.perf_counter()
    res = reach(net, arm, T, LAM, args.seed)
    reach_seconds = time.perf_counter() - t0
    err = np.linalg.norm(arm.fk(res.controls) - T, axis=1)
    ok = err < threshold
    rim = r[inside] > RIM * arm.reach

    # beyond the reach: the best possible is the nearest reachable point, |p| - reach away
    B = P[~inside]
    far = reach(net, arm, B, LAM, args.seed)
    excess = np.linalg.norm(arm.fk(far.controls) - B, axis=1) - (r[~inside] - arm.reach)

    rows = lam_sweep(net, arm, T, threshold, args.seed)
    print(f"\ncontrol-cost sweep over {len(T)} reachable targets (chosen lam = {LAM:g})")
    print("     lam  success  median err  model err  shape dev  iters  seconds")
    for row in rows:
        print(f"{row['lam']:8.0e}  {100 * row['success_rate']:6.1f}%  {row['median_error']:10.2e}"
              f"  {row['median_model_error']:9.2e}  {row['median_shape_deviation']:9.3f}"
              f"  {row['median_iterations']:5.0f}  {row['seconds']:7.2f}")

    err_grid = np.full(len(P), np.nan)
    err_grid[inside] = err
    plot_errors(g, err_grid.reshape(len(g), len(g)), T[~ok], ok.mean(), threshold,
                os.path.join(args.out, "error_map.png"))
    show = showcase_targets(arm)
    show_err = plot_postures(arm, net, show, args.seed, os.path.join(args.out, "postures.png"))
    if history is not None:
        fig = cp.plot.plot_training_curves(
            history, keys=["train_loss", "val_loss"],
            title=f"Forward model {'-'.join(map(str, [3, *cfg['hidden'], 2]))} on "
                  f"{cfg['n_train']} random postures (L-BFGS-B)\n"
                  f"mean squared error per output, {VALIDATION:.0%} held out for validation")
        cp.plot.save_figure(fig, os.path.join(args.out, "training.png"))
    else:
        print("note: the cached model has no saved training history; training.png not drawn "
              "(run with --retrain to redraw it)")
    plot_tradeoff(rows, threshold, os.path.join(args.out, "tradeoff.png"))

    metrics = {
        "success_rate": float(ok.mean()),
        "median_error": float(np.median(err)),
        "success_threshold": threshold,
        "n_reachable_targets": int(len(T)),
        "p95_error": float(np.percentile(err, 95)),
        "max_error": float(err.max()),
        "success_rate_interior": float(ok[~rim].mean()),
        "success_rate_rim": float(ok[rim].mean()) if rim.any() else None,
        "n_rim_targets": int(rim.sum()),
        "median_model_error": float(np.median(res.error)),
        "median_shape_deviation": float(np.median(shape_deviation(res.controls))),
        "converged_fraction": float(res.success.mean()),
        "n_beyond_reach": int(len(B)),
        "beyond_reach_median_excess": float(np.median(excess)) if len(B) else None,
        "beyond_reach_within_threshold": float(np.mean(excess < threshold)) if len(B) else None,
        "showcase_max_error": float(show_err.max()),
        "model_test_rmse": test_rmse,
        "model_test_median_error": float(np.median(test_err)),
        "model_test_p99_error": float(np.percentile(test_err, 99)),
        "n_train": cfg["n_train"],
        "hidden": cfg["hidden"],
        "train_iterations": None if history is None else int(history["iteration"][-1]),
        "model_cached": info["cached"],
        "train_seconds": info["train_seconds"],          # 0 when loaded from the cache
        "fit_seconds": None if history is None else round(history["time"][-1], 2),
        "reach_seconds": round(reach_seconds, 3),
        "reach_ms_per_target": round(1e3 * reach_seconds / len(T), 3),
        "arm_lengths": list(LENGTHS),
        "lam": LAM,
        "rest_shape_deg": np.degrees(REST[1:]).round(1).tolist(),
        "lam_sweep": rows,
    }
    write_metrics(args, NAME, metrics)
    return metrics


if __name__ == "__main__":
    run_main(__file__, main)
