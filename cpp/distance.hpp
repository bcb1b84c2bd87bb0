// Internal: the distance step shared by assignment, seeding, completion and the bounds.
// The float32 table e (docs/algorithm.md section 4) of rows to centres, its combination
// into partial distances, and the float64 direct distances that settle near ties.
#pragma once

#include "detail.hpp"
#include "ul4m4/kernels.hpp"

namespace ul4m4::detail {

/// ||a - b||^2 / d over d float64 values, summed in index order: the per-modality term of
/// the partial distance between two centres (centre shift, greedy's f table, the bounds).
inline double mean_sq_diff(const double* a, const double* b, int64_t d) {
  double s = 0.0;
  for (int64_t k = 0; k < d; ++k) {
    const double t = a[k] - b[k];
    s += t * t;
  }
  return s / static_cast<double>(d);
}

/// Centre tables as the distance code sees them (a Model's, or one seeding centre).
struct CentreTables {
  int64_t K = 0;
  std::vector<const float*> zf;      // per m: K x dp_m
  std::vector<const double*> cnorm;  // per m: K
  const uint64_t* hmask = nullptr;   // K presence bitmasks
};

inline CentreTables tables_of(const Model& model) {
  CentreTables t;
  t.K = model.K();
  for (int m = 0; m < model.M(); ++m) {
    t.zf.push_back(model.zf(m).data());
    t.cnorm.push_back(model.cnorm(m).data());
  }
  t.hmask = model.hmask().data();
  return t;
}

/// Per-thread scratch of e_table for one chunk of rows.
struct Scratch {
  std::vector<float> z;        // chunk x dp (one modality at a time)
  std::vector<float> dots;     // chunk x K
  std::vector<float> e;        // chunk x K x M
  std::vector<double> zz;      // chunk
  std::vector<int64_t> local;  // rows of the chunk being processed
  void reserve(int64_t chunk, int64_t dp_max, int64_t K, int M) {
    z.resize(chunk * dp_max);
    dots.resize(chunk * K);
    e.resize(chunk * K * M);
    zz.resize(chunk);
    local.resize(chunk);
  }
};

inline int64_t max_dp(const Normalizer& norm) {
  int64_t v = 0;
  for (auto x : norm.dp) v = std::max(v, x);
  return v;
}

/// Normalises one present row of modality m into z (padded); returns ||z||^2.
inline double normalize_row(const Dataset& ds, const Normalizer& norm, int m, int64_t i, float* z) {
  const MatrixView& v = ds.X[m];
  const KernelTable& k = kernels();
  if (v.dtype == DType::F32) {
    const float* x = static_cast<const float*>(v.data) + i * v.row_stride;
    return k.normalize_f32(x, norm.d[m], norm.mu_f[m].data(), norm.inv_sigma_f[m].data(), z, norm.dp[m]);
  }
  const double* x = static_cast<const double*>(v.data) + i * v.row_stride;
  return k.normalize_f64(x, norm.d[m], norm.mu[m].data(), norm.inv_sigma[m].data(), z, norm.dp[m]);
}

/// One entry of the table below from ||z||^2, ||c||^2 and the float32 dot z.c (the one
/// expression every caller shares, so a single pair recomputed elsewhere gets the same bits).
inline float e_value(double zz, double cn, float dot, double inv_d) {
  const double v = zz + cn - 2.0 * static_cast<double>(dot);
  return static_cast<float>(v > 0.0 ? v * inv_d : 0.0);
}

/// e[t][l][m] = ||z_i^m - c_l^m||^2 / d_m for rows i = r0 + t of the chunk with m present
/// (and select[t] != 0 when select is given), for every l (values for centres without m
/// are meaningless and must be masked by the caller). Uses the expansion
/// ||z||^2 + ||c||^2 - 2 z.c, clamped at 0, in float32 with float64 norms.
inline void e_table(const Dataset& ds, const Normalizer& norm, const CentreTables& C, int64_t r0,
                    int64_t r1, const uint8_t* select, Scratch& s) {
  const int M = ds.M();
  const int64_t K = C.K;
  const KernelTable& kern = kernels();
  for (int m = 0; m < M; ++m) {
    const int64_t dp = norm.dp[m];
    const double inv_d = 1.0 / static_cast<double>(norm.d[m]);
    int64_t n = 0;
    for (int64_t i = r0; i < r1; ++i) {
      const int64_t t = i - r0;
      if (!ds.present[i * M + m] || (select && !select[t])) continue;
      const double zz = normalize_row(ds, norm, m, i, s.z.data() + n * dp);
      if (!std::isfinite(zz)) {
        if (row_finite(ds.X[m], i)) throw_out_of_range(i, m);
        throw_nonfinite(i, m);
      }
      s.zz[n] = zz;
      s.local[n++] = t;
    }
    if (n == 0) continue;
    kern.dot_block(s.z.data(), n, dp, C.zf[m], K, dp, dp, s.dots.data(), K);
    const double* cn = C.cnorm[m];
    for (int64_t q = 0; q < n; ++q) {
      float* e = s.e.data() + s.local[q] * K * M + m;
      const float* dot = s.dots.data() + q * K;
      const double zz = s.zz[q];
      for (int64_t l = 0; l < K; ++l) e[l * M] = e_value(zz, cn[l], dot[l], inv_d);
    }
  }
}

/// Squared partial distance of row (bitmask a, e row) to centre l: sum over shared
/// modalities of e / count; +inf if none is shared.
inline double combine(const float* e_row, int64_t l, int M, uint64_t a, uint64_t h) {
  const uint64_t s = a & h;
  if (!s) return kInf;
  double num = 0.0;
  const float* el = e_row + l * M;
  for_bits(s, [&](int m) { num += static_cast<double>(el[m]); });
  return num / popcount(s);
}

/// Squared partial distance of row i (presence a) to centre l of the model, in float64 by
/// direct differences (no expansion): used to settle near ties of the float32 table.
inline double exact_d2(const Dataset& ds, const Model& model, int64_t i, uint64_t a, int64_t l) {
  const uint64_t s = a & model.hmask()[l];
  if (!s) return kInf;
  const Normalizer& norm = model.norm();
  double num = 0.0;
  for_bits(s, [&](int m) {
    const int64_t d = norm.d[m];
    const MatrixView& v = ds.X[m];
    const double* c = model.centres().z[m].data() + l * d;
    double acc = 0.0;
    for (int64_t k = 0; k < d; ++k) {
      const double x = v.dtype == DType::F32
                           ? static_cast<double>(static_cast<const float*>(v.data)[i * v.row_stride + k])
                           : static_cast<const double*>(v.data)[i * v.row_stride + k];
      const double t = (x - norm.mu[m][k]) / norm.sigma[m][k] - c[k];
      acc += t * t;
    }
    num += acc / static_cast<double>(d);
  });
  return num / popcount(s);
}

/// One row normalised once (every present modality), for the distances to a few centres.
struct RowZ {
  std::vector<float> z;      // sum of dp
  std::vector<int64_t> off;  // M + 1
  double zz[kMaxModalities];
  RowZ(const Normalizer& norm) : off(norm.M() + 1, 0) {
    for (int m = 0; m < norm.M(); ++m) off[m + 1] = off[m] + norm.dp[m];
    z.resize(off.back());
  }
  const Dataset* ds = nullptr;
  int64_t i = -1;
  uint64_t ready = 0;  // modalities of row i normalised so far
  void load(const Dataset& d, int64_t row) {
    ds = &d;
    i = row;
    ready = 0;
  }
  /// Squared partial distance to centre l as the float32 table computes it (same
  /// normalisation, dot product, e_value and order of the sum): bit-identical to combine()
  /// on e_table's row, as a pair's dot does not depend on the tile that computes it.
  double d2(const Normalizer& norm, const CentreTables& C, uint64_t a, int64_t l) {
    const uint64_t s = a & C.hmask[l];
    if (!s) return kInf;
    for_bits(s & ~ready, [&](int m) { zz[m] = normalize_row(*ds, norm, m, i, z.data() + off[m]); });
    ready |= s;
    const KernelTable& kern = kernels();
    double num = 0.0;
    for_bits(s, [&](int m) {
      const int64_t dp = norm.dp[m];
      float dot;
      kern.dot_block(z.data() + off[m], 1, dp, C.zf[m] + l * dp, 1, dp, dp, &dot, 1);
      num += static_cast<double>(e_value(zz[m], C.cnorm[m][l], dot, 1.0 / static_cast<double>(norm.d[m])));
    });
    return num / popcount(s);
  }
};

}  // namespace ul4m4::detail
