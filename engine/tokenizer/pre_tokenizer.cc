// SPDX-License-Identifier: Apache-2.0
#include "engine/tokenizer/pre_tokenizer.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"

namespace verdict::engine {
namespace {

using unicode::Char;
using unicode::CharClass;

constexpr absl::string_view kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr absl::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

bool IsLetter(const Char& c) { return c.cls == CharClass::kLetter; }
bool IsNumber(const Char& c) { return c.cls == CharClass::kNumber; }
bool IsSpace(const Char& c) { return c.cls == CharClass::kWhitespace; }
// [^\s\p{L}\p{N}]
bool IsOther(const Char& c) { return c.cls == CharClass::kOther; }
bool IsNewline(const Char& c) { return c.cp == '\r' || c.cp == '\n'; }

char32_t AsciiLower(char32_t cp) { return (cp >= 'A' && cp <= 'Z') ? cp + ('a' - 'A') : cp; }

// Matches 's|'t|'re|'ve|'m|'ll|'d at `pos`; returns the end or `pos`. Case-insensitive matching
// folds ASCII only: the regex engine does not fold U+017F (long s) to 's' here.
size_t MatchContraction(const std::vector<Char>& c, size_t pos, bool ignore_case) {
  const size_t n = c.size();
  if (c[pos].cp != '\'' || pos + 1 >= n) return pos;
  auto fold = [ignore_case](char32_t cp) { return ignore_case ? AsciiLower(cp) : cp; };
  const char32_t c1 = fold(c[pos + 1].cp);
  if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') return pos + 2;
  if (pos + 2 >= n) return pos;
  const char32_t c2 = fold(c[pos + 2].cp);
  if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l')) {
    return pos + 3;
  }
  return pos;
}

template <typename Pred>
size_t RunEnd(const std::vector<Char>& c, size_t pos, Pred pred) {
  while (pos < c.size() && pred(c[pos])) ++pos;
  return pos;
}

// \s+(?!\S) then \s+, at a whitespace character `pos`.
size_t MatchTrailingSpace(const std::vector<Char>& c, size_t pos) {
  const size_t run_end = RunEnd(c, pos, IsSpace);
  // \s+(?!\S): the whole run if it reaches the end of the text, else the run minus its last
  // character (which is followed by whitespace), if that leaves anything.
  if (run_end == c.size()) return run_end;
  if (run_end - pos >= 2) return run_end - 1;
  // \s+
  return run_end;
}

size_t MatchLlama3(const std::vector<Char>& c, size_t pos) {
  const size_t n = c.size();
  const Char& first = c[pos];
  // (?i:'s|'t|'re|'ve|'m|'ll|'d)
  if (size_t e = MatchContraction(c, pos, /*ignore_case=*/true); e != pos) return e;
  // [^\r\n\p{L}\p{N}]?\p{L}+
  if (IsLetter(first)) return RunEnd(c, pos, IsLetter);
  if (!IsNewline(first) && !IsNumber(first) && pos + 1 < n && IsLetter(c[pos + 1])) {
    return RunEnd(c, pos + 1, IsLetter);
  }
  // \p{N}{1,3}
  if (IsNumber(first)) {
    size_t e = pos + 1;
    while (e < n && e < pos + 3 && IsNumber(c[e])) ++e;
    return e;
  }
  //  ?[^\s\p{L}\p{N}]+[\r\n]*
  size_t other_start = pos;
  if (first.cp == ' ' && pos + 1 < n && IsOther(c[pos + 1])) other_start = pos + 1;
  if (IsOther(c[other_start])) {
    const size_t e = RunEnd(c, other_start, IsOther);
    return RunEnd(c, e, IsNewline);
  }
  // Only whitespace is left.
  // \s*[\r\n]+: the whitespace run up to and including its last newline.
  const size_t run_end = RunEnd(c, pos, IsSpace);
  for (size_t j = run_end; j > pos; --j) {
    if (IsNewline(c[j - 1])) return j;
  }
  return MatchTrailingSpace(c, pos);
}

size_t MatchGpt2(const std::vector<Char>& c, size_t pos) {
  const size_t n = c.size();
  const Char& first = c[pos];
  if (size_t e = MatchContraction(c, pos, /*ignore_case=*/false); e != pos) return e;
  const bool space = first.cp == ' ' && pos + 1 < n;
  //  ?\p{L}+ |  ?\p{N}+ |  ?[^\s\p{L}\p{N}]+
  for (bool (*pred)(const Char&) : {IsLetter, IsNumber, IsOther}) {
    if (pred(first)) return RunEnd(c, pos, pred);
    if (space && pred(c[pos + 1])) return RunEnd(c, pos + 1, pred);
  }
  return MatchTrailingSpace(c, pos);
}

struct Span {
  size_t begin;
  size_t end;
  bool flag;  // is a match (before behaviors); should be removed (after)
};

// Hugging Face NormalizedString::split: turns (span, is_match) into (span, remove).
std::vector<Span> ApplyBehavior(std::vector<Span> matches, SplitBehavior behavior) {
  std::vector<Span> out;
  out.reserve(matches.size());
  switch (behavior) {
    case SplitBehavior::kIsolated:
      for (Span s : matches) out.push_back({s.begin, s.end, false});
      break;
    case SplitBehavior::kRemoved:
      out = std::move(matches);
      break;
    case SplitBehavior::kContiguous: {
      bool previous_match = false;
      for (const Span& s : matches) {
        if (s.flag == previous_match && !out.empty()) {
          out.back().end = s.end;
        } else {
          out.push_back({s.begin, s.end, false});
        }
        previous_match = s.flag;
      }
      break;
    }
    case SplitBehavior::kMergedWithPrevious: {
      bool previous_match = false;
      for (const Span& s : matches) {
        if (s.flag && !previous_match && !out.empty()) {
          out.back().end = s.end;
        } else {
          out.push_back({s.begin, s.end, false});
        }
        previous_match = s.flag;
      }
      break;
    }
    case SplitBehavior::kMergedWithNext: {
      bool previous_match = false;
      for (auto it = matches.rbegin(); it != matches.rend(); ++it) {
        if (it->flag && !previous_match && !out.empty()) {
          out.back().begin = it->begin;
        } else {
          out.push_back({it->begin, it->end, false});
        }
        previous_match = it->flag;
      }
      std::reverse(out.begin(), out.end());
      break;
    }
  }
  return out;
}

}  // namespace

