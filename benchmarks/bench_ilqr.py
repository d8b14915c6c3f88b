"""iLQR and DDP against BPTT + L-BFGS-B on the car and the pendulum, and against a JAX iLQR.

Run:  python benchmarks/bench_ilqr.py        (add --quick for a short run, under a minute)

One run, float64, one BLAS thread (``cp.blas_threads(1)``), every solve from the same start:

1. True car (``cp.Car``, the car-parking problem of ``scenarios/car_parking.py``: x0 =
   ``CAR_X0``, T = 500, cost ``car_trajectory_cost``, the car's control limits as bounds),
   from zero controls:
     L-BFGS-B  BPTT on the true dynamics + scipy L-BFGS-B (``car_parking.optimize_true``);
     iLQR      ctrlprop's generic solver ``ctrlprop.solvers.ddp.ddp`` with callables written
               here from the TRUE car: ``car.step``, ``car.jacobians`` along the trajectory,
               the cost's gradients and its exact Hessian blocks (``.hessian``); the box QP
               of control-limited DDP keeps the controls in their limits.  Twice: on the
               numpy path, and on the compiled path (numba: the backward pass and box QPs
               as one compiled call, ``ctrlprop.solvers.ddp_kernels``) with the forward
               pass given as ``closed_loop``, the car's step compiled by numba here
               (:func:`compiled_closed_loop`), as the JAX reference compiles its own;
     DDP       the same plus the second derivatives of the car dynamics, which the plant
               does not give: central differences (h = 1e-5) of ``car.jacobians`` over the
               6 state/control coordinates, all 500 steps at once (12 Jacobian evaluations
               per iteration, cheap next to the backward pass), given to the solver as
               ``second_derivatives`` (so its backward pass runs compiled too);
     iLQR from L-BFGS-B's answer: how far that answer is from a local minimum;
     L-BFGS-B for k iterations, then iLQR from its iterate (k = 10, 25, 50, 100; the time
               and "to within 0.5 %" count both phases): a short first-order phase leaves
               the basin that iLQR from zeros converges to.  Every k tried is a row.
2. Learned car model (``car_parking.train_model`` at ``car_parking.QUICK`` size: 5000
   transitions, 2 x 32 tanh, 1500 L-BFGS-B iterations), then ``cp.optimize_trajectory``
   with "L-BFGS-B", "ilqr", "ddp" through the model; cost on the model and the plan's TRUE
   cost (``car_trajectory_cost(car.rollout(x0, U), U)``).
3. Pendulum swing-up through a learned model: the tanh variant of the
   ``scenarios/pendulum_swingup.py`` network (fixed sin/cos features, one tanh layer, skip
   edges, residual; trained at that scenario's QUICK size), from hanging at rest
   (``Pendulum.hanging``), horizon 100 steps (5 s), the scenario's cost
   ``1 - cos(theta) + 0.01 theta_dot^2 + 0.01 u^2`` (+ 5x terminal), torque limits; the start
   is the scenario's constant 0.5 N m (at rest hanging the gradient of the cost vanishes).
4. JAX reference iLQR (when ``import jax`` works), written below: the car's step and cost
   re-written in jax.numpy, jacobians and cost derivatives by ``jax.jacfwd`` /
   ``jax.hessian`` under ``vmap``, rollout and backward pass by ``jax.lax.scan``, each
   ``jax.jit``-compiled (compile time measured by ``.lower().compile()`` and reported
   apart); the outer loop (regularization and line search) in Python, exactly ctrlprop's
   schedule: Levenberg mu on Q_uu, mu0 = 0, Tassa's delta schedule (factor 2, mu_min 1e-6),
   line search alpha = 1, 1/2, ..., 2^-9 accepting an actual reduction above 0.1 of the
   expected one.  WITHOUT control bounds (a box QP in JAX is a project of its own), so the
   per-iteration comparison runs ctrlprop's iLQR without bounds too, on an unchecked numpy
   copy of the car step that returns NaN where the step is undefined (``car.step`` refuses
   controls beyond the limits); both take the same iterates (their cost histories are
   compared), so time per iteration compares like with like.  ctrlprop runs it on both
   paths: numpy, and compiled with the numba car rollout of item 1.

Goals (issue 12, item 6):
  A. on the true car, iLQR reaches the L-BFGS-B cost within 0.5 % in at most a fifth of
     L-BFGS-B's time;
  B. per iteration, ctrlprop's iLQR costs no more than the JAX reference's (compile time
     excluded, reported separately).
--quick caps the iterations (T stays 500, the goals are printed but a capped run does not
judge them fairly).
"""

