// Peak FMA throughput of one core at 256 and 512 bits: 12 independent accumulator chains,
// the ceiling of any float32 GEMM kernel at each width (docs/kernels.md, "Measured").
//
//   g++ -O3 -mavx512f -mavx2 -mfma bench/native/fma_peak.cpp -o /tmp/fma_peak && /tmp/fma_peak
//
// Needs a CPU with AVX-512F (for AVX2 only, drop the 512-bit call and -mavx512f).
#include <immintrin.h>
#include <chrono>
#include <cstdio>
#define CHAINS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)

// GFLOP/s of `iters` rounds of 12 independent fma(a, x, b) on vectors V of `lanes` floats;
// the empty asm keeps each chain in a register and its FMAs unmerged.
template <class V, class Set, class Fma>
__attribute__((noinline)) double peak(long iters, int lanes, Set set1, Fma fma) {
  const V a = set1(0.999f), b = set1(1e-3f);
#define D(i) V x##i = set1(i);
  CHAINS(D)
#undef D
  const auto t0 = std::chrono::steady_clock::now();
  for (long it = 0; it < iters; ++it) {
#define F(i) x##i = fma(a, x##i, b); asm volatile("" : "+v"(x##i));
    CHAINS(F)
#undef F
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return 2.0 * lanes * 12 * iters / s / 1e9;
}

int main() {
  for (int r = 0; r < 3; ++r) {
    const double g256 = peak<__m256>(
        100000000, 8, [](float x) { return _mm256_set1_ps(x); },
        [](__m256 a, __m256 x, __m256 b) { return _mm256_fmadd_ps(a, x, b); });
    const double g512 = peak<__m512>(
        50000000, 16, [](float x) { return _mm512_set1_ps(x); },
        [](__m512 a, __m512 x, __m512 b) { return _mm512_fmadd_ps(a, x, b); });
    std::printf("one thread: 256-bit FMA %.1f GFLOP/s, 512-bit FMA %.1f GFLOP/s\n", g256, g512);
  }
}
