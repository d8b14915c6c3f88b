"""optimize_controls: methods, bounds, batches, restarts, output constraints, bad input."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy.optimize import Bounds

import ctrlprop as cp
from ctrlprop.objectives.control import ControlObjective
from ctrlprop.core.gradcheck import numerical_gradient

from conftest import random_dag

ALL_METHODS = ["batch-lm", "CG", "BFGS", "Newton-CG", "L-BFGS-B", "TNC", "SLSQP", "dogleg",
               "trust-ncg", "trust-krylov", "trust-exact", "trust-constr", "trf", "dogbox", "lm"]
BOUNDED = ["batch-lm", "L-BFGS-B", "TNC", "SLSQP", "trust-constr", "trf", "dogbox"]


def _small_net(seed=0):
    """2 inputs (context, control) + 1 more control, 2 outputs: a smooth, well-posed model."""
    return cp.Network.mlp([3, 6, 2], hidden="tanh", seed=seed)


@pytest.mark.parametrize("method", ALL_METHODS)
def test_every_method_reaches_a_reachable_target(method):
    """The target is the model's output at a known control: every method finds it."""
    net = _small_net(1)
    x, u_true = [0.3], np.array([0.4, -0.5])
    t = net.forward(np.r_[x, u_true])
    res = cp.optimize_controls(net, t, x, control=[1, 2], u0=[0.1, -0.1], method=method,
                               hessian="gauss-newton" if method == "dogleg" else "exact",
                               R=1e-12 if method == "lm" else 0.0,
                               options={"ftol": 1e-12} if method == "SLSQP" else None)
    assert res.success, (method, res.message)
    assert res.error < 1e-4, method
    np.testing.assert_allclose(res.outputs, net.forward(np.r_[x, res.controls]), rtol=1e-13)
    assert res.method.lower() == method.lower()


def _bounded_case(seed):
    """A random DAG and box bounds tight enough that far-away targets hit them."""
    rng = np.random.default_rng(seed)
    net = random_dag(rng, n_in=3, n_comp=int(rng.integers(2, 6)))
    lo = -rng.random(2) * 0.5
    hi = lo + 0.05 + rng.random(2) * 0.5
    t = 10 * rng.standard_normal(net.n_outputs)
    return net, t, lo, hi, rng


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 10_000), method=st.sampled_from(BOUNDED))
def test_bounds_are_never_violated(seed, method):
    net, t, lo, hi, rng = _bounded_case(seed)
    u0 = lo + (hi - lo) * rng.random(2)
    res = cp.optimize_controls(net, t, [0.2], control=[0, 2], u0=u0, bounds=list(zip(lo, hi)),
                               method=method, restarts=2, seed=seed)
    for u in [res.controls, *res.all_controls]:
        assert np.all(u >= lo) and np.all(u <= hi), (method, u, lo, hi)
    assert np.all(res.starts >= lo) and np.all(res.starts <= hi)


def test_bounds_hold_for_every_method_and_a_batch():
    net, _, lo, hi, rng = _bounded_case(7)
    T = 10 * rng.standard_normal((5, net.n_outputs))
    for method in BOUNDED:
        res = cp.optimize_controls(net, T, [0.2], control=[0, 2], bounds=list(zip(lo, hi)),
                                   method=method)
        assert np.all(res.controls >= lo) and np.all(res.controls <= hi), method
    # per-problem bounds through scipy Bounds with (K, m) arrays
    LO = lo + 0.01 * np.arange(5)[:, None]
    res = cp.optimize_controls(net, T, [0.2], control=[0, 2], bounds=Bounds(LO, LO + 0.1))
    assert np.all(res.controls >= LO) and np.all(res.controls <= LO + 0.1)
    assert np.any(res.controls == LO) or np.any(res.controls == LO + 0.1)      # the bounds were active


def _arm():
    """A small 2-link-arm-like model: 2 controls -> 2 outputs, and random reachable targets."""
    net = cp.Network.mlp([2, 8, 2], hidden="tanh", seed=4)
    rng = np.random.default_rng(0)
    U = rng.uniform(-1, 1, (12, 2))
    return net, net.forward(U) + 0.01 * rng.standard_normal((12, 2))


