"""Pickling: every network, model, objective, cost and plant unpickles to an object that
computes bit-identical numbers (compiled buffers and op lists are rebuilt, not pickled),
and transfer functions pickle by their registered name."""

import pickle
import subprocess
import sys

import numpy as np
import pytest

import ctrlprop as cp
from conftest import random_dag
from ctrlprop import plants
from ctrlprop.objectives.control import ControlObjective


def roundtrip(obj):
    return pickle.loads(pickle.dumps(obj))


def same(a, b):
    """Bit-identical results: arrays, floats, tuples of them, sparse matrices."""
    if isinstance(a, (tuple, list)):
        assert type(a) is type(b) and len(a) == len(b)
        for x, y in zip(a, b):
            same(x, y)
    elif hasattr(a, "toarray"):
        np.testing.assert_array_equal(a.toarray(), b.toarray())
    else:
        np.testing.assert_array_equal(a, b)


def _scaled(net, rng):
    net.set_scaling(rng.standard_normal(net.n_inputs), rng.uniform(0.5, 2, net.n_inputs),
                    rng.standard_normal(net.n_outputs), rng.uniform(0.5, 2, net.n_outputs))
    return net


# ---------------------------------------------------------------- networks and transfers
def test_an_mlp_pickles():
    # regression: pickling failed with "Can't pickle <function <lambda>>" (the tanh transfer)
    net = cp.Network.mlp([4, 8, 2])
    X = np.random.default_rng(0).standard_normal((5, 4))
    same(roundtrip(net).forward(X), net.forward(X))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_network_numbers_survive_pickling(seed):
    rng = np.random.default_rng(seed)
    net = _scaled(random_dag(rng, n_in=3, n_comp=7, transfers=["tanh", "logistic", "relu",
                                                               "softplus", "sin", "linear"]),
                  rng)
    X, dY = rng.standard_normal((6, 3)), rng.standard_normal((6, net.n_outputs))
    net.forward(X)                                   # compiled plan and buffers exist now
    new = roundtrip(net)
    assert new.plan is not net.plan
    same(new.weights, net.weights)
    same(new.forward(X), net.forward(X))
    same(new.backward(X, dY), net.backward(X, dY))
    same(new.jacobian_inputs(X), net.jacobian_inputs(X))
    same(new.jacobian_weights(X), net.jacobian_weights(X))
    vw, vx = rng.standard_normal(net.n_weights), rng.standard_normal(X.shape)
    smooth = all(t.name != "relu" for t in net.transfers)
    a, b = new.trace(X, keep=True), net.trace(X, keep=True)
    same(a.jvp(vw, vx), b.jvp(vw, vx))
    if smooth:
        same(a.hvp(dY, lambda R: 2 * R, vw, vx), b.hvp(dY, lambda R: 2 * R, vw, vx))
    # the copy is independent of the original
    new.weights = new.weights + 1.0
    assert not np.array_equal(new.forward(X), net.forward(X))


def _cube(z):
    return z ** 3


def test_a_user_transfer_pickles_by_name():
    t = cp.register_transfer("test_pickle_cube", _cube, lambda z: 3 * z ** 2,
                             lambda z: 6 * z, overwrite=True)
    assert roundtrip(t) is t                          # resolved by name, not by value
    net = cp.Network.from_edges(2, [(0, 2), (1, 2), (2, 3)], ["test_pickle_cube", "tanh"], [3])
    X = np.random.default_rng(1).standard_normal((4, 2))
    same(roundtrip(net).forward(X), net.forward(X))


def _run(code, blob):
    return subprocess.run([sys.executable, "-c", code], input=blob, capture_output=True,
                          timeout=120)


def test_unpickling_an_unregistered_transfer_in_a_fresh_process_says_to_register_it():
    cp.register_transfer("test_pickle_cube", _cube, lambda z: 3 * z ** 2, overwrite=True)
    net = cp.Network.from_edges(1, [(0, 1), (1, 2)], ["test_pickle_cube", "linear"], [2])
    blob = pickle.dumps(net)
    load = "import pickle, sys, ctrlprop; net = pickle.loads(sys.stdin.buffer.read()); "
    out = _run(load + "print(net.forward([[0.5]])[0, 0])", blob)
    assert out.returncode != 0
    err = out.stderr.decode()
    assert "ValueError" in err and "'test_pickle_cube'" in err, err
    assert "register_transfer('test_pickle_cube'" in err and "before loading" in err, err
    # registered first, the same pickle loads and computes the same number
    ok = _run("import ctrlprop; ctrlprop.register_transfer('test_pickle_cube', "
              "lambda z: z ** 3, lambda z: 3 * z ** 2); " + load
              + "print(repr(float(net.forward([[0.5]])[0, 0])))", blob)
    assert ok.returncode == 0, ok.stderr.decode()
    assert float(ok.stdout.decode()) == float(net.forward([[0.5]])[0, 0])


