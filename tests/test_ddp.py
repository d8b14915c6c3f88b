"""optimize_trajectory(method="ilqr" / "ddp"): the batched iLQR / control-limited DDP solver
(ctrlprop.solvers.ddp) and its objective side (ctrlprop.objectives.ddp_terms), against the
finite-horizon Riccati recursion, exact box-constrained QPs, finite differences of the
network's input Jacobians and of the optimal controls, and custom-term gradients."""

import warnings

import numpy as np
import pytest
from scipy.optimize import Bounds, minimize

import ctrlprop as cp
from conftest import dynamics_net
from ctrlprop.objectives.ddp_terms import DDPTerms, custom_hessian_blocks, dynamics_curvature
from ctrlprop.solvers.ddp import box_qp
from test_trajectory_opt import linear_model, riccati, spd


def lq_problem(rng, n=3, m=2, T=10):
    A = np.eye(n) + 0.3 * rng.standard_normal((n, n))
    B = rng.standard_normal((n, m))
    return A, B, spd(rng, n), 3 * spd(rng, n), spd(rng, m), T


def riccati_gains(A, B, Q, Qf, R, T):
    """The feedback u_t = -K_t x_t of the 1/2-convention finite-horizon LQR."""
    P, K = Qf, [None] * T
    for t in range(T - 1, -1, -1):
        K[t] = np.linalg.solve(R + B.T @ P @ B, B.T @ P @ A)
        P = (Q if t > 0 else 0 * Q) + A.T @ P @ (A - B @ K[t])
    return -np.array(K)


# ---------------------------------------------------------------- linear-quadratic: Riccati
@pytest.mark.parametrize("method", ["ilqr", "ddp"])
@pytest.mark.parametrize("residual", [False, True])
def test_one_iteration_reproduces_riccati(method, residual):
    rng = np.random.default_rng([3, residual])
    A, B, Q, Qf, R, T = lq_problem(rng)
    X0 = rng.standard_normal((2, 3))
    model = linear_model(A, B, residual)
    U0 = 3 * rng.standard_normal((2, T, 2))                 # any start
    with pytest.warns(cp.ConvergenceWarning):               # maxiter=1: status 1
        res = cp.optimize_trajectory(model, X0, T, cp.TrajectoryCost(Q=Q, Qf=Qf, R=R),
                                     u0=U0, method=method, maxiter=1)
    assert np.all(res.nit == 1) if np.ndim(res.nit) else res.nit == 1
    K = riccati_gains(A, B, Q, Qf, R, T)
    for b in range(2):
        U, X, J = riccati(A, B, Q, Qf, R, T, X0[b])
        np.testing.assert_allclose(res.controls[b], U, rtol=0, atol=1e-8)
        np.testing.assert_allclose(res.states[b], X, rtol=0, atol=1e-8)
        np.testing.assert_allclose(res.fun[b], J, rtol=1e-10)
        np.testing.assert_allclose(res.gains[b], K, rtol=0, atol=1e-8)
        np.testing.assert_allclose(res.feedforward[b], 0.0, atol=1e-8)
    assert np.all(res.gains_prev == 0)


# ---------------------------------------------------------------- box constraints: exact QP
def exact_box_qp(H, g, lo, hi):
    """min 1/2 u'Hu + g'u on lo <= u <= hi: L-BFGS-B for the active set, then the free
    variables' linear system solved exactly, checked against the KKT conditions."""
    r = minimize(lambda u: (0.5 * u @ H @ u + g @ u, H @ u + g), np.clip(np.zeros_like(g), lo, hi),
                 jac=True, method="L-BFGS-B", bounds=list(zip(lo, hi)),
                 options=dict(ftol=1e-15, gtol=1e-13, maxiter=10000))
    u = r.x
    for _ in range(20):
        q = H @ u + g
        at_lo = (u <= lo + 1e-9) & (q > 0)
        at_hi = (u >= hi - 1e-9) & (q < 0)
        fixed = at_lo | at_hi
        u = np.where(at_lo, lo, np.where(at_hi, hi, u))
        f = ~fixed
        u[f] = np.linalg.solve(H[np.ix_(f, f)], -(g[f] + H[np.ix_(f, fixed)] @ u[fixed]))
        inside = np.all(u >= lo - 1e-12) & np.all(u <= hi + 1e-12)
        q = H @ u + g
        if inside and np.abs(q[f]).max(initial=0) < 1e-10 and np.all(q[at_lo] >= 0) \
                and np.all(q[at_hi] <= 0):
            return u
        u = np.clip(u, lo, hi)
    raise AssertionError("the reference active-set loop did not reach a KKT point")


