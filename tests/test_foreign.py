"""Foreign arrays (pickled, other processes, big-endian, masked arrays, half-precision
tensors), output buffers that alias inputs or each other, and the messages of mistakes
that are easy to make (issue 12, items 6, 7, 10 and 11)."""
import multiprocessing as mp
import os
import pickle

import numpy as np
import pytest

import ul4m4
from conftest import nan_marked
from ul4m4 import _arrays


def _data(n=120, dims=(5, 3, 4), seed=0, dtype=np.float64):
    return nan_marked(n, dims, seed, dtype)


@pytest.fixture(scope="module")
def fitted():
    Xs, P = _data()
    return ul4m4.UL4M4Imputer(4, random_state=0).fit(Xs), Xs, P


def _same(a, b):
    for x, y in zip(a, b):
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)


# ----------------------------------------------------------------------------- item 6
def test_pickled_arrays_accepted(fitted):
    """An unpickled array's dtype is an equal but distinct object: compared by value."""
    imp, Xs, P = fitted
    Xp, Pp = pickle.loads(pickle.dumps((Xs, P)))
    assert Xp[0].dtype is not Xs[0].dtype or Xp[0].dtype == Xs[0].dtype
    ref = ul4m4.UL4M4Imputer(4, random_state=0).fit(Xs, mask=P)
    got = ul4m4.UL4M4Imputer(4, random_state=0).fit(Xp, mask=Pp)
    np.testing.assert_array_equal(ref.labels_, got.labels_)
    _same(imp.transform(Xs, mask=P), imp.transform(Xp, mask=Pp))
    np.testing.assert_array_equal(imp.predict(Xs), imp.predict(Xp))
    out = pickle.loads(pickle.dumps([np.empty_like(x) for x in Xs]))
    _same(imp.transform(Xs), imp.transform(Xp, out=out))
    # float32 too, and the estimator itself through pickle
    X32 = pickle.loads(pickle.dumps([x.astype(np.float32) for x in Xs]))
    _same(imp.transform([x.astype(np.float32) for x in Xs]), pickle.loads(pickle.dumps(imp)).transform(X32))


def _worker_arrays(seed):
    Xs, P = _data(seed=seed)
    return Xs, P


@pytest.mark.skipif(os.name != "posix", reason="fork start method")
def test_arrays_from_worker_processes(fitted):
    """Arrays made in worker processes (multiprocessing, DataLoader workers, joblib) come
    back through pickle."""
    imp, _, _ = fitted
    with mp.get_context("fork").Pool(2) as pool:
        res = pool.map(_worker_arrays, [1, 2])
    for seed, (Xs, P) in zip([1, 2], res):
        Xl, Pl = _data(seed=seed)
        _same(imp.transform(Xl, mask=Pl), imp.transform(Xs, mask=P))
        ul4m4.UL4M4Imputer(3, random_state=0).fit(Xs, mask=P)


@pytest.mark.parametrize("order", [">f4", ">f8"])
@pytest.mark.parametrize("kind", ["list", "dense"])
def test_big_endian_inputs_converted_not_refused(order, kind):
    """'>f4' / '>f8' are read through a native copy; results equal the native input's, in the
    native dtype, and the caller's array is untouched."""
    Xs, P = _data()
    native = [x.astype(order.replace(">", "<")) for x in Xs]
    big = [x.astype(order) for x in Xs]
    before = [b.copy() for b in big]
    if kind == "dense":
        dims = [x.shape[1] for x in Xs]
        native = np.hstack(native)
        big = native.astype(order)
        before = big.copy()
        mk = lambda: ul4m4.UL4M4Imputer(4, random_state=0, modality_dims=dims)
    else:
        mk = lambda: ul4m4.UL4M4Imputer(4, random_state=0)
    a, b = mk().fit(native), mk().fit(big)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    for u, v in zip(a.mean_, b.mean_):
        np.testing.assert_array_equal(u, v)
    ta, tb = a.transform(native), a.transform(big)
    if kind == "dense":
        ta, tb = [ta], [tb]
    for u, v in zip(ta, tb):
        assert v.dtype == np.dtype(order.replace(">", "=")) and v.dtype.isnative
        np.testing.assert_array_equal(u, v)
    np.testing.assert_array_equal(a.predict(native), a.predict(big))
    if kind == "dense":
        np.testing.assert_array_equal(big, before)
        assert big.dtype.str == order
    else:
        for x, y in zip(big, before):
            np.testing.assert_array_equal(x, y)
            assert x.dtype.str == order


