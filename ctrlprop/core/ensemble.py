"""Ensembles: E networks of one structure, evaluated together with a member axis.

An :class:`Ensemble` is one graph (a Network's structure and scaling) with E weight
vectors, ``weights`` of shape (E, n_weights).  It runs the engine's level plan with a
leading member axis on every array: activations are ``O_l`` (E, n_l + 1, K), a weight block
``W_Ll`` is (E, n_L, n_l [+1]), and each product of the level recursion becomes one stacked
product over the members (``np.matmul``), so a batch through E members costs the numpy
calls of one network, not E times as many::

    Z_L^e = sum_{l < L} W_Ll^e O~_l^e              e = 1..E, one matmul per block
    O_L^e = h(Z_L^e)                                one call per transfer, all members
    D_L^e = h'(Z_L^e) * G_L^e,  dE/dW_Ll^e = D_L^e O~_l^eT,  G_l^e += W_Ll^eT D_L^e

The backward pass is the engine's one delta recursion (:func:`~ctrlprop.core.engine.
backward_steps`) run on these stacks.  Inputs are shared by all members, ``X`` (K,
n_inputs), or given per member, ``X`` (E, K, n_inputs) (a bootstrap sample, or a member
following its own trajectory); outputs are always per member, (E, K, n_outputs).

Members share the input/output standardisation (the template network's): an ensemble is
trained on one data set, each member on its own bootstrap resample of it.
"""

import copy

import numpy as np

from .checks import (as_float, check_dtype, check_finite, check_indices, check_int,
                     check_seed)
from .engine import StaleTraceError, backward_steps, forward_steps, level_delta_steps
from .io import read_arrays, write_arrays
from .network import Network, network_from_arrays, structure_arrays
from . import network as _network_module

__all__ = ["Ensemble", "EnsembleTrace", "EnsemblePlan", "EnsembleBuffers", "EnsembleWeights",
           "save", "load"]


class EnsembleWeights:
    """The E members' weights laid out as stacked blocks (the engine's Weights, with a
    member axis): ``W[L][i]`` (E, rows, cols) views of one array ``WD`` (E, n_wd) (a sparse
    block's dense copy at its ``woff``), ``Wn`` without the bias column, and ``WnT`` (E, n_l,
    n_L) contiguous transposed copies for the backward products."""

    def __init__(self, plan, E):
        self.E, self.gen = E, 0
        nw, dt = plan.n_weights, plan.dtype
        self.WD = np.zeros((E, plan.n_wd), dt)
        self.w = self.WD[:, :nw]
        self.W, self.Wn, self.WnT = [None], [None], [None]
        self._sparse, self._transposed = [], []
        for L in range(1, plan.n_levels):
            W, Wn, WnT = [], [], []
            for b in plan.blocks[L]:
                flat = self.WD[:, b.woff:b.woff + b.rows * b.cols]
                V = flat.reshape(E, b.rows, b.cols)
                if not b.dense:
                    self._sparse.append((b, flat))
                n_src = plan.sizes[b.src]
                T = np.empty((E, n_src, b.rows), dt)
                W.append(V)
                Wn.append(V[:, :, :n_src])
                WnT.append(T)
                self._transposed.append((T, V[:, :, :n_src].transpose(0, 2, 1)))
            self.W.append(W)
            self.Wn.append(Wn)
            self.WnT.append(WnT)

    def load(self, W):
        """Copy the members' flat weights W (E, n_weights) in."""
        np.copyto(self.w, W)
        for b, flat in self._sparse:
            flat[:, b.flat] = W[:, b.off:b.off + b.size]
        for T, VT in self._transposed:
            np.copyto(T, VT)
        self.gen += 1


def _take_entries(full, flat, g):
    """g (E, size) = the existing entries ``flat`` of the stacked dense blocks full (E, r, c)."""
    np.take(full.reshape(len(full), -1), flat, axis=1, out=g)


