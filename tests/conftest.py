import functools
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # tests/reference.py

# ../shared beside the checkout, or UL4M4_SHARED (a copy elsewhere, e.g. on the device machine)
SHARED = Path(os.environ.get("UL4M4_SHARED") or HERE.parents[0].parent / "shared")
GOLDEN = SHARED / "golden"

# Native checks under tests/native, built with the package's own flags (CMakeLists.txt:
# Release, gnu++17, -O3 -fno-math-errno; ISA flags only on an ISA's own file).
NATIVE_CXXFLAGS = ["-O3", "-DNDEBUG", "-fno-math-errno", "-std=gnu++17", f"-I{HERE.parent / 'cpp' / 'include'}"]


def run_native_check(cmd, timeout=300):
    """Runs a built native check; it must exit 0 and print PASSED. Returns its stdout."""
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    assert r.returncode == 0 and "PASSED" in r.stdout, r.stdout + r.stderr
    return r.stdout


def golden_files():
    return sorted(GOLDEN.glob("*.npz")) if GOLDEN.is_dir() else []


@functools.lru_cache(maxsize=None)
def _read_golden(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def load_golden(case) -> dict:
    """The arrays of one golden case (a name like 'p01' or a path), read once per session;
    skips the test, saying where it looked, when the golden vectors are absent. Callers
    must not modify the arrays (they are shared)."""
    if not golden_files():
        pytest.skip(f"golden vectors not found at {GOLDEN} (../shared is absent; or set UL4M4_SHARED)")
    path = case if isinstance(case, Path) else GOLDEN / f"{case}.npz"
    return _read_golden(path)


# ----------------------------------------------------------------------------- test data
def blobs(seed=7, n=80, dims=(4, 2), k=4, dtype=np.float64, p_missing=0.3):
    """Clustered data; initial centres all from one blob so that Lloyd runs ~10 iterations."""
    rng = np.random.default_rng(seed)
    g = rng.integers(k, size=n)
    D = sum(dims)
    cent = rng.normal(scale=2, size=(k, D))
    X = cent[g] + rng.normal(size=(n, D))
    offs = np.concatenate([[0], np.cumsum(dims)])
    Xs = [X[:, offs[m]:offs[m + 1]].astype(dtype) for m in range(len(dims))]
    P = np.ones((n, len(dims)), bool)
    for m in range(1, len(dims)):
        P[rng.random(n) < p_missing, m] = False
    for m, A in enumerate(Xs):
        A[~P[:, m]] = np.nan
    rows = np.flatnonzero(g == 0)[:k]
    C = [A[rows].astype(np.float64) for A in Xs]
    H = P[rows].copy()
    return Xs, P, (C, H)


def nan_marked(n, dims, seed=0, dtype=np.float64, p=0.7):
    """Gaussian modalities of widths ``dims``, each observed with probability ``p`` (every row
    keeps modality 0 when it would lose all), missing rows all NaN: (Xs, P)."""
    rng = np.random.default_rng(seed)
    Xs = [rng.normal(size=(n, d)).astype(dtype) for d in dims]
    P = rng.random((n, len(dims))) < p
    P[~P.any(axis=1), 0] = True
    for X, p_m in zip(Xs, P.T):
        X[~p_m] = np.nan
    return Xs, P


def two_modalities(n, seed=0, only_second_every=4):
    """Widths 5 and 3, float64, a mask only (no NaN): modality 1 missing on every third row,
    and every ``only_second_every``-th row from row 1 observing modality 1 alone: (X, P)."""
    rng = np.random.default_rng(seed)
    X = [rng.normal(size=(n, 5)), rng.normal(size=(n, 3))]
    P = np.ones((n, 2), bool)
    P[::3, 1] = False
    P[1::only_second_every, 0] = False
    P[1::only_second_every, 1] = True
    return X, P


def clusters(n, dims, k, seed=0, p=0.55, dtype=np.float32):
    """``k`` Gaussian clusters seen through modalities of widths ``dims``, each observed with
    probability ``p`` (every row keeps modality 0 when it would lose all); the values of
    missing slots are kept (pass the mask): (Xs, P)."""
    rng = np.random.default_rng(seed)
    centres = [rng.normal(size=(k, d)) * 3 for d in dims]
    lab = rng.integers(0, k, n)
    Xs = [(c[lab] + rng.normal(size=(n, d))).astype(dtype) for c, d in zip(centres, dims)]
    P = rng.random((n, len(dims))) < p
    P[~P.any(1), 0] = True
    return Xs, P


def initial_rows(Xs, P, K, seed=1):
    """An explicit init (raw float64 centres, their presence) of K distinct rows."""
    rows = np.random.default_rng(seed).choice(len(P), K, replace=False)
    return [X[rows].astype(np.float64) for X in Xs], P[rows].copy()


def cli_inputs(tmp_path, X, P):
    """X and P saved as m0.npy, m1.npy ... and mask.npy under tmp_path: the ``--modality`` /
    ``--mask`` arguments of the command line."""
    argv = []
    for m, x in enumerate(X):
        p = tmp_path / f"m{m}.npy"
        np.save(p, x)
        argv += ["--modality", str(p)]
    np.save(tmp_path / "mask.npy", P)
    return argv + ["--mask", str(tmp_path / "mask.npy")]
