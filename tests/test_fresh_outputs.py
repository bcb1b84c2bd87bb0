"""transform without out=: fresh output arrays, large ones recycled through the core's
output pool (python/bindings/output_pool.hpp) instead of new pages faulted in per call."""
import gc
import resource

import numpy as np
import pytest

import ul4m4
from ul4m4 import _core
from ul4m4._arrays import POOLED_OUTPUT_BYTES

N, DIMS = 8192, (512, 640)  # float64: 32 MiB and 40 MiB per output, above POOLED_OUTPUT_BYTES


@pytest.fixture(scope="module")
def big():
    rng = np.random.default_rng(0)
    X = [rng.normal(size=(N, d)) for d in DIMS]
    P = rng.random((N, 2)) < 0.6
    P[~P.any(axis=1), 0] = True
    X[0][~P[:, 0]] = np.nan  # absent rows are never read
    init = ([x[:4].copy() for x in X], np.ones((4, 2), bool))
    imp = ul4m4.UL4M4Imputer(4, init=init, max_iter=2, tol=0.0, n_threads=2).fit(X, mask=P)
    return imp, X, P


def _minflt():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


@pytest.fixture
def no_numpy_hugepages():
    """numpy advises huge pages for its own large arrays; with 4 KiB pages the fault count
    of a freshly mapped output is its size in pages, which the test can see."""
    try:
        from numpy._core import multiarray as ma
    except ImportError:  # numpy < 2
        from numpy.core import multiarray as ma
    if not hasattr(ma, "_set_madvise_hugepage"):
        pytest.skip("numpy has no _set_madvise_hugepage")
    old = ma._set_madvise_hugepage(False)
    yield
    ma._set_madvise_hugepage(old)


@pytest.mark.parametrize("completion", ["greedy", "soft"])
def test_repeated_transform_does_not_fault_in_new_output_pages(big, no_numpy_hugepages, completion):
    imp, X, P = big
    pages = sum(N * d * 8 for d in DIMS) // 4096
    y = imp.transform(X, mask=P, completion=completion)
    del y
    gc.collect()
    f0 = _minflt()
    y = imp.transform(X, mask=P, completion=completion)
    faults = _minflt() - f0
    # Before the pool: one fault per output page (18 432 here); now the freed pages are reused.
    assert faults < pages // 8, (faults, pages)
    ref = [np.empty_like(x) for x in X]
    imp.transform(X, mask=P, completion=completion, out=ref)
    for a, b in zip(y, ref):
        np.testing.assert_array_equal(a, b)


def test_outputs_of_sizes_off_the_page_grid_are_all_reused(big, no_numpy_hugepages):
    """The pool's cap is the call's output bytes; its blocks are page-rounded. Counted in
    rounded sizes, two outputs whose sizes are not page multiples (8 189 rows: 32 MiB and
    40 MiB less 3 rows) exceeded the cap by a page, and the smallest block was unmapped at
    every call: 8 189 pages faulted in again per call (at N = 200 000 of the reference
    workload, a third of the output). And with blocks of an earlier call's sizes still
    kept, trimming the smallest first unmapped the new call's block instead of the stale
    one, call after call."""
    imp, X, P = big
    del imp.transform(X, mask=P)[0]  # leaves blocks of the full sizes in the pool
    gc.collect()
    n = N - 3
    Xo, Po = [x[:n] for x in X], P[:n]
    assert any(n * d * 8 % 4096 for d in DIMS)
    pages = sum(n * d * 8 for d in DIMS) // 4096
    for _ in range(2):
        y = imp.transform(Xo, mask=Po)
        del y
        gc.collect()
    f0 = _minflt()
    y = imp.transform(Xo, mask=Po)
    faults = _minflt() - f0
    assert faults < pages // 8, (faults, pages)
    del y
    gc.collect()
    assert _core.output_pool_info()["kept_bytes"] == sum(n * d * 8 for d in DIMS)


def test_fresh_outputs_are_new_writeable_arrays_not_sharing_memory(big):
    imp, X, P = big
    y1 = imp.transform(X, mask=P)
    y2 = imp.transform(X, mask=P)
    for m, (a, b, x) in enumerate(zip(y1, y2, X)):
        assert type(a) is np.ndarray and a.dtype == x.dtype and a.shape == x.shape
        assert a.flags.c_contiguous and a.flags.writeable and a.flags.aligned
        assert a.nbytes >= POOLED_OUTPUT_BYTES
        assert not np.shares_memory(a, b) and not np.shares_memory(a, x)
        np.testing.assert_array_equal(a, b)
    keep = [a.copy() for a in y2]
    for a in y1:
        a[...] = -1.0  # writing one result must not touch the other, nor feed the next call
    del y1
    y3 = imp.transform(X, mask=P)
    for a, b, c in zip(y2, y3, keep):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, c)


def test_fresh_outputs_dense_and_float32(big):
    imp, X, P = big
    X32 = [x.astype(np.float32) for x in X]
    imp32 = ul4m4.UL4M4Imputer(4, init=([x[:4] for x in X32], np.ones((4, 2), bool)), max_iter=2, tol=0.0,
                               modality_dims=list(DIMS)).fit(np.hstack(X32), mask=P)
    dense = np.hstack(X32)
    for _ in range(2):
        y = imp32.transform(dense, mask=P)
        assert y.dtype == np.float32 and y.shape == dense.shape and y.flags.c_contiguous and y.flags.writeable
        assert not np.shares_memory(y, dense)
        ref = np.empty_like(dense)
        imp32.transform(dense, mask=P, out=ref)
        np.testing.assert_array_equal(y, ref)
        del y


def test_fresh_outputs_torch_in_torch_out(big):
    torch = pytest.importorskip("torch")
    imp, X, P = big
    Xt = [torch.from_numpy(x) for x in X]
    ref = imp.transform(X, mask=P)
    for _ in range(2):
        y = imp.transform(Xt, mask=P)
        assert all(isinstance(t, torch.Tensor) and t.dtype == torch.float64 and t.is_contiguous() for t in y)
        for t, r, x in zip(y, ref, X):
            np.testing.assert_array_equal(t.numpy(), r)
            assert not np.shares_memory(t.numpy(), x)
        del y


def test_pool_keeps_at_most_the_latest_calls_outputs(big):
    imp, X, P = big
    y = imp.transform(X, mask=P)
    del y
    gc.collect()
    assert _core.output_pool_info()["kept_bytes"] <= sum(N * d * 8 for d in DIMS) + 2 * 4096
    small = [x[: N // 2] for x in X]  # 16 MiB and 20 MiB outputs: the cap shrinks to them
    y = imp.transform(small, mask=P[: N // 2])
    del y
    gc.collect()
    assert _core.output_pool_info()["kept_bytes"] <= sum(N // 2 * d * 8 for d in DIMS) + 2 * 4096
    ul4m4.release_output_pool()
    assert _core.output_pool_info()["kept_bytes"] == 0
