// SPDX-License-Identifier: Apache-2.0
#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "engine/kernels/op_math.h"

namespace verdict::engine {

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

namespace {

// FindSamplingSupport, and with top-k or top-p the kept tokens themselves (in candidate order) in
// `nucleus` (left empty for plain temperature: every token).
math::SamplingSupport SupportAndNucleus(absl::Span<const float> logits, const SamplingParams& params,
                                        std::vector<int32_t>* nucleus_ids) {
  const size_t n = logits.size();
  math::SamplingSupport support;
  support.temperature = params.temperature;
  if (n == 0) return support;
  // Candidates in the order the filters see them: by logit, descending; ties by index.
  auto by_logit = [&](int32_t a, int32_t b) { return math::SampledBefore(logits[a], a, logits[b], b); };
  const bool top_k = params.top_k > 0 && static_cast<size_t>(params.top_k) < n;
  const bool top_p = params.top_p < 1.0f;
  std::vector<int32_t> order;
  if (top_k) {
    order.resize(n);
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + params.top_k, order.end(), by_logit);
  }
  support.max_logit = top_k ? logits[order[0]] : [&] {
    float m = -std::numeric_limits<float>::infinity();
    for (float l : logits) m = l > m ? l : m;  // NaN never wins, as in Argmax
    return m;
  }();
  const float max_logit = support.max_logit;
  const float temperature = support.temperature;
  auto weight = [&logits, max_logit, temperature](int32_t i) {
    return math::SamplingWeight(logits[i], max_logit, temperature);
  };
  if (!top_k && !top_p) {  // plain softmax: every token kept, no order needed
    double total = 0;
    for (size_t i = 0; i < n; ++i) total += weight(static_cast<int32_t>(i));
    support.mass = total;
    return support;
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
  for (size_t i = 0; i < nucleus; ++i) kept += weight(order[i]);
  support.cut_logit = logits[order[nucleus - 1]];
  support.cut_index = order[nucleus - 1];
  support.mass = kept;
  if (nucleus_ids != nullptr) nucleus_ids->assign(order.begin(), order.begin() + nucleus);
  return support;
}

}  // namespace

math::SamplingSupport FindSamplingSupport(absl::Span<const float> logits, const SamplingParams& params) {
  return SupportAndNucleus(logits, params, nullptr);
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
  if (params.top_k <= 0 && params.top_p >= 1.0f) {
    // Plain temperature keeps every token: one pass of exponentials, kept for the division (what
    // FindSamplingSupport + math::SampledProb compute, in the same order).
    float max_logit = -std::numeric_limits<float>::infinity();
    for (float l : logits) max_logit = l > max_logit ? l : max_logit;  // NaN never wins
    std::vector<double> weights(n);
    double total = 0;
    for (size_t i = 0; i < n; ++i) {
      total += weights[i] = math::SamplingWeight(logits[i], max_logit, params.temperature);
    }
    for (size_t i = 0; i < n; ++i) {
      (*probs)[i] = logits[i] == logits[i] ? static_cast<float>(weights[i] / total) : 0.0f;
    }
    return;
  }
  std::vector<int32_t> nucleus;
  const math::SamplingSupport support = SupportAndNucleus(logits, params, &nucleus);
  for (int32_t i : nucleus) (*probs)[i] = math::SampledProb(support, logits[i], i);
}

int32_t SampleWithUniform(absl::Span<const float> probs, double u) {
  double total = 0;
  for (float p : probs) total += p;
  const double target = u * total;
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

SampledDecision DecideSampledRow(absl::Span<const float> logits, const math::SampledRowRequest& request,
                                 absl::Span<const int32_t> proposal_ids,
                                 absl::Span<const float> proposal_probs,
                                 std::vector<int32_t>* support_ids,
                                 std::vector<float>* support_probs) {
  const SamplingParams params = SamplingParamsOf(request);
  if (params.greedy()) {
    const int32_t best = Argmax(logits);
    if (support_ids != nullptr) {
      support_ids->push_back(best);
      support_probs->push_back(1.0f);
    }
    return SampledDecision{request.token == best ? 1.0f : 0.0f, best, logits[best], 0};
  }
  std::vector<float> probs;
  SamplingDistribution(logits, params, &probs);
  if (support_ids != nullptr) AppendNonzero(probs, support_ids, support_probs);
  SampledDecision decision;
  if (request.token >= 0) decision.target_prob = probs[request.token];
  std::vector<float> residual;
  decision.replacement =
      DrawReplacement(probs, request.token, proposal_ids.subspan(request.proposal_begin, request.proposal_count),
                      proposal_probs.subspan(request.proposal_begin, request.proposal_count),
                      request.sample_uniform, &residual);
  decision.replacement_logit = logits[decision.replacement];
  return decision;
}

int32_t DrawReplacement(absl::Span<const float> p, int32_t token, absl::Span<const int32_t> q_ids,
                        absl::Span<const float> q_probs, double u, std::vector<float>* scratch) {
  if (token < 0) return SampleWithUniform(p, u);
  std::vector<float>& residual = *scratch;
  residual.assign(p.begin(), p.end());
  if (q_ids.empty()) {
    residual[token] = math::ResidualProb(residual[token], 1.0f);
  } else {
    for (size_t j = 0; j < q_ids.size(); ++j) {
      residual[q_ids[j]] = math::ResidualProb(residual[q_ids[j]], q_probs[j]);
    }
  }
  double mass = 0;
  for (float r : residual) mass += r;
  return SampleWithUniform(mass > 0 ? absl::Span<const float>(residual) : p, u);
}

void AppendNonzero(absl::Span<const float> dense, std::vector<int32_t>* ids, std::vector<float>* values) {
  for (size_t j = 0; j < dense.size(); ++j) {
    if (dense[j] > 0) {
      ids->push_back(static_cast<int32_t>(j));
      values->push_back(dense[j]);
    }
  }
}

math::SampledRowRequest SampledRowRequestFor(const SamplingParams& params) {
  math::SampledRowRequest request;
  request.temperature = params.temperature;
  request.top_k = static_cast<int32_t>(std::min<int64_t>(params.top_k, INT32_MAX));
  request.top_p = params.top_p;
  return request;
}

SamplingParams SamplingParamsOf(const math::SampledRowRequest& request) {
  return SamplingParams{.temperature = request.temperature, .top_k = request.top_k, .top_p = request.top_p};
}

double Sampler::Uniform() { return static_cast<double>(rng_() >> 11) * 0x1.0p-53; }

int32_t Sampler::SampleFrom(absl::Span<const float> probs) { return SampleWithUniform(probs, Uniform()); }

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
