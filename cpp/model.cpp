// The fitted model and the tables derived from it once (padded float centres, their
// norms, raw-space centres, and the K x K x M table f).
#include "detail.hpp"

namespace ul4m4 {
using namespace detail;

Model::Model(Normalizer norm, Centres centres, bool completion_tables)
    : norm_(std::move(norm)), c_(std::move(centres)) {
  if (norm_.dp.size() != norm_.d.size()) norm_.finalize();
  const int M = norm_.M();
  const int64_t K = c_.K;
  if (static_cast<int>(c_.z.size()) != M || static_cast<int64_t>(c_.H.size()) != K * M)
    throw std::invalid_argument("centres do not match the normaliser's modalities");
  zf_.assign(M, {});
  cnorm_.assign(M, {});
  if (completion_tables) {
    raw_.assign(M, {});
    raw_f_.assign(M, {});
  }
  hmask_.assign(K, 0);
  for (int64_t j = 0; j < K; ++j)
    for (int m = 0; m < M; ++m)
      if (c_.has(j, m)) hmask_[j] |= uint64_t{1} << m;
  for (int m = 0; m < M; ++m) {
    const int64_t d = norm_.d[m], dp = norm_.dp[m];
    if (static_cast<int64_t>(c_.z[m].size()) != K * d)
      throw std::invalid_argument("centre array of modality " + std::to_string(m) + " has the wrong size");
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
        const float v = static_cast<float>(c_.z[m][j * d + k]);
        zf_[m][j * dp + k] = v;
        nn += static_cast<double>(v) * v;
        if (!completion_tables) continue;
        const double x = c_.z[m][j * d + k] * norm_.sigma[m][k] + norm_.mu[m][k];  // docs/algorithm.md section 6
        raw_[m][j * d + k] = x;
        raw_f_[m][j * d + k] = static_cast<float>(x);
      }
      cnorm_[m][j] = nn;
    }
  }
  if (!completion_tables) return;
  // f[j,l,m] = ||c_j^m - c_l^m||^2 / d_m by direct differences: exact zeros on the
  // diagonal, so structural ties in greedy completion stay exact (docs/algorithm.md section 5).
  f_.assign(K * K * M, 0.0);
  for (int64_t j = 0; j < K; ++j)
    for (int64_t l = 0; l < K; ++l)
      for (int m = 0; m < M; ++m) {
        if (!c_.has(j, m) || !c_.has(l, m)) continue;
        const int64_t d = norm_.d[m];
        const double* a = c_.z[m].data() + j * d;
        const double* b = c_.z[m].data() + l * d;
        double s = 0.0;
        for (int64_t k = 0; k < d; ++k) {
          const double t = a[k] - b[k];
          s += t * t;
        }
        f_[(j * K + l) * M + m] = s / static_cast<double>(d);
      }
}

}  // namespace ul4m4
