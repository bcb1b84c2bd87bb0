// The fitted model on the device and the tables derived from it once (mirrors
// cpp/model.cpp): normalisation tables, zero-padded float32 centres and their float64
// norms, presence bitmasks, raw-space centres and the K x K x M table f.
#include "common.cuh"

namespace ul4m4::cuda {
using namespace detail;

namespace {

// A Desc carrying only the geometry (no data): kernels use its offsets.
Desc geo_desc(const Geometry& g) {
  Desc s;
  std::memset(&s, 0, sizeof(s));
  s.M = g.M;
  s.D = static_cast<int>(g.D);
  s.DP = static_cast<int>(g.DP);
  s.CT = g.CT;
  for (int m = 0; m < g.M; ++m) {
    s.mod[m].d = static_cast<int32_t>(g.d[m]);
    s.mod[m].dp = static_cast<int32_t>(g.dp[m]);
    s.mod[m].off = static_cast<int32_t>(g.off[m]);
    s.mod[m].poff = static_cast<int32_t>(g.poff[m]);
    s.mod[m].ct_off = g.ct_off[m];
  }
  return s;
}

__global__ void norm_tables_kernel(int64_t D, const double* mu, const double* sigma, NormTables t) {
  for (int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; c < D;
       c += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const double m = mu[c], s = sigma[c];
    const double inv = 1.0 / s;
    t.mu[c] = m;
    t.sigma[c] = s;
    t.inv_sigma[c] = inv;
    t.mu_f[c] = static_cast<float>(m);
    t.sigma_f[c] = static_cast<float>(s);
    t.inv_sigma_f[c] = static_cast<float>(inv);
  }
}

__global__ void load_centres_kernel(Desc g, int64_t K, const double* C, const uint8_t* H, CentreTables t) {
  const int64_t total = K * g.D;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t j = e / g.D, c = e - j * g.D;
    const int m = mod_of(g, c);
    const bool has = H[j * g.M + m] != 0;
    t.cz[e] = has ? C[e] : 0.0;
    if (c == g.mod[m].off) t.H[j * g.M + m] = has ? 1 : 0;
  }
}

// zf (Kp x DP, zero padded) and hmask from cz / H.
__global__ void centre_zf_kernel(Desc g, int64_t K, int64_t Kp, CentreTables t) {
  const int64_t total = Kp * g.DP;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t p = e % g.DP;
    const int64_t j = e / g.DP;
    const int m = mod_of_padded(g, p);
    const ModDesc& md = g.mod[m];
    const int64_t k = p - md.poff;
    float v = 0.f;
    if (j < K && k < md.d && t.H[j * g.M + m]) v = static_cast<float>(t.cz[j * g.D + md.off + k]);
    t.zf[Kp * md.poff + j * md.dp + k] = v;
  }
  for (int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; j < K;
       j += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    uint64_t b = 0;
    for (int m = 0; m < g.M; ++m) b |= static_cast<uint64_t>(t.H[j * g.M + m] != 0) << m;
    t.hmask[j] = b;
  }
}

// cnorm[m][j] = sum_k double(zf)^2: one warp per (m, j), j < Kp (0 for padding / absent).
__global__ void centre_norm_kernel(Desc g, int64_t K, int64_t Kp, CentreTables t) {
  const int lane = lane_id();
  const int64_t items = static_cast<int64_t>(g.M) * Kp;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x >> 5);
  for (int64_t w = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) >> 5; w < items; w += warps) {
    const int m = static_cast<int>(w / Kp);
    const int64_t j = w - m * Kp;
    const ModDesc& md = g.mod[m];
    double s = 0.0;
    if (j < K && t.H[j * g.M + m]) {
      const float* z = t.zf + Kp * md.poff + j * md.dp;
      for (int64_t k = lane; k < md.d; k += 32) {
        const double v = z[k];
        s = __dadd_rn(s, __dmul_rn(v, v));
      }
      s = warp_sum(s);
    }
    if (lane == 0) t.cnorm[m * Kp + j] = s;
  }
}

__global__ void raw_centres_kernel(Desc g, int64_t K, NormTables n, CentreTables c, CompletionTables t) {
  const int64_t total = K * g.D;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t j = e / g.D, col = e - j * g.D;
    const int m = mod_of(g, col);
    double x = 0.0;
    if (c.H[j * g.M + m]) x = __dadd_rn(__dmul_rn(c.cz[e], n.sigma[col]), n.mu[col]);  // docs/algorithm.md section 6
    t.raw[e] = x;
    t.raw_f[e] = static_cast<float>(x);
  }
}

