"""assign_and_sum / update_centres: a Lloyd update summed over blocks of rows equals the
engine's own update (the building block of streaming and Dask fits)."""
import warnings

import numpy as np

import ul4m4
from ul4m4 import _core


def test_block_sums_reproduce_one_lloyd_update():
    rng = np.random.default_rng(3)
    n, dims, K = 900, (6, 4, 9), 5
    Xs = [rng.normal(size=(n, d)) * (m + 1) + m for m, d in enumerate(dims)]
    Xs[1] = Xs[1].astype(np.float32)
    P = rng.random((n, 3)) < 0.6
    P[~P.any(1), 0] = True
    rows = rng.choice(n, K, replace=False)
    init = ([X[rows] for X in Xs], P[rows])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        one = ul4m4.UL4M4Imputer(K, init=init, max_iter=1, tol=0).fit(Xs, mask=P)
    zero = ul4m4.UL4M4Imputer(K, init=init, max_iter=0).fit(Xs, mask=P)
    model = zero._compiled()
    parts = []
    for r0, r1 in ((0, 333), (333, 700), (700, n)):
        parts.append(_core.assign_and_sum(model, [X[r0:r1] for X in Xs], P[r0:r1].view(np.uint8), None, 2, 64))
    labels = np.concatenate([p["labels"] for p in parts])
    np.testing.assert_array_equal(labels, zero.labels_)
    sums = sum(p["sums"] for p in parts)
    counts = sum(p["counts"] for p in parts)
    sizes = sum(p["sizes"] for p in parts)
    assert sizes.sum() == (labels >= 0).sum()
    new = _core.update_centres(zero.mean_, zero.scale_, zero.cluster_centers_,
                               zero.center_mask_.view(np.uint8), sums, counts, sizes)
    np.testing.assert_array_equal(new["H"], one.center_mask_)
    for a, b in zip(new["centres"], one.cluster_centers_):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    # inertia of the pass is the sum of the parts
    np.testing.assert_allclose(sum(p["inertia"] for p in parts), zero.inertia_, rtol=1e-12)
