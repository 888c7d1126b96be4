// SPDX-License-Identifier: Apache-2.0
#include "security/peer_identity.h"

#include <algorithm>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "grpcpp/security/tls_certificate_verifier.h"

namespace verdict::security {
namespace {

class IdentityVerifier final : public grpc::experimental::ExternalCertificateVerifier {
 public:
  IdentityVerifier(std::vector<std::string> allowed, std::string what)
      : allowed_(std::move(allowed)), what_(std::move(what)) {}

  bool Verify(grpc::experimental::TlsCustomVerificationCheckRequest* request, std::function<void(grpc::Status)>,
              grpc::Status* sync_status) override {
    std::vector<std::string> names;
    for (const grpc::string_ref& n : request->dns_names()) names.emplace_back(n.data(), n.size());
    for (const grpc::string_ref& n : request->uri_names()) names.emplace_back(n.data(), n.size());
    for (const std::string& n : names) {
      if (std::find(allowed_.begin(), allowed_.end(), n) != allowed_.end()) {
        *sync_status = grpc::Status::OK;
        return true;  // decided synchronously
      }
    }
    const std::string message =
        absl::StrCat(what_, ": refused a peer whose certificate names [", absl::StrJoin(names, ", "),
                     "]; allowed: [", absl::StrJoin(allowed_, ", "), "]");
    std::fprintf(stderr, "verdict: %s\n", message.c_str());
    *sync_status = grpc::Status(grpc::StatusCode::UNAUTHENTICATED, message);
    return true;
  }

  void Cancel(grpc::experimental::TlsCustomVerificationCheckRequest*) override {}

 private:
  const std::vector<std::string> allowed_;
  const std::string what_;
};

}  // namespace

std::string MemberIdentity(absl::string_view format, absl::string_view role) {
  return absl::StrReplaceAll(format.empty() ? "verdict-{role}" : format, {{"{role}", role}});
}

std::shared_ptr<grpc::experimental::CertificateVerifier> PeerIdentityVerifier(std::vector<std::string> allowed,
                                                                              std::string what) {
  return grpc::experimental::ExternalCertificateVerifier::Create<IdentityVerifier>(std::move(allowed),
                                                                                  std::move(what));
}

}  // namespace verdict::security
