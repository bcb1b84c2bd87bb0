// Non-temporal row copy shared by the AVX2 and AVX-512 kernel files (both are compiled with
// -mavx2; 32-byte streaming stores are what both use). Included inside namespace ul4m4,
// like kernels-inl.hpp, and anonymous for the same reason.

namespace {

void copy_stream(void* dst, const void* src, size_t bytes) {
  char* d = static_cast<char*>(dst);
  const char* s = static_cast<const char*>(src);
  if (bytes < 256) {  // short rows: not worth the alignment prologue
    std::memcpy(d, s, bytes);
    return;
  }
  const size_t head = (32 - (reinterpret_cast<uintptr_t>(d) & 31)) & 31;
  std::memcpy(d, s, head);
  d += head;
  s += head;
  bytes -= head;
  size_t k = 0;
  for (; k + 128 <= bytes; k += 128) {
    const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + k));
    const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + k + 32));
    const __m256i c = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + k + 64));
    const __m256i e = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + k + 96));
    _mm256_stream_si256(reinterpret_cast<__m256i*>(d + k), a);
    _mm256_stream_si256(reinterpret_cast<__m256i*>(d + k + 32), b);
    _mm256_stream_si256(reinterpret_cast<__m256i*>(d + k + 64), c);
    _mm256_stream_si256(reinterpret_cast<__m256i*>(d + k + 96), e);
  }
  for (; k + 32 <= bytes; k += 32)
    _mm256_stream_si256(reinterpret_cast<__m256i*>(d + k),
                        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + k)));
  std::memcpy(d + k, s + k, bytes - k);
}

void store_fence() { _mm_sfence(); }

}  // namespace
