"""Environments as plants: the protocol, Transitions, collect/evaluate, mpc and closed_loop
on environments, fit_dynamics and learn_and_plan (README, "Environments")."""

import concurrent.futures
import pickle

import numpy as np
import pytest

import ctrlprop as cp
from ctrlprop.core.environment import Environment, episode_seed


class LinearEnv:
    """x' = A x + B u with reward -|x'|^2 - 0.1 |u|^2, a start drawn from the seed,
    truncation after ``horizon`` steps, termination when |x| > ``limit``, and a failure
    (RuntimeError) at step ``fail_at`` of the environment's life when set."""

    def __init__(self, horizon=20, limit=np.inf, fail_at=None):
        self.A = np.array([[1.0, 0.1], [0.0, 1.0]])
        self.B = np.array([[0.0], [0.1]])
        self.action_space = cp.Box([-1.0], [1.0])
        self.observation_space = cp.Box([-np.inf] * 2, [np.inf] * 2)
        self.horizon, self.limit, self.fail_at = horizon, limit, fail_at
        self.life = 0

    def reset(self, seed=None, options=None):
        self.x = np.random.default_rng(seed).uniform(-1, 1, 2)
        self.t = 0
        return self.x.copy(), {}

    def step(self, a):
        self.life += 1
        if self.fail_at is not None and self.life >= self.fail_at:
            raise RuntimeError("simulator crashed")
        a = np.asarray(a, float)
        self.x = self.A @ self.x + self.B @ a
        self.t += 1
        r = -float(self.x @ self.x) - 0.1 * float(a @ a)
        term = bool(np.abs(self.x).max() > self.limit)
        return self.x.copy(), r, term, self.t >= self.horizon and not term, {}


def linear_model():
    """The exact model of LinearEnv: a linear network fitted (linear least squares) to it."""
    env = LinearEnv()
    X = np.random.default_rng(0).uniform(-1, 1, (20, 3))
    net = cp.Network.mlp([3, 2], hidden="linear")
    cp.fit(net, X, X[:, :2] @ env.A.T + X[:, 2:] @ env.B.T, method="lm")
    model = cp.Dynamics(net, 2)
    x, u = np.array([0.3, -0.2]), np.array([0.5])
    np.testing.assert_allclose(model.step(x, u), env.A @ x + env.B @ u, atol=1e-12)
    return model


# ---------------------------------------------------------------- protocol
def test_the_protocol_is_duck_typed_and_checked():
    assert cp.is_environment(LinearEnv()) and cp.is_environment(cp.Pendulum().env())
    assert not cp.is_environment(lambda x, u: x)
    with pytest.raises(TypeError, match="gymnasium interface"):
        Environment(object())

    class Bad(LinearEnv):
        def step(self, a):
            return np.zeros(3), 0.0, False, False, {}
    e = Environment(Bad())
    e.reset(0)
    with pytest.raises(ValueError, match=r"shape \(3,\).*expected \(2,\)"):
        e.step(np.zeros(1), 4)


def test_box():
    b = cp.Box([-1, 0], [1, 2])
    assert b.contains([0, 1]) and not b.contains([0, 3]) and not b.contains([0])
    assert b.contains(b.sample(0))
    with pytest.raises(ValueError, match="low <= high"):
        cp.Box([1.0], [0.0])
    with pytest.raises(ValueError, match="unbounded"):
        cp.Box([-np.inf], [0.0]).sample(0)


def test_plant_env_follows_the_plant():
    p = cp.Pendulum()
    env = p.env(max_steps=3)
    x0, _ = env.reset(seed=5)
    np.testing.assert_array_equal(x0, p.sample_starts(1, 5)[0])
    x1, r, term, trunc, _ = env.step([0.7])
    np.testing.assert_array_equal(x1, p.step(x0, [0.7]))
    th = cp.wrap_angle(x0[0])
    assert r == pytest.approx(-(th ** 2 + 0.1 * x0[1] ** 2 + 0.001 * 0.49), rel=1e-12)
    env.step([0.0])
    assert env.step([0.0])[3] is True                     # truncated at max_steps
    with pytest.raises(ValueError, match="outside its limits"):
        env.step([3.0])                                   # nothing clipped silently


