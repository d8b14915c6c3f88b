"""Structure: validation errors, topological enumeration, weight layout, transfers."""

import numpy as np
import pytest

import ctrlprop as cp
from conftest import random_dag, reference_forward


def make(edges, transfers=("tanh", "tanh"), outputs=(3,), n_inputs=2, **kw):
    return cp.Network.from_edges(n_inputs, edges, list(transfers), list(outputs), **kw)


@pytest.mark.parametrize("edges, transfers, outputs, match", [
    ([(0, 2), (2, 3), (3, 2)], ("tanh", "tanh"), (3,), r"cycle through units \[2, 3\]"),
    ([(0, 2), (2, 2), (2, 3)], ("tanh", "tanh"), (3,), "self-loop on unit 2"),
    ([(0, 2), (0, 2), (2, 3)], ("tanh", "tanh"), (3,), r"duplicate edge \(0, 2\)"),
    ([(0, 2), (2, 1), (2, 3)], ("tanh", "tanh"), (3,), "into input unit 1"),
    ([(0, 2), (2, 7)], ("tanh", "tanh"), (3,), "unit 7 is out of range"),
    ([(-1, 2), (2, 3)], ("tanh", "tanh"), (3,), "unit -1 is out of range"),
    ([(0, 2)], ("tanh", "tanh"), (2,), r"unit\(s\) \[3\] are reached by no input"),
    ([(0, 2), (2, 3)], ("tanh", "tanh"), (), "outputs is empty"),
    ([(0, 2), (2, 3)], ("tanh", "tanh"), (3, 3), r"repeats unit\(s\) \[3\]"),
    ([(0, 2), (2, 3)], ("tanh", "tanh"), (9,), "output unit 9 is out of range"),
    ([(0, 2), (2, 3)], ("tanh", "tanh"), (1,), "output unit 1 is an input unit"),
    ([(0, 2), (2, 3)], ("tanh", "nosuch"), (3,), "unit 3.*unknown transfer function 'nosuch'"),
    ([(0, 2, 5), (2, 3)], ("tanh", "tanh"), (3,), r"\(source, destination\) pair"),
])
def test_bad_structure_raises_naming_units(edges, transfers, outputs, match):
    with pytest.raises(ValueError, match=match):
        make(edges, transfers, outputs)


@pytest.mark.parametrize("call, match", [
    (lambda: make([(0.5, 2), (2, 3)], ("tanh", "tanh"), (3,)),
     r"edge \(0.5, 2\) source must be an integer, got 0.5"),
    (lambda: make([(0, 2), (2, 3)], ("tanh", "tanh"), (3.0,)), "output must be an integer"),
    (lambda: cp.Network.from_edges(True, [(0, 1)], ["tanh"], [1]), "n_inputs must be an integer"),
    (lambda: cp.Network.mlp([3, 2.5]), r"sizes\[1\] must be an integer, got 2.5"),
    (lambda: cp.Network.mlp([3, 4, 2]).units_weights([3.0]), "unit must be an integer"),
])
def test_non_integer_structure_is_a_type_error(call, match):
    with pytest.raises(TypeError, match=match):
        call()


def test_the_one_integer_check():
    from ctrlprop.core.checks import check_int
    assert check_int(np.int64(3), "k", 1) == 3 and type(check_int(np.int64(3), "k")) is int
    assert check_int(None, "k", 1, allow_none=True) is None and check_int(-5, "k") == -5
    for bad, exc, msg in [(True, TypeError, "k must be an integer, got True"),
                          (2.0, TypeError, "k must be an integer"),
                          (None, TypeError, "k must be an integer, got None"),
                          (0, ValueError, r"k must be at least 1 \(a positive integer\), got 0"),
                          (-1, ValueError, r"k must be at least 0 \(a non-negative integer\)")]:
        with pytest.raises(exc, match=msg):
            check_int(bad, "k", 0 if "non-negative" in msg else 1)
    with pytest.raises(ValueError, match=r"threads must be None or at least 1"):
        check_int(0, "threads", 1, allow_none=True)
    with pytest.raises(TypeError, match=r"n must be None or an integer, got 1.5"):
        cp.blas_threads(1.5).__enter__()


