"""Differentiable rewards, termination tests and planning costs of standard gymnasium tasks.

One :class:`Task` per environment, with gymnasium's default constructor arguments:
``Pendulum-v1``, ``InvertedPendulum-v5``, ``InvertedDoublePendulum-v5``, ``Reacher-v5``,
``HalfCheetah-v5``, ``Swimmer-v5`` and ``Hopper-v5``.  Each one is written from gymnasium's
source (1.x: ``envs/classic_control/pendulum.py`` and ``envs/mujoco/*_v5.py`` with their XML
models) in terms of the transition ``(obs, action, next_obs)`` that a learned model sees:

* :meth:`Task.reward` -- the env's reward, batched over any leading dimensions;
* :meth:`Task.reward_grad` -- the reward with its exact (analytic) gradients;
* :meth:`Task.terminated` -- the env's ``terminated`` flag from the next observation;
* :meth:`Task.cost` -- a :class:`ctrlprop.TrajectoryCost` for planning: minus the summed
  reward, plus, for the tasks whose reward is flat almost everywhere (an "alive bonus"), a
  smooth surrogate of the termination test.

``Task.exact`` tells whether the reward is exactly a function of the transition:

=========================  =====  ===========================================================
task                       exact  why not / note
=========================  =====  ===========================================================
Pendulum-v1                yes    reward of the angle *before* the step and the clipped torque
                                  (gym's observation is float32: ~1e-6 from the float64 state)
InvertedPendulum-v5        yes    reward = 1 - terminated
InvertedDoublePendulum-v5  no     gym reads the tip from ``data.site_xpos``, which MuJoCo's RK4
                                  step leaves at the last Runge-Kutta stage, not at the final
                                  ``qpos`` of the observation (~1e-4 m apart; up to
                                  ~6e-4 when the cart hits its rail limit)
Reacher-v5                 yes    ``reward_control_weight`` is 1 in the code (0.1 in its docs)
HalfCheetah-v5             no     the x position is not observed: forward velocity proxy
Swimmer-v5                 no     the x position is not observed: forward velocity proxy
Hopper-v5                  no     forward velocity proxy; the healthy bonus is exact
=========================  =====  ===========================================================

The forward reward ``(x_after - x_before) / dt`` of HalfCheetah, Swimmer and Hopper needs
the x position, which ``exclude_current_positions_from_observation=True`` (the default) hides.
It is the x velocity averaged over the ``frame_skip`` physics steps of one env step; the
proxy interpolates between the x velocity of ``obs`` (``v0``) and of ``next_obs`` (``v1``),
``(1 - w) v0 + w v1``, with ``w`` what a velocity linear in time gives for the integrator:
``w = 1/2`` (trapezoid) for RK4 (Swimmer, Hopper) and ``w = (K + 1) / (2 K) = 0.6`` for
MuJoCo's semi-implicit Euler with ``K = 5`` sub-steps (HalfCheetah: ``x`` advances by
``h v_k`` for ``k = 1..K``).

No gymnasium import here: the tasks need only numpy, scipy and ctrlprop
(:func:`ctrlprop.envs.make` makes the envs).
"""

import numpy as np
from scipy.optimize import Bounds

from ..core.checks import as_float, check_nonneg
from ..objectives.cost import TrajectoryCost

__all__ = ["Task", "TaskCost", "task", "TASKS", "PendulumTask", "InvertedPendulumTask",
           "InvertedDoublePendulumTask", "ReacherTask", "HalfCheetahTask", "SwimmerTask",
           "HopperTask"]


def _sq(a):
    """Sum of squares over the last axis."""
    return np.einsum("...i,...i->...", a, a)


