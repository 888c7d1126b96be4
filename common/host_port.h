// SPDX-License-Identifier: Apache-2.0
// "host:port" addresses as the cluster config, the flags and the servers spell them: a DNS name,
// an IPv4 literal or a bracketed IPv6 literal ("[::]:50051"), then a decimal port.
#ifndef VERDICT_COMMON_HOST_PORT_H_
#define VERDICT_COMMON_HOST_PORT_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace verdict {

struct HostPort {
  std::string host;  // without IPv6 brackets
  int port = 0;
};

// Errors (kInvalidArgument, quoting the address): no colon, an empty or malformed host (spaces,
// a scheme such as "http://", unbalanced brackets, an unbracketed IPv6 literal), a port that is
// not a decimal number in [1, 65535] ([0, 65535] with `allow_port_zero`, 0 meaning "any free").
absl::StatusOr<HostPort> ParseHostPort(absl::string_view address, bool allow_port_zero = false);

// A host on its own: a DNS name, an IPv4 literal or an IPv6 literal without brackets, checked as
// ParseHostPort checks the host part. Errors: kInvalidArgument.
absl::Status ValidateHost(absl::string_view host);

// "host:port", bracketing an IPv6 literal.
std::string JoinHostPort(absl::string_view host, int port);

// Whether `host` is an address that means "every interface" (0.0.0.0, ::): a peer cannot dial it.
bool IsWildcardHost(absl::string_view host);

}  // namespace verdict

#endif  // VERDICT_COMMON_HOST_PORT_H_
