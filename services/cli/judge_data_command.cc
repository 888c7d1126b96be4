// SPDX-License-Identifier: Apache-2.0
// verdict judge data: run the draft over a task file, label its proposals, record the target's
// features, and write a judge dataset (judge/dataset/judge_dataset.h).
#include <cstdio>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "judge/judge_data.h"
#include "judge/judge_head.h"
#include "judge/speculative_session.h"
#include "judge/vocabulary_check.h"
#include "nlohmann/json.hpp"
#include "engine/ready_model.h"
#include "services/cli/cli_util.h"
#include "services/cli/commands.h"
#include "services/cli/speculation_util.h"

namespace verdict::cli {
namespace {

struct JudgeDataFlags {
  std::string model;
  std::string draft;
  std::string tasks;
  std::string out;
  int64_t k = 16;
  int64_t max_tokens = 128;
  int64_t limit = 0;
  std::string dtype = "bf16";
  bool overwrite = false;
  bool strict = false;
  float draft_temperature = 0.0f;
  uint64_t seed = 0;
  PlacementFlags placement;
  bool quiet = false;
  std::string labels = "prefix";
};

absl::Status RunJudgeData(const JudgeDataFlags& flags) {
  if (flags.dtype != "bf16" && flags.dtype != "f32") {
    return absl::InvalidArgumentError(absl::StrCat("--dtype must be bf16 or f32, got \"", flags.dtype, "\""));
  }
  VERDICT_ASSIGN_OR_RETURN(judge::TaskFile tasks,
                           judge::ReadTaskFile(flags.tasks, {flags.strict, flags.limit}));
  if (tasks.skipped_lines > 0) {
    std::fprintf(stderr, "verdict: warning: skipped %lld malformed line(s) of %s, first: %s\n",
                 static_cast<long long>(tasks.skipped_lines), flags.tasks.c_str(),
                 tasks.skip_reasons.empty() ? "" : tasks.skip_reasons.front().c_str());
  }
  VERDICT_ASSIGN_OR_RETURN(engine::ReadyModel target, OpenModel(flags.model, flags.placement));
  VERDICT_ASSIGN_OR_RETURN(engine::ReadyModel draft, OpenModel(flags.draft, flags.placement));
  if (target.loaded.tokenizer == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("the target has no usable tokenizer: ", target.loaded.tokenizer_error));
  }
  VERDICT_RETURN_IF_ERROR(CheckDraftMatchesTarget(target, draft));
  VERDICT_ASSIGN_OR_RETURN(std::string fingerprint,
                           judge::TargetFingerprint(target.loaded.config, *target.loaded.weights));

  judge::DatasetSpec spec;
  spec.hidden_size = target.loaded.config.hidden_size;
  spec.extra_feature_names = judge::JudgeDataExtraFeatureNames();
  spec.feature_dtype = flags.dtype == "f32" ? engine::DType::kF32 : engine::DType::kBF16;
  spec.overwrite = flags.overwrite;
  spec.info = {{"target", flags.model},
               {"target_fingerprint", fingerprint},
               {"draft", flags.draft},
               {"tasks", flags.tasks},
               {"hidden_state", std::string(judge::kHiddenStateDefinition)},
               {"k", flags.k},
               {"max_tokens", flags.max_tokens},
               {"draft_temperature", flags.draft_temperature},
               {"seed", flags.seed},
               {"labels", flags.labels}};
  VERDICT_ASSIGN_OR_RETURN(judge::JudgeDatasetWriter writer, judge::JudgeDatasetWriter::Create(flags.out, spec));

