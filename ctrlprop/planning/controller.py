"""Controller training through a frozen model (Nguyen & Widrow; Jordan & Rumelhart's
"distal teacher"), and closed-loop runs of a controller.

:func:`train_controller` minimizes the mean closed-loop trajectory cost of
:class:`~ctrlprop.ControllerObjective` (the cost back-propagated through the model and the
controller at every step) over the controller's weights with a gradient method of
``scipy.optimize.minimize``.  :func:`closed_loop` runs a controller on a model or a plant
(the one loop of :func:`ctrlprop.core.simulation.simulate`).
"""

import numpy as np

from ..core.checks import as_float, check_int, check_state
from ..core.environment import as_environment
from ..core.network import Network
from ..core.simulation import simulate
from ..core.threads import blas_threads
from ..objectives.controller import ControllerObjective, check_goals
from ..objectives.trajectory import Dynamics
from ..solvers.methods import resolve
from ..solvers.progress import Progress
from ..solvers.result import Notifier, Result, warn_unless_success
from ..solvers.scipy_solve import run_minimize, solver_options

__all__ = ["train_controller", "closed_loop", "ClosedLoopResult", "ControllerResult", "CONTROLLER_METHODS"]

CONTROLLER_METHODS = ("L-BFGS-B", "BFGS", "CG", "TNC", "SLSQP")


class ControllerResult(Result):
    """Result of :func:`train_controller` (a :class:`~ctrlprop.Result`).

    Attributes
    ----------
    x : ndarray (n_weights,)
        The trained weights, also in ``controller.weights``.
    fun : float
        F at x: the mean trajectory cost (plus weight decay).
    costs : ndarray (B,)
        The trajectory cost of every initial state.
    states : ndarray (B, T+1, n)
    controls : ndarray (B, T, m)
        The closed loop through the model with the trained controller.
    controller : Network
    history : dict
        ``"fun"``: F at the start and after every iteration.
    success, status, message, nit, nfev, method
    """


def train_controller(model, controller, x0, horizon, cost=None, *, goal=None, exo=None,
                     l2=0.0, method=None, maxiter=None, options=None, callback=None,
                     progress=False):
    """Train a controller network through a frozen dynamics model (distal teacher).

    Parameters
    ----------
    model, controller, x0, horizon, cost, goal, exo, l2
        As :class:`~ctrlprop.ControllerObjective`.
    method : str, optional
        None (the default) is "L-BFGS-B"; any of ``CONTROLLER_METHODS`` (gradient methods
        of ``scipy.optimize.minimize``; the objective has no Hessian product, so the
        Newton methods are not offered).
    maxiter : int, optional
        minimize's ``maxiter`` (TNC: evaluations); None: scipy's default.
    options : dict, optional
        Other ``minimize`` options (gtol, maxcor, ...).
    callback : callable, optional
        ``callback(intermediate_result)`` after every iteration with a Result holding
        ``x`` (weights), ``fun`` and ``nit``; True or StopIteration stops training.
    progress : bool
        Show a progress line (needs tqdm).

    Returns
    -------
    ControllerResult
        ``controller.weights`` holds the trained weights afterwards; the model is untouched.

    Warns
    -----
    ConvergenceWarning
        When training ends without success (not when the callback stopped it).
    """
    method = resolve(method, CONTROLLER_METHODS, "L-BFGS-B", "train_controller")
    options, maxiter = solver_options(options, maxiter)
    notify = Notifier(callback)
    obj = ControllerObjective(model, controller, x0, horizon, cost, goal, exo, l2)
    with Progress(progress, "train_controller", maxiter) as bar, blas_threads(1):
        res = run_minimize(method, obj, controller.weights.copy(), maxiter=maxiter,
                           options=options, notify=notify.with_bar(bar))
    controller.weights = res.x
    S, U = obj.rollout(res.x)
    out = ControllerResult(x=res.x.copy(), fun=obj.value(res.x), costs=obj.costs(res.x),
                           states=S, controls=U, controller=controller,
                           history=res.history, success=bool(res.success),
                           status=int(res.status), message=str(res.message),
                           nit=int(res.nit), nfev=int(res.nfev), method=method.name)
    warn_unless_success(out, "train_controller")
    return out


class ClosedLoopResult(Result):
    """Result of :func:`closed_loop` (a :class:`~ctrlprop.Result`).

    Attributes
    ----------
    states : ndarray, (steps+1, n) or (B, steps+1, n)
        After a stop (an environment's end of episode) the last state is repeated.
    x, controls : ndarray, (steps, m) or (B, steps, m)
        NaN after a stop.
    steps : int or ndarray of int (B,)
        Steps taken.
    rewards : ndarray (steps,) or None
        An environment's rewards (0 after the end of the episode); None otherwise.
    episode_return : float or None
        Their sum.
    terminated, truncated : bool
        The environment ended the episode (False for models and plant callables).
    """


