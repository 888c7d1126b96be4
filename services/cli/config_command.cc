// SPDX-License-Identifier: Apache-2.0
// `verdict config`: cluster configs for operators and launch scripts.
//   verdict config check FILE [--for ROLE] [--files] [--num-layers N]
//       validates FILE: syntax, layer ranges against the target's layer count (read from the
//       target model when it is on this host, or --num-layers), addresses, policies, security;
//       --files also requires the files ROLE (default: every member) reads to exist here.
//       Prints one line "ok: ..." or one line per problem, exit status 1 on any.
//   verdict config render [--template FILE] [flags] [--out FILE]
//       writes a config from a template and an allocation's hosts (Slurm, scripts); see --help.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"
#include "engine/model_loader.h"
#include "services/cli/cli_util.h"
#include "services/cli/commands.h"
#include "services/config/cluster_config.h"
#include "services/config/cluster_config_tools.h"

namespace verdict::cli {
namespace {

namespace fs = std::filesystem;

// The target's layer count from the model, when its files are on this host.
absl::StatusOr<int> TargetLayers(const std::string& path) {
  VERDICT_ASSIGN_OR_RETURN(engine::LoadedModel model, engine::LoadModel(path));
  return static_cast<int>(model.config.num_layers);
}

struct CheckFlags {
  std::string file;
  std::string role = "all";
  bool files = false;
  int num_layers = 0;
};

int RunCheck(const CheckFlags& f) {
  absl::StatusOr<v1::ClusterConfig> config = services::LoadClusterConfig(f.file);
  if (!config.ok()) return ReportError(config.status());
  int layers = f.num_layers;
  std::string layers_from = "--num-layers";
  std::vector<std::string> notes;
  if (layers == 0) {
    std::error_code ec;
    if (fs::exists(config->target().path(), ec)) {
      absl::StatusOr<int> n = TargetLayers(config->target().path());
      if (!n.ok()) return ReportError(n.status());
      layers = *n;
      layers_from = "the target model";
    } else {
      notes.push_back(absl::StrCat("the target model ", config->target().path(),
                                   " is not on this host: layer ranges checked for gaps and overlaps only (give "
                                   "--num-layers to check them against the model)"));
    }
  }
  if (layers > 0) {
    if (absl::Status s = services::ValidateClusterConfig(*config, layers); !s.ok()) {
      return ReportError(absl::Status(s.code(), absl::StrCat(f.file, ": ", s.message(), " (layers from ", layers_from, ")")));
    }
  }
  if (f.files) {
    absl::StatusOr<std::vector<std::string>> missing = services::MissingFiles(*config, f.role, fs::current_path().string());
    if (!missing.ok()) return ReportError(missing.status());
    for (const std::string& m : *missing) std::fprintf(stderr, "verdict: %s: %s\n", f.file.c_str(), m.c_str());
    if (!missing->empty()) return 1;
  }
  for (const std::string& w : services::ClusterConfigWarnings(*config)) {
    std::fprintf(stderr, "verdict: %s: warning: %s\n", f.file.c_str(), w.c_str());
  }
  for (const std::string& n : notes) std::fprintf(stderr, "verdict: %s: note: %s\n", f.file.c_str(), n.c_str());
  std::vector<std::string> ranges;
  for (const v1::TargetShardConfig& s : config->shards()) ranges.push_back(absl::StrCat("[", s.layer_begin(), ", ", s.layer_end(), ")"));
  std::printf("ok: %s: cluster \"%s\", %d shard%s (layers %s%s), %s, %s activations%s\n", f.file.c_str(),
              config->name().c_str(), config->shards_size(), config->shards_size() == 1 ? "" : "s",
              absl::StrJoin(ranges, " ").c_str(), layers > 0 ? absl::StrCat(" of ", layers).c_str() : "",
              config->has_draft() ? "a draft worker" : "no draft",
              config->transport().kind() == v1::TransportConfig::KIND_GRPC ? "gRPC" : "UCX",
              f.files ? absl::StrCat(", files present for ", f.role).c_str() : "");
  return 0;
}

struct RenderFlags {
  std::string templ;
  std::string out;
  std::string shard_hosts;
  std::string layers;
  std::string transport;
  bool json = false;
  services::RenderRequest request;
};

int RunRender(RenderFlags& f) {
  v1::ClusterConfig templ;
  if (!f.templ.empty()) {
    // A template need not be a whole working config (its addresses are often placeholders), so it
    // is parsed without validation; the rendered result is validated.
    std::ifstream in(f.templ);
    if (!in) return ReportError(absl::NotFoundError(absl::StrCat("cannot open the template ", f.templ)));
    std::stringstream text;
    text << in.rdbuf();
    absl::StatusOr<v1::ClusterConfig> parsed =
        services::ParseClusterConfigUnchecked(text.str(), absl::EndsWith(f.templ, ".json"));
    if (!parsed.ok()) return ReportError(absl::Status(parsed.status().code(), absl::StrCat(f.templ, ": ", parsed.status().message())));
    templ = *std::move(parsed);
  }
  services::RenderRequest& r = f.request;
  if (!f.shard_hosts.empty()) {
    // Commas or white space: `scontrol show hostnames` prints one per line.
    r.shard_hosts = absl::StrSplit(f.shard_hosts, absl::ByAnyChar(", \n\t"), absl::SkipEmpty());
  }
  if (!f.layers.empty()) {
    absl::StatusOr<services::LayerSplit> split = services::ParseLayerSplit(f.layers);
    if (!split.ok()) return ReportError(split.status());
    r.layers = *std::move(split);
  }
  if (!f.transport.empty()) r.grpc_transport = f.transport == "grpc";
  const std::string target = r.target_path.empty() ? templ.target().path() : r.target_path;
  if (r.num_layers == 0 && r.layers.empty() && !target.empty()) {
    std::error_code ec;
    if (fs::exists(target, ec)) {
      absl::StatusOr<int> n = TargetLayers(target);
      if (!n.ok()) return ReportError(n.status());
      r.num_layers = *n;
    }
  }
  absl::StatusOr<v1::ClusterConfig> config = services::RenderClusterConfig(templ, r);
  if (!config.ok()) return ReportError(config.status());
  std::string text;
  if (f.json) {
    absl::StatusOr<std::string> json = services::ClusterConfigJson(*config);
    if (!json.ok()) return ReportError(json.status());
    text = *json;
  } else {
    text = services::ClusterConfigText(
        *config, absl::StrCat("Written by `verdict config render`", f.templ.empty() ? "" : absl::StrCat(" from ", f.templ),
                              "; check it with `verdict config check`."));
  }
  if (f.out.empty() || f.out == "-") {
    std::fwrite(text.data(), 1, text.size(), stdout);
    return 0;
  }
  // Written whole, then renamed: members started at once never read a half-written file.
  const std::string tmp = f.out + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << text;
    if (!out.flush()) return ReportError(absl::UnavailableError(absl::StrCat("cannot write ", tmp)));
  }
  std::error_code ec;
  fs::rename(tmp, f.out, ec);
  if (ec) return ReportError(absl::UnavailableError(absl::StrCat("cannot rename ", tmp, " to ", f.out, ": ", ec.message())));
  std::fprintf(stderr, "verdict: wrote %s (%d shards)\n", f.out.c_str(), config->shards_size());
  return 0;
}

}  // namespace

