// SPDX-License-Identifier: Apache-2.0
// Test-only helpers for engine/io: fixture paths, temporary files, and builders for small
// in-memory GGUF and safetensors files (valid or deliberately broken).
// Not thread-safe; use from one test thread.
#ifndef VERDICT_ENGINE_IO_IO_TEST_UTIL_H_
#define VERDICT_ENGINE_IO_IO_TEST_UTIL_H_

#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"

namespace verdict::engine::io_testing {

// tests/fixtures/models/<rel> in the source tree.
inline std::string FixturePath(const std::string& rel) {
  return std::string(VERDICT_SOURCE_DIR) + "/tests/fixtures/models/" + rel;
}

inline std::vector<uint8_t> ReadFileBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "cannot read " << path;
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline void WriteFileBytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << "cannot write " << path;
}

inline void WriteFileText(const std::string& path, const std::string& text) {
  WriteFileBytes(path, std::vector<uint8_t>(text.begin(), text.end()));
}

// A fresh directory under $TMPDIR (or /tmp), removed with its contents on destruction.
class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base != nullptr && *base ? base : "/tmp") + "/verdict_io_XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    const char* dir = ::mkdtemp(buf.data());
    EXPECT_NE(dir, nullptr);
    path_ = dir != nullptr ? dir : "/tmp";
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

inline void PutLe(std::vector<uint8_t>* out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out->push_back(static_cast<uint8_t>(v >> (8 * i)));
}

