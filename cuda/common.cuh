// Internal helpers shared by the CUDA passes (not installed, not part of the API): error
// checks, the workspace arena, the shapes of a model, the descriptors kernels take by value,
// and warp / block primitives with a fixed reduction order. Mirrors cpp/detail.hpp.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "ul4m4/cuda_engine.hpp"

// Kernels take descriptor structs of up to ~4.5 KB by value; CUDA 12.1 raised the kernel
// parameter limit to 32 KB on Volta and newer.
#if defined(CUDART_VERSION) && CUDART_VERSION < 12010
#error "ul4m4's CUDA module needs CUDA 12.1 or newer (large kernel parameters)"
#endif

namespace ul4m4::cuda::detail {

constexpr int kMaxM = 64;           // presence sets are uint64 bitmasks
constexpr int64_t kPad = 32;        // widths and K are padded to this for the GEMM tiles
constexpr unsigned kFull = 0xffffffffu;
constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr int kThreads = 256;       // default block size
constexpr int kWarpsPerBlock = kThreads / 32;

inline int64_t pad_to(int64_t v, int64_t p) { return (v + p - 1) / p * p; }
inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

[[noreturn]] inline void throw_cuda(cudaError_t e, const char* what, const char* file, int line) {
  throw CudaError(std::string("CUDA error ") + cudaGetErrorName(e) + ": " + cudaGetErrorString(e) + " (in " +
                  what + ", " + file + ":" + std::to_string(line) + ")");
}

#define UL4M4_CUDA_TRY(expr)                                                               \
  do {                                                                                     \
    const cudaError_t ul4m4_err_ = (expr);                                                 \
    if (ul4m4_err_ != cudaSuccess) ::ul4m4::cuda::detail::throw_cuda(ul4m4_err_, #expr, __FILE__, __LINE__); \
  } while (0)

// After a kernel launch: a bad configuration is reported here, faults at the next sync.
#define UL4M4_CUDA_CHECK_LAUNCH(name)                                                      \
  do {                                                                                     \
    const cudaError_t ul4m4_err_ = cudaGetLastError();                                     \
    if (ul4m4_err_ != cudaSuccess)                                                         \
      ::ul4m4::cuda::detail::throw_cuda(ul4m4_err_, "kernel " name, __FILE__, __LINE__);   \
  } while (0)

/// Makes `device` current for the lifetime of the guard, restoring the previous one.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    UL4M4_CUDA_TRY(cudaGetDevice(&prev_));
    if (prev_ != device) UL4M4_CUDA_TRY(cudaSetDevice(device));
    set_ = prev_ != device;
  }
  ~DeviceGuard() {
    if (set_) cudaSetDevice(prev_);
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int prev_ = 0;
  bool set_ = false;
};

/// Carves 256-byte aligned arrays out of a caller-owned buffer, or (base == nullptr) only
/// counts the bytes a layout needs: the same code sizes and carves a workspace.
class Arena {
 public:
  Arena() = default;
  Arena(void* base, size_t cap) : base_(static_cast<char*>(base)), cap_(cap) {
    if (base_ && reinterpret_cast<uintptr_t>(base_) % 256 != 0)
      throw std::invalid_argument("CUDA workspace must be 256-byte aligned");
  }
  template <class T>
  T* take(int64_t count) {
    const size_t off = (used_ + 255) & ~size_t{255};
    used_ = off + static_cast<size_t>(std::max<int64_t>(count, 0)) * sizeof(T);
    if (!base_) return nullptr;
    if (used_ > cap_)
      throw std::invalid_argument("CUDA workspace too small: " + std::to_string(cap_) + " bytes given, at least " +
                                  std::to_string(used_) + " needed");
    return reinterpret_cast<T*>(base_ + off);
  }
  size_t used() const { return (used_ + 255) & ~size_t{255}; }
  bool sizing() const { return base_ == nullptr; }

