"""Shared helpers for the tests: random DAG networks, a naive reference forward pass, and
checks of the scenario scripts' output files."""

import json
import os
import sys

import numpy as np
import pytest

import ctrlprop as cp

SMOOTH = ["tanh", "logistic", "softplus", "sin", "linear"]


def random_dag(rng, n_in=None, n_comp=None, transfers=SMOOTH, p_edge=0.4, bias=True, n_out=None):
    """A random DAG network with arbitrary unit numbering, skips and fan-out."""
    n_in = n_in or int(rng.integers(1, 5))
    n_comp = n_comp or int(rng.integers(1, 9))
    comp = list(range(n_in, n_in + n_comp))
    order = list(rng.permutation(comp))            # hidden topological order != numbering
    edges = set()
    for k, u in enumerate(order):
        earlier = list(range(n_in)) + order[:k]
        edges.add((int(rng.choice(earlier)), int(u)))       # reached from an input
        for s in earlier:
            if rng.random() < p_edge:
                edges.add((int(s), int(u)))
    edges = list(edges)
    rng.shuffle(edges)
    trs = [str(rng.choice(transfers)) for _ in comp]
    n_out = n_out or int(rng.integers(1, n_comp + 1))
    outs = [int(u) for u in rng.choice(comp, size=min(n_out, n_comp), replace=False)]
    net = cp.Network.from_edges(n_in, edges, trs, outs, bias=bias, seed=int(rng.integers(1e6)))
    net.weights = net.weights + 0.1 * rng.standard_normal(net.n_weights)   # nonzero biases
    return net


def dynamics_net(rng, n, m, e=0, scaled=False, min_hidden=1):
    """A random DAG with n + m + e inputs and n outputs (skips, fan-out, mixed transfers),
    n + [min_hidden, 6) computing units; ``scaled`` adds random input/output scaling."""
    net = random_dag(rng, n_in=n + m + e, n_comp=n + int(rng.integers(min_hidden, 6)), n_out=n)
    if scaled:
        k = net.n_inputs
        net.set_scaling(rng.standard_normal(k), rng.uniform(0.5, 2, k),
                        rng.standard_normal(n), rng.uniform(0.5, 2, n))
    return net


def reference_forward(net, X):
    """Unit-by-unit forward pass in topological order, straight from the lecture."""
    X = np.atleast_2d(X)
    o = {}
    for i in range(net.n_inputs):
        o[i] = X[:, i]
    w = dict(zip(net.weight_labels, net.weights))
    for j in net.order[net.n_inputs:]:
        z = sum(w[(s, d)] * (1.0 if s == "bias" else o[s]) for (s, d) in w if d == j)
        t = net.transfers[j - net.n_inputs]
        out = np.empty_like(z)
        t.h(np.array(z, float), out)
        o[j] = out
    return np.stack([o[u] for u in net.outputs], axis=1)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def sin_model():
    """x_1 = sin(u_0): J = (sin u - 0.5)^2 + 0.01 u^2 has local minima near pi/6 + 2 pi k."""
    net = cp.Network.from_edges(2, [(1, 2), (2, 3)], ["sin", "linear"], outputs=[3])
    w = np.zeros(net.n_weights)
    w[net.weight_index(1, 2)] = 1.0
    w[net.weight_index(2, 3)] = 1.0
    net.weights = w
    return cp.Dynamics(net, 1)


# ---------------------------------------------------------------- scenario scripts
SCENARIOS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scenarios")
if SCENARIOS not in sys.path:
    sys.path.insert(0, SCENARIOS)            # the scenario tests import the scripts as modules

PNG = b"\x89PNG\r\n\x1a\n"


def check_outputs(out, pngs, scenario, metrics, keys):
    """The scenario's PNGs carry the PNG signature and its metrics.json is valid JSON that
    names the scenario, says quick mode, and agrees with the returned metrics on ``keys``."""
    for name in pngs:
        with open(out / name, "rb") as f:
            assert f.read(8) == PNG, name
    with open(out / "metrics.json") as f:
        data = json.load(f)
    assert data["scenario"] == scenario and data["quick"] is True
    for k in keys:
        assert data[k] == pytest.approx(metrics[k]), k


# ---- both engine paths ---------------------------------------------------------------------
# These modules run twice: on the numpy engine and on the compiled path (numba), so that the
# engine, gradient and trajectory tests -- finite-difference checks included -- hold on
# both.  Elsewhere the default ("auto": compiled when numba is installed) applies.
BOTH_PATHS = {"test_network", "test_gradients", "test_trajectory", "test_engine_second_order",
              "test_trajectory_opt", "test_control", "test_ddp", "test_mpc_ddp", "test_lbfgsb"}


def pytest_generate_tests(metafunc):
    if (metafunc.module.__name__.rsplit(".", 1)[-1] in BOTH_PATHS
            and "engine_path" in metafunc.fixturenames):
        paths = [False, True] if cp.compiled_available() else [False]
        metafunc.parametrize("engine_path", paths, indirect=True,
                             ids=["numpy", "compiled"][:len(paths)])


@pytest.fixture(autouse=True)
def engine_path(request):
    """The engine path of a test: a parameter in BOTH_PATHS modules, else "auto"."""
    mode = getattr(request, "param", "auto")
    with cp.use_compiled(mode):
        yield mode
