// SPDX-License-Identifier: Apache-2.0
// `verdict security`: what an operator needs to turn security on.
//   verdict security dev-certs --config cluster.textproto --out DIR   a development CA and a
//       certificate per member (identity and addresses as the config says), one for the
//       client-facing ports and one for a client; for testing only (see security/dev_pki.h)
//   verdict security hash-key --name NAME [--generate]   the key file line for a key read from
//       stdin, or for a new random key (printed once on stderr)
#include <sys/stat.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/host_port.h"
#include "common/status_macros.h"
#include "security/api_keys.h"
#include "security/dev_pki.h"
#include "security/peer_identity.h"
#include "services/cli/cli_util.h"
#include "services/cli/commands.h"
#include "services/config/cluster_config.h"

namespace verdict::cli {
namespace {

namespace fs = std::filesystem;

struct DevCertFlags {
  std::string config;
  std::string out;
  int days = 30;
};

// The host of "HOST:PORT" / "[V6]:PORT", or "".
std::string HostOf(const std::string& address) {
  absl::StatusOr<HostPort> p = ParseHostPort(address, /*allow_port_zero=*/true);
  return p.ok() ? p->host : "";
}

bool IsIpLiteral(const std::string& host) {
  return !host.empty() && (host.find(':') != std::string::npos ||
                           std::all_of(host.begin(), host.end(), [](char c) { return absl::ascii_isdigit(c) || c == '.'; }));
}

// Names and addresses a certificate for these hosts should carry (loopback always: local tests).
void AddHosts(const std::vector<std::string>& addresses, security::CertificateRequest* r) {
  std::set<std::string> dns(r->dns_names.begin(), r->dns_names.end()), ips = {"127.0.0.1", "::1"};
  dns.insert("localhost");
  for (const std::string& a : addresses) {
    const std::string host = HostOf(a);
    if (host.empty() || IsWildcardHost(host)) continue;
    (IsIpLiteral(host) ? ips : dns).insert(host);
  }
  r->dns_names.assign(dns.begin(), dns.end());
  r->ip_addresses.assign(ips.begin(), ips.end());
}

absl::Status WritePem(const fs::path& path, const std::string& data, bool secret) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << data;
  out.close();
  if (!out) return absl::InternalError(absl::StrCat("cannot write ", path.string()));
  chmod(path.c_str(), secret ? 0600 : 0644);
  return absl::OkStatus();
}

absl::Status WritePair(const fs::path& dir, const std::string& name, const security::PemPair& pair) {
  VERDICT_RETURN_IF_ERROR(WritePem(dir / (name + ".pem"), pair.cert_pem, false));
  return WritePem(dir / (name + ".key"), pair.key_pem, true);
}

absl::Status RunDevCerts(const DevCertFlags& flags) {
  VERDICT_ASSIGN_OR_RETURN(v1::ClusterConfig config, services::LoadClusterConfig(flags.config));
  const fs::path dir = flags.out;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", dir.string(), ": ", ec.message()));
  const absl::Duration validity = absl::Hours(24) * flags.days;
  const std::string cluster = config.name().empty() ? "verdict" : config.name();
  VERDICT_ASSIGN_OR_RETURN(security::PemPair ca, security::MakeDevCa(absl::StrCat(cluster, " development CA"), validity));
  VERDICT_RETURN_IF_ERROR(WritePair(dir, "ca", ca));

  // One certificate per member: its identity (the role the config gives it) and its addresses.
  struct MemberCert {
    std::string role;
    std::vector<std::string> addresses;
  };
  std::vector<MemberCert> members = {{"coordinator", {config.coordinator().listen()}}};
  if (config.has_draft()) members.push_back({"draft", {config.draft().listen()}});
  for (int i = 0; i < config.shards_size(); ++i) {
    members.push_back({absl::StrCat("shard-", i), {config.shards(i).listen(), config.shards(i).data_listen()}});
  }
  const std::string format = config.security().member_tls().identity();
  for (const MemberCert& m : members) {
    security::CertificateRequest r;
    r.common_name = security::MemberIdentity(format, m.role);
    r.dns_names = {r.common_name};
    r.validity = validity;
    AddHosts(m.addresses, &r);
    VERDICT_ASSIGN_OR_RETURN(security::PemPair pair, security::MakeDevCertificate(ca, r));
    VERDICT_RETURN_IF_ERROR(WritePair(dir, m.role, pair));
  }
  // The client-facing ports: the coordinator's APIs and every admin endpoint.
  security::CertificateRequest server;
  server.common_name = absl::StrCat(cluster, " API");
  server.validity = validity;
  std::vector<std::string> public_addresses = {config.coordinator().listen(), config.coordinator().http_listen(),
                                               config.coordinator().admin_listen(), config.draft().admin_listen()};
  for (const v1::TargetShardConfig& s : config.shards()) public_addresses.push_back(s.admin_listen());
  AddHosts(public_addresses, &server);
  VERDICT_ASSIGN_OR_RETURN(security::PemPair server_pair, security::MakeDevCertificate(ca, server));
  VERDICT_RETURN_IF_ERROR(WritePair(dir, "server", server_pair));
  security::CertificateRequest client;
  client.common_name = absl::StrCat(cluster, " client");
  client.dns_names = {"verdict-client"};
  client.validity = validity;
  VERDICT_ASSIGN_OR_RETURN(security::PemPair client_pair, security::MakeDevCertificate(ca, client));
  VERDICT_RETURN_IF_ERROR(WritePair(dir, "client", client_pair));

  const std::string d = fs::absolute(dir).string();
  std::printf(
      "verdict security dev-certs: wrote a development CA and %zu member certificates to %s (for testing "
      "only; valid %d days).\nAdd to the cluster config:\n"
      "security {\n"
      "  client_tls { cert_file: \"%s/server.pem\" key_file: \"%s/server.key\" ca_file: \"%s/ca.pem\" }\n"
      "  member_tls { ca_file: \"%s/ca.pem\" cert_file: \"%s/{role}.pem\" key_file: \"%s/{role}.key\" "
      "verify_identity: true }\n"
      "}\n",
      members.size(), d.c_str(), flags.days, d.c_str(), d.c_str(), d.c_str(), d.c_str(), d.c_str(), d.c_str());
  return absl::OkStatus();
}

absl::Status RunHashKey(const std::string& name, bool generate) {
  std::string key;
  if (generate) {
    VERDICT_ASSIGN_OR_RETURN(key, security::GenerateKey());
    std::fprintf(stderr, "API key for %s (shown once; give it to its holder): %s\n", name.c_str(), key.c_str());
  } else {
    std::getline(std::cin, key);
    key = std::string(absl::StripAsciiWhitespace(key));
    if (key.empty()) return absl::InvalidArgumentError("no key on stdin (or pass --generate)");
    if (key.size() < 16) return absl::InvalidArgumentError("the key is shorter than 16 characters: use --generate");
  }
  VERDICT_ASSIGN_OR_RETURN(std::vector<security::ApiKey> parsed,
                           security::ParseKeyFile(security::KeyFileLine(name, key), "--name"));
  std::printf("%s\n", security::KeyFileLine(name, key).c_str());
  return absl::OkStatus();
}

}  // namespace

