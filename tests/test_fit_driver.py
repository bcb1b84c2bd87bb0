"""One fit driver: every fit (in memory, out of core, Dask) writes the same fitted state
through UL4M4Imputer._set_fitted, so nothing of an earlier fit survives a refit."""
import numpy as np
import pytest

import ul4m4
from ul4m4 import _core, _fit
from ul4m4.outofcore import fit_streaming


def _data(n=600, dims=(6, 4, 5), seed=0):
    rng = np.random.default_rng(seed)
    Xs = [rng.normal(size=(n, d)).astype(np.float32) for d in dims]
    P = rng.random((n, len(dims))) < 0.7
    P[~P.any(1), 0] = True
    for X, p in zip(Xs, P.T):
        X[~p] = np.nan
    return Xs, P


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
