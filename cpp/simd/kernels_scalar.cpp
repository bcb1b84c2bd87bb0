// Baseline x86-64 / portable kernels: no ISA flags. Used when the CPU has no AVX2+FMA,
// or when the user forces UL4M4_SIMD=scalar.
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "ul4m4/kernels.hpp"

namespace ul4m4 {
namespace {

// Four float lanes in a plain struct: the compiler maps it to SSE where it can.
struct T {
  struct vec { float v[4]; };
  static constexpr int W = 4;
  static constexpr int R = 4;
  static constexpr int C = 2;
  // Packed outer product (6 rows x 8 centres): off, 1.5-2x slower than the tiles (docs/kernels.md).
  static constexpr bool PACKED = false;
  static constexpr int MR = 6;
  static constexpr int64_t KC = 1024;
  static inline vec zero() { return vec{{0.f, 0.f, 0.f, 0.f}}; }
  static inline vec load(const float* p) { return vec{{p[0], p[1], p[2], p[3]}}; }
  static inline void store(float* p, const vec& v) {
    for (int l = 0; l < 4; ++l) p[l] = v.v[l];
  }
  static inline vec bcast(float x) { return vec{{x, x, x, x}}; }
  static inline vec add(const vec& a, const vec& b) {
    return vec{{a.v[0] + b.v[0], a.v[1] + b.v[1], a.v[2] + b.v[2], a.v[3] + b.v[3]}};
  }
  static inline vec fmadd(const vec& a, const vec& b, const vec& c) {
    vec r;
    for (int l = 0; l < 4; ++l) r.v[l] = a.v[l] * b.v[l] + c.v[l];
    return r;
  }
  static inline float hsum(const vec& a) { return (a.v[0] + a.v[2]) + (a.v[1] + a.v[3]); }
  static constexpr int WS = 4;  // wsum_rows: 16 outputs a block
};

}  // namespace
}  // namespace ul4m4

// The scalar level sums ||z||^2 and takes min_ratio's minimum in element order, and adds
// element by element: it writes normalize_*, accum_* and min_ratio itself.
#define UL4M4_SCALAR_SUMS 1
namespace ul4m4 {
#include "kernels-inl.hpp"
namespace {

double normalize_f32(const float* x, int64_t d, const float* mu, const float* is, float* z, int64_t dp) {
  return normalize_rest(x, d, mu, is, z, dp, 0, 0.0);
}
double normalize_f64(const double* x, int64_t d, const double* mu, const double* is, float* z,
                     int64_t dp) {
  return normalize_rest(x, d, mu, is, z, dp, 0, 0.0);
}
void accum_f32(const float* x, int64_t d, double* acc) {
  for (int64_t k = 0; k < d; ++k) acc[k] += static_cast<double>(x[k]);
}
void accum_f64(const double* x, int64_t d, double* acc) {
  for (int64_t k = 0; k < d; ++k) acc[k] += x[k];
}

double min_ratio(const double* E, const double* F, const double* rden, int64_t K) {
  return min_ratio_rest(E, F, rden, K, 0, __builtin_inf());
}

void copy_stream(void* dst, const void* src, size_t bytes) { std::memcpy(dst, src, bytes); }

void store_fence() {}

}  // namespace

#include "table-inl.hpp"
const KernelTable kKernelsScalar = level_table(SimdLevel::Scalar, "scalar");
}  // namespace ul4m4
