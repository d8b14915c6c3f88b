"""The engine's one R-operator (ctrlprop.core.engine.SecondOrder, behind Trace.jvp/hvp and
WeightObjective.hessp) against central differences of the first-order passes."""

import numpy as np
import pytest

import ctrlprop as cp
from conftest import random_dag
from ctrlprop.core.engine import SecondOrder

EPS = 1e-6

# (seed, n_in, n_comp, p_edge, bias): chains, wide levels, sparse and dense blocks, skips
SHAPES = [(0, 1, 1, 0.4, True), (1, 3, 6, 0.2, True), (2, 4, 8, 0.6, True),
          (3, 2, 7, 0.9, False), (4, 3, 5, 0.1, True), (5, 4, 8, 0.4, False)]


def _problem(shape, scaled, K=4):
    seed, n_in, n_comp, p_edge, bias = shape
    rng = np.random.default_rng(seed)
    net = random_dag(rng, n_in=n_in, n_comp=n_comp, p_edge=p_edge, bias=bias)
    if scaled:
        net.set_scaling(rng.standard_normal(n_in), rng.uniform(0.5, 2, n_in),
                        rng.standard_normal(net.n_outputs), rng.uniform(0.5, 2, net.n_outputs))
    X = rng.standard_normal((K, n_in))
    T = rng.standard_normal((K, net.n_outputs))
    A = rng.standard_normal((net.n_outputs, net.n_outputs))
    M = A @ A.T + 0.1 * np.eye(net.n_outputs)        # E = 1/2 sum_k (y_k - t_k)^T M (y_k - t_k)
    return rng, net, X, T, M


def _grads(net, w, X, T, M):
    """(dE/dw, dE/dX) of E = 1/2 sum_k (y_k - t_k)^T M (y_k - t_k), by backward()."""
    return net.backward(X, (net.forward(X, w) - T) @ M, weights=w)


def _fd_hvp(net, X, T, M, vw, vx):
    """Central difference of the gradient along (vw, vx)."""
    w = net.weights
    gp = _grads(net, w + EPS * vw, X + EPS * vx, T, M)
    gm = _grads(net, w - EPS * vw, X - EPS * vx, T, M)
    return (gp[0] - gm[0]) / (2 * EPS), (gp[1] - gm[1]) / (2 * EPS)


def _close(a, b, rtol=1e-8):
    """|a - b| <= rtol * max|b| (+ 1e-9 for an all-zero reference), entrywise."""
    np.testing.assert_allclose(a, b, rtol=0, atol=rtol * max(np.abs(b).max(), 1e-3))


@pytest.mark.parametrize("scaled", [False, True])
@pytest.mark.parametrize("shape", SHAPES)
def test_hvp_weights_inputs_and_both_match_finite_differences(shape, scaled):
    rng, net, X, T, M = _problem(shape, scaled)
    vw, vx = rng.standard_normal(net.n_weights), rng.standard_normal(X.shape)
    tr = net.trace(X, keep=True)
    dY, curv = (tr.outputs() - T) @ M, (lambda RY: RY @ M)
    fw, fx = _fd_hvp(net, X, T, M, vw, vx)
    Hw, Hx = tr.hvp(dY, curv, vw, vx)
    _close(Hw, fw)
    _close(Hx, fx)
    # weight direction only / input direction only, and each part alone
    fw0, fx0 = _fd_hvp(net, X, T, M, vw, 0 * vx)
    _close(tr.hvp(dY, curv, v_w=vw, wrt="weights"), fw0)
    _close(tr.hvp(dY, curv, v_w=vw, wrt="inputs"), fx0)
    fw1, fx1 = _fd_hvp(net, X, T, M, 0 * vw, vx)
    Hw1, Hx1 = tr.hvp(dY, curv, v_x=vx)
    _close(Hw1, fw1)
    _close(Hx1, fx1)
    np.testing.assert_array_equal(tr.hvp(dY, curv, vw, vx, wrt="weights"), Hw)
    np.testing.assert_array_equal(tr.hvp(dY, curv, vw, vx, wrt="inputs"), Hx)


