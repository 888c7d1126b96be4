// SPDX-License-Identifier: Apache-2.0
#include "judge/eval/policy_eval.h"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <set>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"
#include "engine/generator.h"
#include "engine/tokenizer/detokenizer.h"

namespace verdict::judge {
namespace {

constexpr absl::string_view kTargetPolicy = "target";
constexpr absl::string_view kKnownPolicies[] = {"target",       "standard",   "greedy",
                                                "sampled",      "judge",      "judge-shadow",
                                                "lossy-prob",   "lossy-typical"};

bool NeedsHead(const EvalPolicy& policy) {
  return !policy.target_only && policy.verification.judge != JudgeMode::kOff;
}

// Per-example seeds: the examples differ from each other, and each one gets the same random
// stream under every policy, so sampled rows compare like with like.
engine::SamplingParams ExampleSampling(engine::SamplingParams sampling, size_t index) {
  sampling.seed += index;
  return sampling;
}

// Adds the error's context (policy and example) without changing its code.
absl::Status InContext(const absl::Status& status, const std::string& policy,
                       const TaskExample& example) {
  return absl::Status(status.code(), absl::StrCat("policy ", policy, ", example ", example.id,
                                                  " (line ", example.line, "): ", status.message()));
}

absl::Status CheckPolicies(engine::ModelSlice& target, const engine::ModelSlice* draft,
                           absl::Span<const TaskExample> examples,
                           absl::Span<const EvalPolicy> policies, const EvalOptions& options) {
  if (examples.empty()) return absl::InvalidArgumentError("no examples to evaluate");
  if (policies.empty()) return absl::InvalidArgumentError("no policies to evaluate");
  if (options.max_new_tokens < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_new_tokens must be >= 1, got ", options.max_new_tokens));
  }
  VERDICT_RETURN_IF_ERROR(engine::ValidateSamplingParams(options.sampling));
  for (const EvalPolicy& policy : policies) {
    if (policy.target_only) continue;
    if (draft == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("the ", policy.name, " policy needs a draft model (--draft)"));
    }
    if (NeedsHead(policy)) {
      if (options.head == nullptr) {
        return absl::InvalidArgumentError(
            absl::StrCat("the ", policy.name, " policy needs --judge HEAD"));
      }
      if (options.head->hidden_size() != target.config().hidden_size) {
        return absl::InvalidArgumentError(absl::StrCat(
            "the judge head reads hidden states of size ", options.head->hidden_size(),
            " but the target's are ", target.config().hidden_size));
      }
    }
    VERDICT_RETURN_IF_ERROR(ValidateVerificationConfig(policy.verification));
    VERDICT_RETURN_IF_ERROR(ValidateDraftWindowOptions(policy.window));
  }
  return absl::OkStatus();
}

// One policy over all examples.
absl::StatusOr<PolicyResult> EvaluatePolicy(engine::ModelSlice& target, engine::ModelSlice* draft,
                                            const engine::Tokenizer& tokenizer,
                                            absl::Span<const TaskExample> examples,
                                            const EvalPolicy& policy,
                                            const EvalOptions& options) {
  PolicyResult result;
  result.name = policy.name;
  result.lossless = policy.target_only || policy.verification.lossless();
  absl::Duration elapsed;
  for (size_t i = 0; i < examples.size(); ++i) {
    const TaskExample& example = examples[i];
    absl::StatusOr<std::vector<int32_t>> prompt =
        tokenizer.Encode(example.prompt, {/*add_bos=*/options.add_bos, /*parse_special=*/false});
    if (!prompt.ok()) return InContext(prompt.status(), policy.name, example);

    std::vector<int32_t> generated;
    if (policy.target_only) {
      engine::GenerateOptions generate;
      generate.max_new_tokens = options.max_new_tokens;
      generate.sampling = ExampleSampling(options.sampling, i);
      generate.stop_token_ids = options.stop_token_ids;
      const absl::Time start = absl::Now();
      absl::StatusOr<engine::GenerateResult> out = engine::Generate(target, *prompt, generate);
      elapsed += absl::Now() - start;
      if (!out.ok()) return InContext(out.status(), policy.name, example);
      generated = std::move(out->tokens);
      // Plain decoding: every token costs one target pass (the prefill yields the first).
      result.target_passes += static_cast<int64_t>(generated.size());
    } else {
      SpeculativeOptions spec;
      spec.max_new_tokens = options.max_new_tokens;
      spec.stop_token_ids = options.stop_token_ids;
      spec.verification = policy.verification;
      spec.verification.target_sampling = ExampleSampling(policy.verification.target_sampling, i);
      spec.head = options.head;
      spec.window = policy.window;
      const absl::Time start = absl::Now();
      absl::StatusOr<SpeculativeResult> out = GenerateSpeculative(target, *draft, *prompt, spec);
      elapsed += absl::Now() - start;
      if (!out.ok()) return InContext(out.status(), policy.name, example);
      generated = std::move(out->tokens);
      const SpeculativeStats& stats = out->stats;
      result.target_passes += stats.target_passes;
      result.proposed += stats.proposed;
      result.accepted_exact += stats.accepted_exact;
      result.accepted_judge += stats.accepted_judge;
      result.accepted_lossy += stats.accepted_lossy;
      if (result.accepted_histogram.size() < stats.accepted_histogram.size()) {
        result.accepted_histogram.resize(stats.accepted_histogram.size(), 0);
      }
      for (size_t a = 0; a < stats.accepted_histogram.size(); ++a) {
        result.accepted_histogram[a] += stats.accepted_histogram[a];
      }
    }
    result.tokens += static_cast<int64_t>(generated.size());
    absl::StatusOr<std::string> text =
        DecodeContinuation(tokenizer, *prompt, generated, options.stop_token_ids);
    if (!text.ok()) return InContext(text.status(), policy.name, example);
    const bool correct = CheckAnswer(example, *text, options.check);
    result.correct += correct ? 1 : 0;
    result.outputs.push_back(*std::move(text));
    result.example_correct.push_back(correct);
    result.example_tokens.push_back(static_cast<int64_t>(generated.size()));
    ++result.examples;
    if (options.progress) options.progress(policy.name, result.examples, examples.size());
  }
  result.accuracy = static_cast<double>(result.correct) / result.examples;
  if (result.target_passes > 0) {
    result.tokens_per_pass = static_cast<double>(result.tokens) / result.target_passes;
    result.mean_accepted =
        static_cast<double>(result.accepted_exact + result.accepted_judge + result.accepted_lossy) /
        result.target_passes;
  }
  result.seconds = absl::ToDoubleSeconds(elapsed);
  result.tokens_per_second = result.seconds > 0 ? result.tokens / result.seconds : 0.0;
  return result;
}

// One short untimed generation per kind of decoding before anything is timed: the first calls pay
// for page faults on the weights, thread start-up and allocations, and the first row (usually
// "target", the speedup's denominator) would otherwise carry that cost alone.
absl::Status WarmUp(engine::ModelSlice& target, engine::ModelSlice* draft,
                    const engine::Tokenizer& tokenizer, const TaskExample& example,
                    absl::Span<const EvalPolicy> policies, const EvalOptions& options) {
  constexpr int64_t kWarmUpTokens = 8;
  VERDICT_ASSIGN_OR_RETURN(std::vector<int32_t> prompt,
                           tokenizer.Encode(example.prompt, {options.add_bos, false}));
  engine::GenerateOptions generate;
  generate.max_new_tokens = std::min(options.max_new_tokens, kWarmUpTokens);
  generate.sampling = options.sampling;
  VERDICT_RETURN_IF_ERROR(engine::Generate(target, prompt, generate).status());
  for (const EvalPolicy& policy : policies) {
    if (policy.target_only || draft == nullptr) continue;
    SpeculativeOptions spec;
    spec.max_new_tokens = generate.max_new_tokens;
    spec.verification = policy.verification;
    spec.head = options.head;
    spec.window = policy.window;
    VERDICT_RETURN_IF_ERROR(GenerateSpeculative(target, *draft, prompt, spec).status());
    break;  // one speculative run warms the draft; the policies share everything else
  }
  return absl::OkStatus();
}

// The tok/s of the "target" row, or 0 when there is none (then no speedups are reported).
double TargetTokensPerSecond(absl::Span<const PolicyResult> results) {
  for (const PolicyResult& r : results) {
    if (r.name == kTargetPolicy) return r.tokens_per_second;
  }
  return 0.0;
}

}  // namespace

