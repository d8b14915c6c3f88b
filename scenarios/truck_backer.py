"""Backing a truck and trailer to a loading dock: the truck backer-upper of Nguyen & Widrow.

    python scenarios/truck_backer.py            # full size, about 2 minutes on 2 cores
    python scenarios/truck_backer.py --quick    # 12 starts nearer the dock, short training:
                                                # about 15 s

Trained models are cached in <out>/cache (``--retrain`` ignores them).

Problem.  ``cp.TruckBackerUpper``: a cab (length L = 1) pulls a trailer (d1 = 4) hitched at the
cab's rear axle, and backs up at a constant 0.1 per step (s = -0.1)::

    hitch' = s [cos th0, sin th0],   th0' = (s / L) tan(phi),   th1' = (s / d1) sin(th0 - th1)

The state is ``[x, y, th0, th1]``: (x, y) the rear of the trailer, th0 the cab heading, th1 the
trailer heading (from the trailer's rear toward the hitch); the control is the steering angle
``phi in [-pi/4, pi/4]``.  The yard is ``x in [0, 40], y in [-10, 10]``; starts are drawn with
``x in [10, 40]``, any y, ``th0 in [0, 2 pi)`` and the cab within 45 degrees of the trailer.
An episode ends when the rear reaches the dock line ``x <= 0``, when the truck jackknifes
(``|th0 - th1| > 90`` degrees) or when the rear leaves the yard.  Success is
``TruckBackerUpper.docked``: at the dock line, not jackknifed, within 1.0 of the dock point
(0, 0) and within 10 degrees of the dock angle th1 = 0.  Backing is unstable (with the wheel
straight the cab-trailer angle grows), so the truck must be steered all the way.

The emulator (step 1).  A network learns the step from random transitions of the true plant
(``training_data``: random states, uniformly random steering): ``cp.Dynamics(net, 4,
residual=True)``, ``x' = x + f(x, u)``.  The angles need care: the plant wraps them to
[-pi, pi), so a network reading the raw angle sees a jump of 2 pi where nothing physical
happens, and a rollout that turns past pi leaves the range it was trained on.  So the angles
enter the network only through ``sin`` units with frozen weights -- sin/cos of th0, of th1 and
of th0 - th1 (``sin(a + pi/2) = cos a``) -- and the model predicts increments: f is exactly
2 pi-periodic, and the model can be rolled out on *unwrapped* (continuous) angles, which is
what the optimizers below do (the measured state is unwrapped before planning:
``th1 <- th0 + wrap(th1 - th0)``).  x and y feed nothing: the dynamics do not depend on the
position, and the model knows it.  The features, the steering and one hidden tanh layer feed
four linear outputs (with skip connections from the features and the steering).

The cost.  Backing ends at an *event* -- the rear crossing x = 0 -- not at a fixed time, while
the optimizers roll the model out for a fixed number of steps (and in the model the truck keeps
going past the dock).  So the cost of a rollout is read at its first event (``DockCost``): the
dock line (the crossing, linearly interpolated between the two steps that straddle x = 0), a
jackknife or leaving the yard; what comes after is ignored::

    J = sum_{t < k} [ 100 (cos 75deg - cos(th0 - th1))_+^2 + 10 (|y| - 9.5)_+^2
                      + 10 (x - 39.5)_+^2 ]                     barriers before the event k
        + y_c^2 + (2 (1 - cos th1_c)) / (10 deg)^2              if the rear reached the dock
        + terminal(x_k)                                         otherwise (failure or time)

The dock cost is the squared miss in yard units plus the squared angle error in units of
10 degrees.  The terminal term differs between the two methods: for MPC, whose horizon ends far
from the dock, it is a *guide*: ``0.5 r + 2.5 * 2 (1 - cos(th1 - psi))`` with ``psi =
atan2(2 y, x + 2)`` the slope of the parabola ``y ~ x^2`` through the rear, i.e. paths that
arrive tangent to the x-axis.  For the controller, whose rollouts are long enough to reach the
dock, it prices the rollouts that did not get there: ``2 x + (dock cost at the end state)``,
which agrees with the dock cost at x = 0 (no jump in the cost when a crossing moves past the
last step).

(a) MPC through the learned model.  ``cp.mpc`` controls one plant and replans at every step;
with 100 starts and paths of up to 600 steps that is 60 000 optimizations.  Instead, a batched
receding-horizon loop: every ``every`` = 10 steps, the next ``horizon`` = 80 steps (8 yard
units) are optimized for all unfinished starts at once with ``cp.optimize_trajectory``
(L-BFGS-B, steering bounds, BPTT gradients; starts in groups of 10 -- each group is one
vectorized rollout; one optimizer over all 100 independent problems shares its line search and
curvature pairs across them and converged worse: 80 % docked against 87 % in groups of 10, in
a trial run), warm-started from the previous plan shifted
by 10 steps; the first 10 controls of every plan are then applied to the TRUE plant
(``plant.simulate``, stopping at the events), and the loop replans from the measured states.
Replanning every 10 steps rather than every step trades feedback for a tenth of the cost;
the model's 10-step prediction error along the runs is reported (``mpc_prediction_error_*``).

(b) A controller network trained through the frozen emulator (Nguyen & Widrow; Jordan &
Rumelhart's distal teacher).  ``phi = (pi/4) tanh(c(x, y, th1, th0 - th1))``, with the same
frozen sin/cos features and one hidden tanh layer.  Its weights are trained by
back-propagation through time through the controller AND the frozen model over whole
episodes (up to 650 steps) from many starts at once (``cp.ControllerObjective``: mean cost
and exact gradient).  A curriculum, as Nguyen & Widrow used: starts near the dock and nearly
aligned first, then farther and at any heading, the horizon growing with the distance.  The
optimizer is Adam with the gradient norm clipped at 10 and a fresh batch of starts every 10
iterations, not ``cp.train_controller``'s L-BFGS-B: through 400+ unstable steps the
gradient is exact but valid only very near the current weights (a trajectory that jackknifes,
or crosses the dock line one step earlier, changes the cost in a jump) and L-BFGS-B's line
search stalled after a few iterations from the second stage on (tried while building this
script);
also, ``train_controller`` trains every weight and the feature weights must stay frozen.
The trained controller is then run in closed loop on the true plant (``plant.simulate``).

Evaluation.  Both methods start from the same 100 random starts (``sample_starts``) and run
on the true plant until an event or 900 steps.  Metrics per method: success rate; how many
jackknifed, left the yard, reached the dock line; final position error (distance from the
dock point) and angle error, as medians over all starts (a failure counts with its final
errors) and over the successes; steps; seconds.  Some starts are hard or hopeless whatever
the steering: a truck that starts a few steps from the fence, backing toward it, leaves the
yard (or jackknifes trying not to) before the trailer can turn -- its rear turns on a circle
of a few units' radius at best.  Starts whose rear would cross the fence within 30 steps
going straight are counted apart (``*_fence_failures``), and every failed start is printed
with how each method ended, so the failures can be read.  The controller is also run from
1000 more starts (cheap: a forward pass per step).

Results (full size; seed 0 / 1 / 2, 2 shared cores, ~110 s each with an empty cache).  MPC
docks 94 / 93 / 93 of 100 starts, the controller 86 / 84 / 80 (85.6 / 86.0 / 84.3 % of the
1000 extra starts).  Median final errors over all starts: MPC 0.05 yard units and 0.3
degrees, the controller 0.20 and 1.5 degrees (seed 0).  Of the 10 fence starts of seed 0,
three fail with both methods (two of them 4 and 6 steps from the fence) and two more with
one method only.  The other failures differ in kind.  MPC (seed 0: 3) misses the
tolerance narrowly (1.07, 1.32, 2.18 from the dock point) from starts close to the dock
(x ~ 10-15) with a large lateral offset or a bad heading: its 8-unit horizon sees the dock
only in the last 8 units, too late to undo a lateral offset, and the guide is a heuristic.
The controller's misses (seed 0: 8) come from the same region (x ~ 10-12): it arrives at
the dock line 1.0-1.8 from the dock point and 9-16 degrees off -- on the line where the
dock cost trades a unit of miss for 10 degrees (dock_errors.png) -- because one smooth
policy for the whole yard converges to the lane too slowly for the shortest approaches;
and three trucks far from the dock facing away (x ~ 28-36) leave the yard while turning
round, which MPC, planning against the yard barrier, avoids.  The controller is far cheaper
to run (about 2 us per step and start against about 1 ms for MPC) once its ~40 s of training
are paid; MPC needs no training beyond the emulator and is the more accurate.

Outputs (in --out, default out/truck_backer): paths_mpc.png and paths_controller.png (true-plant
paths from 40 of the starts with the truck and trailer drawn, failures marked), dock_errors.png
(final position against angle error of every start, both methods, the success box),
controller_training.png (mean and median cost of the batch per Adam iteration, curriculum
stages shaded: the median is the typical start, the mean is dominated by the failing ones),
emulator_training.png (training and validation loss), comparison.png (both methods, 20
starts, the gallery image), metrics.json.
"""

