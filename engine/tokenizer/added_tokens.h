// SPDX-License-Identifier: Apache-2.0
// Added tokens (Hugging Face "added_tokens", GGUF control / user-defined tokens): tokens that are
// cut out of the input text before pre-tokenization, matched leftmost-longest like HF's
// AddedVocabulary. Immutable after construction; Split() is const and thread-safe.
#ifndef VERDICT_ENGINE_TOKENIZER_ADDED_TOKENS_H_
#define VERDICT_ENGINE_TOKENIZER_ADDED_TOKENS_H_

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace verdict::engine {

struct AddedToken {
  int32_t id = -1;
  std::string content;
  // Special tokens are recognized only with EncodeOptions::parse_special and are dropped by
  // Decode(..., skip_special=true). Non-special added tokens are always recognized.
  bool special = false;
  // HF flags: only match as a whole word; absorb whitespace on the left / right.
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  // HF "normalized": matched after normalization, in a second pass (we support no normalizer,
  // so only the order of the two passes differs).
  bool normalized = false;
};

class AddedTokenMatcher {
 public:
  // A piece of the input: plain text (id < 0) or one added token.
  struct Segment {
    absl::string_view text;
    int32_t id = -1;
  };

  AddedTokenMatcher() = default;
  // Tokens with empty content are ignored.
  explicit AddedTokenMatcher(const std::vector<AddedToken>& tokens);

  // Splits `text` into segments, appended to *out; plain-text segments are never empty.
  void Split(absl::string_view text, bool parse_special, std::vector<Segment>* out) const;

  bool empty() const { return tokens_.empty(); }

 private:
  // A byte trie over the contents of one pass's tokens.
  struct Trie {
    struct Node {
      std::vector<std::pair<uint8_t, int32_t>> children;  // sorted by byte
      int32_t token = -1;                                 // index into tokens_
    };
    std::vector<Node> nodes;
    std::array<bool, 256> first_byte{};

    void Insert(absl::string_view s, int32_t token);
    // Longest token matching at the start of `s`: its index, length in *len; -1 if none.
    int32_t LongestMatch(absl::string_view s, size_t* len) const;
    bool empty() const { return nodes.size() <= 1; }
  };

  void SplitPass(const Trie& trie, absl::string_view text, bool parse_special,
                 std::vector<Segment>* out) const;

  std::vector<AddedToken> tokens_;
  Trie raw_;         // normalized == false: matched first
  Trie normalized_;  // normalized == true: matched in what the first pass left
};

}  // namespace verdict::engine

#endif  // VERDICT_ENGINE_TOKENIZER_ADDED_TOKENS_H_
