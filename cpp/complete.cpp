// Sections 5, 5b and 6: greedy (anchored pairs) and soft completion, written per chunk of
// rows. The row-to-centre table e comes from the same kernel as the assignment; the
// K x K x M table f comes from the model. No vector of width d is touched in the K x K loop.
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
    std::memcpy(static_cast<char*>(o.data) + es * i * o.row_stride,
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
    std::memcpy(static_cast<float*>(o.data) + i * o.row_stride, f32, 4 * static_cast<size_t>(o.cols));
  else
    std::memcpy(static_cast<double*>(o.data) + i * o.row_stride, f64, 8 * static_cast<size_t>(o.cols));
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

// Soft weights below this fraction of the largest are skipped: their total contribution
// (< K x 1e-9 relative) is far below the float32 output's precision.
constexpr double kSoftSkip = 1e-9;

}  // namespace

void complete(const Dataset& ds, const Model& model, const CompletionParams& p,
              const std::vector<MutableMatrixView>& out, uint8_t* imputed, uint8_t* unfilled,
              const RunContext& ctx) {
  const int M = ds.M();
  const int64_t K = model.K();
  const KernelTable& kern = kernels();
  const int64_t n = ds.n;
  const Normalizer& norm = model.norm();
  const std::vector<double>& f = model.f();
  const CentreTables C = tables_of(model);
  const uint64_t full = M == 64 ? ~uint64_t{0} : ((uint64_t{1} << M) - 1);
  const bool soft = p.mode == CompletionParams::Mode::Soft;
  if (static_cast<int>(out.size()) != M) throw std::invalid_argument("one output per modality is needed");
  if (!model.has_completion_tables()) throw std::logic_error("model built without completion tables");
  const int64_t chunk = std::max<int64_t>(1, ctx.chunk_rows);
  const int64_t n_chunks = (n + chunk - 1) / chunk;
  const int nt = threads_for(ctx, n_chunks);
  const int64_t dpm = max_dp(norm);

  struct Local {
    Scratch s;
    std::vector<uint8_t> select;
    std::vector<double> E, score, da2, med;
    std::vector<int> nA;
    std::vector<double> ex, ex2;  // soft: K unnormalised weights
    std::vector<float> zrow, wf;  // soft: dp_max output row, K float weights
    std::vector<int64_t> pending;  // greedy: rows to score
    std::vector<int64_t> carriers;       // greedy: centres carrying a missing modality
    std::vector<double> Ftab, Dtab;      // greedy: per carrier, K values (see below)
  };
  std::vector<Local> locals(nt);

  // Greedy scores (section 5, anchored pairs) for the pending rows of a chunk. For a row
  // with missing set Mi (observed A), candidate j and centre l:
  //   D^2(cand_j, c_l) = (E_l + F[j,l]) / (nA_l + c[j,l]),
  //   E_l = sum_{m in A & H_l} e[i,l,m],  nA_l = |A & H_l|,
  //   F[j,l] = sum_{m in Mi & H_j & H_l} f[j,l,m],  c[j,l] = |Mi & H_j & H_l|,
  // and a pair counts only when nA_l > 0 (F = +inf otherwise). F, nA and c depend on the
  // missing pattern only, so rows are grouped by pattern and the tables built once per
  // group; per row only E changes and score_j is one vectorised min over l.
  auto greedy_rows = [&](Local& L, int64_t r0) {
    auto& rows = L.pending;
    std::stable_sort(rows.begin(), rows.end(),
                     [&](int64_t x, int64_t y) { return row_mask(ds, x) < row_mask(ds, y); });
    size_t g0 = 0;
    while (g0 < rows.size()) {
      const uint64_t a = row_mask(ds, rows[g0]);
      size_t g1 = g0 + 1;
      while (g1 < rows.size() && row_mask(ds, rows[g1]) == a) ++g1;
      const uint64_t miss = full & ~a;
      L.carriers.clear();
      for (int64_t j = 0; j < K; ++j)
        if (miss & C.hmask[j]) L.carriers.push_back(j);
      for (size_t q = 0; q < L.carriers.size(); ++q) {
        const int64_t j = L.carriers[q];
        const uint64_t mj = miss & C.hmask[j];
        const double* fj = f.data() + j * K * M;
        double* F = L.Ftab.data() + q * K;
        double* Dn = L.Dtab.data() + q * K;
        for (int64_t l = 0; l < K; ++l) {
          const int na = popcount(a & C.hmask[l]);
          const uint64_t s = mj & C.hmask[l];
          double fs = 0.0;
          for_bits(s, [&](int m) { fs += fj[l * M + m]; });
          F[l] = na ? fs : kInf;
          Dn[l] = static_cast<double>(na + popcount(s));
        }
      }
      for (size_t g = g0; g < g1; ++g) {
        const int64_t i = rows[g];
        const float* e = L.s.e.data() + (i - r0) * K * M;
        for (int64_t l = 0; l < K; ++l) {
          double num = 0.0;
          for_bits(a & C.hmask[l], [&](int m) { num += static_cast<double>(e[l * M + m]); });
          L.E[l] = num;
        }
        for (size_t q = 0; q < L.carriers.size(); ++q)
          L.score[q] = kern.min_ratio(L.E.data(), L.Ftab.data() + q * K, L.Dtab.data() + q * K, K);
        for_bits(miss, [&](int m) {
          // Lowest score among carriers of m, ties to the lowest j; the row is anchored,
          // so every carrier's score is finite.
          int64_t win = -1;
          double best = kInf;
          for (size_t q = 0; q < L.carriers.size(); ++q)
            if ((C.hmask[L.carriers[q]] >> m & 1) && L.score[q] < best) {
              best = L.score[q];
              win = L.carriers[q];
            }
          if (win < 0) {  // no centre carries m
            fill_mean(out[m], norm, i, m);
            unfilled[i * M + m] = 1;
            return;
          }
          imputed[i * M + m] = 1;
          const int64_t d = norm.d[m];
          write_row(out[m], i, model.raw_f(m).data() + win * d, model.raw(m).data() + win * d);
        });
      }
      g0 = g1;
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
        L.carriers.reserve(K);
        L.Ftab.resize(K * K);
        L.Dtab.resize(K * K);
      }
      if (soft) {
        L.ex.resize(K);
        L.ex2.resize(K);
        L.zrow.resize(dpm);
        L.wf.resize(K);
      }
    }
    const int64_t r0 = ch * chunk, r1 = std::min(n, r0 + chunk);
    bool any = false;
    for (int64_t i = r0; i < r1; ++i) {
      const uint64_t a = row_mask(ds, i);
      L.select[i - r0] = a != 0 && a != full;
      any |= L.select[i - r0] != 0;
    }
    if (any) e_table(ds, norm, C, r0, r1, L.select.data(), L.s);
    L.pending.clear();

    for (int64_t i = r0; i < r1; ++i) {
      const int64_t t = i - r0;
      const uint64_t a = row_mask(ds, i);
      const uint64_t miss = full & ~a;
      for (int m = 0; m < M; ++m) {
        imputed[i * M + m] = 0;
        unfilled[i * M + m] = 0;
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
      if (!soft) {  // scored below, grouped by missing pattern
        L.pending.push_back(i);
        continue;
      }
      // Soft (section 5b): D_A over observed modalities only.
      L.med.clear();
      for (int64_t j = 0; j < K; ++j) {
        L.da2[j] = L.nA[j] ? L.E[j] / L.nA[j] : kInf;
        if (L.nA[j]) L.med.push_back(L.da2[j]);
      }
      double T = p.temperature > 0.0 ? p.temperature
                                     : std::max(1e-12, p.temperature_scale * median(L.med));
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
        if (!(wsum > 1e-250)) {  // rare: recompute shifted by J's own minimum
          for (int64_t j = 0; j < K; ++j) L.ex2[j] = L.nA[j] ? std::exp(-(L.da2[j] - lo_m) / T) : 0.0;
          ex = L.ex2.data();
          wsum = 0.0;
          for (int64_t j = 0; j < K; ++j)
            if ((C.hmask[j] >> m & 1) && L.nA[j]) wsum += ex[j];
        }
        imputed[i * M + m] = 1;
        const int64_t dp = norm.dp[m], d = norm.d[m];
        float* z = L.zrow.data();
        float* w = L.wf.data();
        const double cut = kSoftSkip * wsum;
        for (int64_t j = 0; j < K; ++j)
          w[j] = (C.hmask[j] >> m & 1) && L.nA[j] && ex[j] >= cut ? static_cast<float>(ex[j] / wsum) : 0.f;
        kern.wsum_rows(w, K, model.zf(m).data(), dp, dp, z);
        const double* sg = norm.sigma[m].data();
        const double* mu = norm.mu[m].data();
        if (out[m].dtype == DType::F32) {
          float* o = static_cast<float*>(out[m].data) + i * out[m].row_stride;
          const float* sgf = norm.sigma_f[m].data();
          const float* muf = norm.mu_f[m].data();
          for (int64_t k = 0; k < d; ++k) o[k] = z[k] * sgf[k] + muf[k];
        } else {
          double* o = static_cast<double*>(out[m].data) + i * out[m].row_stride;
          for (int64_t k = 0; k < d; ++k) o[k] = static_cast<double>(z[k]) * sg[k] + mu[k];
        }
      });
    }
    if (!soft) greedy_rows(L, r0);
  });
}

}  // namespace ul4m4