import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import cached_model, parse_args, run_main, write_metrics  # noqa: E402

import ctrlprop as cp  # noqa: E402
from ctrlprop.solvers.progress import Progress  # noqa: E402

NAME = "truck_backer"
LIM = np.pi / 4                            # steering limit
FENCE_STEPS = 30                           # a start this close to the fence is a "fence start"

# Curriculum stages: (starts per batch, x range, |y| max, max |th1| at the start, horizon,
# Adam iterations).  Learning rate 2e-2, divided by 10 over the last stage.
FULL = {
    "n_train": 20000, "emu_hidden": 32, "emu_maxiter": 2500,
    "n_starts": 100, "start_x": (10.0, 40.0), "max_steps": 900, "n_extra": 1000,
    "horizon": 80, "every": 10, "group": 10, "mpc_iter": 30, "mpc_first_iter": 90,
    "ctrl_hidden": 24, "lr": 2e-2, "clip": 10.0, "resample": 10,
    "stages": [(64, (3, 8), 2, 0.5, 120, 100), (64, (5, 15), 5, 1.5, 250, 100),
               (64, (8, 25), 8, np.pi, 400, 100), (128, (10, 40), 10, np.pi, 650, 200)],
    "n_paths": 40,
}
QUICK = {
    "n_train": 4000, "emu_hidden": 32, "emu_maxiter": 2000,
    "n_starts": 12, "start_x": (10.0, 20.0), "max_steps": 400, "n_extra": 200,
    "horizon": 60, "every": 10, "group": 12, "mpc_iter": 25, "mpc_first_iter": 60,
    "ctrl_hidden": 24, "lr": 2e-2, "clip": 10.0, "resample": 10,
    "stages": [(32, (3, 8), 2, 0.5, 120, 80), (32, (5, 15), 5, 1.5, 250, 80),
               (32, (8, 20), 10, np.pi, 300, 100)],
    "n_paths": 12,
}


