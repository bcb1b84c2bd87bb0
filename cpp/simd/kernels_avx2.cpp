// AVX2 + FMA kernels (Haswell and later, Zen). Built with -mavx2 -mfma for this file only.
#include <immintrin.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "ul4m4/kernels.hpp"

namespace ul4m4 {
namespace {

struct T {
  using vec = __m256;
  static constexpr int W = 8;
  static constexpr int R = 4;  // 4 rows x 3 centres = 12 accumulators + 3 + 1 of 16 ymm
  static constexpr int C = 3;
  // Packed outer product (6 rows x 16 centres = 12 accumulators + 2 + 1): off, as it was
  // 3-4% slower than the 4 x 3 tiles on the AVX2 machine measured (docs/kernels.md).
  static constexpr bool PACKED = false;
  static constexpr int MR = 6;
  static constexpr int64_t KC = 1024;
  static inline vec zero() { return _mm256_setzero_ps(); }
  static inline vec load(const float* p) { return _mm256_loadu_ps(p); }
  static inline void store(float* p, vec v) { _mm256_storeu_ps(p, v); }
  static inline vec bcast(float x) { return _mm256_set1_ps(x); }
  static inline vec add(vec a, vec b) { return _mm256_add_ps(a, b); }
  static inline vec fmadd(vec a, vec b, vec c) { return _mm256_fmadd_ps(a, b, c); }
  static inline float hsum(vec a) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  static inline vec sub(vec a, vec b) { return _mm256_sub_ps(a, b); }
  static inline vec mul(vec a, vec b) { return _mm256_mul_ps(a, b); }
  static constexpr int WS = 4;  // wsum_rows: 32 outputs; wsum_block: 6 rows x WS/2 vectors
  static constexpr int NZ = 2;  // normalize_f32: 16 values a step, then 8
  static constexpr bool SQ_F64 = false;

  using dvec = __m256d;
  static constexpr int DW = 4;
  static constexpr int ND = 1;
  static constexpr int MA = 2;  // min_ratio: 8 values a step
  static inline dvec dload(const double* p) { return _mm256_loadu_pd(p); }
  static inline void dstore(double* p, dvec v) { _mm256_storeu_pd(p, v); }
  static inline dvec dbcast(double x) { return _mm256_set1_pd(x); }
  static inline dvec dadd(dvec a, dvec b) { return _mm256_add_pd(a, b); }
  static inline dvec dsub(dvec a, dvec b) { return _mm256_sub_pd(a, b); }
  static inline dvec dmul(dvec a, dvec b) { return _mm256_mul_pd(a, b); }
  static inline dvec dfmadd(dvec a, dvec b, dvec c) { return _mm256_fmadd_pd(a, b, c); }
  // v < b ? v : b lane by lane (minpd returns its second operand unless the first is less):
  // a NaN is never taken, as in the scalar level.
  static inline dvec dmin(dvec b, dvec v) { return _mm256_min_pd(v, b); }
  static inline double dhsum(dvec v) {
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    s = _mm_add_sd(s, _mm_unpackhi_pd(s, s));
    return _mm_cvtsd_f64(s);
  }
  static inline double dhmin(const dvec* b) {
    const dvec m = _mm256_min_pd(b[0], b[1]);
    __m128d s = _mm_min_pd(_mm256_castpd256_pd128(m), _mm256_extractf128_pd(m, 1));
    s = _mm_min_sd(s, _mm_unpackhi_pd(s, s));
    return _mm_cvtsd_f64(s);
  }
  static inline dvec widen(const float* p) { return _mm256_cvtps_pd(_mm_loadu_ps(p)); }
  static inline dvec round_store(float* p, dvec v) {
    const __m128 f = _mm256_cvtpd_ps(v);
    _mm_storeu_ps(p, f);
    return _mm256_cvtps_pd(f);
  }
};

}  // namespace
#include "kernels-inl.hpp"
#include "stream-inl.hpp"

#include "table-inl.hpp"
const KernelTable kKernelsAVX2 = level_table(SimdLevel::AVX2, "avx2");
}  // namespace ul4m4
