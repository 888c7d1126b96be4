// SPDX-License-Identifier: Apache-2.0
// Writer for single-file safetensors checkpoints (the format OpenSafetensors reads): an 8-byte
// little-endian header length, a JSON header (tensors by name with dtype, shape and data_offsets,
// plus "__metadata__"), then the tensor data. Tensors are laid out in name order, contiguously,
// and the header is padded with spaces to a multiple of 8 bytes so the data section is 8-byte
// aligned. The file is written to `path + ".tmp"` and renamed into place, so a reader never
// sees a partial file. Functions here are thread-safe (two calls must not write the same path).
#ifndef VERDICT_ENGINE_IO_SAFETENSORS_WRITER_H_
#define VERDICT_ENGINE_IO_SAFETENSORS_WRITER_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "engine/dtype.h"

namespace verdict::engine {

// One tensor to write. `data` holds product(shape) elements of `dtype`, little-endian, row-major
// (outermost dimension first); it is only read during WriteSafetensors. An empty shape is a
// scalar (one element).
struct TensorToWrite {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  absl::Span<const uint8_t> data;
};

// Writes `tensors` and `metadata` (stored as the header's "__metadata__" string map; omitted
// when empty) as a safetensors file at `path`, replacing any existing file atomically.
// Supported dtypes: F32, F16, BF16, I32.
// Errors: InvalidArgument (empty or duplicate tensor name, the name "__metadata__", negative
// dimension, unsupported dtype, data size not equal to product(shape) * element size);
// NotFound (the parent directory does not exist), PermissionDenied, Internal (any other write,
// sync or rename failure); I/O error messages name the path and the errno text.
// On error nothing is left at `path` that was not there before, and the temporary file is
// removed.
absl::Status WriteSafetensors(const std::string& path, absl::Span<const TensorToWrite> tensors,
                              const std::map<std::string, std::string>& metadata);

}  // namespace verdict::engine

#endif  // VERDICT_ENGINE_IO_SAFETENSORS_WRITER_H_
