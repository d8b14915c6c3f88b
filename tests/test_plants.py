"""The true plants: shapes, closed forms, exact Jacobians, limits, checks and the car costs."""

import numpy as np
import pytest

from ctrlprop.core.gradcheck import check_objective, numerical_gradient
from ctrlprop.plants import (CAR_T, CAR_X0, Car, Pendulum, PlanarArm, Rollout,
                             TruckBackerUpper, car_control_cost, car_final_cost,
                             car_running_cost, car_trajectory_cost, sabs, wrap_angle)

PLANTS = [TruckBackerUpper, Pendulum, Car]


def _fd_jacobians(plant, x, u, eps=1e-6):
    """Central differences of step (angle differences wrapped) for one state."""
    n, m = plant.n_states, plant.n_controls
    fx, fu = np.empty((n, n)), np.empty((n, m))
    for i in range(n):
        e = eps * np.eye(n)[i]
        fx[:, i] = plant.state_difference(plant.step(x - e, u), plant.step(x + e, u)) / (2 * eps)
    for j in range(m):
        e = eps * np.eye(m)[j]
        fu[:, j] = plant.state_difference(plant.step(x, u - e), plant.step(x, u + e)) / (2 * eps)
    return fx, fu


# ---- generic behaviour of every dynamical plant -------------------------------------------
@pytest.mark.parametrize("cls", PLANTS)
def test_single_and_batch_agree(cls, rng):
    p = cls()
    X, U = p.sample_states(7, rng), p.sample_controls(7, rng)
    Xn = p.step(X, U)
    A, B = p.jacobians(X, U)
    assert Xn.shape == (7, p.n_states)
    assert A.shape == (7, p.n_states, p.n_states) and B.shape == (7, p.n_states, p.n_controls)
    for k in range(7):
        np.testing.assert_array_equal(p.step(X[k], U[k]), Xn[k])
        a, b = p.jacobians(X[k], U[k])
        np.testing.assert_array_equal(a, A[k])
        np.testing.assert_array_equal(b, B[k])
    # one control for the whole batch
    np.testing.assert_array_equal(p.step(X, U[0]), p.step(X, np.tile(U[0], (7, 1))))


