// SPDX-License-Identifier: Apache-2.0
#include "engine/tokenizer/bpe_tokenizer.h"

#include <string>
#include <vector>

#include "common/testing/status_matchers.h"
#include "engine/tokenizer/bpe_model.h"
#include "engine/tokenizer/test_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace verdict::engine {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::verdict::engine::testing::Bl;
using ::verdict::engine::testing::MakeToyBpe;
using ::verdict::engine::testing::ToyBpe;
using ::verdict::testing::StatusIs;

constexpr int32_t kFirstMerged = 256;

TEST(ByteLevelTest, MapsBytesBothWays) {
  EXPECT_EQ(Bl(" "), "\xC4\xA0");   // Ġ
  EXPECT_EQ(Bl("\n"), "\xC4\x8A");  // Ċ
  EXPECT_EQ(Bl("a!~"), "a!~");
  EXPECT_EQ(Bl("\xC3\xA9"), "\xC3\x83\xC2\xA9");  // é -> Ã©
  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(static_cast<char>(b));
  EXPECT_EQ(ByteLevelToBytes(Bl(all)), all);
  // A token with a character outside the byte alphabet stands for its own UTF-8.
  EXPECT_EQ(ByteLevelToBytes("<x y>"), "<x y>");
}

TEST(BpeModelTest, LowestRankMergesFirst) {
  std::vector<std::string> vocab = {"a", "b", "c", "ab", "bc", "abc"};
  // "b c" outranks "a b": "abc" -> a + bc; no merge (a, bc) exists.
  ASSERT_OK_AND_ASSIGN(auto model, BpeModel::Create(vocab, {{"b", "c"}, {"a", "b"}}, {}));
  std::vector<int32_t> ids;
  model->Encode("abc", &ids);
  EXPECT_THAT(ids, ElementsAre(0, 4));
  // With "a b" first, then "ab c".
  ASSERT_OK_AND_ASSIGN(model, BpeModel::Create(vocab, {{"a", "b"}, {"ab", "c"}, {"b", "c"}}, {}));
  ids.clear();
  model->Encode("abcabc", &ids);
  EXPECT_THAT(ids, ElementsAre(5, 5));
}

TEST(BpeModelTest, TiesGoLeftmostAndIgnoreMergesShortcuts) {
  std::vector<std::string> vocab = {"a", "aa", "aaa"};
  ASSERT_OK_AND_ASSIGN(auto model, BpeModel::Create(vocab, {{"a", "a"}}, {}));
  std::vector<int32_t> ids;
  model->Encode("aaaaa", &ids);
  EXPECT_THAT(ids, ElementsAre(1, 1, 0));
  BpeModelOptions options;
  options.ignore_merges = true;
  ASSERT_OK_AND_ASSIGN(model, BpeModel::Create(vocab, {{"a", "a"}}, options));
  ids.clear();
  model->Encode("aaa", &ids);  // in the vocabulary: emitted whole though no merge makes it
  EXPECT_THAT(ids, ElementsAre(2));
}

TEST(BpeModelTest, UnknownCharacters) {
  std::vector<std::string> vocab = {"a", "<unk>", "<0xC3>", "<0xA9>"};
  BpeModelOptions options;
  ASSERT_OK_AND_ASSIGN(auto model, BpeModel::Create(vocab, {}, options));
  std::vector<int32_t> ids;
  model->Encode("a\xC3\xA9z", &ids);  // no unk: dropped, like HF
  EXPECT_THAT(ids, ElementsAre(0));
  options.unk_id = 1;
  options.fuse_unk = true;
  ASSERT_OK_AND_ASSIGN(model, BpeModel::Create(vocab, {}, options));
  ids.clear();
  model->Encode("xyaz", &ids);
  EXPECT_THAT(ids, ElementsAre(1, 0, 1));
  options.byte_fallback = true;
  ASSERT_OK_AND_ASSIGN(model, BpeModel::Create(vocab, {}, options));
  ids.clear();
  model->Encode("\xC3\xA9z", &ids);
  EXPECT_THAT(ids, ElementsAre(2, 3, 1));
}

