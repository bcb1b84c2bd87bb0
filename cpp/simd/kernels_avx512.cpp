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
  // keeps the panel's strip (16 KiB) and the rows' (6 KiB) in L1 (docs/kernels.md). Off
  // until it is measured faster than the tiles on a CPU with AVX-512 (same bits either way).
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
};

inline double hsum_pd(__m512d v) {
  const __m256d s4 = _mm256_add_pd(_mm512_castpd512_pd256(v), _mm512_extractf64x4_pd(v, 1));
  __m128d s = _mm_add_pd(_mm256_castpd256_pd128(s4), _mm256_extractf128_pd(s4, 1));
  s = _mm_add_sd(s, _mm_unpackhi_pd(s, s));
  return _mm_cvtsd_f64(s);
}

}  // namespace
#include "kernels-inl.hpp"
namespace {

double normalize_f32(const float* x, int64_t d, const float* mu, const float* is, float* z, int64_t dp) {
  // ||z||^2 in float32 lanes (the dot products it is combined with are float32 too).
  __m512 s0 = _mm512_setzero_ps();
  int64_t k = 0;
  for (; k + 16 <= d; k += 16) {
    const __m512 v = _mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(x + k), _mm512_loadu_ps(mu + k)),
                                   _mm512_loadu_ps(is + k));
    _mm512_storeu_ps(z + k, v);
    s0 = _mm512_fmadd_ps(v, v, s0);
  }
  double ss = static_cast<double>(T::hsum(s0));
  for (; k < d; ++k) {
    const float v = (x[k] - mu[k]) * is[k];
    z[k] = v;
    ss += static_cast<double>(v) * v;
  }
  for (; k < dp; ++k) z[k] = 0.f;
  return ss;
}

double normalize_f64(const double* x, int64_t d, const double* mu, const double* is, float* z,
                     int64_t dp) {
  __m512d s0 = _mm512_setzero_pd();
  int64_t k = 0;
  for (; k + 8 <= d; k += 8) {
    const __m512d v = _mm512_mul_pd(_mm512_sub_pd(_mm512_loadu_pd(x + k), _mm512_loadu_pd(mu + k)),
                                    _mm512_loadu_pd(is + k));
    const __m256 f = _mm512_cvtpd_ps(v);
    _mm256_storeu_ps(z + k, f);
    const __m512d r = _mm512_cvtps_pd(f);
    s0 = _mm512_fmadd_pd(r, r, s0);
  }
  double ss = hsum_pd(s0);
  for (; k < d; ++k) {
    const float v = static_cast<float>((x[k] - mu[k]) * is[k]);
    z[k] = v;
    ss += static_cast<double>(v) * v;
  }
  for (; k < dp; ++k) z[k] = 0.f;
  return ss;
}

void accum_f32(const float* x, int64_t d, double* acc) {
  int64_t k = 0;
  for (; k + 8 <= d; k += 8)
    _mm512_storeu_pd(acc + k, _mm512_add_pd(_mm512_loadu_pd(acc + k), _mm512_cvtps_pd(_mm256_loadu_ps(x + k))));
  for (; k < d; ++k) acc[k] += static_cast<double>(x[k]);
}

void accum_f64(const double* x, int64_t d, double* acc) {
  int64_t k = 0;
  for (; k + 8 <= d; k += 8)
    _mm512_storeu_pd(acc + k, _mm512_add_pd(_mm512_loadu_pd(acc + k), _mm512_loadu_pd(x + k)));
  for (; k < d; ++k) acc[k] += x[k];
}

double min_ratio(const double* E, const double* F, const double* rden, int64_t K) {
  __m512d b = _mm512_set1_pd(__builtin_inf());
  int64_t l = 0;
  for (; l + 8 <= K; l += 8)
    b = _mm512_min_pd(b, _mm512_mul_pd(_mm512_add_pd(_mm512_loadu_pd(E + l), _mm512_loadu_pd(F + l)),
                                       _mm512_loadu_pd(rden + l)));
  double best = _mm512_reduce_min_pd(b);
  for (; l < K; ++l) {
    const double v = (E[l] + F[l]) * rden[l];
    best = v < best ? v : best;
  }
  return best;
}

void wsum_rows(const float* w, int64_t K, const float* X, int64_t ldx, int64_t dp, float* y) {
  int64_t k = 0;
  for (; k + 64 <= dp; k += 64) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t j = 0; j < K; ++j) {
      if (w[j] == 0.f) continue;
      const __m512 vw = _mm512_set1_ps(w[j]);
      const float* x = X + j * ldx + k;
      a0 = _mm512_fmadd_ps(vw, _mm512_loadu_ps(x), a0);
      a1 = _mm512_fmadd_ps(vw, _mm512_loadu_ps(x + 16), a1);
      a2 = _mm512_fmadd_ps(vw, _mm512_loadu_ps(x + 32), a2);
      a3 = _mm512_fmadd_ps(vw, _mm512_loadu_ps(x + 48), a3);
    }
    _mm512_storeu_ps(y + k, a0);
    _mm512_storeu_ps(y + k + 16, a1);
    _mm512_storeu_ps(y + k + 32, a2);
    _mm512_storeu_ps(y + k + 48, a3);
  }
  for (; k < dp; k += 16) {
    __m512 a0 = _mm512_setzero_ps();
    for (int64_t j = 0; j < K; ++j)
      if (w[j] != 0.f) a0 = _mm512_fmadd_ps(_mm512_set1_ps(w[j]), _mm512_loadu_ps(X + j * ldx + k), a0);
    _mm512_storeu_ps(y + k, a0);
  }
}

#include "stream-inl.hpp"

void wsum_rows2(const float* w0, const float* w1, int64_t K, const float* X, int64_t ldx, int64_t dp,
                float* y0, float* y1) {
  wsum_rows(w0, K, X, ldx, dp, y0);
  wsum_rows(w1, K, X, ldx, dp, y1);
}

}  // namespace

#include "table-inl.hpp"
const KernelTable kKernelsAVX512 = level_table(SimdLevel::AVX512, "avx512");
}  // namespace ul4m4
