// The kernel table of one SIMD level, every field named. Included inside namespace ul4m4
// at the bottom of each kernels_<level>.cpp, after its kernels (every level gives them the
// same names, in its own anonymous namespace, so each file's table takes its own):
//   const KernelTable kKernelsAVX2 = level_table(SimdLevel::AVX2, "avx2");
// A kernel added to KernelTable is added here once, for every level.
namespace {

constexpr KernelTable level_table(SimdLevel level, const char* name) {
  KernelTable t{};
  t.level = level;
  t.name = name;
  t.dot_block = dot_block;
  t.normalize_f32 = normalize_f32;
  t.normalize_f64 = normalize_f64;
  t.accum_f32 = accum_f32;
  t.accum_f64 = accum_f64;
  t.min_ratio = min_ratio;
  t.wsum_rows = wsum_rows;
  t.wsum_rows2 = wsum_rows2;
  t.copy_stream = copy_stream;
  t.store_fence = store_fence;
  return t;
}

}  // namespace
