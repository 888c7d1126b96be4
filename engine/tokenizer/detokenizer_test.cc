// SPDX-License-Identifier: Apache-2.0
#include "engine/tokenizer/detokenizer.h"

#include <random>
#include <string>
#include <vector>

#include "common/testing/status_matchers.h"
#include "engine/tokenizer/test_util.h"
#include "engine/tokenizer/unicode.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace verdict::engine {
namespace {

using ::verdict::engine::testing::MakeToyBpe;
using ::verdict::engine::testing::ToyBpe;
using ::verdict::engine::testing::ToySpmVocab;
using ::verdict::testing::StatusIs;

const std::string kReplacement = "\xEF\xBF\xBD";

std::vector<int32_t> Bytes(const std::string& s) {
  std::vector<int32_t> ids;
  for (char c : s) ids.push_back(static_cast<uint8_t>(c));  // toy BPE: id == byte
  return ids;
}

class DetokenizerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ToyBpe toy;
    toy.specials = {"<|eot_id|>"};
    tok_ = MakeToyBpe(toy);
    ASSERT_NE(tok_, nullptr);
  }
  std::unique_ptr<Tokenizer> tok_;
};

TEST_F(DetokenizerTest, HoldsBackSplitCharacters) {
  IncrementalDetokenizer d(tok_.get());
  const std::string family = "\xF0\x9F\x91\xA8\xE2\x80\x8D\xF0\x9F\x91\xA9";  // 👨‍👩 (ZWJ)
  std::vector<std::string> pieces;
  for (int32_t id : Bytes("a" + family + "b")) {
    ASSERT_OK_AND_ASSIGN(std::string piece, d.Add(id));
    EXPECT_TRUE(unicode::IsValidUtf8(piece));
    pieces.push_back(piece);
  }
  EXPECT_EQ(pieces[0], "a");
  EXPECT_EQ(pieces[1], "");  // F0
  EXPECT_EQ(pieces[2], "");  // 9F
  EXPECT_EQ(pieces[3], "");  // 91
  EXPECT_EQ(pieces[4], "\xF0\x9F\x91\xA8");
  EXPECT_EQ(d.pending_bytes(), 0u);
  std::string all;
  for (const std::string& p : pieces) all += p;
  EXPECT_EQ(all + d.Flush(), "a" + family + "b");
}

TEST_F(DetokenizerTest, ImpossibleSequencesBecomeReplacementCharacters) {
  IncrementalDetokenizer d(tok_.get());
  ASSERT_OK_AND_ASSIGN(std::string piece, d.Add(0xE2));
  EXPECT_EQ(piece, "");
  ASSERT_OK_AND_ASSIGN(piece, d.Add('x'));  // E2 can no longer complete
  EXPECT_EQ(piece, kReplacement + "x");
  ASSERT_OK_AND_ASSIGN(piece, d.Add(0xFF));
  EXPECT_EQ(piece, kReplacement);
  ASSERT_OK_AND_ASSIGN(piece, d.Add(0xF0));
  ASSERT_OK_AND_ASSIGN(piece, d.Add(0x9F));
  EXPECT_EQ(piece, "");
  EXPECT_EQ(d.pending_bytes(), 2u);
  EXPECT_EQ(d.Flush(), kReplacement);  // truncated at the end of the stream
  EXPECT_EQ(d.pending_bytes(), 0u);
}

TEST_F(DetokenizerTest, SkipsSpecialTokensWhenAsked) {
  IncrementalDetokenizer skip(tok_.get(), /*skip_special=*/true);
  ASSERT_OK_AND_ASSIGN(std::string piece, skip.Add(256));
  EXPECT_EQ(piece, "");
  IncrementalDetokenizer keep(tok_.get(), /*skip_special=*/false);
  ASSERT_OK_AND_ASSIGN(piece, keep.Add(256));
  EXPECT_EQ(piece, "<|eot_id|>");
}

