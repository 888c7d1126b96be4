// SPDX-License-Identifier: Apache-2.0
// The key/value cache of one sequence for the layers of one model slice: backend storage of fixed
// capacity plus the number of committed positions. Rolling back rejected draft tokens is
// Truncate(n), a metadata operation. Not thread-safe: owned by the engine thread.
#ifndef VERDICT_ENGINE_KV_CACHE_H_
#define VERDICT_ENGINE_KV_CACHE_H_

#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/backend.h"

namespace verdict::engine {

class KvCache {
 public:
  // Errors: kInvalidArgument for a non-positive capacity; kResourceExhausted when the backend
  // cannot allocate the storage.
  static absl::StatusOr<std::unique_ptr<KvCache>> Create(Backend* backend, const KvShape& shape,
                                                         int64_t capacity);

  int64_t length() const { return length_; }
  int64_t capacity() const { return storage_->capacity(); }
  const KvShape& shape() const { return shape_; }
  size_t size_bytes() const { return storage_->size_bytes(); }

  // Drops every position >= n. REQUIRES nothing; errors: kInvalidArgument if n < 0 or n > length().
  // On error the cache is unchanged.
  absl::Status Truncate(int64_t n);

  // kResourceExhausted (naming both numbers) if `num_tokens` more positions do not fit.
  absl::Status CheckRoom(int64_t num_tokens) const;

  // Makes this cache a copy of `other`'s first `length` positions (prefix sharing / forking).
  // Errors: kInvalidArgument for a different shape or length > other.length() or > capacity().
  absl::Status CopyPrefixFrom(const KvCache& other, int64_t length);

  // Used by the model after it wrote `num_tokens` new positions.
  void Advance(int64_t num_tokens) { length_ += num_tokens; }
  KvStorage* storage() { return storage_.get(); }

 private:
  KvCache(Backend* backend, const KvShape& shape, std::unique_ptr<KvStorage> storage)
      : backend_(backend), shape_(shape), storage_(std::move(storage)) {}

  Backend* backend_;
  KvShape shape_;
  std::unique_ptr<KvStorage> storage_;
  int64_t length_ = 0;
};

}  // namespace verdict::engine

#endif  // VERDICT_ENGINE_KV_CACHE_H_