void AddConfigCommand(CLI::App& app, int* exit_code) {
  CLI::App* config = app.add_subcommand("config", "check and render cluster configs");
  config->require_subcommand(1);

  auto check_flags = std::make_shared<CheckFlags>();
  CLI::App* check = config->add_subcommand("check", "validate a cluster config (one line per problem)");
  check->add_option("file", check_flags->file, "cluster config (textproto or JSON)")->required();
  check->add_flag("--files", check_flags->files, "require the files the members read to exist on this host");
  check->add_option("--for", check_flags->role, "with --files: only this member's files (coordinator, draft, shard-N)")
      ->capture_default_str();
  check->add_option("--num-layers", check_flags->num_layers,
                    "the target's layer count (default: read from the target model when it is on this host)");
  check->callback([check_flags, exit_code] { *exit_code = RunCheck(*check_flags); });

  auto render_flags = std::make_shared<RenderFlags>();
  RenderFlags& f = *render_flags;
  services::RenderRequest& r = f.request;
  CLI::App* render = config->add_subcommand("render", "write a cluster config from a template and hosts");
  render->add_option("--template", f.templ, "a cluster config whose settings are kept (addresses may be placeholders)");
  render->add_option("--out", f.out, "file to write (default: stdout); written whole, then renamed");
  render->add_flag("--json", f.json, "write JSON instead of textproto");
  render->add_option("--name", r.name, "cluster name");
  render->add_option("--target", r.target_path, "the target model (directory or GGUF)");
  render->add_option("--tokenizer", r.target_tokenizer, "the coordinator's tokenizer (default: the target's)");
  render->add_option("--draft", r.draft_path, "the draft model (adds a draft worker)");
  render->add_flag("--no-draft", r.no_draft, "drop the template's draft worker");
  render->add_option("--judge-head", r.judge_head, "judge head file for the last shard");
  render->add_option("--shards", r.shards, "number of target shards (default: one per shard host, else the template's)");
  render->add_option("--layers", f.layers, "layer split, \"0:10,10:22,22:32\" or sizes \"10,12,10\" (default: even)");
  render->add_option("--num-layers", r.num_layers,
                     "the target's layer count for an even split (default: read from the target model when present)");
  render->add_option("--shard-hosts", f.shard_hosts,
                     "hosts of the shards in order, separated by commas or white space (one host: all shards)");
  render->add_option("--draft-host", r.draft_host, "host of the draft worker");
  render->add_option("--coordinator-host", r.coordinator_host, "host of the coordinator");
  render->add_option("--coordinator-port", r.coordinator_port, "coordinator gRPC port")->capture_default_str();
  render->add_option("--http-port", r.http_port, "coordinator OpenAI HTTP port (0: off)")->capture_default_str();
  render->add_option("--admin-port", r.admin_port, "admin port of the coordinator; draft +1, shard i +2+i")
      ->capture_default_str();
  render->add_option("--draft-port", r.draft_port, "draft worker gRPC port")->capture_default_str();
  render->add_option("--shard-port", r.shard_port, "gRPC port of shard 0; shard i +i")->capture_default_str();
  render->add_option("--data-port", r.data_port, "UCX activation port base; shard i +i")->capture_default_str();
  render->add_option("--bind-host", r.bind_host, "write bind addresses on this host (e.g. 0.0.0.0) for every member");
  render->add_option("--transport", f.transport, "activations between shards: ucx or grpc")
      ->check(CLI::IsMember({"ucx", "grpc"}));
  render->add_option("--ucx-tls", r.ucx_tls, "UCX transports (UCX_TLS), e.g. tcp or rc,sm,self");
  render->add_option("--threads", r.threads, "CPU threads of every member");
  render->add_option("--device", r.device, "device of every member (cpu, cuda, cuda:N)");
  render->callback([render_flags, exit_code] { *exit_code = RunRender(*render_flags); });
}

}  // namespace verdict::cli
