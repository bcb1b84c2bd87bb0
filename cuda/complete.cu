// Sections 5, 5b and 6 on the device (mirrors cpp/complete.cpp), per chunk of rows:
//  - every slot gets its default first: present slots copied exactly, missing ones the
//    training mean and "unfilled" (overwritten below when imputed);
//  - the e table of the rows that miss something (assign.cu's kernels);
//  - greedy (anchored pairs): per pending row E_l and |A & H_l|; then one block per group
//    of 8 rows (their E in shared memory when it fits) scores every carrier j,
//      score_j = min over l with A & H_l non-empty of
//                (E_l + sum_{m in Mi & H_j & H_l} f[j,l,m]) / (|A & H_l| + |Mi & H_j & H_l|),
//    with the division (the CPU's final decisions are those of the quotient); per missing
//    modality the lowest score among its carriers wins, ties to the lowest j;
//  - soft: per row D_A^2, the median (exact radix select, numpy's even rule), the weights,
//    written over the row's unused e-table slots, then per modality one NN GEMM of the
//    weights by the float32 centres whose epilogue writes the raw-space output rows.
#include "gemm.cuh"

namespace ul4m4::cuda {
using namespace detail;

namespace {

constexpr int kGroup = 8;                    // rows per block in the greedy scores
constexpr size_t kScoreSmem = 40 * 1024;     // shared memory budget of that kernel

struct CompleteLayout {
  uint64_t* amask = nullptr;
  ChunkBuffers chunk;
  // greedy
  uint8_t* pflag = nullptr;   // rows: row needs scoring
  int* pidx = nullptr;        // rows: pending rows (chunk-local, ascending)
  int* pcnt = nullptr;        // 1
  int* ptile = nullptr;       // chunk.ntile
  double* E = nullptr;        // rows x Kp
  uint8_t* nA = nullptr;      // rows x Kp
  double* score = nullptr;    // rows x Kp
  // soft
  double* da2 = nullptr;      // rows x Kp
  double* ex = nullptr;       // rows x Kp
  uint8_t* sflag = nullptr;   // rows x M: slot imputed by the soft rule
  CompleteLayout(Arena& a, int64_t n, const Geometry& g, bool soft, size_t budget) {
    amask = a.take<uint64_t>(n);
    const int64_t extra = soft ? 16 * g.Kp + g.M : 17 * g.Kp + 9;
    const int64_t rows = chunk_rows_for(n, g, budget, extra);
    carve(a, g, rows, chunk);
    if (!soft) {
      pflag = a.take<uint8_t>(rows);
      pidx = a.take<int>(rows);
      pcnt = a.take<int>(1);
      ptile = a.take<int>(chunk.ntile);
      E = a.take<double>(rows * g.Kp);
      nA = a.take<uint8_t>(rows * g.Kp);
      score = a.take<double>(rows * g.Kp);
    } else {
      da2 = a.take<double>(rows * g.Kp);
      ex = a.take<double>(rows * g.Kp);
      sflag = a.take<uint8_t>(rows * g.M);
    }
  }
};

__device__ __forceinline__ void store_out(const OutMod& o, int64_t i, int64_t k, double v64, float v32) {
  if (o.dtype == 0)
    static_cast<float*>(o.o)[i * o.stride + k] = v32;
  else
    static_cast<double*>(o.o)[i * o.stride + k] = v64;
}

// One warp per (chunk row, modality): present slots copied (bit for bit), missing ones set
// to the training mean and reported unfilled.
__global__ void defaults_kernel(Desc desc, OutDesc od, ModelView mv, int64_t r0, int64_t nr, uint8_t* imputed,
                                uint8_t* unfilled) {
  const int lane = lane_id();
  const int64_t items = nr * desc.M;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x >> 5);
  for (int64_t w = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) >> 5; w < items; w += warps) {
    const int64_t t = w / desc.M;
    const int m = static_cast<int>(w - t * desc.M);
    const int64_t i = r0 + t;
    const ModDesc& md = desc.mod[m];
    const OutMod& o = od.mod[m];
    const bool pres = desc.present[i * desc.M + m] != 0;
    if (lane == 0) {
      imputed[i * desc.M + m] = 0;
      unfilled[i * desc.M + m] = pres ? 0 : 1;
    }
    if (pres) {
      if (o.inplace) continue;
      if (md.dtype == o.dtype) {
        if (md.dtype == 0) {
          const float* x = static_cast<const float*>(md.x) + i * md.stride;
          float* y = static_cast<float*>(o.o) + i * o.stride;
          for (int64_t k = lane; k < md.d; k += 32) y[k] = x[k];
        } else {
          const double* x = static_cast<const double*>(md.x) + i * md.stride;
          double* y = static_cast<double*>(o.o) + i * o.stride;
          for (int64_t k = lane; k < md.d; k += 32) y[k] = x[k];
        }
      } else {
        for (int64_t k = lane; k < md.d; k += 32) {
          const double v = load_x(md, i, k);
          store_out(o, i, k, v, static_cast<float>(v));
        }
      }
    } else {
      for (int64_t k = lane; k < md.d; k += 32) store_out(o, i, k, mv.mu[md.off + k], mv.mu_f[md.off + k]);
    }
  }
}