 private:
  char* base_ = nullptr;
  size_t cap_ = 0;
  size_t used_ = 0;
};

/// Shapes of a model: widths, their padded forms and offsets (host side).
struct Geometry {
  int M = 0;
  int64_t K = 0, Kp = 0;           // centres, padded to kPad
  std::vector<int64_t> d, dp;      // width, padded width of each modality
  std::vector<int64_t> off, poff;  // offsets of each modality in D and in DP
  std::vector<int> ct_off;         // first column tile (32 features) of each modality
  int64_t D = 0, DP = 0;
  int CT = 0;                      // column tiles in all

  Geometry(int64_t K_, const std::vector<int64_t>& dims) : M(static_cast<int>(dims.size())), K(K_) {
    if (M < 1 || M > kMaxM) throw std::invalid_argument("between 1 and 64 modalities are supported");
    if (K < 0) throw std::invalid_argument("n_clusters must be >= 0");
    Kp = pad_to(std::max<int64_t>(K, 1), kPad);
    for (int m = 0; m < M; ++m) {
      if (dims[m] < 1) throw std::invalid_argument("modality " + std::to_string(m) + " has width 0");
      d.push_back(dims[m]);
      dp.push_back(pad_to(dims[m], kPad));
      off.push_back(D);
      poff.push_back(DP);
      ct_off.push_back(CT);
      D += dims[m];
      DP += dp.back();
      CT += static_cast<int>(ceil_div(dims[m], 32));
    }
    if (DP >= (int64_t{1} << 31)) throw std::invalid_argument("total width too large for the CUDA path");
  }
};

/// One modality as kernels see it (by value, in Desc).
struct ModDesc {
  const void* x;   // device rows (never read where absent)
  int64_t stride;  // row stride in elements
  int32_t d, dp;   // width, padded width
  int32_t off;     // offset in D
  int32_t poff;    // offset in DP
  int32_t ct_off;  // first column tile
  int32_t dtype;   // 0 float32, 1 float64
};

/// The data of a call, by value (2.6 KB).
struct Desc {
  ModDesc mod[kMaxM];
  const uint8_t* present;  // n x M
  int64_t n;
  int M;
  int D, DP, CT;
};

/// One output modality (completion), by value.
struct OutMod {
  void* o;
  int64_t stride;
  int32_t dtype;
  int32_t inplace;  // the output is the input itself: present slots are already there
};
struct OutDesc {
  OutMod mod[kMaxM];
};

inline Desc make_desc(const DeviceData& data, const Geometry& g) {
  if (data.M() != g.M) throw std::invalid_argument("number of modalities differs from the model's");
  Desc s;
  std::memset(&s, 0, sizeof(s));
  s.present = data.present;
  s.n = data.n;
  s.M = g.M;
  s.D = static_cast<int>(g.D);
  s.DP = static_cast<int>(g.DP);
  s.CT = g.CT;
  for (int m = 0; m < g.M; ++m) {
    const DeviceMatrix& X = data.X[m];
    if (X.rows != data.n) throw std::invalid_argument("modality arrays and mask differ in row count");
    if (X.cols != g.d[m])
      throw std::invalid_argument("modality " + std::to_string(m) + " has width " + std::to_string(X.cols) +
                                  " but the model has " + std::to_string(g.d[m]));
    if (X.rows > 0 && X.data == nullptr) throw std::invalid_argument("null device pointer");
    ModDesc& md = s.mod[m];
    md.x = X.data;
    md.stride = X.rows > 1 ? X.row_stride : X.cols;
    md.d = static_cast<int32_t>(g.d[m]);
    md.dp = static_cast<int32_t>(g.dp[m]);
    md.off = static_cast<int32_t>(g.off[m]);
    md.poff = static_cast<int32_t>(g.poff[m]);
    md.ct_off = g.ct_off[m];
    md.dtype = X.dtype == DType::F32 ? 0 : 1;
  }
  return s;
}

inline std::vector<int64_t> dims_of(const DeviceData& d) {
  std::vector<int64_t> v;
  for (const auto& X : d.X) v.push_back(X.cols);
  return v;
}

// ------------------------------------------------------------------ model tables

/// Device pointers of a model's tables (a model buffer, or the Lloyd loop's workspace).
struct NormTables {
  double *mu = nullptr, *sigma = nullptr, *inv_sigma = nullptr;    // D
  float *mu_f = nullptr, *sigma_f = nullptr, *inv_sigma_f = nullptr;  // D
};
struct CentreTables {
  double* cz = nullptr;        // K x D z-space centres, 0 where absent
  uint8_t* H = nullptr;        // K x M presence
  float* zf = nullptr;         // per m: Kp x dp_m float32 centres at Kp * poff[m], zero padded
  double* cnorm = nullptr;     // M x Kp: ||zf||^2 in float64
  uint64_t* hmask = nullptr;   // K presence bitmasks
};
struct CompletionTables {
  double* raw = nullptr;       // K x D raw-space centres (docs/algorithm.md section 6), 0 where absent
  float* raw_f = nullptr;      // K x D, float32
  double* f = nullptr;         // K x K x M, direct differences
  uint64_t* any_h = nullptr;   // 1: modalities carried by some centre
};

inline void carve(Arena& a, const Geometry& g, NormTables& t) {
  t.mu = a.take<double>(g.D);
  t.sigma = a.take<double>(g.D);
  t.inv_sigma = a.take<double>(g.D);
  t.mu_f = a.take<float>(g.D);
  t.sigma_f = a.take<float>(g.D);
  t.inv_sigma_f = a.take<float>(g.D);
}
inline void carve(Arena& a, const Geometry& g, CentreTables& t) {
  t.cz = a.take<double>(g.K * g.D);
  t.H = a.take<uint8_t>(g.K * g.M);
  t.zf = a.take<float>(g.Kp * g.DP);
  t.cnorm = a.take<double>(g.M * g.Kp);
  t.hmask = a.take<uint64_t>(g.K);
}
inline void carve(Arena& a, const Geometry& g, CompletionTables& t) {
  t.raw = a.take<double>(g.K * g.D);
  t.raw_f = a.take<float>(g.K * g.D);
  t.f = a.take<double>(g.K * g.K * g.M);
  t.any_h = a.take<uint64_t>(1);
}

/// What kernels read of a model, by value.
struct ModelView {
  int M;
  int64_t K, Kp, D, DP;
  const double *mu, *sigma, *inv_sigma;
  const float *mu_f, *sigma_f, *inv_sigma_f;
  const double* cz;
  const uint8_t* H;
  const float* zf;
  const double* cnorm;
  const uint64_t* hmask;
  const double* raw;
  const float* raw_f;
  const double* f;
  const uint64_t* any_h;
};

inline ModelView view_of(const Geometry& g, const NormTables& n, const CentreTables& c,
                         const CompletionTables* ct = nullptr) {
  ModelView v;
  v.M = g.M;
  v.K = g.K;
  v.Kp = g.Kp;
  v.D = g.D;
  v.DP = g.DP;
  v.mu = n.mu;
  v.sigma = n.sigma;
  v.inv_sigma = n.inv_sigma;
  v.mu_f = n.mu_f;
  v.sigma_f = n.sigma_f;
  v.inv_sigma_f = n.inv_sigma_f;
  v.cz = c.cz;
  v.H = c.H;
  v.zf = c.zf;
  v.cnorm = c.cnorm;
  v.hmask = c.hmask;
  v.raw = ct ? ct->raw : nullptr;
  v.raw_f = ct ? ct->raw_f : nullptr;
  v.f = ct ? ct->f : nullptr;
  v.any_h = ct ? ct->any_h : nullptr;
  return v;
}

/// The layout of a model buffer (model.cu): norm, centre and (optionally) completion tables.
struct ModelBuffer {
  NormTables norm;
  CentreTables cent;
  CompletionTables comp;
  bool completion = false;
};
inline size_t carve_model(Arena& a, const Geometry& g, ModelBuffer& b, bool completion) {
  carve(a, g, b.norm);
  carve(a, g, b.cent);
  b.completion = completion;
  if (completion) carve(a, g, b.comp);
  return a.used();
}

// ------------------------------------------------------------------ host-side builders
// (model.cu)
void build_norm_tables(const Geometry& g, const double* mu, const double* sigma, const NormTables& t,
                       cudaStream_t s);
/// cz / H from caller centres (zeroing absent slots), then the centre tables.
void load_centres(const Geometry& g, const double* C, const uint8_t* H, const CentreTables& t, cudaStream_t s);
/// zf, cnorm, hmask from cz / H (cz already 0 where absent).
void centre_tables(const Geometry& g, const CentreTables& t, cudaStream_t s);
void completion_tables(const Geometry& g, const NormTables& n, const CentreTables& c, const CompletionTables& t,
                       cudaStream_t s);

// (stats.cu)
/// amask[i] = presence bitmask of row i.
void row_masks(const Desc& desc, uint64_t* amask, cudaStream_t s);

// (assign.cu) the assignment pass, per chunk of rows
struct ChunkBuffers {
  int64_t rows = 0;       // chunk rows (capacity)
  int64_t ntile = 0;      // compaction tiles per chunk
  float* e = nullptr;     // M x rows x Kp
  float* z = nullptr;     // rows x DP (compacted rows of each modality at rows * poff[m])
  double* zz = nullptr;   // M x rows
  int* idx = nullptr;     // M x rows compacted row lists
  int* cnt = nullptr;     // M counts
  int* tile_cnt = nullptr;  // M x ntile
};
int64_t chunk_rows_for(int64_t n, const Geometry& g, size_t budget, int64_t extra_per_row);
void carve(Arena& a, const Geometry& g, int64_t rows, ChunkBuffers& b);

/// e table of rows [r0, r0 + nr): for every modality m, the rows present in m (and with
/// `select_partial`, only rows with a missing modality) are normalised, compacted and
/// multiplied by the centres; e[m][t][l] is written for those rows t.
void e_table_chunk(const Desc& desc, const ModelView& mv, const uint64_t* amask, int64_t r0, int64_t nr,
                   bool select_partial, const ChunkBuffers& b, cudaStream_t s);

/// Assignment of every row: labels / min_d2 (each may be null: then not written).
void assign_rows(const Desc& desc, const ModelView& mv, const uint64_t* amask, const ChunkBuffers& b,
                 int32_t* labels, double* min_d2, cudaStream_t s);

/// Fixed-order reductions of an assignment: inertia (sum of min_d2 over labelled rows),
/// unassigned and changed counts (vs prev, when given), written to out (device):
/// out_d[0] = inertia, out_i[0] = n_unassigned, out_i[1] = n_changed.
struct AssignReduce {
  int64_t ntile = 0;
  double* part_d = nullptr;
  long long* part_i = nullptr;
};
void carve(Arena& a, int64_t n, AssignReduce& r);
void reduce_assignment(int64_t n, const int32_t* labels, const int32_t* prev, const double* min_d2,
                       const AssignReduce& r, double* out_d, long long* out_i, cudaStream_t s);

// (compaction, assign.cu) idx[m * ld + r] = the r-th t in [0, nr) (ascending) with
// predicate(t, m); cnt[m] = their number. Predicates:
enum class Pick : int {
  Present = 0,         // present(r0 + t, m)
  PresentPartial = 1,  // present and the row misses some modality
  Flag = 2,            // flags[t * M + m] != 0
};
void compact(const Desc& desc, const uint64_t* amask, int64_t r0, int64_t nr, Pick pick, const uint8_t* flags,
             int M_pred, int* idx, int64_t ld, int* cnt, int* tile_cnt, int64_t ntile, cudaStream_t s);

// ------------------------------------------------------------------ device primitives

template <class T>
__host__ __device__ __forceinline__ T tmin(T a, T b) { return b < a ? b : a; }

template <class F>
__device__ __forceinline__ void for_bits(uint64_t b, F&& f) {
  while (b) {
    f(__ffsll(static_cast<long long>(b)) - 1);
    b &= b - 1;
  }
}

__device__ __forceinline__ int lane_id() { return static_cast<int>(threadIdx.x & 31); }

/// Sum over the warp; every lane gets the same bits (butterfly of commutative adds).
template <class T>
__device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFull, v, o);
  return v;
}

