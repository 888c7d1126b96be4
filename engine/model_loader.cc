// SPDX-License-Identifier: Apache-2.0
#include "engine/model_loader.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/io/gguf.h"
#include "engine/io/model_config_loader.h"
#include "engine/io/safetensors.h"
#include "engine/tokenizer/chat_template.h"
#include "engine/tokenizer/gguf_tokenizer.h"
#include "engine/tokenizer/hf_tokenizer.h"
#include "nlohmann/json.hpp"

namespace verdict::engine {
namespace {

namespace fs = std::filesystem;

absl::StatusOr<std::string> ReadTextFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path.string()));
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// The one .gguf file of directory `dir`, or kNotFound "<dir> has <what_else_missing> and no .gguf
// file" / "several .gguf files; name one".
absl::StatusOr<fs::path> SingleGgufIn(const fs::path& dir, absl::string_view what_else_missing) {
  std::error_code ec;
  std::vector<fs::path> ggufs;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (entry.path().extension() == ".gguf") ggufs.push_back(entry.path());
  }
  if (ggufs.size() == 1) return ggufs[0];
  return absl::NotFoundError(absl::StrCat(dir.string(), " has ", what_else_missing, " and ",
                                          ggufs.empty() ? "no .gguf file" : "several .gguf files; name one"));
}

absl::Status Annotate(const absl::Status& status, const fs::path& file) {
  if (status.ok()) return status;
  return absl::Status(status.code(), absl::StrCat(file.string(), ": ", status.message()));
}

absl::StatusOr<LoadedModel> LoadHfDirectory(const fs::path& dir) {
  LoadedModel model;
  model.path = dir.string();
  model.format = "safetensors";
  const fs::path config_path = dir / "config.json";
  VERDICT_ASSIGN_OR_RETURN(std::string config_text, ReadTextFile(config_path));
  auto config = ParseHfConfig(config_text);
  if (!config.ok()) return Annotate(config.status(), config_path);
  model.config = *std::move(config);

  const fs::path generation_path = dir / "generation_config.json";
  if (fs::exists(generation_path)) {
    VERDICT_ASSIGN_OR_RETURN(std::string text, ReadTextFile(generation_path));
    auto generation = ParseGenerationConfig(text);
    if (!generation.ok()) return Annotate(generation.status(), generation_path);
    model.generation = *std::move(generation);
  }
  VERDICT_ASSIGN_OR_RETURN(model.weights, OpenSafetensors(dir.string()));

  const fs::path tokenizer_path = dir / "tokenizer.json";
  if (fs::exists(tokenizer_path)) {
    auto tokenizer = LoadHfTokenizer(tokenizer_path.string());
    if (!tokenizer.ok()) return Annotate(tokenizer.status(), tokenizer_path);
    model.tokenizer = *std::move(tokenizer);
  } else {
    model.tokenizer_error = absl::StrCat("no tokenizer.json in ", dir.string());
  }
  return model;
}

absl::StatusOr<LoadedModel> LoadGgufFile(const fs::path& file) {
  LoadedModel model;
  model.path = file.string();
  model.format = "gguf";
  auto gguf = GgufFile::Open(file.string());
  if (!gguf.ok()) return Annotate(gguf.status(), file);
  auto config = ConfigFromGguf(**gguf);
  if (!config.ok()) return Annotate(config.status(), file);
  model.config = *std::move(config);
  auto tokenizer = LoadGgufTokenizer(**gguf);
  if (tokenizer.ok()) {
    model.tokenizer = *std::move(tokenizer);
  } else {
    model.tokenizer_error = std::string(tokenizer.status().message());
  }
  model.weights = *std::move(gguf);
  return model;
}

}  // namespace

absl::StatusOr<LoadedModel> LoadModel(const std::string& path) {
  const fs::path p(path);
  std::error_code ec;
  if (!fs::exists(p, ec)) return absl::NotFoundError(absl::StrCat("no such model path: ", path));
  if (fs::is_directory(p, ec)) {
    // A directory holding a single GGUF file is accepted too.
    if (!fs::exists(p / "config.json")) {
      VERDICT_ASSIGN_OR_RETURN(const fs::path gguf, SingleGgufIn(p, "no config.json (a Hugging Face model directory)"));
      return LoadGgufFile(gguf);
    }
    return LoadHfDirectory(p);
  }
  if (p.extension() == ".gguf") return LoadGgufFile(p);
  if (p.extension() == ".safetensors" || p.filename() == "config.json") {
    return LoadHfDirectory(p.parent_path());
  }
  return absl::InvalidArgumentError(absl::StrCat(
      path, " is neither a Hugging Face model directory nor a .gguf file"));
}

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizerAt(const std::string& path) {
  fs::path p(path);
  std::error_code ec;
  if (!fs::exists(p, ec)) return absl::NotFoundError(absl::StrCat("no such tokenizer path: ", path));
  if (fs::is_directory(p, ec)) {
    if (fs::exists(p / "tokenizer.json", ec)) {
      p = p / "tokenizer.json";
    } else {
      VERDICT_ASSIGN_OR_RETURN(p, SingleGgufIn(p, "no tokenizer.json"));
    }
  }
  if (p.extension() == ".gguf") {
    auto gguf = GgufFile::Open(p.string());
    if (!gguf.ok()) return Annotate(gguf.status(), p);
    auto tokenizer = LoadGgufTokenizer(**gguf);
    if (!tokenizer.ok()) return Annotate(tokenizer.status(), p);
    return tokenizer;
  }
  if (p.extension() == ".json") {
    auto tokenizer = LoadHfTokenizer(p.string());
    if (!tokenizer.ok()) return Annotate(tokenizer.status(), p);
    return tokenizer;
  }
  return absl::InvalidArgumentError(
      absl::StrCat(path, " is neither a tokenizer.json, a .gguf file nor a model directory"));
}