# ---------------------------------------------------------------- Transitions
def test_transitions_concatenate_save_load(tmp_path):
    a = cp.collect(LinearEnv(horizon=4), 10, seed=0)
    b = cp.collect(LinearEnv(horizon=4), 6, seed=1)
    assert len(a) == 10 and a.n_episodes == 3 and list(a.episode) == [0] * 4 + [1] * 4 + [2] * 2
    c = a + b
    assert len(c) == 16 and list(c.episode_ids()) == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(c.obs[10:], b.obs)
    c.save(tmp_path / "t.npz")
    assert cp.Transitions.load(tmp_path / "t.npz") == c
    X, Y = c.training_pairs()
    np.testing.assert_array_equal(Y, c.next_obs - c.obs)
    np.testing.assert_array_equal(X, np.hstack([c.obs, c.actions]))
    np.testing.assert_allclose(a.returns(), [a.rewards[a.episode == i].sum() for i in range(3)])
    with pytest.raises(ValueError, match="not a ctrlprop.Transitions file"):
        cp.save(cp.Network.mlp([2, 2]), tmp_path / "n.npz") or \
            cp.Transitions.load(tmp_path / "n.npz")
    with pytest.raises(ValueError, match="non-decreasing"):
        cp.Transitions(c.obs, c.actions, c.next_obs, c.rewards, c.terminated, c.truncated,
                       c.episode[::-1])
    with pytest.raises(ValueError, match="terminated must be a bool array"):
        cp.Transitions(c.obs, c.actions, c.next_obs, c.rewards, c.rewards, c.truncated,
                       c.episode)
    with pytest.raises(ValueError, match="different sizes"):
        cp.Transitions.concatenate([a, cp.Transitions.empty(3, 1)])
    assert not a.obs.flags.writeable


# ---------------------------------------------------------------- collect / evaluate
def test_collect_is_seeded_per_episode():
    env = LinearEnv(horizon=5)
    a = cp.collect(env, 12, seed=3)
    b = cp.collect(env, 7, seed=3)                       # a prefix of the same run
    np.testing.assert_array_equal(a.obs[:7], b.obs)
    np.testing.assert_array_equal(a.actions[:7], b.actions)
    assert not np.array_equal(a.obs, cp.collect(env, 12, seed=4).obs)
    # episode 1 starts from the reset seed derived from (seed, 1)
    x0, _ = LinearEnv().reset(seed=episode_seed(3, 1))
    np.testing.assert_array_equal(a.obs[5], x0)
    assert a.truncated[[4, 9]].all() and a.truncated.sum() == 2
    assert np.all(np.abs(a.actions) <= 1)
    cut = cp.collect(env, 12, seed=3, episode_steps=3)
    assert list(cut.truncated.nonzero()[0]) == [2, 5, 8, 11]


def test_collect_keeps_the_data_when_the_environment_fails():
    with pytest.raises(cp.CollectError, match="after 6 transitions") as err:
        cp.collect(LinearEnv(horizon=4, fail_at=7), 20, seed=0)
    d = err.value.data
    assert len(d) == 6 and d.n_episodes == 2
    np.testing.assert_array_equal(d.obs, cp.collect(LinearEnv(horizon=4), 6, seed=0).obs)


def test_policies_controller_callable_planner():
    env = LinearEnv(horizon=6)
    ctrl = cp.Network.mlp([2, 1], hidden="linear")
    ctrl.weights = np.array([-0.5, -1.0, 0.0])
    d = cp.collect(env, 6, ctrl, seed=0)
    np.testing.assert_allclose(d.actions, ctrl.forward(d.obs), atol=1e-15)
    resets = []

    class Pol:
        def reset(self):
            resets.append(1)

        def __call__(self, obs):
            return -0.3 * obs[1:]
    cp.collect(env, 12, Pol(), seed=0)
    assert len(resets) == 2
    planner = cp.Planner(linear_model(), 5, dict(Q=1.0, R=0.1), bounds=(-1, 1), maxiter=30)
    ev = cp.evaluate(env, planner, episodes=3, seed=1)
    rand = cp.evaluate(env, None, episodes=3, seed=1)
    assert ev.returns.shape == (3,) and np.all(ev.lengths == 6)
    assert ev.mean_return > rand.mean_return               # planning beats random actions
    with pytest.raises(ValueError, match="2 inputs"):
        cp.collect(env, 5, cp.Network.mlp([3, 1]))
    with pytest.raises(TypeError, match="policy must be"):
        cp.collect(env, 5, "greedy")


