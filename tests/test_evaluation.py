"""ul4m4.evaluation: the protocol behind ``ul4m4 demo`` and the quality targets."""
from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("sklearn")

from ul4m4.evaluation import IMPUTERS, METRICS, _errors, format_table, run_protocol  # noqa: E402


def _toy(n=240, seed=0):
    """Three views driven by a shared class signal, so that completion has something to find."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(4), n // 4)
    proto = rng.normal(size=(4, 3, 6)) * 2.0
    views = [proto[y, m] + rng.normal(size=(n, 6)) + 10.0 * m for m in range(3)]
    return views, y


def test_rows_structure():
    views, y = _toy()
    rows = run_protocol(rates=(0.3, 0.5), seeds=2, n_clusters=8, data=(views, y), n_jobs=1)
    assert len(rows) == len(IMPUTERS) * 2 * len(METRICS)
    keys = {(r["imputer"], r["rate"], r["metric"]) for r in rows}
    assert len(keys) == len(rows)
    for r in rows:
        assert set(r) >= {"imputer", "label", "rate", "metric", "mean", "std", "n", "values"}
        assert len(r["values"]) == 2
        if r["imputer"] == "complete" and r["metric"] != "f1_micro":
            assert r["mean"] is None and r["n"] == 0
        else:
            assert r["n"] == 2 and math.isclose(r["mean"], np.mean(r["values"]))
            assert math.isclose(r["std"], np.std(r["values"], ddof=1), abs_tol=1e-12)
    get = {(r["imputer"], r["rate"], r["metric"]): r for r in rows}
    # the ceiling does not depend on the rate
    assert get["complete", 0.3, "f1_micro"]["values"] == get["complete", 0.5, "f1_micro"]["values"]
    # mean-fill's normalised error is about 1 by construction; zero-fill in raw space is far worse
    assert 0.8 < get["mean", 0.5, "rmse"]["mean"] < 1.2
    assert get["zero", 0.5, "rmse"]["mean"] > 2
    # on clustered data, ul4m4 reconstructs better than mean-fill
    assert get["ul4m4_soft16", 0.5, "rmse"]["mean"] < get["mean", 0.5, "rmse"]["mean"]
    # the ul4m4 modes share one fit; only auto's fit time includes the choice
    fits = {get[k, 0.3, "fit_s"]["mean"] for k in ("ul4m4_greedy", "ul4m4_soft", "ul4m4_soft16")}
    assert len(fits) == 1
    assert get["ul4m4_auto", 0.3, "fit_s"]["mean"] > fits.pop()
    text = format_table(rows)
    for label in IMPUTERS.values():
        assert label in text
    assert "missing 0.3" in text and "±" in text


def test_auto_row_is_the_fitted_choice():
    """ul4m4_auto completes with the setting that completion='auto' chose, and sharing its fit
    leaves the fixed modes exactly as in a run without it (same centres)."""
    from sklearn.model_selection import train_test_split

    from ul4m4 import UL4M4Imputer
    from ul4m4._holdout import GRID, candidate_label
    from ul4m4.masking import missing_rate_mask

    views, y = _toy()
    kw = dict(rates=(0.5,), seeds=[3], n_clusters=8, data=(views, y), n_jobs=1)
    runs = []
    rows = run_protocol(imputers=("ul4m4_greedy", "ul4m4_soft16", "ul4m4_auto"),
                        progress=lambda d, t, info: runs.append(info), **kw)
    plain = run_protocol(imputers=("ul4m4_greedy", "ul4m4_soft16"), **kw)
    get = {(r["imputer"], r["metric"]): r["values"] for r in rows}
    for r in plain:
        if r["metric"] in ("f1_micro", "rmse", "rmse_slot"):
            assert get[r["imputer"], r["metric"]] == r["values"]
    choice = runs[0]["results"]["ul4m4_auto"]["choice"]
    setting = {candidate_label(c, ts): (c, ts or 1.0) for c, ts in GRID}[choice]
    # the protocol by hand, with the chosen setting fixed
    n, M = len(y), len(views)
    tr, te = train_test_split(np.arange(n), test_size=0.3, stratify=y, random_state=3)
    mask = missing_rate_mask(n, M, 0.5, seed=3)
    obs = [np.where(mask[:, m:m + 1], v, np.nan) for m, v in enumerate(views)]
    imp = UL4M4Imputer(8, completion=setting[0], temperature_scale=setting[1], random_state=3)
    imp.fit([x[tr] for x in obs], mask=mask[tr])
    filled = imp.transform([x[te] for x in obs], mask=mask[te])
    true_tr = [v[tr] for v in views]
    sd = [np.where(s <= 1e-8, 1.0, s) for s in (x.std(axis=0) for x in true_tr)]
    rmse, _ = _errors(filled, [v[te] for v in views], ~mask[te], [x.mean(axis=0) for x in true_tr], sd)
    assert math.isclose(get["ul4m4_auto", "rmse"][0], rmse, rel_tol=1e-12)


def test_parallel_equals_serial():
    views, y = _toy()
    kw = dict(rates=(0.5,), seeds=2, n_clusters=6, data=(views, y), imputers=("ul4m4_soft", "mean", "knn"),
              n_threads=1)
    a = run_protocol(n_jobs=1, **kw)
    b = run_protocol(n_jobs=2, **kw)
    for ra, rb in zip(a, b):
        assert (ra["imputer"], ra["rate"], ra["metric"]) == (rb["imputer"], rb["rate"], rb["metric"])
        if ra["metric"] in ("f1_micro", "rmse", "rmse_slot"):
            assert ra["values"] == rb["values"]


def test_error_definitions():
    """rmse: per element over all imputed test slots; rmse_slot: every slot weighs the same."""
    true = [np.zeros((2, 1)), np.zeros((2, 3))]
    filled = [np.array([[2.0], [0.0]]), np.array([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])]
    miss = np.array([[True, True], [False, False]])
    sd = [np.ones(1), np.ones(3)]
    rmse, rmse_slot = _errors(filled, true, miss, None, sd)
    assert math.isclose(rmse, math.sqrt((4 + 3) / 4))        # 4 elements: 1 + 3
    assert math.isclose(rmse_slot, math.sqrt((4 + 1) / 2))   # 2 slots: 4/1 and 3/3
    # the scale is the training standard deviation
    rmse2, _ = _errors(filled, true, miss, None, [np.full(1, 2.0), np.full(3, 2.0)])
    assert math.isclose(rmse2, rmse / 2)


def test_bad_arguments():
    views, y = _toy()
    with pytest.raises(ValueError, match="unknown imputer"):
        run_protocol(imputers=("bogus",), data=(views, y))
    with pytest.raises(ValueError, match="missing rate"):
        run_protocol(rates=(0.9,), data=(views, y))
    with pytest.raises(ValueError, match="seed"):
        run_protocol(seeds=0, data=(views, y))


def test_knn_on_the_first_seeds_only_and_progress_estimate():
    views, y = _toy()
    seen = []
    rows = run_protocol(rates=(0.3, 0.5), seeds=3, n_clusters=6, data=(views, y), n_jobs=1, knn_seeds=1,
                        imputers=("ul4m4_greedy", "knn", "complete"), progress=lambda d, t, i: seen.append((d, t, i)))
    get = {(r["imputer"], r["rate"], r["metric"]): r for r in rows}
    knn = get["knn", 0.3, "f1_micro"]
    assert knn["n"] == 1 and knn["values"][0] is not None and knn["values"][1:] == [None, None]
    assert get["ul4m4_greedy", 0.3, "f1_micro"]["n"] == 3
    # KNNImputer runs on seed 0 only, and those runs come first
    assert [i["knn"] for _, _, i in seen] == [True, True] + [False] * 7
    assert [d for d, _, _ in seen] == list(range(1, 10)) and {t for _, t, _ in seen} == {9}
    assert all(i["eta"] >= 0 and i["elapsed"] > 0 for _, _, i in seen) and seen[-1][2]["eta"] == 0
    text = format_table(rows)
    assert "(1 seed)" in text and "KNNImputer" in text
    with pytest.raises(ValueError, match="knn_seeds must be None or an int >= 0"):
        run_protocol(knn_seeds=-1, data=(views, y))


def test_demo_prints_progress_and_the_knn_choice(tmp_path, capsys):
    from ul4m4.cli import build_parser, main

    rc = main(["demo", "--rates", "0.5", "--seeds", "2", "-k", "10", "--jobs", "1", "--no-plot",
               "--imputers", "ul4m4_greedy,mean,knn", "--out", str(tmp_path)])
    assert rc == 0
    out, err = capsys.readouterr()
    assert "KNNImputer, the slow peer" in out and "runs on seed 0 only" in out
    assert "[1/2] seed 0, missing 0.5, with KNNImputer:" in err.replace("[ ", "[")
    assert "s elapsed, about" in err and "s left)" in err
    assert "(1 seed)" in out
    import json

    doc = json.loads((tmp_path / "results.json").read_text())
    assert doc["protocol"]["knn_seeds"] == 1
    rc = main(["demo", "--rates", "0.5", "--seeds", "1", "-k", "10", "--jobs", "1", "--no-plot", "--no-knn",
               "--imputers", "ul4m4_greedy,knn", "--out", str(tmp_path)])
    assert rc == 0 and "KNNImputer skipped" in capsys.readouterr().out
    assert build_parser().parse_args(["demo"]).knn_seeds == "1"
    assert build_parser().parse_args(["demo", "--knn-seeds", "all"]).knn_seeds == "all"
    assert main(["demo", "--knn-seeds", "some"]) == 2
