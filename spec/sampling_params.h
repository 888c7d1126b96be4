// SPDX-License-Identifier: Apache-2.0
// How tokens are chosen: greedy, or temperature with top-k and top-p, and the seed of the random
// stream. The one definition every layer shares (the engine's sampler, the judge's verification
// rules, the coordinator's requests, the wire conversions). Plain value type.
#ifndef VERDICT_SPEC_SAMPLING_PARAMS_H_
#define VERDICT_SPEC_SAMPLING_PARAMS_H_

#include <cstdint>

#include "absl/status/status.h"

namespace verdict::spec {

struct SamplingParams {
  float temperature = 0.0f;  // <= 0: greedy (argmax)
  int64_t top_k = 0;         // <= 0: disabled
  float top_p = 1.0f;        // >= 1: disabled
  uint64_t seed = 0;

  bool greedy() const { return temperature <= 0.0f; }
};

// kInvalidArgument for NaN/negative temperature, top_p outside (0, 1], and the like.
absl::Status ValidateSamplingParams(const SamplingParams& params);

// The draft's own sampling when a request does not set it: the target's parameters with a seed
// derived from theirs (the two random streams must differ). One rule for every speculation loop.
SamplingParams DefaultDraftSampling(const SamplingParams& target);

}  // namespace verdict::spec

#endif  // VERDICT_SPEC_SAMPLING_PARAMS_H_
