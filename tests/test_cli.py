"""The ``ul4m4`` command line, run in-process through ``ul4m4.cli.main``."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import ul4m4
from ul4m4.cli import main


# ---------------------------------------------------------------------------- fixtures
@pytest.fixture
def dataset(tmp_path):
    """Three small modalities (float32, float64, float32), a presence mask, an .npz."""
    rng = np.random.default_rng(0)
    n = 300
    a = rng.normal(size=(n, 8)).astype(np.float32)
    b = rng.normal(size=(n, 4))
    c = rng.normal(size=(n, 3)).astype(np.float32)
    mask = np.ones((n, 3), bool)
    mask[::3, 1] = False
    mask[1::4, 2] = False
    mask[2::5, 0] = False
    mask[~mask.any(axis=1), 0] = True
    paths = {}
    for name, x in (("text", a), ("audio", b), ("video", c)):
        paths[name] = tmp_path / f"{name}.npy"
        np.save(paths[name], x)
    paths["mask"] = tmp_path / "mask.npy"
    np.save(paths["mask"], mask)
    paths["npz"] = tmp_path / "data.npz"
    np.savez(paths["npz"], text=a, audio=b, video=c, presence=mask)
    return {"X": [a, b, c], "mask": mask, "paths": paths, "dir": tmp_path}


def _mods(ds, names=("text", "audio", "video")):
    out = []
    for n in names:
        out += ["--modality", str(ds["paths"][n])]
    return out


def _fit(ds, *extra):
    model = ds["dir"] / "model.npz"
    rc = main(["fit", *_mods(ds), "--mask", str(ds["paths"]["mask"]), "-k", "6", "--seed", "1", "-q",
               "-o", str(model), *extra])
    assert rc == 0
    return model


def _error(capsys, argv, *fragments):
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "ul4m4: error:" in err or "error:" in err
    assert "Traceback" not in err
    for f in fragments:
        assert f in err, err
    return err


# ---------------------------------------------------------------------------- help
@pytest.mark.parametrize("argv", [["--help"], ["demo", "--help"], ["fit", "--help"], ["impute", "--help"]])
def test_help_everywhere(capsys, argv):
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: ul4m4")


def test_version_and_usage(capsys):
    assert main(["--version"]) == 0
    assert ul4m4.__version__ in capsys.readouterr().out
    assert main([]) == 2  # a command is required
    assert "usage" in capsys.readouterr().err
    assert main(["fit", "--bogus"]) == 2


def test_python_dash_m(tmp_path):
    r = subprocess.run([sys.executable, "-m", "ul4m4", "impute", "--help"], capture_output=True, text=True,
                       cwd=tmp_path)
    assert r.returncode == 0 and "--out-dir" in r.stdout


# ---------------------------------------------------------------------------- fit / impute
def test_fit_impute_round_trip(dataset, capsys):
    model = _fit(dataset, "--completion", "soft")
    imp = ul4m4.UL4M4Imputer.load(model)
    assert imp.completion == "soft" and imp.n_clusters == 6 and imp.modality_dims_ == (8, 4, 3)
    out = dataset["dir"] / "out"
    rc = main(["impute", "--model", str(model), *_mods(dataset), "--mask", str(dataset["paths"]["mask"]),
               "--out-dir", str(out), "--chunk-rows", "70", "--progress"])
    assert rc == 0
    err = capsys.readouterr().err
    assert "rows/s" in err and "slots imputed" in err
    filled, imputed, unfilled = imp.transform(dataset["X"], mask=dataset["mask"], return_masks=True)
    for name, ref in zip(("text", "audio", "video"), filled):
        got = np.load(out / f"{name}.npy")
        assert got.dtype == ref.dtype
        np.testing.assert_array_equal(got, ref)  # chunked completion == one call
    np.testing.assert_array_equal(np.load(out / "imputed_mask.npy"), imputed)
    np.testing.assert_array_equal(np.load(out / "unfilled_mask.npy"), unfilled)
    assert int(imputed.sum()) == int((~dataset["mask"]).sum())
    # observed slots are untouched
    for x, got, m in zip(dataset["X"], filled, dataset["mask"].T):
        np.testing.assert_array_equal(got[m], x[m])
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["modalities"] == ["text", "audio", "video"] and manifest["n_samples"] == 300
    assert not [p for p in os.listdir(out) if p.startswith(".")]  # no temporary file left


def test_impute_to_zarr(dataset, capsys):
    model = _fit(dataset)
    imp = ul4m4.UL4M4Imputer.load(model)
    out = dataset["dir"] / "zout"
    argv = ["impute", "--model", str(model), *_mods(dataset), "--mask", str(dataset["paths"]["mask"]),
            "--out-dir", str(out), "--chunk-rows", "70", "--format", "zarr", "-q"]
    try:
        import zarr
    except ImportError:
        _error(capsys, argv, "--format zarr needs zarr", "pip install zarr")
        assert not (out / "completed.zarr").exists()
        return
    assert main(argv) == 0
    filled, imputed, unfilled = imp.transform(dataset["X"], mask=dataset["mask"], return_masks=True)
    g = zarr.open_group(str(out / "completed.zarr"), mode="r")
    for name, ref in zip(("text", "audio", "video"), filled):
        got = g[name][:]
        assert got.dtype == ref.dtype
        np.testing.assert_array_equal(got, ref)
    np.testing.assert_array_equal(g["imputed_mask"][:], imputed)
    np.testing.assert_array_equal(g["unfilled_mask"][:], unfilled)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format"] == "zarr" and manifest["files"] == ["completed.zarr"]
    assert sorted(os.listdir(out)) == ["completed.zarr", "manifest.json"]
    # a second run does not write over the first
    capsys.readouterr()
    _error(capsys, argv, "completed.zarr: already exists")


def test_fit_matches_api(dataset):
    model = _fit(dataset)
    ref = ul4m4.UL4M4Imputer(6, random_state=1).fit(dataset["X"], mask=dataset["mask"])
    got = ul4m4.UL4M4Imputer.load(model)
    # 'ul4m4 fit' streams the files chunk by chunk (ul4m4.outofcore.fit_streaming): the same
    # Lloyd loop, float64 sums added in another order, so centres agree to rounding.
    assert got.n_iter_ == ref.n_iter_
    np.testing.assert_array_equal(got.center_mask_, ref.center_mask_)
    for a, b in zip(got.cluster_centers_, ref.cluster_centers_):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_npz_input_and_completion_override(dataset, capsys):
    model = dataset["dir"] / "m.npz"
    assert main(["fit", "--data", str(dataset["paths"]["npz"]), "--keys", "text,audio,video",
                 "--mask-key", "presence", "-k", "6", "--seed", "1", "-o", str(model), "-q"]) == 0
    out = dataset["dir"] / "o"
    assert main(["impute", "--model", str(model), "--data", str(dataset["paths"]["npz"]), "--keys",
                 "text,audio,video", "--mask-key", "presence", "--completion", "soft",
                 "--temperature-scale", "0.0625", "--out-dir", str(out), "-q"]) == 0
    imp = ul4m4.UL4M4Imputer.load(model)
    ref = imp.transform(dataset["X"], mask=dataset["mask"], completion="soft", temperature_scale=0.0625)
    np.testing.assert_array_equal(np.load(out / "audio.npy"), ref[1])
    # default key order: sorted (audio, text, video)
    assert main(["fit", "--data", str(dataset["paths"]["npz"]), "--mask-key", "presence", "-k", "4", "-q",
                 "-o", str(dataset["dir"] / "sorted.npz")]) == 0
    assert ul4m4.UL4M4Imputer.load(dataset["dir"] / "sorted.npz").modality_dims_ == (4, 8, 3)


def test_nan_marked_without_mask(dataset):
    X = [x.copy() for x in dataset["X"]]
    for m, x in enumerate(X):
        x[~dataset["mask"][:, m]] = np.nan
    d = dataset["dir"]
    for name, x in zip(("t", "a", "v"), X):
        np.save(d / f"{name}.npy", x)
    mods = ["--modality", str(d / "t.npy"), "--modality", str(d / "a.npy"), "--modality", str(d / "v.npy")]
    assert main(["fit", *mods, "-k", "5", "-o", str(d / "nan.npz"), "-q"]) == 0
    assert main(["impute", "--model", str(d / "nan.npz"), *mods, "--out-dir", str(d / "nan_out"), "-q"]) == 0
    assert not np.isnan(np.load(d / "nan_out" / "t.npy")).any()
    np.testing.assert_array_equal(np.load(d / "nan_out" / "imputed_mask.npy"), ~dataset["mask"])


# ---------------------------------------------------------------------------- error paths
def test_error_missing_files(dataset, capsys):
    d = dataset["dir"]
    _error(capsys, ["fit", "--modality", str(d / "nope.npy"), "-o", str(d / "m.npz")], "nope.npy", "no such file")
    _error(capsys, ["fit", *_mods(dataset), "--mask", str(d / "nomask.npy"), "-o", str(d / "m.npz")],
           "nomask.npy")
    _error(capsys, ["fit", "--data", str(d / "nope.npz"), "-o", str(d / "m.npz")], "nope.npz")
    _error(capsys, ["impute", "--model", str(d / "nomodel.npz"), *_mods(dataset), "--out-dir", str(d / "o")],
           "nomodel.npz", "no such file")
    _error(capsys, ["fit", *_mods(dataset), "-o", str(d / "no_dir" / "m.npz")], "no such directory")
    _error(capsys, ["fit"], "-o/--output")
    _error(capsys, ["fit", "-o", str(d / "m.npz")], "no input data")


def test_error_wrong_shapes(dataset, capsys):
    d = dataset["dir"]
    np.save(d / "flat.npy", np.zeros(300, np.float32))
    _error(capsys, ["fit", "--modality", str(d / "flat.npy"), "-o", str(d / "m.npz")], "flat.npy", "2-D")
    np.save(d / "short.npy", np.zeros((200, 3), np.float32))
    _error(capsys, ["fit", *_mods(dataset), "--modality", str(d / "short.npy"), "-o", str(d / "m.npz")],
           "short.npy", "200 rows")
    np.save(d / "ints.npy", np.zeros((300, 3), np.int64))
    _error(capsys, ["fit", "--modality", str(d / "ints.npy"), "-o", str(d / "m.npz")], "int64")
    (d / "garbage.npy").write_bytes(b"not an array")
    _error(capsys, ["fit", "--modality", str(d / "garbage.npy"), "-o", str(d / "m.npz")], "garbage.npy")
    _error(capsys, ["fit", "--modality", str(dataset["paths"]["npz"]), "-o", str(d / "m.npz")], "--data")
    _error(capsys, ["fit", *_mods(dataset, ("text", "text")), "-o", str(d / "m.npz")], "named 'text'")
    _error(capsys, ["fit", "--data", str(dataset["paths"]["npz"]), "-o", str(d / "m.npz")],
           "--mask-key presence")
    _error(capsys, ["fit", "--data", str(dataset["paths"]["npz"]), "--keys", "text,nope", "-o",
                    str(d / "m.npz")], "no key 'nope'")


def test_error_mask_mismatch(dataset, capsys):
    d = dataset["dir"]
    _error(capsys, ["fit", *_mods(dataset, ("text", "audio")), "--mask", str(dataset["paths"]["mask"]),
                    "-o", str(d / "m.npz")], "mask has shape (300, 3)", "(300, 2)")
    np.save(d / "fmask.npy", dataset["mask"].astype(np.float32))
    _error(capsys, ["fit", *_mods(dataset), "--mask", str(d / "fmask.npy"), "-o", str(d / "m.npz")], "boolean")
    empty = dataset["mask"].copy()
    empty[5] = False
    np.save(d / "emask.npy", empty)
    _error(capsys, ["fit", *_mods(dataset), "--mask", str(d / "emask.npy"), "-o", str(d / "m.npz")],
           "no modality")
    # without a mask, a partly NaN row is an input error
    t = dataset["X"][0].copy()
    t[3, 0] = np.nan
    np.save(d / "partial.npy", t)
    _error(capsys, ["fit", "--modality", str(d / "partial.npy"), "-o", str(d / "m.npz")], "partly NaN")


def test_error_model_data_mismatch(dataset, capsys):
    model = _fit(dataset)
    d = dataset["dir"]
    out = d / "mismatch"
    _error(capsys, ["impute", "--model", str(model), *_mods(dataset, ("text", "audio")),
                    "--out-dir", str(out)], "3 modalities", "2 were given")
    _error(capsys, ["impute", "--model", str(model), *_mods(dataset, ("text", "video", "audio")),
                    "--mask", str(dataset["paths"]["mask"]), "--out-dir", str(out)], "width 3", "width 4")
    _error(capsys, ["impute", "--model", str(dataset["paths"]["mask"]), *_mods(dataset),
                    "--out-dir", str(out)], "not a ul4m4 model file")
    np.savez(d / "other.npz", a=np.zeros(3))
    _error(capsys, ["impute", "--model", str(d / "other.npz"), *_mods(dataset), "--out-dir", str(out)],
           "other.npz")
    _error(capsys, ["impute", "--model", str(model), *_mods(dataset), "--mask", str(dataset["paths"]["mask"]),
                    "--temperature", "-1", "--out-dir", str(out)], "--temperature")
    assert not out.exists() or not [p for p in os.listdir(out) if p.endswith(".npy")]


def test_failed_impute_leaves_no_output(dataset, capsys):
    """An error in a late chunk: no file appears under a final name, no temporary is left."""
    model = _fit(dataset)
    d = dataset["dir"]
    mask = dataset["mask"].copy()
    mask[250] = False  # an empty row in the last chunk
    np.save(d / "late.npy", mask)
    out = d / "late_out"
    err = _error(capsys, ["impute", "--model", str(model), *_mods(dataset), "--mask", str(d / "late.npy"),
                          "--chunk-rows", "100", "--out-dir", str(out)], "no modality", "row 250 ",
                 "--empty-rows mean")
    # no empty output directory, no temporary beside it; the flag, not the Python spelling
    assert not out.exists()
    assert not [p for p in os.listdir(d) if p.startswith(".")]
    assert "empty_rows=" not in err


# ---------------------------------------------------------------------------- demo
def test_demo_quick(tmp_path, capsys):
    pytest.importorskip("sklearn", reason="ul4m4 demo needs scikit-learn")
    out = tmp_path / "demo"
    rc = main(["demo", "--quick", "--no-knn", "-k", "20", "--jobs", "1", "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    for label in ("ul4m4 greedy", "ul4m4 soft 1/16", "ul4m4 auto", "mean-fill", "zero-fill", "complete data",
                  "F1-micro", "RMSE", "rows/s"):
        assert label in captured.out
    assert "auto chose " in captured.err  # each run's choice, on its progress line
    doc = json.loads((out / "results.json").read_text())
    rows = doc["rows"]
    assert {r["imputer"] for r in rows} == {"ul4m4_greedy", "ul4m4_soft", "ul4m4_soft16", "ul4m4_auto", "mean",
                                            "zero", "complete"}
    f1 = {r["imputer"]: r["mean"] for r in rows if r["metric"] == "f1_micro"}
    assert all(0.5 < v <= 1 for v in f1.values())
    rmse = {r["imputer"]: r["mean"] for r in rows if r["metric"] == "rmse"}
    assert rmse["complete"] is None and 0.9 < rmse["mean"] < 1.1
    assert rmse["ul4m4_soft16"] < rmse["mean"]
    pytest.importorskip("matplotlib")
    assert (out / "f1_vs_rate.png").stat().st_size > 1000


def test_demo_bad_options(capsys, tmp_path):
    _error(capsys, ["demo", "--rates", "0.9", "--out", str(tmp_path)], "0.9")
    _error(capsys, ["demo", "--imputers", "mean,bogus", "--out", str(tmp_path)], "bogus")
    assert main(["demo", "--rates", "abc"]) == 2


# ---------------------------------------------------------------------------- issue 12
def test_integer_masks_same_rules_as_the_api(dataset, capsys):
    """0/1 integer masks are read as the Python API reads them; other values are refused by
    both with the slot named."""
    model = _fit(dataset)
    imp = ul4m4.UL4M4Imputer.load(model)
    d = dataset["dir"]
    m = dataset["mask"].astype(">i2")
    np.save(d / "int_mask.npy", m)
    out = d / "int_out"
    assert main(["impute", "--model", str(model), *_mods(dataset), "--mask", str(d / "int_mask.npy"),
                 "--out-dir", str(out), "-q"]) == 0
    ref = imp.transform(dataset["X"], mask=m)
    for name, r in zip(("text", "audio", "video"), ref):
        np.testing.assert_array_equal(np.load(out / f"{name}.npy"), r)
    m[7, 2] = 3
    np.save(d / "bad_mask.npy", m)
    err = _error(capsys, ["impute", "--model", str(model), *_mods(dataset), "--mask", str(d / "bad_mask.npy"),
                          "--out-dir", str(d / "bad_out")], "only 0 and 1", "row 7, modality 2 holds 3")
    with pytest.raises(ValueError, match="row 7, modality 2 holds 3"):
        imp.transform(dataset["X"], mask=m)
    assert not (d / "bad_out").exists() and "Traceback" not in err


def test_cli_messages_name_the_flags(dataset, capsys):
    """Library messages reach the command line with the flags' spelling."""
    from ul4m4.cli import _cli_spelling

    err = _error(capsys, ["fit", *_mods(dataset), "--mask", str(dataset["paths"]["mask"]), "-k", "100000",
                          "-o", str(dataset["dir"] / "m.npz")], "-k/--n-clusters 100000")
    assert "n_clusters=" not in err
    assert _cli_spelling("pass empty_rows='mean' to fill") == "pass --empty-rows mean to fill"
    assert _cli_spelling("k-means stopped at max_iter=3 before convergence; increase max_iter or tol") == \
        "k-means stopped at --max-iter 3 before convergence; increase --max-iter or --tol"
    inv = np.zeros_like(dataset["mask"])
    np.save(dataset["dir"] / "zero.npy", inv)
    err = _error(capsys, ["fit", *_mods(dataset), "--mask", str(dataset["dir"] / "zero.npy"), "-k", "3",
                          "-o", str(dataset["dir"] / "m.npz")], "True (or 1) in the mask means observed",
                 "invert the mask file")


