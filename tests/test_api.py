"""Public API: torch round trip, scikit-learn integration, persistence, pickling,
warnings, verbose/callback, SIMD controls, k-means++ and n_init."""
import io
import json
import math
import os
import pickle
import subprocess
import sys
import warnings
import zipfile

import numpy as np
import pytest

import reference as ref
import ul4m4
from ul4m4 import ConvergenceWarning, UL4M4Imputer


# --------------------------------------------------------------------------- data
def blobs(seed=7, n=80, dims=(4, 2), k=4, dtype=np.float64, p_missing=0.3):
    """Clustered data; initial centres all from one blob so that Lloyd runs ~10 iterations."""
    rng = np.random.default_rng(seed)
    g = rng.integers(k, size=n)
    D = sum(dims)
    cent = rng.normal(scale=2, size=(k, D))
    X = cent[g] + rng.normal(size=(n, D))
    offs = np.concatenate([[0], np.cumsum(dims)])
    Xs = [X[:, offs[m]:offs[m + 1]].astype(dtype) for m in range(len(dims))]
    P = np.ones((n, len(dims)), bool)
    for m in range(1, len(dims)):
        P[rng.random(n) < p_missing, m] = False
    for m, A in enumerate(Xs):
        A[~P[:, m]] = np.nan
    rows = np.flatnonzero(g == 0)[:k]
    C = [A[rows].astype(np.float64) for A in Xs]
    H = P[rows].copy()
    return Xs, P, (C, H)


def slow_init_problem():
    Xs, P, init = blobs(seed=7)
    imp = UL4M4Imputer(4, init=init, tol=0.0, n_threads=1).fit(Xs, mask=P)
    assert imp.n_iter_ >= 3  # the data were chosen for that
    return Xs, P, init, imp.n_iter_


# --------------------------------------------------------------------------- torch
def test_torch_round_trip():
    torch = pytest.importorskip("torch", reason="torch is not installed")
    Xs, P, _ = blobs(dtype=np.float32)
    T = [torch.from_numpy(X.copy()) for X in Xs]
    Pt = torch.from_numpy(P.copy())
    before = [t.clone() for t in T]
    imp = UL4M4Imputer(4, random_state=0, n_threads=1).fit(T, mask=Pt)
    out, imputed, unfilled = imp.transform(T, mask=Pt, return_masks=True)
    assert isinstance(out, list) and len(out) == 2
    for o, t in zip(out, T):
        assert isinstance(o, torch.Tensor) and o.dtype == t.dtype == torch.float32 and o.device == t.device
        assert o.shape == t.shape
    for msk in (imputed, unfilled):
        assert isinstance(msk, torch.Tensor) and msk.dtype == torch.bool and tuple(msk.shape) == P.shape
    # same numbers as the numpy path
    imp_np = UL4M4Imputer(4, random_state=0, n_threads=1).fit(Xs, mask=P)
    out_np, imp_n, unf_n = imp_np.transform(Xs, mask=P, return_masks=True)
    np.testing.assert_array_equal(imp.labels_, imp_np.labels_)
    for o, on in zip(out, out_np):
        assert np.array_equal(o.numpy(), on, equal_nan=True)
    np.testing.assert_array_equal(imputed.numpy(), imp_n)
    np.testing.assert_array_equal(unfilled.numpy(), unf_n)
    # inputs untouched (NaN where absent) and outputs complete
    for t, b in zip(T, before):
        assert torch.equal(torch.nan_to_num(t, nan=1234.5), torch.nan_to_num(b, nan=1234.5))
    assert all(torch.isfinite(o).all() for o in out)
    labels = imp.predict(T, mask=Pt)
    assert isinstance(labels, torch.Tensor)
    np.testing.assert_array_equal(labels.numpy(), imp_np.predict(Xs, mask=P))
    # without a mask: NaN rows are absent
    out2 = imp.transform(T)
    for o, on in zip(out2, out_np):
        assert np.array_equal(o.numpy(), on)


