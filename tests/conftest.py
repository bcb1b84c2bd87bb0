import functools
import os
import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # tests/reference.py

# ../shared beside the checkout, or UL4M4_SHARED (a copy elsewhere, e.g. on the device machine)
SHARED = Path(os.environ.get("UL4M4_SHARED") or HERE.parents[0].parent / "shared")
GOLDEN = SHARED / "golden"


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
