// SPDX-License-Identifier: Apache-2.0
#include "security/api_keys.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "security/tls_material.h"

namespace verdict::security {
namespace {

bool ValidName(absl::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '.' && c != '-') return false;
  }
  return true;
}

}  // namespace

KeyHash HashKey(absl::string_view key) {
  KeyHash out{};
  unsigned int n = 0;
  EVP_Digest(key.data(), key.size(), out.data(), &n, EVP_sha256(), nullptr);
  return out;
}

std::string Sha256Hex(absl::string_view data) { return HashKeyHex(data); }

std::string HashKeyHex(absl::string_view key) {
  const KeyHash h = HashKey(key);
  return absl::BytesToHexString(absl::string_view(reinterpret_cast<const char*>(h.data()), h.size()));
}

absl::StatusOr<std::string> GenerateKey() {
  unsigned char bytes[32];
  if (RAND_bytes(bytes, sizeof(bytes)) != 1) return absl::InternalError("the OS gave no random bytes");
  return absl::StrCat("vdk-", absl::WebSafeBase64Escape(absl::string_view(reinterpret_cast<char*>(bytes), sizeof(bytes))));
}

std::string KeyFileLine(absl::string_view name, absl::string_view key) {
  return absl::StrCat(name, " sha256:", HashKeyHex(key));
}

absl::StatusOr<std::vector<ApiKey>> ParseKeyFile(absl::string_view text, absl::string_view file_name) {
  std::vector<ApiKey> keys;
  absl::flat_hash_set<std::string> names;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    if (const size_t hash = line.find('#'); hash != absl::string_view::npos) line = line.substr(0, hash);
    std::vector<absl::string_view> fields = absl::StrSplit(line, absl::ByAnyChar(" \t\r"), absl::SkipEmpty());
    if (fields.empty()) continue;
    auto bad = [&](absl::string_view why) {
      return absl::InvalidArgumentError(absl::StrCat(file_name, ":", line_number, ": ", why));
    };
    if (fields.size() < 2) return bad("expected NAME sha256:HEX [policies=...] [max_sessions=N]");
    ApiKey key;
    key.name = std::string(fields[0]);
    if (!ValidName(key.name)) return bad(absl::StrCat("key name \"", key.name, "\" is not [A-Za-z0-9_.-]{1,64}"));
    if (!names.insert(key.name).second) return bad(absl::StrCat("key name \"", key.name, "\" appears twice"));
    absl::string_view hex = fields[1];
    if (!absl::ConsumePrefix(&hex, "sha256:") || hex.size() != 64 ||
        !std::all_of(hex.begin(), hex.end(), [](char c) { return absl::ascii_isxdigit(static_cast<unsigned char>(c)); })) {
      return bad("the second field must be sha256: and 64 hex digits (the hash of the key, not the key)");
    }
    const std::string bytes = absl::HexStringToBytes(hex);
    std::copy(bytes.begin(), bytes.end(), key.hash.begin());
    for (size_t i = 2; i < fields.size(); ++i) {
      absl::string_view option = fields[i];
      if (absl::ConsumePrefix(&option, "policies=")) {
        key.allowed_policies.emplace();
        for (absl::string_view name : absl::StrSplit(option, ',', absl::SkipEmpty())) {
          absl::StatusOr<spec::PolicySpelling> p = spec::ParsePolicyName(name);
          if (!p.ok()) return bad(p.status().message());
          key.allowed_policies->push_back(p->policy);
        }
      } else if (absl::ConsumePrefix(&option, "max_sessions=")) {
        if (!absl::SimpleAtoi(option, &key.max_sessions) || key.max_sessions < 1) {
          return bad("max_sessions must be a positive integer");
        }
      } else {
        return bad(absl::StrCat("unknown option \"", fields[i], "\" (policies=..., max_sessions=N)"));
      }
    }
    keys.push_back(std::move(key));
  }
  return keys;
}

absl::StatusOr<std::vector<ApiKey>> LoadKeyFile(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFileToString(path);
  if (!text.ok()) return text.status();
  return ParseKeyFile(*text, path);
}

absl::string_view BearerToken(absl::string_view authorization) {
  authorization = absl::StripAsciiWhitespace(authorization);
  if (authorization.size() < 7 || !absl::EqualsIgnoreCase(authorization.substr(0, 7), "bearer ")) return {};
  return absl::StripAsciiWhitespace(authorization.substr(7));
}

KeyRing::KeyRing(std::string what, std::vector<ApiKey> keys) : what_(std::move(what)) {
  for (ApiKey& k : keys) entries_.push_back(std::make_shared<const ApiKey>(std::move(k)));
}

absl::StatusOr<std::unique_ptr<KeyRing>> KeyRing::Load(std::string what, std::string path) {
  absl::StatusOr<std::string> text = ReadFileToString(path);
  if (!text.ok()) return absl::Status(text.status().code(), absl::StrCat(what, ": ", text.status().message()));
  absl::StatusOr<std::vector<ApiKey>> keys = ParseKeyFile(*text, path);
  if (!keys.ok()) return absl::Status(keys.status().code(), absl::StrCat(what, ": ", keys.status().message()));
  auto ring = std::make_unique<KeyRing>(std::move(what), *std::move(keys));
  ring->path_ = std::move(path);
  absl::MutexLock lock(&ring->mu_);
  ring->text_ = *std::move(text);
  return ring;
}

absl::StatusOr<std::shared_ptr<const ApiKey>> KeyRing::Authenticate(absl::string_view token) const {
  if (token.empty()) {
    return absl::UnauthenticatedError(
        "no API key: send the header \"authorization: Bearer <key>\" (gRPC metadata or HTTP)");
  }
  const KeyHash presented = HashKey(token);
  std::shared_ptr<const ApiKey> match;
  absl::MutexLock lock(&mu_);
  // Every entry is compared, whatever matched, so the time taken says nothing about the key.
  for (const std::shared_ptr<const ApiKey>& e : entries_) {
    if (CRYPTO_memcmp(presented.data(), e->hash.data(), presented.size()) == 0) match = e;
  }
  if (match == nullptr) return absl::UnauthenticatedError("the API key is not valid");
  return match;
}

absl::StatusOr<bool> KeyRing::Reload() {
  if (path_.empty()) return false;
  absl::StatusOr<std::string> text = ReadFileToString(path_);
  if (!text.ok()) {
    return absl::Status(text.status().code(),
                        absl::StrCat(what_, ": still using the old keys: ", text.status().message()));
  }
  {
    absl::MutexLock lock(&mu_);
    if (*text == text_) return false;
  }
  absl::StatusOr<std::vector<ApiKey>> keys = ParseKeyFile(*text, path_);
  if (!keys.ok()) {
    return absl::Status(keys.status().code(),
                        absl::StrCat(what_, ": refused the changed file, still using the old keys: ", keys.status().message()));
  }
  std::vector<std::shared_ptr<const ApiKey>> entries;
  for (ApiKey& k : *keys) entries.push_back(std::make_shared<const ApiKey>(std::move(k)));
  absl::MutexLock lock(&mu_);
  text_ = *std::move(text);
  entries_ = std::move(entries);
  return true;
}

size_t KeyRing::size() const {
  absl::MutexLock lock(&mu_);
  return entries_.size();
}

}  // namespace verdict::security
