// SPDX-License-Identifier: Apache-2.0
// Building the Tokenizer a GGUF file describes in its tokenizer.ggml.* metadata:
//   tokenizer.ggml.model  "llama" (SentencePiece-style, spm_tokenizer.h) or "gpt2" (byte-level
//                         BPE, bpe_tokenizer.h)
//   tokenizer.ggml.tokens / scores / token_type / merges
//   tokenizer.ggml.bos_token_id / eos_token_id / unknown_token_id / eot_token_id / eom_token_id
//   tokenizer.ggml.add_bos_token, tokenizer.ggml.add_space_prefix (llama.cpp defaults if absent)
//   tokenizer.ggml.pre    the names llama.cpp gives the splits implemented here: "llama-bpe",
//                         "llama3", "llama-v3", "falcon3", ... (Llama-3 regex); "gpt-2", "default",
//                         "phi-2", ... (GPT-2 regex); "smollm" (single digits, then GPT-2 regex)
// Also includes hf_tokenizer.h, so model loaders get both formats from one header. Pure
// functions; the results are immutable and thread-safe.
#ifndef VERDICT_ENGINE_TOKENIZER_GGUF_TOKENIZER_H_
#define VERDICT_ENGINE_TOKENIZER_GGUF_TOKENIZER_H_

#include <memory>

#include "absl/status/statusor.h"
#include "engine/io/gguf.h"
#include "engine/tokenizer/hf_tokenizer.h"
#include "engine/tokenizer/tokenizer.h"

namespace verdict::engine {

// Errors: NotFound if the file has no tokenizer.ggml.model or tokens; InvalidArgument for
// mistyped or inconsistent metadata (array sizes, ids out of range, malformed merges);
// Unimplemented for another tokenizer model or pre-tokenizer (the message names it).
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadGgufTokenizer(const GgufFile& gguf);

}  // namespace verdict::engine

#endif  // VERDICT_ENGINE_TOKENIZER_GGUF_TOKENIZER_H_
