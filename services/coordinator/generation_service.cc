// SPDX-License-Identifier: Apache-2.0
#include "services/coordinator/generation_service.h"

#include <algorithm>
#include <cmath>
#include <deque>
#include <memory>
#include <optional>
#include <utility>

#include "absl/strings/cord.h"
#include "grpcpp/impl/codegen/proto_utils.h"
#include "grpcpp/support/byte_buffer.h"
#include "common/check.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "clients/grpc/wire_convert.h"
#include "services/coordinator/text_stream.h"
#include "services/reactor_util.h"
#include "common/status_macros.h"

namespace verdict::services {
namespace {

v1::FinishReason ToProto(coordinator::FinishReason reason) {
  switch (reason) {
    case coordinator::FinishReason::kStop: return v1::FINISH_REASON_STOP;
    case coordinator::FinishReason::kLength: return v1::FINISH_REASON_LENGTH;
    case coordinator::FinishReason::kContext: return v1::FINISH_REASON_CONTEXT;
  }
  return v1::FINISH_REASON_UNSPECIFIED;
}

// One Generate call. The coordinator's callbacks hold the shared state, so a callback that comes
// after the RPC ended finds no reactor and does nothing.
// A response as the raw method writes it.
// The call's `authorization` metadata ("Bearer KEY"), or "".
std::string AuthorizationOf(const grpc::CallbackServerContext& context) {
  const auto& metadata = context.client_metadata();
  auto it = metadata.find("authorization");
  return it == metadata.end() ? std::string() : std::string(it->second.data(), it->second.size());
}

grpc::ByteBuffer Serialized(const v1::GenerateResponse& response) {
  grpc::ByteBuffer bytes;
  bool own = false;
  VERDICT_CHECK(grpc::SerializationTraits<v1::GenerateResponse>::Serialize(response, &bytes, &own).ok());
  return bytes;
}

class GenerateReactor : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
 public:
  struct Shared {
    absl::Mutex mu;
    GenerateReactor* reactor ABSL_GUARDED_BY(mu) = nullptr;
  };

  // `slot` (the caller's API key's session slot, if any) is held until the generation ends.
  GenerateReactor(coordinator::Coordinator* coordinator, const ServedModel& model,
                  const v1::GenerateRequest& request, absl::StatusOr<coordinator::GenerationRequest> prepared,
                  std::shared_ptr<void> slot = nullptr)
      : coordinator_(coordinator), shared_(std::make_shared<Shared>()) {
    {
      absl::MutexLock lock(&shared_->mu);
      shared_->reactor = this;
    }
    if (!prepared.ok()) {
      FinishOnce(prepared.status());
      return;
    }
    return_ids_ = request.return_token_ids();
    policy_ = spec::PolicyLabel(prepared->speculation.policy, spec::ExactRuleFor(prepared->sampling));
    seed_ = prepared->sampling.seed;
    prompt_tokens_ = static_cast<int32_t>(prepared->prompt.size());
    auto text = std::make_shared<TextStream>(
        model.tokenizer, std::vector<std::string>(request.stop().begin(), request.stop().end()),
        prepared->stop_token_ids);
    if (absl::Status s = text->AddContext(prepared->prompt); !s.ok()) {
      FinishOnce(s);
      return;
    }
    coordinator::GenerationCallbacks callbacks;
    std::shared_ptr<Shared> shared = shared_;
    callbacks.on_tokens = [shared, text](absl::Span<const int32_t> tokens) {
      std::string piece;
      absl::StatusOr<bool> stopped = text->Add(tokens, &piece);
      absl::MutexLock lock(&shared->mu);
      if (shared->reactor == nullptr) return false;
      if (!stopped.ok()) return false;
      shared->reactor->QueueChunk(std::move(piece), tokens);
      return !*stopped;
    };
    callbacks.on_done = [shared, text, slot](absl::StatusOr<coordinator::GenerationSummary> summary) {
      const std::string tail = summary.ok() ? text->Flush() : std::string();
      absl::MutexLock lock(&shared->mu);
      if (shared->reactor == nullptr) return;
      if (!tail.empty()) shared->reactor->QueueChunk(tail, {});
      shared->reactor->QueueFinal(std::move(summary));
    };
    absl::StatusOr<spec::SessionId> id = coordinator_->Start(std::move(*prepared), std::move(callbacks));
    if (!id.ok()) {
      FinishOnce(id.status());
      return;
    }
    absl::MutexLock lock(&mu_);
    session_id_ = *id;
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    queue_.pop_front();
    writing_ = false;
    if (!ok) {  // the client went away; OnCancel or OnDone follow
      return;
    }
    WriteNextLocked();
  }