class Task:
    """The reward, termination test and planning cost of one gymnasium environment.

    Attributes
    ----------
    env_id : str
        The gymnasium id, e.g. ``"Reacher-v5"``.
    n_obs, n_act : int
        Sizes of an observation and of an action.
    exact : bool
        True when the reward is exactly a function of ``(obs, action, next_obs)``; False when
        :meth:`reward` is a documented proxy (see the class docstring of each task).
    terminates : bool
        False for the tasks whose env never terminates (:meth:`terminated` is all False).
    dt : float
        Seconds of simulated time per env step.
    action_low, action_high : ndarray, shape (n_act,)
        The env's action space bounds.
    obs_labels : tuple of str
        What each observation entry is (length ``n_obs``).
    termination_weight : float or None
        Default weight of the termination surrogate in :meth:`cost`; None for the tasks
        that have none.

    Notes
    -----
    Arrays are batched over any leading dimensions ``...``: ``obs`` and ``next_obs`` are
    (..., n_obs), ``action`` (..., n_act), all with the same leading dimensions.  Every
    task is a stateless instance of a module-level class, so it pickles.
    """

    env_id = ""
    n_obs = 0
    n_act = 0
    exact = True
    terminates = False
    dt = 0.0
    action_low = np.zeros(0)
    action_high = np.zeros(0)
    obs_labels = ()
    termination_weight = None

    @property
    def bounds(self):
        """The action bounds as ``scipy.optimize.Bounds`` (lb, ub of shape (n_act,)), the
        form the planners of ctrlprop take as ``bounds``."""
        return Bounds(self.action_low.copy(), self.action_high.copy())

    def __repr__(self):
        return (f"{type(self).__name__}({self.env_id!r}, n_obs={self.n_obs}, "
                f"n_act={self.n_act}, exact={self.exact})")

    # ------------------------------------------------------------------ checks
    def _array(self, a, name, size, what, finite=True):
        """``a`` as float64 (..., size), or a TypeError/ValueError naming ``name``."""
        a = as_float(a, name)
        if a.ndim == 0 or a.shape[-1] != size:
            raise ValueError(f"{name} must have shape (..., {size}) ({size} {what} entries "
                             f"of {self.env_id}), got shape {a.shape}")
        if finite and not np.all(np.isfinite(a)):
            where = np.argwhere(~np.isfinite(a))[:3].tolist()
            raise ValueError(f"{name} contains NaN or inf (at index {where})")
        return a

    def _transition(self, obs, action, next_obs):
        """The checked transition arrays (same leading dimensions)."""
        o = self._array(obs, "obs", self.n_obs, "observation")
        a = self._array(action, "action", self.n_act, "action")
        o2 = self._array(next_obs, "next_obs", self.n_obs, "observation")
        if not (o.shape[:-1] == a.shape[:-1] == o2.shape[:-1]):
            raise ValueError(f"obs, action and next_obs must have the same leading dimensions, "
                             f"got obs {o.shape}, action {a.shape}, next_obs {o2.shape}")
        return o, a, o2

    # ------------------------------------------------------------------ public API
    def reward(self, obs, action, next_obs):
        """The env's reward of the transitions (the proxy when ``exact`` is False).

        Parameters
        ----------
        obs : array_like, shape (..., n_obs)
            Observations before the step.
        action : array_like, shape (..., n_act)
            Actions (as given to ``env.step``, before any clipping by the env).
        next_obs : array_like, shape (..., n_obs)
            Observations after the step.

        Returns
        -------
        r : ndarray, shape (...)

        Raises
        ------
        TypeError
            For non-numeric input.
        ValueError
            For a wrong last dimension, different leading dimensions, NaN or inf.
        """
        return self._reward(*self._transition(obs, action, next_obs), False)[0]

    def reward_grad(self, obs, action, next_obs):
        """The reward and its exact gradients.

        Parameters
        ----------
        obs : array_like, shape (..., n_obs)
        action : array_like, shape (..., n_act)
        next_obs : array_like, shape (..., n_obs)

        Returns
        -------
        r : ndarray, shape (...)
        dr_dobs : ndarray, shape (..., n_obs)
        dr_daction : ndarray, shape (..., n_act)
        dr_dnext_obs : ndarray, shape (..., n_obs)

        Notes
        -----
        Piecewise-constant terms (alive bonuses) have zero gradient; where the reward is not
        differentiable (a kink) the gradient of one side is returned, as documented by the
        task.
        """
        return self._reward(*self._transition(obs, action, next_obs), True)

    def terminated(self, next_obs):
        """The env's termination test on the observation after a step.

        Parameters
        ----------
        next_obs : array_like, shape (..., n_obs)
            NaN and inf are accepted and treated as gymnasium does.

        Returns
        -------
        terminated : ndarray of bool, shape (...)
            All False for tasks that never terminate.
        """
        o2 = self._array(next_obs, "next_obs", self.n_obs, "observation", finite=False)
        return self._terminated(o2)

    def termination_surrogate(self, next_obs):
        """The smooth surrogate of the termination test used by :meth:`cost` (unweighted).

        Parameters
        ----------
        next_obs : array_like, shape (..., n_obs)

        Returns
        -------
        s : ndarray, shape (...)
            Zero for tasks without termination; about 1 at the termination boundary.
        ds_dnext_obs : ndarray, shape (..., n_obs)
        """
        o2 = self._array(next_obs, "next_obs", self.n_obs, "observation")
        return self._surrogate(o2)

    def cost(self, termination_weight=None):
        """A planning cost: minus the summed reward, plus the termination surrogate.

        For states (observations) ``x_0 .. x_T`` and controls ``u_0 .. u_{T-1}``::

            J = - sum_{t=0}^{T-1} reward(x_t, u_t, x_{t+1})
                + termination_weight * sum_{t=1}^{T} termination_surrogate(x_t)

        Parameters
        ----------
        termination_weight : float, optional
            Weight of the surrogate (>= 0); default :attr:`termination_weight` of the task
            (its alive bonus per step, so that reaching the termination boundary costs what
            one lost step of bonus does).  Tasks without a surrogate accept only None or 0.

        Returns
        -------
        TrajectoryCost
            ``TrajectoryCost(Q=0.0, trajectory=TaskCost(self, weight))``: no quadratic terms,
            the trajectory term picklable.
        """
        if termination_weight is None:
            w = self.termination_weight or 0.0
        else:
            w = check_nonneg(termination_weight, "termination_weight")
            if self.termination_weight is None and w != 0.0:
                raise ValueError(f"termination_weight: {self.env_id} has no termination "
                                 f"surrogate (its reward is not flat); give None or 0, "
                                 f"got {termination_weight!r}")
        return TrajectoryCost(Q=0.0, trajectory=TaskCost(self, w))

    # ------------------------------------------------------------------ per task
    def _reward(self, o, a, o2, grad):
        """(r, dr_do, dr_da, dr_do2) on checked arrays; the gradients only when ``grad``."""
        raise NotImplementedError

    def _terminated(self, o2):
        """The termination test on a checked array."""
        return np.zeros(o2.shape[:-1], dtype=bool)

    def _surrogate(self, o2):
        """The termination surrogate (value, gradient) on a checked array."""
        return np.zeros(o2.shape[:-1]), np.zeros_like(o2)

    def _zeros(self, o, a, o2):
        """Zero gradient arrays of the shapes of o, a, o2."""
        return np.zeros_like(o), np.zeros_like(a), np.zeros_like(o2)


