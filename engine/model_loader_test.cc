// SPDX-License-Identifier: Apache-2.0
// ResolveSampling: the precedence a request's sampling follows (given values, then the
// checkpoint's generation_config.json when it samples, then greedy). LoadTokenizerAt: the forms a
// coordinator's tokenizer path takes.
#include "engine/model_loader.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace verdict::engine {
namespace {

TEST(ResolveSamplingTest, GivenValuesThenTheCheckpointsSamplingThenGreedy) {
  GenerationDefaults sampling_checkpoint;
  sampling_checkpoint.has_do_sample = true;
  sampling_checkpoint.do_sample = true;
  sampling_checkpoint.temperature = 0.6f;
  sampling_checkpoint.top_k = 40;
  sampling_checkpoint.top_p = 0.9f;
  SamplingParams s = ResolveSampling(sampling_checkpoint, std::nullopt, std::nullopt, std::nullopt, 7);
  EXPECT_EQ(s.temperature, 0.6f);
  EXPECT_EQ(s.top_k, 40);
  EXPECT_EQ(s.top_p, 0.9f);
  EXPECT_EQ(s.seed, 7u);
  s = ResolveSampling(sampling_checkpoint, 0.0f, 5, std::nullopt, 0);  // given values win
  EXPECT_TRUE(s.greedy());
  EXPECT_EQ(s.top_k, 5);
  EXPECT_EQ(s.top_p, 0.9f);

  GenerationDefaults greedy_checkpoint = sampling_checkpoint;
  greedy_checkpoint.do_sample = false;  // its temperature is not a request to sample
  s = ResolveSampling(greedy_checkpoint, std::nullopt, std::nullopt, std::nullopt, 0);
  EXPECT_TRUE(s.greedy());
  EXPECT_EQ(s.top_k, 0);
  EXPECT_EQ(s.top_p, 1.0f);
  s = ResolveSampling(GenerationDefaults{}, 0.8f, std::nullopt, std::nullopt, 0);
  EXPECT_EQ(s.temperature, 0.8f);
}

using ::verdict::testing::StatusIs;

const std::string kFixtures = std::string(VERDICT_SOURCE_DIR) + "/tests/fixtures/models/";

// The tokenizer opened alone encodes like the one LoadModel opens with the whole model, from a
// tokenizer.json, a model directory, a GGUF file and a directory holding one GGUF file.
TEST(LoadTokenizerAtTest, EveryFormEncodesLikeTheWholeModelsTokenizer) {
  ASSERT_OK_AND_ASSIGN(LoadedModel hf, LoadModel(kFixtures + "llama3_gqa"));
  ASSERT_OK_AND_ASSIGN(LoadedModel gguf, LoadModel(kFixtures + "llama3_gqa/llama3_gqa-q8_0.gguf"));
  ASSERT_NE(hf.tokenizer, nullptr);
  ASSERT_NE(gguf.tokenizer, nullptr);
  const std::string text = "Verdict: 12 + 30 = 42, isn't it?";
  ASSERT_OK_AND_ASSIGN(std::vector<int32_t> hf_ids, hf.tokenizer->Encode(text, {true, false}));
  ASSERT_OK_AND_ASSIGN(std::vector<int32_t> gguf_ids, gguf.tokenizer->Encode(text, {true, false}));

  const std::filesystem::path tmp = std::filesystem::path(::testing::TempDir()) / "tokenizer_only";
  std::filesystem::remove_all(tmp);
  std::filesystem::create_directories(tmp);
  std::filesystem::copy_file(kFixtures + "llama3_gqa/llama3_gqa-q8_0.gguf", tmp / "model.gguf");
  struct Case {
    std::string path;
    const std::vector<int32_t>* expected;
  };
  for (const Case& c : {Case{kFixtures + "llama3_gqa/tokenizer.json", &hf_ids},
                        Case{kFixtures + "llama3_gqa", &hf_ids},
                        Case{kFixtures + "llama3_gqa/llama3_gqa-q8_0.gguf", &gguf_ids},
                        Case{tmp.string(), &gguf_ids}}) {
    SCOPED_TRACE(c.path);
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Tokenizer> tokenizer, LoadTokenizerAt(c.path));
    ASSERT_OK_AND_ASSIGN(std::vector<int32_t> ids, tokenizer->Encode(text, {true, false}));
    EXPECT_EQ(ids, *c.expected);
  }
  std::filesystem::remove_all(tmp);
}

