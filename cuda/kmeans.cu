// Sections 3 and 4 on the device: k-means++ seeding on the partial distance and the masked
// Lloyd loop (mirrors cpp/kmeans.cpp), driven from the host with no copy of the data: per
// iteration only a few scalars (changed count, shift, inertia) come back.
//
// The centre update has a fixed reduction order without float atomics:
//  1. rows are sorted by label with a stable counting sort (integer atomics for the
//     histograms are exact; the scatter is done by one warp per row tile in row order, so
//     members of a cluster stay in ascending row order),
//  2. each cluster's member list is cut into fixed sub-segments (from the cluster sizes
//     only); one block per (sub-segment, 32 features) sums raw x of the members having the
//     modality in float64 (8 row lanes in ascending order, folded in a fixed order),
//  3. the sub-segments of a cluster are folded in order, then the docs/algorithm.md section 4 rules apply:
//     a modality no member has becomes absent, a cluster with no member keeps its centre.
#include <chrono>
#include <climits>
#include <optional>

#include "common.cuh"
#include "ul4m4/rng.hpp"

namespace ul4m4::cuda {
using namespace detail;

namespace {

constexpr int kSortTile = 1024;  // rows per warp in the stable scatter
constexpr int kSeedTile = 1024;  // rows per block in the seeding reductions (256 x 4)

// ------------------------------------------------------------------ centre update

struct UpdateLayout {
  int64_t n_stiles = 0, sub_rows = 0, n_sub_bound = 0;
  int* hist = nullptr;           // n_stiles x K
  long long* seg = nullptr;      // K + 1: start of each cluster's members in `order`
  long long* sub = nullptr;      // K + 1: first sub-segment of each cluster
  int* order = nullptr;          // N: rows sorted by label (stable)
  int* counts = nullptr;         // K x M: members having m
  double* part = nullptr;        // n_sub_bound x D
  double* shift = nullptr;       // K
  UpdateLayout(Arena& a, int64_t n, const Geometry& g) {
    n_stiles = std::max<int64_t>(1, ceil_div(n, kSortTile));
    sub_rows = std::max<int64_t>(1024, ceil_div(n, 4096));
    n_sub_bound = ceil_div(n, sub_rows) + g.K;
    hist = a.take<int>(n_stiles * g.K);
    seg = a.take<long long>(g.K + 1);
    sub = a.take<long long>(g.K + 1);
    order = a.take<int>(n);
    counts = a.take<int>(g.K * g.M);
    part = a.take<double>(n_sub_bound * g.D);
    shift = a.take<double>(g.K);
  }
};

__global__ void sort_count(const int32_t* labels, int64_t n, int64_t K, int64_t n_stiles, int* hist) {
  for (int64_t tile = blockIdx.x; tile < n_stiles; tile += gridDim.x) {
    const int64_t r1 = tmin<int64_t>(n, (tile + 1) * kSortTile);
    for (int64_t i = tile * kSortTile + threadIdx.x; i < r1; i += blockDim.x) {
      const int32_t l = labels[i];
      if (l >= 0) atomicAdd(&hist[tile * K + l], 1);
    }
  }
}

// Per cluster: exclusive prefix of its tile histogram (in place) and its size.
__global__ void sort_offsets(int64_t K, int64_t n_stiles, int* hist, long long* size) {
  for (int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; j < K;
       j += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    long long run = 0;
    for (int64_t t = 0; t < n_stiles; ++t) {
      const int h = hist[t * K + j];
      hist[t * K + j] = static_cast<int>(run);
      run += h;
    }
    size[j] = run;
  }
}

// seg: exclusive scan of the sizes (seg[K] = labelled rows); sub: of ceil(size / sub_rows).
// `seg` holds the sizes on entry.
__global__ void sort_scan(int64_t K, int64_t sub_rows, long long* seg, long long* sub) {
  __shared__ long long sh[33];
  long long carry_s = 0, carry_b = 0;
  for (int64_t base = 0; base < K; base += blockDim.x) {
    const int64_t j = base + threadIdx.x;
    const long long sz = j < K ? seg[j] : 0;
    const long long nb = (sz + sub_rows - 1) / sub_rows;
    long long tot_s, tot_b;
    const long long es = block_exclusive_scan(sz, sh, tot_s);
    const long long eb = block_exclusive_scan(nb, sh, tot_b);
    if (j < K) {
      seg[j] = carry_s + es;
      sub[j] = carry_b + eb;
    }
    carry_s += tot_s;
    carry_b += tot_b;
  }
  if (threadIdx.x == 0) {
    seg[K] = carry_s;
    sub[K] = carry_b;
  }
}

// One warp per row tile, rows in ascending order: order[seg[l] + tile offset + rank] = i.
__global__ void sort_scatter(const int32_t* labels, int64_t n, int64_t K, int64_t n_stiles, int* hist,
                             const long long* seg, int* order) {
  const int lane = lane_id();
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x >> 5);
  for (int64_t tile = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) >> 5; tile < n_stiles;
       tile += warps) {
    const int64_t r1 = tmin<int64_t>(n, (tile + 1) * kSortTile);
    for (int64_t base = tile * kSortTile; base < r1; base += 32) {
      const int64_t i = base + lane;
      const int32_t l = i < r1 ? labels[i] : -1;
      const unsigned peers = __match_any_sync(kFull, l);
      const int rank = __popc(peers & ((1u << lane) - 1u));
      const int leader = __ffs(peers) - 1;
      int cur = 0;
      if (l >= 0) {
        cur = hist[tile * K + l];
        order[seg[l] + cur + rank] = static_cast<int>(i);
      }
      __syncwarp();
      if (l >= 0 && lane == leader) hist[tile * K + l] = cur + __popc(peers);
      __syncwarp();
    }
  }
}