def test_big_endian_out_refused_with_the_dtype_to_use(fitted):
    imp, Xs, P = fitted
    out = [np.empty(x.shape, ">f8") for x in Xs]
    with pytest.raises(ValueError, match=r"out\[0\] must have shape .* and dtype float64 \(native byte order\)"):
        imp.transform(Xs, out=out)


# ----------------------------------------------------------------------------- item 7
@pytest.fixture(scope="module")
def square():
    Xs, P = _data(dims=(3, 3, 3))
    return ul4m4.UL4M4Imputer(4, random_state=0).fit(Xs, mask=P), Xs, P


def _unchanged(Xs, copies):
    for x, c in zip(Xs, copies):
        np.testing.assert_array_equal(x, c)


def test_out_permuted_inputs_refused(square):
    imp, Xs, P = square
    Xc = [x.copy() for x in Xs]
    copies = [x.copy() for x in Xc]
    with pytest.raises(ValueError, match=r"out\[[01]\] overlaps modality [01] of X"):
        imp.transform(Xc, mask=P, out=[Xc[1], Xc[0], Xc[2]])
    _unchanged(Xc, copies)


def test_out_same_buffer_twice_refused(square):
    imp, Xs, P = square
    buf = np.empty_like(Xs[0])
    with pytest.raises(ValueError, match=r"out\[0\] and out\[2\] share memory"):
        imp.transform(Xs, mask=P, out=[buf, np.empty_like(Xs[1]), buf])


def test_out_view_into_another_modalitys_input_refused(square):
    imp, Xs, P = square
    big = np.zeros((Xs[0].shape[0], 9))
    big[:, 3:6] = Xs[1]
    X = [Xs[0], big[:, 3:6], Xs[2]]
    copy = big.copy()
    with pytest.raises(ValueError, match=r"out\[0\] overlaps modality 1 of X"):
        imp.transform(X, mask=P, out=[big[:, 4:7], np.empty_like(Xs[1]), np.empty_like(Xs[2])])
    np.testing.assert_array_equal(big, copy)


def test_out_interleaved_but_disjoint_accepted(square):
    """Bounds that intersect but memory that does not (interleaved columns of one buffer):
    the exact check accepts them."""
    imp, Xs, P = square
    ref = imp.transform(Xs, mask=P)
    buf = np.empty((Xs[0].shape[0], 9))
    out = [buf[:, 0:3], buf[:, 3:6], buf[:, 6:9]]
    imp.transform(Xs, mask=P, out=out)
    _same(ref, out)
    # and in place, each output exactly its own input, still works
    Xc = [x.copy() for x in Xs]
    imp.transform(Xc, mask=P, out=Xc)
    _same(ref, Xc)


def test_out_overlapping_a_big_endian_callers_array_refused(square):
    """The core reads a native copy of a big-endian input, but an out buffer over the
    caller's original is still refused (it would overwrite the caller's input)."""
    imp, Xs, P = square
    big = [x.astype(">f8") for x in Xs]
    raw = big[1].view(np.uint8).view("<f8")  # same memory, native order
    with pytest.raises(ValueError, match=r"out\[0\] overlaps modality 1 of X"):
        imp.transform(big, mask=P, out=[raw, np.empty_like(Xs[1]), np.empty_like(Xs[2])])


def test_cuda_out_check_uses_the_same_rule():
    """The CUDA path's out check (pointer proxies, no memory read) on CPU tensors."""
    torch = pytest.importorskip("torch")
    from ul4m4._gpu import _proxy

    a = torch.zeros((10, 3), dtype=torch.float64)
    b = torch.zeros((10, 3), dtype=torch.float64)
    big = torch.zeros((10, 6), dtype=torch.float64)
    names = (["out[0]", "out[1]"], ["modality 0 of X", "modality 1 of X"])
    _arrays.check_aliasing([_proxy(a), _proxy(b)], [_proxy(a), _proxy(b)], *names)  # in place: fine
    _arrays.check_aliasing([_proxy(big[:, :3]), _proxy(big[:, 3:])], [_proxy(a), _proxy(b)], *names)
    with pytest.raises(ValueError, match=r"out\[[01]\] overlaps modality [01]"):
        _arrays.check_aliasing([_proxy(b), _proxy(a)], [_proxy(a), _proxy(b)], *names)
    with pytest.raises(ValueError, match=r"share memory"):
        _arrays.check_aliasing([_proxy(big[:, :3]), _proxy(big[:, 2:5])], [_proxy(a), _proxy(b)], *names)