# ---------------------------------------------------------------- mpc / closed_loop
def test_planner_step_reports_its_plans_cost_and_prediction():
    """fun and predicted of a step are the model's cost and first state of the plan it
    returns (fun comes from the solver, not from a second evaluation: they must agree)."""
    model = linear_model()
    cost = cp.TrajectoryCost(goal=[1.0, 0.0], Q=1.0, R=0.1)
    planner = cp.Planner(model, 5, cost, bounds=(-1, 1), maxiter=3, method="L-BFGS-B")
    x = np.array([0.3, -0.2])
    for _ in range(3):
        step = planner.plan(x)
        J = cp.TrajectoryObjective(model, x, 5, cost).value(step.plan.ravel())
        assert step.fun == pytest.approx(J, rel=1e-13)
        np.testing.assert_allclose(step.predicted, model.step(x, step.plan[0]), rtol=1e-13)
        x = step.predicted


def test_mpc_on_an_environment_records_rewards_and_stops_at_termination():
    model = linear_model()
    run = cp.mpc(model, LinearEnv(horizon=50), None, 100, 5, dict(Q=1.0, R=0.1), seed=2)
    assert run.steps_done == 50 and run.truncated and not run.terminated and run.success
    assert run.episode_return == pytest.approx(run.rewards.sum())
    x = run.states
    np.testing.assert_allclose(run.rewards, -(x[1:] ** 2).sum(1) - 0.1 * (run.controls ** 2).sum(1),
                               rtol=1e-12)
    assert np.all(np.abs(run.controls) <= 1 + 1e-12)      # bounds default to the action space
    np.testing.assert_allclose(run.prediction_error, 0, atol=1e-10)   # the exact model
    # the same loop as on the plant callable from the same start
    env = LinearEnv()
    ref = cp.mpc(model, lambda x, u: env.A @ x + env.B @ u, x[0], 50, 5,
                 dict(Q=1.0, R=0.1), bounds=(-1, 1))
    np.testing.assert_allclose(ref.states, run.states, atol=1e-12)
    # termination ends the loop early: push the state out with a cost rewarding it
    away = cp.mpc(model, LinearEnv(horizon=50, limit=1.5), None, 100, 5,
                  dict(goal=[5.0, 0.0], R=0.0), seed=2)
    assert away.terminated and away.steps_done < 50 and "terminated" in away.message
    with pytest.raises(ValueError, match="x0=None"):
        cp.mpc(model, LinearEnv(), [0.0, 0.0], 5, 3)
    with pytest.raises(ValueError, match="seed= resets an environment"):
        cp.mpc(model, lambda x, u: x, [0.0, 0.0], 5, 3, seed=1)


def test_mpc_error_on_an_environment_keeps_the_record():
    with pytest.raises(cp.MPCError) as err:
        class Nan(LinearEnv):
            def step(self, a):
                out = super().step(a)
                return (out[0] * np.nan if self.t == 3 else out[0]), *out[1:]
        cp.mpc(linear_model(), Nan(), None, 10, 3, seed=0)
    assert err.value.result.steps_done == 2


def test_closed_loop_on_an_environment():
    ctrl = cp.Network.mlp([2, 1], hidden="linear")
    ctrl.weights = np.array([-0.5, -1.0, 0.0])
    run = cp.closed_loop(ctrl, LinearEnv(horizon=8, limit=2.0), None, 20, seed=4)
    d = cp.collect(LinearEnv(horizon=8), 8, ctrl, seed=0)
    assert run.steps == 8 and run.truncated and run.rewards.shape == (20,)
    assert np.all(np.isnan(run.controls[8:])) and np.all(run.rewards[8:] == 0)
    np.testing.assert_array_equal(run.states[0], LinearEnv().reset(seed=4)[0])
    assert run.episode_return == pytest.approx(run.rewards[:8].sum())
    assert d.rewards.shape == (8,)
    with pytest.raises(ValueError, match="x0=None"):
        cp.closed_loop(ctrl, LinearEnv(), [0.0, 0.0], 5)


