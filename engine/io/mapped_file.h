// SPDX-License-Identifier: Apache-2.0
// MappedFile: a read-only memory map of a whole file (the weight loaders' view of checkpoints).
// Immutable after Open(): data() may be read from any thread while the object is alive.
#ifndef VERDICT_ENGINE_IO_MAPPED_FILE_H_
#define VERDICT_ENGINE_IO_MAPPED_FILE_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace verdict::engine {

// Owns a private, read-only mapping of a regular file; unmapped on destruction. The pages are
// shared with the page cache, so mapping a multi-gigabyte checkpoint costs no copy.
class MappedFile {
 public:
  // Maps `path` read-only. An empty file is fine: data() is nullptr and size() is 0.
  // Errors: NotFound (no such file), PermissionDenied, InvalidArgument (a directory or other
  // non-regular file), Internal (mmap or another system call failed). Messages name the path.
  static absl::StatusOr<std::unique_ptr<MappedFile>> Open(const std::string& path);

  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  MappedFile(std::string path, const uint8_t* data, size_t size)
      : path_(std::move(path)), data_(data), size_(size) {}

  std::string path_;
  const uint8_t* data_;
  size_t size_;
};

}  // namespace verdict::engine

#endif  // VERDICT_ENGINE_IO_MAPPED_FILE_H_
