"""One fit driver: every fit (in memory, out of core, Dask) writes the same fitted state
through UL4M4Imputer._set_fitted, so nothing of an earlier fit survives a refit; and the
pass the streaming and Dask fits sum block by block equals one Lloyd update."""
import warnings

import numpy as np
import pytest

import ul4m4
from conftest import nan_marked
from ul4m4 import _core, _fit
from ul4m4.outofcore import fit_streaming


def _data(n=600, dims=(6, 4, 5), seed=0):
    return nan_marked(n, dims, seed, np.float32)


STALE_MODEL = object()


def _stale(imp):
    # What an earlier life of the estimator leaves: compiled CPU and device models of other
    # centres, the input width of a dense fit, the sampled rows of a max_rows fit.
    imp._model = STALE_MODEL
    imp._gpu_models = {"cuda:0": object()}
    imp.n_features_in_ = 12345
    imp.fit_rows_ = np.arange(3)


def _dask_fit(imp, Xs, P):
    da = pytest.importorskip("dask.array", reason="dask is not installed (pip install 'ul4m4[dask]')")
    from ul4m4 import dask as udask
    arrays = [da.from_array(X, chunks=(200, X.shape[1])) for X in Xs]
    return udask.fit(imp, arrays, da.from_array(P, chunks=(200, P.shape[1])), client=None)


@pytest.mark.parametrize("how", ["memory", "streaming", "dask"])
def test_refit_clears_the_state_of_an_earlier_fit(how):
    Xs, P = _data()
    imp = ul4m4.UL4M4Imputer(n_clusters=4, random_state=0).fit(Xs)
    _stale(imp)
    if how == "memory":
        imp.fit(Xs)
    elif how == "streaming":
        fit_streaming(imp, Xs)
    else:
        _dask_fit(imp, Xs, P)
    assert imp._model is not STALE_MODEL and imp._gpu_models is None  # (fit may compile the new model)
    assert not hasattr(imp, "n_features_in_")  # list input: no single feature count
    assert not hasattr(imp, "fit_rows_")
    # and the refitted estimator transforms with its own centres
    ref = ul4m4.UL4M4Imputer(n_clusters=4, random_state=0).fit(Xs)
    np.testing.assert_array_equal(imp.labels_, ref.labels_)


def test_dense_fit_sets_the_feature_count():
    Xs, _ = _data()
    X = np.hstack(Xs)
    imp = ul4m4.UL4M4Imputer(n_clusters=3, random_state=0, modality_dims=[6, 4, 5]).fit(X)
    assert imp.n_features_in_ == 15


def test_restart_seeds_are_the_cores():
    # The Python-driven fits seed restart r exactly as the compiled k-means does.
    Xs, P = _data()
    K, n_init, seed = 4, 3, 11
    imp = ul4m4.UL4M4Imputer(n_clusters=K, n_init=n_init, random_state=seed).fit(Xs)
    streamed = fit_streaming(ul4m4.UL4M4Imputer(n_clusters=K, n_init=n_init, random_state=seed), Xs)
    np.testing.assert_array_equal(imp.labels_, streamed.labels_)
    assert imp.n_iter_ == streamed.n_iter_
    assert _fit.restart_seed(seed, 2) == (seed + 2 * _core.RESTART_SEED_STRIDE) % 2**64


def test_best_run_rule():
    a = dict(n_unassigned=0, inertia=5.0)
    assert _fit.better(a, None)
    assert _fit.better(dict(n_unassigned=0, inertia=4.0), a)
    assert not _fit.better(dict(n_unassigned=0, inertia=5.0), a)  # ties keep the earlier run
    assert not _fit.better(dict(n_unassigned=1, inertia=0.0), a)  # fewer unassigned rows first


# ----------------------------------------------------------------------------- the pass
# assign_and_sum / update_centres: a Lloyd update summed over blocks of rows equals the
# engine's own update (the pass of the streaming and Dask fits).
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
