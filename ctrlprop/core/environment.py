"""The environment protocol: gymnasium's interface, recognised by what an object has.

gymnasium is never imported here.  An *environment* is any object with

* ``reset(seed=None) -> (obs, info)``,
* ``step(action) -> (obs, reward, terminated, truncated, info)``,
* ``action_space`` and ``observation_space``, Boxes: objects with ``low``, ``high`` and
  ``shape`` (gymnasium's ``spaces.Box``, or :class:`Box` below).

:class:`Environment` wraps one with the checks every loop needs: observations come back
as finite float64 vectors (n_obs,), actions go in as float vectors (n_act,) of the
action space's dtype, rewards are floats, and a bad value raises a ValueError naming the
step.  Observations are the model's states; actions are its controls.
"""

import numpy as np

from .checks import as_float, check_box, check_int

__all__ = ["Box", "is_environment", "Environment", "episode_seed", "as_environment"]


class Box:
    """A box of real vectors, ``low <= x <= high``: the part of gymnasium's
    ``spaces.Box`` that ctrlprop uses, so that built-in plants offer the environment
    interface without gymnasium.

    Parameters
    ----------
    low, high : array_like, shape (k,)
        Bounds (``-inf``/``inf`` for none), ``low <= high``.
    """

    def __init__(self, low, high):
        self.low, self.high = check_box(low, high, what="a Box")
        self.shape = self.low.shape
        self.dtype = np.dtype(np.float64)

    def contains(self, x):
        """True when ``x`` has the box's shape and lies within it."""
        x = np.asarray(x, dtype=float)
        return bool(x.shape == self.shape and np.all(x >= self.low) and np.all(x <= self.high))

    def sample(self, rng=None):
        """One point drawn uniformly (the box must be bounded); ``rng`` a Generator or seed."""
        if not (np.all(np.isfinite(self.low)) and np.all(np.isfinite(self.high))):
            raise ValueError(f"cannot sample uniformly from an unbounded Box {self}")
        g = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        return g.uniform(self.low, self.high)

    def __eq__(self, other):
        return (isinstance(other, Box) and np.array_equal(self.low, other.low)
                and np.array_equal(self.high, other.high))

    def __repr__(self):
        return f"Box(low={self.low.tolist()}, high={self.high.tolist()})"


def _is_box(space):
    return all(hasattr(space, a) for a in ("low", "high", "shape"))


def is_environment(obj):
    """True when ``obj`` has the gymnasium interface (reset, step and two Box spaces)."""
    return (callable(getattr(obj, "reset", None)) and callable(getattr(obj, "step", None))
            and _is_box(getattr(obj, "action_space", None))
            and _is_box(getattr(obj, "observation_space", None)))


def episode_seed(seed, episode):
    """The reset seed of episode ``episode`` of a run seeded by ``seed``: derived from the
    pair (so episode k starts the same way however the episodes are split up)."""
    return int(np.random.SeedSequence([check_int(seed, "seed", 0),
                                                  int(episode)]).generate_state(1)[0])


class Environment:
    """An environment with checked inputs and outputs.

    Parameters
    ----------
    env : object
        An object with the gymnasium interface (see the module docstring).  Its action and
        observation spaces must be one-dimensional Boxes.
    name : str
        What the environment is called in error messages.

    Attributes
    ----------
    env : the wrapped object
    n_obs, n_act : int
    low, high : ndarray (n_act,)
        The action space's bounds (float64).
    """

    def __init__(self, env, name="env"):
        if isinstance(env, Environment):
            env = env.env
        if not is_environment(env):
            raise TypeError(f"{name} must have the gymnasium interface (reset(seed=...), "
                            f"step(action), action_space and observation_space Boxes), got "
                            f"{type(env).__name__}")
        self.env, self.name = env, name
        a, o = env.action_space, env.observation_space
        if len(a.shape) != 1 or len(o.shape) != 1:
            raise ValueError(f"{name}: ctrlprop needs vector spaces, got action space shape "
                             f"{a.shape} and observation space shape {o.shape}")
        self.n_act, self.n_obs = int(a.shape[0]), int(o.shape[0])
        self.low = np.asarray(a.low, dtype=np.float64).reshape(self.n_act)
        self.high = np.asarray(a.high, dtype=np.float64).reshape(self.n_act)
        self.action_dtype = np.dtype(getattr(a, "dtype", np.float64) or np.float64)

    @property
    def bounded(self):
        """True when every action has finite limits."""
        return bool(np.all(np.isfinite(self.low)) and np.all(np.isfinite(self.high)))

    def bounds(self):
        """The action limits ``(low, high)``, each (n_act,)."""
        return self.low.copy(), self.high.copy()

    def _obs(self, obs, what):
        o = np.asarray(obs, dtype=np.float64)
        if o.shape != (self.n_obs,):
            raise ValueError(f"{self.name}: {what} returned an observation of shape {o.shape}, "
                             f"expected ({self.n_obs},) (its observation_space)")
        if not np.all(np.isfinite(o)):
            raise ValueError(f"{self.name}: {what} returned a non-finite observation {o}")
        return o.copy()

    def reset(self, seed=None):
        """Reset with ``seed``; the first observation (n_obs,) as float64."""
        out = self.env.reset(seed=seed)
        if not (isinstance(out, tuple) and len(out) == 2):
            raise ValueError(f"{self.name}.reset(seed=...) must return (obs, info), got "
                             f"{type(out).__name__}")
        return self._obs(out[0], "reset")

    def action(self, u):
        """``u`` as the action to send: (n_act,) in the action space's dtype."""
        a = as_float(u, "action")
        if a.shape != (self.n_act,):
            raise ValueError(f"{self.name}: an action must have shape ({self.n_act},), got "
                             f"{a.shape}")
        return a.astype(self.action_dtype) if self.action_dtype != np.float64 else a.copy()

    def step(self, action, k=None):
        """Apply ``action`` (from :meth:`action`); ``(obs, reward, terminated, truncated)``."""
        where = "step" if k is None else f"step {k}"
        out = self.env.step(action)
        if not (isinstance(out, tuple) and len(out) == 5):
            raise ValueError(f"{self.name}.step(action) must return (obs, reward, terminated, "
                             f"truncated, info), got {type(out).__name__}"
                             + (f" of length {len(out)}" if isinstance(out, tuple) else ""))
        obs, r, term, trunc, _ = out
        try:
            r = float(r)
        except (TypeError, ValueError):
            raise ValueError(f"{self.name}: {where} returned a non-numeric reward "
                             f"{r!r:.40}") from None
        if not np.isfinite(r):
            raise ValueError(f"{self.name}: {where} returned a non-finite reward {r}")
        return self._obs(obs, where), r, bool(term), bool(trunc)

    def __repr__(self):
        return f"Environment({self.env!r})"


def as_environment(system, x0, seed, name):
    """The :class:`Environment` of ``system`` when it is one, else None.

    The check every loop that takes "a plant or an environment" makes: an environment
    starts from its own ``reset(seed=...)``, so ``x0`` must be None and ``seed`` None or an
    int >= 0; any other system starts from ``x0`` and takes no ``seed``.
    """
    if not is_environment(system):
        if seed is not None:
            raise ValueError(f"seed= resets an environment; this {name} is not one (it "
                             f"starts from x0)")
        return None
    env = Environment(system, name)
    check_int(seed, "seed", 0, allow_none=True)
    if x0 is not None:
        raise ValueError(f"an environment starts from its own reset(seed=...): pass "
                         f"x0=None (and seed=) for an environment {name}")
    return env
