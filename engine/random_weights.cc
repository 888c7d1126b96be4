// SPDX-License-Identifier: Apache-2.0
#include "engine/random_weights.h"

#include "engine/ggml_quants.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <new>
#include <random>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace verdict::engine {
namespace {

class RandomWeights final : public WeightSource {
 public:
  const WeightTensor* Find(absl::string_view name) const override {
    auto it = tensors_.find(std::string(name));
    return it == tensors_.end() ? nullptr : &it->second.info;
  }
  std::vector<std::string> Names() const override {
    std::vector<std::string> names;
    for (const auto& [name, t] : tensors_) names.push_back(name);
    return names;
  }
  absl::string_view Format() const override { return "safetensors"; }

  absl::Status Add(const std::string& name, std::vector<int64_t> shape, DType dtype, uint64_t seed) {
    Entry& e = tensors_[name];
    e.info.name = name;
    e.info.dtype = dtype;
    e.info.shape = std::move(shape);
    const int64_t n = e.info.num_elements();
    const int64_t cols = e.info.shape.back();
    auto bytes = DTypeByteSize(dtype, cols);
    if (!bytes.ok()) return bytes.status();
    const int64_t rows = n / cols;
    try {
      e.storage.resize(*bytes * rows);
    } catch (const std::bad_alloc&) {
      return absl::ResourceExhaustedError(absl::StrCat("cannot allocate random tensor ", name));
    }
    e.info.data = e.storage.data();
    e.info.nbytes = e.storage.size();
    const bool is_norm = e.info.shape.size() == 1;
    // Fill rows in parallel: each row has its own generator, so the result is thread-count free.
    const int threads = std::max(1u, std::thread::hardware_concurrency());
    std::vector<std::thread> workers;
    for (int t = 0; t < threads; ++t) {
      workers.emplace_back([&, t] {
        std::vector<float> row(cols);
        for (int64_t r = t; r < rows; r += threads) {
          std::mt19937 rng(static_cast<uint32_t>(seed * 1000003u + r));
          std::normal_distribution<float> normal(0.0f, 0.02f);
          for (float& v : row) v = is_norm ? 1.0f : normal(rng);
          uint8_t* dst = e.storage.data() + r * *bytes;
          Store(row, dtype, dst);
        }
      });
    }
    for (auto& w : workers) w.join();
    return absl::OkStatus();
  }

 private:
  static void Store(const std::vector<float>& row, DType dtype, uint8_t* dst) {
    switch (dtype) {
      case DType::kF32:
        std::memcpy(dst, row.data(), row.size() * 4);
        break;
      case DType::kBF16:
      case DType::kF16: {
        auto* out = reinterpret_cast<uint16_t*>(dst);
        for (size_t i = 0; i < row.size(); ++i) {
          out[i] = dtype == DType::kBF16 ? F32ToBf16(row[i]) : F32ToF16(row[i]);
        }
        break;
      }
      case DType::kQ8_0: {
        auto* blocks = reinterpret_cast<BlockQ8_0*>(dst);
        for (size_t b = 0; b < row.size() / kQ8_0BlockSize; ++b) {
          float amax = 0;
          for (int i = 0; i < kQ8_0BlockSize; ++i) amax = std::max(amax, std::fabs(row[b * 32 + i]));
          const float d = amax / 127.0f;
          const float inv = d > 0 ? 1.0f / d : 0.0f;
          blocks[b].scale_f16 = F32ToF16(d);
          for (int i = 0; i < kQ8_0BlockSize; ++i) {
            blocks[b].qs[i] = static_cast<int8_t>(std::lround(row[b * 32 + i] * inv));
          }
        }
        break;
      }
      case DType::kF8E4M3Block:
        QuantizeFp8BlockRow(row.data(), static_cast<int64_t>(row.size()), dst);
        break;
      case DType::kF8E4M3:
      case DType::kI32:
      case DType::kQ4_0:  // refused by CreateRandomWeights
      case DType::kQ4_1:
      case DType::kQ5_0:
      case DType::kQ5_1:
      case DType::kQ4_K:
      case DType::kQ5_K:
      case DType::kQ6_K:
        break;
    }
  }

