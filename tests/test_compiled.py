"""The compiled path (numba) against the numpy engine, which stays the reference.

Every comparison runs the same computation twice, with ``cp.use_compiled(False)`` and
``cp.use_compiled(True)``, on random DAG networks (skips, fan-out, sparse blocks, outputs
on hidden levels, every built-in transfer, scaling) and requires agreement to 1e-12
relative.  The engine, gradient and trajectory test modules also run whole under both
paths (``conftest.BOTH_PATHS``), finite-difference checks included.
"""

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
from scipy.optimize import Bounds

import ctrlprop as cp
from ctrlprop.core import compiled
from conftest import random_dag, dynamics_net

needs_numba = pytest.mark.skipif(not cp.compiled_available(), reason="numba not installed")
ALL = ["tanh", "logistic", "softplus", "sin", "linear", "relu"]


def close(a, b, rtol=1e-12):
    """Agreement to rtol relative to the larger entry of the reference (and exact zeros)."""
    a, b = (x.toarray() if hasattr(x, "toarray") else x for x in (a, b))
    a, b = np.asarray(a, float), np.asarray(b, float)
    assert a.shape == b.shape
    scale = max(np.abs(a).max(initial=0.0), 1e-300)
    assert np.abs(a - b).max(initial=0.0) <= rtol * scale, np.abs(a - b).max() / scale


def both(fn):
    """fn() on the numpy engine and on the compiled path."""
    with cp.use_compiled(False):
        ref = fn()
    with cp.use_compiled(True):
        got = fn()
    return ref, got


def _nets(seed, count=12, transfers=ALL):
    rng = np.random.default_rng(seed)
    nets = [random_dag(rng, transfers=transfers) for _ in range(count)]
    nets.append(cp.Network.mlp([6, 32, 32, 4], hidden="tanh", seed=1))
    scaled = cp.Network.mlp([3, 7, 5, 2], hidden="logistic", seed=2)
    scaled.set_scaling(rng.standard_normal(3), rng.uniform(0.5, 2, 3),
                       rng.standard_normal(2), rng.uniform(0.5, 2, 2))
    nets.append(scaled)
    return nets


@needs_numba
def test_tanh_kernel_within_two_eps_of_numpy():
    """Relative error at most 2 eps (about 3 ulp at worst) over a wide range."""
    from ctrlprop.core import kernels
    import numba

    @numba.njit
    def run(z, out):
        for i in range(z.shape[0]):
            out[i] = kernels.tanh(z[i])
    rng = np.random.default_rng(0)
    z = np.concatenate([rng.standard_normal(20000) * 3, rng.standard_normal(2000) * 1e-6,
                        np.linspace(-25, 25, 20001), np.linspace(0.62, 0.63, 1001),
                        rng.uniform(0.1, 1.5, 20000),      # k = 0, 1, 2 of y = k ln2 + r
                        (np.log(2.0) / 2 * np.arange(1, 60)[:, None]      # at k's steps
                         * (1.0 + np.array([-4, -1, 0, 1, 4]) * np.finfo(float).eps)).ravel(),
                        [0.0, -0.0, 1e-300, -5e-324, 18.9, 19.1, 40.0, 1e10, -1e10]])
    out = np.empty_like(z)
    run(z, out)
    ref = np.tanh(z)
    err = np.abs(out - ref) / np.maximum(np.abs(ref), np.finfo(float).tiny)
    assert err.max() <= 2 * np.finfo(float).eps
    assert np.array_equal(np.signbit(out), np.signbit(ref))      # tanh(-0.0) is -0.0
    special = np.array([np.inf, -np.inf, np.nan])
    out = np.empty(3)
    run(special, out)
    assert out[0] == 1.0 and out[1] == -1.0 and np.isnan(out[2])


