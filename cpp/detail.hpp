// Internal helpers shared by the engine's passes (not installed, not part of the API).
#pragma once

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <exception>
#include <limits>
#include <mutex>
#include <string>
#include <vector>

#include "ul4m4/engine.hpp"
#include "ul4m4/kernels.hpp"
#include "ul4m4/parallel.hpp"

namespace ul4m4::detail {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr int kMaxModalities = 64;  // presence sets are uint64 bitmasks

inline uint64_t row_mask(const Dataset& ds, int64_t i) {
  const int M = ds.M();
  const uint8_t* p = ds.present + i * M;
  uint64_t b = 0;
  for (int m = 0; m < M; ++m) b |= static_cast<uint64_t>(p[m] != 0) << m;
  return b;
}

/// ||a - b||^2 / d over d float64 values, summed in index order: the per-modality term of
/// the partial distance between two centres (centre shift, greedy's f table, the bounds).
inline double mean_sq_diff(const double* a, const double* b, int64_t d) {
  double s = 0.0;
  for (int64_t k = 0; k < d; ++k) {
    const double t = a[k] - b[k];
    s += t * t;
  }
  return s / static_cast<double>(d);
}

// Common code is built for baseline x86-64 (no POPCNT instruction), where
// __builtin_popcountll is a call into libgcc; this inline SWAR count is branch- and call-free.
inline int popcount(uint64_t b) {
#if defined(__POPCNT__)
  return __builtin_popcountll(b);
#else
  b = b - ((b >> 1) & 0x5555555555555555ULL);
  b = (b & 0x3333333333333333ULL) + ((b >> 2) & 0x3333333333333333ULL);
  b = (b + (b >> 4)) & 0x0F0F0F0F0F0F0F0FULL;
  return static_cast<int>((b * 0x0101010101010101ULL) >> 56);
#endif
}

template <class F>
inline void for_bits(uint64_t b, F&& f) {
  while (b) {
    f(__builtin_ctzll(b));
    b &= b - 1;
  }
}

/// a / b rounded up, for a >= 0 and b >= 1 (no overflow, unlike (a + b - 1) / b).
inline int64_t ceil_div(int64_t a, int64_t b) { return a / b + (a % b != 0); }

/// Rows per work unit of a pass over n rows: ctx.chunk_rows clamped to [1, max(n, 1)], so
/// any value (up to INT64_MAX) is valid, a huge one meaning "one chunk", and no chunk or
/// scratch size computed from it can overflow. Results do not change: a chunk at least n
/// rows long already was the whole pass.
inline int64_t chunk_rows_for(const RunContext& ctx, int64_t n) {
  return std::max<int64_t>(1, std::min<int64_t>(ctx.chunk_rows, std::max<int64_t>(n, 1)));
}

inline int threads_for(const RunContext& ctx, int64_t n_tasks) {
  const int64_t cap = std::min<int64_t>(ctx.n_threads, max_threads());
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(cap, n_tasks)));
}

/// Runs fn(task, thread) for task in [0, n_tasks) on ctx.n_threads threads (parallel_for).
/// The calling thread polls ctx.interrupted between tasks; an exception thrown by a task
/// is rethrown after the loop (the one of the lowest task index, so errors that name a
/// row are deterministic).
template <class F>
void parallel_tasks(int64_t n_tasks, const RunContext& ctx, F&& fn) {
  if (n_tasks <= 0) return;
  std::atomic<bool> stop{false};
  bool was_interrupted = false;
  std::mutex err_mu;
  int64_t err_task = -1;
  std::exception_ptr err;
  const int nt = threads_for(ctx, n_tasks);
  parallel_for(n_tasks, nt, [&](int64_t t, int tid) {
    if (stop.load(std::memory_order_relaxed)) return;
    if (tid == 0 && ctx.interrupted && ctx.interrupted()) {
      was_interrupted = true;
      stop.store(true);
      return;
    }
    try {
      fn(t, tid);
    } catch (...) {
      std::lock_guard<std::mutex> lock(err_mu);
      if (err_task < 0 || t < err_task) {
        err_task = t;
        err = std::current_exception();
      }
    }
  });
  if (was_interrupted) throw Interrupted();
  if (err) std::rethrow_exception(err);
}

