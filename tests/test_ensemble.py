"""Ensembles: the stacked engine against finite differences and against its members, the
bootstrap fit, and planning under an ensemble (expected cost, disagreement penalty)."""

import pickle

import numpy as np
import pytest

import ctrlprop as cp
from ctrlprop.core.gradcheck import check_objective, numerical_gradient
from ctrlprop.objectives.ensemble import EnsembleObjective, bootstrap_counts


def _dag():
    """A sparse DAG: skip connections, mixed transfers, an output below the top level."""
    edges = [(0, 3), (1, 3), (1, 4), (2, 4), (3, 5), (4, 5), (0, 5), (3, 6), (5, 6), (2, 6)]
    return cp.Network.from_edges(3, edges, ["tanh", "logistic", "softplus", "sin"], [6, 3])


SHAPES = {
    "mlp": lambda: cp.Network.mlp([3, 5, 4, 2], seed=3),
    "dag": _dag,
    "relu-linear": lambda: cp.Network.mlp([3, 6, 2], hidden="relu", seed=1),
}


def _scaled(net):
    net.set_scaling(np.array([0.1, -0.2, 0.3]), np.array([1.5, 0.5, 2.0]),
                    np.array([0.2, -0.1]), np.array([0.7, 1.3]))
    return net


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("scaled", [False, True])
@pytest.mark.parametrize("per_member", [False, True])
def test_gradients_against_finite_differences(shape, scaled, per_member):
    net = SHAPES[shape]()
    if scaled:
        _scaled(net)
    ens = cp.Ensemble(net, 4, seed=5)
    assert not np.allclose(ens.weights[0], ens.weights[1])       # members differ
    rng = np.random.default_rng(0)
    X = rng.uniform(-1.5, 1.5, (4, 6, 3) if per_member else (6, 3))
    chk = cp.check_gradients(ens, X)
    assert chk.ok, chk
    chk1 = cp.check_gradients(ens, X[0] if not per_member else X[:, :1])
    assert chk1.ok, chk1


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_members_match_their_networks(shape):
    net = _scaled(SHAPES[shape]())
    ens = cp.Ensemble(net, 3, seed=2)
    rng = np.random.default_rng(1)
    X = rng.standard_normal((5, 3))
    dY = rng.standard_normal((3, 5, 2))
    Y = ens.forward(X)
    gw, gx = ens.backward(X, dY)
    Jx, Jw = ens.jacobian_inputs(X), ens.jacobian_weights(X)
    gx_sum = 0
    for e in range(3):
        m = ens.member(e)
        np.testing.assert_allclose(Y[e], m.forward(X), rtol=1e-13, atol=1e-13)
        gwe, gxe = m.backward(X, dY[e])
        np.testing.assert_allclose(gw[e], gwe, rtol=1e-12, atol=1e-13)
        gx_sum = gx_sum + gxe
        np.testing.assert_allclose(Jx[e], m.jacobian_inputs(X), rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(Jw[e], m.jacobian_weights(X), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(gx, gx_sum, rtol=1e-12, atol=1e-13)   # shared X: the sum


def test_jacobians_against_finite_differences():
    ens = cp.Ensemble(_scaled(_dag()), 3, seed=4)
    x = np.array([0.3, -0.7, 0.9])
    J = ens.jacobian_inputs(x)                                       # (E, n_out, n_in)
    for e in range(3):
        for j in range(2):
            num = numerical_gradient(lambda v: ens.forward(v)[e, j], x)
            np.testing.assert_allclose(J[e, j], num, rtol=1e-6, atol=1e-8)
    Jw = ens.jacobian_weights(x[None])                               # (E, n_out, n_w)
    W0 = ens.weights.copy()
    for e in range(3):
        for j in range(2):
            def f(w, e=e, j=j):
                W = W0.copy()
                W[e] = w
                return ens.forward(x, weights=W)[e, j]
            np.testing.assert_allclose(Jw[e, j], numerical_gradient(f, W0[e]), rtol=1e-6,
                                       atol=1e-8)


def test_identical_members_equal_the_network():
    net = _scaled(cp.Network.mlp([3, 7, 2], seed=9))
    ens = cp.Ensemble([net, net, net])
    X = np.random.default_rng(2).standard_normal((4, 3))
    np.testing.assert_allclose(ens.forward(X)[1], net.forward(X), rtol=1e-13, atol=1e-15)
    mean, var = ens.predict(X)
    np.testing.assert_allclose(mean, net.forward(X), rtol=1e-14)
    assert np.all(var < 1e-28)


def test_from_list_checks_structure_and_scaling():
    a, b = cp.Network.mlp([3, 4, 2]), cp.Network.mlp([3, 5, 2])
    with pytest.raises(ValueError, match="structure"):
        cp.Ensemble([a, b])
    c = _scaled(cp.Network.mlp([3, 4, 2]))
    with pytest.raises(ValueError, match="scaling"):
        cp.Ensemble([a, c])
    with pytest.raises(ValueError, match="size=3 but 1"):
        cp.Ensemble([a], 3)
    with pytest.raises(TypeError, match="Network"):
        cp.Ensemble([a, "b"])


def test_save_load_and_pickle(tmp_path):
    ens = cp.Ensemble(_scaled(_dag()), 3, seed=1)
    X = np.random.default_rng(0).standard_normal((5, 3))
    path = tmp_path / "ens.npz"
    ens.save(path)
    back = cp.load(path)
    assert isinstance(back, cp.Ensemble) and back.size == 3
    np.testing.assert_array_equal(back.forward(X), ens.forward(X))
    again = pickle.loads(pickle.dumps(ens))
    np.testing.assert_array_equal(again.forward(X), ens.forward(X))
    net_path = tmp_path / "net.npz"
    ens.member(0).save(net_path)
    assert isinstance(cp.load(net_path), cp.Network)
    with pytest.raises(TypeError, match="not pickled"):
        pickle.dumps(ens.trace(X))


def test_bad_inputs():
    ens = cp.Ensemble(cp.Network.mlp([3, 4, 2]), 2)
    assert ens.forward(np.zeros((2, 3))).shape == (2, 2, 2)       # 2-D: shared by members
    with pytest.raises(ValueError, match="shape"):
        ens.forward(np.zeros((3, 5, 3)))
    with pytest.raises(ValueError, match=r"\(2, 26\)"):
        ens.weights = np.zeros(26)
    with pytest.raises(ValueError, match="NaN"):
        ens.forward(np.full((1, 3), np.nan))
    with pytest.raises(ValueError, match="dY"):
        ens.trace(np.zeros((4, 3))).backward(np.zeros((4, 2)))
    with pytest.raises(cp.StaleTraceError):
        tr = ens.trace(np.zeros((4, 3)))
        ens.trace(np.ones((4, 3)))
        tr.outputs()
    with pytest.raises(ValueError, match="size"):
        cp.Ensemble(cp.Network.mlp([3, 4, 2]), 0)


# ---------------------------------------------------------------- training
def _data(K=80, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2, 2, (K, 2))
    return X, np.column_stack([np.sin(X[:, 0]) * X[:, 1], np.cos(X[:, 1])])


def test_objective_gradient_and_bootstrap_equivalence():
    X, Y = _data()
    ens = cp.Ensemble(cp.Network.mlp([2, 6, 2], seed=0), 3, seed=1)
    C = bootstrap_counts(3, len(X), np.random.default_rng(4))
    assert np.all(C.sum(axis=1) == len(X)) and (C == 0).any()
    obj = EnsembleObjective(ens, X, Y, l2=0.01, counts=C)
    x = ens.weights.ravel() + 0.1
    assert check_objective(obj, x).ok
    # member e's part is the single network's loss on member e's resample
    f, g = obj(x)
    W = x.reshape(3, -1)
    total = 0.0
    for e in range(3):
        rows = np.repeat(np.arange(len(X)), C[e].astype(int))
        single = cp.WeightObjective(ens.member(e), X[rows], Y[rows], l2=0.01)
        fe, ge = single(W[e])
        total += fe
        np.testing.assert_allclose(g.reshape(3, -1)[e], ge, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(f, total, rtol=1e-12)


def test_fit_trains_members_on_their_resamples():
    X, Y = _data(120)
    ens = cp.Ensemble(cp.Network.mlp([2, 12, 2], seed=0), 4, seed=3)
    res = cp.fit(ens, X, Y, maxiter=400)
    assert res.x.shape == (4, ens.n_weights)
    np.testing.assert_array_equal(ens.weights, res.x)
    assert res.history["train_loss"][-1] < 0.1 * res.history["train_loss"][0]
    # the members differ (different resamples and starts) but each fits the data
    Xt, Yt = _data(50, seed=9)
    P = ens.forward(Xt)
    for e in range(4):
        assert np.mean((P[e] - Yt) ** 2) < 0.05
    mean, var = ens.predict(Xt)
    np.testing.assert_allclose(var, P.var(axis=0), rtol=1e-12)
    assert np.all(var.mean(axis=0) > 1e-8)              # the resamples made the members differ
    same = cp.Ensemble(cp.Network.mlp([2, 12, 2], seed=0), 2, seed=3)
    with pytest.raises(ValueError, match="not offered"):
        cp.fit(same, X, Y, method="lm")
    with pytest.raises(ValueError, match="trainable"):
        cp.fit(same, X, Y, trainable=[2])
    with pytest.raises(ValueError, match="single Network"):
        cp.fit(cp.Network.mlp([2, 3, 2]), X, Y, bootstrap=True)



def test_fit_leaves_no_work_buffers_of_its_data_in_the_ensemble():
    """The training objective owns its buffers: after a fit the ensemble's shared cache
    holds none of the training data's (or minibatches') sizes, and the numbers are those
    of the shared buffers."""
    X, Y = _data(300)
    ens = cp.Ensemble(cp.Network.mlp([2, 6, 2], seed=0), 3, seed=1)
    ens.forward(X[:7])                                   # a size the user cached before
    for method, kw in (("L-BFGS-B", {}), ("adam", dict(options=dict(batch_size=64)))):
        cp.fit(ens, X, Y, method=method, maxiter=3, **kw)
        assert sorted(ens.plan._bufs) == [7]
    own = ens.plan.new_buffers(300)
    mine = ens.trace(X, buffers=own)
    np.testing.assert_array_equal(mine.outputs(), ens.trace(X).outputs())
    dY = np.ones((3, 300, 2))
    np.testing.assert_array_equal(ens.trace(X, buffers=own).backward(dY, wrt="weights"),
                                  ens.trace(X).backward(dY, wrt="weights"))
    with pytest.raises(ValueError, match="batch size K = 299.*of batch size 300"):
        ens.trace(X[:299], buffers=own)
    other = cp.Ensemble(cp.Network.mlp([2, 6, 2], seed=0), 3, seed=1)
    with pytest.raises(ValueError, match="this ensemble's plan"):
        ens.trace(X, buffers=other.plan.new_buffers(300))
    with pytest.raises(ValueError, match="got ndarray"):
        ens.trace(X, buffers=np.zeros(3))
    obj = EnsembleObjective(ens, X, Y)
    f, g = obj(obj.x0)                                   # now it holds its buffers
    back = pickle.loads(pickle.dumps(obj))               # ... which are not pickled
    f2, g2 = back(back.x0)
    assert f2 == f and np.array_equal(g2, g)

def test_fit_without_bootstrap_is_the_network_fit():
    X, Y = _data(60)
    net = cp.Network.mlp([2, 5, 2], seed=0)
    ens = cp.Ensemble([net])
    with pytest.warns(cp.ConvergenceWarning):
        r1 = cp.fit(ens, X, Y, maxiter=25, bootstrap=False)
    with pytest.warns(cp.ConvergenceWarning):
        r2 = cp.fit(net, X, Y, maxiter=25)
    np.testing.assert_allclose(r1.history["train_loss"], r2.history["train_loss"], rtol=1e-8)
    np.testing.assert_allclose(ens.weights[0], net.weights, rtol=1e-6, atol=1e-9)


# ---------------------------------------------------------------- planning
def _model(E=3, prop="members", res=False, dis=None, seed=2, n_exo=0):
    ni = 3 + n_exo
    net = cp.Network.mlp([ni, 6, 2], seed=1)
    net.set_scaling(np.linspace(-0.2, 0.3, ni), np.linspace(0.5, 2.0, ni), np.array([0.2, -0.1]),
                    np.array([0.5, 1.7]))
    return cp.Dynamics(cp.Ensemble(net, E, seed=seed), 2, residual=res, propagation=prop,
                       disagreement=dis, n_exo=n_exo)


COST = cp.TrajectoryCost(goal=[0.5, -0.2], Q=1.0, R=0.1, Qf=2.0)


@pytest.mark.parametrize("prop", ["members", "mean"])
@pytest.mark.parametrize("res", [False, True])
@pytest.mark.parametrize("dis", [None, 0.7, [0.3, 1.1]])
def test_expected_cost_gradients(prop, res, dis):
    model = _model(prop=prop, res=res, dis=dis)
    rng = np.random.default_rng(0)
    obj = cp.TrajectoryObjective(model, rng.standard_normal((2, 2)), 5, COST)
    u = 0.5 * rng.standard_normal(obj.n_vars)
    chk = check_objective(obj, u)
    assert chk.ok, chk
    J, gU, gx = obj.value_and_grad(u.reshape(obj.shape), wrt_x0=True)
    x0 = obj.x0.copy()

    def f(x):
        obj.set_x0(x.reshape(x0.shape))
        return obj.value(u)
    num = numerical_gradient(f, x0)
    obj.set_x0(x0)
    np.testing.assert_allclose(gx, num, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("prop", ["members", "mean"])
def test_gradients_with_exo_goals_and_a_batch(prop):
    model = _model(prop=prop, res=True, dis=[0.3, 0.9], n_exo=1)
    rng = np.random.default_rng(5)
    B, T = 3, 4
    cost = cp.TrajectoryCost(goal=rng.standard_normal((B, T, 2)), Q=[1.0, 0.5], R=0.2, S=0.1)
    obj = cp.TrajectoryObjective(model, rng.standard_normal((B, 2)), T, cost,
                                 exo=rng.standard_normal((B, T, 1)))
    chk = check_objective(obj, 0.5 * rng.standard_normal(obj.n_vars))
    assert chk.ok, chk
    # each trajectory's cost depends on its own controls only (the batch is not mixed)
    u = rng.standard_normal(obj.n_vars)
    c0 = obj.costs(u).copy()
    u2 = u.copy()
    u2[:T] += 1.0                                                  # trajectory 0's controls
    c1 = obj.costs(u2)
    assert c1[0] != c0[0]
    np.testing.assert_array_equal(c1[1:], c0[1:])


def test_mean_mode_penalty_value():
    model = _model(prop="mean", dis=0.6)
    x0, U = np.array([0.2, -0.4]), np.random.default_rng(2).uniform(-1, 1, (5, 1))
    obj = cp.TrajectoryObjective(model, x0, 5, COST)
    S = model.rollout(x0, U)                                        # the mean path
    ens = model.net
    Y = np.stack([ens.forward(np.concatenate([S[t], U[t]]))  for t in range(5)])   # (T, E, n)
    P = 0.6 * Y.var(axis=1).sum()
    plain = cp.TrajectoryObjective(cp.Dynamics(ens, 2, propagation="mean"), x0, 5, COST)
    np.testing.assert_allclose(obj.value(U), plain.value(U) + P, rtol=1e-12)


def test_scaling_change_is_picked_up():
    model = _model()
    obj = cp.TrajectoryObjective(model, np.array([0.1, 0.2]), 4, COST)
    u = np.full(4, 0.3)
    before = obj.value(u)
    model.net.set_scaling(np.zeros(3), np.full(3, 3.0), np.zeros(2), np.full(2, 2.0))
    fresh = cp.TrajectoryObjective(model, np.array([0.1, 0.2]), 4, COST).value(u)
    assert fresh != before
    assert obj.value(u) == fresh


def test_load_from_an_open_file(tmp_path):
    net = _dag()
    net.save(tmp_path / "n.npz")
    with open(tmp_path / "n.npz", "rb") as f:
        assert isinstance(cp.load(f), cp.Network)
    ens = cp.Ensemble(net, 2)
    ens.save(tmp_path / "e.npz")
    with open(tmp_path / "e.npz", "rb") as f:
        np.testing.assert_array_equal(cp.load(f).weights, ens.weights)


def test_expected_cost_is_the_mean_over_members_plus_penalty():
    model = _model(dis=0.4)
    x0 = np.array([0.2, -0.1])
    U = np.random.default_rng(1).uniform(-1, 1, (6, 1))
    obj = cp.TrajectoryObjective(model, x0, 6, COST)
    S = model.rollout(x0, U, members=True)                          # (E, T+1, n)
    per = [cp.TrajectoryObjective(cp.Dynamics(model.net.member(e), 2), x0, 6, COST).value(U)
           for e in range(3)]
    P = 0.4 * S[:, 1:].var(axis=0).sum()
    np.testing.assert_allclose(obj.value(U), np.mean(per) + P, rtol=1e-12)
    np.testing.assert_allclose(model.rollout(x0, U), S.mean(axis=0), rtol=1e-13)


def test_identical_members_plan_as_the_network():
    net = cp.Network.mlp([3, 6, 2], seed=1)
    single = cp.Dynamics(net, 2, residual=True)
    for prop in ("members", "mean"):
        ens = cp.Dynamics(cp.Ensemble([net] * 3), 2, residual=True, propagation=prop,
                          disagreement=1.0)
        U = np.random.default_rng(3).uniform(-1, 1, (2, 7, 1))
        x0 = np.array([[0.1, 0.2], [-0.3, 0.4]])
        J1, g1 = cp.bptt(single, x0, U, COST)
        J2, g2 = cp.bptt(ens, x0, U, COST)
        np.testing.assert_allclose(J2, J1, rtol=1e-12)
        np.testing.assert_allclose(g2, g1, rtol=1e-10, atol=1e-13)


def test_mean_propagation_is_the_mean_model():
    model = _model(prop="mean", res=True)
    x0, U = np.array([0.3, 0.1]), np.random.default_rng(0).uniform(-1, 1, (4, 1))
    S = model.rollout(x0, U)
    x = x0
    for t in range(4):
        x = model.step(x, U[t])
        np.testing.assert_allclose(S[t + 1], x, rtol=1e-12)


def test_ensemble_model_refuses_what_it_cannot_do():
    model = _model()
    for method in ("ilqr", "lm", "Newton-CG"):
        with pytest.raises(ValueError, match="ensemble"):
            cp.optimize_trajectory(model, np.zeros(2), 4, COST, method=method)
    with pytest.raises(ValueError, match="single Network"):
        cp.Dynamics(cp.Network.mlp([3, 4, 2]), 2, disagreement=1.0)
    with pytest.raises(ValueError, match="propagation"):
        _model(prop="particles")
    with pytest.raises(ValueError, match="disagreement"):
        _model(dis=-1.0)
    with pytest.raises(ValueError, match="members=True"):
        _model(prop="mean").rollout(np.zeros(2), np.zeros((3, 1)), members=True)
    with pytest.raises(ValueError, match="constraints"):
        cp.optimize_trajectory(model, np.zeros(2), 4, COST,
                               constraints=cp.StateBounds([-1, -1], [1, 1]))
    with pytest.raises(ValueError, match="seed"):
        cp.Ensemble([cp.Network.mlp([3, 4, 2])] * 2, seed=1)


def test_gradient_planning_through_an_ensemble_and_pickling():
    model = _model(dis=0.2)
    r = cp.optimize_trajectory(model, np.array([0.1, 0.0]), 6, COST, bounds=(-1, 1),
                               maxiter=200)
    assert np.all(np.abs(r.x) <= 1)
    obj = cp.TrajectoryObjective(model, np.array([0.1, 0.0]), 6, COST)
    J, g = obj(r.x.ravel())
    np.testing.assert_allclose(J, r.fun, rtol=1e-12)
    # first-order optimality within the box: the projected gradient vanishes
    x = r.x.ravel()
    pg = np.clip(x - g, -1, 1) - x
    assert np.abs(pg).max() < 1e-4
    back = pickle.loads(pickle.dumps(obj))
    np.testing.assert_allclose(back.value(r.x), obj.value(r.x), rtol=1e-14)
