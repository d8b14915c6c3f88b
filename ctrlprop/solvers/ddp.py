"""Batched iLQR and control-limited DDP on a model ``x_{t+1} = F(x_t, u_t)``: :func:`ddp`.

Notation: x is [n] (the state), u is [m] (the control), t = 0 .. T-1 are the T steps and
B trajectories are solved at once (every array has the trajectory axis first).  The solver
knows nothing about networks: it is given the model and the cost through callables (the
objective side, :mod:`ctrlprop.objectives.ddp_terms`, builds them for a learned model):

* ``step(t, X, U) -> X_next``: one step of the model for the batch, X (B, n), U (B, m);
* ``cost(X, U) -> J``: the cost of every trajectory (B,), states X (B, T+1, n), controls
  U (B, T, m);
* ``jacobians(X, U) -> (f_x (B, T, n, n), f_u (B, T, n, m))`` along a trajectory;
* ``cost_derivatives(X, U) -> (l_x (B, T+1, n), l_u (B, T, m), l_xx (B, T+1, n, n),
  l_uu (B, T, m, m), l_ux (B, T, m, n))``: gradients and Hessians of the cost per step,
  index T holding the terminal term's l_x, l_xx;
* optionally ``closed_loop(x0, Xref, Uref, k, K, alpha, lo, hi) -> (X (B, T+1, n),
  U (B, T, m))``: the forward pass in one call (below), for a model that has a faster way
  than the loop of ``step`` (a compiled rollout); lo, hi are (B, T, m) or None;
* for DDP only, either ``second_derivatives() -> F2 (B, T, n, n+m, n+m)``: the second
  derivatives ``F2[b, t, i] = d2 F_i / dw dw``, w = (x_t, u_t), symmetric, at the trajectory
  last passed to ``jacobians`` (the whole horizon at once; the compiled backward pass takes
  it), or ``curvature(t, v) -> (v.f_xx (B, n, n), v.f_ux (B, m, n), v.f_uu (B, m, m))``:
  the second derivatives of the dynamics of step t contracted with the costate v (B, n),
  at the trajectory last passed to ``jacobians``.

The rollout is the loop of ``step`` (the forward pass needs it step by step: the new
controls feed back on the new states), unless ``closed_loop`` is given: it must compute
exactly that loop, ``x_0 = x0``, ``u_t = clip(Uref_t + alpha k_t + K_t (x_t - Xref_t), lo_t,
hi_t)`` (no clip without bounds), ``x_{t+1} = F(x_t, u_t)``.
"""

import numpy as np

from ..core import compiled
from ..core.checks import as_float, check_callable, check_finite, check_int, check_nonneg
from .result import CALLBACK, CONVERGED, FAILED, MAXITER, NONFINITE

__all__ = ["ddp", "box_qp", "DDP_OPTIONS", "ddp_options"]

