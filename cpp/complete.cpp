// Sections 5, 5b and 6: greedy (anchored pairs) and soft completion, written per chunk of
// rows. The row-to-centre table e comes from the same kernel as the assignment; the
// K x K x M table f comes from the model. No vector of width d is touched in the K x K loop.
#include <tuple>
#include <utility>

#include "detail.hpp"

namespace ul4m4 {
using namespace detail;

namespace {

inline void store(const MutableMatrixView& o, int64_t i, int64_t k, double v) {
  if (o.dtype == DType::F32)
    static_cast<float*>(o.data)[i * o.row_stride + k] = static_cast<float>(v);
  else
    static_cast<double*>(o.data)[i * o.row_stride + k] = v;
}

void copy_row(const MatrixView& in, const MutableMatrixView& o, int64_t i) {
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

// Median as numpy's: mean of the two middle values for an even count.
double median(std::vector<double>& v) {
  const size_t n = v.size();
  std::nth_element(v.begin(), v.begin() + n / 2, v.end());
  const double hi = v[n / 2];
  if (n % 2) return hi;
  return 0.5 * (*std::max_element(v.begin(), v.begin() + n / 2) + hi);
}

}  // namespace

void complete(const Dataset& ds, const Model& model, const CompletionParams& p,
              const std::vector<MutableMatrixView>& out, uint8_t* imputed, uint8_t* unfilled,
              const RunContext& ctx, float* confidence) {
  const int M = ds.M();
  const int64_t K = model.K();
  const KernelTable& kern = kernels();
  const int64_t n = ds.n;
  const Normalizer& norm = model.norm();
  const bool soft = p.mode == CompletionParams::Mode::Soft;
  if (static_cast<int>(out.size()) != M) throw std::invalid_argument("one output per modality is needed");
  check_against(ds, model, &out);
  if (!model.has_completion_tables()) throw std::logic_error("model built without completion tables");
  // f only for greedy completion (built here on first use, before any thread starts).
  const double* f = soft ? nullptr : model.f().data();
  const CentreTables C = tables_of(model);
  const uint64_t full = M == 64 ? ~uint64_t{0} : ((uint64_t{1} << M) - 1);
  const int64_t chunk = chunk_rows_for(ctx, n);
  const int64_t n_chunks = ceil_div(n, chunk);
  const int nt = threads_for(ctx, n_chunks);
  const int64_t dpm = max_dp(norm);
  uint64_t any_h = 0;  // modalities carried by some centre
  for (int64_t l = 0; l < K; ++l) any_h |= C.hmask[l];

  // Greedy tables of one observed pattern A (see below); they depend on A only.
  struct Pattern {
    uint64_t a = 0;
    std::vector<int64_t> carriers;      // centres carrying a missing modality
    std::vector<double> F, D, R;        // per carrier, K values
    std::vector<double> rmin;           // per l, min over carriers of R[j,l]
  };
  // Patterns kept per thread across chunks: at most 64, and at most ~16 MiB of tables.
  const size_t pattern_bytes = static_cast<size_t>(3 * K * K + K) * sizeof(double);
  const size_t max_patterns = std::max<size_t>(1, std::min<size_t>(64, (size_t{16} << 20) / pattern_bytes));

  struct Local {
    Scratch s;
    std::vector<uint8_t> select;
    std::vector<double> E, score, da2, med;
    std::vector<int> nA;
    std::vector<double> ex, ex2;  // soft: K unnormalised weights
    std::vector<float> zrow;      // soft: two dp_max output rows
    std::vector<std::vector<int64_t>> srows;  // soft: per modality, rows queued for filling
    std::vector<std::vector<float>> sw;       // soft: per modality, their K weights each
    std::vector<int64_t> pending;  // greedy: rows to score
    std::vector<uint64_t> amask;   // greedy: presence bitmask of each row of the chunk
    std::vector<Pattern> patterns;  // greedy: tables of the missing patterns seen (a cache)
    size_t next_evict = 0;
    std::vector<double> exact;             // greedy: exact scores of a row with a near tie
    std::vector<double> bound;             // greedy: per carrier, an upper bound
    std::vector<int64_t> near;             // greedy: the l that can attain a winning score
  };
  std::vector<Local> locals(nt);

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
  auto exact_score = [&](const Local& L, const Pattern& P, size_t q) {
    const double* F = P.F.data() + q * K;
    const double* Dn = P.D.data() + q * K;
    double best = kInf;
    for (int64_t l = 0; l < K; ++l) {
      const double v = (L.E[l] + F[l]) / Dn[l];
      best = v < best ? v : best;
    }
    return best;
  };
  auto build_pattern = [&](Pattern& P, uint64_t a) {
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
  };
  auto pattern_of = [&](Local& L, uint64_t a) -> const Pattern& {
    for (const Pattern& P : L.patterns)
      if (P.a == a) return P;
    Pattern* P;
    if (L.patterns.size() < max_patterns) {
      P = &L.patterns.emplace_back();
    } else {
      P = &L.patterns[L.next_evict];
      L.next_evict = (L.next_evict + 1) % L.patterns.size();
    }
    build_pattern(*P, a);
    return *P;
  };
  auto greedy_rows = [&](Local& L, int64_t r0) {
    auto& rows = L.pending;
    const uint64_t* am = L.amask.data();
    std::stable_sort(rows.begin(), rows.end(), [&](int64_t x, int64_t y) { return am[x - r0] < am[y - r0]; });
    size_t g0 = 0;
    while (g0 < rows.size()) {
      const uint64_t a = am[rows[g0] - r0];
      size_t g1 = g0 + 1;
      while (g1 < rows.size() && am[rows[g1] - r0] == a) ++g1;
      const uint64_t miss = full & ~a;
      const Pattern& P = pattern_of(L, a);
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
              for (size_t q = 0; q < carriers.size(); ++q) L.exact[q] = exact_score(L, P, q);
              rescored = true;
            }
            std::tie(win, best) = pick(L.exact.data(), second);
          }
          if (win < 0) {  // no centre carries m
            fill_mean(out[m], norm, i, m);
            unfilled[i * M + m] = 1;
            return;
          }
          imputed[i * M + m] = 1;
          if (confidence)  // 1 - winner / runner-up score: 0 at a tie, 1 with no runner-up
            confidence[i * M + m] =
                second == kInf ? 1.f : second > 0.0 ? static_cast<float>(std::clamp(1.0 - best / second, 0.0, 1.0)) : 0.f;
          const int64_t d = norm.d[m];
          write_row(out[m], i, model.raw_f(m).data() + win * d, model.raw(m).data() + win * d);
        });
      }
      g0 = g1;
    }
  };

  // Soft: z = sum_j w_j c_j^m for the queued rows of each modality, then x = z sigma + mu.
  auto soft_write = [&](int64_t i, int m, const float* z) {
    const int64_t d = norm.d[m];
    if (out[m].dtype == DType::F32) {
      float* o = static_cast<float*>(out[m].data) + i * out[m].row_stride;
      const float* sgf = norm.sigma_f[m].data();
      const float* muf = norm.mu_f[m].data();
      for (int64_t k = 0; k < d; ++k) o[k] = z[k] * sgf[k] + muf[k];
    } else {
      double* o = static_cast<double*>(out[m].data) + i * out[m].row_stride;
      const double* sg = norm.sigma[m].data();
      const double* mu = norm.mu[m].data();
      for (int64_t k = 0; k < d; ++k) o[k] = static_cast<double>(z[k]) * sg[k] + mu[k];
    }
  };
  auto soft_fill = [&](Local& L) {
    for (int m = 0; m < M; ++m) {
      const std::vector<int64_t>& rows = L.srows[m];
      const int64_t dp = norm.dp[m];
      const float* X = model.zf(m).data();
      const float* W = L.sw[m].data();
      float* z0 = L.zrow.data();
      float* z1 = z0 + dpm;
      size_t q = 0;
      for (; q + 2 <= rows.size(); q += 2) {
        kern.wsum_rows2(W + q * K, W + (q + 1) * K, K, X, dp, dp, z0, z1);
        soft_write(rows[q], m, z0);
        soft_write(rows[q + 1], m, z1);
      }
      if (q < rows.size()) {
        kern.wsum_rows(W + q * K, K, X, dp, dp, z0);
        soft_write(rows[q], m, z0);
      }
      L.srows[m].clear();
    }
  };

  parallel_tasks(n_chunks, ctx, [&](int64_t ch, int tid) {
    Local& L = locals[tid];
    if (L.s.z.empty()) {
      L.s.reserve(chunk, dpm, K, M);
      L.select.resize(chunk);
      L.E.resize(K);
      L.score.resize(K);
      L.da2.resize(K);
      L.nA.resize(K);
      L.pending.reserve(chunk);
      if (!soft) {
        L.amask.resize(chunk);
        L.patterns.reserve(max_patterns);
        L.exact.resize(K);
        L.bound.resize(K);
        L.near.reserve(K);
      }
      if (soft) {
        L.ex.resize(K);
        L.ex2.resize(K);
        L.zrow.resize(2 * dpm);
        L.srows.resize(M);
        L.sw.resize(M);
        for (int m = 0; m < M; ++m) {
          L.srows[m].reserve(chunk);
          L.sw[m].resize(chunk * K);
        }
      }
    }
    const int64_t r0 = ch * chunk, r1 = std::min(n, r0 + chunk);
    bool any = false;
    for (int64_t i = r0; i < r1; ++i) {
      const uint64_t a = row_mask(ds, i);
      if (!soft) L.amask[i - r0] = a;
      L.select[i - r0] = a != 0 && a != full;
      any |= L.select[i - r0] != 0;
    }
    if (any) e_table(ds, norm, C, r0, r1, L.select.data(), L.s);
    L.pending.clear();
    if (soft)  // a chunk that threw (bad input) may have left rows queued on this thread
      for (auto& q : L.srows) q.clear();

    for (int64_t i = r0; i < r1; ++i) {
      const int64_t t = i - r0;
      const uint64_t a = row_mask(ds, i);
      const uint64_t miss = full & ~a;
      for (int m = 0; m < M; ++m) {
        imputed[i * M + m] = 0;
        unfilled[i * M + m] = 0;
        if (confidence) confidence[i * M + m] = (a >> m & 1) ? 1.f : 0.f;  // unfilled slots keep 0
        if (!(a >> m & 1)) continue;
        // Rows scored above were checked by e_table; complete rows are checked here.
        if (!L.select[t] && !row_finite(ds.X[m], i)) throw_nonfinite(i, m);
        copy_row(ds.X[m], out[m], i);
      }
      if (!miss) continue;
      // Fill every missing slot with the training mean first; overwritten when imputed.
      auto mark_unfilled = [&](int m) {
        unfilled[i * M + m] = 1;
        fill_mean(out[m], norm, i, m);
      };
      if (!a) {
        for_bits(miss, mark_unfilled);
        continue;
      }
      if (!soft) {  // scored below, grouped by missing pattern
        if (!(a & any_h)) {  // no centre shares a modality with the row
          for_bits(miss, mark_unfilled);
          continue;
        }
        L.pending.push_back(i);
        continue;
      }
      const float* e = L.s.e.data() + t * K * M;
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
        for_bits(miss, mark_unfilled);
        continue;
      }
      // Soft (docs/algorithm.md section 5b): D_A over observed modalities only.
      L.med.clear();
      for (int64_t j = 0; j < K; ++j) {
        L.da2[j] = L.nA[j] ? L.E[j] / L.nA[j] : kInf;
        if (L.nA[j]) L.med.push_back(L.da2[j]);
      }
      double T = p.temperature > 0.0 ? p.temperature
                                     : std::max(kMinTemperature, p.temperature_scale * median(L.med));
      double lo = kInf;
      for (int64_t j = 0; j < K; ++j) lo = std::min(lo, L.da2[j]);
      for (int64_t j = 0; j < K; ++j) L.ex[j] = L.nA[j] ? std::exp(-(L.da2[j] - lo) / T) : 0.0;
      for_bits(miss, [&](int m) {
        // w_j = exp(-(D_A^2 - min_J D_A^2) / T) / sum: the shift by the row's global minimum
        // instead of J's cancels in the normalisation, unless every carrier underflows.
        double wsum = 0.0, lo_m = kInf;
        for (int64_t j = 0; j < K; ++j)
          if ((C.hmask[j] >> m & 1) && L.nA[j]) {
            wsum += L.ex[j];
            lo_m = std::min(lo_m, L.da2[j]);
          }
        if (lo_m == kInf) {
          mark_unfilled(m);
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
        if (confidence) {  // 1 - entropy of the carriers' weights / log(number of carriers)
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
        // The weights are queued; the weighted sums run below, two rows at a time.
        L.srows[m].push_back(i);
        float* w = L.sw[m].data() + (L.srows[m].size() - 1) * K;
        const double cut = kSoftSkip * wsum;
        for (int64_t j = 0; j < K; ++j)
          w[j] = (C.hmask[j] >> m & 1) && L.nA[j] && ex[j] >= cut ? static_cast<float>(ex[j] / wsum) : 0.f;
      });
    }
    if (soft) soft_fill(L);
    if (!soft) greedy_rows(L, r0);
    kern.store_fence();  // the non-temporal row copies are visible before the task ends
  });
}

}  // namespace ul4m4
