// SPDX-License-Identifier: Apache-2.0
#include "spec/draft_window.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace verdict::spec {

absl::Status ValidateDraftWindowOptions(const DraftWindowOptions& options) {
  auto in_range = [](int64_t v) { return v >= 1 && v <= kMaxDraftTokens; };
  if (!in_range(options.k)) {
    return absl::InvalidArgumentError(
        absl::StrCat("the draft window k must be in [1, ", kMaxDraftTokens, "], got ", options.k));
  }
  if (options.adaptive) {
    if (!in_range(options.min_k) || !in_range(options.max_k) || options.min_k > options.max_k) {
      return absl::InvalidArgumentError(absl::StrCat("adaptive window bounds must satisfy 1 <= min (",
                                                     options.min_k, ") <= max (", options.max_k,
                                                     ") <= ", kMaxDraftTokens));
    }
  }
  return absl::OkStatus();
}

DraftWindow::DraftWindow(const DraftWindowOptions& options) : options_(options), k_(options.k) {
  if (options_.adaptive) k_ = std::clamp(k_, options_.min_k, options_.max_k);
}

void DraftWindow::Observe(int64_t proposed, int64_t accepted) {
  if (!options_.adaptive || proposed <= 0) return;
  int64_t next;
  if (accepted >= proposed) {
    next = k_ + std::max<int64_t>(2, k_ / 2);
  } else {
    const double goal = 1.5 * static_cast<double>(accepted + 1);
    next = static_cast<int64_t>(std::lround(0.5 * static_cast<double>(k_) + 0.5 * goal));
  }
  k_ = std::clamp(next, options_.min_k, options_.max_k);
}

}  // namespace verdict::spec
