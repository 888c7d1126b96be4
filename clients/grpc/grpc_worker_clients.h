// SPDX-License-Identifier: Apache-2.0
// DraftClient and TargetClient over gRPC: the coordinator's production path to the draft worker and
// the target shards (verdict.v1.DraftWorker / TargetShard). Every call has a deadline; a worker that
// does not answer completes the call with kDeadlineExceeded or kUnavailable naming it. The target
// client subscribes to every shard's Events stream: verdicts and per-session errors come back that
// way; a stream that breaks (the shard died) fails every block in flight with kUnavailable naming
// the shard, and the client resubscribes until the shard is back.
#ifndef VERDICT_CLIENTS_GRPC_GRPC_WORKER_CLIENTS_H_
#define VERDICT_CLIENTS_GRPC_GRPC_WORKER_CLIENTS_H_

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "clients/worker_clients.h"
#include "verdict/v1/draft_worker.grpc.pb.h"
#include "grpcpp/security/credentials.h"
#include "verdict/v1/target_shard.grpc.pb.h"

namespace verdict::clients {

class GrpcDraftClient : public DraftClient {
 public:
  // `credentials`: the channel's (mutual TLS between members); null: plaintext.
  GrpcDraftClient(const std::string& address, absl::Duration propose_deadline,
                  absl::Duration control_deadline = absl::Seconds(10),
                  std::shared_ptr<grpc::ChannelCredentials> credentials = nullptr);
  void OpenSession(const DraftSessionSpec& session, StatusCallback done) override;
  void Propose(const spec::ProposeRequest& request,
               std::function<void(absl::StatusOr<spec::Proposal>)> done) override;
  void CloseSession(spec::DraftSessionId session_id) override;
  void RenewLease(const spec::LeaseRenewal& renewal) override;
  const std::string& address() const { return address_; }
  // Whether the channel to the worker is connected (asks it to connect if idle).
  bool connected() const;

 private:
  std::string address_;
  absl::Duration propose_deadline_;
  absl::Duration control_deadline_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::DraftWorker::Stub> stub_;
};

struct GrpcTargetClientOptions {
  absl::Duration control_deadline = absl::Seconds(10);
  // A block whose verdict has not come back after this fails with kDeadlineExceeded.
  absl::Duration verify_deadline = absl::Seconds(120);
  absl::Duration resubscribe_interval = absl::Milliseconds(200);
  // One per shard, the channels' (mutual TLS between members); empty: plaintext.
  std::vector<std::shared_ptr<grpc::ChannelCredentials>> credentials;
};

class GrpcTargetClient : public TargetClient {
 public:
  // `addresses`: the shards' gRPC addresses in layer order. Subscribes to their Events at once.
  explicit GrpcTargetClient(std::vector<std::string> addresses, const GrpcTargetClientOptions& options = {});
  ~GrpcTargetClient() override;

  void OpenSession(const TargetSessionSpec& session, StatusCallback done) override;
  void Verify(const spec::ShardBlock& block, std::vector<int32_t> token_ids,
              std::function<void(spec::BlockOutcome)> done) override;
  void CloseSession(spec::SessionId session_id) override;
  void RenewLease(const spec::LeaseRenewal& renewal) override;
  int num_shards() const override { return static_cast<int>(addresses_.size()); }

  // Whether shard i's Events stream is up (for health and status pages).
  bool connected(int shard) const;

 private:
  class EventsReader;
  using Key = std::pair<spec::SessionId, uint64_t>;
  struct Pending {
    std::function<void(spec::BlockOutcome)> done;
    absl::Time deadline;
  };

  void Subscribe(int shard);
  void OnEvent(int shard, const v1::ShardEvent& event);
  void SetConnected(int shard, EventsReader* reader);
  void OnStreamEnded(int shard, EventsReader* reader, const grpc::Status& status);
  // Completes the pending block (once) with `outcome`.
  void Complete(const Key& key, spec::BlockOutcome outcome);
  void Maintain();  // resubscribes broken streams, expires overdue blocks

  std::vector<std::string> addresses_;
  GrpcTargetClientOptions options_;
  std::vector<std::unique_ptr<v1::TargetShard::Stub>> stubs_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<Key, Pending> pending_ ABSL_GUARDED_BY(mu_);
  std::vector<EventsReader*> readers_ ABSL_GUARDED_BY(mu_);  // null: not subscribed
  std::vector<bool> connected_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  int live_readers_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread maintainer_;
};

}  // namespace verdict::clients

#endif  // VERDICT_CLIENTS_GRPC_GRPC_WORKER_CLIENTS_H_
