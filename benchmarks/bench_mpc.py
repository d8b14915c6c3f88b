"""MPC latency: milliseconds per control step, compiled path against the numpy engine.

Run:  python benchmarks/bench_mpc.py        (add --quick for a short run)

Cases, each solved by scipy's "L-BFGS-B" and by ctrlprop's "dense-lbfgsb" (the same method
without scipy's per-call setup, :mod:`ctrlprop.solvers.lbfgsb`), each run with the default
path (compiled where small: numba, ``ctrlprop[fast]``) and with ``cp.use_compiled(False)``,
interleaved, each twice (the best run's median is kept):

  pendulum   the pendulum scenario's model (``scenarios/pendulum_swingup.py``: the DAG
             [theta, theta_dot, u] -> sin, cos -> 24 relu -> 2 increments with skips, its
             physics written into the skip weights, so nothing is trained here), its
             swing-up cost (custom running and terminal terms), H = 30, at most 30
             iterations per step, 200 steps from hanging on the true plant (``cp.Pendulum``).
             The time to upright is reported: it must be the same on both paths and
             with both methods.
  pendulum-v1  a 4-64-64-3 tanh model of the shape a Pendulum-v1 model has ([cos, sin,
             theta_dot, u] -> next state; random weights: only the latency is measured),
             a quadratic cost, H = 30, at most 30 iterations per step, 100 steps; the
             model itself is the simulator.

Columns: median and 95th percentile of the per-step planning time (``MPCResult.
time_per_step``).  Goal (issue 14): pendulum swing-up at most 1 ms median and 2 ms p95 with
the same time to upright.

A second table takes a swing-up step apart (compiled path): one evaluation of the H = 30
objective (value and gradient: rollout, cost, BPTT) and its parts, and what
``scipy.optimize.minimize(method="L-BFGS-B")`` costs around the evaluations -- one
iteration of a solve with 30 variables on a function that costs nothing, with ``Bounds``
and without -- so a step's time can be read as about ``solver + nfev * evaluation``; then
the same for dense-lbfgsb and its per-iteration direction (Cauchy point and subspace step,
10 stored pairs) on numpy and compiled.
"""

import os
import sys

import numpy as np
from scipy.optimize import Bounds, minimize

import ctrlprop as cp
from ctrlprop.core import compiled
from ctrlprop.solvers.lbfgsb import lbfgsb, search_direction as sd_numpy
from _util import machine_note, table, timeit

QUICK = "--quick" in sys.argv
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "scenarios"))
import pendulum_swingup as ps  # noqa: E402


def pendulum_case(method):
    plant = cp.Pendulum(wrap=False)
    cfg = dict(ps.FULL, steps=60 if QUICK else 200)
    model = cp.Dynamics(ps.exact_network(plant, cfg["hidden"]), 2, residual=True)
    x0 = np.array([np.pi, 0.0])

    def run():
        res = ps.swing_up(model, plant, x0, cfg, method=method)
        return res.time_per_step, plant.time_to_upright(res.states, ps.TOL)
    return run


def pendulum_v1_case(method):
    net = cp.Network.mlp([4, 64, 64, 3], hidden="tanh", seed=3)
    net.weights = 0.3 * net.weights
    model = cp.Dynamics(net, 3, residual=True)
    H, steps = 30, 30 if QUICK else 100
    cost = cp.TrajectoryCost(goal=[1.0, 0.0, 0.0], Q=[1.0, 1.0, 0.1], R=0.001)

    def run():
        res = cp.mpc(model, model.step, np.array([-1.0, 0.0, 0.0]), steps, H, cost=cost,
                     bounds=Bounds([-2.0], [2.0]), method=method, maxiter=30)
        return res.time_per_step, float("nan")
    return run


