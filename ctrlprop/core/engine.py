"""The level-batched engine: forward pass, the delta recursion, Jacobians, R-operator.

A :class:`Plan` is compiled once from a Network's structure.  Units are grouped
by level (inputs = level 0; a computing unit's level is 1 + the highest level
among its sources), so every unit of level ``L`` depends only on lower levels.
Activations are stored *unit-major*: ``O_l`` is ``(n_l, K)`` for a batch of K
samples, and ``O~_l`` is ``O_l`` with the bias unit's row of ones appended (the
lecture's "input fixed to 1").  ``W_Ll`` is the block of weights into level
``L`` from level ``l``, row j holding ``w_ji`` (structural zeros where a
connection is missing; the bias column only in the block from ``L-1``).

Forward, for L = 1, 2, ...::

    Z_L = sum_{l < L} W_Ll O~_l              z_j = sum_i w_ji o_i
    O_L = h(Z_L)                             o_j = h_j(z_j), one call per transfer

Backward (the lecture's delta recursion, a whole level at once), with
``G_l = dE/dO_l`` seeded by the cotangent ``dE/dY`` at the output units::

    D_L      = h'(Z_L) * G_L                 delta_j = h'_j(z_j) sum_{i in Out(j)} delta_i w_ij
    dE/dW_Ll = D_L O~_l^T                    dE/dw_ji = delta_j o_i   (summed over the batch)
    G_l     += W_Ll^T D_L  (bias dropped)    for every l < L

``G_0`` is then ``dE/dX``: the deltas of the fake input units, which is all
that control optimisation needs (the weight products are skipped then).

Second order (Pearlmutter's R-operator, ``R{.} = d/dr (.)(w + r v_w, x + r v_x)``)::

    RZ_L = sum_l (W_Ll RO_l + V_Ll O~_l),    RO_L = h'(Z_L) * RZ_L,   RO_0 = v_x
    RD_L = h''(Z_L) * RZ_L * G_L + h'(Z_L) * RG_L
    R{dE/dW_Ll} = D_L RO~_l^T + RD_L O~_l^T
    RG_l += W_Ll^T RD_L + V_Ll^T D_L,        RG at the outputs = R{dE/dY}

gives exact Hessian-vector products with respect to weights and inputs
(:class:`SecondOrder`, preallocated, behind :meth:`Trace.jvp` / :meth:`Trace.hvp` and
``WeightObjective.hessp``).  Every backward pass -- first order, per-sample Jacobian,
second order -- is compiled by one function, :func:`backward_steps`.

Everything in the hot path is precompiled: a :class:`Buffers` object holds the
work arrays of one batch size and the lists of ``(function, args)`` steps that
read and write them, so a forward or backward pass is a loop of numpy calls
with no allocation.  Products are issued as ``np.dot`` on C- or F-contiguous
operands (half the call overhead of ``np.matmul`` on small arrays, the same BLAS
call on large ones).  New weights are copied into one :class:`Weights` holder
whose block views the steps refer to.

Input/output standardisation, when the network has it, is applied here, so
callers work in raw units: ``x_int = (x - m_x) / s_x``, ``y = y_int s_y + m_y``.
"""

import math

import numpy as np

from . import compiled
from .checks import as_float, check_finite, check_indices

__all__ = ["Plan", "Trace", "Weights", "Buffers", "SecondOrder", "StaleTraceError",
           "backward_steps", "forward_steps", "level_delta_steps"]


class StaleTraceError(RuntimeError):
    """A trace whose shared work buffers were overwritten by a later forward pass."""


# The finiteness check of X and dY runs on every forward and backward pass, where one sample
# takes ~14 us in all.  An array of at most _SMALL entries (a sample or a few) is tested by
# summing it as a Python list, a third of the cost of a numpy reduction call: the sum is
# finite exactly when every entry is, unless it overflows, and then the exact check decides.
# The hot paths inline that test; larger arrays take np.isfinite(A).all(), small beside the
# pass itself.
_SMALL = 64
_isfinite = math.isfinite


def _finite(A, name):
    """``A`` (a float64 array) if it holds no NaN or inf, else the ValueError of
    :func:`checks.check_finite` naming ``name``."""
    if not np.isfinite(A).all():
        check_finite(A, name)
    return A


def _unpicklable(obj):
    # The engine's objects are compiled views: op lists holding bound methods over views of
    # work arrays, which pickle would turn into unconnected copies (wrong numbers, silently).
    return TypeError(f"a {type(obj).__name__} is compiled engine state and is not pickled; "
                     "pickle the Network (its plan is rebuilt on first use) or the objective "
                     "that holds it")


class _Block:
    """Weights into one destination level from one source level."""

    __slots__ = ("src", "dst", "off", "size", "rows", "cols", "has_bias", "dense", "flat",
                 "woff", "toff")

    def __init__(self, d, woff, toff):
        self.src, self.dst, self.off = d["src"], d["dst"], d["off"]
        self.rows, self.cols, self.has_bias = d["rows"], d["cols"], d["has_bias"]
        self.dense, self.flat = d["dense"], d["flat"]
        self.size = len(self.flat)
        self.woff = woff        # offset of the dense (rows, cols) block in Weights.WD
        self.toff = toff        # offset of its transpose without bias in Weights.WT

    def view(self, w):
        """The block of flat vector w as (rows, cols), a reshape view (dense blocks only: a
        sparse block's dense copy lives in Weights.WD at ``woff``)."""
        return w[self.off:self.off + self.size].reshape(self.rows, self.cols)


