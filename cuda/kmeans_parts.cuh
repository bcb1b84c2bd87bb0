// Internal to the CUDA engine (not installed): the parts of masked k-means on the device,
// shared by kmeans.cu (the Lloyd loop and restarts), update.cu (the centre update) and
// seed.cu (k-means++). The split mirrors cpp/: one unit per job.
#pragma once

#include "common.cuh"

namespace ul4m4::cuda::detail {

constexpr int kSortTile = 1024;  // rows per warp in the stable scatter of the update
constexpr int kSeedTile = 1024;  // rows per block in the seeding reductions (256 x 4)

// ------------------------------------------------------------------ centre update (update.cu)

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

/// The update of one Lloyd iteration: centres `nw` (cz, H and their derived tables) from the
/// members of each cluster under `labels`, the old centres `old` for clusters with no member.
void update_centres(const Desc& desc, const Geometry& g, const UpdateLayout& u, const int32_t* labels,
                    const uint64_t* amask, const NormTables& norm, const CentreTables& old, const CentreTables& nw,
                    cudaStream_t s);

/// *out = max_j D(a_j, b_j), the partial distance over the modalities both carry (inf for a
/// centre that shares none with its other self); `shift` is K doubles of scratch.
void max_centre_shift(const Desc& desc, int64_t K, const CentreTables& a, const CentreTables& b, double* shift,
                      double* out, cudaStream_t s);

/// Centres out (K x D doubles, NaN where absent) and presence out (K x M); either may be null.
void write_centres(const Desc& desc, int64_t K, const CentreTables& t, double* C, uint8_t* H, cudaStream_t s);

// ------------------------------------------------------------------ k-means++ (seed.cu)

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

inline void check_interrupt(const Launch& L) {
  if (L.interrupted && L.interrupted()) throw Interrupted();
}

/// k-means++ into the centre tables `c` (cz and H; the caller builds the other tables).
void seed_into(const Desc& desc, const Geometry& g, const ModelView& mv, const uint64_t* amask, const SeedLayout& sl,
               int64_t K, uint64_t seed, const CentreTables& c, const Launch& L);

}  // namespace ul4m4::cuda::detail
