// Shared kernel bodies, included once by each kernels_<isa>.cpp after it defines a
// traits struct `T` with: vec, W (lanes), R x C (dot-product tile), PACKED (whether
// dot_block uses the packed outer-product path for large blocks), MR and KC (its tile rows
// and k block), WS (vectors of outputs per row that wsum_rows keeps in registers),
// zero(), load(p), store(p, v), bcast(x), add(a, b), fmadd(a, b, c), hsum(v).
// The vector levels (all but scalar, which defines UL4M4_SCALAR_SUMS and writes its own
// normalize_*, accum_* and min_ratio as ordered loops) also give:
//   float lanes: sub(a, b), mul(a, b); SQ_F64 (normalize_f32 sums ||z||^2 in float64);
//   double lanes: dvec, DW, dload(p), dstore(p, v), dbcast(x), dadd, dsub, dmul,
//     dfmadd(a, b, c), dmin(b, v) (lane by lane, the level's own min), dhsum(v),
//     dhmin(b) (the least lane of the MA accumulators b[0..MA)), widen(p) (DW floats at p
//     as doubles), round_store(p, v) (stores float(v) at p, returns it as doubles);
//   accumulator counts: NZ (normalize_f32), ND (normalize_f64), MA (min_ratio).
// Each count and step is the one the level had when its bodies were written per file, so
// every level keeps its bits.
//
// Only intrinsics and plain loops live here: no std templates, so that nothing
// compiled with AVX flags can be picked by the linker for the common code (ODR).
// Everything is in an anonymous namespace for the same reason.
//
// Summation order of one (row, centre) pair, the same whichever path or tile computes it
// (docs/kernels.md): the dp products are split into W lane classes, k = l (mod W); class
// l is one fused multiply-add chain in ascending k starting from 0 (a * b + c where the
// level has no FMA), and the W class sums are reduced by the halving tree of hsum:
// s_l += s_{l+h} for h = W/2, ..., 1, giving s_0. The bounded Lloyd pass evaluates single
// pairs and relies on this. Needs <cstdlib> (std::aligned_alloc, std::free), included by
// the .cpp before its namespaces: this file is included inside namespace ul4m4.

