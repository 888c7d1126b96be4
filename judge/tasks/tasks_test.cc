// SPDX-License-Identifier: Apache-2.0
#include <cstdint>
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/testing/status_matchers.h"
#include "engine/tokenizer/hf_tokenizer.h"
#include "engine/tokenizer/tokenizer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "judge/tasks/answer_checker.h"
#include "judge/tasks/prefix_labeler.h"
#include "judge/tasks/task_file.h"

namespace verdict::judge {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::verdict::testing::StatusIs;

// Writes `contents` to a fresh file in the test's temporary directory and returns its path.
std::string WriteTempFile(const std::string& name, const std::string& contents) {
  const char* dir = std::getenv("TEST_TMPDIR");
  const std::string path =
      absl::StrCat(dir != nullptr ? dir : ::testing::TempDir(), "/judge_tasks_", name);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << contents;
  return path;
}

// ---------------------------------------------------------------------------------------------
// Task file parsing.

TEST(ParseTaskLineTest, ParsesEveryField) {
  ASSERT_OK_AND_ASSIGN(
      TaskExample example,
      ParseTaskLine(R"({"id": "q1", "prompt": "2+2=", "answers": ["4", "four"],)"
                    R"( "final_answer": "4", "labels": {"tokens": [5, 7], "labels": [1, 0]},)"
                    R"( "extra": {"ignored": true}})",
                    3));
  EXPECT_EQ(example.id, "q1");
  EXPECT_EQ(example.line, 3);
  EXPECT_EQ(example.prompt, "2+2=");
  EXPECT_THAT(example.answers, ElementsAre("4", "four"));
  EXPECT_EQ(example.final_answer, "4");
  EXPECT_THAT(example.labeled_tokens, ElementsAre(5, 7));
  EXPECT_THAT(example.token_labels, ElementsAre(1, 0));
}

TEST(ParseTaskLineTest, SingleAnswerDefaultIdAndNumericFields) {
  ASSERT_OK_AND_ASSIGN(TaskExample example,
                       ParseTaskLine(R"({"prompt": "p", "answer": "a b"})", 12));
  EXPECT_EQ(example.id, "12");
  EXPECT_THAT(example.answers, ElementsAre("a b"));
  EXPECT_FALSE(example.final_answer.has_value());
  EXPECT_TRUE(example.labeled_tokens.empty());

  ASSERT_OK_AND_ASSIGN(example,
                       ParseTaskLine(R"({"id": 42, "prompt": "p", "answer": "a",)"
                                     R"( "final_answer": 28})",
                                     1));
  EXPECT_EQ(example.id, "42");
  EXPECT_EQ(example.final_answer, "28");
}

TEST(ParseTaskLineTest, LabelsWithoutAnswersAndBooleanLabels) {
  ASSERT_OK_AND_ASSIGN(
      TaskExample example,
      ParseTaskLine(R"({"prompt": "p", "labels": {"tokens": [1, 2, 3], "labels": [true, 1, 0]}})",
                    1));
  EXPECT_TRUE(example.answers.empty());
  EXPECT_THAT(example.labeled_tokens, ElementsAre(1, 2, 3));
  EXPECT_THAT(example.token_labels, ElementsAre(1, 1, 0));
}

TEST(ParseTaskLineTest, RejectsEachMalformedKindWithLineNumber) {
  const struct {
    const char* line;
    const char* problem;
  } cases[] = {
      {R"({"prompt": "p", "answer": )", "not valid JSON"},
      {R"(["prompt", "p"])", "not a JSON object"},
      {R"({"answer": "a"})", "missing \"prompt\""},
      {R"({"prompt": "", "answer": "a"})", "empty \"prompt\""},
      {R"({"prompt": 5, "answer": "a"})", "\"prompt\" is not a string"},
      {R"({"prompt": "p"})", "no answers and no labels"},
      {R"({"prompt": "p", "answers": []})", "no answers and no labels"},
      {R"({"prompt": "p", "answers": "a"})", "\"answers\" is not an array"},
      {R"({"prompt": "p", "answers": ["a", 3]})", "\"answers\"[1] is not a string"},
      {R"({"prompt": "p", "answers": ["a", ""]})", "\"answers\"[1] is empty"},
      {R"({"prompt": "p", "answer": ["a"]})", "\"answer\" is not a string"},
      {R"({"prompt": "p", "answer": "a", "answers": ["b"]})", "both"},
      {R"({"prompt": "p", "answer": "a", "id": [1]})", "\"id\" is not a string or number"},
      {R"({"prompt": "p", "answer": "a", "final_answer": null})", "\"final_answer\""},
      {R"({"prompt": "p", "labels": [1, 0]})", "\"labels\" is not an object"},
      {R"({"prompt": "p", "labels": {"labels": [1]}})", "\"labels.tokens\""},
      {R"({"prompt": "p", "labels": {"tokens": [1], "labels": [1, 0]}})", "has 1 entries"},
      {R"({"prompt": "p", "labels": {"tokens": [1, 2], "labels": [1, 2]}})", "is not 0 or 1"},
      {R"({"prompt": "p", "labels": {"tokens": [1], "labels": [0.5]}})", "is not 0 or 1"},
      {R"({"prompt": "p", "labels": {"tokens": [-1], "labels": [1]}})", "not a token id"},
      {R"({"prompt": "p", "labels": {"tokens": [4294967296], "labels": [1]}})", "not a token id"},
      {R"({"prompt": "p", "labels": {"tokens": ["a"], "labels": [1]}})", "not an integer"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.line);
    EXPECT_THAT(ParseTaskLine(c.line, 7),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         ::testing::AllOf(HasSubstr("line 7: "), HasSubstr(c.problem))));
  }
}

