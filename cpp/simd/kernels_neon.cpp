// ARM64 Advanced SIMD (NEON) kernels: Graviton, Grace, Ampere, Apple silicon. NEON is part
// of every ARMv8-A CPU, so this file needs no ISA flag and no runtime check.
//
// Summation orders follow the scalar level wherever it has one: dot_block uses four-lane
// accumulators reduced as (l0 + l2) + (l1 + l3), wsum_rows / wsum_block add the centres in
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
  static inline vec sub(vec a, vec b) { return vsubq_f32(a, b); }
  static inline vec mul(vec a, vec b) { return vmulq_f32(a, b); }
  static constexpr int WS = 8;  // wsum_rows: 32 outputs; wsum_block: 6 rows x WS/2 vectors (24 accumulators)
  // normalize_f32 sums ||z||^2 in float64: lanes 0-1 in one pair, 2-3 in the other.
  static constexpr int NZ = 1;
  static constexpr bool SQ_F64 = true;

  using dvec = float64x2_t;
  static constexpr int DW = 2;
  static constexpr int ND = 2;  // normalize_f64: 4 values a step
  static constexpr int MA = 2;  // min_ratio: 4 values a step
  static inline dvec dload(const double* p) { return vld1q_f64(p); }
  static inline void dstore(double* p, dvec v) { vst1q_f64(p, v); }
  static inline dvec dbcast(double x) { return vdupq_n_f64(x); }
  static inline dvec dadd(dvec a, dvec b) { return vaddq_f64(a, b); }
  static inline dvec dsub(dvec a, dvec b) { return vsubq_f64(a, b); }
  static inline dvec dmul(dvec a, dvec b) { return vmulq_f64(a, b); }
  static inline dvec dfmadd(dvec a, dvec b, dvec c) { return vfmaq_f64(c, a, b); }
  // v < b ? v : b lane by lane: a NaN is never taken, as in the scalar level.
  static inline dvec dmin(dvec b, dvec v) { return vbslq_f64(vcltq_f64(v, b), v, b); }
  static inline double dhsum(dvec v) { return vaddvq_f64(v); }
  static inline double dhmin(const dvec* b) {
    double best = __builtin_inf();
    for (int a = 0; a < MA; ++a) {
      const double v0 = vgetq_lane_f64(b[a], 0), v1 = vgetq_lane_f64(b[a], 1);
      best = v0 < best ? v0 : best;
      best = v1 < best ? v1 : best;
    }
    return best;
  }
  static inline dvec widen(const float* p) { return vcvt_f64_f32(vld1_f32(p)); }
  static inline dvec round_store(float* p, dvec v) {
    const float32x2_t f = vcvt_f32_f64(v);
    vst1_f32(p, f);
    return vcvt_f64_f32(f);
  }
};

}  // namespace
#include "kernels-inl.hpp"
namespace {

// No streaming stores worth having in NEON intrinsics: a plain copy (the scalar level's).
void copy_stream(void* dst, const void* src, size_t bytes) { std::memcpy(dst, src, bytes); }

void store_fence() {}

}  // namespace

#include "table-inl.hpp"
const KernelTable kKernelsNEON = level_table(SimdLevel::NEON, "neon");
}  // namespace ul4m4