@pytest.mark.parametrize("method", ["ilqr", "ddp"])
@pytest.mark.parametrize("with_rate", [False, True])
def test_box_constrained_lq_matches_exact_qp(method, with_rate):
    rng = np.random.default_rng([5, with_rate])
    A, B, Q, Qf, R, T = lq_problem(rng, T=8)
    A = A * 1.3                                            # unstable enough to hit the limits
    model = linear_model(A, B, residual=True)
    cost = cp.TrajectoryCost(goal=rng.standard_normal(3), Q=Q, Qf=Qf, R=0.1 * R,
                             S=spd(rng, 2) if with_rate else 0.0)
    x0 = 2 * rng.standard_normal(3)
    lo = -0.5 - 0.5 * rng.random((T, 2))
    hi = 0.5 + 0.5 * rng.random((T, 2))
    obj = cp.TrajectoryObjective(model, x0, T, cost)
    nv = T * 2
    g0 = obj(np.zeros(nv))[1]
    H = np.stack([obj(np.eye(nv)[j])[1] - g0 for j in range(nv)], axis=1)   # affine gradient
    H = 0.5 * (H + H.T)
    ref = exact_box_qp(H, g0, lo.ravel(), hi.ravel()).reshape(T, 2)
    assert np.any(np.isclose(ref, lo) | np.isclose(ref, hi))    # some limits are active
    assert not np.all(np.isclose(ref, lo) | np.isclose(ref, hi))
    res = cp.optimize_trajectory(model, x0, T, cost, bounds=Bounds(lo, hi), method=method,
                                 options=dict(tol=1e-14))
    assert res.success
    np.testing.assert_allclose(res.controls, ref, rtol=0, atol=1e-6)
    clamped = np.isclose(res.controls, lo, atol=1e-12) | np.isclose(res.controls, hi, atol=1e-12)
    assert np.all(res.gains[clamped] == 0)                    # clamped rows: no feedback


def test_box_qp_against_exact_solution():
    rng = np.random.default_rng(11)
    Bn, m = 40, 4
    H = np.stack([spd(rng, m) for _ in range(Bn)])
    g = 3 * rng.standard_normal((Bn, m))
    lo = -rng.random((Bn, m))
    hi = rng.random((Bn, m))
    x, free, ok = box_qp(H, g, lo, hi)
    assert ok.all()
    for b in range(Bn):
        ref = exact_box_qp(H[b], g[b], lo[b], hi[b])
        np.testing.assert_allclose(x[b], ref, rtol=0, atol=1e-10)
        np.testing.assert_array_equal(free[b], ~(np.isclose(ref, lo[b]) | np.isclose(ref, hi[b]))
                                      | np.isclose(H[b] @ ref + g[b], 0, atol=1e-9))
    Hbad = H.copy()
    Hbad[0] = -np.eye(m)
    _, _, ok = box_qp(Hbad, g, np.full_like(lo, -np.inf), np.full_like(hi, np.inf))
    assert not ok[0] and ok[1:].all()


