// SPDX-License-Identifier: Apache-2.0
// What the speculative subcommands (generate --draft, judge data, judge eval) share: the draft
// window flag, the draft/target compatibility check and loading a judge head for a target.
#ifndef VERDICT_SERVICES_CLI_SPECULATION_UTIL_H_
#define VERDICT_SERVICES_CLI_SPECULATION_UTIL_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "judge/judge_head.h"
#include "judge/speculative_decoder.h"
#include "services/cli/cli_util.h"

namespace verdict::cli {

// "--k" values: comma-separated window sizes (1..256) or "auto" (adaptive between k_min and k_max,
// starting at auto_start). A fixed size above k_max raises that bound (it only matters for auto).
absl::StatusOr<std::vector<spec::DraftWindowOptions>> ParseDraftWindows(const std::string& k_list,
                                                                         int64_t k_min, int64_t k_max,
                                                                         int64_t auto_start);

// The draft must share the target's vocabulary: same size, and the same bytes for every id when
// both ship a tokenizer (a warning on stderr when the draft has none).
absl::Status CheckDraftMatchesTarget(const ReadyModel& target, const ReadyModel& draft);

// Loads a judge head and checks it was trained for `target` (hidden size and fingerprint). With
// `skip_fingerprint` a fingerprint mismatch (e.g. a quantized copy) is a warning on stderr instead;
// a hidden-size mismatch never is.
absl::StatusOr<std::unique_ptr<judge::JudgeHead>> LoadJudgeHeadForTarget(const ReadyModel& target,
                                                                          const std::string& path,
                                                                          bool skip_fingerprint);

}  // namespace verdict::cli

#endif  // VERDICT_SERVICES_CLI_SPECULATION_UTIL_H_
