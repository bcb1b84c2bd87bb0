"""Input validation: every bad input raises ValueError or TypeError naming the problem,
the caller's arrays are never modified (after errors and after successful calls), and
strided / non-contiguous / float32 inputs are accepted with the same results."""
import numpy as np
import pytest

import ul4m4
from ul4m4 import NotFittedError


# --------------------------------------------------------------------------- helpers
def make_data(n=30, dims=(4, 3, 5), dtype=np.float64, seed=0, nan_absent=True):
    rng = np.random.default_rng(seed)
    Xs = [(rng.normal(size=(n, d)) * 2 + 1).astype(dtype) for d in dims]
    P = rng.random((n, len(dims))) < 0.7
    P[:, 0] |= ~P.any(axis=1)
    P[:5] = True
    if nan_absent:
        for m, X in enumerate(Xs):
            X[~P[:, m]] = np.nan
    return Xs, P


class Guard:
    """Copies of every array passed in; ``check()`` asserts none was modified."""

    def __init__(self, *objs):
        self.items = []
        for o in objs:
            self._add(o)

    def _add(self, o):
        if isinstance(o, (list, tuple)):
            for x in o:
                self._add(x)
        elif isinstance(o, np.ndarray):
            self.items.append((o, o.copy()))

    def check(self):
        for a, c in self.items:
            assert a.dtype == c.dtype and a.shape == c.shape
            assert np.array_equal(a, c, equal_nan=a.dtype.kind in "fc"), "a caller's array was modified"
            if a.dtype.kind == "f":  # bit-for-bit, signed zeros and NaN payloads included
                ui = {2: np.uint16, 4: np.uint32, 8: np.uint64}[a.itemsize]
                assert np.array_equal(np.ascontiguousarray(a).view(ui), np.ascontiguousarray(c).view(ui))


def raises(exc, match, fn, *guarded):
    g = Guard(*guarded)
    with pytest.raises(exc, match=match):
        fn()
    g.check()


@pytest.fixture
def data():
    return make_data()


@pytest.fixture
def fitted(data):
    Xs, P = data
    g = Guard(Xs, P)
    imp = ul4m4.UL4M4Imputer(3, random_state=0, n_threads=1).fit(Xs, mask=P)
    g.check()
    return imp


# --------------------------------------------------------------------------- shapes
def test_mismatched_row_counts(data, fitted):
    Xs, P = data
    bad = [Xs[0], Xs[1][:-1], Xs[2]]
    raises(ValueError, r"modality 1 has 29 rows but modality 0 has 30", lambda: ul4m4.UL4M4Imputer(2).fit(bad), bad)
    raises(ValueError, r"modality 1 has 29 rows", lambda: fitted.transform(bad), bad)
    raises(ValueError, r"modality 1 has 29 rows", lambda: fitted.predict(bad), bad)


def test_mask_wrong_shape(data, fitted):
    Xs, P = data
    for bad in (P[:-1], P[:, :2], P[:, 0], np.ones((30, 4), bool)):
        raises(ValueError, r"mask has shape .* expected \(n_samples, n_modalities\) = \(30, 3\)",
               lambda: ul4m4.UL4M4Imputer(2).fit(Xs, mask=bad), Xs, bad)
        raises(ValueError, r"mask has shape", lambda: fitted.transform(Xs, mask=bad), Xs, bad)


@pytest.mark.parametrize("dt", [np.float64, np.float32, np.float16, np.complex64])
def test_mask_wrong_dtype(data, fitted, dt):
    Xs, P = data
    bad = P.astype(dt)
    raises(TypeError, rf"mask must be a boolean array .*0/1.*{np.dtype(dt).name}",
           lambda: ul4m4.UL4M4Imputer(2).fit(Xs, mask=bad), Xs, bad)
    raises(TypeError, r"mask must be a boolean array", lambda: fitted.transform(Xs, mask=bad), Xs, bad)
    raises(TypeError, r"mask must be a boolean array", lambda: fitted.predict(Xs, mask=bad), Xs, bad)