__global__ void member_counts(const int32_t* labels, const uint64_t* amask, int64_t n, int M, int* counts) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int32_t l = labels[i];
    if (l < 0) continue;
    for_bits(amask[i], [&](int m) { atomicAdd(&counts[static_cast<int64_t>(l) * M + m], 1); });
  }
}

__device__ __forceinline__ int64_t cluster_of_sub(const long long* sub, int64_t K, long long s) {
  int64_t lo = 0, hi = K - 1;  // largest j with sub[j] <= s
  while (lo < hi) {
    const int64_t mid = (lo + hi + 1) >> 1;
    if (sub[mid] <= s) lo = mid; else hi = mid - 1;
  }
  return lo;
}

// One block per (sub-segment, column tile): float64 sums of raw x over the members of the
// sub-segment having the modality; rows in ascending order per row lane, fixed fold.
__global__ void segment_sums(Desc desc, int64_t K, int64_t sub_rows, int64_t n_sub_bound, const long long* seg,
                             const long long* sub, const int* order, double* part) {
  __shared__ double s[8][33];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const long long n_sub = sub[K];
  for (int64_t b = blockIdx.x; b < n_sub_bound && b < n_sub; b += gridDim.x) {
    const int64_t j = cluster_of_sub(sub, K, b);
    const long long q0 = seg[j] + (b - sub[j]) * sub_rows;
    const long long q1 = tmin<long long>(q0 + sub_rows, seg[j + 1]);
    for (int ct = blockIdx.y; ct < desc.CT; ct += gridDim.y) {
      const int m = mod_of_tile(desc, ct);
      const ModDesc& md = desc.mod[m];
      const int64_t k = static_cast<int64_t>(ct - md.ct_off) * 32 + tx;
      const bool valid = k < md.d;
      double acc = 0.0;
      for (long long q = q0 + ty; q < q1; q += 8) {
        const int64_t i = order[q];
        if (valid && desc.present[i * desc.M + m]) acc = __dadd_rn(acc, load_x(md, i, k));
      }
      s[ty][tx] = acc;
      __syncthreads();
      if (ty == 0 && valid) {
        const double x = (s[0][tx] + s[1][tx]) + (s[2][tx] + s[3][tx]);
        const double y = (s[4][tx] + s[5][tx]) + (s[6][tx] + s[7][tx]);
        part[b * desc.D + md.off + k] = x + y;
      }
      __syncthreads();
    }
  }
}

// New centres (docs/algorithm.md section 4 rules) from the folded sums.
__global__ void update_fold(Desc desc, int64_t K, const long long* seg, const long long* sub, const int* counts,
                            const double* part, const double* mu, const double* sigma, CentreTables old,
                            CentreTables nw) {
  const int64_t total = K * desc.D;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t j = e / desc.D, c = e - j * desc.D;
    const int m = mod_of(desc, c);
    const bool first = c == desc.mod[m].off;
    if (seg[j + 1] == seg[j]) {  // no member: the centre is kept
      nw.cz[e] = old.cz[e];
      if (first) nw.H[j * desc.M + m] = old.H[j * desc.M + m];
      continue;
    }
    const int cnt = counts[j * desc.M + m];
    double z = 0.0;
    if (cnt > 0) {
      double sum = 0.0;
      for (long long b = sub[j]; b < sub[j + 1]; ++b) sum += part[b * desc.D + c];
      z = (sum / static_cast<double>(cnt) - mu[c]) / sigma[c];
    }
    nw.cz[e] = z;
    if (first) nw.H[j * desc.M + m] = cnt > 0 ? 1 : 0;
  }
}