def _fill0(a):
    a.fill(0.0)


class EnsembleBuffers:
    """Work arrays of E members for batch size K and the precompiled steps that use them
    (the engine's Buffers with a leading member axis on every array)."""

    def __init__(self, eplan, K, weights=None):
        plan, E = eplan.plan, eplan.E
        self.eplan, self.K, self.gen = eplan, K, 0
        self.weights = eplan.weights if weights is None else weights
        sizes, nl, dt = plan.sizes, plan.n_levels, plan.dtype
        self.O = [np.empty((E, s + 1, K), dt) for s in sizes]
        for O in self.O:
            O[:, -1] = 1.0                                  # the bias unit
        self.Ov = [O[:, :-1] for O in self.O]
        self.Z = [None] + [np.empty((E, sizes[L], K), dt) if plan.keep_z[L] else self.Ov[L]
                           for L in range(1, nl)]
        self.G = [np.empty((E, s, K), dt) for s in sizes]
        self.D = [None] + [self.G[L] if plan.all_linear[L] else np.empty((E, sizes[L], K), dt)
                           for L in range(1, nl)]
        self.T = [np.empty((E, s, K), dt) for s in sizes]
        self.Y = self.Ov[-1] if plan.out_direct else np.empty((E, plan.n_out, K), dt)
        self.grad = np.empty((E, plan.n_weights), dt)
        self.src = [None] + [[self.O[b.src] if b.has_bias else self.Ov[b.src]
                              for b in plan.blocks[L]] for L in range(1, nl)]
        self.fwd_ops = self._compile_forward()
        self._bwd_ops = {}

    def __reduce__(self):
        raise TypeError("ensemble work buffers are compiled engine state and are not pickled; "
                        "pickle the Ensemble")

    def _compile_forward(self):
        return forward_steps(self.eplan.plan, self.weights.W, self.Z, self.T, self.src,
                             self.Ov, self.Y, dot=np.matmul)

    def delta_steps(self, L):
        return level_delta_steps(self.eplan.plan, L, self.Z, self.Ov, self.G, self.D)

    def bwd_ops(self, want_w, want_x):
        key = (want_w, want_x)
        ops = self._bwd_ops.get(key)
        if ops is None:
            wgrad = zero = None
            if want_w:
                wgrad, zero = self._wgrad, self._zero
            ops = self._bwd_ops[key] = backward_steps(
                self.eplan.plan, self.G, self.D, self.T, self.src, self.weights.WnT,
                self.delta_steps, wgrad=wgrad, zero=zero, want_x=want_x, dot=np.matmul)
        return ops

    def _wgrad(self, L, i, b, s):
        """dE/dW_Ll = D_L O~_l^T per member, into grad (E, n_weights)."""
        E = self.eplan.E
        g = self.grad[:, b.off:b.off + b.size]
        sT = s.transpose(0, 2, 1)
        if b.dense:
            return [(np.matmul, (self.D[L], sT, g.reshape(E, b.rows, b.cols)))]
        full = np.empty((E, b.rows, b.cols), g.dtype)
        return [(np.matmul, (self.D[L], sT, full)), (_take_entries, (full, b.flat, g))]

    def _zero(self, b):
        return [(_fill0, (self.grad[:, b.off:b.off + b.size],))]

    def run_forward(self):
        """The forward pass after the internal inputs are written into ``Ov[0]`` (E, n_in, K);
        then ``Y`` (E, n_out, K) holds the internal outputs."""
        self.gen += 1
        for f, a in self.fwd_ops:
            f(*a)

    def run_backward(self, dYT, want_w=False, want_x=True):
        """The delta recursion from the internal output cotangent dYT (E, n_out, K): then
        ``grad`` (E, n_weights) and ``G[0]`` (E, n_in, K) (internal units)."""
        self.seed(dYT)
        for f, a in self.bwd_ops(want_w, want_x):
            f(*a)

    def seed(self, dYT):
        """Write the cotangent dYT (E, n_out, K), internal units, at the output units."""
        p = self.eplan.plan
        if p.out_direct:
            np.copyto(self.G[-1], dYT)
            return
        for L, (rows, ys) in p.out_by_level.items():
            self.G[L].fill(0.0)
            self.G[L][:, rows] = dYT[:, ys]


