// SPDX-License-Identifier: Apache-2.0
// The judge head file: round trip, rejection of foreign or broken files, and the target fingerprint.
#include "judge/judge_head.h"

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "common/testing/status_matchers.h"
#include "engine/io/safetensors_writer.h"
#include "engine/random_weights.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "judge/testing/paired_models.h"

namespace verdict::judge {
namespace {

using ::testing::HasSubstr;
using ::verdict::testing::StatusIs;

class JudgeHeadFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("judge_head_test_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string Path(const std::string& name) const { return (dir_ / name).string(); }

  static JudgeHead SampleHead() {
    JudgeHead head;
    head.weight = {0.5f, -1.25f, 3.0f};
    head.bias = -0.75f;
    head.extra_features = {JudgeFeature::kTargetLogprob, JudgeFeature::kDraftLogprob};
    head.extra_weight = {0.3f, -0.1f};
    head.threshold = 0.8125f;
    head.target_fingerprint = "llama-v1:0123456789abcdef";
    head.training_json = R"({"rows":10})";
    return head;
  }

  std::filesystem::path dir_;
};

TEST_F(JudgeHeadFileTest, RoundTrip) {
  const JudgeHead head = SampleHead();
  ASSERT_OK(SaveJudgeHead(head, Path("head.safetensors")));
  ASSERT_OK_AND_ASSIGN(JudgeHead loaded, LoadJudgeHead(Path("head.safetensors")));
  EXPECT_EQ(loaded.weight, head.weight);
  EXPECT_EQ(loaded.bias, head.bias);
  EXPECT_EQ(loaded.extra_features, head.extra_features);
  EXPECT_EQ(loaded.extra_weight, head.extra_weight);
  EXPECT_EQ(loaded.threshold, head.threshold);
  EXPECT_EQ(loaded.target_fingerprint, head.target_fingerprint);
  EXPECT_EQ(loaded.training_json, head.training_json);
  // probability = sigmoid(w.h + e.x + b)
  const std::vector<float> h = {1.0f, 2.0f, 0.5f}, x = {-2.0f, -1.0f};
  const float z = 0.5f - 2.5f + 1.5f - 0.6f + 0.1f - 0.75f;
  EXPECT_NEAR(loaded.Logit(h, x), z, 1e-6);
  EXPECT_NEAR(loaded.Probability(h, x), 1.0 / (1.0 + std::exp(-z)), 1e-6);
}

TEST_F(JudgeHeadFileTest, RejectsFilesThatAreNotHeads) {
  EXPECT_THAT(LoadJudgeHead(Path("missing.safetensors")), StatusIs(absl::StatusCode::kNotFound));
  {
    std::ofstream(Path("garbage.safetensors")) << "not a safetensors file";
  }
  EXPECT_THAT(LoadJudgeHead(Path("garbage.safetensors")), StatusIs(absl::StatusCode::kInvalidArgument));
  // A valid safetensors file (e.g. a model checkpoint) without the head's metadata.
  const std::vector<float> w = {1.0f, 2.0f};
  const engine::TensorToWrite t{"weight", engine::DType::kF32, {2},
                                absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(w.data()), 8)};
  ASSERT_OK(engine::WriteSafetensors(Path("plain.safetensors"), {t}, {}));
  EXPECT_THAT(LoadJudgeHead(Path("plain.safetensors")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a judge head")));
}

TEST_F(JudgeHeadFileTest, RejectsUnknownFormatsFeaturesAndBadValues) {
  auto write_with = [&](const std::string& name, std::map<std::string, std::string> overrides,
                        std::vector<float> weight) {
    JudgeHead head = SampleHead();
    std::map<std::string, std::string> metadata = {
        {"format", "verdict-judge-head/1"}, {"hidden_state", "final_norm_output"},
        {"features", "[]"},                 {"threshold", "0.5"},
        {"target_fingerprint", "x"}};
    for (const auto& [k, v] : overrides) metadata[k] = v;
    const std::vector<float> bias = {0.0f};
    auto bytes = [](const std::vector<float>& v) {
      return absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(v.data()), v.size() * 4);
    };
    std::vector<engine::TensorToWrite> tensors = {
        {"weight", engine::DType::kF32, {static_cast<int64_t>(weight.size())}, bytes(weight)},
        {"bias", engine::DType::kF32, {1}, bytes(bias)}};
    EXPECT_OK(engine::WriteSafetensors(Path(name), tensors, metadata));
    return LoadJudgeHead(Path(name));
  };
  EXPECT_OK(write_with("ok.safetensors", {}, {1.0f}).status());
  EXPECT_THAT(write_with("v2.safetensors", {{"format", "verdict-judge-head/2"}}, {1.0f}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not supported")));
  EXPECT_THAT(write_with("hs.safetensors", {{"hidden_state", "layer_20"}}, {1.0f}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("hidden-state definition")));
  EXPECT_THAT(write_with("f.safetensors", {{"features", R"(["vibes"])"}}, {1.0f}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unknown judge feature")));
  EXPECT_THAT(write_with("fx.safetensors", {{"features", R"(["target_logprob"])"}}, {1.0f}),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("extra_weight")));
  EXPECT_THAT(write_with("t.safetensors", {{"threshold", "high"}}, {1.0f}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("threshold")));
  EXPECT_THAT(write_with("nan.safetensors", {}, {1.0f, NAN}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("non-finite")));
}

TEST(TargetFingerprintTest, SameModelAnyDtypeDifferentModelDiffers) {
  ASSERT_OK_AND_ASSIGN(engine::LlamaConfig config, engine::PresetConfig("tiny"));
  ASSERT_OK_AND_ASSIGN(auto f32, engine::CreateRandomWeights(config, engine::DType::kF32, 1));
  ASSERT_OK_AND_ASSIGN(auto bf16, engine::CreateRandomWeights(config, engine::DType::kBF16, 1));
  ASSERT_OK_AND_ASSIGN(auto other, engine::CreateRandomWeights(config, engine::DType::kF32, 2));
  ASSERT_OK_AND_ASSIGN(std::string a, TargetFingerprint(config, *f32));
  ASSERT_OK_AND_ASSIGN(std::string b, TargetFingerprint(config, *bf16));
  ASSERT_OK_AND_ASSIGN(std::string c, TargetFingerprint(config, *other));
  EXPECT_THAT(a, ::testing::StartsWith("llama-v1:"));
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  engine::LlamaConfig bigger_context = config;
  bigger_context.num_layers += 1;
  ASSERT_OK_AND_ASSIGN(std::string d, TargetFingerprint(bigger_context, *f32));
  EXPECT_NE(a, d);

  JudgeHead head;
  head.weight.assign(config.hidden_size, 0.0f);
  head.target_fingerprint = a;
  EXPECT_OK(CheckHeadMatchesTarget(head, a, config.hidden_size));
  EXPECT_THAT(CheckHeadMatchesTarget(head, c, config.hidden_size),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("another target")));
  EXPECT_THAT(CheckHeadMatchesTarget(head, a, config.hidden_size * 2),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("hidden size")));
}

}  // namespace
}  // namespace verdict::judge
