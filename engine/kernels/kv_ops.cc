// SPDX-License-Identifier: Apache-2.0
#include "engine/kernels/kv_ops.h"

#include <algorithm>

#include "common/check.h"
#include "engine/kernels/kv_ops_internal.h"
#include "engine/kernels/matmul.h"
#include "engine/kernels/vec_ops.h"

namespace verdict::engine::kvops {
namespace {

// f32 rows: a copy in, the shared vector primitives out (the reference numerics, unchanged).
void StoreF32(const float* src, int64_t n, void* dst) { std::copy(src, src + n, static_cast<float*>(dst)); }
float DotF32(const float* q, const void* row, int64_t n) { return vec::Dot(q, static_cast<const float*>(row), n); }
void AxpyF32(float alpha, const void* row, float* out, int64_t n) {
  vec::Axpy(alpha, static_cast<const float*>(row), out, n);
}

// 16-bit rows in portable C++, through the scalar conversions of engine/dtype.h.
template <uint16_t (*kTo)(float), float (*kFrom)(uint16_t)>
struct Portable16 {
  static void Store(const float* src, int64_t n, void* dst) {
    auto* half = static_cast<uint16_t*>(dst);
    for (int64_t i = 0; i < n; ++i) half[i] = kTo(src[i]);
  }
  static float Dot(const float* q, const void* row, int64_t n) {
    const auto* half = static_cast<const uint16_t*>(row);
    float total = 0;
    for (int64_t i = 0; i < n; ++i) total += q[i] * kFrom(half[i]);
    return total;
  }
  static void Axpy(float alpha, const void* row, float* out, int64_t n) {
    const auto* half = static_cast<const uint16_t*>(row);
    for (int64_t i = 0; i < n; ++i) out[i] += alpha * kFrom(half[i]);
  }
  static constexpr KvRowOps kOps = {&Store, &Dot, &Axpy};
};

constexpr KvRowOps kF32Ops = {&StoreF32, &DotF32, &AxpyF32};
using PortableF16 = Portable16<&F32ToF16, &F16ToF32>;
using PortableBf16 = Portable16<&F32ToBf16, &Bf16ToF32>;

}  // namespace

bool IsKvElementType(DType dtype) {
  return dtype == DType::kF32 || dtype == DType::kF16 || dtype == DType::kBF16;
}

size_t KvElementBytes(DType dtype) {
  VERDICT_CHECK(IsKvElementType(dtype));
  return dtype == DType::kF32 ? 4 : 2;
}

const KvRowOps& KvRowOpsFor(DType dtype) {
  VERDICT_CHECK(IsKvElementType(dtype));
  if (dtype == DType::kF32) return kF32Ops;
#if defined(VERDICT_KERNELS_HAVE_AVX2)
  if (ActiveKernelIsa() == KernelIsa::kAvx2) {
    return dtype == DType::kF16 ? kvops_internal::F16RowOpsAvx2() : kvops_internal::Bf16RowOpsAvx2();
  }
#endif
  return dtype == DType::kF16 ? PortableF16::kOps : PortableBf16::kOps;
}

}  // namespace verdict::engine::kvops
