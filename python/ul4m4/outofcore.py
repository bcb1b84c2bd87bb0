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

import mmap
import os
import queue
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from . import _core, _fit
from ._arrays import as_mask, explain, inverted_mask_hint, is_torch
from ._imputer import UL4M4Imputer, _seed_from, effective_n_threads
from ._modelfile import check_table_budget

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

#: Bytes of input per chunk when ``chunk_rows`` is None (32 MiB).
DEFAULT_CHUNK_BYTES = 32 << 20
_STATS_BLOCK = 4096           # rows per float64 block of the statistics


# ============================================================================ progress
class Progress:
    """A minimal progress bar on a stream (stderr by default): rows done, percent and rows/s.

    ``Progress(total, what="rows", enabled=None, unit="rows", file=sys.stderr)``; ``enabled=None`` means
    "when the stream is a terminal". ``update(done)`` redraws at most 10 times a second;
    ``close()`` ends the line. An instance is also a progress callback
    ``progress(done, total, what)`` for :func:`fit_streaming` / :func:`transform_to_npy`:
    a new ``what`` starts a new line."""

    def __init__(self, total: int = 0, what: str = "rows", enabled: Optional[bool] = None, unit: str = "rows",
                 file: Any = None, *, stream: Any = None):
        # (total, what, enabled, unit, stream) is also the signature of the CLI's former bar
        file = file if file is not None else stream
        self.file = file if file is not None else sys.stderr
        if enabled is None:
            enabled = bool(getattr(self.file, "isatty", lambda: False)())
        self.enabled = bool(enabled)
        self.unit = unit
        self._open = False
        self._event = time.perf_counter()
        self._reset(total, what)

    def _reset(self, total: int, what: str, t0: Optional[float] = None) -> None:
        self.total = max(int(total), 0)
        self.what = what
        self.done = 0
        self.t0 = time.perf_counter() if t0 is None else t0
        self._last = 0.0
        self._width = 0

    @property
    def rate(self) -> float:
        """Rows per second so far."""
        return self.done / max(time.perf_counter() - self.t0, 1e-9)

    def __call__(self, done: int, total: int, what: str = "rows") -> None:
        if what != self.what or total != self.total:
            if self._open:
                self.close()
            # a stage's first report comes after its first chunk: the stage began at the
            # previous report (or when the bar was made), not now
            self._reset(total, what, t0=self._event)
        self.update(done)
        self._event = time.perf_counter()

    def update(self, done: int, force: bool = False) -> None:
        self.done = int(done)
        if not self.enabled:
            return
        now = time.perf_counter()
        if not force and now - self._last < 0.1 and self.done < self.total:
            return
        self._last = now
        frac = self.done / self.total if self.total else 1.0
        width = 30
        fill = int(round(min(frac, 1.0) * width))
        self._write(f"{self.what} [{'#' * fill}{'.' * (width - fill)}] {100 * frac:5.1f}%  "
                    f"{self.done:,}/{self.total:,} {self.unit}  {self.rate:,.0f} {self.unit}/s")

    def status(self, text: str, force: bool = False) -> None:
        """A free-form status line, redrawn at most 10 times a second."""
        if not self.enabled:
            return
        now = time.perf_counter()
        if not force and now - self._last < 0.1:
            return
        self._last = now
        self._write(text)

    def _write(self, text: str) -> None:
        pad = max(0, self._width - len(text))
        self._width = len(text)
        self.file.write("\r" + text + " " * pad)
        self.file.flush()
        self._open = True

    def close(self, final: bool = True) -> None:
        if self.enabled and self._open:
            if final:
                self.update(self.done, force=True)
            self.file.write("\n")
            self.file.flush()
        self._open = False

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(final=exc_type is None)


def _progress_callback(progress: Any) -> Tuple[Callable[[int, int, str], None], Callable[[bool], None]]:
    """(report(done, total, what), close(ok)) from None/False, True, a Progress or a callable."""
    if progress is None or progress is False:
        return (lambda done, total, what: None), (lambda ok: None)
    if progress is True:
        progress = Progress(enabled=True)
    if isinstance(progress, Progress):
        return progress, (lambda ok: progress.close(final=ok))
    if callable(progress):
        return progress, (lambda ok: None)
    raise TypeError("progress must be None, a bool, a Progress or a callable(done, total, what)")