TEST(BpeModelTest, RejectsMergesOutsideTheVocabulary) {
  EXPECT_THAT(BpeModel::Create({"a", "b"}, {{"a", "b"}}, {}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("\"ab\"")));
  EXPECT_THAT(BpeModel::Create({"a", "ab"}, {{"a", "b"}}, {}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("\"b\"")));
}

TEST(BpeTokenizerTest, EncodesToyVocabulary) {
  ToyBpe toy;
  toy.merges = {{"h", "e"}, {"l", "l"}, {"he", "ll"}, {"hell", "o"}, {" ", "w"}, {"o", "r"}};
  auto tok = MakeToyBpe(toy);
  ASSERT_NE(tok, nullptr);
  ASSERT_OK_AND_ASSIGN(std::vector<int32_t> ids, tok->Encode("hello world", {}));
  // "hello" -> hello (259+3); " world" -> " w" + "or" + l + d.
  EXPECT_THAT(ids, ElementsAre(kFirstMerged + 3, kFirstMerged + 4, kFirstMerged + 5, 'l', 'd'));
  ASSERT_OK_AND_ASSIGN(std::string text, tok->Decode(ids, false));
  EXPECT_EQ(text, "hello world");
  EXPECT_EQ(tok->TokenToId(Bl(" w")), kFirstMerged + 4);
  EXPECT_EQ(tok->TokenToId("nope"), std::nullopt);
  EXPECT_EQ(tok->vocab_size(), 256 + 6);
}

TEST(BpeTokenizerTest, SpecialTokensParsedOnlyWhenAsked) {
  ToyBpe toy;
  toy.specials = {"<|begin_of_text|>", "<|eot_id|>"};
  auto tok = MakeToyBpe(toy, /*bos=*/256, /*eos=*/{257});
  ASSERT_NE(tok, nullptr);
  EncodeOptions options;
  options.parse_special = true;
  ASSERT_OK_AND_ASSIGN(std::vector<int32_t> ids, tok->Encode("a<|eot_id|>b", options));
  EXPECT_THAT(ids, ElementsAre('a', 257, 'b'));
  options.parse_special = false;
  ASSERT_OK_AND_ASSIGN(ids, tok->Encode("a<|eot_id|>", options));
  EXPECT_EQ(ids.size(), 11u);  // bytes: a < | e o t _ i d | >
  EXPECT_EQ(ids[1], '<');
  options.add_bos = true;
  ASSERT_OK_AND_ASSIGN(ids, tok->Encode("a", options));
  EXPECT_THAT(ids, ElementsAre(256, 'a'));
  EXPECT_TRUE(tok->IsSpecial(257));
  EXPECT_FALSE(tok->IsSpecial('a'));
  EXPECT_FALSE(tok->IsSpecial(100000));
  EXPECT_EQ(tok->bos_id(), 256);
  EXPECT_THAT(tok->eos_ids(), ElementsAre(257));
  ASSERT_OK_AND_ASSIGN(std::string text, tok->Decode({256, 'h', 'i', 257}, false));
  EXPECT_EQ(text, "<|begin_of_text|>hi<|eot_id|>");
  ASSERT_OK_AND_ASSIGN(text, tok->Decode({256, 'h', 'i', 257}, true));
  EXPECT_EQ(text, "hi");
}

TEST(BpeTokenizerTest, UserDefinedTokensAlwaysParsed) {
  BpeVocab v = ToyBpe{}.Vocab();
  v.tokens.push_back("<tool>");
  v.token_types.push_back(4);  // user-defined: a non-special added token
  ASSERT_OK_AND_ASSIGN(auto tok, CreateBpeTokenizerFromVocab(v));
  ASSERT_OK_AND_ASSIGN(std::vector<int32_t> ids, tok->Encode("x<tool>y", {}));
  EXPECT_THAT(ids, ElementsAre('x', 256, 'y'));
  EXPECT_FALSE(tok->IsSpecial(256));
  ASSERT_OK_AND_ASSIGN(std::string text, tok->Decode(ids, /*skip_special=*/true));
  EXPECT_EQ(text, "x<tool>y");
}

