// SPDX-License-Identifier: Apache-2.0
#include "engine/cuda/kv_blocks.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace verdict::engine::cuda {
namespace {
constexpr size_t kChunkBytes = size_t{64} << 20;
}  // namespace

KvBlockPool::KvBlockPool(DevicePool* pool, const cuda_math::KvBlockLayout& layout, StorageType type)
    : pool_(pool),
      layout_(layout),
      type_(type),
      block_bytes_(static_cast<size_t>(layout.ElementsPerBlock()) * ElementBytes(type)),
      blocks_per_chunk_(std::max<int64_t>(1, static_cast<int64_t>(kChunkBytes / block_bytes_))) {}

absl::StatusOr<uint64_t> KvBlockPool::Take() {
  if (free_.empty()) {
    VERDICT_ASSIGN_OR_RETURN(auto chunk, pool_->Allocate(blocks_per_chunk_ * block_bytes_));
    const uint64_t base = reinterpret_cast<uint64_t>(chunk->get());
    for (int64_t i = blocks_per_chunk_ - 1; i >= 0; --i) free_.push_back(base + i * block_bytes_);
    total_ += blocks_per_chunk_;
    chunks_.push_back(std::move(chunk));
  }
  const uint64_t block = free_.back();
  free_.pop_back();
  return block;
}

absl::StatusOr<std::unique_ptr<CudaKvStorage>> CudaKvStorage::Create(KvBlockPool* blocks,
                                                                     DevicePool* pool,
                                                                     int64_t capacity) {
  const int64_t entries = (capacity + blocks->layout().block_positions - 1) /
                          blocks->layout().block_positions;
  VERDICT_ASSIGN_OR_RETURN(auto table, pool->Allocate(entries * sizeof(uint64_t)));
  return std::unique_ptr<CudaKvStorage>(new CudaKvStorage(blocks, capacity, std::move(table)));
}

CudaKvStorage::~CudaKvStorage() {
  for (uint64_t block : host_table_) blocks_->Return(block);
}

absl::Status CudaKvStorage::EnsurePositions(int64_t positions, StepArena* staging,
                                            TableCopy* copy) {
  *copy = TableCopy{nullptr, nullptr, 0};
  if (positions > capacity_) {
    return absl::ResourceExhaustedError(
        absl::StrCat("KV cache capacity exceeded: ", positions, " > ", capacity_));
  }
  const int64_t needed = (positions + blocks_->layout().block_positions - 1) /
                         blocks_->layout().block_positions;
  const int64_t have = static_cast<int64_t>(host_table_.size());
  if (needed <= have) return absl::OkStatus();
  for (int64_t i = have; i < needed; ++i) {
    absl::StatusOr<uint64_t> block = blocks_->Take();
    if (!block.ok()) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "KV cache pool exhausted growing a sequence to ", positions, " positions: ",
          block.status().message()));
    }
    host_table_.push_back(*block);
  }
  const size_t bytes = (needed - have) * sizeof(uint64_t);
  VERDICT_ASSIGN_OR_RETURN(void* pinned, staging->Allocate(bytes));
  std::memcpy(pinned, host_table_.data() + have, bytes);
  *copy = TableCopy{static_cast<uint64_t*>(table_->get()) + have, pinned, bytes};
  return absl::OkStatus();
}

}  // namespace verdict::engine::cuda
