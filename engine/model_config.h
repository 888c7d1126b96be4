// SPDX-License-Identifier: Apache-2.0
// Architecture of a Llama-family model, independent of the file format it came from.
// Plain data; thread-compatible.
#ifndef VERDICT_ENGINE_MODEL_CONFIG_H_
#define VERDICT_ENGINE_MODEL_CONFIG_H_

#include <cstdint>
#include <string>
#include <vector>

namespace verdict::engine {

// Llama-3.1 style frequency-dependent RoPE scaling (HF rope_scaling with rope_type "llama3").
struct Llama3RopeScaling {
  float factor = 8.0f;
  float low_freq_factor = 1.0f;
  float high_freq_factor = 4.0f;
  int64_t original_max_position_embeddings = 8192;
};

// How rotary embedding pairs dimensions within a head.
enum class RopeStyle : uint8_t {
  kHalfSplit,    // Hugging Face / NeoX: pairs (i, i + d/2). HF safetensors checkpoints.
  kInterleaved,  // GGML "normal" rope: pairs (2i, 2i + 1). GGUF llama checkpoints (Q/K permuted).
};

struct LlamaConfig {
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;  // hidden_size / num_heads unless the config says otherwise
  float rms_norm_eps = 1e-5f;
  float rope_theta = 10000.0f;
  bool has_llama3_rope_scaling = false;
  Llama3RopeScaling llama3_rope_scaling;
  // Linear position interpolation (rope_scaling type "linear"): positions are divided by it.
  float rope_linear_factor = 1.0f;
  RopeStyle rope_style = RopeStyle::kHalfSplit;
  int64_t max_position_embeddings = 2048;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // q/k/v/o biases (some Llama derivatives); loaded if present
  bool mlp_bias = false;
  std::string architecture = "llama";
  std::string torch_dtype;  // as declared by the checkpoint ("bfloat16", ...), informational
  // FP8 checkpoints (config.json quantization_config): the method ("compressed-tensors",
  // "fbgemm_fp8" or "fp8"; empty for none) and, for block-scaled weights, the [rows, cols] of the
  // block each entry of a 2-D `weight_scale(_inv)` covers (Hugging Face's weight_block_size).
  std::string quant_method;
  int64_t fp8_block_rows = 128;
  int64_t fp8_block_cols = 128;

  // Special token ids from the config (-1 when absent). eos may list several.
  int64_t bos_token_id = -1;
  std::vector<int64_t> eos_token_ids;
};

// Generation defaults a checkpoint may carry (HF generation_config.json). Unset fields are < 0.
struct GenerationDefaults {
  float temperature = -1.0f;
  float top_p = -1.0f;
  int64_t top_k = -1;
  bool do_sample = false;
  bool has_do_sample = false;
  std::vector<int64_t> eos_token_ids;
  int64_t bos_token_id = -1;
};

}  // namespace verdict::engine

#endif  // VERDICT_ENGINE_MODEL_CONFIG_H_
