// SPDX-License-Identifier: Apache-2.0
#include "judge/eval/policy_eval.h"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <memory>
#include <optional>
#include <set>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"
#include "engine/generator.h"
#include "engine/tokenizer/detokenizer.h"
#include "judge/tasks/prefix_labeler.h"
#include "local/speculative_generation.h"

namespace verdict::judge {
namespace {

// The evaluation's own rows beside the verification policies (spec::ParsePolicyName's names).
constexpr absl::string_view kTargetPolicy = "target";
constexpr absl::string_view kDraftPolicy = "draft";
constexpr absl::string_view kNonDigitRule = "nondigit";
constexpr absl::string_view kOracleRule = "oracle";
constexpr absl::string_view kEvaluationRows[] = {kTargetPolicy, kDraftPolicy, kNonDigitRule, kOracleRule};

// Per-example state of the evaluation-only rules: the committed answer text, the reference
// answers' prefix oracle, and the count of wrong tokens the lossy rules let through.
class AnswerTracker {
 public:
  AnswerTracker(const engine::Tokenizer& tokenizer, const TaskExample& example)
      : tokenizer_(tokenizer), labeler_(example.answers), has_answers_(!example.answers.empty()) {}

  // Would `token`, after the block's accepted `prefix`, keep the answer a correct prefix?
  bool Acceptable(absl::Span<const int32_t> prefix, int32_t token) const {
    std::vector<int32_t> ids(prefix.begin(), prefix.end());
    ids.push_back(token);
    absl::StatusOr<std::vector<uint8_t>> labels = labeler_.LabelTokenIds(tokenizer_, text_, ids);
    return labels.ok() && labels->back() != 0;
  }

  // Counts the judge/lossy acceptances of this pass that broke a correct answer prefix.
  void OnVerdict(const spec::DraftBlock& block, const spec::Verdict& verdict) {
    if (!has_answers_ || verdict.num_accepted == 0) return;
    absl::StatusOr<std::vector<uint8_t>> labels = labeler_.LabelTokenIds(
        tokenizer_, text_, absl::MakeConstSpan(block.tokens).subspan(0, verdict.num_accepted));
    if (!labels.ok()) return;
    bool correct_before = labeler_.IsCorrectPrefix(text_);
    for (int32_t i = 0; i < verdict.num_accepted; ++i) {
      const bool lossy = verdict.reasons[i] == spec::AcceptReason::kJudge || verdict.reasons[i] == spec::AcceptReason::kLossy;
      if (lossy && correct_before && (*labels)[i] == 0) ++wrong_accepted_;
      correct_before = (*labels)[i] != 0;
      // Generation ends at a stop token: accepted draft tokens after it are never emitted.
      if (tokenizer_.IsSpecial(block.tokens[i])) break;
    }
  }

  void OnTokens(absl::Span<const int32_t> tokens) {
    for (int32_t t : tokens) {
      if (tokenizer_.IsSpecial(t)) continue;
      absl::StatusOr<std::string> bytes = tokenizer_.TokenBytes(t);
      if (bytes.ok()) text_ += *bytes;
    }
  }

  int64_t wrong_accepted() const { return wrong_accepted_; }

