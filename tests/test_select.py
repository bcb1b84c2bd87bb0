"""The exact selection behind soft completion's temperature (the median of a row's D_A^2;
cpp/detail.hpp: select_kth, median), checked natively against std::sort by
tests/native/select_check.cpp: every k of many sizes and orders, as the package builds it
and with the std::nth_element fallback forced."""
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CXXFLAGS = ["-O3", "-DNDEBUG", "-fno-math-errno", "-std=gnu++17", f"-I{ROOT / 'cpp' / 'include'}", f"-I{ROOT / 'cpp'}"]


@pytest.mark.parametrize("rounds", [None, 1], ids=["default", "fallback"])
def test_select_kth_and_median_match_sort(tmp_path, rounds):
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("no C++ compiler (g++ / c++) on PATH")
    exe = tmp_path / "select_check"
    defs = [] if rounds is None else [f"-DUL4M4_SELECT_ROUNDS={rounds}"]
    subprocess.run([cxx, *CXXFLAGS, *defs, str(ROOT / "tests" / "native" / "select_check.cpp"), "-o", str(exe)],
                   check=True, capture_output=True, text=True)
    r = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0 and "PASSED" in r.stdout, r.stdout + r.stderr
