// SPDX-License-Identifier: Apache-2.0
// The target shard's Events stream (verdict.v1.TargetShard.Events): block outcomes published by
// the engine thread (verdicts at the last shard, per-session errors anywhere) go to the one
// subscriber, the coordinator, in order. Outcomes published while nobody is subscribed wait in a
// bounded buffer (the oldest are dropped past it: their sessions are failed by the coordinator's
// own stream-loss handling). A new subscription replaces the old one.
#ifndef VERDICT_SERVICES_SHARD_SHARD_EVENTS_H_
#define VERDICT_SERVICES_SHARD_SHARD_EVENTS_H_

#include <cstdint>
#include <deque>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/grpcpp.h"
#include "verdict/v1/target_shard.pb.h"
#include "spec/messages.h"

namespace verdict::services {

class ShardEventHub;

// One subscriber's stream: writes one event at a time (gRPC allows one write in flight).
class ShardEventsReactor : public grpc::ServerWriteReactor<v1::ShardEvent> {
 public:
  explicit ShardEventsReactor(ShardEventHub* hub);
  void Push(v1::ShardEvent event);
  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

 private:
  ShardEventHub* hub_;
  absl::Mutex mu_;
  std::deque<v1::ShardEvent> queue_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

class ShardEventHub {
 public:
  explicit ShardEventHub(int shard_index, size_t max_buffered = 65536)
      : shard_index_(shard_index), max_buffered_(max_buffered) {}
  // From the engine thread: converts and delivers (or buffers) the outcome.
  void Publish(const spec::BlockOutcome& outcome);
  void Attach(ShardEventsReactor* reactor);
  void Detach(ShardEventsReactor* reactor);
  int64_t dropped() const;

 private:
  int shard_index_;
  size_t max_buffered_;
  mutable absl::Mutex mu_;
  ShardEventsReactor* subscriber_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::deque<v1::ShardEvent> buffered_ ABSL_GUARDED_BY(mu_);
  int64_t dropped_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace verdict::services

#endif  // VERDICT_SERVICES_SHARD_SHARD_EVENTS_H_