# ---------------------------------------------------------------- fit_dynamics
def test_fit_dynamics_learns_a_linear_system_and_reports_held_out_errors():
    data = cp.collect(LinearEnv(horizon=25), 200, seed=0)
    model = cp.fit_dynamics(data, hidden=(4,), transfer="linear", residual=True, seed=0,
                            horizon=5)
    rep = model.report
    assert rep.n_validation + rep.n_train == 200 and 0 < rep.n_validation < 100
    # whole blocks of `horizon` (5) consecutive steps of an episode are held out
    v = rep.validation_rows.reshape(40, 5)
    assert np.all(v.all(axis=1) | ~v.any(axis=1))
    assert rep.one_step_rmse.shape == (2,) and rep.multi_step_rmse.shape == (5, 2)
    assert np.all(rep.one_step_rmse < 1e-5) and np.all(rep.multi_step_rmse < 1e-4)
    env = LinearEnv()
    x, u = np.array([0.4, -0.7]), np.array([0.3])
    np.testing.assert_allclose(model.step(x, u), env.A @ x + env.B @ u, atol=1e-5)
    # warm start: the given model is not changed, the new one starts from its weights
    w = model.net.weights.copy()
    more = cp.fit_dynamics(data, model=model, maxiter=1, seed=1)
    np.testing.assert_array_equal(model.net.weights, w)
    assert more.residual and more.net is not model.net
    # the same rows stay held out as the data grows (a warm-started refit is never
    # validated on rows it was trained on), and the new episodes are validated on too
    grown = data + cp.collect(LinearEnv(horizon=25), 300, seed=1)
    again = cp.fit_dynamics(grown, model=model, maxiter=1, seed=0, horizon=5)
    np.testing.assert_array_equal(again.report.validation_rows[:200], rep.validation_rows)
    assert again.report.validation_rows[200:].any()
    with pytest.raises(TypeError, match="Transitions"):
        cp.fit_dynamics(np.zeros((5, 3)))
    with pytest.raises(ValueError, match="validation"):
        cp.fit_dynamics(data, validation=1.0)
    with pytest.raises(ValueError, match="observations"):
        cp.fit_dynamics(data, model=cp.Dynamics(cp.Network.mlp([4, 3]), 3))


def test_multi_step_error_grows_for_a_wrong_model():
    data = cp.collect(LinearEnv(horizon=25), 100, seed=0)
    wrong = cp.Dynamics(cp.Network.mlp([3, 2], hidden="linear"), 2, residual=True)
    wrong.net.weights = np.array([0.0, 0.05, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])[:wrong.net.n_weights]
    err = cp.planning.learning.prediction_errors(wrong, data, horizon=6)
    assert err.windows == 4 * 20
    assert np.all(np.diff(err.multi_step_rmse[:, 0]) > 0)


