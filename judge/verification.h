// SPDX-License-Identifier: Apache-2.0
// Verification of one draft block: which of the draft tokens d_1..d_k the target accepts, and the
// token the target adds after them. This is step 3-4 of "The algorithm, exactly" (DESIGN.md) and
// runs wherever the target's last layer is: in-process here, on the last target shard later.
//
// Inputs are the target's outputs for the block [x_{n-1}, d_1, ..., d_k] (k + 1 rows):
//   logits row i (i = 0..k) is the next-token distribution after reading row i's token, so row i-1
//     decides d_i and row k gives the bonus token;
//   hidden row i is the final-layer hidden state AFTER the final RMSNorm at row i's position, so
//     row i is the state in which the target has read d_i (the judge's input for d_i).
//
// Rules, applied per token in this order until one accepts (the first token that none accepts ends
// the block and the target supplies its own token there):
//   1. the exact (lossless) rule: greedy (d_i == argmax) or sampled (Leviathan et al.: accept with
//      probability min(1, p(d_i) / q(d_i)); on rejection sample from norm(max(0, p - q)));
//   2. the judge head: sigmoid(w.h_i + b [+ extra features]) > threshold (lossy);
//   3. a training-free lossy baseline (lossy): the target's own probability of d_i passes a
//      threshold, Medusa's typical acceptance p(d_i) > min(eps, delta * exp(-H(p))), the
//      draft-target divergence KL(p || q) at the position is small, a token class (e.g. "not a
//      digit") is always accepted, or an external oracle (the task's checker: the ceiling a judge
//      could reach) says the token keeps the answer correct.
// With the judge in shadow mode it is evaluated but never accepts; the verdict reports what it
// would have done. Every accepted token carries the rule that accepted it.
//
// Pure functions of their inputs and the caller's random stream: thread-safe for distinct calls.
#ifndef VERDICT_JUDGE_VERIFICATION_H_
#define VERDICT_JUDGE_VERIFICATION_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "engine/backend.h"
#include "engine/sampler.h"
#include "judge/judge_head.h"
#include "spec/draft_block.h"
#include "spec/speculation_params.h"

namespace verdict::judge {

enum class JudgeMode { kOff, kOn, kShadow };
enum class LossyRule { kNone, kTargetProb, kTypical, kKl, kTokenMask, kOracle };

// Decides whether draft token `token` is acceptable after the block's accepted tokens
// `block_prefix` (the caller knows the committed text before the block).
using AcceptanceOracle =
    std::function<bool(absl::Span<const int32_t> block_prefix, int32_t token)>;

struct VerificationConfig {
  spec::ExactRule exact = spec::ExactRule::kGreedy;
  // kSampled: the target's distribution p = engine::SamplingDistribution(logits, target_sampling)
  // (temperature, top-k, top-p). Must not be greedy for kSampled.
  engine::SamplingParams target_sampling;
  JudgeMode judge = JudgeMode::kOff;
  // The judge's acceptance threshold on sigmoid(logit); > 1 disables acceptance entirely.
  float judge_threshold = 0.5f;
  LossyRule lossy = LossyRule::kNone;
  // kTargetProb: accept if the target's plain-softmax probability of d_i >= lossy_threshold.
  // kTypical: accept if p(d_i) > min(lossy_threshold, typical_delta * exp(-entropy(p))).
  // kKl: accept if KL(p_target || q_draft) <= lossy_threshold (nats; needs the block's
  // distributions). kTokenMask: accept if lossy_token_mask[d_i] != 0. kOracle: accept if
  // oracle(accepted block tokens, d_i).
  float lossy_threshold = spec::kDefaultLossyThreshold;
  float typical_delta = spec::kDefaultTypicalDelta;
  std::shared_ptr<const std::vector<uint8_t>> lossy_token_mask;
  AcceptanceOracle oracle;

