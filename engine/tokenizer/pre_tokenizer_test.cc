// SPDX-License-Identifier: Apache-2.0
#include "engine/tokenizer/pre_tokenizer.h"

#include <string>
#include <vector>

#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace verdict::engine {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::verdict::testing::StatusIs;

std::vector<std::string> Split(const PreTokenizer& p, const std::string& text) {
  std::vector<std::string> pieces;
  p.Split(text, &pieces);
  return pieces;
}

PreTokenizer RegexOnly(PreTokenizerRegex regex) {
  PreTokenizer p;
  p.AddRegexSplit(regex, SplitBehavior::kIsolated, false);
  return p;
}

struct Case {
  std::string text;
  std::vector<std::string> pieces;
};

// Expected splits are Hugging Face tokenizers' (Oniguruma) output for the same patterns.
TEST(PreTokenizerTest, Llama3RegexHardCases) {
  const PreTokenizer p = RegexOnly(PreTokenizerRegex::kLlama3);
  const std::vector<Case> cases = {
      {"I'm you're WE'VE they'LL", {"I", "'m", " you", "'re", " WE", "'VE", " they", "'LL"}},
      {"1234567 89", {"123", "456", "7", " ", "89"}},
      {"  \n\n  x", {"  \n\n", " ", " x"}},
      {" \t\n x", {" \t\n", " x"}},
      {"x  ", {"x", "  "}},
      {"hello world", {"hello", " world"}},
      {"\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E text",
       {"\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E", " text"}},
      {"a\xF0\x9F\x98\x80"
       "b \xF0\x9F\x98\x80 ",
       {"a",
        "\xF0\x9F\x98\x80"
        "b",
        " \xF0\x9F\x98\x80", " "}},
      {"na\xC3\xAFve \xC2\xBD x\xC2\xB2", {"na\xC3\xAFve", " ", "\xC2\xBD", " x", "\xC2\xB2"}},
      {"foo!!\n\nbar", {"foo", "!!\n\n", "bar"}},
      {"a\r\n\r\nb", {"a", "\r\n\r\n", "b"}},
      {"   ", {"   "}},
      {"x\xC2\xA0y \xE3\x80\x80z", {"x", "\xC2\xA0y", " ", "\xE3\x80\x80z"}},
      {"'hello", {"'hello"}},
      {"\t\tx", {"\t", "\tx"}},
      {"'\xC5\xBF", {"'\xC5\xBF"}},  // long s does not case-fold to 's' here: "[^...]?\p{L}+"
  };
  for (const Case& c : cases) {
    EXPECT_THAT(Split(p, c.text), ElementsAreArray(c.pieces)) << "text: " << c.text;
  }
}

TEST(PreTokenizerTest, Gpt2RegexHardCases) {
  const PreTokenizer p = RegexOnly(PreTokenizerRegex::kGpt2);
  const std::vector<Case> cases = {
      {"I'm you're WE'VE they'LL",
       {"I", "'m", " you", "'re", " WE", "'", "VE", " they", "'", "LL"}},
      {"1234567 89", {"1234567", " 89"}},
      {"  \n\n  x", {"  \n\n ", " x"}},
      {"a\xF0\x9F\x98\x80"
       "b \xF0\x9F\x98\x80 ",
       {"a", "\xF0\x9F\x98\x80", "b", " \xF0\x9F\x98\x80", " "}},
      {"foo!!\n\nbar", {"foo", "!!", "\n", "\n", "bar"}},
      {"a\r\n\r\nb", {"a", "\r\n\r", "\n", "b"}},
      {"'hello", {"'", "hello"}},
      {"\t\tx", {"\t", "\t", "x"}},
      {"x\xC2\xA0y", {"x", "\xC2\xA0", "y"}},
  };
  for (const Case& c : cases) {
    EXPECT_THAT(Split(p, c.text), ElementsAreArray(c.pieces)) << "text: " << c.text;
  }
}

TEST(PreTokenizerTest, InvalidUtf8IsSplitNotDropped) {
  const PreTokenizer p = RegexOnly(PreTokenizerRegex::kLlama3);
  std::vector<std::string> pieces = Split(p,
                                          "ab\xFF"
                                          "cd \x80\x80!");
  std::string joined;
  for (const std::string& s : pieces) joined += s;
  EXPECT_EQ(joined,
            "ab\xFF"
            "cd \x80\x80!");
  EXPECT_THAT(pieces, ElementsAre("ab",
                                  "\xFF"
                                  "cd",
                                  " \x80\x80!"));
}

