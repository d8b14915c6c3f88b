"""Bad input never escapes as an internal error (README, "One set of conventions").

Every public entry point given one malformed argument must raise a ValueError or TypeError
whose message names that argument -- never an AttributeError, IndexError, KeyError,
ZeroDivisionError, a numpy broadcasting error, a scipy-internal error or a bare assert, and
never silently accept it.

The structure:

* ``ENTRIES``: one valid, small baseline call per entry point (``base()`` builds fresh
  keyword arguments, ``call(kw)`` makes the call) and, per argument, a list of labelled
  corruptions (:class:`Bad`): wrong shapes, NaN/inf, wrong types, empty arrays, out-of-range
  indices, negative counts, every wrong form of bounds, bad ``maxiter`` / ``method`` /
  ``options`` / ``callback`` / ``progress``.  A corruption is a constant, a function of the
  baseline arguments, or a hypothesis strategy with a default value.
* ``test_baseline_is_valid``: every baseline call runs (so each corruption is what breaks it).
* ``test_every_corruption_is_named``: each labelled corruption once, at its default value,
  all failures of an entry point reported together.
* ``test_random_corruption_is_named``: the property -- hypothesis picks an argument and a
  corrupted value (drawing the parametrised ones) and the call must raise naming it.

The message must contain the argument's name as a word (``names``): the argument itself, or
a documented alias where the natural name differs (``bounds.lb``, ``bounds[0]`` contain
"bounds"; a cost's error may name the weight or the goal inside it; ``load`` names the file).
"""

import atexit
import copy
import itertools
import os
import re
import shutil
import tempfile
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, note, settings, strategies as st
from scipy.optimize import Bounds

import ctrlprop as cp
from ctrlprop.solvers.scipy_solve import LIMIT_KEYS

NAN, INF = float("nan"), float("inf")


# ================================================================ corruptions
class Bad:
    """One labelled corruption of an argument.

    ``make(kw, x)`` returns the corrupted value from the baseline keyword arguments ``kw``
    and ``x``, a value drawn from ``strategy`` (a SearchStrategy, or a function of ``kw``
    returning one) -- or ``default`` when the corruption is run once.
    """

    def __init__(self, label, make, strategy=None, default=None):
        self.label, self.make, self.strategy, self.default = label, make, strategy, default

    def draw(self, kw, data=None):
        if self.strategy is None:
            return self.make(kw, None)
        if data is None:
            return self.make(kw, self.default)
        s = self.strategy(kw) if callable(self.strategy) else self.strategy
        return self.make(kw, data.draw(s, label=self.label))


def K(label, value):
    """A constant corruption (copied on every use)."""
    return Bad(label, lambda kw, x: copy.deepcopy(value))


def F(label, fn):
    """A corruption computed from the baseline arguments."""
    return Bad(label, lambda kw, x: fn(kw))


def H(label, strategy, default, fn=None):
    """A hypothesis-drawn corruption: ``fn(kw, x)`` (default: x itself)."""
    return Bad(label, fn or (lambda kw, x: x), strategy, default)


def arrays(arg, max_ndim, *, scalar=True, none=True, empty=True, lengths=True, nonfinite=True):
    """Corruptions of a numeric array argument whose baseline value is ``kw[arg]``.

    ``max_ndim``: the most axes a valid value has (one more is wrong); ``scalar``: a 0-d
    value is wrong; ``none``: None is wrong; ``empty``: zero rows are wrong; ``lengths``:
    one entry more or less along the last axis is wrong.
    """
    a = lambda kw: np.asarray(kw[arg], dtype=float)      # noqa: E731
    out = [K("string", "abc"), K("array of strings", np.array(["a", "b"])),
           K("dict", {"a": 1}), K("object", object()),
           F("ragged nested list", lambda kw: [[1.0] * (a(kw).shape[-1] + 1), [1.0]]),
           F("too many axes", lambda kw: a(kw).reshape((1,) * (max_ndim + 1 - a(kw).ndim)
                                                       + a(kw).shape))]
    if lengths:
        out += [F("last axis longer", lambda kw: np.concatenate([a(kw), a(kw)[..., :1]], -1)),
                F("last axis shorter", lambda kw: a(kw)[..., :-1])]
    if scalar:
        out.append(F("scalar", lambda kw: a(kw).ravel()[0].copy()))
    if none:
        out.append(K("None", None))
    if empty:
        out.append(F("empty", lambda kw: np.zeros((0,) + a(kw).shape[1:])))
    if nonfinite:
        def spoil(kw, x):
            v = a(kw).copy()
            i, bad = x
            v.flat[i % v.size] = bad
            return v
        where = st.integers(0, 10 ** 6)
        out += [H("NaN entry", st.tuples(where, st.just(NAN)), (0, NAN), spoil),
                H("inf entry", st.tuples(where, st.sampled_from([INF, -INF])), (0, INF), spoil)]
    return out


def ints(lo, *, none=False):
    """Corruptions of an integer argument that must be >= lo (None allowed if ``none``)."""
    out = [H("below minimum", st.integers(-10 ** 6, lo - 1), lo - 1),
           K("float", float(lo) + 2.0), H("non-integral float",
                                          st.floats(lo + 0.01, lo + 50.0).filter(
                                              lambda f: f != int(f)), lo + 1.5),
           K("nan", NAN), K("bool True", True), K("bool False", False), K("string", "3"),
           K("list", [lo + 1]), K("object", object())]
    if not none:
        out.append(K("None", None))
    return out


def reals(*, none=False, bool_ok=False):
    """Corruptions of a finite non-negative real argument."""
    out = [H("negative", st.floats(-1e6, -1e-9), -1.0), K("nan", NAN), K("inf", INF),
           K("string", "abc"), K("list", [1.0, 2.0]), K("dict", {}), K("object", object())]
    if not none:
        out.append(K("None", None))
    if not bool_ok:
        out.append(K("bool", True))
    return out


def flags(*, none=False):
    """Corruptions of a True/False argument."""
    out = [K("string", "yes"), K("empty string", ""), K("int 2", 2), K("list", [True]),
           K("float", 1.0)]
    if not none:
        out.append(K("None", None))
    return out


def callables(*, none=True):
    """Corruptions of a callable argument (None allowed if ``none``)."""
    out = [K("string", "print"), K("int", 3), K("list", []), K("dict", {}),
           K("object", object())]
    if not none:
        out.append(K("None", None))
    return out


PROGRESS = [K("string", "yes"), K("int 1", 1), K("int 0", 0), K("None", None),
            K("list", []), K("float", 0.5)]


def methods(*not_offered):
    """Corruptions of ``method``: unknown names, non-strings, names not offered here."""
    known = {m.lower() for m in cp.METHODS}
    return ([H("unknown name", st.text("abcdefgh-", min_size=1, max_size=8).filter(
                lambda s: s.lower() not in known), "nope"),
             K("empty string", ""), K("int", 3), K("list", ["L-BFGS-B"]), K("dict", {}),
             K("bytes", b"L-BFGS-B"), K("object", object()), K("bool", True)]
            + [K(f"not offered: {m}", m) for m in not_offered])


def maxiters(least=0):
    """Corruptions of ``maxiter``."""
    return [H("below minimum", st.integers(-10 ** 6, least - 1), least - 1),
            K("float", 2.5), K("integral float", 3.0), K("nan", NAN), K("string", "3"),
            K("bool", True), K("list", [3]), K("dict", {})]


OPTIONS = ([K("list", [1]), K("string", "abc"), K("int", 3), K("tuple of pairs", (("a", 1),)),
            K("unknown option", {"bogus_option": 1})]
           + [K(f"{k} inside options", {k: 3}) for k in LIMIT_KEYS])


def solver_args(least_maxiter):
    """The arguments every solver entry point shares (the README's convention table), with
    their corruptions: maxiter, options, callback, progress."""
    return {"maxiter": maxiters(least_maxiter), "options": OPTIONS, "callback": callables(),
            "progress": PROGRESS}

SEEDS = [H("negative", st.integers(-10 ** 6, -1), -1), K("string", "abc"), K("float", 1.5),
         K("dict", {}), K("object", object()), K("list of floats", [1.5])]


