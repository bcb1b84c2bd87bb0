// docs/algorithm.md section 4, assignment: one pass over the rows, in chunks, optionally accumulating the
// float64 sums of the next centre update in the same pass (one read of the data per
// Lloyd iteration). Accumulators belong to fixed row blocks, reduced in block order.
#include "assign.hpp"

namespace ul4m4 {
using namespace detail;

namespace detail {

// Lloyd's label of row i (presence a) from its row e of the float32 table: the argmin of
// the K combined distances (written to vals), ties to the lowest j; near ties (within the
// float32 table's error) are settled by float64 direct differences, so exact ties (e.g. a
// row equal to two partial centres) go to the lowest j as the contract says. best: the
// squared distance of the label (inf and -1 when no centre shares a modality).
static int32_t decide(const Dataset& ds, const Model& model, const CentreTables& C, int64_t i, uint64_t a,
                      const float* e, double* vals, double& best) {
  const int M = ds.M();
  const int64_t K = C.K;
  best = kInf;
  int32_t arg = -1;
  for (int64_t l = 0; l < K; ++l) {
    const double v = combine(e, l, M, a, C.hmask[l]);
    vals[l] = v;
    if (v < best) {
      best = v;
      arg = static_cast<int32_t>(l);
    }
  }
  if (arg < 0) return arg;
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
  return arg;
}

namespace {

// Per-thread scratch of a pass.
struct PassScratch {
  Scratch dist;
  SumScratch sums;
  std::vector<double> vals;  // K table distances of one row
  std::vector<int32_t> lab;  // labels of the chunk
  std::vector<uint8_t> sel;  // bounded pass: rows of the chunk whose table row is computed
};

// Per-block tallies of a pass, summed in block order.
struct BlockTally {
  double inertia = 0.0;
  int64_t changed = 0, unassigned = 0, evals = 0;
};

// The scaffolding of an assignment pass: rows in nb fixed blocks (one task each), each
// block in chunks of chunk_rows_for(ctx, n) rows. fn(s, tally, tid, r0, r1) labels the
// chunk's rows into s.lab (with s.dist sized for the chunk and K centres); the driver then
// adds them to acc's block sums (when given) and copies them to labels (when given).
// evals: when given, the sum of the blocks' evals.
template <class ChunkFn>
PassStats run_pass(const Dataset& ds, const Normalizer& norm, int64_t K, int64_t nb, Accumulator* acc,
                   int32_t* labels, const RunContext& ctx, ChunkFn&& fn, int64_t* evals = nullptr) {
  const int64_t n = ds.n;
  const int64_t chunk = chunk_rows_for(ctx, n);
  if (acc) acc->clear();
  std::vector<BlockTally> tally(nb);
  std::vector<PassScratch> scratch(threads_for(ctx, nb));
  parallel_tasks(nb, ctx, [&](int64_t b, int tid) {
    PassScratch& s = scratch[tid];
    if (s.dist.z.empty()) {
      s.dist.reserve(chunk, max_dp(norm), K, ds.M());
      s.vals.resize(K);
      s.lab.resize(chunk);
      s.sel.resize(chunk);
    }
    const int64_t b0 = part_begin(n, nb, b), b1 = part_begin(n, nb, b + 1);
    for (int64_t r0 = b0; r0 < b1; r0 += chunk) {
      const int64_t r1 = std::min(b1, r0 + chunk);
      fn(s, tally[b], tid, r0, r1);
      if (acc) accumulate_chunk(ds, *acc, b, r0, r1, s.lab.data(), s.sums);
      if (labels) std::copy(s.lab.data(), s.lab.data() + (r1 - r0), labels + r0);
    }
  });
  PassStats st;
  int64_t ev = 0;
  for (const BlockTally& t : tally) {
    st.inertia += t.inertia;
    st.n_changed += t.changed;
    st.n_unassigned += t.unassigned;
    ev += t.evals;
  }
  if (evals) *evals = ev;
  return st;
}

}  // namespace

PassStats assign_pass(const Dataset& ds, const Model& model, int32_t* labels, double* min_d2,
                      const int32_t* prev_labels, Accumulator* acc, const RunContext& ctx) {
  const int M = ds.M();
  const int64_t K = model.K();
  check_against(ds, model, nullptr);
  const int64_t nb = acc ? acc->n_blocks : std::max<int64_t>(1, ceil_div(ds.n, chunk_rows_for(ctx, ds.n)));
  const CentreTables C = tables_of(model);
  const Normalizer& norm = model.norm();
  return run_pass(ds, norm, K, nb, acc, labels, ctx, [&](PassScratch& s, BlockTally& tally, int, int64_t r0, int64_t r1) {
    e_table(ds, norm, C, r0, r1, nullptr, s.dist);
    for (int64_t i = r0; i < r1; ++i) {
      const int64_t t = i - r0;
      double best;
      const int32_t arg = decide(ds, model, C, i, row_mask(ds, i), s.dist.e.data() + t * K * M, s.vals.data(), best);
      s.lab[t] = arg;
      if (min_d2) min_d2[i] = best;
      if (arg >= 0) tally.inertia += best; else ++tally.unassigned;
      if (prev_labels && prev_labels[i] != arg) ++tally.changed;
    }
  });
}

// ---------------------------------------------------------------------------------------
// Bounded Lloyd (docs/bounded-lloyd.md has the full derivation).
//
// D_S(x, y) = sqrt(mean over m in S of ||x^m - y^m||^2 / d_m) is a weighted Euclidean norm
// of x - y restricted to the modalities S, so it obeys the triangle inequality for a fixed
// S. The partial distance of row i (presence a) to centre j (presence h_j) is D_S with
// S = a & h_j; when the update moves c_j to c_j' without changing a & h_j, S is the same
// before and after, so |D_S(z, c_j') - D_S(z, c_j)| <= D_S(c_j, c_j') =: shift_j(a). Bounds
// on the real-arithmetic distances D (float64 centres, the row normalised without
// rounding) therefore move by the shifts (Elkan's bounds): upper += shift of the label,
// lower_j -= shift_j. A centre whose presence changes on a row's modalities
// (S = a & h_j != S' = a & h_j') resets the bounds it touches: the upper bound of its rows
// (the distance to the own centre is recomputed), and lower_j, except when S' is empty
// (the distance is +inf) or S' only adds modalities to a non-empty S: then, the added terms
// being >= 0, D_S'(z, c')^2 >= |S|/|S'| D_S(z, c')^2, so
// lower_j' = sqrt(|S|/|S'|) max(0, lower_j - D_S(c_j, c_j')). A reset lower bound is 0 and
// the centre is then checked explicitly (below).
//
// Rows are grouped by presence set (up to kMaxGroups distinct sets), and shift_j(a) is
// exact for the group: sqrt(mean over S of f_m), f_m = ||c_j^m - c_j'^m||^2 / d_m. With
// more sets, one table for all rows uses sqrt(max over m in h_j of f_m) >= D_S(c_j, c_j')
// for every S within h_j, and any presence change of c_j resets every row's bounds on it.
//
// Labels are decided on the float32 table v_j (decide(): argmin, near ties within
// kTieBand re-scored in float64). Every table value satisfies |v_j - D_j^2| <= E_i (margin
// below), so when, for every j other than the label p,
//     lower_j^2 - E_i > (upper^2 + E_i) (1 + kTieBand) + kTieBand,
// every other v_j exceeds the tie band of v_p: decide() would return p with no
// re-scoring. Such a row is skipped (its label is kept, its data are still added to the
// update sums in the same order as Lloyd). Otherwise v_p itself is computed (exactly the
// table's value: same normalisation, dot product and sums), which tightens the test to
// lower_j^2 - E_i > band = v_p + kTieBand (1 + v_p); the few centres j still failing it
// (at most kExplicit) get v_j computed the same way and must satisfy v_j > band, decide()'s
// own comparison. Only rows that still fail get their whole table row, as Lloyd does.
//
// Margin E_i: v = mean over S of e_m, e_m = float(((||z_f||^2 + ||c_f||^2 - 2 fl(z_f.c_f)) / d_m),
// with z_f the float32 normalised row, c_f the float32 centre. With s = ||z_f|| + ||c_f||,
// u = 2^-24 and gamma = h u / (1 - h u), h the level's sum_depth (the most roundings one term
// goes through in the fixed summation trees of the dot product and of ||z_f||^2):
//   * expansion (dot product and the float32 norm of z): <= gamma s^2;
//   * rounding of the inputs: ||z_f - z|| <= u ||mu/sigma|| + 3.01 u ||z|| (x - mu_f, the
//     product with float(1/sigma), mu_f = float(mu)); ||c_f - c|| <= u ||c||; with
//     eta = both, | ||z_f - c_f||^2 - ||z - c||^2 | <= 2 s eta + eta^2;
//   * the final float cast: <= u s^2.
// So |e_m - true_m| <= ((gamma + 10 u) s^2 + 2.1 u ||mu/sigma|| s) / d_m; we take twice
// (gamma + 12 u) s^2 + 3 u ||mu/sigma|| s, over d_m, with ||c_f|| replaced by the largest
// centre norm of the modality, and E_i = the maximum over the row's modalities (v is a
// mean over S within a). The triangle-inequality side is in float64 (relative error
// ~1e-15 per step) and float32 lower bounds are rounded down; shifts are inflated by 1e-9
// relative and the tests have a 1e-9 relative slack.
namespace {

constexpr int64_t kMaxGroups = 64;

// A float <= x for x >= 0 (the float conversion is within 2^-24 relative; branch-free, so the
// loops over K centres vectorise): inf stays inf, 0 stays 0.
inline float round_down(double x) { return static_cast<float>(x) * (1.0f - 0x1p-22f); }

}  // namespace

Bounds::Bounds(const Dataset& ds, const Normalizer& norm, int64_t K, const RunContext& ctx)
    : n(ds.n), K(K), M(ds.M()) {
  upper.assign(n, kInf);
  lower.assign(n * K, 0.f);
  best.assign(n, std::numeric_limits<double>::quiet_NaN());
  znorm.assign(n * M, 0.0);
  group.assign(n, 0);
  rmu.assign(M, 0.0);
  for (int m = 0; m < M; ++m) {
    double r = 0.0;
    for (int64_t k = 0; k < norm.d[m]; ++k) {
      const double t = norm.mu[m][k] / norm.sigma[m][k];
      r += t * t;
    }
    rmu[m] = std::sqrt(r);
  }
  std::vector<uint64_t> masks;
  for (int64_t i = 0; i < n; ++i) {
    const uint64_t a = row_mask(ds, i);
    if (masks.size() <= static_cast<size_t>(kMaxGroups) &&
        std::find(masks.begin(), masks.end(), a) == masks.end())
      masks.push_back(a);
  }
  if (static_cast<int64_t>(masks.size()) <= kMaxGroups) {
    std::sort(masks.begin(), masks.end());
    gmask = masks;
    for (int64_t i = 0; i < n; ++i)
      group[i] = static_cast<int32_t>(std::lower_bound(gmask.begin(), gmask.end(), row_mask(ds, i)) - gmask.begin());
  }
  // ||z_i^m|| of every present slot (float32 normalised, as the table sees it).
  const int64_t chunk = std::max<int64_t>(1, ctx.chunk_rows);
  const int64_t dpm = max_dp(norm);
  parallel_tasks((n + chunk - 1) / chunk, ctx, [&](int64_t c, int) {
    std::vector<float> z(dpm);
    for (int64_t i = c * chunk; i < std::min(n, (c + 1) * chunk); ++i)
      for (int m = 0; m < M; ++m)
        if (ds.present[i * M + m]) znorm[i * M + m] = std::sqrt(normalize_row(ds, norm, m, i, z.data()));
  });
}

void Bounds::set_shifts(const Centres& old, const Centres& neu, const Normalizer& norm) {
  const int64_t G = gmask.empty() ? 1 : static_cast<int64_t>(gmask.size());
  std::vector<double> f(K * M, 0.0);
  std::vector<uint64_t> ho(K, 0), hn(K, 0);
  for (int64_t j = 0; j < K; ++j)
    for (int m = 0; m < M; ++m) {
      if (old.has(j, m)) ho[j] |= uint64_t{1} << m;
      if (neu.has(j, m)) hn[j] |= uint64_t{1} << m;
      if (!old.has(j, m) || !neu.has(j, m)) continue;
      const int64_t d = norm.d[m];
      f[j * M + m] = mean_sq_diff(old.z[m].data() + j * d, neu.z[m].data() + j * d, d);
    }
  constexpr double kInflate = 1.0 + 1e-9;
  shift.assign(G * K, 0.0);
  scale.assign(G * K, 1.0);
  auto mean_shift = [&](int64_t j, uint64_t s) {
    double num = 0.0;
    for_bits(s, [&](int m) { num += f[j * M + m]; });
    return std::sqrt(num / popcount(s)) * kInflate;
  };
  for (int64_t g = 0; g < G; ++g)
    for (int64_t j = 0; j < K; ++j) {
      double v = 0.0, sc = 1.0;
      if (gmask.empty()) {
        if (ho[j] != hn[j]) {
          sc = 0.0;
        } else {
          double mx = 0.0;
          for_bits(hn[j], [&](int m) { mx = std::max(mx, f[j * M + m]); });
          v = std::sqrt(mx) * kInflate;
        }
      } else {
        const uint64_t a = gmask[g], so = a & ho[j], sn = a & hn[j];
        if (so == sn) {
          if (sn) v = mean_shift(j, sn);  // else: shares nothing before and after (+inf stays)
        } else if (!sn) {
          sc = -1.0;  // shares nothing now: the distance is +inf
        } else if (so && !(so & ~sn)) {
          v = mean_shift(j, so);  // only gained modalities
          sc = std::sqrt(static_cast<double>(popcount(so)) / popcount(sn)) * (1.0 - 1e-12);
        } else {
          sc = 0.0;
        }
      }
      shift[g * K + j] = v;
      scale[g * K + j] = sc;
    }
  shifts_ready = true;
}

PassStats bounded_pass(const Dataset& ds, const Model& model, int32_t* labels, const int32_t* prev_labels,
                       Accumulator& acc, const RunContext& ctx, Bounds& b, double* skipped) {
  const int M = ds.M();
  const int64_t K = model.K();
  const int64_t n = ds.n;
  if (b.K != K || b.n != n) throw std::logic_error("bounds do not match the model");
  const CentreTables C = tables_of(model);
  const Normalizer& norm = model.norm();
  const bool use = b.valid && b.shifts_ready && prev_labels;
  const int64_t kExplicit = std::max<int64_t>(2, K / 8);
  // Margin coefficients of this pass's centres (see the derivation above).
  std::vector<double> mA(M), mB(M), cmax(M, 0.0);
  const double u = 0x1p-24;
  const KernelTable& kern = kernels();
  for (int m = 0; m < M; ++m) {
    const double d = static_cast<double>(norm.d[m]);
    const double h = static_cast<double>(kern.sum_depth(norm.d[m], norm.dp[m]));
    const double gamma = h * u / (1.0 - h * u);
    mA[m] = 2.0 * (gamma + 12.0 * u) / d;
    mB[m] = 2.0 * 3.0 * u * b.rmu[m] / d;
    for (int64_t j = 0; j < K; ++j)
      if (C.hmask[j] >> m & 1) cmax[m] = std::max(cmax[m], C.cnorm[m][j]);
    cmax[m] = std::sqrt(cmax[m]);
  }
  auto margin = [&](int64_t i, uint64_t a) {
    double E = 0.0;
    for_bits(a, [&](int m) {
      const double s = b.znorm[i * M + m] + cmax[m];
      E = std::max(E, (mA[m] * s + mB[m]) * s);
    });
    return E;
  };
  constexpr double kSlack = 1.0 + 1e-9;
  const int nt = threads_for(ctx, acc.n_blocks);
  std::vector<RowZ> rowz(nt, RowZ(norm));
  std::vector<std::vector<int64_t>> fail_local(nt, std::vector<int64_t>(K));
  std::vector<std::vector<double>> vx_local(nt, std::vector<double>(K));

  // Decides row i (previous label p >= 0) from its bounds; true when its label is proved.
  auto settle = [&](int64_t i, int32_t p, int tid, int64_t& ev) {
    const uint64_t a = row_mask(ds, i);
    const int64_t g = b.group[i];
    const double* sh = b.shift.data() + g * K;
    const double* sc = b.scale.data() + g * K;
    float* lb = b.lower.data() + i * K;
    const double E = margin(i, a);
    const double up = sc[p] == 1.0 ? b.upper[i] + sh[p] : kInf;
    b.upper[i] = up;
    b.best[i] = std::numeric_limits<double>::quiet_NaN();
    // v_p <= up^2 + E, so any v_j above thr_u is outside v_p's tie band.
    const double thr_u = ((up * up + E) * (1.0 + kTieBand) + kTieBand) * kSlack;
    int64_t* fail = fail_local[tid].data();
    int64_t n_fail = 0, n_low = 0;  // n_low: centres even v_p = 0 would not clear
    for (int64_t j = 0; j < K; ++j) {
      double v;
      if (sc[j] == 1.0) {
        v = static_cast<double>(lb[j]) - sh[j];
      } else if (sc[j] < 0.0) {
        v = kInf;
      } else if (sc[j] == 0.0) {
        v = 0.0;
      } else {
        v = (static_cast<double>(lb[j]) - sh[j]) * sc[j];  // lb finite: the old shared set was not empty
      }
      if (!(v > 0.0)) v = 0.0;
      const float l = round_down(v);
      lb[j] = l;
      if (j == p) continue;
      const double w = static_cast<double>(l) * l - E;
      if (w <= thr_u) fail[n_fail++] = j;
      n_low += w <= kTieBand * kSlack;
    }
    if (n_fail == 0) return true;
    if (n_low > kExplicit) return false;
    RowZ& rz = rowz[tid];
    rz.load(ds, i);
    double* vx = vx_local[tid].data();  // table values of the centres computed explicitly
    int64_t n_done = 0;
    auto explicit_d2 = [&](int64_t j) {
      const double v = rz.d2(norm, C, a, j);
      ++ev;
      lb[j] = round_down(std::sqrt(std::max(0.0, v - E)));
      return v;
    };
    if (n_fail <= kExplicit) {
      bool ok = true;
      for (int64_t q = 0; q < n_fail; ++q) {
        vx[q] = explicit_d2(fail[q]);
        ok = ok && vx[q] > thr_u;
      }
      if (ok) return true;
      n_done = n_fail;
    }
    // Tighten: the distance to the own centre, as the table computes it.
    const double vp = rz.d2(norm, C, a, p);
    ++ev;
    if (vp == kInf) return false;
    b.upper[i] = std::sqrt(vp + E);
    const double band = vp + kTieBand * (1.0 + vp);  // decide()'s band when v_p is the minimum
    for (int64_t q = 0; q < n_done; ++q)
      if (!(vx[q] > band)) return false;  // a computed centre is in the band: Lloyd's full rule decides
    // Centres not computed yet that the tightened bound does not clear.
    int64_t n_more = 0;
    for (int64_t j = 0; j < K; ++j) {
      if (j == p || static_cast<double>(lb[j]) * lb[j] - E > band * kSlack) continue;
      bool done = false;
      for (int64_t q = 0; q < n_done && !done; ++q) done = fail[q] == j;
      if (done) continue;
      if (n_done + n_more == kExplicit) return false;
      fail[n_done + n_more++] = j;
    }
    for (int64_t q = n_done; q < n_done + n_more; ++q)
      if (!(explicit_d2(fail[q]) > band)) return false;
    b.best[i] = vp;  // v_p is the unique minimum outside every other band: Lloyd's best
    return true;
  };

  int64_t ev = 0;
  const PassStats st = run_pass(ds, norm, K, acc.n_blocks, &acc, labels, ctx, [&](PassScratch& s, BlockTally& tally, int tid,
                                                                             int64_t r0, int64_t r1) {
    int32_t* lab = s.lab.data();
    uint8_t* sel = s.sel.data();
    int64_t n_sel = 0;
    for (int64_t i = r0; i < r1; ++i) {
      const int64_t t = i - r0;
      const int32_t p = use ? prev_labels[i] : -1;
      if (p >= 0 && settle(i, p, tid, tally.evals)) {
        sel[t] = 0;
        lab[t] = p;
      } else {
        sel[t] = 1;
        ++n_sel;
      }
    }
    if (n_sel > 0) e_table(ds, norm, C, r0, r1, sel, s.dist);
    for (int64_t i = r0; i < r1; ++i) {
      const int64_t t = i - r0;
      if (sel[t]) {
        const uint64_t a = row_mask(ds, i);
        double best;
        const int32_t arg = decide(ds, model, C, i, a, s.dist.e.data() + t * K * M, s.vals.data(), best);
        lab[t] = arg;
        if (a) tally.evals += K;
        const double E = margin(i, a);
        float* lb = b.lower.data() + i * K;
        for (int64_t l = 0; l < K; ++l) lb[l] = round_down(std::sqrt(std::max(0.0, s.vals[l] - E)));
        if (arg >= 0) {
          b.upper[i] = std::sqrt(s.vals[arg] + E);
          b.best[i] = best;
          tally.inertia += best;
        } else {
          b.upper[i] = kInf;
          b.best[i] = kInf;
          ++tally.unassigned;
        }
      }
      if (prev_labels && prev_labels[i] != lab[t]) ++tally.changed;
    }
  }, &ev);
  b.valid = true;
  b.shifts_ready = false;
  if (skipped) *skipped = n * K > 0 ? 1.0 - static_cast<double>(ev) / static_cast<double>(n * K) : 0.0;
  return st;
}

double bounded_inertia(const Dataset& ds, const Model& model, const int32_t* labels, int64_t n_blocks,
                       const RunContext& ctx, Bounds& b) {
  const int64_t n = ds.n;
  const CentreTables C = tables_of(model);
  const Normalizer& norm = model.norm();
  std::vector<double> inertia(n_blocks, 0.0);
  parallel_tasks(n_blocks, ctx, [&](int64_t bi, int) {
    RowZ rz(norm);
    for (int64_t i = part_begin(n, n_blocks, bi); i < part_begin(n, n_blocks, bi + 1); ++i) {
      if (labels[i] < 0) continue;
      if (std::isnan(b.best[i])) {
        rz.load(ds, i);
        b.best[i] = rz.d2(norm, C, row_mask(ds, i), labels[i]);
      }
      inertia[bi] += b.best[i];
    }
  });
  double total = 0.0;
  for (int64_t bi = 0; bi < n_blocks; ++bi) total += inertia[bi];
  return total;
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
  // Block 0 after the fold: the same sums as adding the blocks to zero in block order.
  fold_blocks(acc, ctx);
  u.sums.assign(acc.K * acc.D, 0.0);
  u.counts.assign(acc.counts.begin(), acc.counts.begin() + acc.K * acc.M);
  u.sizes.assign(acc.sizes.begin(), acc.sizes.begin() + acc.K);
  for (int64_t j = 0; j < acc.K; ++j)
    if (u.sizes[j] > 0) std::copy_n(acc.sums.data() + j * acc.D, acc.D, u.sums.data() + j * acc.D);
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
