"""Out-of-core training (issue 13): Adam over blocks of rows read from np.memmap, zarr and
dask arrays, the streaming scaling statistics, transitions written to and read from disk
incrementally, and fit_dynamics on a store.

Every comparison is against an independent computation: the same data in memory, a
hand-written block-order Adam loop over the in-memory WeightObjective, exact (fsum)
two-pass statistics, the in-memory Transitions that were written.
"""

import math
import os
import pickle
import sys
import warnings

import numpy as np
import pytest

import ctrlprop as cp
from ctrlprop.core.arrays import RowView, column_moments, is_out_of_core

RNG = np.random.default_rng(7)
K = 2500
X = RNG.uniform(-1, 1, (K, 3))
Y = np.c_[np.sin(2 * X[:, 0]) * X[:, 1], X[:, 2] ** 2 - X[:, 0]]
SW = RNG.uniform(0.5, 2.0, K)
OPTS = dict(block_size=400, batch_size=64, learning_rate=3e-3)


def net():
    return cp.Network.mlp([3, 8, 2], seed=3)


def memmap(tmp_path, name, A):
    m = np.memmap(os.path.join(tmp_path, name), dtype=A.dtype, mode="w+", shape=A.shape)
    m[:] = A
    m.flush()
    return np.memmap(os.path.join(tmp_path, name), dtype=A.dtype, mode="r", shape=A.shape)


def zarr_array(tmp_path, name, A, chunk=300):
    zarr = pytest.importorskip("zarr")
    z = zarr.open_array(os.path.join(tmp_path, name), mode="w", shape=A.shape,
                        chunks=(chunk,) + A.shape[1:], dtype=A.dtype)
    z[:] = A
    return z


def adam_fit(Xa, Ya, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cp.ConvergenceWarning)
        return cp.fit(net(), Xa, Ya, method="adam", maxiter=3, seed=11,
                      options=dict(OPTS, **kw.pop("options", {})), **kw)


def same_fit(a, b):
    np.testing.assert_array_equal(a.x, b.x)
    for key in ("fun", "train_loss", "iteration"):
        np.testing.assert_array_equal(a.history[key], b.history[key])
    if a.history["val_loss"] is None:
        assert b.history["val_loss"] is None
    else:
        np.testing.assert_array_equal(a.history["val_loss"], b.history["val_loss"])
    assert a.status == b.status and a.nit == b.nit


# ---------------------------------------------------------------- Adam over blocks
def test_memmap_adam_equals_in_memory_adam_bit_for_bit(tmp_path):
    mx, my, mw = memmap(tmp_path, "x", X), memmap(tmp_path, "y", Y), memmap(tmp_path, "w", SW)
    assert is_out_of_core(mx) and not is_out_of_core(X)
    same_fit(adam_fit(X, Y), adam_fit(mx, my))
    # a validation fraction (whole blocks held out), sample weights, explicit validation
    same_fit(adam_fit(X, Y, validation=0.3, sample_weight=SW),
             adam_fit(mx, my, validation=0.3, sample_weight=mw))
    same_fit(adam_fit(X[:2000], Y[:2000], validation=(X[2000:], Y[2000:])),
             adam_fit(mx[:2000], my[:2000], validation=(mx[2000:], my[2000:])))
    # float32 on disk reads as the float32 array converted in memory
    m32 = memmap(tmp_path, "x32", X.astype(np.float32))
    same_fit(adam_fit(X.astype(np.float32), Y), adam_fit(m32, my))


def test_zarr_and_dask_arrays_train_like_memory(tmp_path):
    ref = adam_fit(X, Y, validation=0.3)
    same_fit(ref, adam_fit(zarr_array(tmp_path, "x.zarr", X), zarr_array(tmp_path, "y.zarr", Y),
                           validation=0.3))
    da = pytest.importorskip("dask.array")
    same_fit(ref, adam_fit(da.from_array(X, chunks=(700, 3)), da.from_array(Y, chunks=(700, 2)),
                           validation=0.3))