# ---- networks with frozen periodic features --------------------------------------------------
def periodic_network(n_in, features, direct, hidden, n_out, out_transfer, seed):
    """A DAG: frozen sin features of the angles + direct inputs -> tanh layer -> outputs.

    ``features`` is a list of ``({input: coefficient}, phase)``: a unit
    ``sin(sum_i c_i x_i + phase)``.  The features and the ``direct`` inputs feed the hidden
    layer and, by skip connections, the outputs.  Returns the network and the mask of its
    trainable weights (all but the features' own).
    """
    F = n_in
    edges, transfers, fixed = [], [], {}
    for k, (coef, phase) in enumerate(features):
        for i, c in coef.items():
            edges.append((i, F + k))
            fixed[(i, F + k)] = c
        fixed[("bias", F + k)] = phase
        transfers.append("sin")
    feats = list(range(F, F + len(features)))
    first_hidden = F + len(features)
    hid = list(range(first_hidden, first_hidden + hidden))
    ins = list(direct) + feats
    edges += [(s, h) for h in hid for s in ins]
    transfers += ["tanh"] * hidden
    outs = list(range(hid[-1] + 1, hid[-1] + 1 + n_out))
    edges += [(s, o) for o in outs for s in hid + ins]
    transfers += [out_transfer] * n_out
    net = cp.Network.from_edges(n_in, edges, transfers, outs, seed=seed)
    w = net.weights.copy()
    for i, label in enumerate(net.weight_labels):
        if tuple(label) in fixed:
            w[i] = fixed[tuple(label)]
    net.weights = w
    return net, ~net.units_weights(feats)


def sincos(*coefs):
    """sin and cos features of the angle sum_i c_i x_i."""
    return [(c, 0.0) for c in coefs] + [(c, np.pi / 2) for c in coefs]


def build_emulator(hidden, seed):
    """Inputs [x, y, th0, th1, phi] -> increments of [x, y, th0, th1]; x, y unused."""
    feats = sincos({2: 1.0}, {3: 1.0}, {2: 1.0, 3: -1.0})
    return periodic_network(5, feats, [4], hidden, 4, "linear", seed)


def build_controller(hidden, seed):
    """Inputs [x, y, th0, th1] -> steering (pi/4) tanh(.), reading x, y, th1, th0 - th1."""
    net, trainable = periodic_network(4, sincos({3: 1.0}, {2: 1.0, 3: -1.0}), [0, 1], hidden,
                                      1, "tanh", seed)
    w = net.weights.copy()
    w[net.units_weights(net.outputs)] *= 0.1          # start near straight steering
    net.weights = w
    net.set_scaling(np.zeros(4), np.array([20.0, 10.0, 1.0, 1.0]), np.zeros(1), np.array([LIM]))
    return net, trainable


def unwrap(X):
    """States with th1 within pi of th0 (what the model's continuous angles expect)."""
    X = np.array(X, dtype=float)
    X[:, 3] = X[:, 2] + cp.wrap_angle(X[:, 3] - X[:, 2])
    return X


