// SPDX-License-Identifier: Apache-2.0
// Where a single-threaded state machine runs: closures posted from any thread run one at a time,
// in the order they were posted. Production uses a thread of its own (coordinator/event_loop.h);
// tests use common/testing/manual_executor.h and run the posted closures when they choose.
#ifndef VERDICT_COMMON_EXECUTOR_H_
#define VERDICT_COMMON_EXECUTOR_H_

#include <functional>

namespace verdict {

class Executor {
 public:
  virtual ~Executor() = default;
  // Thread-safe. A closure posted after the executor stopped is dropped.
  virtual void Post(std::function<void()> fn) = 0;
  // Whether the calling thread is the one that runs the posted closures.
  virtual bool InLoop() const = 0;
};

}  // namespace verdict

#endif  // VERDICT_COMMON_EXECUTOR_H_
