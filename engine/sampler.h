// SPDX-License-Identifier: Apache-2.0
// Token sampling from logits: greedy, temperature, top-k, top-p (applied in that order, as Hugging
// Face's generate does), seeded and reproducible: the same seed and logits give the same tokens on
// every platform (the RNG is std::mt19937_64, whose sequence is fixed by the standard, and the
// uniform draw is computed by us, not by a library distribution).
// A Sampler is not thread-safe; use one per sequence.
#ifndef VERDICT_ENGINE_SAMPLER_H_
#define VERDICT_ENGINE_SAMPLER_H_

#include <cstdint>
#include <random>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/kernels/sampling_math.h"
#include "spec/sampling_params.h"

namespace verdict::engine {

// The sampling parameters are the speculation vocabulary's (spec/sampling_params.h).
using spec::SamplingParams;
using spec::ValidateSamplingParams;

// Index of the largest logit (the first on ties, like torch.argmax; NaN never wins; 0 for a row of
// NaN).
int32_t Argmax(absl::Span<const float> logits);

// The distribution the sampler draws from: softmax(logits / temperature) restricted to the top-k and
// then to the smallest top-p nucleus, renormalised. Written as a dense vector over the vocabulary.
// For greedy params this is one-hot on the argmax. Speculative verification uses these
// probabilities. REQUIRES: ValidateSamplingParams(params).ok().
void SamplingDistribution(absl::Span<const float> logits, const SamplingParams& params,
                          std::vector<float>* probs);

// Where the distribution of SamplingDistribution ends in the candidate order, and its mass
// (engine/kernels/sampling_math.h): p(i) = math::SampledProb(support, logits[i], i).
// REQUIRES: ValidateSamplingParams(params).ok() and !params.greedy().
math::SamplingSupport FindSamplingSupport(absl::Span<const float> logits, const SamplingParams& params);

// Draws an index from a probability vector (need not be normalised) by inverse CDF in index order
// with the uniform draw u in [0, 1): the first index whose cumulative mass passes u * total (the
// last index with mass when rounding leaves the draw past the end).
int32_t SampleWithUniform(absl::Span<const float> probs, double u);

// The host executor of Backend::DecideSampled for one row (math::SampledRowRequest): the target
// probability of the request's token and the replacement token. REQUIRES: the request and proposal
// entries are valid for the row (ModelSlice checks them).
struct SampledDecision {
  float target_prob = 0;
  int32_t replacement = 0;
  float replacement_logit = 0;  // the row's logit of `replacement` (its log-probability's numerator)
  int64_t support_size = 0;     // tokens with p > 0, when supports were asked for
  // Reads a row in the layout the backends write (math::kSampledDecisionWidth).
  static SampledDecision FromRow(const float* row) {
    return SampledDecision{row[0], static_cast<int32_t>(row[1]), row[2], static_cast<int64_t>(row[3])};
  }
};
// With `support_ids`/`support_probs` it also appends the tokens the request's distribution gives
// p > 0, ascending, with their probabilities (SamplingDistribution's nonzero entries; for greedy
// requests the argmax with 1): the proposal a sampled draft sends with its token.
SampledDecision DecideSampledRow(absl::Span<const float> logits, const math::SampledRowRequest& request,
                                 absl::Span<const int32_t> proposal_ids,
                                 absl::Span<const float> proposal_probs,
                                 std::vector<int32_t>* support_ids = nullptr,
                                 std::vector<float>* support_probs = nullptr);

// The token drawn with the uniform u from max(0, p - q) (`p` dense, q sparse with ids ascending;
// one-hot on `token` when q_ids is empty) after `token` was rejected, or from p for a bonus row
// (token < 0) or where the residual is empty (p == q: the token could not have been rejected).
// `scratch` holds the residual.
int32_t DrawReplacement(absl::Span<const float> p, int32_t token, absl::Span<const int32_t> q_ids,
                        absl::Span<const float> q_probs, double u, std::vector<float>* scratch);

// Appends the entries of `dense` with value > 0, in index order.
void AppendNonzero(absl::Span<const float> dense, std::vector<int32_t>* ids, std::vector<float>* values);

// A backend request carrying `params` (no token, proposal or draw yet), and back.
math::SampledRowRequest SampledRowRequestFor(const SamplingParams& params);
SamplingParams SamplingParamsOf(const math::SampledRowRequest& request);

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params) : params_(params), rng_(params.seed) {}

  // Draws the next token. Errors: kInvalidArgument for empty logits or logits with NaN.
  absl::StatusOr<int32_t> Sample(absl::Span<const float> logits);

  // A uniform draw in [0, 1) with 53 random bits from the sampler's stream.
  double Uniform();

  // Draws an index from a probability vector (need not be normalised).
  int32_t SampleFrom(absl::Span<const float> probs);

  const SamplingParams& params() const { return params_; }

  // The random stream's position: a block that is verified again (a retried request) restores it
  // so that it draws the same numbers.
  const std::mt19937_64& stream() const { return rng_; }
  void set_stream(const std::mt19937_64& stream) { rng_ = stream; }

 private:
  SamplingParams params_;
  std::mt19937_64 rng_;
  std::vector<float> probs_;
};

}  // namespace verdict::engine

#endif  // VERDICT_ENGINE_SAMPLER_H_
