"""Writing completed chunks: ``.npy`` files written by row offset, a writer thread that
overlaps writing with the next chunk's work, and the output file names."""
from __future__ import annotations

import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

from ._chunks import ChunkSource, FileRows

__all__ = ["NpyWriter", "WriterThread", "output_paths", "check_not_inputs"]

ABORT_WAIT = 5.0   # seconds: abort() gives the write in progress this long to finish


class NpyWriter:
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


class WriterThread:
    """Writes (r0, outs, imputed, unfilled) items on one writer thread; each item's last
    element, a callable, is called once it is written (or skipped) and hands its buffers
    back.

    put() waits (a plain blocking wait, Ctrl-C interrupts it) while ``depth`` items are queued
    behind the one being written, and raises a write's error. abort() (on an error, Ctrl-C or
    SIGTERM) drops the queued items unwritten and returns once the write in progress is done,
    or after ABORT_WAIT seconds."""

    def __init__(self, write_fn: Callable[..., None], depth: int = 1):
        self.write_fn = write_fn
        self.depth = depth
        self.error: Optional[BaseException] = None
        self._pending: deque = deque()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ul4m4-writer")

    def _write(self, item) -> None:
        try:
            if self.error is None:  # after an error or abort(): release only
                self.write_fn(*item[:-1])
        except BaseException as exc:
            self.error = exc
        finally:
            item[-1]()

    def put(self, *item) -> None:
        while len(self._pending) > self.depth:
            self._pending.popleft().result()
        if self.error is not None:
            raise self.error
        self._pending.append(self._pool.submit(self._write, item))

    def finish(self) -> None:
        self._pool.shutdown(wait=True)
        self._pending.clear()
        if self.error is not None:
            raise self.error

    def abort(self) -> None:
        self.error = self.error or RuntimeError("aborted")
        self._pool.shutdown(wait=False, cancel_futures=True)
        wait(self._pending, timeout=ABORT_WAIT)


def output_paths(out_dir: Path, names: Sequence[str], ext: str) -> List[Path]:
    for n in names:
        if not n or n in (".", "..") or "/" in n or "\\" in n or n.startswith("."):
            raise ValueError(f"modality name {n!r} cannot be used as an output file name")
        if n in ("imputed_mask", "unfilled_mask"):
            raise ValueError(f"modality name {n!r} is reserved for an output file")
    if len(set(names)) != len(names):
        raise ValueError(f"modality names {list(names)} are not distinct")
    return [out_dir / f"{n}{ext}" for n in names] + [out_dir / f"imputed_mask{ext}", out_dir / f"unfilled_mask{ext}"]


def check_not_inputs(finals: Sequence[Path], src: ChunkSource) -> None:
    ins = [r.path for r in src.readers + ([src.mask_reader] if src.mask_reader is not None else [])
           if isinstance(r, FileRows)]
    for f in finals:
        if f.exists():
            for p in ins:
                try:
                    if os.path.samefile(f, p):
                        raise ValueError(f"{f}: is one of the input files; write the output to another directory")
                except OSError:
                    pass
