// SPDX-License-Identifier: Apache-2.0
#include "services/shard/shard_events.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "clients/grpc/wire_convert.h"

namespace verdict::services {

ShardEventsReactor::ShardEventsReactor(ShardEventHub* hub) : hub_(hub) {
  // Headers go out at once, so the subscriber knows the stream is up before the first event.
  StartSendInitialMetadata();
  hub_->Attach(this);
}

void ShardEventsReactor::Push(v1::ShardEvent event) {
  absl::MutexLock lock(&mu_);
  if (finished_) return;
  queue_.push_back(std::move(event));
  if (!writing_) {
    writing_ = true;
    StartWrite(&queue_.front());
  }
}

void ShardEventsReactor::OnWriteDone(bool ok) {
  absl::MutexLock lock(&mu_);
  queue_.pop_front();
  if (!ok) {  // the subscriber went away
    writing_ = false;
    if (!finished_) {
      finished_ = true;
      Finish(grpc::Status::OK);
    }
    return;
  }
  if (queue_.empty() || finished_) {
    writing_ = false;
  } else {
    StartWrite(&queue_.front());
  }
}

void ShardEventsReactor::OnCancel() {
  absl::MutexLock lock(&mu_);
  if (!finished_) {
    finished_ = true;
    Finish(grpc::Status::CANCELLED);
  }
}

void ShardEventsReactor::OnDone() {
  hub_->Detach(this);
  delete this;
}

void ShardEventHub::Publish(const spec::BlockOutcome& outcome) {
  v1::ShardEvent event;
  if (outcome.status.ok() && outcome.verdict.has_value()) {
    v1::VerdictEvent* v = event.mutable_verdict();
    v->set_session_id(outcome.session_id.value());
    v->set_step(outcome.step);
    wire::ToProto(*outcome.verdict, v->mutable_verdict());
  } else if (!outcome.status.ok()) {
    v1::SessionError* e = event.mutable_error();
    e->set_session_id(outcome.session_id.value());
    e->set_step(outcome.step);
    e->set_code(static_cast<int32_t>(outcome.status.code()));
    e->set_message(absl::StrCat("target shard ", shard_index_, ": ", outcome.status.message()));
  } else {
    return;  // a prefill-only block: nothing to report
  }
  absl::MutexLock lock(&mu_);
  if (subscriber_ != nullptr) {
    subscriber_->Push(std::move(event));
    return;
  }
  buffered_.push_back(std::move(event));
  if (buffered_.size() > max_buffered_) {
    buffered_.pop_front();
    ++dropped_;
  }
}

void ShardEventHub::Attach(ShardEventsReactor* reactor) {
  absl::MutexLock lock(&mu_);
  subscriber_ = reactor;  // the previous one keeps its stream but gets nothing new
  while (!buffered_.empty()) {
    reactor->Push(std::move(buffered_.front()));
    buffered_.pop_front();
  }
}

void ShardEventHub::Detach(ShardEventsReactor* reactor) {
  absl::MutexLock lock(&mu_);
  if (subscriber_ == reactor) subscriber_ = nullptr;
}

int64_t ShardEventHub::dropped() const {
  absl::MutexLock lock(&mu_);
  return dropped_;
}

}  // namespace verdict::services
