"""The engine's reference workload, measured side by side in one run.

    python bench/core_workload.py                 # N=200000, widths 768/1024/768, K=64
    python bench/core_workload.py --n 20000 --json out.json

Measures, on the same data and in one process (so ratios are fair):
  * the floor of the assignment: numpy's matmul of the dense core, sum_m X_m @ C_m.T,
    on complete data and on the present rows of half-missing data (rows gathered before
    timing);
  * one Lloyd iteration of ul4m4 (centre update + assignment pass, from ``history_``) on
    complete and on half-missing data;
  * one assignment pass (``predict``) and completion (``transform``, greedy and soft) of
    the incomplete rows, in rows per second;
  * peak memory of fit and of transform beyond the inputs and outputs, each in a fresh
    subprocess (VmHWM after resetting it through /proc/self/clear_refs).
Times are the best of ``--repeat`` calls. Completion writes into output buffers reused
across calls (as a training loop or chunked job does), in place (out=X) and into fresh
output arrays (no out=; after the first call these reuse the pages the previous call's
outputs freed, through ul4m4's output pool; the first call is reported on its own).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np


def make_data(n, dims, missing, seed=0):
    rng = np.random.default_rng(seed)
    Xs = [rng.standard_normal((n, d), dtype=np.float32) for d in dims]
    # Cluster structure so k-means has something to find.
    K0 = 32
    lab = rng.integers(0, K0, n)
    for X, d in zip(Xs, dims):
        X += 2.0 * rng.standard_normal((K0, d), dtype=np.float32)[lab]
    P = rng.random((n, len(dims))) >= missing
    empty = ~P.any(axis=1)
    P[empty, rng.integers(0, len(dims), empty.sum())] = True
    return Xs, P


def best_of(fn, repeat):
    best = float("inf")
    out = None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def cpu_name():
    """The CPU's model name followed by its family and model numbers (x86 Linux; some AMD VMs
    name themselves only "AMD EPYC"), or platform's name where /proc/cpuinfo has neither."""
    info = {}
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                key, _, val = line.partition(":")
                info.setdefault(key.strip(), val.strip())
    except OSError:
        pass
    name = info.get("model name") or platform.processor() or platform.machine()
    if "cpu family" in info and "model" in info:
        name += f" (family {info['cpu family']}, model {info['model']})"
    return name