def test_batch_equals_individual_solves():
    net, T = _arm()
    bounds = [(-1.2, 1.2), (-1.0, 1.0)]
    batch = cp.optimize_controls(net, T, bounds=bounds, R=1e-3)
    assert batch.controls.shape == (12, 2) and batch.outputs.shape == (12, 2)
    assert batch.fun.shape == batch.error.shape == batch.success.shape == (12,)
    assert batch.method == "batch-lm"
    for k in range(12):
        one = cp.optimize_controls(net, T[k], bounds=bounds, R=1e-3,
                                   method="batch-lm")
        np.testing.assert_allclose(batch.controls[k], one.controls, rtol=1e-8, atol=1e-10)
        assert batch.success[k] == one.success
        np.testing.assert_allclose(batch.fun[k], one.fun, rtol=1e-6, atol=1e-14)
    # a scipy method on a batch: one problem at a time, identical to the single calls
    lb = cp.optimize_controls(net, T[:4], bounds=bounds, method="L-BFGS-B")
    for k in range(4):
        one = cp.optimize_controls(net, T[k], bounds=bounds, method="L-BFGS-B")
        np.testing.assert_allclose(lb.controls[k], one.controls, rtol=1e-12, atol=1e-14)
    assert set(lb.history["run"].tolist()) == {0, 1, 2, 3}     # one scipy run per problem


def test_batch_with_per_problem_inputs_equals_individual():
    rng = np.random.default_rng(3)
    net = random_dag(rng, n_in=3, n_comp=5, n_out=2)
    X = rng.standard_normal((6, 3))
    T = net.forward(X) + 0.1 * rng.standard_normal((6, 2))
    U0 = X[:, [2, 0]] * 0.5
    batch = cp.optimize_controls(net, T, X, control=[2, 0], u0=U0, R=0.1)
    for k in range(6):
        one = cp.optimize_controls(net, T[k], X[k], control=[2, 0], u0=U0[k], R=0.1,
                                   method="batch-lm")
        np.testing.assert_allclose(batch.controls[k], one.controls, rtol=1e-8, atol=1e-10)
    # and the batched optimum is a stationary point of each problem's objective
    obj = ControlObjective(net, T, X, [2, 0], R=0.1)
    _, G = obj.per_problem(batch.controls)
    assert np.abs(G).max() < 1e-6


def _two_basins():
    """y = sin(3u) + 0.3 u on [-3, 3], target 1.6: a local optimum near u = 0.52 (E ~ 0.1)
    and exact solutions only near u = 2.4-2.8."""
    net = cp.Network.from_edges(1, [(0, 1), (0, 2), (1, 2)], ["sin", "linear"], [2])
    w = np.zeros(net.n_weights)
    w[net.weight_index(0, 1)] = 3.0
    w[net.weight_index(1, 2)] = 1.0
    w[net.weight_index(0, 2)] = 0.3
    net.weights = w
    return net


@pytest.mark.parametrize("method", ["batch-lm", "L-BFGS-B", "trf"])
def test_restarts_find_the_global_optimum_a_bad_start_misses(method):
    net = _two_basins()
    f = lambda u: np.sin(3 * u) + 0.3 * u           # noqa: E731  the model, in closed form
    one = cp.optimize_controls(net, [1.6], u0=[0.4], bounds=[(-3, 3)], method=method)
    assert abs(one.controls[0] - 0.52) < 0.1 and one.fun > 0.05         # stuck in the local basin
    res = cp.optimize_controls(net, [1.6], u0=[0.4], bounds=[(-3, 3)], method=method,
                               restarts=8, seed=1)
    assert res.fun < 1e-10 and abs(f(res.controls[0]) - 1.6) < 1e-5 and 2.3 < res.controls[0] < 2.9
    assert res.all_controls.shape == (9, 1) and res.all_fun.shape == (9,)
    assert res.best != 0 and res.all_fun[0] > 0.05                # run 0 is the bad start
    np.testing.assert_allclose(res.all_controls[0], one.controls, rtol=1e-12)
    assert res.fun == res.all_fun.min()


def test_screen_starts_from_the_best_candidates_and_batches_restarts():
    net = _two_basins()
    res = cp.optimize_controls(net, [[1.6], [1.6], [0.0]], u0=[0.0], bounds=[(-3, 3)],
                               screen=16, restarts=1, seed=0)
    assert res.starts.shape == (3, 2, 1) and res.all_controls.shape == (3, 2, 1)  # (K, S, m)
    assert np.all(res.fun < 1e-10)
    obj = ControlObjective(net, np.array([[1.6], [1.6], [0.0]]))
    E0 = obj.per_problem(np.zeros((3, 1)), grad=False)[0]
    E_starts = obj.per_problem(res.starts[:, 0], grad=False)[0]
    assert np.all(E_starts <= E0)                    # the first run starts at the best point



