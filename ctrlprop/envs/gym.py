"""Making the gymnasium environments of :mod:`ctrlprop.envs` (gymnasium imported lazily).

gymnasium (with MuJoCo for the ``*-v5`` tasks) is an optional dependency, the ``gym``
extra: ``pip install 'ctrlprop[gym]'``.  Nothing in :mod:`ctrlprop` imports it but
:func:`make`, when called.
"""

__all__ = ["make"]

_NEEDS = "needs gymnasium with MuJoCo: pip install 'ctrlprop[gym]'"


def make(env_id, **kwargs):
    """``gymnasium.make(env_id, **kwargs)``, with a clear error when gymnasium is missing.

    Parameters
    ----------
    env_id : str
        A gymnasium id, e.g. ``"Reacher-v5"`` (see :data:`ctrlprop.envs.TASKS` for the ids
        that have a :class:`~ctrlprop.envs.Task`).
    **kwargs
        Passed to ``gymnasium.make`` (e.g. ``render_mode``, ``max_episode_steps``).

    Returns
    -------
    gymnasium.Env

    Raises
    ------
    ImportError
        When gymnasium is not installed, or MuJoCo is not for a MuJoCo task; the message
        names the extra ``ctrlprop[gym]``.
    """
    try:
        import gymnasium
    except ImportError:
        raise ImportError(f"ctrlprop.envs.make({env_id!r}) {_NEEDS}") from None
    if isinstance(env_id, str) and env_id.endswith("-v5"):
        try:
            import mujoco  # noqa: F401  (the MuJoCo tasks)
        except ImportError:
            raise ImportError(f"ctrlprop.envs.make({env_id!r}) {_NEEDS}") from None
    return gymnasium.make(env_id, **kwargs)