# ---------------------------------------------------------------- DDP's second-order terms


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("scaled", [False, True])
def test_curvature_matches_differences_of_input_jacobians(seed, residual, scaled):
    rng = np.random.default_rng([seed, residual, scaled])
    n, m = int(rng.integers(1, 4)), int(rng.integers(1, 3))
    e = int(seed % 2)
    model = cp.Dynamics(dynamics_net(rng, n, m, e, scaled, min_hidden=2), n, residual=residual,
                        n_exo=e)
    K = 5
    x, u = rng.standard_normal((K, n)), rng.standard_normal((K, m))
    lam = rng.standard_normal((K, n))
    exo = rng.standard_normal((K, e)) if e else None
    cxx, cux, cuu = dynamics_curvature(model, x, u, lam, exo)
    assert cxx.shape == (K, n, n) and cux.shape == (K, m, n) and cuu.shape == (K, m, m)

    def lamJ(xx, uu):                          # lam^T [dF/dx, dF/du]  (K, n + m)
        ex = None if exo is None else exo[:, None, :]
        A, Bm = model.linearize(xx, uu, ex)
        return np.einsum("ki,kij->kj", lam, np.concatenate([A, Bm], axis=2))
    h = 1e-5
    ref = np.empty((K, n + m, n + m))
    for j in range(n + m):
        d = np.zeros(n + m)
        d[j] = h
        ref[:, :, j] = (lamJ(x + d[:n], u + d[n:]) - lamJ(x - d[:n], u - d[n:])) / (2 * h)
    full = np.concatenate([np.concatenate([cxx, cux.transpose(0, 2, 1)], axis=2),
                           np.concatenate([cux, cuu], axis=2)], axis=1)
    scale = max(np.abs(ref).max(), 1e-3)
    assert np.abs(full - ref).max() <= 1e-7 * scale


