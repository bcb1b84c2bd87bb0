// Shared kernel bodies, included once by each kernels_<isa>.cpp after it defines a
// traits struct `T` with: vec, W (lanes), zero(), load(p), fmadd(a, b, c), hsum(v).
//
// Only intrinsics and plain loops live here: no std templates, so that nothing
// compiled with AVX flags can be picked by the linker for the common code (ODR).
// Everything is in an anonymous namespace for the same reason.
//
// Result of one (row, centre) pair does not depend on the tile shape that computed it:
// each accumulator sums its lanes in k order and is reduced by the same hsum.

namespace {

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

void dot_block(const float* A, int64_t n, int64_t lda, const float* B, int64_t kr, int64_t ldb,
               int64_t dp, float* out, int64_t ldo) {
  int64_t i = 0;
  for (; i + T::R <= n; i += T::R) dot_rows<T::R>(A + i * lda, lda, B, kr, ldb, dp, out + i * ldo, ldo);
  for (; i < n; ++i) dot_rows<1>(A + i * lda, lda, B, kr, ldb, dp, out + i * ldo, ldo);
}

}  // namespace