// ------------------------------------------------------------------ greedy

__global__ void greedy_flags(int64_t r0, int64_t nr, int M, const uint64_t* amask, ModelView mv, uint8_t* pflag) {
  const uint64_t full = full_mask(M);
  const uint64_t any_h = *mv.any_h;
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < nr;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const uint64_t a = amask[r0 + t];
    pflag[t] = (a != 0 && a != full && (a & any_h) != 0) ? 1 : 0;
  }
}

// One warp per pending row: E_l = sum_{m in A & H_l} e[m][t][l] (ascending m) and |A & H_l|.
__global__ void greedy_E(ModelView mv, const float* e, int64_t cap, int64_t r0, const uint64_t* amask,
                         const int* pidx, const int* pcnt, double* E, uint8_t* nA) {
  const int lane = lane_id();
  const int64_t np = *pcnt;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x >> 5);
  for (int64_t p = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) >> 5; p < np; p += warps) {
    const int64_t t = pidx[p];
    const uint64_t a = amask[r0 + t];
    for (int64_t l = lane; l < mv.K; l += 32) {
      const uint64_t s = a & mv.hmask[l];
      double num = 0.0;
      for_bits(s, [&](int m) { num += static_cast<double>(e[(m * cap + t) * mv.Kp + l]); });
      E[p * mv.Kp + l] = num;
      nA[p * mv.Kp + l] = static_cast<uint8_t>(__popcll(s));
    }
  }
}

