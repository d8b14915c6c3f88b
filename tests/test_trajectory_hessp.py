"""TrajectoryObjective.hessp: the exact Hessian-vector product of the trajectory cost with
respect to the controls (second-order adjoint), against differences of the BPTT gradient."""

import numpy as np
import pytest
from scipy.optimize import minimize

import ctrlprop as cp
from conftest import dynamics_net




def spd(rng, k):
    A = rng.standard_normal((k, k))
    return A @ A.T / k + 0.1 * np.eye(k)


def full_cost(rng, n, m, T):
    """Q, Qf, R, S full matrices and a goal trajectory."""
    return cp.TrajectoryCost(goal=rng.standard_normal((T, n)), Q=spd(rng, n), Qf=spd(rng, n),
                             R=spd(rng, m), S=spd(rng, m))


def fd_hessp(obj, u, p, h):
    """Central differences of the gradient along p, Richardson-extrapolated (error O(h^4))."""
    def d(s):
        return (obj(u + s * p)[1] - obj(u - s * p)[1]) / (2 * s)
    return (4 * d(h / 2) - d(h)) / 3


def assert_hessp(obj, u, p, rtol=1e-8):
    """obj.hessp(u, p) against extrapolated differences of the gradient, relative to
    max |H p|.  Steps 1e-3, 1e-4, 1e-5 (times 1/max|p|) are tried in turn -- a strongly
    curved random model needs a small step, a large gradient a large one -- and the check
    passes at the first that agrees; a wrong product agrees with none."""
    hp = obj.hessp(u, p)
    assert hp.shape == u.shape
    errs = []
    for h in (1e-3, 1e-4, 1e-5):
        ref = fd_hessp(obj, u, p, h / np.abs(p).max())
        scale = np.abs(ref).max()
        assert scale > 0
        errs.append(np.abs(hp - ref).max() / scale)
        if errs[-1] < rtol:
            return
    raise AssertionError(f"H p errors {errs} at steps 1e-3, 1e-4, 1e-5 "
                         f"(max |H p| {np.abs(hp).max():.3g})")


# ---------------------------------------------------------------- against finite differences
@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("B", [1, 3])
@pytest.mark.parametrize("scaled", [False, True])
@pytest.mark.parametrize("n_exo", [0, 2])
def test_hessp_matches_gradient_differences(residual, B, scaled, n_exo):
    rng = np.random.default_rng([residual, B, scaled, n_exo])
    T = 6
    for _ in range(3):                                   # several random DAG models
        n, m = int(rng.integers(1, 4)), int(rng.integers(1, 3))
        net = dynamics_net(rng, n, m, n_exo, scaled=scaled)
        model = cp.Dynamics(net, n, residual=residual, n_exo=n_exo)
        exo = rng.standard_normal((B, T, n_exo) if B > 1 else (T, n_exo)) if n_exo else None
        x0 = rng.standard_normal((B, n) if B > 1 else n)
        obj = cp.TrajectoryObjective(model, x0, T, full_cost(rng, n, m, T), exo=exo)
        u = 0.5 * rng.standard_normal(obj.n_vars)
        p = rng.standard_normal(obj.n_vars)
        assert_hessp(obj, u, p)


def test_hessp_is_symmetric_linear_and_zero_at_zero(rng):
    n, m, T = 3, 2, 5
    model = cp.Dynamics(dynamics_net(rng, n, m, 1, scaled=True), n, residual=True, n_exo=1)
    obj = cp.TrajectoryObjective(model, rng.standard_normal((2, n)), T, full_cost(rng, n, m, T),
                                 exo=rng.standard_normal(1))
    u, p, q = (rng.standard_normal(obj.n_vars) for _ in range(3))
    Hp, Hq = obj.hessp(u, p), obj.hessp(u, q)
    assert q @ Hp == pytest.approx(p @ Hq, rel=1e-11)
    np.testing.assert_allclose(obj.hessp(u, 2 * p - q), 2 * Hp - Hq, rtol=1e-11,
                               atol=1e-12 * np.abs(Hp).max())
    np.testing.assert_array_equal(obj.hessp(u, np.zeros(obj.n_vars)), 0.0)


def test_batched_hessp_is_block_diagonal(rng):
    """A batch's H p is the per-trajectory products side by side (own goal, own exo)."""
    n, m, T, B = 2, 2, 5, 3
    model = cp.Dynamics(dynamics_net(rng, n, m, 1, scaled=True), n, residual=True, n_exo=1)
    goals, E = rng.standard_normal((B, T, n)), rng.standard_normal((B, T, 1))
    cost = cp.TrajectoryCost(goal=goals, Q=1.0, Qf=2.0, R=0.3, S=0.2)
    X0 = rng.standard_normal((B, n))
    obj = cp.TrajectoryObjective(model, X0, T, cost, exo=E)
    u, p = rng.standard_normal(obj.n_vars), rng.standard_normal(obj.n_vars)
    Hp = obj.hessp(u, p).reshape(B, T * m)
    k = T * m
    for b in range(B):
        one = cp.TrajectoryObjective(model, X0[b], T, cost.with_goal(goals[b]), exo=E[b])
        np.testing.assert_allclose(Hp[b], one.hessp(u[b * k:(b + 1) * k], p[b * k:(b + 1) * k]),
                                   rtol=1e-11, atol=1e-13)