/// Best value over the warp by `better(u, v)` (take the other lane's u over v); every lane
/// gets the same value (butterfly). warp_min / warp_max below.
template <class T, class Better>
__device__ __forceinline__ T warp_best(T v, Better better) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const T u = __shfl_xor_sync(kFull, v, o);
    v = better(u, v) ? u : v;
  }
  return v;
}

template <class T>
__device__ __forceinline__ T warp_min(T v) {
  return warp_best(v, [](T u, T w) { return u < w; });
}

template <class T>
__device__ __forceinline__ T warp_max(T v) {
  return warp_best(v, [](T u, T w) { return u > w; });
}

/// (value, index) argmin over the warp: the lowest value, ties to the lowest index.
__device__ __forceinline__ void warp_argmin(double& v, int& idx) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const double ov = __shfl_xor_sync(kFull, v, o);
    const int oi = __shfl_xor_sync(kFull, idx, o);
    if (ov < v || (ov == v && static_cast<unsigned>(oi) < static_cast<unsigned>(idx))) {
      v = ov;
      idx = oi;
    }
  }
}

/// Inclusive scan over the warp (fixed structure).
template <class T>
__device__ __forceinline__ T warp_inclusive_scan(T v) {
  const int lane = lane_id();
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const T u = __shfl_up_sync(kFull, v, o);
    if (lane >= o) v += u;
  }
  return v;
}