// Scores of every carrier for a group of kGroup pending rows (blockIdx.x, grid-strided).
__global__ void __launch_bounds__(256) greedy_scores(ModelView mv, int64_t r0, const uint64_t* amask,
                                                     const int* pidx, const int* pcnt, const double* E,
                                                     const uint8_t* nA, int use_smem, double* score) {
  extern __shared__ __align__(16) unsigned char smem[];
  __shared__ uint64_t s_miss[kGroup];
  __shared__ uint64_t s_union;
  const int64_t K = mv.K, Kp = mv.Kp;
  const int M = mv.M;
  const int64_t np = *pcnt;
  double* sE = reinterpret_cast<double*>(smem);
  uint8_t* sA = smem + sizeof(double) * kGroup * K;
  const uint64_t full = full_mask(M);
  for (int64_t p0 = static_cast<int64_t>(blockIdx.x) * kGroup; p0 < np; p0 += static_cast<int64_t>(gridDim.x) * kGroup) {
    const int ng = static_cast<int>(tmin<int64_t>(kGroup, np - p0));
    if (threadIdx.x < kGroup) {
      uint64_t miss = 0;
      if (static_cast<int>(threadIdx.x) < ng) miss = full & ~amask[r0 + pidx[p0 + threadIdx.x]];
      s_miss[threadIdx.x] = miss;
    }
    if (use_smem) {
      for (int64_t q = threadIdx.x; q < static_cast<int64_t>(ng) * K; q += blockDim.x) {
        const int64_t g = q / K, l = q - g * K;
        sE[g * K + l] = E[(p0 + g) * Kp + l];
        sA[g * K + l] = nA[(p0 + g) * Kp + l];
      }
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      uint64_t u = 0;
      for (int g = 0; g < ng; ++g) u |= s_miss[g];
      s_union = u;
    }
    __syncthreads();
    const double* Eg = use_smem ? sE : E + p0 * Kp;
    const uint8_t* Ag = use_smem ? sA : nA + p0 * Kp;
    const int64_t ldE = use_smem ? K : Kp;
    uint64_t miss[kGroup];
#pragma unroll
    for (int g = 0; g < kGroup; ++g) miss[g] = s_miss[g];
    for (int64_t j = threadIdx.x; j < K; j += blockDim.x) {
      const uint64_t hj = mv.hmask[j];
      double best[kGroup];
#pragma unroll
      for (int g = 0; g < kGroup; ++g) best[g] = kInf;
      if (s_union & hj) {
        for (int64_t l = 0; l < K; ++l) {
          const uint64_t hl = mv.hmask[l];
          const double* fjl = mv.f + (l * K + j) * M;  // f[l,j,m] == f[j,l,m] (symmetric bits)
#pragma unroll
          for (int g = 0; g < kGroup; ++g) {
            if (g >= ng) break;
            const int na = Ag[g * ldE + l];
            if (!na || !(miss[g] & hj)) continue;
            const uint64_t s = miss[g] & hj & hl;
            double F = 0.0;
            for_bits(s, [&](int m) { F += fjl[m]; });
            const double v = (Eg[g * ldE + l] + F) / static_cast<double>(na + __popcll(s));
            best[g] = v < best[g] ? v : best[g];
          }
        }
      }
#pragma unroll
      for (int g = 0; g < kGroup; ++g)
        if (g < ng) score[(p0 + g) * Kp + j] = (miss[g] & hj) ? best[g] : kInf;
    }
    __syncthreads();
  }
}

// One warp per pending row: per missing modality the winner (lowest score among its
// carriers, ties to the lowest j), whose raw-space row is copied.
__global__ void greedy_fill(Desc desc, OutDesc od, ModelView mv, int64_t r0, const uint64_t* amask, const int* pidx,
                            const int* pcnt, const double* score, uint8_t* imputed, uint8_t* unfilled) {
  const int lane = lane_id();
  const int64_t np = *pcnt;
  const uint64_t full = full_mask(desc.M);
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x >> 5);
  for (int64_t p = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) >> 5; p < np; p += warps) {
    const int64_t i = r0 + pidx[p];
    const uint64_t miss = full & ~amask[i];
    const double* sc = score + p * mv.Kp;
    for_bits(miss, [&](int m) {
      double best = kInf;
      int win = -1;
      for (int64_t j = lane; j < mv.K; j += 32) {
        if (!(mv.hmask[j] >> m & 1)) continue;
        const double v = sc[j];
        if (v < best) {
          best = v;
          win = static_cast<int>(j);
        }
      }
      warp_argmin(best, win);
      if (win < 0) return;  // no centre carries m (or all +inf): stays mean / unfilled
      const ModDesc& md = desc.mod[m];
      const OutMod& o = od.mod[m];
      if (lane == 0) {
        imputed[i * desc.M + m] = 1;
        unfilled[i * desc.M + m] = 0;
      }
      const int64_t base = static_cast<int64_t>(win) * mv.D + md.off;
      for (int64_t k = lane; k < md.d; k += 32) store_out(o, i, k, mv.raw[base + k], mv.raw_f[base + k]);
    });
  }
}

// ------------------------------------------------------------------ soft