def test_torch_requires_grad_and_float64_and_dense():
    torch = pytest.importorskip("torch", reason="torch is not installed")
    Xs, P, _ = blobs(dtype=np.float64)
    T = [torch.tensor(np.nan_to_num(X), requires_grad=True) for X in Xs]
    Pt = torch.from_numpy(P)
    imp = UL4M4Imputer(3, random_state=1).fit(T, mask=Pt)
    out = imp.transform(T, mask=Pt)
    assert all(o.dtype == torch.float64 and not o.requires_grad for o in out)
    for o, t, m in zip(out, T, range(2)):
        rows = torch.from_numpy(P[:, m])
        assert torch.equal(o[rows], t.detach()[rows])
    # one 2-D tensor with NaN blocks + modality_dims -> one tensor
    dense = torch.from_numpy(np.hstack(Xs).astype(np.float32))
    impd = UL4M4Imputer(3, random_state=1, modality_dims=[4, 2]).fit(dense)
    outd = impd.transform(dense)
    assert isinstance(outd, torch.Tensor) and outd.dtype == torch.float32 and outd.shape == dense.shape
    assert torch.isfinite(outd).all()
    # non-contiguous tensor
    nc = torch.from_numpy(np.asfortranarray(np.hstack(Xs).astype(np.float32)))
    assert not nc.is_contiguous()
    assert torch.equal(impd.transform(nc), outd)


def test_torch_numpy_mix_rejected():
    torch = pytest.importorskip("torch", reason="torch is not installed")
    Xs, P, _ = blobs()
    with pytest.raises(TypeError, match="mix of torch tensors and numpy arrays"):
        UL4M4Imputer(2).fit([torch.from_numpy(Xs[0]), Xs[1]], mask=P)


# --------------------------------------------------------------------------- scikit-learn
def test_sklearn_pipeline_and_clone():
    pytest.importorskip("sklearn")
    from sklearn.base import clone
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    Xs, P, _ = blobs(seed=3, n=120)
    X = np.hstack(Xs)
    y = (np.nan_to_num(X[:, 0]) > np.nanmedian(X[:, 0])).astype(int)
    X_before = X.copy()
    pipe = Pipeline([("imp", UL4M4Imputer(4, modality_dims=[4, 2], random_state=0)),
                     ("sc", StandardScaler()), ("lr", LogisticRegression(max_iter=500))])
    pipe.fit(X, y)
    assert np.array_equal(X, X_before, equal_nan=True)
    pred = pipe.predict(X)
    assert pred.shape == y.shape and pipe.score(X, y) > 0.6
    assert pipe.named_steps["imp"].n_features_in_ == 6
    Xt = pipe.named_steps["imp"].transform(X)
    assert isinstance(Xt, np.ndarray) and Xt.shape == X.shape and np.isfinite(Xt).all()
    # clone: same parameters, unfitted
    c = clone(pipe)
    assert c.named_steps["imp"].get_params() == pipe.named_steps["imp"].get_params()
    assert not hasattr(c.named_steps["imp"], "cluster_centers_")
    c.fit(X, y)
    np.testing.assert_array_equal(c.predict(X), pred)
    imp2 = clone(UL4M4Imputer(5, completion="soft", temperature_scale=0.25, n_threads=2))
    assert imp2.n_clusters == 5 and imp2.completion == "soft" and imp2.temperature_scale == 0.25


def test_get_set_params():
    imp = UL4M4Imputer(3, completion="soft", random_state=4)
    p = imp.get_params()
    assert p["n_clusters"] == 3 and p["completion"] == "soft" and p["random_state"] == 4
    assert set(p) == {"n_clusters", "init", "n_init", "max_iter", "tol", "algorithm", "completion", "temperature_scale",
                      "temperature", "empty_rows", "modality_dims", "missing_values", "random_state", "n_threads", "chunk_size",
                      "device", "verbose"}
    assert imp.set_params(n_clusters=5, tol=0.5) is imp
    assert imp.n_clusters == 5 and imp.get_params()["tol"] == 0.5
    with pytest.raises(ValueError, match="invalid parameter 'bogus'"):
        imp.set_params(bogus=1)
    assert "n_clusters=5" in repr(imp) and "completion='soft'" in repr(imp)
    assert repr(UL4M4Imputer()) == "UL4M4Imputer()"


def test_fit_predict_and_labels_are_assignment():
    Xs, P, _ = blobs(seed=11)
    imp = UL4M4Imputer(4, random_state=2)
    labels = imp.fit_predict(Xs, mask=P)
    np.testing.assert_array_equal(labels, imp.labels_)
    assert imp.labels_.dtype == np.int32
    np.testing.assert_array_equal(imp.predict(Xs, mask=P), imp.labels_)


