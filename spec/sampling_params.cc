// SPDX-License-Identifier: Apache-2.0
#include "spec/sampling_params.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace verdict::spec {

absl::Status ValidateSamplingParams(const SamplingParams& p) {
  if (std::isnan(p.temperature) || std::isinf(p.temperature) || p.temperature < 0) {
    return absl::InvalidArgumentError(absl::StrCat("temperature must be >= 0, got ", p.temperature));
  }
  if (std::isnan(p.top_p) || p.top_p <= 0 || p.top_p > 1) {
    return absl::InvalidArgumentError(absl::StrCat("top_p must be in (0, 1], got ", p.top_p));
  }
  if (p.top_k < 0) return absl::InvalidArgumentError(absl::StrCat("top_k must be >= 0, got ", p.top_k));
  return absl::OkStatus();
}

SamplingParams ResolveSampling(const SamplingDefaults& defaults, std::optional<float> temperature,
                               std::optional<int64_t> top_k, std::optional<float> top_p, uint64_t seed) {
  const bool samples = defaults.do_sample;
  SamplingParams s;
  s.temperature = temperature.value_or(samples && defaults.temperature > 0 ? defaults.temperature : 0.0f);
  s.top_k = top_k.value_or(samples && defaults.top_k > 0 ? defaults.top_k : 0);
  s.top_p = top_p.value_or(samples && defaults.top_p > 0 ? defaults.top_p : 1.0f);
  s.seed = seed;
  return s;
}

SamplingParams DefaultDraftSampling(const SamplingParams& target) {
  SamplingParams draft = target;
  draft.seed = target.seed ^ 0x9e3779b97f4a7c15ULL;
  return draft;
}

}  // namespace verdict::spec