/// Inclusive scan over the block (blockDim.x a multiple of 32, at most 1024); `sh` holds 32
/// values; every thread gets the block total. Fixed structure: same bits every run.
template <class T>
__device__ __forceinline__ T block_inclusive_scan(T v, T* sh, T& total) {
  const int lane = lane_id(), warp = static_cast<int>(threadIdx.x >> 5);
  const int nw = static_cast<int>(blockDim.x >> 5);
  v = warp_inclusive_scan(v);
  if (lane == 31) sh[warp] = v;
  __syncthreads();
  if (warp == 0) {
    T w = lane < nw ? sh[lane] : T(0);
    w = warp_inclusive_scan(w);
    sh[lane] = w;
  }
  __syncthreads();
  if (warp > 0) v += sh[warp - 1];
  total = sh[nw - 1];
  __syncthreads();
  return v;
}

/// Exclusive scan over the block, computed without subtracting (so float64 prefixes are
/// sums of the preceding values in a fixed association); every thread gets the total.
template <class T>
__device__ __forceinline__ T block_exclusive_scan(T v, T* sh, T& total) {
  const int lane = lane_id(), warp = static_cast<int>(threadIdx.x >> 5);
  const int nw = static_cast<int>(blockDim.x >> 5);
  const T incl = warp_inclusive_scan(v);
  T excl = __shfl_up_sync(kFull, incl, 1);
  if (lane == 0) excl = T(0);
  if (lane == 31) sh[warp] = incl;
  __syncthreads();
  if (warp == 0) {
    const T w = lane < nw ? sh[lane] : T(0);
    const T wi = warp_inclusive_scan(w);
    T we = __shfl_up_sync(kFull, wi, 1);
    if (lane == 0) we = T(0);
    __syncwarp();
    sh[lane] = we;  // exclusive prefix of warp `lane`
    if (lane == 31) sh[32] = wi;  // total (sh holds 33 values)
  }
  __syncthreads();
  const T out = warp > 0 ? sh[warp] + excl : excl;
  total = sh[32];
  __syncthreads();
  return out;
}

