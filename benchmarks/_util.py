"""Timing helpers shared by the benchmark scripts (plain scripts, not tests)."""

import os
import time

import numpy as np


def timeit(fn, min_time=0.3, repeat=5):
    """Best-of-``repeat`` mean seconds per call of ``fn()``, each round lasting ~min_time/repeat."""
    fn()
    n, t = 1, 0.0
    while True:                                   # calibrate the inner count
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        t = time.perf_counter() - t0
        if t > min_time / repeat / 4:
            break
        n *= 4
    n = max(1, int(n * (min_time / repeat) / max(t, 1e-9)))
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t0) / n)
    return best


def timeit_many(fns, min_time=0.5, repeat=7):
    """Best-of-``repeat`` seconds per call for each of ``fns``, their rounds interleaved.

    Alternating the candidates round by round exposes them to the same machine
    conditions, so their ratios stay stable when the load drifts.
    """
    counts = []
    for fn in fns:                                # calibrate each inner count
        fn()
        n = 1
        while True:
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            t = time.perf_counter() - t0
            if t > min_time / repeat / len(fns) / 4:
                break
            n *= 4
        counts.append(max(1, int(n * (min_time / repeat / len(fns)) / max(t, 1e-9))))
    best = [np.inf] * len(fns)
    for _ in range(repeat):
        for i, (fn, n) in enumerate(zip(fns, counts)):
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            best[i] = min(best[i], (time.perf_counter() - t0) / n)
    return best


def fmt_time(s):
    """Seconds as a short human string."""
    if s < 1e-3:
        return f"{s * 1e6:8.1f} us"
    if s < 1:
        return f"{s * 1e3:8.2f} ms"
    return f"{s:8.2f} s "


def table(rows, header):
    """Print rows (lists of str) under header as an aligned plain-text table."""
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths))
    print(line)
    print("-" * len(line))
    for r in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)))


def machine_note():
    """One line describing the BLAS threading in effect."""
    try:
        from threadpoolctl import threadpool_info
        info = [f"{d['internal_api']}:{d['num_threads']}" for d in threadpool_info()]
    except ImportError:
        info = ["threadpoolctl not installed"]
    return f"cores={os.cpu_count()} blas pools={info}"


def import_jax():
    """``(jax, jax.numpy)`` set up for a fair CPU reference (float64, one thread), or None
    when jax is not installed."""
    os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false "
                                       "intra_op_parallelism_threads=1")
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None
    jax.config.update("jax_enable_x64", True)
    return jax, jnp


_FIRST_CALL = r"""
import time
t0 = time.perf_counter()
import numpy as np, ctrlprop as cp
t1 = time.perf_counter()
net = cp.Network.mlp([6, 32, 32, 4], hidden="tanh", seed=1)
tr = net.trace(np.ones((1, 6)))
tr.backward(np.ones((1, 4)))
tr.jacobian_inputs()
cp.ControlObjective(net, np.zeros(4), inputs=np.zeros(4), control=[4, 5])(np.zeros(2))
cp.bptt(cp.Dynamics(net, 4), np.zeros(4), np.zeros((20, 2)))
t2 = time.perf_counter()
print(t1 - t0, t2 - t1)
"""


def first_call_cost():
    """(cold, warm) seconds of the compiled path's first calls in a fresh process (a trace,
    its backward pass and Jacobian, a ControlObjective and cp.bptt): cold with an empty
    numba cache (every kernel compiled), warm with the cache the cold run wrote; and the
    same first calls with the compiled path off.  None without numba."""
    import subprocess
    import sys
    import tempfile
    import ctrlprop as cp
    if not cp.compiled_available():
        return None
    out = {}
    with tempfile.TemporaryDirectory() as d:
        env = dict(os.environ, NUMBA_CACHE_DIR=d)
        for name, extra in (("cold", {}), ("warm", {}), ("numpy", {"CTRLPROP_COMPILED": "0"})):
            r = subprocess.run([sys.executable, "-c", _FIRST_CALL], env={**env, **extra},
                               capture_output=True, text=True, check=True)
            out[name] = float(r.stdout.split()[1])
    return out
