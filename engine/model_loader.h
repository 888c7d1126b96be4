// SPDX-License-Identifier: Apache-2.0
// Opens a model as users bring it: a Hugging Face directory (config.json, *.safetensors single or
// sharded with an index, tokenizer.json, optional generation_config.json) or a GGUF file (weights,
// architecture and vocabulary in one file). Weights stay memory-mapped.
// The returned LoadedModel is immutable; safe to share between threads for reading.
#ifndef VERDICT_ENGINE_MODEL_LOADER_H_
#define VERDICT_ENGINE_MODEL_LOADER_H_

#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "engine/io/weight_source.h"
#include "engine/model_config.h"
#include "engine/sampler.h"
#include "engine/tokenizer/chat_template.h"
#include "engine/tokenizer/tokenizer.h"

namespace verdict::engine {

struct LoadedModel {
  std::string path;
  std::string format;  // "safetensors" or "gguf"
  LlamaConfig config;
  GenerationDefaults generation;
  std::unique_ptr<WeightSource> weights;
  std::unique_ptr<Tokenizer> tokenizer;  // null when the model ships none
  std::string tokenizer_error;           // why `tokenizer` is null
};

// Errors: kNotFound (path or a required file missing), kInvalidArgument (malformed file, unsupported
// architecture or dtype; the message names the file and the problem).
absl::StatusOr<LoadedModel> LoadModel(const std::string& path);

// Only the tokenizer of a model: `path` a tokenizer.json, a .gguf file (its metadata), or a model
// directory (its tokenizer.json, else its single .gguf file). No weights and no config are read:
// what a coordinator needs, whose layers, vocabulary and context come from the shards.
// Errors: kNotFound (nothing there, or a directory without a tokenizer), kInvalidArgument (a
// malformed file, or a GGUF without a supported tokenizer; the message names the file).
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizerAt(const std::string& path);

// The chat template a model ships: tokenizer_config.json's "chat_template" (a string, or the
// "default" entry of a list of named templates) beside a tokenizer.json or in a model directory,
// or a GGUF file's "tokenizer.chat_template"; with the bos/eos token strings templates use
// (tokenizer_config.json's bos_token/eos_token, else the tokenizer's). A vocabulary in the Llama 3
// style whose files ship no template gets Meta's Llama 3 instruct format. `source` is empty when
// there is none. Errors: kInvalidArgument for a malformed tokenizer_config.json.
struct ChatTemplateSource {
  std::string source;
  std::string origin;  // where it came from (a file, "gguf metadata", "built-in llama3")
  std::string bos_token;
  std::string eos_token;
};
absl::StatusOr<ChatTemplateSource> LoadChatTemplateAt(const std::string& path, const Tokenizer& tokenizer);
// The model's chat format, parsed: its own template, or the file `template_file` when not empty.
// Errors: kFailedPrecondition when there is no template (the message says how to name one),
// those of reading the file, LoadChatTemplateAt and ChatTemplate::Parse.
absl::StatusOr<ChatPromptFormat> LoadChatPromptFormat(const std::string& path, const Tokenizer& tokenizer,
                                                      const std::string& template_file = "");

// The token ids that end generation: the tokenizer's eos ids, the config's and the generation
// config's eos ids, and for chat models the end-of-turn token.
std::vector<int32_t> StopTokenIds(const LoadedModel& model);

// The checkpoint's sampling defaults in the form served requests resolve them with.
spec::SamplingDefaults SamplingDefaultsOf(const GenerationDefaults& defaults);
// The sampling a request gets where it leaves values unset: each value given wins, then the
// checkpoint's generation_config.json when it asks for sampling (do_sample), then greedy
// (spec::ResolveSampling: the same rule served requests follow).
SamplingParams ResolveSampling(const GenerationDefaults& defaults, std::optional<float> temperature,
                               std::optional<int64_t> top_k, std::optional<float> top_p, uint64_t seed);

}  // namespace verdict::engine

#endif  // VERDICT_ENGINE_MODEL_LOADER_H_
