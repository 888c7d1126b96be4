// SPDX-License-Identifier: Apache-2.0
// A model's own chat template (Hugging Face tokenizer_config.json "chat_template", GGUF
// "tokenizer.chat_template"): the Jinja subset those templates use, rendered as transformers
// renders them (a sandboxed environment with trim_blocks and lstrip_blocks; raise_exception;
// bos_token, eos_token, messages, add_generation_prompt).
//
// Supported: text, {{ }}, {# #}, whitespace control (-), if/elif/else, for (loop.index, index0,
// revindex, revindex0, first, last, length, previtem, nextitem; an inline `if` filter; else), set
// (names and namespace attributes), namespace(), raise_exception(); literals (strings, numbers,
// true/false/none in either case, lists, dicts), attributes and subscripts (dict keys, list
// indices, slices), the operators of Jinja expressions (and or not, comparisons, in / not in, is /
// is not tests, + - * / // % ** ~, conditional expressions); break / continue (loop controls) and
// transformers' {% generation %}; strftime_now(); filters trim, length, count, upper,
// lower, capitalize, title, default/d, string, join, first, last, list, items, reverse, replace,
// tojson, safe, int, float, abs, round, select, reject, selectattr, rejectattr, map; tests
// defined, undefined, none, string, number, integer, float, mapping, iterable, sequence, boolean,
// true, false, even, odd, eq/equalto/==, ne, in, lower, upper; string methods strip, lstrip, rstrip, upper, lower, startswith, endswith, split,
// replace, title, capitalize; dict methods items, keys, values, get. Anything else (macros, call
// blocks, other filters or tests) is an error naming the construct when the template is parsed or
// rendered: never silently different output.
//
// Provenance: every output byte knows whether it came from a message's content, so that special-
// token text a user typed stays plain text when the prompt is tokenized (EncodeRenderedChat).
// Immutable after Parse(); thread-safe.
#ifndef VERDICT_ENGINE_TOKENIZER_CHAT_TEMPLATE_H_
#define VERDICT_ENGINE_TOKENIZER_CHAT_TEMPLATE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "engine/tokenizer/tokenizer.h"

namespace verdict::engine {

struct ChatMessage {
  std::string role;  // "system", "user", "assistant", "tool", ...
  std::string content;
};

struct ChatTemplateInputs {
  std::vector<ChatMessage> messages;
  bool add_generation_prompt = true;
  std::string bos_token;  // the vocabulary's spelling, e.g. "<|begin_of_text|>"; empty if none
  std::string eos_token;
};

// A rendered prompt: the text and, per byte, whether it came from a message's content (1) or
// from the template (0).
struct RenderedChat {
  std::string text;
  std::string from_content;  // same length as text, bytes 0 or 1
};

// Python's str.strip() (Jinja's trim): removes leading and trailing Unicode whitespace
// (str.isspace(): White_Space plus U+001C..U+001F).
std::string TrimPythonWhitespace(absl::string_view text);

namespace chat_template_internal {
struct Node;
}

class ChatTemplate {
 public:
  // Errors: InvalidArgument naming the line and the construct (syntax errors, unsupported
  // statements, filters or tests).
  static absl::StatusOr<ChatTemplate> Parse(absl::string_view source);

  // Errors: InvalidArgument for what only rendering finds (an unsupported method, a type error),
  // FailedPrecondition with the template's own message for raise_exception() (e.g. "Conversation
  // roles must alternate user/assistant/user/assistant/...").
  absl::StatusOr<RenderedChat> Render(const ChatTemplateInputs& inputs) const;

 private:
  std::shared_ptr<const std::vector<std::unique_ptr<chat_template_internal::Node>>> body_;
};

// The texts of a vocabulary's special tokens, longest first (a longer one wins where two share a
// prefix): found once per vocabulary (a scan of every id) rather than per prompt.
struct SpecialTokenTexts {
  std::vector<std::pair<std::string, int32_t>> longest_first;
  static SpecialTokenTexts Of(const Tokenizer& tokenizer);
};

// A parsed template with the token strings it renders: what a server keeps per model.
struct ChatPromptFormat {
  ChatTemplate chat_template;
  std::string bos_token;
  std::string eos_token;
  // The special tokens of the tokenizer it encodes with (null: found at each Encode).
  std::shared_ptr<const SpecialTokenTexts> special_tokens;
  // The prompt's ids for `messages` (EncodeRenderedChat of the rendering).
  absl::StatusOr<std::vector<int32_t>> Encode(const Tokenizer& tokenizer, absl::Span<const ChatMessage> messages,
                                              bool add_generation_prompt) const;
};

// Meta's Llama 3 instruct format as a template: what a Llama 3 style vocabulary whose files ship no
// template is given (LoadChatTemplateAt).
absl::string_view BuiltinLlama3ChatTemplate();

// The prompt's token ids as transformers' apply_chat_template(tokenize=True) gives them for
// ordinary text: special tokens the template wrote become their ids, the text between them is
// encoded without specials; special-token text inside message content stays plain text.
// Errors: those of Tokenizer::Encode.
absl::StatusOr<std::vector<int32_t>> EncodeRenderedChat(const Tokenizer& tokenizer, const RenderedChat& rendered);
absl::StatusOr<std::vector<int32_t>> EncodeRenderedChat(const Tokenizer& tokenizer,
                                                        const SpecialTokenTexts& special_tokens,
                                                        const RenderedChat& rendered);

}  // namespace verdict::engine

#endif  // VERDICT_ENGINE_TOKENIZER_CHAT_TEMPLATE_H_