def bounds(m, shape=None):
    """Every wrong form of bounds for m variables (values of ``shape``, default (m,))."""
    shape = (m,) if shape is None else shape
    z = lambda *s: np.zeros(s)                      # noqa: E731
    reversed_pair = st.tuples(st.floats(-10, 10), st.floats(-10, 10)).filter(
        lambda p: p[0] > p[1])
    out = [K("reversed pair", (1.0, -1.0)), H("random reversed pair", reversed_pair, (2.0, 1.0)),
           K("NaN lo", (NAN, 1.0)), K("NaN hi", (-1.0, NAN)), K("lo = +inf", (INF, INF)),
           K("hi = -inf", (-INF, -INF)),
           K("pair of arrays (m + 1)", (z(m + 1), z(m + 1) + 1)),
           K("string", "(-1, 1)"), K("int", 3), K("float", 1.0), K("object", object()),
           K("bool", True), K("one scalar in a tuple", (1.0,)), K("empty list", []),
           K("three numbers", (-1.0, 0.0, 1.0)),
           K("pair of a pair and a scalar", ((None, None), 3.0)),
           K("nested pairs", [((0.0, 1.0), (2.0, 3.0))] * m), K("list of a list of pairs",
                                                                [[(-1.0, 1.0)]] * m),
           K("triples", [(-1.0, 0.0, 1.0)] * m), K("string ends", [("a", 1.0)] * m),
           K("dict ends", [({}, 1.0)] * m), K("bool ends", [(False, True)] * m),
           K("reversed pairs", [(1.0, -1.0)] * m), K("NaN pairs", [(NAN, 1.0)] * m),
           K("too many pairs", [(-1.0, 1.0)] * (m + 1)),
           K("strings as pairs", ["ab"] * m),
           K("Bounds lb too long", Bounds(z(m + 1), z(m + 1) + 1)),
           K("Bounds of too many axes", Bounds(z(2, 2, 2, m), 1.0)),
           K("Bounds reversed", Bounds(1.0, -1.0)), K("Bounds NaN", Bounds(NAN, 1.0)),
           K("Bounds of strings", Bounds("a", 1.0)), K("Bounds of dicts", Bounds({}, 1.0)),
           K("dict with a string key", {"a": (0.0, 1.0)}),
           K("dict key out of range", {m: (0.0, 1.0)}),
           K("dict with a negative key", {-1: (0.0, 1.0)}),
           K("dict with a float key", {0.5: (0.0, 1.0)}),
           K("dict with a bool key", {True: (0.0, 1.0)}),
           K("dict with a non-pair value", {0: "ab"}),
           K("dict with a reversed pair", {0: (1.0, -1.0)}),
           K("dict with NaN", {0: (NAN, 1.0)}), K("dict with a scalar value", {0: 1.0})]
    if m != 2:
        out.append(K("pair of arrays (m)", (z(m), z(m) + 1)))
    if m > 1:
        out.append(K("too few pairs", [(-1.0, 1.0)] * (m - 1)))
    if len(shape) == 2:
        out.append(K("Bounds with wrong leading axis",
                     Bounds(z(shape[0] + 1, m), z(shape[0] + 1, m) + 1)))
    return out


def weights_of_cost(n):
    """Corruptions of a quadratic weight (Q, R, ...) of dimension n, checked when bound."""
    eye = np.eye(n)
    return [H("negative", st.floats(-1e6, -1e-6), -1.0), K("nan", NAN), K("inf", INF),
            K("string", "abc"), K("bool", True), K("dict", {}), K("object", object()),
            K("3-D", np.ones((n, n, n))), K("non-square", np.ones((n, n + 1))),
            K("negative entry", -np.ones(n)), K("NaN entry", np.full(n, NAN)),
            K("non-symmetric", eye + np.triu(np.ones((n, n)), 1) if n > 1 else [[1.0, 2.0],
                                                                                 [0.0, 1.0]]),
            K("not PSD", -eye if n > 1 else [[1.0, 0.0], [0.0, -1.0]]),
            K("ragged", [[1.0], [1.0, 2.0]])]


def weights_of_dim(n):
    """Corruptions of a weight whose dimension is known (n): wrong lengths too."""
    return weights_of_cost(n) + [K("vector too long", np.ones(n + 1)),
                                 K("matrix too big", np.eye(n + 1))]


# ================================================================ baseline objects
RNG = np.random.default_rng(0)
X8 = RNG.standard_normal((8, 3))
Y8 = np.stack([X8[:, 0] * X8[:, 1], np.sin(X8[:, 2])], axis=1)


def mlp(sizes=(3, 4, 2), **kw):
    return cp.Network.mlp(list(sizes), seed=0, **kw)


def model(n_exo=0):
    """x (2), u (1)[, e (1)] -> x_next (2)."""
    return cp.Dynamics(mlp((3 + n_exo, 6, 2)), 2, n_exo=n_exo)


def controller(sizes=(2, 4, 1)):
    return mlp(sizes, output="tanh")


X0 = np.array([0.5, -0.2])
_names = itertools.count()
_TMP = tempfile.mkdtemp(prefix="ctrlprop-bad-input-")
atexit.register(shutil.rmtree, _TMP, True)


def tmpfile(suffix=".npz"):
    return os.path.join(_TMP, f"f{next(_names)}{suffix}")


# ---------------------------------------------------------------- model files
def saved_arrays():
    """The arrays of a valid model file, as a dict (keys of the format)."""
    net = mlp()
    net.set_scaling(np.zeros(3), np.ones(3), np.zeros(2), np.ones(2))
    path = tmpfile()
    net.save(path)
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


VALID_FILE = tmpfile()
mlp().save(VALID_FILE)


def file_with(**changes):
    """A model file with some arrays replaced (None: removed)."""
    def make(kw):
        d = saved_arrays()
        for k, v in changes.items():
            if v is None:
                d.pop(k)
            else:
                d[k] = v
        path = tmpfile()
        with open(path, "wb") as f:
            np.savez(f, **d)
        return path
    return make


def raw_file(data):
    def make(kw):
        path = tmpfile()
        with open(path, "wb") as f:
            f.write(data(kw) if callable(data) else data)
        return path
    return make


def truncated(kw, n):
    with open(VALID_FILE, "rb") as f:
        data = f.read()
    path = tmpfile()
    with open(path, "wb") as f:
        f.write(data[:n % len(data)])
    return path


def pickled_file(kw):
    path = tmpfile()
    with open(path, "wb") as f:
        d = saved_arrays()
        d["weights"] = np.array([object()] * 3, dtype=object)
        np.savez(f, **d)
    return path


LOAD_CORRUPTIONS = [
    F("empty file", raw_file(b"")), F("text file", raw_file(b"weights = 1, 2, 3\n")),
    F("random bytes", raw_file(bytes(range(256)) * 4)),
    H("truncated", st.integers(0, 10 ** 6), 100, truncated),
    F("a directory", lambda kw: tempfile.mkdtemp(dir=_TMP)),
    F("object array (pickle)", pickled_file),
    F("not a network", file_with(format=np.array("something.else"))),
    F("no format", file_with(format=None)), F("version 2", file_with(format_version=np.array(2))),
    F("version string", file_with(format_version=np.array("one"))),
    F("weights NaN", file_with(weights=np.full(26, NAN))),
    F("weights too short", file_with(weights=np.zeros(3))),
    F("weights 2-D", file_with(weights=np.zeros((2, 13)))),
    F("edges with 3 columns", file_with(edges=np.zeros((4, 3), np.int64))),
    F("edges of floats", file_with(edges=np.array([[0.5, 3.0]]))),
    F("edges out of range", file_with(edges=np.array([[0, 99]]))),
    F("edges empty", file_with(edges=np.zeros((0, 2), np.int64))),
    F("edges 0-d", file_with(edges=np.array(3))),
    F("transfers unknown", file_with(transfers=np.array(["nope"] * 6))),
    F("transfers of ints", file_with(transfers=np.arange(6))),
    F("transfers 0-d", file_with(transfers=np.array("tanh"))),
    F("transfers too few", file_with(transfers=np.array(["tanh"] * 2))),
    F("n_inputs string", file_with(n_inputs=np.array("three"))),
    F("n_inputs non-integral", file_with(n_inputs=np.array(3.5))),
    F("n_inputs 2-D", file_with(n_inputs=np.array([[3, 3]]))),
    F("n_inputs negative", file_with(n_inputs=np.array(-3))),
    F("outputs 2-D", file_with(outputs=np.array([[7, 8]]))),
    F("outputs out of range", file_with(outputs=np.array([99]))),
    F("outputs empty", file_with(outputs=np.zeros(0, np.int64))),
    F("outputs 0-d", file_with(outputs=np.array(7))),
    F("bias with 3 entries", file_with(bias=np.array([True, False, True]))),
    F("x_mean of the wrong shape", file_with(x_mean=np.zeros(5))),
    F("x_scale zero", file_with(x_scale=np.zeros(3))),
    F("y_mean NaN", file_with(y_mean=np.full(2, NAN))),
    K("None", None), K("float", 3.5), K("list", ["model.npz"]),
] + [F(f"missing {k}", file_with(**{k: None}))
     for k in ("n_inputs", "edges", "transfers", "outputs", "bias", "weights")]


# ================================================================ entry points
class Entry:
    """One entry point: baseline arguments, the call, corruptions and name aliases."""

    def __init__(self, name, base, call, args, aliases=None, max_examples=80):
        self.name, self.base, self.call, self.args = name, base, call, args
        self.aliases = aliases or {}
        self.max_examples = max_examples

    def names(self, arg, kw):
        a = self.aliases.get(arg, ())
        return (arg,) + tuple(a(kw) if callable(a) else a)

    def items(self):
        """Every (arg, Bad) pair."""
        return [(arg, b) for arg, bads in self.args.items() for b in bads]


