// SPDX-License-Identifier: Apache-2.0
#include "engine/io/safetensors_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <set>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"

namespace verdict::engine {
namespace {

using Json = nlohmann::ordered_json;

absl::Status ErrnoStatus(int err, absl::string_view what, const std::string& path) {
  std::string msg = absl::StrCat("cannot ", what, " '", path, "': ", std::strerror(err));
  switch (err) {
    case ENOENT:
    case ENOTDIR: return absl::NotFoundError(msg);
    case EACCES:
    case EPERM:
    case EROFS: return absl::PermissionDeniedError(msg);
    default: return absl::InternalError(msg);
  }
}

absl::StatusOr<const char*> SafetensorsDTypeName(DType dtype) {
  switch (dtype) {
    case DType::kF32: return "F32";
    case DType::kF16: return "F16";
    case DType::kBF16: return "BF16";
    case DType::kI32: return "I32";
    default: break;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("dtype ", DTypeName(dtype), " cannot be written to safetensors"));
}

// Writes all of `bytes` to `fd`, retrying short writes and EINTR.
bool WriteAll(int fd, const uint8_t* bytes, size_t n) {
  while (n > 0) {
    const ssize_t w = ::write(fd, bytes, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    bytes += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

// Builds the header (with its padding) for `tensors`, which must be sorted by name.
absl::StatusOr<std::string> BuildHeader(const std::vector<const TensorToWrite*>& tensors,
                                        const std::map<std::string, std::string>& metadata,
                                        const std::string& path) {
  Json header = Json::object();
  if (!metadata.empty()) {
    Json meta = Json::object();
    for (const auto& [key, value] : metadata) meta[key] = value;
    header["__metadata__"] = std::move(meta);
  }
  uint64_t offset = 0;
  for (const TensorToWrite* t : tensors) {
    auto name = SafetensorsDTypeName(t->dtype);
    if (!name.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": tensor '", t->name, "': ", name.status().message()));
    }
    int64_t elements = 1;
    for (int64_t d : t->shape) {
      if (d < 0) {
        return absl::InvalidArgumentError(
            absl::StrCat(path, ": tensor '", t->name, "' has a negative dimension"));
      }
      if (d != 0 && elements > std::numeric_limits<int64_t>::max() / d) {
        return absl::InvalidArgumentError(
            absl::StrCat(path, ": tensor '", t->name, "' has too many elements"));
      }
      elements *= d;
    }
    absl::StatusOr<size_t> nbytes = DTypeByteSize(t->dtype, elements);
    if (!nbytes.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": tensor '", t->name, "': ", nbytes.status().message()));
    }
    if (*nbytes != t->data.size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": tensor '", t->name, "' has ", t->data.size(), " bytes of data, but its shape [",
          absl::StrJoin(t->shape, ","), "] of ", *name, " needs ", *nbytes));
    }
    Json entry = Json::object();
    entry["dtype"] = *name;
    entry["shape"] = t->shape;
    entry["data_offsets"] = {offset, offset + *nbytes};
    header[t->name] = std::move(entry);
    offset += *nbytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  return text;
}

}  // namespace

absl::Status WriteSafetensors(const std::string& path, absl::Span<const TensorToWrite> tensors,
                              const std::map<std::string, std::string>& metadata) {
  std::vector<const TensorToWrite*> sorted;
  sorted.reserve(tensors.size());
  std::set<std::string> names;
  for (const TensorToWrite& t : tensors) {
    if (t.name.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": a tensor has an empty name"));
    }
    if (t.name == "__metadata__") {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": '__metadata__' is reserved and cannot name a tensor"));
    }
    if (!names.insert(t.name).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": tensor name '", t.name, "' is used twice"));
    }
    sorted.push_back(&t);
  }
  std::sort(sorted.begin(), sorted.end(),
            [](const TensorToWrite* a, const TensorToWrite* b) { return a->name < b->name; });
  std::string header;
  {
    absl::StatusOr<std::string> built = BuildHeader(sorted, metadata, path);
    if (!built.ok()) return built.status();
    header = *std::move(built);
  }

  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoStatus(errno, "create", tmp);
  auto fail = [&](absl::string_view what) {
    const int err = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    return ErrnoStatus(err, what, tmp);
  };
  uint8_t len[8];
  const uint64_t header_len = header.size();
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(header_len >> (8 * i));
  if (!WriteAll(fd, len, sizeof(len)) ||
      !WriteAll(fd, reinterpret_cast<const uint8_t*>(header.data()), header.size())) {
    return fail("write");
  }
  for (const TensorToWrite* t : sorted) {
    if (!WriteAll(fd, t->data.data(), t->data.size())) return fail("write");
  }
  if (::fsync(fd) != 0) return fail("sync");
  if (::close(fd) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    return ErrnoStatus(err, "close", tmp);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    return ErrnoStatus(err, absl::StrCat("rename '", tmp, "' to"), path);
  }
  return absl::OkStatus();
}

}  // namespace verdict::engine
