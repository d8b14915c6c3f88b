"""executor=: results equal the serial run bit for bit, failures are named and lose nothing.

The executors are real: a ``ProcessPoolExecutor`` and a ``dask.distributed.LocalCluster``
with two worker processes (one thread each), started once for the module.
"""

import os
import sys
import warnings
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest

import ctrlprop as cp
from ctrlprop.core.parallel import ParallelError, choose_chunk, chunks, run_tasks

distributed = pytest.importorskip("distributed")
cloudpickle = pytest.importorskip("cloudpickle")
cloudpickle.register_pickle_by_value(sys.modules[__name__])   # dask workers need no import


@pytest.fixture(scope="module")
def pool():
    with ProcessPoolExecutor(2) as ex:
        yield ex


@pytest.fixture(scope="module")
def dask_executor():
    import dask
    # a task that kills its worker fails at once, and only that task was on the worker
    with dask.config.set({"distributed.scheduler.allowed-failures": 0,
                          "distributed.scheduler.worker-saturation": 1.0}):
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                           dashboard_address=None)
        client = distributed.Client(cluster)
        try:
            yield client.get_executor()
        finally:
            client.close()
            cluster.close()


@pytest.fixture(params=["process-pool", "dask"])
def executor(request, pool, dask_executor):
    return pool if request.param == "process-pool" else dask_executor


def _ik_batch(K, seed=1):
    net = cp.Network.mlp([4, 16, 16, 3], seed=0)
    rng = np.random.default_rng(seed)
    return net, net.forward(rng.uniform(-1, 1, (K, 4)))


def _same(a, b, keys):
    for k in keys:
        assert np.array_equal(np.asarray(a[k]), np.asarray(b[k])), k


# ---------------------------------------------------------------- the chunk rule
def test_chunk_rule_caps_the_number_of_chunks_and_keeps_batched_chunks_wide():
    assert choose_chunk(100_000, minimum=256) == 6250          # 16 chunks
    assert choose_chunk(1000, minimum=256) == 256
    assert choose_chunk(10, minimum=1) == 1
    assert choose_chunk(10, given=3) == 3
    parts = chunks(10, 3)
    assert [list(p) for p in parts] == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]
    with pytest.raises(ValueError, match="chunk_size"):
        choose_chunk(10, given=0)


# ---------------------------------------------------------------- bit for bit
@pytest.mark.filterwarnings("ignore::ctrlprop.ConvergenceWarning")
def test_batch_lm_with_restarts_equals_the_serial_run(executor):
    net, T = _ik_batch(600)
    kw = dict(bounds=(-1, 1), restarts=1, seed=5, chunk_size=128)
    serial = cp.optimize_controls(net, T, **kw)
    par = cp.optimize_controls(net, T, executor=executor, **kw)
    _same(serial, par, ("controls", "fun", "status", "success", "nit", "all_controls",
                        "all_fun", "starts", "best"))
    assert np.array_equal(serial.history["fun"], par.history["fun"])
    assert serial.success.all()


@pytest.mark.filterwarnings("ignore::ctrlprop.ConvergenceWarning")
def test_the_default_chunks_of_an_executor_equal_the_serial_run_with_them(pool):
    net, T = _ik_batch(700)                          # > 256: three chunks of 256 by default
    serial = cp.optimize_controls(net, T, bounds=(-1, 1), chunk_size=256)
    par = cp.optimize_controls(net, T, bounds=(-1, 1), executor=pool)
    _same(serial, par, ("controls", "fun", "status", "nit"))
    # the serial default is one batch, as before: the same answer to BLAS rounding
    whole = cp.optimize_controls(net, T, bounds=(-1, 1))
    np.testing.assert_allclose(whole.controls, par.controls, rtol=0, atol=1e-8)


def test_batch_lm_chunking_changes_results_only_at_rounding_level():
    # a problem's result depends on the width of its batch through BLAS kernels only
    net, T = _ik_batch(300)
    a = cp.optimize_controls(net, T, bounds=(-1, 1), chunk_size=300)
    b = cp.optimize_controls(net, T, bounds=(-1, 1), chunk_size=37)
    np.testing.assert_allclose(b.controls, a.controls, rtol=0, atol=1e-8)
    assert np.array_equal(a.status, b.status)