TEST(PreTokenizerTest, DigitsIndividualAndContiguous) {
  PreTokenizer individual;
  individual.AddDigits(true);
  EXPECT_THAT(Split(individual,
                    "ab12c\xD9\xA3"
                    "4"),
              ElementsAre("ab", "1", "2", "c", "\xD9\xA3", "4"));
  PreTokenizer contiguous;
  contiguous.AddDigits(false);
  EXPECT_THAT(Split(contiguous,
                    "ab12c\xD9\xA3"
                    "4"),
              ElementsAre("ab", "12", "c",
                          "\xD9\xA3"
                          "4"));
}

TEST(PreTokenizerTest, SplitBehaviorsMatchHuggingFace) {
  struct B {
    SplitBehavior behavior;
    std::vector<std::string> plain;
    std::vector<std::string> inverted;
  };
  const std::vector<B> cases = {
      {SplitBehavior::kRemoved, {"a", "b", "c"}, {"-", "-", "-", "-"}},
      {SplitBehavior::kIsolated,
       {"a", "-", "b", "-", "-", "c", "-"},
       {"a", "-", "b", "-", "-", "c", "-"}},
      {SplitBehavior::kMergedWithPrevious, {"a-", "b-", "-", "c-"}, {"a", "-b", "-", "-c", "-"}},
      {SplitBehavior::kMergedWithNext, {"a", "-b", "-", "-c", "-"}, {"a-", "b-", "-", "c-"}},
      {SplitBehavior::kContiguous,
       {"a", "-", "b", "--", "c", "-"},
       {"a", "-", "b", "--", "c", "-"}},
  };
  for (const B& c : cases) {
    PreTokenizer plain, inverted;
    plain.AddLiteralSplit("-", c.behavior, false);
    inverted.AddLiteralSplit("-", c.behavior, true);
    EXPECT_THAT(Split(plain, "a-b--c-"), ElementsAreArray(c.plain));
    EXPECT_THAT(Split(inverted, "a-b--c-"), ElementsAreArray(c.inverted));
  }
}

TEST(PreTokenizerTest, ByteLevelPrefixSpaceAppliesToEveryPiece) {
  PreTokenizer p;
  p.AddDigits(true);
  p.AddByteLevel(/*add_prefix_space=*/true, /*use_regex=*/false);
  EXPECT_THAT(Split(p, "ab1 c"), ElementsAre(" ab", " 1", " c"));
  EXPECT_TRUE(Split(p, "").empty());
}

TEST(PreTokenizerTest, MetaspaceReplacesPrependsAndSplits) {
  const std::string m = "\xE2\x96\x81";
  PreTokenizer always;
  always.AddMetaspace(m, MetaspacePrepend::kAlways, /*split=*/true);
  EXPECT_THAT(Split(always, "hi  there"), ElementsAre(m + "hi", m, m + "there"));
  EXPECT_THAT(Split(always, " hi"), ElementsAre(m + "hi"));  // already starts with "▁"
  PreTokenizer first;
  first.AddMetaspace(m, MetaspacePrepend::kFirst, /*split=*/false);
  std::vector<std::string> pieces;
  first.Split("a b", &pieces, /*at_text_start=*/true);
  first.Split("a b", &pieces, /*at_text_start=*/false);
  EXPECT_THAT(pieces, ElementsAre(m + "a" + m + "b", "a" + m + "b"));
}

TEST(PreTokenizerTest, ParsesOnlyKnownRegexes) {
  EXPECT_THAT(ParsePreTokenizerRegex(PreTokenizerRegexPattern(PreTokenizerRegex::kLlama3)),
              ::verdict::testing::IsOk());
  EXPECT_THAT(ParsePreTokenizerRegex(R"(\w+|[^\w\s]+)"),
              StatusIs(absl::StatusCode::kUnimplemented, ::testing::HasSubstr(R"(\w+)")));
  EXPECT_THAT(ParseSplitBehavior("Sideways"), StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace verdict::engine
