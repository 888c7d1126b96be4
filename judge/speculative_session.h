// SPDX-License-Identifier: Apache-2.0
// The two halves of one speculative-decoding session, each over its own model and KV cache, so
// they can run in one process (SpeculativeDecoder) or in different ones (draft worker, last target
// shard) with only token ids, draft blocks and verdicts between them.
//
// Both keep the invariant: the committed tokens are x[0..n); the cache holds a prefix of them and
// the rest ("pending", 1 or 2 tokens) is fed at the start of the next forward pass. Rolling back
// after a rejection is KvCache::Truncate, a metadata operation.
// Not thread-safe: each session is driven by one thread at a time.
#ifndef VERDICT_JUDGE_SPECULATIVE_SESSION_H_
#define VERDICT_JUDGE_SPECULATIVE_SESSION_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/kv_cache.h"
#include "engine/model.h"
#include "engine/sampler.h"
#include "judge/verification.h"
#include "judge/verification_batch.h"

namespace verdict::judge {

// Chooses the draft's token from one row of its logits (argmax, or a draw from the sampler's
// distribution) and appends it to `block` with its plain-softmax log-probability, its sparse
// proposal distribution when sampling, and the full distribution when `record_distribution`.
// `scratch` is reused between calls. Shared by DraftSession and the draft worker's batched
// proposals, so both propose identically.
int32_t AppendDraftToken(absl::Span<const float> logits, engine::Sampler& sampler,
                         bool record_distribution, std::vector<float>* scratch, spec::DraftBlock* block);
// The greedy case from the backend's summary of the row (engine::OutputContents::summaries), so
// the logits need not reach the host: the argmax and its log-probability max - log-sum-exp.
int32_t AppendGreedyDraftToken(const engine::LogitSummary& row, spec::DraftBlock* block);
// The sampled case without the row on the host: the backend draws the token with the sampler's
// next uniform and compacts the proposal (engine::OutputContents::sampled_requests with
// sampled_supports, and summaries for the log-probability). DraftSampleRequest makes the row's
// request (drawing from `sampler`), AppendSampledDraftToken reads output row `row` back; the token
// and proposal are the ones AppendDraftToken would choose from the same row and sampler.
engine::math::SampledRowRequest DraftSampleRequest(engine::Sampler& sampler);
int32_t AppendSampledDraftToken(const engine::ForwardResult& forward, size_t row, spec::DraftBlock* block);

// Draft side: proposes blocks of k tokens with the draft model.
class DraftSession {
 public:
  // `draft` must be a whole model and outlive the session. `sampling` is the draft's own sampling
  // (greedy proposals carry no distributions; sampled ones carry the sparse proposal q).
  // `capacity` bounds committed + proposed tokens. With `record_distributions` every block also
  // carries the draft's full plain-softmax distributions (for the KL baseline). Errors: those of
  // NewKvCache and ValidateSamplingParams; kInvalidArgument for a model slice.
  static absl::StatusOr<std::unique_ptr<DraftSession>> Create(engine::ModelSlice* draft,
                                                              const engine::SamplingParams& sampling,
                                                              int64_t capacity,
                                                              bool record_distributions = false);

  // Starts from committed tokens `prompt` (at least one). The prompt's prefill happens lazily in
  // the first Propose. kInvalidArgument for an empty prompt, kResourceExhausted if it does not fit.
  absl::Status Start(absl::Span<const int32_t> prompt);

  // Proposes k >= 1 tokens continuing the committed ones (k forward passes, the first one also
  // consuming the pending tokens). The proposal stays open until Commit. kResourceExhausted when
  // the committed tokens plus k would pass the capacity.
  absl::StatusOr<spec::DraftBlock> Propose(int64_t k);

  // The verdict for the open proposal: its first `num_accepted` tokens and then `next_token` are
  // committed; the cache is rolled back to drop the rest. Also valid without an open proposal
  // (num_accepted must then be 0): the target produced a token on its own.
  absl::Status Commit(int64_t num_accepted, int32_t next_token);

  int64_t committed_length() const { return static_cast<int64_t>(committed_.size()); }
  const std::vector<int32_t>& committed() const { return committed_; }
  const engine::KvCache& cache() const { return *cache_; }
  int64_t forward_passes() const { return forward_passes_; }

 private:
  DraftSession(engine::ModelSlice* draft, const engine::SamplingParams& sampling,
               std::unique_ptr<engine::KvCache> cache, bool record_distributions);

  engine::ModelSlice* draft_;
  bool record_distributions_;
  engine::Sampler sampler_;
  std::unique_ptr<engine::KvCache> cache_;
  std::vector<int32_t> committed_;
  std::vector<int32_t> open_tokens_;  // the proposal awaiting its verdict
  engine::ForwardResult forward_;
  std::vector<float> probs_;
  int64_t forward_passes_ = 0;
};

// Target side: runs the verification pass over [x_{n-1}, d_1..d_k] and applies the policy.
class TargetSession {
 public:
  // `target` must be a whole model and outlive the session; `head` (optional) too. With a judge,
  // the head's weight becomes the target's hidden-state probe (engine::ModelSlice::SetHiddenProbe).
  // Policies that allow it (CanVerifyFromSummaries) are decided from the backend's logits
  // summaries and judge dot products, without copying logits rows to the host, unless
  // `keep_full_outputs` (then last_forward() has the logits and hidden states of every pass).
  static absl::StatusOr<std::unique_ptr<TargetSession>> Create(engine::ModelSlice* target,
                                                               const VerificationConfig& config,
                                                               const JudgeHead* head,
                                                               int64_t capacity,
                                                               bool keep_full_outputs = false);

  // Prefills all prompt tokens but the last (which opens the first verification block).
  absl::Status Start(absl::Span<const int32_t> prompt);

  // One target pass over the block; commits the accepted tokens and the target's next token and
  // rolls the cache back past the rejected ones. The verdict says what was committed.
  // kResourceExhausted when the block does not fit the capacity.
  absl::StatusOr<spec::Verdict> Verify(const spec::DraftBlock& draft);

  // The outputs of the last Verify's forward pass (k + 1 rows; full logits and hidden states with
  // keep_full_outputs or a policy that needs them, else summaries and judge dots).
  const engine::ForwardResult& last_forward() const { return forward_; }

  int64_t committed_length() const { return static_cast<int64_t>(committed_.size()); }
  const std::vector<int32_t>& committed() const { return committed_; }
  const engine::KvCache& cache() const { return *cache_; }
  const VerificationConfig& config() const { return config_; }

 private:
  TargetSession(engine::ModelSlice* target, const VerificationConfig& config, const JudgeHead* head,
                std::unique_ptr<engine::KvCache> cache, bool keep_full_outputs);

  engine::ModelSlice* target_;
  VerificationConfig config_;
  bool keep_full_outputs_;
  VerificationBatch verification_;  // what the pass computes, and the verdict's inputs
  const JudgeHead* head_;
  engine::Sampler rng_;
  std::unique_ptr<engine::KvCache> cache_;
  std::vector<int32_t> committed_;
  std::vector<int32_t> block_;
  engine::ForwardResult forward_;
};

// Rejects a draft/target pair whose vocabularies differ in size (kInvalidArgument naming both).
// Token-by-token comparison of tokenizers is the caller's job (the CLI has them).
absl::Status CheckCompatibleModels(const engine::LlamaConfig& target, const engine::LlamaConfig& draft);

}  // namespace verdict::judge

#endif  // VERDICT_JUDGE_SPECULATIVE_SESSION_H_
