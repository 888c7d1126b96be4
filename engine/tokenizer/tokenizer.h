// SPDX-License-Identifier: Apache-2.0
// The Tokenizer interface: text <-> token ids for Llama-family models. Implementations:
//   - byte-level BPE from a Hugging Face tokenizer.json (hf_tokenizer.h) or from a GGUF "gpt2"
//     vocabulary (bpe_tokenizer.h): Llama 3 and our own models;
//   - SentencePiece-style "llama" vocabularies as stored in GGUF (spm_tokenizer.h): Llama 2;
//   - LoadGgufTokenizer (gguf_tokenizer.h) picks one of those from a GGUF file's metadata.
// A Tokenizer is immutable after creation: every method is const and safe to call from any
// number of threads at once.
#ifndef VERDICT_ENGINE_TOKENIZER_TOKENIZER_H_
#define VERDICT_ENGINE_TOKENIZER_TOKENIZER_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace verdict::engine {

struct EncodeOptions {
  // Add the model's beginning-of-sequence decoration: what Hugging Face calls
  // add_special_tokens=True (the tokenizer.json post-processor template, e.g. <|begin_of_text|>
  // for Llama 3) and llama.cpp add_special (BOS if the vocabulary asks for it). A tokenizer
  // without such a decoration adds nothing.
  bool add_bos = false;
  // Special (control) tokens written literally in the text, e.g. "<|eot_id|>", become their ids.
  // When false they are encoded as plain text. Non-special added tokens (HF added tokens with
  // special=false, GGUF user-defined tokens) are always recognized, as in HF and llama.cpp.
  bool parse_special = false;
};

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Encodes `text`. Text that is not valid UTF-8 is still encoded, never rejected: each byte that
  // is not part of a well-formed sequence is treated as a character of its own (class "other" for
  // the pre-tokenizer regexes) and becomes its byte token (byte-level BPE) or byte-fallback token
  // (SentencePiece), so decoding gives the original bytes back.
  // Errors: InvalidArgument only if the text needs a token the vocabulary lacks (e.g. a
  // SentencePiece vocabulary without byte tokens and without <unk>). No state changes.
  virtual absl::StatusOr<std::vector<int32_t>> Encode(absl::string_view text,
                                                      const EncodeOptions& options) const = 0;

  // Decodes `ids` to text, as Hugging Face's decode does: the tokens' bytes are concatenated and
  // every maximal invalid UTF-8 subsequence becomes U+FFFD (Rust's from_utf8_lossy, exactly HF's
  // byte-level decoder). Special tokens are rendered as their text (e.g. "<|eot_id|>") unless
  // `skip_special`. SentencePiece vocabularies drop the space prefix encoding added (see
  // TokenBytesAtStart()). Known difference: for <0xNN> byte tokens that do not form valid
  // UTF-8, HF's ByteFallback decoder gives one U+FFFD per byte of the whole byte run (and
  // sentencepiece one per invalid byte); we use the from_utf8_lossy rule everywhere, so that
  // IncrementalDetokenizer can reproduce Decode() exactly while streaming.
  // Errors: InvalidArgument naming the id and the vocabulary size if an id is out of range.
  virtual absl::StatusOr<std::string> Decode(absl::Span<const int32_t> ids,
                                             bool skip_special) const = 0;

  // The raw bytes token `id` stands for (possibly not valid UTF-8 on its own: one byte of a
  // multi-byte character). SentencePiece "▁" is returned as ' ' (for the first token of a text
  // see TokenBytesAtStart()). Special tokens give their text.
  // Errors: InvalidArgument if `id` is out of range.
  virtual absl::StatusOr<std::string> TokenBytes(int32_t id) const = 0;

  // Number of ids: every id in [0, vocab_size()) is valid.
  virtual int32_t vocab_size() const = 0;
  // Beginning-of-sequence token, or -1 if the vocabulary has none.
  virtual int32_t bos_id() const = 0;
  // Tokens that end generation (end-of-text, end-of-turn, ...); may be empty.
  virtual std::vector<int32_t> eos_ids() const = 0;
  // True for special (control) tokens: the ones Decode(..., skip_special=true) drops.
  virtual bool IsSpecial(int32_t id) const = 0;
  // The id of the token whose vocabulary entry (HF tokenizer.json / GGUF spelling, e.g.
  // "<|eot_id|>", "Ġthe", "▁the", "<0x0A>") is exactly `token`.
  virtual std::optional<int32_t> TokenToId(absl::string_view token) const = 0;
  // The bytes token `id` stands for when it is the first token (with non-empty bytes, after
  // skipped specials) of a decoded text: SentencePiece-style vocabularies drop the space that
  // encoding prefixed ("▁hello" -> "hello"). Equal to TokenBytes() for byte-level BPE.
  // Errors: InvalidArgument if `id` is out of range.
  virtual absl::StatusOr<std::string> TokenBytesAtStart(int32_t id) const { return TokenBytes(id); }
};

}  // namespace verdict::engine

#endif  // VERDICT_ENGINE_TOKENIZER_TOKENIZER_H_
