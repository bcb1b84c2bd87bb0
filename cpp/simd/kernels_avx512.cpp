// AVX-512F kernels (Skylake-X and later, Zen 4). Built with -mavx512f for this file only.
#include <immintrin.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "ul4m4/kernels.hpp"

namespace ul4m4 {
namespace {

struct T {
  using vec = __m512;
  static constexpr int W = 16;
  static constexpr int R = 4;  // 4 x 4 = 16 accumulators of 32 zmm
  static constexpr int C = 4;
  // Packed outer product: 12 rows x 32 centres = 24 accumulators + 2 + 1; a k block of 128
  // keeps the panel's strip (16 KiB) and the rows' (6 KiB) in L1 (docs/kernels.md). Off: on
  // Zen 4 it ran 56 GFLOP/s against the tiles' 95 (same bits either way); a CPU with two
  // 512-bit FMA pipes may measure otherwise (bench/dot_block_ab.sh avx512).
  static constexpr bool PACKED = false;
  static constexpr int MR = 12;
  static constexpr int64_t KC = 128;
  static inline vec zero() { return _mm512_setzero_ps(); }
  static inline vec load(const float* p) { return _mm512_loadu_ps(p); }
  static inline void store(float* p, vec v) { _mm512_storeu_ps(p, v); }
  static inline vec bcast(float x) { return _mm512_set1_ps(x); }
  static inline vec add(vec a, vec b) { return _mm512_add_ps(a, b); }
  static inline vec fmadd(vec a, vec b, vec c) { return _mm512_fmadd_ps(a, b, c); }
  static inline float hsum(vec a) {
    // Fixed tree: 512 -> 256 -> 128 -> scalar.
    const __m256 lo = _mm512_castps512_ps256(a);
    const __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1));
    const __m256 s8 = _mm256_add_ps(lo, hi);
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  static inline vec sub(vec a, vec b) { return _mm512_sub_ps(a, b); }
  static inline vec mul(vec a, vec b) { return _mm512_mul_ps(a, b); }
  static constexpr int WS = 4;  // wsum_rows: 64 outputs; wsum_block: 6 rows x WS/2 vectors
  static constexpr int NZ = 1;  // normalize_f32: 16 values a step
  static constexpr bool SQ_F64 = false;

  using dvec = __m512d;
  static constexpr int DW = 8;
  static constexpr int ND = 1;
  static constexpr int MA = 1;  // min_ratio: 8 values a step
  static inline dvec dload(const double* p) { return _mm512_loadu_pd(p); }
  static inline void dstore(double* p, dvec v) { _mm512_storeu_pd(p, v); }
  static inline dvec dbcast(double x) { return _mm512_set1_pd(x); }
  static inline dvec dadd(dvec a, dvec b) { return _mm512_add_pd(a, b); }
  static inline dvec dsub(dvec a, dvec b) { return _mm512_sub_pd(a, b); }
  static inline dvec dmul(dvec a, dvec b) { return _mm512_mul_pd(a, b); }
  static inline dvec dfmadd(dvec a, dvec b, dvec c) { return _mm512_fmadd_pd(a, b, c); }
  // v < b ? v : b lane by lane (as AVX2): a NaN is never taken, as in the scalar level.
  static inline dvec dmin(dvec b, dvec v) { return _mm512_min_pd(v, b); }
  static inline double dhsum(dvec v) {
    const __m256d s4 = _mm256_add_pd(_mm512_castpd512_pd256(v), _mm512_extractf64x4_pd(v, 1));
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(s4), _mm256_extractf128_pd(s4, 1));
    s = _mm_add_sd(s, _mm_unpackhi_pd(s, s));
    return _mm_cvtsd_f64(s);
  }
  static inline double dhmin(const dvec* b) { return _mm512_reduce_min_pd(b[0]); }
  static inline dvec widen(const float* p) { return _mm512_cvtps_pd(_mm256_loadu_ps(p)); }
  static inline dvec round_store(float* p, dvec v) {
    const __m256 f = _mm512_cvtpd_ps(v);
    _mm256_storeu_ps(p, f);
    return _mm512_cvtps_pd(f);
  }
};

}  // namespace
#include "kernels-inl.hpp"
#include "stream-inl.hpp"

#include "table-inl.hpp"
const KernelTable kKernelsAVX512 = level_table(SimdLevel::AVX512, "avx512");
}  // namespace ul4m4
