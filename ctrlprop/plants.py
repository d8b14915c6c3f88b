"""True plants in plain numpy: the simulators the scenarios learn from and are judged on.

Four plants, each a small class with a documented state, control, limits and step:

* :class:`PlanarArm` -- forward kinematics of an n-link planar arm (a static map, q -> hand).
* :class:`TruckBackerUpper` -- Nguyen & Widrow's truck and trailer backing up to a dock.
* :class:`Pendulum` -- a torque-limited pendulum (gym ``Pendulum-v1`` physics).
* :class:`Car` -- the car-parking problem of Tassa, Mansard & Todorov (2014), with its costs
  (:func:`car_control_cost`, :func:`car_running_cost`, :func:`car_final_cost`,
  :func:`car_trajectory_cost`) as (value, gradient) functions.

Conventions shared by the dynamical plants (:class:`Plant` subclasses):

* ``step(x, u)`` takes one state ``(n,)`` with one control ``(m,)``, or a batch ``(B, n)`` with
  ``(B, m)`` (or one ``(m,)`` control for the whole batch), and returns the next state(s) in the
  shape of ``x``. Wrong shapes raise ``ValueError``, non-numeric input ``TypeError``.
* Controls outside ``[u_low, u_high]`` raise ``ValueError`` -- nothing is clipped silently --
  unless the plant is built with ``saturate=True``: it then saturates, i.e. clips every control
  to its limits before use. Values within ``1e-9 * (u_high - u_low)`` of a limit (round-off
  from an optimizer) are accepted and set to the limit.
* Angles listed in ``angle_indices`` are returned wrapped to ``[-pi, pi)`` (the truck and the
  pendulum take ``wrap=False`` to keep them continuous instead);
  :meth:`Plant.state_difference` always wraps the angle entries of a difference, so a model
  can be trained on increments without the 2 pi jumps.
* ``jacobians(x, u)`` gives the exact derivatives of ``step`` (for iLQR-style baselines or for
  optimizing on the true dynamics); ``training_data`` makes ``(X = [x, u], Y = x_next)`` pairs;
  ``rollout`` runs open-loop controls and ``simulate`` a feedback policy.
"""

from dataclasses import dataclass

import numpy as np
from .core.checks import as_float, check_callable, check_int, check_nonneg, check_seed
from .core.environment import Box
from .core.simulation import simulate

__all__ = ["wrap_angle", "Plant", "PlantEnv", "Rollout", "PlanarArm", "TruckBackerUpper", "Pendulum", "Car",
           "sabs", "sabs_second", "car_control_cost", "car_running_cost", "car_final_cost",
           "car_trajectory_cost", "CAR_X0", "CAR_T"]

_TWO_PI = 2.0 * np.pi


def wrap_angle(a):
    """Wrap angles (any shape) to ``[-pi, pi)``."""
    return (np.asarray(a, dtype=float) + np.pi) % _TWO_PI - np.pi


def _generator(rng):
    """A numpy Generator from a Generator, a seed (an int >= 0, a SeedSequence or a
    BitGenerator) or None; anything else raises naming ``rng``."""
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(check_seed(rng, "rng"))


@dataclass
class Rollout:
    """Result of :meth:`Plant.simulate`.

    Attributes
    ----------
    states : ndarray, shape (T+1, n) or (B, T+1, n)
        States; after a trajectory stops, its last state is repeated.
    controls : ndarray, shape (T, m) or (B, T, m)
        Controls applied; NaN after a trajectory stopped.
    steps : int or ndarray of int, shape (B,)
        Steps taken before the stop condition held (T if it never did).
    stopped : bool or ndarray of bool, shape (B,)
        Whether the stop condition ended the trajectory.
    """

    states: np.ndarray
    controls: np.ndarray
    steps: np.ndarray
    stopped: np.ndarray


