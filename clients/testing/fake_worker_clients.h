// SPDX-License-Identifier: Apache-2.0
// Scripted fakes of DraftClient and TargetClient for the coordinator's tests: every call is queued
// with its callback, and the test answers the calls it chooses, in the order it chooses (a verdict
// before the optimistic proposal, an error between two verdicts, a reply after a cancellation...).
// Nothing runs on its own and nothing sleeps. Thread-safe; replies run the callback on the
// calling (test) thread, outside the fake's lock.
#ifndef VERDICT_CLIENTS_TESTING_FAKE_WORKER_CLIENTS_H_
#define VERDICT_CLIENTS_TESTING_FAKE_WORKER_CLIENTS_H_

#include <cstddef>
#include <deque>
#include <functional>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "clients/worker_clients.h"
#include "common/check.h"

namespace verdict::clients::testing {

// A queue of calls awaiting their replies.
template <typename Call>
class PendingCalls {
 public:
  void Add(Call call) {
    absl::MutexLock lock(&mu_);
    calls_.push_back(std::move(call));
  }
  size_t size() const {
    absl::MutexLock lock(&mu_);
    return calls_.size();
  }
  // A copy of the i-th call in arrival order (its arguments, for assertions).
  Call Peek(size_t i = 0) const {
    absl::MutexLock lock(&mu_);
    VERDICT_CHECK_MSG(i < calls_.size(), "the test answered a call that is not pending");
    return calls_[i];
  }
  // Removes the i-th call so the test can answer it.
  Call Take(size_t i = 0) {
    absl::MutexLock lock(&mu_);
    VERDICT_CHECK_MSG(i < calls_.size(), "the test answered a call that is not pending");
    Call call = std::move(calls_[i]);
    calls_.erase(calls_.begin() + static_cast<std::ptrdiff_t>(i));
    return call;
  }

 private:
  mutable absl::Mutex mu_;
  std::deque<Call> calls_ ABSL_GUARDED_BY(mu_);
};

// The session ids a fake was asked to close, in order.
template <typename Id>
class ClosedSessions {
 public:
  void Add(Id session_id) {
    absl::MutexLock lock(&mu_);
    ids_.push_back(session_id);
  }
  std::vector<Id> ids() const {
    absl::MutexLock lock(&mu_);
    return ids_;
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<Id> ids_ ABSL_GUARDED_BY(mu_);
};

class FakeDraftClient final : public DraftClient {
 public:
  struct OpenCall {
    DraftSessionSpec session;
    StatusCallback done;
  };
  struct ProposeCall {
    spec::ProposeRequest request;
    std::function<void(absl::StatusOr<spec::Proposal>)> done;
  };

  void OpenSession(const DraftSessionSpec& session, StatusCallback done) override {
    opens.Add({session, std::move(done)});
  }
  void Propose(const spec::ProposeRequest& request,
               std::function<void(absl::StatusOr<spec::Proposal>)> done) override {
    proposals.Add({request, std::move(done)});
  }
  void CloseSession(spec::DraftSessionId session_id) override { closed_.Add(session_id); }
  void RenewLease(const spec::LeaseRenewal& renewal) override { leases.Add(renewal); }

  // Answers the i-th pending open.
  void ReplyOpen(absl::Status status = absl::OkStatus(), size_t i = 0) { opens.Take(i).done(status); }
  // Answers the i-th pending proposal with `tokens` (a greedy block), or with an error.
  void ReplyPropose(const std::vector<int32_t>& tokens, size_t i = 0) {
    ProposeCall call = proposals.Take(i);
    spec::Proposal proposal;
    proposal.step = call.request.step;
    proposal.block.tokens = tokens;
    proposal.block.logprobs.assign(tokens.size(), -0.5f);
    proposal.sequence_length =
        call.request.keep_length + static_cast<int64_t>(call.request.append_tokens.size() + tokens.size());
    call.done(std::move(proposal));
  }
  void FailPropose(absl::Status status, size_t i = 0) { proposals.Take(i).done(std::move(status)); }

  std::vector<spec::DraftSessionId> closed() const { return closed_.ids(); }

  PendingCalls<OpenCall> opens;
  PendingCalls<ProposeCall> proposals;
  PendingCalls<spec::LeaseRenewal> leases;

 private:
  ClosedSessions<spec::DraftSessionId> closed_;
};

class FakeTargetClient final : public TargetClient {
 public:
  struct OpenCall {
    TargetSessionSpec session;
    StatusCallback done;
  };
  struct VerifyCall {
    spec::ShardBlock block;
    std::vector<int32_t> token_ids;
    std::function<void(spec::BlockOutcome)> done;
  };

  explicit FakeTargetClient(int num_shards = 2) : num_shards_(num_shards) {}

  void OpenSession(const TargetSessionSpec& session, StatusCallback done) override {
    opens.Add({session, std::move(done)});
  }
  void Verify(const spec::ShardBlock& block, std::vector<int32_t> token_ids,
              std::function<void(spec::BlockOutcome)> done) override {
    verifies.Add({block, std::move(token_ids), std::move(done)});
  }
  void CloseSession(spec::SessionId session_id) override { closed_.Add(session_id); }
  void RenewLease(const spec::LeaseRenewal& renewal) override { leases.Add(renewal); }
  int num_shards() const override { return num_shards_; }

  void ReplyOpen(absl::Status status = absl::OkStatus(), size_t i = 0) { opens.Take(i).done(status); }
  // Answers the i-th pending block with a verdict: its first `accepted` draft tokens (each accepted
  // by the exact rule) and then `next_token`.
  void ReplyVerdict(int32_t accepted, int32_t next_token, size_t i = 0) {
    VerifyCall call = verifies.Take(i);
    spec::Verdict verdict;
    verdict.num_accepted = accepted;
    verdict.next_token = next_token;
    const int32_t k = static_cast<int32_t>(call.block.draft.tokens.size());
    for (int32_t j = 0; j < k; ++j) {
      verdict.reasons.push_back(j < accepted    ? spec::AcceptReason::kExact
                                : j == accepted ? spec::AcceptReason::kRejected
                                                : spec::AcceptReason::kNotReached);
    }
    call.done({call.block.session_id, call.block.step, absl::OkStatus(), std::move(verdict)});
  }
  void FailVerify(absl::Status status, size_t i = 0) {
    VerifyCall call = verifies.Take(i);
    call.done({call.block.session_id, call.block.step, std::move(status), std::nullopt});
  }

  std::vector<spec::SessionId> closed() const { return closed_.ids(); }

  PendingCalls<OpenCall> opens;
  PendingCalls<VerifyCall> verifies;
  PendingCalls<spec::LeaseRenewal> leases;

 private:
  const int num_shards_;
  ClosedSessions<spec::SessionId> closed_;
};

}  // namespace verdict::clients::testing

#endif  // VERDICT_CLIENTS_TESTING_FAKE_WORKER_CLIENTS_H_
