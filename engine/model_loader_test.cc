// SPDX-License-Identifier: Apache-2.0
// ResolveSampling: the precedence a request's sampling follows (given values, then the
// checkpoint's generation_config.json when it samples, then greedy).
#include "engine/model_loader.h"

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

}  // namespace
}  // namespace verdict::engine