COST_ALIASES = ("goal", "goals", "Q", "Qf", "R", "S")


def cost_bad(T=3, n=2, long_goal_ok=False):
    """Corruptions of a cost argument (a TrajectoryCost, a dict of its arguments or None);
    ``long_goal_ok``: a goal trajectory longer than the horizon is valid (mpc)."""
    out = [K("string", "abc"), K("int", 3), K("list", [1.0, 2.0]), K("object", object()),
            K("dict with an unknown key", {"bogus": 1.0}),
            K("dict with a negative Q", {"Q": -1.0}),
            K("dict with a string R", {"R": "abc"}),
            F("goal of the wrong length", lambda kw: cp.TrajectoryCost(goal=np.zeros(n + 1))),
            F("goal batch of the wrong size",
              lambda kw: cp.TrajectoryCost(goal=np.zeros((7, 1, n)))),
            F("Q of the wrong dimension", lambda kw: cp.TrajectoryCost(Q=np.ones(n + 1))),
            F("R of the wrong dimension", lambda kw: cp.TrajectoryCost(R=np.eye(3)))]
    if not long_goal_ok:
        out.append(F("goal trajectory of the wrong length",
                     lambda kw: cp.TrajectoryCost(goal=np.zeros((T + 5, n)))))
    return out


def dynamics_bad():
    return [K("None", None), K("string", "model"), K("object", object()),
            F("a Network", lambda kw: mlp((3, 6, 2))), K("dict", {})]


def network_bad():
    return [K("None", None), K("string", "net"), K("object", object()), K("dict", {}),
            F("a Dynamics", lambda kw: model())]


def fit_base():
    return dict(net=mlp(), X=X8.copy(), Y=Y8.copy(), maxiter=2)


DTYPES = [K("int", np.int64), K("float16", np.float16), K("string", "double precision"),
          K("None", None), K("bool", True), K("complex", np.complex128), K("object", object())]

FIT_ARGS = {
    "dtype": DTYPES,
    "net": network_bad(),
    "X": arrays("X", 2) + [F("one row fewer", lambda kw: kw["X"][:-1])],
    "Y": arrays("Y", 2) + [F("one row fewer", lambda kw: kw["Y"][:-1])],
    "l2": reals(),
    "sample_weight": [K("wrong length", np.ones(3)), K("2-D", np.ones((8, 1))),
                      K("NaN entry", np.r_[NAN, np.ones(7)]),
                      K("negative entry", np.r_[-1.0, np.ones(7)]), K("all zero", np.zeros(8)),
                      K("string", "abc"), K("dict", {}), K("object", object()),
                      K("scalar", 1.0)],
    "trainable": [K("an input unit", [0]), K("unit out of range", [99]), K("empty list", []),
                  K("negative unit", [-1]), K("float unit", [3.5]), K("string", "abc"),
                  K("int", 3), K("object", object()),
                  F("mask of the wrong length", lambda kw: np.ones(5, bool)),
                  F("mask selecting nothing", lambda kw: np.zeros(kw["net"].n_weights, bool)),
                  K("bool unit", [True])],
}


def fit_args():
    return dict(FIT_ARGS, **{
        "method": methods("trust-exact", "dogleg", "batch-lm", "batch-lbfgs"),
        "validation": [K("fraction above 1", 1.5), K("fraction 0", 0.0), K("negative", -0.1),
                       K("tiny fraction", 0.01), K("string", "20%"), K("bool", True),
                       K("int 3", 3), K("dict", {}), K("1-tuple", (X8,)),
                       K("4-tuple", (X8, Y8, None, None)),
                       K("rows differ", (X8[:5], Y8[:4])), K("NaN targets", (X8[:5], Y8[:5] * NAN)),
                       K("wrong width", (X8[:5, :2], Y8[:5]))],
        "patience": ints(1, none=True),
        "maxiter": maxiters(0),
        "options": OPTIONS + [K("bad jacobian option", {"jacobian": "sparse"})],
        "scale": flags(),
        "threads": ints(1, none=True) + [K("string words", "many")],
        "callback": callables(),
        "progress": PROGRESS,
        "seed": SEEDS,
    })


def ctl_base():
    return dict(net=mlp(), target=np.array([0.2, -0.1]), inputs=np.array([0.1]),
                control=[1, 2])


CTL_ARGS = {
    "net": network_bad(),
    "target": arrays("target", 2),
    "inputs": [K("wrong length 2", np.zeros(2)), K("wrong length 4", np.zeros(4)),
               K("3-D", np.zeros((1, 1, 1))), K("NaN", np.array([NAN])),
               K("inf", np.array([INF])), K("string", "abc"), K("dict", {}),
               K("object", object()), K("empty rows", np.zeros((0, 1))),
               K("ragged", [[1.0], [1.0, 2.0]])],
    "control": [K("out of range", [1, 3]), K("negative", [-1, 2]), K("empty", []),
                K("float", [0.5, 1.0]), K("repeated", [1, 1]), K("string", "ab"),
                K("bool", [True, False]), K("2-D", [[1, 2]]), K("float scalar", 1.5),
                K("dict", {"a": 1}), K("object", object()),
                H("random out of range", st.integers(3, 10 ** 6), 3, lambda kw, x: [1, x])],
    "Q": weights_of_dim(2),
    "R": weights_of_dim(2),
    "u_rest": [
        K("wrong length", np.zeros(3)), K("3-D", np.zeros((1, 1, 2))),
        K("too many rows", np.zeros((2, 2))), K("NaN", np.array([NAN, 0.0])),
        K("string", "abc"), K("dict", {}), K("object", object()), K("empty", np.zeros(0))],
    "output_bounds": bounds(2),
    "penalty": reals(),
    "hessian": [K("unknown", "newton"), K("None", None), K("int", 3), K("list", ["exact"]),
                K("object", object())],
}


def ctl_solve_base():
    return dict(ctl_base(), bounds=[(-1.0, 1.0), (-1.0, 1.0)], u0=np.zeros(2), maxiter=3)


def ctl_solve_args():
    return dict(CTL_ARGS, **{
        "u0": [K("wrong length", np.zeros(3)), K("3-D", np.zeros((1, 1, 2))),
               K("too many rows", np.zeros((2, 2))), K("NaN", np.array([NAN, 0.0])),
               K("inf", np.array([0.0, INF])), K("string", "abc"), K("dict", {}),
               K("object", object()), K("empty", np.zeros(0)),
               H("outside the bounds", st.floats(1.0001, 1e6), 2.0,
                 lambda kw, x: np.array([x, 0.0]))],
        "bounds": bounds(2) + [K("Bounds for 3 problems", Bounds(np.zeros((3, 2)), 1.0))],
        "method": methods("adam", "batch-lbfgs") + [K("BFGS with bounds", "BFGS")],
        **solver_args(0),
        "restarts": ints(0),
        "seed": SEEDS,
        "init_scale": reals(none=True),
        "screen": ints(0),
    })


def traj_base(n_exo=0):
    kw = dict(model=model(n_exo), x0=X0.copy(), horizon=3, cost=dict(Q=1.0, R=0.1))
    if n_exo:
        kw["exo"] = np.zeros(n_exo)
    return kw


def traj_args():
    return {
        "model": dynamics_bad(),
        "x0": arrays("x0", 2),
        "horizon": ints(1),
        "cost": cost_bad(),
        "exo": [K("given without exogenous inputs", np.zeros(1)), K("string", "abc")],
    }


EXO_ARGS = {"exo": [K("wrong length", np.zeros(2)), K("too short a sequence", np.zeros((2, 1))),
                    K("too long a sequence", np.zeros((4, 1))),
                    K("batch of the wrong size", np.zeros((2, 3, 1))),
                    K("4-D", np.zeros((1, 1, 3, 1))), K("NaN", np.array([NAN])),
                    K("inf", np.array([INF])), K("string", "abc"), K("dict", {}),
                    K("object", object()), K("None (needed)", None), K("scalar", 0.0)]}


def traj_obj(kw):
    return cp.TrajectoryObjective(kw.pop("model"), kw.pop("x0"), kw.pop("horizon"),
                                  kw.pop("cost"))


def opt_traj_base():
    return dict(traj_base(), bounds=(-2.0, 2.0), maxiter=3)


def opt_traj_args():
    return dict(traj_args(), **{
        "u0": [K("last axis longer", np.zeros((3, 2))), K("wrong horizon", np.zeros((4, 1))),
               K("1-D", np.zeros(3)), K("4-D", np.zeros((1, 1, 3, 1))), K("scalar", 0.0),
               K("NaN", np.full((3, 1), NAN)), K("inf", np.full((3, 1), INF)),
               K("string", "abc"), K("dict", {}), K("object", object()),
               K("batch for one initial state", np.zeros((2, 3, 1))),
               K("empty", np.zeros((0, 1))),
               H("outside the bounds", st.floats(2.0001, 1e6), 3.0,
                 lambda kw, x: np.full((3, 1), x))],
        "bounds": bounds(1, (3, 1)),
        "method": methods("adam", "batch-lm", "trust-exact", "dogleg")
        + [K("BFGS with bounds", "BFGS"), K("lm with bounds", "lm")],
        **solver_args(0),
        "restarts": ints(0),
        "seed": SEEDS,
        "init_scale": reals(none=True),
        "independent": flags(),
        "constraints": [K("string", "x >= 0"), K("dict", {}), K("empty list", []),
                        K("wrong size", cp.StateBounds([0.0] * 3, [1.0] * 3)),
                        K("a callable", lambda X, U: X)],
        "constraint_options": [K("without constraints", {"tol": 1e-3})],
    })


