// SPDX-License-Identifier: Apache-2.0
// The speculation loop written plainly for tests: a DraftSession proposes, a TargetSession
// verifies, repeated until a stop token, max_new_tokens or the context end, on the calling thread.
// Verdict decodes through one loop, the coordinator (local::GenerateSpeculative in one process);
// this is the independent reference its tests compare it with, token for token.
#ifndef VERDICT_JUDGE_TESTING_REFERENCE_LOOP_H_
#define VERDICT_JUDGE_TESTING_REFERENCE_LOOP_H_

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/model.h"
#include "judge/speculative_options.h"

namespace verdict::judge::testing {

// Errors: kInvalidArgument for an empty prompt, a draft/target vocabulary mismatch, a bad window
// (k < 1 or > spec::kMaxDraftTokens, min > max), a bad policy or missing head; those of the sessions.
absl::StatusOr<SpeculativeResult> ReferenceSpeculativeLoop(engine::ModelSlice& target, engine::ModelSlice& draft,
                                                           absl::Span<const int32_t> prompt,
                                                           const SpeculativeOptions& options);

}  // namespace verdict::judge::testing

#endif  // VERDICT_JUDGE_TESTING_REFERENCE_LOOP_H_
