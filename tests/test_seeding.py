"""k-means++ seeding and n_init: deterministic for a seed, centres that are rows with their
presence, unreachable rows taken first, K up to the eligible rows, and n_init runs whose
labels are the assignment to the returned centres."""
import math

import numpy as np
import pytest

import reference as ref
from conftest import blobs
from ul4m4 import UL4M4Imputer


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