  struct Entry {
    WeightTensor info;
    std::vector<uint8_t> storage;
  };
  std::map<std::string, Entry> tensors_;
};

LlamaConfig Llama(int64_t hidden, int64_t inter, int64_t layers, int64_t heads, int64_t kv_heads,
                  int64_t vocab, bool tied) {
  LlamaConfig c;
  c.vocab_size = vocab;
  c.hidden_size = hidden;
  c.intermediate_size = inter;
  c.num_layers = layers;
  c.num_heads = heads;
  c.num_kv_heads = kv_heads;
  c.head_dim = hidden / heads;
  c.rms_norm_eps = 1e-5f;
  c.rope_theta = 500000.0f;
  c.has_llama3_rope_scaling = true;
  c.llama3_rope_scaling = {32.0f, 1.0f, 4.0f, 8192};
  c.max_position_embeddings = 131072;
  c.tie_word_embeddings = tied;
  c.bos_token_id = 128000;
  c.eos_token_ids = {128001};
  return c;
}

}  // namespace

absl::StatusOr<LlamaConfig> PresetConfig(const std::string& name) {
  if (name == "llama-3.2-1b") return Llama(2048, 8192, 16, 32, 8, 128256, true);
  if (name == "llama-3.2-3b") return Llama(3072, 8192, 28, 24, 8, 128256, true);
  if (name == "llama-3.1-8b") {
    LlamaConfig c = Llama(4096, 14336, 32, 32, 8, 128256, false);
    c.llama3_rope_scaling.factor = 8.0f;
    return c;
  }
  if (name == "llama-3.1-70b") {
    LlamaConfig c = Llama(8192, 28672, 80, 64, 8, 128256, false);
    c.llama3_rope_scaling.factor = 8.0f;
    return c;
  }
  if (name == "tiny") {
    LlamaConfig c = Llama(256, 768, 4, 8, 4, 4096, false);
    c.max_position_embeddings = 4096;
    return c;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown model preset '", name, "'; known: ",
      absl::StrJoin({"llama-3.2-1b", "llama-3.2-3b", "llama-3.1-8b", "llama-3.1-70b", "tiny"}, ", ")));
}

absl::StatusOr<std::unique_ptr<WeightSource>> CreateRandomWeights(const LlamaConfig& c, DType dtype,
                                                                  uint64_t seed) {
  if (IsGgmlBlockQuant(dtype)) {
    return absl::InvalidArgumentError(absl::StrCat("random weights cannot be made in ", DTypeName(dtype),
                                                   " (no quantizer); use f32, f16, bf16, q8_0 or fp8"));
  }
  auto w = std::make_unique<RandomWeights>();
  uint64_t s = seed;
  const int64_t q_dim = c.num_heads * c.head_dim;
  const int64_t kv_dim = c.num_kv_heads * c.head_dim;
  auto add = [&](const std::string& name, std::vector<int64_t> shape, DType t) {
    return w->Add(name, std::move(shape), t, ++s);
  };
  absl::Status st = add("model.embed_tokens.weight", {c.vocab_size, c.hidden_size}, dtype);
  for (int64_t i = 0; st.ok() && i < c.num_layers; ++i) {
    const std::string p = absl::StrCat("model.layers.", i, ".");
    for (auto [name, shape, t] : std::vector<std::tuple<std::string, std::vector<int64_t>, DType>>{
             {"input_layernorm.weight", {c.hidden_size}, DType::kF32},
             {"self_attn.q_proj.weight", {q_dim, c.hidden_size}, dtype},
             {"self_attn.k_proj.weight", {kv_dim, c.hidden_size}, dtype},
             {"self_attn.v_proj.weight", {kv_dim, c.hidden_size}, dtype},
             {"self_attn.o_proj.weight", {c.hidden_size, q_dim}, dtype},
             {"post_attention_layernorm.weight", {c.hidden_size}, DType::kF32},
             {"mlp.gate_proj.weight", {c.intermediate_size, c.hidden_size}, dtype},
             {"mlp.up_proj.weight", {c.intermediate_size, c.hidden_size}, dtype},
             {"mlp.down_proj.weight", {c.hidden_size, c.intermediate_size}, dtype}}) {
      st = add(p + name, shape, t);
      if (!st.ok()) break;
    }
  }
  if (st.ok()) st = add("model.norm.weight", {c.hidden_size}, DType::kF32);
  if (st.ok() && !c.tie_word_embeddings) st = add("lm_head.weight", {c.vocab_size, c.hidden_size}, dtype);
  if (!st.ok()) return st;
  return std::unique_ptr<WeightSource>(std::move(w));
}

}  // namespace verdict::engine
