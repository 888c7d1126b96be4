// SPDX-License-Identifier: Apache-2.0
// The inbox of an engine thread (DraftWorkerLoop, TargetShardLoop): any thread pushes items, the
// engine thread takes everything queued at once, and after Stop() pushes are refused and the engine
// thread gets back what was left so it can fail it. Thread-safe.
#ifndef VERDICT_WORKERS_WORK_QUEUE_H_
#define VERDICT_WORKERS_WORK_QUEUE_H_

#include <deque>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace verdict::workers {

template <typename Item>
class WorkQueue {
 public:
  // Moves `item` into the queue; false (and `item` untouched) once stopped.
  bool Push(Item& item) {
    absl::MutexLock lock(&mu_);
    if (stopped_) return false;
    items_.push_back(std::move(item));
    return true;
  }

  // Blocks until something is queued, the queue is stopped or `deadline` passed, then moves
  // everything queued into *items (nothing, at the deadline). Returns false when stopped: *items
  // then holds the leftovers, to be failed.
  bool Take(std::deque<Item>* items, absl::Time deadline = absl::InfiniteFuture()) {
    auto ready = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stopped_ || !items_.empty(); };
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithDeadline(absl::Condition(&ready), deadline);
    items->clear();
    items->swap(items_);
    return !stopped_;
  }

  void Stop() {
    absl::MutexLock lock(&mu_);
    stopped_ = true;
  }

  size_t size() const {
    absl::MutexLock lock(&mu_);
    return items_.size();
  }

 private:
  mutable absl::Mutex mu_;
  std::deque<Item> items_ ABSL_GUARDED_BY(mu_);
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace verdict::workers

#endif  // VERDICT_WORKERS_WORK_QUEUE_H_
