"""Self-tuned completion: the held-out machinery (score, completion='auto') and the
per-slot confidence of transform."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from ul4m4 import UL4M4Imputer
from ul4m4 import _holdout
from ul4m4.masking import missing_rate_mask

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reference as R  # noqa: E402


def _blobs(n=600, dims=(5, 7, 3, 4), k=6, rate=0.4, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    Xs = [3.0 * rng.standard_normal((k, d))[y] + rng.standard_normal((n, d)) for d in dims]
    P = missing_rate_mask(n, len(dims), rate, seed=seed)
    return [np.where(P[:, m:m + 1], X, np.nan) for m, X in enumerate(Xs)], P, Xs


def _ranks(a):
    r = np.empty(a.size)
    r[np.argsort(a, kind="stable")] = np.arange(a.size)
    return r


def _spearman(a, b):
    return float(np.corrcoef(_ranks(np.asarray(a)), _ranks(np.asarray(b)))[0, 1])


# ----------------------------------------------------------------------------- hold-out draws
def test_holdout_mask_follows_the_missingness_pattern():
    _, P, _ = _blobs(n=2000)
    hide = _holdout.holdout_mask(P, seed=3)
    assert not (hide & ~P).any()  # only observed slots are hidden
    used = hide.any(axis=1)
    assert used.sum() > 500
    left = P & ~hide
    assert left[used].any(axis=1).all()  # every used row keeps a modality to match on
    assert (P.sum(axis=1)[used] >= 2).all()
    # each new pattern is the row's pattern AND some incomplete row's pattern
    donors = {tuple(p) for p in P[~P.all(axis=1) & P.any(axis=1)]}
    for i in np.flatnonzero(used)[:200]:
        assert any(tuple(P[i] & np.array(d)) == tuple(left[i]) for d in donors)
    np.testing.assert_array_equal(hide, _holdout.holdout_mask(P, seed=3))
    assert (hide != _holdout.holdout_mask(P, seed=4)).any()


def test_holdout_mask_complete_data_and_row_cap():
    P = np.ones((300, 3), dtype=bool)
    hide = _holdout.holdout_mask(P, seed=0)
    np.testing.assert_array_equal(hide.sum(axis=1), 1)  # one modality per row
    assert set(np.flatnonzero(hide) % 3) == {0, 1, 2}
    capped = _holdout.holdout_mask(P, seed=0, max_rows=50)
    assert capped.any(axis=1).sum() == 50
    assert not (capped & ~hide).any()
    one = np.zeros((10, 3), dtype=bool)
    one[:, 0] = True  # a single modality per row: nothing can be hidden
    assert not _holdout.holdout_mask(one, seed=0).any()


# ----------------------------------------------------------------------------- score
def test_score_is_minus_the_documented_nrmse():
    X, P, _ = _blobs()
    imp = UL4M4Imputer(6, random_state=1, completion="soft", temperature_scale=0.25).fit(X, mask=P)
    hide = _holdout.holdout_mask(P, seed=1)
    Xh = [np.where((P & ~hide)[:, m:m + 1], x, np.nan) for m, x in enumerate(X)]
    filled = imp.transform(Xh, mask=P & ~hide)
    per = []
    for m in range(len(X)):
        r = hide[:, m]
        z = (X[m][r] - imp.mean_[m]) / imp.scale_[m]
        zh = (filled[m][r] - imp.mean_[m]) / imp.scale_[m]
        per.append(np.sqrt(((zh - z) ** 2).sum() / (z ** 2).sum()))
    s = imp.score(X, mask=P)
    assert isinstance(s, float)
    assert s == pytest.approx(-np.mean(per), rel=1e-6)
    assert -1.0 < s < 0.0  # better than mean-fill on clustered data
    # the same slots whatever the other parameters (so a search compares like with like)
    assert imp.set_params(temperature_scale=1.0).score(X, mask=P) < s


def test_score_ranks_models_and_works_in_a_grid_search():
    X, P, _ = _blobs(n=900)
    tr, te = np.arange(0, 900, 2), np.arange(1, 900, 2)
    held = {}
    for K in (1, 6):
        imp = UL4M4Imputer(K, random_state=0).fit([x[tr] for x in X], mask=P[tr])
        held[K] = imp.score([x[te] for x in X], mask=P[te])
    assert held[6] > held[1]  # the true number of clusters scores higher on unseen rows
    pytest.importorskip("sklearn")
    if not hasattr(UL4M4Imputer, "__sklearn_tags__"):
        pytest.skip("GridSearchCV needs the scikit-learn tags (the scikit-learn protocol change)")
    from sklearn.model_selection import GridSearchCV

    dense = np.hstack(X)
    search = GridSearchCV(UL4M4Imputer(modality_dims=[x.shape[1] for x in X], random_state=0),
                          {"n_clusters": [1, 6], "completion": ["greedy", "soft"]}, cv=3)
    search.fit(dense)
    assert search.best_params_["n_clusters"] == 6
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()


def test_score_torch_and_nothing_to_hide():
    torch = pytest.importorskip("torch")
    X, P, _ = _blobs()
    imp = UL4M4Imputer(6, random_state=0).fit(X, mask=P)
    s = imp.score([torch.from_numpy(x) for x in X], mask=torch.from_numpy(P))
    assert s == imp.score(X, mask=P)
    one = np.zeros_like(P)
    one[:, 0] = True
    assert np.isnan(imp.score([np.where(one[:, m:m + 1], x, np.nan) for m, x in enumerate(X)], mask=one))


# ----------------------------------------------------------------------------- completion='auto'
def test_auto_chooses_the_lowest_held_out_error_deterministically(capsys):
    X, P, _ = _blobs()
    imp = UL4M4Imputer(6, completion="auto", random_state=5, verbose=1).fit(X, mask=P)
    out = capsys.readouterr().out
    scores = imp.completion_scores_
    assert [(d["completion"], d["temperature_scale"]) for d in scores] == list(_holdout.GRID)
    assert {d["temperature_scale"] for d in scores} >= {1.0, 0.5, 0.25, 0.125, 0.0625, 0.03125}
    best = min(range(len(scores)), key=lambda i: scores[i]["error"])
    assert imp.completion_ == scores[best]["completion"]
    if imp.completion_ == "soft":
        assert imp.temperature_scale_ == scores[best]["temperature_scale"]
    for d in scores:
        assert _holdout.candidate_label(d["completion"], d["temperature_scale"]) in out
    assert "<- chosen" in out
    fixed = UL4M4Imputer(6, random_state=5).fit(X, mask=P)
    # a fixed completion is its own choice, with no scores
    assert (fixed.completion_, fixed.temperature_scale_, fixed.completion_scores_) == ("greedy", 1.0, None)
    # deterministic, and transform uses the choice
    again = UL4M4Imputer(6, completion="auto", random_state=5).fit(X, mask=P)
    assert again.completion_scores_ == scores
    want = fixed.transform(X, mask=P, completion=imp.completion_, temperature_scale=imp.temperature_scale_)
    for a, b in zip(imp.transform(X, mask=P), want):
        np.testing.assert_array_equal(a, b)
    # the same centres as a fit without 'auto'
    for a, b in zip(imp.cluster_centers_, fixed.cluster_centers_):
        np.testing.assert_array_equal(a, b)


def test_auto_errors_follow_the_documented_recipe():
    """Hidden slots from random_state; centres refitted without them (AUTO_REFIT_ITER Lloyd
    iterations from the fitted centres); the score() error of each candidate."""
    from ul4m4 import _core

    X, P, _ = _blobs(n=500)
    imp = UL4M4Imputer(6, completion="auto", random_state=2).fit(X, mask=P)
    hide = _holdout.holdout_mask(P, seed=2, max_rows=_holdout.AUTO_MAX_ROWS)
    Xs = [np.ascontiguousarray(x) for x in X]
    Xs = [np.where(np.isnan(x), 0.0, x) for x in Xs]
    seen = np.ascontiguousarray((P & ~hide).view(np.uint8))
    res = _core.kmeans(Xs, seen, imp.mean_, imp.scale_, 6, _holdout.AUTO_REFIT_ITER, imp.tol, 1, 0,
                       [np.nan_to_num(c) for c in imp.cluster_centers_],
                       np.ascontiguousarray(imp.center_mask_, dtype=np.uint8), None, 1, 256)
    refit = UL4M4Imputer(6)
    refit.mean_, refit.scale_ = imp.mean_, imp.scale_
    refit.cluster_centers_ = [np.where(np.asarray(res["H"], bool)[:, m:m + 1], c, np.nan)
                              for m, c in enumerate(res["centres"])]
    refit.center_mask_ = np.asarray(res["H"], dtype=bool)
    refit.n_modalities_, refit.modality_dims_ = len(X), tuple(x.shape[1] for x in X)
    refit.random_state = 2
    assert (P.sum(axis=1) >= 2).sum() < _holdout.AUTO_MAX_ROWS  # score() uses the same rows
    for d in imp.completion_scores_:
        refit.completion, refit.temperature_scale = d["completion"], d["temperature_scale"] or 1.0
        assert -refit.score(X, mask=P) == pytest.approx(d["error"], rel=1e-9)


def test_auto_refit_runs_on_a_capped_sample_of_large_data(monkeypatch):
    """Above AUTO_REFIT_ROWS rows, the refit without the hidden slots runs on the held-out rows
    plus a seeded sample of the others (its cost stops growing with N); below it, on all rows."""
    from ul4m4 import _core, _imputer

    X, P, _ = _blobs(n=500)
    hide = _holdout.holdout_mask(P, seed=2, max_rows=_holdout.AUTO_MAX_ROWS)
    held = np.flatnonzero(hide.any(axis=1))
    cap = held.size + 40  # every held-out row, and 40 of the others
    assert _holdout.refit_rows(hide, 2, 500) is None
    rows = _holdout.refit_rows(hide, 2, cap)
    assert rows.size == cap and np.all(np.diff(rows) > 0)
    assert set(held) <= set(rows.tolist())
    np.testing.assert_array_equal(rows, _holdout.refit_rows(hide, 2, cap))
    assert not np.array_equal(rows, _holdout.refit_rows(hide, 3, cap))
    assert _holdout.refit_rows(hide, 2, 10).size == held.size  # the held-out rows always take part

    seen_rows = []
    kmeans = _core.kmeans

    def spy(Xs, present, *a, **k):
        seen_rows.append(present.shape[0])
        return kmeans(Xs, present, *a, **k)

    monkeypatch.setattr(_imputer._core, "kmeans", spy)
    full = UL4M4Imputer(6, completion="auto", random_state=2).fit(X, mask=P)
    assert seen_rows == [500, 500]  # the fit, then the refit on every row
    monkeypatch.setattr(_holdout, "AUTO_REFIT_ROWS", cap)
    seen_rows.clear()
    capped = UL4M4Imputer(6, completion="auto", random_state=2).fit(X, mask=P)
    assert seen_rows == [500, cap]
    again = UL4M4Imputer(6, completion="auto", random_state=2).fit(X, mask=P)
    assert again.completion_scores_ == capped.completion_scores_
    errs = [d["error"] for d in capped.completion_scores_]
    assert errs != [d["error"] for d in full.completion_scores_]  # other centres judge them
    assert all(np.isfinite(errs)) and min(errs) < 1.0  # still far better than mean-fill


def test_auto_picks_greedy_like_fills_on_separated_clusters_and_wide_soft_on_noise():
    X, P, _ = _blobs(n=1500, k=5)
    sep = UL4M4Imputer(5, completion="auto", random_state=0).fit(X, mask=P)
    errs = {(d["completion"], d["temperature_scale"]): d["error"] for d in sep.completion_scores_}
    assert errs[("soft", 1.0)] > min(errs.values()) * 1.3  # scale 1 spreads the weights: close to mean
    assert sep.completion_ == "greedy" or sep.temperature_scale_ <= 0.125


def test_auto_validation_and_unfitted_choice():
    X, P, _ = _blobs()
    with pytest.raises(ValueError, match="completion"):
        UL4M4Imputer(4, completion="best").fit(X, mask=P)
    with pytest.raises(ValueError, match="temperature"):
        UL4M4Imputer(4, completion="auto", temperature=0.5).fit(X, mask=P)
    imp = UL4M4Imputer(4, random_state=0).fit(X, mask=P)
    with pytest.raises(ValueError, match="completion"):
        imp.transform(X, mask=P, completion="best")
    # 'auto' on a call resolves to the fitted value
    for a, b in zip(imp.transform(X, mask=P, completion="auto"), imp.transform(X, mask=P)):
        np.testing.assert_array_equal(a, b)
    # a model whose fit made no choice (e.g. fitted out of core) says so
    auto = UL4M4Imputer(4, completion="auto", random_state=0).fit(X, mask=P)
    del auto.completion_
    with pytest.raises(ValueError, match="completion='auto' is chosen by UL4M4Imputer.fit"):
        auto.transform(X, mask=P)


def test_auto_choice_survives_save_load_and_pickle(tmp_path):
    import pickle

    X, P, _ = _blobs()
    imp = UL4M4Imputer(6, completion="auto", random_state=0).fit(X, mask=P)
    imp.save(tmp_path / "m.npz")
    back = UL4M4Imputer.load(tmp_path / "m.npz")
    assert (back.completion, back.completion_, back.temperature_scale_) == \
           ("auto", imp.completion_, imp.temperature_scale_)
    assert back.completion_scores_ == imp.completion_scores_
    for a, b in zip(back.transform(X, mask=P), imp.transform(X, mask=P)):
        np.testing.assert_array_equal(a, b)
    p = pickle.loads(pickle.dumps(imp))
    assert p.completion_scores_ == imp.completion_scores_
    # a file without the field (older writer): a fixed completion is its own choice
    with np.load(tmp_path / "m.npz") as f:
        arrays = {k: f[k] for k in f.files}
    header = json.loads(str(arrays["header"]))
    del header["completion_choice"]
    header["params"]["completion"] = "soft"
    header["params"]["temperature_scale"] = 0.5

    def rewrite(name):
        arrays["header"] = np.array(json.dumps(header))
        np.savez(tmp_path / name, **arrays)
        return tmp_path / name

    old = UL4M4Imputer.load(rewrite("old.npz"))
    assert (old.completion_, old.temperature_scale_, old.completion_scores_) == ("soft", 0.5, None)
    header["completion_choice"] = {"completion": "best", "temperature_scale": 1, "scores": None}
    with pytest.raises(ValueError, match="completion_choice"):
        UL4M4Imputer.load(rewrite("bad.npz"))


# ----------------------------------------------------------------------------- confidence
@pytest.mark.filterwarnings("ignore:k-means stopped at max_iter")
@pytest.mark.parametrize("completion,ts", [("greedy", 1.0), ("soft", 1.0), ("soft", 1 / 16)])
@pytest.mark.parametrize("K", [3, 24])  # 24: the greedy pruning path is taken without confidence
def test_confidence_matches_the_reference_and_leaves_the_fill_unchanged(completion, ts, K):
    X, P, _ = _blobs(n=400, dims=(3, 4, 2, 5))
    X32 = [x.astype(np.float32) for x in X]
    imp = UL4M4Imputer(K, random_state=0, completion=completion, temperature_scale=ts).fit(X, mask=P)
    plain, imp_m, unf_m = imp.transform(X32, mask=P, return_masks=True)
    filled, imp_c, unf_c, conf = imp.transform(X32, mask=P, return_masks=True, return_confidence=True)
    for a, b in zip(plain, filled):
        np.testing.assert_array_equal(a, b)  # bit-identical completion
    np.testing.assert_array_equal(imp_m, imp_c)
    assert conf.dtype == np.float32 and conf.shape == P.shape
    assert ((conf >= 0) & (conf <= 1)).all()
    np.testing.assert_array_equal(conf[P], 1.0)
    np.testing.assert_array_equal(conf[unf_c], 0.0)
    # against the reference implementation's scores / weights
    H = imp.center_mask_
    Cs = [np.nan_to_num(c) for c in imp.cluster_centers_]
    Zs = R.normalise(X, P, imp.mean_, imp.scale_)
    want = np.full(P.shape, np.nan)
    if completion == "greedy":
        scores = R.greedy_complete(Zs, P, Cs, H)[3] ** 2  # the core compares squared scores
        for i, m in zip(*np.nonzero(imp_c)):
            s = np.sort(scores[i][H[:, m]])
            want[i, m] = 1.0 if s.size == 1 else (1 - s[0] / s[1] if s[1] > 0 else 0.0)
    else:
        d = R.dist2_matrix(Zs, P, Cs, H)
        for i, m in zip(*np.nonzero(imp_c)):
            fin = np.isfinite(d[i])
            J = H[:, m] & fin
            T = max(ts * float(np.median(d[i][fin])), 1e-12)
            w = np.exp(-(d[i][J] - d[i][J].min()) / T)
            w /= w.sum()
            ent = -np.sum(np.where(w > 0, w * np.log(np.where(w > 0, w, 1)), 0.0))
            want[i, m] = 1.0 if J.sum() == 1 else 1 - ent / np.log(J.sum())
    # the core's row-to-centre distances are float32 sums: agreement to ~1e-5
    np.testing.assert_allclose(conf[imp_c], want[imp_c], atol=3e-5)
    # any thread count, the same bits
    one = UL4M4Imputer(K, random_state=0, completion=completion, temperature_scale=ts, n_threads=1,
                       chunk_size=7).fit(X, mask=P)
    np.testing.assert_array_equal(one.transform(X32, mask=P, return_confidence=True)[1], conf)


def test_confidence_containers():
    torch = pytest.importorskip("torch")
    X, P, _ = _blobs(n=200)
    dims = [x.shape[1] for x in X]
    imp = UL4M4Imputer(4, random_state=0, modality_dims=dims).fit(np.hstack(X))
    out, conf = imp.transform(torch.from_numpy(np.hstack(X)), return_confidence=True)
    assert isinstance(out, torch.Tensor) and isinstance(conf, torch.Tensor)
    assert tuple(conf.shape) == P.shape and conf.dtype == torch.float32
    out2, conf2 = imp.transform(np.hstack(X), return_confidence=True)
    np.testing.assert_array_equal(conf.numpy(), conf2)
    np.testing.assert_array_equal(out.numpy(), out2)


def test_confidence_ranks_fills_by_error_on_mfeat():
    from ul4m4.datasets import load_mfeat

    views, _ = load_mfeat(return_X_y=True, dtype=np.float64)
    n, M = views[0].shape[0], len(views)
    P = missing_rate_mask(n, M, 0.5, seed=0)
    obs = [np.where(P[:, m:m + 1], v, np.nan) for m, v in enumerate(views)]
    imp = UL4M4Imputer(40, random_state=0).fit(obs, mask=P)
    for completion, ts in (("greedy", 1.0), ("soft", 1 / 16), ("soft", 1 / 8)):
        filled, conf = imp.transform(obs, mask=P, completion=completion, temperature_scale=ts,
                                     return_confidence=True)
        per_mod = []
        for m in range(M):
            r = ~P[:, m]
            err = (((filled[m][r] - views[m][r]) / imp.scale_[m]) ** 2).mean(axis=1)
            per_mod.append(_spearman(conf[r, m], err))
        # lower confidence, larger error: clearly so on average over the six views
        assert np.mean(per_mod) < -0.15, (completion, ts, per_mod)
        assert sum(c < 0 for c in per_mod) >= 4, (completion, ts, per_mod)


def test_auto_needs_the_in_memory_fit():
    from ul4m4.outofcore import fit_streaming

    X, P, _ = _blobs(n=300)
    with pytest.raises(ValueError, match="fit_streaming"):
        fit_streaming(UL4M4Imputer(4, completion="auto", random_state=0), X, P, chunk_rows=64)
    # with max_rows the sample is fitted by UL4M4Imputer.fit, which chooses
    imp = fit_streaming(UL4M4Imputer(4, completion="auto", random_state=0), X, P, max_rows=200)
    assert imp.completion_scores_ is not None
    # a streaming fit with a fixed completion sets the fitted choice like fit does
    fixed = fit_streaming(UL4M4Imputer(4, completion="soft", temperature_scale=0.5, random_state=0), X, P)
    assert (fixed.completion_, fixed.temperature_scale_, fixed.completion_scores_) == ("soft", 0.5, None)
