// SPDX-License-Identifier: Apache-2.0
#include "services/bin/server_main_util.h"

#include <algorithm>
#include <csignal>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "verdict/v1/draft_worker.grpc.pb.h"
#include "verdict/v1/target_shard.grpc.pb.h"
#include "grpcpp/health_check_service_interface.h"

namespace verdict::services {

void BlockTerminationSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

int WaitForTerminationSignal() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  int signal = 0;
  sigwait(&set, &signal);
  // Stopping from here on: a second SIGTERM or SIGINT (a launcher repeating its stop request) is
  // ignored rather than left pending, where a thread that a library started before
  // BlockTerminationSignals (OpenBLAS starts its pool at load) would take it and kill the
  // process mid-shutdown. SIGKILL still ends a shutdown that hangs.
  struct sigaction ignore {};
  ignore.sa_handler = SIG_IGN;
  sigaction(SIGTERM, &ignore, nullptr);
  sigaction(SIGINT, &ignore, nullptr);
  return signal;
}

absl::StatusOr<std::unique_ptr<grpc::Server>> StartServer(const std::string& address,
                                                         const std::vector<grpc::Service*>& services,
                                                         std::shared_ptr<grpc::ServerCredentials> credentials,
                                                         int max_message_bytes) {
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(address, credentials != nullptr ? credentials : grpc::InsecureServerCredentials(), &port);
  builder.SetMaxReceiveMessageSize(max_message_bytes);
  builder.SetMaxSendMessageSize(max_message_bytes);
  for (grpc::Service* s : services) builder.RegisterService(s);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", address));
  }
  return server;
}

void AddBindFlags(CLI::App& app, BindEndpoints endpoints, BindOverrides* o) {
  app.add_option("--bind", o->grpc, "local address of the gRPC server (default: the config's bind, else its listen)");
  app.add_option("--admin-bind", o->admin, "local address of the admin endpoint (default: admin_bind, else admin_listen)");
  if (endpoints == BindEndpoints::kWithData) {
    app.add_option("--data-bind", o->data, "local address of the UCX activation listener (default: data_bind, else data_listen)");
  }
  if (endpoints == BindEndpoints::kWithHttp) {
    app.add_option("--http-bind", o->http, "local address of the OpenAI HTTP API (default: http_bind, else http_listen)");
  }
  app.add_option("--bind-host", o->host,
                 "bind every endpoint of this member on this host (e.g. 0.0.0.0 or ::), on the config's ports; "
                 "peers still dial the config's listen addresses");
}

int Fail(const std::string& role, const absl::Status& status) {
  std::fprintf(stderr, "verdict-%s: %s\n", role.c_str(), status.ToString().c_str());
  return 1;
}

std::string ModelBaseName(const std::string& path) {
  std::string p = path;
  while (!p.empty() && p.back() == '/') p.pop_back();
  const size_t slash = p.rfind('/');
  return slash == std::string::npos ? p : p.substr(slash + 1);
}

namespace {

// One Describe call per attempt, until `deadline`; see DescribeShard.
template <typename Service, typename Request, typename Response>
absl::StatusOr<Response> DescribeWithRetries(const std::string& address, const std::string& who,
                                             absl::Time deadline,
                                             std::shared_ptr<grpc::ChannelCredentials> credentials) {
  std::unique_ptr<typename Service::Stub> stub = Service::NewStub(
      grpc::CreateChannel(address, credentials != nullptr ? credentials : grpc::InsecureChannelCredentials()));
  absl::Duration backoff = absl::Milliseconds(100);
  grpc::Status last;
  for (int attempt = 0;; ++attempt) {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(std::min(deadline, absl::Now() + absl::Seconds(2))));
    context.set_wait_for_ready(true);  // a member that is still starting: wait for it, not fail
    Request request;
    Response response;
    last = stub->Describe(&context, request, &response);
    if (last.ok()) return response;
    const bool transient = last.error_code() == grpc::StatusCode::UNAVAILABLE ||
                           last.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED;
    if (!transient || absl::Now() + backoff >= deadline) break;
    if (attempt == 0 || attempt % 10 == 0) {
      std::fprintf(stderr, "verdict: waiting for %s: %s\n", who.c_str(), last.error_message().c_str());
    }
    absl::SleepFor(backoff);
    backoff = std::min(2 * backoff, absl::Seconds(2));
  }
  return absl::Status(static_cast<absl::StatusCode>(last.error_code()),
                      absl::StrCat(who, " did not describe itself: ", last.error_message()));
}

}  // namespace

absl::StatusOr<v1::ShardDescription> DescribeShard(const std::string& address, const std::string& who,
                                                   absl::Time deadline,
                                                   std::shared_ptr<grpc::ChannelCredentials> credentials) {
  return DescribeWithRetries<v1::TargetShard, v1::DescribeShardRequest,
                             v1::ShardDescription>(address, who, deadline, std::move(credentials));
}

absl::StatusOr<v1::DraftDescription> DescribeDraft(const std::string& address, const std::string& who,
                                                   absl::Time deadline,
                                                   std::shared_ptr<grpc::ChannelCredentials> credentials) {
  return DescribeWithRetries<v1::DraftWorker, v1::DescribeDraftRequest,
                             v1::DraftDescription>(address, who, deadline, std::move(credentials));
}

}  // namespace verdict::services
