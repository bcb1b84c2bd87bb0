"""Evaluation protocol: how well do imputers fill missing modalities?

:func:`run_protocol` reproduces the experiment behind the quality targets of the
package (and behind ``ul4m4 demo``): on a multi-view data set (by default the
shipped UCI Multiple Features data, :func:`ul4m4.datasets.load_mfeat`), for
each missing rate and seed,

1. split the rows 70/30 with ``train_test_split(stratify=y, random_state=seed)``;
2. draw one presence mask for all rows with
   ``missing_rate_mask(n, M, rate, seed=seed)`` (so train and test rows follow
   the same protocol) and hide the masked slots;
3. fit each imputer on the masked training rows only, then complete the
   training rows and the test rows;
4. score the completion twice:

   * **imputation error** (``rmse``): every view is normalised with the mean
     and population standard deviation (ddof 0; a standard deviation
     ``<= 1e-8`` is replaced by 1) of the training rows' *true, complete*
     values, and
     ``rmse = sqrt( sum_{(i,m) imputed} ||z_hat_i^m - z_i^m||^2 / sum_{(i,m) imputed} d_m )``
     over the missing slots ``(i, m)`` of the **test** rows: the root of the
     mean squared error per slot *element* (one feature of one missing slot),
     so a wide view weighs more than a narrow one.  ``rmse_slot`` weighs every
     missing slot equally instead (the way the partial distance weighs
     modalities):
     ``rmse_slot = sqrt( mean_{(i,m) imputed} ||z_hat_i^m - z_i^m||^2 / d_m )``.
     Mean-fill scores about 1 on both, by construction.
   * **downstream F1-micro** (``f1_micro``): the completed views are
     concatenated, standardised with :class:`~sklearn.preprocessing.StandardScaler`
     fitted on the completed training rows, a
     ``LogisticRegression(max_iter=2000)`` is trained on them and the F1-micro
     of its test predictions is reported.

5. time the completion: ``rows_per_s`` is (training rows + test rows) divided
   by the seconds spent completing them (the ``transform`` calls, not the
   fit); ``fit_s`` is the fit time in seconds (for ul4m4 it includes building the
   completion tables, with a one-row warm-up transform).

The imputers (keys of :data:`IMPUTERS`):

``ul4m4_greedy``
    :class:`~ul4m4.UL4M4Imputer` with ``completion='greedy'`` (the paper's).
``ul4m4_soft``
    the same fitted model, ``completion='soft'``, ``temperature_scale=1``.
``ul4m4_soft16``
    the same fitted model, ``completion='soft'``, ``temperature_scale=1/16``.
``ul4m4_auto``
    the same fitted model, with the completion that ``completion='auto'`` chose at fit
    time from held-out reconstruction on the training rows (``docs/selftune.md``).
    The ul4m4 rows share one k-means fit per seed and rate: with ``ul4m4_auto`` in the
    run it is a fit with ``completion='auto'``, whose centres are those of a fit without.
    Then ``fit_s`` of the fixed modes stops at the end of the last Lloyd iteration (plus the
    warm-up), and only ``ul4m4_auto``'s includes the choice. Each run's choice is in its
    result (``choice``, e.g. ``'soft 1/16'``).
``mean``
    mean-fill: each missing slot gets the mean of the *observed* training
    values of its view (no true value of a hidden slot is ever used).
``zero``
    zero-fill in the raw (unnormalised) space of the data.  Zero in the
    normalised space would be identical to mean-fill; raw zero is the naive
    baseline people actually use on embeddings.
``knn``
    scikit-learn's ``KNNImputer(n_neighbors=5)`` on the concatenated raw
    views with NaN in the hidden slots, fitted on the training rows.
``complete``
    no missing data at all: the downstream ceiling (its ``rmse`` is 0 and its
    timing is not measured; both are reported as ``None``).

Every number is reported per imputer, rate and metric as mean and standard
deviation over the seeds (sample standard deviation, ``ddof=1``; 0 for one
seed). ``knn_seeds=n`` runs KNNImputer on the first ``n`` seeds only (it takes
most of the time: about 100 times longer per row than ul4m4); its rows then say
over how many seeds they are.  scikit-learn is needed here (``pip install scikit-learn``), numpy and
ul4m4 otherwise.
"""
from __future__ import annotations

