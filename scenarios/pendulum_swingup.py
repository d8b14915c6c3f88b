"""Swinging up a torque-limited pendulum with MPC through a learned dynamics model.

    python scenarios/pendulum_swingup.py            # full size, under a minute (model cached)
    python scenarios/pendulum_swingup.py --quick    # small sizes, under 30 s

Problem.  ``cp.Pendulum``: gym's ``Pendulum-v1`` physics (a rod, g = 10, m = 1, l = 1,
dt = 0.05 s, speed limited to 8 rad/s).  The state is ``[theta, theta_dot]`` with theta = 0
upright (counter-clockwise positive) and theta = +-pi hanging; the torque is limited to
``|u| <= 2`` N m, less than the 5 N m gravity exerts at horizontal, so the pendulum cannot be
lifted directly: it must be swung back and forth to gain energy, then caught and balanced.

Method.  1. Learn the dynamics from random interaction: episodes of 20 steps of uniformly
random torques from random states of the true plant.  The model predicts the increment of the
state, ``x' = x + f(theta, theta_dot, u)`` (``cp.Dynamics(..., residual=True)``).  The angle
enters ``f`` only through two ``sin`` transfer units, ``sin(theta)`` and
``sin(theta + pi/2) = cos(theta)``, whose incoming weights are fixed (frozen in ``cp.fit``,
and theta's input scaling kept at mean 0, scale 1 so that they see radians): the model is
exactly 2 pi-periodic in theta.  That is what lets the planner roll the model out on the
*unwrapped* angle -- a plan that swings through the top (theta > pi) still sees a valid
model -- whereas a network fed the raw angle only knows [-pi, pi) and would extrapolate
beyond it.  After the two sine units, one hidden layer of relu units and skip connections
from ``[sin, cos, theta_dot, u]`` to the two linear outputs (a DAG, not a layer stack).  Why
this shape: the true step is linear in those four features except for the 8 rad/s speed
limit, a saturation -- a kink.  The skip connections carry the linear part, and a clip is the
difference of two relus, so a relu layer can represent the speed limit exactly; the fit
finds it (one-step errors of order 1e-4 and below).  With tanh hidden units instead, the same
DAG smooths the kink and spreads the error over the whole state space (one-step errors of a
few percent of the increments, and a model that is biased where the pendulum must be
balanced).  The script trains that variant too and swings up with it from hanging, for
comparison (metrics ``tanh_*``).  With the hidden-to-output weights zero and the skip weights
set to the physics coefficients, the same network is the exact model without the speed limit:
the script builds it as a reference (see below).
2. Swing up with model-predictive control (``cp.mpc``): at every step the next ``horizon``
torques are optimized through the frozen model (BPTT gradient, L-BFGS-B, torque bounds,
warm-started from the previous plan), the first is applied to the true plant.  The cost over
the horizon, with the angle unwrapped (the plant is run with ``wrap=False``)::

    J = sum_t [ 1 - cos(theta_t) + 0.01 theta_dot_t^2 + 0.01 u_t^2 ]
        + 5 [ 1 - cos(theta_T) + 0.005 theta_dot_T^2 ]

``1 - cos(theta)`` is smooth and periodic -- zero upright, 2 hanging -- where a quadratic on
the wrapped angle would jump at the hanging position and one on the unwrapped angle would
favour one of the two ways up; it is a custom running/terminal term of
``cp.TrajectoryCost`` (value and gradient, batched).  Exactly at rest hanging down its gradient
vanishes (the hanging state is the cost's maximum: with the exact model, a first plan of
zeros never moves), so the first plan is a small constant torque (0.5 N m); later plans are
warm-started as usual.
3. Judge on the true plant: the time to upright is the time from which the pendulum stays
within 0.1 rad of upright to the end of the run (``Pendulum.time_to_upright``); a run succeeds
when that happens with at least 2 s of balancing left.  Besides the start hanging at rest,
extra starts test that it is not a fluke: half near hanging (``Pendulum.sample_starts``: within
0.1 rad and 0.1 rad/s), half anywhere in the state space (``sample_states``, up to 8 rad/s).
The same MPC with the exact-physics network, from hanging, is the reference swing-up time.
With the tanh model the pendulum is caught too, but held a little off upright: the model is
biased there (at rest upright it predicts a drift of order 0.01 rad/s per step), and MPC,
having no integral action, settles where the model's balance torque balances the true
pendulum (``tanh_final_abs_theta``).

Model accuracy is reported three ways: one-step RMSE of the increments on fresh random
transitions, RMS angle error after ``horizon`` steps of open-loop prediction under random
torques (what the planner relies on), and the one-step prediction error along the MPC runs.

Outputs (in --out, default out/pendulum_swingup): swingup.png (angle, velocity and torque
against time from hanging, the model's one-step predictions dashed), phase.png (phase portrait
of every run over the zero-torque vector field), starts.png (distance from upright against
time for every start), model.png (training curves of both models; plans along the swing-up as
the models predict them and as the true plant runs them; open-loop error against prediction
length), metrics.json.
"""

