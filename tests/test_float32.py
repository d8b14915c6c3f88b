"""float32 training and rollouts against the float64 reference.

The float32 plan runs the same steps in single precision, so results agree with float64 to
float32 rounding (1e-5 relative here, a few hundred float32 ulps over the passes and steps),
while everything handed back to solvers and users is float64.  The derivatives themselves
are checked against finite differences in float64 (tests/test_gradients.py); here the
float32 gradients are compared with those.
"""

import pickle
import warnings

import numpy as np
import pytest

import ctrlprop as cp
from conftest import random_dag

TOL = 1e-5


def rel(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return np.abs(a - b).max() / max(np.abs(b).max(), 1e-30)


def test_float32_plan_matches_float64_on_random_dags():
    rng = np.random.default_rng(0)
    for _ in range(15):
        net = random_dag(rng, transfers=["tanh", "logistic", "softplus", "sin", "linear",
                                         "relu"])
        net.set_scaling(rng.standard_normal(net.n_inputs), rng.uniform(0.5, 2, net.n_inputs),
                        rng.standard_normal(net.n_outputs), rng.uniform(0.5, 2, net.n_outputs))
        X = rng.standard_normal((6, net.n_inputs))
        dY = rng.standard_normal((6, net.n_outputs))
        p32 = net.plan_for(np.float32)
        assert p32 is net.plan_for("float32") and p32 is not net.plan
        args = (net.weights, X, net.input_scaling, net.output_scaling)
        t32, t64 = p32.forward(*args, keep=True), net.plan.forward(*args, keep=True)
        assert t32._bufs.Obig.dtype == np.float32 and t32._bufs.weights.WD.dtype == np.float32
        assert rel(t32.outputs(), t64.outputs()) < TOL
        for a, b in zip(t32.backward(dY), t64.backward(dY)):
            assert rel(a, b) < TOL
        assert rel(t32.jacobian_inputs(), t64.jacobian_inputs()) < TOL


def test_weight_objective_float32():
    rng = np.random.default_rng(1)
    net = cp.Network.mlp([5, 12, 3], seed=2)
    X, Y = rng.standard_normal((40, 5)), rng.standard_normal((40, 3))
    sw = rng.uniform(0.5, 2, 40)
    net.set_scaling(X.mean(0), X.std(0), Y.mean(0), Y.std(0))
    o32 = cp.WeightObjective(net, X, Y, l2=0.01, sample_weight=sw, dtype=np.float32)
    o64 = cp.WeightObjective(net, X, Y, l2=0.01, sample_weight=sw)
    w = net.weights
    (E32, g32), (E64, g64) = o32(w), o64(w)
    assert isinstance(E32, float) and g32.dtype == np.float64
    assert abs(E32 - E64) < TOL * E64 and rel(g32, g64) < TOL
    idx = np.arange(3, 17)
    for a, b in zip(o32.minibatch(w, idx), o64.minibatch(w, idx)):
        assert rel(a, b) < TOL
    assert rel(o32.residuals(w), o64.residuals(w)) < TOL
    assert rel(o32.jacobian(w), o64.jacobian(w)) < TOL
    p = rng.standard_normal(w.size)
    assert rel(o32.hessp(w, p), o64.hessp(w, p)) < 1e-4
    back = pickle.loads(pickle.dumps(o32))
    assert back.dtype == np.float32 and back(w)[0] == E32


def test_fit_float32_trains_like_float64():
    rng = np.random.default_rng(2)
    X = rng.uniform(-1, 1, (600, 3))
    Y = np.stack([np.sin(2 * X[:, 0]) * X[:, 1], X[:, 2] ** 2], axis=1)
    results = {}
    for dt in (np.float64, np.float32):
        net = cp.Network.mlp([3, 16, 2], seed=3)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = cp.fit(net, X, Y, method="adam", maxiter=40, seed=0, dtype=dt,
                         options={"learning_rate": 0.01})
        assert net.weights.dtype == np.float64 and res.x.dtype == np.float64
        results[dt] = res.fun
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first = cp.fit(cp.Network.mlp([3, 16, 2], seed=3), X, Y, method="adam", maxiter=1,
                       options={"learning_rate": 0.01}).fun
    assert results[np.float32] < 0.2 * first                 # it learns ...
    assert abs(results[np.float32] - results[np.float64]) < 1e-3 * results[np.float64]


def test_float32_rollouts_bptt_optimizers_and_mpc():
    rng = np.random.default_rng(4)
    net = cp.Network.mlp([6, 16, 16, 4], hidden="tanh", seed=5)
    net.set_scaling(rng.standard_normal(6), rng.uniform(0.5, 2, 6), np.zeros(4),
                    np.full(4, 0.1))
    m64, m32 = cp.Dynamics(net, 4, residual=True), cp.Dynamics(net, 4, residual=True,
                                                                 dtype=np.float32)
    assert m32.dtype == np.float32 and "float32" in repr(m32)
    x0, U = rng.standard_normal(4), 0.3 * rng.standard_normal((30, 2))
    cost = dict(goal=[0.5] * 4, Q=1.0, Qf=10.0, R=0.1)
    for a, b in zip(cp.bptt(m32, x0, U, cost, wrt_x0=True), cp.bptt(m64, x0, U, cost,
                                                                     wrt_x0=True)):
        assert np.asarray(a).dtype == np.float64 and rel(a, b) < TOL
    assert rel(m32.rollout(x0, U), m64.rollout(x0, U)) < TOL
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for method in ("L-BFGS-B", "batch-lbfgs"):
            r32 = cp.optimize_trajectory(m32, x0, 30, cost, method=method, bounds=(-2, 2))
            r64 = cp.optimize_trajectory(m64, x0, 30, cost, method=method, bounds=(-2, 2))
            assert abs(r32.fun - r64.fun) < 1e-4 * r64.fun, method
            assert r32.controls.min() >= -2 and r32.controls.max() <= 2
        res = cp.mpc(m32, m64.step, x0, 4, 10, cost=cost, bounds=(-2, 2))
    assert res.states.dtype == np.float64 and np.isfinite(res.states).all()
    ctrl = cp.Network.mlp([4, 6, 2], seed=6)
    X0 = rng.standard_normal((3, 4))
    g32 = cp.ControllerObjective(m32, ctrl, X0, 20, cost)(ctrl.weights)
    g64 = cp.ControllerObjective(m64, ctrl, X0, 20, cost)(ctrl.weights)
    assert abs(g32[0] - g64[0]) < TOL * g64[0] and rel(g32[1], g64[1]) < TOL
    back = pickle.loads(pickle.dumps(m32))
    assert back.dtype == np.float32


@pytest.mark.parametrize("bad", [np.int32, np.float16, "half", None, True])
def test_bad_dtype_is_named(bad):
    net = cp.Network.mlp([3, 4, 2], seed=0)
    for call in (lambda: cp.Dynamics(net, 2, dtype=bad),
                 lambda: cp.WeightObjective(net, np.zeros((4, 3)), np.zeros((4, 2)), dtype=bad),
                 lambda: cp.fit(net, np.zeros((4, 3)), np.zeros((4, 2)), dtype=bad)):
        with pytest.raises((ValueError, TypeError), match="dtype"):
            call()


def test_plan_for_checks_dtype_and_float32_boundaries_are_float64():
    net = cp.Network.mlp([3, 4, 2], seed=0)
    for bad in (np.float16, "int64", None):
        with pytest.raises((ValueError, TypeError), match="dtype"):
            net.plan_for(bad)
    X = np.ones((2, 3))
    tr = net.plan_for(np.float32).forward(net.weights, X)
    gw, gx = tr.backward(np.ones((2, 2)))
    assert gw.dtype == gx.dtype == np.float64 and tr.jvp(v_x=X).dtype == np.float64
    m32 = cp.Dynamics(cp.Network.mlp([4, 5, 3], seed=1), 3, dtype=np.float32)
    ctl = cp.ControllerObjective(m32, cp.Network.mlp([3, 4, 1], seed=2), np.ones((2, 3)), 5)
    S, Uc = ctl.rollout()
    assert S.dtype == Uc.dtype == np.float64


@pytest.mark.parametrize("propagation", ["members", "mean"])
def test_float32_ensemble_rollouts_gradients_and_sampling(propagation):
    """Dynamics(ensemble, dtype=float32): the members' passes in float32 (their buffers and
    weight copy), the costs, gradients and states against float64 to float32 rounding, for
    both propagations with the disagreement penalty; the samplers plan through it."""
    rng = np.random.default_rng(7)
    net = cp.Network.mlp([5, 12, 12, 3], hidden="tanh", seed=8)
    net.set_scaling(rng.standard_normal(5), rng.uniform(0.5, 2, 5), np.zeros(3),
                    np.full(3, 0.2))
    ens = cp.Ensemble(net, 4, seed=9)
    kw = dict(residual=True, propagation=propagation, disagreement=[0.2, 0.5, 0.1])
    m64, m32 = cp.Dynamics(ens, 3, **kw), cp.Dynamics(ens, 3, dtype=np.float32, **kw)
    cost = cp.TrajectoryCost(goal=[0.4, -0.3, 0.2], Q=1.0, Qf=5.0, R=0.1)
    X0, U = rng.standard_normal((5, 3)), 0.5 * rng.standard_normal((5, 12, 2))
    o32 = cp.TrajectoryObjective(m32, X0, 12, cost)
    o64 = cp.TrajectoryObjective(m64, X0, 12, cost)
    assert o32._ur.bufs[0].O[1].dtype == np.float32 and o32._ur.wts.WD.dtype == np.float32
    f32, g32, gx32 = o32.value_and_grad(U, wrt_x0=True)
    f64, g64, gx64 = o64.value_and_grad(U, wrt_x0=True)
    for a, b in ((f32, f64), (g32, g64), (gx32, gx64)):
        assert np.asarray(a).dtype == np.float64 and 0 < rel(a, b) < TOL
    assert 0 < rel(o32.costs(U.ravel()), o64.costs(U.ravel())) < TOL
    assert rel(m32.rollout(X0, U), m64.rollout(X0, U)) < TOL
    before = o32.value(U.ravel())
    ens.weights = ens.weights * 1.05                 # new member weights are picked up
    after = o32.value(U.ravel())
    assert rel(after, before) > 1e-3
    assert rel(after, cp.TrajectoryObjective(m64, X0, 12, cost).value(U.ravel())) < TOL
    r32 = cp.optimize_trajectory(m32, X0[0], 12, cost, method="cem-gd", bounds=(-1, 1),
                                 maxiter=2, options=dict(population=40, elites=8, workers=2))
    r64 = cp.optimize_trajectory(m64, X0[0], 12, cost, method="cem-gd", bounds=(-1, 1),
                                 maxiter=2, options=dict(population=40, elites=8, workers=2))
    assert abs(r32.fun - r64.fun) < 1e-3 * abs(r64.fun)
    assert np.abs(r32.controls).max() <= 1
    back = pickle.loads(pickle.dumps(m32))
    assert back.dtype == np.float32
    assert rel(cp.TrajectoryObjective(back, X0, 12, cost).value(U.ravel()),
               o64.value(U.ravel())) < TOL


def test_astype_and_a_float32_planner():
    """Dynamics.astype keeps everything but the rollouts' dtype and shares the network;
    Planner(dtype=np.float32) plans through it, as the float64 planner does to rounding."""
    rng = np.random.default_rng(12)
    net = cp.Network.mlp([5, 10, 3], seed=13)
    ens = cp.Ensemble(net, 3, seed=14)
    for m64 in (cp.Dynamics(net, 3, residual=True),
                cp.Dynamics(ens, 3, residual=True, propagation="mean",
                            disagreement=[0.5, 0.1, 0.2])):
        assert m64.astype(np.float64) is m64
        m32 = m64.astype(np.float32)
        assert m32.dtype == np.float32 and m32.net is m64.net
        assert (m32.residual, m32.n_exo, m32.propagation) == (m64.residual, m64.n_exo,
                                                              m64.propagation)
        np.testing.assert_array_equal(m32.disagreement, m64.disagreement)
        assert m32.astype(np.float64).dtype == np.float64
        x0, U = rng.standard_normal(3), rng.uniform(-1, 1, (6, 2))
        assert 0 < rel(m32.rollout(x0, U), m64.rollout(x0, U)) < TOL
        cost = cp.TrajectoryCost(goal=[0.3, -0.2, 0.1], Q=1.0, R=0.1)
        p32 = cp.Planner(m64, 6, cost, bounds=(-1, 1), maxiter=30, dtype=np.float32)
        p64 = cp.Planner(m64, 6, cost, bounds=(-1, 1), maxiter=30)
        assert p32.model.dtype == np.float32 and p64.model is m64
        s32, s64 = p32.plan(x0), p64.plan(x0)
        assert abs(s32.fun - s64.fun) < 1e-4 * abs(s64.fun)
        assert np.abs(s32.plan).max() <= 1
