// ARM64 Advanced SIMD (NEON) kernels: Graviton, Grace, Ampere, Apple silicon. NEON is part
// of every ARMv8-A CPU, so this file needs no ISA flag and no runtime check.
//
// Summation orders follow the scalar level wherever it has one: dot_block uses four-lane
// accumulators reduced as (l0 + l2) + (l1 + l3), wsum_rows / wsum_rows2 add the centres in
// ascending order with one fused multiply-add per term, accum_* and the z values of
// normalize_* are element-wise. On ARM64 the compiler fuses the scalar level's a * b + c
// too (GCC and clang contract by default there), so these kernels give the scalar level's
// bits; only the ||z||^2 returned by normalize_* is summed in a different order (two
// float64 lane pairs instead of one running sum).
#include <arm_neon.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "ul4m4/kernels.hpp"

namespace ul4m4 {
namespace {

struct T {
  using vec = float32x4_t;
  static constexpr int W = 4;
  static constexpr int R = 4;  // 4 rows x 4 centres = 16 accumulators + 4 + 1 of 32 registers
  static constexpr int C = 4;
  // Packed outer product (8 rows x 8 centres = 16 accumulators + 2 + 1): off, unmeasured on ARM64.
  static constexpr bool PACKED = false;
  static constexpr int MR = 8;
  static constexpr int64_t KC = 1024;
  static inline vec zero() { return vdupq_n_f32(0.f); }
  static inline vec load(const float* p) { return vld1q_f32(p); }
  static inline void store(float* p, vec v) { vst1q_f32(p, v); }
  static inline vec bcast(float x) { return vdupq_n_f32(x); }
  static inline vec add(vec a, vec b) { return vaddq_f32(a, b); }
  static inline vec fmadd(vec a, vec b, vec c) { return vfmaq_f32(c, a, b); }
  static inline float hsum(vec a) {
    // (l0 + l2) + (l1 + l3), the scalar level's order.
    const float32x2_t s = vadd_f32(vget_low_f32(a), vget_high_f32(a));
    return vget_lane_f32(s, 0) + vget_lane_f32(s, 1);
  }
};

}  // namespace
#include "kernels-inl.hpp"
namespace {

double normalize_f32(const float* x, int64_t d, const float* mu, const float* is, float* z, int64_t dp) {
  float64x2_t s0 = vdupq_n_f64(0.0), s1 = s0;
  int64_t k = 0;
  for (; k + 4 <= d; k += 4) {
    const float32x4_t v = vmulq_f32(vsubq_f32(vld1q_f32(x + k), vld1q_f32(mu + k)), vld1q_f32(is + k));
    vst1q_f32(z + k, v);
    const float64x2_t lo = vcvt_f64_f32(vget_low_f32(v)), hi = vcvt_high_f64_f32(v);
    s0 = vfmaq_f64(s0, lo, lo);
    s1 = vfmaq_f64(s1, hi, hi);
  }
  double ss = vaddvq_f64(vaddq_f64(s0, s1));
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
  float64x2_t s0 = vdupq_n_f64(0.0), s1 = s0;
  int64_t k = 0;
  for (; k + 4 <= d; k += 4) {
    const float64x2_t a = vmulq_f64(vsubq_f64(vld1q_f64(x + k), vld1q_f64(mu + k)), vld1q_f64(is + k));
    const float64x2_t b = vmulq_f64(vsubq_f64(vld1q_f64(x + k + 2), vld1q_f64(mu + k + 2)), vld1q_f64(is + k + 2));
    const float32x4_t f = vcvt_high_f32_f64(vcvt_f32_f64(a), b);
    vst1q_f32(z + k, f);
    const float64x2_t ra = vcvt_f64_f32(vget_low_f32(f)), rb = vcvt_high_f64_f32(f);
    s0 = vfmaq_f64(s0, ra, ra);
    s1 = vfmaq_f64(s1, rb, rb);
  }
  double ss = vaddvq_f64(vaddq_f64(s0, s1));
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
  for (; k + 4 <= d; k += 4) {
    const float32x4_t v = vld1q_f32(x + k);
    vst1q_f64(acc + k, vaddq_f64(vld1q_f64(acc + k), vcvt_f64_f32(vget_low_f32(v))));
    vst1q_f64(acc + k + 2, vaddq_f64(vld1q_f64(acc + k + 2), vcvt_high_f64_f32(v)));
  }
  for (; k < d; ++k) acc[k] += static_cast<double>(x[k]);
}

void accum_f64(const double* x, int64_t d, double* acc) {
  int64_t k = 0;
  for (; k + 2 <= d; k += 2) vst1q_f64(acc + k, vaddq_f64(vld1q_f64(acc + k), vld1q_f64(x + k)));
  for (; k < d; ++k) acc[k] += x[k];
}

double min_ratio(const double* E, const double* F, const double* rden, int64_t K) {
  // best = v < best ? v : best lane by lane (a NaN is never taken, as in the scalar level).
  const float64x2_t inf = vdupq_n_f64(__builtin_inf());
  float64x2_t b0 = inf, b1 = inf;
  int64_t l = 0;
  for (; l + 4 <= K; l += 4) {
    const float64x2_t v0 = vmulq_f64(vaddq_f64(vld1q_f64(E + l), vld1q_f64(F + l)), vld1q_f64(rden + l));
    const float64x2_t v1 = vmulq_f64(vaddq_f64(vld1q_f64(E + l + 2), vld1q_f64(F + l + 2)), vld1q_f64(rden + l + 2));
    b0 = vbslq_f64(vcltq_f64(v0, b0), v0, b0);
    b1 = vbslq_f64(vcltq_f64(v1, b1), v1, b1);
  }
  double best = __builtin_inf();
  const double lanes[4] = {vgetq_lane_f64(b0, 0), vgetq_lane_f64(b0, 1), vgetq_lane_f64(b1, 0),
                           vgetq_lane_f64(b1, 1)};
  for (double v : lanes) best = v < best ? v : best;
  for (; l < K; ++l) {
    const double v = (E[l] + F[l]) * rden[l];
    best = v < best ? v : best;
  }
  return best;
}

void wsum_rows(const float* w, int64_t K, const float* X, int64_t ldx, int64_t dp, float* y) {
  // 32 outputs stay in registers while every centre row streams past (dp is a multiple of
  // 16: one 16-wide block at most is left).
  int64_t k = 0;
  for (; k + 32 <= dp; k += 32) {
    float32x4_t a[8];
    for (auto& v : a) v = vdupq_n_f32(0.f);
    for (int64_t j = 0; j < K; ++j) {
      if (w[j] == 0.f) continue;
      const float32x4_t vw = vdupq_n_f32(w[j]);
      const float* x = X + j * ldx + k;
      for (int q = 0; q < 8; ++q) a[q] = vfmaq_f32(a[q], vw, vld1q_f32(x + 4 * q));
    }
    for (int q = 0; q < 8; ++q) vst1q_f32(y + k + 4 * q, a[q]);
  }
  for (; k < dp; k += 4) {
    float32x4_t a0 = vdupq_n_f32(0.f);
    for (int64_t j = 0; j < K; ++j)
      if (w[j] != 0.f) a0 = vfmaq_f32(a0, vdupq_n_f32(w[j]), vld1q_f32(X + j * ldx + k));
    vst1q_f32(y + k, a0);
  }
}

void wsum_rows2(const float* w0, const float* w1, int64_t K, const float* X, int64_t ldx, int64_t dp,
                float* y0, float* y1) {
  // Two rows x 32 outputs in 16 accumulators: each centre load feeds two FMAs.
  int64_t k = 0;
  for (; k + 32 <= dp; k += 32) {
    float32x4_t a[8], b[8];
    for (int q = 0; q < 8; ++q) a[q] = b[q] = vdupq_n_f32(0.f);
    for (int64_t j = 0; j < K; ++j) {
      if (w0[j] == 0.f && w1[j] == 0.f) continue;
      const float32x4_t v0 = vdupq_n_f32(w0[j]), v1 = vdupq_n_f32(w1[j]);
      const float* x = X + j * ldx + k;
      for (int q = 0; q < 8; ++q) {
        const float32x4_t xq = vld1q_f32(x + 4 * q);
        a[q] = vfmaq_f32(a[q], v0, xq);
        b[q] = vfmaq_f32(b[q], v1, xq);
      }
    }
    for (int q = 0; q < 8; ++q) {
      vst1q_f32(y0 + k + 4 * q, a[q]);
      vst1q_f32(y1 + k + 4 * q, b[q]);
    }
  }
  for (; k < dp; k += 4) {
    float32x4_t a0 = vdupq_n_f32(0.f), b0 = a0;
    for (int64_t j = 0; j < K; ++j) {
      if (w0[j] == 0.f && w1[j] == 0.f) continue;
      const float32x4_t x0 = vld1q_f32(X + j * ldx + k);
      a0 = vfmaq_f32(a0, vdupq_n_f32(w0[j]), x0);
      b0 = vfmaq_f32(b0, vdupq_n_f32(w1[j]), x0);
    }
    vst1q_f32(y0 + k, a0);
    vst1q_f32(y1 + k, b0);
  }
}

// No streaming stores worth having in NEON intrinsics: a plain copy (the scalar level's).
void copy_stream(void* dst, const void* src, size_t bytes) { std::memcpy(dst, src, bytes); }

void store_fence() {}

}  // namespace

#include "table-inl.hpp"
const KernelTable kKernelsNEON = level_table(SimdLevel::NEON, "neon");
}  // namespace ul4m4
