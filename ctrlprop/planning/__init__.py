"""The entry points: training, control optimisation, trajectory optimisation, MPC,
controller training, acting in environments (collect, fit_dynamics, learn_and_plan), and
transitions on disk (TransitionWriter, TransitionStore; zarr imported lazily).  Imports the
layers below (core, objectives, solvers)."""

from .fit import fit
from .controls import optimize_controls, ControlResult
from .trajectory import optimize_trajectory, TrajectoryResult
from .mpc import mpc, Planner, MPCResult, MPCError
from .episodes import collect, evaluate, CollectError
from .learning import fit_dynamics, learn_and_plan, LearnResult, LearnError
from .store import TransitionWriter, TransitionStore
from .controller import train_controller, closed_loop, ClosedLoopResult, ControllerResult
from .sweep import sweep, run_script

__all__ = ["fit", "optimize_controls", "ControlResult", "optimize_trajectory",
           "TrajectoryResult", "mpc", "Planner", "MPCResult", "MPCError", "collect", "evaluate",
           "CollectError", "fit_dynamics", "learn_and_plan", "LearnResult", "LearnError",
           "TransitionWriter", "TransitionStore",
           "train_controller", "closed_loop", "ClosedLoopResult", "ControllerResult",
           "sweep", "run_script"]