import os
import sys

import numpy as np
from scipy.optimize import Bounds

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import cached_model, parse_args, run_main, write_metrics  # noqa: E402

import ctrlprop as cp  # noqa: E402

NAME = "pendulum_swingup"
TOL = 0.1                       # upright: |wrapped theta| <= TOL rad
HOLD = 2.0                      # success: upright by (run length - HOLD) s, and stays
W_VEL, W_U, W_FINAL = 0.01, 0.01, 5.0
FIRST_PLAN = 0.5                # constant torque of the first plan (breaks the symmetry)
SIN, COS = 3, 4                 # the fixed feature units (inputs are 0 theta, 1 theta_dot, 2 u)

FULL = {"n_train": 20000, "episode": 20, "hidden": 24, "maxiter": 3000, "steps": 200,
        "horizon": 30, "mpc_iter": 30, "n_extra": 10, "n_test": 20000}
QUICK = {"n_train": 4000, "episode": 20, "hidden": 16, "maxiter": 1500, "steps": 120,
         "horizon": 25, "mpc_iter": 20, "n_extra": 4, "n_test": 5000}


# ---- the model ----------------------------------------------------------------------------
def build_network(hidden, seed, transfer="relu"):
    """The DAG [theta, theta_dot, u] -> [sin, cos](fixed) -> hidden layer -> 2 increments,
    with skip connections from the features to the outputs."""
    hid = list(range(5, 5 + hidden))
    out = [5 + hidden, 6 + hidden]
    feats = (SIN, COS, 1, 2)
    edges = [(0, SIN), (0, COS)]
    edges += [(i, h) for i in feats for h in hid]
    edges += [(h, o) for h in hid for o in out]
    edges += [(i, o) for i in feats for o in out]
    net = cp.Network.from_edges(3, edges, ["sin", "sin"] + [transfer] * hidden + ["linear"] * 2,
                                out, seed=seed)
    # sin(1 * theta + 0) and sin(1 * theta + pi/2) = cos(theta)
    fixed = {(0, SIN): 1.0, ("bias", SIN): 0.0, (0, COS): 1.0, ("bias", COS): np.pi / 2}
    w = net.weights.copy()
    for j, label in enumerate(net.weight_labels):
        if label in fixed:
            w[j] = fixed[label]
    net.weights = w
    return net


def exact_network(plant, hidden):
    """The same DAG with the physics written into its skip weights (no speed limit).

    Residual form of the step:  d theta_dot = dt (1.5 g/l sin(theta) + 3 u/(m l^2)),
    d theta = dt (theta_dot + d theta_dot)."""
    net = build_network(hidden, seed=0)
    a, b = 1.5 * plant.g / plant.l * plant.dt, 3.0 / (plant.m * plant.l ** 2) * plant.dt
    out = net.outputs
    coef = {(SIN, out[1]): a, (2, out[1]): b,
            (SIN, out[0]): plant.dt * a, (1, out[0]): plant.dt, (2, out[0]): plant.dt * b}
    w = net.weights.copy()
    for j, (src, dst) in enumerate(net.weight_labels):
        if dst in out:
            w[j] = coef.get((src, dst), 0.0)
    net.weights = w
    return net


def increments(plant, X, Xn):
    """Training targets: next state minus state (the plant runs unwrapped)."""
    return Xn - X[:, :plant.n_states]


