"""The compiled rollout and BPTT sweep of a Dynamics model: the hot loop of the trajectory code.

An :class:`Unroll` owns T engine Buffers (one per step, all reading one private
Weights holder) and strings their precompiled steps into two flat lists of numpy calls, one
for the whole rollout and one for the whole backward sweep.  The steps are retargeted so
that step t's input units read row t of one array ``XB`` (T+1, n_inputs+1, B) and its input
deltas land in row t of ``GB``: controls are written for all steps in one operation, and
states and control gradients are read without gathering.  When the raw network output is
the next state, step t's output units write directly into row t+1 of ``XB``; otherwise one
or two operations map the output through the scaling (and add x_t).  Products by weight
blocks are issued as ``np.dot`` (about half the call overhead of ``np.matmul`` on small
operands).  A gradient is two loops over the lists plus a few whole-trajectory array
operations, and allocates nothing in the loops.

Retargeting works on the engine's op lists as data -- ``(function, args)`` tuples over the
Buffers' arrays: every array argument lying inside a step's input (or input-delta, or
output) array is replaced by the same view of the shared array, found by memory address.
"""

import numpy as np

from ..core import compiled

__all__ = ["Unroll", "ClosedLoop"]


def ident(v, one):
    """None when v is exactly ``one`` everywhere (so the op can be skipped), else v."""
    return None if np.all(v == one) else v


def affine_ops(dst, src, a, b):
    """Steps computing dst = src * a + b (a, b column vectors or None)."""
    if a is None and b is None:
        return [(np.copyto, (dst, src))]
    if a is None:
        return [(np.add, (src, b, dst))]
    ops = [(np.multiply, (src, a, dst))]
    if b is not None:
        ops.append((np.add, (dst, b, dst)))
    return ops


def same_array(a, b):
    """True when two arrays are the same memory with the same layout."""
    ia, ib = a.__array_interface__, b.__array_interface__
    return ia["data"] == ib["data"] and a.shape == b.shape and a.strides == b.strides


def prune(ops):
    """Drop steps that copy an array onto itself (the engine emits one per linear level)."""
    return [(f, a) for f, a in ops if not (f is np.copyto and same_array(a[0], a[1]))]


def byte_bounds(a):
    """Byte range [lo, hi) that array a spans."""
    p = a.__array_interface__["data"][0]
    if a.flags.c_contiguous:
        return p, p + a.nbytes
    lo = p + sum(min(0, (k - 1) * s) for k, s in zip(a.shape, a.strides))
    hi = p + sum(max(0, (k - 1) * s) for k, s in zip(a.shape, a.strides)) + a.itemsize
    return lo, hi


def retarget(ops, pairs):
    """The op list with every array argument lying inside ``old`` replaced by the same view
    of ``new``, for each (old, new) pair of C-contiguous arrays of equal shape; None if some
    argument overlaps an ``old`` only partly."""
    spans = [(byte_bounds(old), old, new) for old, new in pairs]
    out = []
    for f, args in ops:
        new_args = []
        for x in args:
            if isinstance(x, np.ndarray):
                for (lo, hi), old, new in spans:
                    if not np.may_share_memory(x, old):
                        continue
                    xlo, xhi = byte_bounds(x)
                    if xlo < lo or xhi > hi:
                        return None
                    off = xlo - lo if x.flags.c_contiguous else \
                        x.__array_interface__["data"][0] - lo
                    x = np.ndarray(x.shape, x.dtype, buffer=new, offset=off, strides=x.strides)
                    break
            new_args.append(x)
        out.append((f, tuple(new_args)))
    return out


def fast_products(ops, wts, refresh, copies):
    """Products by a weight block done by np.dot instead of np.matmul (half the call
    overhead on small 2-D operands, same result).  A transposed -- non-contiguous -- block
    is replaced by a contiguous copy (one per block, shared through the dict ``copies``),
    appended to ``refresh`` as (copy, live view) to be re-copied after every weight load."""
    bases = [wts.w] + [V for Ws in wts.W[1:] for V in Ws if not np.may_share_memory(V, wts.w)]
    out = []
    for f, a in ops:
        if (f is np.matmul and len(a) == 3 and a[0].ndim == 2 and a[1].ndim == 2
                and a[2].flags.c_contiguous and any(np.may_share_memory(a[0], b) for b in bases)):
            A = a[0]
            if not A.flags.c_contiguous:
                key = (A.__array_interface__["data"][0], A.shape, A.strides)
                if key not in copies:
                    copies[key] = np.ascontiguousarray(A)
                    refresh.append((copies[key], A))
                A = copies[key]
            out.append((np.dot, (A, a[1], a[2])))
        else:
            out.append((f, a))
    return out


