"""The pendulum swing-up scenario end to end in --quick mode: metrics, plots, metrics.json;
and its model's construction (fixed sine features, exact-physics reference)."""

import glob

import numpy as np
import pytest

import ctrlprop as cp

from conftest import check_outputs
import pendulum_swingup as ps  # on sys.path via conftest

FILES = ("swingup.png", "phase.png", "starts.png", "model.png")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("pendulum_swingup")
    metrics = ps.main(["--quick", "--seed", "0", "--out", str(out)])
    return out, metrics


def test_swings_up_on_the_true_plant(run):
    _, m = run
    # from hanging at rest: up within 4 s (the exact-physics planner needs ~2.8 s) and held
    assert m["success"] is True
    assert m["time_to_upright"] <= 4.0
    assert m["final_abs_theta"] < 0.01                       # a tenth of the tolerance
    # the learned model plans about as well as the exact equations (same MPC settings)
    assert m["reference_time_to_upright"] <= 4.0
    assert abs(m["time_to_upright"] - m["reference_time_to_upright"]) <= 0.3


def test_extra_starts_are_not_a_fluke(run):
    _, m = run
    assert m["n_extra"] == 4 and len(m["time_to_upright_extra"]) == 4
    assert m["success_rate_extra"] >= 0.75
    assert m["success_rate_near_hanging"] == 1.0              # the full swing-ups
    ok = [t for t in m["time_to_upright_extra"] if t is not None]
    assert len(ok) >= 3 and max(ok) <= 4.0


def test_model_is_accurate(run):
    _, m = run
    # one-step increments on fresh random transitions; the increments' spreads are about
    # 0.22 rad (theta) and 0.55 rad/s (theta_dot): errors under 0.5 % and 2 %
    assert m["model_rmse_dtheta"] < 1e-3
    assert m["model_rmse_dtheta_dot"] < 1e-2
    # the relu layer models the speed limit; tanh units smear it: several times worse
    assert m["tanh_model_rmse_dtheta_dot"] > 4 * m["model_rmse_dtheta_dot"]
    assert m["model_open_loop_rms_theta"] < 0.05 < m["tanh_model_open_loop_rms_theta"]
    # along the closed-loop runs the model's one-step prediction is close to the plant
    assert m["prediction_error_median"] < 5e-3
    assert m["mpc_ms_per_step"] > 0 and m["mpc_iterations_median"] >= 1


def test_tanh_variant_swings_up_but_balances_off_centre(run):
    _, m = run
    assert m["tanh_time_to_upright"] <= 4.0
    assert m["tanh_final_abs_theta"] > m["final_abs_theta"]


def test_files(run):
    out, m = run
    check_outputs(out, FILES, "pendulum_swingup", m, ["time_to_upright"])


def test_trained_model_is_periodic_with_fixed_features(run):
    out, _ = run
    (path,) = glob.glob(str(out / "cache" / "pendulum-dyn-relu-*.npz"))
    net = cp.load(path)
    labels = net.weight_labels
    w = dict(zip(labels, net.weights))
    # the frozen feature weights survived training bit for bit: sin(theta), sin(theta + pi/2)
    assert w[(0, ps.SIN)] == 1.0 and w[("bias", ps.SIN)] == 0.0
    assert w[(0, ps.COS)] == 1.0 and w[("bias", ps.COS)] == np.pi / 2
    assert net.input_scaling[0][0] == 0.0 and net.input_scaling[1][0] == 1.0
    # hence the model is 2 pi-periodic in theta: planning on the unwrapped angle is valid
    model = cp.Dynamics(net, 2, residual=True)
    rng = np.random.default_rng(3)
    X = np.column_stack([rng.uniform(-np.pi, np.pi, 50), rng.uniform(-8, 8, 50)])
    U = rng.uniform(-2, 2, (50, 1))
    shift = np.array([2 * np.pi, 0.0])
    for k in (-2, 1, 3):
        np.testing.assert_allclose(model.step(X + k * shift, U) - k * shift, model.step(X, U),
                                   atol=1e-9)


def test_exact_network_is_the_physics_without_speed_limit():
    plant = cp.Pendulum(wrap=False, max_speed=None)
    net = ps.exact_network(plant, hidden=5)
    model = cp.Dynamics(net, 2, residual=True)
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.uniform(-7, 7, 200), rng.uniform(-12, 12, 200)])
    U = rng.uniform(-2, 2, (200, 1))
    np.testing.assert_allclose(model.step(X, U), plant.step(X, U), rtol=0, atol=1e-12)
    # and its exact Jacobians, through the network's backward pass
    A, B = model.linearize(X, U)
    A0, B0 = plant.jacobians(X, U)
    np.testing.assert_allclose(A, A0, atol=1e-12)
    np.testing.assert_allclose(B, B0, atol=1e-12)


def test_swingup_cost_gradients():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(3, 7, 2)) * [3.0, 4.0]
    U = rng.uniform(-2, 2, (3, 7, 1))

    def run_f(z):
        v, gx, gu = ps.running_cost(z[:42].reshape(3, 7, 2), z[42:].reshape(3, 7, 1))
        return v.sum(), np.concatenate([gx.ravel(), gu.ravel()])

    def term_f(z):
        v, g = ps.terminal_cost(z.reshape(3, 2))
        return v.sum(), g.ravel()

    for fun, z in ((run_f, np.concatenate([X.ravel(), U.ravel()])), (term_f, X[:, -1].ravel())):
        g_num = cp.numerical_gradient(lambda x: fun(x)[0], z, 1e-6)
        np.testing.assert_allclose(fun(z)[1], g_num, rtol=1e-6, atol=1e-7)
    # zero and flat upright, maximal (2 per step) hanging at rest
    v, gx, _ = ps.running_cost(np.array([[[0.0, 0.0], [np.pi, 0.0]]]), np.zeros((1, 2, 1)))
    np.testing.assert_allclose(v[0], [0.0, 2.0], atol=1e-15)
    np.testing.assert_allclose(gx[0], 0.0, atol=1e-15)


def test_cached_model_is_reused(run):
    out, m = run
    again = ps.main(["--quick", "--seed", "0", "--out", str(out)])
    assert again["model_cached"] is True and again["train_seconds"] == 0.0
    assert again["time_to_upright"] == pytest.approx(m["time_to_upright"])
    assert again["model_rmse_dtheta_dot"] == pytest.approx(m["model_rmse_dtheta_dot"])


def test_swingup_cost_hessians_are_exact():
    """The cost's ``hessian`` attributes (used by iLQR/DDP) against central differences
    of its gradients (the same terms without the attribute)."""
    from ctrlprop.objectives.ddp_terms import custom_hessian_blocks
    rng = np.random.default_rng(0)
    S = rng.normal(size=(3, 8, 2)) * [2.0, 3.0]
    U = rng.normal(size=(3, 7, 1))
    exact = custom_hessian_blocks(ps.SWINGUP_COST, S, U)
    fd = custom_hessian_blocks(cp.TrajectoryCost(
        Q=0.0, running=lambda X, V: ps.running_cost(X, V),
        terminal=lambda x: ps.terminal_cost(x)), S, U)
    for e, d in zip(exact, fd):
        np.testing.assert_allclose(e, d, rtol=1e-6, atol=1e-8)
    assert np.abs(exact[0][:, :, 0, 0]).min() < 0.5 < np.abs(exact[0][:, :, 0, 0]).max()