# ------------------------------------------------------------------------------------------
# The math (Tassa, Erez & Todorov 2012; Tassa, Mansard & Todorov 2014), per trajectory.
#
# Backward pass, from V_x = l_x(T), V_xx = l_xx(T), for t = T-1 .. 0 (A = f_x, B = f_u at t,
# V_x, V_xx of step t+1):
#
#     Q_x  = l_x  + A^T V_x                Q_u  = l_u  + B^T V_x
#     Q_xx = l_xx + A^T V_xx A  [+ V_x.f_xx]
#     Q_uu = l_uu + B^T V_xx B  [+ V_x.f_uu]
#     Q_ux = l_ux + B^T V_xx A  [+ V_x.f_ux]          [..]: DDP only; iLQR drops them
#
# The step du = k + K dx minimizes the local model 1/2 du^T Q~_uu du + du^T (Q_u + Q_ux dx)
# with the Levenberg regularization Q~_uu = Q_uu + mu I.  Without bounds k = -Q~_uu^-1 Q_u,
# K = -Q~_uu^-1 Q_ux (Q~_uu must be positive definite, else the pass fails).  With control
# limits lo_t <= u_t + du <= hi_t, k is the solution of the box-constrained QP
#
#     min_k 1/2 k^T Q~_uu k + Q_u^T k,   lo_t - u_t <= k <= hi_t - u_t
#
# by projected Newton (:func:`box_qp`); with its free set f (the clamped set c: at a bound
# with the gradient pushing outward), K_f = -(Q~_uu)_ff^-1 (Q_ux)_f and K_c = 0 (a clamped
# control does not respond to state deviations).  The value function then is
#
#     V_x  = Q_x  + K^T Q_uu k + K^T Q_u + Q_ux^T k
#     V_xx = Q_xx + K^T Q_uu K + K^T Q_ux + Q_ux^T K        (symmetrized)
#
# with the unregularized Q_uu, and the expected change of the cost for a step scaled by
# alpha is  dV(alpha) = alpha sum_t k^T Q_u + alpha^2 / 2 sum_t k^T Q_uu k  (<= 0).
#
# Forward pass (line search on the true model): for alpha = 1, 1/2, 1/4, ... (maxls values)
#
#     x'_0 = x_0,  u'_t = clip(u_t + alpha k_t + K_t (x'_t - x_t), lo_t, hi_t),
#     x'_{t+1} = F(x'_t, u'_t)
#
# accepted when the actual reduction J - J' exceeds ``accept`` times the expected -dV(alpha).
#
# Regularization schedule (Tassa 2012, Sec. F): with delta0 = mu_factor,
#   increase (Q~_uu not positive definite, or no step accepted):
#       delta = max(delta0, delta delta0),  mu = max(mu_min, mu delta)
#   decrease (after an accepted step):
#       delta = min(1 / delta0, delta / delta0),  mu = mu delta if mu delta > mu_min else 0
# and a trajectory whose mu exceeds mu_max has failed (status 5).
#
# Convergence: a trajectory has converged when the full step's expected reduction is tiny,
# -dV(1) <= tol (1 + |J|) (a Newton-decrement test: at a minimum k = 0 on the free set).
#
# Batching: all arrays carry the B trajectories; each has its own mu, delta, line-search
# step and convergence test.  The passes run on the whole batch, but a trajectory that has
# converged, failed or become non-finite is frozen (its controls and states no longer
# change and its iteration count stops).
# ------------------------------------------------------------------------------------------

_KERNELS = __package__ + ".ddp_kernels"     # the compiled backward pass (numba)

DDP_OPTIONS = {"mu0": 0.0, "mu_min": 1e-6, "mu_max": 1e10, "mu_factor": 2.0, "tol": 1e-10,
               "maxls": 10, "accept": 0.1, "qp_maxiter": 100}


def ddp_options(options, method="ddp"):
    """The solver settings of :func:`ddp` from a user's ``options`` dict, checked.

    Parameters
    ----------
    options : dict
        Any of the keys of ``DDP_OPTIONS`` (defaults there): ``mu0``, ``mu_min``,
        ``mu_max``, ``mu_factor`` (> 1), ``tol``, ``accept`` (in [0, 1)) are numbers >= 0,
        ``maxls`` and ``qp_maxiter`` integers >= 1.
    method : str
        The method's name, for the error message.

    Returns
    -------
    dict
        Every setting, the defaults filled in.

    Raises
    ------
    ValueError
        For an unknown key (the message lists the accepted ones) or a value out of range.
    TypeError
        For a non-numeric value.
    """
    bad = sorted(set(options) - set(DDP_OPTIONS))
    if bad:
        raise ValueError(f"unknown option(s) {bad} for method {method!r}; it takes "
                         f"{list(DDP_OPTIONS)} (and maxiter=)")
    out = dict(DDP_OPTIONS)
    for key, v in options.items():
        if key in ("maxls", "qp_maxiter"):
            out[key] = check_int(v, f"options[{key!r}]", 1)
        else:
            out[key] = check_nonneg(v, f"options[{key!r}]")
    if out["mu_factor"] <= 1.0:
        raise ValueError(f"options['mu_factor'] must be > 1, got {out['mu_factor']}")
    if out["accept"] >= 1.0:
        raise ValueError(f"options['accept'] must be in [0, 1), got {out['accept']}")
    if out["mu_min"] <= 0.0 or out["mu_max"] <= out["mu_min"]:
        raise ValueError(f"options need 0 < mu_min < mu_max, got mu_min={out['mu_min']}, "
                         f"mu_max={out['mu_max']}")
    return out


