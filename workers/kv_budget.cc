// SPDX-License-Identifier: Apache-2.0
#include "workers/kv_budget.h"

#include "absl/strings/str_format.h"

namespace verdict::workers {

absl::Status KvBudget::Reserve(int64_t bytes, int64_t capacity) {
  if (bytes_per_position_ == 0 && capacity > 0) bytes_per_position_ = bytes / capacity;
  if (absl::Status s = Check(bytes); !s.ok()) return s;
  used_ += bytes;
  return absl::OkStatus();
}

absl::Status KvBudget::Check(int64_t bytes) const {
  if (max_bytes_ <= 0 || used_ + bytes <= max_bytes_) return absl::OkStatus();
  constexpr double kMiB = 1 << 20;
  return absl::ResourceExhaustedError(absl::StrFormat(
      "the session's KV cache needs %.1f MiB; %s's sessions hold %.1f of its %.1f MiB", bytes / kMiB, who_,
      used_ / kMiB, max_bytes_ / kMiB));
}

}  // namespace verdict::workers
