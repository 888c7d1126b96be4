// SPDX-License-Identifier: Apache-2.0
#include "engine/ready_model.h"
#include "services/cli/speculation_util.h"

#include <algorithm>
#include <cstdio>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/status_macros.h"
#include "judge/speculative_session.h"
#include "judge/vocabulary_check.h"

namespace verdict::cli {

void AddJudgeHeadFlags(CLI::App* cmd, JudgeHeadFlags* flags, const std::string& judge_help) {
  cmd->add_option("--judge", flags->path, judge_help);
  cmd->add_option("--judge-threshold", flags->threshold,
                  "Judge acceptance threshold on its probability (default: the head's; > 1 disables)");
  cmd->add_flag("--judge-skip-fingerprint", flags->skip_fingerprint,
                "Use a judge head trained for another copy of the target (e.g. quantized)");
}

void AddDraftWindowFlags(CLI::App* cmd, DraftWindowFlags* flags, const std::string& k_help) {
  cmd->add_option("--k", flags->k, k_help)->capture_default_str();
  cmd->add_option("--k-min", flags->k_min, "Smallest window with --k auto")->capture_default_str();
  cmd->add_option("--k-max", flags->k_max, "Largest window with --k auto")->capture_default_str();
}

absl::StatusOr<std::vector<spec::DraftWindowOptions>> ParseDraftWindowSyntax(const DraftWindowFlags& flags,
                                                                             int64_t auto_start) {
  std::vector<spec::DraftWindowOptions> windows;
  for (absl::string_view part : absl::StrSplit(flags.k, ',', absl::SkipWhitespace())) {
    part = absl::StripAsciiWhitespace(part);
    spec::DraftWindowOptions window;
    window.min_k = flags.k_min;
    window.max_k = flags.k_max;
    if (part == "auto") {
      window.adaptive = true;
      window.k = std::clamp<int64_t>(auto_start, flags.k_min, std::max(flags.k_min, flags.k_max));
    } else if (!absl::SimpleAtoi(part, &window.k)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--k must be a number or \"auto\" (comma-separated where several are allowed), got \"",
                       flags.k, "\""));
    } else {
      window.max_k = std::max(window.max_k, window.k);
    }
    windows.push_back(window);
  }
  if (windows.empty()) return absl::InvalidArgumentError("--k is empty");
  return windows;
}

absl::StatusOr<std::vector<spec::DraftWindowOptions>> ParseDraftWindows(const DraftWindowFlags& flags,
                                                                         int64_t auto_start) {
  VERDICT_ASSIGN_OR_RETURN(std::vector<spec::DraftWindowOptions> windows, ParseDraftWindowSyntax(flags, auto_start));
  for (const spec::DraftWindowOptions& window : windows) VERDICT_RETURN_IF_ERROR(spec::ValidateDraftWindowOptions(window));
  return windows;
}

absl::Status CheckDraftMatchesTarget(const engine::ReadyModel& target, const engine::ReadyModel& draft) {
  VERDICT_RETURN_IF_ERROR(judge::CheckCompatibleModels(target.loaded.config, draft.loaded.config));
  if (target.loaded.tokenizer != nullptr && draft.loaded.tokenizer != nullptr) {
    return judge::CheckSameVocabulary(*target.loaded.tokenizer, *draft.loaded.tokenizer);
  }
  if (draft.loaded.tokenizer == nullptr) {
    std::fprintf(stderr,
                 "verdict: warning: the draft ships no tokenizer; only its vocabulary size was checked "
                 "against the target's\n");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<judge::JudgeHead>> LoadJudgeHeadForTarget(const engine::ReadyModel& target,
                                                                          const std::string& path,
                                                                          bool skip_fingerprint) {
  VERDICT_ASSIGN_OR_RETURN(judge::JudgeHead loaded, judge::LoadJudgeHead(path));
  auto head = std::make_unique<judge::JudgeHead>(std::move(loaded));
  VERDICT_ASSIGN_OR_RETURN(std::string fingerprint,
                           judge::TargetFingerprint(target.loaded.config, *target.loaded.weights));
  const int64_t hidden = target.loaded.config.hidden_size;
  absl::Status match = judge::CheckHeadMatchesTarget(*head, fingerprint, hidden);
  if (!match.ok()) {
    if (!skip_fingerprint || head->hidden_size() != hidden) return match;
    std::fprintf(stderr, "verdict: warning: %s; continuing (--judge-skip-fingerprint)\n",
                 std::string(match.message()).c_str());
  }
  return head;
}

}  // namespace verdict::cli
