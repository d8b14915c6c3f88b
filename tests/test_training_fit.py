"""fit(): known solutions, every method, early stopping, frozen weights, scaling, history."""

import numpy as np
import pytest

import ctrlprop as cp
from ctrlprop.planning.fit import FIT_METHODS
from ctrlprop.solvers.methods import METHODS

MINIMIZE_METHODS = [m for m in FIT_METHODS if METHODS[m.lower()].family == "minimize"]
LEAST_SQUARES_METHODS = [m for m in FIT_METHODS if METHODS[m.lower()].family == "least_squares"]

XOR_X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
XOR_Y = np.array([0.0, 1.0, 1.0, 0.0])


def linear_data(rng, K=40, offset=0.0, scale=1.0):
    """y = A x + b with x of arbitrary offset and scale."""
    A, b = rng.standard_normal((2, 3)), rng.standard_normal(2)
    X = offset + scale * rng.standard_normal((K, 3))
    return X, X @ A.T + b, A, b


TIGHT = {"L-BFGS-B": dict(ftol=0.0, gtol=1e-12), "Newton-CG": dict(xtol=1e-12)}


@pytest.mark.parametrize("method", ["L-BFGS-B", "lm", "trf", "Newton-CG"])
@pytest.mark.parametrize("scale", [True, False])
def test_linear_target_is_fit_exactly_by_a_linear_net(rng, method, scale):
    X, Y, A, b = linear_data(rng, offset=5.0, scale=3.0)
    net = cp.Network.mlp([3, 2], output="linear", seed=1)
    res = cp.fit(net, X, Y, method=method, scale=scale, maxiter=200, options=TIGHT.get(method))
    np.testing.assert_allclose(net.forward(X), Y, atol=1e-8)
    # the learned map in raw units is A, b whatever the internal scaling
    np.testing.assert_allclose(net.jacobian_inputs(X[:1])[0], A, atol=1e-8)
    np.testing.assert_allclose(net.forward(np.zeros(3)), b, atol=1e-7)
    np.testing.assert_array_equal(res.x, net.weights)
    assert res.method == method and res.fun < 1e-12


@pytest.mark.parametrize("method", ["L-BFGS-B", "BFGS", "Newton-CG", "trust-krylov", "trf"])
def test_xor_is_learned_by_a_small_tanh_net(method):
    net = cp.Network.mlp([2, 3, 1], hidden="tanh", seed=3)
    res = cp.fit(net, XOR_X, XOR_Y, method=method, maxiter=500)
    np.testing.assert_allclose(net.forward(XOR_X)[:, 0], XOR_Y, atol=1e-3)
    assert res.history["train_loss"][-1] < 1e-6


def test_adam_fits_a_smooth_target(rng):
    X = rng.uniform(-1, 1, (256, 2))
    Y = X[:, :1] * X[:, 1:] + 0.5 * X[:, :1]
    net = cp.Network.mlp([2, 8, 1], seed=0)
    res = cp.fit(net, X, Y, method="adam", maxiter=150,
                 options=dict(learning_rate=1e-2, batch_size=32))
    h = res.history["train_loss"]
    assert len(h) == 151 and h[-1] < 0.01 * h[0]
    mse = np.mean((net.forward(X) - Y) ** 2)
    assert mse < 1e-3
    assert res.nfev == 150 * 8                        # 8 minibatches per epoch


def test_l2_gives_ridge_regression_with_an_unpenalised_intercept(rng):
    X, Y, _, _ = linear_data(rng, K=30)
    Y = Y + 0.3 * rng.standard_normal(Y.shape)
    l2 = 5.0
    net = cp.Network.mlp([3, 2], output="linear")
    cp.fit(net, X, Y, method="lm", l2=l2, scale=False, maxiter=50)
    # closed form: minimise 1/2 |Xb B - Y|^2 + 1/2 l2 |A|^2 with Xb = [X, 1], B = [A^T; b]
    Xb = np.hstack([X, np.ones((30, 1))])
    B = np.linalg.solve(Xb.T @ Xb + l2 * np.diag([1, 1, 1, 0]), Xb.T @ Y)
    np.testing.assert_allclose(net.jacobian_inputs(X[:1])[0], B[:3].T, rtol=1e-7)
    np.testing.assert_allclose(net.forward(np.zeros(3)), B[3], rtol=1e-7)


