"""ControlObjective: derivatives against finite differences, closed forms, bad input."""

import numpy as np
import pytest
from scipy.optimize import Bounds

import ctrlprop as cp
from ctrlprop.objectives.control import ControlObjective
from ctrlprop.core.gradcheck import numerical_gradient

from conftest import random_dag


def _dense(A):
    return A.toarray() if hasattr(A, "toarray") else np.asarray(A)


def _relerr(a, b):
    return np.abs(a - b).max() / max(np.abs(b).max(), 1e-8)


def _random_problem(seed, K=None, scaled=False, bounds=True):
    """A random DAG with a random control subset, W and R matrices, u_rest, output bounds."""
    rng = np.random.default_rng(seed)
    net = random_dag(rng, n_in=int(rng.integers(2, 5)), n_comp=int(rng.integers(2, 7)))
    n_in, n_out = net.n_inputs, net.n_outputs
    if scaled:
        net.set_scaling(rng.standard_normal(n_in), 0.5 + rng.random(n_in),
                        rng.standard_normal(n_out), 0.5 + rng.random(n_out))
    m = int(rng.integers(1, n_in + 1))
    ctl = rng.choice(n_in, m, replace=False)
    K = K or int(rng.integers(1, 4))
    X = rng.standard_normal((K, n_in))
    T = net.forward(X) + rng.standard_normal((K, n_out))
    W = rng.standard_normal((n_out, n_out))
    R = rng.standard_normal((m, m))
    Y0 = net.forward(X)
    # a bound on output 0 that the first problem violates on both sides of its start
    ob = {0: (Y0[0, 0] - 0.05, Y0[0, 0] + 0.05)} if bounds else None
    obj = ControlObjective(net, T, X, ctl, Q=W @ W.T + 0.1 * np.eye(n_out),
                           R=R @ R.T, u_rest=rng.standard_normal(m),
                           output_bounds=ob, penalty=3.0)
    u = X[:, ctl] + 0.5 * rng.standard_normal((K, m))
    return net, obj, u, rng


SEEDS = range(8)