def mpc_base(n_exo=0):
    m = model(n_exo)
    e = np.zeros(n_exo)
    kw = dict(model=m, plant=(lambda x, u: m.step(x, u, e if n_exo else None)),
              x0=X0.copy(), steps=2, horizon=3, cost=dict(Q=1.0, R=0.1), bounds=(-2.0, 2.0),
              maxiter=2)
    if n_exo:
        kw["exo"] = e
    return kw


def mpc_args():
    return {
        "model": dynamics_bad(),
        "plant": callables(none=False),
        "x0": arrays("x0", 1, empty=False) + [K("a batch", np.zeros((2, 2))),
                                              K("empty", np.zeros(0))],
        "steps": ints(1),
        "horizon": ints(1),
        "cost": cost_bad(long_goal_ok=True) + [K("goal reference too short",
                                                 {"goal": np.zeros((2, 2))})],
        "u0": [K("last axis longer", np.zeros((3, 2))), K("wrong horizon", np.zeros((4, 1))),
               K("1-D", np.zeros(3)), K("NaN", np.full((3, 1), NAN)), K("string", "abc"),
               K("dict", {}), K("batch", np.zeros((2, 3, 1))), K("outside the bounds",
                                                                  np.full((3, 1), 3.0))],
        "bounds": bounds(1, (3, 1)) + [K("changing over the horizon",
                                         Bounds(np.array([[-2.0], [-1.0], [-2.0]]), 2.0))],
        "method": methods("adam", "batch-lm", "batch-lbfgs", "trust-exact")
        + [K("BFGS with bounds", "BFGS")],
        **solver_args(1),
        "exo": [K("given without exogenous inputs", np.zeros(1)), K("string", "abc"),
                K("sequence without exogenous inputs", np.zeros((4, 1)))],
        "replan_every": ints(1) + [K("above the horizon", 4)],
    }


MPC_EXO_ARGS = {"exo": [K("wrong length", np.zeros(2)), K("too short a sequence", np.zeros((3, 1))),
                        K("3-D", np.zeros((1, 3, 1))), K("4-D", np.zeros((1, 1, 4, 1))),
                        K("NaN", np.array([NAN])), K("NaN in the sequence",
                                                     np.r_[np.zeros(3), NAN][:, None]),
                        K("string", "abc"), K("dict", {}), K("None (needed)", None),
                        K("scalar", 0.0)]}


def ctrl_base():
    return dict(model=model(), controller=controller(), x0=np.array([[0.5, -0.2], [0.1, 0.3]]),
                horizon=3, cost=dict(Q=1.0, R=0.1))


def ctrl_args():
    return {
        "model": dynamics_bad(),
        "controller": [K("None", None), K("string", "c"), K("object", object()),
                       F("too many outputs", lambda kw: controller((2, 4, 2))),
                       F("wrong inputs", lambda kw: controller((3, 4, 1))),
                       F("a Dynamics", lambda kw: model())],
        "x0": arrays("x0", 2),
        "horizon": ints(1),
        "cost": cost_bad(),
        "goal": [K("wrong length", np.zeros(3)), K("batch of the wrong size", np.zeros((3, 2))),
                 K("3-D", np.zeros((2, 1, 2))), K("NaN", np.array([NAN, 0.0])),
                 K("string", "abc"), K("dict", {}), K("object", object()),
                 K("empty", np.zeros(0))],
        "exo": [K("given without exogenous inputs", np.zeros(1)), K("string", "abc")],
        "l2": reals(),
    }


def train_ctrl_base():
    return dict(ctrl_base(), maxiter=2)


def train_ctrl_args():
    return dict(ctrl_args(), **{
        "method": methods("Newton-CG", "trust-krylov", "lm", "adam", "batch-lbfgs"),
        **solver_args(0),
    })


def closed_base(plant=False):
    m = model()
    return dict(controller=controller(), system=(lambda x, u: m.step(x, u)) if plant else m,
                x0=X0.copy(), steps=3)


def closed_args(plant=False):
    out = {
        "controller": [K("None", None), K("string", "c"), K("object", object()),
                       F("wrong inputs", lambda kw: controller((3, 4, 1))),
                       F("a Dynamics", lambda kw: model())]
        # a plant callable cannot tell the controller's outputs are wrong: the plant does
        + ([] if plant else [F("too many outputs", lambda kw: controller((2, 4, 2)))]),
        "system": callables(none=False),
        "x0": arrays("x0", 2),
        "steps": ints(1),
        "goal": [K("for a controller that reads no goal", np.zeros(2)), K("string", "abc"),
                 K("object", object())],
        "exo": [K("given without exogenous inputs", np.zeros(1)), K("string", "abc")],
    }
    return out


class TinyEnv:
    """A two-state environment with the gymnasium interface (x' = 0.9 x + 0.1 u)."""

    def __init__(self):
        self.action_space = cp.Box([-1.0], [1.0])
        self.observation_space = cp.Box([-np.inf] * 2, [np.inf] * 2)

    def reset(self, seed=None, options=None):
        self.x, self.t = np.random.default_rng(seed).uniform(-1, 1, 2), 0
        return self.x.copy(), {}

    def step(self, a):
        self.x = 0.9 * self.x + 0.1 * np.asarray(a, float)[0]
        self.t += 1
        return self.x.copy(), -float(self.x @ self.x), False, self.t >= 5, {}


def env_data(n=12):
    return cp.collect(TinyEnv(), n, seed=0)


ENV_ARG = callables(none=False) + [K("a plant callable", lambda x, u: x)]
POLICY = [K("string", "random"), K("int", 3), K("dict", {}), K("object", object()),
          F("controller with wrong inputs", lambda kw: controller((3, 4, 1)))]


