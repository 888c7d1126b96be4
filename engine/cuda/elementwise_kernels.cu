// SPDX-License-Identifier: Apache-2.0
// Row-wise and elementwise ops: conversions, embeddings, RMSNorm (with the residual add), bias,
// add, SwiGLU, row gathers and rotary embeddings.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <cfloat>
#include <cstdint>

#include "engine/cuda/kernel_util.cuh"
#include "engine/cuda/kernels.h"
#include "engine/fp8.h"
#include "engine/kernels/op_math.h"

namespace verdict::engine::cuda {
namespace {

// ---- elementwise ------------------------------------------------------------------------------

template <typename T>
__global__ void ConvertRowsKernel(const float* x, int64_t rows, int64_t cols, int64_t x_stride,
                                  T* out) {
  WaitForPredecessor();
  const int64_t n = rows * cols;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t r = i / cols;
    const int64_t c = i % cols;
    Store(out + i, x[r * x_stride + c]);
  }
}

template <typename T>
__global__ void EmbedKernel(const T* table, int64_t cols, const int32_t* ids, float* out,
                            int64_t out_stride) {
  WaitForPredecessor();
  const int64_t row = blockIdx.x;
  const T* src = table + static_cast<int64_t>(ids[row]) * cols;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) out[row * out_stride + c] = Load(src + c);
}

__global__ void EmbedFp8Kernel(const uint8_t* table, const float* scales, int64_t cols,
                               const int32_t* ids, float* out, int64_t out_stride) {
  WaitForPredecessor();
  const int64_t row = blockIdx.x;
  const int64_t id = ids[row];
  const int64_t blocks_per_row = (cols + kFp8BlockSize - 1) / kFp8BlockSize;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    out[row * out_stride + c] =
        Fp8E4M3ToF32(table[id * cols + c]) * scales[id * blocks_per_row + c / kFp8BlockSize];
  }
}

// One block per row, sized so that each thread loads a few elements (all in flight at once: a
// single row is latency-bound, not bandwidth-bound); the second pass reads them again from L1.
// With `residual` (else nullptr): x += residual first (each thread updates the elements it later
// normalizes, so the row needs no second pass).
__global__ void RmsNormKernel(float* x, int64_t x_stride, int64_t cols, const float* residual,
                              int64_t residual_stride, const float* w, float eps, float* out,
                              int64_t out_stride, Copy16 copy16) {
  WaitForPredecessor();
  float* xr = x + blockIdx.x * x_stride;
  float* yr = out + blockIdx.x * out_stride;
  float sum = 0.0f;
  if (residual != nullptr) {
    const float* rr = residual + blockIdx.x * residual_stride;
#pragma unroll 4
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
      const float v = xr[c] + rr[c];
      xr[c] = v;
      sum += v * v;
    }
  } else {
#pragma unroll 4
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) sum += xr[c] * xr[c];
  }
  const float inv = math::RmsInverse(BlockSum(sum), cols, eps);
#pragma unroll 4
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    const float y = w[c] * (xr[c] * inv);
    yr[c] = y;
    if (copy16.data != nullptr) StoreCopy(copy16, blockIdx.x * cols + c, y);
  }
}

__global__ void AddBiasKernel(float* x, int64_t x_stride, int64_t rows, int64_t cols,
                              const float* bias) {
  WaitForPredecessor();
  const int64_t n = rows * cols;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    x[(i / cols) * x_stride + i % cols] += bias[i % cols];
  }
}

__global__ void AddKernel(const float* x, int64_t x_stride, float* y, int64_t y_stride,
                          int64_t rows, int64_t cols) {
  WaitForPredecessor();
  const int64_t n = rows * cols;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t r = i / cols;
    const int64_t c = i % cols;
    y[r * y_stride + c] += x[r * x_stride + c];
  }
}

__global__ void SiluMulKernel(const float* gate, int64_t gate_stride, const float* up,
                              int64_t up_stride, float* out, int64_t out_stride, int64_t rows,
                              int64_t cols, Copy16 copy16) {
  WaitForPredecessor();
  const int64_t n = rows * cols;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t r = i / cols;
    const int64_t c = i % cols;
    const float y = math::SiluMul(gate[r * gate_stride + c], up[r * up_stride + c]);
    out[r * out_stride + c] = y;
    if (copy16.data != nullptr) StoreCopy(copy16, i, y);
  }
}

__global__ void GatherRowsKernel(const float* src, int64_t src_stride, int64_t cols,
                                 const int32_t* rows, float* dst, int64_t dst_stride) {
  WaitForPredecessor();
  const float* s = src + static_cast<int64_t>(rows[blockIdx.x]) * src_stride;
  float* d = dst + blockIdx.x * dst_stride;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) d[c] = s[c];
}

// One block per (row, head of either tensor), one thread per rotated pair: every load in flight.
__global__ void RopeKernel(RopeTarget first, RopeTarget second, int64_t head_dim,
                           const int32_t* positions, const float* inv_freq, bool interleaved) {
  WaitForPredecessor();
  const bool in_first = blockIdx.y < first.heads;
  const RopeTarget& x = in_first ? first : second;
  const int64_t head = in_first ? blockIdx.y : blockIdx.y - first.heads;
  float* h = x.data + blockIdx.x * x.stride + head * head_dim;
  const int64_t half = head_dim / 2;
  const int64_t position = positions[blockIdx.x];
  for (int64_t i = threadIdx.x; i < half; i += blockDim.x) {
    const float angle = math::RopeAngle(position, inv_freq[i]);
    const float cos_v = cosf(angle);
    const float sin_v = sinf(angle);
    int64_t a, b;
    math::RopePairIndices(i, head_dim, interleaved, a, b);
    math::RotatePair(h[a], h[b], cos_v, sin_v);
  }
}

}  // namespace

