"""Ensemble value + weight gradient against one member (issue 11's goal).

Goal: an ensemble of E = 5 costs at most 2x one member at small sizes (6-32-32-4, K = 256)
and at most E x at large ones.  Measured in one run, rounds interleaved:

* one member: ``WeightObjective`` (the training objective of a Network: forward, residual,
  delta recursion), float64, on the engine's numpy path (the compiled path does not take
  these sizes);
* the ensemble: ``EnsembleObjective`` (E members' losses, one stacked pass);
* a loop over E WeightObjectives (what training E networks separately costs);
* PyTorch, when installed: an mbrl-lib-style ensemble (weights (E, in, out), ``torch.bmm``)
  value and gradient by autograd, float64.

Run: ``python benchmarks/bench_ensemble.py`` (a quiet machine; nothing else running).
"""

import sys

import numpy as np

import ctrlprop as cp
from ctrlprop.objectives.ensemble import EnsembleObjective
from _util import fmt_time, machine_note, table, timeit_many

E = 5
CASES = [("small", [6, 32, 32, 4], 256), ("medium", [6, 128, 128, 4], 1024),
         ("large", [6, 512, 512, 4], 4096)]


def torch_ensemble(sizes, X, Y):
    """Value and gradient of an mbrl-lib-style ensemble (batched matmuls) by autograd."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    Ws = [torch.randn(E, a, b, generator=g, dtype=torch.float64, requires_grad=True)
          for a, b in zip(sizes[:-1], sizes[1:])]
    bs = [torch.zeros(E, 1, b, dtype=torch.float64, requires_grad=True) for b in sizes[1:]]
    x = torch.tensor(np.broadcast_to(X, (E,) + X.shape).copy())
    y = torch.tensor(Y)

    def run():
        h = x
        for i, (W, b) in enumerate(zip(Ws, bs)):
            h = torch.baddbmm(b, h, W)
            if i < len(Ws) - 1:
                h = torch.tanh(h)
        loss = 0.5 * ((h - y) ** 2).sum()
        grads = torch.autograd.grad(loss, Ws + bs)
        return float(loss), grads
    return run


def main():
    rng = np.random.default_rng(0)
    rows = []
    with cp.blas_threads(1):
        for name, sizes, K in CASES:
            X = rng.standard_normal((K, sizes[0]))
            Y = rng.standard_normal((K, sizes[-1]))
            net = cp.Network.mlp(sizes, seed=0)
            ens = cp.Ensemble(net, E, seed=1)
            one = cp.WeightObjective(ens.member(0), X, Y)
            w1 = one.x0.copy()
            objs = [cp.WeightObjective(m, X, Y) for m in ens.members()]
            xs = [o.x0.copy() for o in objs]
            eobj = EnsembleObjective(ens, X, Y)
            we = eobj.x0.copy()
            fns = [lambda: one(w1), lambda: eobj(we),
                   lambda: [o(x) for o, x in zip(objs, xs)]]
            tr = torch_ensemble(sizes, X, Y)
            if tr is not None:
                fns.append(tr)
            with cp.use_compiled(False):
                t = timeit_many(fns, min_time=1.0 if K < 4096 else 3.0)
            r = [f"{name} {'-'.join(map(str, sizes))}, K={K}", fmt_time(t[0]), fmt_time(t[1]),
                 f"{t[1] / t[0]:.2f}x", fmt_time(t[2]), f"{t[2] / t[1]:.2f}x"]
            r += [fmt_time(t[3]), f"{t[3] / t[1]:.2f}x"] if tr is not None else ["-", "-"]
            rows.append(r)
    print(f"Ensemble of E={E}: value + weight gradient of the training loss (float64)")
    print(machine_note())
    table(rows, ["case", "one member", f"ensemble E={E}", "ens/one (goal <=2x small, <=5x)",
                 f"{E} separate", "separate/ens", "torch bmm ens", "torch/ens"])


if __name__ == "__main__":
    sys.exit(main())
