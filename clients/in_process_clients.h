// SPDX-License-Identifier: Apache-2.0
// DraftClient and TargetClient over the workers' engine loops in this process: the coordinator's
// tests run the real batching, rollback and verification code without a network, and a
// single-process deployment can use them too. The target chain wires each shard loop's output
// into the next one's input and routes every block outcome back to the caller that sent it.
#ifndef VERDICT_CLIENTS_IN_PROCESS_CLIENTS_H_
#define VERDICT_CLIENTS_IN_PROCESS_CLIENTS_H_

#include <memory>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "clients/worker_clients.h"
#include "workers/draft_worker_loop.h"
#include "workers/target_shard_loop.h"

namespace verdict::clients {

class InProcessDraftClient : public DraftClient {
 public:
  explicit InProcessDraftClient(workers::DraftWorkerLoop* loop) : loop_(loop) {}
  void OpenSession(const DraftSessionSpec& spec, StatusCallback done) override;
  void Propose(const workers::ProposeRequest& request,
               std::function<void(absl::StatusOr<workers::Proposal>)> done) override;
  void CloseSession(uint64_t session_id) override;

 private:
  workers::DraftWorkerLoop* loop_;
};

class InProcessTargetClient : public TargetClient {
 public:
  // Builds one engine loop per shard (in layer order) and chains them.
  explicit InProcessTargetClient(std::vector<std::unique_ptr<workers::TargetShard>> shards,
                                 const workers::ShardLoopOptions& options = {});
  ~InProcessTargetClient() override;

  void OpenSession(const TargetSessionSpec& spec, StatusCallback done) override;
  void Verify(const workers::ShardBlock& block, std::vector<int32_t> token_ids,
              std::function<void(workers::BlockOutcome)> done) override;
  void CloseSession(uint64_t session_id) override;
  int num_shards() const override { return static_cast<int>(loops_.size()); }

  const workers::TargetShardLoop& loop(int i) const { return *loops_[i]; }

 private:
  void Deliver(int shard, workers::BlockOutcome outcome);

  absl::Mutex mu_;
  absl::flat_hash_map<std::pair<uint64_t, uint64_t>, std::function<void(workers::BlockOutcome)>> pending_
      ABSL_GUARDED_BY(mu_);
  std::vector<std::unique_ptr<workers::TargetShardLoop>> loops_;
};

}  // namespace verdict::clients

#endif  // VERDICT_CLIENTS_IN_PROCESS_CLIENTS_H_