TEST(ReadTaskFileTest, SkipsMalformedLinesAndBlankLines) {
  const std::string path = WriteTempFile(
      "mixed.jsonl",
      "{\"prompt\": \"a\", \"answer\": \"1\"}\n"
      "\n"
      "   \t\n"
      "{\"answer\": \"x\"}\n"
      "{\"prompt\": \"b\", \"answers\": [\"2\"]}\r\n"
      "not json\n"
      "{\"prompt\": \"c\", \"labels\": {\"tokens\": [1], \"labels\": [2]}}\n"
      "{\"prompt\": \"d\", \"answer\": \"4\"}");  // no final newline
  ASSERT_OK_AND_ASSIGN(TaskFile file, ReadTaskFile(path));
  ASSERT_EQ(file.examples.size(), 3u);
  EXPECT_EQ(file.examples[0].prompt, "a");
  EXPECT_EQ(file.examples[0].line, 1);
  EXPECT_EQ(file.examples[1].prompt, "b");
  EXPECT_EQ(file.examples[1].line, 5);
  EXPECT_EQ(file.examples[1].id, "5");
  EXPECT_THAT(file.examples[1].answers, ElementsAre("2"));  // '\r' dropped
  EXPECT_EQ(file.examples[2].prompt, "d");
  EXPECT_EQ(file.examples[2].line, 8);
  EXPECT_EQ(file.skipped_lines, 3);
  EXPECT_THAT(file.skip_reasons, ElementsAre("line 4: missing \"prompt\"",
                                             "line 6: not valid JSON",
                                             HasSubstr("line 7: \"labels.labels\"[0] = 2")));
}

TEST(ReadTaskFileTest, StrictModeFailsOnFirstMalformedLine) {
  const std::string path = WriteTempFile(
      "strict.jsonl",
      "{\"prompt\": \"a\", \"answer\": \"1\"}\n\n{\"prompt\": \"b\"}\n{\"answer\": \"x\"}\n");
  TaskReadOptions options;
  options.strict = true;
  EXPECT_THAT(ReadTaskFile(path, options),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       ::testing::AllOf(HasSubstr(path), HasSubstr("line 3: no answers"))));
}

