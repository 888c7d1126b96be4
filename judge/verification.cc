// SPDX-License-Identifier: Apache-2.0
#include "judge/verification.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace verdict::judge {
namespace {

using engine::Argmax;

bool IsFinite(float v) { return std::isfinite(v); }

// What the exact rule decides for one token, and the target's token where it rejects. The sampled
// rule reads its draws from `uniforms` (kUniformsPerRow per row) and its numbers either from the
// decisions a backend made (target_sampled) or from the logits rows.
class ExactDecider {
 public:
  ExactDecider(const VerificationConfig& config, const VerifyInput& input,
               absl::Span<const double> uniforms)
      : config_(config), input_(input), uniforms_(uniforms) {}

  // Row i of the target's outputs decides draft token index i (0-based).
  bool Accepts(int64_t i) {
    const int32_t token = input_.draft->tokens[i];
    if (config_.exact == spec::ExactRule::kGreedy) return TargetArgmax(i) == token;
    float p;
    if (has_sampled()) {
      p = input_.target_sampled[i].target_prob;
    } else {
      TargetDistribution(i);
      p = target_probs_[token];
    }
    return engine::math::AcceptsDraftToken(p, DraftProb(i, token), uniforms_[kUniformsPerRow * i]);
  }

  // The target's token at row `row` after rejecting draft token `row` (row < k), or the bonus token
  // (row == k).
  int32_t Replacement(int64_t row) {
    if (config_.exact == spec::ExactRule::kGreedy) return TargetArgmax(row);
    if (has_sampled()) return input_.target_sampled[row].replacement;
    TargetDistribution(row);
    const spec::DraftBlock& draft = *input_.draft;
    const int64_t k = static_cast<int64_t>(draft.tokens.size());
    const int32_t token = row < k ? draft.tokens[row] : -1;  // -1: the bonus row
    const bool proposal = row < k && !draft.proposals.empty();
    return engine::DrawReplacement(
        target_probs_, token, proposal ? absl::MakeConstSpan(draft.proposals[row].ids) : absl::Span<const int32_t>(),
        proposal ? absl::MakeConstSpan(draft.proposals[row].probs) : absl::Span<const float>(),
        uniforms_[kUniformsPerRow * row + 1], &residual_);
  }

  // REQUIRES: the input has logits (the sampled rule without decisions, and KL).
  absl::Span<const float> Row(int64_t row) const {
    return input_.target_logits.subspan(row * input_.vocab_size, input_.vocab_size);
  }
  bool has_logits() const { return !input_.target_logits.empty(); }
  bool has_sampled() const { return !input_.target_sampled.empty(); }

  int32_t TargetArgmax(int64_t row) const {
    return has_logits() ? Argmax(Row(row)) : input_.target_summaries[row].argmax;
  }
  // Plain-softmax statistics of row i for draft token i.
  TokenStats Stats(int64_t i) const {
    if (has_logits()) return ComputeTokenStats(Row(i), input_.draft->tokens[i]);
    const engine::LogitSummary& s = input_.target_summaries[i];
    return TokenStats{s.TokenLogprob(), s.entropy};
  }

 private:
  float DraftProb(int64_t i, int32_t token) const {
    const spec::DraftBlock& draft = *input_.draft;
    if (draft.proposals.empty()) return 1.0f;
    return draft.proposals[i].ProbOf(token);
  }
  void TargetDistribution(int64_t row) {
    if (probs_row_ == row) return;
    engine::SamplingDistribution(Row(row), config_.target_sampling, &target_probs_);
    probs_row_ = row;
  }

