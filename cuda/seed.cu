// k-means++ seeding on the partial distance on the device (mirrors cpp/kmeans.cpp's
// seeding): the host draws the random numbers with the CPU engine's generator and rules;
// the device keeps each row's distance to the nearest chosen centre and picks rows.
#include "kmeans_parts.cuh"
#include "ul4m4/rng.hpp"

namespace ul4m4::cuda {
namespace detail {

namespace {

// The CPU engine's generator (ul4m4/rng.hpp): the same draws for the same seed.
using ul4m4::detail::Rng;

__global__ void seed_init(int64_t n, uint8_t* chosen, double* mind2) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    chosen[i] = 0;
    mind2[i] = kInf;
  }
}

struct SeedRow {
  bool elig, free, inf;
  double w;
};

__device__ __forceinline__ SeedRow seed_row(int64_t i, int64_t n, const uint64_t* amask, const uint8_t* chosen,
                                            const double* mind2) {
  SeedRow r{false, false, false, 0.0};
  if (i >= n) return r;
  r.elig = amask[i] != 0;
  r.free = r.elig && !chosen[i];
  if (r.free) {
    const double v = mind2[i];
    r.inf = v == kInf;
    r.w = (!r.inf && v > 0.0) ? v : 0.0;
  }
  return r;
}

// Per tile (256 threads x 4 consecutive rows): the weight total (a fixed block scan of
// per-thread sequential sums), the counts and the last row with a positive weight.
__global__ void seed_tile_stats(int64_t n, const uint64_t* amask, const uint8_t* chosen, const double* mind2,
                                int64_t ntile, double* tile_w, long long* tile_c, long long* tile_last) {
  __shared__ double shd[33];
  __shared__ long long shi[33];
  for (int64_t tile = blockIdx.x; tile < ntile; tile += gridDim.x) {
    const int64_t i0 = tile * kSeedTile + threadIdx.x * 4;
    double w = 0.0;
    long long ce = 0, cf = 0, ci = 0, last = -1;
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      const SeedRow r = seed_row(i0 + q, n, amask, chosen, mind2);
      w += r.w;
      ce += r.elig;
      cf += r.free;
      ci += r.inf;
      if (r.w > 0.0) last = i0 + q;
    }
    double tot;
    block_exclusive_scan(w, shd, tot);
    ce = block_sum(ce, shi);
    cf = block_sum(cf, shi);
    ci = block_sum(ci, shi);
    const long long y = block_max_warp0(last, shi, -1LL);
    if (threadIdx.x == 0) {
      tile_w[tile] = tot;
      tile_c[3 * tile] = ce;
      tile_c[3 * tile + 1] = cf;
      tile_c[3 * tile + 2] = ci;
      tile_last[tile] = y;
    }
    __syncthreads();
  }
}

// One block: the exclusive prefix of the tile weights and the totals.
__global__ void seed_fold(int64_t ntile, const double* tile_w, const long long* tile_c, double* tile_pref,
                          double* scal_d, long long* scal_i) {
  __shared__ double shd[33];
  __shared__ long long shi[33];
  double carry = 0.0;
  long long ce = 0, cf = 0, ci = 0;
  for (int64_t base = 0; base < ntile; base += blockDim.x) {
    const int64_t t = base + threadIdx.x;
    const double v = t < ntile ? tile_w[t] : 0.0;
    double tot;
    const double ex = block_exclusive_scan(v, shd, tot);
    if (t < ntile) tile_pref[t] = carry + ex;
    carry += tot;
    ce += block_sum(t < ntile ? tile_c[3 * t] : 0ll, shi);
    cf += block_sum(t < ntile ? tile_c[3 * t + 1] : 0ll, shi);
    ci += block_sum(t < ntile ? tile_c[3 * t + 2] : 0ll, shi);
  }
  if (threadIdx.x == 0) {
    scal_d[0] = carry;
    scal_i[0] = ce;
    scal_i[1] = cf;
    scal_i[2] = ci;
  }
}

enum class PickMode : int { Eligible = 0, Free = 1, Inf = 2, Weighted = 3 };

__device__ __forceinline__ bool pick_flag(const SeedRow& r, PickMode mode) {
  return mode == PickMode::Eligible ? r.elig : mode == PickMode::Free ? r.free : r.inf;
}