absl::StatusOr<std::vector<EvalPolicy>> ParseEvalPolicies(absl::string_view list,
                                                          const engine::SamplingParams& sampling,
                                                          const DraftWindowOptions& window,
                                                          float judge_threshold,
                                                          float lossy_threshold) {
  std::vector<EvalPolicy> policies;
  std::set<std::string> seen;
  for (absl::string_view part : absl::StrSplit(list, ',', absl::SkipWhitespace())) {
    const std::string name(absl::StripAsciiWhitespace(part));
    if (std::find(std::begin(kKnownPolicies), std::end(kKnownPolicies), name) ==
        std::end(kKnownPolicies)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "unknown policy \"", name, "\"; expected a comma-separated list of ",
          absl::StrJoin(kKnownPolicies, ", ")));
    }
    EvalPolicy policy;
    if (name == kTargetPolicy) {
      policy.name = name;
      policy.target_only = true;
    } else {
      const std::string rule =
          name == "standard" ? (sampling.greedy() ? "greedy" : "sampled") : name;
      VERDICT_ASSIGN_OR_RETURN(VerificationConfig config, PolicyConfig(rule, sampling));
      policy.name = rule;
      policy.verification = std::move(config);
      policy.verification.judge_threshold = judge_threshold;
      policy.verification.lossy_threshold = lossy_threshold;
      policy.window = window;
      VERDICT_RETURN_IF_ERROR(ValidateVerificationConfig(policy.verification));
      VERDICT_RETURN_IF_ERROR(ValidateDraftWindowOptions(policy.window));
    }
    if (!seen.insert(policy.name).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("policy \"", policy.name, "\" is listed twice",
                       name != policy.name ? " (\"standard\" resolves to it)" : ""));
    }
    policies.push_back(std::move(policy));
  }
  if (policies.empty()) return absl::InvalidArgumentError("no policies given");
  return policies;
}

