// docs/algorithm.md section 4, assignment: one pass over the rows, in chunks, optionally accumulating the
// float64 sums of the next centre update in the same pass (one read of the data per
// Lloyd iteration). Accumulators belong to fixed row blocks, reduced in block order.
#include "assign.hpp"

namespace ul4m4 {
using namespace detail;

namespace detail {

Accumulator::Accumulator(int64_t n, int64_t chunk, int64_t K, const std::vector<int64_t>& d)
    : K(K), M(static_cast<int>(d.size())) {
  off.assign(M + 1, 0);
  for (int m = 0; m < M; ++m) off[m + 1] = off[m] + d[m];
  D = off[M];
  // Block count: from the data's shape only (never the thread count): at most 32, at
  // least 4 chunks of rows per block, and at most ~64 MiB of float64 sums in all.
  const int64_t per_block = std::max<int64_t>(1, K * D * 8);
  const int64_t by_mem = std::max<int64_t>(1, (int64_t{64} << 20) / per_block);
  const int64_t by_rows = std::max<int64_t>(1, ceil_div(ceil_div(n, chunk), 4));  // = ceil(n / 4 chunk)
  n_blocks = std::max<int64_t>(1, std::min<int64_t>({32, by_mem, by_rows}));
  sums.assign(n_blocks * K * D, 0.0);
  counts.assign(n_blocks * K * M, 0);
  sizes.assign(n_blocks * K, 0);
}

void Accumulator::clear() {
  // sums are not cleared here: a (block, centre) row is zeroed when first touched.
  std::fill(counts.begin(), counts.end(), 0);
  std::fill(sizes.begin(), sizes.end(), 0);
}

// Adds the chunk's rows to block b's sums, one cluster at a time: the members of a cluster
// (in row order) are summed into a local float64 row that stays in cache, which is then
// added to the block's sums once, instead of one read-modify-write of the (K x D, out of
// cache) block sums per row. The order depends on the chunk and block partition only.
static void accumulate_chunk(const Dataset& ds, Accumulator& acc, int64_t b, int64_t r0, int64_t r1,
                             const int32_t* lab, Scratch& s) {
  const int M = acc.M;
  const int64_t K = acc.K, n = r1 - r0;
  const KernelTable& kern = kernels();
  s.acc_local.resize(acc.D);
  s.order.resize(n);
  s.start.assign(K + 1, 0);
  for (int64_t t = 0; t < n; ++t)
    if (lab[t] >= 0) ++s.start[lab[t] + 1];
  for (int64_t j = 0; j < K; ++j) s.start[j + 1] += s.start[j];
  std::vector<int64_t> cursor(s.start.begin(), s.start.end() - 1);
  for (int64_t t = 0; t < n; ++t)
    if (lab[t] >= 0) s.order[cursor[lab[t]]++] = t;
  int64_t cnt[kMaxModalities];
  for (int64_t j = 0; j < K; ++j) {
    if (s.start[j] == s.start[j + 1]) continue;
    uint64_t used = 0;
    for (int m = 0; m < M; ++m) cnt[m] = 0;
    for (int64_t q = s.start[j]; q < s.start[j + 1]; ++q) {
      const int64_t i = r0 + s.order[q];
      for_bits(row_mask(ds, i), [&](int m) {
        double* loc = s.acc_local.data() + acc.off[m];
        if (!(used >> m & 1)) {
          std::fill(loc, loc + (acc.off[m + 1] - acc.off[m]), 0.0);
          used |= uint64_t{1} << m;
        }
        const MatrixView& v = ds.X[m];
        if (v.dtype == DType::F32)
          kern.accum_f32(static_cast<const float*>(v.data) + i * v.row_stride, v.cols, loc);
        else
          kern.accum_f64(static_cast<const double*>(v.data) + i * v.row_stride, v.cols, loc);
        ++cnt[m];
      });
    }
    double* sums = acc.sums.data() + (b * K + j) * acc.D;
    if (acc.sizes[b * K + j] == 0) std::fill(sums, sums + acc.D, 0.0);
    acc.sizes[b * K + j] += s.start[j + 1] - s.start[j];
    for_bits(used, [&](int m) {
      kern.accum_f64(s.acc_local.data() + acc.off[m], acc.off[m + 1] - acc.off[m], sums + acc.off[m]);
      acc.counts[(b * K + j) * M + m] += cnt[m];
    });
  }
}

PassStats assign_pass(const Dataset& ds, const Model& model, int32_t* labels, double* min_d2,
                      const int32_t* prev_labels, Accumulator* acc, const RunContext& ctx) {
  const int M = ds.M();
  const int64_t K = model.K();
  const int64_t n = ds.n;
  check_against(ds, model, nullptr);
  const int64_t chunk = chunk_rows_for(ctx, n);
  const int64_t nb = acc ? acc->n_blocks : std::max<int64_t>(1, ceil_div(n, chunk));
  if (acc) acc->clear();
  const CentreTables C = tables_of(model);
  const Normalizer& norm = model.norm();
  std::vector<double> inertia(nb, 0.0);
  std::vector<int64_t> changed(nb, 0), unassigned(nb, 0);
  const int nt = threads_for(ctx, nb);
  std::vector<Scratch> scratch(nt);
  std::vector<int32_t> lab_local(nt * chunk);
  std::vector<double> d2_local(nt * chunk);

  parallel_tasks(nb, ctx, [&](int64_t b, int tid) {
    Scratch& s = scratch[tid];
    if (s.z.empty()) {
      s.reserve(chunk, max_dp(norm), K, M);
      s.vals.resize(K);
    }
    int32_t* lab = lab_local.data() + tid * chunk;
    double* dd = d2_local.data() + tid * chunk;
    const int64_t b0 = part_begin(n, nb, b), b1 = part_begin(n, nb, b + 1);
    for (int64_t r0 = b0; r0 < b1; r0 += chunk) {
      const int64_t r1 = std::min(b1, r0 + chunk);
      e_table(ds, norm, C, r0, r1, nullptr, s);
      for (int64_t i = r0; i < r1; ++i) {
        const int64_t t = i - r0;
        const uint64_t a = row_mask(ds, i);
        const float* e = s.e.data() + t * K * M;
        double best = kInf;
        int32_t arg = -1;
        double* vals = s.vals.data();
        for (int64_t l = 0; l < K; ++l) {
          const double v = combine(e, l, M, a, C.hmask[l]);
          vals[l] = v;
          if (v < best) {
            best = v;
            arg = static_cast<int32_t>(l);
          }
        }
        if (arg >= 0) {
          // Near ties (within the float32 table's error) are settled by float64 direct
          // differences, so exact ties (e.g. a row equal to two partial centres) go to
          // the lowest j as the contract says.
          const double band = best + kTieBand * (1.0 + best);
          int close = 0;
          for (int64_t l = 0; l < K; ++l) close += vals[l] <= band;
          if (close > 1) {
            best = kInf;
            for (int64_t l = 0; l < K; ++l) {
              if (!(vals[l] <= band)) continue;
              const double v = exact_d2(ds, model, i, a, l);
              if (v < best) {
                best = v;
                arg = static_cast<int32_t>(l);
              }
            }
          }
        }
        lab[t] = arg;
        dd[t] = best;
        if (arg >= 0) inertia[b] += best; else ++unassigned[b];
        if (prev_labels && prev_labels[i] != arg) ++changed[b];
      }
      if (acc) accumulate_chunk(ds, *acc, b, r0, r1, lab, s);
      if (labels) std::copy(lab, lab + (r1 - r0), labels + r0);
      if (min_d2) std::copy(dd, dd + (r1 - r0), min_d2 + r0);
    }
  });
  PassStats st;
  for (int64_t b = 0; b < nb; ++b) {
    st.inertia += inertia[b];
    st.n_changed += changed[b];
    st.n_unassigned += unassigned[b];
  }
  return st;
}

}  // namespace detail

UpdateSums assign_and_sum(const Dataset& ds, const Model& model, int32_t* labels, double* min_d2,
                          const int32_t* prev_labels, const RunContext& ctx) {
  const int64_t chunk = chunk_rows_for(ctx, ds.n);
  Accumulator acc(ds.n, chunk, model.K(), model.norm().d);
  const PassStats st = assign_pass(ds, model, labels, min_d2, prev_labels, &acc, ctx);
  UpdateSums u;
  u.K = acc.K;
  u.D = acc.D;
  u.sums.assign(acc.K * acc.D, 0.0);
  u.counts.assign(acc.K * acc.M, 0);
  u.sizes.assign(acc.K, 0);
  for (int64_t b = 0; b < acc.n_blocks; ++b)
    for (int64_t j = 0; j < acc.K; ++j) {
      if (acc.sizes[b * acc.K + j] == 0) continue;
      u.sizes[j] += acc.sizes[b * acc.K + j];
      for (int m = 0; m < acc.M; ++m) u.counts[j * acc.M + m] += acc.counts[(b * acc.K + j) * acc.M + m];
      const double* src = acc.sums.data() + (b * acc.K + j) * acc.D;
      for (int64_t k = 0; k < acc.D; ++k) u.sums[j * acc.D + k] += src[k];
    }
  u.inertia = st.inertia;
  u.n_unassigned = st.n_unassigned;
  u.n_changed = st.n_changed;
  return u;
}

void assign(const Dataset& ds, const Model& model, int32_t* labels, double* min_d2,
            const RunContext& ctx) {
  assign_pass(ds, model, labels, min_d2, nullptr, nullptr, ctx);
}

}  // namespace ul4m4