def env_entries():
    """collect, evaluate, fit_dynamics, learn_and_plan, Planner, mpc and closed_loop on an
    environment, Transitions, Box."""
    d = env_data()
    tr = dict(obs=d.obs, actions=d.actions, next_obs=d.next_obs, rewards=d.rewards,
              terminated=d.terminated, truncated=d.truncated, episode=d.episode)
    flags_bad = [K("floats", np.zeros(12)), K("wrong length", np.zeros(11, bool)),
                 K("string", "abc"), K("None", None)]
    rows = lambda name, width: [K("wrong width", np.zeros((12, width + 1))),   # noqa: E731
                                K("wrong rows", np.zeros((11, width))), K("1-D", np.zeros(12)),
                                K("NaN", np.full((12, width), NAN)), K("string", "abc"),
                                K("None", None)]
    return [
        Entry("collect", lambda: dict(env=TinyEnv(), steps=6, seed=0),
              lambda kw: cp.collect(**kw),
              {"env": ENV_ARG, "steps": ints(1), "policy": POLICY, "seed": SEEDS + [K("None", None)],
               "episode_steps": ints(1, none=True), "progress": PROGRESS}, max_examples=40),
        Entry("evaluate", lambda: dict(env=TinyEnv(), policy=None, episodes=1, seed=0),
              lambda kw: cp.evaluate(**kw),
              {"env": ENV_ARG, "policy": POLICY, "episodes": ints(1), "seed": SEEDS,
               "episode_steps": ints(1, none=True), "progress": PROGRESS}, max_examples=40),
        Entry("fit_dynamics", lambda: dict(data=env_data(), hidden=(3,), maxiter=2),
              lambda kw: cp.fit_dynamics(**kw),
              {"data": [K("array", np.zeros((12, 3))), K("None", None), K("dict", {}),
                        F("one row", lambda kw: kw["data"][:1])],
               "hidden": [K("zero", (0,)), K("string", "abc"), K("float", (2.5,)),
                          K("None", None)],
               "model": [K("string", "m"), K("a Network", mlp((3, 2))),
                         F("wrong sizes", lambda kw: cp.Dynamics(mlp((4, 3)), 3))],
               "validation": reals() + [K("one", 1.0)], "horizon": ints(1),
               "residual": flags(), "transfer": [K("unknown", "nope"), K("int", 3)],
               "maxiter": maxiters(0), "seed": SEEDS}, max_examples=30),
        Entry("learn_and_plan",
              lambda: dict(env=TinyEnv(), cost=dict(Q=1.0, R=0.1), iterations=0,
                           steps_per_iteration=5, horizon=2, warmup=10, eval_episodes=1,
                           fit=dict(hidden=(3,), maxiter=2), plan=dict(maxiter=2)),
              lambda kw: cp.learn_and_plan(**kw),
              {"env": ENV_ARG, "cost": [K("string", "abc"), K("wrong Q", {"Q": np.ones(3)})],
               "iterations": ints(0), "steps_per_iteration": ints(1), "horizon": ints(1),
               "warmup": ints(1, none=True), "eval_episodes": ints(0),
               "episode_steps": ints(1, none=True), "seed": SEEDS + [K("None", None)],
               "data": [K("array", np.zeros((3, 3))), F("wrong sizes",
                                                        lambda kw: cp.Transitions.empty(3, 1))],
               "fit": [K("sets the data", {"data": None}), K("unknown", {"bogus": 1})],
               "plan": [K("sets the horizon", {"horizon": 3}), K("unknown", {"bogus": 1}),
                        K("bad method", {"method": "nope"})],
               "callback": callables(), "progress": PROGRESS},
              aliases={"cost": COST_ALIASES, "fit": ("bogus",), "plan": ("bogus", "method")},
              max_examples=30),
        Entry("Planner", lambda: dict(model=model(), horizon=3, cost=dict(Q=1.0, R=0.1),
                                      bounds=(-2.0, 2.0), maxiter=2),
              lambda kw: cp.Planner(**kw)(X0.copy()),        # built, then one plan
              {"model": dynamics_bad(), "horizon": ints(1), "cost": cost_bad(long_goal_ok=True),
               "bounds": bounds(1, (3, 1)), "maxiter": maxiters(1), "options": OPTIONS,
               "method": methods("adam", "batch-lm", "batch-lbfgs"),
               "replan_every": ints(1) + [K("above the horizon", 4)],
               "dtype": [d for d in DTYPES if d.label != "None"]},     # None: the model's
              aliases={"cost": COST_ALIASES, "options": ("option",)}),
        Entry("mpc[env]", lambda: dict(model=model(), plant=TinyEnv(), x0=None, steps=3,
                                       horizon=2, maxiter=2, seed=0),
              lambda kw: cp.mpc(**kw),
              {"x0": [K("a state", X0.copy())], "seed": SEEDS,
               "model": [F("wrong sizes", lambda kw: cp.Dynamics(mlp((4, 6, 3)), 3))]},
              max_examples=20),
        Entry("closed_loop[env]", lambda: dict(controller=controller(), system=TinyEnv(),
                                               x0=None, steps=3, seed=0),
              lambda kw: cp.closed_loop(**kw),
              {"x0": [K("a state", X0.copy())], "seed": SEEDS,
               "exo": [K("for an environment", np.zeros(1))],
               "controller": [F("wrong outputs", lambda kw: controller((2, 4, 2)))]},
              max_examples=20),
        Entry("Transitions", lambda: dict(tr),
              lambda kw: cp.Transitions(**kw),
              {"obs": rows("obs", 2), "actions": rows("actions", 1)[1:],    # any width is valid
               "next_obs": rows("next_obs", 2),
               "rewards": [K("wrong length", np.zeros(11)), K("NaN", np.full(12, NAN)),
                           K("string", "abc"), K("2-D", np.zeros((12, 1)))],
               "terminated": flags_bad, "truncated": flags_bad,
               "episode": [K("decreasing", np.arange(12)[::-1]), K("floats", np.zeros(12)),
                           K("negative", -np.ones(12, int)), K("wrong length", np.zeros(3, int))]},
              aliases={"obs": ("next_obs",), "next_obs": ("obs",), "actions": ("obs",)}),
        Entry("Box", lambda: dict(low=[-1.0], high=[1.0]), lambda kw: cp.Box(**kw),
              {"low": [K("above high", [2.0]), K("NaN", [NAN]), K("string", "abc"),
                       K("wrong length", [0.0, 0.0]), K("empty", [])],
               "high": [K("below low", [-2.0]), K("NaN", [NAN]), K("string", "abc")]},
              aliases={"low": ("high",), "high": ("low",)}),
        Entry("Plant.env", lambda: dict(plant=cp.Pendulum(), max_steps=5),
              lambda kw: kw.pop("plant").env(**kw),
              {"max_steps": ints(1), "reward": callables(), "terminated": callables()}),
    ]


# ---------------------------------------------------------------- out of core (issue 13)
def on_disk(A):
    """A read-only np.memmap holding A (an out-of-core array)."""
    path = tmpfile(".bin")
    A = np.asarray(A)
    m = np.memmap(path, dtype=A.dtype, mode="w+", shape=A.shape)
    m[:] = A
    m.flush()
    return np.memmap(path, dtype=A.dtype, mode="r", shape=A.shape)


def store_of(data, shard_rows=5):
    """A new npz TransitionStore's path holding data."""
    path = tmpfile("")
    with cp.TransitionWriter(path, data.n_obs, data.n_act, shard_rows=shard_rows) as w:
        w.append(data)
    return path


def spoiled_store(change):
    """A store (12 rows in shards of 5) whose files are changed by ``change(path)``."""
    def make(kw):
        path = store_of(env_data())
        change(path)
        return path
    return make


def _shard_file(path, i=0):
    return next(os.path.join(path, f) for f in sorted(os.listdir(path))
                if f.startswith(f"shard-{i:06d}-"))


def _write(name, text):
    def change(path):
        with open(os.path.join(path, name) if not os.path.isabs(name) else name, "w") as f:
            f.write(text)
    return change


def _replace_shard(**cols):
    def change(path):
        f = _shard_file(path)
        with np.load(f) as z:
            d = {k: z[k] for k in z.files}
        d.update(cols)
        with open(f, "wb") as out:
            np.savez(out, **d)
    return change


def _rename_first_shard(path):
    f = _shard_file(path)
    os.rename(f, f.replace("-5.npz", "-4.npz"))


STORE_PATHS = [
    K("int", 3), K("None", None), K("list", ["a"]), F("a file", raw_file(b"abc")),
    F("an empty directory", lambda kw: tempfile.mkdtemp(dir=_TMP)),
    F("manifest of garbage", spoiled_store(_write("ctrlprop-transitions.json", "{oops"))),
    F("manifest of another kind", spoiled_store(_write("ctrlprop-transitions.json",
                                                       '{"format": "x"}'))),
    F("a shard missing", spoiled_store(lambda p: os.remove(_shard_file(p, 1)))),
    F("a shard of random bytes", spoiled_store(lambda p: open(_shard_file(p), "wb").write(
        bytes(range(256))))),
    F("a shard's name miscounts its rows", spoiled_store(_rename_first_shard)),
    F("NaN observations in a shard", spoiled_store(_replace_shard(obs=np.full((5, 2), NAN)))),
    F("decreasing episodes in a shard", spoiled_store(_replace_shard(
        episode=np.arange(5)[::-1].copy()))),
]


def writer_call(kw):
    cp.TransitionWriter(**kw).close()


def writer_add(kw):
    with cp.TransitionWriter(tmpfile(""), 2, 1) as w:
        w.add(**kw)


def oc_fit_base():
    return dict(net=mlp(), X=on_disk(X8), Y=on_disk(Y8), method="adam", maxiter=2,
                options=dict(block_size=2))


def oc_arrays(arg, width):
    return [F("wrong width", lambda kw: on_disk(np.zeros((8, width + 1)))),
            F("one row fewer", lambda kw: on_disk(np.zeros((7, width)))),
            F("3-D", lambda kw: on_disk(np.zeros((8, width, 1)))),
            F("strings", lambda kw: on_disk(np.array([["a"] * width] * 8))),
            F("complex", lambda kw: on_disk(np.zeros((8, width), complex))),
            F("NaN in the last block", lambda kw: on_disk(np.r_[np.zeros((7, width)),
                                                               np.full((1, width), NAN)])),
            F("inf in the first row", lambda kw: on_disk(np.r_[np.full((1, width), INF),
                                                              np.zeros((7, width))]))]


