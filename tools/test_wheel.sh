#!/usr/bin/env bash
# Installs a built ul4m4 wheel into a fresh virtualenv, with no compiler reachable, and
# tests it there: import, the SIMD level and threading backend, a small fit / transform,
# then a subset of the test suite against the installed wheel.
#
#   tools/test_wheel.sh [dist/ul4m4-*.whl]      # default: the newest wheel under dist/
#
# Environment: PYTHON (default python3; must match the wheel's cp3XX tag), UL4M4_WHEEL_TESTS
# (the pytest arguments; default: the platform, API, golden-vector and reference tests).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
py="${PYTHON:-python3}"
whl="${1:-$(ls -t "$root"/dist/ul4m4-*.whl 2>/dev/null | head -n 1)}"
[ -n "$whl" ] && [ -f "$whl" ] || { echo "test_wheel.sh: no wheel given and none under dist/" >&2; exit 2; }
whl="$(cd "$(dirname "$whl")" && pwd)/$(basename "$whl")"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$py" -m venv "$work/venv"
pip_args=(--disable-pip-version-check --progress-bar off -q)
"$work/venv/bin/python" -m pip install "${pip_args[@]}" pytest hypothesis

# No compiler: any attempt to build from source fails (and --only-binary refuses sdists).
mkdir -p "$work/nocc"
for c in cc c++ gcc g++ clang clang++ cmake ninja nvcc; do printf '#!/bin/sh\necho "%s called" >&2; exit 1\n' "$c" > "$work/nocc/$c"; chmod +x "$work/nocc/$c"; done
PATH="$work/nocc:$PATH" CC=false CXX=false \
  "$work/venv/bin/python" -m pip install "${pip_args[@]}" --only-binary :all: "$whl"

cd "$work"  # away from the source tree: the installed wheel is what gets imported
"$work/venv/bin/python" - <<'PY'
import numpy as np
import ul4m4
print("ul4m4", ul4m4.__version__, "from", ul4m4.__file__)
print("SIMD", ul4m4.simd_level(), "of", ul4m4.available_simd_levels(), "| threads:", ul4m4.threading_backend(),
      "| CUDA:", ul4m4.cuda_available())
rng = np.random.default_rng(0)
Xs = [rng.normal(size=(500, 12)).astype(np.float32), rng.normal(size=(500, 5))]
mask = np.ones((500, 2), bool)
mask[::4, 1] = False
imp = ul4m4.UL4M4Imputer(5, random_state=0).fit(Xs, mask=mask)
out, imputed, unfilled = imp.transform(Xs, mask=mask, return_masks=True)
assert int(imputed.sum()) == 125 and not unfilled.any() and np.isfinite(out[1]).all()
print("fit/transform ok")
PY
read -r -a tests <<< "${UL4M4_WHEEL_TESTS:-tests/test_platform.py tests/test_estimator.py tests/test_persistence.py tests/test_fit_reporting.py tests/test_seeding.py tests/test_torch.py tests/test_golden.py tests/test_reference.py}"
(cd "$root" && "$work/venv/bin/python" -m pytest -q -p no:cacheprovider "${tests[@]}")
echo "test_wheel.sh: $(basename "$whl") passed"