void AddSecurityCommand(CLI::App& app, int* exit_code) {
  CLI::App* sec = app.add_subcommand("security", "Certificates and API keys for a secured cluster");
  sec->require_subcommand(1);
  auto dev = std::make_shared<DevCertFlags>();
  CLI::App* certs = sec->add_subcommand(
      "dev-certs", "Write a development CA and certificates for a cluster config's members (testing only)");
  certs->add_option("--config", dev->config, "cluster config (textproto or JSON)")->required();
  certs->add_option("--out", dev->out, "directory to write the PEM files to")->required();
  certs->add_option("--days", dev->days, "validity in days")->capture_default_str();
  certs->callback([dev, exit_code] { *exit_code = ExitCode(RunDevCerts(*dev)); });

  auto name = std::make_shared<std::string>();
  auto generate = std::make_shared<bool>(false);
  CLI::App* hash = sec->add_subcommand(
      "hash-key", "Print the key file line (name and SHA-256) for a key read from stdin, or a new one");
  hash->add_option("--name", *name, "the key's name in logs and metrics")->required();
  hash->add_flag("--generate", *generate, "make a new random key (printed once, on stderr)");
  hash->callback([name, generate, exit_code] { *exit_code = ExitCode(RunHashKey(*name, *generate)); });
}

}  // namespace verdict::cli
