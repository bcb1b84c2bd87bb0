#!/usr/bin/env bash
# Cross-builds the compiled core and the _core module for Linux on ARM64 from an x86-64
# Debian / Ubuntu machine, then runs the NEON kernel check under user-mode emulation: what
# this repository can check of an aarch64 wheel without an ARM machine.
#
#   apt-get install g++-aarch64-linux-gnu qemu-user      # once
#   tools/cross_build_aarch64.sh                          # OpenMP build
#   UL4M4_OPENMP=OFF tools/cross_build_aarch64.sh         # the thread-pool build
#
# The module is compiled against this machine's Python headers (same layout on both 64-bit
# Linux ABIs) and named by pybind11 for the host; it is not importable here (no aarch64
# Python). Real aarch64 wheels are built natively by cibuildwheel (docs/platforms.md).
# Environment: PYTHON (a Python with pybind11, pytest and ul4m4 installed, e.g. the
# development virtualenv; default python3), UL4M4_OPENMP (AUTO | ON | OFF, default AUTO),
# UL4M4_CROSS_BUILD_DIR (default build/cross-aarch64).
set -euo pipefail
cd "$(dirname "$0")/.."
py="${PYTHON:-python3}"
for t in aarch64-linux-gnu-g++ qemu-aarch64 cmake; do
  command -v "$t" >/dev/null || { echo "cross_build_aarch64.sh: $t not found (apt-get install g++-aarch64-linux-gnu qemu-user; pip install cmake)" >&2; exit 2; }
done
build="${UL4M4_CROSS_BUILD_DIR:-build/cross-aarch64}"
gen=(); command -v ninja >/dev/null && gen=(-G Ninja)
cmake -S . -B "$build" "${gen[@]}" \
  -DCMAKE_TOOLCHAIN_FILE=tools/cmake/aarch64-linux-gnu.cmake \
  -DSKBUILD_PROJECT_NAME=ul4m4 -DSKBUILD_PROJECT_VERSION="$("$py" -c "import tomllib; print(tomllib.load(open('pyproject.toml', 'rb'))['project']['version'])")" \
  -DUL4M4_CUDA=OFF -DUL4M4_OPENMP="${UL4M4_OPENMP:-AUTO}" \
  -DPython_EXECUTABLE="$(command -v "$py")" \
  -DPython_INCLUDE_DIR="$("$py" -c "import sysconfig; print(sysconfig.get_paths()['include'])")" \
  -Dpybind11_DIR="$("$py" -m pybind11 --cmakedir)"
cmake --build "$build"
file "$build"/_core*.so
# The NEON kernels against the scalar level, under qemu-aarch64 (tests/native/simd_check.cpp).
"$py" -m pytest -q -p no:cacheprovider tests/test_platform.py -k neon
