// Internal generic helpers of the engine's passes: bitmasks, chunking, the parallel task loop
// (not installed, not part of the API). The distance step is in distance.hpp.
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

/// The k-th smallest of v[0, n) (0-based), as std::nth_element gives it: v is reordered so
/// that v[k] holds it and v[0, k) holds values <= v[k]. A quickselect whose partition moves
/// every element with conditional moves: the K distances of a row come in no order, so
/// nth_element's branches mispredict about every other comparison, which made it ~6% of
/// soft completion. The median-of-3 pivot is an element of the range and the values equal
/// to it are split off, so each round shrinks the range; after UL4M4_SELECT_ROUNDS rounds
/// (adversarial orders only; tests set it low) std::nth_element finishes. No NaN in v.
#ifndef UL4M4_SELECT_ROUNDS
#define UL4M4_SELECT_ROUNDS 64
#endif
inline double select_kth(double* v, size_t n, size_t k) {
  size_t lo = 0, hi = n;  // v[k]'s final value lies in [lo, hi); left of lo <= it <= right of hi
  for (int round = 0; hi - lo > 16 && round < UL4M4_SELECT_ROUNDS; ++round) {
    const double a = v[lo], b = v[lo + (hi - lo) / 2], c = v[hi - 1];
    const double pivot = std::max(std::min(a, b), std::min(std::max(a, b), c));
    // [lo, i) < pivot <= [i, hi): branch-free Lomuto (every step swaps, i advances on <).
    size_t i = lo;
    for (size_t j = lo; j < hi; ++j) {
      const double x = v[j];
      const bool less = x < pivot;
      v[j] = v[i];
      v[i] = x;
      i += less;
    }
    if (k < i) {
      hi = i;
      continue;
    }
    // [i, e) == pivot < [e, hi); the pivot is in the range, so e > i.
    size_t e = i;
    for (size_t j = i; j < hi; ++j) {
      const double x = v[j];
      const bool same = !(pivot < x);
      v[j] = v[e];
      v[e] = x;
      e += same;
    }
    if (k < e) return v[k];  // == pivot, and everything left of it is <= pivot
    lo = e;
  }
  std::nth_element(v + lo, v + k, v + hi);
  return v[k];
}

/// numpy's median of v[0, n), n >= 1 (the mean of the two middle values for an even n);
/// reorders v.
inline double median(double* v, size_t n) {
  const double hi = select_kth(v, n, n / 2);
  if (n % 2) return hi;
  double below = v[0];  // the largest of v[0, n/2), the lower middle value
  for (size_t j = 1; j < n / 2; ++j) below = v[j] > below ? v[j] : below;
  return 0.5 * (below + hi);
}

/// Fixed partition of [0, n) into `parts` contiguous ranges.
inline int64_t part_begin(int64_t n, int64_t parts, int64_t p) { return n * p / parts; }

}  // namespace ul4m4::detail
