"""The sampling planners (cem, mppi, cem-gd): the known optimum of a convex problem (finite-
horizon LQR), the global basin of a two-basin problem, bounds, seeding, MPC warm starts."""

import pickle

import numpy as np
import pytest

import ctrlprop as cp
from ctrlprop.solvers.sampling import colored_noise, sampling_options
from test_trajectory_opt import linear_model, riccati, spd


def _lqr(seed=0, T=8):
    rng = np.random.default_rng(seed)
    n, m = 2, 1
    A = np.array([[1.0, 0.1], [0.0, 1.0]]) + 0.05 * rng.standard_normal((2, 2))
    B = np.array([[0.0], [0.1]])
    Q, Qf, R = spd(rng, n), 3 * spd(rng, n), 0.5 * spd(rng, m)
    x0 = np.array([1.0, -0.5])
    return linear_model(A, B), cp.TrajectoryCost(Q=Q, Qf=Qf, R=R), riccati(A, B, Q, Qf, R, T, x0), x0, T


def test_cem_gd_reaches_the_lqr_optimum():
    model, cost, (u_opt, _, J_opt), x0, T = _lqr()
    r = cp.optimize_trajectory(model, x0, T, cost, method="cem-gd", bounds=(-20, 20),
                               maxiter=3, options=dict(gd_maxiter=100))
    np.testing.assert_allclose(r.fun, J_opt, rtol=1e-9)
    np.testing.assert_allclose(r.x, u_opt, rtol=1e-4, atol=1e-5)
    assert r.success and r.transitions > 0 and r.gradient_sweeps > 0


def test_cem_approaches_the_lqr_optimum():
    model, cost, (u_opt, _, J_opt), x0, T = _lqr()
    r = cp.optimize_trajectory(model, x0, T, cost, method="cem", bounds=(-20, 20), maxiter=60,
                               options=dict(population=300, elites=30, min_std=1e-6))
    # sampling converges to the optimum as the spread shrinks: here to 1e-6 of J
    assert r.fun >= J_opt * (1 - 1e-12)
    assert r.fun <= J_opt * (1 + 1e-6)
    np.testing.assert_allclose(r.x, u_opt, atol=2e-3)


def test_mppi_approaches_the_lqr_optimum():
    model, cost, (u_opt, _, J_opt), x0, T = _lqr()
    # MPPI's fixed point is the optimum of the cost smoothed by its noise: with a small spread
    # and temperature it is within that spread of u*
    r = cp.optimize_trajectory(model, x0, T, cost, method="mppi", bounds=(-20, 20),
                               maxiter=40, options=dict(population=500, init_std=0.05,
                                                        temperature=1e-3))
    assert J_opt * (1 - 1e-12) <= r.fun <= J_opt * (1 + 1e-3)
    np.testing.assert_allclose(r.x, u_opt, atol=0.05)


def _two_basins():
    """x1 = x0 + u, terminal cost f(x) = (x^2 - 1)^2 + 0.3 x: global minimum near x = -1.04,
    a worse local one near x = 0.96.  From x0 = 0.5 and the default start u = 0 the
    gradient (f'(0.5) = -1.2) leads into the worse basin."""
    model = linear_model(np.eye(1), np.eye(1))

    def terminal(x):
        v = x[:, 0]
        return (v * v - 1) ** 2 + 0.3 * v, (4 * v * (v * v - 1) + 0.3)[:, None]
    cost = cp.TrajectoryCost(Q=0.0, Qf=0.0, terminal=terminal)
    return model, cost


def test_cem_gd_finds_the_global_basin_where_a_gradient_method_does_not():
    model, cost = _two_basins()
    x0 = np.array([0.5])
    grad = cp.optimize_trajectory(model, x0, 1, cost, bounds=(-3, 3))
    assert grad.states[-1, 0] > 0.9                            # stopped in the worse basin
    r = cp.optimize_trajectory(model, x0, 1, cost, method="cem-gd", bounds=(-3, 3),
                               options=dict(population=50, elites=5, refine=3))
    xs = np.roots([4, 0, -4, 0.3])                            # f'(x) = 0
    best = min(xs.real, key=lambda v: (v * v - 1) ** 2 + 0.3 * v)
    np.testing.assert_allclose(r.states[-1, 0], best, atol=1e-6)
    assert r.fun < grad.fun - 0.5