/// Sum over the block (fixed structure); every thread gets it. `sh` holds 32 values.
template <class T>
__device__ __forceinline__ T block_sum(T v, T* sh) {
  const int lane = lane_id(), warp = static_cast<int>(threadIdx.x >> 5);
  const int nw = static_cast<int>(blockDim.x >> 5);
  v = warp_sum(v);
  if (lane == 0) sh[warp] = v;
  __syncthreads();
  T t = lane < nw ? sh[lane] : T(0);
  t = warp_sum(t);
  __syncthreads();
  return t;
}

/// Max over the block, in the threads of the first warp (the others get `lo`, which must
/// not exceed any value); `sh` holds 32 values. Every thread of the block calls it.
template <class T>
__device__ __forceinline__ T block_max_warp0(T v, T* sh, T lo) {
  v = warp_max(v);
  if (lane_id() == 0) sh[threadIdx.x >> 5] = v;
  __syncthreads();
  T y = lo;
  if (threadIdx.x < 32) {
    y = threadIdx.x < (blockDim.x >> 5) ? sh[threadIdx.x] : lo;
    y = warp_max(y);
  }
  return y;
}

/// Column sums of a 32 x 8 block (threadIdx.x the column, threadIdx.y one of 8 row lanes):
/// the lanes' float64 partial sums `acc` folded in a fixed order into *out, written by lane
/// 0 where `valid`. `s` is the block's shared 8 x 33 buffer; every thread of the block calls it.
__device__ __forceinline__ void fold_row_lanes(double (*s)[33], double acc, bool valid, double* out) {
  const int tx = threadIdx.x, ty = threadIdx.y;
  s[ty][tx] = acc;
  __syncthreads();
  if (ty == 0 && valid) {
    const double a = (s[0][tx] + s[1][tx]) + (s[2][tx] + s[3][tx]);
    const double b = (s[4][tx] + s[5][tx]) + (s[6][tx] + s[7][tx]);
    *out = a + b;
  }
  __syncthreads();
}

