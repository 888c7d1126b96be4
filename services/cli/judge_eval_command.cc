// SPDX-License-Identifier: Apache-2.0
// verdict judge eval: accuracy and speed of the target alone and of speculative decoding under
// each verification policy, over a task file. The table on stdout is the answer to "does the
// judge keep the answers right while accepting more draft tokens per target pass?".
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/status_macros.h"
#include "judge/eval/policy_eval.h"
#include "judge/judge_head.h"
#include "judge/speculative_session.h"
#include "judge/tasks/answer_checker.h"
#include "judge/tasks/task_file.h"
#include "judge/vocabulary_check.h"
#include "nlohmann/json.hpp"
#include "engine/ready_model.h"
#include "services/cli/cli_util.h"
#include "services/cli/commands.h"
#include "services/cli/speculation_util.h"
#include "spec/speculation_params.h"

namespace verdict::cli {
namespace {

struct JudgeEvalFlags {
  std::string model;
  std::string draft;
  std::string tasks;
  JudgeHeadFlags judge;
  std::string policies;  // empty: target,standard[,judge],lossy-prob
  DraftWindowFlags window{.k = "16"};
  int64_t max_tokens = 128;
  std::string check = "final-answer";
  int64_t limit = 0;
  float temperature = 0.0f;
  int64_t top_k = 0;
  float top_p = 1.0f;
  uint64_t seed = 0;
  float lossy_threshold = 0.3f;
  PlacementFlags placement;
  std::string json;  // a file, or "-" for stdout
  std::string outputs;
};

// Progress on stderr: one rewritten line on a terminal, one line per finished policy otherwise
// (logs should not fill with carriage returns).
void ShowProgress(const std::string& policy, int64_t done, int64_t total) {
  static const bool tty = isatty(fileno(stderr)) != 0;
  if (tty) {
    std::fprintf(stderr, "\r[verdict] %s: %lld/%lld examples", policy.c_str(),
                 static_cast<long long>(done), static_cast<long long>(total));
    if (done == total) std::fputc('\n', stderr);
  } else if (done == total) {
    std::fprintf(stderr, "[verdict] %s: %lld/%lld examples done\n", policy.c_str(),
                 static_cast<long long>(done), static_cast<long long>(total));
  }
  std::fflush(stderr);
}

// One JSON line per policy and example: what each policy wrote and whether it was right.
absl::Status WriteOutputs(const std::string& path, absl::Span<const judge::TaskExample> examples,
                          absl::Span<const judge::PolicyResult> results) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return absl::PermissionDeniedError(absl::StrCat("cannot write ", path));
  for (const judge::PolicyResult& r : results) {
    for (size_t i = 0; i < r.outputs.size() && i < examples.size(); ++i) {
      const nlohmann::json line = {{"policy", r.name},
                                   {"id", examples[i].id},
                                   {"line", examples[i].line},
                                   {"correct", static_cast<bool>(r.example_correct[i])},
                                   {"tokens", r.example_tokens[i]},
                                   {"output", r.outputs[i]}};
      out << line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    }
  }
  out.flush();
  if (!out) return absl::DataLossError(absl::StrCat("failed writing ", path));
  return absl::OkStatus();
}

absl::Status RunJudgeEval(const JudgeEvalFlags& flags) {
  VERDICT_ASSIGN_OR_RETURN(judge::CheckMode check, judge::ParseCheckMode(flags.check));
  VERDICT_ASSIGN_OR_RETURN(std::vector<spec::DraftWindowOptions> windows,
                           ParseDraftWindows(flags.window, /*auto_start=*/16));
  engine::SamplingParams sampling;
  sampling.temperature = flags.temperature;
  sampling.top_k = flags.top_k;
  sampling.top_p = flags.top_p;
  sampling.seed = flags.seed;
  VERDICT_RETURN_IF_ERROR(engine::ValidateSamplingParams(sampling));

  // The task file first: it is the cheapest thing to get wrong.
  judge::TaskReadOptions read_options;
  read_options.max_examples = flags.limit;
  VERDICT_ASSIGN_OR_RETURN(judge::TaskFile tasks, judge::ReadTaskFile(flags.tasks, read_options));
  if (tasks.skipped_lines > 0) {
    std::fprintf(stderr, "verdict: warning: skipped %lld malformed line(s) of %s: %s%s\n",
                 static_cast<long long>(tasks.skipped_lines), flags.tasks.c_str(),
                 absl::StrJoin(tasks.skip_reasons.begin(),
                               tasks.skip_reasons.begin() +
                                   std::min<size_t>(tasks.skip_reasons.size(), 3),
                               "; ")
                     .c_str(),
                 tasks.skipped_lines > 3 ? "; ..." : "");
  }

  VERDICT_ASSIGN_OR_RETURN(engine::ReadyModel target, OpenModel(flags.model, flags.placement));
  const engine::Tokenizer* tokenizer = target.loaded.tokenizer.get();
  if (tokenizer == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("the target has no usable tokenizer: ", target.loaded.tokenizer_error));
  }
  std::unique_ptr<judge::JudgeHead> head;
  if (!flags.judge.path.empty()) {
    VERDICT_ASSIGN_OR_RETURN(head, LoadJudgeHeadForTarget(target, flags.judge.path, flags.judge.skip_fingerprint));
  } else if (flags.judge.threshold.has_value()) {
    return absl::InvalidArgumentError("--judge-threshold needs a judge head (--judge)");
  }

