// SPDX-License-Identifier: Apache-2.0
// BPE tokenizers in the Hugging Face pipeline shape: text is cut at added tokens, each remaining
// segment is normalized (Prepend / Replace only), split by a PreTokenizer, and each piece is
// encoded by a BpeModel. Two flavours:
//   - byte-level (GPT-2 / Llama 3 / our models): pieces' bytes are mapped to the GPT-2 byte
//     alphabet ("Ġ" for ' ', ...) and decoding maps them back;
//   - SentencePiece-compatible (HF's conversion of Llama 2): "▁" for spaces, <0xNN> byte
//     fallback tokens, decoder Replace("▁", " ") + ByteFallback + Fuse + Strip(" ", 1, 0).
// Built from a parsed tokenizer.json (hf_tokenizer.h) or from a GGUF "gpt2" vocabulary
// (CreateBpeTokenizerFromVocab). The tokenizers created here are immutable and thread-safe.
#ifndef VERDICT_ENGINE_TOKENIZER_BPE_TOKENIZER_H_
#define VERDICT_ENGINE_TOKENIZER_BPE_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/tokenizer/added_tokens.h"
#include "engine/tokenizer/bpe_model.h"
#include "engine/tokenizer/pre_tokenizer.h"
#include "engine/tokenizer/tokenizer.h"

namespace verdict::engine {

// The GPT-2 byte <-> character mapping ("bytes_to_unicode"): printable Latin-1 bytes map to
// themselves, the others to U+0100 and up.
// Appends the byte-level spelling of `bytes` to *out.
void AppendByteLevel(absl::string_view bytes, std::string* out);
// The bytes a byte-level spelled token stands for; a token with a character outside the byte
// alphabet (e.g. an added token "<x y>") stands for its own UTF-8 bytes, like HF's decoder.
std::string ByteLevelToBytes(absl::string_view token);

// A normalizer step applied to each text segment between added tokens.
struct NormalizerStep {
  enum class Kind { kPrepend, kReplace };
  Kind kind = Kind::kPrepend;
  std::string pattern;  // kReplace: the literal replaced
  std::string content;  // kPrepend: what is prepended; kReplace: the replacement
};

struct BpeTokenizerConfig {
  // Model vocabulary by id (byte-level spelled if byte_level); "" for ids the model does not use
  // (added tokens may use them).
  std::vector<std::string> vocab;
  std::vector<std::pair<std::string, std::string>> merges;
  BpeModelOptions model_options;
  std::vector<NormalizerStep> normalizer;
  PreTokenizer pre_tokenizer;
  // Pieces are mapped to the byte alphabet before the model, tokens back to bytes when decoding.
  bool byte_level = true;
  // Decoding when !byte_level: "▁" -> ' ' (decoder_replace_metaspace), "<0xNN>" tokens -> byte
  // (decoder_byte_fallback), and what happens to the first token of a text (decoder_start).
  enum class DecoderStart {
    kKeep,
    kStripOneSpace,   // HF Strip(" ", 1, 0) after Fuse: one leading space of the text
    kDropMetaspaces,  // HF Metaspace decoder: every "▁" of the first token
  };
  bool decoder_replace_metaspace = false;
  bool decoder_byte_fallback = false;
  DecoderStart decoder_start = DecoderStart::kKeep;
  // Their ids may extend the vocabulary beyond `vocab`.
  std::vector<AddedToken> added_tokens;
  // Decoration added by EncodeOptions::add_bos (HF post-processor template).
  std::vector<int32_t> prefix_ids;
  std::vector<int32_t> suffix_ids;
  int32_t bos_id = -1;
  std::vector<int32_t> eos_ids;
};

// Errors: InvalidArgument for inconsistent vocabularies/merges/ids.
absl::StatusOr<std::unique_ptr<Tokenizer>> CreateBpeTokenizer(BpeTokenizerConfig config);

// The pre-tokenizers a GGUF "gpt2" vocabulary can ask for (tokenizer.ggml.pre).
enum class BpePreTokenizerKind {
  kLlama3,  // Split(Llama-3 regex) + ByteLevel(use_regex=false); merges ignored for whole words
  kGpt2,    // ByteLevel(use_regex=true)
  kGpt2IndividualDigits,  // Digits(individual_digits=true) + ByteLevel(use_regex=true)
};

// A GGUF-style "gpt2" vocabulary (tokenizer.ggml.tokens / merges / token_type).
struct BpeVocab {
  std::vector<std::string> tokens;  // byte-level spelled, by id
  std::vector<std::string> merges;  // "left right"
  // GGUF / llama.cpp token types by id (1 normal, 2 unknown, 3 control, 4 user-defined,
  // 5 unused, 6 byte); empty means all normal. Control tokens become special added tokens,
  // user-defined ones non-special added tokens.
  std::vector<int32_t> token_types;
  BpePreTokenizerKind pre_tokenizer = BpePreTokenizerKind::kLlama3;
  int32_t bos_id = -1;
  std::vector<int32_t> eos_ids;
  bool add_bos = false;  // EncodeOptions::add_bos prepends bos_id
};

// Errors: InvalidArgument for malformed merges, sizes that differ, or ids out of range.
absl::StatusOr<std::unique_ptr<Tokenizer>> CreateBpeTokenizerFromVocab(const BpeVocab& vocab);

// Splits a merge line "left right" (exactly one space). InvalidArgument otherwise.
absl::StatusOr<std::pair<std::string, std::string>> ParseMergeLine(absl::string_view line);

}  // namespace verdict::engine

#endif  // VERDICT_ENGINE_TOKENIZER_BPE_TOKENIZER_H_
