"""Batched projected Levenberg-Marquardt: many small least-squares problems at once.

:func:`solve_lm` is a projected Levenberg-Marquardt method run on N independent
least-squares problems together (the K targets of a batch, times the number of
starts): every evaluation is one forward pass and ``n_outputs`` input-only
backward passes for all unfinished problems, and every step solves the N small
``m x m`` systems with one stacked ``np.linalg.solve``.  Each problem has its
own damping, its own active set of bounds and its own stopping test, and stops
being evaluated once it has converged (the work buffers shrink with the active
set).

For one problem, with ``r(u)``, ``J(u)`` the residuals and their Jacobian,
``g = J^T r``, ``A = J^T J`` and bounds ``lo <= u <= hi``::

    fixed_i = (u_i <= lo_i and g_i > 0) or (u_i >= hi_i and g_i < 0)   (active bounds)
    (A + lam diag(D)) d = -g          on the free variables, d_i = 0 on the fixed ones
    u'   = u + d, except that a variable crossing a bound stops half-way between u_i
           and the bound, or on the bound if u_i is within 1e-3 of its range from it
    s    = u' - u
    pred = -(g^T s + 1/2 s^T A s),  rho = (E(u) - E(u')) / pred
    accept if rho > 1e-4:  lam *= max(1/3, 1 - (2 rho - 1)^3),  nu = 2
    else:                  lam *= nu,  nu *= 2                   (Nielsen's update)

``D`` is the running maximum of ``diag(A)`` (Marquardt's scaling, so the method
is invariant to the units of each control).  A problem stops when the
projected gradient ``u - clip(u - g, lo, hi)`` is below ``gtol`` (status 1),
an accepted step lowers E by less than ``ftol * E`` with ``rho > 1/4``
(status 2), or a step is shorter than ``xtol * (xtol + |u|)`` (status 3); it
fails after ``maxiter`` steps (status 0), if E is not finite at the start
(status -1), or if the damping overflows (status -2).
"""

import numpy as np

from .result import CONVERGED, FAILED, MAXITER, NONFINITE

__all__ = ["solve_lm", "LM_MESSAGES", "LM_STATUS", "LM_OPTIONS"]

LM_MESSAGES = {
    1: "projected gradient below gtol",
    2: "relative reduction of E below ftol",
    3: "step below xtol",
    0: "maximum number of iterations reached",
    -1: "objective is not finite at the start",
    -2: "damping overflow: no decrease of E found",
}

SNAP = 1e-3          # within this fraction of its range a variable may land on a bound

LM_STATUS = {1: CONVERGED, 2: CONVERGED, 3: CONVERGED, 0: MAXITER, -1: NONFINITE, -2: FAILED}
"""solve_lm's own codes -> ctrlprop's status codes (:mod:`ctrlprop.solvers.result`)."""

LM_OPTIONS = {"ftol": 1e-10, "xtol": 1e-10, "gtol": 1e-10, "lambda0": 1.0}


# ---------------------------------------------------------------- the solver
class _Active:
    """The state of the unfinished problems, compacted when some finish."""

    NAMES = ("ids", "U", "lo", "hi", "near", "E", "g", "A", "D", "lam", "nu", "rows")

    def __init__(self, **kw):
        self.__dict__.update(kw)

    def keep(self, mask):
        for k in self.NAMES:
            v = getattr(self, k)
            if v is not None:
                setattr(self, k, v[mask])


def _gn(r, J):
    """(E, g = J^T r, A = J^T J) per problem."""
    return (0.5 * np.einsum("kr,kr->k", r, r), np.einsum("kri,kr->ki", J, r),
            np.einsum("kri,krj->kij", J, J))


