// SPDX-License-Identifier: Apache-2.0
// DraftClient and TargetClient over the workers' engine loops in this process: the coordinator's
// tests run the real batching, rollback and verification code without a network, and a
// single-process deployment can use them too. The target chain wires each shard loop's output
// into the next one's input and routes every block outcome back to the caller that sent it.
#ifndef VERDICT_WORKERS_IN_PROCESS_CLIENTS_H_
#define VERDICT_WORKERS_IN_PROCESS_CLIENTS_H_

#include <memory>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/status/statusor.h"
#include "clients/worker_clients.h"
#include "engine/model.h"
#include "engine/slice_runner.h"
#include "judge/judge_head.h"
#include "workers/draft_worker_loop.h"
#include "workers/target_shard_loop.h"

namespace verdict::workers {

class InProcessDraftClient : public clients::DraftClient {
 public:
  explicit InProcessDraftClient(DraftWorkerLoop* loop) : loop_(loop) {}
  void OpenSession(const clients::DraftSessionSpec& session, clients::StatusCallback done) override;
  void Propose(const spec::ProposeRequest& request,
               std::function<void(absl::StatusOr<spec::Proposal>)> done) override;
  void CloseSession(spec::DraftSessionId session_id) override;
  void RenewLease(const spec::LeaseRenewal& renewal) override { loop_->RenewLease(renewal); }

 private:
  DraftWorkerLoop* loop_;
};

class InProcessTargetClient : public clients::TargetClient {
 public:
  // Builds one engine loop per shard (in layer order) and chains them.
  explicit InProcessTargetClient(std::vector<std::unique_ptr<TargetShard>> shards,
                                 const ShardLoopOptions& options = {});
  ~InProcessTargetClient() override;

  void OpenSession(const clients::TargetSessionSpec& session, clients::StatusCallback done) override;
  void Verify(const spec::ShardBlock& block, std::vector<int32_t> token_ids,
              std::function<void(spec::BlockOutcome)> done) override;
  void CloseSession(spec::SessionId session_id) override;
  void RenewLease(const spec::LeaseRenewal& renewal) override;
  int num_shards() const override { return static_cast<int>(loops_.size()); }

  const TargetShardLoop& loop(int i) const { return *loops_[i]; }

 private:
  void Deliver(int shard, spec::BlockOutcome outcome);

  absl::Mutex mu_;
  absl::flat_hash_map<std::pair<spec::SessionId, uint64_t>, std::function<void(spec::BlockOutcome)>> pending_
      ABSL_GUARDED_BY(mu_);
  std::vector<std::unique_ptr<TargetShardLoop>> loops_;
};

// A whole speculative-decoding cluster in this process over a target and a draft model: the target
// as one shard (with the judge head, if any: the last shard's verification) and the draft worker,
// each on an engine thread of its own, behind the client interfaces the coordinator drives. What
// `verdict generate --draft` runs, so one process and a cluster share one speculation loop.
class InProcessCluster {
 public:
  // `target`, `draft` and `head` (optional) must outlive the cluster; `shard_options` are the
  // target shard's. Errors: those of TargetShard::Create and DraftWorker::Create (e.g. a head for
  // another hidden size).
  static absl::StatusOr<std::unique_ptr<InProcessCluster>> Create(engine::ModelSlice* target,
                                                                  engine::ModelSlice* draft,
                                                                  const judge::JudgeHead* head,
                                                                  TargetShardOptions shard_options = {});
  clients::TargetClient* target() { return target_.get(); }
  clients::DraftClient* draft() { return draft_.get(); }
  DraftLoopStats draft_stats() const { return draft_loop_->stats(); }

 private:
  InProcessCluster() = default;
  std::unique_ptr<engine::SliceRunner> runner_;  // declared first: outlives the shard's loop
  std::unique_ptr<DraftWorkerLoop> draft_loop_;
  std::unique_ptr<InProcessDraftClient> draft_;
  std::unique_ptr<InProcessTargetClient> target_;
};

}  // namespace verdict::workers

#endif  // VERDICT_WORKERS_IN_PROCESS_CLIENTS_H_
