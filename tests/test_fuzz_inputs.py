"""Property-based fuzz of the array inputs of fit / transform / predict (issue 12): dtypes,
byte orders, containers, shapes, strides, masks, NaN placements and out= buffers, alone and
combined. Every case either works, with the result of the same values given as plain
C-contiguous native arrays, or raises ValueError / TypeError with a message of ul4m4's own;
never another exception, a crash, or a change to the caller's arrays.

The number of distinct malformed inputs tried and how many got a clear error is printed at
the end of the module (``pytest -s``) and written to $UL4M4_FUZZ_REPORT when set."""
import json
import os
import re

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import ul4m4  # noqa: E402
from conftest import nan_marked  # noqa: E402

DIMS = (3, 2, 4)
N = 16
DTYPES = ["<f8", "<f4", ">f4", ">f8", "<f2", "<i4", "|b1", "<c8", "O", "<U3"]
LAYOUTS = ["c", "f", "colstep", "rowstep", "reversed", "readonly"]
MASKS = [None, "bool", "int01", ">i2", "int2", "float", "shape", "masked", "inverted", "zeros", "transposed"]
NANS = ["none", "partial", "inf", "allnan"]
SHAPES = ["ok", "drop_modality", "extra_modality", "row_mismatch", "ndim1", "ndim3", "zero_rows", "zero_width",
          "masked_X", "modality_dims_list"]
OUTS = [None, "fresh", "inplace", "permuted", "same_twice", "wrong_dtype", "readonly", "colstep", "view_of_input"]
CONTAINERS = ["list", "tuple", "dense", "nested", "torch"]
METHODS = ["fit", "transform", "predict"]

# what a message must not look like: another layer's internals instead of ul4m4's words
UNCLEAR = re.compile(r"incompatible function arguments|ScalarType|object of type|not subscriptable|"
                     r"unhashable|has no attribute|Traceback|ufunc|could not convert|setting an array element")

STATS = {"cases": set(), "bad": set(), "clear": set(), "accepted": set(), "unclear": []}


def _base(seed):
    return nan_marked(N, DIMS, seed)


@pytest.fixture(scope="module")
def model():
    X, P = _base(123)
    return ul4m4.UL4M4Imputer(3, random_state=0).fit(X, mask=P)


def _layout(a, kind):
    if kind == "f":
        return np.asfortranarray(a)
    if kind == "colstep" and a.ndim == 2:
        b = np.zeros((a.shape[0], 2 * a.shape[1]), a.dtype)
        b[:, ::2] = a
        return b[:, ::2]
    if kind == "rowstep" and a.ndim == 2:
        b = np.zeros((2 * a.shape[0], a.shape[1]), a.dtype)
        b[::2] = a
        return b[::2]
    if kind == "reversed":
        return a[::-1].copy()[::-1]
    if kind == "readonly":
        a = a.copy()
        a.flags.writeable = False
    return a


def _native(a):
    a = np.asarray(a)
    return np.ascontiguousarray(a, a.dtype.newbyteorder("=")) if a.dtype.kind == "f" else a


@st.composite
def cases(draw):
    return dict(seed=draw(st.integers(0, 3)), container=draw(st.sampled_from(CONTAINERS)),
                dtypes=draw(st.lists(st.sampled_from(DTYPES[:4]) | st.sampled_from(DTYPES), min_size=3, max_size=3)),
                layouts=draw(st.lists(st.sampled_from(LAYOUTS), min_size=3, max_size=3)),
                mask=draw(st.sampled_from(MASKS[:4]) | st.sampled_from(MASKS)),
                nan=draw(st.just("none") | st.sampled_from(NANS)),
                shape=draw(st.just("ok") | st.sampled_from(SHAPES)),
                out=draw(st.sampled_from(OUTS[:3]) | st.sampled_from(OUTS)),
                method=draw(st.sampled_from(METHODS)))


