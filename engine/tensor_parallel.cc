// SPDX-License-Identifier: Apache-2.0
#include "engine/tensor_parallel.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace verdict::engine {

TensorParallelKvCache::~TensorParallelKvCache() {
  group_
      ->RunOnRanks([this](int rank) {
        caches_[rank].reset();
        return absl::OkStatus();
      })
      .IgnoreError();
}

absl::Status TensorParallelKvCache::Truncate(int64_t n) {
  // Every rank's cache has the same length, so checking one makes the truncation all-or-nothing.
  VERDICT_RETURN_IF_ERROR(caches_[0]->Truncate(n));
  for (size_t r = 1; r < caches_.size(); ++r) VERDICT_RETURN_IF_ERROR(caches_[r]->Truncate(n));
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<TensorParallelGroup>> TensorParallelGroup::Create(
    const LlamaConfig& config, const WeightSource& weights, SliceRange range, int world_size,
    BackendFactory backends, CommunicatorFactory communicators) {
  if (world_size < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor-parallel size ", world_size, " is not positive"));
  }
  std::vector<std::unique_ptr<Communicator>> comms;
  if (communicators) {
    VERDICT_ASSIGN_OR_RETURN(comms, communicators(world_size));
  } else {
    comms = CreateThreadCommunicators(world_size);
  }
  if (static_cast<int>(comms.size()) != world_size) {
    return absl::InvalidArgumentError(absl::StrCat("the communicator factory made ", comms.size(),
                                                   " communicators for ", world_size, " ranks"));
  }
  std::unique_ptr<TensorParallelGroup> group(new TensorParallelGroup());
  group->statuses_.resize(world_size);
  for (int r = 0; r < world_size; ++r) {
    auto rank = std::make_unique<Rank>();
    rank->comm = std::move(comms[r]);
    group->ranks_.push_back(std::move(rank));
  }
  for (int r = 0; r < world_size; ++r) {
    group->ranks_[r]->thread = std::thread([g = group.get(), r] { g->RankMain(r); });
  }
  // On error the group's destructor releases whatever the ranks made, each on its own thread.
  VERDICT_RETURN_IF_ERROR(group->RunOnRanks([&](int r) -> absl::Status {
    Rank& rank = *group->ranks_[r];
    VERDICT_ASSIGN_OR_RETURN(rank.backend, backends(r));
    if (rank.backend == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("the backend factory made no backend for rank ", r));
    }
    VERDICT_ASSIGN_OR_RETURN(rank.slice,
                             ModelSlice::Create(config, weights, range, rank.backend.get(),
                                                TensorParallelConfig{rank.comm.get()}));
    return absl::OkStatus();
  }));
  return group;
}

TensorParallelGroup::~TensorParallelGroup() {
  RunOnRanks([this](int r) {
    ranks_[r]->scratch = ForwardResult();
    ranks_[r]->slice.reset();
    ranks_[r]->backend.reset();
    return absl::OkStatus();
  }).IgnoreError();
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  for (auto& rank : ranks_) rank->thread.join();
}

void TensorParallelGroup::RankMain(int rank) {
  uint64_t seen = 0;
  while (true) {
    const std::function<absl::Status(int)>* task;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_ || generation_ != seen; };
      mu_.Await(absl::Condition(&ready));
      if (stop_) return;
      seen = generation_;
      task = task_;
    }
    statuses_[rank] = (*task)(rank);
    absl::MutexLock lock(&mu_);
    --pending_;
  }
}

absl::Status TensorParallelGroup::RunOnRanks(const std::function<absl::Status(int rank)>& fn) {
  absl::MutexLock lock(&mu_);
  task_ = &fn;
  pending_ = world_size();
  ++generation_;
  auto done = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return pending_ == 0; };
  mu_.Await(absl::Condition(&done));
  task_ = nullptr;
  for (const absl::Status& status : statuses_) {
    if (!status.ok()) return status;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<TensorParallelKvCache>> TensorParallelGroup::NewKvCache(
    int64_t capacity) {
  // Owned by the handle at once, so that on error its destructor frees what was made.
  std::unique_ptr<TensorParallelKvCache> cache(
      new TensorParallelKvCache(this, std::vector<std::unique_ptr<KvCache>>(world_size())));
  VERDICT_RETURN_IF_ERROR(RunOnRanks([&](int r) -> absl::Status {
    VERDICT_ASSIGN_OR_RETURN(cache->caches_[r], ranks_[r]->slice->NewKvCache(capacity));
    return absl::OkStatus();
  }));
  return cache;
}

absl::Status TensorParallelGroup::SetHiddenProbe(absl::Span<const float> weight) {
  return RunOnRanks([&](int r) { return ranks_[r]->slice->SetHiddenProbe(weight); });
}

absl::Status TensorParallelGroup::Forward(const TensorParallelBatch& batch, ForwardResult* result) {
  if (batch.sequences.empty()) return absl::InvalidArgumentError("empty batch");
  std::vector<int64_t> lengths;
  for (size_t s = 0; s < batch.sequences.size(); ++s) {
    const TensorParallelKvCache* cache = batch.sequences[s].cache;
    if (cache == nullptr || cache->group_ != this) {
      return absl::InvalidArgumentError(
          absl::StrCat("sequence ", s, " of the batch has no cache of this tensor-parallel group"));
    }
    lengths.push_back(cache->length());
  }
  absl::Status status = RunOnRanks([&](int r) {
    ForwardBatch rank_batch;
    rank_batch.sequences.reserve(batch.sequences.size());
    for (const TensorParallelSequence& seq : batch.sequences) {
      rank_batch.sequences.push_back({seq.cache->rank_cache(r), seq.num_tokens});
    }
    batch.CopyAllButSequencesTo(&rank_batch);
    return ranks_[r]->slice->Forward(rank_batch, r == 0 ? result : &ranks_[r]->scratch);
  });
  if (!status.ok()) {
    // Ranks fail together (same validation, shared collectives), but should one rank have
    // advanced while another failed, put every rank back where the batch started.
    for (size_t s = 0; s < batch.sequences.size(); ++s) {
      for (auto& cache : batch.sequences[s].cache->caches_) {
        if (cache->length() > lengths[s]) cache->Truncate(lengths[s]).IgnoreError();
      }
    }
  }
  return status;
}

const Backend& TensorParallelGroup::backend(int rank) const { return *ranks_[rank]->backend; }

}  // namespace verdict::engine
