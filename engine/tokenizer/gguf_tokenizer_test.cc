// SPDX-License-Identifier: Apache-2.0
#include "engine/tokenizer/gguf_tokenizer.h"

#include <cstring>
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
using ::verdict::testing::StatusIs;

// Builds a GGUF v3 file with metadata only.
class GgufBuilder {
 public:
  GgufBuilder& Str(const std::string& key, const std::string& value) {
    Key(key, GgufType::kString);
    String(value);
    return *this;
  }
  GgufBuilder& U32(const std::string& key, uint32_t value) {
    Key(key, GgufType::kUint32);
    Pod(value);
    return *this;
  }
  GgufBuilder& Bool(const std::string& key, bool value) {
    Key(key, GgufType::kBool);
    Pod(static_cast<uint8_t>(value));
    return *this;
  }
  GgufBuilder& Strings(const std::string& key, const std::vector<std::string>& values) {
    Key(key, GgufType::kArray);
    Pod(static_cast<uint32_t>(GgufType::kString));
    Pod(static_cast<uint64_t>(values.size()));
    for (const std::string& v : values) String(v);
    return *this;
  }
  GgufBuilder& Floats(const std::string& key, const std::vector<float>& values) {
    Key(key, GgufType::kArray);
    Pod(static_cast<uint32_t>(GgufType::kFloat32));
    Pod(static_cast<uint64_t>(values.size()));
    for (float v : values) Pod(v);
    return *this;
  }
  GgufBuilder& Ints(const std::string& key, const std::vector<int32_t>& values) {
    Key(key, GgufType::kArray);
    Pod(static_cast<uint32_t>(GgufType::kInt32));
    Pod(static_cast<uint64_t>(values.size()));
    for (int32_t v : values) Pod(v);
    return *this;
  }

  // The file bytes; kept alive by the builder for GgufFile::Parse.
  absl::StatusOr<std::unique_ptr<GgufFile>> Parse() {
    file_.clear();
    file_ += "GGUF";
    AppendPod(&file_, uint32_t{3});
    AppendPod(&file_, uint64_t{0});  // tensors
    AppendPod(&file_, count_);
    file_ += kv_;
    while (file_.size() % 32 != 0) file_.push_back('\0');
    return GgufFile::Parse(reinterpret_cast<const uint8_t*>(file_.data()), file_.size());
  }

 private:
  template <typename T>
  static void AppendPod(std::string* out, T v) {
    char bytes[sizeof(T)];
    std::memcpy(bytes, &v, sizeof(T));
    out->append(bytes, sizeof(T));
  }
  template <typename T>
  void Pod(T v) {
    AppendPod(&kv_, v);
  }
  void String(const std::string& s) {
    Pod(static_cast<uint64_t>(s.size()));
    kv_ += s;
  }
  void Key(const std::string& key, GgufType type) {
    ++count_;
    String(key);
    Pod(static_cast<uint32_t>(type));
  }

  std::string kv_;
  uint64_t count_ = 0;
  std::string file_;
};

GgufBuilder SpmGguf() {
  SpmVocab v = testing::ToySpmVocab();
  GgufBuilder b;
  b.Str("tokenizer.ggml.model", "llama")
      .Strings("tokenizer.ggml.tokens", v.tokens)
      .Floats("tokenizer.ggml.scores", v.scores)
      .Ints("tokenizer.ggml.token_type", v.token_types)
      .U32("tokenizer.ggml.bos_token_id", 1)
      .U32("tokenizer.ggml.eos_token_id", 2)
      .U32("tokenizer.ggml.unknown_token_id", 0);
  return b;
}

TEST(GgufTokenizerTest, LoadsLlamaVocabulary) {
  GgufBuilder b = SpmGguf();
  ASSERT_OK_AND_ASSIGN(auto gguf, b.Parse());
  ASSERT_OK_AND_ASSIGN(auto tok, LoadGgufTokenizer(*gguf));
  EncodeOptions options;
  options.add_bos = true;  // add_bos_token absent: llama.cpp's default (true) for "llama"
  ASSERT_OK_AND_ASSIGN(std::vector<int32_t> ids, tok->Encode("hello world", options));
  EXPECT_THAT(ids, ElementsAre(1, *tok->TokenToId("\xE2\x96\x81hello"),
                               *tok->TokenToId("\xE2\x96\x81world")));
  EXPECT_THAT(tok->eos_ids(), ElementsAre(2));
}

TEST(GgufTokenizerTest, HonoursAddBosAndSpacePrefixFlags) {
  GgufBuilder b = SpmGguf();
  b.Bool("tokenizer.ggml.add_bos_token", false).Bool("tokenizer.ggml.add_space_prefix", false);
  ASSERT_OK_AND_ASSIGN(auto gguf, b.Parse());
  ASSERT_OK_AND_ASSIGN(auto tok, LoadGgufTokenizer(*gguf));
  EncodeOptions options;
  options.add_bos = true;
  ASSERT_OK_AND_ASSIGN(std::vector<int32_t> ids, tok->Encode("hello", options));
  EXPECT_THAT(ids, ElementsAre(*tok->TokenToId("hello")));
  ASSERT_OK_AND_ASSIGN(std::string start,
                       tok->TokenBytesAtStart(*tok->TokenToId("\xE2\x96\x81hello")));
  EXPECT_EQ(start, " hello");  // no prefix added, so none stripped
}

