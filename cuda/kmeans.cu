// The masked Lloyd loop on the device (mirrors cpp/kmeans.cpp), driven from the host with
// no copy of the data: per iteration only a few scalars (changed count, shift, inertia)
// come back. Restarts, the stopping rules and the best-run rule are the CPU engine's
// (docs/algorithm.md). The centre update is update.cu, k-means++ seed.cu.
#include <chrono>
#include <climits>
#include <optional>

#include "kmeans_parts.cuh"

namespace ul4m4::cuda {
using namespace detail;

namespace {

struct KMeansLayout {
  uint64_t* amask = nullptr;
  NormTables norm;
  CentreTables cent[2];
  int32_t* lab[2] = {nullptr, nullptr};
  double* min_d2 = nullptr;
  double* scal_d = nullptr;     // [0] inertia, [1] shift
  long long* scal_i = nullptr;  // [0] unassigned, [1] changed
  ChunkBuffers chunk;
  AssignReduce red;
  KMeansLayout(Arena& a, int64_t n, const Geometry& g, size_t budget) {
    amask = a.take<uint64_t>(n);
    carve(a, g, norm);
    carve(a, g, cent[0]);
    carve(a, g, cent[1]);
    lab[0] = a.take<int32_t>(n);
    lab[1] = a.take<int32_t>(n);
    min_d2 = a.take<double>(n);
    scal_d = a.take<double>(2);
    scal_i = a.take<long long>(2);
    carve(a, g, chunk_rows_for(n, g, budget, 0), chunk);
    carve(a, n, red);
  }
};

size_t kmeans_layout(Arena& a, int64_t n, const Geometry& g, size_t budget, bool seeding) {
  KMeansLayout lay(a, n, g, budget);
  UpdateLayout u(a, n, g);
  if (seeding) SeedLayout sl(a, n, g);
  return a.used();
}

}  // namespace

size_t kmeans_workspace(int64_t n, int64_t K, const std::vector<int64_t>& dims, size_t chunk_budget) {
  const Geometry g(K, dims);
  Arena a;
  return kmeans_layout(a, n, g, chunk_budget, true);
}

KMeansResult kmeans(const DeviceData& data, const double* mu, const double* sigma, const KMeansParams& p,
                    const double* init_C, const uint8_t* init_H, double* C_out, uint8_t* H_out,
                    int32_t* labels_out, const std::function<bool(const IterationStats&)>& on_iteration,
                    size_t chunk_budget, const Launch& L) {
  using clock = std::chrono::steady_clock;
  DeviceGuard guard(L.device);
  if (p.max_iter < 0) throw std::invalid_argument("max_iter must be >= 0");
  if (p.n_clusters < 1) throw std::invalid_argument("n_clusters must be at least 1");
  if (data.n >= (int64_t{1} << 31)) throw std::invalid_argument("the CUDA path takes fewer than 2^31 rows");
  const Geometry g(p.n_clusters, dims_of(data));
  const Desc desc = make_desc(data, g);
  const int64_t n = data.n, K = g.K;
  cudaStream_t s = L.stream;
  Arena a(L.ws.data, L.ws.bytes);
  KMeansLayout lay(a, n, g, chunk_budget);
  UpdateLayout upd(a, n, g);
  const bool seeding = init_C == nullptr;
  std::optional<SeedLayout> sl;
  if (seeding) sl.emplace(a, n, g);
  build_norm_tables(g, mu, sigma, lay.norm, s);
  row_masks(desc, lay.amask, s);

  const int runs = seeding ? std::max(1, p.n_init) : 1;
  KMeansResult best;
  bool have = false;
  for (int run = 0; run < runs; ++run) {
    int cur = 0;
    if (seeding) {
      const ModelView mv0 = view_of(g, lay.norm, lay.cent[0]);
      seed_into(desc, g, mv0, lay.amask, *sl, K, p.seed + kRestartSeedStride * static_cast<uint64_t>(run),
                lay.cent[0], L);
      centre_tables(g, lay.cent[0], s);
    } else {
      load_centres(g, init_C, init_H, lay.cent[0], s);
    }
    KMeansResult r;
    int32_t* labels = lay.lab[0];
    int32_t* next = lay.lab[1];
    assign_rows(desc, view_of(g, lay.norm, lay.cent[cur]), lay.amask, lay.chunk, labels, lay.min_d2, s);
    reduce_assignment(n, labels, nullptr, lay.min_d2, lay.red, lay.scal_d, lay.scal_i, s);
    double inertia = 0.0;
    long long ints[2] = {0, 0};
    UL4M4_CUDA_TRY(cudaMemcpyAsync(&inertia, lay.scal_d, sizeof(double), cudaMemcpyDeviceToHost, s));
    UL4M4_CUDA_TRY(cudaMemcpyAsync(ints, lay.scal_i, sizeof(ints), cudaMemcpyDeviceToHost, s));
    UL4M4_CUDA_TRY(cudaStreamSynchronize(s));
    r.inertia = inertia;
    r.n_unassigned = ints[0];
    while (r.n_iter < p.max_iter) {
      check_interrupt(L);
      const auto t0 = clock::now();
      const int nxt = 1 - cur;
      update_centres(desc, g, upd, labels, lay.amask, lay.norm, lay.cent[cur], lay.cent[nxt], s);
      ++r.n_iter;
      max_centre_shift(desc, K, lay.cent[cur], lay.cent[nxt], upd.shift, lay.scal_d + 1, s);
      assign_rows(desc, view_of(g, lay.norm, lay.cent[nxt]), lay.amask, lay.chunk, next, lay.min_d2, s);
      reduce_assignment(n, next, labels, lay.min_d2, lay.red, lay.scal_d, lay.scal_i, s);
      double sd[2] = {0.0, 0.0};
      UL4M4_CUDA_TRY(cudaMemcpyAsync(sd, lay.scal_d, sizeof(sd), cudaMemcpyDeviceToHost, s));
      UL4M4_CUDA_TRY(cudaMemcpyAsync(ints, lay.scal_i, sizeof(ints), cudaMemcpyDeviceToHost, s));
      UL4M4_CUDA_TRY(cudaStreamSynchronize(s));
      std::swap(labels, next);
      cur = nxt;
      IterationStats it;
      it.iteration = r.n_iter;
      it.inertia = sd[0];
      it.n_changed = ints[1];
      it.max_shift = sd[1];
      it.seconds = std::chrono::duration<double>(clock::now() - t0).count();
      r.history.push_back(it);
      r.inertia = sd[0];
      r.n_unassigned = ints[0];
      const bool go_on = !on_iteration || on_iteration(it);
      if (it.n_changed == 0 || it.max_shift <= p.tol) {
        r.converged = true;
        break;
      }
      if (!go_on) break;
    }
    if (!have || r.n_unassigned < best.n_unassigned ||
        (r.n_unassigned == best.n_unassigned && r.inertia < best.inertia)) {
      write_centres(desc, K, lay.cent[cur], C_out, H_out, s);
      if (labels_out && n > 0)
        UL4M4_CUDA_TRY(cudaMemcpyAsync(labels_out, labels, sizeof(int32_t) * n, cudaMemcpyDeviceToDevice, s));
      best = std::move(r);
      have = true;
    }
  }
  UL4M4_CUDA_TRY(cudaStreamSynchronize(s));
  return best;
}

}  // namespace ul4m4::cuda
