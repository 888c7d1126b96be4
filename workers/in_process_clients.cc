// SPDX-License-Identifier: Apache-2.0
#include "workers/in_process_clients.h"

#include <atomic>
#include <memory>

#include "absl/strings/str_cat.h"
#include "clients/status_join.h"
#include "common/status_macros.h"

namespace verdict::workers {

using clients::DraftSessionSpec;
using clients::StatusCallback;
using clients::StatusJoin;
using clients::TargetSessionSpec;

void InProcessDraftClient::OpenSession(const DraftSessionSpec& session, StatusCallback done) {
  loop_->OpenSession(session.session_id, session.prompt, session.sampling, session.capacity,
                     session.record_distributions, std::move(done));
}

void InProcessDraftClient::Propose(const spec::ProposeRequest& request,
                                   std::function<void(absl::StatusOr<spec::Proposal>)> done) {
  loop_->Propose(request, std::move(done));
}

void InProcessDraftClient::CloseSession(spec::DraftSessionId session_id) { loop_->CloseSession(session_id); }

InProcessTargetClient::InProcessTargetClient(std::vector<std::unique_ptr<TargetShard>> shards,
                                             const ShardLoopOptions& options) {
  // Built from the last shard backwards so each loop can hand its output to the next one.
  loops_.resize(shards.size());
  for (int i = static_cast<int>(shards.size()) - 1; i >= 0; --i) {
    workers::ShardLoopSinks sinks;
    if (i + 1 < static_cast<int>(shards.size())) {
      workers::TargetShardLoop* next = loops_[i + 1].get();
      sinks.to_next = [next](workers::ShardBatch batch) { next->Submit(std::move(batch)); };
    }
    sinks.on_outcome = [this, i](spec::BlockOutcome outcome) { Deliver(i, std::move(outcome)); };
    loops_[i] = std::make_unique<workers::TargetShardLoop>(std::move(shards[i]), options, std::move(sinks));
  }
}

InProcessTargetClient::~InProcessTargetClient() {
  // Stop shard 0 first so nothing new flows down the chain while later loops stop.
  for (auto& loop : loops_) loop.reset();
}

void InProcessTargetClient::OpenSession(const TargetSessionSpec& session, StatusCallback done) {
  // done(OK) after every shard opened it; the first error otherwise (reported once).
  std::shared_ptr<StatusJoin> join = StatusJoin::Create(num_shards(), std::move(done));
  for (int i = 0; i < num_shards(); ++i) {
    loops_[i]->OpenSession(session.session_id, session.capacity, session.params, session.target_sampling,
                           [join, i](absl::Status s) {
      join->Report(s.ok() ? s : absl::Status(s.code(), absl::StrCat("target shard ", i, ": ", s.message())));
    });
  }
}

void InProcessTargetClient::Verify(const spec::ShardBlock& block, std::vector<int32_t> token_ids,
                                   std::function<void(spec::BlockOutcome)> done) {
  {
    absl::MutexLock lock(&mu_);
    pending_[{block.session_id, block.step}] = std::move(done);
  }
  workers::ShardBatch batch;
  batch.blocks = {block};
  batch.token_ids = std::move(token_ids);
  loops_[0]->Submit(std::move(batch));
}

void InProcessTargetClient::CloseSession(spec::SessionId session_id) {
  for (auto& loop : loops_) loop->CloseSession(session_id);
}

void InProcessTargetClient::RenewLease(const spec::LeaseRenewal& renewal) {
  for (auto& loop : loops_) loop->RenewLease(renewal);
}

void InProcessTargetClient::Deliver(int shard, spec::BlockOutcome outcome) {
  std::function<void(spec::BlockOutcome)> done;
  {
    absl::MutexLock lock(&mu_);
    auto it = pending_.find({outcome.session_id, outcome.step});
    if (it == pending_.end()) return;  // not ours (or already answered)
    done = std::move(it->second);
    pending_.erase(it);
  }
  if (!outcome.status.ok()) {
    outcome.status = absl::Status(outcome.status.code(),
                                  absl::StrCat("target shard ", shard, ": ", outcome.status.message()));
  }
  done(std::move(outcome));
}

absl::StatusOr<std::unique_ptr<InProcessCluster>> InProcessCluster::Create(engine::ModelSlice* target,
                                                                           engine::ModelSlice* draft,
                                                                           const judge::JudgeHead* head,
                                                                           TargetShardOptions shard_options) {
  auto cluster = std::unique_ptr<InProcessCluster>(new InProcessCluster);
  cluster->runner_ = engine::RunSingleSlice(target);
  VERDICT_ASSIGN_OR_RETURN(std::unique_ptr<TargetShard> shard,
                           TargetShard::Create(cluster->runner_.get(), head, std::move(shard_options)));
  VERDICT_ASSIGN_OR_RETURN(std::unique_ptr<DraftWorker> worker, DraftWorker::Create(draft, {}));
  std::vector<std::unique_ptr<TargetShard>> shards;
  shards.push_back(std::move(shard));
  cluster->target_ = std::make_unique<InProcessTargetClient>(std::move(shards));
  cluster->draft_loop_ = std::make_unique<DraftWorkerLoop>(std::move(worker), DraftLoopOptions{});
  cluster->draft_ = std::make_unique<InProcessDraftClient>(cluster->draft_loop_.get());
  return cluster;
}

}  // namespace verdict::workers