def test_longer_cycle_is_listed_in_order():
    with pytest.raises(ValueError, match=r"\[3, 4, 5\].*(3 -> 4 -> 5 -> 3|4 -> 5 -> 3 -> 4|"
                                         r"5 -> 3 -> 4 -> 5)"):
        cp.Network.from_edges(1, [(0, 1), (1, 3), (3, 4), (4, 5), (5, 3), (5, 2)],
                              ["tanh"] * 5, [2])


def test_topological_order_and_levels_on_shuffled_numbering():
    # unit 2 depends on 4, which depends on 3: numbering is not topological
    net = cp.Network.from_edges(2, [(4, 2), (3, 4), (0, 3), (1, 4), (0, 2)],
                                ["tanh", "tanh", "tanh"], [2])
    pos = {u: k for k, u in enumerate(net.order)}
    for s, d in net.edges:
        assert pos[s] < pos[d]
    assert [net.level_of[u] for u in (3, 4, 2)] == [1, 2, 3]


def test_weight_labels_cover_every_edge_and_bias_once(rng):
    net = random_dag(rng, n_in=3, n_comp=7)
    labels = net.weight_labels
    assert len(labels) == net.n_weights == len(set(labels))
    assert set(labels) == set(net.edges) | {("bias", u) for u in range(3, net.n_units)}
    s, d = net.edges[0]
    assert net.weight_labels[net.weight_index(s, d)] == (s, d)
    with pytest.raises(KeyError):
        net.weight_index(d, s)


def test_mlp_layout_is_layered_and_matches_explicit_edges():
    net = cp.Network.mlp([3, 4, 2], hidden="tanh", output="linear", seed=3)
    assert (net.n_inputs, net.n_outputs, net.n_weights) == (3, 2, 3 * 4 + 4 + 4 * 2 + 2)
    assert len(net.levels) == 3
    same = cp.Network.from_edges(3, list(reversed(net.edges)),
                                 [t.name for t in net.transfers], list(net.outputs), seed=3)
    assert same.weight_labels == net.weight_labels
    np.testing.assert_array_equal(same.weights, net.weights)


def test_init_is_seeded_and_scaled_by_fan_in():
    a = cp.Network.mlp([400, 300, 1], seed=1)
    b = cp.Network.mlp([400, 300, 1], seed=1)
    c = cp.Network.mlp([400, 300, 1], seed=2)
    np.testing.assert_array_equal(a.weights, b.weights)
    assert not np.array_equal(a.weights, c.weights)
    lab = a.weight_labels
    first = np.array([d < 700 and s != "bias" for s, d in lab])
    bias = np.array([s == "bias" for s, d in lab])
    assert np.all(a.weights[bias] == 0)
    assert abs(a.weights[first].std() * np.sqrt(400) - 1) < 0.02


def test_weights_assignment_is_validated():
    net = cp.Network.mlp([2, 3, 1])
    with pytest.raises(ValueError, match=r"shape \(13,\), got \(12,\)"):
        net.weights = np.zeros(12)
    bad = np.zeros(13)
    bad[4] = np.nan
    with pytest.raises(ValueError, match=r"NaN or inf at entries \[4\]"):
        net.weights = bad
    net.weights = np.arange(13.0)
    assert net.weights.dtype == np.float64 and net.weights[5] == 5.0


def test_forward_matches_unit_by_unit_reference(rng):
    for _ in range(20):
        net = random_dag(rng)
        X = rng.standard_normal((5, net.n_inputs))
        np.testing.assert_allclose(net.forward(X), reference_forward(net, X), rtol=1e-12,
                                   atol=1e-12)


