// SPDX-License-Identifier: Apache-2.0
#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "engine/kernels/op_math.h"

namespace verdict::engine {

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

int32_t Argmax(absl::Span<const float> logits) {
  // The rule the backends' logits summaries use (engine/kernels/op_math.h), so that a greedy token
  // is the same whether the host or the device picks it.
  float best = -std::numeric_limits<float>::infinity();
  int32_t best_index = math::kNoLogitIndex;
  for (size_t i = 0; i < logits.size(); ++i) {
    if (math::BeatsArgmax(logits[i], static_cast<int32_t>(i), best, best_index)) {
      best = logits[i];
      best_index = static_cast<int32_t>(i);
    }
  }
  return best_index == math::kNoLogitIndex ? 0 : best_index;
}

void SamplingDistribution(absl::Span<const float> logits, const SamplingParams& params,
                          std::vector<float>* probs) {
  const size_t n = logits.size();
  probs->assign(n, 0.0f);
  if (n == 0) return;
  if (params.greedy()) {
    (*probs)[Argmax(logits)] = 1.0f;
    return;
  }
  // Candidates sorted by logit (descending; ties by index for determinism).
  std::vector<int32_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  size_t keep = n;
  if (params.top_k > 0 && static_cast<size_t>(params.top_k) < n) keep = params.top_k;
  auto by_logit = [&](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  };
  if (keep < n) {
    std::partial_sort(order.begin(), order.begin() + keep, order.end(), by_logit);
    order.resize(keep);
  } else {
    std::sort(order.begin(), order.end(), by_logit);
  }
  const double max_logit = logits[order[0]];
  std::vector<double> weights(order.size());
  double total = 0;
  for (size_t i = 0; i < order.size(); ++i) {
    weights[i] = std::exp((logits[order[i]] - max_logit) / params.temperature);
    total += weights[i];
  }
  size_t nucleus = order.size();
  if (params.top_p < 1.0f) {
    // Smallest prefix whose mass reaches top_p (always at least one token), as HF's TopPLogitsWarper.
    double cumulative = 0;
    for (size_t i = 0; i < order.size(); ++i) {
      cumulative += weights[i] / total;
      if (cumulative >= params.top_p) {
        nucleus = i + 1;
        break;
      }
    }
  }
  double kept = 0;
  for (size_t i = 0; i < nucleus; ++i) kept += weights[i];
  for (size_t i = 0; i < nucleus; ++i) (*probs)[order[i]] = static_cast<float>(weights[i] / kept);
}

double Sampler::Uniform() { return static_cast<double>(rng_() >> 11) * 0x1.0p-53; }

int32_t Sampler::SampleFrom(absl::Span<const float> probs) {
  double total = 0;
  for (float p : probs) total += p;
  const double target = Uniform() * total;
  double cumulative = 0;
  int32_t last_positive = 0;
  for (size_t i = 0; i < probs.size(); ++i) {
    if (probs[i] <= 0) continue;
    cumulative += probs[i];
    last_positive = static_cast<int32_t>(i);
    if (target < cumulative) return last_positive;
  }
  return last_positive;  // rounding: the last token with mass
}

absl::StatusOr<int32_t> Sampler::Sample(absl::Span<const float> logits) {
  if (logits.empty()) return absl::InvalidArgumentError("cannot sample from empty logits");
  for (float l : logits) {
    if (std::isnan(l)) return absl::InvalidArgumentError("logits contain NaN");
  }
  if (params_.greedy()) return Argmax(logits);
  SamplingDistribution(logits, params_, &probs_);
  return SampleFrom(probs_);
}

}  // namespace verdict::engine
