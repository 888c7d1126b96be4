// SPDX-License-Identifier: Apache-2.0
#include "engine/tokenizer/bpe_tokenizer.h"

#include <algorithm>
#include <array>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "common/status_macros.h"
#include "engine/tokenizer/tokenizer_base.h"
#include "engine/tokenizer/unicode.h"

namespace verdict::engine {
namespace {

constexpr absl::string_view kMetaspace = "\xE2\x96\x81";  // U+2581 "▁"
constexpr int kGgufTokenTypeControl = 3;
constexpr int kGgufTokenTypeUserDefined = 4;

struct ByteLevelTables {
  std::array<std::string, 256> byte_to_text;
  std::array<int16_t, 512> char_to_byte;  // indexed by code point < 512; -1 if unmapped
};

const ByteLevelTables& GetByteLevelTables() {
  static const ByteLevelTables* tables = [] {
    auto* t = new ByteLevelTables();
    t->char_to_byte.fill(-1);
    char32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      const char32_t cp = printable ? static_cast<char32_t>(b) : next++;
      unicode::AppendUtf8(cp, &t->byte_to_text[b]);
      t->char_to_byte[cp] = static_cast<int16_t>(b);
    }
    return t;
  }();
  return *tables;
}

class BpeTokenizer final : public internal::TokenizerBase {
 public:
  static absl::StatusOr<std::unique_ptr<Tokenizer>> Create(BpeTokenizerConfig config) {
    std::unique_ptr<BpeTokenizer> tokenizer(new BpeTokenizer());
    internal::TokenTables tables;
    size_t size = config.vocab.size();
    for (const AddedToken& t : config.added_tokens) {
      if (t.id < 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("added token \"", t.content, "\" has negative id ", t.id));
      }
      size = std::max(size, static_cast<size_t>(t.id) + 1);
    }
    tables.spelling = config.vocab;
    tables.spelling.resize(size);
    tables.bytes.resize(size);
    tables.special.assign(size, false);
    // HF runs added tokens through the decoder too (ASCII ones come out unchanged).
    auto decode_token = [&config](absl::string_view token) -> std::string {
      if (config.byte_level) return ByteLevelToBytes(token);
      if (config.decoder_byte_fallback) {
        if (int byte = internal::ParseByteToken(token); byte >= 0)
          return std::string(1, static_cast<char>(byte));
      }
      if (config.decoder_replace_metaspace) return absl::StrReplaceAll(token, {{kMetaspace, " "}});
      return std::string(token);
    };
    for (size_t id = 0; id < config.vocab.size(); ++id) {
      tables.bytes[id] = decode_token(config.vocab[id]);
    }
    if (config.decoder_start != BpeTokenizerConfig::DecoderStart::kKeep) {
      tables.start_bytes = tables.bytes;
      for (size_t id = 0; id < config.vocab.size(); ++id) {
        std::string& b = tables.start_bytes[id];
        if (config.decoder_start == BpeTokenizerConfig::DecoderStart::kStripOneSpace) {
          if (!b.empty() && b[0] == ' ') b.erase(0, 1);
        } else if (internal::ParseByteToken(config.vocab[id]) < 0 ||
                   !config.decoder_byte_fallback) {
          b = decode_token(absl::StrReplaceAll(config.vocab[id], {{kMetaspace, ""}}));
        }
      }
    }
    for (const AddedToken& t : config.added_tokens) {
      tables.bytes[t.id] = decode_token(t.content);
      if (!tables.start_bytes.empty()) tables.start_bytes[t.id] = tables.bytes[t.id];
      tables.special[t.id] = t.special;
      if (tables.spelling[t.id].empty()) tables.spelling[t.id] = t.content;
    }
    VERDICT_ASSIGN_OR_RETURN(
        tokenizer->model_,
        BpeModel::Create(std::move(config.vocab), config.merges, config.model_options));
    tables.added_tokens = std::move(config.added_tokens);
    tables.prefix_ids = std::move(config.prefix_ids);
    tables.suffix_ids = std::move(config.suffix_ids);
    tables.bos_id = config.bos_id;
    tables.eos_ids = std::move(config.eos_ids);
    tokenizer->pre_tokenizer_ = std::move(config.pre_tokenizer);
    tokenizer->normalizer_ = std::move(config.normalizer);
    tokenizer->byte_level_ = config.byte_level;
    VERDICT_RETURN_IF_ERROR(tokenizer->Init(std::move(tables)));
    return std::unique_ptr<Tokenizer>(std::move(tokenizer));
  }

