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
};

inline double hsum_pd(__m256d v) {
  __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
  s = _mm_add_sd(s, _mm_unpackhi_pd(s, s));
  return _mm_cvtsd_f64(s);
}

}  // namespace
#include "kernels-inl.hpp"
namespace {

double normalize_f32(const float* x, int64_t d, const float* mu, const float* is, float* z, int64_t dp) {
  // ||z||^2 in float32 lanes (the dot products it is combined with are float32 too).
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 16 <= d; k += 16) {
    const __m256 v0 = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + k), _mm256_loadu_ps(mu + k)),
                                    _mm256_loadu_ps(is + k));
    const __m256 v1 = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + k + 8), _mm256_loadu_ps(mu + k + 8)),
                                    _mm256_loadu_ps(is + k + 8));
    _mm256_storeu_ps(z + k, v0);
    _mm256_storeu_ps(z + k + 8, v1);
    s0 = _mm256_fmadd_ps(v0, v0, s0);
    s1 = _mm256_fmadd_ps(v1, v1, s1);
  }
  for (; k + 8 <= d; k += 8) {
    const __m256 v = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + k), _mm256_loadu_ps(mu + k)),
                                   _mm256_loadu_ps(is + k));
    _mm256_storeu_ps(z + k, v);
    s0 = _mm256_fmadd_ps(v, v, s0);
  }
  double ss = static_cast<double>(T::hsum(_mm256_add_ps(s0, s1)));
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
  __m256d s0 = _mm256_setzero_pd();
  int64_t k = 0;
  for (; k + 4 <= d; k += 4) {
    const __m256d v = _mm256_mul_pd(_mm256_sub_pd(_mm256_loadu_pd(x + k), _mm256_loadu_pd(mu + k)),
                                    _mm256_loadu_pd(is + k));
    const __m128 f = _mm256_cvtpd_ps(v);
    _mm_storeu_ps(z + k, f);
    const __m256d r = _mm256_cvtps_pd(f);
    s0 = _mm256_fmadd_pd(r, r, s0);
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
  for (; k + 4 <= d; k += 4)
    _mm256_storeu_pd(acc + k, _mm256_add_pd(_mm256_loadu_pd(acc + k), _mm256_cvtps_pd(_mm_loadu_ps(x + k))));
  for (; k < d; ++k) acc[k] += static_cast<double>(x[k]);
}

void accum_f64(const double* x, int64_t d, double* acc) {
  int64_t k = 0;
  for (; k + 4 <= d; k += 4)
    _mm256_storeu_pd(acc + k, _mm256_add_pd(_mm256_loadu_pd(acc + k), _mm256_loadu_pd(x + k)));
  for (; k < d; ++k) acc[k] += x[k];
}

double min_ratio(const double* E, const double* F, const double* rden, int64_t K) {
  __m256d b0 = _mm256_set1_pd(__builtin_inf()), b1 = b0;
  int64_t l = 0;
  for (; l + 8 <= K; l += 8) {
    b0 = _mm256_min_pd(b0, _mm256_mul_pd(_mm256_add_pd(_mm256_loadu_pd(E + l), _mm256_loadu_pd(F + l)),
                                         _mm256_loadu_pd(rden + l)));
    b1 = _mm256_min_pd(b1, _mm256_mul_pd(_mm256_add_pd(_mm256_loadu_pd(E + l + 4), _mm256_loadu_pd(F + l + 4)),
                                         _mm256_loadu_pd(rden + l + 4)));
  }
  b0 = _mm256_min_pd(b0, b1);
  __m128d s = _mm_min_pd(_mm256_castpd256_pd128(b0), _mm256_extractf128_pd(b0, 1));
  s = _mm_min_sd(s, _mm_unpackhi_pd(s, s));
  double best = _mm_cvtsd_f64(s);
  for (; l < K; ++l) {
    const double v = (E[l] + F[l]) * rden[l];
    best = v < best ? v : best;
  }
  return best;
}

