"""The fit driver of the fits that run their passes from Python (out-of-core and Dask).

Masked k-means (docs/algorithm.md, "Masked k-means") has one set of rules: restart seeds,
the explicit-init rule for ``n_init``, the Lloyd loop (update, centre shift, stopping), the
best-run rule and the fitted state. The in-memory fit runs them inside the compiled core
(``_core.kmeans``); the fits that read their data in passes run them here, and a backend
supplies only a *pass*: "assign every row to these centres and return the summed
``assign_and_sum`` results" (the shape of faiss's ``Clustering::train`` over an index). The
constants are the core's own (``_core.RESTART_SEED_STRIDE``), and the fitted attributes are
written by :meth:`UL4M4Imputer._set_fitted` for every fit.
"""
from __future__ import annotations

import time
import warnings
from typing import Any, Callable, List, Optional, Sequence, Tuple

import numpy as np

from . import _core

_MASK64 = (1 << 64) - 1

Start = Tuple[List[np.ndarray], np.ndarray]  # z-space centres (K, d_m) per modality, (K, M) bool presence


def restart_seed(seed: int, run: int) -> int:
    """Seed of k-means++ restart ``run`` (the compiled core's rule)."""
    return (int(seed) + _core.RESTART_SEED_STRIDE * int(run)) & _MASK64


def check_n_clusters(K: int, eligible: int) -> None:
    if K > eligible:
        raise ValueError(f"n_clusters={K} is larger than the {eligible} rows with at least one observed modality "
                         f"(n_samples={eligible})")


