// SPDX-License-Identifier: Apache-2.0
#include "transport/wire_format.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace verdict::transport::internal {
namespace {

// Explicit little-endian byte order, so the format does not depend on the host.
template <typename T>
void AppendLittleEndian(T value, std::string* out) {
  for (size_t i = 0; i < sizeof(T); ++i) {
    out->push_back(static_cast<char>(static_cast<uint64_t>(value) >> (8 * i) & 0xff));
  }
}

template <typename T>
T ReadLittleEndian(absl::string_view bytes, size_t offset) {
  uint64_t value = 0;
  for (size_t i = 0; i < sizeof(T); ++i) {
    value |= uint64_t{static_cast<unsigned char>(bytes[offset + i])} << (8 * i);
  }
  return static_cast<T>(value);
}

// FNV-1a, 64 bit: catches accidental corruption of the worker address (not an attacker).
uint64_t Fnv1a64(absl::string_view bytes) {
  uint64_t hash = 0xcbf29ce484222325ULL;
  for (char c : bytes) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 0x100000001b3ULL;
  }
  return hash;
}

}  // namespace

std::string EncodeHandshake(const char* magic, const Handshake& handshake) {
  std::string out(magic, 8);
  AppendLittleEndian<uint16_t>(kHandshakeVersion, &out);
  AppendLittleEndian<uint16_t>(handshake.status, &out);
  AppendLittleEndian<uint32_t>(static_cast<uint32_t>(handshake.worker_address.size()), &out);
  AppendLittleEndian<uint64_t>(Fnv1a64(handshake.worker_address), &out);
  out += handshake.worker_address;
  return out;
}

absl::StatusOr<std::optional<Handshake>> ParseHandshake(const char* magic, absl::string_view bytes) {
  if (bytes.empty()) return std::nullopt;
  // Compare what has arrived of the magic at once, so garbage is refused after its first byte.
  const size_t magic_bytes = std::min<size_t>(bytes.size(), 8);
  if (std::memcmp(bytes.data(), magic, magic_bytes) != 0) {
    return absl::DataLossError(absl::StrCat("not a ", absl::string_view(magic, 8), " handshake"));
  }
  if (bytes.size() < kHandshakeHeaderBytes) return std::nullopt;
  const auto version = ReadLittleEndian<uint16_t>(bytes, 8);
  if (version != kHandshakeVersion) {
    return absl::DataLossError(absl::StrCat("unsupported handshake version ", version));
  }
  Handshake handshake;
  handshake.status = ReadLittleEndian<uint16_t>(bytes, 10);
  const auto address_bytes = ReadLittleEndian<uint32_t>(bytes, 12);
  if (address_bytes > kMaxWorkerAddressBytes) {
    return absl::DataLossError(absl::StrCat("handshake address of ", address_bytes, " bytes is too long"));
  }
  const size_t total = kHandshakeHeaderBytes + address_bytes;
  if (bytes.size() < total) return std::nullopt;
  if (bytes.size() > total) return absl::DataLossError("bytes after the end of the handshake");
  handshake.worker_address.assign(bytes.data() + kHandshakeHeaderBytes, address_bytes);
  if (Fnv1a64(handshake.worker_address) != ReadLittleEndian<uint64_t>(bytes, 16)) {
    return absl::DataLossError("handshake address checksum mismatch");
  }
  return handshake;
}

void AppendFramePrefix(const FramePrefix& prefix, std::string* out) {
  AppendLittleEndian<uint32_t>(kFrameMagic, out);
  AppendLittleEndian<uint16_t>(kFrameVersion, out);
  AppendLittleEndian<uint16_t>(prefix.flags, out);
  AppendLittleEndian<uint64_t>(prefix.sequence, out);
  AppendLittleEndian<uint64_t>(prefix.header_bytes, out);
  AppendLittleEndian<uint64_t>(prefix.payload_bytes, out);
}

absl::StatusOr<FramePrefix> DecodeFramePrefix(absl::string_view am_header) {
  if (am_header.size() < kFramePrefixBytes) {
    return absl::DataLossError(absl::StrCat("frame prefix too short: ", am_header.size(), " bytes, want ",
                                            kFramePrefixBytes));
  }
  const auto magic = ReadLittleEndian<uint32_t>(am_header, 0);
  if (magic != kFrameMagic) {
    return absl::DataLossError(absl::StrCat("bad frame magic 0x", absl::Hex(magic)));
  }
  const auto version = ReadLittleEndian<uint16_t>(am_header, 4);
  if (version != kFrameVersion) {
    return absl::DataLossError(
        absl::StrCat("unsupported frame version ", version, " (this build speaks ", kFrameVersion, ")"));
  }
  FramePrefix prefix;
  prefix.flags = ReadLittleEndian<uint16_t>(am_header, 6);
  if ((prefix.flags & ~kHeaderInData) != 0) {
    return absl::DataLossError(absl::StrCat("unknown frame flags 0x", absl::Hex(prefix.flags)));
  }
  prefix.sequence = ReadLittleEndian<uint64_t>(am_header, 8);
  prefix.header_bytes = ReadLittleEndian<uint64_t>(am_header, 16);
  prefix.payload_bytes = ReadLittleEndian<uint64_t>(am_header, 24);
  return prefix;
}

absl::Status CheckFrameLayout(const FramePrefix& prefix, size_t am_header_bytes, size_t data_bytes,
                              uint64_t max_frame_bytes) {
  // Compare each length with the limit before adding them, so hostile values cannot overflow.
  if (prefix.header_bytes > max_frame_bytes || prefix.payload_bytes > max_frame_bytes ||
      prefix.header_bytes + prefix.payload_bytes > max_frame_bytes) {
    return absl::DataLossError(absl::StrCat("frame of ", prefix.header_bytes, " + ", prefix.payload_bytes,
                                            " bytes exceeds the limit of ", max_frame_bytes));
  }
  const bool header_in_data = (prefix.flags & kHeaderInData) != 0;
  const uint64_t want_am_header = kFramePrefixBytes + (header_in_data ? 0 : prefix.header_bytes);
  const uint64_t want_data = prefix.payload_bytes + (header_in_data ? prefix.header_bytes : 0);
  if (am_header_bytes != want_am_header || data_bytes != want_data) {
    return absl::DataLossError(absl::StrCat("frame lengths do not add up: header ", prefix.header_bytes,
                                            ", payload ", prefix.payload_bytes, " but the message carries ",
                                            am_header_bytes, " header and ", data_bytes, " data bytes"));
  }
  return absl::OkStatus();
}

}  // namespace verdict::transport::internal
