// SPDX-License-Identifier: Apache-2.0
#include "common/host_port.h"

#include "absl/algorithm/container.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace verdict {
namespace {

absl::Status Bad(absl::string_view address, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("address \"", address, "\" ", why, "; expected HOST:PORT"));
}

// Letters, digits, '-', '.', '_' (DNS names and IPv4 literals); inside brackets also ':' and '%'
// (IPv6 literals with a zone).
bool ValidHostChars(absl::string_view host, bool bracketed) {
  for (char c : host) {
    if (absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == '_') continue;
    if (bracketed && (c == ':' || c == '%')) continue;
    return false;
  }
  return true;
}

}  // namespace

absl::StatusOr<HostPort> ParseHostPort(absl::string_view address, bool allow_port_zero) {
  if (absl::StrContains(address, "://")) return Bad(address, "has a URL scheme");
  const size_t colon = address.rfind(':');
  if (colon == absl::string_view::npos) return Bad(address, "has no port");
  absl::string_view host = address.substr(0, colon);
  const absl::string_view port_text = address.substr(colon + 1);
  const bool bracketed = absl::StartsWith(host, "[");
  if (bracketed) {
    if (!absl::EndsWith(host, "]") || host.size() < 3) return Bad(address, "has an unbalanced IPv6 bracket");
    host = host.substr(1, host.size() - 2);
  } else if (absl::StrContains(host, ':')) {
    return Bad(address, "has an IPv6 host without brackets (write [addr]:port)");
  }
  if (host.empty()) return Bad(address, "has no host");
  if (!ValidHostChars(host, bracketed)) return Bad(address, "has a host with characters a host name cannot have");
  int port = -1;
  if (port_text.empty() || !absl::c_all_of(port_text, [](char c) { return absl::ascii_isdigit(static_cast<unsigned char>(c)); }) ||
      port_text.size() > 5 || !absl::SimpleAtoi(port_text, &port) || port > 65535 ||
      (port == 0 && !allow_port_zero)) {
    return Bad(address, allow_port_zero ? "has a port outside [0, 65535]" : "has a port outside [1, 65535]");
  }
  return HostPort{std::string(host), port};
}

absl::Status ValidateHost(absl::string_view host) {
  return ParseHostPort(JoinHostPort(host, 1)).status();
}

std::string JoinHostPort(absl::string_view host, int port) {
  if (absl::StrContains(host, ':')) return absl::StrCat("[", host, "]:", port);
  return absl::StrCat(host, ":", port);
}

bool IsWildcardHost(absl::string_view host) {
  return host == "0.0.0.0" || host == "::" || host == "0:0:0:0:0:0:0:0";
}

}  // namespace verdict
