// SPDX-License-Identifier: Apache-2.0
// The production Executor: one thread that runs posted closures in order. The coordinator keeps
// all session state on it, so callbacks from clients (any thread) only post, and no session state
// needs a lock.
#ifndef VERDICT_COORDINATOR_EVENT_LOOP_H_
#define VERDICT_COORDINATOR_EVENT_LOOP_H_

#include <deque>
#include <functional>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "common/executor.h"

namespace verdict::coordinator {

class EventLoop final : public Executor {
 public:
  EventLoop();
  // Runs what is already posted, then stops; later Posts are dropped.
  ~EventLoop() override;

  void Post(std::function<void()> fn) override;
  bool InLoop() const override { return std::this_thread::get_id() == thread_.get_id(); }

 private:
  void Run();

  absl::Mutex mu_;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace verdict::coordinator

#endif  // VERDICT_COORDINATOR_EVENT_LOOP_H_
