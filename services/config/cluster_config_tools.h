// SPDX-License-Identifier: Apache-2.0
// What `verdict config check` and `verdict config render` do, as plain functions: writing a
// cluster config from a template and an allocation's hosts (the Slurm script and operators use it
// instead of sed), splitting the target's layers across shards, and finding the files a member
// needs on its host. No model is opened here; the command supplies the layer count.
#ifndef VERDICT_SERVICES_CONFIG_CLUSTER_CONFIG_TOOLS_H_
#define VERDICT_SERVICES_CONFIG_CLUSTER_CONFIG_TOOLS_H_

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "verdict/v1/cluster.pb.h"

namespace verdict::services {

// [begin, end) layer ranges, one per shard.
using LayerSplit = std::vector<std::pair<int, int>>;

// `num_layers` in `shards` contiguous ranges as even as possible; the first ranges take the
// remainder (the last shard also runs the LM head and the judge). Errors: shards < 1 or more
// shards than layers.
absl::StatusOr<LayerSplit> EvenLayerSplit(int num_layers, int shards);
// "0:10,10:22,22:32" (or "10,12,10": sizes) -> ranges; checked to be contiguous from 0, non-empty.
absl::StatusOr<LayerSplit> ParseLayerSplit(absl::string_view text);

// What `verdict config render` fills in. Unset fields keep the template's value.
struct RenderRequest {
  std::string name;
  std::string target_path;
  std::string target_tokenizer;
  std::string draft_path;  // a draft worker is added (or kept, from the template) when set
  bool no_draft = false;   // drop the template's draft
  std::string judge_head;  // on the last shard
  // Hosts: one per shard (a single host serves every shard), the draft's and the coordinator's.
  // Empty: the template's addresses are kept (then the shard count must be the template's).
  std::vector<std::string> shard_hosts;
  std::string draft_host;
  std::string coordinator_host;
  // Layers: `layers` when given, else an even split of `num_layers` over the shard count (the
  // number of shard hosts, else `shards`, else the template's). num_layers 0: keep the template's
  // ranges (the shard count must then be the template's).
  LayerSplit layers;
  int shards = 0;
  int num_layers = 0;
  // Ports (the shards' are consecutive from these, so several shards can share a host).
  int coordinator_port = 50051;
  int http_port = 8000;  // 0: no HTTP API (unless the template has one)
  int admin_port = 8080;  // coordinator; the draft gets +1, shard i +2+i
  int draft_port = 50061;
  int shard_port = 50071;
  int data_port = 50171;
  // Written into every member's bind fields ("0.0.0.0", "::"); empty: none.
  std::string bind_host;
  std::optional<bool> grpc_transport;  // activations over gRPC instead of UCX
  std::string ucx_tls;
  int threads = -1;     // every member; -1: keep
  std::string device;   // every member; empty: keep
};

// The template (or an empty config) with the request applied, then validated
// (ValidateClusterConfig with request.num_layers). Errors name the flag or field at fault.
absl::StatusOr<v1::ClusterConfig> RenderClusterConfig(const v1::ClusterConfig& templ, const RenderRequest& request);

// The config as textproto, with a header comment saying how it was made.
std::string ClusterConfigText(const v1::ClusterConfig& config, absl::string_view header_comment);

// Members by role for CheckFilesPresent: "coordinator", "draft", "shard-N", or "all".
// Returns one line per file the member(s) read at start that does not exist on this host
// ("shards[1].judge_head: /x/judge.safetensors does not exist"); empty: all there. Paths are
// relative to `base_dir` unless absolute. Errors: an unknown role.
absl::StatusOr<std::vector<std::string>> MissingFiles(const v1::ClusterConfig& config, absl::string_view role,
                                                      const std::string& base_dir);

// Warnings about configs that work but are probably not what was meant (one line each).
std::vector<std::string> ClusterConfigWarnings(const v1::ClusterConfig& config);

}  // namespace verdict::services

#endif  // VERDICT_SERVICES_CONFIG_CLUSTER_CONFIG_TOOLS_H_
