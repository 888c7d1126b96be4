// SPDX-License-Identifier: Apache-2.0
#include "judge/speculative_session.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/check.h"
#include "common/status_macros.h"

namespace verdict::judge {
namespace {

absl::Status RequireWholeModel(const engine::ModelSlice* model, absl::string_view role) {
  if (model == nullptr) return absl::InvalidArgumentError(absl::StrCat("no ", role, " model"));
  if (!model->is_first() || !model->is_last()) {
    return absl::InvalidArgumentError(absl::StrCat("the ", role, " must be a whole model, not a slice"));
  }
  return absl::OkStatus();
}

// Feeds `tokens` (on top of the cache) and leaves the logits of the last one in `result`.
absl::Status ForwardLast(engine::ModelSlice& model, engine::KvCache* cache,
                         absl::Span<const int32_t> tokens, engine::ForwardResult* result) {
  engine::ForwardBatch batch;
  batch.sequences = {{cache, static_cast<int64_t>(tokens.size())}};
  batch.token_ids = tokens;
  batch.outputs = engine::ForwardBatch::Outputs::kLastOfEachSequence;
  return model.Forward(batch, result);
}

}  // namespace

absl::Status CheckCompatibleModels(const engine::LlamaConfig& target, const engine::LlamaConfig& draft) {
  if (target.vocab_size != draft.vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the draft and target must share a vocabulary: the target has ", target.vocab_size,
        " tokens, the draft ", draft.vocab_size));
  }
  return absl::OkStatus();
}

int32_t AppendDraftToken(absl::Span<const float> logits, engine::Sampler& sampler,
                         bool record_distribution, std::vector<float>* scratch, spec::DraftBlock* block) {
  const engine::SamplingParams& sampling = sampler.params();
  int32_t token;
  if (sampling.greedy()) {
    token = engine::Argmax(logits);
  } else {
    engine::SamplingDistribution(logits, sampling, scratch);
    token = sampler.SampleFrom(*scratch);
    spec::DraftDistribution q;
    engine::AppendNonzero(*scratch, &q.ids, &q.probs);
    block->proposals.push_back(std::move(q));
  }
  block->tokens.push_back(token);
  block->logprobs.push_back(ComputeTokenStats(logits, token).logprob);
  if (record_distribution) {
    engine::SamplingDistribution(logits, engine::SamplingParams{.temperature = 1.0f}, scratch);
    block->distributions.insert(block->distributions.end(), scratch->begin(), scratch->end());
  }
  return token;
}

int32_t AppendGreedyDraftToken(const engine::LogitSummary& row, spec::DraftBlock* block) {
  block->tokens.push_back(row.argmax);
  block->logprobs.push_back(row.max_logit - row.log_sum_exp);
  return row.argmax;
}

engine::math::SampledRowRequest DraftSampleRequest(engine::Sampler& sampler) {
  engine::math::SampledRowRequest request = engine::SampledRowRequestFor(sampler.params());
  if (!sampler.params().greedy()) request.sample_uniform = sampler.Uniform();  // what SampleFrom draws
  return request;
}

int32_t AppendSampledDraftToken(const engine::ForwardResult& forward, size_t row, spec::DraftBlock* block) {
  const engine::SampledDecision& d = forward.sampled[row];
  block->tokens.push_back(d.replacement);
  block->logprobs.push_back(d.replacement_logit - forward.summaries[row].log_sum_exp);
  const int64_t begin = forward.support_offsets[row];
  const int64_t end = forward.support_offsets[row + 1];
  spec::DraftDistribution q;
  q.ids.assign(forward.support_ids.begin() + begin, forward.support_ids.begin() + end);
  q.probs.assign(forward.support_probs.begin() + begin, forward.support_probs.begin() + end);
  block->proposals.push_back(std::move(q));
  return d.replacement;
}

// ---- DraftSession --------------------------------------------------------------------------------

DraftSession::DraftSession(engine::ModelSlice* draft, const engine::SamplingParams& sampling,
                           std::unique_ptr<engine::KvCache> cache, bool record_distributions)
    : draft_(draft), record_distributions_(record_distributions), sampler_(sampling), cache_(std::move(cache)) {}

absl::StatusOr<std::unique_ptr<DraftSession>> DraftSession::Create(
    engine::ModelSlice* draft, const engine::SamplingParams& sampling, int64_t capacity,
    bool record_distributions) {
  VERDICT_RETURN_IF_ERROR(RequireWholeModel(draft, "draft"));
  VERDICT_RETURN_IF_ERROR(engine::ValidateSamplingParams(sampling));
  VERDICT_ASSIGN_OR_RETURN(std::unique_ptr<engine::KvCache> cache, draft->NewKvCache(capacity));
  return std::unique_ptr<DraftSession>(
      new DraftSession(draft, sampling, std::move(cache), record_distributions));
}

