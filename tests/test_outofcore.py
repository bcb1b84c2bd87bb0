"""Out-of-core fitting and completion (ul4m4.outofcore): equal to the in-memory estimator,
atomic output files, bounded working set."""
import os
import tracemalloc
import warnings

import numpy as np
import pytest

import ul4m4
from conftest import clusters, initial_rows
from ul4m4 import outofcore
from ul4m4.outofcore import ChunkSource, Progress, fit_streaming, iter_transform, transform_to_npy


def _data(n=3000, dims=(12, 7, 20), seed=0, dtype=np.float32, p=0.55):
    return clusters(n, dims, 6, seed, p, dtype)


def _save(tmp_path, Xs, P, tag=""):
    paths = []
    for m, X in enumerate(Xs):
        p = tmp_path / f"in{tag}_{m}.npy"
        np.save(p, X)
        paths.append(p)
    mp = tmp_path / f"mask{tag}.npy"
    np.save(mp, P)
    return [np.load(p, mmap_mode="r") for p in paths], np.load(mp, mmap_mode="r")


@pytest.mark.parametrize("chunk_rows", [257, 1000, 5000])
def test_fit_streaming_equals_fit_with_same_init(tmp_path, chunk_rows):
    Xs, P = _data()
    Xs[1] = Xs[1].astype(np.float64)
    K = 7
    init = initial_rows(Xs, P, K)
    ref = ul4m4.UL4M4Imputer(K, init=init, max_iter=100, tol=0.0).fit(Xs, mask=P)
    mXs, mP = _save(tmp_path, Xs, P)
    got = fit_streaming(ul4m4.UL4M4Imputer(K, init=init, max_iter=100, tol=0.0), mXs, mP, chunk_rows=chunk_rows)
    assert got.n_iter_ == ref.n_iter_ and ref.n_iter_ > 1
    np.testing.assert_array_equal(got.labels_, ref.labels_)
    np.testing.assert_array_equal(got.center_mask_, ref.center_mask_)
    for a, b in zip(got.cluster_centers_, ref.cluster_centers_):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    for a, b in zip(got.mean_ + got.scale_, ref.mean_ + ref.scale_):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(got.inertia_, ref.inertia_, rtol=1e-9)
    assert [h["n_changed"] for h in got.history_] == [h["n_changed"] for h in ref.history_]
    assert got.modality_dims_ == ref.modality_dims_ and got.n_modalities_ == 3
    # the fitted model completes like the reference
    a = got.transform(Xs, mask=P)
    b = ref.transform(Xs, mask=P)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-6)


def test_fit_streaming_partial_centres_and_tol_and_nan_marking():
    Xs, P = _data(n=1500, p=0.4, seed=4)
    Xn = [np.where(P[:, m:m + 1], X, np.nan).astype(X.dtype) for m, X in enumerate(Xs)]
    K = 9
    init = initial_rows(Xs, P, K, seed=5)  # partial initial centres
    kw = dict(init=init, max_iter=50, tol=1e-3)
    ref = ul4m4.UL4M4Imputer(K, **kw).fit(Xn)
    got = fit_streaming(ul4m4.UL4M4Imputer(K, **kw), Xn, chunk_rows=333)
    assert got.n_iter_ == ref.n_iter_
    np.testing.assert_array_equal(got.labels_, ref.labels_)
    np.testing.assert_array_equal(got.center_mask_, ref.center_mask_)
    for a, b in zip(got.cluster_centers_, ref.cluster_centers_):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)  # NaN where absent, in both


def test_fit_streaming_kmeanspp_whole_data_sample_matches_fit():
    # N <= init_rows: k-means++ runs on the whole dataset with the same seed as fit
    Xs, P = _data(n=2000, seed=2)
    ref = ul4m4.UL4M4Imputer(6, random_state=11, max_iter=100).fit(Xs, mask=P)
    got = fit_streaming(ul4m4.UL4M4Imputer(6, random_state=11, max_iter=100), Xs, P, chunk_rows=300)
    np.testing.assert_array_equal(got.labels_, ref.labels_)
    for a, b in zip(got.cluster_centers_, ref.cluster_centers_):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def test_fit_streaming_seeding_sample_and_n_init():
    Xs, P = _data(n=4000, seed=3)
    imp = fit_streaming(ul4m4.UL4M4Imputer(5, random_state=0, n_init=2, max_iter=50), Xs, P,
                        chunk_rows=700, init_rows=500)
    assert imp.labels_.shape == (4000,) and imp.cluster_centers_[0].shape == (5, 12)
    assert not hasattr(imp, "fit_rows_")
    again = fit_streaming(ul4m4.UL4M4Imputer(5, random_state=0, n_init=2, max_iter=50), Xs, P,
                          chunk_rows=900, init_rows=500)
    np.testing.assert_array_equal(imp.labels_, again.labels_)  # chunking does not change the result


