// SPDX-License-Identifier: Apache-2.0
// A target shard's gRPC service (verdict.v1.TargetShard): validate, convert, enqueue on the shard's
// engine loop, finish. Incoming activations (PushActivations, or UCX frames handed to
// HandleActivationFrame) are checked and decoded here; block outcomes leave through the
// ShardEventHub (the Events stream).
#ifndef VERDICT_SERVICES_SHARD_TARGET_SHARD_SERVICE_H_
#define VERDICT_SERVICES_SHARD_TARGET_SHARD_SERVICE_H_

#include <atomic>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "services/shard/shard_events.h"
#include "spec/sampling_params.h"
#include "transport/activation_transport.h"
#include "verdict/v1/target_shard.grpc.pb.h"
#include "workers/target_shard_loop.h"

namespace verdict::services {

// The last shard's judge head, live: what Describe reports and how ReloadJudge swaps it
// (services/bin/judge_reloader.h provides both). Empty functions: no judge here.
struct ShardJudge {
  std::function<absl::StatusOr<v1::JudgeInfo>(const std::string& path, std::optional<float> threshold)> reload;
  std::function<v1::JudgeInfo()> current;
};

struct ShardIdentity {
  int shard_index = 0;
  int num_shards = 1;
  int64_t layer_begin = 0;
  int64_t layer_end = 0;
  int64_t num_layers = 0;
  int64_t hidden_size = 0;
  int64_t vocab_size = 0;
  std::string model_fingerprint;
  bool has_judge = false;
  float judge_threshold = 0.5f;  // the head's own threshold (the default for sessions)
  std::string judge_fingerprint;
  int64_t context_length = 0;
  std::vector<int32_t> stop_token_ids;
  int64_t parameters = 0;
  spec::SamplingDefaults sampling_defaults;
};

class TargetShardService final : public v1::TargetShard::CallbackService {
 public:
  // `loop` and `events` must outlive the service.
  TargetShardService(workers::TargetShardLoop* loop, ShardEventHub* events, const ShardIdentity& identity,
                     ShardJudge judge = {});

  grpc::ServerUnaryReactor* OpenSession(grpc::CallbackServerContext* context, const v1::OpenShardSessionRequest* request,
                                        v1::OpenShardSessionResponse* response) override;
  grpc::ServerUnaryReactor* CloseSession(grpc::CallbackServerContext* context,
                                         const v1::CloseShardSessionRequest* request,
                                         v1::CloseShardSessionResponse* response) override;
  grpc::ServerUnaryReactor* Forward(grpc::CallbackServerContext* context, const v1::ForwardRequest* request,
                                    v1::ForwardAck* response) override;
  grpc::ServerUnaryReactor* PushActivations(grpc::CallbackServerContext* context, const v1::ActivationBatch* request,
                                            v1::ForwardAck* response) override;
  grpc::ServerWriteReactor<v1::ShardEvent>* Events(grpc::CallbackServerContext* context,
                                                   const v1::EventsRequest* request) override;
  grpc::ServerUnaryReactor* Describe(grpc::CallbackServerContext* context, const v1::DescribeShardRequest* request,
                                     v1::ShardDescription* response) override;
  grpc::ServerUnaryReactor* RenewLease(grpc::CallbackServerContext* context, const v1::RenewShardLeaseRequest* request,
                                       v1::RenewShardLeaseResponse* response) override;
  grpc::ServerUnaryReactor* ReloadJudge(grpc::CallbackServerContext* context, const v1::ReloadJudgeRequest* request,
                                        v1::JudgeInfo* response) override;

  // The UCX receiver's handler: a frame from the previous shard (or the error that replaced one).
  void HandleActivationFrame(absl::StatusOr<transport::Frame> frame);

  int64_t rejected_payloads() const { return rejected_payloads_.load(); }

 private:
  // Decodes and queues activations; a payload that fails its checks fails its blocks (when the
  // header names them) and is counted.
  absl::Status HandleActivations(const v1::ActivationBatch& header, absl::string_view payload);

  workers::TargetShardLoop* loop_;
  ShardEventHub* events_;
  ShardIdentity identity_;
  ShardJudge judge_;
  std::atomic<int64_t> rejected_payloads_{0};
};

}  // namespace verdict::services

#endif  // VERDICT_SERVICES_SHARD_TARGET_SHARD_SERVICE_H_
