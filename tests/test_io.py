"""Saving and loading: exact round trips and clear errors for bad files."""

import numpy as np
import pytest

import ctrlprop as cp
from conftest import random_dag


def test_round_trip_preserves_outputs_exactly(tmp_path, rng):
    net = random_dag(rng, n_in=3, n_comp=8)
    net.set_scaling([0.5, -1, 2], [1, 2, 3], rng.standard_normal(net.n_outputs),
                    rng.uniform(1, 2, net.n_outputs))
    path = tmp_path / "model.npz"
    net.save(path)
    back = cp.load(path)
    X = rng.standard_normal((7, 3))
    np.testing.assert_array_equal(back.forward(X), net.forward(X))
    assert back.weight_labels == net.weight_labels
    np.testing.assert_array_equal(back.input_scaling[1], net.input_scaling[1])


def test_truncated_and_corrupt_files(tmp_path):
    net = cp.Network.mlp([2, 3, 1])
    good = tmp_path / "good.npz"
    net.save(good)
    raw = good.read_bytes()
    trunc = tmp_path / "trunc.npz"
    trunc.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="trunc.npz.*truncated or corrupt"):
        cp.load(trunc)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a model at all")
    with pytest.raises(ValueError, match="junk.npz"):
        cp.load(junk)
    other = tmp_path / "other.npz"
    np.savez(other, a=np.zeros(3))
    with pytest.raises(ValueError, match="other.npz: not a ctrlprop.Network or ctrlprop.Ensemble file"):
        cp.load(other)


def _rewrite(src, dst, **changes):
    with np.load(src) as z:
        d = {k: z[k] for k in z.files}
    d.update(changes)
    with open(dst, "wb") as f:
        np.savez(f, **d)


def test_wrong_version_bad_weights_and_unknown_transfer(tmp_path):
    cp.register_transfer("test_saved", np.sin, np.cos, overwrite=True)
    net = cp.Network.from_edges(1, [(0, 1), (1, 2)], ["test_saved", "linear"], [2])
    p = tmp_path / "m.npz"
    net.save(p)
    _rewrite(p, tmp_path / "v9.npz", format_version=np.array(9))
    with pytest.raises(ValueError, match="v9.npz: format version 9 is not supported"):
        cp.load(tmp_path / "v9.npz")
    _rewrite(p, tmp_path / "w.npz", weights=np.zeros(2))
    with pytest.raises(ValueError, match=r"w.npz: inconsistent.*shape \(4,\)"):
        cp.load(tmp_path / "w.npz")
    _rewrite(p, tmp_path / "t.npz", transfers=np.array(["test_never_registered", "linear"]))
    with pytest.raises(ValueError, match=r"\['test_never_registered'\] are not registered"):
        cp.load(tmp_path / "t.npz")
    assert cp.load(p).transfers[0].name == "test_saved"
