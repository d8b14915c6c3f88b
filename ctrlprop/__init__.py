"""ctrlprop: back-propagation through a learned model, to the weights and to the controls.

Layers (imports run downward only)::

    planning     fit, optimize_controls, optimize_trajectory, mpc, Planner, train_controller,
                 collect, evaluate, fit_dynamics, learn_and_plan, TransitionWriter,
                 TransitionStore (transitions on disk; zarr imported lazily)
    solvers      method registry, Result / ConvergenceWarning / status codes, scipy
                 dispatch, batched Levenberg-Marquardt, batched L-BFGS, Adam, starts
    objectives   WeightObjective, ControlObjective, TrajectoryCost, Dynamics, ...
    core         Network, engine, transfer table, persistence, scaling, checks, the
                 environment protocol (gymnasium's interface, by duck typing), Transitions,
                 out-of-core arrays read in row blocks (arrays, by duck typing)

    beside:      plants (simulators), envs (gymnasium's environments and their task costs,
                 gymnasium imported lazily), plot (matplotlib, imported lazily)
"""

__version__ = "0.2.0"

from .core import (Transfer, register_transfer, get_transfer, transfer_names, Network, Ensemble,
                   StaleTraceError, save, load, check_gradients, check_objective,
                   numerical_gradient, learn_scaling, data_scaling, standardize,
                   blas_threads, auto_threads, use_compiled, compiled_available)
from .core.environment import Box, is_environment
from .core.transitions import Transitions
from .core.parallel import ParallelError
from .objectives import (WeightObjective, StreamedObjective, ControlObjective,
                         TrajectoryCost, Dynamics, TrajectoryObjective, bptt, EnsembleObjective,
                         ControllerObjective, StateBounds, PathConstraint)
from .solvers import Result, ConvergenceWarning, STATUS, METHODS
from .planning import (fit, optimize_controls, ControlResult, optimize_trajectory,
                       TrajectoryResult, mpc, Planner, MPCResult, MPCError, collect, evaluate,
                       CollectError, fit_dynamics, learn_and_plan, LearnResult, LearnError,
                       TransitionWriter, TransitionStore, train_controller, closed_loop,
                       ClosedLoopResult, ControllerResult)
from .planning import sweep, run_script
from .plants import PlanarArm, TruckBackerUpper, Pendulum, Car, PlantEnv, wrap_angle
from . import plants, plot, envs   # plot imports matplotlib, envs gymnasium, lazily
