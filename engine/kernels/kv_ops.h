// SPDX-License-Identifier: Apache-2.0
// The CPU attention's accesses to a KV cache row stored as f32, f16 or bf16: storing a new key or
// value (rounded to nearest even) and the two reductions attention makes over stored rows. The
// 16-bit forms halve the cache's memory; f32 keeps the reference numerics (default). AVX2/F16C
// kernels are chosen with the matrix kernels' ISA (engine/kernels/matmul.h) when the operations are
// looked up, so a caller looks them up once per batch of rows, not once per row.
// Thread-safety: pure functions of their arguments.
#ifndef VERDICT_ENGINE_KERNELS_KV_OPS_H_
#define VERDICT_ENGINE_KERNELS_KV_OPS_H_

#include <cstddef>
#include <cstdint>

#include "engine/dtype.h"

namespace verdict::engine::kvops {

// True for the element types a CPU KV cache can hold: kF32, kF16, kBF16.
bool IsKvElementType(DType dtype);
// Bytes per element of those types. REQUIRES: IsKvElementType(dtype).
size_t KvElementBytes(DType dtype);

// The operations on rows of one element type.
struct KvRowOps {
  // dst[0, n) = src[0, n) converted to the element type.
  void (*store)(const float* src, int64_t n, void* dst);
  // sum_i q[i] * row[i].
  float (*dot)(const float* q, const void* row, int64_t n);
  // out[i] += alpha * row[i].
  void (*axpy)(float alpha, const void* row, float* out, int64_t n);
};

// The operations for rows of `dtype` on the kernel ISA active now. REQUIRES: IsKvElementType(dtype).
const KvRowOps& KvRowOpsFor(DType dtype);

}  // namespace verdict::engine::kvops

#endif  // VERDICT_ENGINE_KERNELS_KV_OPS_H_