# ---------------------------------------------------------------- objectives
def test_weight_objective_pickles():
    rng = np.random.default_rng(3)
    net = _scaled(random_dag(rng, n_in=3, n_comp=6), rng)
    X, Y = rng.standard_normal((9, 3)), rng.standard_normal((9, net.n_outputs))
    mask = rng.random(net.n_weights) < 0.7
    obj = cp.WeightObjective(net, X, Y, l2=0.1, sample_weight=rng.uniform(0.5, 2, 9),
                             trainable=mask)
    x, p = obj.x0 + 0.1 * rng.standard_normal(obj.n), rng.standard_normal(obj.n)
    obj(x), obj.hessp(x, p)                           # caches and buffers in use
    net.weights = net.weights + 0.5                   # the objective keeps what it captured
    new = roundtrip(obj)
    same(new.x0, obj.x0)
    for z in (x, x + 0.05 * p):
        same(new(z), obj(z))
        same(new.hessp(z, p), obj.hessp(z, p))
        same(new.residuals(z), obj.residuals(z))
        same(new.jacobian(z), obj.jacobian(z))
        same(new.minibatch(z, [1, 4, 7]), obj.minibatch(z, [1, 4, 7]))
        same(new.jacobian_operator(z) @ p, obj.jacobian_operator(z) @ p)
        same(new.full(z), obj.full(z))


@pytest.mark.parametrize("single", [False, True])
def test_control_objective_pickles(single):
    rng = np.random.default_rng(4)
    net = _scaled(random_dag(rng, n_in=4, n_comp=6), rng)
    K, n_out = 3, net.n_outputs
    X = rng.standard_normal((K, 4))
    A = rng.standard_normal((n_out, n_out))
    Y0 = net.forward(X)
    obj = ControlObjective(net, Y0 + 0.3, X, [0, 2], Q=A @ A.T + 0.1 * np.eye(n_out),
                           R=[0.2, 0.5], u_rest=rng.standard_normal(2),
                           output_bounds={0: (Y0[0, 0] - 0.05, Y0[0, 0] + 0.05)}, penalty=3.0)
    if single:
        obj = obj.single().select(1)
    U = X[:obj.K, [0, 2]] + 0.2 * rng.standard_normal((obj.K, 2))
    u, p = U.ravel(), rng.standard_normal(U.size)
    obj(u)
    net.weights = net.weights * 0.0                   # the objective's model is frozen
    new = roundtrip(obj)
    same(new(u), obj(u))
    same(new.value(u), obj.value(u))
    same(new.residuals(u), obj.residuals(u))
    same(new.jacobian(u), obj.jacobian(u))
    same(new.hessp(u, p), obj.hessp(u, p))
    same(new.hessp(u, p, kind="gauss-newton"), obj.hessp(u, p, kind="gauss-newton"))
    same(new.hess(u), obj.hess(u))
    same(new.outputs(u), obj.outputs(u))
    same(new.per_problem(U), obj.per_problem(U))


def _model(rng, n=2, m=1, e=0, residual=False, scaled=True):
    net = cp.Network.mlp([n + m + e, 6, n], seed=int(rng.integers(100)))
    if scaled:
        _scaled(net, rng)
    return cp.Dynamics(net, n, residual=residual, n_exo=e)


@pytest.mark.parametrize("residual", [False, True])
def test_dynamics_pickles(residual):
    rng = np.random.default_rng(5)
    model = _model(rng, e=1, residual=residual)
    x0, U, E = rng.standard_normal((3, 2)), rng.standard_normal((3, 4, 1)), rng.standard_normal(1)
    S = model.rollout(x0, U, exo=E)                   # a cached Unroll exists now
    new = roundtrip(model)
    same(new.rollout(x0, U, exo=E), S)
    same(new.step(x0, U[:, 0], exo=E), model.step(x0, U[:, 0], exo=E))
    same(new.linearize(x0, U[:, 0], exo=E), model.linearize(x0, U[:, 0], exo=E))


def _running(X, U):
    return (X ** 2).sum(axis=2) + (U ** 4).sum(axis=2), 2 * X, 4 * U ** 3


