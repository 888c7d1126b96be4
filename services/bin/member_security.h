// SPDX-License-Identifier: Apache-2.0
// What one cluster member's ports need from the cluster config's SecurityConfig: gRPC server and
// channel credentials (TLS for clients, mutual TLS between members with optional identity checks),
// the TLS material and tokens of its HTTP listeners, the API keys of the client APIs, and the timer
// that re-reads all of those files. Everything is plaintext and open when the config says nothing.
#ifndef VERDICT_SERVICES_BIN_MEMBER_SECURITY_H_
#define VERDICT_SERVICES_BIN_MEMBER_SECURITY_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "grpcpp/grpcpp.h"
#include "security/api_keys.h"
#include "security/file_reloader.h"
#include "security/reloading_tls.h"
#include "services/admin/http_security.h"
#include "verdict/v1/cluster.pb.h"

namespace verdict::services {

// Member roles as identities and log lines name them.
inline constexpr char kCoordinatorRole[] = "coordinator";
inline constexpr char kDraftRole[] = "draft";
std::string ShardRole(int index);  // "shard-N"

class MemberSecurity {
 public:
  // Loads the files `config` names for the member `role` (errors name the file and what is wrong).
  // `log_prefix` starts its log lines ("verdict-shard").
  static absl::StatusOr<std::unique_ptr<MemberSecurity>> Create(const v1::ClusterConfig& config, std::string role,
                                                                std::string log_prefix);

  const std::string& role() const { return role_; }
  bool member_tls() const { return member_tls_ != nullptr; }
  bool client_tls() const { return client_tls_ != nullptr; }

  // A member's gRPC server (draft worker, shards): mutual TLS accepting peers with the identities
  // of `peer_roles` (when identities are checked), or plaintext.
  std::shared_ptr<grpc::ServerCredentials> MemberServerCredentials(const std::vector<std::string>& peer_roles) const;
  // The coordinator's client API: TLS (with client certificates when client_ca_file is set), or
  // plaintext.
  std::shared_ptr<grpc::ServerCredentials> ClientServerCredentials() const;
  // To call the member `peer_role`: mutual TLS checking its identity (when identities are
  // checked), or plaintext.
  std::shared_ptr<grpc::ChannelCredentials> ChannelTo(const std::string& peer_role) const;

  // The admin endpoint: HTTPS with the client TLS identity, admin tokens.
  HttpSecurity AdminHttp() const;
  // The HTTP client API: HTTPS as the gRPC API (the API keys are checked by the service).
  HttpSecurity ApiHttp() const;
  // API keys of the client APIs; null: none required.
  const security::KeyRing* api_keys() const { return api_keys_.get(); }

  // Re-reads the files now (the admin reload request) and starts re-reading them every
  // SecurityConfig.reload_seconds.
  security::FileReloader& reloader() { return reloader_; }
  void StartReloading();
  // Re-reads every file now: the answer of POST /v1/admin/reload-credentials, e.g.
  // {"reloaded":[{"name":"API keys","changed":true}],"refused":[{"name":"client TLS","error":"..."}]}
  std::string ReloadNowJson();

  // Identity and trust in effect, for /v1/status and logs: "member TLS serial ABC, client TLS
  // serial DEF, 3 API keys".
  std::string Describe() const;

 private:
  MemberSecurity(std::string role, std::string log_prefix) : role_(std::move(role)), reloader_(std::move(log_prefix)) {}

  std::string role_;
  v1::SecurityConfig config_;
  std::unique_ptr<security::ReloadingTls> member_tls_;
  std::unique_ptr<security::ReloadingTls> client_tls_;
  std::unique_ptr<security::KeyRing> api_keys_;
  std::unique_ptr<security::KeyRing> admin_tokens_;
  security::FileReloader reloader_;
};

}  // namespace verdict::services

#endif  // VERDICT_SERVICES_BIN_MEMBER_SECURITY_H_
