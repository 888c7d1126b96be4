// SPDX-License-Identifier: Apache-2.0
#include "engine/tokenizer/chat_format.h"

#include <algorithm>
#include <string>
#include <vector>

#include "common/testing/status_matchers.h"
#include "engine/tokenizer/test_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace verdict::engine {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::verdict::engine::testing::MakeToyBpe;
using ::verdict::engine::testing::ToyBpe;
using ::verdict::engine::testing::ToySpmVocab;
using ::verdict::testing::StatusIs;

// Ids: 256..259 merged tokens, 260 <|begin_of_text|>, 261 <|end_of_text|>,
// 262 <|start_header_id|>, 263 <|end_header_id|>, 264 <|eom_id|>, 265 <|eot_id|>.
std::unique_ptr<Tokenizer> Llama3Toy() {
  ToyBpe toy;
  toy.merges = {{"\n", "\n"}, {"u", "s"}, {"us", "er"}, {"e", "r"}};
  toy.specials = {"<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                  "<|end_header_id|>", "<|eom_id|>",      "<|eot_id|>"};
  return MakeToyBpe(toy, 260);
}

TEST(ChatFormatTest, RendersTheLlama3Template) {
  auto tok = Llama3Toy();
  ASSERT_NE(tok, nullptr);
  ASSERT_OK_AND_ASSIGN(Llama3ChatFormat format, Llama3ChatFormat::Create(tok.get()));
  const std::vector<ChatMessage> messages = {
      {"system", "Be brief."}, {"user", "  Hi!\n\n"}, {"assistant", "Hello."}};
  EXPECT_EQ(format.Render(messages, /*add_generation_prompt=*/true),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  EXPECT_EQ(format.Render({{"user", "x"}}, false),
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nx<|eot_id|>");
  EXPECT_EQ(format.Render({}, true), "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

TEST(ChatFormatTest, EncodeEqualsEncodingTheRenderedText) {
  auto tok = Llama3Toy();
  ASSERT_NE(tok, nullptr);
  ASSERT_OK_AND_ASSIGN(Llama3ChatFormat format, Llama3ChatFormat::Create(tok.get()));
  const std::vector<ChatMessage> messages = {{"system", "S"}, {"user", "u\n"}};
  ASSERT_OK_AND_ASSIGN(std::vector<int32_t> ids, format.Encode(messages, true));
  EncodeOptions options;
  options.parse_special = true;
  ASSERT_OK_AND_ASSIGN(std::vector<int32_t> expected,
                       tok->Encode(format.Render(messages, true), options));
  EXPECT_EQ(ids, expected);
  EXPECT_EQ(ids.front(), 260);
  EXPECT_EQ(ids[1], 262);
}

TEST(ChatFormatTest, SpecialTextInContentStaysText) {
  auto tok = Llama3Toy();
  ASSERT_OK_AND_ASSIGN(Llama3ChatFormat format, Llama3ChatFormat::Create(tok.get()));
  const std::vector<ChatMessage> messages = {{"user", "a<|eot_id|>b"}};
  ASSERT_OK_AND_ASSIGN(std::vector<int32_t> safe, format.Encode(messages, false));
  EXPECT_EQ(std::count(safe.begin(), safe.end(), 265), 1);  // only the real end of turn
  ASSERT_OK_AND_ASSIGN(std::vector<int32_t> parsed,
                       format.Encode(messages, false, /*parse_special_in_content=*/true));
  EXPECT_EQ(std::count(parsed.begin(), parsed.end(), 265), 2);
}

TEST(ChatFormatTest, StopTokens) {
  auto tok = Llama3Toy();
  ASSERT_OK_AND_ASSIGN(Llama3ChatFormat format, Llama3ChatFormat::Create(tok.get()));
  EXPECT_THAT(format.stop_ids(), ElementsAre(265, 264, 261));
  EXPECT_TRUE(format.IsStop(265));
  EXPECT_FALSE(format.IsStop(260));
}

TEST(ChatFormatTest, RequiresHeaderTokens) {
  ToyBpe toy;
  toy.specials = {"<|begin_of_text|>", "<|eot_id|>"};
  auto tok = MakeToyBpe(toy);
  EXPECT_THAT(Llama3ChatFormat::Create(tok.get()),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("<|start_header_id|>")));
  ASSERT_OK_AND_ASSIGN(auto spm, CreateSpmTokenizer(ToySpmVocab()));
  EXPECT_THAT(Llama3ChatFormat::Create(spm.get()), StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST(ChatFormatTest, TrimsLikePython) {
  EXPECT_EQ(TrimPythonWhitespace(" \t\n x y \r\n"), "x y");
  EXPECT_EQ(TrimPythonWhitespace("\xC2\xA0x\xE3\x80\x80"), "x");  // NBSP, ideographic space
  EXPECT_EQ(TrimPythonWhitespace("\x1Fx\x1C"), "x");              // Python isspace() includes these
  EXPECT_EQ(TrimPythonWhitespace("\xE2\x80\x8Bx"), "\xE2\x80\x8Bx");  // U+200B is not space
  EXPECT_EQ(TrimPythonWhitespace("   "), "");
}

}  // namespace
}  // namespace verdict::engine