absl::StatusOr<ChatTemplateSource> LoadChatTemplateAt(const std::string& path, const Tokenizer& tokenizer) {
  ChatTemplateSource out;
  auto token_text = [&tokenizer](int32_t id) {
    if (id < 0) return std::string();
    absl::StatusOr<std::string> text = tokenizer.TokenBytes(id);
    return text.ok() ? *text : std::string();
  };
  out.bos_token = token_text(tokenizer.bos_id());
  const std::vector<int32_t> eos = tokenizer.eos_ids();
  out.eos_token = eos.empty() ? std::string() : token_text(eos[0]);
  fs::path p(path);
  std::error_code ec;
  if (!fs::is_directory(p, ec) && p.extension() == ".gguf") {
    auto gguf = GgufFile::Open(p.string());
    if (!gguf.ok()) return Annotate(gguf.status(), p);
    absl::StatusOr<std::string> source = (*gguf)->GetString("tokenizer.chat_template");
    if (source.ok()) {
      out.source = *std::move(source);
      out.origin = absl::StrCat(p.string(), " (tokenizer.chat_template)");
    }
  } else {
    const fs::path dir = fs::is_directory(p, ec) ? p : p.parent_path();
    const fs::path config_path = dir / "tokenizer_config.json";
    if (fs::exists(config_path, ec)) {
      VERDICT_ASSIGN_OR_RETURN(std::string text, ReadTextFile(config_path));
      const nlohmann::json config = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
      if (config.is_discarded() || !config.is_object()) {
        return absl::InvalidArgumentError(absl::StrCat(config_path.string(), " is not a JSON object"));
      }
      auto token_field = [&config](const char* name) -> std::optional<std::string> {
        auto it = config.find(name);
        if (it == config.end()) return std::nullopt;
        if (it->is_string()) return it->get<std::string>();
        if (it->is_object() && it->contains("content") && (*it)["content"].is_string()) {
          return (*it)["content"].get<std::string>();
        }
        return std::nullopt;
      };
      if (auto bos = token_field("bos_token")) out.bos_token = *bos;
      if (auto eos = token_field("eos_token")) out.eos_token = *eos;
      auto it = config.find("chat_template");
      if (it != config.end() && it->is_string()) {
        out.source = it->get<std::string>();
      } else if (it != config.end() && it->is_array()) {
        for (const nlohmann::json& named : *it) {
          if (named.is_object() && named.value("name", "") == "default" && named.contains("template") &&
              named["template"].is_string()) {
            out.source = named["template"].get<std::string>();
          }
        }
      }
      if (!out.source.empty()) out.origin = config_path.string();
    }
  }
  if (out.source.empty() && tokenizer.TokenToId("<|start_header_id|>").has_value() &&
      tokenizer.TokenToId("<|eot_id|>").has_value()) {
    out.source = std::string(BuiltinLlama3ChatTemplate());
    out.origin = "built-in llama3";
  }
  return out;
}

absl::StatusOr<ChatPromptFormat> LoadChatPromptFormat(const std::string& path, const Tokenizer& tokenizer,
                                                      const std::string& template_file) {
  VERDICT_ASSIGN_OR_RETURN(ChatTemplateSource source, LoadChatTemplateAt(path, tokenizer));
  if (!template_file.empty()) {
    VERDICT_ASSIGN_OR_RETURN(source.source, ReadTextFile(template_file));
    source.origin = template_file;
  }
  if (source.source.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        path, " ships no chat template (tokenizer_config.json \"chat_template\" or GGUF "
        "tokenizer.chat_template); name a Jinja template file"));
  }
  absl::StatusOr<ChatTemplate> parsed = ChatTemplate::Parse(source.source);
  if (!parsed.ok()) {
    return absl::Status(parsed.status().code(), absl::StrCat(source.origin, ": ", parsed.status().message()));
  }
  return ChatPromptFormat{*std::move(parsed), source.bos_token, source.eos_token,
                          std::make_shared<const SpecialTokenTexts>(SpecialTokenTexts::Of(tokenizer))};
}

std::vector<int32_t> StopTokenIds(const LoadedModel& model) {
  std::vector<int32_t> ids;
  auto add = [&](int64_t id) {
    if (id >= 0 && id < model.config.vocab_size &&
        std::find(ids.begin(), ids.end(), id) == ids.end()) {
      ids.push_back(static_cast<int32_t>(id));
    }
  };
  for (int64_t id : model.config.eos_token_ids) add(id);
  for (int64_t id : model.generation.eos_token_ids) add(id);
  if (model.tokenizer != nullptr) {
    for (int32_t id : model.tokenizer->eos_ids()) add(id);
    for (const char* name : {"<|eot_id|>", "<|eom_id|>"}) {
      if (auto id = model.tokenizer->TokenToId(name)) add(*id);
    }
  }
  return ids;
}

spec::SamplingDefaults SamplingDefaultsOf(const GenerationDefaults& defaults) {
  return spec::SamplingDefaults{defaults.has_do_sample && defaults.do_sample, defaults.temperature,
                                defaults.top_k, defaults.top_p};
}

SamplingParams ResolveSampling(const GenerationDefaults& defaults, std::optional<float> temperature,
                               std::optional<int64_t> top_k, std::optional<float> top_p, uint64_t seed) {
  return spec::ResolveSampling(SamplingDefaultsOf(defaults), temperature, top_k, top_p, seed);
}

}  // namespace verdict::engine
