// SPDX-License-Identifier: Apache-2.0
#include "services/config/cluster_config.h"

#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
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
// engine::ParseKvCacheType's names (and empty: auto), without linking the engine here.
bool IsKvCacheName(absl::string_view name) {
  return name.empty() || name == "auto" || name == "f32" || name == "f16" || name == "bf16";
}
}  // namespace

absl::Status ValidateClusterConfig(const v1::ClusterConfig& c, int64_t num_layers) {
  if (c.target().path().empty()) return absl::InvalidArgumentError("cluster config: target.path is empty");
  if (c.has_draft() && !IsKvCacheName(c.draft().kv_cache())) {
    return absl::InvalidArgumentError(absl::StrCat("cluster config: draft.kv_cache is '", c.draft().kv_cache(),
                                                   "'; expected auto, f32, f16 or bf16"));
  }
  if (c.coordinator().listen().empty()) {
    return absl::InvalidArgumentError("cluster config: coordinator.listen is empty");
  }
  if (c.shards_size() == 0) return absl::InvalidArgumentError("cluster config: no target shards");
  std::set<std::string> addresses = {c.coordinator().listen()};
  auto unique = [&addresses](const std::string& address, const std::string& what) -> absl::Status {
    if (address.empty()) return absl::InvalidArgumentError(absl::StrCat("cluster config: ", what, " is empty"));
    if (!addresses.insert(address).second) {
      return absl::InvalidArgumentError(absl::StrCat("cluster config: ", what, " ", address, " is used twice"));
    }
    return absl::OkStatus();
  };
  if (c.has_draft()) {
    VERDICT_RETURN_IF_ERROR(unique(c.draft().listen(), "draft.listen"));
    if (c.draft().model().path().empty()) return absl::InvalidArgumentError("cluster config: draft.model.path is empty");
  }
  int64_t next = 0;
  for (int i = 0; i < c.shards_size(); ++i) {
    const v1::TargetShardConfig& s = c.shards(i);
    const std::string name = absl::StrCat("shards[", i, "]");
    VERDICT_RETURN_IF_ERROR(unique(s.listen(), name + ".listen"));
    if (c.transport().kind() == v1::TransportConfig::KIND_UCX && i > 0) {
      VERDICT_RETURN_IF_ERROR(unique(s.data_listen(), name + ".data_listen"));
    }
    if (s.layer_begin() != next || s.layer_end() <= s.layer_begin()) {
      return absl::InvalidArgumentError(absl::StrCat("cluster config: ", name, " covers layers [", s.layer_begin(),
                                                     ", ", s.layer_end(), "); the next range must start at ", next,
                                                     " and be non-empty"));
    }
    if (s.tensor_parallel() < 0) {
      return absl::InvalidArgumentError(absl::StrCat("cluster config: ", name, ".tensor_parallel is ",
                                                     s.tensor_parallel(), "; it must be >= 0"));
    }
    if (s.devices_size() != 0 && s.devices_size() != s.tensor_parallel()) {
      return absl::InvalidArgumentError(absl::StrCat("cluster config: ", name, " lists ", s.devices_size(),
                                                     " devices for tensor_parallel ", s.tensor_parallel(),
                                                     "; give none or one per rank"));
    }
    if (!IsKvCacheName(s.kv_cache())) {
      return absl::InvalidArgumentError(absl::StrCat("cluster config: ", name, ".kv_cache is '", s.kv_cache(),
                                                     "'; expected auto, f32, f16 or bf16"));
    }
    if (!s.judge_head().empty() && i + 1 != c.shards_size()) {
      return absl::InvalidArgumentError(absl::StrCat("cluster config: ", name, " has a judge head; only the last shard may"));
    }
    next = s.layer_end();
  }
  if (num_layers > 0 && next != num_layers) {
    return absl::InvalidArgumentError(absl::StrCat("cluster config: the shards cover layers [0, ", next,
                                                   ") but the target has ", num_layers));
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

absl::StatusOr<v1::ClusterConfig> ParseClusterConfig(const std::string& text, bool json, int64_t num_layers) {
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