# ----------------------------------------------------------------------------- item 10
def test_masked_arrays_refused_everywhere(fitted):
    """numpy masked arrays are refused (their per-value mask is not ul4m4's per-row one);
    masked values never reach mean_."""
    imp, Xs, P = fitted
    mx = np.ma.masked_array(np.where(np.isnan(Xs[0]), 1e6, Xs[0]), mask=np.isnan(Xs[0]))
    X = [mx, Xs[1], Xs[2]]
    for call in (lambda: ul4m4.UL4M4Imputer(3).fit(X), lambda: imp.transform(X), lambda: imp.predict(X)):
        with pytest.raises(TypeError, match=r"modality 0 is a numpy masked array.*np\.ma\.filled"):
            call()
    dims = [x.shape[1] for x in Xs]
    with pytest.raises(TypeError, match=r"X is a numpy masked array"):
        ul4m4.UL4M4Imputer(3, modality_dims=dims).fit(np.ma.masked_invalid(np.hstack(Xs)))
    with pytest.raises(TypeError, match=r"mask is a numpy masked array"):
        imp.transform(Xs, mask=np.ma.masked_array(P))
    with pytest.raises(TypeError, match=r"out\[1\] is a numpy masked array"):
        imp.transform(Xs, out=[np.empty_like(Xs[0]), np.ma.masked_array(np.empty_like(Xs[1])),
                               np.empty_like(Xs[2])])
    # the documented conversion works: masked rows become missing
    filled = [np.ma.filled(mx, np.nan), Xs[1], Xs[2]]
    _same(imp.transform(Xs), imp.transform(filled))


# ----------------------------------------------------------------------------- item 11
def test_modality_count_named_before_empty_rows(fitted):
    """Too few modalities: rows that observe only the left-out one would look empty; the
    count is named first (also with a mask sized for the model)."""
    imp, Xs, P = fitted
    only_last = np.flatnonzero(~P[:, 0] & ~P[:, 1])
    assert only_last.size  # such rows exist in the data
    with pytest.raises(ValueError, match=r"X has 2 modalities but the model was fitted on 3 .*widths"):
        imp.transform(Xs[:2])
    with pytest.raises(ValueError, match=r"X has 2 modalities but the model was fitted on 3"):
        imp.transform(Xs[:2], mask=P)
    with pytest.raises(ValueError, match=r"X has 2 modalities but the model was fitted on 3"):
        imp.predict(Xs[:2], mask=P[:, :2])
    with pytest.raises(ValueError, match=r"X has 4 modalities but the model was fitted on 3"):
        imp.transform(Xs + [Xs[0]], mask=np.ones((len(P), 4), bool))
    with pytest.raises(ValueError, match=r"modality 1 has width 4 but the model was fitted with 3"):
        imp.transform([Xs[0], Xs[2], Xs[1]])


def test_inverted_mask_hint(fitted):
    imp, Xs, P = fitted
    hint = r"True \(or 1\) in the mask means observed"
    for call in (lambda m: ul4m4.UL4M4Imputer(3).fit(Xs, mask=m), lambda m: imp.transform(Xs, mask=m),
                 lambda m: imp.predict(Xs, mask=m)):
        with pytest.raises(ValueError, match=r"(NaN or inf in an observed slot|observe no modality).*" + hint):
            call(~P)
        with pytest.raises(ValueError, match=r"NaN or inf in an observed slot.*" + hint):
            call(np.ones_like(P))  # marks observed the modalities rows lack
    zero = np.zeros_like(P)
    with pytest.raises(ValueError, match=r"observe no modality.*" + hint):
        imp.transform(Xs, mask=zero)
    with pytest.raises(ValueError, match=r"observe no modality.*" + hint):
        ul4m4.UL4M4Imputer(3).fit(Xs, mask=zero)
    # no hint where the mask is right and the data are at fault
    bad = [x.copy() for x in Xs]
    i = int(np.flatnonzero(P[:, 0])[0])
    bad[0][i, 1] = np.inf
    with pytest.raises(ValueError, match="NaN or inf") as e:
        imp.transform(bad, mask=P)
    assert "means observed" not in str(e.value)
    Z = [np.full_like(x, np.nan) for x in Xs]
    with pytest.raises(ValueError, match="observe no modality") as e:
        imp.transform(Z, mask=np.zeros_like(P))
    assert "means observed" not in str(e.value)


