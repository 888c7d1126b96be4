// SPDX-License-Identifier: Apache-2.0
// Policy evaluation: run a task file through the target alone and through speculative decoding
// under several verification policies, check every output, and compare accuracy against speed.
// This is what `verdict judge eval` prints: whether a lossy policy (the judge, the training-free
// baselines) buys its extra tokens per target pass without losing answers.
//
// Every policy sees the same examples with the same per-example seeds, so the lossless policies
// reproduce the target-only outputs exactly (greedy) or in distribution (sampled).
// Not thread-safe (the models are); one call per engine thread at a time.
#ifndef VERDICT_JUDGE_EVAL_POLICY_EVAL_H_
#define VERDICT_JUDGE_EVAL_POLICY_EVAL_H_

#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "engine/model.h"
#include "engine/sampler.h"
#include "spec/speculation_stats.h"
#include "engine/tokenizer/tokenizer.h"
#include "judge/judge_head.h"
#include "judge/speculative_options.h"
#include "judge/tasks/answer_checker.h"
#include "judge/tasks/task_file.h"
#include "judge/verification.h"
#include "nlohmann/json.hpp"

namespace verdict::judge {

// One row of the evaluation: the target alone, the draft alone, or speculative decoding under one
// policy with one draft window.
struct EvalPolicy {
  std::string name;          // the policy as written: "target", "greedy", "judge@0.3", ...
  std::string rule;          // the policy without its threshold: "judge", "lossy-prob", ...
  bool target_only = false;  // plain decoding with the target; no draft
  bool draft_only = false;   // plain decoding with the draft (its quality without verification)
  VerificationConfig verification;  // speculative rows only
  spec::DraftWindowOptions window;        // speculative rows only
  // The judge or lossy threshold of this row (NaN where none applies).
  float threshold = std::numeric_limits<float>::quiet_NaN();
  bool non_digit_rule = false;  // "nondigit": accept any mismatching token without a digit
  bool oracle_rule = false;     // "oracle": accept a mismatching token iff the answer stays correct
};

// Parses a comma-separated list of policies, each optionally with a threshold "NAME@T":
//   "target"    the target alone (the reference for accuracy and speed);
//   "draft"     the draft alone (what the draft gets right without verification);
//   "standard"  lossless speculative decoding: "greedy" or "sampled" by `sampling`;
//   greedy, sampled, judge[@T], judge-shadow, lossy-prob[@P], lossy-typical[@eps], lossy-kl[@nats]
//               (PolicyConfig's rules), and two evaluation-only rules:
//   "nondigit"  the trivial rule: accept any mismatching draft token that contains no digit;
//   "oracle"    the task's own checker as a judge (accept a mismatch iff the answer text stays a
//               prefix of a reference answer): the ceiling any judge can reach.
// Without "@T", judge rows use `judge_threshold` and lossy rows `lossy_threshold`. Every speculative
// policy is evaluated with every window in `windows` (one row each).
// Errors: kInvalidArgument for an empty list, an unknown or repeated policy, a bad threshold,
// "sampled" with greedy sampling, a bad window.
absl::StatusOr<std::vector<EvalPolicy>> ParseEvalPolicies(absl::string_view list,
                                                          const engine::SamplingParams& sampling,
                                                          absl::Span<const spec::DraftWindowOptions> windows,
                                                          float judge_threshold,
                                                          float lossy_threshold);

struct EvalOptions {
  int64_t max_new_tokens = 128;
  std::vector<int32_t> stop_token_ids;
  // The target-only rows' sampling (the speculative rows use their verification's
  // target_sampling). Example i runs with seed + i under every policy.
  engine::SamplingParams sampling;
  CheckMode check = CheckMode::kFinalAnswer;
  bool add_bos = true;
  const JudgeHead* head = nullptr;  // required by the judge and judge-shadow policies
  // Called after each example: (policy name, examples done, examples in total).
  std::function<void(const std::string& policy, int64_t done, int64_t total)> progress;
};

struct PolicyResult {
  std::string name;
  std::string rule;
  int64_t k = 0;          // the draft window (0: target or draft alone; adaptive: its start)
  bool adaptive_k = false;
  float threshold = std::numeric_limits<float>::quiet_NaN();
  bool lossless = true;  // target alone, or a policy whose output distribution is the target's
  int64_t examples = 0;
  int64_t correct = 0;
  double accuracy = 0;  // correct / examples
  // The speculation statistics summed over the examples: tokens (generated, stop tokens included),
  // target passes (target alone: one per token; draft alone: 0), draft tokens proposed and
  // accepted by rule, the accepted-length histogram.
  spec::SpeculationStats stats;
  // Draft tokens accepted by the judge or a lossy rule that turned a correct answer prefix into a
  // wrong one (by the reference answers' prefix oracle): the wrong tokens a rule let through.
  int64_t wrong_accepted = 0;
  double target_passes_per_answer = 0;  // target_passes / examples: the cost that matters
  double tokens_per_pass = 0;  // tokens / target_passes (target alone: 1)
  double mean_accepted = 0;    // accepted draft tokens per target pass
  double seconds = 0;          // wall time of the generation calls only
  double tokens_per_second = 0;
  // Per example, in the order given, for inspection: the generated text (stop tokens removed),
  // whether it was correct, and how many tokens were generated.
  std::vector<std::string> outputs;
  std::vector<bool> example_correct;
  std::vector<int64_t> example_tokens;
};

// Runs every policy over every example: encodes the prompt, generates (engine::Generate for
// target-only rows, GenerateSpeculative otherwise), decodes the continuation without stop tokens
// and checks it with CheckAnswer(example, output, options.check). A short untimed warm-up run
// comes first, so the first row is not charged for cold caches. `draft` may be null when every
// policy is target-only. Results are in the order of `policies`.
// Errors (checked before any generation): kInvalidArgument for no examples, no policies, a
// speculative policy without a draft, a judge policy without options.head ("the judge policy
// needs --judge HEAD") or with a head of another hidden size; then those of the tokenizer and of
// the generation calls (the message names the policy and the example id).
absl::StatusOr<std::vector<PolicyResult>> EvaluatePolicies(engine::ModelSlice& target,
                                                           engine::ModelSlice* draft,
                                                           const engine::Tokenizer& tokenizer,
                                                           absl::Span<const TaskExample> examples,
                                                           absl::Span<const EvalPolicy> policies,
                                                           const EvalOptions& options);

// The text of `generated` as a continuation of `prompt` (SentencePiece leading spaces kept, as
// the prompt's text plus this text is the whole text), with stop tokens and other special tokens
// dropped. What EvaluatePolicies checks; reference answers should be written the same way.
absl::StatusOr<std::string> DecodeContinuation(const engine::Tokenizer& tokenizer,
                                               absl::Span<const int32_t> prompt,
                                               absl::Span<const int32_t> generated,
                                               absl::Span<const int32_t> stop_token_ids);

// An aligned text table, one row per result, with a legend line under it: policy, lossless?,
// accuracy (correct/total), tokens per target pass, mean accepted, accepted by rule
// exact/judge/lossy, tok/s, and, when a "target" row exists, the speedup over it.
std::string FormatEvalTable(absl::Span<const PolicyResult> results);

// {"policies": [{name, lossless, examples, correct, accuracy, tokens, target_passes, proposed,
// accepted: {exact, judge, lossy}, accepted_length_histogram, tokens_per_target_pass,
// mean_accepted, seconds, tokens_per_second[, speedup_vs_target]}, ...]} (outputs left out).
nlohmann::json EvalResultsToJson(absl::Span<const PolicyResult> results);

}  // namespace verdict::judge

#endif  // VERDICT_JUDGE_EVAL_POLICY_EVAL_H_