# ---- the cost -------------------------------------------------------------------------------
class DockCost:
    """The backing cost of the module docstring, for ``cp.TrajectoryCost(trajectory=...)``.

    Parameters
    ----------
    terminal : {"guide", "lane"}
        Terminal term of rollouts that end without docking: the parabola guide (MPC) or
        ``2 x + dock cost`` (controller training).
    failures_end : bool
        A jackknife or leaving the yard ends the rollout (as on the plant), or only the dock
        line does (the barriers then keep growing past a failure).
    """

    WY, WA = 1.0, 1.0 / np.deg2rad(10.0) ** 2           # dock cost: miss^2 + (angle / 10deg)^2
    WJ, COS_J = 100.0, np.cos(np.deg2rad(75.0))         # jackknife barrier from 75 degrees
    WB, XB, YB = 10.0, 39.5, 9.5                        # yard barrier
    WD, WH, P, X0 = 0.5, 2.5, 2.0, 2.0                  # guide: distance, heading to the field
    WX = 2.0                                            # lane: remaining distance

    def __init__(self, terminal="guide", failures_end=False):
        if terminal not in ("guide", "lane"):
            raise ValueError(f"terminal must be 'guide' or 'lane', got {terminal!r}")
        self.terminal, self.failures_end = terminal, bool(failures_end)

    def __call__(self, S, U):
        """Costs (B,) and their gradient (B, T+1, 4) for states (B, T+1, 4)."""
        B, T1, _ = S.shape
        x, y, a0, a1 = S[..., 0], S[..., 1], S[..., 2], S[..., 3]
        G = np.zeros_like(S)
        val = np.zeros(B)
        b_all = np.arange(B)
        # the event index k: first t >= 1 at the dock line or failed (T if none)
        c = np.cos(a0 - a1)
        dock = x <= 0.0
        event = dock | (c < 0.0) | (np.abs(y) > 10.0) | (x > 40.0) if self.failures_end \
            else dock.copy()
        event[:, 0] = False
        hit = event.any(axis=1)
        k = np.where(hit, event.argmax(axis=1), T1 - 1)
        docked = hit & dock[b_all, k]
        # barriers on states 1..k-1, and on state k unless it is the dock crossing
        live = np.arange(T1)[None, :] < k[:, None]
        live[:, 0] = False
        live[~docked, k[~docked]] = True
        # 100 (cos 75 - cos d)_+^2, d = th0 - th1:  d/dd = 200 (.)_+ sin d
        e = np.maximum(self.COS_J - c, 0.0) * live
        val += self.WJ * np.einsum("bt,bt->b", e, e)
        gd = 2.0 * self.WJ * e * np.sin(a0 - a1)
        G[..., 2] += gd
        G[..., 3] -= gd
        for col, j, lim, sign in ((y, 1, self.YB, 1.0), (y, 1, self.YB, -1.0),
                                  (x, 0, self.XB, 1.0)):
            e = np.maximum(sign * col - lim, 0.0) * live
            val += self.WB * np.einsum("bt,bt->b", e, e)
            G[..., j] += 2.0 * self.WB * sign * e
        self._dock(S, b_all[docked], k[docked], val, G)
        self._end(S, b_all[~docked], k[~docked], val, G)
        return val, G, None

    def _dock(self, S, b, k, val, G):
        """Dock cost at the interpolated crossing of x = 0 between steps k-1 and k."""
        if not b.size:
            return
        # al = x_{k-1} / (x_{k-1} - x_k);  y_c = y_{k-1} + al (y_k - y_{k-1}), same for th1;
        # d al / d x_{k-1} = -x_k / D^2,  d al / d x_k = x_{k-1} / D^2  (D = x_{k-1} - x_k)
        xp, xk = S[b, k - 1, 0], S[b, k, 0]
        D = xp - xk
        al = xp / D
        dy = S[b, k, 1] - S[b, k - 1, 1]
        da = S[b, k, 3] - S[b, k - 1, 3]
        yc = S[b, k - 1, 1] + al * dy
        ac = S[b, k - 1, 3] + al * da
        val[b] += self.WY * yc ** 2 + self.WA * 2.0 * (1.0 - np.cos(ac))
        gy, ga = 2.0 * self.WY * yc, 2.0 * self.WA * np.sin(ac)
        gal = gy * dy + ga * da
        G[b, k - 1, 1] += gy * (1.0 - al)
        G[b, k, 1] += gy * al
        G[b, k - 1, 3] += ga * (1.0 - al)
        G[b, k, 3] += ga * al
        G[b, k - 1, 0] -= gal * xk / D ** 2
        G[b, k, 0] += gal * xp / D ** 2

    def _end(self, S, b, k, val, G):
        """Terminal term at the end state k of rollouts that did not dock."""
        if not b.size:
            return
        x, y, th = S[b, k, 0], S[b, k, 1], S[b, k, 3]
        if self.terminal == "lane":
            # 2 x + y^2 + WA 2 (1 - cos th1): the dock cost plus the distance still to go
            val[b] += self.WX * x + self.WY * y ** 2 + self.WA * 2.0 * (1.0 - np.cos(th))
            G[b, k, 0] += self.WX
            G[b, k, 1] += 2.0 * self.WY * y
            G[b, k, 3] += 2.0 * self.WA * np.sin(th)
            return
        # 0.5 r + 2.5 * 2 (1 - cos(th1 - psi)),  psi = atan2(P y, x + X0)
        r = np.hypot(x, y) + 1e-12
        q = x + self.X0
        h = th - np.arctan2(self.P * y, q)
        val[b] += self.WD * r + self.WH * 2.0 * (1.0 - np.cos(h))
        gh = 2.0 * self.WH * np.sin(h)
        den = q ** 2 + (self.P * y) ** 2
        G[b, k, 0] += self.WD * x / r + gh * self.P * y / den     # d psi / dx = -P y / den
        G[b, k, 1] += self.WD * y / r - gh * self.P * q / den     # d psi / dy = P q / den
        G[b, k, 3] += gh


# ---- the emulator -------------------------------------------------------------------------
def train_emulator(plant, cfg, seed, progress=False):
    """Fit the emulator to random transitions of the true plant; returns (net, history)."""
    rng = np.random.default_rng(seed)
    X, Y = plant.training_data(cfg["n_train"], rng)
    D = plant.state_difference(X[:, :4], Y)              # increments, angles wrapped
    net, trainable = build_emulator(cfg["emu_hidden"], seed)
    # the sin units read radians: angle inputs unscaled; steering to [-1, 1]
    net.set_scaling(np.zeros(5), np.array([1.0, 1.0, 1.0, 1.0, LIM]), D.mean(0), D.std(0))
    res = cp.fit(net, X, D, trainable=trainable, scale=False, validation=0.1, progress=progress,
                 maxiter=cfg["emu_maxiter"], patience=None, seed=seed)
    hist = {k: np.asarray(v).tolist() for k, v in res.history.items() if v is not None}
    hist["message"] = res.message
    return net, hist


def emulator_accuracy(net, plant, seed):
    """One-step RMSE of the increments on fresh transitions, per state, and relative."""
    X, Y = plant.training_data(5000, np.random.default_rng([seed, 11]))
    D = plant.state_difference(X[:, :4], Y)
    rmse = np.sqrt(np.mean((net.forward(X) - D) ** 2, axis=0))
    return rmse, rmse / D.std(0)


