// SPDX-License-Identifier: Apache-2.0
#include "services/cli/npy.h"

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace verdict::cli {

absl::Status WriteNpyFloat32(const std::string& path, absl::Span<const float> data,
                             const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  if (n != static_cast<int64_t>(data.size())) {
    return absl::InvalidArgumentError("npy shape does not match the data");
  }
  std::string shape_text = absl::StrJoin(shape, ", ");
  if (shape.size() == 1) shape_text += ",";
  std::string header = absl::StrCat("{'descr': '<f4', 'fortran_order': False, 'shape': (",
                                    shape_text, "), }");
  // Magic (6) + version (2) + header length (2) + header, padded with spaces to a multiple of 64
  // and ending in '\n'.
  const size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header.push_back('\n');
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) {
    return absl::UnavailableError(absl::StrCat("cannot write ", path, ": ", std::strerror(errno)));
  }
  const uint16_t header_len = static_cast<uint16_t>(header.size());
  const unsigned char prefix[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0,
                                    static_cast<unsigned char>(header_len & 0xff),
                                    static_cast<unsigned char>(header_len >> 8)};
  bool ok = std::fwrite(prefix, 1, sizeof(prefix), f) == sizeof(prefix) &&
            std::fwrite(header.data(), 1, header.size(), f) == header.size() &&
            std::fwrite(data.data(), sizeof(float), data.size(), f) == data.size();
  ok = (std::fclose(f) == 0) && ok;
  if (!ok) return absl::UnavailableError(absl::StrCat("short write to ", path));
  return absl::OkStatus();
}

}  // namespace verdict::cli
