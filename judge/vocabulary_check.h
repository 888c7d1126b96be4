// SPDX-License-Identifier: Apache-2.0
// Speculative decoding passes token ids between the draft and the target, so both must mean the same
// text by every id. Real pairs (Llama-3.2-1B drafting for Llama-3.1-70B) share a tokenizer exactly.
#ifndef VERDICT_JUDGE_VOCABULARY_CHECK_H_
#define VERDICT_JUDGE_VOCABULARY_CHECK_H_

#include "absl/status/status.h"
#include "engine/tokenizer/tokenizer.h"

namespace verdict::judge {

// OK when both tokenizers have the same size, the same bytes for every id and the same special
// tokens; otherwise kInvalidArgument naming the first difference.
absl::Status CheckSameVocabulary(const engine::Tokenizer& target, const engine::Tokenizer& draft);

}  // namespace verdict::judge

#endif  // VERDICT_JUDGE_VOCABULARY_CHECK_H_
