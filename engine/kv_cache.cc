// SPDX-License-Identifier: Apache-2.0
#include "engine/kv_cache.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace verdict::engine {

absl::StatusOr<std::unique_ptr<KvCache>> KvCache::Create(Backend* backend, const KvShape& shape,
                                                         int64_t capacity) {
  if (capacity <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("KV cache capacity must be positive, got ", capacity));
  }
  VERDICT_ASSIGN_OR_RETURN(std::unique_ptr<KvStorage> storage, backend->AllocateKv(shape, capacity));
  return std::unique_ptr<KvCache>(new KvCache(backend, shape, std::move(storage)));
}

absl::Status KvCache::Truncate(int64_t n) {
  if (n < 0 || n > length_) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot truncate a KV cache of length ", length_, " to ", n));
  }
  length_ = n;
  return absl::OkStatus();
}

absl::Status KvCache::CheckRoom(int64_t num_tokens) const {
  if (length_ + num_tokens > capacity()) {
    return absl::ResourceExhaustedError(
        absl::StrCat("KV cache capacity exceeded: ", length_, " cached + ", num_tokens,
                     " new tokens > capacity ", capacity()));
  }
  return absl::OkStatus();
}

absl::Status KvCache::CopyPrefixFrom(const KvCache& other, int64_t length) {
  if (other.shape_.num_layers != shape_.num_layers ||
      other.shape_.num_kv_heads != shape_.num_kv_heads || other.shape_.head_dim != shape_.head_dim) {
    return absl::InvalidArgumentError("cannot copy between KV caches of different shapes");
  }
  if (length < 0 || length > other.length_ || length > capacity()) {
    return absl::InvalidArgumentError(absl::StrCat("cannot copy ", length, " positions from a cache of length ",
                                                   other.length_, " into capacity ", capacity()));
  }
  backend_->CopyKv(*other.storage_, *storage_, length);
  length_ = length;
  return absl::OkStatus();
}

}  // namespace verdict::engine
