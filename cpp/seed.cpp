// Section 3: k-means++ seeding on the partial distance (cuda/seed.cu mirrors it). Each new
// centre's distances to the eligible rows come from the distance step (distance.hpp) with a
// one-centre table.
#include "distance.hpp"
#include "ul4m4/rng.hpp"

namespace ul4m4 {
using namespace detail;

namespace {

// Centre j of `c` set from row i (z-space, float64), with the row's presence.
void centre_from_row(const Dataset& ds, const Normalizer& norm, int64_t i, Centres& c, int64_t j) {
  const int M = ds.M();
  for (int m = 0; m < M; ++m) {
    const int64_t d = norm.d[m];
    double* z = c.z[m].data() + j * d;
    const bool has = ds.present[i * M + m] != 0;
    c.H[j * M + m] = has;
    const MatrixView& v = ds.X[m];
    for (int64_t k = 0; k < d; ++k) {
      if (!has) {
        z[k] = 0.0;
        continue;
      }
      const double x = v.dtype == DType::F32
                           ? static_cast<double>(static_cast<const float*>(v.data)[i * v.row_stride + k])
                           : static_cast<const double*>(v.data)[i * v.row_stride + k];
      z[k] = (x - norm.mu[m][k]) / norm.sigma[m][k];
    }
  }
}

Centres empty_centres(const Normalizer& norm, int64_t K) {
  Centres c;
  c.K = K;
  c.z.resize(norm.M());
  for (int m = 0; m < norm.M(); ++m) c.z[m].assign(K * norm.d[m], 0.0);
  c.H.assign(K * norm.M(), 0);
  return c;
}

}  // namespace

Centres seed_kmeanspp(const Dataset& ds, const Normalizer& norm, int64_t K, uint64_t seed,
                      const RunContext& ctx) {
  const int M = ds.M();
  const int64_t n = ds.n;
  std::vector<int64_t> eligible;
  for (int64_t i = 0; i < n; ++i)
    if (row_mask(ds, i)) eligible.push_back(i);
  const int64_t E = static_cast<int64_t>(eligible.size());
  if (K < 1) throw std::invalid_argument("n_clusters must be at least 1");
  if (K > E)
    throw std::invalid_argument("n_clusters=" + std::to_string(K) + " is larger than the " +
                                std::to_string(E) + " rows with at least one observed modality");
  Rng rng(seed);
  Centres c = empty_centres(norm, K);
  std::vector<double> mind2(E, kInf);
  std::vector<uint8_t> chosen(E, 0);
  // One-centre tables for the distance pass.
  std::vector<std::vector<float>> zf(M);
  std::vector<double> cn(M);
  uint64_t hm = 0;
  CentreTables T;
  T.K = 1;
  T.hmask = &hm;
  for (int m = 0; m < M; ++m) zf[m].assign(norm.dp[m], 0.f);
  const int64_t chunk = chunk_rows_for(ctx, E);
  const int64_t n_chunks = ceil_div(E, chunk);
  const int nt = threads_for(ctx, n_chunks);
  std::vector<Scratch> scratch(nt);

  int64_t pick = eligible[rng.below(E)];
  int64_t pick_e = std::lower_bound(eligible.begin(), eligible.end(), pick) - eligible.begin();
  for (int64_t j = 0; j < K; ++j) {
    if (j > 0) {
      int64_t n_inf = 0;
      double total = 0.0;
      for (int64_t q = 0; q < E; ++q) {
        if (chosen[q]) continue;
        if (mind2[q] == kInf) ++n_inf; else total += mind2[q];
      }
      pick_e = -1;
      if (n_inf > 0) {  // [decided] rows sharing nothing with any chosen centre come first
        int64_t r = rng.below(n_inf);
        for (int64_t q = 0; q < E; ++q)
          if (!chosen[q] && mind2[q] == kInf && r-- == 0) { pick_e = q; break; }
      } else if (total > 0.0) {
        const double target = rng.uniform() * total;
        double cum = 0.0;
        int64_t last = -1;
        for (int64_t q = 0; q < E; ++q) {
          if (chosen[q] || !(mind2[q] > 0.0)) continue;
          last = q;
          cum += mind2[q];
          if (cum > target) { pick_e = q; break; }
        }
        if (pick_e < 0) pick_e = last;
      } else {  // every weight is 0 (duplicates): uniform among eligible rows not chosen
        int64_t r = rng.below(E - j);
        for (int64_t q = 0; q < E; ++q)
          if (!chosen[q] && r-- == 0) { pick_e = q; break; }
      }
      pick = eligible[pick_e];
    }
    centre_from_row(ds, norm, pick, c, j);
    chosen[pick_e] = 1;
    mind2[pick_e] = 0.0;
    if (j + 1 == K) break;
    // Distances of every eligible row to the new centre.
    hm = 0;
    for (int m = 0; m < M; ++m) {
      double nn = 0.0;
      const bool has = c.has(j, m);
      if (has) hm |= uint64_t{1} << m;
      for (int64_t k = 0; k < norm.d[m]; ++k) {
        const float v = has ? static_cast<float>(c.z[m][j * norm.d[m] + k]) : 0.f;
        zf[m][k] = v;
        nn += static_cast<double>(v) * v;
      }
      cn[m] = nn;
    }
    T.zf.clear();
    T.cnorm.clear();
    for (int m = 0; m < M; ++m) {
      T.zf.push_back(zf[m].data());
      T.cnorm.push_back(&cn[m]);
    }
    parallel_tasks(n_chunks, ctx, [&](int64_t ch, int tid) {
      Scratch& s = scratch[tid];
      if (s.z.empty()) s.reserve(chunk, max_dp(norm), 1, M);
      // Rows of this chunk of eligible rows are not contiguous: process them one block of
      // consecutive dataset rows at a time.
      const int64_t q0 = ch * chunk, q1 = std::min(E, q0 + chunk);
      int64_t q = q0;
      while (q < q1) {
        const int64_t r0 = eligible[q];
        int64_t q_end = q;
        while (q_end < q1 && eligible[q_end] - r0 < chunk) ++q_end;
        const int64_t r1 = eligible[q_end - 1] + 1;
        e_table(ds, norm, T, r0, r1, nullptr, s);
        for (int64_t u = q; u < q_end; ++u) {
          if (chosen[u]) continue;
          const int64_t i = eligible[u];
          const double v = combine(s.e.data() + (i - r0) * M, 0, M, row_mask(ds, i), hm);
          if (v < mind2[u]) mind2[u] = v;
        }
        q = q_end;
      }
    });
  }
  return c;
}

}  // namespace ul4m4
