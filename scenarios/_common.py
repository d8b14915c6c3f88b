"""Shared plumbing of the scenario scripts: arguments, model cache, metrics and summary output."""

import argparse
import hashlib
import json
import os
import time

import numpy as np

import ctrlprop as cp


def parse_args(name, description, argv=None):
    """Standard scenario options: --seed, --quick, --out, --cache, --retrain, --no-progress."""
    p = argparse.ArgumentParser(prog=f"{name}.py", description=description)
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--quick", action="store_true",
                   help="small problem sizes: finishes in under 30 s (used by the tests)")
    p.add_argument("--out", default=None, help=f"output folder (default out/{name})")
    p.add_argument("--cache", default=None,
                   help="folder for trained models (default <out>/cache); reused when the "
                        "training settings match")
    p.add_argument("--retrain", action="store_true", help="ignore cached models")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no live progress lines (shown by default, on stderr)")
    args = p.parse_args(argv)
    args.out = args.out or os.path.join("out", name)
    args.cache = args.cache or os.path.join(args.out, "cache")
    os.makedirs(args.out, exist_ok=True)
    return args


def cached_model(args, tag, settings, train):
    """Load the model for ``settings`` from the cache, or call ``train()`` and save its result.

    ``settings`` is a JSON-serialisable dict of everything the model depends on;
    ``train()`` returns ``(net, history)``: the Network and a JSON-serialisable
    training history (or None), kept in a side file next to the model.
    Returns ``(net, info, history)``; info says whether the model was loaded,
    how long training took and where the model file is.
    """
    key = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    path = os.path.join(args.cache, f"{tag}-{key}.npz")
    hist_path = path[:-len(".npz")] + "-history.json"
    if os.path.exists(path) and not args.retrain:
        try:
            net = cp.load(path)
        except ValueError as e:                      # a corrupt cache entry: retrain, say so
            print(f"note: ignoring unreadable cached model ({e})")
        else:
            history = None
            if os.path.exists(hist_path):
                with open(hist_path) as f:
                    history = json.load(f)
            return net, {"cached": True, "train_seconds": 0.0, "path": path}, history
    t0 = time.perf_counter()
    net, history = train()
    seconds = time.perf_counter() - t0
    os.makedirs(args.cache, exist_ok=True)
    net.save(path)
    if history is not None:
        with open(hist_path, "w") as f:
            json.dump(_plain(history), f)
    return net, {"cached": False, "train_seconds": round(seconds, 2), "path": path}, history


def _plain(v):
    """JSON-friendly version of numpy scalars and arrays."""
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, np.ndarray):
        return _plain(v.tolist())
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, float) and not np.isfinite(v):
        return None
    return v


def write_metrics(args, name, metrics):
    """Write metrics.json to the output folder and print a summary table."""
    data = {"scenario": name, "seed": args.seed, "quick": bool(args.quick), **_plain(metrics)}
    path = os.path.join(args.out, "metrics.json")
    with open(path, "w") as f:
        json.dump(data, f, indent=2)
    width = max(len(k) for k in data)
    print(f"\n{name} summary" + (" (quick)" if args.quick else ""))
    print("-" * (width + 24))
    for k, v in data.items():
        if isinstance(v, float):
            v = f"{v:.4g}"
        elif isinstance(v, (list, dict)):
            v = json.dumps(v)[:60]
        print(f"{k.ljust(width)}  {v}")
    print(f"\nwrote {path}")
    return path