class Weights:
    """A private copy of a flat weight vector, laid out as per-level blocks.

    ``W[L][i]`` is the i-th block into level L, ``(n_L, n_l [+1])`` including the
    bias column; ``Wn[L][i]`` the same without the bias column; ``WnT[L][i]`` a
    C-contiguous copy of ``Wn[L][i].T`` for the backward products.  The engine's
    precompiled steps refer to these arrays, so new weights are *copied in*
    (:meth:`load`); ``gen`` counts the loads.  All blocks live in one array ``WD``
    (``plan.n_wd``): ``w = WD[:n_weights]`` holds the dense blocks where the flat vector
    has them, and each sparse block's dense (rows, cols) copy follows at its ``woff``; all
    the ``WnT`` in one array ``WT`` (block at ``toff``) -- the layout the compiled kernels
    read.
    """

    def __init__(self, plan):
        self.plan = plan
        self.WD = np.zeros(plan.n_wd, plan.dtype)
        self.w = self.WD[:plan.n_weights]
        self.gen = 0
        self.W = [None] + [[b.view(self.w) if b.dense else
                            self.WD[b.woff:b.woff + b.rows * b.cols].reshape(b.rows, b.cols)
                            for b in plan.blocks[L]] for L in range(1, plan.n_levels)]
        self.Wn = [None] + [[V[:, :plan.sizes[b.src]] for b, V in zip(plan.blocks[L], self.W[L])]
                            for L in range(1, plan.n_levels)]
        self.WT = np.zeros(plan.n_wt, plan.dtype)   # every WnT block, packed at its toff
        self.WnT = [None] + [[self.WT[b.toff:b.toff + V.size].reshape(V.shape[::-1])
                              for b, V in zip(plan.blocks[L], self.Wn[L])]
                             for L in range(1, plan.n_levels)]
        self._sparse = [(b, V) for L in range(1, plan.n_levels)
                        for b, V in zip(plan.blocks[L], self.W[L]) if not b.dense]
        self._transposed = [(T, V.T) for L in range(1, plan.n_levels)
                            for T, V in zip(self.WnT[L], self.Wn[L])]

    def __reduce__(self):
        raise _unpicklable(self)

    def load(self, w):
        """Copy the flat vector w in."""
        np.copyto(self.w, w)
        for b, V in self._sparse:
            V.ravel()[b.flat] = w[b.off:b.off + b.size]
        for T, VT in self._transposed:
            np.copyto(T, VT)
        self.gen += 1


class Buffers:
    """Work arrays for one batch size and the precompiled steps that use them.

    All arrays are unit-major: ``O[l]`` is ``(n_l + 1, K)``, the outputs of level
    l over the batch plus the bias unit's row of ones; ``Ov[l] = O[l][:-1]``;
    ``Z[L]`` the activations (an alias of ``Ov[L]`` when no transfer of the
    level needs z); ``G[l] = dE/dO_l``; ``D[L]`` the deltas (an alias of
    ``G[L]`` for an all-linear level); ``Y`` the outputs ``(n_out, K)`` in
    internal units; ``grad`` the summed weight gradient.
    """

    def __init__(self, plan, K, weights, store=None):
        self.plan, self.K, self.weights, self.gen = plan, K, weights, 0
        sizes, nl = plan.sizes, plan.n_levels
        oo, go, zo = plan.o_offsets, plan.g_offsets, plan.z_offsets
        # every level's rows in one array per kind (views below), as the kernels read them;
        # ``store`` = (Obig, Zbig, Gbig) given by a caller that stacks many Buffers
        dt = plan.dtype
        if store is None:
            store = (np.empty((oo[-1], K), dt), np.empty((zo[-1], K), dt),
                     np.empty((go[-1], K), dt))
        self.Obig, self.Zbig, self.Gbig = store
        self.O = [self.Obig[oo[l]:oo[l + 1]] for l in range(nl)]
        for O in self.O:
            O[-1] = 1.0                                      # the bias unit
        self.Ov = [O[:-1] for O in self.O]
        self.Z = [None] + [self.Zbig[zo[L]:zo[L] + sizes[L]] if plan.keep_z[L] else self.Ov[L]
                           for L in range(1, nl)]
        self.G = [self.Gbig[go[l]:go[l + 1]] for l in range(nl)]
        self.D = [None] + [self.G[L] if plan.all_linear[L] else np.empty((sizes[L], K), dt)
                           for L in range(1, nl)]
        self.T = [np.empty((s, K), dt) for s in sizes]       # scratch for sums
        self.Y = self.Ov[-1] if plan.out_direct else np.empty((plan.n_out, K), dt)
        self.GD = np.empty(plan.n_wd, dt)                    # gradient in the WD layout
        self.grad = self.GD[:plan.n_weights]
        self.ck = compiled.for_batch(plan, K)                # compiled passes, if small
        self._dk = None
        self.src = [None] + [[self.O[b.src] if b.has_bias else self.Ov[b.src]
                              for b in plan.blocks[L]] for L in range(1, nl)]
        self.fwd_ops = self._compile_forward()
        self._bwd_ops = {}
        self._second = None

    def __reduce__(self):
        raise _unpicklable(self)

    def scratch(self):
        """The compiled kernels' delta array (largest level, K), allocated on first use."""
        if self._dk is None:
            self._dk = np.empty((max(self.plan.sizes[1:]), self.K), self.plan.dtype)
        return self._dk

    def _compile_forward(self):
        """Steps of the forward pass after the inputs are in O[0]."""
        return forward_steps(self.plan, self.weights.W, self.Z, self.T, self.src, self.Ov,
                             self.Y)

    def delta_steps(self, L):
        """Steps computing the deltas ``D_L = h'(Z_L) * G_L`` of level L (none if D is G)."""
        return level_delta_steps(self.plan, L, self.Z, self.Ov, self.G, self.D)

    def bwd_ops(self, want_w, want_x):
        """Steps of the delta recursion after G is seeded at the outputs (cached per mode)."""
        key = (want_w, want_x)
        ops = self._bwd_ops.get(key)
        if ops is None:
            wgrad = zero = None
            if want_w:
                wgrad = _summed_products(self.D, self.grad)
                zero = _zero_blocks(self.grad)
            ops = self._bwd_ops[key] = backward_steps(
                self.plan, self.G, self.D, self.T, self.src, self.weights.WnT,
                self.delta_steps, wgrad=wgrad, zero=zero, want_x=want_x)
        return ops

    def second_order(self):
        """The :class:`SecondOrder` products at this buffer's forward pass (created once)."""
        if self._second is None:
            self._second = SecondOrder(self)
        return self._second