 protected:
  absl::Status EncodeText(absl::string_view text, bool at_start, bool /*after_token*/,
                          std::vector<int32_t>* out) const override {
    std::string normalized;
    if (!normalizer_.empty()) {
      normalized = std::string(text);
      for (const NormalizerStep& step : normalizer_) {
        if (step.kind == NormalizerStep::Kind::kPrepend) {
          if (!normalized.empty()) normalized.insert(0, step.content);
        } else {
          normalized = absl::StrReplaceAll(normalized, {{step.pattern, step.content}});
        }
      }
      text = normalized;
    }
    if (pre_tokenizer_.empty()) {
      EncodePiece(text, out);
      return absl::OkStatus();
    }
    std::vector<std::string> pieces;
    pre_tokenizer_.Split(text, &pieces, at_start);
    for (const std::string& piece : pieces) EncodePiece(piece, out);
    return absl::OkStatus();
  }

 private:
  BpeTokenizer() = default;

  void EncodePiece(absl::string_view piece, std::vector<int32_t>* out) const {
    if (!byte_level_) {
      model_->Encode(piece, out);
      return;
    }
    std::string mapped;
    AppendByteLevel(piece, &mapped);
    model_->Encode(mapped, out);
  }

  std::unique_ptr<BpeModel> model_;
  std::vector<NormalizerStep> normalizer_;
  PreTokenizer pre_tokenizer_;
  bool byte_level_ = true;
};

}  // namespace

void AppendByteLevel(absl::string_view bytes, std::string* out) {
  const ByteLevelTables& t = GetByteLevelTables();
  for (char b : bytes) *out += t.byte_to_text[static_cast<uint8_t>(b)];
}

std::string ByteLevelToBytes(absl::string_view token) {
  const ByteLevelTables& t = GetByteLevelTables();
  std::string bytes;
  size_t pos = 0;
  while (pos < token.size()) {
    char32_t cp;
    const size_t len = unicode::DecodeOne(token.substr(pos), &cp);
    if (len == 0 || cp >= t.char_to_byte.size() || t.char_to_byte[cp] < 0) {
      return std::string(token);
    }
    bytes.push_back(static_cast<char>(t.char_to_byte[cp]));
    pos += len;
  }
  return bytes;
}

absl::StatusOr<std::unique_ptr<Tokenizer>> CreateBpeTokenizer(BpeTokenizerConfig config) {
  return BpeTokenizer::Create(std::move(config));
}

absl::StatusOr<std::pair<std::string, std::string>> ParseMergeLine(absl::string_view line) {
  const size_t space = line.find(' ');
  if (space == absl::string_view::npos || space == 0 || space + 1 == line.size() ||
      line.find(' ', space + 1) != absl::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("merge \"", line, "\" is not two tokens separated by one space"));
  }
  return std::make_pair(std::string(line.substr(0, space)), std::string(line.substr(space + 1)));
}

absl::StatusOr<std::unique_ptr<Tokenizer>> CreateBpeTokenizerFromVocab(const BpeVocab& vocab) {
  if (!vocab.token_types.empty() && vocab.token_types.size() != vocab.tokens.size()) {
    return absl::InvalidArgumentError(absl::StrCat("vocabulary has ", vocab.tokens.size(),
                                                   " tokens but ", vocab.token_types.size(),
                                                   " token types"));
  }
  BpeTokenizerConfig config;
  config.vocab = vocab.tokens;
  config.merges.reserve(vocab.merges.size());
  for (const std::string& line : vocab.merges) {
    VERDICT_ASSIGN_OR_RETURN(auto merge, ParseMergeLine(line));
    config.merges.push_back(std::move(merge));
  }
  for (size_t id = 0; id < vocab.token_types.size(); ++id) {
    const int32_t type = vocab.token_types[id];
    if (type != kGgufTokenTypeControl && type != kGgufTokenTypeUserDefined) continue;
    AddedToken t;
    t.id = static_cast<int32_t>(id);
    t.content = vocab.tokens[id];
    t.special = type == kGgufTokenTypeControl;
    config.added_tokens.push_back(std::move(t));
  }
  switch (vocab.pre_tokenizer) {
    case BpePreTokenizerKind::kLlama3:
      config.model_options.ignore_merges = true;
      config.pre_tokenizer.AddRegexSplit(PreTokenizerRegex::kLlama3, SplitBehavior::kIsolated,
                                         /*invert=*/false);
      break;
    case BpePreTokenizerKind::kGpt2:
      config.pre_tokenizer.AddByteLevel(/*add_prefix_space=*/false, /*use_regex=*/true);
      break;
    case BpePreTokenizerKind::kGpt2IndividualDigits:
      config.pre_tokenizer.AddDigits(/*individual_digits=*/true);
      config.pre_tokenizer.AddByteLevel(/*add_prefix_space=*/false, /*use_regex=*/true);
      break;
  }
  if (vocab.add_bos && vocab.bos_id >= 0) config.prefix_ids.push_back(vocab.bos_id);
  config.bos_id = vocab.bos_id;
  config.eos_ids = vocab.eos_ids;
  return CreateBpeTokenizer(std::move(config));
}

}  // namespace verdict::engine
