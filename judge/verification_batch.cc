// SPDX-License-Identifier: Apache-2.0
#include "judge/verification_batch.h"

namespace verdict::judge {

void VerificationBatch::Begin(bool allow_summaries) {
  blocks_.clear();
  rows_ = 0;
  allow_summaries_ = allow_summaries;
  summaries_ = false;
  summary_tokens_.clear();
  uniforms_.clear();
  sampled_requests_.clear();
  proposal_ids_.clear();
  proposal_probs_.clear();
}

void VerificationBatch::Add(const VerificationConfig& config, const spec::DraftBlock& draft, engine::Sampler* rng) {
  blocks_.push_back({&config, &draft, rng, rows_});
  rows_ += static_cast<int64_t>(draft.tokens.size()) + 1;
}

engine::OutputContents VerificationBatch::Contents(bool probe_ready, bool keep_hidden) {
  bool summaries = allow_summaries_;
  bool judge = false;
  bool sampled = false;
  for (const Block& b : blocks_) {
    summaries = summaries && CanVerifyWithoutLogits(*b.config);
    judge = judge || b.config->judge != JudgeMode::kOff;
    sampled = sampled || b.config->exact == spec::ExactRule::kSampled;
  }
  summaries_ = summaries && (!judge || probe_ready);
  engine::OutputContents want;
  want.logits = !summaries_;
  want.hidden = !summaries_ && (judge || keep_hidden);
  if (!summaries_) return want;

  for (const Block& b : blocks_) AppendSummaryTokens(*b.draft, &summary_tokens_);
  if (sampled) {
    // The sampled rule is decided by the backend too: draw each block's uniforms now (greedy
    // blocks draw nothing and get greedy requests, which cost a pass over their rows).
    for (const Block& b : blocks_) {
      const bool sampled_policy = b.config->exact == spec::ExactRule::kSampled;
      const size_t first = uniforms_.size();
      const int64_t k = static_cast<int64_t>(b.draft->tokens.size());
      if (sampled_policy) {
        DrawVerificationUniforms(k, *b.rng, &uniforms_);
      } else {  // zeros, unused
        uniforms_.resize(first + kUniformsPerRow * (k + 1), 0.0);
      }
      AppendSampledRequests(sampled_policy ? b.config->target_sampling : engine::SamplingParams{}, *b.draft,
                            absl::MakeConstSpan(uniforms_).subspan(first), &sampled_requests_, &proposal_ids_,
                            &proposal_probs_);
    }
  }
  want.summaries = true;
  want.summary_tokens = summary_tokens_;
  want.probe = judge;
  want.sampled_requests = sampled_requests_;
  want.proposal_ids = proposal_ids_;
  want.proposal_probs = proposal_probs_;
  return want;
}

VerifyInput VerificationBatch::Input(size_t i, const engine::ForwardResult& forward, int64_t vocab_size,
                                     int64_t hidden_size) const {
  const Block& b = blocks_[i];
  const int64_t first = b.first_row;
  const int64_t rows = static_cast<int64_t>(b.draft->tokens.size()) + 1;
  VerifyInput input;
  input.draft = b.draft;
  if (!forward.logits.empty()) {
    input.target_logits = absl::MakeConstSpan(forward.logits).subspan(first * vocab_size, rows * vocab_size);
  } else {
    input.target_summaries = absl::MakeConstSpan(forward.summaries).subspan(first, rows);
    if (!forward.sampled.empty() && b.config->exact == spec::ExactRule::kSampled) {
      input.target_sampled = absl::MakeConstSpan(forward.sampled).subspan(first, rows);
      input.uniforms = absl::MakeConstSpan(uniforms_).subspan(kUniformsPerRow * first, kUniformsPerRow * rows);
    }
  }
  if (!forward.hidden.empty()) {
    input.target_hidden = absl::MakeConstSpan(forward.hidden).subspan(first * hidden_size, rows * hidden_size);
  } else if (!forward.probe.empty()) {
    input.judge_dots = absl::MakeConstSpan(forward.probe).subspan(first, rows);
  }
  input.vocab_size = vocab_size;
  input.hidden_size = hidden_size;
  return input;
}

}  // namespace verdict::judge
