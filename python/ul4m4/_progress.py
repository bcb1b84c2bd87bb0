"""Progress reporting of the chunked passes: a terminal progress bar, and the
``progress=`` argument turned into a callback."""
from __future__ import annotations

import sys
import time
from typing import Any, Callable, Optional, Tuple

__all__ = ["Progress", "progress_callback"]


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


def progress_callback(progress: Any) -> Tuple[Callable[[int, int, str], None], Callable[[bool], None]]:
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

