"""transform(..., out=...): caller buffers and in-place completion."""
import numpy as np
import pytest

import ul4m4


@pytest.fixture
def fitted():
    rng = np.random.default_rng(0)
    X = [rng.normal(size=(300, 5)).astype(np.float32), rng.normal(size=(300, 3))]
    P = np.ones((300, 2), bool)
    P[::3, 1] = False
    P[1::3, 0] = False
    return ul4m4.UL4M4Imputer(4, random_state=0).fit(X, mask=P), X, P


@pytest.mark.parametrize("completion", ["greedy", "soft"])
def test_out_buffers_and_in_place_equal_fresh_result(fitted, completion):
    imp, X, P = fitted
    ref = imp.transform(X, mask=P, completion=completion)
    out = [np.full_like(x, 7.0) for x in X]
    assert imp.transform(X, mask=P, out=out, completion=completion) is out
    Xc = [x.copy() for x in X]
    imp.transform(Xc, mask=P, out=Xc, completion=completion)
    for a, b, c in zip(ref, out, Xc):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)


def test_out_dense_in_place():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 6))
    X[::4, 4:] = np.nan
    imp = ul4m4.UL4M4Imputer(3, modality_dims=[4, 2], random_state=0).fit(X)
    ref = imp.transform(X)
    Xc = X.copy()
    assert imp.transform(Xc, out=Xc) is Xc
    np.testing.assert_array_equal(ref, Xc)
    assert not np.isnan(Xc).any()