absl::string_view PreTokenizerRegexPattern(PreTokenizerRegex regex) {
  return regex == PreTokenizerRegex::kLlama3 ? kLlama3Pattern : kGpt2Pattern;
}

absl::StatusOr<PreTokenizerRegex> ParsePreTokenizerRegex(absl::string_view pattern) {
  if (pattern == kLlama3Pattern) return PreTokenizerRegex::kLlama3;
  if (pattern == kGpt2Pattern) return PreTokenizerRegex::kGpt2;
  return absl::UnimplementedError(
      absl::StrCat("unsupported pre-tokenizer regex \"", pattern,
                   "\"; supported: the Llama-3 pattern and the GPT-2 ByteLevel pattern"));
}

absl::StatusOr<SplitBehavior> ParseSplitBehavior(absl::string_view name) {
  if (name == "Removed") return SplitBehavior::kRemoved;
  if (name == "Isolated") return SplitBehavior::kIsolated;
  if (name == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (name == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (name == "Contiguous") return SplitBehavior::kContiguous;
  return absl::InvalidArgumentError(absl::StrCat("unknown split behavior \"", name, "\""));
}

size_t MatchPreTokenizerRegex(PreTokenizerRegex regex, const std::vector<Char>& chars, size_t pos) {
  if (pos >= chars.size()) return pos;
  return regex == PreTokenizerRegex::kLlama3 ? MatchLlama3(chars, pos) : MatchGpt2(chars, pos);
}

void PreTokenizer::AddRegexSplit(PreTokenizerRegex regex, SplitBehavior behavior, bool invert) {
  Step step;
  step.kind = StepKind::kRegex;
  step.regex = regex;
  step.behavior = behavior;
  step.invert = invert;
  steps_.push_back(std::move(step));
}

void PreTokenizer::AddLiteralSplit(absl::string_view literal, SplitBehavior behavior, bool invert) {
  Step step;
  step.kind = StepKind::kLiteral;
  step.literal = std::string(literal);
  step.behavior = behavior;
  step.invert = invert;
  steps_.push_back(std::move(step));
}

void PreTokenizer::AddDigits(bool individual_digits) {
  Step step;
  step.kind = StepKind::kDigits;
  step.behavior = individual_digits ? SplitBehavior::kIsolated : SplitBehavior::kContiguous;
  steps_.push_back(std::move(step));
}

void PreTokenizer::AddByteLevel(bool add_prefix_space, bool use_regex) {
  if (add_prefix_space) {
    Step step;
    step.kind = StepKind::kPrefixSpace;
    steps_.push_back(std::move(step));
  }
  if (use_regex) AddRegexSplit(PreTokenizerRegex::kGpt2, SplitBehavior::kIsolated, false);
}

void PreTokenizer::AddMetaspace(absl::string_view replacement, MetaspacePrepend prepend,
                                bool split) {
  Step step;
  step.kind = StepKind::kMetaspace;
  step.literal = std::string(replacement);
  step.prepend = prepend;
  step.split = split;
  steps_.push_back(std::move(step));
}

void PreTokenizer::ApplyStep(const Step& step, absl::string_view piece, bool first_piece,
                             std::vector<std::string>* out) const {
  if (step.kind == StepKind::kMetaspace) {
    std::string replaced = absl::StrReplaceAll(piece, {{" ", step.literal}});
    const bool prepend = step.prepend == MetaspacePrepend::kAlways ||
                         (step.prepend == MetaspacePrepend::kFirst && first_piece);
    if (prepend && !absl::StartsWith(replaced, step.literal)) replaced.insert(0, step.literal);
    if (!step.split) {
      out->push_back(std::move(replaced));
      return;
    }
    Step split;
    split.kind = StepKind::kLiteral;
    split.literal = step.literal;
    split.behavior = SplitBehavior::kMergedWithNext;
    ApplyStep(split, replaced, false, out);
    return;
  }
  if (step.kind == StepKind::kPrefixSpace) {
    if (piece.empty() || piece[0] != ' ') {
      out->push_back(absl::StrCat(" ", piece));
    } else {
      out->emplace_back(piece);
    }
    return;
  }
  // (byte span, is_match), covering the whole piece.
  std::vector<Span> matches;
  switch (step.kind) {
    case StepKind::kRegex: {
      const std::vector<Char> chars = unicode::DecodeChars(piece);
      size_t pos = 0, gap_start = 0;
      while (pos < chars.size()) {
        const size_t end = MatchPreTokenizerRegex(step.regex, chars, pos);
        if (end == pos) {
          ++pos;
          continue;
        }
        if (gap_start < pos) matches.push_back({chars[gap_start].begin, chars[pos].begin, false});
        matches.push_back({chars[pos].begin, chars[end - 1].end, true});
        pos = gap_start = end;
      }
      if (gap_start < chars.size()) {
        matches.push_back({chars[gap_start].begin, piece.size(), false});
      }
      break;
    }
    case StepKind::kLiteral: {
      size_t gap_start = 0;
      for (size_t found = piece.find(step.literal); found != absl::string_view::npos;
           found = piece.find(step.literal, gap_start)) {
        if (gap_start < found) matches.push_back({gap_start, found, false});
        matches.push_back({found, found + step.literal.size(), true});
        gap_start = found + step.literal.size();
      }
      if (gap_start < piece.size()) matches.push_back({gap_start, piece.size(), false});
      break;
    }
    case StepKind::kDigits: {
      const std::vector<Char> chars = unicode::DecodeChars(piece);
      size_t gap_start = 0;
      for (const Char& c : chars) {
        if (c.cls != CharClass::kNumber) continue;
        if (gap_start < c.begin) matches.push_back({gap_start, c.begin, false});
        matches.push_back({c.begin, c.end, true});
        gap_start = c.end;
      }
      if (gap_start < piece.size()) matches.push_back({gap_start, piece.size(), false});
      break;
    }
    case StepKind::kPrefixSpace:
    case StepKind::kMetaspace:
      break;
  }
  if (step.invert) {
    for (Span& s : matches) s.flag = !s.flag;
  }
  for (const Span& s : ApplyBehavior(std::move(matches), step.behavior)) {
    if (!s.flag && s.end > s.begin) out->emplace_back(piece.substr(s.begin, s.end - s.begin));
  }
}

void PreTokenizer::Split(absl::string_view text, std::vector<std::string>* pieces,
                         bool at_text_start) const {
  if (text.empty()) return;
  std::vector<std::string> current;
  current.emplace_back(text);
  std::vector<std::string> next;
  for (const Step& step : steps_) {
    next.clear();
    for (size_t i = 0; i < current.size(); ++i) {
      ApplyStep(step, current[i], at_text_start && i == 0, &next);
    }
    current.swap(next);
  }
  for (std::string& piece : current) pieces->push_back(std::move(piece));
}

}  // namespace verdict::engine
