// SPDX-License-Identifier: Apache-2.0
#include "services/openai/openai_protocol.h"

#include <algorithm>
#include <limits>
#include <optional>
#include <utility>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "clients/grpc/wire_convert.h"
#include "common/status_macros.h"
#include "services/coordinator/generation_service.h"
#include "spec/speculation_params.h"
#include "spec/speculation_stats.h"

namespace verdict::services::openai {
namespace {

using nlohmann::json;

absl::Status BadField(absl::string_view param, absl::string_view message) {
  absl::Status s = absl::InvalidArgumentError(message);
  s.SetPayload(kParamPayload, absl::Cord(param));
  return s;
}

// The field `name` of `body`, or nullptr when it is absent or null (both mean "not given").
const json* Field(const json& body, const char* name) {
  auto it = body.find(name);
  if (it == body.end() || it->is_null()) return nullptr;
  return &*it;
}

absl::StatusOr<std::optional<double>> Number(const json& body, const char* name, const std::string& path) {
  const json* v = Field(body, name);
  if (v == nullptr) return std::nullopt;
  if (!v->is_number()) return BadField(path, absl::StrCat("'", path, "' must be a number"));
  return v->get<double>();
}

absl::StatusOr<std::optional<int64_t>> Integer(const json& body, const char* name, const std::string& path) {
  const json* v = Field(body, name);
  if (v == nullptr) return std::nullopt;
  if (!v->is_number_integer()) return BadField(path, absl::StrCat("'", path, "' must be an integer"));
  return v->get<int64_t>();
}

// An integer that goes into an int32 wire field: out of that range is a 400, not a wrapped value
// (json's unsigned numbers above INT64_MAX included).
absl::StatusOr<std::optional<int32_t>> Int32(const json& body, const char* name, const std::string& path) {
  const json* v = Field(body, name);
  if (v == nullptr) return std::nullopt;
  if (!v->is_number_integer()) return BadField(path, absl::StrCat("'", path, "' must be an integer"));
  const bool in_range = v->is_number_unsigned() ? v->get<uint64_t>() <= uint64_t{INT32_MAX}
                                                : v->get<int64_t>() >= INT32_MIN && v->get<int64_t>() <= INT32_MAX;
  if (!in_range) return BadField(path, absl::StrCat("'", path, "' is out of range: ", v->dump()));
  return static_cast<int32_t>(v->get<int64_t>());
}

absl::StatusOr<std::optional<bool>> Boolean(const json& body, const char* name, const std::string& path) {
  const json* v = Field(body, name);
  if (v == nullptr) return std::nullopt;
  if (!v->is_boolean()) return BadField(path, absl::StrCat("'", path, "' must be a boolean"));
  return v->get<bool>();
}

absl::StatusOr<std::optional<std::string>> String(const json& body, const char* name, const std::string& path) {
  const json* v = Field(body, name);
  if (v == nullptr) return std::nullopt;
  if (!v->is_string()) return BadField(path, absl::StrCat("'", path, "' must be a string"));
  return v->get<std::string>();
}

// Whether the object `v` has a string `name` equal to `want` (false for any other type; never throws,
// unlike json::value with a default of another type).
bool HasString(const json& v, const char* name, absl::string_view want) {
  if (!v.is_object()) return false;
  const json* field = Field(v, name);
  return field != nullptr && field->is_string() && field->get_ref<const std::string&>() == want;
}

bool IsTokenArray(const json& v) {
  if (!v.is_array() || v.empty()) return false;
  for (const json& e : v) {
    if (!e.is_number_integer()) return false;
  }
  return true;
}

absl::Status ParsePrompt(const json& body, v1::GenerateRequest* request) {
  const json* prompt = Field(body, "prompt");
  if (prompt == nullptr) return BadField("prompt", "'prompt' is required");
  const json* one = prompt;
  if (prompt->is_array() && !IsTokenArray(*prompt)) {
    // A list of prompts (strings or token arrays): a batch, which this server takes one at a time.
    if (prompt->size() != 1) {
      return BadField("prompt", absl::StrCat("a batch of ", prompt->size(),
                                             " prompts is not supported; send one prompt per request"));
    }
    one = &(*prompt)[0];
  }
  if (one->is_string()) {
    request->set_prompt(one->get<std::string>());
  } else if (IsTokenArray(*one)) {
    for (const json& id : *one) {
      const int64_t v = id.get<int64_t>();
      if (v < 0 || v > INT32_MAX) return BadField("prompt", absl::StrCat("prompt token id ", v, " is not a token id"));
      request->mutable_prompt_tokens()->add_ids(static_cast<int32_t>(v));
    }
  } else {
    return BadField("prompt", "'prompt' must be a string, an array of token ids, or a list of one of those");
  }
  return absl::OkStatus();
}

absl::Status ParseSampling(const json& body, v1::SamplingParams* sampling) {
  VERDICT_ASSIGN_OR_RETURN(std::optional<double> temperature, Number(body, "temperature", "temperature"));
  // Unset: the checkpoint's generation_config.json when it samples, else greedy (the rule of
  // `verdict generate` and the gRPC API; OpenAI's own default is 1).
  if (temperature.has_value()) {
    const double t = *temperature;
    if (t < 0 || t > 2) return BadField("temperature", absl::StrCat("'temperature' must be in [0, 2], got ", t));
    sampling->set_temperature(static_cast<float>(t));
  }
  VERDICT_ASSIGN_OR_RETURN(std::optional<double> top_p, Number(body, "top_p", "top_p"));
  if (top_p.has_value()) {
    if (*top_p <= 0 || *top_p > 1) return BadField("top_p", absl::StrCat("'top_p' must be in (0, 1], got ", *top_p));
    // A positive top_p below float's range stays positive: 0 on the wire means "off" (1).
    sampling->set_top_p(std::max(static_cast<float>(*top_p), std::numeric_limits<float>::denorm_min()));
  }
  VERDICT_ASSIGN_OR_RETURN(std::optional<int32_t> top_k, Int32(body, "top_k", "top_k"));  // vLLM's extension
  if (top_k.has_value()) {
    if (*top_k < -1) return BadField("top_k", "'top_k' must be -1, 0 (off) or a count");
    sampling->set_top_k(*top_k < 0 ? 0 : *top_k);
  }
  VERDICT_ASSIGN_OR_RETURN(std::optional<int64_t> seed, Integer(body, "seed", "seed"));
  if (seed.has_value()) sampling->set_seed(static_cast<uint64_t>(*seed) == 0 ? 1 : static_cast<uint64_t>(*seed));
  return absl::OkStatus();
}

// Fields OpenAI defines that would change the output in ways this server does not implement: a
// clear 400 rather than silently different text.
absl::Status RejectUnsupported(const json& body) {
  VERDICT_ASSIGN_OR_RETURN(std::optional<int64_t> n, Integer(body, "n", "n"));
  if (n.has_value() && *n != 1) return BadField("n", absl::StrCat("only n = 1 is supported, got ", *n));
  VERDICT_ASSIGN_OR_RETURN(std::optional<int64_t> best_of, Integer(body, "best_of", "best_of"));
  if (best_of.has_value() && *best_of != 1) {
    return BadField("best_of", absl::StrCat("only best_of = 1 is supported, got ", *best_of));
  }
  for (const char* penalty : {"presence_penalty", "frequency_penalty"}) {
    VERDICT_ASSIGN_OR_RETURN(std::optional<double> v, Number(body, penalty, penalty));
    if (v.value_or(0.0) != 0.0) return BadField(penalty, absl::StrCat("'", penalty, "' is not supported"));
  }
  if (const json* bias = Field(body, "logit_bias"); bias != nullptr && !(bias->is_object() && bias->empty())) {
    return BadField("logit_bias", "'logit_bias' is not supported");
  }
  return absl::OkStatus();
}

// "verdict": {policy, draft_window, min_window, max_window, judge_threshold, lossy_threshold,
// typical_delta, speculate}.
absl::Status ParseVerdictControls(const json& body, v1::SpeculationParams* p) {
  const json* controls = Field(body, "verdict");
  if (controls == nullptr) return absl::OkStatus();
  if (!controls->is_object()) return BadField("verdict", "'verdict' must be an object");
  VERDICT_ASSIGN_OR_RETURN(std::optional<std::string> policy, String(*controls, "policy", "verdict.policy"));
  if (policy.has_value()) {
    absl::StatusOr<spec::PolicySpelling> spelled = spec::ParsePolicyName(*policy);
    if (!spelled.ok()) return BadField("verdict.policy", spelled.status().message());
    absl::StatusOr<v1::VerificationPolicy> wire_policy = wire::ToProto(spelled->policy);
    if (!wire_policy.ok()) return BadField("verdict.policy", wire_policy.status().message());
    p->set_policy(*wire_policy);
  }
  if (const json* window = Field(*controls, "draft_window")) {
    if (window->is_string() && window->get<std::string>() == "auto") {
      p->set_adaptive_window(true);
    } else if (window->is_number_integer()) {
      VERDICT_ASSIGN_OR_RETURN(std::optional<int32_t> k, Int32(*controls, "draft_window", "verdict.draft_window"));
      p->set_draft_window(*k);
    } else {
      return BadField("verdict.draft_window", "'verdict.draft_window' must be a number of tokens or \"auto\"");
    }
  }
  VERDICT_ASSIGN_OR_RETURN(std::optional<int32_t> min_window, Int32(*controls, "min_window", "verdict.min_window"));
  if (min_window.has_value()) p->set_min_window(*min_window);
  VERDICT_ASSIGN_OR_RETURN(std::optional<int32_t> max_window, Int32(*controls, "max_window", "verdict.max_window"));
  if (max_window.has_value()) p->set_max_window(*max_window);
  VERDICT_ASSIGN_OR_RETURN(std::optional<double> judge, Number(*controls, "judge_threshold", "verdict.judge_threshold"));
  if (judge.has_value()) p->set_judge_threshold(static_cast<float>(*judge));
  VERDICT_ASSIGN_OR_RETURN(std::optional<double> lossy, Number(*controls, "lossy_threshold", "verdict.lossy_threshold"));
  if (lossy.has_value()) p->set_lossy_threshold(static_cast<float>(*lossy));
  VERDICT_ASSIGN_OR_RETURN(std::optional<double> delta, Number(*controls, "typical_delta", "verdict.typical_delta"));
  if (delta.has_value()) p->set_typical_delta(static_cast<float>(*delta));
  VERDICT_ASSIGN_OR_RETURN(std::optional<bool> speculate, Boolean(*controls, "speculate", "verdict.speculate"));
  if (speculate.has_value()) p->set_disable_speculation(!*speculate);
  return absl::OkStatus();
}

}  // namespace

nlohmann::json ErrorJson(const ApiError& error) {
  json e = {{"message", error.message}, {"type", error.type}};
  e["param"] = error.param.empty() ? json(nullptr) : json(error.param);
  e["code"] = error.code.empty() ? json(nullptr) : json(error.code);
  return json{{"error", std::move(e)}};
}

ApiError ErrorFromStatus(const absl::Status& status) {
  ApiError e;
  e.message = std::string(status.message());
  if (auto param = status.GetPayload(kParamPayload)) e.param = std::string(*param);
  if (auto code = status.GetPayload(kErrorCodePayload)) e.code = std::string(*code);
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kOutOfRange:
      e.http_status = e.code == "context_length_exceeded" ? 413 : 400;
      e.type = "invalid_request_error";
      break;
    case absl::StatusCode::kNotFound:
      e.http_status = 404;
      e.type = "invalid_request_error";
      if (e.code.empty()) e.code = "model_not_found";
      if (e.param.empty()) e.param = "model";
      break;
    case absl::StatusCode::kUnauthenticated:
      e.http_status = 401;
      e.type = "authentication_error";
      if (e.code.empty()) e.code = "invalid_api_key";
      break;
    case absl::StatusCode::kPermissionDenied:
      e.http_status = 403;
      e.type = "permission_error";
      break;
    case absl::StatusCode::kResourceExhausted:
      e.http_status = 429;
      e.type = "rate_limit_error";
      if (e.code.empty()) e.code = "rate_limit_exceeded";
      break;
    case absl::StatusCode::kUnavailable:
      e.http_status = 503;
      e.type = "server_error";
      if (e.code.empty()) e.code = "service_unavailable";
      break;
    case absl::StatusCode::kDeadlineExceeded:
      e.http_status = 504;
      e.type = "server_error";
      if (e.code.empty()) e.code = "timeout";
      break;
    case absl::StatusCode::kCancelled:
      e.http_status = 499;
      e.type = "invalid_request_error";
      break;
    default:
      e.http_status = 500;
      e.type = "server_error";
      break;
  }
  return e;
}

