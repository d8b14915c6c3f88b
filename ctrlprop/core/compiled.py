"""The compiled path: the engine's plan run by numba kernels, for small problems.

At a few samples a numpy pass is not arithmetic but call overhead: about 0.5 us per numpy
call and 15-20 calls per level and step.  With the extra ``ctrlprop[fast]`` (numba)
installed, the passes whose work is small -- one sample through at most
:data:`MAX_WEIGHTS` weights, or ``n_weights * K`` at most :data:`MAX_WORK` -- run as one
compiled call each instead of a loop over precompiled numpy steps:

* a forward or backward pass of :class:`~ctrlprop.core.engine.Buffers` (so
  :class:`~ctrlprop.Trace`, ``ControlObjective``, ``WeightObjective`` and every caller of
  ``Plan.run_forward`` / ``run_backward`` use it), and the input Jacobian of a trace;
* the whole-horizon rollout and the whole BPTT sweep of an
  :class:`~ctrlprop.objectives.unroll.Unroll` (``TrajectoryObjective``, ``cp.bptt``,
  ``optimize_trajectory`` and ``mpc`` with the gradient methods).

There is no second description of the network: :class:`CompiledPlan` is the
:class:`~ctrlprop.core.engine.Plan` as tables -- its levels (row offsets into the work
arrays, sizes, which keep ``z``, which are live), its weight blocks (source, destination,
offset, columns, bias) and one transfer code per unit -- and the kernels
(:mod:`ctrlprop.core.kernels`) read the engine's own work arrays, so a compiled pass leaves
exactly the state a numpy pass leaves and the two paths can be mixed freely.  The numpy
engine stays the reference: the tests run both and compare them (1e-12 relative).

Which path runs: :func:`use_compiled` (``True``, ``False`` or ``"auto"``, the default) and
:func:`compiled_available`.  ``use_compiled(False)`` runs every pass on numpy (numba, once
imported, stays loaded); the environment variable ``CTRLPROP_COMPILED=0`` switches the path
off for the process without importing numba at all.  A network with a user-registered transfer function, whose
function numba cannot compile, always runs on numpy.  Kernels are compiled on first use and
cached on disk by numba (``NUMBA_CACHE_DIR`` chooses where); ``benchmarks/bench_gradients.py``
reports the first-call cost.
"""

import importlib
import os
import numpy as np

__all__ = ["use_compiled", "compiled_available", "extension", "CompiledPlan", "MAX_WEIGHTS",
           "MAX_WORK", "TRANSFER_CODES"]

# Which passes run compiled: one sample with at most MAX_WEIGHTS weights, or a batch of K
# with at most MAX_WORK weight-sample products (n_weights * K).  Above these the numpy
# engine's BLAS products win.  Measured on this project's 2-core machine (value + gradient,
# compiled / numpy): one sample 0.76x at 1,412 weights and 1.25x at 18,952; a weight
# gradient of 6-32-32-4 at K = 4 1.3x, of 3-16-2 at K = 16 0.92x; BPTT of 6-32-32-4 over
# T = 50 for B = 1, 4, 16 trajectories 0.35x, 0.92x, 1.16x.
MAX_WEIGHTS = 8_000
MAX_WORK = 4_000

# the built-in transfers numba runs (kernels.h / kernels.dh), by name
TRANSFER_CODES = {"linear": 0, "tanh": 1, "logistic": 2, "relu": 3, "softplus": 4, "sin": 5}

_ENV_OFF = os.environ.get("CTRLPROP_COMPILED", "1") == "0"     # numba is then never imported
_state = {"mode": False if _ENV_OFF else "auto", "kernels": False if _ENV_OFF else None}
# Read by the engine on every pass: True when compiled passes may run.  Set by use_compiled.
ENABLED = False


def _load_kernels():
    """The kernels module, or False when numba is not installed."""
    k = _state["kernels"]
    if k is None:
        try:
            k = importlib.import_module(".kernels", __package__)
        except ImportError:
            k = False
        _state["kernels"] = k
    return k


