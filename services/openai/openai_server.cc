// SPDX-License-Identifier: Apache-2.0
#include "services/openai/openai_server.h"

#include <sys/socket.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <deque>
#include <optional>
#include <random>
#include <utility>
#include <vector>

#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/host_port.h"
#include "httplib.h"
#include "services/coordinator/text_stream.h"
#include "services/openai/openai_protocol.h"

namespace verdict::services::openai {
namespace {

using nlohmann::json;

// Connections waiting to be accepted (a burst of clients connecting at once).
constexpr int kListenBacklog = 1024;

// How long a stream waits for tokens before it checks that its client is still there.
constexpr absl::Duration kStreamPoll = absl::Seconds(1);

void SendError(httplib::Response& res, const ApiError& error) {
  res.status = error.http_status;
  if (error.http_status == 429) res.set_header("Retry-After", "1");
  res.set_content(ErrorJson(error).dump(), "application/json");
}

std::string NewCompletionId(bool chat) {
  thread_local std::mt19937_64 rng(std::random_device{}());
  return absl::StrFormat("%s-%016x%08x", chat ? "chatcmpl" : "cmpl", rng(), static_cast<uint32_t>(rng()));
}

// One generation's results as the coordinator's callbacks deliver them (on its executor), taken
// by the HTTP thread that serves the request.
struct Generation {
  absl::Mutex mu;
  std::deque<std::string> pieces ABSL_GUARDED_BY(mu);  // committed text not yet sent
  std::optional<absl::StatusOr<v1::GenerateResponse::Final>> result ABSL_GUARDED_BY(mu);
  std::optional<spec::SessionId> session ABSL_GUARDED_BY(mu);

