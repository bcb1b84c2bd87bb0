// docs/algorithm.md section 1: modality-specific normalisation statistics, and input scans (NaN marking,
// finiteness). Float64 accumulation in fixed row blocks reduced in block order, so the
// result does not depend on the thread count.
#include "detail.hpp"

namespace ul4m4 {
using namespace detail;

void Normalizer::finalize() {
  const int M = static_cast<int>(d.size());
  dp.assign(M, 0);
  inv_sigma.assign(M, {});
  mu_f.assign(M, {});
  sigma_f.assign(M, {});
  inv_sigma_f.assign(M, {});
  for (int m = 0; m < M; ++m) {
    dp[m] = padded(d[m]);
    inv_sigma[m].resize(d[m]);
    mu_f[m].resize(d[m]);
    sigma_f[m].resize(d[m]);
    inv_sigma_f[m].resize(d[m]);
    for (int64_t k = 0; k < d[m]; ++k) {
      inv_sigma[m][k] = 1.0 / sigma[m][k];
      mu_f[m][k] = static_cast<float>(mu[m][k]);
      sigma_f[m][k] = static_cast<float>(sigma[m][k]);
      inv_sigma_f[m][k] = static_cast<float>(inv_sigma[m][k]);
    }
  }
}

namespace {

template <class X>
const X* row_ptr(const MatrixView& v, int64_t i) {
  return static_cast<const X*>(v.data) + i * v.row_stride;
}

int64_t n_blocks_for(int64_t n, const RunContext& ctx) {
  return std::max<int64_t>(1, std::min<int64_t>(64, ceil_div(n, chunk_rows_for(ctx, n))));
}

}  // namespace

void check_finite(const Dataset& ds, const RunContext& ctx) {
  const int M = ds.M();
  const int64_t nb = n_blocks_for(ds.n, ctx);
  parallel_tasks(nb, ctx, [&](int64_t b, int) {
    const int64_t r0 = part_begin(ds.n, nb, b), r1 = part_begin(ds.n, nb, b + 1);
    for (int64_t i = r0; i < r1; ++i)
      for (int m = 0; m < M; ++m)
        if (ds.present[i * M + m] && !row_finite(ds.X[m], i)) throw_nonfinite(i, m);
  });
}

Normalizer compute_stats(const Dataset& ds, const RunContext& ctx) {
  const int M = ds.M();
  if (M > kMaxModalities) throw std::invalid_argument("at most 64 modalities are supported");
  Normalizer norm;
  std::vector<int64_t> off(M + 1, 0);
  for (int m = 0; m < M; ++m) {
    norm.d.push_back(ds.X[m].cols);
    off[m + 1] = off[m] + ds.X[m].cols;
  }
  const int64_t D = off[M];
  const int64_t nb = n_blocks_for(ds.n, ctx);
  std::vector<double> part(nb * D);
  std::vector<int64_t> cnt(nb * M, 0);

  auto reduce = [&](std::vector<double>& total) {
    total.assign(D, 0.0);
    for (int64_t b = 0; b < nb; ++b)
      for (int64_t k = 0; k < D; ++k) total[k] += part[b * D + k];
  };

  // Pass 1: sums.
  std::fill(part.begin(), part.end(), 0.0);
  parallel_tasks(nb, ctx, [&](int64_t b, int) {
    const int64_t r0 = part_begin(ds.n, nb, b), r1 = part_begin(ds.n, nb, b + 1);
    const KernelTable& kern = kernels();
    for (int64_t i = r0; i < r1; ++i)
      for (int m = 0; m < M; ++m) {
        if (!ds.present[i * M + m]) continue;
        double* acc = part.data() + b * D + off[m];
        if (ds.X[m].dtype == DType::F32)
          kern.accum_f32(row_ptr<float>(ds.X[m], i), ds.X[m].cols, acc);
        else
          kern.accum_f64(row_ptr<double>(ds.X[m], i), ds.X[m].cols, acc);
        ++cnt[b * M + m];
      }
  });
  std::vector<double> sum;
  reduce(sum);
  std::vector<int64_t> count(M, 0);
  for (int64_t b = 0; b < nb; ++b)
    for (int m = 0; m < M; ++m) count[m] += cnt[b * M + m];
  for (int m = 0; m < M; ++m)
    if (count[m] == 0)
      throw std::invalid_argument("modality " + std::to_string(m) +
                                  " has no observed row in the training data: it cannot be fitted");
  for (int64_t k = 0; k < D; ++k)
    if (!std::isfinite(sum[k])) {
      check_finite(ds, ctx);  // throws naming the first bad row
      throw std::invalid_argument("the sum of a feature overflowed (values too large for float64)");
    }
  std::vector<double> mean(D);
  for (int m = 0; m < M; ++m)
    for (int64_t k = off[m]; k < off[m + 1]; ++k) mean[k] = sum[k] / static_cast<double>(count[m]);

  // Pass 2: squared deviations (two-pass for accuracy).
  std::fill(part.begin(), part.end(), 0.0);
  parallel_tasks(nb, ctx, [&](int64_t b, int) {
    const int64_t r0 = part_begin(ds.n, nb, b), r1 = part_begin(ds.n, nb, b + 1);
    for (int64_t i = r0; i < r1; ++i)
      for (int m = 0; m < M; ++m) {
        if (!ds.present[i * M + m]) continue;
        double* acc = part.data() + b * D + off[m];
        const double* mu = mean.data() + off[m];
        const int64_t d = ds.X[m].cols;
        if (ds.X[m].dtype == DType::F32) {
          const float* x = row_ptr<float>(ds.X[m], i);
          for (int64_t k = 0; k < d; ++k) {
            const double t = static_cast<double>(x[k]) - mu[k];
            acc[k] += t * t;
          }
        } else {
          const double* x = row_ptr<double>(ds.X[m], i);
          for (int64_t k = 0; k < d; ++k) {
            const double t = x[k] - mu[k];
            acc[k] += t * t;
          }
        }
      }
  });
  std::vector<double> ssd;
  reduce(ssd);
  norm.mu.resize(M);
  norm.sigma.resize(M);
  for (int m = 0; m < M; ++m) {
    norm.mu[m].assign(mean.begin() + off[m], mean.begin() + off[m + 1]);
    norm.sigma[m].resize(norm.d[m]);
    for (int64_t k = 0; k < norm.d[m]; ++k) {
      const double s = std::sqrt(ssd[off[m] + k] / static_cast<double>(count[m]));
      norm.sigma[m][k] = s <= kSigmaFloor ? 1.0 : s;
    }
  }
  norm.finalize();
  return norm;
}

void presence_from_nan(const std::vector<MatrixView>& X, int64_t n, uint8_t* present,
                       const RunContext& ctx) {
  const int M = static_cast<int>(X.size());
  const int64_t nb = n_blocks_for(n, ctx);
  parallel_tasks(nb, ctx, [&](int64_t b, int) {
    const int64_t r0 = part_begin(n, nb, b), r1 = part_begin(n, nb, b + 1);
    for (int64_t i = r0; i < r1; ++i)
      for (int m = 0; m < M; ++m) {
        const MatrixView& v = X[m];
        int64_t nan = 0;
        if (v.dtype == DType::F32) {
          const float* x = row_ptr<float>(v, i);
          for (int64_t k = 0; k < v.cols; ++k) nan += std::isnan(x[k]);
        } else {
          const double* x = row_ptr<double>(v, i);
          for (int64_t k = 0; k < v.cols; ++k) nan += std::isnan(x[k]);
        }
        if (nan != 0 && nan != v.cols)
          throw std::invalid_argument("row " + std::to_string(i) + " of modality " + std::to_string(m) +
                                      " is partly NaN (" + std::to_string(nan) + " of " +
                                      std::to_string(v.cols) +
                                      " values): a missing modality must be all NaN or marked in the mask");
        present[i * M + m] = nan == 0 ? 1 : 0;
      }
  });
}

}  // namespace ul4m4