@pytest.mark.parametrize("dt", ["bfloat16", "float16"])
def test_half_precision_tensors_clear_message(fitted, dt):
    """bfloat16 / float16 tensors are refused with the conversion to make (not torch's
    'unsupported ScalarType'); decided: no silent up-cast, the caller chooses the precision."""
    torch = pytest.importorskip("torch")
    imp, Xs, P = fitted
    T = [torch.from_numpy(np.nan_to_num(x)).to(getattr(torch, dt)) for x in Xs]
    for call in (lambda: ul4m4.UL4M4Imputer(3).fit(T, mask=torch.from_numpy(P)),
                 lambda: imp.transform(T, mask=torch.from_numpy(P)), lambda: imp.predict(T, mask=torch.from_numpy(P))):
        with pytest.raises(TypeError, match=rf"modality 0 .*{dt}.*float32 or float64.*\.float\(\)"):
            call()
    T64 = [torch.from_numpy(np.nan_to_num(x)) for x in Xs]
    out = [torch.empty(x.shape, dtype=torch.float64) for x in Xs]
    out[1] = out[1].to(torch.bfloat16)
    with pytest.raises((TypeError, ValueError), match=r"out\[1\]"):
        imp.transform(T64, mask=torch.from_numpy(P), out=out)


def test_modality_dims_with_list_input_must_agree(fitted):
    # Ignored silently before; now a disagreement is an error, an agreement is the same data.
    _, Xs, P = fitted
    widths = [x.shape[1] for x in Xs]
    wrong = widths[::-1] if widths[::-1] != widths else [w + 1 for w in widths]
    with pytest.raises(ValueError, match=r"modality_dims=.* does not match the widths"):
        ul4m4.UL4M4Imputer(3, modality_dims=wrong).fit(Xs)
    dense = ul4m4.UL4M4Imputer(3, modality_dims=widths, random_state=0).fit(np.hstack(Xs))
    dense.transform(Xs)  # the same modalities given as a list
    dense.set_params(modality_dims=wrong)
    with pytest.raises(ValueError, match=r"modality_dims=.* does not match the widths"):
        dense.transform(Xs)


def test_dask_reads_masks_and_byte_orders_like_the_api():
    """The Dask path: 0/1 integer masks (checked block by block, the row named in the whole
    array) and big-endian blocks, as the in-memory API reads them."""
    dask = pytest.importorskip("dask")
    da = pytest.importorskip("dask.array")
    from ul4m4 import dask as udask

    Xs, P = _data(n=600)
    imp = ul4m4.UL4M4Imputer(4, random_state=0).fit(Xs, mask=P)
    ref = imp.transform(Xs, mask=P)
    dXs = [da.from_array(x.astype(x.dtype.newbyteorder(">")), chunks=(200, x.shape[1])) for x in Xs]
    with dask.config.set(scheduler="synchronous"):
        filled = udask.transform(imp, dXs, da.from_array(P.astype(">i2"), chunks=(200, 3)), client=None)[0]
        _same(ref, dask.compute(*filled))
        bad = P.astype(np.int8)
        bad[450, 1] = 5
        with pytest.raises(ValueError, match=r"only 0 and 1.*row 450, modality 1 holds 5"):
            dask.compute(*udask.transform(imp, dXs, da.from_array(bad, chunks=(200, 3)), client=None)[0])
        with pytest.raises(TypeError, match=r"integers 0/1"):
            udask.transform(imp, dXs, da.from_array(P.astype(np.float32), chunks=(200, 3)), client=None)
