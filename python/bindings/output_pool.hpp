// Recycled memory for transform's fresh output arrays (docs/inputs-and-outputs.md,
// "Fresh outputs"). A new anonymous mapping costs the kernel a page fault and a page
// clearing per 4 KiB the first time it is written, which made a transform without out=
// up to 3x the same call into reused buffers. Large output blocks are therefore mapped
// here, and when the last array using one dies the block comes back to this pool instead
// of being unmapped; the next transform of the same size writes into pages already
// mapped. Freed blocks are kept up to the bytes of the latest call's outputs (one
// generation: a loop of same-sized calls recycles, nothing else piles up) and are marked
// MADV_FREE, so the kernel can still take their pages back under memory pressure (a page
// taken back reads as zeros and is faulted in again when written: every output element
// is written by complete(), so nothing depends on the old contents).
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <new>

namespace ul4m4_bindings {

class OutputPool {
 public:
  static OutputPool& instance() {
    static OutputPool* p = new OutputPool();  // never destroyed: capsules may outlive static teardown
    return *p;
  }

  /// A page-aligned block of at least `bytes` (a free one of the same rounded size when
  /// there is one). `call_bytes`: all the outputs of this call (their sizes as asked for,
  /// as `bytes` here), the new cap on kept blocks.
  void* take(size_t bytes, size_t call_bytes) {
    const size_t sz = round(bytes);
    {
      std::lock_guard<std::mutex> lock(mu_);
      cap_ = call_bytes;
      auto it = free_.find(sz);
      if (it != free_.end()) {
        void* p = it->second.p;
        kept_ -= it->second.bytes;
        free_.erase(it);
        ++reused_;
        trim();
        return p;
      }
      trim();
    }
    void* p = mmap(nullptr, sz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    return p;
  }

  /// `bytes`: as asked for in take(). The cap counts blocks by those sizes, not by their
  /// page-rounded ones: a call's blocks always fit the cap its own outputs set.
  void give(void* p, size_t bytes) {
    const size_t sz = round(bytes);
    std::lock_guard<std::mutex> lock(mu_);
    if (bytes > cap_) {
      munmap(p, sz);
      return;
    }
#ifdef MADV_FREE
    madvise(p, sz, MADV_FREE);
#endif
    free_.emplace(sz, Block{p, bytes, ++given_});
    kept_ += bytes;
    trim();
  }

  /// Unmaps every kept block.
  void release() {
    std::lock_guard<std::mutex> lock(mu_);
    const size_t cap = cap_;
    cap_ = 0;
    trim();
    cap_ = cap;
  }

  size_t kept_bytes() {
    std::lock_guard<std::mutex> lock(mu_);
    return kept_;
  }
  size_t reused_blocks() {
    std::lock_guard<std::mutex> lock(mu_);
    return reused_;
  }

 private:
  static size_t round(size_t bytes) {
    const size_t pg = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    return (bytes + pg - 1) / pg * pg + (bytes == 0 ? pg : 0);
  }
  // Unmaps the longest-kept blocks until the kept bytes fit the cap (mu_ held): blocks of
  // an earlier call's sizes go before the ones the latest call gave back (unmapping the
  // smallest first dropped a block of the new size while a stale one stayed, and the
  // next call faulted that output in again). The pool holds a few blocks: a scan is cheap.
  void trim() {
    while (kept_ > cap_ && !free_.empty()) {
      auto old = free_.begin();
      for (auto it = free_.begin(); it != free_.end(); ++it)
        if (it->second.seq < old->second.seq) old = it;
      munmap(old->second.p, old->first);
      kept_ -= old->second.bytes;
      free_.erase(old);
    }
  }

  std::mutex mu_;
  struct Block {
    void* p;
    size_t bytes;  // as asked for in take()
    uint64_t seq;  // order of give()
  };
  std::multimap<size_t, Block> free_;       // rounded bytes -> block
  size_t kept_ = 0, cap_ = 0, reused_ = 0;  // kept_, cap_: bytes as asked for
  uint64_t given_ = 0;
};

}  // namespace ul4m4_bindings
