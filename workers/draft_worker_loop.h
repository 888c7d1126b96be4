// SPDX-License-Identifier: Apache-2.0
// The draft worker's engine thread: callers on any thread queue session operations and proposals;
// the thread runs them in arrival order, batching consecutive proposals of different sessions into
// one DraftWorker::ProposeBatch under a token budget (continuous batching: whatever is ready when
// a batch starts joins it). Completion callbacks run on the engine thread and must be quick (hand
// the result to another thread or queue).
//
// The gRPC draft service and the in-process client for tests are thin adapters over this class.
#ifndef VERDICT_WORKERS_DRAFT_WORKER_LOOP_H_
#define VERDICT_WORKERS_DRAFT_WORKER_LOOP_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "engine/sampler.h"
#include "absl/time/time.h"
#include "workers/draft_worker.h"
#include "workers/session_leases.h"
#include "spec/messages.h"
#include "workers/work_queue.h"

namespace verdict::workers {

struct DraftLoopOptions {
  // A batch takes proposals while the tokens of their first forward step (appended + uncached +
  // one) stay within this budget; a single larger proposal still runs alone.
  int64_t max_batch_tokens = 512;
  // How long a coordinator's sessions live without a lease renewal (workers/session_leases.h);
  // a renewal may name another length. Zero: sessions live until closed.
  absl::Duration session_lease = absl::ZeroDuration();
  // Called on the engine thread after the sessions of an owner whose lease ran out were released.
  std::function<void(uint32_t owner, int64_t sessions)> on_lease_expired;
  // Backpressure: opens and proposals that find this many requests queued are refused with
  // kResourceExhausted instead of queueing without limit (closes and renewals always queue).
  // 0: no limit.
  int64_t max_queued = 0;
};

struct DraftLoopStats {
  int64_t batches = 0;
  int64_t proposals = 0;
  int64_t queue_depth = 0;
  int64_t sessions = 0;
  int64_t forward_passes = 0;
  int64_t leases_expired = 0;
  int64_t sessions_released_by_lease = 0;  // expired leases and lost closes
  int64_t refused_queue_full = 0;
  int64_t kv_bytes = 0;
};

class DraftWorkerLoop {
 public:
  using StatusCallback = std::function<void(absl::Status)>;
  using ProposalCallback = std::function<void(absl::StatusOr<spec::Proposal>)>;

  DraftWorkerLoop(std::unique_ptr<DraftWorker> worker, const DraftLoopOptions& options);
  // Stops the thread; queued work completes with kUnavailable.
  ~DraftWorkerLoop();

  // DraftWorker::OpenSession on the engine thread; `done` runs there.
  void OpenSession(spec::DraftSessionId session_id, std::vector<int32_t> prompt, engine::SamplingParams sampling,
                   int64_t capacity, bool record_distributions, StatusCallback done);
  void Propose(spec::ProposeRequest request, ProposalCallback done);
  void CloseSession(spec::DraftSessionId session_id);
  // Renews a coordinator's lease (workers/session_leases.h); its sessions the renewal does not
  // name that are at least a lease old are released.
  void RenewLease(spec::LeaseRenewal renewal);

  DraftLoopStats stats() const;
  const DraftWorker& worker() const { return *worker_; }  // engine-thread data: tests only

 private:
  struct Item {
    enum class Kind { kOpen, kPropose, kClose, kRenew } kind;
    spec::DraftSessionId session_id;
    std::vector<int32_t> prompt;
    engine::SamplingParams sampling;
    bool record_distributions = false;
    int64_t capacity = 0;
    StatusCallback open_done;
    spec::ProposeRequest request;
    ProposalCallback propose_done;
    spec::LeaseRenewal renewal;  // kRenew
  };

  void Run();
  // Queues the item (moving from it) unless the loop is stopping.
  bool Enqueue(Item& item);
  // Whether the queue is too full for new work (counting the refusal).
  bool QueueFull();
  // Estimated tokens of a proposal's first forward step.
  int64_t FirstStepTokens(const spec::ProposeRequest& request) const;
  // Releases the sessions of owners whose lease ran out.
  void ReleaseExpired();

  std::unique_ptr<DraftWorker> worker_;
  DraftLoopOptions options_;
  WorkQueue<Item> queue_;
  SessionLeases leases_;  // engine thread
  mutable absl::Mutex mu_;
  DraftLoopStats stats_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace verdict::workers

#endif  // VERDICT_WORKERS_DRAFT_WORKER_LOOP_H_