def test_a_validation_fraction_holds_out_the_documented_blocks(tmp_path):
    """validation=0.4 over 7 blocks of 400 rows holds out round(0.4 * 7) = 3 blocks, the
    first three of rng.permutation(7): at iteration 0 (the starting weights, the scaling of
    the training rows) the losses equal those of that split given explicitly."""
    res = adam_fit(memmap(tmp_path, "x", X), memmap(tmp_path, "y", Y), validation=0.4)
    held = np.sort(np.random.default_rng(11).permutation(7)[:3])
    rows = np.zeros(K, bool)
    for j in held:
        rows[j * 400:(j + 1) * 400] = True
    ref = adam_fit(X[~rows], Y[~rows], validation=(X[rows], Y[rows]))
    for key in ("fun", "train_loss", "val_loss"):
        assert res.history[key][0] == ref.history[key][0]
    assert not np.array_equal(res.x, ref.x)               # the later shuffles differ


def test_a_streamed_objective_pickles_and_computes_the_same(tmp_path):
    obj = cp.StreamedObjective(cp.learn_scaling(net(), X, Y), memmap(tmp_path, "x", X), Y,
                               l2=1e-3, sample_weight=SW, block_size=700)
    ref = cp.WeightObjective(cp.learn_scaling(net(), X, Y), X, Y, l2=1e-3, sample_weight=SW)
    back = pickle.loads(pickle.dumps(obj))
    x = obj.x0 + 0.01
    assert obj.value(x) == back.value(x)
    np.testing.assert_allclose(obj.value(x), ref.value(x), rtol=1e-13)   # blockwise sums
    obj.load_block(2)
    idx = np.arange(1400, 2100, 7)
    E, g = obj.minibatch(x, idx)
    Er, gr = ref.minibatch(x, idx)
    assert E == Er
    np.testing.assert_array_equal(g, gr)
    with pytest.raises(ValueError, match="sample indices of the loaded block 2"):
        obj.minibatch(x, np.array([5]))