# ---------------------------------------------------------------- the forward pass
# Written once for a network's 2-D arrays (n, K) and an ensemble's stacks (E, n, K): unit rows
# are selected with ``[..., a:c, :]`` and the block products by ``dot``.
def forward_steps(plan, W, Z, T, src, Ov, Y, dot=np.dot):
    """Precompiled steps of the forward pass after the inputs are in ``Ov[0]``.

    ``W[L][i]`` the block i into level L, ``Z``, ``T``, ``Ov`` per level (activations,
    scratch, outputs without the bias row), ``src[L][i]`` the block's source activations,
    ``Y`` the output array (written unless the outputs are the top level itself).
    """
    ops = []
    for L in range(1, plan.n_levels):
        for i, s in enumerate(src[L]):
            if i == 0:
                ops.append((dot, (W[L][0], s, Z[L])))                # Z_L = W_Ll O~_l
            else:
                ops += [(dot, (W[L][i], s, T[L])), (np.add, (Z[L], T[L], Z[L]))]
        for t, a, c in plan.groups[L]:                               # O_L = h(Z_L)
            o = Ov[L][..., a:c, :]
            ops += t.fwd_ops(o if Z[L] is Ov[L] else Z[L][..., a:c, :], o)
    if not plan.out_direct:
        for L, (cols, ys) in plan.out_by_level.items():
            ops.append((_gather_rows, (Ov[L], cols, Y, ys)))
    return ops


def level_delta_steps(plan, L, Z, Ov, G, D):
    """Steps computing the deltas ``D_L = h'(Z_L) * G_L`` of level L (none if D is G)."""
    if D[L] is G[L]:
        return []
    ops = []
    for t, a, c in plan.groups[L]:
        r = (Ellipsis, slice(a, c), slice(None))
        ops += t.delta_ops(Z[L][r], Ov[L][r], G[L][r], D[L][r])
    return ops


# ---------------------------------------------------------------- the delta recursion
# One compiler for every backward pass of the engine: the first-order pass of Buffers,
# the per-sample weight Jacobian of Trace and both passes of SecondOrder differ only in
# how a level's deltas are formed from its cotangent (``delta``), in what is done with
# the deltas of a weight block (``wgrad``) and in extra terms added to a source level's
# cotangent (``extra``).  For L = top, ..., 1 and every block W_Ll into level L::
#
#     D_L   = delta(G_L)                         (skipped for a level no output depends on)
#     wgrad(D_L, O~_l)                           e.g. dE/dW_Ll = D_L O~_l^T
#     G_l  (+)= W_Ll^T D_L  (+ extra)            the first block into l writes, later ones add
def backward_steps(plan, G, D, T, src, WnT, delta, wgrad=None, zero=None, extra=None,
                   want_x=True, dot=np.dot):
    """Precompiled steps of one delta recursion over the given arrays (see the comment above).

    Parameters
    ----------
    plan : Plan
    G, D, T : list of ndarray
        Per level: cotangents ``G[l]`` (n_l, K), deltas ``D[L]`` (n_L, K) (may be ``G[L]``),
        scratch ``T[l]`` (n_l, K).  ``G`` must be seeded at the output units before the
        steps run.
    src : list of list of ndarray
        ``src[L][i]``, the (cols, K) source activations of block i into level L.
    WnT : list of list of ndarray
        ``WnT[L][i]``, the (n_l, n_L) transposed block without its bias column.
    delta : callable
        ``delta(L) -> steps`` writing ``D[L]`` from ``G[L]``.
    wgrad, zero, extra : callable, optional
        ``wgrad(L, i, block, src) -> steps`` using ``D[L]`` for a block of a live level,
        ``zero(block) -> steps`` for a block of a level no output depends on,
        ``extra(L, i, block) -> steps`` adding more into ``G[block.src]`` after the product.
    want_x : bool
        Propagate down to the input units (``G[0]``).
    dot : callable
        ``dot(A, B, out)``, the product of a transposed block and the deltas: ``np.dot``
        on a network's 2-D arrays, ``np.matmul`` on an ensemble's stacks (a leading member
        axis on every array, see :mod:`ctrlprop.core.ensemble`).

    Returns
    -------
    list of (function, args)
    """
    ops = []
    live = [L in plan.out_by_level for L in range(plan.n_levels)]
    for L in range(plan.n_levels - 1, 0, -1):
        blocks = plan.blocks[L]
        if not live[L]:                               # nothing downstream: zero deltas
            if zero is not None:
                for b in blocks:
                    ops += zero(b)
            continue
        ops += delta(L)
        for i, (b, s) in enumerate(zip(blocks, src[L])):
            if wgrad is not None:
                ops += wgrad(L, i, b, s)
            l = b.src
            if l == 0 and not want_x:
                continue
            if live[l]:                               # G_l += W_Ll^T D_L
                ops += [(dot, (WnT[L][i], D[L], T[l])), (np.add, (G[l], T[l], G[l]))]
            else:
                ops.append((dot, (WnT[L][i], D[L], G[l])))
                live[l] = True
            if extra is not None:
                ops += extra(L, i, b)
    return ops


def _summed_products(D, grad, add=None):
    """``wgrad`` writing the batch-summed block gradient ``D_L O~_l^T`` into ``grad``;
    ``add(L, i, block, out) -> steps`` adds more into the (rows, cols) block ``out``."""
    def wgrad(L, i, b, s):
        g = grad[b.off:b.off + b.size]
        out = g.reshape(b.rows, b.cols) if b.dense else np.empty((b.rows, b.cols), grad.dtype)
        ops = [(np.dot, (D[L], s.T, out))]
        if add is not None:
            ops += add(L, i, b, out)
        if not b.dense:
            ops.append((np.take, (out.ravel(), b.flat, None, g)))
        return ops
    return wgrad


def _zero_blocks(grad):
    """``zero`` filling a block's entries of ``grad`` with 0."""
    return lambda b: [(_fill0, (grad[b.off:b.off + b.size],))]


def _outer_take(D, s, flat, seg):
    """seg (K, size) = the existing entries of the per-sample outer products d_k o~_k^T."""
    outer = D.T[:, :, None] * s.T[:, None, :]
    seg[...] = outer.reshape(len(seg), -1)[:, flat]


def _gather_rows(src, rows, dst, ys):
    dst[..., ys, :] = src[..., rows, :]


def _fill0(a):
    a.fill(0.0)


