// SPDX-License-Identifier: Apache-2.0
#include "engine/io/gguf.h"

#include "engine/ggml_quants.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"

namespace verdict::engine {
namespace {

constexpr uint32_t kGgufMagic = 0x46554747;  // "GGUF" read as a little-endian u32
// Smallest encodings, used to bound counts by the bytes left before allocating anything.
constexpr size_t kMinKvBytes = 8 + 4 + 1;  // key length, type, 1-byte value
// Name length, n_dims, one dimension, type, offset.
constexpr size_t kMinTensorInfoBytes = 8 + 4 + 8 + 4 + 8;
constexpr size_t kMinArrayBytes = 4 + 8;  // element type, count
constexpr uint32_t kMaxDims = 4;          // GGML_MAX_DIMS

// GGML tensor types we load, by id.
constexpr uint32_t kGgmlF32 = 0;
constexpr uint32_t kGgmlF16 = 1;
constexpr uint32_t kGgmlQ4_0 = 2;
constexpr uint32_t kGgmlQ4_1 = 3;
constexpr uint32_t kGgmlQ5_0 = 6;
constexpr uint32_t kGgmlQ5_1 = 7;
constexpr uint32_t kGgmlQ8_0 = 8;
constexpr uint32_t kGgmlQ4_K = 12;
constexpr uint32_t kGgmlQ5_K = 13;
constexpr uint32_t kGgmlQ6_K = 14;
constexpr uint32_t kGgmlBF16 = 30;

uint64_t LoadLe(const uint8_t* p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// Byte size of a scalar value type; 0 for string/array/unknown.
size_t ScalarSize(GgufType t) {
  switch (t) {
    case GgufType::kUint8:
    case GgufType::kInt8:
    case GgufType::kBool: return 1;
    case GgufType::kUint16:
    case GgufType::kInt16: return 2;
    case GgufType::kUint32:
    case GgufType::kInt32:
    case GgufType::kFloat32: return 4;
    case GgufType::kUint64:
    case GgufType::kInt64:
    case GgufType::kFloat64: return 8;
    case GgufType::kString:
    case GgufType::kArray: return 0;
  }
  return 0;
}

bool IsInteger(GgufType t) {
  switch (t) {
    case GgufType::kUint8:
    case GgufType::kInt8:
    case GgufType::kUint16:
    case GgufType::kInt16:
    case GgufType::kUint32:
    case GgufType::kInt32:
    case GgufType::kUint64:
    case GgufType::kInt64: return true;
    default: return false;
  }
}

bool IsValidType(uint32_t t) { return t <= static_cast<uint32_t>(GgufType::kFloat64); }

// Decodes an integer scalar at p. REQUIRES: IsInteger(t) and enough bytes.
absl::StatusOr<int64_t> DecodeInt(GgufType t, const uint8_t* p) {
  switch (t) {
    case GgufType::kUint8: return static_cast<int64_t>(p[0]);
    case GgufType::kInt8: return static_cast<int64_t>(static_cast<int8_t>(p[0]));
    case GgufType::kUint16: return static_cast<int64_t>(LoadLe(p, 2));
    case GgufType::kInt16: return static_cast<int64_t>(static_cast<int16_t>(LoadLe(p, 2)));
    case GgufType::kUint32: return static_cast<int64_t>(LoadLe(p, 4));
    case GgufType::kInt32: return static_cast<int64_t>(static_cast<int32_t>(LoadLe(p, 4)));
    case GgufType::kInt64: return static_cast<int64_t>(LoadLe(p, 8));
    case GgufType::kUint64: {
      const uint64_t v = LoadLe(p, 8);
      if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return absl::InvalidArgumentError(absl::StrCat("u64 value ", v, " does not fit int64"));
      }
      return static_cast<int64_t>(v);
    }
    default: break;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("value has type ", GgufTypeName(t), ", expected an integer"));
}

// Decodes a numeric scalar at p as double. REQUIRES: integer or float type, enough bytes.
absl::StatusOr<double> DecodeFloat(GgufType t, const uint8_t* p) {
  if (t == GgufType::kFloat32) {
    const uint32_t bits = static_cast<uint32_t>(LoadLe(p, 4));
    float f;
    std::memcpy(&f, &bits, sizeof(f));
    return static_cast<double>(f);
  }
  if (t == GgufType::kFloat64) {
    const uint64_t bits = LoadLe(p, 8);
    double d;
    std::memcpy(&d, &bits, sizeof(d));
    return d;
  }
  if (t == GgufType::kUint64) return static_cast<double>(LoadLe(p, 8));
  if (IsInteger(t)) {
    VERDICT_ASSIGN_OR_RETURN(const int64_t v, DecodeInt(t, p));
    return static_cast<double>(v);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("value has type ", GgufTypeName(t), ", expected a number"));
}

absl::Status TypeMismatch(GgufType actual, absl::string_view expected) {
  return absl::InvalidArgumentError(
      absl::StrCat("value has type ", GgufTypeName(actual), ", expected ", expected));
}

absl::Status ArrayTypeMismatch(const GgufValue& v, absl::string_view expected) {
  if (!v.is_array()) return TypeMismatch(v.type(), absl::StrCat("an array of ", expected));
  return absl::InvalidArgumentError(absl::StrCat("value is an array of ",
                                                 GgufTypeName(v.element_type()),
                                                 ", expected an array of ", expected));
}

// Bounds-checked little-endian cursor over a byte range.
class Reader {
 public:
  Reader(const uint8_t* data, size_t size) : data_(data), size_(size) {}

