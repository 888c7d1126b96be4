// SPDX-License-Identifier: Apache-2.0
// What the speculative subcommands (generate --draft, judge data, judge eval, client) share: the
// draft window flags, the draft/target compatibility check and loading a judge head for a target.
#ifndef VERDICT_SERVICES_CLI_SPECULATION_UTIL_H_
#define VERDICT_SERVICES_CLI_SPECULATION_UTIL_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/status/statusor.h"
#include "judge/judge_head.h"
#include "judge/speculative_options.h"
#include "engine/ready_model.h"
#include "services/cli/cli_util.h"

namespace verdict::cli {

// The draft-window flags, spelled the same way by every command (generate, judge eval, client):
// --k N or "auto" (adaptive; comma-separated where a command evaluates several windows), and the
// adaptive window's bounds --k-min and --k-max.
struct DraftWindowFlags {
  std::string k;
  int64_t k_min = 1;
  int64_t k_max = 64;
};
// Declares the three flags on `cmd`; `k_help` says what --k takes and what its default means.
void AddDraftWindowFlags(CLI::App* cmd, DraftWindowFlags* flags, const std::string& k_help);
// The windows --k names: a size (the adaptive bounds are raised to include it) or "auto" (adaptive
// between k_min and k_max, starting at auto_start). Only the syntax is checked (a client leaves
// the values to the server); kInvalidArgument for an entry that is neither.
absl::StatusOr<std::vector<spec::DraftWindowOptions>> ParseDraftWindowSyntax(const DraftWindowFlags& flags,
                                                                             int64_t auto_start);
// The same, each window validated (1..256, min <= max).
absl::StatusOr<std::vector<spec::DraftWindowOptions>> ParseDraftWindows(const DraftWindowFlags& flags,
                                                                         int64_t auto_start);

// The judge head flags of the commands that decode with one: --judge, --judge-threshold,
// --judge-skip-fingerprint.
struct JudgeHeadFlags {
  std::string path;
  std::optional<float> threshold;  // unset: the head's own
  bool skip_fingerprint = false;
};
void AddJudgeHeadFlags(CLI::App* cmd, JudgeHeadFlags* flags, const std::string& judge_help);

// The draft must share the target's vocabulary: same size, and the same bytes for every id when
// both ship a tokenizer (a warning on stderr when the draft has none).
absl::Status CheckDraftMatchesTarget(const engine::ReadyModel& target, const engine::ReadyModel& draft);

// Loads a judge head and checks it was trained for `target` (hidden size and fingerprint). With
// `skip_fingerprint` a fingerprint mismatch (e.g. a quantized copy) is a warning on stderr instead;
// a hidden-size mismatch never is.
absl::StatusOr<std::unique_ptr<judge::JudgeHead>> LoadJudgeHeadForTarget(const engine::ReadyModel& target,
                                                                          const std::string& path,
                                                                          bool skip_fingerprint);

}  // namespace verdict::cli

#endif  // VERDICT_SERVICES_CLI_SPECULATION_UTIL_H_
