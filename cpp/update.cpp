// docs/algorithm.md section 4, update: the float64 sums of a Lloyd pass (accumulated per
// fixed row block during the assignment), folded in block order, become the new centres
// (and their presence); plus the centre shift of an iteration. cuda/update.cu mirrors it.
#include "update.hpp"

#include "distance.hpp"

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
void accumulate_chunk(const Dataset& ds, Accumulator& acc, int64_t b, int64_t r0, int64_t r1,
                             const int32_t* lab, SumScratch& s) {
  const int M = acc.M;
  const int64_t K = acc.K, n = r1 - r0;
  const KernelTable& kern = kernels();
  s.local.resize(acc.D);
  s.order.resize(n);
  s.start.assign(K + 1, 0);
  for (int64_t t = 0; t < n; ++t)
    if (lab[t] >= 0) ++s.start[lab[t] + 1];
  for (int64_t j = 0; j < K; ++j) s.start[j + 1] += s.start[j];
  std::vector<int64_t> cursor(s.start.begin(), s.start.end() - 1);
  for (int64_t t = 0; t < n; ++t)
    if (lab[t] >= 0) s.order[cursor[lab[t]]++] = t;
  // dst[0, d_m) += row i of modality m, in float64.
  auto add_row = [&](int64_t i, int m, double* dst) {
    const MatrixView& v = ds.X[m];
    if (v.dtype == DType::F32)
      kern.accum_f32(static_cast<const float*>(v.data) + i * v.row_stride, v.cols, dst);
    else
      kern.accum_f64(static_cast<const double*>(v.data) + i * v.row_stride, v.cols, dst);
  };
  int64_t cnt[kMaxModalities];
  for (int64_t j = 0; j < K; ++j) {
    if (s.start[j] == s.start[j + 1]) continue;
    double* sums = acc.sums.data() + (b * K + j) * acc.D;
    if (acc.sizes[b * K + j] == 0) std::fill(sums, sums + acc.D, 0.0);
    if (s.start[j + 1] - s.start[j] == 1) {
      // One row of j in the chunk (about a third of the rows at K = chunk size): added to the
      // block's sums directly. Through the local sum it would add 0 + x = x, exactly, and a
      // block sum is never -0 (it starts at +0), so the bits are the same.
      const int64_t i = r0 + s.order[s.start[j]];
      for_bits(row_mask(ds, i), [&](int m) {
        add_row(i, m, sums + acc.off[m]);
        ++acc.counts[(b * K + j) * M + m];
      });
      ++acc.sizes[b * K + j];
      continue;
    }
    uint64_t used = 0;
    for (int m = 0; m < M; ++m) cnt[m] = 0;
    for (int64_t q = s.start[j]; q < s.start[j + 1]; ++q) {
      const int64_t i = r0 + s.order[q];
      for_bits(row_mask(ds, i), [&](int m) {
        double* loc = s.local.data() + acc.off[m];
        if (!(used >> m & 1)) {
          std::fill(loc, loc + (acc.off[m + 1] - acc.off[m]), 0.0);
          used |= uint64_t{1} << m;
        }
        add_row(i, m, loc);
        ++cnt[m];
      });
    }
    acc.sizes[b * K + j] += s.start[j + 1] - s.start[j];
    for_bits(used, [&](int m) {
      kern.accum_f64(s.local.data() + acc.off[m], acc.off[m + 1] - acc.off[m], sums + acc.off[m]);
      acc.counts[(b * K + j) * M + m] += cnt[m];
    });
  }
}

namespace {

// docs/algorithm.md section 4, update: mean of members' z having m; a modality no member has becomes absent;
// a cluster with no member keeps its centre. `sum_of(j)` gives centre j's D sums (float64,
// raw space), `count(j, m)` and `size(j)` its counts.
template <class SumOf, class Count, class Size>
Centres update_from(const Centres& old, const Normalizer& norm, const std::vector<int64_t>& off,
                    SumOf&& sum_of, Count&& count, Size&& size) {
  const int M = norm.M();
  Centres c = old;
  for (int64_t j = 0; j < c.K; ++j) {
    if (size(j) == 0) continue;
    const double* s = sum_of(j);
    for (int m = 0; m < M; ++m) {
      const int64_t cnt = count(j, m);
      const int64_t d = norm.d[m];
      double* z = c.z[m].data() + j * d;
      c.H[j * M + m] = cnt > 0;
      for (int64_t k = 0; k < d; ++k)
        z[k] = cnt > 0 ? (s[off[m] + k] / static_cast<double>(cnt) - norm.mu[m][k]) / norm.sigma[m][k] : 0.0;
    }
  }
  return c;
}

}  // namespace

void fold_blocks(Accumulator& acc, const RunContext& ctx) {
  const int M = acc.M;
  const int64_t K = acc.K, D = acc.D;
  parallel_tasks(K, ctx, [&](int64_t j, int) {
    double* dst = acc.sums.data() + j * D;
    bool valid = acc.sizes[j] > 0;  // block 0's row is zeroed only when touched
    for (int64_t b = 1; b < acc.n_blocks; ++b) {
      const int64_t n = acc.sizes[b * K + j];
      if (n == 0) continue;
      const double* src = acc.sums.data() + (b * K + j) * D;
      if (valid) {
        for (int64_t k = 0; k < D; ++k) dst[k] += src[k];
      } else {
        std::copy(src, src + D, dst);
        valid = true;
      }
      acc.sizes[j] += n;
      for (int m = 0; m < M; ++m) acc.counts[j * M + m] += acc.counts[(b * K + j) * M + m];
    }
  });
}

Centres update_centres(Accumulator& acc, const Centres& old, const Normalizer& norm, const RunContext& ctx) {
  fold_blocks(acc, ctx);
  const int M = acc.M;
  const int64_t D = acc.D;
  return update_from(
      old, norm, acc.off, [&](int64_t j) { return acc.sums.data() + j * D; },
      [&](int64_t j, int m) { return acc.counts[j * M + m]; }, [&](int64_t j) { return acc.sizes[j]; });
}

// Partial distance (not squared) between centre j of a and centre j of b.
static double centre_shift(const Centres& a, const Centres& b, int64_t j, const std::vector<int64_t>& d) {
  const int M = static_cast<int>(d.size());
  double num = 0.0;
  int cnt = 0;
  for (int m = 0; m < M; ++m) {
    if (!a.has(j, m) || !b.has(j, m)) continue;
    num += mean_sq_diff(a.z[m].data() + j * d[m], b.z[m].data() + j * d[m], d[m]);
    ++cnt;
  }
  return cnt ? std::sqrt(num / cnt) : kInf;
}

double max_centre_shift(const Centres& old, const Centres& neu, const std::vector<int64_t>& d) {
  double shift = 0.0;
  for (int64_t j = 0; j < neu.K; ++j) shift = std::max(shift, centre_shift(old, neu, j, d));
  return shift;
}

}  // namespace detail

Centres centres_from_sums(const UpdateSums& u, const Centres& old, const Normalizer& norm) {
  const int M = norm.M();
  std::vector<int64_t> off(M + 1, 0);
  for (int m = 0; m < M; ++m) off[m + 1] = off[m] + norm.d[m];
  if (u.K != old.K || u.D != off[M]) throw std::invalid_argument("update sums do not match the centres");
  return update_from(
      old, norm, off, [&](int64_t j) { return u.sums.data() + j * u.D; },
      [&](int64_t j, int m) { return u.counts[j * M + m]; }, [&](int64_t j) { return u.sizes[j]; });
}

}  // namespace ul4m4
