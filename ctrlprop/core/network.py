"""Network structure: units, edges, transfer functions, outputs, and the flat weight vector.

Vocabulary (from the lecture): units ``0 .. n_inputs-1`` are *fake* input units
that copy the inputs; every other unit ``j`` is a computing unit with

    z_j = sum_{i in In(j)} w_ji o_i  (+ w_j,bias * 1),     o_j = h_j(z_j).

The user numbers the units as they like; the library enumerates them in a
topological order itself (``net.order``) and groups them into *levels*: inputs
are level 0 and a computing unit's level is 1 + the highest level among its
sources.  The engine (:mod:`ctrlprop.engine`) computes a whole level as one
matrix product.

The weights live in one flat float64 vector ``net.weights`` (what scipy sees).
Its layout follows the levels: for each destination level ``L`` and each
source level ``l`` feeding it, one block ``W_Ll`` whose row ``j`` holds the
weights ``w_ji`` of unit ``j`` of level ``L`` from the units ``i`` of level
``l`` (plus the bias unit, last, for ``l = L-1``), stored row-major and keeping
only existing connections.  For a fully connected layer the block is a plain
reshape of a slice of the vector.
``net.weight_labels`` says which ``(source, destination)`` pair (source
``"bias"`` for a bias weight) every entry belongs to.

Initialisation (seeded by ``seed``): each weight into unit ``j`` is drawn from
``N(0, gain^2 / fan_in(j))`` where ``fan_in(j)`` counts its non-bias sources and
``gain`` is ``sqrt(2)`` for relu and softplus units and 1 otherwise (LeCun /
He scaling); bias weights start at 0.
"""

import copy
import heapq
from collections import deque
from types import MappingProxyType

import numpy as np

from .checks import as_float, as_list, check_bool, check_dtype, check_int, check_seed
from .engine import Plan
from .io import read_arrays, write_arrays
from .transfer import get_transfer, transfer_names

__all__ = ["Network", "structure_arrays", "network_from_arrays"]

BIAS = "bias"