def test_sample_weight_zero_ignores_samples(rng):
    X, Y, A, b = linear_data(rng)
    Y[:5] += 10.0                                     # outliers ...
    sw = np.ones(40)
    sw[:5] = 0.0                                      # ... switched off
    net = cp.Network.mlp([3, 2], output="linear")
    cp.fit(net, X, Y, sample_weight=sw, method="lm")
    np.testing.assert_allclose(net.jacobian_inputs(X[:1])[0], A, atol=1e-8)


@pytest.mark.parametrize("method", list(MINIMIZE_METHODS) + list(LEAST_SQUARES_METHODS)
                         + ["adam"])
def test_every_method_trains_and_reports(rng, method):
    X = rng.uniform(-1, 1, (40, 2))
    Y = np.c_[np.sin(2 * X[:, 0]) * X[:, 1], X[:, 0] ** 2]
    net = cp.Network.mlp([2, 5, 2], seed=1)
    # (TNC counts function evaluations, several per iteration)
    res = cp.fit(net, X, Y, method=method, maxiter=60 if method == "TNC" else 15, validation=0.25,
                 options=dict(learning_rate=0.03) if method == "adam" else None)
    h = res.history
    assert h["train_loss"][-1] < 0.7 * h["train_loss"][0], method
    assert len(h["iteration"]) == len(h["train_loss"]) == len(h["val_loss"]) == res.nit + 1
    np.testing.assert_array_equal(h["iteration"], np.arange(res.nit + 1))
    assert np.all(np.diff(h["time"]) >= 0)
    assert res.best_iteration == int(np.argmin(h["val_loss"]))
    assert res.val_loss == h["val_loss"].min()
    np.testing.assert_array_equal(net.weights, res.x)
    assert res.nfev >= 1 and isinstance(res.message, str)


def test_history_reports_mean_squared_errors(rng):
    X, Y, _, _ = linear_data(rng)
    Y = np.tanh(Y)
    net = cp.Network.mlp([3, 4, 2], seed=0)
    res = cp.fit(net, X, Y, maxiter=25, l2=0.01)
    h = res.history
    assert h["val_loss"] is None
    assert np.all(np.diff(h["train_loss"]) <= 1e-12 * h["train_loss"][0] + 1e-3 * 0.01)
    assert h["train_loss"][-1] == pytest.approx(np.mean((net.forward(X) - Y) ** 2), rel=1e-10)


def test_l_bfgs_b_train_loss_never_increases_without_penalty(rng):
    X, Y, _, _ = linear_data(rng)
    net = cp.Network.mlp([3, 4, 2], seed=0)
    h = cp.fit(net, X, np.tanh(Y), maxiter=40).history["train_loss"]
    assert np.all(np.diff(h) <= 0)


def test_early_stopping_restores_the_best_weights(rng):
    # validation targets are half the training targets: the validation loss falls while
    # the fit approaches them, then rises as it goes on to the training targets
    X, Y, A, b = linear_data(rng, K=50)
    Xv = rng.standard_normal((20, 3))
    Yv = 0.5 * (Xv @ A.T + b)
    net = cp.Network.mlp([3, 2], output="linear", seed=2)
    net.weights = np.zeros(net.n_weights)                 # predictions start at 0
    seen = {}

    def record(info):
        seen[info.nit] = info.x.copy()
    res = cp.fit(net, X, Y, method="adam", validation=(Xv, Yv), patience=5, maxiter=300,
                 scale=False, callback=record, options=dict(learning_rate=0.05, batch_size=10))
    h = res.history["val_loss"]
    best = int(np.argmin(h))
    assert 0 < best < res.nit, "the validation loss must have risen after its minimum"
    assert res.nit == best + 5 and res.success and "early stopping" in res.message
    assert res.best_iteration == best
    np.testing.assert_array_equal(net.weights, seen[best])
    assert np.mean((net.forward(Xv) - Yv) ** 2) == pytest.approx(h[best], rel=1e-12)


def test_validation_fraction_splits_and_is_seeded(rng):
    X, Y, _, _ = linear_data(rng, K=40)
    r1 = cp.fit(cp.Network.mlp([3, 2], output="linear"), X, Y, validation=0.25, maxiter=3,
                seed=7)
    r2 = cp.fit(cp.Network.mlp([3, 2], output="linear"), X, Y, validation=0.25, maxiter=3,
                seed=7)
    np.testing.assert_array_equal(r1.history["val_loss"], r2.history["val_loss"])
    # the scaling is learned from the 30 training rows only
    net = cp.Network.mlp([3, 2], output="linear")
    cp.fit(net, X, Y, validation=0.25, maxiter=1, seed=7)
    perm = np.random.default_rng(7).permutation(40)
    tr = np.sort(perm[10:])
    np.testing.assert_allclose(net.input_scaling[0], X[tr].mean(0), rtol=1e-12)
    np.testing.assert_allclose(net.output_scaling[1], Y[tr].std(0), rtol=1e-12)


