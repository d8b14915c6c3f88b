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

gives exact Hessian-vector products with respect to weights and inputs.

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

import numpy as np

from .checks import check_indices

__all__ = ["Plan", "Trace", "Weights", "Buffers", "StaleTraceError"]


class StaleTraceError(RuntimeError):
    """A trace whose shared work buffers were overwritten by a later forward pass."""


class _Block:
    """Weights into one destination level from one source level."""

    __slots__ = ("src", "dst", "off", "size", "rows", "cols", "has_bias", "dense", "flat")

    def __init__(self, d):
        self.src, self.dst, self.off = d["src"], d["dst"], d["off"]
        self.rows, self.cols, self.has_bias = d["rows"], d["cols"], d["has_bias"]
        self.dense, self.flat = d["dense"], d["flat"]
        self.size = len(self.flat)

    def view(self, w):
        """The block of flat vector w as (rows, cols): a reshape view if dense, else a new array."""
        seg = w[self.off:self.off + self.size]
        if self.dense:
            return seg.reshape(self.rows, self.cols)
        out = np.zeros((self.rows, self.cols))
        out.ravel()[self.flat] = seg
        return out


class Weights:
    """A private copy of a flat weight vector, laid out as per-level blocks.

    ``W[L][i]`` is the i-th block into level L, ``(n_L, n_l [+1])`` including the
    bias column; ``Wn[L][i]`` the same without the bias column; ``WnT[L][i]`` a
    C-contiguous copy of ``Wn[L][i].T`` for the backward products.  The engine's
    precompiled steps refer to these arrays, so new weights are *copied in*
    (:meth:`load`); ``gen`` counts the loads.
    """

    def __init__(self, plan):
        self.plan = plan
        self.w = np.zeros(plan.n_weights)
        self.gen = 0
        self.W = [None] + [[b.view(self.w) for b in plan.blocks[L]]
                           for L in range(1, plan.n_levels)]
        self.Wn = [None] + [[V[:, :plan.sizes[b.src]] for b, V in zip(plan.blocks[L], self.W[L])]
                            for L in range(1, plan.n_levels)]
        self.WnT = [None] + [[np.ascontiguousarray(V.T) for V in self.Wn[L]]
                             for L in range(1, plan.n_levels)]
        self._sparse = [(b, V) for L in range(1, plan.n_levels)
                        for b, V in zip(plan.blocks[L], self.W[L]) if not b.dense]
        self._transposed = [(T, V.T) for L in range(1, plan.n_levels)
                            for T, V in zip(self.WnT[L], self.Wn[L])]

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

    def __init__(self, plan, K, weights):
        self.plan, self.K, self.weights, self.gen = plan, K, weights, 0
        sizes, nl = plan.sizes, plan.n_levels
        self.O = [np.empty((s + 1, K)) for s in sizes]
        for O in self.O:
            O[-1] = 1.0                                      # the bias unit
        self.Ov = [O[:-1] for O in self.O]
        self.Z = [None] + [np.empty((sizes[L], K)) if plan.keep_z[L] else self.Ov[L]
                           for L in range(1, nl)]
        self.G = [np.empty((s, K)) for s in sizes]
        self.D = [None] + [self.G[L] if plan.all_linear[L] else np.empty((sizes[L], K))
                           for L in range(1, nl)]
        self.T = [np.empty((s, K)) for s in sizes]           # scratch for sums
        self.Y = self.Ov[-1] if plan.out_direct else np.empty((plan.n_out, K))
        self.grad = np.empty(plan.n_weights)
        self.src = [None] + [[self.O[b.src] if b.has_bias else self.Ov[b.src]
                              for b in plan.blocks[L]] for L in range(1, nl)]
        self.fwd_ops = self._compile_forward()
        self._bwd_ops = {}

    def _compile_forward(self):
        """Steps of the forward pass after the inputs are in O[0]."""
        p, W, ops = self.plan, self.weights.W, []
        for L in range(1, p.n_levels):
            Z, T = self.Z[L], self.T[L]
            for i, src in enumerate(self.src[L]):
                if i == 0:
                    ops.append((np.dot, (W[L][0], src, Z)))           # Z_L = W_Ll O~_l
                else:
                    ops += [(np.dot, (W[L][i], src, T)), (np.add, (Z, T, Z))]
            for t, a, c in p.groups[L]:                               # O_L = h(Z_L)
                o = self.Ov[L][a:c]
                ops += t.fwd_ops(o if Z is self.Ov[L] else Z[a:c], o)
        if not p.out_direct:
            for L, (cols, ys) in p.out_by_level.items():
                ops.append((_gather_rows, (self.Ov[L], cols, self.Y, ys)))
        return ops

    def bwd_ops(self, want_w, want_x):
        """Steps of the delta recursion after G is seeded at the outputs (cached per mode)."""
        key = (want_w, want_x)
        ops = self._bwd_ops.get(key)
        if ops is not None:
            return ops
        p, WnT, ops = self.plan, self.weights.WnT, []
        live = [L in p.out_by_level for L in range(p.n_levels)]
        for L in range(p.n_levels - 1, 0, -1):
            blocks = p.blocks[L]
            if not live[L]:                           # nothing downstream: zero deltas
                if want_w:
                    ops += [(_fill0, (self.grad[b.off:b.off + b.size],)) for b in blocks]
                continue
            D, G = self.D[L], self.G[L]
            if D is not G:                            # D_L = h'(Z_L) * G_L
                for t, a, c in p.groups[L]:
                    ops += t.delta_ops(self.Z[L][a:c], self.Ov[L][a:c], G[a:c], D[a:c])
            for i, (b, src) in enumerate(zip(blocks, self.src[L])):
                if want_w:                            # dE/dW_Ll = D_L O~_l^T
                    g = self.grad[b.off:b.off + b.size]
                    if b.dense:
                        ops.append((np.dot, (D, src.T, g.reshape(b.rows, b.cols))))
                    else:
                        tmp = np.empty((b.rows, b.cols))
                        ops += [(np.dot, (D, src.T, tmp)),
                                (np.take, (tmp.ravel(), b.flat, None, g))]
                l = b.src
                if l == 0 and not want_x:
                    continue
                if live[l]:                           # G_l += W_Ll^T D_L
                    ops += [(np.dot, (WnT[L][i], D, self.T[l])),
                            (np.add, (self.G[l], self.T[l], self.G[l]))]
                else:
                    ops.append((np.dot, (WnT[L][i], D, self.G[l])))
                    live[l] = True
        self._bwd_ops[key] = ops
        return ops


