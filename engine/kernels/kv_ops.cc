// SPDX-License-Identifier: Apache-2.0
#include "engine/kernels/kv_ops.h"

#include <algorithm>

#include "common/check.h"
#include "engine/kernels/kv_ops_internal.h"
#include "engine/kernels/matmul.h"
#include "engine/kernels/vec_ops.h"

namespace verdict::engine::kvops {
namespace {

bool UseAvx2() {
#if defined(VERDICT_KERNELS_HAVE_AVX2)
  return ActiveKernelIsa() == KernelIsa::kAvx2;
#else
  return false;
#endif
}

}  // namespace

bool IsKvElementType(DType dtype) {
  return dtype == DType::kF32 || dtype == DType::kF16 || dtype == DType::kBF16;
}

size_t KvElementBytes(DType dtype) {
  VERDICT_CHECK(IsKvElementType(dtype));
  return dtype == DType::kF32 ? 4 : 2;
}

void StoreRow(DType dtype, const float* src, int64_t n, void* dst) {
  auto* half = static_cast<uint16_t*>(dst);
  switch (dtype) {
    case DType::kF32:
      std::copy(src, src + n, static_cast<float*>(dst));
      return;
#if defined(VERDICT_KERNELS_HAVE_AVX2)
    case DType::kF16:
      if (UseAvx2()) return kvops_internal::StoreF16Avx2(src, n, half);
      break;
    case DType::kBF16:
      if (UseAvx2()) return kvops_internal::StoreBf16Avx2(src, n, half);
      break;
#endif
    default:
      break;
  }
  VERDICT_CHECK(dtype == DType::kF16 || dtype == DType::kBF16);
  for (int64_t i = 0; i < n; ++i) half[i] = dtype == DType::kF16 ? F32ToF16(src[i]) : F32ToBf16(src[i]);
}

float Dot(DType dtype, const float* q, const void* row, int64_t n) {
  const auto* half = static_cast<const uint16_t*>(row);
  switch (dtype) {
    case DType::kF32:
      return vec::Dot(q, static_cast<const float*>(row), n);
#if defined(VERDICT_KERNELS_HAVE_AVX2)
    case DType::kF16:
      if (UseAvx2()) return kvops_internal::DotF16Avx2(q, half, n);
      break;
    case DType::kBF16:
      if (UseAvx2()) return kvops_internal::DotBf16Avx2(q, half, n);
      break;
#endif
    default:
      break;
  }
  VERDICT_CHECK(dtype == DType::kF16 || dtype == DType::kBF16);
  float total = 0;
  for (int64_t i = 0; i < n; ++i) total += q[i] * (dtype == DType::kF16 ? F16ToF32(half[i]) : Bf16ToF32(half[i]));
  return total;
}

void Axpy(DType dtype, float alpha, const void* row, float* out, int64_t n) {
  const auto* half = static_cast<const uint16_t*>(row);
  switch (dtype) {
    case DType::kF32:
      return vec::Axpy(alpha, static_cast<const float*>(row), out, n);
#if defined(VERDICT_KERNELS_HAVE_AVX2)
    case DType::kF16:
      if (UseAvx2()) return kvops_internal::AxpyF16Avx2(alpha, half, out, n);
      break;
    case DType::kBF16:
      if (UseAvx2()) return kvops_internal::AxpyBf16Avx2(alpha, half, out, n);
      break;
#endif
    default:
      break;
  }
  VERDICT_CHECK(dtype == DType::kF16 || dtype == DType::kBF16);
  for (int64_t i = 0; i < n; ++i) out[i] += alpha * (dtype == DType::kF16 ? F16ToF32(half[i]) : Bf16ToF32(half[i]));
}

}  // namespace verdict::engine::kvops
