// SPDX-License-Identifier: Apache-2.0
// A Clock that moves only when a test advances it. Thread-safe.
#ifndef VERDICT_COMMON_TESTING_FAKE_CLOCK_H_
#define VERDICT_COMMON_TESTING_FAKE_CLOCK_H_

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"

namespace verdict::testing {

class FakeClock final : public Clock {
 public:
  explicit FakeClock(absl::Time start = absl::FromUnixSeconds(1'800'000'000)) : now_(start) {}
  absl::Time Now() const override {
    absl::MutexLock lock(&mu_);
    return now_;
  }
  void Advance(absl::Duration d) {
    absl::MutexLock lock(&mu_);
    now_ += d;
  }

 private:
  mutable absl::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_);
};

}  // namespace verdict::testing

#endif  // VERDICT_COMMON_TESTING_FAKE_CLOCK_H_