class Plan:
    """A network's structure compiled into levels, weight blocks and transfer groups.

    Low-level interface (used by :class:`Trace`, and by code that manages its
    own buffers such as back-propagation through time): :meth:`new_weights`,
    :meth:`new_buffers`, :meth:`run_forward`, :meth:`run_backward`.
    """

    MAX_CACHED_BATCH_SIZES = 8

    def __init__(self, net, dtype=np.float64):
        # float64 (the default and the reference) or float32: the dtype of every buffer and
        # weight copy of this plan (see Network.plan_for); inputs are cast on the way in
        self.dtype = np.dtype(dtype)
        self.n_inputs = net.n_inputs
        self.n_out = net.n_outputs
        self.n_weights = net.n_weights
        self.sizes = [len(lv) for lv in net.levels]
        self.n_levels = len(self.sizes)
        self.blocks = [[] for _ in range(self.n_levels)]
        wd = self.n_weights              # sparse blocks' dense copies follow the flat weights
        wt = 0
        for d in net.blocks:
            self.blocks[d["dst"]].append(_Block(d, d["off"] if d["dense"] else wd, wt))
            if not d["dense"]:
                wd += d["rows"] * d["cols"]
            wt += d["rows"] * (d["cols"] - d["has_bias"])
        self.n_wd, self.n_wt = wd, wt
        self.groups = [None]
        self.keep_z = [False]
        self.all_linear = [False]
        for L in range(1, self.n_levels):
            trs = [net.transfers[u - net.n_inputs] for u in net.levels[L]]
            groups, a = [], 0
            for c in range(1, len(trs) + 1):
                if c == len(trs) or trs[c].name != trs[a].name:
                    groups.append((trs[a], a, c))
                    a = c
            self.groups.append(groups)
            self.keep_z.append(any(t.needs_z for t in trs))
            self.all_linear.append(all(t.linear for t in trs))
        self.d2_ok = all(t.d2h is not None for t in net.transfers)
        lvl, pos = net.level_of, net.position
        out_level = [int(lvl[u]) for u in net.outputs]
        out_pos = [int(pos[u]) for u in net.outputs]
        top = self.n_levels - 1
        self.out_direct = (all(L == top for L in out_level)
                           and out_pos == list(range(self.sizes[top])))
        by = {}
        for j, (L, p) in enumerate(zip(out_level, out_pos)):
            by.setdefault(L, ([], []))
            by[L][0].append(p)
            by[L][1].append(j)
        # per level: (rows in that level, positions in Y) of its output units
        self.out_by_level = {L: (np.array(c), np.array(y)) for L, (c, y) in by.items()}
        # row offsets of each level in the Buffers' stacked arrays: O (with a bias row per
        # level), G, and Z (only the levels that keep z)
        cum = lambda v: [int(x) for x in np.concatenate([[0], np.cumsum(v)])]  # noqa: E731
        self.o_offsets = cum([s + 1 for s in self.sizes])
        self.g_offsets = cum(self.sizes)
        self.z_offsets = cum([s if k else 0 for s, k in zip(self.sizes, self.keep_z)])
        self.weights = Weights(self)
        self._bufs = {}

    def __reduce__(self):
        raise _unpicklable(self)

    # ------------------------------------------------------------ low level
    def new_weights(self):
        """A fresh :class:`Weights` holder, for buffers private to the caller."""
        return Weights(self)

    def new_buffers(self, K, weights=None, store=None):
        """Fresh :class:`Buffers` for batch size K, reading the given (default shared) weights;
        ``store`` = (Obig, Zbig, Gbig), arrays of shapes (o_offsets[-1], K),
        (z_offsets[-1], K) and (g_offsets[-1], K) to build them on."""
        return Buffers(self, K, self.weights if weights is None else weights, store)

    def buffers(self, K):
        """The shared work buffers for batch size K (created on first use)."""
        b = self._bufs.get(K)
        if b is None:
            if len(self._bufs) >= self.MAX_CACHED_BATCH_SIZES:
                self._bufs.pop(next(iter(self._bufs)))
            b = self._bufs[K] = Buffers(self, K, self.weights)
        return b

    def run_forward(self, bufs, XT, in_scale=None):
        """Forward pass of ``XT`` (n_inputs, K) -- note: unit-major -- into bufs.

        Afterwards ``bufs.Y`` (n_out, K) holds the outputs in internal units, and
        ``bufs.gen`` has counted the pass (traces and second-order products at an earlier
        pass of these buffers then know they are stale).
        """
        bufs.gen += 1
        if bufs.ck is not None and compiled.ENABLED:
            bufs.ck.forward(bufs, XT, in_scale)
            return
        if in_scale is None:
            np.copyto(bufs.Ov[0], XT)
        else:
            np.subtract(XT, in_scale[0][:, None], out=bufs.Ov[0])
            bufs.Ov[0] /= in_scale[1][:, None]
        for f, a in bufs.fwd_ops:
            f(*a)

    def seed(self, bufs, dYT, out_scale=None):
        """Write the cotangent ``dYT`` (n_out, K), raw units, into bufs.G at the output units."""
        self.seed_into(bufs.G, dYT, out_scale)

    def seed_into(self, G, dYT, out_scale=None):
        """Write ``dYT`` (n_out, K), raw units, into the per-level arrays G at the output units
        (internal units: times the output scale); the other rows of output levels get 0."""
        if self.out_direct:
            if out_scale is None:
                np.copyto(G[-1], dYT)
            else:
                np.multiply(dYT, out_scale[1][:, None], out=G[-1])
            return
        if out_scale is not None:
            dYT = dYT * out_scale[1][:, None]
        for L, (rows, ys) in self.out_by_level.items():
            G[L].fill(0.0)
            G[L][rows] = dYT[ys]

    def run_backward(self, bufs, dYT, out_scale=None, want_w=True, want_x=True):
        """Delta recursion from ``dYT`` (n_out, K): then bufs.grad = dE/dw, bufs.G[0] = dE/dX_int."""
        if bufs.ck is not None and compiled.ENABLED:
            bufs.ck.backward(bufs, dYT, out_scale, want_w, want_x)
            return
        self.seed(bufs, dYT, out_scale)
        for f, a in bufs.bwd_ops(want_w, want_x):
            f(*a)

    # ------------------------------------------------------------ helpers
    def _as_batch(self, X):
        """(2-D float array (K, n_inputs), was_single) after checking X: numeric, of shape
        (K, n_inputs) or (n_inputs,), finite.  A float64 array is used as it is; a valid
        (K, n_inputs) one costs five attribute tests and one finiteness test (``_SMALL``)."""
        n = self.n_inputs
        if (type(X) is np.ndarray and X.dtype == np.float64 and X.ndim == 2
                and X.shape[1] == n and X.shape[0]):
            single = False
        else:
            if not (type(X) is np.ndarray and X.dtype == np.float64):
                X = as_float(X, "X")
            if X.ndim not in (1, 2) or X.shape[-1] != n:
                raise ValueError(f"X must have shape (K, {n}) or ({n},), got {X.shape}")
            if not X.shape[0]:
                raise ValueError("X is empty (0 samples)")
            single = X.ndim == 1
        if not (X.size <= _SMALL and _isfinite(sum(X.ravel().tolist()))):
            _finite(X, "X")
        return (X[None, :] if single else X), single

    def forward(self, w, X, in_scale=None, out_scale=None, keep=False):
        """Run the forward pass of a batch and return its :class:`Trace`."""
        X2, single = self._as_batch(X)
        K = X2.shape[0]
        if keep:
            weights = Weights(self)
            bufs = Buffers(self, K, weights)
        else:
            weights, bufs = self.weights, self.buffers(K)
        weights.load(w)
        self.run_forward(bufs, X2.T, in_scale)
        return Trace(self, bufs, single, in_scale, out_scale)