  size_t pos() const { return pos_; }
  size_t remaining() const { return size_ - pos_; }
  const uint8_t* here() const { return data_ + pos_; }

  bool U32(uint32_t* v) {
    if (remaining() < 4) return false;
    *v = static_cast<uint32_t>(LoadLe(here(), 4));
    pos_ += 4;
    return true;
  }
  bool U64(uint64_t* v) {
    if (remaining() < 8) return false;
    *v = LoadLe(here(), 8);
    pos_ += 8;
    return true;
  }
  bool Skip(uint64_t n) {
    if (n > remaining()) return false;
    pos_ += static_cast<size_t>(n);
    return true;
  }
  // A GGUF string: u64 length + bytes (not NUL-terminated).
  bool String(absl::string_view* s) {
    uint64_t len = 0;
    if (!U64(&len) || len > remaining()) return false;
    *s = absl::string_view(reinterpret_cast<const char*>(here()), static_cast<size_t>(len));
    pos_ += static_cast<size_t>(len);
    return true;
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

// Visits the elements of a validated array value. fn(type, const uint8_t* elem, size_t bytes).
// Strings are passed without their length prefix. Returns false if the bytes are inconsistent
// (cannot happen for values produced by the parser).
template <typename Fn>
bool ForEachElement(const GgufValue& v, const uint8_t* data, size_t size, Fn fn) {
  Reader r(data, size);
  const GgufType t = v.element_type();
  for (uint64_t i = 0; i < v.array_size(); ++i) {
    if (t == GgufType::kString) {
      absl::string_view s;
      if (!r.String(&s)) return false;
      fn(t, reinterpret_cast<const uint8_t*>(s.data()), s.size());
    } else {
      const size_t n = ScalarSize(t);
      if (n == 0 || r.remaining() < n) return false;
      fn(t, r.here(), n);
      r.Skip(n);
    }
  }
  return true;
}

std::string EscapeForMessage(absl::string_view s, size_t max_len = 64) {
  std::string out;
  for (char c : s.substr(0, max_len)) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) {
      absl::StrAppend(&out, "\\x", absl::Hex(u, absl::kZeroPad2));
    } else {
      out.push_back(c);
    }
  }
  if (s.size() > max_len) out += "...";
  return out;
}

}  // namespace

absl::string_view GgufTypeName(GgufType type) {
  switch (type) {
    case GgufType::kUint8: return "u8";
    case GgufType::kInt8: return "i8";
    case GgufType::kUint16: return "u16";
    case GgufType::kInt16: return "i16";
    case GgufType::kUint32: return "u32";
    case GgufType::kInt32: return "i32";
    case GgufType::kFloat32: return "f32";
    case GgufType::kBool: return "bool";
    case GgufType::kString: return "string";
    case GgufType::kArray: return "array";
    case GgufType::kUint64: return "u64";
    case GgufType::kInt64: return "i64";
    case GgufType::kFloat64: return "f64";
  }
  return "unknown";
}

std::string GgmlTypeName(uint32_t ggml_type) {
  static constexpr const char* kNames[] = {
      "F32",   "F16",        "Q4_0",       "Q4_1",       "Q4_2",     "Q4_3",     "Q5_0",
      "Q5_1",  "Q8_0",       "Q8_1",       "Q2_K",       "Q3_K",     "Q4_K",     "Q5_K",
      "Q6_K",  "Q8_K",       "IQ2_XXS",    "IQ2_XS",     "IQ3_XXS",  "IQ1_S",    "IQ4_NL",
      "IQ3_S", "IQ2_S",      "IQ4_XS",     "I8",         "I16",      "I32",      "I64",
      "F64",   "IQ1_M",      "BF16",       "Q4_0_4_4",   "Q4_0_4_8", "Q4_0_8_8", "TQ1_0",
      "TQ2_0", "IQ4_NL_4_4", "IQ4_NL_4_8", "IQ4_NL_8_8", "MXFP4",    "NVFP4",    "Q1_0",
  };
  if (ggml_type < sizeof(kNames) / sizeof(kNames[0])) return kNames[ggml_type];
  return absl::StrCat("type ", ggml_type);
}

// ---- GgufValue ------------------------------------------------------------------------------

absl::StatusOr<int64_t> GgufValue::AsInt() const {
  if (!IsInteger(type_)) return TypeMismatch(type_, "an integer");
  return DecodeInt(type_, data_);
}

absl::StatusOr<double> GgufValue::AsFloat() const {
  if (!IsInteger(type_) && type_ != GgufType::kFloat32 && type_ != GgufType::kFloat64) {
    return TypeMismatch(type_, "a number");
  }
  return DecodeFloat(type_, data_);
}

absl::StatusOr<bool> GgufValue::AsBool() const {
  if (type_ != GgufType::kBool) return TypeMismatch(type_, "bool");
  return data_[0] != 0;
}

absl::StatusOr<std::string> GgufValue::AsString() const {
  if (type_ != GgufType::kString) return TypeMismatch(type_, "string");
  return std::string(reinterpret_cast<const char*>(data_), size_);
}

absl::StatusOr<std::vector<std::string>> GgufValue::AsStringArray() const {
  if (!is_array() || element_type_ != GgufType::kString) return ArrayTypeMismatch(*this, "string");
  std::vector<std::string> out;
  out.reserve(static_cast<size_t>(count_));
  if (!ForEachElement(*this, data_, size_, [&](GgufType, const uint8_t* p, size_t n) {
        out.emplace_back(reinterpret_cast<const char*>(p), n);
      })) {
    return absl::InternalError("inconsistent GGUF string array");
  }
  return out;
}

absl::StatusOr<std::vector<float>> GgufValue::AsFloatArray() const {
  if (!is_array() || (!IsInteger(element_type_) && element_type_ != GgufType::kFloat32 &&
                      element_type_ != GgufType::kFloat64)) {
    return ArrayTypeMismatch(*this, "numbers");
  }
  std::vector<float> out;
  out.reserve(static_cast<size_t>(count_));
  absl::Status status;
  if (!ForEachElement(*this, data_, size_, [&](GgufType t, const uint8_t* p, size_t) {
        absl::StatusOr<double> d = DecodeFloat(t, p);
        if (!d.ok()) status.Update(d.status());
        out.push_back(d.ok() ? static_cast<float>(*d) : 0.0f);
      })) {
    return absl::InternalError("inconsistent GGUF array");
  }
  if (!status.ok()) return status;
  return out;
}

absl::StatusOr<std::vector<int64_t>> GgufValue::AsIntArray() const {
  if (!is_array() || !IsInteger(element_type_)) return ArrayTypeMismatch(*this, "integers");
  std::vector<int64_t> out;
  out.reserve(static_cast<size_t>(count_));
  absl::Status status;
  if (!ForEachElement(*this, data_, size_, [&](GgufType t, const uint8_t* p, size_t) {
        absl::StatusOr<int64_t> v = DecodeInt(t, p);
        if (!v.ok()) status.Update(v.status());
        out.push_back(v.ok() ? *v : 0);
      })) {
    return absl::InternalError("inconsistent GGUF array");
  }
  if (!status.ok()) return status;
  return out;
}

std::string GgufValue::DebugString(size_t max_elements) const {
  auto scalar = [](GgufType t, const uint8_t* p, size_t n) -> std::string {
    if (t == GgufType::kString) {
      return absl::StrCat(
          "\"", EscapeForMessage(absl::string_view(reinterpret_cast<const char*>(p), n)), "\"");
    }
    if (t == GgufType::kBool) return p[0] ? "true" : "false";
    if (t == GgufType::kFloat32 || t == GgufType::kFloat64) return absl::StrCat(*DecodeFloat(t, p));
    if (t == GgufType::kUint64) return absl::StrCat(LoadLe(p, 8));
    absl::StatusOr<int64_t> v = DecodeInt(t, p);
    return v.ok() ? absl::StrCat(*v) : "?";
  };
  if (!is_array()) return scalar(type_, data_, size_);
  std::string out = absl::StrCat(GgufTypeName(element_type_), "[", count_, "]");
  if (element_type_ == GgufType::kArray) return out;
  out += " {";
  size_t i = 0;
  ForEachElement(*this, data_, size_, [&](GgufType t, const uint8_t* p, size_t n) {
    if (i < max_elements) absl::StrAppend(&out, i ? ", " : "", scalar(t, p, n));
    ++i;
  });
  if (count_ > max_elements) out += ", ...";
  return out + "}";
}

// ---- Parsing --------------------------------------------------------------------------------

class GgufParser {
 public:
  GgufParser(const uint8_t* data, size_t size) : data_(data), size_(size), r_(data, size) {}

