"""ctrlprop.envs: task rewards, terminations and costs against the real gymnasium envs.

Needs the ``gym`` extra (gymnasium with MuJoCo); skipped without it.
"""

import pickle
import subprocess
import sys

import numpy as np
import pytest

gymnasium = pytest.importorskip("gymnasium")
pytest.importorskip("mujoco")

from ctrlprop import TrajectoryCost  # noqa: E402
from ctrlprop.envs import TASKS, Task, make, task  # noqa: E402
from ctrlprop.envs.tasks import TaskCost  # noqa: E402

IDS = list(TASKS)
EXACT = ["Pendulum-v1", "InvertedPendulum-v5", "Reacher-v5"]
TERMINATING = ["InvertedPendulum-v5", "InvertedDoublePendulum-v5", "Hopper-v5"]
N_STEPS = 1000


# ---------------------------------------------------------------------- recordings
_RECORDS = {}


def record(env_id, n=N_STEPS, seed=0):
    """Transitions of the real env under seeded random actions (reset on episode end).

    Returns a dict of arrays: obs, action, next_obs (as the env returns them), reward,
    terminated, episode (an episode counter), and for Pendulum obs64 (the observation
    rebuilt from the env's float64 state before the step).
    """
    key = (env_id, n, seed)
    if key in _RECORDS:
        return _RECORDS[key]
    env = gymnasium.make(env_id)
    rng = np.random.default_rng(seed)
    lo, hi = env.action_space.low.astype(float), env.action_space.high.astype(float)
    if env_id == "Pendulum-v1":      # actions beyond the bounds: the reward clips them
        lo, hi = 2 * lo, 2 * hi
    rec = {k: [] for k in ("obs", "action", "next_obs", "reward", "terminated", "episode",
                           "obs64")}
    obs, _ = env.reset(seed=seed)
    ep = 0
    for i in range(n):
        a = rng.uniform(lo, hi)
        if env_id == "Pendulum-v1":
            th, thdot = env.unwrapped.state
            rec["obs64"].append([np.cos(th), np.sin(th), thdot])
        nxt, r, term, trunc, _ = env.step(a)
        for k, v in (("obs", obs), ("action", a), ("next_obs", nxt), ("reward", r),
                     ("terminated", term), ("episode", ep)):
            rec[k].append(v)
        obs = nxt
        if term or trunc:
            obs, _ = env.reset(seed=seed + i + 1)
            ep += 1
    env.close()
    out = {k: np.array(v) for k, v in rec.items()}
    _RECORDS[key] = out
    return out


# ---------------------------------------------------------------------- random points
def sample_obs(env_id, rng, size):
    """Random observations (size, n_obs) in the task's domain, away from its kinks/jumps
    (where a central difference would straddle a discontinuity), cos/sin pairs consistent."""
    t = task(env_id)
    o = rng.normal(size=(size, t.n_obs))

    def away(edges, margin, lo, hi):
        """Uniform in (lo, hi) but at least ``margin`` from each edge (resampled)."""
        v = rng.uniform(lo, hi, size)
        for _ in range(100):
            bad = np.zeros(size, bool)
            for e in edges:
                bad |= np.abs(v - e) < margin
            if not bad.any():
                return v
            v[bad] = rng.uniform(lo, hi, bad.sum())
        raise RuntimeError("sampling failed")

    if env_id == "Pendulum-v1":
        th = rng.uniform(-3.0, 3.0, size)          # not at the +-pi kink
        o[:, 0], o[:, 1], o[:, 2] = np.cos(th), np.sin(th), rng.uniform(-8, 8, size)
    elif env_id == "InvertedPendulum-v5":
        o[:, 1] = away((-0.2, 0.2), 1e-3, -0.4, 0.4)
    elif env_id == "InvertedDoublePendulum-v5":
        for _ in range(100):
            q1, q2 = rng.uniform(-0.8, 0.8, size), rng.uniform(-1.0, 1.0, size)
            y = 0.6 * np.cos(q1) + 0.6 * np.cos(q1 + q2)
            if np.all(np.abs(y - 1.0) > 1e-3):
                break
        o[:, 1], o[:, 2], o[:, 3], o[:, 4] = np.sin(q1), np.sin(q2), np.cos(q1), np.cos(q2)
        o[:, 5:8] = rng.uniform(-10, 10, (size, 3))
    elif env_id == "Reacher-v5":
        q = rng.uniform(-np.pi, np.pi, (size, 2))
        o[:, 0:2], o[:, 2:4] = np.cos(q), np.sin(q)
        o[:, 8:10] = rng.uniform(-0.3, 0.3, (size, 2))   # a zero distance has prob. 0
    elif env_id == "Hopper-v5":
        o[:, 0] = away((0.7, 1.25), 1e-3, 0.5, 1.6)
        o[:, 1] = away((-0.2, 0.2), 1e-3, -0.4, 0.4)
        o[:, 5:] = rng.uniform(-10, 10, (size, 6))
    return o


