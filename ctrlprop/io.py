"""Saving and loading networks.

File format (``.npz``, read with ``allow_pickle=False``), format version 1:

===============  ==========================  =========================================
key              dtype, shape                meaning
===============  ==========================  =========================================
format           str ``"ctrlprop.Network"``  identifies the file
format_version   int64 scalar                1
n_inputs         int64 scalar                number of input units
edges            int64 (E, 2)                (source, destination) pairs
transfers        str (n_units - n_inputs,)   transfer names, in unit order
outputs          int64 (n_outputs,)          output units, in order
bias             bool scalar                 bias unit connected
weights          float64 (n_weights,)        the flat weight vector
x_mean, x_scale  float64 (n_inputs,)         optional input standardisation
y_mean, y_scale  float64 (n_outputs,)        optional output standardisation
===============  ==========================  =========================================

Custom transfer functions are stored by name only: register them (same name)
before loading.
"""

import zipfile

import numpy as np

from .network import Network
from .transfer import transfer_names

__all__ = ["save", "load", "FORMAT_VERSION"]

FORMAT_VERSION = 1
_KIND = "ctrlprop.Network"


def save(net, path):
    """Write ``net`` to ``path`` in the format above (the path is used as given)."""
    data = dict(format=np.array(_KIND), format_version=np.array(FORMAT_VERSION),
                n_inputs=np.array(net.n_inputs),
                edges=np.array(net.edges, dtype=np.int64).reshape(-1, 2),
                transfers=np.array([t.name for t in net.transfers]),
                outputs=np.array(net.outputs, dtype=np.int64), bias=np.array(net.bias),
                weights=net.weights)
    if net.input_scaling is not None:
        data["x_mean"], data["x_scale"] = net.input_scaling
    if net.output_scaling is not None:
        data["y_mean"], data["y_scale"] = net.output_scaling
    with open(path, "wb") as f:
        np.savez(f, **data)


def load(path):
    """Read a network written by :meth:`Network.save`.

    Raises
    ------
    ValueError
        If the file is truncated or corrupt, is not a ctrlprop network, has an
        unsupported format version, names an unregistered transfer function,
        or holds inconsistent arrays.  The message names the file.
    """
    try:
        with np.load(path, allow_pickle=False) as z:
            d = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as e:
        raise ValueError(f"{path}: not a readable ctrlprop model file (truncated or corrupt): "
                         f"{e}") from None
    if not isinstance(d, dict) or str(d.get("format", "")) != _KIND:
        raise ValueError(f"{path}: not a ctrlprop network file (missing format={_KIND!r})")
    try:
        version = int(d["format_version"])
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"{path}: missing or invalid format_version") from None
    if version != FORMAT_VERSION:
        raise ValueError(f"{path}: format version {version} is not supported (this ctrlprop "
                         f"reads version {FORMAT_VERSION})")
    missing = [k for k in ("n_inputs", "edges", "transfers", "outputs", "bias", "weights")
               if k not in d]
    if missing:
        raise ValueError(f"{path}: missing entries {missing}")
    names = [str(t) for t in d["transfers"]]
    unknown = sorted(set(names) - set(transfer_names()))
    if unknown:
        raise ValueError(f"{path}: transfer function(s) {unknown} are not registered; register "
                         "them with ctrlprop.register_transfer(name, h, dh) before loading")
    try:
        net = Network.from_edges(int(d["n_inputs"]), [tuple(e) for e in d["edges"].tolist()],
                                 names, d["outputs"].tolist(), bias=bool(d["bias"]))
        net.weights = d["weights"]
        if "x_mean" in d or "y_mean" in d:
            net.set_scaling(d.get("x_mean"), d.get("x_scale"), d.get("y_mean"), d.get("y_scale"))
    except (ValueError, TypeError) as e:
        raise ValueError(f"{path}: inconsistent model file: {e}") from None
    return net
