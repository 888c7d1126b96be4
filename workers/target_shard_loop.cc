// SPDX-License-Identifier: Apache-2.0
#include "workers/target_shard_loop.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"

namespace verdict::workers {
namespace {

// Appends block `index` of `src` (whose rows start at `row`) to `dst`.
void AppendBlock(const ShardBatch& src, size_t index, int64_t row, int64_t hidden, ShardBatch* dst) {
  const spec::ShardBlock& block = src.blocks[index];
  dst->blocks.push_back(block);
  if (!src.token_ids.empty()) {
    dst->token_ids.insert(dst->token_ids.end(), src.token_ids.begin() + row,
                          src.token_ids.begin() + row + block.num_tokens);
  }
  if (!src.activations.empty()) {
    dst->activations.insert(dst->activations.end(), src.activations.begin() + row * hidden,
                            src.activations.begin() + (row + block.num_tokens) * hidden);
  }
}

}  // namespace

TargetShardLoop::TargetShardLoop(std::unique_ptr<TargetShard> shard, const ShardLoopOptions& options,
                                 ShardLoopSinks sinks)
    : shard_(std::move(shard)), options_(options), sinks_(std::move(sinks)), leases_(options.session_lease) {
  thread_ = std::thread([this] { Run(); });
}

TargetShardLoop::~TargetShardLoop() {
  queue_.Stop();
  thread_.join();
}

bool TargetShardLoop::Enqueue(Item& item) {
  // Counted before the push so the engine thread never subtracts blocks not yet added.
  const int64_t blocks = item.kind == Item::Kind::kBlocks ? static_cast<int64_t>(item.batch.blocks.size()) : 0;
  {
    absl::MutexLock lock(&mu_);
    queued_blocks_ += blocks;
  }
  if (queue_.Push(item)) return true;
  absl::MutexLock lock(&mu_);
  queued_blocks_ -= blocks;
  return false;
}

void TargetShardLoop::OpenSession(spec::SessionId session_id, int64_t capacity, spec::SpeculationParams params,
                                  spec::SamplingParams target_sampling, StatusCallback done) {
  Item item{Item::Kind::kOpen};
  item.session_id = session_id;
  item.capacity = capacity;
  item.params = std::move(params);
  item.target_sampling = target_sampling;
  item.done = std::move(done);
  if (QueueFull(0)) {
    item.done(absl::ResourceExhaustedError(absl::StrCat("the target shard's queue holds its maximum of ",
                                                        options_.max_queued_blocks, " blocks")));
    return;
  }
  if (!Enqueue(item)) item.done(absl::UnavailableError("the target shard is shutting down"));
}

void TargetShardLoop::CloseSession(spec::SessionId session_id) {
  Item item{Item::Kind::kClose};
  item.session_id = session_id;
  Enqueue(item);
}

void TargetShardLoop::RenewLease(spec::LeaseRenewal renewal) {
  Item item{Item::Kind::kRenew};
  item.renewal = std::move(renewal);
  Enqueue(item);
}

void TargetShardLoop::ReplaceJudgeHead(std::shared_ptr<const judge::JudgeHead> head, StatusCallback done) {
  Item item{Item::Kind::kReplaceHead};
  item.head = std::move(head);
  item.done = std::move(done);
  if (!Enqueue(item)) item.done(absl::UnavailableError("the target shard stopped"));
}

void TargetShardLoop::Submit(ShardBatch batch) {
  Item item{Item::Kind::kBlocks};
  item.batch = std::move(batch);
  if (QueueFull(static_cast<int64_t>(item.batch.blocks.size()))) {
    FailBlocks(item.batch, absl::ResourceExhaustedError(absl::StrCat(
                               "the target shard's queue holds its maximum of ", options_.max_queued_blocks, " blocks")));
    return;
  }
  if (!Enqueue(item)) FailBlocks(item.batch, absl::UnavailableError("the target shard is shutting down"));
}

bool TargetShardLoop::QueueFull(int64_t blocks) {
  if (options_.max_queued_blocks <= 0) return false;
  absl::MutexLock lock(&mu_);
  if (queued_blocks_ + std::max<int64_t>(blocks, 1) <= options_.max_queued_blocks) return false;
  ++stats_.refused_queue_full;
  return true;
}

void TargetShardLoop::FailBlocks(const ShardBatch& batch, const absl::Status& status) {
  if (!sinks_.on_outcome) return;
  for (const spec::ShardBlock& b : batch.blocks) sinks_.on_outcome({b.session_id, b.step, status, std::nullopt});
}

std::vector<std::pair<int64_t, int64_t>> TargetShardLoop::recent_forward_intervals() const {
  absl::MutexLock lock(&mu_);
  return std::vector<std::pair<int64_t, int64_t>>(intervals_.begin(), intervals_.end());
}

ShardLoopStats TargetShardLoop::stats() const {
  absl::MutexLock lock(&mu_);
  ShardLoopStats s = stats_;
  s.queue_depth = queued_blocks_;
  return s;
}

void TargetShardLoop::Run() {
  const int64_t hidden = shard_->runner().config().hidden_size;
  std::deque<Item> items;
  while (true) {
    if (!queue_.Take(&items, leases_.NextExpiry())) {  // stopped: fail what is left
      for (Item& item : items) {
        if (item.kind == Item::Kind::kOpen || item.kind == Item::Kind::kReplaceHead) {
          item.done(absl::UnavailableError("the target shard stopped"));
        }
        if (item.kind == Item::Kind::kBlocks) FailBlocks(item.batch, absl::UnavailableError("the target shard stopped"));
      }
      return;
    }
    // Partly consumed block arrival: (item, next block index, its first row).
    size_t next_block = 0;
    int64_t next_row = 0;
    while (!items.empty()) {
      Item& front = items.front();
      if (front.kind == Item::Kind::kOpen) {
        absl::Status status = shard_->OpenSession(front.session_id, front.capacity, front.params, front.target_sampling);
        if (status.ok()) leases_.Opened(front.session_id.value(), absl::Now());
        front.done(std::move(status));
        items.pop_front();
        continue;
      }
      if (front.kind == Item::Kind::kReplaceHead) {
        front.done(shard_->ReplaceHead(std::move(front.head)));
        items.pop_front();
        continue;
      }
      if (front.kind == Item::Kind::kRenew) {
        const spec::LeaseRenewal& r = front.renewal;
        const std::vector<uint64_t> abandoned = leases_.Renew(r.owner, r.lease, r.live_sessions, absl::Now());
        for (uint64_t id : abandoned) shard_->CloseSession(spec::SessionId(id));
        if (!abandoned.empty()) {
          absl::MutexLock lock(&mu_);
          stats_.sessions_released_by_lease += static_cast<int64_t>(abandoned.size());
        }
        items.pop_front();
        continue;
      }
      if (front.kind == Item::Kind::kClose) {
        shard_->CloseSession(front.session_id);
        leases_.Closed(front.session_id.value());
        items.pop_front();
        continue;
      }
      // Merge blocks of consecutive arrivals: within the budget, one block per session.
      ShardBatch batch;
      absl::flat_hash_set<spec::SessionId> sessions;
      int64_t tokens = 0;
      while (!items.empty() && items.front().kind == Item::Kind::kBlocks) {
        const ShardBatch& src = items.front().batch;
        if (next_block == src.blocks.size()) {
          items.pop_front();
          next_block = 0;
          next_row = 0;
          continue;
        }
        const spec::ShardBlock& block = src.blocks[next_block];
        if (!batch.blocks.empty() && (tokens + block.num_tokens > options_.max_batch_tokens ||
                                      sessions.contains(block.session_id))) {
          break;
        }
        // An arrival whose rows do not add up fails from this block on (the earlier blocks of it
        // were well formed and run).
        const int64_t rows = shard_->is_first() ? static_cast<int64_t>(src.token_ids.size())
                                                : static_cast<int64_t>(src.activations.size()) / hidden;
        const bool consistent = block.num_tokens >= 1 && next_row + block.num_tokens <= rows &&
                                (shard_->is_first() ? src.activations.empty()
                                                    : src.token_ids.empty() &&
                                                          src.activations.size() % hidden == 0);
        if (!consistent) {
          const absl::Status error = absl::InvalidArgumentError(absl::StrCat(
              "malformed block batch: ", src.blocks.size(), " blocks do not match ",
              shard_->is_first() ? src.token_ids.size() : src.activations.size(),
              shard_->is_first() ? " token ids" : " activation values"));
          const int64_t failed = static_cast<int64_t>(src.blocks.size() - next_block);
          for (size_t i = next_block; i < src.blocks.size(); ++i) {
            if (sinks_.on_outcome) sinks_.on_outcome({src.blocks[i].session_id, src.blocks[i].step, error, std::nullopt});
          }
          {
            absl::MutexLock lock(&mu_);
            queued_blocks_ -= failed;
          }
          items.pop_front();
          next_block = 0;
          next_row = 0;
          continue;
        }
        AppendBlock(src, next_block, next_row, hidden, &batch);
        tokens += block.num_tokens;
        sessions.insert(block.session_id);
        next_row += block.num_tokens;
        ++next_block;
      }
      if (batch.blocks.empty()) continue;
      const auto start = std::chrono::steady_clock::now();
      ShardForwardResult result = shard_->Forward(batch);
      const auto end = std::chrono::steady_clock::now();
      const int64_t micros = std::chrono::duration_cast<std::chrono::microseconds>(end - start).count();
      auto since_epoch = [](std::chrono::steady_clock::time_point t) {
        return std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
      };
      {
        absl::MutexLock lock(&mu_);
        ++stats_.forward_passes;
        stats_.blocks += static_cast<int64_t>(batch.blocks.size());
        stats_.tokens += tokens;
        stats_.forward_micros_total += micros;
        stats_.last_forward_micros = micros;
        stats_.sessions = shard_->num_sessions();
        stats_.logits_rows_to_host = shard_->logits_rows_to_host();
        queued_blocks_ -= static_cast<int64_t>(batch.blocks.size());
        intervals_.emplace_back(since_epoch(start), since_epoch(end));
        if (intervals_.size() > 4096) intervals_.pop_front();
      }
      if (!result.next.blocks.empty() && sinks_.to_next) sinks_.to_next(std::move(result.next));
      if (sinks_.on_outcome) {
        for (spec::BlockOutcome& outcome : result.outcomes) {
          if (outcome.status.code() == absl::StatusCode::kNotFound &&
              leases_.RecentlyExpired(SessionLeases::OwnerOf(outcome.session_id.value()))) {
            outcome.status = absl::NotFoundError(
                absl::StrCat(outcome.status.message(), " (released: its coordinator's lease expired)"));
          }
          sinks_.on_outcome(std::move(outcome));
        }
      }
    }
    ReleaseExpired();
    absl::MutexLock lock(&mu_);
    stats_.sessions = shard_->num_sessions();
    stats_.kv_bytes = shard_->kv_bytes();
  }
}

void TargetShardLoop::ReleaseExpired() {
  for (uint32_t owner : leases_.TakeExpired(absl::Now())) {
    const int64_t released = shard_->CloseSessionsOf(owner);
    {
      absl::MutexLock lock(&mu_);
      ++stats_.leases_expired;
      stats_.sessions_released_by_lease += released;
      stats_.sessions = shard_->num_sessions();
      stats_.kv_bytes = shard_->kv_bytes();
    }
    if (options_.on_lease_expired) options_.on_lease_expired(owner, released);
  }
}

}  // namespace verdict::workers
