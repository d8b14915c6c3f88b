"""Transitions on disk, written incrementally and read in blocks.

A long data-collection run need not hold its transitions in memory:
:class:`TransitionWriter` buffers rows and writes a *shard* of ``shard_rows`` rows to disk
whenever the buffer is full (and the rest on ``flush`` / ``close``, also when the ``with``
block ends in an exception), so a run that crashes leaves every flushed row readable.
:class:`TransitionStore` opens what was written: its columns are out-of-core arrays (read
by row slices, never whole unless asked), its training pairs are computed block by block,
and :func:`ctrlprop.fit_dynamics` trains on it by streaming.

Two formats, both a directory at ``path``:

* ``"npz"`` (numpy only): a manifest ``ctrlprop-transitions.json`` and shards
  ``shard-000000-<rows>.npz``, ``shard-000001-<rows>.npz``, ..., each written to a temporary
  name and renamed when complete, so a shard file is never half written;
* ``"zarr"`` (``pip install 'ctrlprop[zarr]'``): a zarr group with one array per column,
  chunked by ``shard_rows`` rows; the group's ``rows`` attribute is updated after every
  column of a shard is written and is the number of rows a reader sees.

zarr is imported only when a zarr store is written or read (the planning layer imports
it lazily; the core never does).
"""

import json
import os
import re

import numpy as np

from ..core.arrays import STATS_ROWS, RowArray
from ..core.checks import as_float, check_int
from ..core.io import read_arrays, write_arrays
from ..core.transitions import Transitions

__all__ = ["TransitionWriter", "TransitionStore", "STORE_FORMATS"]

STORE_FORMATS = ("npz", "zarr")
_MANIFEST = "ctrlprop-transitions.json"
_KIND, _VERSION = "ctrlprop.TransitionStore", 1
_SHARD_KIND = "ctrlprop.TransitionShard"
_SHARD = re.compile(r"^shard-(\d{6,})-(\d+)\.npz$")
_COLUMNS = ("obs", "actions", "next_obs", "rewards", "terminated", "truncated", "episode")
_DTYPES = dict(obs=np.float64, actions=np.float64, next_obs=np.float64, rewards=np.float64,
               terminated=bool, truncated=bool, episode=np.int64)


def _zarr():
    """The zarr module, or an ImportError naming the extra."""
    try:
        import zarr
    except ImportError:
        raise ImportError("format='zarr' needs zarr: pip install 'ctrlprop[zarr]' (or use "
                          "format='npz', which needs numpy only)") from None
    return zarr


def _check_path(path):
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a directory name (str or os.PathLike), got "
                        f"{type(path).__name__}: {path!r:.60}")
    return os.fspath(path)


def _store_format(path):
    """The format of the store at ``path`` ("npz" or "zarr"), or None when there is none."""
    if os.path.isfile(os.path.join(path, _MANIFEST)):
        return "npz"
    if os.path.isfile(os.path.join(path, "zarr.json")):
        return "zarr"
    return None


def _widths(n_obs, n_act):
    return dict(obs=n_obs, actions=n_act, next_obs=n_obs)


