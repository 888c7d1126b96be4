// SPDX-License-Identifier: Apache-2.0
#include "engine/tokenizer/hf_tokenizer.h"

#include <string>
#include <vector>

#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace verdict::engine {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::verdict::testing::StatusIs;
using Json = nlohmann::json;

// A tiny Llama-3-shaped tokenizer.json: byte-level vocabulary of a few characters.
Json ToyLlama3() {
  Json j = Json::parse(R"({
    "version": "1.0",
    "added_tokens": [
      {"id": 9, "content": "<|begin_of_text|>", "single_word": false, "lstrip": false,
       "rstrip": false, "normalized": false, "special": true},
      {"id": 10, "content": "<|eot_id|>", "single_word": false, "lstrip": false,
       "rstrip": false, "normalized": false, "special": true}
    ],
    "normalizer": null,
    "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
      {"type": "Split", "pattern": {"Regex": ""}, "behavior": "Isolated", "invert": false},
      {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}
    ]},
    "post_processor": {"type": "Sequence", "processors": [
      {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true},
      {"type": "TemplateProcessing",
       "single": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}},
                  {"Sequence": {"id": "A", "type_id": 0}}],
       "pair": [],
       "special_tokens": {"<|begin_of_text|>": {"id": "<|begin_of_text|>", "ids": [9],
                                                "tokens": ["<|begin_of_text|>"]}}}
    ]},
    "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true,
                "use_regex": true},
    "model": {"type": "BPE", "dropout": null, "unk_token": null,
              "continuing_subword_prefix": null, "end_of_word_suffix": null, "fuse_unk": false,
              "byte_fallback": false, "ignore_merges": true,
              "vocab": {"a": 0, "b": 1, "c": 2, "\u0120": 3, "ab": 4, "\u0120a": 5, "abc": 6,
                        "\u0120ab": 7, "1": 8},
              "merges": ["a b", "\u0120 a", "\u0120a b"]}
  })");
  j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] =
      R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
  return j;
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Load(const Json& j) {
  return LoadHfTokenizerFromJson(j.dump());
}

TEST(HfTokenizerTest, LoadsLlama3ShapedFile) {
  ASSERT_OK_AND_ASSIGN(auto tok, Load(ToyLlama3()));
  EXPECT_EQ(tok->vocab_size(), 11);
  EXPECT_EQ(tok->bos_id(), 9);
  EXPECT_THAT(tok->eos_ids(), ElementsAre(10));
  // "abc" is in the vocabulary: ignore_merges emits it whole; " ab" via merges.
  ASSERT_OK_AND_ASSIGN(std::vector<int32_t> ids, tok->Encode("abc ab", {}));
  EXPECT_THAT(ids, ElementsAre(6, 7));
  EncodeOptions options;
  options.add_bos = true;
  options.parse_special = true;
  ASSERT_OK_AND_ASSIGN(ids, tok->Encode("a<|eot_id|>1", options));
  EXPECT_THAT(ids, ElementsAre(9, 0, 10, 8));
  ASSERT_OK_AND_ASSIGN(std::string text, tok->Decode({9, 6, 7, 10}, false));
  EXPECT_EQ(text, "<|begin_of_text|>abc ab<|eot_id|>");
}

TEST(HfTokenizerTest, IgnoreMergesOffMergesStepByStep) {
  Json j = ToyLlama3();
  j["model"]["ignore_merges"] = false;
  ASSERT_OK_AND_ASSIGN(auto tok, Load(j));
  ASSERT_OK_AND_ASSIGN(std::vector<int32_t> ids, tok->Encode("abc", {}));
  EXPECT_THAT(ids, ElementsAre(4, 2));  // no merge makes "abc"
}

TEST(HfTokenizerTest, MergesAsPairsEqualMergesAsStrings) {
  Json j = ToyLlama3();
  j["model"]["merges"] = Json::parse(R"([["a", "b"], ["\u0120", "a"], ["\u0120a", "b"]])");
  ASSERT_OK_AND_ASSIGN(auto tok, Load(j));
  ASSERT_OK_AND_ASSIGN(std::vector<int32_t> ids, tok->Encode("abc ab", {}));
  EXPECT_THAT(ids, ElementsAre(6, 7));
}

TEST(HfTokenizerTest, OverridesBosAndEos) {
  HfTokenizerOptions options;
  options.bos_token = "a";
  options.eos_tokens = std::vector<std::string>{"<|eot_id|>", "b"};
  ASSERT_OK_AND_ASSIGN(auto tok, LoadHfTokenizerFromJson(ToyLlama3().dump(), options));
  EXPECT_EQ(tok->bos_id(), 0);
  EXPECT_THAT(tok->eos_ids(), ElementsAre(10, 1));
  options.bos_token = "zzz";
  EXPECT_THAT(LoadHfTokenizerFromJson(ToyLlama3().dump(), options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("zzz")));
}