def test_tuple_input_returns_tuple():
    """transform documents "Returns X's container type"; a tuple of arrays in should
    give a tuple out (the code tries to, _arrays.new_like)."""
    Xs, P, _ = blobs()
    imp = UL4M4Imputer(3, random_state=0).fit(tuple(Xs), mask=P)
    out = imp.transform(tuple(Xs), mask=P)
    assert isinstance(out, tuple), f"got {type(out).__name__}"
    assert isinstance(imp.transform(list(Xs), mask=P), list)


# --------------------------------------------------------------------------- persistence
def _fitted(**kw):
    Xs, P, _ = blobs(seed=5)
    kw.setdefault("random_state", 0)
    imp = UL4M4Imputer(4, **kw).fit(Xs, mask=P)
    return imp, Xs, P


@pytest.mark.parametrize("completion", ["greedy", "soft"])
def test_save_load_round_trip(tmp_path, completion):
    imp, Xs, P = _fitted(completion=completion, temperature_scale=0.5)
    path = tmp_path / "model.npz"
    imp.save(path)
    assert not (tmp_path / "model.npz.tmp").exists()
    loaded = UL4M4Imputer.load(path)
    assert loaded.completion == completion and loaded.temperature_scale == 0.5
    np.testing.assert_array_equal(loaded.labels_, imp.labels_)
    np.testing.assert_array_equal(loaded.center_mask_, imp.center_mask_)
    assert loaded.inertia_ == imp.inertia_ and loaded.n_iter_ == imp.n_iter_
    for a, b in zip(loaded.cluster_centers_, imp.cluster_centers_):
        assert np.array_equal(a, b, equal_nan=True)
    Xn, Pn, _ = blobs(seed=6)
    for X_, P_ in ((Xs, P), (Xn, Pn)):
        o1, i1, u1 = imp.transform(X_, mask=P_, return_masks=True)
        o2, i2, u2 = loaded.transform(X_, mask=P_, return_masks=True)
        for a, b in zip(o1, o2):
            assert np.array_equal(a, b)
        np.testing.assert_array_equal(i1, i2)
        np.testing.assert_array_equal(u1, u2)
        np.testing.assert_array_equal(imp.predict(X_, mask=P_), loaded.predict(X_, mask=P_))
    # str path and dense model
    Xd = np.hstack(Xs)
    impd = UL4M4Imputer(3, modality_dims=[4, 2], random_state=0).fit(Xd)
    impd.save(str(tmp_path / "d.npz"))
    ld = UL4M4Imputer.load(str(tmp_path / "d.npz"))
    assert ld.n_features_in_ == 6 and ld.modality_dims == [4, 2]
    assert np.array_equal(ld.transform(Xd), impd.transform(Xd))