class TaskCost:
    """The trajectory term of :meth:`Task.cost` (a picklable callable).

    Parameters
    ----------
    task : Task
    termination_weight : float
        Weight of :meth:`Task.termination_surrogate` (>= 0).

    Notes
    -----
    Called as ``f(states, controls)`` with ``states`` (B, T+1, n_obs) and ``controls``
    (B, T, n_act), it returns ``(value (B,), grad_states (B, T+1, n_obs),
    grad_controls (B, T, n_act))`` (the ``trajectory`` convention of
    :class:`ctrlprop.TrajectoryCost`), vectorised over time and batch; :meth:`value`
    returns the value alone (TrajectoryCost calls it where no gradient is needed).
    """

    def __init__(self, task, termination_weight=0.0):
        if not isinstance(task, Task):
            raise TypeError(f"task must be a ctrlprop.envs.Task, got {type(task).__name__}")
        self.task = task
        self.termination_weight = check_nonneg(termination_weight, "termination_weight")

    def __repr__(self):
        return f"TaskCost({self.task.env_id!r}, termination_weight={self.termination_weight})"

    def __call__(self, states, controls):
        """Value and gradients of the cost on a batch of trajectories.

        Parameters
        ----------
        states : array_like, shape (B, T+1, n_obs)
        controls : array_like, shape (B, T, n_act)

        Returns
        -------
        value : ndarray, shape (B,)
        grad_states : ndarray, shape (B, T+1, n_obs)
        grad_controls : ndarray, shape (B, T, n_act)
        """
        tk = self.task
        X, U = self._check(states, controls)
        r, go, ga, go2 = tk.reward_grad(X[:, :-1], U, X[:, 1:])
        value = -r.sum(axis=1)
        gs = np.zeros_like(X)
        gs[:, :-1] -= go
        gs[:, 1:] -= go2
        w = self.termination_weight
        if w:
            s, gsur = tk.termination_surrogate(X[:, 1:])
            value += w * s.sum(axis=1)
            gs[:, 1:] += w * gsur
        return value, gs, -ga

    def value(self, states, controls):
        """The cost alone, as the first return of a call, without the gradients (what the
        sampling planners' candidates need).

        Parameters
        ----------
        states : array_like, shape (B, T+1, n_obs)
        controls : array_like, shape (B, T, n_act)

        Returns
        -------
        value : ndarray, shape (B,)
        """
        tk = self.task
        X, U = self._check(states, controls)
        value = -tk.reward(X[:, :-1], U, X[:, 1:]).sum(axis=1)
        w = self.termination_weight
        if w:
            value += w * tk.termination_surrogate(X[:, 1:])[0].sum(axis=1)
        return value

    def _check(self, states, controls):
        """states (B, T+1, n_obs) and controls (B, T, n_act) as float arrays, checked."""
        tk = self.task
        X, U = as_float(states, "states"), as_float(controls, "controls")
        for a, name, k, what in ((X, "states", tk.n_obs, "observation"),
                                 (U, "controls", tk.n_act, "action")):
            if a.ndim < 1 or a.shape[-1] != k:
                raise ValueError(f"{name} must have shape (..., {k}) ({k} {what} entries of "
                                 f"{tk.env_id}), got shape {a.shape}")
        if X.ndim != 3 or U.ndim != 3 or X.shape[0] != U.shape[0] \
                or X.shape[1] != U.shape[1] + 1:
            raise ValueError(f"states must be (B, T+1, {tk.n_obs}) and controls "
                             f"(B, T, {tk.n_act}), got states {X.shape}, controls {U.shape}")
        return X, U


