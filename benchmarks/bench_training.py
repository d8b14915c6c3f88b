"""Training a forward model: ctrlprop.fit against scikit-learn's MLPRegressor, in the same run.

Run:  python benchmarks/bench_training.py            (add --quick to skip the slow rows)

Problem (issue 3): forward kinematics of a 2-link arm, link lengths 1.0 and 0.8,
q1 ~ U[-pi, pi], q2 ~ U[0, pi], hand position (x, y) as the target; 5000
training and 1000 test samples (seeded); a 2-32-32-2 tanh network.

Reference: ``MLPRegressor(hidden_layer_sizes=(32, 32), activation="tanh",
solver="lbfgs", random_state=0)``: scikit-learn's defaults (max_iter=200,
alpha=1e-4) with the BLAS libraries' default threads ("sk") and with one thread
("sk1"), and the same with max_iter=1000 ("sk1k"), which reaches about the
accuracy quoted in the issue.  ctrlprop runs with its defaults (scale=True,
threads chosen by problem size -- one here --, L-BFGS-B with maxcor=50), seed 0.

The goal -- a test RMSE at most scikit-learn's in at most half its time -- is
checked as *time to scikit-learn's test RMSE*: one recorded L-BFGS-B run gives
the first iteration n whose test RMSE is at most the reference's, then
``fit(maxiter=n)`` is timed from scratch.  Also shown: fixed iteration budgets,
Adam, Newton-CG and trust-ncg (exact Hessian-vector products), least_squares
'trf' with the matrix-free Jacobian (Gauss-Newton), and least_squares 'lm'
(MINPACK on the dense 10000 x 1218 Jacobian: ~10 s per iteration at this size,
so only its first iteration).

Timing: wall clock of the whole fit call, after a warm-up fit of each library;
the fast fits are repeated and the best time is kept (fits are deterministic,
so every repeat reaches the same RMSE); ratios are against "sk1" in this run.
"""

import os
import sys
import time
import warnings

import numpy as np

import ctrlprop as cp
from _util import machine_note, table

QUICK = "--quick" in sys.argv
L1, L2 = 1.0, 0.8


def arm_data(n, rng):
    """(q1, q2) -> hand position of the 2-link arm."""
    q1 = rng.uniform(-np.pi, np.pi, n)
    q2 = rng.uniform(0.0, np.pi, n)
    X = np.c_[q1, q2]
    Y = np.c_[L1 * np.cos(q1) + L2 * np.cos(q1 + q2), L1 * np.sin(q1) + L2 * np.sin(q1 + q2)]
    return X, Y


def rmse(P, Y):
    return float(np.sqrt(np.mean((P - Y) ** 2)))


def best_of(repeat, fit_once):
    """Run ``fit_once() -> (seconds, iters, train RMSE, test RMSE)`` and keep the best time."""
    runs = [fit_once() for _ in range(repeat)]
    return min(runs, key=lambda r: r[0])


