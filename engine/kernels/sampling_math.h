// SPDX-License-Identifier: Apache-2.0
// Sampling from a row of logits and the sampled rule of speculative decoding (Leviathan et al.),
// written once for the host (engine/sampler.cc, the CPU backend) and for the CUDA kernel that
// decides sampled verification blocks where the logits are, so that only two numbers per row leave
// the GPU. How a backend finds a row's support (a partial sort on the CPU, a radix select on the
// GPU) and sums over it stays outside: everything here is a pure VERDICT_HOST_DEVICE function.
#ifndef VERDICT_ENGINE_KERNELS_SAMPLING_MATH_H_
#define VERDICT_ENGINE_KERNELS_SAMPLING_MATH_H_

#include <cmath>
#include <cstdint>

#include "engine/kernels/op_math.h"

namespace verdict::engine::math {

// The order in which top-k and top-p see the candidates: larger logit first, ties by smaller index
// (Hugging Face's warpers after a stable sort).
VERDICT_HOST_DEVICE inline bool SampledBefore(float a, int32_t a_index, float b, int32_t b_index) {
  return a > b || (a == b && a_index < b_index);
}

// The distribution a row is sampled from: softmax(logits / temperature) over the kept tokens, a
// prefix of the candidate order ending at the candidate (cut_logit, cut_index), renormalised.
// Top-k and top-p only move the cut; the defaults keep every token (plain temperature sampling).
struct SamplingSupport {
  float max_logit = 0;  // the row's largest logit
  float temperature = 1;  // > 0
  float cut_logit = -INFINITY;
  int32_t cut_index = kNoLogitIndex;
  double mass = 1;  // the sum of SamplingWeight over the kept tokens
};

// e^((logit - max) / temperature) in double, the unnormalised probability of a kept token.
VERDICT_HOST_DEVICE inline double SamplingWeight(float logit, float max_logit, float temperature) {
  return exp((static_cast<double>(logit) - static_cast<double>(max_logit)) /
             static_cast<double>(temperature));
}

// Whether the token is kept: at or before the cut in the candidate order (NaN never is).
VERDICT_HOST_DEVICE inline bool Kept(const SamplingSupport& s, float logit, int32_t index) {
  return logit == logit && !SampledBefore(s.cut_logit, s.cut_index, logit, index);
}

// p(index), rounded to f32 as a dense probability vector stores it.
VERDICT_HOST_DEVICE inline float SampledProb(const SamplingSupport& s, float logit, int32_t index) {
  return Kept(s, logit, index)
             ? static_cast<float>(SamplingWeight(logit, s.max_logit, s.temperature) / s.mass)
             : 0.0f;
}

// The sampled rule for a draft token with target probability p and draft probability q > 0:
// accept with probability min(1, p / q), the uniform draw u in [0, 1) deciding.
VERDICT_HOST_DEVICE inline bool AcceptsDraftToken(float p, float q, double u) {
  return p >= q || u < static_cast<double>(p) / q;
}

// One element of max(0, p - q), the (unnormalised) distribution a rejected token's replacement is
// drawn from.
VERDICT_HOST_DEVICE inline float ResidualProb(float p, float q) {
  const float r = p - q;
  return r > 0.0f ? r : 0.0f;
}

// A 32-bit key per logit whose unsigned order is the logits' order (radix selection of the cut);
// -0 and +0 share a key (they compare equal, so their order is by id); NaN gets 0 and is excluded
// by the callers.
VERDICT_HOST_DEVICE inline uint32_t LogitKey(float logit) {
  if (logit != logit) return 0;
  if (logit == 0.0f) return 0x80000000u;
  const uint32_t bits = BitsFromFloat(logit);
  return (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
}
VERDICT_HOST_DEVICE inline float LogitFromKey(uint32_t key) {
  return FloatFromBits((key & 0x80000000u) ? (key & 0x7fffffffu) : ~key);
}

// What Backend::DecideSampled is asked about one row of logits (plain data: it is copied to the
// device as it is).
struct SampledRowRequest {
  // The row's sampling parameters (engine::SamplingParams); temperature <= 0 is greedy (one-hot
  // on the argmax).
  float temperature = 0;
  int32_t top_k = 0;
  float top_p = 1;
  // The draft token this row decides; -1 for a bonus row, which only draws a token from p.
  int32_t token = -1;
  // The draft's proposal distribution q for `token`: entries [begin, begin + count) of the flat
  // id and probability arrays, ids strictly ascending; count 0 is one-hot on `token` (greedy
  // draft).
  int32_t proposal_begin = 0;
  int32_t proposal_count = 0;
  // The uniform draw in [0, 1) that picks the replacement token by inverse CDF in id order.
  double sample_uniform = 0;
};

// What a backend writes per row: [p(token) (0 for a bonus row), the replacement token: drawn from
// max(0, p - q) (from p where that is empty or for a bonus row), as an exact float, the row's logit
// of the replacement token, the number of tokens with p > 0 (when supports are asked for, else 0)].
inline constexpr int kSampledDecisionWidth = 4;
// Supports, when asked for: per row of a [rows, 2 * cols] buffer, the ids with p > 0 in ascending
// order (exact floats) in columns [0, n) and their probabilities in columns [cols, cols + n).
inline constexpr int64_t SupportRowWidth(int64_t cols) { return 2 * cols; }

}  // namespace verdict::engine::math

#endif  // VERDICT_ENGINE_KERNELS_SAMPLING_MATH_H_