def compiled_available():
    """True when the compiled path can run here (numba is installed and the environment
    variable CTRLPROP_COMPILED is not 0)."""
    return bool(_load_kernels())


def _apply(mode):
    # "auto" does not import numba here: a plan without kernels (compiled_plan -> None)
    # runs on numpy whatever ENABLED says
    global ENABLED
    if mode is True and not compiled_available():
        raise ValueError("use_compiled(True): the compiled path is switched off for this "
                         "process by CTRLPROP_COMPILED=0" if _ENV_OFF else
                         "use_compiled(True) needs numba: pip install 'ctrlprop[fast]'")
    _state["mode"] = mode
    ENABLED = bool(mode)


class _Restore:
    """What use_compiled returns: the previous mode, restored when used as a context."""

    def __init__(self, previous):
        self.previous = previous

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        _apply(self.previous)
        return False


def use_compiled(mode="auto"):
    """Choose whether small passes run compiled (numba) or on the numpy engine.

    Parameters
    ----------
    mode : {"auto", True, False}
        ``"auto"`` (the default): compiled when numba is installed.  ``True``: compiled,
        and a ValueError without numba.  ``False``: always the numpy engine.

    Returns
    -------
    A context manager that restores the previous mode on exit, so both
    ``cp.use_compiled(False)`` and ``with cp.use_compiled(False): ...`` work.
    """
    if not (mode is True or mode is False or (isinstance(mode, str) and mode == "auto")):
        raise ValueError(f"mode must be 'auto', True or False, got {mode!r}")
    previous = _state["mode"]
    _apply(mode)
    return _Restore(previous)


_EXTENSIONS = {}


def extension(module):
    """Another layer's numba kernels: the module ``module`` (absolute name, importing
    numba at its top) when compiled passes run now, else None.

    Used by the solvers (``ctrlprop.solvers.ddp_kernels``) so that one switch,
    :func:`use_compiled`, and one environment variable govern every compiled kernel.
    """
    if not ENABLED or not _load_kernels():
        return None
    mod = _EXTENSIONS.get(module)
    if mod is None:
        mod = _EXTENSIONS[module] = importlib.import_module(module)
    return mod


def is_enabled():
    """True when compiled passes run now."""
    return ENABLED