def test_block_order_is_the_documented_one():
    """A hand-written Adam over the in-memory WeightObjective, visiting the blocks in the
    order the solver documents, gives the fit's weights bit for bit."""
    L, B, lr, b1, b2, eps = 400, 64, 3e-3, 0.9, 0.999, 1e-8
    ref_net = cp.learn_scaling(net(), X, Y)
    obj = cp.WeightObjective(ref_net, X, Y)
    rng = np.random.default_rng(11)
    x = obj.x0.copy()
    m, v, t = np.zeros_like(x), np.zeros_like(x), 0
    for epoch in range(3):
        for j in rng.permutation(-(-K // L)):
            n = min(L, K - j * L)
            rows = j * L + rng.permutation(n)
            for a in range(0, n, B):
                _, g = obj.minibatch(x, rows[a:a + B])
                t += 1
                m = b1 * m + (1 - b1) * g
                v = b2 * v + (1 - b2) * (g * g)
                c2 = np.sqrt(1 - b2 ** t)
                x = x - (m / (np.sqrt(v) + eps * c2)) * (lr * c2 / (1 - b1 ** t))
    res = adam_fit(X, Y)
    np.testing.assert_array_equal(res.x, obj.full(x))


def test_out_of_core_without_block_size_uses_the_documented_default(tmp_path):
    mx, my = memmap(tmp_path, "x", X), memmap(tmp_path, "y", Y)
    got = adam_fit(mx, my, options=dict(block_size=None))
    same_fit(got, adam_fit(X, Y, options=dict(block_size=64 * (65536 // 64))))
    assert not np.array_equal(got.x, adam_fit(X, Y, options=dict(block_size=None)).x)


def test_full_batch_methods_refuse_out_of_core_data(tmp_path):
    mx = memmap(tmp_path, "x", X)
    for method in (None, "trf", "Newton-CG"):
        with pytest.raises(ValueError, match=r"X is an out-of-core array.*method='adam'"):
            cp.fit(net(), mx, Y, method=method)
    with pytest.raises(ValueError, match=r"X_val is an out-of-core array"):
        cp.fit(net(), X, Y, validation=(mx, Y))
    res = cp.fit(net(), np.asarray(mx), Y, maxiter=3)          # loading it is the user's call
    assert res.nit == 3


# ---------------------------------------------------------------- streaming statistics
def exact_moments(A):
    mean = np.array([math.fsum(c) / len(c) for c in A.T])
    std = np.array([math.sqrt(math.fsum((c - mu) ** 2) / len(c)) for c, mu in zip(A.T, mean)])
    return mean, std


def test_streaming_scaling_is_exact_for_a_large_offset(tmp_path):
    A = 1e6 + RNG.standard_normal((150_000, 3)) * np.array([1.0, 1e-3, 10.0])
    A[:, 2] = 5.0                                                     # a constant column
    mean, std = exact_moments(A)
    naive = np.sqrt(np.maximum((A ** 2).mean(axis=0) - A.mean(axis=0) ** 2, 0))
    assert np.all(abs(naive[:2] - std[:2]) > 1e-6 * std[:2])         # the test can fail
    m = memmap(tmp_path, "a", A)
    for source in (A, m, RowView(m, np.ones(len(A), bool))):
        got_mean, got_scale = cp.data_scaling(source)
        np.testing.assert_allclose(got_mean, mean, rtol=1e-12)
        np.testing.assert_allclose(got_scale[:2], std[:2], rtol=1e-12)
        assert got_scale[2] == 1.0                                     # constant: scale 1
    for block in (1000, 7777):                                         # many merges
        n, mu, m2 = column_moments(m, "a", block)
        assert n == len(A)
        np.testing.assert_allclose(mu, mean, rtol=1e-12)
        np.testing.assert_allclose(np.sqrt(m2[:2] / n), std[:2], rtol=1e-12)


def test_statistics_depend_on_the_rows_only(tmp_path):
    A = RNG.standard_normal((70_000, 4)) * 3 + 2                      # two blocks
    ref = cp.data_scaling(A)
    np.testing.assert_allclose(ref[0], A.mean(axis=0), rtol=1e-14)   # today's definition
    np.testing.assert_allclose(ref[1], A.std(axis=0), rtol=1e-14)
    small = cp.data_scaling(A[:65536])                                 # one block: numpy's
    np.testing.assert_array_equal(small[0], A[:65536].mean(axis=0))
    np.testing.assert_array_equal(small[1], A[:65536].std(axis=0))
    m = memmap(tmp_path, "a", A)
    for source in (m, zarr_array(tmp_path, "a.zarr", A, chunk=999),
                   RowView(np.vstack([A[:100], A[:7], A[100:]]),
                           (np.array([0, 107]), np.array([100, 70_007])))):
        got = cp.data_scaling(source)
        np.testing.assert_array_equal(got[0], ref[0])
        np.testing.assert_array_equal(got[1], ref[1])


def test_a_nan_in_the_last_block_is_found(tmp_path):
    A = X.copy()
    A[-1, 1] = np.nan
    m = memmap(tmp_path, "nan", A)
    with pytest.raises(ValueError, match=rf"X contains NaN or inf in row\(s\) \[{K - 1}\]"):
        cp.fit(net(), m, Y, method="adam", maxiter=1, options=dict(block_size=400))
    with pytest.raises(ValueError, match=rf"X contains NaN or inf in row\(s\) \[{K - 1}\]"):
        cp.fit(net(), m, Y, method="adam", maxiter=1, scale=False)
    with pytest.raises(ValueError, match=r"X_val contains NaN"):
        cp.fit(net(), X[:2000], Y[:2000], method="adam", maxiter=1,
               validation=(m[2000:], Y[2000:]))
    with pytest.raises(ValueError, match=r"A contains NaN or inf"):
        cp.data_scaling(m)
    B = SW.copy()
    B[-1] = np.inf
    with pytest.raises(ValueError, match="sample_weight must be finite"):
        cp.fit(net(), X, Y, method="adam", maxiter=1, sample_weight=memmap(tmp_path, "w", B))


# ---------------------------------------------------------------- transitions on disk
DATA = cp.collect(cp.Pendulum().env(max_steps=7), 700, seed=0)      # 100 episodes


def write_rowwise(w, d):
    """Row by row, as a collection loop would."""
    for k in range(len(d)):
        if k == 0 or d.episode[k] != d.episode[k - 1]:
            w.new_episode()
        w.add(d.obs[k], d.actions[k], d.next_obs[k], d.rewards[k], d.terminated[k],
              d.truncated[k])


@pytest.mark.parametrize("fmt", ["npz", "zarr"])
def test_writer_and_store_round_trip(tmp_path, fmt):
    if fmt == "zarr":
        pytest.importorskip("zarr")
    path = tmp_path / "run"
    os.makedirs(path)
    (path / "notes.txt").write_text("the user's own file")          # left alone
    with cp.TransitionWriter(path, 2, 1, format=fmt, shard_rows=64) as w:
        w.append(DATA[:350])                              # ends at an episode boundary
        write_rowwise(w, DATA[350:])
        assert w.rows == 700 and w.flushed_rows == 640
    store = cp.TransitionStore(path)
    assert len(store) == 700 and store.format == fmt and (store.n_obs, store.n_act) == (2, 1)
    assert store.load() == DATA
    assert store.n_episodes == DATA.n_episodes
    np.testing.assert_array_equal(store.episode_ids(), DATA.episode_ids())
    assert store[100:260] == DATA[100:260]
    for name in ("obs", "actions", "next_obs", "rewards", "terminated", "episode"):
        col = getattr(store, name)
        assert is_out_of_core(col) and col.shape == getattr(DATA, name).shape
        np.testing.assert_array_equal(col[63:200], getattr(DATA, name)[63:200])
    for residual in (True, False):
        Xs, Ys = store.training_pairs(residual)
        Xd, Yd = DATA.training_pairs(residual)
        np.testing.assert_array_equal(Xs[10:650], Xd[10:650])
        np.testing.assert_array_equal(np.asarray(Ys), Yd)
    back = pickle.loads(pickle.dumps(store))
    assert len(pickle.dumps(store)) < 1000 and back.load() == DATA      # pickled by path
    assert pickle.loads(pickle.dumps(store.training_pairs()[0]))[5:9].shape == (4, 3)
    with cp.TransitionWriter(path, 2, 1, format=fmt, shard_rows=64, mode="a") as w:
        w.append(DATA[:70])
    assert cp.TransitionStore(path).load() == DATA + DATA[:70]          # episodes renumbered
    with cp.TransitionWriter(path, 2, 1, format=fmt, mode="w") as w:     # replaced
        w.append(DATA[:5])
    assert cp.TransitionStore(path).load() == DATA[:5]
    assert (path / "notes.txt").read_text() == "the user's own file"


@pytest.mark.parametrize("fmt", ["npz", "zarr"])
def test_an_interrupted_run_keeps_the_flushed_rows(tmp_path, fmt):
    if fmt == "zarr":
        pytest.importorskip("zarr")
    with pytest.raises(RuntimeError, match="the environment broke"):
        with cp.TransitionWriter(tmp_path / "a", 2, 1, format=fmt, shard_rows=50) as w:
            write_rowwise(w, DATA[:333])
            raise RuntimeError("the environment broke")
    assert cp.TransitionStore(tmp_path / "a").load() == DATA[:333]     # closed on the way out
    w = cp.TransitionWriter(tmp_path / "b", 2, 1, format=fmt, shard_rows=50)
    write_rowwise(w, DATA[:333])              # a crash: never closed, 33 rows in the buffer
    store = cp.TransitionStore(tmp_path / "b")
    assert len(store) == 300 and store.load() == DATA[:300]
    with cp.TransitionWriter(tmp_path / "b", 2, 1, format=fmt, shard_rows=50, mode="a") as w2:
        w2.append(DATA[300:301])
    assert len(cp.TransitionStore(tmp_path / "b")) == 301


def test_fit_dynamics_on_a_store_equals_in_memory(tmp_path):
    with cp.TransitionWriter(tmp_path / "s", 2, 1, shard_rows=128) as w:
        w.append(DATA)
    store = cp.TransitionStore(tmp_path / "s")
    kw = dict(hidden=(8,), method="adam", maxiter=4, horizon=5, seed=2,
              options=dict(block_size=100, batch_size=32))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cp.ConvergenceWarning)
        mem, disk = cp.fit_dynamics(DATA, **kw), cp.fit_dynamics(store, **kw)
    np.testing.assert_array_equal(disk.net.weights, mem.net.weights)
    np.testing.assert_array_equal(disk.report.validation_rows, mem.report.validation_rows)
    same_fit(mem.report.fit, disk.report.fit)
    np.testing.assert_array_equal(disk.report.one_step_rmse, mem.report.one_step_rmse)
    np.testing.assert_array_equal(disk.report.multi_step_rmse, mem.report.multi_step_rmse)
    with pytest.raises(ValueError, match="method='adam'"):
        cp.fit_dynamics(store, method="L-BFGS-B", maxiter=1)


def test_prediction_errors_in_blocks_equal_one_block(monkeypatch):
    model = cp.Dynamics(cp.Network.mlp([3, 5, 2], seed=1), 2)
    rows = np.random.default_rng(0).random(len(DATA)) < 0.7
    monkeypatch.setattr(cp.planning.learning, "PREDICTION_BATCH", 10 ** 9)   # one model call
    one = cp.planning.learning.prediction_errors(model, DATA, rows, horizon=4)
    monkeypatch.setattr(cp.planning.learning, "PREDICTION_ROWS", 97)
    many = cp.planning.learning.prediction_errors(model, DATA, rows, horizon=4)
    assert many.windows == one.windows > 0
    np.testing.assert_allclose(many.one_step_rmse, one.one_step_rmse, rtol=1e-13)
    np.testing.assert_allclose(many.multi_step_rmse, one.multi_step_rmse, rtol=1e-13)
    monkeypatch.setattr(cp.planning.learning, "PREDICTION_BATCH", 13)    # calls of 13 rows
    small = cp.planning.learning.prediction_errors(model, DATA, rows, horizon=4)
    assert small.windows == one.windows
    np.testing.assert_allclose(small.one_step_rmse, one.one_step_rmse, rtol=1e-13)
    np.testing.assert_allclose(small.multi_step_rmse, one.multi_step_rmse, rtol=1e-13)


def test_prediction_errors_leave_no_batch_of_every_window_in_the_model(monkeypatch):
    """The model's rollout cache is keyed by batch size: the errors' batches stay bounded."""
    model = cp.Dynamics(cp.Ensemble(cp.Network.mlp([3, 5, 2], seed=1), 3, seed=0), 2)
    monkeypatch.setattr(cp.planning.learning, "PREDICTION_BATCH", 16)
    err = cp.planning.learning.prediction_errors(model, DATA, horizon=4)
    assert err.windows > 16
    assert model._cache and all(B <= 16 for T, B in model._cache)


# ---------------------------------------------------------------- bad input
def test_bad_out_of_core_inputs_are_named(tmp_path):
    mx = memmap(tmp_path, "x", X)
    adam = dict(method="adam", maxiter=1)
    with pytest.raises(ValueError, match=r"X must have shape \(K, 2\)"):
        cp.fit(cp.Network.mlp([2, 3, 2]), mx, Y, **adam)
    with pytest.raises(ValueError, match="X has 2500 rows but Y has 2000"):
        cp.fit(net(), mx, memmap(tmp_path, "y", Y[:2000]), **adam)
    with pytest.raises(TypeError, match="Y must have a real numeric dtype"):
        cp.fit(net(), mx, memmap(tmp_path, "s", np.array([["a", "b"]] * K)), **adam)
    with pytest.raises(ValueError, match=r"options\['block_size'\] must be None or at least 1"):
        cp.fit(net(), mx, Y, method="adam", options=dict(block_size=0))
    with pytest.raises(ValueError, match=r"validation fraction 0.5 of 1 blocks"):
        cp.fit(net(), mx, Y, validation=0.5, **adam)
    with pytest.raises(ValueError, match=r"sample_weight has 10 rows, expected 2500"):
        cp.fit(net(), mx, Y, sample_weight=memmap(tmp_path, "w", SW[:10]), **adam)
    with pytest.raises(TypeError, match="data must be ctrlprop Transitions .* or a "
                                        "TransitionStore"):
        cp.fit_dynamics(mx)


def test_bad_store_arguments_are_named(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="format must be one of"):
        cp.TransitionWriter(tmp_path / "a", 2, 1, format="csv")
    with pytest.raises(ValueError, match="shard_rows must be at least 1"):
        cp.TransitionWriter(tmp_path / "a", 2, 1, shard_rows=0)
    with pytest.raises(ValueError, match="mode must be"):
        cp.TransitionWriter(tmp_path / "a", 2, 1, mode="r")
    cp.TransitionWriter(tmp_path / "a", 2, 1).close()
    with pytest.raises(ValueError, match="already holds a transition store.*mode='a'"):
        cp.TransitionWriter(tmp_path / "a", 2, 1)
    with pytest.raises(ValueError, match="n_obs=2, n_act=1; the writer was given n_obs=3"):
        cp.TransitionWriter(tmp_path / "a", 3, 1, mode="a")
    with cp.TransitionWriter(tmp_path / "b", 2, 1) as w:
        with pytest.raises(ValueError, match=r"obs must be a finite vector of shape \(2,\)"):
            w.add([1.0, np.nan], [0.0], [0.0, 0.0], 0.0)
        with pytest.raises(ValueError, match=r"action must be a finite vector of shape \(1,\)"):
            w.add([1.0, 0.0], [0.0, 1.0], [0.0, 0.0], 0.0)
        with pytest.raises(TypeError, match="terminated must be True or False"):
            w.add([1.0, 0.0], [0.0], [0.0, 0.0], 0.0, terminated=1)
        with pytest.raises(TypeError, match="data must be ctrlprop Transitions"):
            w.append(np.zeros((3, 5)))
        with pytest.raises(TypeError, match="cannot be pickled"):
            pickle.dumps(w)
    with pytest.raises(ValueError, match="is closed"):
        w.add([1.0, 0.0], [0.0], [0.0, 0.0], 0.0)
    os.makedirs(tmp_path / "empty")
    with pytest.raises(ValueError, match="is not a ctrlprop transition store"):
        cp.TransitionStore(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="no transition store at path"):
        cp.TransitionStore(tmp_path / "nothing")
    with cp.TransitionWriter(tmp_path / "c", 2, 1, shard_rows=100) as w:
        w.append(DATA[:350])
    os.remove(next(p for p in (tmp_path / "c").iterdir() if p.name.startswith("shard-000001")))
    with pytest.raises(ValueError, match=r"shard\(s\) \[1\] are missing"):
        cp.TransitionStore(tmp_path / "c")
    monkeypatch.setitem(sys.modules, "zarr", None)
    with pytest.raises(ImportError, match=r"pip install 'ctrlprop\[zarr\]'"):
        cp.TransitionWriter(tmp_path / "z", 2, 1, format="zarr")
