// SPDX-License-Identifier: Apache-2.0
// Rotary-embedding frequencies of a Llama model: plain theta, linear scaling, Llama-3.1 "llama3"
// frequency-dependent scaling, or per-frequency divisors stored in a GGUF (rope_freqs.weight).
// Pure functions; thread-safe.
#ifndef VERDICT_ENGINE_ROPE_H_
#define VERDICT_ENGINE_ROPE_H_

#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/backend.h"
#include "engine/model_config.h"

namespace verdict::engine {

// inv_freq[i] for i < head_dim / 2, following transformers' rope initialisation for the config.
// `freq_divisors` (GGUF rope_freqs.weight, may be empty) divides each frequency.
// Errors: kInvalidArgument for an odd head_dim or a divisor count that is not head_dim / 2.
absl::StatusOr<RopeParams> ComputeRopeParams(const LlamaConfig& config,
                                             absl::Span<const float> freq_divisors);

}  // namespace verdict::engine

#endif  // VERDICT_ENGINE_ROPE_H_
