// SPDX-License-Identifier: Apache-2.0
#include "engine/tokenizer/detokenizer.h"

#include <utility>

#include "common/status_macros.h"
#include "engine/tokenizer/unicode.h"

namespace verdict::engine {

IncrementalDetokenizer::IncrementalDetokenizer(const Tokenizer* tokenizer, bool skip_special)
    : tokenizer_(tokenizer), skip_special_(skip_special) {}

absl::StatusOr<std::string> IncrementalDetokenizer::Add(int32_t id) {
  VERDICT_ASSIGN_OR_RETURN(std::string bytes, tokenizer_->TokenBytes(id));
  if (skip_special_ && tokenizer_->IsSpecial(id)) return std::string();
  if (bytes.empty()) return std::string();
  if (at_start_) {
    // As Decode(): the first token with bytes is decoded as a text's first token.
    at_start_ = false;
    VERDICT_ASSIGN_OR_RETURN(bytes, tokenizer_->TokenBytesAtStart(id));
  }
  pending_ += bytes;
  return Drain();
}

absl::StatusOr<std::string> IncrementalDetokenizer::Add(absl::Span<const int32_t> ids) {
  for (int32_t id : ids) VERDICT_RETURN_IF_ERROR(tokenizer_->TokenBytes(id).status());
  std::string text;
  for (int32_t id : ids) {
    VERDICT_ASSIGN_OR_RETURN(std::string piece, Add(id));
    text += piece;
  }
  return text;
}

absl::Status IncrementalDetokenizer::AddContext(absl::Span<const int32_t> ids) {
  VERDICT_ASSIGN_OR_RETURN(std::string discarded, Add(ids));
  return absl::OkStatus();
}

std::string IncrementalDetokenizer::Drain() {
  // Find where a trailing incomplete (but still completable) sequence starts. Sequences are at
  // most 4 bytes, so only the last 3 bytes can start one.
  size_t keep_from = pending_.size();
  const size_t lookback = pending_.size() < 3 ? pending_.size() : 3;
  for (size_t k = 1; k <= lookback; ++k) {
    const size_t start = pending_.size() - k;
    if (unicode::IncompletePrefixLength(absl::string_view(pending_).substr(start)) == k) {
      keep_from = start;
      break;
    }
  }
  std::string text;
  unicode::AppendUtf8Lossy(absl::string_view(pending_).substr(0, keep_from), &text);
  pending_.erase(0, keep_from);
  return text;
}

std::string IncrementalDetokenizer::Flush() {
  std::string text;
  unicode::AppendUtf8Lossy(pending_, &text);
  pending_.clear();
  at_start_ = true;
  return text;
}

}  // namespace verdict::engine