 private:
  const engine::Tokenizer& tokenizer_;
  PrefixLabeler labeler_;
  bool has_answers_;
  std::string text_;
  int64_t wrong_accepted_ = 0;
};

// 1 for every token whose text has no ASCII digit (and is not special): the "nondigit" rule.
std::shared_ptr<const std::vector<uint8_t>> NonDigitMask(const engine::Tokenizer& tokenizer) {
  auto mask = std::make_shared<std::vector<uint8_t>>(tokenizer.vocab_size(), 0);
  for (int32_t id = 0; id < tokenizer.vocab_size(); ++id) {
    absl::StatusOr<std::string> bytes = tokenizer.TokenBytes(id);
    if (!bytes.ok() || tokenizer.IsSpecial(id)) continue;
    (*mask)[id] = std::none_of(bytes->begin(), bytes->end(), [](char c) { return c >= '0' && c <= '9'; });
  }
  return mask;
}

bool Speculative(const EvalPolicy& policy) { return !policy.target_only && !policy.draft_only; }

bool NeedsHead(const EvalPolicy& policy) {
  return Speculative(policy) && policy.verification.judge != JudgeMode::kOff;
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
    if (policy.draft_only) continue;
    if (!policy.non_digit_rule && !policy.oracle_rule) {
      VERDICT_RETURN_IF_ERROR(ValidateVerificationConfig(policy.verification));
    }
    VERDICT_RETURN_IF_ERROR(spec::ValidateDraftWindowOptions(policy.window));
  }
  return absl::OkStatus();
}

// One policy over all examples.
absl::StatusOr<PolicyResult> EvaluatePolicy(engine::ModelSlice& target, engine::ModelSlice* draft,
                                            const engine::Tokenizer& tokenizer,
                                            absl::Span<const TaskExample> examples,
                                            const EvalPolicy& policy,
                                            const EvalOptions& options,
                                            const std::shared_ptr<const std::vector<uint8_t>>& non_digit_mask) {
  PolicyResult result;
  result.name = policy.name;
  result.rule = policy.rule;
  result.threshold = policy.threshold;
  if (Speculative(policy)) {
    result.k = policy.window.k;
    result.adaptive_k = policy.window.adaptive;
  }
  result.lossless = policy.target_only || (Speculative(policy) && policy.verification.lossless() &&
                                           !policy.non_digit_rule && !policy.oracle_rule);
  absl::Duration elapsed;
  for (size_t i = 0; i < examples.size(); ++i) {
    const TaskExample& example = examples[i];
    absl::StatusOr<std::vector<int32_t>> prompt =
        tokenizer.Encode(example.prompt, {/*add_bos=*/options.add_bos, /*parse_special=*/false});
    if (!prompt.ok()) return InContext(prompt.status(), policy.name, example);

    std::vector<int32_t> generated;
    if (!Speculative(policy)) {
      engine::GenerateOptions generate;
      generate.max_new_tokens = options.max_new_tokens;
      generate.sampling = ExampleSampling(options.sampling, i);
      generate.stop_token_ids = options.stop_token_ids;
      const absl::Time start = absl::Now();
      absl::StatusOr<engine::GenerateResult> out =
          engine::Generate(policy.draft_only ? *draft : target, *prompt, generate);
      elapsed += absl::Now() - start;
      if (!out.ok()) return InContext(out.status(), policy.name, example);
      generated = std::move(out->tokens);
      // Plain decoding: every token costs one pass (the prefill yields the first); the draft
      // alone costs no target pass at all.
      if (policy.target_only) result.stats.target_passes += static_cast<int64_t>(generated.size());
      result.stats.tokens += static_cast<int64_t>(generated.size());
    } else {
      AnswerTracker tracker(tokenizer, example);
      SpeculativeOptions speculative;
      speculative.max_new_tokens = options.max_new_tokens;
      speculative.stop_token_ids = options.stop_token_ids;
      speculative.verification = policy.verification;
      speculative.verification.target_sampling = ExampleSampling(policy.verification.target_sampling, i);
      if (policy.non_digit_rule) {
        speculative.verification.lossy = LossyRule::kTokenMask;
        speculative.verification.lossy_token_mask = non_digit_mask;
      }
      if (policy.oracle_rule) {
        speculative.verification.lossy = LossyRule::kOracle;
        speculative.verification.oracle = [&tracker](absl::Span<const int32_t> prefix, int32_t token) {
          return tracker.Acceptable(prefix, token);
        };
      }
      speculative.head = options.head;
      speculative.window = policy.window;
      speculative.on_verdict = [&tracker](const spec::DraftBlock& block, const spec::Verdict& verdict) {
        tracker.OnVerdict(block, verdict);
      };
      speculative.on_tokens = [&tracker](absl::Span<const int32_t> tokens) {
        tracker.OnTokens(tokens);
        return true;
      };
      const absl::Time start = absl::Now();
      absl::StatusOr<SpeculativeResult> out = local::GenerateSpeculative(target, *draft, *prompt, speculative);
      elapsed += absl::Now() - start;
      if (!out.ok()) return InContext(out.status(), policy.name, example);
      generated = std::move(out->tokens);
      result.stats.Merge(out->stats);  // its tokens are `generated`
      result.wrong_accepted += tracker.wrong_accepted();
    }
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
  result.target_passes_per_answer = static_cast<double>(result.stats.target_passes) / result.examples;
  if (result.stats.target_passes > 0) {
    result.tokens_per_pass = static_cast<double>(result.stats.tokens) / result.stats.target_passes;
    result.mean_accepted = result.stats.mean_accepted();
  }
  result.seconds = absl::ToDoubleSeconds(elapsed);
  result.tokens_per_second = result.seconds > 0 ? result.stats.tokens / result.seconds : 0.0;
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
    if (!Speculative(policy) || policy.non_digit_rule || policy.oracle_rule || draft == nullptr) continue;
    SpeculativeOptions speculative;
    speculative.max_new_tokens = generate.max_new_tokens;
    speculative.verification = policy.verification;
    speculative.head = options.head;
    speculative.window = policy.window;
    VERDICT_RETURN_IF_ERROR(local::GenerateSpeculative(target, *draft, prompt, speculative).status());
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
                                                          absl::Span<const spec::DraftWindowOptions> windows,
                                                          float judge_threshold,
                                                          float lossy_threshold) {
  if (windows.empty()) return absl::InvalidArgumentError("no draft window given");
  for (const spec::DraftWindowOptions& window : windows) {
    VERDICT_RETURN_IF_ERROR(spec::ValidateDraftWindowOptions(window));
  }
  std::vector<EvalPolicy> policies;
  std::set<std::string> seen;
  for (absl::string_view part : absl::StrSplit(list, ',', absl::SkipWhitespace())) {
    const std::string written(absl::StripAsciiWhitespace(part));
    std::string name = written;
    std::optional<float> threshold;
    if (const size_t at = written.find('@'); at != std::string::npos) {
      name = written.substr(0, at);
      float t = 0;
      if (!absl::SimpleAtof(written.substr(at + 1), &t) || std::isnan(t)) {
        return absl::InvalidArgumentError(absl::StrCat("bad threshold in policy \"", written, "\""));
      }
      threshold = t;
    }
    const bool evaluation_row =
        std::find(std::begin(kEvaluationRows), std::end(kEvaluationRows), name) != std::end(kEvaluationRows);
    absl::StatusOr<spec::PolicySpelling> spelling =
        evaluation_row ? spec::PolicySpelling{} : spec::ParsePolicyName(name);
    if (!spelling.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "unknown policy \"", name, "\"; expected a comma-separated list of ", absl::StrJoin(kEvaluationRows, ", "),
          ", ", spec::PolicySpellings(), " (judge and lossy rules may take @THRESHOLD)"));
    }
    const bool is_judge = !evaluation_row && spec::UsesJudge(spelling->policy);
    const bool is_lossy = !evaluation_row && spec::IsLossy(spelling->policy) && !is_judge;
    // "standard" (or "exact"): the exact rule the sampling implies.
    const bool exact_by_sampling = !evaluation_row && spelling->policy == spec::Policy::kExact && !spelling->exact;
    if (threshold.has_value() && !is_judge && !is_lossy) {
      return absl::InvalidArgumentError(absl::StrCat("policy \"", name, "\" takes no threshold"));
    }
    EvalPolicy base;
    if (name == kTargetPolicy || name == kDraftPolicy) {
      base.name = base.rule = name;
      base.target_only = name == kTargetPolicy;
      base.draft_only = name == kDraftPolicy;
      if (!seen.insert(base.name).second) {
        return absl::InvalidArgumentError(absl::StrCat("policy \"", base.name, "\" is listed twice"));
      }
      policies.push_back(std::move(base));
      continue;
    }
    const std::string exact_rule = spec::PolicyLabel(spec::Policy::kExact, spec::ExactRuleFor(sampling));
    base.non_digit_rule = name == kNonDigitRule;
    base.oracle_rule = name == kOracleRule;
    const bool evaluation_only = base.non_digit_rule || base.oracle_rule;
    const std::string rule = (exact_by_sampling || evaluation_only) ? exact_rule : name;
    VERDICT_ASSIGN_OR_RETURN(base.verification, PolicyConfig(rule, sampling));
    base.rule = evaluation_only ? name : rule;
    base.name = exact_by_sampling ? rule : written;
    base.verification.judge_threshold = is_judge ? threshold.value_or(judge_threshold) : judge_threshold;
    base.verification.lossy_threshold = is_lossy ? threshold.value_or(lossy_threshold) : lossy_threshold;
    if (is_judge) base.threshold = base.verification.judge_threshold;
    if (is_lossy) base.threshold = base.verification.lossy_threshold;
    VERDICT_RETURN_IF_ERROR(ValidateVerificationConfig(base.verification));
    for (const spec::DraftWindowOptions& window : windows) {
      EvalPolicy policy = base;
      policy.window = window;
      const std::string key = absl::StrCat(policy.name, " k=", window.adaptive ? "auto" : absl::StrCat(window.k));
      if (!seen.insert(key).second) {
        return absl::InvalidArgumentError(
            absl::StrCat("policy \"", policy.name, "\" is listed twice",
                         name != policy.name && exact_by_sampling ? absl::StrCat(" (\"", name, "\" resolves to it)") : ""));
      }
      policies.push_back(std::move(policy));
    }
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
  const bool any_non_digit = std::any_of(policies.begin(), policies.end(),
                                         [](const EvalPolicy& p) { return p.non_digit_rule; });
  const std::shared_ptr<const std::vector<uint8_t>> non_digit_mask =
      any_non_digit ? NonDigitMask(tokenizer) : nullptr;
  std::vector<PolicyResult> results;
  results.reserve(policies.size());
  for (const EvalPolicy& policy : policies) {
    VERDICT_ASSIGN_OR_RETURN(PolicyResult result, EvaluatePolicy(target, draft, tokenizer, examples, policy,
                                                                 options, non_digit_mask));
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
  std::vector<std::string> header = {"policy", "k", "lossless", "accuracy", "target passes/answer",
                                     "tok/target pass", "accepted exact/judge/lossy",
                                     "lossy-accepted share", "wrong let through", "tok/s"};
  if (with_speedup) header.push_back("speedup");
  rows.push_back(header);
  for (const PolicyResult& r : results) {
    const bool plain = r.k == 0;  // the target or the draft alone
    const int64_t lossy_accepted = r.stats.accepted_judge + r.stats.accepted_lossy;
    std::vector<std::string> row = {
        r.name,
        plain ? "-" : (r.adaptive_k ? absl::StrCat("auto") : absl::StrCat(r.k)),
        r.rule == "draft" ? "-" : (r.lossless ? "yes" : "NO"),
        absl::StrFormat("%5.1f%% (%d/%d)", 100.0 * r.accuracy, r.correct, r.examples),
        r.rule == "draft" ? "0" : absl::StrFormat("%.2f", r.target_passes_per_answer),
        r.rule == "draft" ? "-" : absl::StrFormat("%.2f", r.tokens_per_pass),
        plain ? "-" : absl::StrCat(r.stats.accepted_exact, "/", r.stats.accepted_judge, "/", r.stats.accepted_lossy),
        plain ? "-" : absl::StrFormat("%.1f%%", r.stats.tokens > 0 ? 100.0 * lossy_accepted / r.stats.tokens : 0.0),
        plain ? "-" : absl::StrCat(r.wrong_accepted),
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
      line += (c == 0 || c == 2 || r == 0) ? cell + pad : pad + cell;
    }
    absl::StrAppend(&table, absl::StripTrailingAsciiWhitespace(line), "\n");
    if (r == 0) {
      size_t total = 0;
      for (size_t w : widths) total += w;
      absl::StrAppend(&table, std::string(total + 2 * (widths.size() - 1), '-'), "\n");
    }
  }
  absl::StrAppend(&table,
                  "target passes/answer: target forward passes per example (the cost that matters: "
                  "a policy that adopts longer phrasing needs more tokens); tok/target pass: "
                  "generated tokens per pass; accepted exact/judge/lossy: draft tokens by the rule "
                  "that accepted them (exact = lossless); lossy-accepted share: tokens accepted by "
                  "the judge or a lossy rule alone; wrong let through: such tokens that made a "
                  "correct answer prefix wrong (checked against the reference answers)",
                  with_speedup ? "; speedup: tok/s over the target alone" : "", "\n");
  return table;
}

nlohmann::json EvalResultsToJson(absl::Span<const PolicyResult> results) {
  const double target_tps = TargetTokensPerSecond(results);
  nlohmann::json policies = nlohmann::json::array();
  for (const PolicyResult& r : results) {
    // The speculation statistics in their one JSON layout (spec::StatsJson), then the evaluation's
    // own figures (its wall time and throughput replace the statistics' summed generation times).
    nlohmann::json j = spec::StatsJson(r.stats);
    j.update({
        {"name", r.name},
        {"policy", r.rule},
        {"k", r.k == 0 ? nlohmann::json(nullptr) : (r.adaptive_k ? nlohmann::json("auto") : nlohmann::json(r.k))},
        {"threshold", std::isnan(r.threshold) ? nlohmann::json(nullptr) : nlohmann::json(r.threshold)},
        {"lossless", r.lossless},
        {"examples", r.examples},
        {"correct", r.correct},
        {"accuracy", r.accuracy},
        {"target_passes_per_answer", r.target_passes_per_answer},
        {"tokens_per_target_pass", r.tokens_per_pass},
        {"lossy_accepted_share",
         r.stats.tokens > 0 ? static_cast<double>(r.stats.accepted_judge + r.stats.accepted_lossy) / r.stats.tokens : 0.0},
        {"wrong_let_through", r.wrong_accepted},
        {"mean_accepted", r.mean_accepted},
        {"seconds", r.seconds},
        {"tokens_per_second", r.tokens_per_second},
    });
    if (target_tps > 0) j["speedup_vs_target"] = r.tokens_per_second / target_tps;
    policies.push_back(std::move(j));
  }
  return {{"policies", std::move(policies)}};
}

}  // namespace verdict::judge
