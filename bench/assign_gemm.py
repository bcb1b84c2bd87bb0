"""The assignment pass against numpy's matmul floor, per SIMD level, in one process.

    python bench/assign_gemm.py                       # N=20000, widths 768/1024/768, K=64
    python bench/assign_gemm.py --n 200000 --levels avx2 --rounds 5

Complete data (every modality present), so the pass is the dense distance GEMM plus the
argmin: ``predict`` of a fitted model, against the floor sum_m X_m @ C_m.T (numpy's BLAS,
same rows, same widths, same K). The levels and the floor are timed alternately, round
after round, and the best round of each is reported (the machine may be shared: the
alternation keeps background load from favouring one of them).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.core_workload import make_data  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--dims", type=int, nargs="+", default=[768, 1024, 768])
    ap.add_argument("--k", type=int, default=64)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--levels", nargs="+", default=None, help="SIMD levels (default: every level this CPU runs)")
    args = ap.parse_args(argv)

    import ul4m4

    nt = args.threads or len(os.sched_getaffinity(0))
    levels = args.levels or list(ul4m4.available_simd_levels())
    Xs, P = make_data(args.n, args.dims, 0.0)
    rng = np.random.default_rng(1)
    rows = rng.choice(args.n, args.k, replace=False)
    imp = ul4m4.UL4M4Imputer(args.k, init=([X[rows] for X in Xs], P[rows]), max_iter=1, tol=0.0, n_threads=nt)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        imp.fit(Xs, mask=P)
    # The floor multiplies the normalised data by the normalised centres, as the pass does.
    C = [rng.standard_normal((args.k, d), dtype=np.float32) for d in args.dims]
    before = ul4m4.simd_level()
    best = {name: float("inf") for name in levels + ["floor"]}
    labels = {}
    try:
        for _ in range(args.rounds):
            for lv in levels:
                ul4m4.set_simd_level(lv)
                t = time.perf_counter()
                labels[lv] = imp.predict(Xs, mask=P)
                best[lv] = min(best[lv], time.perf_counter() - t)
            t = time.perf_counter()
            sum(X @ c.T for X, c in zip(Xs, C))
            best["floor"] = min(best["floor"], time.perf_counter() - t)
    finally:
        ul4m4.set_simd_level(before)
    print(f"# N={args.n} widths={args.dims} K={args.k} threads={nt}, best of {args.rounds} alternated rounds")
    for name in levels + ["floor"]:
        print(f"{name:8s} {best[name]:.4f} s  {best[name] / best['floor']:.2f} x floor")
    same = all(np.array_equal(labels[lv], labels[levels[0]]) for lv in levels)
    print(f"labels equal across levels: {same}")


if __name__ == "__main__":
    main()
