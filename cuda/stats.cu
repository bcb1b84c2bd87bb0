// docs/algorithm.md section 1 on the device: the input scan (NaN marking, finiteness, empty rows) and the
// normalisation statistics. Mirrors cpp/stats.cpp. Float64 sums per feature over fixed row
// tiles (one thread per feature and row lane, rows in ascending order), folded in tile
// order: the result depends on the data's shape only. Counts use integer atomics (exact).
#include "common.cuh"

namespace ul4m4::cuda {
using namespace detail;

namespace {

// Scan slots: [0] first partly-NaN key, [1] first non-finite key, [2] empty rows,
// [3] first empty row, [4] NaN count of the partly-NaN row. Keys are row * M + m.
constexpr int kScanSlots = 5;

__global__ void scan_init(unsigned long long* r) {
  if (threadIdx.x == 0 && blockIdx.x == 0) {
    r[0] = ~0ull;
    r[1] = ~0ull;
    r[2] = 0;
    r[3] = ~0ull;
    r[4] = 0;
  }
}

// One warp per (row, modality) slot.
__global__ void scan_values(Desc desc, int derive, uint8_t* present_out, unsigned long long* r) {
  const int lane = lane_id();
  const int64_t n_slots = desc.n * desc.M;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x >> 5);
  for (int64_t w = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) >> 5; w < n_slots; w += warps) {
    const int64_t i = w / desc.M;
    const int m = static_cast<int>(w - i * desc.M);
    const ModDesc& md = desc.mod[m];
    bool pres;
    int nan = 0, bad = 0;
    if (derive || desc.present[w]) {
      for (int64_t k = lane; k < md.d; k += 32) {
        const double v = load_x(md, i, k);
        nan += isnan(v) ? 1 : 0;
        bad += isfinite(v) ? 0 : 1;
      }
      nan = warp_sum(nan);
      bad = warp_sum(bad);
    }
    if (derive) {
      pres = nan == 0;
      if (lane == 0) {
        present_out[w] = pres ? 1 : 0;
        if (nan != 0 && nan != md.d) atomicMin(&r[0], static_cast<unsigned long long>(w));
      }
    } else {
      pres = desc.present[w] != 0;
    }
    if (pres && bad != 0 && lane == 0) atomicMin(&r[1], static_cast<unsigned long long>(w));
  }
}

__global__ void scan_rows(const uint8_t* present, int64_t n, int M, unsigned long long* r) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    bool any = false;
    for (int m = 0; m < M; ++m) any |= present[i * M + m] != 0;
    if (!any) {
      atomicAdd(&r[2], 1ull);
      atomicMin(&r[3], static_cast<unsigned long long>(i));
    }
  }
}

// NaN count of the partly-NaN row r[0] (if any).
__global__ void scan_partly_count(Desc desc, unsigned long long* r) {
  const unsigned long long key = r[0];
  if (key == ~0ull) return;
  const int64_t i = static_cast<int64_t>(key / desc.M);
  const int m = static_cast<int>(key % desc.M);
  const ModDesc& md = desc.mod[m];
  int nan = 0;
  for (int64_t k = lane_id(); k < md.d; k += 32) nan += isnan(load_x(md, i, k)) ? 1 : 0;
  nan = warp_sum(nan);
  if (lane_id() == 0) r[4] = static_cast<unsigned long long>(nan);
}

__global__ void row_masks_kernel(const uint8_t* present, int64_t n, int M, uint64_t* amask) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    uint64_t b = 0;
    for (int m = 0; m < M; ++m) b |= static_cast<uint64_t>(present[i * M + m] != 0) << m;
    amask[i] = b;
  }
}

// Per-modality present counts: block-local integer counts, then one atomic per block.
__global__ void count_present(const uint8_t* present, int64_t n, int M, unsigned long long* counts) {
  __shared__ unsigned long long c[kMaxM];
  for (int m = threadIdx.x; m < M; m += blockDim.x) c[m] = 0;
  __syncthreads();
  for (int64_t s = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; s < n * M;
       s += static_cast<int64_t>(gridDim.x) * blockDim.x)
    if (present[s]) atomicAdd(&c[s % M], 1ull);
  __syncthreads();
  for (int m = threadIdx.x; m < M; m += blockDim.x)
    if (c[m]) atomicAdd(&counts[m], c[m]);
}