  absl::StatusOr<std::unique_ptr<GgufFile>> Run() {
    auto file = std::unique_ptr<GgufFile>(new GgufFile());
    uint32_t magic = 0;
    if (data_ == nullptr || !r_.U32(&magic)) return Error("file too small for a GGUF header");
    if (magic != kGgufMagic) {
      return Error(
          absl::StrCat("bad magic 0x", absl::Hex(magic, absl::kZeroPad8), " (expected \"GGUF\")"));
    }
    uint32_t version = 0;
    if (!r_.U32(&version)) return Error("truncated header");
    if (version != 2 && version != 3) {
      const bool swapped = version == 0x02000000u || version == 0x03000000u;
      return Error(absl::StrCat("unsupported GGUF version ", version,
                                swapped ? " (a big-endian file?)" : "",
                                "; supported versions: 2, 3"));
    }
    file->version_ = version;
    uint64_t n_tensors = 0;
    uint64_t n_kv = 0;
    if (!r_.U64(&n_tensors) || !r_.U64(&n_kv)) return Error("truncated header");
    if (n_kv > r_.remaining() / kMinKvBytes) {
      return Error(absl::StrCat("metadata count ", n_kv, " cannot fit in the ", r_.remaining(),
                                " bytes left"));
    }
    if (n_tensors > r_.remaining() / kMinTensorInfoBytes) {
      return Error(absl::StrCat("tensor count ", n_tensors, " cannot fit in the ", r_.remaining(),
                                " bytes left"));
    }

    // Metadata.
    // No reserve() from the counts: containers grow only with entries actually parsed.
    for (uint64_t i = 0; i < n_kv; ++i) {
      absl::string_view key;
      if (!r_.String(&key)) return Error(absl::StrCat("truncated metadata key #", i));
      uint32_t type = 0;
      if (!r_.U32(&type)) return Error(absl::StrCat("truncated metadata '", Esc(key), "'"));
      GgufValue value;
      VERDICT_RETURN_IF_ERROR(ReadValue(type, key, /*depth=*/0, &value));
      auto [it, inserted] = file->metadata_.try_emplace(std::string(key), value);
      if (!inserted) return Error(absl::StrCat("duplicate metadata key '", Esc(key), "'"));
      file->keys_.emplace_back(key);
    }
    if (const GgufValue* a = file->FindMetadata("general.alignment"); a != nullptr) {
      if (a->type() != GgufType::kUint32) {
        return Error(
            absl::StrCat("general.alignment has type ", GgufTypeName(a->type()), ", expected u32"));
      }
      const uint32_t align = static_cast<uint32_t>(LoadLe(a->data_, 4));
      if (align == 0 || (align & (align - 1)) != 0) {
        return Error(absl::StrCat("general.alignment ", align, " is not a power of two"));
      }
      file->alignment_ = align;
    }

    // Tensor infos.
    struct Info {
      uint64_t offset;
      size_t index;
    };
    std::vector<Info> infos;
    for (uint64_t i = 0; i < n_tensors; ++i) {
      absl::string_view name;
      if (!r_.String(&name)) return Error(absl::StrCat("truncated tensor info #", i));
      const std::string tname = Esc(name);
      uint32_t n_dims = 0;
      if (!r_.U32(&n_dims)) return Error(absl::StrCat("truncated tensor info '", tname, "'"));
      if (n_dims == 0 || n_dims > kMaxDims) {
        return Error(
            absl::StrCat("tensor '", tname, "' has ", n_dims, " dimensions (supported: 1 to 4)"));
      }
      uint64_t ne[kMaxDims] = {1, 1, 1, 1};
      uint64_t elements = 1;
      bool overflow = false;
      for (uint32_t d = 0; d < n_dims; ++d) {
        if (!r_.U64(&ne[d])) return Error(absl::StrCat("truncated tensor info '", tname, "'"));
        if (ne[d] > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) overflow = true;
        if (ne[d] != 0 && elements > std::numeric_limits<uint64_t>::max() / ne[d]) {
          overflow = true;
        }
        if (!overflow) elements *= ne[d];
      }
      uint32_t ggml_type = 0;
      uint64_t offset = 0;
      if (!r_.U32(&ggml_type) || !r_.U64(&offset)) {
        return Error(absl::StrCat("truncated tensor info '", tname, "'"));
      }
      WeightTensor t;
      t.name = std::string(name);
      switch (ggml_type) {
        case kGgmlF32: t.dtype = DType::kF32; break;
        case kGgmlF16: t.dtype = DType::kF16; break;
        case kGgmlBF16: t.dtype = DType::kBF16; break;
        case kGgmlQ8_0: t.dtype = DType::kQ8_0; break;
        case kGgmlQ4_0: t.dtype = DType::kQ4_0; break;
        case kGgmlQ4_1: t.dtype = DType::kQ4_1; break;
        case kGgmlQ5_0: t.dtype = DType::kQ5_0; break;
        case kGgmlQ5_1: t.dtype = DType::kQ5_1; break;
        case kGgmlQ4_K: t.dtype = DType::kQ4_K; break;
        case kGgmlQ5_K: t.dtype = DType::kQ5_K; break;
        case kGgmlQ6_K: t.dtype = DType::kQ6_K; break;
        default:
          return Error(absl::StrCat("tensor '", tname, "' has GGML type ", GgmlTypeName(ggml_type),
                                    ", which is not supported "
                                    "(supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K)"));
      }
      // Each supported type takes at least half a byte per element (Q4_0: 18 bytes per 32), so a
      // tensor with more than twice as many elements as the file has bytes cannot fit; rejecting it
      // here also keeps the byte count below from overflowing.
      if (overflow || elements / 2 > size_) {
        return Error(absl::StrCat("tensor '", tname, "' is larger than the file"));
      }
      if (t.dtype == DType::kQ8_0 && ne[0] % kQ8_0BlockSize != 0) {
        return Error(absl::StrCat("tensor '", tname, "' is Q8_0 but its rows have ", ne[0],
                                  " elements, not a multiple of ", kQ8_0BlockSize));
      }
      if (IsGgmlBlockQuant(t.dtype) && ne[0] % GgmlBlockValues(t.dtype) != 0) {
        return Error(absl::StrCat("tensor '", tname, "' is ", GgmlTypeName(ggml_type), " but its rows have ", ne[0],
                                  " elements, not a multiple of ", GgmlBlockValues(t.dtype)));
      }
      VERDICT_ASSIGN_OR_RETURN(t.nbytes, DTypeByteSize(t.dtype, static_cast<int64_t>(elements)));
      for (uint32_t d = 0; d < n_dims; ++d) {
        t.shape.push_back(static_cast<int64_t>(ne[n_dims - 1 - d]));
      }
      if (offset % file->alignment_ != 0) {
        return Error(absl::StrCat("tensor '", tname, "' data offset ", offset,
                                  " is not a multiple of the alignment ", file->alignment_));
      }
      infos.push_back(Info{offset, file->tensors_.size()});
      file->tensors_.push_back(std::move(t));
    }

    // Tensor data: starts at the next multiple of the alignment.
    const size_t header_end = r_.pos();
    const uint64_t align = file->alignment_;
    const uint64_t data_start = (static_cast<uint64_t>(header_end) + align - 1) / align * align;
    file->data_offset_ = static_cast<size_t>(std::min<uint64_t>(data_start, size_));
    if (n_tensors > 0 && data_start > size_) {
      return Error("truncated: the tensor data section is missing");
    }
    const uint64_t data_size = size_ - file->data_offset_;
    for (const Info& info : infos) {
      WeightTensor& t = file->tensors_[info.index];
      if (info.offset > data_size || t.nbytes > data_size - info.offset) {
        return Error(absl::StrCat("tensor '", Esc(t.name), "' (", t.nbytes, " bytes at offset ",
                                  info.offset, ") runs past the end of the file"));
      }
      t.data = data_ + file->data_offset_ + info.offset;
    }
    std::sort(infos.begin(), infos.end(),
              [](const Info& a, const Info& b) { return a.offset < b.offset; });
    uint64_t prev_end = 0;
    const WeightTensor* prev = nullptr;
    for (const Info& info : infos) {
      const WeightTensor& t = file->tensors_[info.index];
      if (t.nbytes == 0) continue;
      if (prev != nullptr && info.offset < prev_end) {
        return Error(
            absl::StrCat("tensors '", Esc(prev->name), "' and '", Esc(t.name), "' overlap"));
      }
      if (info.offset + t.nbytes > prev_end) {
        prev_end = info.offset + t.nbytes;
        prev = &t;
      }
    }

    std::sort(file->tensors_.begin(), file->tensors_.end(),
              [](const WeightTensor& a, const WeightTensor& b) { return a.name < b.name; });
    file->tensor_index_.reserve(file->tensors_.size());
    for (size_t i = 0; i < file->tensors_.size(); ++i) {
      if (!file->tensor_index_.try_emplace(file->tensors_[i].name, i).second) {
        return Error(absl::StrCat("duplicate tensor name '", Esc(file->tensors_[i].name), "'"));
      }
    }
    return file;
  }