# ---------------------------------------------------------------------- the tasks
class PendulumTask(Task):
    """``Pendulum-v1``: swing a torque-limited pendulum up and hold it.

    Observation ``[cos th, sin th, thdot]``, action ``[torque]`` in [-2, 2].  gymnasium
    computes the reward *before* integrating, from the state of ``obs`` and the clipped
    torque::

        r = -(th^2 + 0.1 thdot^2 + 0.001 clip(u, -2, 2)^2),   th = atan2(sin th, cos th)

    (``atan2`` gives gym's ``angle_normalize``, in [-pi, pi]).  ``next_obs`` is not used.
    Exact -- but note gym's observation is float32 while its reward uses the float64 state,
    so the reward of a recorded float32 observation differs by float32 round-off (~1e-6).

    Gradients: ``dr/d(cos, sin)`` is that of ``atan2`` (valid off the unit circle too, e.g.
    for a model's prediction); ``dr/du`` is zero where ``|u| > 2`` (the clip), so a planner
    gets no signal there; at ``th = +-pi`` the reward has a kink (the ``th > 0`` side's
    gradient is used at ``th = pi`` exactly).  Never terminates (truncated at 200 steps).
    """

    env_id = "Pendulum-v1"
    n_obs, n_act = 3, 1
    exact = True
    dt = 0.05
    max_torque = 2.0
    action_low, action_high = np.array([-2.0]), np.array([2.0])
    obs_labels = ("cos(theta)", "sin(theta)", "theta_dot")

    def _reward(self, o, a, o2, grad):
        c, s, w = o[..., 0], o[..., 1], o[..., 2]
        th = np.arctan2(s, c)
        u = np.clip(a[..., 0], -self.max_torque, self.max_torque)
        r = -(th ** 2 + 0.1 * w ** 2 + 0.001 * u ** 2)
        if not grad:
            return (r,)
        go, ga, go2 = self._zeros(o, a, o2)
        rho2 = c * c + s * s
        with np.errstate(divide="ignore", invalid="ignore"):
            k = np.where(rho2 > 0, -2.0 * th / np.where(rho2 > 0, rho2, 1.0), 0.0)
        go[..., 0] = -s * k
        go[..., 1] = c * k
        go[..., 2] = -0.2 * w
        ga[..., 0] = np.where(np.abs(a[..., 0]) <= self.max_torque, -0.002 * u, 0.0)
        return r, go, ga, go2


