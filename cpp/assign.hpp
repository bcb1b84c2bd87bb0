// Internal: the assignment pass shared by k-means, predict and the benchmarks.
#pragma once

#include "detail.hpp"

namespace ul4m4::detail {

/// Float64 sums of the next centre update, one set per fixed row block.
struct Accumulator {
  Accumulator(int64_t n, int64_t chunk, int64_t K, const std::vector<int64_t>& d);
  void clear();
  int64_t K, D, n_blocks;
  int M;
  std::vector<int64_t> off;     // modality offsets in a row of D
  std::vector<double> sums;     // n_blocks x K x D: sums of raw x of members having m
  std::vector<int64_t> counts;  // n_blocks x K x M: members having m
  std::vector<int64_t> sizes;   // n_blocks x K: members; a row of sums is valid (zeroed on
                                // first touch in the pass) only where sizes > 0
};

struct PassStats {
  double inertia = 0.0;
  int64_t n_changed = 0;
  int64_t n_unassigned = 0;
};

PassStats assign_pass(const Dataset& ds, const Model& model, int32_t* labels, double* min_d2,
                      const int32_t* prev_labels, Accumulator* acc, const RunContext& ctx);

}  // namespace ul4m4::detail
