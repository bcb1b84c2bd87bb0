// The UL4M4 engine: normalisation statistics, partial-modality distances, masked
// k-means (k-means++ seeding, Lloyd iterations) and greedy / soft completion.
// ../shared/ALGORITHM.md is the contract; section numbers below refer to it.
//
// Pure C++ (no Python). Inputs are borrowed views; nothing the caller owns is written
// except the output views passed explicitly. Rows are processed in fixed chunks, so the
// scratch memory is O(threads x chunk x (d + K x M)), never O(N x K x d). Results are
// bit-identical for any thread count: every float reduction has a fixed order that
// depends on the data's shape only.
#pragma once

#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

namespace ul4m4 {

enum class DType : int { F32 = 0, F64 = 1 };

/// A rows x cols matrix whose rows are contiguous; row_stride is in elements.
struct MatrixView {
  const void* data = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t row_stride = 0;
  DType dtype = DType::F32;
};

/// Same as MatrixView, writable (outputs).
struct MutableMatrixView {
  void* data = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t row_stride = 0;
  DType dtype = DType::F32;
};

/// One view per modality plus the N x M presence mask (uint8 0/1, row-major, contiguous).
/// Values of absent slots are never read.
struct Dataset {
  std::vector<MatrixView> X;
  const uint8_t* present = nullptr;
  int64_t n = 0;
  int M() const { return static_cast<int>(X.size()); }
};

/// Raised when a long call was stopped by the interrupt callback.
struct Interrupted : std::runtime_error {
  Interrupted() : std::runtime_error("interrupted") {}
};

/// Statistics of one Lloyd iteration (section 4 loop).
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

/// How a call runs: threads, chunking, interruption and progress.
struct RunContext {
  int n_threads = 1;                           ///< OpenMP threads (>= 1)
  int64_t chunk_rows = 256;                    ///< rows per work unit
  std::function<bool()> interrupted;           ///< polled by the calling thread; true = stop
  std::function<bool(const IterationStats&)> on_iteration;  ///< false = stop iterating
};

/// Modality-specific normalisation (section 1): z = (x - mu) / sigma per feature.
struct Normalizer {
  std::vector<int64_t> d;                        ///< width of each modality
  std::vector<std::vector<double>> mu, sigma;    ///< float64 statistics
  // Derived by finalize():
  std::vector<int64_t> dp;                       ///< padded widths
  std::vector<std::vector<double>> inv_sigma;
  std::vector<std::vector<float>> mu_f, sigma_f, inv_sigma_f;
  void finalize();
  int M() const { return static_cast<int>(d.size()); }
};

/// Fits mu and sigma on the present rows of `ds` (float64, population std, sigma <= 1e-8
/// -> 1). Throws std::invalid_argument for a modality with no present row, or a NaN/inf
/// in a present slot (naming the first such row).
Normalizer compute_stats(const Dataset& ds, const RunContext& ctx);

/// K centres in z-space, possibly partial (section 3/4).
struct Centres {
  int64_t K = 0;
  std::vector<std::vector<double>> z;  ///< per modality, K x d_m, 0 where absent
  std::vector<uint8_t> H;              ///< K x M presence
  bool has(int64_t j, int m) const { return H[j * static_cast<int64_t>(z.size()) + m] != 0; }
};

/// A fitted model with the tables every pass needs, computed once.
class Model {
 public:
  /// completion_tables=false skips f and the raw-space centres (the Lloyd loop builds
  /// a model per iteration and needs none of them).
  Model(Normalizer norm, Centres centres, bool completion_tables = true);
  bool has_completion_tables() const { return !raw_.empty(); }
  const Normalizer& norm() const { return norm_; }
  const Centres& centres() const { return c_; }
  int M() const { return norm_.M(); }
  int64_t K() const { return c_.K; }
  // Derived tables.
  const std::vector<float>& zf(int m) const { return zf_[m]; }        ///< K x dp_m
  const std::vector<double>& cnorm(int m) const { return cnorm_[m]; } ///< K, ||zf||^2
  const std::vector<double>& raw(int m) const { return raw_[m]; }     ///< K x d_m, raw space
  const std::vector<float>& raw_f(int m) const { return raw_f_[m]; }  ///< K x d_m, raw space
  const std::vector<double>& f() const { return f_; }                 ///< K x K x M
  const std::vector<uint64_t>& hmask() const { return hmask_; }       ///< K bitmasks