absl::Status DraftSession::Start(absl::Span<const int32_t> prompt) {
  if (prompt.empty()) return absl::InvalidArgumentError("the prompt has no tokens");
  VERDICT_RETURN_IF_ERROR(cache_->Truncate(0));
  committed_.assign(prompt.begin(), prompt.end());
  open_tokens_.clear();
  // Prefill all but the last token now, so that the first Propose costs what later ones do.
  if (prompt.size() > 1) {
    VERDICT_RETURN_IF_ERROR(cache_->CheckRoom(static_cast<int64_t>(prompt.size())));
    VERDICT_RETURN_IF_ERROR(ForwardLast(*draft_, cache_.get(), prompt.subspan(0, prompt.size() - 1), &forward_));
    ++forward_passes_;
  }
  return absl::OkStatus();
}

absl::StatusOr<spec::DraftBlock> DraftSession::Propose(int64_t k) {
  if (committed_.empty()) return absl::FailedPreconditionError("the draft session was not started");
  if (!open_tokens_.empty()) {
    return absl::FailedPreconditionError("the previous proposal has not been committed");
  }
  if (k < 1 || k > spec::kMaxDraftTokens) {
    return absl::InvalidArgumentError(
        absl::StrCat("the draft window must be in [1, ", spec::kMaxDraftTokens, "], got ", k));
  }
  const int64_t n = committed_length();
  if (n + k - 1 > cache_->capacity()) {
    return absl::ResourceExhaustedError(absl::StrCat("the draft cache holds ", cache_->capacity(),
                                                     " positions; ", n, " committed plus ", k,
                                                     " proposed tokens do not fit"));
  }
  const int64_t vocab = draft_->config().vocab_size;
  spec::DraftBlock block;
  block.tokens.reserve(k);
  block.logprobs.reserve(k);
  const int64_t start_length = cache_->length();
  absl::Span<const int32_t> feed = absl::MakeConstSpan(committed_).subspan(start_length);
  // The row stays on the backend unless the full distribution is recorded: greedy proposals need
  // only its summary, sampled ones the backend's draw and compacted proposal.
  const bool greedy = sampler_.params().greedy();
  const bool from_summary = !record_distributions_;
  for (int64_t i = 0; i < k; ++i) {
    engine::ForwardBatch batch;
    batch.sequences = {{cache_.get(), static_cast<int64_t>(feed.size())}};
    batch.token_ids = feed;
    batch.outputs = engine::ForwardBatch::Outputs::kLastOfEachSequence;
    batch.contents.logits = !from_summary;
    batch.contents.hidden = false;
    batch.contents.summaries = from_summary;
    engine::math::SampledRowRequest request;
    if (from_summary && !greedy) {
      request = DraftSampleRequest(sampler_);
      batch.contents.sampled_requests = absl::MakeConstSpan(&request, 1);
      batch.contents.sampled_supports = true;
    }
    if (absl::Status status = draft_->Forward(batch, &forward_); !status.ok()) {
      VERDICT_CHECK(cache_->Truncate(start_length).ok());  // the session stays as it was
      return status;
    }
    ++forward_passes_;
    if (from_summary && greedy) {
      AppendGreedyDraftToken(forward_.summaries[0], &block);
    } else if (from_summary) {
      AppendSampledDraftToken(forward_, 0, &block);
    } else {
      AppendDraftToken(absl::MakeConstSpan(forward_.logits).subspan(0, vocab), sampler_,
                       record_distributions_, &probs_, &block);
    }
    feed = absl::MakeConstSpan(&block.tokens.back(), 1);
    if (i + 1 == k) break;  // the last proposal is not fed: its verdict decides what comes next
  }
  open_tokens_ = block.tokens;
  return block;
}

absl::Status DraftSession::Commit(int64_t num_accepted, int32_t next_token) {
  const int64_t k = static_cast<int64_t>(open_tokens_.size());
  if (num_accepted < 0 || num_accepted > k) {
    return absl::InvalidArgumentError(absl::StrCat("cannot accept ", num_accepted,
                                                   " tokens of a proposal of ", k));
  }
  if (next_token < 0 || next_token >= draft_->config().vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat("next token ", next_token, " is outside the vocabulary"));
  }
  const int64_t n = committed_length();
  // The cache holds x[0..n) and d_1..d_{k-1}; keep x and the accepted draft tokens.
  if (k > 0) VERDICT_RETURN_IF_ERROR(cache_->Truncate(std::min(n + num_accepted, cache_->length())));
  committed_.insert(committed_.end(), open_tokens_.begin(), open_tokens_.begin() + num_accepted);
  committed_.push_back(next_token);
  open_tokens_.clear();
  return absl::OkStatus();
}

// ---- TargetSession -------------------------------------------------------------------------------

TargetSession::TargetSession(engine::ModelSlice* target, const VerificationConfig& config,
                             const JudgeHead* head, std::unique_ptr<engine::KvCache> cache,
                             bool keep_full_outputs)
    : target_(target),
      config_(config),
      keep_full_outputs_(keep_full_outputs),
      head_(head),
      rng_(config.target_sampling),
      cache_(std::move(cache)) {}

