// SPDX-License-Identifier: Apache-2.0
// AVX2/FMA/F16C forms of the 16-bit KV row operations (compiled with -mavx2 -mfma -mf16c; called
// only when the CPU has them). Tails shorter than 8 go through the scalar conversions.
#include <immintrin.h>

#include "engine/dtype.h"
#include "engine/kernels/kv_ops_internal.h"

namespace verdict::engine::kvops_internal {
namespace {

inline __m256 LoadF16(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
inline __m256 LoadBf16(const uint16_t* p) {
  const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
}
inline float HorizontalSum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

template <bool kF16>
float Dot(const float* q, const void* row_bytes, int64_t n) {
  const auto* row = static_cast<const uint16_t*>(row_bytes);
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256 r0 = kF16 ? LoadF16(row + i) : LoadBf16(row + i);
    const __m256 r1 = kF16 ? LoadF16(row + i + 8) : LoadBf16(row + i + 8);
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), r0, acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + 8), r1, acc1);
  }
  for (; i + 8 <= n; i += 8) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), kF16 ? LoadF16(row + i) : LoadBf16(row + i), acc0);
  }
  float total = HorizontalSum(_mm256_add_ps(acc0, acc1));
  for (; i < n; ++i) total += q[i] * (kF16 ? F16ToF32(row[i]) : Bf16ToF32(row[i]));
  return total;
}

template <bool kF16>
void Axpy(float alpha, const void* row_bytes, float* out, int64_t n) {
  const auto* row = static_cast<const uint16_t*>(row_bytes);
  const __m256 a = _mm256_set1_ps(alpha);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 r = kF16 ? LoadF16(row + i) : LoadBf16(row + i);
    _mm256_storeu_ps(out + i, _mm256_fmadd_ps(a, r, _mm256_loadu_ps(out + i)));
  }
  for (; i < n; ++i) out[i] += alpha * (kF16 ? F16ToF32(row[i]) : Bf16ToF32(row[i]));
}

void StoreF16(const float* src, int64_t n, void* dst_bytes) {
  auto* dst = static_cast<uint16_t*>(dst_bytes);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
  for (; i < n; ++i) dst[i] = F32ToF16(src[i]);
}

void StoreBf16(const float* src, int64_t n, void* dst_bytes) {
  // Round to nearest even in integer arithmetic (no AVX-512 BF16 needed); NaN is kept a NaN.
  auto* dst = static_cast<uint16_t*>(dst_bytes);
  int64_t i = 0;
  const __m256i bias = _mm256_set1_epi32(0x7fff);
  const __m256i one = _mm256_set1_epi32(1);
  const __m256i abs_mask = _mm256_set1_epi32(0x7fffffff);
  const __m256i inf = _mm256_set1_epi32(0x7f800000);
  const __m256i quiet = _mm256_set1_epi32(0x00400000);
  for (; i + 8 <= n; i += 8) {
    const __m256i bits = _mm256_castps_si256(_mm256_loadu_ps(src + i));
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(bits, 16), one);
    __m256i rounded = _mm256_add_epi32(bits, _mm256_add_epi32(bias, lsb));
    const __m256i is_nan = _mm256_cmpgt_epi32(_mm256_and_si256(bits, abs_mask), inf);
    rounded = _mm256_blendv_epi8(rounded, _mm256_or_si256(bits, quiet), is_nan);
    const __m256i shifted = _mm256_srli_epi32(rounded, 16);
    // Pack 8 x 32-bit to 8 x 16-bit (values < 65536, so the unsigned saturation never applies).
    const __m128i packed = _mm_packus_epi32(_mm256_castsi256_si128(shifted), _mm256_extracti128_si256(shifted, 1));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), packed);
  }
  for (; i < n; ++i) dst[i] = F32ToBf16(src[i]);
}

constexpr kvops::KvRowOps kF16Ops = {&StoreF16, &Dot<true>, &Axpy<true>};
constexpr kvops::KvRowOps kBf16Ops = {&StoreBf16, &Dot<false>, &Axpy<false>};

}  // namespace

const kvops::KvRowOps& F16RowOpsAvx2() { return kF16Ops; }
const kvops::KvRowOps& Bf16RowOpsAvx2() { return kBf16Ops; }

}  // namespace verdict::engine::kvops_internal