def train_model(plant, cfg, seed, transfer, progress=False):
    """Fit the network to random interaction with the true plant; returns (net, history)."""
    X, Xn = plant.training_data(cfg["n_train"], np.random.default_rng([seed, 0]),
                                episode_length=cfg["episode"])
    Y = increments(plant, X, Xn)
    net = build_network(cfg["hidden"], seed, transfer)
    # standardise theta_dot, u and the outputs; theta stays in radians for the sine units
    xm, xs = cp.data_scaling(X, "X")
    ym, ys = cp.data_scaling(Y, "Y")
    xm[0], xs[0] = 0.0, 1.0
    net.set_scaling(xm, xs, ym, ys)
    res = cp.fit(net, X, Y, method="L-BFGS-B", trainable=~net.units_weights([SIN, COS]),
                 progress=progress,
                 scale=False, validation=0.1, patience=100, maxiter=cfg["maxiter"], seed=seed)
    hist = {k: np.asarray(v).tolist() for k, v in res.history.items() if v is not None}
    hist["message"] = res.message
    return net, hist


def load_or_train(args, plant, cfg, transfer):
    """The cached model and its training history, or a freshly trained pair."""
    settings = {"plant": repr(plant), "seed": args.seed, "features": "sin,cos fixed",
                "transfer": transfer,
                **{k: cfg[k] for k in ("n_train", "episode", "hidden", "maxiter")}}
    return cached_model(args, f"pendulum-dyn-{transfer}", settings,
                        lambda: train_model(plant, cfg, args.seed, transfer, args.progress))


def model_accuracy(model, plant, cfg, seed):
    """One-step RMSE of the increments and open-loop angle error against prediction length."""
    rng = np.random.default_rng([seed, 1])
    X, Xn = plant.training_data(cfg["n_test"], rng)
    d = model.net.forward(X) - increments(plant, X, Xn)
    rmse = np.sqrt(np.mean(d ** 2, axis=0))
    # open loop: random states, random torques, the model and the plant side by side
    H, B = cfg["horizon"], 500
    x0 = plant.sample_states(B, rng)
    U = plant.sample_controls(B * H, rng).reshape(B, H, 1)
    err = np.abs(cp.wrap_angle(model.rollout(x0, U)[:, :, 0] - plant.rollout(x0, U)[:, :, 0]))
    return rmse, np.sqrt(np.mean(err ** 2, axis=0))


# ---- the cost and the controller ----------------------------------------------------------
# l(x, u) = 1 - cos(theta) + W_VEL theta_dot^2 + W_U u^2,   dl/dtheta = sin(theta)
# (written with few numpy calls, each about a microsecond: MPC evaluates it ~10^4 times)
def running_cost(X, U):
    """The running term of the swing-up cost, batched: X (B, T, 2), U (B, T, 1)."""
    th, v = X[..., 0], X[..., 1]
    gx = np.empty(X.shape)
    np.sin(th, out=gx[..., 0])
    np.multiply(v, 2.0 * W_VEL, out=gx[..., 1])
    val = 1.0 - np.cos(th)
    val += 0.5 * v * gx[..., 1]
    val += W_U * np.square(U[..., 0])
    return val, gx, 2.0 * W_U * U


# l_T(x) = W_FINAL (1 - cos(theta) + W_VEL/2 theta_dot^2)
def terminal_cost(x):
    """The terminal term of the swing-up cost, batched: x (B, 2)."""
    th, v = x[:, 0], x[:, 1]
    g = np.empty(x.shape)
    np.sin(th, out=g[:, 0])
    np.multiply(v, W_VEL, out=g[:, 1])
    val = 1.0 - np.cos(th)
    val += 0.5 * v * g[:, 1]
    g *= W_FINAL
    val *= W_FINAL
    return val, g


def _running_hessian(X, U):
    """Exact Hessian blocks of running_cost for iLQR/DDP: (h_xx (B, T, 2, 2),
    h_uu (B, T, 1, 1), h_ux (B, T, 1, 2))."""
    hxx = np.zeros(X.shape[:2] + (2, 2))
    hxx[..., 0, 0] = np.cos(X[..., 0])
    hxx[..., 1, 1] = 2.0 * W_VEL
    return hxx, np.full(U.shape[:2] + (1, 1), 2.0 * W_U), np.zeros(U.shape[:2] + (1, 2))


def _terminal_hessian(x):
    """Exact Hessian of terminal_cost, (B, 2, 2)."""
    h = np.zeros((x.shape[0], 2, 2))
    h[:, 0, 0] = W_FINAL * np.cos(x[:, 0])
    h[:, 1, 1] = W_FINAL * W_VEL
    return h