import os
import sys
import time
import warnings

import numpy as np
from scipy.optimize import Bounds

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scenarios"))
import car_parking  # noqa: E402
import pendulum_swingup  # noqa: E402

import ctrlprop as cp  # noqa: E402
from ctrlprop.plants import CAR_T, CAR_X0, car_trajectory_cost  # noqa: E402
from ctrlprop.solvers.ddp import ddp  # noqa: E402
from _util import fmt_time, machine_note, table, import_jax  # noqa: E402

QUICK = "--quick" in sys.argv
# iteration caps: true car (L-BFGS-B, iLQR, DDP), learned car, pendulum, and the unbounded
# per-iteration comparison with JAX
CFG = ({"true": (300, 40, 15), "model": (300, 30, 10), "pend": (300, 40, 20), "cmp": 10}
       if QUICK else
       {"true": (3000, 400, 150), "model": (2000, 300, 150), "pend": (2000, 300, 200),
        "cmp": 40})
WARM = (5, 10) if QUICK else (10, 25, 50, 100)      # L-BFGS-B iterations before iLQR
T = CAR_T
GAP = 0.005                                       # goal A: within 0.5 % of L-BFGS-B's cost
FD_H = 1e-5                                       # step of the dynamics' second differences


# ---- the true car as the generic solver's callables ---------------------------------------
class TrueCar:
    """``step``, ``cost``, ``jacobians``, ``cost_derivatives`` (and ``second_derivatives``) of the
    car-parking problem on the TRUE car, in the signatures of ``ctrlprop.solvers.ddp``.

    ``checked=False`` uses :func:`free_step` (no limit checks, NaN where the step is
    undefined) for the unbounded problem.
    """

    def __init__(self, car, checked=True):
        self.car, self.checked = car, checked
        self.z = None

    def step(self, t, X, U):
        return self.car.step(X, U) if self.checked else free_step(self.car, X, U)

    def cost(self, X, U):
        return car_trajectory_cost(X, U)[0]

    def jacobians(self, X, U):
        B, T_ = U.shape[:2]
        x, u = X[:, :-1].reshape(-1, 4), U.reshape(-1, 2)
        # car.jacobians checks the control limits; the unbounded problem leaves them
        A, Bu = self.car.jacobians(x, u) if self.checked else self.car._jacobians(x, u)
        self.z = np.concatenate([x, u], axis=1)
        return A.reshape(B, T_, 4, 4), Bu.reshape(B, T_, 4, 2)

    def cost_derivatives(self, X, U):
        _, gx, gu = car_trajectory_cost(X, U)
        return (gx, gu) + tuple(car_trajectory_cost.hessian(X, U))

    def second_derivatives(self):
        """``F2`` (B = 1, T, 4, 6, 6) = d2 F_i / dz dz along the trajectory of the last
        ``jacobians`` call, from central differences of the car's Jacobians (all steps at
        once), symmetrized."""
        z, cols = self.z, []
        for j in range(6):
            dz = np.zeros(6)
            dz[j] = FD_H
            Ap, Bp = self.car._jacobians((z + dz)[:, :4], (z + dz)[:, 4:])
            Am, Bm = self.car._jacobians((z - dz)[:, :4], (z - dz)[:, 4:])
            cols.append((np.concatenate([Ap, Bp], 2) - np.concatenate([Am, Bm], 2))
                        / (2 * FD_H))
        F2 = np.stack(cols, axis=3)                        # (T, i, k, j) = d2F_i/dz_k dz_j
        return (0.5 * (F2 + F2.transpose(0, 1, 3, 2)))[None]


