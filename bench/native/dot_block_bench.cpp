// Times one level's dot_block on the assignment's block shape (a chunk of 256 rows x K
// centres x dp), best of 30 calls, single thread. bench/dot_block_ab.sh builds it twice
// (the level's default path, and UL4M4_DOT_PACKED_ALWAYS: the packed outer-product path)
// and runs the two alternately.
//
// Usage: dot_block_bench [dp] [K]      (default 1024 64)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "ul4m4/kernels.hpp"

using namespace ul4m4;

int main(int argc, char** argv) {
  const KernelTable& L = CHECK_TABLE;
  const int64_t n = 256, dp = argc > 1 ? std::atoi(argv[1]) : 1024, K = argc > 2 ? std::atoi(argv[2]) : 64;
  std::mt19937 g(1);
  std::normal_distribution<float> nd;
  std::vector<float> A(n * dp), B(K * dp), out(n * K);
  for (auto& x : A) x = nd(g);
  for (auto& x : B) x = nd(g);
  double best = 1e9;
  for (int rep = 0; rep < 30; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    L.dot_block(A.data(), n, dp, B.data(), K, dp, dp, out.data(), K);
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::printf("%s n=%ld K=%ld dp=%ld: %.1f us, %.1f GFLOP/s\n", L.name, long(n), long(K), long(dp), best * 1e6,
              2.0 * n * K * dp / best * 1e-9);
}