  bool Ready() const ABSL_SHARED_LOCKS_REQUIRED(mu) { return !pieces.empty() || result.has_value(); }
};

// Starts `call` on the coordinator; the callbacks fill `gen`. Errors: those of Prepare and Start.
absl::Status StartGeneration(coordinator::Coordinator* coordinator, const GenerationService* service,
                             const CompletionCall& call, const std::shared_ptr<const security::ApiKey>& key,
                             const std::shared_ptr<Generation>& gen) {
  std::shared_ptr<void> slot;  // the API key's session, held until the generation ends
  absl::StatusOr<coordinator::GenerationRequest> prepared = service->PrepareFor(key, call.request, &slot);
  if (!prepared.ok()) return prepared.status();
  const std::string policy = spec::PolicyLabel(prepared->speculation.policy, spec::ExactRuleFor(prepared->sampling));
  const uint64_t seed = prepared->sampling.seed;
  const int32_t prompt_tokens = static_cast<int32_t>(prepared->prompt.size());
  auto text = std::make_shared<TextStream>(
      service->model().tokenizer, std::vector<std::string>(call.request.stop().begin(), call.request.stop().end()),
      prepared->stop_token_ids);
  if (absl::Status s = text->AddContext(prepared->prompt); !s.ok()) return s;
  coordinator::GenerationCallbacks callbacks;
  callbacks.on_tokens = [gen, text](absl::Span<const int32_t> tokens) {
    std::string piece;
    absl::StatusOr<bool> stopped = text->Add(tokens, &piece);
    if (!stopped.ok()) return false;
    absl::MutexLock lock(&gen->mu);
    if (!piece.empty()) gen->pieces.push_back(std::move(piece));
    return !*stopped;
  };
  callbacks.on_done = [gen, text, policy, seed, prompt_tokens,
                       slot](absl::StatusOr<coordinator::GenerationSummary> summary) {
    const std::string tail = summary.ok() ? text->Flush() : std::string();
    absl::MutexLock lock(&gen->mu);
    if (!tail.empty()) gen->pieces.push_back(tail);
    if (!summary.ok()) {
      gen->result = summary.status();
    } else {
      gen->result = GenerationService::FinalMessage(*summary, prompt_tokens, seed, policy);
    }
  };
  absl::StatusOr<spec::SessionId> id = coordinator->Start(*std::move(prepared), std::move(callbacks));
  if (!id.ok()) return id.status();
  absl::MutexLock lock(&gen->mu);
  gen->session = *id;
  return absl::OkStatus();
}

void CancelGeneration(coordinator::Coordinator* coordinator, Generation& gen) {
  std::optional<spec::SessionId> id;
  {
    absl::MutexLock lock(&gen.mu);
    if (gen.result.has_value()) return;
    id = gen.session;
  }
  if (id.has_value()) coordinator->Cancel(*id);
}

absl::Status Timeout(absl::Duration limit) {
  return absl::DeadlineExceededError(
      absl::StrCat("the request did not finish within ", absl::FormatDuration(limit), " and was cancelled"));
}

void ServeCompletion(coordinator::Coordinator* coordinator, const GenerationService* service, bool chat,
                     absl::Duration timeout, const httplib::Request& req, httplib::Response& res) {
  const absl::Time deadline = absl::Now() + timeout;
  absl::StatusOr<std::shared_ptr<const security::ApiKey>> key =
      service->Authenticate(req.get_header_value("Authorization"));
  if (!key.ok()) return SendError(res, ErrorFromStatus(key.status()));
  absl::StatusOr<CompletionCall> call = chat ? ParseChatRequest(req.body) : ParseCompletionRequest(req.body);
  if (!call.ok()) return SendError(res, ErrorFromStatus(call.status()));
  if (chat) {
    if (absl::Status s = service->CheckModelName(call->request.model()); !s.ok()) {
      return SendError(res, ErrorFromStatus(s));
    }
    if (absl::Status s = RenderChat(service->model(), &*call); !s.ok()) return SendError(res, ErrorFromStatus(s));
  }
  auto gen = std::make_shared<Generation>();
  if (absl::Status s = StartGeneration(coordinator, service, *call, *key, gen); !s.ok()) {
    return SendError(res, ErrorFromStatus(s));
  }
  const CompletionMeta meta{NewCompletionId(chat), absl::ToUnixSeconds(absl::Now()), service->model().name, chat};
  if (!call->stream) {
    absl::StatusOr<v1::GenerateResponse::Final> result = Timeout(timeout);
    std::string text;
    {
      absl::MutexLock lock(&gen->mu);
      const bool done = gen->mu.AwaitWithDeadline(
          absl::Condition(+[](Generation* g) ABSL_SHARED_LOCKS_REQUIRED(g->mu) { return g->result.has_value(); },
                          gen.get()),
          deadline);
      if (done) {
        result = *gen->result;
        for (const std::string& piece : gen->pieces) text += piece;
      }
    }
    if (absl::IsDeadlineExceeded(result.status())) CancelGeneration(coordinator, *gen);
    if (!result.ok()) return SendError(res, ErrorFromStatus(result.status()));
    res.set_content(CompletionJson(meta, text, *result).dump(), "application/json");
    return;
  }
  const bool include_usage = call->include_usage;
  res.set_header("Cache-Control", "no-cache");
  auto role_sent = std::make_shared<bool>(!chat);  // chat streams name the role first
  res.set_chunked_content_provider(
      "text/event-stream",
      [gen, meta, include_usage, coordinator, role_sent, deadline, timeout](size_t, httplib::DataSink& sink) {
        if (!*role_sent) {
          const std::string first = SseEvent(RoleChunkJson(meta));
          *role_sent = true;
          if (!sink.write(first.data(), first.size())) {
            CancelGeneration(coordinator, *gen);
            return false;
          }
        }
        std::deque<std::string> pieces;
        std::optional<absl::StatusOr<v1::GenerateResponse::Final>> result;
        {
          absl::MutexLock lock(&gen->mu);
          gen->mu.AwaitWithDeadline(absl::Condition(gen.get(), &Generation::Ready),
                                    std::min(deadline, absl::Now() + kStreamPoll));
          pieces.swap(gen->pieces);
          result = gen->result;
        }
        if (!result.has_value() && absl::Now() >= deadline) {
          CancelGeneration(coordinator, *gen);
          result = Timeout(timeout);
        }
        if (pieces.empty() && !result.has_value()) {
          if (sink.is_writable()) return true;  // still waiting for tokens; the client is there
          CancelGeneration(coordinator, *gen);
          return false;
        }
        std::string out;
        for (const std::string& piece : pieces) out += SseEvent(TextChunkJson(meta, piece));
        if (result.has_value()) {
          if (result->ok()) {
            out += SseEvent(FinishChunkJson(meta, **result));
            if (include_usage) out += SseEvent(UsageChunkJson(meta, **result));
          } else {
            // The status line is gone: the error travels as an event, as the reference servers do.
            out += SseEvent(ErrorJson(ErrorFromStatus(result->status())));
          }
          absl::StrAppend(&out, kSseDone);
        }
        if (!sink.write(out.data(), out.size())) {
          CancelGeneration(coordinator, *gen);
          return false;
        }
        if (result.has_value()) sink.done();
        return true;
      },
      [gen, coordinator](bool success) {
        if (!success) CancelGeneration(coordinator, *gen);  // the client went away mid-stream
      });
}

}  // namespace

absl::StatusOr<std::unique_ptr<OpenAiServer>> OpenAiServer::Start(const std::string& address,
                                                                  coordinator::Coordinator* coordinator,
                                                                  const GenerationService* service,
                                                                  const OpenAiServerOptions& options) {
  absl::StatusOr<HostPort> host_port = ParseHostPort(address, /*allow_port_zero=*/true);
  if (!host_port.ok()) return absl::InvalidArgumentError(absl::StrCat("HTTP API ", host_port.status().message()));
  const std::string& host = host_port->host;
  const int port = host_port->port;
  auto server = std::unique_ptr<OpenAiServer>(new OpenAiServer);
  absl::StatusOr<std::unique_ptr<httplib::Server>> http = MakeHttpServer(options.security);
  if (!http.ok()) return http.status();
  server->server_ = *std::move(http);
  httplib::Server& s = *server->server_;
  const int threads = std::max(options.threads, 4);
  s.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  const absl::Duration timeout = options.request_timeout;
  s.Post("/v1/completions", [coordinator, service, timeout](const httplib::Request& req, httplib::Response& res) {
    ServeCompletion(coordinator, service, /*chat=*/false, timeout, req, res);
  });
  s.Post("/v1/chat/completions",
         [coordinator, service, timeout](const httplib::Request& req, httplib::Response& res) {
           ServeCompletion(coordinator, service, /*chat=*/true, timeout, req, res);
         });
  s.Get("/v1/models", [service](const httplib::Request& req, httplib::Response& res) {
    if (absl::Status a = service->Authenticate(req.get_header_value("Authorization")).status(); !a.ok()) {
      return SendError(res, ErrorFromStatus(a));
    }
    v1::ModelInfo info;
    service->DescribeModel(&info);
    res.set_content(ModelsJson(info, absl::ToUnixSeconds(absl::Now())).dump(), "application/json");
  });
  // Anything else: OpenAI's error format rather than an empty page.
  s.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    ApiError e;
    e.http_status = res.status;
    e.type = "invalid_request_error";
    e.message = res.status == 404 ? absl::StrCat("no such endpoint: ", req.method, " ", req.path)
                                  : absl::StrCat("HTTP ", res.status);
    res.set_content(ErrorJson(e).dump(), "application/json");
  });
  // The listening socket, seen as cpp-httplib creates it (the last one tried is the one bound).
  auto listen_fd = std::make_shared<std::atomic<int>>(-1);
  s.set_socket_options([listen_fd](socket_t sock) {
    httplib::default_socket_options(sock);
    listen_fd->store(static_cast<int>(sock));
  });
  if (port == 0) {
    server->port_ = s.bind_to_any_port(host);
  } else {
    server->port_ = s.bind_to_port(host, port) ? port : -1;
  }
  if (server->port_ <= 0) return absl::UnavailableError(absl::StrCat("cannot listen on ", address, " (HTTP API)"));
  // Debian's cpp-httplib is a shared library that listens with a backlog of 5: hundreds of clients
  // connecting at once would be reset. Linux takes a second listen() as the new backlog.
  if (const int fd = listen_fd->load(); fd >= 0 && ::listen(fd, kListenBacklog) != 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", address, " (HTTP API): ", std::strerror(errno)));
  }
  OpenAiServer* self = server.get();
  server->thread_ = std::thread([self] { self->server_->listen_after_bind(); });
  return server;
}

OpenAiServer::~OpenAiServer() {
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace verdict::services::openai