# ---- (a) batched receding-horizon MPC -------------------------------------------------------
def run_mpc(model, plant, starts, cfg, progress=False):
    """Replan every ``every`` steps for all unfinished starts, run the plans on the plant."""
    N, H, K = len(starts), cfg["horizon"], cfg["every"]
    cost = cp.TrajectoryCost(Q=0.0, trajectory=DockCost("guide", failures_end=False))
    paths = np.empty((N, cfg["max_steps"] + 1, 4))
    paths[:, 0] = starts
    steps = np.zeros(N, int)
    done = np.asarray(plant.terminated(starts))
    plans = np.zeros((N, H, 1))
    X = starts.copy()
    pred_pos, pred_ang = [], []
    n_plans = nfev = 0
    t_plan = t_plant = 0.0
    bar = Progress(progress, "truck MPC", cfg["max_steps"], unit="step")
    while not done.all() and steps.max() < cfg["max_steps"]:
        act = np.flatnonzero(~done)
        x0 = unwrap(X[act])
        t0 = time.perf_counter()
        iters = cfg["mpc_first_iter"] if n_plans == 0 else cfg["mpc_iter"]
        U = np.empty((act.size, H, 1))
        predicted = np.empty((act.size, K + 1, 4))
        for g in range(0, act.size, cfg["group"]):
            sl = slice(g, g + cfg["group"])
            res = cp.optimize_trajectory(model, x0[sl], H, cost=cost, u0=plans[act[sl]],
                                         bounds=(-LIM, LIM), maxiter=iters)
            U[sl], predicted[sl] = res.controls, res.states[:, :K + 1]
            nfev += res.nfev
        n_plans += 1
        t1 = time.perf_counter()
        t_plan += t1 - t0
        k = min(K, cfg["max_steps"] - int(steps[act].max()))
        clock = iter(range(k))
        ro = plant.simulate(X[act], lambda _: U[:, next(clock)], k, stop=plant.terminated)
        t_plant += time.perf_counter() - t1
        for j, b in enumerate(act):
            n = ro.steps[j]
            paths[b, steps[b] + 1:steps[b] + n + 1] = ro.states[j, 1:n + 1]
        # the model's K-step prediction against the plant, where the plant ran K steps
        full = ro.steps == K
        if full.any():
            true = ro.states[full, K]
            pred_pos.append(np.hypot(*(predicted[full, K, :2] - true[:, :2]).T))
            pred_ang.append(np.abs(cp.wrap_angle(predicted[full, K, 3] - true[:, 3])))
        X[act] = ro.states[np.arange(act.size), ro.steps]
        steps[act] += ro.steps
        done[act] |= ro.stopped
        plans[act] = np.concatenate([U[:, K:], np.repeat(U[:, -1:], K, axis=1)], axis=1)
        bar.update(int(ro.steps.max()), running=int((~done).sum()))
    bar.close()
    for b in range(N):                                   # after the end: the last state
        paths[b, steps[b] + 1:] = paths[b, steps[b]]
    return {"final": X, "steps": steps, "paths": paths, "plans": n_plans, "nfev": nfev,
            "plan_seconds": t_plan, "plant_seconds": t_plant,
            "pred_pos": np.concatenate(pred_pos) if pred_pos else np.zeros(0),
            "pred_ang": np.concatenate(pred_ang) if pred_ang else np.zeros(0)}


# ---- (b) controller trained through the frozen emulator -----------------------------------
def stage_starts(n, x_range, y_max, heading, rng):
    """Curriculum starts: |th1| <= heading, cab within 45 degrees of the trailer."""
    th1 = rng.uniform(-heading, heading, n)
    th0 = th1 + rng.uniform(-np.pi / 4, np.pi / 4, n)
    return np.stack([rng.uniform(*x_range, n), rng.uniform(-y_max, y_max, n), th0, th1], 1)


def train_controller(model, cfg, seed, progress=False):
    """Curriculum BPTT training of the controller (Adam, clipped gradient); (net, history)."""
    rng = np.random.default_rng([seed, 2])
    ctrl, trainable = build_controller(cfg["ctrl_hidden"], seed)
    cost = cp.TrajectoryCost(Q=0.0, trajectory=DockCost("lane", failures_end=True))
    w = ctrl.weights.copy()
    z = w[trainable].copy()
    m, v = np.zeros_like(z), np.zeros_like(z)
    b1, b2, it = 0.9, 0.999, 0
    hist = {"iteration": [], "cost": [], "median_cost": [], "stage": [], "grad_norm": []}
    last = len(cfg["stages"]) - 1
    bar = Progress(progress, "truck controller (Adam)", sum(st[-1] for st in cfg["stages"]))
    for s, (n, x_range, y_max, heading, T, iters) in enumerate(cfg["stages"]):
        for i in range(iters):
            if i % cfg["resample"] == 0:                 # a fresh batch of starts
                obj = cp.ControllerObjective(model, ctrl, stage_starts(n, x_range, y_max,
                                                                       heading, rng), T, cost)
            w[trainable] = z
            f, g = obj(w)
            g = g[trainable]
            gn = float(np.linalg.norm(g))
            if gn > cfg["clip"]:
                g = g * (cfg["clip"] / gn)
            # Adam: m, v running moments of the (clipped) gradient, bias-corrected
            it += 1
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            lr = cfg["lr"] * (0.1 ** (i / iters) if s == last else 1.0)
            z -= lr * (m / (1 - b1 ** it)) / (np.sqrt(v / (1 - b2 ** it)) + 1e-8)
            for key, val in (("iteration", it), ("cost", f), ("stage", s), ("grad_norm", gn),
                             ("median_cost", float(np.median(obj.last_costs)))):
                hist[key].append(val)
            bar.update(cost=f, stage=s)
    bar.close()
    w[trainable] = z
    ctrl.weights = w
    return ctrl, hist


