// SPDX-License-Identifier: Apache-2.0
// The per-ISA implementations behind engine/kernels/kv_ops.h (kv_ops.cc picks one). Not for other
// callers.
#ifndef VERDICT_ENGINE_KERNELS_KV_OPS_INTERNAL_H_
#define VERDICT_ENGINE_KERNELS_KV_OPS_INTERNAL_H_

#include "engine/kernels/kv_ops.h"

namespace verdict::engine::kvops_internal {

// AVX2 + FMA + F16C operations on f16 and bf16 rows (kv_ops_avx2.cc).
const kvops::KvRowOps& F16RowOpsAvx2();
const kvops::KvRowOps& Bf16RowOpsAvx2();

}  // namespace verdict::engine::kvops_internal

#endif  // VERDICT_ENGINE_KERNELS_KV_OPS_INTERNAL_H_