  const std::string policy_list =
      !flags.policies.empty()
          ? flags.policies
          : absl::StrCat("target,standard", head != nullptr ? ",judge" : "", ",lossy-prob");
  const float judge_threshold =
      flags.judge.threshold.value_or(head != nullptr ? head->threshold : 0.5f);
  VERDICT_ASSIGN_OR_RETURN(std::vector<judge::EvalPolicy> policies,
                           judge::ParseEvalPolicies(policy_list, sampling, windows, judge_threshold,
                                                    flags.lossy_threshold));
  const bool needs_draft = std::any_of(policies.begin(), policies.end(),
                                       [](const judge::EvalPolicy& p) { return !p.target_only; });
  std::optional<engine::ReadyModel> draft;
  if (needs_draft) {
    if (flags.draft.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "policies other than \"target\" need a draft model (--draft); policies: ", policy_list));
    }
    VERDICT_ASSIGN_OR_RETURN(draft, OpenModel(flags.draft, flags.placement));
    VERDICT_RETURN_IF_ERROR(CheckDraftMatchesTarget(target, *draft));
  }

  judge::EvalOptions options;
  options.max_new_tokens = flags.max_tokens;
  options.stop_token_ids = engine::StopTokenIds(target.loaded);
  options.sampling = sampling;
  options.check = check;
  options.head = head.get();
  options.progress = ShowProgress;
  std::fprintf(stderr, "[verdict] %zu examples, policies %s, check %s, k %s\n",
               tasks.examples.size(), policy_list.c_str(),
               std::string(judge::CheckModeName(check)).c_str(), flags.window.k.c_str());
  VERDICT_ASSIGN_OR_RETURN(
      std::vector<judge::PolicyResult> results,
      judge::EvaluatePolicies(*target.model, draft.has_value() ? draft->model.get() : nullptr,
                              *tokenizer, tasks.examples, policies, options));
  if (!flags.outputs.empty()) {
    VERDICT_RETURN_IF_ERROR(WriteOutputs(flags.outputs, tasks.examples, results));
  }
  if (!flags.json.empty()) {
    nlohmann::json json = judge::EvalResultsToJson(results);
    json["model"] = flags.model;
    json["draft"] = flags.draft;
    json["judge"] = flags.judge.path;
    json["tasks"] = flags.tasks;
    json["examples"] = tasks.examples.size();
    json["skipped_lines"] = tasks.skipped_lines;
    json["check"] = std::string(judge::CheckModeName(check));
    json["max_new_tokens"] = flags.max_tokens;
    json["sampling"] = {{"temperature", flags.temperature}, {"top_k", flags.top_k},
                        {"top_p", flags.top_p}, {"seed", flags.seed}};
    if (flags.json == "-") {
      std::printf("%s\n", json.dump(2).c_str());
    } else {
      std::ofstream out(flags.json, std::ios::binary | std::ios::trunc);
      out << json.dump(2) << "\n";
      out.flush();
      if (!out) return absl::PermissionDeniedError(absl::StrCat("cannot write ", flags.json));
    }
  }
  if (flags.json != "-") std::fputs(judge::FormatEvalTable(results).c_str(), stdout);
  std::fflush(stdout);
  return absl::OkStatus();
}

}  // namespace

