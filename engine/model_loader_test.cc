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

}  // namespace
}  // namespace verdict::engine