def run_controller(ctrl, plant, starts, max_steps):
    """Closed loop on the true plant until an event; (rollout, seconds)."""
    t0 = time.perf_counter()
    ro = plant.simulate(starts, ctrl.forward, max_steps, stop=plant.terminated)
    return ro, time.perf_counter() - t0


# ---- evaluation ---------------------------------------------------------------------------
def fence_steps(plant, starts):
    """Steps until the rear would cross the fence (not the dock line) backing straight."""
    d = -np.stack([np.cos(starts[:, 3]), np.sin(starts[:, 3])], 1)       # rear's direction
    x, y = starts[:, 0], starts[:, 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        tx = np.where(d[:, 0] > 0, (plant.x_range[1] - x) / d[:, 0], np.inf)
        ty = np.where(d[:, 1] > 0, (plant.y_range[1] - y) / d[:, 1],
                      np.where(d[:, 1] < 0, (plant.y_range[0] - y) / d[:, 1], np.inf))
        tdock = np.where(d[:, 0] < 0, -x / d[:, 0], np.inf)
    t = np.minimum(tx, ty)
    return np.where(t < tdock, t / abs(plant.s), np.inf)


def outcome(plant, final, steps, starts, prefix):
    """Success, failure kinds and final errors of a batch of runs."""
    ok = plant.docked(final)
    pos, ang = plant.dock_errors(final)
    fence = fence_steps(plant, starts) < FENCE_STEPS
    at = plant.at_dock(final)
    out = {
        "success_rate": float(ok.mean()), "n_success": int(ok.sum()),
        "reached_dock_line": int(at.sum()),
        "jackknifed": int(plant.jackknifed(final).sum()),
        "out_of_yard": int(plant.out_of_yard(final).sum()),
        "timeout": int((~plant.terminated(final)).sum()),
        "median_pos_error": float(np.median(pos)),
        "median_angle_error_deg": float(np.degrees(np.median(ang))),
        "median_pos_error_success": float(np.median(pos[ok])) if ok.any() else None,
        "median_angle_error_deg_success":
            float(np.degrees(np.median(ang[ok]))) if ok.any() else None,
        "p90_pos_error_at_dock": float(np.percentile(pos[at], 90)) if at.any() else None,
        "median_steps": float(np.median(steps)),
        "fence_failures": int((fence & ~ok).sum()),
        "other_failures": int((~fence & ~ok).sum()),
    }
    return {f"{prefix}_{k}": v for k, v in out.items()}, ok


def print_failures(plant, starts, runs):
    """One line per failed start: where it started, how each method ended."""
    fence = fence_steps(plant, starts)
    failed = np.zeros(len(starts), bool)
    for _, final in runs:
        failed |= ~plant.docked(final)
    print(f"\nfailed starts ({int(failed.sum())} of {len(starts)}; fence = steps to the fence "
          f"backing straight):")
    print("   #      x      y  th1(deg)  fence  " + "  ".join(f"{n:>26}" for n, _ in runs))
    for b in np.flatnonzero(failed):
        cells = []
        for _, final in runs:
            f = final[b]
            pos, ang = plant.dock_errors(f)
            kind = ("docked" if plant.docked(f) else "jackknifed" if plant.jackknifed(f)
                    else "out of yard" if plant.out_of_yard(f)
                    else "missed" if plant.at_dock(f) else "time out")
            cells.append(f"{kind:>11} {float(pos):5.2f} {np.degrees(float(ang)):6.1f}deg")
        x, y, _, th1 = starts[b]
        print(f"{b:4d} {x:6.2f} {y:6.2f} {np.degrees(th1):9.1f} {fence[b]:6.0f}  "
              + "  ".join(f"{c:>26}" for c in cells))


# ---- plots --------------------------------------------------------------------------------
def plot_paths(plant, paths, steps, ok, title, path):
    """True-plant paths with the truck drawn, failures marked."""
    fig = cp.plot.plot_truck_paths(plant, paths, lengths=steps, every=80, title=title)
    ax = fig.axes[0]
    ends = paths[np.arange(len(paths)), steps]
    if (~ok).any():
        ax.plot(ends[~ok, 0], ends[~ok, 1], "x", color="red", ms=9, mew=2,
                label=f"failed ({int((~ok).sum())} of those shown)")
    ax.plot(paths[:, 0, 0], paths[:, 0, 1], "o", color="k", ms=3, label="start (trailer rear)")
    ax.legend(loc="upper left", fontsize="small", framealpha=0.9)
    cp.plot.save_figure(fig, path)


def plot_dock_errors(plant, runs, path):
    """Final position error against angle error, both methods, success box."""
    fig, ax = cp.plot.new_figure(figsize=(6.5, 4.5))
    for (label, final), marker in zip(runs, ("o", "s")):
        pos, ang = plant.dock_errors(final)
        at = plant.at_dock(final) & ~plant.jackknifed(final)
        ax.plot(np.maximum(pos[at], 1e-3), np.maximum(np.degrees(ang[at]), 1e-2), marker,
                ms=4, alpha=0.7, mfc="none",
                label=f"{label}: {int(at.sum())} reached the dock line, "
                      f"{int((~at).sum())} failed before")
    ax.axvline(1.0, color="crimson", lw=1, ls="--")
    ax.axhline(10.0, color="crimson", lw=1, ls="--", label="success: pos <= 1, angle <= 10 deg")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(5e-3, 400)
    ax.set_xlabel("final position error |(x, y)| (yard units; floor 0.001)")
    ax.set_ylabel("final trailer angle error (deg; floor 0.01)")
    ax.set_title("Errors at the dock line (true plant)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small", loc="upper left")
    cp.plot.save_figure(fig, path)


def plot_controller_training(hist, stages, path):
    """Mean and median cost of each batch per Adam iteration, curriculum stages shaded."""
    fig, ax = cp.plot.new_figure(figsize=(7.5, 4.4))
    it, st = np.asarray(hist["iteration"]), np.asarray(hist["stage"])
    w = 10                                   # moving averages within each stage
    for key, color, label in (("cost", "C0", "mean"), ("median_cost", "C3", "median")):
        f = np.asarray(hist[key])
        ax.plot(it, f, lw=0.7, color=color, alpha=0.4)
        for s in range(len(stages)):
            sel = st == s
            if sel.sum() >= w:
                ax.plot(it[sel][w - 1:], np.convolve(f[sel], np.ones(w) / w, "valid"),
                        color=color, lw=2,
                        label=f"{label} cost of the batch (thin), its moving average over {w}"
                        if s == 0 else None)
    for s, (n, xr, ym, _, T, _) in enumerate(stages):
        sel = it[st == s]
        if sel.size:
            ax.axvspan(sel[0] - 0.5, sel[-1] + 0.5, color=f"C{s % 2 + 1}", alpha=0.08)
            ax.text(sel.mean(), 0.98, f"x {xr[0]:g}-{xr[1]:g}\n|y| <= {ym:g}\nT = {T}",
                    transform=ax.get_xaxis_transform(), ha="center", va="top",
                    fontsize="small")
    ax.set_yscale("log")
    lo, hi = ax.get_ylim()
    ax.set_ylim(lo, hi * 6)                  # room for the stage labels
    ax.set_xlabel("Adam iteration")
    ax.set_ylabel("trajectory cost in the emulator")
    ax.set_title("Controller trained through the frozen emulator (curriculum)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="lower left", fontsize="small", framealpha=0.9)
    cp.plot.save_figure(fig, path)


def plot_comparison(plant, runs, n, path, dpi=120):
    """Both methods from the same n starts, one panel each (the gallery image)."""
    fig, axes = cp.plot.new_figure(2, 1, figsize=(6.0, 6.4))
    (x0, x1), (y0, y1) = plant.x_range, plant.y_range
    for ax, (label, paths, steps, ok) in zip(axes, runs):
        ax.plot([x0, x1, x1, x0, x0], [y0, y0, y1, y1, y0], color="0.4", lw=1)
        ax.plot([0, 0], [-1, 1], color="crimson", lw=4, solid_capstyle="butt")
        for b in range(n):
            p = paths[b, :steps[b] + 1]
            c = f"C{b % 10}"
            ax.plot(p[:, 0], p[:, 1], color=c, lw=0.9)
            idx = sorted(set(range(0, len(p), 100)) | {len(p) - 1})
            cp.plot.draw_truck(ax, plant, p[idx], color=c, alpha=0.8)
            if not ok[b]:
                ax.plot(p[-1, 0], p[-1, 1], "x", color="red", ms=8, mew=2)
        ax.set_aspect("equal")
        ax.set_xlim(-2, 44)
        ax.set_ylim(-15, 15)
        ax.set_title(f"{label}: {int(ok[:n].sum())} of {n} docked", fontsize="medium")
        ax.tick_params(labelsize="small")
    cp.plot.save_figure(fig, path, dpi=dpi)


# ---- main ---------------------------------------------------------------------------------
def main(argv=None):
    args = parse_args(NAME, __doc__.splitlines()[0], argv)
    cfg = QUICK if args.quick else FULL
    t_start, load_start = time.perf_counter(), os.getloadavg()[0]
    plant = cp.TruckBackerUpper()

    emu_settings = {"v": 1, "seed": args.seed,
                    **{k: cfg[k] for k in ("n_train", "emu_hidden", "emu_maxiter")}}
    net, emu_info, emu_hist = cached_model(args, "truck-emulator", emu_settings,
                                     lambda: train_emulator(plant, cfg, args.seed, args.progress))
    model = cp.Dynamics(net, 4, residual=True)
    rmse, rel = emulator_accuracy(net, plant, args.seed)

    ctrl_settings = {"v": 2, "emulator": emu_settings, "seed": args.seed,
                     **{k: cfg[k] for k in ("ctrl_hidden", "lr", "clip", "resample")},
                     "stages": [list(map(float, np.hstack(s))) for s in cfg["stages"]]}
    ctrl, ctrl_info, ctrl_hist = cached_model(args, "truck-controller", ctrl_settings,
                                        lambda: train_controller(model, cfg, args.seed, args.progress))

    starts = plant.sample_starts(cfg["n_starts"], np.random.default_rng([args.seed, 3]),
                                 x_range=cfg["start_x"])
    t0 = time.perf_counter()
    mpc = run_mpc(model, plant, starts, cfg, args.progress)
    mpc_seconds = time.perf_counter() - t0
    ro, ctrl_seconds = run_controller(ctrl, plant, starts, cfg["max_steps"])
    c_final = ro.states[np.arange(len(starts)), ro.steps]
    extra = plant.sample_starts(cfg["n_extra"], np.random.default_rng([args.seed, 4]),
                                x_range=cfg["start_x"])
    ro_x, _ = run_controller(ctrl, plant, extra, cfg["max_steps"])
    x_final = ro_x.states[np.arange(len(extra)), ro_x.steps]

    m_mpc, ok_mpc = outcome(plant, mpc["final"], mpc["steps"], starts, "mpc")
    m_ctrl, ok_ctrl = outcome(plant, c_final, ro.steps, starts, "ctrl")
    m_extra, _ = outcome(plant, x_final, ro_x.steps, extra, "ctrl_extra")
    print_failures(plant, starts, [("(a) MPC", mpc["final"]), ("(b) controller", c_final)])

    n = min(cfg["n_paths"], len(starts))
    plot_paths(plant, mpc["paths"][:n], mpc["steps"][:n], ok_mpc[:n],
               f"(a) MPC through the learned emulator: {100 * ok_mpc.mean():.0f} % of "
               f"{len(starts)} starts docked ({n} shown)",
               os.path.join(args.out, "paths_mpc.png"))
    plot_paths(plant, ro.states[:n], ro.steps[:n], ok_ctrl[:n],
               f"(b) Controller network trained through the emulator: "
               f"{100 * ok_ctrl.mean():.0f} % of {len(starts)} docked ({n} shown)",
               os.path.join(args.out, "paths_controller.png"))
    plot_dock_errors(plant, [("(a) MPC", mpc["final"]), ("(b) controller", c_final)],
                     os.path.join(args.out, "dock_errors.png"))
    if ctrl_hist is not None:
        plot_controller_training(ctrl_hist, cfg["stages"],
                                 os.path.join(args.out, "controller_training.png"))
    if emu_hist is not None:
        fig = cp.plot.plot_training_curves(
            emu_hist, keys=["train_loss", "val_loss"],
            title="Emulator: mean squared error per output (increments)")
        cp.plot.save_figure(fig, os.path.join(args.out, "emulator_training.png"))
    if ctrl_hist is None or emu_hist is None:
        print("note: a cached model has no saved training history; its curve is not drawn "
              "(run with --retrain to redraw it)")
    k = min(20, len(starts))
    plot_comparison(plant, [("(a) MPC", mpc["paths"], mpc["steps"], ok_mpc),
                            ("(b) controller network", ro.states, ro.steps, ok_ctrl)], k,
                    os.path.join(args.out, "comparison.png"), dpi=100)

    metrics = {
        "success_definition": "TruckBackerUpper.docked: x <= 0, not jackknifed, "
                              "|(x, y)| <= 1.0, |th1| <= 10 deg",
        "n_starts": len(starts), "start_x_range": list(cfg["start_x"]),
        **m_mpc, **m_ctrl,
        "ctrl_extra_n_starts": len(extra),
        "ctrl_extra_success_rate": m_extra["ctrl_extra_success_rate"],
        "ctrl_extra_median_pos_error": m_extra["ctrl_extra_median_pos_error"],
        "ctrl_extra_fence_failures": m_extra["ctrl_extra_fence_failures"],
        "fence_starts": int((fence_steps(plant, starts) < FENCE_STEPS).sum()),
        "mpc_seconds": round(mpc_seconds, 2),
        "mpc_ms_per_plant_step": round(1e3 * mpc_seconds / max(mpc["steps"].sum(), 1), 3),
        "mpc_replans": mpc["plans"], "mpc_model_evaluations": mpc["nfev"],
        "mpc_plan_seconds": round(mpc["plan_seconds"], 2),
        "mpc_prediction_error_median": float(np.median(mpc["pred_pos"]))
        if mpc["pred_pos"].size else None,
        "mpc_prediction_error_p90": float(np.percentile(mpc["pred_pos"], 90))
        if mpc["pred_pos"].size else None,
        "mpc_prediction_angle_error_deg_median": float(np.degrees(np.median(mpc["pred_ang"])))
        if mpc["pred_ang"].size else None,
        "ctrl_seconds_closed_loop": round(ctrl_seconds, 3),
        "ctrl_us_per_plant_step": round(1e6 * ctrl_seconds / max(ro.steps.sum(), 1), 2),
        "ctrl_train_seconds": ctrl_info["train_seconds"],
        "ctrl_train_iterations": None if ctrl_hist is None else len(ctrl_hist["cost"]),
        "ctrl_cached": ctrl_info["cached"],
        "emulator_one_step_rmse": rmse.tolist(),
        "emulator_one_step_relative_rmse": rel.tolist(),
        "emulator_train_seconds": emu_info["train_seconds"],
        "emulator_cached": emu_info["cached"],
        "emulator_weights": int(net.n_weights),
        "controller_weights": int(ctrl.n_weights),
        "horizon": cfg["horizon"], "replan_every": cfg["every"],
        "total_seconds": round(time.perf_counter() - t_start, 2),
        "load_average": [round(load_start, 2), round(os.getloadavg()[0], 2)],
    }
    write_metrics(args, NAME, metrics)
    return metrics


if __name__ == "__main__":
    run_main(__file__, main)
