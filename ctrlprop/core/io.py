"""Versioned ``.npz`` files read without pickle: the storage layer under every saved object.

A file holds named arrays plus two identifying entries, ``format`` (a string naming the
kind of object, e.g. ``"ctrlprop.Network"``) and ``format_version`` (an integer).
:func:`write_arrays` writes one; :func:`read_arrays` reads it back with
``allow_pickle=False`` and checks the kind, the version and the required keys, raising a
ValueError that names the file for anything truncated, corrupt or foreign.  The objects
that are saved (:meth:`ctrlprop.Network.save`) build on these two functions, so this
module imports nothing of ctrlprop's.
"""

import os
import zipfile

import numpy as np

__all__ = ["write_arrays", "read_arrays"]


def write_arrays(path, kind, version, arrays):
    """Write ``arrays`` (a dict of array_like) to ``path`` as a ``kind`` file of ``version``.

    The path is used as given (no ``.npz`` is appended).
    """
    data = dict(format=np.array(kind), format_version=np.array(int(version)))
    clash = set(data) & set(arrays)
    if clash:
        raise ValueError(f"array names {sorted(clash)} are reserved")
    data.update({k: np.asarray(v) for k, v in arrays.items()})
    with open(path, "wb") as f:
        np.savez(f, **data)


def read_arrays(path, kind, version, required=()):
    """The arrays of a ``kind`` file of ``version`` at ``path``, as a dict (``kind`` may be a
    tuple of accepted kinds; ``d["format"]`` says which one it is).

    Raises
    ------
    TypeError
        If ``path`` is not a file name (str, bytes, os.PathLike) or an open binary file.
    FileNotFoundError
        If there is no such file.
    ValueError
        If the file is truncated or corrupt, is not a ``kind`` file, has another
        format version, or lacks one of the ``required`` keys; the message names the file.
    """
    if not (isinstance(path, (str, bytes, os.PathLike)) or hasattr(path, "read")):
        raise TypeError(f"path must be a file name (str or os.PathLike) or an open binary "
                        f"file, got {type(path).__name__}: {path!r:.60}")
    try:
        with np.load(path, allow_pickle=False) as z:
            d = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError, AttributeError) as e:
        raise ValueError(f"{path}: not a readable ctrlprop file (truncated or corrupt): "
                         f"{e}") from None
    kinds = (kind,) if isinstance(kind, str) else tuple(kind)
    if not isinstance(d, dict) or str(d.get("format", "")) not in kinds:
        want = " or ".join(kinds)
        raise ValueError(f"{path}: not a {want} file (missing format={kinds[0]!r})")
    try:
        found = int(d["format_version"])
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"{path}: missing or invalid format_version") from None
    if found != version:
        raise ValueError(f"{path}: format version {found} is not supported (this ctrlprop "
                         f"reads version {version})")
    missing = [k for k in required if k not in d]
    if missing:
        raise ValueError(f"{path}: missing entries {missing}")
    return d
