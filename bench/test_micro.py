"""Microbenchmarks of the compiled core (pytest-benchmark).

    pytest bench/ --benchmark-only                      # N = 1 000 and 20 000 (a few minutes)
    UL4M4_BENCH_LARGE=1 pytest bench/ --benchmark-only  # adds N = 200 000
    UL4M4_BENCH_FULL=1 pytest bench/ --benchmark-only   # every K x M x missing combination
    pytest bench/ --benchmark-only -k "assign and avx2" --benchmark-group-by=group
    python -m pytest bench/ --benchmark-disable -q      # smoke test: each case once, N = 1 000 only

Operations (the ``op`` in each test id), each through ``ul4m4._core`` with the GIL released:

* ``stats``        normalisation statistics (per-modality mean / std over present rows);
* ``distances``    the K x K x M centre-to-centre partial-distance table (``_core.Model``),
                   computed by direct differences; it does not depend on N (run at the
                   smallest N only);
* ``assign``       one assignment pass: partial distances of every row to every centre, argmin;
* ``lloyd``        ``_core.kmeans(max_iter=1)`` = initial assignment + centre update + assignment;
                   ``extra_info`` holds ``update_plus_assign_s`` (the library's own timing of the
                   iteration) and ``update_s_estimate`` (that minus one assignment pass): the
                   core does not expose the centre update on its own;
* ``seed``         k-means++ seeding on the partial distance (K sequential passes);
* ``greedy``, ``soft``: completion of every row (``_core.complete``) into preallocated outputs.

Cases: N in {1 000, 20 000} (200 000 with UL4M4_BENCH_LARGE=1); around the base point
K = 64, M = 3 (widths 768/1024/768), missing fraction 0.5, one axis is varied at a time:
K in {16, 64, 256}, M in {2, 3, 5}, missing in {0, 0.5, 0.8} (UL4M4_BENCH_FULL=1: the full
product). Backends: every SIMD level this CPU runs (``ul4m4.available_simd_levels()``, set
with ``ul4m4.set_simd_level`` and restored afterwards), and ``cuda``, which runs when the
build has its CUDA module and skips with the reason otherwise. Benchmarks of one operation
and shape share a group, so the backends are compared side by side.
Threads: UL4M4_BENCH_THREADS (default: every CPU this process may use).
"""
from __future__ import annotations

import os
import time
import warnings
from collections import OrderedDict

import numpy as np
import pytest

pytest.importorskip("pytest_benchmark")

import ul4m4  # noqa: E402
from ul4m4 import _core  # noqa: E402

from bench.core_workload import make_data  # noqa: E402

WIDTHS = {2: (768, 1024), 3: (768, 1024, 768), 5: (768, 1024, 768, 512, 256)}
BASE = dict(K=64, M=3, missing=0.5)
KS, MS, MISSING = (16, 64, 256), (2, 3, 5), (0.0, 0.5, 0.8)
OPS = ("stats", "distances", "assign", "lloyd", "seed", "greedy", "soft")
CHUNK = 256
TARGET_S = 1.0  # time spent on the rounds of one benchmark, about
THREADS = int(os.environ.get("UL4M4_BENCH_THREADS", "0")) or len(os.sched_getaffinity(0))


def _flag(name):
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


def sizes(smoke):
    if smoke:
        return [1000]
    return [1000, 20000] + ([200000] if _flag("UL4M4_BENCH_LARGE") else [])


def shapes():
    if _flag("UL4M4_BENCH_FULL"):
        return [dict(K=k, M=m, missing=f) for m in MS for f in MISSING for k in KS]
    out = [dict(BASE, K=k) for k in KS]
    out += [dict(BASE, M=m) for m in MS if m != BASE["M"]]
    out += [dict(BASE, missing=f) for f in MISSING if f != BASE["missing"]]
    # Group by data set (M, missing) so consecutive tests reuse the generated data.
    return sorted(out, key=lambda s: (s["M"], s["missing"], s["K"]))


def backends():
    return list(ul4m4.available_simd_levels()) + ["cuda"]


def pytest_generate_tests(metafunc):
    if "case" not in metafunc.fixturenames:
        return
    try:
        smoke = bool(metafunc.config.getoption("benchmark_disable"))
    except ValueError:
        smoke = True
    cases, ids = [], []
    ns = sizes(smoke)
    for n in ns:
        for s in shapes():
            for be in backends():
                for op in OPS:
                    if op == "distances" and n != ns[0]:
                        continue  # independent of N
                    if op in ("stats",) and s["K"] != BASE["K"]:
                        continue  # independent of K
                    cases.append(dict(s, N=n, backend=be, op=op))
                    ids.append(f"{op}-N{n}-K{s['K']}-M{s['M']}-miss{s['missing']}-{be}")
    metafunc.parametrize("case", cases, ids=ids)