// One block of 256 threads: the picked row (scal_i[3]). Rank modes: the r-th row (0-based,
// ascending) with the flag. Weighted: the first row with a positive weight whose cumulative
// weight exceeds target, else the last row with a positive weight (as the CPU).
__global__ void seed_pick(int64_t n, const uint64_t* amask, const uint8_t* chosen, const double* mind2,
                          int64_t ntile, const double* tile_w, const double* tile_pref, const long long* tile_c,
                          const long long* tile_last, PickMode mode, long long r, double target, long long* scal_i) {
  __shared__ long long shi[33];
  __shared__ double shd[33];
  __shared__ long long s_tile, s_local;
  // 1. The tile.
  if (threadIdx.x == 0) {
    s_tile = -1;
    s_local = 0;
  }
  __syncthreads();
  if (mode == PickMode::Weighted) {
    long long best = LLONG_MAX;
    for (int64_t t = threadIdx.x; t < ntile; t += blockDim.x)
      if (tile_w[t] > 0.0 && tile_pref[t] + tile_w[t] > target && t < best) best = t;
    best = warp_min(best);
    if (lane_id() == 0) shi[threadIdx.x >> 5] = best;
    __syncthreads();
    if (threadIdx.x < 32) {
      long long y = threadIdx.x < (blockDim.x >> 5) ? shi[threadIdx.x] : LLONG_MAX;
      y = warp_min(y);
      if (threadIdx.x == 0) s_tile = y == LLONG_MAX ? -1 : y;
    }
    __syncthreads();
  } else {
    const int col = mode == PickMode::Eligible ? 0 : mode == PickMode::Free ? 1 : 2;
    long long carry = 0;
    for (int64_t base = 0; base < ntile; base += blockDim.x) {
      const int64_t t = base + threadIdx.x;
      const long long c = t < ntile ? tile_c[3 * t + col] : 0;
      long long tot;
      const long long ex = block_exclusive_scan(c, shi, tot);
      if (t < ntile && carry + ex <= r && r < carry + ex + c) {
        s_tile = t;
        s_local = r - (carry + ex);
      }
      carry += tot;
    }
    __syncthreads();
  }
  const long long tile = s_tile;
  if (tile < 0) {  // weighted, no tile exceeds the target: the last positive weight overall
    long long last = -1;
    for (int64_t t = threadIdx.x; t < ntile; t += blockDim.x) last = tile_last[t] > last ? tile_last[t] : last;
    const long long y = block_max_warp0(last, shi, -1LL);
    if (threadIdx.x == 0) scal_i[3] = y;
    return;
  }
  // 2. The row inside the tile, with the same per-thread rows as seed_tile_stats.
  const int64_t i0 = tile * kSeedTile + threadIdx.x * 4;
  SeedRow rows[4];
#pragma unroll
  for (int q = 0; q < 4; ++q) rows[q] = seed_row(i0 + q, n, amask, chosen, mind2);
  long long found = LLONG_MAX;
  if (mode == PickMode::Weighted) {
    const double w = ((rows[0].w + rows[1].w) + rows[2].w) + rows[3].w;
    double tot;
    double c = block_exclusive_scan(w, shd, tot);
    const double pref = tile_pref[tile];
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      c += rows[q].w;
      if (found == LLONG_MAX && rows[q].w > 0.0 && pref + c > target) found = i0 + q;
    }
  } else {
    long long c = 0;
#pragma unroll
    for (int q = 0; q < 4; ++q) c += pick_flag(rows[q], mode) ? 1 : 0;
    long long tot;
    long long ex = block_exclusive_scan(c, shi, tot);
    const long long want = s_local;
#pragma unroll
    for (int q = 0; q < 4; ++q)
      if (pick_flag(rows[q], mode)) {
        if (ex == want) found = i0 + q;
        ++ex;
      }
  }
  found = warp_min(found);
  if (lane_id() == 0) shi[threadIdx.x >> 5] = found;
  __syncthreads();
  if (threadIdx.x < 32) {
    long long y = threadIdx.x < (blockDim.x >> 5) ? shi[threadIdx.x] : LLONG_MAX;
    y = warp_min(y);
    if (threadIdx.x == 0) scal_i[3] = y == LLONG_MAX ? tile_last[tile] : y;
  }
}

