// SPDX-License-Identifier: Apache-2.0
// Builds a LlamaConfig (engine/model_config.h) from a checkpoint's description: Hugging Face
// config.json / generation_config.json text, or a GGUF file's llama.* metadata.
// Pure functions over their inputs; thread-safe.
#ifndef VERDICT_ENGINE_IO_MODEL_CONFIG_LOADER_H_
#define VERDICT_ENGINE_IO_MODEL_CONFIG_LOADER_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/io/gguf.h"
#include "engine/model_config.h"

namespace verdict::engine {

// Parses a Hugging Face config.json of a Llama model (model_type "llama" or architectures
// containing "LlamaForCausalLM"). Reads hidden_size, intermediate_size, num_hidden_layers,
// num_attention_heads, vocab_size (required); num_key_value_heads (default: heads), head_dim
// (default: hidden / heads), rms_norm_eps (default 1e-6, as transformers), rope_theta (default
// 10000), max_position_embeddings (default 2048), tie_word_embeddings (default false),
// attention_bias, mlp_bias, bos_token_id, eos_token_id (int or list), torch_dtype or dtype.
// RoPE: the legacy rope_theta + rope_scaling fields and transformers-5 "rope_parameters"
// ({rope_type, rope_theta, ...}) are both understood; rope types "default", "llama3" and
// "linear" are supported. The result has rope_style kHalfSplit.
// Errors: InvalidArgument (bad JSON, missing or mistyped field, non-positive sizes, heads not
// dividing hidden_size when head_dim is absent, kv heads not dividing heads, bad rope scaling
// parameters; the message names the field); Unimplemented (another model type, rope type or
// hidden_act; the message names it).
absl::StatusOr<LlamaConfig> ParseHfConfig(absl::string_view json_text);

// Parses a Hugging Face generation_config.json: temperature, top_p, top_k, do_sample,
// bos_token_id, eos_token_id (int or list). Absent or null fields stay unset.
// Errors: InvalidArgument (bad JSON, a field of the wrong type).
absl::StatusOr<GenerationDefaults> ParseGenerationConfig(absl::string_view json_text);

// Builds the config of a GGUF llama checkpoint. general.architecture must be "llama".
// Reads llama.{context_length, embedding_length, block_count, feed_forward_length,
// attention.head_count, attention.head_count_kv, attention.key_length,
// attention.layer_norm_rms_epsilon, rope.freq_base, rope.dimension_count, vocab_size,
// rope.scaling.type, rope.scaling.factor}. vocab_size falls back to the length of
// tokenizer.ggml.tokens, then to the rows of token_embd.weight. rope_style is kInterleaved
// (GGUF stores Q/K permuted); tie_word_embeddings is true when there is no output.weight;
// attention_bias / mlp_bias follow the presence of blk.0.attn_q.bias / blk.0.ffn_up.bias.
// bos from tokenizer.ggml.bos_token_id; eos_token_ids lists tokenizer.ggml.eos_token_id, then
// eot_token_id and eom_token_id when present and different. torch_dtype is derived from
// general.file_type ("float32", "float16", "bfloat16", "q8_0", or empty).
// Llama-3.1 rope scaling is not metadata in GGUF: llama.cpp's converter stores it as the tensor
// rope_freqs.weight (f32 [head_dim/2], per-frequency divisors), which the model applies;
// has_llama3_rope_scaling stays false here.
// Errors: InvalidArgument (missing or mistyped key, inconsistent sizes, as ParseHfConfig);
// Unimplemented (another architecture, a rope scaling type other than none/linear, or
// rope.dimension_count != head_dim, i.e. partial rotary).
absl::StatusOr<LlamaConfig> ConfigFromGguf(const GgufFile& gguf);

// Checks the invariants every loader relies on (positive sizes, heads divisible by kv heads,
// head_dim even, rope parameters sane). InvalidArgument naming the field otherwise.
absl::Status ValidateLlamaConfig(const LlamaConfig& config);

}  // namespace verdict::engine

#endif  // VERDICT_ENGINE_IO_MODEL_CONFIG_LOADER_H_
