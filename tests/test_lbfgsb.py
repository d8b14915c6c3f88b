"""lbfgsb (ctrlprop's dense L-BFGS-B) and method="dense-lbfgsb" in the entry points."""

import numpy as np
import pytest
from scipy.optimize import Bounds, minimize, rosen, rosen_der

import ctrlprop as cp
from ctrlprop.solvers.ddp import box_qp
from ctrlprop.solvers.lbfgsb import lbfgsb, search_direction
from conftest import sin_model


def spd(rng, n, lo=0.2, hi=5.0):
    V = np.linalg.qr(rng.standard_normal((n, n)))[0]
    return (V * np.geomspace(lo, hi, n)) @ V.T


def recorded(fun, lo, hi, seen):
    """fun, recording that every point it is given lies within [lo, hi]."""
    def f(x):
        seen.append(bool(np.all(x >= lo) and np.all(x <= hi)))
        return fun(x)
    return f


@pytest.mark.parametrize("n", [1, 4, 30])
@pytest.mark.parametrize("seed", [0, 1])
def test_box_qp_solution_matches_an_exact_qp_solver(n, seed):
    rng = np.random.default_rng([n, seed])
    H, c = spd(rng, n), 3.0 * rng.standard_normal(n)
    lo, hi = -rng.uniform(0.1, 1.0, n), rng.uniform(0.1, 1.0, n)
    lo[0] = -np.inf                                   # one variable bounded on one side only
    seen = []
    r = lbfgsb(recorded(lambda x: (0.5 * x @ H @ x + c @ x, H @ x + c), lo, hi, seen),
               np.zeros(n), lo, hi, gtol=1e-12, ftol=0.0, maxiter=500)
    exact, _, ok = box_qp(H[None], c[None], lo[None], hi[None], maxiter=200)
    assert ok[0] and r.status == 0 and all(seen)
    np.testing.assert_allclose(r.x, exact[0], atol=1e-7)


def test_unconstrained_quadratic_reaches_the_newton_point():
    rng = np.random.default_rng(3)
    H, c = spd(rng, 12, 0.5, 20.0), rng.standard_normal(12)
    r = lbfgsb(lambda x: (0.5 * x @ H @ x + c @ x, H @ x + c), np.ones(12), gtol=1e-11,
               ftol=0.0)
    # f's rounding fixes a minimizer only to about sqrt(eps) |x|: scipy stops at the same
    # 2.3e-8 here, by the same test (no further decrease of f)
    np.testing.assert_allclose(r.x, np.linalg.solve(H, -c), atol=1e-7)


def test_rosenbrock_with_bounds_reaches_scipys_minimum_and_stays_in_the_box():
    lo, hi = np.full(8, -2.0), np.full(8, 0.8)
    seen = []
    x0 = np.full(8, -1.2)
    r = lbfgsb(recorded(lambda x: (rosen(x), rosen_der(x)), lo, hi, seen), x0, lo, hi,
               gtol=1e-9, ftol=0.0, maxiter=2000)
    s = minimize(lambda x: (rosen(x), rosen_der(x)), x0, jac=True, method="L-BFGS-B",
                 bounds=Bounds(lo, hi), options=dict(gtol=1e-9, ftol=0.0, maxiter=2000))
    assert all(seen) and r.success
    np.testing.assert_allclose(r.x, s.x, atol=1e-5)
    assert r.fun <= s.fun + 1e-9


def _state(rng, n, k):
    x = rng.uniform(-1.0, 1.0, n)
    x[: n // 3] = 1.0                                    # some at a bound
    g = rng.standard_normal(n)
    S = rng.standard_normal((k, n))
    Y = S @ spd(rng, n) + 0.01 * rng.standard_normal((k, n))   # s.y > 0
    return x, g, -np.ones(n), np.ones(n), S, Y


@pytest.mark.parametrize("n,k", [(6, 0), (6, 3), (20, 10)])
def test_the_matrix_is_the_bfgs_updates_and_the_cauchy_point_the_paths_first_minimum(n, k):
    rng = np.random.default_rng([n, k])
    x, g, lo, hi, S, Y = _state(rng, n, max(k, 1))
    theta = float(Y[k - 1] @ Y[k - 1] / (S[k - 1] @ Y[k - 1])) if k else 1.0
    B, xc, d = np.empty((n, n)), np.empty(n), np.empty(n)
    pg, gd, amax = search_direction(x, g, lo, hi, S, Y, k, theta, 0.0, B, xc, d)
    ref = theta * np.eye(n)                              # k BFGS updates of theta I
    for s, y in zip(S[:k], Y[:k]):
        Bs = ref @ s
        ref = ref - np.outer(Bs, Bs) / (s @ Bs) + np.outer(y, y) / (y @ s)
    np.testing.assert_allclose(B, ref, rtol=1e-9, atol=1e-9)
    # q along the projected path x(t) = P(x - t g) decreases up to xc, then rises
    def q(z):
        return g @ (z - x) + 0.5 * (z - x) @ ref @ (z - x)
    tc = max(np.max(np.abs(xc - x) / np.maximum(np.abs(g), 1e-300)), 1e-12)
    path = [np.clip(x - t * g, lo, hi) for t in np.linspace(0.0, 1.0, 401)[1:] * tc]
    assert np.all(np.diff([q(z) for z in path]) <= 1e-12)
    assert q(np.clip(x - 1.001 * tc * g, lo, hi)) >= q(xc) - 1e-12
    # the step is a feasible descent direction, amax its largest feasible step
    assert gd < 0 and gd == pytest.approx(g @ d) and amax >= 1.0 - 1e-12
    z = x + d
    assert np.all(z >= lo - 1e-12) and np.all(z <= hi + 1e-12)
    assert np.isclose(pg, np.abs(np.clip(x - g, lo, hi) - x).max())


def test_compiled_and_numpy_directions_agree():
    kern = pytest.importorskip("ctrlprop.solvers.lbfgsb_kernels")
    for n, k in [(1, 1), (7, 2), (30, 10)]:
        rng = np.random.default_rng([7, n, k])
        x, g, lo, hi, S, Y = _state(rng, n, k)
        outs = []
        for fn in (search_direction, kern.search_direction):
            B, xc, d = np.empty((n, n)), np.empty(n), np.empty(n)
            outs.append((np.array(fn(x, g, lo, hi, S, Y, k, 1.7, 0.0, B, xc, d)), d, xc))
        for a, b in zip(*outs):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)


