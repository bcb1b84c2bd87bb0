"""algorithm='bounded' (exact bounded Lloyd, docs/bounded-lloyd.md) against algorithm='lloyd':
the same labels, centres (bit for bit), inertia and n_iter on every golden case and on
random data with missing modalities, for any thread count; and it does skip work."""
import math
import warnings

import numpy as np
import pytest

import ul4m4
from conftest import GOLDEN, golden_files

pytestmark = pytest.mark.filterwarnings("ignore::ul4m4.ConvergenceWarning")

CASES = [p.stem for p in golden_files()] or ["<no golden vectors>"]


def assert_same_fit(a, b):
    np.testing.assert_array_equal(a.labels_, b.labels_)
    assert a.n_iter_ == b.n_iter_
    assert a.inertia_ == b.inertia_
    np.testing.assert_array_equal(a.center_mask_, b.center_mask_)
    for ca, cb in zip(a.cluster_centers_, b.cluster_centers_):
        np.testing.assert_array_equal(ca, cb)  # bit for bit (NaN where absent on both)
    assert [h["n_changed"] for h in a.history_] == [h["n_changed"] for h in b.history_]
    assert [h["max_shift"] for h in a.history_] == [h["max_shift"] for h in b.history_]


def clustered(n, dims, k0, missing, seed, sep=2.0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    Xs = [rng.standard_normal((n, d)) for d in dims]
    lab = rng.integers(0, k0, n)
    for X, d in zip(Xs, dims):
        X += sep * rng.standard_normal((k0, d))[lab]
    P = rng.random((n, len(dims))) >= missing
    P[~P.any(axis=1), 0] = True
    return [X.astype(dtype) for X in Xs], P


def fit(Xs, P, K, algorithm, **kw):
    imp = ul4m4.UL4M4Imputer(K, algorithm=algorithm, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return imp.fit(Xs, mask=P)


@pytest.mark.parametrize("n_threads", [1, 3])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", CASES)
def test_golden_bounded_equals_lloyd(name, dtype, n_threads):
    if not golden_files():
        pytest.skip(f"golden vectors not found at {GOLDEN} (../shared is absent)")
    f = np.load(GOLDEN / f"{name}.npz", allow_pickle=False)
    g = {k: f[k] for k in f.files}
    M, K = int(g["M"]), int(g["K"])
    Xs = [g[f"X_{m}"].astype(dtype) for m in range(M)]
    init = ([g[f"init_C_{m}"] for m in range(M)], g["H0"])
    kw = dict(init=init, max_iter=int(g["max_iter"]), tol=float(g["tol"]), empty_rows=str(g["empty_rows"]),
              n_threads=n_threads)
    lloyd = fit(Xs, g["P"], K, "lloyd", **kw)
    bounded = fit(Xs, g["P"], K, "bounded", **kw)
    assert_same_fit(lloyd, bounded)
    np.testing.assert_array_equal(bounded.labels_, g["labels"])
    assert bounded.n_iter_ == int(g["n_iter"])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("K", [1, 3, 17])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_missing_bounded_equals_lloyd(seed, K, dtype):
    Xs, P = clustered(1500, [33, 20, 7], 6, 0.4, seed, dtype=dtype)
    kw = dict(random_state=seed, max_iter=60, tol=0.0, chunk_size=64)
    lloyd = fit(Xs, P, K, "lloyd", n_threads=1, **kw)
    fits = [fit(Xs, P, K, "bounded", n_threads=nt, **kw) for nt in (1, 2, 3)]
    for b in fits:
        assert_same_fit(lloyd, b)
        assert [h["skipped"] for h in b.history_] == [h["skipped"] for h in fits[0].history_]


def test_bounded_skips_work_and_reports_it():
    Xs, P = clustered(4000, [48, 32, 16], 8, 0.3, 5, sep=3.0)
    kw = dict(random_state=0, max_iter=100, tol=0.0, n_threads=2)
    lloyd = fit(Xs, P, 8, "lloyd", **kw)
    bounded = fit(Xs, P, 8, "bounded", **kw)
    assert_same_fit(lloyd, bounded)
    assert all(h["skipped"] == 0.0 for h in lloyd.history_)
    assert bounded.n_iter_ >= 2
    assert max(h["skipped"] for h in bounded.history_) > 0.5
    assert all(h["skipped"] <= 1.0 for h in bounded.history_)
    # Iteration inertia is only known for the last iteration (skipped rows are not scored).
    assert all(math.isnan(h["inertia"]) for h in bounded.history_[:-1])
    assert bounded.history_[-1]["inertia"] == lloyd.history_[-1]["inertia"] == bounded.inertia_


def test_presence_changes_reset_bounds():
    # Partial initial centres whose clusters gain modalities (and clusters that lose one):
    # the centres' presence sets change during the fit.
    Xs, P = clustered(2000, [12, 9, 5, 3], 5, 0.5, 7, sep=1.5)
    rng = np.random.default_rng(3)
    K = 9
    rows = rng.choice(len(P), K, replace=False)
    H = P[rows].copy()
    H[:3] = False
    H[:3, 0] = True  # three single-modality centres
    init = ([X[rows] for X in Xs], H)
    kw = dict(init=init, max_iter=50, tol=0.0)
    lloyd = fit(Xs, P, K, "lloyd", n_threads=1, **kw)
    assert not np.array_equal(lloyd.center_mask_, H)  # the test exercises a presence change
    for nt in (1, 2):
        assert_same_fit(lloyd, fit(Xs, P, K, "bounded", n_threads=nt, **kw))


def test_many_presence_sets_fallback():
    # 8 modalities with random masks: more distinct presence sets than the per-group
    # shift tables take, so the single conservative table is used.
    Xs, P = clustered(3000, [4] * 8, 6, 0.5, 11)
    assert len({tuple(r) for r in P}) > 64
    kw = dict(random_state=1, max_iter=40, tol=0.0)
    lloyd = fit(Xs, P, 10, "lloyd", n_threads=2, **kw)
    bounded = fit(Xs, P, 10, "bounded", n_threads=2, **kw)
    assert_same_fit(lloyd, bounded)


def test_near_ties_and_duplicates():
    # Duplicated rows and centres initialised on duplicates: exact ties, settled by the
    # float64 re-scoring in both algorithms.
    Xs, P = clustered(300, [5, 4], 3, 0.3, 2, sep=0.5, dtype=np.float64)
    Xs = [np.concatenate([X, X, X]) for X in Xs]
    P = np.concatenate([P, P, P])
    init = ([X[[0, 300, 1, 301, 2]] for X in Xs], P[[0, 300, 1, 301, 2]])
    kw = dict(init=init, max_iter=30, tol=0.0)
    assert_same_fit(fit(Xs, P, 5, "lloyd", **kw), fit(Xs, P, 5, "bounded", **kw))


def test_n_init_and_tol_stop():
    Xs, P = clustered(1200, [16, 8], 5, 0.3, 4)
    for kw in (dict(n_init=3, random_state=2, max_iter=50, tol=0.0), dict(random_state=0, tol=1e-2),
               dict(random_state=0, max_iter=0), dict(random_state=0, max_iter=1)):
        assert_same_fit(fit(Xs, P, 6, "lloyd", **kw), fit(Xs, P, 6, "bounded", **kw))


def test_auto_picks_bounded_when_rows_are_wide():
    Xs, P = clustered(800, [8, 8], 4, 0.2, 0)
    imp = fit(Xs, P, 4, "auto", random_state=0)  # 4 K <= 16 columns: bounded
    assert any(h["skipped"] > 0 for h in imp.history_)
    narrow = fit(Xs, P, 5, "auto", random_state=0)  # 4 K > 16: lloyd (iteration inertia known)
    assert all(h["skipped"] == 0 and not math.isnan(h["inertia"]) for h in narrow.history_)
    assert ul4m4.UL4M4Imputer().algorithm == "auto"


@pytest.mark.parametrize("bad", ["elkan", "", None, 1])
def test_algorithm_validation(bad):
    Xs, P = clustered(50, [3], 2, 0.0, 0)
    with pytest.raises(ValueError, match="algorithm"):
        ul4m4.UL4M4Imputer(2, algorithm=bad).fit(Xs, mask=P)


@pytest.mark.parametrize("level", ul4m4.available_simd_levels())
def test_bounded_equals_lloyd_at_every_simd_level(level):
    # The explicit distances of the bounded pass must match the kernel's table bit for bit
    # at every level (a pair's dot product may not depend on the tile that computes it).
    Xs, P = clustered(1500, [40, 24, 9], 6, 0.4, 3)
    original = ul4m4.simd_level()
    try:
        ul4m4.set_simd_level(level)
        kw = dict(random_state=0, max_iter=40, tol=0.0, n_threads=2)
        lloyd = fit(Xs, P, 7, "lloyd", **kw)
        bounded = fit(Xs, P, 7, "bounded", **kw)
    finally:
        ul4m4.set_simd_level(original)
    assert_same_fit(lloyd, bounded)
    assert max(h["skipped"] for h in bounded.history_) > 0.3