 private:
  Normalizer norm_;
  Centres c_;
  std::vector<std::vector<float>> zf_, raw_f_;
  std::vector<std::vector<double>> raw_;
  std::vector<std::vector<double>> cnorm_;
  std::vector<double> f_;
  std::vector<uint64_t> hmask_;
};

/// Assignment (section 4): labels[i] = argmin_j D(z_i, c_j), ties to the lowest j,
/// -1 when every distance is +inf; min_d2[i] = the squared distance (inf for -1).
/// Either output may be null.
void assign(const Dataset& ds, const Model& model, int32_t* labels, double* min_d2,
            const RunContext& ctx);

/// Float64 sums of one Lloyd update over a block of rows (for streaming and distributed
/// fits: sums of blocks added in a fixed order give the same update as one pass).
struct UpdateSums {
  int64_t K = 0, D = 0;
  std::vector<double> sums;     ///< K x D: per centre, sums of the raw rows of members having m
  std::vector<int64_t> counts;  ///< K x M: members having m
  std::vector<int64_t> sizes;   ///< K: members
  double inertia = 0.0;
  int64_t n_unassigned = 0;
  int64_t n_changed = 0;        ///< vs prev_labels, when given
};

/// Assignment of ds (labels / min_d2 optional) plus the update sums of its rows.
UpdateSums assign_and_sum(const Dataset& ds, const Model& model, int32_t* labels, double* min_d2,
                          const int32_t* prev_labels, const RunContext& ctx);

/// Centres of the update (section 4) from summed UpdateSums; `old` supplies the centres of
/// clusters with no member.
Centres centres_from_sums(const UpdateSums& s, const Centres& old, const Normalizer& norm);

struct KMeansParams {
  int64_t n_clusters = 8;   ///< K
  int max_iter = 300;       ///< Lloyd iterations at most
  double tol = 1e-4;        ///< stop when max centre shift <= tol
  int n_init = 1;           ///< restarts (k-means++ only); best = fewest -1 rows, then inertia
  uint64_t seed = 0;        ///< RNG seed of k-means++
  /// Lloyd: every distance every iteration. Bounded: the same iterations (labels, centres,
  /// n_iter bit for bit), skipping rows whose distance bounds prove their label cannot
  /// change (docs/bounded-lloyd.md).
  enum class Algorithm { Lloyd, Bounded };
  Algorithm algorithm = Algorithm::Lloyd;
};

struct KMeansResult {
  Centres centres;
  std::vector<int32_t> labels;
  double inertia = 0.0;
  int n_iter = 0;
  int64_t n_unassigned = 0;
  bool converged = false;   ///< stopped before max_iter (labels stable or shift <= tol)
  std::vector<IterationStats> history;
};

/// k-means++ on the partial distance (section 3).
Centres seed_kmeanspp(const Dataset& ds, const Normalizer& norm, int64_t K, uint64_t seed,
                      const RunContext& ctx);

/// Masked k-means (section 4) from `init` (z-space) if given, else k-means++ (n_init runs).
KMeansResult kmeans(const Dataset& ds, const Normalizer& norm, const KMeansParams& params,
                    const Centres* init, const RunContext& ctx);

struct CompletionParams {
  enum class Mode { Greedy, Soft };
  Mode mode = Mode::Greedy;
  double temperature_scale = 1.0;  ///< soft: T_i = scale * median D_A^2 (floored at 1e-12)
  double temperature = 0.0;        ///< soft: > 0 overrides the per-row rule
};

/// Completion (sections 5, 5b, 6). Writes every slot of `out` (one view per modality, same
/// shape as the input): present slots copied exactly, missing ones imputed (raw space) or,
/// when they cannot be, set to the training mean. imputed / unfilled: N x M uint8 outputs.
void complete(const Dataset& ds, const Model& model, const CompletionParams& params,
              const std::vector<MutableMatrixView>& out, uint8_t* imputed, uint8_t* unfilled,
              const RunContext& ctx);

/// Presence from NaN marking: a row of modality m is absent when all its values are NaN
/// and present when none is; a partly-NaN row throws std::invalid_argument (naming it).
/// `present` is N x M, written.
void presence_from_nan(const std::vector<MatrixView>& X, int64_t n, uint8_t* present,
                       const RunContext& ctx);

/// Checks that every present slot holds finite values (throws naming the first bad row).
void check_finite(const Dataset& ds, const RunContext& ctx);

}  // namespace ul4m4
