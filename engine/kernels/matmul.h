// SPDX-License-Identifier: Apache-2.0
// Matrix products of f32 activations with weight matrices stored as f32, f16, bf16 or q8_0, and the
// row gather used for token embeddings. CPU only.
//
// MatMul picks an algorithm by the number of activation rows M (thresholds measured on the 2-core
// Zen 4 build machine with bench/kernels_bench.cc; see ChooseAlgo in matmul.cc):
//   - small M ("direct", M <= 16 for bf16, 24 for f16, 8 for f32, 4 for q8_0): each group of 4 weight rows
//     is streamed from memory once (prefetched into L2), converted to f32 in registers and
//     multiplied against the tokens in 4-row x 3-token register tiles; the other token groups
//     re-read the 4 rows from L1/L2. M = 1 is the decode GEMV, memory-bound.
//   - medium M ("panel", up to kMatMulBlasMinRows): 4 weight rows are converted once per 1024-wide
//     K-slice into an f32 panel in L1 and reused by the same 4x3 tiles for every token.
//   - large M ("blas", prefill): blocks of weight rows are converted to f32 and multiplied with
//     OpenBLAS sgemm (one OpenBLAS thread inside each pool thread).
// The work is split over N across the ThreadPool in every case.
// All paths are exact with respect to the weights as stored: q8_0 blocks are dequantized to f32
// (scale * int8, exactly representable), and activations are NOT quantized. Accumulation is in f32.
//
// The AVX2/FMA/F16C kernels live in their own translation unit and are selected at run time when
// the CPU supports them; a portable generic implementation is used otherwise (or when forced with
// SetKernelIsa or the environment variable VERDICT_KERNEL_ISA=generic, read once at start-up).
//
// Thread-safety: MatMul and GatherRows are thread-compatible: concurrent calls are fine as long as
// they use different ThreadPools (a pool runs one ParallelFor at a time) and their outputs do not
// overlap. OpenBLAS is switched to one thread on first use (process-wide), so that its threads and
// the ThreadPool do not oversubscribe the cores.
#ifndef VERDICT_ENGINE_KERNELS_MATMUL_H_
#define VERDICT_ENGINE_KERNELS_MATMUL_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "engine/dtype.h"
#include "engine/kernels/thread_pool.h"

namespace verdict::engine {

// A weight matrix [rows = N, cols = K], row-major, rows packed back to back (row n starts at byte
// n * RowBytes). For kQ8_0, each row is cols / 32 BlockQ8_0 blocks and cols % 32 == 0.
// `data` is not owned and needs no particular alignment.
struct MatMulWeight {
  const void* data = nullptr;
  DType dtype = DType::kF32;
  int64_t rows = 0;  // N
  int64_t cols = 0;  // K
};

// From this many activation rows on, MatMul uses the OpenBLAS path. Below it the panel kernel is as
// fast or faster (bf16, 2 threads: 184 vs 128 GFLOP/s at M = 64, 172 vs 150 at M = 256 for
// 2048x8192); from M = 384 on, the activation slices no longer fit L2 and sgemm wins.
inline constexpr int64_t kMatMulBlasMinRows = 320;

// y[m, n] = sum_k x[m, k] * w[n, k]            (accumulate = false)
// y[m, n] = y[m, n] + sum_k x[m, k] * w[n, k]   (accumulate = true)
//   x: in, host, f32 [m, w.cols], row stride ldx (elements)
//   w: in, host, w.dtype [w.rows, w.cols]
//   y: in/out, host, f32 [m, w.rows], row stride ldy (elements)
// The work is split over w.rows across `pool` (nullptr runs on the calling thread).
// REQUIRES: m >= 0; ldx >= w.cols; ldy >= w.rows; w.dtype is kF32, kF16, kBF16 or kQ8_0 (with
// w.cols % 32 == 0); y does not overlap x or w; `pool` is not running another ParallelFor.
// Broken preconditions abort (VERDICT_CHECK).
void MatMul(const float* x, int64_t m, int64_t ldx, const MatMulWeight& w, float* y, int64_t ldy,
            ThreadPool* pool, bool accumulate = false);

// out[i, :] = f32(table[ids[i], :]) for each i: the token-embedding lookup.
//   table: in, host, table.dtype [table.rows, table.cols]
//   ids:   in, host, int32 [ids.size()], each in [0, table.rows)
//   out:   out, host, f32 [ids.size(), table.cols], contiguous
// REQUIRES: as above; an id out of range aborts (the caller validates token ids from requests).
void GatherRows(const MatMulWeight& table, absl::Span<const int32_t> ids, float* out);

// Which implementation of the kernels runs.
enum class KernelIsa : uint8_t {
  kGeneric,  // portable C++; any x86-64 (or other) CPU
  kAvx2,     // AVX2 + FMA + F16C
};

// The best ISA this CPU supports.
KernelIsa BestSupportedKernelIsa();

// The ISA used by MatMul and GatherRows now: the best supported one, unless the environment
// variable VERDICT_KERNEL_ISA=generic was set at start-up or SetKernelIsa chose another.
KernelIsa ActiveKernelIsa();

// Selects the kernels used from now on (tests use it to cover both paths). Process-wide; do not
// call it while another thread is inside MatMul or GatherRows. Errors: kFailedPrecondition if the
// CPU does not support `isa`; the selection is then unchanged.
absl::Status SetKernelIsa(KernelIsa isa);

}  // namespace verdict::engine

#endif  // VERDICT_ENGINE_KERNELS_MATMUL_H_
