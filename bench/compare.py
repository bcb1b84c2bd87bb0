"""ul4m4 side by side with what a user would otherwise pick, in one process.

    python -m bench.compare                      # N = 2 000, 20 000, 200 000 (minutes; quiet machine)
    python -m bench.compare --quick              # small sizes, a smoke run (about a minute),
                                                 # written to bench/results/quick/
    python -m bench.compare --n 20000 200000 --threads 2 --out-dir bench/results

Per size N, on the same data (bench.core_workload.make_data: widths 768/1024/768 float32,
K = 64 centres taken from the data's rows, cluster structure), all in this one process so
ratios are fair:

* floors: numpy's matmul of the assignment's dense core, sum_m X_m @ C_m.T (complete data;
  present rows only for the half-missing data, gathered before timing), and one read of
  the input (BLAS gemv against a ones vector: memory bandwidth);
* seconds per Lloyd iteration (centre update + assignment pass) of
  - ul4m4 on complete and on half-missing data (median of ``history_`` seconds),
  - faiss-cpu Kmeans and scikit-learn KMeans lloyd / elkan on the complete data (they take no
    missing data): explicit initial centres, tol = 0, n_init = 1, faiss without its
    subsampling; sklearn's fixed cost (validation, centring, initial labels) is removed by
    timing max_iter = 1 and max_iter = --iters and dividing the difference,
  - the same masked iteration written as a competent numpy GEMM formulation, in PyTorch on
    the CPU, as the authors' numpy broadcast over [rows, K, d] and as a per-pair Python loop
    (the last two on a subset of rows, extrapolated linearly in N and marked so);
* imputation at --impute-n (default 2 000): scikit-learn KNNImputer on the concatenated
  features with NaN, mean-fill (SimpleImputer), ul4m4 greedy / soft completion, in rows
  per second (incomplete rows / seconds);
* peak memory of ul4m4 fit and transform beyond inputs and outputs, each in a fresh
  subprocess (bench/core_workload.py --phase).

Writes compare.json, compare.md (tables, ratios, targets met / missed) and compare.png
(log-log seconds per iteration against N) into --out-dir. A peer that is not installed is
skipped with a note (``pip install -e .[bench]`` installs them).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
import warnings
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np

from bench import core_workload
from bench.core_workload import best_of, make_data
from bench.formulations import AuthorsBroadcast, NumpyGemm, PerPairLoop, TorchGemm

HERE = Path(__file__).resolve().parent

# method key -> (label, kind); kind: floor | ul4m4 | peer | formulation
METHODS = {
    "floor_matmul": ("numpy matmul floor (sum_m X_m @ C_m.T)", "floor"),
    "floor_read": ("one read of the input (gemv)", "floor"),
    "ul4m4": ("ul4m4", "ul4m4"),
    "ul4m4_assign": ("ul4m4 assignment pass only (predict)", "ul4m4"),
    "faiss": ("faiss-cpu Kmeans", "peer"),
    "sklearn_lloyd": ("scikit-learn KMeans lloyd", "peer"),
    "sklearn_elkan": ("scikit-learn KMeans elkan", "peer"),
    "onedal": ("oneDAL KMeans (scikit-learn-intelex)", "peer"),
    "numpy_gemm": ("numpy GEMM, masked (competent)", "formulation"),
    "torch": ("PyTorch CPU, masked GEMM", "formulation"),
    "broadcast": ("authors' numpy broadcast [rows,K,d]", "formulation"),
    "loop": ("per-pair Python loop", "formulation"),
}
DATA_LABEL = {"complete": "complete", "half": "half missing"}

TARGET_N = 200_000
# peer key -> the distribution pip installs it from
PIP_NAME = {"faiss": "faiss-cpu", "sklearn": "scikit-learn", "onedal": "scikit-learn-intelex"}


# ----------------------------------------------------------------------------- helpers
def _peer(name):
    """Import an optional peer; (module, None) or (None, note)."""
    try:
        if name == "faiss":
            import faiss as mod
        elif name == "sklearn":
            import sklearn.cluster as mod  # noqa: F401
            import sklearn as mod
        elif name == "onedal":
            import sklearnex.cluster  # noqa: F401
            import sklearnex as mod
        elif name == "torch":
            import torch as mod
        elif name == "matplotlib":
            import matplotlib as mod
        elif name == "threadpoolctl":
            import threadpoolctl as mod
        else:
            raise ValueError(name)
        return mod, None
    except Exception as exc:  # ImportError, or a broken install
        pip = PIP_NAME.get(name, name)
        return None, f"{name} skipped: not importable ({type(exc).__name__}: {exc}); pip install {pip}"


@contextmanager
def _thread_limits(nt, torch_mod, faiss_mod):
    """Every library gets the same number of threads."""
    tp, _ = _peer("threadpoolctl")
    ctx = tp.threadpool_limits(limits=nt) if tp else nullcontext()
    old_torch = torch_mod.get_num_threads() if torch_mod else None
    if torch_mod:
        torch_mod.set_num_threads(nt)
    if faiss_mod:
        faiss_mod.omp_set_num_threads(nt)
    try:
        with ctx:
            yield
    finally:
        if torch_mod:
            torch_mod.set_num_threads(old_torch)


def _quiet():
    w = warnings.catch_warnings()
    w.__enter__()
    warnings.simplefilter("ignore")
    return w


def _timed_fit(est, *a, **kw):
    """Wall seconds of est.fit(*a, **kw), warnings silenced."""
    w = _quiet()
    t0 = time.perf_counter()
    est.fit(*a, **kw)
    dt = time.perf_counter() - t0
    w.__exit__(None, None, None)
    return dt


def _kmeans(KMeans, algo, K, init, max_iter):
    """A scikit-learn-API KMeans from explicit centres, one run, tol = 0."""
    return KMeans(K, init=init, n_init=1, max_iter=max_iter, tol=0.0, algorithm=algo, copy_x=False, random_state=0)


def _rec(n, method, data, times, *, extrapolated=False, measured_rows=None, note=""):
    times = [float(t) for t in times]
    return {"n": n, "method": method, "data": data, "s_min": min(times), "s_median": float(np.median(times)),
            "samples": len(times), "extrapolated": extrapolated,
            "measured_rows": measured_rows if measured_rows is not None else n, "note": note}


def _iterate_times(obj, iters, scale=1.0):
    out = []
    for _ in range(iters):
        t = time.perf_counter()
        obj.iterate()
        out.append((time.perf_counter() - t) * scale)
    return out


def _sklearn_like(peers):
    """(method key, KMeans class, algorithm) of the scikit-learn-API peers that are installed."""
    out = []
    if peers.get("sklearn"):
        from sklearn.cluster import KMeans

        out += [("sklearn_lloyd", KMeans, "lloyd"), ("sklearn_elkan", KMeans, "elkan")]
    if peers.get("onedal"):
        from sklearnex.cluster import KMeans as DalKMeans

        out.append(("onedal", DalKMeans, "lloyd"))
    return out


def _version(name, mod):
    """The installed distribution's version (sklearnex's __version__ is a build placeholder)."""
    from importlib import metadata

    try:
        return metadata.version(PIP_NAME.get(name, name))
    except metadata.PackageNotFoundError:
        return getattr(mod, "__version__", "?")


# ----------------------------------------------------------------------------- one size
def run_size(n, args, nt, peers, notes, log):
    import ul4m4

    faiss, sklearn, torch = peers["faiss"], peers["sklearn"], peers["torch"]
    recs = []
    K, M = args.k, len(args.dims)
    Xs, P = make_data(n, args.dims, args.missing)
    full = np.ones_like(P)
    rng = np.random.default_rng(1)
    rows = rng.choice(n, K, replace=False)
    C = [X[rows].copy() for X in Xs]
    Hfull = np.ones((K, M), bool)
    r = args.repeat

    # Floors.
    t, _ = best_of(lambda: sum(X @ c.T for X, c in zip(Xs, C)), r)
    recs.append(_rec(n, "floor_matmul", "complete", [t]))
    ones = [np.ones(X.shape[1], X.dtype) for X in Xs]
    t, _ = best_of(lambda: [X @ o for X, o in zip(Xs, ones)], r)
    recs.append(_rec(n, "floor_read", "complete", [t]))
    Xp = [X[P[:, m]] for m, X in enumerate(Xs)]
    t, _ = best_of(lambda: [X @ c.T for X, c in zip(Xp, C)], r)
    recs.append(_rec(n, "floor_matmul", "half", [t], note="present rows only, gathered before timing"))
    t, _ = best_of(lambda: [X @ o for X, o in zip(Xp, ones)], r)
    recs.append(_rec(n, "floor_read", "half", [t], note="present rows only"))
    del Xp
    log(f"  floors done")

    # ul4m4.
    for data, mask in (("complete", full), ("half", P)):
        imp = ul4m4.UL4M4Imputer(K, init=(C, Hfull), max_iter=args.iters, tol=0.0, algorithm="lloyd", n_threads=nt)
        w = _quiet()
        t0 = time.perf_counter()
        imp.fit(Xs, mask=mask)
        fit_s = time.perf_counter() - t0
        w.__exit__(None, None, None)
        secs = [h["seconds"] for h in imp.history_]
        recs.append(_rec(n, "ul4m4", data, secs, note=f"{imp.n_iter_} iterations, fit {fit_s:.3g} s in all"))
        t, _ = best_of(lambda: imp.predict(Xs, mask=mask), r)
        recs.append(_rec(n, "ul4m4_assign", data, [t], note="one assignment pass (predict)"))
    log(f"  ul4m4 done")

    # Peers on the complete data (concatenated features).
    if faiss or sklearn or peers["onedal"]:
        Xcat = np.ascontiguousarray(np.hstack(Xs))
        Ccat = np.ascontiguousarray(np.hstack(C))
        if faiss:
            km = faiss.Kmeans(Xcat.shape[1], K, niter=args.iters, nredo=1, verbose=False, seed=1,
                              max_points_per_centroid=n // K + 1, min_points_per_centroid=1)
            t0 = time.perf_counter()
            km.train(Xcat, init_centroids=Ccat)
            wall = time.perf_counter() - t0
            cum = [s["time"] for s in km.iteration_stats]
            per = np.diff(cum) if len(cum) > 1 else np.array([wall / max(1, len(cum))])
            recs.append(_rec(n, "faiss", "complete", per,
                             note=f"{len(cum)} iterations, no subsampling, train {wall:.3g} s in all"))
            log(f"  faiss done")
        for key, KMeans, algo in _sklearn_like(peers):
            def fit(mi):
                km = _kmeans(KMeans, algo, K, Ccat, mi)
                return _timed_fit(km, Xcat), km.n_iter_

            t1, n1 = min(fit(1) for _ in range(2))
            tn, nn = fit(args.iters)
            if nn > n1 and tn > t1:
                per, how = (tn - t1) / (nn - n1), f"(fit({nn} it) - fit(1 it)) / {nn - n1}"
            else:
                per, how = tn / nn, f"fit / n_iter_ = {nn}"
            recs.append(_rec(n, key, "complete", [per], note=how + f"; fit {tn:.3g} s in all"))
            log(f"  {key} done")
        del Xcat

    # Formulations.
    for data, mask in (("complete", full), ("half", P)):
        H0 = Hfull
        f = NumpyGemm(Xs, mask, C, H0)
        recs.append(_rec(n, "numpy_gemm", data, _iterate_times(f, args.iters)))
        del f
        if torch:
            f = TorchGemm(Xs, mask, C, H0)
            recs.append(_rec(n, "torch", data, _iterate_times(f, args.iters)))
            del f
        for key, cls, sub in (("broadcast", AuthorsBroadcast, args.broadcast_rows),
                              ("loop", PerPairLoop, args.loop_rows)):
            if key == "loop" and data == "complete" and not args.loop_complete:
                continue
            m = min(sub, n)
            f = cls(Xs, mask, C, H0, rows=np.arange(m))
            extra = m < n
            recs.append(_rec(n, key, data, _iterate_times(f, args.sub_iters, scale=n / m), extrapolated=extra,
                             measured_rows=m, note=f"measured on {m} rows, x {n / m:.0f}" if extra else ""))
            del f
    log(f"  formulations done")
    return recs


# ----------------------------------------------------------------------------- convergence
CONVERGE_LABELS = {
    "ul4m4_lloyd": "ul4m4 algorithm='lloyd'",
    "ul4m4_bounded": "ul4m4 algorithm='bounded' (= 'auto' here)",
    "onedal": METHODS["onedal"][0],
    "sklearn_lloyd": METHODS["sklearn_lloyd"][0],
    "sklearn_elkan": METHODS["sklearn_elkan"][0],
    "faiss": METHODS["faiss"][0] + " (fixed iterations)",
}


def _zspace(imp, Xs):
    """The complete data as plain k-means sees ul4m4's problem: per feature (x - mu) / sigma,
    each modality divided by sqrt(d_m), concatenated (docs/algorithm.md sections 1-2: on
    complete rows the partial distance is this Euclidean distance / sqrt(M)), float32."""
    return np.ascontiguousarray(np.hstack([((X - mu) / sd / np.sqrt(X.shape[1])).astype(np.float32)
                                           for X, mu, sd in zip(Xs, imp.mean_, imp.scale_)]))


def run_converge(n, args, nt, peers, log):
    """Fits to convergence from the same initial centres (K rows of the data), tol = 0:
    every method stops when an iteration leaves the labels unchanged (Lloyd's fixed point),
    so all follow the same trajectory and stop at the same place; faiss has no stopping
    rule and runs as many iterations as ul4m4 needed. Half-missing data: ul4m4 bounded
    against lloyd. Wall time of one fit each, alternated ul4m4 lloyd / bounded."""
    import ul4m4

    Xs, P = make_data(n, args.dims, args.missing)
    K = args.k
    rows = np.random.default_rng(1).choice(n, K, replace=False)
    out = {"n": n, "max_iter": args.converge_max_iter, "rows": []}

    def put(key, data, secs, n_iter, converged, agree=None, note=""):
        out["rows"].append({"method": key, "data": data, "seconds": secs, "n_iter": int(n_iter),
                            "s_per_iter": secs / max(1, n_iter),
                            "converged": None if converged is None else bool(converged),
                            "label_agreement": agree, "note": note})

    ref = {}
    for data, mask in (("complete", np.ones_like(P)), ("half", P)):
        init = ([X[rows].copy() for X in Xs], mask[rows].copy())
        for alg in ("lloyd", "bounded"):
            imp = ul4m4.UL4M4Imputer(K, init=init, max_iter=args.converge_max_iter, tol=0.0, algorithm=alg,
                                     n_threads=nt)
            secs = _timed_fit(imp, Xs, mask=mask)
            conv = imp.n_iter_ < args.converge_max_iter
            if alg == "lloyd":
                ref[data] = imp
            agree = float(np.mean(imp.labels_ == ref[data].labels_))
            put(f"ul4m4_{alg}", data, secs, imp.n_iter_, conv, agree,
                "fit() wall time, normalisation included")
        log(f"  converge: ul4m4 {data} done ({ref[data].n_iter_} iterations)")

    base = ref["complete"]
    Y = _zspace(base, Xs)
    Yc = np.ascontiguousarray(Y[rows])
    for key, KMeans, algo in _sklearn_like(peers):
        km = _kmeans(KMeans, algo, K, Yc, args.converge_max_iter)
        secs = _timed_fit(km, Y)
        put(key, "complete", secs, km.n_iter_, km.n_iter_ < args.converge_max_iter,
            float(np.mean(km.labels_ == base.labels_)), "tol=0: stops when the labels stop changing")
        log(f"  converge: {key} done ({km.n_iter_} iterations)")
    faiss = peers["faiss"]
    if faiss:
        it = base.n_iter_ + 1  # ul4m4's n_iter updates take n_iter + 1 assignment passes
        km = faiss.Kmeans(Y.shape[1], K, niter=it, nredo=1, verbose=False, seed=1,
                          max_points_per_centroid=n // K + 1, min_points_per_centroid=1)
        t0 = time.perf_counter()
        km.train(Y, init_centroids=Yc)
        secs = time.perf_counter() - t0
        _, lab = km.index.search(Y, 1)
        put("faiss", "complete", secs, it, None, float(np.mean(lab[:, 0] == base.labels_)),
            f"no stopping rule: niter = ul4m4's n_iter + 1 = {it} (as many assignment passes)")
        log("  converge: faiss done")
    return out


# ----------------------------------------------------------------------------- imputation
def run_impute(n, args, nt, peers, log):
    import ul4m4

    sklearn = peers["sklearn"]
    Xs, P = make_data(n, args.dims, args.missing, seed=2)
    inc = int((~P.all(axis=1)).sum())
    out = {"n": n, "incomplete_rows": inc, "rows": {}}

    def put(key, label, s, note=""):
        out["rows"][key] = {"label": label, "seconds": s, "rows_per_s": inc / s if s > 0 else math.inf, "note": note}

    imp = ul4m4.UL4M4Imputer(args.k, random_state=0, n_threads=nt)
    w = _quiet()
    t0 = time.perf_counter()
    imp.fit(Xs, mask=P)
    fit_s = time.perf_counter() - t0
    w.__exit__(None, None, None)
    for mode in ("greedy", "soft"):
        t, _ = best_of(lambda: imp.transform(Xs, mask=P, completion=mode), args.repeat)
        put(f"ul4m4_{mode}", f"ul4m4 {mode} completion (transform)", t)
    put("ul4m4_fit_greedy", "ul4m4 fit + greedy transform", fit_s + out["rows"]["ul4m4_greedy"]["seconds"],
        f"defaults: k-means++, max_iter 300, tol 1e-4; {imp.n_iter_} iterations")
    if sklearn:
        from sklearn.impute import KNNImputer, SimpleImputer

        Xnan = np.hstack([np.where(P[:, m, None], X, np.float32(np.nan)) for m, X in enumerate(Xs)])
        t, _ = best_of(lambda: SimpleImputer(strategy="mean").fit_transform(Xnan), args.repeat)
        put("mean_fill", "mean-fill (SimpleImputer)", t)
        if n <= args.knn_max_n:
            t0 = time.perf_counter()
            KNNImputer(n_neighbors=5).fit_transform(Xnan)
            put("knn", "scikit-learn KNNImputer (k=5)", time.perf_counter() - t0, "one run")
        else:
            out["rows"]["knn"] = None
    log(f"  imputation N={n} done")
    return out


# ----------------------------------------------------------------------------- memory
def run_memory(n, args, nt):
    out = {}
    for phase in ("fit", "transform"):
        cmd = [sys.executable, core_workload.__file__, "--phase", phase, "--n", str(n), "--k", str(args.k),
               "--missing", str(args.missing), "--threads", str(nt), "--dims", *map(str, args.dims)]
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, check=True)
            r = json.loads(p.stdout.strip().splitlines()[-1])
            out[f"{phase}_extra_mib"] = r["extra_mib"]
            out["input_mib"] = r["input_mib"]
        except (subprocess.CalledProcessError, ValueError, IndexError) as exc:
            out[f"{phase}_error"] = str(exc)
    return out


# ----------------------------------------------------------------------------- analysis
def _get(recs, n, method, data, stat="s_median"):
    for r in recs:
        if r["n"] == n and r["method"] == method and r["data"] == data:
            return r[stat]
    return None


def _floor_of(recs, n, data):
    return _get(recs, n, "floor_matmul", data, "s_min")


def evaluate_targets(recs, impute, n):
    """The issue's targets, at size n (they are defined at N = 200 000)."""
    g = lambda m, d: _get(recs, n, m, d)
    out = []

    def add(name, value, limit, ok_if, unit="", detail=""):
        if value is None or limit is None:
            out.append({"target": name, "value": None, "limit": limit, "met": None, "detail": detail or "not measured"})
        else:
            met = value <= limit if ok_if == "<=" else value >= limit
            out.append({"target": name, "value": value, "limit": limit, "op": ok_if, "met": bool(met), "unit": unit,
                        "detail": detail})

    uc, uh = g("ul4m4", "complete"), g("ul4m4", "half")
    peers = {k: g(k, "complete") for k in ("faiss", "sklearn_lloyd", "onedal")}
    avail = {k: v for k, v in peers.items() if v is not None}
    name = "complete: s/iter <= fastest of faiss-cpu, sklearn lloyd and oneDAL"
    if avail:
        best_k = min(avail, key=avail.get)
        add(name, uc, avail[best_k], "<=", "s",
            f"fastest peer: {best_k}" + ("" if len(avail) == len(peers) else f" (of {', '.join(sorted(avail))})"))
    else:
        add(name, None, None, "<=")
    fc, fh = _floor_of(recs, n, "complete"), _floor_of(recs, n, "half")
    add("complete: <= 1.3 x numpy matmul floor", uc / fc if uc and fc else None, 1.3, "<=", "x")
    add("half missing: <= 0.6 x ul4m4 complete", uh / uc if uh and uc else None, 0.6, "<=", "x")
    add("half missing: <= 1.5 x present-row floor", uh / fh if uh and fh else None, 1.5, "<=", "x")
    b = g("broadcast", "half")
    add("half missing: >= 25 x faster than authors' broadcast", b / uh if b and uh else None, 25, ">=", "x",
        "broadcast extrapolated from a subset" if _get(recs, n, "broadcast", "half", "extrapolated") else "")
    ng = g("numpy_gemm", "half")
    add("half missing: >= 2 x faster than competent numpy GEMM", ng / uh if ng and uh else None, 2, ">=", "x")
    imp = min(impute, key=lambda d: abs(d["n"] - 2000)) if impute else None
    if imp and imp["rows"].get("knn") and imp["rows"].get("ul4m4_greedy"):
        ratio = imp["rows"]["knn"]["seconds"] / imp["rows"]["ul4m4_greedy"]["seconds"]
        add("completion >= 1000 x faster per row than KNNImputer (N = 2 000)", ratio, 1000, ">=", "x",
            f"at N = {imp['n']}")
    else:
        add("completion >= 1000 x faster per row than KNNImputer (N = 2 000)", None, 1000, ">=")
    return out


def converge_targets(converge):
    """At the largest size of the fits to convergence: ul4m4 (algorithm 'auto', which is
    'bounded' at K = 64 and these widths) ahead of every peer on complete data; bounded no
    slower than plain Lloyd on half-missing data."""
    if not converge:
        return []
    c = max(converge, key=lambda d: d["n"])
    get = lambda m, d: next((r["seconds"] for r in c["rows"] if r["method"] == m and r["data"] == d), None)
    out = []
    ub = get("ul4m4_bounded", "complete")
    peers = {k: get(k, "complete") for k in ("onedal", "sklearn_lloyd", "sklearn_elkan", "faiss")}
    peers = {k: v for k, v in peers.items() if v is not None}
    if ub and peers:
        best = min(peers, key=peers.get)
        out.append({"target": f"fit to convergence, complete (N = {c['n']:,}): ul4m4 ahead of every peer",
                    "value": ub, "limit": peers[best], "op": "<=", "met": ub <= peers[best], "unit": "s",
                    "detail": f"fastest peer: {best}"})
    bl, bb = get("ul4m4_lloyd", "half"), get("ul4m4_bounded", "half")
    if bl and bb:
        out.append({"target": f"fit to convergence, half missing (N = {c['n']:,}): bounded / plain Lloyd",
                    "value": bb / bl, "limit": 1.0, "op": "<=", "met": bb <= bl, "unit": "x", "detail": ""})
    return out


def converge_rows(c):
    """Table rows of one size's fits to convergence: label, data, seconds, iterations,
    s / iteration, x ul4m4 bounded on the same data, label agreement with ul4m4 lloyd, note."""
    ref = {r["data"]: r["seconds"] for r in c["rows"] if r["method"] == "ul4m4_bounded"}
    out = []
    for r in c["rows"]:
        agree = "-" if r["label_agreement"] is None else f"{100 * r['label_agreement']:.2f} %"
        conv = {True: "", False: " (max_iter reached)", None: ""}[r["converged"]]
        out.append((CONVERGE_LABELS[r["method"]], DATA_LABEL[r["data"]], _fmt_s(r["seconds"]), f"{r['n_iter']}{conv}",
                    _fmt_s(r["s_per_iter"]), f"{r['seconds'] / ref[r['data']]:.2f}" if r["data"] in ref else "-",
                    agree, r["note"]))
    return out


CONVERGE_HEAD = ["method", "data", "fit s", "iterations", "s / iteration", "x ul4m4 bounded",
                 "labels = ul4m4 lloyd", "note"]


# ----------------------------------------------------------------------------- output
def _fmt_s(s):
    if s is None:
        return "-"
    if s >= 100:
        return f"{s:,.0f}"
    if s >= 1:
        return f"{s:.2f}"
    if s >= 0.01:
        return f"{s:.3f}"
    return f"{s:.2g}"


def _rows_order(recs):
    seen = []
    for m in METHODS:
        for d in ("complete", "half"):
            if any(r["method"] == m and r["data"] == d for r in recs) and (m, d) not in seen:
                seen.append((m, d))
    return seen


def table_rows(recs, ns):
    """Rows of the main table: label, data, value per N (str), x floor, x ul4m4 (at the largest N)."""
    big = max(ns)
    out = []
    for m, d in _rows_order(recs):
        stat = "s_min" if METHODS[m][1] == "floor" else "s_median"
        vals = []
        for n in ns:
            v = _get(recs, n, m, d, stat)
            star = "*" if _get(recs, n, m, d, "extrapolated") else ""
            vals.append(_fmt_s(v) + star)
        v = _get(recs, big, m, d, stat)
        fl = _floor_of(recs, big, d)
        u = _get(recs, big, "ul4m4", d)
        xf = f"{v / fl:.2f}" if v and fl else "-"
        xu = f"{v / u:.2f}" if v and u else "-"
        sub = sorted({r["measured_rows"] for r in recs if r["method"] == m and r["data"] == d and r["extrapolated"]})
        label = METHODS[m][0] + (f" (extrapolated from {', '.join(f'{x:,}' for x in sub)} rows)" if sub else "")
        out.append((label, DATA_LABEL[d], vals, xf, xu))
    return out


def _log_table(hdr, body, log):
    w = [max(len(str(x[i])) for x in [hdr] + body) for i in range(len(hdr))]
    for line in [hdr] + body:
        log("  " + "  ".join(str(x).ljust(w[i]) if i < 2 else str(x).rjust(w[i]) for i, x in enumerate(line)))


def _targets_scope(tn):
    """Where the report's targets were measured: the per-iteration size, or none (--converge-only:
    the fits to convergence name their own N)."""
    if not tn:
        return "fits to convergence only"
    return f"at N = {tn:,}" + ("" if tn == TARGET_N else f"; defined at N = {TARGET_N:,}")


def print_report(res, log=print):
    ns = res["config"]["n"]
    if ns:
        big = max(ns)
        rows = table_rows(res["results"], ns)
        hdr = ["method", "data"] + [f"N={n:,}" for n in ns] + [f"x floor@{big:,}", f"x ul4m4@{big:,}"]
        log("\nSeconds per Lloyd iteration (update + assignment); floors: best of repeats; * = extrapolated")
        _log_table(hdr, [[a, b, *v, xf, xu] for a, b, v, xf, xu in rows], log)
    for c in res["converge"]:
        log(f"\nFits to convergence, N={c['n']:,}, same initial centres, tol=0 (labels unchanged)")
        _log_table(CONVERGE_HEAD, [list(r) for r in converge_rows(c)], log)
    for imp in res["impute"]:
        log(f"\nImputation, N={imp['n']:,} ({imp['incomplete_rows']:,} incomplete rows)")
        for k, r in imp["rows"].items():
            if r:
                log(f"  {r['label']:<40} {r['seconds']:>10.4g} s  {r['rows_per_s']:>14,.0f} rows/s  {r['note']}")
            else:
                log(f"  {k:<40} skipped (N > --knn-max-n)")
    if res["memory"]:
        log("\nPeak memory of ul4m4 beyond inputs (and outputs, for transform)")
        for n, mem in res["memory"].items():
            if "fit_extra_mib" in mem:
                log(f"  N={int(n):,}: input {mem['input_mib']:.0f} MiB, fit +{mem['fit_extra_mib']:.0f} MiB, "
                    f"transform +{mem.get('transform_extra_mib', float('nan')):.0f} MiB")
            else:
                log(f"  N={int(n):,}: {mem}")
    log(f"\nTargets ({_targets_scope(res['targets_n'])})")
    for t in res["targets"]:
        if t["met"] is None:
            log(f"  [  n/a ] {t['target']}: {t['detail']}")
        else:
            log(f"  [{'met' if t['met'] else 'MISSED':^6}] {t['target']}: {t['value']:.3g} {t.get('op')} "
                f"{t['limit']:.3g}  {t['detail']}")
    for n in res["notes"]:
        log(f"note: {n}")


def write_markdown(res, path):
    cfg, env = res["config"], res["env"]
    ns = cfg["n"]
    big = max(ns)
    L = [f"# ul4m4 against peers (`python -m bench.compare`)", "",
         f"Widths {'/'.join(map(str, cfg['dims']))}, K = {cfg['k']}, missing fraction {cfg['missing']} for "
         f"\"half missing\", {env['threads']} threads, SIMD {env['simd']}, {env['cpu']}, BLAS {env['blas']}, "
         f"load average at start {env['loadavg'][0]:.2f}.", "",
         "Seconds per Lloyd iteration (centre update + assignment pass). Methods: median over iterations; "
         "floors: best of repeats. `*` = measured on a subset of rows and extrapolated linearly in N. "
         f"Ratios at N = {big:,}: against the numpy matmul floor of the same data (present rows for half "
         "missing) and against ul4m4 on the same data.", "",
         "| method | data | " + " | ".join(f"N = {n:,}" for n in ns) + " | x floor | x ul4m4 |",
         "|---|---|" + "---:|" * (len(ns) + 2)]
    for a, b, v, xf, xu in table_rows(res["results"], ns):
        L.append(f"| {a} | {b} | " + " | ".join(v) + f" | {xf} | {xu} |")
    if res.get("plot"):
        L += ["", f"![seconds per Lloyd iteration against N]({res['plot']})"]
    for c in res["converge"]:
        L += ["", f"## Fits to convergence, N = {c['n']:,}", "",
              "Same data and initial centres (K rows of the data) for every method, tol = 0: each stops at the "
              "first iteration that leaves the labels unchanged (Lloyd's fixed point; scikit-learn's and oneDAL's "
              "tol are relative to the data's variance and ul4m4's is a centre shift, so only tol = 0 means the "
              f"same for all). max_iter {c['max_iter']}. The peers run on the complete data in ul4m4's z-space "
              "(per-feature standardised, each modality / sqrt(d_m), concatenated, float32): the same problem, "
              "so the same trajectory up to rounding, which moves rows that sit almost on a boundary (the "
              "share of labels equal to ul4m4's is given); ul4m4's time includes its normalisation pass. faiss has no stopping "
              "rule: it runs as many assignment passes as ul4m4 (n_iter + 1). One fit each, wall time. "
              "Iterations are each library's own count (scikit-learn's includes the first assignment).", "",
              "| " + " | ".join(CONVERGE_HEAD) + " |", "|---|---|" + "---:|" * 5 + "---|"]
        L += ["| " + " | ".join(r) + " |" for r in converge_rows(c)]
    L += ["", f"## Targets ({_targets_scope(res['targets_n'])})", "",
          "| target | measured | limit | |", "|---|---:|---:|---|"]
    for t in res["targets"]:
        if t["met"] is None:
            L.append(f"| {t['target']} | - | {t['limit']} | n/a: {t['detail']} |")
        else:
            L.append(f"| {t['target']} | {t['value']:.3g} {t['unit']} | {t.get('op')} {t['limit']:.3g} | "
                     f"{'met' if t['met'] else '**missed**'}{'; ' + t['detail'] if t['detail'] else ''} |")
    for imp in res["impute"]:
        L += ["", f"## Imputation, N = {imp['n']:,} ({imp['incomplete_rows']:,} incomplete rows)", "",
              "| method | seconds | rows / s | note |", "|---|---:|---:|---|"]
        for k, r in imp["rows"].items():
            if r:
                L.append(f"| {r['label']} | {r['seconds']:.4g} | {r['rows_per_s']:,.0f} | {r['note']} |")
    if res["memory"]:
        L += ["", "## Peak memory of ul4m4 (fresh subprocess, VmHWM)", "",
              "| N | input MiB | fit: beyond input | transform: beyond input and output |", "|---:|---:|---:|---:|"]
        for n, mem in res["memory"].items():
            if "fit_extra_mib" in mem:
                L.append(f"| {int(n):,} | {mem['input_mib']:.0f} | {mem['fit_extra_mib']:.0f} MiB | "
                         f"{mem.get('transform_extra_mib', float('nan')):.0f} MiB |")
    if res["notes"]:
        L += ["", "Notes:", ""] + [f"- {n}" for n in res["notes"]]
    Path(path).write_text("\n".join(L) + "\n")


def write_plot(res, path):
    mpl, note = _peer("matplotlib")
    if not mpl:
        return note
    mpl.use("Agg")
    import matplotlib.pyplot as plt

    recs = res["results"]
    colours = {"ul4m4": "C3", "ul4m4_assign": "C3", "faiss": "C0", "sklearn_lloyd": "C1", "sklearn_elkan": "C8",
               "onedal": "C9",
               "numpy_gemm": "C2", "torch": "C4", "broadcast": "C5", "loop": "C6"}
    fig, ax = plt.subplots(figsize=(11, 6))
    for m, d in _rows_order(recs):
        kind = METHODS[m][1]
        stat = "s_min" if kind == "floor" else "s_median"
        pts = sorted((r["n"], r[stat], r["extrapolated"]) for r in recs if r["method"] == m and r["data"] == d)
        if not pts:
            continue
        xs, ys, ex = zip(*pts)
        style = dict(marker="o" if d == "complete" else "s", lw=1.5, color=colours.get(m, "k"), ls="-")
        if kind == "floor":
            style.update(color="0.35" if m == "floor_matmul" else "0.65", ls=":")
        elif m == "ul4m4":
            style.update(lw=3)
        elif m == "ul4m4_assign":
            style.update(lw=1, ls="-.", ms=4)
        if any(ex):
            style.update(ls="--", mfc="none")
        ax.plot(xs, ys, label=f"{METHODS[m][0]} ({DATA_LABEL[d]})" + (" *extrapolated" if any(ex) else ""), **style)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("N (rows)")
    ax.set_ylabel("seconds per Lloyd iteration")
    cfg, env = res["config"], res["env"]
    ax.set_title(f"widths {'/'.join(map(str, cfg['dims']))}, K={cfg['k']}, {env['threads']} threads, {env['simd']}",
                 fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return None


# ----------------------------------------------------------------------------- main
def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, nargs="+", default=None, help="sizes (default 2000 20000 200000)")
    ap.add_argument("--dims", type=int, nargs="+", default=[768, 1024, 768])
    ap.add_argument("--k", type=int, default=64)
    ap.add_argument("--missing", type=float, default=0.5)
    ap.add_argument("--threads", type=int, default=None, help="threads for every library (default: all CPUs)")
    ap.add_argument("--iters", type=int, default=None, help="Lloyd iterations timed per method (default 5)")
    ap.add_argument("--repeat", type=int, default=3, help="repeats of floors, predict, transform (best of)")
    ap.add_argument("--broadcast-rows", type=int, default=None, help="subset for the broadcast (default 2000)")
    ap.add_argument("--loop-rows", type=int, default=None, help="subset for the per-pair loop (default 100)")
    ap.add_argument("--sub-iters", type=int, default=2, help="iterations timed on the subsets")
    ap.add_argument("--loop-complete", action="store_true", help="also run the per-pair loop on complete data")
    ap.add_argument("--impute-n", type=int, nargs="*", default=None, help="imputation sizes (default 2000)")
    ap.add_argument("--knn-max-n", type=int, default=50_000, help="skip KNNImputer above this N")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    ap.add_argument("--converge-n", type=int, nargs="*", default=None,
                    help="sizes of the fits to convergence (default 50000; none: skip them)")
    ap.add_argument("--converge-max-iter", type=int, default=300, help="max_iter of the fits to convergence")
    ap.add_argument("--converge-only", action="store_true", help="only the fits to convergence")
    ap.add_argument("--skip", nargs="*", default=[], choices=["faiss", "sklearn", "onedal", "torch"], help="peers to leave out")
    ap.add_argument("--out-dir", default=None, help="default bench/results (--quick: bench/results/quick)")
    ap.add_argument("--quick", action="store_true", help="small sizes and few iterations (a smoke run)")
    ap.add_argument("--render", default=None, metavar="JSON",
                    help="measure nothing: re-evaluate the targets of a compare.json and rewrite its compare.md")
    args = ap.parse_args(argv)
    quick = args.quick
    if args.n is None:
        args.n = [1000, 5000] if quick else [2000, 20000, 200000]
    if args.iters is None:
        args.iters = 3 if quick else 5
    if args.broadcast_rows is None:
        args.broadcast_rows = 256 if quick else 2000
    if args.loop_rows is None:
        args.loop_rows = 20 if quick else 100
    if args.impute_n is None:
        args.impute_n = [1000] if quick else [2000]
    if args.converge_n is None:
        args.converge_n = [2000] if quick else [50_000]
    if args.out_dir is None:
        args.out_dir = str(HERE / "results" / "quick") if quick else str(HERE / "results")
    args.n = sorted(set(args.n))
    return args


def render(path):
    """Targets and compare.md again from a compare.json (after a change of the report only)."""
    path = Path(path)
    res = json.loads(path.read_text())
    ns = res["config"]["n"]
    res["targets"] = (evaluate_targets(res["results"], res["impute"], res["targets_n"]) if ns else [])
    res["targets"] += converge_targets(res["converge"])
    write_markdown(res, path.with_name("compare.md"))
    path.write_text(json.dumps(res, indent=1, default=float))
    print_report(res)
    return 0


def main(argv=None):
    args = parse_args(argv)
    if args.render:
        return render(args.render)
    import ul4m4

    nt = args.threads or len(os.sched_getaffinity(0))
    notes = []
    peers = {}
    for name in ("faiss", "sklearn", "onedal", "torch"):
        if name in args.skip:
            peers[name] = None
            notes.append(f"{name} left out (--skip)")
            continue
        peers[name], note = _peer(name)
        if note:
            notes.append(note)
    log = lambda s: print(s, flush=True)
    tp, _ = _peer("threadpoolctl")
    blas = []
    if tp:
        blas = sorted({f"{i.get('internal_api')} {i.get('architecture') or ''}".strip()
                       for i in tp.threadpool_info() if i.get("user_api") == "blas"})
    load = os.getloadavg()
    env = {"ul4m4": ul4m4.__version__, "simd": ul4m4.simd_level(), "threads": nt, "cpu": core_workload.cpu_name(),
           "cpus": os.cpu_count(), "blas": ", ".join(blas) or "?", "numpy": np.__version__,
           "python": platform.python_version(), "loadavg": load,
           "peers": {k: _version(k, v) for k, v in peers.items() if v}}
    if load[0] > 0.5 * (os.cpu_count() or 1):
        notes.append(f"load average {load[0]:.2f} on {os.cpu_count()} CPUs at start: other processes were running, "
                     "timings are noisy")
    log(f"# ul4m4 {env['ul4m4']}, SIMD {env['simd']}, {nt} threads, {env['cpu']}, BLAS {env['blas']}, "
        f"peers {env['peers']}")
    res = {"config": {k: v for k, v in vars(args).items()}, "env": env, "results": [], "impute": [], "memory": {},
           "converge": [], "notes": notes}
    if args.converge_only:
        args.n, args.impute_n, args.no_memory = [], [], True
    with _thread_limits(nt, peers["torch"], peers["faiss"]):
        for n in args.n:
            log(f"N={n:,}")
            res["results"] += run_size(n, args, nt, peers, notes, log)
        for n in args.impute_n:
            res["impute"].append(run_impute(n, args, nt, peers, log))
        for n in args.converge_n:
            log(f"fits to convergence, N={n:,}")
            res["converge"].append(run_converge(n, args, nt, peers, log))
    if not args.no_memory:
        for n in args.n:
            res["memory"][str(n)] = run_memory(n, args, nt)
        log("  memory done")
    res["targets_n"] = max(args.n) if args.n else None
    res["targets"] = evaluate_targets(res["results"], res["impute"], res["targets_n"]) if args.n else []
    res["targets"] += converge_targets(res["converge"])
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    note = write_plot(res, out / "compare.png") if args.n else "no per-iteration sizes"
    if note:
        notes.append(note + " (no plot)")
    else:
        res["plot"] = "compare.png"
    write_markdown(res, out / "compare.md")
    with open(out / "compare.json", "w") as fh:
        json.dump(res, fh, indent=1, default=float)
    print_report(res, log)
    log(f"\nwrote {out / 'compare.json'}, {out / 'compare.md'}" + ("" if note else f", {out / 'compare.png'}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
