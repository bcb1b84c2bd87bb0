// Internal: the assignment pass shared by k-means, predict and the benchmarks.
#pragma once

#include "distance.hpp"
#include "update.hpp"

namespace ul4m4::detail {

struct PassStats {
  double inertia = 0.0;
  int64_t n_changed = 0;
  int64_t n_unassigned = 0;
};

/// Per-row distance bounds of the bounded Lloyd algorithm (docs/bounded-lloyd.md).
/// upper[i] >= D(z_i, c_{label i}) and lower[i*K + j] <= D(z_i, c_j) for every j, where D
/// is the real-arithmetic partial distance of the float64 normalised row to the float64
/// centre (not squared); a float32-table value v and D^2 differ by at most margin(i).
struct Bounds {
  Bounds(const Dataset& ds, const Normalizer& norm, int64_t K, const RunContext& ctx);
  /// Shift tables for the move from `old` to `neu` (both K centres), used by the next pass.
  void set_shifts(const Centres& old, const Centres& neu, const Normalizer& norm);
  int64_t n, K;
  int M;
  bool valid = false;                // bounds hold for the last pass's centres
  bool shifts_ready = false;         // set_shifts was called since the last pass
  std::vector<double> upper;         // N
  std::vector<float> lower;          // N x K, rounded down
  std::vector<double> best;          // N: Lloyd's squared distance to the label, NaN if not computed
  std::vector<double> znorm;         // N x M: ||z_i^m|| of the float32 normalised row
  std::vector<double> rmu;           // M: ||mu_m / sigma_m||
  std::vector<int32_t> group;        // N: index of the row's presence set in gmask
  std::vector<uint64_t> gmask;       // G presence sets; empty: one group, shifts by max over m
  std::vector<double> shift;         // G x K: bound on D_S(c_old_j, c_new_j), S the old shared set
  std::vector<double> scale;         // G x K: new lower = scale * max(0, lower - shift); 1: same
                                     // shared set; 0: reset; < 0: shares nothing now (+inf)
};

/// One Lloyd assignment pass (labels, update sums, n_changed, n_unassigned identical to
/// assign_pass with the same acc) that skips the rows whose bounds prove their label; the
/// inertia is that of the computed rows only. All rows are computed when !b.valid.
/// skipped: fraction of the n x K distances not computed.
PassStats bounded_pass(const Dataset& ds, const Model& model, int32_t* labels, const int32_t* prev_labels,
                       Accumulator& acc, const RunContext& ctx, Bounds& b, double* skipped);

/// Lloyd's inertia of `labels` (every row assigned by the last pass): b.best where it is
/// known, else the distance to the label recomputed as the table computes it; summed in
/// the block order of assign_pass with n_blocks blocks.
double bounded_inertia(const Dataset& ds, const Model& model, const int32_t* labels, int64_t n_blocks,
                       const RunContext& ctx, Bounds& b);

PassStats assign_pass(const Dataset& ds, const Model& model, int32_t* labels, double* min_d2,
                      const int32_t* prev_labels, Accumulator* acc, const RunContext& ctx);

}  // namespace ul4m4::detail