void LaunchConvertRows(const float* x, int64_t rows, int64_t cols, int64_t x_stride,
                       StorageType type, void* out, LaunchStream stream) {
  const int blocks = Blocks(rows * cols);
  switch (type) {
    case StorageType::kBF16:
      Launch(ConvertRowsKernel<__nv_bfloat16>, blocks, kThreads, 0, stream, x, rows, cols, x_stride,
             static_cast<__nv_bfloat16*>(out));
      break;
    case StorageType::kF16:
      Launch(ConvertRowsKernel<__half>, blocks, kThreads, 0, stream, x, rows, cols, x_stride,
             static_cast<__half*>(out));
      break;
    case StorageType::kF32:
      Launch(ConvertRowsKernel<float>, blocks, kThreads, 0, stream, x, rows, cols, x_stride,
             static_cast<float*>(out));
      break;
    case StorageType::kF8E4M3:  // weights only: never an activation operand
      break;
  }
}

void LaunchEmbed(const void* table, StorageType type, const float* scales, int64_t cols,
                 const int32_t* ids, int64_t n, float* out, int64_t out_stride, LaunchStream stream) {
  if (n == 0) return;
  const unsigned blocks = static_cast<unsigned>(n);
  switch (type) {
    case StorageType::kBF16:
      Launch(EmbedKernel<__nv_bfloat16>, blocks, kThreads, 0, stream,
             static_cast<const __nv_bfloat16*>(table), cols, ids, out, out_stride);
      break;
    case StorageType::kF16:
      Launch(EmbedKernel<__half>, blocks, kThreads, 0, stream, static_cast<const __half*>(table),
             cols, ids, out, out_stride);
      break;
    case StorageType::kF32:
      Launch(EmbedKernel<float>, blocks, kThreads, 0, stream, static_cast<const float*>(table),
             cols, ids, out, out_stride);
      break;
    case StorageType::kF8E4M3:
      Launch(EmbedFp8Kernel, blocks, kThreads, 0, stream, static_cast<const uint8_t*>(table),
             scales, cols, ids, out, out_stride);
      break;
  }
}

void LaunchRmsNorm(float* x, int64_t x_stride, int64_t rows, int64_t cols, const float* residual,
                   int64_t residual_stride, const float* w, float eps, float* out,
                   int64_t out_stride, Copy16 copy16, LaunchStream stream) {
  if (rows == 0) return;
  // About four elements per thread: 1024 threads for a 4096-wide row, 2 passes of 4 for 8192.
  int64_t threads = (cols / 4 + 31) / 32 * 32;
  threads = threads < 64 ? 64 : (threads > 1024 ? 1024 : threads);
  Launch(RmsNormKernel, static_cast<unsigned>(rows), static_cast<unsigned>(threads), 0, stream, x,
         x_stride, cols, residual, residual_stride, w, eps, out, out_stride, copy16);
}

void LaunchAddBias(float* x, int64_t x_stride, int64_t rows, int64_t cols, const float* bias,
                   LaunchStream stream) {
  if (rows * cols == 0) return;
  Launch(AddBiasKernel, Blocks(rows * cols), kThreads, 0, stream, x, x_stride, rows, cols, bias);
}

void LaunchAdd(const float* x, int64_t x_stride, float* y, int64_t y_stride, int64_t rows,
               int64_t cols, LaunchStream stream) {
  if (rows * cols == 0) return;
  Launch(AddKernel, Blocks(rows * cols), kThreads, 0, stream, x, x_stride, y, y_stride, rows, cols);
}

void LaunchSiluMul(const float* gate, int64_t gate_stride, const float* up, int64_t up_stride,
                   float* out, int64_t out_stride, int64_t rows, int64_t cols, Copy16 copy16,
                   LaunchStream stream) {
  if (rows * cols == 0) return;
  Launch(SiluMulKernel, Blocks(rows * cols), kThreads, 0, stream, gate, gate_stride, up, up_stride,
         out, out_stride, rows, cols, copy16);
}

void LaunchGatherRows(const float* src, int64_t src_stride, int64_t cols, const int32_t* rows,
                      int64_t n, float* dst, int64_t dst_stride, LaunchStream stream) {
  if (n == 0) return;
  Launch(GatherRowsKernel, static_cast<unsigned>(n), kThreads, 0, stream, src, src_stride, cols,
         rows, dst, dst_stride);
}

void LaunchRope(RopeTarget first, RopeTarget second, int64_t rows, int64_t head_dim,
                const int32_t* positions, const float* inv_freq, bool interleaved,
                LaunchStream stream) {
  const int64_t num_heads = first.heads + second.heads;
  if (rows == 0 || num_heads == 0) return;
  const int64_t half = head_dim / 2;
  const unsigned threads = static_cast<unsigned>(half < 32 ? 32 : (half > 256 ? 256 : (half + 31) / 32 * 32));
  const dim3 grid(static_cast<unsigned>(rows), static_cast<unsigned>(num_heads));
  Launch(RopeKernel, grid, threads, 0, stream, first, second, head_dim, positions, inv_freq, interleaved);
}

}  // namespace verdict::engine::cuda
