"""Held-out reconstruction: the one machinery behind ``UL4M4Imputer.score`` and
``completion='auto'``.

Some observed modalities of some rows are hidden, the rows are completed from what is
left, and the fills are compared with the hidden true values.

Which slots are hidden (:func:`holdout_mask`) follows the data's own missingness:
each row i observing at least two modalities draws a *donor* row uniformly among the rows
that miss at least one modality, and hides its observed modalities that the donor
misses (new presence = presence_i AND presence_donor). A draw is usable when it hides at
least one modality and keeps at least one; a row retries up to ``_DRAWS`` times and is
left out if no draw is usable. When no row misses anything (complete data) there is no
pattern to follow, and each row with two or more modalities hides one of them, chosen
uniformly. Rows observing a single modality cannot take part (nothing would be left to
match them on). At most ``max_rows`` rows are used (a uniform sample without
replacement of the usable ones, kept in row order).

The error (:func:`holdout_errors`) is computed in the model's normalised (z) space,
``z = (x - mean_) / scale_``: for each modality m with hidden slots,

    NRMSE_m = sqrt( sum_{hidden (i, m)} ||z_hat_i^m - z_i^m||^2 / sum_{hidden (i, m)} ||z_i^m||^2 )

(mean-fill, which writes z_hat = 0, scores exactly 1), and the error is the mean of
NRMSE_m over those modalities, so a narrow modality weighs as much as a wide one (as in
the partial distance). (A modality whose hidden true values are all exactly at the mean,
sum ||z||^2 = 0, uses the plain RMSE instead.) Every draw comes from ``numpy.random.default_rng`` seeded with
the given seed: the same seed hides the same slots.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np

__all__ = ["GRID", "holdout_mask", "holdout_errors", "candidate_label", "refit_rows"]

#: Candidates of ``completion='auto'``, in order (ties go to the earlier one): greedy, then
#: soft from temperature_scale 1 down to 1/32 by halves.
GRID: Tuple[Tuple[str, Optional[float]], ...] = (("greedy", None),) + tuple(
    ("soft", 1.0 / 2 ** k) for k in range(6))

#: Rows hidden at most for ``completion='auto'`` (keeps its cost a fraction of a fit).
AUTO_MAX_ROWS = 4096

#: Lloyd iterations of the refit without the hidden slots that ``completion='auto'`` judges
#: the candidates with (from the fitted centres; see ``UL4M4Imputer._choose_completion``).
AUTO_REFIT_ITER = 2

#: Rows of that refit at most: the held-out rows and a uniform sample of the others. Below it
#: every training row takes part; above it the refit's cost stops growing with N (at the
#: reference N = 200 000 it was most of the cost of the choice; docs/selftune.md).
AUTO_REFIT_ROWS = 65536

_DRAWS = 4
_STREAM = 0x55_4C_34_4D  # separates this stream from k-means++'s draws of the same seed
_REFIT_STREAM = _STREAM + 1  # the refit's sample: its own stream, so holdout_mask's draws stay as they were


def candidate_label(completion: str, temperature_scale: Optional[float]) -> str:
    """'greedy', or 'soft 1/16' style labels (verbose output, tables)."""
    if completion == "greedy":
        return "greedy"
    inv = 1.0 / temperature_scale
    return f"soft 1/{inv:g}" if temperature_scale < 1 and float(inv).is_integer() else f"soft {temperature_scale:g}"


def holdout_mask(present: np.ndarray, seed: int, max_rows: Optional[int] = None) -> np.ndarray:
    """(n, M) boolean mask of the observed slots to hide (see the module docstring)."""
    P = np.asarray(present).astype(bool, copy=False)
    n, M = P.shape
    rng = np.random.default_rng([int(seed), _STREAM])
    hide = np.zeros((n, M), dtype=bool)
    eligible = np.flatnonzero(P.sum(axis=1) >= 2)
    if eligible.size == 0:
        return hide
    donors = np.flatnonzero(~P.all(axis=1) & P.any(axis=1))
    done = np.zeros(n, dtype=bool)
    if donors.size:
        for _ in range(_DRAWS):
            todo = eligible[~done[eligible]]
            if todo.size == 0:
                break
            pick = donors[rng.integers(0, donors.size, todo.size)]
            keep = P[todo] & P[pick]
            ok = keep.any(axis=1) & (keep != P[todo]).any(axis=1)
            rows = todo[ok]
            hide[rows] = P[rows] & ~keep[ok]
            done[rows] = True
    if not done.any():  # complete data, or no donor ever fitted: hide one modality per row
        Pe = P[eligible]
        k = (rng.random(eligible.size) * Pe.sum(axis=1)).astype(np.int64)  # which observed one
        hide[eligible] = Pe & (np.cumsum(Pe, axis=1) - 1 == k[:, None])
        done[eligible] = True
    used = np.flatnonzero(done)
    if max_rows is not None and used.size > max_rows:
        keep_rows = np.sort(rng.choice(used, size=int(max_rows), replace=False))
        drop = np.ones(n, dtype=bool)
        drop[keep_rows] = False
        hide[drop] = False
    return hide


def refit_rows(hide: np.ndarray, seed: int, max_rows: int) -> Optional[np.ndarray]:
    """Rows of the refit without the hidden slots: None (all of them) when there are at most
    ``max_rows``; else, in row order, every row with a hidden slot (all of them, even more
    than ``max_rows``) and a uniform sample without replacement of the others, up to
    ``max_rows`` in all (seeded: the same seed, the same rows)."""
    n = hide.shape[0]
    if n <= max_rows:
        return None
    held = hide.any(axis=1)
    others = np.flatnonzero(~held)
    rng = np.random.default_rng([int(seed), _REFIT_STREAM])
    pick = rng.choice(others, size=max(0, min(others.size, int(max_rows) - int(held.sum()))), replace=False)
    keep = held.copy()
    keep[pick] = True
    return np.flatnonzero(keep)


def holdout_errors(model, core, Xs: Sequence[np.ndarray], present: np.ndarray, hide: np.ndarray,
                   mean: Sequence[np.ndarray], scale: Sequence[np.ndarray],
                   candidates: Sequence[Tuple[str, float, float]], n_threads: int,
                   chunk: int) -> List[float]:
    """Error (module docstring) of each candidate ``(completion, temperature_scale,
    temperature)`` on the hidden slots. ``Xs`` / ``present`` are the core's inputs
    (per-modality arrays, N x M uint8); ``model`` a compiled ``_core.Model``. Returns
    NaN for every candidate when nothing is hidden."""
    rows = np.flatnonzero(hide.any(axis=1))
    if rows.size == 0:
        return [float("nan")] * len(candidates)
    H = hide[rows]
    P = np.ascontiguousarray((present[rows].astype(bool) & ~H).view(np.uint8))
    sub = [np.ascontiguousarray(X[rows]) for X in Xs]
    mods = [m for m in range(len(sub)) if H[:, m].any()]
    truth = {m: (np.asarray(sub[m][H[:, m]], np.float64) - mean[m]) / scale[m] for m in mods}
    denom = {m: float(np.sum(truth[m] ** 2)) for m in mods}
    outs = [np.empty_like(X) for X in sub]
    errors = []
    for completion, ts, temp in candidates:
        core.complete(model, sub, P, outs, completion, float(ts), float(temp or 0.0), n_threads, chunk)
        per_mod = []
        for m in mods:
            zhat = (np.asarray(outs[m][H[:, m]], np.float64) - mean[m]) / scale[m]
            num = float(np.sum((zhat - truth[m]) ** 2))
            per_mod.append(np.sqrt(num / denom[m]) if denom[m] > 0 else np.sqrt(num / truth[m].size))
        errors.append(float(np.mean(per_mod)))
    return errors
