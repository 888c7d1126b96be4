// SPDX-License-Identifier: Apache-2.0
#include "judge/judge_head.h"

#include <cmath>
#include <cstring>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "engine/dtype.h"
#include "engine/fp8.h"
#include "engine/io/mapped_file.h"
#include "engine/io/safetensors.h"
#include "engine/io/safetensors_writer.h"
#include "engine/kernels/matmul.h"
#include "nlohmann/json.hpp"

namespace verdict::judge {
namespace {

using engine::DType;
using engine::WeightTensor;

absl::StatusOr<std::vector<float>> ReadF32Vector(const engine::SafetensorsFile& file,
                                                 absl::string_view name, const std::string& path) {
  for (const WeightTensor& t : file.tensors) {
    if (t.name != name) continue;
    if (t.dtype != DType::kF32 || t.shape.size() != 1) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": tensor \"", name,
                                                     "\" must be a 1-D f32 vector"));
    }
    std::vector<float> values(t.shape[0]);
    std::memcpy(values.data(), t.data, values.size() * sizeof(float));
    for (size_t i = 0; i < values.size(); ++i) {
      if (!std::isfinite(values[i])) {
        return absl::InvalidArgumentError(
            absl::StrCat(path, ": tensor \"", name, "\" has a non-finite value at ", i));
      }
    }
    return values;
  }
  return absl::NotFoundError(absl::StrCat(path, ": no tensor \"", name, "\""));
}

absl::StatusOr<std::string> Metadata(const engine::SafetensorsFile& file, absl::string_view key,
                                     const std::string& path) {
  auto it = file.metadata.find(std::string(key));
  if (it == file.metadata.end()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": not a judge head (metadata \"", key, "\" is missing)"));
  }
  return it->second;
}

// Row `row` of a weight matrix as f32 (any float storage; raw FP8 without its scale).
absl::StatusOr<std::vector<float>> MatrixRow(const WeightTensor& t, int64_t row) {
  if (t.shape.size() != 2 || row < 0 || row >= t.shape[0]) {
    return absl::InvalidArgumentError(absl::StrCat("tensor \"", t.name, "\" is not a matrix with row ", row));
  }
  const int64_t cols = t.shape[1];
  std::vector<float> out(cols);
  switch (t.dtype) {
    case DType::kI32:
      return absl::InvalidArgumentError(absl::StrCat("tensor \"", t.name, "\" is not floating point"));
    case DType::kF8E4M3:  // engine::GatherRows takes the engine's scaled FP8 rows only
      for (int64_t c = 0; c < cols; ++c) out[c] = engine::Fp8E4M3ToF32(t.data[row * cols + c]);
      return out;
    case DType::kQ8_0:
      if (cols % engine::kQ8_0BlockSize != 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("tensor \"", t.name, "\" is q8_0 but its rows are not multiples of 32"));
      }
      break;
    default:
      break;
  }
  engine::GatherRows(engine::MatMulWeight{t.data, t.dtype, t.shape[0], cols},
                     std::vector<int32_t>{static_cast<int32_t>(row)}, out.data());
  return out;
}

absl::StatusOr<std::vector<float>> VectorValues(const WeightTensor& t) {
  WeightTensor as_matrix = t;
  as_matrix.shape = {1, t.num_elements()};
  return MatrixRow(as_matrix, 0);
}

const WeightTensor* FindAny(const engine::WeightSource& weights,
                            std::initializer_list<absl::string_view> names) {
  for (absl::string_view name : names) {
    if (const WeightTensor* t = weights.Find(name)) return t;
  }
  return nullptr;
}

class Fnv1a64 {
 public:
  void Bytes(const void* data, size_t n) {
    const auto* p = static_cast<const uint8_t*>(data);
    for (size_t i = 0; i < n; ++i) {
      hash_ ^= p[i];
      hash_ *= 0x100000001b3ULL;
    }
  }
  void Text(absl::string_view s) { Bytes(s.data(), s.size()); }
  // Values rounded to bf16: the same for f32, bf16 and f16 copies of one checkpoint.
  void Values(absl::Span<const float> values) {
    for (float v : values) {
      const uint16_t b = engine::F32ToBf16(v);
      Bytes(&b, 2);
    }
  }
  uint64_t value() const { return hash_; }

 private:
  uint64_t hash_ = 0xcbf29ce484222325ULL;
};

}  // namespace

