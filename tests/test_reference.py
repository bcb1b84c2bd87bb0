"""The numpy reference implementation (tests/reference.py) against the golden
vectors in /work/shared/golden, plus self-consistency checks of the reference
itself (greedy table form == authors' literal loop, contract corner cases).

Tolerances: the reference and the golden generator are both float64 and both
use correctly rounded per-modality sums, so agreement is at the 1e-13 level
(measured max 2.3e-13 relative, on soft16 outputs of p06); we use
rtol = atol = 1e-9 to stay robust to summation-order changes in numpy
(np.mean, np.median, the soft weighted sums) without hiding real bugs.
Labels, H, n_iter and every mask are compared exactly; observed slots bit for
bit.
"""

from __future__ import annotations

import functools
import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reference as R  # noqa: E402

from conftest import GOLDEN as GOLDEN_DIR  # noqa: E402  (../shared/golden or $UL4M4_SHARED/golden)
from conftest import golden_files, load_golden  # noqa: E402

GOLDEN = golden_files()
RTOL = 1e-9
ATOL = 1e-9

needs_golden = pytest.mark.skipif(
    not GOLDEN, reason=f"golden vectors not found in {GOLDEN_DIR} (expected *.npz)"
)
case_params = pytest.mark.parametrize(
    "path", GOLDEN or [None], ids=[p.stem for p in GOLDEN] or ["no-golden"]
)


_load = load_golden


@functools.lru_cache(maxsize=None)
def _run(path):
    return R.run_case(_load(path))


def _assert_float_close(got, want, key, rtol=RTOL, atol=ATOL):
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, f"{key}: shape {got.shape} != {want.shape}"
    assert np.array_equal(np.isnan(got), np.isnan(want)), f"{key}: NaN pattern"
    assert np.array_equal(np.isposinf(got), np.isposinf(want)), f"{key}: +inf pattern"
    assert np.array_equal(np.isneginf(got), np.isneginf(want)), f"{key}: -inf pattern"
    fin = np.isfinite(want)
    np.testing.assert_allclose(got[fin], want[fin], rtol=rtol, atol=atol, err_msg=key)


def _assert_exact(got, want, key):
    got = np.asarray(got)
    want = np.asarray(want)
    assert got.shape == want.shape, f"{key}: shape {got.shape} != {want.shape}"
    assert got.dtype.kind == want.dtype.kind or (
        got.dtype.kind in "iu" and want.dtype.kind in "iu"
    ), f"{key}: dtype {got.dtype} vs {want.dtype}"
    assert np.array_equal(got, want), f"{key}: differs in {np.sum(got != want)} entries"


def _compare_keys(out, gold, keys):
    for k in keys:
        assert k in gold, f"golden file lacks {k}"
        assert k in out, f"reference did not produce {k}"
        if gold[k].dtype.kind in "biu":
            _assert_exact(out[k], gold[k], k)
        else:
            _assert_float_close(out[k], gold[k], k)


def _M(gold):
    return int(gold["M"])


# --------------------------------------------------------------------------
# golden vectors
# --------------------------------------------------------------------------
@needs_golden
@case_params
def test_golden_fit(path):
    gold, out = _load(path), _run(path)
    M = _M(gold)
    keys = ["labels", "H", "n_iter", "inertia"]
    for m in range(M):
        keys += [f"mu_{m}", f"sigma_{m}", f"init_Cz_{m}", f"C_{m}", f"C_raw_{m}"]
    _compare_keys(out, gold, keys)
    assert int(out["n_iter"]) <= int(gold["max_iter"])


@needs_golden
@case_params
@pytest.mark.parametrize("prefix", ["", "test_"])
def test_golden_hard(path, prefix):
    gold, out = _load(path), _run(path)
    if prefix and "Ptest" not in gold:
        pytest.skip("case has no new-data rows")
    M = _M(gold)
    xo, zo = ("Xtest_out", "Ztest_out") if prefix else ("Xout", "Zout")
    keys = [prefix + "imputed", prefix + "unfilled", prefix + "scores"]
    keys += [f"{xo}_{m}" for m in range(M)] + [f"{zo}_{m}" for m in range(M)]
    if prefix:
        keys.append("test_labels")
    _compare_keys(out, gold, keys)


