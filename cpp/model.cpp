// The fitted model and the tables derived from it once (padded float centres, their
// norms, raw-space centres), the K x K x M table f (built on first use), and the checks
// that make a model safe to use whoever built it (a file, another binding).
#include <cstdio>

#include "distance.hpp"

namespace ul4m4 {
using namespace detail;

void Normalizer::validate() const {
  const int M = this->M();
  if (M < 1 || M > kMaxModalities)
    throw std::invalid_argument("a model needs 1 to 64 modalities, got " + std::to_string(M));
  if (static_cast<int>(mu.size()) != M || static_cast<int>(sigma.size()) != M)
    throw std::invalid_argument("mean and scale must have one array per modality");
  for (int m = 0; m < M; ++m) {
    const std::string where = " of modality " + std::to_string(m);
    if (d[m] < 1) throw std::invalid_argument("width" + where + " must be >= 1");
    if (static_cast<int64_t>(mu[m].size()) != d[m] || static_cast<int64_t>(sigma[m].size()) != d[m])
      throw std::invalid_argument("mean and scale" + where + " must have d_m values");
    for (int64_t k = 0; k < d[m]; ++k) {
      if (!std::isfinite(mu[m][k]))
        throw std::invalid_argument("mean" + where + " is not finite (feature " + std::to_string(k) + ")");
      // NaN fails the comparison too.
      if (!(sigma[m][k] > kSigmaFloor) || !std::isfinite(sigma[m][k]))
        throw std::invalid_argument("scale" + where + " must be finite and > 1e-8 (feature " +
                                    std::to_string(k) + "); fitted scales are 1 or above the sigma floor");
    }
  }
}

Model::Model(Normalizer norm, Centres centres, bool completion_tables)
    : norm_(std::move(norm)), c_(std::move(centres)), completion_tables_(completion_tables) {
  norm_.validate();
  if (norm_.dp.size() != norm_.d.size()) norm_.finalize();
  const int M = norm_.M();
  const int64_t K = c_.K;
  if (K < 1) throw std::invalid_argument("a model needs at least one centre (K = " + std::to_string(K) + ")");
  if (static_cast<int>(c_.z.size()) != M || static_cast<int64_t>(c_.H.size()) != K * M)
    throw std::invalid_argument("centres do not match the normaliser's modalities");
  zf_.assign(M, {});
  cnorm_.assign(M, {});
  f32_ok_.assign(M, 1);
  if (completion_tables) {
    raw_.assign(M, {});
    raw_f_.assign(M, {});
  }
  hmask_.assign(K, 0);
  for (int64_t j = 0; j < K; ++j)
    for (int m = 0; m < M; ++m)
      if (c_.has(j, m)) hmask_[j] |= uint64_t{1} << m;
  constexpr double kF32Max = std::numeric_limits<float>::max();
  for (int m = 0; m < M; ++m) {
    const int64_t d = norm_.d[m], dp = norm_.dp[m];
    if (static_cast<int64_t>(c_.z[m].size()) != K * d)
      throw std::invalid_argument("centre array of modality " + std::to_string(m) + " has the wrong size");
    for (int64_t k = 0; k < d; ++k)
      if (!std::isfinite(norm_.mu_f[m][k]) || !std::isfinite(norm_.sigma_f[m][k])) f32_ok_[m] = 0;
    zf_[m].assign(K * dp, 0.f);
    cnorm_[m].assign(K, 0.0);
    if (completion_tables) {
      raw_[m].assign(K * d, 0.0);
      raw_f_[m].assign(K * d, 0.f);
    }
    for (int64_t j = 0; j < K; ++j) {
      if (!c_.has(j, m)) continue;
      double nn = 0.0;
      for (int64_t k = 0; k < d; ++k) {
        const double zv = c_.z[m][j * d + k];
        if (!(std::fabs(zv) <= kF32Max)) {  // NaN fails too
          char buf[32];
          std::snprintf(buf, sizeof buf, "%g", zv);
          throw std::invalid_argument("centre " + std::to_string(j) + " of modality " + std::to_string(m) +
                                      " is not finite in float32 (value " + buf + ")");
        }
        const float v = static_cast<float>(zv);
        zf_[m][j * dp + k] = v;
        nn += static_cast<double>(v) * v;
        if (!completion_tables) continue;
        const double x = zv * norm_.sigma[m][k] + norm_.mu[m][k];  // section 6
        if (!std::isfinite(x))
          throw std::invalid_argument("centre " + std::to_string(j) + " of modality " + std::to_string(m) +
                                      " is not finite in the data's space (mean + centre x scale overflows)");
        raw_[m][j * d + k] = x;
        raw_f_[m][j * d + k] = static_cast<float>(x);
        if (!std::isfinite(raw_f_[m][j * d + k])) f32_ok_[m] = 0;
      }
      cnorm_[m][j] = nn;
    }
  }
}

const std::vector<double>& Model::f() const {
  if (!completion_tables_) throw std::logic_error("model built without completion tables");
  std::call_once(f_once_, [this] {
    const int M = norm_.M();
    const int64_t K = c_.K;
    // K x K x M doubles must be countable in size_t bytes (K is bounded by the caller's
    // memory budget long before; this only rules out an overflowing size).
    if (K > (int64_t{1} << 28) || K * K > std::numeric_limits<int64_t>::max() / (8 * M))
      throw std::length_error("the K x K x M completion table of K = " + std::to_string(K) + " is too large");
    // f[j,l,m] = ||c_j^m - c_l^m||^2 / d_m by direct differences: exact zeros on the
    // diagonal, so structural ties in greedy completion stay exact (section 5).
    std::vector<double> f(static_cast<size_t>(K * K * M), 0.0);
    for (int64_t j = 0; j < K; ++j)
      for (int64_t l = 0; l < K; ++l)
        for (int m = 0; m < M; ++m) {
          if (!c_.has(j, m) || !c_.has(l, m)) continue;
          const int64_t d = norm_.d[m];
          f[(j * K + l) * M + m] = mean_sq_diff(c_.z[m].data() + j * d, c_.z[m].data() + l * d, d);
        }
    f_ = std::move(f);
    f_ready_.store(true);
  });
  return f_;
}

}  // namespace ul4m4
