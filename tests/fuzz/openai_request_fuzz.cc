// SPDX-License-Identifier: Apache-2.0
// Fuzz target: the body of an HTTP POST to the OpenAI-compatible API, through everything the server
// does with it before the coordinator: the request parser (ParseCompletionRequest /
// ParseChatRequest), the chat template rendering of the messages (RenderChat, with the arithmetic
// target's tokenizer and template), the client API's validation (GenerationService::Prepare) and,
// for an error, the JSON error body.
//
// Input: byte 0 bit 0 selects /v1/chat/completions (else /v1/completions), bit 1 serves the model
// with every policy and a judge (else the defaults: exact only); the rest is the body. The custom
// mutator changes JSON values and keys (tests/fuzz/fuzz_util.h MutateJson).
// Invariants: a parsed request carries what its API needs (a prompt, or a non-empty message list)
// with its values in the ranges the parser documents; an error is an HTTP error whose JSON body
// dumps; a prepared request has a non-empty prompt of token ids inside the vocabulary that fits
// the context, a positive token budget, valid sampling and speculation values, and an allowed policy.
#include <algorithm>
#include <cmath>
#include <memory>
#include <string>

#include "engine/model_loader.h"
#include "nlohmann/json.hpp"
#include "services/coordinator/generation_service.h"
#include "services/openai/openai_protocol.h"
#include "spec/sampling_params.h"
#include "spec/speculation_params.h"
#include "tests/fuzz/fuzz_util.h"
#include "tests/fuzz/served_model.h"

namespace verdict::fuzz {
namespace {

void CheckError(const absl::Status& status) {
  const services::openai::ApiError e = services::openai::ErrorFromStatus(status);
  FUZZ_CHECK(e.http_status >= 400 && e.http_status < 600, "HTTP status ", e.http_status);
  FUZZ_CHECK(!e.type.empty());
  const std::string body = services::openai::ErrorJson(e).dump();
  FUZZ_CHECK(!body.empty());
}

void CheckParsed(const services::openai::CompletionCall& call, bool chat, absl::string_view json_text) {
  const v1::GenerateRequest& r = call.request;
  if (chat) {
    FUZZ_CHECK(!call.messages.empty());
    FUZZ_CHECK(r.input_case() == v1::GenerateRequest::INPUT_NOT_SET, "a chat request with a prompt");
  } else {
    FUZZ_CHECK(r.has_prompt_tokens() || r.input_case() == v1::GenerateRequest::kPrompt, "no prompt");
    for (int32_t id : r.prompt_tokens().ids()) FUZZ_CHECK(id >= 0, "prompt token ", id);
  }
  if (r.max_tokens() != 0) FUZZ_CHECK(r.max_tokens() >= 1, "max_tokens ", r.max_tokens());
  const v1::SamplingParams& s = r.sampling();
  if (s.has_temperature()) FUZZ_CHECK(s.temperature() >= 0 && s.temperature() <= 2, "temperature ", s.temperature());
  if (s.has_top_p()) FUZZ_CHECK(s.top_p() > 0 && s.top_p() <= 1, "top_p ", s.top_p());
  if (s.has_top_k()) FUZZ_CHECK(s.top_k() >= 0, "top_k ", s.top_k());
  if (call.include_usage) FUZZ_CHECK(call.stream);
  // Integers the parser accepted reach the request unchanged (not wrapped into another value).
  const nlohmann::json body = nlohmann::json::parse(json_text);
  if (const auto v = body.find("verdict"); v != body.end() && v->is_object()) {
    const v1::SpeculationParams& p = r.speculation();
    for (const auto& [key, value] : {std::pair<const char*, int32_t>{"draft_window", p.draft_window()},
                                     {"min_window", p.min_window()}, {"max_window", p.max_window()}}) {
      const auto it = v->find(key);
      if (it != v->end() && it->is_number_integer()) {
        FUZZ_CHECK(it->get<int64_t>() == value && (it->is_number_unsigned() ? it->get<uint64_t>() <= INT32_MAX : true),
                   "verdict.", key, " ", it->dump(), " became ", value);
      }
    }
  }
}

}  // namespace
}  // namespace verdict::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace verdict;  // NOLINT
  if (size < 1) return 0;
  const bool chat = (data[0] & 1) != 0;
  const fuzz::ServedServices& served = fuzz::Served();
  const services::GenerationService& service = (data[0] & 2) != 0 ? *served.everything : *served.exact_only;
  const absl::string_view body(reinterpret_cast<const char*>(data + 1), size - 1);
  absl::StatusOr<services::openai::CompletionCall> call =
      chat ? services::openai::ParseChatRequest(body) : services::openai::ParseCompletionRequest(body);
  if (!call.ok()) {
    FUZZ_CHECK(call.status().code() == absl::StatusCode::kInvalidArgument, call.status().ToString());
    fuzz::CheckError(call.status());
    // Not JSON, or not an object: nothing deeper to reach from here.
    return call.status().GetPayload(services::openai::kParamPayload).has_value() ? 0 : -1;
  }
  fuzz::CheckParsed(*call, chat, body);
  if (chat) {
    const absl::Status rendered = services::openai::RenderChat(service.model(), &*call);
    if (!rendered.ok()) {
      FUZZ_CHECK(rendered.code() == absl::StatusCode::kInvalidArgument, rendered.ToString());
      fuzz::CheckError(rendered);
      return 0;
    }
  }
  absl::StatusOr<coordinator::GenerationRequest> prepared = service.Prepare(call->request);
  if (!prepared.ok()) {
    fuzz::CheckError(prepared.status());
    return 0;
  }
  fuzz::CheckPrepared(*prepared, service.model());
  return 0;
}