def sample_action(env_id, rng, size):
    """Random actions (size, n_act), partly beyond the bounds (not within 1e-3 of them)."""
    t = task(env_id)
    lo, hi = t.action_low, t.action_high
    a = rng.uniform(1.5 * lo, 1.5 * hi, (size, t.n_act))
    near = (np.abs(a - lo) < 1e-3) | (np.abs(a - hi) < 1e-3)
    a[near] = 0.0
    return a


# ---------------------------------------------------------------------- the registry
def test_registry_and_spaces():
    """Every task matches its env's spaces and time step."""
    assert IDS == ["Pendulum-v1", "InvertedPendulum-v5", "InvertedDoublePendulum-v5",
                   "Reacher-v5", "HalfCheetah-v5", "Swimmer-v5", "Hopper-v5"]
    for env_id, t in TASKS.items():
        assert isinstance(t, Task) and task(env_id) is t and t.env_id == env_id
        env = make(env_id)
        assert env.spec.id == env_id
        assert env.observation_space.shape == (t.n_obs,) == (len(t.obs_labels),)
        assert env.action_space.shape == (t.n_act,)
        np.testing.assert_array_equal(env.action_space.low, t.action_low)
        np.testing.assert_array_equal(env.action_space.high, t.action_high)
        assert env.unwrapped.dt == pytest.approx(t.dt, rel=1e-12)
        assert t.terminates == (env_id in TERMINATING)
        assert (t.termination_weight is not None) == (env_id in TERMINATING)
        env.close()


