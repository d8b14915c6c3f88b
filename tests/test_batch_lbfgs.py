"""batch_lbfgs (per-problem projected L-BFGS, vectorized) and optimize_trajectory(method="batch-lbfgs")."""

import numpy as np
import pytest
from scipy.optimize import minimize

import ctrlprop as cp
from ctrlprop.solvers.batch_lbfgs import batch_lbfgs
from conftest import sin_model


def quadratics(rng, B, n, cond=None):
    """f_b(x) = 1/2 (x - x*_b)' A_b (x - x*_b) with random SPD A_b (eigenvalues in
    [0.2, 2], or [1, cond] for the problems listed in cond); returns (fun, A, xstar)."""
    A = np.empty((B, n, n))
    for b in range(B):
        V = np.linalg.qr(rng.standard_normal((n, n)))[0]
        lam = np.linspace(0.2, 2.0, n) if cond is None or b not in cond else \
            np.geomspace(1.0, cond[b], n)
        A[b] = (V * lam) @ V.T
    xs = rng.standard_normal((B, n))

    def fun(X):
        E = X - xs
        AE = np.einsum("bij,bj->bi", A, E)
        return 0.5 * np.einsum("bi,bi->b", E, AE), AE
    return fun, A, xs


def linear_model(A, B):
    """A linear network whose weights are exactly x' = A x + B u."""
    n, m = B.shape
    net = cp.Network.mlp([n + m, n], hidden="linear", output="linear")
    W = np.hstack([A, B])
    w = np.zeros(net.n_weights)
    for k, (s, d) in enumerate(net.weight_labels):
        w[k] = 0.0 if s == "bias" else W[d - n - m, s]
    net.weights = w
    return cp.Dynamics(net, n)


def test_convex_quadratics_reach_their_minimizers(rng):
    fun, A, xs = quadratics(rng, 5, 8)
    res = batch_lbfgs(fun, np.zeros((5, 8)), gtol=1e-12, ftol=0.0)
    assert res.success and res.converged.all() and res.status == 0
    assert res.message == "5 of 5 problems converged"
    # |x - x*| <= |g| / lambda_min = 1e-12 * sqrt(8) / 0.2 ~ 1.4e-11 per problem
    np.testing.assert_allclose(res.x, xs, atol=1e-8, rtol=0)
    np.testing.assert_allclose(res.fun, 0.0, atol=1e-16)
    assert res.nit.shape == (5,) and res.nit.max() < 100
    assert len(res.history) == res.nit.max() + 1 and np.all(np.diff(res.history) <= 0)


def test_bounded_quadratics_match_scipy_and_never_leave_the_box(rng):
    fun, A, xs = quadratics(rng, 4, 6)
    lo, hi = -0.4 * np.ones(6), np.linspace(0.1, 0.6, 6)
    seen = []

    def watched(X):
        seen.append(X.copy())
        return fun(X)
    res = batch_lbfgs(watched, np.zeros((4, 6)), lo, hi, gtol=1e-12, ftol=0.0)
    assert res.success and len(seen) == res.nfev
    for X in seen:                                    # every trial point, every problem
        assert np.all(X >= lo) and np.all(X <= hi)
    at_bound = np.isclose(res.x, lo) | np.isclose(res.x, hi)
    assert at_bound.sum() >= 4                        # the bounds are active
    for b in range(4):
        ref = minimize(lambda x: (fun(np.tile(x, (4, 1)))[0][b],
                                  fun(np.tile(x, (4, 1)))[1][b]),
                       np.zeros(6), jac=True, method="L-BFGS-B", bounds=list(zip(lo, hi)),
                       options=dict(gtol=1e-13, ftol=0.0, maxiter=1000))
        # strongly convex (lambda_min >= 0.2): both solutions are within
        # |projected gradient| / 0.2 of the unique minimizer in the box
        np.testing.assert_allclose(res.x[b], ref.x, atol=1e-8, rtol=0)