TEST(GgufTokenizerTest, LoadsGpt2Vocabulary) {
  testing::ToyBpe toy;
  toy.merges = {{"a", "b"}};
  toy.specials = {"<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"};
  BpeVocab v = toy.Vocab();
  GgufBuilder b;
  b.Str("tokenizer.ggml.model", "gpt2")
      .Str("tokenizer.ggml.pre", "llama-bpe")
      .Strings("tokenizer.ggml.tokens", v.tokens)
      .Ints("tokenizer.ggml.token_type", v.token_types)
      .Strings("tokenizer.ggml.merges", v.merges)
      .U32("tokenizer.ggml.bos_token_id", 257)
      .U32("tokenizer.ggml.eos_token_id", 258)
      .U32("tokenizer.ggml.eot_token_id", 259);
  ASSERT_OK_AND_ASSIGN(auto gguf, b.Parse());
  ASSERT_OK_AND_ASSIGN(auto tok, LoadGgufTokenizer(*gguf));
  EncodeOptions options;
  options.add_bos = true;  // llama-bpe: BOS by default
  options.parse_special = true;
  ASSERT_OK_AND_ASSIGN(std::vector<int32_t> ids, tok->Encode("ab<|eot_id|>", options));
  EXPECT_THAT(ids, ElementsAre(257, 256, 259));
  EXPECT_THAT(tok->eos_ids(), ElementsAre(258, 259));
}

TEST(GgufTokenizerTest, ErrorsNameTheProblem) {
  GgufBuilder empty;
  empty.Str("general.architecture", "llama");
  ASSERT_OK_AND_ASSIGN(auto gguf, empty.Parse());
  EXPECT_THAT(LoadGgufTokenizer(*gguf), StatusIs(absl::StatusCode::kNotFound));

  GgufBuilder bert;
  bert.Str("tokenizer.ggml.model", "bert").Strings("tokenizer.ggml.tokens", {"a"});
  ASSERT_OK_AND_ASSIGN(gguf, bert.Parse());
  EXPECT_THAT(LoadGgufTokenizer(*gguf),
              StatusIs(absl::StatusCode::kUnimplemented, HasSubstr("bert")));

  GgufBuilder pre;
  pre.Str("tokenizer.ggml.model", "gpt2")
      .Str("tokenizer.ggml.pre", "qwen2")
      .Strings("tokenizer.ggml.tokens", {"a"});
  ASSERT_OK_AND_ASSIGN(gguf, pre.Parse());
  EXPECT_THAT(LoadGgufTokenizer(*gguf),
              StatusIs(absl::StatusCode::kUnimplemented, HasSubstr("qwen2")));

  GgufBuilder short_types;
  short_types.Str("tokenizer.ggml.model", "llama")
      .Strings("tokenizer.ggml.tokens", {"a", "b"})
      .Ints("tokenizer.ggml.token_type", {1});
  ASSERT_OK_AND_ASSIGN(gguf, short_types.Parse());
  EXPECT_THAT(LoadGgufTokenizer(*gguf), StatusIs(absl::StatusCode::kInvalidArgument));

  GgufBuilder bad_id;
  bad_id.Str("tokenizer.ggml.model", "llama")
      .Strings("tokenizer.ggml.tokens", {"a"})
      .U32("tokenizer.ggml.bos_token_id", 7);
  ASSERT_OK_AND_ASSIGN(gguf, bad_id.Parse());
  EXPECT_THAT(LoadGgufTokenizer(*gguf),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("bos_token_id")));

  GgufBuilder mistyped;
  mistyped.Str("tokenizer.ggml.model", "llama").Str("tokenizer.ggml.tokens", "a");
  ASSERT_OK_AND_ASSIGN(gguf, mistyped.Parse());
  EXPECT_THAT(LoadGgufTokenizer(*gguf), StatusIs(absl::StatusCode::kInvalidArgument));
}

// The committed model fixtures carry the same vocabulary as GGUF metadata and as tokenizer.json.
TEST(GgufTokenizerTest, FixturesAgreeWithTheirTokenizerJson) {
  const std::string dir = std::string(VERDICT_SOURCE_DIR) + "/tests/fixtures/models/";
  const std::vector<std::string> texts = {"The quick brown fox jumps over the lazy dog.",
                                          "  Hello,\n\nworld! 12345 can't", "x"};
  for (const char* model : {"llama3_gqa", "llama2_mha"}) {
    ASSERT_OK_AND_ASSIGN(auto gguf, GgufFile::Open(dir + model + "/" + model + "-f32.gguf"));
    ASSERT_OK_AND_ASSIGN(auto from_gguf, LoadGgufTokenizer(*gguf));
    ASSERT_OK_AND_ASSIGN(auto from_json, LoadHfTokenizer(dir + model + "/tokenizer.json"));
    EXPECT_EQ(from_gguf->vocab_size(), from_json->vocab_size());
    EXPECT_EQ(from_gguf->bos_id(), from_json->bos_id());
    for (const std::string& text : texts) {
      EncodeOptions options;
      options.add_bos = true;
      ASSERT_OK_AND_ASSIGN(std::vector<int32_t> a, from_gguf->Encode(text, options));
      ASSERT_OK_AND_ASSIGN(std::vector<int32_t> b, from_json->Encode(text, options));
      EXPECT_EQ(a, b) << model << ": " << text;
      ASSERT_OK_AND_ASSIGN(std::string decoded, from_gguf->Decode(a, true));
      EXPECT_EQ(decoded, text) << model;
    }
  }
}

}  // namespace
}  // namespace verdict::engine