import math
import os
import sys
import time
import warnings
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ._arrays import column_views

__all__ = ["IMPUTERS", "METRICS", "run_protocol", "format_table", "plot_results"]

#: Imputer key -> label used in tables and plots, in display order.
IMPUTERS: Dict[str, str] = {
    "ul4m4_greedy": "ul4m4 greedy",
    "ul4m4_soft": "ul4m4 soft",
    "ul4m4_soft16": "ul4m4 soft 1/16",
    "ul4m4_auto": "ul4m4 auto",
    "mean": "mean-fill",
    "zero": "zero-fill (raw)",
    "knn": "KNNImputer (k=5)",
    "complete": "complete data",
}

#: Metric key -> (label, higher is better, format)
METRICS: Dict[str, Tuple[str, bool, str]] = {
    "f1_micro": ("test F1-micro (logistic regression; higher is better)", True, "{:.4f}"),
    "rmse": ("test RMSE of imputed slots, normalised space, per element (lower is better)", False, "{:.4f}"),
    "rmse_slot": ("test RMSE of imputed slots, normalised space, per slot (lower is better)", False, "{:.4f}"),
    "rows_per_s": ("completion throughput, rows/s (train + test rows; higher is better)", True, "{:.3g}"),
    "fit_s": ("fit time, seconds", False, "{:.3g}"),
}

_UL4M4_MODES = {
    "ul4m4_greedy": ("greedy", 1.0),
    "ul4m4_soft": ("soft", 1.0),
    "ul4m4_soft16": ("soft", 1.0 / 16.0),
    "ul4m4_auto": ("auto", None),  # the choice made at fit time (completion_, temperature_scale_)
}


def _sklearn():
    try:
        from sklearn.impute import KNNImputer
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import train_test_split
        from sklearn.preprocessing import StandardScaler
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("the evaluation protocol needs scikit-learn: pip install scikit-learn") from exc
    return KNNImputer, LogisticRegression, train_test_split, StandardScaler


def _load_default():
    from .datasets import load_mfeat

    views, y = load_mfeat(return_X_y=True, dtype=np.float64)
    return views, y


