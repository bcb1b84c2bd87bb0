// Runtime choice of the kernel table: once at load from cpuid (through the compiler's
// __builtin_cpu_supports, which also checks that the OS saves the wide registers),
// overridable later by set_simd_level (the Python layer applies UL4M4_SIMD). On ARM64,
// NEON (Advanced SIMD) is mandatory, so a build with it always uses it.
#include <atomic>
#include <stdexcept>
#include <string>

#include "ul4m4/kernels.hpp"

namespace ul4m4 {
namespace {

const KernelTable* table_for(SimdLevel level) {
  switch (level) {
#if defined(UL4M4_HAVE_AVX512)
    case SimdLevel::AVX512: return &kKernelsAVX512;
#endif
#if defined(UL4M4_HAVE_AVX2)
    case SimdLevel::AVX2: return &kKernelsAVX2;
#endif
#if defined(UL4M4_HAVE_NEON)
    case SimdLevel::NEON: return &kKernelsNEON;
#endif
    default: return &kKernelsScalar;
  }
}

SimdLevel detect() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
#if defined(UL4M4_HAVE_AVX512)
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx2") &&
      __builtin_cpu_supports("fma"))
    return SimdLevel::AVX512;
#endif
#if defined(UL4M4_HAVE_AVX2)
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return SimdLevel::AVX2;
#endif
#endif
#if defined(UL4M4_HAVE_NEON) && defined(__aarch64__)
  return SimdLevel::NEON;
#endif
  return SimdLevel::Scalar;
}

const SimdLevel g_max = detect();
std::atomic<const KernelTable*> g_table{table_for(g_max)};

}  // namespace

const KernelTable& kernels() { return *g_table.load(std::memory_order_acquire); }

SimdLevel max_simd_level() { return g_max; }

std::vector<SimdLevel> available_simd_levels() {
  // The chain of levels below the best one on this architecture.
  switch (g_max) {
    case SimdLevel::AVX512: return {SimdLevel::Scalar, SimdLevel::AVX2, SimdLevel::AVX512};
    case SimdLevel::AVX2: return {SimdLevel::Scalar, SimdLevel::AVX2};
    case SimdLevel::NEON: return {SimdLevel::Scalar, SimdLevel::NEON};
    default: return {SimdLevel::Scalar};
  }
}

void set_simd_level(SimdLevel level) {
  bool ok = false;
  for (SimdLevel l : available_simd_levels()) ok = ok || l == level;
  if (!ok)
    throw std::invalid_argument(std::string("SIMD level '") + simd_level_name(level) +
                                "' is not supported by this CPU (best: '" +
                                simd_level_name(g_max) + "')");
  g_table.store(table_for(level), std::memory_order_release);
}

const char* simd_level_name(SimdLevel level) {
  switch (level) {
    case SimdLevel::AVX512: return "avx512";
    case SimdLevel::AVX2: return "avx2";
    case SimdLevel::NEON: return "neon";
    default: return "scalar";
  }
}

SimdLevel parse_simd_level(const std::string& name) {
  if (name == "scalar") return SimdLevel::Scalar;
  if (name == "avx2") return SimdLevel::AVX2;
  if (name == "avx512") return SimdLevel::AVX512;
  if (name == "neon") return SimdLevel::NEON;
  throw std::invalid_argument("unknown SIMD level '" + name +
                              "' (expected 'scalar', 'avx2', 'avx512' or 'neon')");
}

}  // namespace ul4m4