void wsum_rows(const float* w, int64_t K, const float* X, int64_t ldx, int64_t dp, float* y) {
  // 32 outputs stay in registers while every centre row streams past.
  int64_t k = 0;
  for (; k + 32 <= dp; k += 32) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t j = 0; j < K; ++j) {
      if (w[j] == 0.f) continue;
      const __m256 vw = _mm256_set1_ps(w[j]);
      const float* x = X + j * ldx + k;
      a0 = _mm256_fmadd_ps(vw, _mm256_loadu_ps(x), a0);
      a1 = _mm256_fmadd_ps(vw, _mm256_loadu_ps(x + 8), a1);
      a2 = _mm256_fmadd_ps(vw, _mm256_loadu_ps(x + 16), a2);
      a3 = _mm256_fmadd_ps(vw, _mm256_loadu_ps(x + 24), a3);
    }
    _mm256_storeu_ps(y + k, a0);
    _mm256_storeu_ps(y + k + 8, a1);
    _mm256_storeu_ps(y + k + 16, a2);
    _mm256_storeu_ps(y + k + 24, a3);
  }
  for (; k < dp; k += 8) {
    __m256 a0 = _mm256_setzero_ps();
    for (int64_t j = 0; j < K; ++j)
      if (w[j] != 0.f) a0 = _mm256_fmadd_ps(_mm256_set1_ps(w[j]), _mm256_loadu_ps(X + j * ldx + k), a0);
    _mm256_storeu_ps(y + k, a0);
  }
}

#include "stream-inl.hpp"

void wsum_rows2(const float* w0, const float* w1, int64_t K, const float* X, int64_t ldx, int64_t dp,
                float* y0, float* y1) {
  // Two rows x 32 outputs in 8 accumulators: each centre load feeds two FMAs, and eight
  // independent chains hide the FMA latency (the one-row kernel has four).
  int64_t k = 0;
  for (; k + 32 <= dp; k += 32) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    __m256 b0 = a0, b1 = a0, b2 = a0, b3 = a0;
    for (int64_t j = 0; j < K; ++j) {
      if (w0[j] == 0.f && w1[j] == 0.f) continue;
      const __m256 v0 = _mm256_set1_ps(w0[j]), v1 = _mm256_set1_ps(w1[j]);
      const float* x = X + j * ldx + k;
      const __m256 x0 = _mm256_loadu_ps(x), x1 = _mm256_loadu_ps(x + 8);
      const __m256 x2 = _mm256_loadu_ps(x + 16), x3 = _mm256_loadu_ps(x + 24);
      a0 = _mm256_fmadd_ps(v0, x0, a0);
      a1 = _mm256_fmadd_ps(v0, x1, a1);
      a2 = _mm256_fmadd_ps(v0, x2, a2);
      a3 = _mm256_fmadd_ps(v0, x3, a3);
      b0 = _mm256_fmadd_ps(v1, x0, b0);
      b1 = _mm256_fmadd_ps(v1, x1, b1);
      b2 = _mm256_fmadd_ps(v1, x2, b2);
      b3 = _mm256_fmadd_ps(v1, x3, b3);
    }
    _mm256_storeu_ps(y0 + k, a0);
    _mm256_storeu_ps(y0 + k + 8, a1);
    _mm256_storeu_ps(y0 + k + 16, a2);
    _mm256_storeu_ps(y0 + k + 24, a3);
    _mm256_storeu_ps(y1 + k, b0);
    _mm256_storeu_ps(y1 + k + 8, b1);
    _mm256_storeu_ps(y1 + k + 16, b2);
    _mm256_storeu_ps(y1 + k + 24, b3);
  }
  for (; k < dp; k += 8) {
    __m256 a0 = _mm256_setzero_ps(), b0 = a0;
    for (int64_t j = 0; j < K; ++j) {
      if (w0[j] == 0.f && w1[j] == 0.f) continue;
      const __m256 x0 = _mm256_loadu_ps(X + j * ldx + k);
      a0 = _mm256_fmadd_ps(_mm256_set1_ps(w0[j]), x0, a0);
      b0 = _mm256_fmadd_ps(_mm256_set1_ps(w1[j]), x0, b0);
    }
    _mm256_storeu_ps(y0 + k, a0);
    _mm256_storeu_ps(y1 + k, b0);
  }
}

}  // namespace

#include "table-inl.hpp"
const KernelTable kKernelsAVX2 = level_table(SimdLevel::AVX2, "avx2");
}  // namespace ul4m4
