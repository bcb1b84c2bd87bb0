// Peak FMA throughput of one core at 256 and 512 bits: 12 independent accumulator chains,
// the ceiling of any float32 GEMM kernel at each width (docs/kernels.md, "Measured").
//
//   g++ -O3 -mavx512f -mavx2 -mfma bench/native/fma_peak.cpp -o /tmp/fma_peak && /tmp/fma_peak
//
// Needs a CPU with AVX-512F (for AVX2 only, delete peak512 and its call).
#include <immintrin.h>
#include <chrono>
#include <cstdio>
#define CHAINS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
__attribute__((noinline)) double peak256(long iters) {
  __m256 a = _mm256_set1_ps(0.999f), b = _mm256_set1_ps(1e-3f);
#define D(i) __m256 x##i = _mm256_set1_ps(i);
  CHAINS(D)
#undef D
  auto t0 = std::chrono::steady_clock::now();
  for (long it = 0; it < iters; ++it) {
#define F(i) x##i = _mm256_fmadd_ps(a, x##i, b); asm volatile("" : "+x"(x##i));
    CHAINS(F)
#undef F
  }
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return 2.0 * 8 * 12 * iters / s / 1e9;
}
__attribute__((noinline)) double peak512(long iters) {
  __m512 a = _mm512_set1_ps(0.999f), b = _mm512_set1_ps(1e-3f);
#define D(i) __m512 x##i = _mm512_set1_ps(i);
  CHAINS(D)
#undef D
  auto t0 = std::chrono::steady_clock::now();
  for (long it = 0; it < iters; ++it) {
#define F(i) x##i = _mm512_fmadd_ps(a, x##i, b); asm volatile("" : "+v"(x##i));
    CHAINS(F)
#undef F
  }
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return 2.0 * 16 * 12 * iters / s / 1e9;
}
int main() {
  for (int r = 0; r < 3; ++r)
    std::printf("one thread: 256-bit FMA %.1f GFLOP/s, 512-bit FMA %.1f GFLOP/s\n", peak256(100000000), peak512(50000000));
}
