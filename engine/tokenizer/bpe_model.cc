// SPDX-License-Identifier: Apache-2.0
#include "engine/tokenizer/bpe_model.h"

#include <queue>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/tokenizer/unicode.h"

namespace verdict::engine {

absl::StatusOr<std::unique_ptr<BpeModel>> BpeModel::Create(
    std::vector<std::string> vocab, const std::vector<std::pair<std::string, std::string>>& merges,
    const BpeModelOptions& options) {
  std::unique_ptr<BpeModel> model(new BpeModel());
  model->options_ = options;
  model->token_to_id_.reserve(vocab.size());
  for (size_t id = 0; id < vocab.size(); ++id) {
    if (vocab[id].empty()) continue;
    // A token spelled twice (seen in some GGUF vocabularies) keeps its first id.
    model->token_to_id_.emplace(vocab[id], static_cast<int32_t>(id));
  }
  model->vocab_ = std::move(vocab);
  model->merges_.reserve(merges.size());
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& [left, right] = merges[rank];
    const auto a = model->Find(left);
    const auto b = model->Find(right);
    const auto merged = model->Find(absl::StrCat(left, right));
    if (!a || !b || !merged) {
      return absl::InvalidArgumentError(absl::StrCat("merge #", rank, " (\"", left, "\" \"", right,
                                                     "\") uses a token that is not in the ",
                                                     "vocabulary: \"",
                                                     !a   ? left
                                                     : !b ? right
                                                          : absl::StrCat(left, right),
                                                     "\""));
    }
    // Like HF, a repeated pair takes its last rank.
    model->merges_[PairKey(*a, *b)] = {static_cast<int32_t>(rank), *merged};
  }
  if (options.unk_id >= static_cast<int32_t>(model->vocab_.size())) {
    return absl::InvalidArgumentError(
        absl::StrCat("unk token id ", options.unk_id, " is outside the vocabulary"));
  }
  model->byte_tokens_.assign(256, -1);
  if (options.byte_fallback) {
    for (int b = 0; b < 256; ++b) {
      if (auto id = model->Find(absl::StrFormat("<0x%02X>", b))) model->byte_tokens_[b] = *id;
    }
  }
  return model;
}

std::optional<int32_t> BpeModel::Find(absl::string_view token) const {
  auto it = token_to_id_.find(token);
  if (it == token_to_id_.end()) return std::nullopt;
  return it->second;
}

void BpeModel::Encode(absl::string_view word, std::vector<int32_t>* out) const {
  if (word.empty()) return;
  if (options_.ignore_merges) {
    if (auto id = Find(word)) {
      out->push_back(*id);
      return;
    }
  }
  struct Symbol {
    int32_t id;
    int32_t prev;
    int32_t next;
    bool alive;
  };
  std::vector<Symbol> symbols;
  symbols.reserve(word.size());
  bool previous_unk = false;
  auto push = [&symbols](int32_t id) {
    const auto index = static_cast<int32_t>(symbols.size());
    symbols.push_back({id, index - 1, index + 1, true});
  };
  size_t pos = 0;
  while (pos < word.size()) {
    char32_t cp;
    size_t len = unicode::DecodeOne(word.substr(pos), &cp);
    if (len == 0) len = 1;  // an invalid byte is a character of its own
    const absl::string_view ch = word.substr(pos, len);
    pos += len;
    if (auto id = Find(ch)) {
      push(*id);
      previous_unk = false;
      continue;
    }
    if (options_.byte_fallback) {
      bool all_bytes = true;
      for (char b : ch) all_bytes = all_bytes && byte_tokens_[static_cast<uint8_t>(b)] >= 0;
      if (all_bytes) {
        for (char b : ch) push(byte_tokens_[static_cast<uint8_t>(b)]);
        previous_unk = false;
        continue;
      }
    }
    if (options_.unk_id >= 0) {
      if (!(options_.fuse_unk && previous_unk)) push(options_.unk_id);
      previous_unk = true;
    }
  }
  if (symbols.empty()) return;
  symbols.back().next = -1;

  struct Candidate {
    int32_t rank;
    int32_t pos;
    int32_t new_id;
    bool operator<(const Candidate& o) const {
      // std::priority_queue pops the largest: lowest rank, then leftmost, is "largest".
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  std::vector<Candidate> storage;
  storage.reserve(symbols.size());
  std::priority_queue<Candidate> queue(std::less<Candidate>(), std::move(storage));
  auto consider = [this, &symbols, &queue](int32_t left) {
    const int32_t right = symbols[left].next;
    if (right < 0) return;
    auto it = merges_.find(PairKey(symbols[left].id, symbols[right].id));
    if (it != merges_.end()) queue.push({it->second.rank, left, it->second.new_id});
  };
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(symbols.size()); ++i) consider(i);
  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    Symbol& left = symbols[top.pos];
    if (!left.alive || left.next < 0) continue;
    Symbol& right = symbols[left.next];
    // Stale entry: one of the two symbols changed since it was queued.
    auto it = merges_.find(PairKey(left.id, right.id));
    if (it == merges_.end() || it->second.new_id != top.new_id) continue;
    left.id = top.new_id;
    right.alive = false;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = top.pos;
    if (left.prev >= 0) consider(left.prev);
    consider(top.pos);
  }
  for (const Symbol& s : symbols) {
    if (s.alive) out->push_back(s.id);
  }
}

}  // namespace verdict::engine
