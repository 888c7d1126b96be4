// SPDX-License-Identifier: Apache-2.0
// How a request wants its draft tokens verified: the policy, its thresholds and the draft window.
// The one vocabulary of policies: every command line, request, config and report names a policy
// through the table in speculation_params.cc. The wire form is verdict.v1.SpeculationParams, sent
// unchanged from the client to the coordinator and from the coordinator to the target shards;
// only the last shard turns it into the judge's engine-level rule set (judge::VerificationConfig),
// so a threshold left unset means the judge head's own threshold there and nowhere else.
// Plain value types and pure functions.
#ifndef VERDICT_SPEC_SPECULATION_PARAMS_H_
#define VERDICT_SPEC_SPECULATION_PARAMS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "spec/draft_window.h"
#include "spec/sampling_params.h"

namespace verdict::spec {

// Which rule, beside the exact one, may accept a draft token.
enum class Policy : uint8_t {
  kExact,         // standard speculative decoding only: lossless
  kJudge,         // exact, or the judge head accepts: lossy
  kJudgeShadow,   // exact; the judge is evaluated and reported but never accepts: lossless
  kLossyProb,     // exact, or the target's probability of the token >= lossy_threshold: lossy
  kLossyTypical,  // exact, or Medusa's typical acceptance: lossy
  kLossyKl,       // exact, or KL(p || q) <= lossy_threshold (in-process only: no wire form)
};

// The exact rule: greedy verification (argmax) or rejection sampling. Which one runs follows from
// the target's sampling (greedy() or not); a name may insist on one.
enum class ExactRule : uint8_t { kGreedy, kSampled };
ExactRule ExactRuleFor(const SamplingParams& target_sampling);

// The policy's canonical name: "exact", "judge", "judge-shadow", "lossy-prob", "lossy-typical",
// "lossy-kl".
absl::string_view PolicyName(Policy policy);
// Every policy, in enum order (for help texts and allow-lists).
const std::vector<Policy>& AllPolicies();
bool HasWireForm(Policy policy);
bool IsLossy(Policy policy);
bool UsesJudge(Policy policy);

// A policy as a user may write it: a canonical name, or "greedy" / "sampled" (the exact policy with
// that rule) or "standard" (the exact policy, rule from the sampling). kInvalidArgument naming the
// accepted spellings otherwise.
struct PolicySpelling {
  Policy policy = Policy::kExact;
  std::optional<ExactRule> exact;  // set by "greedy" and "sampled"
};
absl::StatusOr<PolicySpelling> ParsePolicyName(absl::string_view name);
// "greedy, sampled, exact, standard, judge, ..." (error messages, help).
std::string PolicySpellings();

// How reports name what ran: "greedy" / "sampled" for the exact policy, else the exact rule and
// the policy, e.g. "greedy+judge", "sampled+lossy-prob".
std::string PolicyLabel(Policy policy, ExactRule exact);

// Defaults of the training-free rules' thresholds (the judge's default is its head's threshold).
inline constexpr float kDefaultLossyThreshold = 0.3f;
inline constexpr float kDefaultTypicalDelta = 0.3f;

// Per-request speculation settings (wire: verdict.v1.SpeculationParams).
struct SpeculationParams {
  Policy policy = Policy::kExact;
  // kJudge / kJudgeShadow: threshold on the judge's probability; unset: the head's own.
  std::optional<float> judge_threshold;
  // kLossyProb / kLossyTypical / kLossyKl threshold and kLossyTypical's delta; unset: defaults.
  std::optional<float> lossy_threshold;
  std::optional<float> typical_delta;
  DraftWindowOptions window;
  bool speculate = true;  // false: the target decodes alone

  float lossy_threshold_or_default() const { return lossy_threshold.value_or(kDefaultLossyThreshold); }
  float typical_delta_or_default() const { return typical_delta.value_or(kDefaultTypicalDelta); }
};

// kInvalidArgument for a judge threshold outside [0, 1], a negative or non-finite lossy threshold
// or typical delta, a probability rule's threshold above 1, or a bad window.
absl::Status ValidateSpeculationParams(const SpeculationParams& params);

}  // namespace verdict::spec

#endif  // VERDICT_SPEC_SPECULATION_PARAMS_H_