 private:
  static std::string Esc(absl::string_view s) { return EscapeForMessage(s); }

  absl::Status Error(absl::string_view what) const {
    return absl::InvalidArgumentError(absl::StrCat("GGUF: ", what, " (at byte ", r_.pos(), ")"));
  }

  // Reads a value of type `type` at the cursor into *out, validating every byte of it.
  absl::Status ReadValue(uint32_t type, absl::string_view key, int depth, GgufValue* out) {
    if (!IsValidType(type)) {
      return Error(absl::StrCat("metadata '", Esc(key), "' has unknown value type ", type));
    }
    const GgufType t = static_cast<GgufType>(type);
    out->type_ = t;
    if (t == GgufType::kString) {
      absl::string_view s;
      if (!r_.String(&s)) return Error(absl::StrCat("truncated string in '", Esc(key), "'"));
      out->data_ = reinterpret_cast<const uint8_t*>(s.data());
      out->size_ = s.size();
      return absl::OkStatus();
    }
    if (t != GgufType::kArray) {
      const size_t n = ScalarSize(t);
      if (r_.remaining() < n) return Error(absl::StrCat("truncated value of '", Esc(key), "'"));
      out->data_ = r_.here();
      out->size_ = n;
      r_.Skip(n);
      return absl::OkStatus();
    }
    if (depth >= kGgufMaxArrayDepth) {
      return Error(
          absl::StrCat("metadata '", Esc(key), "' nests arrays deeper than ", kGgufMaxArrayDepth));
    }
    uint32_t elem = 0;
    uint64_t count = 0;
    if (!r_.U32(&elem) || !r_.U64(&count)) {
      return Error(absl::StrCat("truncated array header in '", Esc(key), "'"));
    }
    if (!IsValidType(elem)) {
      return Error(absl::StrCat("metadata '", Esc(key), "' has arrays of unknown type ", elem));
    }
    const GgufType et = static_cast<GgufType>(elem);
    out->element_type_ = et;
    out->count_ = count;
    out->data_ = r_.here();
    const size_t start = r_.pos();
    const size_t scalar = ScalarSize(et);
    const size_t min_elem = scalar != 0 ? scalar : et == GgufType::kString ? 8 : kMinArrayBytes;
    if (count > r_.remaining() / min_elem) {
      return Error(absl::StrCat("metadata '", Esc(key), "' claims ", count,
                                " elements, more "
                                "than the ",
                                r_.remaining(), " bytes left can hold"));
    }
    if (scalar != 0) {
      r_.Skip(count * scalar);
    } else if (et == GgufType::kString) {
      for (uint64_t i = 0; i < count; ++i) {
        absl::string_view s;
        if (!r_.String(&s)) {
          return Error(absl::StrCat("truncated string #", i, " in '", Esc(key), "'"));
        }
      }
    } else {
      for (uint64_t i = 0; i < count; ++i) {
        GgufValue nested;
        VERDICT_RETURN_IF_ERROR(
            ReadValue(static_cast<uint32_t>(GgufType::kArray), key, depth + 1, &nested));
      }
    }
    out->size_ = r_.pos() - start;
    return absl::OkStatus();
  }