  void OnCancel() override {
    std::optional<spec::SessionId> id;
    {
      absl::MutexLock lock(&mu_);
      id = session_id_;
    }
    if (id.has_value()) coordinator_->Cancel(*id);
    FinishOnce(absl::CancelledError("the client cancelled the call"));
  }

  void OnDone() override {
    {
      absl::MutexLock lock(&shared_->mu);
      shared_->reactor = nullptr;
    }
    delete this;
  }

  // Called with shared_->mu held.
  void QueueChunk(std::string text, absl::Span<const int32_t> tokens) {
    absl::MutexLock lock(&mu_);
    if (text.empty() && !(return_ids_ && !tokens.empty())) return;
    v1::GenerateResponse response;
    response.mutable_chunk()->set_text(std::move(text));
    if (return_ids_) response.mutable_chunk()->mutable_token_ids()->Assign(tokens.begin(), tokens.end());
    queue_.push_back(Serialized(response));
    WriteNextLocked();
  }

  void QueueFinal(absl::StatusOr<coordinator::GenerationSummary> summary) {
    absl::MutexLock lock(&mu_);
    if (!summary.ok()) {
      final_status_ = summary.status();
    } else {
      v1::GenerateResponse response;
      *response.mutable_final() = GenerationService::FinalMessage(*summary, prompt_tokens_, seed_, policy_);
      queue_.push_back(Serialized(response));
      final_status_ = absl::OkStatus();
    }
    done_ = true;
    WriteNextLocked();
  }

 private:
  void WriteNextLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (writing_ || finished_) return;
    if (!queue_.empty()) {
      writing_ = true;
      StartWrite(&queue_.front());
      return;
    }
    if (done_) {
      finished_ = true;
      Finish(wire::ToGrpc(final_status_));
    }
  }

  void FinishOnce(const absl::Status& status) {
    absl::MutexLock lock(&mu_);
    if (finished_) return;
    finished_ = true;
    Finish(wire::ToGrpc(status));
  }

  coordinator::Coordinator* coordinator_;
  std::shared_ptr<Shared> shared_;
  absl::Mutex mu_;
  std::deque<grpc::ByteBuffer> queue_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status final_status_ ABSL_GUARDED_BY(mu_);
  std::optional<spec::SessionId> session_id_ ABSL_GUARDED_BY(mu_);
  bool return_ids_ = false;
  std::string policy_;
  uint64_t seed_ = 0;
  int32_t prompt_tokens_ = 0;
};

}  // namespace

v1::GenerateResponse::Final GenerationService::FinalMessage(const coordinator::GenerationSummary& summary,
                                                            int32_t prompt_tokens, uint64_t seed,
                                                            const std::string& policy) {
  v1::GenerateResponse::Final f;
  const spec::SpeculationStats& st = summary.stats;
  f.set_finish_reason(ToProto(summary.finish_reason));
  f.mutable_usage()->set_prompt_tokens(prompt_tokens);
  f.mutable_usage()->set_completion_tokens(static_cast<int32_t>(st.tokens));
  wire::ToProto(st, f.mutable_stats());
  f.set_seed(seed);
  f.set_policy(policy);
  f.set_seconds(absl::ToDoubleSeconds(st.total_time));
  f.set_degraded(st.degraded);
  return f;
}