def test_forward_shapes_and_bad_x():
    net = cp.Network.mlp([3, 4, 2])
    assert net.forward(np.zeros(3)).shape == (2,)
    assert net.forward(np.zeros((5, 3))).shape == (5, 2)
    for bad in (np.zeros(4), np.zeros((5, 2)), np.zeros((2, 3, 1)), np.zeros((0, 3))):
        with pytest.raises(ValueError, match="X must have shape|empty"):
            net.forward(bad)
    with pytest.raises(ValueError, match=r"dY must have the shape of the outputs \(5, 2\)"):
        net.backward(np.zeros((5, 3)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="wrt must be"):
        net.backward(np.zeros((5, 3)), np.zeros((5, 2)), wrt="controls")


def test_transfer_table_values_and_overflow_safety():
    z = np.array([-1000.0, -30.0, -1.0, 0.0, 0.5, 30.0, 1000.0])
    out = np.empty_like(z)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        cp.get_transfer("logistic").h(z, out)
        np.testing.assert_allclose(out[2:5], 1 / (1 + np.exp(-z[2:5])))
        assert out[0] == 0.0 and out[-1] == 1.0
        cp.get_transfer("softplus").h(z, out)
        np.testing.assert_allclose(out[1:6], np.log1p(np.exp(z[1:6])))
        assert out[0] == 0.0 and out[-1] == 1000.0
    zs = np.linspace(-3, 3, 13) + 0.01
    for name in ["linear", "tanh", "logistic", "relu", "softplus", "sin"]:
        t = cp.get_transfer(name)
        o, d1, d2 = np.empty_like(zs), np.empty_like(zs), np.empty_like(zs)
        t.h(zs, o)
        t.dh(zs, o, d1)
        t.d2h(zs, o, d2)
        eps = 1e-6
        hp, hm = np.empty_like(zs), np.empty_like(zs)
        t.h(zs + eps, hp)
        t.h(zs - eps, hm)
        np.testing.assert_allclose(d1, (hp - hm) / (2 * eps), atol=1e-7, err_msg=name)
        dp, dm = np.empty_like(zs), np.empty_like(zs)
        t.dh(zs + eps, hp, dp)
        t.dh(zs - eps, hm, dm)
        np.testing.assert_allclose(d2, (dp - dm) / (2 * eps), atol=1e-6, err_msg=name)


def test_register_custom_transfer_and_errors():
    cube = cp.register_transfer("test_cube", lambda z: z ** 3, lambda z: 3 * z ** 2,
                                lambda z: 6 * z, overwrite=True)
    net = cp.Network.from_edges(1, [(0, 1), (1, 2)], ["test_cube", "linear"], [2])
    x = np.array([[0.7]])
    w = dict(zip(net.weight_labels, net.weights))
    h = (w[(0, 1)] * 0.7 + w[("bias", 1)]) ** 3
    np.testing.assert_allclose(net.forward(x), [[w[(1, 2)] * h + w[("bias", 2)]]])
    assert cube.needs_z
    with pytest.raises(ValueError, match="built in"):
        cp.register_transfer("tanh", np.tanh, np.tanh)
    with pytest.raises(ValueError, match="already registered"):
        cp.register_transfer("test_cube", np.sin, np.cos)
    with pytest.raises(TypeError, match="dh must be callable"):
        cp.register_transfer("test_bad", np.sin, 3)


def test_sq(z):
    return z * z


def test_sq_d(z):
    return 2 * z


test_sq.__test__ = test_sq_d.__test__ = False     # helpers, not tests


def test_transfer_given_as_pair():
    # module-level functions: the pair is the same objects when the test runs again (it
    # runs once per engine path) and resolves to the transfer registered the first time
    net = cp.Network.from_edges(1, [(0, 1)], [(test_sq, test_sq_d)], [1])
    assert net.transfers[0].name == "test_sq"
    assert cp.check_gradients(net, np.array([[0.3], [-1.2]]), tol=1e-7).ok



def test_units_weights_mask_and_describe():
    net = cp.Network.from_edges(2, [(0, 2), (1, 2), (2, 3), (0, 3)], ["tanh", "linear"], [3])
    mask = net.units_weights([3])
    assert [lab for lab, m in zip(net.weight_labels, mask) if m] == [(0, 3), (2, 3), ("bias", 3)]
    text = net.describe()
    assert "unit    3  level 2  linear   <- 0, 2 + bias  output[0]" in text


def test_units_weights_rejects_non_computing_units():
    net = cp.Network.mlp([2, 3, 1])
    with pytest.raises(ValueError, match=r"unit\(s\) \[0, 9\] are not computing units"):
        net.units_weights([0, 9, 3])


def test_failed_set_scaling_changes_nothing():
    net = cp.Network.mlp([2, 3, 1])
    with pytest.raises(ValueError, match="y_scale must be positive"):
        net.set_scaling([1, 2], [3, 4], [0], [-1])
    assert net.input_scaling is None and net.output_scaling is None
