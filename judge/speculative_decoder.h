// SPDX-License-Identifier: Apache-2.0
// Speculative (and judge) decoding in one process: a DraftSession proposes, a TargetSession verifies,
// repeated until a stop token, max_new_tokens or the context end. The reference loop that the
// distributed coordinator reproduces across processes, and what `verdict generate --draft` runs.
// Not thread-safe; one call per engine thread at a time.
#ifndef VERDICT_JUDGE_SPECULATIVE_DECODER_H_
#define VERDICT_JUDGE_SPECULATIVE_DECODER_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "engine/model.h"
#include "engine/sampler.h"
#include "spec/draft_window.h"
#include "judge/verification.h"
#include "spec/speculation_stats.h"

namespace verdict::judge {

struct SpeculativeOptions {
  int64_t max_new_tokens = 128;
  std::vector<int32_t> stop_token_ids;
  // The policy; its target_sampling is the output distribution (greedy or sampled).
  VerificationConfig verification;
  const JudgeHead* head = nullptr;  // required for judge and judge-shadow
  // The draft's own sampling. Unset: the target's parameters, with a seed derived from theirs (the
  // two random streams must differ).
  std::optional<engine::SamplingParams> draft_sampling;
  spec::DraftWindowOptions window;
  // Called with the tokens each target pass commits (after stop/max truncation); false stops.
  std::function<bool(absl::Span<const int32_t> tokens)> on_tokens;
  // Called after each target pass with the block and its verdict (before on_tokens).
  std::function<void(const spec::DraftBlock& block, const spec::Verdict& verdict)> on_verdict;
};

struct SpeculativeResult {
  std::vector<int32_t> tokens;  // generated tokens (including a final stop token, if hit)
  bool stopped_by_token = false;
  spec::SpeculationStats stats;
};

// Errors: kInvalidArgument for an empty prompt, a draft/target vocabulary mismatch, a bad window
// (k < 1 or > spec::kMaxDraftTokens, min > max), a bad policy or missing head; those of the sessions.
absl::StatusOr<SpeculativeResult> GenerateSpeculative(engine::ModelSlice& target,
                                                      engine::ModelSlice& draft,
                                                      absl::Span<const int32_t> prompt,
                                                      const SpeculativeOptions& options);

}  // namespace verdict::judge

#endif  // VERDICT_JUDGE_SPECULATIVE_DECODER_H_