class InvertedPendulumTask(Task):
    """``InvertedPendulum-v5``: balance a pole on a cart.

    Observation ``[x_cart, th, xdot_cart, thdot]`` (qpos, qvel), action ``[force]`` in
    [-3, 3].  After the step gym terminates when ``not isfinite(next_obs).all() or
    |next_obs[1]| > 0.2`` and rewards ``r = 1 - terminated`` (exact; zero gradient).

    Termination surrogate (for :meth:`Task.cost`): ``(next_obs[1] / 0.2)^2``, the pole angle
    relative to its bound; default weight 1 (the alive bonus).
    """

    env_id = "InvertedPendulum-v5"
    n_obs, n_act = 4, 1
    exact = True
    terminates = True
    dt = 0.04
    action_low, action_high = np.array([-3.0]), np.array([3.0])
    obs_labels = ("x_cart", "theta", "x_cart_dot", "theta_dot")
    max_angle = 0.2
    termination_weight = 1.0

    def _terminated(self, o2):
        return ~np.all(np.isfinite(o2), axis=-1) | (np.abs(o2[..., 1]) > self.max_angle)

    def _reward(self, o, a, o2, grad):
        r = 1.0 - self._terminated(o2)
        return (r, *self._zeros(o, a, o2)) if grad else (r,)

    def _surrogate(self, o2):
        g = np.zeros_like(o2)
        q = o2[..., 1] / self.max_angle
        g[..., 1] = 2.0 * q / self.max_angle
        return q * q, g


class InvertedDoublePendulumTask(Task):
    """``InvertedDoublePendulum-v5``: balance two poles on a cart.

    Observation ``[x, sin q1, sin q2, cos q1, cos q2, xdot, q1dot, q2dot, f]`` (cart
    position, hinge angles -- ``q2`` relative to the first pole --, velocities clipped to
    [-10, 10], constraint force), action ``[force]`` in [-1, 1].  From the model XML (both
    poles 0.6 m, hinges about y at the cart and at the first pole's end, tip site 0.6 m up
    the second pole) the tip is::

        x_tip = x + 0.6 sin q1 + 0.6 sin(q1 + q2),   y_tip = 0.6 cos q1 + 0.6 cos(q1 + q2)

    and after the step gym computes::

        terminated = y_tip <= 1
        r = 10 (1 - terminated) - 0.01 x_tip^2 - (y_tip - 2)^2 - 1e-3 q1dot^2 - 5e-3 q2dot^2

    all from ``next_obs``.  Not exact: gym reads the tip from ``data.site_xpos``, which
    MuJoCo's RK4 step leaves at the positions of its last Runge-Kutta stage, not at the
    final ``qpos`` held by the observation.  Measured on random actions the two tips differ
    by up to ~1e-4 m (median ~7e-6), up to ~6e-4 m when the cart hits its rail limit
    (``|x| = 1``, large constraint accelerations); the reward then differs by up to 6.4
    times that (~2e-4, at the limit ~4e-3), and the termination test can differ only when
    ``y_tip`` is that close to 1 (never in 1000 recorded steps with ~150 terminations).
    Beyond ``|q1dot|, |q2dot| > 10`` the observation (hence the reward) uses the clipped
    velocities.  The tip formula itself is exact (to round-off) against MuJoCo's
    ``mj_kinematics`` on the observation's ``qpos``.

    Termination surrogate: ``((1.2 - y_tip) / 0.2)^2`` (the height lost from upright, 1.2,
    relative to the 0.2 that terminates); default weight 10 (the alive bonus).
    """

    env_id = "InvertedDoublePendulum-v5"
    n_obs, n_act = 9, 1
    exact = False
    terminates = True
    dt = 0.05
    action_low, action_high = np.array([-1.0]), np.array([1.0])
    obs_labels = ("x_cart", "sin(q1)", "sin(q2)", "cos(q1)", "cos(q2)", "x_cart_dot",
                  "q1_dot", "q2_dot", "constraint_force")
    pole_length = 0.6
    min_height = 1.0
    termination_weight = 10.0

    def _tip(self, o2):
        """Tip position and its gradients: xt, yt (...), dxt, dyt (..., n_obs)."""
        L = self.pole_length
        x, s1, s2, c1, c2 = (o2[..., i] for i in range(5))
        s12 = s1 * c2 + c1 * s2
        c12 = c1 * c2 - s1 * s2
        xt = x + L * s1 + L * s12
        yt = L * c1 + L * c12
        dx, dy = np.zeros_like(o2), np.zeros_like(o2)
        dx[..., 0] = 1.0
        dx[..., 1] = L * (1.0 + c2)
        dx[..., 2] = L * c1
        dx[..., 3] = L * s2
        dx[..., 4] = L * s1
        dy[..., 1] = -L * s2
        dy[..., 2] = -L * s1
        dy[..., 3] = L * (1.0 + c2)
        dy[..., 4] = L * c1
        return xt, yt, dx, dy

    def _terminated(self, o2):
        return self._tip(o2)[1] <= self.min_height

    def _reward(self, o, a, o2, grad):
        xt, yt, dx, dy = self._tip(o2)
        v1, v2 = o2[..., 6], o2[..., 7]
        alive = 10.0 * (1.0 - (yt <= self.min_height))
        r = alive - 0.01 * xt ** 2 - (yt - 2.0) ** 2 - 1e-3 * v1 ** 2 - 5e-3 * v2 ** 2
        if not grad:
            return (r,)
        go, ga, _ = self._zeros(o, a, o2)
        go2 = (-0.02 * xt)[..., None] * dx - (2.0 * (yt - 2.0))[..., None] * dy
        go2[..., 6] -= 2e-3 * v1
        go2[..., 7] -= 1e-2 * v2
        return r, go, ga, go2

    def _surrogate(self, o2):
        _, yt, _, dy = self._tip(o2)
        top = 2.0 * self.pole_length
        span = top - self.min_height
        q = (top - yt) / span
        return q * q, (-2.0 * q / span)[..., None] * dy


