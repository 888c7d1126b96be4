// SPDX-License-Identifier: Apache-2.0
// A target shard's core: one contiguous layer range of the target (an engine::SliceRunner: one
// ModelSlice, or the slice split tensor-parallel across several backends) and one KV cache per
// session. Forward runs the ready blocks of many sessions as one ragged batch: token ids
// into the first shard, activations into the others; a non-last shard returns the activations for
// the next shard, the last shard verifies each block (judge::VerifyBlock: exact rule, judge head,
// lossy rules) and returns only verdicts.
//
// Blocks are self-describing: a block says at which position it starts, and the shard first
// truncates the session's cache to that position. So rolling back rejected draft tokens needs no
// message of its own, and every shard rolls back the same way. A block that is invalid for its
// session (unknown session, a step that does not advance, a gap in positions, no room) fails alone;
// the rest of the batch runs. No networking here: the gRPC service and the activation transport
// are thin adapters around this class.
//
// Not thread-safe: one engine thread calls everything.
#ifndef VERDICT_WORKERS_TARGET_SHARD_H_
#define VERDICT_WORKERS_TARGET_SHARD_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/kernels/thread_pool.h"
#include "engine/model.h"
#include "engine/sampler.h"
#include "engine/slice_runner.h"
#include "judge/judge_head.h"
#include "judge/verification.h"
#include "judge/verification_batch.h"
#include "spec/messages.h"
#include "workers/kv_budget.h"

namespace verdict::workers {

struct ShardBatch {
  std::vector<spec::ShardBlock> blocks;
  std::vector<int32_t> token_ids;  // first shard: every block's ids, concatenated in block order
  std::vector<float> activations;  // other shards: [sum of num_tokens, hidden_size], block order
};

struct ShardForwardResult {
  ShardBatch next;                     // non-last shard: the blocks that ran, for the next shard
  std::vector<spec::BlockOutcome> outcomes;  // failures anywhere; every block's outcome at the last shard
};

struct TargetShardOptions {
  int64_t max_sessions = 256;
  // Last shard: decide blocks whose policy allows it (judge::CanVerifyFromSummaries) from logits
  // summaries and the judge's dot products computed on the backend, instead of copying k + 1 rows
  // of logits and hidden states to the host. Off: always the full rows (same verdicts).
  bool verify_from_summaries = true;
  // Last shard: host threads that decide a batch's blocks when they come with whole logits rows
  // (sampled and KL policies: each decided token filters a vocabulary-wide row, ~1 ms at 128k).
  // 0: up to 8, as the machine has; 1: the engine thread alone. Summaries take microseconds and are
  // always decided on the engine thread. Verdicts do not depend on it (each session has its own
  // random stream).
  int verify_threads = 0;
  // In-process callers only: replaces the engine-level rules the last shard derives from a
  // session's SpeculationParams (rules with no wire form: the judge evaluation's oracle and token
  // mask; local::GenerateSpeculative). Called on the engine thread as each session opens.
  std::function<void(judge::VerificationConfig* verification)> adjust_verification;
  // Memory bound: the KV caches of all sessions together (each allocated whole when its session
  // opens) may hold at most this many bytes; an open that would pass it is refused with
  // kResourceExhausted, so no session runs out of memory midway. 0: no bound.
  int64_t max_kv_bytes = 0;
};

class TargetShard {
 public:
  // `runner` (and `head`, when given; the last shard only) must outlive the shard.
  // kInvalidArgument for no runner, a head on a non-last shard or a head for another hidden size.
  static absl::StatusOr<std::unique_ptr<TargetShard>> Create(engine::SliceRunner* runner,
                                                             const judge::JudgeHead* head,
                                                             const TargetShardOptions& options);
  // The same with a head the shard shares (ReplaceHead may drop it while sessions still use it).
  static absl::StatusOr<std::unique_ptr<TargetShard>> Create(engine::SliceRunner* runner,
                                                             std::shared_ptr<const judge::JudgeHead> head,
                                                             const TargetShardOptions& options);

  // Last shard: sessions opened from now on verify with `head` (its weight becomes the backend's
  // hidden probe); sessions already open keep the head they opened with until they close (their
  // batches then read hidden states back and take the dot products on the host). Call between
  // forward passes. kInvalidArgument for a non-last shard, no head or another hidden size.
  absl::Status ReplaceHead(std::shared_ptr<const judge::JudgeHead> head);

