"""Exact Hessians of custom cost terms (the ``hessian`` protocol) against finite
differences of their gradients, and the car costs' exact Hessians."""

import pickle
import warnings

import numpy as np
import pytest

import ctrlprop as cp
from ctrlprop.objectives.ddp_terms import DDPTerms, custom_hessian_blocks
from ctrlprop.plants import car_trajectory_cost


class Quartic:
    """running: sum_t (x_t . a)^4 + (u_t . b)^2 (x_t . c), with its exact Hessian."""

    def __init__(self, n, m, seed):
        r = np.random.default_rng(seed)
        self.a, self.b, self.c = r.normal(size=n), r.normal(size=m), r.normal(size=n)

    def __call__(self, X, U):
        p, q, w = X @ self.a, U @ self.b, X @ self.c
        v = p ** 4 + q ** 2 * w
        gx = (4 * p ** 3)[..., None] * self.a + (q ** 2)[..., None] * self.c
        gu = (2 * q * w)[..., None] * self.b
        return v, gx, gu

    def hessian(self, X, U):
        p, q, w = X @ self.a, U @ self.b, X @ self.c
        hxx = (12 * p ** 2)[..., None, None] * np.einsum("i,j->ij", self.a, self.a)
        huu = (2 * w)[..., None, None] * np.einsum("i,j->ij", self.b, self.b)
        hux = (2 * q)[..., None, None] * np.einsum("i,j->ij", self.b, self.c)
        return hxx, huu, hux


class QuarticNoHessian:
    def __init__(self, f):
        self.f = f

    def __call__(self, X, U):
        return self.f(X, U)


class Terminal:
    def __call__(self, x):
        return np.cosh(x).sum(-1), np.sinh(x)

    def hessian(self, x):
        return np.cosh(x)[..., None] * np.eye(x.shape[-1])


@pytest.mark.parametrize("n, m, B, T", [(2, 1, 1, 3), (3, 2, 4, 5)])
def test_exact_blocks_equal_finite_differences(n, m, B, T):
    r = np.random.default_rng(n + m)
    S, U = r.normal(size=(B, T + 1, n)) * 0.5, r.normal(size=(B, T, m)) * 0.5
    f = Quartic(n, m, 1)
    exact = custom_hessian_blocks(cp.TrajectoryCost(running=f, terminal=Terminal()), S, U)
    fd = custom_hessian_blocks(cp.TrajectoryCost(running=QuarticNoHessian(f),
                                                 terminal=lambda x: Terminal()(x)), S, U)
    for e, d in zip(exact, fd):
        np.testing.assert_allclose(e, d, rtol=1e-6, atol=1e-7)
    assert np.abs(exact[2]).max() > 0.1                  # the cross term is exercised


def test_car_cost_hessian_is_exact():
    r = np.random.default_rng(0)
    S = r.normal(size=(3, 7, 4)) * [0.5, 0.5, 0.3, 1.0]
    U = r.normal(size=(3, 6, 2))
    hxx, huu, hux = car_trajectory_cost.hessian(S, U)
    # central differences of the exact gradient, one coordinate of every step at a time
    h = 1e-6
    for j in range(4):
        d = np.zeros_like(S)
        d[..., j] = h
        g = (car_trajectory_cost(S + d, U)[1] - car_trajectory_cost(S - d, U)[1]) / (2 * h)
        np.testing.assert_allclose(hxx[..., :, j], g, rtol=1e-5, atol=1e-9)
    for j in range(2):
        d = np.zeros_like(U)
        d[..., j] = h
        g = (car_trajectory_cost(S, U + d)[2] - car_trajectory_cost(S, U - d)[2]) / (2 * h)
        np.testing.assert_allclose(huu[..., :, j], g, rtol=1e-6, atol=1e-12)
    assert not hux.any()
    # used by DDPTerms: the same derivatives as finite differences, without them
    cost = cp.TrajectoryCost(Q=0.0, trajectory=car_trajectory_cost)
    fd = custom_hessian_blocks(cp.TrajectoryCost(Q=0.0, trajectory=lambda s, u:
                                                 car_trajectory_cost(s, u)), S, U)
    ex = custom_hessian_blocks(cost, S, U)
    for e, d in zip(ex, fd):
        np.testing.assert_allclose(e, d, rtol=1e-5, atol=1e-9)
    assert pickle.loads(pickle.dumps(cost)).trajectory.hessian is car_trajectory_cost.hessian


def test_bad_hessian_output_is_named():
    class Bad(Quartic):
        def hessian(self, X, U):
            return super().hessian(X, U)[:2]
    S, U = np.zeros((1, 3, 2)), np.zeros((1, 2, 1))
    with pytest.raises(TypeError, match="running cost's hessian must return 3 arrays"):
        custom_hessian_blocks(cp.TrajectoryCost(running=Bad(2, 1, 0)), S, U)

    class Wrong(Quartic):
        def hessian(self, X, U):
            a, b, c = super().hessian(X, U)
            return a[..., :1], b, c
    with pytest.raises(ValueError, match=r"h_xx of shape \(1, 2, 2, 2\)"):
        custom_hessian_blocks(cp.TrajectoryCost(running=Wrong(2, 1, 0)), S, U)


def test_ilqr_on_the_car_with_exact_hessians_matches_lbfgs():
    car = cp.Car()
    X = np.random.default_rng(1).uniform(-1, 1, (400, 6)) * [3, 3, 3, 2, 0.5, 2]
    net = cp.Network.mlp([6, 32, 4], seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cp.ConvergenceWarning)   # 300 iterations suffice here
        cp.fit(net, X, car.step(X[:, :4], X[:, 4:]) - X[:, :4], maxiter=300)
    model = cp.Dynamics(net, 4, residual=True)
    cost = cp.TrajectoryCost(Q=0.0, trajectory=car_trajectory_cost)
    x0 = np.array([1.0, 1.0, 1.5 * np.pi, 0.0])
    lo, hi = np.array([-0.5, -2.0]), np.array([0.5, 2.0])
    il = cp.optimize_trajectory(model, x0, 40, cost, method="ilqr", bounds=[(-0.5, 0.5), (-2, 2)],
                                maxiter=200)
    lb = cp.optimize_trajectory(model, x0, 40, cost, bounds=[(-0.5, 0.5), (-2, 2)], maxiter=3000,
                                options=dict(ftol=1e-15, gtol=1e-10))
    assert il.fun <= lb.fun + 1e-6 * abs(lb.fun)
    assert np.all(il.controls >= lo) and np.all(il.controls <= hi)
