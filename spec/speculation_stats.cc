// SPDX-License-Identifier: Apache-2.0
#include "spec/speculation_stats.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace verdict::spec {

void SpeculationStats::RecordPass(int64_t proposed_tokens, const Verdict& verdict) {
  ++target_passes;
  proposed += proposed_tokens;
  if (proposed_tokens == 0) ++target_only_passes;
  const size_t a = static_cast<size_t>(std::max(verdict.num_accepted, 0));
  if (accepted_histogram.size() <= a) accepted_histogram.resize(a + 1, 0);
  ++accepted_histogram[a];
  for (int32_t i = 0; i < verdict.num_accepted && i < static_cast<int32_t>(verdict.reasons.size()); ++i) {
    accepted_exact += verdict.reasons[i] == AcceptReason::kExact;
    accepted_judge += verdict.reasons[i] == AcceptReason::kJudge;
    accepted_lossy += verdict.reasons[i] == AcceptReason::kLossy;
  }
  if (proposed_tokens > 0 && verdict.num_accepted == proposed_tokens) ++full_blocks;
  if (!verdict.judge_head.empty()) judge_head = verdict.judge_head;
  if (verdict.shadow_num_accepted >= 0) {
    shadow_accepted += verdict.shadow_num_accepted;
    shadow_judge_only += verdict.shadow_judge_only;
    shadow_exact_only += verdict.shadow_exact_only;
    shadow_both += verdict.shadow_both;
  }
}

void SpeculationStats::Merge(const SpeculationStats& o) {
  tokens += o.tokens;
  target_passes += o.target_passes;
  target_only_passes += o.target_only_passes;
  draft_passes += o.draft_passes;
  proposed += o.proposed;
  accepted_exact += o.accepted_exact;
  accepted_judge += o.accepted_judge;
  accepted_lossy += o.accepted_lossy;
  full_blocks += o.full_blocks;
  if (accepted_histogram.size() < o.accepted_histogram.size()) accepted_histogram.resize(o.accepted_histogram.size(), 0);
  for (size_t i = 0; i < o.accepted_histogram.size(); ++i) accepted_histogram[i] += o.accepted_histogram[i];
  optimistic_blocks += o.optimistic_blocks;
  optimistic_hits += o.optimistic_hits;
  draft_failures += o.draft_failures;
  shadow_accepted += o.shadow_accepted;
  shadow_judge_only += o.shadow_judge_only;
  shadow_exact_only += o.shadow_exact_only;
  shadow_both += o.shadow_both;
  degraded = degraded || o.degraded;
  if (!o.judge_head.empty()) judge_head = o.judge_head;
  time_to_first_token += o.time_to_first_token;
  prefill_time += o.prefill_time;
  draft_time += o.draft_time;
  verify_time += o.verify_time;
  total_time += o.total_time;
}

double SpeculationStats::tokens_per_pass() const {
  return target_passes > 0 ? static_cast<double>(tokens) / target_passes : 0.0;
}

double SpeculationStats::mean_accepted() const {
  return target_passes > 0 ? static_cast<double>(accepted()) / target_passes : 0.0;
}

namespace {
double TotalSeconds(const SpeculationStats& s) { return std::max(absl::ToDoubleSeconds(s.total_time), 1e-9); }
}  // namespace

nlohmann::json StatsJson(const SpeculationStats& s) {
  nlohmann::json j = {
      {"tokens", s.tokens},
      {"target_passes", s.target_passes},
      {"tokens_per_target_pass", s.tokens_per_pass()},
      {"target_only_passes", s.target_only_passes},
      {"draft_forward_passes", s.draft_passes},
      {"draft_tokens_proposed", s.proposed},
      {"accepted", {{"exact", s.accepted_exact}, {"judge", s.accepted_judge}, {"lossy", s.accepted_lossy}}},
      {"accepted_length_histogram", s.accepted_histogram},
      {"optimistic_blocks", s.optimistic_blocks},
      {"optimistic_hits", s.optimistic_hits},
      {"draft_failures", s.draft_failures},
      {"degraded", s.degraded},
      {"seconds", absl::ToDoubleSeconds(s.total_time)},
      {"time_to_first_token_seconds", absl::ToDoubleSeconds(s.time_to_first_token)},
      {"prefill_seconds", absl::ToDoubleSeconds(s.prefill_time)},
      {"draft_seconds", absl::ToDoubleSeconds(s.draft_time)},
      {"verify_seconds", absl::ToDoubleSeconds(s.verify_time)},
      {"tokens_per_second", s.tokens / TotalSeconds(s)},
  };
  if (s.has_shadow()) {
    j["shadow"] = {{"would_accept", s.shadow_accepted},
                   {"judge_only", s.shadow_judge_only},
                   {"exact_only", s.shadow_exact_only},
                   {"both", s.shadow_both}};
  }
  return j;
}

std::string FormatStats(const SpeculationStats& s, absl::string_view policy, absl::string_view prefix) {
  std::string out;
  absl::StrAppendFormat(&out, "%sspeculative decoding, policy %s%s\n", prefix, policy,
                        s.degraded ? " (DEGRADED: the draft was unavailable for some passes)" : "");
  absl::StrAppendFormat(&out, "%s  tokens %d, target passes %d (%d target-only), tokens per target pass %.2f\n",
                        prefix, s.tokens, s.target_passes, s.target_only_passes, s.tokens_per_pass());
  absl::StrAppendFormat(&out, "%s  draft tokens proposed %d, accepted %d (%.1f%%): exact %d, judge %d, lossy %d\n",
                        prefix, s.proposed, s.accepted(), s.proposed > 0 ? 100.0 * s.accepted() / s.proposed : 0.0,
                        s.accepted_exact, s.accepted_judge, s.accepted_lossy);
  if (s.optimistic_blocks > 0) {
    absl::StrAppendFormat(&out, "%s  pipelined guesses held %d/%d\n", prefix, s.optimistic_hits, s.optimistic_blocks);
  }
  if (s.has_shadow()) {
    absl::StrAppendFormat(&out,
                          "%s  judge shadow: would have accepted %d draft tokens (judge-only %d, exact-only %d, "
                          "both %d)\n",
                          prefix, s.shadow_accepted, s.shadow_judge_only, s.shadow_exact_only, s.shadow_both);
  }
  std::string histogram;
  for (size_t a = 0; a < s.accepted_histogram.size(); ++a) {
    if (s.accepted_histogram[a] == 0) continue;
    absl::StrAppend(&histogram, histogram.empty() ? "" : " ", a, ":", s.accepted_histogram[a]);
  }
  absl::StrAppendFormat(&out, "%s  accepted length per pass (length:passes) %s\n", prefix, histogram);
  if (s.prefill_time + s.draft_time + s.verify_time > absl::ZeroDuration()) {  // in-process runs
    absl::StrAppendFormat(&out, "%s  time: prefill %.3f s, draft %.3f s, verify %.3f s; ", prefix,
                          absl::ToDoubleSeconds(s.prefill_time), absl::ToDoubleSeconds(s.draft_time),
                          absl::ToDoubleSeconds(s.verify_time));
  } else {
    absl::StrAppendFormat(&out, "%s  time: ", prefix);
  }
  absl::StrAppendFormat(&out, "total %.3f s, %.1f tok/s\n", absl::ToDoubleSeconds(s.total_time),
                        s.tokens / TotalSeconds(s));
  return out;
}

}  // namespace verdict::spec
