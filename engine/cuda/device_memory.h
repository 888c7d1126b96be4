// SPDX-License-Identifier: Apache-2.0
// Memory management of the CUDA backend (internal to engine/cuda):
//   DevicePool   — a caching allocator: freed blocks go to per-size free lists and are reused, so
//                  steady-state steps never call cudaMalloc/cudaFree (which synchronise the device).
//   StepArena    — bump allocation of small per-op data for the current step (device or pinned
//                  host memory), reset at Synchronize(); chunks are kept for the next steps.
// All work runs on one stream, so memory returned to the pool while earlier kernels still use it
// is only handed out to kernels ordered after them: no extra synchronisation is needed.
// Not thread-safe: owned by the backend's engine thread.
#ifndef VERDICT_ENGINE_CUDA_DEVICE_MEMORY_H_
#define VERDICT_ENGINE_CUDA_DEVICE_MEMORY_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"

namespace verdict::engine::cuda {

class DevicePool;

// An allocation from a DevicePool; returns itself to the pool when destroyed.
class PoolAllocation {
 public:
  PoolAllocation(DevicePool* pool, void* ptr, size_t bytes, size_t rounded)
      : pool_(pool), ptr_(ptr), bytes_(bytes), rounded_(rounded) {}
  ~PoolAllocation();
  PoolAllocation(const PoolAllocation&) = delete;
  PoolAllocation& operator=(const PoolAllocation&) = delete;
  void* get() const { return ptr_; }
  size_t bytes() const { return bytes_; }

 private:
  DevicePool* pool_;
  void* ptr_;
  size_t bytes_;
  size_t rounded_;
};

class DevicePool {
 public:
  DevicePool() = default;
  ~DevicePool();  // frees cached blocks; every allocation must be gone
  DevicePool(const DevicePool&) = delete;
  DevicePool& operator=(const DevicePool&) = delete;

  // kResourceExhausted (with the sizes) when the device has no room even after the cache is freed.
  absl::StatusOr<std::unique_ptr<PoolAllocation>> Allocate(size_t bytes);
  // Gives every cached (free) block back to the driver.
  void ReleaseCached();

  size_t bytes_reserved() const { return bytes_reserved_; }
  size_t bytes_in_use() const { return bytes_in_use_; }

 private:
  friend class PoolAllocation;
  static size_t RoundUp(size_t bytes);
  void Free(void* ptr, size_t rounded);

  std::multimap<size_t, void*> free_blocks_;  // rounded size -> block
  size_t bytes_reserved_ = 0;
  size_t bytes_in_use_ = 0;
};

// Per-step bump allocator over chunks of device memory or pinned host memory.
class StepArena {
 public:
  enum class Kind { kDevice, kPinnedHost };
  explicit StepArena(Kind kind, size_t chunk_bytes = size_t{4} << 20)
      : kind_(kind), chunk_bytes_(chunk_bytes) {}
  ~StepArena();
  StepArena(const StepArena&) = delete;
  StepArena& operator=(const StepArena&) = delete;

  // 256-byte aligned room for `bytes`, valid until Reset().
  absl::StatusOr<void*> Allocate(size_t bytes);
  // Everything allocated since the last Reset() may be reused (call only when the stream is idle).
  void Reset();

 private:
  struct Chunk {
    void* base = nullptr;
    size_t size = 0;
  };
  Kind kind_;
  size_t chunk_bytes_;
  std::vector<Chunk> chunks_;
  size_t current_ = 0;  // chunk being filled
  size_t offset_ = 0;   // bytes used in chunks_[current_]
};

}  // namespace verdict::engine::cuda

#endif  // VERDICT_ENGINE_CUDA_DEVICE_MEMORY_H_
