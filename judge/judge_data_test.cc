// SPDX-License-Identifier: Apache-2.0
// CollectJudgeData on the demo draft/target pair: rows carry the right features (the hidden state at
// the token's own position, the log-probability from the row before it) and the right labels.
#include "judge/judge_data.h"

#include <filesystem>

#include "common/testing/status_matchers.h"
#include "engine/generator.h"
#include "engine/model_loader.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "judge/verification.h"

namespace verdict::judge {
namespace {

using ::verdict::testing::StatusIs;

class JudgeDataTest : public ::testing::Test {
 protected:
  void SetUp() override {
    backend_ = engine::CreateCpuBackend({.num_threads = 1});
    ASSERT_OK_AND_ASSIGN(target_, engine::LoadModel(std::string(VERDICT_SOURCE_DIR) + "/assets/models/tiny-stories"));
    ASSERT_OK_AND_ASSIGN(draft_, engine::LoadModel(std::string(VERDICT_SOURCE_DIR) + "/assets/models/tiny-stories-draft"));
    ASSERT_OK_AND_ASSIGN(target_model_, engine::ModelSlice::Create(target_.config, *target_.weights, {}, backend_.get()));
    ASSERT_OK_AND_ASSIGN(draft_model_, engine::ModelSlice::Create(draft_.config, *draft_.weights, {}, backend_.get()));
    dir_ = std::filesystem::temp_directory_path() / ("judge_data_test_" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  absl::StatusOr<JudgeDataset> Collect(const std::vector<TaskExample>& examples, JudgeDataStats* stats,
                                       int64_t k = 6) {
    DatasetSpec spec;
    spec.hidden_size = target_.config.hidden_size;
    spec.extra_feature_names = JudgeDataExtraFeatureNames();
    spec.feature_dtype = engine::DType::kF32;
    spec.info = {{"target_fingerprint", "test"}};
    auto writer = JudgeDatasetWriter::Create(dir_.string(), spec);
    if (!writer.ok()) return writer.status();
    JudgeDataOptions options;
    options.k = k;
    options.max_new_tokens = 40;
    auto s = CollectJudgeData(*target_model_, *draft_model_, *target_.tokenizer, examples, options, &*writer);
    if (!s.ok()) return s.status();
    *stats = *s;
    if (absl::Status st = writer->Finish(); !st.ok()) return st;
    return LoadJudgeDataset(dir_.string());
  }

  // The target's greedy continuation of `prompt` as text (stop token excluded).
  std::string TargetGreedyText(const std::string& prompt, int64_t max_new) {
    auto ids = target_.tokenizer->Encode(prompt, {true, false});
    EXPECT_OK(ids.status());
    engine::GenerateOptions options;
    options.max_new_tokens = max_new;
    options.stop_token_ids = target_.tokenizer->eos_ids();
    auto r = engine::Generate(*target_model_, *ids, options);
    EXPECT_OK(r.status());
    std::vector<int32_t> tokens = r->tokens;
    if (r->stopped_by_token) tokens.pop_back();
    return *target_.tokenizer->Decode(tokens, true);
  }

  std::unique_ptr<engine::Backend> backend_;
  engine::LoadedModel target_, draft_;
  std::unique_ptr<engine::ModelSlice> target_model_, draft_model_;
  std::filesystem::path dir_;
};

TEST_F(JudgeDataTest, ReferenceIsTheTargetsOwnAnswerSoLabelsAreTargetAgreement) {
  // When the only reference is the target's greedy answer, a draft token is correct exactly when it
  // is the target's greedy choice: an independent check of labels, row alignment and the path.
  std::vector<TaskExample> examples;
  for (const char* prompt : {"Once upon a time there was a little cat named Tom.",
                             "Lily went to the park.", "Max had a red ball."}) {
    TaskExample e;
    e.id = prompt;
    e.prompt = prompt;
    e.answers = {TargetGreedyText(prompt, 200)};  // complete: ends where the target stops
    examples.push_back(e);
  }
  JudgeDataStats stats;
  ASSERT_OK_AND_ASSIGN(JudgeDataset data, Collect(examples, &stats));
  EXPECT_EQ(stats.examples, 3);
  EXPECT_GT(stats.rows, 20);
  EXPECT_GT(stats.positives, 0);
  EXPECT_LT(stats.positives, stats.rows);
  EXPECT_EQ(stats.correct_but_not_target, 0);
  EXPECT_EQ(stats.wrong_but_target, 0);
  EXPECT_EQ(data.rows, stats.rows);
  // Extras: log p_target(d) is high for correct (= argmax) tokens and never positive.
  const int64_t n_extra = 3;
  for (int64_t r = 0; r < data.rows; ++r) {
    EXPECT_LE(data.extras[r * n_extra + 0], 1e-6);
    EXPECT_GE(data.extras[r * n_extra + 1], -1e-6);  // entropy
    EXPECT_LE(data.extras[r * n_extra + 2], 1e-6);   // draft log-prob
  }
}

TEST_F(JudgeDataTest, GivenLabelsRecordTheHiddenStateAtTheTokensOwnPosition) {
  TaskExample e;
  e.id = "labeled";
  e.prompt = "Once upon a time";
  ASSERT_OK_AND_ASSIGN(e.labeled_tokens, target_.tokenizer->Encode(" there was a big dog", {false, false}));
  e.token_labels.assign(e.labeled_tokens.size(), 1);
  e.token_labels.back() = 0;
  JudgeDataStats stats;
  ASSERT_OK_AND_ASSIGN(JudgeDataset data, Collect({e}, &stats));
  ASSERT_EQ(data.rows, static_cast<int64_t>(e.labeled_tokens.size()));
  EXPECT_EQ(data.labels.back(), 0);
  // Recompute with one forward pass over prompt + tokens.
  ASSERT_OK_AND_ASSIGN(std::vector<int32_t> all, target_.tokenizer->Encode(e.prompt, {true, false}));
  const int64_t p = static_cast<int64_t>(all.size());
  all.insert(all.end(), e.labeled_tokens.begin(), e.labeled_tokens.end());
  ASSERT_OK_AND_ASSIGN(auto cache, target_model_->NewKvCache(static_cast<int64_t>(all.size())));
  engine::ForwardBatch batch;
  batch.sequences = {{cache.get(), static_cast<int64_t>(all.size())}};
  batch.token_ids = all;
  engine::ForwardResult out;
  ASSERT_OK(target_model_->Forward(batch, &out));
  const int64_t h = target_.config.hidden_size, v = target_.config.vocab_size;
  for (int64_t i = 0; i < data.rows; ++i) {
    for (int64_t j = 0; j < h; ++j) {
      ASSERT_EQ(data.hidden[i * h + j], out.hidden[(p + i) * h + j]) << "row " << i;
    }
    const TokenStats s =
        ComputeTokenStats(absl::MakeConstSpan(out.logits).subspan((p + i - 1) * v, v), e.labeled_tokens[i]);
    EXPECT_FLOAT_EQ(data.extras[i * 3], s.logprob);
    EXPECT_EQ(data.index[i].position, i);
    EXPECT_EQ(data.index[i].token_id, e.labeled_tokens[i]);
  }
}

TEST_F(JudgeDataTest, AnAlternativeAnswerYieldsCorrectTokensTheTargetWouldNotChoose) {
  // A reference the target would not write itself: correct draft tokens that are not the target's
  // choice must appear (the judge's opportunity), and labels follow the prefix rule.
  TaskExample e;
  e.id = "alt";
  e.prompt = "Once upon a time there was a little cat named Tom.";
  e.answers = {TargetGreedyText(e.prompt, 200), " Tom liked to play in the garden. Tom was very happy."};
  JudgeDataStats stats;
  ASSERT_OK_AND_ASSIGN(JudgeDataset data, Collect({e}, &stats, 8));
  EXPECT_GT(stats.rows, 0);
  EXPECT_GT(stats.correct_but_not_target, 0);
  // A correct token's text occurs in some answer at or after its answer position's byte offset.
  for (int64_t r = 0; r < data.rows; ++r) {
    if (!data.labels[r] || target_.tokenizer->IsSpecial(data.index[r].token_id)) continue;
    const std::string& t = data.index[r].token_text;
    EXPECT_TRUE(e.answers[0].find(t) != std::string::npos || e.answers[1].find(t) != std::string::npos) << t;
  }
}

TEST_F(JudgeDataTest, RolloutLabelsMarkDeadEnds) {
  // The reference is the target's own answer, so prefix labels say "correct" for every token the
  // target agrees with; but the final-answer checker wants the number 7, which no story contains:
  // every greedy rollout ends wrong, so the first prefix-correct token of each block is a dead end.
  TaskExample e;
  e.id = "rollout";
  e.prompt = "Lily went to the park.";
  e.answers = {TargetGreedyText(e.prompt, 200)};
  e.final_answer = "7";
  DatasetSpec spec;
  spec.hidden_size = target_.config.hidden_size;
  spec.extra_feature_names = JudgeDataExtraFeatureNames();
  ASSERT_OK_AND_ASSIGN(JudgeDatasetWriter writer, JudgeDatasetWriter::Create(dir_.string(), spec));
  JudgeDataOptions options;
  options.k = 4;
  options.max_new_tokens = 12;
  options.labels = LabelMode::kRollout;
  ASSERT_OK_AND_ASSIGN(JudgeDataStats stats,
                       CollectJudgeData(*target_model_, *draft_model_, *target_.tokenizer, {e}, options, &writer));
  EXPECT_GT(stats.rollouts, 0);
  EXPECT_EQ(stats.rollout_dead_ends, stats.rollouts);
  EXPECT_EQ(stats.positives, 0);
  // With prefix labels the same proposals are mostly correct.
  std::filesystem::remove_all(dir_);
  ASSERT_OK_AND_ASSIGN(JudgeDatasetWriter prefix_writer, JudgeDatasetWriter::Create(dir_.string(), spec));
  options.labels = LabelMode::kPrefix;
  ASSERT_OK_AND_ASSIGN(stats, CollectJudgeData(*target_model_, *draft_model_, *target_.tokenizer, {e}, options,
                                               &prefix_writer));
  EXPECT_GT(stats.positives, 0);
}

TEST_F(JudgeDataTest, RejectsBadOptions) {
  DatasetSpec spec;
  spec.hidden_size = target_.config.hidden_size;
  spec.extra_feature_names = JudgeDataExtraFeatureNames();
  ASSERT_OK_AND_ASSIGN(JudgeDatasetWriter writer, JudgeDatasetWriter::Create(dir_.string(), spec));
  JudgeDataOptions options;
  options.k = 0;
  EXPECT_THAT(CollectJudgeData(*target_model_, *draft_model_, *target_.tokenizer, {}, options, &writer),
              StatusIs(absl::StatusCode::kInvalidArgument));
  TaskExample e;
  e.id = "bad";
  e.prompt = "x";
  e.labeled_tokens = {1, 100000};
  e.token_labels = {1, 1};
  options.k = 4;
  EXPECT_THAT(CollectJudgeData(*target_model_, *draft_model_, *target_.tokenizer, {e}, options, &writer),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::HasSubstr("outside the vocabulary")));
}

}  // namespace
}  // namespace verdict::judge
