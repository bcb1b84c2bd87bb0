// The core's one threading primitive: run tasks 0..n_tasks-1 on n_threads threads.
//
// Two backends, chosen when the library is built (CMake option UL4M4_OPENMP):
//   - OpenMP (UL4M4_USE_OPENMP defined): an `omp parallel for` with dynamic scheduling;
//   - otherwise a std::thread pool of the library's own (for compilers without OpenMP,
//     such as Apple's clang), with the same dynamic hand-out of tasks.
// In both, the calling thread takes part as thread 0, thread ids are < n_threads, and
// each task runs exactly once. Which thread runs which task is unspecified, so callers
// keep results independent of it (per-task outputs, reduced afterwards in task order):
// that is what makes the results bit-identical for any thread count and either backend.
#pragma once

#include <cstdint>
#include <type_traits>

#if defined(UL4M4_USE_OPENMP)
#include <omp.h>
#endif

namespace ul4m4 {

/// "openmp" or "threads" (the library's own pool).
const char* threading_backend();

/// Threads a call uses by default: omp_get_max_threads() with OpenMP; with the pool,
/// OMP_NUM_THREADS (its first entry) when set to a positive integer, else the number of
/// hardware threads.
int default_threads();

namespace parallel_detail {
using TaskFn = void (*)(void* ctx, int64_t task, int thread);
/// The pool backend (cpp/parallel.cpp); exceptions from a task are rethrown after all
/// tasks finished (the first one caught).
void run_on_pool(int64_t n_tasks, int n_threads, TaskFn fn, void* ctx);
}  // namespace parallel_detail

/// Runs fn(task, thread) for every task in [0, n_tasks) on up to n_threads threads
/// (thread in [0, n_threads), the caller being thread 0). With OpenMP an exception must
/// not escape fn (it would terminate the process): catch inside the task.
/// A call made from inside a task runs serially on the calling thread (thread 0), like a
/// nested OpenMP region.
template <class F>
void parallel_for(int64_t n_tasks, int n_threads, F&& fn) {
  if (n_tasks <= 0) return;
  if (n_threads < 1) n_threads = 1;
#if defined(UL4M4_USE_OPENMP)
#pragma omp parallel for schedule(dynamic, 1) num_threads(n_threads)
  for (int64_t t = 0; t < n_tasks; ++t) fn(t, omp_get_thread_num());
#else
  using Fn = typename std::remove_reference<F>::type;
  parallel_detail::run_on_pool(
      n_tasks, n_threads, [](void* c, int64_t t, int tid) { (*static_cast<Fn*>(c))(t, tid); },
      const_cast<void*>(static_cast<const void*>(&fn)));
#endif
}

}  // namespace ul4m4