  const VerificationConfig& config_;
  const VerifyInput& input_;
  absl::Span<const double> uniforms_;
  std::vector<float> target_probs_;
  std::vector<float> residual_;
  int64_t probs_row_ = -1;
};

absl::Status ValidateInput(const VerificationConfig& config, const JudgeHead* head,
                           const VerifyInput& input) {
  if (input.draft == nullptr) return absl::InvalidArgumentError("verification needs a draft block");
  const spec::DraftBlock& draft = *input.draft;
  const int64_t k = static_cast<int64_t>(draft.tokens.size());
  if (k > spec::kMaxDraftTokens) {
    return absl::InvalidArgumentError(
        absl::StrCat("draft block of ", k, " tokens exceeds the maximum of ", spec::kMaxDraftTokens));
  }
  if (input.vocab_size <= 0) return absl::InvalidArgumentError("vocab_size must be positive");
  if (!input.target_logits.empty() || input.target_summaries.empty()) {
    if (static_cast<int64_t>(input.target_logits.size()) != (k + 1) * input.vocab_size) {
      return absl::InvalidArgumentError(
          absl::StrCat("target logits have ", input.target_logits.size(), " values; a block of ", k,
                       " draft tokens needs ", k + 1, " rows of ", input.vocab_size));
    }
  } else {
    if (!CanVerifyWithoutLogits(config)) {
      return absl::InvalidArgumentError(absl::StrCat("the ", PolicyName(config),
                                                     " policy needs the target's logits, not summaries"));
    }
    if (config.exact == spec::ExactRule::kSampled) {
      if (static_cast<int64_t>(input.target_sampled.size()) != k + 1 ||
          static_cast<int64_t>(input.uniforms.size()) != kUniformsPerRow * (k + 1)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "the sampled rule without logits needs ", k + 1, " sampled decisions and ",
            kUniformsPerRow * (k + 1), " uniform draws, got ", input.target_sampled.size(), " and ",
            input.uniforms.size()));
      }
      for (int64_t i = 0; i <= k; ++i) {
        const engine::SampledDecision& d = input.target_sampled[i];
        if (!(d.target_prob >= 0.0f && d.target_prob <= 1.0f) || d.replacement < 0 ||
            d.replacement >= input.vocab_size) {
          return absl::InvalidArgumentError(absl::StrCat("sampled decision ", i, " (p ", d.target_prob,
                                                         ", token ", d.replacement, ") is invalid"));
        }
      }
    } else if (!CanVerifyFromSummaries(config)) {
      return absl::InvalidArgumentError(absl::StrCat("the ", PolicyName(config),
                                                     " policy needs the target's logits, not summaries"));
    }
    if (static_cast<int64_t>(input.target_summaries.size()) != k + 1) {
      return absl::InvalidArgumentError(absl::StrCat("a block of ", k, " draft tokens needs ", k + 1,
                                                     " logits summaries, got ",
                                                     input.target_summaries.size()));
    }
    for (int64_t i = 0; i < k; ++i) {
      if (input.target_summaries[i].token != draft.tokens[i]) {
        return absl::InvalidArgumentError(
            absl::StrCat("logits summary ", i, " reports token ", input.target_summaries[i].token,
                         ", not draft token ", i, " (", draft.tokens[i], ")"));
      }
    }
  }
  VERDICT_RETURN_IF_ERROR(ValidateDraftBlock(config, draft, input.vocab_size));
  if (config.lossy == LossyRule::kKl &&
      static_cast<int64_t>(draft.distributions.size()) != k * input.vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat("the KL rule needs the draft's distributions (",
                                                   k, " x ", input.vocab_size, "), the block has ",
                                                   draft.distributions.size(), " values"));
  }
  if (config.lossy == LossyRule::kTokenMask &&
      static_cast<int64_t>(config.lossy_token_mask->size()) != input.vocab_size) {
    return absl::InvalidArgumentError("the token mask does not cover the vocabulary");
  }
  if (config.judge != JudgeMode::kOff) {
    if (head == nullptr) return absl::InvalidArgumentError("the judge policy needs a judge head");
    if (input.hidden_size != head->hidden_size()) {
      return absl::InvalidArgumentError(absl::StrCat("the judge head expects hidden states of size ",
                                                     head->hidden_size(), ", the target has ",
                                                     input.hidden_size));
    }
    if (!input.judge_dots.empty() && input.target_hidden.empty()) {
      if (static_cast<int64_t>(input.judge_dots.size()) != k + 1) {
        return absl::InvalidArgumentError(absl::StrCat(
            "a block of ", k, " draft tokens needs ", k + 1, " judge dot products, got ",
            input.judge_dots.size()));
      }
    } else if (static_cast<int64_t>(input.target_hidden.size()) != (k + 1) * input.hidden_size) {
      return absl::InvalidArgumentError(
          absl::StrCat("target hidden states have ", input.target_hidden.size(), " values; need ",
                       k + 1, " rows of ", input.hidden_size));
    }
    const bool needs_draft_logprob =
        std::find(head->extra_features.begin(), head->extra_features.end(),
                  JudgeFeature::kDraftLogprob) != head->extra_features.end();
    if (needs_draft_logprob && static_cast<int64_t>(draft.logprobs.size()) != k) {
      return absl::InvalidArgumentError(absl::StrCat(
          "the judge head uses draft_logprob but the block carries ", draft.logprobs.size(),
          " draft log-probabilities for ", k, " tokens"));
    }
  }
  return absl::OkStatus();
}

