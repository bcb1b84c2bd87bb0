"""Tests of ul4m4.masking (missingness protocols)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ul4m4 import masking
from ul4m4.masking import (complex_mask, default_patterns, make_mask, mask_stats,
                           missing_rate_mask, parse_config, standard_mask)

PAPER_COMPLEX = [20, 20, 20, 10, 10, 10, 10]
SEEDS = st.integers(min_value=0, max_value=2**32 - 1)


def pattern_counts(mask, patterns):
    m = mask.shape[1]
    out = []
    for p in patterns:
        row = np.zeros(m, dtype=bool)
        row[list(p)] = True
        out.append(int((mask == row).all(axis=1).sum()))
    return out


# ---------------------------------------------------------------- patterns
def test_default_patterns_paper_order():
    assert default_patterns(1) == [(0,)]
    assert default_patterns(2) == [(0, 1), (0,), (1,)]
    # all, t, a, v, ta, tv, av
    assert default_patterns(3) == [(0, 1, 2), (0,), (1,), (2,), (0, 1), (0, 2), (1, 2)]


@pytest.mark.parametrize("m", range(1, 7))
def test_default_patterns_are_all_nonempty_subsets(m):
    pats = default_patterns(m)
    assert len(pats) == 2**m - 1
    assert len(set(pats)) == len(pats)
    assert pats[0] == tuple(range(m))
    sizes = [len(p) for p in pats[1:]]
    assert sizes == sorted(sizes)


# ---------------------------------------------------------------- standard
@pytest.mark.parametrize("m", range(1, 7))
def test_standard_shape_dtype_determinism(m):
    probs = np.linspace(0.2, 1.0, m)
    a = standard_mask(500, probs, seed=3)
    b = standard_mask(500, probs, seed=3)
    c = standard_mask(500, probs, seed=4)
    assert a.shape == (500, m) and a.dtype == np.bool_
    np.testing.assert_array_equal(a, b)
    if m > 1:
        assert not np.array_equal(a, c)
    assert a.any(axis=1).all()


def test_standard_generator_seed_equivalent_to_int():
    a = standard_mask(100, [0.5, 0.5], seed=np.random.default_rng(11))
    b = standard_mask(100, [0.5, 0.5], seed=11)
    np.testing.assert_array_equal(a, b)
    g = np.random.default_rng(5)
    first, second = standard_mask(50, [0.5] * 3, seed=g), standard_mask(50, [0.5] * 3, seed=g)
    assert not np.array_equal(first, second)  # the Generator is advanced


def test_standard_probability_one_and_zero():
    mask = standard_mask(1000, [0.0, 1.0, 0.3], seed=0)
    assert mask[:, 1].all()
    assert not mask[:, 0].any()


def test_standard_realised_rates():
    n = 20000
    probs = [0.7, 1.0, 0.7]
    mask = standard_mask(n, probs, seed=1)
    rates = mask.mean(axis=0)
    tol = 4 * math.sqrt(0.25 / n)
    np.testing.assert_allclose(rates, probs, atol=tol)
    # two independent modalities: joint rate is the product
    assert abs((mask[:, 0] & mask[:, 2]).mean() - 0.49) < tol


def test_standard_at_least_one_proportional_fill():
    n = 40000
    p = np.array([0.2, 0.6])
    mask = standard_mask(n, p, seed=2)
    assert mask.any(axis=1).all()
    empty = (1 - p).prod()
    expected = p + empty * p / p.sum()
    np.testing.assert_allclose(mask.mean(axis=0), expected, atol=4 * math.sqrt(0.25 / n))


def test_standard_at_least_one_false_allows_empty_rows():
    mask = standard_mask(1000, [0.1, 0.1], seed=0, at_least_one=False)
    assert (~mask.any(axis=1)).sum() > 700


def test_standard_all_zero_probs_uniform_single():
    mask = standard_mask(3000, [0.0, 0.0, 0.0], seed=0)
    assert (mask.sum(axis=1) == 1).all()
    np.testing.assert_allclose(mask.mean(axis=0), 1 / 3, atol=0.04)
    assert not standard_mask(10, [0, 0], seed=0, at_least_one=False).any()


def test_standard_n_zero():
    assert standard_mask(0, [0.5, 0.5], seed=0).shape == (0, 2)


@pytest.mark.parametrize("probs,exc", [
    ([0.5, 1.2], ValueError), ([-0.1, 0.5], ValueError), ([], ValueError),
    ([[0.5, 0.5]], ValueError), ([float("nan")], ValueError), ([70, 100, 70], ValueError),
    ("70_100_70", TypeError),
])
def test_standard_bad_probs(probs, exc):
    with pytest.raises(exc):
        standard_mask(10, probs)


@pytest.mark.parametrize("n,exc", [(-1, ValueError), (2.5, TypeError), (True, TypeError)])
def test_bad_n(n, exc):
    with pytest.raises(exc):
        standard_mask(n, [0.5])
    with pytest.raises(exc):
        complex_mask(n, [60, 20, 20])
    with pytest.raises(exc):
        missing_rate_mask(n, 2, 0.3)


def test_numpy_int_n_accepted():
    assert standard_mask(np.int64(7), [0.5], seed=0).shape == (7, 1)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 300), seed=SEEDS,
       probs=st.lists(st.floats(0, 1), min_size=1, max_size=6))
def test_standard_properties(n, seed, probs):
    a = standard_mask(n, probs, seed=seed)
    assert a.shape == (n, len(probs))
    assert a.any(axis=1).all() or n == 0
    np.testing.assert_array_equal(a, standard_mask(n, probs, seed=seed))
    p = np.asarray(probs)
    assert not a[:, p == 0].any() or p.sum() == 0
    assert a[:, p == 1].all()


# ---------------------------------------------------------------- complex
def test_complex_paper_config_exact_counts():
    for n in (100, 1000, 2000):
        mask = complex_mask(n, PAPER_COMPLEX, seed=0)
        assert mask.shape == (n, 3)
        counts = pattern_counts(mask, default_patterns(3))
        assert counts == [n * p // 100 for p in PAPER_COMPLEX]


def test_complex_pattern_meaning():
    # all, t, a, v, ta, tv, av with only "tv" present
    mask = complex_mask(5, [0, 0, 0, 0, 0, 100, 0], seed=0)
    np.testing.assert_array_equal(mask, np.tile([True, False, True], (5, 1)))


def test_complex_two_modalities():
    mask = complex_mask(1000, [60, 20, 20], seed=1)
    assert pattern_counts(mask, [(0, 1), (0,), (1,)]) == [600, 200, 200]


def test_complex_fractions_same_as_percent():
    a = complex_mask(333, PAPER_COMPLEX, seed=9)
    b = complex_mask(333, [p / 100 for p in PAPER_COMPLEX], seed=9)
    np.testing.assert_array_equal(a, b)


def test_complex_largest_remainder():
    # n=10, thirds: quotas 3.33.. each -> 4, 3, 3 (tie to the lowest index)
    mask = complex_mask(10, [1 / 3, 1 / 3, 1 / 3], seed=0)
    assert pattern_counts(mask, default_patterns(2)) == [4, 3, 3]
    # n=7 with 20*3, 10*4 percent: quotas 1.4,1.4,1.4,.7,.7,.7,.7 -> floors 3, 4 left
    mask = complex_mask(7, PAPER_COMPLEX, seed=0)
    assert pattern_counts(mask, default_patterns(3)) == [1, 1, 1, 1, 1, 1, 1]
    mask = complex_mask(1, PAPER_COMPLEX, seed=0)
    assert pattern_counts(mask, default_patterns(3)) == [1, 0, 0, 0, 0, 0, 0]


def test_complex_permutation_is_seeded():
    a = complex_mask(200, PAPER_COMPLEX, seed=1)
    b = complex_mask(200, PAPER_COMPLEX, seed=1)
    c = complex_mask(200, PAPER_COMPLEX, seed=2)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # rows are shuffled, not grouped by pattern
    assert not np.array_equal(a, np.sort(a, axis=0))


def test_complex_explicit_patterns():
    mask = complex_mask(10, [50, 50], patterns=[(0, 2), (1,)], seed=0)
    assert mask.shape == (10, 3)
    assert pattern_counts(mask, [(0, 2), (1,)]) == [5, 5]
    arr = np.array([[1, 1, 0, 0], [0, 0, 0, 1]], dtype=bool)
    mask = complex_mask(4, [0.25, 0.75], patterns=arr, seed=0)
    assert mask.shape == (4, 4)
    assert pattern_counts(mask, [(0, 1), (3,)]) == [1, 3]
    mask = complex_mask(4, [1.0], patterns=[(1,)], n_modalities=4, seed=0)
    assert mask.shape == (4, 4) and mask[:, 1].all() and mask.sum() == 4


@pytest.mark.parametrize("kwargs", [
    dict(pattern_probs=[50, 50, 10]),                       # sums to 110
    dict(pattern_probs=[0.5, 0.4, 0.2]),                    # sums to 1.1
    dict(pattern_probs=[120, -20, 0]),                      # negative
    dict(pattern_probs=[20, 20, 20, 20, 20]),               # 5 is not 2**M - 1
    dict(pattern_probs=[60, 20, 20], n_modalities=3),       # 3 patterns fit M=2
    dict(pattern_probs=[50, 50], patterns=[(0,), (1,), (0, 1)]),
    dict(pattern_probs=[50, 50], patterns=[(0,), ()]),      # empty pattern
    dict(pattern_probs=[50, 50], patterns=[(0,), (0,)]),    # duplicate
    dict(pattern_probs=[50, 50], patterns=[(0, 0), (1,)]),  # repeated index
    dict(pattern_probs=[50, 50], patterns=[(0,), (2,)], n_modalities=2),
    dict(pattern_probs=[0, 0, 0]),
])
def test_complex_errors(kwargs):
    with pytest.raises(ValueError):
        complex_mask(10, **kwargs)


@pytest.mark.parametrize("m", range(1, 7))
def test_complex_default_all_m(m):
    rng = np.random.default_rng(m)
    w = rng.integers(0, 10, size=2**m - 1).astype(float)
    w[0] += 1
    w = w / w.sum()
    n = 997
    mask = complex_mask(n, w, seed=0)
    assert mask.shape == (n, m)
    assert mask.any(axis=1).all()
    counts = np.array(pattern_counts(mask, default_patterns(m)))
    assert counts.sum() == n
    assert np.all(np.abs(counts - n * w) < 1)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 500), seed=SEEDS, m=st.integers(1, 5), data=st.data())
def test_complex_properties(n, seed, m, data):
    raw = data.draw(st.lists(st.integers(0, 50), min_size=2**m - 1, max_size=2**m - 1)
                    .filter(lambda xs: sum(xs) > 0))
    w = np.asarray(raw, float) / sum(raw)
    mask = complex_mask(n, w, seed=seed)
    assert mask.shape == (n, m)
    np.testing.assert_array_equal(mask, complex_mask(n, w, seed=seed))
    counts = np.array(pattern_counts(mask, default_patterns(m)))
    assert counts.sum() == n
    assert np.all(np.abs(counts - n * w) < 1)
    # largest remainder: a pattern never gets fewer than floor(quota)
    assert np.all(counts >= np.floor(n * w + 1e-9))


# ---------------------------------------------------------------- missing rate
@pytest.mark.parametrize("m", range(2, 7))
@pytest.mark.parametrize("rate", [0.0, 0.1, 0.3, 0.5])
def test_missing_rate_exact(m, rate):
    n = 2000
    mask = missing_rate_mask(n, m, rate, seed=0)
    assert mask.shape == (n, m)
    assert mask.any(axis=1).all()
    missing = n * m - int(mask.sum())
    assert missing == round(rate * n * m)


@pytest.mark.parametrize("m,rate", [(3, 0.3), (3, 0.5), (3, 0.66), (2, 0.3), (2, 0.45),
                                    (4, 0.7), (6, 0.8)])
def test_missing_rate_calibrated_without_exact(m, rate):
    n = 20000
    mask = missing_rate_mask(n, m, rate, seed=1, exact=False)
    assert mask.any(axis=1).all()
    assert abs((1 - mask.mean()) - rate) < 4 * math.sqrt(0.25 / (n * m)) + 1e-3


def test_missing_rate_demo_rates():
    for rate in (0.3, 0.5, 0.66):
        mask = missing_rate_mask(2000, 3, rate, seed=7)
        assert abs((1 - mask.mean()) - rate) <= 1 / (2 * 2000 * 3)
        assert mask.any(axis=1).all()
        # uniform over modalities
        np.testing.assert_allclose(mask.mean(axis=0), 1 - rate, atol=0.05)


def test_missing_rate_maximum():
    mask = missing_rate_mask(100, 3, 2 / 3, seed=0)
    assert (mask.sum(axis=1) == 1).all()
    mask = missing_rate_mask(100, 2, 0.5, seed=0)
    assert (mask.sum(axis=1) == 1).all()
    with pytest.raises(ValueError, match="cannot be reached"):
        missing_rate_mask(10, 3, 0.7)
    with pytest.raises(ValueError, match="cannot be reached"):
        missing_rate_mask(10, 1, 0.1)
    assert missing_rate_mask(10, 1, 0.0, seed=0).all()


@pytest.mark.parametrize("rate", [-0.1, float("nan"), float("inf")])
def test_missing_rate_bad_rate(rate):
    with pytest.raises(ValueError):
        missing_rate_mask(10, 3, rate)


def test_missing_rate_determinism():
    a = missing_rate_mask(300, 4, 0.4, seed=5)
    np.testing.assert_array_equal(a, missing_rate_mask(300, 4, 0.4, seed=5))
    assert not np.array_equal(a, missing_rate_mask(300, 4, 0.4, seed=6))
    assert missing_rate_mask(0, 3, 0.3, seed=0).shape == (0, 3)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 300), m=st.integers(1, 6), seed=SEEDS, frac=st.floats(0, 1))
def test_missing_rate_properties(n, m, seed, frac):
    rate = frac * (m - 1) / m
    mask = missing_rate_mask(n, m, rate, seed=seed)
    assert mask.shape == (n, m)
    assert n == 0 or mask.any(axis=1).all()
    assert n * m - int(mask.sum()) == min(round(rate * n * m), n * (m - 1))
    np.testing.assert_array_equal(mask, missing_rate_mask(n, m, rate, seed=seed))


# ---------------------------------------------------------------- config strings
def test_parse_standard():
    assert parse_config("70_100_70") == {"kind": "standard", "probs": (0.7, 1.0, 0.7),
                                         "n_modalities": 3}
    assert parse_config("standard_70_100_70") == parse_config("70_100_70")
    assert parse_config(" Standard_50_100 ")["probs"] == (0.5, 1.0)
    assert parse_config("100")["n_modalities"] == 1
    assert parse_config("12.5_100")["probs"] == (0.125, 1.0)
    assert parse_config("0_1_100")["probs"] == (0.0, 0.01, 1.0)


def test_parse_complex():
    cfg = parse_config("complex_20_20_20_10_10_10_10")
    assert cfg["kind"] == "complex" and cfg["n_modalities"] == 3
    assert cfg["patterns"] == tuple(default_patterns(3))
    np.testing.assert_allclose(cfg["pattern_probs"], np.array(PAPER_COMPLEX) / 100)
    cfg = parse_config("complex_60_20_20", n_modalities=2)
    assert cfg["n_modalities"] == 2
    np.testing.assert_allclose(cfg["pattern_probs"], [0.6, 0.2, 0.2])
    assert parse_config("complex_100")["n_modalities"] == 1
    assert parse_config("complex_0.6_0.2_0.2")["pattern_probs"] == pytest.approx((0.6, 0.2, 0.2))


@pytest.mark.parametrize("config,n_modalities,match", [
    ("", None, "not understood"),
    ("foo_1_2", None, "not understood"),
    ("standard", None, "expected '_'"),
    ("standard_", None, "no numbers"),
    ("70__70", None, "empty field"),
    ("70_100_", None, "empty field"),
    ("70_-10_70", None, "negative"),
    ("-70_100", None, "negative"),
    ("complex_20_-20_100", None, "negative"),
    ("70_abc_70", None, "not a non-negative number"),
    ("70_1e2_70", None, "not a non-negative number"),
    ("70_150_70", None, r"\[0, 100\]"),
    ("0.7_1_0.7", None, "ambiguous"),
    ("70_100_70", 2, "n_modalities=2"),
    ("complex_20_20_20_10_10_10", None, "2\\*\\*M - 1"),
    ("complex_20_20_20_10_10_10_10", 2, "n_modalities=2"),
    ("complex_20_20_20_10_10_10_20", None, "sum to 100"),
    ("complex_60_20_20", None, None),
    ("complex20_20", None, "expected '_'"),
])
def test_parse_errors(config, n_modalities, match):
    if match is None:
        parse_config(config, n_modalities)
        return
    with pytest.raises(ValueError, match=match):
        parse_config(config, n_modalities)


def test_parse_type_error():
    with pytest.raises(TypeError):
        parse_config(70)


# ---------------------------------------------------------------- make_mask
def test_make_mask_from_strings_matches_functions():
    np.testing.assert_array_equal(make_mask("70_100_70", 300, seed=1),
                                  standard_mask(300, [0.7, 1.0, 0.7], seed=1))
    np.testing.assert_array_equal(make_mask("standard_70_100_70", 300, seed=1),
                                  standard_mask(300, [0.7, 1.0, 0.7], seed=1))
    np.testing.assert_array_equal(make_mask("complex_20_20_20_10_10_10_10", 300, seed=1),
                                  complex_mask(300, PAPER_COMPLEX, seed=1))
    np.testing.assert_array_equal(make_mask(parse_config("complex_60_20_20"), 50, seed=2),
                                  complex_mask(50, [60, 20, 20], seed=2))


def test_make_mask_from_kwargs():
    np.testing.assert_array_equal(make_mask(n=100, probs=[0.5, 1, 0.5], seed=0),
                                  standard_mask(100, [0.5, 1, 0.5], seed=0))
    np.testing.assert_array_equal(
        make_mask(n=100, pattern_probs=[50, 50], patterns=[(0,), (1,)], seed=0),
        complex_mask(100, [50, 50], patterns=[(0,), (1,)], seed=0))
    np.testing.assert_array_equal(make_mask(n=100, rate=0.3, n_modalities=3, seed=0),
                                  missing_rate_mask(100, 3, 0.3, seed=0))
    np.testing.assert_array_equal(make_mask({"probs": [0.2, 0.9]}, 40, seed=3),
                                  standard_mask(40, [0.2, 0.9], seed=3))
    np.testing.assert_array_equal(
        make_mask("50_50", 100, seed=0, at_least_one=False),
        standard_mask(100, [0.5, 0.5], seed=0, at_least_one=False))
    assert make_mask({"kind": "missing_rate", "rate": 0.5}, 10, n_modalities=2).shape == (10, 2)


@pytest.mark.parametrize("args,kwargs,exc", [
    ((), dict(n=10), ValueError),                                  # nothing
    ((), dict(n=10, probs=[0.5], rate=0.3), ValueError),           # two protocols
    (("70_100_70", 10), dict(probs=[0.5]), ValueError),            # given twice
    (("70_100_70", 10), dict(n_modalities=2), ValueError),
    ((), dict(n=10, probs=[0.5], bogus=1), TypeError),
    ((), dict(n=10, rate=0.3), ValueError),                        # needs n_modalities
    ((), dict(n=10, probs=[0.5, 0.5], n_modalities=3), ValueError),
    ((), dict(n=10, kind="weird", probs=[0.5]), ValueError),
    (("70_100_70",), {}, TypeError),                               # n missing
    ((42, 10), {}, TypeError),
    (("70_x_70", 10), {}, ValueError),
])
def test_make_mask_errors(args, kwargs, exc):
    with pytest.raises(exc):
        make_mask(*args, **kwargs)


@pytest.mark.parametrize("m", range(1, 7))
def test_make_mask_all_m(m):
    cfg = "_".join(["100"] + ["50"] * (m - 1))
    mask = make_mask(cfg, 200, seed=0)
    assert mask.shape == (200, m) and mask[:, 0].all()
    w = [100 // (2**m - 1)] * (2**m - 1)
    w[0] += 100 - sum(w)
    mask = make_mask("complex_" + "_".join(map(str, w)), 200, seed=0)
    assert mask.shape == (200, m) and mask.any(axis=1).all()


# ---------------------------------------------------------------- stats
def test_mask_stats():
    mask = complex_mask(100, PAPER_COMPLEX, seed=0)
    s = mask_stats(mask)
    assert s["n"] == 100 and s["n_modalities"] == 3 and s["empty_rows"] == 0
    assert list(s["pattern_fractions"].values()) == pytest.approx([p / 100 for p in PAPER_COMPLEX])
    assert s["missing_rate"] == pytest.approx(1 - mask.mean())


def test_module_is_pure_python():
    src = open(masking.__file__).read()
    assert "_core" not in src
