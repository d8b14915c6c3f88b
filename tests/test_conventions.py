"""The conventions every entry point shares (README, "One set of conventions"): Result fields,
status codes, callbacks, ConvergenceWarning, maxiter vs options, method=None, progress,
bounds forms, and pickled results."""

import pickle
import warnings

import numpy as np
import pytest
from scipy.optimize import Bounds

import ctrlprop as cp

RNG = np.random.default_rng(0)
X_FIT = RNG.uniform(-1, 1, (40, 2))
Y_FIT = np.c_[np.sin(2 * X_FIT[:, 0]) * X_FIT[:, 1], X_FIT[:, 0] ** 2]


def dyn():
    return cp.Dynamics(cp.Network.mlp([3, 6, 2], seed=1), 2)


def plant(x, u):
    return dyn().step(x, u)


# every entry point as fn(**kw) on a tiny problem; each takes maxiter/options/callback/method
ENTRY = {
    "fit": lambda **kw: cp.fit(cp.Network.mlp([2, 5, 2], seed=1), X_FIT, Y_FIT, **kw),
    "optimize_controls": lambda **kw: cp.optimize_controls(
        cp.Network.mlp([2, 6, 2], seed=2), [0.2, -0.1], bounds=(-2, 2), **kw),
    "optimize_controls batch": lambda **kw: cp.optimize_controls(
        cp.Network.mlp([2, 6, 2], seed=2), [[0.2, -0.1], [0.1, 0.3]], bounds=(-2, 2), **kw),
    "optimize_trajectory": lambda **kw: cp.optimize_trajectory(
        dyn(), [0.5, -0.2], 4, dict(goal=[1.0, 0.0], R=0.1), bounds=(-2, 2), **kw),
    "mpc": lambda **kw: cp.mpc(dyn(), plant, [0.5, -0.2], 4, 3, dict(goal=[1.0, 0.0], R=0.1),
                               **kw),
    "train_controller": lambda **kw: cp.train_controller(
        dyn(), cp.Network.mlp([2, 4, 1], seed=3), RNG.standard_normal((4, 2)), 3,
        dict(Q=1.0, R=0.1), **kw),
}
DEFAULT_METHOD = {"fit": "L-BFGS-B", "optimize_controls": "L-BFGS-B",
                  "optimize_controls batch": "batch-lm", "optimize_trajectory": "L-BFGS-B",
                  "mpc": "L-BFGS-B", "train_controller": "L-BFGS-B"}


@pytest.mark.parametrize("name", ENTRY)
def test_every_result_has_the_common_fields(name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cp.ConvergenceWarning)
        res = ENTRY[name]()
    assert isinstance(res, cp.Result)
    for key in ("x", "fun", "success", "status", "message", "nit", "nfev", "history"):
        assert key in res, (name, key)
    assert isinstance(res.history, dict) and len(res.history["fun"]) >= 1
    assert res.method == DEFAULT_METHOD[name]                    # method=None: the default
    assert np.all(np.isin(np.atleast_1d(res.status), list(cp.STATUS)))
    back = pickle.loads(pickle.dumps(res))
    np.testing.assert_array_equal(back.x, res.x)
    np.testing.assert_array_equal(back.fun, res.fun)


@pytest.mark.parametrize("name", ENTRY)
def test_callback_gets_a_result_and_true_stops(name):
    seen = []

    def cb(intermediate_result):
        assert isinstance(intermediate_result, cp.Result)
        seen.append((intermediate_result.nit, intermediate_result.fun))
        assert intermediate_result.x is not None
        return len(seen) >= 2

    with warnings.catch_warnings():
        warnings.simplefilter("error", cp.ConvergenceWarning)      # a callback stop never warns
        res = ENTRY[name](callback=cb)
    assert len(seen) == 2 and np.all(np.atleast_1d(res.status) == 2) and "callback" in res.message
    assert not np.any(res.success)


@pytest.mark.parametrize("name", ENTRY)
def test_stop_iteration_stops_too(name):
    calls = []

    def cb(intermediate_result):
        calls.append(1)
        raise StopIteration
    res = ENTRY[name](callback=cb)
    assert len(calls) == 1 and np.all(np.atleast_1d(res.status) == 2)


@pytest.mark.parametrize("name", [n for n in ENTRY if n != "mpc"])
def test_an_unconverged_solve_warns(name):
    with pytest.warns(cp.ConvergenceWarning, match=name.split()[0]):
        res = ENTRY[name](maxiter=1)
    assert not np.all(res.success) and np.any(np.atleast_1d(res.status) == 1)


def test_mpc_counts_capped_step_solves_without_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error", cp.ConvergenceWarning)
        res = ENTRY["mpc"](maxiter=1)
    assert res.success and res.status == 0 and "step solves stopped" in res.message
    assert np.all(res.history["status"] == 1) and res.history["fun"].shape == (4,)