  const uint8_t* data_;
  size_t size_;
  Reader r_;
};

// ---- GgufFile -------------------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<GgufFile>> GgufFile::Open(const std::string& path) {
  VERDICT_ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> mapped, MappedFile::Open(path));
  absl::StatusOr<std::unique_ptr<GgufFile>> file = Parse(mapped->data(), mapped->size());
  if (!file.ok()) {
    return absl::Status(file.status().code(), absl::StrCat(path, ": ", file.status().message()));
  }
  (*file)->file_ = std::move(mapped);
  return file;
}

absl::StatusOr<std::unique_ptr<GgufFile>> GgufFile::Parse(const uint8_t* data, size_t size) {
  return GgufParser(data, size).Run();
}

const GgufValue* GgufFile::FindMetadata(absl::string_view key) const {
  auto it = metadata_.find(key);
  return it == metadata_.end() ? nullptr : &it->second;
}

absl::StatusOr<const GgufValue*> GgufFile::Lookup(absl::string_view key) const {
  const GgufValue* v = FindMetadata(key);
  if (v == nullptr) return absl::NotFoundError(absl::StrCat("GGUF metadata '", key, "' not found"));
  return v;
}

namespace {
template <typename T>
absl::StatusOr<T> WithKey(absl::string_view key, absl::StatusOr<T> r) {
  if (r.ok()) return r;
  return absl::Status(r.status().code(),
                      absl::StrCat("GGUF metadata '", key, "': ", r.status().message()));
}
}  // namespace

