// SPDX-License-Identifier: Apache-2.0
#include "spec/speculation_params.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"

namespace verdict::spec {
namespace {

// The one table of policy names.
struct PolicyEntry {
  Policy policy;
  absl::string_view name;
  bool wire;
  bool lossy;
  bool judge;
};
constexpr PolicyEntry kPolicies[] = {
    {Policy::kExact, "exact", true, false, false},
    {Policy::kJudge, "judge", true, true, true},
    {Policy::kJudgeShadow, "judge-shadow", true, false, true},
    {Policy::kLossyProb, "lossy-prob", true, true, false},
    {Policy::kLossyTypical, "lossy-typical", true, true, false},
    {Policy::kLossyKl, "lossy-kl", false, true, false},
};
// Spellings of the exact policy that insist on a rule, or say "the usual one".
constexpr absl::string_view kGreedyName = "greedy";
constexpr absl::string_view kSampledName = "sampled";
constexpr absl::string_view kStandardName = "standard";

const PolicyEntry& EntryOf(Policy policy) {
  for (const PolicyEntry& e : kPolicies) {
    if (e.policy == policy) return e;
  }
  return kPolicies[0];  // unreachable: every enumerator is in the table
}

absl::string_view ExactRuleName(ExactRule rule) { return rule == ExactRule::kGreedy ? kGreedyName : kSampledName; }

absl::Status CheckNonNegative(const std::optional<float>& v, absl::string_view what) {
  if (v.has_value() && (!std::isfinite(*v) || *v < 0)) {
    return absl::InvalidArgumentError(absl::StrCat(what, " must be >= 0, got ", *v));
  }
  return absl::OkStatus();
}

}  // namespace

ExactRule ExactRuleFor(const SamplingParams& target_sampling) {
  return target_sampling.greedy() ? ExactRule::kGreedy : ExactRule::kSampled;
}

absl::string_view PolicyName(Policy policy) { return EntryOf(policy).name; }
bool HasWireForm(Policy policy) { return EntryOf(policy).wire; }
bool IsLossy(Policy policy) { return EntryOf(policy).lossy; }
bool UsesJudge(Policy policy) { return EntryOf(policy).judge; }

const std::vector<Policy>& AllPolicies() {
  static const std::vector<Policy>* all = [] {
    auto* v = new std::vector<Policy>;
    for (const PolicyEntry& e : kPolicies) v->push_back(e.policy);
    return v;
  }();
  return *all;
}

std::string PolicySpellings() {
  std::vector<absl::string_view> names = {kGreedyName, kSampledName, kStandardName};
  for (const PolicyEntry& e : kPolicies) names.push_back(e.name);
  return absl::StrJoin(names, ", ");
}

absl::StatusOr<PolicySpelling> ParsePolicyName(absl::string_view name) {
  if (name == kGreedyName) return PolicySpelling{Policy::kExact, ExactRule::kGreedy};
  if (name == kSampledName) return PolicySpelling{Policy::kExact, ExactRule::kSampled};
  if (name == kStandardName) return PolicySpelling{Policy::kExact, std::nullopt};
  for (const PolicyEntry& e : kPolicies) {
    if (e.name == name) return PolicySpelling{e.policy, std::nullopt};
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown verification policy \"", name, "\"; expected one of ", PolicySpellings()));
}

std::string PolicyLabel(Policy policy, ExactRule exact) {
  if (policy == Policy::kExact) return std::string(ExactRuleName(exact));
  return absl::StrCat(ExactRuleName(exact), "+", PolicyName(policy));
}

absl::Status ValidateSpeculationParams(const SpeculationParams& params) {
  if (params.judge_threshold.has_value() && !(*params.judge_threshold >= 0.0f && *params.judge_threshold <= 1.0f)) {
    return absl::InvalidArgumentError(absl::StrCat("the judge threshold must be in [0, 1], got ", *params.judge_threshold));
  }
  VERDICT_RETURN_IF_ERROR(CheckNonNegative(params.lossy_threshold, "the lossy threshold"));
  VERDICT_RETURN_IF_ERROR(CheckNonNegative(params.typical_delta, "the typical delta"));
  const bool probability_rule = params.policy == Policy::kLossyProb || params.policy == Policy::kLossyTypical;
  if (probability_rule && params.lossy_threshold_or_default() > 1.0f) {
    return absl::InvalidArgumentError(
        absl::StrCat("the lossy threshold must be in [0, 1], got ", params.lossy_threshold_or_default()));
  }
  return ValidateDraftWindowOptions(params.window);
}

}  // namespace verdict::spec
