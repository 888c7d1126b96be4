// SPDX-License-Identifier: Apache-2.0
#include "engine/tokenizer/added_tokens.h"

#include <algorithm>

#include "engine/tokenizer/unicode.h"

namespace verdict::engine {
namespace {

using unicode::CharClass;

// The last character of non-empty `s`, with begin/end relative to `s`. Invalid bytes count as
// characters of class "other".
unicode::Char LastChar(absl::string_view s) {
  size_t start = s.size() - 1;
  // Back up over at most 3 continuation bytes.
  for (size_t k = 0; k < 3 && start > 0 && (static_cast<uint8_t>(s[start]) & 0xC0) == 0x80; ++k) {
    --start;
  }
  std::vector<unicode::Char> chars = unicode::DecodeChars(s.substr(start));
  unicode::Char c = chars.back();
  c.begin += static_cast<uint32_t>(start);
  c.end += static_cast<uint32_t>(start);
  return c;
}

// The first character of non-empty `s`.
unicode::Char FirstChar(absl::string_view s) {
  return unicode::DecodeChars(s.substr(0, std::min<size_t>(4, s.size()))).front();
}

bool IsWordChar(const unicode::Char& c) {
  return c.cls == CharClass::kLetter || c.cls == CharClass::kNumber || c.cp == '_';
}

}  // namespace

void AddedTokenMatcher::Trie::Insert(absl::string_view s, int32_t token) {
  if (nodes.empty()) nodes.emplace_back();
  int32_t node = 0;
  for (char ch : s) {
    const auto b = static_cast<uint8_t>(ch);
    auto& children = nodes[node].children;
    auto it = std::lower_bound(
        children.begin(), children.end(), b,
        [](const std::pair<uint8_t, int32_t>& e, uint8_t v) { return e.first < v; });
    if (it != children.end() && it->first == b) {
      node = it->second;
    } else {
      const auto child = static_cast<int32_t>(nodes.size());
      children.insert(it, {b, child});
      nodes.emplace_back();
      node = child;
    }
  }
  // On duplicate contents the first token wins.
  if (nodes[node].token < 0) nodes[node].token = token;
  first_byte[static_cast<uint8_t>(s[0])] = true;
}

int32_t AddedTokenMatcher::Trie::LongestMatch(absl::string_view s, size_t* len) const {
  int32_t best = -1;
  int32_t node = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    const auto b = static_cast<uint8_t>(s[i]);
    const auto& children = nodes[node].children;
    auto it = std::lower_bound(
        children.begin(), children.end(), b,
        [](const std::pair<uint8_t, int32_t>& e, uint8_t v) { return e.first < v; });
    if (it == children.end() || it->first != b) break;
    node = it->second;
    if (nodes[node].token >= 0) {
      best = nodes[node].token;
      *len = i + 1;
    }
  }
  return best;
}

AddedTokenMatcher::AddedTokenMatcher(const std::vector<AddedToken>& tokens) {
  for (const AddedToken& t : tokens) {
    if (t.content.empty()) continue;
    const auto index = static_cast<int32_t>(tokens_.size());
    tokens_.push_back(t);
    (t.normalized ? normalized_ : raw_).Insert(t.content, index);
  }
}

void AddedTokenMatcher::SplitPass(const Trie& trie, absl::string_view text, bool parse_special,
                                  std::vector<Segment>* out) const {
  if (trie.empty()) {
    if (!text.empty()) out->push_back({text, -1});
    return;
  }
  size_t emitted = 0;  // text before this offset is already in *out
  size_t pos = 0;
  while (pos < text.size()) {
    if (!trie.first_byte[static_cast<uint8_t>(text[pos])]) {
      ++pos;
      continue;
    }
    size_t len = 0;
    const int32_t index = trie.LongestMatch(text.substr(pos), &len);
    if (index < 0) {
      ++pos;
      continue;
    }
    const AddedToken& token = tokens_[index];
    size_t start = pos;
    size_t stop = pos + len;
    pos = stop;  // like HF's non-overlapping match iteration, also for rejected matches
    if (token.special && !parse_special) continue;
    if (start < emitted) continue;  // overlaps a previous token's rstrip
    if (token.single_word) {
      const bool word_before = start > 0 && IsWordChar(LastChar(text.substr(0, start)));
      bool word_after = false;
      if (stop < text.size()) word_after = IsWordChar(FirstChar(text.substr(stop)));
      if (word_before || word_after) continue;
    }
    if (token.lstrip) {
      while (start > emitted) {
        const unicode::Char c = LastChar(text.substr(0, start));
        if (c.cls != CharClass::kWhitespace) break;
        start = c.begin;
      }
    }
    if (token.rstrip) {
      while (stop < text.size()) {
        const unicode::Char c = FirstChar(text.substr(stop));
        if (c.cls != CharClass::kWhitespace) break;
        stop += c.end;
      }
    }
    if (emitted < start) out->push_back({text.substr(emitted, start - emitted), -1});
    out->push_back({text.substr(start, stop - start), token.id});
    emitted = stop;
    pos = std::max(pos, stop);
  }
  if (emitted < text.size()) out->push_back({text.substr(emitted), -1});
}

void AddedTokenMatcher::Split(absl::string_view text, bool parse_special,
                              std::vector<Segment>* out) const {
  if (normalized_.empty()) {
    SplitPass(raw_, text, parse_special, out);
    return;
  }
  std::vector<Segment> first;
  SplitPass(raw_, text, parse_special, &first);
  for (const Segment& s : first) {
    if (s.id >= 0) {
      out->push_back(s);
    } else {
      SplitPass(normalized_, s.text, parse_special, out);
    }
  }
}

}  // namespace verdict::engine