def _build(c):
    """(X, mask, out, kw, plain) for case c; plain = (X, mask) as plain native arrays, or None
    when the case has no plain equivalent."""
    X, P = _base(c["seed"])
    if c["nan"] == "partial":
        i = int(np.flatnonzero(P[:, 0])[0])
        X[0][i, 0] = np.nan
    elif c["nan"] == "inf":
        i = int(np.flatnonzero(P[:, 1])[-1])
        X[1][i, 1] = -np.inf
    elif c["nan"] == "allnan":
        X[2][:] = np.nan
        P[:, 2] = False
        P[~P.any(axis=1), 0] = True
        X[0][P[:, 0]] = np.nan_to_num(X[0][P[:, 0]])
    kw = {}
    Xs = [x.astype(dt) if dt not in ("O", "<U3") else x.astype(dt) for x, dt in zip(X, c["dtypes"])]
    Xs = [_layout(x, lay) for x, lay in zip(Xs, c["layouts"])]
    shape = c["shape"]
    if shape == "drop_modality":
        Xs, P = Xs[:2], P[:, :2]
    elif shape == "extra_modality":
        Xs, P = Xs + [Xs[0]], np.hstack([P, P[:, :1]])
    elif shape == "row_mismatch":
        Xs[1] = Xs[1][:-1]
    elif shape == "ndim1":
        Xs[2] = Xs[2][:, 0]
    elif shape == "ndim3":
        Xs[0] = Xs[0][:, :, None]
    elif shape == "zero_rows":
        Xs, P = [x[:0] for x in Xs], P[:0]
    elif shape == "zero_width":
        Xs[1] = Xs[1][:, :0]
    elif shape == "masked_X":
        Xs[0] = np.ma.masked_invalid(Xs[0]) if Xs[0].dtype.kind == "f" else np.ma.masked_array(Xs[0])
    elif shape == "modality_dims_list":
        kw["modality_dims"] = list(DIMS)
    plain = [_native(x) for x in Xs]
    cont = c["container"]
    if cont == "tuple":
        Xin = tuple(Xs)
    elif cont == "dense":
        try:
            Xin = _layout(np.hstack([np.asarray(x).astype(c["dtypes"][0]) for x in Xs]), c["layouts"][0])
            # One 2-D X is the scikit-learn form: float32/float64 kept, integers and bools taken
            # as float64 (as scikit-learn's check_array does), anything else has no plain twin.
            k = Xin.dtype.kind
            if not all(p.ndim == 2 for p in plain):
                plain = None
            elif k == "f" and Xin.dtype.itemsize in (4, 8):
                plain = _native(np.ascontiguousarray(Xin))
            elif k in "iub":
                plain = np.ascontiguousarray(Xin, dtype=np.float64)
            else:
                plain = None
        except (ValueError, TypeError):
            Xin, plain = Xs, None
        kw.setdefault("modality_dims", [np.asarray(x).shape[-1] if np.ndim(x) >= 2 else 1 for x in Xs])
    elif cont == "nested":
        Xin = [np.asarray(x).tolist() for x in Xs]
        plain = [np.asarray(x) for x in Xin]
    elif cont == "torch":
        torch = pytest.importorskip("torch")
        Xin = []
        for x in Xs:
            a = np.asarray(x)
            if a.dtype.kind in "fiub" and a.dtype != np.float16:
                Xin.append(torch.from_numpy(np.array(a, dtype=a.dtype.newbyteorder("="))))
            elif a.dtype == np.float16:
                Xin.append(torch.from_numpy(np.ascontiguousarray(a)).to(torch.bfloat16))
            else:
                Xin.append(x)
        if any(not hasattr(t, "numpy") for t in Xin):  # mix of torch and numpy: an error case
            plain = None
    else:
        Xin = Xs
    mk = c["mask"]
    mask = {None: None, "bool": P, "int01": P.astype(np.int64), ">i2": P.astype(">i2"),
            "int2": P.astype(np.int8) * 2, "float": P.astype(float), "shape": P[:, :-1],
            "masked": np.ma.masked_array(P), "inverted": ~P, "zeros": np.zeros_like(P),
            "transposed": P.T.copy()}[mk]
    plain_mask = P if mk in ("bool", "int01", ">i2") else (None if mk is None else mask)
    if cont == "torch" and mask is not None and isinstance(mask, np.ndarray) and not isinstance(mask, np.ma.MaskedArray) \
            and mask.dtype.isnative:
        mask = __import__("torch").from_numpy(np.ascontiguousarray(mask))
    return Xin, mask, kw, (plain, plain_mask)


def _make_out(kind, X, ref):
    """An out= value for transform, from the plain reference result `ref`."""
    if kind is None or isinstance(ref, np.ndarray) and kind not in ("fresh", "inplace", "wrong_dtype", "readonly"):
        return None
    items = [ref] if isinstance(ref, np.ndarray) else list(ref)
    fresh = [np.full_like(r, 7.0) for r in items]
    if kind == "fresh":
        o = fresh
    elif kind == "inplace":
        return X
    elif kind == "permuted":
        o = [fresh[1], fresh[0], fresh[2]] if len(fresh) == 3 else fresh[::-1]
    elif kind == "same_twice":
        o = [fresh[0]] * len(fresh)
    elif kind == "wrong_dtype":
        o = [f.astype(np.float16) for f in fresh]
    elif kind == "readonly":
        o = fresh
        for f in o:
            f.flags.writeable = False
    elif kind == "colstep":
        o = [_layout(f, "colstep") for f in fresh]
    elif kind == "view_of_input":
        o = [np.asarray(x) if isinstance(x, np.ndarray) else f for x, f in zip(X, fresh)]
        o = o[1:] + o[:1]
    else:
        return None
    return o[0] if isinstance(ref, np.ndarray) else o


