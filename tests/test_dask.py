"""ul4m4.dask on a dask.distributed LocalCluster of 2 worker processes: fit equals the
single-machine fit with the same initial centres, transform equals transform."""
import warnings

import numpy as np
import pytest

import ul4m4

dask = pytest.importorskip("dask", reason="dask is not installed (pip install 'ul4m4[dask]')")
da = pytest.importorskip("dask.array", reason="dask.array is not installed (pip install 'dask[array]')")
distributed = pytest.importorskip("distributed", reason="distributed is not installed (pip install 'ul4m4[dask]')")

from conftest import clusters, initial_rows  # noqa: E402
from ul4m4 import dask as udask  # noqa: E402


def _data(n=4000, dims=(16, 9, 24), seed=0, p=0.55):
    Xs, P = clusters(n, dims, 7, seed, p)
    Xs[1] = Xs[1].astype(np.float64)
    return Xs, P


@pytest.fixture(scope="module")
def client():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                           dashboard_address=None, memory_limit="1GiB", silence_logs=40)
        c = distributed.Client(cluster)
    try:
        yield c
    finally:
        c.close()
        cluster.close()


def test_fit_equals_single_machine_fit(client):
    Xs, P = _data()
    K = 8
    init = initial_rows(Xs, P, K)
    ref = ul4m4.UL4M4Imputer(K, init=init, max_iter=100, tol=0.0).fit(Xs, mask=P)
    dXs = [da.from_array(X, chunks=(700, X.shape[1])) for X in Xs]
    dP = da.from_array(P, chunks=(700, 3))
    got = udask.fit(ul4m4.UL4M4Imputer(K, max_iter=100, tol=0.0), dXs, dP, init=init, client=client)
    assert ref.n_iter_ > 1 and got.n_iter_ == ref.n_iter_
    np.testing.assert_array_equal(got.labels_, ref.labels_)
    np.testing.assert_array_equal(got.center_mask_, ref.center_mask_)
    for a, b in zip(got.cluster_centers_, ref.cluster_centers_):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(got.inertia_, ref.inertia_, rtol=1e-6)
    # the workers really ran the blocks
    assert len(client.scheduler_info()["workers"]) == 2


def test_transform_equals_transform(client):
    Xs, P = _data(n=3000, seed=3)
    imp = ul4m4.UL4M4Imputer(6, random_state=0, completion="soft").fit(Xs, mask=P)
    ref, ri, ru = imp.transform(Xs, mask=P, return_masks=True)
    dXs = [da.from_array(X, chunks=(512, X.shape[1])) for X in Xs]
    filled, im, un = udask.transform(imp, dXs, da.from_array(P, chunks=(512, 3)), client=client)
    got = dask.compute(*filled, im, un)
    for g, r in zip(got[:3], ref):
        assert g.dtype == r.dtype
        np.testing.assert_array_equal(g, r)
    np.testing.assert_array_equal(got[3], ri)
    np.testing.assert_array_equal(got[4], ru)
    greedy = udask.transform(imp, dXs, da.from_array(P, chunks=(512, 3)), completion="greedy", client=client)[0]
    np.testing.assert_array_equal(greedy[2].compute(), imp.transform(Xs, mask=P, completion="greedy")[2])


def test_kmeanspp_nan_marked_and_errors(client):
    Xs, P = _data(n=1500, seed=5)
    Xn = [np.where(P[:, m:m + 1], X, np.nan).astype(X.dtype) for m, X in enumerate(Xs)]
    dXn = [da.from_array(X, chunks=(400, X.shape[1])) for X in Xn]
    # N <= init_rows: k-means++ on all rows with fit's seed -> the single-machine result
    ref = ul4m4.UL4M4Imputer(5, random_state=7, max_iter=100).fit(Xn)
    got = udask.fit(ul4m4.UL4M4Imputer(5, random_state=7, max_iter=100), dXn)  # default client
    np.testing.assert_array_equal(got.labels_, ref.labels_)
    for a, b in zip(got.cluster_centers_, ref.cluster_centers_):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-8)
    P2 = P.copy()
    P2[1234] = False
    with pytest.raises(ValueError, match="row 1234 observes no modality"):
        udask.fit(ul4m4.UL4M4Imputer(3), [da.from_array(X, chunks=(400, X.shape[1])) for X in Xs],
                  da.from_array(P2, chunks=(400, 3)), client=client)
    with pytest.raises(ValueError, match="fitted on 3"):
        udask.transform(ref, dXn[:2], client=client)