namespace {

absl::StatusOr<json> ParseBody(absl::string_view body_text) {
  json body = json::parse(body_text.begin(), body_text.end(), nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded()) return absl::InvalidArgumentError("the request body is not valid JSON");
  if (!body.is_object()) return absl::InvalidArgumentError("the request body must be a JSON object");
  return body;
}

// What both APIs share: model, limits, sampling, stop, streaming, Verdict's controls, and the
// fields rejected as unsupported.
absl::Status ParseCommon(const json& body, CompletionCall* call);

absl::Status ParseMessages(const json& body, std::vector<engine::ChatMessage>* out) {
  const json* messages = Field(body, "messages");
  if (messages == nullptr) return BadField("messages", "'messages' is required");
  if (!messages->is_array() || messages->empty()) return BadField("messages", "'messages' must be a non-empty list");
  for (size_t i = 0; i < messages->size(); ++i) {
    const json& m = (*messages)[i];
    const std::string at = absl::StrCat("messages[", i, "]");
    if (!m.is_object()) return BadField(at, absl::StrCat("'", at, "' must be an object"));
    VERDICT_ASSIGN_OR_RETURN(std::optional<std::string> role, String(m, "role", at + ".role"));
    if (!role.has_value()) return BadField(at + ".role", absl::StrCat("'", at, ".role' is required"));
    if (Field(m, "tool_calls") != nullptr || Field(m, "function_call") != nullptr) {
      return BadField(at + ".tool_calls", "tool calls are not supported");
    }
    engine::ChatMessage message{*role, ""};
    const json* content = Field(m, "content");
    if (content == nullptr) {
      // An empty turn (e.g. an assistant message without text).
    } else if (content->is_string()) {
      message.content = content->get<std::string>();
    } else if (content->is_array()) {
      for (const json& part : *content) {
        if (!HasString(part, "type", "text") || !part.contains("text") || !part["text"].is_string()) {
          return BadField(at + ".content", "only text content parts ({\"type\": \"text\", \"text\": ...}) are supported");
        }
        message.content += part["text"].get<std::string>();
      }
    } else {
      return BadField(at + ".content", absl::StrCat("'", at, ".content' must be a string or a list of parts"));
    }
    out->push_back(std::move(message));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<CompletionCall> ParseCompletionRequest(absl::string_view body_text) {
  VERDICT_ASSIGN_OR_RETURN(const json body, ParseBody(body_text));
  CompletionCall call;
  VERDICT_RETURN_IF_ERROR(ParsePrompt(body, &call.request));
  VERDICT_ASSIGN_OR_RETURN(std::optional<bool> echo, Boolean(body, "echo", "echo"));
  if (echo.value_or(false)) return BadField("echo", "'echo' is not supported");
  if (const json* logprobs = Field(body, "logprobs")) {
    if (!(logprobs->is_number_integer() && logprobs->get<int64_t>() == 0) &&
        !(logprobs->is_boolean() && !logprobs->get<bool>())) {
      return BadField("logprobs",
                      "'logprobs' is not supported: the target's log-probabilities stay on its last shard");
    }
  }
  if (const json* suffix = Field(body, "suffix"); suffix != nullptr) {
    return BadField("suffix", "'suffix' is not supported");
  }
  VERDICT_RETURN_IF_ERROR(ParseCommon(body, &call));
  return call;
}

absl::StatusOr<CompletionCall> ParseChatRequest(absl::string_view body_text) {
  VERDICT_ASSIGN_OR_RETURN(const json body, ParseBody(body_text));
  CompletionCall call;
  VERDICT_RETURN_IF_ERROR(ParseMessages(body, &call.messages));
  VERDICT_ASSIGN_OR_RETURN(std::optional<bool> logprobs, Boolean(body, "logprobs", "logprobs"));
  if (logprobs.value_or(false)) {
    return BadField("logprobs", "'logprobs' is not supported: the target's log-probabilities stay on its last shard");
  }
  if (Field(body, "top_logprobs") != nullptr) return BadField("top_logprobs", "'top_logprobs' is not supported");
  if (const json* tools = Field(body, "tools"); tools != nullptr && !(tools->is_array() && tools->empty())) {
    return BadField("tools", "tools are not supported");
  }
  if (const json* choice = Field(body, "tool_choice"); choice != nullptr && *choice != "none") {
    return BadField("tool_choice", "tools are not supported");
  }
  if (Field(body, "functions") != nullptr) return BadField("functions", "functions are not supported");
  if (const json* format = Field(body, "response_format");
      format != nullptr && !HasString(*format, "type", "text")) {
    return BadField("response_format", "only {\"type\": \"text\"} responses are supported");
  }
  VERDICT_RETURN_IF_ERROR(ParseCommon(body, &call));
  return call;
}

namespace {

absl::Status ParseCommon(const json& body, CompletionCall* call_out) {
  CompletionCall& call = *call_out;
  v1::GenerateRequest& r = call.request;
  VERDICT_ASSIGN_OR_RETURN(std::optional<std::string> model, String(body, "model", "model"));
  if (model.has_value()) r.set_model(*model);
  VERDICT_RETURN_IF_ERROR(RejectUnsupported(body));
  VERDICT_ASSIGN_OR_RETURN(std::optional<int64_t> max_tokens, Integer(body, "max_tokens", "max_tokens"));
  VERDICT_ASSIGN_OR_RETURN(std::optional<int64_t> max_completion,
                           Integer(body, "max_completion_tokens", "max_completion_tokens"));
  const char* max_name = max_completion.has_value() ? "max_completion_tokens" : "max_tokens";
  if (max_completion.has_value()) max_tokens = max_completion;
  if (max_tokens.has_value()) {
    if (*max_tokens < 1 || *max_tokens > INT32_MAX) {
      return BadField(max_name, absl::StrCat("'", max_name, "' must be at least 1, got ", *max_tokens));
    }
    r.set_max_tokens(static_cast<int32_t>(*max_tokens));
  }
  VERDICT_RETURN_IF_ERROR(ParseSampling(body, r.mutable_sampling()));
  if (const json* stop = Field(body, "stop")) {
    if (stop->is_string()) {
      r.add_stop(stop->get<std::string>());
    } else if (stop->is_array()) {
      for (const json& s : *stop) {
        if (!s.is_string()) return BadField("stop", "'stop' must be a string or a list of strings");
        r.add_stop(s.get<std::string>());
      }
    } else {
      return BadField("stop", "'stop' must be a string or a list of strings");
    }
  }
  VERDICT_ASSIGN_OR_RETURN(std::optional<std::string> user, String(body, "user", "user"));
  (void)user;  // accepted and ignored, as OpenAI's servers do with it
  VERDICT_ASSIGN_OR_RETURN(std::optional<bool> stream, Boolean(body, "stream", "stream"));
  call.stream = stream.value_or(false);
  if (const json* options = Field(body, "stream_options")) {
    if (!call.stream) return BadField("stream_options", "'stream_options' is only allowed with \"stream\": true");
    if (!options->is_object()) return BadField("stream_options", "'stream_options' must be an object");
    VERDICT_ASSIGN_OR_RETURN(std::optional<bool> usage,
                             Boolean(*options, "include_usage", "stream_options.include_usage"));
    call.include_usage = usage.value_or(false);
  }
  VERDICT_RETURN_IF_ERROR(ParseVerdictControls(body, r.mutable_speculation()));
  return absl::OkStatus();
}

}  // namespace

absl::Status RenderChat(const ServedModel& model, CompletionCall* call) {
  if (model.chat_format == nullptr) {
    absl::Status s = absl::InvalidArgumentError(
        absl::StrCat("the model has no chat template, so chat completions are not available (", model.no_chat_format,
                     "; the cluster config's target.chat_template can name one); use /v1/completions"));
    s.SetPayload(kParamPayload, absl::Cord("messages"));
    return s;
  }
  absl::StatusOr<std::vector<int32_t>> ids =
      model.chat_format->Encode(*model.tokenizer, call->messages, /*add_generation_prompt=*/true);
  if (!ids.ok()) {
    // raise_exception (e.g. roles that do not alternate) and template errors are the request's.
    absl::Status s = absl::InvalidArgumentError(absl::StrCat("the chat template: ", ids.status().message()));
    s.SetPayload(kParamPayload, absl::Cord("messages"));
    return s;
  }
  call->request.mutable_prompt_tokens()->mutable_ids()->Assign(ids->begin(), ids->end());
  return absl::OkStatus();
}

const char* FinishReasonName(v1::FinishReason reason) {
  return reason == v1::FINISH_REASON_STOP ? "stop" : "length";
}

nlohmann::json VerdictJson(const v1::GenerateResponse::Final& final) {
  spec::SpeculationStats stats = wire::FromProto(final.stats());
  stats.total_time = absl::Seconds(final.seconds());
  json v = spec::StatsJson(stats);
  // The printer's in-process figures that the wire does not carry: absent rather than 0.
  for (const char* key : {"time_to_first_token_seconds", "prefill_seconds", "draft_seconds", "verify_seconds",
                          "draft_forward_passes"}) {
    v.erase(key);
  }
  v["policy"] = final.policy();
  v["seed"] = final.seed();
  v["degraded"] = final.degraded();
  return v;
}

nlohmann::json UsageJson(const v1::GenerateResponse::Final& final) {
  const int64_t prompt = final.usage().prompt_tokens();
  const int64_t completion = final.usage().completion_tokens();
  return json{{"prompt_tokens", prompt}, {"completion_tokens", completion}, {"total_tokens", prompt + completion}};
}

namespace {
json Envelope(const CompletionMeta& meta, bool chunk, json choices) {
  const char* object = !meta.chat ? "text_completion" : chunk ? "chat.completion.chunk" : "chat.completion";
  return json{{"id", meta.id}, {"object", object}, {"created", meta.created},
              {"model", meta.model}, {"choices", std::move(choices)}};
}
// A whole response's choice: "text" (completions) or "message" (chat).
json Choice(const CompletionMeta& meta, const std::string& text, json finish_reason) {
  json c = {{"index", 0}, {"logprobs", nullptr}, {"finish_reason", std::move(finish_reason)}};
  if (meta.chat) {
    c["message"] = {{"role", "assistant"}, {"content", text}};
  } else {
    c["text"] = text;
  }
  return c;
}
// A stream chunk's choice: "text" (completions) or "delta" (chat).
json ChunkChoice(const CompletionMeta& meta, json delta_or_text, json finish_reason) {
  json c = {{"index", 0}, {"logprobs", nullptr}, {"finish_reason", std::move(finish_reason)}};
  c[meta.chat ? "delta" : "text"] = std::move(delta_or_text);
  return c;
}
}  // namespace

nlohmann::json CompletionJson(const CompletionMeta& meta, const std::string& text,
                              const v1::GenerateResponse::Final& final) {
  json out = Envelope(meta, false, json::array({Choice(meta, text, FinishReasonName(final.finish_reason()))}));
  out["usage"] = UsageJson(final);
  out["verdict"] = VerdictJson(final);
  return out;
}

nlohmann::json RoleChunkJson(const CompletionMeta& meta) {
  return Envelope(meta, true, json::array({ChunkChoice(meta, {{"role", "assistant"}, {"content", ""}}, nullptr)}));
}

nlohmann::json TextChunkJson(const CompletionMeta& meta, const std::string& text) {
  return Envelope(meta, true,
                  json::array({ChunkChoice(meta, meta.chat ? json{{"content", text}} : json(text), nullptr)}));
}

nlohmann::json FinishChunkJson(const CompletionMeta& meta, const v1::GenerateResponse::Final& final) {
  json out = Envelope(meta, true, json::array({ChunkChoice(meta, meta.chat ? json::object() : json(""),
                                                           FinishReasonName(final.finish_reason()))}));
  out["verdict"] = VerdictJson(final);
  return out;
}

nlohmann::json UsageChunkJson(const CompletionMeta& meta, const v1::GenerateResponse::Final& final) {
  json out = Envelope(meta, true, json::array());
  out["usage"] = UsageJson(final);
  return out;
}

std::string SseEvent(const nlohmann::json& data) { return absl::StrCat("data: ", data.dump(), "\n\n"); }

nlohmann::json ModelsJson(const v1::ModelInfo& model, int64_t created) {
  json policies = json::array();
  for (int p : model.allowed_policies()) {
    absl::StatusOr<spec::Policy> policy =
        wire::FromProto(static_cast<v1::VerificationPolicy>(p), spec::Policy::kExact);
    if (policy.ok()) policies.push_back(spec::PolicyName(*policy));
  }
  json entry = {{"id", model.name()},
                {"object", "model"},
                {"created", created},
                {"owned_by", "verdict"},
                {"max_model_len", model.context_length()},
                {"verdict",
                 {{"parameters", model.parameters()},
                  {"vocab_size", model.vocab_size()},
                  {"draft_model", model.draft_model()},
                  {"judge", model.judge()},
                  {"judge_threshold", model.judge_threshold()},
                  {"target_shards", model.target_shards()},
                  {"allowed_policies", std::move(policies)},
                  {"default_draft_window", model.default_draft_window()}}}};
  return json{{"object", "list"}, {"data", json::array({std::move(entry)})}};
}

}  // namespace verdict::services::openai