# ----------------------------------------------------------------------------- data
class _Data:
    def __init__(self, n, M, missing):
        self.Xs, P = make_data(n, WIDTHS[M], missing)
        self.P = np.ascontiguousarray(P, dtype=np.uint8)
        self.Pb = P
        self.mu, self.sigma = _core.compute_stats(self.Xs, self.P, THREADS, CHUNK)
        self._centres = {}
        self.outs = None

    def centres(self, K):
        """K rows of the data in z-space, absent modalities zero, presence from the rows."""
        if K not in self._centres:
            rows = np.random.default_rng(1).choice(len(self.P), K, replace=False)
            H = self.P[rows].copy()
            C = [np.where(H[:, m, None] > 0, (X[rows] - mu) / s, 0.0)
                 for m, (X, mu, s) in enumerate(zip(self.Xs, self.mu, self.sigma))]
            self._centres[K] = (C, H, _core.Model(self.mu, self.sigma, C, H))
        return self._centres[K]

    def outputs(self):
        if self.outs is None:
            self.outs = [np.zeros_like(X) for X in self.Xs]  # pages touched before timing
        return self.outs


_CACHE: "OrderedDict[tuple, _Data]" = OrderedDict()


def data_for(n, M, missing):
    key = (n, M, missing)
    if key not in _CACHE:
        while _CACHE:  # one data set at a time: N = 200 000 is gigabytes
            _CACHE.popitem(last=False)
        _CACHE[key] = _Data(n, M, missing)
    return _CACHE[key]


@pytest.fixture
def simd(case):
    """Switch to the case's SIMD level; restore the previous one afterwards."""
    old = ul4m4.simd_level()
    if case["backend"] != "cuda":
        ul4m4.set_simd_level(case["backend"])
    yield case["backend"]
    ul4m4.set_simd_level(old)


# ----------------------------------------------------------------------------- operations
def cpu_op(case, d):
    """(callable, extra_info) for one operation on the CPU core."""
    K, op, nt = case["K"], case["op"], THREADS
    C, H, model = d.centres(K)
    if op == "stats":
        return (lambda: _core.compute_stats(d.Xs, d.P, nt, CHUNK)), {}
    if op == "distances":
        return (lambda: _core.Model(d.mu, d.sigma, C, H)), {}
    if op == "assign":
        return (lambda: _core.assign(model, d.Xs, d.P, nt, CHUNK)), {}
    if op == "lloyd":
        return (lambda: _core.kmeans(d.Xs, d.P, d.mu, d.sigma, K, 1, 0.0, 1, 0, C, H, None, nt, CHUNK)), {}
    if op == "seed":
        return (lambda: _core.seed_kmeanspp(d.Xs, d.P, d.mu, d.sigma, K, 0, nt, CHUNK)), {}
    if op in ("greedy", "soft"):
        outs = d.outputs()
        return (lambda: _core.complete(model, d.Xs, d.P, outs, op, 1.0, 0.0, nt, CHUNK)), {}
    raise ValueError(op)


def cuda_op(case, d):
    """The CUDA path through the public API with torch tensors on the GPU (skips without it)."""
    ok, reason = ul4m4.cuda_available()
    if not ok:
        pytest.skip(f"CUDA path: {reason}")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("CUDA path: torch sees no GPU")
    if case["op"] not in ("assign", "lloyd", "greedy", "soft"):
        pytest.skip(f"CUDA path: no public entry point for '{case['op']}'")
    K = case["K"]
    C, H, _ = d.centres(K)
    Xs = [torch.from_numpy(X).cuda() for X in d.Xs]
    P = torch.from_numpy(d.Pb).cuda()
    Craw = [c * s + mu for c, mu, s in zip(C, d.mu, d.sigma)]
    imp = ul4m4.UL4M4Imputer(K, init=(Craw, H.astype(bool)), max_iter=1, tol=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        imp.fit(Xs, mask=P)
    sync = torch.cuda.synchronize

    def run(fn):
        def f():
            out = fn()
            sync()
            return out
        return f

    if case["op"] == "assign":
        return run(lambda: imp.predict(Xs, mask=P)), {}
    if case["op"] == "lloyd":
        def lloyd():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return imp.fit(Xs, mask=P)
        return run(lloyd), {}
    return run(lambda: imp.transform(Xs, mask=P, completion=case["op"])), {}


def test_micro(benchmark, case, simd):
    d = data_for(case["N"], case["M"], case["missing"])
    fn, extra = (cuda_op if case["backend"] == "cuda" else cpu_op)(case, d)
    benchmark.group = f"{case['op']} N={case['N']} K={case['K']} M={case['M']} missing={case['missing']}"
    benchmark.extra_info.update(op=case["op"], N=case["N"], K=case["K"], M=case["M"], missing=case["missing"],
                                widths=list(WIDTHS[case["M"]]), backend=case["backend"], threads=THREADS, **extra)
    if getattr(benchmark, "disabled", False):
        benchmark(fn)
        return
    t = time.perf_counter()
    res = fn()  # warm-up, and calibration of the rounds
    first = time.perf_counter() - t
    if case["op"] == "lloyd" and case["backend"] != "cuda":
        upd = res["history"][0][4]
        _, _, model = d.centres(case["K"])
        t = time.perf_counter()
        _core.assign(model, d.Xs, d.P, THREADS, CHUNK)
        benchmark.extra_info.update(update_plus_assign_s=upd, update_s_estimate=upd - (time.perf_counter() - t))
    rounds = int(min(20, max(1, TARGET_S / max(first, 1e-6))))
    benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=0)
