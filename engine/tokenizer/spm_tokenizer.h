// SPDX-License-Identifier: Apache-2.0
// SentencePiece-style BPE tokenizer for "llama" vocabularies as stored in GGUF (Llama 2):
// spaces become "▁", a "▁" is prepended to the text (and after every added token), and the
// adjacent pair whose merged piece has the highest score is merged first (ties: leftmost), as
// sentencepiece's BPE model and llama.cpp do; pieces missing from the vocabulary fall back to
// their bytes' <0xNN> tokens (or <unk>). The tokenizer is immutable and thread-safe.
#ifndef VERDICT_ENGINE_TOKENIZER_SPM_TOKENIZER_H_
#define VERDICT_ENGINE_TOKENIZER_SPM_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/tokenizer/tokenizer.h"

namespace verdict::engine {

// GGUF / llama.cpp token types (tokenizer.ggml.token_type).
enum SpmTokenType : int32_t {
  kSpmTokenUndefined = 0,
  kSpmTokenNormal = 1,
  kSpmTokenUnknown = 2,
  kSpmTokenControl = 3,
  kSpmTokenUserDefined = 4,
  kSpmTokenUnused = 5,
  kSpmTokenByte = 6,
};

struct SpmVocab {
  std::vector<std::string> tokens;   // pieces by id, "▁" for spaces, "<0x0A>" for byte tokens
  std::vector<float> scores;         // by id; empty means all 0
  std::vector<int32_t> token_types;  // SpmTokenType by id; empty means all normal
  int32_t bos_id = -1;
  int32_t eos_id = -1;
  int32_t unk_id = -1;
  bool add_bos = true;           // EncodeOptions::add_bos prepends bos_id
  bool add_space_prefix = true;  // prepend "▁" (and strip the leading space when decoding)
};

// Control and unknown tokens are special (parsed from text with parse_special, skipped by
// Decode(..., skip_special=true)); user-defined tokens are always parsed from text.
// Errors: InvalidArgument if the vocabulary is empty, the arrays' sizes differ, or an id is out
// of range.
absl::StatusOr<std::unique_ptr<Tokenizer>> CreateSpmTokenizer(SpmVocab vocab);

}  // namespace verdict::engine

#endif  // VERDICT_ENGINE_TOKENIZER_SPM_TOKENIZER_H_