/// The kth smallest (0-based) finite value of v[0..K) (all >= 0), by an 8-bit radix select
/// on the bit patterns (order-preserving for non-negative doubles). `hist` is 256 words of
/// this warp's shared memory. Every lane returns it.
__device__ double warp_select(const double* v, int64_t K, long long kth, unsigned* hist) {
  const int lane = lane_id();
  unsigned long long prefix = 0, mask = 0;
  for (int shift = 56; shift >= 0; shift -= 8) {
    for (int b = lane; b < 256; b += 32) hist[b] = 0;
    __syncwarp();
    for (int64_t j = lane; j < K; j += 32) {
      const double x = v[j];
      if (!isfinite(x)) continue;
      const unsigned long long key = static_cast<unsigned long long>(__double_as_longlong(x));
      if ((key & mask) == prefix) atomicAdd(&hist[(key >> shift) & 255], 1u);
    }
    __syncwarp();
    unsigned c[8];
    unsigned own = 0;
#pragma unroll
    for (int q = 0; q < 8; ++q) {
      c[q] = hist[lane * 8 + q];
      own += c[q];
    }
    unsigned incl = own;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const unsigned u = __shfl_up_sync(kFull, incl, o);
      if (lane >= o) incl += u;
    }
    const long long excl = static_cast<long long>(incl - own);
    const bool mine = excl <= kth && kth < excl + static_cast<long long>(own);
    const unsigned ball = __ballot_sync(kFull, mine);
    const int src = __ffs(ball) - 1;  // exactly one lane holds the kth value's bin
    int bin = 0;
    long long before = excl;
    if (mine) {
#pragma unroll
      for (int q = 0; q < 8; ++q) {
        if (kth < before + static_cast<long long>(c[q])) {
          bin = lane * 8 + q;
          break;
        }
        before += c[q];
      }
    }
    bin = __shfl_sync(kFull, bin, src < 0 ? 0 : src);
    before = __shfl_sync(kFull, before, src < 0 ? 0 : src);
    prefix |= static_cast<unsigned long long>(bin) << shift;
    mask |= 255ull << shift;
    kth -= before;
    __syncwarp();
  }
  return __longlong_as_double(static_cast<long long>(prefix));
}

// One warp per chunk row with a missing modality: D_A^2, the temperature, the weights of
// every imputable missing modality (written over e[m][t][*], unused for absent m).
__global__ void soft_weights(Desc desc, ModelView mv, float* e, int64_t cap, int64_t r0, int64_t nr,
                             const uint64_t* amask, double temperature_scale, double temperature, double* da2,
                             double* ex, uint8_t* sflag, uint8_t* imputed, uint8_t* unfilled) {
  __shared__ unsigned hist_all[kWarpsPerBlock][256];
  unsigned* hist = hist_all[threadIdx.x >> 5];
  const int lane = lane_id();
  const uint64_t full = full_mask(desc.M);
  const int64_t K = mv.K, Kp = mv.Kp;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x >> 5);
  for (int64_t t = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) >> 5; t < nr; t += warps) {
    const int64_t i = r0 + t;
    const uint64_t a = amask[i];
    for (int m = lane; m < desc.M; m += 32) sflag[t * desc.M + m] = 0;
    if (a == 0 || a == full) continue;
    double* D = da2 + t * Kp;
    double* X = ex + t * Kp;
    long long nfin = 0;
    double lo = kInf;
    for (int64_t l = lane; l < K; l += 32) {
      const uint64_t s = a & mv.hmask[l];
      double num = 0.0;
      for_bits(s, [&](int m) { num += static_cast<double>(e[(m * cap + t) * Kp + l]); });
      const double v = s ? num / __popcll(s) : kInf;
      D[l] = v;
      nfin += s ? 1 : 0;
      lo = v < lo ? v : lo;
    }
    nfin = warp_sum(nfin);
    lo = warp_min(lo);
    if (nfin == 0) continue;  // nothing anchors the row: every missing slot stays unfilled
    __syncwarp();
    double T = temperature;
    if (!(T > 0.0)) {
      const double hi = warp_select(D, K, nfin / 2, hist);
      double med = hi;
      if (nfin % 2 == 0) med = 0.5 * (warp_select(D, K, nfin / 2 - 1, hist) + hi);
      T = fmax(kMinTemperature, temperature_scale * med);
    }
    for (int64_t l = lane; l < K; l += 32) X[l] = isfinite(D[l]) ? exp(-(D[l] - lo) / T) : 0.0;
    __syncwarp();
    for_bits(full & ~a, [&](int m) {
      // w_j = exp(-(D_A^2 - min_J D_A^2) / T) / sum: the shift by the row's global minimum
      // instead of J's cancels in the normalisation, unless every carrier underflows.
      double wsum = 0.0, lo_m = kInf;
      for (int64_t j = lane; j < K; j += 32)
        if ((mv.hmask[j] >> m & 1) && isfinite(D[j])) {
          wsum += X[j];
          lo_m = D[j] < lo_m ? D[j] : lo_m;
        }
      wsum = warp_sum(wsum);
      lo_m = warp_min(lo_m);
      if (lo_m == kInf) return;  // no carrier shares an observed modality: unfilled
      const bool shifted = !(wsum > kWeightUnderflow);  // rare: recompute shifted by J's own minimum
      if (shifted) {
        wsum = 0.0;
        for (int64_t j = lane; j < K; j += 32)
          if ((mv.hmask[j] >> m & 1) && isfinite(D[j])) wsum += exp(-(D[j] - lo_m) / T);
        wsum = warp_sum(wsum);
      }
      const double cut = kSoftSkip * wsum;
      float* w = e + (m * cap + t) * Kp;
      for (int64_t j = lane; j < Kp; j += 32) {
        float v = 0.f;
        if (j < K && (mv.hmask[j] >> m & 1) && isfinite(D[j])) {
          const double x = shifted ? exp(-(D[j] - lo_m) / T) : X[j];
          if (x >= cut) v = static_cast<float>(x / wsum);
        }
        w[j] = v;
      }
      if (lane == 0) {
        sflag[t * desc.M + m] = 1;
        imputed[i * desc.M + m] = 1;
        unfilled[i * desc.M + m] = 0;
      }
    });
  }
}

