// Threading backend of parallel_for (see ul4m4/parallel.hpp): OpenMP, or the library's own
// std::thread pool when the build has no OpenMP.
#include "ul4m4/parallel.hpp"

#include "ul4m4/engine.hpp"  // max_threads()

#include <algorithm>
#include <cstdlib>
#include <string>
#include <thread>

#if !defined(UL4M4_USE_OPENMP)
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <vector>
#endif

namespace ul4m4 {

#if defined(UL4M4_USE_OPENMP)

const char* threading_backend() { return "openmp"; }

int default_threads() { return std::max(1, omp_get_max_threads()); }

int max_threads() {
  const int64_t procs = std::max(1, omp_get_num_procs());
  const int64_t limit = std::max(1, omp_get_thread_limit());
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(4 * procs, limit)));
}

#else

const char* threading_backend() { return "threads"; }

int default_threads() {
  // OMP_NUM_THREADS keeps its meaning in this build ("8" or a nested list "8,2": the
  // first entry), so one setting limits both builds.
  if (const char* env = std::getenv("OMP_NUM_THREADS")) {
    char* end = nullptr;
    const long v = std::strtol(env, &end, 10);
    if (end != env && v > 0 && (*end == '\0' || *end == ',')) return static_cast<int>(std::min(v, 1L << 16));
  }
  const unsigned hw = std::thread::hardware_concurrency();
  return hw > 0 ? static_cast<int>(hw) : 1;
}

int max_threads() {
  const unsigned hw = std::thread::hardware_concurrency();
  return static_cast<int>(4 * std::max<int64_t>(1, hw));
}

namespace parallel_detail {
namespace {

// Set while a thread runs tasks of a parallel_for: a nested call then runs serially.
thread_local bool t_in_region = false;

struct RegionGuard {
  bool saved = t_in_region;
  RegionGuard() { t_in_region = true; }
  ~RegionGuard() { t_in_region = saved; }
};

// One parallel_for in flight: tasks are handed out one at a time from `next`.
struct Job {
  TaskFn fn;
  void* ctx;
  int64_t n_tasks;
  int n_threads;
  std::atomic<int64_t> next{0};
  std::mutex err_mu;
  std::exception_ptr err;

  void work(int tid) {
    RegionGuard in_region;
    for (;;) {
      const int64_t t = next.fetch_add(1, std::memory_order_relaxed);
      if (t >= n_tasks) return;
      try {
        fn(ctx, t, tid);
      } catch (...) {
        std::lock_guard<std::mutex> lock(err_mu);
        if (!err) err = std::current_exception();
      }
    }
  }
};

// Persistent workers 1..size(), woken for each job; worker w takes part when
// w < job.n_threads. The pool grows to the largest thread count asked for; its threads
// sleep on a condition variable between jobs and end with the process.
class Pool {
 public:
  /// Runs the job on this pool; false (nothing run) when another call holds the pool.
  bool try_run(Job& job) {
    std::unique_lock<std::mutex> run(run_mu_, std::try_to_lock);
    if (!run.owns_lock()) return false;
    const int helpers = job.n_threads - 1;
    {
      std::lock_guard<std::mutex> lock(mu_);
      while (static_cast<int>(workers_.size()) < helpers) {
        const int id = static_cast<int>(workers_.size()) + 1;
        workers_.emplace_back([this, id] { loop(id); });
      }
      job_ = &job;
      pending_ = helpers;
      ++generation_;
    }
    wake_.notify_all();
    job.work(0);
    std::unique_lock<std::mutex> lock(mu_);
    done_.wait(lock, [&] { return pending_ == 0; });
    job_ = nullptr;
    return true;
  }

 private:
  void loop(int id) {
    uint64_t seen = 0;
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      wake_.wait(lock, [&] { return generation_ != seen; });
      seen = generation_;
      Job* job = job_;
      if (!job || id >= job->n_threads) continue;
      lock.unlock();
      job->work(id);
      lock.lock();
      if (--pending_ == 0) done_.notify_one();
    }
  }

  std::mutex run_mu_;  // one job at a time
  std::mutex mu_;      // guards everything below
  std::condition_variable wake_, done_;
  std::vector<std::thread> workers_;
  Job* job_ = nullptr;
  int pending_ = 0;
  uint64_t generation_ = 0;
};

// The process's pool. A child created by fork() has none of the parent's worker threads:
// it leaves the inherited pool alone (never destroyed) and starts its own.
Pool* pool() {
  static std::mutex mu;
  static Pool* p = nullptr;
  static pid_t owner = 0;
  std::lock_guard<std::mutex> lock(mu);
  const pid_t me = getpid();
  if (!p || owner != me) {
    p = new Pool();  // never destroyed (see Pool)
    owner = me;
  }
  return p;
}

}  // namespace

void run_on_pool(int64_t n_tasks, int n_threads, TaskFn fn, void* ctx) {
  Job job;
  job.fn = fn;
  job.ctx = ctx;
  job.n_tasks = n_tasks;
  job.n_threads = static_cast<int>(std::min<int64_t>(n_threads, n_tasks));
  if (t_in_region) job.n_threads = 1;  // nested: serial, like a nested OpenMP region
  if (job.n_threads <= 1) {
    job.work(0);
  } else if (!pool()->try_run(job)) {
    // Another thread of the process is running a job on the pool (two Python threads
    // calling the core at once): this call gets threads of its own.
    std::vector<std::thread> extra;
    extra.reserve(job.n_threads - 1);
    for (int id = 1; id < job.n_threads; ++id) extra.emplace_back([&job, id] { job.work(id); });
    job.work(0);
    for (auto& t : extra) t.join();
  }
  if (job.err) std::rethrow_exception(job.err);
}

}  // namespace parallel_detail

#endif

}  // namespace ul4m4
