"""collect(out=...): transitions written to disk as they come, never lost on a failure."""

import numpy as np
import pytest

import ctrlprop as cp


class _FailsAtStep:
    """A pendulum environment whose step k raises."""

    def __init__(self, k):
        self.inner, self.k, self.n = cp.Pendulum().env(max_steps=30), k, 0
        self.action_space = self.inner.action_space
        self.observation_space = self.inner.observation_space

    def reset(self, seed=None, options=None):
        return self.inner.reset(seed=seed)

    def step(self, action):
        self.n += 1
        if self.n == self.k:
            raise RuntimeError("the simulator diverged")
        return self.inner.step(action)


@pytest.mark.parametrize("fmt", ["npz", "zarr"])
def test_collect_to_a_store_equals_collect_in_memory(tmp_path, fmt):
    env = cp.Pendulum().env(max_steps=30)
    mem = cp.collect(env, 95, seed=4)
    if fmt == "npz":
        store = cp.collect(env, 95, seed=4, out=tmp_path / "run")
    else:
        with cp.TransitionWriter(tmp_path / "run", mem.n_obs, mem.n_act, format="zarr",
                                 shard_rows=16) as w:
            store = cp.collect(env, 95, seed=4, out=w)
    assert isinstance(store, cp.TransitionStore) and len(store) == 95
    assert store.load() == mem


def test_a_second_collect_appends_with_new_episode_ids(tmp_path):
    env = cp.Pendulum().env(max_steps=30)
    cp.collect(env, 40, seed=1, out=tmp_path / "run")
    with cp.TransitionWriter(tmp_path / "run", 2, 1, mode="a") as w:
        store = cp.collect(env, 40, seed=2, out=w)
    both = cp.collect(env, 40, seed=1) + cp.collect(env, 40, seed=2)
    assert cp.TransitionStore(tmp_path / "run").load() == both and len(store) == 80


def test_a_failure_keeps_every_recorded_row_on_disk(tmp_path):
    env = _FailsAtStep(58)
    with pytest.raises(cp.CollectError, match="the simulator diverged") as info:
        cp.collect(env, 100, seed=0, out=tmp_path / "run")
    kept = info.value.data
    assert isinstance(kept, cp.TransitionStore) and len(kept) == 57
    first = cp.collect(cp.Pendulum().env(max_steps=30), 57, seed=0)
    assert kept.load() == first


def test_bad_out_raises_naming_it(tmp_path):
    env = cp.Pendulum().env()
    with pytest.raises(TypeError, match="out must be None, a path or a TransitionWriter"):
        cp.collect(env, 5, out=3)
    with cp.TransitionWriter(tmp_path / "w", 5, 1) as w:
        with pytest.raises(ValueError, match="out: the writer has n_obs=5"):
            cp.collect(env, 5, out=w)
    cp.collect(env, 5, out=tmp_path / "x")
    with pytest.raises(ValueError, match="already holds a transition store"):
        cp.collect(env, 5, out=tmp_path / "x")