// f[j,l,m] = ||c_j^m - c_l^m||^2 / d_m by direct differences (exact zeros on the diagonal,
// exactly symmetric): 16 x 16 (j, l) pairs per block, one modality per blockIdx.z, each
// thread summing its pair in ascending k.
__global__ void f_table_kernel(Desc g, int64_t K, CentreTables c, double* f) {
  __shared__ double A[16][33], B[16][33];
  const int m = blockIdx.z;
  const ModDesc& md = g.mod[m];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int tid = ty * 16 + tx;
  for (int64_t jb = static_cast<int64_t>(blockIdx.y) * 16; jb < K; jb += static_cast<int64_t>(gridDim.y) * 16)
    for (int64_t lb = static_cast<int64_t>(blockIdx.x) * 16; lb < K; lb += static_cast<int64_t>(gridDim.x) * 16) {
      const int64_t j = jb + ty, l = lb + tx;
      double s = 0.0;
      for (int64_t k0 = 0; k0 < md.d; k0 += 32) {
        for (int q = tid; q < 16 * 32; q += 256) {
          const int r = q / 32, kk = q % 32;
          const int64_t k = k0 + kk;
          const int64_t ja = jb + r, lbb = lb + r;
          A[r][kk] = (ja < K && k < md.d) ? c.cz[ja * g.D + md.off + k] : 0.0;
          B[r][kk] = (lbb < K && k < md.d) ? c.cz[lbb * g.D + md.off + k] : 0.0;
        }
        __syncthreads();
        const int kmax = static_cast<int>(tmin<int64_t>(32, md.d - k0));
        for (int kk = 0; kk < kmax; ++kk) {
          const double t = A[ty][kk] - B[tx][kk];
          s = __dadd_rn(s, __dmul_rn(t, t));
        }
        __syncthreads();
      }
      if (j < K && l < K) {
        const bool both = c.H[j * g.M + m] && c.H[l * g.M + m];
        f[(j * K + l) * g.M + m] = both ? s / static_cast<double>(md.d) : 0.0;
      }
    }
}

__global__ void any_h_kernel(int64_t K, const uint64_t* hmask, uint64_t* any_h) {
  __shared__ unsigned long long acc;
  if (threadIdx.x == 0) acc = 0;
  __syncthreads();
  unsigned long long b = 0;
  for (int64_t j = threadIdx.x; j < K; j += blockDim.x) b |= hmask[j];
  atomicOr(&acc, b);
  __syncthreads();
  if (threadIdx.x == 0) *any_h = acc;
}

}  // namespace

namespace detail {

void build_norm_tables(const Geometry& g, const double* mu, const double* sigma, const NormTables& t,
                       cudaStream_t s) {
  norm_tables_kernel<<<grid_for(g.D, kThreads), kThreads, 0, s>>>(g.D, mu, sigma, t);
  UL4M4_CUDA_CHECK_LAUNCH("norm_tables");
}

void centre_tables(const Geometry& g, const CentreTables& t, cudaStream_t s) {
  const Desc gd = geo_desc(g);
  centre_zf_kernel<<<grid_for(g.Kp * g.DP, kThreads), kThreads, 0, s>>>(gd, g.K, g.Kp, t);
  UL4M4_CUDA_CHECK_LAUNCH("centre_zf");
  centre_norm_kernel<<<grid_for(g.M * g.Kp, kWarpsPerBlock), kThreads, 0, s>>>(gd, g.K, g.Kp, t);
  UL4M4_CUDA_CHECK_LAUNCH("centre_norm");
}

void load_centres(const Geometry& g, const double* C, const uint8_t* H, const CentreTables& t, cudaStream_t s) {
  if (g.K > 0) {
    load_centres_kernel<<<grid_for(g.K * g.D, kThreads), kThreads, 0, s>>>(geo_desc(g), g.K, C, H, t);
    UL4M4_CUDA_CHECK_LAUNCH("load_centres");
  }
  centre_tables(g, t, s);
}

void completion_tables(const Geometry& g, const NormTables& n, const CentreTables& c, const CompletionTables& t,
                       cudaStream_t s) {
  const Desc gd = geo_desc(g);
  if (g.K > 0) {
    raw_centres_kernel<<<grid_for(g.K * g.D, kThreads), kThreads, 0, s>>>(gd, g.K, n, c, t);
    UL4M4_CUDA_CHECK_LAUNCH("raw_centres");
    const unsigned b = static_cast<unsigned>(std::min<int64_t>(ceil_div(g.K, 16), 65535));
    f_table_kernel<<<dim3(b, b, g.M), dim3(16, 16), 0, s>>>(gd, g.K, c, t.f);
    UL4M4_CUDA_CHECK_LAUNCH("f_table");
  }
  any_h_kernel<<<1, kThreads, 0, s>>>(g.K, c.hmask, t.any_h);
  UL4M4_CUDA_CHECK_LAUNCH("any_h");
}

}  // namespace detail

size_t model_bytes(int64_t K, const std::vector<int64_t>& dims, bool completion) {
  const Geometry g(K, dims);
  Arena a;
  ModelBuffer b;
  return carve_model(a, g, b, completion);
}

void build_model(void* model, int64_t K, const std::vector<int64_t>& dims, const double* mu,
                 const double* sigma, const double* C, const uint8_t* H, bool completion, const Launch& L) {
  DeviceGuard guard(L.device);
  const Geometry g(K, dims);
  if (K < 1) throw std::invalid_argument("a model needs at least one centre");
  Arena a(model, model_bytes(K, dims, completion));
  ModelBuffer b;
  carve_model(a, g, b, completion);
  build_norm_tables(g, mu, sigma, b.norm, L.stream);
  load_centres(g, C, H, b.cent, L.stream);
  if (completion) completion_tables(g, b.norm, b.cent, b.comp, L.stream);
}

}  // namespace ul4m4::cuda
