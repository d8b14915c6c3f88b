"""Back-propagation through time: ctrlprop against hand-written numpy BPTT, one run.

Run:  python benchmarks/bench_trajectory.py        (add --quick for a short run)

Model: a 6-32-32-4 tanh MLP as dynamics (4 states, 2 controls), horizon T = 200, cost
J = sum_{t<T} |x_t - g|^2 + 10 |x_T - g|^2 + 0.1 sum_t |u_t|^2; gradient with respect to
all 400 controls.  References measured in the same run, all float64, one BLAS thread:

  hand        textbook numpy BPTT (1-D vectors, fresh temporaries, the @ operator)
  hand-pre    the same with every buffer preallocated (np.matmul(..., out=)) and the
              tanh derivatives computed for all steps at once -- the reference to beat
  hand-dot    hand-pre with np.dot instead of np.matmul (shown for transparency: ctrlprop
              uses np.dot for its small weight products too)

Goals (issue 5): one trajectory at most 1.0x hand-pre; a batch of 32 trajectories below
0.7 ms per trajectory (row B compares with the same batch in hand-pre).  Rows C-G show
ctrlprop alone: a scaled residual model (as fit() leaves one), the rollout alone, the exact
Gauss-Newton Jacobian, a controller-training gradient, and a whole L-BFGS-B solve.
PyTorch (eager) and JAX (jit + lax.scan) are timed when installed, last, on one thread.

Rows A3 and B2 use a float32 model (``cp.Dynamics(net, n, dtype=np.float32)``: float32
rollouts, which run on the numpy engine).
"ctrlprop" is the default path: compiled (numba, ``ctrlprop[fast]``) where a pass is small,
numpy otherwise; "numpy" the same call with ``cp.use_compiled(False)``.  Row A2 is
``cp.bptt(model, x0, U, cost)`` called repeatedly (issue 14: it keeps its objective).
Goal (issue 14): one trajectory, TrajectoryObjective and cp.bptt, at most 0.5x JAX's time.
The compiled path's first-call cost (fresh process, empty and warm numba cache) ends the run.
"""

import sys
import time

import numpy as np

import ctrlprop as cp
from _util import fmt_time, machine_note, table, timeit, import_jax, first_call_cost

QUICK = "--quick" in sys.argv
MIN_T = 0.1 if QUICK else 0.4
T, N, M, H = 200, 4, 2, 32
Q, QF, R = 1.0, 10.0, 0.1


def layers(net):
    """(W (out, in), b) per layer of an MLP, read from ctrlprop's labelled weights."""
    out = []
    for L in range(1, len(net.levels)):
        src, dst = list(net.levels[L - 1]), list(net.levels[L])
        W, b = np.zeros((len(dst), len(src))), np.zeros(len(dst))
        for k, (s, d) in enumerate(net.weight_labels):
            if d in dst:
                if s == "bias":
                    b[dst.index(d)] = net.weights[k]
                else:
                    W[dst.index(d), src.index(s)] = net.weights[k]
        out.append((W, b))
    return out


def hand(P, x0, U, g):
    """Textbook BPTT on 1-D vectors: returns (J, dJ/dU)."""
    (W1, b1), (W2, b2), (W3, b3) = P
    xs, h1s, h2s, x = [x0], [], [], x0
    for t in range(len(U)):
        h1 = np.tanh(W1 @ np.concatenate([x, U[t]]) + b1)
        h2 = np.tanh(W2 @ h1 + b2)
        x = W3 @ h2 + b3
        xs.append(x), h1s.append(h1), h2s.append(h2)
    E = np.array(xs[1:]) - g
    J = Q * (E[:-1] ** 2).sum() + QF * (E[-1] ** 2).sum() + R * (U ** 2).sum()
    gU = 2 * R * U
    lam = 2 * QF * E[-1]
    for t in range(len(U) - 1, -1, -1):
        d2 = (W3.T @ lam) * (1 - h2s[t] ** 2)
        d1 = (W2.T @ d2) * (1 - h1s[t] ** 2)
        gz = W1.T @ d1
        gU[t] += gz[N:]
        if t:
            lam = gz[:N] + 2 * Q * E[t - 1]
    return J, gU