// Partial sums of one row tile (blockIdx.x) and one column tile of 32 features
// (blockIdx.y, grid-strided): sum of x (mean == nullptr) or of (x - mean)^2.
__global__ void stats_partial(Desc desc, int64_t tile_rows, const double* mean, double* part) {
  __shared__ double s[8][33];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t t = blockIdx.x;
  const int64_t r0 = t * tile_rows, r1 = min(desc.n, r0 + tile_rows);
  for (int ct = blockIdx.y; ct < desc.CT; ct += gridDim.y) {
    const auto [m, k, valid] = tile_column(desc, ct, tx);
    const ModDesc& md = desc.mod[m];
    double acc = 0.0;
    if (valid) {
      const double mu = mean ? mean[md.off + k] : 0.0;
      for (int64_t i = r0 + ty; i < r1; i += 8) {
        if (!desc.present[i * desc.M + m]) continue;
        const double v = load_x(md, i, k);
        if (mean) {
          const double dv = __dsub_rn(v, mu);
          acc = __dadd_rn(acc, __dmul_rn(dv, dv));
        } else {
          acc = __dadd_rn(acc, v);
        }
      }
    }
    fold_row_lanes(s, acc, valid, part + t * desc.D + md.off + k);
  }
}

// Folds the tiles in order. pass 0: mean (and a flag for a non-finite sum); pass 1: sigma.
__global__ void stats_fold(Desc desc, const double* part, int64_t n_tiles, const unsigned long long* counts,
                           int pass, double* out, int* flag) {
  for (int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; c < desc.D;
       c += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    double s = 0.0;
    for (int64_t t = 0; t < n_tiles; ++t) s += part[t * desc.D + c];
    const int m = mod_of(desc, c);
    const double cnt = static_cast<double>(counts[m]);
    if (pass == 0) {
      if (!isfinite(s)) atomicOr(flag, 1);
      out[c] = counts[m] ? s / cnt : 0.0;
    } else {
      const double sd = counts[m] ? sqrt(s / cnt) : 1.0;
      out[c] = sd <= kSigmaFloor ? 1.0 : sd;
    }
  }
}

struct StatsLayout {
  int64_t tile_rows = 0, n_tiles = 0;
  double* part = nullptr;
  unsigned long long* counts = nullptr;
  int* flag = nullptr;
  StatsLayout(Arena& a, int64_t n, const Geometry& g) {
    // Tiles from the shape only: >= 1024 rows each, at most 1024 tiles and ~64 MiB of sums.
    const int64_t max_tiles = std::max<int64_t>(16, std::min<int64_t>(1024, (int64_t{64} << 20) / (8 * g.D)));
    tile_rows = pad_to(std::max<int64_t>(1024, ceil_div(std::max<int64_t>(n, 1), max_tiles)), 8);
    n_tiles = std::max<int64_t>(1, ceil_div(n, tile_rows));
    part = a.take<double>(n_tiles * g.D);
    counts = a.take<unsigned long long>(g.M);
    flag = a.take<int>(1);
  }
};

}  // namespace

namespace detail {

void row_masks(const Desc& desc, uint64_t* amask, cudaStream_t s) {
  if (desc.n == 0) return;
  row_masks_kernel<<<grid_for(desc.n, kThreads), kThreads, 0, s>>>(desc.present, desc.n, desc.M, amask);
  UL4M4_CUDA_CHECK_LAUNCH("row_masks");
}

}  // namespace detail

size_t scan_workspace(int64_t, int) {
  Arena a;
  a.take<unsigned long long>(kScanSlots);
  return a.used();
}

ScanResult scan(const DeviceData& data, uint8_t* present_out, const Launch& L) {
  DeviceGuard guard(L.device);
  const Geometry g(1, dims_of(data));
  Desc desc = make_desc(data, g);
  const bool derive = data.present == nullptr;
  if (derive) {
    if (!present_out) throw std::invalid_argument("scan: an output mask is needed without a mask");
    desc.present = present_out;
  }
  Arena a(L.ws.data, L.ws.bytes);
  unsigned long long* r = a.take<unsigned long long>(kScanSlots);
  cudaStream_t s = L.stream;
  scan_init<<<1, 32, 0, s>>>(r);
  UL4M4_CUDA_CHECK_LAUNCH("scan_init");
  if (data.n > 0) {
    scan_values<<<grid_for(data.n * g.M, kWarpsPerBlock), kThreads, 0, s>>>(desc, derive ? 1 : 0, present_out, r);
    UL4M4_CUDA_CHECK_LAUNCH("scan_values");
    scan_rows<<<grid_for(data.n, kThreads), kThreads, 0, s>>>(desc.present, data.n, g.M, r);
    UL4M4_CUDA_CHECK_LAUNCH("scan_rows");
    if (derive) {
      scan_partly_count<<<1, 32, 0, s>>>(desc, r);
      UL4M4_CUDA_CHECK_LAUNCH("scan_partly_count");
    }
  }
  unsigned long long h[kScanSlots];
  UL4M4_CUDA_TRY(cudaMemcpyAsync(h, r, sizeof(h), cudaMemcpyDeviceToHost, s));
  UL4M4_CUDA_TRY(cudaStreamSynchronize(s));
  ScanResult res;
  if (h[0] != ~0ull) {
    res.partly_row = static_cast<int64_t>(h[0] / g.M);
    res.partly_m = static_cast<int>(h[0] % g.M);
    res.partly_nan = static_cast<int64_t>(h[4]);
  }
  if (h[1] != ~0ull) {
    res.bad_row = static_cast<int64_t>(h[1] / g.M);
    res.bad_m = static_cast<int>(h[1] % g.M);
  }
  res.n_empty = static_cast<int64_t>(h[2]);
  if (h[3] != ~0ull) res.first_empty = static_cast<int64_t>(h[3]);
  return res;
}

