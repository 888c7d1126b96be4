// SPDX-License-Identifier: Apache-2.0
// The KV-cache memory a worker's sessions hold, against its budget. Each session's cache is
// allocated whole when it opens and grows linearly with its capacity, so an open is checked before
// allocating (from the bytes per position learned from the first cache) and again after; a session
// that fits can never run out of memory midway. Not thread-safe (the engine thread owns it).
#ifndef VERDICT_WORKERS_KV_BUDGET_H_
#define VERDICT_WORKERS_KV_BUDGET_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"

namespace verdict::workers {

class KvBudget {
 public:
  // `max_bytes` <= 0: no bound. `who` names the worker in errors ("the draft worker").
  KvBudget(int64_t max_bytes, std::string who) : max_bytes_(max_bytes), who_(std::move(who)) {}

  // Before allocating: kResourceExhausted when a cache of `capacity` positions cannot fit.
  absl::Status CheckCapacity(int64_t capacity) const { return Check(bytes_per_position_ * capacity); }
  // After allocating a cache of `bytes` for `capacity` positions: reserves it, or kResourceExhausted.
  absl::Status Reserve(int64_t bytes, int64_t capacity);
  void Release(int64_t bytes) { used_ -= bytes; }
  int64_t used() const { return used_; }

 private:
  absl::Status Check(int64_t bytes) const;

  int64_t max_bytes_;
  std::string who_;
  int64_t used_ = 0;
  int64_t bytes_per_position_ = 0;
};

}  // namespace verdict::workers

#endif  // VERDICT_WORKERS_KV_BUDGET_H_