absl::string_view JudgeFeatureName(JudgeFeature feature) {
  switch (feature) {
    case JudgeFeature::kTargetLogprob:
      return "target_logprob";
    case JudgeFeature::kTargetEntropy:
      return "target_entropy";
    case JudgeFeature::kDraftLogprob:
      return "draft_logprob";
  }
  return "unknown";
}

absl::StatusOr<JudgeFeature> ParseJudgeFeature(absl::string_view name) {
  for (JudgeFeature f : {JudgeFeature::kTargetLogprob, JudgeFeature::kTargetEntropy,
                         JudgeFeature::kDraftLogprob}) {
    if (JudgeFeatureName(f) == name) return f;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown judge feature \"", name, "\"; expected target_logprob, target_entropy or draft_logprob"));
}

float JudgeHead::Logit(absl::Span<const float> hidden, absl::Span<const float> extras) const {
  // Two interleaved sums keep the dependency chain short; the head is a few thousand FMAs.
  float a = 0, b = 0;
  const size_t n = weight.size();
  size_t i = 0;
  for (; i + 1 < n; i += 2) {
    a += weight[i] * hidden[i];
    b += weight[i + 1] * hidden[i + 1];
  }
  if (i < n) a += weight[i] * hidden[i];
  return LogitFromDot(a + b, extras);
}

float JudgeHead::LogitFromDot(float dot, absl::Span<const float> extras) const {
  float z = bias + dot;
  for (size_t j = 0; j < extra_weight.size(); ++j) z += extra_weight[j] * extras[j];
  return z;
}

float JudgeHead::Probability(absl::Span<const float> hidden, absl::Span<const float> extras) const {
  return Sigmoid(Logit(hidden, extras));
}

float JudgeHead::ProbabilityFromDot(float dot, absl::Span<const float> extras) const {
  return Sigmoid(LogitFromDot(dot, extras));
}

float JudgeHead::Sigmoid(float z) { return 1.0f / (1.0f + std::exp(-z)); }

absl::StatusOr<JudgeHead> LoadJudgeHead(const std::string& path) {
  VERDICT_ASSIGN_OR_RETURN(std::unique_ptr<engine::MappedFile> mapped, engine::MappedFile::Open(path));
  VERDICT_ASSIGN_OR_RETURN(engine::SafetensorsFile file,
                           engine::ParseSafetensorsHeader(mapped->data(), mapped->size(), path));
  VERDICT_ASSIGN_OR_RETURN(std::string format, Metadata(file, "format", path));
  if (format != kJudgeHeadFormat) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": judge head format \"", format,
                                                   "\" is not supported (expected ", kJudgeHeadFormat, ")"));
  }
  VERDICT_ASSIGN_OR_RETURN(std::string hidden_state, Metadata(file, "hidden_state", path));
  if (hidden_state != kHiddenStateDefinition) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": hidden-state definition \"", hidden_state,
                                                   "\" is not supported (expected ",
                                                   kHiddenStateDefinition, ")"));
  }
  JudgeHead head;
  VERDICT_ASSIGN_OR_RETURN(head.weight, ReadF32Vector(file, "weight", path));
  VERDICT_ASSIGN_OR_RETURN(std::vector<float> bias, ReadF32Vector(file, "bias", path));
  if (bias.size() != 1 || head.weight.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": bias must have 1 value and weight at least 1"));
  }
  head.bias = bias[0];

  VERDICT_ASSIGN_OR_RETURN(std::string features_json, Metadata(file, "features", path));
  nlohmann::json features = nlohmann::json::parse(features_json, nullptr, /*allow_exceptions=*/false);
  if (!features.is_array()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": metadata \"features\" is not a JSON list"));
  }
  for (const nlohmann::json& f : features) {
    if (!f.is_string()) return absl::InvalidArgumentError(absl::StrCat(path, ": a feature name is not a string"));
    absl::StatusOr<JudgeFeature> feature = ParseJudgeFeature(f.get<std::string>());
    if (!feature.ok()) return absl::InvalidArgumentError(absl::StrCat(path, ": ", feature.status().message()));
    head.extra_features.push_back(*feature);
  }
  if (!head.extra_features.empty()) {
    VERDICT_ASSIGN_OR_RETURN(head.extra_weight, ReadF32Vector(file, "extra_weight", path));
  }
  if (head.extra_weight.size() != head.extra_features.size()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", head.extra_features.size(),
                                                   " extra features but ", head.extra_weight.size(),
                                                   " extra weights"));
  }
  VERDICT_ASSIGN_OR_RETURN(std::string threshold, Metadata(file, "threshold", path));
  char* end = nullptr;
  head.threshold = std::strtof(threshold.c_str(), &end);
  if (end == threshold.c_str() || *end != '\0' || std::isnan(head.threshold)) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": threshold \"", threshold, "\" is not a number"));
  }
  VERDICT_ASSIGN_OR_RETURN(head.target_fingerprint, Metadata(file, "target_fingerprint", path));
  auto training = file.metadata.find("training");
  if (training != file.metadata.end()) head.training_json = training->second;
  return head;
}