def test_a_badly_scaled_problem_does_not_slow_the_others(rng):
    fun, A, xs = quadratics(rng, 4, 10, cond={2: 1e5})
    X0 = rng.standard_normal((4, 10))
    opts = dict(gtol=1e-9, ftol=0.0, maxiter=5000)
    res = batch_lbfgs(fun, X0, **opts)
    assert res.success
    for b in range(4):
        def alone(x, b=b):
            Xf = np.tile(x, (4, 1))
            f, g = fun(Xf)
            return f[b:b + 1], g[b:b + 1]
        one = batch_lbfgs(alone, X0[b:b + 1], **opts)
        assert one.success and one.nit[0] == res.nit[b]
        np.testing.assert_allclose(one.x[0], res.x[b], rtol=0, atol=1e-13)
    easy = np.delete(res.nit, 2)
    assert res.nit[2] > 3 * easy.max()               # the bad problem needs many more steps


def qp_minimizer(H, c, U, bound):
    """The exact minimizer of 1/2 u'Hu + c'u over |u| <= bound (None: unbounded), with the
    active set read off U and checked by the KKT conditions (sufficient: H is PD)."""
    u = U.ravel()
    act = np.zeros(u.size, bool) if bound is None else np.isclose(np.abs(u), bound, rtol=0,
                                                                   atol=1e-9)
    x = np.where(act, np.sign(u) * (bound or 0.0), 0.0)
    F = ~act
    x[F] = np.linalg.solve(H[np.ix_(F, F)], -(c[F] + H[np.ix_(F, act)] @ x[act]))
    g = H @ x + c
    assert np.abs(g[F]).max() < 1e-10                       # stationary on the free set
    if bound is not None:
        assert np.all(np.abs(x[F]) <= bound)                 # feasible
        assert np.all(g[act] * np.sign(x[act]) <= 1e-12)     # multipliers push outward
    return x.reshape(U.shape)


def test_trajectory_batch_equals_separate_scipy_solves_with_and_without_bounds(rng):
    n, m, T = 3, 2, 8
    A = 0.8 * np.eye(n) + 0.15 * rng.standard_normal((n, n))
    Bm = 0.7 * rng.standard_normal((n, m))
    model = linear_model(A, Bm)
    cost = cp.TrajectoryCost(Q=1.0, Qf=3.0, R=0.2, S=0.1)
    X0 = 0.5 * rng.standard_normal((4, n))
    # J(U) = 1/2 U'HU + c'U + const exactly (linear model, quadratic cost): H and c from
    # gradients (exact up to rounding), the QP solved exactly to compare both solvers
    # with.  Both stop at the float floor of J, |g| ~ 1e-7; with H >= mu I, mu > 0.25,
    # that is |U - U*| <= |g_free| / mu ~ 4e-7, so 1e-6 holds.
    obj = cp.TrajectoryObjective(model, X0, T, cost)
    N = T * m
    C = obj(np.zeros(4 * N))[1].reshape(4, N)
    H = np.array([obj(np.tile(e, 4))[1][:N] - C[0] for e in np.eye(N)])
    H = (H + H.T) / 2
    assert np.linalg.eigvalsh(H)[0] > 0.25
    tight = dict(gtol=1e-12, ftol=1e-16)
    for bound in (None, 0.15):
        bounds = None if bound is None else (-bound, bound)
        seen = []
        res = cp.optimize_trajectory(model, X0, T, cost, bounds=bounds, method="batch-lbfgs",
                                     maxiter=5000, options=dict(gtol=1e-10, ftol=0.0),
                                     callback=lambda r: seen.append(r.x.copy()))
        assert res.success.all() and res.message == "4 of 4 problems converged"
        assert res.method == "batch-lbfgs" and len(res.history["fun"]) == res.nit + 1
        assert len(seen) == res.nit
        if bound is not None:
            for U in seen + [res.controls]:
                assert np.all(np.abs(U) <= bound)
            assert np.sum(np.isclose(np.abs(res.controls), bound)) >= 4     # active
        for b in range(4):
            exact = qp_minimizer(H, C[b], res.controls[b], bound)
            one = cp.optimize_trajectory(model, X0[b], T, cost, bounds=bounds, maxiter=10000,
                                         options=tight)
            np.testing.assert_allclose(res.controls[b], exact, atol=1e-6, rtol=0)
            np.testing.assert_allclose(one.controls, exact, atol=1e-6, rtol=0)
            np.testing.assert_allclose(res.controls[b], one.controls, atol=1e-6, rtol=0)
            assert res.fun[b] == pytest.approx(one.fun, rel=1e-9)


