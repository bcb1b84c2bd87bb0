// Checks one SIMD kernel table against the scalar level on random inputs (tests/test_platform.py
// builds and runs it; for the NEON level it is cross-compiled and run under qemu-aarch64).
//
// Build: g++ -O3 -std=gnu++17 -Icpp/include -DCHECK_TABLE=kKernelsNEON [-DSCALAR_ORDER]
//        cpp/simd/kernels_scalar.cpp cpp/simd/kernels_<isa>.cpp tests/native/simd_check.cpp
// SCALAR_ORDER: the level promises the scalar level's summation order with fused
// multiply-adds (NEON), so dot_block and wsum_rows must match it bit for bit; without it
// they are compared within a relative tolerance. Whatever the level, the element-wise and
// order-free kernels must match exactly, dot_block must not depend on the tile shape, and
// wsum_block must equal one wsum_rows call per row, and the rounding of the dot products and
// sums of squares must stay within what sum_depth declares. Prints one line per kernel; exit
// status 1 on any mismatch.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "ul4m4/kernels.hpp"

using namespace ul4m4;

namespace {

int g_fail = 0;
std::mt19937_64 g_rng(12345);

void report(const char* what, bool ok, const char* detail = "") {
  std::printf("%-28s %s %s\n", what, ok ? "ok" : "MISMATCH", detail);
  if (!ok) ++g_fail;
}

std::vector<float> rand_f(size_t n, bool sparse = false) {
  std::normal_distribution<float> nd(0.f, 3.f);
  std::uniform_int_distribution<int> coin(0, 3);
  std::vector<float> v(n);
  for (auto& x : v) x = (sparse && coin(g_rng) == 0) ? 0.f : nd(g_rng);
  return v;
}

std::vector<double> rand_d(size_t n, double lo = -5, double hi = 5) {
  std::uniform_real_distribution<double> ud(lo, hi);
  std::vector<double> v(n);
  for (auto& x : v) x = ud(g_rng);
  return v;
}

template <class V>
bool same_bits(const V& a, const V& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(a[0])) == 0;
}

template <class V>
bool close(const V& a, const V& b, double rtol) {
  for (size_t i = 0; i < a.size(); ++i) {
    const double s = std::fabs(double(a[i])) + std::fabs(double(b[i])) + 1.0;
    if (std::fabs(double(a[i]) - double(b[i])) > rtol * s) return false;
  }
  return true;
}

bool close1(double a, double b, double rtol) { return std::fabs(a - b) <= rtol * (std::fabs(a) + std::fabs(b) + 1.0); }

}  // namespace

