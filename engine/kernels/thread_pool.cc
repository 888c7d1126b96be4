// SPDX-License-Identifier: Apache-2.0
#include "engine/kernels/thread_pool.h"

#include <algorithm>
#include <chrono>

#include "common/check.h"

namespace verdict::engine {
namespace {

// How long an idle participant spins before it sleeps on the futex. A decode step issues its
// ParallelFor calls a few to a few hundred microseconds apart, so this keeps workers hot through a
// step while an idle pool stops burning a core within a fraction of a millisecond.
constexpr auto kSpinDuration = std::chrono::microseconds(100);

inline void CpuRelax() {
#if (defined(__x86_64__) || defined(__i386__)) && !defined(VERDICT_NO_PAUSE)
  __builtin_ia32_pause();
#endif
}

// Spins until `atom` differs from `old` or kSpinDuration passes; returns the last value seen.
// After the first few microseconds it also yields the core on each round, so that an oversubscribed
// machine (more runnable threads than cores) still lets the thread we wait for make progress.
uint32_t SpinWhileEqual(const std::atomic<uint32_t>& atom, uint32_t old) {
  uint32_t v = atom.load(std::memory_order_acquire);
  if (v != old) return v;
  constexpr int kPureSpinRounds = 8;
  const auto deadline = std::chrono::steady_clock::now() + kSpinDuration;
  for (int round = 0;; ++round) {
    for (int i = 0; i < 64; ++i) {
      CpuRelax();
      v = atom.load(std::memory_order_acquire);
      if (v != old) return v;
    }
    if (std::chrono::steady_clock::now() >= deadline) return v;
    if (round >= kPureSpinRounds) std::this_thread::yield();
  }
}

}  // namespace

ThreadPool::ThreadPool(int num_threads) : num_threads_(num_threads) {
  VERDICT_CHECK(num_threads >= 1);
  workers_.reserve(num_threads - 1);
  for (int i = 1; i < num_threads; ++i) workers_.emplace_back([this, i] { WorkerLoop(i); });
}

ThreadPool::~ThreadPool() {
  if (workers_.empty()) return;
  stop_ = true;
  generation_.fetch_add(1, std::memory_order_release);
  generation_.notify_all();
  for (std::thread& t : workers_) t.join();
}

void ThreadPool::RunChunk(int chunk_index) {
  // Grains are spread as evenly as possible: the first (num_grains_ % num_chunks_) chunks get one
  // grain more than the others.
  const int64_t base = num_grains_ / num_chunks_;
  const int64_t extra = num_grains_ % num_chunks_;
  const int64_t first_grain = chunk_index * base + std::min<int64_t>(chunk_index, extra);
  const int64_t grains = base + (chunk_index < extra ? 1 : 0);
  const int64_t begin = first_grain * grain_;
  const int64_t end = std::min(n_, (first_grain + grains) * grain_);
  (*fn_)(begin, end);
}

void ThreadPool::WorkerLoop(int worker_index) {
  // Not generation_.load(): the first job may be published before this thread gets here.
  uint32_t seen = 0;
  while (true) {
    uint32_t g = SpinWhileEqual(generation_, seen);
    while (g == seen) {
      generation_.wait(seen, std::memory_order_acquire);
      g = generation_.load(std::memory_order_acquire);
    }
    seen = g;
    if (stop_) return;
    if (worker_index < num_chunks_) RunChunk(worker_index);
    if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) pending_.notify_one();
  }
}

void ThreadPool::ParallelFor(int64_t n, int64_t grain,
                             const std::function<void(int64_t, int64_t)>& fn) {
  VERDICT_CHECK(grain >= 1);
  if (n <= 0) return;
  const int64_t num_grains = (n + grain - 1) / grain;
  const int num_chunks = static_cast<int>(std::min<int64_t>(num_threads_, num_grains));
  if (num_chunks == 1) {
    fn(0, n);
    return;
  }
  fn_ = &fn;
  n_ = n;
  grain_ = grain;
  num_grains_ = num_grains;
  num_chunks_ = num_chunks;
  // Every worker acknowledges every job, even one without a chunk for it, so no worker can still be
  // reading this job's fields when the next ParallelFor overwrites them.
  pending_.store(static_cast<uint32_t>(num_threads_ - 1), std::memory_order_relaxed);
  generation_.fetch_add(1, std::memory_order_release);
  generation_.notify_all();

  RunChunk(0);

  uint32_t left = pending_.load(std::memory_order_acquire);
  while (left != 0) {
    left = SpinWhileEqual(pending_, left);
    if (left != 0) {
      pending_.wait(left, std::memory_order_acquire);
      left = pending_.load(std::memory_order_acquire);
    }
  }
}

}  // namespace verdict::engine