# ---------------------------------------------------------------- learn_and_plan
def test_learn_and_plan_improves_resumes_and_keeps_data(tmp_path):
    env = LinearEnv(horizon=20)
    kw = dict(iterations=1, steps_per_iteration=40, horizon=5, warmup=60, eval_episodes=2,
              fit=dict(hidden=(4,), transfer="linear"), plan=dict(maxiter=20))
    res = cp.learn_and_plan(env, dict(Q=1.0, R=0.1), seed=0, checkpoint=tmp_path / "d.npz",
                            **kw)
    assert list(res.steps) == [60, 100] and res.returns.shape == (2,) and res.success
    assert len(res.data) == 100 and cp.Transitions.load(tmp_path / "d.npz") == res.data
    rand = cp.evaluate(env, None, 2, seed=cp.planning.learning._sub_seed(0, 1))
    assert res.returns[-1] > rand.mean_return
    for key in ("fun", "return", "steps", "one_step_rmse", "fit_time", "ms_per_step"):
        assert res.history[key].shape == (2,)
    assert res.fun == -res.returns[-1] and res.nfev == 100 + 2 * 2 * 20   # + evaluation
    for key in ("x", "fun", "success", "status", "message", "nit", "nfev", "history"):
        assert key in res
    back = pickle.loads(pickle.dumps(res))
    np.testing.assert_array_equal(back.returns, res.returns)
    # resumed from its data: no warm-up, steps go on from there
    more = cp.learn_and_plan(env, dict(Q=1.0, R=0.1), seed=1, data=res.data, model=res.model,
                             **kw)
    assert list(more.steps) == [100, 140]
    # a failure part-way keeps every transition recorded: the simulator's step 115 is the
    # 15th of round 1 (after 60 warm-up and 2 x 20 evaluation steps)
    with pytest.raises(cp.LearnError, match="round 1") as err:
        cp.learn_and_plan(LinearEnv(horizon=20, fail_at=115), dict(Q=1.0, R=0.1), **kw)
    kept = err.value.result
    assert len(kept.data) == 74 and kept.model is not None and kept.returns.shape == (1,)
    np.testing.assert_array_equal(kept.data.obs[:60], res.data.obs[:60])
    stop = cp.learn_and_plan(env, dict(Q=1.0, R=0.1), callback=lambda r: True, **kw)
    assert stop.status == 2 and stop.returns.shape == (1,)
    with pytest.raises(ValueError, match="plan= must not set"):
        cp.learn_and_plan(env, None, plan=dict(horizon=3), **{k: v for k, v in kw.items()
                                                             if k != "plan"})



def test_learn_and_plan_scores_the_collected_episodes():
    # eval_episodes=0: model k is scored by the whole episodes it collects in round k + 1
    kw = dict(iterations=2, steps_per_iteration=50, horizon=5, warmup=60,
              fit=dict(hidden=(4,), transfer="linear"), plan=dict(maxiter=20))
    res = cp.learn_and_plan(LinearEnv(horizon=20), dict(Q=1.0, R=0.1), seed=0,
                            eval_episodes=0, **kw)
    ref = cp.learn_and_plan(LinearEnv(horizon=20), dict(Q=1.0, R=0.1), seed=0,
                            eval_episodes=1, **kw)
    # scoring does not change what is collected: the same transitions as with evaluations
    assert res.data == ref.data and len(res.data) == 160 and res.success
    assert list(res.steps) == [110, 160] and res.returns.shape == (2,)
    assert res.nit == 2 and res.nfev == 160 and "completed 2 rounds" in res.message
    # each round is 20 + 20 steps of whole episodes and a 10-step piece, not scored
    for k, start in enumerate((60, 110)):
        whole = [res.data.rewards[a:a + 20].sum() for a in (start, start + 20)]
        assert res.evaluations[k].lengths.tolist() == [20, 20]
        np.testing.assert_allclose(res.evaluations[k].returns, whole, rtol=1e-12)
        assert res.returns[k] == pytest.approx(np.mean(whole), rel=1e-12)
        assert res.returns_std[k] == pytest.approx(np.std(whole), rel=1e-12)
        assert res.evaluations[k].policy_ms == res.history["ms_per_step"][k] > 0
    assert res.fun == -res.returns[-1]
    np.testing.assert_array_equal(res.history["one_step_rmse"], ref.history["one_step_rmse"][:2])
    assert res.history["eval_time"][0] == res.history["act_time"][1]   # round 1's collection
    assert np.all(res.history["ms_per_step"] > 0) and res.history["fit_time"].shape == (2,)
    stop = cp.learn_and_plan(LinearEnv(horizon=20), dict(Q=1.0, R=0.1), seed=0,
                             eval_episodes=0, callback=lambda r: r.iteration == 0, **kw)
    assert stop.status == 2 and stop.returns.shape == (1,) and len(stop.data) == 110
    # a round that cannot hold a whole episode: up front when the length is known ...
    with pytest.raises(ValueError, match="steps_per_iteration \\(50\\) must hold one"):
        cp.learn_and_plan(LinearEnv(horizon=20), None, eval_episodes=0, episode_steps=80,
                          **kw)
    with concurrent.futures.ThreadPoolExecutor(1) as ex, \
            pytest.raises(ValueError, match="eval_episodes=0 has none"):
        cp.learn_and_plan(LinearEnv(horizon=20), None, eval_episodes=0, executor=ex, **kw)
    # ... else when the round has collected none, with the data kept
    with pytest.raises(cp.LearnError, match="no whole episode") as err:
        cp.learn_and_plan(LinearEnv(horizon=100), dict(Q=1.0, R=0.1), eval_episodes=0, **kw)
    assert len(err.value.result.data) == 110


