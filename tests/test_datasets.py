"""Tests of ul4m4.datasets (shipped UCI Multiple Features data)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ul4m4 import datasets
from ul4m4.datasets import MFEAT_VIEWS, load_mfeat

WIDTHS = {"fou": 76, "fac": 216, "kar": 64, "pix": 240, "zer": 47, "mor": 6}
from conftest import SHARED  # noqa: E402  (../shared or $UL4M4_SHARED)
CSV_DIR = SHARED / "data" / "uci_mfeat"


def test_default_load():
    ds = load_mfeat()
    assert ds.view_names == ("fou", "fac", "kar", "pix", "zer", "mor") == MFEAT_VIEWS
    assert len(ds.data) == 6
    for name, x in zip(ds.view_names, ds.data):
        assert x.shape == (2000, WIDTHS[name])
        assert x.dtype == np.float32
        assert x.flags.c_contiguous
        assert np.isfinite(x).all()
    assert ds.view_widths == (76, 216, 64, 240, 47, 6)
    assert ds.n_samples == 2000
    assert ds.target.dtype == np.int64 and ds.target.shape == (2000,)
    assert "CC BY 4.0" in ds.description and "Duin" in ds.description
    assert ds["target"] is ds.target and set(ds.keys()) >= {"data", "target"}


def test_labels():
    y = load_mfeat().target
    assert y.min() == 0 and y.max() == 9
    assert np.bincount(y).tolist() == [200] * 10
    np.testing.assert_array_equal(y, np.repeat(np.arange(10), 200))  # ordered by class


def test_integer_views():
    ds = load_mfeat()
    for name in ("fac", "pix"):
        x = ds.data[ds.view_names.index(name)]
        np.testing.assert_array_equal(x, np.round(x))
    pix = ds.data[3]
    assert pix.min() == 0 and pix.max() == 6


def test_views_selection_and_order():
    ds = load_mfeat(views=["pix", "fou"])
    assert ds.view_names == ("pix", "fou")
    assert [x.shape[1] for x in ds.data] == [240, 76]
    full = load_mfeat()
    np.testing.assert_array_equal(ds.data[0], full.data[3])
    np.testing.assert_array_equal(ds.data[1], full.data[0])
    one = load_mfeat(views="mor")
    assert one.view_names == ("mor",) and one.data[0].shape == (2000, 6)


def test_return_X_y():
    X, y = load_mfeat(return_X_y=True)
    assert isinstance(X, list) and len(X) == 6
    assert [x.shape[1] for x in X] == [76, 216, 64, 240, 47, 6]
    np.testing.assert_array_equal(y, load_mfeat().target)
    X2, y2 = load_mfeat(views=("kar",), return_X_y=True)
    assert len(X2) == 1 and X2[0].shape == (2000, 64)


def test_dtype():
    ds32 = load_mfeat()
    ds64 = load_mfeat(dtype=np.float64)
    for a, b in zip(ds32.data, ds64.data):
        assert b.dtype == np.float64
        np.testing.assert_array_equal(a.astype(np.float64), b)
    with pytest.raises(ValueError, match="floating"):
        load_mfeat(dtype=np.int32)


def test_fresh_arrays_each_call():
    a = load_mfeat()
    a.data[0][0, 0] = -1234.0
    a.target[0] = 7
    b = load_mfeat()
    assert b.data[0][0, 0] != -1234.0 and b.target[0] == 0


@pytest.mark.parametrize("views,exc", [
    (["fou", "nope"], ValueError), ("FOU", ValueError), ([], ValueError),
    (["fou", "fou"], ValueError), ([0], TypeError),
])
def test_bad_views(views, exc):
    with pytest.raises(exc):
        load_mfeat(views=views)


def test_unknown_view_message_lists_names():
    with pytest.raises(ValueError, match="unknown mfeat view 'nope'.*'fou'"):
        load_mfeat(views=["nope"])


def test_module_is_pure_python():
    assert "_core" not in Path(datasets.__file__).read_text()


@pytest.mark.skipif(not CSV_DIR.is_dir(),
                    reason=f"source CSVs not available ({CSV_DIR} is absent)")
def test_values_match_source_csv():
    ds = load_mfeat(dtype=np.float64)
    for name, x in zip(ds.view_names, ds.data):
        raw = np.loadtxt(CSV_DIR / f"mfeat-{name}.csv", delimiter=",", skiprows=1,
                         dtype=np.float64)
        feats, labels = raw[:, :-1], raw[:, -1]
        assert feats.shape == x.shape
        np.testing.assert_array_equal(labels.astype(np.int64), ds.target)
        # the stored value is exactly the CSV value rounded to float32
        np.testing.assert_array_equal(feats.astype(np.float32).astype(np.float64), x)
        np.testing.assert_allclose(x, feats, rtol=2**-24, atol=0)