def sklearn_fit(X, Y, Xt, Yt, max_iter, threads):
    """Fit MLPRegressor; returns (seconds, iterations, train RMSE, test RMSE)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPRegressor
    m = MLPRegressor(hidden_layer_sizes=(32, 32), activation="tanh", solver="lbfgs",
                     random_state=0, max_iter=max_iter)
    with warnings.catch_warnings(), cp.blas_threads(threads):
        warnings.simplefilter("ignore", ConvergenceWarning)
        t0 = time.perf_counter()
        m.fit(X, Y)
        t = time.perf_counter() - t0
    return t, m.n_iter_, rmse(m.predict(X), Y), rmse(m.predict(Xt), Yt)


def ctrl_fit(X, Y, Xt, Yt, method, **kw):
    """cp.fit from a fresh seeded network; returns (seconds, iterations, train RMSE, test RMSE)."""
    net = cp.Network.mlp([2, 32, 32, 2], hidden="tanh", seed=0)
    t0 = time.perf_counter()
    res = cp.fit(net, X, Y, method=method, **kw)
    t = time.perf_counter() - t0
    return t, res.nit, rmse(net.forward(X), Y), rmse(net.forward(Xt), Yt)


def test_rmse_curve(X, Y, Xt, Yt, maxiter):
    """Test RMSE after every L-BFGS-B iteration of one fit (weights recorded by a callback)."""
    net = cp.Network.mlp([2, 32, 32, 2], hidden="tanh", seed=0)
    ws = []
    cp.fit(net, X, Y, maxiter=maxiter, callback=lambda info: ws.append(info.x))
    return np.array([rmse(net.forward(Xt, weights=w), Yt) for w in ws])


def main():
    rng = np.random.default_rng(0)
    X, Y = arm_data(5000, rng)
    Xt, Yt = arm_data(1000, rng)
    print(machine_note())
    print(f"2-link arm forward kinematics, 5000 train / 1000 test, 2-32-32-2 tanh"
          f"{' (quick)' if QUICK else ''}\n")
    sklearn_fit(X[:200], Y[:200], Xt, Yt, 5, None)        # warm-up (imports, first calls)
    ctrl_fit(X[:200], Y[:200], Xt, Yt, "L-BFGS-B", maxiter=5)
    R = 1 if QUICK else 3                                 # repeats of the fast fits

    rows, res = [], {}

    def add(key, label, config, threads, r, repeat):
        res[key] = r
        rows.append([key, label, config, threads, f"{r[0]:7.2f} s", f"{repeat}",
                     str(r[1]), f"{1e3 * r[0] / max(r[1], 1):6.2f}", f"{r[2]:.5f}",
                     f"{r[3]:.5f}"])

    sk = lambda it, th: (lambda: sklearn_fit(X, Y, Xt, Yt, it, th))       # noqa: E731
    cf = lambda m, **kw: (lambda: ctrl_fit(X, Y, Xt, Yt, m, **kw))        # noqa: E731
    add("sk", "sklearn MLPRegressor", "defaults (max_iter=200)", "default",
        best_of(1 if QUICK else 2, sk(200, None)), 1 if QUICK else 2)
    add("sk1", "sklearn MLPRegressor", "defaults (max_iter=200)", "1", best_of(R, sk(200, 1)), R)
    refs = ["sk", "sk1"]
    if not QUICK:
        add("sk1k", "sklearn MLPRegressor", "max_iter=1000", "1", best_of(R, sk(1000, 1)), R)
        refs.append("sk1k")

    curve = test_rmse_curve(X, Y, Xt, Yt, 1500)
    goal_rows = {}
    for ref in refs:
        hit = np.flatnonzero(curve <= res[ref][3])
        if hit.size:
            n = int(hit[0])
            key = f"to_{ref}"
            if n not in goal_rows:
                add(key, "ctrlprop fit L-BFGS-B", f"maxiter={n} (first <= {ref}'s test RMSE)",
                    "auto=1", best_of(R, cf("L-BFGS-B", maxiter=n)), R)
                goal_rows[n] = key
            goal_rows[ref] = goal_rows[n]
    for n in (100, 200) + (() if QUICK else (1000,)):
        add(f"lb{n}", "ctrlprop fit L-BFGS-B", f"maxiter={n}", "auto=1",
            best_of(R, cf("L-BFGS-B", maxiter=n)), R)
    add("adam", "ctrlprop fit adam", "100 epochs, lr 1e-3, batch 128", "auto=1",
        best_of(R, cf("adam", maxiter=100)), R)
    if not QUICK:
        add("lb50t", "ctrlprop fit L-BFGS-B", "maxiter=50", f"{os.cpu_count()} (forced)",
            best_of(1, cf("L-BFGS-B", maxiter=50, threads=os.cpu_count())), 1)
        add("ncg", "ctrlprop fit Newton-CG", "maxiter=50, xtol=1e-12", "auto=1",
            best_of(1, cf("Newton-CG", maxiter=50, options=dict(xtol=1e-12))), 1)
        add("tncg", "ctrlprop fit trust-ncg", "maxiter=100", "auto=1",
            best_of(1, cf("trust-ncg", maxiter=100)), 1)
        add("trf", "ctrlprop fit trf (Gauss-Newton)", "matrix-free J, 25 evaluations", "auto=1",
            best_of(1, cf("trf", maxiter=25, options=dict(jacobian="operator",
                                                           tr_options=dict(maxiter=100)))), 1)
        add("lm", "ctrlprop fit lm (MINPACK)", "dense J, 3 evaluations", "auto=1",
            best_of(1, cf("lm", maxiter=3)), 1)

    ref_t = res["sk1"][0]
    for r in rows:
        r.append(f"{res[r[0]][0] / ref_t:5.2f}")
    table(rows, ["row", "fit", "configuration", "threads", "time", "best of", "iters",
                 "ms/iter", "train RMSE", "test RMSE", "time / sk1"])

    print("\nGoal: a test RMSE at most scikit-learn's in at most half its time (same run)")
    for ref in refs:
        if ref not in goal_rows:
            print(f"  NOT MET  {ref}: ctrlprop did not reach its test RMSE "
                  f"{res[ref][3]:.5f} within 1500 iterations")
            continue
        a = goal_rows[ref]
        ta, tb, ea, eb = res[a][0], res[ref][0], res[a][3], res[ref][3]
        ok = ea <= eb and ta <= 0.5 * tb
        print(f"  {'MET    ' if ok else 'NOT MET'}  vs {ref:5s} ({res[ref][1]} iterations): "
              f"{a} reaches RMSE {ea:.5f} <= {eb:.5f} in {ta:.2f} s vs {tb:.2f} s "
              f"(ratio {ta / tb:.2f})")
    if not QUICK:
        thread_table()


def thread_table():
    """L-BFGS-B time per evaluation on 1 thread and on all cores, around the automatic rule."""
    print(f"\nBLAS threads inside L-BFGS-B (cp.fit, 10 iterations): time per evaluation; "
          f"rule: 1 thread below {cp.threads.SMALL_WORK:.0e} flops per evaluation")
    rng = np.random.default_rng(1)
    rows = []
    for sizes, K in (([2, 32, 32, 2], 5000), ([10, 128, 128, 8], 4096),
                     ([10, 128, 128, 8], 16384), ([10, 256, 256, 8], 16384)):
        net0 = cp.Network.mlp(sizes, seed=0)
        X = rng.standard_normal((K, sizes[0]))
        Y = np.tanh(X @ rng.standard_normal((sizes[0], sizes[-1])))
        t = {}
        for th in (1, os.cpu_count()):
            t0 = time.perf_counter()
            r = cp.fit(net0.copy(), X, Y, maxiter=10, threads=th)
            t[th] = (time.perf_counter() - t0) / r.nfev
        auto = cp.auto_threads(net0.n_weights, K)
        best = min(t, key=t.get)
        rows.append(["-".join(map(str, sizes)), str(K), f"{6 * net0.n_weights * K:.1e}",
                     f"{t[1] * 1e3:8.2f} ms", f"{t[os.cpu_count()] * 1e3:8.2f} ms",
                     "1" if auto == 1 else "all", "1" if best == 1 else "all"])
    table(rows, ["network", "K", "flops/eval", "1 thread", f"{os.cpu_count()} threads",
                 "auto", "faster here"])


if __name__ == "__main__":
    main()
