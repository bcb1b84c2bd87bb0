// detail::select_kth and detail::median (cpp/detail.hpp) against std::sort on many sizes and
// orders: random, few distinct values, all equal, sorted, reversed, organ pipe, sawtooth,
// with zeros and infinities (soft completion's D_A^2 values are >= 0 and may be +inf only
// where it never passes them). Built by tests/test_select.py, once as the package builds it and
// once with UL4M4_SELECT_ROUNDS=1 so that the std::nth_element fallback runs too.
#include <cstdio>
#include <random>

#include "detail.hpp"

using ul4m4::detail::median;
using ul4m4::detail::select_kth;

static int failures = 0;

static void check(const std::vector<double>& in, const char* what) {
  const size_t n = in.size();
  std::vector<double> sorted = in;
  std::sort(sorted.begin(), sorted.end());
  for (size_t k = 0; k < n; ++k) {
    std::vector<double> v = in;
    const double got = select_kth(v.data(), n, k);
    bool ok = got == sorted[k] && v[k] == got;
    for (size_t j = 0; j < n && ok; ++j) ok = j < k ? v[j] <= got : v[j] >= got;
    std::vector<double> perm = v;
    std::sort(perm.begin(), perm.end());
    ok = ok && perm == sorted;
    if (!ok && failures++ < 10) std::printf("FAIL select %s n=%zu k=%zu: %g, want %g\n", what, n, k, got, sorted[k]);
  }
  std::vector<double> v = in;
  const double want = n % 2 ? sorted[n / 2] : 0.5 * (sorted[n / 2 - 1] + sorted[n / 2]);
  const double got = median(v.data(), n);
  if (!(got == want) && failures++ < 10) std::printf("FAIL median %s n=%zu: %.17g, want %.17g\n", what, n, got, want);
}

int main() {
  std::mt19937_64 rng(7);
  const double inf = std::numeric_limits<double>::infinity();
  for (size_t n = 1; n <= 300; n += n < 80 ? 1 : 37) {
    std::vector<double> v(n);
    for (int rep = 0; rep < 4; ++rep) {
      std::uniform_real_distribution<double> u(0.0, 10.0);
      for (auto& x : v) x = u(rng);
      check(v, "random");
      std::uniform_int_distribution<int> few(0, 2);
      for (auto& x : v) x = few(rng);
      check(v, "three values");
      for (auto& x : v) x = few(rng) == 0 ? 0.0 : few(rng) == 0 ? inf : u(rng);
      check(v, "zeros and inf");
    }
    for (auto& x : v) x = 1.5;
    check(v, "all equal");
    for (size_t j = 0; j < n; ++j) v[j] = static_cast<double>(j);
    check(v, "sorted");
    for (size_t j = 0; j < n; ++j) v[j] = static_cast<double>(n - j);
    check(v, "reversed");
    for (size_t j = 0; j < n; ++j) v[j] = static_cast<double>(std::min(j, n - j));
    check(v, "organ pipe");
    for (size_t j = 0; j < n; ++j) v[j] = static_cast<double>(j % 5);
    check(v, "sawtooth");
  }
  if (failures) {
    std::printf("%d failures\n", failures);
    return 1;
  }
  std::printf("PASSED\n");
  return 0;
}
