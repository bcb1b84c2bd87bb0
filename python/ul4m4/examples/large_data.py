"""Datasets larger than memory: fit and complete memory-mapped .npy files chunk by chunk,
then the same fit on a Dask cluster.

    python -m ul4m4.examples.large_data            # 200 000 rows (about 2 GB on disk, in a temp dir)
    python -m ul4m4.examples.large_data --quick    # 20 000 rows

1. Writes three modalities (768 / 1024 / 768 float32) and a presence mask to .npy files,
   chunk by chunk (the data never sit in memory whole).
2. ``fit_streaming``: k-means++ and Lloyd on a uniform sample of ``--fit-rows`` rows
   (``max_rows``: asked for explicitly, never silently), then two streamed Lloyd passes
   over all rows from those centres.
3. ``transform_to_npy``: completes every row into new .npy files, a few chunks in memory
   at a time, with a progress bar; files appear under their final names only when all are
   complete.
4. With dask and distributed installed: ``ul4m4.dask.fit`` on a LocalCluster of 2 worker
   processes from the same initial centres gives the same labels.
"""
from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

import ul4m4
from ul4m4.outofcore import fit_streaming, transform_to_npy

NAMES = ("text", "audio", "video")
DIMS = (768, 1024, 768)


def write_dataset(d: Path, n: int, chunk: int = 20_000, seed: int = 0):
    """Clustered float32 rows, each slot missing with probability 1/2 (NaN), one row kept
    per sample; written with open_memmap, one chunk at a time."""
    rng = np.random.default_rng(seed)
    cent = [rng.normal(size=(24, dm)).astype(np.float32) * 2 for dm in DIMS]
    outs = [np.lib.format.open_memmap(d / f"{nm}.npy", "w+", np.float32, (n, dm)) for nm, dm in zip(NAMES, DIMS)]
    mask = np.lib.format.open_memmap(d / "mask.npy", "w+", np.bool_, (n, len(DIMS)))
    for r0 in range(0, n, chunk):
        r1 = min(n, r0 + chunk)
        lab = rng.integers(0, 24, r1 - r0)
        P = rng.random((r1 - r0, len(DIMS))) < 0.5
        P[~P.any(1), 0] = True
        for m, o in enumerate(outs):
            x = cent[m][lab] + rng.standard_normal((r1 - r0, DIMS[m]), dtype=np.float32)
            x[~P[:, m]] = np.nan
            o[r0:r1] = x
        mask[r0:r1] = P
    for o in outs:
        o.flush()
    mask.flush()


def _read_rows(path: str, r0: int, r1: int) -> np.ndarray:
    return np.array(np.load(path, mmap_mode="r")[r0:r1])


def npy_rows(path: Path, rows: int):
    """A Dask array over an .npy file, chunked along rows, each block read by its task."""
    import dask
    import dask.array as da

    a = np.load(path, mmap_mode="r")
    blocks = [da.from_delayed(dask.delayed(_read_rows)(str(path), r0, min(a.shape[0], r0 + rows)),
                              shape=(min(a.shape[0], r0 + rows) - r0,) + a.shape[1:], dtype=a.dtype)
              for r0 in range(0, a.shape[0], rows)]
    return da.concatenate(blocks)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--quick", action="store_true", help="20 000 rows")
    ap.add_argument("--k", type=int, default=24)
    ap.add_argument("--fit-rows", type=int, default=20_000)
    ap.add_argument("--no-dask", action="store_true")
    args = ap.parse_args(argv)
    n = 20_000 if args.quick else args.rows
    with tempfile.TemporaryDirectory(prefix="ul4m4-large-") as tmp:
        d = Path(tmp)
        t0 = time.perf_counter()
        write_dataset(d, n)
        print(f"wrote {n:,} rows x {'/'.join(map(str, DIMS))} float32 to {d} in {time.perf_counter() - t0:.1f} s")
        Xs = [np.load(d / f"{nm}.npy", mmap_mode="r") for nm in NAMES]
        mask = np.load(d / "mask.npy", mmap_mode="r")

        # 2. fit: sample first (explicit max_rows), then streamed passes over all rows
        t0 = time.perf_counter()
        sample = fit_streaming(ul4m4.UL4M4Imputer(args.k, random_state=0), Xs, mask,
                               max_rows=min(args.fit_rows, n))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ul4m4.ConvergenceWarning)  # two passes only
            init = ([c * s + m for c, s, m in zip(sample.cluster_centers_, sample.scale_, sample.mean_)],
                    sample.center_mask_)
            imp = fit_streaming(ul4m4.UL4M4Imputer(args.k, init=init, max_iter=2), Xs, mask)
        print(f"fit: {time.perf_counter() - t0:.1f} s (sample of {min(args.fit_rows, n):,} rows, then "
              f"{imp.n_iter_} streamed Lloyd iteration(s) over all rows); inertia {imp.inertia_:.4g}")

        # 3. complete into new .npy files
        info = transform_to_npy(imp, Xs, mask=mask, out_dir=d / "completed", names=NAMES, progress=True)
        print(f"completed {info['n_samples']:,} rows in {info['seconds']:.1f} s "
              f"({info['n_samples'] / info['seconds']:,.0f} rows/s): {info['n_imputed']:,} slots imputed, "
              f"{info['n_unfilled']} unfilled")
        done = np.load(d / "completed" / "audio.npy", mmap_mode="r")
        P = np.asarray(mask[:1000])
        assert np.isfinite(done[:1000]).all()
        assert np.array_equal(done[:1000][P[:, 1]], Xs[1][:1000][P[:, 1]])  # observed slots bit-for-bit
        del done

        # 4. the same fit on a Dask cluster
        if args.no_dask:
            return 0
        try:
            import dask.array  # noqa: F401
            import distributed
        except ImportError:
            print("dask / distributed not installed: skipping the Dask part (pip install 'ul4m4[dask]')")
            return 0
        from ul4m4 import dask as udask

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                               dashboard_address=None, silence_logs=40)
            client = distributed.Client(cluster)
        try:
            # each worker reads its own row blocks from the files (no data in the task graph)
            rows = max(1, n // 8)
            dXs = [npy_rows(d / f"{nm}.npy", rows) for nm in NAMES]
            dP = npy_rows(d / "mask.npy", rows)
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ul4m4.ConvergenceWarning)
                got = udask.fit(ul4m4.UL4M4Imputer(args.k, max_iter=2), dXs, dP, init=init, client=client)
            same = np.array_equal(got.labels_, imp.labels_)
            print(f"dask fit on 2 workers: {time.perf_counter() - t0:.1f} s, labels equal to fit_streaming: {same}")
            assert same
        finally:
            client.close()
            cluster.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
