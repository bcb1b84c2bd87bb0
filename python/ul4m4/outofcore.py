"""Out-of-core fitting and completion: datasets larger than memory, read in chunks of rows.

The inputs are one array per modality that supports ``shape``, ``dtype`` and row slicing
(``a[r0:r1]``): numpy arrays, memory-mapped ``.npy`` files (``numpy.load(path,
mmap_mode='r')``), zarr arrays, h5py datasets. The presence mask is an (n, M) boolean
array of the same kinds, or None (a missing modality of a row is then all NaN).

Working set
-----------
Only a bounded number of chunks is held at any time, whatever the number of rows N:

* :func:`transform_to_npy`: five buffer sets (one being read, one queued, one being
  completed in place, one queued for the writer, one being written), each
  ``chunk_rows x sum(d_m) x itemsize`` bytes, plus (chunk_rows, M) masks and the model
  (K x sum(d_m) float64 and a K x K x M table): about ``5 x chunk bytes`` + the model,
  whatever N. With the default chunk of 32 MiB of input that is about 160 MiB.
* :func:`iter_transform`: the chunk being completed, the one read ahead and the chunks the
  caller still holds (each yielded chunk is a new array, completed in place when it was
  read from a file or a memory map).
* :func:`fit_streaming`: three input chunks (reading ahead by one), float64 scratch of at
  most 4096 x max(d_m) x 8 bytes x 2 for the statistics, the K x sum(d_m) float64 update
  sums, the labels of all N rows (N x 4 bytes), and the k-means++ seeding sample
  (``init_rows`` rows, see below).

Inputs that are memory-mapped ``.npy`` files (``numpy.load(..., mmap_mode='r')``, or an
``np.memmap`` of a whole file) are not read through the mapping: rows are read with
``pread`` at their offset in the file into private buffers, so mapped pages never
accumulate in the process's resident memory (a mapping that is paged through counts
every touched page in RSS until it is dropped). Other memory-mapped arrays (slices of a
memmap) are copied chunk by chunk and the touched range of the mapping is released with
``madvise(MADV_DONTNEED)``. Everything else is read as ``numpy.ascontiguousarray(a[r0:r1])``.

Results equal the in-memory estimator's: :func:`fit_streaming` runs exactly the Lloyd loop
of :meth:`UL4M4Imputer.fit` (docs/algorithm.md section 4) with the same stopping rules; only the
order in which float64 sums are added differs (chunk by chunk), so centres agree to
rounding and labels agree. Completion is per row and identical.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from . import _core, _fit
from ._chunks import (DEFAULT_CHUNK_BYTES, ChunkSource, Prefetch, as_source, default_chunk_rows, row_ranges)
from ._chunkwise import check_model, complete_chunk, completion_args, rows_observed
from ._fit import default_init_rows as default_init_rows  # a public name of this module before the split
from ._imputer import UL4M4Imputer, effective_n_threads
from ._params import seed_from
from ._moments import Moments
from ._moments import chunk_moments as chunk_moments  # a public name of this module before the split
from ._progress import Progress, progress_callback
from ._writers import NpyWriter, WriterThread, check_not_inputs, output_paths

__all__ = [
    "ChunkSource",
    "Progress",
    "fit_streaming",
    "iter_transform",
    "transform_to_npy",
    "transform_to_zarr",
    "default_chunk_rows",
    "DEFAULT_CHUNK_BYTES",
]



# ============================================================================ fit
def fit_streaming(imputer: UL4M4Imputer, sources: Any, mask: Any = None, *, chunk_rows: Optional[int] = None,
                  max_rows: Optional[int] = None, init_rows: Optional[int] = None, random_state: Any = None,
                  progress: Any = None, callback: Optional[Callable[..., Any]] = None) -> UL4M4Imputer:
    """Fit ``imputer`` on data read chunk by chunk (the data never has to fit in memory).

    ``sources``: a list of (N, d_m) arrays that support row slicing (numpy, ``numpy.load(...,
    mmap_mode='r')``, zarr, h5py) or a :class:`ChunkSource`; ``mask``: (N, M) boolean array
    or None (NaN-marked rows).

    What it does, pass by pass over the data:

    1. statistics (docs/algorithm.md section 1): one pass; per feature float64 count, mean and squared
       deviations over the observed rows, merged chunk by chunk. The same pass collects the
       k-means++ seeding sample when one is needed (below).
    2. seeding: with an explicit ``init`` on the estimator, those centres (no sample, no
       randomness). With ``init='k-means++'``, k-means++ (docs/algorithm.md section 3) runs on a uniform random
       sample of ``init_rows`` rows (default: ``min(N, max(20000, 50 K))`` rows, at most
       256 MiB of them): **seeding only, the Lloyd iterations use every row**. When N is at
       most ``init_rows`` the sample is the whole dataset. ``n_init`` restarts each run the
       full Lloyd loop (n_init x passes over the data).
    3. Lloyd iterations (docs/algorithm.md section 4): each iteration reads the data once, assigning every row
       and summing the next update with the compiled ``assign_and_sum``; the update, the
       centre shift and the stopping rules are those of :meth:`UL4M4Imputer.fit`.

    ``max_rows``: fit on a uniform random sample of at most ``max_rows`` rows instead of all
    of them (only when asked: None, the default, uses every row). The sample is read in one
    pass and fitted in memory with :meth:`UL4M4Imputer.fit`; ``labels_`` then refers to the
    sampled rows, whose indices are in ``fit_rows_``.

    ``random_state`` overrides the estimator's (seeding and sampling). ``progress``: None,
    True (a bar on stderr), a :class:`Progress`, or a callable ``progress(done, total, what)``.
    ``callback(iteration, inertia, n_changed, max_shift, seconds)`` as in ``fit``.

    Sets the estimator's fitted attributes exactly as ``fit`` does and returns it. Equal to
    ``fit`` on the same data with the same explicit init: same labels and n_iter, centres
    to rounding (the float64 sums are added in a different order).
    """
    imp = imputer
    imp._validate_params()
    src, own = as_source(sources, mask)
    report, close_progress = progress_callback(progress)
    ok = False
    try:
        rs = imp.random_state if random_state is None else random_state
        seed = seed_from(rs)
        nt = effective_n_threads(imp.n_threads)
        chunk = int(imp.chunk_size)
        N, dims = src.n, src.dims
        step = src.chunk_rows(chunk_rows)
        K = int(imp.n_clusters)
        if max_rows is not None:
            if isinstance(max_rows, bool) or not isinstance(max_rows, (int, np.integer)) or max_rows < 1:
                raise ValueError(f"max_rows must be None or a positive int, got {max_rows!r}")
            if max_rows < N:
                _fit_on_sample(imp, src, int(max_rows), seed, step, nt, report, callback)
                ok = True
                return imp
        imp._reject_auto("the streaming fit (fit_streaming without max_rows)")
        explicit = not isinstance(imp.init, str)
        if init_rows is not None and (isinstance(init_rows, bool) or not isinstance(init_rows, (int, np.integer))
                                      or init_rows < K):
            raise ValueError(f"init_rows must be an int >= n_clusters, got {init_rows!r}")
        S = 0 if explicit else int(min(N, init_rows if init_rows is not None
                                       else default_init_rows(N, K, src.row_bytes)))
        sample_idx = np.arange(N) if S == N else np.sort(np.random.default_rng(seed).choice(N, S, replace=False))
        if S == 0:
            sample_idx = sample_idx[:0]
        sample_X, sample_P = src.new_buffers(S), np.empty((S, src.M), np.uint8)

        # ---- pass 1: statistics (+ seeding sample)
        mom = Moments(dims)
        eligible = 0
        ranges = row_ranges(N, step)
        pf = Prefetch(src, ranges, depth=1, pool=False, n_threads=nt)
        try:
            for r0, r1, Xs, P, _ in pf:
                rowany = rows_observed(P, r0, imp.empty_rows == "error", Xs, src.mask_reader is not None)
                eligible += int(rowany.sum())
                mom.merge(chunk_moments(Xs, P, r0, nt))
                if S:
                    _gather_rows(sample_idx, r0, r1, Xs, P, sample_X, sample_P)
                report(r1, N, "statistics")
        finally:
            pf.close()
        mu, sigma = mom.finish()
        _fit.check_n_clusters(K, eligible)

        # ---- seeding
        def seed_fn(s):
            try:
                return _core.seed_kmeanspp(sample_X, sample_P, mu, sigma, K, s, nt, chunk)
            except ValueError as exc:
                raise ValueError(f"k-means++ seeding on a sample of {S} rows: {exc} (raise init_rows)") from None

        starts = _fit.starts(imp.init, imp.n_init, mu, sigma, K, seed, seed_fn)
        sample_X = sample_P = None  # free the seeding sample before the passes

        # ---- Lloyd
        labels = np.empty(N, np.int32)

        def pass_for_run(run):
            counter = [0]

            def pass_fn(mu_, sigma_, C, H_u8, first):
                what = f"k-means{'' if len(starts) == 1 else f' run {run + 1}'} " + (
                    "assignment" if first else f"iteration {counter[0] + 1}")
                if not first:
                    counter[0] += 1
                model = _core.Model(mu_, sigma_, C, H_u8)
                acc = _fit.Summed()
                pf = Prefetch(src, ranges, depth=1, pool=False, n_threads=nt)
                try:
                    for r0, r1, Xs, P, _ in pf:
                        prev = None if first else labels[r0:r1]
                        r = _core.assign_and_sum(model, Xs, P, prev, nt, chunk)
                        labels[r0:r1] = r["labels"]
                        acc.add(r)
                        report(r1, N, what)
                finally:
                    pf.close()
                return acc.result()
            return pass_fn

        best, best_labels = _fit.run(starts, pass_for_run, lambda: labels.copy() if len(starts) > 1 else labels,
                                     mu, sigma, int(imp.max_iter), float(imp.tol),
                                     _fit.iteration_reporter(imp.verbose, callback))
        imp._set_fitted(mu, sigma, best, best_labels, dims)
        ok = True
        return imp
    finally:
        close_progress(ok)
        if own:
            src.close()


def _gather_rows(idx: np.ndarray, r0: int, r1: int, Xs: Sequence[np.ndarray], P: np.ndarray,
                 out_X: Sequence[np.ndarray], out_P: np.ndarray) -> None:
    """Copy the rows of chunk r0:r1 that ``idx`` lists (sorted row numbers of the dataset) to
    their places in the sample ``out_X`` / ``out_P``."""
    a, b = np.searchsorted(idx, [r0, r1])
    if b > a:
        loc = idx[a:b] - r0
        for x, o in zip(Xs, out_X):
            o[a:b] = x[loc]
        out_P[a:b] = P[loc]


def _fit_on_sample(imp, src: ChunkSource, R: int, seed: int, step: int, nt: int, report, callback) -> None:
    N = src.n
    idx = np.sort(np.random.default_rng(seed ^ 0x9E3779B97F4A7C15).choice(N, R, replace=False))
    Xs_s, P_s = src.new_buffers(R), np.empty((R, src.M), np.uint8)
    pf = Prefetch(src, row_ranges(N, step), depth=1, pool=False, n_threads=nt)
    try:
        for r0, r1, Xs, P, _ in pf:
            _gather_rows(idx, r0, r1, Xs, P, Xs_s, P_s)
            report(r1, N, f"sampling {R} rows")
    finally:
        pf.close()
    saved = imp.random_state
    try:
        imp.random_state = seed
        imp.fit(Xs_s, mask=P_s.view(bool), callback=callback)
    finally:
        imp.random_state = saved
    imp.fit_rows_ = idx



# ============================================================================ transform
def iter_transform(imputer: UL4M4Imputer, sources: Any, mask: Any = None, *, chunk_rows: Optional[int] = None,
                   completion: Optional[str] = None, temperature_scale: Optional[float] = None,
                   temperature: Optional[float] = None) -> Iterator[Tuple[int, int, List[np.ndarray], np.ndarray,
                                                                         np.ndarray]]:
    """Complete a dataset chunk by chunk: yields ``(r0, r1, filled, imputed, unfilled)`` with
    ``filled`` a list of (r1 - r0, d_m) arrays (fresh arrays, observed slots bit-for-bit) and
    the two (r1 - r0, M) boolean masks. The next chunk is read while the caller works."""
    imp = imputer
    src, own = as_source(sources, mask)
    try:
        check_model(imp, src)
        completion, ts, temp = completion_args(imp, completion, temperature_scale, temperature)
        model = imp._compiled()
        nt = effective_n_threads(imp.n_threads)
        pf = Prefetch(src, row_ranges(src.n, src.chunk_rows(chunk_rows)), depth=1, pool=False, n_threads=nt)
        try:
            for r0, r1, Xs, P, _ in pf:
                # A chunk read into a new buffer of ours (files, memory maps) is completed in
                # place and handed over; a chunk that may be a view of the caller's array
                # goes to a new output array (the caller's data are never written).
                outs = [x if r.private else np.empty_like(x) for x, r in zip(Xs, src.readers)]
                im, un = complete_chunk(imp, model, Xs, P, outs, completion, ts, temp, nt, r0,
                                         src.mask_reader is not None)
                yield r0, r1, outs, im, un
        finally:
            pf.close()
    finally:
        if own:
            src.close()



def transform_to_npy(imputer: UL4M4Imputer, sources: Any, *, out_dir: "str | os.PathLike",
                     names: Optional[Sequence[str]] = None, mask: Any = None, chunk_rows: Optional[int] = None,
                     completion: Optional[str] = None, temperature_scale: Optional[float] = None,
                     temperature: Optional[float] = None, progress: Any = None, fsync: bool = False,
                     drop_cache: bool = False) -> dict:
    """Complete a dataset chunk by chunk into ``.npy`` files, with a bounded working set.

    Writes ``<name>.npy`` per modality (same dtype as the input, observed slots bit-for-bit),
    ``imputed_mask.npy`` and ``unfilled_mask.npy`` ((N, M) bool) into ``out_dir``. ``names``
    default to ``m0, m1, ...``. Files are written under temporary names
    (``.<name>.npy.partial-<pid>``) and renamed to their final names only once every file is
    complete; on any error or KeyboardInterrupt the temporary files are removed, so an
    interrupted run leaves no file (not even a half-written one) under a final name.

    Reading, completing and writing overlap: a reader thread reads the next chunk and a
    writer thread writes the previous one (pwrite at row offsets, nothing is mapped) while
    the compiled core completes the current one. Memory: see the module docstring (about
    5 chunks of ``chunk_rows`` rows, 32 MiB of input each by default).

    ``fsync=True`` flushes every file to disk before the renames (durable across a crash,
    slower). ``drop_cache=True`` asks the kernel to drop the input pages from the page cache
    once read (posix_fadvise), to spare other processes' cached files.

    ``progress``: None, True (a bar on stderr), a :class:`Progress`, or a callable
    ``progress(done, total, what)``; an exception it raises aborts the run (files removed).

    Returns dict(n_samples, n_imputed, n_unfilled, files (final paths), seconds).
    """
    imp = imputer
    src, own = as_source(sources, mask)
    report, close_progress = progress_callback(progress)
    ok = False
    tmps: List[Path] = []
    writers: List[NpyWriter] = []
    wt = None
    try:
        check_model(imp, src)
        completion, ts, temp = completion_args(imp, completion, temperature_scale, temperature)
        model = imp._compiled()
        nt = effective_n_threads(imp.n_threads)
        names = [f"m{m}" for m in range(src.M)] if names is None else [str(n) for n in names]
        if len(names) != src.M:
            raise ValueError(f"{len(names)} names for {src.M} modalities")
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        finals = output_paths(out_dir, names, ".npy")
        check_not_inputs(finals, src)
        N, M = src.n, src.M
        step = src.chunk_rows(chunk_rows)
        pid = os.getpid()
        t0 = time.perf_counter()
        tmps = [p.with_name(f".{p.name}.partial-{pid}") for p in finals]
        for m in range(M):
            writers.append(NpyWriter(tmps[m], (N, src.dims[m]), src.dtypes[m]))
        writers.append(NpyWriter(tmps[M], (N, M), np.bool_))
        writers.append(NpyWriter(tmps[M + 1], (N, M), np.bool_))

        counts = [0, 0]

        def write(r0, outs, im, un):
            for m in range(M):
                writers[m].write(r0, outs[m])
            writers[M].write(r0, im)
            writers[M + 1].write(r0, un)

        wt = WriterThread(write, depth=1)
        # Each chunk is read into a buffer set of the reader's pool, completed there in place
        # (observed slots stay as read), written from it, and only then handed back: a set
        # being read, one queued, one being completed, one queued for the writer, one being
        # written.
        pf = Prefetch(src, row_ranges(N, step), depth=1, pool=True, n_threads=nt, drop_cache=drop_cache,
                       rows=step, spare=2)
        try:
            for r0, r1, Xs, P, inbufs in pf:
                im, un = complete_chunk(imp, model, Xs, P, Xs, completion, ts, temp, nt, r0,
                                         src.mask_reader is not None)
                counts[0] += int(im.sum())
                counts[1] += int(un.sum())
                wt.put(r0, Xs, im, un, (lambda b=inbufs: pf.release(b)))
                report(r1, N, "completion")
        finally:
            pf.close()
        wt.finish()
        wt = None
        for w in writers:
            w.close(fsync=fsync)
        for tmp, fin in zip(tmps, finals):
            os.replace(tmp, fin)
        if fsync:
            try:
                dfd = os.open(out_dir, os.O_RDONLY)
                try:
                    os.fsync(dfd)
                finally:
                    os.close(dfd)
            except OSError:
                pass
        ok = True
        return dict(n_samples=N, n_imputed=counts[0], n_unfilled=counts[1], files=[str(p) for p in finals],
                    seconds=time.perf_counter() - t0)
    finally:
        if wt is not None:
            wt.abort()
        for w in writers:
            try:
                w.close()
            except OSError:
                pass
        if not ok:
            for tmp in tmps:
                try:
                    tmp.unlink()
                except FileNotFoundError:
                    pass
        close_progress(ok)
        if own:
            src.close()


def transform_to_zarr(imputer: UL4M4Imputer, sources: Any, *, out_path: "str | os.PathLike",
                      names: Optional[Sequence[str]] = None, mask: Any = None, chunk_rows: Optional[int] = None,
                      completion: Optional[str] = None, temperature_scale: Optional[float] = None,
                      temperature: Optional[float] = None, progress: Any = None) -> dict:
    """Like :func:`transform_to_npy`, into one zarr group (a directory) at ``out_path`` with an
    array per modality plus ``imputed_mask`` and ``unfilled_mask``, chunked by ``chunk_rows``
    rows. Written under a temporary name and renamed at the end; ``out_path`` must not exist.
    Needs ``zarr`` (``pip install zarr``)."""
    try:
        import zarr
    except ImportError as exc:
        raise ImportError("transform_to_zarr needs zarr: pip install zarr") from exc
    import shutil

    imp = imputer
    out_path = Path(out_path)
    if out_path.exists():
        raise FileExistsError(f"{out_path}: exists; remove it or choose another path")
    src, own = as_source(sources, mask)
    report, close_progress = progress_callback(progress)
    ok = False
    tmp = out_path.with_name(f".{out_path.name}.partial-{os.getpid()}")
    try:
        check_model(imp, src)
        names = [f"m{m}" for m in range(src.M)] if names is None else [str(n) for n in names]
        if len(names) != src.M:
            raise ValueError(f"{len(names)} names for {src.M} modalities")
        output_paths(out_path, names, "")
        N, M = src.n, src.M
        step = src.chunk_rows(chunk_rows)
        t0 = time.perf_counter()
        g = zarr.open_group(str(tmp), mode="w")
        create = g.create_array if hasattr(g, "create_array") else g.create_dataset  # zarr 3 / zarr 2
        arrs = [create(nm, shape=(N, d), chunks=(step, d), dtype=t) for nm, d, t in zip(names, src.dims, src.dtypes)]
        am = create("imputed_mask", shape=(N, M), chunks=(step, M), dtype=bool)
        um = create("unfilled_mask", shape=(N, M), chunks=(step, M), dtype=bool)
        n_imp = n_unf = 0
        for r0, r1, outs, im, un in iter_transform(imp, src, chunk_rows=step, completion=completion,
                                                   temperature_scale=temperature_scale, temperature=temperature):
            for a, o in zip(arrs, outs):
                a[r0:r1] = o
            am[r0:r1] = im
            um[r0:r1] = un
            n_imp += int(im.sum())
            n_unf += int(un.sum())
            report(r1, N, "completion")
        g.attrs["ul4m4"] = {"modalities": names, "n_imputed": n_imp, "n_unfilled": n_unf}
        os.replace(tmp, out_path)
        ok = True
        return dict(n_samples=N, n_imputed=n_imp, n_unfilled=n_unf, files=[str(out_path)],
                    seconds=time.perf_counter() - t0)
    finally:
        if not ok and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        close_progress(ok)
        if own:
            src.close()
