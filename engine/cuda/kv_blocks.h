// SPDX-License-Identifier: Apache-2.0
// The paged KV cache of the CUDA backend (internal to engine/cuda): one KvBlockPool per cache shape
// hands out fixed-size blocks (every layer of a slice for `block_positions` positions, keys then
// values, in the layout of cuda_math::KvBlockLayout); a CudaKvStorage is one sequence's block table,
// filled as the sequence grows and returned to the pool when the storage is destroyed. Sessions of
// any length share the pool without fragmentation. Not thread-safe (engine thread).
#ifndef VERDICT_ENGINE_CUDA_KV_BLOCKS_H_
#define VERDICT_ENGINE_CUDA_KV_BLOCKS_H_

#include <cuda_runtime_api.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/backend.h"
#include "engine/cuda/attention_math.h"
#include "engine/cuda/device_memory.h"
#include "engine/cuda/kernels.h"

namespace verdict::engine::cuda {

class KvBlockPool {
 public:
  KvBlockPool(DevicePool* pool, const cuda_math::KvBlockLayout& layout, StorageType type);

  const cuda_math::KvBlockLayout& layout() const { return layout_; }
  StorageType type() const { return type_; }
  size_t block_bytes() const { return block_bytes_; }
  // A free block's device address; grows the pool by a chunk when none is free.
  absl::StatusOr<uint64_t> Take();
  void Return(uint64_t block) { free_.push_back(block); }
  int64_t blocks_total() const { return total_; }
  int64_t blocks_in_use() const { return total_ - static_cast<int64_t>(free_.size()); }

 private:
  DevicePool* pool_;
  cuda_math::KvBlockLayout layout_;
  StorageType type_;
  size_t block_bytes_;
  int64_t blocks_per_chunk_;
  std::vector<std::unique_ptr<PoolAllocation>> chunks_;
  std::vector<uint64_t> free_;
  int64_t total_ = 0;
};

class CudaKvStorage final : public KvStorage {
 public:
  static absl::StatusOr<std::unique_ptr<CudaKvStorage>> Create(KvBlockPool* blocks,
                                                               DevicePool* pool, int64_t capacity);
  ~CudaKvStorage() override;

  int64_t capacity() const override { return capacity_; }
  // Bytes of the blocks held now (the cache grows block by block).
  size_t size_bytes() const override { return host_table_.size() * blocks_->block_bytes(); }

  KvBlockPool* blocks() const { return blocks_; }
  const uint64_t* device_table() const { return static_cast<const uint64_t*>(table_->get()); }
  // A host-to-device copy the caller must enqueue (from pinned staging memory).
  struct TableCopy {
    void* device;
    const void* staged;
    size_t bytes;
  };
  // Makes positions [0, positions) backed by blocks. New block-table entries are staged in
  // `staging` (pinned memory that must stay valid until the copy ran); *copy receives the copy to
  // enqueue (bytes == 0 when the table did not change).
  absl::Status EnsurePositions(int64_t positions, StepArena* staging, TableCopy* copy);
  uint64_t block(int64_t index) const { return host_table_[index]; }

 private:
  CudaKvStorage(KvBlockPool* blocks, int64_t capacity, std::unique_ptr<PoolAllocation> table)
      : blocks_(blocks), capacity_(capacity), table_(std::move(table)) {}

  KvBlockPool* blocks_;
  int64_t capacity_;
  std::unique_ptr<PoolAllocation> table_;  // device copy of host_table_ (capacity entries)
  std::vector<uint64_t> host_table_;
};

}  // namespace verdict::engine::cuda

#endif  // VERDICT_ENGINE_CUDA_KV_BLOCKS_H_