// GEMM epilogue: z = weights . centres, mapped to raw space (docs/algorithm.md section 6) into the output.
struct SoftEpilogue {
  OutMod o;
  const int* idx;  // compacted row -> chunk row
  int64_t r0;
  int64_t d;
  const float *sigma_f, *mu_f;
  const double *sigma, *mu;
  __device__ __forceinline__ void operator()(int64_t r, int64_t c, float z) const {
    if (c >= d) return;
    const int64_t i = r0 + idx[r];
    if (o.dtype == 0)
      static_cast<float*>(o.o)[i * o.stride + c] = __fadd_rn(__fmul_rn(z, sigma_f[c]), mu_f[c]);
    else
      static_cast<double*>(o.o)[i * o.stride + c] = __dadd_rn(__dmul_rn(static_cast<double>(z), sigma[c]), mu[c]);
  }
};

OutDesc make_out(const DeviceData& data, const std::vector<DeviceOutput>& out, const Geometry& g) {
  if (static_cast<int>(out.size()) != g.M) throw std::invalid_argument("one output per modality is needed");
  OutDesc od;
  std::memset(&od, 0, sizeof(od));
  for (int m = 0; m < g.M; ++m) {
    const DeviceOutput& o = out[m];
    if (o.rows != data.n || o.cols != g.d[m]) throw std::invalid_argument("output array has the wrong shape");
    if (data.n > 0 && o.data == nullptr) throw std::invalid_argument("null output pointer");
    od.mod[m].o = o.data;
    od.mod[m].stride = o.rows > 1 ? o.row_stride : o.cols;
    od.mod[m].dtype = o.dtype == DType::F32 ? 0 : 1;
    const DeviceMatrix& x = data.X[m];
    od.mod[m].inplace = (o.data == x.data && od.mod[m].stride == (x.rows > 1 ? x.row_stride : x.cols) &&
                         o.dtype == x.dtype)
                            ? 1
                            : 0;
  }
  return od;
}

}  // namespace

size_t complete_workspace(int64_t n, int64_t K, const std::vector<int64_t>& dims, bool soft, size_t chunk_budget) {
  const Geometry g(K, dims);
  Arena a;
  CompleteLayout lay(a, n, g, soft, chunk_budget);
  return a.used();
}

