// SPDX-License-Identifier: Apache-2.0
// Loading a Hugging Face tokenizer.json (the `tokenizers` library's serialization) as a BPE
// Tokenizer. Supported:
//   model:          BPE (vocab; merges as "a b" strings or [a, b] pairs; ignore_merges,
//                   byte_fallback, unk_token, fuse_unk)
//   normalizer:     none, Prepend, Replace (literal), Sequence of those
//   pre_tokenizer:  Sequence of Split (the Llama-3 or GPT-2 regex, or a literal String pattern;
//                   any behavior; invert), Digits and a final ByteLevel; ByteLevel alone; or
//                   Metaspace or none (then the BPE is not byte-level, as in HF's conversions of
//                   Llama 2 / Mistral)
//   post_processor: TemplateProcessing (what EncodeOptions::add_bos adds), ByteLevel, Sequence
//   decoder:        ByteLevel (byte-level BPE); otherwise a Sequence of Replace("▁", " "),
//                   ByteFallback, Fuse, Strip(" ", 0 or 1, 0), Metaspace
//   added_tokens:   with special / single_word / lstrip / rstrip / normalized
// Anything else is rejected with Unimplemented naming the component. Loading is a pure function;
// the result is immutable and thread-safe.
#ifndef VERDICT_ENGINE_TOKENIZER_HF_TOKENIZER_H_
#define VERDICT_ENGINE_TOKENIZER_HF_TOKENIZER_H_

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/tokenizer/tokenizer.h"

namespace verdict::engine {

struct HfTokenizerOptions {
  // tokenizer.json does not say which tokens are BOS / EOS (tokenizer_config.json and
  // generation_config.json do). By default BOS is the first token of the post-processor template
  // (else an added token named <|begin_of_text|>, <s> or <bos>) and EOS the special added tokens
  // among <|end_of_text|>, <|eot_id|>, <|eom_id|>, </s>, <eos>, <|endoftext|>, <|im_end|>,
  // <end_of_turn>. These override that by token content.
  std::optional<std::string> bos_token;
  std::optional<std::vector<std::string>> eos_tokens;
};

// Loads the tokenizer.json file at `path`.
// Errors: NotFound if the file cannot be read; InvalidArgument if it is not valid JSON or is
// malformed (missing/mistyped fields, merges naming unknown tokens, unknown override tokens);
// Unimplemented for a model type, normalizer, pre-tokenizer, regex, post-processor or decoder
// that is not supported (the message names it).
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadHfTokenizer(const std::string& path,
                                                           const HfTokenizerOptions& options = {});

// Same, from the JSON text itself.
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadHfTokenizerFromJson(
    absl::string_view json, const HfTokenizerOptions& options = {});

}  // namespace verdict::engine

#endif  // VERDICT_ENGINE_TOKENIZER_HF_TOKENIZER_H_
