"""transform without out= against the same call into reused buffers, alternated in one process.

    python bench/fresh_outputs.py                       # N=100000, widths 768/1024/768, K=64, half missing
    python bench/fresh_outputs.py --n 200000 --repeat 5 --json bench/results/fresh_outputs.json

Per completion (greedy, soft), round after round: out= buffers reused across calls; fresh
outputs from ul4m4's output pool (the default; python/bindings/output_pool.hpp); fresh
outputs from numpy's allocator (the pool switched off through
``ul4m4._arrays.POOLED_OUTPUT_BYTES``: what every call paid before the pool). Reports wall
seconds, system CPU seconds and minor page faults of each call (getrusage deltas), medians
over ``--repeat`` rounds, and the first call of the process apart (the pool is empty then).
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.core_workload import make_data  # noqa: E402

KINDS = ("reused", "fresh_pool", "fresh_numpy")


def _usage():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_stime, r.ru_minflt


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dims", type=int, nargs="+", default=[768, 1024, 768])
    ap.add_argument("--k", type=int, default=64)
    ap.add_argument("--missing", type=float, default=0.5)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    import ul4m4
    from ul4m4 import _arrays

    nt = args.threads or len(os.sched_getaffinity(0))
    Xs, P = make_data(args.n, args.dims, args.missing)
    rows = np.random.default_rng(1).choice(args.n, args.k, replace=False)
    init = ([X[rows].copy() for X in Xs], np.ones((args.k, len(Xs)), bool))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        imp = ul4m4.UL4M4Imputer(args.k, init=init, max_iter=2, tol=0.0, n_threads=nt).fit(Xs, mask=P)
    pooled = _arrays.POOLED_OUTPUT_BYTES
    res = {"n": args.n, "dims": args.dims, "k": args.k, "threads": nt, "simd": ul4m4.simd_level(),
           "loadavg_start": os.getloadavg(), "calls": {}}
    print(f"# ul4m4 {ul4m4.__version__}, SIMD {res['simd']}, {nt} threads, N={args.n}, load {os.getloadavg()[0]:.2f}")
    t0 = time.perf_counter()
    y = imp.transform(Xs, mask=P)
    res["first_call_s"] = time.perf_counter() - t0
    del y
    print(f"first call of the process, fresh outputs (pool empty): {res['first_call_s']:.3f} s")
    outs = [np.empty_like(X) for X in Xs]
    imp.transform(Xs, mask=P, out=outs)
    try:
        for _ in range(args.repeat):
            for mode in ("greedy", "soft"):
                for kind in KINDS:
                    _arrays.POOLED_OUTPUT_BYTES = 1 << 62 if kind == "fresh_numpy" else pooled
                    gc.collect()
                    s0, f0 = _usage()
                    t0 = time.perf_counter()
                    y = imp.transform(Xs, mask=P, completion=mode, out=outs if kind == "reused" else None)
                    dt = time.perf_counter() - t0
                    s1, f1 = _usage()
                    del y
                    res["calls"].setdefault(f"{mode} {kind}", []).append({"s": dt, "sys_s": s1 - s0, "minflt": f1 - f0})
    finally:
        _arrays.POOLED_OUTPUT_BYTES = pooled
    res["summary"] = {}
    for mode in ("greedy", "soft"):
        base = float(np.median([c["s"] for c in res["calls"][f"{mode} reused"]]))
        for kind in KINDS:
            calls = res["calls"][f"{mode} {kind}"]
            med = float(np.median([c["s"] for c in calls]))
            row = {"median_s": med, "min_s": min(c["s"] for c in calls), "x_reused": med / base,
                   "median_sys_s": float(np.median([c["sys_s"] for c in calls])),
                   "median_minflt": int(np.median([c["minflt"] for c in calls]))}
            res["summary"][f"{mode} {kind}"] = row
            print(f"  {mode:6} {kind:11}  median {med:7.3f} s  ({row['x_reused']:.2f} x reused)  min {row['min_s']:.3f} s"
                  f"  sys {row['median_sys_s']:.3f} s  minor faults {row['median_minflt']}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(res, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
