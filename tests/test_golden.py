"""The package against the golden vectors of an independent float64 implementation
(../shared/golden, see its README): labels, centre masks, n_iter and every mask exactly,
values to the README's float32 tolerances, in both completion modes."""
import numpy as np
import pytest

import ul4m4
from conftest import golden_files, load_golden

pytestmark = pytest.mark.filterwarnings("ignore::ul4m4.ConvergenceWarning")  # p05 stops at max_iter=3 by design

CASES = [p.stem for p in golden_files()] or ["<no golden vectors>"]


load = load_golden


def fit_case(g, dtype=np.float64, n_threads=1):
    M, K = int(g["M"]), int(g["K"])
    Xs = [g[f"X_{m}"].astype(dtype) for m in range(M)]
    init = ([g[f"init_C_{m}"] for m in range(M)], g["H0"])
    imp = ul4m4.UL4M4Imputer(K, init=init, max_iter=int(g["max_iter"]), tol=float(g["tol"]),
                             empty_rows=str(g["empty_rows"]), n_threads=n_threads)
    imp.fit(Xs, mask=g["P"])
    return imp, Xs


def check_completion(g, imp, Xs, P, prefix, tag, M, z_atol, dtype):
    """prefix: '' or 'test_'; tag: '' (hard), '_soft', '_soft16'."""
    mode = "greedy" if tag == "" else "soft"
    ts = float(g[f"{tag[1:]}_temperature_scale"]) if tag else 1.0
    out, imputed, unfilled = imp.transform(Xs, mask=P, return_masks=True, completion=mode, temperature_scale=ts)
    mk = (lambda s: f"test_{s}") if prefix else (lambda s: s)
    np.testing.assert_array_equal(imputed, g[mk(f"imputed{tag}")])
    np.testing.assert_array_equal(unfilled, g[mk(f"unfilled{tag}")])
    xkey = "Xtest_out" if prefix else "Xout"
    for m in range(M):
        exp = g[f"{xkey}{tag}_{m}"]
        assert out[m].dtype == dtype
        obs = P[:, m]
        # observed slots: bit-for-bit the input
        np.testing.assert_array_equal(out[m][obs], Xs[m][obs])
        # imputed slots: z-space tolerance, scaled by sigma in raw space
        sig = imp.scale_[m]
        dz = np.abs(out[m][~obs].astype(np.float64) - exp[~obs]) / sig
        tol = z_atol + z_atol * np.abs(exp[~obs] - imp.mean_[m]) / sig
        assert np.all(dz <= tol), f"modality {m}: max |dz| {dz.max() if dz.size else 0}"


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", CASES)
def test_golden_fit(name, dtype):
    g = load(name)
    M = int(g["M"])
    imp, Xs = fit_case(g, dtype)
    np.testing.assert_array_equal(imp.labels_, g["labels"])
    np.testing.assert_array_equal(imp.center_mask_, g["H"])
    assert imp.n_iter_ == int(g["n_iter"])
    rt = 1e-6 if dtype == np.float64 else 1e-4
    np.testing.assert_allclose(imp.inertia_, float(g["inertia"]), rtol=1e-4)
    for m in range(M):
        np.testing.assert_allclose(imp.mean_[m], g[f"mu_{m}"], rtol=rt, atol=1e-9)
        np.testing.assert_allclose(imp.scale_[m], g[f"sigma_{m}"], rtol=rt, atol=1e-9)
        C, Cg = imp.cluster_centers_[m], g[f"C_{m}"]
        np.testing.assert_array_equal(np.isnan(C), np.isnan(Cg))
        np.testing.assert_allclose(C[~np.isnan(Cg)], Cg[~np.isnan(Cg)], rtol=1e-4, atol=1e-4)
    if "Ptest" in g:
        Xt = [g[f"Xtest_{m}"].astype(dtype) for m in range(M)]
        np.testing.assert_array_equal(imp.predict(Xt, mask=g["Ptest"]), g["test_labels"])


@pytest.mark.parametrize("tag,z_atol", [("", 1e-4), ("_soft", 1e-3), ("_soft16", 1e-3)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", CASES)
def test_golden_completion(name, dtype, tag, z_atol):
    g = load(name)
    M = int(g["M"])
    imp, Xs = fit_case(g, dtype)
    check_completion(g, imp, Xs, g["P"], "", tag, M, z_atol, dtype)
    if "Ptest" in g:
        Xt = [g[f"Xtest_{m}"].astype(dtype) for m in range(M)]
        check_completion(g, imp, Xt, g["Ptest"], "test_", tag, M, z_atol, dtype)


@pytest.mark.parametrize("name", CASES)
def test_golden_thread_counts_bit_identical(name):
    g = load(name)
    M = int(g["M"])
    outs = []
    for nt in (1, 2, 3):
        imp, Xs = fit_case(g, np.float32, n_threads=nt)
        res = imp.transform(Xs, mask=g["P"], completion="soft")
        outs.append((imp.labels_, imp.cluster_centers_, imp.inertia_, res))
    for o in outs[1:]:
        np.testing.assert_array_equal(o[0], outs[0][0])
        assert o[2] == outs[0][2]
        for m in range(M):
            np.testing.assert_array_equal(o[1][m], outs[0][1][m])
            np.testing.assert_array_equal(o[3][m], outs[0][3][m])