def kernel_vector(v):
    """A column map as the compiled kernels take it: (n,) contiguous, empty for None."""
    return np.empty(0) if v is None else np.ascontiguousarray(v.ravel())


class Scales:
    """A network's input/output standardisation as columns, raw = internal * s + mean:
    ``mx, sx`` (n_inputs, 1) and ``my, sy`` (n_outputs, 1) (0 and 1 where unscaled), and
    ``key`` = the scaling tuples they were made from (compare with ``is`` to detect a
    change).  Slice the rows for the state / control / exogenous parts."""

    def __init__(self, net):
        ni, no = net.n_inputs, net.n_outputs
        mx, sx = (np.zeros(ni), np.ones(ni)) if net.input_scaling is None else net.input_scaling
        my, sy = (np.zeros(no), np.ones(no)) if net.output_scaling is None else net.output_scaling
        col = lambda v: np.array(v, dtype=np.float64).reshape(-1, 1)   # noqa: E731
        self.mx, self.sx = col(mx), col(sx)
        self.my, self.sy = col(my), col(sy)
        self.key = (net.input_scaling, net.output_scaling)

    def step_maps(self, n, residual):
        """The maps between a step's output and the next step's internal state input:
        ``(a, b, r)`` columns (n, 1), None where the map is the identity, with

            in_{t+1} = Y_t a + b (+ in_t when residual)
                      (x = y sy + my (+ x_t), in = (x - mx) / sx)
            sig_{t-1} = r G0x_t + sy c_t (+ sig_t)           (the BPTT sweep, r = sy / sx)
        """
        sxs, mxs = self.sx[:n], self.mx[:n]
        a = ident(self.sy / sxs, 1.0)
        b = ident((self.my - (0.0 if residual else mxs)) / sxs, 0.0)
        return a, b, a