TEST(BpeTokenizerTest, InvalidUtf8RoundTripsThroughByteTokens) {
  auto tok = MakeToyBpe(ToyBpe{});
  ASSERT_NE(tok, nullptr);
  const std::string raw = "ok \xF0\x9F\x98 bad \xFF\xC0\xAF end";
  ASSERT_OK_AND_ASSIGN(std::vector<int32_t> ids, tok->Encode(raw, {}));
  std::string bytes;
  for (int32_t id : ids) {
    ASSERT_OK_AND_ASSIGN(std::string b, tok->TokenBytes(id));
    bytes += b;
  }
  EXPECT_EQ(bytes, raw);
  ASSERT_OK_AND_ASSIGN(std::string text, tok->Decode(ids, false));
  EXPECT_EQ(text, "ok \xEF\xBF\xBD bad \xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD end");
}

TEST(BpeTokenizerTest, OutOfRangeIdsAreInvalidArgument) {
  auto tok = MakeToyBpe(ToyBpe{});
  ASSERT_NE(tok, nullptr);
  EXPECT_THAT(tok->Decode({1, 256}, false),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("256")));
  EXPECT_THAT(tok->Decode({-1}, false),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("vocabulary size 256")));
  EXPECT_THAT(tok->TokenBytes(999), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(BpeTokenizerTest, RejectsBadVocabularies) {
  BpeVocab v = ToyBpe{}.Vocab();
  v.merges.push_back("a");
  EXPECT_THAT(CreateBpeTokenizerFromVocab(v), StatusIs(absl::StatusCode::kInvalidArgument));
  v = ToyBpe{}.Vocab();
  v.token_types.pop_back();
  EXPECT_THAT(CreateBpeTokenizerFromVocab(v), StatusIs(absl::StatusCode::kInvalidArgument));
  v = ToyBpe{}.Vocab();
  v.eos_ids = {5000};
  EXPECT_THAT(CreateBpeTokenizerFromVocab(v), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ParseMergeLine("a b c"), StatusIs(absl::StatusCode::kInvalidArgument));
  ASSERT_OK_AND_ASSIGN(auto merge, ParseMergeLine("\xC4\xA0 t"));
  EXPECT_EQ(merge.first, "\xC4\xA0");
  EXPECT_EQ(merge.second, "t");
}

TEST(BpeTokenizerTest, DigitsPreTokenizerGivesSingleDigits) {
  ToyBpe toy;
  toy.merges = {{"1", "2"}, {"12", "3"}};
  toy.pre = BpePreTokenizerKind::kGpt2IndividualDigits;
  auto tok = MakeToyBpe(toy);
  ASSERT_NE(tok, nullptr);
  ASSERT_OK_AND_ASSIGN(std::vector<int32_t> ids, tok->Encode("x123", {}));
  EXPECT_THAT(ids, ElementsAre('x', '1', '2', '3'));
  toy.pre = BpePreTokenizerKind::kGpt2;
  tok = MakeToyBpe(toy);
  ASSERT_OK_AND_ASSIGN(ids, tok->Encode("x123", {}));
  EXPECT_THAT(ids, ElementsAre('x', kFirstMerged + 1));
}

TEST(BpeTokenizerTest, LongInputIsFast) {
  ToyBpe toy;
  toy.merges = {{"a", "a"}, {"aa", "aa"}, {" ", "a"}};
  auto tok = MakeToyBpe(toy);
  ASSERT_NE(tok, nullptr);
  // One 200 KB word: the merge loop must be O(n log n), not quadratic.
  const std::string word(200000, 'a');
  ASSERT_OK_AND_ASSIGN(std::vector<int32_t> ids, tok->Encode(word, {}));
  EXPECT_EQ(ids.size(), 50000u);
  ASSERT_OK_AND_ASSIGN(std::string text, tok->Decode(ids, false));
  EXPECT_EQ(text, word);
}

}  // namespace
}  // namespace verdict::engine