class Trace:
    """One forward pass kept for any number of backward passes and Jacobians.

    Obtain it from :meth:`Network.trace`.  Unless created with ``keep=True`` it
    shares work buffers and the weight copy with later forward passes of the
    same network: it is valid until the next forward pass, and using it after
    that raises :class:`StaleTraceError` rather than giving wrong numbers.
    """

    __slots__ = ("plan", "_bufs", "_gen", "_wgen", "single", "in_scale", "out_scale", "K")

    def __init__(self, plan, bufs, single, in_scale, out_scale):
        self.plan, self._bufs, self.single = plan, bufs, single
        self._gen, self._wgen = bufs.gen, bufs.weights.gen
        self.in_scale, self.out_scale = in_scale, out_scale
        self.K = bufs.K

    def __reduce__(self):
        raise _unpicklable(self)

    def _check(self):
        b = self._bufs
        if b.gen != self._gen or b.weights.gen != self._wgen:
            raise StaleTraceError(
                "this trace is stale: a later forward pass reused its buffers; call "
                "net.trace(X, keep=True) to keep a trace across forward passes")

    def outputs(self, out=None):
        """Network outputs in raw units, shape (K, n_outputs) or (n_outputs,).

        Written into ``out`` (shape (K, n_outputs)) when given, else a new array.
        """
        self._check()
        Y = self._bufs.Y.T
        if out is None:
            out = np.empty((self.K, self.plan.n_out))
        if self.out_scale is not None:
            np.multiply(Y, self.out_scale[1], out=out)
            out += self.out_scale[0]
        else:
            np.copyto(out, Y)
        return out[0] if self.single else out

    def _cotangent(self, dY):
        """dY (shape of the outputs, finite) as the unit-major (n_out, K) view."""
        want = (self.plan.n_out,) if self.single else (self.K, self.plan.n_out)
        if not (type(dY) is np.ndarray and dY.dtype == np.float64):
            dY = as_float(dY, "dY")
        if dY.shape != want:
            raise ValueError(f"dY must have the shape of the outputs {want}, got {dY.shape}")
        if not (dY.size <= _SMALL and _isfinite(sum(dY.ravel().tolist()))):
            _finite(dY, "dY")
        return dY.reshape(self.K, self.plan.n_out).T

    def backward(self, dY, wrt="both", grad_out=None):
        """Vector-Jacobian product ``dY^T dY/d(w, X)``.

        Parameters
        ----------
        dY : array_like, shape of the outputs
        wrt : {"both", "weights", "inputs"}
            What to compute; the other products are skipped.
        grad_out : ndarray, shape (n_weights,), optional
            Buffer to receive the weight gradient.

        Returns
        -------
        (grad_weights (n_weights,), grad_inputs (shape of X)) for ``"both"``,
        otherwise the one requested array.
        """
        if wrt not in ("both", "weights", "inputs"):
            raise ValueError(f"wrt must be 'both', 'weights' or 'inputs', got {wrt!r}")
        self._check()
        want_w, want_x = wrt != "inputs", wrt != "weights"
        b = self._bufs
        self.plan.run_backward(b, self._cotangent(dY), self.out_scale, want_w, want_x)
        gw = gx = None
        if want_w:
            if grad_out is None:
                gw = b.grad.astype(np.float64)        # a copy (float64 for any plan)
            else:
                gw = grad_out
                np.copyto(gw, b.grad)
        if want_x:
            gx = np.array(b.G[0].T, dtype=np.float64, order="C")
            if self.in_scale is not None:
                gx /= self.in_scale[1]
            if self.single:
                gx = gx[0]
        if wrt == "both":
            return gw, gx
        return gw if want_w else gx

    def jacobian_inputs(self, inputs=None):
        """Per-sample ``dY/dX[:, inputs]``: shape (K, n_outputs, m), or (n_outputs, m) for one sample.

        One input-only backward sweep per output (reverse mode).
        """
        self._check()
        p, b = self.plan, self._bufs
        idx = np.arange(p.n_inputs) if inputs is None else check_indices(inputs, p.n_inputs,
                                                                           "inputs")
        if b.ck is not None and compiled.ENABLED:           # one compiled call
            J = np.ascontiguousarray(b.ck.jacobian_inputs(b, self.out_scale)[:, idx]
                                     .transpose(2, 0, 1))
            if self.in_scale is not None:
                J /= self.in_scale[1][idx]
            return J[0] if self.single else J
        J = np.empty((self.K, p.n_out, len(idx)))
        e = np.zeros((p.n_out, self.K))
        for j in range(p.n_out):
            e[j] = 1.0
            p.run_backward(b, e, self.out_scale, False, True)
            J[:, j, :] = b.G[0][idx].T
            e[j] = 0.0
        if self.in_scale is not None:
            J /= self.in_scale[1][idx]
        return J[0] if self.single else J

    def jacobian_weights(self):
        """Per-sample ``dY/dw``, rows ordered (sample, output): shape (K*n_outputs, n_weights).

        One delta recursion per output (the engine's, see :func:`backward_steps`) whose
        weight step writes the per-sample products ``d_k o~_k^T`` instead of their sum.
        """
        self._check()
        p, b = self.plan, self._bufs
        K = self.K
        J = np.empty((K, p.n_out, p.n_weights))
        e = np.zeros((p.n_out, K))
        for j in range(p.n_out):
            Jj = J[:, j, :]

            def wgrad(L, i, blk, s, Jj=Jj):
                seg = Jj[:, blk.off:blk.off + blk.size]
                if blk.dense:
                    return [(np.multiply, (b.D[L].T[:, :, None], s.T[:, None, :],
                                           seg.reshape(K, blk.rows, blk.cols)))]
                return [(_outer_take, (b.D[L], s, blk.flat, seg))]

            def zero(blk, Jj=Jj):
                return [(_fill0, (Jj[:, blk.off:blk.off + blk.size],))]
            ops = backward_steps(p, b.G, b.D, b.T, b.src, b.weights.WnT, b.delta_steps,
                                 wgrad=wgrad, zero=zero, want_x=False)
            e[j] = 1.0
            p.seed(b, e, self.out_scale)
            e[j] = 0.0
            for f, args in ops:
                f(*args)
        return J.reshape(K * p.n_out, p.n_weights)

    # ------------------------------------------------------------ second order
    def _directions(self, v_w, v_x):
        """(v_w (n_weights,) or None, v_x unit-major (n_inputs, K) or None), checked."""
        p = self.plan
        if v_w is not None:
            v_w = np.asarray(v_w, float)
            if v_w.shape != (p.n_weights,):
                raise ValueError(f"v_w must have shape ({p.n_weights},), got {v_w.shape}")
        if v_x is not None:
            v_x = np.asarray(v_x, float)
            want = (p.n_inputs,) if self.single else (self.K, p.n_inputs)
            if v_x.shape != want:
                raise ValueError(f"v_x must have the shape of X {want}, got {v_x.shape}")
            v_x = v_x.reshape(self.K, p.n_inputs).T
        return v_w, v_x

    def _x_scale(self):
        return None if self.in_scale is None else self.in_scale[1]

    def jvp(self, v_w=None, v_x=None):
        """Jacobian-vector product ``dY/dw v_w + dY/dX v_x`` (forward mode), shape of the outputs.

        ``v_w`` has shape (n_weights,); ``v_x`` the shape of X (zeros where omitted).
        One tangent pass (:meth:`SecondOrder.tangent`).
        """
        self._check()
        v_w, v_x = self._directions(v_w, v_x)
        RY = self._bufs.second_order().tangent(v_w, v_x, self._x_scale())
        RY = (RY.T * self.out_scale[1] if self.out_scale is not None
              else np.array(RY.T, dtype=np.float64, order="C"))
        return RY[0] if self.single else RY

    def hvp(self, dY, RdY, v_w=None, v_x=None, wrt="both"):
        """Exact second-order product of ``E(w, X)`` along ``(v_w, v_x)`` (R-operator).

        Parameters
        ----------
        dY : array_like, shape of the outputs
            ``dE/dY`` at this trace.
        RdY : callable or array_like
            ``RdY(RY) -> R{dE/dY}``: the loss's second derivative applied to the
            output tangent ``RY`` (for ``E = 1/2 |W^(1/2) (y - t)|^2`` it is ``W * RY``);
            both of the shape of the outputs, raw units.  An array is taken as
            ``R{dE/dY}`` itself (a loss whose gradient does not depend on Y along the
            direction, e.g. a fixed cotangent: pass zeros).
        v_w : array_like, shape (n_weights,), optional
        v_x : array_like, shape of X, optional
        wrt : {"both", "weights", "inputs"}
            Which parts to compute; the other products are skipped.

        Returns
        -------
        (Hv_w (n_weights,), Hv_x (shape of X)): the weight and input parts of
        ``H [v_w; v_x]`` where H is the joint Hessian of E; or the one requested.
        """
        if wrt not in ("both", "weights", "inputs"):
            raise ValueError(f"wrt must be 'both', 'weights' or 'inputs', got {wrt!r}")
        self._check()
        p = self.plan
        dYT = self._cotangent(dY)
        v_w, v_x = self._directions(v_w, v_x)
        want = (p.n_out,) if self.single else (self.K, p.n_out)
        sy = None if self.out_scale is None else self.out_scale[1][:, None]

        def curvature(RYT):               # internal (n_out, K) -> raw -> user -> internal
            if callable(RdY):
                RY = RYT.T.copy() if sy is None else (RYT * sy).T
                R = np.asarray(RdY(RY[0] if self.single else RY), float)
                what = "RdY must return the shape of the outputs"
            else:
                R = np.asarray(RdY, float)
                what = "RdY must have the shape of the outputs"
            if R.shape != want:
                raise ValueError(f"{what} {want}, got {R.shape}")
            RT = R.reshape(self.K, p.n_out).T
            return RT if sy is None else RT * sy
        Hw, Hx = self._bufs.second_order().hvp(
            curvature, v_w, v_x, self._x_scale(), dY=dYT if sy is None else dYT * sy,
            want_w=wrt != "inputs", want_x=wrt != "weights")
        if Hw is not None:
            Hw = Hw.astype(np.float64)
        if Hx is not None:
            Hx = (Hx.T / self.in_scale[1] if self.in_scale is not None
                  else np.array(Hx.T, dtype=np.float64, order="C"))
            Hx = Hx[0] if self.single else Hx
        if wrt == "both":
            return Hw, Hx
        return Hw if wrt == "weights" else Hx


