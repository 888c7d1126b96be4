// SPDX-License-Identifier: Apache-2.0
// The client API (verdict.v1.Verdict) on the coordinator: validates a request against the served
// model and the server's allow-list, tokenizes, starts the generation on the coordinator core and
// streams committed text (incremental detokenization, stop strings held back until decided) and a
// final message with usage and speculation statistics. Cancelling the call cancels the generation.
#ifndef VERDICT_SERVICES_COORDINATOR_GENERATION_SERVICE_H_
#define VERDICT_SERVICES_COORDINATOR_GENERATION_SERVICE_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "coordinator/coordinator.h"
#include "services/coordinator/client_auth.h"
#include "engine/tokenizer/chat_template.h"
#include "engine/tokenizer/tokenizer.h"
#include "spec/speculation_params.h"
#include "absl/synchronization/mutex.h"
#include "verdict/v1/generation.grpc.pb.h"
#include "verdict/v1/target_shard.pb.h"

namespace verdict::services {

// What the coordinator serves and what it allows.
struct ServedModel {
  std::string name;
  const engine::Tokenizer* tokenizer = nullptr;  // must outlive the service
  // The model's chat template (the HTTP API's /v1/chat/completions); null: none, and why.
  std::shared_ptr<const engine::ChatPromptFormat> chat_format;
  std::string no_chat_format;
  // As the shards describe the target.
  int64_t vocab_size = 0;
  int64_t context_length = 0;
  int64_t parameters = 0;
  std::vector<int32_t> stop_token_ids;
  spec::SamplingDefaults sampling_defaults;  // what a request's unset sampling values become
  std::string draft_name;  // empty: target-only serving
  // The judge head on the last shard, as it was at start (GenerationService::SetJudge follows a
  // live reload; read them through the service).
  bool has_judge = false;
  float judge_threshold = 0.5f;
  std::string judge_fingerprint;
  std::string judge_head;  // JudgeInfo.id
  int target_shards = 1;
  spec::Policy default_policy = spec::Policy::kExact;
  std::vector<spec::Policy> allowed_policies;  // kExact is always allowed
  int default_draft_window = 8;
  int default_max_tokens = 256;
};

// The payload key of an error's machine-readable name (HTTP front end: OpenAI's "code"), e.g.
// "context_length_exceeded" on a prompt that does not fit the context.
inline constexpr absl::string_view kErrorCodePayload = "verdict.dev/code";
inline constexpr absl::string_view kContextLengthExceeded = "context_length_exceeded";

// Generate takes its request as bytes and parses it here, so that a request protobuf refuses (a
// `prompt` that is not valid UTF-8, a malformed message) is a clear INVALID_ARGUMENT rather than
// gRPC's own UNIMPLEMENTED with no message.
class GenerationService final : public v1::Verdict::WithRawCallbackMethod_Generate<v1::Verdict::CallbackService> {
 public:
  // `coordinator` and `auth` (null: no API keys) must outlive the service.
  GenerationService(coordinator::Coordinator* coordinator, ServedModel model, ClientAuth* auth = nullptr);

  grpc::ServerWriteReactor<grpc::ByteBuffer>* Generate(grpc::CallbackServerContext* context,
                                                       const grpc::ByteBuffer* request) override;
  grpc::ServerUnaryReactor* Tokenize(grpc::CallbackServerContext* context, const v1::TokenizeRequest* request,
                                     v1::TokenizeResponse* response) override;
  grpc::ServerUnaryReactor* Detokenize(grpc::CallbackServerContext* context, const v1::DetokenizeRequest* request,
                                       v1::DetokenizeResponse* response) override;
  grpc::ServerUnaryReactor* ListModels(grpc::CallbackServerContext* context, const v1::ListModelsRequest* request,
                                       v1::ListModelsResponse* response) override;

  // The request's bytes as a GenerateRequest; kInvalidArgument (saying what is likely wrong) when
  // protobuf refuses them.
  static absl::StatusOr<v1::GenerateRequest> ParseGenerateRequest(const grpc::ByteBuffer& bytes);

  // Checks a request and turns it into the coordinator's (tokenized prompt, resolved policy,
  // defaults). kNotFound (model), kInvalidArgument, kPermissionDenied (policy not allowed),
  // kFailedPrecondition (judge asked for, none loaded). `allowed_policies` replaces the server's
  // allow-list (an API key's own). Public for tests.
  absl::StatusOr<coordinator::GenerationRequest> Prepare(const v1::GenerateRequest& request,
                                                         const std::vector<spec::Policy>* allowed_policies = nullptr) const;

  // The caller whose `authorization` value (gRPC metadata or HTTP header) is given: its API key, or
  // null when the server needs none. kUnauthenticated for a missing or unknown key.
  absl::StatusOr<std::shared_ptr<const security::ApiKey>> Authenticate(absl::string_view authorization) const;
  // Prepare for the caller holding `key` (from Authenticate): checks the request against the key's
  // policies and takes one of its session slots (*slot; hold it for the session's life). Errors:
  // Prepare's, kPermissionDenied and kResourceExhausted (the key's).
  absl::StatusOr<coordinator::GenerationRequest> PrepareFor(const std::shared_ptr<const security::ApiKey>& key,
                                                            const v1::GenerateRequest& request,
                                                            std::shared_ptr<void>* slot) const;
  ClientAuth* auth() const { return auth_; }
  // A judge head was loaded on the last shard (a live reload): judge policies are served and
  // ListModels and the status page describe it.
  void SetJudge(const v1::JudgeInfo& info);

  const ServedModel& model() const { return model_; }
  // The served model as ListModels and the admin status describe it.
  void DescribeModel(v1::ModelInfo* info) const;
  // kNotFound unless `name` is empty or the served model's.
  absl::Status CheckModelName(const std::string& name) const { return CheckModel(name); }
  // The final message of a generation: finish reason, usage, statistics, seed and policy.
  static v1::GenerateResponse::Final FinalMessage(const coordinator::GenerationSummary& summary,
                                                  int32_t prompt_tokens, uint64_t seed, const std::string& policy);

 private:
  absl::Status CheckModel(const std::string& name) const;

  coordinator::Coordinator* coordinator_;
  ServedModel model_;  // the judge fields under judge_mu_
  ClientAuth* auth_;
  mutable absl::Mutex judge_mu_;
};

}  // namespace verdict::services

#endif  // VERDICT_SERVICES_COORDINATOR_GENERATION_SERVICE_H_
