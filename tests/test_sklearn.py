"""UL4M4Imputer as a scikit-learn citizen: check_estimator, DataFrames, set_output, feature
names, the one-2-D-array form without modality_dims, missing_values, GridSearchCV."""
from __future__ import annotations

import inspect
import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest

import ul4m4
from ul4m4 import UL4M4Imputer

sklearn = pytest.importorskip("sklearn", reason="scikit-learn is in the test extras")
from sklearn.base import clone  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

# Every scikit-learn estimator check passes today (scikit-learn 1.9). A check that fails
# after a change must be fixed, or listed here with its reason (three at most):
# {check name: reason}.
EXPECTED_FAILED_CHECKS: dict = {}


# scikit-learn is optional for ul4m4, so the estimator has no scikit-learn base class; the
# checks warn about that (here, when they are collected, and when they run) and then run
# every check all the same.
_NO_BASE = "ignore:Estimator UL4M4Imputer does not inherit from `sklearn.base.BaseEstimator`"
_ESTIMATORS = [UL4M4Imputer(random_state=0), UL4M4Imputer(3, completion="soft", random_state=0)]
with warnings.catch_warnings():
    warnings.filterwarnings(_NO_BASE.split(":", 1)[0], _NO_BASE.split(":", 1)[1])
    if "expected_failed_checks" in inspect.signature(parametrize_with_checks).parameters:  # scikit-learn >= 1.6
        _CHECKS = parametrize_with_checks(_ESTIMATORS, expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS)
    else:  # older versions read _more_tags; nothing is expected to fail there either
        assert not EXPECTED_FAILED_CHECKS
        _CHECKS = parametrize_with_checks(_ESTIMATORS)


@_CHECKS
@pytest.mark.filterwarnings(_NO_BASE)
def test_check_estimator(estimator, check):
    check(estimator)


