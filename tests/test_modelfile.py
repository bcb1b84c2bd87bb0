"""The model file loader (ul4m4._modelfile): every defect of a file is a ValueError naming the
member or header field, nothing is read that is not needed, a small file cannot demand
gigabytes, and a model that loads works. Also the core's own guards against such models."""
import json
import os
import pickle
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest

from conftest import cli_inputs, two_modalities
from ul4m4 import UL4M4Imputer, _modelfile
from ul4m4.cli import main

K = 4


def _data(n=60, seed=0):
    return two_modalities(n, seed, only_second_every=4)


@pytest.fixture(scope="module")
def fitted():
    X, P = _data()
    return UL4M4Imputer(K, random_state=0).fit(X, mask=P), X, P


@pytest.fixture
def good(fitted, tmp_path):
    path = tmp_path / "good.npz"
    fitted[0].save(path)
    return path


def _members(path):
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def _write(path, arrays):
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)
    return path


def _with(good, tmp_path, edit, name="edited.npz"):
    a = _members(good)
    edit(a)
    return _write(tmp_path / name, a)


def _header_edit(fn):
    def edit(a):
        h = json.loads(str(a["header"]))
        fn(h)
        a["header"] = np.array(json.dumps(h))
    return edit


def _works(imp, X, P):
    """A loaded model works: greedy and soft completion and predict run, the observed slots
    are kept, the masks partition the missing ones, the outputs are finite."""
    for completion in ("greedy", "soft"):
        out, im, un = imp.transform(X, mask=P, return_masks=True, completion=completion)
        assert not (im & un).any() and np.array_equal(im | un, ~P)
        for m, (o, x) in enumerate(zip(out, X)):
            assert np.isfinite(o).all()
            assert np.array_equal(o[P[:, m]], x[P[:, m]])
    lab = imp.predict(X, mask=P)
    assert ((lab >= -1) & (lab < imp.center_mask_.shape[0])).all()


def _works_or_refuses_data(imp, X, P):
    """_works, except that a model may refuse data that lie outside its range (a finite
    but absurd mean, e.g. 1e300) with a clear ValueError. Returns False then."""
    try:
        _works(imp, X, P)
    except ValueError as exc:
        if "outside the model's range" not in str(exc):
            raise
        return False
    try:
        imp.labels_
    except ValueError as exc:
        assert "labels" in str(exc)
    return True


# ============================================================================ issue items
def test_zero_centre_model_is_refused(good, tmp_path, fitted):
    def edit(a):
        a["center_mask"] = a["center_mask"][:0]
        for m in range(2):
            a[f"centers_{m}"] = a[f"centers_{m}"][:0]
    p = _with(good, tmp_path, edit)
    with pytest.raises(ValueError, match="center_mask.*at least one"):
        UL4M4Imputer.load(p)


