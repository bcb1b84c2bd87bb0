"""Reading a multimodal dataset in chunks of rows: one reader per array (pread for .npy
files, copy-and-release for other memory maps, row slicing for everything else), the
:class:`ChunkSource` over all modalities and the mask, and read-ahead on a thread."""
from __future__ import annotations

import mmap
import os
import queue
import re
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

from . import _core
from ._arrays import as_mask, is_torch

#: Bytes of input per chunk when ``chunk_rows`` is None (32 MiB).
DEFAULT_CHUNK_BYTES = 32 << 20


def default_chunk_rows(dims: Sequence[int], itemsize: int = 4, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> int:
    """Rows per chunk so that one chunk of input is about ``chunk_bytes``."""
    row = max(1, int(sum(dims)) * int(itemsize))
    return max(1, int(chunk_bytes) // row)


def _canon(dtype: Any) -> np.dtype:
    """The builtin numpy dtype object for a dtype: native byte order (the compiled core takes
    float32 / float64 in native order only), no metadata."""
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


class FileRows:
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


class MappedRows:
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


class SliceRows:
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


def reader(a: Any, what: str):
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
                return FileRows(fn, file_off, a.shape, a.dtype)
        if mm is not None:
            return MappedRows(a, mm)
    if isinstance(a, (str, os.PathLike)):
        raise TypeError(f"{what}: got a path; open it with numpy.load(path, mmap_mode='r')")
    if not hasattr(a, "shape") or not hasattr(a, "dtype") or not hasattr(a, "__getitem__"):
        raise TypeError(f"{what}: expected an array with shape, dtype and row slicing, got {type(a).__name__}")
    return SliceRows(a)


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
                r = reader(a, f"modality {m}")
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
                mr = reader(mask, "mask")
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
                    raise ValueError(shift_rows(str(exc), r0)) from None
            P = np.ascontiguousarray(raw, dtype=np.bool_).view(np.uint8)
        else:
            try:
                P = _core.presence_from_nan(Xs, r1 - r0, n_threads, 1024)
            except ValueError as exc:
                raise ValueError(shift_rows(str(exc), r0)) from None
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


def shift_rows(msg: str, r0: int) -> str:
    """Make 'row i' in a core message count from the start of the dataset."""
    if r0 == 0:
        return msg
    return re.sub(r"\brow (\d+)", lambda m: f"row {int(m.group(1)) + r0}", msg, count=1)


def as_source(sources: Any, mask: Any) -> Tuple[ChunkSource, bool]:
    if isinstance(sources, ChunkSource):
        if mask is not None:
            raise ValueError("mask is given both in the ChunkSource and as mask=")
        return sources, False
    return ChunkSource(sources, mask), True



def row_ranges(n: int, step: int) -> List[Tuple[int, int]]:
    """[(r0, r1)] chunks of ``step`` rows (the last one shorter) covering ``n`` rows."""
    return [(r0, min(n, r0 + step)) for r0 in range(0, n, step)]


class Prefetch:
    """Iterate over (r0, r1, Xs, P, bufs) with reads `depth` chunks ahead of the consumer, on
    one reader thread. Buffers come from a pool of depth + 2 (+ spare) sets, handed back with
    release(); without a pool (pool=False) each chunk is freshly allocated (bufs is None).

    Each read is a future of a one-thread executor: a read that fails, whatever the
    exception, hands it to the consumer, and the consumer's waits are plain blocking waits
    (Ctrl-C interrupts them). close() cancels the reads not begun and waits for the one in
    progress, if any: the buffers it reads into stay valid until then."""

    def __init__(self, src: ChunkSource, ranges: List[Tuple[int, int]], depth: int = 1, pool: bool = True,
                 n_threads: int = 1, drop_cache: bool = False, rows: int = 0, spare: int = 0):
        self.src = src
        self.n_threads = n_threads
        self.drop_cache = drop_cache
        self.free: Optional["queue.Queue"] = None
        if pool and rows > 0:
            self.free = queue.Queue()
            for _ in range(depth + 2 + spare):
                self.free.put(src.new_buffers(rows))
        self._todo = iter(ranges)
        self._pending: deque = deque()
        self._closed = False
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ul4m4-reader")
        for _ in range(depth + 1):  # one being read, `depth` read ahead
            self._submit()

    def _submit(self) -> None:
        r = next(self._todo, None)
        if r is not None:
            self._pending.append((r, self._pool.submit(self._read, *r)))

    def _read(self, r0: int, r1: int):
        bufs = None
        if self.free is not None:
            bufs = self.free.get()  # a set handed back by release(), or None from close()
            if bufs is None:
                return None
        Xs, P = self.src.read(r0, r1, bufs, self.n_threads, self.drop_cache)
        return Xs, P, bufs

    def __iter__(self):
        while self._pending:
            (r0, r1), fut = self._pending.popleft()
            got = fut.result()
            if got is None:  # closed
                return
            self._submit()
            yield (r0, r1) + got

    def release(self, bufs) -> None:
        if self.free is not None and bufs is not None:
            self.free.put(bufs)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self.free is not None:
            self.free.put(None)  # wakes a read waiting for a buffer set
        self._pool.shutdown(wait=True)
