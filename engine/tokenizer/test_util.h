// SPDX-License-Identifier: Apache-2.0
// Helpers shared by the tokenizer unit tests: small hand-made vocabularies. Test-only.
#ifndef VERDICT_ENGINE_TOKENIZER_TEST_UTIL_H_
#define VERDICT_ENGINE_TOKENIZER_TEST_UTIL_H_

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_format.h"
#include "engine/tokenizer/bpe_tokenizer.h"
#include "engine/tokenizer/spm_tokenizer.h"
#include "engine/tokenizer/tokenizer.h"

namespace verdict::engine::testing {

// The byte-level spelling of raw bytes.
inline std::string Bl(absl::string_view bytes) {
  std::string out;
  AppendByteLevel(bytes, &out);
  return out;
}

// A byte-level vocabulary: ids 0..255 are the single bytes, then `extra` merged tokens (raw
// text, spelled byte-level here) with merges given as raw (left, right) pairs, then the
// special tokens. Llama-3 pre-tokenizer unless `pre` says otherwise.
struct ToyBpe {
  std::vector<std::pair<std::string, std::string>> merges;  // raw text; merged = left + right
  std::vector<std::string> specials;
  BpePreTokenizerKind pre = BpePreTokenizerKind::kLlama3;
  bool ignore_merges = false;

  BpeVocab Vocab() const {
    BpeVocab v;
    for (int b = 0; b < 256; ++b) v.tokens.push_back(Bl(std::string(1, static_cast<char>(b))));
    for (const auto& [l, r] : merges) {
      v.tokens.push_back(Bl(l + r));
      v.merges.push_back(Bl(l) + " " + Bl(r));
    }
    v.token_types.assign(v.tokens.size(), 1);
    for (const std::string& s : specials) {
      v.tokens.push_back(s);
      v.token_types.push_back(3);
    }
    v.pre_tokenizer = pre;
    return v;
  }
};

inline std::unique_ptr<Tokenizer> MakeToyBpe(const ToyBpe& toy, int32_t bos = -1,
                                             std::vector<int32_t> eos = {}) {
  BpeVocab v = toy.Vocab();
  v.bos_id = bos;
  v.eos_ids = std::move(eos);
  v.add_bos = bos >= 0;
  auto t = CreateBpeTokenizerFromVocab(v);
  return t.ok() ? *std::move(t) : nullptr;
}

// A small SentencePiece-style vocabulary: <unk> <s> </s>, optionally the 256 byte tokens, then
// pieces with scores (higher merges first).
inline SpmVocab ToySpmVocab(bool with_bytes = true, bool with_unk = true) {
  SpmVocab v;
  auto add = [&v](std::string piece, float score, int32_t type) {
    v.tokens.push_back(std::move(piece));
    v.scores.push_back(score);
    v.token_types.push_back(type);
  };
  add(with_unk ? "<unk>" : "<pad>", 0, with_unk ? kSpmTokenUnknown : kSpmTokenControl);
  add("<s>", 0, kSpmTokenControl);
  add("</s>", 0, kSpmTokenControl);
  if (with_bytes) {
    for (int b = 0; b < 256; ++b) add(absl::StrFormat("<0x%02X>", b), 0, kSpmTokenByte);
  }
  const std::vector<std::pair<std::string, float>> pieces = {
      {"\xE2\x96\x81", -1},
      {"h", -2},
      {"e", -3},
      {"l", -4},
      {"o", -5},
      {"w", -6},
      {"r", -7},
      {"d", -8},
      {"\xE2\x96\x81h", -10},
      {"ll", -11},
      {"he", -12},
      {"llo", -13},
      {"\xE2\x96\x81he", -14},
      {"hello", -15},
      {"\xE2\x96\x81hello", -16},
      {"\xE2\x96\x81w", -17},
      {"or", -18},
      {"\xE2\x96\x81wor", -19},
      {"\xE2\x96\x81world", -20},
      {"ld", -21},
      {"\xE2\x96\x81\xE2\x96\x81", -22},
  };
  for (const auto& [p, s] : pieces) add(p, s, kSpmTokenNormal);
  v.bos_id = 1;
  v.eos_id = 2;
  v.unk_id = with_unk ? 0 : -1;
  return v;
}

}  // namespace verdict::engine::testing

#endif  // VERDICT_ENGINE_TOKENIZER_TEST_UTIL_H_