@needs_golden
@case_params
@pytest.mark.parametrize("tag", ["soft", "soft16"])
@pytest.mark.parametrize("prefix", ["", "test_"])
def test_golden_soft(path, tag, prefix):
    gold, out = _load(path), _run(path)
    if prefix and "Ptest" not in gold:
        pytest.skip("case has no new-data rows")
    M = _M(gold)
    xo, zo = ("Xtest_out", "Ztest_out") if prefix else ("Xout", "Zout")
    keys = [f"{prefix}imputed_{tag}", f"{prefix}unfilled_{tag}", f"{prefix}T_{tag}"]
    keys += [f"{xo}_{tag}_{m}" for m in range(M)] + [f"{zo}_{tag}_{m}" for m in range(M)]
    _compare_keys(out, gold, keys)


@needs_golden
@case_params
def test_golden_output_invariants(path):
    """Observed slots bit for bit; masks disjoint with union ~P; unfilled = mu."""
    gold, out = _load(path), _run(path)
    M = _M(gold)
    sets = [("", "X", "P", "Xout", "Zout")]
    if "Ptest" in gold:
        sets.append(("test_", "Xtest", "Ptest", "Xtest_out", "Ztest_out"))
    for prefix, xin, pkey, xo, zo in sets:
        P = gold[pkey]
        for tag in ["", "_soft", "_soft16"]:
            imp = out[f"{prefix}imputed{tag}"]
            unf = out[f"{prefix}unfilled{tag}"]
            assert not (imp & unf).any()
            assert np.array_equal(imp | unf, ~P)
            for m in range(M):
                X = gold[f"{xin}_{m}"]
                Xo = out[f"{xo}{tag}_{m}"]
                pm = P[:, m]
                assert np.array_equal(Xo[pm].view(np.uint64), X[pm].view(np.uint64))
                assert np.array_equal(
                    Xo[pm].view(np.uint64), gold[f"{xo}{tag}_{m}"][pm].view(np.uint64)
                )
                rows = unf[:, m]
                mu = gold[f"mu_{m}"]
                assert np.array_equal(Xo[rows], np.broadcast_to(mu, Xo[rows].shape))
                assert np.all(out[f"{zo}{tag}_{m}"][rows] == 0.0)
                assert np.isfinite(Xo).all()
        # soft unfilled depends on presence only
        assert np.array_equal(out[f"{prefix}unfilled_soft"], out[f"{prefix}unfilled_soft16"])


@needs_golden
def test_golden_empty_rows_case_behaviour():
    """Rows that observe nothing: label -1, every slot unfilled at the mean."""
    cases = [p for p in GOLDEN if str(_load(p)["empty_rows"]) == "mean"]
    if not cases:
        pytest.skip("no golden case with empty_rows == 'mean'")
    for path in cases:
        gold, out = _load(path), _run(path)
        empty = ~gold["P"].any(axis=1)
        assert empty.any()
        assert np.all(out["labels"][empty] == -1)
        assert out["unfilled"][empty].all() and out["unfilled_soft"][empty].all()
        assert np.isnan(out["scores"][empty]).all() and np.isnan(out["T_soft"][empty]).all()
        # and the default (rejecting) setting refuses the case
        d = dict(gold)
        d["empty_rows"] = np.array("error")
        with pytest.raises(ValueError):
            R.run_case(d)


@needs_golden
@case_params
def test_golden_non_empty_cases_pass_with_default(path):
    gold = _load(path)
    if str(gold["empty_rows"]) != "error":
        pytest.skip("case needs empty_rows='mean'")
    assert gold["P"].any(axis=1).all()
    if "Ptest" in gold:
        assert gold["Ptest"].any(axis=1).all()


# --------------------------------------------------------------------------
# greedy table form == authors' literal loop
# --------------------------------------------------------------------------
def _assert_greedy_agree(Zs, P, Cs, H):
    a = R.greedy_complete(Zs, P, Cs, H)
    b = R.greedy_complete_literal(Zs, P, Cs, H)
    for m in range(len(Zs)):
        assert np.array_equal(a[0][m], b[0][m], equal_nan=True), f"Zout_{m}"
    assert np.array_equal(a[1], b[1]), "imputed"
    assert np.array_equal(a[2], b[2]), "unfilled"
    # bit-identical scores (this is what makes exact ties reproducible)
    assert np.array_equal(a[3], b[3], equal_nan=True), "scores"
    return a