int main() {
  const KernelTable& S = kKernelsScalar;
  const KernelTable& L = CHECK_TABLE;
  std::printf("level %s against %s\n", L.name, S.name);
#if defined(SCALAR_ORDER)
  const bool scalar_order = true;
#else
  const bool scalar_order = false;
#endif
  bool ok_dot = true, ok_tile = true, ok_nz = true, ok_nss = true, ok_acc = true, ok_min = true,
       ok_ws = true, ok_wb = true, ok_copy = true;
  for (int trial = 0; trial < 56; ++trial) {
    // Trials 40+: blocks large enough for the packed outer-product path (several row tiles
    // and row blocks, partial panels of centres, several k blocks at every level).
    const bool big = trial >= 40;
    const int64_t d = 1 + static_cast<int64_t>(g_rng() % (big ? 1300 : 150));
    const int64_t dp = padded(d);
    const int64_t n = 1 + static_cast<int64_t>(g_rng() % (big ? 130 : 11));
    const int64_t K = 1 + static_cast<int64_t>(g_rng() % (big ? 90 : 13));

    // dot_block (A: n x dp, B: K x dp, both zero padded)
    std::vector<float> A = rand_f(n * dp), B = rand_f(K * dp);
    for (int64_t i = 0; i < n; ++i) std::fill(A.begin() + i * dp + d, A.begin() + (i + 1) * dp, 0.f);
    for (int64_t j = 0; j < K; ++j) std::fill(B.begin() + j * dp + d, B.begin() + (j + 1) * dp, 0.f);
    std::vector<float> os(n * K), ol(n * K), o1(n * K), os1(n * K);
    S.dot_block(A.data(), n, dp, B.data(), K, dp, dp, os.data(), K);
    L.dot_block(A.data(), n, dp, B.data(), K, dp, dp, ol.data(), K);
    if (scalar_order) {
      ok_dot = ok_dot && same_bits(os, ol);
    } else {  // two float32 sums of the same dp products: each within dp u sum |a b| of the exact one
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < K; ++j) {
          double mag = 0.0;
          for (int64_t k = 0; k < dp; ++k) mag += std::fabs(double(A[i * dp + k]) * B[j * dp + k]);
          ok_dot = ok_dot && std::fabs(double(os[i * K + j]) - ol[i * K + j]) <= 2.0 * dp * 0x1p-24 * mag;
        }
    }
    for (int64_t i = 0; i < n; ++i)  // one row, one centre at a time: the 1 x 1 tile
      for (int64_t j = 0; j < K; ++j) {
        L.dot_block(A.data() + i * dp, 1, dp, B.data() + j * dp, 1, dp, dp, &o1[i * K + j], 1);
        S.dot_block(A.data() + i * dp, 1, dp, B.data() + j * dp, 1, dp, dp, &os1[i * K + j], 1);
      }
    ok_tile = ok_tile && same_bits(ol, o1) && same_bits(os, os1);

    // normalize_f32 / normalize_f64
    std::vector<float> x = rand_f(d), mu = rand_f(d), is(d);
    for (auto& v : is) v = 0.1f + std::fabs(rand_f(1)[0]);
    std::vector<float> zs(dp, 7.f), zl(dp, 7.f);
    const double ss = S.normalize_f32(x.data(), d, mu.data(), is.data(), zs.data(), dp);
    const double sl = L.normalize_f32(x.data(), d, mu.data(), is.data(), zl.data(), dp);
    ok_nz = ok_nz && same_bits(zs, zl);
    ok_nss = ok_nss && close1(ss, sl, 1e-5);
    std::vector<double> xd = rand_d(d), mud = rand_d(d), isd = rand_d(d, 0.1, 3);
    std::fill(zs.begin(), zs.end(), 7.f);
    std::fill(zl.begin(), zl.end(), 7.f);
    const double ssd = S.normalize_f64(xd.data(), d, mud.data(), isd.data(), zs.data(), dp);
    const double sld = L.normalize_f64(xd.data(), d, mud.data(), isd.data(), zl.data(), dp);
    ok_nz = ok_nz && same_bits(zs, zl);
    ok_nss = ok_nss && close1(ssd, sld, 1e-12);

    // accum_f32 / accum_f64 (element-wise: exact)
    std::vector<double> as = rand_d(d), al = as;
    S.accum_f32(x.data(), d, as.data());
    L.accum_f32(x.data(), d, al.data());
    S.accum_f64(xd.data(), d, as.data());
    L.accum_f64(xd.data(), d, al.data());
    ok_acc = ok_acc && same_bits(as, al);

    // min_ratio (order-free: exact), with +inf entries as the callers pass them
    const int64_t KK = 1 + static_cast<int64_t>(g_rng() % 40);
    std::vector<double> E = rand_d(KK, 0, 4), F = rand_d(KK, 0, 4), rden = rand_d(KK, 0.1, 1);
    for (int64_t l = 0; l < KK; l += 3) E[l] = __builtin_inf();
    ok_min = ok_min && S.min_ratio(E.data(), F.data(), rden.data(), KK) == L.min_ratio(E.data(), F.data(), rden.data(), KK);
    // NaN terms (inf * 0) are never the minimum at any level, wherever they fall in the lanes.
    for (int64_t l = trial % 5; l < KK; l += 2 + trial % 3) {
      E[l] = __builtin_inf();
      rden[l] = 0.0;
    }
    ok_min = ok_min && S.min_ratio(E.data(), F.data(), rden.data(), KK) == L.min_ratio(E.data(), F.data(), rden.data(), KK);

    // wsum_rows (X: K x ldx, ldx >= dp)
    const int64_t ldx = dp + kPad * static_cast<int64_t>(g_rng() % 2);
    std::vector<float> X = rand_f(K * ldx), w0 = rand_f(K, true);
    std::vector<float> ys(dp), yl(dp);
    S.wsum_rows(w0.data(), K, X.data(), ldx, dp, ys.data());
    L.wsum_rows(w0.data(), K, X.data(), ldx, dp, yl.data());
    ok_ws = ok_ws && (scalar_order ? same_bits(ys, yl) : close(ys, yl, 1e-4));

    // wsum_block (W: n x K; Y: n x ldy) against wsum_rows row by row, at this level and the
    // scalar one: every tile height and the panel tails, with no zero weight (the path
    // over every centre) and with some centres zero in every row and some rows all zero.
    std::vector<float> Wd = rand_f(n * K), Ws = rand_f(n * K, true);
    for (int64_t j = g_rng() % 3; j < K; j += 3)
      for (int64_t i = 0; i < n; ++i) Ws[i * K + j] = 0.f;
    if (n > 2) std::fill(Ws.begin() + K, Ws.begin() + 2 * K, 0.f);
    const int64_t ldy = dp + kPad * static_cast<int64_t>(g_rng() % 2);
    for (const std::vector<float>* W : {&Wd, &Ws})
      for (const KernelTable* T : {&S, &L}) {
        std::vector<float> yb(n * ldy, 7.f), yr(n * ldy, 7.f), Xp(K * dp);
        T->wsum_pack(X.data(), K, ldx, dp, Xp.data());
        T->wsum_block(W->data(), n, K, Xp.data(), dp, yb.data(), ldy);
        for (int64_t i = 0; i < n; ++i)
          T->wsum_rows(W->data() + i * K, K, X.data(), ldx, dp, yr.data() + i * ldy);
        ok_wb = ok_wb && same_bits(yb, yr);
      }

    // copy_stream (+ store_fence)
    const size_t bytes = 1 + g_rng() % 3000;
    std::vector<char> src(bytes + 64), dst(bytes + 64, 0), want(bytes + 64, 0);
    for (auto& c : src) c = static_cast<char>(g_rng());
    const size_t off = g_rng() % 32;
    L.copy_stream(dst.data() + off, src.data(), bytes);
    L.store_fence();
    std::memcpy(want.data() + off, src.data(), bytes);
    ok_copy = ok_copy && same_bits(dst, want);
  }
  // sum_depth: the rounding of dot_block's pair sums and normalize_f32's ||z||^2 stays within
  // gamma_h sum |terms|, h = sum_depth(d, dp) (the bounded Lloyd margin rests on it), on
  // positive terms close to one another and on the worst case of patterns 5+, which comes
  // within 1% of the bound: a level whose chains are longer than its sum_depth says fails.
  double worst = 0.0;
  for (const KernelTable* T : {&S, &L})
    for (int64_t d : {1, 7, 16, 100, 333, 1024, 1500, 4096}) {
      const int64_t dp = padded(d);
      const double h = static_cast<double>(T->sum_depth(d, dp)), u = 0x1p-24;
      const double gamma = h * u / (1.0 - h * u);
      for (int pattern = 0; pattern < 11; ++pattern) {
        std::vector<float> a(dp, 0.f), b(dp, 0.f), z(dp), mu(d, 0.f), one(d, 1.f);
        for (int64_t k = 0; k < d; ++k) {
          if (pattern >= 5) {
            // The worst case: 1, 2, ..., 32 leading ones (one per lane and accumulator for
            // some count), then terms just under half an ulp of 1, each lost by its add:
            // the error of a chain of n adds is about (n - 1) u.
            a[k] = b[k] = k < (int64_t{1} << (pattern - 5)) ? 1.f : 0x1p-12f * (1.f - 0x1p-11f);
            continue;
          }
          a[k] = pattern == 4 ? 1.f + 0x1p-18f : 1.f + static_cast<float>((k * (pattern + 1)) % 7) * 0x1p-23f;
          b[k] = pattern == 3 ? 1.f + static_cast<float>(g_rng() % 64) * 0x1p-20f : 1.f;
        }
        long double exact = 0.0L, mag = 0.0L, sq = 0.0L;
        for (int64_t k = 0; k < d; ++k) {
          exact += static_cast<long double>(a[k]) * b[k];
          sq += static_cast<long double>(a[k]) * a[k];
        }
        mag = exact;  // every term is positive
        float got = 0.f;
        T->dot_block(a.data(), 1, dp, b.data(), 1, dp, dp, &got, 1);
        const double ss = T->normalize_f32(a.data(), d, mu.data(), one.data(), z.data(), dp);
        const double r1 = static_cast<double>(std::fabs(static_cast<long double>(got) - exact) / (gamma * mag));
        const double r2 = static_cast<double>(std::fabs(static_cast<long double>(ss) - sq) / (gamma * sq));
        worst = std::max(worst, std::max(r1, r2));
      }
    }
  char buf[64];
  std::snprintf(buf, sizeof buf, "(worst error / bound %.3f)", worst);
  report("sum_depth bounds rounding", worst <= 1.0, buf);
  report("dot_block", ok_dot, scalar_order ? "(bit-exact)" : "(within 2 dp u sum |a b|)");
  report("dot_block tile shape", ok_tile, "(bit-exact, this level and scalar)");
  report("normalize z", ok_nz, "(bit-exact)");
  report("normalize ||z||^2", ok_nss, "(rtol 1e-5 f32, 1e-12 f64)");
  report("accum_f32/f64", ok_acc, "(bit-exact)");
  report("min_ratio", ok_min, "(bit-exact)");
  report("wsum_rows", ok_ws, scalar_order ? "(bit-exact)" : "(rtol 1e-4)");
  report("wsum_block = wsum_rows per row", ok_wb, "(bit-exact)");
  report("copy_stream", ok_copy, "(bit-exact)");
  std::printf("%s\n", g_fail ? "FAILED" : "PASSED");
  return g_fail ? 1 : 0;
}
