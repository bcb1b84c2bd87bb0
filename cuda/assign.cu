// docs/algorithm.md section 4, assignment on the device, per chunk of rows (mirrors cpp/assign.cpp):
//  1. per modality, the chunk's rows present in it are compacted (ascending order),
//  2. normalised into a zero-padded float32 block (z, with ||z||^2 in float64),
//  3. multiplied by the float32 centres in a tiled GEMM whose epilogue writes the e table
//     e[m][t][l] = max(0, ||z||^2 + ||c_l||^2 - 2 z.c_l) / d_m,
//  4. combined per row over the shared modalities with the argmin fused (ties to the lowest
//     j), near ties (within relative 1e-5) re-computed exactly in float64 by direct
//     differences, as the CPU does.
// Scratch is O(chunk x (D + K x M)); the chunk size comes from a byte budget and does not
// change any result.
#include "gemm.cuh"

namespace ul4m4::cuda {
using namespace detail;

namespace {

constexpr int kCompactTile = 1024;  // rows per compaction tile (256 threads x 4)

__device__ __forceinline__ bool picked(const Desc& desc, const uint64_t* amask, int64_t r0, int64_t t, int m,
                                       Pick pick, const uint8_t* flags, int Mp) {
  switch (pick) {
    case Pick::Present:
      return desc.present[(r0 + t) * desc.M + m] != 0;
    case Pick::PresentPartial: {
      const uint64_t a = amask[r0 + t];
      return (a >> m & 1) && a != full_mask(desc.M);
    }
    default:
      return flags[t * Mp + m] != 0;
  }
}

// Per (tile, m): the number of picked rows of the tile.
__global__ void compact_count(Desc desc, const uint64_t* amask, int64_t r0, int64_t nr, Pick pick,
                              const uint8_t* flags, int Mp, int* tile_cnt, int64_t ntile) {
  __shared__ int sh[32];
  const int m = blockIdx.y;
  for (int64_t tile = blockIdx.x; tile < ntile; tile += gridDim.x) {
    int c = 0;
    const int64_t t0 = tile * kCompactTile + threadIdx.x * 4;
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      const int64_t t = t0 + q;
      if (t < nr && picked(desc, amask, r0, t, m, pick, flags, Mp)) ++c;
    }
    c = block_sum(c, sh);
    if (threadIdx.x == 0) tile_cnt[m * ntile + tile] = c;
  }
}

// Per m: exclusive scan of the tile counts (in place) and the total.
__global__ void compact_scan(int* tile_cnt, int64_t ntile, int* cnt) {
  __shared__ int sh[32];
  const int m = blockIdx.x;
  int* tc = tile_cnt + m * ntile;
  int carry = 0;
  for (int64_t base = 0; base < ntile; base += blockDim.x) {
    const int64_t q = base + threadIdx.x;
    const int v = q < ntile ? tc[q] : 0;
    int total;
    const int incl = block_inclusive_scan(v, sh, total);
    if (q < ntile) tc[q] = carry + incl - v;
    carry += total;
  }
  if (threadIdx.x == 0) cnt[m] = carry;
}

__global__ void compact_scatter(Desc desc, const uint64_t* amask, int64_t r0, int64_t nr, Pick pick,
                                const uint8_t* flags, int Mp, const int* tile_off, int64_t ntile, int* idx,
                                int64_t ld) {
  __shared__ int sh[32];
  const int m = blockIdx.y;
  for (int64_t tile = blockIdx.x; tile < ntile; tile += gridDim.x) {
    const int64_t t0 = tile * kCompactTile + threadIdx.x * 4;
    bool f[4];
    int c = 0;
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      const int64_t t = t0 + q;
      f[q] = t < nr && picked(desc, amask, r0, t, m, pick, flags, Mp);
      c += f[q] ? 1 : 0;
    }
    int total;
    const int incl = block_inclusive_scan(c, sh, total);
    int pos = tile_off[m * ntile + tile] + incl - c;
#pragma unroll
    for (int q = 0; q < 4; ++q)
      if (f[q]) idx[m * ld + pos++] = static_cast<int>(t0 + q);
  }
}