def test_scipy_method_equals_serial_for_any_chunking(pool):
    net, T = _ik_batch(9)
    kw = dict(bounds=(-1, 1), method="L-BFGS-B", restarts=2, seed=3)
    serial = cp.optimize_controls(net, T, **kw)
    par = cp.optimize_controls(net, T, executor=pool, chunk_size=2, **kw)
    _same(serial, par, ("controls", "fun", "status", "nit", "all_controls", "all_fun"))
    _same(serial.history, par.history, ("fun", "run"))


def _model():
    return cp.Dynamics(cp.Network.mlp([3, 12, 2], seed=4), 2)


@pytest.mark.filterwarnings("ignore::ctrlprop.ConvergenceWarning")
@pytest.mark.parametrize("method", ["ilqr", "batch-lbfgs"])
def test_batched_trajectory_methods_equal_the_serial_run(executor, method):
    model = _model()
    X0 = np.random.default_rng(0).uniform(-0.5, 0.5, (7, 2))
    goal = np.random.default_rng(1).uniform(-1, 1, (7, 1, 2))
    cost = cp.TrajectoryCost(goal=goal, Q=1.0, R=0.1)
    kw = dict(bounds=(-1, 1), method=method, maxiter=30, restarts=1, seed=2, chunk_size=3)
    serial = cp.optimize_trajectory(model, X0, 8, cost, **kw)
    par = cp.optimize_trajectory(model, X0, 8, cost, executor=executor, **kw)
    _same(serial, par, ("controls", "states", "fun", "status", "all_controls", "best"))
    if method == "ilqr":
        _same(serial, par, ("gains", "feedforward"))
    assert np.array_equal(serial.history["fun"], par.history["fun"])


def test_independent_scipy_runs_equal_the_unchunked_serial_run(pool):
    model = _model()
    X0 = np.random.default_rng(0).uniform(-0.5, 0.5, (5, 2))
    kw = dict(bounds=(-1, 1), independent=True, maxiter=50, options={"gtol": 1e-9})
    cost = dict(Q=1.0, R=0.1, goal=[0.3, -0.2])
    serial = cp.optimize_trajectory(model, X0, 6, cost, **kw)
    par = cp.optimize_trajectory(model, X0, 6, cost, executor=pool, chunk_size=2, **kw)
    _same(serial, par, ("controls", "states", "fun", "status", "nit"))


@pytest.mark.filterwarnings("ignore::ctrlprop.ConvergenceWarning")
def test_constrained_trajectories_fan_out_their_inner_solves(pool):
    model = _model()
    X0 = np.array([[0.4, 0.1], [-0.3, 0.2], [0.1, -0.4]])
    cons = cp.StateBounds(lo=[-0.2, -np.inf], hi=[0.2, np.inf])
    kw = dict(bounds=(-1, 1), method="ilqr", maxiter=40, constraints=cons, chunk_size=1)
    serial = cp.optimize_trajectory(model, X0, 6, dict(Q=1.0, R=0.1, goal=[0.5, 0.0]), **kw)
    par = cp.optimize_trajectory(model, X0, 6, dict(Q=1.0, R=0.1, goal=[0.5, 0.0]),
                                 executor=pool, **kw)
    _same(serial, par, ("controls", "fun", "constraint_violation", "multipliers"))


def test_evaluate_over_many_episodes_equals_the_serial_run(executor):
    env = cp.Pendulum().env()
    policy = cp.Network.mlp([env.observation_space.shape[0], 6, 1], seed=1)
    serial = cp.evaluate(env, policy, episodes=6, seed=4, episode_steps=40)
    par = cp.evaluate(env, policy, episodes=6, seed=4, episode_steps=40, executor=executor,
                      chunk_size=4)
    assert np.array_equal(serial.returns, par.returns) and serial.data == par.data


def test_evaluate_takes_an_environment_factory(pool):
    import functools
    gym = pytest.importorskip("gymnasium")
    make = functools.partial(gym.make, "Pendulum-v1")
    a = cp.evaluate(make, None, episodes=3, seed=2, episode_steps=30)
    b = cp.evaluate(make, None, episodes=3, seed=2, episode_steps=30, executor=pool)
    assert np.array_equal(a.returns, b.returns)


