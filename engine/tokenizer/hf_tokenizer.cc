// SPDX-License-Identifier: Apache-2.0
#include "engine/tokenizer/hf_tokenizer.h"

#include <fstream>
#include <sstream>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/tokenizer/bpe_tokenizer.h"
#include "nlohmann/json.hpp"

namespace verdict::engine {
namespace {

using Json = nlohmann::json;

absl::Status Malformed(absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("malformed tokenizer.json: ", what));
}

std::string TypeOf(const Json& j) {
  auto it = j.find("type");
  if (it != j.end() && it->is_string()) return it->get<std::string>();
  return "<no type>";
}

// Optional boolean field: `fallback` if absent or null.
absl::StatusOr<bool> GetBool(const Json& obj, const char* key, bool fallback) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) return Malformed(absl::StrCat("\"", key, "\" is not a boolean"));
  return it->get<bool>();
}

absl::StatusOr<std::string> GetString(const Json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_string()) {
    return Malformed(absl::StrCat("\"", key, "\" is missing or not a string"));
  }
  return it->get<std::string>();
}

absl::Status AddNormalizer(const Json& n, std::vector<NormalizerStep>* out) {
  if (n.is_null()) return absl::OkStatus();
  if (!n.is_object()) return Malformed("normalizer is not an object");
  const std::string type = TypeOf(n);
  if (type == "Sequence") {
    auto list = n.find("normalizers");
    if (list == n.end() || !list->is_array()) {
      return Malformed("Sequence normalizer without \"normalizers\" array");
    }
    for (const Json& child : *list) VERDICT_RETURN_IF_ERROR(AddNormalizer(child, out));
    return absl::OkStatus();
  }
  if (type == "Prepend") {
    NormalizerStep step;
    step.kind = NormalizerStep::Kind::kPrepend;
    VERDICT_ASSIGN_OR_RETURN(step.content, GetString(n, "prepend"));
    out->push_back(std::move(step));
    return absl::OkStatus();
  }
  if (type == "Replace") {
    auto pattern = n.find("pattern");
    if (pattern == n.end() || !pattern->is_object()) return Malformed("Replace without pattern");
    auto literal = pattern->find("String");
    if (literal == pattern->end() || !literal->is_string()) {
      return absl::UnimplementedError(
          "unsupported tokenizer.json normalizer: Replace with a regex pattern");
    }
    NormalizerStep step;
    step.kind = NormalizerStep::Kind::kReplace;
    step.pattern = literal->get<std::string>();
    if (step.pattern.empty()) return Malformed("Replace with an empty pattern");
    VERDICT_ASSIGN_OR_RETURN(step.content, GetString(n, "content"));
    out->push_back(std::move(step));
    return absl::OkStatus();
  }
  return absl::UnimplementedError(
      absl::StrCat("unsupported tokenizer.json normalizer \"", type, "\""));
}

// The replacement (must be "▁") and prepend scheme of a Metaspace pre-tokenizer or decoder.
absl::StatusOr<MetaspacePrepend> ParseMetaspace(const Json& m) {
  auto replacement = m.find("replacement");
  if (replacement != m.end() &&
      !(replacement->is_string() && replacement->get<std::string>() == "\xE2\x96\x81")) {
    return absl::UnimplementedError(
        "unsupported tokenizer.json Metaspace with a replacement other than \"▁\"");
  }
  if (auto scheme = m.find("prepend_scheme"); scheme != m.end() && !scheme->is_null()) {
    if (!scheme->is_string()) return Malformed("Metaspace prepend_scheme is not a string");
    const std::string s = scheme->get<std::string>();
    if (s == "always") return MetaspacePrepend::kAlways;
    if (s == "first") return MetaspacePrepend::kFirst;
    if (s == "never") return MetaspacePrepend::kNever;
    return Malformed(absl::StrCat("unknown Metaspace prepend_scheme \"", s, "\""));
  }
  // Older files: add_prefix_space.
  VERDICT_ASSIGN_OR_RETURN(const bool add_prefix_space, GetBool(m, "add_prefix_space", true));
  return add_prefix_space ? MetaspacePrepend::kAlways : MetaspacePrepend::kNever;
}