def test_zero_centre_model_in_the_core_raises_not_sigfpe(fitted):
    """The core itself refuses K = 0 (another binding may not check): a ValueError, not a
    SIGFPE in completion. Run in a child process: the old core killed it."""
    script = textwrap.dedent("""
        import numpy as np
        from ul4m4 import _core
        mu = [np.zeros(5), np.zeros(3)]; sd = [np.ones(5), np.ones(3)]
        C = [np.zeros((0, 5)), np.zeros((0, 3))]; H = np.zeros((0, 2), np.uint8)
        X = [np.ones((4, 5)), np.ones((4, 3))]; P = np.ones((4, 2), np.uint8); P[0, 1] = 0
        try:
            m = _core.Model(mu, sd, C, H)
            _core.complete(m, X, P, [np.empty((4, 5)), np.empty((4, 3))], "greedy", 1.0, 0.0, 1, 256)
            print("no error")
        except ValueError as e:
            print("ValueError:", e)
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "ValueError: a model needs at least one centre" in r.stdout


@pytest.mark.parametrize("member,value,match", [
    ("scale_0", np.inf, "scale_0"), ("scale_0", 0.0, "scale_0"), ("scale_0", np.nan, "scale_0"),
    ("scale_0", 1e-320, "scale_0"), ("scale_0", 1e-9, "scale_0"), ("scale_1", -1.0, "scale_1"),
    ("mean_0", np.inf, "mean_0"), ("mean_1", np.nan, "mean_1"),
    ("centers_0", np.nan, "centers_0"), ("centers_1", np.inf, "centers_1"),
    ("centers_0", 1e300, "centre 0 of modality 0"),
])
def test_tampered_statistics_and_centres(good, tmp_path, member, value, match):
    def edit(a):
        a[member] = a[member].copy()
        a[member].flat[0] = value
    p = _with(good, tmp_path, edit)
    with pytest.raises(ValueError, match=match):
        UL4M4Imputer.load(p)


@pytest.mark.parametrize("change,match", [
    (lambda h: h.pop("inertia"), "'inertia' is missing"),
    (lambda h: h.__setitem__("inertia", [1, 2]), "'inertia' must be"),
    (lambda h: h["params"].__setitem__("chunk_size", "abc"), "params.chunk_size"),
    (lambda h: h["params"].__setitem__("chunk_size", 2**64), "params.chunk_size"),
    (lambda h: h["params"].__setitem__("max_iter", 2**31), "params.max_iter"),
    (lambda h: h["params"].__setitem__("modality_dims", [5.0, 3.0]), "params.modality_dims"),
    (lambda h: h["params"].__setitem__("modality_dims", [4, 4]), "params.modality_dims"),
    (lambda h: h.__setitem__("format_version", "1"), "'format_version' must be an integer"),
    (lambda h: h.__setitem__("n_iter", -1), "'n_iter'"),
    (lambda h: h.__setitem__("n_modalities", "2"), "'n_modalities'"),
    (lambda h: h.__setitem__("params", []), "'params' must be"),
    (lambda h: h["params"].__setitem__("init", "k-means++"), "unknown parameter 'init'"),
    (lambda h: h["params"].__setitem__("n_clusters", K + 1), "params.n_clusters"),
])
def test_header_fields(good, tmp_path, change, match):
    p = _with(good, tmp_path, _header_edit(change))
    with pytest.raises(ValueError, match=match):
        UL4M4Imputer.load(p)


def test_header_chunk_size_int64_max_works(good, tmp_path, fitted):
    imp, X, P = fitted
    p = _with(good, tmp_path, _header_edit(lambda h: h["params"].update(chunk_size=2**63 - 1, n_threads=3000)))
    ld = UL4M4Imputer.load(p)
    for a, b in zip(ld.transform(X, mask=P), imp.transform(X, mask=P)):
        assert np.array_equal(a, b)
    _works(ld, X, P)


def test_unknown_members_and_labels_are_not_read_at_load(good, tmp_path, fitted, monkeypatch):
    """An extra member (here 512 MiB of zeros, deflated to ~0.5 MB) is never decompressed;
    labels are read on first access of labels_ only."""
    big = tmp_path / "bomb.npz"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(big, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
        with dst.open("extra.npy", "w", force_zip64=True) as fh:
            fh.write(b"\x93NUMPY\x01\x00" + b"{'descr': '|u1', 'fortran_order': False, 'shape': (536870912,), }"
                     .ljust(118) + b"\n")
            block = bytes(1 << 24)
            for _ in range(32):
                fh.write(block)
    assert big.stat().st_size < 8 << 20
    opened = []
    real_open = zipfile.ZipFile.open

    def spy(self, name, *a, **k):
        opened.append(getattr(name, "filename", name))
        return real_open(self, name, *a, **k)

    monkeypatch.setattr(zipfile.ZipFile, "open", spy)
    imp, X, P = fitted
    ld = UL4M4Imputer.load(big)
    assert "extra.npy" not in opened
    data_reads = [n for n in opened if n == "labels.npy"]
    assert len(data_reads) == 1  # its npy header only (dtype and shape checked)
    assert "labels_" not in vars(ld)
    assert np.array_equal(ld.labels_, imp.labels_)
    assert "labels_" in vars(ld)
    _works(ld, X, P)


def test_memory_budget_checked_before_reading(good, tmp_path, monkeypatch):
    """Arrays declared larger than the budget are refused from their npy headers."""
    rng = np.random.default_rng(0)

    def edit(a):
        a["center_mask"] = np.ones((3000, 2), bool)
        a["centers_0"] = rng.normal(size=(3000, 5))
        a["centers_1"] = rng.normal(size=(3000, 3))
        _header_edit(lambda h: h["params"].__setitem__("n_clusters", 3000))(a)
    p = _with(good, tmp_path, edit)
    UL4M4Imputer.load(p)  # fine under the default budget (labels are not checked against K yet)
    monkeypatch.setenv("UL4M4_MODEL_BUDGET_MB", "0.1")
    with pytest.raises(ValueError, match="memory budget"):
        UL4M4Imputer.load(p)
    monkeypatch.setenv("UL4M4_MODEL_BUDGET_MB", "lots")
    with pytest.raises(ValueError, match="UL4M4_MODEL_BUDGET_MB"):
        UL4M4Imputer.load(p)


def _synthetic(K_, seed=0):
    """A valid model of K_ centres (no fit needed)."""
    rng = np.random.default_rng(seed)
    imp = UL4M4Imputer(K_)
    imp.mean_ = [np.zeros(5), np.zeros(3)]
    imp.scale_ = [np.ones(5), np.ones(3)]
    H = rng.random((K_, 2)) < 0.7
    H[~H.any(axis=1), 0] = True
    imp.center_mask_ = H
    imp.cluster_centers_ = [np.where(H[:, [m]], rng.normal(size=(K_, d)), np.nan) for m, d in enumerate((5, 3))]
    imp.labels_ = np.zeros(10, np.int32)
    imp.inertia_, imp.n_iter_, imp.n_modalities_, imp.modality_dims_ = 1.0, 1, 2, (5, 3)
    return imp


def test_completion_table_built_lazily_and_within_budget(tmp_path, monkeypatch):
    X, P = _data()
    path = tmp_path / "k300.npz"
    _synthetic(300).save(path)
    ld = UL4M4Imputer.load(path)
    assert not ld._compiled().f_table_built  # not at load
    ld.transform(X, mask=P, completion="soft")
    assert not ld._compiled().f_table_built  # soft needs none
    ld.predict(X, mask=P)
    assert not ld._compiled().f_table_built
    monkeypatch.setenv("UL4M4_MODEL_BUDGET_MB", "1")
    with pytest.raises(ValueError, match=r"greedy completion with K=300.*memory budget.*completion='soft'"):
        ld.transform(X, mask=P)
    assert not ld._compiled().f_table_built
    monkeypatch.delenv("UL4M4_MODEL_BUDGET_MB")
    _works(ld, X, P)
    assert ld._compiled().f_table_built
    assert _modelfile.table_bytes(300, 2) > 1 << 20


def test_table_budget_applies_to_outofcore_transform(tmp_path, monkeypatch):
    from ul4m4.outofcore import iter_transform
    X, P = _data()
    imp = _synthetic(300)
    monkeypatch.setenv("UL4M4_MODEL_BUDGET_MB", "1")
    with pytest.raises(ValueError, match="memory budget"):
        list(iter_transform(imp, X, P))
    list(iter_transform(imp, X, P, completion="soft"))


def test_statistics_beyond_float32(good, tmp_path, fitted):
    """A finite float64 mean that overflows float32 loads; float32 data are refused with a
    clear error instead of 'NaN or inf in an observed slot' blaming the data."""
    imp, X, P = fitted

    def edit(a):
        a["mean_0"] = a["mean_0"] + 1e39
    ld = UL4M4Imputer.load(_with(good, tmp_path, edit))
    with pytest.raises(ValueError, match="float32"):
        ld.transform([x.astype(np.float32) for x in X], mask=P)
    ld.transform([x + 1e39 if m == 0 else x for m, x in enumerate(X)], mask=P)  # float64 is fine


def test_pickle_of_loaded_model_holds_labels(good, fitted):
    imp, X, P = fitted
    ld = UL4M4Imputer.load(good)
    s = pickle.dumps(ld)
    os.unlink(good)
    back = pickle.loads(s)
    assert np.array_equal(back.labels_, imp.labels_)


def test_bad_labels_values_raise_on_access(good, tmp_path, fitted):
    imp, X, P = fitted

    def edit(a):
        a["labels"] = a["labels"].copy()
        a["labels"][0] = K
    ld = UL4M4Imputer.load(_with(good, tmp_path, edit))
    _works(ld, X, P)
    with pytest.raises(ValueError, match="labels"):
        ld.labels_


# ============================================================================ CLI
def test_cli_impute_zero_centre_model(good, tmp_path, fitted, capsys):
    _, X, P = fitted

    def edit(a):
        a["center_mask"] = a["center_mask"][:0]
        for m in range(2):
            a[f"centers_{m}"] = a[f"centers_{m}"][:0]
    model = _with(good, tmp_path, edit, "zero.npz")
    out = tmp_path / "out"
    script = textwrap.dedent(f"""
        import sys
        from ul4m4.cli import main
        sys.exit(main(["impute", "--model", {str(model)!r}, *{cli_inputs(tmp_path, X, P)!r},
                       "--out-dir", {str(out)!r}, "-q"]))
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "at least one" in r.stderr and "Traceback" not in r.stderr
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("chunk,rc", [(2**63 - 1, 0), (2**64, 2), ("abc", 2)])
def test_cli_impute_header_chunk_size(good, tmp_path, fitted, capsys, chunk, rc):
    imp, X, P = fitted
    model = _with(good, tmp_path, _header_edit(lambda h: h["params"].update(chunk_size=chunk)), "chunk.npz")
    out = tmp_path / "out"
    got = main(["impute", "--model", str(model), *cli_inputs(tmp_path, X, P), "--out-dir", str(out), "-q"])
    err = capsys.readouterr().err
    assert got == rc, err
    if rc:
        assert "params.chunk_size" in err
        return
    want = imp.transform(X, mask=P)
    names = sorted(p.name for p in out.iterdir())
    for m in range(2):
        f = [n for n in names if n.endswith(".npy") and n.startswith(f"m{m}")]
        assert f, names
        assert np.array_equal(np.load(out / f[0]), want[m])


# ============================================================================ every defect
def _bad_files(good, tmp_path):
    """Every member and header field corrupted, resized, retyped, one at a time: yields
    (description, path). 'Distinct bad inputs' of the report are these."""
    base = _members(good)
    n = [0]

    def out(desc, arrays=None, raw=None):
        n[0] += 1
        p = tmp_path / f"bad{n[0]}.npz"
        if raw is not None:
            p.write_bytes(raw)
        else:
            _write(p, arrays)
        return desc, p

    def edited(fn):
        a = {k: v.copy() for k, v in base.items()}
        fn(a)
        return a

    for name, v in base.items():
        if name == "header":
            continue
        yield out(f"{name}: missing", edited(lambda a: a.pop(name)))
        yield out(f"{name}: 0-d", edited(lambda a: a.__setitem__(name, np.array(v.flat[0]))))
        yield out(f"{name}: 3-D", edited(lambda a: a.__setitem__(name, v.reshape(v.shape + (1,)))))
        yield out(f"{name}: one more row", edited(lambda a: a.__setitem__(name, np.concatenate([v, v[:1]]))))
        yield out(f"{name}: empty", edited(lambda a: a.__setitem__(name, v[:0])))
        if v.ndim == 2:
            yield out(f"{name}: one more column", edited(lambda a: a.__setitem__(name, np.hstack([v, v[:, :1]]))))
            yield out(f"{name}: Fortran order", edited(lambda a: a.__setitem__(name, np.asfortranarray(v))))
        for dt in ("int64", "float32", "complex128", "U8", ">f8", "bool", "float16", "uint8"):
            yield out(f"{name}: dtype {dt}", edited(lambda a: a.__setitem__(name, v.astype(dt))))
        if v.dtype.kind == "f":
            for val in (np.nan, np.inf, -np.inf, 0.0, -1.0, 1e-320, 1e-9, 1e300, 1e39, -1e39):
                def setv(a, val=val):
                    w = a[name].copy()
                    w[np.isfinite(w)] = val
                    a[name] = w
                yield out(f"{name}: values {val!r}", edited(setv))
        if name == "center_mask":
            for desc, val in (("all False", False), ("all True", True)):
                yield out(f"{name}: {desc}", edited(lambda a, val=val: a.__setitem__(name, np.full_like(v, val))))
            yield out(f"{name}: row 0 False", edited(lambda a: a[name].__setitem__(0, False)))
        if name == "labels":
            for val in (K, -2, 2**31 - 1):
                yield out(f"labels: value {val}", edited(lambda a, val=val: a[name].__setitem__(0, val)))

    h0 = json.loads(str(base["header"]))
    retypes = [None, "1", [1, 2], {}, True, 1.5, -1, 0, 2**70, 1e400]
    for field in list(h0):
        def drop(a, field=field):
            h = json.loads(str(a["header"]))
            h.pop(field)
            a["header"] = np.array(json.dumps(h))
        yield out(f"header.{field}: missing", edited(drop))
        for val in retypes:
            yield out(f"header.{field} = {val!r}", edited(_header_edit(lambda h, f=field, v=val: h.__setitem__(f, v))))
    for field in list(h0["params"]) + ["no_such_param", "init", "random_state"]:
        for val in retypes + ["abc", 2**63, 2**64, [5.0, 3.0], [5, 3, 1]]:
            yield out(f"header.params.{field} = {val!r}",
                      edited(_header_edit(lambda h, f=field, v=val: h["params"].__setitem__(f, v))))
    for desc, text in (("not JSON", "{not json"), ("a list", "[1, 2]"), ("empty", ""), ("NaN literal", "NaN"),
                       ("deeply nested", "[" * 100000 + "]" * 100000), ("a number", "1")):
        yield out(f"header: {desc}", edited(lambda a, t=text: a.__setitem__("header", np.array(t))))
    for dt in ("S20", "int64", "float64"):
        yield out(f"header: dtype {dt}", edited(lambda a, dt=dt: a.__setitem__("header", np.zeros(2, dt))))
    yield out("header: missing", edited(lambda a: a.pop("header")))

    raw = good.read_bytes()
    rng = np.random.default_rng(0)
    for frac in (0.0, 0.01, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99):
        yield out(f"truncated at {frac:.0%}", raw=raw[:int(len(raw) * frac)])
    for pos in rng.choice(len(raw), 30, replace=False):
        b = bytearray(raw)
        b[pos] ^= 0xFF
        yield out(f"byte {pos} flipped", raw=bytes(b))
    yield out("random bytes", raw=rng.bytes(3000))
    yield out("zip of nothing", raw=b"PK\x05\x06" + bytes(18))


def test_every_defect_is_a_value_error_or_a_working_model(good, tmp_path, fitted, capsys):
    _, X, P = fitted
    errors, loaded, refuses_data = [], [], []
    for desc, path in _bad_files(good, tmp_path):
        try:
            ld = UL4M4Imputer.load(path)
        except ValueError as exc:
            errors.append((desc, str(exc)))
            assert str(path) in str(exc), (desc, str(exc))
            continue
        except Exception as exc:  # noqa: BLE001 - the point of the test
            pytest.fail(f"{desc}: {type(exc).__name__}: {exc}")
        try:
            ok = _works_or_refuses_data(ld, X, P)
        except Exception as exc:  # noqa: BLE001
            pytest.fail(f"{desc}: loaded, but does not work: {type(exc).__name__}: {exc}")
        (loaded if ok else refuses_data).append(desc)
    with capsys.disabled():
        print(f"\n[model-file defects] {len(errors) + len(loaded) + len(refuses_data)} distinct bad files: "
              f"{len(errors)} clear ValueErrors at load, {len(refuses_data)} load but refuse ordinary data with a "
              f"clear ValueError (finite, absurd means: {refuses_data}), {len(loaded)} load as working models "
              f"(harmless: e.g. float32 / big-endian / Fortran-order arrays, in-range params)")
    # What must never load: the cases.
    refused = {d for d, _ in errors}
    for must in ("center_mask: empty", "scale_0: values inf", "scale_0: values 0.0", "scale_0: values 1e-320",
                 "mean_0: values inf", "centers_0: values nan", "centers_0: values 1e+300",
                 "header.inertia: missing", "header.inertia = [1, 2]", "header.params.chunk_size = 'abc'",
                 "header.format_version = '1'", "header.params.random_state = 1.5"):
        assert must in refused, must


# ============================================================================ fuzz
hypothesis = pytest.importorskip("hypothesis")
st = hypothesis.strategies


@hypothesis.settings(max_examples=150, deadline=None, derandomize=True,
                     suppress_health_check=list(hypothesis.HealthCheck))
@hypothesis.given(data=st.data())
def test_fuzz_model_files(data, tmp_path_factory, fitted):
    """Random combinations: several members / fields mutated at once, values drawn from
    floats (with NaN, inf, subnormals), ints of any size, strings, nested JSON; or random
    bytes of the archive changed. Either a ValueError at load, or a model that works."""
    imp, X, P = fitted
    tmp = tmp_path_factory.mktemp("fuzz")
    good = tmp / "good.npz"
    if not good.exists():
        imp.save(good)
    base = _members(good)
    kind = data.draw(st.sampled_from(["arrays", "header", "bytes"]))
    path = tmp / "case.npz"
    json_val = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
                            lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
                            max_leaves=6)
    if kind == "bytes":
        raw = bytearray(good.read_bytes())
        for _ in range(data.draw(st.integers(1, 8))):
            pos = data.draw(st.integers(0, len(raw) - 1))
            raw[pos] = data.draw(st.integers(0, 255))
        cut = data.draw(st.integers(0, len(raw)))
        path.write_bytes(bytes(raw[:cut] if data.draw(st.booleans()) else raw))
    elif kind == "header":
        h = json.loads(str(base["header"]))
        for _ in range(data.draw(st.integers(1, 3))):
            target = h if data.draw(st.booleans()) else h["params"] if isinstance(h.get("params"), dict) else h
            key = data.draw(st.sampled_from(sorted(target) + ["extra"]) if target else st.just("extra"))
            if data.draw(st.booleans()):
                target.pop(key, None)
            else:
                target[key] = data.draw(json_val)
        a = dict(base)
        a["header"] = np.array(json.dumps(h))
        _write(path, a)
    else:
        a = {k: v.copy() for k, v in base.items()}
        for _ in range(data.draw(st.integers(1, 3))):
            name = data.draw(st.sampled_from(sorted(k for k in a if k != "header")))
            v = a[name]
            op = data.draw(st.sampled_from(["value", "shape", "dtype", "drop"]))
            if op == "drop":
                a.pop(name)
            elif op == "shape":
                shape = tuple(data.draw(st.lists(st.integers(0, 6), min_size=0, max_size=3)))
                a[name] = np.resize(v, shape)
            elif op == "dtype":
                a[name] = v.astype(data.draw(st.sampled_from(["int8", "int64", "uint32", "float16", "float32",
                                                              "<f8", ">f8", "complex64", "U3", "bool"])))
            elif v.size:
                w = v.copy()
                idx = data.draw(st.integers(0, v.size - 1))
                if v.dtype.kind == "f":
                    w.flat[idx] = data.draw(st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True))
                elif v.dtype.kind == "b":
                    w.flat[idx] = not w.flat[idx]
                else:
                    w.flat[idx] = data.draw(st.integers(np.iinfo(v.dtype).min, np.iinfo(v.dtype).max))
                a[name] = w
        _write(path, a)
    try:
        ld = UL4M4Imputer.load(path)
    except ValueError:
        return
    _works_or_refuses_data(ld, X, P)