TEST(ReadTaskFileTest, SkipReasonsAreCapped) {
  std::string contents;
  for (int i = 0; i < 25; ++i) contents += "{}\n";
  contents += "{\"prompt\": \"a\", \"answer\": \"1\"}\n";
  ASSERT_OK_AND_ASSIGN(TaskFile file, ReadTaskFile(WriteTempFile("capped.jsonl", contents)));
  EXPECT_EQ(file.examples.size(), 1u);
  EXPECT_EQ(file.skipped_lines, 25);
  EXPECT_EQ(file.skip_reasons.size(), static_cast<size_t>(kMaxSkipReasons));
}

TEST(ReadTaskFileTest, MaxExamplesAndOverlongLines) {
  const std::string long_answer(200, 'x');
  const std::string path = WriteTempFile(
      "long.jsonl", absl::StrCat("{\"prompt\": \"a\", \"answer\": \"", long_answer, "\"}\n",
                                 "{\"prompt\": \"b\", \"answer\": \"1\"}\n",
                                 "{\"prompt\": \"c\", \"answer\": \"2\"}\n",
                                 "{\"prompt\": \"d\", \"answer\": \"3\"}\n"));
  TaskReadOptions options;
  options.max_line_bytes = 100;
  options.max_examples = 2;
  ASSERT_OK_AND_ASSIGN(TaskFile file, ReadTaskFile(path, options));
  ASSERT_EQ(file.examples.size(), 2u);
  EXPECT_EQ(file.examples[0].prompt, "b");
  EXPECT_EQ(file.examples[1].prompt, "c");
  EXPECT_EQ(file.skipped_lines, 1);
  EXPECT_THAT(file.skip_reasons, ElementsAre("line 1: longer than 100 bytes"));

  options.strict = true;
  EXPECT_THAT(ReadTaskFile(path, options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("line 1: longer than")));
}