def test_no_gymnasium_import():
    """Importing ctrlprop and ctrlprop.envs (and using a task) does not import gymnasium."""
    code = ("import sys, ctrlprop, ctrlprop.envs as e; "
            "e.task('Hopper-v5').cost(); e.TASKS['Pendulum-v1'].reward([1, 0, 0], [0], [1, 0, 0]); "
            "sys.exit(1 if 'gymnasium' in sys.modules or 'mujoco' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# ---------------------------------------------------------------------- 1. rewards
@pytest.mark.parametrize("env_id", EXACT)
def test_reward_exact(env_id):
    """Exact tasks: the reward of the recorded transitions equals the env's to round-off."""
    d = record(env_id)
    t = task(env_id)
    obs = d["obs64"] if env_id == "Pendulum-v1" else d["obs"]
    np.testing.assert_allclose(t.reward(obs, d["action"], d["next_obs"]), d["reward"],
                               rtol=1e-10, atol=1e-10)
    if env_id == "Pendulum-v1":
        # the clipping was exercised, and the reward depends on it
        assert np.any(np.abs(d["action"]) > 2.5)
        raw = -(np.arctan2(obs[:, 1], obs[:, 0]) ** 2 + 0.1 * obs[:, 2] ** 2
                + 0.001 * d["action"][:, 0] ** 2)
        assert np.abs(raw - d["reward"]).max() > 1e-3
        # the env's own float32 observation: float32 round-off of cos, sin (theta off by
        # <= ~1.2e-7: 2 pi 1.2e-7 = 7.5e-7) and of thdot (half an ulp at |thdot| < 8: 2.4e-7,
        # times 0.2 * 8) moves the reward by <= ~1.1e-6  [measured 3.8e-7]
        err = np.abs(t.reward(d["obs"], d["action"], d["next_obs"]) - d["reward"])
        assert err.max() < 1.5e-6


# proxies: (min correlation, max abs error, max RMS error) with the env's reward.  Measured
# on these recordings (N_STEPS random-action steps, seed 0; in brackets) with a ~20% margin,
# except the InvertedDoublePendulum max, which comes from the physics.
PROXY = {
    # gym's tip is from the last RK4 stage, ours from the final qpos: <= ~1e-4 m apart away
    # from the rail limits (up to ~6e-4 at |x_cart| = 1, not in this recording), times
    # |d r / d y_tip| = 2 |y_tip - 2| <= 6.4  [corr 1 - 1e-10, max 1.7e-4, RMS 1.9e-5]
    "InvertedDoublePendulum-v5": (0.999999, 1e-3, 5e-5),
    # the x velocity averaged over 5 Euler sub-steps vs 0.4 v0 + 0.6 v1; contacts and random
    # torques make it far from linear within a step  [0.983, 0.53, 0.118; reward std 0.60]
    "HalfCheetah-v5": (0.978, 0.65, 0.14),
    # trapezoid of the x velocity over 4 RK4 sub-steps  [0.9983, 0.27, 0.025; std 0.42]
    "Swimmer-v5": (0.997, 0.33, 0.03),
    # trapezoid over 4 RK4 sub-steps of 2 ms  [0.99996, 0.048, 0.0042; std 0.48]
    "Hopper-v5": (0.99994, 0.06, 0.005),
}


@pytest.mark.parametrize("env_id", list(PROXY))
def test_reward_proxy(env_id):
    """Proxy tasks: the reward agrees with the env's to the documented, measured bounds."""
    d = record(env_id)
    t = task(env_id)
    assert not t.exact
    r = t.reward(d["obs"], d["action"], d["next_obs"])
    corr_min, max_err, rms_max = PROXY[env_id]
    err = r - d["reward"]
    assert np.corrcoef(r, d["reward"])[0, 1] > corr_min
    assert np.abs(err).max() < max_err
    assert np.sqrt(np.mean(err ** 2)) < rms_max
    if env_id != "InvertedDoublePendulum-v5":
        # the forward proxy beats the x velocity of next_obs alone, and the rest is exact
        i, w = t.vx_index, t.w_next
        alt = r + w * d["obs"][:, i] - w * d["next_obs"][:, i]
        assert np.sqrt(np.mean(err ** 2)) < np.sqrt(np.mean((alt - d["reward"]) ** 2))


@pytest.mark.parametrize("env_id", IDS)
def test_terminated(env_id):
    """The termination test equals the env's flags; the data contains terminations."""
    d = record(env_id)
    t = task(env_id)
    got = t.terminated(d["next_obs"])
    assert got.dtype == bool and got.shape == (N_STEPS,)
    # (InvertedDoublePendulum: could differ within ~1e-4 of the y_tip = 1 threshold)
    np.testing.assert_array_equal(got, d["terminated"])
    if env_id in TERMINATING:
        assert d["terminated"].sum() >= 5
    else:
        assert not got.any()


def test_double_pendulum_tip():
    """The tip from the observation is MuJoCo's kinematics of the final qpos (the env's own
    site_xpos lags it: the reason the task is a proxy)."""
    import mujoco
    t = task("InvertedDoublePendulum-v5")
    env = gymnasium.make("InvertedDoublePendulum-v5")
    model, data = env.unwrapped.model, env.unwrapped.data
    kin = mujoco.MjData(model)
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    lag = []
    for _ in range(40):
        o2, _, term, _, _ = env.step(rng.uniform(-1, 1, 1))
        kin.qpos[:] = data.qpos
        mujoco.mj_kinematics(model, kin)
        xt, yt, _, _ = t._tip(o2)
        np.testing.assert_allclose([xt, yt], kin.site_xpos[0][[0, 2]], rtol=0, atol=1e-12)
        lag.append(np.abs(data.site_xpos[0] - kin.site_xpos[0]).max())
        if term:
            env.reset(seed=1)
    assert 1e-7 < max(lag) < 2e-4
    env.close()


def test_terminated_non_finite():
    """NaN and inf observations terminate where gym's test does."""
    o = np.zeros(4)
    o[2] = np.nan
    assert task("InvertedPendulum-v5").terminated(o)
    o = np.full(11, 0.0)
    o[0] = 1.25
    assert not task("Hopper-v5").terminated(o)
    o[7] = np.nan
    assert task("Hopper-v5").terminated(o)
    o[7], o[0] = 0.0, np.inf
    assert task("Hopper-v5").terminated(o)
    assert task("Hopper-v5").terminated([1.25, 0, 100.0] + [0] * 8)   # state range
    assert task("InvertedPendulum-v5").reward([0] * 4, [0], [0, 0.21, 0, 0]) == 0.0


# ---------------------------------------------------------------------- 2. gradients
def _fd(f, x, eps=1e-6):
    """Central differences of a batched f: (B, k) -> (B,), per coordinate: (B, k)."""
    g = np.empty_like(x)
    for j in range(x.shape[-1]):
        e = np.zeros(x.shape[-1])
        e[j] = eps
        g[:, j] = (f(x + e) - f(x - e)) / (2 * eps)
    return g


@pytest.mark.parametrize("env_id", IDS)
@pytest.mark.parametrize("B", [1, 7])
def test_reward_grad(env_id, B):
    """reward_grad against central differences; batched shapes agree with the flat ones."""
    rng = np.random.default_rng(B)
    t = task(env_id)
    o, o2 = sample_obs(env_id, rng, B), sample_obs(env_id, rng, B)
    a = sample_action(env_id, rng, B)
    r, go, ga, go2 = t.reward_grad(o, a, o2)
    assert r.shape == (B,) and go.shape == o.shape and ga.shape == a.shape \
        and go2.shape == o2.shape
    np.testing.assert_array_equal(r, t.reward(o, a, o2))
    tol = dict(rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(go, _fd(lambda x: t.reward(x, a, o2), o), **tol)
    np.testing.assert_allclose(ga, _fd(lambda x: t.reward(o, x, o2), a), **tol)
    np.testing.assert_allclose(go2, _fd(lambda x: t.reward(o, a, x), o2), **tol)
    # other leading dimensions: (B,) -> (1, B) and a single transition
    r1, go1, ga1, go21 = t.reward_grad(o[None], a[None], o2[None])
    np.testing.assert_array_equal(r1[0], r)
    np.testing.assert_array_equal(go21[0], go2)
    r0, _, ga0, _ = t.reward_grad(o[0], a[0], o2[0])
    assert r0.shape == () and ga0.shape == (t.n_act,) and r0 == r[0]
    # the surrogate's gradient too
    s, gs = t.termination_surrogate(o2)
    np.testing.assert_allclose(gs, _fd(lambda x: t.termination_surrogate(x)[0], o2), **tol)


def test_pendulum_clip_gradient():
    """Pendulum: no action gradient beyond the torque limits, the clipped value's within."""
    t = task("Pendulum-v1")
    o = np.array([[1.0, 0.0, 0.0]] * 3)
    a = np.array([[-3.0], [1.0], [2.5]])
    r, _, ga, _ = t.reward_grad(o, a, o)
    np.testing.assert_allclose(r, [-0.004, -0.001, -0.004])
    np.testing.assert_allclose(ga[:, 0], [0.0, -0.002, 0.0])


@pytest.mark.parametrize("env_id", IDS)
@pytest.mark.parametrize("T,B", [(1, 1), (4, 3)])
def test_cost_gradient(env_id, T, B):
    """The bound cost's gradients (time-major, batch last) against central differences."""
    rng = np.random.default_rng(10 * T + B)
    t = task(env_id)
    n, m = t.n_obs, t.n_act
    cost = t.cost()
    assert isinstance(cost, TrajectoryCost)
    bc = cost.bind(n, m, T, B)
    S = sample_obs(env_id, rng, (T + 1) * B).reshape(T + 1, B, n).transpose(0, 2, 1).copy()
    U = sample_action(env_id, rng, T * B).reshape(T, B, m).transpose(0, 2, 1).copy()
    val, CX, CU = bc.evaluate(S, U)
    assert val.shape == (B,) and CX.shape == S.shape and CU.shape == U.shape
    eps = 1e-6
    for X, G in ((S, CX), (U, CU)):
        fd = np.empty_like(X)
        for idx in np.ndindex(X.shape[:2]):         # each (t, i) entry, all b at once
            Xp, Xm = X.copy(), X.copy()
            Xp[idx] += eps
            Xm[idx] -= eps
            args_p = (Xp, U) if X is S else (S, Xp)
            args_m = (Xm, U) if X is S else (S, Xm)
            fd[idx] = (bc.evaluate(*args_p)[0] - bc.evaluate(*args_m)[0]) / (2 * eps)
        np.testing.assert_allclose(G, fd, rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------------- 3. cost values
@pytest.mark.parametrize("env_id", IDS)
def test_cost_value(env_id):
    """cost() is minus the summed reward (plus the weighted surrogate) on recorded data."""
    d = record(env_id)
    t = task(env_id)
    obs = d["obs64"] if env_id == "Pendulum-v1" else d["obs"]
    # the longest stretch of one episode: a trajectory x_0 .. x_T
    ep = d["episode"]
    k = np.bincount(ep).argmax()
    idx = np.flatnonzero(ep == k)
    T = len(idx)
    states = np.concatenate([obs[idx], d["next_obs"][idx[-1:]]])       # (T+1, n)
    assert np.allclose(states[1:], d["next_obs"][idx], rtol=0, atol=1e-6)
    S = states[:, :, None]
    U = d["action"][idx][:, :, None]
    ref = -t.reward(states[:-1], d["action"][idx], states[1:]).sum()
    v0 = t.cost(termination_weight=0).bind(t.n_obs, t.n_act, T, 1).evaluate(S, U)[0]
    np.testing.assert_allclose(v0, [ref], rtol=1e-12, atol=1e-12)
    if t.exact:
        np.testing.assert_allclose(v0, [-d["reward"][idx].sum()], rtol=1e-10, atol=1e-10)
    # every transition as a horizon-1 trajectory of a batch
    N = len(obs)
    S1 = np.stack([obs, d["next_obs"]]).transpose(0, 2, 1)              # (2, n, N)
    U1 = d["action"].T[None]                                            # (1, m, N)
    v1 = t.cost(termination_weight=0).bind(t.n_obs, t.n_act, 1, N).evaluate(S1, U1)[0]
    if t.exact:
        np.testing.assert_allclose(v1, -d["reward"], rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(v1, -t.reward(obs, d["action"], d["next_obs"]), rtol=1e-12,
                               atol=1e-12)
    # the default cost adds the surrogate with its default weight
    vd = t.cost().bind(t.n_obs, t.n_act, T, 1).evaluate(S, U)[0]
    w = t.termination_weight or 0.0
    sur = t.termination_surrogate(states[1:])[0].sum()
    np.testing.assert_allclose(vd, v0 + w * sur, rtol=1e-12, atol=1e-12)
    if w:
        assert sur > 0


def test_surrogate_values():
    """The surrogates are 1 at the termination boundary and 0 upright/standing."""
    t = task("InvertedPendulum-v5")
    np.testing.assert_allclose(t.termination_surrogate([[0, 0.2, 0, 0], [0, 0, 0, 0]])[0],
                               [1.0, 0.0])
    t = task("InvertedDoublePendulum-v5")
    q = np.arccos(1.0 / 1.2)            # both poles at q1, q2 = 0: y = 1.2 cos q1 = 1
    o = np.zeros((2, 9))
    o[:, 3:5] = 1.0
    o[0, 1], o[0, 3] = np.sin(q), np.cos(q)
    o[0, 4] = 1.0
    # y(q1, 0) = 1.2 cos q1 = 1 -> surrogate 1; upright -> 0
    np.testing.assert_allclose(t.termination_surrogate(o)[0], [1.0, 0.0], atol=1e-12)
    t = task("Hopper-v5")
    o = np.zeros((3, 11))
    o[:, 0] = [0.7, 1.25, 1.6]
    np.testing.assert_allclose(t.termination_surrogate(o)[0], [1.0, 0.0, 0.0], atol=1e-12)
    assert task("Reacher-v5").termination_surrogate(np.ones(10))[0] == 0.0


@pytest.mark.parametrize("env_id", ["Pendulum-v1", "Hopper-v5"])
def test_plan_with_cost(env_id):
    """The cost plugs into optimize_trajectory; its optimum's J is -sum reward + surrogate."""
    import ctrlprop as cp
    t = task(env_id)
    dyn = cp.Dynamics(cp.Network.mlp([t.n_obs + t.n_act, 8, t.n_obs], seed=1), t.n_obs)
    x0 = sample_obs(env_id, np.random.default_rng(0), 1)[0]
    res = cp.optimize_trajectory(dyn, x0, 5, t.cost(), bounds=t.bounds, method="L-BFGS-B")
    X, U = res.states, res.controls
    assert np.all(U >= t.action_low - 1e-12) and np.all(U <= t.action_high + 1e-12)
    w = t.termination_weight or 0.0
    J = -t.reward(X[:-1], U, X[1:]).sum() \
        + w * t.termination_surrogate(X[1:])[0].sum()
    np.testing.assert_allclose(res.fun, J, rtol=1e-10)
    np.testing.assert_allclose(X, dyn.rollout(x0, U), rtol=1e-12, atol=1e-12)
    U0 = np.zeros_like(U)                 # the plan beats doing nothing
    X0 = dyn.rollout(x0, U0)
    J0 = -t.reward(X0[:-1], U0, X0[1:]).sum() \
        + w * t.termination_surrogate(X0[1:])[0].sum()
    assert res.fun < J0


# ---------------------------------------------------------------------- 4. bad input
def test_bad_input():
    """Wrong shapes, unknown ids, non-numeric input: the right error, naming the argument."""
    t = task("Reacher-v5")
    o, a = np.zeros(10), np.zeros(2)
    with pytest.raises(ValueError, match=r"obs must have shape \(\.\.\., 10\).*\(9,\)"):
        t.reward(np.zeros(9), a, o)
    with pytest.raises(ValueError, match=r"action must have shape \(\.\.\., 2\).*\(\)"):
        t.reward(o, 0.0, o)
    with pytest.raises(ValueError, match=r"next_obs must have shape .*\(3, 11\)"):
        t.reward_grad(o, a, np.zeros((3, 11)))
    with pytest.raises(ValueError, match="same leading dimensions.*obs \\(3, 10\\)"):
        t.reward(np.zeros((3, 10)), np.zeros((2, 2)), np.zeros((3, 10)))
    with pytest.raises(TypeError, match="action must be a numeric array.*str"):
        t.reward(o, "left", o)
    with pytest.raises(TypeError, match="obs must be a numeric array"):
        t.reward(object(), a, o)
    with pytest.raises(ValueError, match="next_obs contains NaN"):
        t.reward(o, a, np.full(10, np.nan))
    with pytest.raises(ValueError, match=r"next_obs must have shape \(\.\.\., 10\)"):
        t.terminated(np.zeros(4))
    with pytest.raises(TypeError, match="env_id must be a string.*int"):
        task(3)
    with pytest.raises(ValueError, match="unknown task 'Reacher-v4'.*Pendulum-v1.*Hopper-v5"):
        task("Reacher-v4")
    with pytest.raises(ValueError, match="termination_weight"):
        task("Hopper-v5").cost(termination_weight=-1.0)
    with pytest.raises(TypeError, match="termination_weight"):
        task("Hopper-v5").cost(termination_weight="big")
    with pytest.raises(ValueError, match="termination_weight: HalfCheetah-v5 has no"):
        task("HalfCheetah-v5").cost(termination_weight=1.0)
    assert task("HalfCheetah-v5").cost(termination_weight=0).trajectory.termination_weight == 0
    with pytest.raises(TypeError, match="task must be a ctrlprop.envs.Task"):
        TaskCost("Reacher-v5")
    # a cost bound to the wrong state size names the states
    bc = t.cost().bind(9, 2, 2, 1)
    with pytest.raises(ValueError, match=r"states must have shape \(\.\.\., 10\)"):
        bc.evaluate(np.zeros((3, 9, 1)), np.zeros((2, 2, 1)))
    with pytest.raises(ValueError, match="states must be \\(B, T\\+1, 10\\)"):
        t.cost().trajectory(np.zeros((1, 2, 10)), np.zeros((1, 2, 2)))


# ---------------------------------------------------------------------- 5. pickle
@pytest.mark.parametrize("env_id", IDS)
def test_pickle(env_id):
    """Tasks and their costs survive a pickle round trip and evaluate the same."""
    t = task(env_id)
    t2 = pickle.loads(pickle.dumps(t))
    assert type(t2) is type(t) and t2.env_id == env_id
    c2 = pickle.loads(pickle.dumps(t.cost()))
    rng = np.random.default_rng(0)
    S = sample_obs(env_id, rng, 3 * 2).reshape(3, 2, t.n_obs).transpose(0, 2, 1).copy()
    U = sample_action(env_id, rng, 2 * 2).reshape(2, 2, t.n_act).transpose(0, 2, 1).copy()
    for x, y in zip(t.cost().bind(t.n_obs, t.n_act, 2, 2).evaluate(S, U),
                    c2.bind(t.n_obs, t.n_act, 2, 2).evaluate(S, U)):
        np.testing.assert_array_equal(x, y)
    o, a = S[0].T, U[0].T
    np.testing.assert_array_equal(t2.reward(o, a, o), t.reward(o, a, o))


# ---------------------------------------------------------------------- 6. make
def test_make_without_gymnasium(monkeypatch):
    """make names the extra when gymnasium is missing."""
    monkeypatch.setitem(sys.modules, "gymnasium", None)
    with pytest.raises(ImportError, match=r"needs gymnasium with MuJoCo: pip install "
                                          r"'ctrlprop\[gym\]'"):
        make("Pendulum-v1")


def test_make_without_mujoco(monkeypatch):
    """make names the extra when MuJoCo is missing for a MuJoCo task."""
    monkeypatch.setitem(sys.modules, "mujoco", None)
    with pytest.raises(ImportError, match=r"ctrlprop\[gym\]"):
        make("Hopper-v5")


def test_make_passes_kwargs():
    """make is gymnasium.make: keyword arguments reach it."""
    env = make("Pendulum-v1", max_episode_steps=7, g=9.81)
    assert env.spec.max_episode_steps == 7 and env.unwrapped.g == 9.81
    env.close()


@pytest.mark.parametrize("env_id", sorted(TASKS))
def test_cost_value_alone_equals_the_first_return(env_id):
    """TaskCost.value (what the sampling planners call) is the value of a full call, with
    and without the termination surrogate, on states off the data (a model's predictions)."""
    t = task(env_id)
    rng = np.random.default_rng(3)
    S = rng.standard_normal((4, 6, t.n_obs)) * 0.3
    U = rng.uniform(t.action_low, t.action_high, (4, 5, t.n_act))
    for w in {0.0, t.termination_weight or 0.0, 2.5 if t.termination_weight else 0.0}:
        f = t.cost(termination_weight=w).trajectory
        v = f.value(S, U)
        assert v.shape == (4,)
        np.testing.assert_allclose(v, f(S, U)[0], rtol=1e-15, atol=0)
        if w:
            assert not np.allclose(v, t.cost(termination_weight=0).trajectory.value(S, U))
    with pytest.raises(ValueError, match="states must be"):
        t.cost().trajectory.value(S[:, :5], U)