def default_init_rows(n: int, K: int, row_bytes: int) -> int:
    """Rows of the k-means++ seeding sample: max(20,000, 50 K), at most 256 MiB of rows
    (but at least 10 K), at most n."""
    want = max(20000, 50 * K)
    cap = max(10 * K, (256 << 20) // max(1, row_bytes))
    return int(min(n, want, cap))


def explicit_init_runs(n_init: int, stacklevel: int = 3) -> int:
    """Explicit initial centres make one run: n_init other than 1 is set to 1, with a warning."""
    if int(n_init) != 1:
        warnings.warn("explicit initial centres given: n_init is set to 1", RuntimeWarning, stacklevel=stacklevel)
    return 1


def starts(init: Any, n_init: int, mu, sigma, K: int, seed: int,
           seed_fn: Callable[[int], dict]) -> List[Start]:
    """Initial centres of each run: the explicit ``init`` (raw space, as the estimator's
    ``init``) once, else ``n_init`` k-means++ seedings ``seed_fn(restart_seed(seed, r))``
    (a ``_core.seed_kmeanspp`` result on the backend's sample)."""
    from ._imputer import UL4M4Imputer
    if not isinstance(init, str):
        explicit_init_runs(n_init, stacklevel=4)
        zC, zH = UL4M4Imputer._init_centres(init, mu, sigma, K)
        return [(zC, zH.view(bool))]
    out = []
    for r in range(int(n_init)):
        c = seed_fn(restart_seed(seed, r))
        out.append((c["centres"], np.asarray(c["H"], bool)))
    return out


def better(res: dict, best: Optional[dict]) -> bool:
    """The best-run rule: fewest rows left unassigned, then the lowest inertia."""
    return best is None or res["n_unassigned"] < best["n_unassigned"] or (
        res["n_unassigned"] == best["n_unassigned"] and res["inertia"] < best["inertia"])


def iteration_reporter(verbose: Any, callback: Optional[Callable[..., Any]]) -> Callable[..., Any]:
    """The per-iteration hook of every fit: a verbose line, then the user's callback (whose
    falsy return other than None stops the fit)."""
    def on_iter(it, inertia, n_changed, shift, secs):
        if verbose:
            print(f"[ul4m4] iter {it:4d}  inertia {inertia:.6g}  changed {n_changed}  "
                  f"shift {shift:.3g}  {secs:.3f}s", flush=True)
        if callback is not None:
            return callback(it, inertia, n_changed, shift, secs)
        return True
    return on_iter


def centre_shift(C_old: Sequence[np.ndarray], H_old: np.ndarray, C_new: Sequence[np.ndarray],
                 H_new: np.ndarray) -> float:
    """max_j of the partial distance between old and new centre j; inf when a centre shares
    no modality with its previous self."""
    H_old = np.asarray(H_old, bool)
    H_new = np.asarray(H_new, bool)
    both = H_old & H_new
    K, M = both.shape
    num = np.zeros(K)
    for m in range(M):
        d = C_old[m].shape[1]
        rows = both[:, m]
        if rows.any():
            diff = C_old[m][rows] - C_new[m][rows]
            num[rows] += np.einsum("ij,ij->i", diff, diff) / d
    cnt = both.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        dist = np.where(cnt > 0, np.sqrt(num / np.maximum(cnt, 1)), np.inf)
    return float(dist.max()) if K else 0.0


def _zero_absent(C: Sequence[np.ndarray], H: np.ndarray) -> List[np.ndarray]:
    H = np.asarray(H, bool)
    return [np.ascontiguousarray(np.where(H[:, m:m + 1], np.nan_to_num(c, nan=0.0), 0.0)) for m, c in enumerate(C)]


def lloyd(pass_fn: Callable[..., dict], mu, sigma, C0, H0, max_iter: int, tol: float,
          on_iter: Optional[Callable[..., Any]] = None) -> dict:
    """The Lloyd loop around a pass function (the compiled core's loop, step for step).

    ``pass_fn(mu, sigma, C, H_u8, first)`` assigns every row to the centres (C, H), keeps
    the labels (comparing with the previous ones unless ``first``) and returns the summed
    ``assign_and_sum`` results: dict(sums, counts, sizes, inertia, n_unassigned, n_changed).
    Returns dict(centres, H, n_iter, inertia, n_unassigned, converged, history)."""
    C = _zero_absent(C0, H0)
    H = np.ascontiguousarray(np.asarray(H0, bool))
    st = pass_fn(mu, sigma, C, H.view(np.uint8), True)
    n_iter = 0
    history = []
    converged = False
    while n_iter < max_iter:
        t0 = time.perf_counter()
        new = _core.update_centres(mu, sigma, C, H.view(np.uint8), st["sums"], st["counts"], st["sizes"])
        n_iter += 1
        H_new = np.ascontiguousarray(np.asarray(new["H"], bool))
        C_new = _zero_absent(new["centres"], H_new)
        shift = centre_shift(C, H, C_new, H_new)
        C, H = C_new, H_new
        st = pass_fn(mu, sigma, C, H.view(np.uint8), False)
        secs = time.perf_counter() - t0
        history.append((n_iter, float(st["inertia"]), int(st["n_changed"]), shift, secs))
        go_on = True
        if on_iter is not None:
            r = on_iter(n_iter, float(st["inertia"]), int(st["n_changed"]), shift, secs)
            go_on = r is None or bool(r)
        if st["n_changed"] == 0 or shift <= tol:
            converged = True
            break
        if not go_on:
            break
    centres = [np.where(H[:, m:m + 1], c, np.nan) for m, c in enumerate(C)]
    return dict(centres=centres, H=H, n_iter=n_iter, inertia=float(st["inertia"]),
                n_unassigned=int(st["n_unassigned"]), converged=converged, history=history)


def run(starts_: Sequence[Start], pass_for_run: Callable[[int], Callable[..., dict]],
        labels_of_run: Callable[[], np.ndarray], mu, sigma, max_iter: int, tol: float,
        on_iter: Optional[Callable[..., Any]]) -> Tuple[dict, np.ndarray]:
    """Every run from its start, keeping the best by :func:`better`.

    ``pass_for_run(r)`` gives run r's pass function; ``labels_of_run()`` the labels the last
    pass kept (called only for a run that becomes the best, right after it)."""
    best = best_labels = None
    for r, (C0, H0) in enumerate(starts_):
        res = lloyd(pass_for_run(r), mu, sigma, C0, H0, max_iter, tol, on_iter)
        if better(res, best):
            best = res
            best_labels = labels_of_run()
    return best, best_labels


class Summed:
    """Adds assign_and_sum results in order (a fixed order gives the same bits every time)."""

    def __init__(self):
        self.sums = self.counts = self.sizes = None
        self.inertia = 0.0
        self.n_unassigned = 0
        self.n_changed = 0

    def add(self, r: dict) -> None:
        if self.sums is None:
            self.sums = np.array(r["sums"], dtype=np.float64)
            self.counts = np.array(r["counts"], dtype=np.int64)
            self.sizes = np.array(r["sizes"], dtype=np.int64)
        else:
            self.sums += r["sums"]
            self.counts += r["counts"]
            self.sizes += r["sizes"]
        self.inertia += float(r["inertia"])
        self.n_unassigned += int(r["n_unassigned"])
        self.n_changed += int(r["n_changed"])

    def result(self) -> dict:
        return dict(sums=self.sums, counts=self.counts, sizes=self.sizes, inertia=self.inertia,
                    n_unassigned=self.n_unassigned, n_changed=self.n_changed)
