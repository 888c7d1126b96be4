// SPDX-License-Identifier: Apache-2.0
// Loading and checking the cluster configuration (verdict.v1.ClusterConfig) that every process of a
// cluster reads: textproto (.textproto, .txtpb, .pbtxt) or JSON (.json, proto3 JSON mapping).
#ifndef VERDICT_SERVICES_CONFIG_CLUSTER_CONFIG_H_
#define VERDICT_SERVICES_CONFIG_CLUSTER_CONFIG_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "verdict/v1/cluster.pb.h"

namespace verdict::services {

// Parses the file and fills defaults (ports, windows, limits). Errors: kNotFound (no file),
// kInvalidArgument (syntax, naming the line; or a config that cannot work: no target model, no
// shards, layer ranges that overlap or leave a gap, empty or duplicate addresses).
// `num_layers` > 0 also checks that the shards cover exactly [0, num_layers).
absl::StatusOr<v1::ClusterConfig> LoadClusterConfig(const std::string& path, int64_t num_layers = 0);
absl::StatusOr<v1::ClusterConfig> ParseClusterConfig(const std::string& text, bool json,
                                                     int64_t num_layers = 0);
// Only the syntax: no defaults, no validation (templates for `verdict config render`).
absl::StatusOr<v1::ClusterConfig> ParseClusterConfigUnchecked(const std::string& text, bool json);
// The config in proto3 JSON, pretty-printed.
absl::StatusOr<std::string> ClusterConfigJson(const v1::ClusterConfig& config);
absl::Status ValidateClusterConfig(const v1::ClusterConfig& config, int64_t num_layers);
// The security section on its own (no file is read; ValidateClusterConfig calls it): both halves of
// each identity, a CA for member TLS, no plaintext UCX under member TLS unless allowed.
absl::Status ValidateSecurityConfig(const v1::ClusterConfig& config);

// How long workers keep a coordinator's sessions without a lease renewal (zero: forever).
absl::Duration SessionLease(const v1::CoordinatorConfig& coordinator);

}  // namespace verdict::services

#endif  // VERDICT_SERVICES_CONFIG_CLUSTER_CONFIG_H_