TEST(LoadTokenizerAtTest, ClearErrors) {
  using ::testing::HasSubstr;
  EXPECT_THAT(LoadTokenizerAt("/nonexistent/tokenizer.json"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("/nonexistent/tokenizer.json")));
  const std::filesystem::path tmp = std::filesystem::path(::testing::TempDir()) / "no_tokenizer";
  std::filesystem::remove_all(tmp);
  std::filesystem::create_directories(tmp);
  EXPECT_THAT(LoadTokenizerAt(tmp.string()), StatusIs(absl::StatusCode::kNotFound, HasSubstr("no tokenizer.json")));
  std::ofstream(tmp / "vocab.txt") << "not a tokenizer\n";
  EXPECT_THAT(LoadTokenizerAt((tmp / "vocab.txt").string()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("neither")));
  std::ofstream(tmp / "broken.json") << "{\"model\": ";
  EXPECT_THAT(LoadTokenizerAt((tmp / "broken.json").string()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("broken.json")));
  std::filesystem::remove_all(tmp);
}

// The chat template a model ships, from each place it can live: a GGUF file's metadata and a
// directory's tokenizer_config.json (the fixture writes the same template into both), the list
// form of named templates, and the built-in Llama 3 format for a Llama 3 vocabulary that ships none.
TEST(LoadChatTemplateAtTest, EveryPlaceATemplateLives) {
  ASSERT_OK_AND_ASSIGN(LoadedModel model, LoadModel(kFixtures + "llama3_gqa"));
  const Tokenizer& tokenizer = *model.tokenizer;
  ASSERT_OK_AND_ASSIGN(ChatTemplateSource from_gguf,
                       LoadChatTemplateAt(kFixtures + "llama3_gqa/llama3_gqa-q8_0.gguf", tokenizer));
  ASSERT_OK_AND_ASSIGN(ChatTemplateSource from_dir, LoadChatTemplateAt(kFixtures + "llama3_gqa", tokenizer));
  EXPECT_FALSE(from_gguf.source.empty());
  EXPECT_EQ(from_gguf.source, from_dir.source);
  EXPECT_THAT(from_gguf.origin, ::testing::HasSubstr("tokenizer.chat_template"));
  EXPECT_THAT(from_dir.origin, ::testing::HasSubstr("tokenizer_config.json"));
  EXPECT_EQ(from_dir.bos_token, "<|begin_of_text|>");

  const std::filesystem::path tmp = std::filesystem::path(::testing::TempDir()) / "chat_templates";
  std::filesystem::remove_all(tmp);
  std::filesystem::create_directories(tmp);
  std::filesystem::copy_file(kFixtures + "llama3_gqa/tokenizer.json", tmp / "tokenizer.json");
  std::ofstream(tmp / "tokenizer_config.json")
      << R"({"eos_token": {"content": "<|eot_id|>"}, "chat_template": [)"
      << R"({"name": "tool_use", "template": "tools"}, {"name": "default", "template": "plain {{ eos_token }}"}]})";
  ASSERT_OK_AND_ASSIGN(ChatTemplateSource named, LoadChatTemplateAt((tmp / "tokenizer.json").string(), tokenizer));
  EXPECT_EQ(named.source, "plain {{ eos_token }}");
  EXPECT_EQ(named.eos_token, "<|eot_id|>");
  std::ofstream(tmp / "tokenizer_config.json") << R"({"bos_token": "<|begin_of_text|>"})";
  ASSERT_OK_AND_ASSIGN(ChatTemplateSource builtin, LoadChatTemplateAt(tmp.string(), tokenizer));
  EXPECT_EQ(builtin.source, BuiltinLlama3ChatTemplate());
  EXPECT_EQ(builtin.origin, "built-in llama3");
  std::ofstream(tmp / "tokenizer_config.json") << "{ not json";
  EXPECT_THAT(LoadChatTemplateAt(tmp.string(), tokenizer), StatusIs(absl::StatusCode::kInvalidArgument));
  std::filesystem::remove_all(tmp);
}

}  // namespace
}  // namespace verdict::engine
