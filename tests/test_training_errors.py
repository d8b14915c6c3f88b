"""fit(), scaling helpers and thread control: every bad input raises a clear error and leaves
the network unchanged."""

import numpy as np
import pytest
from threadpoolctl import threadpool_info

import ctrlprop as cp
from ctrlprop.core.threads import SMALL_WORK, resolve_threads

X = np.random.default_rng(0).standard_normal((20, 3))
Y = X[:, :2] ** 2


@pytest.mark.parametrize("args, kwargs, err, match", [
    ((X, Y[:19]), {}, ValueError, "X has 20 rows but Y has 19"),
    ((X[:0], Y[:0]), {}, ValueError, "X is empty"),
    ((np.where(X > 1, np.nan, X), Y), {}, ValueError, "X contains NaN or inf"),
    ((X, np.where(Y > 1, np.inf, Y)), {}, ValueError, "Y contains NaN or inf"),
    ((X[:, :2], Y), {}, ValueError, r"X must have shape \(K, 3\)"),
    ((X, Y), dict(method="sgd"), ValueError, "unknown method 'sgd' for fit.*L-BFGS-B.*adam"),
    ((X, Y), dict(method="Nelder-Mead"), ValueError, "unknown method 'Nelder-Mead' for fit"),
    ((X, Y), dict(method="trust-exact"), ValueError, "not offered here"),
    ((X, Y), dict(method=3), TypeError, "method must be a string or None, got int"),
    ((X, Y), dict(options={"maxiter": 3}), ValueError, r"options\['maxiter'\] is an iteration"),
    ((X, Y), dict(options=[1]), TypeError, "options must be a dict"),
    ((X, Y), dict(progress="yes"), TypeError, "progress must be True or False"),
    ((X, Y), dict(validation=1.5), ValueError, "validation fraction 1.5"),
    ((X, Y), dict(validation=0.01), ValueError, "leaves an empty"),
    ((X, Y), dict(validation="20%"), TypeError, "validation must be"),
    ((X, Y), dict(validation=(X,)), ValueError, r"\(X_val, Y_val\)"),
    ((X, Y), dict(validation=(X[:5], Y[:4])), ValueError, "X_val has 5 rows but Y_val has 4"),
    ((X, Y), dict(validation=(X[:5], Y[:5] * np.nan)), ValueError, "Y_val contains NaN"),
    ((X, Y), dict(maxiter=-1), ValueError, "maxiter must be"),
    ((X, Y), dict(maxiter=2.5), TypeError, "maxiter must be an integer"),
    ((X, Y), dict(patience=0), ValueError, "patience must be"),
    ((X, Y), dict(threads=0), ValueError, "threads must be"),
    ((X, Y), dict(threads="many"), TypeError, "threads must be"),
    ((X, Y), dict(callback="print"), TypeError, "callback must be callable"),
    ((X, Y), dict(sample_weight=np.ones(3)), ValueError, r"sample_weight must have shape \(20,\)"),
    ((X, Y), dict(trainable=[0]), ValueError, "unit 0 is not a computing unit"),
    ((X, Y), dict(l2=np.nan), ValueError, "l2 must be"),
    ((X, Y), dict(method="adam", options=dict(lr=0.1)), ValueError, "unknown adam option"),
    ((X, Y), dict(method="adam", options=dict(batch_size=0)), ValueError, "out of range"),
    ((X, Y), dict(method="lm", options=dict(jacobian="operator")), ValueError, "needs the dense"),
    ((X, Y), dict(method="trf", options=dict(jacobian="sparse")), ValueError, "jacobian"),
])
def test_bad_input_raises_and_leaves_the_network_unchanged(args, kwargs, err, match):
    net = cp.Network.mlp([3, 4, 2], seed=0)
    net.set_scaling([1, 2, 3], [1, 1, 1], None, None)
    w0, sc0 = net.weights.copy(), net.input_scaling
    with pytest.raises(err, match=match):
        cp.fit(net, *args, **kwargs)
    np.testing.assert_array_equal(net.weights, w0)
    assert net.input_scaling is sc0 and net.output_scaling is None


def test_rescaling_frozen_weights_is_refused():
    net = cp.Network.mlp([3, 4, 2], seed=0)
    mask = net.units_weights([7, 8])
    with pytest.raises(ValueError, match="some weights are frozen.*scale=False"):
        cp.fit(net, X, Y, trainable=mask)
    assert net.input_scaling is None
    cp.fit(net, X, Y, trainable=mask, scale=False, maxiter=2)          # explicit: fine
    cp.fit(net, X, Y, maxiter=2)                                       # learns the scaling
    cp.fit(net, X, Y, trainable=mask, maxiter=2)                       # same scaling: fine


def test_data_scaling_and_standardize():
    A = np.c_[np.arange(5.0), np.full(5, 7.0)]
    m, s = cp.data_scaling(A)
    np.testing.assert_allclose(m, [2.0, 7.0])
    np.testing.assert_allclose(s, [np.sqrt(2.0), 1.0])                # constant column: 1
    net = cp.learn_scaling(cp.Network.mlp([2, 1]), A, A[:, :1])
    Xi, Yi = cp.standardize(net, A, A[:, :1])
    np.testing.assert_allclose(Xi, (A - m) / s)
    np.testing.assert_allclose(Yi.mean(0), 0, atol=1e-15)
    with pytest.raises(ValueError, match="non-empty 2-D"):
        cp.data_scaling(np.ones(3))
    with pytest.raises(ValueError, match="NaN or inf"):
        cp.data_scaling([[1.0], [np.nan]])
    with pytest.raises(ValueError, match=r"X must have shape \(K, 2\)"):
        cp.standardize(net, np.ones((3, 4)))
    with pytest.raises(ValueError, match="needs X, Y or both"):
        cp.standardize(net)


def blas_threads_now():
    """Thread counts of the loaded BLAS libraries."""
    return [d["num_threads"] for d in threadpool_info() if d["user_api"] == "blas"]


def test_blas_threads_limits_and_restores():
    before = blas_threads_now()
    with cp.blas_threads(1):
        assert set(blas_threads_now()) == {1}
    assert blas_threads_now() == before
    with cp.blas_threads(None):
        assert blas_threads_now() == before
    with pytest.raises(ValueError, match="positive integer"):
        with cp.blas_threads(-2):
            pass


def test_thread_rule_by_problem_size():
    assert cp.auto_threads(1000, 1000) == 1
    assert cp.auto_threads(100_000, 10_000) is None
    n = int(SMALL_WORK / 6 / 1000)
    assert cp.auto_threads(n - 1, 1000) == 1 and cp.auto_threads(n + 1, 1000) is None
    assert resolve_threads(None, 10, 10) == 1 and resolve_threads(3, 10, 10) == 3
    with pytest.raises(TypeError):
        resolve_threads(True, 10, 10)


def test_minibatch_rejects_bad_indices():
    net = cp.Network.mlp([2, 3, 1], seed=0)
    obj = cp.WeightObjective(net, np.zeros((5, 2)), np.zeros((5, 1)))
    for bad in ([], [0, 5], [-1], [[0, 1]], [0.5]):
        with pytest.raises(ValueError, match=r"sample indices in 0..4"):
            obj.minibatch(obj.x0, bad)
