// SPDX-License-Identifier: Apache-2.0
#include "engine/cuda/device_memory.h"

#include <cuda_runtime_api.h>

#include "absl/strings/str_cat.h"
#include "engine/cuda/cuda_status.h"

namespace verdict::engine::cuda {

PoolAllocation::~PoolAllocation() { pool_->Free(ptr_, rounded_); }

DevicePool::~DevicePool() { ReleaseCached(); }

size_t DevicePool::RoundUp(size_t bytes) {
  // Small blocks in 512-byte steps, large ones in 2 MiB steps (the driver's granularity), so
  // steady-state requests of the same shape land in the same free list.
  constexpr size_t kSmall = 512;
  constexpr size_t kLarge = size_t{2} << 20;
  if (bytes == 0) bytes = 1;
  if (bytes < (size_t{1} << 20)) return (bytes + kSmall - 1) / kSmall * kSmall;
  return (bytes + kLarge - 1) / kLarge * kLarge;
}

absl::StatusOr<std::unique_ptr<PoolAllocation>> DevicePool::Allocate(size_t bytes) {
  const size_t rounded = RoundUp(bytes);
  if (auto it = free_blocks_.find(rounded); it != free_blocks_.end()) {
    void* ptr = it->second;
    free_blocks_.erase(it);
    bytes_in_use_ += rounded;
    return std::make_unique<PoolAllocation>(this, ptr, bytes, rounded);
  }
  void* ptr = nullptr;
  cudaError_t error = cudaMalloc(&ptr, rounded);
  if (error == cudaErrorMemoryAllocation && !free_blocks_.empty()) {
    (void)cudaGetLastError();  // clear the non-sticky allocation error
    ReleaseCached();
    error = cudaMalloc(&ptr, rounded);
  }
  if (error != cudaSuccess) {
    (void)cudaGetLastError();
    size_t free_bytes = 0, total_bytes = 0;
    (void)cudaMemGetInfo(&free_bytes, &total_bytes);
    return absl::ResourceExhaustedError(absl::StrCat(
        "cannot allocate ", rounded, " bytes of GPU memory (", cudaGetErrorString(error), "; ",
        free_bytes, " of ", total_bytes, " bytes free, ", bytes_reserved_,
        " held by this backend)"));
  }
  bytes_reserved_ += rounded;
  bytes_in_use_ += rounded;
  return std::make_unique<PoolAllocation>(this, ptr, bytes, rounded);
}

void DevicePool::Free(void* ptr, size_t rounded) {
  bytes_in_use_ -= rounded;
  free_blocks_.emplace(rounded, ptr);
}

void DevicePool::ReleaseCached() {
  for (auto& [size, ptr] : free_blocks_) {
    (void)cudaFree(ptr);
    bytes_reserved_ -= size;
  }
  free_blocks_.clear();
}

StepArena::~StepArena() {
  for (Chunk& c : chunks_) {
    if (kind_ == Kind::kDevice) {
      (void)cudaFree(c.base);
    } else {
      (void)cudaFreeHost(c.base);
    }
  }
}

absl::StatusOr<void*> StepArena::Allocate(size_t bytes) {
  constexpr size_t kAlign = 256;
  bytes = (bytes + kAlign - 1) / kAlign * kAlign;
  while (current_ < chunks_.size()) {
    if (offset_ + bytes <= chunks_[current_].size) {
      void* ptr = static_cast<char*>(chunks_[current_].base) + offset_;
      offset_ += bytes;
      return ptr;
    }
    ++current_;
    offset_ = 0;
  }
  Chunk chunk;
  chunk.size = bytes > chunk_bytes_ ? bytes : chunk_bytes_;
  if (kind_ == Kind::kDevice) {
    VERDICT_CUDA_RETURN_IF_ERROR(cudaMalloc(&chunk.base, chunk.size), "device arena chunk");
  } else {
    VERDICT_CUDA_RETURN_IF_ERROR(cudaMallocHost(&chunk.base, chunk.size), "pinned arena chunk");
  }
  chunks_.push_back(chunk);
  current_ = chunks_.size() - 1;
  offset_ = bytes;
  return chunk.base;
}

void StepArena::Reset() {
  current_ = 0;
  offset_ = 0;
}

}  // namespace verdict::engine::cuda