extern "C" size_t LLVMFuzzerCustomMutator(uint8_t* data, size_t size, size_t max_size, unsigned int seed) {
  static const std::vector<std::string> kKeys = {
      "model",       "prompt",       "messages",         "role",          "content",        "type",
      "text",        "max_tokens",   "max_completion_tokens", "temperature", "top_p",        "top_k",
      "seed",        "n",            "best_of",          "presence_penalty", "frequency_penalty", "logit_bias",
      "echo",        "logprobs",     "suffix",           "top_logprobs",  "tools",          "tool_choice",
      "functions",   "response_format", "stop",          "user",          "stream",         "stream_options",
      "include_usage", "verdict",    "policy",           "draft_window",  "min_window",     "max_window",
      "judge_threshold", "lossy_threshold", "typical_delta", "speculate", "tool_calls",     "function_call",
      "system",      "assistant",    "user",             "judge",         "auto",           "lossy_typical"};
  if (size < 2 || (seed & 15) == 0) return LLVMFuzzerMutate(data, size, max_size);
  if ((seed & 15) == 1) {
    data[0] ^= static_cast<uint8_t>(1u << ((seed >> 4) & 1));
    return size;
  }
  const size_t n = verdict::fuzz::MutateJson(kKeys, data + 1, size - 1, max_size - 1, seed);
  return n + 1;
}

std::vector<std::string> VerdictFuzzSeeds() {
  const std::string completion = R"({"model": "arith-target", "prompt": "Q: Tom has 87 cookies. How many?\nA:",
      "max_tokens": 8, "temperature": 0, "stop": ["\n"], "seed": 3, "n": 1, "stream": true,
      "stream_options": {"include_usage": true},
      "verdict": {"policy": "judge", "draft_window": 4, "judge_threshold": 0.4, "speculate": true}})";
  const std::string tokens = R"({"prompt": [1, 5, 9, 12], "max_tokens": 4, "top_p": 0.9, "temperature": 0.7,
      "top_k": 5, "verdict": {"draft_window": "auto", "min_window": 2, "max_window": 8, "policy": "lossy_typical",
      "lossy_threshold": 0.2, "typical_delta": 0.3}})";
  const std::string chat = R"({"model": "arith-target", "messages": [{"role": "system", "content": "Be brief."},
      {"role": "user", "content": [{"type": "text", "text": "Tom has 87 cookies."}]},
      {"role": "assistant", "content": "ok"}, {"role": "user", "content": "How many?"}],
      "max_completion_tokens": 8, "temperature": 0, "response_format": {"type": "text"}, "tools": [],
      "tool_choice": "none", "logprobs": false, "verdict": {"policy": "judge_shadow"}})";
  return {std::string(1, '\0') + completion, std::string(1, '\2') + completion, std::string(1, '\2') + tokens,
          std::string(1, '\1') + chat, std::string(1, '\3') + chat};
}