/// x[i, k] of a modality as float64.
__device__ __forceinline__ double load_x(const ModDesc& md, int64_t i, int64_t k) {
  return md.dtype == 0 ? static_cast<double>(static_cast<const float*>(md.x)[i * md.stride + k])
                       : static_cast<const double*>(md.x)[i * md.stride + k];
}

/// Normalised value as the CPU's normalize kernels compute it: float32 arithmetic for
/// float32 data (float mu and 1/sigma), float64 arithmetic rounded once for float64 data.
__device__ __forceinline__ float norm_z(const ModDesc& md, const ModelView& mv, int64_t i, int64_t k) {
  const int64_t c = md.off + k;
  if (md.dtype == 0) {
    const float x = static_cast<const float*>(md.x)[i * md.stride + k];
    return __fmul_rn(__fsub_rn(x, mv.mu_f[c]), mv.inv_sigma_f[c]);
  }
  const double x = static_cast<const double*>(md.x)[i * md.stride + k];
  return static_cast<float>(__dmul_rn(__dsub_rn(x, mv.mu[c]), mv.inv_sigma[c]));
}

/// The last modality whose offset `key` (ascending in m) is <= v: binary search.
__device__ __forceinline__ int mod_by(const Desc& desc, int32_t ModDesc::*key, int64_t v) {
  int lo = 0, hi = desc.M - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) >> 1;
    if (desc.mod[mid].*key <= v) lo = mid; else hi = mid - 1;
  }
  return lo;
}

/// The modality of flat feature c.
__device__ __forceinline__ int mod_of(const Desc& desc, int64_t c) { return mod_by(desc, &ModDesc::off, c); }

/// The modality of padded feature p.
__device__ __forceinline__ int mod_of_padded(const Desc& desc, int64_t p) { return mod_by(desc, &ModDesc::poff, p); }

/// Thread column tx of column tile ct (32 features of modality m): feature k, and whether
/// k < d_m.
struct TileColumn {
  int m;
  int64_t k;
  bool valid;
};
__device__ __forceinline__ TileColumn tile_column(const Desc& desc, int ct, int tx) {
  const int m = mod_by(desc, &ModDesc::ct_off, ct);
  const int64_t k = static_cast<int64_t>(ct - desc.mod[m].ct_off) * 32 + tx;
  return {m, k, k < desc.mod[m].d};
}

__device__ __forceinline__ uint64_t full_mask(int M) {
  return M >= 64 ? ~uint64_t{0} : ((uint64_t{1} << M) - 1);
}

/// Grid size for `items` work items of `per_block` each, capped (kernels grid-stride).
inline unsigned grid_for(int64_t items, int64_t per_block, int64_t cap = 1 << 20) {
  const int64_t b = ceil_div(std::max<int64_t>(items, 1), per_block);
  return static_cast<unsigned>(std::min<int64_t>(b, cap));
}

}  // namespace ul4m4::cuda::detail