def test_a_function_reusing_its_gradient_buffer_gives_the_same_run():
    rng = np.random.default_rng(5)
    H, c = spd(rng, 9), rng.standard_normal(9)
    buf = np.empty(9)

    def reusing(x):
        np.dot(H, x, out=buf)
        np.add(buf, c, out=buf)
        return 0.5 * x @ H @ x + c @ x, buf
    a = lbfgsb(reusing, np.zeros(9), -0.3, 0.3)
    b = lbfgsb(lambda x: (0.5 * x @ H @ x + c @ x, H @ x + c), np.zeros(9), -0.3, 0.3)
    assert a.nit == b.nit and a.nfev == b.nfev
    np.testing.assert_array_equal(a.x, b.x)


def test_a_non_finite_value_shortens_the_step():
    def f(x):                                   # NaN beyond x_0 = 0.5, minimum at 1
        if x[0] > 0.5:
            return np.nan, np.full_like(x, np.nan)
        return float((x - 1) @ (x - 1)), 2 * (x - 1)
    r = lbfgsb(f, np.zeros(3))
    # the edge of the finite region is found by halving brackets: to about 1e-6
    assert np.isfinite(r.fun) and 0.4999 < r.x[0] <= 0.5 and r.fun < 3.0 * 0.25 + 1e-5


def test_limits_callback_and_status():
    f = lambda x: (rosen(x), rosen_der(x))                     # noqa: E731
    r = lbfgsb(f, np.zeros(5), maxiter=3)
    assert (r.status, r.nit, r.success) == (1, 3, False)
    calls = []

    def cb(res):
        calls.append(res.fun)
        if len(calls) == 2:
            raise StopIteration
    r = lbfgsb(f, np.zeros(5), callback=cb)
    assert r.status == 3 and r.nit == 2 and calls[-1] == r.fun
    r = lbfgsb(f, np.zeros(5), -1.0, 1.0, maxiter=0)
    assert r.status == 1 and r.nfev == 1 and np.array_equal(r.x, np.zeros(5))


@pytest.mark.parametrize("kw,exc,match", [
    (dict(fun=3), TypeError, "fun must be callable"),
    (dict(x0=np.zeros((2, 2))), ValueError, "x0 must have shape"),
    (dict(x0=[0.0, np.nan]), ValueError, "x0 contains NaN"),
    (dict(lo=[0.5, 0.5]), ValueError, "x0"),
    (dict(lo=[0.0, 0.0, 0.0]), ValueError, "lo must be a scalar or of shape"),
    (dict(lo=1.0, hi=-1.0, x0=[0.0, 0.0]), ValueError, "lo must be <= hi"),
    (dict(maxcor=0), ValueError, "maxcor"),
    (dict(gtol=-1.0), ValueError, "gtol"),
    (dict(fun=lambda x: (0.0, np.zeros(3))), ValueError, "gradient of shape"),
    (dict(fun=lambda x: 1.0), TypeError, "must return a pair"),
])
def test_bad_input_names_the_argument(kw, exc, match):
    args = dict(fun=lambda x: (x @ x, 2 * x), x0=[0.0, 0.0])
    args.update(kw)
    with pytest.raises(exc, match=match):
        lbfgsb(args.pop("fun"), args.pop("x0"), **args)


def test_optimize_trajectory_and_mpc_with_dense_lbfgsb_match_L_BFGS_B():
    model = sin_model()
    n, m = model.n_states, model.n_controls
    cost = cp.TrajectoryCost(goal=np.full(n, 0.4), Q=1.0, R=0.05)
    x0 = np.zeros(n)
    res = {}
    for method in ("L-BFGS-B", "dense-lbfgsb"):
        res[method] = cp.optimize_trajectory(model, x0, 12, cost, bounds=(-0.5, 0.5),
                                             method=method, maxiter=500,
                                             options=dict(gtol=1e-10, ftol=0.0))
        assert np.all(np.abs(res[method].controls) <= 0.5)
    a, b = res["L-BFGS-B"], res["dense-lbfgsb"]
    assert b.fun == pytest.approx(a.fun, rel=1e-7)
    np.testing.assert_allclose(b.controls, a.controls, atol=1e-5)
    assert b.history["fun"][0] == pytest.approx(a.history["fun"][0])
    with pytest.raises(ValueError, match="dense-lbfgsb.*does not take.*bogus"):
        cp.optimize_trajectory(model, x0, 12, cost, method="dense-lbfgsb",
                               options=dict(bogus=1))
    runs = [cp.mpc(model, model.step, x0, 8, 6, cost=cost, bounds=(-0.5, 0.5),
                   method=method, maxiter=50) for method in ("L-BFGS-B", "dense-lbfgsb")]
    np.testing.assert_allclose(runs[1].states, runs[0].states, atol=1e-4)
    assert np.all(np.abs(runs[1].controls) <= 0.5) and m >= 1
