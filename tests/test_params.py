"""Parameters: one validation place (ul4m4._params) used by every entry point, checked before
any pass over the data; chunk_size and n_threads bounded for the core; the sigma floor."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import ul4m4
from conftest import cli_inputs, two_modalities
from ul4m4 import _core, _params
from ul4m4.cli import main
from ul4m4.outofcore import fit_streaming

BAD = [
    ("random_state", 2**64), ("random_state", -1), ("random_state", 1.5), ("random_state", "0"),
    ("max_iter", 2**31), ("max_iter", -1), ("max_iter", 3.0),
    ("n_init", 2**31), ("n_init", 0),
    ("n_clusters", 2**31), ("n_clusters", 0), ("n_clusters", True), ("n_clusters", 4.0),
    ("chunk_size", 2**63), ("chunk_size", 0), ("chunk_size", "abc"), ("chunk_size", 256.0),
    ("n_threads", 0), ("n_threads", 1.5), ("n_threads", "2"),
    ("modality_dims", [5.0, 3.0]), ("modality_dims", "53"), ("modality_dims", []),
    ("modality_dims", [5, True]),
    ("tol", float("nan")), ("tol", -1.0), ("tol", "0"),
    ("temperature_scale", float("inf")), ("temperature_scale", 0.0),
    ("temperature", 0.0), ("temperature", float("nan")),
    ("empty_rows", "drop"), ("completion", "mean"), ("device", 3), ("device", "tpu"),
    ("verbose", -1), ("verbose", "yes"), ("init", "random"), ("init", [1, 2, 3]),
]


def _make(**kw):
    kw.setdefault("n_clusters", 4)
    return ul4m4.UL4M4Imputer(**kw)


def _data(n=120, seed=0):
    return two_modalities(n, seed, only_second_every=5)


@pytest.fixture
def no_pass(monkeypatch):
    """Fails the test if the compiled core is asked for any pass over the data."""
    def boom(*a, **k):
        raise AssertionError("a pass over the data ran before the parameters were checked")
    for name in ("presence_from_nan", "compute_stats", "check_finite", "kmeans", "seed_kmeanspp",
                 "assign_and_sum", "complete", "assign"):
        monkeypatch.setattr(_core, name, boom)


@pytest.mark.parametrize("name,value", BAD, ids=[f"{n}={v!r}" for n, v in BAD])
def test_bad_param_rejected_before_any_pass(name, value, no_pass):
    X, P = _data()
    with pytest.raises(ValueError, match=name):
        _make(**{name: value}).fit(X, mask=P)
    with pytest.raises(ValueError, match=name):
        fit_streaming(_make(**{name: value}), X, P)


@pytest.mark.parametrize("name,value", BAD, ids=[f"{n}={v!r}" for n, v in BAD])
def test_set_params_value_checked_by_the_next_call(name, value):
    # scikit-learn's convention: set_params stores, the next fit / transform checks before any pass
    X, P = _data()
    fitted = ul4m4.UL4M4Imputer(4, random_state=0).fit(X, mask=P)
    with pytest.raises(ValueError, match=name):
        ul4m4.UL4M4Imputer(4, max_iter=7).set_params(**{name: value}).fit(X, mask=P)
    if name in ("n_threads", "chunk_size", "empty_rows", "completion", "temperature_scale", "temperature"):
        with pytest.raises(ValueError, match=name):
            fitted.set_params(**{name: value}).transform(X, mask=P)


def test_dask_fit_checks_params_first(no_pass):
    da = pytest.importorskip("dask.array")
    from ul4m4 import dask as udask
    X, P = _data()
    dX = [da.from_array(x, chunks=40) for x in X]
    for name, value in (("random_state", 2**64), ("max_iter", 2**31), ("chunk_size", 0)):
        with pytest.raises(ValueError, match=name):
            udask.fit(_make(**{name: value}), dX, da.from_array(P, chunks=40))


def test_fit_random_state_override_checked(no_pass):
    X, P = _data()
    with pytest.raises(ValueError, match="random_state"):
        fit_streaming(ul4m4.UL4M4Imputer(4), X, P, random_state=2**64)


def test_largest_values_accepted():
    X, P = _data()
    a = ul4m4.UL4M4Imputer(4, random_state=2**64 - 1, max_iter=2**31 - 1, chunk_size=2**63 - 1,
                           n_threads=10**6).fit(X, mask=P)
    b = ul4m4.UL4M4Imputer(4, random_state=2**64 - 1, max_iter=2**31 - 1).fit(X, mask=P)
    assert np.array_equal(a.labels_, b.labels_)
    assert all(np.array_equal(x, y, equal_nan=True) for x, y in zip(a.cluster_centers_, b.cluster_centers_))


@pytest.mark.parametrize("chunk", [2**63 - 1, 2**40, 10**12 + 7])
def test_huge_chunk_size_is_one_chunk(chunk):
    X, P = _data()
    ref = ul4m4.UL4M4Imputer(4, random_state=0).fit(X, mask=P)
    want = ref.transform(X, mask=P, return_masks=True)
    imp = ul4m4.UL4M4Imputer(4, random_state=0).fit(X, mask=P).set_params(chunk_size=chunk)
    for completion in ("greedy", "soft"):
        got = imp.transform(X, mask=P, return_masks=True, completion=completion)
        exp = want if completion == "greedy" else ref.transform(X, mask=P, return_masks=True, completion="soft")
        for g, e in zip(got[0], exp[0]):
            assert np.array_equal(g, e)
        assert np.array_equal(got[1], exp[1]) and np.array_equal(got[2], exp[2])
    assert np.array_equal(imp.predict(X, mask=P), ref.predict(X, mask=P))
    # fit with it: the same model as the default chunk (the chunk only sets work units)
    big = ul4m4.UL4M4Imputer(4, random_state=0, chunk_size=chunk).fit(X, mask=P)
    assert np.array_equal(big.labels_, ul4m4.UL4M4Imputer(4, random_state=0, chunk_size=len(P)).fit(X, mask=P).labels_)
    st = fit_streaming(ul4m4.UL4M4Imputer(4, random_state=0, chunk_size=chunk), X, P)
    assert st.n_iter_ >= 1 and np.isfinite(st.inertia_)


def test_core_clamps_chunk_itself():
    """The core is safe for other bindings: a chunk of INT64_MAX rows is one chunk."""
    X, P = _data()
    imp = ul4m4.UL4M4Imputer(4, random_state=0).fit(X, mask=P)
    model = imp._compiled()
    Pu = np.ascontiguousarray(P).view(np.uint8)
    outs = [np.full_like(x, 7.0) for x in X]
    im, un = _core.complete(model, X, Pu, outs, "greedy", 1.0, 0.0, 1, 2**63 - 1)
    ref = imp.transform(X, mask=P)
    assert all(np.array_equal(o, r) for o, r in zip(outs, ref))
    lab, _ = _core.assign(model, X, Pu, 2, 2**63 - 1)
    assert np.array_equal(lab, imp.predict(X, mask=P))
    mu, sd = _core.compute_stats(X, Pu, 2, 2**63 - 1)
    assert all(np.array_equal(a, b) for a, b in zip(mu, imp.mean_))


def test_n_threads_clamped_and_results_identical():
    cap = _params.max_threads()
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert 1 <= cap <= 4 * max(os.cpu_count() or 1, cpus)
    assert _core.max_threads() == cap
    assert _params.resolve_threads(3000) == min(3000, cap)
    assert _params.resolve_threads(1) == 1
    X, P = _data()
    a = ul4m4.UL4M4Imputer(4, random_state=0, n_threads=3000, chunk_size=1).fit(X, mask=P)
    b = ul4m4.UL4M4Imputer(4, random_state=0, n_threads=1, chunk_size=1).fit(X, mask=P)
    assert np.array_equal(a.labels_, b.labels_)
    for x, y in zip(a.transform(X, mask=P), b.transform(X, mask=P)):
        assert np.array_equal(x, y)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS / /proc are Linux")
def test_thousands_of_threads_do_not_kill_the_process(tmp_path):
    """Item 5: n_threads=3000, chunk_size=1 under an address-space limit. The child warms
    the thread pool at the cap, then limits its address space to what it uses plus 1 GiB:
    3000 threads (8 MiB stacks) would need ~24 GiB; libgomp then exits the process."""
    script = textwrap.dedent("""
        import resource, sys
        import numpy as np
        import ul4m4
        rng = np.random.default_rng(0)
        X = [rng.normal(size=(4000, 8)), rng.normal(size=(4000, 4))]
        P = np.ones((4000, 2), bool); P[::3, 1] = False
        cap = 4 * (len(__import__('os').sched_getaffinity(0)))
        imp = ul4m4.UL4M4Imputer(4, random_state=0, n_threads=cap, chunk_size=1).fit(X, mask=P)
        imp.transform(X, mask=P)
        vm = [l for l in open('/proc/self/status') if l.startswith('VmSize')][0].split()[1]
        lim = int(vm) * 1024 + (1 << 30)
        resource.setrlimit(resource.RLIMIT_AS, (lim, lim))
        imp.set_params(n_threads=3000)
        imp.fit(X, mask=P)
        out = imp.transform(X, mask=P)
        print("survived", int(np.isfinite(out[1]).all()))
    """)
    env = dict(os.environ, OMP_WAIT_POLICY="passive")
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "survived 1" in r.stdout


def test_modality_dims_with_list_input_must_match():
    X, P = _data()
    with pytest.raises(ValueError, match="modality_dims"):
        ul4m4.UL4M4Imputer(4, modality_dims=[4, 4]).fit(X, mask=P)
    ul4m4.UL4M4Imputer(4, modality_dims=[5, 3], random_state=0).fit(X, mask=P)  # agreeing: fine


def test_refit_clears_stale_fitted_state():
    X, P = _data()
    dense = np.hstack([np.where(P[:, [0]], X[0], np.nan), np.where(P[:, [1]], X[1], np.nan)])
    imp = ul4m4.UL4M4Imputer(4, modality_dims=[5, 3], random_state=0).fit(dense)
    assert imp.n_features_in_ == 8
    imp._gpu_models = {"cuda:0": "stale"}
    imp.set_params(modality_dims=None).fit(X, mask=P)
    assert not hasattr(imp, "n_features_in_") and imp._gpu_models is None
    imp.set_params(modality_dims=[5, 3]).fit(dense)
    imp._gpu_models = {"cuda:0": "stale"}
    fit_streaming(imp.set_params(modality_dims=None), X, P)
    assert not hasattr(imp, "n_features_in_") and imp._gpu_models is None


@pytest.mark.parametrize("argv_extra,name", [(["--seed", str(2**64)], "--seed"),
                                             (["--max-iter", str(2**31)], "--max-iter"),
                                             (["--n-init", str(2**31)], "--n-init")])
def test_cli_fit_out_of_range_ints(tmp_path, capsys, argv_extra, name):
    X, P = _data()
    rc = main(["fit", *cli_inputs(tmp_path, X, P), "-k", "4", "-q", "-o", str(tmp_path / "m.npz"), *argv_extra])
    err = capsys.readouterr().err
    # the command line names its own flag, never pybind11's "incompatible function arguments"
    assert rc == 2 and name in err and "incompatible function arguments" not in err, err
    assert not (tmp_path / "m.npz").exists()


# ----------------------------------------------------------------------------- sigma floor
def _spread_data(n=300, seed=3):
    """Modality 0: columns of population std exactly 1e-9, 1e-7 and 1e-5 (and one of 1);
    modality 1: ordinary. The floor (1e-8) must give 1 to the first only."""
    rng = np.random.default_rng(seed)
    signs = np.where(np.arange(n) % 2 == 0, 1.0, -1.0)  # mean 0, population std 1 exactly
    base = np.stack([signs * s + 5.0 for s in (1e-9, 1e-7, 1e-5)], axis=1)
    X0 = np.hstack([base, rng.normal(size=(n, 1))])
    X1 = rng.normal(size=(n, 3))
    return [X0, X1], np.ones((n, 2), bool)


def _check_spread_scale(scale):
    s = scale[0]
    assert s[0] == 1.0  # 1e-9 <= floor -> 1
    np.testing.assert_allclose(s[1:3], [1e-7, 1e-5], rtol=1e-6)  # kept (a floor of 1e-3 would give 1)


def test_sigma_floor_fit():
    X, P = _spread_data()
    imp = ul4m4.UL4M4Imputer(3, random_state=0).fit(X, mask=P)
    _check_spread_scale(imp.scale_)
    assert _core.SIGMA_FLOOR == 1e-8


def test_sigma_floor_fit_streaming():
    X, P = _spread_data()
    imp = fit_streaming(ul4m4.UL4M4Imputer(3, random_state=0), X, P, chunk_rows=70)
    _check_spread_scale(imp.scale_)


def test_sigma_floor_dask():
    da = pytest.importorskip("dask.array")
    from ul4m4 import dask as udask
    X, P = _spread_data()
    imp = udask.fit(ul4m4.UL4M4Imputer(3, random_state=0), [da.from_array(x, chunks=70) for x in X],
                    da.from_array(P, chunks=70))
    _check_spread_scale(imp.scale_)


def test_sigma_floor_float32_data():
    """float32 columns of tiny spread: statistics in float64 give the same rule."""
    X, P = _spread_data()
    rng = np.random.default_rng(1)
    x = (5.0 + np.where(np.arange(300) % 2 == 0, 1.0, -1.0) * 1e-5).astype(np.float32)[:, None]
    X32 = [np.hstack([x, rng.normal(size=(300, 1)).astype(np.float32)]), X[1].astype(np.float32)]
    imp = ul4m4.UL4M4Imputer(3, random_state=0).fit(X32, mask=P)
    xd = x.astype(np.float64)[:, 0]
    np.testing.assert_allclose(imp.scale_[0][0], xd.std(), rtol=1e-9)
    assert imp.scale_[0][0] < 1e-3