class Unroll:
    """T steps of a Dynamics model for a batch of B: engine buffers and the precompiled
    forward rollout and BPTT sweep (see the module docstring).  Units inside are the
    network's internal ones; the methods convert at the boundary.

    Every step's input units read ``XB[t]`` = [x_t; u_t; e_t; 1] and its input deltas land
    in ``GB[t]``: the engine's precompiled steps are retargeted from the step's own input
    buffers to these rows of two (T+1)- and T-long arrays, so controls are written for all
    steps at once and states / control gradients are read without gathering.  When the
    next state is the raw network output (no scaling, not residual, outputs = top level),
    the output units of step t write straight into ``XB[t+1]``.
    """

    def __init__(self, model, T, B):
        # the plan of the model's dtype: float64, or float32 rollouts (Dynamics(dtype=))
        net, plan = model.net, model.net.plan_for(getattr(model, "dtype", np.float64))
        dt = plan.dtype
        n, m, ni = model.n_states, model.n_controls, model.net.n_inputs
        self.model, self.plan, self.T, self.B, self.n, self.m = model, plan, T, B, n, m
        self.wts = plan.new_weights()
        self.wts.load(net.weights)
        # the steps' work arrays stacked over time, so one compiled call can run them all
        self.OB = np.empty((T, plan.o_offsets[-1], B), dt)
        self.ZB = np.empty((T, plan.z_offsets[-1], B), dt)
        self.GBB = np.empty((T, plan.g_offsets[-1], B), dt)
        self.bufs = [plan.new_buffers(B, self.wts, (self.OB[t], self.ZB[t], self.GBB[t]))
                     for t in range(T)]
        self.ck = compiled.for_batch(plan, B)   # the compiled rollout and sweep, if small
        self._ran_compiled = False
        self.XB = np.zeros((T + 1, ni + 1, B), dt)
        self.XB[:, ni] = 1.0                                 # the bias unit
        self.GB = np.zeros((T, ni, B), dt)
        self.x_in = [self.XB[t, :n] for t in range(T + 1)]
        self.IN = self.XB[:T, n:ni]                          # controls, then exo (internal)
        self.Cs = np.zeros((T + 1, n, B), dt)                # sy * dJ/dx_t from the cost
        self.SIG = np.empty((T, n, B), dt)                   # output cotangents of the steps
        self.sig = [b.G[-1] if plan.out_direct else self.SIG[t] for t, b in enumerate(self.bufs)]
        self._x0, self._exo = np.zeros((B, n)), None         # raw, re-applied if scaling changes
        self._compile()

    # ------------------------------------------------------------ pickling
    # The op lists are views of the buffers and cannot be pickled: an Unroll pickles as its
    # model, horizon, batch and raw inputs (initial states, exogenous inputs, controls), and
    # is rebuilt from them (run forward() again for the states).
    def __getstate__(self):
        return dict(model=self.model, T=self.T, B=self.B, x0=self._x0, exo=self._exo,
                    U=self.controls())

    def __setstate__(self, state):
        self.__init__(state["model"], state["T"], state["B"])
        self.set_x0(state["x0"])
        self.set_exo(state["exo"])
        self.set_controls(state["U"])

    def _step_ops(self, t, direct_out):
        """Step t's forward and backward engine steps retargeted to XB / GB."""
        bf = self.bufs[t]
        pairs = [(bf.O[0], self.XB[t]), (bf.G[0], self.GB[t])]
        if direct_out:
            pairs.append((bf.Ov[-1], self.XB[t + 1, :self.n]))
        fwd = retarget(bf.fwd_ops, pairs)
        bwd = retarget(bf.bwd_ops(False, True), pairs)
        if fwd is None or bwd is None:
            raise RuntimeError("engine steps could not be retargeted")   # pragma: no cover
        return (fast_products(prune(fwd), self.wts, self._refresh, self._copies),
                fast_products(prune(bwd), self.wts, self._refresh, self._copies))

    def _compile(self):
        """Take the network's current scaling: its step maps for the kernels now, the numpy
        op lists (``fwd``, ``bwd``, ``step_fwd``, ``step_bwd``) on first use.  Building
        the op lists retargets every step's engine steps (about 0.15 ms a step), which a
        rollout on the compiled path never needs."""
        sc = self.sc = Scales(self.model.net)
        a, b, r = self._maps = sc.step_maps(self.n, self.model.residual)
        self._ops = None
        self._refresh, self._copies = [], {}
        # the same maps for the compiled kernels: (n,) vectors, empty for 1 (a, r) and 0 (b)
        self._ka, self._kb, self._kr = kernel_vector(a), kernel_vector(b), kernel_vector(r)

    @property
    def fwd(self):
        """The rollout as one numpy op list."""
        return self._op_lists()[0]

    @property
    def bwd(self):
        """The BPTT sweep as one numpy op list."""
        return self._op_lists()[1]

    @property
    def step_fwd(self):
        """Per step t, its forward op list (with the next-state map)."""
        return self._op_lists()[2]

    @property
    def step_bwd(self):
        """Per step t, its backward op list (input deltas into GB[t])."""
        return self._op_lists()[3]

    def _op_lists(self):
        if self._ops is None:
            self._ops = self._build_ops()
        return self._ops

    def _build_ops(self):
        """(fwd, bwd, step_fwd, step_bwd) for the current scaling."""
        n, T, res = self.n, self.T, self.model.residual
        # forward: internal next-state input = Y * a + b (+ current internal state if residual)
        a, b, r = self._maps
        direct_out = a is None and b is None and not res and self.plan.out_direct
        step_fwd, step_bwd, fwd = [], [], []
        self._refresh, self._copies = [], {}
        for t, bf in enumerate(self.bufs):
            f, g = self._step_ops(t, direct_out)
            if not direct_out:
                nxt = self.x_in[t + 1]
                f += affine_ops(nxt, bf.Y, a, b)
                if res:
                    f.append((np.add, (nxt, self.x_in[t], nxt)))
            step_fwd.append(f)
            step_bwd.append(g)
            fwd += f
        # backward: sig_t = sy * lambda_{t+1} is step t's output cotangent (internal), and
        #   sig_{t-1} = sy * c_t + (sy / sx) * G0x_t  (+ sig_t when residual)
        sig, direct = self.sig, self.plan.out_direct
        bwd = [(np.copyto, (sig[T - 1], self.Cs[T]))]
        for t in range(T - 1, -1, -1):
            if not direct:
                bwd.append((self.plan.seed, (self.bufs[t], sig[t], None)))
            bwd += step_bwd[t]
            if t == 0:
                break
            dst, gx = sig[t - 1], self.GB[t, :n]
            if r is None:
                bwd.append((np.add, (self.Cs[t], gx, dst)))
            else:
                bwd += [(np.multiply, (gx, r, dst)), (np.add, (dst, self.Cs[t], dst))]
            if res:
                bwd.append((np.add, (dst, sig[t], dst)))
        return fwd, bwd, step_fwd, step_bwd

    def recompile(self):
        """Take the network's current scaling (the op lists ``fwd``, ``bwd``, ``step_fwd``,
        ``step_bwd`` are rebuilt on their next use) and re-apply the initial states and
        exogenous inputs (kept in raw units) in the new internal units."""
        self._compile()
        self.set_x0(self._x0)
        self.set_exo(self._exo)

    def sync(self):
        """Pick up new weights or scaling of the network; True if anything changed."""
        net = self.model.net
        changed = False
        if net.input_scaling is not self.sc.key[0] or net.output_scaling is not self.sc.key[1]:
            self.recompile()
            changed = True
        if not np.array_equal(self.wts.w, net.weights):
            self.wts.load(net.weights)
            for C, A in self._refresh:
                np.copyto(C, A)
            changed = True
        return changed

    # ------------------------------------------------------------ raw <-> internal
    def set_x0(self, X0):
        """Initial states, raw (B, n)."""
        sc, n = self.sc, self.n
        self._x0 = X0
        np.subtract(X0.T, sc.mx[:n], out=self.x_in[0])
        self.x_in[0] /= sc.sx[:n]

    def set_controls(self, U):
        """Controls, raw (T, m, B) (or broadcastable)."""
        sc, n, m = self.sc, self.n, self.m
        V = self.IN[:, :m]
        np.subtract(U, sc.mx[n:n + m], out=V)
        V /= sc.sx[n:n + m]

    def set_exo(self, E):
        """Exogenous inputs, raw, broadcastable to (T, e, B); None when there are none."""
        self._exo = E
        if E is None:
            return
        sc, k = self.sc, self.n + self.m
        V = self.IN[:, self.m:]
        np.subtract(E, sc.mx[k:], out=V)
        V /= sc.sx[k:]

    def forward(self):
        """Run the rollout (after set_x0 / set_controls / set_exo): one compiled call when
        the batch is small and the compiled path is on, else the numpy op list."""
        self._ran_compiled = self.ck is not None and compiled.ENABLED
        if self._ran_compiled:
            self.ck.rollout(self.wts, self.XB, self.OB, self.ZB, self.n, self._ka,
                            self._kb, self.model.residual)
            return
        for f, a in self.fwd:
            f(*a)

    def states(self):
        """Raw states (T+1, n, B) of the last rollout, float64 (a view of the buffers unless
        scaled or float32)."""
        S = self.XB[:, :self.n]
        sc = self.sc
        if sc.key[0] is None:
            return S if S.dtype == np.float64 else S.astype(np.float64)
        return S * sc.sx[:self.n] + sc.mx[:self.n]

    def controls(self):
        """Raw controls (T, m, B) as the network saw them."""
        sc, n, m = self.sc, self.n, self.m
        U = self.IN[:, :m]
        return U.astype(np.float64) if sc.key[0] is None else U * sc.sx[n:n + m] + sc.mx[n:n + m]

    def backward(self, CX):
        """BPTT sweep from the cost gradient CX = dJ/dx_t, raw (T+1, n, B)."""
        np.multiply(CX, self.sc.sy, out=self.Cs)
        if self._ran_compiled:            # the path of the forward pass (its state is read)
            self.ck.bptt(self.wts, self.XB, self.OB, self.ZB, self.GBB, self.GB,
                         self.bufs[0].scratch(), self.Cs, self.SIG, self.n, self._kr,
                         self.model.residual)
            return
        for f, a in self.bwd:
            f(*a)

    def grad_controls(self):
        """dJ/du_t through the dynamics, raw (T, m, B) (after backward; may be a view)."""
        sc, n, m = self.sc, self.n, self.m
        G = self.GB[:, n:n + m]
        return G if sc.key[0] is None else G / sc.sx[n:n + m]

    def grad_x0(self, CX):
        """dJ/dx_0, raw (n, B) (after backward)."""
        sc, n = self.sc, self.n
        g = CX[0] + self.GB[0, :n] / sc.sx[:n]
        if self.model.residual:
            g += self.sig[0] / sc.sy
        return g

    def step_jacobians(self):
        """Per-step Jacobians of the last rollout: A_t = dF/dx (T, B, n, n), B_t = dF/du
        (T, B, n, m), raw units; one input-only backward sweep per state and step."""
        T, B, n, m, plan, sc = self.T, self.B, self.n, self.m, self.plan, self.sc
        J = np.empty((T, n, n + m, B))
        seed = np.zeros((n, B))
        out_scale = self.model.net.output_scaling
        inv = 1.0 / sc.sx[:n + m]
        for t, bf in enumerate(self.bufs):
            ops = self.step_bwd[t]
            for j in range(n):
                seed[j] = 1.0
                plan.seed(bf, seed, out_scale)
                seed[j] = 0.0
                for f, a in ops:
                    f(*a)
                np.multiply(self.GB[t, :n + m], inv, out=J[t, j])
        A = J[:, :, :n].transpose(0, 3, 1, 2).copy()
        if self.model.residual:
            A += np.eye(n)
        return A, J[:, :, n:].transpose(0, 3, 1, 2)