  judge::JudgeDataOptions options;
  options.k = flags.k;
  if (flags.labels == "rollout") {
    options.labels = judge::LabelMode::kRollout;
  } else if (flags.labels != "prefix") {
    return absl::InvalidArgumentError(absl::StrCat("--labels must be prefix or rollout, got \"", flags.labels, "\""));
  }
  options.max_new_tokens = flags.max_tokens;
  options.draft_sampling.temperature = flags.draft_temperature;
  options.draft_sampling.seed = flags.seed;
  if (!flags.quiet) {
    options.progress = [](int64_t done, int64_t total) {
      if (done == total || done % 25 == 0) {
        std::fprintf(stderr, "\r[verdict] examples %lld/%lld", static_cast<long long>(done),
                     static_cast<long long>(total));
        if (done == total) std::fputc('\n', stderr);
      }
    };
  }
  VERDICT_ASSIGN_OR_RETURN(judge::JudgeDataStats stats,
                           judge::CollectJudgeData(*target.model, *draft.model, *target.loaded.tokenizer,
                                                   tasks.examples, options, &writer));
  VERDICT_RETURN_IF_ERROR(writer.Finish());
  const double positive_rate = stats.rows > 0 ? 100.0 * stats.positives / stats.rows : 0.0;
  std::printf("wrote %s: %lld labeled draft tokens from %lld examples (%lld draft blocks)\n", flags.out.c_str(),
              static_cast<long long>(stats.rows), static_cast<long long>(stats.examples),
              static_cast<long long>(stats.draft_blocks));
  std::printf("  correct %lld (%.1f%%), wrong %lld\n", static_cast<long long>(stats.positives), positive_rate,
              static_cast<long long>(stats.rows - stats.positives));
  std::printf("  correct but not the target's greedy choice: %lld (what a judge can add)\n",
              static_cast<long long>(stats.correct_but_not_target));
  std::printf("  wrong but the target's greedy choice: %lld\n", static_cast<long long>(stats.wrong_but_target));
  if (options.labels == judge::LabelMode::kRollout) {
    std::printf("  rollout labels: %lld target rollouts, %lld prefix-correct tokens were dead ends\n",
                static_cast<long long>(stats.rollouts), static_cast<long long>(stats.rollout_dead_ends));
  }
  std::printf("  answers completed along a reference: %lld of %lld\n",
              static_cast<long long>(stats.completed_answers), static_cast<long long>(stats.examples));
  std::printf("  target fingerprint %s, features: hidden[%lld] + target_logprob, target_entropy, draft_logprob\n",
              fingerprint.c_str(), static_cast<long long>(spec.hidden_size));
  return absl::OkStatus();
}

}  // namespace

void AddJudgeDataCommand(CLI::App& judge, int* exit_code) {
  auto flags = std::make_shared<JudgeDataFlags>();
  CLI::App* cmd = judge.add_subcommand(
      "data", "Label draft proposals on a task file and record the target's features (a judge dataset)");
  cmd->add_option("--model", flags->model, "Target model (Hugging Face directory or .gguf)")->required();
  cmd->add_option("--draft", flags->draft, "Draft model (same vocabulary)")->required();
  cmd->add_option("--tasks", flags->tasks,
                  "JSONL: {\"prompt\", \"answers\": [...]} or {\"prompt\", \"labels\": {\"tokens\", \"labels\"}}")
      ->required();
  cmd->add_option("--out", flags->out, "Dataset directory to write")->required();
  cmd->add_option("--k", flags->k, "Draft tokens per block")->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{256}));
  cmd->add_option("--max-tokens", flags->max_tokens, "Answer tokens per example")->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  cmd->add_option("--limit", flags->limit, "Use the first N examples (0 = all)")->capture_default_str();
  cmd->add_option("--dtype", flags->dtype, "Hidden-state storage: bf16 or f32")->capture_default_str();
  cmd->add_option("--labels", flags->labels,
                  "prefix: correct iff still a prefix of a reference answer; rollout: also the target, "
                  "continuing greedily, must reach the right final answer")->capture_default_str();
  cmd->add_flag("--overwrite", flags->overwrite, "Replace an existing dataset in --out");
  cmd->add_flag("--strict", flags->strict, "Fail on a malformed task line instead of skipping it");
  cmd->add_option("--draft-temperature", flags->draft_temperature,
                  "Draft sampling temperature (0 = greedy proposals)")->capture_default_str();
  cmd->add_option("--seed", flags->seed, "Seed for sampled proposals")->capture_default_str();
  AddPlacementFlags(cmd, &flags->placement);
  cmd->add_flag("--quiet", flags->quiet, "No progress on stderr");
  cmd->callback([flags, exit_code] { *exit_code = ExitCode(RunJudgeData(*flags)); });
}

}  // namespace verdict::cli