def compiled_closed_loop(car):
    """iLQR's forward pass on the car, ``closed_loop(x0, Xref, Uref, k, K, alpha, lo, hi)``
    of ``ctrlprop.solvers.ddp.ddp``, compiled by numba: the counterpart of the JAX
    reference's jitted ``lax.scan`` rollout (the car's step written once more, here in
    numba; NaN where the step is undefined, like :func:`free_step`).  None without numba
    or with the compiled path off (``CTRLPROP_COMPILED=0``)."""
    if not cp.compiled_available():
        return None
    import numba
    d, h = float(car.d), float(car.dt)

    @numba.njit(cache=True, error_model="numpy")
    def run(x0, Xr, Ur, k, K, alpha, lo, hi, bounded, X, U):
        B, T, m = Ur.shape
        n = x0.shape[1]
        for b in range(B):
            X[b, 0] = x0[b]
            for t in range(T):
                x = X[b, t]
                for i in range(m):
                    u = Ur[b, t, i] + alpha * k[b, t, i]
                    for j in range(n):
                        u += K[b, t, i, j] * (x[j] - Xr[b, t, j])
                    if bounded:
                        u = min(max(u, lo[b, t, i]), hi[b, t, i])
                    U[b, t, i] = u
                w, fr = U[b, t, 0], h * x[3]
                fs = fr * np.sin(w)
                bb = d + fr * np.cos(w) - np.sqrt(d * d - fs * fs)
                X[b, t + 1, 0] = x[0] + bb * np.cos(x[2])
                X[b, t + 1, 1] = x[1] + bb * np.sin(x[2])
                X[b, t + 1, 2] = x[2] + np.arcsin(fs / d)
                X[b, t + 1, 3] = x[3] + h * U[b, t, 1]

    none = np.zeros((1, 1, 1))

    def closed_loop(x0, Xr, Ur, k, K, alpha, lo, hi):
        X, U = np.empty_like(Xr), np.empty_like(Ur)
        bounded = lo is not None
        run(x0, Xr, Ur, k, K, float(alpha), np.ascontiguousarray(lo) if bounded else none,
            np.ascontiguousarray(hi) if bounded else none, bounded, X, U)
        return X, U
    return closed_loop


def free_step(car, X, U):
    """``Car._step`` without the control-limit check: NaN where ``|h v sin w| > d``."""
    w, th = U[:, 0], X[:, 2]
    f = car.dt * X[:, 3]
    fs = f * np.sin(w)
    with np.errstate(invalid="ignore"):
        S = np.sqrt(car.d ** 2 - fs ** 2)
        b = car.d + f * np.cos(w) - S
        return X + np.stack([b * np.cos(th), b * np.sin(th), np.arcsin(fs / car.d),
                             car.dt * U[:, 1]], axis=1)


def solve_true(car, method, maxiter, bounded=True, closed_loop=None, u0=None):
    """iLQR / DDP on the true car from zero controls; dict with cost, nit, seconds, the
    history of (seconds, cost) after every iteration and the solver's output.
    ``closed_loop``: the solver's forward pass in one call (default: its loop of
    ``car.step``); ``u0`` (T, 2): the start (default zeros)."""
    P = TrueCar(car, checked=bounded)
    trace = []
    kw = {"lo": car.u_low, "hi": car.u_high} if bounded else {}
    if closed_loop is not None:
        kw["closed_loop"] = closed_loop

    def notify(X, U, J, nit):
        trace.append((time.perf_counter() - t0, float(J[0])))
        return False
    t0 = time.perf_counter()
    out = ddp(P.step, P.cost, P.jacobians, P.cost_derivatives, CAR_X0[None],
              np.zeros((1, T, 2)) if u0 is None else np.asarray(u0, float)[None],
              second_derivatives=P.second_derivatives if method == "ddp" else None,
              maxiter=maxiter, notify=notify, **kw)
    seconds = time.perf_counter() - t0
    return {"cost": float(out["cost"][0]), "nit": int(out["nit"][0]), "seconds": seconds,
            "trace": trace, "out": out, "status": int(out["status"][0])}


