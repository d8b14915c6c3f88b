"""Dynamics, rollouts, the trajectory cost and its BPTT gradient (against finite differences)."""

import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

import ctrlprop as cp
from conftest import dynamics_net
from ctrlprop.core.gradcheck import numerical_gradient

dags = st.integers(0, 2 ** 32 - 1).map(lambda s: np.random.default_rng(s))




def naive_rollout(net, x0, U, residual=False, exo=None):
    """x_{t+1} = f([x_t, u_t, e_t]) (+ x_t) one network call at a time."""
    xs = [np.asarray(x0, float)]
    for t in range(len(U)):
        parts = [xs[-1], U[t]] + ([] if exo is None else [exo[t]])
        y = net.forward(np.concatenate(parts))
        xs.append(y + xs[-1] if residual else y)
    return np.array(xs)


def naive_cost(S, U, goal, Q, Qf, R, S_):
    """J written term by term (the lecture's 1/2 on every quadratic term; state cost from
    t = 1)."""
    T = len(U)
    G = np.broadcast_to(goal, (T, S.shape[1])) if np.ndim(goal) == 1 else goal
    J = 0.0
    for t in range(1, T):
        e = S[t] - G[t - 1]
        J += e @ Q @ e
    e = S[T] - G[T - 1]
    J += e @ Qf @ e
    for t in range(T):
        J += U[t] @ R @ U[t]
    for t in range(1, T):
        d = U[t] - U[t - 1]
        J += d @ S_ @ d
    return 0.5 * J


def richardson_gradient(f, x, eps=1e-4):
    """Central differences extrapolated to eps -> 0 (error O(eps^4)): accurate even when f is
    large, where a tiny step would drown in round-off."""
    g1 = numerical_gradient(f, x, eps)
    g2 = numerical_gradient(f, x, eps / 2)
    return (4 * g2 - g1) / 3


def fd_resolvable(f, g):
    """True when central differences (step 5e-5) can check the gradient g of a function of
    size f: their round-off, ~|f| 1e-16 / 5e-5, must stay 10x below 1e-6 |g|.  Random
    models occasionally fail this (exploding states, controls that reach no output)."""
    return abs(f) <= 2e4 * max(np.abs(g).max(), 1e-300)


def assert_gradient(fun, x, rtol=1e-6):
    """fun(x) -> (f, g): g against extrapolated central differences, relative to max |g|.

    Steps 1e-4, 1e-5, 1e-6 are tried in turn (a strongly expanding random model needs a
    small step) and the check passes at the first that agrees; a wrong gradient agrees
    with none."""
    g = fun(x)[1]
    errs = []
    for eps in (1e-4, 1e-5, 1e-6):
        ng = richardson_gradient(lambda v: fun(v)[0], x, eps)
        errs.append(np.abs(g - ng).max() / max(np.abs(ng).max(), 1e-8))
        if errs[-1] < rtol:
            return
    raise AssertionError(f"gradient errors {errs} at steps 1e-4, 1e-5, 1e-6 "
                         f"(max |g| {np.abs(g).max():.3g})")


def spd(rng, k):
    A = rng.standard_normal((k, k))
    return A @ A.T / k + 0.1 * np.eye(k)