@pytest.mark.parametrize("method", ["cem", "mppi", "cem-gd"])
def test_bounds_are_never_violated(method):
    model, _, _, x0, T = _lqr()
    seen = []

    def running(X, U):
        seen.append((U.min(axis=(0, 1)), U.max(axis=(0, 1))))
        return np.zeros(X.shape[:2]), None, None
    cost = cp.TrajectoryCost(goal=[5.0, 5.0], Q=1.0, running=running)   # pushes to the bound
    lo, hi = -0.3, 0.4
    r = cp.optimize_trajectory(model, x0, T, cost, method=method, bounds=(lo, hi), maxiter=4,
                               options=dict(population=64, init_std=2.0,
                                            **({"elites": 8} if method != "mppi" else {})))
    assert np.all(r.x >= lo) and np.all(r.x <= hi)
    lows, highs = np.array([s[0] for s in seen]), np.array([s[1] for s in seen])
    assert lows.min() >= lo and highs.max() <= hi
    assert np.isclose(highs.max(), hi)                         # the bound was reached


@pytest.mark.parametrize("method", ["cem", "mppi", "cem-gd"])
def test_seeded_and_reproducible(method):
    model, _, _, x0, T = _lqr()
    cost = cp.TrajectoryCost(goal=[5.0, 5.0])          # far: every plan beats the start
    kw = dict(method=method, bounds=(-2, 2), maxiter=3, options=dict(population=32,
              **({"elites": 6} if method != "mppi" else {})))
    a = cp.optimize_trajectory(model, x0, T, cost, seed=1, **kw)
    b = cp.optimize_trajectory(model, x0, T, cost, seed=1, **kw)
    c = cp.optimize_trajectory(model, x0, T, cost, seed=2, **kw)
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.history["fun"], b.history["fun"])
    assert not np.array_equal(a.history["fun"], c.history["fun"])


def test_batch_of_initial_states_and_restarts():
    model, cost, _, _, T = _lqr()
    X0 = np.array([[1.0, -0.5], [0.2, 0.3], [-1.0, 0.0]])
    r = cp.optimize_trajectory(model, X0, T, cost, method="cem-gd", bounds=(-20, 20),
                               restarts=1, options=dict(gd_maxiter=60))
    assert r.x.shape == (3, T, 1) and r.all_controls.shape == (3, 2, T, 1)
    A, B, Q, Qf, R = _lqr_matrices()
    for b in range(3):                     # every row reaches its own LQR optimum
        np.testing.assert_allclose(r.fun[b], riccati(A, B, Q, Qf, R, T, X0[b])[2], rtol=1e-8)


def _lqr_matrices(seed=0):
    rng = np.random.default_rng(seed)
    A = np.array([[1.0, 0.1], [0.0, 1.0]]) + 0.05 * rng.standard_normal((2, 2))
    B = np.array([[0.0], [0.1]])
    Q, Qf, R = spd(rng, 2), 3 * spd(rng, 2), 0.5 * spd(rng, 1)
    return A, B, Q, Qf, R


def test_mpc_with_sampling_planners_warm_starts_and_counts():
    model, cost, _, x0, T = _lqr()
    A, B, *_ = _lqr_matrices()

    def plant(x, u):
        return A @ x + B @ u
    for method in ("cem", "mppi", "cem-gd"):
        r = cp.mpc(model, plant, x0, 6, T, cost, method=method, bounds=(-3, 3), maxiter=3,
                   options=dict(population=64, **({"elites": 8} if method != "mppi" else {})))
        assert np.all(np.abs(r.controls) <= 3)
        assert np.all(r.history["nfev"] >= 64 * 3)
        assert np.linalg.norm(r.states[-1]) < np.linalg.norm(x0)
    planner = cp.Planner(model, T, cost, method="cem", bounds=(-3, 3), maxiter=2,
                         options=dict(population=16, elites=4), seed=3)
    s = planner.plan(x0)
    # the next plan starts from CEM's mean (shifted by a step), not from its best sample
    warm = planner.U.copy()
    assert warm.shape == (T, 1) and planner.transitions == s.nfev * T
    assert not np.array_equal(warm, s.plan) and np.all(np.abs(warm) <= 3)
    gd = cp.Planner(model, T, cost, method="cem-gd", bounds=(-3, 3), maxiter=2,
                    options=dict(population=16, elites=4, refine=2), seed=3)
    np.testing.assert_array_equal(gd.U, gd.u0)
    sg = gd.plan(x0)
    np.testing.assert_array_equal(gd.U, sg.plan)          # cem-gd: from its refined answer
    again = cp.Planner(model, T, cost, method="cem", bounds=(-3, 3), maxiter=2,
                       options=dict(population=16, elites=4), seed=3)
    np.testing.assert_array_equal(again.plan(x0).x, s.x)


