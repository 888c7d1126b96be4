// SPDX-License-Identifier: Apache-2.0
#include "engine/ggml_quants.h"

#include <cstring>

namespace verdict::engine {
namespace {

constexpr int64_t kQk = 32;    // Q4_0 .. Q5_1
constexpr int64_t kQkK = 256;  // k-quants

float F16At(const uint8_t* p) {
  uint16_t bits;
  std::memcpy(&bits, p, 2);
  return F16ToF32(bits);
}

// Q4_0: f16 d, 16 bytes of nibbles. x = (q - 8) * d; low nibbles are values 0..15, high 16..31.
void DequantizeQ4_0(const uint8_t* b, float* y) {
  const float d = F16At(b);
  const uint8_t* qs = b + 2;
  for (int j = 0; j < 16; ++j) {
    y[j] = static_cast<float>((qs[j] & 0x0F) - 8) * d;
    y[j + 16] = static_cast<float>((qs[j] >> 4) - 8) * d;
  }
}

// Q4_1: f16 d, f16 m, 16 bytes of nibbles. x = q * d + m.
void DequantizeQ4_1(const uint8_t* b, float* y) {
  const float d = F16At(b), m = F16At(b + 2);
  const uint8_t* qs = b + 4;
  for (int j = 0; j < 16; ++j) {
    y[j] = static_cast<float>(qs[j] & 0x0F) * d + m;
    y[j + 16] = static_cast<float>(qs[j] >> 4) * d + m;
  }
}

// Q5_0: f16 d, 32 high bits (value i's fifth bit is bit i), 16 bytes of nibbles. x = (q - 16) * d.
void DequantizeQ5_0(const uint8_t* b, float* y) {
  const float d = F16At(b);
  uint32_t qh;
  std::memcpy(&qh, b + 2, 4);
  const uint8_t* qs = b + 6;
  for (int j = 0; j < 16; ++j) {
    const int x0 = static_cast<int>((qs[j] & 0x0F) | (((qh >> j) << 4) & 0x10)) - 16;
    const int x1 = static_cast<int>((qs[j] >> 4) | ((qh >> (j + 12)) & 0x10)) - 16;
    y[j] = static_cast<float>(x0) * d;
    y[j + 16] = static_cast<float>(x1) * d;
  }
}

// Q5_1: f16 d, f16 m, 32 high bits, 16 bytes of nibbles. x = q * d + m.
void DequantizeQ5_1(const uint8_t* b, float* y) {
  const float d = F16At(b), m = F16At(b + 2);
  uint32_t qh;
  std::memcpy(&qh, b + 4, 4);
  const uint8_t* qs = b + 8;
  for (int j = 0; j < 16; ++j) {
    const int x0 = static_cast<int>((qs[j] & 0x0F) | (((qh >> j) << 4) & 0x10));
    const int x1 = static_cast<int>((qs[j] >> 4) | ((qh >> (j + 12)) & 0x10));
    y[j] = static_cast<float>(x0) * d + m;
    y[j + 16] = static_cast<float>(x1) * d + m;
  }
}

// Q4_K: f16 d, f16 dmin, 12 bytes of scales/mins, 128 bytes of nibbles; 8 sub-blocks of 32:
// x = d * scale * q - dmin * min.
void DequantizeQ4_K(const uint8_t* b, float* y) {
  const float d = F16At(b), dmin = F16At(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* q = b + 16;
  int is = 0;
  for (int j = 0; j < kQkK; j += 64) {
    uint8_t sc, m;
    GgmlScaleMinK4(is, scales, &sc, &m);
    const float d1 = d * sc, m1 = dmin * m;
    GgmlScaleMinK4(is + 1, scales, &sc, &m);
    const float d2 = d * sc, m2 = dmin * m;
    for (int l = 0; l < 32; ++l) *y++ = d1 * static_cast<float>(q[l] & 0x0F) - m1;
    for (int l = 0; l < 32; ++l) *y++ = d2 * static_cast<float>(q[l] >> 4) - m2;
    q += 32;
    is += 2;
  }
}

// Q5_K: as Q4_K with a fifth bit per value from 32 bytes of high bits.
void DequantizeQ5_K(const uint8_t* b, float* y) {
  const float d = F16At(b), dmin = F16At(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* qh = b + 16;
  const uint8_t* ql = b + 48;
  int is = 0;
  uint8_t u1 = 1, u2 = 2;
  for (int j = 0; j < kQkK; j += 64) {
    uint8_t sc, m;
    GgmlScaleMinK4(is, scales, &sc, &m);
    const float d1 = d * sc, m1 = dmin * m;
    GgmlScaleMinK4(is + 1, scales, &sc, &m);
    const float d2 = d * sc, m2 = dmin * m;
    for (int l = 0; l < 32; ++l) *y++ = d1 * static_cast<float>((ql[l] & 0x0F) + (qh[l] & u1 ? 16 : 0)) - m1;
    for (int l = 0; l < 32; ++l) *y++ = d2 * static_cast<float>((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
    ql += 32;
    is += 2;
    u1 <<= 2;
    u2 <<= 2;
  }
}

// Q6_K: 128 bytes of low nibbles, 64 bytes of 2-bit highs, 16 int8 scales, f16 d; 16 sub-blocks of
// 16: x = d * scale * (q - 32).
void DequantizeQ6_K(const uint8_t* b, float* y) {
  const uint8_t* ql = b;
  const uint8_t* qh = b + 128;
  const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
  const float d = F16At(b + 208);
  for (int n = 0; n < kQkK; n += 128) {
    for (int l = 0; l < 32; ++l) {
      const int is = l / 16;
      const int q1 = static_cast<int>((ql[l] & 0x0F) | (((qh[l] >> 0) & 3) << 4)) - 32;
      const int q2 = static_cast<int>((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) - 32;
      const int q3 = static_cast<int>((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      const int q4 = static_cast<int>((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
      y[l] = d * sc[is + 0] * static_cast<float>(q1);
      y[l + 32] = d * sc[is + 2] * static_cast<float>(q2);
      y[l + 64] = d * sc[is + 4] * static_cast<float>(q3);
      y[l + 96] = d * sc[is + 6] * static_cast<float>(q4);
    }
    y += 128;
    ql += 64;
    qh += 32;
    sc += 8;
  }
}

}  // namespace

bool IsGgmlBlockQuant(DType dtype) {
  switch (dtype) {
    case DType::kQ4_0:
    case DType::kQ4_1:
    case DType::kQ5_0:
    case DType::kQ5_1:
    case DType::kQ4_K:
    case DType::kQ5_K:
    case DType::kQ6_K:
      return true;
    default:
      return false;
  }
}

int64_t GgmlBlockValues(DType dtype) {
  switch (dtype) {
    case DType::kQ4_K:
    case DType::kQ5_K:
    case DType::kQ6_K:
      return kQkK;
    default:
      return kQk;
  }
}

size_t GgmlBlockBytes(DType dtype) {
  switch (dtype) {
    case DType::kQ4_0: return 2 + 16;
    case DType::kQ4_1: return 2 + 2 + 16;
    case DType::kQ5_0: return 2 + 4 + 16;
    case DType::kQ5_1: return 2 + 2 + 4 + 16;
    case DType::kQ4_K: return 2 + 2 + 12 + 128;
    case DType::kQ5_K: return 2 + 2 + 12 + 32 + 128;
    case DType::kQ6_K: return 128 + 64 + 16 + 2;
    default: return 0;
  }
}

void DequantizeGgmlBlocks(DType dtype, const uint8_t* blocks, int64_t num_blocks, float* out) {
  void (*one)(const uint8_t*, float*) = nullptr;
  switch (dtype) {
    case DType::kQ4_0: one = &DequantizeQ4_0; break;
    case DType::kQ4_1: one = &DequantizeQ4_1; break;
    case DType::kQ5_0: one = &DequantizeQ5_0; break;
    case DType::kQ5_1: one = &DequantizeQ5_1; break;
    case DType::kQ4_K: one = &DequantizeQ4_K; break;
    case DType::kQ5_K: one = &DequantizeQ5_K; break;
    case DType::kQ6_K: one = &DequantizeQ6_K; break;
    default: return;
  }
  const size_t bytes = GgmlBlockBytes(dtype);
  const int64_t values = GgmlBlockValues(dtype);
  for (int64_t b = 0; b < num_blocks; ++b) one(blocks + static_cast<size_t>(b) * bytes, out + b * values);
}

}  // namespace verdict::engine
