// SPDX-License-Identifier: Apache-2.0
#include "judge/training/judge_trainer.h"

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "judge/dataset/judge_dataset.h"
#include "judge/judge_head.h"
#include "nlohmann/json.hpp"

namespace verdict::judge {
namespace {

using ::testing::HasSubstr;
using ::verdict::testing::StatusIs;

constexpr int64_t kHidden = 16;
constexpr int kGroups = 240;
constexpr int kRowsPerGroup = 20;
constexpr uint64_t kSeed = 1234;

// A synthetic dataset written and loaded through the real store. The label is
// [2 * (u . h) + 2.5 * target_logprob + noise > 0.4], with u a fixed direction: the hidden state
// carries part of the signal and target_logprob (independent of h) carries more, so a head with
// both beats the hidden-only head. target_entropy is pure noise; draft_logprob is weakly
// informative.
const JudgeDataset& SyntheticDataset() {
  static const JudgeDataset* dataset = [] {
    const std::string dir = std::filesystem::path(::testing::TempDir()) / "judge_trainer_test_dataset";
    DatasetSpec spec;
    spec.hidden_size = kHidden;
    spec.extra_feature_names = {"target_logprob", "target_entropy", "draft_logprob"};
    spec.feature_dtype = engine::DType::kF32;
    spec.rows_per_shard = 1000;
    spec.info = {{"target_fingerprint", "llama-v1:0123456789abcdef"}, {"target", "t"}, {"draft", "d"}};
    spec.overwrite = true;
    absl::StatusOr<JudgeDatasetWriter> writer = JudgeDatasetWriter::Create(dir, spec);
    EXPECT_OK(writer.status());
    std::mt19937_64 rng(kSeed);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<float> direction(kHidden);
    for (float& d : direction) d = normal(rng) / std::sqrt(static_cast<float>(kHidden));
    for (int g = 0; g < kGroups; ++g) {
      for (int i = 0; i < kRowsPerGroup; ++i) {
        std::vector<float> hidden(kHidden);
        float projection = 0;
        for (int64_t k = 0; k < kHidden; ++k) {
          hidden[k] = normal(rng) + 0.5f;  // offset: exercises the folded standardization
          projection += direction[k] * (hidden[k] - 0.5f);
        }
        const float target_logprob = normal(rng);
        const float noise = normal(rng);
        const float draft_logprob = 0.3f * noise + normal(rng);
        const float entropy = 2.0f + normal(rng);
        const bool label = 2.0f * projection + 2.5f * target_logprob + 0.7f * noise > 0.4f;
        RowInfo info;
        info.group = g;
        info.example_id = "ex" + std::to_string(g);
        info.position = i;
        info.token_id = i;
        info.token_text = "t";
        EXPECT_OK(writer->Add(hidden, {target_logprob, entropy, draft_logprob}, label, info));
      }
    }
    EXPECT_OK(writer->Finish());
    absl::StatusOr<JudgeDataset> loaded = LoadJudgeDataset(dir);
    EXPECT_OK(loaded.status());
    return new JudgeDataset(*std::move(loaded));
  }();
  return *dataset;
}

JudgeTrainOptions Options(std::vector<FeatureSet> candidates) {
  JudgeTrainOptions options;
  options.candidates = std::move(candidates);
  options.max_false_accept_rate = 0.05;
  options.seed = 7;
  options.training.max_epochs = 60;
  options.training.batch_size = 256;
  return options;
}

FeatureSet Set(const std::string& text) {
  absl::StatusOr<FeatureSet> set = ParseFeatureSet(text);
  EXPECT_OK(set.status());
  return *set;
}

TEST(FeatureSetTest, ParsesAndNames) {
  ASSERT_OK_AND_ASSIGN(FeatureSet set, ParseFeatureSet("hidden+target_logprob"));
  EXPECT_TRUE(set.hidden);
  EXPECT_EQ(set.extras, std::vector<JudgeFeature>{JudgeFeature::kTargetLogprob});
  EXPECT_EQ(set.Name(), "hidden+target_logprob");
  ASSERT_OK_AND_ASSIGN(set, ParseFeatureSet("draft_logprob+target_logprob"));
  EXPECT_FALSE(set.hidden);
  EXPECT_EQ(set.Name(), "draft_logprob+target_logprob");  // order kept
  ASSERT_OK_AND_ASSIGN(std::vector<FeatureSet> sets, ParseFeatureSets("auto"));
  ASSERT_EQ(sets.size(), 3u);
  EXPECT_EQ(sets[0].Name(), "hidden");
  EXPECT_EQ(sets[1].Name(), "hidden+target_logprob");
  EXPECT_EQ(sets[2].Name(), "hidden+target_logprob+target_entropy+draft_logprob");
  ASSERT_OK_AND_ASSIGN(sets, ParseFeatureSets("hidden,target_logprob"));
  ASSERT_EQ(sets.size(), 2u);
  EXPECT_EQ(sets[1].Name(), "target_logprob");
}

TEST(FeatureSetTest, RejectsBadSets) {
  EXPECT_THAT(ParseFeatureSet("hidden+logits"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("valid: hidden, target_logprob")));
  EXPECT_THAT(ParseFeatureSet(""), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ParseFeatureSet("hidden+hidden"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("twice")));
  EXPECT_THAT(ParseFeatureSets("hidden,,target_logprob"), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(JudgeTrainerTest, TrainsHeadThatRoundTripsAndMeetsTheFalseAcceptTarget) {
  const JudgeDataset& data = SyntheticDataset();
  JudgeTrainReport report;
  ASSERT_OK_AND_ASSIGN(JudgeHead head, TrainJudgeHead(data, Options({Set("hidden+target_logprob")}), &report));
  EXPECT_EQ(report.train_rows + report.validation_rows + report.test_rows, data.rows);
  EXPECT_GT(report.validation_rows, 0);
  EXPECT_GT(report.test_rows, 0);
  EXPECT_EQ(report.chosen, 0);
  const CandidateReport& c = report.candidates[0];
  EXPECT_GT(c.validation_auc, 0.95);
  EXPECT_GT(c.test_auc, 0.95);
  EXPECT_LE(c.validation.false_accept_rate, 0.05);
  EXPECT_NEAR(c.test.false_accept_rate, 0.05, 0.04);
  EXPECT_GT(c.test.recall, 0.6);
  EXPECT_EQ(head.threshold, c.threshold);
  EXPECT_EQ(head.hidden_size(), kHidden);
  EXPECT_EQ(head.extra_features, std::vector<JudgeFeature>{JudgeFeature::kTargetLogprob});
  EXPECT_EQ(head.target_fingerprint, "llama-v1:0123456789abcdef");
  const nlohmann::json training = nlohmann::json::parse(head.training_json);
  EXPECT_EQ(training["chosen_features"], "hidden+target_logprob");
  EXPECT_EQ(training["data"]["rows"]["test"], report.test_rows);
  EXPECT_EQ(training["data"]["info"]["target"], "t");

  const std::string path = std::filesystem::path(::testing::TempDir()) / "judge_trainer_test_head.safetensors";
  ASSERT_OK(SaveJudgeHead(head, path));
  ASSERT_OK_AND_ASSIGN(JudgeHead loaded, LoadJudgeHead(path));
  EXPECT_EQ(loaded.threshold, head.threshold);
  EXPECT_EQ(loaded.training_json, head.training_json);
  // The loaded head reproduces the trained probabilities, and with them the reported validation
  // metrics (recomputed here over the whole dataset's first rows as a spot check).
  std::vector<float> scores;
  std::vector<uint8_t> labels;
  for (int64_t r = 0; r < data.rows; ++r) {
    const absl::Span<const float> hidden(data.hidden.data() + r * kHidden, kHidden);
    const float extras[] = {data.extras[r * 3 + 0]};
    const float p = loaded.Probability(hidden, extras);
    EXPECT_EQ(p, head.Probability(hidden, extras));
    // The head is logistic regression in raw feature space: sigmoid(w.h + v.x + b).
    double z = head.bias + head.extra_weight[0] * extras[0];
    for (int64_t k = 0; k < kHidden; ++k) z += double{head.weight[k]} * hidden[k];
    EXPECT_NEAR(p, 1.0 / (1.0 + std::exp(-z)), 1e-5);
    scores.push_back(p);
    labels.push_back(data.labels[r]);
  }
  const BinaryMetrics all = ComputeBinaryMetrics(scores, labels, loaded.threshold);
  EXPECT_NEAR(all.false_accept_rate, 0.05, 0.03);
}

TEST(JudgeTrainerTest, PicksTheCandidateWithTheInformativeExtra) {
  const JudgeDataset& data = SyntheticDataset();
  JudgeTrainReport report;
  ASSERT_OK_AND_ASSIGN(
      JudgeHead head,
      TrainJudgeHead(data, Options({Set("hidden"), Set("hidden+target_entropy"), Set("hidden+target_logprob"),
                                    Set("target_entropy+draft_logprob")}),
                     &report));
  ASSERT_EQ(report.candidates.size(), 4u);
  EXPECT_EQ(report.chosen, 2);
  EXPECT_EQ(head.extra_features, std::vector<JudgeFeature>{JudgeFeature::kTargetLogprob});
  EXPECT_GT(report.candidates[2].validation.recall, report.candidates[0].validation.recall + 0.1);
  // Every candidate was calibrated on validation.
  for (const CandidateReport& c : report.candidates) EXPECT_LE(c.validation.false_accept_rate, 0.05);
  const nlohmann::json j = report.ToJson();
  EXPECT_EQ(j["candidates"].size(), 4u);
  EXPECT_EQ(j["chosen_features"], "hidden+target_logprob");
}

TEST(JudgeTrainerTest, HeadWithoutHiddenHasZeroHiddenWeights) {
  const JudgeDataset& data = SyntheticDataset();
  ASSERT_OK_AND_ASSIGN(JudgeHead head, TrainJudgeHead(data, Options({Set("draft_logprob+target_logprob")}), nullptr));
  EXPECT_EQ(head.hidden_size(), kHidden);
  for (float w : head.weight) EXPECT_EQ(w, 0.0f);
  ASSERT_EQ(head.extra_weight.size(), 2u);
  EXPECT_EQ(head.extra_features[0], JudgeFeature::kDraftLogprob);
  EXPECT_GT(head.extra_weight[1], 0.0f);  // target_logprob pushes towards acceptance
}

TEST(JudgeTrainerTest, RejectsMissingFeatureAndFingerprint) {
  JudgeDataset data = SyntheticDataset();
  data.spec.extra_feature_names[2] = "other";
  EXPECT_THAT(TrainJudgeHead(data, Options({Set("hidden"), Set("hidden+draft_logprob")}), nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no feature \"draft_logprob\"")));
  data = SyntheticDataset();
  data.spec.info.erase("target_fingerprint");
  EXPECT_THAT(TrainJudgeHead(data, Options({Set("hidden")}), nullptr),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("dataset has no target fingerprint")));
}

TEST(JudgeTrainerTest, RejectsOneClassSplitsAndBadOptions) {
  JudgeDataset data = SyntheticDataset();
  JudgeTrainReport report;
  report.chosen = 42;
  // No negatives anywhere: the training split is checked first.
  std::fill(data.labels.begin(), data.labels.end(), 1);
  EXPECT_THAT(TrainJudgeHead(data, Options({Set("hidden")}), &report),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("split has no negative examples")));
  EXPECT_EQ(report.chosen, 42);  // untouched on error
  JudgeTrainOptions options = Options({Set("hidden")});
  options.max_false_accept_rate = 1.5;
  EXPECT_THAT(TrainJudgeHead(SyntheticDataset(), options, nullptr), StatusIs(absl::StatusCode::kInvalidArgument));
  options = Options({});
  EXPECT_THAT(TrainJudgeHead(SyntheticDataset(), options, nullptr), StatusIs(absl::StatusCode::kInvalidArgument));
  options = Options({Set("hidden")});
  options.validation_fraction = 0;
  EXPECT_THAT(TrainJudgeHead(SyntheticDataset(), options, nullptr), StatusIs(absl::StatusCode::kInvalidArgument));
  // Validation with only positives: only the validation groups' negatives are flipped.
  data = SyntheticDataset();
  ASSERT_OK_AND_ASSIGN(DatasetSplit split, SplitByGroup(data, 0.15, 0.15, 7));
  for (int64_t r : split.validation) data.labels[r] = 1;
  EXPECT_THAT(TrainJudgeHead(data, Options({Set("hidden")}), nullptr),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("the validation split has no negative examples; use more data or a larger "
                                 "--val-fraction")));
}

}  // namespace
}  // namespace verdict::judge