def _f1_micro(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    # single-label multi-class: micro-averaged F1 equals accuracy
    return float(np.mean(np.asarray(y_true) == np.asarray(y_pred)))


def _downstream(train_views, test_views, y_tr, y_te, max_iter=2000) -> Tuple[float, bool]:
    _, LogisticRegression, _, StandardScaler = _sklearn()
    A = np.hstack(train_views)
    B = np.hstack(test_views)
    scaler = StandardScaler().fit(A)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a ConvergenceWarning is recorded below instead
        clf = LogisticRegression(max_iter=max_iter).fit(scaler.transform(A), y_tr)
    converged = bool(np.all(np.asarray(clf.n_iter_) < max_iter))
    return _f1_micro(y_te, clf.predict(scaler.transform(B))), converged


def _errors(filled_te, true_te, miss_te, mu, sd) -> Tuple[float, float]:
    """(rmse per element, rmse per slot) over the missing test slots, normalised space."""
    sq_sum = 0.0
    n_elem = 0
    slot_sum = 0.0
    n_slot = 0
    for m, (xh, x) in enumerate(zip(filled_te, true_te)):
        rows = miss_te[:, m]
        if not rows.any():
            continue
        e = ((np.asarray(xh[rows], np.float64) - x[rows]) / sd[m]) ** 2
        sq_sum += float(e.sum())
        n_elem += e.size
        slot_sum += float(e.mean(axis=1).sum())
        n_slot += int(rows.sum())
    if n_slot == 0:
        return float("nan"), float("nan")
    return math.sqrt(sq_sum / n_elem), math.sqrt(slot_sum / n_slot)


def _run_task(task: Tuple, views: Optional[List[np.ndarray]], y: Optional[np.ndarray]) -> Dict[str, Any]:
    """One (seed, rate) run; returns {imputer: {metric: value}} plus bookkeeping.

    BLAS runs single-threaded in here (threadpoolctl): for problems of this size it is
    several times faster than threaded BLAS on small machines, and it keeps the baselines'
    timings single-threaded."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return _run_task_inner(task, views, y)
    with threadpool_limits(limits=1, user_api="blas"):
        return _run_task_inner(task, views, y)


def _run_task_inner(task: Tuple, views: Optional[List[np.ndarray]], y: Optional[np.ndarray]) -> Dict[str, Any]:
    return dict(_run_one(task, views, y), task=task)


def _run_one(task: Tuple, views: Optional[List[np.ndarray]], y: Optional[np.ndarray]) -> Dict[str, Any]:
    kind, seed, rate, imputers, n_clusters, test_size, n_threads, knn_neighbors = task
    from . import UL4M4Imputer
    from .masking import missing_rate_mask

    KNNImputer, _, train_test_split, _ = _sklearn()
    if views is None:
        views, y = _load_default()
    n, M = views[0].shape[0], len(views)
    idx = np.arange(n)
    tr, te = train_test_split(idx, test_size=test_size, stratify=y, random_state=seed)
    y_tr, y_te = y[tr], y[te]
    true_tr = [x[tr] for x in views]
    true_te = [x[te] for x in views]
    t_start = time.perf_counter()
    out: Dict[str, Dict[str, Any]] = {}

    if kind == "complete":
        f1, conv = _downstream(true_tr, true_te, y_tr, y_te)
        out["complete"] = {"f1_micro": f1, "rmse": None, "rmse_slot": None, "rows_per_s": None,
                           "fit_s": None, "lr_converged": conv}
        return {"seed": seed, "rate": None, "results": out, "seconds": time.perf_counter() - t_start}

    mask = missing_rate_mask(n, M, rate, seed=seed)
    m_tr, m_te = mask[tr], mask[te]
    miss_te = ~m_te
    # normalisation for the error: the training rows' TRUE values (ddof 0, tiny sd -> 1)
    mu = [x.mean(axis=0) for x in true_tr]
    sd = [np.where(s <= 1e-8, 1.0, s) for s in (x.std(axis=0) for x in true_tr)]
    # what the imputers see: NaN in the hidden slots
    obs_tr = [np.where(m_tr[:, m:m + 1], true_tr[m], np.nan) for m in range(M)]
    obs_te = [np.where(m_te[:, m:m + 1], true_te[m], np.nan) for m in range(M)]
    n_rows = len(tr) + len(te)

    def score(key, filled_tr, filled_te, completion_s, fit_s):
        f1, conv = _downstream(filled_tr, filled_te, y_tr, y_te)
        rmse, rmse_slot = _errors(filled_te, true_te, miss_te, mu, sd)
        out[key] = {"f1_micro": f1, "rmse": rmse, "rmse_slot": rmse_slot,
                    "rows_per_s": n_rows / max(completion_s, 1e-9), "fit_s": fit_s, "lr_converged": conv}

    modes = [k for k in imputers if k in _UL4M4_MODES]
    if modes:
        auto = "ul4m4_auto" in modes
        last_iter = []  # when the last Lloyd iteration ended: what follows in fit is the choice

        def mark(*_):
            last_iter[:] = [time.perf_counter()]

        t0 = time.perf_counter()
        imp = UL4M4Imputer(n_clusters, completion="auto" if auto else "greedy", random_state=seed,
                           n_threads=n_threads).fit(obs_tr, mask=m_tr, callback=mark)
        t_fit = time.perf_counter()
        # one-row warm-up: builds the completion tables once, so that the timed transforms
        # below measure completion only (the warm-up is counted in fit_s)
        imp.transform([x[:1] for x in obs_te], mask=m_te[:1])
        warm_s = time.perf_counter() - t_fit
        fit_s = {k: t_fit - t0 + warm_s for k in modes}
        if auto and last_iter:
            fit_s.update({k: last_iter[0] - t0 + warm_s for k in modes if k != "ul4m4_auto"})
        for key in modes:
            completion, scale = _UL4M4_MODES[key]
            t0 = time.perf_counter()
            f_tr = imp.transform(obs_tr, mask=m_tr, completion=completion, temperature_scale=scale)
            f_te = imp.transform(obs_te, mask=m_te, completion=completion, temperature_scale=scale)
            score(key, f_tr, f_te, time.perf_counter() - t0, fit_s[key])
        if auto:
            from ._holdout import candidate_label

            out["ul4m4_auto"]["choice"] = candidate_label(imp.completion_, imp.temperature_scale_)

    if "mean" in imputers:
        t0 = time.perf_counter()
        means = [np.nanmean(x, axis=0) for x in obs_tr]
        fit_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        f_tr = [np.where(m_tr[:, m:m + 1], obs_tr[m], means[m]) for m in range(M)]
        f_te = [np.where(m_te[:, m:m + 1], obs_te[m], means[m]) for m in range(M)]
        score("mean", f_tr, f_te, time.perf_counter() - t0, fit_s)

    if "zero" in imputers:
        t0 = time.perf_counter()
        f_tr = [np.where(m_tr[:, m:m + 1], obs_tr[m], 0.0) for m in range(M)]
        f_te = [np.where(m_te[:, m:m + 1], obs_te[m], 0.0) for m in range(M)]
        score("zero", f_tr, f_te, time.perf_counter() - t0, 0.0)

    if "knn" in imputers:
        dims = [x.shape[1] for x in views]
        A, B = np.hstack(obs_tr), np.hstack(obs_te)
        t0 = time.perf_counter()
        knn = KNNImputer(n_neighbors=knn_neighbors).fit(A)
        fit_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        a, b = knn.transform(A), knn.transform(B)
        comp_s = time.perf_counter() - t0
        f_tr, f_te = column_views(a, dims), column_views(b, dims)
        score("knn", f_tr, f_te, comp_s, fit_s)

    return {"seed": seed, "rate": rate, "results": out, "seconds": time.perf_counter() - t_start}


def _check_rates(rates, M) -> List[float]:
    out = []
    for r in rates:
        r = float(r)
        if not (0.0 < r <= (M - 1) / M + 1e-9):
            raise ValueError(f"missing rate {r} must be in (0, {(M - 1) / M:.4g}] for {M} modalities")
        out.append(r)
    if not out:
        raise ValueError("give at least one missing rate")
    if len(set(out)) != len(out):
        raise ValueError(f"rates {out} repeat a value")
    return out


def run_protocol(rates: Sequence[float] = (0.3, 0.5, 0.66), seeds: "int | Sequence[int]" = 5,
                 n_clusters: int = 40,
                 imputers: Sequence[str] = tuple(IMPUTERS),
                 test_size: float = 0.3, n_threads: Optional[int] = None, *,
                 data: Optional[Tuple[Sequence[np.ndarray], np.ndarray]] = None,
                 knn_neighbors: int = 5, knn_seeds: Optional[int] = None, n_jobs: Optional[int] = None,
                 progress: Optional[Callable[[int, int, Dict[str, Any]], None]] = None) -> List[Dict[str, Any]]:
    """Run the evaluation protocol (see the module docstring) and aggregate over seeds.

    Parameters
    ----------
    rates : sequence of float
        Missing rates (fraction of missing slots, :func:`ul4m4.masking.missing_rate_mask`).
    seeds : int or sequence of int
        ``5`` means seeds 0..4; a sequence gives them explicitly.  The seed drives the
        split, the mask and the k-means++ seeding.
    n_clusters : int
        K of the ul4m4 imputers.
    imputers : sequence of str
        Keys of :data:`IMPUTERS` to run (default: all).
    test_size : float
        Fraction of rows held out for testing (stratified).
    n_threads : int or None
        Threads of the ul4m4 core.  ``None``: 1 when the runs are spread over worker
        processes (so that timings compare single-threaded ul4m4 with the
        single-threaded KNNImputer), else what OpenMP may use.
    data : (list of (n, d_m) arrays, (n,) labels), optional
        Another multi-view data set (default: the shipped UCI Multiple Features data,
        in float64).
    knn_neighbors : int
        ``n_neighbors`` of the KNNImputer.
    knn_seeds : int or None
        Run the KNNImputer on the first ``knn_seeds`` seeds only (``None``: every seed).
    n_jobs : int or None
        Worker processes running (seed, rate) runs in parallel (joblib/loky, each
        limited to one BLAS thread).  ``None``: the CPUs available, at most the number of
        runs; 1 runs everything in this process.
    progress : callable, optional
        Called as ``progress(done, total, info)`` after each run (``info`` has ``seed``,
        ``rate``, ``seconds`` (this run), ``knn`` (whether it ran the KNNImputer),
        ``elapsed`` (seconds since the start) and ``eta`` (an estimate of the seconds
        left, from the time the finished runs took, a KNNImputer run counting as
        :data:`KNN_COST` plain ones)).

    Returns
    -------
    list of dict
        One row per (imputer, rate, metric), in display order, with keys ``imputer``
        (key), ``label``, ``rate``, ``metric``, ``mean``, ``std``, ``n`` (seeds with a
        value) and ``values`` (one per seed, in seed order; ``None`` where the metric does
        not apply).  F1 rows also carry ``lr_unconverged``: logistic regressions that hit
        ``max_iter``.
    """
    unknown = [k for k in imputers if k not in IMPUTERS]
    if unknown:
        raise ValueError(f"unknown imputer(s) {unknown}; choose among {list(IMPUTERS)}")
    if not imputers:
        raise ValueError("give at least one imputer")
    imputers = tuple(k for k in IMPUTERS if k in imputers)  # display order, no repeats
    seed_list = list(range(int(seeds))) if isinstance(seeds, (int, np.integer)) else [int(s) for s in seeds]
    if not seed_list:
        raise ValueError("give at least one seed")
    if data is not None:
        views = [np.asarray(v) for v in data[0]]
        y = np.asarray(data[1])
    else:
        views, y = None, None
    M = len(views) if views is not None else 6
    rates = _check_rates(rates, M)
    if isinstance(n_clusters, bool) or int(n_clusters) != n_clusters or n_clusters < 1:
        raise ValueError(f"n_clusters must be a positive int, got {n_clusters!r}")

    tasks = []
    if "complete" in imputers:
        tasks += [("complete", s, None, imputers, int(n_clusters), test_size, None, knn_neighbors)
                  for s in seed_list]
    others = [k for k in imputers if k != "complete"]
    if knn_seeds is not None and (isinstance(knn_seeds, bool) or int(knn_seeds) != knn_seeds or knn_seeds < 0):
        raise ValueError(f"knn_seeds must be None or an int >= 0, got {knn_seeds!r}")
    if others:
        def task_imputers(si):
            if knn_seeds is not None and si >= knn_seeds:
                return tuple(k for k in others if k != "knn")
            return tuple(others)

        missing = [("missing", s, r, task_imputers(si), int(n_clusters), test_size, n_threads, knn_neighbors)
                   for si, s in enumerate(seed_list) for r in rates]
        missing = [t for t in missing if t[3]]
        # heavy runs (with KNNImputer) first, for a better balance over the workers
        tasks = sorted(missing, key=lambda t: not _has_knn(t)) + tasks
    if n_jobs is None:
        try:
            cpus = len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover - not Linux
            cpus = os.cpu_count() or 1
        n_jobs = max(1, min(cpus, len(tasks)))
    n_jobs = int(n_jobs)
    if n_jobs > 1 and n_threads is None:
        tasks = [t[:6] + (1,) + t[7:] if t[0] == "missing" else t for t in tasks]

    results = []
    total = len(tasks)
    total_cost = sum(_cost(t) for t in tasks)
    t_start = time.perf_counter()
    done_cost = 0.0

    def finished(i, res):
        nonlocal done_cost
        results.append(res)
        done_cost += _cost(res["task"])
        if progress is not None:
            elapsed = time.perf_counter() - t_start
            eta = elapsed * (total_cost - done_cost) / done_cost if done_cost else float("nan")
            progress(i + 1, total, dict(res, knn=_has_knn(res["task"]), elapsed=elapsed, eta=eta))

    if n_jobs == 1:
        for i, t in enumerate(tasks):
            finished(i, _run_task(t, views, y))
    else:
        from joblib import Parallel, delayed

        par = Parallel(n_jobs=n_jobs, backend="loky", return_as="generator_unordered")
        for i, res in enumerate(par(delayed(_run_task)(t, views, y) for t in tasks)):
            finished(i, res)
    return _aggregate(results, imputers, rates, seed_list)


#: Cost of a run with the KNNImputer, in runs without it (measured on the shipped data:
#: about 13 s against 3 s of CPU); the progress estimate of the time left uses it.
KNN_COST = 4.0


def _has_knn(task: Tuple) -> bool:
    return task[0] == "missing" and "knn" in task[3]


def _cost(task: Tuple) -> float:
    if task[0] == "complete":
        return 0.5
    return 1.0 + (KNN_COST if _has_knn(task) else 0.0)


def _aggregate(results, imputers, rates, seed_list) -> List[Dict[str, Any]]:
    by_key: Dict[Tuple, Dict[str, Any]] = {}
    for res in results:
        for imp, metrics in res["results"].items():
            by_key[(imp, res["rate"], res["seed"])] = metrics
    rows = []
    for imp in imputers:
        for rate in rates:
            src_rate = None if imp == "complete" else rate
            per_seed = [by_key.get((imp, src_rate, s)) for s in seed_list]
            for metric in METRICS:
                values = [None if d is None or d.get(metric) is None or not np.isfinite(d[metric])
                          else float(d[metric]) for d in per_seed]
                got = np.array([v for v in values if v is not None], dtype=np.float64)
                row = {"imputer": imp, "label": IMPUTERS[imp], "rate": rate, "metric": metric,
                       "mean": float(got.mean()) if got.size else None,
                       "std": float(got.std(ddof=1)) if got.size > 1 else (0.0 if got.size else None),
                       "n": int(got.size), "values": values}
                if metric == "f1_micro":
                    row["lr_unconverged"] = int(sum(1 for d in per_seed if d is not None and not d["lr_converged"]))
                rows.append(row)
    return rows


def _lookup(rows, imputer, rate, metric):
    for r in rows:
        if r["imputer"] == imputer and r["metric"] == metric and math.isclose(r["rate"], rate):
            return r
    return None


def format_table(rows: List[Dict[str, Any]], metrics: Optional[Sequence[str]] = None) -> str:
    """A plain-text table: one block per metric, imputers down, rates across, cells
    ``mean ± std``; the best mean of each column (the ceiling excluded) is starred."""
    imputers = list(dict.fromkeys(r["imputer"] for r in rows))
    rates = list(dict.fromkeys(r["rate"] for r in rows))
    metrics = [m for m in (metrics or METRICS) if any(r["metric"] == m for r in rows)]
    n_seeds = max((r["n"] for r in rows), default=0)
    lw = max(len(IMPUTERS[i]) for i in imputers) + 2
    lines = []
    for metric in metrics:
        label, higher, fmt = METRICS[metric]
        cells = {}
        for imp in imputers:
            for rate in rates:
                r = _lookup(rows, imp, rate, metric)
                if r is None or r["mean"] is None:
                    cells[imp, rate] = "-"
                elif r["n"] == 1 < n_seeds:  # KNNImputer on fewer seeds (knn_seeds)
                    cells[imp, rate] = f"{fmt.format(r['mean'])} (1 seed)"
                elif r["n"] < n_seeds:
                    cells[imp, rate] = f"{fmt.format(r['mean'])} ± {fmt.format(r['std'])} ({r['n']} seeds)"
                else:
                    cells[imp, rate] = f"{fmt.format(r['mean'])} ± {fmt.format(r['std'])}"
        best = {}
        if metric in ("f1_micro", "rmse", "rmse_slot"):
            for rate in rates:
                cand = [(_lookup(rows, i, rate, metric) or {}).get("mean") for i in imputers]
                pairs = [(v, i) for v, i in zip(cand, imputers) if v is not None and i != "complete"]
                if pairs:
                    best[rate] = (max if higher else min)(pairs)[1]
        cw = max([len(v) for v in cells.values()] + [12]) + 2
        lines.append(f"{label}  [mean ± std over {n_seeds} seed(s)]")
        lines.append("imputer".ljust(lw) + "".join(f"missing {r:g}".rjust(cw) for r in rates))
        lines.append("-" * (lw + cw * len(rates)))
        for imp in imputers:
            line = IMPUTERS[imp].ljust(lw)
            for rate in rates:
                mark = "*" if best.get(rate) == imp else " "
                line += (cells[imp, rate] + mark).rjust(cw)
            lines.append(line)
        lines.append("")
    if any(r.get("lr_unconverged") for r in rows):
        lines.append("note: some logistic regressions stopped at max_iter (see lr_unconverged in the JSON)")
    lines.append("* best mean of the column (complete data, the ceiling, excluded)")
    return "\n".join(lines)


def plot_results(rows: List[Dict[str, Any]], path: "str | os.PathLike",
                 title: str = "ul4m4 on UCI Multiple Features") -> bool:
    """Plot F1-micro (and, beside it, the per-element RMSE) against the missing rate into a
    PNG; error bars are one standard deviation over the seeds.  An imputer whose RMSE is far
    off the others' scale (zero-fill) is named in the panel instead of drawn.  Returns False,
    without raising, when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    imputers = list(dict.fromkeys(r["imputer"] for r in rows))
    rates = sorted(dict.fromkeys(r["rate"] for r in rows))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, metric, panel in ((axes[0], "f1_micro", "downstream test F1-micro"),
                              (axes[1], "rmse", "test RMSE of imputed slots (normalised)")):
        off_scale = []
        for c, imp in enumerate(imputers):
            pts = [(_lookup(rows, imp, r, metric) or {}) for r in rates]
            if not pts or any(p.get("mean") is None for p in pts):
                continue
            mean = np.array([p["mean"] for p in pts])
            std = np.array([p["std"] for p in pts])
            if imp == "complete":
                ax.plot(rates, mean, "k--", label=IMPUTERS[imp])
                continue
            if metric == "rmse" and mean.max() > 1.6:  # zero-fill: would flatten every other curve
                off_scale.append(f"{IMPUTERS[imp]}: {mean.min():.2f}-{mean.max():.2f}")
                continue
            ax.errorbar(rates, mean, yerr=std, marker="o", capsize=3, label=IMPUTERS[imp], color=f"C{c}")
        if off_scale:
            ax.text(0.02, 0.02, "off the scale: " + "; ".join(off_scale), transform=ax.transAxes, fontsize=8)
        ax.set_xlabel("missing rate (fraction of missing modality slots)")
        ax.set_title(panel)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("F1-micro")
    axes[1].set_ylabel("RMSE")
    axes[0].legend(fontsize=8, loc="lower left")
    n_seeds = max((r["n"] for r in rows), default=0)
    fig.suptitle(f"{title}, mean ± std over {n_seeds} seed(s)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


if __name__ == "__main__":  # pragma: no cover
    rows = run_protocol(progress=lambda d, t, i: print(f"[{d}/{t}]", file=sys.stderr))
    print(format_table(rows))
