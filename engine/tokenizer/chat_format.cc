// SPDX-License-Identifier: Apache-2.0
#include "engine/tokenizer/chat_format.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/tokenizer/unicode.h"

namespace verdict::engine {
namespace {

constexpr absl::string_view kBos = "<|begin_of_text|>";
constexpr absl::string_view kStartHeader = "<|start_header_id|>";
constexpr absl::string_view kEndHeader = "<|end_header_id|>";
constexpr absl::string_view kEot = "<|eot_id|>";
constexpr absl::string_view kEom = "<|eom_id|>";
constexpr absl::string_view kEndOfText = "<|end_of_text|>";

// Python's str.isspace(): White_Space plus the information separators U+001C..U+001F.
bool IsPythonSpace(const unicode::Char& c) {
  return c.cls == unicode::CharClass::kWhitespace || (c.cp >= 0x1C && c.cp <= 0x1F);
}

}  // namespace

std::string TrimPythonWhitespace(absl::string_view text) {
  const std::vector<unicode::Char> chars = unicode::DecodeChars(text);
  size_t first = 0, last = chars.size();
  while (first < last && IsPythonSpace(chars[first])) ++first;
  while (last > first && IsPythonSpace(chars[last - 1])) --last;
  if (first == last) return std::string();
  return std::string(text.substr(chars[first].begin, chars[last - 1].end - chars[first].begin));
}

absl::StatusOr<Llama3ChatFormat> Llama3ChatFormat::Create(const Tokenizer* tokenizer) {
  Llama3ChatFormat format;
  format.tokenizer_ = tokenizer;
  struct Required {
    absl::string_view name;
    int32_t* id;
  };
  for (const Required& r :
       {Required{kBos, &format.bos_}, Required{kStartHeader, &format.start_header_},
        Required{kEndHeader, &format.end_header_}, Required{kEot, &format.eot_}}) {
    auto id = tokenizer->TokenToId(r.name);
    if (!id) {
      return absl::FailedPreconditionError(
          absl::StrCat("the tokenizer has no ", r.name, " token: not a Llama-3 chat vocabulary"));
    }
    *r.id = *id;
  }
  format.stop_ids_.push_back(format.eot_);
  for (absl::string_view name : {kEom, kEndOfText}) {
    if (auto id = tokenizer->TokenToId(name)) format.stop_ids_.push_back(*id);
  }
  return format;
}

std::string Llama3ChatFormat::Render(absl::Span<const ChatMessage> messages,
                                     bool add_generation_prompt) const {
  std::string text;
  for (size_t i = 0; i < messages.size(); ++i) {
    if (i == 0) absl::StrAppend(&text, kBos);
    absl::StrAppend(&text, kStartHeader, messages[i].role, kEndHeader, "\n\n",
                    TrimPythonWhitespace(messages[i].content), kEot);
  }
  if (add_generation_prompt) absl::StrAppend(&text, kStartHeader, "assistant", kEndHeader, "\n\n");
  return text;
}

absl::StatusOr<std::vector<int32_t>> Llama3ChatFormat::Encode(
    absl::Span<const ChatMessage> messages, bool add_generation_prompt,
    bool parse_special_in_content) const {
  EncodeOptions options;
  options.parse_special = parse_special_in_content;
  std::vector<int32_t> ids;
  auto append = [&](absl::string_view text) -> absl::Status {
    VERDICT_ASSIGN_OR_RETURN(std::vector<int32_t> piece, tokenizer_->Encode(text, options));
    ids.insert(ids.end(), piece.begin(), piece.end());
    return absl::OkStatus();
  };
  for (size_t i = 0; i < messages.size(); ++i) {
    if (i == 0) ids.push_back(bos_);
    ids.push_back(start_header_);
    VERDICT_RETURN_IF_ERROR(append(messages[i].role));
    ids.push_back(end_header_);
    VERDICT_RETURN_IF_ERROR(
        append(absl::StrCat("\n\n", TrimPythonWhitespace(messages[i].content))));
    ids.push_back(eot_);
  }
  if (add_generation_prompt) {
    ids.push_back(start_header_);
    VERDICT_RETURN_IF_ERROR(append("assistant"));
    ids.push_back(end_header_);
    VERDICT_RETURN_IF_ERROR(append("\n\n"));
  }
  return ids;
}

bool Llama3ChatFormat::IsStop(int32_t id) const {
  return std::find(stop_ids_.begin(), stop_ids_.end(), id) != stop_ids_.end();
}

}  // namespace verdict::engine
