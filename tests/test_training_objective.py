"""WeightObjective: value, gradient, hessp, residuals, Jacobians against finite differences
and closed forms, on random DAGs with scaling, sample weights, L2 and frozen weights."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import ctrlprop as cp
from conftest import random_dag
from ctrlprop.core.gradcheck import numerical_gradient

dags = st.integers(0, 2 ** 32 - 1).map(lambda s: np.random.default_rng(s))


def make_problem(rng, K=5, scaled=True, weighted=True, l2=0.3, masked=True):
    """A random DAG, data, and a WeightObjective with every option switched on at random."""
    net = random_dag(rng)
    if scaled:
        net.set_scaling(rng.standard_normal(net.n_inputs), rng.uniform(0.5, 2, net.n_inputs),
                        rng.standard_normal(net.n_outputs), rng.uniform(0.5, 2, net.n_outputs))
    X = rng.standard_normal((K, net.n_inputs))
    Y = rng.standard_normal((K, net.n_outputs))
    sw = rng.uniform(0.2, 2.0, K) if weighted else None
    mask = None
    if masked:
        mask = rng.random(net.n_weights) < 0.6
        mask[rng.integers(net.n_weights)] = True
    obj = cp.WeightObjective(net, X, Y, l2=l2, sample_weight=sw, trainable=mask)
    x = obj.x0 + 0.2 * rng.standard_normal(obj.n)
    return net, X, Y, sw, obj, x


def direct_loss(net, X, Y, sw, l2, w, mask):
    """E written out from net.forward: 1/2 sum s_k |y_k - t_k|^2 + 1/2 l2 |free non-bias w|^2."""
    s = np.ones(len(X)) if sw is None else sw
    R = net.forward(X, weights=w) - Y
    nb = np.array([src != "bias" for src, _ in net.weight_labels]) & mask
    return 0.5 * np.sum(s[:, None] * R ** 2) + 0.5 * l2 * np.sum(w[nb] ** 2)


opts = dict(scaled=st.booleans(), weighted=st.booleans(), l2=st.sampled_from([0.0, 0.7]),
            masked=st.booleans())


@settings(max_examples=30, deadline=None)
@given(rng=dags, **opts)
def test_value_and_gradient(rng, scaled, weighted, l2, masked):
    net, X, Y, sw, obj, x = make_problem(rng, scaled=scaled, weighted=weighted, l2=l2,
                                         masked=masked)
    E, g = obj(x)
    assert E == pytest.approx(direct_loss(net, X, Y, sw, l2, obj.full(x), obj.mask), rel=1e-12)
    assert g.shape == (obj.n,)
    num = numerical_gradient(obj.value, x)
    np.testing.assert_allclose(g, num, rtol=1e-6, atol=1e-7 * max(1, np.abs(num).max()))
    assert obj.value(x) == E and obj.data_loss(x) <= E


@settings(max_examples=30, deadline=None)
@given(rng=dags, **opts)
def test_hessp_matches_finite_differences_of_the_gradient(rng, scaled, weighted, l2, masked):
    _, _, _, _, obj, x = make_problem(rng, scaled=scaled, weighted=weighted, l2=l2,
                                      masked=masked)
    p = rng.standard_normal(obj.n)
    eps = 1e-6
    num = (obj.gradient(x + eps * p) - obj.gradient(x - eps * p)) / (2 * eps)
    Hp = obj.hessp(x, p)
    np.testing.assert_allclose(Hp, num, rtol=1e-5, atol=1e-6 * max(1, np.abs(num).max()))
    # a second product at the same point reuses the prepared state and stays exact
    q = rng.standard_normal(obj.n)
    np.testing.assert_allclose(obj.hessp(x, p + 2 * q), Hp + 2 * obj.hessp(x, q),
                               rtol=1e-10, atol=1e-10)


@settings(max_examples=25, deadline=None)
@given(rng=dags, **opts)
def test_residuals_and_jacobians(rng, scaled, weighted, l2, masked):
    net, X, Y, sw, obj, x = make_problem(rng, scaled=scaled, weighted=weighted, l2=l2,
                                         masked=masked)
    r = obj.residuals(x)
    s = np.ones(len(X)) if sw is None else sw
    head = (np.sqrt(s)[:, None] * (net.forward(X, weights=obj.full(x)) - Y)).ravel()
    np.testing.assert_allclose(r[:head.size], head, rtol=1e-12, atol=1e-14)
    assert 0.5 * r @ r == pytest.approx(obj.value(x), rel=1e-12)
    J = obj.jacobian(x)
    assert J.shape == (r.size, obj.n)
    eps = 1e-6
    for j in range(obj.n):
        e = np.zeros(obj.n)
        e[j] = eps
        np.testing.assert_allclose(J[:, j], (obj.residuals(x + e) - obj.residuals(x - e))
                                   / (2 * eps), atol=1e-7)
    Jo = obj.jacobian_operator(x)
    v, u = rng.standard_normal(obj.n), rng.standard_normal(r.size)
    np.testing.assert_allclose(Jo @ v, J @ v, atol=1e-10)
    np.testing.assert_allclose(Jo.T @ u, J.T @ u, atol=1e-10)


def test_hessp_of_a_linear_network_is_the_closed_form(rng):
    # y = W x + b:  E = 1/2 sum_k s_k |W x_k + b - t_k|^2 + 1/2 l2 |W|^2, so for each output j
    # H = sum_k s_k [x_k; 1][x_k; 1]^T + l2 diag(1, .., 1, 0)  (bias not penalised)
    net = cp.Network.mlp([3, 2], output="linear", seed=4)
    X, Y = rng.standard_normal((9, 3)), rng.standard_normal((9, 2))
    sw, l2 = rng.uniform(0.5, 2, 9), 0.4
    obj = cp.WeightObjective(net, X, Y, l2=l2, sample_weight=sw)
    Xb = np.hstack([X, np.ones((9, 1))])
    Hj = (Xb * sw[:, None]).T @ Xb + l2 * np.diag([1, 1, 1, 0])
    H = np.zeros((8, 8))
    for j in range(2):
        rows = [net.weight_index(i, 3 + j) for i in range(3)] + [net.weight_index("bias", 3 + j)]
        H[np.ix_(rows, rows)] = Hj
    p = rng.standard_normal(8)
    np.testing.assert_allclose(obj.hessp(obj.x0, p), H @ p, rtol=1e-12)


def test_hessp_agrees_with_the_core_trace_hvp(rng):
    net, X, Y, sw, obj, x = make_problem(rng, K=6, l2=0.0, masked=False)
    p = rng.standard_normal(obj.n)
    tr = net.trace(X, weights=x)
    Hw = tr.hvp(sw[:, None] * (tr.outputs() - Y), lambda RY: sw[:, None] * RY, v_w=p,
                wrt="weights")
    np.testing.assert_allclose(obj.hessp(x, p), Hw, rtol=1e-10, atol=1e-12)


def test_minibatches_add_up_to_the_full_gradient(rng):
    net, X, Y, sw, obj, x = make_problem(rng, K=11, l2=0.5)
    order = rng.permutation(11)
    E, g = 0.0, np.zeros(obj.n)
    for a in range(0, 11, 4):
        Eb, gb = obj.minibatch(x, order[a:a + 4])
        E, g = E + Eb, g + gb
    E_full, g_full = obj(x)
    assert E == pytest.approx(obj.data_loss(x), rel=1e-12)
    np.testing.assert_allclose(g, g_full, rtol=1e-10, atol=1e-12)


def test_objective_leaves_the_network_alone_and_maps_free_weights(rng):
    net, X, Y, _, obj, x = make_problem(rng, l2=0.1)
    w0 = net.weights.copy()
    obj(x), obj.hessp(x, x), obj.jacobian(x), obj.residuals(x)
    np.testing.assert_array_equal(net.weights, w0)
    w = obj.full(x)
    np.testing.assert_array_equal(w[~obj.mask], w0[~obj.mask])
    np.testing.assert_array_equal(w[obj.mask], x)
    np.testing.assert_array_equal(obj.free(w), x)
    assert obj.n == obj.mask.sum() and obj.x0.shape == (obj.n,)


def test_trainable_units_select_the_weights_into_them():
    net = cp.Network.mlp([2, 3, 1], seed=0)
    obj = cp.WeightObjective(net, np.zeros((4, 2)), np.zeros(4), trainable=[5])
    assert obj.n == 4                               # 3 hidden -> output, plus its bias
    assert all(d == 5 for (_, d), m in zip(net.weight_labels, obj.mask) if m)


def test_scipy_solvers_accept_the_objective(rng):
    from scipy.optimize import least_squares, minimize
    net = cp.Network.mlp([2, 4, 1], seed=2)
    X = rng.uniform(-1, 1, (30, 2))
    Y = np.sin(X[:, :1]) * X[:, 1:]
    obj = cp.WeightObjective(net, X, Y)
    E0 = obj.value(obj.x0)
    for method in ("L-BFGS-B", "BFGS", "CG", "Newton-CG", "trust-ncg", "trust-krylov"):
        kw = {"hessp": obj.hessp} if method in ("Newton-CG", "trust-ncg", "trust-krylov") else {}
        res = minimize(obj, obj.x0, jac=True, method=method, options={"maxiter": 20}, **kw)
        assert res.fun < 0.5 * E0, method
    for method in ("lm", "trf"):
        res = least_squares(obj.residuals, obj.x0, jac=obj.jacobian, method=method, max_nfev=20)
        assert res.cost < 0.5 * E0, method


def test_hessp_without_second_derivative_raises():
    cp.register_transfer("test_train_nod2", np.tanh, lambda z: 1 - np.tanh(z) ** 2,
                         overwrite=True)
    net = cp.Network.from_edges(1, [(0, 1), (1, 2)], ["test_train_nod2", "linear"], [2])
    X = np.linspace(-1, 1, 3)[:, None]
    obj = cp.WeightObjective(net, X, np.ones(3))
    with pytest.raises(ValueError, match=r"test_train_nod2.*d2h"):
        obj.hessp(obj.x0, obj.x0)
    # Jacobian products need only h': the matrix-free Jacobian still works
    v = np.arange(1.0, obj.n + 1)
    np.testing.assert_allclose(obj.jacobian_operator(obj.x0) @ v, obj.jacobian(obj.x0) @ v,
                               rtol=1e-12)


@pytest.mark.parametrize("kwargs, match", [
    (dict(X=np.ones((4, 3)), Y=np.ones((5, 1))), "X has 4 rows but Y has 5"),
    (dict(X=np.ones((4, 2)), Y=np.ones((4, 1))), r"X must have shape \(K, 3\)"),
    (dict(X=np.ones((4, 3)), Y=np.ones((4, 2))), r"Y must have shape \(K, 1\)"),
    (dict(X=np.ones((0, 3)), Y=np.ones((0, 1))), "X is empty"),
    (dict(X=np.array([[1, 2, np.nan]] * 4), Y=np.ones((4, 1))), "X contains NaN or inf"),
    (dict(X=np.ones((4, 3)), Y=np.array([1, 2, np.inf, 4])), r"Y contains NaN or inf.*\[2\]"),
    (dict(X=np.ones((4, 3)), Y=np.ones(4), sample_weight=[1, 2, 3]), "sample_weight must have"),
    (dict(X=np.ones((4, 3)), Y=np.ones(4), sample_weight=[1, -2, 3, 1]), "non-negative"),
    (dict(X=np.ones((4, 3)), Y=np.ones(4), sample_weight=np.zeros(4)), "zero for every"),
    (dict(X=np.ones((4, 3)), Y=np.ones(4), l2=-1.0), "l2 must be"),
    (dict(X=np.ones((4, 3)), Y=np.ones(4), trainable=np.ones(3, bool)), "mask must have shape"),
    (dict(X=np.ones((4, 3)), Y=np.ones(4), trainable=np.zeros(11, bool)), "selects no weight"),
    (dict(X=np.ones((4, 3)), Y=np.ones(4), trainable=[1]), "unit 1 is not a computing unit"),
    (dict(X=np.ones((4, 3)), Y=np.ones(4), trainable=[]), "lists no unit"),
])
def test_bad_input_raises(kwargs, match):
    net = cp.Network.mlp([3, 2, 1])
    with pytest.raises(ValueError, match=match):
        cp.WeightObjective(net, **kwargs)


def test_bad_types_and_shapes_raise():
    net = cp.Network.mlp([3, 2, 1])
    with pytest.raises(TypeError, match="X must be a numeric array"):
        cp.WeightObjective(net, [["a", "b", "c"]], [1.0])
    with pytest.raises(TypeError, match="l2 must be"):
        cp.WeightObjective(net, np.ones((2, 3)), np.ones(2), l2="big")
    with pytest.raises(TypeError, match="unit indices"):
        cp.WeightObjective(net, np.ones((2, 3)), np.ones(2), trainable=[3.5])
    obj = cp.WeightObjective(net, np.ones((2, 3)), np.ones(2))
    with pytest.raises(ValueError, match=r"x must have shape \(11,\)"):
        obj(np.ones(3))
    with pytest.raises(ValueError, match=r"p must have shape \(11,\)"):
        obj.hessp(obj.x0, np.ones(2))
