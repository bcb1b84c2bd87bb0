#!/usr/bin/env bash
# A/B of dot_block at one x86 level: the level's default path against the packed
# outer-product path (UL4M4_DOT_PACKED_ALWAYS), same sources and flags as the package,
# run alternately ROUNDS times (the machine may be shared).
#
#   bench/dot_block_ab.sh [avx2|avx512|scalar] [dp] [K] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
level=${1:-avx2} dp=${2:-1024} K=${3:-64} rounds=${4:-3}
case $level in
  avx2) table=kKernelsAVX2 src=cpp/simd/kernels_avx2.cpp isa="-mavx2 -mfma" ;;
  avx512) table=kKernelsAVX512 src=cpp/simd/kernels_avx512.cpp isa="-mavx512f -mavx2 -mfma -Wno-maybe-uninitialized" ;;
  scalar) table=kKernelsScalar src="" isa="" ;;
  *) echo "unknown level $level" >&2; exit 2 ;;
esac
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
flags="-O3 -DNDEBUG -fno-math-errno -std=gnu++17 -Icpp/include"
for v in default packed; do
  d=""; [ $v = packed ] && d=-DUL4M4_DOT_PACKED_ALWAYS
  g++ $flags $d -c cpp/simd/kernels_scalar.cpp -o "$out/s_$v.o"
  objs=("$out/s_$v.o")
  if [ -n "$src" ]; then g++ $flags $d $isa -c "$src" -o "$out/i_$v.o"; objs+=("$out/i_$v.o"); fi
  g++ $flags -DCHECK_TABLE=$table bench/native/dot_block_bench.cpp "${objs[@]}" -o "$out/$v"
done
for r in $(seq "$rounds"); do
  for v in default packed; do printf '%-8s ' $v; "$out/$v" "$dp" "$K"; done
done
