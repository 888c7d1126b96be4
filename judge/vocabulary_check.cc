// SPDX-License-Identifier: Apache-2.0
#include "judge/vocabulary_check.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace verdict::judge {

absl::Status CheckSameVocabulary(const engine::Tokenizer& target, const engine::Tokenizer& draft) {
  if (target.vocab_size() != draft.vocab_size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the draft and target must share a vocabulary: the target's tokenizer has ",
        target.vocab_size(), " tokens, the draft's ", draft.vocab_size()));
  }
  for (int32_t id = 0; id < target.vocab_size(); ++id) {
    absl::StatusOr<std::string> a = target.TokenBytes(id);
    absl::StatusOr<std::string> b = draft.TokenBytes(id);
    const bool same = a.ok() == b.ok() && (!a.ok() || *a == *b) && target.IsSpecial(id) == draft.IsSpecial(id);
    if (!same) {
      return absl::InvalidArgumentError(absl::StrCat(
          "the draft and target tokenizers differ at token ", id, ": target \"",
          a.ok() ? absl::CHexEscape(*a) : "<none>", "\", draft \"", b.ok() ? absl::CHexEscape(*b) : "<none>",
          "\""));
    }
  }
  return absl::OkStatus();
}

}  // namespace verdict::judge