void complete(const void* model, int64_t K, const std::vector<int64_t>& dims, const DeviceData& data,
              const CompletionParams& p, const std::vector<DeviceOutput>& out, uint8_t* imputed, uint8_t* unfilled,
              size_t chunk_budget, const Launch& L) {
  DeviceGuard guard(L.device);
  const Geometry g(K, dims);
  if (K < 1) throw std::invalid_argument("a model needs at least one centre");
  const Desc desc = make_desc(data, g);
  const OutDesc od = make_out(data, out, g);
  const bool soft = p.mode == CompletionParams::Mode::Soft;
  Arena ma(const_cast<void*>(model), model_bytes(K, dims, true));
  ModelBuffer mb;
  carve_model(ma, g, mb, true);
  const ModelView mv = view_of(g, mb.norm, mb.cent, &mb.comp);
  Arena a(L.ws.data, L.ws.bytes);
  CompleteLayout lay(a, data.n, g, soft, chunk_budget);
  cudaStream_t s = L.stream;
  const ChunkBuffers& b = lay.chunk;
  const int64_t cap = b.rows;
  row_masks(desc, lay.amask, s);

  // Greedy scores' shared memory: the group's E and |A & H_l| when they fit.
  const size_t smem_need = (sizeof(double) + 1) * kGroup * static_cast<size_t>(K);
  const int use_smem = smem_need <= kScoreSmem ? 1 : 0;

  for (int64_t r0 = 0; r0 < data.n; r0 += cap) {
    const int64_t nr = std::min<int64_t>(cap, data.n - r0);
    defaults_kernel<<<grid_for(nr * g.M, kWarpsPerBlock), kThreads, 0, s>>>(desc, od, mv, r0, nr, imputed, unfilled);
    UL4M4_CUDA_CHECK_LAUNCH("defaults");
    e_table_chunk(desc, mv, lay.amask, r0, nr, true, b, s);
    if (!soft) {
      greedy_flags<<<grid_for(nr, kThreads), kThreads, 0, s>>>(r0, nr, g.M, lay.amask, mv, lay.pflag);
      UL4M4_CUDA_CHECK_LAUNCH("greedy_flags");
      compact(desc, lay.amask, r0, nr, Pick::Flag, lay.pflag, 1, lay.pidx, cap, lay.pcnt, lay.ptile, b.ntile, s);
      greedy_E<<<grid_for(nr, kWarpsPerBlock), kThreads, 0, s>>>(mv, b.e, cap, r0, lay.amask, lay.pidx, lay.pcnt,
                                                                  lay.E, lay.nA);
      UL4M4_CUDA_CHECK_LAUNCH("greedy_E");
      greedy_scores<<<grid_for(nr, kGroup, 65535), 256, use_smem ? smem_need : 0, s>>>(
          mv, r0, lay.amask, lay.pidx, lay.pcnt, lay.E, lay.nA, use_smem, lay.score);
      UL4M4_CUDA_CHECK_LAUNCH("greedy_scores");
      greedy_fill<<<grid_for(nr, kWarpsPerBlock), kThreads, 0, s>>>(desc, od, mv, r0, lay.amask, lay.pidx, lay.pcnt,
                                                                     lay.score, imputed, unfilled);
      UL4M4_CUDA_CHECK_LAUNCH("greedy_fill");
    } else {
      soft_weights<<<grid_for(nr, kWarpsPerBlock), kThreads, 0, s>>>(desc, mv, b.e, cap, r0, nr, lay.amask,
                                                                      p.temperature_scale, p.temperature, lay.da2,
                                                                      lay.ex, lay.sflag, imputed, unfilled);
      UL4M4_CUDA_CHECK_LAUNCH("soft_weights");
      compact(desc, lay.amask, r0, nr, Pick::Flag, lay.sflag, g.M, b.idx, cap, b.cnt, b.tile_cnt, b.ntile, s);
      for (int m = 0; m < g.M; ++m) {
        const ModDesc& md = desc.mod[m];
        SoftEpilogue epi{od.mod[m],         b.idx + m * cap,     r0,           md.d,
                         mv.sigma_f + md.off, mv.mu_f + md.off, mv.sigma + md.off, mv.mu + md.off};
        gemm<true>(b.e + m * cap * g.Kp, g.Kp, b.idx + m * cap, b.cnt + m, nr, mv.zf + g.Kp * md.poff, md.dp, g.Kp,
                   md.dp, epi, s);
      }
    }
  }
}

}  // namespace ul4m4::cuda
