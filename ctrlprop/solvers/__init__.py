"""Solvers and the conventions every entry point shares: the method registry, the Result
type with its status codes and ConvergenceWarning, the callback protocol, scipy dispatch,
start points, progress, and ctrlprop's own batched methods.  Imports the core and the
objectives' public interfaces only."""

from .result import Result, ConvergenceWarning, STATUS
from .methods import METHODS, Method, resolve
from .batch_lbfgs import batch_lbfgs
from .lbfgsb import lbfgsb
from .batch_lm import solve_lm
from .adam import adam
from .sampling import cem, mppi

__all__ = ["Result", "ConvergenceWarning", "STATUS", "METHODS", "Method", "resolve",
           "batch_lbfgs", "lbfgsb", "solve_lm", "adam", "cem", "mppi"]
