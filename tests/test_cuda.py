"""The CUDA path (``device='cuda'`` / CUDA tensors) against the CPU engine.

Tests marked ``gpu`` need the CUDA module, a visible GPU and a CUDA build of PyTorch; they
skip with ``ul4m4.cuda_available()``'s reason elsewhere (CI has no GPU). The others check
what must hold on every machine: the package imports, ``cuda_available()`` explains itself,
``device`` is validated, and ``device='cuda'`` without a GPU is an error, never a silent
CPU fallback.

CPU and GPU must give the same labels, presence sets, n_iter and imputed / unfilled masks,
and values to 1e-4 relative (float32 sums are associated differently on the two).
"""
import os
import warnings

import numpy as np
import pytest

import ul4m4
from conftest import golden_files, load_golden
from ul4m4 import UL4M4Imputer

CUDA_OK, CUDA_WHY = ul4m4.cuda_available()
_SKIP = CUDA_WHY if CUDA_WHY.startswith("no CUDA GPU visible") else f"CUDA path unavailable: {CUDA_WHY}"
gpu = pytest.mark.skipif(not CUDA_OK, reason=_SKIP)

CASES = [p.stem for p in golden_files()] or ["<no golden vectors>"]


# --------------------------------------------------------------------------- without a GPU
def test_package_imports_and_reports_cuda():
    ok, why = ul4m4.cuda_available()
    assert isinstance(ok, bool) and isinstance(why, str)
    if ok:
        assert why == ""
    else:
        assert why, "cuda_available() must say why the CUDA path is unavailable"
        # the reason says how to fix it
        assert any(w in why for w in ("rebuild", "driver", "nvidia-smi", "pip install torch", "CUDA build of torch"))


def test_cuda_module_imports_when_built():
    try:
        from ul4m4 import _cuda
    except ImportError:
        pytest.skip("this build has no CUDA module (UL4M4_CUDA=OFF or no nvcc at build time)")
    n, why = _cuda.probe()
    assert isinstance(n, int) and n >= 0
    assert (n > 0) == (why == "")
    assert _cuda.model_bytes(4, [3, 5], True) > _cuda.model_bytes(4, [3, 5], False) > 0
    assert _cuda.kmeans_workspace(100, 4, [3, 5], 1 << 20) > 0
    assert _cuda.complete_workspace(100, 4, [3, 5], True, 1 << 20) > 0


@pytest.mark.skipif(CUDA_OK, reason="a GPU is visible here")
def test_cuda_errors_become_runtime_errors_without_a_gpu():
    """Without a driver / GPU every engine call fails cleanly with the CUDA error string
    (before any pointer is touched), instead of crashing the interpreter."""
    try:
        from ul4m4 import _cuda
    except ImportError:
        pytest.skip("this build has no CUDA module")
    with pytest.raises(RuntimeError, match=r"CUDA error cuda\w+: "):
        _cuda.device_name(0)
    with pytest.raises(RuntimeError, match=r"CUDA error cuda\w+: "):
        _cuda.scan([(8, 4, 3, 3, "float32")], 16, 4, 0, (0, 0, 256, 256))