@needs_numba
@pytest.mark.parametrize("K", [1, 3])
def test_passes_agree_with_the_numpy_engine(K, monkeypatch):
    monkeypatch.setattr(compiled, "MAX_WORK", 10 ** 9)     # every pass compiled
    rng = np.random.default_rng(K)
    for net in _nets(10 + K):
        X = rng.standard_normal((K, net.n_inputs))
        dY = rng.standard_normal((K, net.n_outputs))

        def run():
            tr = net.copy().trace(X)
            assert tr._bufs.ck is not None          # small: compiled when enabled
            y = tr.outputs()
            gw, gx = tr.backward(dY)
            gx_only = tr.backward(dY, wrt="inputs")
            gw_only = tr.backward(dY, wrt="weights")
            return y, gw, gx, gx_only, gw_only, tr.jacobian_inputs(), tr.jacobian_inputs([0])
        for a, b in zip(*both(run)):
            close(a, b)


@needs_numba
def test_single_sample_and_forward_agree():
    rng = np.random.default_rng(5)
    for net in _nets(20):
        x = rng.standard_normal(net.n_inputs)
        ref, got = both(lambda: (net.forward(x), net.jacobian_inputs(x)))
        for a, b in zip(ref, got):
            close(a, b)


@needs_numba
def test_large_batches_stay_on_numpy_and_small_ones_compile():
    net = cp.Network.mlp([3, 16, 2], seed=0)
    small = compiled.MAX_WORK // net.n_weights
    assert net.plan.buffers(1).ck is not None
    assert net.plan.buffers(small).ck is not None
    assert net.plan.buffers(small + 1).ck is None
    big = cp.Network.mlp([10, 128, 128, 8], seed=0)
    assert big.n_weights > compiled.MAX_WEIGHTS and big.plan.buffers(1).ck is None


def test_user_transfer_runs_on_numpy():
    cp.register_transfer("cube_compiled_test", lambda z: z ** 3, lambda z: 3 * z ** 2,
                         overwrite=True)
    net = cp.Network.from_edges(2, [(0, 2), (1, 2), (2, 3)], ["cube_compiled_test", "linear"],
                                [3], seed=0)
    assert compiled.compiled_plan(net.plan) is None
    X = np.array([[0.3, -0.2]])
    with cp.use_compiled("auto"):
        tr = net.trace(X)
        gw, gx = tr.backward(np.ones((1, 1)))
    assert tr._bufs.ck is None
    assert cp.check_gradients(net, X).ok


@needs_numba
@pytest.mark.parametrize("B", [1, 3])
def test_trajectory_objective_agrees(B, monkeypatch):
    monkeypatch.setattr(compiled, "MAX_WORK", 10 ** 9)
    rng = np.random.default_rng(30 + B)
    # (model, exogenous inputs, horizon): horizons short enough that the random models'
    # states stay bounded (an unstable rollout amplifies rounding of either path)
    cases = [(cp.Dynamics(cp.Network.mlp([6, 32, 32, 4], hidden="tanh", seed=1), 4), 0, 40),
             (cp.Dynamics(dynamics_net(rng, 3, 2, scaled=True), 3, residual=True), 0, 6),
             (cp.Dynamics(dynamics_net(rng, 2, 1, e=1), 2, n_exo=1), 1, 12),
             (cp.Dynamics(dynamics_net(rng, 3, 1, scaled=True), 3), 0, 12)]
    for model, e, T in cases:
        x0 = 0.5 * rng.standard_normal((B, model.n_states))
        U = 0.3 * rng.standard_normal((B, T, model.n_controls))
        exo = rng.standard_normal((T, e)) if e else None
        cost = cp.TrajectoryCost(goal=np.full(model.n_states, 0.5), Q=1.0, Qf=10.0, R=0.1)

        def run():
            obj = cp.TrajectoryObjective(model, x0, T, cost, exo=exo)
            assert obj._ur.ck is not None
            J, g, gx = obj.value_and_grad(U, wrt_x0=True)
            f, gflat = obj(U.ravel())
            out = [J, g, gx, f, gflat, obj.states(U.ravel()), obj.value(U.ravel() + 0.1)]
            if B == 1:
                out.append(obj.state_jacobian(U.ravel()))
            return out
        ref, got = both(run)
        assert np.abs(ref[5]).max() < 1e6
        for a, b in zip(ref, got):
            close(a, b)


