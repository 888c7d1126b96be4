// SPDX-License-Identifier: Apache-2.0
#include "services/config/cluster_config.h"

#include <fstream>
#include <set>
#include <sstream>

#include "absl/algorithm/container.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/host_port.h"
#include "common/status_macros.h"
#include "engine/backend.h"
#include "google/protobuf/io/tokenizer.h"
#include "google/protobuf/text_format.h"
#include "google/protobuf/util/json_util.h"

namespace verdict::services {
namespace {

// Collects the text-format parser's complaints instead of printing them.
class CollectErrors : public google::protobuf::io::ErrorCollector {
 public:
  void AddError(int line, int column, const std::string& message) override {
    if (text.empty()) text = absl::StrCat("line ", line + 1, " column ", column + 1, ": ", message);
  }
  void AddWarning(int, int, const std::string&) override {}
  std::string text;
};

void FillDefaults(v1::ClusterConfig& c) {
  v1::CoordinatorConfig* co = c.mutable_coordinator();
  if (co->default_draft_window() == 0) co->set_default_draft_window(8);
  if (co->default_max_tokens() == 0) co->set_default_max_tokens(256);
  if (co->max_sessions() == 0) co->set_max_sessions(64);
  if (co->draft_deadline_ms() == 0) co->set_draft_deadline_ms(2000);
  if (!co->has_pipelined()) co->set_pipelined(true);
  if (co->max_request_bytes() == 0) co->set_max_request_bytes(4 << 20);
  if (co->session_lease_seconds() == 0) co->set_session_lease_seconds(30);
  if (c.has_draft() && c.draft().max_batch_tokens() == 0) c.mutable_draft()->set_max_batch_tokens(256);
  for (v1::TargetShardConfig& s : *c.mutable_shards()) {
    if (s.max_batch_tokens() == 0) s.set_max_batch_tokens(1024);
  }
  if (c.transport().kind() == v1::TransportConfig::KIND_UNSPECIFIED) {
    c.mutable_transport()->set_kind(v1::TransportConfig::KIND_UCX);
  }
  if (c.transport().dtype() == v1::ACTIVATION_DTYPE_UNSPECIFIED) {
    c.mutable_transport()->set_dtype(v1::ACTIVATION_DTYPE_F32);
  }
}

}  // namespace

absl::Duration SessionLease(const v1::CoordinatorConfig& coordinator) {
  return coordinator.session_lease_seconds() > 0 ? absl::Seconds(coordinator.session_lease_seconds())
                                                 : absl::ZeroDuration();
}

namespace {
// engine::ParseKvCacheType's names (and empty: auto); the list is header-only, nothing to link.
bool IsKvCacheName(absl::string_view name) {
  return name.empty() || absl::c_linear_search(engine::kKvCacheTypeNames, name);
}
}  // namespace

namespace {

absl::Status Invalid(absl::string_view what) { return absl::InvalidArgumentError(absl::StrCat("cluster config: ", what)); }

// Every address of the config: well-formed; the ones peers dial (`dialed`) not a wildcard; the
// advertised ones distinct (two members cannot both be reached at one host:port). Bind addresses
// are per host, so only their form is checked.
class AddressChecker {
 public:
  absl::Status Advertised(const std::string& address, absl::string_view what, bool required, bool dialed) {
    if (address.empty()) return required ? Invalid(absl::StrCat(what, " is empty")) : absl::OkStatus();
    absl::StatusOr<HostPort> p = ParseHostPort(address);
    if (!p.ok()) return Invalid(absl::StrCat(what, ": ", p.status().message()));
    if (dialed && IsWildcardHost(p->host)) {
      return Invalid(absl::StrCat(what, " is ", address,
                                  ", which peers cannot dial: give the name or address they reach this member at, "
                                  "and bind the wildcard with the matching bind field or --bind-host"));
    }
    if (!seen_.insert(address).second) return Invalid(absl::StrCat(what, " ", address, " is used twice"));
    return absl::OkStatus();
  }
  static absl::Status Bind(const std::string& address, absl::string_view what) {
    if (address.empty()) return absl::OkStatus();
    absl::StatusOr<HostPort> p = ParseHostPort(address, /*allow_port_zero=*/true);
    if (!p.ok()) return Invalid(absl::StrCat(what, ": ", p.status().message()));
    return absl::OkStatus();
  }

