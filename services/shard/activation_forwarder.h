// SPDX-License-Identifier: Apache-2.0
// Sends a target shard's output batches to the next shard, on a thread of its own so the engine
// thread never waits on the network: over UCX (a transport frame) or, as the fallback, the next
// shard's PushActivations RPC. A batch that cannot be delivered fails its blocks (kUnavailable
// naming the next shard) through `on_failure`; the next batch tries to reconnect, so sessions opened
// after the next shard restarts work again.
#ifndef VERDICT_SERVICES_SHARD_ACTIVATION_FORWARDER_H_
#define VERDICT_SERVICES_SHARD_ACTIVATION_FORWARDER_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/security/credentials.h"
#include "transport/activation_transport.h"
#include "transport/ucx_transport.h"
#include "verdict/v1/target_shard.grpc.pb.h"
#include "spec/messages.h"
#include "workers/target_shard.h"

namespace verdict::services {

struct ForwarderOptions {
  int from_shard = 0;
  int64_t hidden_size = 0;
  v1::ActivationDType dtype = v1::ACTIVATION_DTYPE_F32;
  bool use_ucx = true;
  std::string next_data_address;  // UCX listener of the next shard
  std::string next_grpc_address;  // gRPC address of the next shard (fallback transport)
  std::shared_ptr<grpc::ChannelCredentials> grpc_credentials;  // to the next shard; null: plaintext
  transport::UcxOptions ucx;
  absl::Duration rpc_deadline = absl::Seconds(30);
};

struct ForwarderStats {
  int64_t batches = 0;
  int64_t bytes = 0;
  int64_t failures = 0;
  int64_t send_micros_total = 0;
};

class ActivationForwarder {
 public:
  ActivationForwarder(const ForwarderOptions& options, std::function<void(spec::BlockOutcome)> on_failure);
  ~ActivationForwarder();  // sends what is queued (bounded by the deadlines), then stops

  void Send(workers::ShardBatch batch);
  ForwarderStats stats() const;

 private:
  void Run();
  absl::Status Deliver(const workers::ShardBatch& batch, int64_t* bytes);

  ForwarderOptions options_;
  std::function<void(spec::BlockOutcome)> on_failure_;
  std::unique_ptr<transport::ActivationSender> ucx_;
  std::unique_ptr<v1::TargetShard::Stub> stub_;
  mutable absl::Mutex mu_;
  std::deque<workers::ShardBatch> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  ForwarderStats stats_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace verdict::services

#endif  // VERDICT_SERVICES_SHARD_ACTIVATION_FORWARDER_H_
