// SPDX-License-Identifier: Apache-2.0
// Pre-tokenization: splitting text into the pieces that a BPE model encodes independently, as
// Hugging Face tokenizers' pre-tokenizers do. Supported steps: Split with the Llama-3 or GPT-2
// regex (hand-written matchers with the exact leftmost-first backtracking semantics of those two
// patterns; std::regex has no \p{L}) or with a literal string, Digits, and ByteLevel (optional
// prefix space and GPT-2 regex; the byte-to-character mapping itself is done by the BPE model).
// A PreTokenizer is immutable once built: Split() is const and thread-safe.
#ifndef VERDICT_ENGINE_TOKENIZER_PRE_TOKENIZER_H_
#define VERDICT_ENGINE_TOKENIZER_PRE_TOKENIZER_H_

#include <cstddef>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/tokenizer/unicode.h"

namespace verdict::engine {

// The split patterns we implement. Anything else in a tokenizer file is rejected at load time.
enum class PreTokenizerRegex {
  // (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|
  // \s*[\r\n]+|\s+(?!\S)|\s+
  kLlama3,
  // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
  kGpt2,
};

// The pattern text of `regex`, exactly as it appears in tokenizer.json files.
absl::string_view PreTokenizerRegexPattern(PreTokenizerRegex regex);

// Maps a regex string from a tokenizer file to one we implement. Returns Unimplemented naming
// the pattern for any other regex.
absl::StatusOr<PreTokenizerRegex> ParsePreTokenizerRegex(absl::string_view pattern);

// What a split does with the matches of its pattern (Hugging Face SplitDelimiterBehavior).
enum class SplitBehavior {
  kRemoved,
  kIsolated,
  kMergedWithPrevious,
  kMergedWithNext,
  kContiguous,
};

// When the Metaspace pre-tokenizer prepends its replacement character.
enum class MetaspacePrepend { kAlways, kFirst, kNever };

// Parses "Removed" / "Isolated" / ... ; InvalidArgument for anything else.
absl::StatusOr<SplitBehavior> ParseSplitBehavior(absl::string_view name);

// Returns the end (character index, exclusive) of the match of `regex` starting at character
// `pos` of `chars`, or `pos` if there is no match there. Exposed for tests.
size_t MatchPreTokenizerRegex(PreTokenizerRegex regex, const std::vector<unicode::Char>& chars,
                              size_t pos);

// An ordered list of split steps. Each step splits every current piece further.
class PreTokenizer {
 public:
  PreTokenizer() = default;

  void AddRegexSplit(PreTokenizerRegex regex, SplitBehavior behavior, bool invert);
  // REQUIRES: !literal.empty().
  void AddLiteralSplit(absl::string_view literal, SplitBehavior behavior, bool invert);
  // Digits pre-tokenizer: numeric characters (\p{N}) isolated one by one (individual_digits) or
  // as contiguous runs.
  void AddDigits(bool individual_digits);
  // ByteLevel pre-tokenizer: prepends ' ' to every piece not starting with one if
  // `add_prefix_space`, then splits with the GPT-2 regex if `use_regex`.
  void AddByteLevel(bool add_prefix_space, bool use_regex);
  // Metaspace pre-tokenizer: ' ' -> `replacement`; `replacement` prepended to pieces not starting
  // with it (kAlways: every piece; kFirst: only the piece at the very start of the input); then,
  // if `split`, a split before every `replacement`.
  void AddMetaspace(absl::string_view replacement, MetaspacePrepend prepend, bool split);

  bool empty() const { return steps_.empty(); }

  // Splits `text` into non-empty pieces, appended to *pieces. `at_text_start`: `text` begins the
  // whole input (not after an added token), for MetaspacePrepend::kFirst. Never fails; bytes that
  // are not valid UTF-8 are treated as single characters of class "other".
  void Split(absl::string_view text, std::vector<std::string>* pieces,
             bool at_text_start = true) const;

 private:
  enum class StepKind { kRegex, kLiteral, kDigits, kPrefixSpace, kMetaspace };
  struct Step {
    StepKind kind = StepKind::kRegex;
    PreTokenizerRegex regex = PreTokenizerRegex::kGpt2;
    std::string literal;
    SplitBehavior behavior = SplitBehavior::kIsolated;
    bool invert = false;
    MetaspacePrepend prepend = MetaspacePrepend::kAlways;  // kMetaspace
    bool split = false;                                    // kMetaspace
  };

  void ApplyStep(const Step& step, absl::string_view piece, bool first_piece,
                 std::vector<std::string>* out) const;

  std::vector<Step> steps_;
};

}  // namespace verdict::engine

#endif  // VERDICT_ENGINE_TOKENIZER_PRE_TOKENIZER_H_