 private:
  std::set<std::string> seen_;
};

absl::Status CheckPolicies(const v1::ClusterConfig& c) {
  const v1::CoordinatorConfig& co = c.coordinator();
  std::set<int> allowed;
  for (int p : co.allowed_policies()) {
    if (p == v1::VERIFICATION_POLICY_UNSPECIFIED || !v1::VerificationPolicy_IsValid(p)) {
      return Invalid(absl::StrCat("coordinator.allowed_policies lists ", p == 0 ? "VERIFICATION_POLICY_UNSPECIFIED" : absl::StrCat(p),
                                  ", which is not a policy"));
    }
    if (!allowed.insert(p).second) {
      return Invalid(absl::StrCat("coordinator.allowed_policies lists ", v1::VerificationPolicy_Name(p), " twice"));
    }
  }
  const int d = co.default_policy();
  if (d != v1::VERIFICATION_POLICY_UNSPECIFIED && d != v1::VERIFICATION_POLICY_EXACT && !allowed.contains(d)) {
    return Invalid(absl::StrCat("coordinator.default_policy ", v1::VerificationPolicy_Name(co.default_policy()),
                                " is not in coordinator.allowed_policies, so requests that leave the policy unset "
                                "would be refused"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateClusterConfig(const v1::ClusterConfig& c, int64_t num_layers) {
  if (c.target().path().empty()) return Invalid("target.path is empty");
  if (c.has_draft() && !IsKvCacheName(c.draft().kv_cache())) {
    return Invalid(absl::StrCat("draft.kv_cache is '", c.draft().kv_cache(), "'; expected auto, f32, f16 or bf16"));
  }
  AddressChecker addresses;
  const v1::CoordinatorConfig& co = c.coordinator();
  // Clients dial the coordinator, but a coordinator bound to a wildcard is still usable by
  // clients on its host; members never dial it.
  VERDICT_RETURN_IF_ERROR(addresses.Advertised(co.listen(), "coordinator.listen", /*required=*/true, /*dialed=*/false));
  VERDICT_RETURN_IF_ERROR(addresses.Advertised(co.admin_listen(), "coordinator.admin_listen", false, false));
  VERDICT_RETURN_IF_ERROR(addresses.Advertised(co.http_listen(), "coordinator.http_listen", false, false));
  VERDICT_RETURN_IF_ERROR(AddressChecker::Bind(co.bind(), "coordinator.bind"));
  VERDICT_RETURN_IF_ERROR(AddressChecker::Bind(co.admin_bind(), "coordinator.admin_bind"));
  VERDICT_RETURN_IF_ERROR(AddressChecker::Bind(co.http_bind(), "coordinator.http_bind"));
  VERDICT_RETURN_IF_ERROR(CheckPolicies(c));
  if (c.shards_size() == 0) return Invalid("no target shards");
  if (c.has_draft()) {
    const v1::DraftWorkerConfig& d = c.draft();
    VERDICT_RETURN_IF_ERROR(addresses.Advertised(d.listen(), "draft.listen", true, true));
    VERDICT_RETURN_IF_ERROR(addresses.Advertised(d.admin_listen(), "draft.admin_listen", false, false));
    VERDICT_RETURN_IF_ERROR(AddressChecker::Bind(d.bind(), "draft.bind"));
    VERDICT_RETURN_IF_ERROR(AddressChecker::Bind(d.admin_bind(), "draft.admin_bind"));
    if (d.model().path().empty()) return Invalid("draft.model.path is empty");
  }
  int64_t next = 0;
  for (int i = 0; i < c.shards_size(); ++i) {
    const v1::TargetShardConfig& s = c.shards(i);
    const std::string name = absl::StrCat("shards[", i, "]");
    VERDICT_RETURN_IF_ERROR(addresses.Advertised(s.listen(), name + ".listen", true, true));
    // The coordinator reads every shard's latency from its admin endpoint.
    VERDICT_RETURN_IF_ERROR(addresses.Advertised(s.admin_listen(), name + ".admin_listen", false, true));
    if (c.transport().kind() != v1::TransportConfig::KIND_GRPC && i > 0) {
      VERDICT_RETURN_IF_ERROR(addresses.Advertised(s.data_listen(), name + ".data_listen", true, true));
    }
    VERDICT_RETURN_IF_ERROR(AddressChecker::Bind(s.bind(), name + ".bind"));
    VERDICT_RETURN_IF_ERROR(AddressChecker::Bind(s.admin_bind(), name + ".admin_bind"));
    VERDICT_RETURN_IF_ERROR(AddressChecker::Bind(s.data_bind(), name + ".data_bind"));
    if (s.layer_begin() != next || s.layer_end() <= s.layer_begin()) {
      const std::string problem = s.layer_begin() < next   ? absl::StrCat("overlaps the layers before it, which end at ", next)
                                  : s.layer_begin() > next ? absl::StrCat("leaves layers [", next, ", ", s.layer_begin(), ") to no shard")
                                                           : "is empty";
      return Invalid(absl::StrCat(name, " covers layers [", s.layer_begin(), ", ", s.layer_end(), "), which ", problem,
                                  "; the next range must start at ", next, " and be non-empty"));
    }
    if (s.tensor_parallel() < 0) {
      return Invalid(absl::StrCat(name, ".tensor_parallel is ", s.tensor_parallel(), "; it must be >= 0"));
    }
    if (s.devices_size() != 0 && s.devices_size() != s.tensor_parallel()) {
      return Invalid(absl::StrCat(name, " lists ", s.devices_size(), " devices for tensor_parallel ", s.tensor_parallel(),
                                  "; give none or one per rank"));
    }
    if (!IsKvCacheName(s.kv_cache())) {
      return Invalid(absl::StrCat(name, ".kv_cache is '", s.kv_cache(), "'; expected auto, f32, f16 or bf16"));
    }
    if (!s.judge_head().empty() && i + 1 != c.shards_size()) {
      return Invalid(absl::StrCat(name, " has a judge head; only the last shard may"));
    }
    next = s.layer_end();
  }
  if (num_layers > 0 && next != num_layers) {
    return Invalid(absl::StrCat("the shards cover layers [0, ", next, ") but the target has ", num_layers,
                                next < num_layers ? "" : " (the last ranges go past the model's end)"));
  }
  return ValidateSecurityConfig(c);
}

absl::Status ValidateSecurityConfig(const v1::ClusterConfig& c) {
  const v1::SecurityConfig& sec = c.security();
  auto bad = [](absl::string_view why) { return absl::InvalidArgumentError(absl::StrCat("cluster config: security.", why)); };
  const v1::ClientTlsConfig& ct = sec.client_tls();
  if (ct.cert_file().empty() != ct.key_file().empty()) return bad("client_tls needs both cert_file and key_file");
  if (ct.cert_file().empty() && !ct.client_ca_file().empty()) {
    return bad("client_tls.client_ca_file is set without a server certificate (cert_file, key_file)");
  }
  const v1::MemberTlsConfig& mt = sec.member_tls();
  if (mt.ca_file().empty() && (!mt.cert_file().empty() || !mt.key_file().empty() || mt.verify_identity())) {
    return bad("member_tls needs ca_file (the CA the members' certificates chain to)");
  }
  if (!mt.ca_file().empty()) {
    if (mt.cert_file().empty() || mt.key_file().empty()) {
      return bad("member_tls needs cert_file and key_file (\"{role}\" in them becomes each member's role)");
    }
    const bool activations_over_ucx = c.transport().kind() != v1::TransportConfig::KIND_GRPC && c.shards_size() > 1;
    if (activations_over_ucx && !mt.allow_plaintext_ucx()) {
      return bad(
          "member_tls is on, but activations would travel between shards over UCX, which has no encryption: set "
          "transport { kind: KIND_GRPC } to send them over mutual TLS, or member_tls.allow_plaintext_ucx: true "
          "if the fabric is trusted");
    }
  }
  if (sec.reload_seconds() < 0) return bad("reload_seconds must be >= 0");
  return absl::OkStatus();
}

absl::StatusOr<v1::ClusterConfig> ParseClusterConfigUnchecked(const std::string& text, bool json) {
  v1::ClusterConfig config;
  if (json) {
    google::protobuf::util::JsonParseOptions options;
    options.ignore_unknown_fields = false;
    const auto status = google::protobuf::util::JsonStringToMessage(text, &config, options);
    if (!status.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("cluster config (JSON): ", status.message().as_string()));
    }
  } else {
    google::protobuf::TextFormat::Parser parser;
    CollectErrors errors;
    parser.RecordErrorsTo(&errors);
    if (!parser.ParseFromString(text, &config)) {
      return absl::InvalidArgumentError(absl::StrCat("cluster config: ", errors.text));
    }
  }
  return config;
}

absl::StatusOr<std::string> ClusterConfigJson(const v1::ClusterConfig& config) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  std::string out;
  const auto status = google::protobuf::util::MessageToJsonString(config, &out, options);
  if (!status.ok()) return absl::InternalError(absl::StrCat("cluster config to JSON: ", status.message().as_string()));
  return out;
}

absl::StatusOr<v1::ClusterConfig> ParseClusterConfig(const std::string& text, bool json, int64_t num_layers) {
  VERDICT_ASSIGN_OR_RETURN(v1::ClusterConfig config, ParseClusterConfigUnchecked(text, json));
  FillDefaults(config);
  VERDICT_RETURN_IF_ERROR(ValidateClusterConfig(config, num_layers));
  return config;
}

absl::StatusOr<v1::ClusterConfig> LoadClusterConfig(const std::string& path, int64_t num_layers) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open the cluster config ", path));
  std::stringstream text;
  text << in.rdbuf();
  absl::StatusOr<v1::ClusterConfig> config = ParseClusterConfig(text.str(), absl::EndsWith(path, ".json"), num_layers);
  if (!config.ok()) {
    return absl::Status(config.status().code(), absl::StrCat(path, ": ", config.status().message()));
  }
  return config;
}

}  // namespace verdict::services
