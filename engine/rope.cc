// SPDX-License-Identifier: Apache-2.0
#include "engine/rope.h"

#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace verdict::engine {

absl::StatusOr<RopeParams> ComputeRopeParams(const LlamaConfig& config,
                                             absl::Span<const float> freq_divisors) {
  const int64_t dim = config.head_dim;
  if (dim <= 0 || dim % 2 != 0) {
    return absl::InvalidArgumentError(absl::StrCat("head_dim must be even and positive, got ", dim));
  }
  if (!freq_divisors.empty() && static_cast<int64_t>(freq_divisors.size()) != dim / 2) {
    return absl::InvalidArgumentError(absl::StrCat("rope_freqs has ", freq_divisors.size(),
                                                   " entries, expected head_dim/2 = ", dim / 2));
  }
  RopeParams params;
  params.interleaved = config.rope_style == RopeStyle::kInterleaved;
  params.inv_freq.resize(dim / 2);
  for (int64_t i = 0; i < dim / 2; ++i) {
    // transformers: 1 / base ** (arange(0, dim, 2) / dim), in f32.
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(dim);
    float inv = 1.0f / std::pow(config.rope_theta, exponent);
    if (config.has_llama3_rope_scaling) {
      const Llama3RopeScaling& s = config.llama3_rope_scaling;
      const double old_context = static_cast<double>(s.original_max_position_embeddings);
      const double low_freq_wavelen = old_context / s.low_freq_factor;
      const double high_freq_wavelen = old_context / s.high_freq_factor;
      const double wavelen = 2.0 * M_PI / inv;
      if (wavelen > low_freq_wavelen) {
        inv = inv / s.factor;
      } else if (wavelen >= high_freq_wavelen) {  // medium band: interpolate
        const double smooth = (old_context / wavelen - s.low_freq_factor) /
                              (s.high_freq_factor - s.low_freq_factor);
        inv = static_cast<float>((1.0 - smooth) * inv / s.factor + smooth * inv);
      }
    }
    inv /= config.rope_linear_factor;
    if (!freq_divisors.empty()) inv /= freq_divisors[i];
    params.inv_freq[i] = inv;
  }
  return params;
}

}  // namespace verdict::engine
