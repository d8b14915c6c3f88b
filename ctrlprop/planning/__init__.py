"""The entry points: training, control optimisation, trajectory optimisation, MPC and
controller training.  Imports the layers below (core, objectives, solvers)."""

from .fit import fit
from .controls import optimize_controls, ControlResult
from .trajectory import optimize_trajectory, TrajectoryResult
from .mpc import mpc, MPCResult, MPCError
from .controller import train_controller, closed_loop, ControllerResult

__all__ = ["fit", "optimize_controls", "ControlResult", "optimize_trajectory",
           "TrajectoryResult", "mpc", "MPCResult", "MPCError", "train_controller",
           "closed_loop", "ControllerResult"]