class EnsemblePlan:
    """A network's level plan run for E members: the stacked weight copy and the work
    buffers per batch size (the last few kept)."""

    MAX_CACHED_BATCH_SIZES = 8

    def __init__(self, plan, E):
        self.plan, self.E = plan, E
        self.weights = EnsembleWeights(plan, E)
        self._bufs = {}

    def __reduce__(self):
        raise TypeError("an ensemble plan is compiled engine state and is not pickled; "
                        "pickle the Ensemble (its plan is rebuilt on first use)")

    def new_weights(self):
        """A private stacked weight copy (load it with ``.load(W)``)."""
        return EnsembleWeights(self.plan, self.E)

    def new_buffers(self, K, weights=None):
        """Fresh work buffers for batch size K reading ``weights`` (default: the shared
        copy)."""
        return EnsembleBuffers(self, K, weights)

    def buffers(self, K):
        """The shared work buffers for batch size K."""
        b = self._bufs.get(K)
        if b is None:
            if len(self._bufs) >= self.MAX_CACHED_BATCH_SIZES:
                self._bufs.pop(next(iter(self._bufs)))
            b = self._bufs[K] = EnsembleBuffers(self, K)
        return b


class EnsembleTrace:
    """One forward pass of an ensemble, kept for backward passes and Jacobians.

    Obtain it from :meth:`Ensemble.trace`.  It shares work buffers with later forward
    passes of the same ensemble and batch size: using it after one raises
    :class:`~ctrlprop.StaleTraceError`.
    """

    __slots__ = ("ens", "_bufs", "_gen", "_wgen", "single", "shared", "K")

    def __init__(self, ens, bufs, single, shared):
        self.ens, self._bufs, self.single, self.shared = ens, bufs, single, shared
        self._gen, self._wgen = bufs.gen, bufs.weights.gen
        self.K = bufs.K

    def __reduce__(self):
        raise TypeError("an EnsembleTrace is compiled engine state and is not pickled")

    def _check(self):
        b = self._bufs
        if b.gen != self._gen or b.weights.gen != self._wgen:
            raise StaleTraceError(
                "this ensemble trace is stale: a later forward pass reused its buffers")

    def _out_shape(self):
        E, n = self.ens.size, self.ens.n_outputs
        return (E, n) if self.single else (E, self.K, n)

    def outputs(self):
        """The members' outputs in raw units: (E, K, n_outputs), or (E, n_outputs) for one
        sample."""
        self._check()
        Y = self._bufs.Y.transpose(0, 2, 1)
        sc = self.ens.output_scaling
        out = Y * sc[1] + sc[0] if sc is not None else np.array(Y, order="C")
        return out[:, 0] if self.single else out

    def backward(self, dY, wrt="both"):
        """Vector-Jacobian product of every member.

        Parameters
        ----------
        dY : array_like, shape of the outputs ((E, K, n_outputs) or (E, n_outputs))
        wrt : {"both", "weights", "inputs"}

        Returns
        -------
        (grad_weights (E, n_weights), grad_inputs (shape of X)) for ``"both"``, else the
        one requested array.  ``grad_weights[e]`` is member e's gradient summed over the
        batch; ``grad_inputs`` has the shape of the X given: per member (E, K, n_inputs)
        for per-member inputs, the sum over the members (K, n_inputs) for shared ones.
        """
        if wrt not in ("both", "weights", "inputs"):
            raise ValueError(f"wrt must be 'both', 'weights' or 'inputs', got {wrt!r}")
        self._check()
        want = self._out_shape()
        dY = check_finite(as_float(dY, "dY"), "dY")
        if dY.shape != want:
            raise ValueError(f"dY must have the shape of the outputs {want}, got {dY.shape}")
        E, K = self.ens.size, self.K
        dYT = dY.reshape(E, K, -1).transpose(0, 2, 1)
        sc = self.ens.output_scaling
        if sc is not None:
            dYT = dYT * sc[1][:, None]
        b = self._bufs
        want_w, want_x = wrt != "inputs", wrt != "weights"
        b.run_backward(dYT, want_w, want_x)
        gw = b.grad.copy() if want_w else None
        gx = None
        if want_x:
            gx = b.G[0].transpose(0, 2, 1)
            if self.shared:
                gx = gx.sum(axis=0)
            else:
                gx = np.array(gx, order="C")
            sx = self.ens.input_scaling
            if sx is not None:
                gx = gx / sx[1]
            if self.single:
                gx = gx[..., 0, :]
        if wrt == "both":
            return gw, gx
        return gw if want_w else gx

    def jacobian_inputs(self, inputs=None):
        """Per-member, per-sample ``dY/dX[:, inputs]``: (E, K, n_outputs, m), or (E, n_outputs,
        m) for one sample.  One input-only backward sweep of all members per output."""
        self._check()
        ens, b = self.ens, self._bufs
        ni, no, E, K = ens.n_inputs, ens.n_outputs, ens.size, self.K
        idx = np.arange(ni) if inputs is None else check_indices(inputs, ni, "inputs")
        J = np.empty((E, K, no, len(idx)))
        e = np.zeros((E, no, K))
        sy = ens.output_scaling
        ops = b.bwd_ops(False, True)
        for j in range(no):
            e[:, j] = 1.0 if sy is None else sy[1][j]
            b.seed(e)
            e[:, j] = 0.0
            for f, a in ops:
                f(*a)
            J[:, :, j, :] = b.G[0][:, idx].transpose(0, 2, 1)
        if ens.input_scaling is not None:
            J /= ens.input_scaling[1][idx]
        return J[:, 0] if self.single else J

    def jacobian_weights(self):
        """Per-member, per-sample ``dY/dw``: (E, K * n_outputs, n_weights), rows ordered
        (sample, output) as :meth:`Network.jacobian_weights`."""
        self._check()
        ens, b = self.ens, self._bufs
        plan, E, K, no = ens.plan.plan, ens.size, self.K, ens.n_outputs
        J = np.empty((E, K, no, ens.n_weights))
        e = np.zeros((E, no, K))
        sy = ens.output_scaling
        for j in range(no):
            Jj = J[:, :, j, :]

            def wgrad(L, i, blk, s, Jj=Jj):
                return [(_outer_members, (b.D[L], s, blk, Jj[:, :, blk.off:blk.off + blk.size]))]

            def zero(blk, Jj=Jj):
                return [(_fill0, (Jj[:, :, blk.off:blk.off + blk.size],))]
            ops = backward_steps(plan, b.G, b.D, b.T, b.src, b.weights.WnT, b.delta_steps,
                                 wgrad=wgrad, zero=zero, want_x=False, dot=np.matmul)
            e[:, j] = 1.0 if sy is None else sy[1][j]
            b.seed(e)
            e[:, j] = 0.0
            for f, a in ops:
                f(*a)
        return J.reshape(E, K * no, ens.n_weights)