@pytest.mark.parametrize("method", ["L-BFGS-B", "Newton-CG", "lm", "trf", "adam"])
def test_frozen_weights_stay_bit_identical(rng, method):
    X = rng.uniform(-1, 1, (30, 2))
    Y = np.c_[np.sin(X[:, 0]), X[:, 0] * X[:, 1]]
    net = cp.Network.mlp([2, 4, 4, 2], seed=5)
    mask = rng.random(net.n_weights) < 0.5
    w0 = net.weights.copy()
    res = cp.fit(net, X, Y, method=method, trainable=mask, scale=False, maxiter=10, l2=0.1)
    assert np.array_equal(net.weights[~mask], w0[~mask])
    assert net.weights[~mask].tobytes() == w0[~mask].tobytes()
    assert not np.array_equal(net.weights[mask], w0[mask])
    assert res.history["train_loss"][-1] < res.history["train_loss"][0]


def test_training_only_the_output_units(rng):
    net = cp.Network.mlp([2, 4, 2], seed=5)              # units 2..5 hidden, 6 and 7 output
    X, w0 = rng.standard_normal((20, 2)), net.weights.copy()
    cp.fit(net, X, X[:, ::-1], trainable=[6, 7], scale=False, maxiter=20)
    into_hidden = net.units_weights([2, 3, 4, 5])
    np.testing.assert_array_equal(net.weights[into_hidden], w0[into_hidden])
    assert not np.array_equal(net.weights[~into_hidden], w0[~into_hidden])


def test_scaling_is_learned_stored_and_survives_save_load(rng, tmp_path):
    X = 100.0 + 20.0 * rng.standard_normal((60, 2))       # raw units far from 0 and 1
    Y = np.c_[50.0 + np.sin(X[:, 0] / 20.0), 3.0 * np.cos(X[:, 1] / 20.0)]
    net = cp.Network.mlp([2, 6, 2], seed=0)
    cp.fit(net, X, Y, maxiter=300)
    np.testing.assert_allclose(net.input_scaling[0], X.mean(0))
    np.testing.assert_allclose(net.input_scaling[1], X.std(0))
    np.testing.assert_allclose(net.output_scaling[0], Y.mean(0))
    np.testing.assert_allclose(net.output_scaling[1], Y.std(0))
    path = tmp_path / "arm.npz"
    net.save(path)
    back = cp.load(path)
    np.testing.assert_array_equal(back.forward(X), net.forward(X))
    for a, b in zip(back.input_scaling + back.output_scaling,
                    net.input_scaling + net.output_scaling):
        np.testing.assert_array_equal(a, b)
    rel = np.sqrt(np.mean((back.forward(X) - Y) ** 2, axis=0)) / Y.std(0)
    assert np.all(rel < 0.05)                             # a real fit in raw units
    assert cp.check_gradients(back, X[:3], tol=1e-6).ok   # raw-unit gradients after loading


def test_scale_false_keeps_the_existing_scaling(rng):
    X, Y, _, _ = linear_data(rng)
    net = cp.Network.mlp([3, 2], output="linear")
    net.set_scaling([1, 2, 3], [2, 2, 2], None, None)
    cp.fit(net, X, Y, scale=False, maxiter=5)
    np.testing.assert_array_equal(net.input_scaling[0], [1, 2, 3])
    assert net.output_scaling is None


def test_callback_sees_every_iteration_and_can_stop_the_fit(rng):
    X, Y, _, _ = linear_data(rng)
    net = cp.Network.mlp([3, 4, 2], seed=0)
    calls = []

    def cb(info):
        calls.append((info.nit, info.train_loss, info.x.shape))
        if info.nit == 4:
            raise StopIteration
    res = cp.fit(net, X, Y, callback=cb, maxiter=100)
    assert [c[0] for c in calls] == [0, 1, 2, 3, 4] and res.nit == 4
    assert not res.success and res.status == 2 and "callback" in res.message
    assert all(c[2] == (net.n_weights,) for c in calls)
    assert np.array_equal([c[1] for c in calls], res.history["train_loss"])
    res = cp.fit(cp.Network.mlp([3, 4, 2]), X, Y, callback=lambda info: info.nit >= 2)
    assert res.nit == 2


