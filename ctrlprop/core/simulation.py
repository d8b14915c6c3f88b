"""Closed-loop simulation: the one loop every simulator and controller evaluation runs.

For a batch of B states, at every step t: ``u_t = policy(x_t)`` for all trajectories,
``x_{t+1} = step(x_t, u_t, t)`` for those still running, and a trajectory ends at the
first state where ``stop(x)`` holds (checked on x_0 too); a stopped trajectory repeats its
last state and has NaN controls from then on.
"""

import numpy as np

from .checks import as_float

__all__ = ["simulate", "check_stop"]


def check_stop(stop, X):
    """Evaluate a stop condition on (B, n) states, checking it returns a (B,) bool array."""
    s = np.asarray(stop(X))
    if s.shape != (X.shape[0],) or s.dtype != bool:
        raise ValueError(f"stop must return a bool array of shape ({X.shape[0]},), "
                         f"got {s.dtype} array of shape {s.shape}")
    return s


def simulate(step, policy, X0, n_steps, m, stop=None, name="policy"):
    """Run a feedback policy in closed loop on a batch.

    Parameters
    ----------
    step : callable
        ``step(X, U, t) -> X_next`` for the running trajectories, X (b, n), U (b, m).
    policy : callable
        ``policy(X) -> U`` on all B states (B, n) (stopped ones included; their controls
        are ignored), returning (B, m) or (m,) (shared).
    X0 : ndarray, shape (B, n)
    n_steps : int
        Maximum number of steps T.
    m : int
        Number of controls.
    stop : callable, optional
        ``stop(X) -> bool (B,)``.
    name : str
        What the policy is called in error messages.

    Returns
    -------
    states : ndarray (B, T+1, n)
    controls : ndarray (B, T, m)
    steps : ndarray of int (B,)
        Steps taken before the stop condition held (T if it never did).
    stopped : ndarray of bool (B,)
    """
    B, n = X0.shape
    T = n_steps
    S = np.empty((B, T + 1, n))
    U = np.full((B, T, m), np.nan)
    S[:, 0] = X0
    active = ~check_stop(stop, X0) if stop is not None else np.ones(B, bool)
    stopped = ~active
    steps = np.zeros(B, dtype=int)
    for t in range(T):
        if not active.any():
            S[:, t + 1:] = S[:, t:t + 1]
            break
        u = as_float(policy(S[:, t]), f"{name} output")
        if u.shape == (m,):
            u = np.broadcast_to(u, (B, m))
        if u.shape != (B, m):
            raise ValueError(f"{name} must return controls of shape ({m},) or ({B}, {m}), "
                             f"got {u.shape}")
        S[:, t + 1] = S[:, t]
        S[active, t + 1] = step(S[active, t], u[active], t)
        U[active, t] = u[active]
        steps += active
        if stop is not None:
            ended = active & check_stop(stop, S[:, t + 1])
            stopped |= ended
            active &= ~ended
    return S, U, steps, stopped
