// SPDX-License-Identifier: Apache-2.0
// Keeps a coordinator's sessions alive on its workers: renews the coordinator incarnation's lease
// (workers/session_leases.h) on the draft worker and every target shard at once and then every
// quarter of the lease, from a thread of its own, so three renewals in a row can be lost before a
// worker releases anything. Each renewal names the sessions the coordinator holds, so a worker also
// releases those whose close was lost. When the coordinator process dies the renewals stop and the
// workers free its sessions and their KV memory one lease later.
#ifndef VERDICT_COORDINATOR_LEASE_RENEWER_H_
#define VERDICT_COORDINATOR_LEASE_RENEWER_H_

#include <atomic>
#include <cstdint>
#include <thread>

#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "clients/worker_clients.h"
#include "coordinator/coordinator.h"

namespace verdict::coordinator {

class LeaseRenewer {
 public:
  // `coordinator`, `draft` (may be null) and `target` must outlive the renewer. `lease` > 0.
  LeaseRenewer(Coordinator* coordinator, absl::Duration lease, clients::DraftClient* draft,
               clients::TargetClient* target);
  // Stops renewing (the workers keep the sessions until the lease runs out or they are closed).
  ~LeaseRenewer();

  int64_t renewals() const { return renewals_.load(); }

 private:
  void Run();

  Coordinator* coordinator_;
  const absl::Duration lease_;
  clients::DraftClient* draft_;
  clients::TargetClient* target_;
  std::atomic<int64_t> renewals_{0};
  absl::Notification stop_;
  std::thread thread_;
};

}  // namespace verdict::coordinator

#endif  // VERDICT_COORDINATOR_LEASE_RENEWER_H_