TEST_F(DetokenizerTest, OutOfRangeLeavesStateUnchanged) {
  IncrementalDetokenizer d(tok_.get());
  ASSERT_OK_AND_ASSIGN(std::string piece, d.Add(0xC3));
  EXPECT_THAT(d.Add(5000), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(d.Add(std::vector<int32_t>{0xA9, -1}), StatusIs(absl::StatusCode::kInvalidArgument));
  ASSERT_OK_AND_ASSIGN(piece, d.Add(0xA9));
  EXPECT_EQ(piece, "\xC3\xA9");
}

// Property: for random byte soups split at random points, every piece is valid UTF-8 and the
// concatenation equals Decode() of all ids.
TEST_F(DetokenizerTest, StreamEqualsDecodeForRandomInput) {
  const uint32_t seed = 12345;
  std::mt19937 rng(seed);
  const std::vector<std::string> atoms = {
      "a",    " ",    "\xC3\xA9", "\xE4\xB8\xAD", "\xF0\x9F\x98\x80", "\xE2\x80\x8D",
      "\x80", "\xFF", "\xE2\x82", "\xF0\x9F"};
  for (int round = 0; round < 500; ++round) {
    std::vector<int32_t> ids;
    const int n = 1 + static_cast<int>(rng() % 12);
    for (int i = 0; i < n; ++i) {
      if (rng() % 10 == 0) {
        ids.push_back(256);
        continue;
      }
      for (int32_t id : Bytes(atoms[rng() % atoms.size()])) ids.push_back(id);
    }
    for (bool skip : {false, true}) {
      IncrementalDetokenizer d(tok_.get(), skip);
      std::string streamed;
      for (int32_t id : ids) {
        ASSERT_OK_AND_ASSIGN(std::string piece, d.Add(id));
        ASSERT_TRUE(unicode::IsValidUtf8(piece)) << "seed " << seed << " round " << round;
        streamed += piece;
      }
      streamed += d.Flush();
      ASSERT_OK_AND_ASSIGN(std::string decoded, tok_->Decode(ids, skip));
      ASSERT_EQ(streamed, decoded) << "seed " << seed << " round " << round;
    }
  }
}

TEST(DetokenizerSpmTest, DropsTheFirstLeadingSpaceOnly) {
  ASSERT_OK_AND_ASSIGN(auto tok, CreateSpmTokenizer(ToySpmVocab()));
  const int32_t hello = *tok->TokenToId("\xE2\x96\x81hello");
  const int32_t world = *tok->TokenToId("\xE2\x96\x81world");
  IncrementalDetokenizer d(tok.get(), /*skip_special=*/true);
  std::string text;
  for (int32_t id : {1, hello, world, hello}) {
    ASSERT_OK_AND_ASSIGN(std::string piece, d.Add(id));
    text += piece;
  }
  EXPECT_EQ(text, "hello world hello");
  ASSERT_OK_AND_ASSIGN(std::string decoded, tok->Decode({1, hello, world, hello}, true));
  EXPECT_EQ(text, decoded);
  // Not skipping specials: "<s>" comes first, so nothing is stripped (as HF's decode).
  IncrementalDetokenizer keep(tok.get(), /*skip_special=*/false);
  text.clear();
  for (int32_t id : {1, hello}) {
    ASSERT_OK_AND_ASSIGN(std::string piece, keep.Add(id));
    text += piece;
  }
  EXPECT_EQ(text, "<s> hello");
  // Continuing a prompt: the space before "world" is kept.
  IncrementalDetokenizer after_prompt(tok.get(), /*skip_special=*/true);
  ASSERT_OK(after_prompt.AddContext(std::vector<int32_t>{1, hello}));
  ASSERT_OK_AND_ASSIGN(std::string continued, after_prompt.Add(world));
  EXPECT_EQ(continued, " world");
  EXPECT_THAT(after_prompt.AddContext(std::vector<int32_t>{-5}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  // After Flush() a new sequence starts.
  d.Flush();
  ASSERT_OK_AND_ASSIGN(std::string piece, d.Add(world));
  EXPECT_EQ(piece, "world");
}

}  // namespace
}  // namespace verdict::engine
