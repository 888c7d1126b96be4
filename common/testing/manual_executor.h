// SPDX-License-Identifier: Apache-2.0
// An Executor for tests of single-threaded state machines: posted closures wait in a queue until
// the test runs them (RunUntilIdle), on the test's thread, so a test decides exactly when the
// machine reacts. Post is thread-safe; run it from one thread.
#ifndef VERDICT_COMMON_TESTING_MANUAL_EXECUTOR_H_
#define VERDICT_COMMON_TESTING_MANUAL_EXECUTOR_H_

#include <deque>
#include <functional>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "common/executor.h"

namespace verdict::testing {

class ManualExecutor final : public Executor {
 public:
  void Post(std::function<void()> fn) override {
    absl::MutexLock lock(&mu_);
    queue_.push_back(std::move(fn));
  }
  // The test's thread is the loop.
  bool InLoop() const override { return true; }

  // Runs queued closures, and those they post, until none is left. Returns how many ran.
  int RunUntilIdle() {
    int ran = 0;
    while (true) {
      std::function<void()> fn;
      {
        absl::MutexLock lock(&mu_);
        if (queue_.empty()) return ran;
        fn = std::move(queue_.front());
        queue_.pop_front();
      }
      fn();
      ++ran;
    }
  }
  bool idle() const {
    absl::MutexLock lock(&mu_);
    return queue_.empty();
  }

 private:
  mutable absl::Mutex mu_;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
};

}  // namespace verdict::testing

#endif  // VERDICT_COMMON_TESTING_MANUAL_EXECUTOR_H_
