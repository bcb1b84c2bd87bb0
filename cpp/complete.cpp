// Sections 5, 5b and 6: greedy (anchored pairs) and soft completion, written per chunk of
// rows. The row-to-centre table e comes from the same kernel as the assignment; the
// K x K x M table f comes from the model. No vector of width d is touched in the K x K loop.
#include <tuple>
#include <utility>

#include "distance.hpp"

namespace ul4m4 {
using namespace detail;

namespace {

inline void store(const MutableMatrixView& o, int64_t i, int64_t k, double v) {
  if (o.dtype == DType::F32)
    static_cast<float*>(o.data)[i * o.row_stride + k] = static_cast<float>(v);
  else
    static_cast<double*>(o.data)[i * o.row_stride + k] = v;
}

inline void copy_row(const MatrixView& in, const MutableMatrixView& o, int64_t i) {
  if (in.data == o.data && in.row_stride == o.row_stride && in.dtype == o.dtype) return;  // in place
  if (in.dtype == o.dtype) {
    const size_t bytes = (in.dtype == DType::F32 ? 4 : 8) * static_cast<size_t>(in.cols);
    const size_t es = in.dtype == DType::F32 ? 4 : 8;
    kernels().copy_stream(static_cast<char*>(o.data) + es * i * o.row_stride,
                          static_cast<const char*>(in.data) + es * i * in.row_stride, bytes);
    return;
  }
  for (int64_t k = 0; k < in.cols; ++k) {
    const double v = in.dtype == DType::F32
                         ? static_cast<double>(static_cast<const float*>(in.data)[i * in.row_stride + k])
                         : static_cast<const double*>(in.data)[i * in.row_stride + k];
    store(o, i, k, v);
  }
}

// Row i of o = a vector held in both precisions (the one of o's dtype is copied).
void write_row(const MutableMatrixView& o, int64_t i, const float* f32, const double* f64) {
  if (o.dtype == DType::F32)
    kernels().copy_stream(static_cast<float*>(o.data) + i * o.row_stride, f32, 4 * static_cast<size_t>(o.cols));
  else
    kernels().copy_stream(static_cast<double*>(o.data) + i * o.row_stride, f64, 8 * static_cast<size_t>(o.cols));
}

void fill_mean(const MutableMatrixView& o, const Normalizer& norm, int64_t i, int m) {
  write_row(o, i, norm.mu_f[m].data(), norm.mu[m].data());
}

// What greedy and soft completion share: the call's arguments and the model's tables.
struct Job {
  const Dataset& ds;
  const Model& model;
  const std::vector<MutableMatrixView>& out;
  uint8_t* imputed;
  uint8_t* unfilled;
  float* confidence;  // null when not asked for
  int M;
  int64_t K, n;
  const Normalizer& norm;
  CentreTables C;
  uint64_t full;  // every modality
  int64_t chunk, dpm;

