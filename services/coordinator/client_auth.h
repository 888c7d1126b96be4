// SPDX-License-Identifier: Apache-2.0
// Who may use the client APIs (gRPC and HTTP alike) and how much: the caller's API key from its
// `authorization` value, the key's own allow-list of verification policies (replacing the
// server's), and its session limit. Without a key ring every caller is anonymous and only the
// server's limits apply. Counts per key name (never the key) feed /metrics.
#ifndef VERDICT_SERVICES_COORDINATOR_CLIENT_AUTH_H_
#define VERDICT_SERVICES_COORDINATOR_CLIENT_AUTH_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "security/api_keys.h"
#include "spec/speculation_params.h"

namespace verdict::services {

class ClientAuth {
 public:
  // `keys` (null: no key needed) must outlive this.
  explicit ClientAuth(const security::KeyRing* keys) : keys_(keys) {}

  bool required() const { return keys_ != nullptr; }

  // The caller of a request whose `authorization` value (gRPC metadata or HTTP header) is given:
  // its key, or null when no key is needed. kUnauthenticated when the key is missing or not valid.
  absl::StatusOr<std::shared_ptr<const security::ApiKey>> Authenticate(absl::string_view authorization);

  // Admits a generation by `key` (null: anonymous) with `policy`: kPermissionDenied when the key's
  // allow-list excludes the policy (EXACT is always allowed), kResourceExhausted when the key holds
  // its limit of sessions. The returned slot holds one of the key's sessions until destroyed.
  absl::StatusOr<std::shared_ptr<void>> Admit(const std::shared_ptr<const security::ApiKey>& key,
                                              spec::Policy policy);

  // Counts a request of key `name` refused elsewhere (the policy check of Prepare).
  void NoteDenied(const std::string& name);

  struct KeyCounts {
    std::string name;
    int64_t requests = 0;  // admitted generations
    int64_t denied = 0;    // refused by the key's policy or session limit
    int64_t sessions = 0;  // held now
  };
  std::vector<KeyCounts> Snapshot() const;
  int64_t unauthenticated() const;

 private:
  void Release(const std::string& name);

  const security::KeyRing* keys_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, KeyCounts> counts_ ABSL_GUARDED_BY(mu_);
  int64_t unauthenticated_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace verdict::services

#endif  // VERDICT_SERVICES_COORDINATOR_CLIENT_AUTH_H_