def out_of_core_entries():
    """fit on out-of-core arrays (np.memmap), StreamedObjective, TransitionWriter (and its
    add / append), TransitionStore, fit_dynamics on a store."""
    return [
        Entry("fit[out of core]", oc_fit_base, lambda kw: cp.fit(**kw),
              {"X": oc_arrays("X", 3), "Y": oc_arrays("Y", 2),
               "sample_weight": [F("wrong length", lambda kw: on_disk(np.ones(3))),
                                 F("2-D", lambda kw: on_disk(np.ones((8, 1)))),
                                 F("NaN entry", lambda kw: on_disk(np.r_[np.ones(7), NAN])),
                                 F("negative entry", lambda kw: on_disk(np.r_[np.ones(7), -1])),
                                 F("all zero", lambda kw: on_disk(np.zeros(8)))],
               "method": [K("full batch", "L-BFGS-B"), K("least squares", "trf"),
                          K("unknown", "nope")],
               "validation": [K("more blocks than there are", 0.9), K("tiny fraction", 0.01),
                              F("rows differ", lambda kw: (on_disk(X8[:5]), on_disk(Y8[:4]))),
                              F("NaN targets", lambda kw: (on_disk(X8[:5]),
                                                           on_disk(Y8[:5] * NAN))),
                              F("wrong width", lambda kw: (on_disk(X8[:5, :2]),
                                                           on_disk(Y8[:5])))],
               "options": [K("block_size 0", dict(block_size=0)),
                           K("block_size float", dict(block_size=2.5)),
                           K("block_size string", dict(block_size="2")),
                           K("block_size bool", dict(block_size=True))]},
              aliases={"options": ("option",), "validation": ("X_val", "Y_val"),
                       "sample_weight": ("sample_weight",)}, max_examples=40),
        Entry("StreamedObjective", lambda: dict(net=mlp(), X=on_disk(X8), Y=on_disk(Y8),
                                                block_size=3),
              lambda kw: cp.StreamedObjective(**kw),
              dict(FIT_ARGS, block_size=ints(1)), max_examples=40),
        Entry("TransitionWriter", lambda: dict(path=tmpfile(""), n_obs=2, n_act=1,
                                               shard_rows=4),
              writer_call,
              {"path": [K("int", 3), K("None", None), K("list", ["a"]),
                        F("holds a store already", lambda kw: store_of(env_data())),
                        F("a file", raw_file(b"abc"))],
               "n_obs": ints(1), "n_act": ints(1), "shard_rows": ints(1),
               "format": [K("unknown", "csv"), K("int", 3), K("None", None),
                          K("upper case", "NPZ")],
               "mode": [K("unknown", "r"), K("int", 1), K("None", None)]},
              aliases={"path": lambda kw: (str(kw["path"]),)}, max_examples=40),
        Entry("TransitionWriter.add",
              lambda: dict(obs=X0.copy(), action=np.array([0.1]), next_obs=X0.copy(),
                           reward=-1.0, terminated=False, truncated=True),
              writer_add,
              {"obs": arrays("obs", 1, empty=False), "next_obs": arrays("next_obs", 1,
                                                                        empty=False),
               "action": arrays("action", 1, empty=False),
               "reward": [K("nan", NAN), K("inf", INF), K("string", "abc"), K("None", None),
                          K("list", [1.0, 2.0]), K("dict", {}), K("object", object())],
               "terminated": flags(), "truncated": flags()}, max_examples=40),
        Entry("TransitionWriter.append", lambda: dict(data=env_data()),
              lambda kw: [w.append(**kw) for w in [cp.TransitionWriter(tmpfile(""), 2, 1)]],
              {"data": [K("array", np.zeros((3, 3))), K("None", None), K("dict", {}),
                        F("wrong sizes", lambda kw: cp.Transitions.empty(3, 1))]},
              max_examples=20),
        Entry("TransitionStore", lambda: dict(path=store_of(env_data())),
              lambda kw: cp.TransitionStore(**kw).load(), {"path": STORE_PATHS},
              aliases={"path": lambda kw: (str(kw["path"]),)}, max_examples=40),
        Entry("TransitionStore.training_pairs",
              lambda: dict(store=cp.TransitionStore(store_of(env_data())), residual=True),
              lambda kw: kw.pop("store").training_pairs(**kw), {"residual": flags()}),
        Entry("fit_dynamics[store]",
              lambda: dict(data=cp.TransitionStore(store_of(env_data())), hidden=(3,),
                           maxiter=2, options=dict(block_size=4)),
              lambda kw: cp.fit_dynamics(**kw),
              {"method": [K("full batch", "L-BFGS-B"), K("unknown", "nope"), K("int", 3)],
               "options": [K("block_size 0", dict(block_size=0)),
                           K("unknown option", {"bogus_option": 1})],
               "validation": reals() + [K("one", 1.0)], "horizon": ints(1)},
              aliases={"options": ("option",)}, max_examples=30),
    ]


PLANT_STATES = {"Pendulum": np.array([0.1, 0.0]), "Car": np.array([1.0, 1.0, 0.5, 0.1]),
                "TruckBackerUpper": np.array([20.0, 0.0, 0.1, 0.0])}
PLANT_CONTROLS = {"Pendulum": np.array([0.5]), "Car": np.array([0.1, 0.5]),
                  "TruckBackerUpper": np.array([0.1])}


def plant_entries(name):
    cls = getattr(cp.plants, name)
    x, u = PLANT_STATES[name], PLANT_CONTROLS[name]
    m = u.size
    ctor_args = {"saturate": flags()}
    if name != "Car":
        ctor_args["wrap"] = flags()
    if name == "Pendulum":
        ctor_args["max_speed"] = [K("negative", -1.0), K("zero", 0.0), K("nan", NAN),
                                  K("string", "fast"), K("list", [8.0]), K("dict", {}),
                                  K("bool", True), K("object", object())]
    state_bad = arrays("x", 2)
    ctrl_bad = arrays("u", 2) + [
        H("outside the limits", st.floats(10.0, 1e6), 10.0, lambda kw, v: np.full(m, v)),
        K("batch of controls for one state", np.zeros((2, m)))]
    return [
        Entry(f"{name}()", lambda: {}, lambda kw: cls(**kw), ctor_args),
        Entry(f"{name}.step", lambda: dict(plant=cls(), x=x.copy(), u=u.copy()),
              lambda kw: kw.pop("plant").step(**kw), {"x": state_bad, "u": ctrl_bad},
              aliases={"u": ("control",)}),      # "control torque = 10 is outside its limits"
        Entry(f"{name}.simulate",
              lambda: dict(plant=cls(), x0=x.copy(), policy=lambda s: np.zeros(m), n_steps=3),
              lambda kw: kw.pop("plant").simulate(**kw),
              {"x0": arrays("x0", 2), "policy": callables(none=False), "n_steps": ints(1),
               "stop": callables()}),
        Entry(f"{name}.training_data", lambda: dict(plant=cls(), n=5, rng=0),
              lambda kw: kw.pop("plant").training_data(**kw),
              {"n": ints(1), "rng": SEEDS, "episode_length": ints(1, none=True)}),
    ]


def _set_weights(kw):
    kw["net"].weights = kw["weights"]


def _register(kw):
    return cp.register_transfer(**kw)


def transfer_base():
    return dict(name=f"bad_input_transfer_{next(_names)}", h=np.tanh,
                dh=lambda z: 1.0 - np.tanh(z) ** 2)


cp.register_transfer("bad_input_taken", np.tanh, lambda z: 1.0 - np.tanh(z) ** 2)

EDGES = [(0, 2), (1, 2), (1, 3), (2, 3)]

