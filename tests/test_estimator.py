"""The estimator as scikit-learn users call it: a Pipeline and clone, get_params /
set_params, fit_predict, and the container of the input kept (tuple in, tuple out)."""
import numpy as np
import pytest

from conftest import blobs
from ul4m4 import UL4M4Imputer


def test_sklearn_pipeline_and_clone():
    pytest.importorskip("sklearn")
    from sklearn.base import clone
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    Xs, P, _ = blobs(seed=3, n=120)
    X = np.hstack(Xs)
    y = (np.nan_to_num(X[:, 0]) > np.nanmedian(X[:, 0])).astype(int)
    X_before = X.copy()
    pipe = Pipeline([("imp", UL4M4Imputer(4, modality_dims=[4, 2], random_state=0)),
                     ("sc", StandardScaler()), ("lr", LogisticRegression(max_iter=500))])
    pipe.fit(X, y)
    assert np.array_equal(X, X_before, equal_nan=True)
    pred = pipe.predict(X)
    assert pred.shape == y.shape and pipe.score(X, y) > 0.6
    assert pipe.named_steps["imp"].n_features_in_ == 6
    Xt = pipe.named_steps["imp"].transform(X)
    assert isinstance(Xt, np.ndarray) and Xt.shape == X.shape and np.isfinite(Xt).all()
    # clone: same parameters, unfitted
    c = clone(pipe)
    assert c.named_steps["imp"].get_params() == pipe.named_steps["imp"].get_params()
    assert not hasattr(c.named_steps["imp"], "cluster_centers_")
    c.fit(X, y)
    np.testing.assert_array_equal(c.predict(X), pred)
    imp2 = clone(UL4M4Imputer(5, completion="soft", temperature_scale=0.25, n_threads=2))
    assert imp2.n_clusters == 5 and imp2.completion == "soft" and imp2.temperature_scale == 0.25


def test_get_set_params():
    imp = UL4M4Imputer(3, completion="soft", random_state=4)
    p = imp.get_params()
    assert p["n_clusters"] == 3 and p["completion"] == "soft" and p["random_state"] == 4
    assert set(p) == {"n_clusters", "init", "n_init", "max_iter", "tol", "algorithm", "completion", "temperature_scale",
                      "temperature", "empty_rows", "modality_dims", "missing_values", "random_state", "n_threads", "chunk_size",
                      "device", "verbose"}
    assert imp.set_params(n_clusters=5, tol=0.5) is imp
    assert imp.n_clusters == 5 and imp.get_params()["tol"] == 0.5
    with pytest.raises(ValueError, match="invalid parameter 'bogus'"):
        imp.set_params(bogus=1)
    assert "n_clusters=5" in repr(imp) and "completion='soft'" in repr(imp)
    assert repr(UL4M4Imputer()) == "UL4M4Imputer()"


def test_fit_predict_and_labels_are_assignment():
    Xs, P, _ = blobs(seed=11)
    imp = UL4M4Imputer(4, random_state=2)
    labels = imp.fit_predict(Xs, mask=P)
    np.testing.assert_array_equal(labels, imp.labels_)
    assert imp.labels_.dtype == np.int32
    np.testing.assert_array_equal(imp.predict(Xs, mask=P), imp.labels_)


def test_tuple_input_returns_tuple():
    """transform documents "Returns X's container type"; a tuple of arrays in should
    give a tuple out (the code tries to, _arrays.new_like)."""
    Xs, P, _ = blobs()
    imp = UL4M4Imputer(3, random_state=0).fit(tuple(Xs), mask=P)
    out = imp.transform(tuple(Xs), mask=P)
    assert isinstance(out, tuple), f"got {type(out).__name__}"
    assert isinstance(imp.transform(list(Xs), mask=P), list)
