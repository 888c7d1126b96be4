// SPDX-License-Identifier: Apache-2.0
// GenerationService::Prepare, the one place a client request (gRPC, or HTTP through the same
// message) becomes a coordinator request: the checkpoint's sampling defaults fill what the request
// leaves unset exactly as `verdict generate` resolves its flags (engine::ResolveSampling over the
// same generation_config.json), and a prompt that does not fit is marked context_length_exceeded.
#include "services/coordinator/generation_service.h"

#include <optional>

#include "common/testing/status_matchers.h"
#include "engine/model_config.h"
#include "engine/model_loader.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace verdict::services {
namespace {

using ::testing::HasSubstr;
using ::verdict::testing::StatusIs;

ServedModel Model(const spec::SamplingDefaults& defaults) {
  ServedModel m;
  m.name = "m";
  m.vocab_size = 100;
  m.context_length = 64;
  m.sampling_defaults = defaults;
  m.default_max_tokens = 16;
  return m;
}

v1::GenerateRequest Request() {
  v1::GenerateRequest r;
  r.mutable_prompt_tokens()->add_ids(1);
  r.mutable_prompt_tokens()->add_ids(2);
  r.mutable_sampling()->set_seed(9);
  return r;
}

TEST(PrepareTest, UnsetSamplingTakesTheCheckpointsDefaultsLikeVerdictGenerate) {
  // A checkpoint whose generation_config.json samples (like assets/models/tiny-stories).
  engine::GenerationDefaults checkpoint;
  checkpoint.has_do_sample = checkpoint.do_sample = true;
  checkpoint.temperature = 0.7f;
  checkpoint.top_p = 0.9f;
  const GenerationService service(nullptr, Model(engine::SamplingDefaultsOf(checkpoint)));
  struct Case {
    std::optional<float> temperature;
    std::optional<int64_t> top_k;
    std::optional<float> top_p;
  };
  for (const Case& c : {Case{}, Case{0.0f, {}, {}}, Case{1.2f, {}, {}}, Case{{}, 5, {}}, Case{{}, {}, 0.5f},
                        Case{0.3f, 7, 0.8f}}) {
    v1::GenerateRequest r = Request();
    if (c.temperature) r.mutable_sampling()->set_temperature(*c.temperature);
    if (c.top_k) r.mutable_sampling()->set_top_k(static_cast<int32_t>(*c.top_k));
    if (c.top_p) r.mutable_sampling()->set_top_p(*c.top_p);
    ASSERT_OK_AND_ASSIGN(coordinator::GenerationRequest prepared, service.Prepare(r));
    const spec::SamplingParams want = engine::ResolveSampling(checkpoint, c.temperature, c.top_k, c.top_p, 9);
    EXPECT_EQ(prepared.sampling.temperature, want.temperature);
    EXPECT_EQ(prepared.sampling.top_k, want.top_k);
    EXPECT_EQ(prepared.sampling.top_p, want.top_p);
  }
  // Nothing given on a sampling checkpoint: its temperature and top-p.
  ASSERT_OK_AND_ASSIGN(coordinator::GenerationRequest sampled, service.Prepare(Request()));
  EXPECT_FLOAT_EQ(sampled.sampling.temperature, 0.7f);
  EXPECT_FLOAT_EQ(sampled.sampling.top_p, 0.9f);
  // A greedy checkpoint: nothing given is greedy.
  const GenerationService greedy(nullptr, Model({}));
  ASSERT_OK_AND_ASSIGN(coordinator::GenerationRequest g, greedy.Prepare(Request()));
  EXPECT_TRUE(g.sampling.greedy());
}

// Issue 21: with max_tokens left to the server's default, a generation that reaches the context's
// end must be reported as such (FINISH_REASON_CONTEXT); Prepare used to clamp max_new_tokens to the
// room left, so the coordinator reported FINISH_REASON_LENGTH.
TEST(PrepareTest, TheDefaultMaxTokensIsNotClampedToTheRoomLeft) {
  const GenerationService service(nullptr, Model({}));  // context 64, default max tokens 16
  v1::GenerateRequest r = Request();
  for (int i = 0; i < 56; ++i) r.mutable_prompt_tokens()->add_ids(3);  // 58 tokens: room for 6
  ASSERT_OK_AND_ASSIGN(coordinator::GenerationRequest prepared, service.Prepare(r));
  EXPECT_EQ(prepared.max_new_tokens, 16);
}

TEST(PrepareTest, APromptThatDoesNotFitIsContextLengthExceeded) {
  const GenerationService service(nullptr, Model({}));
  v1::GenerateRequest r = Request();
  for (int i = 0; i < 70; ++i) r.mutable_prompt_tokens()->add_ids(3);
  absl::StatusOr<coordinator::GenerationRequest> prepared = service.Prepare(r);
  EXPECT_THAT(prepared, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(prepared.status().GetPayload(kErrorCodePayload).value_or(absl::Cord()), kContextLengthExceeded);
}

// Generate parses its own request: bytes protobuf refuses (a string that is not UTF-8, a malformed
// message) are INVALID_ARGUMENT saying so.
TEST(ParseGenerateRequestTest, RefusedBytesAreInvalidArgumentNamingUtf8) {
  auto bytes = [](const std::string& data) {
    grpc::Slice slice(data);
    return grpc::ByteBuffer(&slice, 1);
  };
  v1::GenerateRequest r = Request();
  r.set_prompt("ab");
  const std::string good = r.SerializeAsString();
  ASSERT_OK_AND_ASSIGN(v1::GenerateRequest parsed, GenerationService::ParseGenerateRequest(bytes(good)));
  EXPECT_EQ(parsed.prompt(), "ab");
  std::string bad = good;
  bad.replace(bad.find("ab"), 2, "\xff\xfe");
  EXPECT_THAT(GenerationService::ParseGenerateRequest(bytes(bad)).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("UTF-8")));
  EXPECT_THAT(GenerationService::ParseGenerateRequest(bytes(std::string("\x12\xff\xff\xff\x0f", 5))).status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace verdict::services