# ---------------------------------------------------------------- writing
class TransitionWriter:
    """Write transitions to a directory incrementally, one shard of rows at a time.

    Use it as a context manager (or call :meth:`close`)::

        with cp.TransitionWriter("run", n_obs=4, n_act=1) as w:
            w.new_episode()
            w.add(obs, action, next_obs, reward, terminated, truncated)   # one step
            w.append(transitions)                                          # many rows
        store = cp.TransitionStore("run")

    Episodes are numbered by the writer: a row goes to the current episode; the first row
    after :meth:`new_episode`, after a row with ``terminated`` or ``truncated`` set, or
    after :meth:`append`, starts the next one (ids 0, 1, ... after those already in the
    store).  Every episode of an appended :class:`~ctrlprop.Transitions` gets a new id, as
    in ``Transitions.concatenate``.

    Parameters
    ----------
    path : str or os.PathLike
        A directory (created if needed).
    n_obs, n_act : int
        Observation and action sizes.
    format : {"npz", "zarr"}
        See :mod:`ctrlprop.planning.store`; "zarr" needs ``pip install 'ctrlprop[zarr]'``.
    shard_rows : int
        Rows buffered in memory before a shard is written (default 65536).
    mode : {"x", "a", "w"}
        "x" (default): create a store; a store already at ``path`` raises.  "a": append to
        the store at ``path`` (its sizes and format must match) or create one.  "w":
        replace the store at ``path`` (only the store's own files are removed).

    Attributes
    ----------
    path, n_obs, n_act, format, shard_rows
    rows : int
        Rows added so far (written and buffered, those of the store opened with "a"
        included).
    flushed_rows : int
        Rows on disk.
    """

    def __init__(self, path, n_obs, n_act, *, format="npz", shard_rows=65536, mode="x"):
        self.path = _check_path(path)
        self.n_obs, self.n_act = check_int(n_obs, "n_obs", 1), check_int(n_act, "n_act", 1)
        if format not in STORE_FORMATS:
            raise ValueError(f"format must be one of {STORE_FORMATS}, got {format!r}")
        self.shard_rows = check_int(shard_rows, "shard_rows", 1)
        if mode not in ("x", "a", "w"):
            raise ValueError(f"mode must be 'x' (create), 'a' (append) or 'w' (replace), "
                             f"got {mode!r}")
        self.format = format
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise ValueError(f"path {self.path!r} is a file; a transition store is a directory")
        found = _store_format(self.path) if os.path.isdir(self.path) else None
        if found is not None and mode == "x":
            raise ValueError(f"path {self.path!r} already holds a transition store; use "
                             f"mode='a' to append to it or mode='w' to replace it")
        if found is not None and mode == "w":
            _remove_store(self.path, found)
            found = None
        if found is not None and found != format:
            raise ValueError(f"the store at path {self.path!r} is format {found!r}, not "
                             f"format {format!r}")
        self._zarr = None
        self.flushed_rows, self._shards, self._last_episode = 0, 0, -1
        os.makedirs(self.path, exist_ok=True)
        if found is None:
            self._create()
        else:
            self._reopen()
        n, m, L = self.n_obs, self.n_act, self.shard_rows
        self._buf = dict(obs=np.empty((L, n)), actions=np.empty((L, m)),
                         next_obs=np.empty((L, n)), rewards=np.empty(L),
                         terminated=np.empty(L, bool), truncated=np.empty(L, bool),
                         episode=np.empty(L, np.int64))
        self._fill, self._closed, self._new = 0, False, True

    def _manifest(self):
        return dict(format=_KIND, format_version=_VERSION, storage=self.format,
                    n_obs=self.n_obs, n_act=self.n_act, shard_rows=self.shard_rows)

    def _create(self):
        if self.format == "npz":
            tmp = os.path.join(self.path, _MANIFEST + ".tmp")
            with open(tmp, "w") as f:
                json.dump(self._manifest(), f)
            os.replace(tmp, os.path.join(self.path, _MANIFEST))
            return
        zarr = _zarr()
        g = zarr.open_group(self.path, mode="a")    # not "w": that empties the directory
        for name in _COLUMNS:
            w = _widths(self.n_obs, self.n_act).get(name)
            shape, chunks = ((0, w), (self.shard_rows, w)) if w else ((0,), (self.shard_rows,))
            g.create_array(name, shape=shape, chunks=chunks, dtype=_DTYPES[name])
        g.attrs.update(dict(self._manifest(), rows=0))
        self._zarr = g

    def _reopen(self):
        store = TransitionStore(self.path)
        if (store.n_obs, store.n_act) != (self.n_obs, self.n_act):
            raise ValueError(f"the store at path {self.path!r} has n_obs={store.n_obs}, "
                             f"n_act={store.n_act}; the writer was given n_obs={self.n_obs}, "
                             f"n_act={self.n_act}")
        self.flushed_rows = len(store)
        if len(store):
            self._last_episode = int(store.episode[len(store) - 1:][0])
        if self.format == "npz":
            self._shards = len(store._files)
        else:
            g = _zarr().open_group(self.path, mode="r+")
            for name in _COLUMNS:                       # drop rows of an unfinished shard
                a = g[name]
                a.resize((self.flushed_rows,) + a.shape[1:])
            self._zarr = g

    # ------------------------------------------------------------ adding rows
    @property
    def rows(self):
        return self.flushed_rows + self._fill

    def new_episode(self):
        """Start a new episode: the next row gets the next episode id, which is returned."""
        self._check_open()
        self._new = True
        return self._last_episode + 1

    def add(self, obs, action, next_obs, reward, terminated=False, truncated=False):
        """Add one transition to the current episode (see the class docstring).

        Parameters
        ----------
        obs, next_obs : array_like, shape (n_obs,)
        action : array_like, shape (n_act,)
        reward : float
        terminated, truncated : bool
            Either set ends the episode: the next row starts a new one.
        """
        self._check_open()
        row = {}
        for name, v, n in (("obs", obs, self.n_obs), ("action", action, self.n_act),
                           ("next_obs", next_obs, self.n_obs)):
            a = as_float(v, name)
            if a.shape != (n,) or not np.all(np.isfinite(a)):
                raise ValueError(f"{name} must be a finite vector of shape ({n},), got "
                                 f"{a.shape if a.shape != (n,) else a}")
            row[name] = a
        r = as_float(reward, "reward")
        if r.shape != () or not np.isfinite(r):
            raise ValueError(f"reward must be a finite number, got {reward!r:.60}")
        flags = []
        for name, f in (("terminated", terminated), ("truncated", truncated)):
            if not isinstance(f, (bool, np.bool_)):
                raise TypeError(f"{name} must be True or False, got {type(f).__name__}")
            flags.append(bool(f))
        if self._new:
            self._last_episode += 1
            self._new = False
        i, b = self._fill, self._buf
        b["obs"][i], b["actions"][i], b["next_obs"][i] = row["obs"], row["action"], \
            row["next_obs"]
        b["rewards"][i], b["terminated"][i], b["truncated"][i] = r, flags[0], flags[1]
        b["episode"][i] = self._last_episode
        self._fill += 1
        if flags[0] or flags[1]:
            self._new = True
        if self._fill == self.shard_rows:
            self.flush()

    def append(self, data):
        """Add every row of a :class:`~ctrlprop.Transitions`; its episodes get new ids after
        those written (the next :meth:`add` starts a new episode too)."""
        self._check_open()
        if not isinstance(data, Transitions):
            raise TypeError(f"data must be ctrlprop Transitions, got {type(data).__name__}")
        if (data.n_obs, data.n_act) != (self.n_obs, self.n_act):
            raise ValueError(f"data has n_obs={data.n_obs}, n_act={data.n_act}; the store "
                             f"n_obs={self.n_obs}, n_act={self.n_act}")
        N = len(data)
        if N == 0:
            return
        ep = data.episode
        first = np.r_[0, np.flatnonzero(np.diff(ep)) + 1]
        ids = np.repeat(np.arange(first.size), np.diff(np.r_[first, N])) \
            + self._last_episode + 1
        cols = dict(obs=data.obs, actions=data.actions, next_obs=data.next_obs,
                    rewards=data.rewards, terminated=data.terminated,
                    truncated=data.truncated, episode=ids)
        s = 0
        while s < N:
            k = min(self.shard_rows - self._fill, N - s)
            for name in _COLUMNS:
                self._buf[name][self._fill:self._fill + k] = cols[name][s:s + k]
            self._fill += k
            s += k
            if self._fill == self.shard_rows:
                self.flush()
        self._last_episode = int(ids[-1])
        self._new = True

    # ------------------------------------------------------------ writing shards
    def flush(self):
        """Write the buffered rows to disk now (a shard shorter than ``shard_rows``)."""
        self._check_open()
        n = self._fill
        if n == 0:
            return
        cols = {name: self._buf[name][:n] for name in _COLUMNS}
        if self.format == "npz":
            name = f"shard-{self._shards:06d}-{n}.npz"
            tmp = os.path.join(self.path, name + ".tmp")
            write_arrays(tmp, _SHARD_KIND, _VERSION, cols)
            os.replace(tmp, os.path.join(self.path, name))
            self._shards += 1
        else:
            g, a, b = self._zarr, self.flushed_rows, self.flushed_rows + n
            for key in _COLUMNS:
                arr = g[key]
                arr.resize((b,) + arr.shape[1:])
                arr[a:b] = cols[key]
            g.attrs["rows"] = b                              # the commit
        self.flushed_rows += n
        self._fill = 0

    def close(self):
        """Flush and close (idempotent)."""
        if not self._closed:
            self.flush()
            self._closed = True

    def _check_open(self):
        if self._closed:
            raise ValueError(f"the TransitionWriter of {self.path!r} is closed")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()                 # also on an exception: the buffered rows are kept
        return False

    def __reduce__(self):
        raise TypeError("a TransitionWriter holds buffered rows and an open store: it cannot "
                        "be pickled (pickle the TransitionStore of its path instead)")

    def __repr__(self):
        state = "closed" if self._closed else f"{self._fill} buffered"
        return (f"TransitionWriter({self.path!r}, format={self.format!r}, "
                f"{self.flushed_rows} rows on disk, {state})")


