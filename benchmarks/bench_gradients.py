"""Value + gradient of a sum-of-squares loss: ctrlprop against a hand-written numpy MLP.

Run:  python benchmarks/bench_gradients.py        (add --quick for a short run)

Cases (all float64, CPU):
  A. 10-128-128-8 tanh MLP, batch 4096, value + weight gradient
  B. 6-32-32-4 tanh MLP, batch 256, value + weight gradient
  C. 6-32-32-4 tanh MLP, one sample, value + input gradient (weights frozen)
  D. a DAG with skip connections and about the weights of A, against A's MLP

The hand-written reference is measured in the same run, with fresh temporaries
("hand") and with preallocated buffers ("hand-pre"); ratios are ctrlprop / hand-pre.
"ctrlprop trace" is the public trace API (net.trace + backward); "WeightObjective"
is the scipy-facing objective that cp.fit minimises; "trace, numpy" is the trace with the
compiled path off (``cp.use_compiled(False)``; the default runs small passes compiled when
numba, ``ctrlprop[fast]``, is installed).
PyTorch and JAX are timed too when they are installed.

E. ``ControlObjective(u)`` (value + dE/du, 2 of the 6 inputs are controls, one sample)
against the same function hand-written in numpy (preallocated) and under JAX jit.
Goal (issue 14): at most 0.5x hand-written numpy, and faster than JAX.

F. float32 against float64: case A's value + weight gradient through ``WeightObjective``
(``dtype=np.float32``: what ``cp.fit(..., dtype=np.float32)`` minimises), PyTorch and JAX
in both precisions.  Goals (issue 14): float64 at most JAX float64's time, float32 at most
PyTorch float32's.
"""

import sys

import numpy as np

import ctrlprop as cp
from _util import fmt_time, machine_note, table, timeit, timeit_many, first_call_cost

QUICK = "--quick" in sys.argv
MIN_T = 0.1 if QUICK else 0.5


def mlp_blocks(net):
    """The hand-written reference's (W, b) per layer, read from ctrlprop's labelled weights."""
    out = []
    for L in range(1, len(net.levels)):
        src, dst = net.levels[L - 1], net.levels[L]
        W = np.empty((len(src), len(dst)))
        b = np.empty(len(dst))
        for k, (s, d) in enumerate(net.weight_labels):
            if d in set(dst.tolist()):
                j = int(np.flatnonzero(dst == d)[0])
                if s == "bias":
                    b[j] = net.weights[k]
                else:
                    W[int(np.flatnonzero(src == s)[0]), j] = net.weights[k]
        out.append((W, b))
    return out


def hand_fresh(layers, X, T):
    """Textbook numpy MLP, fresh arrays: returns (E, [gW, gb, ...])."""
    hs = [X]
    for W, b in layers[:-1]:
        hs.append(np.tanh(hs[-1] @ W + b))
    W, b = layers[-1]
    D = hs[-1] @ W + b - T
    E = 0.5 * np.vdot(D, D)
    grads = []
    for i in range(len(layers) - 1, -1, -1):
        grads += [hs[i].T @ D, D.sum(0)]
        if i:
            D = (D @ layers[i][0].T) * (1 - hs[i] ** 2)
    return E, grads


class HandPre:
    """The same MLP with every buffer preallocated (the reference to beat)."""

    def __init__(self, layers, K):
        self.layers = layers
        self.H = [np.empty((K, W.shape[1])) for W, _ in layers]
        self.G = [np.empty((K, W.shape[0])) for W, _ in layers]
        self.tmp = [np.empty((K, W.shape[0])) for W, _ in layers]
        n = sum(W.size + b.size for W, b in layers)
        self.grad = np.empty(n)
        self.views, off = [], 0
        for W, b in layers:
            self.views.append((self.grad[off:off + W.size].reshape(W.shape),
                               self.grad[off + W.size:off + W.size + b.size]))
            off += W.size + b.size

    def value_grad(self, X, T, want_w=True):
        L, H = self.layers, self.H
        prev = X
        for i, (W, b) in enumerate(L):
            np.matmul(prev, W, out=H[i])
            H[i] += b
            if i < len(L) - 1:
                np.tanh(H[i], out=H[i])
            prev = H[i]
        D = np.subtract(H[-1], T, out=H[-1])
        E = 0.5 * np.vdot(D, D)
        for i in range(len(L) - 1, -1, -1):
            src = X if i == 0 else H[i - 1]
            if want_w:
                gW, gb = self.views[i]
                np.matmul(src.T, D, out=gW)
                np.sum(D, axis=0, out=gb)
            if i == 0 and want_w:
                break
            G = self.G[i]
            np.matmul(D, L[i][0].T, out=G)
            if i == 0:
                return E, G
            t = self.tmp[i]
            np.multiply(src, src, out=t)
            np.subtract(1.0, t, out=t)
            G *= t
            D = G
        return E, self.grad


