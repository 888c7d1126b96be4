// SPDX-License-Identifier: Apache-2.0
#include "judge/testing/paired_models.h"

#include <cmath>
#include <random>

#include "absl/strings/str_cat.h"
#include "common/check.h"

namespace verdict::judge::testing {

void InMemoryWeights::Add(const std::string& name, std::vector<int64_t> shape, std::vector<float> values) {
  values_[name] = std::move(values);
  engine::WeightTensor& t = tensors_[name];
  t.name = name;
  t.dtype = engine::DType::kF32;
  t.shape = std::move(shape);
  t.data = reinterpret_cast<const uint8_t*>(values_[name].data());
  t.nbytes = values_[name].size() * sizeof(float);
}

const engine::WeightTensor* InMemoryWeights::Find(absl::string_view name) const {
  auto it = tensors_.find(std::string(name));
  return it == tensors_.end() ? nullptr : &it->second;
}

std::vector<std::string> InMemoryWeights::Names() const {
  std::vector<std::string> names;
  for (const auto& [name, t] : tensors_) names.push_back(name);
  return names;
}

engine::LlamaConfig SmallConfig(int64_t vocab_size, int64_t context) {
  engine::LlamaConfig c;
  c.vocab_size = vocab_size;
  c.hidden_size = 32;
  c.intermediate_size = 64;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 8;
  c.max_position_embeddings = context;
  c.tie_word_embeddings = false;
  return c;
}

std::unique_ptr<InMemoryWeights> MakeWeights(const engine::LlamaConfig& c, uint64_t seed,
                                             float logit_scale, float noise, uint64_t noise_seed) {
  auto weights = std::make_unique<InMemoryWeights>();
  std::mt19937_64 rng(seed);
  std::mt19937_64 noise_rng(noise_seed * 7919 + 17);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  auto tensor = [&](const std::string& name, int64_t rows, int64_t cols, float stddev) {
    std::vector<float> v(rows * cols);
    for (float& x : v) x = stddev * normal(rng);
    if (noise > 0) {
      for (float& x : v) x += noise * stddev * normal(noise_rng);
    }
    weights->Add(name, {rows, cols}, std::move(v));
  };
  auto ones = [&](const std::string& name, int64_t n) { weights->Add(name, {n}, std::vector<float>(n, 1.0f)); };
  const int64_t h = c.hidden_size, q = c.num_heads * c.head_dim, kv = c.num_kv_heads * c.head_dim;
  const float in_std = 1.0f / std::sqrt(static_cast<float>(h));
  tensor("model.embed_tokens.weight", c.vocab_size, h, 1.0f);
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const std::string p = absl::StrCat("model.layers.", l, ".");
    ones(p + "input_layernorm.weight", h);
    ones(p + "post_attention_layernorm.weight", h);
    tensor(p + "self_attn.q_proj.weight", q, h, in_std);
    tensor(p + "self_attn.k_proj.weight", kv, h, in_std);
    tensor(p + "self_attn.v_proj.weight", kv, h, in_std);
    tensor(p + "self_attn.o_proj.weight", h, q, 1.0f / std::sqrt(static_cast<float>(q)));
    tensor(p + "mlp.gate_proj.weight", c.intermediate_size, h, in_std);
    tensor(p + "mlp.up_proj.weight", c.intermediate_size, h, in_std);
    tensor(p + "mlp.down_proj.weight", h, c.intermediate_size,
           1.0f / std::sqrt(static_cast<float>(c.intermediate_size)));
  }
  ones("model.norm.weight", h);
  // Normed hidden states have unit RMS, so LM-head rows of std s/sqrt(h) give logits of std ~s.
  tensor("lm_head.weight", c.vocab_size, h, logit_scale * in_std);
  return weights;
}

std::unique_ptr<engine::ModelSlice> MakeModel(const engine::LlamaConfig& config,
                                              const engine::WeightSource& weights,
                                              engine::Backend* backend) {
  auto model = engine::ModelSlice::Create(config, weights, engine::SliceRange{}, backend);
  VERDICT_CHECK_MSG(model.ok(), std::string(model.status().message()).c_str());
  return std::move(*model);
}

}  // namespace verdict::judge::testing
