import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # tests/reference.py

# ../shared beside the checkout, or UL4M4_SHARED (a copy elsewhere, e.g. on the device machine)
SHARED = Path(os.environ.get("UL4M4_SHARED") or HERE.parents[0].parent / "shared")
GOLDEN = SHARED / "golden"


def golden_files():
    return sorted(GOLDEN.glob("*.npz")) if GOLDEN.is_dir() else []


@pytest.fixture
def require_golden():
    if not golden_files():
        pytest.skip(f"golden vectors not found at {GOLDEN} (../shared is absent)")