def closed_loop(controller, system, x0, steps, *, goal=None, exo=None, seed=None):
    """Run a controller in closed loop on a model, a plant or an environment.

    Parameters
    ----------
    controller : Network
        n inputs (u = c(x)) or 2n inputs (u = c(x, goal)).
    system : Dynamics, callable or environment
        A Dynamics model; a plant ``plant(x, u) -> x_next`` called with the shapes of
        x0 ((n,) and (m,), or (B, n) and (B, m)); or an object with the gymnasium
        interface, reset with ``seed`` and run for one episode (at most ``steps``).
    x0 : array_like, shape (n,) or (B, n), or None
        None for an environment (it starts from its reset).
    steps : int
    goal : array_like, shape (n,) or (B, n), optional
        Required when the controller reads the goal (2n inputs); refused when it does not.
    exo : array_like, optional
        A Dynamics model's exogenous inputs, (e,) or (steps, e); refused for a model
        without them and for a plant.
    seed : int, optional
        An environment's reset seed (refused for models and plant callables).

    Returns
    -------
    ClosedLoopResult
    """
    if not isinstance(controller, Network):
        raise TypeError(f"controller must be a ctrlprop Network, got "
                        f"{type(controller).__name__}")
    K = check_int(steps, "steps", 1)
    env = as_environment(system, x0, seed, "system")
    if env is not None:
        if exo is not None:
            raise ValueError("exo is for a Dynamics model's exogenous inputs; an "
                             "environment takes none")
        x0 = env.reset(seed)
        n = env.n_obs
    elif isinstance(system, Dynamics):
        n = system.n_states
    elif callable(system):
        n = None
    else:
        raise TypeError(f"system must be a Dynamics model, a callable plant(x, u) or an "
                        f"environment with the gymnasium interface, got "
                        f"{type(system).__name__}")
    X = as_float(x0, "x0")
    batched = X.ndim == 2
    X = np.atleast_2d(X)
    if n is None:                                    # a plant: x0 says how many states
        n = X.shape[1] if X.ndim == 2 else 0
    if (X.ndim != 2 or X.shape[1] != n or n == 0 or X.shape[0] == 0
            or not np.all(np.isfinite(X))):
        raise ValueError(f"x0 must be a finite array of shape ({n or 'n'},) or (B, {n or 'n'}), "
                         f"got {np.shape(x0)}")
    if controller.n_inputs not in (n, 2 * n):
        raise ValueError(f"the controller must have {n} or {2 * n} inputs for the {n} states "
                         f"of x0, got {controller.n_inputs}")
    B, m = X.shape[0], controller.n_outputs
    reads_goal = controller.n_inputs == 2 * n
    if goal is not None and not reads_goal:
        raise ValueError(f"goal was given but the controller has {n} inputs (u = c(x)) for "
                         f"the {n} states of x0: it does not read a goal")
    if goal is None and reads_goal:
        raise ValueError(f"the controller reads the goal ({2 * n} inputs for the {n} states "
                         f"of x0): pass goal= as ({n},) or ({B}, {n})")
    G = check_goals(goal, n, B, reads_goal)
    ended = [False, False]
    rewards = []
    if env is not None:
        if env.n_act != m:
            raise ValueError(f"the controller has {m} outputs but the environment takes "
                             f"{env.n_act} actions")

        def step(Xa, Ua, t):
            x_next, r, term, trunc = env.step(env.action(Ua[0]), t)
            rewards.append(r)
            ended[:] = term, trunc
            return x_next[None]

        def stop(Xs):
            return np.full(Xs.shape[0], any(ended))
    elif isinstance(system, Dynamics):
        if system.n_controls != m:
            raise ValueError(f"the controller has {m} outputs but the model takes "
                             f"{system.n_controls} controls")
        E = system.check_exo(exo, K, 1)
        stop = None

        def step(Xa, Ua, t):
            return system.step(Xa, Ua, None if E is None else E[min(t, E.shape[0] - 1), :, 0])
    elif exo is not None:
        raise ValueError("exo is for a Dynamics model's exogenous inputs; a plant callable "
                         "takes none (close over them in the plant instead)")
    else:
        want = (B, n) if batched else (n,)
        stop = None

        def step(Xa, Ua, t):
            out = system(Xa if batched else Xa[0], Ua if batched else Ua[0])
            return check_state(out, want, f"step {t}: the plant").reshape(B, n)

    def policy(Xs):
        return controller.forward(Xs if G is None else np.hstack([Xs, G]))

    S, U, taken, _ = simulate(step, policy, X, K, m, stop=stop, name="the controller")
    out = ClosedLoopResult(states=S if batched else S[0], controls=U if batched else U[0],
                           steps=taken if batched else int(taken[0]), rewards=None,
                           episode_return=None, terminated=bool(ended[0]),
                           truncated=bool(ended[1]))
    out.x = out.controls
    if env is not None:
        R = np.zeros(K)
        R[:len(rewards)] = rewards
        out.rewards, out.episode_return = R, float(R.sum())
    return out
