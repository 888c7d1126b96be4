// SPDX-License-Identifier: Apache-2.0
// Speculative (and judge) decoding in one process through the coordinator that serves clusters:
// a workers::InProcessCluster (the target as one shard with the judge head, the draft worker, each
// on its engine thread) behind the client interfaces, and a coordinator::Coordinator driving one
// request over them. What the judge evaluation and the in-process tests decode with, so one loop
// decides every token Verdict produces; engine-level rules with no wire form (the evaluation's
// oracle and token mask) reach the shard through TargetShardOptions::adjust_verification.
#ifndef VERDICT_LOCAL_SPECULATIVE_GENERATION_H_
#define VERDICT_LOCAL_SPECULATIVE_GENERATION_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/model.h"
#include "judge/speculative_options.h"

namespace verdict::local {

// Generates from `prompt` until a stop token, options.max_new_tokens, the context's end or
// options.on_tokens returning false; blocks the calling thread. `target` and `draft` must not be
// used by another thread meanwhile. Not pipelined: block b+1 is drafted after b's verdict, as a
// reference for the cluster (drafting ahead consumes the draft's random stream differently).
// Errors: kInvalidArgument for an empty prompt, a token outside the vocabulary, a prompt that
// fills the context, a draft/target vocabulary mismatch, a bad window (k < 1 or
// > spec::kMaxDraftTokens, min > max), a bad policy or a judge policy without a head;
// kFailedPrecondition for a head of another hidden size; those of the generation.
absl::StatusOr<judge::SpeculativeResult> GenerateSpeculative(engine::ModelSlice& target, engine::ModelSlice& draft,
                                                             absl::Span<const int32_t> prompt,
                                                             const judge::SpeculativeOptions& options);

}  // namespace verdict::local

#endif  // VERDICT_LOCAL_SPECULATIVE_GENERATION_H_