// shift[j] = D(c_old_j, c_new_j) (partial distance over modalities both carry; inf if none).
__global__ void centre_shift(Desc desc, int64_t K, CentreTables a, CentreTables b, double* shift) {
  __shared__ double sh[32];
  for (int64_t j = blockIdx.x; j < K; j += gridDim.x) {
    double num = 0.0;
    int cnt = 0;
    for (int m = 0; m < desc.M; ++m) {
      if (!a.H[j * desc.M + m] || !b.H[j * desc.M + m]) continue;
      const ModDesc& md = desc.mod[m];
      double s = 0.0;
      for (int64_t k = threadIdx.x; k < md.d; k += blockDim.x) {
        const double t = a.cz[j * desc.D + md.off + k] - b.cz[j * desc.D + md.off + k];
        s = __dadd_rn(s, __dmul_rn(t, t));
      }
      s = block_sum(s, sh);
      num += s / static_cast<double>(md.d);
      ++cnt;
    }
    if (threadIdx.x == 0) shift[j] = cnt ? sqrt(num / cnt) : kInf;
  }
}

__global__ void max_fold(int64_t K, const double* v, double* out) {
  __shared__ double sh[32];
  double x = 0.0;
  for (int64_t j = threadIdx.x; j < K; j += blockDim.x) x = v[j] > x ? v[j] : x;
  x = warp_max(x);
  if (lane_id() == 0) sh[threadIdx.x >> 5] = x;
  __syncthreads();
  if (threadIdx.x < 32) {
    double y = threadIdx.x < (blockDim.x >> 5) ? sh[threadIdx.x] : 0.0;
    y = warp_max(y);
    if (threadIdx.x == 0) *out = y;
  }
}

// Centres out (K x D doubles, NaN where absent), presence out.
__global__ void centres_out(Desc desc, int64_t K, CentreTables t, double* C, uint8_t* H) {
  const int64_t total = K * desc.D;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t j = e / desc.D, c = e - j * desc.D;
    const int m = mod_of(desc, c);
    const bool has = t.H[j * desc.M + m] != 0;
    if (C) C[e] = has ? t.cz[e] : __longlong_as_double(0x7ff8000000000000ll);
    if (H && c == desc.mod[m].off) H[j * desc.M + m] = has ? 1 : 0;
  }
}

void update_centres(const Desc& desc, const Geometry& g, const UpdateLayout& u, const int32_t* labels,
                    const uint64_t* amask, const NormTables& norm, const CentreTables& old, const CentreTables& nw,
                    cudaStream_t s) {
  const int64_t n = desc.n, K = g.K;
  UL4M4_CUDA_TRY(cudaMemsetAsync(u.hist, 0, sizeof(int) * u.n_stiles * K, s));
  UL4M4_CUDA_TRY(cudaMemsetAsync(u.counts, 0, sizeof(int) * K * g.M, s));
  if (n > 0) {
    sort_count<<<grid_for(u.n_stiles, 1, 65535), 256, 0, s>>>(labels, n, K, u.n_stiles, u.hist);
    UL4M4_CUDA_CHECK_LAUNCH("sort_count");
  }
  sort_offsets<<<grid_for(K, 256), 256, 0, s>>>(K, u.n_stiles, u.hist, u.seg);
  UL4M4_CUDA_CHECK_LAUNCH("sort_offsets");
  sort_scan<<<1, 1024, 0, s>>>(K, u.sub_rows, u.seg, u.sub);
  UL4M4_CUDA_CHECK_LAUNCH("sort_scan");
  if (n > 0) {
    sort_scatter<<<grid_for(u.n_stiles, kWarpsPerBlock), kThreads, 0, s>>>(labels, n, K, u.n_stiles, u.hist, u.seg,
                                                                            u.order);
    UL4M4_CUDA_CHECK_LAUNCH("sort_scatter");
    member_counts<<<grid_for(n, kThreads), kThreads, 0, s>>>(labels, amask, n, g.M, u.counts);
    UL4M4_CUDA_CHECK_LAUNCH("member_counts");
    const dim3 grid(static_cast<unsigned>(std::min<int64_t>(u.n_sub_bound, 65535)),
                    static_cast<unsigned>(std::min(g.CT, 65535)));
    segment_sums<<<grid, dim3(32, 8), 0, s>>>(desc, K, u.sub_rows, u.n_sub_bound, u.seg, u.sub, u.order, u.part);
    UL4M4_CUDA_CHECK_LAUNCH("segment_sums");
  }
  update_fold<<<grid_for(K * g.D, kThreads), kThreads, 0, s>>>(desc, K, u.seg, u.sub, u.counts, u.part, norm.mu,
                                                               norm.sigma, old, nw);
  UL4M4_CUDA_CHECK_LAUNCH("update_fold");
  centre_tables(g, nw, s);
}

