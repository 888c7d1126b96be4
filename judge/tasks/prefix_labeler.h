// SPDX-License-Identifier: Apache-2.0
// PrefixLabeler: labels draft tokens the way the judge is trained. A proposed token is CORRECT
// iff the answer text generated so far, up to and including this token, is still a prefix of at
// least one reference answer. Everything works on bytes: a token may end in the middle of a
// UTF-8 character, and the comparison is byte-wise.
//
// Rules for a block of tokens appended after `committed_text`:
//   - once a token is wrong, every later token of the block is wrong too (the text is no longer
//     a prefix of any answer);
//   - a token that would run past the end of every answer is wrong, whitespace included;
//   - a stop token (end of sequence) adds no bytes; it is correct iff the text so far, with
//     trailing ASCII whitespace removed, equals a complete reference answer with trailing ASCII
//     whitespace removed. So a reference "28\n" accepts a stop after "28", and a reference "28"
//     accepts a stop after "28" only (a "\n" token after "28" already ran past the end);
//   - every token after a stop token is wrong (generation has ended);
//   - if `committed_text` itself is not a correct prefix, every token is wrong.
// With PrefixLabelerOptions::ignore_leading_whitespace, leading ASCII whitespace of both the
// generated text and the answers is ignored (a continuation " 28" matches the answer "28").
//
// A PrefixLabeler is immutable after construction: all methods are const and thread-safe.
#ifndef VERDICT_JUDGE_TASKS_PREFIX_LABELER_H_
#define VERDICT_JUDGE_TASKS_PREFIX_LABELER_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "engine/tokenizer/tokenizer.h"

namespace verdict::judge {

struct PrefixLabelerOptions {
  // Ignore leading ASCII whitespace of the generated text and of the answers (see above).
  bool ignore_leading_whitespace = false;
};

class PrefixLabeler {
 public:
  // `answers`: the reference answers (continuations of the prompt). With no answers every token
  // is wrong.
  explicit PrefixLabeler(std::vector<std::string> answers,
                         const PrefixLabelerOptions& options = {});

  // Labels tokens appended after `committed_text` (the answer text already accepted). Returns one
  // label per token: 1 = correct, 0 = wrong. None of the tokens is a stop token.
  std::vector<uint8_t> Label(absl::string_view committed_text,
                             absl::Span<const std::string> token_bytes) const;

  // Same, where is_stop[i] marks token i as an end-of-sequence token (its bytes are ignored).
  // REQUIRES: is_stop.size() == token_bytes.size().
  std::vector<uint8_t> Label(absl::string_view committed_text,
                             absl::Span<const std::string> token_bytes,
                             absl::Span<const bool> is_stop) const;

  // Labels token ids with the tokenizer's bytes (Tokenizer::TokenBytes); the tokenizer's
  // eos_ids() are the stop tokens.
  // Errors: InvalidArgument if an id is out of the tokenizer's range. No state changes.
  absl::StatusOr<std::vector<uint8_t>> LabelTokenIds(const engine::Tokenizer& tokenizer,
                                                     absl::string_view committed_text,
                                                     absl::Span<const int32_t> token_ids) const;

  // True iff `text` is a prefix of at least one answer (the empty text is, if there is an
  // answer).
  bool IsCorrectPrefix(absl::string_view text) const;

  // True iff `text` equals a complete answer, modulo trailing ASCII whitespace on both: where a
  // stop token is correct.
  bool IsCompleteAnswer(absl::string_view text) const;

  const std::vector<std::string>& answers() const { return answers_; }

 private:
  std::vector<uint8_t> LabelImpl(absl::string_view committed_text,
                                 absl::Span<const std::string> token_bytes,
                                 const std::function<bool(size_t)>& is_stop) const;
  // `text` with leading whitespace removed if the option asks for it.
  absl::string_view Normalize(absl::string_view text) const;

  std::vector<std::string> answers_;  // as given
  // Normalized (leading whitespace stripped if the option is set): what prefixes are matched to.
  std::vector<std::string> match_answers_;
  PrefixLabelerOptions options_;
};

}  // namespace verdict::judge

#endif  // VERDICT_JUDGE_TASKS_PREFIX_LABELER_H_
