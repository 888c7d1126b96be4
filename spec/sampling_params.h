// SPDX-License-Identifier: Apache-2.0
// How tokens are chosen: greedy, or temperature with top-k and top-p, and the seed of the random
// stream. The one definition every layer shares (the engine's sampler, the judge's verification
// rules, the coordinator's requests, the wire conversions). Plain value type.
#ifndef VERDICT_SPEC_SAMPLING_PARAMS_H_
#define VERDICT_SPEC_SAMPLING_PARAMS_H_

#include <cstdint>
#include <optional>

#include "absl/status/status.h"

namespace verdict::spec {

struct SamplingParams {
  float temperature = 0.0f;  // <= 0: greedy (argmax)
  int64_t top_k = 0;         // <= 0: disabled
  float top_p = 1.0f;        // >= 1: disabled
  uint64_t seed = 0;

  bool greedy() const { return temperature <= 0.0f; }
  bool operator==(const SamplingParams&) const = default;
};

// kInvalidArgument for NaN/negative temperature, top_p outside (0, 1], and the like.
absl::Status ValidateSamplingParams(const SamplingParams& params);

// A checkpoint's sampling defaults (generation_config.json): what a request's unset values become
// when the checkpoint asks for sampling (do_sample). Values <= 0 were not given.
struct SamplingDefaults {
  bool do_sample = false;
  float temperature = -1.0f;
  int64_t top_k = -1;
  float top_p = -1.0f;
};
// Each value given wins, then the checkpoint's when it samples, then greedy (temperature 0, no
// top-k, top-p 1): one rule for `verdict generate` and every served request.
SamplingParams ResolveSampling(const SamplingDefaults& defaults, std::optional<float> temperature,
                               std::optional<int64_t> top_k, std::optional<float> top_p, uint64_t seed);

// The draft's own sampling when a request does not set it: the target's parameters with a seed
// derived from theirs (the two random streams must differ). One rule for every speculation loop.
SamplingParams DefaultDraftSampling(const SamplingParams& target);

}  // namespace verdict::spec

#endif  // VERDICT_SPEC_SAMPLING_PARAMS_H_
