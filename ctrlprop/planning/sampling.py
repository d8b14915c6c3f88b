"""The sampling planners on a learned model: ``method="cem"``, ``"mppi"`` and ``"cem-gd"``.

:class:`Sampler` holds the trajectory objectives a sampling planner evaluates through, so
that :func:`~ctrlprop.optimize_trajectory` and a :class:`~ctrlprop.Planner` (MPC, which
replans from a new state every step) share one implementation:

* the population objective: N problems x P candidates in one batched
  :class:`~ctrlprop.TrajectoryObjective` (row ``i * P + p``), so every candidate of an
  iteration goes through one vectorized rollout (for an ensemble model, under every
  member: N P E paths);
* a one-per-problem objective for the warm start's and MPPI's final cost;
* for ``cem-gd`` the refinement: the best ``refine`` elites of CEM's last iteration,
  N * refine trajectories refined at once by the batched projected L-BFGS
  (:mod:`ctrlprop.solvers.batch_lbfgs`, each with its own memory and line search) through
  the same model by BPTT; the answer is the lowest-cost trajectory among the refined ones
  and CEM's best (CEM-GD, Huang et al. 2021, arXiv 2112.07746; Bharadhwaj et al. 2020).

With ``options["workers"] = w > 1`` every population's rollout is split into w equal
groups of candidates, each its own objective, rolled out on w threads at once (numpy's
products and element-wise loops release the GIL; BLAS stays at one thread per call): on 2
cores a HalfCheetah population's rollout 1.49x faster, a cem-gd plan 1.26x
(``benchmarks/bench_planner_speed.py``).  A run is reproducible for a given w; different
w batch the products differently and agree to rounding (about 1e-12 relative), not bit for
bit.  The cost's callables are then called from the worker threads.

Model transitions are counted as the planners' budget: ``transitions`` = trajectories
rolled out x T x members (each member's step counts, also with ``propagation="mean"``) (a
gradient evaluation's rollout counts; its backward sweep, about as costly, is reported apart
as ``gradient_sweeps`` trajectories).
"""

import contextvars
from concurrent.futures import ThreadPoolExecutor, wait

import numpy as np

from ..objectives.trajectory import TrajectoryObjective
from ..solvers.batch_lbfgs import batch_lbfgs
from ..solvers.sampling import cem, mppi, sampling_options

__all__ = ["Sampler", "SAMPLING_METHODS", "DEFAULT_SAMPLING_MAXITER", "repeat_cost", "repeat_exo"]

SAMPLING_METHODS = ("cem", "mppi", "cem-gd")
DEFAULT_SAMPLING_MAXITER = {"cem": 10, "mppi": 10, "cem-gd": 3}


def repeat_cost(cost, k):
    """The cost for trajectories repeated k times each (a per-trajectory goal repeated)."""
    if cost.goal is not None and cost.goal.ndim == 3:
        return cost.with_goal(np.repeat(cost.goal, k, axis=0))
    return cost


def repeat_exo(exo, k):
    """Exogenous inputs for trajectories repeated k times each (per-trajectory rows, 3-D,
    repeated; shared ones as they are)."""
    if exo is not None and np.ndim(exo) == 3:
        return np.repeat(np.asarray(exo, float), k, axis=0)
    return exo