// Centre j from the picked row: z-space float64 (division, as the CPU), its presence, and
// the one-centre tables the distance pass needs.
__global__ void seed_take(Desc desc, ModelView mv, int64_t j, const long long* scal_i, CentreTables c, float* zf1,
                          uint64_t* hm1, uint8_t* chosen, double* mind2) {
  const int64_t i = scal_i[3];
  if (i < 0 || i >= desc.n) return;  // unreachable: the pick always finds a row
  for (int64_t p = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; p < desc.DP;
       p += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int m = 0;
    while (m + 1 < desc.M && desc.mod[m + 1].poff <= p) ++m;
    const ModDesc& md = desc.mod[m];
    const int64_t k = p - md.poff;
    const bool has = desc.present[i * desc.M + m] != 0;
    float v = 0.f;
    if (k < md.d) {
      const int64_t col = md.off + k;
      const double z = has ? (load_x(md, i, k) - mv.mu[col]) / mv.sigma[col] : 0.0;
      c.cz[j * desc.D + col] = z;
      v = static_cast<float>(z);
      if (k == 0) c.H[j * desc.M + m] = has ? 1 : 0;
    }
    zf1[p] = v;
  }
  if (blockIdx.x == 0 && threadIdx.x == 0) {
    uint64_t b = 0;
    for (int m = 0; m < desc.M; ++m) b |= static_cast<uint64_t>(desc.present[i * desc.M + m] != 0) << m;
    *hm1 = b;
    chosen[i] = 1;
    mind2[i] = 0.0;
  }
}

__global__ void seed_norms(Desc desc, const float* zf1, double* cn1) {
  const int m = blockIdx.x;
  if (m >= desc.M || threadIdx.x >= 32) return;
  const ModDesc& md = desc.mod[m];
  double s = 0.0;
  for (int64_t k = threadIdx.x; k < md.d; k += 32) {
    const double v = zf1[md.poff + k];
    s = __dadd_rn(s, __dmul_rn(v, v));
  }
  s = warp_sum(s);
  if (threadIdx.x == 0) cn1[m] = s;
}

// One warp per row: the distance to the new centre (the e-table formula with K = 1), kept
// when below the row's current minimum.
__global__ void seed_dist(Desc desc, ModelView mv, const uint64_t* amask, const uint8_t* chosen, const float* zf1,
                          const double* cn1, const uint64_t* hm1, double* mind2) {
  const int lane = lane_id();
  const uint64_t h = *hm1;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x >> 5);
  for (int64_t i = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) >> 5; i < desc.n; i += warps) {
    if (chosen[i]) continue;
    const uint64_t s = amask[i] & h;
    if (!s) continue;
    double num = 0.0;
    for_bits(s, [&](int m) {
      const ModDesc& md = desc.mod[m];
      float dot = 0.f;
      double zz = 0.0;
      for (int64_t k = lane; k < md.d; k += 32) {
        const float z = norm_z(md, mv, i, k);
        dot = __fmaf_rn(z, zf1[md.poff + k], dot);
        const double dz = z;
        zz = __dadd_rn(zz, __dmul_rn(dz, dz));
      }
      dot = warp_sum(dot);
      zz = warp_sum(zz);
      const double v = zz + cn1[m] - 2.0 * static_cast<double>(dot);
      num += static_cast<double>(static_cast<float>(v > 0.0 ? v * (1.0 / static_cast<double>(md.d)) : 0.0));
    });
    const double d2 = num / __popcll(s);
    if (lane == 0 && d2 < mind2[i]) mind2[i] = d2;
  }
}

}  // namespace