def _rewrite(src, dst, edit):
    with np.load(src, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    edit(arrays)
    with open(dst, "wb") as fh:
        np.savez(fh, **arrays)


def test_load_corrupt_files(tmp_path):
    imp, Xs, P = _fitted()
    good = tmp_path / "good.npz"
    imp.save(good)
    raw = good.read_bytes()

    p = tmp_path / "random.npz"
    p.write_bytes(np.random.default_rng(0).bytes(2000))
    with pytest.raises(ValueError, match=r"not a readable ul4m4 model file"):
        UL4M4Imputer.load(p)

    p = tmp_path / "truncated.npz"
    p.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match=r"not a (readable )?ul4m4 model file"):
        UL4M4Imputer.load(p)

    p = tmp_path / "empty.npz"
    p.write_bytes(b"")
    with pytest.raises(ValueError, match=r"not a (readable )?ul4m4 model file"):
        UL4M4Imputer.load(p)

    p = tmp_path / "other.npz"
    np.savez(p, a=np.arange(3), b=np.ones(2))
    with pytest.raises(ValueError, match=r"not a ul4m4 model file"):
        UL4M4Imputer.load(p)

    p = tmp_path / "pickled.npz"
    np.savez(p, header=np.array([{"magic": "ul4m4-model"}], dtype=object))
    with pytest.raises(ValueError, match=r"not a (readable )?ul4m4 model file"):
        UL4M4Imputer.load(p)

    def header_edit(**changes):
        def edit(a):
            h = json.loads(str(a["header"]))
            h.update(changes)
            a["header"] = np.array(json.dumps(h))
        return edit

    p = tmp_path / "magic.npz"
    _rewrite(good, p, header_edit(magic="something-else"))
    with pytest.raises(ValueError, match=r"not a ul4m4 model file"):
        UL4M4Imputer.load(p)

    p = tmp_path / "version.npz"
    _rewrite(good, p, header_edit(format_version=99))
    with pytest.raises(ValueError, match=r"model format version 99 is not supported .*reads version 1"):
        UL4M4Imputer.load(p)

    p = tmp_path / "badjson.npz"
    _rewrite(good, p, lambda a: a.__setitem__("header", np.array("{not json")))
    with pytest.raises(ValueError, match=r"not a ul4m4 model file \(no readable header\)"):
        UL4M4Imputer.load(p)

    p = tmp_path / "missing.npz"
    _rewrite(good, p, lambda a: a.pop("centers_1"))
    with pytest.raises(ValueError, match=r"incomplete or incompatible ul4m4 model file"):
        UL4M4Imputer.load(p)

    p = tmp_path / "shape.npz"
    _rewrite(good, p, lambda a: a.__setitem__("centers_0", a["centers_0"][:, :2]))
    with pytest.raises(ValueError, match=r"inconsistent array shapes for modality 0"):
        UL4M4Imputer.load(p)

    p = tmp_path / "params.npz"
    _rewrite(good, p, lambda a: a.__setitem__("header", np.array(json.dumps(
        {**json.loads(str(a["header"])), "params": {"no_such_param": 1}}))))
    with pytest.raises(ValueError, match=r"incomplete or incompatible ul4m4 model file"):
        UL4M4Imputer.load(p)

    with pytest.raises(FileNotFoundError):
        UL4M4Imputer.load(tmp_path / "does_not_exist.npz")
    # the good file still loads
    UL4M4Imputer.load(good)


def test_save_has_no_pickle(tmp_path):
    imp, _, _ = _fitted()
    imp.save(tmp_path / "m.npz")
    with zipfile.ZipFile(tmp_path / "m.npz") as z:
        for name in z.namelist():
            arr = np.lib.format.read_array(io.BytesIO(z.read(name)), allow_pickle=False)
            assert arr.dtype != object


def test_pickle_round_trip():
    imp, Xs, P = _fitted(completion="soft")
    imp.transform(Xs, mask=P)  # builds the compiled model, which must not be pickled
    clone_ = pickle.loads(pickle.dumps(imp))
    assert clone_.get_params() == imp.get_params()
    for a, b in zip(clone_.transform(Xs, mask=P), imp.transform(Xs, mask=P)):
        assert np.array_equal(a, b)
    unfitted = pickle.loads(pickle.dumps(UL4M4Imputer(3)))
    assert unfitted.n_clusters == 3


# --------------------------------------------------------------------------- warnings, verbose, callback
def test_convergence_warning():
    Xs, P, init, n_iter = slow_init_problem()
    with pytest.warns(ConvergenceWarning, match=r"max_iter=2"):
        imp = UL4M4Imputer(4, init=init, tol=0.0, max_iter=2).fit(Xs, mask=P)
    assert imp.n_iter_ == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        UL4M4Imputer(4, init=init, tol=0.0, max_iter=n_iter).fit(Xs, mask=P)  # converges exactly at max_iter
        UL4M4Imputer(4, init=init, tol=0.0, max_iter=0).fit(Xs, mask=P)
    assert issubclass(ConvergenceWarning, UserWarning)


def test_n_init_with_explicit_init_warns():
    Xs, P, init, _ = slow_init_problem()
    with pytest.warns(RuntimeWarning, match=r"n_init is set to 1"):
        a = UL4M4Imputer(4, init=init, n_init=3).fit(Xs, mask=P)
    b = UL4M4Imputer(4, init=init).fit(Xs, mask=P)
    np.testing.assert_array_equal(a.labels_, b.labels_)


def test_verbose_prints_one_line_per_iteration(capsys):
    Xs, P, init, n_iter = slow_init_problem()
    imp = UL4M4Imputer(4, init=init, tol=0.0, verbose=1).fit(Xs, mask=P)
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.strip()]
    assert len(lines) == imp.n_iter_ == n_iter
    for k, ln in enumerate(lines, 1):
        assert "iter" in ln and str(k) in ln and "inertia" in ln
    UL4M4Imputer(4, init=init, tol=0.0).fit(Xs, mask=P)
    assert capsys.readouterr().out == ""


