// SPDX-License-Identifier: Apache-2.0
// Small in-memory Llama models for speculative-decoding tests: a random target and drafts that
// agree with it to a chosen degree (the target's weights plus noise), all with sharp enough logits
// that greedy choices are well separated. Test-only; not thread-safe while being built.
#ifndef VERDICT_JUDGE_TESTING_PAIRED_MODELS_H_
#define VERDICT_JUDGE_TESTING_PAIRED_MODELS_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/backend.h"
#include "engine/io/weight_source.h"
#include "engine/model.h"
#include "engine/model_config.h"

namespace verdict::judge::testing {

// A WeightSource over f32 tensors held in memory.
class InMemoryWeights : public engine::WeightSource {
 public:
  void Add(const std::string& name, std::vector<int64_t> shape, std::vector<float> values);
  const engine::WeightTensor* Find(absl::string_view name) const override;
  std::vector<std::string> Names() const override;
  absl::string_view Format() const override { return "safetensors"; }
  std::vector<float>& values(const std::string& name) { return values_.at(name); }

 private:
  std::map<std::string, std::vector<float>> values_;
  std::map<std::string, engine::WeightTensor> tensors_;
};

// vocab, hidden 32, 2 layers, 4 heads (2 KV), MLP 64, context `context`.
engine::LlamaConfig SmallConfig(int64_t vocab_size, int64_t context = 512);

// Random weights for `config` (Hugging Face names, untied LM head) whose logits have a standard
// deviation of about `logit_scale`. A draft made with the same `seed` and `noise` > 0 is the target
// perturbed by relative noise `noise` (0 = identical weights).
std::unique_ptr<InMemoryWeights> MakeWeights(const engine::LlamaConfig& config, uint64_t seed,
                                             float logit_scale, float noise = 0.0f,
                                             uint64_t noise_seed = 0);

// A whole model on `backend` (both must outlive it).
std::unique_ptr<engine::ModelSlice> MakeModel(const engine::LlamaConfig& config,
                                              const engine::WeightSource& weights,
                                              engine::Backend* backend);

}  // namespace verdict::judge::testing

#endif  // VERDICT_JUDGE_TESTING_PAIRED_MODELS_H_