def _pd_solve(H, rhs):
    """Solve H X = rhs for a batch of symmetric H (B, m, m), rhs (B, m, k); (X, ok) with
    ok (B,) False where H is not positive definite (its X is then 0)."""
    finite = np.isfinite(H).all(axis=(1, 2)) & np.isfinite(rhs).all(axis=(1, 2))
    H = np.where(finite[:, None, None], H, np.eye(H.shape[1]))
    lam = np.linalg.eigvalsh(H)
    scale = np.maximum(np.abs(H).max(axis=(1, 2)), np.finfo(float).tiny)
    ok = finite & (lam[:, 0] > 1e-13 * scale)
    Hs = np.where(ok[:, None, None], H, np.eye(H.shape[1]))
    X = np.linalg.solve(Hs, np.where(ok[:, None, None], rhs, 0.0))
    return X, ok


def box_qp(H, g, lower, upper, x0=None, maxiter=100):
    """Batched box-constrained QP by projected Newton (Tassa, Mansard & Todorov 2014).

    Solves ``min_x 1/2 x^T H x + g^T x`` subject to ``lower <= x <= upper`` for every
    problem of a batch.

    Parameters
    ----------
    H : ndarray, shape (B, m, m)
        Symmetric Hessians.
    g : ndarray, shape (B, m)
    lower, upper : ndarray, shape (B, m)
        Bounds (may be infinite); ``lower <= 0 <= upper`` is not required.
    x0 : ndarray, shape (B, m), optional
        Warm start (projected into the box); default 0 projected.
    maxiter : int
        Newton iterations at most.

    Returns
    -------
    x : ndarray, shape (B, m)
    free : ndarray of bool, shape (B, m)
        The free (not clamped) variables at x.
    ok : ndarray of bool, shape (B,)
        False where the free block of H is not positive definite.

    Notes
    -----
    Each iteration: the gradient ``q = g + H x``; a variable is clamped when it sits on a
    bound and ``q`` pushes it outward; the Newton step on the free set with the clamped
    variables fixed, ``x_f <- -H_ff^-1 (g_f + H_fc x_c)``; a projected Armijo backtracking
    (factor 0.6, sufficient decrease 0.1).  It stops when the free gradient is below
    ``1e-13 (1 + |g|)``, the step stops improving the value, or everything is clamped.
    """
    H, g = as_float(H, "H"), as_float(g, "g")
    if g.ndim != 2 or H.shape != g.shape + g.shape[-1:]:
        raise ValueError(f"H must have shape (B, m, m) and g (B, m); got {H.shape} and {g.shape}")
    B, m = g.shape
    lower = np.broadcast_to(as_float(lower, "lower"), (B, m))
    upper = np.broadcast_to(as_float(upper, "upper"), (B, m))
    maxiter = check_int(maxiter, "maxiter", 0)
    x = np.zeros((B, m)) if x0 is None else np.array(as_float(x0, "x0"), dtype=float)
    x = np.clip(x, lower, upper)
    ok = np.ones(B, bool)
    free = np.ones((B, m), bool)
    running = np.ones(B, bool)
    eye = np.eye(m)
    gscale = 1.0 + np.abs(g).max(axis=1)

    def value(y):
        return np.einsum("bi,bi->b", y, g) + 0.5 * np.einsum("bi,bij,bj->b", y, H, y)
    val = value(x)
    for _ in range(maxiter):
        if not running.any():
            break
        q = g + np.einsum("bij,bj->bi", H, x)
        clamped = ((x <= lower) & (q > 0)) | ((x >= upper) & (q < 0))
        free = np.where(running[:, None], ~clamped, free)
        allc = running & ~free.any(axis=1)
        running &= ~allc
        gfree = np.where(free, q, 0.0)
        small = running & (np.abs(gfree).max(axis=1) <= 1e-13 * gscale)
        running &= ~small
        if not running.any():
            break
        ff = free[:, :, None] & free[:, None, :]
        Hm = np.where(ff, H, 0.0) + eye * (~free)[:, None, :]
        xc = np.where(free, 0.0, x)
        rhs = np.where(free, g + np.einsum("bij,bj->bi", H, xc), 0.0)
        sol, pd = _pd_solve(Hm, rhs[:, :, None])
        bad = running & ~pd
        ok &= ~bad
        running &= ~bad
        search = np.where(free, -sol[:, :, 0] - x, 0.0)
        sdotg = np.einsum("bi,bi->b", search, q)
        running &= sdotg < 0
        step = np.ones(B)
        pending = running.copy()
        xn = x.copy()
        vn = val.copy()
        while pending.any():
            cand = np.clip(x + step[:, None] * search, lower, upper)
            vc = value(cand)
            good = pending & ((vc - val) <= 0.1 * step * sdotg)
            xn[good], vn[good] = cand[good], vc[good]
            pending &= ~good
            step = np.where(pending, 0.6 * step, step)
            tiny = pending & (step < 1e-20)
            pending &= ~tiny
            running &= ~tiny
        improved = running & (vn < val)
        running &= improved
        x = np.where(improved[:, None], xn, x)
        val = np.where(improved, vn, val)
    q = g + np.einsum("bij,bj->bi", H, x)
    free = ~(((x <= lower) & (q > 0)) | ((x >= upper) & (q < 0)))
    return x, free, ok