def _remove_store(path, fmt):
    """Remove a store's own files (mode 'w')."""
    if fmt == "npz":
        for f in os.listdir(path):
            if _SHARD.match(f) or f == _MANIFEST:
                os.remove(os.path.join(path, f))
        return
    import shutil
    for name in _COLUMNS:
        p = os.path.join(path, name)
        if os.path.isdir(p):
            shutil.rmtree(p)
    os.remove(os.path.join(path, "zarr.json"))


# ---------------------------------------------------------------- reading
class StoreColumn(RowArray):
    """One column of a :class:`TransitionStore` as an out-of-core array: ``shape``,
    ``dtype``, ``chunks`` (the shards) and row slices (``col[a:b]``, an ndarray) read from
    disk; ``np.asarray(col)`` reads it whole."""

    def __init__(self, store, name):
        self.store, self.name = store, name
        w = _widths(store.n_obs, store.n_act).get(name)
        self.shape = (len(store), w) if w else (len(store),)
        self.dtype = np.dtype(_DTYPES[name])
        self.chunks = (tuple(store._sizes),) + ((w,) if w else ())

    def _rows(self, a, b):
        return self.store._read(self.name, a, b)

    def __reduce__(self):
        return StoreColumn, (self.store, self.name)

    def __repr__(self):
        return f"StoreColumn({self.store.path!r}, {self.name!r}, shape={self.shape})"