// KL(p || q) in nats, p = softmax(target_logits), q the draft's distribution (a zero in q where p has
// mass makes it infinite).
double KlDivergence(absl::Span<const float> target_logits, absl::Span<const float> q) {
  float max_logit = -std::numeric_limits<float>::infinity();
  for (float v : target_logits) max_logit = std::max(max_logit, v);
  double sum = 0;
  for (float v : target_logits) sum += std::exp(static_cast<double>(v) - max_logit);
  const double log_sum = std::log(sum);
  double kl = 0;
  for (size_t j = 0; j < target_logits.size(); ++j) {
    const double log_p = static_cast<double>(target_logits[j]) - max_logit - log_sum;
    const double p = std::exp(log_p);
    if (p == 0) continue;
    if (!(q[j] > 0)) return std::numeric_limits<double>::infinity();
    kl += p * (log_p - std::log(static_cast<double>(q[j])));
  }
  return kl;
}

}  // namespace

absl::Status ValidateDraftBlock(const VerificationConfig& config, const spec::DraftBlock& draft,
                                int64_t vocab_size) {
  const int64_t k = static_cast<int64_t>(draft.tokens.size());
  for (int64_t i = 0; i < k; ++i) {
    if (draft.tokens[i] < 0 || draft.tokens[i] >= vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat("draft token ", i, " has id ", draft.tokens[i],
                                                     " outside the vocabulary of ",
                                                     vocab_size));
    }
  }
  if (!draft.proposals.empty()) {
    if (static_cast<int64_t>(draft.proposals.size()) != k) {
      return absl::InvalidArgumentError(absl::StrCat("the draft block has ", k, " tokens but ",
                                                     draft.proposals.size(), " proposal distributions"));
    }
    for (int64_t i = 0; i < k; ++i) {
      const spec::DraftDistribution& q = draft.proposals[i];
      if (q.ids.size() != q.probs.size()) {
        return absl::InvalidArgumentError(absl::StrCat("proposal ", i, ": ", q.ids.size(), " ids but ",
                                                       q.probs.size(), " probabilities"));
      }
      for (size_t j = 0; j < q.ids.size(); ++j) {
        if (q.ids[j] < 0 || q.ids[j] >= vocab_size || !IsFinite(q.probs[j]) || q.probs[j] < 0) {
          return absl::InvalidArgumentError(
              absl::StrCat("proposal ", i, " has an invalid entry (id ", q.ids[j], ", p ", q.probs[j], ")"));
        }
        if (j > 0 && q.ids[j] <= q.ids[j - 1]) {
          return absl::InvalidArgumentError(absl::StrCat("proposal ", i, ": ids are not strictly ascending (",
                                                         q.ids[j - 1], " then ", q.ids[j], ")"));
        }
      }
      if (config.exact == spec::ExactRule::kSampled && !(q.ProbOf(draft.tokens[i]) > 0)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "draft token ", i, " (id ", draft.tokens[i], ") has probability 0 in its own proposal"));
      }
    }
  }
  return absl::OkStatus();
}

namespace {

// The judge's rules for a spec policy (beside the exact rule).
void ApplyPolicy(spec::Policy policy, VerificationConfig* config) {
  switch (policy) {
    case spec::Policy::kExact:
      break;
    case spec::Policy::kJudge:
      config->judge = JudgeMode::kOn;
      break;
    case spec::Policy::kJudgeShadow:
      config->judge = JudgeMode::kShadow;
      break;
    case spec::Policy::kLossyProb:
      config->lossy = LossyRule::kTargetProb;
      break;
    case spec::Policy::kLossyTypical:
      config->lossy = LossyRule::kTypical;
      break;
    case spec::Policy::kLossyKl:
      config->lossy = LossyRule::kKl;
      break;
  }
}

}  // namespace

spec::Policy PolicyOf(const VerificationConfig& config) {
  if (config.judge == JudgeMode::kOn) return spec::Policy::kJudge;
  if (config.judge == JudgeMode::kShadow) return spec::Policy::kJudgeShadow;
  switch (config.lossy) {
    case LossyRule::kTargetProb:
      return spec::Policy::kLossyProb;
    case LossyRule::kTypical:
      return spec::Policy::kLossyTypical;
    case LossyRule::kKl:
      return spec::Policy::kLossyKl;
    case LossyRule::kNone:
    case LossyRule::kTokenMask:
    case LossyRule::kOracle:
      break;
  }
  return spec::Policy::kExact;
}