@needs_numba
def test_switching_paths_between_forward_and_backward():
    """A rollout made on one path is differentiated on that path (its state is the one
    left in the work arrays), whatever the switch says at the backward pass."""
    model = cp.Dynamics(cp.Network.mlp([6, 16, 4], hidden="tanh", output="tanh", seed=3), 4)
    U = 0.2 * np.random.default_rng(0).standard_normal((10, 2))
    with cp.use_compiled(False):
        ref = cp.TrajectoryObjective(model, np.ones(4), 10)(U.ravel())
    for first, second in ((True, False), (False, True)):
        obj = cp.TrajectoryObjective(model, np.ones(4), 10)
        with cp.use_compiled(first):
            obj.value(U.ravel())
        with cp.use_compiled(second):
            got = obj(U.ravel())
        close(ref[0], got[0])
        close(ref[1], got[1])


@needs_numba
def test_weight_objective_and_control_objective_agree(monkeypatch):
    monkeypatch.setattr(compiled, "MAX_WORK", 10 ** 9)
    rng = np.random.default_rng(7)
    net = cp.Network.mlp([4, 8, 3], hidden="tanh", seed=4)
    X, Y = rng.standard_normal((5, 4)), rng.standard_normal((5, 3))
    ref, got = both(lambda: cp.WeightObjective(net, X, Y)(net.weights))
    close(ref[0], got[0])
    close(ref[1], got[1])
    scaled = net.copy()
    scaled.set_scaling(rng.standard_normal(4), rng.uniform(0.5, 2, 4),
                       rng.standard_normal(3), rng.uniform(0.5, 2, 3))
    Qm = np.array([[2.0, 0.3, 0.0], [0.3, 1.0, 0.1], [0.0, 0.1, 0.5]])
    Rm = np.array([[1.0, 0.2], [0.2, 0.4]])
    cases = [(net, dict(target=rng.standard_normal(3), inputs=[0.1, -0.3], control=[1, 3],
                        R=0.1), 1),
             (scaled, dict(target=rng.standard_normal((3, 3)), inputs=rng.standard_normal((3, 2)),
                           control=[3, 0], Q=Qm, R=Rm, u_rest=rng.standard_normal((3, 2))), 3),
             (scaled, dict(target=rng.standard_normal(3), Q=[1.0, 0.0, 2.0]), 1)]
    for model, kw, K in cases:
        m = len(kw.get("control", range(4)))
        u = rng.standard_normal(K * m)

        def ctl():
            obj = cp.ControlObjective(model, **kw)
            return obj(u) + (obj.value(u), obj.jacobian(u), obj.hessp(u, np.ones(K * m)))
        for a, b in zip(*both(ctl)):
            close(a, b)


def test_use_compiled_checks_its_argument_and_restores():
    before = compiled.is_enabled()
    for bad in (1, 0, "yes", None, 2.0):
        with pytest.raises(ValueError, match="'auto', True or False"):
            cp.use_compiled(bad)
    with cp.use_compiled(False):
        assert not compiled.is_enabled()
    assert compiled.is_enabled() == before


