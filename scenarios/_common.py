"""Shared plumbing of the scenario scripts: arguments, model cache, metrics and summary
output, and sweeps over seeds (``--seeds 0 1 2 --workers 2`` or ``--scheduler ADDRESS``)."""

import argparse
import hashlib
import json
import os
import sys
import time

import numpy as np

import ctrlprop as cp


def parse_args(name, description, argv=None):
    """Standard scenario options: --seed, --quick, --out, --cache, --retrain, --no-progress."""
    p = argparse.ArgumentParser(
        prog=f"{name}.py", description=description,
        epilog="sweeps: --seeds S [S ...] runs the scenario once per seed and summarizes "
               "the metrics; add --workers N (worker processes) or --scheduler ADDRESS|local "
               "(a Dask cluster) to run seeds at once")
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


# ---------------------------------------------------------------- sweeps over seeds
def _sweep_parser(name):
    p = argparse.ArgumentParser(prog=f"{name}.py", add_help=False, allow_abbrev=False)
    p.add_argument("--seeds", type=int, nargs="+", default=None,
                   help="run the scenario once per seed (into <out>/seed_<s>/) and "
                        "summarize the metrics over the seeds")
    p.add_argument("--workers", type=int, default=1,
                   help="with --seeds: run that many seeds at once in worker processes "
                        "(default 1: one after another)")
    p.add_argument("--scheduler", default=None,
                   help="with --seeds: run on a Dask cluster: a scheduler address "
                        "(tcp://host:8786) or 'local' for a LocalCluster of --workers "
                        "processes (needs pip install 'ctrlprop[dask]')")
    return p


def run_main(path, main, argv=None):
    """A scenario's command line: ``main(argv)``, or with ``--seeds`` a sweep of it.

    The sweep runs the script once per seed in a fresh interpreter (``ctrlprop.sweep``
    with ``ctrlprop.run_script``), serially, on a ``ProcessPoolExecutor(--workers)`` or
    on Dask (``--scheduler``), each run writing to ``<out>/seed_<s>/``; then it prints
    the numeric metrics over the seeds and writes ``<out>/sweep.json``.  Seeds that
    failed are listed (with the end of their error output) and the others are kept.
    """
    name = os.path.splitext(os.path.basename(path))[0]
    argv = sys.argv[1:] if argv is None else list(argv)
    sw, rest = _sweep_parser(name).parse_known_args(argv)
    if sw.seeds is None:
        if sw.workers != 1 or sw.scheduler is not None:
            raise SystemExit(f"{name}.py: --workers and --scheduler run a sweep: give "
                             f"--seeds too")
        return main(rest)
    if sw.workers < 1:
        raise SystemExit(f"{name}.py: --workers must be at least 1, got {sw.workers}")
    if "--seed" in rest:
        raise SystemExit(f"{name}.py: give either --seed or --seeds, not both")
    out = os.path.join("out", name)
    if "--out" in rest:
        i = rest.index("--out")
        out = rest[i + 1]
        del rest[i:i + 2]
    out = os.path.abspath(out)     # the workers write there (a shared filesystem on a cluster)
    runs = [{"path": path, "args": rest + ["--seed", s, "--out",
                                           os.path.join(out, f"seed_{s}"), "--no-progress"]}
            for s in sw.seeds]
    t0 = time.perf_counter()
    failed = {}
    with _executor(sw) as executor:
        if executor is None:                         # one after another, every seed run
            for s, run in zip(sw.seeds, runs):
                try:
                    cp.run_script(**run)
                except RuntimeError as e:
                    failed[s] = e
        else:
            try:
                cp.sweep(cp.run_script, runs, executor=executor, progress=True)
            except cp.ParallelError as e:
                failed = {sw.seeds[p[0]]: err for p, err in e.failed}
    seconds = time.perf_counter() - t0
    return _summarize(name, out, sw.seeds, failed, seconds)


class _executor:
    """The executor of a sweep's options, shut down at the end."""

    def __init__(self, sw):
        self.sw, self.close = sw, []

    def __enter__(self):
        sw = self.sw
        if sw.scheduler is not None:
            try:
                import distributed
            except ImportError:
                raise SystemExit("--scheduler needs Dask: pip install 'ctrlprop[dask]'") from None
            if sw.scheduler == "local":
                cluster = distributed.LocalCluster(n_workers=sw.workers, threads_per_worker=1,
                                                   dashboard_address=None)
                self.close.append(cluster.close)
                client = distributed.Client(cluster)
            else:
                client = distributed.Client(sw.scheduler)
            # close the client, never shut it down: shutdown() stops a shared cluster
            self.close.insert(0, client.close)
            return client.get_executor()
        if sw.workers > 1:
            from concurrent.futures import ProcessPoolExecutor
            ex = ProcessPoolExecutor(sw.workers)
            self.close.append(ex.shutdown)
            return ex
        return None

    def __exit__(self, *exc):
        for close in self.close:
            close()


def _summarize(name, out, seeds, failed, seconds):
    """Print and write the metrics over the seeds of a sweep."""
    per_seed = {}
    for s in seeds:
        path = os.path.join(out, f"seed_{s}", "metrics.json")
        if os.path.exists(path) and s not in failed:
            with open(path) as f:
                per_seed[s] = json.load(f)
    keys = [k for k, v in (next(iter(per_seed.values())).items() if per_seed else [])
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "seed"]
    print(f"\n{name}: {len(per_seed)} of {len(seeds)} seeds ran, in {seconds:.1f} s")
    summary = {}
    if keys:
        width = max(len(k) for k in keys)
        print(f"{'metric'.ljust(width)}  {'mean':>10}  {'std':>10}  {'min':>10}  {'max':>10}")
        for k in keys:
            v = np.array([m[k] for m in per_seed.values() if isinstance(m.get(k), (int, float))],
                         dtype=float)
            summary[k] = dict(mean=v.mean(), std=v.std(), min=v.min(), max=v.max())
            print(f"{k.ljust(width)}  {v.mean():10.4g}  {v.std():10.4g}  {v.min():10.4g}  "
                  f"{v.max():10.4g}")
    for s, err in failed.items():
        print(f"\nseed {s} failed: {err}")
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "sweep.json")
    with open(path, "w") as f:
        json.dump(_plain({"scenario": name, "seeds": seeds, "seconds": round(seconds, 1),
                          "failed": sorted(str(s) for s in failed),
                          "summary": summary, "per_seed": per_seed}), f, indent=2)
    print(f"wrote {path}")
    if failed:
        raise SystemExit(1)
    return summary
