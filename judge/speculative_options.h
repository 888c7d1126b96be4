// SPDX-License-Identifier: Apache-2.0
// What a speculative generation in one process is asked for and gives back, with engine-level
// verification rules (judge::VerificationConfig: also the rules that have no wire form, such as the
// evaluation's oracle). local::GenerateSpeculative runs it through the coordinator;
// judge::testing::ReferenceSpeculativeLoop is the plain loop tests compare the coordinator with.
#ifndef VERDICT_JUDGE_SPECULATIVE_OPTIONS_H_
#define VERDICT_JUDGE_SPECULATIVE_OPTIONS_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

#include "absl/time/time.h"
#include "absl/types/span.h"
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

}  // namespace verdict::judge

#endif  // VERDICT_JUDGE_SPECULATIVE_OPTIONS_H_
