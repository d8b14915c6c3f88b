"""Controller training through a frozen model (Nguyen & Widrow; Jordan & Rumelhart's
"distal teacher"), and closed-loop simulation.

A controller network ``u_t = c(x_t[, goal]; v)`` drives the frozen dynamics model from
many initial states at once; the mean trajectory cost is back-propagated through the
model AND the controller at every step, and only the controller's weights v move::

    forward, t = 0 .. T-1:   u_t = c(x_t, g; v),   x_{t+1} = F(x_t, u_t)   (F = f, or x + f)
    backward, lambda_T = c_T (the cost's gradient at x_T); for t = T-1 .. 0:
        (gx_t, gu_t) = lambda_{t+1}^T df/d(x_t, u_t)          model: input deltas only
        du_t        = gu_t + dJ/du_t|cost                      the controller's output delta
        (dv_t, gc_t) = du_t^T dc/d(v, x_t)                     controller: weights and inputs
        dJ/dv      += dv_t
        lambda_t    = c_t + gx_t + gc_t  (+ lambda_{t+1} when residual)

``gc_t`` is the path through the controller's input: u_t depends on x_t, so the state
cotangent collects it too.  Bounded controls are the user's choice of the controller's
output transfer and scaling, e.g. tanh outputs and ``controller.set_scaling(y_scale=u_max)``
for ``u = u_max * tanh(.)``.  The trained controller is an ordinary Network (save, load,
:func:`closed_loop`).  The model's weights are never changed.
"""

import numpy as np
from scipy.optimize import OptimizeResult, minimize

from ..core.checks import as_float, check_int
from ..core.threads import blas_threads
from ..objectives.controller import ControllerObjective, check_goals
from ..objectives.trajectory import Dynamics

__all__ = ["ControllerObjective", "train_controller", "closed_loop", "ControllerResult"]


class ControllerResult(OptimizeResult):
    """Result of :func:`train_controller`: ``x`` (trained weights, also in
    ``controller.weights``), ``fun``, ``cost`` (B,) per initial state, ``states`` (B, T+1, n),
    ``controls`` (B, T, m), ``history`` (F before and after each iteration), ``controller``,
    and scipy's ``success``, ``message``, ``nit``, ``nfev``."""


def train_controller(model, controller, x0, horizon, cost=None, goal=None, exo=None,
                     l2=0.0, method="L-BFGS-B", options=None, callback=None):
    """Train a controller network through a frozen dynamics model (distal teacher).

    Parameters
    ----------
    model, controller, x0, horizon, cost, goal, exo, l2
        As :class:`ControllerObjective`.
    method : str
        A gradient method of ``scipy.optimize.minimize`` (default "L-BFGS-B").
    options : dict, optional
        ``minimize`` options (maxiter, gtol, ...).
    callback : callable, optional
        ``callback(weights, F)`` after every iteration; returning True stops training.

    Returns
    -------
    ControllerResult
        ``controller.weights`` holds the trained weights afterwards; the model is untouched.
    """
    obj = ControllerObjective(model, controller, x0, horizon, cost, goal, exo, l2)
    hist = [obj(controller.weights)[0]]

    def cb(vk, *args):
        f = obj.value(vk)
        hist.append(f)
        if callback is not None and callback(vk, f) is True:
            raise StopIteration            # scipy ends the run and reports it in the message
    with blas_threads(1):
        res = minimize(obj, controller.weights.copy(), jac=True, method=method,
                       options=options, callback=cb)
    controller.weights = res.x
    S, U = obj.rollout(res.x)
    return ControllerResult(x=res.x.copy(), fun=obj.value(res.x), cost=obj.costs(res.x),
                            states=S, controls=U, history=np.array(hist),
                            controller=controller, success=bool(res.success),
                            status=int(res.status), message=str(res.message),
                            nit=int(getattr(res, "nit", 0)), nfev=int(res.nfev))


def _plant_step(plant, X, U, batched, k):
    """plant(x, u) for the (B, n) states X, checked: a finite array of X's shape, else ValueError."""
    want = X.shape if batched else X.shape[1:]
    try:
        Xn = np.array(plant(X if batched else X[0], U if batched else U[0]), dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"step {k}: the plant did not return a numeric state of shape "
                         f"{want}") from None
    if Xn.shape != want:
        raise ValueError(f"step {k}: the plant returned a state of shape {Xn.shape}, "
                         f"expected {want}")
    if not np.all(np.isfinite(Xn)):
        raise ValueError(f"step {k}: the plant returned NaN or inf")
    return Xn.reshape(X.shape)


def closed_loop(controller, system, x0, steps, goal=None, exo=None):
    """Run a controller in closed loop on a model or a plant.

    Parameters
    ----------
    controller : Network
        n inputs (u = c(x)) or 2n inputs (u = c(x, goal)).
    system : Dynamics or callable
        A Dynamics model, or a plant ``plant(x, u) -> x_next`` called with the shapes of
        x0 ((n,) and (m,), or (B, n) and (B, m)).
    x0 : array_like, shape (n,) or (B, n)
    steps : int
    goal : array_like, shape (n,) or (B, n), optional
        Required when the controller reads the goal.
    exo : array_like, optional
        A Dynamics model's exogenous inputs, (e,) or (steps, e).

    Returns
    -------
    states : ndarray, (steps+1, n) or (B, steps+1, n)
    controls : ndarray, (steps, m) or (B, steps, m)
    """
    K = check_int(steps, "steps", 1)
    if isinstance(system, Dynamics):
        model, step = system, None
        n = model.n_state
    elif callable(system):
        model, step, n = None, system, None
    else:
        raise TypeError(f"system must be a Dynamics model or a callable plant(x, u), got "
                        f"{type(system).__name__}")
    X = as_float(x0, "x0")
    batched = X.ndim == 2
    X = np.atleast_2d(X)
    if n is None:
        n = X.shape[1]
    if X.ndim != 2 or X.shape[1] != n or not np.all(np.isfinite(X)):
        raise ValueError(f"x0 must be a finite array of shape ({n},) or (B, {n}), "
                         f"got {np.shape(x0)}")
    if controller.n_inputs not in (n, 2 * n):
        raise ValueError(f"the controller must have {n} or {2 * n} inputs for {n} states, "
                         f"got {controller.n_inputs}")
    G = check_goals(goal, n, X.shape[0], controller.n_inputs == 2 * n)
    E = None
    if model is not None and model.n_exo:
        E = model.check_exo(exo, K, 1)
    states, controls = [X.copy()], []
    for k in range(K):
        inp = X if controller.n_inputs == n else np.hstack([X, G])
        U = controller.forward(inp)
        if model is not None:
            X = model.step(X, U, None if E is None else E[min(k, E.shape[0] - 1), :, 0])
        else:
            X = _plant_step(step, X, U, batched, k)
        states.append(np.array(X))
        controls.append(U)
    S, U = np.stack(states, axis=1), np.stack(controls, axis=1)
    return (S, U) if batched else (S[0], U[0])
