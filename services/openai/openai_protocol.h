// SPDX-License-Identifier: Apache-2.0
// The OpenAI-compatible HTTP API's JSON, without any networking: a completion request becomes the
// same v1::GenerateRequest the gRPC API takes (so both front ends share one validation, one set of
// defaults and one allow-list: GenerationService::Prepare), and results, stream chunks and errors
// become the JSON OpenAI clients parse. openai_server.h serves it.
//
// Request fields: model, prompt (a string, a token array, or a one-element list of either), max_tokens
// / max_completion_tokens, temperature, top_p, seed, stop (a string or a list), n (1 only), logprobs
// (none only), echo (false only), best_of (1 only), stream, stream_options.include_usage, user
// (ignored), and Verdict's own controls in "verdict": {policy, draft_window (a size or "auto"),
// min_window, max_window, judge_threshold, lossy_threshold, typical_delta, speculate}. Other fields
// are ignored, as the reference servers do; a known field of the wrong type is a 400 naming it.
#ifndef VERDICT_SERVICES_OPENAI_OPENAI_PROTOCOL_H_
#define VERDICT_SERVICES_OPENAI_OPENAI_PROTOCOL_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/tokenizer/chat_template.h"
#include "nlohmann/json.hpp"
#include "services/coordinator/generation_service.h"
#include "verdict/v1/generation.pb.h"

namespace verdict::services::openai {

// An error as OpenAI's API reports it: the HTTP status and {"error": {message, type, param, code}}.
struct ApiError {
  int http_status = 500;
  std::string type;     // "invalid_request_error", "permission_error", "rate_limit_error", ...
  std::string code;     // e.g. "model_not_found", "context_length_exceeded"; empty: null
  std::string param;    // the request field at fault; empty: null
  std::string message;
};
nlohmann::json ErrorJson(const ApiError& error);

// The payload a status carries to name the request field at fault (set by the request parser);
// GenerationService's kErrorCodePayload names the error ("context_length_exceeded").
inline constexpr absl::string_view kParamPayload = "verdict.dev/param";
// kInvalidArgument 400 (413 with code context_length_exceeded), kNotFound 404, kPermissionDenied
// 403, kUnauthenticated 401, kResourceExhausted 429, kFailedPrecondition 400, kUnavailable 503,
// kDeadlineExceeded 504, kCancelled 499 (the client went away), others 500.
ApiError ErrorFromStatus(const absl::Status& status);

// A parsed POST /v1/completions or /v1/chat/completions body. For chat, `request` has no prompt
// yet (the server renders `messages` with the model's chat template into prompt_tokens).
struct CompletionCall {
  v1::GenerateRequest request;
  std::vector<engine::ChatMessage> messages;  // chat only
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage: a last chunk with the usage
};
// Errors: kInvalidArgument naming the field (kParamPayload) for malformed JSON, wrong types and
// unsupported values (n != 1, logprobs, echo, best_of != 1, a batch of prompts).
absl::StatusOr<CompletionCall> ParseCompletionRequest(absl::string_view body);
// Chat: "messages" (role, and content as a string or a list of {"type": "text"} parts) instead of
// "prompt"; tools, non-text content parts, a response_format other than text and logprobs /
// top_logprobs are 400s naming the field.
absl::StatusOr<CompletionCall> ParseChatRequest(absl::string_view body);

// Chat: renders `call->messages` with the model's chat template into the request's prompt_tokens.
// kInvalidArgument naming "messages" when the model has no template or the template fails on them
// (e.g. raise_exception for roles that do not alternate); the request is unchanged then.
absl::Status RenderChat(const ServedModel& model, CompletionCall* call);

// What a response shares: the id ("cmpl-..." / "chatcmpl-..."), creation time (Unix seconds), the
// model's name, and which API's shape it takes.
struct CompletionMeta {
  std::string id;
  int64_t created = 0;
  std::string model;
  bool chat = false;
};
// "stop" (end of text, a stop string or token) or "length" (max_tokens or the context's end), as
// the reference servers report them.
const char* FinishReasonName(v1::FinishReason reason);
// The speculation statistics and what ran, the "verdict" object beside "usage".
nlohmann::json VerdictJson(const v1::GenerateResponse::Final& final);
nlohmann::json UsageJson(const v1::GenerateResponse::Final& final);
// The non-streaming response (object "text_completion").
nlohmann::json CompletionJson(const CompletionMeta& meta, const std::string& text,
                              const v1::GenerateResponse::Final& final);
// Stream chunks: (chat only) the first, whose delta names the assistant role; text
// (finish_reason null), the last choice chunk (finish_reason set; with "verdict" statistics), and
// the usage chunk (empty choices) of stream_options.include_usage.
nlohmann::json RoleChunkJson(const CompletionMeta& meta);
nlohmann::json TextChunkJson(const CompletionMeta& meta, const std::string& text);
nlohmann::json FinishChunkJson(const CompletionMeta& meta, const v1::GenerateResponse::Final& final);
nlohmann::json UsageChunkJson(const CompletionMeta& meta, const v1::GenerateResponse::Final& final);
// One Server-Sent Event: "data: <json>\n\n".
std::string SseEvent(const nlohmann::json& data);
inline constexpr absl::string_view kSseDone = "data: [DONE]\n\n";

// GET /v1/models (object "list" of "model" objects, with Verdict's description of each).
nlohmann::json ModelsJson(const v1::ModelInfo& model, int64_t created);

}  // namespace verdict::services::openai

#endif  // VERDICT_SERVICES_OPENAI_OPENAI_PROTOCOL_H_