STATUS = {0: "converged", 1: "iteration limit", 2: "callback", 3: "early stop",
          4: "non-finite", 5: "no progress"}          # ctrlprop's status codes, short


# ---- the JAX reference iLQR -----------------------------------------------------------------
def jax_ilqr(car, maxiter):
    """Unbounded iLQR on the true car in JAX (see the module docstring); None without jax,
    else a dict with cost, nit, history, nfev, seconds (solve, compiled) and compile."""
    mods = import_jax()
    if mods is None:
        return None
    jax, jnp = mods
    d, h = car.d, car.dt
    CU = 1e-2 * jnp.array([1.0, 0.01])
    CF, PF = jnp.array([0.1, 0.1, 1.0, 0.3]), jnp.array([0.01, 0.01, 0.01, 1.0])
    CX, PX = 1e-3 * jnp.array([1.0, 1.0]), jnp.array([0.1, 0.1])
    x0 = jnp.asarray(CAR_X0)
    n, m = 4, 2

    def f(x, u):                                  # plants.Car._step
        w, fr = u[0], h * x[3]
        b = d + fr * jnp.cos(w) - jnp.sqrt(d * d - (fr * jnp.sin(w)) ** 2)
        return x + jnp.array([b * jnp.cos(x[2]), b * jnp.sin(x[2]),
                              jnp.arcsin(jnp.sin(w) * fr / d), h * u[1]])

    def sabs(x, p):
        return jnp.sqrt(x * x + p * p) - p

    def l_run(x, u):                              # control + running cost, t < T
        return (u * u) @ CU + sabs(x[:2], PX) @ CX

    def l_fin(x):                                 # running + final cost at x_T
        return sabs(x[:2], PX) @ CX + sabs(x, PF) @ CF

    def total(X, U):
        return jax.vmap(l_run)(X[:-1], U).sum() + l_fin(X[-1])

    def forward(X, U, k, K, alpha):
        def body(x, s):
            xr, ur, kt, Kt = s
            u = ur + alpha * kt + Kt @ (x - xr)
            return f(x, u), (x, u)
        xT, (Xs, Un) = jax.lax.scan(body, x0, (X[:-1], U, k, K))
        Xn = jnp.concatenate([Xs, xT[None]])
        return Xn, Un, total(Xn, Un)

    def derivatives(X, U):
        fx, fu = jax.vmap(jax.jacfwd(f, argnums=(0, 1)))(X[:-1], U)
        lx, lu = jax.vmap(jax.grad(l_run, argnums=(0, 1)))(X[:-1], U)
        (lxx, lxu), (_, luu) = jax.vmap(jax.hessian(l_run, argnums=(0, 1)))(X[:-1], U)
        lx = jnp.concatenate([lx, jax.grad(l_fin)(X[-1])[None]])
        lxx = jnp.concatenate([lxx, jax.hessian(l_fin)(X[-1])[None]])
        return fx, fu, lx, lu, lxx, luu, lxu.transpose(0, 2, 1)

    def backward(D, mu):
        fx, fu, lx, lu, lxx, luu, lux = D

        def body(c, s):
            Vx, Vxx, dV1, dV2, ok = c
            A, Bm, lxt, lut, lxxt, luut, luxt = s
            Qx, Qu = lxt + A.T @ Vx, lut + Bm.T @ Vx
            Qxx = lxxt + A.T @ Vxx @ A
            Quu = luut + Bm.T @ Vxx @ Bm
            Qux = luxt + Bm.T @ Vxx @ A
            Quu = 0.5 * (Quu + Quu.T)
            Qr = Quu + mu * jnp.eye(m)
            good = (jnp.isfinite(Qr).all()
                    & (jnp.linalg.eigvalsh(Qr)[0] > 1e-13 * jnp.abs(Qr).max()))
            sol = jnp.linalg.solve(jnp.where(good, Qr, jnp.eye(m)),
                                   jnp.concatenate([Qu[:, None], Qux], axis=1))
            good &= jnp.isfinite(sol).all()
            sol = jnp.where(good, -sol, 0.0)
            kt, Kt = sol[:, 0], sol[:, 1:]
            Quk = Quu @ kt
            Vx = Qx + Kt.T @ (Quk + Qu) + Qux.T @ kt
            Vxx = Qxx + Kt.T @ Quu @ Kt + Kt.T @ Qux + Qux.T @ Kt
            Vxx = 0.5 * (Vxx + Vxx.T)
            c = (Vx, Vxx, dV1 + kt @ Qu, dV2 + 0.5 * kt @ Quk, ok & good)
            return c, (kt, Kt)
        c0 = (lx[-1], lxx[-1], jnp.zeros(()), jnp.zeros(()), jnp.array(True))
        (_, _, dV1, dV2, ok), (k, K) = jax.lax.scan(
            body, c0, (fx, fu, lx[:-1], lu, lxx[:-1], luu, lux), reverse=True)
        return k, K, dV1, dV2, ok

    U = jnp.zeros((T, m))
    X = jnp.zeros((T + 1, n))
    k0, K0 = jnp.zeros((T, m)), jnp.zeros((T, m, n))
    f64 = jnp.asarray(0.0)
    t0 = time.perf_counter()
    fwd_c = jax.jit(forward).lower(X, U, k0, K0, f64).compile()
    der_c = jax.jit(derivatives).lower(X, U).compile()
    D = jax.eval_shape(derivatives, X, U)
    bwd_c = jax.jit(backward).lower(D, f64).compile()
    compile_s = time.perf_counter() - t0

    def solve():
        """ctrlprop's unbounded iLQR loop (solvers/ddp.py), on the compiled passes."""
        mu_min, mu_max, fac, accept, tol = 1e-6, 1e10, 2.0, 0.1, 1e-10
        X, U, J = fwd_c(jnp.zeros((T + 1, n)), jnp.zeros((T, m)), k0, K0, f64)
        J = float(J)
        mu, delta, nit, nfev, hist = 0.0, 1.0, 0, 1, [J]
        D, fresh = None, False
        for _ in range(maxiter):
            if not fresh:
                D, fresh = der_c(X, U), True
            while True:
                k, K, dV1, dV2, ok = bwd_c(D, jnp.asarray(mu))
                if bool(ok):
                    break
                delta = max(fac, delta * fac)
                mu = max(mu_min, mu * delta)
                if mu > mu_max:
                    return X, U, J, nit, nfev, hist
            nit += 1
            dV1, dV2 = float(dV1), float(dV2)
            if -(dV1 + dV2) <= tol * (1.0 + abs(J)):
                break
            moved = False
            for alpha in 0.5 ** np.arange(10):
                Xn, Un, Jn = fwd_c(X, U, k, K, jnp.asarray(alpha))
                nfev += 1
                Jn = float(Jn)
                if np.isfinite(Jn) and J - Jn > accept * -(alpha * dV1 + alpha ** 2 * dV2):
                    X, U, J, moved, fresh = Xn, Un, Jn, True, False
                    break
            if moved:
                delta = min(1.0 / fac, delta / fac)
                mu = mu * delta if mu * delta > mu_min else 0.0
            else:
                delta = max(fac, delta * fac)
                mu = max(mu_min, mu * delta)
                if mu > mu_max:
                    break
            hist.append(J)
        return X, U, J, nit, nfev, hist

    best = np.inf
    for _ in range(2):                            # best of two solves
        t1 = time.perf_counter()
        _, _, J, nit, nfev, hist = solve()
        best = min(best, time.perf_counter() - t1)
    return {"cost": J, "nit": nit, "nfev": nfev, "history": hist, "seconds": best,
            "compile": compile_s, "version": jax.__version__}