@pytest.mark.parametrize("scaled", [False, True])
@pytest.mark.parametrize("shape", SHAPES[1::2])
def test_jvp_matches_finite_differences_of_forward(shape, scaled):
    rng, net, X, _, _ = _problem(shape, scaled)
    vw, vx = rng.standard_normal(net.n_weights), rng.standard_normal(X.shape)
    tr = net.trace(X, keep=True)
    w = net.weights
    for a, b in ((vw, vx), (vw, None), (None, vx)):
        dw = 0 * vw if a is None else a
        dx = 0 * vx if b is None else b
        num = (net.forward(X + EPS * dx, w + EPS * dw)
               - net.forward(X - EPS * dx, w - EPS * dw)) / (2 * EPS)
        _close(tr.jvp(a, b), num)
    np.testing.assert_array_equal(tr.jvp(), np.zeros((len(X), net.n_outputs)))


def test_a_single_sample_and_a_constant_curvature_array():
    # RdY given as an array c: the directional derivative of backward(X, dY0 + r c) at r = 0
    rng, net, X, T, M = _problem(SHAPES[2], scaled=True, K=1)
    x = X[0]
    vw, vx = rng.standard_normal(net.n_weights), rng.standard_normal(x.shape)
    dY0, c = rng.standard_normal(net.n_outputs), rng.standard_normal(net.n_outputs)
    tr = net.trace(x, keep=True)
    Hw, Hx = tr.hvp(dY0, c, vw, vx)
    assert Hw.shape == (net.n_weights,) and Hx.shape == x.shape
    w = net.weights
    gp = net.backward(x + EPS * vx, dY0 + EPS * c, weights=w + EPS * vw)
    gm = net.backward(x - EPS * vx, dY0 - EPS * c, weights=w - EPS * vw)
    _close(Hw, (gp[0] - gm[0]) / (2 * EPS))
    _close(Hx, (gp[1] - gm[1]) / (2 * EPS))
    with pytest.raises(ValueError, match=r"RdY must have the shape of the outputs"):
        tr.hvp(dY0, np.ones(net.n_outputs + 1), vw)


def test_second_order_object_keeps_its_seed_and_knows_when_it_is_stale():
    rng, net, X, T, M = _problem(SHAPES[1], scaled=False)
    K = len(X)
    plan = net.plan
    so = SecondOrder(plan.new_buffers(K, plan.new_weights()))
    vw = rng.standard_normal(net.n_weights)
    so.at(net.weights, np.ascontiguousarray(X.T))
    with pytest.raises(ValueError, match="no cotangent at this point"):
        so.hvp(lambda RY: RY, v_w=vw)
    so.seed(np.ascontiguousarray(((so.bufs.Y.T - T) @ M).T))
    H1 = so.hvp(lambda RY: M @ RY, v_w=vw, want_x=False)[0].copy()
    _close(H1, _fd_hvp(net, X, T, M, vw, 0 * X)[0])
    # a first-order backward pass on the same buffers does not disturb the kept seed
    plan.run_backward(so.bufs, rng.standard_normal((net.n_outputs, K)))
    np.testing.assert_array_equal(so.hvp(lambda RY: M @ RY, v_w=vw, want_x=False)[0], H1)
    # a new point: the old seed is gone
    so.at(net.weights + 0.1, np.ascontiguousarray(X.T))
    with pytest.raises(ValueError, match="no cotangent at this point"):
        so.hvp(lambda RY: M @ RY, v_w=vw)
    with pytest.raises(ValueError, match=r"v_w must have shape"):
        so.tangent(np.ones(net.n_weights + 1))
    with pytest.raises(ValueError, match=r"dYT must have shape"):
        so.seed(np.ones((net.n_outputs, K + 1)))


def test_weight_objective_hessp_uses_the_same_products():
    # with sample weights and output scaling: C = s_k s_y^2 enters the seed and R{dE/dY}
    rng, net, X, T, _ = _problem(SHAPES[4], scaled=True, K=7)
    sw = rng.uniform(0.5, 2, len(X))
    obj = cp.WeightObjective(net, X, T, sample_weight=sw)
    x, p = obj.x0 + 0.05 * rng.standard_normal(obj.n), rng.standard_normal(obj.n)
    num = (obj.gradient(x + EPS * p) - obj.gradient(x - EPS * p)) / (2 * EPS)
    Hp = obj.hessp(x, p)
    _close(Hp, num)
    np.testing.assert_array_equal(obj.hessp(x, p), Hp)       # the kept point, same numbers
