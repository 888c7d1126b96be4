// SPDX-License-Identifier: Apache-2.0
// Writes a float32 array as a NumPy .npy file (format version 1.0), readable by numpy.load.
#ifndef VERDICT_SERVICES_CLI_NPY_H_
#define VERDICT_SERVICES_CLI_NPY_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"

namespace verdict::cli {

// Errors: kPermissionDenied/kNotFound-style kUnavailable when the file cannot be written;
// kInvalidArgument when shape does not match data.size().
absl::Status WriteNpyFloat32(const std::string& path, absl::Span<const float> data,
                             const std::vector<int64_t>& shape);

}  // namespace verdict::cli

#endif  // VERDICT_SERVICES_CLI_NPY_H_