class ClosedLoop:
    """iLQR's forward pass through a Dynamics model as one compiled call: T steps of B
    trajectories under the local policy ``u_t = clip(Ur_t + alpha k_t + K_t (z_t - Zr_t),
    lo_t, hi_t)`` (see :func:`ctrlprop.solvers.ddp.ddp`'s ``closed_loop``).

    Only the compiled path runs it (:meth:`build` gives None otherwise, and the solver then
    loops over the model's steps): it needs the engine's plan as kernel tables and no op
    lists, so building one costs a few allocations (an :class:`Unroll` costs 0.1 ms per
    step to build, too much for a new problem at every MPC step).

    Parameters
    ----------
    model : Dynamics
    T, B : int
        Horizon and batch.
    ck : CompiledPlan
        The compiled plan of the model's float64 plan for a batch of B.
    exo : ndarray, shape (B, T, e), optional
        Exogenous inputs, raw.
    aug : bool
        The solver's state is ``z_t = [x_t; u_{t-1}]`` (a control-rate cost).
    """

    def __init__(self, model, T, B, ck, exo=None, aug=False):
        net = model.net
        plan = net.plan_for(np.float64)
        self.model, self.T, self.B, self.n, self.m = model, T, B, model.n_states, model.n_controls
        self.ck, self.aug = ck, bool(aug)
        self.wts = plan.new_weights()
        self.wts.load(net.weights)
        ni = net.n_inputs
        self.OB = np.empty((T, plan.o_offsets[-1], B))
        self.ZB = np.empty((T, plan.z_offsets[-1], B))
        self.XB = np.zeros((T + 1, ni + 1, B))
        self.XB[:, ni] = 1.0                                 # the bias unit
        sc = Scales(net)
        a, b, _ = sc.step_maps(self.n, model.residual)
        self.a, self.b = kernel_vector(a), kernel_vector(b)
        self.sx, self.mx = kernel_vector(sc.sx), kernel_vector(sc.mx)
        k = self.n + self.m
        if exo is not None:
            self.XB[:T, k:ni] = ((exo.transpose(1, 2, 0) - sc.mx[k:]) / sc.sx[k:])

    @classmethod
    def build(cls, model, T, B, exo=None, aug=False):
        """A ClosedLoop when the compiled path is on and the model's passes for B samples
        count as small (``compiled.for_batch``), else None."""
        if not compiled.ENABLED or getattr(model, "dtype", np.float64) != np.float64:
            return None
        ck = compiled.for_batch(model.net.plan_for(np.float64), B)
        return None if ck is None else cls(model, T, B, ck, exo, aug)

    def __call__(self, x0, Zr, Ur, k, K, alpha, lo, hi):
        """The closed-loop rollout from raw initial states x0 (B, n): (Z (B, T+1, nz),
        U (B, T, m)), Z the solver's states (x, and u_{t-1} when augmented)."""
        n, c = self.n, np.ascontiguousarray
        self.XB[0, :n] = (x0[:, :n].T - self.mx[:n, None]) / self.sx[:n, None]
        U = np.empty((self.B, self.T, self.m))
        self.ck.closed_loop(self.wts, self.XB, self.OB, self.ZB, n, self.a, self.b,
                            self.model.residual, self.sx, self.mx, c(Zr, dtype=float),
                            c(Ur, dtype=float), c(k, dtype=float), c(K, dtype=float),
                            float(alpha), None if lo is None else c(lo, dtype=float),
                            None if hi is None else c(hi, dtype=float), self.aug, U)
        X = self.XB[:, :n] * self.sx[:n, None] + self.mx[:n, None]      # (T+1, n, B) raw
        Z = np.zeros((self.B, self.T + 1, Zr.shape[2]))
        Z[:, :, :n] = X.transpose(2, 0, 1)
        if self.aug:
            Z[:, 1:, n:] = U
        return Z, U
