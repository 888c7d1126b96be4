// SPDX-License-Identifier: Apache-2.0
// The judge head: a linear classifier on the target's final-layer hidden state (after the final
// RMSNorm) at a draft token's position, optionally with a few scalars the last shard has anyway,
// that says "this draft token is acceptable even though the target would not have chosen it".
//
// File format (safetensors, written by `verdict judge train`):
//   tensors  weight        f32 [hidden_size]   on the hidden state
//            bias          f32 [1]
//            extra_weight  f32 [n_extra]       on the extra features (absent when n_extra == 0)
//   metadata format "verdict-judge-head/1"; hidden_state "final_norm_output"; features (JSON list of
//            extra feature names, in extra_weight's order); threshold; target_fingerprint;
//            target_hidden_size; training (JSON summary: data, metrics, options).
// Feature standardization is folded into weight/bias, so the head is exactly
//   probability = sigmoid(weight . h + extra_weight . extras + bias).
// Immutable after loading; thread-safe to share.
#ifndef VERDICT_JUDGE_JUDGE_HEAD_H_
#define VERDICT_JUDGE_JUDGE_HEAD_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "engine/io/weight_source.h"
#include "engine/model_config.h"

namespace verdict::judge {

inline constexpr absl::string_view kJudgeHeadFormat = "verdict-judge-head/1";
// The only hidden-state definition: the last layer's output after the final RMSNorm (the LM
// head's input), at the position of the draft token being judged.
inline constexpr absl::string_view kHiddenStateDefinition = "final_norm_output";

// Scalar features beside the hidden state (all plain softmax, temperature 1, natural log):
enum class JudgeFeature {
  kTargetLogprob,  // "target_logprob": log p_target(d_i) from the row that predicts d_i
  kTargetEntropy,  // "target_entropy": entropy of that target distribution
  kDraftLogprob,   // "draft_logprob": log q_draft(d_i)
};
absl::string_view JudgeFeatureName(JudgeFeature feature);
absl::StatusOr<JudgeFeature> ParseJudgeFeature(absl::string_view name);

struct JudgeHead {
  std::vector<float> weight;  // [hidden_size]
  float bias = 0;
  std::vector<JudgeFeature> extra_features;
  std::vector<float> extra_weight;  // one per extra feature
  float threshold = 0.5f;
  std::string target_fingerprint;
  std::string training_json = "{}";  // summary written by the trainer
  // How reports name this head (not stored in the file; a service sets it, e.g. the file's SHA-256
  // prefix and the threshold: "3f2a9c0b1d4e5f60@0.5").
  std::string id;

  int64_t hidden_size() const { return static_cast<int64_t>(weight.size()); }
  // weight . hidden + extra_weight . extras + bias. REQUIRES matching sizes.
  float Logit(absl::Span<const float> hidden, absl::Span<const float> extras) const;
  float Probability(absl::Span<const float> hidden, absl::Span<const float> extras) const;
  // The same from weight . hidden computed elsewhere (on the device that holds the hidden state,
  // engine::OutputContents::probe).
  float LogitFromDot(float dot, absl::Span<const float> extras) const;
  float ProbabilityFromDot(float dot, absl::Span<const float> extras) const;
  static float Sigmoid(float z);
};

// Errors: kNotFound, kInvalidArgument for a malformed file, wrong shapes, non-finite values, an
// unknown format, hidden-state definition or feature (the message names the file).
absl::StatusOr<JudgeHead> LoadJudgeHead(const std::string& path);
absl::Status SaveJudgeHead(const JudgeHead& head, const std::string& path);

// A stable identity of a target model, independent of the file format and of lossless dtype
// conversions: its architecture (layers, sizes, heads, vocabulary, rope) and the values of its final
// norm and of two embedding rows rounded to bf16. "llama-v1:" + 16 hex digits (FNV-1a 64).
// Quantized copies (q8_0) of a model have a different fingerprint. Errors: kNotFound for a
// missing tensor.
absl::StatusOr<std::string> TargetFingerprint(const engine::LlamaConfig& config,
                                              const engine::WeightSource& weights);

// kFailedPrecondition when the head was trained for another target (different fingerprint or hidden
// size), naming both.
absl::Status CheckHeadMatchesTarget(const JudgeHead& head, absl::string_view fingerprint,
                                    int64_t hidden_size);

}  // namespace verdict::judge

#endif  // VERDICT_JUDGE_JUDGE_HEAD_H_