def test_progress_is_off_by_default_and_prints_when_asked(rng, capsys):
    X, Y, _, _ = linear_data(rng)
    cp.fit(cp.Network.mlp([3, 2]), X, Y, maxiter=3)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
    cp.fit(cp.Network.mlp([3, 2]), X, Y, maxiter=3, progress=True, validation=0.2)
    err = capsys.readouterr().err
    assert "ctrlprop.fit" in err and "3/3" in err and "loss=" in err and "val=" in err


def test_a_non_finite_loss_stops_and_keeps_the_last_finite_weights(rng):
    # Adam's first step at a huge learning rate sends the weights to ~1e200: the loss overflows
    X, Y, _, _ = linear_data(rng)
    net = cp.Network.mlp([3, 2], output="linear")
    w0 = net.weights.copy()
    with pytest.warns(cp.ConvergenceWarning, match="non-finite"):
        res = cp.fit(net, X, Y, method="adam", scale=False,
                     options=dict(learning_rate=1e200, batch_size=8))
    assert not res.success and "non-finite" in res.message and res.status == 4
    np.testing.assert_array_equal(net.weights, w0)        # iteration 0: the last finite one
    assert np.isfinite(res.fun)


def test_a_nan_in_a_line_search_stops_a_scipy_method(rng):
    # a unit whose output is NaN above z = 2: L-BFGS-B's first long step reaches it
    cp.register_transfer("test_train_nan_above", lambda z: np.where(z < 2, z, np.nan),
                         lambda z: np.ones_like(z), lambda z: np.zeros_like(z), overwrite=True)
    net = cp.Network.from_edges(1, [(0, 1)], ["test_train_nan_above"], [1])
    net.weights = [0.1, 0.0]
    X = np.linspace(0, 1, 20)[:, None]
    with pytest.warns(cp.ConvergenceWarning, match="non-finite"):
        res = cp.fit(net, X, 10 * X, scale=False)
    assert not res.success and "non-finite" in res.message
    assert np.all(np.isfinite(net.weights))
    last = res.history["train_loss"][-1]
    assert np.mean((net.forward(X) - 10 * X) ** 2) == pytest.approx(last, rel=1e-12)


def test_threads_are_chosen_by_size_and_overridable(rng):
    X, Y, _, _ = linear_data(rng)
    assert cp.fit(cp.Network.mlp([3, 2]), X, Y, maxiter=1).threads == 1
    assert cp.fit(cp.Network.mlp([3, 2]), X, Y, maxiter=1, threads=2).threads == 2


@pytest.mark.parametrize("method", ["L-BFGS-B", "trust-krylov", "trf", "adam"])
def test_fit_on_random_dags_with_weights_and_validation(method):
    from conftest import random_dag
    for seed in range(3):
        rng = np.random.default_rng(seed)
        net = random_dag(rng, n_in=3, n_comp=6, n_out=2)
        X = 3.0 + 2.0 * rng.standard_normal((60, 3))
        Y = np.c_[np.tanh(X[:, 0] - 3) * X[:, 1], 0.1 * X[:, 2] ** 2][:, :net.n_outputs]
        sw = rng.uniform(0.5, 1.5, 60)
        val = (X[:20], Y[:20], sw[:20])
        res = cp.fit(net, X[20:], Y[20:], method=method, sample_weight=sw[20:], validation=val,
                     maxiter=30, options=dict(learning_rate=0.02) if method == "adam" else None)
        h = res.history
        assert h["val_loss"].min() < h["val_loss"][0], (method, seed)
        assert h["train_loss"].min() < h["train_loss"][0], (method, seed)
        s = sw[:20, None]
        val_mse = np.sum(s * (net.forward(X[:20]) - Y[:20]) ** 2) / (s.sum() * net.n_outputs)
        assert val_mse == pytest.approx(h["val_loss"].min(), rel=1e-10)


def test_least_squares_maxiter_is_max_nfev():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((40, 2))
    Y = np.sin(X[:, :1]) + X[:, 1:] ** 2
    net = cp.Network.mlp([2, 5, 1], seed=0)
    with pytest.warns(cp.ConvergenceWarning, match="iteration limit"):
        res = cp.fit(net, X, Y, method="trf", maxiter=3)
    assert res.nfev <= 3 and res.status == 1
    for key in ("maxiter", "max_nfev"):
        with pytest.raises(ValueError, match="is an iteration limit: give it as the maxiter="):
            cp.fit(net, X, Y, method="trf", options={key: 3})