@needs_golden
@case_params
def test_greedy_literal_agrees_on_golden(path):
    gold, out = _load(path), _run(path)
    M = _M(gold)
    mus = [out[f"mu_{m}"] for m in range(M)]
    sigmas = [out[f"sigma_{m}"] for m in range(M)]
    Cs = [out[f"C_{m}"] for m in range(M)]
    H = out["H"]
    sets = [("X", "P")] + ([("Xtest", "Ptest")] if "Ptest" in gold else [])
    for xin, pkey in sets:
        P = gold[pkey]
        Zs = R.normalise([gold[f"{xin}_{m}"] for m in range(M)], P, mus, sigmas)
        _assert_greedy_agree(Zs, P, Cs, H)


def _random_problem(seed, integer=False):
    rng = np.random.default_rng(seed)
    M = int(rng.integers(1, 5))
    K = int(rng.integers(1, 7))
    N = int(rng.integers(5, 40))
    widths = [int(rng.integers(1, 5)) for _ in range(M)]
    P = rng.random((N, M)) < rng.uniform(0.3, 0.9)
    P[rng.random(N) < 0.05] = False  # a few rows observing nothing
    H = rng.random((K, M)) < rng.uniform(0.3, 0.9)
    H[~H.any(axis=1), int(rng.integers(M))] = True
    gen = (lambda s: rng.integers(-2, 3, size=s).astype(float)) if integer else (
        lambda s: rng.standard_normal(s)
    )
    Zs, Cs = [], []
    for m, d in enumerate(widths):
        Z = gen((N, d))
        Z[~P[:, m]] = np.nan
        C = gen((K, d))
        if K > 1 and rng.random() < 0.5:  # duplicated centre values -> more ties
            C[1] = C[0]
        C[~H[:, m]] = np.nan
        Zs.append(Z)
        Cs.append(C)
    return Zs, P, Cs, H


@pytest.mark.parametrize("seed", range(60))
def test_greedy_literal_agrees_on_random(seed):
    Zs, P, Cs, H = _random_problem(seed, integer=seed % 2 == 1)
    Zo, imp, unf, sc = _assert_greedy_agree(Zs, P, Cs, H)
    assert not (imp & unf).any()
    assert np.array_equal(imp | unf, ~P)
    for m in range(len(Zs)):
        assert np.isfinite(Zo[m]).all()
        # observed slots untouched, imputed slots are one centre's values
        pm = P[:, m]
        assert np.array_equal(Zo[m][pm], Zs[m][pm])
        for i in np.nonzero(imp[:, m])[0]:
            assert any(np.array_equal(Zo[m][i], Cs[m][j]) for j in np.nonzero(H[:, m])[0])


def test_random_problems_contain_exact_ties():
    """The integer-valued problems really exercise the tie rule."""
    n_tie_rows = 0
    for seed in range(1, 60, 2):
        Zs, P, Cs, H = _random_problem(seed, integer=True)
        sc = R.greedy_complete(Zs, P, Cs, H)[3]
        for r in sc:
            fin = r[np.isfinite(r)]
            n_tie_rows += len(np.unique(fin)) < fin.size
    assert n_tie_rows > 10


def test_structural_tie_goes_to_lowest_j():
    # Row observes modality 0 only.  Centre 0 carries only modality 0 (anchored,
    # best pair for everyone, carries none of the imputed modality 1), centres 1
    # and 2 carry modality 1 with different values: their candidates score
    # exactly the same (only the observed term against centre 0 counts), so the
    # tie goes to j = 1.
    Zs = [np.array([[0.0, 0.0]]), np.array([[np.nan]])]
    P = np.array([[True, False]])
    Cs = [np.array([[0.1, 0.0], [5.0, 5.0], [7.0, 7.0]]), np.array([[np.nan], [1.0], [2.0]])]
    H = np.array([[True, False], [True, True], [True, True]])
    Zo, imp, unf, sc = _assert_greedy_agree(Zs, P, Cs, H)
    assert sc[0, 1] == sc[0, 2] == sc[0, 0]
    assert Zo[1][0, 0] == 1.0 and imp[0, 1] and not unf.any()