def test_random_starts_uniform_in_the_box_or_near_u0_with_init_scale():
    net = _two_basins()
    kw = dict(u0=[2.0], bounds=[(-3, 3)], restarts=5, seed=3, maxiter=1)
    res = cp.optimize_controls(net, [[1.6], [0.0]], **kw)
    # default: uniform in the box, drawn from the seed's generator
    ref = -3.0 + 6.0 * np.random.default_rng(3).random((2, 5, 1))
    np.testing.assert_array_equal(res.starts[:, 1:], ref)
    assert np.all(res.starts[:, 0] == 2.0)
    # init_scale given: u0 + s N(0, 1) clipped, also with two finite bounds
    near = cp.optimize_controls(net, [[1.6], [0.0]], init_scale=0.01, **kw)
    d = near.starts[:, 1:] - 2.0
    assert np.all(np.abs(d) < 0.05) and np.all(d != 0.0)
    top = cp.optimize_controls(net, [[1.6], [0.0]], init_scale=5.0,
                               **dict(kw, bounds=[(-3, 2.5)]))
    assert np.all(top.starts <= 2.5) and np.any(top.starts[:, 1:] == 2.5)   # clipped


def _linear_net(rng, n_in, n_out):
    edges = [(i, n_in + j) for i in range(n_in) for j in range(n_out)]
    net = cp.Network.from_edges(n_in, edges, ["linear"] * n_out, list(range(n_in, n_in + n_out)))
    A, b = rng.standard_normal((n_out, n_in)), rng.standard_normal(n_out)
    net.weights = [b[d - n_in] if s == "bias" else A[d - n_in, s] for s, d in net.weight_labels]
    return net, A, b


def test_output_bound_exact_constraints_and_penalty_closed_forms():
    """Linear model, R = r I, an upper bound on output 0 that the free optimum violates.

    Exact:   [H a; a^T 0] [u; mu] = [A^T (t - b); hi - b_0]      (KKT, constraint active)
    Penalty: (H + rho a a^T) u = A^T (t - b) + rho a (hi - b_0)
    with H = A^T A + r I and a = A[0] (the output's row).
    """
    rng = np.random.default_rng(8)
    net, A, b = _linear_net(rng, 2, 3)
    r, t = 0.1, np.array([2.0, -1.0, 0.5])
    H, g = A.T @ A + r * np.eye(2), A.T @ (t - b)
    free = np.linalg.solve(H, g)
    hi = A[0] @ free + b[0] - 0.5                     # the free optimum violates it by 0.5
    kkt = np.linalg.solve(np.block([[H, A[:1].T], [A[:1], np.zeros((1, 1))]]),
                          np.r_[g, hi - b[0]])[:2]
    # trust-constr's interior point stops with its barrier parameter ~1e-5 (scipy's rule)
    for method, opts, tol in (("SLSQP", {"ftol": 1e-12}, 1e-7),
                              ("trust-constr", {"gtol": 1e-12, "xtol": 1e-12}, 3e-5)):
        res = cp.optimize_controls(net, t, R=r, output_bounds={0: (None, hi)},
                                   method=method, options=opts)
        np.testing.assert_allclose(res.controls, kkt, rtol=0, atol=tol, err_msg=method)
        assert res.violation < 1e-8
    rho = 100.0
    pen = np.linalg.solve(H + rho * np.outer(A[0], A[0]), g + rho * A[0] * (hi - b[0]))
    for method in ("L-BFGS-B", "batch-lm", "trf"):
        res = cp.optimize_controls(net, t, R=r, output_bounds={0: (None, hi)},
                                   penalty=rho, method=method,
                                   options={"gtol": 1e-12} if method != "trf" else None)
        np.testing.assert_allclose(res.controls, pen, rtol=1e-6, atol=1e-7, err_msg=method)
        assert 0 < res.violation < 0.5 and res.violation == pytest.approx(
            A[0] @ pen + b[0] - hi, rel=1e-5)


