// SPDX-License-Identifier: Apache-2.0
#include "services/shard/target_shard_service.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "services/shard/activation_codec.h"
#include "clients/grpc/wire_convert.h"
#include "services/reactor_util.h"

namespace verdict::services {
TargetShardService::TargetShardService(workers::TargetShardLoop* loop, ShardEventHub* events,
                                       const ShardIdentity& identity, ShardJudge judge)
    : loop_(loop), events_(events), identity_(identity), judge_(std::move(judge)) {}

grpc::ServerUnaryReactor* TargetShardService::ReloadJudge(grpc::CallbackServerContext* context,
                                                          const v1::ReloadJudgeRequest* request,
                                                          v1::JudgeInfo* response) {
  if (!judge_.reload) {
    return FinishNow(context, absl::FailedPreconditionError(absl::StrCat(
                                  "shard ", identity_.shard_index, " is not the last shard: it holds no judge head")));
  }
  absl::StatusOr<v1::JudgeInfo> info = judge_.reload(
      request->path(), request->has_threshold() ? std::optional<float>(request->threshold()) : std::nullopt);
  if (info.ok()) *response = *std::move(info);
  return FinishNow(context, info.status());
}

grpc::ServerUnaryReactor* TargetShardService::OpenSession(grpc::CallbackServerContext* context,
                                                          const v1::OpenShardSessionRequest* request,
                                                          v1::OpenShardSessionResponse*) {
  // Only the last shard reads the parameters (workers::TargetShard::OpenSession); the defaults
  // (policy exact, window) do not matter to shards.
  absl::StatusOr<spec::SpeculationParams> params = wire::FromProto(request->speculation(), {});
  if (!params.ok()) return FinishNow(context, params.status());
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  loop_->OpenSession(spec::SessionId(request->session_id()), request->capacity(), *std::move(params),
                     wire::FromProto(request->target_sampling()),
                     [reactor](absl::Status status) { reactor->Finish(wire::ToGrpc(status)); });
  return reactor;
}

grpc::ServerUnaryReactor* TargetShardService::CloseSession(grpc::CallbackServerContext* context,
                                                           const v1::CloseShardSessionRequest* request,
                                                           v1::CloseShardSessionResponse*) {
  loop_->CloseSession(spec::SessionId(request->session_id()));
  return FinishNow(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* TargetShardService::RenewLease(grpc::CallbackServerContext* context,
                                                         const v1::RenewShardLeaseRequest* request,
                                                         v1::RenewShardLeaseResponse*) {
  loop_->RenewLease({request->owner(), absl::Milliseconds(request->lease_ms()),
                     std::vector<uint64_t>(request->live_session_ids().begin(), request->live_session_ids().end())});
  return FinishNow(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* TargetShardService::Forward(grpc::CallbackServerContext* context,
                                                      const v1::ForwardRequest* request, v1::ForwardAck*) {
  if (identity_.shard_index != 0) {
    return FinishNow(context, absl::FailedPreconditionError(absl::StrCat(
                                  "target shard ", identity_.shard_index, " takes activations, not token ids")));
  }
  absl::StatusOr<workers::ShardBatch> batch = DecodeForward(*request, identity_.vocab_size);
  if (!batch.ok()) return FinishNow(context, batch.status());
  loop_->Submit(*std::move(batch));
  return FinishNow(context, absl::OkStatus());
}

absl::Status TargetShardService::HandleActivations(const v1::ActivationBatch& header, absl::string_view payload) {
  if (identity_.shard_index == 0) {
    return absl::FailedPreconditionError("target shard 0 takes token ids, not activations");
  }
  absl::StatusOr<workers::ShardBatch> batch =
      DecodeActivations(header, payload, identity_.hidden_size, identity_.vocab_size);
  if (!batch.ok()) {
    rejected_payloads_.fetch_add(1);
    // Fail the sessions the header names (only theirs), so their generations end with a clear error.
    for (const v1::BlockHeader& b : header.blocks()) {
      events_->Publish({spec::SessionId(b.session_id()), b.step(), batch.status(), std::nullopt});
    }
    return batch.status();
  }
  loop_->Submit(std::move(*batch));
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* TargetShardService::PushActivations(grpc::CallbackServerContext* context,
                                                              const v1::ActivationBatch* request, v1::ForwardAck*) {
  return FinishNow(context, HandleActivations(*request, request->data()));
}

void TargetShardService::HandleActivationFrame(absl::StatusOr<transport::Frame> frame) {
  if (!frame.ok()) {  // a malformed frame or a peer that went away: nothing to attribute
    rejected_payloads_.fetch_add(1);
    return;
  }
  v1::ActivationBatch header;
  if (!header.ParseFromString(frame->header)) {
    rejected_payloads_.fetch_add(1);
    return;
  }
  (void)HandleActivations(header, frame->payload);
}

grpc::ServerWriteReactor<v1::ShardEvent>* TargetShardService::Events(grpc::CallbackServerContext*,
                                                                     const v1::EventsRequest*) {
  return new ShardEventsReactor(events_);
}

grpc::ServerUnaryReactor* TargetShardService::Describe(grpc::CallbackServerContext* context,
                                                       const v1::DescribeShardRequest*,
                                                       v1::ShardDescription* response) {
  response->set_shard_index(identity_.shard_index);
  response->set_num_shards(identity_.num_shards);
  response->set_layer_begin(static_cast<int32_t>(identity_.layer_begin));
  response->set_layer_end(static_cast<int32_t>(identity_.layer_end));
  response->set_num_layers(static_cast<int32_t>(identity_.num_layers));
  response->set_hidden_size(static_cast<int32_t>(identity_.hidden_size));
  response->set_vocab_size(static_cast<int32_t>(identity_.vocab_size));
  response->set_model_fingerprint(identity_.model_fingerprint);
  if (const v1::JudgeInfo head = judge_.current ? judge_.current() : v1::JudgeInfo(); !head.id().empty()) {
    response->set_has_judge(true);
    response->set_judge_threshold(head.threshold());
    response->set_judge_fingerprint(head.target_fingerprint());
    *response->mutable_judge_head() = head;
  } else {
    response->set_has_judge(identity_.has_judge);
    response->set_judge_threshold(identity_.judge_threshold);
    response->set_judge_fingerprint(identity_.judge_fingerprint);
  }
  response->set_context_length(static_cast<int32_t>(identity_.context_length));
  for (int32_t id : identity_.stop_token_ids) response->add_stop_token_ids(id);
  response->set_parameters(identity_.parameters);
  v1::SamplingDefaults* d = response->mutable_sampling_defaults();
  d->set_do_sample(identity_.sampling_defaults.do_sample);
  d->set_temperature(identity_.sampling_defaults.temperature);
  d->set_top_k(static_cast<int32_t>(identity_.sampling_defaults.top_k));
  d->set_top_p(identity_.sampling_defaults.top_p);
  return FinishNow(context, absl::OkStatus());
}

}  // namespace verdict::services
