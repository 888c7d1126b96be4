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

SamplingParams DefaultDraftSampling(const SamplingParams& target) {
  SamplingParams draft = target;
  draft.seed = target.seed ^ 0x9e3779b97f4a7c15ULL;
  return draft;
}

}  // namespace verdict::spec