@pytest.mark.filterwarnings("ignore::ctrlprop.ConvergenceWarning")
def test_learn_and_plan_evaluates_on_the_executor_with_the_serial_returns(pool):
    env = cp.Pendulum().env(max_steps=25)
    kw = dict(iterations=1, steps_per_iteration=50, horizon=6, warmup=80,
              fit=dict(hidden=(8,), maxiter=20), plan=dict(maxiter=3), eval_episodes=4)
    cost = cp.TrajectoryCost(Q=1.0, R=0.01)
    serial = cp.learn_and_plan(env, cost, **kw)
    par = cp.learn_and_plan(env, cost, executor=pool, **kw)
    assert np.array_equal(serial.returns, par.returns) and serial.data == par.data
    assert np.all(par.history["ms_per_step"] > 0)


# ---------------------------------------------------------------- failures
def _fragile_running(X, U):
    """A running cost that fails for the trajectory starting near x = (0.9, 0.9)."""
    if np.any(np.abs(X[:, 0] - 0.9).max(axis=-1) < 0.3):
        raise FloatingPointError("the model left its data")
    v = 0.5 * (X ** 2).sum(axis=(1, 2))
    return v, X.copy(), np.zeros_like(U)


def test_a_failed_problem_is_named_and_the_others_are_kept(executor):
    model = _model()
    X0 = np.array([[0.0, 0.1], [0.1, 0.0], [0.9, 0.9], [-0.1, 0.0]])
    cost = cp.TrajectoryCost(Q=0.0, R=0.1, running=_fragile_running)
    with pytest.raises(ParallelError, match="problem 2") as info:
        cp.optimize_trajectory(model, X0, 5, cost, bounds=(-1, 1), independent=True,
                               maxiter=20, executor=executor, chunk_size=2)
    err = info.value
    assert [list(p) for p, _ in err.failed] == [[2]]
    assert "the model left its data" in str(err)
    assert err.results[1] is None and err.results[0] is not None
    # the kept chunk is the serial answer for its trajectories
    alone = cp.optimize_trajectory(model, X0[:2], 5, cost, bounds=(-1, 1), independent=True,
                                   maxiter=20)
    kept = err.results[0]
    assert kept.problems == range(0, 2) and kept.all_controls.shape == (2, 1, 5, 1)
    assert np.array_equal(kept.all_controls[:, 0], alone.controls)


class _DiesAtReset:
    """A pendulum environment whose process ends abruptly (a worker crash) when it is
    reset with one seed."""

    def __init__(self, seed):
        self.inner, self.seed = cp.Pendulum().env(), seed
        self.action_space = self.inner.action_space
        self.observation_space = self.inner.observation_space

    def reset(self, seed=None, options=None):
        if seed == self.seed:
            os._exit(3)
        return self.inner.reset(seed=seed)

    def step(self, action):
        return self.inner.step(action)


def test_a_worker_dying_mid_run_surfaces_as_a_clear_error_with_the_data_kept(dask_executor):
    from ctrlprop.core.environment import episode_seed
    env = _DiesAtReset(episode_seed(0, 1))
    with pytest.raises(cp.CollectError, match="tasks failed") as info:
        cp.evaluate(env, None, episodes=6, seed=0, episode_steps=20,
                    executor=dask_executor, chunk_size=2)
    err = info.value
    assert "episodes 0..1" in str(err)
    # the tasks that survived give their episodes 2..5, 20 steps each
    assert len(err.data) == 4 * 20 and err.data.n_episodes == 4
    # and they are the serial run's episodes 2..5
    full = cp.evaluate(cp.Pendulum().env(), None, episodes=6, seed=0, episode_steps=20)
    assert np.array_equal(err.data.obs, full.data.obs[40:])


def test_run_tasks_serial_raises_at_once_and_parallel_collects(pool):
    with pytest.raises(ZeroDivisionError):
        run_tasks(None, _divide, [(1, 1), (1, 0)], [range(0, 1), range(1, 2)], "x")
    with pytest.raises(ParallelError, match="problem 1") as info:
        run_tasks(pool, _divide, [(1, 1), (1, 0), (4, 2)],
                  [range(0, 1), range(1, 2), range(2, 3)], "x")
    assert info.value.results == [1.0, None, 2.0]