def test_out_rejects_bad_buffers(fitted):
    imp, X, P = fitted
    with pytest.raises(ValueError, match="shape"):
        imp.transform(X, mask=P, out=[X[0][1:], np.empty((300, 3))])
    with pytest.raises(ValueError, match="dtype"):
        imp.transform(X, mask=P, out=[np.empty((300, 5)), np.empty((300, 3))])
    with pytest.raises(ValueError, match="overlaps"):
        # a buffer shifted by one row inside modality 1's memory
        buf = np.empty((301, 3))
        buf[:300] = X[1]
        X1 = buf[:300]
        imp.transform([X[0], X1], mask=P, out=[np.empty((300, 5), np.float32), buf[1:]])
    ro = np.empty((300, 3))
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        imp.transform(X, mask=P, out=[np.empty((300, 5), np.float32), ro])
    with pytest.raises(TypeError, match="list"):
        imp.transform(X, mask=P, out=np.empty((300, 8)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("offset", [0, 1, 3])
def test_out_rows_at_any_alignment_and_width(dtype, offset):
    """Output rows are written with non-temporal stores after an alignment prologue: rows
    shorter than the streaming threshold, longer ones whose length is not a multiple of the
    vector width, and views whose rows start at any element offset give the fresh result."""
    rng = np.random.default_rng(1)
    dims = [3, 67, 301]  # 12..2408 bytes per row
    X = [rng.normal(size=(200, d)).astype(dtype) for d in dims]
    P = rng.random((200, 3)) < 0.6
    P[~P.any(axis=1), 0] = True
    for c in ("greedy", "soft"):
        imp = ul4m4.UL4M4Imputer(5, random_state=0, completion=c).fit(X, mask=P)
        ref = imp.transform(X, mask=P)
        bufs = [np.full((200, d + 5), -3.0, dtype=dtype) for d in dims]
        out = [b[:, offset:offset + d] for b, d in zip(bufs, dims)]
        imp.transform(X, mask=P, out=out)
        for r, o, b, d in zip(ref, out, bufs, dims):
            np.testing.assert_array_equal(r, o)
            assert (b[:, :offset] == -3.0).all() and (b[:, offset + d:] == -3.0).all()


def test_soft_error_mid_chunk_leaves_no_queued_rows():
    """A NaN in an observed slot of a complete row is found while soft rows of the same chunk
    are already queued; the call raises, and later calls on the same threads are unaffected."""
    rng = np.random.default_rng(2)
    X = [rng.normal(size=(3000, 20)).astype(np.float32), rng.normal(size=(3000, 12)).astype(np.float32)]
    P = rng.random((3000, 2)) < 0.7
    P[~P.any(axis=1), 0] = True
    imp = ul4m4.UL4M4Imputer(6, random_state=0, completion="soft", n_threads=1, chunk_size=256).fit(X, mask=P)
    ref = imp.transform(X, mask=P)
    bad = [x.copy() for x in X]
    i = int(np.flatnonzero(P.all(axis=1) & (np.arange(3000) > 200))[0])
    bad[0][i, 3] = np.nan
    for _ in range(3):
        with pytest.raises(ValueError, match="NaN or inf"):
            imp.transform(bad, mask=P)
    for a, b in zip(ref, imp.transform(X, mask=P)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_soft_rows_in_groups_equal_rows_alone(dtype):
    """Soft completion sums the centre rows for two queued rows at a time, sharing the
    loads; every grouping must give the bits of completing each row alone, at every SIMD
    level, including rows whose weights are mostly exact zeros (a small temperature cuts
    them)."""
    rng = np.random.default_rng(5)
    dims = [16, 40, 23]
    X = [rng.normal(size=(150, d)).astype(dtype) * (1 + m) for m, d in enumerate(dims)]
    P = rng.random((150, 3)) < 0.5
    P[~P.any(axis=1), 1] = True
    imp = ul4m4.UL4M4Imputer(9, random_state=0, completion="soft", chunk_size=64).fit(X, mask=P)
    level = ul4m4.simd_level()
    try:
        for lv in ul4m4.available_simd_levels():
            ul4m4.set_simd_level(lv)
            for ts in (1.0, 1 / 64):
                out = imp.transform(X, mask=P, temperature_scale=ts)
                for i in range(0, 150, 7):
                    one = imp.transform([x[i:i + 1] for x in X], mask=P[i:i + 1], temperature_scale=ts)
                    for m in range(3):
                        np.testing.assert_array_equal(one[m][0], out[m][i], err_msg=f"{lv} ts={ts} row {i}")
    finally:
        ul4m4.set_simd_level(level)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_soft_uniform_model_shortcut_gives_the_general_bits(dtype):
    """When every centre carries every modality, soft completion sums each row's distances
    loop by loop over the centres and reuses one missing slot's weights for the others.
    A second model with the same centres plus a far one that lacks modality 1 takes the
    general path; at a fixed temperature the far centre's weight is an exact 0, so every
    filled value must have the same bits, at every SIMD level, in float32 and float64."""
    rng = np.random.default_rng(11)
    dims = [16, 40, 23]
    X = [rng.normal(size=(300, d)).astype(dtype) * (1 + m) for m, d in enumerate(dims)]
    P = rng.random((300, 3)) < 0.45
    P[~P.any(axis=1), 2] = True
    assert ((~P).sum(axis=1) == 2).any() and ((~P).sum(axis=1) == 1).any()
    rows = np.flatnonzero(P.all(axis=1))[:7]
    C = [x[rows] for x in X]
    far = [np.full((1, d), 1e4, dtype) for d in dims]
    H_far = np.array([[True, False, True]])
    uni = ul4m4.UL4M4Imputer(7, init=(C, np.ones((7, 3), bool)), max_iter=0).fit(X, mask=P)
    gen = ul4m4.UL4M4Imputer(8, init=([np.vstack([c, f]) for c, f in zip(C, far)],
                                      np.vstack([np.ones((7, 3), bool), H_far])), max_iter=0).fit(X, mask=P)
    assert uni.center_mask_.all() and not gen.center_mask_.all()
    level = ul4m4.simd_level()
    try:
        for lv in ul4m4.available_simd_levels():
            ul4m4.set_simd_level(lv)
            a, ia, ua = uni.transform(X, mask=P, completion="soft", temperature=0.5, return_masks=True)
            b, ib, ub = gen.transform(X, mask=P, completion="soft", temperature=0.5, return_masks=True)
            for m in range(3):
                np.testing.assert_array_equal(a[m], b[m], err_msg=f"{lv} modality {m}")
            np.testing.assert_array_equal(ia, ib)
            np.testing.assert_array_equal(ua, ub)
    finally:
        ul4m4.set_simd_level(level)
