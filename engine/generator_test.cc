// SPDX-License-Identifier: Apache-2.0
#include "engine/generator.h"

#include <string>
#include <vector>

#include "common/testing/status_matchers.h"
#include "engine/model_loader.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace verdict::engine {
namespace {

using ::verdict::testing::StatusIs;

const std::string kFixtures = std::string(VERDICT_SOURCE_DIR) + "/tests/fixtures/models/";

class GeneratorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto model = LoadModel(kFixtures + "llama3_gqa");
    ASSERT_OK(model.status());
    model_ = *std::move(model);
    backend_ = CreateCpuBackend({2});
    auto slice = ModelSlice::Create(model_.config, *model_.weights, {}, backend_.get());
    ASSERT_OK(slice.status());
    slice_ = *std::move(slice);
  }

  // Greedy continuation computed without a KV cache: a fresh full forward over the whole
  // sequence for every new token.
  std::vector<int32_t> GreedyByRecomputation(std::vector<int32_t> sequence, int steps) {
    std::vector<int32_t> out;
    const int64_t vocab = slice_->config().vocab_size;
    for (int i = 0; i < steps; ++i) {
      auto cache = slice_->NewKvCache(static_cast<int64_t>(sequence.size())).value();
      ForwardBatch batch;
      batch.sequences = {{cache.get(), static_cast<int64_t>(sequence.size())}};
      batch.token_ids = sequence;
      ForwardResult r;
      EXPECT_OK(slice_->Forward(batch, &r));
      const int32_t next = Argmax(absl::MakeConstSpan(r.logits).subspan((sequence.size() - 1) * vocab, vocab));
      out.push_back(next);
      sequence.push_back(next);
    }
    return out;
  }

  LoadedModel model_;
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<ModelSlice> slice_;
};

TEST_F(GeneratorTest, GreedyMatchesRecomputationWithoutCache) {
  const std::vector<int32_t> prompt = {3, 17, 250, 9, 41};
  GenerateOptions options;
  options.max_new_tokens = 40;  // runs past original_max_position_embeddings (32)
  ASSERT_OK_AND_ASSIGN(GenerateResult result, Generate(*slice_, prompt, options));
  EXPECT_EQ(result.tokens, GreedyByRecomputation(prompt, 40));
}

TEST_F(GeneratorTest, StopsAtStopTokenAndStreamsEveryToken) {
  const std::vector<int32_t> prompt = {3, 17, 250, 9, 41};
  const std::vector<int32_t> greedy = GreedyByRecomputation(prompt, 10);
  GenerateOptions options;
  options.max_new_tokens = 10;
  options.stop_token_ids = {greedy[4]};
  std::vector<int32_t> streamed;
  options.on_token = [&](int32_t t) {
    streamed.push_back(t);
    return true;
  };
  ASSERT_OK_AND_ASSIGN(GenerateResult result, Generate(*slice_, prompt, options));
  const auto first_stop = std::find(greedy.begin(), greedy.end(), greedy[4]) - greedy.begin();
  EXPECT_EQ(result.tokens, std::vector<int32_t>(greedy.begin(), greedy.begin() + first_stop + 1));
  EXPECT_TRUE(result.stopped_by_token);
  EXPECT_EQ(streamed, result.tokens);
}

TEST_F(GeneratorTest, SeededSamplingIsReproducible) {
  const std::vector<int32_t> prompt = {3, 17, 250};
  GenerateOptions options;
  options.max_new_tokens = 24;
  options.sampling = {1.0f, 50, 0.95f, 7};
  ASSERT_OK_AND_ASSIGN(GenerateResult a, Generate(*slice_, prompt, options));
  ASSERT_OK_AND_ASSIGN(GenerateResult b, Generate(*slice_, prompt, options));
  EXPECT_EQ(a.tokens, b.tokens);
  options.sampling.seed = 8;
  ASSERT_OK_AND_ASSIGN(GenerateResult c, Generate(*slice_, prompt, options));
  EXPECT_NE(a.tokens, c.tokens);
}

TEST_F(GeneratorTest, RejectsBadPrompts) {
  GenerateOptions options;
  EXPECT_THAT(Generate(*slice_, {}, options), StatusIs(absl::StatusCode::kInvalidArgument));
  std::vector<int32_t> too_long(model_.config.max_position_embeddings, 5);
  EXPECT_THAT(Generate(*slice_, too_long, options), StatusIs(absl::StatusCode::kInvalidArgument));
  std::vector<int32_t> bad_id = {1, 99999};
  EXPECT_THAT(Generate(*slice_, bad_id, options), StatusIs(absl::StatusCode::kInvalidArgument));
  options.sampling.temperature = -1;
  EXPECT_THAT(Generate(*slice_, {1, 2}, options), StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace verdict::engine
