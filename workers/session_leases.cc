// SPDX-License-Identifier: Apache-2.0
#include "workers/session_leases.h"

#include <algorithm>

#include "absl/container/flat_hash_set.h"

namespace verdict::workers {
namespace {
constexpr size_t kRememberedExpiries = 16;
}  // namespace

void SessionLeases::Opened(uint64_t session_id, absl::Time now) {
  const uint32_t owner = OwnerOf(session_id);
  if (!enabled() || owner == 0) return;
  auto [it, added] = owners_.try_emplace(owner);
  if (added) it->second.expiry = now + default_lease_;
  it->second.opened.try_emplace(session_id, now);
}

void SessionLeases::Closed(uint64_t session_id) {
  auto it = owners_.find(OwnerOf(session_id));
  if (it != owners_.end()) it->second.opened.erase(session_id);
}

std::vector<uint64_t> SessionLeases::Renew(uint32_t owner, absl::Duration lease, absl::Span<const uint64_t> live,
                                           absl::Time now) {
  std::vector<uint64_t> abandoned;
  if (!enabled() || owner == 0) return abandoned;
  if (lease <= absl::ZeroDuration()) lease = default_lease_;
  Owner& o = owners_[owner];
  o.expiry = now + lease;
  const absl::flat_hash_set<uint64_t> held(live.begin(), live.end());
  for (const auto& [id, opened] : o.opened) {
    if (!held.contains(id) && opened + lease <= now) abandoned.push_back(id);
  }
  for (uint64_t id : abandoned) o.opened.erase(id);
  std::sort(abandoned.begin(), abandoned.end());
  return abandoned;
}

std::vector<uint32_t> SessionLeases::TakeExpired(absl::Time now) {
  std::vector<uint32_t> owners;
  for (const auto& [owner, o] : owners_) {
    if (o.expiry <= now) owners.push_back(owner);
  }
  for (uint32_t owner : owners) {
    owners_.erase(owner);
    expired_.push_back(owner);
    if (expired_.size() > kRememberedExpiries) expired_.pop_front();
  }
  std::sort(owners.begin(), owners.end());
  return owners;
}

absl::Time SessionLeases::NextExpiry() const {
  absl::Time next = absl::InfiniteFuture();
  for (const auto& [owner, o] : owners_) next = std::min(next, o.expiry);
  return next;
}

bool SessionLeases::RecentlyExpired(uint32_t owner) const {
  return std::find(expired_.begin(), expired_.end(), owner) != expired_.end();
}

}  // namespace verdict::workers
