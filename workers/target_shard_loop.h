// SPDX-License-Identifier: Apache-2.0
// A target shard's engine thread: callers on any thread queue session operations and incoming
// blocks (token ids from the coordinator at shard 0, activations from the previous shard
// elsewhere); the thread runs them in arrival order, merging the blocks of consecutive arrivals
// into one TargetShard::Forward under a token budget (continuous batching across sessions). The
// results leave through the sinks, called on the engine thread: the next shard's batch, and the
// outcome of every block that ends here (verdicts at the last shard, failures anywhere).
//
// The gRPC shard service (with the activation transport) and the in-process client for tests are
// thin adapters over this class.
#ifndef VERDICT_WORKERS_TARGET_SHARD_LOOP_H_
#define VERDICT_WORKERS_TARGET_SHARD_LOOP_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "spec/speculation_params.h"
#include "spec/messages.h"
#include "absl/time/time.h"
#include "workers/session_leases.h"
#include "workers/target_shard.h"
#include "workers/work_queue.h"

namespace verdict::workers {

struct ShardLoopOptions {
  // A forward pass takes blocks while their positions stay within this budget (a single larger
  // block still runs alone).
  int64_t max_batch_tokens = 1024;
  // How long a coordinator's sessions live without a lease renewal (workers/session_leases.h);
  // a renewal may name another length. Zero: sessions live until closed.
  absl::Duration session_lease = absl::ZeroDuration();
  // Called on the engine thread after the sessions of an owner whose lease ran out were released.
  std::function<void(uint32_t owner, int64_t sessions)> on_lease_expired;
  // Backpressure: opens, and blocks that would bring the queued blocks past this, are refused with
  // kResourceExhausted (the blocks' sessions fail) instead of queueing without limit (closes and
  // renewals always queue). 0: no limit.
  int64_t max_queued_blocks = 0;
};

struct ShardLoopSinks {
  std::function<void(ShardBatch)> to_next;       // non-last shards
  std::function<void(spec::BlockOutcome)> on_outcome;  // every shard
};

struct ShardLoopStats {
  int64_t forward_passes = 0;
  int64_t blocks = 0;
  int64_t tokens = 0;
  int64_t queue_depth = 0;  // queued blocks
  int64_t sessions = 0;
  int64_t forward_micros_total = 0;
  int64_t last_forward_micros = 0;
  // Last shard: rows of full logits copied to the host (0 while every policy is decided from the
  // backend's summaries; TargetShardOptions::verify_from_summaries).
  int64_t logits_rows_to_host = 0;
  int64_t leases_expired = 0;
  int64_t sessions_released_by_lease = 0;  // expired leases and lost closes
  int64_t refused_queue_full = 0;  // opens and blocks
  int64_t kv_bytes = 0;
};

class TargetShardLoop {
 public:
  using StatusCallback = std::function<void(absl::Status)>;

  TargetShardLoop(std::unique_ptr<TargetShard> shard, const ShardLoopOptions& options, ShardLoopSinks sinks);
  // Stops the thread; queued opens complete with kUnavailable, queued blocks fail the same way.
  ~TargetShardLoop();

  // TargetShard::OpenSession on the engine thread; `done` runs there.
  void OpenSession(spec::SessionId session_id, int64_t capacity, spec::SpeculationParams params,
                   spec::SamplingParams target_sampling, StatusCallback done);
  void CloseSession(spec::SessionId session_id);
  // Renews a coordinator's lease (workers/session_leases.h); its sessions the renewal does not
  // name that are at least a lease old are released.
  void RenewLease(spec::LeaseRenewal renewal);
  void Submit(ShardBatch batch);
  // Last shard: TargetShard::ReplaceHead on the engine thread, between forward passes (sessions
  // already open finish with their head); `done` runs there.
  void ReplaceJudgeHead(std::shared_ptr<const judge::JudgeHead> head, StatusCallback done);

  ShardLoopStats stats() const;
  // The most recent forward passes as [start, end) in steady-clock microseconds (up to 4096, oldest
  // first): lets a test or benchmark measure how much two shards' work overlapped in time.
  std::vector<std::pair<int64_t, int64_t>> recent_forward_intervals() const;
  const TargetShard& shard() const { return *shard_; }  // engine-thread data: tests only

 private:
  struct Item {
    enum class Kind { kOpen, kClose, kBlocks, kRenew, kReplaceHead } kind;
    spec::SessionId session_id;
    int64_t capacity = 0;
    spec::SpeculationParams params;
    spec::SamplingParams target_sampling;
    StatusCallback done;
    ShardBatch batch;
    spec::LeaseRenewal renewal;  // kRenew
    std::shared_ptr<const judge::JudgeHead> head;  // kReplaceHead
  };

  bool Enqueue(Item& item);
  // Whether `blocks` more blocks (an open: 0) would overfill the queue (counting the refusal).
  bool QueueFull(int64_t blocks);
  void Run();
  void FailBlocks(const ShardBatch& batch, const absl::Status& status);
  // Releases the sessions of owners whose lease ran out.
  void ReleaseExpired();

  std::unique_ptr<TargetShard> shard_;
  ShardLoopOptions options_;
  ShardLoopSinks sinks_;
  WorkQueue<Item> queue_;
  SessionLeases leases_;  // engine thread
  mutable absl::Mutex mu_;
  ShardLoopStats stats_ ABSL_GUARDED_BY(mu_);
  int64_t queued_blocks_ ABSL_GUARDED_BY(mu_) = 0;
  std::deque<std::pair<int64_t, int64_t>> intervals_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace verdict::workers

#endif  // VERDICT_WORKERS_TARGET_SHARD_LOOP_H_