def test_anchored_pairs_rule():
    # Row observes modality 0.  Centre 0 carries only modality 1 (shares nothing
    # with the row); without the rule its candidate would score 0 against
    # itself.  Centre 1 carries both.  With the rule, candidate 0 pairs with
    # centre 1 only.
    Zs = [np.array([[0.0]]), np.array([[np.nan]])]
    P = np.array([[True, False]])
    Cs = [np.array([[np.nan], [3.0]]), np.array([[10.0], [-1.0]])]
    H = np.array([[False, True], [True, True]])
    Zo, imp, unf, sc = _assert_greedy_agree(Zs, P, Cs, H)
    # cand 0 = (0, 10) vs c1 = (3, -1): (9 + 121) / 2 ; cand 1 = (0, -1) vs c1: 9/2
    assert sc[0, 0] == math.sqrt(65.0) and sc[0, 1] == math.sqrt(4.5)
    assert Zo[1][0, 0] == -1.0


def test_no_anchored_centre_is_unfilled():
    Zs = [np.array([[1.0]]), np.array([[np.nan]])]
    P = np.array([[True, False]])
    Cs = [np.array([[np.nan]]), np.array([[4.0]])]
    H = np.array([[False, True]])
    Zo, imp, unf, sc = _assert_greedy_agree(Zs, P, Cs, H)
    assert unf[0, 1] and not imp.any() and Zo[1][0, 0] == 0.0 and np.isinf(sc).all()
    Zs_, imp_s, unf_s, T = R.soft_complete(Zs, P, Cs, H)
    assert unf_s[0, 1] and Zs_[1][0, 0] == 0.0 and np.isnan(T[0])


# --------------------------------------------------------------------------
# contract corner cases of the reference itself
# --------------------------------------------------------------------------
def test_stats_sigma_floor_float32_and_garbage():
    X = np.array([[1.0, 2.0], [1.0, 4.0], [1e30, np.inf]], dtype=np.float32)
    P = np.array([[True], [True], [False]])
    mus, sigmas = R.stats([X], P)
    assert mus[0].dtype == np.float64
    assert np.array_equal(mus[0], [1.0, 3.0]) and np.array_equal(sigmas[0], [1.0, 1.0])
    Z = R.normalise([X], P, mus, sigmas)[0]
    assert np.isnan(Z[2]).all() and np.array_equal(Z[:2], [[0.0, -1.0], [0.0, 1.0]])
    with pytest.raises(ValueError):
        R.stats([X], np.zeros((3, 1), dtype=bool))


def test_partial_distance_definition():
    a = [np.array([1.0, 1.0]), np.array([2.0])]
    b = [np.array([0.0, 3.0]), np.array([5.0])]
    assert R.partial_dist2(a, [True, True], b, [True, True]) == ((1 + 4) / 2 + 9) / 2
    assert R.partial_dist2(a, [True, False], b, [True, True]) == 2.5
    assert R.partial_dist2(a, [True, False], b, [False, True]) == math.inf


def test_assign_ties_and_unassignable():
    Zs = [np.array([[0.0], [np.nan]]), np.array([[np.nan], [1.0]])]
    P = np.array([[True, False], [False, True]])
    Cs = [np.array([[1.0], [-1.0]]), np.array([[np.nan], [np.nan]])]
    H = np.array([[True, False], [True, False]])
    assert R.assign(Zs, P, Cs, H).tolist() == [0, -1]
    d2 = R.dist2_matrix(Zs, P, Cs, H)
    assert d2[0].tolist() == [1.0, 1.0] and np.isinf(d2[1]).all()


def test_update_loses_gains_and_keeps_empty():
    Zs = [np.array([[1.0], [3.0], [9.0]]), np.array([[np.nan], [np.nan], [4.0]])]
    P = np.array([[True, False], [True, False], [True, True]])
    Cs = [np.array([[0.0], [8.0], [50.0]]), np.array([[7.0], [np.nan], [6.0]])]
    H = np.array([[True, True], [True, False], [True, True]])
    labels = np.array([0, 0, 1])
    C, Hn = R.update(Zs, P, labels, Cs, H)
    # centre 0: members lack modality 1 -> lost; centre 1 gains modality 1;
    # centre 2 has no member -> unchanged
    assert Hn.tolist() == [[True, False], [True, True], [True, True]]
    assert C[0][0, 0] == 2.0 and np.isnan(C[1][0, 0])
    assert C[0][1, 0] == 9.0 and C[1][1, 0] == 4.0
    assert C[0][2, 0] == 50.0 and C[1][2, 0] == 6.0