class HandPre:
    """Preallocated BPTT for a batch of B (B = 0: one trajectory as 1-D vectors)."""

    def __init__(self, P, B=0, mm=np.matmul):
        (self.W1, self.b1), (self.W2, self.b2), (self.W3, self.b3) = P
        self.mm, self.B = mm, B
        sh = (B,) if B else ()
        if B:          # row-major batch: h = z @ W^T
            self.F = [np.ascontiguousarray(W.T) for W, _ in P]
            self.Bk = [np.ascontiguousarray(W) for W, _ in P]
        else:
            self.F = [W for W, _ in P]
            self.Bk = [np.ascontiguousarray(W.T) for W, _ in P]
        self.Z = np.empty((T + 1,) + sh + (N + M,))
        self.H1, self.H2 = np.empty((T,) + sh + (H,)), np.empty((T,) + sh + (H,))
        self.D1, self.D2 = np.empty_like(self.H1), np.empty_like(self.H2)
        self.GZ = np.empty((T,) + sh + (N + M,))
        self.g1, self.g2 = np.empty(sh + (H,)), np.empty(sh + (H,))
        self.lam, self.C = np.empty(sh + (N,)), np.empty((T + 1,) + sh + (N,))
        self.gU = np.empty((T,) + sh + (M,))
        self.y = np.empty(sh + (N,))

    def __call__(self, x0, U, g):
        mm, B = self.mm, self.B
        (F1, F2, F3), (K1, K2, K3) = self.F, self.Bk
        b1, b2, b3 = self.b1, self.b2, self.b3
        Z, H1, H2 = self.Z, self.H1, self.H2
        Z[0, ..., :N] = x0
        Z[:T, ..., N:] = U
        for t in range(T):
            h1, h2, zn = H1[t], H2[t], Z[t + 1, ..., :N]
            (mm(Z[t], F1, out=h1) if B else mm(F1, Z[t], out=h1))
            h1 += b1
            np.tanh(h1, out=h1)
            (mm(h1, F2, out=h2) if B else mm(F2, h1, out=h2))
            h2 += b2
            np.tanh(h2, out=h2)
            if B and mm is np.dot:        # np.dot needs a contiguous output
                mm(h2, F3, out=self.y)
                np.add(self.y, b3, out=zn)
            else:
                (mm(h2, F3, out=zn) if B else mm(F3, h2, out=zn))
                zn += b3
        E = Z[1:, ..., :N] - g
        J = Q * (E[:-1] ** 2).sum() + QF * (E[-1] ** 2).sum() + R * (U ** 2).sum()
        C = self.C
        np.multiply(E, 2 * Q, out=C[1:])
        np.multiply(E[-1], 2 * QF, out=C[T])
        D1, D2 = self.D1, self.D2
        np.multiply(H1, H1, out=D1)
        np.subtract(1.0, D1, out=D1)
        np.multiply(H2, H2, out=D2)
        np.subtract(1.0, D2, out=D2)
        lam, g1, g2, GZ = self.lam, self.g1, self.g2, self.GZ
        lam[...] = C[T]
        for t in range(T - 1, -1, -1):
            (mm(lam, K3, out=g2) if B else mm(K3, lam, out=g2))
            g2 *= D2[t]
            (mm(g2, K2, out=g1) if B else mm(K2, g2, out=g1))
            g1 *= D1[t]
            gz = GZ[t]
            (mm(g1, K1, out=gz) if B else mm(K1, g1, out=gz))
            np.add(gz[..., :N], C[t], out=lam)
        np.multiply(U, 2 * R, out=self.gU)
        self.gU += GZ[..., N:]
        return J, self.gU


