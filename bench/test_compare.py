"""Checks of the comparison itself (not benchmarks; skipped under --benchmark-only).

The peers' formulations must compute what ul4m4 computes, or the ratios mean nothing:
on z-scored data with the same centres they must give ul4m4's labels, before and after
Lloyd iterations. And ``python -m bench.compare`` must run end to end and write its files.
"""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

import ul4m4
from bench import compare
from bench.core_workload import make_data
from bench.formulations import FORMULATIONS


def _case(missing):
    dims, K = [48, 64, 32], 8
    Xs, P = make_data(600, dims, missing, seed=3)
    rows = np.random.default_rng(1).choice(len(P), K, replace=False)
    init = ([X[rows] for X in Xs], P[rows])
    fits = []
    for it in (0, 2):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fits.append(ul4m4.UL4M4Imputer(K, init=init, max_iter=it, tol=0.0).fit(Xs, mask=P))
    f0 = fits[0]
    Z = [((X - mu) / s).astype(np.float32) for X, mu, s in zip(Xs, f0.mean_, f0.scale_)]
    Cz = [np.nan_to_num(c).astype(np.float32) for c in f0.cluster_centers_]
    return Z, P, Cz, f0.center_mask_, fits


@pytest.mark.parametrize("missing", [0.0, 0.5, 0.8])
@pytest.mark.parametrize("name", sorted(FORMULATIONS))
def test_formulation_matches_ul4m4(name, missing):
    if name == "torch":
        pytest.importorskip("torch")
    pytest.importorskip("scipy")
    Z, P, Cz, H, (f0, f2) = _case(missing)
    rows = np.arange(120) if name == "loop" else None
    f = FORMULATIONS[name](Z, P, Cz, H, rows=rows)
    lab = np.asarray(f.labels)
    ref0 = f0.labels_ if rows is None else f0.labels_[rows]
    assert (lab == ref0).mean() >= 0.99
    if rows is None:  # iterations need every row
        for _ in range(f2.n_iter_):
            lab = np.asarray(f.iterate())
        assert (lab == f2.labels_).mean() >= 0.99


def test_compare_runs(tmp_path):
    pytest.importorskip("scipy")
    argv = ["--n", "300", "600", "--dims", "32", "48", "--k", "8", "--iters", "2", "--repeat", "1",
            "--broadcast-rows", "100", "--loop-rows", "10", "--impute-n", "200", "--converge-n", "600", "--out-dir", str(tmp_path)]
    assert compare.main(argv) == 0
    res = json.loads((tmp_path / "compare.json").read_text())
    got = {(r["method"], r["data"]) for r in res["results"] if r["n"] == 600}
    assert {("ul4m4", "complete"), ("ul4m4", "half"), ("floor_matmul", "half"), ("numpy_gemm", "half"),
            ("broadcast", "half"), ("loop", "half")} <= got
    assert all(r["s_median"] > 0 for r in res["results"])
    assert len(res["targets"]) == 9
    # Fits to convergence: the peers solve ul4m4's problem (z-space, / sqrt(d_m)) from the
    # same centres, so they stop at ul4m4's labels; bounded is plain Lloyd, bit for bit.
    conv = {(r["method"], r["data"]): r for r in res["converge"][0]["rows"]}
    assert conv[("ul4m4_bounded", "complete")]["label_agreement"] == 1.0
    assert conv[("ul4m4_bounded", "half")]["label_agreement"] == 1.0
    assert conv[("ul4m4_bounded", "complete")]["n_iter"] == conv[("ul4m4_lloyd", "complete")]["n_iter"]
    for key in ("sklearn_lloyd", "sklearn_elkan", "onedal", "faiss"):
        if (key, "complete") in conv:
            assert conv[(key, "complete")]["label_agreement"] >= 0.99, key
    assert "fit_extra_mib" in res["memory"]["600"]
    md = (tmp_path / "compare.md").read_text()
    assert "| ul4m4 | half missing |" in md
    assert "## Fits to convergence, N = 600" in md
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return
    assert (tmp_path / "compare.png").stat().st_size > 0


def test_compare_converge_only_names_no_size(tmp_path):
    """--converge-only measures no per-iteration size: its targets heading must not claim one
    (it said "at N = 0")."""
    pytest.importorskip("scipy")
    argv = ["--converge-only", "--dims", "32", "48", "--k", "8", "--converge-n", "600", "--out-dir", str(tmp_path)]
    assert compare.main(argv) == 0
    md = (tmp_path / "compare.md").read_text()
    assert "## Targets (fits to convergence only)" in md
    assert "N = 0" not in md