// Appends the steps of one pre-tokenizer; *byte_level_seen is set by a ByteLevel step, which
// must come last.
absl::Status AddPreTokenizer(const Json& p, PreTokenizer* out, bool* byte_level_seen) {
  if (!p.is_object()) return Malformed("pre_tokenizer is not an object");
  const std::string type = TypeOf(p);
  if (*byte_level_seen) {
    return absl::UnimplementedError(
        absl::StrCat("unsupported tokenizer.json pre_tokenizer: \"", type, "\" after ByteLevel"));
  }
  if (type == "Sequence") {
    auto list = p.find("pretokenizers");
    if (list == p.end() || !list->is_array()) {
      return Malformed("Sequence pre_tokenizer without \"pretokenizers\" array");
    }
    for (const Json& child : *list) {
      VERDICT_RETURN_IF_ERROR(AddPreTokenizer(child, out, byte_level_seen));
    }
    return absl::OkStatus();
  }
  if (type == "ByteLevel") {
    VERDICT_ASSIGN_OR_RETURN(const bool add_prefix_space, GetBool(p, "add_prefix_space", true));
    VERDICT_ASSIGN_OR_RETURN(const bool use_regex, GetBool(p, "use_regex", true));
    out->AddByteLevel(add_prefix_space, use_regex);
    *byte_level_seen = true;
    return absl::OkStatus();
  }
  if (type == "Metaspace") {
    VERDICT_ASSIGN_OR_RETURN(const MetaspacePrepend prepend, ParseMetaspace(p));
    VERDICT_ASSIGN_OR_RETURN(const bool split, GetBool(p, "split", true));
    out->AddMetaspace("\xE2\x96\x81", prepend, split);
    return absl::OkStatus();
  }
  if (type == "Digits") {
    VERDICT_ASSIGN_OR_RETURN(const bool individual, GetBool(p, "individual_digits", false));
    out->AddDigits(individual);
    return absl::OkStatus();
  }
  if (type == "Split") {
    auto pattern = p.find("pattern");
    if (pattern == p.end() || !pattern->is_object()) return Malformed("Split without \"pattern\"");
    VERDICT_ASSIGN_OR_RETURN(const std::string behavior_name, GetString(p, "behavior"));
    VERDICT_ASSIGN_OR_RETURN(const SplitBehavior behavior, ParseSplitBehavior(behavior_name));
    VERDICT_ASSIGN_OR_RETURN(const bool invert, GetBool(p, "invert", false));
    if (auto regex = pattern->find("Regex"); regex != pattern->end() && regex->is_string()) {
      VERDICT_ASSIGN_OR_RETURN(const PreTokenizerRegex r,
                               ParsePreTokenizerRegex(regex->get<std::string>()));
      out->AddRegexSplit(r, behavior, invert);
      return absl::OkStatus();
    }
    if (auto literal = pattern->find("String"); literal != pattern->end() && literal->is_string()) {
      const std::string s = literal->get<std::string>();
      if (s.empty()) return Malformed("Split with an empty String pattern");
      out->AddLiteralSplit(s, behavior, invert);
      return absl::OkStatus();
    }
    return Malformed("Split pattern is neither {\"Regex\": ...} nor {\"String\": ...}");
  }
  return absl::UnimplementedError(
      absl::StrCat("unsupported tokenizer.json pre_tokenizer \"", type, "\""));
}