/// Centre tables as the distance code sees them (a Model's, or one seeding centre).
struct CentreTables {
  int64_t K = 0;
  std::vector<const float*> zf;      // per m: K x dp_m
  std::vector<const double*> cnorm;  // per m: K
  const uint64_t* hmask = nullptr;   // K presence bitmasks
};

inline CentreTables tables_of(const Model& model) {
  CentreTables t;
  t.K = model.K();
  for (int m = 0; m < model.M(); ++m) {
    t.zf.push_back(model.zf(m).data());
    t.cnorm.push_back(model.cnorm(m).data());
  }
  t.hmask = model.hmask().data();
  return t;
}

/// Per-thread scratch for one chunk.
struct Scratch {
  std::vector<float> z;        // chunk x dp (one modality at a time)
  std::vector<float> dots;     // chunk x K
  std::vector<float> e;        // chunk x K x M
  std::vector<double> zz;      // chunk
  std::vector<int64_t> local;  // rows of the chunk being processed
  // Centre-update accumulation of one chunk (assign.cpp).
  std::vector<double> acc_local;  // D
  std::vector<int64_t> order, start;
  std::vector<double> vals;  // K squared distances of one row
  void reserve(int64_t chunk, int64_t dp_max, int64_t K, int M) {
    z.resize(chunk * dp_max);
    dots.resize(chunk * K);
    e.resize(chunk * K * M);
    zz.resize(chunk);
    local.resize(chunk);
  }
};

inline int64_t max_dp(const Normalizer& norm) {
  int64_t v = 0;
  for (auto x : norm.dp) v = std::max(v, x);
  return v;
}

/// Normalises one present row of modality m into z (padded); returns ||z||^2.
inline double normalize_row(const Dataset& ds, const Normalizer& norm, int m, int64_t i, float* z) {
  const MatrixView& v = ds.X[m];
  const KernelTable& k = kernels();
  if (v.dtype == DType::F32) {
    const float* x = static_cast<const float*>(v.data) + i * v.row_stride;
    return k.normalize_f32(x, norm.d[m], norm.mu_f[m].data(), norm.inv_sigma_f[m].data(), z, norm.dp[m]);
  }
  const double* x = static_cast<const double*>(v.data) + i * v.row_stride;
  return k.normalize_f64(x, norm.d[m], norm.mu[m].data(), norm.inv_sigma[m].data(), z, norm.dp[m]);
}

[[noreturn]] inline void throw_nonfinite(int64_t row, int m) {
  throw std::invalid_argument("NaN or inf in an observed slot: row " + std::to_string(row) +
                              " of modality " + std::to_string(m) +
                              " (mark absent rows in the mask, or make the whole row NaN)");
}

/// True when every value of row i of v is finite (exponent bits not all ones; an integer
/// OR-reduction, which the compiler vectorises).
inline bool row_finite(const MatrixView& v, int64_t i) {
  if (v.dtype == DType::F32) {
    const uint32_t* x = static_cast<const uint32_t*>(v.data) + i * v.row_stride;
    uint32_t bad = 0;
    for (int64_t k = 0; k < v.cols; ++k) bad |= static_cast<uint32_t>((x[k] & 0x7f800000u) == 0x7f800000u);
    return bad == 0;
  }
  const uint64_t* x = static_cast<const uint64_t*>(v.data) + i * v.row_stride;
  uint64_t bad = 0;
  for (int64_t k = 0; k < v.cols; ++k)
    bad |= static_cast<uint64_t>((x[k] & 0x7ff0000000000000ull) == 0x7ff0000000000000ull);
  return bad == 0;
}

[[noreturn]] inline void throw_out_of_range(int64_t row, int m) {
  throw std::invalid_argument("row " + std::to_string(row) + " of modality " + std::to_string(m) +
                              " lies outside the model's range: (x - mean) / scale overflows float32 "
                              "(the data are not on the scale the model was fitted on)");
}

/// One entry of the table below from ||z||^2, ||c||^2 and the float32 dot z.c (the one
/// expression every caller shares, so a single pair recomputed elsewhere gets the same bits).
inline float e_value(double zz, double cn, float dot, double inv_d) {
  const double v = zz + cn - 2.0 * static_cast<double>(dot);
  return static_cast<float>(v > 0.0 ? v * inv_d : 0.0);
}