def test_without_numba_the_numpy_engine_runs():
    """numba hidden from the import system: the package imports, every pass runs on numpy,
    and asking for the compiled path names the extra."""
    code = (
        "import sys; sys.modules['numba'] = None\n"
        "import numpy as np, ctrlprop as cp\n"
        "assert not cp.compiled_available()\n"
        "net = cp.Network.mlp([3, 5, 2], seed=0)\n"
        "tr = net.trace(np.ones((1, 3)))\n"
        "assert tr._bufs.ck is None\n"
        "J, g = cp.bptt(cp.Dynamics(cp.Network.mlp([3, 5, 2], seed=0), 2), np.zeros(2),"
        " np.zeros((4, 1)))\n"
        "try:\n"
        "    cp.use_compiled(True)\n"
        "except ValueError as e:\n"
        "    assert 'ctrlprop[fast]' in str(e)\n"
        "else:\n"
        "    raise SystemExit('no error')\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)


@needs_numba
def test_one_problem_at_a_time_sees_each_problem():
    """ControlObjective.single().select(k) (scipy methods, one problem after another) keeps
    the compiled call's arguments per problem: each problem's value and gradient is its own."""
    rng = np.random.default_rng(8)
    net = cp.Network.mlp([4, 8, 3], hidden="tanh", seed=4)
    obj = cp.ControlObjective(net, rng.standard_normal((5, 3)),
                              inputs=rng.standard_normal((5, 2)), control=[0, 2], R=0.2,
                              u_rest=rng.standard_normal((5, 2)))
    one = obj.single()
    U = rng.standard_normal((5, 2))
    with cp.use_compiled(True):
        got = [one.select(k)(U[k]) for k in (0, 3, 1, 3)]
    with cp.use_compiled(False):
        E, g = obj(U.ravel())
        want = [cp.ControlObjective(net, obj._T[:, k], inputs=obj._Xo[:, k], control=[0, 2],
                                    R=0.2, u_rest=obj._ur[:, k])(U[k]) for k in (0, 3, 1, 3)]
    for (a, ga), (b, gb) in zip(got, want):
        close(b, a)
        close(gb, ga)
    res = [cp.optimize_controls(net, obj._T.T, obj._Xo.T, [0, 2], R=0.2, u_rest=obj._ur.T,
                                method="L-BFGS-B") for _ in (0, 1)]
    with cp.use_compiled(False):
        ref = cp.optimize_controls(net, obj._T.T, obj._Xo.T, [0, 2], R=0.2, u_rest=obj._ur.T,
                                   method="L-BFGS-B")
    np.testing.assert_allclose(res[0].controls, ref.controls, rtol=1e-6, atol=1e-8)


@needs_numba
def test_nan_propagates_like_numpy():
    """A NaN control gives NaN on both paths (relu keeps NaN, as np.maximum does)."""
    for hidden in ("relu", "tanh", "softplus"):
        net = cp.Network.mlp([2, 4, 1], hidden=hidden, seed=0)
        u = np.array([np.nan, 0.2])
        ref, got = both(lambda: cp.ControlObjective(net, [0.5], control=[0, 1])(u))
        assert np.isnan(ref[0]) and np.isnan(got[0]) and np.isnan(got[1]).all(), hidden


def test_env_var_switches_off_without_importing_numba():
    code = (
        "import sys, numpy as np, ctrlprop as cp\n"
        "net = cp.Network.mlp([3, 5, 2], seed=0)\n"
        "net.trace(np.ones((1, 3))).backward(np.ones((1, 2)))\n"
        "assert 'numba' not in sys.modules and not cp.compiled_available()\n"
        "try:\n"
        "    cp.use_compiled(True)\n"
        "except ValueError as e:\n"
        "    assert 'CTRLPROP_COMPILED' in str(e)\n"
        "else:\n"
        "    raise SystemExit('no error')\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), CTRLPROP_COMPILED="0")
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)


# ---------------------------------------------------------------- iLQR / DDP
def _ilqr_cases(rng):
    """(model, exo (T, e) or None, T, cost, bounds) for the iLQR comparisons: an MLP, a
    scaled residual DAG with a control-rate cost (augmented state), exogenous inputs."""
    goal = cp.TrajectoryCost(goal=[0.5, -0.2, 0.1], Q=1.0, Qf=10.0, R=0.1)
    return [
        (cp.Dynamics(cp.Network.mlp([5, 16, 3], hidden="tanh", seed=2), 3), None, 15,
         goal, None),
        (cp.Dynamics(dynamics_net(rng, 3, 2, scaled=True), 3, residual=True), None, 8,
         cp.TrajectoryCost(goal=[0.5, -0.2, 0.1], Q=1.0, Qf=10.0, R=0.1, S=0.5),
         Bounds([-0.4, -0.3], [0.3, 0.4])),
        (cp.Dynamics(dynamics_net(rng, 3, 1, e=1), 3, n_exo=1), 1, 10, goal,
         Bounds([-0.2], [0.25])),
    ]


@needs_numba
@pytest.mark.parametrize("method", ["ilqr", "ddp"])
@pytest.mark.parametrize("B", [1, 3])
def test_ilqr_and_ddp_agree_with_the_numpy_solver(method, B, monkeypatch):
    """Whole solves (a few iterations: backward passes, box QPs, line searches on the
    model) on both paths, to 1e-12: iLQR's backward pass and the closed-loop forward pass
    run compiled, DDP's forward pass."""
    monkeypatch.setattr(compiled, "MAX_WORK", 10 ** 9)
    rng = np.random.default_rng([40, B])
    for model, e, T, cost, bounds in _ilqr_cases(rng):
        x0 = 0.3 * rng.standard_normal((B, model.n_states))
        exo = rng.standard_normal((T, e)) if e else None
        u0 = 0.1 * rng.standard_normal((B, T, model.n_controls))
        if bounds is not None:
            u0 = np.clip(u0, bounds.lb, bounds.ub)

        def run():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", cp.ConvergenceWarning)
                r = cp.optimize_trajectory(model, x0, T, cost, u0=u0, exo=exo, bounds=bounds,
                                           method=method, maxiter=4)
            return r.controls, r.states, r.fun, r.gains, r.nit, r.feedforward
        ref, got = both(run)
        for a, b in zip(ref[:-1], got[:-1]):
            close(a, b)
        # the feedforward at the returned plan is a small remaining Newton step, a
        # cancellation of terms of the controls' size: compared on that scale
        assert np.abs(ref[-1] - got[-1]).max() <= 1e-12 * np.abs(ref[0]).max()


@needs_numba
def test_closed_loop_equals_the_loop_of_model_steps(monkeypatch):
    """The compiled closed-loop rollout against the solver's own loop of DDPTerms.step,
    with feedback on the augmented state, bounds that clip, exo and scaling."""
    monkeypatch.setattr(compiled, "MAX_WORK", 10 ** 9)
    from ctrlprop.objectives.ddp_terms import DDPTerms
    rng = np.random.default_rng(41)
    B = 2
    for model, e, T, cost, bounds in _ilqr_cases(rng):
        x0 = 0.3 * rng.standard_normal((B, model.n_states))
        exo = rng.standard_normal((T, e)) if e else None
        with cp.use_compiled(True):
            terms = DDPTerms(model, x0, T, cost, exo)
            cl = terms.callables()["closed_loop"]
        assert cl is not None
        m, nz = model.n_controls, terms.n_aug
        Zr = rng.standard_normal((B, T + 1, nz))
        Ur, k = rng.standard_normal((B, T, m)), rng.standard_normal((B, T, m))
        K = 0.3 * rng.standard_normal((B, T, m, nz))
        lo, hi = ((np.broadcast_to(bounds.lb, (B, T, m)), np.broadcast_to(bounds.ub, (B, T, m)))
                  if bounds is not None else (None, None))
        Z0 = terms.initial_states()
        Z, U = cl(Z0, Zr, Ur, k, K, 0.5, lo, hi)
        Zs, Us = np.empty_like(Z), np.empty_like(U)
        Zs[:, 0] = Z0
        with cp.use_compiled(False):
            for t in range(T):
                u = Ur[:, t] + 0.5 * k[:, t] + np.einsum("bij,bj->bi", K[:, t],
                                                         Zs[:, t] - Zr[:, t])
                Us[:, t] = u if lo is None else np.clip(u, lo[:, t], hi[:, t])
                Zs[:, t + 1] = terms.step(t, Zs[:, t], Us[:, t])
        if lo is not None:
            assert np.any(Us == lo) or np.any(Us == hi)         # the bounds clip
        close(Us, U)
        close(Zs, Z)
