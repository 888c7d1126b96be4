// SPDX-License-Identifier: Apache-2.0
#include "services/admin/http_security.h"

#include "absl/strings/str_cat.h"
#include "httplib.h"

namespace verdict::services {

absl::StatusOr<std::unique_ptr<httplib::Server>> MakeHttpServer(const HttpSecurity& security) {
  if (security.tls == nullptr) return std::make_unique<httplib::Server>();
  security::ReloadingTls* tls = security.tls;
  const bool require = security.require_client_certificate;
  auto server = std::make_unique<httplib::SSLServer>(
      [tls, require](SSL_CTX& ctx) { return tls->ConfigureServerContext(&ctx, require); });
  if (!server->is_valid()) {
    return absl::InvalidArgumentError(
        absl::StrCat(tls->what(), ": cannot serve HTTPS with it (a certificate and key are needed",
                     require ? ", and a client CA to verify client certificates)" : ")"));
  }
  return server;
}

}  // namespace verdict::services
