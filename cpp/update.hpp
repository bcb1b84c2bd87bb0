// Internal: the centre update of a Lloyd iteration (sums -> centres, presence, shift),
// shared by k-means, the bounded passes and assign_and_sum. Mirrored by cuda/update.cu.
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

/// Per-thread scratch of accumulate_chunk.
struct SumScratch {
  std::vector<double> local;  // D: one cluster's sums of the chunk
  std::vector<int64_t> order, start;  // the chunk's labelled rows, grouped by label
};

/// Adds rows [r0, r1) (labels lab[0 : r1 - r0], -1: none) to block b's sums, cluster by
/// cluster in row order; the order depends on the chunk and block partition only.
void accumulate_chunk(const Dataset& ds, Accumulator& acc, int64_t b, int64_t r0, int64_t r1,
                      const int32_t* lab, SumScratch& s);

/// Folds every block's sums, counts and sizes into block 0 (in block order, so the result
/// does not depend on the thread count), in parallel over centres.
void fold_blocks(Accumulator& acc, const RunContext& ctx);

/// fold_blocks, then the update rules: the mean of the members' z having m; a modality no
/// member has becomes absent; a cluster with no member keeps its centre.
Centres update_centres(Accumulator& acc, const Centres& old, const Normalizer& norm, const RunContext& ctx);

/// Max over centres j of the partial distance (not squared) between centre j of old and of
/// neu (over the modalities both carry; inf when they share none).
double max_centre_shift(const Centres& old, const Centres& neu, const std::vector<int64_t>& d);

}  // namespace ul4m4::detail