class TrainingPairs(RowArray):
    """The model-training pairs of a :class:`TransitionStore`, computed per row block:
    ``X = [obs, actions]`` (N, n_obs + n_act) or ``Y`` = ``next_obs - obs`` (residual) or
    ``next_obs`` (N, n_obs), an out-of-core array (``shape``, ``dtype``, ``chunks``, row
    slices), as :meth:`ctrlprop.Transitions.training_pairs` computes them in memory."""

    def __init__(self, store, side, residual):
        self.store, self.side, self.residual = store, side, bool(residual)
        n, m = store.n_obs, store.n_act
        self.shape = (len(store), n + m if side == "X" else n)
        self.dtype = np.dtype(np.float64)
        self.chunks = (tuple(store._sizes), (self.shape[1],))

    def _rows(self, a, b):
        s = self.store
        if self.side == "X":
            return np.hstack([s._read("obs", a, b), s._read("actions", a, b)])
        nxt = s._read("next_obs", a, b)
        return nxt - s._read("obs", a, b) if self.residual else nxt

    def __reduce__(self):
        return TrainingPairs, (self.store, self.side, self.residual)

    def __repr__(self):
        return (f"TrainingPairs({self.store.path!r}, {self.side}, residual={self.residual}, "
                f"shape={self.shape})")