def test_restarts_find_the_global_minimum_of_a_nonconvex_cost():
    model, cost = sin_model(), dict(goal=[0.5], Qf=1.0, R=0.01)
    grid = np.linspace(-7, 7, 200001)
    best = np.min(0.5 * (np.sin(grid) - 0.5) ** 2 + 0.5 * 0.01 * grid ** 2)
    one = cp.optimize_trajectory(model, [0.0], 1, cost, u0=[[6.8]], bounds=(-7, 7),
                                 method="batch-lbfgs")
    assert one.success and one.fun > best + 0.1        # stuck near 6.8
    many = cp.optimize_trajectory(model, [0.0], 1, cost, u0=[[6.8]], bounds=(-7, 7),
                                  restarts=20, seed=3, method="batch-lbfgs",
                                  options=dict(gtol=1e-9, ftol=0.0))
    assert many.success and many.fun == pytest.approx(best, abs=1e-9)
    assert many.all_fun[0] == pytest.approx(one.fun, rel=1e-9)
    assert abs(many.controls[0, 0] - 0.51) < 0.05
    for k in range(21):          # every start ends stationary (to the float floor of J)
        u = many.all_controls[k]
        g = cp.bptt(model, [0.0], u, cost)[1][0, 0]
        assert abs(g) <= 1e-7 or abs(abs(u[0, 0]) - 7) < 1e-12


def test_stops_on_maxiter_and_on_the_callback(rng):
    fun, _, _ = quadratics(rng, 3, 10, cond={0: 1e4, 1: 1e4, 2: 1e4})
    res = batch_lbfgs(fun, np.ones((3, 10)), maxiter=3, m=2)
    assert not res.success and res.status == 1 and np.all(res.nit == 3)
    assert res.message == "0 of 3 problems converged (3 reached maxiter)"
    calls = []
    res = batch_lbfgs(fun, np.ones((3, 10)), callback=lambda X, f: calls.append(f) or
                      len(calls) == 2)
    assert len(calls) == 2 and res.status == 3 and np.all(res.nit == 2)
    model = cp.Dynamics(cp.Network.mlp([2, 6, 1], seed=2), 1)
    res = cp.optimize_trajectory(model, [0.5], 10, dict(Q=1.0, R=0.1, goal=[1.0]),
                                 method="batch-lbfgs", callback=lambda r: True)
    assert res.nit == 1 and not res.success and "stopped by the callback" in res.message


def test_bad_input():
    fun = lambda X: ((X ** 2).sum(1), 2 * X)        # noqa: E731
    with pytest.raises(ValueError, match="X0 must have shape"):
        batch_lbfgs(fun, np.zeros(3))
    with pytest.raises(ValueError, match=r"X0\[1, 0\] = 2.0 is outside the bounds"):
        batch_lbfgs(fun, [[0.0], [2.0]], lo=-1, hi=1)
    with pytest.raises(ValueError, match=r"bounds.lb has shape \(3,\), which does not fit \(2, 1\)"):
        batch_lbfgs(fun, np.zeros((2, 1)), lo=np.zeros(3))
    with pytest.raises(ValueError, match="bounds are infeasible"):
        batch_lbfgs(fun, np.zeros((2, 1)), lo=1, hi=-1)
    with pytest.raises(ValueError, match=r"values of shape \(2,\) and grads of shape \(2, 1\)"):
        batch_lbfgs(lambda X: (X.sum(), X), np.zeros((2, 1)))
    with pytest.raises(ValueError, match="not finite at the start of problem 1"):
        batch_lbfgs(lambda X: (np.where(X[:, 0] > 1, np.inf, 0.0), X), [[0.0], [2.0]])
    with pytest.raises(ValueError, match="maxiter must be at least 1"):
        batch_lbfgs(fun, np.zeros((2, 1)), maxiter=0)
    with pytest.raises(TypeError, match="fun must be callable"):
        batch_lbfgs("f", np.zeros((2, 1)))
    model = sin_model()
    with pytest.raises(ValueError, match=r"options\['maxfun'\] is an iteration limit"):
        cp.optimize_trajectory(model, [0.0], 2, method="batch-lbfgs", options=dict(maxfun=3))
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['m'\] for method 'batch-lbfgs'"):
        cp.optimize_trajectory(model, [0.0], 2, method="batch-lbfgs", options=dict(m=3))
