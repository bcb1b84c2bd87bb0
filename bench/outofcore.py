"""Out-of-core completion and Dask fit, measured against their natural baselines.

    python bench/outofcore.py --gb 1                  # a quick run (1 GB dataset)
    python bench/outofcore.py                         # the 20 GB dataset (needs ~2.2 x 20 GB free)
    python bench/outofcore.py --gb 1 --json out.json --skip-dask

What it does:

1. Writes a dataset of ``--gb`` GB in chunks to .npy files under ``--dir`` (default: a new
   temporary directory under /work/tmp, else /tmp): 3 float32 modalities of widths
   768 / 1024 / 768 with cluster structure, each slot missing with probability 0.5 (rows
   that lose every modality keep one), missing slots NaN, plus a boolean mask.npy. It
   refuses to start when the file system has less than 2.2 x gb free (input plus output).
2. Raw read rate: every modality file read in chunks of ``--chunk-mb`` MiB of rows (the
   rows of one chunk of every file, as the completion reads them), with pread into reused
   buffers: MB/s and rows/s.
3. Read + write rate: the same reads, each chunk written to new files, one after the
   other (plain copy); then the write rate alone (as many bytes written from one reused
   chunk) and the overlapped copy (ul4m4's reader and writer threads as transform_to_npy
   uses them, nothing in between): the I/O floors of a completion that writes a full
   output, which ul4m4 impute does.
4. The model: ``fit_streaming(max_rows=--fit-rows)``, i.e. k-means++ and Lloyd on a uniform
   sample of rows (in memory), K = ``--k``. Then a streaming fit of ``--fit-iter`` Lloyd
   iterations on all rows with the sample model's centres as explicit init (its pass rate).
5. Completion: ``ul4m4.outofcore.transform_to_npy`` on the memory-mapped files in a child
   process (peak resident memory = the child's VmHWM), plus a run that
   discards its output (read + complete only).
   Before each timed pass the page cache is dropped (``echo 3 > /proc/sys/vm/drop_caches``,
   needs root; reported when it fails). Times with writes are given to the end of the
   process and, separately, including a final ``sync`` (data on disk).
6. Dask: fit on a LocalCluster of 2 worker processes x 1 thread against the
   single-process ``UL4M4Imputer.fit`` (all threads), on the first ``--dask-rows`` rows of
   the same files, same explicit init, same max_iter / tol. Data are loaded into the
   workers (and into the single process) before the clock starts.

All files are deleted at the end unless ``--keep``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

DIMS = (768, 1024, 768)
NAMES = ("text", "audio", "video")
HERE = Path(__file__).resolve()


# ---------------------------------------------------------------------------- helpers
def drop_caches() -> bool:
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as fh:
            fh.write("3\n")
        return True
    except OSError:
        return False


def gb(x: float) -> str:
    return f"{x / 1e9:.2f} GB"


def run_child(args, extra):
    """Run this script as a child in a given mode; returns (parsed JSON line, peak RSS KiB).

    The peak is the child's own VmHWM read at its end (ru_maxrss of a child is not used: on
    Linux it starts from the parent's RSS at fork and survives exec)."""
    cmd = [sys.executable, str(HERE), "--child"] + extra
    p = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"child {extra[:2]} failed with status {p.returncode}")
    r = json.loads(p.stdout.strip().splitlines()[-1])
    return r, r["vm_hwm_kib"]


