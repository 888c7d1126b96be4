// SPDX-License-Identifier: Apache-2.0
// The BPE model of Hugging Face tokenizers: a vocabulary plus ranked merges, applied to one
// pre-tokenized word at a time with the lowest-rank merge first (ties: leftmost), using a
// priority queue over a linked list of symbols (O(n log n) per word). Immutable after Create();
// Encode() is const and thread-safe.
#ifndef VERDICT_ENGINE_TOKENIZER_BPE_MODEL_H_
#define VERDICT_ENGINE_TOKENIZER_BPE_MODEL_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace verdict::engine {

struct BpeModelOptions {
  // A word that is itself in the vocabulary is emitted as that token without merging (HF
  // "ignore_merges"; Llama 3 sets it).
  bool ignore_merges = false;
  // Characters missing from the vocabulary become their UTF-8 bytes' "<0xNN>" tokens.
  bool byte_fallback = false;
  // Token for characters missing from the vocabulary (after byte fallback), or -1: then such
  // characters are dropped, as HF does.
  int32_t unk_id = -1;
  // Consecutive unknown characters give a single unk token.
  bool fuse_unk = false;
};

class BpeModel {
 public:
  // `vocab[id]` is the token spelled in the model's alphabet (byte-level characters for GPT-2
  // style vocabularies); an empty string marks an unused id. `merges` are (left, right) pairs,
  // rank = position.
  // Errors: InvalidArgument if a merge names a token that is not in the vocabulary or whose
  // concatenation is not. A token spelled twice keeps its first id.
  static absl::StatusOr<std::unique_ptr<BpeModel>> Create(
      std::vector<std::string> vocab,
      const std::vector<std::pair<std::string, std::string>>& merges,
      const BpeModelOptions& options);

  // Appends the tokens of `word` (non-empty, in the model's alphabet) to *out.
  void Encode(absl::string_view word, std::vector<int32_t>* out) const;

  std::optional<int32_t> Find(absl::string_view token) const;
  const std::vector<std::string>& vocab() const { return vocab_; }
  size_t num_merges() const { return merges_.size(); }

 private:
  BpeModel() = default;

  struct MergeResult {
    int32_t rank;
    int32_t new_id;
  };
  static uint64_t PairKey(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }

  std::vector<std::string> vocab_;
  absl::flat_hash_map<std::string, int32_t> token_to_id_;
  absl::flat_hash_map<uint64_t, MergeResult> merges_;
  std::vector<int32_t> byte_tokens_;  // "<0xNN>" ids for byte fallback, -1 if absent
  BpeModelOptions options_;
};

}  // namespace verdict::engine

#endif  // VERDICT_ENGINE_TOKENIZER_BPE_MODEL_H_
