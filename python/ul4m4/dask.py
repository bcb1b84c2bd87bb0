"""Dask backend: fit and complete datasets spread over a cluster (optional extra).

Install with ``pip install 'ul4m4[dask]'`` (dask[array] and distributed); ul4m4 must be
installed on every worker.

* :func:`fit` fits a :class:`~ul4m4.UL4M4Imputer` on Dask arrays by map-reduce. The arrays
  are chunked along rows only (they are rechunked to one block of columns per modality,
  with the row chunks of the first modality). Every pass is one task per row block that
  runs the compiled kernels on that block; only small per-block results (float64 sums and
  counts, K x sum(d_m)) travel back to the client, where they are added in block order:

  1. statistics: one pass (per-block count / mean / squared deviations, merged in order);
  2. seeding: the estimator's explicit ``init`` (or ``init=`` here), else k-means++ on a
     uniform sample of ``init_rows`` rows gathered to the client (seeding only);
  3. Lloyd: each iteration broadcasts the centres to the workers (``scatter(...,
     broadcast=True)`` on a distributed client), runs ``assign_and_sum`` on every block
     (one pass over the data), keeps each block's labels on its worker for the next
     iteration's "changed" test, and applies the section-4 update to the summed results.

  With persisted blocks on a distributed client each block is pinned to one worker, and a
  pass is one task per worker that runs its blocks in block order with all the worker's
  threads (``n_threads`` of the estimator when set): one scheduler round trip per worker
  per pass instead of one per block. The per-block summaries still come back separately and
  are added in block order, so the result does not depend on which worker holds a block.

  The result equals :meth:`UL4M4Imputer.fit` on the same data with the same initial centres:
  labels exactly and the same number of iterations, centres to rounding (float64 sums added
  in a different order).

* :func:`transform` completes Dask arrays block by block (the fitted model is broadcast
  once) and returns lazy Dask arrays: the completed modalities and the ``imputed`` /
  ``unfilled`` masks. Compute them together (``dask.compute(*filled, imputed, unfilled)``
  or ``da.store``) so that each block is completed once.

Works with a ``dask.distributed`` client (the one passed as ``client=``, else the default
client if one exists) and, without one, with dask's local schedulers.
"""
from __future__ import annotations

from typing import Any, Callable, List, Optional, Sequence, Tuple

import numpy as np

from . import _core, _fit
from ._arrays import as_mask, check_float, rows_contiguous
from ._chunks import shift_rows
from ._chunkwise import check_model, complete_chunk, completion_args, rows_observed
from ._imputer import UL4M4Imputer, effective_n_threads
from ._moments import Moments, chunk_moments
from ._params import seed_from

__all__ = ["fit", "transform"]

_INSTALL = "pip install 'ul4m4[dask]'  (or: pip install 'dask[array]' distributed)"


def _require():
    try:
        import dask
        import dask.array as da
    except ImportError as exc:  # pragma: no cover - exercised where dask is absent
        raise ImportError(f"ul4m4.dask needs dask: {_INSTALL}") from exc
    return dask, da


def _default_client(client: Any) -> Any:
    if client is not None:
        return client
    try:
        from distributed import default_client
    except ImportError:
        return None
    try:
        return default_client()
    except ValueError:
        return None