def test_kmeans_loop_counts_and_tol():
    rng = np.random.default_rng(3)
    Z = np.concatenate([rng.normal(-3, 1, (30, 2)), rng.normal(3, 1, (30, 2))])
    P = np.ones((60, 1), dtype=bool)
    C0 = [Z[[0, 1]].copy()]
    H0 = np.ones((2, 1), dtype=bool)
    full = R.kmeans([Z], P, C0, H0, max_iter=100, tol=0.0)
    assert np.array_equal(full["labels"], np.repeat([0, 1], 30))
    one = R.kmeans([Z], P, C0, H0, max_iter=1, tol=0.0)
    assert one["n_iter"] == 1
    # labels are always the assignment to the returned centres
    for r in (full, one):
        assert np.array_equal(r["labels"], R.assign([Z], P, r["Cs"], r["H"]))
        d2 = R.dist2_matrix([Z], P, r["Cs"], r["H"])
        assert math.isclose(r["inertia"], d2[np.arange(60), r["labels"]].sum(), rel_tol=1e-12)
    huge = R.kmeans([Z], P, C0, H0, max_iter=100, tol=1e9)
    assert huge["n_iter"] == 1
    zero = R.kmeans([Z], P, C0, H0, max_iter=0, tol=0.0)
    assert zero["n_iter"] == 0 and np.array_equal(zero["Cs"][0], C0[0])


def test_kmeanspp_contract():
    rng = np.random.default_rng(0)
    Zs, P, _, _ = _random_problem(11)
    n_elig = int(P.any(axis=1).sum())
    K = min(4, n_elig)
    Cs, H = R.kmeanspp(Zs, P, K, rng)
    assert H.shape == (K, P.shape[1]) and H.any(axis=1).all()
    for m, C in enumerate(Cs):
        assert np.isnan(C[~H[:, m]]).all() and np.isfinite(C[H[:, m]]).all()
    # each centre is one eligible row, with that row's presence
    for j in range(K):
        hits = [
            i for i in range(P.shape[0])
            if np.array_equal(P[i], H[j])
            and all(np.array_equal(Zs[m][i], Cs[m][j], equal_nan=True) for m in range(len(Zs)))
        ]
        assert hits
    with pytest.raises(ValueError):
        R.kmeanspp(Zs, P, n_elig + 1, rng)
    # rows sharing nothing with the chosen centres are taken first
    Zd = [np.array([[0.0], [np.nan], [0.1]]), np.array([[np.nan], [0.0], [np.nan]])]
    Pd = np.array([[True, False], [False, True], [True, False]])
    for s in range(10):
        _, Hd = R.kmeanspp(Zd, Pd, 2, np.random.default_rng(s))
        assert sorted(map(tuple, Hd.tolist())) == [(False, True), (True, False)]
    # duplicates: all weights 0 -> uniform among rows not yet chosen
    Zdup = [np.zeros((3, 2))]
    Pdup = np.ones((3, 1), dtype=bool)
    Cdup, _ = R.kmeanspp(Zdup, Pdup, 3, np.random.default_rng(1))
    assert np.array_equal(Cdup[0], np.zeros((3, 2)))


def test_soft_median_floor_and_explicit_temperature():
    # row observes modality 0, misses 1; four centres, D_A^2 = 0, 1, 4, 9
    Zs = [np.array([[0.0]]), np.array([[np.nan]])]
    P = np.array([[True, False]])
    Cs = [np.array([[0.0], [1.0], [2.0], [3.0]]), np.array([[0.0], [10.0], [20.0], [30.0]])]
    H = np.ones((4, 2), dtype=bool)
    _, _, _, T = R.soft_complete(Zs, P, Cs, H)
    assert T[0] == 2.5  # mean of the two middle values, like numpy
    Zo, imp, unf, T = R.soft_complete(Zs, P, Cs, H, temperature_scale=0.5)
    w = np.exp(-np.array([0.0, 1.0, 4.0, 9.0]) / 1.25)
    assert T[0] == 1.25 and imp[0, 1]
    assert math.isclose(Zo[1][0, 0], float((w / w.sum()) @ [0.0, 10.0, 20.0, 30.0]), rel_tol=1e-12)
    _, _, _, T = R.soft_complete(Zs, P, Cs, H, temperature_scale=0.0)
    assert T[0] == 1e-12
    Zo, _, _, T = R.soft_complete(Zs, P, Cs, H, temperature=1e-300)
    assert T[0] == 1e-300 and Zo[1][0, 0] == 0.0  # no floor; nearest centre wins
    with pytest.raises(ValueError):
        R.soft_complete(Zs, P, Cs, H, temperature=0.0)
