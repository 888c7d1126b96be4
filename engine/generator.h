// SPDX-License-Identifier: Apache-2.0
// Plain autoregressive generation with one model: prefill the prompt, then decode token by token,
// sampling with SamplingParams, stopping at a stop token or max_new_tokens. The building block of
// `verdict generate` without a draft model, and the reference that speculative decoding must match.
// Not thread-safe; one Generator per engine thread.
#ifndef VERDICT_ENGINE_GENERATOR_H_
#define VERDICT_ENGINE_GENERATOR_H_

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "engine/model.h"
#include "engine/sampler.h"

namespace verdict::engine {

struct GenerateOptions {
  int64_t max_new_tokens = 128;
  SamplingParams sampling;
  std::vector<int32_t> stop_token_ids;
  // Called with each new token as soon as it is chosen; returning false stops generation.
  std::function<bool(int32_t token)> on_token;
};

struct GenerateResult {
  std::vector<int32_t> tokens;  // generated tokens (including a final stop token, if hit)
  bool stopped_by_token = false;
  absl::Duration prefill_time;
  absl::Duration decode_time;
};

// Errors: those of ModelSlice::Forward (prompt too long, ids out of range) and of
// ValidateSamplingParams; kInvalidArgument for an empty prompt or a model that is not a whole model.
absl::StatusOr<GenerateResult> Generate(ModelSlice& model, absl::Span<const int32_t> prompt,
                                        const GenerateOptions& options);

}  // namespace verdict::engine

#endif  // VERDICT_ENGINE_GENERATOR_H_
