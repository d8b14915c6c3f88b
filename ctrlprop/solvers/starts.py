"""Start points of every solve: the default start, the check of a given one, and restarts.

One rule for all entry points (controls, trajectories):

* ``u0=None``: the middle of the bounds where both ends are finite, else 0 moved into the
  bounds;
* a given ``u0`` must lie inside the bounds (it is never clipped);
* ``restarts=R`` adds R random starts per problem: uniform within the bounds where both
  ends are finite, else ``u0 + N(0, 1)`` clipped into the bounds; with ``init_scale=s``
  given, ``u0 + s N(0, 1)`` clipped for every variable; drawn from
  ``numpy.random.default_rng(seed)``, so a seed gives the same starts every time.
"""

import numpy as np

from ..core.checks import check_nonneg, check_seed

# check_seed is defined in core.checks (Network.init_weights uses it too); re-exported here
__all__ = ["default_start", "random_starts", "check_seed"]


def default_start(lo, hi):
    """The default start for bounds ``lo``, ``hi`` (arrays of one shape)."""
    both = np.isfinite(lo) & np.isfinite(hi)
    mid = 0.5 * (np.where(both, lo, 0.0) + np.where(both, hi, 0.0))
    return np.where(both, mid, np.clip(0.0, lo, hi))


def random_starts(U0, lo, hi, restarts, seed=0, init_scale=None):
    """``(K, restarts + 1, ...)``: start 0 of problem k is ``U0[k]``, the others random.

    Parameters
    ----------
    U0 : ndarray, shape (K, ...)
        The first start of every problem.
    lo, hi : ndarray, broadcastable to U0
    restarts : int
    seed : int or numpy Generator
    init_scale : float, optional
        None (default): draws uniform within two finite bounds, else ``U0 + N(0, 1)``
        clipped to the bound there is.  A number s: ``U0 + s N(0, 1)`` clipped to the
        bounds, for every variable (also those with two finite bounds: starts near U0).
    """
    near = init_scale is not None
    init_scale = 1.0 if init_scale is None else check_nonneg(init_scale, "init_scale")
    seed = check_seed(seed)
    S = np.repeat(U0[:, None], restarts + 1, axis=1)
    if restarts == 0:
        return S
    rng = np.random.default_rng(seed)
    lo, hi = np.broadcast_to(lo, U0.shape)[:, None], np.broadcast_to(hi, U0.shape)[:, None]
    shape = (U0.shape[0], restarts) + U0.shape[1:]
    both = np.isfinite(lo) & np.isfinite(hi) & (not near)
    uni = np.where(both, lo, 0.0) + np.where(both, hi - lo, 0.0) * rng.random(shape)
    noise = np.clip(U0[:, None] + init_scale * rng.standard_normal(shape), lo, hi)
    S[:, 1:] = np.where(both, uni, noise)
    return S