def test_max_rows_fits_on_a_sample_only_when_asked():
    Xs, P = _data(n=3000, seed=6)
    imp = fit_streaming(ul4m4.UL4M4Imputer(4, random_state=0), Xs, P, chunk_rows=512, max_rows=800)
    assert imp.labels_.shape == (800,) and imp.fit_rows_.shape == (800,)
    assert np.all(np.diff(imp.fit_rows_) > 0)
    ref = ul4m4.UL4M4Imputer(4, random_state=0).fit([X[imp.fit_rows_] for X in Xs], mask=P[imp.fit_rows_])
    for a, b in zip(imp.mean_, ref.mean_):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    full = fit_streaming(ul4m4.UL4M4Imputer(4, random_state=0), Xs, P, chunk_rows=512, max_rows=10**9)
    assert full.labels_.shape == (3000,) and not hasattr(full, "fit_rows_")
    with pytest.raises(ValueError, match="max_rows"):
        fit_streaming(ul4m4.UL4M4Imputer(4), Xs, P, max_rows=0)


def test_fit_streaming_errors():
    Xs, P = _data(n=500)
    P2 = P.copy()
    P2[321] = False
    with pytest.raises(ValueError, match="row 321 observes no modality"):
        fit_streaming(ul4m4.UL4M4Imputer(3), Xs, P2, chunk_rows=100)
    imp = fit_streaming(ul4m4.UL4M4Imputer(3, empty_rows="mean", random_state=0), Xs, P2, chunk_rows=100)
    assert imp.labels_[321] == -1
    bad = [X.copy() for X in Xs]
    r = int(np.flatnonzero(P[:, 1])[-1])
    bad[1][r, 2] = np.inf
    with pytest.raises(ValueError, match=f"row {r}"):
        fit_streaming(ul4m4.UL4M4Imputer(3), bad, P, chunk_rows=64)
    P3 = P.copy()
    P3[:, 2] = False
    P3[~P3.any(1), 0] = True
    with pytest.raises(ValueError, match="modality 2 has no observed row"):
        fit_streaming(ul4m4.UL4M4Imputer(3), Xs, P3, chunk_rows=64)
    with pytest.raises(ValueError, match="rows"):
        fit_streaming(ul4m4.UL4M4Imputer(3), [Xs[0], Xs[1][:10]], None)
    with pytest.raises(TypeError, match="float32 or float64"):
        fit_streaming(ul4m4.UL4M4Imputer(3), [Xs[0].astype(np.float16)], None)
    with pytest.raises(TypeError, match="boolean"):
        fit_streaming(ul4m4.UL4M4Imputer(3), Xs, P.astype(np.float32))
    bad = P.astype(np.uint8)  # 0/1 integers are a mask (as in fit); other values are not
    bad[-1, 0] = 2
    with pytest.raises(ValueError, match=rf"only 0 and 1.*row {len(P) - 1}, modality 0 holds 2"):
        fit_streaming(ul4m4.UL4M4Imputer(3), Xs, bad, chunk_rows=7)
    with pytest.raises(ValueError, match="n_clusters=600"):
        fit_streaming(ul4m4.UL4M4Imputer(600), Xs, P)


def test_convergence_warning_like_fit():
    Xs, P = _data(n=800)
    init = initial_rows(Xs, P, 6)
    with pytest.warns(ul4m4.ConvergenceWarning):
        fit_streaming(ul4m4.UL4M4Imputer(6, init=init, max_iter=1, tol=0), Xs, P)


@pytest.mark.parametrize("completion", ["greedy", "soft"])
def test_transform_to_npy_on_memmap_equals_transform(tmp_path, completion):
    Xs, P = _data(n=2500, seed=8)
    imp = ul4m4.UL4M4Imputer(8, random_state=0, completion=completion).fit(Xs, mask=P)
    ref, ri, ru = imp.transform(Xs, mask=P, return_masks=True)
    mXs, mP = _save(tmp_path, Xs, P)
    seen = []
    out = tmp_path / "out"
    info = transform_to_npy(imp, mXs, mask=mP, out_dir=out, names=["t", "a", "v"], chunk_rows=333,
                            progress=lambda done, total, what: seen.append((done, total, what)))
    assert seen[-1] == (2500, 2500, "completion") and len(seen) == 8
    assert sorted(os.listdir(out)) == ["a.npy", "imputed_mask.npy", "t.npy", "unfilled_mask.npy", "v.npy"]
    for nm, r in zip(["t", "a", "v"], ref):
        got = np.load(out / f"{nm}.npy")
        assert got.dtype == r.dtype
        np.testing.assert_array_equal(got, r)
    np.testing.assert_array_equal(np.load(out / "imputed_mask.npy"), ri)
    np.testing.assert_array_equal(np.load(out / "unfilled_mask.npy"), ru)
    assert info["n_imputed"] == int(ri.sum()) and info["n_unfilled"] == int(ru.sum())
    # chunk iterator: same values
    got = [np.concatenate(parts) for parts in zip(*[o for _, _, o, _, _ in iter_transform(imp, mXs, mP,
                                                                                        chunk_rows=1000)])]
    for g, r in zip(got, ref):
        np.testing.assert_array_equal(g, r)


