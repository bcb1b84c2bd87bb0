"""Saving and loading a fitted model (save / load round trip, damaged files refused, no
pickle inside the file) and pickling the estimator."""
import io
import json
import pickle
import zipfile

import numpy as np
import pytest

from conftest import blobs
from ul4m4 import UL4M4Imputer


def _fitted(**kw):
    Xs, P, _ = blobs(seed=5)
    kw.setdefault("random_state", 0)
    imp = UL4M4Imputer(4, **kw).fit(Xs, mask=P)
    return imp, Xs, P


@pytest.mark.parametrize("completion", ["greedy", "soft"])
def test_save_load_round_trip(tmp_path, completion):
    imp, Xs, P = _fitted(completion=completion, temperature_scale=0.5)
    path = tmp_path / "model.npz"
    imp.save(path)
    assert not (tmp_path / "model.npz.tmp").exists()
    loaded = UL4M4Imputer.load(path)
    assert loaded.completion == completion and loaded.temperature_scale == 0.5
    np.testing.assert_array_equal(loaded.labels_, imp.labels_)
    np.testing.assert_array_equal(loaded.center_mask_, imp.center_mask_)
    assert loaded.inertia_ == imp.inertia_ and loaded.n_iter_ == imp.n_iter_
    for a, b in zip(loaded.cluster_centers_, imp.cluster_centers_):
        assert np.array_equal(a, b, equal_nan=True)
    Xn, Pn, _ = blobs(seed=6)
    for X_, P_ in ((Xs, P), (Xn, Pn)):
        o1, i1, u1 = imp.transform(X_, mask=P_, return_masks=True)
        o2, i2, u2 = loaded.transform(X_, mask=P_, return_masks=True)
        for a, b in zip(o1, o2):
            assert np.array_equal(a, b)
        np.testing.assert_array_equal(i1, i2)
        np.testing.assert_array_equal(u1, u2)
        np.testing.assert_array_equal(imp.predict(X_, mask=P_), loaded.predict(X_, mask=P_))
    # str path and dense model
    Xd = np.hstack(Xs)
    impd = UL4M4Imputer(3, modality_dims=[4, 2], random_state=0).fit(Xd)
    impd.save(str(tmp_path / "d.npz"))
    ld = UL4M4Imputer.load(str(tmp_path / "d.npz"))
    assert ld.n_features_in_ == 6 and ld.modality_dims == [4, 2]
    assert np.array_equal(ld.transform(Xd), impd.transform(Xd))


def _rewrite(src, dst, edit):
    with np.load(src, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    edit(arrays)
    with open(dst, "wb") as fh:
        np.savez(fh, **arrays)


def test_load_corrupt_files(tmp_path):
    imp, Xs, P = _fitted()
    good = tmp_path / "good.npz"
    imp.save(good)
    raw = good.read_bytes()

    p = tmp_path / "random.npz"
    p.write_bytes(np.random.default_rng(0).bytes(2000))
    with pytest.raises(ValueError, match=r"not a readable ul4m4 model file"):
        UL4M4Imputer.load(p)

    p = tmp_path / "truncated.npz"
    p.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match=r"not a (readable )?ul4m4 model file"):
        UL4M4Imputer.load(p)

    p = tmp_path / "empty.npz"
    p.write_bytes(b"")
    with pytest.raises(ValueError, match=r"not a (readable )?ul4m4 model file"):
        UL4M4Imputer.load(p)

    p = tmp_path / "other.npz"
    np.savez(p, a=np.arange(3), b=np.ones(2))
    with pytest.raises(ValueError, match=r"not a ul4m4 model file"):
        UL4M4Imputer.load(p)

    p = tmp_path / "pickled.npz"
    np.savez(p, header=np.array([{"magic": "ul4m4-model"}], dtype=object))
    with pytest.raises(ValueError, match=r"not a (readable )?ul4m4 model file"):
        UL4M4Imputer.load(p)

    def header_edit(**changes):
        def edit(a):
            h = json.loads(str(a["header"]))
            h.update(changes)
            a["header"] = np.array(json.dumps(h))
        return edit

    p = tmp_path / "magic.npz"
    _rewrite(good, p, header_edit(magic="something-else"))
    with pytest.raises(ValueError, match=r"not a ul4m4 model file"):
        UL4M4Imputer.load(p)

    p = tmp_path / "version.npz"
    _rewrite(good, p, header_edit(format_version=99))
    with pytest.raises(ValueError, match=r"model format version 99 is not supported .*reads version 1"):
        UL4M4Imputer.load(p)

    p = tmp_path / "badjson.npz"
    _rewrite(good, p, lambda a: a.__setitem__("header", np.array("{not json")))
    with pytest.raises(ValueError, match=r"not a ul4m4 model file \(no readable header\)"):
        UL4M4Imputer.load(p)

    p = tmp_path / "missing.npz"
    _rewrite(good, p, lambda a: a.pop("centers_1"))
    with pytest.raises(ValueError, match=r"incomplete or incompatible ul4m4 model file"):
        UL4M4Imputer.load(p)

    p = tmp_path / "shape.npz"
    _rewrite(good, p, lambda a: a.__setitem__("centers_0", a["centers_0"][:, :2]))
    with pytest.raises(ValueError, match=r"inconsistent array shapes for modality 0"):
        UL4M4Imputer.load(p)

    p = tmp_path / "params.npz"
    _rewrite(good, p, lambda a: a.__setitem__("header", np.array(json.dumps(
        {**json.loads(str(a["header"])), "params": {"no_such_param": 1}}))))
    with pytest.raises(ValueError, match=r"incomplete or incompatible ul4m4 model file"):
        UL4M4Imputer.load(p)

    with pytest.raises(FileNotFoundError):
        UL4M4Imputer.load(tmp_path / "does_not_exist.npz")
    # the good file still loads
    UL4M4Imputer.load(good)


def test_save_has_no_pickle(tmp_path):
    imp, _, _ = _fitted()
    imp.save(tmp_path / "m.npz")
    with zipfile.ZipFile(tmp_path / "m.npz") as z:
        for name in z.namelist():
            arr = np.lib.format.read_array(io.BytesIO(z.read(name)), allow_pickle=False)
            assert arr.dtype != object


def test_pickle_round_trip():
    imp, Xs, P = _fitted(completion="soft")
    imp.transform(Xs, mask=P)  # builds the compiled model, which must not be pickled
    clone_ = pickle.loads(pickle.dumps(imp))
    assert clone_.get_params() == imp.get_params()
    for a, b in zip(clone_.transform(Xs, mask=P), imp.transform(Xs, mask=P)):
        assert np.array_equal(a, b)
    unfitted = pickle.loads(pickle.dumps(UL4M4Imputer(3)))
    assert unfitted.n_clusters == 3