running_cost.hessian = _running_hessian
terminal_cost.hessian = _terminal_hessian
SWINGUP_COST = cp.TrajectoryCost(Q=0.0, running=running_cost, terminal=terminal_cost)


def swing_up(model, plant, x0, cfg, progress=False, method="L-BFGS-B"):
    """MPC through the model on the true plant from x0; returns the MPCResult
    (``method``: the planner's solver; ``benchmarks/bench_mpc.py`` also runs
    "dense-lbfgsb")."""
    H = cfg["horizon"]
    return cp.mpc(model, plant.step, x0, cfg["steps"], H, cost=SWINGUP_COST,
                  u0=np.full((H, 1), FIRST_PLAN), bounds=Bounds(plant.u_low, plant.u_high),
                  method=method, maxiter=cfg["mpc_iter"], progress=progress)


def extra_starts(plant, n, seed):
    """n starts: half near hanging at rest, half anywhere in the state space."""
    rng = np.random.default_rng([seed, 2])
    k = n // 2
    return np.vstack([plant.sample_starts(n - k, rng), plant.sample_states(k, rng)]), \
        ["near hanging"] * (n - k) + ["anywhere"] * k


# ---- plots --------------------------------------------------------------------------------
def _upright_lines(ax, angles):
    """Dotted lines and bands at the upright angles 2 pi k near the range of ``angles``."""
    lo = np.ceil((angles.min() - 0.5) / (2 * np.pi))
    hi = np.floor((angles.max() + 0.5) / (2 * np.pi))
    for k in np.arange(lo, hi + 1):
        ax.axhspan(2 * np.pi * k - TOL, 2 * np.pi * k + TOL, color="C3", alpha=0.15, lw=0)
        ax.axhline(2 * np.pi * k, color="C3", ls=":", lw=1)


def plot_swingup(plant, res, t_up, path, dpi=120):
    """Angle, velocity and torque against time, the model's one-step predictions dashed."""
    pred = np.vstack([res.states[:1], res.predicted])
    fig = cp.plot.plot_time_series(
        res.states, res.controls, plant=plant, predicted=pred,
        state_labels=["theta (rad, unwrapped)", "theta_dot (rad/s)"],
        control_labels=["torque u (N m)"],
        title=f"Swing-up from hanging: MPC through the learned model, true plant\n"
              f"upright (|theta| <= {TOL} rad) from t = {t_up:.2f} s; dashed: model's "
              f"one-step predictions")
    ax_th, ax_v, ax_u = fig.axes
    _upright_lines(ax_th, res.states[:, 0])
    ax_th.plot([], [], color="C3", ls=":", label=f"upright +- {TOL} rad")
    ax_th.legend(loc="best", fontsize="small")
    for s in (-1, 1):
        ax_v.axhline(s * plant.max_speed, color="0.5", ls=":", lw=1)
    for ax in fig.axes:
        if np.isfinite(t_up):
            ax.axvline(t_up, color="C3", lw=1, alpha=0.7)
    ax_u.set_xlabel("time (s)")
    cp.plot.save_figure(fig, path, dpi=dpi)


def plot_phase(plant, runs, labels, path):
    """Phase portrait of every run over the zero-torque dynamics."""
    def field(X):
        return plant.step(X, np.zeros(1)) - X
    fig = cp.plot.plot_phase_portrait(
        [r.states for r in runs], labels=labels, wrap=True, vector_field=field,
        ylim=(-8.8, 8.8), title="Phase portrait of the MPC runs (true plant)\n"
                                "arrows: one step at zero torque")
    ax = fig.axes[0]
    ax.axvspan(-TOL, TOL, color="C3", alpha=0.12, lw=0)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small")
    cp.plot.save_figure(fig, path)