def vm_kib(field):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def peak_phase(args):
    """Child process: peak memory of one phase beyond inputs and outputs, in MiB."""
    import ul4m4

    Xs, P = make_data(args.n, args.dims, args.missing)
    rng = np.random.default_rng(1)
    rows = rng.choice(args.n, args.k, replace=False)
    init = ([X[rows] for X in Xs], P[rows])
    imp = ul4m4.UL4M4Imputer(args.k, init=init, max_iter=2, tol=0.0, n_threads=args.threads)
    if args.phase == "transform":
        imp.fit(Xs, mask=P)
    in_bytes = sum(X.nbytes for X in Xs) + P.nbytes
    out_bytes = in_bytes if args.phase == "transform" else 0
    # Hand memory freed so far back to the OS, so that the baseline below is what is live
    # (otherwise the outputs can reuse freed pages that are already counted in it).
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass
    base = vm_kib("VmRSS")
    if args.phase == "fit":
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            imp.fit(Xs, mask=P)
    else:
        imp.transform(Xs, mask=P)
    peak = vm_kib("VmHWM")
    extra = (peak - base) * 1024 - out_bytes
    print(json.dumps({"extra_mib": extra / 2**20, "input_mib": in_bytes / 2**20}))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--dims", type=int, nargs="+", default=[768, 1024, 768])
    ap.add_argument("--k", type=int, default=64)
    ap.add_argument("--missing", type=float, default=0.5)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", default=None)
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--phase", choices=["fit", "transform"], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.phase:
        return peak_phase(args)

    import warnings

    import ul4m4

    nt = args.threads or len(os.sched_getaffinity(0))
    try:
        from threadpoolctl import threadpool_info

        blas = [(i.get("internal_api"), i.get("architecture"), i.get("num_threads")) for i in threadpool_info()
                if i.get("user_api") == "blas"]
    except ImportError:
        blas = []
    res = {"n": args.n, "dims": args.dims, "k": args.k, "missing": args.missing, "threads": nt,
           "simd": ul4m4.simd_level(), "cpu": cpu_name(), "blas": blas}
    print(f"# ul4m4 {ul4m4.__version__}, SIMD {ul4m4.simd_level()}, {nt} threads, BLAS {blas}")
    Xs, P = make_data(args.n, args.dims, args.missing)
    full = np.ones_like(P)
    rng = np.random.default_rng(1)
    rows = rng.choice(args.n, args.k, replace=False)
    C = [X[rows].copy() for X in Xs]

    # Floors.
    t_floor, _ = best_of(lambda: sum(X @ c.T for X, c in zip(Xs, C)), args.repeat)
    Xp = [X[P[:, m]] for m, X in enumerate(Xs)]
    t_floor_p, _ = best_of(lambda: [X @ c.T for X, c in zip(Xp, C)], args.repeat)
    del Xp
    res["floor_complete_s"], res["floor_present_s"] = t_floor, t_floor_p

    # Lloyd iterations.
    def iter_time(mask):
        imp = ul4m4.UL4M4Imputer(args.k, init=(C, np.ones((args.k, len(Xs)), bool)), max_iter=args.repeat + 1,
                                 tol=0.0, algorithm="lloyd", n_threads=nt)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            imp.fit(Xs, mask=mask)
        return min(h["seconds"] for h in imp.history_), imp

    res["iter_complete_s"], _ = iter_time(full)
    res["iter_half_s"], imp = iter_time(P)

    # Assignment pass and completion of the incomplete rows.
    inc = ~P.all(axis=1)
    Xi = [X[inc] for X in Xs]
    Pi = P[inc]
    res["incomplete_rows"] = int(inc.sum())
    res["assign_s"], _ = best_of(lambda: imp.predict(Xi, mask=Pi), args.repeat)
    # Completion into reused output buffers (touched once before timing: a training loop or
    # a chunked job reuses memory, and fresh pages cost a kernel page clear, not ul4m4 work),
    # and in place (out=X: only the missing slots are written).
    outs = [np.zeros_like(X) for X in Xi]
    res["greedy_s"], _ = best_of(lambda: imp.transform(Xi, mask=Pi, out=outs), args.repeat)
    res["soft_s"], _ = best_of(lambda: imp.transform(Xi, mask=Pi, completion="soft", out=outs), args.repeat)
    res["greedy_inplace_s"], _ = best_of(lambda: imp.transform(Xi, mask=Pi, out=Xi), args.repeat)
    # Fresh outputs (no out=): the first call maps new pages; later calls get the pages the
    # previous call's outputs freed (ul4m4's output pool), as a loop without out= does.
    t0 = time.perf_counter()
    imp.transform(Xi, mask=Pi)
    res["greedy_fresh_first_s"] = time.perf_counter() - t0
    res["greedy_fresh_s"], _ = best_of(lambda: imp.transform(Xi, mask=Pi), args.repeat)
    res["soft_fresh_s"], _ = best_of(lambda: imp.transform(Xi, mask=Pi, completion="soft"), args.repeat)
    del Xi, outs

    if not args.no_memory:
        for phase in ("fit", "transform"):
            cmd = [sys.executable, os.path.abspath(__file__), "--phase", phase, "--n", str(args.n), "--k",
                   str(args.k), "--missing", str(args.missing), "--threads", str(nt), "--dims",
                   *map(str, args.dims)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
            r = json.loads(out)
            res[f"{phase}_extra_mib"] = r["extra_mib"]
            res["input_mib"] = r["input_mib"]

    r = res
    rows_ps = lambda s: r["incomplete_rows"] / s
    lines = [
        ("numpy matmul floor, complete data", f"{r['floor_complete_s']:.3f} s", ""),
        ("numpy matmul floor, present rows (half missing)", f"{r['floor_present_s']:.3f} s", ""),
        ("ul4m4 Lloyd iteration, complete data", f"{r['iter_complete_s']:.3f} s",
         f"{r['iter_complete_s'] / r['floor_complete_s']:.2f} x floor"),
        ("ul4m4 Lloyd iteration, half missing", f"{r['iter_half_s']:.3f} s",
         f"{r['iter_half_s'] / r['floor_present_s']:.2f} x present floor, "
         f"{r['iter_half_s'] / r['iter_complete_s']:.2f} x complete"),
        ("ul4m4 assignment pass, incomplete rows", f"{r['assign_s']:.3f} s", f"{rows_ps(r['assign_s']):,.0f} rows/s"),
        ("ul4m4 greedy completion, reused output", f"{r['greedy_s']:.3f} s",
         f"{rows_ps(r['greedy_s']):,.0f} rows/s, {r['greedy_s'] / r['assign_s']:.2f} x assignment"),
        ("ul4m4 greedy completion in place (out=X)", f"{r['greedy_inplace_s']:.3f} s",
         f"{rows_ps(r['greedy_inplace_s']):,.0f} rows/s, {r['greedy_inplace_s'] / r['assign_s']:.2f} x assignment"),
        ("ul4m4 greedy completion, fresh output arrays", f"{r['greedy_fresh_s']:.3f} s",
         f"{r['greedy_fresh_s'] / r['greedy_s']:.2f} x reused output, {r['greedy_fresh_s'] / r['assign_s']:.2f} x "
         "assignment"),
        ("ul4m4 soft completion, reused output", f"{r['soft_s']:.3f} s",
         f"{rows_ps(r['soft_s']):,.0f} rows/s, {r['soft_s'] / r['assign_s']:.2f} x assignment"),
        ("ul4m4 soft completion, fresh output arrays", f"{r['soft_fresh_s']:.3f} s",
         f"{r['soft_fresh_s'] / r['soft_s']:.2f} x reused output"),
        ("ul4m4 greedy completion, first call's fresh outputs", f"{r['greedy_fresh_first_s']:.3f} s",
         f"{r['greedy_fresh_first_s'] / r['greedy_s']:.2f} x reused output (new pages faulted in)"),
    ]
    if "fit_extra_mib" in r:
        lines += [(f"peak memory beyond inputs ({r['input_mib']:.0f} MiB), fit", f"{r['fit_extra_mib']:.0f} MiB",
                   f"{100 * r['fit_extra_mib'] / r['input_mib']:.1f} % of input"),
                  ("peak memory beyond inputs and outputs, transform", f"{r['transform_extra_mib']:.0f} MiB",
                   f"{100 * r['transform_extra_mib'] / r['input_mib']:.1f} % of input")]
    print(f"N={args.n} widths={args.dims} K={args.k} missing={args.missing} "
          f"incomplete rows={r['incomplete_rows']}")
    w = max(len(a) for a, _, _ in lines)
    for a, b, c in lines:
        print(f"  {a:<{w}}  {b:>10}  {c}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(res, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