def rows_for(gbytes: float) -> int:
    return int(gbytes * 1e9 // (sum(DIMS) * 4))


# ---------------------------------------------------------------------------- 1. data
def make_dataset(d: Path, n: int, chunk: int, seed: int = 0) -> None:
    from numpy.lib.format import open_memmap  # header only; data written with file writes

    rng = np.random.default_rng(seed)
    K0 = 48
    centres = [2.0 * rng.standard_normal((K0, dm), dtype=np.float32) for dm in DIMS]
    files = []
    for nm, dm in zip(NAMES, DIMS):
        a = open_memmap(d / f"{nm}.npy", mode="w+", dtype=np.float32, shape=(n, dm))
        off = a.offset
        del a
        fh = open(d / f"{nm}.npy", "r+b")
        fh.seek(off)
        files.append(fh)
    mask = np.empty((n, len(DIMS)), bool)
    t0 = time.perf_counter()
    for r0 in range(0, n, chunk):
        r1 = min(n, r0 + chunk)
        lab = rng.integers(0, K0, r1 - r0)
        P = rng.random((r1 - r0, len(DIMS))) >= 0.5
        empty = ~P.any(axis=1)
        P[empty, rng.integers(0, len(DIMS), empty.sum())] = True
        mask[r0:r1] = P
        for m, (fh, dm) in enumerate(zip(files, DIMS)):
            x = rng.standard_normal((r1 - r0, dm), dtype=np.float32)
            x += centres[m][lab]
            x[~P[:, m]] = np.nan
            fh.write(memoryview(x).cast("B"))
        if r0 // chunk % 20 == 0:
            done = r1 * sum(DIMS) * 4
            print(f"  generating: {gb(done)} ({done / (time.perf_counter() - t0) / 1e6:.0f} MB/s)",
                  file=sys.stderr, flush=True)
    for fh in files:
        fh.close()
    np.save(d / "mask.npy", mask)


# ---------------------------------------------------------------------------- child modes
def _finish(t0: float, writers, src, nbytes: int) -> dict:
    """Close the writers, then time to here and to the end of a final sync."""
    for w in writers:
        w.close()
    t1 = time.perf_counter()
    os.sync()
    t2 = time.perf_counter()
    src.close()
    return dict(seconds=t1 - t0, seconds_with_sync=t2 - t0, bytes=nbytes, rows=src.n, vm_hwm_kib=_vm("VmHWM"))


def child_read(d: Path, chunk: int, write_dir: str) -> dict:
    """Raw read (and optionally write) of the dataset files in chunks of rows."""
    from ul4m4._chunks import ChunkSource
    from ul4m4._writers import NpyWriter

    Xs = [np.load(d / f"{nm}.npy", mmap_mode="r") for nm in NAMES]
    src = ChunkSource(Xs)
    bufs = src.new_buffers(chunk)
    writers = []
    if write_dir:
        writers = [NpyWriter(Path(write_dir) / f"{nm}.npy", (src.n, dm), np.float32)
                   for nm, dm in zip(NAMES, DIMS)]
    t0 = time.perf_counter()
    nbytes = 0
    for r0 in range(0, src.n, chunk):
        r1 = min(src.n, r0 + chunk)
        for m, r in enumerate(src.readers):
            x = r.read(r0, r1, bufs[m])
            nbytes += x.nbytes
            if writers:
                writers[m].write(r0, x)
    return _finish(t0, writers, src, nbytes)


def child_write(d: Path, chunk: int, write_dir: str) -> dict:
    """Write only: as many bytes as the dataset, from one reused chunk of its rows, to new
    .npy files in chunks (the disk's write rate: the floor of any run that writes a full
    output, whatever else it does)."""
    from ul4m4._chunks import ChunkSource
    from ul4m4._writers import NpyWriter

    Xs = [np.load(d / f"{nm}.npy", mmap_mode="r") for nm in NAMES]
    src = ChunkSource(Xs)
    bufs = [r.read(0, min(src.n, chunk), b) for r, b in zip(src.readers, src.new_buffers(chunk))]
    writers = [NpyWriter(Path(write_dir) / f"{nm}.npy", (src.n, dm), np.float32) for nm, dm in zip(NAMES, DIMS)]
    t0 = time.perf_counter()
    nbytes = 0
    for r0 in range(0, src.n, chunk):
        r1 = min(src.n, r0 + chunk)
        for m, w in enumerate(writers):
            w.write(r0, bufs[m][:r1 - r0])
            nbytes += (r1 - r0) * bufs[m].shape[1] * 4
    return _finish(t0, writers, src, nbytes)


def child_copy(d: Path, chunk: int, write_dir: str) -> dict:
    """Overlapped copy: ul4m4's own reader and writer threads (as transform_to_npy uses
    them) with nothing in between: the I/O floor of its completion to .npy."""
    from ul4m4._chunks import ChunkSource, Prefetch, row_ranges
    from ul4m4._writers import NpyWriter, WriterThread

    Xs = [np.load(d / f"{nm}.npy", mmap_mode="r") for nm in NAMES]
    src = ChunkSource(Xs)
    writers = [NpyWriter(Path(write_dir) / f"{nm}.npy", (src.n, dm), np.float32) for nm, dm in zip(NAMES, DIMS)]

    def write(r0, xs):
        for w, x in zip(writers, xs):
            w.write(r0, x)

    t0 = time.perf_counter()
    wt = WriterThread(write, depth=1)
    pf = Prefetch(src, row_ranges(src.n, chunk), depth=1, pool=True, n_threads=1, rows=chunk)
    try:
        for r0, r1, xs, _, bufs in pf:
            wt.put(r0, xs, (lambda b=bufs: pf.release(b)))
    finally:
        pf.close()
    wt.finish()
    return _finish(t0, writers, src, src.n * src.row_bytes)


def child_impute(d: Path, model: str, chunk: int, out_dir: str, completion: str) -> dict:
    import ul4m4
    from ul4m4.outofcore import ChunkSource, iter_transform, transform_to_npy

    imp = ul4m4.UL4M4Imputer.load(model)
    Xs = [np.load(d / f"{nm}.npy", mmap_mode="r") for nm in NAMES]
    mask = np.load(d / "mask.npy", mmap_mode="r")
    t0 = time.perf_counter()
    if out_dir:
        info = transform_to_npy(imp, Xs, mask=mask, out_dir=out_dir, names=NAMES, chunk_rows=chunk,
                                completion=completion)
        n_imp = info["n_imputed"]
    else:  # read + complete, output discarded
        n_imp = 0
        for _, _, _, im, _ in iter_transform(imp, ChunkSource(Xs, mask), chunk_rows=chunk, completion=completion):
            n_imp += int(im.sum())
    t1 = time.perf_counter()
    os.sync()
    t2 = time.perf_counter()
    return dict(seconds=t1 - t0, seconds_with_sync=t2 - t0, rows=int(Xs[0].shape[0]), n_imputed=int(n_imp),
                vm_hwm_kib=_vm("VmHWM"))


def child_cli(d: Path, model: str, chunk: int, out_dir: str, completion: str) -> dict:
    """The current ``ul4m4 impute`` command, for comparison."""
    from ul4m4 import cli

    argv = ["impute", "--model", model, "--out-dir", out_dir, "--chunk-rows", str(chunk), "--no-progress", "-q",
            "--completion", completion, "--mask", str(d / "mask.npy")]
    for nm in NAMES:
        argv += ["--modality", str(d / f"{nm}.npy")]
    t0 = time.perf_counter()
    rc = cli.main(argv)
    t1 = time.perf_counter()
    if rc != 0:
        raise SystemExit(rc)
    os.sync()
    t2 = time.perf_counter()
    return dict(seconds=t1 - t0, seconds_with_sync=t2 - t0, rows=int(np.load(d / "mask.npy", mmap_mode="r").shape[0]),
                vm_hwm_kib=_vm("VmHWM"))


def child_fit(d: Path, model_in: str, model_out: str, chunk: int, iters: int) -> dict:
    import ul4m4
    from ul4m4.outofcore import fit_streaming

    ref = ul4m4.UL4M4Imputer.load(model_in)
    C = [np.where(ref.center_mask_[:, m:m + 1], c * s + mu, 0.0)
         for m, (c, s, mu) in enumerate(zip(ref.cluster_centers_, ref.scale_, ref.mean_))]
    Xs = [np.load(d / f"{nm}.npy", mmap_mode="r") for nm in NAMES]
    mask = np.load(d / "mask.npy", mmap_mode="r")
    imp = ul4m4.UL4M4Imputer(ref.n_clusters, init=(C, ref.center_mask_), max_iter=iters, tol=0.0)
    passes = []
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit_streaming(imp, Xs, mask, chunk_rows=chunk,
                      progress=lambda done, total, what: passes.append((what, time.perf_counter()))
                      if done == total else None)
    t1 = time.perf_counter()
    imp.save(model_out)
    return dict(seconds=t1 - t0, n_iter=imp.n_iter_, passes=len(passes), rows=int(Xs[0].shape[0]),
                vm_hwm_kib=_vm("VmHWM"))


def _vm(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


# ---------------------------------------------------------------------------- dask
def _load_rows(path: str, r0: int, r1: int) -> np.ndarray:
    from ul4m4._chunks import reader

    a = np.load(path, mmap_mode="r")
    r = reader(a, path)
    try:
        return r.read(r0, r1)
    finally:
        r.close()


def _load_block(d: str, r0: int, r1: int):
    return [_load_rows(str(Path(d) / f"{nm}.npy"), r0, r1) for nm in NAMES]


def bench_dask(d: Path, rows: int, k: int, max_iter: int, block_rows: int, repeat: int = 2) -> dict:
    import dask
    import dask.array as da
    import distributed

    import ul4m4
    from ul4m4 import dask as udask

    n_all = np.load(d / f"{NAMES[0]}.npy", mmap_mode="r").shape[0]
    rows = min(rows, n_all)
    Xs = [_load_rows(str(d / f"{nm}.npy"), 0, rows) for nm in NAMES]
    P = np.ascontiguousarray(np.load(d / "mask.npy", mmap_mode="r")[:rows])
    idx = np.random.default_rng(1).choice(rows, k, replace=False)
    init = ([np.nan_to_num(X[idx].astype(np.float64)) for X in Xs], P[idx])
    res = {"rows": rows, "bytes": int(sum(X.nbytes for X in Xs)), "K": k, "max_iter": max_iter,
           "block_rows": block_rows}

    def single():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            ref = ul4m4.UL4M4Imputer(k, init=init, max_iter=max_iter, tol=0.0, algorithm="lloyd").fit(Xs, mask=P)
            return time.perf_counter() - t0, ref

    single_times = []

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                           dashboard_address=None, silence_logs=40)
        client = distributed.Client(cluster)
    try:
        # every worker reads its row blocks from the files, all modalities of a block in one task
        t0 = time.perf_counter()
        starts = list(range(0, rows, block_rows))
        loads = [dask.delayed(_load_block, nout=3)(str(d), r0, min(rows, r0 + block_rows)) for r0 in starts]
        dXs = [da.concatenate([da.from_delayed(ld[m], shape=(min(rows, r0 + block_rows) - r0, dm), dtype=np.float32)
                               for ld, r0 in zip(loads, starts)]) for m, dm in enumerate(DIMS)]
        dP = da.from_array(P, chunks=(block_rows, 3))
        dXs = client.persist(dXs)
        dP = client.persist(dP)
        distributed.wait(dXs + [dP])
        res["dask_load_seconds"] = time.perf_counter() - t0
        dask_times, single_iters, dask_iters = [], [], []
        for _ in range(repeat):  # alternate: the machine is shared, timings drift
            t, ref = single()
            single_times.append(t)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t0 = time.perf_counter()
                got = udask.fit(ul4m4.UL4M4Imputer(k, max_iter=max_iter, tol=0.0), dXs, dP, init=init,
                                client=client)
                dask_times.append(time.perf_counter() - t0)
            single_iters.append(float(np.median([h["seconds"] for h in ref.history_])))
            dask_iters.append(float(np.median([h["seconds"] for h in got.history_])))
        res["single_seconds_all"] = single_times
        res["dask_seconds_all"] = dask_times
        res["single_iteration_median_seconds"] = single_iters
        res["dask_iteration_median_seconds"] = dask_iters
        res["single_seconds"] = min(single_times)
        res["dask_seconds"] = min(dask_times)
        res["single_n_iter"] = ref.n_iter_
        res["single_threads"] = ul4m4._imputer.effective_n_threads(None)
        res["dask_n_iter"] = got.n_iter_
        res["labels_equal"] = bool(np.array_equal(got.labels_, ref.labels_))
        rel = 0.0
        for a, b in zip(got.cluster_centers_, ref.cluster_centers_):
            ok = ~np.isnan(b)
            rel = max(rel, float(np.max(np.abs(a[ok] - b[ok]) / np.maximum(np.abs(b[ok]), 1e-12))) if ok.any() else 0)
        res["centres_max_rel_diff"] = rel
        # transform: dask vs single process
        t0 = time.perf_counter()
        ref_out = ref.transform(Xs, mask=P)
        res["single_transform_seconds"] = time.perf_counter() - t0
        # kept on the workers (as da.store / to_zarr from the workers would use them) ...
        t0 = time.perf_counter()
        filled, im, un = udask.transform(ref, dXs, dP, client=client)
        kept = client.persist(list(filled) + [im, un])
        distributed.wait(kept)
        res["dask_transform_on_workers_seconds"] = time.perf_counter() - t0
        del kept
        # ... and gathered into the client's memory (2 x the data through the network stack)
        t0 = time.perf_counter()
        filled, im, un = udask.transform(ref, dXs, dP, client=client)
        outs = dask.compute(*filled, im, un)
        res["dask_transform_seconds"] = time.perf_counter() - t0
        res["transform_equal"] = bool(all(np.array_equal(a, b, equal_nan=True) for a, b in zip(outs[:3], ref_out)))
    finally:
        client.close()
        cluster.close()
    res["dask_over_single"] = res["dask_seconds"] / res["single_seconds"]
    return res


def _print_dask(r: dict) -> None:
    print(f"dask fit, 2 workers: {r['dask_seconds']:7.1f} s vs single process {r['single_seconds']:.1f} s "
          f"(best of {len(r['dask_seconds_all'])}: dask {', '.join(f'{t:.2f}' for t in r['dask_seconds_all'])}"
          f"; single {', '.join(f'{t:.2f}' for t in r['single_seconds_all'])}) "
          f"({r['single_threads']} threads) = {r['dask_over_single']:.2f}x; {r['rows']:,} rows "
          f"({gb(r['bytes'])}), K={r['K']}, {r['dask_n_iter']}/{r['single_n_iter']} iterations, labels "
          f"equal: {r['labels_equal']}, centres max rel diff {r['centres_max_rel_diff']:.1e}; "
          f"load into workers {r['dask_load_seconds']:.1f} s (not counted)", flush=True)
    print(f"dask transform:      {r['dask_transform_on_workers_seconds']:7.1f} s kept on the workers, "
          f"{r['dask_transform_seconds']:.1f} s gathered to the client, vs single process "
          f"{r['single_transform_seconds']:.1f} s; equal: {r['transform_equal']}", flush=True)
    print(f"dask iteration:      median {min(r['dask_iteration_median_seconds']):.3f} s vs single process "
          f"{min(r['single_iteration_median_seconds']):.3f} s = "
          f"{min(r['dask_iteration_median_seconds']) / min(r['single_iteration_median_seconds']):.2f}x", flush=True)


# ---------------------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gb", type=float, default=20.0, help="dataset size in GB (1e9 bytes)")
    ap.add_argument("--dir", default=None, help="where to write the dataset (default: a temp dir)")
    ap.add_argument("--chunk-mb", type=float, default=32.0, help="MiB of input rows per chunk")
    ap.add_argument("--k", type=int, default=32, help="clusters")
    ap.add_argument("--fit-rows", type=int, default=50000, help="rows of the fitting sample (max_rows)")
    ap.add_argument("--fit-iter", type=int, default=2, help="Lloyd iterations of the full streaming fit (0: skip)")
    ap.add_argument("--completion", default="greedy", choices=("greedy", "soft"))
    ap.add_argument("--dask-rows", type=int, default=200000, help="rows of the Dask comparison")
    ap.add_argument("--dask-iter", type=int, default=10, help="max_iter of the Dask comparison")
    ap.add_argument("--skip-dask", action="store_true")
    ap.add_argument("--dask-only", action="store_true", help="only the Dask comparison (a dataset of --dask-rows rows)")
    ap.add_argument("--dask-repeat", type=int, default=3, help="repetitions of the Dask comparison (best is reported)")
    ap.add_argument("--cli", action="store_true", help="also time the installed 'ul4m4 impute' command")
    ap.add_argument("--keep", action="store_true", help="keep the generated files")
    ap.add_argument("--json", default=None, help="write the results to this JSON file")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--mode", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--data", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--model", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--model-out", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default="", help=argparse.SUPPRESS)
    ap.add_argument("--chunk", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child:
        d = Path(args.data)
        if args.mode == "read":
            r = child_read(d, args.chunk, args.out)
        elif args.mode == "write":
            r = child_write(d, args.chunk, args.out)
        elif args.mode == "copy":
            r = child_copy(d, args.chunk, args.out)
        elif args.mode == "impute":
            r = child_impute(d, args.model, args.chunk, args.out, args.completion)
        elif args.mode == "cli":
            r = child_cli(d, args.model, args.chunk, args.out, args.completion)
        elif args.mode == "fit":
            r = child_fit(d, args.model, args.model_out, args.chunk, args.fit_iter)
        else:
            raise SystemExit(f"unknown mode {args.mode}")
        print(json.dumps(r))
        return 0

    import ul4m4
    from ul4m4.outofcore import fit_streaming

    n = rows_for(args.gb) if not args.dask_only else args.dask_rows
    row_bytes = sum(DIMS) * 4
    chunk = max(1, int(args.chunk_mb * (1 << 20)) // row_bytes)
    total = n * row_bytes
    base = Path(args.dir) if args.dir else None
    if base is None:
        root = Path("/work/tmp") if Path("/work").is_dir() else Path(tempfile.gettempdir())
        root.mkdir(parents=True, exist_ok=True)
        base = Path(tempfile.mkdtemp(prefix="ul4m4-bench-", dir=root))
    base.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(base).free
    need = 2.2 * total + 1e9
    if free < need:
        print(f"refusing: {base} has {gb(free)} free; the {gb(total)} dataset needs {gb(need)} "
              "(input + completed output)", file=sys.stderr)
        if not args.dir:
            shutil.rmtree(base, ignore_errors=True)
        return 2
    data = base / "data"
    out = base / "out"
    data.mkdir(exist_ok=True)
    results = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": sys.version.split()[0],
                           "ul4m4": ul4m4.__version__, "simd": ul4m4.simd_level(),
                           "mem_total_gb": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9},
               "dataset": {"rows": n, "dims": DIMS, "bytes": total, "missing": 0.5, "dtype": "float32",
                           "chunk_rows": chunk, "chunk_mib": chunk * row_bytes / (1 << 20), "dir": str(base)}}
    print(f"dataset: {n:,} rows x {'/'.join(map(str, DIMS))} float32 = {gb(total)}, half the slots missing; "
          f"chunks of {chunk:,} rows ({chunk * row_bytes / (1 << 20):.1f} MiB); in {base}", flush=True)
    try:
        t0 = time.perf_counter()
        make_dataset(data, n, chunk)
        os.sync()
        results["dataset"]["generate_seconds"] = time.perf_counter() - t0
        print(f"generated in {time.perf_counter() - t0:.1f} s", flush=True)

        if args.dask_only:
            r = bench_dask(data, args.dask_rows, args.k, args.dask_iter, block_rows=max(1, args.dask_rows // 8),
                           repeat=args.dask_repeat)
            results["dask"] = r
            _print_dask(r)
            if args.json:
                Path(args.json).write_text(json.dumps(results, indent=1))
                print(f"wrote {args.json}")
            return 0
        dropped = drop_caches()
        results["page_cache_dropped"] = dropped
        if not dropped:
            print("warning: could not drop the page cache (not root?): read rates may be cached rates",
                  flush=True)

        def drop():
            if dropped:
                drop_caches()

        # 2. raw read
        drop()
        r, rss = run_child(args, ["--mode", "read", "--data", str(data), "--chunk", str(chunk)])
        read_rate = r["rows"] / r["seconds"]
        results["raw_read"] = dict(r, mb_per_s=r["bytes"] / r["seconds"] / 1e6, rows_per_s=read_rate,
                                   max_rss_kib=rss)
        print(f"raw read:            {r['seconds']:7.1f} s  {r['bytes'] / r['seconds'] / 1e6:7.0f} MB/s  "
              f"{read_rate:9,.0f} rows/s; peak RSS {rss / 1024:.0f} MiB", flush=True)

        # 3. read + write (copy) floor
        copy_dir = base / "copy"
        copy_dir.mkdir(exist_ok=True)
        drop()
        r, rss = run_child(args, ["--mode", "read", "--data", str(data), "--chunk", str(chunk), "--out", str(copy_dir)])
        shutil.rmtree(copy_dir)
        results["read_write_copy"] = dict(r, rows_per_s=r["rows"] / r["seconds"],
                                          rows_per_s_with_sync=r["rows"] / r["seconds_with_sync"], max_rss_kib=rss)
        print(f"read + write (copy): {r['seconds']:7.1f} s  {r['rows'] / r['seconds']:9,.0f} rows/s  "
              f"(with final sync: {r['seconds_with_sync']:.1f} s, {r['rows'] / r['seconds_with_sync']:,.0f} rows/s); "
              f"peak RSS {rss / 1024:.0f} MiB", flush=True)

        # 3b. write only (the disk's write rate) and the overlapped copy (ul4m4's own reader
        # and writer threads, no completion): the real I/O floor of a completion to .npy
        for mode, key, label in (("write", "write_only", "write only:         "),
                                 ("copy", "overlapped_copy", "overlapped copy:    ")):
            copy_dir.mkdir(exist_ok=True)
            drop()
            r, rss = run_child(args, ["--mode", mode, "--data", str(data), "--chunk", str(chunk), "--out",
                                      str(copy_dir)])
            shutil.rmtree(copy_dir)
            results[key] = dict(r, rows_per_s=r["rows"] / r["seconds"], mb_per_s=r["bytes"] / r["seconds"] / 1e6,
                                rows_per_s_with_sync=r["rows"] / r["seconds_with_sync"], max_rss_kib=rss,
                                vs_raw_read=r["rows"] / r["seconds"] / read_rate)
            print(f"{label} {r['seconds']:7.1f} s  {r['bytes'] / r['seconds'] / 1e6:7.0f} MB/s  "
                  f"{r['rows'] / r['seconds']:9,.0f} rows/s = {r['rows'] / r['seconds'] / read_rate:.0%} of raw read "
                  f"(with final sync: {r['seconds_with_sync']:.1f} s); peak RSS {rss / 1024:.0f} MiB", flush=True)

        # 4. model
        Xs = [np.load(data / f"{nm}.npy", mmap_mode="r") for nm in NAMES]
        mask = np.load(data / "mask.npy", mmap_mode="r")
        t0 = time.perf_counter()
        imp = ul4m4.UL4M4Imputer(args.k, random_state=0, max_iter=100, completion=args.completion)
        drop()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit_streaming(imp, Xs, mask, chunk_rows=chunk, max_rows=min(args.fit_rows, n))
        model = base / "model.npz"
        imp.save(model)
        del Xs, mask
        results["fit_sample"] = dict(seconds=time.perf_counter() - t0, rows=min(args.fit_rows, n), K=args.k,
                                     n_iter=imp.n_iter_)
        print(f"fit on a sample:     {time.perf_counter() - t0:7.1f} s  (max_rows={min(args.fit_rows, n):,}: "
              f"one pass to sample, k-means++ and {imp.n_iter_} Lloyd iterations in memory, K={args.k})", flush=True)
        if args.fit_iter > 0:
            drop()
            r, rss = run_child(args, ["--mode", "fit", "--data", str(data), "--model", str(model),
                                      "--model-out", str(base / "model_full.npz"), "--chunk", str(chunk),
                                      "--fit-iter", str(args.fit_iter)])
            passes = r["passes"]
            results["fit_streaming"] = dict(r, max_rss_kib=rss, pass_rows_per_s=r["rows"] * passes / r["seconds"])
            print(f"streaming fit:       {r['seconds']:7.1f} s  ({passes} passes over all rows: statistics, "
                  f"assignment, {r['n_iter']} Lloyd iterations; {r['rows'] * passes / r['seconds']:,.0f} rows/s "
                  f"per pass; peak RSS {rss / 1024:.0f} MiB)", flush=True)

        # 5. completion
        drop()
        r, rss = run_child(args, ["--mode", "impute", "--data", str(data), "--model", str(model), "--chunk", str(chunk),
                                  "--completion", args.completion])
        results["complete_discard"] = dict(r, rows_per_s=r["rows"] / r["seconds"], max_rss_kib=rss)
        print(f"complete (discard):  {r['seconds']:7.1f} s  {r['rows'] / r['seconds']:9,.0f} rows/s  "
              f"= {r['rows'] / r['seconds'] / read_rate:.0%} of raw read; peak RSS {rss / 1024:.0f} MiB", flush=True)
        drop()
        r, rss = run_child(args, ["--mode", "impute", "--data", str(data), "--model", str(model), "--chunk", str(chunk),
                                  "--out", str(out), "--completion", args.completion])
        rate = r["rows"] / r["seconds"]
        results["complete_to_npy"] = dict(r, rows_per_s=rate, rows_per_s_with_sync=r["rows"] / r["seconds_with_sync"],
                                          max_rss_kib=rss, vs_raw_read=rate / read_rate,
                                          vs_read_write=rate / results["read_write_copy"]["rows_per_s"],
                                          vs_write_only=rate / results["write_only"]["rows_per_s"],
                                          vs_overlapped_copy=rate / results["overlapped_copy"]["rows_per_s"])
        print(f"complete to .npy:    {r['seconds']:7.1f} s  {rate:9,.0f} rows/s  = {rate / read_rate:.0%} of raw read, "
              f"{rate / results['write_only']['rows_per_s']:.0%} of write only, "
              f"{rate / results['overlapped_copy']['rows_per_s']:.0%} of the overlapped copy; with final sync "
              f"{r['seconds_with_sync']:.1f} s; peak RSS {rss / 1024:.0f} MiB", flush=True)
        # check a few rows of the output
        o = np.load(out / f"{NAMES[1]}.npy", mmap_mode="r")
        x = np.load(data / f"{NAMES[1]}.npy", mmap_mode="r")
        pm = np.load(data / "mask.npy", mmap_mode="r")
        sl = slice(0, min(n, 1000))
        assert np.array_equal(o[sl][pm[sl, 1]], x[sl][pm[sl, 1]]) and np.isfinite(o[sl]).all()
        del o, x, pm
        shutil.rmtree(out)
        if args.cli:
            drop()
            r, rss = run_child(args, ["--mode", "cli", "--data", str(data), "--model", str(model), "--chunk",
                                      str(chunk), "--out", str(out), "--completion", args.completion])
            results["cli_impute"] = dict(r, rows_per_s=r["rows"] / r["seconds"], max_rss_kib=rss)
            print(f"'ul4m4 impute' now:  {r['seconds']:7.1f} s  {r['rows'] / r['seconds']:9,.0f} rows/s; with final "
                  f"sync {r['seconds_with_sync']:.1f} s; peak RSS {rss / 1024:.0f} MiB", flush=True)
            shutil.rmtree(out)

        # 6. dask
        if not args.skip_dask:
            try:
                import distributed  # noqa: F401
            except ImportError:
                print("dask comparison skipped: dask/distributed not installed", flush=True)
            else:
                r = bench_dask(data, args.dask_rows, args.k, args.dask_iter, block_rows=max(1, args.dask_rows // 8),
                               repeat=args.dask_repeat)
                results["dask"] = r
                _print_dask(r)
    finally:
        if not args.keep:
            shutil.rmtree(data, ignore_errors=True)
            shutil.rmtree(out, ignore_errors=True)
            if not args.dir:
                shutil.rmtree(base, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
