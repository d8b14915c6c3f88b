"""Solvers: ctrlprop's batched methods next to scipy.optimize's.  Imports the core and the
objectives' public interfaces only."""

from .batch_lbfgs import batch_lbfgs
from .batch_lm import solve_lm

__all__ = ["batch_lbfgs", "solve_lm"]