@pytest.mark.parametrize("dt", [np.int64, np.uint8, np.int8, ">i4", "<u2", ">u8"])
def test_integer_01_mask_accepted_like_the_command_line(data, fitted, dt):
    """0/1 integer masks (any width and byte order) mean what the boolean mask means, as on
    the command line; any other value is refused naming the slot."""
    Xs, P = data
    m = P.astype(dt)
    ref = ul4m4.UL4M4Imputer(2, random_state=0).fit(Xs, mask=P)
    got = ul4m4.UL4M4Imputer(2, random_state=0).fit(Xs, mask=m)
    np.testing.assert_array_equal(ref.labels_, got.labels_)
    for a, b in zip(fitted.transform(Xs, mask=P), fitted.transform(Xs, mask=m)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(fitted.predict(Xs, mask=P), fitted.predict(Xs, mask=m))
    bad = m.copy()
    bad[3, 1] = 2
    raises(ValueError, r"only 0 and 1.*row 3, modality 1 holds 2", lambda: fitted.transform(Xs, mask=bad), Xs, bad)
    raises(ValueError, r"only 0 and 1", lambda: ul4m4.UL4M4Imputer(2).fit(Xs, mask=bad), Xs, bad)


def test_boolean_mask_passed_as_y(data):
    Xs, P = data
    raises(TypeError, r"boolean 2-D array was passed as y.*mask=", lambda: ul4m4.UL4M4Imputer(2).fit(Xs, P), Xs, P)


# --------------------------------------------------------------------------- values
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_nonfinite_in_observed_slot_fit(value, dtype):
    Xs, P = make_data(dtype=dtype)
    i = int(np.flatnonzero(P[:, 1])[3])
    Xs[1][i, 2] = value
    raises(ValueError, rf"NaN or inf in an observed slot: row {i} of modality 1",
           lambda: ul4m4.UL4M4Imputer(2, random_state=0).fit(Xs, mask=P), Xs, P)


@pytest.mark.parametrize("value", [np.nan, np.inf])
@pytest.mark.parametrize("row_kind", ["incomplete", "complete"])
@pytest.mark.parametrize("method", ["transform", "predict", "transform_soft"])
def test_nonfinite_in_observed_slot_new_data(fitted, value, row_kind, method):
    """Same rule at transform / predict time, for rows that need completion and for
    complete rows (which a completion could otherwise copy through untouched)."""
    Xs, P = make_data(seed=1)
    P[7] = [True, True, False]
    P[8] = True
    Xs[2][7] = np.nan
    i = 7 if row_kind == "incomplete" else 8
    Xs[0][i, 1] = value
    if method == "predict":
        fn = lambda: fitted.predict(Xs, mask=P)  # noqa: E731
    else:
        mode = "soft" if method == "transform_soft" else "greedy"
        fn = lambda: fitted.transform(Xs, mask=P, completion=mode)  # noqa: E731
    raises(ValueError, rf"NaN or inf in an observed slot: row {i} of modality 0", fn, Xs, P)


def test_inf_without_mask_is_an_observed_value(fitted):
    """Without a mask only an all-NaN row is absent; an inf is an observed bad value."""
    Xs, _ = make_data(seed=2)
    i = int(np.flatnonzero(~np.isnan(Xs[0][:, 0]))[0])
    Xs[0][i, 0] = np.inf
    raises(ValueError, rf"NaN or inf in an observed slot: row {i} of modality 0",
           lambda: ul4m4.UL4M4Imputer(2, random_state=0).fit(Xs), Xs)
    raises(ValueError, rf"NaN or inf in an observed slot: row {i} of modality 0", lambda: fitted.transform(Xs), Xs)


def test_partly_nan_row_without_mask(data, fitted):
    Xs, P = data
    i = int(np.flatnonzero(P[:, 2])[2])
    Xs[2][i, 1] = np.nan
    raises(ValueError, rf"row {i} of modality 2 is partly NaN \(1 of 5 values\)",
           lambda: ul4m4.UL4M4Imputer(2).fit(Xs), Xs)
    raises(ValueError, rf"row {i} of modality 2 is partly NaN", lambda: fitted.transform(Xs), Xs)
    raises(ValueError, rf"row {i} of modality 2 is partly NaN", lambda: fitted.predict(Xs), Xs)


def test_row_with_no_observed_modality(data, fitted):
    Xs, P = data
    P = P.copy()
    P[11] = False
    raises(ValueError, r"1 row\(s\) observe no modality \(first: row 11\).*empty_rows='mean'",
           lambda: ul4m4.UL4M4Imputer(2).fit(Xs, mask=P), Xs, P)
    raises(ValueError, r"observe no modality \(first: row 11\)", lambda: fitted.transform(Xs, mask=P), Xs, P)
    # accepted with empty_rows='mean': label -1, training means, reported unfilled
    g = Guard(Xs, P)
    imp = ul4m4.UL4M4Imputer(3, empty_rows="mean", random_state=0).fit(Xs, mask=P)
    out, imputed, unfilled = imp.transform(Xs, mask=P, return_masks=True)
    g.check()
    assert imp.labels_[11] == -1
    assert unfilled[11].all() and not imputed[11].any()
    for m in range(3):
        np.testing.assert_allclose(out[m][11], imp.mean_[m], rtol=1e-12)
    # the same rows without a mask (all NaN)
    Xn = [X.copy() for X in Xs]
    for X in Xn:
        X[11] = np.nan
    imp2 = ul4m4.UL4M4Imputer(3, empty_rows="mean", random_state=0).fit(Xn)
    assert imp2.labels_[11] == -1
    raises(ValueError, r"observe no modality", lambda: ul4m4.UL4M4Imputer(3).fit(Xn), Xn)


def test_modality_never_observed():
    Xs, P = make_data()
    P[:, 0] = True
    P[:, 2] = False
    raises(ValueError, r"modality 2 has no observed row", lambda: ul4m4.UL4M4Imputer(2).fit(Xs, mask=P), Xs, P)


def test_k_larger_than_eligible_rows():
    Xs, P = make_data(n=8)
    raises(ValueError, r"n_clusters=9 is larger than the 8 rows",
           lambda: ul4m4.UL4M4Imputer(9, random_state=0).fit(Xs, mask=P), Xs, P)
    P = P.copy()
    P[:3] = False
    raises(ValueError, r"n_clusters=6 is larger than the 5 rows with at least one observed modality",
           lambda: ul4m4.UL4M4Imputer(6, empty_rows="mean", random_state=0).fit(Xs, mask=P), Xs, P)
    ul4m4.UL4M4Imputer(5, empty_rows="mean", random_state=0).fit(Xs, mask=P)  # exactly enough


def test_not_fitted(data):
    Xs, P = data
    imp = ul4m4.UL4M4Imputer(2)
    for fn in (lambda: imp.transform(Xs, mask=P), lambda: imp.predict(Xs, mask=P),
               lambda: imp.transform(Xs)):
        raises(NotFittedError, r"not fitted yet: call fit first", fn, Xs, P)
    assert issubclass(NotFittedError, ValueError)


def test_save_unfitted_leaves_no_file(tmp_path):
    imp = ul4m4.UL4M4Imputer(2)
    with pytest.raises(NotFittedError, match=r"not fitted yet"):
        imp.save(tmp_path / "m.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "save() of an unfitted model left a file behind"


def test_different_modalities_or_widths_at_transform(data, fitted):
    Xs, P = data
    P2 = P[:, :2].copy()
    P2[:, 0] = True
    raises(ValueError, r"X has 2 modalities but the model was fitted on 3",
           lambda: fitted.transform(Xs[:2], mask=P2), Xs, P2)
    raises(ValueError, r"X has 4 modalities but the model was fitted on 3",
           lambda: fitted.transform(Xs + [Xs[0]], mask=np.hstack([P, P[:, :1]])), Xs, P)
    bad = [Xs[0], Xs[1][:, :2], Xs[2]]
    raises(ValueError, r"modality 1 has width 2 but the model was fitted with 3",
           lambda: fitted.transform(bad, mask=P), bad, P)
    raises(ValueError, r"modality 1 has width 2", lambda: fitted.predict(bad, mask=P), bad, P)


def test_empty_input(data, fitted):
    Xs, P = data
    z = [X[:0] for X in Xs]
    raises(ValueError, r"X has no rows", lambda: ul4m4.UL4M4Imputer(2).fit(z), z)
    raises(ValueError, r"X has no rows", lambda: ul4m4.UL4M4Imputer(2).fit(z, mask=P[:0]), z)
    raises(ValueError, r"X has no rows", lambda: fitted.transform(z), z)
    raises(ValueError, r"X is an empty list", lambda: ul4m4.UL4M4Imputer(2).fit([]))
    raises(ValueError, r"X is an empty list", lambda: fitted.transform([]))
    raises(ValueError, r"X is an empty list", lambda: fitted.transform(()))
    raises(ValueError, r"modality 0 has width 0", lambda: ul4m4.UL4M4Imputer(2).fit([Xs[0][:, :0], Xs[1]]), Xs)


@pytest.mark.parametrize("dt", [np.int64, np.int32, np.uint8, np.bool_])
def test_integer_input(data, fitted, dt):
    Xs, P = make_data(nan_absent=False)
    bad = [Xs[0].astype(dt), Xs[1], Xs[2]]
    raises(TypeError, rf"modality 0 has dtype {np.dtype(dt).name}.*float32 or float64",
           lambda: ul4m4.UL4M4Imputer(2).fit(bad, mask=P), bad, P)
    raises(TypeError, rf"modality 0 has dtype {np.dtype(dt).name}", lambda: fitted.transform(bad, mask=P), bad, P)
    # the one-2-D-array (scikit-learn) form converts to float64, as scikit-learn's estimators do
    dense = np.hstack(Xs).astype(dt)
    out = ul4m4.UL4M4Imputer(2, modality_dims=[4, 3, 5], random_state=0).fit_transform(dense)
    assert out.dtype == np.float64 and np.array_equal(out, dense)


@pytest.mark.parametrize("dt", [np.float16, np.complex128, object])
def test_other_dtypes(dt):
    Xs, P = make_data(nan_absent=False)
    bad = [Xs[0].astype(dt), Xs[1], Xs[2]]
    raises(TypeError, r"modality 0 has (unsupported )?dtype", lambda: ul4m4.UL4M4Imputer(2).fit(bad, mask=P), bad, P)


def test_not_an_array():
    raises(TypeError, r"X: expected a numpy array or torch tensor, got str", lambda: ul4m4.UL4M4Imputer(2).fit("abc"))
    raises(TypeError, r"got NoneType", lambda: ul4m4.UL4M4Imputer(2).fit(None))


def test_one_dimensional_arrays(data, fitted):
    Xs, P = data
    bad = [Xs[0][:, 0], Xs[1], Xs[2]]
    raises(ValueError, r"modality 0 must be 2-D \(n_samples, d_0\), got shape \(30,\)",
           lambda: ul4m4.UL4M4Imputer(2).fit(bad, mask=P), bad, P)
    raises(ValueError, r"modality 0 must be 2-D", lambda: fitted.transform(bad, mask=P), bad, P)
    one = Xs[0][:, 0].copy()
    raises(ValueError, r"X must be a list of per-modality 2-D arrays, or one 2-D array with modality_dims",
           lambda: ul4m4.UL4M4Imputer(2, modality_dims=[30]).fit(one), one)
    three = np.zeros((2, 3, 4))
    raises(ValueError, r"got shape \(2, 3, 4\)", lambda: ul4m4.UL4M4Imputer(2, modality_dims=[12]).fit(three), three)


def test_modality_dims(data):
    Xs, P = data
    dense = np.hstack(Xs)
    for dims in ([4, 3], [4, 3, 6], [4, 0, 8], [5, -1, 8]):
        raises(ValueError, r"modality_dims .* must be positive and sum to X's 12 columns",
               lambda: ul4m4.UL4M4Imputer(2, modality_dims=dims).fit(dense), dense)
    # without modality_dims, each column is a modality of its own (tests/test_sklearn.py)
    assert ul4m4.UL4M4Imputer(2, random_state=0).fit(dense).modality_dims_ == (1,) * 12
    imp = ul4m4.UL4M4Imputer(2, modality_dims=[4, 3, 5], random_state=0).fit(dense)
    wide = np.hstack([dense, dense[:, :1]])
    raises(ValueError, r"X has 13 features, but UL4M4Imputer is expecting 12 features as input",
           lambda: imp.transform(wide), wide)


# --------------------------------------------------------------------------- parameters
@pytest.mark.parametrize("kw,match", [
    (dict(n_clusters=0), r"n_clusters must be an int >= 1, got 0"),
    (dict(n_clusters=2.5), r"n_clusters must be an int >= 1, got 2.5"),
    (dict(n_clusters=True), r"n_clusters must be an int >= 1, got True"),
    (dict(n_init=0), r"n_init must be an int >= 1"),
    (dict(max_iter=-1), r"max_iter must be an int >= 0"),
    (dict(chunk_size=0), r"chunk_size must be an int >= 1"),
    (dict(tol=-1e-3), r"tol must be a float >= 0"),
    (dict(tol=float("nan")), r"tol must be a float >= 0"),
    (dict(completion="x"), r"completion must be 'greedy', 'soft' or 'auto', got 'x'"),
    (dict(temperature=0.0), r"temperature must be None or a finite float > 0, got 0.0"),
    (dict(temperature=-1.0), r"temperature must be None or a finite float > 0"),
    (dict(temperature=float("inf")), r"temperature must be None or a finite float > 0"),
    (dict(temperature_scale=0.0), r"temperature_scale must be a finite float > 0"),
    (dict(temperature_scale=-2.0), r"temperature_scale must be a finite float > 0"),
    (dict(empty_rows="x"), r"empty_rows must be 'error' or 'mean', got 'x'"),
    (dict(n_threads=0), r"n_threads must be None or a positive int, got 0"),
    (dict(n_threads=-1), r"n_threads must be None or a positive int"),
    (dict(random_state=-1), r"random_state must be None, a non-negative int or a numpy Generator"),
    (dict(init="random"), r"init must be 'k-means\+\+' or a pair \(centres, presence_mask\)"),
])
def test_bad_parameters(data, kw, match):
    Xs, P = data
    params = dict(n_clusters=2, random_state=0)
    params.update(kw)
    raises(ValueError, match, lambda: ul4m4.UL4M4Imputer(**params).fit(Xs, mask=P), Xs, P)


def test_bad_transform_overrides(data, fitted):
    Xs, P = data
    raises(ValueError, r"completion must be 'greedy', 'soft' or 'auto', got 'x'", lambda: fitted.transform(Xs, mask=P, completion="x"), Xs)
    raises(ValueError, r"temperature must be None or a finite float > 0",
           lambda: fitted.transform(Xs, mask=P, temperature=0.0), Xs)
    raises(ValueError, r"temperature_scale must be a finite float > 0",
           lambda: fitted.transform(Xs, mask=P, temperature_scale=-1.0), Xs)
    fitted.n_threads = 0
    raises(ValueError, r"n_threads must be None or a positive int", lambda: fitted.transform(Xs, mask=P), Xs)


def test_set_params_unknown():
    with pytest.raises(ValueError, match=r"invalid parameter 'foo' for UL4M4Imputer"):
        ul4m4.UL4M4Imputer().set_params(foo=1)


# --------------------------------------------------------------------------- explicit init
def _init(Xs, P, rows):
    C = [X[rows].astype(np.float64) for X in Xs]
    H = P[rows].copy()
    for m, c in enumerate(C):
        c[~H[:, m]] = np.nan
    return C, H


def test_explicit_init_errors(data):
    Xs, P = data
    C, H = _init(Xs, P, [0, 1, 2])
    fit = lambda init, K=3: ul4m4.UL4M4Imputer(K, init=init).fit(Xs, mask=P)  # noqa: E731
    raises(ValueError, r"init presence mask must have shape \(n_clusters, M\) = \(3, 3\)",
           lambda: fit((C, H[:2])), Xs, P, C, H)
    raises(ValueError, r"init presence mask must have shape \(n_clusters, M\) = \(2, 3\)",
           lambda: fit((C, H), K=2), C, H)
    raises(TypeError, r"init presence mask must be a boolean array", lambda: fit((C, H.astype(int))), C, H)
    raises(ValueError, r"init presence mask .* \(3, 3\)", lambda: fit((C, H[:, :2])), C, H)
    raises(ValueError, r"init centres must be a list of 3 arrays, one per modality", lambda: fit((C[:2], H)), C, H)
    raises(ValueError, r"init centres must be a list of 3 arrays", lambda: fit((C[0], H)), C, H)
    badC = [C[0], C[1][:2], C[2]]
    raises(ValueError, r"init centres of modality 1 must have shape \(3, 3\), got \(2, 3\)", lambda: fit((badC, H)), C, H)
    badC = [C[0], C[1], C[2][:, :4]]
    raises(ValueError, r"init centres of modality 2 must have shape \(3, 5\), got \(3, 4\)", lambda: fit((badC, H)), C, H)
    H2 = H.copy()
    H2[1] = False
    raises(ValueError, r"initial centre 1 has no modality", lambda: fit((C, H2)), C, H2)
    C2 = [c.copy() for c in C]
    C2[0][0, 0] = np.nan
    raises(ValueError, r"init centres of modality 0 have NaN or inf in a present slot", lambda: fit((C2, H)), C2, H)
    raises(ValueError, r"init must be 'k-means\+\+' or a pair", lambda: fit((C, H, H)), C, H)


def test_explicit_init_absent_slots_not_read(data):
    """Garbage (inf, huge) where an initial centre lacks a modality must be ignored."""
    Xs, P = data
    rows = [int(np.flatnonzero(~P[:, 1])[0]), 0, 1]
    C, H = _init(Xs, P, rows)
    assert not H[0, 1]
    ref_imp = ul4m4.UL4M4Imputer(3, init=(C, H), n_threads=1).fit(Xs, mask=P)
    Cg = [c.copy() for c in C]
    Cg[1][0] = np.inf
    g = Guard(Cg, H)
    imp = ul4m4.UL4M4Imputer(3, init=(Cg, H), n_threads=1).fit(Xs, mask=P)
    g.check()
    np.testing.assert_array_equal(imp.labels_, ref_imp.labels_)
    for a, b in zip(imp.cluster_centers_, ref_imp.cluster_centers_):
        assert np.array_equal(a, b, equal_nan=True)


# --------------------------------------------------------------------------- layouts and dtypes
def _results(imp, Xs, P, dense=False):
    if dense:
        imp.fit(Xs)
        out, i, u = imp.transform(Xs, return_masks=True)
    else:
        imp.fit(Xs, mask=P)
        out, i, u = imp.transform(Xs, mask=P, return_masks=True)
    return dict(labels=imp.labels_, C=imp.cluster_centers_, inertia=imp.inertia_, mean=imp.mean_,
                scale=imp.scale_, out=out, i=i, u=u, pred=imp.predict(Xs, mask=None if dense else P))


def _same(a, b):
    np.testing.assert_array_equal(a["labels"], b["labels"])
    np.testing.assert_array_equal(a["pred"], b["pred"])
    np.testing.assert_array_equal(a["i"], b["i"])
    np.testing.assert_array_equal(a["u"], b["u"])
    assert a["inertia"] == b["inertia"]
    for k in ("C", "mean", "scale"):
        for x, y in zip(a[k], b[k]):
            assert np.array_equal(x, y, equal_nan=True)
    outs_a = a["out"] if isinstance(a["out"], list) else [a["out"]]
    outs_b = b["out"] if isinstance(b["out"], list) else [b["out"]]
    for x, y in zip(outs_a, outs_b):
        assert x.dtype == y.dtype
        assert np.array_equal(x, y, equal_nan=True)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("layout", ["cols_step2", "fortran", "rows_step2", "reversed_rows", "transposed_copy"])
def test_strided_inputs_same_as_contiguous(dtype, layout):
    rng = np.random.default_rng(3)
    n = 60
    big = [(rng.normal(size=(n, 2 * d)) * 3).astype(dtype) for d in (4, 3, 6)]
    Pbig = rng.random((n, 3)) < 0.7
    Pbig[:, 0] = True
    if layout == "cols_step2":
        Xs, P = [B[:, ::2] for B in big], Pbig
    elif layout == "fortran":
        Xs, P = [np.asfortranarray(B[:, : B.shape[1] // 2]) for B in big], np.asfortranarray(Pbig)
    elif layout == "rows_step2":
        Xs, P = [B[::2, : B.shape[1] // 2] for B in big], Pbig[::2]
    elif layout == "reversed_rows":
        Xs, P = [B[::-1, : B.shape[1] // 2] for B in big], Pbig[::-1]
    else:
        Xs, P = [np.ascontiguousarray(B[:, : B.shape[1] // 2].T).T for B in big], Pbig.T.copy().T
    assert not all(X.flags.c_contiguous for X in Xs)
    g = Guard(Xs, P, big, Pbig)
    Xc, Pc = [np.ascontiguousarray(X) for X in Xs], np.ascontiguousarray(P)
    kw = dict(n_clusters=4, random_state=5, n_threads=1, chunk_size=7)
    a = _results(ul4m4.UL4M4Imputer(**kw), Xs, P)
    b = _results(ul4m4.UL4M4Imputer(**kw), Xc, Pc)
    g.check()
    _same(a, b)
    for o, X in zip(a["out"], Xs):
        assert o.dtype == np.dtype(dtype) and o.shape == X.shape


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("layout", ["fortran", "column_slice", "rows_step2"])
def test_strided_dense_input_same_as_contiguous(dtype, layout):
    Xs, P = make_data(n=40, dtype=dtype, seed=4)
    dense = np.hstack(Xs)
    if layout == "fortran":
        X = np.asfortranarray(dense)
    elif layout == "column_slice":
        wide = np.hstack([dense, np.zeros((40, 3), dtype)])
        X = wide[:, :12]
    else:
        X = np.repeat(dense, 2, axis=0)[::2]
    g = Guard(X)
    kw = dict(n_clusters=3, random_state=1, n_threads=1, modality_dims=[4, 3, 5])
    a = _results(ul4m4.UL4M4Imputer(**kw), X, None, dense=True)
    b = _results(ul4m4.UL4M4Imputer(**kw), np.ascontiguousarray(X), None, dense=True)
    g.check()
    _same(a, b)
    assert isinstance(a["out"], np.ndarray) and a["out"].dtype == np.dtype(dtype) and a["out"].shape == X.shape


@pytest.mark.parametrize("dtypes", [(np.float64,) * 3, (np.float32,) * 3, (np.float32, np.float64, np.float32)])
def test_output_dtype_follows_input(dtypes):
    Xs, P = make_data(seed=6)
    Xs = [X.astype(dt) for X, dt in zip(Xs, dtypes)]
    g = Guard(Xs, P)
    imp = ul4m4.UL4M4Imputer(3, random_state=0)
    out = imp.fit_transform(Xs, mask=P)
    out_nomask = imp.transform(Xs)
    g.check()
    for o, o2, X, dt in zip(out, out_nomask, Xs, dtypes):
        assert o.dtype == np.dtype(dt) and o2.dtype == np.dtype(dt)
        assert o.shape == X.shape
        assert np.array_equal(o, o2)
        assert np.isfinite(o).all()
    # statistics and centres are float64 whatever the input
    assert all(mu.dtype == np.float64 for mu in imp.mean_)
    assert all(c.dtype == np.float64 for c in imp.cluster_centers_)


def test_float32_and_float64_agree():
    Xs, P = make_data(seed=8)
    X32 = [X.astype(np.float32) for X in Xs]
    X64 = [X.astype(np.float64) for X in X32]  # same values
    C, H = _init(X64, P, [0, 1, 2])
    a = ul4m4.UL4M4Imputer(3, init=(C, H)).fit(X32, mask=P)
    b = ul4m4.UL4M4Imputer(3, init=(C, H)).fit(X64, mask=P)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    for x, y in zip(a.mean_, b.mean_):
        np.testing.assert_allclose(x, y, rtol=1e-12)
    oa, ob = a.transform(X32, mask=P), b.transform(X64, mask=P)
    for x, y in zip(oa, ob):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-5)


def test_input_never_modified_on_success(data):
    """fit / transform / predict / fit_transform on list, tuple and dense inputs, with and
    without mask, both completions, absent slots holding garbage (never read, never
    written)."""
    Xs, P = make_data(seed=9, nan_absent=False)
    for m, X in enumerate(Xs):
        X[~P[:, m]] = 1e300
    g = Guard(Xs, P)
    for completion in ("greedy", "soft"):
        imp = ul4m4.UL4M4Imputer(3, random_state=0, completion=completion)
        imp.fit(Xs, mask=P)
        imp.transform(Xs, mask=P, return_masks=True)
        imp.predict(Xs, mask=P)
        imp.fit_transform(tuple(Xs), mask=P)
        g.check()
    Xn, _ = make_data(seed=9)
    dense = np.hstack(Xn)
    g2 = Guard(dense)
    imp = ul4m4.UL4M4Imputer(3, random_state=0, modality_dims=[4, 3, 5])
    out = imp.fit_transform(dense)
    assert out is not dense and not np.shares_memory(out, dense)
    imp.predict(dense)
    g2.check()