def test_sampling_under_an_ensemble_evaluates_every_member():
    net = cp.Network.mlp([3, 5, 2], seed=0)
    model = cp.Dynamics(cp.Ensemble(net, 4, seed=1), 2, residual=True, disagreement=0.5)
    cost = cp.TrajectoryCost(goal=[0.3, 0.0], R=0.1)
    r = cp.optimize_trajectory(model, np.zeros(2), 5, cost, method="cem", bounds=(-1, 1),
                               maxiter=3, options=dict(population=20, elites=4))
    assert r.transitions == (1 + 3 * 20) * 5 * 4
    obj = cp.TrajectoryObjective(model, np.zeros(2), 5, cost)
    np.testing.assert_allclose(r.fun, obj.value(r.x), rtol=1e-12)


def test_colored_noise_has_unit_variance_and_its_slope():
    rng = np.random.default_rng(0)
    for beta in (0.0, 1.0, 2.0):
        x = colored_noise(rng, (20000, 16, 2), beta)
        assert x.shape == (20000, 16, 2)
        np.testing.assert_allclose(x.var(axis=0).mean(), 1.0, rtol=0.02)
        P = (np.abs(np.fft.rfft(x, axis=1)) ** 2).mean(axis=(0, 2))
        # PSD ~ f^-beta: bins 1 and 4 (f = 1/16, 1/4) differ by 4^beta (2 % sampling error
        # of 40,000 sequences, so 5 % bounds)
        np.testing.assert_allclose(P[1] / P[4], 4.0 ** beta, rtol=0.05)


def test_nonfinite_costs_never_win():
    from ctrlprop.solvers.sampling import cem, mppi
    lo, hi = np.full((3, 1), -2.0), np.full((3, 1), 2.0)

    def evaluate(S):                  # NaN at the start (u = 0), finite elsewhere
        f = np.sum((S - 1.0) ** 2, axis=(2, 3))
        f[np.all(S == 0.0, axis=(2, 3))] = np.nan
        return f
    out = cem(evaluate, np.zeros((1, 3, 1)), lo, hi, np.random.default_rng(0), maxiter=3,
              population=20, elites=4, alpha=0.1, init_std=None, min_std=1e-3, noise_beta=0.0,
              keep_elites=0.0)
    assert np.isfinite(out["fun"][0]) and not np.all(out["x"] == 0)
    # a problem whose every candidate is non-finite keeps its mean
    out = mppi(lambda S: np.full(S.shape[:2], np.nan), np.full((1, 3, 1), 0.5), lo, hi,
               np.random.default_rng(0), maxiter=2, population=10, temperature=1.0,
               init_std=None, noise_beta=0.0)
    np.testing.assert_array_equal(out["x"], np.full((1, 3, 1), 0.5))


def test_bad_options():
    with pytest.raises(ValueError, match="unknown option"):
        sampling_options({"popsize": 3}, "cem")
    with pytest.raises(ValueError, match="elites"):
        sampling_options({"population": 4, "elites": 5}, "cem")
    with pytest.raises(ValueError, match="refine"):
        sampling_options({"elites": 3, "refine": 4}, "cem-gd")
    with pytest.raises(ValueError, match="temperature"):
        sampling_options({"temperature": 0.0}, "mppi")
    with pytest.raises(TypeError, match="alpha"):
        sampling_options({"alpha": "0.1"}, "cem")
    with pytest.raises(ValueError, match=r"options\['workers'\]"):
        sampling_options({"workers": 0}, "mppi")
    with pytest.raises(TypeError, match=r"options\['workers'\]"):
        sampling_options({"workers": 2.0}, "cem-gd")
    model, cost, _, x0, T = _lqr()
    with pytest.raises(ValueError, match="constraints"):
        cp.optimize_trajectory(model, x0, T, cost, method="cem",
                               constraints=cp.StateBounds([-5, -5], [5, 5]))
    with pytest.raises(ValueError, match="unknown option"):
        cp.Planner(model, T, cost, method="mppi", options={"elites": 3})
    with pytest.raises(ValueError, match="gd_options"):
        cp.optimize_trajectory(model, x0, T, cost, method="cem-gd",
                               options={"gd_options": {"foo": 1}})
    with pytest.raises(ValueError, match="maxiter"):
        cp.optimize_trajectory(model, x0, T, cost, method="cem-gd", maxiter=0)