// One warp per compacted (m, r): z row (zero padded to dp) and ||z||^2 in float64.
__global__ void normalise_kernel(Desc desc, ModelView mv, int64_t r0, int64_t cap, const int* idx, const int* cnt,
                                 float* z, double* zz) {
  const int lane = lane_id();
  const int64_t items = static_cast<int64_t>(desc.M) * cap;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x >> 5);
  for (int64_t w = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) >> 5; w < items; w += warps) {
    const int m = static_cast<int>(w / cap);
    const int64_t r = w - m * cap;
    if (r >= cnt[m]) continue;
    const ModDesc& md = desc.mod[m];
    const int64_t i = r0 + idx[m * cap + r];
    float* zr = z + cap * md.poff + r * md.dp;
    double ss = 0.0;
    for (int64_t k = lane; k < md.dp; k += 32) {
      float v = 0.f;
      if (k < md.d) {
        v = norm_z(md, mv, i, k);
        const double dv = v;
        ss = __dadd_rn(ss, __dmul_rn(dv, dv));
      }
      zr[k] = v;
    }
    ss = warp_sum(ss);
    if (lane == 0) zz[m * cap + r] = ss;
  }
}

// GEMM epilogue: the e table of modality m.
struct EEpilogue {
  float* e;           // rows x Kp of modality m
  const int* idx;     // compacted row -> chunk row
  const double* zz;   // per compacted row
  const double* cn;   // Kp
  int64_t K, Kp;
  double inv_d;
  __device__ __forceinline__ void operator()(int64_t r, int64_t c, float dot) const {
    if (c >= K) return;
    const double v = zz[r] + cn[c] - 2.0 * static_cast<double>(dot);
    e[static_cast<int64_t>(idx[r]) * Kp + c] = static_cast<float>(v > 0.0 ? v * inv_d : 0.0);
  }
};

/// Squared partial distance of chunk row t (mask a) to centre l from the e table.
__device__ __forceinline__ double table_d2(const ModelView& mv, const float* e, int64_t cap, int64_t t, uint64_t a,
                                           int64_t l) {
  const uint64_t s = a & mv.hmask[l];
  if (!s) return kInf;
  double num = 0.0;
  for_bits(s, [&](int m) { num += static_cast<double>(e[(m * cap + t) * mv.Kp + l]); });
  return num / __popcll(s);
}

/// Squared partial distance of row i to centre l in float64 by direct differences (no
/// expansion), computed by the whole warp (every lane returns it).
__device__ double exact_d2(const Desc& desc, const ModelView& mv, int64_t i, uint64_t a, int64_t l) {
  const uint64_t s = a & mv.hmask[l];
  if (!s) return kInf;
  const int lane = lane_id();
  double num = 0.0;
  for_bits(s, [&](int m) {
    const ModDesc& md = desc.mod[m];
    double acc = 0.0;
    for (int64_t k = lane; k < md.d; k += 32) {
      const int64_t c = md.off + k;
      const double t = (load_x(md, i, k) - mv.mu[c]) / mv.sigma[c] - mv.cz[l * mv.D + c];
      acc = __dadd_rn(acc, __dmul_rn(t, t));
    }
    acc = warp_sum(acc);
    num += acc / static_cast<double>(md.d);
  });
  return num / __popcll(s);
}

// One warp per chunk row: argmin over centres with near ties settled exactly.
__global__ void combine_kernel(Desc desc, ModelView mv, const float* e, int64_t cap, int64_t r0, int64_t nr,
                               const uint64_t* amask, int32_t* labels, double* min_d2) {
  const int lane = lane_id();
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x >> 5);
  for (int64_t t = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) >> 5; t < nr; t += warps) {
    const int64_t i = r0 + t;
    const uint64_t a = amask[i];
    double best = kInf;
    int arg = -1;
    for (int64_t l = lane; l < mv.K; l += 32) {
      const double v = table_d2(mv, e, cap, t, a, l);
      if (v < best) {
        best = v;
        arg = static_cast<int>(l);
      }
    }
    warp_argmin(best, arg);
    if (arg >= 0) {
      const double band = best + kTieBand * (1.0 + best);
      int close = 0;
      for (int64_t l = lane; l < mv.K; l += 32) close += table_d2(mv, e, cap, t, a, l) <= band ? 1 : 0;
      close = warp_sum(close);
      if (close > 1) {
        // Candidates in ascending l; strict < keeps the lowest l on exact ties.
        double b2 = kInf;
        int a2 = -1;
        for (int64_t base = 0; base < mv.K; base += 32) {
          const int64_t l = base + lane;
          const bool cand = l < mv.K && table_d2(mv, e, cap, t, a, l) <= band;
          unsigned mask = __ballot_sync(kFull, cand);
          while (mask) {
            const int q = __ffs(mask) - 1;
            mask &= mask - 1;
            const double v = exact_d2(desc, mv, i, a, base + q);
            if (v < b2) {
              b2 = v;
              a2 = static_cast<int>(base + q);
            }
          }
        }
        best = b2;
        arg = a2;
      }
    }
    if (lane == 0) {
      if (labels) labels[i] = arg;
      if (min_d2) min_d2[i] = best;
    }
  }
}

