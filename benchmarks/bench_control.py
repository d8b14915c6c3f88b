"""Control optimisation through a trained model: the 2-link arm's inverse kinematics.

Run:  python benchmarks/bench_control.py        (add --quick for a short run)

Problem (issue 4): a 2-32-32-2 tanh network is trained (ctrlprop.fit, fixed
seed, at the start of the run -- nothing is cached) on the forward kinematics
of a planar arm with links 1.0 and 0.8.  Targets are the hand positions of
postures drawn uniformly within the joint bounds q1 in [-pi, pi], q2 in [0, pi]
(so every target is reachable); every solver starts at q = (0, pi/2) and must
stay within those bounds.  Success means an error under 0.01 on the TRUE
kinematics (the model's own error counts against it).

Rows, all measured in this run on the same targets:
  batch-lm             optimize_controls on all targets at once (vectorized projected LM)
  batch-lm restarts=1  ... plus one random start per target in the same batch
  batch-lm screen=16   ... 16 screened candidates per target, the best 2 are run
  L-BFGS-B one-by-one  scipy minimize per target, gradient by the input-only backward pass
  L-BFGS-B finite-diff scipy minimize per target, scipy's 2-point finite differences
  L-BFGS-B joint       one scipy minimize over all 2K variables (the objective is separable)
  trf one-by-one       scipy least_squares per target with the exact Jacobian
Ratios are time / time of "L-BFGS-B one-by-one".
"""

import sys
import time

import numpy as np
from scipy.optimize import Bounds, minimize

import ctrlprop as cp
from _util import fmt_time, machine_note, table, timeit

QUICK = "--quick" in sys.argv
LO, HI = np.array([-np.pi, 0.0]), np.array([np.pi, np.pi])
Q0 = np.array([0.0, np.pi / 2])
BOUNDS = list(zip(LO, HI))
TOL = 0.01


def train_model(arm):
    """The 2-32-32-2 tanh forward model, trained now with a fixed seed."""
    Q, P = arm.training_data(2000, np.random.default_rng(0))
    net = cp.Network.mlp([2, 32, 32, 2], hidden="tanh", seed=0)
    t0 = time.perf_counter()
    cp.fit(net, Q, P, maxiter=800 if QUICK else 3000)
    dt = time.perf_counter() - t0
    Qt = arm.sample_postures(20000, np.random.default_rng(99))
    err = np.linalg.norm(net.forward(Qt) - arm.fk(Qt), axis=1)
    print(f"model: trained in {dt:.1f} s; |model - true| over the workspace: mean {err.mean():.4f},"
          f" 99% {np.quantile(err, 0.99):.4f}, max {err.max():.4f}")
    return net


def lbfgs_each(net, T, fd=False):
    """scipy L-BFGS-B per target (objectives built outside the timed call)."""
    objs = [cp.ControlObjective(net, t) for t in T]

    def run():
        U = np.empty((len(T), 2))
        with cp.blas_threads(1):
            for k, obj in enumerate(objs):
                if fd:                    # scipy's 2-point finite differences of E
                    r = minimize(obj.value, Q0, method="L-BFGS-B", bounds=BOUNDS)
                else:
                    r = minimize(obj, Q0, jac=True, method="L-BFGS-B", bounds=BOUNDS)
                U[k] = r.x
        return U
    return run


def lbfgs_joint(net, T):
    """One L-BFGS-B over all 2K variables: E is the sum of the K independent objectives."""
    obj = cp.ControlObjective(net, T)
    K = len(T)
    b = Bounds(np.tile(LO, K), np.tile(HI, K))

    def run():
        with cp.blas_threads(1):
            return minimize(obj, np.tile(Q0, K), jac=True, method="L-BFGS-B", bounds=b,
                            options={"maxiter": 2000}).x.reshape(K, 2)
    return run


def via_optimize(net, T, **kw):
    """optimize_controls on the targets; returns the controls."""
    return lambda: cp.optimize_controls(net, T, u0=Q0, bounds=BOUNDS, **kw).controls


def measure(rows, arm, T, min_time):
    """Time each solver and score its controls; returns the printed rows and the times."""
    out, times, success = [], {}, {}
    for name, fn in rows:
        U = fn()
        t = timeit(fn, min_time=min_time, repeat=3)
        times[name] = t
        true_err = np.linalg.norm(arm.fk(U) - T, axis=1)
        success[name] = np.mean(true_err < TOL)
        inside = np.all((U >= LO) & (U <= HI))
        out.append([name, fmt_time(t), fmt_time(t / len(T)), None,
                    f"{100 * np.mean(true_err < TOL):5.1f}%", "yes" if inside else "NO"])
    ref = times.get("L-BFGS-B one-by-one")
    for r in out:
        r[3] = f"{times[r[0]] / ref:6.3f}" if ref else "-"
    return out, times, success


def main():
    print(__doc__.split("\n\n")[0])
    print(machine_note())
    arm = cp.PlanarArm((1.0, 0.8), limits=[[-np.pi, np.pi], [0.0, np.pi]])
    net = train_model(arm)
    header = ["solver", "time", "per target", "ratio", "success", "in bounds"]

    K = 200
    T = arm.fk(arm.sample_postures(K, np.random.default_rng(1)))
    rows = [("batch-lm", via_optimize(net, T)),
            ("batch-lm restarts=1", via_optimize(net, T, restarts=1)),
            ("batch-lm screen=16 restarts=1", via_optimize(net, T, screen=16, restarts=1)),
            ("L-BFGS-B one-by-one", lbfgs_each(net, T)),
            ("L-BFGS-B finite-diff", lbfgs_each(net, T, fd=True)),
            ("L-BFGS-B joint", lbfgs_joint(net, T)),
            ("trf one-by-one", via_optimize(net, T, method="trf"))]
    print(f"\n{K} targets, start q = (0, pi/2); success = |fk_true(q) - target| < {TOL}")
    out, times, ok200 = measure(rows, arm, T, 0.2 if QUICK else 0.6)
    table(out, header)
    meet = [n for n in times if times[n] <= 0.04 and ok200[n] >= 0.94]

    K = 2000 if QUICK else 10000
    T = arm.fk(arm.sample_postures(K, np.random.default_rng(2)))
    rows = [("batch-lm", via_optimize(net, T)),
            ("batch-lm restarts=1", via_optimize(net, T, restarts=1))]
    print(f"\n{K} targets (ratio: time / (200-target L-BFGS-B one-by-one time * {K // 200}))")
    out, times_big, ok_big = measure(rows, arm, T, 0.5 if QUICK else 2.0)
    for r in out:
        r[3] = f"{times_big[r[0]] / (times['L-BFGS-B one-by-one'] * K / 200):6.3f}"
    table(out, header)
    print("\ngoal 1, 200 targets in <= 0.04 s with >= 94% success, met by: "
          + (", ".join(meet) or "none"))
    print("goal 2, 10,000 targets in < 2 s: " + ", ".join(
        f"{n} {times_big[n]:.3f} s ({100 * ok_big[n]:.1f}%)" for n in times_big)
        + (f"  [measured on {K} targets]" if K != 10000 else ""))


if __name__ == "__main__":
    main()
