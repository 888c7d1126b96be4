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
#include "clients/worker_clients.h"
#include "workers/draft_worker_loop.h"
#include "workers/target_shard_loop.h"

namespace verdict::workers {

class InProcessDraftClient : public clients::DraftClient {
 public:
  explicit InProcessDraftClient(DraftWorkerLoop* loop) : loop_(loop) {}
  void OpenSession(const clients::DraftSessionSpec& session, clients::StatusCallback done) override;
  void Propose(const spec::ProposeRequest& request,
               std::function<void(absl::StatusOr<spec::Proposal>)> done) override;
  void CloseSession(uint64_t session_id) override;

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
  void CloseSession(uint64_t session_id) override;
  int num_shards() const override { return static_cast<int>(loops_.size()); }

  const TargetShardLoop& loop(int i) const { return *loops_[i]; }

 private:
  void Deliver(int shard, spec::BlockOutcome outcome);

  absl::Mutex mu_;
  absl::flat_hash_map<std::pair<uint64_t, uint64_t>, std::function<void(spec::BlockOutcome)>> pending_
      ABSL_GUARDED_BY(mu_);
  std::vector<std::unique_ptr<TargetShardLoop>> loops_;
};

}  // namespace verdict::workers

#endif  // VERDICT_WORKERS_IN_PROCESS_CLIENTS_H_