  // Opens a session holding up to `capacity` positions. The last shard turns `params` into its
  // verification rules (judge::ToVerificationConfig, an unset judge threshold meaning the head's);
  // other shards do not look at them. Errors: kAlreadyExists, kResourceExhausted (session limit),
  // kInvalidArgument (capacity, parameters, sampling), kFailedPrecondition (a judge policy on a
  // last shard without a judge head).
  absl::Status OpenSession(spec::SessionId session_id, int64_t capacity, const spec::SpeculationParams& params,
                           const spec::SamplingParams& target_sampling);
  // The same with the engine-level rules already made (in-process callers: rules that have no wire
  // form, such as the evaluation's oracle). `verification` is used by the last shard only.
  absl::Status OpenSession(spec::SessionId session_id, int64_t capacity,
                           const judge::VerificationConfig& verification);
  void CloseSession(spec::SessionId session_id);  // idempotent
  // Releases every session whose id's high 32 bits are `owner` (a coordinator incarnation whose
  // lease ran out: workers/session_leases.h). Returns how many there were.
  int64_t CloseSessionsOf(uint32_t owner);

  // Runs the batch. A malformed batch as a whole (the number of ids or activations does not match
  // the blocks) fails every block with kInvalidArgument.
  ShardForwardResult Forward(const ShardBatch& batch);

  bool is_first() const { return runner_->is_first(); }
  bool is_last() const { return runner_->is_last(); }
  int64_t num_sessions() const { return static_cast<int64_t>(sessions_.size()); }
  int64_t kv_bytes() const { return kv_budget_.used(); }  // held by the open sessions
  bool has_session(spec::SessionId session_id) const { return sessions_.contains(session_id); }
  // The session's cached length (for tests and status), -1 if unknown.
  int64_t cached_length(spec::SessionId session_id) const;
  const engine::SliceRunner& runner() const { return *runner_; }
  const judge::JudgeHead* head() const { return head_.get(); }
  int64_t forward_passes() const { return forward_passes_; }
  // Last shard: rows of full logits copied to the host so far (0 while every block is decided from
  // summaries).
  int64_t logits_rows_to_host() const { return logits_rows_to_host_; }

 private:
  struct Session {
    std::unique_ptr<engine::SequenceCache> cache;
    judge::VerificationConfig verification;
    engine::Sampler rng;  // sampled verification's random stream
    std::shared_ptr<const judge::JudgeHead> head;  // the head when it opened (last shard)
    uint64_t last_step = 0;
    bool has_step = false;
    // The last block run and the random stream before it: the same block again (a retry after a
    // lost reply, or a duplicated request) runs again from the same state and gives the same
    // verdict, instead of failing as a step that does not advance.
    spec::ShardBlock last_block;
    std::mt19937_64 stream_before_last;
  };

  TargetShard(engine::SliceRunner* runner, std::shared_ptr<const judge::JudgeHead> head,
              const TargetShardOptions& options);
  absl::Status ValidateBlock(const spec::ShardBlock& block, const Session& session) const;
  // Whether `block` repeats the session's last block (same step, positions and draft).
  static bool IsReplay(const spec::ShardBlock& block, const Session& session);

  engine::SliceRunner* runner_;
  std::shared_ptr<const judge::JudgeHead> head_;  // for sessions opened from now on
  const judge::JudgeHead* probe_head_ = nullptr;  // whose weight the backend's hidden probe holds
  TargetShardOptions options_;
  absl::flat_hash_map<spec::SessionId, std::unique_ptr<Session>> sessions_;
  engine::ForwardResult forward_;
  std::vector<int32_t> output_rows_;     // last shard: the verification rows of a batch
  judge::VerificationBatch verification_;  // last shard: what a batch computes for its verdicts
  int64_t forward_passes_ = 0;
  int64_t logits_rows_to_host_ = 0;
  KvBudget kv_budget_;
  std::unique_ptr<engine::ThreadPool> verify_pool_;  // created at the first batch that needs it
};

}  // namespace verdict::workers

#endif  // VERDICT_WORKERS_TARGET_SHARD_H_
