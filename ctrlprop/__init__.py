"""ctrlprop: back-propagation through a learned model, to the weights and to the controls."""

from .transfer import Transfer, register_transfer, get_transfer, transfer_names
from .network import Network
from .engine import StaleTraceError

__version__ = "0.1.0"
from .io import save, load
from .gradcheck import check_gradients, check_objective, numerical_gradient
from .plants import PlanarArm, TruckBackerUpper, Pendulum, Car, wrap_angle
from . import plants, plot   # plot imports matplotlib lazily, inside its functions
from .objectives import WeightObjective
from .train import fit
from .scaling import learn_scaling, data_scaling, standardize
from .threads import blas_threads, auto_threads
from .control import ControlObjective
from .control_batch import ControlResult, optimize_controls
from .trajcost import TrajectoryCost
from .trajectory import Dynamics, TrajectoryObjective, bptt
from .trajopt import optimize_trajectory, TrajectoryResult
from .mpc import mpc, MPCResult, MPCError
from .controller import ControllerObjective, ControllerResult, train_controller, closed_loop