GenerationService::GenerationService(coordinator::Coordinator* coordinator, ServedModel model, ClientAuth* auth)
    : coordinator_(coordinator), model_(std::move(model)), auth_(auth) {}

absl::Status GenerationService::CheckModel(const std::string& name) const {
  if (!name.empty() && name != model_.name) {
    return absl::NotFoundError(absl::StrCat("unknown model \"", name, "\"; this server serves \"", model_.name, "\""));
  }
  return absl::OkStatus();
}

absl::StatusOr<coordinator::GenerationRequest> GenerationService::Prepare(
    const v1::GenerateRequest& request, const std::vector<spec::Policy>* allowed_policies) const {
  VERDICT_RETURN_IF_ERROR(CheckModel(request.model()));
  coordinator::GenerationRequest r;
  const int64_t vocab = model_.vocab_size;
  if (request.has_prompt_tokens()) {
    for (int32_t id : request.prompt_tokens().ids()) {
      if (id < 0 || id >= vocab) {
        return absl::InvalidArgumentError(absl::StrCat("prompt token id ", id, " is outside the vocabulary of ", vocab));
      }
      r.prompt.push_back(id);
    }
  } else {
    if (request.prompt().empty()) return absl::InvalidArgumentError("the prompt is empty");
    VERDICT_ASSIGN_OR_RETURN(r.prompt, model_.tokenizer->Encode(request.prompt(), {/*add_bos=*/true,
                                                                                   /*parse_special=*/false}));
  }
  if (r.prompt.empty()) return absl::InvalidArgumentError("the prompt has no tokens");
  const int64_t context = model_.context_length;
  if (request.max_tokens() < 0) {
    return absl::InvalidArgumentError(absl::StrCat("max_tokens must be >= 0, got ", request.max_tokens()));
  }
  r.max_new_tokens = request.max_tokens() > 0 ? request.max_tokens() : model_.default_max_tokens;
  auto too_long = [](std::string message) {
    absl::Status s = absl::InvalidArgumentError(message);
    s.SetPayload(kErrorCodePayload, absl::Cord(kContextLengthExceeded));
    return s;
  };
  if (static_cast<int64_t>(r.prompt.size()) >= context) {
    return too_long(absl::StrCat("the prompt has ", r.prompt.size(), " tokens; the model's context holds ", context));
  }
  if (request.max_tokens() > 0 && static_cast<int64_t>(r.prompt.size()) + r.max_new_tokens > context) {
    return too_long(absl::StrCat("the prompt (", r.prompt.size(), " tokens) plus max_tokens (", r.max_new_tokens,
                                 ") exceed the model's context of ", context));
  }
  // Not clamped to the room left in the context: the coordinator stops at the context's end and
  // reports FINISH_REASON_CONTEXT, which a clamp here would turn into FINISH_REASON_LENGTH.

  // Unset values take the checkpoint's defaults, as `verdict generate` does.
  const v1::SamplingParams& sp = request.sampling();
  r.sampling = spec::ResolveSampling(
      model_.sampling_defaults, sp.has_temperature() ? std::optional<float>(sp.temperature()) : std::nullopt,
      sp.has_top_k() ? std::optional<int64_t>(sp.top_k()) : std::nullopt,
      sp.has_top_p() && sp.top_p() != 0.0f ? std::optional<float>(sp.top_p()) : std::nullopt, sp.seed());
  VERDICT_RETURN_IF_ERROR(spec::ValidateSamplingParams(r.sampling));
  if (r.sampling.seed == 0 && !r.sampling.greedy()) r.sampling.seed = absl::ToUnixNanos(absl::Now()) | 1;

  for (int32_t id : request.stop_token_ids()) {
    if (id < 0 || id >= vocab) {
      return absl::InvalidArgumentError(absl::StrCat("stop token id ", id, " is outside the vocabulary of ", vocab));
    }
    r.stop_token_ids.push_back(id);
  }
  if (!request.ignore_eos()) {
    r.stop_token_ids.insert(r.stop_token_ids.end(), model_.stop_token_ids.begin(), model_.stop_token_ids.end());
  }
  for (const std::string& s : request.stop()) {
    if (s.empty()) return absl::InvalidArgumentError("a stop string is empty");
  }

  VERDICT_ASSIGN_OR_RETURN(r.speculation,
                           wire::FromProto(request.speculation(), {model_.default_policy, model_.default_draft_window}));
  const spec::Policy policy = r.speculation.policy;
  const std::vector<spec::Policy>& allowed = allowed_policies != nullptr ? *allowed_policies : model_.allowed_policies;
  if (policy != spec::Policy::kExact && std::find(allowed.begin(), allowed.end(), policy) == allowed.end()) {
    if (allowed_policies != nullptr) {
      return absl::PermissionDeniedError(
          absl::StrCat("this API key may not use the ", spec::PolicyName(policy), " verification policy"));
    }
    return absl::PermissionDeniedError(
        absl::StrCat("this server does not allow the ", spec::PolicyName(policy), " verification policy"));
  }
  bool has_judge = false;
  {
    absl::MutexLock lock(&judge_mu_);
    has_judge = model_.has_judge;
  }
  if (spec::UsesJudge(policy) && !has_judge) {
    return absl::FailedPreconditionError("the judge policy needs a judge head; none is loaded on the last shard");
  }
  VERDICT_RETURN_IF_ERROR(spec::ValidateSpeculationParams(r.speculation));
  r.speculation.speculate = r.speculation.speculate && !model_.draft_name.empty();
  r.request_id = request.request_id();
  return r;
}

