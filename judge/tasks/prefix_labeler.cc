// SPDX-License-Identifier: Apache-2.0
#include "judge/tasks/prefix_labeler.h"

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "common/check.h"
#include "common/status_macros.h"

namespace verdict::judge {

PrefixLabeler::PrefixLabeler(std::vector<std::string> answers, const PrefixLabelerOptions& options)
    : answers_(std::move(answers)), options_(options) {
  match_answers_.reserve(answers_.size());
  for (const std::string& answer : answers_) match_answers_.emplace_back(Normalize(answer));
}

absl::string_view PrefixLabeler::Normalize(absl::string_view text) const {
  return options_.ignore_leading_whitespace ? absl::StripLeadingAsciiWhitespace(text) : text;
}

bool PrefixLabeler::IsCorrectPrefix(absl::string_view text) const {
  const absl::string_view normalized = Normalize(text);
  return std::any_of(match_answers_.begin(), match_answers_.end(),
                     [&](const std::string& answer) {
                       return absl::StartsWith(answer, normalized);
                     });
}

bool PrefixLabeler::IsCompleteAnswer(absl::string_view text) const {
  const absl::string_view normalized = absl::StripTrailingAsciiWhitespace(Normalize(text));
  return std::any_of(match_answers_.begin(), match_answers_.end(),
                     [&](const std::string& answer) {
                       return absl::StripTrailingAsciiWhitespace(answer) == normalized;
                     });
}

std::vector<uint8_t> PrefixLabeler::LabelImpl(absl::string_view committed_text,
                                              absl::Span<const std::string> token_bytes,
                                              const std::function<bool(size_t)>& is_stop) const {
  std::vector<uint8_t> labels(token_bytes.size(), 0);
  std::string text(committed_text);
  bool still_prefix = IsCorrectPrefix(text);
  for (size_t i = 0; i < token_bytes.size() && still_prefix; ++i) {
    if (is_stop(i)) {
      // Generation ends here: every later token stays wrong.
      labels[i] = IsCompleteAnswer(text) ? 1 : 0;
      break;
    }
    text.append(token_bytes[i]);
    still_prefix = IsCorrectPrefix(text);
    labels[i] = still_prefix ? 1 : 0;
  }
  return labels;
}

std::vector<uint8_t> PrefixLabeler::Label(absl::string_view committed_text,
                                          absl::Span<const std::string> token_bytes) const {
  return LabelImpl(committed_text, token_bytes, [](size_t) { return false; });
}

std::vector<uint8_t> PrefixLabeler::Label(absl::string_view committed_text,
                                          absl::Span<const std::string> token_bytes,
                                          absl::Span<const bool> is_stop) const {
  VERDICT_CHECK_MSG(is_stop.size() == token_bytes.size(), "is_stop and token_bytes differ in length");
  return LabelImpl(committed_text, token_bytes, [&](size_t i) { return is_stop[i]; });
}

absl::StatusOr<std::vector<uint8_t>> PrefixLabeler::LabelTokenIds(
    const engine::Tokenizer& tokenizer, absl::string_view committed_text,
    absl::Span<const int32_t> token_ids) const {
  const std::vector<int32_t> eos_ids = tokenizer.eos_ids();
  std::vector<std::string> token_bytes;
  token_bytes.reserve(token_ids.size());
  for (const int32_t id : token_ids) {
    VERDICT_ASSIGN_OR_RETURN(std::string bytes, tokenizer.TokenBytes(id));
    token_bytes.push_back(std::move(bytes));
  }
  return LabelImpl(committed_text, token_bytes, [&](size_t i) {
    return std::find(eos_ids.begin(), eos_ids.end(), token_ids[i]) != eos_ids.end();
  });
}

}  // namespace verdict::judge
