"""ctrlprop: back-propagation through a learned model, to the weights and to the controls.

Layers (imports run downward only)::

    planning     fit, optimize_controls, optimize_trajectory, mpc, train_controller
    solvers      method registry, Result / ConvergenceWarning / status codes, scipy
                 dispatch, batched Levenberg-Marquardt, batched L-BFGS, Adam, starts
    objectives   WeightObjective, ControlObjective, TrajectoryCost, Dynamics, ...
    core         Network, engine, transfer table, persistence, scaling, checks

    beside:      plants (simulators), plot (matplotlib, imported lazily)
"""

__version__ = "0.2.0"

from .core import (Transfer, register_transfer, get_transfer, transfer_names, Network,
                   StaleTraceError, save, load, check_gradients, check_objective,
                   numerical_gradient, learn_scaling, data_scaling, standardize,
                   blas_threads, auto_threads)
from .objectives import (WeightObjective, ControlObjective, TrajectoryCost, Dynamics,
                         TrajectoryObjective, bptt, ControllerObjective)
from .solvers import Result, ConvergenceWarning, STATUS, METHODS
from .planning import (fit, optimize_controls, ControlResult, optimize_trajectory,
                       TrajectoryResult, mpc, MPCResult, MPCError, train_controller,
                       closed_loop, ControllerResult)
from .plants import PlanarArm, TruckBackerUpper, Pendulum, Car, wrap_angle
from . import plants, plot   # plot imports matplotlib lazily, inside its functions