absl::Status SaveJudgeHead(const JudgeHead& head, const std::string& path) {
  if (head.weight.empty() || head.extra_weight.size() != head.extra_features.size()) {
    return absl::InvalidArgumentError("judge head: empty weight or extra weights not matching features");
  }
  nlohmann::json features = nlohmann::json::array();
  for (JudgeFeature f : head.extra_features) features.push_back(std::string(JudgeFeatureName(f)));
  std::map<std::string, std::string> metadata = {
      {"format", std::string(kJudgeHeadFormat)},
      {"hidden_state", std::string(kHiddenStateDefinition)},
      {"features", features.dump()},
      {"threshold", absl::StrFormat("%.9g", head.threshold)},
      {"target_fingerprint", head.target_fingerprint},
      {"target_hidden_size", absl::StrCat(head.hidden_size())},
      {"training", head.training_json},
  };
  auto bytes = [](const std::vector<float>& v) {
    return absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(v.data()), v.size() * sizeof(float));
  };
  const std::vector<float> bias = {head.bias};
  std::vector<engine::TensorToWrite> tensors = {
      {"weight", DType::kF32, {head.hidden_size()}, bytes(head.weight)},
      {"bias", DType::kF32, {1}, bytes(bias)},
  };
  if (!head.extra_weight.empty()) {
    tensors.push_back({"extra_weight", DType::kF32, {static_cast<int64_t>(head.extra_weight.size())},
                       bytes(head.extra_weight)});
  }
  return engine::WriteSafetensors(path, tensors, metadata);
}

absl::StatusOr<std::string> TargetFingerprint(const engine::LlamaConfig& config,
                                              const engine::WeightSource& weights) {
  Fnv1a64 hash;
  hash.Text(absl::StrCat("llama;hidden=", config.hidden_size, ";layers=", config.num_layers,
                         ";heads=", config.num_heads, ";kv_heads=", config.num_kv_heads,
                         ";head_dim=", config.head_dim, ";ffn=", config.intermediate_size,
                         ";vocab=", config.vocab_size, ";rope_theta=", config.rope_theta, ";"));
  const WeightTensor* norm = FindAny(weights, {"model.norm.weight", "output_norm.weight"});
  const WeightTensor* embedding = FindAny(weights, {"model.embed_tokens.weight", "token_embd.weight"});
  if (norm == nullptr || embedding == nullptr) {
    return absl::NotFoundError("the target has no final norm or token embedding to fingerprint");
  }
  VERDICT_ASSIGN_OR_RETURN(std::vector<float> norm_values, VectorValues(*norm));
  hash.Values(norm_values);
  for (int64_t row : {int64_t{0}, embedding->shape.empty() ? 0 : embedding->shape[0] - 1}) {
    VERDICT_ASSIGN_OR_RETURN(std::vector<float> values, MatrixRow(*embedding, row));
    hash.Values(values);
  }
  return absl::StrFormat("llama-v1:%016x", hash.value());
}

absl::Status CheckHeadMatchesTarget(const JudgeHead& head, absl::string_view fingerprint,
                                    int64_t hidden_size) {
  if (head.hidden_size() != hidden_size) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the judge head was trained for a target with hidden size ", head.hidden_size(),
        ", this target has ", hidden_size));
  }
  if (head.target_fingerprint != fingerprint) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the judge head was trained for another target (fingerprint ", head.target_fingerprint,
        ", this target is ", fingerprint, ")"));
  }
  return absl::OkStatus();
}

}  // namespace verdict::judge
