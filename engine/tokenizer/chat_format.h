// SPDX-License-Identifier: Apache-2.0
// The Llama-3 instruct chat format:
//   <|begin_of_text|><|start_header_id|>{role}<|end_header_id|>\n\n{content, trimmed}<|eot_id|>
//   ... (one block per message) ... and, with add_generation_prompt,
//   <|start_header_id|>assistant<|end_header_id|>\n\n
// exactly as the chat template shipped with Meta-Llama-3-*-Instruct renders it (Jinja `trim`
// strips Python whitespace from both ends of each content; BOS precedes the first message).
// Immutable after Create(); thread-safe. The Tokenizer must outlive it.
#ifndef VERDICT_ENGINE_TOKENIZER_CHAT_FORMAT_H_
#define VERDICT_ENGINE_TOKENIZER_CHAT_FORMAT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "engine/tokenizer/tokenizer.h"

namespace verdict::engine {

struct ChatMessage {
  std::string role;  // "system", "user", "assistant", "ipython", ...
  std::string content;
};

class Llama3ChatFormat {
 public:
  // Errors: FailedPrecondition naming the missing token if `tokenizer` lacks any of
  // <|begin_of_text|>, <|start_header_id|>, <|end_header_id|>, <|eot_id|> (not a Llama-3 style
  // vocabulary).
  static absl::StatusOr<Llama3ChatFormat> Create(const Tokenizer* tokenizer);

  // The prompt text (special tokens written out), as the template renders it.
  std::string Render(absl::Span<const ChatMessage> messages, bool add_generation_prompt) const;

  // The prompt's token ids: equal to tokenizer->Encode(Render(...), {.add_bos = false,
  // .parse_special = true}) for ordinary text. With `parse_special_in_content` false (the
  // default) special-token text inside a role or content (e.g. a user typing "<|eot_id|>") is
  // encoded as plain text instead of ending the turn.
  // Errors: those of Tokenizer::Encode.
  absl::StatusOr<std::vector<int32_t>> Encode(absl::Span<const ChatMessage> messages,
                                              bool add_generation_prompt,
                                              bool parse_special_in_content = false) const;

  // Tokens that end an assistant turn: <|eot_id|>, <|eom_id|> (if present), <|end_of_text|>
  // (if present).
  const std::vector<int32_t>& stop_ids() const { return stop_ids_; }
  bool IsStop(int32_t id) const;

 private:
  Llama3ChatFormat() = default;

  const Tokenizer* tokenizer_ = nullptr;
  int32_t bos_ = -1;
  int32_t start_header_ = -1;
  int32_t end_header_ = -1;
  int32_t eot_ = -1;
  std::vector<int32_t> stop_ids_;
};

// Jinja's `trim` (Python str.strip()): removes leading and trailing whitespace.
std::string TrimPythonWhitespace(absl::string_view text);

}  // namespace verdict::engine

#endif  // VERDICT_ENGINE_TOKENIZER_CHAT_FORMAT_H_
