// SPDX-License-Identifier: Apache-2.0
// Tensor parallelism inside one target shard: a group of W ranks (one per GPU), each holding 1/W of
// every layer of a model slice (ModelSlice with a TensorParallelConfig) on its own Backend, linked
// by Communicators. The group owns one thread per rank; a rank's backend, slice and KV storage are
// touched only by that thread (a CUDA backend requires it), and a Forward() runs on all ranks at once.
// Every rank computes the same logits (the all-reduce is bit-identical on every rank); the group
// returns rank 0's.
//
// Thread-safety: a TensorParallelGroup and its caches are used from one thread at a time (the
// shard's engine thread); the rank threads are internal.
#ifndef VERDICT_ENGINE_TENSOR_PARALLEL_H_
#define VERDICT_ENGINE_TENSOR_PARALLEL_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "engine/backend.h"
#include "engine/communicator.h"
#include "engine/io/weight_source.h"
#include "engine/kv_cache.h"
#include "engine/model.h"
#include "engine/model_config.h"

namespace verdict::engine {

class TensorParallelGroup;

// One sequence's KV caches, one per rank (each holds that rank's kv heads); their lengths move
// together. Made by TensorParallelGroup::NewKvCache; must be destroyed before its group.
class TensorParallelKvCache {
 public:
  ~TensorParallelKvCache();  // frees each rank's storage on that rank's thread
  TensorParallelKvCache(const TensorParallelKvCache&) = delete;
  TensorParallelKvCache& operator=(const TensorParallelKvCache&) = delete;

  int64_t length() const { return caches_[0]->length(); }
  int64_t capacity() const { return caches_[0]->capacity(); }
  size_t size_bytes() const {  // every rank's
    size_t bytes = 0;
    for (const auto& cache : caches_) bytes += cache->size_bytes();
    return bytes;
  }
  // Drops every position >= n on every rank (metadata only, like KvCache::Truncate).
  // Errors: kInvalidArgument if n < 0 or n > length(); then nothing changes.
  absl::Status Truncate(int64_t n);
  // The cache of `rank`, for that rank's thread.
  KvCache* rank_cache(int rank) { return caches_[rank].get(); }

 private:
  friend class TensorParallelGroup;
  TensorParallelKvCache(TensorParallelGroup* group, std::vector<std::unique_ptr<KvCache>> caches)
      : group_(group), caches_(std::move(caches)) {}

  TensorParallelGroup* group_;
  std::vector<std::unique_ptr<KvCache>> caches_;  // [world size]
};

// A batch of group caches (engine/model.h's BatchOf).
using TensorParallelBatch = BatchOf<TensorParallelKvCache>;
using TensorParallelSequence = TensorParallelBatch::Sequence;

class TensorParallelGroup {
 public:
  // Makes rank `rank`'s backend; called on that rank's thread.
  using BackendFactory = std::function<absl::StatusOr<std::unique_ptr<Backend>>(int rank)>;
  // Makes the communicators of ranks 0..world_size-1 (in rank order); called on the caller's thread.
  using CommunicatorFactory =
      std::function<absl::StatusOr<std::vector<std::unique_ptr<Communicator>>>(int world_size)>;

  // Starts `world_size` rank threads, each creating its backend and its share of the slice `range`
  // of the model (ModelSlice::Create with the rank's communicator). `weights` must outlive the
  // group. `communicators` defaults to in-process ones (CreateThreadCommunicators).
  // Errors: kInvalidArgument for world_size < 1 or a wrong number of communicators; otherwise
  // those of the factories and of ModelSlice::Create (the first failing rank's).
  static absl::StatusOr<std::unique_ptr<TensorParallelGroup>> Create(
      const LlamaConfig& config, const WeightSource& weights, SliceRange range, int world_size,
      BackendFactory backends, CommunicatorFactory communicators = nullptr);
  ~TensorParallelGroup();  // destroys each rank's slice and backend on its thread, then joins
  TensorParallelGroup(const TensorParallelGroup&) = delete;
  TensorParallelGroup& operator=(const TensorParallelGroup&) = delete;

  int world_size() const { return static_cast<int>(ranks_.size()); }
  // Rank `rank`'s backend (driven by that rank's thread; read only thread-safe figures from it).
  const Backend& backend(int rank) const;
  // Rank `rank`'s slice, for its metadata (config, sizes, local head counts); do not run it.
  const ModelSlice& slice(int rank) const { return *ranks_[rank]->slice; }

  // A sequence's caches on every rank, up to `capacity` positions. Errors: as
  // ModelSlice::NewKvCache (the first failing rank's); nothing is left allocated.
  absl::StatusOr<std::unique_ptr<TensorParallelKvCache>> NewKvCache(int64_t capacity);

  // ModelSlice::SetHiddenProbe on every rank (the final hidden states are replicated, so every
  // rank computes the same probe values; rank 0's are returned).
  absl::Status SetHiddenProbe(absl::Span<const float> weight);

  // Runs the batch on every rank; `result` gets rank 0's result. Errors: kInvalidArgument for an
  // empty batch or a cache of another group, else as ModelSlice::Forward (the first failing rank's,
  // including a communicator's error). On error every cache keeps its length.
  absl::Status Forward(const TensorParallelBatch& batch, ForwardResult* result);

 private:
  struct Rank {
    std::unique_ptr<Communicator> comm;
    std::unique_ptr<Backend> backend;
    std::unique_ptr<ModelSlice> slice;
    ForwardResult scratch;  // result of a rank > 0 (equal to rank 0's), kept to reuse its memory
    std::thread thread;
  };
  friend class TensorParallelKvCache;

  TensorParallelGroup() = default;
  // Runs fn(rank) on every rank's thread and waits for all; returns the first error in rank order.
  absl::Status RunOnRanks(const std::function<absl::Status(int rank)>& fn);
  void RankMain(int rank);

  std::vector<std::unique_ptr<Rank>> ranks_;

  absl::Mutex mu_;
  const std::function<absl::Status(int)>* task_ ABSL_GUARDED_BY(mu_) = nullptr;
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;  // incremented per task
  int pending_ ABSL_GUARDED_BY(mu_) = 0;          // ranks still running the current task
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<absl::Status> statuses_;  // [rank]: written by the rank's thread while pending_ > 0
};

}  // namespace verdict::engine

#endif  // VERDICT_ENGINE_TENSOR_PARALLEL_H_
