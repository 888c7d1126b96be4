// SPDX-License-Identifier: Apache-2.0
// One thread that runs posted closures in order. The coordinator keeps all session state on it, so
// callbacks from clients (any thread) only post, and no session state needs a lock.
#ifndef VERDICT_COORDINATOR_EVENT_LOOP_H_
#define VERDICT_COORDINATOR_EVENT_LOOP_H_

#include <deque>
#include <functional>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace verdict::coordinator {

class EventLoop {
 public:
  EventLoop();
  // Runs what is already posted, then stops; later Posts are dropped.
  ~EventLoop();

  void Post(std::function<void()> fn);
  // Runs `fn` on the loop after `delay`.
  void PostAfter(absl::Duration delay, std::function<void()> fn);
  bool InLoop() const { return std::this_thread::get_id() == thread_.get_id(); }

 private:
  struct Timer {
    absl::Time when;
    std::function<void()> fn;
  };
  void Run();

  absl::Mutex mu_;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  std::deque<Timer> timers_ ABSL_GUARDED_BY(mu_);  // unsorted; few timers
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace verdict::coordinator

#endif  // VERDICT_COORDINATOR_EVENT_LOOP_H_