absl::StatusOr<std::string> GgufFile::GetString(absl::string_view key) const {
  VERDICT_ASSIGN_OR_RETURN(const GgufValue* v, Lookup(key));
  return WithKey(key, v->AsString());
}
absl::StatusOr<int64_t> GgufFile::GetInt(absl::string_view key) const {
  VERDICT_ASSIGN_OR_RETURN(const GgufValue* v, Lookup(key));
  return WithKey(key, v->AsInt());
}
absl::StatusOr<double> GgufFile::GetFloat(absl::string_view key) const {
  VERDICT_ASSIGN_OR_RETURN(const GgufValue* v, Lookup(key));
  return WithKey(key, v->AsFloat());
}
absl::StatusOr<bool> GgufFile::GetBool(absl::string_view key) const {
  VERDICT_ASSIGN_OR_RETURN(const GgufValue* v, Lookup(key));
  return WithKey(key, v->AsBool());
}
absl::StatusOr<std::vector<std::string>> GgufFile::GetStringArray(absl::string_view key) const {
  VERDICT_ASSIGN_OR_RETURN(const GgufValue* v, Lookup(key));
  return WithKey(key, v->AsStringArray());
}
absl::StatusOr<std::vector<float>> GgufFile::GetFloatArray(absl::string_view key) const {
  VERDICT_ASSIGN_OR_RETURN(const GgufValue* v, Lookup(key));
  return WithKey(key, v->AsFloatArray());
}
absl::StatusOr<std::vector<int64_t>> GgufFile::GetIntArray(absl::string_view key) const {
  VERDICT_ASSIGN_OR_RETURN(const GgufValue* v, Lookup(key));
  return WithKey(key, v->AsIntArray());
}

const WeightTensor* GgufFile::Find(absl::string_view name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

std::vector<std::string> GgufFile::Names() const {
  std::vector<std::string> names;
  names.reserve(tensors_.size());
  for (const WeightTensor& t : tensors_) names.push_back(t.name);
  return names;
}

}  // namespace verdict::engine
