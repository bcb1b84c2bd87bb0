"""Fit to convergence: algorithm="bounded" against algorithm="lloyd", alternated in one process.

    python bench/bounded.py                                  # N=200000, 768/1024/768, K=64 and 256
    python bench/bounded.py --n 50000 --k 64 256 --rounds 2 --json bench/results/bounded.json

Same data (``core_workload.make_data``, 32 Gaussian blobs), the same initial centres (K rows
of the data), the same tol and max_iter for both; the runs alternate lloyd, bounded, lloyd,
bounded... so that a change of the machine's load hits both. Checks that both fits give the
same labels, centres (bit for bit) and n_iter, and reports the fraction of row-centre
distances the bounded passes skipped per iteration. Times are the best over ``--rounds``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from core_workload import cpu_name, make_data  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--dims", type=int, nargs="+", default=[768, 1024, 768])
    ap.add_argument("--k", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--missing", type=float, nargs="+", default=[0.5, 0.0])
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--max-iter", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    import ul4m4

    nt = args.threads or len(os.sched_getaffinity(0))
    res = {"n": args.n, "dims": args.dims, "tol": args.tol, "max_iter": args.max_iter, "threads": nt,
           "simd": ul4m4.simd_level(), "max_simd": ul4m4.max_simd_level(),
           "cpu": cpu_name(), "loadavg_start": os.getloadavg(), "runs": []}
    print(f"# ul4m4 {ul4m4.__version__}, SIMD {ul4m4.simd_level()} (max {ul4m4.max_simd_level()}), {nt} threads, "
          f"load {os.getloadavg()[0]:.2f}")
    for missing in args.missing:
        Xs, P = make_data(args.n, args.dims, missing)
        for K in args.k:
            rng = np.random.default_rng(1)
            rows = rng.choice(args.n, K, replace=False)
            init = ([X[rows].copy() for X in Xs], P[rows].copy())
            times = {"lloyd": [], "bounded": []}
            fits = {}
            for _ in range(args.rounds):
                for alg in ("lloyd", "bounded"):
                    imp = ul4m4.UL4M4Imputer(K, init=init, max_iter=args.max_iter, tol=args.tol, algorithm=alg,
                                             n_threads=nt)
                    t = time.perf_counter()
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        imp.fit(Xs, mask=P)
                    times[alg].append(time.perf_counter() - t)
                    fits[alg] = imp
            a, b = fits["lloyd"], fits["bounded"]
            same = bool(np.array_equal(a.labels_, b.labels_) and a.n_iter_ == b.n_iter_ and a.inertia_ == b.inertia_
                        and all(np.array_equal(x, y, equal_nan=True)
                                for x, y in zip(a.cluster_centers_, b.cluster_centers_)))
            skipped = [round(h["skipped"], 4) for h in b.history_]
            it_l = [h["seconds"] for h in a.history_]
            it_b = [h["seconds"] for h in b.history_]
            run = {"k": K, "missing": missing, "n_iter": a.n_iter_, "converged": a.n_iter_ < args.max_iter,
                   "identical": same,
                   "lloyd_s": min(times["lloyd"]), "bounded_s": min(times["bounded"]),
                   "lloyd_all_s": times["lloyd"], "bounded_all_s": times["bounded"],
                   "speedup": min(times["lloyd"]) / min(times["bounded"]),
                   "lloyd_iter_median_s": float(np.median(it_l)) if it_l else None,
                   "bounded_iter_median_s": float(np.median(it_b)) if it_b else None,
                   "skipped_per_iter": skipped,
                   "skipped_mean": float(np.mean(skipped)) if skipped else 0.0}
            res["runs"].append(run)
            print(f"missing {missing:.2f} K {K:4d}: n_iter {a.n_iter_:3d}  lloyd {run['lloyd_s']:8.2f} s  "
                  f"bounded {run['bounded_s']:8.2f} s  = {run['speedup']:.2f}x  identical {same}  "
                  f"skipped mean {run['skipped_mean']:.3f} (first 8: {skipped[:8]})", flush=True)
            res["loadavg_end"] = os.getloadavg()
            if args.json:  # after every run, so that a long session keeps what it measured
                with open(args.json, "w") as fh:
                    json.dump(res, fh, indent=1)
        del Xs, P
    return res


if __name__ == "__main__":
    main()