_DY = {}


def ctrl_value_grad(net, X, T, wrt="weights"):
    """ctrlprop through its public trace API (the residual buffer reused, as an objective does)."""
    tr = net.trace(X)
    dY = _DY.get(T.shape)
    if dY is None:
        dY = _DY[T.shape] = np.empty(T.shape)
    tr.outputs(out=dY)
    dY -= T
    return 0.5 * np.vdot(dY, dY), tr.backward(dY, wrt=wrt)


def torch_case(sizes, X, T, wrt, dtype="float64"):
    """Time a PyTorch MLP (float64 or float32), or None when torch is missing."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)
    mods = []
    tdt = getattr(torch, dtype)
    for a, b in zip(sizes[:-1], sizes[1:]):
        mods += [torch.nn.Linear(a, b).to(tdt), torch.nn.Tanh()]
    model = torch.nn.Sequential(*mods[:-1])
    Xt = torch.tensor(X, dtype=tdt, requires_grad=(wrt == "inputs"))
    Tt = torch.tensor(T, dtype=tdt)
    if wrt == "inputs":
        for p in model.parameters():
            p.requires_grad_(False)

    def run():
        if Xt.grad is not None:
            Xt.grad = None
        model.zero_grad(set_to_none=True)
        E = 0.5 * ((model(Xt) - Tt) ** 2).sum()
        E.backward()
    return timeit(run, MIN_T)


def jax_case(sizes, X, T, wrt, dtype="float64"):
    """Time a JAX jit MLP (float64 or float32), or None when jax is missing."""
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None
    jax.config.update("jax_enable_x64", True)
    rng = np.random.default_rng(0)
    params = [(jnp.asarray(rng.standard_normal((a, b)) / np.sqrt(a), dtype),
               jnp.zeros(b, dtype)) for a, b in zip(sizes[:-1], sizes[1:])]
    T = jnp.asarray(T, dtype)

    def loss(params, x):
        h = x
        for W, b in params[:-1]:
            h = jnp.tanh(h @ W + b)
        W, b = params[-1]
        return 0.5 * jnp.sum((h @ W + b - T) ** 2)
    f = jax.jit(jax.value_and_grad(loss, argnums=0 if wrt == "weights" else 1))
    Xj = jnp.asarray(X, dtype)
    return timeit(lambda: jax.block_until_ready(f(params, Xj)), MIN_T)


def compare(name, sizes, K, wrt, rows):
    rng = np.random.default_rng(0)
    net = cp.Network.mlp(sizes, hidden="tanh", output="linear", seed=1)
    X = rng.standard_normal((K, sizes[0]))
    T = rng.standard_normal((K, sizes[-1]))
    layers = mlp_blocks(net)
    pre = HandPre(layers, K)
    # the three implementations must agree before they are timed
    E0, g0 = ctrl_value_grad(net, X, T, wrt)
    E1, g1 = pre.value_grad(X, T, want_w=(wrt == "weights"))
    if not np.isclose(E0, E1, rtol=1e-12):
        raise SystemExit(f"{name}: loss mismatch {E0} vs {E1}")
    if wrt == "inputs" and not np.allclose(g0, g1, rtol=1e-10, atol=1e-12):
        raise SystemExit(f"{name}: input gradient mismatch")
    # ctrlprop and the hand-written references are timed in interleaved rounds
    def trace_numpy():
        with cp.use_compiled(False):
            return ctrl_value_grad(net, X, T, wrt)
    fns = [lambda: pre.value_grad(X, T, want_w=(wrt == "weights")),
           lambda: ctrl_value_grad(net, X, T, wrt), trace_numpy]
    t_obj = None
    if wrt == "weights":                     # the scipy-facing objective that cp.fit uses
        obj = cp.WeightObjective(net, X, T)
        E2, g2 = obj(net.weights)
        if not (np.isclose(E2, E1, rtol=1e-12) and np.allclose(g2, g0, rtol=1e-10, atol=1e-12)):
            raise SystemExit(f"{name}: WeightObjective disagrees with the trace API")
        fns += [lambda: obj(net.weights), lambda: hand_fresh(layers, X, T)]
    times = timeit_many(fns, 4 * MIN_T)
    t_pre, t_cp, t_cpn = times[:3]
    t_obj, t_hand = (times[3], times[4]) if wrt == "weights" else (None, None)
    t_torch = torch_case(sizes, X, T, wrt)
    t_jax = jax_case(sizes, X, T, wrt)
    rows.append([name, fmt_time(t_cp), fmt_time(t_cpn), fmt_time(t_obj) if t_obj else "-",
                 fmt_time(t_hand) if t_hand else "-", fmt_time(t_pre),
                 f"{t_cp / t_pre:.2f}x", f"{t_obj / t_pre:.2f}x" if t_obj else "-",
                 fmt_time(t_torch) if t_torch else "n/a", fmt_time(t_jax) if t_jax else "n/a"])
    return t_cp


def skip_dag(n_in, h, n_out, seed=1):
    """Two hidden layers plus skips input->layer2, input->output, layer1->output."""
    a, b, c = n_in, n_in + h, n_in + 2 * h
    inp, l1, l2, out = range(0, a), range(a, b), range(b, c), range(c, c + n_out)
    edges = [(i, j) for i in inp for j in l1] + [(i, j) for i in l1 for j in l2]
    edges += [(i, j) for i in l2 for j in out] + [(i, j) for i in inp for j in l2]
    edges += [(i, j) for i in inp for j in out] + [(i, j) for i in l1 for j in out]
    return cp.Network.from_edges(n_in, edges, ["tanh"] * (2 * h) + ["linear"] * n_out,
                                 list(out), seed=seed)


def main():
    print(__doc__.split("\n")[0])
    print(machine_note())
    rows = []
    compare("A 10-128-128-8 K=4096 dE/dw", [10, 128, 128, 8], 4096, "weights", rows)
    compare("B 6-32-32-4 K=256 dE/dw", [6, 32, 32, 4], 256, "weights", rows)
    compare("C 6-32-32-4 K=1 dE/dx", [6, 32, 32, 4], 1, "inputs", rows)
    table(rows, ["case", "ctrlprop trace", "trace, numpy", "WeightObjective", "hand", "hand-pre",
                 "ratio trace", "ratio obj", "torch", "jax"])
    print("ratios are ctrlprop / hand-pre (hand-written numpy with preallocated buffers)")
    control_objective_case()
    float32_case()

    # D: skip-connection DAG with about the MLP's weight count
    mlp = cp.Network.mlp([10, 128, 128, 8], seed=1)
    h = 128
    while skip_dag(10, h, 8).n_weights > mlp.n_weights:
        h -= 1
    dag = skip_dag(10, h, 8)
    rng = np.random.default_rng(0)
    X, T = rng.standard_normal((4096, 10)), rng.standard_normal((4096, 8))
    t_mlp, t_dag = timeit_many([lambda: ctrl_value_grad(mlp, X, T),
                                lambda: ctrl_value_grad(dag, X, T)], 4 * MIN_T)
    print()
    table([[f"MLP 10-128-128-8 ({mlp.n_weights} w)", fmt_time(t_mlp), "1.00x"],
           [f"skip DAG h={h} ({dag.n_weights} w)", fmt_time(t_dag), f"{t_dag / t_mlp:.2f}x"]],
          ["D  K=4096 value + dE/dw", "time", "vs MLP"])


class HandControl:
    """E(u) = 1/2 |f([x, u]) - t|^2 and dE/du for a tanh MLP, one sample, preallocated."""

    def __init__(self, layers, x, t):
        self.L, self.t, n = layers, t, len(x)
        self.z = np.empty(n + 2)
        self.z[:n] = x
        self.n = n
        self.h = [np.empty(W.shape[1]) for W, _ in layers]

    def __call__(self, u):
        z, h = self.z, self.h
        z[self.n:] = u
        prev = z
        for i, (W, b) in enumerate(self.L):
            np.dot(prev, W, out=h[i])
            h[i] += b
            if i < len(self.L) - 1:
                np.tanh(h[i], out=h[i])
            prev = h[i]
        d = h[-1] - self.t
        E = 0.5 * np.dot(d, d)
        for i in range(len(self.L) - 1, 0, -1):
            d = np.dot(self.L[i][0], d)
            d *= 1.0 - h[i - 1] * h[i - 1]
        return E, np.dot(self.L[0][0], d)[self.n:]


def control_objective_case():
    """Row E: ControlObjective(u), one sample, against hand-written numpy and JAX jit."""
    rng = np.random.default_rng(0)
    net = cp.Network.mlp([6, 32, 32, 4], hidden="tanh", output="linear", seed=1)
    x, t = rng.standard_normal(4), rng.standard_normal(4)
    obj = cp.ControlObjective(net, t, inputs=x, control=[4, 5])
    hand = HandControl(mlp_blocks(net), x, t)
    u1, u2 = rng.standard_normal(2), rng.standard_normal(2)
    E0, g0 = obj(u1)
    E1, g1 = hand(u1)
    if not (np.isclose(E0, E1, rtol=1e-12) and np.allclose(g0, g1, rtol=1e-10, atol=1e-13)):
        raise SystemExit("E: hand-written control objective disagrees with ControlObjective")
    box = [u1, u2]

    def alt(f):
        def run():
            box.reverse()
            return f(box[0])
        return run

    def numpy_path(u):
        with cp.use_compiled(False):
            return obj(u)
    t_cp, t_np, t_hand = timeit_many([alt(obj), alt(numpy_path), alt(hand)], 4 * MIN_T)
    t_jax = None
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        jax = None
    if jax is not None:
        jax.config.update("jax_enable_x64", True)
        P = [(jnp.asarray(W), jnp.asarray(b)) for W, b in mlp_blocks(net)]
        xj, tj = jnp.asarray(x), jnp.asarray(t)

        def E(u):
            h = jnp.concatenate([xj, u])
            for W, b in P[:-1]:
                h = jnp.tanh(h @ W + b)
            W, b = P[-1]
            return 0.5 * jnp.sum((h @ W + b - tj) ** 2)
        f = jax.jit(jax.value_and_grad(E))
        Ej, gj = f(jnp.asarray(u1))
        if not np.allclose(np.asarray(gj), g0, rtol=1e-10, atol=1e-13):
            raise SystemExit("E: JAX control objective disagrees with ControlObjective")
        box[:] = [jnp.asarray(u1), jnp.asarray(u2)]
        t_jax = timeit(alt(lambda u: jax.block_until_ready(f(u))), MIN_T)
    print()
    table([["E ControlObjective(u), 6-32-32-4, one sample", fmt_time(t_cp), fmt_time(t_np),
            fmt_time(t_hand), f"{t_cp / t_hand:.2f}x",
            fmt_time(t_jax) if t_jax else "n/a", f"{t_cp / t_jax:.2f}x" if t_jax else "n/a"]],
          ["case", "ctrlprop", "numpy path", "hand-pre", "vs hand", "jax", "vs jax"])
    print(f"Goal (issue 14): ControlObjective <= 0.5x hand-written numpy -> "
          f"{t_cp / t_hand:.2f}x ({'met' if t_cp <= 0.5 * t_hand else 'NOT met'})"
          + (f"; faster than JAX jit -> {t_cp / t_jax:.2f}x "
             f"({'met' if t_cp < t_jax else 'NOT met'})" if t_jax else ""))
    fc = first_call_cost()
    if fc:
        print(f"compiled path, first calls in a fresh process: {fc['cold']:.2f} s with an "
              f"empty numba cache (compiling), {fc['warm']:.2f} s from the disk cache, "
              f"{fc['numpy']:.2f} s with the compiled path off")


def float32_case():
    """Row F: case A in float64 and float32 (WeightObjective, PyTorch, JAX)."""
    sizes, K = [10, 128, 128, 8], 4096
    rng = np.random.default_rng(0)
    net = cp.Network.mlp(sizes, hidden="tanh", output="linear", seed=1)
    X, T = rng.standard_normal((K, sizes[0])), rng.standard_normal((K, sizes[-1]))
    o64 = cp.WeightObjective(net, X, T)
    o32 = cp.WeightObjective(net, X, T, dtype=np.float32)
    (E64, g64), (E32, g32) = o64(net.weights), o32(net.weights)
    err = np.abs(g32 - g64).max() / np.abs(g64).max()
    if not (abs(E32 - E64) < 1e-5 * E64 and err < 1e-4):
        raise SystemExit(f"F: float32 objective disagrees with float64 (gradient {err:.1e})")
    t64, t32 = timeit_many([lambda: o64(net.weights), lambda: o32(net.weights)], 4 * MIN_T)
    ref = {(lib, dt): f(sizes, X, T, "weights", dt) for lib, f in (("torch", torch_case),
                                                                    ("jax", jax_case))
           for dt in ("float64", "float32")}
    fmt = lambda t: fmt_time(t) if t else "n/a"             # noqa: E731
    rows = [[f"F {'-'.join(map(str, sizes))} K={K} {dt}", fmt_time(t), fmt(ref["torch", dt]),
             fmt(ref["jax", dt]), f"{t / ref['torch', dt]:.2f}x" if ref["torch", dt] else "n/a",
             f"{t / ref['jax', dt]:.2f}x" if ref["jax", dt] else "n/a"]
            for dt, t in (("float64", t64), ("float32", t32))]
    print()
    table(rows, ["case (value + dE/dw)", "WeightObjective", "torch", "jax", "vs torch",
                 "vs jax"])
    print(f"float32 gradient vs float64: {err:.1e} relative")
    if ref["jax", "float64"]:
        print(f"Goal (issue 14): float64 <= JAX float64 -> {t64 / ref['jax', 'float64']:.2f}x "
              f"({'met' if t64 <= ref['jax', 'float64'] else 'NOT met'})")
    if ref["torch", "float32"]:
        print(f"Goal (issue 14): float32 <= torch float32 -> "
              f"{t32 / ref['torch', 'float32']:.2f}x "
              f"({'met' if t32 <= ref['torch', 'float32'] else 'NOT met'})")


if __name__ == "__main__":
    main()