@pytest.mark.parametrize("seed", SEEDS)
def test_gradient_matches_finite_differences(seed):
    _, obj, u, _ = _random_problem(seed, scaled=seed % 2 == 1)
    u = u.ravel()
    E, g = obj(u)
    num = numerical_gradient(lambda v: obj(v)[0], u)
    assert _relerr(g, num) < 1e-6
    assert obj.value(u) == pytest.approx(E, rel=1e-14)
    Ek, G = obj.per_problem(u.reshape(obj.K, obj.m))
    assert Ek.sum() == pytest.approx(E, rel=1e-12)
    np.testing.assert_allclose(G.ravel(), g, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("seed", SEEDS)
def test_residuals_and_jacobian_match(seed):
    _, obj, u, _ = _random_problem(seed, scaled=seed % 2 == 0)
    u = u.ravel()
    r = obj.residuals(u)
    assert 0.5 * r @ r == pytest.approx(obj(u)[0], rel=1e-12)
    J = _dense(obj.jacobian(u))
    assert J.shape == (obj.K * obj.n_residuals, obj.K * obj.m)
    num = np.stack([numerical_gradient(lambda v: obj.residuals(v)[i], u) for i in range(len(r))])
    assert _relerr(J, num) < 1e-6


@pytest.mark.parametrize("seed", SEEDS)
def test_hessp_exact_and_gauss_newton(seed):
    _, obj, u, rng = _random_problem(seed, scaled=seed % 3 == 0)
    u, p = u.ravel(), rng.standard_normal(u.size)
    h = 1e-5
    num = (obj(u + h * p)[1] - obj(u - h * p)[1]) / (2 * h)
    Hp = obj.hessp(u, p)
    assert _relerr(Hp, num) < 1e-6
    H = _dense(obj.hess(u))
    np.testing.assert_allclose(H, H.T, atol=1e-10 * np.abs(H).max())
    assert _relerr(H @ p, Hp) < 1e-10
    J = _dense(obj.jacobian(u))
    assert _relerr(obj.hessp(u, p, kind="gauss-newton"), J.T @ (J @ p)) < 1e-12
    assert _relerr(_dense(obj.hess(u, kind="gauss-newton")), J.T @ J) < 1e-12


def test_penalty_active_in_the_derivative_checks():
    """The random problems above do exercise the output-bound penalty."""
    active = 0
    for seed in SEEDS:
        _, obj, u, _ = _random_problem(seed)
        active += obj.output_violation(obj.outputs(u.ravel()).reshape(obj.K, -1)).max() > 0
    assert active >= 4


def test_single_problem_shapes():
    rng = np.random.default_rng(0)
    net = random_dag(rng, n_in=3, n_comp=4, n_out=2)
    obj = ControlObjective(net, [0.1, 0.2], inputs=[0.5], control=[2, 0])
    assert not obj.batched and obj.K == 1 and obj.m == 2
    u = np.array([0.3, -0.2])
    E, g = obj(u)
    assert isinstance(E, float) and g.shape == (2,)
    assert obj.residuals(u).shape == (2,) and obj.jacobian(u).shape == (2, 2)
    assert obj.hess(u).shape == (2, 2) and obj.hessp(u, u).shape == (2,)
    # control order is respected: control [2, 0] means u = (x2, x0)
    np.testing.assert_allclose(obj.outputs(u), net.forward([-0.2, 0.5, 0.3]), rtol=1e-14)
    # a full-length inputs row: the control entries are ignored (NaN allowed there)
    obj2 = ControlObjective(net, [0.1, 0.2], inputs=[np.nan, 0.5, np.nan], control=[2, 0])
    assert obj2(u)[0] == E


def test_jacobian_is_exact_dy_du_and_matches_trace():
    rng = np.random.default_rng(1)
    net = random_dag(rng, n_in=3, n_comp=5, n_out=3)
    net.set_scaling(np.zeros(3), [2.0, 0.5, 1.0], [1.0, -1.0, 0.0], [3.0, 1.0, 0.5])
    X = rng.standard_normal((4, 3))
    obj = ControlObjective(net, np.zeros((4, 3)), X, control=[1, 2])
    r, J = obj.residuals_jacobian(X[:, [1, 2]])
    np.testing.assert_allclose(r, net.forward(X), rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(J, net.jacobian_inputs(X, [1, 2]), rtol=1e-12, atol=1e-14)


def test_weights_and_scaling_are_frozen_at_construction():
    rng = np.random.default_rng(2)
    net = random_dag(rng, n_in=2, n_comp=3)
    obj = ControlObjective(net, np.ones(net.n_outputs), inputs=[0.3], control=[1])
    E = obj([0.7])[0]
    net.weights = net.weights + 1.0
    net.set_scaling(np.ones(2), 2 * np.ones(2))
    net.forward(rng.standard_normal((1, 2)))       # reuses the net's shared buffers
    assert obj([0.7])[0] == E


def _linear_net(rng, n_in, n_out):
    """A one-layer linear network y = A x + b with known A, b (set through the labels)."""
    edges = [(i, n_in + j) for i in range(n_in) for j in range(n_out)]
    net = cp.Network.from_edges(n_in, edges, ["linear"] * n_out, list(range(n_in, n_in + n_out)))
    A, b = rng.standard_normal((n_out, n_in)), rng.standard_normal(n_out)
    w = np.empty(net.n_weights)
    for k, (s, d) in enumerate(net.weight_labels):
        w[k] = b[d - n_in] if s == "bias" else A[d - n_in, s]
    net.weights = w
    return net, A, b


def test_linear_model_closed_form_regularised_least_squares():
    """u* = (A_u^T W A_u + R)^-1 (A_u^T W (y* - A_x x - b) + R u_rest)."""
    rng = np.random.default_rng(3)
    net, A, b = _linear_net(rng, 5, 3)
    ctl, oth = [4, 1, 2], [0, 3]
    x, t = rng.standard_normal(2), rng.standard_normal(3)
    W = np.diag([1.0, 2.0, 0.5])
    R = np.array([[1.0, 0.2, 0.0], [0.2, 0.5, 0.1], [0.0, 0.1, 0.3]])
    u_rest = rng.standard_normal(3)
    Au, Ax = A[:, ctl], A[:, oth]
    u_star = np.linalg.solve(Au.T @ W @ Au + R, Au.T @ W @ (t - Ax @ x - b) + R @ u_rest)
    obj = ControlObjective(net, t, x, ctl, Q=np.diag(W), R=R,
                           u_rest=u_rest)
    assert np.abs(obj(u_star)[1]).max() < 1e-12          # the gradient vanishes there
    # BFGS's line search sees E only to its rounding (1e-16), so how far below 1e-10 its
    # gradient gets depends on the last bits of the arithmetic (numpy vs compiled path)
    tight = {"L-BFGS-B": {"ftol": 1e-15, "gtol": 1e-12}, "BFGS": {"gtol": 1e-10},
             "Newton-CG": {"xtol": 1e-12}, "trust-exact": {"gtol": 1e-12},
             "trf": {"ftol": 1e-15, "xtol": 1e-15, "gtol": 1e-15},
             "lm": {"ftol": 1e-15, "xtol": 1e-15, "gtol": 1e-15}, "batch-lm": {"gtol": 1e-12}}
    full = np.empty(5)
    full[oth] = x
    for method, opts in tight.items():
        res = cp.optimize_controls(net, t, x, ctl, R=R, Q=np.diag(W),
                                   u_rest=u_rest, method=method, options=opts)
        assert res.success, method
        np.testing.assert_allclose(res.controls, u_star, rtol=1e-7, atol=1e-9, err_msg=method)
        full[ctl] = res.controls
        np.testing.assert_allclose(res.outputs, A @ full + b, rtol=1e-12, atol=1e-12)
        assert res.fun == pytest.approx(obj.value(res.controls), rel=1e-12)


def test_linear_model_exact_hessian_is_the_quadratic_form():
    rng = np.random.default_rng(4)
    net, A, _ = _linear_net(rng, 3, 2)
    W, R = np.array([[2.0, 0.5], [0.5, 1.0]]), 0.3
    obj = ControlObjective(net, [1.0, 2.0], [0.4], [0, 2], Q=W, R=R)
    Au = A[:, [0, 2]]
    np.testing.assert_allclose(obj.hess([0.1, 0.2]), Au.T @ W @ Au + R * np.eye(2), rtol=1e-12)


# ---------------------------------------------------------------- bad input
@pytest.fixture
def net3():
    return random_dag(np.random.default_rng(5), n_in=3, n_comp=4, n_out=2)


@pytest.mark.parametrize("kw, match", [
    (dict(target=[1.0, 2.0, 3.0]), r"target must have shape \(2,\) or \(K, 2\)"),
    (dict(target=[[1.0, 2.0, 3.0]]), r"target must have shape"),
    (dict(target=[1.0, np.nan]), "target contains NaN"),
    (dict(control=[0, 3]), r"control index \[3\] out of range 0..2"),
    (dict(control=[-1]), "out of range"),
    (dict(control=[1, 1]), "control repeats indices"),
    (dict(control=[0.5]), "integer indices"),
    (dict(inputs=[np.inf]), "inputs contains NaN or inf"),
    (dict(inputs=[[0.1], [np.nan]]), "inputs contains NaN"),
    (dict(inputs=[0.1, 0.2]), r"inputs must have shape \(1,\) or \(3,\)"),
    (dict(inputs=None), "inputs is required"),
    (dict(target=np.zeros((3, 2)), inputs=np.zeros((2, 1))), "target has 3 rows but inputs has 2"),
    (dict(Q=[1.0, -1.0]), "Q must be non-negative"),
    (dict(Q=[[1.0, 2.0], [0.0, 1.0]]), "Q must be a symmetric"),
    (dict(Q=[[1.0, 2.0], [2.0, 1.0]]), "positive semi-definite"),
    (dict(R=[1.0, 2.0, 3.0]), r"R must be a scalar, a length-2 vector \(diagonal\) or a "
                              r"\(2, 2\) matrix for 2 controls; got a vector of shape \(3,\)"),
    (dict(u_rest=[1.0]), r"u_rest must have shape \(2,\)"),
    (dict(output_bounds={0: (1.0, -1.0)}), r"output_bounds are infeasible.*index \[0\]"),
    (dict(output_bounds={2: (0.0, 1.0)}), "output_bounds index 2 out of range"),
    (dict(output_bounds={0: (np.nan, 1.0)}), "output_bounds contain NaN"),
    (dict(penalty=-1.0), "penalty must be"),
    (dict(hessian="bfgs"), "hessian must be"),
])
def test_objective_bad_input_raises(net3, kw, match):
    args = dict(target=[0.1, 0.2], inputs=[0.5], control=[0, 2])
    args.update(kw)
    with pytest.raises(ValueError, match=match):
        ControlObjective(net3, **args)


def test_objective_bad_u_and_type_errors(net3):
    obj = ControlObjective(net3, [0.1, 0.2], [0.5], [0, 2])
    with pytest.raises(ValueError, match=r"u must have shape \(2,\)"):
        obj([0.1, 0.2, 0.3])
    with pytest.raises(TypeError, match="target must be a numeric array"):
        ControlObjective(net3, "far", [0.5], [0, 2])
    with pytest.raises(ValueError, match="constraints.. is for a single problem|no output_bounds"):
        obj.constraints()
    batch = ControlObjective(net3, np.zeros((2, 2)), [0.5], [0, 2], output_bounds={0: (0, 1)})
    with pytest.raises(ValueError, match="single problem"):
        batch.constraints()


def test_output_bounds_forms_agree(net3):
    """A dict, a list of pairs and scipy Bounds give the same objective."""
    u = np.array([0.3, -0.4])
    forms = [{1: (-0.1, 0.05)}, [None, (-0.1, 0.05)], Bounds([-np.inf, -0.1], [np.inf, 0.05])]
    vals = [ControlObjective(net3, [2.0, 2.0], [0.5], [0, 2], output_bounds=f)(u)[0]
            for f in forms]
    assert vals[0] == vals[1] == vals[2]


def test_zero_output_weights_leave_the_control_cost_alone():
    # with W = 0 the optimum is u_rest, whatever the target; every solver must cope
    net = cp.Network.mlp([2, 3, 2], seed=1)
    obj = cp.ControlObjective(net, [1.0, 1.0], control=[0, 1], Q=0.0,
                              R=1.0, u_rest=[0.3, -0.2])
    r = obj.residuals([0.1, 0.2])
    assert r.shape == (obj.n_residuals,)
    np.testing.assert_allclose(0.5 * r @ r, obj([0.1, 0.2])[0], rtol=1e-12)
    for method in ("batch-lm", "trf", "L-BFGS-B"):
        res = cp.optimize_controls(net, [[1.0, 1.0], [0.0, 0.0]], control=[0, 1],
                                   Q=0.0, R=1.0, u_rest=[0.3, -0.2],
                                   method=method)
        np.testing.assert_allclose(res.controls, [[0.3, -0.2], [0.3, -0.2]], atol=1e-6)


# ---------------------------------------------------------------- the weights (Metric)
def _near_psd(rng, n, scale, asym=0.0, shift=0.0):
    """scale * (a PSD matrix with eigenvalue 0 moved by ``shift``, + ``asym`` off-symmetry)."""
    A = rng.standard_normal((n, n - 1))
    M = A @ A.T
    M = M / np.abs(M).max()
    v = np.linalg.eigh(M)[1][:, 0]                       # the null direction
    M = M + shift * np.outer(v, v)
    E = np.zeros((n, n))
    E[0, 1] = asym
    return scale * (M + E)


@pytest.mark.parametrize("scale", [1e-6, 1.0, 1e6])
def test_one_tolerance_rule_for_control_and_trajectory_weights(scale):
    # the rule is relative to max|M|: a weight and its multiples are judged alike, and
    # ControlObjective and TrajectoryCost judge every weight alike
    rng = np.random.default_rng(7)
    net = cp.Network.mlp([3, 4, 3], seed=2)
    model = cp.Dynamics(cp.Network.mlp([3 + 2, 4, 3], seed=3), 3)
    ok = [_near_psd(rng, 3, scale, asym=1e-13), _near_psd(rng, 3, scale, shift=-1e-11)]
    bad = [(_near_psd(rng, 3, scale, asym=1e-11), "a symmetric"),
           (_near_psd(rng, 3, scale, shift=-1e-9), "positive semi-definite")]
    for M in ok:
        ControlObjective(net, np.zeros(3), Q=M)
        cp.TrajectoryObjective(model, np.zeros(3), 2, cp.TrajectoryCost(Q=M))
    for M, msg in bad:
        with pytest.raises(ValueError, match=f"Q must be {msg}"):
            ControlObjective(net, np.zeros(3), Q=M)
        with pytest.raises(ValueError, match=f"Q must be {msg}"):
            cp.TrajectoryCost(Q=M)


def test_metric_factor_diagonal_detection_and_zero_rows():
    from ctrlprop.objectives.metric import Metric
    rng = np.random.default_rng(3)
    A = rng.standard_normal((4, 4))
    for value in (2.5, [1.0, 0.0, 3.0, 0.5], np.diag([1.0, 2.0, 0.0, 4.0]), A @ A.T):
        m = Metric(value, 4, "W", "outputs")
        M = m.matrix()
        np.testing.assert_allclose(m.factor.T @ m.factor, M, rtol=0, atol=1e-13 * np.abs(M).max())
        V = rng.standard_normal((3, 4, 5))                   # applied along axis -2
        np.testing.assert_allclose(m.apply(V), M @ V, rtol=1e-14)
        assert (m.diag is None) == (np.ndim(value) == 2 and np.any(value - np.diag(np.diag(
            value))))
    z = Metric(0.0, 3, "R", "controls", drop_zero=True)
    assert z.zero and z.factor.shape == (0, 3) and z.rows == 0
    assert Metric(0.0, 3, "Q", "outputs").factor.shape == (3, 3)
    assert Metric(np.diag([1.0, 2.0]), 2, "Q").same_as(Metric([1.0, 2.0], 2, "Q"))
    with pytest.raises(TypeError, match="W must be a number, vector or matrix"):
        Metric("big", 2, "W")
    with pytest.raises(ValueError, match=r"W must be a square matrix, got shape \(2, 3\)"):
        Metric(np.ones((2, 3)), 2, "W")
