// SPDX-License-Identifier: Apache-2.0
#include "workers/draft_worker_loop.h"

#include <algorithm>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"

namespace verdict::workers {

DraftWorkerLoop::DraftWorkerLoop(std::unique_ptr<DraftWorker> worker, const DraftLoopOptions& options)
    : worker_(std::move(worker)), options_(options), leases_(options.session_lease) {
  thread_ = std::thread([this] { Run(); });
}

DraftWorkerLoop::~DraftWorkerLoop() {
  queue_.Stop();
  thread_.join();
}

void DraftWorkerLoop::OpenSession(spec::DraftSessionId session_id, std::vector<int32_t> prompt,
                                  engine::SamplingParams sampling, int64_t capacity, bool record_distributions,
                                  StatusCallback done) {
  Item item{Item::Kind::kOpen};
  item.session_id = session_id;
  item.prompt = std::move(prompt);
  item.sampling = sampling;
  item.record_distributions = record_distributions;
  item.capacity = capacity;
  item.open_done = std::move(done);
  if (QueueFull()) {
    item.open_done(absl::ResourceExhaustedError(
        absl::StrCat("the draft worker's queue holds its maximum of ", options_.max_queued, " requests")));
    return;
  }
  if (!Enqueue(item)) item.open_done(absl::UnavailableError("the draft worker is shutting down"));
}

void DraftWorkerLoop::Propose(spec::ProposeRequest request, ProposalCallback done) {
  Item item{Item::Kind::kPropose};
  item.session_id = request.session_id;
  item.request = std::move(request);
  item.propose_done = std::move(done);
  if (QueueFull()) {
    item.propose_done(absl::ResourceExhaustedError(
        absl::StrCat("the draft worker's queue holds its maximum of ", options_.max_queued, " requests")));
    return;
  }
  if (!Enqueue(item)) item.propose_done(absl::UnavailableError("the draft worker is shutting down"));
}

void DraftWorkerLoop::CloseSession(spec::DraftSessionId session_id) {
  Item item{Item::Kind::kClose};
  item.session_id = session_id;
  Enqueue(item);
}

void DraftWorkerLoop::RenewLease(spec::LeaseRenewal renewal) {
  Item item{Item::Kind::kRenew};
  item.renewal = std::move(renewal);
  Enqueue(item);
}

bool DraftWorkerLoop::Enqueue(Item& item) { return queue_.Push(item); }

bool DraftWorkerLoop::QueueFull() {
  if (options_.max_queued <= 0 || static_cast<int64_t>(queue_.size()) < options_.max_queued) return false;
  absl::MutexLock lock(&mu_);
  ++stats_.refused_queue_full;
  return true;
}

DraftLoopStats DraftWorkerLoop::stats() const {
  absl::MutexLock lock(&mu_);
  DraftLoopStats s = stats_;
  s.queue_depth = static_cast<int64_t>(queue_.size());  // (the queue locks itself)
  return s;
}

int64_t DraftWorkerLoop::FirstStepTokens(const spec::ProposeRequest& request) const {
  const int64_t cached = std::max<int64_t>(0, worker_->cached_length(request.session_id));
  const int64_t base = request.keep_length + static_cast<int64_t>(request.append_tokens.size());
  return std::max<int64_t>(1, base - std::min(cached, request.keep_length));
}

void DraftWorkerLoop::Run() {
  std::deque<Item> items;
  while (true) {
    if (!queue_.Take(&items, leases_.NextExpiry())) {  // stopped: fail what is left (callbacks may call back in)
      for (Item& item : items) {
        if (item.kind == Item::Kind::kOpen) item.open_done(absl::UnavailableError("the draft worker stopped"));
        if (item.kind == Item::Kind::kPropose) item.propose_done(absl::UnavailableError("the draft worker stopped"));
      }
      return;
    }
    // In arrival order: session operations run as they come; consecutive proposals of distinct
    // sessions within the token budget form one batch.
    while (!items.empty()) {
      Item& front = items.front();
      if (front.kind == Item::Kind::kOpen) {
        absl::Status status = worker_->OpenSession(front.session_id, front.prompt, front.sampling, front.capacity,
                                                   front.record_distributions);
        if (status.ok()) leases_.Opened(front.session_id.value(), absl::Now());
        front.open_done(std::move(status));
        items.pop_front();
        continue;
      }
      if (front.kind == Item::Kind::kRenew) {
        const spec::LeaseRenewal& r = front.renewal;
        const std::vector<uint64_t> abandoned = leases_.Renew(r.owner, r.lease, r.live_sessions, absl::Now());
        for (uint64_t id : abandoned) worker_->CloseSession(spec::DraftSessionId(id));
        if (!abandoned.empty()) {
          absl::MutexLock lock(&mu_);
          stats_.sessions_released_by_lease += static_cast<int64_t>(abandoned.size());
        }
        items.pop_front();
        continue;
      }
      if (front.kind == Item::Kind::kClose) {
        worker_->CloseSession(front.session_id);
        leases_.Closed(front.session_id.value());
        items.pop_front();
        continue;
      }
      std::vector<spec::ProposeRequest> requests;
      std::vector<ProposalCallback> callbacks;
      absl::flat_hash_set<spec::DraftSessionId> sessions;
      int64_t tokens = 0;
      while (!items.empty() && items.front().kind == Item::Kind::kPropose) {
        Item& item = items.front();
        const int64_t need = FirstStepTokens(item.request);
        if (!requests.empty() && (tokens + need > options_.max_batch_tokens ||
                                  sessions.contains(item.session_id))) {
          break;
        }
        tokens += need;
        sessions.insert(item.session_id);
        requests.push_back(std::move(item.request));
        callbacks.push_back(std::move(item.propose_done));
        items.pop_front();
      }
      std::vector<absl::StatusOr<spec::Proposal>> results = worker_->ProposeBatch(requests);
      {
        absl::MutexLock lock(&mu_);
        ++stats_.batches;
        stats_.proposals += static_cast<int64_t>(requests.size());
        stats_.sessions = worker_->num_sessions();
        stats_.forward_passes = worker_->forward_passes();
      }
      for (size_t i = 0; i < results.size(); ++i) {
        const uint32_t owner = SessionLeases::OwnerOf(requests[i].session_id.value());
        if (results[i].status().code() == absl::StatusCode::kNotFound && leases_.RecentlyExpired(owner)) {
          results[i] = absl::NotFoundError(absl::StrCat(results[i].status().message(),
                                                        " (released: its coordinator's lease expired)"));
        }
        callbacks[i](std::move(results[i]));
      }
    }
    ReleaseExpired();
    absl::MutexLock lock(&mu_);
    stats_.sessions = worker_->num_sessions();
    stats_.kv_bytes = worker_->kv_bytes();
  }
}

void DraftWorkerLoop::ReleaseExpired() {
  for (uint32_t owner : leases_.TakeExpired(absl::Now())) {
    const int64_t released = worker_->CloseSessionsOf(owner);
    {
      absl::MutexLock lock(&mu_);
      ++stats_.leases_expired;
      stats_.sessions_released_by_lease += released;
      stats_.sessions = worker_->num_sessions();
      stats_.kv_bytes = worker_->kv_bytes();
    }
    if (options_.on_lease_expired) options_.on_lease_expired(owner, released);
  }
}

}  // namespace verdict::workers
