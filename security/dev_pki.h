// SPDX-License-Identifier: Apache-2.0
// A development certificate authority: a CA and certificates it signs (ECDSA P-256, SHA-256), for
// tests and for trying TLS on a cluster. Not for production: the CA key sits in a plain file and
// nothing revokes a certificate; production clusters use their own PKI (cert-manager, Vault, ...).
#ifndef VERDICT_SECURITY_DEV_PKI_H_
#define VERDICT_SECURITY_DEV_PKI_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace verdict::security {

struct PemPair {
  std::string cert_pem;
  std::string key_pem;
};

struct CertificateRequest {
  std::string common_name;
  std::vector<std::string> dns_names;
  std::vector<std::string> ip_addresses;  // IPv4 or IPv6 literals
  std::vector<std::string> uris;
  absl::Duration validity = absl::Hours(24 * 30);
};

// A self-signed CA certificate and its key.
absl::StatusOr<PemPair> MakeDevCa(const std::string& common_name, absl::Duration validity);
// A certificate for servers and clients alike (TLS server and client authentication) signed by
// `ca`, with a fresh key and a random 128-bit serial number.
absl::StatusOr<PemPair> MakeDevCertificate(const PemPair& ca, const CertificateRequest& request);

}  // namespace verdict::security

#endif  // VERDICT_SECURITY_DEV_PKI_H_
