// SPDX-License-Identifier: Apache-2.0
#include "services/bin/member_security.h"

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/security/tls_certificate_verifier.h"
#include "grpcpp/security/tls_credentials_options.h"
#include "security/peer_identity.h"
#include "services/config/cluster_config.h"

namespace verdict::services {

std::string ShardRole(int index) { return absl::StrCat("shard-", index); }

absl::StatusOr<std::unique_ptr<MemberSecurity>> MemberSecurity::Create(const v1::ClusterConfig& config,
                                                                      std::string role, std::string log_prefix) {
  if (absl::Status s = ValidateSecurityConfig(config); !s.ok()) return s;
  std::unique_ptr<MemberSecurity> m(new MemberSecurity(role, std::move(log_prefix)));
  m->config_ = config.security();
  const v1::SecurityConfig& sec = m->config_;
  if (!sec.member_tls().ca_file().empty()) {
    const v1::MemberTlsConfig& mt = sec.member_tls();
    security::TlsFiles files{absl::StrReplaceAll(mt.cert_file(), {{"{role}", role}}),
                             absl::StrReplaceAll(mt.key_file(), {{"{role}", role}}), mt.ca_file()};
    absl::StatusOr<std::unique_ptr<security::ReloadingTls>> tls =
        security::ReloadingTls::Create("member TLS", files, /*verify_chain=*/true);
    if (!tls.ok()) return tls.status();
    m->member_tls_ = *std::move(tls);
    const std::string identity = security::MemberIdentity(mt.identity(), role);
    if (mt.verify_identity() &&
        !security::HasIdentity(m->member_tls_->current()->subject_alt_names, identity)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "member TLS: ", files.cert_file, " names [", absl::StrJoin(m->member_tls_->current()->subject_alt_names, ", "),
          "] but not ", identity, ", the identity of the ", role, " (its peers would refuse it)"));
    }
    security::ReloadingTls* t = m->member_tls_.get();
    m->reloader_.Add("member TLS", [t] { return t->Reload(); });
  }
  if (!sec.client_tls().cert_file().empty()) {
    const v1::ClientTlsConfig& ct = sec.client_tls();
    absl::StatusOr<std::unique_ptr<security::ReloadingTls>> tls = security::ReloadingTls::Create(
        "client TLS", {ct.cert_file(), ct.key_file(), ct.client_ca_file()}, /*verify_chain=*/false);
    if (!tls.ok()) return tls.status();
    m->client_tls_ = *std::move(tls);
    security::ReloadingTls* t = m->client_tls_.get();
    m->reloader_.Add("client TLS", [t] { return t->Reload(); });
  }
  // Only the coordinator serves the client APIs; the key file need not exist on the workers' hosts.
  if (!sec.api_keys_file().empty() && role == kCoordinatorRole) {
    absl::StatusOr<std::unique_ptr<security::KeyRing>> keys = security::KeyRing::Load("API keys", sec.api_keys_file());
    if (!keys.ok()) return keys.status();
    m->api_keys_ = *std::move(keys);
    security::KeyRing* k = m->api_keys_.get();
    m->reloader_.Add("API keys", [k] { return k->Reload(); });
  }
  if (!sec.admin_tokens_file().empty()) {
    absl::StatusOr<std::unique_ptr<security::KeyRing>> tokens =
        security::KeyRing::Load("admin tokens", sec.admin_tokens_file());
    if (!tokens.ok()) return tokens.status();
    m->admin_tokens_ = *std::move(tokens);
    security::KeyRing* k = m->admin_tokens_.get();
    m->reloader_.Add("admin tokens", [k] { return k->Reload(); });
  }
  return m;
}