@pytest.mark.parametrize("residual", [False, True])
def test_linear_model_gives_the_constant_hessian(rng, residual):
    """x_{t+1} = A x_t + B u_t + C e_t + d (scaled, linear units) and a quadratic cost: J is
    quadratic in u, so gradient differences with unit steps give its Hessian exactly (up to
    round-off), column by column; H p must equal it times p at any u."""
    n, m, e, T = 3, 2, 1, 6
    net = cp.Network.mlp([n + m + e, 4, n], hidden="linear", seed=1)
    net.weights = net.weights + 0.1 * rng.standard_normal(net.n_weights)
    k = net.n_inputs
    net.set_scaling(rng.standard_normal(k), rng.uniform(0.5, 2, k),
                    rng.standard_normal(n), rng.uniform(0.5, 2, n))
    model = cp.Dynamics(net, n, residual=residual, n_exo=e)
    obj = cp.TrajectoryObjective(model, rng.standard_normal((2, n)), T, full_cost(rng, n, m, T),
                                 exo=rng.standard_normal((T, e)))
    u0 = rng.standard_normal(obj.n_vars)
    g0 = obj(u0)[1]
    H = np.empty((obj.n_vars, obj.n_vars))
    for j in range(obj.n_vars):
        d = np.zeros(obj.n_vars)
        d[j] = 1.0
        H[:, j] = obj(u0 + d)[1] - g0
    np.testing.assert_allclose(H, H.T, atol=1e-10 * np.abs(H).max())
    for _ in range(3):
        u, p = rng.standard_normal(obj.n_vars), rng.standard_normal(obj.n_vars)
        Hp, ref = obj.hessp(u, p), H @ p
        assert np.abs(Hp - ref).max() <= 1e-8 * np.abs(ref).max()


# ---------------------------------------------------------------- custom terms
def custom_terms(c):
    def running(X, U):                     # sum_t sum_i cos(x_ti) + u_t^4, X (B, T, n)
        return (np.cos(X).sum(axis=2) + (U ** 4).sum(axis=2), -np.sin(X), 4 * U ** 3)

    def terminal(xT):                      # exp(c . x_T)
        v = np.exp(xT @ c)
        return v, v[:, None] * c

    def trajectory(S, U):                  # sum over all states of x_t1 * x_t2 + sin(u)
        return ((S[..., 0] * S[..., 1]).sum(axis=1) + np.sin(U).sum(axis=(1, 2)),
                np.stack([S[..., 1], S[..., 0]], axis=-1), np.cos(U))
    return dict(running=running, terminal=terminal, trajectory=trajectory)


@pytest.mark.parametrize("B", [1, 3])
def test_custom_terms_central_difference_approximation(rng, B):
    """Custom terms have no Hessian: their part of H p is the central difference of their
    gradient along the tangent d, step h = eps^(1/3) (1 + |z|) / |d|, so h |d| ~ 6e-6 (1 + |z|)
    ~ 8e-5 here (states up to ~13).  For terms whose curvature varies on a unit scale (cos,
    exp, u^4) the truncation error is ~ (h |d|)^2 / 6 ~ 1e-9 relative and the round-off
    ~ eps / (h |d|) ~ 3e-12; the reference (extrapolated differences of the exact gradient)
    is good to ~1e-10 (see the exact tests).  Hence 1e-7 -- 100x the predicted error, 10x
    looser than the exact products' 1e-8 -- which still catches a missing or wrong term
    (an O(1) error, checked below)."""
    n, m, T = 2, 1, 5
    model = cp.Dynamics(dynamics_net(rng, n, m, scaled=True), n, residual=True)
    cost = cp.TrajectoryCost(Q=0.5, R=0.2, S=0.1, **custom_terms(rng.standard_normal(n)))
    obj = cp.TrajectoryObjective(model, rng.standard_normal((B, n) if B > 1 else n), T, cost)
    u, p = 0.5 * rng.standard_normal(obj.n_vars), rng.standard_normal(obj.n_vars)
    assert_hessp(obj, u, p, rtol=1e-7)
    # the approximation is needed: without the custom terms H p is far off
    plain = cp.TrajectoryObjective(model, obj.x0 if B > 1 else obj.x0[0], T,
                                   cp.TrajectoryCost(Q=0.5, R=0.2, S=0.1))
    Hp = obj.hessp(u, p)
    assert np.abs(plain.hessp(u, p) - Hp).max() > 1e-2 * np.abs(Hp).max()


