// The UL4M4 engine on a CUDA GPU: the same passes as cpp/include/ul4m4/engine.hpp
// (normalisation statistics, partial-modality distances, masked k-means with k-means++
// seeding, greedy / soft completion), on device memory the caller owns.
// docs/algorithm.md describes the method; section numbers below refer to it.
//
// Host C++ only in this header (no kernels, no torch): every pointer named "device" is a
// device pointer on `Launch::device`; every call enqueues its work on `Launch::stream` and
// returns once it is enqueued, except where a result is returned to the host (the few
// scalars named below), which synchronises that stream. Scratch memory comes from the
// caller's workspace (`Launch::ws`), sized by the matching *_workspace() function for the
// same shapes and `chunk_budget`; nothing is allocated with cudaMalloc.
//
// Determinism: no float atomics anywhere; every float reduction has a fixed order that
// depends on the data's shape only, so two runs give the same bits, for any chunk budget.
// Against the CPU engine: the same decisions (labels, presence sets, winners, ties) and the
// same values to float32 precision; float sums are associated differently, so bits differ.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "ul4m4/common.hpp"

namespace ul4m4::cuda {

// One declaration for both engines (ul4m4/common.hpp).
using ::ul4m4::CompletionParams;
using ::ul4m4::DType;
using ::ul4m4::Interrupted;
using ::ul4m4::IterationStats;
using ::ul4m4::KMeansParams;

/// A CUDA runtime error (launch failure, bad pointer, no device, ...), with the CUDA
/// error string. Input errors are std::invalid_argument, as in the CPU engine.
struct CudaError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// A rows x cols device matrix whose rows are contiguous; row_stride is in elements.
struct DeviceMatrix {
  const void* data = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t row_stride = 0;
  DType dtype = DType::F32;
};

/// A writable device matrix (outputs), same conventions.
struct DeviceOutput {
  void* data = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t row_stride = 0;
  DType dtype = DType::F32;
};

/// One device matrix per modality plus the N x M presence mask (device, uint8 0/1,
/// row-major, contiguous). Values of absent slots are never read.
struct DeviceData {
  std::vector<DeviceMatrix> X;
  const uint8_t* present = nullptr;
  int64_t n = 0;
  int M() const { return static_cast<int>(X.size()); }
};

/// Caller-owned device scratch memory.
struct Workspace {
  void* data = nullptr;
  size_t bytes = 0;
};

/// Where and how a call runs.
struct Launch {
  int device = 0;                     ///< CUDA device ordinal (made current for the call)
  cudaStream_t stream = nullptr;      ///< every kernel and copy goes to this stream
  Workspace ws;                       ///< scratch, at least the *_workspace() bytes
  std::function<bool()> interrupted;  ///< polled between iterations; true = stop
};

/// Default bytes of per-chunk scratch (the row-chunk buffers: e table, z, scores).
constexpr size_t kDefaultChunkBudget = size_t{256} << 20;

// ----------------------------------------------------------------------------- probing

/// Number of visible CUDA devices; 0 and the CUDA error string when there is none (no
/// driver, no GPU, CUDA_VISIBLE_DEVICES empty, driver too old for this runtime).
int device_count(std::string* reason);

/// "name (sm_XY, N MiB)" of a device.
std::string device_name(int device);

// ----------------------------------------------------------------------------- scan

/// Result of the validation scan (section 1 rules on the input).
struct ScanResult {
  int64_t partly_row = -1;  ///< first (row, modality) that is partly NaN (NaN marking only)
  int partly_m = -1;
  int64_t partly_nan = 0;   ///< NaN count of that row
  int64_t bad_row = -1;     ///< first (row, modality) with NaN/inf in a present slot
  int bad_m = -1;
  int64_t n_empty = 0;      ///< rows with no present modality
  int64_t first_empty = -1;
};

size_t scan_workspace(int64_t n, int M);

/// Presence from NaN marking when `d.present` is null (written to `present_out`, N x M),
/// else `d.present` as given; then the finiteness of every present slot and the empty rows.
/// "First" is the lowest (row, modality). Synchronises the stream (the result is on host).
ScanResult scan(const DeviceData& d, uint8_t* present_out, const Launch& L);

// ----------------------------------------------------------------------------- stats

size_t stats_workspace(int64_t n, const std::vector<int64_t>& dims);

/// Section 1: mu (mean) and sigma (population std, <= kSigmaFloor -> 1) per feature over present
/// rows, in float64, written to mu_out / sigma_out (device, D = sum(dims) doubles each, the
/// modalities concatenated). Throws std::invalid_argument for a modality with no present
/// row (as the CPU engine) or a sum that overflowed. Synchronises the stream.
void compute_stats(const DeviceData& d, double* mu_out, double* sigma_out, const Launch& L);

// ----------------------------------------------------------------------------- model

/// Bytes of a device model buffer for K centres of these widths (normalisation tables,
/// centre tables, and with `completion` the raw-space centres and the K x K x M table f).
size_t model_bytes(int64_t K, const std::vector<int64_t>& dims, bool completion);

/// Builds a model buffer (device, `model_bytes` bytes, 256-byte aligned) from fitted
/// statistics mu / sigma (device, D doubles), centres C (device, K x D doubles in z-space,
/// modalities concatenated; anything where absent) and their presence H (device, K x M
/// uint8). The buffer is self-contained: later calls read only it.
void build_model(void* model, int64_t K, const std::vector<int64_t>& dims, const double* mu,
                 const double* sigma, const double* C, const uint8_t* H, bool completion,
                 const Launch& L);

// ----------------------------------------------------------------------------- assign

size_t assign_workspace(int64_t n, int64_t K, const std::vector<int64_t>& dims, size_t chunk_budget);

/// Section 4 assignment against a model buffer: labels[i] (device int32, -1 when every
/// distance is +inf) and min_d2[i] (device double, +inf for -1); either may be null.
void assign(const void* model, int64_t K, const std::vector<int64_t>& dims, const DeviceData& d,
            int32_t* labels, double* min_d2, size_t chunk_budget, const Launch& L);

// ----------------------------------------------------------------------------- k-means

struct KMeansResult {
  double inertia = 0.0;
  int n_iter = 0;
  int64_t n_unassigned = 0;
  bool converged = false;
  std::vector<IterationStats> history;
};

size_t kmeans_workspace(int64_t n, int64_t K, const std::vector<int64_t>& dims, size_t chunk_budget);

/// Masked k-means (sections 3 and 4) on the device. Statistics mu / sigma (device, D
/// doubles). Initial centres init_C (device, K x D z-space doubles) with presence init_H
/// (device, K x M uint8) when given, else k-means++ (n_init runs). Writes the centres
/// (C_out: K x D doubles, NaN where absent), their presence (H_out: K x M uint8) and the
/// labels (labels_out: N int32). `on_iteration` is called after each Lloyd iteration (on
/// the host, after the iteration's scalars came back); false stops.
KMeansResult kmeans(const DeviceData& d, const double* mu, const double* sigma, const KMeansParams& p,
                    const double* init_C, const uint8_t* init_H, double* C_out, uint8_t* H_out,
                    int32_t* labels_out, const std::function<bool(const IterationStats&)>& on_iteration,
                    size_t chunk_budget, const Launch& L);

size_t seed_workspace(int64_t n, int64_t K, const std::vector<int64_t>& dims);

/// k-means++ on the partial distance (section 3) alone: C_out (K x D z-space, 0 where
/// absent) and H_out (K x M). The host draws the random numbers with the CPU engine's
/// generator and rules, so the rows picked are usually the CPU's; they can differ where a
/// float32-rounded distance moves a cumulative weight across the drawn target.
void seed_kmeanspp(const DeviceData& d, const double* mu, const double* sigma, int64_t K, uint64_t seed,
                   double* C_out, uint8_t* H_out, const Launch& L);

// ----------------------------------------------------------------------------- complete

size_t complete_workspace(int64_t n, int64_t K, const std::vector<int64_t>& dims, bool soft,
                          size_t chunk_budget);

/// Completion (sections 5, 5b, 6) against a model buffer built with completion tables.
/// Writes every slot of `out` (device, one per modality, same shapes as the input; an
/// output may be its input itself, then only missing slots are written): present slots
/// copied exactly, missing ones imputed (raw space) or, when they cannot be, set to the
/// training mean. imputed / unfilled: device N x M uint8 outputs.
void complete(const void* model, int64_t K, const std::vector<int64_t>& dims, const DeviceData& d,
              const CompletionParams& p, const std::vector<DeviceOutput>& out, uint8_t* imputed,
              uint8_t* unfilled, size_t chunk_budget, const Launch& L);

}  // namespace ul4m4::cuda
