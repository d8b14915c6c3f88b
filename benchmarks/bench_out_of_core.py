"""Out-of-core Adam (issue 13): epoch time on data in memory, in an np.memmap and in zarr.

Run:  python benchmarks/bench_out_of_core.py          (--rows N to change the size,
                                                       --quick for 200,000 rows)

Problem: a 6-64-64-4 tanh network fitted by ``cp.fit(method="adam")`` to K = 750,000
rows (inputs uniform in [-1, 1]^6, targets a random tanh teacher plus noise), batch 128,
``options={"block_size": 65536}`` for every row of the table, so every row visits the
same minibatches in the same order and ends with the same weights bit for bit (checked).
The data sets: ndarrays in memory; float64 np.memmap files in a temporary directory; zarr
arrays there (chunks of one block, zarr's default codec); a dask array over the zarr
arrays (chunks of one block).

An epoch is one Adam pass over the blocks plus the epoch's loss (one forward pass over
every block, ``history["fun"]``): the time is the mean of the differences of
``history["time"]`` over the epochs, so the one-off statistics pass is not in it (it is
in "outside epochs", with the first and last loss).  The configurations are run in turns
(round-robin, best of the rounds) so that they meet the same machine conditions.  The goal: out-of-core epoch speed at
least 0.8x the in-memory one (ratio = in-memory epoch time / out-of-core epoch time).

The memmap and zarr files were just written, so they are in the OS page cache (this
machine has far more memory than the data): the table measures the cost of reading
through the out-of-core path (block reads, dtype conversion, zarr decompression), not of
a cold disk.
"""

import os
import shutil
import sys
import tempfile
import time
import warnings

import numpy as np

import ctrlprop as cp
from _util import machine_note, table

ROWS = 200_000 if "--quick" in sys.argv else 750_000
if "--rows" in sys.argv:
    ROWS = int(sys.argv[sys.argv.index("--rows") + 1])
EPOCHS, ROUNDS, L, B = 2, 2, 65536, 128
GOAL = 0.8


def data(K):
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (K, 6))
    W1, W2 = rng.standard_normal((6, 16)), rng.standard_normal((16, 4)) / 4
    Y = np.tanh(X @ W1) @ W2 + 0.01 * rng.standard_normal((K, 4))
    return X, Y


def run(Xa, Ya):
    """(epoch seconds, setup seconds, weights) of one fit."""
    net = cp.Network.mlp([6, 64, 64, 4], hidden="tanh", seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cp.ConvergenceWarning)
        t0 = time.perf_counter()
        res = cp.fit(net, Xa, Ya, method="adam", maxiter=EPOCHS, seed=0,
                     options=dict(block_size=L, batch_size=B))
        total = time.perf_counter() - t0
    h = res.history["time"]
    epoch = float(np.mean(np.diff(h)))
    return epoch, total - (h[-1] - h[0]), res.x


def main():
    X, Y = data(ROWS)
    tmp = tempfile.mkdtemp(prefix="ctrlprop-bench-ooc-")
    try:
        configs = {"in memory (ndarray)": (X, Y)}
        mm = []
        for name, A in (("X", X), ("Y", Y)):
            m = np.memmap(os.path.join(tmp, name + ".f64"), dtype=np.float64, mode="w+",
                          shape=A.shape)
            m[:] = A
            m.flush()
            mm.append(np.memmap(m.filename, dtype=np.float64, mode="r", shape=A.shape))
        configs["np.memmap (float64 file)"] = tuple(mm)
        try:
            import zarr
            zs = []
            for name, A in (("X", X), ("Y", Y)):
                z = zarr.open_array(os.path.join(tmp, name + ".zarr"), mode="w",
                                    shape=A.shape, chunks=(L, A.shape[1]), dtype=A.dtype)
                z[:] = A
                zs.append(zarr.open_array(os.path.join(tmp, name + ".zarr"), mode="r"))
            configs["zarr (default codec)"] = tuple(zs)
            try:
                import dask.array as da
                configs["dask over zarr"] = tuple(da.from_zarr(z) for z in zs)
            except ImportError:
                print("dask not installed: its row is skipped")
        except ImportError:
            print("zarr not installed (pip install 'ctrlprop[zarr]'): its rows are skipped")

        best = {k: (np.inf, np.inf, None) for k in configs}
        for _ in range(ROUNDS):
            for k, (Xa, Ya) in configs.items():
                e, s, x = run(Xa, Ya)
                b = best[k]
                best[k] = (min(b[0], e), min(b[1], s), x)
        ref_e, _, ref_x = best["in memory (ndarray)"]
        rows = []
        for k, (e, s, x) in best.items():
            same = "yes" if np.array_equal(x, ref_x) else "NO"
            ratio = ref_e / e
            goal = "-" if k.startswith("in memory") else \
                ("met" if ratio >= GOAL else "NOT met")
            rows.append([k, f"{e:.2f} s", f"{ROWS / e / 1e3:.0f}k", f"{s:.2f} s",
                         f"{ratio:.2f}x", goal, same])
        print(f"6-64-64-4 tanh, K = {ROWS:,} rows, batch {B}, block_size {L}, "
              f"{EPOCHS} epochs x best of {ROUNDS} rounds; {machine_note()}")
        table(rows, ["data", "epoch", "rows/s", "outside epochs", "speed vs memory",
                     f"goal >= {GOAL}x", "same weights"])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