class Sampler:
    """A sampling planner for N problems of horizon T through ``model``.

    Parameters
    ----------
    model : Dynamics
    X0 : ndarray (N, n)
    T : int
    cost : TrajectoryCost
    exo : array_like or None
        As for :class:`~ctrlprop.TrajectoryObjective` (per-trajectory data with N rows).
    method : {"cem", "mppi", "cem-gd"}
    options : dict or None
        The method's options (:data:`~ctrlprop.solvers.sampling.SAMPLING_OPTIONS`).
    """

    def __init__(self, model, X0, T, cost, exo, method, options):
        self.model, self.T, self.method = model, T, method
        self.opts = sampling_options(options, method)
        self.N = X0.shape[0]
        self.P = self.opts["population"]
        self.k = self.opts.get("refine", 0)
        self.E = model.n_members       # every step of a path runs every member (both modes)
        self.workers = self.opts["workers"]
        self._objs = {}
        self._pool = None
        self.set_problem(X0, cost, exo)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_pool"] = None                   # threads are not pickled: started on use
        return state

    def __setstate__(self, state):
        state["opts"].setdefault("workers", 1)                   # pickled before workers
        state.setdefault("workers", 1)
        state.setdefault("_pool", None)
        state["_objs"] = {(k if isinstance(k, tuple) else (k, 0)): o
                          for k, o in state["_objs"].items()}
        self.__dict__.update(state)

    def close(self):
        """Stop the worker threads (they start again on the next evaluation)."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def set_problem(self, X0=None, cost=None, exo=None):
        """Change the initial states, the cost and/or the exogenous inputs (same N)."""
        if X0 is not None:
            self.X0 = np.array(X0, dtype=np.float64)
        if cost is not None:
            self.cost = cost
        if exo is not None or not hasattr(self, "exo"):
            self.exo = exo
        for (k, _), obj in self._objs.items():
            obj.set_x0(np.repeat(self.X0, k, axis=0))
            obj.set_cost(repeat_cost(self.cost, k))
            obj.set_exo(repeat_exo(self.exo, k))

    def _objective(self, k, part=0):
        """The batched objective of N * k trajectories (row i * k + j), built once (one per
        ``part``: the groups of a split population roll out at the same time)."""
        obj = self._objs.get((k, part))
        if obj is None:
            obj = self._objs[k, part] = TrajectoryObjective(
                self.model, np.repeat(self.X0, k, axis=0), self.T,
                repeat_cost(self.cost, k), repeat_exo(self.exo, k))
        return obj

    def evaluate(self, S):
        """Costs (N, Q) of the candidates S (N, Q, T, m): one rollout of N Q trajectories,
        or of ``workers`` groups of candidates on as many threads."""
        N, Q = S.shape[:2]
        w = min(self.workers, Q)
        if w == 1:
            return self._objective(Q).costs(S.reshape(-1)).reshape(N, Q).copy()
        edges = np.linspace(0, Q, w + 1).round().astype(int)
        parts = [(a, b, self._objective(b - a, i))            # built here, not on a worker
                 for i, (a, b) in enumerate(zip(edges[:-1], edges[1:]))]
        out = np.empty((N, Q))

        def run(part):
            a, b, obj = part
            out[:, a:b] = obj.costs(np.ascontiguousarray(S[:, a:b]).reshape(-1)).reshape(N, b - a)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="ctrlprop-sampler")
        # each task in a copy of the caller's context (numpy's errstate lives there)
        futures = [self._pool.submit(contextvars.copy_context().run, run, p) for p in parts]
        try:
            for f in futures:
                f.result()                                      # re-raises a worker's error
        finally:
            wait(futures)             # none still writes into an objective when this returns
        return out

    def solve(self, U0, lo, hi, maxiter, rng, notify=None):
        """Plan from the means U0 (N, T, m) within [lo, hi] (T, m).

        Returns
        -------
        dict
            ``x`` (N, T, m), ``fun`` (N,), ``nit``, ``nfev`` (trajectories rolled out),
            ``transitions``, ``gradient_sweeps``, ``history`` {"fun"}, ``stopped``; for
            cem-gd also ``refined`` (N,) bool (the answer came from the refinement),
            ``sampled_fun`` (N,) (CEM's best cost) and ``gd_nit``.
        """
        o, T, E = self.opts, self.T, self.E
        if self.method == "mppi":
            out = mppi(self.evaluate, U0, lo, hi, rng, maxiter=maxiter, population=self.P,
                       temperature=o["temperature"], init_std=o["init_std"],
                       noise_beta=o["noise_beta"], notify=notify)
            out["gradient_sweeps"] = 0
        else:
            out = cem(self.evaluate, U0, lo, hi, rng, maxiter=maxiter, population=self.P,
                      elites=o["elites"], alpha=o["alpha"], init_std=o["init_std"],
                      min_std=o["min_std"], noise_beta=o["noise_beta"],
                      keep_elites=o["keep_elites"], notify=notify)
            out["gradient_sweeps"] = 0
            if self.method == "cem-gd" and not out["stopped"]:
                self._refine(out, lo, hi)
        out["transitions"] = int(out["nfev"]) * T * E
        return out

    def _refine(self, out, lo, hi):
        """cem-gd: the best ``refine`` elites of each problem by batched L-BFGS; keep the best."""
        N, k, T = self.N, self.k, self.T
        m = out["x"].shape[-1]
        starts = out["elites"][:, :k].reshape(N * k, T * m)
        obj = self._objective(k)
        gd = dict(self.opts["gd_options"] or {})
        if "maxcor" in gd:
            gd["m"] = gd.pop("maxcor")

        def fun(X):
            _, g = obj(X.reshape(-1))
            return obj.last_costs.copy(), g.reshape(N * k, T * m)
        r = batch_lbfgs(fun, starts, np.broadcast_to(lo.ravel(), (N * k, T * m)),
                        np.broadcast_to(hi.ravel(), (N * k, T * m)),
                        maxiter=self.opts["gd_maxiter"], **gd)
        fr = np.where(np.isfinite(r.fun), r.fun, np.inf).reshape(N, k)
        j = np.argmin(fr, axis=1)
        rows = np.arange(N)
        best_r = fr[rows, j]
        use = best_r < out["fun"]
        X = r.x.reshape(N, k, T, m)
        out["sampled_fun"] = out["fun"].copy()
        out["x"][use] = X[rows[use], j[use]]
        out["fun"][use] = best_r[use]
        out["refined"] = use
        out["gd_nit"] = int(r.nit.max())
        out["nfev"] += int(r.nfev) * N * k
        out["gradient_sweeps"] = int(r.nfev) * N * k
        out["history"]["fun"] = np.concatenate([out["history"]["fun"], [float(out["fun"].sum())]])
