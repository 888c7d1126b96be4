// SPDX-License-Identifier: Apache-2.0
// Coordinator leases on a worker's sessions. The high 32 bits of a session id name the
// coordinator incarnation that opened it (its owner, coordinator::CoordinatorOptions::incarnation).
// A live coordinator renews its lease every so often, naming the sessions it still holds:
//  - when an owner's lease runs out (the coordinator died or was cut off) the worker releases every
//    session of that owner;
//  - a session the renewal does not name and that was opened at least one lease ago is released
//    too: the coordinator finished it and its close was lost on the way.
// So no coordinator failure and no lost message leaves sessions and KV memory behind for longer
// than about a lease. Owner 0 (ids below 2^32: in-process callers and tests) holds no lease and is
// never released.
//
// Plain bookkeeping with the time passed in; not thread-safe (an engine thread owns it).
#ifndef VERDICT_WORKERS_SESSION_LEASES_H_
#define VERDICT_WORKERS_SESSION_LEASES_H_

#include <cstdint>
#include <deque>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/time/time.h"
#include "absl/types/span.h"

namespace verdict::workers {

class SessionLeases {
 public:
  static uint32_t OwnerOf(uint64_t session_id) { return static_cast<uint32_t>(session_id >> 32); }

  // `default_lease`: how long an owner's sessions live without a renewal that names its own
  // length (an owner's first session starts it). Zero or less: leases are off.
  explicit SessionLeases(absl::Duration default_lease) : default_lease_(default_lease) {}

  bool enabled() const { return default_lease_ > absl::ZeroDuration(); }

  // A session opened; an owner without a lease gets the default one.
  void Opened(uint64_t session_id, absl::Time now);
  void Closed(uint64_t session_id);
  // The owner's lease now lasts until now + `lease` (the default when `lease` <= 0). Returns the
  // owner's sessions that `live` (the ones the coordinator holds) does not name and that were
  // opened at least a lease ago; they are forgotten, the caller releases them.
  std::vector<uint64_t> Renew(uint32_t owner, absl::Duration lease, absl::Span<const uint64_t> live, absl::Time now);
  // Owners whose lease ran out by `now`; they and their sessions are forgotten (the caller
  // releases the sessions; a later renewal starts afresh).
  std::vector<uint32_t> TakeExpired(absl::Time now);
  // When the next lease runs out (InfiniteFuture when none is held).
  absl::Time NextExpiry() const;
  // Whether `owner`'s sessions were released recently for an expired lease (error messages).
  bool RecentlyExpired(uint32_t owner) const;

 private:
  struct Owner {
    absl::Time expiry;
    absl::flat_hash_map<uint64_t, absl::Time> opened;  // session id -> when it opened
  };

  absl::Duration default_lease_;
  absl::flat_hash_map<uint32_t, Owner> owners_;
  std::deque<uint32_t> expired_;  // the last few owners that expired, oldest first
};

}  // namespace verdict::workers

#endif  // VERDICT_WORKERS_SESSION_LEASES_H_