def test_callback():
    Xs, P, init, n_iter = slow_init_problem()
    seen = []

    def cb(*args):
        seen.append(args)

    imp = UL4M4Imputer(4, init=init, tol=0.0).fit(Xs, mask=P, callback=cb)
    assert len(seen) == imp.n_iter_ == n_iter == len(imp.history_)
    for k, (it, inertia, n_changed, shift, secs) in enumerate(seen, 1):
        h = imp.history_[k - 1]
        assert it == k == h["iteration"]
        assert isinstance(inertia, float) and inertia >= 0 and inertia == h["inertia"]
        assert isinstance(n_changed, int) and n_changed >= 0 and n_changed == h["n_changed"]
        assert isinstance(shift, float) and shift >= 0 and shift == h["max_shift"]
        assert isinstance(secs, float) and secs >= 0
    assert seen[-1][2] == 0 and all(s[2] > 0 for s in seen[:-1])
    assert math.isclose(seen[-1][1], imp.inertia_, rel_tol=1e-12)

    # returning False stops after that iteration
    stop_at = 2
    calls = []

    def stopper(it, *rest):
        calls.append(it)
        return it < stop_at

    imp2 = UL4M4Imputer(4, init=init, tol=0.0).fit(Xs, mask=P, callback=stopper)
    assert calls == [1, 2] and imp2.n_iter_ == stop_at
    np.testing.assert_array_equal(imp2.predict(Xs, mask=P), imp2.labels_)
    imp3 = UL4M4Imputer(4, init=init, tol=0.0).fit(Xs, mask=P, callback=lambda *a: False)
    assert imp3.n_iter_ == 1

    # an exception in the callback propagates
    def boom(*a):
        raise KeyError("from callback")

    with pytest.raises(KeyError, match="from callback"):
        UL4M4Imputer(4, init=init, tol=0.0).fit(Xs, mask=P, callback=boom)


# --------------------------------------------------------------------------- SIMD controls
def test_simd_controls():
    levels = ul4m4.available_simd_levels()
    assert levels[0] == "scalar" and ul4m4.max_simd_level() == levels[-1]
    original = ul4m4.simd_level()
    assert original in levels
    try:
        with pytest.raises(ValueError, match="nonsense"):
            ul4m4.set_simd_level("nonsense")
        assert ul4m4.simd_level() == original
        for lv in levels:
            ul4m4.set_simd_level(lv)
            assert ul4m4.simd_level() == lv
        for lv in ("scalar", "avx2", "avx512"):
            if lv not in levels:
                with pytest.raises(ValueError):
                    ul4m4.set_simd_level(lv)
    finally:
        ul4m4.set_simd_level(original)
    assert ul4m4.simd_level() == original
    ok, why = ul4m4.cuda_available()
    assert isinstance(ok, bool) and isinstance(why, str)