class ReacherTask(Task):
    """``Reacher-v5``: bring a two-link arm's fingertip to a target.

    Observation ``[cos q0, cos q1, sin q0, sin q1, target_x, target_y, q0dot, q1dot,
    dx, dy]`` with ``(dx, dy)`` fingertip minus target; action ``[tau0, tau1]`` in [-1, 1].
    After the step gym computes ``r = -|fingertip - target| - |action|^2`` (exact: both
    bodies are at height 0.01 so the distance is ``|next_obs[8:10]|``; the action is the
    one given, not clipped).

    Note: gymnasium's docstring says ``reward_control_weight`` defaults to 0.1, but the code
    default is 1 (as in v4), so the control term here has weight 1.

    At a zero distance (the kink of the norm) its gradient is taken as zero.  Never
    terminates (truncated at 50 steps).
    """

    env_id = "Reacher-v5"
    n_obs, n_act = 10, 2
    exact = True
    dt = 0.02
    action_low, action_high = -np.ones(2), np.ones(2)
    obs_labels = ("cos(q0)", "cos(q1)", "sin(q0)", "sin(q1)", "target_x", "target_y",
                  "q0_dot", "q1_dot", "fingertip_minus_target_x", "fingertip_minus_target_y")
    reward_dist_weight = 1.0
    reward_control_weight = 1.0

    def _reward(self, o, a, o2, grad):
        d = o2[..., 8:10]
        dist = np.sqrt(_sq(d))
        r = -self.reward_dist_weight * dist - self.reward_control_weight * _sq(a)
        if not grad:
            return (r,)
        go, _, go2 = self._zeros(o, a, o2)
        inv = np.divide(1.0, dist, out=np.zeros_like(dist), where=dist > 0)
        go2[..., 8:10] = -self.reward_dist_weight * d * inv[..., None]
        return r, go, -2.0 * self.reward_control_weight * a, go2


