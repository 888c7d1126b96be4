// SPDX-License-Identifier: Apache-2.0
// What every service process does around its service: parse common flags, start a gRPC server
// (health service on, message size limits), block until SIGINT or SIGTERM, shut down within a
// deadline. One line on stderr says the process is serving (`verdict up` and tests wait for it).
#ifndef VERDICT_SERVICES_BIN_SERVER_MAIN_UTIL_H_
#define VERDICT_SERVICES_BIN_SERVER_MAIN_UTIL_H_

#include <memory>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "services/config/member_addresses.h"
#include "verdict/v1/draft_worker.pb.h"
#include "verdict/v1/target_shard.pb.h"

namespace verdict::services {

// Blocks SIGINT/SIGTERM in this thread (and the threads started after it): call first in main().
void BlockTerminationSignals();
// Waits for SIGINT or SIGTERM (blocked by BlockTerminationSignals); returns the signal. Later ones
// are ignored (the process is stopping).
int WaitForTerminationSignal();

// Builds and starts a server on `address` with `services` and `credentials` (null: plaintext).
// kUnavailable if the port cannot be bound (naming it).
absl::StatusOr<std::unique_ptr<grpc::Server>> StartServer(const std::string& address,
                                                         const std::vector<grpc::Service*>& services,
                                                         std::shared_ptr<grpc::ServerCredentials> credentials,
                                                         int max_message_bytes = 64 << 20);

// Which of the bind flags a member has besides --bind, --admin-bind and --bind-host.
enum class BindEndpoints { kGrpcAndAdmin, kWithData, kWithHttp };
// Adds --bind, --admin-bind, --bind-host and, per `endpoints`, --data-bind or --http-bind
// (services/config/member_addresses.h says what they override).
void AddBindFlags(CLI::App& app, BindEndpoints endpoints, BindOverrides* overrides);

// Prints "verdict-<role>: <message>" to stderr and returns 1 (for `return Fail(...)` in main).
int Fail(const std::string& role, const absl::Status& status);

// A checkpoint's name from its path: the directory's or file's base name ("models/llama/" ->
// "llama").
std::string ModelBaseName(const std::string& path);

// Asks the cluster member at `address` to describe itself (verdict.v1 Describe), retrying with
// backoff (0.1 s doubling to 2 s) while it cannot be reached, until `deadline`. The first failed
// attempt and every tenth after it log one line naming `who` (e.g. "target shard 1 (host:port)").
// Errors: the member's
// last status, naming `who` (kDeadlineExceeded when it never answered). `credentials` as the
// member's channels (MemberSecurity::ChannelTo).
absl::StatusOr<v1::ShardDescription> DescribeShard(const std::string& address, const std::string& who,
                                                   absl::Time deadline,
                                                   std::shared_ptr<grpc::ChannelCredentials> credentials);
absl::StatusOr<v1::DraftDescription> DescribeDraft(const std::string& address, const std::string& who,
                                                   absl::Time deadline,
                                                   std::shared_ptr<grpc::ChannelCredentials> credentials);

}  // namespace verdict::services

#endif  // VERDICT_SERVICES_BIN_SERVER_MAIN_UTIL_H_