class Network:
    """A feed-forward network on an arbitrary DAG of units.

    Build it with :meth:`from_edges` or :meth:`mlp`.  The structure is fixed
    after construction; the numbers (``weights`` and the optional input/output
    scaling) can change.
    """

    # ------------------------------------------------------------ building
    def __init__(self, n_inputs, edges, transfers, outputs, bias=True, seed=0):
        self._build(n_inputs, edges, transfers, outputs, bias)
        self._weights = self.init_weights(seed)
        self.input_scaling = None     # (mean (n_inputs,), scale (n_inputs,)) or None
        self.output_scaling = None    # (mean (n_outputs,), scale (n_outputs,)) or None
        self._plan = None

    @classmethod
    def from_edges(cls, n_inputs, edges, transfers, outputs, bias=True, seed=0):
        """Build a network from a list of connections.

        Parameters
        ----------
        n_inputs : int
            Number of (fake) input units; they are units ``0 .. n_inputs-1``.
        edges : sequence of (int, int)
            ``(source, destination)`` unit pairs, in any order.
        transfers : sequence
            ``transfers[k]`` is the transfer function of unit ``n_inputs + k``:
            a registered name (see :func:`ctrlprop.transfer_names`) or an
            ``(h, h')`` pair of array functions.
        outputs : sequence of int
            The computing units whose outputs form the network output, in order.
        bias : bool
            Connect the constant-1 bias unit to every computing unit.
        seed : int
            Seed of the weight initialisation.

        Returns
        -------
        Network
        """
        return cls(n_inputs, edges, transfers, outputs, bias=bias, seed=seed)

    @classmethod
    def mlp(cls, sizes, hidden="tanh", output="linear", seed=0, bias=True):
        """Build a fully connected layered network.

        Parameters
        ----------
        sizes : sequence of int
            ``[n_in, h1, ..., n_out]``, at least two entries.
        hidden, output : str or (h, h') pair
            Transfer of the hidden units and of the output units.

        Returns
        -------
        Network
        """
        sizes = as_list(sizes, "sizes", "a sequence of int [n_in, ..., n_out]")
        if len(sizes) < 2:
            raise ValueError(f"mlp sizes must be [n_in, ..., n_out] with at least two "
                             f"positive entries, got {sizes}")
        sizes = [check_int(s, f"sizes[{i}]", 1) for i, s in enumerate(sizes)]
        specs = {}
        for name, spec in (("hidden", hidden), ("output", output)):
            try:
                specs[name] = get_transfer(spec)
            except (TypeError, ValueError) as e:
                raise type(e)(f"{name}: {e}") from None
        hidden, output = specs["hidden"], specs["output"]
        starts = np.cumsum([0] + sizes)
        edges, transfers = [], []
        for a, b, c in zip(starts[:-2], starts[1:-1], starts[2:]):
            edges += [(i, j) for i in range(a, b) for j in range(b, c)]
        for k, s in enumerate(sizes[1:]):
            transfers += [output if k == len(sizes) - 2 else hidden] * s
        outputs = list(range(starts[-2], starts[-1]))
        return cls(sizes[0], edges, transfers, outputs, bias=bias, seed=seed)

    def _build(self, n_inputs, edges, transfers, outputs, bias):
        """Validate the structure and compute order, levels and weight layout."""
        n_in = check_int(n_inputs, "n_inputs", 1)
        bias = check_bool(bias, "bias")
        transfers = as_list(transfers, "transfers", "a sequence of transfer functions (registered "
                            "names or (h, h') pairs), one per computing unit")
        edges = as_list(edges, "edges", "a sequence of (source, destination) pairs")
        outputs = as_list(outputs, "outputs", "a sequence of computing-unit indices")
        if not transfers:
            raise ValueError("transfers is empty: a network needs at least one computing unit")
        n = n_in + len(transfers)
        tr = []
        for k, spec in enumerate(transfers):
            try:
                tr.append(get_transfer(spec))
            except ValueError as e:
                raise ValueError(f"unit {n_in + k} (transfers[{k}]): {e}") from None

        src_of = [[] for _ in range(n)]
        dst_of = [[] for _ in range(n)]
        seen = set()
        clean = []
        for e in edges:
            try:
                s, d = e
            except (TypeError, ValueError):
                raise ValueError(f"each edge must be a (source, destination) pair, got {e!r}") \
                    from None
            s, d = check_int(s, f"edge {e!r} source"), check_int(d, f"edge {e!r} destination")
            for u in (s, d):
                if not 0 <= u < n:
                    raise ValueError(f"edge ({s}, {d}): unit {u} is out of range; units are "
                                     f"0..{n - 1} ({n_in} inputs + {len(tr)} computing units)")
            if s == d:
                raise ValueError(f"edge ({s}, {d}) is a self-loop on unit {s}")
            if d < n_in:
                raise ValueError(f"edge ({s}, {d}) points into input unit {d}; input units "
                                 f"0..{n_in - 1} only copy the inputs")
            if (s, d) in seen:
                raise ValueError(f"duplicate edge ({s}, {d})")
            seen.add((s, d))
            clean.append((s, d))
            src_of[d].append(s)
            dst_of[s].append(d)

        order = self._toposort(n, n_in, src_of, dst_of)

        reached = np.zeros(n, bool)
        reached[:n_in] = True
        queue = deque(range(n_in))
        while queue:
            u = queue.popleft()
            for v in dst_of[u]:
                if not reached[v]:
                    reached[v] = True
                    queue.append(v)
        if not reached.all():
            bad = np.flatnonzero(~reached).tolist()
            raise ValueError(f"computing unit(s) {bad} are reached by no input unit; the "
                             "edges must connect them (directly or through other units) to an "
                             "input")

        if not outputs:
            raise ValueError("outputs is empty: list the units that form the network output")
        outs = [check_int(o, "output") for o in outputs]
        for o in outs:
            if not 0 <= o < n:
                raise ValueError(f"output unit {o} is out of range 0..{n - 1}")
            if o < n_in:
                raise ValueError(f"output unit {o} is an input unit; outputs must be "
                                 f"computing units {n_in}..{n - 1}")
        dup = sorted({o for o in outs if outs.count(o) > 1})
        if dup:
            raise ValueError(f"outputs repeats unit(s) {dup}")

        level = np.zeros(n, int)
        for u in order[n_in:]:
            level[u] = 1 + max(level[s] for s in src_of[u])
        n_levels = int(level.max()) + 1
        levels = [np.arange(n_in)]
        for L in range(1, n_levels):
            us = [u for u in range(n_in, n) if level[u] == L]
            us.sort(key=lambda u: (tr[u - n_in].name, u))   # same transfer -> contiguous
            levels.append(np.array(us, int))
        pos = np.zeros(n, int)
        for lv in levels:
            pos[lv] = np.arange(len(lv))

        # weight layout: per destination level, per source level, one block of shape
        # (units of L, units of l [+ bias]) stored row-major: row j holds w_ji
        labels, blocks, off = [], [], 0
        for L in range(1, n_levels):
            for l in range(L):
                has_bias = bool(bias and l == L - 1)
                rows = len(levels[L])
                cols = len(levels[l]) + has_bias
                ent = [(pos[d] * cols + pos[s], s, d) for d in levels[L] for s in src_of[d]
                       if level[s] == l]
                if has_bias:
                    ent += [(pos[d] * cols + cols - 1, BIAS, d) for d in levels[L]]
                if not ent:
                    continue
                ent.sort(key=lambda t: t[0])
                flat = np.array([t[0] for t in ent], np.intp)
                flat.flags.writeable = False
                blocks.append(dict(dst=L, src=l, off=off, rows=rows, cols=cols,
                                   has_bias=has_bias, flat=flat, dense=len(ent) == rows * cols))
                labels += [(t[1] if t[1] == BIAS else int(t[1]), int(t[2])) for t in ent]
                off += len(ent)

        self.n_inputs = n_in
        self.n_units = n
        self.edges = tuple(clean)
        self.transfers = tuple(tr)
        self.outputs = tuple(outs)
        self.bias = bias
        self.order = tuple(int(u) for u in order)
        self.levels = tuple(levels)
        self.level_of = level
        self.position = pos
        self._blocks = tuple(blocks)
        self._labels = tuple(labels)
        self.n_weights = off
        self._src_of = src_of

    @staticmethod
    def _toposort(n, n_in, src_of, dst_of):
        """Kahn's algorithm (smallest unit first); raise naming a cycle if there is one."""
        indeg = [len(s) for s in src_of]
        heap = [u for u in range(n) if indeg[u] == 0]
        heapq.heapify(heap)
        order = []
        while heap:
            u = heapq.heappop(heap)
            order.append(u)
            for v in dst_of[u]:
                indeg[v] -= 1
                if indeg[v] == 0:
                    heapq.heappush(heap, v)
        if len(order) == n:
            return order
        left = {u for u in range(n) if indeg[u] > 0}
        # walk backwards along sources inside `left` until a unit repeats: that is a cycle
        u, path, where = min(left), [], {}
        while u not in where:
            where[u] = len(path)
            path.append(u)
            u = next(s for s in src_of[u] if s in left)
        cycle = path[where[u]:][::-1]
        shown = " -> ".join(str(c) for c in cycle + [cycle[0]])
        raise ValueError(f"the edges contain a cycle through units {sorted(cycle)}: {shown}; "
                         "a feed-forward network must be acyclic")

    # ------------------------------------------------------------ numbers
    def init_weights(self, seed=0):
        """Return freshly initialised weights (see the module docstring), shape ``(n_weights,)``."""
        rng = np.random.default_rng(check_seed(seed))
        std = np.empty(self.n_weights)
        for k, (s, d) in enumerate(self._labels):
            gain = np.sqrt(2.0) if self.transfers[d - self.n_inputs].name in (
                "relu", "softplus") else 1.0
            std[k] = 0.0 if s == BIAS else gain / np.sqrt(len(self._src_of[d]))
        return std * rng.standard_normal(self.n_weights)

    @property
    def weights(self):
        """The flat float64 weight vector, shape ``(n_weights,)``; assignable."""
        return self._weights

    @weights.setter
    def weights(self, value):
        self._weights = self.check_weights(value).copy()

    def check_weights(self, w):
        """Return ``w`` as a float64 vector after checking its length and finiteness."""
        w = as_float(w, "weights")
        if w.shape != (self.n_weights,):
            raise ValueError(f"weights must have shape ({self.n_weights},), got {w.shape}")
        if not np.all(np.isfinite(w)):
            bad = np.flatnonzero(~np.isfinite(w))[:5].tolist()
            raise ValueError(f"weights contain NaN or inf at entries {bad} "
                             f"(labels {[self._labels[i] for i in bad]})")
        return w

    @property
    def n_outputs(self):
        """Number of network outputs."""
        return len(self.outputs)

    @property
    def blocks(self):
        """The weight layout, read-only: one dict per block ``W_Ll`` (see the module
        docstring) with keys ``dst`` (L), ``src`` (l), ``off`` (offset in ``weights``),
        ``rows``, ``cols`` (the block's shape, bias column included), ``has_bias``,
        ``flat`` (positions of the existing entries in the row-major block) and
        ``dense`` (every entry exists); a tuple in the order of ``weights``."""
        return tuple(MappingProxyType(d) for d in self._blocks)

    @property
    def weight_labels(self):
        """``(source, destination)`` for every entry of ``weights``; source ``"bias"`` for biases."""
        return self._labels

    def weight_index(self, source, destination):
        """Index into ``weights`` of the connection ``source -> destination`` (or ``"bias"``)."""
        key = (source if source == BIAS else int(source), int(destination))
        try:
            return self._labels.index(key)
        except ValueError:
            raise KeyError(f"no weight from {source!r} to {destination!r}") from None

    def units_weights(self, units):
        """Boolean mask over ``weights`` selecting every weight *into* the given computing units."""
        units = {check_int(u, "unit") for u in np.atleast_1d(units).tolist()}
        bad = sorted(u for u in units if not self.n_inputs <= u < self.n_units)
        if bad:
            raise ValueError(f"unit(s) {bad} are not computing units; computing units are "
                             f"{self.n_inputs}..{self.n_units - 1}")
        return np.array([d in units for _, d in self._labels], bool)

    def describe(self):
        """A readable table of the structure: one line per unit, in topological order."""
        lines = [f"Network: {self.n_inputs} inputs, {self.n_units - self.n_inputs} computing "
                 f"units, {self.n_outputs} outputs, {self.n_weights} weights, "
                 f"{len(self.levels)} levels"]
        for u in self.order:
            if u < self.n_inputs:
                lines.append(f"  unit {u:4d}  level 0  input")
                continue
            srcs = ", ".join(str(s) for s in sorted(self._src_of[u]))
            role = f"  output[{self.outputs.index(u)}]" if u in self.outputs else ""
            lines.append(f"  unit {u:4d}  level {self.level_of[u]}  "
                         f"{self.transfers[u - self.n_inputs].name:8s} <- {srcs}"
                         f"{' + bias' if self.bias else ''}{role}")
        return "\n".join(lines)

    def __repr__(self):
        return (f"Network(n_inputs={self.n_inputs}, units={self.n_units}, "
                f"n_outputs={self.n_outputs}, n_weights={self.n_weights})")

    def set_scaling(self, x_mean=None, x_scale=None, y_mean=None, y_scale=None):
        """Store input/output standardisation: the network sees ``(x - x_mean) / x_scale``
        and reports ``y_int * y_scale + y_mean``.  Pass None to leave a side unscaled.

        Parameters
        ----------
        x_mean, x_scale : array_like, shape (n_inputs,)
        y_mean, y_scale : array_like, shape (n_outputs,)
        """
        def pair(m, s, n, side):
            if m is None and s is None:
                return None
            m = np.zeros(n) if m is None else as_float(m, f"{side}_mean")
            s = np.ones(n) if s is None else as_float(s, f"{side}_scale")
            for name, a in ((f"{side}_mean", m), (f"{side}_scale", s)):
                if a.shape != (n,):
                    raise ValueError(f"{name} must have shape ({n},), got {a.shape}")
                if not np.all(np.isfinite(a)):
                    raise ValueError(f"{name} contains NaN or inf")
            if np.any(s <= 0):
                raise ValueError(f"{side}_scale must be positive, got {s}")
            return m.copy(), s.copy()
        x_side = pair(x_mean, x_scale, self.n_inputs, "x")     # validate both sides ...
        y_side = pair(y_mean, y_scale, self.n_outputs, "y")
        self.input_scaling, self.output_scaling = x_side, y_side   # ... then assign both

    def copy(self):
        """A new Network with the same structure, weights and scaling."""
        c = copy.copy(self)
        c._weights = self._weights.copy()
        c._plan = c._plan32 = None
        return c

    # ------------------------------------------------------------ pickling
    # The compiled plan (buffers and op lists) is rebuilt on first use after unpickling;
    # transfer functions pickle by their registered name (see ctrlprop.core.transfer).
    def __getstate__(self):
        state = self.__dict__.copy()
        state["_plan"] = None
        state.pop("_plan32", None)
        return state

    # ------------------------------------------------------------ computation
    @property
    def plan(self):
        """The compiled level plan (:class:`ctrlprop.engine.Plan`), built on first use."""
        if self._plan is None:
            self._plan = Plan(self)
        return self._plan

    def plan_for(self, dtype):
        """The plan whose buffers and weight copies are of ``dtype`` (np.float64: :attr:`plan`;
        np.float32: a second plan, built on first use), for float32 training and rollouts."""
        if check_dtype(dtype) == np.float64:
            return self.plan
        if getattr(self, "_plan32", None) is None:
            self._plan32 = Plan(self, dtype=np.float32)
        return self._plan32

    def forward(self, X, weights=None):
        """Network outputs.

        Parameters
        ----------
        X : array_like, shape (K, n_inputs) or (n_inputs,)
        weights : array_like, shape (n_weights,), optional
            Use these instead of ``self.weights``.

        Returns
        -------
        Y : ndarray, shape (K, n_outputs) or (n_outputs,)
        """
        return self.trace(X, weights).outputs()

    def trace(self, X, weights=None, keep=False):
        """Run the forward pass and return a :class:`ctrlprop.engine.Trace` for reuse.

        The trace serves any number of ``backward``/``jacobian`` calls.  Its
        work buffers are shared with later forward passes of the same batch
        size unless ``keep=True``; a stale trace raises instead of giving
        wrong numbers.
        """
        w = self._weights if weights is None else self.check_weights(weights)
        return self.plan.forward(w, X, self.input_scaling, self.output_scaling, keep=keep)

    def backward(self, X, dY, weights=None, wrt="both"):
        """Vector-Jacobian product: the lecture's delta recursion for a batch.

        Parameters
        ----------
        X : array_like, shape (K, n_inputs) or (n_inputs,)
        dY : array_like, same shape as the outputs
            The cotangent ``dE/dY``.
        wrt : {"both", "weights", "inputs"}
            What to compute; the rest of the work is skipped.

        Returns
        -------
        grad_weights : ndarray, shape (n_weights,)  (summed over the batch), or None
        grad_inputs : ndarray, same shape as X, or None
            With ``wrt="weights"`` or ``"inputs"`` only that one array is returned.
        """
        return self.trace(X, weights).backward(dY, wrt=wrt)

    def jacobian_inputs(self, X, inputs=None, weights=None):
        """Per-sample Jacobian ``dY/dX[:, inputs]``, shape ``(K, n_outputs, m)``
        (``(n_outputs, m)`` for a single sample)."""
        return self.trace(X, weights).jacobian_inputs(inputs)

    def jacobian_weights(self, X, weights=None):
        """Per-sample Jacobian ``dY/dw`` stacked as rows ``(k, output)``,
        shape ``(K * n_outputs, n_weights)``."""
        return self.trace(X, weights).jacobian_weights()

    def save(self, path):
        """Save structure, transfer names, weights and scaling to ``path`` (npz; see
        :func:`save` for the format)."""
        save(self, path)