class _ForwardTask(Task):
    """A locomotion task: forward velocity proxy minus a control cost (see the module)."""

    vx_index = 0           # the x velocity's entry in the observation
    w_next = 0.5           # proxy weight of next_obs's x velocity
    forward_reward_weight = 1.0
    ctrl_cost_weight = 0.0

    def _reward(self, o, a, o2, grad):
        i, w = self.vx_index, self.w_next
        r = self.forward_reward_weight * ((1.0 - w) * o[..., i] + w * o2[..., i]) \
            - self.ctrl_cost_weight * _sq(a)
        r = r + self._bonus(o2)
        if not grad:
            return (r,)
        go, _, go2 = self._zeros(o, a, o2)
        go[..., i] = self.forward_reward_weight * (1.0 - w)
        go2[..., i] = self.forward_reward_weight * w
        return r, go, -2.0 * self.ctrl_cost_weight * a, go2

    def _bonus(self, o2):
        """A piecewise-constant reward of next_obs (zero gradient)."""
        return 0.0


class HalfCheetahTask(_ForwardTask):
    """``HalfCheetah-v5``: run forward.

    Observation (17): ``qpos[1:]`` = ``[rootz, rooty, bthigh, bshin, bfoot, fthigh, fshin,
    ffoot]`` then ``qvel`` (9) starting with the x velocity (entry 8); action (6) in [-1, 1].
    gym: ``r = (x_after - x_before) / dt - 0.1 |action|^2``.  Proxy (the x position is not
    observed): the forward term is ``0.4 obs[8] + 0.6 next_obs[8]`` -- the mean over the 5
    semi-implicit Euler sub-steps of a velocity linear in time.  Measured on random actions
    (4 seeds x 1000 steps) its correlation with gym's reward is 0.982-0.990 (RMS error ~0.12,
    max up to ~1, against a spread of ~0.6-0.75: contacts make the velocity far from linear
    within a step; the plain mean of the two does worse, RMS ~0.18).  The control term is
    exact.  Never terminates.
    """

    env_id = "HalfCheetah-v5"
    n_obs, n_act = 17, 6
    exact = False
    dt = 0.05
    action_low, action_high = -np.ones(6), np.ones(6)
    obs_labels = ("rootz", "rooty", "bthigh", "bshin", "bfoot", "fthigh", "fshin", "ffoot",
                  "rootx_dot", "rootz_dot", "rooty_dot", "bthigh_dot", "bshin_dot",
                  "bfoot_dot", "fthigh_dot", "fshin_dot", "ffoot_dot")
    vx_index = 8
    w_next = 0.6
    ctrl_cost_weight = 0.1


class SwimmerTask(_ForwardTask):
    """``Swimmer-v5``: swim forward in a viscous fluid.

    Observation (8): ``qpos[2:]`` = ``[body_rot, motor1_rot, motor2_rot]`` then ``qvel`` (5)
    ``[x_dot, y_dot, body_rot_dot, motor1_dot, motor2_dot]``; action (2) in [-1, 1].
    gym: ``r = (x_after - x_before) / dt - 1e-4 |action|^2``.  Proxy: the forward term is
    ``(obs[3] + next_obs[3]) / 2`` (trapezoid rule; RK4 integrator).  Measured correlation
    with gym's reward 0.998-0.9997 on random actions (RMS error 0.01-0.025, max ~0.3,
    against a spread of ~0.4).  Never terminates.
    """

    env_id = "Swimmer-v5"
    n_obs, n_act = 8, 2
    exact = False
    dt = 0.04
    action_low, action_high = -np.ones(2), np.ones(2)
    obs_labels = ("body_rot", "motor1_rot", "motor2_rot", "x_dot", "y_dot", "body_rot_dot",
                  "motor1_rot_dot", "motor2_rot_dot")
    vx_index = 3
    w_next = 0.5
    ctrl_cost_weight = 1e-4