  bool lossless() const { return judge != JudgeMode::kOn && lossy == LossyRule::kNone; }
};

// The engine-level rule set of a request's speculation parameters: the one conversion, made by the
// last target shard (and the in-process target session) where the judge head is. `head_threshold`
// is the head's own threshold, used where params.judge_threshold is unset; the exact rule follows
// `target_sampling`. kInvalidArgument for invalid parameters or sampling.
absl::StatusOr<VerificationConfig> ToVerificationConfig(const spec::SpeculationParams& params,
                                                        const engine::SamplingParams& target_sampling,
                                                        float head_threshold);

// The named policy whose rules `config` follows: the inverse of ToVerificationConfig's choice of
// rules (a policy combining a judge and a lossy rule names the judge; the evaluation-only rules,
// token mask and oracle, have no name and give kExact).
spec::Policy PolicyOf(const VerificationConfig& config);

// Named policies for command lines (spec::ParsePolicyName's spellings): "greedy" and "sampled"
// insist on that exact rule, other names take it from `sampling`. Thresholds stay at their
// defaults. kInvalidArgument for an unknown name or "sampled" with greedy sampling.
absl::StatusOr<VerificationConfig> PolicyConfig(absl::string_view policy,
                                                const engine::SamplingParams& sampling);
// spec::PolicyLabel of the config ("greedy", "sampled+judge", ...), with the evaluation-only rules
// ("+token-class", "+oracle").
std::string PolicyName(const VerificationConfig& config);

// kInvalidArgument for inconsistent settings (sampled rule with greedy params, NaN thresholds...).
absl::Status ValidateVerificationConfig(const VerificationConfig& config);

// The target's outputs for a block come either as full rows (logits, hidden states) or as what the
// device that holds them computed from them (engine::OutputContents): per-row logits summaries and
// the judge head's dot product. The summaries suffice for every rule but the sampled one and KL.
struct VerifyInput {
  const spec::DraftBlock* draft = nullptr;
  absl::Span<const float> target_logits;  // [k + 1, vocab_size]; or empty, then:
  // [k + 1]: row i (< k) reports the logit of draft token i + 1 (summary token d_{i+1}, see
  // SummaryTokens); row k any token.
  absl::Span<const engine::LogitSummary> target_summaries;
  // The sampled rule without logits: [k + 1] decisions of the rows made where the logits are
  // (engine::Backend::DecideSampled for the requests of AppendSampledRequests), with `uniforms`.
  absl::Span<const engine::SampledDecision> target_sampled;
  // The sampled rule's random draws, kUniformsPerRow per row (DrawVerificationUniforms): required
  // with target_sampled (the draws the requests carried); otherwise VerifyBlock draws them itself.
  absl::Span<const double> uniforms;
  absl::Span<const float> target_hidden;  // [k + 1, hidden_size]; needed only with a judge, or:
  absl::Span<const float> judge_dots;     // [k + 1]: head.weight . hidden row i
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
};

// The checks VerifyBlock makes of the draft block alone (kInvalidArgument): token ids outside the
// vocabulary, proposals that do not match the tokens, entries that are not probabilities of ids in
// strictly ascending order, a sampled draft token its own proposal gives probability 0. A server
// runs them before it batches a block with others.
absl::Status ValidateDraftBlock(const VerificationConfig& config, const spec::DraftBlock& draft,
                                int64_t vocab_size);

// Whether VerifyBlock can decide with logits summaries instead of the logits: the greedy rule with
// no lossy rule or a lossy rule other than KL (any judge mode).
bool CanVerifyFromSummaries(const VerificationConfig& config);
// Whether it can decide with summaries plus, for the sampled rule, the decisions of
// engine::Backend::DecideSampled: every policy but KL (which needs the target's whole distribution).
bool CanVerifyWithoutLogits(const VerificationConfig& config);

// The sampled rule's randomness: per row i of a block (i = 0..k) one uniform draw that decides
// whether draft token i + 1 is accepted (row k: unused) and one that picks the token drawn at row i
// (the replacement if token i + 1 is rejected there; the bonus token at row k). Drawn up front, all
// 2 (k + 1) of them, so the device that decides a block can be handed them with the logits.
inline constexpr int64_t kUniformsPerRow = 2;
void DrawVerificationUniforms(int64_t k, engine::Sampler& rng, std::vector<double>* uniforms);
// Appends the k + 1 requests of a block for engine::Backend::DecideSampled (the target's sampling
// parameters, the draft tokens and their proposals, the row's replacement draw from `uniforms`) and
// the proposals' entries to the flat arrays the requests index.
void AppendSampledRequests(const engine::SamplingParams& sampling, const spec::DraftBlock& draft,
                           absl::Span<const double> uniforms,
                           std::vector<engine::math::SampledRowRequest>* requests,
                           std::vector<int32_t>* proposal_ids, std::vector<float>* proposal_probs);
// The summary token of each of the k + 1 rows of a block (OutputContents::summary_tokens): d_1..d_k
// and -1, appended to `tokens`.
void AppendSummaryTokens(const spec::DraftBlock& draft, std::vector<int32_t>* tokens);

// Verifies one block. `rng` supplies the randomness of the sampled rule (untouched by greedy, and by
// an input that brings its uniforms).
// `head` is required when config.judge != kOff. Errors (kInvalidArgument): sizes that do not
// match k, token ids outside the vocabulary, a proposal that gives its own token probability 0,
// missing head or hidden states (or dots), a head for another hidden size, summaries for a rule
// that needs the logits or whose tokens are not the draft tokens.
absl::StatusOr<spec::Verdict> VerifyBlock(const VerificationConfig& config, const JudgeHead* head,
                                    const VerifyInput& input, engine::Sampler& rng);

// Plain-softmax statistics of one logits row (temperature 1, no truncation): log p(token) and the
// entropy in nats. The judge's extra features and the lossy baselines use these.
struct TokenStats {
  float logprob = 0;
  float entropy = 0;
};
TokenStats ComputeTokenStats(absl::Span<const float> logits, int32_t token);

// The judge's extra scalar features for draft token i (1-based) of a block, in `head`'s order.
void JudgeExtras(const JudgeHead& head, const TokenStats& target_stats, float draft_logprob,
                 std::vector<float>* extras);

}  // namespace verdict::judge

#endif  // VERDICT_JUDGE_VERIFICATION_H_