def test_impute_replaces_a_previous_result_whole(dataset, capsys):
    """A second run replaces the first one's directory as a whole (files of another modality
    set do not survive beside the new manifest)."""
    model = _fit(dataset)
    out = dataset["dir"] / "again"
    base = ["impute", "--model", str(model), "--mask", str(dataset["paths"]["mask"]), "--out-dir", str(out), "-q"]
    assert main(base + _mods(dataset)) == 0
    first = sorted(os.listdir(out))
    np.save(dataset["dir"] / "sound.npy", dataset["X"][1])
    assert main(base + ["--modality", str(dataset["paths"]["text"]), "--modality", str(dataset["dir"] / "sound.npy"),
                        "--modality", str(dataset["paths"]["video"])]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(os.listdir(out)) == sorted(manifest["files"] + ["manifest.json"]) != first
    assert not [p for p in os.listdir(dataset["dir"]) if p.startswith(".")]


def test_big_endian_npy_files_accepted(dataset, capsys):
    """'>f4' / '>f8' .npy files are read through native copies, as the Python API reads such
    arrays; the outputs are native."""
    model = _fit(dataset)
    imp = ul4m4.UL4M4Imputer.load(model)
    d = dataset["dir"]
    argv = ["impute", "--model", str(model), "--mask", str(dataset["paths"]["mask"]), "--out-dir", str(d / "be"), "-q"]
    for name, x in zip(("text", "audio", "video"), dataset["X"]):
        np.save(d / f"be_{name}.npy", x.astype(x.dtype.newbyteorder(">")))
        argv += ["--modality", str(d / f"be_{name}.npy")]
    assert main(argv) == 0, capsys.readouterr().err
    for name, r in zip(("text", "audio", "video"), imp.transform(dataset["X"], mask=dataset["mask"])):
        got = np.load(d / "be" / f"be_{name}.npy")
        assert got.dtype == r.dtype and got.dtype.isnative
        np.testing.assert_array_equal(got, r)