// ------------------------------------------------------------------ k-means++

// The CPU engine's generator (ul4m4/rng.hpp): the same draws for the same seed.
using ul4m4::detail::Rng;

struct SeedLayout {
  int64_t ntile = 0;
  uint8_t* chosen = nullptr;   // N
  double* mind2 = nullptr;     // N: squared distance to the nearest chosen centre
  double* tile_w = nullptr;    // ntile: sum of weights
  double* tile_pref = nullptr; // ntile: exclusive prefix of tile_w
  long long* tile_c = nullptr; // ntile x 3: eligible, free (eligible, not chosen), free with inf distance
  long long* tile_last = nullptr;  // ntile: last row with a positive weight, -1 if none
  double* scal_d = nullptr;    // [0] total weight
  long long* scal_i = nullptr; // [0] eligible, [1] free, [2] inf, [3] pick
  float* zf1 = nullptr;        // DP: the new centre, float32, zero padded
  double* cn1 = nullptr;       // M: its float64 norms
  uint64_t* hm1 = nullptr;     // 1: its presence
  SeedLayout(Arena& a, int64_t n, const Geometry& g) {
    ntile = std::max<int64_t>(1, ceil_div(n, kSeedTile));
    chosen = a.take<uint8_t>(n);
    mind2 = a.take<double>(n);
    tile_w = a.take<double>(ntile);
    tile_pref = a.take<double>(ntile);
    tile_c = a.take<long long>(3 * ntile);
    tile_last = a.take<long long>(ntile);
    scal_d = a.take<double>(2);
    scal_i = a.take<long long>(4);
    zf1 = a.take<float>(g.DP);
    cn1 = a.take<double>(g.M);
    hm1 = a.take<uint64_t>(1);
  }
};

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
    last = warp_max(last);
    if (lane_id() == 0) shi[threadIdx.x >> 5] = last;
    __syncthreads();
    if (threadIdx.x < 32) {
      long long y = threadIdx.x < (blockDim.x >> 5) ? shi[threadIdx.x] : -1;
      y = warp_max(y);
      if (threadIdx.x == 0) {
        tile_w[tile] = tot;
        tile_c[3 * tile] = ce;
        tile_c[3 * tile + 1] = cf;
        tile_c[3 * tile + 2] = ci;
        tile_last[tile] = y;
      }
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
    last = warp_max(last);
    if (lane_id() == 0) shi[threadIdx.x >> 5] = last;
    __syncthreads();
    if (threadIdx.x < 32) {
      long long y = threadIdx.x < (blockDim.x >> 5) ? shi[threadIdx.x] : -1;
      y = warp_max(y);
      if (threadIdx.x == 0) scal_i[3] = y;
    }
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

void check_interrupt(const Launch& L) {
  if (L.interrupted && L.interrupted()) throw Interrupted();
}

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

// ------------------------------------------------------------------ Lloyd

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
      seed_into(desc, g, mv0, lay.amask, *sl, K, p.seed + 0x5851F42D4C957F2Dull * static_cast<uint64_t>(run),
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
      centre_shift<<<grid_for(K, 1, 65535), 256, 0, s>>>(desc, K, lay.cent[cur], lay.cent[nxt], upd.shift);
      UL4M4_CUDA_CHECK_LAUNCH("centre_shift");
      max_fold<<<1, 1024, 0, s>>>(K, upd.shift, lay.scal_d + 1);
      UL4M4_CUDA_CHECK_LAUNCH("max_fold");
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
      centres_out<<<grid_for(K * g.D, kThreads), kThreads, 0, s>>>(desc, K, lay.cent[cur], C_out, H_out);
      UL4M4_CUDA_CHECK_LAUNCH("centres_out");
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