class CompiledPlan:
    """A :class:`~ctrlprop.core.engine.Plan` as the kernels' tables (see the module notes).

    Attributes
    ----------
    lv : ndarray of int64, (n_levels, 6)
        Per level: row offset in the O work array, row offset in G, size, row offset in Z
        (-1 when z is not kept), live (some output depends on it), output level.
    blk : ndarray of int64, (n_blocks, 6)
        Per weight block, ordered by destination level: destination, source, offset in the
        packed weights ``WD``, columns (with the bias column), has bias, offset of its
        transpose in ``WT``.
    bstart : ndarray of int64, (n_levels + 1,)
        The blocks into level L are ``blk[bstart[L]:bstart[L+1]]``.
    grp, gstart : ndarray of int64, (n_groups, 3) and (n_levels + 1,)
        The runs of units of one transfer in a level (``plan.groups``): transfer code, first
        and last + 1 position in the level; level L's are ``grp[gstart[L]:gstart[L+1]]``.
    outs, outs_g : ndarray of int64, (n_out,)
        Each output unit's row in O and in G.
    smap : ndarray of int64, (n_sparse, 2)
        For the entries of sparse blocks: (position in the flat weights, position in WD).
    kernels : module
    """

    def __init__(self, plan, kernels):
        self.kernels = kernels
        nl = plan.n_levels
        live = [L in plan.out_by_level for L in range(nl)]
        for L in range(nl - 1, 0, -1):
            if live[L]:
                for b in plan.blocks[L]:
                    live[b.src] = True
        lv = np.zeros((nl, 6), np.int64)
        for L in range(nl):
            z_off = plan.z_offsets[L] if L and plan.keep_z[L] else -1
            lv[L] = (plan.o_offsets[L], plan.g_offsets[L], plan.sizes[L], z_off, live[L],
                     L in plan.out_by_level)
        blocks = [b for L in range(1, nl) for b in plan.blocks[L]]
        self.blk = np.array([(b.dst, b.src, b.woff, b.cols, b.has_bias, b.toff)
                             for b in blocks], np.int64).reshape(-1, 6)
        counts = [len(plan.blocks[L]) for L in range(nl)]
        self.bstart = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self.grp = np.array([(TRANSFER_CODES[t.name], a, c) for L in range(1, nl)
                             for t, a, c in plan.groups[L]], np.int64).reshape(-1, 3)
        counts = [0] + [len(plan.groups[L]) for L in range(1, nl)]
        self.gstart = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        outs, outs_g = [], []
        for L, (rows, ys) in plan.out_by_level.items():
            for r, y in zip(rows, ys):
                outs.append((y, plan.o_offsets[L] + r, plan.g_offsets[L] + r))
        outs.sort()
        self.outs = np.array([o[1] for o in outs], np.int64)
        self.outs_g = np.array([o[2] for o in outs], np.int64)
        smap = [(b.off + j, b.woff + f) for L in range(1, nl) for b in plan.blocks[L]
                if not b.dense for j, f in enumerate(b.flat)]
        self.smap = np.array(smap, np.int64).reshape(-1, 2)
        self.lv = lv
        self.max_size = max(plan.sizes[1:])
        self.n_wd = plan.n_wd

    @staticmethod
    def supports(plan):
        """True when every transfer of the plan has a compiled kernel and no output is an
        input unit."""
        return (all(t.name in TRANSFER_CODES and t.builtin for g in plan.groups[1:]
                    for t, _, _ in g)
                and 0 not in plan.out_by_level)

    # ------------------------------------------------------------ passes of one Buffers
    def forward(self, bufs, XT, in_scale):
        """The forward pass of XT (n_inputs, K) raw into bufs (see Plan.run_forward)."""
        mx, sx = (_EMPTY, _EMPTY) if in_scale is None else in_scale
        self.kernels.forward(self.lv, self.blk, self.bstart, self.grp, self.gstart, self.outs,
                             bufs.weights.WD, bufs.weights.WT, XT, mx, sx, bufs.O[0],
                             bufs.Obig, bufs.Zbig, bufs.Y, not bufs.plan.out_direct)

    def backward(self, bufs, dYT, out_scale, want_w, want_x):
        """The delta recursion from dYT (n_out, K) raw (see Plan.run_backward)."""
        sy = _EMPTY if out_scale is None else out_scale[1]
        self.kernels.backward(self.lv, self.blk, self.bstart, self.grp, self.gstart,
                              self.outs_g, bufs.weights.WD, bufs.weights.WT, bufs.O[0],
                              bufs.Obig, bufs.Zbig, bufs.Gbig, bufs.G[0], bufs.scratch(),
                              bufs.GD, bufs.grad, self.smap, dYT, sy, want_w, want_x)

    def jacobian_inputs(self, bufs, out_scale):
        """dY/dX_int (n_out, n_inputs, K) at bufs' forward pass, one compiled call."""
        sy = _EMPTY if out_scale is None else out_scale[1]
        J = np.empty((len(self.outs), bufs.plan.n_inputs, bufs.K))
        self.kernels.jacobian_inputs(self.lv, self.blk, self.bstart, self.grp, self.gstart,
                                     self.outs_g, bufs.weights.WD, bufs.weights.WT,
                                     bufs.O[0], bufs.Obig, bufs.Zbig, bufs.Gbig, bufs.G[0],
                                     bufs.scratch(), bufs.GD, sy, J)
        return J

    def control_call(self, bufs, XT, ctl, in_scale, T, Q, out_scale, R, UR):
        """``(kernel, args)``: ControlObjective's value and gradient in one call as
        ``kernel(*args, U, g)`` -> E summed, g (K, m) written, for controls U (K, m) (see
        kernels.control_value_grad).  Every argument but U and g is fixed for a workspace,
        so the caller builds this once; it must count the pass (``bufs.gen += 1``), after
        which bufs hold the forward and backward pass as the numpy engine leaves them."""
        head = [len(self.lv), len(self.blk), len(self.grp), len(self.outs), len(ctl),
                bufs.plan.n_inputs, in_scale is not None, out_scale is not None]
        meta = np.concatenate([np.array(head, np.int64)] + [
            np.asarray(t, np.int64).ravel() for t in (self.lv, self.blk, self.bstart, self.grp,
                                                      self.gstart, self.outs, self.outs_g, ctl)])
        fsc = np.concatenate([np.zeros(0)]
                             + ([] if in_scale is None else [in_scale[0], in_scale[1]])
                             + ([] if out_scale is None else [out_scale[1], out_scale[0]]))
        return self.kernels.control_packed, (meta, np.ascontiguousarray(fsc, np.float64),
                                             bufs.weights.WD, bufs.weights.WT, XT, bufs.Obig,
                                             bufs.Zbig, bufs.Gbig, bufs.scratch(), T, Q, R, UR)

    # ------------------------------------------------------------ whole horizons
    def rollout(self, weights, XB, OB, ZB, n, a, b, residual):
        """T steps of a dynamics model on stacked work arrays (see kernels.rollout)."""
        self.kernels.rollout(self.lv, self.blk, self.bstart, self.grp, self.gstart, self.outs,
                             weights.WD, weights.WT, XB, OB, ZB, n, a, b, residual)

    def closed_loop(self, weights, XB, OB, ZB, n, a, b, residual, sx, mx, Zr, Ur, k, K, alpha,
                    lo, hi, aug, U):
        """T steps under iLQR's local policy on stacked work arrays (see
        kernels.closed_loop); lo, hi None for no bounds."""
        bounded = lo is not None
        self.kernels.closed_loop(self.lv, self.blk, self.bstart, self.grp, self.gstart,
                                 self.outs, weights.WD, weights.WT, XB, OB, ZB, n, a, b,
                                 residual, sx, mx, Zr, Ur, k, K, alpha,
                                 lo if bounded else _EMPTY3, hi if bounded else _EMPTY3,
                                 bounded, aug, U)

    def bptt(self, weights, XB, OB, ZB, GBB, GB, Dk, Cs, sig, n, r, residual):
        """The BPTT sweep on stacked work arrays (see kernels.bptt)."""
        self.kernels.bptt(self.lv, self.blk, self.bstart, self.grp, self.gstart, self.outs_g,
                          weights.WD, weights.WT, XB, OB, ZB, GBB, GB, Dk, _EMPTY, Cs, sig, n,
                          r, residual)


_EMPTY = np.empty(0)
_EMPTY3 = np.empty((0, 0, 0))


def compiled_plan(plan):
    """The plan's :class:`CompiledPlan` (built once), or None when the compiled path is not
    available or the plan has a transfer without a kernel."""
    cpl = getattr(plan, "_compiled", 0)
    if cpl == 0:
        k = _load_kernels()
        cpl = CompiledPlan(plan, k) if k and CompiledPlan.supports(plan) else None
        plan._compiled = cpl
    return cpl


def for_batch(plan, K):
    """The plan's CompiledPlan when a pass of K samples counts as small, else None."""
    small = plan.n_weights <= MAX_WEIGHTS if K == 1 else plan.n_weights * K <= MAX_WORK
    # float32 plans run on numpy (the kernels are compiled for float64 only)
    return compiled_plan(plan) if small and plan.dtype == np.float64 else None


_apply(_state["mode"])
