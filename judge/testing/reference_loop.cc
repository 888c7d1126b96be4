// SPDX-License-Identifier: Apache-2.0
#include "judge/testing/reference_loop.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "judge/speculative_session.h"

namespace verdict::judge::testing {

absl::StatusOr<SpeculativeResult> ReferenceSpeculativeLoop(engine::ModelSlice& target, engine::ModelSlice& draft,
                                                           absl::Span<const int32_t> prompt,
                                                           const SpeculativeOptions& options) {
  const absl::Time start = absl::Now();
  if (prompt.empty()) return absl::InvalidArgumentError("the prompt has no tokens");
  VERDICT_RETURN_IF_ERROR(CheckCompatibleModels(target.config(), draft.config()));
  VERDICT_RETURN_IF_ERROR(spec::ValidateDraftWindowOptions(options.window));
  const int64_t n_prompt = static_cast<int64_t>(prompt.size());
  const int64_t target_context = target.config().max_position_embeddings;
  if (n_prompt >= target_context) {
    return absl::InvalidArgumentError(absl::StrCat("prompt of ", n_prompt,
                                                   " tokens does not fit the context length ", target_context));
  }
  const int64_t budget = n_prompt + std::max<int64_t>(options.max_new_tokens, 1);
  const int64_t target_capacity = std::min(target_context, budget);
  // The draft may have a shorter context; once it is full the target continues alone.
  const int64_t draft_capacity = std::min(draft.config().max_position_embeddings, budget);

  const engine::SamplingParams draft_sampling =
      options.draft_sampling.value_or(spec::DefaultDraftSampling(options.verification.target_sampling));
  VERDICT_ASSIGN_OR_RETURN(std::unique_ptr<TargetSession> verifier,
                           TargetSession::Create(&target, options.verification, options.head,
                                                 target_capacity));
  std::unique_ptr<DraftSession> proposer;
  const bool draft_fits = n_prompt < draft_capacity;
  if (draft_fits) {
    VERDICT_ASSIGN_OR_RETURN(proposer, DraftSession::Create(&draft, draft_sampling, draft_capacity,
                                                            options.verification.lossy == LossyRule::kKl));
    VERDICT_RETURN_IF_ERROR(proposer->Start(prompt));
  }
  VERDICT_RETURN_IF_ERROR(verifier->Start(prompt));

  SpeculativeResult result;
  spec::SpeculationStats& stats = result.stats;
  const int64_t max_k = options.window.adaptive ? options.window.max_k : options.window.k;
  stats.accepted_histogram.assign(max_k + 1, 0);
  stats.prefill_time = absl::Now() - start;
  spec::DraftWindow window(options.window);
  std::vector<int32_t> emitted;
  bool stop = false;
  while (!stop && static_cast<int64_t>(result.tokens.size()) < options.max_new_tokens) {
    const int64_t n = verifier->committed_length();
    if (n > target_capacity) break;  // context full
    // A pass commits up to k + 1 tokens: do not draft past max_new_tokens or either context.
    const int64_t remaining = options.max_new_tokens - static_cast<int64_t>(result.tokens.size());
    int64_t k = std::min({window.k(), remaining - 1, target_capacity - n});
    if (proposer != nullptr) k = std::min(k, draft_capacity - n + 1);
    if (proposer == nullptr) k = 0;
    k = std::max<int64_t>(k, 0);

    spec::DraftBlock block;
    if (k > 0) {
      const absl::Time t0 = absl::Now();
      VERDICT_ASSIGN_OR_RETURN(block, proposer->Propose(k));
      stats.draft_time += absl::Now() - t0;
    }
    const absl::Time t1 = absl::Now();
    VERDICT_ASSIGN_OR_RETURN(spec::Verdict verdict, verifier->Verify(block));
    stats.verify_time += absl::Now() - t1;
    if (proposer != nullptr) {
      VERDICT_RETURN_IF_ERROR(proposer->Commit(verdict.num_accepted, verdict.next_token));
      // The draft's context is full: the target goes on alone.
      stats.draft_passes = proposer->forward_passes();
      if (proposer->committed_length() >= draft_capacity) proposer.reset();
    }

    stats.RecordPass(k, verdict);
    window.Observe(k, verdict.num_accepted);
    if (options.on_verdict) options.on_verdict(block, verdict);

    // Commit to the output, cutting at a stop token or max_new_tokens.
    emitted.assign(block.tokens.begin(), block.tokens.begin() + verdict.num_accepted);
    emitted.push_back(verdict.next_token);
    size_t keep = 0;
    for (; keep < emitted.size(); ++keep) {
      if (static_cast<int64_t>(result.tokens.size()) >= options.max_new_tokens) break;
      const int32_t token = emitted[keep];
      result.tokens.push_back(token);
      if (std::find(options.stop_token_ids.begin(), options.stop_token_ids.end(), token) !=
          options.stop_token_ids.end()) {
        result.stopped_by_token = true;
        stop = true;
        ++keep;
        break;
      }
    }
    if (options.on_tokens && keep > 0 &&
        !options.on_tokens(absl::MakeConstSpan(emitted).subspan(0, keep))) {
      stop = true;
    }
  }
  stats.tokens = static_cast<int64_t>(result.tokens.size());
  stats.total_time = absl::Now() - start;
  return result;
}

}  // namespace verdict::judge::testing
