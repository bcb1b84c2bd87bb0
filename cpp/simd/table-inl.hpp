// The kernel table of one SIMD level, every field named. Included inside namespace ul4m4
// at the bottom of each kernels_<level>.cpp, after its kernels (every level gives them the
// same names, in its own anonymous namespace, so each file's table takes its own):
//   const KernelTable kKernelsAVX2 = level_table(SimdLevel::AVX2, "avx2");
// A kernel added to KernelTable is added to this list once, for every level.
#define UL4M4_LEVEL_KERNELS(X) \
  X(dot_block) X(normalize_f32) X(normalize_f64) X(accum_f32) X(accum_f64) X(min_ratio) X(wsum_rows) \
  X(wsum_pack) X(wsum_block) X(copy_stream) X(store_fence) X(sum_depth)

namespace {

constexpr KernelTable level_table(SimdLevel level, const char* name) {
  KernelTable t{};
  t.level = level;
  t.name = name;
#define UL4M4_SET_KERNEL(f) t.f = f;
  UL4M4_LEVEL_KERNELS(UL4M4_SET_KERNEL)
#undef UL4M4_SET_KERNEL
  return t;
}

}  // namespace
#undef UL4M4_LEVEL_KERNELS
