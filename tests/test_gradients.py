"""Every derivative the engine produces, against finite differences and closed forms."""

import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

import ctrlprop as cp
from conftest import random_dag
from ctrlprop.core.gradcheck import numerical_gradient

dags = st.integers(0, 2 ** 32 - 1).map(lambda s: np.random.default_rng(s))


@settings(max_examples=60, deadline=None)
@given(rng=dags, K=st.sampled_from([1, 3]), single=st.booleans(), scaled=st.booleans())
def test_weight_and_input_gradients_match_finite_differences(rng, K, single, scaled):
    net = random_dag(rng)
    if scaled:
        net.set_scaling(rng.standard_normal(net.n_inputs), rng.uniform(0.5, 2, net.n_inputs),
                        rng.standard_normal(net.n_outputs), rng.uniform(0.5, 2, net.n_outputs))
    X = rng.standard_normal(net.n_inputs) if single else rng.standard_normal((K, net.n_inputs))
    dY = np.random.default_rng(int(rng.integers(100))).standard_normal(net.forward(X).shape)
    # Central differences with step h = 1e-6 carry a round-off error of about
    # eps |E| / h = 1e-10 |E| (E = sum dY Y).  A gradient below 1e-3 max(1, |E|) (saturated
    # units) cannot be checked to 1e-6 relative to itself, so such examples say nothing
    # and are skipped.  With the floor at 1e-6 a sin-tanh DAG with |g| = 1e-5 and
    # |E| = 0.24 failed on round-off alone (seed 1291451621).
    gw, gx = net.backward(X, dY)
    floor = 1e-3 * max(1.0, float(np.abs(dY * net.forward(X)).sum()))
    assume(np.abs(gw).max() > floor and np.abs(gx).max() > floor)
    chk = cp.check_gradients(net, X, dY, tol=1e-6)
    assert chk.ok, chk


@settings(max_examples=40, deadline=None)
@given(rng=dags, K=st.sampled_from([1, 4]))
def test_jacobians_match_finite_differences(rng, K):
    net = random_dag(rng)
    X = rng.standard_normal((K, net.n_inputs))
    m = int(rng.integers(1, net.n_inputs + 1))
    idx = rng.choice(net.n_inputs, size=m, replace=False)
    J = net.jacobian_inputs(X, inputs=idx)
    assert J.shape == (K, net.n_outputs, m)
    for k in range(K):
        for j in range(net.n_outputs):
            def f(u):
                x = X[k].copy()
                x[idx] = u
                return net.forward(x)[j]
            np.testing.assert_allclose(J[k, j], numerical_gradient(f, X[k, idx]), atol=1e-7)
    Jw = net.jacobian_weights(X)
    assert Jw.shape == (K * net.n_outputs, net.n_weights)
    w0 = net.weights.copy()
    for r in range(K * net.n_outputs):
        k, j = divmod(r, net.n_outputs)
        num = numerical_gradient(lambda w: net.forward(X[k], weights=w)[j], w0)
        np.testing.assert_allclose(Jw[r], num, atol=1e-7)


@settings(max_examples=40, deadline=None)
@given(rng=dags, scaled=st.booleans())
def test_jvp_and_exact_hvp_match_finite_differences(rng, scaled):
    net = random_dag(rng)
    if scaled:
        net.set_scaling(rng.standard_normal(net.n_inputs), rng.uniform(0.5, 2, net.n_inputs),
                        rng.standard_normal(net.n_outputs), rng.uniform(0.5, 2, net.n_outputs))
    K = 3
    X = rng.standard_normal((K, net.n_inputs))
    T = rng.standard_normal((K, net.n_outputs))
    vw = rng.standard_normal(net.n_weights)
    vx = rng.standard_normal(X.shape)
    tr = net.trace(X, keep=True)
    # jvp = directional derivative of the outputs
    eps = 1e-6
    num = (net.forward(X + eps * vx, net.weights + eps * vw)
           - net.forward(X - eps * vx, net.weights - eps * vw)) / (2 * eps)
    np.testing.assert_allclose(tr.jvp(vw, vx), num, atol=1e-7)
    # exact Hessian of E = 1/2 |Y - T|^2 along (vw, vx): derivative of the gradient

    def grads(w, x):
        return net.backward(x, net.forward(x, w) - T, weights=w)
    Hw, Hx = tr.hvp(tr.outputs() - T, lambda RY: RY, vw, vx)
    gp, gm = grads(net.weights + eps * vw, X + eps * vx), grads(net.weights - eps * vw,
                                                                X - eps * vx)
    np.testing.assert_allclose(Hw, (gp[0] - gm[0]) / (2 * eps), atol=2e-6)
    np.testing.assert_allclose(Hx, (gp[1] - gm[1]) / (2 * eps), atol=2e-6)


def test_relu_network_gradients(rng):
    net = random_dag(rng, n_in=3, n_comp=8, transfers=["relu", "tanh", "relu"])
    X = rng.standard_normal((6, 3))
    assert cp.check_gradients(net, X, tol=1e-6).ok