namespace {

// --- Dot-product tiles: R rows x C centres, one vector accumulator per pair whose lanes
// are the W classes. Small blocks (a few rows or centres: single pairs of the bounded
// pass) and the reference the packed path must match bit for bit.
template <int R, int C>
inline void dot_tile(const float* A, int64_t lda, const float* B, int64_t ldb, int64_t dp,
                     float* out, int64_t ldo) {
  typename T::vec acc[R][C];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) acc[r][c] = T::zero();
  for (int64_t k = 0; k < dp; k += T::W) {
    typename T::vec b[C];
    for (int c = 0; c < C; ++c) b[c] = T::load(B + c * ldb + k);
    for (int r = 0; r < R; ++r) {
      const typename T::vec a = T::load(A + r * lda + k);
      for (int c = 0; c < C; ++c) acc[r][c] = T::fmadd(a, b[c], acc[r][c]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) out[r * ldo + c] = T::hsum(acc[r][c]);
}

template <int R>
inline void dot_rows(const float* A, int64_t lda, const float* B, int64_t kr, int64_t ldb,
                     int64_t dp, float* out, int64_t ldo) {
  int64_t j = 0;
  for (; j + T::C <= kr; j += T::C) dot_tile<R, T::C>(A, lda, B + j * ldb, ldb, dp, out + j, ldo);
  for (; j < kr; ++j) dot_tile<R, 1>(A, lda, B + j * ldb, ldb, dp, out + j, ldo);
}

void dot_block_tiles(const float* A, int64_t n, int64_t lda, const float* B, int64_t kr, int64_t ldb,
                     int64_t dp, float* out, int64_t ldo) {
  int64_t i = 0;
  for (; i + T::R <= n; i += T::R) dot_rows<T::R>(A + i * lda, lda, B, kr, ldb, dp, out + i * ldo, ldo);
  for (; i < n; ++i) dot_rows<1>(A + i * lda, lda, B, kr, ldb, dp, out + i * ldo, ldo);
}

// --- Packed outer-product path (the BLIS structure, one GEMM per lane class).
// Centres are packed once per call in panels of NR = 2W: Bp[panel][l][q][c] =
// B[panel * NR + c][q * W + l] (zero for c past the last centre), so class l of a panel is
// a k-major NR-wide strip. The micro-kernel keeps MR rows x NR centres of one class in
// 2 MR vector accumulators: per step q it loads two vectors of centres, broadcasts
// A[row][q * W + l] of each row and issues 2 MR FMAs, no horizontal sum. The loops block
// rows (MC), then panels, then k (KC values: the panel's strip of the block, NR x KC
// floats, stays in L1 across the row tiles); the class sums of MC rows x one panel
// (MC x NR x W floats, in L2) are spilled to float32 between k blocks, which does not
// change them, and reduced by hsum's tree, vectorised over centres, once the panel is
// done. Bits: those of dot_tile. Memory per thread: the packed centres (K x dp, rounded
// up to whole panels) and the class sums (48 x NR x W floats: 96 KiB at AVX-512).
constexpr int kNV = 2;            // vectors of centres per panel
constexpr int64_t kNR = kNV * T::W;
constexpr int64_t kMC = 48;       // rows per block (a multiple of every level's MR)

// Grow-only buffer of this thread (plain malloc: no std container in an ISA file).
struct Scratch64 {
  float* p = nullptr;
  int64_t cap = 0;
  ~Scratch64() { std::free(p); }
  float* get(int64_t count) {
    if (count > cap) {
      std::free(p);
      const size_t bytes = (static_cast<size_t>(count) * sizeof(float) + 63) / 64 * 64;
      p = static_cast<float*>(std::aligned_alloc(64, bytes));
      cap = p ? count : 0;
    }
    return p;
  }
};

void pack_centres(const float* B, int64_t kr, int64_t ldb, int64_t dp, float* Bp) {
  // By blocks of 16 steps: each centre row is read in order (rows 4 KiB apart would alias
  // in L1 if read across), and the block's W x 16 destination lines stay in L1.
  constexpr int64_t kQB = 16;
  const int64_t nq = dp / T::W, npan = (kr + kNR - 1) / kNR;
  for (int64_t p = 0; p < npan; ++p) {
    const int64_t nc = kr - p * kNR < kNR ? kr - p * kNR : kNR;
    float* dst = Bp + p * kNR * dp;
    for (int64_t q0 = 0; q0 < nq; q0 += kQB) {
      const int64_t q1 = nq - q0 < kQB ? nq : q0 + kQB;
      for (int64_t c = 0; c < nc; ++c) {
        const float* s = B + (p * kNR + c) * ldb;
        for (int64_t q = q0; q < q1; ++q)
          for (int l = 0; l < T::W; ++l) dst[(l * nq + q) * kNR + c] = s[q * T::W + l];
      }
      for (int64_t c = nc; c < kNR; ++c)
        for (int64_t q = q0; q < q1; ++q)
          for (int l = 0; l < T::W; ++l) dst[(l * nq + q) * kNR + c] = 0.f;
    }
  }
}

// MR rows (A: row r at A + r * lda, already offset to class l and step q0) x one panel's
// class strip b (nq steps); partial sums P[r * ldp + v * W + lane], from 0 when first.
template <int MR>
inline void outer_tile(const float* A, int64_t lda, const float* b, int64_t nq, float* P, int64_t ldp,
                       bool first) {
  typename T::vec acc[MR][kNV];
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < kNV; ++v) acc[r][v] = first ? T::zero() : T::load(P + r * ldp + v * T::W);
  for (int64_t q = 0; q < nq; ++q) {
    const typename T::vec b0 = T::load(b + q * kNR), b1 = T::load(b + q * kNR + T::W);
    for (int r = 0; r < MR; ++r) {
      const typename T::vec a = T::bcast(A[r * lda + q * T::W]);
      acc[r][0] = T::fmadd(a, b0, acc[r][0]);
      acc[r][1] = T::fmadd(a, b1, acc[r][1]);
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < kNV; ++v) T::store(P + r * ldp + v * T::W, acc[r][v]);
}

template <int MR>
inline void outer_rows(int mr, const float* A, int64_t lda, const float* b, int64_t nq, float* P, int64_t ldp,
                       bool first) {
  if constexpr (MR > 1) {
    if (mr < MR) return outer_rows<MR - 1>(mr, A, lda, b, nq, P, ldp, first);
  }
  outer_tile<MR>(A, lda, b, nq, P, ldp, first);
}

void dot_block_packed(const float* A, int64_t n, int64_t lda, const float* B, int64_t kr, int64_t ldb,
                      int64_t dp, float* out, int64_t ldo, float* Bp, float* P) {
  const int64_t nq = dp / T::W, npan = (kr + kNR - 1) / kNR;
  pack_centres(B, kr, ldb, dp, Bp);
  const int64_t ldp = T::W * kNR;  // P[r * ldp + l * NR + c]: row r's class-l sums of one panel
  for (int64_t i0 = 0; i0 < n; i0 += kMC) {
    const int64_t mc = n - i0 < kMC ? n - i0 : kMC;
    for (int64_t p = 0; p < npan; ++p) {
      for (int64_t k0 = 0; k0 < dp; k0 += T::KC) {
        const int64_t q0 = k0 / T::W, nqb = (dp - k0 < T::KC ? dp - k0 : T::KC) / T::W;
        for (int64_t t = 0; t < mc; t += T::MR) {
          const int mr = static_cast<int>(mc - t < T::MR ? mc - t : T::MR);
          for (int l = 0; l < T::W; ++l)
            outer_rows<T::MR>(mr, A + (i0 + t) * lda + q0 * T::W + l, lda, Bp + ((p * T::W + l) * nq + q0) * kNR,
                              nqb, P + t * ldp + l * kNR, ldp, k0 == 0);
        }
      }
      // Reduce the classes by hsum's halving tree, W centres at a time.
      for (int64_t r = 0; r < mc; ++r)
        for (int v = 0; v < kNV; ++v) {
          const float* s = P + r * ldp + v * T::W;
          typename T::vec q[T::W];
          for (int l = 0; l < T::W; ++l) q[l] = T::load(s + l * kNR);
          for (int h = T::W / 2; h >= 1; h /= 2)
            for (int l = 0; l < h; ++l) q[l] = T::add(q[l], q[l + h]);
          const int64_t j0 = p * kNR + v * T::W;
          float* o = out + (i0 + r) * ldo + j0;
          if (j0 + T::W <= kr) {
            T::store(o, q[0]);
          } else if (j0 < kr) {
            float tmp[T::W];
            T::store(tmp, q[0]);
            for (int64_t c = 0; c < kr - j0; ++c) o[c] = tmp[c];
          }
        }
    }
  }
}

void dot_block(const float* A, int64_t n, int64_t lda, const float* B, int64_t kr, int64_t ldb,
               int64_t dp, float* out, int64_t ldo) {
  // Same bits either way. The packing (kr x dp moves) pays off from a few tiles of rows;
  // UL4M4_DOT_PACKED_ALWAYS (test builds only) takes the packed path for every block of
  // 2 rows and 2 centres or more, at every level, so that it is checked against the tiles.
#if defined(UL4M4_DOT_PACKED_ALWAYS)
  const bool packed = n >= 2 && kr >= 2;
#else
  const bool packed = T::PACKED && n >= 2 * T::MR && kr >= T::W && dp >= 4 * T::W;
#endif
  if (packed) {
    static thread_local Scratch64 bp, part;
    const int64_t npan = (kr + kNR - 1) / kNR;
    float* Bp = bp.get(npan * kNR * dp);
    float* P = part.get(kMC * kNR * T::W);
    if (Bp && P) return dot_block_packed(A, n, lda, B, kr, ldb, dp, out, ldo, Bp, P);
  }
  dot_block_tiles(A, n, lda, B, kr, ldb, dp, out, ldo);
}

// --- Weighted sums of centre rows, one output row: NV vectors of outputs from k, every
// centre row j with a nonzero weight in ascending order, one fused multiply-add per term.
// The reference wsum_block must match, and its path for a single row.
template <int NV>
inline void wsum_tile(const float* w, int64_t K, const float* X, int64_t ldx, int64_t k, float* y) {
  typename T::vec a[NV];
  for (int q = 0; q < NV; ++q) a[q] = T::zero();
  for (int64_t j = 0; j < K; ++j) {
    if (w[j] == 0.f) continue;
    const float* x = X + j * ldx + k;
    const typename T::vec vw = T::bcast(w[j]);
    for (int q = 0; q < NV; ++q) a[q] = T::fmadd(vw, T::load(x + q * T::W), a[q]);
  }
  for (int q = 0; q < NV; ++q) T::store(y + k + q * T::W, a[q]);
}

// WS vectors stay in registers while every centre row streams past (dp is a multiple of
// W: whole vectors are left).
void wsum_rows(const float* w, int64_t K, const float* X, int64_t ldx, int64_t dp, float* y) {
  int64_t k = 0;
  for (; k + T::WS * T::W <= dp; k += T::WS * T::W) wsum_tile<T::WS>(w, K, X, ldx, k, y);
  for (; k < dp; k += T::W) wsum_tile<1>(w, K, X, ldx, k, y);
}

// --- Weighted sums of a block of rows, a GEMM (n x K weights) x (K x dp centres) with
// wsum_rows's bits: every output is the same chain, centre rows in ascending order from 0,
// one fused multiply-add per term. The centres are packed once by wsum_pack (the caller
// keeps them: they are the model's) in panels of kWP outputs (panel p holds X[j][p kWP + c]
// at Xp + p kWP K + j pw, pw its width), and every tile of kWR rows runs on a panel while
// it is in L1. A tile skips the centres whose weights are zero in all its rows (the list is built once
// per tile); one zero in some rows only adds an exact zero to them (an accumulator starting
// at +0 never becomes -0), so the tile shape does not change the bits.
constexpr int kWR = 6;                // rows per tile
constexpr int kWV = T::WS / 2;        // vectors of outputs per tile (AVX2: 6 x 16 in 12 accumulators)
constexpr int64_t kWP = kWV * T::W;  // outputs per panel

// ALL: every centre (js unused: no index loads, the common case at the default temperature).
template <int NR, int NV, bool ALL>
inline void wsum_panel_of(const float* w, int64_t ldw, const int32_t* js, int64_t nj, const float* Xp, int64_t pw,
                          float* y, int64_t ldy) {
  typename T::vec a[NR][NV];
  for (int r = 0; r < NR; ++r)
    for (int q = 0; q < NV; ++q) a[r][q] = T::zero();
  for (int64_t t = 0; t < nj; ++t) {
    const int64_t j = ALL ? t : js[t];
    typename T::vec xq[NV];
    for (int q = 0; q < NV; ++q) xq[q] = T::load(Xp + j * pw + q * T::W);
    for (int r = 0; r < NR; ++r) {
      const typename T::vec vw = T::bcast(w[r * ldw + j]);
      for (int q = 0; q < NV; ++q) a[r][q] = T::fmadd(vw, xq[q], a[r][q]);
    }
  }
  for (int r = 0; r < NR; ++r)
    for (int q = 0; q < NV; ++q) T::store(y + r * ldy + q * T::W, a[r][q]);
}

// js null: every centre.
template <int NR, int NV>
inline void wsum_panel(const float* w, int64_t ldw, const int32_t* js, int64_t nj, const float* Xp, int64_t pw,
                       float* y, int64_t ldy) {
  if (js)
    wsum_panel_of<NR, NV, false>(w, ldw, js, nj, Xp, pw, y, ldy);
  else
    wsum_panel_of<NR, NV, true>(w, ldw, js, nj, Xp, pw, y, ldy);
}

template <int NR>
inline void wsum_tile_rows(int nr, const float* w, int64_t ldw, const int32_t* js, int64_t nj, const float* Xp,
                           int64_t pw, float* y, int64_t ldy) {
  if constexpr (NR > 1) {
    if (nr < NR) return wsum_tile_rows<NR - 1>(nr, w, ldw, js, nj, Xp, pw, y, ldy);
  }
  if (pw == kWP)
    wsum_panel<NR, kWV>(w, ldw, js, nj, Xp, pw, y, ldy);
  else
    for (int64_t c = 0; c < pw; c += T::W) wsum_panel<NR, 1>(w, ldw, js, nj, Xp + c, pw, y + c, ldy);
}

void wsum_pack(const float* X, int64_t K, int64_t ldx, int64_t dp, float* Xp) {
  for (int64_t j = 0; j < K; ++j)
    for (int64_t k0 = 0; k0 < dp; k0 += kWP) {
      const int64_t pw = dp - k0 < kWP ? dp - k0 : kWP;
      for (int64_t c = 0; c < pw; c += T::W) T::store(Xp + k0 * K + j * pw + c, T::load(X + j * ldx + k0 + c));
    }
}

void wsum_block(const float* W, int64_t n, int64_t K, const float* Xp, int64_t dp, float* Y, int64_t ldy) {
  static thread_local Scratch64 jl;
  const int64_t ntiles = (n + kWR - 1) / kWR;
  // Per tile of rows, its centres (int32 in float-sized slots of malloc'd memory): the
  // count, then the ascending list. Without memory every tile takes every centre, which
  // gives the same bits.
  int32_t* js = reinterpret_cast<int32_t*>(jl.get(ntiles * (K + 1)));
  for (int64_t t = 0; js && t < ntiles; ++t) {
    const int nr = static_cast<int>(n - t * kWR < kWR ? n - t * kWR : kWR);
    const float* w = W + t * kWR * K;
    int32_t* list = js + t * (K + 1);
    int32_t nj = 0;
    for (int64_t j = 0; j < K; ++j) {
      bool any = false;
      for (int r = 0; r < nr; ++r) any = any || w[r * K + j] != 0.f;
      if (any) list[1 + nj++] = static_cast<int32_t>(j);
    }
    list[0] = nj;
  }
  // Panel by panel: its K x pw centres (4 KiB at AVX2) stay in L1 across the row tiles.
  for (int64_t k0 = 0; k0 < dp; k0 += kWP) {
    const int64_t pw = dp - k0 < kWP ? dp - k0 : kWP;
    for (int64_t t = 0; t < ntiles; ++t) {
      const int nr = static_cast<int>(n - t * kWR < kWR ? n - t * kWR : kWR);
      const int32_t* list = js ? js + t * (K + 1) : nullptr;
      const int32_t* js_t = list && list[0] < K ? list + 1 : nullptr;
      wsum_tile_rows<kWR>(nr, W + t * kWR * K, K, js_t, js_t ? list[0] : K, Xp + k0 * K, pw,
                          Y + t * kWR * ldy + k0, ldy);
    }
  }
}

// --- Element by element ends, every level's (the scalar level's whole loops).
// z[k] = float((x[k] - mu[k]) * is[k]) for k in [k0, d), 0 up to dp; ss + sum of z^2 in order.
template <class X>
inline double normalize_rest(const X* x, int64_t d, const X* mu, const X* is, float* z, int64_t dp, int64_t k0,
                             double ss) {
  int64_t k = k0;
  for (; k < d; ++k) {
    const float v = static_cast<float>((x[k] - mu[k]) * is[k]);
    z[k] = v;
    ss += static_cast<double>(v) * v;
  }
  for (; k < dp; ++k) z[k] = 0.f;
  return ss;
}

// min(best, (E[l] + F[l]) * rden[l] for l in [l0, K)), a NaN never taken.
inline double min_ratio_rest(const double* E, const double* F, const double* rden, int64_t K, int64_t l0,
                             double best) {
  for (int64_t l = l0; l < K; ++l) {
    const double v = (E[l] + F[l]) * rden[l];
    best = v < best ? v : best;
  }
  return best;
}

// The most float32 roundings that one product goes through in dot_block's sum of a pair
// (its lane class's chain of ceil(dp / W) multiply-adds, one more for a product rounded
// before the add where a level's a * b + c is not fused, then log2(W) levels of hsum's
// tree) and, at levels that sum ||z||^2 in float32 lanes, in normalize_f32's sum of squares
// (at most d / W steps into one of NZ accumulators, NZ - 1 adds joining them, log2(W)).
// The bounded Lloyd pass bounds the table's rounding by gamma of this depth (cpp/assign.cpp);
// a level whose summation order changes must change this with it.
int64_t sum_depth(int64_t d, int64_t dp) {
  int64_t lg = 0;
  for (int w = T::W; w > 1; w >>= 1) ++lg;
  const int64_t dot = (dp + T::W - 1) / T::W + 1 + lg;
#if defined(UL4M4_SCALAR_SUMS)
  (void)d;  // ||z||^2 in float64
  return dot;
#else
  const int64_t sq = T::SQ_F64 ? 0 : d / T::W + T::NZ - 1 + lg;
  return dot > sq ? dot : sq;
#endif
}

#if !defined(UL4M4_SCALAR_SUMS)
// Sum of the n accumulators (in order: s[0] + s[1] + ...), then across lanes by dhsum.
inline double dsum(typename T::dvec* s, int n) {
  for (int a = 1; a < n; ++a) s[0] = T::dadd(s[0], s[a]);
  return T::dhsum(s[0]);
}

// ||z||^2 of the vector part: in NZ float32 accumulators (x86: the dot products it is
// combined with are float32 too), or, with SQ_F64, in W / DW float64 ones, one per DW lanes.
// A template only so that `if constexpr` drops the branch the level does not use.
template <class L>
inline double normalize_f32_of(const float* x, int64_t d, const float* mu, const float* is, float* z, int64_t dp) {
  constexpr int NH = L::W / L::DW;
  typename L::vec s[L::NZ];
  typename L::dvec t[NH];
  for (int a = 0; a < L::NZ; ++a) s[a] = L::zero();
  for (int h = 0; h < NH; ++h) t[h] = L::dbcast(0.0);
  auto step = [&](int64_t i, int a) {
    const typename L::vec v = L::mul(L::sub(L::load(x + i), L::load(mu + i)), L::load(is + i));
    L::store(z + i, v);
    if constexpr (L::SQ_F64) {
      for (int h = 0; h < NH; ++h) {  // the z just stored, read back as doubles
        const typename L::dvec r = L::widen(z + i + h * L::DW);
        t[h] = L::dfmadd(r, r, t[h]);
      }
    } else {
      s[a] = L::fmadd(v, v, s[a]);
    }
  };
  int64_t k = 0;
  for (; k + L::NZ * L::W <= d; k += L::NZ * L::W)
    for (int a = 0; a < L::NZ; ++a) step(k + a * L::W, a);
  for (; k + L::W <= d; k += L::W) step(k, 0);
  double ss;
  if constexpr (L::SQ_F64) {
    ss = dsum(t, NH);
  } else {
    for (int a = 1; a < L::NZ; ++a) s[0] = L::add(s[0], s[a]);
    ss = static_cast<double>(L::hsum(s[0]));
  }
  return normalize_rest(x, d, mu, is, z, dp, k, ss);
}

double normalize_f32(const float* x, int64_t d, const float* mu, const float* is, float* z, int64_t dp) {
  return normalize_f32_of<T>(x, d, mu, is, z, dp);
}

double normalize_f64(const double* x, int64_t d, const double* mu, const double* is, float* z,
                     int64_t dp) {
  // ||z||^2 of the float32 z values, in ND float64 accumulators.
  typename T::dvec s[T::ND];
  for (int a = 0; a < T::ND; ++a) s[a] = T::dbcast(0.0);
  int64_t k = 0;
  for (; k + T::ND * T::DW <= d; k += T::ND * T::DW)
    for (int a = 0; a < T::ND; ++a) {
      const int64_t i = k + a * T::DW;
      const typename T::dvec r =
          T::round_store(z + i, T::dmul(T::dsub(T::dload(x + i), T::dload(mu + i)), T::dload(is + i)));
      s[a] = T::dfmadd(r, r, s[a]);
    }
  return normalize_rest(x, d, mu, is, z, dp, k, dsum(s, T::ND));
}

void accum_f32(const float* x, int64_t d, double* acc) {
  int64_t k = 0;
  for (; k + T::DW <= d; k += T::DW) T::dstore(acc + k, T::dadd(T::dload(acc + k), T::widen(x + k)));
  for (; k < d; ++k) acc[k] += static_cast<double>(x[k]);
}

void accum_f64(const double* x, int64_t d, double* acc) {
  int64_t k = 0;
  for (; k + T::DW <= d; k += T::DW) T::dstore(acc + k, T::dadd(T::dload(acc + k), T::dload(x + k)));
  for (; k < d; ++k) acc[k] += x[k];
}

double min_ratio(const double* E, const double* F, const double* rden, int64_t K) {
  typename T::dvec b[T::MA];
  for (int a = 0; a < T::MA; ++a) b[a] = T::dbcast(__builtin_inf());
  int64_t l = 0;
  for (; l + T::MA * T::DW <= K; l += T::MA * T::DW)
    for (int a = 0; a < T::MA; ++a) {
      const int64_t i = l + a * T::DW;
      b[a] = T::dmin(b[a], T::dmul(T::dadd(T::dload(E + i), T::dload(F + i)), T::dload(rden + i)));
    }
  return min_ratio_rest(E, F, rden, K, l, T::dhmin(b));
}
#endif

}  // namespace
