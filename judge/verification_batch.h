// SPDX-License-Identifier: Apache-2.0
// The one preparation of a verification forward pass, shared by the last target shard (the blocks
// of many sessions in one pass) and the in-process TargetSession (one block): what the backend must
// compute for the blocks' k + 1 output rows each — the logits summaries, the judge's dot products
// and the sampled rule's decisions where every block's policy allows it, otherwise whole logits rows
// (and hidden states for a judge) — with the sampled rule's random draws made up front, and then
// each block's VerifyInput read back from the forward result.
// Not thread-safe; one batch at a time. The configs, drafts and random streams added must outlive
// the batch's use (until the last Input).
#ifndef VERDICT_JUDGE_VERIFICATION_BATCH_H_
#define VERDICT_JUDGE_VERIFICATION_BATCH_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "engine/kernels/sampling_math.h"
#include "engine/model.h"
#include "engine/sampler.h"
#include "judge/verification.h"
#include "spec/draft_block.h"

namespace verdict::judge {

class VerificationBatch {
 public:
  // Starts a batch. With `allow_summaries` false the blocks are always decided from whole rows.
  void Begin(bool allow_summaries);
  // Adds a block whose k + 1 output rows follow the previous block's. `rng` is its session's random
  // stream (the sampled rule's draws).
  void Add(const VerificationConfig& config, const spec::DraftBlock& draft, engine::Sampler* rng);
  // What the forward pass must return for the added rows, once all blocks are added. Summaries are
  // used when allowed, every block's policy can do without logits (CanVerifyWithoutLogits) and, with
  // a judge, `probe_ready` (the backend's hidden probe is the judge head's weight). Then it draws
  // the sampled blocks' uniforms from their streams. `keep_hidden`: whole rows include the hidden
  // states even without a judge. The result refers to this batch's arrays.
  engine::OutputContents Contents(bool probe_ready, bool keep_hidden = false);
  // Block i's input for VerifyBlock from `forward` (the batch's output rows in block order).
  VerifyInput Input(size_t i, const engine::ForwardResult& forward, int64_t vocab_size,
                    int64_t hidden_size) const;

  size_t size() const { return blocks_.size(); }
  bool from_summaries() const { return summaries_; }

 private:
  struct Block {
    const VerificationConfig* config;
    const spec::DraftBlock* draft;
    engine::Sampler* rng;
    int64_t first_row;
  };
  std::vector<Block> blocks_;
  int64_t rows_ = 0;
  bool allow_summaries_ = true;
  bool summaries_ = false;
  std::vector<int32_t> summary_tokens_;
  std::vector<double> uniforms_;  // kUniformsPerRow per output row, when the backend decides
  std::vector<engine::math::SampledRowRequest> sampled_requests_;
  std::vector<int32_t> proposal_ids_;
  std::vector<float> proposal_probs_;
};

}  // namespace verdict::judge

#endif  // VERDICT_JUDGE_VERIFICATION_BATCH_H_