def test_wrt_selects_work_and_agrees_with_both(rng):
    net = random_dag(rng, n_in=3, n_comp=6)
    X = rng.standard_normal((4, 3))
    dY = rng.standard_normal((4, net.n_outputs))
    gw, gx = net.backward(X, dY)
    np.testing.assert_array_equal(net.backward(X, dY, wrt="weights"), gw)
    np.testing.assert_array_equal(net.backward(X, dY, wrt="inputs"), gx)


def test_linear_network_is_its_matrix(rng):
    # o = A^T o + b + [x; 0] for linear units  =>  o = (I - A^T)^{-1} (...): a closed form
    net = random_dag(rng, n_in=3, n_comp=7, transfers=["linear"])
    n = net.n_units
    A, b = np.zeros((n, n)), np.zeros(n)
    for (s, d), w in zip(net.weight_labels, net.weights):
        if s == "bias":
            b[d] = w
        else:
            A[d, s] = w
    X = rng.standard_normal((5, 3))
    E = np.zeros((5, n))
    E[:, :3] = X
    O = np.linalg.solve(np.eye(n) - A, (E + b * (np.arange(n) >= 3)).T).T
    np.testing.assert_allclose(net.forward(X), O[:, list(net.outputs)], atol=1e-12)
    M = np.linalg.inv(np.eye(n) - A)[list(net.outputs)][:, :3]      # dY/dX
    np.testing.assert_allclose(net.jacobian_inputs(X), np.broadcast_to(M, (5,) + M.shape),
                               atol=1e-12)


def test_single_logistic_unit_matches_lecture_formula(rng):
    # dE/dw_p = -sum_k (y_k - h(z_k)) h'(z_k) x_kp, with the bias as a constant input
    net = cp.Network.from_edges(3, [(0, 3), (1, 3), (2, 3)], ["logistic"], [3])
    X = rng.standard_normal((10, 3))
    y = rng.uniform(size=10)
    w = dict(zip(net.weight_labels, net.weights))
    wv = np.array([w[(0, 3)], w[(1, 3)], w[(2, 3)], w[("bias", 3)]])
    Xb = np.hstack([X, np.ones((10, 1))])
    h = 1 / (1 + np.exp(-Xb @ wv))
    lecture = -((y - h) * h * (1 - h)) @ Xb
    gw = net.backward(X, net.forward(X) - y[:, None], wrt="weights")
    order = [net.weight_index(0, 3), net.weight_index(1, 3), net.weight_index(2, 3),
             net.weight_index("bias", 3)]
    np.testing.assert_allclose(gw[order], lecture, rtol=1e-12)


def test_trace_reuse_and_staleness(rng):
    net = random_dag(rng, n_in=2, n_comp=5)
    X1, X2 = rng.standard_normal((3, 2)), rng.standard_normal((3, 2))
    dY = rng.standard_normal((3, net.n_outputs))
    kept = net.trace(X1, keep=True)
    t = net.trace(X1)
    g1 = t.backward(dY)
    g2 = t.backward(2 * dY)                       # several backward passes, one forward
    np.testing.assert_allclose(g2[0], 2 * g1[0])
    net.trace(X2)                                 # same batch size: buffers reused
    with pytest.raises(cp.StaleTraceError, match="keep=True"):
        t.backward(dY)
    np.testing.assert_array_equal(kept.backward(dY)[0], g1[0])


def test_check_gradients_detects_a_wrong_derivative():
    cp.register_transfer("test_wrong", np.tanh, lambda z: 1 - np.tanh(z) ** 2 + 0.1,
                         overwrite=True)
    net = cp.Network.from_edges(2, [(0, 2), (1, 2), (2, 3)], ["test_wrong", "linear"], [3])
    assert not cp.check_gradients(net, np.ones((2, 2))).ok


def test_hvp_without_second_derivative_raises():
    cp.register_transfer("test_nod2", np.tanh, lambda z: 1 - np.tanh(z) ** 2, overwrite=True)
    net = cp.Network.from_edges(1, [(0, 1)], ["test_nod2"], [1])
    tr = net.trace(np.ones((1, 1)))
    with pytest.raises(ValueError, match=r"\['test_nod2'\].*d2h"):
        tr.hvp(np.ones((1, 1)), lambda r: r, v_w=np.ones(2))


def test_second_order_products_check_their_arguments(rng):
    net = random_dag(rng, n_in=3, n_comp=4)
    X = rng.standard_normal((2, 3))
    tr = net.trace(X, keep=True)
    dY = np.zeros((2, net.n_outputs))
    with pytest.raises(ValueError, match=r"v_x must have the shape of X \(2, 3\), got \(3, 2\)"):
        tr.jvp(v_x=np.ones((3, 2)))
    with pytest.raises(ValueError, match="wrt must be"):
        tr.hvp(dY, lambda r: r, v_w=np.ones(net.n_weights), wrt="input")
    with pytest.raises(ValueError, match="RdY must return the shape of the outputs"):
        tr.hvp(dY, lambda r: r[:, :1].repeat(net.n_outputs + 1, 1), v_w=np.ones(net.n_weights))