std::shared_ptr<grpc::ServerCredentials> MemberSecurity::MemberServerCredentials(
    const std::vector<std::string>& peer_roles) const {
  if (member_tls_ == nullptr) return grpc::InsecureServerCredentials();
  grpc::experimental::TlsServerCredentialsOptions options(member_tls_->GrpcProvider());
  options.watch_identity_key_cert_pairs();
  options.watch_root_certs();
  options.set_cert_request_type(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  if (config_.member_tls().verify_identity()) {
    std::vector<std::string> allowed;
    for (const std::string& r : peer_roles) allowed.push_back(security::MemberIdentity(config_.member_tls().identity(), r));
    options.set_certificate_verifier(security::PeerIdentityVerifier(std::move(allowed), role_));
  }
  return grpc::experimental::TlsServerCredentials(options);
}

std::shared_ptr<grpc::ServerCredentials> MemberSecurity::ClientServerCredentials() const {
  if (client_tls_ == nullptr) return grpc::InsecureServerCredentials();
  grpc::experimental::TlsServerCredentialsOptions options(client_tls_->GrpcProvider());
  options.watch_identity_key_cert_pairs();
  if (!config_.client_tls().client_ca_file().empty()) {
    options.watch_root_certs();
    options.set_cert_request_type(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  } else {
    options.set_cert_request_type(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  }
  return grpc::experimental::TlsServerCredentials(options);
}

std::shared_ptr<grpc::ChannelCredentials> MemberSecurity::ChannelTo(const std::string& peer_role) const {
  if (member_tls_ == nullptr) return grpc::InsecureChannelCredentials();
  grpc::experimental::TlsChannelCredentialsOptions options;
  options.set_certificate_provider(member_tls_->GrpcProvider());
  options.watch_root_certs();
  options.watch_identity_key_cert_pairs();
  options.set_verify_server_certs(true);  // the chain, against the member CA
  // Members are dialled by configured addresses, often IPs: the role, not the host name, is what a
  // member's certificate vouches for.
  options.set_check_call_host(false);
  if (config_.member_tls().verify_identity()) {
    options.set_certificate_verifier(security::PeerIdentityVerifier(
        {security::MemberIdentity(config_.member_tls().identity(), peer_role)}, absl::StrCat(role_, " calling ", peer_role)));
  } else {
    options.set_certificate_verifier(std::make_shared<grpc::experimental::NoOpCertificateVerifier>());
  }
  return grpc::experimental::TlsCredentials(options);
}

HttpSecurity MemberSecurity::AdminHttp() const {
  return {client_tls_.get(), !config_.client_tls().client_ca_file().empty(), admin_tokens_.get()};
}

HttpSecurity MemberSecurity::ApiHttp() const {
  return {client_tls_.get(), !config_.client_tls().client_ca_file().empty(), nullptr};
}

void MemberSecurity::StartReloading() {
  const int seconds = config_.reload_seconds() > 0 ? config_.reload_seconds() : 5;
  reloader_.Start(absl::Seconds(seconds));
}

std::string MemberSecurity::ReloadNowJson() {
  nlohmann::json reloaded = nlohmann::json::array(), refused = nlohmann::json::array();
  for (const security::FileReloader::Outcome& o : reloader_.ReloadAll()) {
    if (o.result.ok()) {
      reloaded.push_back({{"name", o.name}, {"changed", *o.result}});
    } else {
      refused.push_back({{"name", o.name}, {"error", std::string(o.result.status().message())}});
    }
  }
  return nlohmann::json{{"reloaded", reloaded}, {"refused", refused}}.dump() + "\n";
}

std::string MemberSecurity::Describe() const {
  std::vector<std::string> parts;
  if (member_tls_) {
    parts.push_back(absl::StrCat("member mTLS (serial ", member_tls_->current()->serial_hex,
                                 config_.member_tls().verify_identity() ? ", identities checked)" : ")"));
  }
  if (client_tls_) {
    parts.push_back(absl::StrCat("client TLS (serial ", client_tls_->current()->serial_hex,
                                 config_.client_tls().client_ca_file().empty() ? ")" : ", client certificates)"));
  }
  if (api_keys_) parts.push_back(absl::StrCat(api_keys_->size(), " API keys"));
  if (admin_tokens_) parts.push_back(absl::StrCat(admin_tokens_->size(), " admin tokens"));
  return parts.empty() ? "plaintext, no keys" : absl::StrJoin(parts, ", ");
}

}  // namespace verdict::services
