// SPDX-License-Identifier: Apache-2.0
// TLS material as Verdict reads it from PEM files (OpenSSL): a certificate chain, its private key
// and a CA bundle, checked before use, so that a broken or mismatched file is refused with a
// message naming the file instead of failing every handshake later.
#ifndef VERDICT_SECURITY_TLS_MATERIAL_H_
#define VERDICT_SECURITY_TLS_MATERIAL_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace verdict::security {

// Which files make up one TLS identity and its trust anchors; any may be empty (a client that only
// verifies servers has a CA and no identity; a server that asks no client certificates has no CA).
struct TlsFiles {
  std::string cert_file;  // certificate chain, leaf first
  std::string key_file;   // unencrypted private key
  std::string ca_file;    // bundle of trusted CA certificates

  bool has_identity() const { return !cert_file.empty(); }
  bool operator==(const TlsFiles&) const = default;
};

// The files' contents, checked, and what logs, tests and status pages show of the leaf.
struct TlsMaterial {
  std::string cert_chain_pem;
  std::string private_key_pem;
  std::string ca_pem;
  std::string serial_hex;                      // the leaf's serial number, upper-case hex
  std::string subject;                         // the leaf's subject, one line
  std::vector<std::string> subject_alt_names;  // "DNS:name", "URI:uri", "IP:address"
  absl::Time not_after;
};

// Reads `files` and checks them: every file parses as PEM of the right kind, the key matches the
// leaf certificate, the leaf is valid now, and (when `verify_chain` and a CA is given) the chain
// verifies against the CA. kNotFound for a missing file, kInvalidArgument for the rest, each naming
// the file and the reason.
absl::StatusOr<TlsMaterial> LoadTlsMaterial(const TlsFiles& files, bool verify_chain);

// Whether `names` (as TlsMaterial::subject_alt_names) holds `identity` as a DNS name or a URI.
bool HasIdentity(const std::vector<std::string>& names, absl::string_view identity);

// Reads a whole file; kNotFound naming it when it cannot be opened.
absl::StatusOr<std::string> ReadFileToString(const std::string& path);

}  // namespace verdict::security

#endif  // VERDICT_SECURITY_TLS_MATERIAL_H_