TEST(HfTokenizerTest, AddedTokenFlags) {
  Json j = ToyLlama3();
  j["added_tokens"].push_back({{"id", 11},
                               {"content", "[M]"},
                               {"lstrip", true},
                               {"rstrip", true},
                               {"special", false},
                               {"single_word", false},
                               {"normalized", false}});
  j["added_tokens"].push_back({{"id", 12},
                               {"content", "ab"},
                               {"single_word", true},
                               {"special", false},
                               {"lstrip", false},
                               {"rstrip", false},
                               {"normalized", false}});
  ASSERT_OK_AND_ASSIGN(auto tok, Load(j));
  // [M] swallows the spaces around it; single-word "ab" only matches as a whole word.
  ASSERT_OK_AND_ASSIGN(std::vector<int32_t> ids, tok->Encode("a  [M]  b", {}));
  EXPECT_THAT(ids, ElementsAre(0, 11, 1));
  ASSERT_OK_AND_ASSIGN(ids, tok->Encode("ab abc", {}));
  EXPECT_THAT(ids, ElementsAre(12, 3, 4, 2));  // " abc": no single-word match
}

TEST(HfTokenizerTest, LoadsSentencePieceStyleFile) {
  // HF's conversion of a Llama-2 tokenizer.model: no pre-tokenizer, Prepend + Replace, byte
  // fallback, decoder Replace + ByteFallback + Fuse + Strip.
  Json j = Json::parse(R"({
    "added_tokens": [{"id": 0, "content": "<unk>", "special": true, "normalized": false},
                     {"id": 1, "content": "<s>", "special": true, "normalized": false}],
    "normalizer": {"type": "Sequence", "normalizers": [
      {"type": "Prepend", "prepend": "\u2581"},
      {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
    "pre_tokenizer": null,
    "post_processor": {"type": "TemplateProcessing",
       "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
       "pair": [], "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
    "decoder": {"type": "Sequence", "decoders": [
      {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
      {"type": "ByteFallback"}, {"type": "Fuse"},
      {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
    "model": {"type": "BPE", "unk_token": "<unk>", "fuse_unk": true, "byte_fallback": true,
              "vocab": {"<unk>": 0, "<s>": 1, "<0xC3>": 2, "<0xA9>": 3, "\u2581": 4, "h": 5,
                        "i": 6, "\u2581h": 7, "\u2581hi": 8},
              "merges": ["\u2581 h", "\u2581h i"]}
  })");
  ASSERT_OK_AND_ASSIGN(auto tok, Load(j));
  EncodeOptions options;
  options.add_bos = true;
  ASSERT_OK_AND_ASSIGN(std::vector<int32_t> ids, tok->Encode("hi h\xC3\xA9", options));
  EXPECT_THAT(ids, ElementsAre(1, 8, 7, 2, 3));
  ASSERT_OK_AND_ASSIGN(std::string text, tok->Decode(ids, true));
  EXPECT_EQ(text, "hi h\xC3\xA9");
  ASSERT_OK_AND_ASSIGN(std::string start, tok->TokenBytesAtStart(8));
  EXPECT_EQ(start, "hi");
  // ids [▁, ▁hi]: only the text's first space goes ("  hi" -> " hi"), as HF's Strip.
  ASSERT_OK_AND_ASSIGN(text, tok->Decode({4, 8}, true));
  EXPECT_EQ(text, " hi");
  ASSERT_OK_AND_ASSIGN(ids, tok->Encode("x", {}));  // unknown, no byte token: <unk>
  EXPECT_THAT(ids, ElementsAre(4, 0));
}

TEST(HfTokenizerTest, LoadsMetaspaceStyleFile) {
  // transformers' newer conversions: Metaspace pre-tokenizer (prepend only at the start of the
  // input, and only if the text does not start with a space) and a Metaspace decoder.
  Json j = Json::parse(R"({
    "added_tokens": [{"id": 1, "content": "<s>", "special": true, "normalized": false}],
    "normalizer": null,
    "pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first",
                      "split": false},
    "decoder": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first",
                "split": false},
    "model": {"type": "BPE", "unk_token": "<unk>", "byte_fallback": true,
              "vocab": {"<unk>": 0, "<s>": 1, "\u2581": 2, "h": 3, "i": 4, "\u2581h": 5,
                        "\u2581hi": 6, "hi": 7, "\u2581\u2581": 8},
              "merges": ["\u2581 h", "\u2581h i", "h i", "\u2581 \u2581"]}
  })");
  ASSERT_OK_AND_ASSIGN(auto tok, Load(j));
  EncodeOptions options;
  options.parse_special = true;
  ASSERT_OK_AND_ASSIGN(std::vector<int32_t> ids, tok->Encode("hi hi", options));
  EXPECT_THAT(ids, ElementsAre(6, 6));
  ASSERT_OK_AND_ASSIGN(ids, tok->Encode(" hi", options));  // no second "▁"
  EXPECT_THAT(ids, ElementsAre(6));
  ASSERT_OK_AND_ASSIGN(ids, tok->Encode("<s>hi", options));  // not at the start: no prefix
  EXPECT_THAT(ids, ElementsAre(1, 7));
  // The Metaspace decoder drops every "▁" of the first token.
  ASSERT_OK_AND_ASSIGN(std::string text, tok->Decode({8, 6}, false));
  EXPECT_EQ(text, " hi");
  ASSERT_OK_AND_ASSIGN(text, tok->Decode({6, 6}, false));
  EXPECT_EQ(text, "hi hi");
  j["pre_tokenizer"]["replacement"] = "_";
  EXPECT_THAT(Load(j), StatusIs(absl::StatusCode::kUnimplemented, HasSubstr("replacement")));
}

TEST(HfTokenizerTest, MalformedFilesAreInvalidArgument) {
  EXPECT_THAT(LoadHfTokenizerFromJson("{not json"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("JSON")));
  EXPECT_THAT(LoadHfTokenizerFromJson("[]"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(LoadHfTokenizerFromJson("{}"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("model")));
  Json j = ToyLlama3();
  j["model"]["merges"].push_back("a zzz");
  EXPECT_THAT(Load(j), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("zzz")));
  j = ToyLlama3();
  j["model"]["merges"].push_back("abc");
  EXPECT_THAT(Load(j), StatusIs(absl::StatusCode::kInvalidArgument));
  j = ToyLlama3();
  j["model"]["merges"].push_back(42);
  EXPECT_THAT(Load(j), StatusIs(absl::StatusCode::kInvalidArgument));
  j = ToyLlama3();
  j["model"]["vocab"]["dup"] = 0;
  EXPECT_THAT(Load(j), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("id 0")));
  j = ToyLlama3();
  j["model"]["vocab"]["neg"] = -3;
  EXPECT_THAT(Load(j), StatusIs(absl::StatusCode::kInvalidArgument));
  j = ToyLlama3();
  j["model"]["vocab"] = Json::array();
  EXPECT_THAT(Load(j), StatusIs(absl::StatusCode::kInvalidArgument));
  j = ToyLlama3();
  j["added_tokens"][0]["content"] = 5;
  EXPECT_THAT(Load(j), StatusIs(absl::StatusCode::kInvalidArgument));
  j = ToyLlama3();
  j["model"]["ignore_merges"] = "yes";
  EXPECT_THAT(Load(j), StatusIs(absl::StatusCode::kInvalidArgument));
  j = ToyLlama3();
  j["post_processor"]["processors"][1]["single"][0]["SpecialToken"]["id"] = "<nope>";
  EXPECT_THAT(Load(j), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("<nope>")));
}

TEST(HfTokenizerTest, UnsupportedComponentsAreUnimplementedAndNamed) {
  Json j = ToyLlama3();
  j["model"]["type"] = "WordPiece";
  EXPECT_THAT(Load(j), StatusIs(absl::StatusCode::kUnimplemented, HasSubstr("WordPiece")));
  j = ToyLlama3();
  j["normalizer"] = {{"type", "NFC"}};
  EXPECT_THAT(Load(j), StatusIs(absl::StatusCode::kUnimplemented, HasSubstr("NFC")));
  j = ToyLlama3();
  j["pre_tokenizer"] = {{"type", "Whitespace"}};
  EXPECT_THAT(Load(j), StatusIs(absl::StatusCode::kUnimplemented, HasSubstr("Whitespace")));
  j = ToyLlama3();
  j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "\\w+";
  EXPECT_THAT(Load(j), StatusIs(absl::StatusCode::kUnimplemented, HasSubstr("\\w+")));
  j = ToyLlama3();
  j["decoder"] = {{"type", "WordPiece"}};
  EXPECT_THAT(Load(j), StatusIs(absl::StatusCode::kUnimplemented, HasSubstr("WordPiece")));
  j = ToyLlama3();
  j["post_processor"] = {{"type", "BertProcessing"}};
  EXPECT_THAT(Load(j), StatusIs(absl::StatusCode::kUnimplemented, HasSubstr("BertProcessing")));
  j = ToyLlama3();
  j["model"]["continuing_subword_prefix"] = "##";
  EXPECT_THAT(Load(j), StatusIs(absl::StatusCode::kUnimplemented));
}

TEST(HfTokenizerTest, MissingFileIsNotFound) {
  EXPECT_THAT(LoadHfTokenizer("/nonexistent/tokenizer.json"),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST(HfTokenizerTest, LoadsFixtureTokenizers) {
  const std::string dir = std::string(VERDICT_SOURCE_DIR) + "/tests/fixtures/models/";
  for (const char* model : {"llama3_gqa", "llama2_mha"}) {
    ASSERT_OK_AND_ASSIGN(auto tok, LoadHfTokenizer(dir + model + "/tokenizer.json"));
    ASSERT_OK_AND_ASSIGN(std::vector<int32_t> ids, tok->Encode("The quick brown fox.", {}));
    EXPECT_FALSE(ids.empty());
    ASSERT_OK_AND_ASSIGN(std::string text, tok->Decode(ids, true));
    EXPECT_EQ(text, "The quick brown fox.") << model;
  }
}

}  // namespace
}  // namespace verdict::engine
