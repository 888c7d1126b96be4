// SPDX-License-Identifier: Apache-2.0
// Where code that schedules or measures reads the time, so tests can control it (a FakeClock in
// common/testing/fake_clock.h). Implementations are thread-safe.
#ifndef VERDICT_COMMON_CLOCK_H_
#define VERDICT_COMMON_CLOCK_H_

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace verdict {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() const = 0;

  // The wall clock (absl::Now). Never destroyed.
  static Clock* Real();
};

inline Clock* Clock::Real() {
  class RealClock final : public Clock {
   public:
    absl::Time Now() const override { return absl::Now(); }
  };
  static RealClock* clock = new RealClock;
  return clock;
}

}  // namespace verdict

#endif  // VERDICT_COMMON_CLOCK_H_
