// SPDX-License-Identifier: Apache-2.0
#include "services/coordinator/client_auth.h"

#include <algorithm>
#include <cstdio>

#include "absl/strings/str_cat.h"

namespace verdict::services {
namespace {

bool IsPowerOfTen(int64_t n) {
  while (n >= 10 && n % 10 == 0) n /= 10;
  return n == 1;
}

}  // namespace

absl::StatusOr<std::shared_ptr<const security::ApiKey>> ClientAuth::Authenticate(absl::string_view authorization) {
  if (keys_ == nullptr) return std::shared_ptr<const security::ApiKey>();
  absl::StatusOr<std::shared_ptr<const security::ApiKey>> key =
      keys_->Authenticate(security::BearerToken(authorization));
  if (!key.ok()) {
    absl::MutexLock lock(&mu_);
    ++unauthenticated_;
    // A line at the 1st, 10th, 100th, ... refusal: visible, but no flood from a scanner.
    if (IsPowerOfTen(unauthenticated_)) {
      std::fprintf(stderr, "verdict-coordinator: %lld requests without a valid API key so far (latest: %s)\n",
                   static_cast<long long>(unauthenticated_), std::string(key.status().message()).c_str());
    }
  }
  return key;
}

absl::StatusOr<std::shared_ptr<void>> ClientAuth::Admit(const std::shared_ptr<const security::ApiKey>& key,
                                                       spec::Policy policy) {
  if (key == nullptr) return std::shared_ptr<void>();
  absl::MutexLock lock(&mu_);
  KeyCounts& c = counts_[key->name];
  c.name = key->name;
  if (key->allowed_policies.has_value() && policy != spec::Policy::kExact &&
      std::find(key->allowed_policies->begin(), key->allowed_policies->end(), policy) == key->allowed_policies->end()) {
    ++c.denied;
    std::fprintf(stderr, "verdict-coordinator: API key \"%s\" refused the %s policy\n", key->name.c_str(),
                 std::string(spec::PolicyName(policy)).c_str());
    return absl::PermissionDeniedError(
        absl::StrCat("the API key \"", key->name, "\" may not use the ", spec::PolicyName(policy), " verification policy"));
  }
  if (key->max_sessions > 0 && c.sessions >= key->max_sessions) {
    ++c.denied;
    std::fprintf(stderr, "verdict-coordinator: API key \"%s\" is at its limit of %d sessions\n", key->name.c_str(),
                 key->max_sessions);
    return absl::ResourceExhaustedError(absl::StrCat("the API key \"", key->name, "\" holds its limit of ",
                                                     key->max_sessions, " sessions; retry when one finishes"));
  }
  ++c.sessions;
  ++c.requests;
  const std::string name = key->name;
  return std::shared_ptr<void>(nullptr, [this, name](void*) { Release(name); });
}

void ClientAuth::NoteDenied(const std::string& name) {
  std::fprintf(stderr, "verdict-coordinator: API key \"%s\" refused a request its policies do not allow\n",
               name.c_str());
  absl::MutexLock lock(&mu_);
  KeyCounts& c = counts_[name];
  c.name = name;
  ++c.denied;
}

void ClientAuth::Release(const std::string& name) {
  absl::MutexLock lock(&mu_);
  --counts_[name].sessions;
}

std::vector<ClientAuth::KeyCounts> ClientAuth::Snapshot() const {
  absl::MutexLock lock(&mu_);
  std::vector<KeyCounts> out;
  for (const auto& [name, c] : counts_) out.push_back(c);
  std::sort(out.begin(), out.end(), [](const KeyCounts& a, const KeyCounts& b) { return a.name < b.name; });
  return out;
}

int64_t ClientAuth::unauthenticated() const {
  absl::MutexLock lock(&mu_);
  return unauthenticated_;
}

}  // namespace verdict::services
