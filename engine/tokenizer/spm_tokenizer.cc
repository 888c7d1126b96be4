// SPDX-License-Identifier: Apache-2.0
#include "engine/tokenizer/spm_tokenizer.h"

#include <array>
#include <queue>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "common/status_macros.h"
#include "engine/tokenizer/tokenizer_base.h"
#include "engine/tokenizer/unicode.h"

namespace verdict::engine {
namespace {

constexpr absl::string_view kSpace = "\xE2\x96\x81";  // U+2581 "▁"

class SpmTokenizer final : public internal::TokenizerBase {
 public:
  static absl::StatusOr<std::unique_ptr<Tokenizer>> Create(SpmVocab vocab) {
    const size_t n = vocab.tokens.size();
    if (n == 0) return absl::InvalidArgumentError("empty SentencePiece vocabulary");
    if (!vocab.scores.empty() && vocab.scores.size() != n) {
      return absl::InvalidArgumentError(
          absl::StrCat("vocabulary has ", n, " tokens but ", vocab.scores.size(), " scores"));
    }
    if (!vocab.token_types.empty() && vocab.token_types.size() != n) {
      return absl::InvalidArgumentError(absl::StrCat("vocabulary has ", n, " tokens but ",
                                                     vocab.token_types.size(), " token types"));
    }
    for (int32_t id : {vocab.bos_id, vocab.eos_id, vocab.unk_id}) {
      if (id < -1 || id >= static_cast<int32_t>(n)) {
        return absl::InvalidArgumentError(
            absl::StrCat("special token id ", id, " is out of range for vocabulary size ", n));
      }
    }
    if (vocab.scores.empty()) vocab.scores.assign(n, 0.0f);
    if (vocab.token_types.empty()) vocab.token_types.assign(n, kSpmTokenNormal);

    std::unique_ptr<SpmTokenizer> tokenizer(new SpmTokenizer());
    internal::TokenTables tables;
    tables.spelling = vocab.tokens;
    tables.bytes.resize(n);
    tables.special.assign(n, false);
    tokenizer->byte_tokens_.fill(-1);
    for (size_t i = 0; i < n; ++i) {
      const auto id = static_cast<int32_t>(i);
      const std::string& piece = vocab.tokens[i];
      switch (vocab.token_types[i]) {
        case kSpmTokenUnknown:
        case kSpmTokenControl: {
          tables.bytes[i] = piece;
          tables.special[i] = true;
          AddedToken t;
          t.id = id;
          t.content = piece;
          t.special = true;
          tables.added_tokens.push_back(std::move(t));
          break;
        }
        case kSpmTokenByte: {
          const int byte = internal::ParseByteToken(piece);
          if (byte < 0) {
            return absl::InvalidArgumentError(
                absl::StrCat("byte token ", id, " is spelled \"", piece, "\", not <0xNN>"));
          }
          tables.bytes[i] = std::string(1, static_cast<char>(byte));
          if (tokenizer->byte_tokens_[byte] < 0) tokenizer->byte_tokens_[byte] = id;
          break;
        }
        case kSpmTokenUserDefined: {
          AddedToken t;
          t.id = id;
          t.content = piece;
          tables.added_tokens.push_back(std::move(t));
          [[fallthrough]];
        }
        default:  // normal, unused, undefined
          tables.bytes[i] = absl::StrReplaceAll(piece, {{kSpace, " "}});
          if (!piece.empty()) tokenizer->pieces_.emplace(piece, id);
          break;
      }
    }
    if (vocab.add_bos && vocab.bos_id >= 0) tables.prefix_ids.push_back(vocab.bos_id);
    tables.bos_id = vocab.bos_id;
    if (vocab.eos_id >= 0) tables.eos_ids.push_back(vocab.eos_id);
    if (vocab.add_space_prefix) {
      // Decoding drops the space the "▁" prefix stands for (HF: Strip(" ", 1, 0)).
      tables.start_bytes = tables.bytes;
      for (std::string& b : tables.start_bytes) {
        if (!b.empty() && b[0] == ' ') b.erase(0, 1);
      }
    }
    tokenizer->vocab_ = std::move(vocab);
    VERDICT_RETURN_IF_ERROR(tokenizer->Init(std::move(tables)));
    return std::unique_ptr<Tokenizer>(std::move(tokenizer));
  }

 protected:
  absl::Status EncodeText(absl::string_view text, bool at_start, bool after_token,
                          std::vector<int32_t>* out) const override;

 private:
  SpmTokenizer() = default;

  struct Symbol {
    uint32_t begin;  // byte range in the escaped text
    uint32_t size;
    int32_t prev;
    int32_t next;
  };

  // Emits the tokens for one final symbol.
  absl::Status Resegment(
      absl::string_view piece,
      const absl::flat_hash_map<absl::string_view, std::pair<absl::string_view, absl::string_view>>&
          rev_merge,
      std::vector<int32_t>* out) const;