@pytest.mark.parametrize("cls", PLANTS)
def test_jacobians_match_finite_differences(cls, rng):
    p = cls()
    X, U = p.sample_states(6, rng), p.sample_controls(6, rng)
    U = 0.9 * U                              # keep the differences inside the limits
    for x, u in zip(X, U):
        fx, fu = p.jacobians(x, u)
        nx, nu = _fd_jacobians(p, x, u)
        np.testing.assert_allclose(fx, nx, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(fu, nu, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("cls", PLANTS)
def test_bad_shapes_and_values_raise(cls):
    p = cls()
    n, m = p.n_states, p.n_controls
    x, u = p.sample_states(1, 0)[0], np.zeros(m)
    with pytest.raises(ValueError, match=rf"x must have shape \({n},\)"):
        p.step(np.zeros(n + 1), u)
    with pytest.raises(ValueError, match="x must have shape"):
        p.step(np.zeros((2, 3, n)), u)
    with pytest.raises(ValueError, match=rf"u must have shape \({m},\)"):
        p.step(x, np.zeros(m + 1))
    with pytest.raises(ValueError, match="one state .* takes one control"):
        p.step(x, np.zeros((3, m)))
    with pytest.raises(ValueError, match="batch sizes differ"):
        p.step(np.tile(x, (3, 1)), np.zeros((2, m)))
    with pytest.raises(ValueError, match="NaN or inf"):
        p.step(np.full(n, np.nan), u)
    with pytest.raises(TypeError, match="numeric"):
        p.step(["a"] * n, u)
    with pytest.raises(TypeError, match="saturate"):
        cls(saturate="yes")


@pytest.mark.parametrize("cls", PLANTS)
def test_controls_outside_limits_raise_unless_saturating(cls):
    p, ps = cls(), cls(saturate=True)
    x = p.sample_states(1, 1)[0]
    u = p.u_high + 0.1 * (p.u_high - p.u_low)
    with pytest.raises(ValueError, match="outside its limits"):
        p.step(x, u)
    with pytest.raises(ValueError, match="outside its limits"):
        p.step(x, 2 * p.u_low)
    np.testing.assert_array_equal(ps.step(x, u), p.step(x, p.u_high))
    # round-off at a limit is accepted
    np.testing.assert_array_equal(p.step(x, p.u_high * (1 + 1e-12)), p.step(x, p.u_high))
    # a saturated control has no effect on the next state
    _, fu = ps.jacobians(x, u)
    assert np.all(fu == 0)


@pytest.mark.parametrize("cls", PLANTS)
def test_training_data(cls):
    p = cls()
    X, Y = p.training_data(50, rng=3)
    n = p.n_states
    assert X.shape == (50, n + p.n_controls) and Y.shape == (50, n)
    np.testing.assert_array_equal(Y, p.step(X[:, :n], X[:, n:]))
    assert np.all((X[:, n:] >= p.u_low) & (X[:, n:] <= p.u_high))
    X2, _ = p.training_data(50, rng=3)
    np.testing.assert_array_equal(X, X2)
    # episodes: consecutive transitions chain, except across episode starts
    X, Y = p.training_data(23, rng=4, episode_length=10)
    assert X.shape == (23, n + p.n_controls)
    np.testing.assert_array_equal(Y, p.step(X[:, :n], X[:, n:]))
    chained = [k for k in range(22) if (k + 1) % 10]
    np.testing.assert_array_equal(X[[k + 1 for k in chained], :n], Y[chained])
    assert not np.allclose(X[10, :n], Y[9])
    with pytest.raises(ValueError, match="positive integer"):
        p.training_data(0)


@pytest.mark.parametrize("cls", PLANTS)
def test_rollout_iterates_step(cls, rng):
    p = cls()
    x0 = p.sample_states(3, rng)
    U = 0.5 * p.sample_controls(3 * 8, rng).reshape(3, 8, p.n_controls)
    S = p.rollout(x0, U)
    assert S.shape == (3, 9, p.n_states)
    x = x0
    for t in range(8):
        x = p.step(x, U[:, t])
        np.testing.assert_array_equal(S[:, t + 1], x)
    np.testing.assert_array_equal(p.rollout(x0[1], U[1]), S[1])
    np.testing.assert_array_equal(p.rollout(x0, U[2])[2], S[2])          # shared controls
    with pytest.raises(ValueError, match="controls must have shape"):
        p.rollout(x0, U[:, :, :1] if p.n_controls > 1 else U[..., None])
    with pytest.raises(ValueError, match="one start"):
        p.rollout(x0[0], U)
    with pytest.raises(ValueError, match="3 starts but controls for 2"):
        p.rollout(x0, U[:2])
    with pytest.raises(ValueError, match="outside its limits"):
        p.rollout(x0, 3 * U / 0.5)


def test_simulate_stops_and_freezes():
    tr = TruckBackerUpper()
    x0 = np.array([[10.0, 0.0, 0.0, 0.0],        # straight at the dock: reaches it
                   [20.0, 0.0, 0.3, -0.3],       # steering hard: jackknifes
                   [-1.0, 0.0, 0.0, 0.0]])       # already at the dock
    r = tr.simulate(x0, lambda X: np.where(X[:, :1] < 15, 0.0, np.pi / 4), 200,
                    stop=tr.terminated)
    assert isinstance(r, Rollout)
    assert r.states.shape == (3, 201, 4) and r.controls.shape == (3, 200, 1)
    # trailer rear at x = 10 moves 0.1 per step: x <= 0 after 100 steps (float round-off
    # may leave it at +1e-14 after exactly 100, hence 100 or 101)
    assert r.steps[0] in (100, 101) and r.stopped[0]
    assert tr.at_dock(r.states[0, r.steps[0]]) and not tr.at_dock(r.states[0, r.steps[0] - 1])
    assert tr.jackknifed(r.states[1, r.steps[1]]) and r.stopped[1]
    assert r.steps[2] == 0 and r.stopped[2]
    for k in range(3):
        n = r.steps[k]
        assert np.all(r.states[k, n:] == r.states[k, n])
        assert np.all(np.isnan(r.controls[k, n:])) and not np.any(np.isnan(r.controls[k, :n]))
    # without a stop, single start: every step taken, states follow the policy
    p = Pendulum()
    r1 = p.simulate(p.hanging, lambda x: np.array([2.0 * np.sign(x[1] + 1e-9)]), 30)
    assert r1.steps == 30 and not r1.stopped and r1.states.shape == (31, 2)
    np.testing.assert_array_equal(r1.states, p.rollout(p.hanging, r1.controls))
    with pytest.raises(ValueError, match="policy must return controls"):
        p.simulate(p.hanging, lambda x: np.zeros(3), 5)
    with pytest.raises(ValueError, match="stop must return a bool array"):
        p.simulate(p.hanging, lambda x: np.zeros(1), 5, stop=lambda X: 0)


# ---- planar arm ---------------------------------------------------------------------------
def test_arm_fk_known_values():
    arm = PlanarArm()
    np.testing.assert_allclose(arm.fk([0, 0, 0]), [2.4, 0.0])
    np.testing.assert_allclose(arm.fk([np.pi / 2, 0, 0]), [0.0, 2.4], atol=1e-15)
    np.testing.assert_allclose(arm.fk([0, np.pi / 2, np.pi / 2]), [1.0 - 0.6, 0.8], atol=1e-15)
    two = PlanarArm((1.0, 0.8))
    np.testing.assert_allclose(two.fk([0, np.pi / 2]), [1.0, 0.8], atol=1e-15)
    np.testing.assert_allclose(two.fk([np.pi / 2, -np.pi / 2]), [0.8, 1.0], atol=1e-15)
    np.testing.assert_allclose(two.fk([0, np.pi]), [0.2, 0.0], atol=1e-15)
    # elbow law of cosines: |p|^2 = l1^2 + l2^2 + 2 l1 l2 cos q2, for any base angle
    q = np.random.default_rng(0).uniform(-3, 3, (20, 2))
    r2 = np.sum(two.fk(q) ** 2, axis=1)
    np.testing.assert_allclose(r2, 1.0 + 0.64 + 1.6 * np.cos(q[:, 1]))


@pytest.mark.parametrize("lengths", [(1.0, 0.8, 0.6), (1.0, 0.8), (0.5,), (1, 2, 3, 4, 5)])
def test_arm_batch_positions_and_jacobian(lengths, rng):
    arm = PlanarArm(lengths)
    Q = arm.sample_postures(5, rng)
    P, J, pts = arm.fk(Q), arm.jacobian(Q), arm.joint_positions(Q)
    assert P.shape == (5, 2) and J.shape == (5, 2, arm.n_joints)
    assert pts.shape == (5, arm.n_joints + 1, 2)
    np.testing.assert_array_equal(pts[:, 0], 0.0)
    np.testing.assert_allclose(pts[:, -1], P, atol=1e-14)
    np.testing.assert_allclose(np.linalg.norm(np.diff(pts, axis=1), axis=2),
                               np.tile(arm.lengths, (5, 1)))
    for k in range(5):
        np.testing.assert_allclose(arm.fk(Q[k]), P[k], rtol=1e-14)      # BLAS round-off
        num = np.stack([numerical_gradient(lambda q: arm.fk(q)[i], Q[k]) for i in range(2)])
        np.testing.assert_allclose(arm.jacobian(Q[k]), num, atol=1e-8)
        np.testing.assert_allclose(arm.jacobian(Q[k]), J[k], rtol=1e-14)
    X, Y = arm.training_data(30, rng)
    assert np.all(arm.within_limits(X))
    np.testing.assert_array_equal(Y, arm.fk(X))


def test_arm_limits_targets_and_errors():
    arm = PlanarArm()
    np.testing.assert_allclose(arm.q_low, [-np.pi, -5 * np.pi / 6, -5 * np.pi / 6])
    assert arm.within_limits([0.0, 0.0, 0.0]) and not arm.within_limits([0.0, 3.0, 0.0])
    T = arm.grid_targets(21, r_min=0.2, r_max=0.9)
    r = np.hypot(T[:, 0], T[:, 1])
    assert T.shape[1] == 2 and len(T) > 100
    assert r.min() >= 0.2 * 2.4 and r.max() <= 0.9 * 2.4
    with pytest.raises(ValueError, match=r"q must have shape \(3,\)"):
        arm.fk([0.0, 0.0])
    with pytest.raises(ValueError, match="positive link lengths"):
        PlanarArm((1.0, -1.0))
    with pytest.raises(ValueError, match=r"limits must have shape \(2, 2\)"):
        PlanarArm((1.0, 1.0), limits=[[0, 1]])
    with pytest.raises(ValueError, match="r_min < r_max"):
        arm.grid_targets(10, r_min=0.5, r_max=0.4)


# ---- pendulum -----------------------------------------------------------------------------
def test_pendulum_closed_form_step_and_directions():
    p = Pendulum()
    for th, thd, u in [(0.3, 0.0, 0.0), (np.pi / 2, 1.0, -2.0), (-2.0, -0.5, 1.5)]:
        v = thd + (15.0 * np.sin(th) + 3.0 * u) * 0.05
        np.testing.assert_allclose(p.step([th, thd], [u]), [wrap_angle(th + 0.05 * v), v])
    # free fall away from upright, toward the side it leans
    assert p.step([0.1, 0.0], [0.0])[1] > 0 and p.step([-0.1, 0.0], [0.0])[1] < 0
    # a positive torque accelerates counter-clockwise
    assert p.step([0.0, 0.0], [1.0])[1] > 0
    # hanging is an equilibrium (within round-off); upright too
    np.testing.assert_allclose(p.step(p.hanging, [0.0]), p.hanging, atol=1e-14)
    np.testing.assert_allclose(p.step([0.0, 0.0], [0.0]), [0.0, 0.0])
    # the velocity saturates at 8 rad/s, and its derivatives vanish there
    np.testing.assert_allclose(p.step([np.pi / 2, 7.9], [2.0])[1], 8.0)
    fx, fu = p.jacobians([np.pi / 2, 7.9], [2.0])
    np.testing.assert_array_equal(fx[1], 0.0)
    np.testing.assert_array_equal(fu[1], 0.0)
    assert Pendulum(max_speed=None).step([np.pi / 2, 7.9], [2.0])[1] > 8.0
    with pytest.raises(ValueError, match="max_speed"):
        Pendulum(max_speed=-1.0)


def test_pendulum_energy_is_nearly_conserved_without_torque():
    # E = I w^2 / 2 + m g (l/2) cos(theta), I = m l^2 / 3: semi-implicit Euler keeps it
    # bounded (explicit Euler drifts by ~40 here); no secular drift over 20 s
    p = Pendulum()
    S = p.rollout([2.0, 0.0], np.zeros((400, 1)))
    E = S[:, 1] ** 2 / 6.0 + 5.0 * np.cos(S[:, 0])
    assert np.max(np.abs(E - E[0])) < 0.35
    assert abs(E[-100:].mean() - E[:100].mean()) < 0.05
    assert S[:, 0].min() < -1.5 and S[:, 0].max() > 1.5          # it swings through the bottom


def test_pendulum_upright_and_time_to_upright():
    p = Pendulum()
    assert p.upright([2 * np.pi - 0.05, 3.0]) and not p.upright([0.2, 0.0])
    assert p.upright([0.15, 0.0], tol=0.2)
    ok, bad = [0.0, 0.0], [1.0, 0.0]
    assert p.time_to_upright([bad, bad, ok, ok]) == pytest.approx(2 * 0.05)
    assert p.time_to_upright([ok, bad, ok]) == pytest.approx(2 * 0.05)
    assert p.time_to_upright([ok, ok]) == 0.0
    assert p.time_to_upright([ok, bad]) == np.inf
    t = p.time_to_upright(np.array([[bad, ok, ok], [bad, bad, bad]]))
    np.testing.assert_allclose(t, [0.05, np.inf])
    s = p.sample_starts(50, 0)
    assert np.all(np.abs(wrap_angle(s[:, 0] - np.pi)) <= 0.1 + 1e-12)
    assert np.all((s[:, 0] >= -np.pi) & (s[:, 0] < np.pi))
    with pytest.raises(ValueError, match="states must have shape"):
        p.time_to_upright(np.zeros((4, 3)))


# ---- truck --------------------------------------------------------------------------------
def test_truck_straight_backing_moves_along_minus_heading():
    tr = TruckBackerUpper()
    for a in [0.0, 0.7, -2.5]:
        x0 = np.array([20.0, 3.0, a, a])
        S = tr.rollout(x0, np.zeros((50, 1)))
        k = np.arange(51)[:, None]
        np.testing.assert_allclose(S[:, :2], x0[:2] - 0.1 * k * [np.cos(a), np.sin(a)],
                                   atol=1e-12)
        np.testing.assert_allclose(S[:, 2:], np.tile([a, a], (51, 1)), atol=1e-14)


def test_truck_kinematics_closed_forms():
    tr = TruckBackerUpper()
    rng = np.random.default_rng(1)
    X, U = tr.sample_states(20, rng), tr.sample_controls(20, rng)
    Xn = tr.step(X, U)
    th0, th1 = X[:, 2], X[:, 3]
    # the hitch moves by s [cos th0, sin th0]; the angles by the given rates
    np.testing.assert_allclose(tr.hitch(Xn) - tr.hitch(X),
                               -0.1 * np.stack([np.cos(th0), np.sin(th0)], 1), atol=1e-12)
    np.testing.assert_allclose(wrap_angle(Xn[:, 2] - th0 + 0.1 * np.tan(U[:, 0])), 0, atol=1e-12)
    np.testing.assert_allclose(wrap_angle(Xn[:, 3] - th1 + 0.025 * np.sin(th0 - th1)), 0,
                               atol=1e-12)
    # the trailer keeps its length: |hitch - rear| = d1
    np.testing.assert_allclose(np.linalg.norm(tr.hitch(Xn) - Xn[:, :2], axis=1), 4.0)
    # backing up amplifies the cab-trailer angle (why backing is hard)
    x = np.array([20.0, 0.0, 0.2, 0.0])
    assert abs(tr.step(x, [0.0])[2] - tr.step(x, [0.0])[3]) > 0.2
    # steering left (phi > 0) while backing turns the cab clockwise
    assert tr.step(x, [0.5])[2] < 0.2
    # angles stay wrapped
    y = tr.step([20.0, 0.0, -np.pi + 0.01, -np.pi + 0.01], [np.pi / 4])
    assert np.all((y[2:] >= -np.pi) & (y[2:] < np.pi)) and y[2] > 3.0


def test_truck_checks_and_errors():
    tr = TruckBackerUpper()
    d = np.deg2rad
    X = np.array([[5.0, 0.0, d(100), 0.0],         # jackknifed
                  [5.0, 0.0, d(80), 0.0],          # not
                  [5.0, 0.0, d(170), d(-170)],     # 20 degrees through the wrap: not
                  [-0.05, 0.3, 0.0, d(5)],         # at the dock, docked
                  [-0.05, 3.0, 0.0, d(5)],         # at the dock, too far
                  [41.0, 0.0, 0.0, 0.0],           # out of the yard
                  [20.0, -10.5, 0.0, 0.0]])        # out of the yard
    np.testing.assert_array_equal(tr.jackknifed(X), [1, 0, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(tr.at_dock(X), [0, 0, 0, 1, 1, 0, 0])
    np.testing.assert_array_equal(tr.out_of_yard(X), [0, 0, 0, 0, 0, 1, 1])
    np.testing.assert_array_equal(tr.terminated(X), [1, 0, 0, 1, 1, 1, 1])
    np.testing.assert_array_equal(tr.docked(X), [0, 0, 0, 1, 0, 0, 0])
    assert tr.docked(X[4], pos_tol=5.0)
    pos, ang = tr.dock_errors([3.0, 4.0, 0.0, 2 * np.pi - 0.1])
    assert pos == pytest.approx(5.0) and ang == pytest.approx(0.1)
    with pytest.raises(ValueError, match=r"x must have shape \(4,\)"):
        tr.jackknifed([1.0, 2.0])


def test_truck_sampling_ranges():
    tr = TruckBackerUpper()
    S = tr.sample_starts(400, 0)
    assert np.all((S[:, 0] >= 10) & (S[:, 0] <= 40) & (np.abs(S[:, 1]) <= 10))
    assert np.all(np.abs(wrap_angle(S[:, 3] - S[:, 2])) <= np.pi / 4 + 1e-12)
    assert np.all((S[:, 2:] >= -np.pi) & (S[:, 2:] < np.pi))
    assert np.ptp(S[:, 2]) > 6.0                        # cab headings all around
    assert not tr.jackknifed(tr.sample_states(400, 1)).any()
    d = tr.state_difference([0, 0, np.pi - 0.1, 0], [0, 0, -np.pi + 0.1, 0])
    np.testing.assert_allclose(d, [0, 0, 0.2, 0], atol=1e-12)


# ---- car ----------------------------------------------------------------------------------
def test_car_straight_and_rest():
    car = Car()
    x = np.array([1.0, -2.0, 0.7, 0.0])
    np.testing.assert_array_equal(car.step(x, [0.0, 0.0]), x)
    np.testing.assert_array_equal(car.step(x, [0.4, 0.0]), x)          # steering at rest
    x[3] = 1.5
    np.testing.assert_allclose(car.step(x, [0.0, 0.0]),
                               [1.0 + 0.045 * np.cos(0.7), -2.0 + 0.045 * np.sin(0.7), 0.7, 1.5])
    np.testing.assert_allclose(car.step(x, [0.0, 2.0])[3], 1.5 + 0.06)
    assert car.step(x, [0.3, 0.0])[2] > 0.7          # forward, wheels left: turns left
    x[3] = -1.5
    assert car.step(x, [0.3, 0.0])[2] < 0.7          # reversing with wheels left


def test_car_front_wheel_rolls_along_its_direction():
    # Closed form of the model: the front axle (d ahead of the rear) moves by f = h v along
    # the front-wheel direction theta + w, and the axle distance stays d.
    car = Car()
    rng = np.random.default_rng(2)
    X, U = car.sample_states(30, rng), car.sample_controls(30, rng)
    Xn = car.step(X, U)
    front = lambda S: S[:, :2] + 2.0 * np.stack([np.cos(S[:, 2]), np.sin(S[:, 2])], 1)
    f = 0.03 * X[:, 3]
    a = X[:, 2] + U[:, 0]
    np.testing.assert_allclose(front(Xn) - front(X), f[:, None] * np.stack([np.cos(a),
                                                                            np.sin(a)], 1),
                               atol=1e-13)


def test_car_domain_and_constants():
    car = Car()
    with pytest.raises(ValueError, match="exceeds the axle distance"):
        car.step([0, 0, 0, 200.0], [0.5, 0.0])
    car.step([0, 0, 0, 200.0], [0.0, 0.0])                   # straight: fine at any speed
    np.testing.assert_allclose(CAR_X0, [1, 1, 1.5 * np.pi, 0])
    assert CAR_T == 500 and car.dt == 0.03 and car.d == 2.0
    np.testing.assert_array_equal(car.u_high, [0.5, 2.0])
    # theta is not wrapped (the final cost measures it as is)
    assert car.step(CAR_X0, [0.0, 0.0])[2] == pytest.approx(1.5 * np.pi)
    assert car.distance_to_origin([3.0, 4.0, 0, 0]) == pytest.approx(5.0)


def test_car_cost_values():
    v, g = sabs(np.array([0.0, 3.0, -3.0]), 4.0)
    np.testing.assert_allclose(v, [0.0, 1.0, 1.0])
    np.testing.assert_allclose(g, [0.0, 0.6, -0.6])
    assert car_control_cost([1.0, 10.0])[0] == pytest.approx(0.02)
    assert car_final_cost(np.zeros(4))[0] == 0.0
    assert car_running_cost(np.zeros(4))[0] == 0.0
    # far from the origin the final cost grows like its weights times |x|
    big = np.array([100.0, 0, 0, 0])
    assert car_final_cost(big)[0] == pytest.approx(0.1 * (100 - 0.01), rel=1e-6)
    assert car_running_cost([0.0, 50.0, 7.0, 7.0])[0] == pytest.approx(1e-3 * (50 - 0.1), 1e-5)
    X = np.random.default_rng(0).normal(size=(6, 4))
    U = np.random.default_rng(1).normal(size=(5, 2))
    J, gX, gU = car_trajectory_cost(X, U)
    expect = (car_control_cost(U)[0].sum() + car_running_cost(X)[0].sum()
              + car_final_cost(X[-1])[0])
    assert J == pytest.approx(expect)
    with pytest.raises(ValueError, match="need controls"):
        car_trajectory_cost(X, U[:4])
    with pytest.raises(ValueError, match=r"u must have shape \(\.\.\., 2\)"):
        car_control_cost(np.zeros(3))


@pytest.mark.parametrize("fn, n", [(car_control_cost, 2), (car_running_cost, 4),
                                   (car_final_cost, 4)])
def test_car_cost_gradients(fn, n):
    X = np.random.default_rng(5).normal(scale=[1, 1, 2, 2][:n], size=(7, n)) * 0.3
    c, g = fn(X)
    assert c.shape == (7,) and g.shape == (7, n)
    res = check_objective(lambda z: (fn(z.reshape(7, n))[0].sum(), fn(z.reshape(7, n))[1].ravel()),
                          X.ravel(), tol=1e-6)
    assert res.ok, res


def test_car_trajectory_cost_gradients_batched():
    rng = np.random.default_rng(6)
    X, U = rng.normal(scale=0.5, size=(2, 5, 4)), rng.normal(scale=0.5, size=(2, 4, 2))
    J, gX, gU = car_trajectory_cost(X, U)
    assert J.shape == (2,) and gX.shape == X.shape and gU.shape == U.shape
    np.testing.assert_allclose(gX, numerical_gradient(lambda z: car_trajectory_cost(z, U)[0].sum(),
                                                      X), atol=1e-8)
    np.testing.assert_allclose(gU, numerical_gradient(lambda z: car_trajectory_cost(X, z)[0].sum(),
                                                      U), atol=1e-8)
    assert J[1] == pytest.approx(car_trajectory_cost(X[1], U[1])[0])


def test_car_cost_through_true_dynamics_gradient():
    # dJ/dU of a rollout by back-propagation through the exact Jacobians (what optimizing on
    # the true dynamics needs), against central differences of the whole rollout
    car = Car()
    T = 15
    U0 = np.random.default_rng(7).uniform(-0.4, 0.4, (T, 2)) * [1, 4]

    def fun(z):
        U = z.reshape(T, 2)
        S = car.rollout(CAR_X0, U)
        J, gX, gU = car_trajectory_cost(S, U)
        A, B = car.jacobians(S[:-1], U)
        lam, g = gX[-1], np.empty_like(U)
        for t in range(T - 1, -1, -1):
            g[t] = gU[t] + lam @ B[t]
            lam = gX[t] + lam @ A[t]
        return J, g.ravel()

    res = check_objective(fun, U0.ravel(), tol=1e-6)
    assert res.ok, res


def test_wrap_false_keeps_angles_continuous():
    p, pc = Pendulum(), Pendulum(wrap=False)
    U = np.full((60, 1), 2.0)
    S, Sc = p.rollout([3.0, 3.0], U), pc.rollout([3.0, 3.0], U)
    assert Sc[:, 0].max() > np.pi and np.abs(np.diff(Sc[:, 0])).max() < 0.5   # no 2 pi jump
    assert np.abs(np.diff(S[:, 0])).max() > 6                 # the wrapped one jumps
    np.testing.assert_allclose(wrap_angle(Sc[:, 0]), S[:, 0], atol=1e-12)
    np.testing.assert_allclose(Sc[:, 1], S[:, 1])
    tr, trc = TruckBackerUpper(), TruckBackerUpper(wrap=False)
    x = [20.0, 0.0, -np.pi + 0.01, -np.pi + 0.01]
    y, yc = tr.step(x, [np.pi / 4]), trc.step(x, [np.pi / 4])
    assert yc[2] < -np.pi and y[2] > 3.0
    np.testing.assert_allclose(wrap_angle(yc), wrap_angle(y), atol=1e-12)
    assert np.all(np.abs(trc.sample_starts(50, 0)[:, 2:]) <= np.pi)      # sampling canonical
    with pytest.raises(TypeError, match="wrap must be True or False"):
        Pendulum(wrap=1)
