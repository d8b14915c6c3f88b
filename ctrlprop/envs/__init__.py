"""Differentiable task costs equivalent to gymnasium rewards (gymnasium itself optional).

* :class:`Task`, :data:`TASKS`, :func:`task` -- the reward, its gradients, the termination
  test and a planning :class:`ctrlprop.TrajectoryCost` of ``Pendulum-v1``,
  ``InvertedPendulum-v5``, ``InvertedDoublePendulum-v5``, ``Reacher-v5``,
  ``HalfCheetah-v5``, ``Swimmer-v5`` and ``Hopper-v5`` (numpy only; see
  :mod:`ctrlprop.envs.tasks` for what is exact and what is a proxy).
* :func:`make` -- ``gymnasium.make``, importing gymnasium only when called
  (``pip install 'ctrlprop[gym]'``).
"""

from .tasks import Task, TaskCost, task, TASKS
from .gym import make

__all__ = ["Task", "TaskCost", "task", "TASKS", "make"]