def solve_lm(obj, U0, lo, hi, rows=None, maxiter=100, ftol=1e-10, xtol=1e-10, gtol=1e-10,
             lambda0=1.0, callback=None):
    """Projected Levenberg-Marquardt on N independent problems at once (see the module doc).

    Parameters
    ----------
    obj : ControlObjective
        Holds the K problems.
    U0, lo, hi : ndarray, shape (N, m)
        Starts (inside the bounds) and bounds of the N columns.
    rows : ndarray of int, shape (N,), optional
        The problem (0..K-1) of each column; default column k is problem k (N = K).
    maxiter : int
        Steps per problem.
    ftol, xtol, gtol : float
        Stopping tolerances.
    lambda0 : float
        Initial damping, relative to ``diag(J^T J)``.
    callback : callable, optional
        ``callback(k, U, E) -> bool`` after iteration k with the current controls (N, m)
        and objectives (N,) of every column; True stops (unfinished columns keep their
        current point, status 0).

    Returns
    -------
    dict with ``u`` (N, m), ``fun`` (N,), ``status`` (N,) (solve_lm's codes, see
    ``LM_MESSAGES``; ``LM_STATUS`` maps them to ctrlprop's), ``nit`` (N,) steps per
    column, ``nfev`` batched evaluations, ``history`` (sum of E over the columns at the
    start and after every iteration), ``stopped`` (True when the callback stopped it).
    """
    N, m = U0.shape
    di = np.arange(m)
    u_out, f_out = U0.copy(), np.full(N, np.nan)
    status, nit = np.zeros(N, int), np.zeros(N, int)
    r, J = obj.columns_residuals_jacobian(U0, rows)
    E, g, A = _gn(r, J)
    dA = A[:, di, di]
    D = np.maximum(dA, 1e-12 * (1.0 + dA.max(axis=1, keepdims=True)))
    # "near" a bound: SNAP times the range, or times 1 + |bound| for a half-open range
    half = 1.0 + np.abs(np.where(np.isfinite(lo), lo, hi))
    near = SNAP * np.where(np.isfinite(hi - lo), hi - lo, np.where(np.isfinite(half), half, 1.0))
    st = _Active(ids=np.arange(N), U=U0.copy(), lo=lo, hi=hi, near=near, E=E, g=g, A=A, D=D,
                 lam=np.full(N, float(lambda0)), nu=np.full(N, 2.0),
                 rows=np.arange(N) if rows is None else np.asarray(rows))
    nfev, cap = 1, N
    full = rows is None                  # the columns are still problems 0..K-1 in order

    def retire(mask, code):
        nonlocal full
        if mask.any():
            ids = st.ids[mask]
            u_out[ids], f_out[ids] = st.U[mask], st.E[mask]
            status[ids] = code if np.isscalar(code) else code[mask]
            st.keep(~mask)
            full = False

    retire(~np.isfinite(st.E), -1)
    history, stopped = [float(np.nansum(E))], False
    for it in range(int(maxiter)):
        pg = st.U - np.clip(st.U - st.g, st.lo, st.hi)
        retire(np.abs(pg).max(axis=1) <= gtol, 1)
        n = len(st.ids)
        if not n:
            break
        U, lo_, hi_, g, A = st.U, st.lo, st.hi, st.g, st.A
        # the damped Gauss-Newton step on the free variables
        fixed = ((U <= lo_) & (g > 0)) | ((U >= hi_) & (g < 0))
        free = ~fixed
        M = A * (free[:, :, None] & free[:, None, :])
        M[:, di, di] += st.lam[:, None] * st.D * free + fixed
        d = np.linalg.solve(M, (-g * free)[:, :, None])[:, :, 0]
        # a step that would cross a bound stops half-way to it, unless the variable is
        # already within SNAP of the bound (relative to its range): then it lands on it
        lo_c = np.where(U - lo_ <= st.near, lo_, 0.5 * (U + lo_))
        hi_c = np.where(hi_ - U <= st.near, hi_, 0.5 * (U + hi_))
        Ut = np.clip(U + d, lo_c, hi_c)
        s = Ut - U
        pred = -(np.einsum("ki,ki->k", s, g) + 0.5 * np.einsum("ki,kij,kj->k", s, A, s))
        if n <= cap // 2:
            cap = n                          # shrink the work buffers with the active set
        rt, Jt = obj.columns_residuals_jacobian(Ut, None if full else st.rows, cap)
        nfev += 1
        nit[st.ids] += 1
        Et, gt, At = _gn(rt, Jt)
        ok = np.isfinite(Et) & (pred > 0)
        rho = np.where(ok, (st.E - Et) / np.where(ok, pred, 1.0), -1.0)
        acc = rho > 1e-4
        conv_f = acc & (st.E - Et <= ftol * st.E) & (rho > 0.25)
        conv_x = np.linalg.norm(s, axis=1) <= xtol * (xtol + np.linalg.norm(U, axis=1))
        a2 = acc[:, None]
        np.copyto(st.U, Ut, where=a2)
        np.copyto(st.E, Et, where=acc)
        np.copyto(st.g, gt, where=a2)
        np.copyto(st.A, At, where=a2[:, :, None])
        np.maximum(st.D, np.where(a2, At[:, di, di], 0.0), out=st.D)
        st.lam = np.where(acc, st.lam * np.maximum(1 / 3, 1 - (2 * rho - 1) ** 3),
                          st.lam * st.nu)
        st.nu = np.where(acc, 2.0, 2.0 * st.nu)
        code = np.where(conv_f, 2, np.where(conv_x, 3, np.where(st.lam > 1e30, -2, 0)))
        retire(code != 0, code)
        Ucur, Ecur = u_out.copy(), f_out.copy()
        Ucur[st.ids], Ecur[st.ids] = st.U, st.E
        history.append(float(np.nansum(Ecur)))
        if callback is not None and callback(it + 1, Ucur, Ecur):
            stopped = True
            break
    retire(np.ones(len(st.ids), bool), 0)
    return dict(u=u_out, fun=f_out, status=status, nit=nit, nfev=nfev,
                history=np.array(history), stopped=stopped)