// Byte-level: the decoder must be ByteLevel. Otherwise: a Sequence of Replace("▁", " "),
// ByteFallback, Fuse and Strip(" ", n <= 1, 0), as HF converts SentencePiece models.
absl::Status ParseDecoder(const Json& root, BpeTokenizerConfig* config) {
  auto it = root.find("decoder");
  if (it == root.end() || it->is_null()) {
    return absl::UnimplementedError("unsupported tokenizer.json decoder: none");
  }
  if (!it->is_object()) return Malformed("decoder is not an object");
  std::vector<const Json*> steps;
  if (TypeOf(*it) == "Sequence") {
    auto list = it->find("decoders");
    if (list == it->end() || !list->is_array()) return Malformed("Sequence without \"decoders\"");
    for (const Json& d : *list) steps.push_back(&d);
  } else {
    steps.push_back(&*it);
  }
  bool byte_level = false;
  for (const Json* d : steps) {
    const std::string type = TypeOf(*d);
    if (type == "ByteLevel" && config->byte_level) {
      byte_level = true;
    } else if (type == "Replace" && !config->byte_level) {
      auto pattern = d->find("pattern");
      const bool metaspace = pattern != d->end() && pattern->is_object() &&
                             pattern->value("String", "") == "\xE2\x96\x81" &&
                             d->value("content", "") == " ";
      if (!metaspace) {
        return absl::UnimplementedError(
            "unsupported tokenizer.json decoder: Replace other than \"▁\" -> \" \"");
      }
      config->decoder_replace_metaspace = true;
    } else if (type == "ByteFallback" && !config->byte_level) {
      config->decoder_byte_fallback = true;
    } else if (type == "Fuse") {
      // Concatenation: what we do anyway.
    } else if (type == "Strip" && !config->byte_level) {
      const auto start = d->value("start", 0);
      if (d->value("content", "") != " " || start > 1 || d->value("stop", 0) != 0) {
        return absl::UnimplementedError(
            "unsupported tokenizer.json decoder: Strip other than one leading space");
      }
      config->decoder_start = start == 1 ? BpeTokenizerConfig::DecoderStart::kStripOneSpace
                                         : BpeTokenizerConfig::DecoderStart::kKeep;
    } else if (type == "Metaspace" && !config->byte_level) {
      VERDICT_ASSIGN_OR_RETURN(const MetaspacePrepend prepend, ParseMetaspace(*d));
      config->decoder_replace_metaspace = true;
      config->decoder_start = prepend == MetaspacePrepend::kNever
                                  ? BpeTokenizerConfig::DecoderStart::kKeep
                                  : BpeTokenizerConfig::DecoderStart::kDropMetaspaces;
    } else {
      return absl::UnimplementedError(absl::StrCat(
          "unsupported tokenizer.json decoder \"", type, "\"",
          config->byte_level ? " for a byte-level pre-tokenizer" : " for a non-byte-level BPE"));
    }
  }
  if (config->byte_level && !byte_level) {
    return absl::UnimplementedError(
        "unsupported tokenizer.json: ByteLevel pre-tokenizer without the ByteLevel decoder");
  }
  return absl::OkStatus();
}

