// SPDX-License-Identifier: Apache-2.0
// The OpenAI-compatible API's JSON without a network: requests become the gRPC API's
// GenerateRequest field by field, malformed and unsupported ones are 400s naming the field, statuses
// map to OpenAI's error types and HTTP codes, and responses carry the fields OpenAI clients read.
#include "services/openai/openai_protocol.h"

#include <string>

#include "absl/strings/cord.h"
#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/coordinator/generation_service.h"

namespace verdict::services::openai {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::verdict::testing::StatusIs;
using json = nlohmann::json;

TEST(ParseCompletionRequestTest, MapsEveryFieldOntoTheGenerateRequest) {
  ASSERT_OK_AND_ASSIGN(CompletionCall call, ParseCompletionRequest(R"({
      "model": "arith-target", "prompt": "12+30=", "max_tokens": 20, "temperature": 0.7, "top_p": 0.9,
      "seed": 42, "stop": ["\n", "END"], "n": 1, "logprobs": null, "user": "u-1", "stream": true,
      "stream_options": {"include_usage": true}, "some_future_field": {"ignored": true},
      "verdict": {"policy": "judge", "draft_window": 16, "judge_threshold": 0.8, "speculate": true}})"));
  const v1::GenerateRequest& r = call.request;
  EXPECT_EQ(r.model(), "arith-target");
  EXPECT_EQ(r.prompt(), "12+30=");
  EXPECT_EQ(r.max_tokens(), 20);
  EXPECT_FLOAT_EQ(r.sampling().temperature(), 0.7f);
  EXPECT_FLOAT_EQ(r.sampling().top_p(), 0.9f);
  EXPECT_EQ(r.sampling().seed(), 42u);
  EXPECT_THAT(r.stop(), ElementsAre("\n", "END"));
  EXPECT_TRUE(call.stream);
  EXPECT_TRUE(call.include_usage);
  EXPECT_EQ(r.speculation().policy(), v1::VERIFICATION_POLICY_JUDGE);
  EXPECT_EQ(r.speculation().draft_window(), 16);
  EXPECT_FLOAT_EQ(r.speculation().judge_threshold(), 0.8f);
  EXPECT_FALSE(r.speculation().disable_speculation());
}

TEST(ParseCompletionRequestTest, PromptFormsAndDefaults) {
  ASSERT_OK_AND_ASSIGN(CompletionCall tokens, ParseCompletionRequest(R"({"prompt": [1, 5, 9]})"));
  EXPECT_THAT(tokens.request.prompt_tokens().ids(), ElementsAre(1, 5, 9));
  ASSERT_OK_AND_ASSIGN(CompletionCall listed, ParseCompletionRequest(R"({"prompt": ["hi"]})"));
  EXPECT_EQ(listed.request.prompt(), "hi");
  ASSERT_OK_AND_ASSIGN(CompletionCall nested, ParseCompletionRequest(R"({"prompt": [[3, 4]]})"));
  EXPECT_THAT(nested.request.prompt_tokens().ids(), ElementsAre(3, 4));
  // Unset sampling stays unset (the checkpoint's defaults decide), not streamed.
  ASSERT_OK_AND_ASSIGN(CompletionCall plain, ParseCompletionRequest(R"({"prompt": "x", "max_completion_tokens": 5})"));
  EXPECT_FALSE(plain.request.sampling().has_temperature());
  EXPECT_FALSE(plain.request.sampling().has_top_p());
  EXPECT_EQ(plain.request.max_tokens(), 5);
  EXPECT_FALSE(plain.stream);
  ASSERT_OK_AND_ASSIGN(CompletionCall greedy,
                       ParseCompletionRequest(R"({"prompt": "x", "temperature": 0, "stop": "\n",
                                                  "verdict": {"draft_window": "auto", "speculate": false}})"));
  EXPECT_TRUE(greedy.request.sampling().has_temperature());
  EXPECT_FLOAT_EQ(greedy.request.sampling().temperature(), 0.0f);
  EXPECT_THAT(greedy.request.stop(), ElementsAre("\n"));
  EXPECT_TRUE(greedy.request.speculation().adaptive_window());
  EXPECT_TRUE(greedy.request.speculation().disable_speculation());
}

// Each bad request: INVALID_ARGUMENT naming the field, which becomes OpenAI's "param".
TEST(ParseCompletionRequestTest, BadRequestsNameTheirField) {
  struct Case {
    const char* body;
    const char* param;  // "" for errors about the whole body
    const char* message;
  };
  for (const Case& c : {Case{"{", "", "not valid JSON"}, Case{"[1]", "", "JSON object"},
                        Case{R"({"max_tokens": 3})", "prompt", "required"},
                        Case{R"({"prompt": 7})", "prompt", "must be a string"},
                        Case{R"({"prompt": ["a", "b"]})", "prompt", "batch of 2 prompts"},
                        Case{R"({"prompt": [-1]})", "prompt", "not a token id"},
                        Case{R"({"prompt": "x", "model": 3})", "model", "must be a string"},
                        Case{R"({"prompt": "x", "max_tokens": "10"})", "max_tokens", "integer"},
                        Case{R"({"prompt": "x", "max_tokens": 0})", "max_tokens", "at least 1"},
                        Case{R"({"prompt": "x", "temperature": "hot"})", "temperature", "number"},
                        Case{R"({"prompt": "x", "temperature": 3})", "temperature", "[0, 2]"},
                        Case{R"({"prompt": "x", "top_p": 0})", "top_p", "(0, 1]"},
                        Case{R"({"prompt": "x", "n": 2})", "n", "n = 1"},
                        Case{R"({"prompt": "x", "best_of": 3})", "best_of", "best_of = 1"},
                        Case{R"({"prompt": "x", "logprobs": 5})", "logprobs", "not supported"},
                        Case{R"({"prompt": "x", "echo": true})", "echo", "not supported"},
                        Case{R"({"prompt": "x", "presence_penalty": 0.5})", "presence_penalty", "not supported"},
                        Case{R"({"prompt": "x", "logit_bias": {"5": 10}})", "logit_bias", "not supported"},
                        Case{R"({"prompt": "x", "stop": [1]})", "stop", "list of strings"},
                        Case{R"({"prompt": "x", "stream": "yes"})", "stream", "boolean"},
                        Case{R"({"prompt": "x", "stream_options": {"include_usage": true}})", "stream_options",
                             "only allowed"},
                        Case{R"({"prompt": "x", "verdict": 1})", "verdict", "object"},
                        Case{R"({"prompt": "x", "verdict": {"policy": "fastest"}})", "verdict.policy", "fastest"},
                        Case{R"({"prompt": "x", "verdict": {"draft_window": "big"}})", "verdict.draft_window",
                             "auto"},
                        // Integers past the int32 wire fields are errors, not wrapped values (a
                        // window of 2^32 + 5 used to run with 5; tests/fuzz openai_request).
                        Case{R"({"prompt": "x", "verdict": {"draft_window": 4294967301}})",
                             "verdict.draft_window", "out of range"},
                        Case{R"({"prompt": "x", "verdict": {"max_window": 18446744073709551615}})",
                             "verdict.max_window", "out of range"},
                        Case{R"({"prompt": "x", "verdict": {"min_window": -2147483649}})", "verdict.min_window",
                             "out of range"},
                        Case{R"({"prompt": "x", "top_k": 18446744073709551615})", "top_k", "out of range"}}) {
    SCOPED_TRACE(c.body);
    absl::StatusOr<CompletionCall> call = ParseCompletionRequest(c.body);
    EXPECT_THAT(call, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.message)));
    const ApiError e = ErrorFromStatus(call.status());
    EXPECT_EQ(e.http_status, 400);
    EXPECT_EQ(e.type, "invalid_request_error");
    EXPECT_EQ(e.param, c.param);
  }
}