ENTRIES = [
    Entry("Network.from_edges",
          lambda: dict(n_inputs=2, edges=list(EDGES), transfers=["tanh", "linear"], outputs=[3]),
          lambda kw: cp.Network.from_edges(**kw),
          {"n_inputs": ints(1),
           "edges": [K("string", "abc"), K("None", None), K("int", 5), K("dict", {"a": 1}),
                     K("object", object()), K("1-tuples", [(0,), (1,)]),
                     K("triples", [(0, 2, 3)]), K("float units", [(0.0, 2), (1, 2), (2, 3)]),
                     K("bool units", [(True, 2), (0, 2), (2, 3)]),
                     K("string units", [("0", "2"), (2, 3)]),
                     H("unit out of range", st.integers(4, 10 ** 6), 9,
                       lambda kw, x: kw["edges"] + [(0, x)]),
                     H("negative unit", st.integers(-10 ** 6, -1), -1,
                       lambda kw, x: kw["edges"] + [(x, 3)]),
                     K("self-loop", EDGES + [(2, 2)]), K("duplicate", EDGES + [(0, 2)]),
                     K("cycle", [(0, 2), (1, 3), (2, 3), (3, 2)]),
                     K("into an input", EDGES + [(2, 0)]), K("empty", []),
                     K("unit reached by nothing", [(0, 2), (1, 2)])],
           "transfers": [K("None", None), K("int", 3), K("empty", []),
                         K("unknown name", ["nope", "linear"]), K("int entry", [3, "linear"]),
                         K("None entry", [None, "linear"]),
                         K("pair of non-callables", [("a", "b"), "linear"]),
                         K("object", object())],
           "outputs": [K("None", None), K("int", 3), K("empty", []), K("out of range", [9]),
                       K("negative", [-1]), K("an input unit", [0]), K("repeated", [3, 3]),
                       K("float", [3.0]), K("bool", [True]), K("string", "3"),
                       K("nested", [[3]]), K("object", object())],
           "bias": flags(),
           "seed": SEEDS},
          aliases={"edges": ("edge",), "outputs": ("output",)}),
    Entry("Network.mlp", lambda: dict(sizes=[3, 4, 2]), lambda kw: cp.Network.mlp(**kw),
          {"sizes": [K("one entry", [3]), K("empty", []), K("zero", [3, 0, 2]),
                     H("negative", st.integers(-10 ** 6, -1), -1, lambda kw, x: [3, x, 2]),
                     K("float", [3.5, 4, 2]), K("integral float", [3.0, 4, 2]),
                     K("bool", [True, 4, 2]), K("string", "342"), K("None", None), K("int", 3),
                     K("string entry", [3, "a", 2]), K("nested", [[3], 4, 2]),
                     K("dict", {"a": 1}), K("object", object()), K("NaN entry", [3, NAN, 2])],
           "hidden": [K("unknown", "nope"), K("None", None), K("int", 3), K("list", ["tanh"]),
                      K("pair of non-callables", ("a", "b")), K("object", object())],
           "output": [K("unknown", "nope"), K("None", None), K("int", 3), K("list", ["tanh"]),
                      K("pair of non-callables", ("a", "b")), K("object", object())],
           "bias": flags(),
           "seed": SEEDS}),
    Entry("Network.forward", lambda: dict(net=mlp(), X=X8[:5].copy()),
          lambda kw: kw.pop("net").forward(**kw),
          {"X": arrays("X", 2),
           "weights": [F("too long", lambda kw: np.zeros(kw["net"].n_weights + 1)),
                       F("too short", lambda kw: np.zeros(kw["net"].n_weights - 1)),
                       F("2-D", lambda kw: np.zeros((1, kw["net"].n_weights))),
                       F("NaN", lambda kw: np.full(kw["net"].n_weights, NAN)),
                       F("inf", lambda kw: np.full(kw["net"].n_weights, INF)),
                       K("string", "abc"), K("dict", {}), K("object", object()),
                       K("bool", True), K("ragged", [[1.0], [1.0, 2.0]])]}),
    Entry("Network.backward", lambda: dict(net=mlp(), X=X8[:5].copy(), dY=np.ones((5, 2))),
          lambda kw: kw.pop("net").backward(**kw),
          {"X": arrays("X", 2) + [F("rows differ from dY", lambda kw: X8[:4].copy())],
           "dY": arrays("dY", 2) + [F("rows differ from X", lambda kw: np.ones((4, 2)))],
           "wrt": [K("unknown", "all"), K("None", None), K("int", 3), K("list", ["both"]),
                   K("object", object())]},
          aliases={"X": ("dY",)}),               # X and dY disagree: dY is named
    Entry("Trace.jacobian_inputs", lambda: dict(net=mlp(), X=X8[:5].copy(), inputs=[0, 2]),
          lambda kw: kw["net"].trace(kw["X"]).jacobian_inputs(kw["inputs"]),
          {"X": arrays("X", 2),
           "inputs": [H("out of range", st.integers(3, 10 ** 6), 3, lambda kw, x: [0, x]),
                      H("negative", st.integers(-10 ** 6, -1), -1, lambda kw, x: [x]),
                      K("empty", []), K("float", [0.5]), K("repeated", [0, 0]),
                      K("string", "a"), K("bool", [True]), K("2-D", [[0, 1]]),
                      K("dict", {"a": 1}), K("float scalar", 1.5), K("object", object())]}),
    Entry("Network.weights =", lambda: dict(net=mlp(), weights=mlp().weights + 0.1),
          _set_weights,
          {"weights": [F("too long", lambda kw: np.zeros(kw["net"].n_weights + 1)),
                       F("too short", lambda kw: np.zeros(kw["net"].n_weights - 1)),
                       F("2-D", lambda kw: np.zeros((1, kw["net"].n_weights))),
                       H("NaN entry", st.integers(0, 25), 0,
                         lambda kw, i: np.where(np.arange(26) == i, NAN, 0.0)),
                       F("inf", lambda kw: np.full(kw["net"].n_weights, INF)),
                       K("string", "abc"), K("dict", {}), K("object", object()), K("None", None),
                       K("empty", np.zeros(0)), K("ragged", [[1.0], [1.0, 2.0]])]}),
    Entry("Network.set_scaling",
          lambda: dict(net=mlp(), x_mean=np.zeros(3), x_scale=np.ones(3), y_mean=np.zeros(2),
                       y_scale=np.ones(2)),
          lambda kw: kw.pop("net").set_scaling(**kw),
          {k: arrays(k, 1, none=False) + ([K("zero", np.zeros(3 if k[0] == "x" else 2)),
                                            K("negative", -np.ones(3 if k[0] == "x" else 2))]
                                           if k.endswith("scale") else [])
           for k in ("x_mean", "x_scale", "y_mean", "y_scale")}),
    Entry("register_transfer", transfer_base, _register,
          {"name": [K("empty", ""), K("int", 3), K("None", None), K("built-in", "tanh"),
                    K("list", ["a"]), K("taken", "bad_input_taken"), K("object", object())],
           "h": callables(none=False) + [K("name of a function", "tanh")],
           "dh": callables(none=False),
           "d2h": callables(),
           "overwrite": flags()},
          aliases={"name": ("transfer",)}),
    Entry("load", lambda: dict(path=VALID_FILE), lambda kw: cp.load(**kw),
          {"path": LOAD_CORRUPTIONS},
          aliases={"path": lambda kw: (str(kw["path"]),)}),
    Entry("fit", fit_base, lambda kw: cp.fit(**kw), fit_args(),
          aliases={"options": ("option",), "validation": ("X_val", "Y_val")}, max_examples=120),
    Entry("WeightObjective", lambda: dict(net=mlp(), X=X8.copy(), Y=Y8.copy()),
          lambda kw: cp.WeightObjective(**kw), FIT_ARGS),
    Entry("ControlObjective", ctl_base, lambda kw: cp.ControlObjective(**kw), CTL_ARGS),
    Entry("optimize_controls", ctl_solve_base, lambda kw: cp.optimize_controls(**kw),
          ctl_solve_args(), aliases={"options": ("option",)}, max_examples=120),
    Entry("TrajectoryCost", lambda: dict(Q=1.0, R=0.1), lambda kw: cp.TrajectoryCost(**kw),
          {"goal": [K("4-D", np.zeros((1, 1, 1, 2))), K("scalar", 1.0),
                    K("NaN", np.array([NAN, 0.0])), K("inf", np.array([INF, 0.0])),
                    K("string", "abc"), K("dict", {}), K("object", object()),
                    K("ragged", [[1.0], [1.0, 2.0]])],
           "Q": weights_of_cost(2), "Qf": weights_of_cost(2), "R": weights_of_cost(1),
           "S": weights_of_cost(1),
           "running": callables(), "terminal": callables(), "trajectory": callables()}),
    Entry("Dynamics", lambda: dict(net=mlp((3, 6, 2)), n_states=2),
          lambda kw: cp.Dynamics(**kw),
          {"net": [K("None", None), K("string", "net"), K("object", object()),
                   F("a Dynamics", lambda kw: model())],
           "n_states": ints(1) + [K("more than the outputs", 3), K("fewer than the outputs", 1)],
           "residual": flags(),
           "n_exo": ints(0) + [K("leaving no control", 1), K("more than the inputs", 5)],
           "dtype": DTYPES}),
    Entry("TrajectoryObjective", traj_base, lambda kw: cp.TrajectoryObjective(**kw),
          traj_args(), aliases={"cost": COST_ALIASES}),
    Entry("TrajectoryObjective[exo]", lambda: traj_base(1),
          lambda kw: cp.TrajectoryObjective(**kw), EXO_ARGS),
    Entry("TrajectoryObjective.__call__", lambda: dict(traj_base(), u=np.zeros(3)),
          lambda kw: traj_obj(kw)(kw["u"]),
          {"u": [K("too short", np.zeros(2)), K("too long", np.zeros(4)), K("string", "abc"),
                 K("dict", {}), K("object", object()), K("None", None), K("empty", np.zeros(0)),
                 K("ragged", [[1.0], [1.0, 2.0]]), K("array of strings", np.array(["a"] * 3))]}),
    Entry("TrajectoryObjective.hessp",
          lambda: dict(traj_base(), u=np.zeros(3), p=np.ones(3)),
          lambda kw: traj_obj(kw).hessp(kw["u"], kw["p"]),
          {k: [K("too short", np.zeros(2)), K("too long", np.zeros(4)), K("string", "abc"),
               K("dict", {}), K("object", object()), K("None", None), K("empty", np.zeros(0)),
               K("ragged", [[1.0], [1.0, 2.0]])] for k in ("u", "p")}),
    Entry("bptt",
          lambda: dict(model=model(), x0=np.array([[0.5, -0.2], [0.1, 0.3]]),
                       U=np.zeros((2, 3, 1)), cost=dict(Q=1.0, R=0.1)),
          lambda kw: cp.bptt(**kw),
          {"model": dynamics_bad(),
           "x0": arrays("x0", 2) + [K("batch of another size", np.zeros((3, 2)))],
           "U": arrays("U", 3) + [K("1-D", np.zeros(3)), K("batch of another size",
                                                            np.zeros((3, 3, 1)))],
           "cost": cost_bad(),
           "exo": [K("given without exogenous inputs", np.zeros(1))],
           "wrt_x0": flags()},
          aliases={"cost": COST_ALIASES}),
    Entry("optimize_trajectory", opt_traj_base, lambda kw: cp.optimize_trajectory(**kw),
          opt_traj_args(), aliases={"cost": COST_ALIASES, "options": ("option",)},
          max_examples=120),
    Entry("optimize_trajectory[exo]", lambda: dict(traj_base(1), maxiter=2),
          lambda kw: cp.optimize_trajectory(**kw), EXO_ARGS),
    Entry("mpc", mpc_base, lambda kw: cp.mpc(**kw), mpc_args(),
          aliases={"cost": COST_ALIASES, "options": ("option",)}, max_examples=120),
    Entry("mpc[exo]", lambda: mpc_base(1), lambda kw: cp.mpc(**kw), MPC_EXO_ARGS),
    Entry("ControllerObjective", ctrl_base, lambda kw: cp.ControllerObjective(**kw),
          ctrl_args(), aliases={"cost": COST_ALIASES}),
    Entry("train_controller", train_ctrl_base, lambda kw: cp.train_controller(**kw),
          train_ctrl_args(), aliases={"cost": COST_ALIASES, "options": ("option",)},
          max_examples=120),
    Entry("closed_loop", closed_base, lambda kw: cp.closed_loop(**kw), closed_args()),
    Entry("closed_loop[plant]", lambda: closed_base(plant=True), lambda kw: cp.closed_loop(**kw),
          closed_args(plant=True)),
    Entry("PlanarArm()", lambda: {}, lambda kw: cp.PlanarArm(**kw),
          {"lengths": [K("negative", [1.0, -0.5]), K("zero", [1.0, 0.0]), K("empty", []),
                       K("NaN", [1.0, NAN]), K("inf", [1.0, INF]), K("2-D", [[1.0, 0.8]]),
                       K("string", "abc"), K("dict", {}), K("None", None), K("scalar", 1.0)],
           "limits": [K("wrong shape", np.zeros((3, 3))), K("low above high", [[1.0, -1.0]] * 3),
                      K("NaN", np.full((3, 2), NAN)), K("string", "abc"), K("dict", {}),
                      K("1-D", np.zeros(6))]}),
    Entry("PlanarArm.fk", lambda: dict(arm=cp.PlanarArm(), q=np.zeros(3)),
          lambda kw: kw.pop("arm").fk(**kw),          # q (..., 3): any leading axes are valid
          {"q": [K("last axis longer", np.zeros(4)), K("last axis shorter", np.zeros(2)),
                 K("scalar", 0.0), K("NaN", np.array([NAN, 0.0, 0.0])),
                 K("inf", np.array([INF, 0.0, 0.0])), K("string", "abc"), K("dict", {}),
                 K("object", object()), K("None", None), K("empty", np.zeros(0))]}),
    Entry("PlanarArm.training_data", lambda: dict(arm=cp.PlanarArm(), n=5, rng=0),
          lambda kw: kw.pop("arm").training_data(**kw), {"n": ints(1), "rng": SEEDS}),
    Entry("Ensemble", lambda: dict(net=mlp((3, 6, 2)), size=3, seed=0),
          lambda kw: cp.Ensemble(**kw),
          {"net": [K("None", None), K("string", "net"), K("empty list", []),
                   K("list with a string", ["a"]), K("object", object()),
                   F("different structures", lambda kw: [mlp((3, 6, 2)), mlp((3, 5, 2))])],
           "size": ints(1), "seed": SEEDS}),
    Entry("Ensemble.forward", lambda: dict(ens=cp.Ensemble(mlp((3, 6, 2)), 2), X=X8[:, :3].copy()),
          lambda kw: kw.pop("ens").forward(**kw),
          {"X": [K("too many inputs", np.zeros((4, 4))), K("members miscounted",
                                                            np.zeros((3, 4, 3))),
                 K("NaN", np.full((2, 3), NAN)), K("string", "abc"), K("empty", np.zeros((0, 3))),
                 K("4-D", np.zeros((2, 2, 2, 3)))],
           "weights": [K("one member's", np.zeros(mlp((3, 6, 2)).n_weights)),
                       K("NaN", np.full((2, mlp((3, 6, 2)).n_weights), NAN)),
                       K("string", "abc")]}),
    Entry("Dynamics[ensemble]",
          lambda: dict(net=cp.Ensemble(mlp((3, 6, 2)), 2), n_states=2, propagation="members",
                       disagreement=0.5),
          lambda kw: cp.Dynamics(**kw),
          {"propagation": [K("unknown", "particles"), K("int", 1), K("list", ["mean"])],
           "disagreement": [K("negative", -1.0), K("NaN", NAN), K("wrong length", [1.0] * 3),
                            K("string", "abc"), K("bool", True), K("2-D", [[1.0, 1.0]])],
           "dtype": DTYPES}),
    Entry("fit[ensemble]",
          lambda: dict(net=cp.Ensemble(mlp(), 2), X=X8.copy(), Y=Y8.copy(), maxiter=2),
          lambda kw: cp.fit(**kw),
          {"bootstrap": [K("string", "yes"), K("int", 1), K("list", [True])],
           "method": [K("lm (no ensemble Jacobian)", "lm"), K("Newton-CG", "Newton-CG")],
           "trainable": [K("unit list", [3])],
           "dtype": [K("float32", np.float32)]}),
    Entry("optimize_trajectory[cem]",
          lambda: dict(opt_traj_base(), method="cem", options=dict(population=8, elites=2)),
          lambda kw: cp.optimize_trajectory(**kw),
          {"options": [K("unknown", {"popsize": 3}),
                       K("elites above population", {"population": 4, "elites": 5}),
                       K("population 1", {"population": 1}),
                       K("string alpha", {"population": 8, "elites": 2, "alpha": "x"}),
                       K("alpha above 1", {"population": 8, "elites": 2, "alpha": 2.0}),
                       K("negative init_std", {"population": 8, "elites": 2, "init_std": -1.0}),
                       K("workers 0", {"population": 8, "elites": 2, "workers": 0}),
                       K("float workers", {"population": 8, "elites": 2, "workers": 2.0}),
                       K("NaN noise_beta", {"population": 8, "elites": 2, "noise_beta": NAN}),
                       K("float population", {"population": 8.5, "elites": 2})],
           "constraints": [F("state bounds", lambda kw: cp.StateBounds([-5, -5], [5, 5]))]},
          aliases={"options": ("option",)}),
    Entry("mpc[cem-gd]",
          lambda: dict(mpc_base(), method="cem-gd",
                       options=dict(population=8, elites=4, refine=2)),
          lambda kw: cp.mpc(**kw),
          {"options": [K("refine above elites", {"population": 8, "elites": 2, "refine": 3}),
                       K("gd_options not a dict", {"population": 8, "elites": 4,
                                                   "gd_options": 3}),
                       K("zero gd_maxiter", {"population": 8, "elites": 4, "gd_maxiter": 0}),
                       K("mppi's temperature", {"temperature": 1.0})]},
          aliases={"options": ("option",)}),
    Entry("use_compiled", lambda: dict(mode="auto"),
          lambda kw: cp.use_compiled(**kw).__exit__(None, None, None),   # restore at once
          {"mode": [K("int 1", 1), K("int 0", 0), K("float", 1.0), K("string", "yes"),
                    K("None", None), K("numpy bool", np.bool_(True)), K("list", [True])]}),
] + plant_entries("Pendulum") + plant_entries("Car") + plant_entries("TruckBackerUpper") \
    + env_entries() + out_of_core_entries()


