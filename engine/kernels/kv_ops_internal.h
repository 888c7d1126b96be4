// SPDX-License-Identifier: Apache-2.0
// The per-ISA implementations behind engine/kernels/kv_ops.h (kv_ops.cc picks one). Not for other
// callers.
#ifndef VERDICT_ENGINE_KERNELS_KV_OPS_INTERNAL_H_
#define VERDICT_ENGINE_KERNELS_KV_OPS_INTERNAL_H_

#include <cstdint>

namespace verdict::engine::kvops_internal {

// AVX2 + FMA + F16C forms of the 16-bit operations (kv_ops_avx2.cc).
void StoreF16Avx2(const float* src, int64_t n, uint16_t* dst);
void StoreBf16Avx2(const float* src, int64_t n, uint16_t* dst);
float DotF16Avx2(const float* q, const uint16_t* row, int64_t n);
float DotBf16Avx2(const float* q, const uint16_t* row, int64_t n);
void AxpyF16Avx2(float alpha, const uint16_t* row, float* out, int64_t n);
void AxpyBf16Avx2(float alpha, const uint16_t* row, float* out, int64_t n);

}  // namespace verdict::engine::kvops_internal

#endif  // VERDICT_ENGINE_KERNELS_KV_OPS_INTERNAL_H_
