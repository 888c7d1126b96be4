// SPDX-License-Identifier: Apache-2.0
// UTF-8 and Unicode helpers for the tokenizers: decoding UTF-8 leniently (invalid bytes become
// single "code units" instead of errors), the character classes the pre-tokenizer regexes use
// (\p{L}, \p{N}, \s, from the generated unicode_tables.inc), and Rust's String::from_utf8_lossy
// replacement rule. All functions are pure and thread-safe.
#ifndef VERDICT_ENGINE_TOKENIZER_UNICODE_H_
#define VERDICT_ENGINE_TOKENIZER_UNICODE_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace verdict::engine::unicode {

// The class of a code point as seen by the pre-tokenizer regexes.
enum class CharClass : uint8_t {
  kOther = 0,       // none of the below (punctuation, symbols, marks, controls, emoji, ...)
  kLetter = 1,      // general category L*  (regex \p{L})
  kNumber = 2,      // general category N*  (regex \p{N}; Rust char::is_numeric)
  kWhitespace = 3,  // White_Space property (regex \s; Rust char::is_whitespace)
};

// Returned for bytes that do not start a well-formed UTF-8 sequence.
inline constexpr char32_t kInvalidCodePoint = 0xFFFFFFFFu;

CharClass ClassOf(char32_t cp);

// One decoded character of a UTF-8 string: its byte range and code point. A byte that is not
// part of a well-formed sequence is its own Char with cp == kInvalidCodePoint (class kOther).
struct Char {
  uint32_t begin = 0;  // byte offset
  uint32_t end = 0;    // byte offset, exclusive
  char32_t cp = 0;
  CharClass cls = CharClass::kOther;
};

// Length in bytes of the well-formed UTF-8 sequence at the start of `s`, or 0 if `s` does not
// start with one (including a truncated sequence). Sets *cp when the result is non-zero.
size_t DecodeOne(absl::string_view s, char32_t* cp);

// Decodes `text` into characters; never fails (see Char).
std::vector<Char> DecodeChars(absl::string_view text);

// True if `s` is entirely well-formed UTF-8.
bool IsValidUtf8(absl::string_view s);

// Appends the UTF-8 encoding of `cp` (which must be a Unicode scalar value) to *out.
void AppendUtf8(char32_t cp, std::string* out);

// Length of the longest prefix of `s` that is a valid *beginning* of a UTF-8 sequence but not
// yet a complete one (0 if `s` starts with a complete sequence or with a byte that can never
// begin a valid one). Used to hold back bytes in streaming decoding.
size_t IncompletePrefixLength(absl::string_view s);

// Appends `bytes` to *out with every maximal ill-formed subsequence replaced by U+FFFD, exactly
// like Rust's String::from_utf8_lossy (and so Hugging Face tokenizers' decoders).
void AppendUtf8Lossy(absl::string_view bytes, std::string* out);

}  // namespace verdict::engine::unicode

#endif  // VERDICT_ENGINE_TOKENIZER_UNICODE_H_
