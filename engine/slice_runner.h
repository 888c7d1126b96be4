// SPDX-License-Identifier: Apache-2.0
// What a target shard runs its layer range on: one ModelSlice on one backend, or a
// TensorParallelGroup (the same slice split across the ranks of several backends, one per GPU).
// A SliceRunner hides which: it makes per-sequence caches (SequenceCache) and runs ragged batches
// over them with the semantics of ModelSlice::Forward (engine/model.h). Both runners give the same
// results up to the summation order of the split products (engine/tensor_parallel_test.cc).
//
// Thread-safety: a runner and its caches are used from one thread at a time (the engine thread).
#ifndef VERDICT_ENGINE_SLICE_RUNNER_H_
#define VERDICT_ENGINE_SLICE_RUNNER_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/model.h"
#include "engine/model_config.h"
#include "engine/tensor_parallel.h"

namespace verdict::engine {

class SliceRunner;

// One sequence's KV cache for a runner's layers (a KvCache, or one per rank). Made by
// SliceRunner::NewCache; must be destroyed before its runner.
class SequenceCache {
 public:
  virtual ~SequenceCache() = default;
  SequenceCache(const SequenceCache&) = delete;
  SequenceCache& operator=(const SequenceCache&) = delete;

  virtual int64_t length() const = 0;
  virtual int64_t capacity() const = 0;
  // The memory it holds (allocated at its full capacity when made), on every rank.
  virtual size_t size_bytes() const = 0;
  // Drops every position >= n (metadata only). Errors: kInvalidArgument if n < 0 or n > length();
  // then nothing changes.
  virtual absl::Status Truncate(int64_t n) = 0;
  // The runner that made this cache.
  const SliceRunner* runner() const { return runner_; }

 protected:
  explicit SequenceCache(const SliceRunner* runner) : runner_(runner) {}

 private:
  const SliceRunner* runner_;
};

// A batch of runner caches (engine/model.h's BatchOf).
using RunnerBatch = BatchOf<SequenceCache>;
using RunnerSequence = RunnerBatch::Sequence;

class SliceRunner {
 public:
  virtual ~SliceRunner() = default;

  // The whole model's config and this slice's layer range (as ModelSlice's).
  virtual const LlamaConfig& config() const = 0;
  virtual int64_t layer_begin() const = 0;
  virtual int64_t layer_end() const = 0;
  bool is_first() const { return layer_begin() == 0; }
  bool is_last() const { return layer_end() == config().num_layers; }
  // Ranks the layers are split across (1: a single slice).
  virtual int world_size() const = 0;

  // A cache of up to `capacity` positions. Errors: as ModelSlice::NewKvCache (with tensor
  // parallelism the first failing rank's; nothing is left allocated).
  virtual absl::StatusOr<std::unique_ptr<SequenceCache>> NewCache(int64_t capacity) = 0;

  // ModelSlice::SetHiddenProbe (on every rank). Errors: as that.
  virtual absl::Status SetHiddenProbe(absl::Span<const float> weight) = 0;

  // Runs the batch; on success every sequence's cache has grown by its num_tokens. Errors: as
  // ModelSlice::Forward, plus kInvalidArgument for a cache of another runner. On error every cache
  // keeps its length.
  virtual absl::Status Forward(const RunnerBatch& batch, ForwardResult* result) = 0;
};

// Runs `slice` (not owned; must outlive the runner) on its backend.
std::unique_ptr<SliceRunner> RunSingleSlice(ModelSlice* slice);
// Runs the slice split across `group`'s ranks (owned by the runner). REQUIRES: group != nullptr.
std::unique_ptr<SliceRunner> RunTensorParallel(std::unique_ptr<TensorParallelGroup> group);

}  // namespace verdict::engine

#endif  // VERDICT_ENGINE_SLICE_RUNNER_H_