# ================================================================ the tests
def named(message, names):
    """True when ``message`` contains one of ``names`` as a word."""
    return any(re.search(rf"(?<![\w.]){re.escape(n)}(?![\w])", message) for n in names)


def check(entry, arg, bad, kw, value):
    """Call the entry point with kw[arg] = value; return None if it raised a ValueError or
    TypeError naming the argument, else a description of what happened."""
    kw[arg] = value
    names = entry.names(arg, kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            entry.call(kw)
        except (ValueError, TypeError) as e:
            if named(str(e), names):
                return None
            return (f"{type(e).__name__} not naming {names}: {str(e)[:300]}")
        except Exception as e:                       # noqa: BLE001 -- the point of the test
            return f"{type(e).__name__}: {str(e)[:300]}"
    return "accepted"


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.name)
def test_baseline_is_valid(entry):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        entry.call(entry.base())


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.name)
def test_every_corruption_is_named(entry):
    failures = []
    for arg, bad in entry.items():
        kw = entry.base()
        value = bad.draw(kw)
        what = check(entry, arg, bad, kw, value)
        if what is not None:
            failures.append(f"{entry.name}({arg} = {bad.label}: {value!r:.60}) -> {what}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.name)
def test_random_corruption_is_named(entry):
    items = entry.items()

    @settings(max_examples=entry.max_examples, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def run(data):
        arg, bad = data.draw(st.sampled_from(items), label="argument and corruption")
        kw = entry.base()
        value = bad.draw(kw, data)
        note(f"{entry.name}({arg} = {bad.label}: {value!r:.80})")
        kw[arg] = value
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with pytest.raises((ValueError, TypeError)) as info:
                entry.call(kw)
        names = entry.names(arg, kw)
        assert named(str(info.value), names), \
            f"the message does not name {names}: {type(info.value).__name__}: {info.value}"
    run()
