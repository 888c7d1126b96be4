// SPDX-License-Identifier: Apache-2.0
// ThreadPool: a small fork-join pool for CPU kernels (matrix products, norms, attention).
// Workers are persistent; ParallelFor wakes them, the calling thread takes the first chunk itself,
// and the call returns when every chunk is done. After a job, workers spin for a short while
// (about 100 us) before sleeping on a futex, so back-to-back calls of a decode step cost a few
// microseconds each.
//
// Thread-safety: one thread at a time may call ParallelFor (it is not reentrant: `fn` must not call
// ParallelFor on the same pool). num_threads() may be called from any thread. The destructor must
// not run concurrently with ParallelFor.
#ifndef VERDICT_ENGINE_KERNELS_THREAD_POOL_H_
#define VERDICT_ENGINE_KERNELS_THREAD_POOL_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <thread>
#include <vector>

namespace verdict::engine {

class ThreadPool {
 public:
  // Starts num_threads - 1 workers; the thread calling ParallelFor is the last participant.
  // REQUIRES: num_threads >= 1 (1 runs everything inline, without workers).
  explicit ThreadPool(int num_threads);
  ~ThreadPool();

  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return num_threads_; }

  // Runs fn(begin, end) over a partition of [0, n) into at most num_threads() contiguous, non-empty
  // chunks, each a multiple of `grain` long except the last, and blocks until all are done. Chunk i
  // (in increasing order of begin) runs on participant i; the caller runs chunk 0. n <= 0 calls
  // nothing. Chunks are balanced in units of `grain` (their lengths differ by at most one grain).
  // REQUIRES: grain >= 1; not called from inside fn.
  void ParallelFor(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

 private:
  void WorkerLoop(int worker_index);
  void RunChunk(int chunk_index);

  const int num_threads_;
  std::vector<std::thread> workers_;

  // Job description, written by the caller before `generation_` is bumped (release) and read by
  // workers after they observe the new generation (acquire).
  const std::function<void(int64_t, int64_t)>* fn_ = nullptr;
  int64_t n_ = 0;
  int64_t grain_ = 1;
  int64_t num_grains_ = 0;
  int num_chunks_ = 0;
  bool stop_ = false;

  // Bumped once per job; workers wait on it (futex via std::atomic::wait).
  alignas(64) std::atomic<uint32_t> generation_{0};
  // Chunks of the current job that workers have not finished yet; the caller waits for 0.
  alignas(64) std::atomic<uint32_t> pending_{0};
};

}  // namespace verdict::engine

#endif  // VERDICT_ENGINE_KERNELS_THREAD_POOL_H_