def _backward(D, U, lo, hi, mu, k_prev, curvature, qp_maxiter):
    """One backward pass for the batch; (k (B,T,m), K (B,T,m,n), dV1 (B,), dV2 (B,), ok (B,)).

    ``curvature`` is None (iLQR), DDP's callable, or DDP's second derivatives F2
    (B, T, n, n+m, n+m).  Without a callable the pass runs as one compiled call when the
    path is on (:mod:`ctrlprop.solvers.ddp_kernels`); this numpy loop is the reference."""
    fx, fu, lx, lu, lxx, luu, lux = D
    B, T, n, m = fu.shape[0], fu.shape[1], fu.shape[2], fu.shape[3]
    bounded = lo is not None
    second = isinstance(curvature, np.ndarray)        # F2, else a callable or None
    kern = None if callable(curvature) else compiled.extension(_KERNELS)
    if kern is not None:
        k, K = np.empty((B, T, m)), np.empty((B, T, m, n))
        dV1, dV2, ok = np.empty(B), np.empty(B), np.empty(B, bool)
        c = np.ascontiguousarray
        arrays = [c(a, dtype=np.float64) for a in D]
        none = np.zeros((1, 1, 1))
        kern.backward(*arrays, c(U, dtype=np.float64),
                      c(lo, dtype=np.float64) if bounded else none,
                      c(hi, dtype=np.float64) if bounded else none, bounded,
                      c(mu, dtype=np.float64), c(k_prev, dtype=np.float64), int(qp_maxiter),
                      c(curvature, dtype=np.float64) if second else np.zeros((1,) * 5),
                      second, k, K, dV1, dV2, ok)
        return k, K, dV1, dV2, ok
    k = np.zeros((B, T, m))
    K = np.zeros((B, T, m, n))
    dV1, dV2 = np.zeros(B), np.zeros(B)
    ok = np.ones(B, bool)
    Vx, Vxx = lx[:, T].copy(), lxx[:, T].copy()
    eye = np.eye(m)
    for t in range(T - 1, -1, -1):
        A, Bm = fx[:, t], fu[:, t]
        Qx = lx[:, t] + np.einsum("bij,bi->bj", A, Vx)
        Qu = lu[:, t] + np.einsum("bij,bi->bj", Bm, Vx)
        VA, VB = Vxx @ A, Vxx @ Bm
        At, Bt = A.transpose(0, 2, 1), Bm.transpose(0, 2, 1)
        Qxx = lxx[:, t] + At @ VA
        Quu = luu[:, t] + Bt @ VB
        Qux = lux[:, t] + Bt @ VA
        if second:
            F = curvature[:, t]
            cxx = np.einsum("bi,bijk->bjk", Vx, F[:, :, :n, :n])
            cux = np.einsum("bi,bijk->bjk", Vx, F[:, :, n:, :n])
            cuu = np.einsum("bi,bijk->bjk", Vx, F[:, :, n:, n:])
        elif curvature is not None:
            cxx, cux, cuu = curvature(t, Vx)
        if curvature is not None:
            Qxx = Qxx + cxx
            Qux = Qux + cux
            Quu = Quu + cuu
        Quu = 0.5 * (Quu + Quu.transpose(0, 2, 1))
        Qr = Quu + mu[:, None, None] * eye
        if bounded:
            kt, free, okt = box_qp(Qr, Qu, lo[:, t] - U[:, t], hi[:, t] - U[:, t],
                                   k_prev[:, t], qp_maxiter)
            ff = free[:, :, None] & free[:, None, :]
            Hm = np.where(ff, Qr, 0.0) + eye * (~free)[:, None, :]
            Kt, pd = _pd_solve(Hm, np.where(free[:, :, None], Qux, 0.0))
            Kt = -Kt
            okt &= pd
        else:
            sol, okt = _pd_solve(Qr, np.concatenate([Qu[:, :, None], Qux], axis=2))
            kt, Kt = -sol[:, :, 0], -sol[:, :, 1:]
        okt &= np.isfinite(kt).all(axis=1) & np.isfinite(Kt).all(axis=(1, 2))
        ok &= okt
        kt = np.where(okt[:, None], kt, 0.0)
        Kt = np.where(okt[:, None, None], Kt, 0.0)
        k[:, t], K[:, t] = kt, Kt
        Ktr = Kt.transpose(0, 2, 1)
        Quk = np.einsum("bij,bj->bi", Quu, kt)
        Vx = (Qx + np.einsum("bij,bj->bi", Ktr, Quk + Qu)
              + np.einsum("bji,bj->bi", Qux, kt))
        Vxx = Qxx + Ktr @ Quu @ Kt + Ktr @ Qux + Qux.transpose(0, 2, 1) @ Kt
        Vxx = 0.5 * (Vxx + Vxx.transpose(0, 2, 1))
        dV1 += np.einsum("bi,bi->b", kt, Qu)
        dV2 += 0.5 * np.einsum("bi,bi->b", kt, Quk)
    return k, K, dV1, dV2, ok