// A safetensors file: 8-byte length, `header` verbatim, then `data`.
inline std::vector<uint8_t> MakeSafetensors(const std::string& header,
                                            const std::vector<uint8_t>& data) {
  std::vector<uint8_t> out;
  PutLe(&out, header.size(), 8);
  out.insert(out.end(), header.begin(), header.end());
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

// Builds GGUF files field by field. Keys, values and tensor infos are written in call order;
// tensor data offsets are assigned consecutively (aligned) unless given explicitly.
class GgufBuilder {
 public:
  // Value type ids of the GGUF specification.
  enum Type : uint32_t {
    kU8 = 0,
    kI8 = 1,
    kU16 = 2,
    kI16 = 3,
    kU32 = 4,
    kI32 = 5,
    kF32 = 6,
    kBool = 7,
    kString = 8,
    kArray = 9,
    kU64 = 10,
    kI64 = 11,
    kF64 = 12,
  };

  GgufBuilder& Magic(uint32_t magic) {
    magic_ = magic;
    return *this;
  }
  GgufBuilder& Version(uint32_t version) {
    version_ = version;
    return *this;
  }
  // Alignment used to place tensor data (write general.alignment yourself to declare it).
  GgufBuilder& Alignment(uint32_t alignment) {
    alignment_ = alignment;
    return *this;
  }
  // Overrides the counts written in the header.
  GgufBuilder& CountsOverride(uint64_t n_tensors, uint64_t n_kv) {
    override_counts_ = true;
    n_tensors_override_ = n_tensors;
    n_kv_override_ = n_kv;
    return *this;
  }

  // A key with a value already encoded (type id + bytes).
  GgufBuilder& Raw(const std::string& key, uint32_t type, const std::vector<uint8_t>& value) {
    Str(&kv_, key);
    PutLe(&kv_, type, 4);
    kv_.insert(kv_.end(), value.begin(), value.end());
    ++n_kv_;
    return *this;
  }
  GgufBuilder& U8(const std::string& k, uint8_t v) { return Raw(k, kU8, Le(v, 1)); }
  GgufBuilder& I8(const std::string& k, int8_t v) {
    return Raw(k, kI8, Le(static_cast<uint8_t>(v), 1));
  }
  GgufBuilder& U16(const std::string& k, uint16_t v) { return Raw(k, kU16, Le(v, 2)); }
  GgufBuilder& I16(const std::string& k, int16_t v) {
    return Raw(k, kI16, Le(static_cast<uint16_t>(v), 2));
  }
  GgufBuilder& U32(const std::string& k, uint32_t v) { return Raw(k, kU32, Le(v, 4)); }
  GgufBuilder& I32(const std::string& k, int32_t v) {
    return Raw(k, kI32, Le(static_cast<uint32_t>(v), 4));
  }
  GgufBuilder& U64(const std::string& k, uint64_t v) { return Raw(k, kU64, Le(v, 8)); }
  GgufBuilder& I64(const std::string& k, int64_t v) {
    return Raw(k, kI64, Le(static_cast<uint64_t>(v), 8));
  }
  GgufBuilder& F32(const std::string& k, float v) { return Raw(k, kF32, Le(Bits32(v), 4)); }
  GgufBuilder& F64(const std::string& k, double v) {
    uint64_t b;
    std::memcpy(&b, &v, 8);
    return Raw(k, kF64, Le(b, 8));
  }
  GgufBuilder& Bool(const std::string& k, bool v) { return Raw(k, kBool, Le(v ? 1 : 0, 1)); }
  GgufBuilder& String(const std::string& k, const std::string& v) {
    std::vector<uint8_t> b;
    Str(&b, v);
    return Raw(k, kString, b);
  }
  GgufBuilder& StringArray(const std::string& k, const std::vector<std::string>& v) {
    std::vector<uint8_t> b;
    PutLe(&b, kString, 4);
    PutLe(&b, v.size(), 8);
    for (const std::string& s : v) Str(&b, s);
    return Raw(k, kArray, b);
  }
  GgufBuilder& I32Array(const std::string& k, const std::vector<int32_t>& v) {
    std::vector<uint8_t> b;
    PutLe(&b, kI32, 4);
    PutLe(&b, v.size(), 8);
    for (int32_t x : v) PutLe(&b, static_cast<uint32_t>(x), 4);
    return Raw(k, kArray, b);
  }
  GgufBuilder& F32Array(const std::string& k, const std::vector<float>& v) {
    std::vector<uint8_t> b;
    PutLe(&b, kF32, 4);
    PutLe(&b, v.size(), 8);
    for (float x : v) PutLe(&b, Bits32(x), 4);
    return Raw(k, kArray, b);
  }

  // A tensor: `ne` innermost-first as GGUF stores it; `data` is its payload.
  GgufBuilder& Tensor(const std::string& name, uint32_t ggml_type, std::vector<uint64_t> ne,
                      std::vector<uint8_t> data) {
    tensors_.push_back({name, ggml_type, std::move(ne), std::move(data), false, 0});
    return *this;
  }
  // A tensor with an explicit offset into the data section (its payload is not written).
  GgufBuilder& TensorAt(const std::string& name, uint32_t ggml_type, std::vector<uint64_t> ne,
                        uint64_t offset) {
    tensors_.push_back({name, ggml_type, std::move(ne), {}, true, offset});
    return *this;
  }
  // Extra bytes appended after the tensor data (to give TensorAt tensors something to point at).
  GgufBuilder& TrailingData(size_t n) {
    trailing_ = n;
    return *this;
  }

  std::vector<uint8_t> Build() const {
    std::vector<uint8_t> out;
    PutLe(&out, magic_, 4);
    PutLe(&out, version_, 4);
    PutLe(&out, override_counts_ ? n_tensors_override_ : tensors_.size(), 8);
    PutLe(&out, override_counts_ ? n_kv_override_ : n_kv_, 8);
    out.insert(out.end(), kv_.begin(), kv_.end());
    std::vector<uint8_t> data;
    for (const TensorSpec& t : tensors_) {
      Str(&out, t.name);
      PutLe(&out, t.ne.size(), 4);
      for (uint64_t d : t.ne) PutLe(&out, d, 8);
      PutLe(&out, t.type, 4);
      uint64_t offset = t.offset;
      if (!t.explicit_offset) {
        while (data.size() % alignment_ != 0) data.push_back(0);
        offset = data.size();
        data.insert(data.end(), t.data.begin(), t.data.end());
      }
      PutLe(&out, offset, 8);
    }
    while (out.size() % alignment_ != 0) out.push_back(0);
    out.insert(out.end(), data.begin(), data.end());
    out.insert(out.end(), trailing_, 0);
    return out;
  }

  static std::vector<uint8_t> Le(uint64_t v, int bytes) {
    std::vector<uint8_t> b;
    PutLe(&b, v, bytes);
    return b;
  }
  static uint32_t Bits32(float f) {
    uint32_t b;
    std::memcpy(&b, &f, 4);
    return b;
  }
  static void Str(std::vector<uint8_t>* out, const std::string& s) {
    PutLe(out, s.size(), 8);
    out->insert(out->end(), s.begin(), s.end());
  }

 private:
  struct TensorSpec {
    std::string name;
    uint32_t type;
    std::vector<uint64_t> ne;
    std::vector<uint8_t> data;
    bool explicit_offset;
    uint64_t offset;
  };
  uint32_t magic_ = 0x46554747;
  uint32_t version_ = 3;
  uint32_t alignment_ = 32;
  bool override_counts_ = false;
  uint64_t n_tensors_override_ = 0;
  uint64_t n_kv_override_ = 0;
  uint64_t n_kv_ = 0;
  std::vector<uint8_t> kv_;
  std::vector<TensorSpec> tensors_;
  size_t trailing_ = 0;
};

// f32 values as little-endian bytes.
inline std::vector<uint8_t> F32Bytes(const std::vector<float>& v) {
  std::vector<uint8_t> out;
  for (float f : v) PutLe(&out, GgufBuilder::Bits32(f), 4);
  return out;
}

}  // namespace verdict::engine::io_testing

#endif  // VERDICT_ENGINE_IO_IO_TEST_UTIL_H_
