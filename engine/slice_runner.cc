// SPDX-License-Identifier: Apache-2.0
#include "engine/slice_runner.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/check.h"
#include "common/status_macros.h"

namespace verdict::engine {
namespace {

// Checks that every sequence of `batch` has a cache made by `runner`, so it can be downcast.
absl::Status CheckCaches(const RunnerBatch& batch, const SliceRunner* runner) {
  for (size_t s = 0; s < batch.sequences.size(); ++s) {
    const SequenceCache* cache = batch.sequences[s].cache;
    if (cache == nullptr || cache->runner() != runner) {
      return absl::InvalidArgumentError(
          absl::StrCat("sequence ", s, " of the batch has no cache of this slice runner"));
    }
  }
  return absl::OkStatus();
}

// ---- One ModelSlice ----

class SingleSliceCache final : public SequenceCache {
 public:
  SingleSliceCache(const SliceRunner* runner, std::unique_ptr<KvCache> cache)
      : SequenceCache(runner), cache_(std::move(cache)) {}
  int64_t length() const override { return cache_->length(); }
  int64_t capacity() const override { return cache_->capacity(); }
  size_t size_bytes() const override { return cache_->size_bytes(); }
  absl::Status Truncate(int64_t n) override { return cache_->Truncate(n); }
  KvCache* kv() { return cache_.get(); }

 private:
  std::unique_ptr<KvCache> cache_;
};

class SingleSliceRunner final : public SliceRunner {
 public:
  explicit SingleSliceRunner(ModelSlice* slice) : slice_(slice) {}

  const LlamaConfig& config() const override { return slice_->config(); }
  int64_t layer_begin() const override { return slice_->layer_begin(); }
  int64_t layer_end() const override { return slice_->layer_end(); }
  int world_size() const override { return 1; }

  absl::StatusOr<std::unique_ptr<SequenceCache>> NewCache(int64_t capacity) override {
    VERDICT_ASSIGN_OR_RETURN(std::unique_ptr<KvCache> cache, slice_->NewKvCache(capacity));
    return std::unique_ptr<SequenceCache>(new SingleSliceCache(this, std::move(cache)));
  }

  absl::Status SetHiddenProbe(absl::Span<const float> weight) override {
    return slice_->SetHiddenProbe(weight);
  }

  absl::Status Forward(const RunnerBatch& batch, ForwardResult* result) override {
    VERDICT_RETURN_IF_ERROR(CheckCaches(batch, this));
    forward_.sequences.clear();
    for (const RunnerSequence& seq : batch.sequences) {
      forward_.sequences.push_back({static_cast<SingleSliceCache*>(seq.cache)->kv(), seq.num_tokens});
    }
    batch.CopyAllButSequencesTo(&forward_);
    return slice_->Forward(forward_, result);
  }

 private:
  ModelSlice* slice_;
  ForwardBatch forward_;  // reused across calls (its sequence vector's memory)
};

// ---- A TensorParallelGroup ----

class TensorParallelCache final : public SequenceCache {
 public:
  TensorParallelCache(const SliceRunner* runner, std::unique_ptr<TensorParallelKvCache> cache)
      : SequenceCache(runner), cache_(std::move(cache)) {}
  int64_t length() const override { return cache_->length(); }
  int64_t capacity() const override { return cache_->capacity(); }
  size_t size_bytes() const override { return cache_->size_bytes(); }
  absl::Status Truncate(int64_t n) override { return cache_->Truncate(n); }
  TensorParallelKvCache* group_cache() { return cache_.get(); }

 private:
  std::unique_ptr<TensorParallelKvCache> cache_;
};

class TensorParallelRunner final : public SliceRunner {
 public:
  explicit TensorParallelRunner(std::unique_ptr<TensorParallelGroup> group) : group_(std::move(group)) {}

  const LlamaConfig& config() const override { return group_->slice(0).config(); }
  int64_t layer_begin() const override { return group_->slice(0).layer_begin(); }
  int64_t layer_end() const override { return group_->slice(0).layer_end(); }
  int world_size() const override { return group_->world_size(); }

  absl::StatusOr<std::unique_ptr<SequenceCache>> NewCache(int64_t capacity) override {
    VERDICT_ASSIGN_OR_RETURN(std::unique_ptr<TensorParallelKvCache> cache, group_->NewKvCache(capacity));
    return std::unique_ptr<SequenceCache>(new TensorParallelCache(this, std::move(cache)));
  }

  absl::Status SetHiddenProbe(absl::Span<const float> weight) override {
    return group_->SetHiddenProbe(weight);
  }

  absl::Status Forward(const RunnerBatch& batch, ForwardResult* result) override {
    VERDICT_RETURN_IF_ERROR(CheckCaches(batch, this));
    forward_.sequences.clear();
    for (const RunnerSequence& seq : batch.sequences) {
      forward_.sequences.push_back(
          {static_cast<TensorParallelCache*>(seq.cache)->group_cache(), seq.num_tokens});
    }
    batch.CopyAllButSequencesTo(&forward_);
    return group_->Forward(forward_, result);
  }

 private:
  std::unique_ptr<TensorParallelGroup> group_;
  TensorParallelBatch forward_;  // reused across calls (its sequence vector's memory)
};

}  // namespace

std::unique_ptr<SliceRunner> RunSingleSlice(ModelSlice* slice) {
  VERDICT_CHECK(slice != nullptr);
  return std::make_unique<SingleSliceRunner>(slice);
}

std::unique_ptr<SliceRunner> RunTensorParallel(std::unique_ptr<TensorParallelGroup> group) {
  VERDICT_CHECK(group != nullptr);
  return std::make_unique<TensorParallelRunner>(std::move(group));
}

}  // namespace verdict::engine