# ---------------------------------------------------------------- files
# File format (``.npz``, read with ``allow_pickle=False``), format version 1:
#
#   key              dtype, shape                meaning
#   format           str "ctrlprop.Network"      identifies the file
#   format_version   int64 scalar                1
#   n_inputs         int64 scalar                number of input units
#   edges            int64 (E, 2)                (source, destination) pairs
#   transfers        str (n_units - n_inputs,)   transfer names, in unit order
#   outputs          int64 (n_outputs,)          output units, in order
#   bias             bool scalar                 bias unit connected
#   weights          float64 (n_weights,)        the flat weight vector
#   x_mean, x_scale  float64 (n_inputs,)         optional input standardisation
#   y_mean, y_scale  float64 (n_outputs,)        optional output standardisation
#
# Custom transfer functions are stored by name only: register them (same name) before
# loading.
FORMAT_VERSION = 1
FILE_KIND = _KIND = "ctrlprop.Network"
FILE_KEYS = _REQUIRED = ("n_inputs", "edges", "transfers", "outputs", "bias", "weights")


def save(net, path):
    """Write ``net`` to ``path`` (the path is used as given).

    Parameters
    ----------
    net : Network
    path : str or path-like
    """
    if not isinstance(net, Network):
        raise TypeError(f"save writes a ctrlprop Network, got {type(net).__name__}")
    data = structure_arrays(net)
    data["weights"] = net.weights
    write_arrays(path, _KIND, FORMAT_VERSION, data)