size_t stats_workspace(int64_t n, const std::vector<int64_t>& dims) {
  Arena a;
  const Geometry g(1, dims);
  StatsLayout lay(a, n, g);
  return a.used();
}

void compute_stats(const DeviceData& data, double* mu_out, double* sigma_out, const Launch& L) {
  DeviceGuard guard(L.device);
  const Geometry g(1, dims_of(data));
  const Desc desc = make_desc(data, g);
  Arena a(L.ws.data, L.ws.bytes);
  StatsLayout lay(a, data.n, g);
  cudaStream_t s = L.stream;
  UL4M4_CUDA_TRY(cudaMemsetAsync(lay.counts, 0, sizeof(unsigned long long) * g.M, s));
  UL4M4_CUDA_TRY(cudaMemsetAsync(lay.flag, 0, sizeof(int), s));
  if (data.n > 0) {
    count_present<<<grid_for(data.n * g.M, kThreads, 1024), kThreads, 0, s>>>(data.present, data.n, g.M,
                                                                                lay.counts);
    UL4M4_CUDA_CHECK_LAUNCH("count_present");
  }
  const dim3 grid(static_cast<unsigned>(lay.n_tiles), static_cast<unsigned>(std::min(g.CT, 65535)));
  const dim3 block(32, 8);
  // Pass 1: sums -> mean (written to mu_out).
  UL4M4_CUDA_TRY(cudaMemsetAsync(lay.part, 0, sizeof(double) * lay.n_tiles * g.D, s));
  if (data.n > 0) {
    stats_partial<<<grid, block, 0, s>>>(desc, lay.tile_rows, nullptr, lay.part);
    UL4M4_CUDA_CHECK_LAUNCH("stats_partial");
  }
  stats_fold<<<grid_for(g.D, kThreads), kThreads, 0, s>>>(desc, lay.part, lay.n_tiles, lay.counts, 0, mu_out,
                                                          lay.flag);
  UL4M4_CUDA_CHECK_LAUNCH("stats_fold");
  std::vector<unsigned long long> counts(g.M);
  int flag = 0;
  UL4M4_CUDA_TRY(cudaMemcpyAsync(counts.data(), lay.counts, sizeof(unsigned long long) * g.M,
                                 cudaMemcpyDeviceToHost, s));
  UL4M4_CUDA_TRY(cudaMemcpyAsync(&flag, lay.flag, sizeof(int), cudaMemcpyDeviceToHost, s));
  UL4M4_CUDA_TRY(cudaStreamSynchronize(s));
  for (int m = 0; m < g.M; ++m)
    if (counts[m] == 0)
      throw std::invalid_argument("modality " + std::to_string(m) +
                                  " has no observed row in the training data: it cannot be fitted");
  if (flag) throw std::invalid_argument("the sum of a feature overflowed (values too large for float64)");
  // Pass 2: squared deviations (two-pass for accuracy) -> sigma.
  UL4M4_CUDA_TRY(cudaMemsetAsync(lay.part, 0, sizeof(double) * lay.n_tiles * g.D, s));
  stats_partial<<<grid, block, 0, s>>>(desc, lay.tile_rows, mu_out, lay.part);
  UL4M4_CUDA_CHECK_LAUNCH("stats_partial");
  stats_fold<<<grid_for(g.D, kThreads), kThreads, 0, s>>>(desc, lay.part, lay.n_tiles, lay.counts, 1, sigma_out,
                                                          lay.flag);
  UL4M4_CUDA_CHECK_LAUNCH("stats_fold");
}

}  // namespace ul4m4::cuda

// ------------------------------------------------------------------ probing
namespace ul4m4::cuda {

int device_count(std::string* reason) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    if (reason) *reason = std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e);
    cudaGetLastError();  // clear it: the next call may succeed (e.g. after a driver load)
    return 0;
  }
  if (n == 0 && reason) *reason = "no CUDA device is visible";
  return n;
}

std::string device_name(int device) {
  cudaDeviceProp p;
  UL4M4_CUDA_TRY(cudaGetDeviceProperties(&p, device));
  return std::string(p.name) + " (sm_" + std::to_string(p.major) + std::to_string(p.minor) + ", " +
         std::to_string(p.totalGlobalMem >> 20) + " MiB)";
}

}  // namespace ul4m4::cuda