def test_planner_counts_its_calls_and_time():
    env = LinearEnv(horizon=20)
    model = cp.fit_dynamics(cp.collect(env, 60, seed=0), hidden=(4,), transfer="linear")
    pl = cp.Planner(model, 4, dict(Q=1.0, R=0.1), maxiter=5, replan_every=2)
    assert (pl.calls, pl.seconds) == (0, 0.0)
    steps = [pl.plan(np.array([0.5, -0.2])) for _ in range(5)]
    assert pl.calls == 5 and [s.replanned for s in steps] == [True, False] * 2 + [True]
    assert pl.seconds == pytest.approx(sum(s.time for s in steps), rel=1e-12)

def test_mpc_on_mujoco_inverted_pendulum():
    gym = pytest.importorskip("gymnasium")
    env = gym.make("InvertedPendulum-v5")
    data = cp.collect(env, 300, seed=0)
    assert data.terminated.any()                           # random actions fall over
    model = cp.fit_dynamics(data, hidden=(32,), maxiter=200, seed=0)
    assert np.all(model.report.one_step_rmse < 0.1)
    run = cp.mpc(model, env, None, 60, 10, dict(Q=[1.0, 10.0, 0.1, 0.1], R=0.01), seed=1,
                 maxiter=10)
    assert run.rewards.shape == (run.steps_done,) and np.all(np.abs(run.controls) <= 3)
    assert run.episode_return == run.steps_done            # +1 per step alive


def test_planner_plant_env_and_transitions_pickle():
    planner = cp.Planner(linear_model(), 5, dict(Q=1.0, R=0.1), bounds=(-1, 1))
    back = pickle.loads(pickle.dumps(planner))
    x = np.array([0.3, -0.4])
    np.testing.assert_array_equal(back.plan(x).plan, planner.plan(x).plan)
    env = pickle.loads(pickle.dumps(cp.Pendulum().env(max_steps=4)))
    d = cp.collect(env, 6, seed=2)
    assert pickle.loads(pickle.dumps(d)) == d and d == cp.collect(cp.Pendulum().env(max_steps=4),
                                                                  6, seed=2)


def test_learn_and_plan_with_an_ensemble_and_cem():
    env = LinearEnv(horizon=20)
    kw = dict(iterations=1, steps_per_iteration=40, horizon=5, warmup=60, eval_episodes=2,
              fit=dict(hidden=(4,), transfer="linear", ensemble=3))
    res = cp.learn_and_plan(env, dict(Q=1.0, R=0.1), seed=0,
                            plan=dict(method="cem", maxiter=3,
                                      options=dict(population=32, elites=6)), **kw)
    assert res.model.is_ensemble and res.model.n_members == 3      # kept over the refit
    rand = cp.evaluate(env, None, 2, seed=cp.planning.learning._sub_seed(0, 1))
    assert res.returns[-1] > rand.mean_return
    # planning in float32 (the fitted models stay float64): the same loop, to rounding
    r32 = cp.learn_and_plan(env, dict(Q=1.0, R=0.1), seed=0,
                            plan=dict(method="cem", maxiter=3, dtype=np.float32,
                                      options=dict(population=32, elites=6)), **kw)
    assert r32.model.dtype == np.float64
    np.testing.assert_allclose(r32.returns, res.returns, rtol=1e-3)
    # a plan an ensemble cannot use is refused before anything is collected
    with pytest.raises(ValueError, match="ensemble"):
        cp.learn_and_plan(env, dict(Q=1.0, R=0.1), seed=0, plan=dict(method="ilqr"), **kw)
