// SPDX-License-Identifier: Apache-2.0
// verdict inspect: architecture, parameter count, dtypes and memory needs of a model.
#include <cstdio>
#include <map>
#include <memory>
#include <string>

#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "engine/model_loader.h"
#include "nlohmann/json.hpp"
#include "services/cli/cli_util.h"
#include "services/cli/commands.h"

namespace verdict::cli {
namespace {

struct InspectFlags {
  std::string model;
  bool json = false;
};

std::string Bytes(double b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024 && u < 4) {
    b /= 1024;
    ++u;
  }
  return absl::StrFormat("%.2f %s", b, units[u]);
}

absl::Status RunInspect(const InspectFlags& flags) {
  VERDICT_ASSIGN_OR_RETURN(engine::LoadedModel loaded, engine::LoadModel(flags.model));
  const engine::LlamaConfig& c = loaded.config;
  int64_t params = 0;
  size_t bytes = 0;
  std::map<std::string, std::pair<int64_t, int64_t>> by_dtype;  // tensors, params
  for (const std::string& name : loaded.weights->Names()) {
    const engine::WeightTensor* t = loaded.weights->Find(name);
    params += t->num_elements();
    bytes += t->nbytes;
    auto& entry = by_dtype[std::string(engine::DTypeName(t->dtype))];
    entry.first += 1;
    entry.second += t->num_elements();
  }
  // KV cache: keys and values, f32 on the CPU backend.
  const int64_t kv_per_token = 2 * c.num_layers * c.num_kv_heads * c.head_dim * 4;
  nlohmann::json j;
  j["path"] = loaded.path;
  j["format"] = loaded.format;
  j["architecture"] = c.architecture;
  j["vocab_size"] = c.vocab_size;
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["num_layers"] = c.num_layers;
  j["num_heads"] = c.num_heads;
  j["num_kv_heads"] = c.num_kv_heads;
  j["head_dim"] = c.head_dim;
  j["rms_norm_eps"] = c.rms_norm_eps;
  j["rope_theta"] = c.rope_theta;
  j["rope_style"] = c.rope_style == engine::RopeStyle::kInterleaved ? "interleaved" : "half-split";
  if (c.has_llama3_rope_scaling) {
    j["rope_scaling"] = {{"rope_type", "llama3"},
                         {"factor", c.llama3_rope_scaling.factor},
                         {"low_freq_factor", c.llama3_rope_scaling.low_freq_factor},
                         {"high_freq_factor", c.llama3_rope_scaling.high_freq_factor},
                         {"original_max_position_embeddings",
                          c.llama3_rope_scaling.original_max_position_embeddings}};
  }
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  if (!c.quant_method.empty()) j["quantization"] = c.quant_method;
  j["parameters"] = params;
  j["weight_bytes"] = bytes;
  for (const auto& [dtype, counts] : by_dtype) {
    j["dtypes"][dtype] = {{"tensors", counts.first}, {"parameters", counts.second}};
  }
  j["kv_cache_bytes_per_token"] = kv_per_token;
  j["kv_cache_bytes_full_context"] = kv_per_token * c.max_position_embeddings;
  j["tokenizer"] = loaded.tokenizer ? nlohmann::json(loaded.tokenizer->vocab_size())
                                    : nlohmann::json(loaded.tokenizer_error);
  if (flags.json) {
    std::printf("%s\n", j.dump(2).c_str());
    return absl::OkStatus();
  }
  std::printf("model:        %s (%s)\n", loaded.path.c_str(), loaded.format.c_str());
  std::printf("architecture: %s, %lld layers, hidden %lld, intermediate %lld, vocab %lld\n",
              c.architecture.c_str(), (long long)c.num_layers, (long long)c.hidden_size,
              (long long)c.intermediate_size, (long long)c.vocab_size);
  std::printf("attention:    %lld heads, %lld kv heads (%s), head_dim %lld\n", (long long)c.num_heads,
              (long long)c.num_kv_heads, c.num_heads == c.num_kv_heads ? "MHA" : "GQA",
              (long long)c.head_dim);
  std::printf("rope:         theta %g, %s pairs%s\n", c.rope_theta,
              c.rope_style == engine::RopeStyle::kInterleaved ? "interleaved" : "half-split",
              c.has_llama3_rope_scaling
                  ? absl::StrFormat(", llama3 scaling x%g (original context %lld)",
                                    c.llama3_rope_scaling.factor,
                                    (long long)c.llama3_rope_scaling.original_max_position_embeddings)
                        .c_str()
                  : "");
  std::printf("context:      %lld positions; embeddings %s\n", (long long)c.max_position_embeddings,
              c.tie_word_embeddings ? "tied" : "untied");
  if (!c.quant_method.empty()) {
    std::printf("quantization: FP8 E4M3 weights (%s); activations are not quantized\n",
                c.quant_method.c_str());
  }
  std::printf("parameters:   %lld (%.3f B)\n", (long long)params, params / 1e9);
  for (const auto& [dtype, counts] : by_dtype) {
    std::printf("  %-11s %lld tensors, %lld parameters\n", dtype.c_str(), (long long)counts.first,
                (long long)counts.second);
  }
  std::printf("memory:       weights %s (memory-mapped); KV cache %s per token, %s at full context (f32; "
              "half with --kv-cache f16 or bf16)\n",
              Bytes(bytes).c_str(), Bytes(kv_per_token).c_str(),
              Bytes(static_cast<double>(kv_per_token) * c.max_position_embeddings).c_str());
  std::printf("tokenizer:    %s\n",
              loaded.tokenizer ? absl::StrFormat("%d tokens", loaded.tokenizer->vocab_size()).c_str()
                               : loaded.tokenizer_error.c_str());
  return absl::OkStatus();
}

}  // namespace

void AddInspectCommand(CLI::App& app, int* exit_code) {
  auto flags = std::make_shared<InspectFlags>();
  CLI::App* cmd = app.add_subcommand("inspect", "Print a model's architecture, size and memory needs");
  cmd->add_option("--model", flags->model, "Hugging Face model directory or .gguf file")->required();
  cmd->add_flag("--json", flags->json, "Print JSON");
  cmd->callback([flags, exit_code] {
    *exit_code = ExitCode(RunInspect(*flags));
  });
}

}  // namespace verdict::cli
