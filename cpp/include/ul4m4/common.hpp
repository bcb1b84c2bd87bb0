// Declarations and named constants shared by the CPU engine (cpp/, ul4m4/engine.hpp) and
// the CUDA engine (cuda/, ul4m4/cuda_engine.hpp). One definition of each, so the two engines
// cannot drift apart: the element types, the interrupt exception, the parameters of a fit and
// of a completion, the per-iteration statistics, and the numbers of the method.
// docs/algorithm.md describes the method these constants belong to.
//
// Plain C++17, no CUDA and no Python: every member is usable from host code of either tree,
// and the constants (scalar constexpr) from CUDA device code too.
#pragma once

#include <cstdint>
#include <stdexcept>

namespace ul4m4 {

/// Element type of a data or output matrix.
enum class DType : int { F32 = 0, F64 = 1 };

/// Raised when a long call was stopped by the interrupt callback.
struct Interrupted : std::runtime_error {
  Interrupted() : std::runtime_error("interrupted") {}
};

/// Statistics of one Lloyd iteration.
struct IterationStats {
  int iteration = 0;         ///< n_iter after this update (1-based)
  double inertia = 0.0;      ///< sum of D^2 to the assigned centre after the re-assignment
  int64_t n_changed = 0;     ///< rows whose label changed in the re-assignment
  double max_shift = 0.0;    ///< max_j D(c_old_j, c_new_j) (partial distance)
  double seconds = 0.0;      ///< wall time of the iteration
  /// Fraction of the N x K row-centre distances the bounded algorithm did not compute in
  /// this iteration's assignment (0 for Lloyd). Its inertia is NaN except in the last
  /// iteration (skipped rows' distances are not computed).
  double skipped = 0.0;
};

/// Parameters of masked k-means.
struct KMeansParams {
  int64_t n_clusters = 8;   ///< K
  int max_iter = 300;       ///< Lloyd iterations at most
  double tol = 1e-4;        ///< stop when max centre shift <= tol
  int n_init = 1;           ///< restarts (k-means++ only); best = fewest -1 rows, then inertia
  uint64_t seed = 0;        ///< seed of k-means++ (xoshiro256**, ul4m4/rng.hpp)
  /// Lloyd: every distance every iteration. Bounded: the same iterations (labels, centres,
  /// n_iter bit for bit), skipping rows whose distance bounds prove their label cannot
  /// change (docs/bounded-lloyd.md). The CPU engine only; the CUDA engine runs Lloyd.
  enum class Algorithm { Lloyd, Bounded };
  Algorithm algorithm = Algorithm::Lloyd;
};

/// Parameters of a completion.
struct CompletionParams {
  enum class Mode { Greedy, Soft };
  Mode mode = Mode::Greedy;
  double temperature_scale = 1.0;  ///< soft: T_i = scale * median D_A^2 (floored at kMinTemperature)
  double temperature = 0.0;        ///< soft: > 0 overrides the per-row rule
};

// ------------------------------------------------------------------ numbers of the method

/// Normalisation: a feature whose population standard deviation is at most this is
/// constant; its sigma becomes 1 (so z = x - mu).
constexpr double kSigmaFloor = 1e-8;

/// Soft completion: the per-row temperature is at least this.
constexpr double kMinTemperature = 1e-12;

/// Soft completion: when the sum of a modality's carrier weights (shifted by the row's
/// global minimum) is not above this, it may have underflowed; the weights are recomputed
/// shifted by that modality's own minimum.
constexpr double kWeightUnderflow = 1e-250;

/// Soft completion: weights below this fraction of the carriers' weight sum are skipped;
/// their total contribution (< K x kSoftSkip relative) is far below float32 precision.
constexpr double kSoftSkip = 1e-9;

/// k-means++ restart r (of n_init) is seeded with seed + r * kRestartSeedStride (mod 2^64).
constexpr uint64_t kRestartSeedStride = 0x5851F42D4C957F2Dull;

/// Assignment: distances computed from float32 tables within this relative band of the
/// best are re-computed exactly (float64, direct) before the tie rule decides.
constexpr double kTieBand = 1e-5;

}  // namespace ul4m4