def ddp(step, cost, jacobians, cost_derivatives, x0, U0, lo=None, hi=None, *,
        curvature=None, second_derivatives=None, closed_loop=None, maxiter=100, mu0=0.0,
        mu_min=1e-6, mu_max=1e10, mu_factor=2.0, tol=1e-10, maxls=10, accept=0.1,
        qp_maxiter=100, notify=None):
    """Batched iLQR or DDP, optionally control-limited.

    The math is the block comment above this function in the source.

    Parameters
    ----------
    step, cost, jacobians, cost_derivatives, curvature, second_derivatives : callable
        The model and the cost (signatures in the module docstring).  With neither
        ``curvature`` nor ``second_derivatives`` the solver runs iLQR; with one of them
        (not both) DDP, with the second-order dynamics terms.
    closed_loop : callable, optional
        The forward pass in one call (module docstring); default the loop of ``step``.
    x0 : ndarray, shape (B, n)
        Initial states.
    U0 : ndarray, shape (B, T, m)
        Initial controls (inside the bounds).
    lo, hi : ndarray, shape (T, m) or (B, T, m), optional
        Control limits (may be infinite); None for none.
    maxiter : int
        Iterations at most (each: one backward pass, retried with more regularization
        while it fails, and one line search).
    mu0, mu_min, mu_max, mu_factor : float
        Regularization of Q_uu: start, smallest nonzero value, failure threshold, and the
        schedule's base factor delta0.
    tol : float
        Convergence: expected reduction of the full step <= tol (1 + |J|).
    maxls : int
        Line-search steps alpha = 1, 1/2, ..., 2^-(maxls-1).
    accept : float
        Accept a step when the actual reduction exceeds ``accept`` times the expected one.
    qp_maxiter : int
        Projected-Newton iterations of each box QP.
    notify : callable, optional
        ``notify(X, U, J, nit) -> bool`` after every iteration (X (B, T+1, n), U (B, T, m),
        J (B,), nit the iteration); True stops the solve (status 2 for the trajectories
        still running).

    Returns
    -------
    dict
        ``controls`` (B, T, m), ``states`` (B, T+1, n), ``cost`` (B,), ``gains`` K
        (B, T, m, n) and ``feedforward`` k (B, T, m) of the backward pass at the returned
        trajectory (the local policy u_t = controls_t + k_t + K_t (x_t - states_t)),
        ``nit`` (B,) iterations per trajectory, ``status`` (B,) ctrlprop codes (0
        converged, 1 iteration limit, 2 callback, 4 non-finite, 5 no progress),
        ``history`` (list of the summed cost before the first and after every iteration),
        ``nfev`` (forward rollouts of the batch), ``njev`` (derivative evaluations),
        ``mu`` (B,) the final regularization.
    """
    for name, f in (("step", step), ("cost", cost), ("jacobians", jacobians),
                    ("cost_derivatives", cost_derivatives)):
        check_callable(f, name, f"{name}(...)")
    curvature = check_callable(curvature, "curvature", "curvature(t, v)")
    second_derivatives = check_callable(second_derivatives, "second_derivatives",
                                        "second_derivatives()")
    if curvature is not None and second_derivatives is not None:
        raise ValueError("give DDP's second-order terms as curvature or as "
                         "second_derivatives, not both")
    closed_loop = check_callable(closed_loop, "closed_loop",
                                 "closed_loop(x0, Xref, Uref, k, K, alpha, lo, hi)")
    notify = check_callable(notify, "notify", "notify(X, U, J, nit)")
    x0 = check_finite(as_float(x0, "x0"), "x0")
    U = check_finite(as_float(U0, "U0"), "U0").copy()
    if U.ndim != 3 or 0 in U.shape:
        raise ValueError(f"U0 must have shape (B, T, m), got {U.shape}")
    B, T, m = U.shape
    if x0.ndim != 2 or x0.shape[0] != B or x0.shape[1] == 0:
        raise ValueError(f"x0 must have shape ({B}, n) for {B} control sequences, got {x0.shape}")
    maxiter = check_int(maxiter, "maxiter", 0)
    maxls = check_int(maxls, "maxls", 1)
    if (lo is None) != (hi is None):
        raise ValueError("give both lo and hi, or neither")
    if lo is not None:
        try:
            lo = np.broadcast_to(as_float(lo, "lo"), (B, T, m))
            hi = np.broadcast_to(as_float(hi, "hi"), (B, T, m))
        except ValueError:
            raise ValueError(f"lo and hi must broadcast to the controls' shape {(B, T, m)}, "
                             f"got {np.shape(lo)} and {np.shape(hi)}") from None
        if np.any(np.isnan(lo)) or np.any(np.isnan(hi)) or np.any(lo > hi):
            raise ValueError("lo and hi must be ordered bounds without NaN (lo <= hi)")
        if np.any(U < lo) or np.any(U > hi):
            raise ValueError("U0 lies outside the bounds lo, hi")
        if not (np.isfinite(lo).any() or np.isfinite(hi).any()):
            lo = hi = None
    alphas = 0.5 ** np.arange(int(maxls))

    def forward(Xref, Uref, k, K, alpha):
        if closed_loop is not None:
            Xn, Un = closed_loop(x0, Xref, Uref, k, np.zeros((B, T, m, Xref.shape[2]))
                                 if K is None else K, alpha, lo, hi)
            Xn, Un = np.asarray(Xn, dtype=float), np.asarray(Un, dtype=float)
            if Xn.shape != Xref.shape or Un.shape != Uref.shape:
                raise ValueError(f"closed_loop must return states of shape {Xref.shape} and "
                                 f"controls of shape {Uref.shape}, got {Xn.shape} and "
                                 f"{Un.shape}")
            return Xn, Un
        Xn = np.empty_like(Xref)
        Un = np.empty_like(Uref)
        Xn[:, 0] = x0
        for t in range(T):
            du = alpha * k[:, t]
            if K is not None:
                du = du + np.einsum("bij,bj->bi", K[:, t], Xn[:, t] - Xref[:, t])
            u = Uref[:, t] + du
            if lo is not None:
                u = np.clip(u, lo[:, t], hi[:, t])
            Un[:, t] = u
            Xn[:, t + 1] = step(t, Xn[:, t], u)
        return Xn, Un

    Xz = np.zeros((B, T + 1, x0.shape[1]))
    X, _ = forward(Xz, U, np.zeros((B, T, m)), None, 0.0)
    nfev, njev = 1, 0
    J = np.asarray(cost(X, U), dtype=float)
    status = np.full(B, -1)
    status[~np.isfinite(J)] = NONFINITE
    active = status < 0
    nit = np.zeros(B, int)
    mu = np.full(B, float(mu0))
    delta = np.ones(B)
    history = [float(J.sum())]
    k = np.zeros((B, T, m))

    def increase(mask):
        delta[mask] = np.maximum(mu_factor, delta[mask] * mu_factor)
        mu[mask] = np.maximum(mu_min, mu[mask] * delta[mask])

    curv = [curvature]                  # the callable, or the F2 array of the current D
    F2_shape = (B, T, x0.shape[1], x0.shape[1] + m, x0.shape[1] + m)

    def derivatives():
        fx, fu = jacobians(X, U)
        if second_derivatives is not None:
            F2 = np.asarray(second_derivatives(), dtype=float)
            if F2.shape != F2_shape:
                raise ValueError(f"second_derivatives must return shape {F2_shape}, got "
                                 f"{F2.shape}")
            curv[0] = F2
        return (fx, fu) + tuple(cost_derivatives(X, U))

    def backward(D, mask):
        """Backward pass; raise mu for trajectories in mask whose pass fails until it
        passes; those beyond mu_max are returned as failed."""
        while True:
            out = _backward(D, U, lo, hi, mu, k, curv[0], qp_maxiter)
            redo = mask & ~out[4]
            if not redo.any():
                return out, np.zeros(B, bool)
            increase(redo)
            over = redo & (mu > mu_max)
            if over.any():
                mask = mask & ~over
                if not (redo & ~over).any():
                    return out, over

    D, fresh = None, False
    it = 0
    while active.any() and it < maxiter:
        it += 1
        if not fresh:
            D = derivatives()
            njev += 1
            finite = np.ones(B, bool)
            for a in D + ((curv[0],) if second_derivatives is not None else ()):
                finite &= np.isfinite(a).reshape(B, -1).all(axis=1)
            bad = active & ~finite
            status[bad] = NONFINITE
            active &= ~bad
            fresh = True
        (k, K, dV1, dV2, ok), over = backward(D, active)
        status[over] = FAILED
        active &= ~over
        nit[active] += 1
        expected = -(dV1 + dV2)
        conv = active & (expected <= tol * (1.0 + np.abs(J)))
        status[conv] = CONVERGED
        active &= ~conv
        pending = active.copy()
        for alpha in alphas:
            if not pending.any():
                break
            Xn, Un = forward(X, U, k, K, alpha)
            nfev += 1
            Jn = np.asarray(cost(Xn, Un), dtype=float)
            exp_a = -(alpha * dV1 + alpha * alpha * dV2)
            with np.errstate(divide="ignore", invalid="ignore"):
                good = pending & np.isfinite(Jn) & (J - Jn > accept * exp_a)
            if good.any():
                X[good], U[good], J[good] = Xn[good], Un[good], Jn[good]
                fresh = False
            pending &= ~good
        moved = active & ~pending
        delta[moved] = np.minimum(1.0 / mu_factor, delta[moved] / mu_factor)
        mu[moved] = np.where(mu[moved] * delta[moved] > mu_min, mu[moved] * delta[moved], 0.0)
        increase(pending)
        over = pending & (mu > mu_max)
        status[over] = FAILED
        active &= ~over
        history.append(float(J.sum()))
        if notify is not None and notify(X, U, J, it):
            status[active] = CALLBACK
            active[:] = False
    status[active] = MAXITER
    if not fresh:
        D = derivatives()
        njev += 1
    (k, K, _, _, ok), _ = backward(D, np.isfinite(J))
    return dict(controls=U, states=X, cost=J, gains=K, feedforward=k, nit=nit, status=status,
                history=history, nfev=nfev, njev=njev, mu=mu)
