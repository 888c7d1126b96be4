// SPDX-License-Identifier: Apache-2.0
// How many tokens the draft proposes per step: a fixed window, or one adapted from recent
// acceptance. Shared by the in-process speculative loop and the distributed coordinator.
// Not thread-safe (one per session).
#ifndef VERDICT_SPEC_DRAFT_WINDOW_H_
#define VERDICT_SPEC_DRAFT_WINDOW_H_

#include <cstdint>

#include "absl/status/status.h"
#include "spec/draft_block.h"

namespace verdict::spec {

// The draft window k: fixed, or adaptive from recent acceptance.
struct DraftWindowOptions {
  int64_t k = 8;           // fixed window, or the adaptive mode's starting point
  bool adaptive = false;
  int64_t min_k = 1;       // adaptive bounds
  int64_t max_k = 64;
};
absl::Status ValidateDraftWindowOptions(const DraftWindowOptions& options);

// Adaptive rule (a heuristic in the spirit of Hugging Face's assisted generation, widened for the
// long runs a judge accepts): a fully accepted block grows k by half (at least 2); a block that
// ended after `a` acceptances moves k halfway towards 1.5 * (a + 1). Clamped to [min_k, max_k].
class DraftWindow {
 public:
  explicit DraftWindow(const DraftWindowOptions& options);
  int64_t k() const { return k_; }
  void Observe(int64_t proposed, int64_t accepted);

 private:
  DraftWindowOptions options_;
  int64_t k_;
};

}  // namespace verdict::spec

#endif  // VERDICT_SPEC_DRAFT_WINDOW_H_
