// SPDX-License-Identifier: Apache-2.0
#include "services/config/member_addresses.h"

#include "absl/algorithm/container.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/host_port.h"
#include "common/status_macros.h"

namespace verdict::services {
namespace {

// One endpoint: `listen` (config, what peers dial), `bind` (config), `flag` (--*-bind), `host`
// (--bind-host). `what` names the config field for errors, `flag_name` the flag.
absl::StatusOr<std::string> Resolve(absl::string_view what, const std::string& listen, const std::string& bind,
                                    absl::string_view flag_name, const std::string& flag, const std::string& host) {
  if (listen.empty()) {
    if (!flag.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(flag_name, " ", flag, " is given, but the config has no ", what, ": that endpoint is off"));
    }
    return std::string();
  }
  if (!flag.empty()) {
    VERDICT_RETURN_IF_ERROR(ParseHostPort(flag, /*allow_port_zero=*/true).status());
    return flag;
  }
  const std::string& base = bind.empty() ? listen : bind;
  absl::StatusOr<HostPort> parsed = ParseHostPort(base, /*allow_port_zero=*/true);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(what, bind.empty() ? "" : " (bind)", ": ", parsed.status().message()));
  }
  if (host.empty()) return base;
  return JoinHostPort(host, parsed->port);
}

// --bind-host: a host, an IPv6 literal with or without brackets; returned without them.
absl::StatusOr<std::string> BindHost(const std::string& host) {
  if (host.empty()) return host;
  const bool bracketed = host.size() >= 2 && host.front() == '[' && host.back() == ']';
  std::string bare = bracketed ? host.substr(1, host.size() - 2) : host;
  if (!ValidateHost(bare).ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--bind-host \"", host, "\" is not a host name or address"));
  }
  return bare;
}

}  // namespace

absl::StatusOr<BindAddresses> CoordinatorBindAddresses(const v1::CoordinatorConfig& c, const BindOverrides& o) {
  VERDICT_ASSIGN_OR_RETURN(const std::string host, BindHost(o.host));
  if (!o.data.empty()) return absl::InvalidArgumentError("--data-bind: the coordinator has no activation listener");
  BindAddresses b;
  VERDICT_ASSIGN_OR_RETURN(b.grpc, Resolve("coordinator.listen", c.listen(), c.bind(), "--bind", o.grpc, host));
  VERDICT_ASSIGN_OR_RETURN(b.admin, Resolve("coordinator.admin_listen", c.admin_listen(), c.admin_bind(),
                                            "--admin-bind", o.admin, host));
  VERDICT_ASSIGN_OR_RETURN(b.http, Resolve("coordinator.http_listen", c.http_listen(), c.http_bind(), "--http-bind",
                                           o.http, host));
  return b;
}

absl::StatusOr<BindAddresses> DraftBindAddresses(const v1::DraftWorkerConfig& c, const BindOverrides& o) {
  VERDICT_ASSIGN_OR_RETURN(const std::string host, BindHost(o.host));
  if (!o.data.empty()) return absl::InvalidArgumentError("--data-bind: the draft worker has no activation listener");
  if (!o.http.empty()) return absl::InvalidArgumentError("--http-bind: only the coordinator serves the HTTP API");
  BindAddresses b;
  VERDICT_ASSIGN_OR_RETURN(b.grpc, Resolve("draft.listen", c.listen(), c.bind(), "--bind", o.grpc, host));
  VERDICT_ASSIGN_OR_RETURN(b.admin,
                           Resolve("draft.admin_listen", c.admin_listen(), c.admin_bind(), "--admin-bind", o.admin, host));
  return b;
}

absl::StatusOr<BindAddresses> ShardBindAddresses(const v1::ClusterConfig& config, int shard, const BindOverrides& o) {
  VERDICT_ASSIGN_OR_RETURN(const std::string host, BindHost(o.host));
  if (!o.http.empty()) return absl::InvalidArgumentError("--http-bind: only the coordinator serves the HTTP API");
  const v1::TargetShardConfig& c = config.shards(shard);
  const std::string name = absl::StrCat("shards[", shard, "]");
  BindAddresses b;
  VERDICT_ASSIGN_OR_RETURN(b.grpc, Resolve(name + ".listen", c.listen(), c.bind(), "--bind", o.grpc, host));
  VERDICT_ASSIGN_OR_RETURN(b.admin, Resolve(name + ".admin_listen", c.admin_listen(), c.admin_bind(), "--admin-bind",
                                            o.admin, host));
  const bool receives_activations = shard > 0 && config.transport().kind() != v1::TransportConfig::KIND_GRPC;
  if (!receives_activations) {
    if (!o.data.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--data-bind: ", name, " receives no activations over UCX (", shard == 0 ? "it is the first shard" : "gRPC transport",
          ")"));
    }
    return b;
  }
  VERDICT_ASSIGN_OR_RETURN(b.data, Resolve(name + ".data_listen", c.data_listen(), c.data_bind(), "--data-bind",
                                           o.data, host));
  return b;
}

absl::StatusOr<int> ParseShardIndex(absl::string_view text, int num_shards) {
  const absl::string_view trimmed = absl::StripAsciiWhitespace(text);
  if (trimmed.empty()) {
    return absl::InvalidArgumentError(
        "--shard is empty: the variable meant to give the shard index (e.g. $SLURM_PROCID, the pod index) is not set");
  }
  int index = -1;
  const bool digits = absl::c_all_of(trimmed, [](char ch) { return absl::ascii_isdigit(static_cast<unsigned char>(ch)); });
  if (!digits || trimmed.size() > 6 || !absl::SimpleAtoi(trimmed, &index)) {
    return absl::InvalidArgumentError(absl::StrCat("--shard \"", text, "\" is not a shard index (0, 1, ...)"));
  }
  if (index >= num_shards) {
    return absl::InvalidArgumentError(
        absl::StrCat("--shard ", index, ": the config has ", num_shards, " shards (0..", num_shards - 1, ")"));
  }
  return index;
}

}  // namespace verdict::services
