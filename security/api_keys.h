// SPDX-License-Identifier: Apache-2.0
// API keys and admin tokens: a file of key names and SHA-256 hashes (never the keys), checked in
// constant time. A key may narrow what its holder can do: the verification policies it may ask for
// (replacing the server's allow-list) and how many sessions it may hold at once.
//
// File format, one key per line ('#' starts a comment):
//   NAME sha256:HEX [policies=P,P,...] [max_sessions=N]
// NAME is what logs and metrics show ([A-Za-z0-9_.-]+, unique); HEX is the SHA-256 of the key's
// bytes (`verdict security hash-key` prints the line). Keys are random tokens of at least 128 bits
// (`verdict security hash-key --generate`), so an unsalted hash is enough: nobody can guess one
// from its hash.
#ifndef VERDICT_SECURITY_API_KEYS_H_
#define VERDICT_SECURITY_API_KEYS_H_

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "spec/speculation_params.h"

namespace verdict::security {

using KeyHash = std::array<uint8_t, 32>;

struct ApiKey {
  std::string name;
  KeyHash hash{};
  // The policies this key may ask for (EXACT always); unset: the server's allow-list.
  std::optional<std::vector<spec::Policy>> allowed_policies;
  int max_sessions = 0;  // 0: only the server's limit
};

KeyHash HashKey(absl::string_view key);
std::string HashKeyHex(absl::string_view key);
// Lower-case hex SHA-256 of any bytes (HashKeyHex of a key; the judge head file's identity).
std::string Sha256Hex(absl::string_view data);
// A new random key (32 bytes from the OS, URL-safe base64 with a "vdk-" prefix).
absl::StatusOr<std::string> GenerateKey();
// The key file line for `key` ("NAME sha256:HEX").
std::string KeyFileLine(absl::string_view name, absl::string_view key);

// A key file's entries. kInvalidArgument naming the line for a malformed one, a duplicate name, an
// unknown policy; kNotFound when the file cannot be read.
absl::StatusOr<std::vector<ApiKey>> ParseKeyFile(absl::string_view text, absl::string_view file_name);
absl::StatusOr<std::vector<ApiKey>> LoadKeyFile(const std::string& path);

// The credential an `authorization` header or metadata value carries ("Bearer KEY"); empty when
// the value is absent or of another scheme.
absl::string_view BearerToken(absl::string_view authorization);

// The keys of one file, reloadable while requests are checked against them.
class KeyRing {
 public:
  // Loads `path` (errors as LoadKeyFile's). `what` names the file's role in messages ("API keys").
  static absl::StatusOr<std::unique_ptr<KeyRing>> Load(std::string what, std::string path);
  // For tests and embedders: keys from memory; Reload() then keeps them.
  KeyRing(std::string what, std::vector<ApiKey> keys);

  // The key whose hash matches `token`, compared with every entry in constant time. kUnauthenticated
  // when `token` is empty ("no API key") or matches none ("the API key is not valid").
  absl::StatusOr<std::shared_ptr<const ApiKey>> Authenticate(absl::string_view token) const;

  // Re-reads the file: true when it changed and loaded (keys removed from it stop working at once),
  // false when unchanged, an error when it changed and does not load (the old keys stay).
  absl::StatusOr<bool> Reload();

  size_t size() const;
  const std::string& path() const { return path_; }
  const std::string& what() const { return what_; }

 private:
  const std::string what_;
  std::string path_;
  mutable absl::Mutex mu_;
  std::string text_ ABSL_GUARDED_BY(mu_);
  std::vector<std::shared_ptr<const ApiKey>> entries_ ABSL_GUARDED_BY(mu_);
};

}  // namespace verdict::security

#endif  // VERDICT_SECURITY_API_KEYS_H_