class HopperTask(_ForwardTask):
    """``Hopper-v5``: hop forward without falling.

    Observation (11): ``qpos[1:]`` = ``[z, angle, thigh, leg, foot]`` then ``qvel`` clipped to
    [-10, 10] (6) starting with the x velocity (entry 5); action (3) in [-1, 1].  After the
    step gym computes ``healthy = 0.7 < z < inf and -0.2 < angle < 0.2 and all(-100 < s < 100)``
    with ``s = [angle, thigh, leg, foot, qvel]``, ``terminated = not healthy`` and
    ``r = (x_after - x_before) / dt + healthy - 1e-3 |action|^2``.

    * The healthy test is exact from ``next_obs`` (entries 0, 1 and 1..10), except that the
      observation clips velocities at 10 so ``|qvel| >= 100`` cannot be seen (no observable
      case).  NaN entries are unhealthy, as in gym.
    * The control cost is exact (the action as given).
    * The forward term is a proxy: ``(obs[5] + next_obs[5]) / 2`` (trapezoid; RK4),
      correlation ~0.99996 with gym's reward on random actions (RMS error ~0.004, max
      ~0.05, against a spread of ~0.45).

    Termination surrogate: ``(angle / 0.2)^2 + (max(1.25 - z, 0) / 0.55)^2`` (the angle
    relative to its bound and the height lost from standing, 1.25, relative to the 0.55 that
    terminates; one-sided so hopping up costs nothing; continuously differentiable); the
    state range of +-100 is not in it (the joint limits keep the angles far from it).
    Default weight 1 (the healthy reward).
    """

    env_id = "Hopper-v5"
    n_obs, n_act = 11, 3
    exact = False
    terminates = True
    dt = 0.008
    action_low, action_high = -np.ones(3), np.ones(3)
    obs_labels = ("z", "angle", "thigh", "leg", "foot", "x_dot", "z_dot", "angle_dot",
                  "thigh_dot", "leg_dot", "foot_dot")
    vx_index = 5
    w_next = 0.5
    ctrl_cost_weight = 1e-3
    healthy_reward = 1.0
    healthy_z_range = (0.7, np.inf)
    healthy_angle_range = (-0.2, 0.2)
    healthy_state_range = (-100.0, 100.0)
    standing_z = 1.25
    termination_weight = 1.0

    def _terminated(self, o2):
        z, ang, st = o2[..., 0], o2[..., 1], o2[..., 1:]
        (zlo, zhi), (alo, ahi) = self.healthy_z_range, self.healthy_angle_range
        slo, shi = self.healthy_state_range
        healthy = ((zlo < z) & (z < zhi) & (alo < ang) & (ang < ahi)
                   & np.all((slo < st) & (st < shi), axis=-1))
        return ~healthy

    def _bonus(self, o2):
        return self.healthy_reward * (1.0 - self._terminated(o2))

    def _surrogate(self, o2):
        g = np.zeros_like(o2)
        amax = self.healthy_angle_range[1]
        span = self.standing_z - self.healthy_z_range[0]
        qa = o2[..., 1] / amax
        qz = np.maximum(self.standing_z - o2[..., 0], 0.0) / span
        g[..., 1] = 2.0 * qa / amax
        g[..., 0] = -2.0 * qz / span
        return qa * qa + qz * qz, g


TASKS = {t.env_id: t for t in (PendulumTask(), InvertedPendulumTask(),
                               InvertedDoublePendulumTask(), ReacherTask(), HalfCheetahTask(),
                               SwimmerTask(), HopperTask())}
"""The tasks by gymnasium id."""


def task(env_id):
    """The :class:`Task` of a gymnasium environment id.

    Parameters
    ----------
    env_id : str
        One of ``TASKS``: ``"Pendulum-v1"``, ``"InvertedPendulum-v5"``,
        ``"InvertedDoublePendulum-v5"``, ``"Reacher-v5"``, ``"HalfCheetah-v5"``,
        ``"Swimmer-v5"``, ``"Hopper-v5"``.

    Returns
    -------
    Task

    Raises
    ------
    TypeError
        If ``env_id`` is not a string.
    ValueError
        For an unknown id (the message lists the known ones).
    """
    if not isinstance(env_id, str):
        raise TypeError(f"env_id must be a string, got {type(env_id).__name__}: "
                        f"{env_id!r:.60}")
    try:
        return TASKS[env_id]
    except KeyError:
        raise ValueError(f"env_id: unknown task {env_id!r}; known: "
                         f"{', '.join(TASKS)}") from None