// A top_p inside (0, 1] but below float's range must not become 0, which the wire reads as "off"
// (top_p 1e-320 used to sample from the whole vocabulary; tests/fuzz openai_request).
TEST(ParseCompletionRequestTest, TinyTopPStaysPositive) {
  ASSERT_OK_AND_ASSIGN(CompletionCall call, ParseCompletionRequest(R"({"prompt": "x", "top_p": 1e-320})"));
  EXPECT_GT(call.request.sampling().top_p(), 0.0f);
  EXPECT_LT(call.request.sampling().top_p(), 1e-30f);
}

TEST(ParseChatRequestTest, MessagesAndChatOnlyFields) {
  ASSERT_OK_AND_ASSIGN(CompletionCall call, ParseChatRequest(R"({
      "model": "m", "messages": [{"role": "system", "content": "Be brief."},
                                 {"role": "user", "content": [{"type": "text", "text": "Hi "},
                                                              {"type": "text", "text": "there"}]},
                                 {"role": "assistant", "content": null, "name": "bot"}],
      "max_completion_tokens": 9, "temperature": 0, "logprobs": false, "tools": [],
      "response_format": {"type": "text"}, "stream": true})"));
  ASSERT_EQ(call.messages.size(), 3u);
  EXPECT_EQ(call.messages[0].role, "system");
  EXPECT_EQ(call.messages[1].content, "Hi there");
  EXPECT_EQ(call.messages[2].content, "");
  EXPECT_FALSE(call.request.has_prompt_tokens());  // the server renders the messages
  EXPECT_EQ(call.request.max_tokens(), 9);
  EXPECT_TRUE(call.stream);
  struct Case {
    const char* body;
    const char* param;
  };
  for (const Case& c : {Case{R"({"prompt": "x"})", "messages"}, Case{R"({"messages": []})", "messages"},
                        Case{R"({"messages": [{"content": "x"}]})", "messages[0].role"},
                        Case{R"({"messages": [{"role": "user", "content": 5}]})", "messages[0].content"},
                        Case{R"({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]})",
                             "messages[0].content"},
                        Case{R"({"messages": [{"role": "user", "content": "x"}], "logprobs": true})", "logprobs"},
                        Case{R"({"messages": [{"role": "user", "content": "x"}], "top_logprobs": 2})", "top_logprobs"},
                        Case{R"({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]})",
                             "tools"},
                        Case{R"({"messages": [{"role": "user", "content": "x"}],
                                 "response_format": {"type": "json_object"}})", "response_format"},
                        Case{R"({"messages": [{"role": "user", "content": "x"}], "n": 4})", "n"},
                        // A "type" that is not a string is a 400 too (json::value threw
                        // type_error 302 here: an uncaught exception; tests/fuzz openai_request).
                        Case{R"({"messages": [{"role": "user", "content": [{"type": [1], "text": "x"}]}]})",
                             "messages[0].content"},
                        Case{R"({"messages": [{"role": "user", "content": "x"}], "response_format": {"type": 7}})",
                             "response_format"},
                        Case{R"({"messages": [{"role": "user", "content": "x"}], "response_format": []})",
                             "response_format"}}) {
    SCOPED_TRACE(c.body);
    absl::StatusOr<CompletionCall> bad = ParseChatRequest(c.body);
    ASSERT_FALSE(bad.ok());
    EXPECT_EQ(ErrorFromStatus(bad.status()).http_status, 400);
    EXPECT_EQ(ErrorFromStatus(bad.status()).param, c.param);
  }
}

