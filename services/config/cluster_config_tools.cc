// SPDX-License-Identifier: Apache-2.0
#include "services/config/cluster_config_tools.h"

#include <algorithm>
#include <filesystem>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/host_port.h"
#include "common/status_macros.h"
#include "google/protobuf/text_format.h"
#include "services/config/cluster_config.h"

namespace verdict::services {
namespace {

absl::Status Invalid(absl::string_view what) { return absl::InvalidArgumentError(std::string(what)); }

absl::Status CheckHost(const std::string& host, absl::string_view flag) {
  if (host.empty() || ValidateHost(host).ok()) return absl::OkStatus();
  return Invalid(absl::StrCat(flag, " \"", host, "\" is not a host name or address"));
}

absl::Status CheckPort(int port, absl::string_view flag, int members) {
  if (port < 1 || port + members - 1 > 65535) {
    return Invalid(absl::StrCat(flag, " ", port, ": the ports from it must lie in [1, 65535]"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<LayerSplit> EvenLayerSplit(int num_layers, int shards) {
  if (shards < 1) return Invalid(absl::StrCat("a cluster needs at least one shard, not ", shards));
  if (shards > num_layers) {
    return Invalid(absl::StrCat(shards, " shards for a target of ", num_layers, " layers: at most one shard per layer"));
  }
  LayerSplit split;
  int begin = 0;
  for (int i = 0; i < shards; ++i) {
    const int size = num_layers / shards + (i < num_layers % shards ? 1 : 0);
    split.emplace_back(begin, begin + size);
    begin += size;
  }
  return split;
}

absl::StatusOr<LayerSplit> ParseLayerSplit(absl::string_view text) {
  LayerSplit split;
  int next = 0;
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    part = absl::StripAsciiWhitespace(part);
    int begin = next, end = 0;
    std::vector<absl::string_view> bounds = absl::StrSplit(part, ':');
    bool ok = false;
    if (bounds.size() == 2) {
      ok = absl::SimpleAtoi(bounds[0], &begin) && absl::SimpleAtoi(bounds[1], &end);
    } else if (bounds.size() == 1) {
      int size = 0;
      ok = absl::SimpleAtoi(bounds[0], &size) && size > 0;
      end = begin + size;
    }
    if (!ok) return Invalid(absl::StrCat("--layers: \"", part, "\" is neither BEGIN:END nor a layer count"));
    if (begin != next || end <= begin) {
      return Invalid(absl::StrCat("--layers: range ", begin, ":", end, " must start at ", next, " and be non-empty"));
    }
    split.emplace_back(begin, end);
    next = end;
  }
  return split;
}

absl::StatusOr<v1::ClusterConfig> RenderClusterConfig(const v1::ClusterConfig& templ, const RenderRequest& r) {
  v1::ClusterConfig c = templ;
  if (!r.name.empty()) c.set_name(r.name);
  if (!r.target_path.empty()) c.mutable_target()->set_path(r.target_path);
  if (!r.target_tokenizer.empty()) c.mutable_target()->set_tokenizer(r.target_tokenizer);
  if (r.no_draft && !r.draft_path.empty()) return Invalid("--draft and --no-draft contradict each other");
  if (r.no_draft) c.clear_draft();
  if (!r.draft_path.empty()) c.mutable_draft()->mutable_model()->set_path(r.draft_path);
  if (r.grpc_transport.has_value()) {
    c.mutable_transport()->set_kind(*r.grpc_transport ? v1::TransportConfig::KIND_GRPC : v1::TransportConfig::KIND_UCX);
  }
  if (!r.ucx_tls.empty()) c.mutable_transport()->set_ucx_tls(r.ucx_tls);

  // The shard count: the layers given, else the hosts, else --shards, else the template's.
  int shards = templ.shards_size();
  if (!r.layers.empty()) {
    shards = static_cast<int>(r.layers.size());
  } else if (!r.shard_hosts.empty() && r.shard_hosts.size() > 1) {
    shards = static_cast<int>(r.shard_hosts.size());
  } else if (r.shards > 0) {
    shards = r.shards;
  }
  if (r.shards > 0 && r.shards != shards) {
    return Invalid(absl::StrCat("--shards ", r.shards, " disagrees with the ", shards, " shards that --layers or "
                                "--shard-hosts give"));
  }
  if (r.shard_hosts.size() > 1 && static_cast<int>(r.shard_hosts.size()) != shards) {
    return Invalid(absl::StrCat(r.shard_hosts.size(), " shard hosts for ", shards, " shards: give one host per shard, or one for all"));
  }
  if (shards < 1) return Invalid("no shards: give --shards, --layers or --shard-hosts (or a template with shards)");
  LayerSplit layers = r.layers;
  if (layers.empty() && r.num_layers > 0) {
    VERDICT_ASSIGN_OR_RETURN(layers, EvenLayerSplit(r.num_layers, shards));
  }
  if (layers.empty() && shards != templ.shards_size()) {
    return Invalid(absl::StrCat(shards, " shards but the template has ", templ.shards_size(),
                                ": give --num-layers (or a target model to read it from) or --layers"));
  }

  // Shards: the template's i-th (or its first, for extra shards) with the new layers and hosts.
  const std::string judge = !r.judge_head.empty() ? r.judge_head
                            : templ.shards_size() > 0 ? templ.shards(templ.shards_size() - 1).judge_head()
                                                      : "";
  const bool judge_threshold_set = templ.shards_size() > 0 && templ.shards(templ.shards_size() - 1).has_judge_threshold();
  const float judge_threshold = judge_threshold_set ? templ.shards(templ.shards_size() - 1).judge_threshold() : 0.f;
  c.clear_shards();
  for (int i = 0; i < shards; ++i) {
    v1::TargetShardConfig* s = c.add_shards();
    if (templ.shards_size() > 0) *s = templ.shards(std::min(i, templ.shards_size() - 1));
    s->clear_judge_head();
    s->clear_judge_threshold();
    if (!layers.empty()) {
      s->set_layer_begin(layers[i].first);
      s->set_layer_end(layers[i].second);
    }
  }
  v1::TargetShardConfig* last = c.mutable_shards(shards - 1);
  if (!judge.empty()) last->set_judge_head(judge);
  if (judge_threshold_set) last->set_judge_threshold(judge_threshold);

  // Addresses from the hosts.
  const bool assign = !r.shard_hosts.empty() || !r.coordinator_host.empty() || !r.draft_host.empty();
  if (assign) {
    if (r.shard_hosts.empty()) return Invalid("--shard-hosts is required with --coordinator-host or --draft-host");
    if (r.coordinator_host.empty()) return Invalid("--coordinator-host is required with --shard-hosts");
    if (c.has_draft() && r.draft_host.empty()) return Invalid("--draft-host is required: the config has a draft worker");
    for (const std::string& h : r.shard_hosts) VERDICT_RETURN_IF_ERROR(CheckHost(h, "--shard-hosts"));
    VERDICT_RETURN_IF_ERROR(CheckHost(r.draft_host, "--draft-host"));
    VERDICT_RETURN_IF_ERROR(CheckHost(r.coordinator_host, "--coordinator-host"));
    VERDICT_RETURN_IF_ERROR(CheckPort(r.coordinator_port, "--coordinator-port", 1));
    VERDICT_RETURN_IF_ERROR(CheckPort(r.admin_port, "--admin-port", shards + 2));
    VERDICT_RETURN_IF_ERROR(CheckPort(r.draft_port, "--draft-port", 1));
    VERDICT_RETURN_IF_ERROR(CheckPort(r.shard_port, "--shard-port", shards));
    VERDICT_RETURN_IF_ERROR(CheckPort(r.data_port, "--data-port", shards));
    if (r.http_port != 0) VERDICT_RETURN_IF_ERROR(CheckPort(r.http_port, "--http-port", 1));
    const bool ucx = c.transport().kind() != v1::TransportConfig::KIND_GRPC;
    v1::CoordinatorConfig* co = c.mutable_coordinator();
    co->set_listen(JoinHostPort(r.coordinator_host, r.coordinator_port));
    co->set_admin_listen(JoinHostPort(r.coordinator_host, r.admin_port));
    if (r.http_port != 0) co->set_http_listen(JoinHostPort(r.coordinator_host, r.http_port));
    co->clear_bind();
    co->clear_admin_bind();
    co->clear_http_bind();
    if (c.has_draft()) {
      v1::DraftWorkerConfig* d = c.mutable_draft();
      d->set_listen(JoinHostPort(r.draft_host, r.draft_port));
      d->set_admin_listen(JoinHostPort(r.draft_host, r.admin_port + 1));
      d->clear_bind();
      d->clear_admin_bind();
    }
    for (int i = 0; i < shards; ++i) {
      v1::TargetShardConfig* s = c.mutable_shards(i);
      const std::string& host = r.shard_hosts[r.shard_hosts.size() == 1 ? 0 : i];
      s->set_listen(JoinHostPort(host, r.shard_port + i));
      s->set_admin_listen(JoinHostPort(host, r.admin_port + 2 + i));
      s->clear_data_listen();
      if (ucx && i > 0) s->set_data_listen(JoinHostPort(host, r.data_port + i));
      s->clear_bind();
      s->clear_admin_bind();
      s->clear_data_bind();
    }
  }
  if (!r.bind_host.empty()) {
    VERDICT_RETURN_IF_ERROR(CheckHost(r.bind_host, "--bind-host"));
    auto rebind = [&r](const std::string& listen, std::string* bind) -> absl::Status {
      if (listen.empty()) return absl::OkStatus();
      VERDICT_ASSIGN_OR_RETURN(HostPort p, ParseHostPort(listen));
      *bind = JoinHostPort(r.bind_host, p.port);
      return absl::OkStatus();
    };
    v1::CoordinatorConfig* co = c.mutable_coordinator();
    VERDICT_RETURN_IF_ERROR(rebind(co->listen(), co->mutable_bind()));
    VERDICT_RETURN_IF_ERROR(rebind(co->admin_listen(), co->mutable_admin_bind()));
    VERDICT_RETURN_IF_ERROR(rebind(co->http_listen(), co->mutable_http_bind()));
    if (c.has_draft()) {
      VERDICT_RETURN_IF_ERROR(rebind(c.draft().listen(), c.mutable_draft()->mutable_bind()));
      VERDICT_RETURN_IF_ERROR(rebind(c.draft().admin_listen(), c.mutable_draft()->mutable_admin_bind()));
    }
    for (v1::TargetShardConfig& s : *c.mutable_shards()) {
      VERDICT_RETURN_IF_ERROR(rebind(s.listen(), s.mutable_bind()));
      VERDICT_RETURN_IF_ERROR(rebind(s.admin_listen(), s.mutable_admin_bind()));
      VERDICT_RETURN_IF_ERROR(rebind(s.data_listen(), s.mutable_data_bind()));
    }
  }
  if (r.threads >= 0) {
    if (c.has_draft()) c.mutable_draft()->set_threads(r.threads);
    for (v1::TargetShardConfig& s : *c.mutable_shards()) s.set_threads(r.threads);
  }
  if (!r.device.empty()) {
    if (c.has_draft()) c.mutable_draft()->set_device(r.device);
    for (v1::TargetShardConfig& s : *c.mutable_shards()) s.set_device(r.device);
  }
  VERDICT_RETURN_IF_ERROR(ValidateClusterConfig(c, r.num_layers));
  return c;
}

std::string ClusterConfigText(const v1::ClusterConfig& config, absl::string_view header_comment) {
  google::protobuf::TextFormat::Printer printer;
  std::string body;
  printer.PrintToString(config, &body);
  std::string out;
  for (absl::string_view line : absl::StrSplit(header_comment, '\n', absl::SkipEmpty())) {
    absl::StrAppend(&out, "# ", line, "\n");
  }
  return absl::StrCat(out, body);
}

absl::StatusOr<std::vector<std::string>> MissingFiles(const v1::ClusterConfig& c, absl::string_view role,
                                                      const std::string& base_dir) {
  std::vector<std::pair<std::string, std::string>> files;  // (field, path)
  auto add = [&files](std::string field, const std::string& path) {
    if (!path.empty()) files.emplace_back(std::move(field), path);
  };
  const bool all = role == "all";
  int shard = -1;
  if (absl::string_view n = role; absl::ConsumePrefix(&n, "shard-")) {
    if (!absl::SimpleAtoi(n, &shard) || shard < 0 || shard >= c.shards_size()) {
      return Invalid(absl::StrCat("--for ", role, ": the config has shards shard-0..shard-", c.shards_size() - 1));
    }
  } else if (!all && role != "coordinator" && role != "draft") {
    return Invalid(absl::StrCat("--for \"", role, "\": expected coordinator, draft, shard-N or all"));
  }
  if (role == "draft" && !c.has_draft()) return Invalid("--for draft: the config has no draft worker");
  const v1::SecurityConfig& sec = c.security();
  // Every member serves TLS on its admin port and takes part in member TLS.
  auto member_files = [&](const std::string& member) {
    add("security.client_tls.cert_file", sec.client_tls().cert_file());
    add("security.client_tls.key_file", sec.client_tls().key_file());
    add("security.client_tls.ca_file", sec.client_tls().ca_file());
    add("security.admin_tokens_file", sec.admin_tokens_file());
    add("security.member_tls.ca_file", sec.member_tls().ca_file());
    add("security.member_tls.cert_file", absl::StrReplaceAll(sec.member_tls().cert_file(), {{"{role}", member}}));
    add("security.member_tls.key_file", absl::StrReplaceAll(sec.member_tls().key_file(), {{"{role}", member}}));
  };
  if (all || role == "coordinator") {
    add(c.target().tokenizer().empty() ? "target.path (the coordinator's tokenizer)" : "target.tokenizer",
        c.target().tokenizer().empty() ? c.target().path() : c.target().tokenizer());
    add("target.chat_template", c.target().chat_template());
    add("security.client_tls.client_ca_file", sec.client_tls().client_ca_file());
    add("security.api_keys_file", sec.api_keys_file());
    member_files("coordinator");
  }
  if (c.has_draft() && (all || role == "draft")) {
    add("draft.model.path", c.draft().model().path());
    member_files("draft");
  }
  for (int i = 0; i < c.shards_size(); ++i) {
    if (!all && i != shard) continue;
    add("target.path", c.target().path());
    add(absl::StrCat("shards[", i, "].judge_head"), c.shards(i).judge_head());
    member_files(absl::StrCat("shard-", i));
  }
  std::vector<std::string> missing;
  std::set<std::string> reported;
  for (const auto& [field, path] : files) {
    const std::filesystem::path p = std::filesystem::path(path).is_absolute() ? std::filesystem::path(path)
                                                                                : std::filesystem::path(base_dir) / path;
    std::error_code ec;
    if (std::filesystem::exists(p, ec)) continue;
    std::string line = absl::StrCat(field, ": ", path, " does not exist on this host");
    if (reported.insert(line).second) missing.push_back(std::move(line));
  }
  return missing;
}

std::vector<std::string> ClusterConfigWarnings(const v1::ClusterConfig& c) {
  std::vector<std::string> warnings;
  bool judge_policy = c.coordinator().default_policy() == v1::VERIFICATION_POLICY_JUDGE ||
                      c.coordinator().default_policy() == v1::VERIFICATION_POLICY_JUDGE_SHADOW;
  for (int p : c.coordinator().allowed_policies()) {
    judge_policy = judge_policy || p == v1::VERIFICATION_POLICY_JUDGE || p == v1::VERIFICATION_POLICY_JUDGE_SHADOW;
  }
  if (judge_policy && c.shards_size() > 0 && c.shards(c.shards_size() - 1).judge_head().empty()) {
    warnings.push_back(
        "judge policies are allowed but the last shard has no judge_head: judge requests fail until one is loaded "
        "(POST /v1/admin/judge on the last shard)");
  }
  if (!c.has_draft()) warnings.push_back("no draft worker: every request decodes with the target alone");
  const v1::MemberTlsConfig& mt = c.security().member_tls();
  if (!mt.ca_file().empty() && !mt.verify_identity()) {
    warnings.push_back(
        "member_tls without verify_identity: any certificate from the CA can act as any member");
  }
  return warnings;
}

}  // namespace verdict::services
