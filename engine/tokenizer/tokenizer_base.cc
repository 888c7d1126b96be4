// SPDX-License-Identifier: Apache-2.0
#include "engine/tokenizer/tokenizer_base.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/tokenizer/unicode.h"

namespace verdict::engine::internal {

int ParseByteToken(absl::string_view token) {
  if (token.size() != 6 || token.substr(0, 3) != "<0x" || token[5] != '>') return -1;
  int value = 0;
  for (char c : token.substr(3, 2)) {
    int digit;
    if (c >= '0' && c <= '9') {
      digit = c - '0';
    } else if (c >= 'A' && c <= 'F') {
      digit = c - 'A' + 10;
    } else if (c >= 'a' && c <= 'f') {
      digit = c - 'a' + 10;
    } else {
      return -1;
    }
    value = value * 16 + digit;
  }
  return value;
}

absl::Status TokenizerBase::Init(TokenTables tables) {
  const size_t n = tables.bytes.size();
  if (tables.spelling.size() != n || tables.special.size() != n) {
    return absl::InvalidArgumentError("token tables have different sizes");
  }
  if (n == 0) return absl::InvalidArgumentError("empty vocabulary");
  if (!tables.start_bytes.empty() && tables.start_bytes.size() != n) {
    return absl::InvalidArgumentError("token tables have different sizes");
  }
  auto in_range = [n](int32_t id) { return id >= 0 && static_cast<size_t>(id) < n; };
  for (const AddedToken& t : tables.added_tokens) {
    if (!in_range(t.id)) {
      return absl::InvalidArgumentError(
          absl::StrCat("added token \"", t.content, "\" has id ", t.id, " outside [0, ", n, ")"));
    }
  }
  for (const auto* list : {&tables.prefix_ids, &tables.suffix_ids, &tables.eos_ids}) {
    for (int32_t id : *list) {
      if (!in_range(id)) {
        return absl::InvalidArgumentError(
            absl::StrCat("special token id ", id, " outside [0, ", n, ")"));
      }
    }
  }
  if (tables.bos_id != -1 && !in_range(tables.bos_id)) {
    return absl::InvalidArgumentError(
        absl::StrCat("BOS id ", tables.bos_id, " outside [0, ", n, ")"));
  }
  spelling_to_id_.reserve(n);
  for (size_t id = 0; id < n; ++id) {
    if (!tables.spelling[id].empty()) {
      spelling_to_id_.emplace(tables.spelling[id], static_cast<int32_t>(id));
    }
  }
  // Like HF's token_to_id, an added token's content names it even if the model vocabulary
  // spells that id differently.
  for (const AddedToken& t : tables.added_tokens) spelling_to_id_.insert_or_assign(t.content, t.id);
  matcher_ = AddedTokenMatcher(tables.added_tokens);
  tables_ = std::move(tables);
  return absl::OkStatus();
}

absl::Status TokenizerBase::CheckId(int32_t id) const {
  if (id < 0 || id >= vocab_size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("token id ", id, " is out of range for vocabulary size ", vocab_size()));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int32_t>> TokenizerBase::Encode(absl::string_view text,
                                                           const EncodeOptions& options) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  if (options.add_bos) ids = tables_.prefix_ids;
  std::vector<AddedTokenMatcher::Segment> segments;
  matcher_.Split(text, options.parse_special, &segments);
  bool after_token = true;
  for (const AddedTokenMatcher::Segment& segment : segments) {
    if (segment.id >= 0) {
      ids.push_back(segment.id);
      after_token = true;
    } else {
      const bool at_start = segment.text.data() == text.data();
      VERDICT_RETURN_IF_ERROR(EncodeText(segment.text, at_start, after_token, &ids));
      after_token = false;
    }
  }
  if (options.add_bos) {
    ids.insert(ids.end(), tables_.suffix_ids.begin(), tables_.suffix_ids.end());
  }
  return ids;
}

absl::StatusOr<std::string> TokenizerBase::Decode(absl::Span<const int32_t> ids,
                                                  bool skip_special) const {
  std::string bytes;
  bool at_start = true;  // no token with bytes yet
  for (int32_t id : ids) {
    VERDICT_RETURN_IF_ERROR(CheckId(id));
    if (skip_special && tables_.special[id]) continue;
    if (at_start && !tables_.bytes[id].empty()) {
      at_start = false;
      if (!tables_.start_bytes.empty()) {
        bytes += tables_.start_bytes[id];
        continue;
      }
    }
    bytes += tables_.bytes[id];
  }
  std::string text;
  text.reserve(bytes.size());
  unicode::AppendUtf8Lossy(bytes, &text);
  return text;
}

absl::StatusOr<std::string> TokenizerBase::TokenBytes(int32_t id) const {
  VERDICT_RETURN_IF_ERROR(CheckId(id));
  return tables_.bytes[id];
}

absl::StatusOr<std::string> TokenizerBase::TokenBytesAtStart(int32_t id) const {
  VERDICT_RETURN_IF_ERROR(CheckId(id));
  return tables_.start_bytes.empty() ? tables_.bytes[id] : tables_.start_bytes[id];
}

bool TokenizerBase::IsSpecial(int32_t id) const {
  return id >= 0 && id < vocab_size() && tables_.special[id];
}

std::optional<int32_t> TokenizerBase::TokenToId(absl::string_view token) const {
  auto it = spelling_to_id_.find(token);
  if (it == spelling_to_id_.end()) return std::nullopt;
  return it->second;
}

}  // namespace verdict::engine::internal