def _ensemble_problem():
    net = cp.Network.mlp([4, 8, 3], seed=0)
    model = cp.Dynamics(cp.Ensemble(net, 3, seed=1), 3, residual=True, disagreement=0.2)
    return model, cp.TrajectoryCost(goal=[0.5, -0.3, 0.1], Q=[1.0, 2.0, 0.5], R=0.1)


def test_workers_split_the_population_and_agree_with_one_thread():
    """workers=3: three groups of candidates (7 + 6 + 7) roll out on three threads; their
    costs are those of the one-thread rollout (to rounding), a run is reproducible, and an
    error in a worker reaches the caller."""
    from ctrlprop.planning.sampling import Sampler
    model, cost = _ensemble_problem()
    X0 = np.array([[0.1, 0.2, -0.3], [-0.5, 0.0, 0.4]])
    S = np.random.default_rng(0).uniform(-1, 1, (2, 20, 6, 1))
    one = Sampler(model, X0, 6, cost, None, "cem", dict(population=20, elites=4))
    three = Sampler(model, X0, 6, cost, None, "cem", dict(population=20, elites=4, workers=3))
    f1, f3 = one.evaluate(S), three.evaluate(S)
    assert sorted(k for k, _ in three._objs) == [6, 7, 7]
    np.testing.assert_allclose(f3, f1, rtol=1e-12, atol=0)
    again = Sampler(model, X0, 6, cost, None, "cem", dict(population=20, elites=4, workers=3))
    np.testing.assert_array_equal(again.evaluate(S), f3)             # reproducible
    assert three._pool._max_workers == 3

    def huge(states, controls):                 # overflows: inf, or an error under errstate
        return np.exp(np.full(len(states), 1e3)), None, None
    three.set_problem(cost=cp.TrajectoryCost(trajectory=huge))
    with np.errstate(over="ignore"):
        assert np.isinf(three.evaluate(S)).all()
    with np.errstate(over="raise"):             # the caller's numpy error state holds there
        with pytest.raises(FloatingPointError):
            three.evaluate(S)
    obj = cp.TrajectoryObjective(model, np.repeat(X0, 20, axis=0), 6, cost)
    np.testing.assert_allclose(f3.ravel(), obj.costs(S.ravel()), rtol=1e-12, atol=0)

    def bad(states, controls):
        raise RuntimeError("a bad cost")
    three.set_problem(cost=cp.TrajectoryCost(trajectory=bad))
    with pytest.raises(RuntimeError, match="a bad cost"):
        three.evaluate(S)
    three.close()


@pytest.mark.parametrize("method", ["cem", "mppi", "cem-gd"])
def test_workers_plan_as_one_thread_does(method):
    model, cost = _ensemble_problem()
    opts = dict(population=30, **({"elites": 6} if method != "mppi" else {}))
    kw = dict(method=method, bounds=(-1, 1), maxiter=3, seed=4)
    a = cp.optimize_trajectory(model, [0.1, 0.2, -0.3], 6, cost, options=opts, **kw)
    b = cp.optimize_trajectory(model, [0.1, 0.2, -0.3], 6, cost,
                               options=dict(opts, workers=2), **kw)
    c = cp.optimize_trajectory(model, [0.1, 0.2, -0.3], 6, cost,
                               options=dict(opts, workers=2), **kw)
    np.testing.assert_array_equal(b.x, c.x)
    np.testing.assert_allclose(b.x, a.x, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(b.fun, a.fun, rtol=1e-9)
    planner = cp.Planner(model, 6, cost, options=dict(opts, workers=2), **kw)
    p1 = planner.plan(np.zeros(3))
    copy = pickle.loads(pickle.dumps(planner))
    np.testing.assert_array_equal(copy.plan(p1.predicted).x, planner.plan(p1.predicted).x)
