// SPDX-License-Identifier: Apache-2.0
// Where a cluster member binds, as opposed to where its peers dial it. The cluster config's
// `*listen` fields are the addresses peers and clients dial; a member binds the matching `*bind`
// field instead when set, and the command line overrides both (a pod binds 0.0.0.0 and is reached
// by its DNS name; a Slurm step binds its node's address on the chosen interface).
//
// Precedence for each address: its explicit flag (--bind, --admin-bind, --data-bind, --http-bind)
// > --bind-host HOST (the port of the config's bind or listen address, on HOST) > the config's
// `*bind` field > the config's `*listen` field.
#ifndef VERDICT_SERVICES_CONFIG_MEMBER_ADDRESSES_H_
#define VERDICT_SERVICES_CONFIG_MEMBER_ADDRESSES_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "verdict/v1/cluster.pb.h"

namespace verdict::services {

// The command line's say in where a member binds (empty fields: no override).
struct BindOverrides {
  std::string grpc;   // --bind
  std::string admin;  // --admin-bind
  std::string data;   // --data-bind (target shards: the UCX activation listener)
  std::string http;   // --http-bind (coordinator: the OpenAI-compatible API)
  std::string host;   // --bind-host: every address of this member on this host, same ports
};

// The local addresses one member binds. Empty: that endpoint is not served (e.g. no admin_listen).
struct BindAddresses {
  std::string grpc;
  std::string admin;
  std::string data;
  std::string http;
};

// Errors (kInvalidArgument, naming the field or flag): a malformed address or --bind-host, an
// override for an endpoint the config does not serve (e.g. --admin-bind without admin_listen).
absl::StatusOr<BindAddresses> CoordinatorBindAddresses(const v1::CoordinatorConfig& config,
                                                       const BindOverrides& overrides);
absl::StatusOr<BindAddresses> DraftBindAddresses(const v1::DraftWorkerConfig& config, const BindOverrides& overrides);
// `data` is empty for shard 0 and with the gRPC transport (no activation listener).
absl::StatusOr<BindAddresses> ShardBindAddresses(const v1::ClusterConfig& config, int shard,
                                                 const BindOverrides& overrides);

// A shard index as the command line gives it ("--shard $SLURM_PROCID", "--shard $(POD_INDEX)"):
// a decimal in [0, num_shards). An empty or missing value is an error, never shard 0: it means the
// variable that should have given it was not set.
absl::StatusOr<int> ParseShardIndex(absl::string_view text, int num_shards);

}  // namespace verdict::services

#endif  // VERDICT_SERVICES_CONFIG_MEMBER_ADDRESSES_H_