def test_terms_curvature_pads_the_augmented_state():
    rng = np.random.default_rng(2)
    n, m, T = 2, 1, 4
    model = cp.Dynamics(dynamics_net(rng, n, m, 1, True, min_hidden=2), n, residual=True,
                        n_exo=1)
    terms = DDPTerms(model, rng.standard_normal(n), T, dict(S=0.3, R=0.1),
                     exo=rng.standard_normal((T, 1)))
    assert terms.augmented and terms.n_aug == n + m
    U = rng.standard_normal((1, T, m))
    Z = np.empty((1, T + 1, n + m))
    Z[:, 0] = terms.initial_states()
    for t in range(T):
        Z[:, t + 1] = terms.step(t, Z[:, t], U[:, t])
    fx, fu = terms.jacobians(Z, U)
    np.testing.assert_array_equal(fu[0, :, n:], np.ones((T, m, m)))
    v = rng.standard_normal((1, n + m))
    cxx, cux, cuu = terms.curvature(2, v)
    assert cxx.shape == (1, n + m, n + m) and cux.shape == (1, m, n + m)
    assert np.all(cxx[:, n:] == 0) and np.all(cxx[:, :, n:] == 0) and np.all(cux[:, :, n:] == 0)
    ref = dynamics_curvature(model, Z[:, 2, :n], U[:, 2], v[:, :n], terms.exo[:, 2])
    np.testing.assert_allclose(cxx[:, :n, :n], ref[0], rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(cuu, ref[2], rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_second_derivatives_of_the_horizon_match_differences_of_jacobians(seed, monkeypatch):
    """DDPTerms.second_derivatives (all steps, chunked) against central differences of the
    step Jacobians, on random DAG dynamics (scaled, with exo); and DDP gives the same solve
    with the stored tensor as with the per-step products (CURVATURE_BYTES = 0)."""
    from ctrlprop.objectives import ddp_terms
    monkeypatch.setattr(ddp_terms, "_CURVATURE_CHUNK", 7)         # several chunks
    rng = np.random.default_rng([5, seed])
    n, m, T, B = 2 + seed % 2, 1 + seed // 2, 5, 2
    e = seed % 2
    model = cp.Dynamics(dynamics_net(rng, n, m, e, scaled=True, min_hidden=2), n,
                        residual=bool(seed % 2), n_exo=e)
    exo = rng.standard_normal((T, e)) if e else None
    terms = DDPTerms(model, rng.standard_normal((B, n)), T, dict(R=0.1), exo=exo)
    U = 0.5 * rng.standard_normal((B, T, m))
    Z = np.empty((B, T + 1, n))
    Z[:, 0] = terms.initial_states()
    for t in range(T):
        Z[:, t + 1] = terms.step(t, Z[:, t], U[:, t])
    terms.jacobians(Z, U)
    F2 = terms.second_derivatives()
    assert F2.shape == (B, T, n, n + m, n + m)
    h = 1e-5
    for j in range(n + m):
        d = np.zeros(n + m)
        d[j] = h
        Jp = np.concatenate(terms.jacobians(Z + d[:n], U + d[n:]),
                            axis=3)
        Jm = np.concatenate(terms.jacobians(Z - d[:n], U - d[n:]),
                            axis=3)
        np.testing.assert_allclose(F2[:, :, :, :, j], (Jp - Jm) / (2 * h), rtol=1e-6, atol=1e-8)

    def solve():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", cp.ConvergenceWarning)
            return cp.optimize_trajectory(model, terms.x0, T, dict(Q=1.0, Qf=5.0, R=0.1),
                                          exo=exo, method="ddp", maxiter=5)
    stored = solve()
    monkeypatch.setattr(ddp_terms, "CURVATURE_BYTES", 0)
    per_step = solve()
    np.testing.assert_allclose(stored.controls, per_step.controls, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(stored.nit, per_step.nit)


def test_cost_derivatives_match_the_gradient_and_quadratic_hessians():
    """l_x, l_u of the augmented problem chained through the dynamics give BPTT's dJ/du, and
    l_xx, l_uu, l_ux are the exact Hessians of the quadratic terms (rate term included)."""
    rng = np.random.default_rng(7)
    n, m, T = 2, 2, 5
    model = cp.Dynamics(dynamics_net(rng, n, m, 0, True, min_hidden=2), n, residual=True)
    cost = cp.TrajectoryCost(goal=rng.standard_normal((T, n)), Q=spd(rng, n), Qf=spd(rng, n),
                             R=spd(rng, m), S=spd(rng, m))
    x0 = rng.standard_normal(n)
    terms = DDPTerms(model, x0, T, cost)
    U = rng.standard_normal((1, T, m))
    Z = np.empty((1, T + 1, terms.n_aug))
    Z[:, 0] = terms.initial_states()
    for t in range(T):
        Z[:, t + 1] = terms.step(t, Z[:, t], U[:, t])
    fx, fu = terms.jacobians(Z, U)
    lx, lu, lxx, luu, lux = terms.cost_derivatives(Z, U)
    lam = lx[0, T]
    g = np.empty((T, m))
    for t in range(T - 1, -1, -1):
        g[t] = lu[0, t] + fu[0, t].T @ lam
        lam = lx[0, t] + fx[0, t].T @ lam
    J, ref = cp.bptt(model, x0, U[0], cost)
    np.testing.assert_allclose(g, ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(terms.cost_values(Z, U)[0], J, rtol=1e-12)
    Sm = cost.S
    np.testing.assert_allclose(luu[0, 1:], np.broadcast_to(cost.R + Sm, (T - 1, m, m)))
    np.testing.assert_allclose(lux[0, 1:, :, n:], np.broadcast_to(-Sm, (T - 1, m, m)))
    np.testing.assert_allclose(lxx[0, T, :n, :n], cost.Qf)


# ---------------------------------------------------------------- custom terms' Hessians
def custom_cost(goal):
    def running(X, U):
        v = (np.cos(X).sum(axis=2) + 0.25 * (U ** 4).sum(axis=2)
             + (X[..., :1] * U[..., :1]).sum(2) ** 2)
        c = X[..., 0] * U[..., 0]
        gx = -np.sin(X)
        gx[..., 0] += 2 * c * U[..., 0]
        gu = U ** 3
        gu[..., 0] += 2 * c * X[..., 0]
        return v, gx, gu

    def terminal(xT):
        d = xT - goal
        return (d ** 4).sum(axis=1), 4 * d ** 3

    def trajectory(S, U):                     # couples neighbouring steps
        v = ((np.sin(S[:, 1:, 0]) * S[:, :-1, 0]).sum(axis=1)
             + (U[:, :, 0] ** 2 * S[:, :-1, -1]).sum(1))
        gs = np.zeros_like(S)
        gs[:, 1:, 0] += np.cos(S[:, 1:, 0]) * S[:, :-1, 0]
        gs[:, :-1, 0] += np.sin(S[:, 1:, 0])
        gs[:, :-1, -1] += U[:, :, 0] ** 2
        gu = np.zeros_like(U)
        gu[:, :, 0] = 2 * U[:, :, 0] * S[:, :-1, -1]
        return v, gs, gu
    return cp.TrajectoryCost(Q=0.0, running=running, terminal=terminal, trajectory=trajectory)


def test_custom_hessian_blocks_against_gradient_differences():
    rng = np.random.default_rng(4)
    B, T, n, m = 3, 4, 3, 2
    cost = custom_cost(rng.standard_normal(n))
    S, U = rng.standard_normal((B, T + 1, n)), rng.standard_normal((B, T, m))
    hxx, huu, hux = custom_hessian_blocks(cost, S, U)
    bound = cost.bind(n, m, T, B)

    def grad(S_, U_):
        _, gx, gu = bound.evaluate(S_.transpose(1, 2, 0).copy(), U_.transpose(1, 2, 0).copy())
        return gx.transpose(2, 0, 1), gu.transpose(2, 0, 1)
    h = 1e-4
    for t in range(T + 1):                    # one coordinate of one step at a time
        for j in range(n + m):
            if j >= n and t == T:
                continue
            dS, dU = np.zeros_like(S), np.zeros_like(U)
            if j < n:
                dS[:, t, j] = h
            else:
                dU[:, t, j - n] = h
            gxp, gup = grad(S + dS, U + dU)
            gxm, gum = grad(S - dS, U - dU)
            colx, colu = (gxp - gxm)[:, t] / (2 * h), (gup - gum)[:, min(t, T - 1)] / (2 * h)
            if j < n:
                np.testing.assert_allclose(hxx[:, t, :, j], colx, rtol=1e-6, atol=1e-6)
                if t < T:
                    np.testing.assert_allclose(hux[:, t, :, j], colu, rtol=1e-6, atol=1e-6)
            else:
                np.testing.assert_allclose(huu[:, t, :, j - n], colu, rtol=1e-6, atol=1e-6)
                np.testing.assert_allclose(hux[:, t, j - n, :], colx, rtol=1e-6, atol=1e-6)


def test_custom_terms_solve_to_a_stationary_point():
    rng = np.random.default_rng(8)
    n, m, T = 3, 2, 6
    model = cp.Dynamics(dynamics_net(rng, n, m, min_hidden=2), n, residual=True)
    base = custom_cost(np.zeros(n))
    cost = cp.TrajectoryCost(Q=0.5, R=1.0, running=base.running, terminal=base.terminal)
    x0 = 0.5 * rng.standard_normal(n)
    res = cp.optimize_trajectory(model, x0, T, cost, method="ilqr", options=dict(tol=1e-13))
    assert res.success
    _, g = cp.bptt(model, x0, res.controls, cost)
    assert np.abs(g).max() < 1e-5
    with warnings.catch_warnings():            # L-BFGS-B from the optimum may end ABNORMAL
        warnings.simplefilter("ignore", cp.ConvergenceWarning)
        ref = cp.optimize_trajectory(model, x0, T, cost, u0=res.controls,
                                     options=dict(gtol=1e-12, ftol=1e-15))
    assert res.fun <= ref.fun + 1e-10


# ---------------------------------------------------------------- nonlinear: DDP vs iLQR
def nonlinear_problem():
    rng = np.random.default_rng(1)
    n, m, T = 3, 1, 15
    net = cp.Network.mlp([n + m, 8, n], hidden="tanh", output="linear", seed=3)
    net.weights = net.weights * 1.5
    model = cp.Dynamics(net, n, residual=True)
    cost = cp.TrajectoryCost(goal=np.array([1.0, -0.5, 0.3]), Q=1.0, Qf=10.0, R=0.1)
    return model, 0.5 * rng.standard_normal(n), T, cost


def test_ddp_no_more_iterations_than_ilqr_and_quadratic_convergence():
    model, x0, T, cost = nonlinear_problem()
    obj = cp.TrajectoryObjective(model, x0, T, cost)
    norms = {}
    for method in ("ilqr", "ddp"):
        gs = []

        def cb(r, gs=gs):
            gs.append(np.abs(obj(r.x.ravel())[1]).max())
        res = cp.optimize_trajectory(model, x0, T, cost, method=method, callback=cb,
                                     options=dict(tol=1e-15), maxiter=200)
        assert res.success
        norms[method] = (res.nit, np.array(gs))
    (n_ilqr, g_ilqr), (n_ddp, g_ddp) = norms["ilqr"], norms["ddp"]
    assert n_ddp <= n_ilqr
    # quadratic: once the gradient is small, g_{k+1} <= C g_k^2 (iLQR is only linear here)
    tail = [(a, b) for a, b in zip(g_ddp[:-1], g_ddp[1:]) if 1e-9 < a < 1e-1]
    assert len(tail) >= 2
    ratios = [b / a ** 2 for a, b in tail]
    assert max(ratios) < 100.0, ratios
    lin = [(a, b) for a, b in zip(g_ilqr[:-1], g_ilqr[1:]) if 1e-9 < a < 1e-4]
    assert any(b / a ** 2 > 1e3 for a, b in lin)            # the test can tell them apart


def test_gains_are_the_sensitivity_of_the_optimal_controls():
    model, x0, T, cost = nonlinear_problem()
    opts = dict(tol=1e-15)
    res = cp.optimize_trajectory(model, x0, T, cost, method="ddp", options=opts, maxiter=200)
    assert res.success
    n, h = 3, 1e-5
    pred = np.empty((T, 1, n))                   # du*_t/dx0 through the local policy
    for j in range(n):
        dx = np.eye(n)[j]
        du = np.empty((T, 1))
        for t in range(T):
            du[t] = res.gains[t] @ dx
            A, Bm = model.linearize(res.states[t], res.controls[t])
            dx = A @ dx + Bm @ du[t]
        pred[:, :, j] = du
        sols = [cp.optimize_trajectory(model, x0 + s * np.eye(n)[j], T, cost, method="ddp",
                                       u0=res.controls, options=opts).controls for s in (h, -h)]
        fd = (sols[0] - sols[1]) / (2 * h)
        np.testing.assert_allclose(pred[:, :, j], fd, rtol=0, atol=1e-6 * max(1, np.abs(fd).max()))


# ---------------------------------------------------------------- conventions
@pytest.mark.parametrize("method", ["ilqr", "ddp"])
def test_bounds_never_violated_by_any_iterate(method):
    model, x0, T, cost = nonlinear_problem()
    lo, hi = -0.4 * np.ones((T, 1)), 0.3 * np.ones((T, 1))
    lo[:5] = -0.1
    seen = []

    def cb(r):
        seen.append(r.x.copy())
        assert np.all(r.x >= lo[None]) and np.all(r.x <= hi[None])
    res = cp.optimize_trajectory(model, np.stack([x0, -x0, 2 * x0]), T,
                                 cp.TrajectoryCost(goal=[3.0, -2, 1], Q=1.0, R=0.01, S=0.1),
                                 method=method, bounds=Bounds(lo, hi), callback=cb, restarts=1)
    assert len(seen) >= 3
    assert np.all(res.success)
    assert np.any(np.isclose(res.controls, lo) | np.isclose(res.controls, hi))
    assert res.gains.shape == (3, T, 1, 3) and res.gains_prev.shape == (3, T, 1, 1)
    assert res.feedforward.shape == (3, T, 1)


def test_callback_stop_options_and_warnings():
    model, x0, T, cost = nonlinear_problem()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = cp.optimize_trajectory(model, x0, T, cost, method="ddp", callback=lambda r: True)
    assert res.status == 2 and res.nit == 1 and len(res.history["fun"]) == 2

    def stop(r):
        raise StopIteration
    assert cp.optimize_trajectory(model, x0, T, cost, method="ilqr", callback=stop).status == 2
    with pytest.warns(cp.ConvergenceWarning):
        res = cp.optimize_trajectory(model, x0, T, cost, method="ilqr", maxiter=2)
    assert res.status == 1 and not res.success
    with pytest.raises(ValueError, match="mu0.*maxls"):
        cp.optimize_trajectory(model, x0, T, cost, method="ddp", options=dict(bogus=1))
    with pytest.raises(ValueError, match="maxiter"):
        cp.optimize_trajectory(model, x0, T, cost, method="ddp", options=dict(maxiter=3))
    with pytest.raises(ValueError, match="mu_factor"):
        cp.optimize_trajectory(model, x0, T, cost, method="ilqr", options=dict(mu_factor=1.0))
    with pytest.raises(TypeError, match="tol"):
        cp.optimize_trajectory(model, x0, T, cost, method="ilqr", options=dict(tol="small"))
    with pytest.raises(ValueError, match="u0"):
        cp.optimize_trajectory(model, x0, T, cost, method="ilqr", bounds=(-1, 1),
                               u0=np.full((T, 1), 2.0))


def test_matches_lbfgs_with_exo_and_scaling_and_restarts():
    rng = np.random.default_rng(9)
    n, m, T = 2, 1, 8
    model = cp.Dynamics(dynamics_net(rng, n, m, 1, True, min_hidden=2), n, residual=True,
                        n_exo=1)
    cost = cp.TrajectoryCost(goal=rng.standard_normal((2, 1, n)), Q=1.0, R=0.5, S=0.2)
    X0 = rng.standard_normal((2, n))
    exo = rng.standard_normal((2, T, 1))
    res = cp.optimize_trajectory(model, X0, T, cost, method="ddp", exo=exo, restarts=1,
                                 options=dict(tol=1e-14))
    assert np.all(res.success) and res.all_fun.shape == (2, 2)
    for b in range(2):
        ref = cp.optimize_trajectory(model, X0[b], T, cost.with_goal(cost.goal[b:b + 1]),
                                     exo=exo[b], u0=res.controls[b],
                                     options=dict(gtol=1e-12, ftol=1e-15))
        assert res.fun[b] <= ref.fun + 1e-9
        np.testing.assert_allclose(res.controls[b], ref.controls, atol=1e-4)


def test_solver_status_codes_on_a_scalar_model():
    """The solver alone on x' = x + u with callables: a start whose rollout is non-finite
    gets status 4 and stays where it was; the others converge to the LQR answer."""
    from ctrlprop.solvers.ddp import ddp

    T = 5

    def step(t, X, U):
        Y = X + U
        Y[np.abs(U[:, 0]) > 50] = np.nan                  # the model breaks far away
        return Y

    def cost(X, U):
        return 0.5 * (X[:, 1:, 0] ** 2).sum(1) + 0.5 * (U[:, :, 0] ** 2).sum(1)

    def jac(X, U):
        B = X.shape[0]
        return np.ones((B, T, 1, 1)), np.ones((B, T, 1, 1))

    def derivs(X, U):
        B = X.shape[0]
        lx = X.copy()
        lx[:, 0] = 0
        lxx = np.ones((B, T + 1, 1, 1))
        lxx[:, 0] = 0
        return lx, U.copy(), lxx, np.ones((B, T, 1, 1)), np.zeros((B, T, 1, 1))
    x0 = np.array([[1.0], [40.0], [2.0]])
    U0 = np.zeros((3, T, 1))
    U0[1, 0] = 60.0                                      # non-finite rollout
    out = ddp(step, cost, jac, derivs, x0, U0, maxiter=20)
    np.testing.assert_array_equal(out["status"], [0, 4, 0])
    np.testing.assert_array_equal(out["controls"][1], U0[1])
    for b in (0, 2):
        U, _, J = riccati(np.eye(1), np.eye(1), np.eye(1), np.eye(1), np.eye(1), T, x0[b])
        np.testing.assert_allclose(out["controls"][b], U, atol=1e-10)
        np.testing.assert_allclose(out["cost"][b], J, rtol=1e-12)


def test_solver_bad_input_names_the_argument():
    from ctrlprop.solvers.ddp import ddp

    f = lambda *a: None                                            # noqa: E731
    x0, U0 = np.zeros((2, 1)), np.zeros((2, 3, 1))
    with pytest.raises(TypeError, match="step"):
        ddp(3, f, f, f, x0, U0)
    with pytest.raises(ValueError, match="U0"):
        ddp(f, f, f, f, x0, np.zeros((2, 3)))
    with pytest.raises(ValueError, match="U0"):
        ddp(f, f, f, f, x0, np.full((2, 3, 1), np.nan))
    with pytest.raises(ValueError, match="x0"):
        ddp(f, f, f, f, np.zeros((3, 1)), U0)
    with pytest.raises(ValueError, match="lo and hi"):
        ddp(f, f, f, f, x0, U0, lo=np.zeros((4, 1)), hi=np.ones((4, 1)))
    with pytest.raises(ValueError, match="outside"):
        ddp(f, f, f, f, x0, U0, lo=0.5, hi=1.0)
    with pytest.raises(ValueError, match="maxiter"):
        ddp(f, f, f, f, x0, U0, maxiter=-1)
    with pytest.raises(ValueError, match="H must"):
        box_qp(np.eye(2), np.zeros((1, 2)), -1, 1)
    with pytest.raises(TypeError, match="closed_loop"):
        ddp(f, f, f, f, x0, U0, closed_loop=3)
    with pytest.raises(ValueError, match="not both"):
        ddp(f, f, f, f, x0, U0, curvature=f, second_derivatives=f)
    bad = lambda x0, Xr, Ur, k, K, a, lo, hi: (Xr[:, :-1], Ur)    # noqa: E731
    with pytest.raises(ValueError, match="closed_loop must return states of shape"):
        ddp(f, f, f, f, x0, U0, closed_loop=bad)


def test_closed_loop_argument_replaces_the_step_loop():
    """A user's closed_loop (here the scalar model's own loop, written by hand) gives the
    solve the step loop gives, and is what the solver calls."""
    from ctrlprop.solvers.ddp import ddp
    a, b = 0.9, 0.5
    step = lambda t, X, U: a * X + b * U                           # noqa: E731
    cost = lambda X, U: 0.5 * ((X ** 2).sum(axis=(1, 2)) + 0.1 * (U ** 2).sum(axis=(1, 2)))  # noqa

    def jac(X, U):
        B_, T_ = U.shape[:2]
        return np.full((B_, T_, 1, 1), a), np.full((B_, T_, 1, 1), b)

    def derivs(X, U):
        B_, T_ = U.shape[:2]
        return (X.copy(), 0.1 * U, np.ones((B_, T_ + 1, 1, 1)), np.full((B_, T_, 1, 1), 0.1),
                np.zeros((B_, T_, 1, 1)))
    calls = []

    def closed_loop(x0, Xr, Ur, k, K, alpha, lo, hi):
        calls.append(alpha)
        X, U = np.empty_like(Xr), np.empty_like(Ur)
        X[:, 0] = x0
        for t in range(Ur.shape[1]):
            U[:, t] = np.clip(Ur[:, t] + alpha * k[:, t]
                              + np.einsum("bij,bj->bi", K[:, t], X[:, t] - Xr[:, t]),
                              lo[:, t], hi[:, t])
            X[:, t + 1] = step(t, X[:, t], U[:, t])
        return X, U
    x0, U0 = np.array([[2.0], [-1.0]]), np.zeros((2, 6, 1))
    ref = ddp(step, cost, jac, derivs, x0, U0, lo=-0.5, hi=0.5)
    got = ddp(step, cost, jac, derivs, x0, U0, lo=-0.5, hi=0.5, closed_loop=closed_loop)
    assert len(calls) == got["nfev"]
    np.testing.assert_allclose(got["controls"], ref["controls"], rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(got["gains"], ref["gains"], rtol=1e-13, atol=1e-15)
    assert np.any(np.abs(got["controls"]) == 0.5)                  # the bound is active