TEST(ReadTaskFileTest, NothingUsableIsInvalidArgument) {
  EXPECT_THAT(ReadTaskFile(WriteTempFile("bad.jsonl", "{\"prompt\": \"a\"}\n[]\n")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       ::testing::AllOf(HasSubstr("no usable example"),
                                        HasSubstr("2 malformed lines"),
                                        HasSubstr("line 1: no answers and no labels"))));
  EXPECT_THAT(ReadTaskFile(WriteTempFile("empty.jsonl", "")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no usable example")));
  EXPECT_THAT(ReadTaskFile(WriteTempFile("blank.jsonl", "\n \n\n")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no usable example")));
}

TEST(ReadTaskFileTest, MissingFileIsNotFound) {
  EXPECT_THAT(ReadTaskFile("/nonexistent/dir/tasks.jsonl"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("/nonexistent/dir/tasks.jsonl")));
}

// ---------------------------------------------------------------------------------------------
// PrefixLabeler.

TEST(PrefixLabelerTest, MultipleAnswers) {
  const PrefixLabeler labeler({"The answer is 28.", "It is 28."});
  EXPECT_TRUE(labeler.IsCorrectPrefix(""));
  EXPECT_TRUE(labeler.IsCorrectPrefix("It"));
  EXPECT_FALSE(labeler.IsCorrectPrefix("It was"));
  EXPECT_THAT(labeler.Label("", {"The", " answer", " is", " 28", "."}),
              ElementsAre(1, 1, 1, 1, 1));
  EXPECT_THAT(labeler.Label("", {"It", " is", " 28", "."}), ElementsAre(1, 1, 1, 1));
  // Continuing after committed text: only answers consistent with it count.
  EXPECT_THAT(labeler.Label("It is", {" 28", ".", "."}), ElementsAre(1, 1, 0));
  EXPECT_THAT(labeler.Label("The", {" is"}), ElementsAre(0));
  // Committed text that is already wrong: everything is wrong.
  EXPECT_THAT(labeler.Label("Nope", {"The"}), ElementsAre(0));
  // An empty block.
  EXPECT_TRUE(labeler.Label("It", {}).empty());
}

TEST(PrefixLabelerTest, WrongTokenPoisonsTheRestOfTheBlock) {
  const PrefixLabeler labeler({"abcdef"});
  // "x" is wrong; "cd" would fit after "ab" but the text is "abx..." now.
  EXPECT_THAT(labeler.Label("", {"ab", "x", "cd", "ef"}), ElementsAre(1, 0, 0, 0));
  // A token that is right only in part is wrong.
  EXPECT_THAT(labeler.Label("ab", {"cdX", "ef"}), ElementsAre(0, 0));
}

TEST(PrefixLabelerTest, TokensSplittingAUtf8Character) {
  // "é" is C3 A9, "€" is E2 82 AC.
  const PrefixLabeler labeler({"caf\xC3\xA9 \xE2\x82\xAC", "caf\xC3\xA8"});
  EXPECT_THAT(labeler.Label("", {"caf", "\xC3", "\xA9", " \xE2", "\x82", "\xAC"}),
              ElementsAre(1, 1, 1, 1, 1, 1));
  // The lead byte matches both answers; the wrong continuation byte does not.
  EXPECT_THAT(labeler.Label("caf", {"\xC3", "\xAA", " "}), ElementsAre(1, 0, 0));
  EXPECT_THAT(labeler.Label("caf\xC3", {"\xA8"}), ElementsAre(1));
  EXPECT_TRUE(labeler.IsCorrectPrefix("caf\xC3\xA9 \xE2\x82"));
  EXPECT_FALSE(labeler.IsCorrectPrefix("caf\xC3\xA9 \xE2\x82\xAD"));
}

TEST(PrefixLabelerTest, TokensPastTheEndAndStopTokens) {
  const PrefixLabeler labeler({"28", "twenty-eight\n"});
  const bool stops[] = {false, true};
  // A stop right after a complete answer is correct.
  EXPECT_THAT(labeler.Label("", {"2", "8", "</s>"}, {false, false, true}), ElementsAre(1, 1, 1));
  // Too early: wrong.
  EXPECT_THAT(labeler.Label("", {"2", "</s>"}, stops), ElementsAre(1, 0));
  // Any token past the end of every answer is wrong, whitespace included, and poisons the stop.
  EXPECT_THAT(labeler.Label("28", {"\n", "</s>"}, stops), ElementsAre(0, 0));
  EXPECT_THAT(labeler.Label("28", {"8"}), ElementsAre(0));
  // Trailing whitespace of an answer is not required before the stop.
  EXPECT_THAT(labeler.Label("twenty-eight", {"</s>"}, {true}), ElementsAre(1));
  EXPECT_THAT(labeler.Label("twenty-", {"eight", "\n", "</s>"}, {false, false, true}),
              ElementsAre(1, 1, 1));
  // Nothing after a stop is correct.
  EXPECT_THAT(labeler.Label("28", {"</s>", ""}, stops), ElementsAre(0, 0));
  EXPECT_THAT(labeler.Label("2", {"8", "</s>", "8"}, {false, true, false}),
              ElementsAre(1, 1, 0));
  EXPECT_TRUE(labeler.IsCompleteAnswer("28 "));
  EXPECT_FALSE(labeler.IsCompleteAnswer("2"));
}

TEST(PrefixLabelerTest, IgnoreLeadingWhitespaceOption) {
  const PrefixLabeler exact({"28"});
  EXPECT_THAT(exact.Label("", {" 28"}), ElementsAre(0));
  PrefixLabelerOptions options;
  options.ignore_leading_whitespace = true;
  const PrefixLabeler lenient({"\n28"}, options);
  EXPECT_THAT(lenient.Label("", {" ", "28", "</s>"}, {false, false, true}),
              ElementsAre(1, 1, 1));
  EXPECT_THAT(lenient.Label(" ", {"2", " "}), ElementsAre(1, 0));
}

TEST(PrefixLabelerTest, NoAnswersMeansEverythingIsWrong) {
  const PrefixLabeler labeler({});
  EXPECT_FALSE(labeler.IsCorrectPrefix(""));
  EXPECT_THAT(labeler.Label("", {"a", "</s>"}, {false, true}), ElementsAre(0, 0));
}

TEST(PrefixLabelerTest, RealTokenizerOfTheDemoModel) {
  ASSERT_OK_AND_ASSIGN(
      std::unique_ptr<engine::Tokenizer> tokenizer,
      engine::LoadHfTokenizer(
          absl::StrCat(VERDICT_SOURCE_DIR, "/assets/models/tiny-stories/tokenizer.json")));
  const std::string answer = " Once upon a time, Lily saw a big caf\xC3\xA9 with a red door.";
  const PrefixLabeler labeler({answer});
  ASSERT_OK_AND_ASSIGN(std::vector<int32_t> ids, tokenizer->Encode(answer, {}));
  ASSERT_GE(ids.size(), 8u);

  std::vector<std::string> bytes;
  for (const int32_t id : ids) {
    ASSERT_OK_AND_ASSIGN(std::string b, tokenizer->TokenBytes(id));
    bytes.push_back(b);
  }
  EXPECT_EQ(absl::StrJoin(bytes, ""), answer);
  // This small vocabulary has no token for "\xC3\xA9": its bytes are split across tokens.
  EXPECT_TRUE(std::any_of(bytes.begin(), bytes.end(), [](const std::string& b) {
    return absl::EndsWith(b, "\xC3");
  }));
  EXPECT_THAT(labeler.Label("", bytes), ::testing::Each(1));

  // All correct as ids too, with the end-of-text token at the end.
  ASSERT_FALSE(tokenizer->eos_ids().empty());
  std::vector<int32_t> with_eos = ids;
  with_eos.push_back(tokenizer->eos_ids().front());
  ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> labels, labeler.LabelTokenIds(*tokenizer, "", with_eos));
  EXPECT_THAT(labels, ::testing::Each(1));

  // Replace one token in the middle with a different one: it and all later tokens are wrong.
  const size_t replaced = ids.size() / 2;
  std::vector<int32_t> changed = ids;
  ASSERT_OK_AND_ASSIGN(changed[replaced], [&]() -> absl::StatusOr<int32_t> {
    for (const char* candidate : {" the", " dog", "x", " ball"}) {
      auto other = tokenizer->Encode(candidate, {});
      if (!other.ok()) return other.status();
      if (other->size() == 1 && other->front() != ids[replaced]) return other->front();
    }
    return absl::NotFoundError("no single-token replacement");
  }());
  ASSERT_OK_AND_ASSIGN(labels, labeler.LabelTokenIds(*tokenizer, "", changed));
  for (size_t i = 0; i < labels.size(); ++i) {
    EXPECT_EQ(labels[i], i < replaced ? 1 : 0) << "token " << i;
  }

  // Committed text plus the rest of the block, split in the middle of "é".
  const size_t cut = answer.find('\xC3') + 1;
  ASSERT_OK_AND_ASSIGN(std::vector<int32_t> tail, tokenizer->Encode(answer.substr(cut), {}));
  ASSERT_OK_AND_ASSIGN(labels, labeler.LabelTokenIds(*tokenizer, answer.substr(0, cut), tail));
  EXPECT_THAT(labels, ::testing::Each(1));

  EXPECT_THAT(labeler.LabelTokenIds(*tokenizer, "", {tokenizer->vocab_size()}),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

// ---------------------------------------------------------------------------------------------
// Answer checking.

TEST(ExtractFinalNumberTest, FindsTheLastNumber) {
  EXPECT_EQ(ExtractFinalNumber("3 apples and 25 pears make 28."), "28");
  EXPECT_EQ(ExtractFinalNumber("It drops to -4 degrees"), "-4");
  EXPECT_EQ(ExtractFinalNumber("x=-4.5"), "-4.5");
  EXPECT_EQ(ExtractFinalNumber("10-4"), "4");
  EXPECT_EQ(ExtractFinalNumber("costs $3.50 total"), "3.50");
  EXPECT_EQ(ExtractFinalNumber("about .5 of it"), "0.5");
  EXPECT_EQ(ExtractFinalNumber("$1,234,567 dollars"), "1234567");
  EXPECT_EQ(ExtractFinalNumber("1,2 and"), "2");
  EXPECT_EQ(ExtractFinalNumber("Natalia sold 48/2 = 24 clips.\n#### 72"), "72");
  EXPECT_EQ(ExtractFinalNumber("no numbers here"), std::nullopt);
  EXPECT_EQ(ExtractFinalNumber(""), std::nullopt);
  EXPECT_EQ(ExtractFinalNumber("a - b."), std::nullopt);
}

TEST(CheckAnswerTest, FinalAnswerMode) {
  TaskExample example;
  example.answers = {"She has 7 + 21 = 28 apples. #### 28"};
  example.final_answer = "28";
  EXPECT_TRUE(CheckAnswer(example, "So 3 + 25 = 28", CheckMode::kFinalAnswer));
  EXPECT_TRUE(CheckAnswer(example, "The answer is 28.0.", CheckMode::kFinalAnswer));
  EXPECT_TRUE(CheckAnswer(example, "answer: 028", CheckMode::kFinalAnswer));
  EXPECT_FALSE(CheckAnswer(example, "28 minus 1 is 27", CheckMode::kFinalAnswer));
  EXPECT_FALSE(CheckAnswer(example, "-28", CheckMode::kFinalAnswer));
  EXPECT_FALSE(CheckAnswer(example, "twenty-eight", CheckMode::kFinalAnswer));

  // Without final_answer, the last number of the first answer.
  example.final_answer.reset();
  EXPECT_TRUE(CheckAnswer(example, "#### 28", CheckMode::kFinalAnswer));
  EXPECT_FALSE(CheckAnswer(example, "#### 7", CheckMode::kFinalAnswer));

  TaskExample negative;
  negative.final_answer = "-0.50";
  EXPECT_TRUE(CheckAnswer(negative, "it is -.5", CheckMode::kFinalAnswer));
  EXPECT_FALSE(CheckAnswer(negative, "it is 0.5", CheckMode::kFinalAnswer));
  TaskExample zero;
  zero.final_answer = "0";
  EXPECT_TRUE(CheckAnswer(zero, "-0.0", CheckMode::kFinalAnswer));

  // No number expected: never correct.
  TaskExample wordy;
  wordy.answers = {"yes"};
  EXPECT_FALSE(CheckAnswer(wordy, "yes", CheckMode::kFinalAnswer));
}

TEST(CheckAnswerTest, ReferenceMode) {
  TaskExample example;
  example.answers = {"Paris", "It is Paris.\n"};
  EXPECT_TRUE(CheckAnswer(example, "Paris", CheckMode::kReference));
  EXPECT_TRUE(CheckAnswer(example, "Paris \n\t", CheckMode::kReference));
  EXPECT_TRUE(CheckAnswer(example, "It is Paris.", CheckMode::kReference));
  EXPECT_FALSE(CheckAnswer(example, " Paris", CheckMode::kReference));
  EXPECT_FALSE(CheckAnswer(example, "paris", CheckMode::kReference));
  EXPECT_FALSE(CheckAnswer(TaskExample{}, "", CheckMode::kReference));
}

TEST(CheckModeTest, ParsesNames) {
  ASSERT_OK_AND_ASSIGN(CheckMode mode, ParseCheckMode("final-answer"));
  EXPECT_EQ(mode, CheckMode::kFinalAnswer);
  ASSERT_OK_AND_ASSIGN(mode, ParseCheckMode("reference"));
  EXPECT_EQ(mode, CheckMode::kReference);
  EXPECT_EQ(CheckModeName(CheckMode::kFinalAnswer), "final-answer");
  EXPECT_EQ(CheckModeName(CheckMode::kReference), "reference");
  EXPECT_THAT(ParseCheckMode("exact"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       ::testing::AllOf(HasSubstr("\"exact\""), HasSubstr("final-answer"),
                                        HasSubstr("reference"))));
}

}  // namespace
}  // namespace verdict::judge