class Plant:
    """Base of the dynamical plants: validation, sampling, data, rollouts.

    Subclasses set ``n_states``, ``n_controls``, ``state_names``, ``control_names``,
    ``angle_indices``, ``dt``, the arrays ``u_low``/``u_high`` (control limits),
    ``state_low``/``state_high`` (box for :meth:`sample_states`) and
    ``start_low``/``start_high`` (box for :meth:`sample_starts`), and implement
    ``_step(x, u)`` and ``_jacobians(x, u)`` on ``(B, n)``/``(B, m)`` arrays.
    """

    n_states = 0
    n_controls = 0
    state_names = ()
    control_names = ()
    angle_indices = ()
    dt = 1.0

    def __init__(self, saturate=False, wrap=True):
        for name, v in (("saturate", saturate), ("wrap", wrap)):
            if not isinstance(v, (bool, np.bool_)):
                raise TypeError(f"{name} must be True or False, got {v!r}")
        self.saturate = bool(saturate)
        self.wrap = bool(wrap)

    # ---- validation -------------------------------------------------------------------------
    def _check_states(self, x, name="x"):
        """Validate states of shape (n,) or (B, n)."""
        x = as_float(x, name)
        if x.ndim not in (1, 2) or x.shape[-1] != self.n_states:
            raise ValueError(f"{type(self).__name__}: {name} must have shape ({self.n_states},) "
                             f"or (B, {self.n_states}), got {x.shape}")
        if not np.all(np.isfinite(x)):
            raise ValueError(f"{type(self).__name__}: {name} contains NaN or inf")
        return x

    def _check_controls(self, u, name="u"):
        """Validate controls of shape (m,) or (B, m) against the limits (or saturate)."""
        u = as_float(u, name)
        if u.ndim not in (1, 2) or u.shape[-1] != self.n_controls:
            raise ValueError(f"{type(self).__name__}: {name} must have shape ({self.n_controls},)"
                             f" or (B, {self.n_controls}), got {u.shape}")
        if not np.all(np.isfinite(u)):
            raise ValueError(f"{type(self).__name__}: {name} contains NaN or inf")
        lo, hi = self.u_low, self.u_high
        if not self.saturate:
            tol = 1e-9 * (hi - lo)
            bad = (u < lo - tol) | (u > hi + tol)
            if bad.any():
                idx = tuple(np.argwhere(bad)[0])
                j = idx[-1]
                raise ValueError(
                    f"{type(self).__name__}: control {self.control_names[j]} = {u[idx]:.6g} is "
                    f"outside its limits [{lo[j]:.6g}, {hi[j]:.6g}] (at index {idx}); build the "
                    f"plant with saturate=True to clip controls to the limits")
        return np.clip(u, lo, hi)

    def _check_pair(self, x, u):
        """Validate a state/control pair; returns batched (B, n), (B, m) and the single flag."""
        x = self._check_states(x)
        u = self._check_controls(u)
        single = x.ndim == 1
        if single and u.ndim == 2:
            raise ValueError(f"{type(self).__name__}: one state of shape {x.shape} takes one "
                             f"control of shape ({self.n_controls},), got u of shape {u.shape}")
        X = x[None] if single else x
        U = np.broadcast_to(u, (X.shape[0], self.n_controls)) if u.ndim == 1 else u
        if U.shape[0] != X.shape[0]:
            raise ValueError(f"{type(self).__name__}: batch sizes differ: x has {X.shape[0]} "
                             f"states, u has {U.shape[0]} controls")
        return X, U, single

    # ---- dynamics ---------------------------------------------------------------------------
    def step(self, x, u):
        """One step of the true dynamics.

        Parameters
        ----------
        x : array_like, shape (n,) or (B, n)
        u : array_like, shape (m,) or (B, m)
            One control may drive a whole batch of states.

        Returns
        -------
        x_next : ndarray, shape of ``x``
        """
        X, U, single = self._check_pair(x, u)
        Xn = self._step(X, U)
        return Xn[0] if single else Xn

    def jacobians(self, x, u):
        """Exact derivatives of :meth:`step`.

        Parameters
        ----------
        x : array_like, shape (n,) or (B, n)
        u : array_like, shape (m,) or (B, m)

        Returns
        -------
        fx : ndarray, shape (n, n) or (B, n, n)
            ``d x_next / d x``.
        fu : ndarray, shape (n, m) or (B, n, m)
            ``d x_next / d u`` (zero for a control held at its limit by ``saturate=True``).
        """
        X, U, single = self._check_pair(x, u)
        A, Bu = self._jacobians(X, U)
        if self.saturate:
            Bu = Bu * ((U > self.u_low) & (U < self.u_high))[:, None, :]
        return (A[0], Bu[0]) if single else (A, Bu)

    def state_difference(self, x, x_next):
        """``x_next - x`` with the angle entries wrapped to ``[-pi, pi)``; shapes broadcast."""
        d = as_float(x_next, "x_next") - as_float(x, "x")
        if d.shape[-1:] != (self.n_states,):
            raise ValueError(f"{type(self).__name__}: states must end in {self.n_states} "
                             f"entries, got difference of shape {d.shape}")
        if self.angle_indices:
            idx = list(self.angle_indices)
            d[..., idx] = wrap_angle(d[..., idx])
        return d

    def _wrap(self, X):
        """Wrap the angle columns of (B, n) states in place; returns X."""
        for i in self.angle_indices:
            X[:, i] = wrap_angle(X[:, i])
        return X

    def _stepped(self, X):
        """Next states as returned by a step: angles wrapped if ``wrap``."""
        return self._wrap(X) if self.wrap else X

    # ---- sampling and data ------------------------------------------------------------------
    def sample_states(self, n, rng=None):
        """``n`` states uniform in ``[state_low, state_high]``, angles wrapped; (n, n_states)."""
        n, g = check_int(n, "n", 1), _generator(rng)
        return self._wrap(g.uniform(self.state_low, self.state_high, (n, self.n_states)))

    def sample_starts(self, n, rng=None):
        """``n`` scenario start states uniform in ``[start_low, start_high]``, (n, n_states)."""
        n, g = check_int(n, "n", 1), _generator(rng)
        return self._wrap(g.uniform(self.start_low, self.start_high, (n, self.n_states)))

    def sample_controls(self, n, rng=None):
        """``n`` controls uniform within the limits, shape (n, n_controls)."""
        n = check_int(n, "n", 1)
        return _generator(rng).uniform(self.u_low, self.u_high, (n, self.n_controls))

    def env(self, max_steps=200, reward=None, terminated=None):
        """This plant as an environment with the gymnasium interface (no gymnasium needed).

        Parameters
        ----------
        max_steps : int
            Episodes are truncated after this many steps.
        reward : callable, optional
            ``reward(x, u, x_next) -> float``; default: the plant's :meth:`reward`.
        terminated : callable, optional
            ``terminated(x_next) -> bool``; default: the plant's own ``terminated`` test
            where it has one, else never.

        Returns
        -------
        PlantEnv
        """
        return PlantEnv(self, max_steps, reward, terminated)

    def reward(self, x, u, x_next):
        """The reward of a step in :meth:`env` (0 unless a plant defines one)."""
        return 0.0

    def training_data(self, n, rng=None, episode_length=None):
        """Transitions from random interaction, for learning a forward model.

        Parameters
        ----------
        n : int
            Number of transitions.
        rng : numpy Generator, int or None
        episode_length : int, optional
            None (default): every transition starts from its own state drawn by
            :meth:`sample_states`, with a uniformly random control. Otherwise: episodes of this
            many steps, each from a :meth:`sample_states` state, with a fresh uniformly random
            control at every step (the episodes are cut to ``n`` transitions in total).

        Returns
        -------
        X : ndarray, shape (n, n_states + n_controls)
            ``[state, control]`` rows.
        Y : ndarray, shape (n, n_states)
            The next states.
        """
        n, g = check_int(n, "n", 1), _generator(rng)
        if episode_length is None:
            x, u = self.sample_states(n, g), self.sample_controls(n, g)
            return np.hstack([x, u]), self._step(x, u)
        T = check_int(episode_length, "episode_length", 1)
        n_ep = -(-n // T)
        U = g.uniform(self.u_low, self.u_high, (n_ep, T, self.n_controls))
        S = self._rollout(self.sample_states(n_ep, g), U)
        X = np.concatenate([S[:, :-1], U], axis=2).reshape(-1, self.n_states + self.n_controls)
        return X[:n], S[:, 1:].reshape(-1, self.n_states)[:n]

    # ---- rollouts ---------------------------------------------------------------------------
    def rollout(self, x0, controls):
        """Open-loop rollout.

        Parameters
        ----------
        x0 : array_like, shape (n,) or (B, n)
        controls : array_like, shape (T, m) or (B, T, m)
            A (T, m) sequence drives every start of a batch.

        Returns
        -------
        states : ndarray, shape (T+1, n) or (B, T+1, n)
            ``states[..., 0, :] = x0``.
        """
        x0 = self._check_states(x0, "x0")
        U = as_float(controls, "controls")
        if U.ndim not in (2, 3) or U.shape[-1] != self.n_controls:
            raise ValueError(f"{type(self).__name__}: controls must have shape (T, "
                             f"{self.n_controls}) or (B, T, {self.n_controls}), got {U.shape}")
        if x0.ndim == 1 and U.ndim == 3:
            raise ValueError(f"{type(self).__name__}: one start x0 takes controls of shape "
                             f"(T, {self.n_controls}), got {U.shape}")
        X0 = x0[None] if x0.ndim == 1 else x0
        if U.ndim == 2:
            U = np.broadcast_to(U, (X0.shape[0],) + U.shape)
        elif U.shape[0] != X0.shape[0]:
            raise ValueError(f"{type(self).__name__}: {X0.shape[0]} starts but controls for "
                             f"{U.shape[0]} trajectories")
        U = self._check_controls(U.reshape(-1, self.n_controls), "controls").reshape(U.shape)
        S = self._rollout(X0, U)
        return S[0] if x0.ndim == 1 else S

    def _rollout(self, X0, U):
        """Roll (B, n) starts through (B, T, m) valid controls; returns (B, T+1, n)."""
        B, T, _ = U.shape
        S = np.empty((B, T + 1, self.n_states))
        S[:, 0] = X0
        for t in range(T):
            S[:, t + 1] = self._step(S[:, t], U[:, t])
        return S

    def simulate(self, x0, policy, n_steps, stop=None):
        """Closed-loop simulation of a feedback policy.

        Parameters
        ----------
        x0 : array_like, shape (n,) or (B, n)
        policy : callable
            ``policy(x) -> u``: called at every step with the current states in the shape of
            ``x0`` (the whole batch, stopped trajectories included; their controls are
            ignored), returns controls ``(m,)`` or ``(B, m)``.
        n_steps : int
            Maximum number of steps T.
        stop : callable, optional
            ``stop(X) -> bool array (B,)`` on (B, n) states, e.g. ``plant.terminated``; a
            trajectory ends at the first state where it holds (checked on ``x0`` too).

        Returns
        -------
        Rollout
        """
        x0 = self._check_states(x0, "x0")
        check_callable(policy, "policy", "policy(x) -> u", allow_none=False)
        T = check_int(n_steps, "n_steps", 1)
        check_callable(stop, "stop", "stop(X) -> bool array (B,)")
        single = x0.ndim == 1
        S, U, steps, stopped = simulate(
            lambda X, U, t: self._step(X, self._check_controls(U, "policy output")),
            lambda X: policy(X[0] if single else X), x0[None] if single else x0, T,
            self.n_controls, stop, name=f"{type(self).__name__}: policy")
        if single:
            return Rollout(S[0], U[0], int(steps[0]), bool(stopped[0]))
        return Rollout(S, U, steps, stopped)


# =============================================================================================
class PlantEnv:
    """A :class:`Plant` behind the gymnasium interface (see :meth:`Plant.env`).

    ``reset(seed=None)`` draws the start from :meth:`Plant.sample_starts` with that seed;
    ``step(action)`` applies :meth:`Plant.step` (out-of-limit actions raise unless the
    plant saturates), and returns ``(x_next, reward, terminated, truncated, {})`` with
    truncation after ``max_steps`` steps.  ``action_space`` is the box of the control
    limits, ``observation_space`` the unbounded box of the states.
    """

    def __init__(self, plant, max_steps=200, reward=None, terminated=None):
        if not isinstance(plant, Plant):
            raise TypeError(f"plant must be a ctrlprop Plant, got {type(plant).__name__}")
        self.plant = plant
        self.max_steps = check_int(max_steps, "max_steps", 1)
        self.reward_fn = check_callable(reward, "reward", "reward(x, u, x_next) -> float")
        self.terminated_fn = check_callable(terminated, "terminated", "terminated(x) -> bool")
        if self.terminated_fn is None and callable(getattr(plant, "terminated", None)):
            self.terminated_fn = plant.terminated
        self.action_space = Box(plant.u_low, plant.u_high)
        inf = np.full(plant.n_states, np.inf)
        self.observation_space = Box(-inf, inf)
        self.state, self.t = None, 0

    def reset(self, seed=None, options=None):
        """Start an episode from a start state drawn with ``seed``: ``(x0, {})``."""
        self.state = self.plant.sample_starts(1, _generator(seed))[0]
        self.t = 0
        return self.state.copy(), {}

    def step(self, action):
        """``(x_next, reward, terminated, truncated, {})``."""
        if self.state is None:
            raise ValueError("call reset() before step()")
        x = self.state
        u = as_float(action, "action")
        x_next = self.plant.step(x, u)
        f = self.reward_fn if self.reward_fn is not None else self.plant.reward
        r = float(f(x, u, x_next))
        term = bool(self.terminated_fn(x_next)) if self.terminated_fn is not None else False
        self.t += 1
        self.state = x_next
        return x_next.copy(), r, term, self.t >= self.max_steps and not term, {}

    def __repr__(self):
        return f"PlantEnv({self.plant!r}, max_steps={self.max_steps})"


class PlanarArm:
    """An n-link planar arm: joint angles q -> end-effector position (a static map).

    Joint ``i`` rotates link ``i`` relative to link ``i-1`` (the first relative to the x-axis,
    counter-clockwise positive); the base is at the origin. With absolute angles
    ``a_i = q_1 + ... + q_i``, the hand is at ``p = sum_i l_i [cos a_i, sin a_i]``.

    Parameters
    ----------
    lengths : sequence of float, default (1.0, 0.8, 0.6)
        Link lengths (positive), one per joint; the scenarios use (1.0, 0.8) and
        (1.0, 0.8, 0.6).
    limits : array_like, shape (n_joints, 2), optional
        Joint limits ``[low, high]`` in radians. Default: the base joint in ``[-pi, pi]`` and
        every other joint in ``[-5 pi/6, 5 pi/6]`` (+-150 degrees). :meth:`fk` computes any
        angles; the limits bound sampling (:meth:`sample_postures`) and are meant as the
        optimizer's bounds (``q_low``, ``q_high``, :meth:`within_limits`).
    """

    def __init__(self, lengths=(1.0, 0.8, 0.6), limits=None):
        lengths = as_float(lengths, "lengths")
        if lengths.ndim != 1 or lengths.size < 1 or not np.all(lengths > 0) \
                or not np.all(np.isfinite(lengths)):
            raise ValueError(f"lengths must be a 1-d sequence of positive link lengths, "
                             f"got {lengths!r}")
        self.lengths = lengths
        self.n_joints = lengths.size
        if limits is None:
            limits = np.tile([-5 * np.pi / 6, 5 * np.pi / 6], (self.n_joints, 1))
            limits[0] = [-np.pi, np.pi]
        limits = as_float(limits, "limits")
        if limits.shape != (self.n_joints, 2) or not np.all(limits[:, 0] < limits[:, 1]):
            raise ValueError(f"limits must have shape ({self.n_joints}, 2) with low < high, "
                             f"got {limits.tolist()}")
        self.q_low, self.q_high = limits[:, 0].copy(), limits[:, 1].copy()

    @property
    def reach(self):
        """Total length of the arm, the radius of its workspace."""
        return float(self.lengths.sum())

    def __repr__(self):
        return f"PlanarArm(lengths={tuple(self.lengths.tolist())})"

    def _check(self, q):
        """Validate postures of shape (..., n_joints)."""
        q = as_float(q, "q")
        if q.ndim < 1 or q.shape[-1] != self.n_joints:
            raise ValueError(f"PlanarArm: q must have shape ({self.n_joints},) or "
                             f"(B, {self.n_joints}), got {q.shape}")
        if not np.all(np.isfinite(q)):
            raise ValueError("PlanarArm: q contains NaN or inf")
        return q

    def fk(self, q):
        """End-effector position.

        Parameters
        ----------
        q : array_like, shape (n_joints,) or (B, n_joints)

        Returns
        -------
        p : ndarray, shape (2,) or (B, 2)
        """
        a = np.cumsum(self._check(q), axis=-1)
        return np.stack([np.cos(a) @ self.lengths, np.sin(a) @ self.lengths], axis=-1)

    def joint_positions(self, q):
        """Positions of the base, every joint and the hand, for drawing.

        Parameters
        ----------
        q : array_like, shape (n_joints,) or (B, n_joints)

        Returns
        -------
        points : ndarray, shape (n_joints + 1, 2) or (B, n_joints + 1, 2)
            ``points[..., 0, :]`` is the base (origin), ``points[..., -1, :]`` the hand.
        """
        a = np.cumsum(self._check(q), axis=-1)
        seg = self.lengths[:, None] * np.stack([np.cos(a), np.sin(a)], axis=-1)
        pts = np.cumsum(seg, axis=-2)
        zero = np.zeros(pts.shape[:-2] + (1, 2))
        return np.concatenate([zero, pts], axis=-2)

    def jacobian(self, q):
        """``d fk / d q``.

        Parameters
        ----------
        q : array_like, shape (n_joints,) or (B, n_joints)

        Returns
        -------
        J : ndarray, shape (2, n_joints) or (B, 2, n_joints)
        """
        # Joint i moves every link k >= i: dp/dq_i = sum_{k>=i} l_k [-sin a_k, cos a_k],
        # a reversed cumulative sum over the links.
        a = np.cumsum(self._check(q), axis=-1)
        dx = -np.flip(np.cumsum(np.flip(self.lengths * np.sin(a), -1), -1), -1)
        dy = np.flip(np.cumsum(np.flip(self.lengths * np.cos(a), -1), -1), -1)
        return np.stack([dx, dy], axis=-2)

    def within_limits(self, q):
        """Whether each posture lies within the joint limits: bool, shape () or (B,)."""
        q = self._check(q)
        return np.all((q >= self.q_low) & (q <= self.q_high), axis=-1)

    def sample_postures(self, n, rng=None):
        """``n`` postures uniform within the joint limits, shape (n, n_joints)."""
        n = check_int(n, "n", 1)
        return _generator(rng).uniform(self.q_low, self.q_high, (n, self.n_joints))

    def training_data(self, n, rng=None):
        """Random postures and their hand positions: ``X`` (n, n_joints), ``Y`` (n, 2)."""
        q = self.sample_postures(n, rng)
        return q, self.fk(q)

    def grid_targets(self, n_side=15, r_min=0.15, r_max=0.95):
        """A square grid of targets across the workspace, kept inside an annulus.

        Parameters
        ----------
        n_side : int
            Grid points per side of the square ``[-reach, reach]^2``.
        r_min, r_max : float
            Keep targets with ``r_min * reach <= |p| <= r_max * reach`` (fractions of the
            reach; the defaults stay clear of the singular outer boundary and the base).

        Returns
        -------
        targets : ndarray, shape (K, 2)
        """
        n_side = check_int(n_side, "n_side", 1)
        if not 0 <= r_min < r_max <= 1:
            raise ValueError(f"need 0 <= r_min < r_max <= 1, got r_min={r_min}, r_max={r_max}")
        g = np.linspace(-self.reach, self.reach, n_side)
        P = np.stack(np.meshgrid(g, g), axis=-1).reshape(-1, 2)
        r = np.hypot(P[:, 0], P[:, 1])
        return P[(r >= r_min * self.reach) & (r <= r_max * self.reach)]


# =============================================================================================
class TruckBackerUpper(Plant):
    """Nguyen & Widrow's truck backer-upper: back a truck and trailer to a loading dock.

    Kinematics (as given; the cab's rear axle carries the hitch, which moves with the cab)::

        hitch' = s [cos th0, sin th0],   th0' = (s / L) tan(phi),   th1' = (s / d1) sin(th0 - th1)

    with cab length ``L = 1``, trailer length ``d1 = 4`` and speed ``s = -0.1`` (backing up),
    integrated by one explicit Euler step of unit time, so the hitch moves 0.1 per step.

    State ``[x, y, th0, th1]`` (the N&W choice, so that the dock is a point of the state
    space): ``(x, y)`` is the rear of the trailer (the point that docks), ``th0`` the cab
    heading and ``th1`` the trailer heading, the direction from the trailer's rear to the hitch,
    both in radians, counter-clockwise from +x, wrapped to ``[-pi, pi)`` (unless
    ``wrap=False``; the checks wrap angle differences themselves). The hitch is
    ``(x, y) + d1 [cos th1, sin th1]`` (:meth:`hitch`). A step converts to the hitch, takes the
    Euler step above and converts back with the new trailer angle. (The no-slip condition of
    the trailer's rear wheels is what gives ``th1'``; backing moves the rear along
    ``-[cos th1, sin th1]`` up to O(s^2).)

    Control ``[phi]``, the steering angle in ``[-pi/4, pi/4]``.

    Yard ``x in [0, 40]``, ``y in [-10, 10]``; the dock is at ``x = 0, y = 0`` with trailer
    angle 0 (the trailer then points along +x, backed straight in). Checks: :meth:`at_dock`
    (the rear reached the dock line ``x <= 0``), :meth:`jackknifed` (``|th0 - th1| > 90 deg``),
    :meth:`out_of_yard`, :meth:`terminated` (any of the three) and :meth:`docked` (success);
    :meth:`dock_errors` gives the position and angle errors used as metrics.

    Parameters
    ----------
    saturate : bool, default False
        Clip steering to its limits instead of raising.
    wrap : bool, default True
        Wrap the angles of the states :meth:`step` returns; False keeps them continuous.
    """

    n_states, n_controls = 4, 1
    state_names = ("x", "y", "theta_cab", "theta_trailer")
    control_names = ("steering",)
    angle_indices = (2, 3)
    dt = 1.0
    L, d1, s = 1.0, 4.0, -0.1
    x_range, y_range = (0.0, 40.0), (-10.0, 10.0)

    def __init__(self, saturate=False, wrap=True):
        super().__init__(saturate, wrap)
        self.u_low, self.u_high = np.array([-np.pi / 4]), np.array([np.pi / 4])
        # sample_states: the yard plus a margin, any heading, cab-trailer angle within 90 deg
        self.state_low = np.array([-5.0, -15.0, -np.pi, -np.pi / 2])
        self.state_high = np.array([45.0, 15.0, np.pi, np.pi / 2])

    def __repr__(self):
        return f"TruckBackerUpper(saturate={self.saturate}, wrap={self.wrap})"

    # The sampled boxes are over [x, y, th0, th1 - th0]; the last column becomes th1.
    def _from_relative(self, Z):
        """(B, 4) [x, y, th0, th1 - th0] -> wrapped states."""
        Z[:, 3] += Z[:, 2]
        return self._wrap(Z)

    def sample_states(self, n, rng=None):
        """States for model learning: ``x in [-5, 45]``, ``y in [-15, 15]``, ``th0`` uniform,
        ``th1 - th0 in [-pi/2, pi/2]`` (not jackknifed). Shape (n, 4)."""
        n, g = check_int(n, "n", 1), _generator(rng)
        return self._from_relative(g.uniform(self.state_low, self.state_high, (n, 4)))

    def sample_starts(self, n, rng=None, x_range=(10.0, 40.0), y_range=(-10.0, 10.0)):
        """Scenario starts: ``x in [10, 40]``, ``y in [-10, 10]`` (the yard),
        ``th0 in [0, 2 pi)``, ``th1 - th0 in [-pi/4, pi/4]``; shape (n, 4), angles wrapped."""
        g = _generator(rng)
        lo = [x_range[0], y_range[0], 0.0, -np.pi / 4]
        hi = [x_range[1], y_range[1], _TWO_PI, np.pi / 4]
        return self._from_relative(g.uniform(lo, hi, (check_int(n, "n", 1), 4)))

    def hitch(self, x):
        """Hitch position (cab rear axle), shape (..., 2), from states (..., 4)."""
        x = as_float(x, "x")
        return x[..., :2] + self.d1 * np.stack([np.cos(x[..., 3]), np.sin(x[..., 3])], -1)

    def _step(self, X, U):
        x, y, th0, th1 = X.T
        hx = x + self.d1 * np.cos(th1) + self.s * np.cos(th0)
        hy = y + self.d1 * np.sin(th1) + self.s * np.sin(th0)
        th0n = th0 + self.s / self.L * np.tan(U[:, 0])
        th1n = th1 + self.s / self.d1 * np.sin(th0 - th1)
        return self._stepped(np.stack([hx - self.d1 * np.cos(th1n),
                                       hy - self.d1 * np.sin(th1n), th0n, th1n], axis=1))

    def _jacobians(self, X, U):
        # x' = x + d1 cos th1 + s cos th0 - d1 cos th1',  th1' = th1 + (s/d1) sin(th0 - th1)
        # y' = y + d1 sin th1 + s sin th0 - d1 sin th1',  th0' = th0 + (s/L) tan phi
        _, _, th0, th1 = X.T
        B = X.shape[0]
        c = self.s / self.d1 * np.cos(th0 - th1)
        th1n = th1 + self.s / self.d1 * np.sin(th0 - th1)
        dth1n = np.stack([c, 1.0 - c], axis=1)                   # d th1' / d [th0, th1]
        A = np.zeros((B, 4, 4))
        A[:, 0, 0] = A[:, 1, 1] = A[:, 2, 2] = 1.0
        A[:, 0, 2] = -self.s * np.sin(th0)
        A[:, 0, 3] = -self.d1 * np.sin(th1)
        A[:, 1, 2] = self.s * np.cos(th0)
        A[:, 1, 3] = self.d1 * np.cos(th1)
        A[:, 0, 2:] += self.d1 * np.sin(th1n)[:, None] * dth1n
        A[:, 1, 2:] -= self.d1 * np.cos(th1n)[:, None] * dth1n
        A[:, 3, 2:] = dth1n
        Bu = np.zeros((B, 4, 1))
        Bu[:, 2, 0] = self.s / self.L / np.cos(U[:, 0]) ** 2
        return A, Bu

    # ---- checks (states (4,) or (B, 4); results () or (B,)) ---------------------------------
    def jackknifed(self, x):
        """Cab-trailer angle beyond 90 degrees: ``|wrap(th0 - th1)| > pi/2``."""
        x = self._check_states(x)
        return np.abs(wrap_angle(x[..., 2] - x[..., 3])) > np.pi / 2

    def at_dock(self, x):
        """The trailer's rear reached the dock line: ``x <= 0``."""
        return self._check_states(x)[..., 0] <= 0.0

    def out_of_yard(self, x):
        """The trailer's rear left the yard other than through the dock line:
        ``x > 40`` or ``|y| > 10``."""
        x = self._check_states(x)
        return (x[..., 0] > self.x_range[1]) | (x[..., 1] < self.y_range[0]) \
            | (x[..., 1] > self.y_range[1])

    def terminated(self, x):
        """End of an episode: at the dock, jackknifed or out of the yard."""
        return self.at_dock(x) | self.jackknifed(x) | self.out_of_yard(x)

    def dock_errors(self, x):
        """Errors to the dock: ``(hypot(x, y), |wrap(th1)|)``, each shape () or (B,)."""
        x = self._check_states(x)
        return np.hypot(x[..., 0], x[..., 1]), np.abs(wrap_angle(x[..., 3]))

    def docked(self, x, pos_tol=1.0, angle_tol=np.deg2rad(10.0)):
        """Success: at the dock, not jackknifed, within ``pos_tol`` (yard units) of the dock
        point and ``angle_tol`` (radians) of the dock angle."""
        pos, ang = self.dock_errors(x)
        return self.at_dock(x) & ~self.jackknifed(x) & (pos <= pos_tol) & (ang <= angle_tol)


# =============================================================================================
class Pendulum(Plant):
    """A torque-limited pendulum with the physics of gym's ``Pendulum-v1``.

    State ``[theta, theta_dot]``: ``theta = 0`` is upright, counter-clockwise positive, wrapped
    to ``[-pi, pi)`` (hanging down is ``-pi``; ``wrap=False`` keeps it continuous);
    ``theta_dot`` in rad/s. Control ``[u]``, the torque at the pivot, ``|u| <= 2``. The
    pendulum is a uniform rod (mass ``m = 1``, length ``l = 1``, inertia ``m l^2 / 3`` about
    the pivot, ``g = 10``), stepped by semi-implicit Euler with ``dt = 0.05``::

        theta_dot' = clip(theta_dot + (3 g / (2 l) sin(theta) + 3 u / (m l^2)) dt, -8, 8)
        theta'     = wrap(theta + theta_dot' dt)          (gym leaves theta unwrapped)

    The velocity saturates at ``max_speed = 8`` rad/s as in gym (``max_speed=None`` removes
    the limit). Gravity alone (``mgl/2 = 5`` N m at horizontal) beats the torque limit, so
    swinging up takes several swings. Helpers: :meth:`upright` and :meth:`time_to_upright`.

    Parameters
    ----------
    saturate : bool, default False
        Clip the torque to ``[-2, 2]`` instead of raising.
    max_speed : float or None, default 8.0
    wrap : bool, default True
        Wrap ``theta``; False keeps it continuous.
    """

    n_states, n_controls = 2, 1
    state_names = ("theta", "theta_dot")
    control_names = ("torque",)
    angle_indices = (0,)
    g, m, l, dt, max_torque = 10.0, 1.0, 1.0, 0.05, 2.0

    def __init__(self, saturate=False, max_speed=8.0, wrap=True):
        super().__init__(saturate, wrap)
        if max_speed is not None and check_nonneg(max_speed, "max_speed") == 0:
            raise ValueError(f"max_speed must be positive or None, got {max_speed!r}")
        self.max_speed = None if max_speed is None else float(max_speed)
        self.u_low, self.u_high = np.array([-self.max_torque]), np.array([self.max_torque])
        v = 8.0 if max_speed is None else self.max_speed
        self.state_low, self.state_high = np.array([-np.pi, -v]), np.array([np.pi, v])
        # starts: hanging down (theta = pi) within 0.1 rad, 0.1 rad/s
        self.start_low = np.array([np.pi - 0.1, -0.1])
        self.start_high = np.array([np.pi + 0.1, 0.1])

    def __repr__(self):
        return (f"Pendulum(saturate={self.saturate}, max_speed={self.max_speed}, "
                f"wrap={self.wrap})")

    def _accel(self, th, u):
        """Angular acceleration of the rod."""
        return 1.5 * self.g / self.l * np.sin(th) + 3.0 / (self.m * self.l ** 2) * u

    def _step(self, X, U):
        th, thd = X.T
        thd_n = thd + self._accel(th, U[:, 0]) * self.dt
        if self.max_speed is not None:
            thd_n = np.clip(thd_n, -self.max_speed, self.max_speed)
        return self._stepped(np.stack([th + thd_n * self.dt, thd_n], axis=1))

    def _jacobians(self, X, U):
        # d theta_dot' = [1.5 g/l cos(theta) dt, 1, 3/(m l^2) dt] (zero where it saturates);
        # d theta' = [1, 0, 0] + dt * d theta_dot'
        th, thd = X.T
        B = X.shape[0]
        free = np.ones(B)
        if self.max_speed is not None:
            free = (np.abs(thd + self._accel(th, U[:, 0]) * self.dt) < self.max_speed) * 1.0
        dv = np.stack([1.5 * self.g / self.l * np.cos(th) * self.dt, np.ones(B)], 1)
        dv *= free[:, None]
        du = free * 3.0 / (self.m * self.l ** 2) * self.dt
        A = np.empty((B, 2, 2))
        A[:, 1] = dv
        A[:, 0] = self.dt * dv
        A[:, 0, 0] += 1.0
        Bu = np.stack([self.dt * du, du], axis=1)[:, :, None]
        return A, Bu

    @property
    def hanging(self):
        """The hanging-down rest state ``[-pi, 0]``."""
        return np.array([-np.pi, 0.0])

    def reward(self, x, u, x_next):
        """Pendulum-v1's reward of a step: ``-(theta^2 + 0.1 theta_dot^2 + 0.001 u^2)`` at
        the state before the step (theta wrapped, u clipped to the limits)."""
        th, thd = wrap_angle(x[0]), x[1]
        u = np.clip(u[0], self.u_low[0], self.u_high[0])
        return -float(th ** 2 + 0.1 * thd ** 2 + 0.001 * u ** 2)

    def upright(self, x, tol=0.1):
        """``|wrap(theta)| <= tol``, for states (..., 2); bool, shape ``x.shape[:-1]``."""
        x = as_float(x, "x")
        if x.shape[-1:] != (2,):
            raise ValueError(f"Pendulum: states must have shape (..., 2), got {x.shape}")
        return np.abs(wrap_angle(x[..., 0])) <= tol

    def time_to_upright(self, states, tol=0.1):
        """Time from which the pendulum is upright within ``tol`` and stays so to the end.

        Parameters
        ----------
        states : array_like, shape (T+1, 2) or (B, T+1, 2)
            A trajectory, ``states[..., k, :]`` at time ``k * dt``.
        tol : float
            Radians.

        Returns
        -------
        t : float or ndarray, shape (B,)
            ``k * dt`` for the first ``k`` from which every state is upright; ``inf`` if the
            last state is not upright.
        """
        states = as_float(states, "states")
        if states.ndim not in (2, 3) or states.shape[-1] != 2:
            raise ValueError(f"Pendulum: states must have shape (T+1, 2) or (B, T+1, 2), "
                             f"got {states.shape}")
        up = self.upright(states, tol)
        # first index of the final all-upright run: one past the last non-upright state
        n = up.shape[-1]
        last_bad = np.where(~up, np.arange(n), -1).max(axis=-1)
        t = np.where(last_bad == n - 1, np.inf, (last_bad + 1) * self.dt)
        return float(t) if np.ndim(t) == 0 else t


# =============================================================================================
class Car(Plant):
    """The car-parking problem of Tassa, Mansard & Todorov (ICRA 2014).

    "Control-Limited Differential Dynamic Programming", the ``demo_car`` example of Tassa's
    iLQG code. State ``[x, y, theta, v]``: ``(x, y)`` the middle of the rear axle, ``theta``
    the heading (radians, NOT wrapped: the final cost measures ``theta`` itself, so
    ``3 pi / 2`` and ``-pi / 2`` differ, as in the original), ``v`` the front-wheel speed.
    Controls ``[w, a]``: front-wheel angle ``|w| <= 0.5`` rad and front-wheel acceleration
    ``|a| <= 2``. With axle distance ``d = 2`` and ``h = 0.03`` s, one step is::

        f      = h v                                          front-wheel rolling distance
        b      = d + f cos w - sqrt(d^2 - (f sin w)^2)        back-wheel rolling distance
        dtheta = asin(sin(w) f / d)                           change of heading
        [x, y, theta, v]' = [x, y, theta, v] + [b cos theta, b sin theta, dtheta, h a]

    The step is defined while ``|h v sin w| <= d`` (``|v| < 139`` at the steering limit);
    beyond it a ``ValueError`` is raised. The scenario starts at :data:`CAR_X0`
    ``= [1, 1, 3 pi/2, 0]`` with horizon :data:`CAR_T` ``= 500`` and the costs of
    :func:`car_trajectory_cost`.

    Parameters
    ----------
    saturate : bool, default False
        Clip the controls to their limits instead of raising.
    """

    n_states, n_controls = 4, 2
    state_names = ("x", "y", "theta", "v")
    control_names = ("wheel_angle", "acceleration")
    angle_indices = ()
    d, dt = 2.0, 0.03

    def __init__(self, saturate=False):
        super().__init__(saturate, wrap=False)
        self.u_low, self.u_high = np.array([-0.5, -2.0]), np.array([0.5, 2.0])
        # sample_states: the parking area around the origin; heading over the range the
        # task needs (from 3 pi/2 down to 0, with a margin); moderate speeds
        self.state_low = np.array([-5.0, -5.0, -np.pi, -4.0])
        self.state_high = np.array([5.0, 5.0, 2 * np.pi, 4.0])
        # starts: CAR_X0 within +-0.5 in position, +-pi/8 in heading, at rest
        self.start_low = CAR_X0 - np.array([0.5, 0.5, np.pi / 8, 0.0])
        self.start_high = CAR_X0 + np.array([0.5, 0.5, np.pi / 8, 0.0])

    def __repr__(self):
        return f"Car(saturate={self.saturate})"

    def _parts(self, X, U):
        """Rolling distances and their pieces for (B, 4) states and (B, 2) controls."""
        w = U[:, 0]
        f = self.dt * X[:, 3]
        fs = f * np.sin(w)
        if np.any(np.abs(fs) > self.d):
            k = int(np.argmax(np.abs(fs) > self.d))
            raise ValueError(f"Car: |h v sin(w)| = {abs(fs[k]):.4g} exceeds the axle distance "
                             f"{self.d} (v = {X[k, 3]:.4g}, w = {w[k]:.4g}): the step is "
                             f"undefined")
        S = np.sqrt(self.d ** 2 - fs ** 2)
        b = self.d + f * np.cos(w) - S
        return w, f, S, b

    def _step(self, X, U):
        w, f, S, b = self._parts(X, U)
        th = X[:, 2]
        return X + np.stack([b * np.cos(th), b * np.sin(th),
                             np.arcsin(np.sin(w) * f / self.d), self.dt * U[:, 1]], axis=1)

    def _jacobians(self, X, U):
        # With S = sqrt(d^2 - f^2 sin^2 w):
        #   db/df = cos w + f sin^2 w / S,      db/dw = -f sin w + f^2 sin w cos w / S
        #   ddth/df = sin w / S,                ddth/dw = f cos w / S,      df/dv = h
        w, f, S, b = self._parts(X, U)
        th = X[:, 2]
        sw, cw, c, s = np.sin(w), np.cos(w), np.cos(th), np.sin(th)
        db_df = cw + f * sw ** 2 / S
        db_dw = -f * sw + f ** 2 * sw * cw / S
        B = X.shape[0]
        A = np.zeros((B, 4, 4))
        A[:, [0, 1, 2, 3], [0, 1, 2, 3]] = 1.0
        A[:, 0, 2], A[:, 1, 2] = -b * s, b * c
        A[:, 0, 3], A[:, 1, 3] = self.dt * db_df * c, self.dt * db_df * s
        A[:, 2, 3] = self.dt * sw / S
        Bu = np.zeros((B, 4, 2))
        Bu[:, 0, 0], Bu[:, 1, 0] = db_dw * c, db_dw * s
        Bu[:, 2, 0] = f * cw / S
        Bu[:, 3, 1] = self.dt
        return A, Bu

    def distance_to_origin(self, x):
        """``hypot(x, y)`` of states (..., 4)."""
        x = as_float(x, "x")
        return np.hypot(x[..., 0], x[..., 1])


# ---- car-parking costs (Tassa's demo_car), batched (value, gradient) ------------------------
CAR_X0 = np.array([1.0, 1.0, 3 * np.pi / 2, 0.0])
"""Start state of the car-parking scenario."""
CAR_T = 500
"""Horizon of the car-parking scenario (steps of 0.03 s)."""

_CU = 1e-2 * np.array([1.0, 0.01])          # control cost coefficients
_CF = np.array([0.1, 0.1, 1.0, 0.3])        # final cost coefficients
_PF = np.array([0.01, 0.01, 0.01, 1.0])     # final cost smoothness scales
_CX = 1e-3 * np.array([1.0, 1.0])           # running cost coefficients (on x, y)
_PX = np.array([0.1, 0.1])                  # running cost smoothness scales


def sabs(x, p):
    """Smooth absolute value (pseudo-Huber) ``sqrt(x^2 + p^2) - p`` and its derivative.

    Parameters
    ----------
    x : array_like
    p : array_like, broadcastable to ``x``
        Positive scales: quadratic ``x^2 / (2p)`` for ``|x| << p``, ``|x| - p`` beyond.

    Returns
    -------
    value, derivative : ndarray, broadcast shape
    """
    x, p = as_float(x, "x"), as_float(p, "p")
    r = np.sqrt(x * x + p * p)
    return r - p, x / r


def _last(a, k, name):
    """Validate an array whose last axis has k entries."""
    a = as_float(a, name)
    if a.ndim < 1 or a.shape[-1] != k:
        raise ValueError(f"{name} must have shape (..., {k}), got {a.shape}")
    return a


def car_control_cost(u):
    """Control cost ``1e-2 * (w^2 + 0.01 a^2)``.

    Parameters
    ----------
    u : array_like, shape (..., 2)

    Returns
    -------
    cost : ndarray, shape (...)
    grad : ndarray, shape (..., 2)
    """
    u = _last(u, 2, "u")
    return (u * u) @ _CU, 2.0 * _CU * u


def car_running_cost(x):
    """Running cost ``1e-3 * (sabs(x, 0.1) + sabs(y, 0.1))``, pulling toward tight turns.

    Parameters
    ----------
    x : array_like, shape (..., 4)

    Returns
    -------
    cost : ndarray, shape (...)
    grad : ndarray, shape (..., 4)  (zero in theta and v)
    """
    x = _last(x, 4, "x")
    v, d = sabs(x[..., :2], _PX)
    g = np.zeros_like(x)
    g[..., :2] = _CX * d
    return v @ _CX, g


def car_final_cost(x):
    """Final cost ``[0.1, 0.1, 1, 0.3] . sabs(x, [0.01, 0.01, 0.01, 1])``.

    Parameters
    ----------
    x : array_like, shape (..., 4)

    Returns
    -------
    cost : ndarray, shape (...)
    grad : ndarray, shape (..., 4)
    """
    x = _last(x, 4, "x")
    v, d = sabs(x, _PF)
    return v @ _CF, _CF * d


def car_trajectory_cost(states, controls):
    """Total car-parking cost of trajectories, as in ``demo_car``'s ``car_cost``.

    ``J = sum_{t<T} [lu(u_t) + lx(x_t)] + lx(x_T) + lf(x_T)`` with ``lu`` =
    :func:`car_control_cost`, ``lx`` = :func:`car_running_cost`, ``lf`` =
    :func:`car_final_cost` (the original evaluates the final step with zero control, so the
    running state cost counts at ``x_T`` too). Its signature is that of a custom
    ``trajectory`` term of a trajectory cost: batched value and both gradients; its
    ``hessian`` attribute gives the exact Hessian blocks (used by iLQR/DDP,
    :func:`ctrlprop.objectives.ddp_terms.custom_hessian_blocks`).

    Parameters
    ----------
    states : array_like, shape (T+1, 4) or (B, T+1, 4)
    controls : array_like, shape (T, 2) or (B, T, 2)

    Returns
    -------
    J : float or ndarray, shape (B,)
    dJ_dstates : ndarray, shape of ``states``
    dJ_dcontrols : ndarray, shape of ``controls``
    """
    X, U = _last(states, 4, "states"), _last(controls, 2, "controls")
    if X.ndim not in (2, 3) or U.ndim != X.ndim or X.shape[:-2] != U.shape[:-2] \
            or X.shape[-2] != U.shape[-2] + 1:
        raise ValueError(f"states (T+1, 4) or (B, T+1, 4) need controls (T, 2) or (B, T, 2) "
                         f"with the same B; got states {X.shape}, controls {U.shape}")
    cu, gu = car_control_cost(U)
    cx, gx = car_running_cost(X)
    cf, gf = car_final_cost(X[..., -1, :])
    gx[..., -1, :] += gf
    J = cu.sum(-1) + cx.sum(-1) + cf
    return (float(J) if np.ndim(J) == 0 else J), gx, gu


def sabs_second(x, p):
    """Second derivative of :func:`sabs`: ``p^2 / (x^2 + p^2)^(3/2)`` (broadcast shape)."""
    x, p = as_float(x, "x"), as_float(p, "p")
    return p * p / (x * x + p * p) ** 1.5


def _car_trajectory_hessian(states, controls):
    """Exact step-diagonal Hessian blocks of :func:`car_trajectory_cost` (it has no
    cross-step terms, so they are its whole Hessian).

    Parameters
    ----------
    states : array_like, shape (B, T+1, 4)
    controls : array_like, shape (B, T, 2)

    Returns
    -------
    h_xx : ndarray, shape (B, T+1, 4, 4)
        Diagonal: the running cost's ``1e-3 sabs''(x, 0.1), 1e-3 sabs''(y, 0.1)`` at every
        step, plus the final cost's ``[0.1, 0.1, 1, 0.3] sabs''`` at x_T.
    h_uu : ndarray, shape (B, T, 2, 2)
        ``diag(2e-2, 2e-4)``.
    h_ux : ndarray, shape (B, T, 2, 4)
        Zero.
    """
    X, U = _last(states, 4, "states"), _last(controls, 2, "controls")
    if X.ndim != 3 or U.ndim != 3 or X.shape[0] != U.shape[0] or X.shape[1] != U.shape[1] + 1:
        raise ValueError(f"states must be (B, T+1, 4) and controls (B, T, 2), got states "
                         f"{X.shape}, controls {U.shape}")
    B, T = U.shape[:2]
    d = np.zeros(X.shape)
    d[..., :2] = _CX * sabs_second(X[..., :2], _PX)
    d[:, -1] += _CF * sabs_second(X[:, -1], _PF)
    hxx = d[..., :, None] * np.eye(4)
    huu = np.broadcast_to(np.diag(2.0 * _CU), (B, T, 2, 2)).copy()
    return hxx, huu, np.zeros((B, T, 2, 4))


# the Hessian protocol of custom trajectory terms (ctrlprop.objectives.ddp_terms)
car_trajectory_cost.hessian = _car_trajectory_hessian
