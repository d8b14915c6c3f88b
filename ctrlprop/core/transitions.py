"""Recorded interaction with an environment: one row per step.

Row k is the transition ``(obs_k, action_k) -> next_obs_k`` with its reward and the
environment's ``terminated``/``truncated`` flags, and ``episode_k`` the episode it belongs
to.  Rows of one episode are contiguous and in time order; an episode's last row has
``terminated`` or ``truncated`` set unless the recording stopped inside it.
"""

import numpy as np

from .checks import as_float, check_int
from .io import read_arrays, write_arrays

__all__ = ["Transitions"]

_KIND, _VERSION = "ctrlprop.Transitions", 1
_FIELDS = ("obs", "actions", "next_obs", "rewards", "terminated", "truncated", "episode")


class Transitions:
    """Transitions recorded from an environment (see :func:`ctrlprop.collect`).

    Parameters
    ----------
    obs : array_like, shape (N, n_obs)
    actions : array_like, shape (N, n_act)
        The actions as they were sent to the environment.
    next_obs : array_like, shape (N, n_obs)
    rewards : array_like, shape (N,)
    terminated, truncated : array_like of bool, shape (N,)
    episode : array_like of int, shape (N,)
        Episode index of every row, non-decreasing.

    Attributes
    ----------
    The parameters, as read-only arrays, plus ``n_obs``, ``n_act``.
    """

    def __init__(self, obs, actions, next_obs, rewards, terminated, truncated, episode):
        O, A, O2 = (as_float(a, n) for a, n in ((obs, "obs"), (actions, "actions"),
                                                (next_obs, "next_obs")))
        if O.ndim != 2 or A.ndim != 2 or O2.shape != O.shape or A.shape[0] != O.shape[0]:
            raise ValueError(f"obs and next_obs must be (N, n_obs) and actions (N, n_act) with "
                             f"one N, got {O.shape}, {O2.shape} and {A.shape}")
        N = O.shape[0]
        R = as_float(rewards, "rewards")
        flags = []
        for a, name in ((terminated, "terminated"), (truncated, "truncated")):
            f = np.asarray(a)
            if f.shape != (N,) or f.dtype != bool:
                raise ValueError(f"{name} must be a bool array of shape ({N},), got "
                                 f"{f.dtype} array of shape {f.shape}")
            flags.append(f)
        E = np.asarray(episode)
        if R.shape != (N,):
            raise ValueError(f"rewards must have shape ({N},), got {R.shape}")
        if E.shape != (N,) or not (np.issubdtype(E.dtype, np.integer) or N == 0):
            raise ValueError(f"episode must be an integer array of shape ({N},), got "
                             f"{E.dtype} array of shape {E.shape}")
        if N and (np.any(np.diff(E) < 0) or E[0] < 0):
            raise ValueError("episode indices must be non-negative and non-decreasing "
                             "(rows of an episode are contiguous, in time order)")
        for a, name in ((O, "obs"), (A, "actions"), (O2, "next_obs"), (R, "rewards")):
            if not np.all(np.isfinite(a)):
                raise ValueError(f"{name} contains NaN or inf")
        self.n_obs, self.n_act = O.shape[1], A.shape[1]
        arrays = (O, A, O2, R, flags[0], flags[1], E.astype(np.int64))
        for name, a in zip(_FIELDS, arrays):
            a = np.array(a)
            a.flags.writeable = False
            setattr(self, name, a)

    @classmethod
    def empty(cls, n_obs, n_act):
        """No rows, for n_obs observations and n_act actions."""
        n, m = check_int(n_obs, "n_obs", 1), check_int(n_act, "n_act", 1)
        return cls(np.empty((0, n)), np.empty((0, m)), np.empty((0, n)), np.empty(0),
                   np.zeros(0, bool), np.zeros(0, bool), np.zeros(0, np.int64))

    def __len__(self):
        return self.obs.shape[0]

    @property
    def n_episodes(self):
        """Number of (possibly partial) episodes."""
        return int(np.unique(self.episode).size)

    def episode_ids(self):
        """The episode indices present, in order."""
        return np.unique(self.episode)

    def returns(self):
        """Sum of rewards per episode, in the order of :meth:`episode_ids`."""
        ids, inv = np.unique(self.episode, return_inverse=True)
        return np.bincount(inv, weights=self.rewards, minlength=ids.size)

    def select(self, episodes):
        """The rows of the given episode indices (a Transitions)."""
        keep = np.isin(self.episode, np.asarray(episodes, dtype=np.int64))
        return Transitions(*(getattr(self, f)[keep] for f in _FIELDS))

    def __getitem__(self, rows):
        """Rows by a slice (episode order is kept)."""
        if not isinstance(rows, slice):
            raise TypeError(f"Transitions are sliced by rows (a slice); use select(episodes) "
                            f"for episodes, got {type(rows).__name__}")
        return Transitions(*(getattr(self, f)[rows] for f in _FIELDS))

    @staticmethod
    def concatenate(parts):
        """One Transitions from several, in order; each part's episodes are renumbered
        after the previous parts' so that no two parts share an episode index."""
        parts = list(parts)
        if not parts or not all(isinstance(p, Transitions) for p in parts):
            raise TypeError("concatenate needs a non-empty sequence of Transitions, got "
                            + (", ".join(type(p).__name__ for p in parts) or "nothing"))
        dims = {(p.n_obs, p.n_act) for p in parts}
        if len(dims) > 1:
            raise ValueError(f"cannot concatenate transitions of different sizes "
                             f"(n_obs, n_act): {sorted(dims)}")
        cols = {f: [] for f in _FIELDS}
        offset = 0
        for p in parts:
            for f in _FIELDS[:-1]:
                cols[f].append(getattr(p, f))
            if len(p):
                ep = p.episode - p.episode[0] + offset
                offset = int(ep[-1]) + 1
            else:
                ep = p.episode
            cols["episode"].append(ep)
        return Transitions(*(np.concatenate(cols[f]) for f in _FIELDS))

    def __add__(self, other):
        if not isinstance(other, Transitions):
            return NotImplemented
        return Transitions.concatenate([self, other])

    def training_pairs(self, residual=True):
        """Model-training pairs ``X = [obs, actions]`` (N, n_obs + n_act) and ``Y``:
        ``next_obs - obs`` when ``residual`` (the increment a residual
        :class:`~ctrlprop.Dynamics` predicts), else ``next_obs``."""
        X = np.hstack([self.obs, self.actions])
        Y = self.next_obs - self.obs if residual else self.next_obs.copy()
        return X, Y

    def save(self, path):
        """Write to ``path`` (npz; the name is used as given)."""
        write_arrays(path, _KIND, _VERSION, {f: getattr(self, f) for f in _FIELDS})

    @classmethod
    def load(cls, path):
        """Read transitions written by :meth:`save`; a corrupt or foreign file raises a
        ValueError naming the file, inconsistent arrays a ValueError naming the array."""
        d = read_arrays(path, _KIND, _VERSION, _FIELDS)
        try:
            return cls(*(d[f] for f in _FIELDS))
        except (TypeError, ValueError) as e:
            raise ValueError(f"{path}: invalid transitions: {e}") from None

    def __eq__(self, other):
        return isinstance(other, Transitions) and all(
            np.array_equal(getattr(self, f), getattr(other, f)) for f in _FIELDS)

    def __repr__(self):
        return (f"Transitions({len(self)} rows, {self.n_episodes} episodes, "
                f"n_obs={self.n_obs}, n_act={self.n_act})")