def plot_starts(plant, runs, kinds, t_ups, path):
    """|wrapped theta| against time for every start, log scale, the tolerance dotted."""
    fig, ax = cp.plot.new_figure(figsize=(7.0, 4.0))
    colors = {"hanging": "k", "near hanging": "C0", "anywhere": "C1"}
    floor = 1e-5                                   # angles below it are drawn at it
    seen = set()
    for r, kind, t in zip(runs, kinds, t_ups):
        a = np.abs(cp.wrap_angle(r.states[:, 0]))
        ax.plot(plant.dt * np.arange(len(a)), np.maximum(a, floor), color=colors[kind],
                lw=1.8 if kind == "hanging" else 1.0, alpha=0.9,
                label=None if kind in seen else kind)
        seen.add(kind)
        if np.isfinite(t):
            ax.plot(t, TOL, "|", color=colors[kind], ms=10, mew=2)
    ax.axhline(TOL, color="C3", ls=":", lw=1, label=f"tolerance {TOL} rad")
    ax.set_yscale("log")
    ax.set_ylim(0.5 * floor, 5.0)
    ax.set_xlabel("time (s)")
    ax.set_ylabel(f"|theta| from upright (rad; floor {floor:g})")
    n_ok = sum(np.isfinite(t) for t in t_ups)
    ax.set_title(f"Distance from upright, every start ({n_ok}/{len(runs)} end upright; "
                 f"ticks: time to upright)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize="small")
    cp.plot.save_figure(fig, path)


def plot_model(plant, models, histories, res, horizon_rms, path):
    """Training curves; plans predicted vs run on the true plant; open-loop error."""
    fig, axes = cp.plot.new_figure(1, 3, figsize=(14.0, 4.0))
    styles = {"relu": ("C0", "--"), "tanh": ("C1", ":")}
    ax = axes[0]
    for name, hist in histories.items():
        if hist is None:
            continue
        c = styles[name][0]
        it = np.asarray(hist["iteration"])
        ax.plot(it, hist["train_loss"], color=c, label=f"{name}: training")
        if hist.get("val_loss") is not None:
            ax.plot(it, hist["val_loss"], color=c, ls="--", label=f"{name}: validation")
    if any(h is None for h in histories.values()):
        ax.text(0.5, 0.5, "(a cached model has no saved history:\nrun with --retrain)",
                ha="center", va="center", transform=ax.transAxes, fontsize="small")
    ax.set_yscale("log")
    ax.set_xlabel("L-BFGS-B iteration")
    ax.set_ylabel("mean squared error per output")
    ax.set_title("Training the dynamics models")
    ax.legend(fontsize="small")
    ax = axes[1]
    t = plant.dt * np.arange(res.plans.shape[1] + 1)
    shown = False
    for k in (0, 20, 40):
        if k >= len(res.plans):
            continue
        x0, U, tk = res.states[k], res.plans[k], plant.dt * k + t
        ax.plot(tk, plant.rollout(x0, U)[:, 0], color="k", lw=2.5, alpha=0.35,
                label=None if shown else "true plant")
        for name, model in models.items():
            c, ls = styles[name]
            ax.plot(tk, model.rollout(x0, U)[:, 0], color=c, ls=ls, lw=1.5,
                    label=None if shown else f"{name} model")
        shown = True
    ax.set_xlabel("time (s)")
    ax.set_ylabel("theta (rad, unwrapped)")
    ax.set_title("Plans at t = 0, 1, 2 s: predicted vs true")
    ax.legend(fontsize="small")
    ax = axes[2]
    for name, rms in horizon_rms.items():
        ax.plot(np.arange(1, len(rms)), rms[1:], "o-", ms=3, color=styles[name][0],
                label=f"{name} model")
    ax.set_yscale("log")
    ax.set_xlabel("steps ahead (open loop)")
    ax.set_ylabel("RMS angle error (rad)")
    ax.set_title("Open-loop prediction error, random torques")
    ax.legend(fontsize="small")
    for a in axes:
        a.grid(alpha=0.3)
    cp.plot.save_figure(fig, path)


# ---- main ---------------------------------------------------------------------------------
def _success(t_up, cfg, dt):
    """Upright with at least HOLD seconds of balancing left."""
    return bool(np.isfinite(t_up) and t_up <= cfg["steps"] * dt - HOLD)


def main(argv=None):
    args = parse_args(NAME, __doc__.splitlines()[0], argv)
    cfg = QUICK if args.quick else FULL
    plant = cp.Pendulum(wrap=False)

    models, histories, infos, acc = {}, {}, {}, {}
    for transfer in ("relu", "tanh"):
        net, infos[transfer], histories[transfer] = load_or_train(args, plant, cfg, transfer)
        models[transfer] = cp.Dynamics(net, plant.n_states, residual=True)
        acc[transfer] = model_accuracy(models[transfer], plant, cfg, args.seed)
    model = models["relu"]

    res = swing_up(model, plant, plant.hanging, cfg, args.progress)
    t_up = round(plant.time_to_upright(res.states, TOL), 3)
    ref = swing_up(cp.Dynamics(exact_network(plant, cfg["hidden"]), 2, residual=True),
                   plant, plant.hanging, cfg)
    t_ref = round(plant.time_to_upright(ref.states, TOL), 3)
    tanh = swing_up(models["tanh"], plant, plant.hanging, cfg)
    t_tanh = round(plant.time_to_upright(tanh.states, TOL), 3)

    starts, kinds = extra_starts(plant, cfg["n_extra"], args.seed)
    extra = [swing_up(model, plant, x0, cfg) for x0 in starts]
    t_extra = [round(plant.time_to_upright(r.states, TOL), 3) for r in extra]
    ok = [_success(t, cfg, plant.dt) for t in t_extra]
    print(f"\nextra starts ({sum(ok)}/{len(ok)} succeed)")
    print("   theta  theta_dot  kind           time to upright  ms/step")
    for x0, kind, t, r in zip(starts, kinds, t_extra, extra):
        print(f"{x0[0]:8.3f}  {x0[1]:9.3f}  {kind:13s}  {t:15.2f}  "
              f"{1e3 * r.time_per_step.mean():7.1f}")

    runs = [res] + extra
    plot_swingup(plant, res, t_up, os.path.join(args.out, "swingup.png"))
    plot_phase(plant, runs, ["from hanging"] + [f"start {i + 1} ({k})"
                                                for i, k in enumerate(kinds)],
               os.path.join(args.out, "phase.png"))
    plot_starts(plant, runs, ["hanging"] + kinds, [t_up] + t_extra,
                os.path.join(args.out, "starts.png"))
    plot_model(plant, models, histories, res, {k: v[1] for k, v in acc.items()},
               os.path.join(args.out, "model.png"))

    step_ms = 1e3 * np.concatenate([r.time_per_step for r in runs])
    pred_err = np.concatenate([r.prediction_error for r in runs])
    rmse, horizon_rms = acc["relu"]
    history = histories["relu"]
    metrics = {
        "time_to_upright": t_up,
        "success": _success(t_up, cfg, plant.dt),
        "success_rate_extra": float(np.mean(ok)),
        "n_extra": len(ok),
        "time_to_upright_extra": t_extra,
        "median_time_to_upright_extra": float(np.median(t_extra)),
        "success_rate_near_hanging": float(np.mean([o for o, k in zip(ok, kinds)
                                                    if k == "near hanging"])),
        "reference_time_to_upright": t_ref,
        "final_abs_theta": float(abs(cp.wrap_angle(res.states[-1, 0]))),
        "model_rmse_dtheta": float(rmse[0]),
        "model_rmse_dtheta_dot": float(rmse[1]),
        "model_open_loop_rms_theta": float(horizon_rms[-1]),
        "prediction_error_median": float(np.median(pred_err)),
        "prediction_error_max": float(pred_err.max()),
        "mpc_ms_per_step": float(step_ms.mean()),
        "mpc_ms_per_step_p95": float(np.percentile(step_ms, 95)),
        "mpc_iterations_median": float(np.median(np.concatenate([r.history["nit"]
                                                                 for r in runs]))),
        "tanh_time_to_upright": t_tanh,
        "tanh_final_abs_theta": float(abs(cp.wrap_angle(tanh.states[-1, 0]))),
        "tanh_model_rmse_dtheta_dot": float(acc["tanh"][0][1]),
        "tanh_model_open_loop_rms_theta": float(acc["tanh"][1][-1]),
        "horizon": cfg["horizon"],
        "horizon_seconds": cfg["horizon"] * plant.dt,
        "steps": cfg["steps"],
        "n_train": cfg["n_train"],
        "hidden": cfg["hidden"],
        "train_iterations": None if history is None else int(history["iteration"][-1]),
        "model_cached": infos["relu"]["cached"],
        "train_seconds": round(infos["relu"]["train_seconds"] + infos["tanh"]["train_seconds"],
                               2),
    }
    write_metrics(args, NAME, metrics)
    return metrics


if __name__ == "__main__":
    run_main(__file__, main)
