// SPDX-License-Identifier: Apache-2.0
// Element types of weights and activations, and scalar conversions between them.
// Pure functions; thread-safe.
#ifndef VERDICT_ENGINE_DTYPE_H_
#define VERDICT_ENGINE_DTYPE_H_

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace verdict::engine {

enum class DType : uint8_t {
  kF32,
  kF16,
  kBF16,
  kQ8_0,  // GGML Q8_0: blocks of 32 values, one f16 scale + 32 int8 (34 bytes per block)
  kI32,
};

inline constexpr int kQ8_0BlockSize = 32;
struct BlockQ8_0 {
  uint16_t scale_f16;
  int8_t qs[kQ8_0BlockSize];
};
static_assert(sizeof(BlockQ8_0) == 34);

absl::string_view DTypeName(DType dtype);

// Bytes needed for `num_elements` values; for kQ8_0 `num_elements` must be a multiple of 32.
absl::StatusOr<size_t> DTypeByteSize(DType dtype, int64_t num_elements);

inline float Bf16ToF32(uint16_t v) {
  uint32_t bits = static_cast<uint32_t>(v) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

// Round to nearest even, NaN stays NaN (as torch does).
inline uint16_t F32ToBf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof(bits));
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}

float F16ToF32(uint16_t h);
uint16_t F32ToF16(float f);  // round to nearest even

}  // namespace verdict::engine

#endif  // VERDICT_ENGINE_DTYPE_H_