def _data(n=40, dims=(3, 5), seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    Xs = [rng.normal(size=(n, d)).astype(dtype) for d in dims]
    P = rng.random((n, len(dims))) < 0.7
    P[:, 0] = True
    return Xs, P


@pytest.mark.parametrize("bad", ["gpu", "CUDA:x", "tpu", 0, None, "cuda:", "cuda:-1"])
def test_device_validation(bad):
    Xs, P = _data()
    with pytest.raises(ValueError, match=r"device must be 'auto', 'cpu', 'cuda' or 'cuda:<index>'"):
        UL4M4Imputer(2, device=bad, random_state=0).fit(Xs, mask=P)
    imp = UL4M4Imputer(2, random_state=0).fit(Xs, mask=P)
    imp.set_params(device=bad)  # stored (scikit-learn's convention), checked when used
    with pytest.raises(ValueError, match=r"device must be"):
        imp.transform(Xs, mask=P)
    with pytest.raises(ValueError, match=r"device must be"):
        imp.predict(Xs, mask=P)


def test_device_is_a_parameter():
    imp = UL4M4Imputer(3, device="cpu")
    assert imp.get_params()["device"] == "cpu"
    assert "device='cpu'" in repr(imp)
    assert UL4M4Imputer(3).device == "auto"


def test_device_cpu_and_auto_on_host_data_are_the_cpu_engine(tmp_path):
    Xs, P = _data()
    a = UL4M4Imputer(3, random_state=0, device="cpu").fit(Xs, mask=P)
    b = UL4M4Imputer(3, random_state=0).fit(Xs, mask=P)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    for x, y in zip(a.transform(Xs, mask=P), b.transform(Xs, mask=P)):
        np.testing.assert_array_equal(x, y)
    a.save(tmp_path / "m.npz")
    assert UL4M4Imputer.load(tmp_path / "m.npz").device == "cpu"


@pytest.mark.skipif(CUDA_OK, reason="the CUDA path is available here")
def test_device_cuda_without_gpu_is_a_clear_error():
    Xs, P = _data()
    with pytest.raises(RuntimeError, match=r"device='cuda' needs the CUDA path, which is not available: ") as ei:
        UL4M4Imputer(2, device="cuda", random_state=0).fit(Xs, mask=P)
    assert CUDA_WHY in str(ei.value)
    imp = UL4M4Imputer(2, random_state=0).fit(Xs, mask=P)  # fitted on the CPU
    for dev in ("cuda", "cuda:0"):
        imp.set_params(device=dev)
        with pytest.raises(RuntimeError, match=r"needs the CUDA path"):
            imp.transform(Xs, mask=P)
        with pytest.raises(RuntimeError, match=r"needs the CUDA path"):
            imp.predict(Xs, mask=P)


# --------------------------------------------------------------------------- GPU helpers
def _torch():
    return pytest.importorskip("torch")


def _cuda_list(Xs, dev="cuda"):
    torch = _torch()
    return [torch.from_numpy(np.ascontiguousarray(X)).to(dev) for X in Xs]


def _np(x):
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def _close(gpu_vals, cpu_vals, scale, mean, rtol=1e-4):
    """|gpu - cpu| <= rtol * (sigma + |cpu - mu|) per slot (float32 precision in z-space)."""
    g = _np(gpu_vals).astype(np.float64)
    c = np.asarray(cpu_vals, dtype=np.float64)
    tol = rtol * (scale + np.abs(c - mean))
    assert np.all(np.abs(g - c) <= tol), f"max |gpu - cpu| / tol = {np.max(np.abs(g - c) / tol):.3g}"


def _compare_fits(cpu, gp, atol=1e-4):
    np.testing.assert_array_equal(gp.labels_, cpu.labels_)
    np.testing.assert_array_equal(gp.center_mask_, cpu.center_mask_)
    assert gp.n_iter_ == cpu.n_iter_
    np.testing.assert_allclose(gp.inertia_, cpu.inertia_, rtol=1e-4)
    for m in range(len(cpu.mean_)):
        np.testing.assert_allclose(gp.mean_[m], cpu.mean_[m], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(gp.scale_[m], cpu.scale_[m], rtol=1e-9, atol=1e-12)
        C, Cg = cpu.cluster_centers_[m], gp.cluster_centers_[m]
        np.testing.assert_array_equal(np.isnan(C), np.isnan(Cg))
        np.testing.assert_allclose(Cg[~np.isnan(C)], C[~np.isnan(C)], rtol=1e-4, atol=atol)


def _compare_completion(imp_cpu, imp_gpu, Xs_np, Xs_gpu, P, mode, ts=1.0):
    out_c, ic, uc = imp_cpu.transform(Xs_np, mask=P, return_masks=True, completion=mode, temperature_scale=ts)
    torch = _torch()
    Pg = torch.from_numpy(P).to(Xs_gpu[0].device)
    out_g, ig, ug = imp_gpu.transform(Xs_gpu, mask=Pg, return_masks=True, completion=mode, temperature_scale=ts)
    assert ig.is_cuda and ug.is_cuda and ig.dtype == torch.bool
    np.testing.assert_array_equal(_np(ig), ic)
    np.testing.assert_array_equal(_np(ug), uc)
    for m, (g, c) in enumerate(zip(out_g, out_c)):
        assert g.is_cuda and g.device == Xs_gpu[m].device and g.dtype == Xs_gpu[m].dtype
        obs = P[:, m]
        np.testing.assert_array_equal(_np(g)[obs], Xs_np[m][obs])  # observed: bit for bit
        _close(_np(g)[~obs], c[~obs], imp_cpu.scale_[m], imp_cpu.mean_[m])


_load = load_golden


def _golden_fit(g, dtype, device, Xs):
    M, K = int(g["M"]), int(g["K"])
    init = ([g[f"init_C_{m}"] for m in range(M)], g["H0"])
    imp = UL4M4Imputer(K, init=init, max_iter=int(g["max_iter"]), tol=float(g["tol"]),
                       empty_rows=str(g["empty_rows"]), n_threads=1, device=device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ul4m4.ConvergenceWarning)
        torch = _torch() if device == "cuda" else None
        mask = torch.from_numpy(g["P"]).cuda() if device == "cuda" else g["P"]
        imp.fit(Xs, mask=mask)
    return imp


# --------------------------------------------------------------------------- GPU: golden
@gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", CASES)
def test_golden_cpu_vs_cuda(name, dtype):
    g = _load(name)
    M = int(g["M"])
    Xs = [g[f"X_{m}"].astype(dtype) for m in range(M)]
    cpu = _golden_fit(g, dtype, "cpu", Xs)
    Xg = _cuda_list(Xs)
    gp = _golden_fit(g, dtype, "cuda", Xg)
    _compare_fits(cpu, gp)
    # and against the golden vectors themselves
    np.testing.assert_array_equal(gp.labels_, g["labels"])
    np.testing.assert_array_equal(gp.center_mask_, g["H"])
    assert gp.n_iter_ == int(g["n_iter"])
    for mode, ts in (("greedy", 1.0), ("soft", 1.0), ("soft", 1 / 16)):
        _compare_completion(cpu, gp, Xs, Xg, g["P"], mode, ts)
        if "Ptest" in g:
            Xt = [g[f"Xtest_{m}"].astype(dtype) for m in range(M)]
            _compare_completion(cpu, gp, Xt, _cuda_list(Xt), g["Ptest"], mode, ts)
    if "Ptest" in g:
        Xt = [g[f"Xtest_{m}"].astype(dtype) for m in range(M)]
        torch = _torch()
        lab = gp.predict(_cuda_list(Xt), mask=torch.from_numpy(g["Ptest"]).cuda())
        assert lab.is_cuda and lab.dtype == torch.int32
        np.testing.assert_array_equal(_np(lab), g["test_labels"])


# --------------------------------------------------------------------------- GPU: random data
def _random_problem(seed, n, dims, K, p_missing, dtype=np.float32, k_blobs=None):
    rng = np.random.default_rng(seed)
    D = sum(dims)
    kb = k_blobs or max(2, K // 2)
    cent = rng.normal(scale=3, size=(kb, D))
    X = cent[rng.integers(kb, size=n)] + rng.normal(size=(n, D))
    X = X * rng.uniform(0.5, 4, size=D) + rng.normal(size=D)
    offs = np.concatenate([[0], np.cumsum(dims)])
    Xs = [np.ascontiguousarray(X[:, offs[m]:offs[m + 1]]).astype(dtype) for m in range(len(dims))]
    P = rng.random((n, len(dims))) >= p_missing
    P[~P.any(axis=1), 0] = True
    # explicit initial centres (raw space) from rows, some of them partial
    rows = rng.choice(n, size=K, replace=False)
    C = [A[rows].astype(np.float64) for A in Xs]
    H = P[rows].copy()
    return Xs, P, (C, H)


RANDOM = [
    # seed, n, dims, K, p_missing
    (0, 500, (7,), 5, 0.0),
    (1, 800, (33, 5), 9, 0.3),
    (2, 1200, (64, 17, 3), 16, 0.45),
    (3, 700, (1, 40, 96, 2), 70, 0.5),     # K > 64, widths around the 32-wide tiles
    (4, 3000, (5, 3), 1100, 0.3),          # K > 1024
    (5, 300, tuple(range(1, 11)), 12, 0.5),  # M = 10
]


@gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", RANDOM, ids=[f"n{c[1]}-M{len(c[2])}-K{c[3]}" for c in RANDOM])
def test_random_cpu_vs_cuda(case, dtype):
    seed, n, dims, K, pm = case
    Xs, P, init = _random_problem(seed, n, dims, K, pm, dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ul4m4.ConvergenceWarning)
        cpu = UL4M4Imputer(K, init=init, max_iter=50, tol=0.0, n_threads=1).fit(Xs, mask=P)
        torch = _torch()
        Xg = _cuda_list(Xs)
        gp = UL4M4Imputer(K, init=init, max_iter=50, tol=0.0, device="cuda").fit(Xg, mask=torch.from_numpy(P).cuda())
    _compare_fits(cpu, gp)
    for mode in ("greedy", "soft"):
        _compare_completion(cpu, gp, Xs, Xg, P, mode)
    Xt, Pt, _ = _random_problem(seed + 100, 257, dims, K, pm, dtype)
    for mode in ("greedy", "soft"):
        _compare_completion(cpu, gp, Xt, _cuda_list(Xt), Pt, mode)
    np.testing.assert_array_equal(_np(gp.predict(_cuda_list(Xt), mask=torch.from_numpy(Pt).cuda())),
                                  cpu.predict(Xt, mask=Pt))


@gpu
def test_single_rows_and_nan_marking():
    torch = _torch()
    Xs, P, init = _random_problem(7, 200, (6, 4), 4, 0.3)
    for m, X in enumerate(Xs):
        X[~P[:, m]] = np.nan
    cpu = UL4M4Imputer(4, init=init, n_threads=1).fit(Xs)
    gp = UL4M4Imputer(4, init=init).fit(_cuda_list(Xs))  # presence from NaN marking on the device
    _compare_fits(cpu, gp)
    for i in (0, 5, 199):  # N = 1 transforms
        one = [X[i:i + 1] for X in Xs]
        oc, ic, _ = cpu.transform(one, return_masks=True)
        og, ig, _ = gp.transform(_cuda_list(one), return_masks=True)
        np.testing.assert_array_equal(_np(ig), ic)
        for m in range(2):
            np.testing.assert_allclose(_np(og[m]), oc[m], rtol=1e-4, atol=1e-4 * cpu.scale_[m].max())
    # N = 1, K = 1 fit
    one = [X[:1] for X in Xs]
    g1 = UL4M4Imputer(1, device="cuda").fit(_cuda_list(one))
    c1 = UL4M4Imputer(1).fit(one)
    np.testing.assert_array_equal(g1.labels_, c1.labels_)
    _ = torch


# --------------------------------------------------------------------------- GPU: API
@gpu
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cuda_in_cuda_out_no_input_copy(dtype):
    torch = _torch()
    Xs, P, init = _random_problem(11, 400, (8, 5), 6, 0.3, np.dtype(dtype))
    Xg = _cuda_list(Xs)
    Pg = torch.from_numpy(P).cuda()
    before = [x.clone() for x in Xg]
    ptrs = [x.data_ptr() for x in Xg]
    imp = UL4M4Imputer(6, init=init).fit(Xg, mask=Pg)  # device='auto' -> CUDA
    prep = ul4m4._gpu.prepare(Xg, Pg, None, "auto")
    assert [t.data_ptr() for t in prep.Xs] == ptrs, "contiguous inputs must not be copied"
    out, imputed, unfilled = imp.transform(Xg, mask=Pg, return_masks=True)
    assert isinstance(out, list)
    for o, x, b, p in zip(out, Xg, before, ptrs):
        assert o.is_cuda and o.device == x.device and o.dtype == x.dtype and o.shape == x.shape
        assert o.data_ptr() != p
        assert x.data_ptr() == p and torch.equal(x, b), "inputs must be left untouched"
    assert imputed.device == Xg[0].device and unfilled.device == Xg[0].device
    assert tuple(ul4m4._gpu.prepare(tuple(Xg), Pg, None, "auto").Xs[0].shape) == tuple(Xg[0].shape)
    assert isinstance(imp.transform(tuple(Xg), mask=Pg), tuple)
    # a dense CUDA tensor: column blocks used in place, dense CUDA output
    dense = torch.cat(Xg, dim=1)
    impd = UL4M4Imputer(6, init=init, modality_dims=(8, 5)).fit(dense, mask=Pg)
    prep = ul4m4._gpu.prepare(dense, Pg, (8, 5), "auto")
    assert prep.Xs[0].data_ptr() == dense.data_ptr()
    od = impd.transform(dense, mask=Pg)
    assert od.is_cuda and od.shape == dense.shape and od.dtype == dense.dtype
    np.testing.assert_array_equal(_np(od), _np(torch.cat(imp.transform(Xg, mask=Pg), dim=1)))
    # non-contiguous rows: converted on the device, same results
    nc = [x.t().contiguous().t() for x in Xg]
    for a, b in zip(imp.transform(nc, mask=Pg), imp.transform(Xg, mask=Pg)):
        assert torch.equal(a, b)


@gpu
def test_out_in_place_on_cuda():
    torch = _torch()
    Xs, P, init = _random_problem(12, 300, (8, 5), 5, 0.4)
    Xg = _cuda_list(Xs)
    Pg = torch.from_numpy(P).cuda()
    imp = UL4M4Imputer(5, init=init).fit(Xg, mask=Pg)
    ref = imp.transform(Xg, mask=Pg)
    bufs = [torch.empty_like(x) for x in Xg]
    got = imp.transform(Xg, mask=Pg, out=bufs)
    assert got is bufs
    for a, b in zip(bufs, ref):
        assert torch.equal(a, b)
    work = [x.clone() for x in Xg]
    imp.transform(work, mask=Pg, out=work)  # fills the missing slots in place
    for a, b in zip(work, ref):
        assert torch.equal(a, b)


@gpu
def test_deterministic_runs_and_chunking(monkeypatch):
    torch = _torch()
    Xs, P, init = _random_problem(13, 5000, (40, 24, 3), 20, 0.45)
    Xg = _cuda_list(Xs)
    Pg = torch.from_numpy(P).cuda()

    def run():
        imp = UL4M4Imputer(20, init=init, max_iter=30, tol=0.0).fit(Xg, mask=Pg)
        return imp, imp.transform(Xg, mask=Pg), imp.transform(Xg, mask=Pg, completion="soft")

    a, b = run(), run()
    monkeypatch.setenv("UL4M4_CUDA_CHUNK_MB", "1")  # many small chunks: the same bits
    c = run()
    for r in (b, c):
        np.testing.assert_array_equal(r[0].labels_, a[0].labels_)
        assert r[0].inertia_ == a[0].inertia_
        for m in range(3):
            np.testing.assert_array_equal(r[0].cluster_centers_[m], a[0].cluster_centers_[m])
            assert torch.equal(r[1][m], a[1][m]) and torch.equal(r[2][m], a[2][m])
    # k-means++ on the device: reproducible for a seed
    k1 = UL4M4Imputer(20, random_state=3, n_init=2, max_iter=20).fit(Xg, mask=Pg)
    k2 = UL4M4Imputer(20, random_state=3, n_init=2, max_iter=20).fit(Xg, mask=Pg)
    np.testing.assert_array_equal(k1.labels_, k2.labels_)
    assert k1.inertia_ == k2.inertia_
    assert k1.labels_.min() >= 0 and k1.labels_.max() < 20


@gpu
def test_fit_on_one_device_transform_on_the_other():
    torch = _torch()
    Xs, P, init = _random_problem(14, 600, (9, 6), 7, 0.35)
    Xg, Pg = _cuda_list(Xs), torch.from_numpy(P).cuda()
    g = UL4M4Imputer(7, init=init).fit(Xg, mask=Pg)
    c = UL4M4Imputer(7, init=init, n_threads=1).fit(Xs, mask=P)
    # GPU model, CPU transform (numpy in, numpy out) vs CPU model on the GPU
    oc, ic, uc = g.transform(Xs, mask=P, return_masks=True)
    assert isinstance(oc[0], np.ndarray)
    og, ig, ug = c.transform(Xg, mask=Pg, return_masks=True)
    assert og[0].is_cuda
    np.testing.assert_array_equal(ic, _np(ig))
    np.testing.assert_array_equal(uc, _np(ug))
    for m in range(2):
        _close(og[m][~Pg[:, m]], oc[m][~P[:, m]], c.scale_[m], c.mean_[m])
    # device='cuda' with host inputs: copied there and back, host containers out
    h = UL4M4Imputer(7, init=init, device="cuda").fit(Xs, mask=P)
    _compare_fits(c, h)
    oh = h.transform(Xs, mask=P)
    assert isinstance(oh[0], np.ndarray)
    tc = h.transform([torch.from_numpy(X) for X in Xs], mask=torch.from_numpy(P))
    assert isinstance(tc[0], torch.Tensor) and not tc[0].is_cuda
    # device='cpu' refuses CUDA tensors instead of copying them
    with pytest.raises(ValueError, match=r"device='cpu'"):
        UL4M4Imputer(7, init=init, device="cpu").fit(Xg, mask=Pg)
    # saved / pickled models work on both
    import pickle

    g2 = pickle.loads(pickle.dumps(g))
    for a, b in zip(g2.transform(Xg, mask=Pg), g.transform(Xg, mask=Pg)):
        assert torch.equal(a, b)


@gpu
def test_cuda_validation_errors_match_the_cpu():
    torch = _torch()
    Xs, P, init = _random_problem(15, 120, (4, 3, 5), 3, 0.3, np.float64)
    imp = UL4M4Imputer(3, init=init).fit(_cuda_list(Xs), mask=torch.from_numpy(P).cuda())

    def both(exc, match, fn):
        with pytest.raises(exc, match=match):
            fn("cpu")
        with pytest.raises(exc, match=match):
            fn("cuda")

    conv = {"cpu": lambda Z: Z, "cuda": _cuda_list}
    mconv = {"cpu": lambda Q: Q, "cuda": lambda Q: torch.from_numpy(Q).cuda()}
    # NaN / inf in an observed slot, at fit and transform
    i = int(np.flatnonzero(P[:, 1])[3])
    bad = [X.copy() for X in Xs]
    bad[1][i, 2] = np.inf
    both(ValueError, rf"NaN or inf in an observed slot: row {i} of modality 1",
         lambda d: UL4M4Imputer(3, init=init, device=d).fit(conv[d](bad), mask=mconv[d](P)))
    both(ValueError, rf"NaN or inf in an observed slot: row {i} of modality 1",
         lambda d: imp.set_params(device=d).transform(conv[d](bad), mask=mconv[d](P)))
    both(ValueError, rf"NaN or inf in an observed slot: row {i} of modality 1",
         lambda d: imp.set_params(device=d).predict(conv[d](bad), mask=mconv[d](P)))
    imp.set_params(device="auto")
    # partly NaN without a mask
    nanned = [X.copy() for X in Xs]
    for m, X in enumerate(nanned):
        X[~P[:, m]] = np.nan
    j = int(np.flatnonzero(P[:, 2])[2])
    nanned[2][j, 1] = np.nan
    both(ValueError, rf"row {j} of modality 2 is partly NaN \(1 of 5 values\)",
         lambda d: UL4M4Imputer(3, init=init, device=d).fit(conv[d](nanned)))
    # rows with no observed modality
    Pe = P.copy()
    Pe[11] = False
    both(ValueError, r"1 row\(s\) observe no modality \(first: row 11\)",
         lambda d: UL4M4Imputer(3, init=init, device=d).fit(conv[d](Xs), mask=mconv[d](Pe)))
    # modality never observed
    Pn = P.copy()
    Pn[:, 0] = True
    Pn[:, 2] = False
    both(ValueError, r"modality 2 has no observed row",
         lambda d: UL4M4Imputer(2, device=d, random_state=0).fit(conv[d](Xs), mask=mconv[d](Pn)))
    # shapes and dtypes
    both(ValueError, r"modality 1 has 119 rows but modality 0 has 120",
         lambda d: UL4M4Imputer(2, device=d).fit(conv[d]([Xs[0], Xs[1][:-1], Xs[2]])))
    both(ValueError, r"mask has shape", lambda d: UL4M4Imputer(2, device=d).fit(conv[d](Xs), mask=mconv[d](P[:-1])))
    both(TypeError, r"mask must be a boolean array",
         lambda d: UL4M4Imputer(2, device=d).fit(conv[d](Xs), mask=mconv[d](P.astype(np.uint8))))
    both(ValueError, r"modality 2 has width 4 but the model was fitted with 5",
         lambda d: imp.set_params(device=d).transform(conv[d]([Xs[0], Xs[1], Xs[2][:, :4]])))
    imp.set_params(device="auto")
    with pytest.raises(TypeError, match=r"dtype int64"):
        imp.transform([torch.zeros((5, 4), dtype=torch.int64, device="cuda")] + _cuda_list([X[:5] for X in Xs[1:]]))
    with pytest.raises(ValueError, match=r"n_clusters=200 is larger than the 120 rows"):
        UL4M4Imputer(200, device="cuda", random_state=0).fit(_cuda_list(Xs), mask=torch.from_numpy(P).cuda())


@gpu
def test_callback_and_verbose_on_cuda(capsys):
    torch = _torch()
    Xs, P, init = _random_problem(16, 500, (6, 4), 6, 0.3)
    seen = []
    imp = UL4M4Imputer(6, init=init, tol=0.0, verbose=1).fit(
        _cuda_list(Xs), mask=torch.from_numpy(P).cuda(), callback=lambda *a: seen.append(a))
    assert len(seen) == imp.n_iter_ == len(imp.history_) and "[ul4m4] iter" in capsys.readouterr().out
    stop = UL4M4Imputer(6, init=init, tol=0.0).fit(_cuda_list(Xs), mask=torch.from_numpy(P).cuda(),
                                                    callback=lambda *a: False)
    assert stop.n_iter_ == 1


@gpu
def test_kmeanspp_on_cuda_is_valid_and_usually_the_cpus():
    """k-means++ on the device draws the CPU's random numbers with the CPU's rules; it may
    pick other rows where float32 rounding moves a cumulative weight across a draw, so only
    validity is asserted (and agreement reported)."""
    torch = _torch()
    Xs, P, _ = _random_problem(17, 2000, (12, 7), 10, 0.4)
    g = UL4M4Imputer(10, random_state=5, max_iter=0).fit(_cuda_list(Xs), mask=torch.from_numpy(P).cuda())
    c = UL4M4Imputer(10, random_state=5, max_iter=0, n_threads=1).fit(Xs, mask=P)
    assert g.center_mask_.any(axis=1).all()
    for m in range(2):
        Cm = g.cluster_centers_[m]
        assert np.isfinite(Cm[g.center_mask_[:, m]]).all() and np.isnan(Cm[~g.center_mask_[:, m]]).all()
    same = all(np.allclose(np.nan_to_num(a), np.nan_to_num(b), rtol=1e-5, atol=1e-5)
               for a, b in zip(g.cluster_centers_, c.cluster_centers_))
    print(f"k-means++ seeds identical to the CPU's: {same}")


@gpu
def test_workspace_env_is_honoured(monkeypatch):
    monkeypatch.setenv("UL4M4_CUDA_CHUNK_MB", "2")
    assert ul4m4._gpu._chunk_budget() == 2 << 20
    monkeypatch.delenv("UL4M4_CUDA_CHUNK_MB")
    assert ul4m4._gpu._chunk_budget() == 256 << 20
    assert os.environ.get("UL4M4_CUDA_CHUNK_MB") is None