absl::StatusOr<coordinator::GenerationRequest> GenerationService::PrepareFor(
    const std::shared_ptr<const security::ApiKey>& key, const v1::GenerateRequest& request,
    std::shared_ptr<void>* slot) const {
  if (auth_ == nullptr || key == nullptr) return Prepare(request);
  // A key's own allow-list replaces the server's (ClientAuth::Admit checks it, naming the key).
  absl::StatusOr<coordinator::GenerationRequest> prepared =
      Prepare(request, key->allowed_policies.has_value() ? &*key->allowed_policies : nullptr);
  if (!prepared.ok()) {
    if (prepared.status().code() == absl::StatusCode::kPermissionDenied) {
      auth_->NoteDenied(key->name);
      return absl::PermissionDeniedError(absl::StrCat(prepared.status().message(), " (API key \"", key->name, "\")"));
    }
    return prepared;
  }
  VERDICT_ASSIGN_OR_RETURN(*slot, auth_->Admit(key, prepared->speculation.policy));
  return prepared;
}

absl::StatusOr<std::shared_ptr<const security::ApiKey>> GenerationService::Authenticate(
    absl::string_view authorization) const {
  if (auth_ == nullptr) return std::shared_ptr<const security::ApiKey>();
  return auth_->Authenticate(authorization);
}

