// SPDX-License-Identifier: Apache-2.0
// Loader for Hugging Face safetensors checkpoints: one file, a sharded checkpoint
// (model.safetensors.index.json + shards), or a model directory holding either.
// Everything is validated before use: header length against the file size, JSON syntax, dtypes,
// shapes against byte ranges, ranges inside the data section, no overlaps, no duplicate names.
// Functions here are thread-safe; the returned WeightSource is immutable.
#ifndef VERDICT_ENGINE_IO_SAFETENSORS_H_
#define VERDICT_ENGINE_IO_SAFETENSORS_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/io/weight_source.h"

namespace verdict::engine {

// Headers larger than this are rejected before parsing (real checkpoints use a few hundred KB).
inline constexpr uint64_t kMaxSafetensorsHeaderBytes = uint64_t{100} << 20;

// A parsed safetensors file. Tensor data pointers point into the buffer given to
// ParseSafetensorsHeader, which must outlive them. Tensor data need not be aligned (the format
// does not promise it); read through memcpy or byte-wise.
struct SafetensorsFile {
  std::vector<WeightTensor> tensors;            // sorted by name
  std::map<std::string, std::string> metadata;  // "__metadata__" (string values)
  size_t data_offset = 0;                       // 8 + header length: where tensor data starts
};

// Parses and validates a complete safetensors file held in memory (`data`, `size` bytes: the
// 8-byte little-endian header length, the JSON header, the data section). Supported dtypes:
// F32, F16, BF16, I32. `source` names the buffer in error messages (e.g. the file path).
// Errors: InvalidArgument for anything malformed or unsupported (truncated file, header length
// over kMaxSafetensorsHeaderBytes or past the end, bad JSON, unknown dtype, shape and byte
// range disagreeing, range outside the data section, overlapping tensors, duplicate names).
// Never reads outside [data, data + size).
absl::StatusOr<SafetensorsFile> ParseSafetensorsHeader(const uint8_t* data, size_t size,
                                                       absl::string_view source = "<buffer>");

// Opens a checkpoint, memory-mapped. `path` is one of:
//   - a .safetensors file;
//   - a model.safetensors.index.json (its "weight_map" names shards in the same directory);
//   - a directory containing model.safetensors.index.json or model.safetensors (the index wins).
// Tensor names are the checkpoint's own (e.g. "model.layers.0.self_attn.q_proj.weight").
// Errors: NotFound (missing file or directory without a checkpoint), InvalidArgument (malformed
// file or index, a shard name with a path separator, a tensor the index maps to a shard that
// lacks it, the same tensor in two shards), plus MappedFile::Open's errors.
absl::StatusOr<std::unique_ptr<WeightSource>> OpenSafetensors(const std::string& path);

}  // namespace verdict::engine

#endif  // VERDICT_ENGINE_IO_SAFETENSORS_H_