absl::StatusOr<VerificationConfig> ToVerificationConfig(const spec::SpeculationParams& params,
                                                        const engine::SamplingParams& target_sampling,
                                                        float head_threshold) {
  VERDICT_RETURN_IF_ERROR(spec::ValidateSpeculationParams(params));
  VERDICT_RETURN_IF_ERROR(engine::ValidateSamplingParams(target_sampling));
  VerificationConfig config;
  config.exact = spec::ExactRuleFor(target_sampling);
  config.target_sampling = target_sampling;
  ApplyPolicy(params.policy, &config);
  config.judge_threshold = params.judge_threshold.value_or(head_threshold);
  config.lossy_threshold = params.lossy_threshold_or_default();
  config.typical_delta = params.typical_delta_or_default();
  VERDICT_RETURN_IF_ERROR(ValidateVerificationConfig(config));
  return config;
}

absl::StatusOr<VerificationConfig> PolicyConfig(absl::string_view policy,
                                                const engine::SamplingParams& sampling) {
  VERDICT_ASSIGN_OR_RETURN(spec::PolicySpelling spelling, spec::ParsePolicyName(policy));
  VerificationConfig config;
  config.exact = spelling.exact.value_or(spec::ExactRuleFor(sampling));
  if (config.exact == spec::ExactRule::kSampled && sampling.greedy()) {
    return absl::InvalidArgumentError(
        "the sampled policy needs a sampling temperature > 0 (use --temperature)");
  }
  config.target_sampling = sampling;
  ApplyPolicy(spelling.policy, &config);
  return config;
}

std::string PolicyName(const VerificationConfig& config) {
  std::string name = spec::PolicyLabel(spec::Policy::kExact, config.exact);
  auto append = [&name](absl::string_view rule) { absl::StrAppend(&name, "+", rule); };
  if (config.judge == JudgeMode::kOn) append(spec::PolicyName(spec::Policy::kJudge));
  if (config.judge == JudgeMode::kShadow) append(spec::PolicyName(spec::Policy::kJudgeShadow));
  switch (config.lossy) {
    case LossyRule::kNone:
      break;
    case LossyRule::kTargetProb:
      append(spec::PolicyName(spec::Policy::kLossyProb));
      break;
    case LossyRule::kTypical:
      append(spec::PolicyName(spec::Policy::kLossyTypical));
      break;
    case LossyRule::kKl:
      append(spec::PolicyName(spec::Policy::kLossyKl));
      break;
    case LossyRule::kTokenMask:  // evaluation-only rules: no spec policy
      append("token-class");
      break;
    case LossyRule::kOracle:
      append("oracle");
      break;
  }
  return name;
}

absl::Status ValidateVerificationConfig(const VerificationConfig& config) {
  if (config.exact == spec::ExactRule::kSampled) {
    VERDICT_RETURN_IF_ERROR(engine::ValidateSamplingParams(config.target_sampling));
    if (config.target_sampling.greedy()) {
      return absl::InvalidArgumentError("sampled verification needs a temperature > 0");
    }
  }
  if (std::isnan(config.judge_threshold)) {
    return absl::InvalidArgumentError("the judge threshold is NaN");
  }
  const bool probability_rule = config.lossy == LossyRule::kTargetProb || config.lossy == LossyRule::kTypical;
  if (probability_rule && !(config.lossy_threshold >= 0.0f && config.lossy_threshold <= 1.0f)) {
    return absl::InvalidArgumentError(absl::StrCat("the lossy threshold must be in [0, 1], got ",
                                                   config.lossy_threshold));
  }
  if (config.lossy == LossyRule::kKl && !(config.lossy_threshold >= 0.0f)) {
    return absl::InvalidArgumentError(absl::StrCat("the KL threshold must be >= 0, got ", config.lossy_threshold));
  }
  if (config.lossy == LossyRule::kTokenMask && config.lossy_token_mask == nullptr) {
    return absl::InvalidArgumentError("the token-class rule needs a token mask");
  }
  if (config.lossy == LossyRule::kOracle && !config.oracle) {
    return absl::InvalidArgumentError("the oracle rule needs an oracle");
  }
  if (config.lossy == LossyRule::kTypical && !(config.typical_delta >= 0.0f)) {
    return absl::InvalidArgumentError("the typical-acceptance delta must be >= 0");
  }
  return absl::OkStatus();
}