@pytest.mark.parametrize("name", ENTRY)
@pytest.mark.parametrize("key", ["maxiter", "maxfun", "max_nfev"])
def test_iteration_limits_go_through_maxiter_only(name, key):
    with pytest.raises(ValueError, match=rf"options\['{key}'\] is an iteration limit"):
        ENTRY[name](options={key: 3})


@pytest.mark.parametrize("name", ENTRY)
def test_unknown_methods_list_the_offered_ones(name):
    with pytest.raises(ValueError, match="unknown method 'Nelder-Mead'.*choose one of.*L-BFGS-B"):
        ENTRY[name](method="Nelder-Mead")
    with pytest.raises(TypeError, match="method must be a string or None"):
        ENTRY[name](method=1)


@pytest.mark.parametrize("name", ENTRY)
def test_progress_is_a_live_tqdm_line(name, capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cp.ConvergenceWarning)
        ENTRY[name](progress=True)
        assert capsys.readouterr().err.count("ctrlprop.") >= 1
        ENTRY[name]()
    assert capsys.readouterr().err == ""
    with pytest.raises(TypeError, match="progress must be True or False"):
        ENTRY[name](progress=1)


def test_newton_methods_get_exact_hessian_products():
    """0.1 passed no hessp to optimize_trajectory's Newton-CG (scipy fell back to finite
    differences) and let train_controller hand any name to scipy."""
    res = cp.optimize_trajectory(dyn(), [0.5, -0.2], 4, dict(goal=[1.0, 0.0], R=0.1),
                                 method="Newton-CG")
    assert res.success and res.nhev > 0
    ref = cp.optimize_trajectory(dyn(), [0.5, -0.2], 4, dict(goal=[1.0, 0.0], R=0.1),
                                 maxiter=500, options=dict(gtol=1e-10))
    np.testing.assert_allclose(res.controls, ref.controls, atol=1e-5)
    with pytest.raises(ValueError, match="Newton-CG is not offered here"):
        ENTRY["train_controller"](method="Newton-CG")
    with pytest.raises(ValueError, match="trust-exact is not offered here"):
        ENTRY["fit"](method="trust-exact")


def test_one_cost_scaling_a_unit_weight_means_the_same_everywhere():
    """A one-step trajectory through a model whose next state is its control is the static
    control problem: J(u) with Qf = 1, R = r equals E(u) with Q = 1, R = r."""
    net = cp.Network.from_edges(3, [(2, 3), (2, 4), (0, 3), (1, 4)], ["linear", "linear"],
                                [3, 4])
    w = np.zeros(net.n_weights)
    for k, (s, d) in enumerate(net.weight_labels):
        w[k] = 1.0 if (s, d) in ((2, 3), (2, 4)) else 0.0
    net.weights = w                                  # x_next = (u, u): two states, one control
    model = cp.Dynamics(net, 2)
    goal, r, u = np.array([0.3, 0.7]), 0.2, np.array([0.9])
    J = cp.bptt(model, np.zeros(2), u[None], dict(goal=goal, Qf=1.0, R=r))[0]
    obj = cp.ControlObjective(net, goal, np.zeros(2), control=[2], Q=1.0, R=r)
    assert J == pytest.approx(obj.value(u), rel=1e-14)
    assert J == pytest.approx(0.5 * np.sum((u[0] - goal) ** 2) + 0.5 * r * u[0] ** 2, rel=1e-14)


@pytest.mark.parametrize("form", [(-1, 1), [(-1, 1), (-1, 1)], Bounds(-1, 1),
                                  Bounds([-1, -1], [1, 1]), {0: (-1, 1), 1: (-1, 1)}])
def test_every_bounds_form_means_the_same_box(form):
    net = cp.Network.mlp([2, 6, 2], seed=2)
    ref = cp.optimize_controls(net, [3.0, -3.0], bounds=Bounds([-1, -1], [1, 1]))
    res = cp.optimize_controls(net, [3.0, -3.0], bounds=form)
    np.testing.assert_array_equal(res.controls, ref.controls)
    model = cp.Dynamics(cp.Network.mlp([4, 6, 2], seed=1), 2)         # two controls
    tr = cp.optimize_trajectory(model, [0.5, -0.2], 3, dict(goal=[9.0, -9.0]), bounds=form)
    tref = cp.optimize_trajectory(model, [0.5, -0.2], 3, dict(goal=[9.0, -9.0]),
                                  bounds=Bounds(-np.ones((3, 2)), np.ones((3, 2))))
    np.testing.assert_array_equal(tr.controls, tref.controls)


def test_scalar_pair_bounds_are_accepted_by_optimize_controls():
    """0.1's optimize_controls refused bounds=(-1, 1) (one pair for every control)."""
    net = cp.Network.mlp([2, 6, 2], seed=2)
    res = cp.optimize_controls(net, [3.0, -3.0], bounds=(-1, 1))
    assert np.all(np.abs(res.controls) <= 1) and np.any(np.abs(res.controls) == 1)