def test_chunked_completion_never_writes_the_callers_arrays(tmp_path):
    # Chunks read into buffers of ul4m4's own (files, memory maps) are completed in place;
    # chunks that are views of an in-memory array go to new arrays: the input stays as it was.
    Xs, P = _data(n=1500, seed=21)
    Xn = [np.where(P[:, m:m + 1], X, np.nan).astype(X.dtype) for m, X in enumerate(Xs)]
    imp = ul4m4.UL4M4Imputer(6, random_state=0).fit(Xn)
    ref = imp.transform(Xn)
    before = [x.copy() for x in Xn]
    mXs, _ = _save(tmp_path, Xn, P)
    sources = [Xn, mXs]
    torch = None
    try:
        import torch
    except ImportError:
        pass
    if torch is not None:
        sources.append([torch.from_numpy(x) for x in Xn])
    for src in sources:
        parts = list(iter_transform(imp, src, chunk_rows=400))
        for m in range(3):
            np.testing.assert_array_equal(np.concatenate([o[m] for _, _, o, _, _ in parts]), ref[m])
            for _, _, o, _, _ in parts:
                assert not np.shares_memory(o[m], Xn[m])
        for x, b in zip(Xn, before):
            np.testing.assert_array_equal(x, b)  # NaN slots still NaN: nothing written
        # transform_to_npy completes in place in its own read buffers: same guarantee
        out = tmp_path / f"npy{len(os.listdir(tmp_path))}"
        transform_to_npy(imp, src, out_dir=out, chunk_rows=400)
        for m in range(3):
            np.testing.assert_array_equal(np.load(out / f"m{m}.npy"), ref[m])
        for x, b in zip(Xn, before):
            np.testing.assert_array_equal(x, b)
    for m, x in enumerate(mXs):
        np.testing.assert_array_equal(np.load(tmp_path / f"in_{m}.npy"), before[m])


def test_transform_to_npy_nan_marked_and_slices_and_errors(tmp_path):
    Xs, P = _data(n=900, seed=9)
    Xn = [np.where(P[:, m:m + 1], X, np.nan).astype(X.dtype) for m, X in enumerate(Xs)]
    imp = ul4m4.UL4M4Imputer(5, random_state=0).fit(Xn)
    mXs, _ = _save(tmp_path, Xn, P)
    sl = [a[100:] for a in mXs]  # memmap slices: copied, pages released with madvise
    info = transform_to_npy(imp, sl, out_dir=tmp_path / "o", chunk_rows=128)
    ref = imp.transform([x[100:] for x in Xn])
    for m, r in enumerate(ref):
        np.testing.assert_array_equal(np.load(tmp_path / "o" / f"m{m}.npy"), r)
    assert info["n_samples"] == 800
    bad = [x.copy() for x in Xn]
    bad[0][555, :3] = np.nan
    bad[0][555, 3:] = 1.0
    with pytest.raises(ValueError, match="row 555 of modality 0 is partly NaN"):
        transform_to_npy(imp, bad, out_dir=tmp_path / "bad", chunk_rows=100)
    assert os.listdir(tmp_path / "bad") == []
    with pytest.raises(ValueError, match="fitted on 3"):
        transform_to_npy(imp, Xn[:2], out_dir=tmp_path / "bad")
    # refuses to overwrite an input file
    np.save(tmp_path / "m0.npy", Xn[0])
    ins = [np.load(tmp_path / "m0.npy", mmap_mode="r")] + Xn[1:]
    with pytest.raises(ValueError, match="input files"):
        transform_to_npy(imp, ins, out_dir=tmp_path)


def test_interrupted_write_leaves_no_file_under_final_name(tmp_path):
    Xs, P = _data(n=2000, seed=10)
    imp = ul4m4.UL4M4Imputer(4, random_state=0).fit(Xs, mask=P)
    out = tmp_path / "out"

    class Stop(KeyboardInterrupt):
        pass

    def progress(done, total, what):
        if done >= 1000:
            raise Stop()

    with pytest.raises(Stop):
        transform_to_npy(imp, Xs, mask=P, out_dir=out, chunk_rows=200, progress=progress)
    assert os.listdir(out) == []  # neither final nor temporary files
    # an earlier complete output is not touched by a failed run
    transform_to_npy(imp, Xs, mask=P, out_dir=out, chunk_rows=500)
    before = {p: os.path.getmtime(out / p) for p in os.listdir(out)}
    with pytest.raises(Stop):
        transform_to_npy(imp, Xs, mask=P, out_dir=out, chunk_rows=200, progress=progress)
    assert {p: os.path.getmtime(out / p) for p in os.listdir(out)} == before


