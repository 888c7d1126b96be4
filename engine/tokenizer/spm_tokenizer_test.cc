// SPDX-License-Identifier: Apache-2.0
#include "engine/tokenizer/spm_tokenizer.h"

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
using ::verdict::engine::testing::ToySpmVocab;
using ::verdict::testing::StatusIs;

class SpmTokenizerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    vocab_ = ToySpmVocab();
    auto tok = CreateSpmTokenizer(vocab_);
    ASSERT_TRUE(tok.ok()) << tok.status();
    tok_ = *std::move(tok);
  }
  int32_t Id(const std::string& piece) const { return *tok_->TokenToId(piece); }

  SpmVocab vocab_;
  std::unique_ptr<Tokenizer> tok_;
};

TEST_F(SpmTokenizerTest, MergesHighestScoreFirst) {
  ASSERT_OK_AND_ASSIGN(std::vector<int32_t> ids, tok_->Encode("hello world", {}));
  EXPECT_THAT(ids, ElementsAre(Id("\xE2\x96\x81hello"), Id("\xE2\x96\x81world")));
  ASSERT_OK_AND_ASSIGN(ids, tok_->Encode("hello", {}));
  EXPECT_THAT(ids, ElementsAre(Id("\xE2\x96\x81hello")));
  ASSERT_OK_AND_ASSIGN(ids, tok_->Encode("helo", {}));
  EXPECT_THAT(ids, ElementsAre(Id("\xE2\x96\x81he"), Id("l"), Id("o")));
}

TEST_F(SpmTokenizerTest, SpacesBecomeMetaspaceAndPrefixIsAdded) {
  // "▁▁hello": "▁h" outscores "▁▁", so the second "▁" goes with "hello" (as sentencepiece).
  ASSERT_OK_AND_ASSIGN(std::vector<int32_t> ids, tok_->Encode(" hello", {}));
  EXPECT_THAT(ids, ElementsAre(Id("\xE2\x96\x81"), Id("\xE2\x96\x81hello")));
  ASSERT_OK_AND_ASSIGN(ids, tok_->Encode("", {}));
  EXPECT_TRUE(ids.empty());
  EncodeOptions options;
  options.add_bos = true;
  ASSERT_OK_AND_ASSIGN(ids, tok_->Encode("", options));
  EXPECT_THAT(ids, ElementsAre(1));
}

TEST_F(SpmTokenizerTest, ByteFallbackForUnknownCharacters) {
  ASSERT_OK_AND_ASSIGN(std::vector<int32_t> ids, tok_->Encode("h\xC3\xA9\n", {}));
  EXPECT_THAT(ids, ElementsAre(Id("\xE2\x96\x81h"), Id("<0xC3>"), Id("<0xA9>"), Id("<0x0A>")));
  ASSERT_OK_AND_ASSIGN(std::string text, tok_->Decode(ids, true));
  EXPECT_EQ(text, "h\xC3\xA9\n");
  ASSERT_OK_AND_ASSIGN(std::string bytes, tok_->TokenBytes(Id("<0xC3>")));
  EXPECT_EQ(bytes, "\xC3");
  // Invalid UTF-8 input: each bad byte is its own symbol and falls back to its byte token.
  ASSERT_OK_AND_ASSIGN(ids, tok_->Encode("h\xFF", {}));
  EXPECT_THAT(ids, ElementsAre(Id("\xE2\x96\x81h"), Id("<0xFF>")));
}

TEST(SpmTokenizerNoBytesTest, UnknownWithoutBytesOrUnk) {
  ASSERT_OK_AND_ASSIGN(auto with_unk, CreateSpmTokenizer(ToySpmVocab(/*with_bytes=*/false)));
  ASSERT_OK_AND_ASSIGN(std::vector<int32_t> ids, with_unk->Encode("hxx", {}));
  EXPECT_THAT(ids, ElementsAre(*with_unk->TokenToId("\xE2\x96\x81h"), 0, 0));
  ASSERT_OK_AND_ASSIGN(auto bare, CreateSpmTokenizer(ToySpmVocab(false, /*with_unk=*/false)));
  EXPECT_THAT(bare->Encode("hx", {}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("cannot encode \"x\"")));
}

