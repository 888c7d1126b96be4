// SPDX-License-Identifier: Apache-2.0
// TokenizerBase: the parts of a Tokenizer that do not depend on the model type (added-token
// splitting, BOS/EOS decoration, id <-> bytes tables, Decode). Subclasses implement EncodeText()
// for plain text between added tokens. Internal to engine/tokenizer; immutable after Init(), so
// all const methods are thread-safe.
#ifndef VERDICT_ENGINE_TOKENIZER_TOKENIZER_BASE_H_
#define VERDICT_ENGINE_TOKENIZER_TOKENIZER_BASE_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "engine/tokenizer/added_tokens.h"
#include "engine/tokenizer/tokenizer.h"

namespace verdict::engine::internal {

// "<0xNN>" (a byte-fallback token's spelling) -> NN; -1 for any other string.
int ParseByteToken(absl::string_view token);

// Everything TokenizerBase needs, filled in by the concrete tokenizer's factory.
struct TokenTables {
  std::vector<std::string> spelling;  // by id: vocabulary spelling ("Ġthe", "▁the", "<|eot_id|>")
  std::vector<std::string> bytes;     // by id: what the token decodes to
  std::vector<bool> special;          // by id
  std::vector<AddedToken> added_tokens;
  std::vector<int32_t> prefix_ids;  // added in front with EncodeOptions::add_bos
  std::vector<int32_t> suffix_ids;  // added at the end with EncodeOptions::add_bos
  int32_t bos_id = -1;
  std::vector<int32_t> eos_ids;
  // By id: bytes when first in a decoded text (see Tokenizer::TokenBytesAtStart); empty vector
  // if always equal to `bytes`.
  std::vector<std::string> start_bytes;
};

class TokenizerBase : public Tokenizer {
 public:
  absl::StatusOr<std::vector<int32_t>> Encode(absl::string_view text,
                                              const EncodeOptions& options) const final;
  absl::StatusOr<std::string> Decode(absl::Span<const int32_t> ids, bool skip_special) const final;
  absl::StatusOr<std::string> TokenBytes(int32_t id) const final;
  int32_t vocab_size() const final { return static_cast<int32_t>(tables_.bytes.size()); }
  int32_t bos_id() const final { return tables_.bos_id; }
  std::vector<int32_t> eos_ids() const final { return tables_.eos_ids; }
  bool IsSpecial(int32_t id) const final;
  std::optional<int32_t> TokenToId(absl::string_view token) const final;
  absl::StatusOr<std::string> TokenBytesAtStart(int32_t id) const final;

 protected:
  TokenizerBase() = default;

  // Validates and installs the tables. REQUIRES: called once, by the factory, before use.
  // Errors: InvalidArgument if the tables are inconsistent (sizes, ids out of range).
  absl::Status Init(TokenTables tables);

  // Encodes plain text (no added tokens in it), appending to *out. `at_start`: the text starts
  // the input; `after_token`: the text starts the input or follows an added token.
  virtual absl::Status EncodeText(absl::string_view text, bool at_start, bool after_token,
                                  std::vector<int32_t>* out) const = 0;

 private:
  absl::Status CheckId(int32_t id) const;

  TokenTables tables_;
  AddedTokenMatcher matcher_;
  absl::flat_hash_map<std::string, int32_t> spelling_to_id_;
};

}  // namespace verdict::engine::internal

#endif  // VERDICT_ENGINE_TOKENIZER_TOKENIZER_BASE_H_
