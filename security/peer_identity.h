// SPDX-License-Identifier: Apache-2.0
// Mutual TLS between cluster members: which identity each member's certificate must carry, and a
// gRPC certificate verifier that refuses a peer (at the handshake, after gRPC verified its chain)
// whose certificate names none of the identities allowed to talk to this member.
#ifndef VERDICT_SECURITY_PEER_IDENTITY_H_
#define VERDICT_SECURITY_PEER_IDENTITY_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace grpc::experimental {
class CertificateVerifier;
}

namespace verdict::security {

// A member's identity: `format` ("verdict-{role}" when empty) with "{role}" replaced by `role`.
std::string MemberIdentity(absl::string_view format, absl::string_view role);

// A verifier that accepts a peer whose certificate has a DNS or URI subject alternative name in
// `allowed`; `what` names this end in the log line a refusal writes.
std::shared_ptr<grpc::experimental::CertificateVerifier> PeerIdentityVerifier(std::vector<std::string> allowed,
                                                                              std::string what);

}  // namespace verdict::security

#endif  // VERDICT_SECURITY_PEER_IDENTITY_H_