absl::StatusOr<std::vector<PolicyResult>> EvaluatePolicies(engine::ModelSlice& target,
                                                           engine::ModelSlice* draft,
                                                           const engine::Tokenizer& tokenizer,
                                                           absl::Span<const TaskExample> examples,
                                                           absl::Span<const EvalPolicy> policies,
                                                           const EvalOptions& options) {
  // Configuration errors come before any generation: a typo must not cost a long first policy.
  VERDICT_RETURN_IF_ERROR(CheckPolicies(target, draft, examples, policies, options));
  VERDICT_RETURN_IF_ERROR(WarmUp(target, draft, tokenizer, examples.front(), policies, options));
  std::vector<PolicyResult> results;
  results.reserve(policies.size());
  for (const EvalPolicy& policy : policies) {
    VERDICT_ASSIGN_OR_RETURN(PolicyResult result,
                             EvaluatePolicy(target, draft, tokenizer, examples, policy, options));
    results.push_back(std::move(result));
  }
  return results;
}

absl::StatusOr<std::string> DecodeContinuation(const engine::Tokenizer& tokenizer,
                                               absl::Span<const int32_t> prompt,
                                               absl::Span<const int32_t> generated,
                                               absl::Span<const int32_t> stop_token_ids) {
  std::vector<int32_t> kept;
  kept.reserve(generated.size());
  for (int32_t token : generated) {
    if (std::find(stop_token_ids.begin(), stop_token_ids.end(), token) == stop_token_ids.end()) {
      kept.push_back(token);
    }
  }
  engine::IncrementalDetokenizer detokenizer(&tokenizer, /*skip_special=*/true);
  VERDICT_RETURN_IF_ERROR(detokenizer.AddContext(prompt));
  VERDICT_ASSIGN_OR_RETURN(std::string text, detokenizer.Add(kept));
  absl::StrAppend(&text, detokenizer.Flush());
  return text;
}

