// SPDX-License-Identifier: Apache-2.0
// The statistics of speculative decoding: of one request, or summed over a process's requests. One
// type for the in-process decoder, the evaluation, the coordinator and the client, with one way to
// record a target pass, one merge and one printer (text and JSON, for the command lines); the wire
// form is verdict.v1.SpeculationStats (also what the admin status serves). Plain value type, not
// thread-safe.
#ifndef VERDICT_SPEC_SPECULATION_STATS_H_
#define VERDICT_SPEC_SPECULATION_STATS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "nlohmann/json.hpp"
#include "spec/draft_block.h"

namespace verdict::spec {

struct SpeculationStats {
  int64_t tokens = 0;              // generated tokens
  int64_t target_passes = 0;       // verification (or plain decode) passes of the target
  int64_t target_only_passes = 0;  // passes without draft tokens (no draft, or it was down)
  int64_t draft_passes = 0;        // draft forward passes (in-process decoding only)
  int64_t proposed = 0;            // draft tokens sent for verification
  int64_t accepted_exact = 0;      // lossless acceptances
  int64_t accepted_judge = 0;
  int64_t accepted_lossy = 0;
  int64_t full_blocks = 0;         // passes that accepted every draft token (k > 0)
  // accepted_histogram[a] = passes that accepted a draft tokens.
  std::vector<int64_t> accepted_histogram;
  // Pipelined drafting: proposals drafted ahead of a verdict, and those whose assumption held.
  int64_t optimistic_blocks = 0;
  int64_t optimistic_hits = 0;
  int64_t draft_failures = 0;
  // Judge shadow mode (spec::Verdict): what the judge alone would have done.
  int64_t shadow_accepted = 0;
  int64_t shadow_judge_only = 0;
  int64_t shadow_exact_only = 0;
  int64_t shadow_both = 0;
  bool degraded = false;  // some passes ran target-only because the draft was unavailable
  // The judge head that judged the last judged pass (Verdict::judge_head); empty without a judge.
  std::string judge_head;
  absl::Duration time_to_first_token;
  // Waiting times of the coordinator's requests: the first target pass (it carries the prompt),
  // the later passes, and the draft's proposals (which overlap the passes when pipelined).
  absl::Duration prefill_time;
  absl::Duration draft_time;
  absl::Duration verify_time;
  absl::Duration total_time;

  // Records one target pass over a block of `proposed_tokens` draft tokens and its verdict.
  void RecordPass(int64_t proposed_tokens, const Verdict& verdict);
  // Adds `other` (counters and times summed, histograms element-wise, degraded or-ed).
  void Merge(const SpeculationStats& other);

  int64_t accepted() const { return accepted_exact + accepted_judge + accepted_lossy; }
  double tokens_per_pass() const;
  double mean_accepted() const;  // accepted draft tokens per pass
  bool has_shadow() const { return shadow_accepted > 0 || shadow_judge_only > 0 || shadow_both > 0; }
};

// The one printer. JSON keys: tokens, target_passes, tokens_per_target_pass, target_only_passes,
// draft_forward_passes, draft_tokens_proposed, accepted {exact, judge, lossy},
// accepted_length_histogram, optimistic_blocks, optimistic_hits, draft_failures, degraded,
// seconds (total), time_to_first_token_seconds, prefill_seconds, draft_seconds, verify_seconds,
// tokens_per_second, and shadow {would_accept, judge_only, exact_only, both} when the shadow judge
// ran. docs/cli.md documents them.
nlohmann::json StatsJson(const SpeculationStats& stats);
// Human-readable lines, each starting with `prefix`, about a run of `policy` (a PolicyLabel).
std::string FormatStats(const SpeculationStats& stats, absl::string_view policy, absl::string_view prefix);

}  // namespace verdict::spec

#endif  // VERDICT_SPEC_SPECULATION_STATS_H_