class TransitionStore:
    """Transitions on disk (written by :class:`TransitionWriter`), read without loading.

    Parameters
    ----------
    path : str or os.PathLike
        The store's directory (npz shards or a zarr group, recognised by their files).

    Attributes
    ----------
    path, format, n_obs, n_act, shard_rows
    obs, actions, next_obs, rewards, terminated, truncated, episode : StoreColumn
        The columns of :class:`~ctrlprop.Transitions` as out-of-core arrays, shapes
        (N, n_obs), (N, n_act), (N, n_obs), (N,), (N,), (N,), (N,): row slices are read
        from disk, ``np.asarray(column)`` reads a whole column.

    Notes
    -----
    The store shows the rows on disk when it was opened (open it again to see more).  It
    pickles as its path.  A corrupt or foreign store raises a ValueError naming the path.
    """

    def __init__(self, path):
        self.path = _check_path(path)
        fmt = _store_format(self.path) if os.path.isdir(self.path) else None
        if fmt is None:
            if not os.path.exists(self.path):
                raise FileNotFoundError(f"no transition store at path {self.path!r}")
            raise ValueError(f"path {self.path!r} is not a ctrlprop transition store "
                             f"(no {_MANIFEST} or zarr.json)")
        self.format = fmt
        self._cache = {}
        meta = self._open_npz() if fmt == "npz" else self._open_zarr()
        if meta.get("format") != _KIND or meta.get("format_version") != _VERSION:
            raise ValueError(f"path {self.path!r}: not a {_KIND} version {_VERSION} store")
        try:
            self.n_obs, self.n_act = int(meta["n_obs"]), int(meta["n_act"])
            self.shard_rows = int(meta["shard_rows"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"path {self.path!r}: invalid store manifest {meta}") from None
        self._offsets = np.r_[0, np.cumsum(self._sizes)].astype(np.int64)
        for name in _COLUMNS:
            setattr(self, name, StoreColumn(self, name))

    def _open_npz(self):
        try:
            with open(os.path.join(self.path, _MANIFEST)) as f:
                meta = json.load(f)
        except (OSError, ValueError) as e:
            raise ValueError(f"path {self.path!r}: unreadable manifest {_MANIFEST}: "
                             f"{e}") from None
        found = {}
        for f in os.listdir(self.path):
            m = _SHARD.match(f)
            if m:
                found[int(m.group(1))] = (f, int(m.group(2)))
        if sorted(found) != list(range(len(found))):
            missing = sorted(set(range(max(found) + 1)) - set(found))
            raise ValueError(f"path {self.path!r}: shard(s) {missing} are missing")
        self._files = [os.path.join(self.path, found[i][0]) for i in range(len(found))]
        self._sizes = [found[i][1] for i in range(len(found))]
        return meta

    def _open_zarr(self):
        zarr = _zarr()
        try:
            g = zarr.open_group(self.path, mode="r")
            meta = dict(g.attrs)
            N = int(meta.get("rows", -1))
            arrays = {name: g[name] for name in _COLUMNS}
        except Exception as e:                      # noqa: BLE001 -- zarr's many errors
            raise ValueError(f"path {self.path!r}: not a readable zarr transition store: "
                             f"{type(e).__name__}: {e}") from None
        if N < 0 or any(a.shape[0] < N for a in arrays.values()):
            raise ValueError(f"path {self.path!r}: the zarr store's rows attribute ({N}) "
                             f"does not match its arrays")
        self._arrays = arrays
        L = int(meta.get("shard_rows", max(N, 1)))
        self._sizes = [min(L, N - a) for a in range(0, N, L)]
        return meta

    # ------------------------------------------------------------ reading rows
    def _shard(self, i, name):
        """Column ``name`` of npz shard i (a few shard columns are cached)."""
        key = (i, name)
        a = self._cache.get(key)
        if a is None:
            d = read_arrays(self._files[i], _SHARD_KIND, _VERSION, (name,))
            a = d[name]
            if a.shape[0] != self._sizes[i]:
                raise ValueError(f"{self._files[i]}: column {name} has {a.shape[0]} rows, "
                                 f"its name says {self._sizes[i]}")
            if len(self._cache) >= 2 * len(_COLUMNS):
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = a
        return a

    def _read(self, name, a, b):
        """Rows a:b of column ``name`` as an ndarray (0 <= a <= b <= N)."""
        if self.format == "zarr":
            return np.asarray(self._arrays[name][a:b])
        w = _widths(self.n_obs, self.n_act).get(name)
        if b <= a:
            return np.empty((0, w) if w else (0,), _DTYPES[name])
        off = self._offsets
        i0 = int(np.searchsorted(off, a, side="right")) - 1
        i1 = int(np.searchsorted(off, b - 1, side="right")) - 1
        parts = [self._shard(i, name)[max(a, off[i]) - off[i]:min(b, off[i + 1]) - off[i]]
                 for i in range(i0, i1 + 1)]
        return parts[0].copy() if len(parts) == 1 else np.concatenate(parts)

    def __len__(self):
        return int(self._offsets[-1])

    def __getitem__(self, rows):
        """Rows by a slice, read into a :class:`~ctrlprop.Transitions`."""
        if not isinstance(rows, slice):
            raise TypeError(f"a TransitionStore is sliced by rows (a slice), got "
                            f"{type(rows).__name__}")
        a, b, step = rows.indices(len(self))
        if step != 1:
            raise ValueError("a TransitionStore is sliced by contiguous rows (step 1)")
        b = max(a, b)
        try:
            return Transitions(*(self._read(name, a, b) for name in _COLUMNS))
        except (TypeError, ValueError) as e:
            raise ValueError(f"path {self.path!r}: invalid transitions in rows {a}..{b - 1}: "
                             f"{e}") from None

    def load(self):
        """Every row, in memory (a :class:`~ctrlprop.Transitions`)."""
        return self[:]

    def blocks(self, rows=STATS_ROWS):
        """Iterate over the rows as :class:`~ctrlprop.Transitions` of at most ``rows`` rows."""
        L = check_int(rows, "rows", 1)
        for a in range(0, len(self), L):
            yield self[a:a + L]

    def episode_ids(self):
        """The episode indices present, in order (the episode column read in blocks)."""
        ids = [np.unique(self._read("episode", a, min(a + STATS_ROWS, len(self))))
               for a in range(0, len(self), STATS_ROWS)]
        return np.unique(np.concatenate(ids)) if ids else np.zeros(0, np.int64)

    @property
    def n_episodes(self):
        """Number of (possibly partial) episodes."""
        return int(self.episode_ids().size)

    def training_pairs(self, residual=True):
        """Model-training pairs ``X = [obs, actions]`` (N, n_obs + n_act) and ``Y``
        (``next_obs - obs`` when ``residual``, else ``next_obs``; (N, n_obs)) as
        out-of-core arrays computed per row block (:class:`TrainingPairs`)."""
        if not isinstance(residual, (bool, np.bool_)):
            raise TypeError(f"residual must be True or False, got {type(residual).__name__}")
        return TrainingPairs(self, "X", residual), TrainingPairs(self, "Y", residual)

    def __reduce__(self):
        return TransitionStore, (self.path,)

    def __repr__(self):
        return (f"TransitionStore({self.path!r}, format={self.format!r}, {len(self)} rows, "
                f"n_obs={self.n_obs}, n_act={self.n_act})")