TEST_F(SpmTokenizerTest, SpecialTokensAndPrefixAfterThem) {
  EncodeOptions options;
  options.parse_special = true;
  ASSERT_OK_AND_ASSIGN(std::vector<int32_t> ids, tok_->Encode("hello</s>world", options));
  // llama.cpp: the text after a special token gets its own "▁" prefix.
  EXPECT_THAT(ids, ElementsAre(Id("\xE2\x96\x81hello"), 2, Id("\xE2\x96\x81world")));
  options.parse_special = false;
  ASSERT_OK_AND_ASSIGN(ids, tok_->Encode("</s>", options));
  EXPECT_EQ(ids.size(), 5u);  // ▁ + the bytes of "</s>" (not pieces here)
  EXPECT_TRUE(tok_->IsSpecial(0));
  EXPECT_TRUE(tok_->IsSpecial(2));
  EXPECT_FALSE(tok_->IsSpecial(Id("h")));
  EXPECT_EQ(tok_->bos_id(), 1);
  EXPECT_THAT(tok_->eos_ids(), ElementsAre(2));
}

TEST_F(SpmTokenizerTest, DecodeStripsOneLeadingSpace) {
  const std::vector<int32_t> ids = {1, Id("\xE2\x96\x81hello"), Id("\xE2\x96\x81world"), 2};
  ASSERT_OK_AND_ASSIGN(std::string text, tok_->Decode(ids, true));
  EXPECT_EQ(text, "hello world");
  ASSERT_OK_AND_ASSIGN(text, tok_->Decode(ids, false));
  EXPECT_EQ(text, "<s> hello world</s>");
  ASSERT_OK_AND_ASSIGN(text, tok_->Decode({Id("\xE2\x96\x81\xE2\x96\x81"), Id("hello")}, true));
  EXPECT_EQ(text, " hello");
  EXPECT_THAT(tok_->Decode({static_cast<int32_t>(vocab_.tokens.size())}, true),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("out of range")));
}

TEST(SpmTokenizerCreateTest, UnusedPiecesAreResegmented) {
  SpmVocab v = ToySpmVocab();
  // Make "▁hello" unused: it may still be formed but must be split back into its halves.
  for (size_t i = 0; i < v.tokens.size(); ++i) {
    if (v.tokens[i] == "\xE2\x96\x81hello") v.token_types[i] = kSpmTokenUnused;
  }
  ASSERT_OK_AND_ASSIGN(auto tok, CreateSpmTokenizer(v));
  ASSERT_OK_AND_ASSIGN(std::vector<int32_t> ids, tok->Encode("hello", {}));
  EXPECT_THAT(ids, ElementsAre(*tok->TokenToId("\xE2\x96\x81he"), *tok->TokenToId("llo")));
}

TEST(SpmTokenizerCreateTest, RejectsInconsistentVocabularies) {
  SpmVocab v = ToySpmVocab();
  v.scores.pop_back();
  EXPECT_THAT(CreateSpmTokenizer(v), StatusIs(absl::StatusCode::kInvalidArgument));
  v = ToySpmVocab();
  v.token_types.push_back(1);
  EXPECT_THAT(CreateSpmTokenizer(v), StatusIs(absl::StatusCode::kInvalidArgument));
  v = ToySpmVocab();
  v.bos_id = 100000;
  EXPECT_THAT(CreateSpmTokenizer(v), StatusIs(absl::StatusCode::kInvalidArgument));
  v = ToySpmVocab();
  v.tokens[5] = "<0xZZ>";
  EXPECT_THAT(CreateSpmTokenizer(v), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(CreateSpmTokenizer(SpmVocab{}), StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace verdict::engine