absl::StatusOr<v1::GenerateRequest> GenerationService::ParseGenerateRequest(const grpc::ByteBuffer& bytes) {
  std::vector<grpc::Slice> slices;
  v1::GenerateRequest request;
  if (bytes.Dump(&slices).ok()) {
    std::string data;
    for (const grpc::Slice& s : slices) data.append(reinterpret_cast<const char*>(s.begin()), s.size());
    if (request.ParseFromString(data)) return request;
  }
  return absl::InvalidArgumentError(
      "the request is not a valid verdict.v1.GenerateRequest: a text field (prompt, stop, model, request_id) "
      "is not valid UTF-8, or the message is malformed; send text as UTF-8, or token ids as prompt_tokens");
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* GenerationService::Generate(grpc::CallbackServerContext* context,
                                                                        const grpc::ByteBuffer* bytes) {
  // A caller without a valid key learns nothing else, not even whether its request parses.
  absl::StatusOr<std::shared_ptr<const security::ApiKey>> key = Authenticate(AuthorizationOf(*context));
  if (!key.ok()) return new GenerateReactor(coordinator_, model_, v1::GenerateRequest(), key.status());
  absl::StatusOr<v1::GenerateRequest> request = ParseGenerateRequest(*bytes);
  if (!request.ok()) return new GenerateReactor(coordinator_, model_, v1::GenerateRequest(), request.status());
  std::shared_ptr<void> slot;
  absl::StatusOr<coordinator::GenerationRequest> prepared = PrepareFor(*key, *request, &slot);
  return new GenerateReactor(coordinator_, model_, *request, std::move(prepared), std::move(slot));
}

grpc::ServerUnaryReactor* GenerationService::Tokenize(grpc::CallbackServerContext* context,
                                                      const v1::TokenizeRequest* request,
                                                      v1::TokenizeResponse* response) {
  if (absl::Status s = Authenticate(AuthorizationOf(*context)).status(); !s.ok()) return FinishNow(context, s);
  if (absl::Status s = CheckModel(request->model()); !s.ok()) return FinishNow(context, s);
  absl::StatusOr<std::vector<int32_t>> ids =
      model_.tokenizer->Encode(request->text(), {request->add_bos(), /*parse_special=*/false});
  if (ids.ok()) response->mutable_token_ids()->Assign(ids->begin(), ids->end());
  return FinishNow(context, ids.status());
}

grpc::ServerUnaryReactor* GenerationService::Detokenize(grpc::CallbackServerContext* context,
                                                        const v1::DetokenizeRequest* request,
                                                        v1::DetokenizeResponse* response) {
  if (absl::Status s = Authenticate(AuthorizationOf(*context)).status(); !s.ok()) return FinishNow(context, s);
  if (absl::Status s = CheckModel(request->model()); !s.ok()) return FinishNow(context, s);
  std::vector<int32_t> ids(request->token_ids().begin(), request->token_ids().end());
  absl::StatusOr<std::string> text = model_.tokenizer->Decode(ids, /*skip_special=*/false);
  if (text.ok()) response->set_text(*text);
  return FinishNow(context, text.status());
}

grpc::ServerUnaryReactor* GenerationService::ListModels(grpc::CallbackServerContext* context,
                                                        const v1::ListModelsRequest*,
                                                        v1::ListModelsResponse* response) {
  if (absl::Status s = Authenticate(AuthorizationOf(*context)).status(); !s.ok()) return FinishNow(context, s);
  DescribeModel(response->add_models());
  return FinishNow(context, absl::OkStatus());
}

void GenerationService::SetJudge(const v1::JudgeInfo& info) {
  absl::MutexLock lock(&judge_mu_);
  model_.has_judge = true;
  model_.judge_threshold = info.threshold();
  model_.judge_fingerprint = info.target_fingerprint();
  model_.judge_head = info.id();
}

void GenerationService::DescribeModel(v1::ModelInfo* m) const {
  m->set_name(model_.name);
  m->set_architecture("llama");
  m->set_parameters(model_.parameters);
  m->set_context_length(static_cast<int32_t>(model_.context_length));
  m->set_vocab_size(static_cast<int32_t>(model_.vocab_size));
  m->set_draft_model(model_.draft_name);
  {
    absl::MutexLock lock(&judge_mu_);
    m->set_judge(model_.has_judge);
    m->set_judge_threshold(model_.judge_threshold);
    m->set_judge_fingerprint(model_.judge_fingerprint);
    m->set_judge_head(model_.judge_head);
  }
  m->set_target_shards(model_.target_shards);
  m->add_allowed_policies(v1::VERIFICATION_POLICY_EXACT);
  for (spec::Policy p : model_.allowed_policies) {
    absl::StatusOr<v1::VerificationPolicy> wire_policy = wire::ToProto(p);
    if (p != spec::Policy::kExact && wire_policy.ok()) m->add_allowed_policies(*wire_policy);
  }
  m->set_default_draft_window(model_.default_draft_window);
}

}  // namespace verdict::services
