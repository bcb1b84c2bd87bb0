"""Does ``completion='auto'`` pick a good completion? Measured against every fixed setting.

    python bench/completion_choice.py                       # 3 data sets, 30/50/66 %, 5 seeds
    python bench/completion_choice.py --seeds 2 --datasets mfeat
    python bench/completion_choice.py --cost                # cost of 'auto' on the reference workload
    python bench/completion_choice.py --first-seed 3 --out new       # seeds 3, 4 only, then
    python bench/completion_choice.py --merge bench/results/completion_choice.json new.json

For each data set, missing rate and seed, the protocol of ``ul4m4.evaluation`` (stratified
70/30 split, one ``missing_rate_mask`` for all rows, imputers fitted on the masked training
rows only) is run with:

* ``auto``: ``UL4M4Imputer(K, completion='auto', random_state=seed)``;
* every fixed setting of its grid (greedy; soft at temperature_scale 1 ... 1/32), which are
  transforms of the same fitted centres (a fit with 'auto' has the centres of a fit without);
* mean-fill and ``KNNImputer(n_neighbors=5)``.

Reported per imputer, mean and std over seeds: ``nrmse`` (the protocol's test RMSE of the
imputed slots in the normalised space, per element: mean-fill ~1), downstream F1-micro of a
logistic regression (``f1_lr``, the protocol's) and of an MLP head (``f1_mlp``:
``MLPClassifier(hidden_layer_sizes=(128,), early_stopping=True, max_iter=300)`` on the
standardised concatenated views), the fit time with and without the choice, and which
setting 'auto' chose. The targets checked: auto's NRMSE within 5 % of the best fixed
setting's, and auto's F1 >= mean-fill's - 0.01 (both heads).

Data sets: ``mfeat`` (shipped UCI Multiple Features, 6 views, K=40); ``blobs`` (a clustered
synthetic set: 10 well-separated Gaussian clusters in 3 views of 20/30/10 features, 2000
rows, K=20); ``digits`` (scikit-learn's 8x8 digits split into 4 views of two pixel rows, 16
features each: small modalities, K=40).

Writes ``bench/results/completion_choice.json`` and ``.md``. Every number but the fit times
depends on the seed only (single-threaded fits, seeded MLP), so runs of separate processes
(``--first-seed``, a subset of ``--datasets`` / ``--rates``) can be combined with ``--merge``;
a seed found in two files must have the same results in both (checked).

``--cost`` measures instead what the choice costs on the engine's reference workload
(``bench/core_workload.py``'s data: N=200 000, widths 768/1024/768 float32, half the slots
missing, K=64): fits with ``completion='greedy'`` and with ``completion='auto'``, alternated
in one process (``--repeat`` pairs), to convergence unless ``--max-iter`` is given (the same
for both). Prints the ratio and writes ``bench/results/completion_choice_cost.json``
(``--cost-n`` to change N: the results file then names it).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

import ul4m4
from ul4m4 import UL4M4Imputer
from ul4m4._holdout import GRID, candidate_label
from ul4m4.evaluation import _downstream, _errors
from ul4m4.masking import missing_rate_mask

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from core_workload import cpu_name, make_data  # noqa: E402
FIXED = [candidate_label(c, ts) for c, ts in GRID]


def load(name):
    if name == "mfeat":
        from ul4m4.datasets import load_mfeat

        views, y = load_mfeat(return_X_y=True, dtype=np.float64)
        return views, y, 40
    if name == "blobs":
        rng = np.random.default_rng(12345)
        n, k, dims = 2000, 10, (20, 30, 10)
        y = rng.integers(0, k, n)
        views = [4.0 * rng.standard_normal((k, d))[y] + rng.standard_normal((n, d)) for d in dims]
        return views, y, 20
    if name == "digits":
        from sklearn.datasets import load_digits

        X, y = load_digits(return_X_y=True)
        return [X[:, 16 * v:16 * (v + 1)].astype(np.float64) for v in range(4)], y, 40
    raise ValueError(f"unknown data set {name!r}")


def mlp_f1(train_views, test_views, y_tr, y_te, seed):
    from sklearn.neural_network import MLPClassifier
    from sklearn.preprocessing import StandardScaler

    A, B = np.hstack(train_views), np.hstack(test_views)
    sc = StandardScaler().fit(A)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = MLPClassifier(hidden_layer_sizes=(128,), early_stopping=True, max_iter=300,
                            random_state=seed).fit(sc.transform(A), y_tr)
    return float(np.mean(clf.predict(sc.transform(B)) == y_te))


def one_run(views, y, K, rate, seed, mlp=True):
    from sklearn.impute import KNNImputer
    from sklearn.model_selection import train_test_split

    n, M = views[0].shape[0], len(views)
    tr, te = train_test_split(np.arange(n), test_size=0.3, stratify=y, random_state=seed)
    true_tr, true_te = [x[tr] for x in views], [x[te] for x in views]
    mask = missing_rate_mask(n, M, rate, seed=seed)
    m_tr, m_te = mask[tr], mask[te]
    mu = [x.mean(axis=0) for x in true_tr]
    sd = [np.where(s <= 1e-8, 1.0, s) for s in (x.std(axis=0) for x in true_tr)]
    obs_tr = [np.where(m_tr[:, m:m + 1], true_tr[m], np.nan) for m in range(M)]
    obs_te = [np.where(m_te[:, m:m + 1], true_te[m], np.nan) for m in range(M)]
    res = {}

    def score(key, f_tr, f_te):
        f1, _ = _downstream(f_tr, f_te, y[tr], y[te])
        nrmse, _ = _errors(f_te, true_te, ~m_te, mu, sd)
        res[key] = {"nrmse": nrmse, "f1_lr": f1, "f1_mlp": mlp_f1(f_tr, f_te, y[tr], y[te], seed) if mlp else None}

    t0 = time.perf_counter()
    UL4M4Imputer(K, random_state=seed, n_threads=1).fit(obs_tr, mask=m_tr)
    fit_plain = time.perf_counter() - t0
    t0 = time.perf_counter()
    imp = UL4M4Imputer(K, completion="auto", random_state=seed, n_threads=1).fit(obs_tr, mask=m_tr)
    fit_auto = time.perf_counter() - t0
    chosen = candidate_label(imp.completion_, None if imp.completion_ == "greedy" else imp.temperature_scale_)
    for (c, ts), label in zip(GRID, FIXED):
        kw = dict(completion=c, temperature_scale=ts or 1.0)
        score(label, imp.transform(obs_tr, mask=m_tr, **kw), imp.transform(obs_te, mask=m_te, **kw))
    res["auto"] = dict(res[chosen])
    means = [np.nanmean(x, axis=0) for x in obs_tr]
    score("mean-fill", [np.where(m_tr[:, m:m + 1], obs_tr[m], means[m]) for m in range(M)],
          [np.where(m_te[:, m:m + 1], obs_te[m], means[m]) for m in range(M)])
    offs = np.concatenate([[0], np.cumsum([x.shape[1] for x in views])])
    knn = KNNImputer(n_neighbors=5).fit(np.hstack(obs_tr))
    a, b = knn.transform(np.hstack(obs_tr)), knn.transform(np.hstack(obs_te))
    score("KNNImputer", [a[:, offs[m]:offs[m + 1]] for m in range(M)], [b[:, offs[m]:offs[m + 1]] for m in range(M)])
    return {"seed": seed, "results": res, "chosen": chosen, "fit_s": fit_plain, "fit_auto_s": fit_auto,
            "holdout_errors": {candidate_label(d["completion"], d["temperature_scale"]): d["error"]
                               for d in imp.completion_scores_}}


def summarise(runs):
    keys = ["auto"] + FIXED + ["mean-fill", "KNNImputer"]
    out = {}
    for k in keys:
        out[k] = {}
        for metric in ("nrmse", "f1_lr", "f1_mlp"):
            v = [r["results"][k][metric] for r in runs if r["results"][k][metric] is not None]
            if v:
                out[k][metric] = {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0}
    best_fixed = min(FIXED, key=lambda k: out[k]["nrmse"]["mean"])
    checks = {"best_fixed": best_fixed,
              "auto_over_best_nrmse": out["auto"]["nrmse"]["mean"] / out[best_fixed]["nrmse"]["mean"]}
    checks["nrmse_within_5pct"] = checks["auto_over_best_nrmse"] <= 1.05
    for h in ("f1_lr", "f1_mlp"):
        if h in out["auto"]:
            checks[f"{h}_auto_minus_mean"] = out["auto"][h]["mean"] - out["mean-fill"][h]["mean"]
            checks[f"{h}_ok"] = checks[f"{h}_auto_minus_mean"] >= -0.01
    fa = [r["fit_auto_s"] / r["fit_s"] for r in runs]
    return {"summary": out, "checks": checks, "chosen": [r["chosen"] for r in runs],
            "fit_cost_ratio_mean": float(np.mean(fa)), "fit_cost_ratio_max": float(np.max(fa))}


def markdown(all_res, meta):
    lines = [f"# completion='auto' against fixed settings ({meta['seeds']} seeds; mean over seeds)", "",
             f"Machine: {meta['machine']}. NRMSE: test RMSE of imputed slots, normalised space, per "
             "element (mean-fill ~1; lower is better). F1: test F1-micro, logistic regression / MLP head.", ""]
    for ds, by_rate in all_res.items():
        for rate, r in by_rate.items():
            s, c = r["summary"], r["checks"]
            lines.append(f"## {ds}, {float(rate):.0%} missing  (auto chose: {', '.join(r['chosen'])}; "
                         f"fit with auto / without: {r['fit_cost_ratio_mean']:.2f}x mean, "
                         f"{r['fit_cost_ratio_max']:.2f}x max)")
            lines.append("")
            lines.append("| imputer | NRMSE | F1 (LR) | F1 (MLP) |")
            lines.append("|---|---|---|---|")
            for k, v in s.items():
                cells = [f"{v[m]['mean']:.4f} ± {v[m]['std']:.4f}" if m in v else "-" for m in ("nrmse", "f1_lr", "f1_mlp")]
                mark = " (best fixed)" if k == c["best_fixed"] else ""
                lines.append(f"| {k}{mark} | " + " | ".join(cells) + " |")
            lines.append("")
            lines.append(f"auto / best fixed NRMSE = {c['auto_over_best_nrmse']:.3f} "
                         f"({'within' if c['nrmse_within_5pct'] else 'MISSES'} 5 %); "
                         + "; ".join(f"{h}: auto - mean-fill = {c[f'{h}_auto_minus_mean']:+.4f} "
                                     f"({'ok' if c[f'{h}_ok'] else 'MISSES'} >= -0.01)"
                                     for h in ("f1_lr", "f1_mlp") if f"{h}_ok" in c))
            lines.append("")
    return "\n".join(lines)


def cost(args):
    """Fit time with completion='auto' over without, on the reference workload."""
    dims, K = [768, 1024, 768], 64
    Xs, P = make_data(args.cost_n, dims, 0.5)
    kw = dict(random_state=0) if args.max_iter is None else dict(random_state=0, max_iter=args.max_iter)
    runs = {"greedy": [], "auto": []}
    for rep in range(args.repeat):
        for completion in ("greedy", "auto"):
            imp = UL4M4Imputer(K, completion=completion, **kw)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a --max-iter cut warns that it did not converge
                t0 = time.perf_counter()
                imp.fit(Xs, mask=P)
                s = time.perf_counter() - t0
            runs[completion].append({"seconds": s, "n_iter": imp.n_iter_,
                                     "lloyd_s": sum(h["seconds"] for h in imp.history_)})
            extra = (f", chose {candidate_label(imp.completion_, imp.temperature_scale_)}"
                     if completion == "auto" else "")
            print(f"pair {rep}: {completion:6s} {s:7.2f} s, {imp.n_iter_} Lloyd iterations{extra}", flush=True)
    ratios = [a["seconds"] / g["seconds"] for g, a in zip(runs["greedy"], runs["auto"])]
    res = {"n": args.cost_n, "dims": dims, "k": K, "missing": 0.5, "max_iter": args.max_iter,
           "ul4m4_version": ul4m4.__version__, "simd": ul4m4.simd_level(), "threads": len(os.sched_getaffinity(0)),
           "machine": f"{cpu_name()}, {os.cpu_count()} CPUs (shared with "
                      "other jobs: timings are indicative)",
           "runs": runs, "ratio_per_pair": ratios, "ratio_of_medians":
           float(np.median([r["seconds"] for r in runs["auto"]]) / np.median([r["seconds"] for r in runs["greedy"]]))}
    print(f"fit with auto / without: {', '.join(f'{r:.2f}x' for r in ratios)} per pair; "
          f"{res['ratio_of_medians']:.2f}x of the medians")
    suffix = "" if args.cost_n == 200_000 else f"_n{args.cost_n}"
    out = Path(args.out + "_cost" + suffix + ".json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1) + "\n")


def merge(paths):
    """{data set: {rate: runs in seed order}} from results files; a repeated seed must agree."""
    runs = {}
    for path in paths:
        doc = json.loads(Path(path).read_text())
        for ds, by_rate in doc["results"].items():
            for rate, r in by_rate.items():
                for i, run in enumerate(r["runs"]):
                    run = dict(run, seed=run.get("seed", i))  # files without it ran seeds 0, 1, ...
                    key = (ds, rate, run["seed"])
                    if key in runs and runs[key][1]["results"] != run["results"]:
                        raise SystemExit(f"{path}: {ds} rate {rate} seed {run['seed']} differs from {runs[key][0]}")
                    runs.setdefault(key, (path, run, r["K"]))
    out = {}  # data sets in the order first met, rates ascending, seeds ascending
    order = list(dict.fromkeys(k[0] for k in runs))
    for (ds, rate, seed) in sorted(runs, key=lambda k: (order.index(k[0]), float(k[1]), k[2])):
        out.setdefault(ds, {}).setdefault(rate, []).append(runs[ds, rate, seed])
    return out


def write(all_res, meta, out):
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    with open(out + ".json", "w") as fh:
        json.dump({"meta": meta, "results": all_res}, fh, indent=1)
    md = markdown(all_res, meta)
    with open(out + ".md", "w") as fh:
        fh.write(md + "\n")
    print(md)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=["mfeat", "blobs", "digits"])
    ap.add_argument("--rates", nargs="+", type=float, default=[0.3, 0.5, 0.66])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--first-seed", type=int, default=0, help="run seeds FIRST_SEED .. SEEDS-1 only")
    ap.add_argument("--merge", nargs="+", metavar="JSON", help="combine the runs of these results files")
    ap.add_argument("--no-mlp", action="store_true")
    ap.add_argument("--out", default=str(HERE / "results" / "completion_choice"))
    ap.add_argument("--cost", action="store_true", help="time fit with and without 'auto' (see above)")
    ap.add_argument("--cost-n", type=int, default=200_000)
    ap.add_argument("--max-iter", type=int, default=None, help="--cost: a fixed max_iter for both fits")
    ap.add_argument("--repeat", type=int, default=2, help="--cost: pairs of fits")
    args = ap.parse_args(argv)
    if args.cost:
        return cost(args)
    if args.merge:
        by = merge(args.merge)
        all_res = {ds: {rate: dict(summarise([r for _, r, _ in v]), runs=[r for _, r, _ in v], K=v[0][2])
                        for rate, v in rates.items()} for ds, rates in by.items()}
        seeds = sorted({r["seed"] for rates in all_res.values() for v in rates.values() for r in v["runs"]})
        metas = [json.loads(Path(p).read_text())["meta"] for p in args.merge]
        meta = {"seeds": len(seeds), "rates": sorted({float(r) for v in all_res.values() for r in v}),
                "ul4m4_version": ul4m4.__version__, "machine": metas[-1]["machine"],
                "seconds": sum(m["seconds"] for m in metas),
                "note": f"runs of {len(args.merge)} results files combined by --merge (seeds {seeds})"}
        return write(all_res, meta, args.out)
    try:
        from threadpoolctl import threadpool_limits
        limit = threadpool_limits(limits=1, user_api="blas")
    except ImportError:  # pragma: no cover
        limit = None
    all_res = {}
    t_all = time.perf_counter()
    for ds in args.datasets:
        views, y, K = load(ds)
        all_res[ds] = {}
        for rate in args.rates:
            runs = []
            for seed in range(args.first_seed, args.seeds):
                t0 = time.perf_counter()
                runs.append(one_run(views, y, K, rate, seed, mlp=not args.no_mlp))
                print(f"{ds} rate {rate} seed {seed}: auto chose {runs[-1]['chosen']}, "
                      f"{time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
            all_res[ds][str(rate)] = dict(summarise(runs), runs=runs, K=K)
    meta = {"seeds": args.seeds - args.first_seed, "first_seed": args.first_seed, "rates": args.rates, "ul4m4_version": ul4m4.__version__,
            "machine": f"{cpu_name()}, {os.cpu_count()} CPUs (shared with "
                       "other jobs: timings are indicative)",
            "seconds": time.perf_counter() - t_all}
    write(all_res, meta, args.out)
    if limit is not None:
        limit.restore_original_limits()


if __name__ == "__main__":
    main()
