#!/usr/bin/env bash
# The GPU checks of issue 5, prepared to run in as few device calls as possible (the device
# machine is lent for minutes: every step has its own time limit, logs go under $OUT).
#
#   here, once:      bash bench/device_check.sh prepare      # copies ../shared/golden into .devshared/
#   device call 1:   bash bench/device_check.sh build test bench          (carry: .devshared; ~6 min)
#   device call 2:   bash bench/device_check.sh sanitize                  (same warm machine; ~5 min)
#
# Stages: prepare | build | test | bench | sanitize | all (= build test bench sanitize).
# On the device: python3 is the one with CUDA torch; the package is built there with
# `pip install --no-build-isolation` for sm_90 only (CUDAARCHS=90: the H100/H200; CI and
# the wheel build 80;90). Each step's output: $OUT/<step>.txt, its exit status in the
# summary printed at the end (and in $OUT/summary.txt).
set -u -o pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/device_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
[ -d .devshared ] && export UL4M4_SHARED="$PWD/.devshared"
PY=${PY:-python3}
summary=()

step() {  # step NAME LIMIT_S CMD...
  local name=$1 limit=$2 t0=$SECONDS rc
  shift 2
  echo "== $name (limit ${limit} s): $*"
  timeout --kill-after=10 "$limit" "$@" >"$OUT/$name.txt" 2>&1
  rc=$?
  tail -n 25 "$OUT/$name.txt"
  echo "== $name: rc=$rc in $((SECONDS - t0)) s"
  summary+=("$name rc=$rc $((SECONDS - t0))s")
  return 0
}

stages=("$@")
[ ${#stages[@]} -eq 0 ] && stages=(all)
for s in "${stages[@]}"; do
  case $s in
    prepare)
      src=${UL4M4_SHARED_SRC:-../shared}
      mkdir -p .devshared
      cp -r "$src/golden" .devshared/ && echo "copied $src/golden to .devshared/ (ignored by git; carry it)"
      ;;
    build)
      nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv >"$OUT/gpu.txt" 2>&1
      cat "$OUT/gpu.txt"
      CUDAARCHS=${CUDAARCHS:-90} CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-16} \
        step build 300 "$PY" -m pip install --no-build-isolation --no-deps --no-cache-dir \
        --config-settings=cmake.define.UL4M4_CUDA=ON --config-settings=build-dir=build/device .
      "$PY" -c "import ul4m4; print('ul4m4', ul4m4.__version__, 'cuda_available', ul4m4.cuda_available())" \
        2>&1 | tee "$OUT/available.txt"
      ;;
    test)
      # the CUDA suite (CPU vs GPU on the golden cases and random data), then the rest of
      # the suite's CUDA-aware parts quickly
      step test_cuda 200 "$PY" -m pytest tests/test_cuda.py -q -rs -p no:cacheprovider --durations=5
      step bench_micro_cuda 120 "$PY" -m pytest bench/test_micro.py -q -p no:cacheprovider -k cuda \
        --benchmark-min-rounds=3 --benchmark-max-time=0.5 --benchmark-json="$OUT/micro_cuda.json"
      ;;
    bench)
      step cuda_bench 300 "$PY" bench/cuda_bench.py --check --json "$OUT/cuda_bench.json"
      ;;
    sanitize)
      # a small subset under each tool: the sanitizers slow kernels down by 10-100 x
      step memcheck 200 compute-sanitizer --tool memcheck --leak-check no --error-exitcode 9 \
        "$PY" -m pytest tests/test_cuda.py -q -p no:cacheprovider \
        -k "(golden or random) and float32 or single_rows or out_in_place or no_input_copy"
      step racecheck 150 compute-sanitizer --tool racecheck --error-exitcode 9 \
        "$PY" -m pytest tests/test_cuda.py -q -p no:cacheprovider -k "random and float32"
      step synccheck 100 compute-sanitizer --tool synccheck --error-exitcode 9 \
        "$PY" -m pytest tests/test_cuda.py -q -p no:cacheprovider -k "golden and float32"
      ;;
    all)
      exec "$0" build test bench sanitize
      ;;
    *)
      echo "unknown stage '$s' (prepare | build | test | bench | sanitize | all)" >&2
      exit 2
      ;;
  esac
done
printf '%s\n' "${summary[@]}" | tee "$OUT/summary.txt"