def test_bounded_working_set(tmp_path):
    # a file-backed dataset of ~24 MiB completed in chunks of 250 rows (~0.6 MiB): Python
    # allocations stay within a few chunks, independent of N
    n, dims = 12000, (256, 128, 128)
    rng = np.random.default_rng(0)
    paths = []
    for m, d in enumerate(dims):
        p = tmp_path / f"x{m}.npy"
        a = np.lib.format.open_memmap(p, mode="w+", dtype=np.float32, shape=(n, d))
        for r0 in range(0, n, 3000):
            a[r0:r0 + 3000] = rng.standard_normal((min(3000, n - r0), d), dtype=np.float32)
        a.flush()
        del a
        paths.append(p)
    P = rng.random((n, 3)) < 0.6
    P[~P.any(1), 0] = True
    np.save(tmp_path / "mask.npy", P)
    Xs = [np.load(p, mmap_mode="r") for p in paths]
    mask = np.load(tmp_path / "mask.npy", mmap_mode="r")
    imp = ul4m4.UL4M4Imputer(8, random_state=0, max_iter=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit_streaming(imp, Xs, mask, chunk_rows=1000, init_rows=2000)
    chunk_rows = 250
    chunk_bytes = chunk_rows * sum(dims) * 4
    total = n * sum(dims) * 4
    tracemalloc.start()
    try:
        transform_to_npy(imp, Xs, mask=mask, out_dir=tmp_path / "out", chunk_rows=chunk_rows)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 10 * chunk_bytes + (1 << 20), (peak, chunk_bytes)
    assert peak < total / 4
    out = np.load(tmp_path / "out" / "m0.npy", mmap_mode="r")
    np.testing.assert_array_equal(out[P[:, 0]], Xs[0][P[:, 0]])


def test_zarr_and_h5py_like_sources(tmp_path):
    zarr = pytest.importorskip("zarr")
    Xs, P = _data(n=700, seed=12)
    zs = []
    for m, X in enumerate(Xs):
        z = zarr.open_array(str(tmp_path / f"z{m}.zarr"), mode="w", shape=X.shape, chunks=(100, X.shape[1]),
                            dtype=X.dtype)
        z[:] = X
        zs.append(z)
    init = initial_rows(Xs, P, 5)
    ref = ul4m4.UL4M4Imputer(5, init=init).fit(Xs, mask=P)
    got = fit_streaming(ul4m4.UL4M4Imputer(5, init=init), zs, P, chunk_rows=150)
    np.testing.assert_array_equal(got.labels_, ref.labels_)
    outofcore.transform_to_zarr(ref, zs, mask=P, out_path=tmp_path / "done.zarr", names=["a", "b", "c"],
                                chunk_rows=150)
    g = zarr.open_group(str(tmp_path / "done.zarr"), mode="r")
    for nm, r in zip("abc", ref.transform(Xs, mask=P)):
        np.testing.assert_array_equal(g[nm][:], r)
    with pytest.raises(FileExistsError):
        outofcore.transform_to_zarr(ref, zs, mask=P, out_path=tmp_path / "done.zarr")


def test_progress_bar_text():
    import io

    buf = io.StringIO()
    bar = Progress(1000, "impute", file=buf, enabled=True)
    bar.update(500, force=True)
    bar.update(1000)
    bar.close()
    text = buf.getvalue()
    assert "500/1,000 rows" in text and "1,000/1,000 rows" in text and "rows/s" in text and text.endswith("\n")
    quiet = io.StringIO()
    Progress(10, file=quiet, enabled=False).update(5)
    assert quiet.getvalue() == ""
    src = ChunkSource([np.zeros((10, 2), np.float32)])
    assert src.chunk_rows(None) == outofcore.DEFAULT_CHUNK_BYTES // 8 and src.n == 10


def test_progress_rate_of_a_new_stage_counts_from_its_start():
    """A stage's first report arrives after its first chunk; its rate counts from the
    previous report (or the bar's creation), not from that first report."""
    import io
    import time

    bar = Progress(enabled=True, file=io.StringIO())
    time.sleep(0.05)
    bar(100, 1000, "completion")  # first report of the first stage, 50 ms after the start
    assert bar.rate < 100 / 0.04
    time.sleep(0.05)
    bar(1000, 1000, "completion")
    time.sleep(0.05)
    bar(300, 3000, "statistics")  # a new stage, 50 ms after the previous report
    assert 300 / 0.2 < bar.rate < 300 / 0.04