def _gather_rows(src, rows, dst, ys):
    dst[ys] = src[rows]


def _fill0(a):
    a.fill(0.0)


class Plan:
    """A network's structure compiled into levels, weight blocks and transfer groups.

    Low-level interface (used by :class:`Trace`, and by code that manages its
    own buffers such as back-propagation through time): :meth:`new_weights`,
    :meth:`new_buffers`, :meth:`run_forward`, :meth:`run_backward`.
    """

    MAX_CACHED_BATCH_SIZES = 8

    def __init__(self, net):
        self.n_inputs = net.n_inputs
        self.n_out = net.n_outputs
        self.n_weights = net.n_weights
        self.sizes = [len(lv) for lv in net.levels]
        self.n_levels = len(self.sizes)
        self.blocks = [[] for _ in range(self.n_levels)]
        for d in net.blocks:
            self.blocks[d["dst"]].append(_Block(d))
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
        self.weights = Weights(self)
        self._bufs = {}

    # ------------------------------------------------------------ low level
    def new_weights(self):
        """A fresh :class:`Weights` holder, for buffers private to the caller."""
        return Weights(self)

    def new_buffers(self, K, weights=None):
        """Fresh :class:`Buffers` for batch size K, reading the given (default shared) weights."""
        return Buffers(self, K, self.weights if weights is None else weights)

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

        Afterwards ``bufs.Y`` (n_out, K) holds the outputs in internal units.
        """
        if in_scale is None:
            np.copyto(bufs.Ov[0], XT)
        else:
            np.subtract(XT, in_scale[0][:, None], out=bufs.Ov[0])
            bufs.Ov[0] /= in_scale[1][:, None]
        for f, a in bufs.fwd_ops:
            f(*a)

    def seed(self, bufs, dYT, out_scale=None):
        """Write the cotangent ``dYT`` (n_out, K), raw units, into G at the output units."""
        if self.out_direct:
            if out_scale is None:
                np.copyto(bufs.G[-1], dYT)
            else:
                np.multiply(dYT, out_scale[1][:, None], out=bufs.G[-1])
            return
        if out_scale is not None:
            dYT = dYT * out_scale[1][:, None]
        for L, (rows, ys) in self.out_by_level.items():
            bufs.G[L].fill(0.0)
            bufs.G[L][rows] = dYT[ys]

    def run_backward(self, bufs, dYT, out_scale=None, want_w=True, want_x=True):
        """Delta recursion from ``dYT`` (n_out, K): then bufs.grad = dE/dw, bufs.G[0] = dE/dX_int."""
        self.seed(bufs, dYT, out_scale)
        for f, a in bufs.bwd_ops(want_w, want_x):
            f(*a)

    # ------------------------------------------------------------ helpers
    def _as_batch(self, X):
        """(2-D float array (K, n_inputs), was_single) after checking the shape of X."""
        if (type(X) is np.ndarray and X.dtype == np.float64 and X.ndim == 2
                and X.shape[1] == self.n_inputs and X.shape[0]):
            return X, False
        X = np.asarray(X, dtype=np.float64)
        if X.ndim == 1:
            if X.shape[0] != self.n_inputs:
                raise ValueError(f"X must have shape (K, {self.n_inputs}) or ({self.n_inputs},), "
                                 f"got {X.shape}")
            return X[None, :], True
        if X.ndim != 2 or X.shape[1] != self.n_inputs:
            raise ValueError(f"X must have shape (K, {self.n_inputs}) or ({self.n_inputs},), "
                             f"got {X.shape}")
        if X.shape[0] == 0:
            raise ValueError("X is empty (0 samples)")
        return X, False

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
        bufs.gen += 1
        self.run_forward(bufs, X2.T, in_scale)
        return Trace(self, bufs, single, in_scale, out_scale)

    def _per_sample_backward(self, bufs, J, col):
        """Delta recursion (after seeding) writing per-sample weight gradients into J[:, col]."""
        Wn = bufs.weights.Wn
        live = [L in self.out_by_level for L in range(self.n_levels)]
        K = bufs.K
        for L in range(self.n_levels - 1, 0, -1):
            blocks = self.blocks[L]
            if not live[L]:
                for b in blocks:
                    J[:, col, b.off:b.off + b.size] = 0.0
                continue
            D, G = bufs.D[L], bufs.G[L]
            if D is not G:
                for t, a, c in self.groups[L]:
                    for f, args in t.delta_ops(bufs.Z[L][a:c], bufs.Ov[L][a:c], G[a:c], D[a:c]):
                        f(*args)
            for i, (b, src) in enumerate(zip(blocks, bufs.src[L])):
                seg = J[:, col, b.off:b.off + b.size]            # d_k o~_k^T per sample
                if b.dense:
                    np.multiply(D.T[:, :, None], src.T[:, None, :],
                                out=seg.reshape(K, b.rows, b.cols))
                else:
                    outer = D.T[:, :, None] * src.T[:, None, :]
                    seg[...] = outer.reshape(K, -1)[:, b.flat]
                l = b.src
                if l == 0:
                    continue
                if live[l]:
                    bufs.G[l] += Wn[L][i].T @ D
                else:
                    np.matmul(Wn[L][i].T, D, out=bufs.G[l])
                    live[l] = True


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
        """dY (shape of the outputs) as the unit-major (n_out, K) view."""
        want = (self.plan.n_out,) if self.single else (self.K, self.plan.n_out)
        if not (type(dY) is np.ndarray and dY.dtype == np.float64):
            dY = np.asarray(dY, dtype=np.float64)
        if dY.shape != want:
            raise ValueError(f"dY must have the shape of the outputs {want}, got {dY.shape}")
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
                gw = b.grad.copy()
            else:
                gw = grad_out
                np.copyto(gw, b.grad)
        if want_x:
            gx = b.G[0].T.copy()
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
        """Per-sample ``dY/dw``, rows ordered (sample, output): shape (K*n_outputs, n_weights)."""
        self._check()
        p, b = self.plan, self._bufs
        J = np.empty((self.K, p.n_out, p.n_weights))
        e = np.zeros((p.n_out, self.K))
        for j in range(p.n_out):
            e[j] = 1.0
            p.seed(b, e, self.out_scale)
            p._per_sample_backward(b, J, j)
            e[j] = 0.0
        return J.reshape(self.K * p.n_out, p.n_weights)

    # ------------------------------------------------------------ second order
    def jvp(self, v_w=None, v_x=None):
        """Jacobian-vector product ``dY/dw v_w + dY/dX v_x`` (forward mode), shape of the outputs.

        ``v_w`` has shape (n_weights,); ``v_x`` the shape of X (zeros where omitted).
        """
        RY, _ = self._tangent(v_w, v_x)
        return RY[0] if self.single else RY

    def _tangent(self, v_w, v_x):
        """Forward tangent: (RY (K, n_out) raw units, (RZ, RO~, V blocks) unit-major per level)."""
        self._check()
        p, b = self.plan, self._bufs
        K, W = self.K, b.weights.W
        Vs = None
        if v_w is not None:
            v_w = np.asarray(v_w, float)
            if v_w.shape != (p.n_weights,):
                raise ValueError(f"v_w must have shape ({p.n_weights},), got {v_w.shape}")
            Vs = [None] + [[blk.view(v_w) for blk in p.blocks[L]] for L in range(1, p.n_levels)]
        RO = [np.zeros((s + 1, K)) for s in p.sizes]
        if v_x is not None:
            v_x = np.asarray(v_x, float)
            want = (p.n_inputs,) if self.single else (K, p.n_inputs)
            if v_x.shape != want:
                raise ValueError(f"v_x must have the shape of X {want}, got {v_x.shape}")
            v_x = v_x.reshape(K, p.n_inputs)
            RO[0][:-1] = (v_x if self.in_scale is None else v_x / self.in_scale[1]).T
        RZ = [None]
        for L in range(1, p.n_levels):
            rz = np.zeros((p.sizes[L], K))
            for i, blk in enumerate(p.blocks[L]):
                n_l = p.sizes[blk.src]
                rz += W[L][i][:, :n_l] @ RO[blk.src][:n_l]
                if Vs is not None:
                    rz += Vs[L][i] @ b.src[L][i]
            RZ.append(rz)
            for t, a, c in p.groups[L]:
                d = np.empty((c - a, K))
                t.dh(b.Z[L][a:c], b.Ov[L][a:c], d)
                RO[L][a:c] = d * rz[a:c]
        RY = np.empty((p.n_out, K))
        for L, (rows, ys) in p.out_by_level.items():
            RY[ys] = RO[L][rows]
        RY = RY.T
        if self.out_scale is not None:
            RY = RY * self.out_scale[1]
        return RY, (RZ, RO, Vs)

    def hvp(self, dY, RdY, v_w=None, v_x=None, wrt="both"):
        """Exact second-order product of ``E(w, X)`` along ``(v_w, v_x)`` (R-operator).

        Parameters
        ----------
        dY : array_like, shape of the outputs
            ``dE/dY`` at this trace.
        RdY : callable
            ``RdY(RY) -> R{dE/dY}``: the loss's second derivative applied to the
            output tangent ``RY`` (for ``E = 1/2 |W^(1/2) (y - t)|^2`` it is ``W * RY``).
        v_w : array_like, shape (n_weights,), optional
        v_x : array_like, shape of X, optional
        wrt : {"both", "weights", "inputs"}

        Returns
        -------
        (Hv_w (n_weights,), Hv_x (shape of X)): the weight and input parts of
        ``H [v_w; v_x]`` where H is the joint Hessian of E; or the one requested.
        """
        if wrt not in ("both", "weights", "inputs"):
            raise ValueError(f"wrt must be 'both', 'weights' or 'inputs', got {wrt!r}")
        self._check()
        p, b = self.plan, self._bufs
        if not p.d2_ok:
            names = sorted({t.name for g in p.groups[1:] for t, _, _ in g if t.d2h is None})
            raise ValueError(f"exact Hessian products need h'' for every transfer; {names} "
                             "were registered without d2h (register them with d2h=...)")
        K, W = self.K, b.weights.W
        dYT = self._cotangent(dY)
        RY, (RZ, RO, Vs) = self._tangent(v_w, v_x)
        RdYv = np.asarray(RdY(RY[0] if self.single else RY), float)
        want = RY.shape[1:] if self.single else RY.shape
        if RdYv.shape != want:
            raise ValueError(f"RdY must return the shape of the outputs, got {RdYv.shape}")
        RdYT = RdYv.reshape(K, p.n_out).T
        sy = None if self.out_scale is None else self.out_scale[1][:, None]
        G = [np.zeros((s, K)) for s in p.sizes]
        RG = [np.zeros((s, K)) for s in p.sizes]
        for L, (rows, ys) in p.out_by_level.items():
            G[L][rows] = dYT[ys] if sy is None else dYT[ys] * sy[ys]
            RG[L][rows] = RdYT[ys] if sy is None else RdYT[ys] * sy[ys]
        Hw = np.zeros(p.n_weights)
        for L in range(p.n_levels - 1, 0, -1):
            n = p.sizes[L]
            D, RD = np.empty((n, K)), np.empty((n, K))
            for t, a, c in p.groups[L]:
                z, o = b.Z[L][a:c], b.Ov[L][a:c]
                d1, d2 = np.empty((c - a, K)), np.empty((c - a, K))
                t.dh(z, o, d1)
                t.d2h(z, o, d2)
                D[a:c] = d1 * G[L][a:c]
                RD[a:c] = d2 * RZ[L][a:c] * G[L][a:c] + d1 * RG[L][a:c]
            for i, blk in enumerate(p.blocks[L]):
                l, n_l = blk.src, p.sizes[blk.src]
                rsrc = RO[l] if blk.has_bias else RO[l][:n_l]
                hw = D @ rsrc.T + RD @ b.src[L][i].T
                Hw[blk.off:blk.off + blk.size] = hw.ravel()[blk.flat]
                Wl = W[L][i][:, :n_l]
                G[l] += Wl.T @ D
                RG[l] += Wl.T @ RD
                if Vs is not None:
                    RG[l] += Vs[L][i][:, :n_l].T @ D
        Hx = RG[0].T if self.in_scale is None else RG[0].T / self.in_scale[1]
        Hx = Hx[0] if self.single else Hx
        if wrt == "both":
            return Hw, Hx
        return Hw if wrt == "weights" else Hx