absl::StatusOr<std::unique_ptr<TargetSession>> TargetSession::Create(engine::ModelSlice* target,
                                                                     const VerificationConfig& config,
                                                                     const JudgeHead* head,
                                                                     int64_t capacity,
                                                                     bool keep_full_outputs) {
  VERDICT_RETURN_IF_ERROR(RequireWholeModel(target, "target"));
  VERDICT_RETURN_IF_ERROR(ValidateVerificationConfig(config));
  if (config.judge != JudgeMode::kOff) {
    if (head == nullptr) return absl::InvalidArgumentError("the judge policy needs a judge head");
    if (head->hidden_size() != target->config().hidden_size) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the judge head was trained for hidden size ", head->hidden_size(), ", the target has ",
          target->config().hidden_size));
    }
  }
  if (config.judge != JudgeMode::kOff && !target->HiddenProbeIs(head->weight)) {
    VERDICT_RETURN_IF_ERROR(target->SetHiddenProbe(head->weight));
  }
  VERDICT_ASSIGN_OR_RETURN(std::unique_ptr<engine::KvCache> cache, target->NewKvCache(capacity));
  return std::unique_ptr<TargetSession>(
      new TargetSession(target, config, head, std::move(cache), keep_full_outputs));
}

absl::Status TargetSession::Start(absl::Span<const int32_t> prompt) {
  if (prompt.empty()) return absl::InvalidArgumentError("the prompt has no tokens");
  VERDICT_RETURN_IF_ERROR(cache_->Truncate(0));
  committed_.assign(prompt.begin(), prompt.end());
  if (prompt.size() > 1) {
    VERDICT_RETURN_IF_ERROR(cache_->CheckRoom(static_cast<int64_t>(prompt.size())));
    // Only the KV cache matters here: no outputs, no LM head.
    engine::ForwardBatch batch;
    batch.sequences = {{cache_.get(), static_cast<int64_t>(prompt.size()) - 1}};
    batch.token_ids = prompt.subspan(0, prompt.size() - 1);
    batch.outputs = engine::ForwardBatch::Outputs::kSelectedRows;
    VERDICT_RETURN_IF_ERROR(target_->Forward(batch, &forward_));
  }
  return absl::OkStatus();
}

absl::StatusOr<spec::Verdict> TargetSession::Verify(const spec::DraftBlock& draft) {
  if (committed_.empty()) return absl::FailedPreconditionError("the target session was not started");
  VERDICT_CHECK(cache_->length() == committed_length() - 1);
  const int64_t k = static_cast<int64_t>(draft.tokens.size());
  if (k > spec::kMaxDraftTokens) {
    return absl::InvalidArgumentError(
        absl::StrCat("draft block of ", k, " tokens exceeds the maximum of ", spec::kMaxDraftTokens));
  }
  const int64_t vocab = target_->config().vocab_size;
  for (int32_t t : draft.tokens) {
    if (t < 0 || t >= vocab) {
      return absl::InvalidArgumentError(absl::StrCat("draft token id ", t, " is outside the vocabulary of ", vocab));
    }
  }
  VERDICT_RETURN_IF_ERROR(cache_->CheckRoom(k + 1));
  block_.assign(1, committed_.back());
  block_.insert(block_.end(), draft.tokens.begin(), draft.tokens.end());
  engine::ForwardBatch batch;
  batch.sequences = {{cache_.get(), k + 1}};
  batch.token_ids = block_;
  batch.outputs = engine::ForwardBatch::Outputs::kAll;
  const bool judge = config_.judge != JudgeMode::kOff;
  verification_.Begin(/*allow_summaries=*/!keep_full_outputs_);
  verification_.Add(config_, draft, &rng_);
  // Another session's head may have replaced the probe since Create: then the hidden states.
  batch.contents = verification_.Contents(/*probe_ready=*/!judge || target_->HiddenProbeIs(head_->weight),
                                          /*keep_hidden=*/keep_full_outputs_);
  VERDICT_RETURN_IF_ERROR(target_->Forward(batch, &forward_));
  const VerifyInput input = verification_.Input(0, forward_, vocab, target_->config().hidden_size);
  absl::StatusOr<spec::Verdict> verdict = VerifyBlock(config_, head_, input, rng_);
  const int64_t n = committed_length();
  if (!verdict.ok()) {
    VERDICT_CHECK(cache_->Truncate(n - 1).ok());  // leave the session as it was
    return verdict.status();
  }
  // Keep x[0..n) and the accepted draft tokens; the next token opens the next block.
  VERDICT_RETURN_IF_ERROR(cache_->Truncate(n + verdict->num_accepted));
  committed_.insert(committed_.end(), draft.tokens.begin(), draft.tokens.begin() + verdict->num_accepted);
  committed_.push_back(verdict->next_token);
  return verdict;
}

}  // namespace verdict::judge
