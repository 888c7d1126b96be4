// SPDX-License-Identifier: Apache-2.0
// TLS and bearer tokens for Verdict's HTTP listeners (the admin endpoints, the OpenAI-compatible
// API): which cpp-httplib server to create, and the token check with its HTTP answers.
#ifndef VERDICT_SERVICES_ADMIN_HTTP_SECURITY_H_
#define VERDICT_SERVICES_ADMIN_HTTP_SECURITY_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "security/api_keys.h"
#include "security/reloading_tls.h"

namespace httplib {
class Server;
}

namespace verdict::services {

struct HttpSecurity {
  // HTTPS with this material's current identity (null: plain HTTP); must outlive the server.
  security::ReloadingTls* tls = nullptr;
  bool require_client_certificate = false;
  // Bearer tokens a request must carry (null: none); must outlive the server.
  const security::KeyRing* tokens = nullptr;
};

// An HTTP or HTTPS server as `security` says. kInvalidArgument when the TLS material cannot serve.
absl::StatusOr<std::unique_ptr<httplib::Server>> MakeHttpServer(const HttpSecurity& security);

}  // namespace verdict::services

#endif  // VERDICT_SERVICES_ADMIN_HTTP_SECURITY_H_