def test_simd_environment_variable():
    code = "import ul4m4, warnings; print(ul4m4.simd_level())"
    env = dict(os.environ, UL4M4_SIMD="scalar")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "scalar"
    env["UL4M4_SIMD"] = "nonsense"
    r = subprocess.run([sys.executable, "-W", "always", "-c", code], env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and "UL4M4_SIMD='nonsense' ignored" in r.stderr


# --------------------------------------------------------------------------- k-means++ and n_init
def test_kmeanspp_deterministic():
    Xs, P, _ = blobs(seed=12)
    a = UL4M4Imputer(4, random_state=123).fit(Xs, mask=P)
    b = UL4M4Imputer(4, random_state=123).fit(Xs, mask=P)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    for x, y in zip(a.cluster_centers_, b.cluster_centers_):
        assert np.array_equal(x, y, equal_nan=True)
    # a numpy Generator seeds it too
    c = UL4M4Imputer(4, random_state=np.random.default_rng(5)).fit(Xs, mask=P)
    d = UL4M4Imputer(4, random_state=np.random.default_rng(5)).fit(Xs, mask=P)
    np.testing.assert_array_equal(c.labels_, d.labels_)


@pytest.mark.parametrize("seed", range(6))
def test_kmeanspp_centres_are_rows_with_their_presence(seed):
    """max_iter=0: the centres are the seeded rows (in z-space) and carry their presence."""
    rng = np.random.default_rng(seed)
    n, dims = 25, (3, 4, 2)
    Xs = [rng.normal(size=(n, d)) for d in dims]
    P = rng.random((n, 3)) < 0.5
    for i in np.flatnonzero(~P.any(axis=1)):
        P[i, rng.integers(3)] = True
    P[0] = True
    K = 6
    imp = UL4M4Imputer(K, random_state=seed, max_iter=0).fit(Xs, mask=P)
    Z = ref.normalise(Xs, P, imp.mean_, imp.scale_)
    used = set()
    for j in range(K):
        H = imp.center_mask_[j]
        match = []
        for i in range(n):
            if np.array_equal(P[i], H) and all(
                    np.allclose(Z[m][i], imp.cluster_centers_[m][j], rtol=1e-12, atol=1e-12) for m in range(3) if H[m]):
                match.append(i)
        assert match, f"centre {j} is not a row of the data with that row's presence"
        assert not (set(match) & used), "two centres seeded from the same row"
        used.update(match)
        for m in range(3):
            assert np.isnan(imp.cluster_centers_[m][j]).all() == (not H[m])


@pytest.mark.parametrize("seed", range(8))
def test_kmeanspp_takes_unreachable_rows_first(seed):
    """Rows sharing no modality with any chosen centre are taken first: with one group of
    rows observing only modality 0 and another only modality 1, K=2 always seeds one
    centre in each group."""
    rng = np.random.default_rng(seed)
    n = 20
    Xs = [rng.normal(size=(n, 3)), rng.normal(size=(n, 2))]
    P = np.zeros((n, 2), bool)
    P[: n // 4, 0] = True
    P[n // 4:, 1] = True
    imp = UL4M4Imputer(2, random_state=seed, max_iter=0).fit(Xs, mask=P)
    assert sorted(map(tuple, imp.center_mask_.tolist())) == [(False, True), (True, False)]
    assert (imp.labels_ >= 0).all()


def test_kmeanspp_k_equals_eligible_and_k_too_large():
    Xs, P, _ = blobs(seed=2, n=12)
    imp = UL4M4Imputer(12, random_state=0, max_iter=0).fit(Xs, mask=P)
    np.testing.assert_array_equal(np.sort(imp.labels_), np.arange(12))  # every row its own centre
    assert imp.inertia_ == pytest.approx(0.0, abs=1e-5)
    with pytest.raises(ValueError, match=r"n_clusters=13 is larger than the 12 rows"):
        UL4M4Imputer(13, random_state=0).fit(Xs, mask=P)
    dup = [np.repeat(X[:1], 12, axis=0) for X in Xs]  # all rows identical: weights all 0
    imp = UL4M4Imputer(3, random_state=0).fit(dup, mask=np.ones((12, 2), bool))
    assert np.isfinite(imp.inertia_)


@pytest.mark.parametrize("n_init", [1, 3])
def test_n_init_consistent(n_init):
    Xs, P, _ = blobs(seed=21, n=90, dims=(3, 4, 2), p_missing=0.4)
    imp = UL4M4Imputer(5, random_state=9, n_init=n_init).fit(Xs, mask=P)
    again = UL4M4Imputer(5, random_state=9, n_init=n_init).fit(Xs, mask=P)
    np.testing.assert_array_equal(imp.labels_, again.labels_)
    assert imp.inertia_ == again.inertia_
    # the returned labels are the assignment to the returned centres
    labels = imp.predict(Xs, mask=P)
    np.testing.assert_array_equal(labels, imp.labels_)
    Z = ref.normalise(Xs, P, imp.mean_, imp.scale_)
    Cs = [np.asarray(C) for C in imp.cluster_centers_]
    d2 = ref.dist2_matrix(Z, P, Cs, imp.center_mask_)
    ok = labels >= 0
    inertia = math.fsum(d2[np.nonzero(ok)[0], labels[ok]].tolist())
    assert imp.inertia_ == pytest.approx(inertia, rel=1e-5, abs=1e-6)
    # nearest centre by the reference distances (ties aside)
    best = d2.min(axis=1)
    np.testing.assert_allclose(d2[np.arange(len(labels)), labels], best, rtol=1e-5, atol=1e-6)
    assert len(imp.history_) == imp.n_iter_
