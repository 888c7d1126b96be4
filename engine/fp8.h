// SPDX-License-Identifier: Apache-2.0
// FP8 E4M3 ("e4m3fn" in PyTorch and the OCP FP8 spec: 1 sign, 4 exponent bits with bias 7, 3
// mantissa bits, no infinities, S.1111.111 is NaN, largest finite value 448) and the engine's FP8
// weight layout. Written once for the CPU kernels, the loaders and the CUDA kernels (host/device).
//
// The engine stores an FP8 weight matrix row by row in blocks of up to kFp8BlockSize values along
// the row, each block led by its f32 scale (DType::kF8E4M3Block): the dequantized value is
// Fp8E4M3ToF32(code) * scale. One (row, 128 columns) scale expresses exactly each scaling that FP8
// checkpoints use: per tensor, per output channel (row) and 128 x 128 blocks (DeepSeek-V3 and
// Hugging Face's "fp8" method), and it is the finest of them for weights we quantize ourselves.
#ifndef VERDICT_ENGINE_FP8_H_
#define VERDICT_ENGINE_FP8_H_

#include <cmath>
#include <cstdint>
#include <cstring>

#include "engine/kernels/op_math.h"  // VERDICT_HOST_DEVICE

namespace verdict::engine {

inline constexpr float kFp8E4M3Max = 448.0f;
inline constexpr uint8_t kFp8E4M3NaN = 0x7f;
// Values per scale along a row in DType::kF8E4M3Block (the last block of a row may be shorter).
inline constexpr int64_t kFp8BlockSize = 128;

using math::BitsFromFloat;
using math::FloatFromBits;

VERDICT_HOST_DEVICE inline float Fp8E4M3ToF32(uint8_t code) {
  const uint32_t exponent = (code >> 3) & 0xfu;
  const uint32_t mantissa = code & 0x7u;
  float magnitude;
  if (exponent == 0xfu && mantissa == 0x7u) {
    magnitude = NAN;
  } else if (exponent == 0) {
    magnitude = static_cast<float>(mantissa) * 0.001953125f;  // subnormal: m * 2^-9
  } else {
    magnitude = FloatFromBits(((exponent + 127u - 7u) << 23) | (mantissa << 20));
  }
  return (code & 0x80u) ? -magnitude : magnitude;
}

// Rounds to the nearest E4M3 value (ties to even), saturating beyond +-448 (as quantizers clamp
// before casting); NaN stays NaN.
VERDICT_HOST_DEVICE inline uint8_t F32ToFp8E4M3(float value) {
  const uint32_t bits = BitsFromFloat(value);
  const uint8_t sign = static_cast<uint8_t>((bits >> 24) & 0x80u);
  const uint32_t abs_bits = bits & 0x7fffffffu;
  if (abs_bits > 0x7f800000u) return sign | kFp8E4M3NaN;
  if (abs_bits >= 0x43e00000u) return sign | 0x7eu;  // >= 448 (and infinity): the largest value
  if (abs_bits < 0x3c800000u) {  // below 2^-6: a subnormal step of 2^-9; exact scaling, RNE
    return sign | static_cast<uint8_t>(rintf(FloatFromBits(abs_bits) * 512.0f));
  }
  // Normal: rebias the exponent (127 -> 7) and round the 23-bit mantissa to 3 bits, ties to even;
  // a carry out of the mantissa correctly bumps the exponent.
  const uint32_t rebased = abs_bits - ((127u - 7u) << 23);
  const uint32_t rounded = rebased + 0x7ffffu + ((rebased >> 20) & 1u);
  uint32_t code = rounded >> 20;
  if (code > 0x7eu) code = 0x7eu;
  return sign | static_cast<uint8_t>(code);
}

// DType::kF8E4M3Block geometry of one row of `cols` values.
VERDICT_HOST_DEVICE inline int64_t Fp8BlocksPerRow(int64_t cols) {
  return (cols + kFp8BlockSize - 1) / kFp8BlockSize;
}
VERDICT_HOST_DEVICE inline int64_t Fp8BlockRowBytes(int64_t cols) {
  return cols + static_cast<int64_t>(sizeof(float)) * Fp8BlocksPerRow(cols);
}
// Byte offset of the scale of value `col`'s block in a row.
VERDICT_HOST_DEVICE inline int64_t Fp8BlockScaleOffset(int64_t col) {
  return (col / kFp8BlockSize) * (kFp8BlockSize + static_cast<int64_t>(sizeof(float)));
}
// Byte offset of value `col` in a row (col need not start a block).
VERDICT_HOST_DEVICE inline int64_t Fp8BlockValueOffset(int64_t col) {
  return col + static_cast<int64_t>(sizeof(float)) * (col / kFp8BlockSize + 1);
}

}  // namespace verdict::engine

#endif  // VERDICT_ENGINE_FP8_H_
