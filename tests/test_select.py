"""The exact selection behind soft completion's temperature (the median of a row's D_A^2;
cpp/detail.hpp: select_kth, median), checked natively against std::sort by
tests/native/select_check.cpp: every k of many sizes and orders, as the package builds it
and with the std::nth_element fallback forced."""
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import NATIVE_CXXFLAGS, run_native_check

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("rounds", [None, 1], ids=["default", "fallback"])
def test_select_kth_and_median_match_sort(tmp_path, rounds):
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("no C++ compiler (g++ / c++) on PATH")
    exe = tmp_path / "select_check"
    defs = [] if rounds is None else [f"-DUL4M4_SELECT_ROUNDS={rounds}"]
    subprocess.run([cxx, *NATIVE_CXXFLAGS, f"-I{ROOT / 'cpp'}", *defs, str(ROOT / "tests" / "native" / "select_check.cpp"),
                    "-o", str(exe)], check=True, capture_output=True, text=True)
    run_native_check([str(exe)], timeout=120)