def step_parts():
    """Rows (part, microseconds) of one swing-up MPC step's costs (see the docstring)."""
    plant = cp.Pendulum(wrap=False)
    model = cp.Dynamics(ps.exact_network(plant, ps.FULL["hidden"]), 2, residual=True)
    H = ps.FULL["horizon"]
    obj = cp.TrajectoryObjective(model, np.array([np.pi, 0.0]), H, ps.SWINGUP_COST)
    us = [np.full(H, ps.FIRST_PLAN), np.full(H, 0.9 * ps.FIRST_PLAN)]
    k = [0]

    def evaluate():                  # alternate two plans: every call rolls out afresh
        k[0] ^= 1
        obj(us[k[0]])
    S = np.zeros((H + 1, 2, 1))
    S[:, 0, 0] = np.linspace(np.pi, 0.0, H + 1)
    U = np.full((H, 1, 1), ps.FIRST_PLAN)
    bound = ps.SWINGUP_COST.bind(2, 1, H, 1)

    def quad(x):
        return float(x @ x), 2.0 * x
    x0, lo, hi = np.full(H, 0.5), np.full(H, -2.0), np.full(H, 2.0)
    box = Bounds(lo, hi)
    rows = [("objective value + gradient (one evaluation)", timeit(evaluate)),
            ("  of which the cost terms (BoundCost.evaluate)", timeit(
                lambda: bound.evaluate(S, U))),
            ("L-BFGS-B, 1 iteration, 30 bounded variables, f = x.x",
             timeit(lambda: minimize(quad, x0, jac=True, method="L-BFGS-B", bounds=box,
                                     options=dict(maxiter=1)))),
            ("  the same without bounds", timeit(
                lambda: minimize(quad, x0, jac=True, method="L-BFGS-B",
                                 options=dict(maxiter=1)))),
            ("dense-lbfgsb (ctrlprop.solvers.lbfgsb), the same bounded problem",
             timeit(lambda: lbfgsb(quad, x0, lo, hi, maxiter=1)))]
    S = 0.1 * np.random.default_rng(0).standard_normal((10, H))  # 10 pairs of f = x.x
    state = (x0, 2.0 * x0, lo, hi, S, 2.0 * S, 10, 2.0, 0.0, np.empty((H, H)), np.empty(H),
             np.empty(H))
    with cp.use_compiled(False):
        rows.append(("  its direction (search_direction), numpy",
                     timeit(lambda: sd_numpy(*state))))
    kern = compiled.extension("ctrlprop.solvers.lbfgsb_kernels")
    if kern is not None:
        rows.append(("  its direction, compiled", timeit(lambda: kern.search_direction(*state))))
    return [[name, f"{1e6 * t:.1f}"] for name, t in rows]


METHODS = ("L-BFGS-B", "dense-lbfgsb")


def main():
    rows, out = [], {}
    cases = [("pendulum swing-up (scenario model)", pendulum_case),
             ("4-64-64-3 (Pendulum-v1 shape)", pendulum_v1_case)]
    for name, case in cases:
        runs = {m: case(m) for m in METHODS}
        for run in runs.values():
            run()                               # warm up: compile, caches
        best = {}
        for _ in range(2):
            for method, run in runs.items():
                for path in ("compiled", "numpy"):
                    with cp.use_compiled(path == "compiled"):
                        t, up = run()
                    ms = 1e3 * np.asarray(t)
                    med = float(np.median(ms))
                    key = (method, path)
                    if key not in best or med < best[key][0]:
                        best[key] = (med, float(np.percentile(ms, 95)), up)
        out[name] = best
        for (method, path), (med, p95, up) in best.items():
            rows.append([name, method, path, f"{med:.2f}", f"{p95:.2f}",
                         "-" if np.isnan(up) else f"{up:.2f} s"])
    print(__doc__.split("\n")[0])
    print(machine_note())
    table(rows, ["case", "method", "path", "median ms/step", "p95 ms/step", "time to upright"])
    print("\nOne swing-up step taken apart (compiled path unless marked)")
    table(step_parts(), ["part", "us"])
    sw = out[cases[0][0]]
    ups = {v[2] for v in sw.values()}
    for method in METHODS:
        c = sw[(method, "compiled")]
        ok = c[0] <= 1.0 and c[1] <= 2.0 and len(ups) == 1
        print(f"Goal (issue 14), {method}: swing-up <= 1 ms median, <= 2 ms p95, the same time "
              f"to upright -> {c[0]:.2f} ms, {c[1]:.2f} ms, {c[2]:.2f} s (all runs: "
              f"{sorted(ups)}) ({'met' if ok else 'NOT met'})")


if __name__ == "__main__":
    main()