/// e[t][l][m] = ||z_i^m - c_l^m||^2 / d_m for rows i = r0 + t of the chunk with m present
/// (and select[t] != 0 when select is given), for every l (values for centres without m
/// are meaningless and must be masked by the caller). Uses the expansion
/// ||z||^2 + ||c||^2 - 2 z.c, clamped at 0, in float32 with float64 norms.
inline void e_table(const Dataset& ds, const Normalizer& norm, const CentreTables& C, int64_t r0,
                    int64_t r1, const uint8_t* select, Scratch& s) {
  const int M = ds.M();
  const int64_t K = C.K;
  const KernelTable& kern = kernels();
  for (int m = 0; m < M; ++m) {
    const int64_t dp = norm.dp[m];
    const double inv_d = 1.0 / static_cast<double>(norm.d[m]);
    int64_t n = 0;
    for (int64_t i = r0; i < r1; ++i) {
      const int64_t t = i - r0;
      if (!ds.present[i * M + m] || (select && !select[t])) continue;
      const double zz = normalize_row(ds, norm, m, i, s.z.data() + n * dp);
      if (!std::isfinite(zz)) {
        if (row_finite(ds.X[m], i)) throw_out_of_range(i, m);
        throw_nonfinite(i, m);
      }
      s.zz[n] = zz;
      s.local[n++] = t;
    }
    if (n == 0) continue;
    kern.dot_block(s.z.data(), n, dp, C.zf[m], K, dp, dp, s.dots.data(), K);
    const double* cn = C.cnorm[m];
    for (int64_t q = 0; q < n; ++q) {
      float* e = s.e.data() + s.local[q] * K * M + m;
      const float* dot = s.dots.data() + q * K;
      const double zz = s.zz[q];
      for (int64_t l = 0; l < K; ++l) e[l * M] = e_value(zz, cn[l], dot[l], inv_d);
    }
  }
}

/// Squared partial distance of row (bitmask a, e row) to centre l: sum over shared
/// modalities of e / count; +inf if none is shared.
inline double combine(const float* e_row, int64_t l, int M, uint64_t a, uint64_t h) {
  const uint64_t s = a & h;
  if (!s) return kInf;
  double num = 0.0;
  const float* el = e_row + l * M;
  for_bits(s, [&](int m) { num += static_cast<double>(el[m]); });
  return num / popcount(s);
}

/// Squared partial distance of row i (presence a) to centre l of the model, in float64 by
/// direct differences (no expansion): used to settle near ties of the float32 table.
inline double exact_d2(const Dataset& ds, const Model& model, int64_t i, uint64_t a, int64_t l) {
  const uint64_t s = a & model.hmask()[l];
  if (!s) return kInf;
  const Normalizer& norm = model.norm();
  double num = 0.0;
  for_bits(s, [&](int m) {
    const int64_t d = norm.d[m];
    const MatrixView& v = ds.X[m];
    const double* c = model.centres().z[m].data() + l * d;
    double acc = 0.0;
    for (int64_t k = 0; k < d; ++k) {
      const double x = v.dtype == DType::F32
                           ? static_cast<double>(static_cast<const float*>(v.data)[i * v.row_stride + k])
                           : static_cast<const double*>(v.data)[i * v.row_stride + k];
      const double t = (x - norm.mu[m][k]) / norm.sigma[m][k] - c[k];
      acc += t * t;
    }
    num += acc / static_cast<double>(d);
  });
  return num / popcount(s);
}

/// Checks a pass's data against the model: the modality counts agree, and no float32
/// input (or output) uses a modality whose statistics overflow float32 (the float32
/// kernels would turn finite data into inf and blame it).
inline void check_against(const Dataset& ds, const Model& model, const std::vector<MutableMatrixView>* out) {
  if (ds.M() != model.M()) throw std::invalid_argument("number of modalities differs from the model's");
  for (int m = 0; m < ds.M(); ++m) {
    const bool f32 = ds.X[m].dtype == DType::F32 || (out && (*out)[m].dtype == DType::F32);
    if (f32 && !model.float32_ok(m))
      throw std::invalid_argument("the model's statistics of modality " + std::to_string(m) +
                                  " exceed float32's range: pass float64 data");
  }
}

/// Fixed partition of [0, n) into `parts` contiguous ranges.
inline int64_t part_begin(int64_t n, int64_t parts, int64_t p) { return n * p / parts; }

}  // namespace ul4m4::detail
