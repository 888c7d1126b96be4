// SPDX-License-Identifier: Apache-2.0
// What travels between the draft, the coordinator and the last target shard for one speculation
// step: the block the draft proposes and the verdict on it (DESIGN.md, "The algorithm, exactly").
// Plain value types; the wire forms are verdict.v1.DraftBlock and verdict.v1.BlockVerdict.
#ifndef VERDICT_SPEC_DRAFT_BLOCK_H_
#define VERDICT_SPEC_DRAFT_BLOCK_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace verdict::spec {

// Largest draft window a block may have (the judge routinely accepts 20-40 tokens per step).
inline constexpr int64_t kMaxDraftTokens = 256;

// Why a draft token was or was not accepted.
enum class AcceptReason : uint8_t {
  kExact,       // standard verification accepted it: lossless
  kJudge,       // the judge head accepted a token the exact rule rejected: lossy
  kLossy,       // a training-free lossy rule accepted it: lossy
  kRejected,    // the first token no rule accepted; the target's own token replaces it
  kNotReached,  // after the rejection: never decided
};
// "exact", "judge", "lossy", "rejected", "not_reached" (metrics labels, JSON keys).
absl::string_view AcceptReasonName(AcceptReason reason);

// The distribution a draft token was drawn from, sparse: the ids with nonzero probability, strictly
// ascending (what a device merges with a logits row in one pass).
struct DraftDistribution {
  std::vector<int32_t> ids;
  std::vector<float> probs;
  float ProbOf(int32_t id) const;
};

// What the draft proposes for one step.
struct DraftBlock {
  std::vector<int32_t> tokens;  // d_1..d_k
  // log q(d_i) under the draft model's plain softmax (temperature 1): a judge feature.
  std::vector<float> logprobs;
  // The proposal distribution of each d_i (after the draft's temperature/top-k/top-p). Empty when
  // the draft is greedy: then q is one-hot on d_i, which is also exact for sampled verification.
  std::vector<DraftDistribution> proposals;
  // Optional: the draft's full plain-softmax distribution at each proposal, [k, vocab] (what the
  // KL baseline compares with the target's). Recorded only when asked for (it is large); never on
  // the wire.
  std::vector<float> distributions;

  // Tokens [from, from + count) with their log-probabilities, proposals and distributions.
  // REQUIRES: from + count <= tokens.size().
  DraftBlock Slice(size_t from, size_t count) const;
};

// The last target shard's decision on one block.
struct Verdict {
  int32_t num_accepted = 0;  // accepted draft tokens, 0..k
  int32_t next_token = -1;   // the target's token after them (correction or bonus)
  std::vector<AcceptReason> reasons;  // one per draft token
  // The judge's probability for each draft token it was evaluated on (judge on: tokens the exact
  // rule rejected; shadow: every token the shadow walk reached), NaN elsewhere; empty without a
  // judge.
  std::vector<float> judge_scores;
  // Shadow mode: the accepted length judge decoding would have reached on this block, and how the
  // judge's decisions compare with the exact rule's at the positions that walk looked at.
  int32_t shadow_num_accepted = -1;
  int32_t shadow_judge_only = 0;  // judge would accept, exact rule rejects
  int32_t shadow_exact_only = 0;  // exact rule accepts, judge would reject
  int32_t shadow_both = 0;        // both accept
  // The judge head that judged this block (JudgeHead::id); empty without a judge or an id.
  std::string judge_head;

  int32_t committed() const { return num_accepted + 1; }
};

}  // namespace verdict::spec

#endif  // VERDICT_SPEC_DRAFT_BLOCK_H_