TokenStats ComputeTokenStats(absl::Span<const float> logits, int32_t token) {
  float max_logit = -std::numeric_limits<float>::infinity();
  for (float v : logits) max_logit = std::max(max_logit, v);
  double sum = 0;
  double weighted = 0;  // sum e^(l - max) * (l - max)
  for (float v : logits) {
    const double z = static_cast<double>(v) - max_logit;
    const double e = std::exp(z);
    sum += e;
    weighted += e * z;
  }
  const double log_sum = std::log(sum);
  TokenStats stats;
  stats.logprob = static_cast<float>(static_cast<double>(logits[token]) - max_logit - log_sum);
  // H = -sum p log p = log_sum - E[z].
  stats.entropy = static_cast<float>(log_sum - weighted / sum);
  return stats;
}

void JudgeExtras(const JudgeHead& head, const TokenStats& target_stats, float draft_logprob,
                 std::vector<float>* extras) {
  extras->clear();
  for (JudgeFeature feature : head.extra_features) {
    switch (feature) {
      case JudgeFeature::kTargetLogprob:
        extras->push_back(target_stats.logprob);
        break;
      case JudgeFeature::kTargetEntropy:
        extras->push_back(target_stats.entropy);
        break;
      case JudgeFeature::kDraftLogprob:
        extras->push_back(draft_logprob);
        break;
    }
  }
}

bool CanVerifyFromSummaries(const VerificationConfig& config) {
  return config.exact == spec::ExactRule::kGreedy && config.lossy != LossyRule::kKl;
}

bool CanVerifyWithoutLogits(const VerificationConfig& config) { return config.lossy != LossyRule::kKl; }

void DrawVerificationUniforms(int64_t k, engine::Sampler& rng, std::vector<double>* uniforms) {
  for (int64_t i = 0; i < kUniformsPerRow * (k + 1); ++i) uniforms->push_back(rng.Uniform());
}

void AppendSampledRequests(const engine::SamplingParams& sampling, const spec::DraftBlock& draft,
                           absl::Span<const double> uniforms,
                           std::vector<engine::math::SampledRowRequest>* requests,
                           std::vector<int32_t>* proposal_ids, std::vector<float>* proposal_probs) {
  const int64_t k = static_cast<int64_t>(draft.tokens.size());
  for (int64_t i = 0; i <= k; ++i) {
    engine::math::SampledRowRequest r = engine::SampledRowRequestFor(sampling);
    r.token = i < k ? draft.tokens[i] : -1;
    r.proposal_begin = static_cast<int32_t>(proposal_ids->size());
    if (i < k && !draft.proposals.empty()) {
      const spec::DraftDistribution& q = draft.proposals[i];
      proposal_ids->insert(proposal_ids->end(), q.ids.begin(), q.ids.end());
      proposal_probs->insert(proposal_probs->end(), q.probs.begin(), q.probs.end());
      r.proposal_count = static_cast<int32_t>(q.ids.size());
    }
    r.sample_uniform = uniforms[kUniformsPerRow * i + 1];
    requests->push_back(r);
  }
}

void AppendSummaryTokens(const spec::DraftBlock& draft, std::vector<int32_t>* tokens) {
  tokens->insert(tokens->end(), draft.tokens.begin(), draft.tokens.end());
  tokens->push_back(-1);
}