void AddJudgeEvalCommand(CLI::App& judge, int* exit_code) {
  auto flags = std::make_shared<JudgeEvalFlags>();
  CLI::App* cmd = judge.add_subcommand(
      "eval", "Compare the target alone and speculative policies on a task file: accuracy vs speed");
  cmd->add_option("--model", flags->model, "Target model (Hugging Face directory or .gguf)")
      ->required();
  cmd->add_option("--draft", flags->draft, "Draft model (same vocabulary as the target)");
  cmd->add_option("--tasks", flags->tasks, "Task file (JSONL: prompt, answer(s), final_answer)")
      ->required();
  AddJudgeHeadFlags(cmd, &flags->judge, "Judge head (.safetensors from `verdict judge train`); adds the judge policy");
  cmd->add_option("--policies", flags->policies,
                  absl::StrCat("Comma-separated: target, draft, the verification policies (",
                               spec::PolicySpellings(),
                               "; judge and lossy rules take @THRESHOLD, e.g. judge@0.3, lossy-kl@0.5; standard "
                               "and exact mean greedy or sampled by the sampling flags), nondigit (accept any "
                               "mismatch without a digit), oracle (the checker as judge: the ceiling) (default: "
                               "target,standard[,judge],lossy-prob)"));
  AddDraftWindowFlags(cmd, &flags->window,
                      "Draft windows, comma-separated: tokens per block (1-256) or \"auto\"; every "
                      "speculative policy is evaluated with each");
  cmd->add_option("--max-tokens", flags->max_tokens, "Maximum new tokens per example")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 30));
  cmd->add_option("--check", flags->check,
                  "final-answer (last number matches) or reference (output equals an answer)")
      ->capture_default_str();
  cmd->add_option("--limit", flags->limit, "Evaluate only the first N examples (0 = all)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--temperature", flags->temperature, "Sampling temperature (0 = greedy)")
      ->capture_default_str();
  cmd->add_option("--top-k", flags->top_k, "Keep the k most likely tokens (0 = off)")
      ->capture_default_str();
  cmd->add_option("--top-p", flags->top_p, "Nucleus sampling mass (1 = off)")->capture_default_str();
  cmd->add_option("--seed", flags->seed, "Random seed (example i uses seed + i)")
      ->capture_default_str();
  cmd->add_option("--lossy-threshold", flags->lossy_threshold,
                  "lossy-prob: accept a mismatch if p_target(token) >= this; lossy-typical: epsilon")
      ->capture_default_str();
  AddPlacementFlags(cmd, &flags->placement);
  cmd->add_option("--json", flags->json,
                  "Also write the results as JSON to this file (\"-\": JSON on stdout instead of the table)");
  cmd->add_option("--outputs", flags->outputs,
                  "Write each policy's output and correctness per example to this JSONL file");
  cmd->callback([flags, exit_code] { *exit_code = ExitCode(RunJudgeEval(*flags)); });
}

}  // namespace verdict::cli
