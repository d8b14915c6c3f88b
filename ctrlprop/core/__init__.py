"""The network core: transfer functions, structure, the level-batched engine, persistence,
scaling, gradient checks, input validation and BLAS thread control.

Imports only numpy, scipy and threadpoolctl; nothing above it (objectives, solvers,
planning) is imported here.
"""

from .transfer import Transfer, register_transfer, get_transfer, transfer_names
from .engine import Plan, Trace, SecondOrder, StaleTraceError
from .network import Network
from .ensemble import Ensemble, EnsembleTrace, save, load
from .gradcheck import check_gradients, check_objective, numerical_gradient
from .scaling import learn_scaling, data_scaling, standardize
from .threads import blas_threads, auto_threads
from .compiled import use_compiled, compiled_available

__all__ = ["Transfer", "register_transfer", "get_transfer", "transfer_names", "Plan", "Trace",
           "SecondOrder", "StaleTraceError", "Network", "Ensemble", "EnsembleTrace", "save", "load", "check_gradients",
           "check_objective", "numerical_gradient", "learn_scaling", "data_scaling",
           "standardize", "blas_threads", "auto_threads", "use_compiled", "compiled_available"]