/// k-means++ into the centre tables `c` (cz and H; the caller builds the other tables).
void seed_into(const Desc& desc, const Geometry& g, const ModelView& mv, const uint64_t* amask, const SeedLayout& sl,
               int64_t K, uint64_t seed, const CentreTables& c, const Launch& L) {
  cudaStream_t s = L.stream;
  const int64_t n = desc.n;
  seed_init<<<grid_for(n, kThreads), kThreads, 0, s>>>(n, sl.chosen, sl.mind2);
  UL4M4_CUDA_CHECK_LAUNCH("seed_init");
  struct Host {
    double total;
    long long elig, free, inf;
  };
  auto stats = [&]() {
    seed_tile_stats<<<grid_for(sl.ntile, 1, 65535), 256, 0, s>>>(n, amask, sl.chosen, sl.mind2, sl.ntile, sl.tile_w,
                                                                  sl.tile_c, sl.tile_last);
    UL4M4_CUDA_CHECK_LAUNCH("seed_tile_stats");
    seed_fold<<<1, 1024, 0, s>>>(sl.ntile, sl.tile_w, sl.tile_c, sl.tile_pref, sl.scal_d, sl.scal_i);
    UL4M4_CUDA_CHECK_LAUNCH("seed_fold");
    double d = 0.0;
    long long v[3] = {0, 0, 0};
    UL4M4_CUDA_TRY(cudaMemcpyAsync(&d, sl.scal_d, sizeof(double), cudaMemcpyDeviceToHost, s));
    UL4M4_CUDA_TRY(cudaMemcpyAsync(v, sl.scal_i, sizeof(v), cudaMemcpyDeviceToHost, s));
    UL4M4_CUDA_TRY(cudaStreamSynchronize(s));
    return Host{d, v[0], v[1], v[2]};
  };
  auto pick = [&](PickMode mode, long long r, double target) {
    seed_pick<<<1, 256, 0, s>>>(n, amask, sl.chosen, sl.mind2, sl.ntile, sl.tile_w, sl.tile_pref, sl.tile_c,
                                sl.tile_last, mode, r, target, sl.scal_i);
    UL4M4_CUDA_CHECK_LAUNCH("seed_pick");
  };
  const Host h0 = stats();
  const int64_t E = h0.elig;
  if (K < 1) throw std::invalid_argument("n_clusters must be at least 1");
  if (K > E)
    throw std::invalid_argument("n_clusters=" + std::to_string(K) + " is larger than the " + std::to_string(E) +
                                " rows with at least one observed modality");
  Rng rng(seed);
  pick(PickMode::Eligible, rng.below(E), 0.0);
  for (int64_t j = 0; j < K; ++j) {
    if (j > 0) {
      check_interrupt(L);
      const Host h = stats();
      if (h.inf > 0) {  // [decided] rows sharing nothing with any chosen centre come first
        pick(PickMode::Inf, rng.below(h.inf), 0.0);
      } else if (h.total > 0.0) {
        pick(PickMode::Weighted, 0, rng.uniform() * h.total);
      } else {  // every weight is 0 (duplicates): uniform among eligible rows not chosen
        pick(PickMode::Free, rng.below(h.free), 0.0);
      }
    }
    seed_take<<<grid_for(g.DP, kThreads), kThreads, 0, s>>>(desc, mv, j, sl.scal_i, c, sl.zf1, sl.hm1, sl.chosen,
                                                            sl.mind2);
    UL4M4_CUDA_CHECK_LAUNCH("seed_take");
    if (j + 1 == K) break;
    seed_norms<<<g.M, 32, 0, s>>>(desc, sl.zf1, sl.cn1);
    UL4M4_CUDA_CHECK_LAUNCH("seed_norms");
    seed_dist<<<grid_for(n, kWarpsPerBlock), kThreads, 0, s>>>(desc, mv, amask, sl.chosen, sl.zf1, sl.cn1, sl.hm1,
                                                                sl.mind2);
    UL4M4_CUDA_CHECK_LAUNCH("seed_dist");
  }
}

}  // namespace detail

using namespace detail;

size_t seed_workspace(int64_t n, int64_t K, const std::vector<int64_t>& dims) {
  const Geometry g(K, dims);
  Arena a;
  a.take<uint64_t>(n);
  NormTables nt;
  carve(a, g, nt);
  SeedLayout sl(a, n, g);
  return a.used();
}

void seed_kmeanspp(const DeviceData& data, const double* mu, const double* sigma, int64_t K, uint64_t seed,
                   double* C_out, uint8_t* H_out, const Launch& L) {
  DeviceGuard guard(L.device);
  const Geometry g(std::max<int64_t>(K, 1), dims_of(data));
  const Desc desc = make_desc(data, g);
  Arena a(L.ws.data, L.ws.bytes);
  uint64_t* amask = a.take<uint64_t>(data.n);
  NormTables nt;
  carve(a, g, nt);
  SeedLayout sl(a, data.n, g);
  build_norm_tables(g, mu, sigma, nt, L.stream);
  row_masks(desc, amask, L.stream);
  CentreTables c;
  c.cz = C_out;
  c.H = H_out;
  const ModelView mv = view_of(g, nt, c);
  seed_into(desc, g, mv, amask, sl, K, seed, c, L);
}

}  // namespace ul4m4::cuda
