// SPDX-License-Identifier: Apache-2.0
// IncrementalDetokenizer: turns a stream of token ids into text pieces for streaming to a
// client. Only complete, valid UTF-8 is returned: the trailing bytes of a multi-byte character
// split across tokens are held back until the character is complete, and a byte sequence that can
// never become valid is emitted as U+FFFD. The concatenation of everything returned (including
// Flush()) equals Tokenizer::Decode() of all the ids, for any split of the ids.
// Not thread-safe: one instance per sequence, used by one thread at a time. The Tokenizer must
// outlive it.
#ifndef VERDICT_ENGINE_TOKENIZER_DETOKENIZER_H_
#define VERDICT_ENGINE_TOKENIZER_DETOKENIZER_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/tokenizer/tokenizer.h"

namespace verdict::engine {

class IncrementalDetokenizer {
 public:
  // `skip_special`: special tokens produce no text (as Decode(..., true)).
  explicit IncrementalDetokenizer(const Tokenizer* tokenizer, bool skip_special = true);

  // Adds one token; returns the text that became complete (possibly empty).
  // Errors: InvalidArgument if `id` is out of range; the state is then unchanged.
  absl::StatusOr<std::string> Add(int32_t id);
  // Adds several tokens; returns the text that became complete. On error no token of `ids` has
  // been added.
  absl::StatusOr<std::string> Add(absl::Span<const int32_t> ids);

  // Feeds tokens that precede the stream, e.g. the prompt of a generation whose text the caller
  // already has, and discards their text. Afterwards the stream continues that text: in
  // particular a SentencePiece token's leading space is kept ("Hello" + "▁world" streams
  // " world"), which it is not at the start of a text.
  // Errors: InvalidArgument if an id is out of range; no token of `ids` has then been added.
  absl::Status AddContext(absl::Span<const int32_t> ids);

  // Ends the stream: returns the held-back bytes, an incomplete character as U+FFFD. The
  // detokenizer is then back at the start of a new sequence.
  std::string Flush();

  // Bytes held back, waiting for the rest of a character.
  size_t pending_bytes() const { return pending_.size(); }

 private:
  // Emits what of pending_ is complete; keeps an incomplete tail.
  std::string Drain();

  const Tokenizer* tokenizer_;
  bool skip_special_;
  bool at_start_ = true;  // nothing emitted or held yet
  std::string pending_;
};

}  // namespace verdict::engine

#endif  // VERDICT_ENGINE_TOKENIZER_DETOKENIZER_H_
