#!/usr/bin/env python3
"""Fingerprint of a fixed ul4m4 workload, run with 1, 2, 3 and 4 threads.

Fits a model (k-means++ with several starts, a few Lloyd iterations), then completes the
training rows and new rows with greedy and soft completion; hashes every output bit
(statistics, centres, labels, inertia, completed arrays and masks) with SHA-256. Prints one
JSON line: {"backend": ..., "simd": ..., "hashes": {"1": h, "2": h, ...}}.

Results must not depend on the thread count nor on the threading backend, so:
  * every hash of one run must be the same (tests/test_platform.py checks it);
  * the OpenMP build and the thread-pool build (UL4M4_OPENMP=OFF) must print the same hash
    on one machine and SIMD level: .ci/run runs this in both and passes the first build's
    hash to the second with --expect.

Usage: python tools/threading_check.py [--simd LEVEL] [--expect HASH]
Exit status 1 when the thread counts disagree or the hash differs from --expect.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import warnings

import numpy as np


def _problem():
    rng = np.random.default_rng(20261202)
    n, dims, K = 3000, (37, 16, 70), 9
    centres = [rng.normal(scale=3.0, size=(K, d)) for d in dims]
    lab = rng.integers(0, K, size=n)
    Xs = [(c[lab] + rng.normal(size=(n, c.shape[1]))).astype(dt) for c, dt in zip(centres, (np.float32, np.float64, np.float32))]
    mask = rng.random((n, len(dims))) > 0.35
    mask[np.arange(n), rng.integers(0, len(dims), size=n)] = True  # every row keeps a modality
    new = [x[:500][::-1].copy() for x in Xs]
    new_mask = mask[:500][::-1].copy()
    return Xs, mask, new, new_mask, K


def fingerprint(n_threads: int) -> str:
    import ul4m4

    Xs, mask, new, new_mask, K = _problem()
    h = hashlib.sha256()

    def add(a):
        a = np.ascontiguousarray(np.asarray(a))
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(a.tobytes())

    imp = ul4m4.UL4M4Imputer(K, random_state=7, n_init=3, max_iter=6, n_threads=n_threads, chunk_size=97)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning at max_iter: expected here
        imp.fit(Xs, mask=mask)
    for a in (*imp.mean_, *imp.scale_, *imp.cluster_centers_, imp.center_mask_, imp.labels_, [imp.inertia_]):
        add(a)
    for completion in ("greedy", "soft"):
        for data, m in ((Xs, mask), (new, new_mask)):
            out, imputed, unfilled = imp.transform(data, mask=m, return_masks=True, completion=completion)
            for a in (*out, imputed, unfilled):
                add(a)
    return h.hexdigest()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--simd", help="SIMD level to run (default: the CPU's best)")
    ap.add_argument("--expect", help="hash the run must give (e.g. the other threading backend's)")
    args = ap.parse_args(argv)
    import ul4m4

    if args.simd:
        ul4m4.set_simd_level(args.simd)
    hashes = {str(t): fingerprint(t) for t in (1, 2, 3, 4)}
    print(json.dumps({"backend": ul4m4.threading_backend(), "simd": ul4m4.simd_level(), "hashes": hashes}))
    if len(set(hashes.values())) != 1:
        print("threading_check: thread counts give different results", file=sys.stderr)
        return 1
    if args.expect and hashes["1"] != args.expect:
        print(f"threading_check: hash {hashes['1']} differs from the expected {args.expect}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