def torch_time(P, x0, U, g):
    """PyTorch float64 BPTT time, or None without torch."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)
    Pt = [(torch.tensor(W), torch.tensor(b)) for W, b in P]
    x0t, gt = torch.tensor(x0), torch.tensor(g)
    Ut = torch.tensor(U, requires_grad=True)

    def run():
        Ut.grad = None
        x, J = x0t, 0.0
        for t in range(T):
            h = torch.cat([x, Ut[t]])
            for i, (W, b) in enumerate(Pt):
                h = W @ h + b
                h = torch.tanh(h) if i < 2 else h
            x = h
            J = J + (QF if t == T - 1 else Q) * ((x - gt) ** 2).sum()
        J = J + R * (Ut ** 2).sum()
        J.backward()
    return timeit(run, MIN_T)


def jax_time(P, x0, U, g):
    """JAX jit + lax.scan float64 BPTT time, or None without jax."""
    mods = import_jax()
    if mods is None:
        return None
    jax, jnp = mods
    Pj = [(jnp.asarray(W), jnp.asarray(b)) for W, b in P]
    w = jnp.where(jnp.arange(T) == T - 1, QF, Q)

    def J(U):
        def step(x, u):
            h = jnp.concatenate([x, u])
            for i, (W, b) in enumerate(Pj):
                h = W @ h + b
                h = jnp.tanh(h) if i < 2 else h
            return h, h
        _, xs = jax.lax.scan(step, jnp.asarray(x0), U)
        return (w[:, None] * (xs - g) ** 2).sum() + R * (U ** 2).sum()
    f = jax.jit(jax.value_and_grad(J))
    Uj = jnp.asarray(U)
    return timeit(lambda: jax.block_until_ready(f(Uj)), MIN_T)


def alternating(fun, a, b):
    """fun called on a and b in turn, so that no result can be reused from the last call."""
    box = [a, b]

    def run():
        box.reverse()
        return fun(box[0])
    return run


def main():
    rng = np.random.default_rng(0)
    net = cp.Network.mlp([N + M, H, H, N], hidden="tanh", output="linear", seed=1)
    P = layers(net)
    model = cp.Dynamics(net, N)
    g = np.full(N, 0.5)
    # ctrlprop's cost has the lecture's 1/2 (J = 1/2 sum x'Qx + ...): doubled weights give
    # the hand-written J above
    cost = cp.TrajectoryCost(goal=g, Q=2 * Q, Qf=2 * QF, R=2 * R)
    x0 = rng.standard_normal(N)
    U = 0.3 * rng.standard_normal((T, M))
    U2 = U + 0.01
    obj = cp.TrajectoryObjective(model, x0, T, cost)
    pre, dot = HandPre(P), HandPre(P, mm=np.dot)
    # every implementation must agree before it is timed
    J0, g0 = obj.value_and_grad(U)
    for name, f in (("hand", hand), ("hand-pre", pre), ("hand-dot", dot)):
        J1, g1 = f(P, x0, U, g) if f is hand else f(x0, U, g)
        if not (np.isclose(J0, J1, rtol=1e-12) and np.allclose(g0, g1, rtol=1e-9, atol=1e-12)):
            raise SystemExit(f"{name} disagrees with ctrlprop: J {J1} vs {J0}")
    rows = []

    def numpy_path(fn):
        def run(*a):
            with cp.use_compiled(False):
                return fn(*a)
        return run

    def both(fn, a, b):
        """(default path, numpy path) seconds per call of fn alternating a and b."""
        return (timeit(alternating(fn, a, b), MIN_T),
                timeit(alternating(numpy_path(fn), a, b), MIN_T))

    def cp_row(name, t, t_np, ref=None, hand_t=None):
        return [name, fmt_time(t), fmt_time(t_np) if t_np else "-", fmt_time(hand_t) if hand_t else "-", "-",
                "-", f"{t / ref:.2f}x" if ref else "-",
                f"{t / hand_t:.2f}x" if hand_t else "-"]
    with cp.blas_threads(1):
        t_cp, t_cp_np = both(obj, U.ravel(), U2.ravel())
        t_hand = timeit(alternating(lambda u: hand(P, x0, u, g), U, U2), MIN_T)
        t_pre = timeit(alternating(lambda u: pre(x0, u, g), U, U2), MIN_T)
        t_dot = timeit(alternating(lambda u: dot(x0, u, g), U, U2), MIN_T)
        rows.append(["A. one trajectory, dJ/dU", fmt_time(t_cp), fmt_time(t_cp_np),
                     fmt_time(t_hand), fmt_time(t_pre), fmt_time(t_dot), f"{t_cp / t_pre:.2f}x",
                     f"{t_cp / t_hand:.2f}x"])
        Jb, gb = cp.bptt(model, x0, U, cost)
        if not (Jb == J0 and np.array_equal(gb, g0)):
            raise SystemExit("cp.bptt disagrees with TrajectoryObjective")
        t_bp, t_bp_np = both(lambda u: cp.bptt(model, x0, u, cost), U, U2)
        rows.append(cp_row("A2. cp.bptt called repeatedly", t_bp, t_bp_np, t_pre))
        obj32 = cp.TrajectoryObjective(cp.Dynamics(net, N, dtype=np.float32), x0, T, cost)
        J32, g32 = obj32.value_and_grad(U)
        if not (abs(J32 - J0) < 1e-5 * abs(J0)
                and np.abs(g32 - g0).max() < 1e-4 * np.abs(g0).max()):
            raise SystemExit("float32 rollout disagrees with float64")
        t_32 = timeit(alternating(obj32, U.ravel(), U2.ravel()), MIN_T)
        rows.append(cp_row("A3. one trajectory, float32 model", t_32, None, t_pre))

        B = 32
        X0 = rng.standard_normal((B, N))
        UB = 0.3 * rng.standard_normal((B, T, M))
        objB = cp.TrajectoryObjective(model, X0, T, cost)
        preB, dotB = HandPre(P, B), HandPre(P, B, mm=np.dot)
        JB, gB = objB.value_and_grad(UB)
        Jh, gh = preB(X0, UB.transpose(1, 0, 2), g)
        if not (np.isclose(JB.sum(), Jh, rtol=1e-12)
                and np.allclose(gB, gh.transpose(1, 0, 2), rtol=1e-9, atol=1e-12)):
            raise SystemExit("batched hand-pre disagrees with ctrlprop")
        tb_cp = timeit(alternating(objB, UB.ravel(), UB.ravel() + 0.01), MIN_T) / B
        UBt = UB.transpose(1, 0, 2).copy()
        tb_pre = timeit(alternating(lambda u: preB(X0, u, g), UBt, UBt + 0.01), MIN_T) / B
        tb_dot = timeit(alternating(lambda u: dotB(X0, u, g), UBt, UBt + 0.01), MIN_T) / B
        rows.append([f"B. batch of {B}, per trajectory", fmt_time(tb_cp), "-", "-",
                     fmt_time(tb_pre), fmt_time(tb_dot), f"{tb_cp / tb_pre:.2f}x", "-"])
        objB32 = cp.TrajectoryObjective(cp.Dynamics(net, N, dtype=np.float32), X0, T, cost)
        tb_32 = timeit(alternating(objB32, UB.ravel(), UB.ravel() + 0.01), MIN_T) / B
        rows.append(cp_row(f"B2. batch of {B}, float32 model", tb_32, None, tb_pre))

        net2 = net.copy()                 # a learned model as fit() leaves it: scaled, residual
        net2.set_scaling(rng.standard_normal(N + M), rng.uniform(0.5, 2, N + M),
                         rng.standard_normal(N), rng.uniform(0.05, 0.2, N))
        obj2 = cp.TrajectoryObjective(cp.Dynamics(net2, N, residual=True), x0, T, cost)
        t_sc, t_sc_np = both(obj2, U.ravel(), U2.ravel())
        rows.append(cp_row("C. scaled + residual model", t_sc, t_sc_np, t_pre, t_hand))

        t_val, t_val_np = both(obj.value, U.ravel(), U2.ravel())
        rows.append(cp_row("D. rollout + cost only", t_val, t_val_np, t_pre))

        Tj = 50 if QUICK else 200
        objJ = cp.TrajectoryObjective(model, x0, Tj, cost)
        uj = 0.3 * rng.standard_normal(Tj * M)
        t_jac = timeit(alternating(objJ.jacobian, uj, uj + 0.01), MIN_T)
        rows.append(cp_row(f"E. exact Jacobian ({Tj * (N + M)}x{Tj * M})", t_jac, None))

        ctrl = cp.Network.mlp([N, 16, M], hidden="tanh", output="tanh", seed=2)
        objC = cp.ControllerObjective(model, ctrl, X0, T, cost)
        v = ctrl.weights
        t_ctl = timeit(alternating(objC, v, v + 0.01), MIN_T)
        rows.append(cp_row(f"F. controller 4-16-2, {B} starts", t_ctl, None))

        t0 = time.perf_counter()
        res = cp.optimize_trajectory(model, x0, T, cost, bounds=(-2, 2))
        t_opt = time.perf_counter() - t0
        with cp.use_compiled(False):
            t0 = time.perf_counter()
            res_np = cp.optimize_trajectory(model, x0, T, cost, bounds=(-2, 2))
            t_opt_np = time.perf_counter() - t0
        rows.append(cp_row(f"G. optimize_trajectory L-BFGS-B ({res.nit}/{res_np.nit} it)",
                           t_opt, t_opt_np))
        note = machine_note()
        # last: torch and jax start thread pools that would disturb the other timings
        t_torch, t_jax = torch_time(P, x0, U, g), jax_time(P, x0, U, g)
    for r in rows:
        r += ["-", "-", "-"]
    rows[0][-3:] = [fmt_time(t_torch) if t_torch else "n/a", fmt_time(t_jax) if t_jax else "n/a",
                    f"{t_cp / t_jax:.2f}x" if t_jax else "n/a"]
    if t_jax:
        rows[1][-1] = f"{t_bp / t_jax:.2f}x"

    print(f"BPTT, 6-32-32-4 tanh dynamics, T={T}, float64; {note}")
    table(rows, ["case", "ctrlprop", "numpy", "hand", "hand-pre", "hand-dot", "vs hand-pre",
                 "vs hand", "torch", "jax", "vs jax"])
    print(f"\nGoal A: ctrlprop / hand-pre <= 1.0x -> {t_cp / t_pre:.2f}x "
          f"({'met' if t_cp <= t_pre else 'NOT met'})")
    print(f"Goal B: per trajectory in a batch of {B} < 0.7 ms -> {fmt_time(tb_cp).strip()} "
          f"({'met' if tb_cp < 0.7e-3 else 'NOT met'})"
          + (f"; JAX one trajectory here: {fmt_time(t_jax).strip()}" if t_jax else ""))
    if t_jax:
        for what, t in (("TrajectoryObjective", t_cp), ("cp.bptt", t_bp)):
            print(f"Goal (issue 14): {what} <= 0.5x JAX -> {t / t_jax:.2f}x "
                  f"({'met' if t <= 0.5 * t_jax else 'NOT met'})")
    missing = [k for k, t in (("torch", t_torch), ("jax", t_jax)) if t is None]
    if missing:
        print(f"({' and '.join(missing)} not installed: skipped)")
    fc = first_call_cost()
    if fc:
        print(f"compiled path, first calls in a fresh process: {fc['cold']:.2f} s with an "
              f"empty numba cache (compiling), {fc['warm']:.2f} s from the disk cache, "
              f"{fc['numpy']:.2f} s with the compiled path off")


if __name__ == "__main__":
    main()