# ---------------------------------------------------------------- rollout
def test_rollout_matches_step_by_step_forward(rng):
    for residual in (False, True):
        net = dynamics_net(rng, 3, 2, scaled=True)
        model = cp.Dynamics(net, 3, residual=residual)
        x0, U = rng.standard_normal(3), rng.standard_normal((6, 2))
        S = model.rollout(x0, U)
        assert S.shape == (7, 3)
        np.testing.assert_allclose(S, naive_rollout(net, x0, U, residual), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(model.step(x0, U[0]), S[1], rtol=1e-12)


def test_rollout_batches_and_broadcasts(rng):
    net = dynamics_net(rng, 2, 1)
    model = cp.Dynamics(net, 2)
    X0, UB = rng.standard_normal((4, 2)), rng.standard_normal((4, 5, 1))
    S = model.rollout(X0, UB)
    assert S.shape == (4, 6, 2)
    for b in range(4):
        np.testing.assert_allclose(S[b], naive_rollout(net, X0[b], UB[b]), rtol=1e-12,
                                   atol=1e-12)
    S1 = model.rollout(X0, UB[0])                      # one control sequence for every x0
    np.testing.assert_allclose(S1[2], naive_rollout(net, X0[2], UB[0]), rtol=1e-12, atol=1e-12)
    S2 = model.rollout(X0[1], UB)                      # one x0 for every control sequence
    np.testing.assert_allclose(S2[3], naive_rollout(net, X0[1], UB[3]), rtol=1e-12, atol=1e-12)


def test_exogenous_inputs(rng):
    net = dynamics_net(rng, 2, 1, e=2, scaled=True)
    model = cp.Dynamics(net, 2, n_exo=2)
    assert model.n_controls == 1
    x0, U, E = rng.standard_normal(2), rng.standard_normal((5, 1)), rng.standard_normal((5, 2))
    np.testing.assert_allclose(model.rollout(x0, U, exo=E), naive_rollout(net, x0, U, exo=E),
                               rtol=1e-12, atol=1e-12)
    const = model.rollout(x0, U, exo=E[0])             # (e,): the same at every step
    np.testing.assert_allclose(const, naive_rollout(net, x0, U, exo=np.tile(E[0], (5, 1))),
                               rtol=1e-12, atol=1e-12)
    EB = rng.standard_normal((3, 5, 2))                # (B, T, e): one per trajectory
    SB = model.rollout(np.tile(x0, (3, 1)), U, exo=EB)
    np.testing.assert_allclose(SB[1], naive_rollout(net, x0, U, exo=EB[1]), rtol=1e-12,
                               atol=1e-12)


def test_linearize_matches_finite_differences(rng):
    net = dynamics_net(rng, 3, 2, scaled=True)
    model = cp.Dynamics(net, 3, residual=True)
    x, u = rng.standard_normal(3), rng.standard_normal(2)
    A, B = model.linearize(x, u)
    nA = np.array([numerical_gradient(lambda v: model.step(v, u)[i], x) for i in range(3)])
    nB = np.array([numerical_gradient(lambda v: model.step(x, v)[i], u) for i in range(3)])
    np.testing.assert_allclose(A, nA, atol=1e-7)
    np.testing.assert_allclose(B, nB, atol=1e-7)


# ---------------------------------------------------------------- cost value
def test_cost_value_matches_the_formula_term_by_term(rng):
    n, m, T = 3, 2, 6
    net = dynamics_net(rng, n, m)
    model = cp.Dynamics(net, n)
    Q, Qf, R, S_ = spd(rng, n), spd(rng, n), spd(rng, m), spd(rng, m)
    goal = rng.standard_normal((T, n))
    x0, U = rng.standard_normal(n), rng.standard_normal((T, m))
    J, _ = cp.bptt(model, x0, U, dict(goal=goal, Q=Q, Qf=Qf, R=R, S=S_))
    S = naive_rollout(net, x0, U)
    assert J == pytest.approx(naive_cost(S, U, goal, Q, Qf, R, S_), rel=1e-12)
    # scalars and vectors mean scalar * I and diagonal matrices; Qf defaults to Q
    J2, _ = cp.bptt(model, x0, U, dict(goal=goal[0], Q=[1.0, 2.0, 3.0], R=0.5, S=2.0))
    ref = naive_cost(S, U, goal[0], np.diag([1.0, 2, 3]), np.diag([1.0, 2, 3]),
                     0.5 * np.eye(m), 2.0 * np.eye(m))
    assert J2 == pytest.approx(ref, rel=1e-12)


# ---------------------------------------------------------------- BPTT gradient
@settings(max_examples=25, deadline=None)
@given(rng=dags, T=st.sampled_from([1, 2, 5, 9]), residual=st.booleans(),
       scaled=st.booleans(), full=st.booleans())
def test_bptt_gradient_matches_finite_differences(rng, T, residual, scaled, full):
    n, m = int(rng.integers(1, 4)), int(rng.integers(1, 3))
    net = dynamics_net(rng, n, m, scaled=scaled)
    model = cp.Dynamics(net, n, residual=residual)
    if full:
        cost = cp.TrajectoryCost(goal=rng.standard_normal((T, n)), Q=spd(rng, n),
                                 Qf=spd(rng, n), R=spd(rng, m), S=spd(rng, m))
    else:
        cost = cp.TrajectoryCost(goal=rng.standard_normal(n), Q=rng.uniform(0, 2, n),
                                 Qf=3.0, R=0.1, S=rng.uniform(0, 1, m))
    x0 = rng.standard_normal(n)
    obj = cp.TrajectoryObjective(model, x0, T, cost)
    u = 0.5 * rng.standard_normal(obj.n_vars)
    f, g, gx = obj.value_and_grad(u.reshape(T, m), wrt_x0=True)
    assume(fd_resolvable(f, g) and fd_resolvable(f, gx))
    assert_gradient(obj, u)
    assert_gradient(lambda v: cp.bptt(model, v, u.reshape(T, m), cost, wrt_x0=True)[::2], x0)


def test_batched_gradient_equals_single_gradients(rng):
    n, m, T, B = 2, 2, 4, 3
    model = cp.Dynamics(dynamics_net(rng, n, m, scaled=True), n, residual=True)
    goals = rng.standard_normal((B, T, n))
    cost = cp.TrajectoryCost(goal=goals, Q=1.0, Qf=2.0, R=0.3, S=0.2)
    X0, UB = rng.standard_normal((B, n)), rng.standard_normal((B, T, m))
    J, g, gx = cp.bptt(model, X0, UB, cost, wrt_x0=True)
    assert J.shape == (B,) and g.shape == (B, T, m) and gx.shape == (B, n)
    for b in range(B):
        Jb, gb, gxb = cp.bptt(model, X0[b], UB[b], cost.with_goal(goals[b]), wrt_x0=True)
        assert J[b] == pytest.approx(Jb, rel=1e-12)
        np.testing.assert_allclose(g[b], gb, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(gx[b], gxb, rtol=1e-10, atol=1e-12)
    obj = cp.TrajectoryObjective(model, X0, T, cost)
    chk = cp.check_objective(obj, UB.ravel(), tol=1e-6)
    assert chk.ok, chk


def test_custom_costs_gradient_and_value(rng):
    n, m, T = 2, 1, 5
    net = dynamics_net(rng, n, m)
    model = cp.Dynamics(net, n)
    c = rng.standard_normal(n)

    def running(X, U):                     # sum_t sum_i cos(x_ti) + u_t^4, X (B, T, n)
        return (np.cos(X).sum(axis=2) + (U ** 4).sum(axis=2), -np.sin(X), 4 * U ** 3)

    def terminal(xT):                      # exp(c . x_T)
        v = np.exp(xT @ c)
        return v, v[:, None] * c

    def trajectory(S, U):                  # sum over all states of x_t1 * x_t2
        return ((S[..., 0] * S[..., 1]).sum(axis=1),
                np.stack([S[..., 1], S[..., 0]], axis=-1), None)

    cost = cp.TrajectoryCost(Q=0.5, R=0.2, S=0.1, running=running, terminal=terminal,
                             trajectory=trajectory)
    x0 = rng.standard_normal(n)
    obj = cp.TrajectoryObjective(model, x0, T, cost)
    u = 0.5 * rng.standard_normal(T * m)
    chk = cp.check_objective(obj, u, tol=1e-6)
    assert chk.ok, chk
    U = u.reshape(T, m)
    S = naive_rollout(net, x0, U)
    ref = naive_cost(S, U, np.zeros(n), 0.5 * np.eye(n), 0.5 * np.eye(n), 0.2 * np.eye(m),
                     0.1 * np.eye(m))
    ref += np.cos(S[:T]).sum() + (U ** 4).sum() + np.exp(S[T] @ c) + (S[:, 0] * S[:, 1]).sum()
    assert obj.value(u) == pytest.approx(ref, rel=1e-12)
    _, _, gx = obj.value_and_grad(U, wrt_x0=True)
    nx = numerical_gradient(lambda v: cp.bptt(model, v, U, cost)[0], x0)
    np.testing.assert_allclose(gx, nx, rtol=1e-6, atol=1e-7)


def test_objective_reuses_buffers_and_follows_new_weights(rng):
    net = dynamics_net(rng, 2, 1, scaled=True)
    model = cp.Dynamics(net, 2)
    cost = dict(goal=[1.0, -1.0], R=0.1)
    obj = cp.TrajectoryObjective(model, rng.standard_normal(2), 6, cost)
    us = [rng.standard_normal(6) for _ in range(3)]
    first = [obj(u) for u in us]
    for u, (f, g) in zip(us[::-1], first[::-1]):        # interleaved calls: nothing stale
        f2, g2 = obj(u)
        assert f2 == f and np.array_equal(g2, g)
    net.weights = net.weights * 1.1                     # the model changed: picked up
    fresh = cp.TrajectoryObjective(model, obj.x0[0], 6, cost)
    for u in us:
        f, g = obj(u)
        f0, g0 = fresh(u)
        assert f == pytest.approx(f0, rel=1e-13)
        np.testing.assert_allclose(g, g0, rtol=1e-12)
    net.weights[:] = net.weights * 0.9                  # changed in place: picked up too
    f, _ = obj(us[0])
    assert f == pytest.approx(cp.TrajectoryObjective(model, obj.x0[0], 6, cost)(us[0])[0],
                              rel=1e-13)
    net.set_scaling(None, None, None, None)             # scaling removed: recompiled
    assert obj(us[1])[0] == pytest.approx(
        cp.TrajectoryObjective(model, obj.x0[0], 6, cost)(us[1])[0], rel=1e-13)


def test_bptt_follows_a_cost_changed_in_place_and_broadcasts_one_start(rng):
    """cp.bptt keeps its objective between calls; a weight, goal or custom term changed
    in place (or reassigned) is bound again, and one x0 serves a batch of controls."""
    model = cp.Dynamics(dynamics_net(rng, 2, 1, scaled=True), 2)
    cost = cp.TrajectoryCost(goal=[1.0, -1.0], Q=[1.0, 2.0], R=0.1)
    x0, U = rng.standard_normal(2), rng.standard_normal((5, 1))

    def fresh():
        return cp.TrajectoryObjective(model, x0, 5, cp.TrajectoryCost(
            goal=cost.goal.copy(), Q=cost.Q.copy(), R=cost.R.copy(),
            running=cost.running)).value_and_grad(U)
    J1, _ = cp.bptt(model, x0, U, cost)
    assert J1 == pytest.approx(fresh()[0], rel=1e-13)
    for change in (lambda: cost.goal.__setitem__(0, 0.5), lambda: cost.Q.__setitem__(1, 3.0),
                   lambda: setattr(cost, "running", lambda X, V: (
                       (X ** 2).sum(axis=(1, 2)), 2 * X, None))):
        before = cp.bptt(model, x0, U, cost)[0]
        change()
        J, g = cp.bptt(model, x0, U, cost)
        J0, g0 = fresh()
        assert J != before
        assert J == pytest.approx(J0, rel=1e-13)
        np.testing.assert_allclose(g, g0, rtol=1e-12)
    UB = rng.standard_normal((3, 5, 1))
    JB, gB = cp.bptt(model, x0, UB, cost)
    for b in range(3):
        Jb, gb = cp.bptt(model, x0, UB[b], cost)
        assert JB[b] == pytest.approx(Jb, rel=1e-13)
        np.testing.assert_allclose(gB[b], gb, rtol=1e-12)


# ---------------------------------------------------------------- residual form
@pytest.mark.parametrize("residual", [False, True])
def test_residuals_and_jacobian(rng, residual):
    n, m, T = 3, 2, 5
    model = cp.Dynamics(dynamics_net(rng, n, m, scaled=True), n, residual=residual)
    cost = cp.TrajectoryCost(goal=rng.standard_normal((T, n)), Q=spd(rng, n), Qf=[1, 2, 3],
                             R=0.2, S=spd(rng, m))
    for x0 in (rng.standard_normal(n), rng.standard_normal((2, n))):
        obj = cp.TrajectoryObjective(model, x0, T, cost)
        u = 0.5 * rng.standard_normal(obj.n_vars)
        r = obj.residuals(u)
        assert 0.5 * (r @ r) == pytest.approx(obj.value(u), rel=1e-12)
        J = obj.jacobian(u, sparse=obj.B > 1)           # a batch: scipy.sparse, block-diagonal
        assert hasattr(J, "toarray") == (obj.B > 1)
        J = J.toarray() if obj.B > 1 else J
        nJ = np.array([numerical_gradient(lambda v: obj.residuals(v)[i], u)
                       for i in range(len(r))])
        np.testing.assert_allclose(J, nJ, atol=1e-7 * max(1, np.abs(nJ).max()))
        if obj.B > 1:
            np.testing.assert_array_equal(obj.jacobian(u, sparse=False), J)


def test_residual_form_refuses_custom_costs(rng):
    model = cp.Dynamics(dynamics_net(rng, 2, 1), 2)
    cost = cp.TrajectoryCost(terminal=lambda x: ((x ** 2).sum(1), 2 * x))
    obj = cp.TrajectoryObjective(model, np.zeros(2), 3, cost)
    with pytest.raises(ValueError, match="residual form"):
        obj.residuals(np.zeros(3))


# ---------------------------------------------------------------- bad input
def test_bad_model_construction(rng):
    net = dynamics_net(rng, 2, 1)
    with pytest.raises(ValueError, match="outputs but n_states=3"):
        cp.Dynamics(net, 3)
    with pytest.raises(ValueError, match="at least one"):
        cp.Dynamics(net, 2, n_exo=1)
    with pytest.raises(TypeError, match="Network"):
        cp.Dynamics("net", 2)
    with pytest.raises(ValueError, match="n_states"):
        cp.Dynamics(net, 0)
    with pytest.raises(TypeError, match="Dynamics"):
        cp.TrajectoryObjective(net, np.zeros(2), 3)


def test_bad_states_controls_and_horizon(rng):
    model = cp.Dynamics(dynamics_net(rng, 3, 2), 3)
    with pytest.raises(ValueError, match=r"x0 must have shape \(3,\)"):
        cp.TrajectoryObjective(model, np.zeros(4), 5)
    with pytest.raises(ValueError, match=r"x0 must have shape"):
        model.rollout(np.zeros((2, 2)), np.zeros((5, 2)))
    with pytest.raises(ValueError, match="NaN"):
        model.rollout([0.0, np.nan, 0.0], np.zeros((5, 2)))
    for bad in (0, -3):
        with pytest.raises(ValueError, match="horizon"):
            cp.TrajectoryObjective(model, np.zeros(3), bad)
    for bad in (2.5, True, "5"):
        with pytest.raises(TypeError, match="horizon"):
            cp.TrajectoryObjective(model, np.zeros(3), bad)
    with pytest.raises(ValueError, match=r"controls must have shape"):
        model.rollout(np.zeros(3), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="batch sizes differ"):
        model.rollout(np.zeros((2, 3)), np.zeros((3, 5, 2)))
    obj = cp.TrajectoryObjective(model, np.zeros(3), 5)
    with pytest.raises(ValueError, match="10 entries"):
        obj(np.zeros(9))
    with pytest.raises(ValueError, match=r"U must have shape \(5, 2\)"):
        obj.value_and_grad(np.zeros((2, 5)))


def test_bad_exogenous_inputs(rng):
    model = cp.Dynamics(dynamics_net(rng, 2, 1, e=1), 2, n_exo=1)
    with pytest.raises(ValueError, match="exogenous inputs: pass exo"):
        model.rollout(np.zeros(2), np.zeros((4, 1)))
    with pytest.raises(ValueError, match=r"exo must have shape"):
        model.rollout(np.zeros(2), np.zeros((4, 1)), exo=np.zeros((3, 1)))
    plain = cp.Dynamics(dynamics_net(rng, 2, 1), 2)
    with pytest.raises(ValueError, match="no exogenous"):
        plain.rollout(np.zeros(2), np.zeros((4, 1)), exo=np.zeros(1))


@pytest.mark.parametrize("kw, msg", [
    (dict(Q=[1.0, 2.0]), r"Q must be a scalar, a length-3 vector .* got a vector of shape \(2,\)"),
    (dict(Q=np.eye(2)), r"Q must be .* \(3, 3\) matrix .* got a matrix of shape \(2, 2\)"),
    (dict(Qf=np.ones(4)), r"Qf must be .* length-3 .* shape \(4,\)"),
    (dict(R=np.eye(3)), r"R must be .* \(2, 2\) matrix .* shape \(3, 3\)"),
    (dict(S=[1.0, 2.0, 3.0]), r"S must be .* length-2 vector"),
    (dict(goal=np.zeros(2)), r"goal must have 3 entries"),
    (dict(goal=np.zeros((4, 3))), r"goal trajectory must have shape \(5, 3\)"),
    (dict(goal=np.zeros((2, 5, 3))), r"batch of goals must have shape \(1, "),
])
def test_bad_cost_dimensions(rng, kw, msg):
    model = cp.Dynamics(dynamics_net(rng, 3, 2), 3)
    with pytest.raises(ValueError, match=msg):
        cp.TrajectoryObjective(model, np.zeros(3), 5, cp.TrajectoryCost(**kw))


@pytest.mark.parametrize("kw, exc, msg", [
    (dict(Q=-1.0), ValueError, "non-negative"),
    (dict(R=[1.0, -0.5]), ValueError, "non-negative"),
    (dict(Q=np.array([[1.0, 2.0], [0.0, 1.0]])), ValueError, "symmetric"),
    (dict(Q=np.array([[1.0, 2.0], [2.0, 1.0]])), ValueError, "positive semi-definite"),
    (dict(Q=np.ones((2, 2, 2))), ValueError, "scalar, a vector"),
    (dict(S=np.nan), ValueError, "NaN"),
    (dict(Q="big"), TypeError, "Q must be a number"),
    (dict(goal=[0.0, np.inf]), ValueError, "goal contains NaN"),
    (dict(running=3), TypeError, "running must be callable"),
])
def test_bad_cost_values(kw, exc, msg):
    with pytest.raises(exc, match=msg):
        cp.TrajectoryCost(**kw)


def test_bad_custom_cost_outputs(rng):
    model = cp.Dynamics(dynamics_net(rng, 2, 1), 2)
    cases = [
        (dict(terminal=lambda x: (x.sum(1), np.zeros((1, 3)))),
         ValueError, r"terminal cost's gradient must have shape \(1, 2\)"),
        (dict(running=lambda X, U: (X.sum((1, 2)), None)), TypeError, "must return"),
        (dict(running=lambda X, U: (np.zeros(7), None, None)), ValueError,
         "running cost's value"),
        (dict(trajectory=lambda S, U: (0.0, None, None)), ValueError,
         r"trajectory cost's value must have shape \(1,\)"),
        (dict(trajectory=lambda S, U: (S.sum((1, 2)), S[:, 1:], None)), ValueError,
         "grad_states"),
    ]
    for kw, exc, msg in cases:
        obj = cp.TrajectoryObjective(model, np.zeros(2), 3, cp.TrajectoryCost(**kw))
        with pytest.raises(exc, match=msg):
            obj(np.zeros(3))
    with pytest.raises(TypeError, match="cost must be a TrajectoryCost"):
        cp.TrajectoryObjective(model, np.zeros(2), 3, cost=[1, 2])


def test_objective_does_not_keep_a_view_of_the_callers_controls():
    model = cp.Dynamics(cp.Network.mlp([2, 4, 1], seed=0), 1)
    obj = cp.TrajectoryObjective(model, [0.5], 3, dict(R=1.0))
    u = np.zeros(obj.n_vars)
    first = obj(u)[0]
    keep = u.copy()
    u[:] = 5.0                       # the caller reuses its array, as scipy's line searches do
    assert obj(keep)[0] == pytest.approx(first, rel=1e-12)


def test_bptt_reuses_its_objective_and_sees_new_data_and_weights():
    """cp.bptt keeps its objective on the model per (T, B, batched); every call still uses
    that call's x0, U, cost and exo, and the network's current weights."""
    rng = np.random.default_rng(11)
    net = cp.Network.mlp([4, 6, 3], hidden="tanh", seed=2)
    model = cp.Dynamics(net, 3)
    cost1 = cp.TrajectoryCost(goal=[0.1, 0.2, 0.3], Q=1.0, R=0.5)
    cost2 = dict(Q=2.0, Qf=5.0)
    for _ in range(2):
        for x0, U, cost in ((rng.standard_normal(3), rng.standard_normal((7, 1)), cost1),
                            (rng.standard_normal(3), rng.standard_normal((7, 1)), cost2),
                            (rng.standard_normal((2, 3)), rng.standard_normal((2, 7, 1)), None)):
            got = cp.bptt(model, x0, U, cost, wrt_x0=True)
            fresh = cp.TrajectoryObjective(cp.Dynamics(net.copy(), 3), x0, 7, cost)
            want = fresh.value_and_grad(U, wrt_x0=True)
            for a, b in zip(got, want):
                np.testing.assert_array_equal(a, b)
        net.weights = net.weights + 0.1
    assert len(model._objectives) == 2          # (7, 1, False) and (7, 2, True)


def test_bptt_sees_a_cost_changed_in_place_and_is_safe_across_threads():
    import threading
    rng = np.random.default_rng(12)
    model = cp.Dynamics(cp.Network.mlp([4, 8, 2], hidden="tanh", seed=3), 2)
    x0, U = rng.standard_normal(2), rng.standard_normal((9, 2))
    c = cp.TrajectoryCost(goal=[0.5, 0.5], Q=1.0)
    cp.bptt(model, x0, U, c)
    c.Q = 10.0
    got = cp.bptt(model, x0, U, c)
    want = cp.TrajectoryObjective(cp.Dynamics(model.net.copy(), 2), x0, 9, c).value_and_grad(U)
    assert got[0] == want[0] and np.array_equal(got[1], want[1])
    with pytest.raises(AttributeError):
        model.residual = True                  # fixed at construction (caches rely on it)
    # threads sharing one model each get their own answers
    inputs = [(rng.standard_normal(2), rng.standard_normal((9, 2))) for _ in range(2)]
    ref = [cp.bptt(model, a, b) for a, b in inputs]
    bad = []

    def work(i):
        for _ in range(200):
            J, g = cp.bptt(model, *inputs[i])
            if J != ref[i][0] or not np.array_equal(g, ref[i][1]):
                bad.append(i)
    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not bad


@pytest.mark.parametrize("propagation", [None, "members", "mean"])
def test_costs_alone_call_a_terms_value_method_and_equal_the_full_evaluation(rng, propagation):
    """costs() and value() build no gradient: a custom term's ``value`` method is called
    instead of the term (a term without one is called and its value taken), and the costs
    equal those of the full evaluation -- for an ensemble with its disagreement penalty."""
    n, m, T, B = 2, 1, 4, 3
    net = dynamics_net(rng, n, m)
    model = (cp.Dynamics(net, n) if propagation is None else
             cp.Dynamics(cp.Ensemble(net, 3, seed=1), n, disagreement=[0.3, 0.7],
                         propagation=propagation))
    calls = {"call": 0, "value": 0}
    c = rng.standard_normal(n)

    class Term:
        def __call__(self, S, U):
            calls["call"] += 1
            return (S[..., 0] ** 2).sum(axis=1), 2 * S * [1.0, 0.0], None

        def value(self, S, U):
            calls["value"] += 1
            return (S[..., 0] ** 2).sum(axis=1)

    def terminal(xT):
        v = np.exp(xT @ c)
        return v, v[:, None] * c

    cost = cp.TrajectoryCost(goal=rng.standard_normal((B, T, n)), Q=0.5, R=0.2, S=0.1,
                             terminal=terminal, trajectory=Term())
    obj = cp.TrajectoryObjective(model, rng.standard_normal((B, n)), T, cost)
    u = 0.5 * rng.standard_normal(obj.n_vars)
    alone = obj.costs(u).copy()
    assert calls == {"call": 0, "value": 1}
    fresh = cp.TrajectoryObjective(model, obj.x0, T, cost)
    J, _ = fresh(u)
    assert calls == {"call": 1, "value": 1}
    np.testing.assert_allclose(alone, fresh.last_costs, rtol=1e-14, atol=0)
    assert obj.value(u + 0.1) == pytest.approx(fresh(u + 0.1)[0], rel=1e-14)
    assert J == pytest.approx(alone.sum(), rel=1e-14)