def _outer_members(D, s, blk, seg):
    """seg (E, K, size) = the existing entries of the per-sample outer products d o~^T."""
    outer = D.transpose(0, 2, 1)[:, :, :, None] * s.transpose(0, 2, 1)[:, :, None, :]
    E, K = seg.shape[:2]
    outer = outer.reshape(E, K, -1)
    seg[...] = outer if blk.dense else outer[:, :, blk.flat]


def _same_structure(a, b):
    return (a.n_inputs == b.n_inputs and a.edges == b.edges and a.outputs == b.outputs
            and a.bias == b.bias and [t.name for t in a.transfers] == [t.name for t in b.transfers])


def _same_scaling(a, b):
    if (a is None) != (b is None):
        return False
    return a is None or all(np.array_equal(x, y) for x, y in zip(a, b))


class Ensemble:
    """E networks of one structure with their own weights, evaluated in one pass.

    Parameters
    ----------
    net : Network or sequence of Network
        A Network: the structure (and scaling) of the members, which get fresh weights
        (the network's initialisation, seeded per member from ``seed``); ``net`` itself is
        not changed.  A sequence of networks of the same structure and scaling: the members,
        with copies of their weights.
    size : int, optional
        Number of members E (>= 1), with a Network; with a sequence it must be omitted or
        equal its length.
    seed : int, optional
        Seeds new members' initial weights (member e gets the e-th child of
        ``np.random.SeedSequence(seed)``; default 0); not with a sequence of networks.

    Attributes
    ----------
    weights : ndarray, shape (E, n_weights)
        One flat weight vector per member (the Network layout); assignable.
    size : int
        E.
    net : Network
        The template: the structure and the shared input/output scaling (its own weights
        are not used).
    """

    def __init__(self, net, size=None, *, seed=None):
        if isinstance(net, Network):
            E = check_int(size, "size (number of members)", 1)
            template = net.copy()
            children = np.random.SeedSequence(check_seed(0 if seed is None else seed)).spawn(E)
            W = np.stack([template.init_weights(int(c.generate_state(1)[0])) for c in children])
        elif isinstance(net, (list, tuple)) and net:
            nets = list(net)
            for k, m in enumerate(nets):
                if not isinstance(m, Network):
                    raise TypeError(f"net[{k}] must be a ctrlprop Network, got "
                                    f"{type(m).__name__}")
                if not _same_structure(nets[0], m):
                    raise ValueError(f"net[{k}] has another structure than net[0]: the members "
                                     "of an ensemble share one graph")
                if not (_same_scaling(nets[0].input_scaling, m.input_scaling)
                        and _same_scaling(nets[0].output_scaling, m.output_scaling)):
                    raise ValueError(f"net[{k}] has another input/output scaling than net[0]: "
                                     "the members of an ensemble share one standardisation")
            if size is not None and check_int(size, "size", 1) != len(nets):
                raise ValueError(f"size={size} but {len(nets)} networks were given")
            if seed is not None:
                raise ValueError("seed= seeds new members' weights; the networks given keep "
                                 "their own (omit seed)")
            template = nets[0].copy()
            W = np.stack([m.weights for m in nets])
        else:
            raise TypeError(f"net must be a ctrlprop Network or a non-empty list of Networks, "
                            f"got {type(net).__name__}")
        self.net = template
        self._weights = W
        self._plan = self._plan32 = None

    # ------------------------------------------------------------ structure and numbers
    @property
    def size(self):
        """Number of members E."""
        return self._weights.shape[0]

    def __len__(self):
        return self.size

    @property
    def n_inputs(self):
        return self.net.n_inputs

    @property
    def n_outputs(self):
        return self.net.n_outputs

    @property
    def n_weights(self):
        """Weights per member."""
        return self.net.n_weights

    @property
    def input_scaling(self):
        """The shared input standardisation (mean, scale) or None (the template's)."""
        return self.net.input_scaling

    @input_scaling.setter
    def input_scaling(self, value):
        self.net.input_scaling = value

    @property
    def output_scaling(self):
        """The shared output standardisation (mean, scale) or None (the template's)."""
        return self.net.output_scaling

    @output_scaling.setter
    def output_scaling(self, value):
        self.net.output_scaling = value

    def set_scaling(self, x_mean=None, x_scale=None, y_mean=None, y_scale=None):
        """Store the shared standardisation (see :meth:`Network.set_scaling`)."""
        self.net.set_scaling(x_mean, x_scale, y_mean, y_scale)

    @property
    def weights(self):
        """The members' weights, (E, n_weights) float64; assignable (a copy is stored)."""
        return self._weights

    @weights.setter
    def weights(self, value):
        self._weights = self.check_weights(value).copy()

    def check_weights(self, W):
        """``W`` as a float64 (E, n_weights) array after checking its shape and finiteness."""
        W = as_float(W, "weights")
        want = (self.size, self.n_weights)
        if W.shape != want:
            raise ValueError(f"ensemble weights must have shape {want} (members, weights per "
                             f"member), got {W.shape}")
        return check_finite(W, "weights")

    def member(self, e):
        """Member e as a new Network (its weights and the shared scaling)."""
        e = check_int(e, "member index", 0)
        if e >= self.size:
            raise ValueError(f"member index must be < {self.size}, got {e}")
        m = self.net.copy()
        m.weights = self._weights[e]
        return m

    def members(self):
        """All members as a list of new Networks."""
        return [self.member(e) for e in range(self.size)]

    def copy(self):
        """A new Ensemble with the same structure, weights and scaling."""
        c = copy.copy(self)
        c.net = self.net.copy()
        c._weights = self._weights.copy()
        c._plan = c._plan32 = None
        return c

    def __repr__(self):
        return (f"Ensemble(size={self.size}, n_inputs={self.n_inputs}, "
                f"n_outputs={self.n_outputs}, n_weights={self.n_weights} per member)")

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_plan"] = state["_plan32"] = None
        return state

    # ------------------------------------------------------------ computation
    @property
    def plan(self):
        """The stacked plan (rebuilt on first use)."""
        if self._plan is None:
            self._plan = EnsemblePlan(self.net.plan, self.size)
        return self._plan

    def plan_for(self, dtype):
        """The stacked plan whose buffers and weight copies are of ``dtype`` (np.float64:
        :attr:`plan`; np.float32: a second one, built on first use), for float32 rollouts
        (``Dynamics(ensemble, n, dtype=np.float32)``)."""
        if check_dtype(dtype) == np.float64:
            return self.plan
        if getattr(self, "_plan32", None) is None:
            self._plan32 = EnsemblePlan(self.net.plan_for(np.float32), self.size)
        return self._plan32

    def _inputs(self, X):
        """X checked: (E or 1, n_inputs, K) internal units, single, shared."""
        X = check_finite(as_float(X, "X"), "X")
        n, E = self.n_inputs, self.size
        if X.ndim in (1, 2) and X.shape[-1] == n and X.size:
            single, shared = X.ndim == 1, True
            X3 = X.reshape(1, -1, n)
        elif X.ndim == 3 and X.shape[0] == E and X.shape[2] == n and X.shape[1]:
            single, shared, X3 = False, False, X
        else:
            raise ValueError(f"X must have shape (K, {n}) or ({n},) (shared by the members) or "
                             f"({E}, K, {n}) (one batch per member), got {X.shape}")
        return X3, single, shared

    def trace(self, X, weights=None, *, buffers=None):
        """Run the forward pass of every member; an :class:`EnsembleTrace`.

        Parameters
        ----------
        X : array_like, shape (K, n_inputs), (n_inputs,) or (E, K, n_inputs)
            Inputs shared by the members, or one batch per member.
        weights : array_like, shape (E, n_weights), optional
            Use these instead of ``self.weights``.
        buffers : EnsembleBuffers, optional
            Work arrays of batch size K from ``self.plan.new_buffers(K)``, owned by the
            caller (a training objective over all its samples, whose buffers should go
            with it): the pass runs in them.  Default: the plan's shared buffers of batch
            size K, kept for the next pass of that size (the last
            ``EnsemblePlan.MAX_CACHED_BATCH_SIZES`` sizes).
        """
        W = self._weights if weights is None else self.check_weights(weights)
        X3, single, shared = self._inputs(X)
        ep = self.plan
        if buffers is None:
            b = ep.buffers(X3.shape[1])
        elif not isinstance(buffers, EnsembleBuffers) or buffers.eplan is not ep \
                or buffers.K != X3.shape[1]:
            raise ValueError(f"buffers must be this ensemble's plan.new_buffers({X3.shape[1]}) "
                             f"(batch size K = {X3.shape[1]}), got "
                             f"{type(buffers).__name__}"
                             + (f" of batch size {buffers.K}"
                                if isinstance(buffers, EnsembleBuffers) else ""))
        else:
            b = buffers
        ep.weights.load(W)
        XT = X3.transpose(0, 2, 1)
        sx = self.input_scaling
        if sx is None:
            np.copyto(b.Ov[0], XT)
        else:
            np.subtract(XT, sx[0][:, None], out=b.Ov[0])
            b.Ov[0] /= sx[1][:, None]
        b.run_forward()
        return EnsembleTrace(self, b, single, shared)

    def forward(self, X, weights=None):
        """The members' outputs: (E, K, n_outputs), or (E, n_outputs) for one sample."""
        return self.trace(X, weights).outputs()

    def predict(self, X):
        """Mean and variance over the members: two arrays of the shape of one member's output."""
        Y = self.forward(X)
        return Y.mean(axis=0), Y.var(axis=0)

    def backward(self, X, dY, weights=None, wrt="both"):
        """Vector-Jacobian products of every member (see :meth:`EnsembleTrace.backward`)."""
        return self.trace(X, weights).backward(dY, wrt=wrt)

    def jacobian_inputs(self, X, inputs=None, weights=None):
        """Per-member ``dY/dX``: (E, K, n_outputs, m), or (E, n_outputs, m) for one sample."""
        return self.trace(X, weights).jacobian_inputs(inputs)

    def jacobian_weights(self, X, weights=None):
        """Per-member ``dY/dw``: (E, K * n_outputs, n_weights)."""
        return self.trace(X, weights).jacobian_weights()

    def save(self, path):
        """Save structure, scaling and the members' weights to ``path`` (npz)."""
        save(self, path)


