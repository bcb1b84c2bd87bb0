// The UL4M4 engine: normalisation statistics, partial-modality distances, masked
// k-means (k-means++ seeding, Lloyd iterations) and greedy / soft completion.
// docs/algorithm.md describes the method; section numbers below refer to it.
//
// Pure C++ (no Python). Inputs are borrowed views; nothing the caller owns is written
// except the output views passed explicitly. Rows are processed in fixed chunks, so the
// scratch memory is O(threads x chunk x (d + K x M)), never O(N x K x d). Results are
// bit-identical for any thread count: every float reduction has a fixed order that
// depends on the data's shape only.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "ul4m4/common.hpp"

namespace ul4m4 {

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

/// The most threads a pass uses: 4 x the processors it may run on (with OpenMP, at most the
/// OpenMP thread limit too); defined with the threading backend (cpp/parallel.cpp). Larger
/// requests are clamped (results do not depend on the thread count), so no caller can make
/// the runtime try to create thousands of threads.
int max_threads();

/// How a call runs: threads, chunking, interruption and progress.
struct RunContext {
  int n_threads = 1;                           ///< OpenMP threads (>= 1; clamped to max_threads())
  int64_t chunk_rows = 256;                    ///< rows per work unit (>= 1; clamped to the rows)
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
  /// Throws std::invalid_argument (naming the modality and feature) unless 1 <= M <= 64,
  /// every d_m >= 1, mu and sigma have d_m values, mu is finite and sigma is finite and
  /// > kSigmaFloor (what compute_stats produces).
  void validate() const;
  int M() const { return static_cast<int>(d.size()); }
};

/// Fits mu and sigma on the present rows of `ds` (float64, population std, sigma <=
/// kSigmaFloor -> 1). Throws std::invalid_argument for a modality with no present row, or a NaN/inf
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
///
/// The constructor validates its input (std::invalid_argument): K >= 1, the normaliser
/// (Normalizer::validate), centre arrays of K x d_m values, finite and within float32's
/// range where present (distances are computed in float32), and raw-space centres finite.
/// The K x K x M table f, which only greedy completion reads, is built on its first use
/// (thread-safe), never by the constructor: a model costs O(K x D) until then.
class Model {
 public:
  /// completion_tables=false skips the raw-space centres (the Lloyd loop builds a model
  /// per iteration and needs none of them); f is never built then.
  Model(Normalizer norm, Centres centres, bool completion_tables = true);
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;
  bool has_completion_tables() const { return completion_tables_; }
  /// False when a float32 copy of modality m's statistics or raw centres overflows (a model
  /// fitted on float64 data of huge magnitude): float32 data of m cannot use it.
  bool float32_ok(int m) const { return f32_ok_[m] != 0; }
  const Normalizer& norm() const { return norm_; }
  const Centres& centres() const { return c_; }
  int M() const { return norm_.M(); }
  int64_t K() const { return c_.K; }
  // Derived tables.
  const std::vector<float>& zf(int m) const { return zf_[m]; }        ///< K x dp_m
  const std::vector<double>& cnorm(int m) const { return cnorm_[m]; } ///< K, ||zf||^2
  const std::vector<double>& raw(int m) const { return raw_[m]; }     ///< K x d_m, raw space
  const std::vector<float>& raw_f(int m) const { return raw_f_[m]; }  ///< K x d_m, raw space
  /// K x K x M, built on the first call (std::length_error if its size overflows,
  /// std::bad_alloc if it does not fit in memory; callers bound K first).
  const std::vector<double>& f() const;
  bool f_built() const { return f_ready_.load(); }  ///< for introspection and tests
  const std::vector<uint64_t>& hmask() const { return hmask_; }       ///< K bitmasks

 private:
  Normalizer norm_;
  Centres c_;
  bool completion_tables_;
  std::vector<std::vector<float>> zf_, raw_f_;
  std::vector<std::vector<double>> raw_;
  std::vector<std::vector<double>> cnorm_;
  std::vector<uint8_t> f32_ok_;
  mutable std::once_flag f_once_;
  mutable std::vector<double> f_;
  mutable std::atomic<bool> f_ready_{false};
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

/// Completion (sections 5, 5b, 6). Writes every slot of `out` (one view per modality, same
/// shape as the input): present slots copied exactly, missing ones imputed (raw space) or,
/// when they cannot be, set to the training mean. imputed / unfilled: N x M uint8 outputs.
/// confidence (optional, N x M, written when not null): per slot, 1 for an observed slot,
/// 0 for an unfilled one, and for an imputed one 1 - winner score / runner-up score
/// (greedy) or 1 - entropy of the weights / log(number of carriers) (soft). Asking for it
/// does not change the completion.
void complete(const Dataset& ds, const Model& model, const CompletionParams& params,
              const std::vector<MutableMatrixView>& out, uint8_t* imputed, uint8_t* unfilled,
              const RunContext& ctx, float* confidence = nullptr);

/// Presence from NaN marking: a row of modality m is absent when all its values are NaN
/// and present when none is; a partly-NaN row throws std::invalid_argument (naming it).
/// `present` is N x M, written.
void presence_from_nan(const std::vector<MatrixView>& X, int64_t n, uint8_t* present,
                       const RunContext& ctx);

/// Checks that every present slot holds finite values (throws naming the first bad row).
void check_finite(const Dataset& ds, const RunContext& ctx);

}  // namespace ul4m4