absl::Status AddPostProcessor(const Json& p, const absl::flat_hash_map<std::string, int32_t>& ids,
                              BpeTokenizerConfig* config) {
  if (p.is_null()) return absl::OkStatus();
  const std::string type = TypeOf(p);
  if (type == "ByteLevel") return absl::OkStatus();  // only touches offsets
  if (type == "Sequence") {
    auto list = p.find("processors");
    if (list == p.end() || !list->is_array()) return Malformed("Sequence without \"processors\"");
    for (const Json& child : *list) VERDICT_RETURN_IF_ERROR(AddPostProcessor(child, ids, config));
    return absl::OkStatus();
  }
  if (type == "TemplateProcessing") {
    auto single = p.find("single");
    if (single == p.end() || !single->is_array()) {
      return Malformed("TemplateProcessing without \"single\"");
    }
    auto specials = p.find("special_tokens");
    bool seen_sequence = false;
    for (const Json& piece : *single) {
      if (piece.contains("Sequence")) {
        seen_sequence = true;
        continue;
      }
      auto special = piece.find("SpecialToken");
      if (special == piece.end() || !special->is_object()) {
        return Malformed("TemplateProcessing piece is neither Sequence nor SpecialToken");
      }
      VERDICT_ASSIGN_OR_RETURN(const std::string name, GetString(*special, "id"));
      std::vector<int32_t> piece_ids;
      if (specials != p.end() && specials->is_object() && specials->contains(name)) {
        const Json& entry = (*specials)[name];
        auto list = entry.find("ids");
        if (list == entry.end() || !list->is_array()) {
          return Malformed(absl::StrCat("template special token \"", name, "\" has no ids"));
        }
        for (const Json& id : *list) {
          if (!id.is_number_integer()) return Malformed("template token id is not an integer");
          piece_ids.push_back(id.get<int32_t>());
        }
      } else if (auto found = ids.find(name); found != ids.end()) {
        piece_ids.push_back(found->second);
      } else {
        return Malformed(absl::StrCat("template special token \"", name, "\" is unknown"));
      }
      auto& dest = seen_sequence ? config->suffix_ids : config->prefix_ids;
      dest.insert(dest.end(), piece_ids.begin(), piece_ids.end());
    }
    if (!seen_sequence) return Malformed("TemplateProcessing \"single\" has no Sequence");
    return absl::OkStatus();
  }
  return absl::UnimplementedError(
      absl::StrCat("unsupported tokenizer.json post_processor \"", type, "\""));
}

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadFromParsed(const Json& root,
                                                          const HfTokenizerOptions& options) {
  if (!root.is_object()) return Malformed("top level is not an object");
  auto model_it = root.find("model");
  if (model_it == root.end() || !model_it->is_object()) return Malformed("no \"model\" object");
  const Json& model = *model_it;
  std::string model_type = TypeOf(model);
  if (model_type == "<no type>" && model.contains("merges")) model_type = "BPE";
  if (model_type != "BPE") {
    return absl::UnimplementedError(absl::StrCat("unsupported tokenizer.json model type \"",
                                                 model_type, "\" (only BPE is supported)"));
  }
  BpeTokenizerConfig config;
  if (auto normalizer = root.find("normalizer"); normalizer != root.end()) {
    VERDICT_RETURN_IF_ERROR(AddNormalizer(*normalizer, &config.normalizer));
  }
  // Vocabulary.
  auto vocab_it = model.find("vocab");
  if (vocab_it == model.end() || !vocab_it->is_object()) {
    return Malformed("model has no \"vocab\" object");
  }
  absl::flat_hash_map<std::string, int32_t> ids;  // model vocab + added tokens, by content
  int64_t max_id = -1;
  for (auto it = vocab_it->begin(); it != vocab_it->end(); ++it) {
    if (!it.value().is_number_integer()) {
      return Malformed(absl::StrCat("vocab entry \"", it.key(), "\" is not an integer id"));
    }
    const int64_t id = it.value().get<int64_t>();
    if (id < 0 || id > (int64_t{1} << 24)) {
      return Malformed(absl::StrCat("vocab entry \"", it.key(), "\" has bad id ", id));
    }
    max_id = std::max(max_id, id);
  }
  config.vocab.resize(static_cast<size_t>(max_id + 1));
  for (auto it = vocab_it->begin(); it != vocab_it->end(); ++it) {
    const auto id = it.value().get<int32_t>();
    if (!config.vocab[id].empty()) {
      return Malformed(
          absl::StrCat("id ", id, " is used by \"", config.vocab[id], "\" and \"", it.key(), "\""));
    }
    if (it.key().empty()) return Malformed("empty token in vocab");
    config.vocab[id] = it.key();
    ids.emplace(it.key(), id);
  }
  // Merges.
  auto merges_it = model.find("merges");
  if (merges_it == model.end() || !merges_it->is_array()) {
    return Malformed("model has no \"merges\" array");
  }
  config.merges.reserve(merges_it->size());
  for (const Json& m : *merges_it) {
    if (m.is_string()) {
      VERDICT_ASSIGN_OR_RETURN(auto merge, ParseMergeLine(m.get<std::string>()));
      config.merges.push_back(std::move(merge));
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      config.merges.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
    } else {
      return Malformed(absl::StrCat("merge ", m.dump(), " is neither \"a b\" nor [\"a\", \"b\"]"));
    }
  }
  // Model options.
  VERDICT_ASSIGN_OR_RETURN(config.model_options.ignore_merges,
                           GetBool(model, "ignore_merges", false));
  VERDICT_ASSIGN_OR_RETURN(config.model_options.byte_fallback,
                           GetBool(model, "byte_fallback", false));
  VERDICT_ASSIGN_OR_RETURN(config.model_options.fuse_unk, GetBool(model, "fuse_unk", false));
  if (auto unk = model.find("unk_token"); unk != model.end() && !unk->is_null()) {
    if (!unk->is_string()) return Malformed("\"unk_token\" is not a string");
    auto found = ids.find(unk->get<std::string>());
    if (found == ids.end()) {
      return Malformed(absl::StrCat("unk_token \"", unk->get<std::string>(), "\" not in vocab"));
    }
    config.model_options.unk_id = found->second;
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    auto it = model.find(key);
    if (it != model.end() && !it->is_null() &&
        !(it->is_string() && it->get<std::string>().empty())) {
      return absl::UnimplementedError(
          absl::StrCat("unsupported tokenizer.json BPE option \"", key, "\""));
    }
  }
  if (auto dropout = model.find("dropout");
      dropout != model.end() && !dropout->is_null() &&
      !(dropout->is_number() && dropout->get<double>() == 0.0)) {
    return absl::UnimplementedError("unsupported tokenizer.json BPE option \"dropout\"");
  }
  // Pre-tokenizer.
  auto pre_it = root.find("pre_tokenizer");
  bool byte_level = false;
  if (pre_it != root.end() && !pre_it->is_null()) {
    VERDICT_RETURN_IF_ERROR(AddPreTokenizer(*pre_it, &config.pre_tokenizer, &byte_level));
  }
  config.byte_level = byte_level;
  VERDICT_RETURN_IF_ERROR(ParseDecoder(root, &config));
  // Added tokens.
  if (auto added = root.find("added_tokens"); added != root.end() && !added->is_null()) {
    if (!added->is_array()) return Malformed("\"added_tokens\" is not an array");
    for (const Json& a : *added) {
      if (!a.is_object()) return Malformed("added token is not an object");
      AddedToken t;
      auto id = a.find("id");
      if (id == a.end() || !id->is_number_integer() || id->get<int64_t>() < 0 ||
          id->get<int64_t>() > (int64_t{1} << 24)) {
        return Malformed("added token without a valid \"id\"");
      }
      t.id = id->get<int32_t>();
      VERDICT_ASSIGN_OR_RETURN(t.content, GetString(a, "content"));
      VERDICT_ASSIGN_OR_RETURN(t.special, GetBool(a, "special", false));
      VERDICT_ASSIGN_OR_RETURN(t.single_word, GetBool(a, "single_word", false));
      VERDICT_ASSIGN_OR_RETURN(t.lstrip, GetBool(a, "lstrip", false));
      VERDICT_ASSIGN_OR_RETURN(t.rstrip, GetBool(a, "rstrip", false));
      VERDICT_ASSIGN_OR_RETURN(t.normalized, GetBool(a, "normalized", !t.special));
      ids[t.content] = t.id;
      config.added_tokens.push_back(std::move(t));
    }
  }
  // Post-processor.
  if (auto post = root.find("post_processor"); post != root.end()) {
    VERDICT_RETURN_IF_ERROR(AddPostProcessor(*post, ids, &config));
  }
  // BOS / EOS.
  auto special_id = [&config](absl::string_view content) -> int32_t {
    for (const AddedToken& t : config.added_tokens) {
      if (t.content == content) return t.id;
    }
    return -1;
  };
  if (options.bos_token) {
    auto found = ids.find(*options.bos_token);
    if (found == ids.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("BOS token \"", *options.bos_token, "\" is not in the vocabulary"));
    }
    config.bos_id = found->second;
  } else if (!config.prefix_ids.empty()) {
    config.bos_id = config.prefix_ids.front();
  } else {
    for (const char* name : {"<|begin_of_text|>", "<s>", "<bos>"}) {
      if (int32_t id = special_id(name); id >= 0) {
        config.bos_id = id;
        break;
      }
    }
  }
  if (options.eos_tokens) {
    for (const std::string& name : *options.eos_tokens) {
      auto found = ids.find(name);
      if (found == ids.end()) {
        return absl::InvalidArgumentError(
            absl::StrCat("EOS token \"", name, "\" is not in the vocabulary"));
      }
      config.eos_ids.push_back(found->second);
    }
  } else {
    for (const char* name : {"<|end_of_text|>", "<|eot_id|>", "<|eom_id|>", "</s>", "<eos>",
                             "<|endoftext|>", "<|im_end|>", "<end_of_turn>"}) {
      if (int32_t id = special_id(name); id >= 0) config.eos_ids.push_back(id);
    }
  }
  return CreateBpeTokenizer(std::move(config));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadHfTokenizerFromJson(
    absl::string_view json, const HfTokenizerOptions& options) {
  const Json root = Json::parse(json.data(), json.data() + json.size(), /*cb=*/nullptr,
                                /*allow_exceptions=*/false);
  if (root.is_discarded()) return Malformed("not valid JSON");
  try {
    return LoadFromParsed(root, options);
  } catch (const Json::exception& e) {
    // Defensive: every access above is type-checked first.
    return Malformed(e.what());
  }
}

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadHfTokenizer(const std::string& path,
                                                           const HfTokenizerOptions& options) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open tokenizer file ", path));
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (!in.good() && !in.eof()) {
    return absl::NotFoundError(absl::StrCat("cannot read tokenizer file ", path));
  }
  auto tokenizer = LoadHfTokenizerFromJson(buffer.str(), options);
  if (!tokenizer.ok()) {
    return absl::Status(tokenizer.status().code(),
                        absl::StrCat(path, ": ", tokenizer.status().message()));
  }
  return tokenizer;
}

}  // namespace verdict::engine
