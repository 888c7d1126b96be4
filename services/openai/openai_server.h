// SPDX-License-Identifier: Apache-2.0
// The OpenAI-compatible HTTP front end of the coordinator (cpp-httplib; off unless the cluster
// config names coordinator.http_listen):
//   POST /v1/completions   non-streaming, or "stream": true as Server-Sent Events ("data: {...}"
//                          per chunk, "data: [DONE]" last; stream_options.include_usage adds a
//                          usage chunk)
//   POST /v1/chat/completions   the same for "messages", rendered with the model's own chat
//                          template (engine::ChatTemplate) into the prompt's token ids
//   GET  /v1/models        the served model
// A request becomes the gRPC API's v1::GenerateRequest (openai_protocol.h) and goes through the same
// GenerationService::Prepare (validation, defaults, allow-list) to the same Coordinator. Errors use
// OpenAI's format and status codes (429 with Retry-After at the session limit). A streaming client
// that disconnects cancels its session, which frees it on every member.
//
// Concurrency: cpp-httplib serves each connection on a thread of its pool, and a stream holds its
// thread while it waits for tokens (a condition variable, no polling of the coordinator), so the
// pool is sized to the session limit plus headroom for quick requests.
#ifndef VERDICT_SERVICES_OPENAI_OPENAI_SERVER_H_
#define VERDICT_SERVICES_OPENAI_OPENAI_SERVER_H_

#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "coordinator/coordinator.h"
#include "services/admin/http_security.h"
#include "services/coordinator/generation_service.h"

namespace httplib {
class Server;
}

namespace verdict::services::openai {

struct OpenAiServerOptions {
  // Connections served at once (each stream holds one): the session limit plus headroom.
  int threads = 80;
  // A request not finished by then is cancelled and answered 504 (a stream: an error event).
  absl::Duration request_timeout = absl::InfiniteDuration();
  // HTTPS (the API keys are the GenerationService's: ClientAuth).
  HttpSecurity security;
};

class OpenAiServer {
 public:
  // Listens on "HOST:PORT" (port 0 picks one). `coordinator` and `service` (the gRPC API's, for
  // Prepare and the model's description) must outlive the server. kUnavailable if it cannot bind.
  static absl::StatusOr<std::unique_ptr<OpenAiServer>> Start(const std::string& address,
                                                             coordinator::Coordinator* coordinator,
                                                             const GenerationService* service,
                                                             const OpenAiServerOptions& options = {});
  ~OpenAiServer();  // stops serving (open streams are cancelled) and joins the thread
  int port() const { return port_; }

 private:
  OpenAiServer() = default;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
};

}  // namespace verdict::services::openai

#endif  // VERDICT_SERVICES_OPENAI_OPENAI_SERVER_H_
