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
  // FP8 E4M3 (engine/fp8.h), one byte per value, unscaled: how safetensors checkpoints store FP8
  // weights (their scales are separate tensors). Loaders convert it to kF8E4M3Block.
  kF8E4M3,
  // The engine's FP8 weights: each row is blocks of up to 128 E4M3 values, each block led by its
  // f32 scale (engine/fp8.h); a row of n values takes n + 4 * ceil(n / 128) bytes.
  kF8E4M3Block,
  // GGML block quantizations as GGUF files store them (engine/ggml_quants.h): blocks of 32 values
  // (Q4_0, Q4_1, Q5_0, Q5_1) or 256 (the k-quants), dequantized inside the matrix kernels.
  kQ4_0,
  kQ4_1,
  kQ5_0,
  kQ5_1,
  kQ4_K,
  kQ5_K,
  kQ6_K,
};

inline constexpr int kQ8_0BlockSize = 32;
struct BlockQ8_0 {
  uint16_t scale_f16;
  int8_t qs[kQ8_0BlockSize];
};
static_assert(sizeof(BlockQ8_0) == 34);

absl::string_view DTypeName(DType dtype);

// Bytes needed for `num_elements` values; for kQ8_0 `num_elements` must be a multiple of 32; for
// kF8E4M3Block they are one row (blocks restart at each row).
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

// DType::kF8E4M3Block rows (engine/fp8.h). Quantizing scales each block of up to 128 values by its
// largest magnitude / 448 (a block of zeros gets scale 0) and rounds to nearest even.
void QuantizeFp8BlockRow(const float* values, int64_t cols, uint8_t* out);
void DequantizeFp8BlockRow(const uint8_t* row, int64_t cols, float* out);

float F16ToF32(uint16_t h);
uint16_t F32ToF16(float f);  // round to nearest even

}  // namespace verdict::engine

#endif  // VERDICT_ENGINE_DTYPE_H_