# ============================================================================ reading
def default_chunk_rows(dims: Sequence[int], itemsize: int = 4, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> int:
    """Rows per chunk so that one chunk of input is about ``chunk_bytes``."""
    row = max(1, int(sum(dims)) * int(itemsize))
    return max(1, int(chunk_bytes) // row)


def _canon(dtype: Any) -> np.dtype:
    """The builtin numpy dtype object for a dtype (native byte order, no metadata): the
    compiled core recognises float32 / float64 by identity."""
    d = np.dtype(dtype)
    if d.kind in "fb" or d.kind in "iu":
        return np.dtype(d.type)
    return d


def _mmap_root(a: np.ndarray) -> Optional[mmap.mmap]:
    b = a
    while b is not None:
        if isinstance(b, mmap.mmap):
            return b
        b = getattr(b, "base", None)
    return None


class _FileRows:
    """Rows of a C-ordered array stored in a file at a byte offset (an .npy file, or the
    whole-file np.memmap of one), read with pread: nothing is mapped."""

    private = True  # read(out=None) returns a new array of its own

    def __init__(self, path: str, offset: int, shape: Tuple[int, int], dtype: np.dtype):
        self.path = str(path)
        self.offset = int(offset)
        self.shape = (int(shape[0]), int(shape[1]))
        self.dtype = _canon(dtype)
        self.row_bytes = self.shape[1] * self.dtype.itemsize
        self.fd = os.open(self.path, os.O_RDONLY)
        need = self.offset + self.shape[0] * self.row_bytes
        size = os.fstat(self.fd).st_size
        if size < need:
            os.close(self.fd)
            raise ValueError(f"{self.path}: file is {size} bytes, shorter than its array ({need} bytes)")
        if hasattr(os, "posix_fadvise"):
            try:
                os.posix_fadvise(self.fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
            except OSError:
                pass

    def read(self, r0: int, r1: int, out: Optional[np.ndarray] = None) -> np.ndarray:
        n = r1 - r0
        buf = np.empty((n, self.shape[1]), self.dtype) if out is None else out[:n]
        mv = memoryview(buf).cast("B")
        pos, off, total = 0, self.offset + r0 * self.row_bytes, n * self.row_bytes
        while pos < total:
            got = os.preadv(self.fd, [mv[pos:]], off + pos)
            if got <= 0:
                raise OSError(f"{self.path}: unexpected end of file at byte {off + pos}")
            pos += got
        return buf

    def drop_cache(self, r0: int, r1: int) -> None:
        if hasattr(os, "posix_fadvise"):
            try:
                os.posix_fadvise(self.fd, self.offset + r0 * self.row_bytes, (r1 - r0) * self.row_bytes,
                                 os.POSIX_FADV_DONTNEED)
            except OSError:
                pass

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class _MappedRows:
    """A memory-mapped array we cannot read by file offset (a slice of a memmap): copy the
    rows, then release the touched pages of the mapping (madvise DONTNEED)."""

    private = True

    def __init__(self, a: np.ndarray, mm: mmap.mmap):
        self.a = a
        self.mm = mm
        self.shape = a.shape
        self.dtype = _canon(a.dtype)
        try:
            self.base_addr = np.frombuffer(mm, np.uint8).__array_interface__["data"][0]
        except (TypeError, ValueError):
            self.base_addr = None

    def read(self, r0: int, r1: int, out: Optional[np.ndarray] = None) -> np.ndarray:
        v = self.a[r0:r1]
        if out is None:
            buf = np.array(v, dtype=self.dtype, order="C", copy=True)
        else:
            buf = out[: r1 - r0]
            np.copyto(buf, v)
        self._release(v)
        return buf

    def _release(self, v: np.ndarray) -> None:
        if self.base_addr is None or v.size == 0 or not hasattr(mmap, "MADV_DONTNEED"):
            return
        lo = v.__array_interface__["data"][0] - self.base_addr
        hi = lo + (v.shape[0] - 1) * v.strides[0] + v.shape[1] * v.strides[1] if v.ndim == 2 else lo + v.nbytes
        page = mmap.PAGESIZE
        lo = max(0, (lo // page) * page)
        hi = min(len(self.mm), hi)
        if hi > lo:
            try:
                self.mm.madvise(mmap.MADV_DONTNEED, lo, hi - lo)
            except (OSError, ValueError):
                pass

    def drop_cache(self, r0: int, r1: int) -> None:
        pass

    def close(self) -> None:
        pass


class _SliceRows:
    """Any array with shape / dtype / row slicing: numpy, zarr, h5py, torch (CPU)."""

    private = False  # read() may return a view of the caller's array

    def __init__(self, a: Any):
        self.a = a
        self.shape = tuple(int(s) for s in a.shape)
        self.dtype = _canon(str(a.dtype).replace("torch.", "") if is_torch(a) else a.dtype)
        self.inmem = isinstance(a, np.ndarray)

    def read(self, r0: int, r1: int, out: Optional[np.ndarray] = None) -> np.ndarray:
        v = self.a[r0:r1]
        if is_torch(v):
            v = v.detach().cpu().numpy()
        v = np.asarray(v)
        if v.dtype is not self.dtype:
            v = v.view(self.dtype) if v.dtype == self.dtype and v.dtype.isnative else v.astype(self.dtype)
        if out is None:
            if self.inmem and v.ndim == 2 and (v.shape[1] <= 1 or v.strides[1] == v.itemsize) and v.strides[0] >= 0:
                return v  # rows already contiguous: a view, no copy
            return np.ascontiguousarray(v)
        buf = out[: r1 - r0]
        np.copyto(buf, v)
        return buf

    def drop_cache(self, r0: int, r1: int) -> None:
        pass

    def close(self) -> None:
        pass


def _reader(a: Any, what: str):
    if isinstance(a, np.memmap) or (isinstance(a, np.ndarray) and _mmap_root(a) is not None):
        mm = _mmap_root(a)
        fn = getattr(a, "filename", None)
        off = getattr(a, "offset", None)
        whole = (isinstance(a, np.memmap) and mm is not None and a.base is mm and fn is not None
                 and off is not None and a.flags.c_contiguous and a.ndim == 2 and a.dtype.isnative)
        if whole:
            # np.memmap maps from the page boundary below `offset`; the array starts at `offset`
            start = a.__array_interface__["data"][0] - np.frombuffer(mm, np.uint8).__array_interface__["data"][0]
            file_off = (off - off % mmap.ALLOCATIONGRANULARITY) + start
            if os.path.exists(fn):
                return _FileRows(fn, file_off, a.shape, a.dtype)
        if mm is not None:
            return _MappedRows(a, mm)
    if isinstance(a, (str, os.PathLike)):
        raise TypeError(f"{what}: got a path; open it with numpy.load(path, mmap_mode='r')")
    if not hasattr(a, "shape") or not hasattr(a, "dtype") or not hasattr(a, "__getitem__"):
        raise TypeError(f"{what}: expected an array with shape, dtype and row slicing, got {type(a).__name__}")
    return _SliceRows(a)


class ChunkSource:
    """Row chunks of a multimodal dataset: one array per modality plus a presence mask.

    ``arrays``: a list of (N, d_m) float32/float64 arrays (numpy, np.memmap, zarr, h5py ...).
    ``mask``: an (N, M) boolean array (True = observed) of the same kinds, or None (a missing
    modality of a row is all NaN). ``read(r0, r1)`` returns the rows as C-contiguous arrays
    and the presence as an (r1 - r0, M) uint8 array."""

    def __init__(self, arrays: Sequence[Any], mask: Any = None):
        if isinstance(arrays, ChunkSource):
            raise TypeError("already a ChunkSource")
        if not isinstance(arrays, (list, tuple)) or len(arrays) == 0:
            raise TypeError("arrays must be a non-empty list with one (n, d_m) array per modality")
        self.readers = []
        try:
            for m, a in enumerate(arrays):
                r = _reader(a, f"modality {m}")
                self.readers.append(r)
                if len(r.shape) != 2:
                    raise ValueError(f"modality {m} must be 2-D (n_samples, d_{m}), got shape {r.shape}")
                if r.dtype not in (np.float32, np.float64):
                    raise TypeError(f"modality {m} has dtype {r.dtype}; ul4m4 works on float32 or float64 "
                                    "embeddings")
                if r.shape[1] == 0:
                    raise ValueError(f"modality {m} has width 0")
            self.n = self.readers[0].shape[0]
            for m, r in enumerate(self.readers):
                if r.shape[0] != self.n:
                    raise ValueError(f"modality {m} has {r.shape[0]} rows but modality 0 has {self.n}: every "
                                     "modality needs one row per sample")
            if self.n == 0:
                raise ValueError("X has no rows")
            self.M = len(self.readers)
            if self.M > 64:
                raise ValueError(f"at most 64 modalities are supported, got {self.M}")
            self.dims = [r.shape[1] for r in self.readers]
            self.dtypes = [r.dtype for r in self.readers]
            self.mask_reader = None
            if mask is not None:
                mr = _reader(mask, "mask")
                if mr.dtype.kind not in "biu":  # integers: 0/1 only, checked chunk by chunk (_arrays.as_mask)
                    raise TypeError(f"mask must be a boolean array (True = observed) or integers 0/1 (1 = observed), "
                                    f"got dtype {mr.dtype}")
                if tuple(mr.shape) != (self.n, self.M):
                    raise ValueError(f"mask has shape {tuple(mr.shape)}; expected (n_samples, n_modalities) = "
                                     f"{(self.n, self.M)}")
                self.mask_reader = mr
        except BaseException:
            self.close()
            raise

    @property
    def row_bytes(self) -> int:
        return int(sum(d * t.itemsize for d, t in zip(self.dims, self.dtypes)))

    def chunk_rows(self, chunk_rows: Optional[int]) -> int:
        if chunk_rows is None:
            return max(1, DEFAULT_CHUNK_BYTES // max(1, self.row_bytes))
        if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, (int, np.integer)) or chunk_rows < 1:
            raise ValueError(f"chunk_rows must be None or a positive int, got {chunk_rows!r}")
        return int(chunk_rows)

    def new_buffers(self, rows: int) -> List[np.ndarray]:
        return [np.empty((rows, d), t) for d, t in zip(self.dims, self.dtypes)]

    def read(self, r0: int, r1: int, out: Optional[List[np.ndarray]] = None, n_threads: int = 1,
             drop_cache: bool = False) -> Tuple[List[np.ndarray], np.ndarray]:
        Xs = [r.read(r0, r1, None if out is None else out[m]) for m, r in enumerate(self.readers)]
        if self.mask_reader is not None:
            raw = self.mask_reader.read(r0, r1)
            if raw.dtype != np.bool_:
                try:
                    raw = as_mask(raw, r1 - r0, self.M)
                except ValueError as exc:
                    raise ValueError(_shift_rows(str(exc), r0)) from None
            P = np.ascontiguousarray(raw, dtype=np.bool_).view(np.uint8)
        else:
            try:
                P = _core.presence_from_nan(Xs, r1 - r0, n_threads, 1024)
            except ValueError as exc:
                raise ValueError(_shift_rows(str(exc), r0)) from None
        if drop_cache:
            for r in self.readers:
                r.drop_cache(r0, r1)
        return Xs, P

    def close(self) -> None:
        for r in getattr(self, "readers", []):
            r.close()
        mr = getattr(self, "mask_reader", None)
        if mr is not None:
            mr.close()

    def __enter__(self) -> "ChunkSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _shift_rows(msg: str, r0: int) -> str:
    """Make 'row i' in a core message count from the start of the dataset."""
    import re

    if r0 == 0:
        return msg
    return re.sub(r"\brow (\d+)", lambda m: f"row {int(m.group(1)) + r0}", msg, count=1)


def _as_source(sources: Any, mask: Any) -> Tuple[ChunkSource, bool]:
    if isinstance(sources, ChunkSource):
        if mask is not None:
            raise ValueError("mask is given both in the ChunkSource and as mask=")
        return sources, False
    return ChunkSource(sources, mask), True


_POLL = 0.05        # seconds: the longest any reader/writer wait goes without checking for a stop
_ABORT_JOIN = 5.0   # seconds: abort() gives a writer this long to finish its current write (daemon thread)


class _Prefetch:
    """Iterate over (r0, r1, Xs, P) with a reader thread `depth` chunks ahead. Buffers come
    from a pool of depth + 2 (+ spare) sets, handed back with release(); without a pool
    (pool=False) each chunk is freshly allocated."""

    def __init__(self, src: ChunkSource, ranges: List[Tuple[int, int]], depth: int = 1, pool: bool = True,
                 n_threads: int = 1, drop_cache: bool = False, rows: int = 0, spare: int = 0):
        self.src = src
        self.ranges = ranges
        self.q: "queue.Queue" = queue.Queue(maxsize=depth)
        self.stop = threading.Event()
        self.free: Optional["queue.Queue"] = None
        if pool and rows > 0:
            self.free = queue.Queue()
            for _ in range(depth + 2 + spare):
                self.free.put(src.new_buffers(rows))
        self.n_threads = n_threads
        self.drop_cache = drop_cache
        self.thread = threading.Thread(target=self._run, name="ul4m4-reader", daemon=True)
        self.thread.start()

    def _put(self, item) -> bool:
        while not self.stop.is_set():
            try:
                self.q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _get_free(self):
        while not self.stop.is_set():
            try:
                return self.free.get(timeout=0.1)
            except queue.Empty:
                continue
        return None

    def _run(self) -> None:
        try:
            for r0, r1 in self.ranges:
                bufs = None
                if self.free is not None:
                    bufs = self._get_free()
                    if bufs is None:
                        return
                Xs, P = self.src.read(r0, r1, bufs, self.n_threads, self.drop_cache)
                if not self._put(("ok", r0, r1, Xs, P, bufs)):
                    return
            self._put(("end",))
        except BaseException as exc:  # handed to the consumer
            self._put(("err", exc))

    def __iter__(self):
        while True:
            try:
                item = self.q.get(timeout=_POLL)
            except queue.Empty:
                # never wait forever: a reader that stopped without a last word is an error
                if not self.thread.is_alive() and self.q.empty():
                    raise RuntimeError("the reader thread stopped before the last chunk") from None
                continue
            if item[0] == "end":
                return
            if item[0] == "err":
                raise item[1]
            yield item[1:]

    def release(self, bufs) -> None:
        if self.free is not None and bufs is not None:
            self.free.put(bufs)

    def close(self) -> None:
        # Every wait of the reader polls `stop`, so it ends after at most the chunk it is
        # reading; the buffers it reads into stay valid until then.
        self.stop.set()
        self.thread.join()


def _ranges(n: int, step: int) -> List[Tuple[int, int]]:
    return [(r0, min(n, r0 + step)) for r0 in range(0, n, step)]


# ============================================================================ statistics
class _Moments:
    """Per-feature count / mean / sum of squared deviations, merged block by block (Chan et
    al.'s parallel update, float64): the result equals a two-pass computation to rounding."""

    def __init__(self, dims: Sequence[int]):
        self.count = np.zeros(len(dims), np.int64)
        self.mean = [np.zeros(d) for d in dims]
        self.m2 = [np.zeros(d) for d in dims]

    def add(self, m: int, n_b: int, mean_b: np.ndarray, m2_b: np.ndarray) -> None:
        if n_b == 0:
            return
        n_a = int(self.count[m])
        if n_a == 0:
            self.mean[m] = mean_b.copy()
            self.m2[m] = m2_b.copy()
        else:
            n = n_a + n_b
            delta = mean_b - self.mean[m]
            self.mean[m] = self.mean[m] + delta * (n_b / n)
            self.m2[m] = self.m2[m] + m2_b + delta * delta * (n_a * n_b / n)
        self.count[m] = n_a + n_b

    def merge(self, other: "_Moments") -> None:
        for m in range(len(self.mean)):
            self.add(m, int(other.count[m]), other.mean[m], other.m2[m])

    def finish(self) -> Tuple[List[np.ndarray], List[np.ndarray]]:
        for m, c in enumerate(self.count):
            if c == 0:
                raise ValueError(f"modality {m} has no observed row in the training data: it cannot be fitted")
        mu, sigma = [], []
        for m, c in enumerate(self.count):
            s = np.sqrt(self.m2[m] / float(c))
            s[s <= _core.SIGMA_FLOOR] = 1.0
            mu.append(np.ascontiguousarray(self.mean[m], dtype=np.float64))
            sigma.append(np.ascontiguousarray(s, dtype=np.float64))
        return mu, sigma


def chunk_moments(Xs: Sequence[np.ndarray], P: np.ndarray, r0: int = 0, n_threads: int = 1) -> _Moments:
    """Count, mean and squared deviations of one chunk (rows with P[:, m] only), float64.

    Computed by the compiled ``compute_stats`` (a two-pass mean / deviation in float64) and
    turned back into sums of squared deviations: m2 = sigma^2 x count. A feature whose
    sigma came back as exactly 1.0 may have been clamped (sigma <= SIGMA_FLOOR becomes 1); those
    few columns are recomputed in numpy, so the result is exact either way."""
    P = np.ascontiguousarray(P, dtype=np.uint8)
    counts = P.sum(axis=0, dtype=np.int64)
    have = [m for m in range(len(Xs)) if counts[m] > 0]
    mom = _Moments([x.shape[1] for x in Xs])
    if not have:
        return mom
    try:
        mu, sigma = _core.compute_stats([Xs[m] for m in have], np.ascontiguousarray(P[:, have]), n_threads, 1024)
    except ValueError as exc:
        raise ValueError(_shift_rows(_rename_modality(str(exc), have), r0)) from None
    for i, m in enumerate(have):
        n = int(counts[m])
        m2 = sigma[i] * sigma[i] * n
        ones = np.flatnonzero(sigma[i] == 1.0)
        if ones.size:
            rows = P[:, m].astype(bool)
            x = Xs[m][rows][:, ones].astype(np.float64)
            m2[ones] = np.square(x - x.mean(axis=0)).sum(axis=0)
        mom.add(m, n, np.asarray(mu[i], dtype=np.float64), m2)
    return mom


def _rename_modality(msg: str, have: Sequence[int]) -> str:
    import re

    return re.sub(r"\bmodality (\d+)", lambda g: f"modality {have[int(g.group(1))]}", msg, count=1)


def default_init_rows(n: int, K: int, row_bytes: int) -> int:
    """Rows of the k-means++ seeding sample: max(20,000, 50 K), at most 256 MiB of rows
    (but at least 10 K), at most n."""
    want = max(20000, 50 * K)
    cap = max(10 * K, (256 << 20) // max(1, row_bytes))
    return int(min(n, want, cap))


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
    src, own = _as_source(sources, mask)
    report, close_progress = _progress_callback(progress)
    ok = False
    try:
        rs = imp.random_state if random_state is None else random_state
        seed = _seed_from(rs)
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
        sample_X = [np.empty((S, d), t) for d, t in zip(dims, src.dtypes)]
        sample_P = np.empty((S, src.M), np.uint8)

        # ---- pass 1: statistics (+ seeding sample)
        mom = _Moments(dims)
        eligible = 0
        ranges = _ranges(N, step)
        pf = _Prefetch(src, ranges, depth=1, pool=False, n_threads=nt)
        try:
            for r0, r1, Xs, P, _ in pf:
                rowany = P.any(axis=1)
                if imp.empty_rows == "error" and not rowany.all():
                    i = int(np.flatnonzero(~rowany)[0]) + r0
                    raise ValueError(f"row {i} observes no modality; there is nothing to match it on. Drop such "
                                     "rows, or pass empty_rows='mean' to fill them with the training mean"
                                     + inverted_mask_hint(Xs, src.mask_reader is not None, i - r0))
                eligible += int(rowany.sum())
                mom.merge(chunk_moments(Xs, P, r0, nt))
                if S:
                    a, b = np.searchsorted(sample_idx, [r0, r1])
                    if b > a:
                        loc = sample_idx[a:b] - r0
                        for m in range(src.M):
                            sample_X[m][a:b] = Xs[m][loc]
                        sample_P[a:b] = P[loc]
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
                pf = _Prefetch(src, ranges, depth=1, pool=False, n_threads=nt)
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


def _fit_on_sample(imp, src: ChunkSource, R: int, seed: int, step: int, nt: int, report, callback) -> None:
    N = src.n
    idx = np.sort(np.random.default_rng(seed ^ 0x9E3779B97F4A7C15).choice(N, R, replace=False))
    Xs_s = [np.empty((R, d), t) for d, t in zip(src.dims, src.dtypes)]
    P_s = np.empty((R, src.M), np.uint8)
    pf = _Prefetch(src, _ranges(N, step), depth=1, pool=False, n_threads=nt)
    try:
        for r0, r1, Xs, P, _ in pf:
            a, b = np.searchsorted(idx, [r0, r1])
            if b > a:
                loc = idx[a:b] - r0
                for m in range(src.M):
                    Xs_s[m][a:b] = Xs[m][loc]
                P_s[a:b] = P[loc]
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
def _completion_args(imp: UL4M4Imputer, completion, temperature_scale, temperature):
    """The completion settings of a transform (the call's overrides, else the estimator's;
    'auto' is the fitted choice), checked with the parameters the pass uses, and greedy's
    K x K tables within the budget."""
    imp._validate_params(("n_threads", "chunk_size", "empty_rows"))
    completion, ts, temp = imp._completion_settings(completion, temperature_scale, temperature)
    check_table_budget(imp.center_mask_.shape[0], len(imp.mean_), completion)
    return completion, ts, temp


def _check_model(imp: UL4M4Imputer, src: ChunkSource) -> None:
    imp._check_fitted()
    M = len(imp.mean_)
    if src.M != M:
        raise ValueError(f"X has {src.M} modalities but the model was fitted on {M}")
    for m, (d, mu) in enumerate(zip(src.dims, imp.mean_)):
        if d != mu.shape[0]:
            raise ValueError(f"modality {m} has width {d} but the model was fitted with {mu.shape[0]}")


def _complete_chunk(imp, model, Xs, P, outs, completion, ts, temp, nt, r0, mask_given=True):
    if imp.empty_rows == "error":
        rowany = P.any(axis=1)
        if not rowany.all():
            i = int(np.flatnonzero(~rowany)[0]) + r0
            raise ValueError(f"row {i} observes no modality; there is nothing to match it on. Drop such rows, or "
                             "pass empty_rows='mean' to fill them with the training mean"
                             + inverted_mask_hint(Xs, mask_given, i - r0))
    try:
        return _core.complete(model, Xs, P, outs, completion, float(ts), float(temp) if temp is not None else 0.0,
                              nt, int(imp.chunk_size))
    except ValueError as exc:
        raise explain(ValueError(_shift_rows(str(exc), r0)), Xs, mask_given, r0) from None


def iter_transform(imputer: UL4M4Imputer, sources: Any, mask: Any = None, *, chunk_rows: Optional[int] = None,
                   completion: Optional[str] = None, temperature_scale: Optional[float] = None,
                   temperature: Optional[float] = None) -> Iterator[Tuple[int, int, List[np.ndarray], np.ndarray,
                                                                         np.ndarray]]:
    """Complete a dataset chunk by chunk: yields ``(r0, r1, filled, imputed, unfilled)`` with
    ``filled`` a list of (r1 - r0, d_m) arrays (fresh arrays, observed slots bit-for-bit) and
    the two (r1 - r0, M) boolean masks. The next chunk is read while the caller works."""
    imp = imputer
    src, own = _as_source(sources, mask)
    try:
        _check_model(imp, src)
        completion, ts, temp = _completion_args(imp, completion, temperature_scale, temperature)
        model = imp._compiled()
        nt = effective_n_threads(imp.n_threads)
        pf = _Prefetch(src, _ranges(src.n, src.chunk_rows(chunk_rows)), depth=1, pool=False, n_threads=nt)
        try:
            for r0, r1, Xs, P, _ in pf:
                # A chunk read into a new buffer of ours (files, memory maps) is completed in
                # place and handed over; a chunk that may be a view of the caller's array
                # goes to a new output array (the caller's data are never written).
                outs = [x if r.private else np.empty_like(x) for x, r in zip(Xs, src.readers)]
                im, un = _complete_chunk(imp, model, Xs, P, outs, completion, ts, temp, nt, r0,
                                         src.mask_reader is not None)
                yield r0, r1, outs, im, un
        finally:
            pf.close()
    finally:
        if own:
            src.close()


class _NpyWriter:
    """An .npy file written by pwrite at row offsets (nothing mapped)."""

    def __init__(self, path: Path, shape: Tuple[int, int], dtype: np.dtype):
        self.path = Path(path)
        self.shape = (int(shape[0]), int(shape[1]))
        self.dtype = np.dtype(dtype)
        self.row_bytes = self.shape[1] * self.dtype.itemsize
        with open(self.path, "wb") as fh:
            np.lib.format.write_array_header_1_0(
                fh, {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False,
                     "shape": self.shape})
            self.offset = fh.tell()
        self.fd = os.open(self.path, os.O_WRONLY)
        os.ftruncate(self.fd, self.offset + self.shape[0] * self.row_bytes)

    def write(self, r0: int, a: np.ndarray) -> None:
        mv = memoryview(np.ascontiguousarray(a)).cast("B")
        pos, off = 0, self.offset + r0 * self.row_bytes
        while pos < len(mv):
            pos += os.pwrite(self.fd, mv[pos:], off + pos)

    def close(self, fsync: bool = False) -> None:
        if self.fd >= 0:
            try:
                if fsync:
                    os.fsync(self.fd)
            finally:
                os.close(self.fd)
                self.fd = -1


class _WriterThread:
    """Writes (r0, outs, imputed, unfilled) items in a background thread; buffers return to
    a pool once written.

    No wait is unbounded: the thread polls its queue and a stop event, so that abort() (on an
    error, Ctrl-C or SIGTERM) returns after at most the write in progress, whatever state an
    interrupted put() left the queue in (an item appended but its waiter never notified)."""

    def __init__(self, write_fn: Callable[..., None], depth: int = 1):
        self.q: "queue.Queue" = queue.Queue(maxsize=depth)
        self.write_fn = write_fn
        self.error: Optional[BaseException] = None
        self.stop = threading.Event()
        self.done = threading.Event()  # finish(): end once the queue is drained
        self.thread = threading.Thread(target=self._run, name="ul4m4-writer", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                item = self.q.get(timeout=_POLL)
            except queue.Empty:
                if self.done.is_set():
                    return
                continue
            if item is None:
                return
            if self.error is not None or self.stop.is_set():
                item[-1]()  # release buffers, skip
                continue
            try:
                self.write_fn(*item[:-1])
            except BaseException as exc:
                self.error = exc
            finally:
                item[-1]()

    def put(self, *item) -> None:
        while True:
            if self.error is not None:
                raise self.error
            try:
                self.q.put(item, timeout=_POLL)
                return
            except queue.Full:
                if not self.thread.is_alive():
                    raise RuntimeError("writer thread stopped") from None

    def finish(self) -> None:
        self.done.set()
        while self.thread.is_alive():
            self.thread.join(_POLL)
        if self.error is not None:
            raise self.error

    def abort(self) -> None:
        # stop without writing what is queued; the thread sees `stop` within one poll
        self.error = self.error or RuntimeError("aborted")
        self.stop.set()
        self.thread.join(_ABORT_JOIN)


def _output_paths(out_dir: Path, names: Sequence[str], ext: str) -> List[Path]:
    for n in names:
        if not n or n in (".", "..") or "/" in n or "\\" in n or n.startswith("."):
            raise ValueError(f"modality name {n!r} cannot be used as an output file name")
        if n in ("imputed_mask", "unfilled_mask"):
            raise ValueError(f"modality name {n!r} is reserved for an output file")
    if len(set(names)) != len(names):
        raise ValueError(f"modality names {list(names)} are not distinct")
    return [out_dir / f"{n}{ext}" for n in names] + [out_dir / f"imputed_mask{ext}", out_dir / f"unfilled_mask{ext}"]


def _check_not_inputs(finals: Sequence[Path], src: ChunkSource) -> None:
    ins = [r.path for r in src.readers + ([src.mask_reader] if src.mask_reader is not None else [])
           if isinstance(r, _FileRows)]
    for f in finals:
        if f.exists():
            for p in ins:
                try:
                    if os.path.samefile(f, p):
                        raise ValueError(f"{f}: is one of the input files; write the output to another directory")
                except OSError:
                    pass


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
    src, own = _as_source(sources, mask)
    report, close_progress = _progress_callback(progress)
    ok = False
    tmps: List[Path] = []
    writers: List[_NpyWriter] = []
    wt = None
    try:
        _check_model(imp, src)
        completion, ts, temp = _completion_args(imp, completion, temperature_scale, temperature)
        model = imp._compiled()
        nt = effective_n_threads(imp.n_threads)
        names = [f"m{m}" for m in range(src.M)] if names is None else [str(n) for n in names]
        if len(names) != src.M:
            raise ValueError(f"{len(names)} names for {src.M} modalities")
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        finals = _output_paths(out_dir, names, ".npy")
        _check_not_inputs(finals, src)
        N, M = src.n, src.M
        step = src.chunk_rows(chunk_rows)
        pid = os.getpid()
        t0 = time.perf_counter()
        tmps = [p.with_name(f".{p.name}.partial-{pid}") for p in finals]
        for m in range(M):
            writers.append(_NpyWriter(tmps[m], (N, src.dims[m]), src.dtypes[m]))
        writers.append(_NpyWriter(tmps[M], (N, M), np.bool_))
        writers.append(_NpyWriter(tmps[M + 1], (N, M), np.bool_))

        counts = [0, 0]

        def write(r0, outs, im, un):
            for m in range(M):
                writers[m].write(r0, outs[m])
            writers[M].write(r0, im)
            writers[M + 1].write(r0, un)

        wt = _WriterThread(write, depth=1)
        # Each chunk is read into a buffer set of the reader's pool, completed there in place
        # (observed slots stay as read), written from it, and only then handed back: a set
        # being read, one queued, one being completed, one queued for the writer, one being
        # written.
        pf = _Prefetch(src, _ranges(N, step), depth=1, pool=True, n_threads=nt, drop_cache=drop_cache,
                       rows=step, spare=2)
        try:
            for r0, r1, Xs, P, inbufs in pf:
                im, un = _complete_chunk(imp, model, Xs, P, Xs, completion, ts, temp, nt, r0,
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
    src, own = _as_source(sources, mask)
    report, close_progress = _progress_callback(progress)
    ok = False
    tmp = out_path.with_name(f".{out_path.name}.partial-{os.getpid()}")
    try:
        _check_model(imp, src)
        names = [f"m{m}" for m in range(src.M)] if names is None else [str(n) for n in names]
        if len(names) != src.M:
            raise ValueError(f"{len(names)} names for {src.M} modalities")
        _output_paths(out_path, names, "")
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
