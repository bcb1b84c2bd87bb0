// A hand-written FP32 tiled GEMM (no cuBLAS, no TF32: every product and sum is an IEEE
// float32 fma, accumulated in ascending k, so results are the same every run).
//
//   C[r][c] = sum_{k < kdim} A[row(r)][k] * B(c, k)    r < n_rows, c < n_cols
//   NT: B(c, k) = B[c * ldb + k]   (rows to centres: z . zf^T)
//   NN: B(c, k) = B[k * ldb + c]   (soft completion: weights . zf)
//
// row(r) = a_rows[r] when a gather list is given, else r; n_rows is read on the device
// (a compaction count) and capped by n_rows_max, so launches need no host round trip.
// Each C element goes to epi(r, c, value): the e table, or raw-space output rows.
// Requirements (the callers' padding guarantees them): kdim % 16 == 0; lda, ldb % 4 == 0;
// 16-byte aligned bases; NT: B has n_cols rows; NN: B has kdim rows and n_cols % 4 == 0.
#pragma once

#include "common.cuh"

namespace ul4m4::cuda::detail {

constexpr int kBM = 64, kBN = 64, kBK = 16;  // 256 threads, 4 x 4 outputs each

__device__ __forceinline__ float4 ldg4(const float* p) { return __ldg(reinterpret_cast<const float4*>(p)); }

template <bool NN, class Epi>
__global__ void __launch_bounds__(256) gemm_kernel(const float* __restrict__ A, int64_t lda,
                                                   const int* __restrict__ a_rows, const int* __restrict__ n_rows_dev,
                                                   int64_t n_rows_max, const float* __restrict__ B, int64_t ldb,
                                                   int64_t kdim, int64_t n_cols, Epi epi) {
  __shared__ __align__(16) float As[kBK][kBM + 4];
  __shared__ __align__(16) float Bs[kBK][kBN + 4];
  const int64_t n_rows = n_rows_dev ? tmin<int64_t>(static_cast<int64_t>(*n_rows_dev), n_rows_max) : n_rows_max;
  const int tid = threadIdx.x, tx = tid & 15, ty = tid >> 4;
  const int a_r = tid >> 2, a_k = (tid & 3) << 2;            // A tile: 64 rows x 16 k
  const int bt_c = tid >> 2, bt_k = (tid & 3) << 2;          // NT B tile: 64 cols x 16 k
  const int bn_k = tid >> 4, bn_c = (tid & 15) << 2;         // NN B tile: 16 k x 64 cols
  const float4 zero = make_float4(0.f, 0.f, 0.f, 0.f);
  for (int64_t rt = blockIdx.y; rt * kBM < n_rows; rt += gridDim.y) {
    for (int64_t ct = blockIdx.x; ct * kBN < n_cols; ct += gridDim.x) {
      const int64_t r0 = rt * kBM, c0 = ct * kBN;
      float acc[4][4];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = 0.f;
      const float* ap = nullptr;
      if (r0 + a_r < n_rows) ap = A + static_cast<int64_t>(a_rows ? a_rows[r0 + a_r] : r0 + a_r) * lda + a_k;
      const float* bp = nullptr;
      if (!NN) {
        if (c0 + bt_c < n_cols) bp = B + (c0 + bt_c) * ldb + bt_k;
      } else {
        if (c0 + bn_c < n_cols) bp = B + static_cast<int64_t>(bn_k) * ldb + c0 + bn_c;
      }
      for (int64_t k0 = 0; k0 < kdim; k0 += kBK) {
        const float4 av = ap ? ldg4(ap + k0) : zero;
        As[a_k + 0][a_r] = av.x;
        As[a_k + 1][a_r] = av.y;
        As[a_k + 2][a_r] = av.z;
        As[a_k + 3][a_r] = av.w;
        if (!NN) {
          const float4 bv = bp ? ldg4(bp + k0) : zero;
          Bs[bt_k + 0][bt_c] = bv.x;
          Bs[bt_k + 1][bt_c] = bv.y;
          Bs[bt_k + 2][bt_c] = bv.z;
          Bs[bt_k + 3][bt_c] = bv.w;
        } else {
          const float4 bv = bp ? ldg4(bp + k0 * ldb) : zero;
          *reinterpret_cast<float4*>(&Bs[bn_k][bn_c]) = bv;
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < kBK; ++kk) {
          const float4 a = *reinterpret_cast<const float4*>(&As[kk][ty * 4]);
          const float4 b = *reinterpret_cast<const float4*>(&Bs[kk][tx * 4]);
          const float av4[4] = {a.x, a.y, a.z, a.w};
          const float bv4[4] = {b.x, b.y, b.z, b.w};
#pragma unroll
          for (int i = 0; i < 4; ++i)
#pragma unroll
            for (int j = 0; j < 4; ++j) acc[i][j] = __fmaf_rn(av4[i], bv4[j], acc[i][j]);
        }
        __syncthreads();
      }
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int64_t r = r0 + ty * 4 + i;
        if (r >= n_rows) continue;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          const int64_t c = c0 + tx * 4 + j;
          if (c < n_cols) epi(r, c, acc[i][j]);
        }
      }
    }
  }
}

template <bool NN, class Epi>
void gemm(const float* A, int64_t lda, const int* a_rows, const int* n_rows_dev, int64_t n_rows_max, const float* B,
          int64_t ldb, int64_t kdim, int64_t n_cols, const Epi& epi, cudaStream_t s) {
  if (n_rows_max <= 0 || n_cols <= 0) return;
  const dim3 grid(static_cast<unsigned>(std::min<int64_t>(ceil_div(n_cols, kBN), 65535)),
                  static_cast<unsigned>(std::min<int64_t>(ceil_div(n_rows_max, kBM), 65535)));
  gemm_kernel<NN, Epi><<<grid, 256, 0, s>>>(A, lda, a_rows, n_rows_dev, n_rows_max, B, ldb, kdim, n_cols, epi);
  UL4M4_CUDA_CHECK_LAUNCH("gemm");
}

}  // namespace ul4m4::cuda::detail
