// SPDX-License-Identifier: Apache-2.0
#include "workers/draft_worker_loop.h"

#include <algorithm>
#include <utility>

#include "absl/container/flat_hash_set.h"

namespace verdict::workers {

DraftWorkerLoop::DraftWorkerLoop(std::unique_ptr<DraftWorker> worker, const DraftLoopOptions& options)
    : worker_(std::move(worker)), options_(options) {
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
  if (!Enqueue(item)) item.open_done(absl::UnavailableError("the draft worker is shutting down"));
}

void DraftWorkerLoop::Propose(spec::ProposeRequest request, ProposalCallback done) {
  Item item{Item::Kind::kPropose};
  item.session_id = request.session_id;
  item.request = std::move(request);
  item.propose_done = std::move(done);
  if (!Enqueue(item)) item.propose_done(absl::UnavailableError("the draft worker is shutting down"));
}

void DraftWorkerLoop::CloseSession(spec::DraftSessionId session_id) {
  Item item{Item::Kind::kClose};
  item.session_id = session_id;
  Enqueue(item);
}

bool DraftWorkerLoop::Enqueue(Item& item) { return queue_.Push(item); }

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
    if (!queue_.Take(&items)) {  // stopped: fail what is left (callbacks may call back in)
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
        front.open_done(worker_->OpenSession(front.session_id, front.prompt, front.sampling, front.capacity,
                                             front.record_distributions));
        items.pop_front();
        continue;
      }
      if (front.kind == Item::Kind::kClose) {
        worker_->CloseSession(front.session_id);
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
      for (size_t i = 0; i < results.size(); ++i) callbacks[i](std::move(results[i]));
    }
    absl::MutexLock lock(&mu_);
    stats_.sessions = worker_->num_sessions();
  }
}

}  // namespace verdict::workers