class SecondOrder:
    """Jacobian-vector and exact Hessian-vector products at one forward pass, preallocated.

    Bound to one :class:`Buffers` (batch size K, their weights holder): the forward pass
    held there is the point.  Every product is a precompiled list of numpy steps on work
    arrays allocated here once, unit-major and in the network's internal units like the
    rest of the engine.  Use: :meth:`at` (or a forward pass run by the caller, e.g. a
    :class:`Trace`), then any number of :meth:`tangent` (one pass each); :meth:`seed` with
    a cotangent ``dE/dY`` (one delta recursion, kept) and then any number of :meth:`hvp`
    (one tangent pass and one second-order backward pass each, about two gradients).

    Math (Pearlmutter's R-operator ``R{.} = d/dr (.)(w + r v_w, x + r v_x)``), with ``G_L =
    dE/dO_L``, the deltas ``D_L = h'(Z_L) G_L`` and ``RO~_l`` = ``RO_l`` with a zero bias
    row; forward, for L = 1, 2, ...::

        RO_0 = v_x,   RZ_L = sum_l (W_Ll RO~_l + V_Ll O~_l),   RO_L = h'(Z_L) RZ_L

    and backward, seeded at the outputs with ``RG = R{dE/dY}``, for L = top, ..., 1::

        RD_L          = h''(Z_L) G_L RZ_L + h'(Z_L) RG_L
        R{dE/dW_Ll}   = RD_L O~_l^T + D_L RO~_l^T
        RG_l         += W_Ll^T RD_L + V_Ll^T D_L          (RG_0 = R{dE/dX})

    which is the engine's delta recursion (:func:`backward_steps`) on ``RG, RD`` with the
    delta step and two extra terms changed.  Linear levels alias ``RZ = RO`` and ``RD =
    RG`` (h' = 1, h'' = 0).  The first-order ``G, D`` are kept in arrays of this object,
    so backward passes run on the same buffers meanwhile do not disturb them.

    Parameters
    ----------
    bufs : Buffers
        The forward pass's buffers (``plan.new_buffers(K)`` or a trace's).
    """

    def __init__(self, bufs):
        p, K = bufs.plan, bufs.K
        self.plan, self.bufs, self.K = p, bufs, K
        sz, nl, lin = p.sizes, p.n_levels, p.all_linear

        def z(shape):
            return np.zeros(shape, p.dtype)
        per = lambda alias: [None] + [alias[L] if lin[L] else z((sz[L], K))  # noqa: E731
                                      for L in range(1, nl)]
        self.G = [z((s, K)) for s in sz]                       # first order (kept)
        self.D = per(self.G)
        self.d1 = [None] + [None if lin[L] else z((sz[L], K)) for L in range(1, nl)]
        self.gd2 = [None] + [None if lin[L] else z((sz[L], K)) for L in range(1, nl)]
        self.RO = [z((s + 1, K)) for s in sz]                  # RO~: zero bias row
        self.ROv = [R[:-1] for R in self.RO]
        self.RZ = per(self.ROv)
        self.RG = [z((s, K)) for s in sz]
        self.RD = per(self.RG)
        self.T = [z((s, K)) for s in sz]
        self.RY = self.ROv[-1] if p.out_direct else z((p.n_out, K))
        self.Hw = z(p.n_weights)
        self.rsrc = [None] + [[self.RO[b.src] if b.has_bias else self.ROv[b.src]
                               for b in p.blocks[L]] for L in range(1, nl)]
        self.btmp = [None] + [[z((b.rows, b.cols)) for b in p.blocks[L]] for L in range(1, nl)]
        self.vw = None                         # the weight direction V (a Weights, on first use)
        self._lin_ops, self._seed_ops = self._compile_linearize(), None
        self._tan_ops, self._hvp_ops = {}, {}
        self._point = self._seeded = None

    def __reduce__(self):
        raise _unpicklable(self)

    # ------------------------------------------------------------ compiled steps
    def _compile_linearize(self):
        """h'(Z_L) of every non-linear level."""
        p, b, ops = self.plan, self.bufs, []
        for L in range(1, p.n_levels):
            if self.d1[L] is not None:
                for t, a, c in p.groups[L]:
                    ops.append((t.dh, (b.Z[L][a:c], b.Ov[L][a:c], self.d1[L][a:c])))
        return ops

    def _compile_seed(self):
        """First-order delta recursion into G, D (D_L = h' G_L), then h''(Z_L) G_L."""
        p, b = self.plan, self.bufs

        def delta(L):
            return [] if self.D[L] is self.G[L] else [(np.multiply, (self.d1[L], self.G[L],
                                                                     self.D[L]))]
        ops = backward_steps(p, self.G, self.D, self.T, b.src, b.weights.WnT, delta,
                             want_x=False)
        if p.d2_ok:
            for L in range(1, p.n_levels):
                g = self.gd2[L]
                if g is not None:
                    for t, a, c in p.groups[L]:
                        ops.append((t.d2h, (b.Z[L][a:c], b.Ov[L][a:c], g[a:c])))
                    ops.append((np.multiply, (g, self.G[L], g)))
        return ops

    def _compile_tangent(self, has_w, has_x):
        """RZ_L = sum_l (W_Ll RO~_l + V_Ll O~_l), RO_L = h'(Z_L) RZ_L; RY gathered."""
        p, b, ops = self.plan, self.bufs, []
        W, V = b.weights.W, (self.vw.W if has_w else None)
        for L in range(1, p.n_levels):
            RZ, T = self.RZ[L], self.T[L]
            terms = []
            for i, blk in enumerate(p.blocks[L]):
                if has_w:
                    terms.append((V[L][i], b.src[L][i]))
                if blk.src > 0 or has_x:
                    terms.append((W[L][i], self.rsrc[L][i]))
            if not terms:
                ops.append((_fill0, (RZ,)))
            for k, (A, S) in enumerate(terms):
                if k == 0:
                    ops.append((np.dot, (A, S, RZ)))
                else:
                    ops += [(np.dot, (A, S, T)), (np.add, (RZ, T, RZ))]
            if RZ is not self.ROv[L]:
                ops.append((np.multiply, (self.d1[L], RZ, self.ROv[L])))
        if not p.out_direct:
            for L, (rows, ys) in p.out_by_level.items():
                ops.append((_gather_rows, (self.ROv[L], rows, self.RY, ys)))
        return ops

    def _compile_hvp(self, has_w, has_x, want_w, want_x):
        """The second-order backward pass (the class docstring's second block)."""
        p, b = self.plan, self.bufs
        VnT = self.vw.WnT if has_w else None

        def delta(L):                     # RD_L = h''(Z_L) G_L RZ_L + h'(Z_L) RG_L
            RD, T = self.RD[L], self.T[L]
            if RD is self.RG[L]:
                return []
            return [(np.multiply, (self.gd2[L], self.RZ[L], RD)),
                    (np.multiply, (self.d1[L], self.RG[L], T)), (np.add, (RD, T, RD))]

        def add(L, i, blk, out):          # + D_L RO~_l^T (RO_0 = 0 without v_x)
            if blk.src == 0 and not has_x:
                return []
            tmp = self.btmp[L][i]
            return [(np.dot, (self.D[L], self.rsrc[L][i].T, tmp)), (np.add, (out, tmp, out))]

        def extra(L, i, blk):             # + V_Ll^T D_L
            l = blk.src
            return [(np.dot, (VnT[L][i], self.D[L], self.T[l])),
                    (np.add, (self.RG[l], self.T[l], self.RG[l]))]
        return backward_steps(p, self.RG, self.RD, self.T, b.src, b.weights.WnT, delta,
                              wgrad=_summed_products(self.RD, self.Hw, add) if want_w else None,
                              zero=_zero_blocks(self.Hw) if want_w else None,
                              extra=extra if has_w else None, want_x=want_x)

    # ------------------------------------------------------------ use
    def at(self, w, XT, in_scale=None):
        """Make the point ``(w, XT)``: load the weights w (n_weights,) into the buffers'
        holder, run the forward pass of XT (n_inputs, K), unit-major, and linearize."""
        self.bufs.weights.load(w)
        self.plan.run_forward(self.bufs, XT, in_scale)
        self.linearize()

    def _current(self):
        return (self.bufs.gen, self.bufs.weights.gen)

    def linearize(self):
        """Compute h'(Z) at the buffers' current forward pass (no work if done already)."""
        key = self._current()
        if key != self._point:
            for f, a in self._lin_ops:
                f(*a)
            self._point, self._seeded = key, None

    def seed(self, dYT):
        """Run the first-order delta recursion from the cotangent dYT = dE/dY (n_out, K),
        internal units, and keep G, D and h''(Z) G for :meth:`hvp`."""
        if np.shape(dYT) != (self.plan.n_out, self.K):
            raise ValueError(f"dYT must have shape ({self.plan.n_out}, {self.K}), got "
                             f"{np.shape(dYT)}")
        self.linearize()
        self.plan.seed_into(self.G, dYT)
        if self._seed_ops is None:
            self._seed_ops = self._compile_seed()
        for f, a in self._seed_ops:
            f(*a)
        self._seeded = self._point

    def tangent(self, v_w=None, v_x=None, x_scale=None):
        """Output tangent ``RY = dY/dw v_w + dY/dX v_x`` (n_out, K), internal units.

        Parameters
        ----------
        v_w : ndarray, shape (n_weights,), optional
            Weight direction (as stored, i.e. internal units).
        v_x : ndarray, shape (n_inputs, K), optional
            Input direction, unit-major; raw units when ``x_scale`` is given (it is divided
            by ``x_scale`` (n_inputs,)), else internal.

        Returns
        -------
        ndarray, shape (n_out, K)
            A view of a work array, overwritten by the next product.
        """
        p = self.plan
        self.linearize()
        if v_w is not None:
            if np.shape(v_w) != (p.n_weights,):
                raise ValueError(f"v_w must have shape ({p.n_weights},), got {np.shape(v_w)}")
            if self.vw is None:
                self.vw = p.new_weights()
            self.vw.load(v_w)
        if v_x is not None:
            if np.shape(v_x) != (p.n_inputs, self.K):
                raise ValueError(f"v_x must have shape ({p.n_inputs}, {self.K}), got "
                                 f"{np.shape(v_x)}")
            R0 = self.ROv[0]
            np.copyto(R0, v_x)
            if x_scale is not None:
                R0 /= x_scale[:, None]
        mode = (v_w is not None, v_x is not None)
        ops = self._tan_ops.get(mode)
        if ops is None:
            ops = self._tan_ops[mode] = self._compile_tangent(*mode)
        for f, a in ops:
            f(*a)
        return self.RY

    def hvp(self, RdY, v_w=None, v_x=None, x_scale=None, dY=None, want_w=True, want_x=True):
        """Exact Hessian-vector product along ``(v_w, v_x)`` (see the class docstring).

        Parameters
        ----------
        RdY : callable or ndarray
            ``RdY(RY) -> R{dE/dY}`` for the output tangent RY (n_out, K) (a work array the
            callable may overwrite and return), or the (n_out, K) array R{dE/dY} itself;
            internal units (``dE/dY_int = s_y dE/dY``, ``RY = RY_int``).
        v_w, v_x, x_scale
            The direction, as in :meth:`tangent`.
        dY : ndarray, shape (n_out, K), optional
            The cotangent dE/dY, internal units; seeds first (:meth:`seed`).  Without it
            the last seed at this point is used.
        want_w, want_x : bool
            Which parts to compute.

        Returns
        -------
        Hw : ndarray, shape (n_weights,), or None
            ``R{dE/dw}``; a work array, overwritten by the next product.
        Hx : ndarray, shape (n_inputs, K), or None
            ``R{dE/dX}`` unit-major, internal units (divide by the input scale for raw);
            a work array.
        """
        p = self.plan
        if not p.d2_ok:
            names = sorted({t.name for g in p.groups[1:] for t, _, _ in g if t.d2h is None})
            raise ValueError(f"exact Hessian products need h'' for every transfer; {names} "
                             "were registered without d2h (register them with d2h=...)")
        if dY is not None:
            self.seed(dY)
        elif self._seeded is None or self._seeded != self._current():
            raise ValueError("no cotangent at this point: pass dY (or call seed first)")
        RY = self.tangent(v_w, v_x, x_scale)
        R = RdY(RY) if callable(RdY) else RdY
        if np.shape(R) != (p.n_out, self.K):
            raise ValueError(f"R{{dE/dY}} must have shape ({p.n_out}, {self.K}), got "
                             f"{np.shape(R)}")
        p.seed_into(self.RG, R)
        mode = (v_w is not None, v_x is not None, bool(want_w), bool(want_x))
        ops = self._hvp_ops.get(mode)
        if ops is None:
            ops = self._hvp_ops[mode] = self._compile_hvp(*mode)
        for f, a in ops:
            f(*a)
        return (self.Hw if want_w else None), (self.RG[0] if want_x else None)