absl::StatusOr<spec::Verdict> VerifyBlock(const VerificationConfig& config, const JudgeHead* head,
                                    const VerifyInput& input, engine::Sampler& rng) {
  VERDICT_RETURN_IF_ERROR(ValidateVerificationConfig(config));
  VERDICT_RETURN_IF_ERROR(ValidateInput(config, head, input));
  const spec::DraftBlock& draft = *input.draft;
  const int64_t k = static_cast<int64_t>(draft.tokens.size());
  std::vector<double> drawn;
  absl::Span<const double> uniforms = input.uniforms;
  if (config.exact == spec::ExactRule::kSampled && uniforms.empty()) {
    DrawVerificationUniforms(k, rng, &drawn);
    uniforms = drawn;
  } else if (config.exact == spec::ExactRule::kSampled &&
             static_cast<int64_t>(uniforms.size()) != kUniformsPerRow * (k + 1)) {
    return absl::InvalidArgumentError(absl::StrCat("a block of ", k, " draft tokens needs ",
                                                   kUniformsPerRow * (k + 1), " uniform draws, got ",
                                                   uniforms.size()));
  }
  ExactDecider exact(config, input, uniforms);
  spec::Verdict verdict;
  verdict.reasons.assign(k, spec::AcceptReason::kNotReached);

  // Judge scores and plain-softmax statistics are computed lazily, only at positions a rule looks
  // at: a softmax over a 128k vocabulary per draft token is not free on the CPU.
  const bool judge_runs = config.judge != JudgeMode::kOff;
  std::vector<TokenStats> stats(k);
  std::vector<bool> have_stats(k, false);
  auto stats_at = [&](int64_t i) -> const TokenStats& {
    if (!have_stats[i]) {
      stats[i] = exact.Stats(i);
      have_stats[i] = true;
    }
    return stats[i];
  };
  if (judge_runs) verdict.judge_scores.assign(k, std::numeric_limits<float>::quiet_NaN());
  std::vector<float> extras;
  auto judge_accepts = [&](int64_t i) {
    if (std::isnan(verdict.judge_scores[i])) {
      if (!head->extra_features.empty()) {
        JudgeExtras(*head, stats_at(i), draft.logprobs.empty() ? 0.0f : draft.logprobs[i], &extras);
      }
      // Hidden row i + 1 is the state after reading draft token i (0-based).
      verdict.judge_scores[i] =
          input.target_hidden.empty()
              ? head->ProbabilityFromDot(input.judge_dots[i + 1], extras)
              : head->Probability(
                    input.target_hidden.subspan((i + 1) * input.hidden_size, input.hidden_size),
                    extras);
    }
    return verdict.judge_scores[i] > config.judge_threshold;
  };
  auto lossy_accepts = [&](int64_t i) {
    switch (config.lossy) {
      case LossyRule::kNone:
        return false;
      case LossyRule::kTargetProb:
        return std::exp(stats_at(i).logprob) >= config.lossy_threshold;
      case LossyRule::kTypical: {
        const TokenStats& s = stats_at(i);
        return std::exp(s.logprob) > std::min(config.lossy_threshold, config.typical_delta * std::exp(-s.entropy));
      }
      case LossyRule::kKl:
        return KlDivergence(exact.Row(i), absl::MakeConstSpan(draft.distributions)
                                              .subspan(i * input.vocab_size, input.vocab_size)) <=
               config.lossy_threshold;
      case LossyRule::kTokenMask:
        return (*config.lossy_token_mask)[draft.tokens[i]] != 0;
      case LossyRule::kOracle:
        return config.oracle(absl::MakeConstSpan(draft.tokens).subspan(0, i), draft.tokens[i]);
    }
    return false;
  };

  // The real walk.
  std::vector<bool> exact_decisions;  // for the shadow comparison
  int64_t i = 0;
  for (; i < k; ++i) {
    const bool exact_ok = exact.Accepts(i);
    exact_decisions.push_back(exact_ok);
    if (exact_ok) {
      verdict.reasons[i] = spec::AcceptReason::kExact;
    } else if (config.judge == JudgeMode::kOn && judge_accepts(i)) {
      verdict.reasons[i] = spec::AcceptReason::kJudge;
    } else if (lossy_accepts(i)) {
      verdict.reasons[i] = spec::AcceptReason::kLossy;
    } else {
      verdict.reasons[i] = spec::AcceptReason::kRejected;
      break;
    }
  }
  verdict.num_accepted = static_cast<int32_t>(i);
  verdict.next_token = exact.Replacement(i);

  if (config.judge == JudgeMode::kShadow) {
    // What judge decoding would have accepted: the exact decisions made above where they exist;
    // past the real rejection the exact rule is evaluated on (the sampled rule's draws for every
    // row were made up front, so this changes no random stream).
    int64_t j = 0;
    for (; j < k; ++j) {
      const bool exact_ok =
          j < static_cast<int64_t>(exact_decisions.size()) ? exact_decisions[j] : exact.Accepts(j);
      const bool judge_ok = judge_accepts(j);
      if (exact_ok && judge_ok) ++verdict.shadow_both;
      if (exact_ok && !judge_ok) ++verdict.shadow_exact_only;
      if (!exact_ok && judge_ok) ++verdict.shadow_judge_only;
      if (!exact_ok && !judge_ok) break;
    }
    verdict.shadow_num_accepted = static_cast<int32_t>(j);
  }
  return verdict;
}

}  // namespace verdict::judge