def test_constraint_jacobian_and_hessian_are_exact():
    rng = np.random.default_rng(9)
    net = random_dag(rng, n_in=3, n_comp=5, n_out=3)
    net.set_scaling(np.zeros(3), [1.0, 2.0, 0.5], np.ones(3), [0.5, 1.0, 2.0])
    obj = ControlObjective(net, np.zeros(3), [0.3], [2, 0], output_bounds={0: (-1, 1), 2: (0, 2)})
    con = obj.constraints()
    u = np.array([0.2, -0.7])
    num = np.stack([numerical_gradient(lambda v: con.fun(v)[i], u) for i in range(2)])
    np.testing.assert_allclose(con.jac(u), num, rtol=1e-6, atol=1e-9)
    v = np.array([0.7, -1.3])                       # Lagrange multipliers
    num_h = np.stack([numerical_gradient(lambda w: con.jac(w).T @ v @ np.eye(2)[i], u)
                      for i in range(2)])
    np.testing.assert_allclose(con.hess(u, v), num_h, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(con.lb, [-1, 0]) and np.testing.assert_allclose(con.ub, [1, 2])


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("kw, exc, match", [
    (dict(u0=[2.0, 0.0]), ValueError, r"u0\[0\] = 2.0 is outside the bounds \[-1.0, 1.0\]"),
    (dict(u0=[0.0, np.nan]), ValueError, "u0 contains NaN"),
    (dict(u0=[0.0]), ValueError, r"u0 must have shape \(2,\)"),
    (dict(bounds=[(1.0, -1.0), (0, 1)]), ValueError, r"infeasible: lo > hi.*lo=1.0, hi=-1.0"),
    (dict(bounds=[(-1, 1)]), ValueError, r"gives 1 \(lo, hi\) pairs for 2 controls"),
    (dict(bounds=((-1, 1), (1, -1))), ValueError, r"infeasible.*scipy.optimize.Bounds\(lb, ub\)"),
    (dict(bounds="wide"), TypeError, "bounds must be one of"),
    (dict(bounds=[(-1, np.nan), (0, 1)]), ValueError, "bounds contain NaN"),
    (dict(bounds=[(np.inf, None), (0, 1)]), ValueError, "infeasible"),
    (dict(method="CG"), ValueError, "does not handle bounds"),
    (dict(method="lm"), ValueError, "does not handle bounds"),
    (dict(method="nelder-mead"), ValueError, "unknown method"),
    (dict(method=3), TypeError, "method must be a string"),
    (dict(bounds=None, restarts=2, init_scale=-1.0), ValueError, "init_scale must be a finite"),
    (dict(restarts=-1), ValueError, "restarts must be at least 0"),
    (dict(maxiter=-1), ValueError, "maxiter must be at least 0"),
    (dict(options={"maxiter": 3}), ValueError, r"options\['maxiter'\] is an iteration limit"),
    (dict(restarts=3, screen=2), ValueError, r"screen \(2\) must be at least restarts \(3\)"),
    (dict(options={"maxiters": 3}, method="batch-lm"), ValueError, "unknown batch-lm option"),
    (dict(options=3), TypeError, "options must be a dict"),
    (dict(target=[1.0]), ValueError, r"target must have shape \(2,\)"),
    (dict(control=[0, 0]), ValueError, "control repeats"),
    (dict(target=[np.nan, 0.0]), ValueError, "target contains NaN"),
])
def test_optimize_controls_bad_input_raises(kw, exc, match):
    net = cp.Network.mlp([2, 4, 2], seed=0)
    args = dict(target=[0.1, 0.2], control=[0, 1], bounds=[(-1, 1), (-1, 1)])
    args.update(kw)
    with pytest.raises(exc, match=match):
        cp.optimize_controls(net, **args)


def test_lm_needs_enough_residuals():
    net = cp.Network.mlp([3, 4, 1], seed=0)
    with pytest.raises(ValueError, match="'lm' needs at least as many residuals"):
        cp.optimize_controls(net, [0.3], control=[0, 1, 2], method="lm")
    res = cp.optimize_controls(net, [0.3], control=[0, 1, 2], method="lm", R=0.1)
    assert res.success


def test_u0_outside_per_problem_bounds_names_the_problem():
    net = cp.Network.mlp([2, 4, 2], seed=0)
    with pytest.raises(ValueError, match=r"u0\[1, 0\] = 0.5 is outside"):
        cp.optimize_controls(net, np.zeros((2, 2)), u0=[[0.0, 0.0], [0.5, 0.0]],
                             bounds=Bounds([[-1, -1], [-1, -1]], [[1, 1], [0.4, 1]]))


def test_default_start_and_iteration_limit():
    net, T = _arm()
    res = cp.optimize_controls(net, T[0], bounds=[(-1.0, 3.0), (0.5, None)])
    np.testing.assert_array_equal(res.starts[0], [1.0, 0.5])     # middle; 0 moved into [0.5, inf)
    with pytest.warns(cp.ConvergenceWarning, match="problems"):
        short = cp.optimize_controls(net, T, u0=[0.9, -0.9], maxiter=1)
    assert not short.success.all() and short.nit.max() == 1
    assert set(short.messages[~short.success]) == {"maximum number of iterations reached"}
    assert short.message == f"{short.success.sum()} of 12 problems converged"
