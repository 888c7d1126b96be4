// SPDX-License-Identifier: Apache-2.0
// The logits summaries (argmax, log-sum-exp, entropy, a given token's logit) of rows of logits: two
// passes, chunk statistics then their merge.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <cfloat>
#include <cstdint>

#include "engine/cuda/kernel_util.cuh"
#include "engine/cuda/kernels.h"
#include "engine/kernels/op_math.h"
#include "engine/kernels/sampling_math.h"

namespace verdict::engine::cuda {
namespace {

// ---- logits summaries -------------------------------------------------------------------------

__device__ __forceinline__ void MergeWithLane(math::LogitStats& s, int offset) {
  math::LogitStats o;
  o.max = __shfl_xor_sync(0xffffffffu, s.max, offset);
  o.sum = __shfl_xor_sync(0xffffffffu, s.sum, offset);
  o.weighted = __shfl_xor_sync(0xffffffffu, s.weighted, offset);
  o.best = __shfl_xor_sync(0xffffffffu, s.best, offset);
  o.best_index = __shfl_xor_sync(0xffffffffu, s.best_index, offset);
  math::MergeLogitStats(s, o);
}

__device__ __forceinline__ void WarpMergeStats(math::LogitStats& s) {
  for (int offset = 16; offset > 0; offset >>= 1) MergeWithLane(s, offset);
}

// Block-wide merge of every thread's statistics; thread 0 gets the result.
__device__ math::LogitStats BlockMergeStats(math::LogitStats s) {
  WarpMergeStats(s);
  __shared__ math::LogitStats warp_stats[32];
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  if (lane == 0) warp_stats[warp] = s;
  __syncthreads();
  s = lane < static_cast<int>(blockDim.x / 32) ? warp_stats[lane] : math::EmptyLogitStats();
  WarpMergeStats(s);
  return s;
}

// A row of 128k logits is too long for one block (one SM, a long chain of loads per thread): first
// one block per (chunk of columns, row) writes the chunk's statistics, then one warp per row merges
// the chunks (exact for the argmax; only the order of the sums differs).
constexpr int kSummaryThreads = 256;
constexpr int kSummaryPerThread = 8;
constexpr int64_t kSummaryChunk = int64_t{kSummaryThreads} * kSummaryPerThread;

__global__ void SummarizeChunksKernel(const float* logits, int64_t stride, int64_t cols,
                                      math::LogitStats* chunk_stats) {
  WaitForPredecessor();
  const int64_t chunk = blockIdx.x;
  const int64_t row = blockIdx.y;
  const float* x = logits + row * stride;
  const int64_t end = (chunk + 1) * kSummaryChunk < cols ? (chunk + 1) * kSummaryChunk : cols;
  math::LogitStats s = math::EmptyLogitStats();
#pragma unroll
  for (int i = 0; i < kSummaryPerThread; ++i) {
    const int64_t c = chunk * kSummaryChunk + i * int64_t{kSummaryThreads} + threadIdx.x;
    if (c < end) math::AddLogit(s, x[c], static_cast<int32_t>(c));
  }
  s = BlockMergeStats(s);
  if (threadIdx.x == 0) chunk_stats[row * gridDim.x + chunk] = s;
}

__global__ void MergeSummaryChunksKernel(const math::LogitStats* chunk_stats, int64_t chunks,
                                         const float* logits, int64_t stride,
                                         const int32_t* tokens, float* out, int64_t out_stride) {
  WaitForPredecessor();
  const int64_t row = blockIdx.x;
  math::LogitStats s = math::EmptyLogitStats();
  for (int64_t c = threadIdx.x; c < chunks; c += 32) {
    math::MergeLogitStats(s, chunk_stats[row * chunks + c]);
  }
  WarpMergeStats(s);
  if (threadIdx.x != 0) return;
  const int32_t token = tokens != nullptr ? tokens[row] : -1;
  const float token_logit =
      token >= 0 ? logits[row * stride + token] : __int_as_float(0x7fc00000);  // quiet NaN
  math::WriteLogitSummary(s, token_logit, out + row * out_stride);
}

}  // namespace

int64_t SummaryScratchBytes(int64_t rows, int64_t cols) {
  return rows * ((cols + kSummaryChunk - 1) / kSummaryChunk) * static_cast<int64_t>(sizeof(math::LogitStats));
}

void LaunchSummarizeLogits(const float* logits, int64_t stride, int64_t rows, int64_t cols,
                           const int32_t* tokens, float* out, int64_t out_stride, void* scratch,
                           LaunchStream stream) {
  if (rows == 0) return;
  const int64_t chunks = cols > 0 ? (cols + kSummaryChunk - 1) / kSummaryChunk : 1;
  auto* chunk_stats = static_cast<math::LogitStats*>(scratch);
  const dim3 grid(static_cast<unsigned>(chunks), static_cast<unsigned>(rows));
  Launch(SummarizeChunksKernel, grid, kSummaryThreads, 0, stream, logits, stride, cols, chunk_stats);
  Launch(MergeSummaryChunksKernel, static_cast<unsigned>(rows), 32, 0, stream, chunk_stats, chunks,
         logits, stride, tokens, out, out_stride);
}

}  // namespace verdict::engine::cuda