  SpmVocab vocab_;
  // Pieces that merging may produce: normal, user-defined, unused and undefined tokens.
  absl::flat_hash_map<std::string, int32_t> pieces_;
  std::array<int32_t, 256> byte_tokens_{};
};

absl::Status SpmTokenizer::Resegment(
    absl::string_view piece,
    const absl::flat_hash_map<absl::string_view, std::pair<absl::string_view, absl::string_view>>&
        rev_merge,
    std::vector<int32_t>* out) const {
  auto it = pieces_.find(piece);
  if (it != pieces_.end()) {
    if (vocab_.token_types[it->second] != kSpmTokenUnused) {
      out->push_back(it->second);
      return absl::OkStatus();
    }
    // Unused pieces may be merged through but not emitted: split back into the two halves.
    auto halves = rev_merge.find(piece);
    if (halves != rev_merge.end()) {
      VERDICT_RETURN_IF_ERROR(Resegment(halves->second.first, rev_merge, out));
      return Resegment(halves->second.second, rev_merge, out);
    }
  }
  // Not in the vocabulary (a single character): byte fallback, else <unk>.
  bool all_bytes = true;
  for (char b : piece) all_bytes = all_bytes && byte_tokens_[static_cast<uint8_t>(b)] >= 0;
  if (all_bytes) {
    for (char b : piece) out->push_back(byte_tokens_[static_cast<uint8_t>(b)]);
    return absl::OkStatus();
  }
  if (vocab_.unk_id >= 0) {
    out->push_back(vocab_.unk_id);
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "cannot encode \"", piece, "\": no such piece, no byte tokens and no <unk> token"));
}

absl::Status SpmTokenizer::EncodeText(absl::string_view raw, bool /*at_start*/, bool after_token,
                                      std::vector<int32_t>* out) const {
  std::string text;
  text.reserve(raw.size() + 16);
  if (vocab_.add_space_prefix && after_token) text.append(kSpace.data(), kSpace.size());
  text += absl::StrReplaceAll(raw, {{" ", kSpace}});

  // One symbol per character (an invalid byte is a character of its own).
  std::vector<Symbol> symbols;
  symbols.reserve(text.size());
  for (size_t pos = 0; pos < text.size();) {
    char32_t cp;
    size_t len = unicode::DecodeOne(absl::string_view(text).substr(pos), &cp);
    if (len == 0) len = 1;
    const auto index = static_cast<int32_t>(symbols.size());
    symbols.push_back(
        {static_cast<uint32_t>(pos), static_cast<uint32_t>(len), index - 1, index + 1});
    pos += len;
  }
  if (symbols.empty()) return absl::OkStatus();
  symbols.back().next = -1;

  const absl::string_view view(text);
  struct Bigram {
    float score;
    int32_t left;
    uint32_t size;  // bytes of the merged piece, to detect stale entries
    bool operator<(const Bigram& o) const {
      // Highest score first, then leftmost.
      return score != o.score ? score < o.score : left > o.left;
    }
  };
  std::priority_queue<Bigram> queue;
  absl::flat_hash_map<absl::string_view, std::pair<absl::string_view, absl::string_view>> rev_merge;
  auto try_add = [&](int32_t left) {
    if (left < 0) return;
    const int32_t right = symbols[left].next;
    if (right < 0) return;
    const absl::string_view merged =
        view.substr(symbols[left].begin, symbols[left].size + symbols[right].size);
    auto it = pieces_.find(merged);
    if (it == pieces_.end()) return;
    queue.push({vocab_.scores[it->second], left, static_cast<uint32_t>(merged.size())});
    if (vocab_.token_types[it->second] == kSpmTokenUnused) {
      rev_merge[merged] = {view.substr(symbols[left].begin, symbols[left].size),
                           view.substr(symbols[right].begin, symbols[right].size)};
    }
  };
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(symbols.size()); ++i) try_add(i);
  while (!queue.empty()) {
    const Bigram top = queue.top();
    queue.pop();
    Symbol& left = symbols[top.left];
    if (left.size == 0 || left.next < 0) continue;
    Symbol& right = symbols[left.next];
    if (left.size + right.size != top.size) continue;  // stale
    left.size += right.size;
    right.size = 0;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = top.left;
    try_add(left.prev);
    try_add(top.left);
  }
  for (int32_t i = 0; i >= 0; i = symbols[i].next) {
    VERDICT_RETURN_IF_ERROR(
        Resegment(view.substr(symbols[i].begin, symbols[i].size), rev_merge, out));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> CreateSpmTokenizer(SpmVocab vocab) {
  return SpmTokenizer::Create(std::move(vocab));
}

}  // namespace verdict::engine