# ---------------------------------------------------------------- files
# An ensemble file is a network file (see ctrlprop.core.network) with format
# "ctrlprop.Ensemble" and weights of shape (E, n_weights).
FORMAT_VERSION = 1
_KIND = "ctrlprop.Ensemble"


def save(model, path):
    """Write a Network or an Ensemble to ``path`` (npz; the path is used as given)."""
    if isinstance(model, Network):
        return _network_module.save(model, path)
    if not isinstance(model, Ensemble):
        raise TypeError(f"save writes a ctrlprop Network or Ensemble, got "
                        f"{type(model).__name__}")
    data = structure_arrays(model.net)
    data["weights"] = model.weights
    write_arrays(path, _KIND, FORMAT_VERSION, data)


def load(path):
    """Read a Network or an Ensemble written by :func:`save`.

    Raises
    ------
    ValueError
        If the file is truncated or corrupt, is neither a network nor an ensemble file, or
        holds inconsistent arrays; the message names the file.
    TypeError
        If ``path`` is not a file name or an open binary file.
    """
    d = read_arrays(path, (_network_module.FILE_KIND, _KIND), FORMAT_VERSION,
                    _network_module.FILE_KEYS)
    if str(d["format"]) != _KIND:
        return network_from_arrays(d, path)
    net = network_from_arrays(d, path, weights=False)
    W = d["weights"]
    if W.ndim != 2 or W.shape[0] < 1 or W.shape[1] != net.n_weights:
        raise ValueError(f"{path}: inconsistent ensemble file: weights must have shape "
                         f"(E, {net.n_weights}), got {W.shape}")
    ens = Ensemble(net, W.shape[0], seed=0)
    try:
        ens.weights = W
    except (ValueError, TypeError) as e:
        raise ValueError(f"{path}: inconsistent ensemble file: {e}") from None
    return ens
