// SIMD kernel table: one implementation per instruction set, chosen once at load.
//
// Every kernel works on row-major float32 blocks whose width `dp` is a multiple of
// kPad (zero padded), so no kernel has a tail loop. The common code (compiled with no
// AVX flags) only ever calls kernels through the table returned by `kernels()`.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace ul4m4 {

/// Widths are padded to a multiple of this many floats (one AVX-512 register).
constexpr int64_t kPad = 16;

inline int64_t padded(int64_t d) { return (d + kPad - 1) / kPad * kPad; }

/// x86-64: Scalar < AVX2 < AVX512; ARM64: Scalar < NEON.
enum class SimdLevel : int { Scalar = 0, AVX2 = 1, AVX512 = 2, NEON = 3 };

/// One per SIMD level, built field by field by level_table() (cpp/simd/table-inl.hpp).
struct KernelTable {
  SimdLevel level;
  const char* name;
  /// out[i*ldo + j] = sum_k A[i*lda + k] * B[j*ldb + k]   for i < n, j < k_rows, k < dp
  /// (float32 accumulation in lanes, fixed order for a given level).
  void (*dot_block)(const float* A, int64_t n, int64_t lda, const float* B, int64_t k_rows,
                    int64_t ldb, int64_t dp, float* out, int64_t ldo);
  /// z[k] = float((x[k] - mu[k]) * inv_sigma[k]) for k < d, z[d:dp] = 0.
  /// Returns sum_k z[k]^2 in double (non-finite when x has a NaN or inf).
  double (*normalize_f32)(const float* x, int64_t d, const float* mu, const float* inv_sigma,
                          float* z, int64_t dp);
  double (*normalize_f64)(const double* x, int64_t d, const double* mu,
                          const double* inv_sigma, float* z, int64_t dp);
  /// acc[k] += double(x[k]) for k < d.
  void (*accum_f32)(const float* x, int64_t d, double* acc);
  void (*accum_f64)(const double* x, int64_t d, double* acc);
  /// min over l < K of (E[l] + F[l]) * rden[l], rden = 1 / den: the greedy score with a
  /// multiply instead of a division (within 2 ulp of the quotient; the caller re-scores
  /// near ties exactly). Order-free, so every level gives the same bits; a NaN term is
  /// never taken (+inf when every term is NaN or K = 0).
  double (*min_ratio)(const double* E, const double* F, const double* rden, int64_t K);
  /// y[k] = sum_{j < K, w[j] != 0} w[j] * X[j*ldx + k] for k < dp (dp a multiple of kPad),
  /// j in ascending order for every k.
  void (*wsum_rows)(const float* w, int64_t K, const float* X, int64_t ldx, int64_t dp, float* y);
  /// Xp (K * dp floats) = X (K x dp, row stride ldx) in this level's layout for wsum_block.
  void (*wsum_pack)(const float* X, int64_t K, int64_t ldx, int64_t dp, float* Xp);
  /// Y[i*ldy + k] = wsum_rows of row i of W (n x K, row-major) over the centres X that Xp
  /// packs, for i < n: a GEMM whose blocks of rows share each load of a centre;
  /// bit-identical to n wsum_rows calls (a zero weight adds an exact zero).
  void (*wsum_block)(const float* W, int64_t n, int64_t K, const float* Xp, int64_t dp, float* Y, int64_t ldy);
  /// memcpy(dst, src, bytes) with non-temporal stores where the ISA has them (no read for
  /// ownership of the destination: completion writes outputs far larger than the caches).
  /// The caller issues store_fence() before the data are read by another thread.
  void (*copy_stream)(void* dst, const void* src, size_t bytes);
  void (*store_fence)();
  /// The most float32 roundings one term goes through in dot_block's sum of one pair over
  /// dp (padded) values and in normalize_f32's sum of squares over d values: their errors are
  /// at most gamma_h * (sum of |terms|), gamma_h = h u / (1 - h u), u = 2^-24.
  int64_t (*sum_depth)(int64_t d, int64_t dp);
};

/// Kernel table in use (chosen from the CPU's features when the library loads).
const KernelTable& kernels();
/// Best level this CPU (and this build) supports.
SimdLevel max_simd_level();
/// Levels this CPU and build can run, lowest first (always starts with Scalar).
std::vector<SimdLevel> available_simd_levels();
/// Use `level` from now on; throws std::invalid_argument if the CPU lacks it.
void set_simd_level(SimdLevel level);
const char* simd_level_name(SimdLevel level);
/// Parses "scalar" | "avx2" | "avx512" | "neon" (throws std::invalid_argument otherwise).
SimdLevel parse_simd_level(const std::string& name);

// Per-ISA tables, defined in cpp/simd/kernels_<isa>.cpp.
extern const KernelTable kKernelsScalar;
extern const KernelTable kKernelsAVX2;
extern const KernelTable kKernelsAVX512;
extern const KernelTable kKernelsNEON;

}  // namespace ul4m4
