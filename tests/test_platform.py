"""Platform layer: threading backend (OpenMP or the built-in pool), SIMD levels per CPU
architecture, and the SIMD kernels against the scalar level (the ARM64 NEON kernels
cross-compiled and run under qemu-user when the Debian tools are installed)."""
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import NATIVE_CXXFLAGS, run_native_check

import ul4m4

ROOT = Path(__file__).resolve().parents[1]
X86 = platform.machine().lower() in ("x86_64", "amd64")
ARM64 = platform.machine().lower() in ("aarch64", "arm64")


def test_threading_backend_is_reported():
    assert ul4m4.threading_backend() in ("openmp", "threads")
    assert "threading_backend" in ul4m4.__all__


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")
def test_threading_backend_matches_the_linked_runtime():
    # The pool build must not load an OpenMP runtime; the OpenMP build loads one.
    code = ("import ul4m4; maps = open('/proc/self/maps').read(); "
            "print(ul4m4.threading_backend(), any(s in maps for s in ('libgomp', 'libomp', 'libiomp')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[1] == str(out[0] == "openmp"), out


def test_default_threads_follow_omp_num_threads():
    code = "import ul4m4._imputer as m; print(m.effective_n_threads(None))"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == "1"


def test_simd_levels_belong_to_this_architecture():
    levels = ul4m4.available_simd_levels()
    assert levels[0] == "scalar" and levels[-1] == ul4m4.max_simd_level()
    if X86:
        assert levels == ["scalar", "avx2", "avx512"][: len(levels)]
    elif ARM64:
        assert levels == ["scalar", "neon"]
    else:
        assert levels == ["scalar"]
    with pytest.raises(ValueError, match="not supported by this CPU"):
        ul4m4.set_simd_level("avx2" if ARM64 else "neon")


@pytest.mark.parametrize("simd", ["scalar", "best"])
def test_threads_1_to_4_same_bits(simd):
    # A fixed workload (k-means++ with restarts, Lloyd, greedy and soft completion, many
    # chunks) with 1, 2, 3 and 4 threads (more threads than this machine may have cores).
    cmd = [sys.executable, str(ROOT / "tools" / "threading_check.py")]
    if simd == "scalar":
        cmd += ["--simd", "scalar"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    res = json.loads(r.stdout)
    assert res["backend"] == ul4m4.threading_backend()
    assert len(set(res["hashes"].values())) == 1 and len(res["hashes"]) == 4


INTERRUPT_SCRIPT = textwrap.dedent("""
    import sys, numpy as np, ul4m4
    rng = np.random.default_rng(0)
    Xs = [rng.standard_normal((60000, 128), dtype=np.float32) for _ in range(2)]
    imp = ul4m4.UL4M4Imputer(64, max_iter=100000, tol=0.0, random_state=0, n_threads=3, chunk_size=512)
    print("ready", flush=True)
    try:
        imp.fit(Xs)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        sys.exit(3)
    print("finished", flush=True)
""")


@pytest.mark.skipif(os.name != "posix", reason="needs POSIX signals")
def test_sigint_stops_a_multithreaded_fit():
    # Ctrl-C is polled by the calling thread (thread 0 of the backend) between tasks, with
    # the other threads busy: the fit must still stop.
    p = subprocess.Popen([sys.executable, "-c", INTERRUPT_SCRIPT], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    time.sleep(1.5)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 3, (out, err)
    assert "interrupted" in out


@pytest.mark.filterwarnings("ignore::ul4m4.ConvergenceWarning")
def test_concurrent_calls_from_python_threads_agree():
    # Two Python threads call the core at once (the GIL is released): with the pool
    # backend the second call runs on threads of its own; results stay the same.
    import threading

    import numpy as np

    rng = np.random.default_rng(3)
    Xs = [rng.normal(size=(4000, 24)).astype(np.float32), rng.normal(size=(4000, 9))]
    mask = rng.random((4000, 2)) > 0.3
    mask[:, 0] |= ~mask[:, 1]
    imp = ul4m4.UL4M4Imputer(6, random_state=0, max_iter=3, n_threads=3, chunk_size=64).fit(Xs, mask=mask)
    want = imp.transform(Xs, mask=mask)
    got = [None] * 4

    def work(i):
        got[i] = imp.transform(Xs, mask=mask)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for g in got:
        for a, b in zip(g, want):
            assert np.array_equal(a, b, equal_nan=True)


# --- SIMD kernels against the scalar level (tests/native/simd_check.cpp) ------------------



def _build_check(cxx, out_dir, table, isa_file, isa_flags=(), scalar_order=False, static=False, defines=()):
    objs = []
    defs = [f"-D{d}" for d in defines]
    for src, flags in (("cpp/simd/kernels_scalar.cpp", defs), (isa_file, list(isa_flags) + defs),
                       ("tests/native/simd_check.cpp", [f"-DCHECK_TABLE={table}"] + (["-DSCALAR_ORDER"] if scalar_order else []))):
        obj = out_dir / (Path(src).stem + ".o")
        subprocess.run([cxx, *NATIVE_CXXFLAGS, *flags, "-c", str(ROOT / src), "-o", str(obj)], check=True,
                       capture_output=True, text=True)
        objs.append(str(obj))
    exe = out_dir / f"simd_check_{table}"
    subprocess.run([cxx, *objs, "-o", str(exe)] + (["-static"] if static else []), check=True,
                   capture_output=True, text=True)
    return exe


@pytest.mark.parametrize("packed", [False, True], ids=["default", "packed"])
def test_neon_kernels_match_scalar(tmp_path, packed):
    """Every NEON kernel against the scalar level, bit for bit (NEON keeps the scalar
    level's summation order; only ||z||^2 of normalize_* is compared within a tolerance).
    packed: with dot_block's packed outer-product path forced at both levels."""
    if ARM64:
        cxx, run = shutil.which("g++") or shutil.which("c++"), []
        if not cxx:
            pytest.skip("no C++ compiler (g++ / c++) on PATH")
    else:
        cxx, qemu = shutil.which("aarch64-linux-gnu-g++"), shutil.which("qemu-aarch64") or shutil.which("qemu-aarch64-static")
        if not cxx or not qemu:
            pytest.skip("cross check of the ARM64 kernels needs aarch64-linux-gnu-g++ and qemu-aarch64 "
                        "(Debian: apt-get install g++-aarch64-linux-gnu qemu-user)")
        run = [qemu]
    exe = _build_check(cxx, tmp_path, "kKernelsNEON", "cpp/simd/kernels_neon.cpp", scalar_order=True, static=not ARM64,
                       defines=["UL4M4_DOT_PACKED_ALWAYS"] if packed else ())
    out = run_native_check(run + [str(exe)])
    assert "level neon against scalar" in out


def _cpu_flags():
    try:
        return open("/proc/cpuinfo").read().split()
    except OSError:
        return []


@pytest.mark.parametrize("packed", [False, True], ids=["default", "packed"])
@pytest.mark.parametrize("table,isa_file,flags,cpu", [
    ("kKernelsAVX2", "cpp/simd/kernels_avx2.cpp", ["-mavx2", "-mfma"], ("avx2", "fma")),
    ("kKernelsAVX512", "cpp/simd/kernels_avx512.cpp", ["-mavx512f", "-mavx2", "-mfma"], ("avx512f", "avx2", "fma")),
])
def test_x86_kernels_match_scalar(tmp_path, table, isa_file, flags, cpu, packed):
    """The same checks for the x86 levels this CPU runs (their dot_block and wsum_rows have
    their own order: compared within a tolerance, the rest bit for bit). packed: built with
    UL4M4_DOT_PACKED_ALWAYS, so that dot_block takes the packed outer-product path for every
    block of 2 x 2 or more at this level and at the scalar level, and must give the bits of
    single pairs (the dot-product tiles) at both."""
    if not X86:
        pytest.skip("x86-64 only")
    cxx = shutil.which("g++") or shutil.which("c++")
    if not cxx:
        pytest.skip("no C++ compiler (g++ / c++) on PATH")
    missing = [f for f in cpu if f not in _cpu_flags()]
    if missing:
        pytest.skip(f"this CPU lacks {', '.join(missing)}")
    exe = _build_check(cxx, tmp_path, table, isa_file, flags, defines=["UL4M4_DOT_PACKED_ALWAYS"] if packed else ())
    run_native_check([str(exe)])


# ----------------------------------------------------------------------------- SIMD controls
def test_simd_controls():
    levels = ul4m4.available_simd_levels()
    assert levels[0] == "scalar" and ul4m4.max_simd_level() == levels[-1]
    original = ul4m4.simd_level()
    assert original in levels
    try:
        with pytest.raises(ValueError, match="nonsense"):
            ul4m4.set_simd_level("nonsense")
        assert ul4m4.simd_level() == original
        for lv in levels:
            ul4m4.set_simd_level(lv)
            assert ul4m4.simd_level() == lv
        for lv in ("scalar", "avx2", "avx512"):
            if lv not in levels:
                with pytest.raises(ValueError):
                    ul4m4.set_simd_level(lv)
    finally:
        ul4m4.set_simd_level(original)
    assert ul4m4.simd_level() == original
    ok, why = ul4m4.cuda_available()
    assert isinstance(ok, bool) and isinstance(why, str)


def test_simd_environment_variable():
    code = "import ul4m4, warnings; print(ul4m4.simd_level())"
    env = dict(os.environ, UL4M4_SIMD="scalar")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "scalar"
    env["UL4M4_SIMD"] = "nonsense"
    r = subprocess.run([sys.executable, "-W", "always", "-c", code], env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and "UL4M4_SIMD='nonsense' ignored" in r.stderr