std::string FormatEvalTable(absl::Span<const PolicyResult> results) {
  const double target_tps = TargetTokensPerSecond(results);
  const bool with_speedup = target_tps > 0;
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> header = {"policy",        "lossless", "accuracy",
                                     "tok/target pass", "mean accepted",
                                     "accepted exact/judge/lossy", "tok/s"};
  if (with_speedup) header.push_back("speedup");
  rows.push_back(header);
  for (const PolicyResult& r : results) {
    const bool target_only = r.name == kTargetPolicy;
    std::vector<std::string> row = {
        r.name,
        r.lossless ? "yes" : "NO",
        absl::StrFormat("%5.1f%% (%d/%d)", 100.0 * r.accuracy, r.correct, r.examples),
        absl::StrFormat("%.2f", r.tokens_per_pass),
        target_only ? "-" : absl::StrFormat("%.2f", r.mean_accepted),
        target_only ? "-"
                    : absl::StrCat(r.accepted_exact, "/", r.accepted_judge, "/", r.accepted_lossy),
        absl::StrFormat("%.1f", r.tokens_per_second)};
    if (with_speedup) row.push_back(absl::StrFormat("%.2fx", r.tokens_per_second / target_tps));
    rows.push_back(std::move(row));
  }
  std::vector<size_t> widths(header.size(), 0);
  for (const auto& row : rows) {
    for (size_t c = 0; c < row.size(); ++c) widths[c] = std::max(widths[c], row[c].size());
  }
  std::string table;
  for (size_t r = 0; r < rows.size(); ++r) {
    std::string line;
    for (size_t c = 0; c < rows[r].size(); ++c) {
      // Text columns are left-aligned, numbers right-aligned (the first two are text).
      const std::string& cell = rows[r][c];
      const std::string pad(widths[c] - cell.size(), ' ');
      if (c > 0) line += "  ";
      line += (c < 2 || r == 0) ? cell + pad : pad + cell;
    }
    absl::StrAppend(&table, absl::StripTrailingAsciiWhitespace(line), "\n");
    if (r == 0) {
      size_t total = 0;
      for (size_t w : widths) total += w;
      absl::StrAppend(&table, std::string(total + 2 * (widths.size() - 1), '-'), "\n");
    }
  }
  absl::StrAppend(&table,
                  "tok/target pass: generated tokens per target forward pass (target alone = 1); "
                  "mean accepted: draft tokens accepted per pass, split by the rule that accepted "
                  "them (exact = lossless)",
                  with_speedup ? "; speedup: tok/s over the target alone" : "", "\n");
  return table;
}

nlohmann::json EvalResultsToJson(absl::Span<const PolicyResult> results) {
  const double target_tps = TargetTokensPerSecond(results);
  nlohmann::json policies = nlohmann::json::array();
  for (const PolicyResult& r : results) {
    nlohmann::json j = {
        {"name", r.name},
        {"lossless", r.lossless},
        {"examples", r.examples},
        {"correct", r.correct},
        {"accuracy", r.accuracy},
        {"tokens", r.tokens},
        {"target_passes", r.target_passes},
        {"proposed", r.proposed},
        {"accepted", {{"exact", r.accepted_exact}, {"judge", r.accepted_judge},
                      {"lossy", r.accepted_lossy}}},
        {"accepted_length_histogram", r.accepted_histogram},
        {"tokens_per_target_pass", r.tokens_per_pass},
        {"mean_accepted", r.mean_accepted},
        {"seconds", r.seconds},
        {"tokens_per_second", r.tokens_per_second},
    };
    if (target_tps > 0) j["speedup_vs_target"] = r.tokens_per_second / target_tps;
    policies.push_back(std::move(j));
  }
  return {{"policies", std::move(policies)}};
}

}  // namespace verdict::judge