  // Missing slot m of row i: the training mean, flagged unfilled.
  void mark_unfilled(int64_t i, int m) const {
    unfilled[i * M + m] = 1;
    fill_mean(out[m], norm, i, m);
  }
};

// The scratch both completions have per thread: the e table of a chunk and its rows to score.
struct ChunkScratch {
  Scratch s;
  std::vector<uint8_t> select;
  std::vector<double> E;  // K: the row's sums of e over the modalities shared with each centre
  void reserve(const Job& J) {
    s.reserve(J.chunk, J.dpm, J.K, J.M);
    select.resize(J.chunk);
    E.resize(J.K);
  }
};

// The pass over the rows in chunks shared by both completions. For each chunk: the e table
// of its rows with observed and missing slots; then, row by row, the observed slots are
// copied to the output (flags cleared, confidence 1 on observed slots, 0 elsewhere until
// filled) and a row with no observed slot gets the means; a row with observed and missing
// slots goes to fill(L, i, t, a, miss). Then finish(L, r0) completes the chunk. Local has
// ChunkScratch's members, reserve(job) and start_chunk().
template <class Local, class Fill, class Finish>
void run_chunks(const Job& J, const RunContext& ctx, Fill&& fill, Finish&& finish) {
  const Dataset& ds = J.ds;
  const int M = J.M;
  const int64_t n_chunks = ceil_div(J.n, J.chunk);
  std::vector<Local> locals(threads_for(ctx, n_chunks));
  parallel_tasks(n_chunks, ctx, [&](int64_t ch, int tid) {
    Local& L = locals[tid];
    if (L.s.z.empty()) L.reserve(J);
    const int64_t r0 = ch * J.chunk, r1 = std::min(J.n, r0 + J.chunk);
    bool any = false;
    for (int64_t i = r0; i < r1; ++i) {
      const uint64_t a = row_mask(ds, i);
      L.select[i - r0] = a != 0 && a != J.full;
      any |= L.select[i - r0] != 0;
    }
    if (any) e_table(ds, J.norm, J.C, r0, r1, L.select.data(), L.s);
    L.start_chunk();
    for (int64_t i = r0; i < r1; ++i) {
      const int64_t t = i - r0;
      const uint64_t a = row_mask(ds, i);
      const uint64_t miss = J.full & ~a;
      for (int m = 0; m < M; ++m) {
        J.imputed[i * M + m] = 0;
        J.unfilled[i * M + m] = 0;
        if (J.confidence) J.confidence[i * M + m] = (a >> m & 1) ? 1.f : 0.f;  // unfilled slots keep 0
        if (!(a >> m & 1)) continue;
        // Rows scored are checked by e_table; complete rows are checked here.
        if (!L.select[t] && !row_finite(ds.X[m], i)) throw_nonfinite(i, m);
        copy_row(ds.X[m], J.out[m], i);
      }
      if (!miss) continue;
      if (!a) {
        for_bits(miss, [&](int m) { J.mark_unfilled(i, m); });
        continue;
      }
      fill(L, i, t, a, miss);
    }
    finish(L, r0);
    kernels().store_fence();  // the non-temporal row copies are visible before the task ends
  });
}

// Greedy tables of one observed pattern A (see complete_greedy); they depend on A only.
struct Pattern {
  uint64_t a = 0;
  std::vector<int64_t> carriers;  // centres carrying a missing modality
  std::vector<double> F, D, R;    // per carrier, K values
  std::vector<double> rmin;       // per l, min over carriers of R[j,l]
};

struct GreedyScratch : ChunkScratch {
  std::vector<double> score;      // per carrier
  std::vector<int64_t> pending;   // rows to score
  std::vector<uint64_t> amask;    // presence bitmask of each pending row of the chunk
  std::vector<Pattern> patterns;  // tables of the missing patterns seen (a cache)
  size_t next_evict = 0;
  std::vector<double> exact;   // exact scores of a row with a near tie
  std::vector<double> bound;   // per carrier, an upper bound
  std::vector<int64_t> near;   // the l that can attain a winning score
  size_t max_patterns = 1;
  void reserve(const Job& J) {
    ChunkScratch::reserve(J);
    // Patterns kept per thread across chunks: at most 64, and at most ~16 MiB of tables.
    const size_t pattern_bytes = static_cast<size_t>(3 * J.K * J.K + J.K) * sizeof(double);
    max_patterns = std::max<size_t>(1, std::min<size_t>(64, (size_t{16} << 20) / pattern_bytes));
    score.resize(J.K);
    pending.reserve(J.chunk);
    amask.resize(J.chunk);
    patterns.reserve(max_patterns);
    exact.resize(J.K);
    bound.resize(J.K);
    near.reserve(J.K);
  }
  void start_chunk() { pending.clear(); }
};

// Greedy scores (docs/algorithm.md section 5, anchored pairs) for the pending rows of a chunk. For a row
// with missing set Mi (observed A), candidate j and centre l:
//   D^2(cand_j, c_l) = (E_l + F[j,l]) / (nA_l + c[j,l]),
//   E_l = sum_{m in A & H_l} e[i,l,m],  nA_l = |A & H_l|,
//   F[j,l] = sum_{m in Mi & H_j & H_l} f[j,l,m],  c[j,l] = |Mi & H_j & H_l|,
// and a pair counts only when nA_l > 0 (F = +inf otherwise). F, nA and c depend on the
// missing pattern only, so rows are grouped by pattern and the tables built once per
// pattern and thread (kept across chunks, a bounded cache); per row only E changes and
// score_j is one vectorised min over l.
//
// The min runs on (E_l + F[j,l]) * (1 / D[j,l]), a multiply instead of a division (the
// division's throughput bounded this loop). The product is within 2 ulp of the quotient,
// so when a slot's best score beats every other carrier of the slot by more than
// kTieRel the winner is the quotient's winner; otherwise the row is re-scored with the
// division, and the result is the same bits as an all-division computation.
constexpr double kTieRel = 1e-12;

inline double exact_score(const GreedyScratch& L, const Pattern& P, size_t q, int64_t K) {
  const double* F = P.F.data() + q * K;
  const double* Dn = P.D.data() + q * K;
  double best = kInf;
  for (int64_t l = 0; l < K; ++l) {
    const double v = (L.E[l] + F[l]) / Dn[l];
    best = v < best ? v : best;
  }
  return best;
}

inline void build_pattern(const Job& J, const double* f, Pattern& P, uint64_t a) {
  const int M = J.M;
  const int64_t K = J.K;
  const uint64_t full = J.full;
  const CentreTables& C = J.C;
  const uint64_t miss = full & ~a;
  P.a = a;
  P.carriers.clear();
  for (int64_t j = 0; j < K; ++j)
    if (miss & C.hmask[j]) P.carriers.push_back(j);
  const size_t nq = P.carriers.size();
  P.F.resize(nq * K);
  P.D.resize(nq * K);
  P.R.resize(nq * K);
  P.rmin.resize(K);
  for (size_t q = 0; q < nq; ++q) {
    const int64_t j = P.carriers[q];
    const uint64_t mj = miss & C.hmask[j];
    const double* fj = f + j * K * M;
    double* F = P.F.data() + q * K;
    double* Dn = P.D.data() + q * K;
    double* Rn = P.R.data() + q * K;
    for (int64_t l = 0; l < K; ++l) {
      const int na = popcount(a & C.hmask[l]);
      const uint64_t s = mj & C.hmask[l];
      double fs = 0.0;
      for_bits(s, [&](int m) { fs += fj[l * M + m]; });
      F[l] = na ? fs : kInf;
      Dn[l] = static_cast<double>(na + popcount(s));
      Rn[l] = na ? 1.0 / Dn[l] : kInf;
    }
  }
  // Pruning bound: (E_l + F[j,l]) / D[j,l] >= E_l * min_j 1/D[j,l] (E, F >= 0).
  for (int64_t l = 0; l < K; ++l) {
    double r = kInf;
    if (a & C.hmask[l])
      for (size_t q = 0; q < nq; ++q) r = std::min(r, P.R[q * K + l]);
    P.rmin[l] = r;
  }
}

inline const Pattern& pattern_of(const Job& J, const double* f, GreedyScratch& L, uint64_t a) {
  for (const Pattern& P : L.patterns)
    if (P.a == a) return P;
  Pattern* P;
  if (L.patterns.size() < L.max_patterns) {
    P = &L.patterns.emplace_back();
  } else {
    P = &L.patterns[L.next_evict];
    L.next_evict = (L.next_evict + 1) % L.patterns.size();
  }
  build_pattern(J, f, *P, a);
  return *P;
}

// Scores the pending rows of the chunk starting at r0, grouped by missing pattern, and
// writes the winners.
inline void greedy_rows(const Job& J, const double* f, GreedyScratch& L, int64_t r0) {
  const int M = J.M;
  const int64_t K = J.K;
  const uint64_t full = J.full;
  const CentreTables& C = J.C;
  const KernelTable& kern = kernels();
  float* confidence = J.confidence;
  auto& rows = L.pending;
  const uint64_t* am = L.amask.data();
  std::stable_sort(rows.begin(), rows.end(), [&](int64_t x, int64_t y) { return am[x - r0] < am[y - r0]; });
  size_t g0 = 0;
  while (g0 < rows.size()) {
    const uint64_t a = am[rows[g0] - r0];
    size_t g1 = g0 + 1;
    while (g1 < rows.size() && am[rows[g1] - r0] == a) ++g1;
    const uint64_t miss = full & ~a;
    const Pattern& P = pattern_of(J, f, L, a);
    const std::vector<int64_t>& carriers = P.carriers;
    for (size_t g = g0; g < g1; ++g) {
      const int64_t i = rows[g];
      const float* e = L.s.e.data() + (i - r0) * K * M;
      for (int64_t l = 0; l < K; ++l) {
        double num = 0.0;
        for_bits(a & C.hmask[l], [&](int m) { num += static_cast<double>(e[l * M + m]); });
        L.E[l] = num;
      }
      // Prune the l that cannot attain a winning score. B bounds every slot's winning
      // score from above (for slot m, the best l = j term among m's carriers; the max over
      // the missing m). A term with E_l * rmin_l > B (1 + 1e-9) exceeds B, so a carrier's
      // min over the remaining l is its exact score whenever that is <= B, and a carrier
      // whose min exceeds B loses every slot by more than the near-tie margin: the
      // winners and tie decisions are those of the min over all l, bit for bit.
      const size_t nq = carriers.size();
      for (size_t q = 0; q < nq; ++q) {
        const int64_t j = carriers[q];
        L.bound[q] = (L.E[j] + P.F[q * K + j]) * P.R[q * K + j];
      }
      double B = 0.0;
      for_bits(miss, [&](int m) {
        double bm = kInf;
        for (size_t q = 0; q < nq; ++q)
          if (C.hmask[carriers[q]] >> m & 1) bm = std::min(bm, L.bound[q]);
        B = std::max(B, bm);
      });
      const double thr = B + 1e-9 * B;
      L.near.clear();
      for (int64_t l = 0; l < K; ++l)
        if (L.E[l] * P.rmin[l] <= thr) L.near.push_back(l);
      // With confidence asked, every carrier's score is needed exactly (the runner-up of
      // a slot may be one the pruning drops): the full min, whose winners are the same.
      if (confidence || static_cast<int64_t>(L.near.size()) * 4 >= K) {
        for (size_t q = 0; q < nq; ++q)
          L.score[q] = kern.min_ratio(L.E.data(), P.F.data() + q * K, P.R.data() + q * K, K);
      } else {
        for (size_t q = 0; q < nq; ++q) {
          const double* F = P.F.data() + q * K;
          const double* R = P.R.data() + q * K;
          double best = kInf;
          for (const int64_t l : L.near) {
            const double v = (L.E[l] + F[l]) * R[l];
            best = v < best ? v : best;
          }
          L.score[q] = best;
        }
      }
      bool rescored = false;
      for_bits(miss, [&](int m) {
        // Lowest score among carriers of m, ties to the lowest j; the row is anchored,
        // so every carrier's score is finite.
        auto pick = [&](const double* sc, double& second) {
          int64_t w = -1;
          double b = kInf;
          second = kInf;
          for (size_t q = 0; q < carriers.size(); ++q) {
            if (!(C.hmask[carriers[q]] >> m & 1)) continue;
            if (sc[q] < b) {
              second = b;
              b = sc[q];
              w = carriers[q];
            } else if (sc[q] < second) {
              second = sc[q];
            }
          }
          return std::make_pair(w, b);
        };
        double second;
        auto [win, best] = pick(L.score.data(), second);
        if (win >= 0 && second <= best + kTieRel * best) {  // near tie: the quotients decide
          if (!rescored) {
            for (size_t q = 0; q < carriers.size(); ++q) L.exact[q] = exact_score(L, P, q, K);
            rescored = true;
          }
          std::tie(win, best) = pick(L.exact.data(), second);
        }
        if (win < 0) {  // no centre carries m
          J.mark_unfilled(i, m);
          return;
        }
        J.imputed[i * M + m] = 1;
        if (confidence)  // 1 - winner / runner-up score: 0 at a tie, 1 with no runner-up
          confidence[i * M + m] =
              second == kInf ? 1.f : second > 0.0 ? static_cast<float>(std::clamp(1.0 - best / second, 0.0, 1.0)) : 0.f;
        const int64_t d = J.norm.d[m];
        write_row(J.out[m], i, J.model.raw_f(m).data() + win * d, J.model.raw(m).data() + win * d);
      });
    }
    g0 = g1;
  }
}

void complete_greedy(const Job& J, const RunContext& ctx) {
  // f (built here on first use, before any thread starts).
  const double* f = J.model.f().data();
  uint64_t any_h = 0;  // modalities carried by some centre
  for (int64_t l = 0; l < J.K; ++l) any_h |= J.C.hmask[l];
  run_chunks<GreedyScratch>(
      J, ctx,
      [&](GreedyScratch& L, int64_t i, int64_t t, uint64_t a, uint64_t miss) {
        if (!(a & any_h)) {  // no centre shares a modality with the row
          for_bits(miss, [&](int m) { J.mark_unfilled(i, m); });
          return;
        }
        L.amask[t] = a;  // scored in finish, grouped by missing pattern
        L.pending.push_back(i);
      },
      [&](GreedyScratch& L, int64_t r0) { greedy_rows(J, f, L, r0); });
}

// Rows of one modality filled per wsum_block call: 48 x 4 KiB of values at d = 1024 stay in L2.
constexpr int64_t kSoftBlock = 48;

struct SoftScratch : ChunkScratch {
  std::vector<double> da2, med;  // K: D_A^2 per centre; the finite ones
  std::vector<int> nA;           // K: modalities shared with each centre
  std::vector<double> ex, ex2;   // K unnormalised weights
  std::vector<float> zblk;       // kSoftBlock rows of dp_max filled values
  std::vector<double> zd;        // dp_max: one row of float64 output values
  std::vector<std::vector<int64_t>> srows;  // per modality, rows queued for filling
  std::vector<std::vector<float>> sw;       // per modality, their K weights each
  void reserve(const Job& J) {
    ChunkScratch::reserve(J);
    da2.resize(J.K);
    nA.resize(J.K);
    ex.resize(J.K);
    ex2.resize(J.K);
    zblk.resize(kSoftBlock * J.dpm);
    zd.resize(J.dpm);
    srows.resize(J.M);
    sw.resize(J.M);
    for (int m = 0; m < J.M; ++m) {
      srows[m].reserve(J.chunk);
      sw[m].resize(J.chunk * J.K);
    }
  }
  // A chunk that threw (bad input) may have left rows queued on this thread.
  void start_chunk() {
    for (auto& q : srows) q.clear();
  }
};

// Soft: z = sum_j w_j c_j^m for the queued rows of each modality, then x = z sigma + mu,
// computed in the scratch row (z itself for float32 outputs, zd for float64) and streamed
// to the output: plain stores into the (uncached) output first read each line in, which
// made these writes cost 1.5x the observed slots' streamed copies.
inline void soft_write(const Job& J, int64_t i, int m, float* z, double* zd) {
  const Normalizer& norm = J.norm;
  const MutableMatrixView& o = J.out[m];
  const int64_t d = norm.d[m];
  if (o.dtype == DType::F32) {
    const float* sgf = norm.sigma_f[m].data();
    const float* muf = norm.mu_f[m].data();
    for (int64_t k = 0; k < d; ++k) z[k] = z[k] * sgf[k] + muf[k];
    kernels().copy_stream(static_cast<float*>(o.data) + i * o.row_stride, z, 4 * static_cast<size_t>(d));
  } else {
    const double* sg = norm.sigma[m].data();
    const double* mu = norm.mu[m].data();
    for (int64_t k = 0; k < d; ++k) zd[k] = static_cast<double>(z[k]) * sg[k] + mu[k];
    kernels().copy_stream(static_cast<double*>(o.data) + i * o.row_stride, zd, 8 * static_cast<size_t>(d));
  }
}

// packed[m]: the centres of m as kern.wsum_pack lays them out.
inline void soft_fill(const Job& J, const KernelTable& kern, const std::vector<std::vector<float>>& packed,
                      SoftScratch& L) {
  const int64_t K = J.K;
  for (int m = 0; m < J.M; ++m) {
    const std::vector<int64_t>& rows = L.srows[m];
    const int64_t dp = J.norm.dp[m], nr = static_cast<int64_t>(rows.size());
    const float* X = packed[m].data();
    const float* W = L.sw[m].data();
    float* z = L.zblk.data();
    // The queued rows of m are one GEMM (rows x K weights) x (K x dp centres), in blocks
    // of kSoftBlock rows whose values stay in cache until written out.
    for (int64_t q0 = 0; q0 < nr; q0 += kSoftBlock) {
      const int64_t nb = std::min(kSoftBlock, nr - q0);
      kern.wsum_block(W + q0 * K, nb, K, X, dp, z, dp);
      for (int64_t q = 0; q < nb; ++q) soft_write(J, rows[q0 + q], m, z + q * dp, L.zd.data());
    }
    L.srows[m].clear();
  }
}

void complete_soft(const Job& J, const CompletionParams& p, const RunContext& ctx) {
  const int M = J.M;
  const int64_t K = J.K;
  const CentreTables& C = J.C;
  uint8_t* imputed = J.imputed;
  float* confidence = J.confidence;
  // The centres packed once for the weighted sums (K x dp floats per modality).
  const KernelTable& kern = kernels();
  std::vector<std::vector<float>> packed(M);
  for (int m = 0; m < M; ++m) {
    packed[m].resize(K * J.norm.dp[m]);
    kern.wsum_pack(J.model.zf(m).data(), K, J.norm.dp[m], J.norm.dp[m], packed[m].data());
  }
  bool uniform = true;  // every centre carries every modality (the usual model)
  for (int64_t l = 0; l < K; ++l) uniform = uniform && C.hmask[l] == J.full;
  run_chunks<SoftScratch>(
      J, ctx,
      [&](SoftScratch& L, int64_t i, int64_t t, uint64_t a, uint64_t miss) {
        const float* e = L.s.e.data() + t * K * M;
        if (uniform) {  // every centre carries every modality: the same sums, loop by loop over l
          const int na = popcount(a);
          for (int64_t l = 0; l < K; ++l) L.E[l] = 0.0;
          for_bits(a, [&](int m) {
            for (int64_t l = 0; l < K; ++l) L.E[l] += static_cast<double>(e[l * M + m]);
          });
          for (int64_t l = 0; l < K; ++l) L.nA[l] = na;
        } else {
          bool anchored = false;
          for (int64_t l = 0; l < K; ++l) {
            const uint64_t s = a & C.hmask[l];
            double num = 0.0;
            for_bits(s, [&](int m) { num += static_cast<double>(e[l * M + m]); });
            L.E[l] = num;
            L.nA[l] = popcount(s);
            anchored |= s != 0;
          }
          if (!anchored) {
            for_bits(miss, [&](int m) { J.mark_unfilled(i, m); });
            return;
          }
        }
        // Soft (docs/algorithm.md section 5b): D_A over observed modalities only.
        L.med.clear();
        for (int64_t j = 0; j < K; ++j) {
          L.da2[j] = L.nA[j] ? L.E[j] / L.nA[j] : kInf;
          if (L.nA[j]) L.med.push_back(L.da2[j]);
        }
        double T = p.temperature > 0.0
                       ? p.temperature
                       : std::max(kMinTemperature, p.temperature_scale * median(L.med.data(), L.med.size()));
        double lo = kInf;
        for (int64_t j = 0; j < K; ++j) lo = std::min(lo, L.da2[j]);
        for (int64_t j = 0; j < K; ++j) L.ex[j] = L.nA[j] ? std::exp(-(L.da2[j] - lo) / T) : 0.0;
        // With a uniform model every missing slot has the same carriers, so the same sum,
        // minimum and weights: the first slot's are kept for the others (same bits).
        const float* w_first = nullptr;
        double wsum_first = 0.0, lo_first = kInf;
        float conf_first = 0.f;
        for_bits(miss, [&](int m) {
          // w_j = exp(-(D_A^2 - min_J D_A^2) / T) / sum: the shift by the row's global minimum
          // instead of J's cancels in the normalisation, unless every carrier underflows.
          double wsum = 0.0, lo_m = kInf;
          if (w_first) {
            wsum = wsum_first;
            lo_m = lo_first;
          } else {
            for (int64_t j = 0; j < K; ++j)
              if ((C.hmask[j] >> m & 1) && L.nA[j]) {
                wsum += L.ex[j];
                lo_m = std::min(lo_m, L.da2[j]);
              }
          }
          if (lo_m == kInf) {
            J.mark_unfilled(i, m);
            return;
          }
          const double* ex = L.ex.data();
          if (!(wsum > kWeightUnderflow)) {  // rare: recompute shifted by J's own minimum
            for (int64_t j = 0; j < K; ++j) L.ex2[j] = L.nA[j] ? std::exp(-(L.da2[j] - lo_m) / T) : 0.0;
            ex = L.ex2.data();
            wsum = 0.0;
            for (int64_t j = 0; j < K; ++j)
              if ((C.hmask[j] >> m & 1) && L.nA[j]) wsum += ex[j];
          }
          imputed[i * M + m] = 1;
          if (confidence && w_first) {
            confidence[i * M + m] = conf_first;
          } else if (confidence) {  // 1 - entropy of the carriers' weights / log(number of carriers)
            double h = 0.0;
            int n_c = 0;
            for (int64_t j = 0; j < K; ++j)
              if ((C.hmask[j] >> m & 1) && L.nA[j]) {
                ++n_c;
                const double pj = ex[j] / wsum;
                if (pj > 0.0) h -= pj * std::log(pj);
              }
            confidence[i * M + m] =
                n_c > 1 ? static_cast<float>(std::clamp(1.0 - h / std::log(static_cast<double>(n_c)), 0.0, 1.0)) : 1.f;
          }
          // The weights are queued; the weighted sums of the chunk's rows of m run as one GEMM.
          L.srows[m].push_back(i);
          float* w = L.sw[m].data() + (L.srows[m].size() - 1) * K;
          if (w_first) {
            std::memcpy(w, w_first, K * sizeof(float));
            return;
          }
          const double cut = kSoftSkip * wsum;
          for (int64_t j = 0; j < K; ++j)
            w[j] = (C.hmask[j] >> m & 1) && L.nA[j] && ex[j] >= cut ? static_cast<float>(ex[j] / wsum) : 0.f;
          if (uniform && ex == L.ex.data()) {
            w_first = w;
            wsum_first = wsum;
            lo_first = lo_m;
            if (confidence) conf_first = confidence[i * M + m];
          }
        });
      },
      [&](SoftScratch& L, int64_t) { soft_fill(J, kern, packed, L); });
}

}  // namespace

void complete(const Dataset& ds, const Model& model, const CompletionParams& p,
              const std::vector<MutableMatrixView>& out, uint8_t* imputed, uint8_t* unfilled,
              const RunContext& ctx, float* confidence) {
  const int M = ds.M();
  if (static_cast<int>(out.size()) != M) throw std::invalid_argument("one output per modality is needed");
  check_against(ds, model, &out);
  if (!model.has_completion_tables()) throw std::logic_error("model built without completion tables");
  const Normalizer& norm = model.norm();
  const Job J{ds,
              model,
              out,
              imputed,
              unfilled,
              confidence,
              M,
              model.K(),
              ds.n,
              norm,
              tables_of(model),
              M == 64 ? ~uint64_t{0} : ((uint64_t{1} << M) - 1),
              chunk_rows_for(ctx, ds.n),
              max_dp(norm)};
  if (p.mode == CompletionParams::Mode::Soft)
    complete_soft(J, p, ctx);
  else
    complete_greedy(J, ctx);
}

}  // namespace ul4m4