def _divide(a, b):
    return a / b


# ---------------------------------------------------------------- bad input
def test_bad_executor_arguments_raise_naming_them(pool):
    net, T = _ik_batch(4)
    with pytest.raises(TypeError, match="executor must be None or a concurrent.futures"):
        cp.optimize_controls(net, T, executor="dask")
    with pytest.raises(ValueError, match="chunk_size must be a positive integer"):
        cp.optimize_controls(net, T, chunk_size=0)
    with pytest.raises(ValueError, match="callback cannot be combined with executor"):
        cp.optimize_controls(net, T, executor=pool, callback=lambda r: None)
    model = _model()
    with pytest.raises(ValueError, match="independent=True"):
        cp.optimize_trajectory(model, np.zeros((2, 2)), 4, executor=pool)
    with pytest.raises(TypeError, match="executor must be None"):
        cp.evaluate(cp.Pendulum().env(), None, episodes=2, executor=object())
    with pytest.raises(TypeError, match="executor must be None"):
        cp.learn_and_plan(cp.Pendulum().env(), {"Q": 1.0}, executor=4)
    with pytest.raises(cp.CollectError, match="2 of 2 tasks failed.*pickle"):
        cp.evaluate(cp.Pendulum().env(), lambda obs: np.zeros(1), episodes=2, executor=pool,
                    chunk_size=1)


def test_bad_method_settings_raise_before_any_task_is_sent(pool):
    net, T = _ik_batch(6)
    with pytest.raises(ValueError, match="does not handle bounds"):
        cp.optimize_controls(net, T, bounds=(-1, 1), method="BFGS", executor=pool)
    with pytest.raises(ValueError, match="unknown batch-lm option"):
        cp.optimize_controls(net, T, options={"tol": 1}, executor=pool)
    model = _model()
    with pytest.raises(ValueError, match="for method 'batch-lbfgs'"):
        cp.optimize_trajectory(model, np.zeros((2, 2)), 4, method="batch-lbfgs",
                               options={"foo": 1}, executor=pool)
    with pytest.raises(ValueError, match="does not handle bounds"):
        cp.optimize_trajectory(model, np.zeros((2, 2)), 4, method="BFGS", bounds=(-1, 1),
                               independent=True, executor=pool)
    with pytest.raises(ValueError, match="chunk_size must be a positive integer"):
        cp.evaluate(cp.Pendulum().env(), None, episodes=2, chunk_size=0)


@pytest.mark.filterwarnings("ignore::ctrlprop.ConvergenceWarning")
def test_a_callback_stop_in_serial_chunks_keeps_the_rest_at_their_starts():
    net, T = _ik_batch(10)
    stop = cp.optimize_controls(net, T, bounds=(-1, 1), chunk_size=4,
                                callback=lambda r: r.nit >= 2)
    assert np.all(stop.status[4:] == 2) and np.array_equal(stop.controls[4:],
                                                            stop.starts[4:, 0])
    # the history after the stop adds the skipped problems' E at their starts
    first = cp.optimize_controls(net, T[:4], bounds=(-1, 1), maxiter=2)
    at_start = cp.ControlObjective(net, T[4:]).per_problem(stop.starts[4:, 0],
                                                             grad=False)[0].sum()
    assert stop.history["fun"][-1] == pytest.approx(first.history["fun"][-1] + at_start,
                                                    rel=1e-12)
    model = _model()
    X0 = np.random.default_rng(0).uniform(-0.5, 0.5, (5, 2))
    r = cp.optimize_trajectory(model, X0, 5, dict(Q=1.0, R=0.1), bounds=(-1, 1),
                               independent=True, callback=lambda r: True)
    assert np.all(r.status == 2)                     # one stop ends every run


def test_serial_chunks_report_their_problems_to_the_callback():
    net, T = _ik_batch(10)
    seen = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cp.ConvergenceWarning)
        cp.optimize_controls(net, T, bounds=(-1, 1), chunk_size=4,
                             callback=lambda r: seen.append((r.problems, r.x.shape)))
    assert {p for p, _ in seen} == {range(0, 4), range(4, 8), range(8, 10)}
    assert all(shape == (len(p), 1, 4) for p, shape in seen)
