"""Per-feature moments of the observed rows (count, mean, squared deviations), chunk by
chunk and merged: the statistics pass of the streaming and Dask fits."""
from __future__ import annotations

import re
from typing import List, Sequence, Tuple

import numpy as np

from . import _core
from ._chunks import shift_rows

__all__ = ["Moments", "chunk_moments"]


class Moments:
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

    def merge(self, other: "Moments") -> None:
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


def chunk_moments(Xs: Sequence[np.ndarray], P: np.ndarray, r0: int = 0, n_threads: int = 1) -> Moments:
    """Count, mean and squared deviations of one chunk (rows with P[:, m] only), float64.

    Computed by the compiled ``compute_stats`` (a two-pass mean / deviation in float64) and
    turned back into sums of squared deviations: m2 = sigma^2 x count. A feature whose
    sigma came back as exactly 1.0 may have been clamped (sigma <= SIGMA_FLOOR becomes 1); those
    few columns are recomputed in numpy, so the result is exact either way."""
    P = np.ascontiguousarray(P, dtype=np.uint8)
    counts = P.sum(axis=0, dtype=np.int64)
    have = [m for m in range(len(Xs)) if counts[m] > 0]
    mom = Moments([x.shape[1] for x in Xs])
    if not have:
        return mom
    try:
        mu, sigma = _core.compute_stats([Xs[m] for m in have], np.ascontiguousarray(P[:, have]), n_threads, 1024)
    except ValueError as exc:
        raise ValueError(shift_rows(_rename_modality(str(exc), have), r0)) from None
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
    """Make 'modality i' in a core message (i counts the modalities passed) name the dataset's."""
    return re.sub(r"\bmodality (\d+)", lambda g: f"modality {have[int(g.group(1))]}", msg, count=1)
