// SPDX-License-Identifier: Apache-2.0
// Reader for GGUF (versions 2 and 3, little-endian) files: llama.cpp's single-file format with
// typed metadata (architecture hyper-parameters, tokenizer vocabulary) and tensors.
// The whole header is validated when the file is opened; counts and lengths are checked against
// the bytes actually present before anything is allocated, so a hostile header cannot make the
// reader allocate more than a small multiple of the file's size. Metadata values are views into
// the file and are decoded on access.
// A GgufFile is immutable after creation: safe to read from any thread.
#ifndef VERDICT_ENGINE_IO_GGUF_H_
#define VERDICT_ENGINE_IO_GGUF_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/io/mapped_file.h"
#include "engine/io/weight_source.h"

namespace verdict::engine {

// Metadata value types, numbered as in the GGUF specification.
enum class GgufType : uint32_t {
  kUint8 = 0,
  kInt8 = 1,
  kUint16 = 2,
  kInt16 = 3,
  kUint32 = 4,
  kInt32 = 5,
  kFloat32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kUint64 = 10,
  kInt64 = 11,
  kFloat64 = 12,
};

// "u8", "i32", "f32", "bool", "string", "array", ...
absl::string_view GgufTypeName(GgufType type);

// The name of a GGML tensor type id ("F32", "Q8_0", "Q4_K", ...; "type <id>" if unknown).
std::string GgmlTypeName(uint32_t ggml_type);

inline constexpr uint32_t kGgufDefaultAlignment = 32;
// Arrays nested deeper than this are rejected (the format allows nesting; nobody uses it).
inline constexpr int kGgufMaxArrayDepth = 8;

// One metadata value: a typed view of bytes inside the file, valid while its GgufFile lives.
// The bytes were validated when the file was parsed. Conversions return InvalidArgument when
// the value's type does not fit (the message names both types) and leave nothing behind.
class GgufValue {
 public:
  GgufType type() const { return type_; }
  bool is_array() const { return type_ == GgufType::kArray; }
  // Element type and length of an array (kArray and 0 elements for a scalar).
  GgufType element_type() const { return element_type_; }
  uint64_t array_size() const { return count_; }

  // Any integer type (u64 values above INT64_MAX are an error).
  absl::StatusOr<int64_t> AsInt() const;
  // f32, f64 or any integer type.
  absl::StatusOr<double> AsFloat() const;
  absl::StatusOr<bool> AsBool() const;
  absl::StatusOr<std::string> AsString() const;
  // Arrays: strings; f32/f64/integers as float; integers as int64.
  absl::StatusOr<std::vector<std::string>> AsStringArray() const;
  absl::StatusOr<std::vector<float>> AsFloatArray() const;
  absl::StatusOr<std::vector<int64_t>> AsIntArray() const;
  // Short human-readable rendering (arrays show their first `max_elements` elements).
  std::string DebugString(size_t max_elements = 8) const;

 private:
  friend class GgufFile;
  friend class GgufParser;
  GgufType type_ = GgufType::kUint8;
  GgufType element_type_ = GgufType::kArray;
  uint64_t count_ = 0;             // array length
  const uint8_t* data_ = nullptr;  // scalar bytes, string bytes, or the array's elements
  size_t size_ = 0;                // bytes at data_
};

// A parsed GGUF file: metadata plus tensors (a WeightSource whose names are GGUF's own, e.g.
// "blk.0.attn_q.weight"; shapes are outermost-first, the reverse of GGUF's ne[]).
// Supported tensor types: F32, F16, BF16, Q8_0 and the block quantizations Q4_0, Q4_1, Q5_0, Q5_1,
// Q4_K, Q5_K, Q6_K (engine/ggml_quants.h; kept quantized, dequantized inside the matrix kernels).
class GgufFile : public WeightSource {
 public:
  // Maps `path` and parses it. Errors: MappedFile::Open's (NotFound, ...) and Parse's.
  static absl::StatusOr<std::unique_ptr<GgufFile>> Open(const std::string& path);

  // Parses a complete GGUF file held in memory without copying it: the result points into
  // [data, data + size), which must outlive it. Never reads outside that range.
  // Errors (all InvalidArgument, naming the offending key/tensor): bad magic, a version other
  // than 2 or 3, truncated or inconsistent header (counts or lengths past the end of the file),
  // unknown value type, arrays nested deeper than kGgufMaxArrayDepth, duplicate keys or tensor
  // names, general.alignment not a power-of-two u32, a tensor type not listed above
  // (the message names the type and lists the supported ones), more than 4 or 0 dimensions, a
  // Q8_0 row not a multiple of 32, tensor data misaligned, out of bounds or overlapping.
  static absl::StatusOr<std::unique_ptr<GgufFile>> Parse(const uint8_t* data, size_t size);

  uint32_t version() const { return version_; }
  uint32_t alignment() const { return alignment_; }
  // Byte offset of the tensor data section from the start of the file.
  size_t data_offset() const { return data_offset_; }

  // The value stored under `key`, or nullptr.
  const GgufValue* FindMetadata(absl::string_view key) const;
  // All metadata keys in file order.
  std::vector<std::string> MetadataKeys() const { return keys_; }

  // Typed metadata accessors. Errors: NotFound if `key` is absent; InvalidArgument if its type
  // does not convert (see GgufValue).
  absl::StatusOr<std::string> GetString(absl::string_view key) const;
  absl::StatusOr<int64_t> GetInt(absl::string_view key) const;
  absl::StatusOr<double> GetFloat(absl::string_view key) const;
  absl::StatusOr<bool> GetBool(absl::string_view key) const;
  absl::StatusOr<std::vector<std::string>> GetStringArray(absl::string_view key) const;
  absl::StatusOr<std::vector<float>> GetFloatArray(absl::string_view key) const;
  absl::StatusOr<std::vector<int64_t>> GetIntArray(absl::string_view key) const;

  // WeightSource.
  const WeightTensor* Find(absl::string_view name) const override;
  std::vector<std::string> Names() const override;
  absl::string_view Format() const override { return "gguf"; }

 private:
  friend class GgufParser;
  GgufFile() = default;
  absl::StatusOr<const GgufValue*> Lookup(absl::string_view key) const;

  std::unique_ptr<MappedFile> file_;  // null when parsed from a caller's buffer
  uint32_t version_ = 0;
  uint32_t alignment_ = kGgufDefaultAlignment;
  size_t data_offset_ = 0;
  std::vector<std::string> keys_;
  absl::flat_hash_map<std::string, GgufValue> metadata_;
  std::vector<WeightTensor> tensors_;  // sorted by name
  absl::flat_hash_map<std::string, size_t> tensor_index_;
};

}  // namespace verdict::engine

#endif  // VERDICT_ENGINE_IO_GGUF_H_
