"""Objectives: a frozen or trainable network turned into what solvers ask for (value and
gradient, residuals, Jacobians, Hessian products), for weights, controls, trajectories and
controllers.  Imports the core only."""

from .weights import WeightObjective, StreamedObjective
from .control import ControlObjective
from .cost import TrajectoryCost
from .trajectory import Dynamics, TrajectoryObjective, bptt
from .controller import ControllerObjective
from .ensemble import EnsembleObjective
from .constraints import StateBounds, PathConstraint

__all__ = ["WeightObjective", "StreamedObjective", "ControlObjective", "TrajectoryCost", "Dynamics",
           "TrajectoryObjective", "bptt", "ControllerObjective", "StateBounds", "PathConstraint",
           "EnsembleObjective"]