def test_local_scheduler_without_client():
    Xs, P = _data(n=1200, seed=9)
    init = initial_rows(Xs, P, 4)
    ref = ul4m4.UL4M4Imputer(4, init=init, max_iter=50).fit(Xs, mask=P)
    dXs = [da.from_array(X, chunks=(300, X.shape[1])) for X in Xs]
    with dask.config.set(scheduler="synchronous"):
        got = udask.fit(ul4m4.UL4M4Imputer(4, max_iter=50), dXs, P, init=init, client=False or None)
    np.testing.assert_array_equal(got.labels_, ref.labels_)


def test_not_persisted_and_unbalanced_blocks(client):
    Xs, P = _data(n=2000, seed=11)
    init = initial_rows(Xs, P, 5)
    ref = ul4m4.UL4M4Imputer(5, init=init, max_iter=50).fit(Xs, mask=P)
    # blocks recomputed from their graph on every pass
    dXs = [da.from_array(X, chunks=(500, X.shape[1])) for X in Xs]
    got = udask.fit(ul4m4.UL4M4Imputer(5, max_iter=50), dXs, da.from_array(P, chunks=(500, 3)), init=init,
                    client=client, persist=False)
    np.testing.assert_array_equal(got.labels_, ref.labels_)
    # every block on one worker at first: fit spreads them, the result is the same
    w0 = sorted(client.scheduler_info()["workers"])[0]
    dXs = []
    for X in Xs:
        parts = client.scatter([X[i:i + 250] for i in range(0, len(X), 250)], workers=[w0])
        dXs.append(da.concatenate([da.from_delayed(dask.delayed(f), shape=(250, X.shape[1]), dtype=X.dtype)
                                   for f in parts]))
    assert set(a for v in client.who_has(parts).values() for a in v) == {w0}
    got = udask.fit(ul4m4.UL4M4Imputer(5, max_iter=50), dXs, P, init=init, client=client)
    np.testing.assert_array_equal(got.labels_, ref.labels_)
    assert got.n_iter_ == ref.n_iter_


def test_one_task_per_worker_per_pass_and_explicit_threads(client):
    # 7 uneven blocks on 2 workers: every Lloyd pass is one task per worker (its blocks in
    # block order), with the estimator's n_threads when given; the result is unchanged.
    Xs, P = _data(n=2600, seed=13)
    init = initial_rows(Xs, P, 6)
    ref = ul4m4.UL4M4Imputer(6, init=init, max_iter=50, tol=0.0).fit(Xs, mask=P)
    dXs = [da.from_array(X, chunks=(400, X.shape[1])) for X in Xs]
    dP = da.from_array(P, chunks=(400, 3))
    for nt in (None, 2):
        with distributed.get_task_stream(client) as ts:
            got = udask.fit(ul4m4.UL4M4Imputer(6, max_iter=50, tol=0.0, n_threads=nt), dXs, dP, init=init,
                            client=client)
        np.testing.assert_array_equal(got.labels_, ref.labels_)
        assert got.n_iter_ == ref.n_iter_
        for a, b in zip(got.cluster_centers_, ref.cluster_centers_):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-8)
        names = [str(t["key"][0] if isinstance(t["key"], tuple) else t["key"]) for t in ts.data]
        steps = [k for k in names if k.startswith("_group_step")]
        assert len(steps) == 2 * (got.n_iter_ + 1), names