def test_quadratic_custom_term_matches_the_exact_weight(rng):
    """A custom terminal 1/2 w |x_T - g|^2 has an affine gradient, so its central difference
    is exact up to round-off (~eps / h ~ 4e-11 relative): H p equals that of Qf = w."""
    n, m, T, w = 3, 2, 5, 1.7
    model = cp.Dynamics(dynamics_net(rng, n, m, scaled=True), n)
    g = rng.standard_normal(n)

    def terminal(xT):
        d = xT - g
        return 0.5 * w * (d * d).sum(axis=1), w * d

    x0 = rng.standard_normal(n)
    # the same J: the terminal weight as the custom term (Qf = 0) or as Qf = w
    custom = cp.TrajectoryObjective(model, x0, T, cp.TrajectoryCost(
        goal=g, Q=1.0, Qf=0.0, R=0.1, terminal=terminal))
    exact = cp.TrajectoryObjective(model, x0, T, cp.TrajectoryCost(goal=g, Q=1.0, Qf=w, R=0.1))
    u, p = rng.standard_normal(custom.n_vars), rng.standard_normal(custom.n_vars)
    assert custom(u)[0] == pytest.approx(exact(u)[0], rel=1e-13)
    ref = exact.hessp(u, p)
    np.testing.assert_allclose(custom.hessp(u, p), ref, rtol=0, atol=1e-9 * np.abs(ref).max())


# ---------------------------------------------------------------- with scipy
def test_trust_krylov_reaches_the_lbfgs_minimum():
    n, m, T = 2, 1, 10
    net = cp.Network.mlp([n + m, 8, n], hidden="tanh", seed=3)
    model = cp.Dynamics(net, n, residual=True)
    cost = cp.TrajectoryCost(goal=[0.5, -0.3], Q=1.0, Qf=5.0, R=0.1, S=0.05)
    obj = cp.TrajectoryObjective(model, [0.2, 0.1], T, cost)
    u0 = np.zeros(obj.n_vars)
    ref = minimize(obj, u0, jac=True, method="L-BFGS-B",
                   options=dict(gtol=1e-10, ftol=1e-15, maxiter=5000))
    # gtol 1e-8: below that the predicted reduction (~ |g|^2 / lambda_min) is under the
    # round-off of J ~ 1.3 and scipy ends with "bad approximation"
    res = minimize(obj, u0, jac=True, hessp=obj.hessp, method="trust-krylov",
                   options=dict(gtol=1e-8))
    assert ref.success and res.success, (ref.message, res.message)
    assert res.nhev > 0 and res.nit < ref.nit
    assert res.fun == pytest.approx(ref.fun, rel=1e-10)
    np.testing.assert_allclose(res.x, ref.x, atol=1e-6)
    assert np.abs(res.x).max() > 0.1                     # a non-trivial minimum


# ---------------------------------------------------------------- bookkeeping and errors
def test_hessp_leaves_the_objective_consistent(rng):
    model = cp.Dynamics(dynamics_net(rng, 2, 1, scaled=True), 2)
    cost = dict(goal=[1.0, -1.0], R=0.1)
    obj = cp.TrajectoryObjective(model, rng.standard_normal(2), 6, cost)
    fresh = cp.TrajectoryObjective(model, obj.x0[0], 6, cost)
    u, v, p = (rng.standard_normal(6) for _ in range(3))
    f, g = obj(u)
    Hp = obj.hessp(v, p)                                 # another point: a new rollout
    f2, g2 = obj(u)
    assert f2 == f and np.array_equal(g2, g)
    np.testing.assert_array_equal(Hp, fresh.hessp(v, p))
    net = model.net
    net.weights = net.weights * 1.1                      # new weights are picked up
    np.testing.assert_allclose(obj.hessp(v, p),
                               cp.TrajectoryObjective(model, obj.x0[0], 6, cost).hessp(v, p),
                               rtol=1e-12)


def test_hessp_bad_arguments(rng):
    model = cp.Dynamics(dynamics_net(rng, 3, 2), 3)
    obj = cp.TrajectoryObjective(model, np.zeros(3), 5)
    with pytest.raises(ValueError, match=r"p must have 10 entries \(controls of shape \(5, 2\)"):
        obj.hessp(np.zeros(10), np.zeros(9))
    with pytest.raises(ValueError, match="u must have 10 entries"):
        obj.hessp(np.zeros(11), np.zeros(10))
    with pytest.raises(TypeError, match="p must be a numeric array"):
        obj.hessp(np.zeros(10), "direction")
    # (T, m)-shaped arguments are accepted like obj(u): the result is flat
    assert obj.hessp(np.zeros((5, 2)), np.ones((5, 2))).shape == (10,)