def _snapshot(obj):
    if isinstance(obj, (list, tuple)):
        return [_snapshot(o) for o in obj]
    if isinstance(obj, np.ndarray):
        return np.array(obj, copy=True)
    if hasattr(obj, "clone"):
        return obj.clone()
    return obj


def _equal_snap(a, b):
    if isinstance(a, list):
        return all(_equal_snap(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and (
            a.tobytes() == b.tobytes() if a.dtype.kind != "O" else all(x is y or x == y for x, y in zip(a.flat, b.flat)))
    if hasattr(a, "clone"):
        return a.dtype == b.dtype and a.shape == b.shape and bool(((a == b) | ((a != a) & (b != b))).all())
    return True


def _run(imp, method, X, mask, out, kw):
    if method == "fit":
        est = ul4m4.UL4M4Imputer(2, random_state=0, **kw).fit(X, mask=mask)
        return est.labels_
    if kw:
        imp = ul4m4.UL4M4Imputer(**{**imp.get_params(), **kw})
        ref = ul4m4.UL4M4Imputer(3, random_state=0).fit(*_base(123)[:1], mask=_base(123)[1])
        for a in ("mean_", "scale_", "cluster_centers_", "center_mask_", "labels_", "inertia_", "n_iter_",
                  "n_modalities_", "modality_dims_"):
            setattr(imp, a, getattr(ref, a))
        imp._model = None
    if method == "predict":
        return imp.predict(X, mask=mask)
    return imp.transform(X, mask=mask, out=out) if out is not None else imp.transform(X, mask=mask)


def _as_np(r):
    if isinstance(r, (list, tuple)):
        return [_as_np(x) for x in r]
    return r.numpy() if hasattr(r, "numpy") else np.asarray(r)


def _key(c):
    return tuple(sorted((k, str(v)) for k, v in c.items() if k != "seed"))


@settings(max_examples=int(os.environ.get("UL4M4_FUZZ_EXAMPLES", "200")), deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(c=cases())
def test_fuzz_array_inputs(model, c):
    if c["method"] != "transform":
        c["out"] = None
    X, mask, kw, (plain, plain_mask) = _build(c)
    key = _key(c)
    STATS["cases"].add(key)
    before = (_snapshot(X), _snapshot(mask))
    out = None
    if c["out"] is not None and plain is not None:
        try:
            out = _make_out(c["out"], X, _run(model, "transform", plain, plain_mask, None, kw))
        except (ValueError, TypeError):
            out = _make_out(c["out"], X, [np.zeros((N, d)) for d in DIMS])
    try:
        got = _run(model, c["method"], X, mask, out, kw)
    except (ValueError, TypeError) as exc:
        STATS["bad"].add(key)
        msg = str(exc)
        if msg and not UNCLEAR.search(msg):
            STATS["clear"].add(key)
        else:
            STATS["unclear"].append((c, type(exc).__name__, msg[:200]))
        assert msg and not UNCLEAR.search(msg), (c, msg)
        if c["out"] != "inplace":
            assert _equal_snap(_snapshot(X), before[0]), "a caller's array was modified by a failing call"
        return
    STATS["accepted"].add(key)
    if c["out"] != "inplace":
        assert _equal_snap(_snapshot(X), before[0]), "a caller's array was modified"
    if plain is None:
        return
    ref = _run(model, c["method"], plain, plain_mask, None, kw)
    g, r = _as_np(got), _as_np(ref)
    if isinstance(r, list):
        assert len(g) == len(r)
        for a, b in zip(g, r):
            np.testing.assert_array_equal(a, b)
            assert a.dtype == b.dtype
    else:
        np.testing.assert_array_equal(g, r)


def teardown_module(module):
    n_bad, n_clear = len(STATS["bad"]), len(STATS["clear"])
    line = (f"input fuzz: {len(STATS['cases'])} distinct cases, {len(STATS['accepted'])} accepted (result = plain "
            f"arrays'), {n_bad} malformed inputs refused, {n_clear} of them with a clear ValueError/TypeError")
    print("\n" + line)
    path = os.environ.get("UL4M4_FUZZ_REPORT")
    if path:
        with open(path, "w") as fh:
            json.dump({"cases": len(STATS["cases"]), "accepted": len(STATS["accepted"]), "bad": n_bad,
                       "clear": n_clear, "unclear": [(str(c), t, m) for c, t, m in STATS["unclear"]]}, fh, indent=1)
