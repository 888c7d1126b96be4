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
  // Candidates in the order the filters see them: by logit, descending; ties by index.
  auto by_logit = [&](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  };
  const bool top_k = params.top_k > 0 && static_cast<size_t>(params.top_k) < n;
  const bool top_p = params.top_p < 1.0f;
  std::vector<int32_t> order;
  if (top_k) {
    order.resize(n);
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + params.top_k, order.end(), by_logit);
  }
  const double max_logit = top_k ? logits[order[0]] : [&] {
    float m = -std::numeric_limits<float>::infinity();
    for (float l : logits) m = l > m ? l : m;  // NaN never wins, as in Argmax
    return static_cast<double>(m);
  }();
  const double temperature = params.temperature;
  auto weight = [&](int32_t i) { return std::exp((logits[i] - max_logit) / temperature); };
  if (!top_k && !top_p) {  // plain softmax: no order needed (a 128k-entry sort per row was most
                           // of a sampled verification's host time)
    double total = 0;
    std::vector<double> weights(n);
    for (size_t i = 0; i < n; ++i) total += weights[i] = weight(static_cast<int32_t>(i));
    for (size_t i = 0; i < n; ++i) (*probs)[i] = static_cast<float>(weights[i] / total);
    return;
  }
  // The top-p mass is of the distribution after top-k: the k kept tokens, or all of them.
  const size_t candidates = top_k ? static_cast<size_t>(params.top_k) : n;
  double total = 0;
  if (top_k) {
    for (size_t i = 0; i < candidates; ++i) total += weight(order[i]);
  } else {
    order.resize(n);
    std::iota(order.begin(), order.end(), 0);
    for (size_t i = 0; i < n; ++i) total += weight(static_cast<int32_t>(i));
  }
  size_t nucleus = candidates;
  if (top_p) {
    // Smallest prefix whose mass reaches top_p (always at least one token), as HF's
    // TopPLogitsWarper. Without top-k only a growing head of the order is sorted: nuclei are
    // usually a few hundred tokens of a 128k vocabulary.
    size_t sorted = top_k ? candidates : 0;  // order[0, sorted) is final
    double cumulative = 0;
    bool reached = false;
    for (size_t i = 0; !reached && i < candidates;) {
      if (i == sorted) {  // sort the next, larger head of the rest
        const size_t want = std::min(candidates, std::max<size_t>(256, 4 * sorted));
        std::partial_sort(order.begin() + sorted, order.begin() + want, order.end(), by_logit);
        sorted = want;
      }
      for (; i < sorted; ++i) {
        cumulative += weight(order[i]) / total;
        if (cumulative >= params.top_p) {
          nucleus = i + 1;
          reached = true;
          break;
        }
      }
    }
  }
  double kept = 0;
  std::vector<double> weights(nucleus);
  for (size_t i = 0; i < nucleus; ++i) kept += weights[i] = weight(order[i]);
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
