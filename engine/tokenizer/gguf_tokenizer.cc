// SPDX-License-Identifier: Apache-2.0
#include "engine/tokenizer/gguf_tokenizer.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/tokenizer/bpe_tokenizer.h"
#include "engine/tokenizer/spm_tokenizer.h"

namespace verdict::engine {
namespace {

constexpr char kPrefix[] = "tokenizer.ggml.";

std::string Key(absl::string_view name) { return absl::StrCat(kPrefix, name); }

// An optional integer id: -1 if absent.
absl::StatusOr<int32_t> OptionalId(const GgufFile& gguf, absl::string_view name) {
  if (gguf.FindMetadata(Key(name)) == nullptr) return -1;
  VERDICT_ASSIGN_OR_RETURN(const int64_t id, gguf.GetInt(Key(name)));
  if (id < -1 || id > INT32_MAX) {
    return absl::InvalidArgumentError(absl::StrCat(Key(name), " = ", id, " is not a token id"));
  }
  return static_cast<int32_t>(id);
}

absl::StatusOr<bool> OptionalBool(const GgufFile& gguf, absl::string_view name, bool fallback) {
  if (gguf.FindMetadata(Key(name)) == nullptr) return fallback;
  return gguf.GetBool(Key(name));
}

absl::StatusOr<std::vector<int32_t>> TokenTypes(const GgufFile& gguf, size_t n) {
  std::vector<int32_t> types;
  if (gguf.FindMetadata(Key("token_type")) == nullptr) return types;
  VERDICT_ASSIGN_OR_RETURN(std::vector<int64_t> raw, gguf.GetIntArray(Key("token_type")));
  if (raw.size() != n) {
    return absl::InvalidArgumentError(
        absl::StrCat(Key("token_type"), " has ", raw.size(), " entries for ", n, " tokens"));
  }
  types.reserve(n);
  for (int64_t t : raw) types.push_back(static_cast<int32_t>(t));
  return types;
}

absl::Status CheckRange(absl::string_view what, int32_t id, size_t n) {
  if (id >= static_cast<int64_t>(n)) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " ", id, " is out of range for vocabulary size ", n));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadGgufTokenizer(const GgufFile& gguf) {
  if (gguf.FindMetadata(Key("model")) == nullptr) {
    return absl::NotFoundError("the GGUF file has no tokenizer (no tokenizer.ggml.model)");
  }
  VERDICT_ASSIGN_OR_RETURN(const std::string model, gguf.GetString(Key("model")));
  if (gguf.FindMetadata(Key("tokens")) == nullptr) {
    return absl::NotFoundError("the GGUF file has no tokenizer.ggml.tokens");
  }
  VERDICT_ASSIGN_OR_RETURN(std::vector<std::string> tokens, gguf.GetStringArray(Key("tokens")));
  const size_t n = tokens.size();
  VERDICT_ASSIGN_OR_RETURN(std::vector<int32_t> types, TokenTypes(gguf, n));
  VERDICT_ASSIGN_OR_RETURN(const int32_t bos, OptionalId(gguf, "bos_token_id"));
  VERDICT_ASSIGN_OR_RETURN(const int32_t eos, OptionalId(gguf, "eos_token_id"));
  VERDICT_ASSIGN_OR_RETURN(const int32_t unk, OptionalId(gguf, "unknown_token_id"));
  VERDICT_ASSIGN_OR_RETURN(const int32_t eot, OptionalId(gguf, "eot_token_id"));
  VERDICT_ASSIGN_OR_RETURN(const int32_t eom, OptionalId(gguf, "eom_token_id"));
  for (auto [what, id] : {std::pair<const char*, int32_t>{"bos_token_id", bos},
                          {"eos_token_id", eos},
                          {"unknown_token_id", unk},
                          {"eot_token_id", eot},
                          {"eom_token_id", eom}}) {
    VERDICT_RETURN_IF_ERROR(CheckRange(Key(what), id, n));
  }

  if (model == "llama") {
    SpmVocab vocab;
    vocab.tokens = std::move(tokens);
    if (gguf.FindMetadata(Key("scores")) != nullptr) {
      VERDICT_ASSIGN_OR_RETURN(vocab.scores, gguf.GetFloatArray(Key("scores")));
    }
    vocab.token_types = std::move(types);
    vocab.bos_id = bos;
    vocab.eos_id = eos;
    vocab.unk_id = unk;
    VERDICT_ASSIGN_OR_RETURN(vocab.add_bos, OptionalBool(gguf, "add_bos_token", true));
    VERDICT_ASSIGN_OR_RETURN(vocab.add_space_prefix, OptionalBool(gguf, "add_space_prefix", true));
    return CreateSpmTokenizer(std::move(vocab));
  }
  if (model == "gpt2") {
    BpeVocab vocab;
    vocab.tokens = std::move(tokens);
    vocab.token_types = std::move(types);
    if (gguf.FindMetadata(Key("merges")) != nullptr) {
      VERDICT_ASSIGN_OR_RETURN(vocab.merges, gguf.GetStringArray(Key("merges")));
    }
    std::string pre = "default";
    if (gguf.FindMetadata(Key("pre")) != nullptr) {
      VERDICT_ASSIGN_OR_RETURN(pre, gguf.GetString(Key("pre")));
    }
    // The names llama.cpp gives the split rules implemented here (its llama-vocab.cpp).
    static const auto* const kLlama3Names = new absl::flat_hash_set<std::string>(
        {"llama-bpe", "llama3", "llama-v3", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2"});
    static const auto* const kGpt2Names = new absl::flat_hash_set<std::string>(
        {"gpt-2", "default", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es", "jina-v2-de", "a.x-4.0",
         "mellum", "modern-bert", "exaone4"});
    // Single digits first, then GPT-2's split (SmolLM, SmolLM2, SmolLM3).
    static const auto* const kDigitsGpt2Names = new absl::flat_hash_set<std::string>({"smollm", "verdict-digits"});
    bool default_add_bos = false;
    if (kLlama3Names->contains(pre)) {
      vocab.pre_tokenizer = BpePreTokenizerKind::kLlama3;
      default_add_bos = true;  // as llama.cpp
    } else if (kGpt2Names->contains(pre)) {
      vocab.pre_tokenizer = BpePreTokenizerKind::kGpt2;
    } else if (kDigitsGpt2Names->contains(pre)) {
      vocab.pre_tokenizer = BpePreTokenizerKind::kGpt2IndividualDigits;
    } else {
      return absl::UnimplementedError(absl::StrCat(
          "unsupported GGUF pre-tokenizer tokenizer.ggml.pre = \"", pre,
          "\" (supported: the Llama-3 split: llama-bpe, llama3, llama-v3, falcon3, falcon-h1, pixtral, midm-2.0, "
          "lfm2; the GPT-2 split: gpt-2, default, phi-2, ...; single digits then GPT-2: smollm)"));
    }
    VERDICT_ASSIGN_OR_RETURN(vocab.add_bos, OptionalBool(gguf, "add_bos_token", default_add_bos));
    vocab.bos_id = bos;
    for (int32_t id : {eos, eot, eom}) {
      if (id >= 0 &&
          std::find(vocab.eos_ids.begin(), vocab.eos_ids.end(), id) == vocab.eos_ids.end()) {
        vocab.eos_ids.push_back(id);
      }
    }
    return CreateBpeTokenizerFromVocab(vocab);
  }
  return absl::UnimplementedError(
      absl::StrCat("unsupported GGUF tokenizer model tokenizer.ggml.model = \"", model,
                   "\" (supported: llama, gpt2)"));
}

}  // namespace verdict::engine
