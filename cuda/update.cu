// The centre update of a Lloyd iteration on the device (mirrors the CPU's update), with a
// fixed reduction order and no float atomics:
//  1. rows are sorted by label with a stable counting sort (integer atomics for the
//     histograms are exact; the scatter is done by one warp per row tile in row order, so
//     members of a cluster stay in ascending row order),
//  2. each cluster's member list is cut into fixed sub-segments (from the cluster sizes
//     only); one block per (sub-segment, 32 features) sums raw x of the members having the
//     modality in float64 (8 row lanes in ascending order, folded in a fixed order),
//  3. the sub-segments of a cluster are folded in order, then the update rules apply
//     (docs/algorithm.md): a modality no member has becomes absent, a cluster with no member
//     keeps its centre.
// Also the centre shift of an iteration and the copy of the centres out.
#include "kmeans_parts.cuh"

namespace ul4m4::cuda::detail {

namespace {

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
      const auto [m, k, valid] = tile_column(desc, ct, tx);
      const ModDesc& md = desc.mod[m];
      double acc = 0.0;
      for (long long q = q0 + ty; q < q1; q += 8) {
        const int64_t i = order[q];
        if (valid && desc.present[i * desc.M + m]) acc = __dadd_rn(acc, load_x(md, i, k));
      }
      fold_row_lanes(s, acc, valid, part + b * desc.D + md.off + k);
    }
  }
}

// New centres (section 4 rules) from the folded sums.
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

}  // namespace

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

void max_centre_shift(const Desc& desc, int64_t K, const CentreTables& a, const CentreTables& b, double* shift,
                      double* out, cudaStream_t s) {
  centre_shift<<<grid_for(K, 1, 65535), 256, 0, s>>>(desc, K, a, b, shift);
  UL4M4_CUDA_CHECK_LAUNCH("centre_shift");
  max_fold<<<1, 1024, 0, s>>>(K, shift, out);
  UL4M4_CUDA_CHECK_LAUNCH("max_fold");
}

void write_centres(const Desc& desc, int64_t K, const CentreTables& t, double* C, uint8_t* H, cudaStream_t s) {
  centres_out<<<grid_for(K * desc.D, kThreads), kThreads, 0, s>>>(desc, K, t, C, H);
  UL4M4_CUDA_CHECK_LAUNCH("centres_out");
}

}  // namespace ul4m4::cuda::detail