def _data(n=60, d=5, seed=0, rate=0.2):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) + np.repeat(np.arange(3), n // 3 + 1)[:n, None]
    miss = rng.random((n, d)) < rate
    miss[miss.all(axis=1), 0] = False  # every row keeps a value
    X[miss] = np.nan
    return X, miss


# ------------------------------------------------------------------ the one-2-D-array form
def test_plain_array_is_one_modality_per_column():
    X, miss = _data()
    imp = UL4M4Imputer(4, random_state=0).fit(X)
    assert imp.modality_dims_ == (1,) * 5 and imp.n_features_in_ == 5
    out, imputed, unfilled = imp.transform(X, return_masks=True)
    assert np.array_equal(imputed | unfilled, miss) and not np.isnan(out).any()
    assert np.array_equal(out[~miss], X[~miss])
    same = UL4M4Imputer(4, random_state=0, modality_dims=[1] * 5).fit(X).transform(X)
    assert np.array_equal(out, same)
    # a nested list of rows is the same 2-D array (scikit-learn's array-like)
    assert np.array_equal(imp.transform(X.tolist()), out)


def test_plain_array_too_wide_says_what_to_do():
    X = np.ones((10, 65))
    with pytest.raises(ValueError, match=r"65 columns and no modality_dims.*at most 64.*modality_dims=\[d_0"):
        UL4M4Imputer(2).fit(X)


def test_integer_and_object_arrays_become_float64():
    X, _ = _data()
    Xi = np.nan_to_num(X * 10).astype(np.int64)
    out = UL4M4Imputer(3, random_state=0).fit_transform(Xi)
    assert out.dtype == np.float64 and np.array_equal(out, Xi)  # nothing missing: unchanged
    Xo = X.astype(object)
    assert np.array_equal(UL4M4Imputer(3, random_state=0).fit_transform(Xo),
                          UL4M4Imputer(3, random_state=0).fit_transform(X))
    with pytest.raises(ValueError, match="Complex data not supported"):
        UL4M4Imputer(3).fit(X.astype(complex))
    # the list-of-modalities form keeps its float-only rule
    with pytest.raises(TypeError, match="modality 0 has dtype int64"):
        UL4M4Imputer(3).fit([Xi[:, :2], X[:, 2:]])


def test_sparse_input_is_refused_clearly():
    sp = pytest.importorskip("scipy.sparse")
    with pytest.raises(TypeError, match="sparse input is not supported"):
        UL4M4Imputer(2).fit(sp.csr_matrix(np.ones((5, 3))))


# ------------------------------------------------------------------ missing_values
def test_missing_values_zero_blocks():
    """Embeddings stored as all-zero rows when absent: missing_values=0 imputes them (with
    the default NaN they are data, and nothing is imputed)."""
    rng = np.random.default_rng(1)
    views = [rng.normal(size=(90, d)) + 3 for d in (6, 4, 3)]
    present = rng.random((90, 3)) > 0.3
    present[~present.any(axis=1), 0] = True
    for m, v in enumerate(views):
        v[~present[:, m]] = 0.0
    X = np.hstack(views)
    _, imp_nan, _ = UL4M4Imputer(4, modality_dims=[6, 4, 3], random_state=0).fit(X).transform(X, return_masks=True)
    assert not imp_nan.any()
    est = UL4M4Imputer(4, modality_dims=[6, 4, 3], missing_values=0, random_state=0).fit(X)
    out, imputed, unfilled = est.transform(X, return_masks=True)
    assert np.array_equal(imputed | unfilled, ~present) and imputed.sum() > 0
    ref = UL4M4Imputer(4, modality_dims=[6, 4, 3], random_state=0).fit(X, mask=present)
    assert np.array_equal(out, ref.transform(X, mask=present))
    # the list form, and an explicit mask wins over missing_values
    lst = UL4M4Imputer(4, missing_values=0, random_state=0).fit(views)
    assert all(np.array_equal(a, b) for a, b in zip(lst.transform(views), ref.transform(views, mask=present)))
    full = np.ones_like(present)
    assert np.array_equal(est.transform(X, mask=full), X)
    # a block that is only partly zero is observed
    X2 = X.copy()
    X2[0, :6] = 0.0
    X2[0, 0] = 1.0
    assert not est.transform(X2, return_masks=True)[1][0, 0]
    # saved and loaded with the model
    loaded = pickle.loads(pickle.dumps(est))
    assert loaded.missing_values == 0 and np.array_equal(loaded.transform(X), out)


def test_missing_values_saved(tmp_path):
    X, _ = _data()
    X = np.nan_to_num(X)
    est = UL4M4Imputer(3, missing_values=0.0, random_state=0).fit(X)
    est.save(tmp_path / "m.npz")
    assert UL4M4Imputer.load(tmp_path / "m.npz").missing_values == 0.0
    dflt = UL4M4Imputer(3, random_state=0).fit(_data()[0])
    dflt.save(tmp_path / "d.npz")
    assert np.isnan(UL4M4Imputer.load(tmp_path / "d.npz").missing_values)


@pytest.mark.parametrize("bad", [None, "0", True, [0]])
def test_missing_values_invalid(bad):
    with pytest.raises(ValueError, match="missing_values must be a number"):
        UL4M4Imputer(2, missing_values=bad).fit(_data()[0])


def test_missing_values_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    X = rng.normal(size=(40, 4)).astype(np.float32)
    X[::4, 2:] = 0
    t = torch.from_numpy(X)
    est = UL4M4Imputer(3, modality_dims=[2, 2], missing_values=0, random_state=0).fit(t)
    out, imputed, _ = est.transform(t, return_masks=True)
    assert isinstance(out, torch.Tensor) and bool(imputed[::4, 1].all()) and int(imputed.sum()) == 10


# ------------------------------------------------------------------ DataFrames, set_output, names
def test_pandas_in_pandas_out():
    pd = pytest.importorskip("pandas")
    X, miss = _data()
    df = pd.DataFrame(X, columns=[f"f{i}" for i in range(5)], index=[f"r{i}" for i in range(len(X))])
    imp = UL4M4Imputer(4, random_state=0)
    out = imp.fit_transform(df)
    assert isinstance(out, pd.DataFrame)
    assert list(out.columns) == list(df.columns) and out.index.equals(df.index)
    assert np.array_equal(out.to_numpy(), UL4M4Imputer(4, random_state=0).fit_transform(X))
    assert list(imp.feature_names_in_) == list(df.columns) and imp.feature_names_in_.dtype == object
    assert list(imp.get_feature_names_out()) == list(df.columns)
    assert np.isnan(df.to_numpy()).sum() == miss.sum()  # the caller's frame is untouched
    # float32 frames stay float32
    out32 = UL4M4Imputer(4, random_state=0).fit_transform(df.astype(np.float32))
    assert (out32.dtypes == np.float32).all()
    # masks come back as numpy next to the frame
    frame, imputed, unfilled = imp.transform(df, return_masks=True)
    assert isinstance(frame, pd.DataFrame) and isinstance(imputed, np.ndarray)
    with pytest.raises(ValueError, match="The feature names should match those that were passed during fit"):
        imp.transform(df.rename(columns={"f0": "g0"}))
    with pytest.raises(TypeError, match="out= takes arrays like X"):
        imp.transform(df, out=np.empty(X.shape))
    # the caller's frame is read, never written, even when it shares memory with the output path
    before = df.copy()
    imp.transform(df)
    assert before.equals(df)


def test_polars_in_polars_out():
    pl = pytest.importorskip("polars")
    X, _ = _data()
    df = pl.DataFrame(X, schema=[f"f{i}" for i in range(5)], orient="row")
    out = UL4M4Imputer(4, random_state=0).fit_transform(df)
    assert isinstance(out, pl.DataFrame) and out.columns == df.columns
    assert np.array_equal(out.to_numpy(), UL4M4Imputer(4, random_state=0).fit_transform(X))


def test_set_output():
    pd = pytest.importorskip("pandas")
    pl = pytest.importorskip("polars")
    X, _ = _data()
    imp = UL4M4Imputer(4, random_state=0).fit(X)
    ref = imp.transform(X)
    got = imp.set_output(transform="pandas").transform(X)
    assert isinstance(got, pd.DataFrame) and list(got.columns) == [f"x{i}" for i in range(5)]
    assert np.array_equal(got.to_numpy(), ref)
    assert isinstance(imp.set_output(transform="polars").transform(X), pl.DataFrame)
    assert isinstance(imp.set_output(transform="default").transform(X), np.ndarray)
    assert imp.set_output(transform=None) is imp
    with pytest.raises(ValueError, match="transform must be one of"):
        imp.set_output(transform="arrow")
    with sklearn.config_context(transform_output="pandas"):
        assert isinstance(UL4M4Imputer(4, random_state=0).fit(X).transform(X), pd.DataFrame)
        # an explicit set_output wins over the global setting, as in scikit-learn
        assert isinstance(clone(imp).fit(X).transform(X), np.ndarray)
    # the list-of-modalities form keeps its container
    Xf = np.nan_to_num(X)
    lst = UL4M4Imputer(3, random_state=0).set_output(transform="pandas").fit([Xf[:, :2], Xf[:, 2:]])
    assert isinstance(lst.transform([Xf[:, :2], Xf[:, 2:]]), list)


def test_get_feature_names_out():
    X, _ = _data()
    imp = UL4M4Imputer(3, random_state=0).fit(X)
    assert list(imp.get_feature_names_out()) == ["x0", "x1", "x2", "x3", "x4"]
    assert list(imp.get_feature_names_out(list("abcde"))) == list("abcde")
    with pytest.raises(ValueError, match="input_features should have length equal to number of features"):
        imp.get_feature_names_out(["a"])
    Xf = np.nan_to_num(X)
    lst = UL4M4Imputer(3, random_state=0).fit([Xf[:, :2], Xf[:, 2:]])
    assert len(lst.get_feature_names_out()) == 5 and not hasattr(lst, "n_features_in_")


def test_pipeline_set_output_pandas():
    pd = pytest.importorskip("pandas")
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, _ = _data()
    df = pd.DataFrame(X, columns=list("abcde"))
    pipe = make_pipeline(UL4M4Imputer(4, random_state=0), StandardScaler()).set_output(transform="pandas")
    out = pipe.fit_transform(df)
    assert isinstance(out, pd.DataFrame) and list(out.columns) == list("abcde")
    assert list(pipe.get_feature_names_out()) == list("abcde")


def test_not_fitted_is_sklearns_too():
    from sklearn.exceptions import NotFittedError as SkNotFitted
    from sklearn.utils.validation import check_is_fitted

    imp = UL4M4Imputer(2)
    with pytest.raises(SkNotFitted):
        check_is_fitted(imp)
    with pytest.raises(ul4m4.NotFittedError) as info:
        imp.transform(np.ones((3, 2)))
    assert isinstance(info.value, SkNotFitted) and isinstance(info.value, ValueError)
    assert isinstance(pickle.loads(pickle.dumps(info.value)), ul4m4.NotFittedError)
    check_is_fitted(imp.fit(_data()[0]))


def test_tags():
    get_tags = pytest.importorskip("sklearn.utils", reason="needs scikit-learn").__dict__.get("get_tags")
    if get_tags is None:
        pytest.skip("scikit-learn < 1.6 has no get_tags (it reads _more_tags)")

    tags = get_tags(UL4M4Imputer())
    assert tags.input_tags.allow_nan and not tags.target_tags.required and tags.requires_fit
    assert UL4M4Imputer()._more_tags()["allow_nan"]


def test_grid_search_two_jobs_over_pipeline():
    """GridSearchCV(n_jobs=2): the estimator and the data are pickled into worker
    processes (joblib may memory-map the arrays there)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    from ul4m4.datasets import load_mfeat
    from ul4m4.masking import missing_rate_mask

    views, y = load_mfeat(return_X_y=True)
    views = [v[:400:2] for v in views[:3]]  # 200 rows, 3 views
    y = y[:400:2]
    mask = missing_rate_mask(len(y), 3, 0.4, seed=0)
    X = np.hstack([np.where(mask[:, m:m + 1], v, np.nan) for m, v in enumerate(views)])
    dims = [v.shape[1] for v in views]
    pipe = Pipeline([("imp", UL4M4Imputer(modality_dims=dims, random_state=0, n_threads=1)),
                     ("scale", StandardScaler()), ("clf", LogisticRegression(max_iter=300))])
    grid = {"imp__n_clusters": [5, 10], "imp__completion": ["greedy", "soft"]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # LogisticRegression convergence on 2/3 of 200 rows
        search = GridSearchCV(pipe, grid, cv=3, n_jobs=2, error_score="raise").fit(X, y)
        serial = GridSearchCV(pipe, grid, cv=3, n_jobs=1, error_score="raise").fit(X, y)
    assert np.array_equal(search.cv_results_["mean_test_score"], serial.cv_results_["mean_test_score"])
    assert search.best_score_ > 0.5 and set(search.best_params_) == set(grid)


# ------------------------------------------------------------------ optional dependency
def test_sklearn_not_imported_by_ul4m4():
    code = ("import sys, numpy as np, ul4m4\n"
            "X = np.random.default_rng(0).normal(size=(30, 4)); X[::3, 1] = np.nan\n"
            "ul4m4.UL4M4Imputer(3, random_state=0).fit_transform(X)\n"
            "assert 'sklearn' not in sys.modules, 'sklearn imported'\n"
            "print('ok')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stdout + r.stderr
