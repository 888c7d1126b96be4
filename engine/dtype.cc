// SPDX-License-Identifier: Apache-2.0
#include "engine/dtype.h"

#include <algorithm>
#include <cmath>

#include "engine/fp8.h"
#include "engine/ggml_quants.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace verdict::engine {

absl::string_view DTypeName(DType dtype) {
  switch (dtype) {
    case DType::kF32: return "f32";
    case DType::kF16: return "f16";
    case DType::kBF16: return "bf16";
    case DType::kQ8_0: return "q8_0";
    case DType::kI32: return "i32";
    case DType::kF8E4M3: return "f8_e4m3";
    case DType::kF8E4M3Block: return "fp8";
    case DType::kQ4_0: return "q4_0";
    case DType::kQ4_1: return "q4_1";
    case DType::kQ5_0: return "q5_0";
    case DType::kQ5_1: return "q5_1";
    case DType::kQ4_K: return "q4_k";
    case DType::kQ5_K: return "q5_k";
    case DType::kQ6_K: return "q6_k";
  }
  return "unknown";
}

absl::StatusOr<size_t> DTypeByteSize(DType dtype, int64_t n) {
  if (n < 0) return absl::InvalidArgumentError(absl::StrCat("negative element count ", n));
  switch (dtype) {
    case DType::kF32:
    case DType::kI32: return static_cast<size_t>(n) * 4;
    case DType::kF16:
    case DType::kBF16: return static_cast<size_t>(n) * 2;
    case DType::kQ8_0:
      if (n % kQ8_0BlockSize != 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("q8_0 tensor row of ", n, " elements is not a multiple of 32"));
      }
      return static_cast<size_t>(n / kQ8_0BlockSize) * sizeof(BlockQ8_0);
    case DType::kF8E4M3: return static_cast<size_t>(n);
    case DType::kF8E4M3Block: return static_cast<size_t>(Fp8BlockRowBytes(n));
    case DType::kQ4_0:
    case DType::kQ4_1:
    case DType::kQ5_0:
    case DType::kQ5_1:
    case DType::kQ4_K:
    case DType::kQ5_K:
    case DType::kQ6_K:
      if (n % GgmlBlockValues(dtype) != 0) {
        return absl::InvalidArgumentError(absl::StrCat(DTypeName(dtype), " tensor row of ", n,
                                                       " elements is not a multiple of ", GgmlBlockValues(dtype)));
      }
      return static_cast<size_t>(n / GgmlBlockValues(dtype)) * GgmlBlockBytes(dtype);
  }
  return absl::InvalidArgumentError("unknown dtype");
}

void QuantizeFp8BlockRow(const float* values, int64_t cols, uint8_t* out) {
  for (int64_t begin = 0; begin < cols; begin += kFp8BlockSize) {
    const int64_t count = std::min(kFp8BlockSize, cols - begin);
    float amax = 0;
    for (int64_t i = 0; i < count; ++i) amax = std::max(amax, std::fabs(values[begin + i]));
    const float scale = amax / kFp8E4M3Max;
    std::memcpy(out, &scale, sizeof(scale));
    out += sizeof(scale);
    for (int64_t i = 0; i < count; ++i) {
      *out++ = scale > 0 ? F32ToFp8E4M3(values[begin + i] / scale) : 0;
    }
  }
}

void DequantizeFp8BlockRow(const uint8_t* row, int64_t cols, float* out) {
  for (int64_t begin = 0; begin < cols; begin += kFp8BlockSize) {
    const int64_t count = std::min(kFp8BlockSize, cols - begin);
    float scale;
    std::memcpy(&scale, row, sizeof(scale));
    row += sizeof(scale);
    for (int64_t i = 0; i < count; ++i) out[begin + i] = Fp8E4M3ToF32(*row++) * scale;
  }
}

float F16ToF32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalize
      exp = 127 - 15 + 1;
      while ((mant & 0x400u) == 0) {
        mant <<= 1;
        --exp;
      }
      mant &= 0x3ffu;
      bits = sign | (exp << 23) | (mant << 13);
    }
  } else if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

uint16_t F32ToF16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof(bits));
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const uint32_t abs = bits & 0x7fffffffu;
  if (abs > 0x7f800000u) return sign | 0x7e00u;            // NaN
  if (abs >= 0x477ff000u) return sign | 0x7c00u;           // overflow -> inf (incl. rounding)
  if (abs < 0x38800000u) {                                 // subnormal or zero in f16
    if (abs < 0x33000000u) return sign;                    // rounds to zero
    const uint32_t exp = abs >> 23;
    const uint32_t mant = (abs & 0x7fffffu) | 0x800000u;
    // value = mant * 2^(exp-150); f16 subnormal unit = 2^-24 -> q = mant * 2^(exp-126)
    const uint32_t rshift = 126 - exp;
    uint32_t q = mant >> rshift;
    const uint32_t rem = mant & ((1u << rshift) - 1);
    const uint32_t halfway = 1u << (rshift - 1);
    if (rem > halfway || (rem == halfway && (q & 1u))) ++q;
    return sign | static_cast<uint16_t>(q);
  }
  uint32_t e = (abs >> 23) - 127 + 15;
  uint32_t m = abs & 0x7fffffu;
  uint32_t q = (e << 10) | (m >> 13);
  const uint32_t rem = m & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (q & 1u))) ++q;  // may carry into exponent: correct
  return sign | static_cast<uint16_t>(q);
}

}  // namespace verdict::engine