constexpr int kReduceTile = 2048;

__global__ void reduce_tiles(int64_t n, const int32_t* labels, const int32_t* prev, const double* min_d2,
                             int64_t ntile, double* part_d, long long* part_i) {
  __shared__ double shd[32];
  __shared__ long long shi[32];
  for (int64_t tile = blockIdx.x; tile < ntile; tile += gridDim.x) {
    double s = 0.0;
    long long un = 0, ch = 0;
    for (int q = 0; q < kReduceTile / 256; ++q) {
      const int64_t i = tile * kReduceTile + q * 256 + threadIdx.x;
      if (i >= n) break;
      const int32_t l = labels[i];
      if (l >= 0) s += min_d2[i]; else ++un;
      if (prev && prev[i] != l) ++ch;
    }
    s = block_sum(s, shd);
    un = block_sum(un, shi);
    ch = block_sum(ch, shi);
    if (threadIdx.x == 0) {
      part_d[tile] = s;
      part_i[2 * tile] = un;
      part_i[2 * tile + 1] = ch;
    }
  }
}

__global__ void reduce_fold(int64_t ntile, const double* part_d, const long long* part_i, double* out_d,
                            long long* out_i) {
  __shared__ double shd[32];
  __shared__ long long shi[32];
  double s = 0.0;
  long long un = 0, ch = 0;
  for (int64_t t = threadIdx.x; t < ntile; t += blockDim.x) {
    s += part_d[t];
    un += part_i[2 * t];
    ch += part_i[2 * t + 1];
  }
  s = block_sum(s, shd);
  un = block_sum(un, shi);
  ch = block_sum(ch, shi);
  if (threadIdx.x == 0) {
    out_d[0] = s;
    out_i[0] = un;
    out_i[1] = ch;
  }
}

struct AssignLayout {
  uint64_t* amask = nullptr;
  ModelBuffer* model = nullptr;
  ChunkBuffers chunk;
  AssignLayout(Arena& a, int64_t n, const Geometry& g, size_t budget) {
    amask = a.take<uint64_t>(n);
    carve(a, g, chunk_rows_for(n, g, budget, 0), chunk);
  }
};

}  // namespace