def structure_arrays(net):
    """The file arrays of a network's structure and scaling (every key of the format above
    but ``weights``), for the files of objects built on a network (an Ensemble's)."""
    data = dict(n_inputs=np.array(net.n_inputs),
                edges=np.array(net.edges, dtype=np.int64).reshape(-1, 2),
                transfers=np.array([t.name for t in net.transfers]),
                outputs=np.array(net.outputs, dtype=np.int64), bias=np.array(net.bias))
    if net.input_scaling is not None:
        data["x_mean"], data["x_scale"] = net.input_scaling
    if net.output_scaling is not None:
        data["y_mean"], data["y_scale"] = net.output_scaling
    return data


def load(path):
    """Read a network written by :func:`save` / :meth:`Network.save`.

    Raises
    ------
    ValueError
        If the file is truncated or corrupt, is not a ctrlprop network, has an
        unsupported format version, names an unregistered transfer function,
        or holds inconsistent arrays (a non-integer stored count is refused, never
        truncated).  The message names the file.
    TypeError
        If ``path`` is not a file name or an open binary file.
    """
    d = read_arrays(path, _KIND, FORMAT_VERSION, _REQUIRED)
    return network_from_arrays(d, path)


def network_from_arrays(d, path, weights=True):
    """The Network stored in the file arrays ``d`` (read from ``path``, named in errors);
    ``weights=False`` leaves its initial weights (the caller reads its own)."""
    for key, kind in (("n_inputs", np.integer), ("bias", np.bool_)):
        a = d[key]
        if a.ndim != 0 or not np.issubdtype(a.dtype, kind):
            raise ValueError(f"{path}: inconsistent model file: {key} must be a stored "
                             f"{'integer' if kind is np.integer else 'bool'} scalar, got "
                             f"{a.dtype} array of shape {a.shape}")
    if d["transfers"].ndim != 1:
        raise ValueError(f"{path}: inconsistent model file: transfers must be a 1-D array of "
                         f"names, got shape {d['transfers'].shape}")
    names = [str(t) for t in d["transfers"]]
    unknown = sorted(set(names) - set(transfer_names()))
    if unknown:
        raise ValueError(f"{path}: transfer function(s) {unknown} are not registered; register "
                         "them with ctrlprop.register_transfer(name, h, dh) before loading")
    try:
        net = Network.from_edges(int(d["n_inputs"]), [tuple(e) for e in d["edges"].tolist()],
                                 names, d["outputs"].tolist(), bias=bool(d["bias"][()]))
        if weights:
            net.weights = d["weights"]
        if "x_mean" in d or "y_mean" in d:
            net.set_scaling(d.get("x_mean"), d.get("x_scale"), d.get("y_mean"), d.get("y_scale"))
    except (ValueError, TypeError) as e:
        raise ValueError(f"{path}: inconsistent model file: {e}") from None
    return net