# ---------------------------------------------------------------------------- inputs
class _Blocks:
    """Row blocks of the dataset as lists of delayed numpy blocks."""

    def __init__(self, arrays: Sequence[Any], mask: Any, client: Any, persist: bool):
        dask, da = _require()
        if not isinstance(arrays, (list, tuple)) or len(arrays) == 0:
            raise TypeError("arrays must be a non-empty list with one (n, d_m) Dask array per modality")
        arrs = []
        for m, a in enumerate(arrays):
            if not isinstance(a, da.Array):
                a = da.from_array(np.asarray(a), chunks=(arrays[0].chunks[0] if isinstance(arrays[0], da.Array)
                                                          else "auto", -1))
            if a.ndim != 2:
                raise ValueError(f"modality {m} must be 2-D (n_samples, d_{m}), got shape {a.shape}")
            if not (a.dtype.kind == "f" and a.dtype.itemsize in (4, 8)):  # any byte order (_contig converts)
                raise TypeError(f"modality {m} has dtype {a.dtype}; ul4m4 works on float32 or float64 embeddings")
            if any(np.isnan(c) for c in a.chunks[0]) or np.isnan(a.shape[0]):
                raise ValueError(f"modality {m} has unknown chunk sizes; call compute_chunk_sizes() first")
            if a.shape[1] == 0:
                raise ValueError(f"modality {m} has width 0")
            arrs.append(a)
        n = arrs[0].shape[0]
        for m, a in enumerate(arrs):
            if a.shape[0] != n:
                raise ValueError(f"modality {m} has {a.shape[0]} rows but modality 0 has {n}: every modality needs "
                                 "one row per sample")
        if n == 0:
            raise ValueError("X has no rows")
        if len(arrs) > 64:
            raise ValueError(f"at most 64 modalities are supported, got {len(arrs)}")
        rows = arrs[0].chunks[0]
        arrs = [a.rechunk({0: rows, 1: -1}) for a in arrs]
        M = len(arrs)
        mk = None
        if mask is not None:
            mk = mask if isinstance(mask, da.Array) else da.from_array(np.asarray(mask), chunks=(rows, -1))
            if mk.dtype.kind not in "biu":  # integers: 0/1 only, checked block by block (_arrays.as_mask)
                raise TypeError(f"mask must be a boolean array (True = observed) or integers 0/1 (1 = observed), "
                                f"got dtype {mk.dtype}")
            if tuple(mk.shape) != (n, M):
                raise ValueError(f"mask has shape {tuple(mk.shape)}; expected (n_samples, n_modalities) = {(n, M)}")
            mk = mk.rechunk({0: rows, 1: -1})
        self.n, self.M = int(n), M
        self.dims = [int(a.shape[1]) for a in arrs]
        self.dtypes = [np.dtype(a.dtype.type) for a in arrs]
        self.rows = [int(r) for r in rows]
        self.offsets = np.concatenate([[0], np.cumsum(self.rows)]).astype(np.int64)
        dx = [a.to_delayed().ravel() for a in arrs]
        dm = mk.to_delayed().ravel() if mk is not None else None
        # One object per row block holding every modality's rows and the presence: a task on
        # a block then finds all its inputs on one worker.
        self.blk = [dask.delayed(_pair, pure=True)([dx[m][b] for m in range(M)], None if dm is None else dm[b],
                                                   int(self.offsets[b]))
                    for b in range(len(self.rows))]
        self.futures = bool(persist and client is not None)
        self.where: List[Optional[str]] = [None] * len(self.rows)
        if self.futures:
            from distributed import wait

            futs = list(client.compute(self.blk))
            wait(futs)
            self.blk = futs
            self._balance(client)
        elif persist:
            self.blk = list(dask.persist(*self.blk))

    def _balance(self, client) -> None:
        """Pin every block to one worker, the blocks spread evenly: a block that sits on a
        worker holding more than its share is moved once, here, and every later task on
        that block runs where it is (no work stealing of 100 MB blocks between passes)."""
        from distributed import wait

        who = client.who_has(self.blk)
        info = _workers_info(client)
        workers = sorted(info)
        count = {w: 0 for w in workers}
        for b, f in enumerate(self.blk):
            w = (list(who.get(f.key, ())) or list(who.get(str(f.key), ())) or [workers[0]])[0]
            self.where[b] = w
            count[w] = count.get(w, 0) + 1
        cap = -(-len(self.blk) // max(1, len(workers)))
        moved = []
        for b in range(len(self.blk)):
            w = self.where[b]
            if count[w] > cap:
                dest = min(workers, key=lambda x: count[x])
                if count[dest] >= cap:
                    continue
                self.blk[b] = client.submit(_identity, self.blk[b], workers=[dest], allow_other_workers=False,
                                            pure=False)
                count[w] -= 1
                count[dest] += 1
                self.where[b] = dest
                moved.append(self.blk[b])
        if moved:
            wait(moved)
        # The blocks of each worker, in block order: every pass is one task per worker.
        self.groups = [(w, [b for b in range(len(self.blk)) if self.where[b] == w],
                        max(1, int(info.get(w, {}).get("nthreads", 1) or 1)))
                       for w in sorted(set(self.where))]

    def __len__(self) -> int:
        return len(self.rows)


def _workers_info(client) -> dict:
    """{worker address: info} for every worker (some distributed versions list only the
    first 5 unless asked for all)."""
    try:
        return dict(client.scheduler_info(n_workers=-1)["workers"])
    except TypeError:  # a version without n_workers lists them all
        return dict(client.scheduler_info()["workers"])


def _contig(Xs: Sequence[np.ndarray]) -> List[np.ndarray]:
    """A block's rows as the core takes them: native byte order, contiguous rows."""
    return [rows_contiguous(check_float(np.asarray(x), f"modality {m}")) for m, x in enumerate(Xs)]


def _identity(x):
    return x


def _pair(Xs, P, r0):
    """(rows of every modality, presence uint8) of one block."""
    Xs = _contig(Xs)
    return Xs, _present(Xs, P, r0)


def _present(Xs: Sequence[np.ndarray], P: Any, r0: int) -> np.ndarray:
    if P is None:
        try:
            return _core.presence_from_nan(list(Xs), Xs[0].shape[0], 1, 1024)
        except ValueError as exc:
            raise ValueError(shift_rows(str(exc), r0)) from None
    P = np.asarray(P)
    if P.dtype != np.bool_:
        try:
            P = as_mask(P, P.shape[0], P.shape[1] if P.ndim == 2 else -1)
        except ValueError as exc:
            raise ValueError(shift_rows(str(exc), r0)) from None
    return np.ascontiguousarray(P, dtype=np.bool_).view(np.uint8)


def _threads(n_threads: Optional[int]) -> int:
    return effective_n_threads(n_threads)


# ---------------------------------------------------------------------------- block tasks
def _block_moments(blk, r0, empty_error, n_threads):
    Xs, P = blk
    rowany = rows_observed(P, r0, empty_error)
    mom = chunk_moments(Xs, P, r0, _threads(n_threads))
    return mom.count, mom.mean, mom.m2, int(rowany.sum())


def _block_rows(blk, loc):
    Xs, P = blk
    return [x[loc] for x in Xs], P[loc]


_MODEL_CACHE: dict = {}


def _model_of(pack):
    key = pack[0]
    m = _MODEL_CACHE.get(key)
    if m is None:
        _MODEL_CACHE.clear()
        m = _core.Model(*pack[1:])
        _MODEL_CACHE[key] = m
    return m


def _block_step(pack, blk, prev, n_threads, chunk):
    model = _model_of(pack)
    Xs, P = blk
    if isinstance(prev, tuple):  # the previous step's (labels, summary)
        prev = prev[0]
    r = _core.assign_and_sum(model, Xs, P, prev, _threads(n_threads), chunk)
    return r["labels"], (r["sums"], r["counts"], r["sizes"], float(r["inertia"]), int(r["n_unassigned"]),
                         int(r["n_changed"]))


def _task_threads(worker_threads: int, n_threads: Optional[int]) -> int:
    """Threads of a per-worker task: the estimator's n_threads when set, else the worker's."""
    return worker_threads if n_threads is None else n_threads


def _group_each(fn, blks, args, n_threads):
    """fn on each of one worker's blocks in turn; a threaded fn (n_threads not None) has its
    last argument replaced by n_threads."""
    if n_threads is None:
        return [fn(blk, *a) for blk, a in zip(blks, args)]
    return [fn(blk, *a[:-1], n_threads) for blk, a in zip(blks, args)]


def _group_step(pack, blks, prev, n_threads, chunk):
    """One Lloyd pass over one worker's blocks: (labels per block, summary per block)."""
    labels = prev[0] if prev is not None else [None] * len(blks)
    out = [_block_step(pack, blk, p, n_threads, chunk) for blk, p in zip(blks, labels)]
    return [o[0] for o in out], [o[1] for o in out]


def _block_complete(pack, blk, r0, opts):
    imp_stub, completion, ts, temp, n_threads = opts
    model = _model_of(pack)
    Xs, P = blk
    outs = [np.empty_like(x) for x in Xs]
    im, un = complete_chunk(imp_stub, model, Xs, P, outs, completion, ts, temp, _threads(n_threads), r0)
    return tuple(outs) + (im, un)


class _Stub:
    """What complete_chunk reads from the estimator."""

    def __init__(self, empty_rows: str, chunk_size: int):
        self.empty_rows = empty_rows
        self.chunk_size = chunk_size


# ---------------------------------------------------------------------------- driver
class _Runner:
    """Runs one task per row block: pinned futures on a distributed client when the blocks
    are persisted there, else dask.delayed on the current scheduler."""

    def __init__(self, client, B: Optional[_Blocks] = None):
        self.dask, self.da = _require()
        self.client = client
        self.B = B

    def each(self, fn, blocks, args, threaded: bool = False) -> list:
        """fn(block b, *args[i]) for b in blocks, results gathered in that order. ``threaded``:
        fn's last argument is its n_threads (None: on a distributed worker, all its threads)."""
        if self.B.futures:
            # one task per worker over its blocks (fewer scheduler round trips), with the
            # worker's threads unless the caller fixed n_threads (the last argument)
            byb = dict(zip(blocks, args))
            futs, order = [], []
            for w, bs, nthr in self.B.groups:
                bs = [b for b in bs if b in byb]
                if not bs:
                    continue
                nt = _task_threads(nthr, byb[bs[0]][-1]) if threaded else None
                futs.append(self.client.submit(_group_each, fn, [self.B.blk[b] for b in bs], [byb[b] for b in bs],
                                               nt, workers=[w], allow_other_workers=False, pure=False))
                order += bs
            got = dict(zip(order, (r for rs in self.client.gather(futs) for r in rs)))
            return [got[b] for b in blocks]
        tasks = [self.dask.delayed(fn, pure=False)(self.B.blk[b], *a) for b, a in zip(blocks, args)]
        if self.client is not None:
            return list(self.client.compute(tasks, sync=True))
        return list(self.dask.compute(*tasks))

    def steps(self, pack, prev, n_threads, chunk):
        """One Lloyd pass: (per-block handles of the labels, per-block summaries)."""
        B = self.B
        if B.futures:
            # One task per worker, over its blocks in block order; it keeps the labels on the
            # worker (the next pass's "changed" test) and only the summaries travel.
            import operator as op

            st = [self.client.submit(_group_step, pack, [B.blk[b] for b in bs], prev[g], _task_threads(nthr, n_threads),
                                     chunk, workers=[w], allow_other_workers=False, pure=False)
                  for g, (w, bs, nthr) in enumerate(B.groups)]
            sm = [self.client.submit(op.getitem, f, 1, workers=[w], allow_other_workers=True, pure=False)
                  for f, (w, _, _) in zip(st, B.groups)]
            got = {}
            for (_, bs, _), summ in zip(B.groups, self.client.gather(sm)):
                got.update(zip(bs, summ))
            return st, [got[b] for b in range(len(B))]
        outs = []
        for b in range(len(B)):
            lab, summ = self.dask.delayed(_block_step, nout=2, pure=False)(pack, B.blk[b], prev[b], n_threads, chunk)
            outs += [lab, summ]
        keep, fetch = outs[0::2], outs[1::2]
        if self.client is not None:
            futs = self.client.compute(keep + fetch)
            return futs[:len(keep)], self.client.gather(futs[len(keep):])
        out = self.dask.compute(*keep, *fetch)
        return list(out[:len(keep)]), list(out[len(keep):])

    def labels(self, handles) -> np.ndarray:
        if self.client is None:
            parts = handles
        elif self.B.futures:
            import operator as op

            got = {}
            for (_, bs, _), labs in zip(self.B.groups, self.client.gather(
                    [self.client.submit(op.getitem, h, 0, pure=False) for h in handles])):
                got.update(zip(bs, labs))
            parts = [got[b] for b in range(len(self.B))]
        else:
            parts = self.client.gather(handles)
        return np.concatenate(parts).astype(np.int32, copy=False)

    def broadcast(self, obj):
        if self.client is not None:
            return self.client.scatter(obj, broadcast=True, hash=False)
        return self.dask.delayed(obj, traverse=False)


def _pack(mu, sigma, C, H_u8):
    import uuid

    return (uuid.uuid4().hex, list(mu), list(sigma), [np.ascontiguousarray(c) for c in C],
            np.ascontiguousarray(H_u8, dtype=np.uint8))


def fit(imputer: UL4M4Imputer, arrays: Sequence[Any], mask: Any = None, init: Any = None, client: Any = None, *,
        persist: bool = True, init_rows: Optional[int] = None, random_state: Any = None,
        callback: Optional[Callable[..., Any]] = None) -> UL4M4Imputer:
    """Fit ``imputer`` on Dask arrays (one (n, d_m) array per modality, chunked along rows)
    and a Dask (n, M) boolean mask (None: missing modalities are all-NaN rows).

    ``init``: explicit initial centres ``(centres, presence)`` as the estimator's ``init``
    (raw space); None uses the estimator's own ``init``. ``client``: a dask.distributed
    Client (default: the current default client, else dask's local scheduler).
    ``persist=True`` keeps the (rechunked) blocks in the workers' memory for the whole fit;
    with False every pass recomputes them from their graph (e.g. reads the files again).
    ``init_rows``: k-means++ sample size (see :func:`ul4m4.outofcore.fit_streaming`).

    Sets the fitted attributes exactly as :meth:`UL4M4Imputer.fit` and returns the estimator;
    ``labels_`` is a numpy array (n int32, gathered to the client at the end)."""
    dask, da = _require()
    imp = imputer
    imp._validate_params()
    imp._reject_auto("ul4m4.dask.fit")
    client = _default_client(client)
    B = _Blocks(arrays, mask, client, persist)
    run = _Runner(client, B)
    rs = imp.random_state if random_state is None else random_state
    seed = seed_from(rs)
    nt = imp.n_threads
    chunk = int(imp.chunk_size)
    K = int(imp.n_clusters)
    N = B.n
    init = imp.init if init is None else init
    explicit = not isinstance(init, str)

    # ---- statistics (one pass), merged in block order
    parts = run.each(_block_moments, range(len(B)),
                     [(int(B.offsets[b]), imp.empty_rows == "error", nt) for b in range(len(B))], threaded=True)
    mom = Moments(B.dims)
    eligible = 0
    for count, mean, m2, elig in parts:
        for m in range(B.M):
            mom.add(m, int(count[m]), mean[m], m2[m])
        eligible += elig
    mu, sigma = mom.finish()
    _fit.check_n_clusters(K, eligible)

    # ---- initial centres
    seed_fn = None
    if not explicit:
        if init_rows is not None and (isinstance(init_rows, bool) or init_rows < K):
            raise ValueError(f"init_rows must be an int >= n_clusters, got {init_rows!r}")
        row_bytes = sum(d * t.itemsize for d, t in zip(B.dims, B.dtypes))
        S = int(min(N, init_rows if init_rows is not None else _fit.default_init_rows(N, K, row_bytes)))
        idx = np.arange(N) if S == N else np.sort(np.random.default_rng(seed).choice(N, S, replace=False))
        which, args = [], []
        for b in range(len(B)):
            a, e = np.searchsorted(idx, [B.offsets[b], B.offsets[b + 1]])
            if e > a:
                which.append(b)
                args.append((idx[a:e] - B.offsets[b],))
        got = run.each(_block_rows, which, args)
        sX = [np.concatenate([g[0][m] for g in got]) for m in range(B.M)]
        sP = np.ascontiguousarray(np.concatenate([g[1] for g in got]))
        nth = effective_n_threads(nt)

        def seed_fn(s):
            try:
                return _core.seed_kmeanspp(sX, sP, mu, sigma, K, s, nth, chunk)
            except ValueError as exc:
                raise ValueError(f"k-means++ seeding on a sample of {S} rows: {exc} (raise init_rows)") from None
    starts = _fit.starts(init, imp.n_init, mu, sigma, K, seed, seed_fn)
    if not explicit:
        sX = sP = None  # free the seeding sample before the passes

    # ---- Lloyd: one pass over the blocks per iteration
    state = {}

    def pass_for_run(r):
        state["labels"] = [None] * len(B)

        def pass_fn(mu_, sigma_, C, H_u8, first):
            pack = run.broadcast(_pack(mu_, sigma_, C, H_u8))
            prev = [None] * (len(B.groups) if B.futures else len(B)) if first else state["labels"]
            labs, summs = run.steps(pack, prev, nt, chunk)
            acc = _fit.Summed()
            for s in summs:  # block order: deterministic sums
                acc.add(dict(sums=s[0], counts=s[1], sizes=s[2], inertia=s[3], n_unassigned=s[4], n_changed=s[5]))
            state["labels"] = labs
            return acc.result()
        return pass_fn

    best, best_labels = _fit.run(starts, pass_for_run, lambda: run.labels(state["labels"]), mu, sigma,
                                 int(imp.max_iter), float(imp.tol), _fit.iteration_reporter(imp.verbose, callback))
    imp._set_fitted(mu, sigma, best, best_labels, B.dims)
    return imp


def transform(imputer: UL4M4Imputer, arrays: Sequence[Any], mask: Any = None, *, completion: Optional[str] = None,
              temperature_scale: Optional[float] = None, temperature: Optional[float] = None,
              client: Any = None) -> Tuple[List[Any], Any, Any]:
    """Complete Dask arrays with a fitted estimator, block by block.

    Returns ``(filled, imputed, unfilled)``: a list of lazy (n, d_m) Dask arrays (the input's
    row chunks and dtypes, observed slots bit-for-bit) and two lazy (n, M) boolean Dask
    arrays. Equal to ``imputer.transform(..., return_masks=True)`` on the same data."""
    dask, da = _require()
    imp = imputer
    imp._check_fitted()
    client = _default_client(client)
    B = _Blocks(arrays, mask, client, persist=False)
    run = _Runner(client, B)
    check_model(imp, B)
    M = B.M
    completion, ts, temp = completion_args(imp, completion, temperature_scale, temperature)
    pack = run.broadcast(_pack(imp.mean_, imp.scale_, [np.nan_to_num(c, nan=0.0) for c in imp.cluster_centers_],
                               np.asarray(imp.center_mask_, bool).view(np.uint8)))
    opts = (_Stub(imp.empty_rows, int(imp.chunk_size)), completion, float(ts),
            None if temp is None else float(temp), imp.n_threads)
    cols: List[List[Any]] = [[] for _ in range(M + 2)]
    for b in range(len(B)):
        parts = dask.delayed(_block_complete, nout=M + 2, pure=True)(pack, B.blk[b], int(B.offsets[b]), opts)
        n = B.rows[b]
        for m in range(M):
            cols[m].append(da.from_delayed(parts[m], shape=(n, B.dims[m]), dtype=B.dtypes[m]))
        cols[M].append(da.from_delayed(parts[M], shape=(n, M), dtype=bool))
        cols[M + 1].append(da.from_delayed(parts[M + 1], shape=(n, M), dtype=bool))
    out = [da.concatenate(c, axis=0) for c in cols]
    return out[:M], out[M], out[M + 1]