namespace detail {

int64_t chunk_rows_for(int64_t n, const Geometry& g, size_t budget, int64_t extra_per_row) {
  const int64_t per_row = g.M * g.Kp * 4 + g.DP * 4 + g.M * 12 + extra_per_row;
  int64_t rows = static_cast<int64_t>(budget / static_cast<size_t>(std::max<int64_t>(per_row, 1)));
  rows = std::max<int64_t>(rows, 64);
  rows = std::min<int64_t>(rows, int64_t{1} << 24);  // row indices are int32 inside a chunk
  rows = std::min<int64_t>(rows, std::max<int64_t>(n, 1));
  return rows;
}

void carve(Arena& a, const Geometry& g, int64_t rows, ChunkBuffers& b) {
  b.rows = rows;
  b.ntile = ceil_div(rows, kCompactTile);
  b.e = a.take<float>(g.M * rows * g.Kp);
  b.z = a.take<float>(rows * g.DP);
  b.zz = a.take<double>(g.M * rows);
  b.idx = a.take<int>(g.M * rows);
  b.cnt = a.take<int>(g.M);
  b.tile_cnt = a.take<int>(g.M * b.ntile);
}

void carve(Arena& a, int64_t n, AssignReduce& r) {
  r.ntile = std::max<int64_t>(1, ceil_div(n, kReduceTile));
  r.part_d = a.take<double>(r.ntile);
  r.part_i = a.take<long long>(2 * r.ntile);
}

void compact(const Desc& desc, const uint64_t* amask, int64_t r0, int64_t nr, Pick pick, const uint8_t* flags,
             int M_pred, int* idx, int64_t ld, int* cnt, int* tile_cnt, int64_t ntile, cudaStream_t s) {
  const int64_t nt = ceil_div(nr, kCompactTile);
  if (nt > ntile) throw std::logic_error("compaction tiles exceed the chunk's");
  const dim3 grid(static_cast<unsigned>(std::min<int64_t>(std::max<int64_t>(nt, 1), 65535)),
                  static_cast<unsigned>(M_pred));
  compact_count<<<grid, 256, 0, s>>>(desc, amask, r0, nr, pick, flags, M_pred, tile_cnt, nt);
  UL4M4_CUDA_CHECK_LAUNCH("compact_count");
  compact_scan<<<M_pred, 1024, 0, s>>>(tile_cnt, nt, cnt);
  UL4M4_CUDA_CHECK_LAUNCH("compact_scan");
  compact_scatter<<<grid, 256, 0, s>>>(desc, amask, r0, nr, pick, flags, M_pred, tile_cnt, nt, idx, ld);
  UL4M4_CUDA_CHECK_LAUNCH("compact_scatter");
}

void e_table_chunk(const Desc& desc, const ModelView& mv, const uint64_t* amask, int64_t r0, int64_t nr,
                   bool select_partial, const ChunkBuffers& b, cudaStream_t s) {
  const int M = desc.M;
  const int64_t cap = b.rows;
  compact(desc, amask, r0, nr, select_partial ? Pick::PresentPartial : Pick::Present, nullptr, M, b.idx, cap, b.cnt,
          b.tile_cnt, b.ntile, s);
  normalise_kernel<<<grid_for(M * nr, kWarpsPerBlock), kThreads, 0, s>>>(desc, mv, r0, cap, b.idx, b.cnt, b.z, b.zz);
  UL4M4_CUDA_CHECK_LAUNCH("normalise");
  for (int m = 0; m < M; ++m) {
    const ModDesc& md = desc.mod[m];
    EEpilogue epi{b.e + m * cap * mv.Kp, b.idx + m * cap, b.zz + m * cap, mv.cnorm + m * mv.Kp, mv.K, mv.Kp,
                  1.0 / static_cast<double>(md.d)};
    gemm<false>(b.z + cap * md.poff, md.dp, nullptr, b.cnt + m, nr, mv.zf + mv.Kp * md.poff, md.dp, md.dp, mv.Kp,
                epi, s);
  }
}

void assign_rows(const Desc& desc, const ModelView& mv, const uint64_t* amask, const ChunkBuffers& b,
                 int32_t* labels, double* min_d2, cudaStream_t s) {
  for (int64_t r0 = 0; r0 < desc.n; r0 += b.rows) {
    const int64_t nr = std::min<int64_t>(b.rows, desc.n - r0);
    e_table_chunk(desc, mv, amask, r0, nr, false, b, s);
    combine_kernel<<<grid_for(nr, kWarpsPerBlock), kThreads, 0, s>>>(desc, mv, b.e, b.rows, r0, nr, amask, labels,
                                                                      min_d2);
    UL4M4_CUDA_CHECK_LAUNCH("combine");
  }
}

void reduce_assignment(int64_t n, const int32_t* labels, const int32_t* prev, const double* min_d2,
                       const AssignReduce& r, double* out_d, long long* out_i, cudaStream_t s) {
  if (n > 0) {
    reduce_tiles<<<grid_for(r.ntile, 1, 65535), 256, 0, s>>>(n, labels, prev, min_d2, r.ntile, r.part_d, r.part_i);
    UL4M4_CUDA_CHECK_LAUNCH("reduce_tiles");
  } else {
    UL4M4_CUDA_TRY(cudaMemsetAsync(r.part_d, 0, sizeof(double) * r.ntile, s));
    UL4M4_CUDA_TRY(cudaMemsetAsync(r.part_i, 0, sizeof(long long) * 2 * r.ntile, s));
  }
  reduce_fold<<<1, 256, 0, s>>>(r.ntile, r.part_d, r.part_i, out_d, out_i);
  UL4M4_CUDA_CHECK_LAUNCH("reduce_fold");
}

}  // namespace detail

size_t assign_workspace(int64_t n, int64_t K, const std::vector<int64_t>& dims, size_t chunk_budget) {
  const Geometry g(K, dims);
  Arena a;
  AssignLayout lay(a, n, g, chunk_budget);
  return a.used();
}

void assign(const void* model, int64_t K, const std::vector<int64_t>& dims, const DeviceData& data,
            int32_t* labels, double* min_d2, size_t chunk_budget, const Launch& L) {
  DeviceGuard guard(L.device);
  const Geometry g(K, dims);
  if (K < 1) throw std::invalid_argument("a model needs at least one centre");
  const Desc desc = make_desc(data, g);
  Arena ma(const_cast<void*>(model), model_bytes(K, dims, false));
  ModelBuffer mb;
  carve_model(ma, g, mb, false);
  const ModelView mv = view_of(g, mb.norm, mb.cent);
  Arena a(L.ws.data, L.ws.bytes);
  AssignLayout lay(a, data.n, g, chunk_budget);
  row_masks(desc, lay.amask, L.stream);
  assign_rows(desc, mv, lay.amask, lay.chunk, labels, min_d2, L.stream);
}

}  // namespace ul4m4::cuda