@pytest.mark.parametrize("custom", [False, True])
def test_trajectory_objective_and_cost_pickle(custom):
    rng = np.random.default_rng(6)
    model = _model(rng, e=1, residual=True)
    cost = cp.TrajectoryCost(goal=[0.5, -0.2], Q=[1.0, 2.0], Qf=np.array([[3.0, 1.0],
                                                                          [1.0, 2.0]]),
                             R=0.1, S=0.05, running=_running if custom else None)
    E = rng.standard_normal((4, 1))
    obj = cp.TrajectoryObjective(model, rng.standard_normal((2, 2)), 4, cost, exo=E)
    u, p = rng.standard_normal(obj.n_vars), rng.standard_normal(obj.n_vars)
    obj(u)                                            # a rollout is cached at u
    new = roundtrip(obj)
    for z in (u, u + 0.1 * p):
        same(new(z), obj(z))
        same(new.value(z), obj.value(z))
        same(new.states(z), obj.states(z))
        same(new.costs(z), obj.costs(z))
        same(new.hessp(z, p), obj.hessp(z, p))
        if not custom:
            same(new.residuals(z), obj.residuals(z))
            same(new.jacobian(z), obj.jacobian(z))
    # the cost alone
    c = roundtrip(cost)
    S, U = rng.standard_normal((5, 2, 3)), rng.standard_normal((4, 1, 3))
    same(c.bind(2, 1, 4, 3).evaluate(S, U), cost.bind(2, 1, 4, 3).evaluate(S, U))


@pytest.mark.parametrize("with_goal", [False, True])
def test_controller_objective_pickles(with_goal):
    rng = np.random.default_rng(7)
    model = _model(rng, e=1)
    n = model.n_states
    ctrl = _scaled(cp.Network.mlp([2 * n if with_goal else n, 5, 1], output="tanh", seed=3),
                   rng)
    goal = rng.standard_normal(n) if with_goal else None
    obj = cp.ControllerObjective(model, ctrl, rng.standard_normal((3, n)), 5,
                                 dict(Q=[1.0, 0.5], R=0.1), goal=goal, exo=[0.3], l2=0.01)
    v = ctrl.weights + 0.1 * rng.standard_normal(ctrl.n_weights)
    obj(v)
    new = roundtrip(obj)
    for z in (v, v + 0.05):
        same(new(z), obj(z))
        same(new.rollout(z), obj.rollout(z))
        same(new.costs(z), obj.costs(z))
    same(new.rollout(), obj.rollout())                # the controller's own weights


# ---------------------------------------------------------------- plants
def _policy(X):
    return np.tanh(X[:, :1])


@pytest.mark.parametrize("plant", [plants.TruckBackerUpper(), plants.TruckBackerUpper(
    saturate=True, wrap=False), plants.Pendulum(), plants.Pendulum(saturate=True, max_speed=5.0),
    plants.Car(), plants.Car(saturate=True)], ids=repr)
def test_plants_pickle(plant):
    new = roundtrip(plant)
    assert type(new) is type(plant) and repr(new) == repr(plant)
    x = plant.sample_starts(4, rng=1)
    u = plant.sample_controls(4, rng=2)
    same(new.step(x, u), plant.step(x, u))
    same(new.jacobians(x, u), plant.jacobians(x, u))
    U = np.stack([plant.sample_controls(6, rng=k) for k in range(4)])
    same(new.rollout(x, U), plant.rollout(x, U))
    same(new.training_data(7, rng=3, episode_length=3), plant.training_data(7, rng=3,
                                                                           episode_length=3))
    m = plant.n_controls

    def pol(X):
        return np.clip(_policy(X), -1, 1) * np.ones((1, m)) * 0.5 * (plant.u_high - plant.u_low)
    a, b = new.simulate(x, pol, 5), plant.simulate(x, pol, 5)
    same((a.states, a.controls, a.steps, a.stopped), (b.states, b.controls, b.steps, b.stopped))
    same(new.state_difference(x, new.step(x, u)), plant.state_difference(x, plant.step(x, u)))


def test_planar_arm_pickles():
    arm = plants.PlanarArm(lengths=(1.0, 0.7, 0.4))
    new = roundtrip(arm)
    q = arm.sample_postures(5, rng=0)
    same(new.fk(q), arm.fk(q))
    same(new.jacobian(q), arm.jacobian(q))
    same(new.joint_positions(q), arm.joint_positions(q))
    same(new.training_data(6, rng=1), arm.training_data(6, rng=1))
    same(new.grid_targets(5), arm.grid_targets(5))