TEST(ResponseJsonTest, ChatShapes) {
  v1::GenerateResponse::Final final;
  final.set_finish_reason(v1::FINISH_REASON_STOP);
  final.mutable_usage()->set_prompt_tokens(3);
  final.mutable_usage()->set_completion_tokens(2);
  const CompletionMeta meta{"chatcmpl-1", 1700000000, "m", /*chat=*/true};
  const json full = CompletionJson(meta, "42", final);
  EXPECT_EQ(full["object"], "chat.completion");
  EXPECT_EQ(full["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(full["choices"][0]["message"]["content"], "42");
  EXPECT_EQ(full["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(RoleChunkJson(meta)["object"], "chat.completion.chunk");
  EXPECT_EQ(RoleChunkJson(meta)["choices"][0]["delta"]["role"], "assistant");
  EXPECT_EQ(TextChunkJson(meta, "4")["choices"][0]["delta"]["content"], "4");
  EXPECT_TRUE(FinishChunkJson(meta, final)["choices"][0]["delta"].empty());
  EXPECT_EQ(FinishChunkJson(meta, final)["choices"][0]["finish_reason"], "stop");
}

TEST(ErrorFromStatusTest, OpenAiTypesAndHttpCodes) {
  struct Case {
    absl::Status status;
    int http;
    const char* type;
    const char* code;
  };
  absl::Status too_long = absl::InvalidArgumentError("the prompt has 9000 tokens");
  too_long.SetPayload(kErrorCodePayload, absl::Cord(kContextLengthExceeded));
  for (const Case& c : {Case{absl::InvalidArgumentError("bad"), 400, "invalid_request_error", ""},
                        Case{too_long, 413, "invalid_request_error", "context_length_exceeded"},
                        Case{absl::NotFoundError("unknown model"), 404, "invalid_request_error", "model_not_found"},
                        Case{absl::PermissionDeniedError("policy"), 403, "permission_error", ""},
                        Case{absl::UnauthenticatedError("key"), 401, "authentication_error", "invalid_api_key"},
                        Case{absl::ResourceExhaustedError("limit"), 429, "rate_limit_error", "rate_limit_exceeded"},
                        Case{absl::UnavailableError("shard 1"), 503, "server_error", "service_unavailable"},
                        Case{absl::DeadlineExceededError("slow"), 504, "server_error", "timeout"},
                        Case{absl::InternalError("bug"), 500, "server_error", ""}}) {
    SCOPED_TRACE(c.status.ToString());
    const ApiError e = ErrorFromStatus(c.status);
    EXPECT_EQ(e.http_status, c.http);
    EXPECT_EQ(e.type, c.type);
    EXPECT_EQ(e.code, c.code);
    const json body = ErrorJson(e);
    EXPECT_EQ(body["error"]["message"], std::string(c.status.message()));
    EXPECT_EQ(body["error"]["type"], c.type);
    EXPECT_TRUE(body["error"].contains("param"));
    if (*c.code == '\0') {
      EXPECT_TRUE(body["error"]["code"].is_null());
    } else {
      EXPECT_EQ(body["error"]["code"], c.code);
    }
  }
}

TEST(ResponseJsonTest, CompletionChunksAndUsage) {
  v1::GenerateResponse::Final final;
  final.set_finish_reason(v1::FINISH_REASON_CONTEXT);
  final.mutable_usage()->set_prompt_tokens(7);
  final.mutable_usage()->set_completion_tokens(5);
  final.mutable_stats()->set_target_passes(2);
  final.set_policy("judge");
  final.set_seed(11);
  const CompletionMeta meta{"cmpl-1", 1700000000, "arith-target"};
  const json full = CompletionJson(meta, "42", final);
  EXPECT_EQ(full["object"], "text_completion");
  EXPECT_EQ(full["choices"][0]["text"], "42");
  EXPECT_EQ(full["choices"][0]["finish_reason"], "length");  // the context's end reads as "length"
  EXPECT_EQ(full["usage"]["total_tokens"], 12);
  EXPECT_EQ(full["verdict"]["target_passes"], 2);
  EXPECT_EQ(full["verdict"]["policy"], "judge");
  final.set_finish_reason(v1::FINISH_REASON_STOP);
  EXPECT_EQ(FinishChunkJson(meta, final)["choices"][0]["finish_reason"], "stop");
  EXPECT_TRUE(TextChunkJson(meta, "4")["choices"][0]["finish_reason"].is_null());
  const json usage = UsageChunkJson(meta, final);
  EXPECT_TRUE(usage["choices"].empty());
  EXPECT_EQ(usage["usage"]["completion_tokens"], 5);
  EXPECT_EQ(SseEvent(json{{"a", 1}}), "data: {\"a\":1}\n\n");
}

}  // namespace
}  // namespace verdict::services::openai