# ---- the learned models ---------------------------------------------------------------------
def quiet(fn, *a, **kw):
    """fn(*a, **kw) with ConvergenceWarnings silenced (the tables report the status)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*a, **kw)


def timed_plan(model, x0, H, cost, u0, bounds, method, maxiter):
    """optimize_trajectory, timed; (result, seconds)."""
    t0 = time.perf_counter()
    r = quiet(cp.optimize_trajectory, model, x0, H, cost, u0=u0, bounds=bounds, method=method,
              maxiter=maxiter)
    return r, time.perf_counter() - t0


def short(msg):
    """scipy's L-BFGS-B message cut to its gist."""
    msg = str(msg)
    for key, val in (("ITERATIONS REACHED", "iteration limit"), ("CONVERGENCE", "converged")):
        if key in msg:
            return val
    return msg[:30]


def pendulum_true_cost(plant, x0, U):
    """The swing-up cost of the controls U (H, 1) on the true (unwrapped) pendulum."""
    S = plant.rollout(x0, U)
    run = pendulum_swingup.running_cost(S[None, :-1], U[None])[0].sum()
    return float(run + pendulum_swingup.terminal_cost(S[None, -1])[0][0])


def main():
    car = cp.Car()
    it_lb, it_il, it_dd = CFG["true"]
    rows = []
    with cp.blas_threads(1):
        note = machine_note()
        # 1. the true car
        fast = compiled_closed_loop(car)            # None without numba
        t0 = time.perf_counter()
        if fast:                                    # numba: compile, or load from its cache
            solve_true(car, "ilqr", 1, closed_loop=fast)
        first_call = time.perf_counter() - t0
        lb = car_parking.optimize_true(car, CAR_X0, T, it_lb)
        with cp.use_compiled(False):
            il_np = solve_true(car, "ilqr", it_il)
        il = solve_true(car, "ilqr", it_il, closed_loop=fast) if fast else il_np
        dd = solve_true(car, "ddp", it_dd, closed_loop=fast)
        pol = solve_true(car, "ilqr", it_il, closed_loop=fast, u0=lb["controls"])
        target = (1 + GAP) * lb["cost"]

        def reach(r):
            hit = [s for s, J in r["trace"] if J <= target]
            return hit[0] if hit else None
        hybrid = []
        for k in WARM:                      # L-BFGS-B for k iterations, then iLQR from there
            first = car_parking.optimize_true(car, CAR_X0, T, k)
            then = solve_true(car, "ilqr", it_il, closed_loop=fast, u0=first["controls"])
            hit = reach(then)
            hybrid.append((k, first, then, None if hit is None else first["seconds"] + hit))
        runs = [("BPTT + L-BFGS-B (scipy)", lb, short(lb["message"])),
                ("iLQR, numpy path (exact car Jacobians)", il_np, STATUS[il_np["status"]])]
        if fast:
            runs.append(("iLQR, compiled (+ numba car rollout)", il, STATUS[il["status"]]))
        runs += [("DDP (+ differenced car Hessians)", dd, STATUS[dd["status"]]),
                 ("iLQR from L-BFGS-B's answer", pol, STATUS[pol["status"]])]
        for name, r, status in runs:
            t_hit = None if r is lb else reach(r)
            rows.append([name, f"{r['cost']:.5f}", f"{r['cost'] / lb['cost'] - 1:+.2%}",
                         str(r["nit"]), fmt_time(r["seconds"]),
                         fmt_time(r["seconds"] / max(r["nit"], 1)),
                         "-" if r is lb else (fmt_time(t_hit) if t_hit else "never"), status])
        for k, first, then, t_all in hybrid:
            rows.append([f"L-BFGS-B {k} iterations, then iLQR", f"{then['cost']:.5f}",
                         f"{then['cost'] / lb['cost'] - 1:+.2%}", f"{k} + {then['nit']}",
                         fmt_time(first["seconds"] + then["seconds"]), "-",
                         fmt_time(t_all) if t_all else "never", STATUS[then["status"]]])

        # 2. the learned car
        t0 = time.perf_counter()
        net, hist = quiet(car_parking.train_model, car, car_parking.QUICK, 0)
        t_train = time.perf_counter() - t0
        model = cp.Dynamics(net, 4, residual=True)
        bounds = Bounds(car.u_low, car.u_high)
        mrows = []
        for method, cap in zip(("L-BFGS-B", "ilqr", "ddp"), CFG["model"]):
            r, s = timed_plan(model, CAR_X0, T, car_parking.car_cost(), np.zeros((T, 2)),
                              bounds, method, cap)
            U = r.controls
            J_true = car_trajectory_cost(car.rollout(CAR_X0, U), U)[0]
            mrows.append([method, f"{r.fun:.5f}", f"{J_true:.5f}", str(r.nit), fmt_time(s),
                          fmt_time(s / max(r.nit, 1)), STATUS[int(np.ravel(r.status)[0])]])

        # 3. the pendulum swing-up through a learned model
        plant = cp.Pendulum(wrap=False)
        H = 100
        t0 = time.perf_counter()
        pnet, _ = quiet(pendulum_swingup.train_model, plant, pendulum_swingup.QUICK, 0, "tanh")
        t_ptrain = time.perf_counter() - t0
        pmodel = cp.Dynamics(pnet, 2, residual=True)
        prows = []
        x0p = plant.hanging
        for method, cap in zip(("L-BFGS-B", "ilqr", "ddp"), CFG["pend"]):
            r, s = timed_plan(pmodel, x0p, H, pendulum_swingup.SWINGUP_COST,
                              np.full((H, 1), pendulum_swingup.FIRST_PLAN),
                              Bounds(plant.u_low, plant.u_high), method, cap)
            th = r.states[-1, 0]
            J_true = pendulum_true_cost(plant, x0p, r.controls)
            prows.append([method, f"{r.fun:.4f}", f"{J_true:.4f}",
                          f"{np.cos(th):+.3f}", str(r.nit), fmt_time(s),
                          fmt_time(s / max(r.nit, 1)), STATUS[int(np.ravel(r.status)[0])]])

        # 4. per iteration, unbounded: ctrlprop's iLQR, then (last: its thread pools) JAX
        X_ = np.array([[0.3, -0.2, 4.0, 3.0], [2.0, 1.0, -1.0, -5.0]])
        U_ = np.array([[0.4, 1.5], [-0.5, -2.0]])
        if not np.allclose(free_step(car, X_, U_), car.step(X_, U_), rtol=1e-14, atol=1e-14):
            raise SystemExit("free_step disagrees with Car.step")
        with cp.use_compiled(False):
            cps = [solve_true(car, "ilqr", CFG["cmp"], bounded=False) for _ in range(2)]
        cpu_np = min(cps, key=lambda r: r["seconds"])
        cpu = cpu_np
        if fast:
            cps = [solve_true(car, "ilqr", CFG["cmp"], bounded=False, closed_loop=fast)
                   for _ in range(2)]
            cpu = min(cps, key=lambda r: r["seconds"])
        jx = jax_ilqr(car, CFG["cmp"])

    print(f"iLQR / DDP benchmark, float64; {note}"
          + ("; --quick (iteration caps)" if QUICK else ""))
    print(f"\n1. True car, T = {T}, from zero controls, bounds |w| <= 0.5, |a| <= 2 "
          f"(caps: L-BFGS-B {it_lb}, iLQR {it_il}, DDP {it_dd} iterations)")
    table(rows, ["method", "cost", "vs L-BFGS-B", "iters", "time", "per iter",
                 "to within 0.5 %", "status"])
    gap = il["cost"] / lb["cost"] - 1
    ratio = il["seconds"] / lb["seconds"]
    il_hit = reach(il)
    print(f"iLQR vs L-BFGS-B: cost gap {gap:+.2%}, time ratio {ratio:.2f}x"
          + (f", reached within 0.5 % after {il_hit:.2f} s ({il_hit / lb['seconds']:.2f}x "
             f"L-BFGS-B's time)" if il_hit else ", never within 0.5 %"))
    if il["status"] == 0 and gap > GAP:
        print("(iLQR converged, to another local optimum than L-BFGS-B's: the problem has "
              "several, see scenarios/car_parking.py)")
    for k, first, then, t_all in hybrid:
        print(f"L-BFGS-B {k} iterations ({first['cost']:.5f} in {first['seconds']:.2f} s), "
              f"then iLQR: {then['cost']:.5f}, "
              + (f"within 0.5 % after {t_all:.2f} s in all ({t_all / lb['seconds']:.2f}x "
                 f"L-BFGS-B's time; goal <= 0.2x)" if t_all else "never within 0.5 %"))

    print(f"\n2. Learned car model (car_parking QUICK: 5000 transitions, 2 x 32 tanh, trained "
          f"in {t_train:.1f} s), T = {T}, from zero controls, the same bounds")
    table(mrows, ["method", "cost (model)", "cost (true car)", "iters", "time", "per iter",
                  "status"])

    print(f"\n3. Pendulum swing-up, learned model (pendulum_swingup tanh variant, trained in "
          f"{t_ptrain:.1f} s), H = {H} from hanging, |u| <= 2, start u = 0.5")
    table(prows, ["method", "cost (model)", "cost (true)", "cos theta_H", "iters", "time",
                  "per iter", "status"])

    print(f"\n4. Per iteration, true car WITHOUT bounds, {CFG['cmp']} iterations at most, "
          f"best of 2 solves")
    jrows = []
    for name, r in (("ctrlprop iLQR, numpy path", cpu_np),
                    ("ctrlprop iLQR, compiled (+ numba car rollout)", cpu if fast else None)):
        if r is not None:
            jrows.append([name, f"{r['cost']:.6g}", str(r["nit"]), str(r["out"]["nfev"]),
                          fmt_time(r["seconds"]), fmt_time(r["seconds"] / max(r["nit"], 1)),
                          "-"])
    if jx is not None:
        jrows.append([f"JAX {jx['version']} iLQR (jit, lax.scan)", f"{jx['cost']:.6g}",
                      str(jx["nit"]), str(jx["nfev"]), fmt_time(jx["seconds"]),
                      fmt_time(jx["seconds"] / max(jx["nit"], 1)), fmt_time(jx["compile"])])
    table(jrows, ["solver", "final cost", "iters", "rollouts", "time", "per iter", "compile"])
    per_cp = cpu["seconds"] / max(cpu["nit"], 1)
    if fast:
        print(f"ctrlprop's compiled kernels: first call {first_call:.2f} s (numba compiles "
              f"once, then loads them from its disk cache)")
    if jx is not None:
        per_jx = jx["seconds"] / max(jx["nit"], 1)
        hc, hj = np.array(cpu["out"]["history"]), np.array(jx["history"])
        k = min(len(hc), len(hj))
        dev = np.max(np.abs(hc[:k] - hj[:k]) / np.abs(hj[:k]))
        print(f"ctrlprop / JAX per iteration: {per_cp / per_jx:.1f}x; the two cost histories "
              f"agree to {dev:.1e} (relative, over {k} values)")
    else:
        print("JAX not installed: reference skipped (pip install jax)")

    print("\nGoals")
    okA = il_hit is not None and il_hit <= lb["seconds"] / 5
    print(f"A. true car: iLQR within 0.5 % of L-BFGS-B's cost ({lb['cost']:.5f}) in <= 1/5 of "
          f"its time ({lb['seconds']:.2f} s): from zeros, iLQR cost {il['cost']:.5f} "
          f"({gap:+.2%}), "
          + (f"within 0.5 % after {il_hit:.2f} s" if il_hit else "never within 0.5 %")
          + f", total {il['seconds']:.2f} s -> {'met' if okA else 'NOT met'}")
    for k, first, then, t_all in hybrid:
        ok = t_all is not None and t_all <= lb["seconds"] / 5
        print(f"   after {k} L-BFGS-B iterations: iLQR cost {then['cost']:.5f}, "
              + (f"within 0.5 % after {t_all:.2f} s in all" if t_all else "never within 0.5 %")
              + f" -> {'met' if ok else 'NOT met'}")
    if jx is not None:
        print(f"B. per iteration ctrlprop iLQR <= JAX iLQR: {fmt_time(per_cp).strip()} vs "
              f"{fmt_time(per_jx).strip()} ({per_cp / per_jx:.1f}x; JAX compile "
              f"{jx['compile']:.2f} s apart) -> {'met' if per_cp <= per_jx else 'NOT met'}")
    else:
        print("B. per iteration vs JAX: not measured (jax not installed; pip install jax)")


if __name__ == "__main__":
    main()
