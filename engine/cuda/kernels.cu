// SPDX-License-Identifier: Apache-2.0
// The CUDA backend's kernels. Launch geometry, loads/stores and reductions live here; the math of
// each element comes from engine/kernels/op_math.h and engine/cuda/attention_math.h.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cfloat>

#include "engine/cuda/kernels.h"
#include "engine/kernels/op_math.h"

namespace verdict::engine::cuda {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ float Load(const float* p) { return *p; }
__device__ __forceinline__ float Load(const __nv_bfloat16* p) { return __bfloat162float(*p); }
__device__ __forceinline__ float Load(const __half* p) { return __half2float(*p); }
__device__ __forceinline__ void Store(float* p, float v) { *p = v; }
__device__ __forceinline__ void Store(__nv_bfloat16* p, float v) { *p = __float2bfloat16_rn(v); }
__device__ __forceinline__ void Store(__half* p, float v) { *p = __float2half_rn(v); }

struct SumOp {
  __device__ float operator()(float a, float b) const { return a + b; }
  static constexpr float kIdentity = 0.0f;
};
struct MaxOp {
  __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
  static constexpr float kIdentity = -INFINITY;
};

template <typename Op>
__device__ __forceinline__ float WarpReduce(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) v = Op()(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}
__device__ __forceinline__ float WarpSum(float v) { return WarpReduce<SumOp>(v); }

// Block-wide reduction (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
// Each instantiation has its own shared scratch.
template <typename Op>
__device__ float BlockReduce(float v) {
  __shared__ float partial[32];
  __shared__ float total;
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  v = WarpReduce<Op>(v);
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  if (warp == 0) {
    float w = lane < static_cast<int>(blockDim.x / 32) ? partial[lane] : Op::kIdentity;
    w = WarpReduce<Op>(w);
    if (lane == 0) total = w;
  }
  __syncthreads();
  return total;
}
__device__ float BlockSum(float v) { return BlockReduce<SumOp>(v); }
__device__ float BlockMax(float v) { return BlockReduce<MaxOp>(v); }

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

// One block per row: each thread accumulates a strided share of the row, then warps and the block
// merge (the merge is exact for the argmax and reorders only the sums).
__global__ void SummarizeLogitsKernel(const float* logits, int64_t stride, int64_t cols,
                                      const int32_t* tokens, float* out, int64_t out_stride) {
  const int64_t row = blockIdx.x;
  const float* x = logits + row * stride;
  math::LogitStats s = math::EmptyLogitStats();
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    math::AddLogit(s, x[c], static_cast<int32_t>(c));
  }
  WarpMergeStats(s);
  __shared__ math::LogitStats warp_stats[32];
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  if (lane == 0) warp_stats[warp] = s;
  __syncthreads();
  if (warp != 0) return;
  s = lane < static_cast<int>(blockDim.x / 32) ? warp_stats[lane] : math::EmptyLogitStats();
  WarpMergeStats(s);
  if (lane != 0) return;
  const int32_t token = tokens != nullptr ? tokens[row] : -1;
  const float token_logit = token >= 0 ? x[token] : __int_as_float(0x7fc00000);  // quiet NaN
  math::WriteLogitSummary(s, token_logit, out + row * out_stride);
}

int Blocks(int64_t n, int threads = kThreads) {
  int64_t blocks = (n + threads - 1) / threads;
  if (blocks > 65535 * 16) blocks = 65535 * 16;
  return static_cast<int>(blocks < 1 ? 1 : blocks);
}

// ---- elementwise ------------------------------------------------------------------------------

template <typename T>
__global__ void ConvertRowsKernel(const float* x, int64_t rows, int64_t cols, int64_t x_stride,
                                  T* out) {
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
  const int64_t row = blockIdx.x;
  const T* src = table + static_cast<int64_t>(ids[row]) * cols;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) out[row * out_stride + c] = Load(src + c);
}

__global__ void RmsNormKernel(const float* x, int64_t x_stride, int64_t cols, const float* w,
                              float eps, float* out, int64_t out_stride) {
  const float* xr = x + blockIdx.x * x_stride;
  float* yr = out + blockIdx.x * out_stride;
  float sum = 0.0f;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) sum += xr[c] * xr[c];
  const float inv = math::RmsInverse(BlockSum(sum), cols, eps);
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) yr[c] = w[c] * (xr[c] * inv);
}

__global__ void AddBiasKernel(float* x, int64_t x_stride, int64_t rows, int64_t cols,
                              const float* bias) {
  const int64_t n = rows * cols;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    x[(i / cols) * x_stride + i % cols] += bias[i % cols];
  }
}

__global__ void AddKernel(const float* x, int64_t x_stride, float* y, int64_t y_stride,
                          int64_t rows, int64_t cols) {
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
                              int64_t cols) {
  const int64_t n = rows * cols;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t r = i / cols;
    const int64_t c = i % cols;
    out[r * out_stride + c] = math::SiluMul(gate[r * gate_stride + c], up[r * up_stride + c]);
  }
}

__global__ void GatherRowsKernel(const float* src, int64_t src_stride, int64_t cols,
                                 const int32_t* rows, float* dst, int64_t dst_stride) {
  const float* s = src + static_cast<int64_t>(rows[blockIdx.x]) * src_stride;
  float* d = dst + blockIdx.x * dst_stride;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) d[c] = s[c];
}

__global__ void RopeKernel(float* x, int64_t x_stride, int64_t num_heads, int64_t head_dim,
                           const int32_t* positions, const float* inv_freq, bool interleaved) {
  float* row = x + blockIdx.x * x_stride;
  const int64_t half = head_dim / 2;
  const int64_t position = positions[blockIdx.x];
  for (int64_t idx = threadIdx.x; idx < num_heads * half; idx += blockDim.x) {
    const int64_t head = idx / half;
    const int64_t i = idx % half;
    const float angle = math::RopeAngle(position, inv_freq[i]);
    const float cos_v = cosf(angle);
    const float sin_v = sinf(angle);
    int64_t a, b;
    math::RopePairIndices(i, head_dim, interleaved, a, b);
    float* h = row + head * head_dim;
    math::RotatePair(h[a], h[b], cos_v, sin_v);
  }
}

// ---- attention ---------------------------------------------------------------------------------

template <typename KvT>
__global__ void KvWriteKernel(AttentionLaunch a) {
  const int64_t row = blockIdx.x;
  const DeviceSequence seq = a.sequences[a.row_sequence[row]];
  const int64_t position = seq.start_pos + (row - seq.row_begin);
  KvT* block = reinterpret_cast<KvT*>(seq.block_table[a.layout.BlockIndex(position)]);
  KvT* key = block + a.layout.KeyOffset(a.layer, position);
  KvT* value = block + a.layout.ValueOffset(a.layer, position);
  for (int64_t e = threadIdx.x; e < a.layout.kv_dim; e += blockDim.x) {
    Store(key + e, a.k[row * a.k_stride + e]);
    Store(value + e, a.v[row * a.v_stride + e]);
  }
}

constexpr int kAttentionThreads = 128;
constexpr int kAttentionWarps = kAttentionThreads / 32;
constexpr int kMaxDimsPerLane = 8;  // kMaxAttentionHeadDim / 32

// One block per (head, row, split): the chunk's scores, their softmax partials and the
// unnormalised weighted sum of values. Partial layout: [row][head][split] x (head_dim + 2) floats:
// the accumulation, then max and sum. Shared memory: q [head_dim], scores [split_positions],
// per-warp accumulations [warps][head_dim], then the chunk's block addresses.
// Warps take positions round-robin (independent loads in flight for both keys and values) and the
// chunk's block table is read once into shared memory.
template <typename KvT>
__global__ void AttentionSplitKernel(AttentionLaunch a, int64_t row_offset) {
  extern __shared__ float shared[];
  const int64_t head = blockIdx.x;
  const int64_t local_row = blockIdx.y;
  const int64_t row = row_offset + local_row;
  const int64_t split = blockIdx.z;
  const int64_t head_dim = a.head_dim;
  float* q_shared = shared;
  float* scores = q_shared + head_dim;
  float* warp_acc = scores + a.split_positions;
  auto* blocks = reinterpret_cast<const KvT**>(
      (reinterpret_cast<uintptr_t>(warp_acc + kAttentionWarps * head_dim) + 7) & ~uintptr_t{7});

  const DeviceSequence seq = a.sequences[a.row_sequence[row]];
  const int64_t position = seq.start_pos + (row - seq.row_begin);
  int64_t begin, end;
  cuda_math::SplitRange(split, a.split_positions, position + 1, begin, end);
  float* partial = a.partials + ((local_row * a.num_heads + head) * a.num_splits + split) * (head_dim + 2);
  if (begin >= end) {
    for (int64_t d = threadIdx.x; d < head_dim; d += blockDim.x) partial[d] = 0.0f;
    if (threadIdx.x == 0) {
      partial[head_dim] = -INFINITY;
      partial[head_dim + 1] = 0.0f;
    }
    return;
  }
  const int64_t first_block = a.layout.BlockIndex(begin);
  const int64_t num_blocks = a.layout.BlockIndex(end - 1) - first_block + 1;
  for (int64_t i = threadIdx.x; i < num_blocks; i += blockDim.x) {
    blocks[i] = reinterpret_cast<const KvT*>(seq.block_table[first_block + i]);
  }
  const float* q = a.q + row * a.q_stride + head * head_dim;
  for (int64_t d = threadIdx.x; d < head_dim; d += blockDim.x) q_shared[d] = q[d];
  __syncthreads();

  const int64_t kv_offset = cuda_math::KvHeadOf(head, a.num_heads, a.num_kv_heads) * head_dim;
  const float scale = cuda_math::AttentionScale(head_dim);
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  for (int64_t p = begin + warp; p < end; p += kAttentionWarps) {
    const KvT* key = blocks[a.layout.BlockIndex(p) - first_block] + a.layout.KeyOffset(a.layer, p) + kv_offset;
    float dot = 0.0f;
    for (int64_t d = lane; d < head_dim; d += 32) dot += q_shared[d] * Load(key + d);
    dot = WarpSum(dot);
    if (lane == 0) scores[p - begin] = dot * scale;
  }
  __syncthreads();
  const int64_t count = end - begin;
  float local_max = -INFINITY;
  for (int64_t i = threadIdx.x; i < count; i += blockDim.x) local_max = fmaxf(local_max, scores[i]);
  const float chunk_max = BlockMax(local_max);
  float local_sum = 0.0f;
  for (int64_t i = threadIdx.x; i < count; i += blockDim.x) {
    const float e = expf(scores[i] - chunk_max);
    scores[i] = e;
    local_sum += e;
  }
  const float chunk_sum = BlockSum(local_sum);  // also orders the score writes before the reads

  float acc[kMaxDimsPerLane];
#pragma unroll
  for (int j = 0; j < kMaxDimsPerLane; ++j) acc[j] = 0.0f;
  for (int64_t p = begin + warp; p < end; p += kAttentionWarps) {
    const float weight = scores[p - begin];
    const KvT* value = blocks[a.layout.BlockIndex(p) - first_block] + a.layout.ValueOffset(a.layer, p) + kv_offset;
#pragma unroll
    for (int j = 0; j < kMaxDimsPerLane; ++j) {
      const int64_t d = lane + 32 * j;
      if (d < head_dim) acc[j] += weight * Load(value + d);
    }
  }
#pragma unroll
  for (int j = 0; j < kMaxDimsPerLane; ++j) {
    const int64_t d = lane + 32 * j;
    if (d < head_dim) warp_acc[warp * head_dim + d] = acc[j];
  }
  __syncthreads();
  for (int64_t d = threadIdx.x; d < head_dim; d += blockDim.x) {
    float total = 0.0f;
    for (int w = 0; w < kAttentionWarps; ++w) total += warp_acc[w * head_dim + d];
    partial[d] = total;
  }
  if (threadIdx.x == 0) {
    partial[head_dim] = chunk_max;
    partial[head_dim + 1] = chunk_sum;
  }
}

// One block per (head, row): merges the splits' partials into the output.
__global__ void AttentionCombineKernel(AttentionLaunch a, int64_t row_offset) {
  const int64_t head = blockIdx.x;
  const int64_t local_row = blockIdx.y;
  const int64_t row = row_offset + local_row;
  const int64_t head_dim = a.head_dim;
  const float* partials = a.partials + (local_row * a.num_heads + head) * a.num_splits * (head_dim + 2);
  float global_max = -INFINITY;
  for (int64_t s = 0; s < a.num_splits; ++s) {
    global_max = fmaxf(global_max, partials[s * (head_dim + 2) + head_dim]);
  }
  float denominator = 0.0f;
  for (int64_t s = 0; s < a.num_splits; ++s) {
    const float* p = partials + s * (head_dim + 2);
    denominator += cuda_math::ChunkWeight(p[head_dim], global_max) * p[head_dim + 1];
  }
  float* out = a.out + row * a.out_stride + head * head_dim;
  for (int64_t d = threadIdx.x; d < head_dim; d += blockDim.x) {
    float acc = 0.0f;
    for (int64_t s = 0; s < a.num_splits; ++s) {
      const float* p = partials + s * (head_dim + 2);
      acc += cuda_math::ChunkWeight(p[head_dim], global_max) * p[d];
    }
    out[d] = acc / denominator;
  }
}

template <typename KvT>
void AttentionTyped(const AttentionLaunch& a, cudaStream_t stream) {
  KvWriteKernel<KvT><<<static_cast<unsigned>(a.rows), kAttentionThreads, 0, stream>>>(a);
  const int64_t max_blocks = a.split_positions / a.layout.block_positions + 2;
  const size_t shared_bytes =
      (a.head_dim + a.split_positions + kAttentionWarps * a.head_dim) * sizeof(float) + 8 +
      max_blocks * sizeof(void*);
  for (int64_t offset = 0; offset < a.rows; offset += a.partial_rows) {
    const int64_t rows = a.rows - offset < a.partial_rows ? a.rows - offset : a.partial_rows;
    const dim3 grid(static_cast<unsigned>(a.num_heads), static_cast<unsigned>(rows),
                    static_cast<unsigned>(a.num_splits));
    AttentionSplitKernel<KvT><<<grid, kAttentionThreads, shared_bytes, stream>>>(a, offset);
    const dim3 combine_grid(static_cast<unsigned>(a.num_heads), static_cast<unsigned>(rows));
    AttentionCombineKernel<<<combine_grid, kAttentionThreads, 0, stream>>>(a, offset);
  }
}

}  // namespace

void LaunchConvertRows(const float* x, int64_t rows, int64_t cols, int64_t x_stride,
                       StorageType type, void* out, cudaStream_t stream) {
  const int blocks = Blocks(rows * cols);
  switch (type) {
    case StorageType::kBF16:
      ConvertRowsKernel<<<blocks, kThreads, 0, stream>>>(x, rows, cols, x_stride,
                                                         static_cast<__nv_bfloat16*>(out));
      break;
    case StorageType::kF16:
      ConvertRowsKernel<<<blocks, kThreads, 0, stream>>>(x, rows, cols, x_stride,
                                                         static_cast<__half*>(out));
      break;
    case StorageType::kF32:
      ConvertRowsKernel<<<blocks, kThreads, 0, stream>>>(x, rows, cols, x_stride,
                                                         static_cast<float*>(out));
      break;
  }
}

void LaunchEmbed(const void* table, StorageType type, int64_t cols, const int32_t* ids, int64_t n,
                 float* out, int64_t out_stride, cudaStream_t stream) {
  if (n == 0) return;
  const unsigned blocks = static_cast<unsigned>(n);
  switch (type) {
    case StorageType::kBF16:
      EmbedKernel<<<blocks, kThreads, 0, stream>>>(static_cast<const __nv_bfloat16*>(table), cols,
                                                   ids, out, out_stride);
      break;
    case StorageType::kF16:
      EmbedKernel<<<blocks, kThreads, 0, stream>>>(static_cast<const __half*>(table), cols, ids,
                                                   out, out_stride);
      break;
    case StorageType::kF32:
      EmbedKernel<<<blocks, kThreads, 0, stream>>>(static_cast<const float*>(table), cols, ids,
                                                   out, out_stride);
      break;
  }
}

void LaunchRmsNorm(const float* x, int64_t x_stride, int64_t rows, int64_t cols, const float* w,
                   float eps, float* out, int64_t out_stride, cudaStream_t stream) {
  if (rows == 0) return;
  RmsNormKernel<<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(x, x_stride, cols, w, eps,
                                                                      out, out_stride);
}

void LaunchAddBias(float* x, int64_t x_stride, int64_t rows, int64_t cols, const float* bias,
                   cudaStream_t stream) {
  if (rows * cols == 0) return;
  AddBiasKernel<<<Blocks(rows * cols), kThreads, 0, stream>>>(x, x_stride, rows, cols, bias);
}

void LaunchAdd(const float* x, int64_t x_stride, float* y, int64_t y_stride, int64_t rows,
               int64_t cols, cudaStream_t stream) {
  if (rows * cols == 0) return;
  AddKernel<<<Blocks(rows * cols), kThreads, 0, stream>>>(x, x_stride, y, y_stride, rows, cols);
}

void LaunchSiluMul(const float* gate, int64_t gate_stride, const float* up, int64_t up_stride,
                   float* out, int64_t out_stride, int64_t rows, int64_t cols, cudaStream_t stream) {
  if (rows * cols == 0) return;
  SiluMulKernel<<<Blocks(rows * cols), kThreads, 0, stream>>>(gate, gate_stride, up, up_stride,
                                                              out, out_stride, rows, cols);
}

void LaunchGatherRows(const float* src, int64_t src_stride, int64_t cols, const int32_t* rows,
                      int64_t n, float* dst, int64_t dst_stride, cudaStream_t stream) {
  if (n == 0) return;
  GatherRowsKernel<<<static_cast<unsigned>(n), kThreads, 0, stream>>>(src, src_stride, cols, rows,
                                                                      dst, dst_stride);
}

void LaunchSummarizeLogits(const float* logits, int64_t stride, int64_t rows, int64_t cols,
                           const int32_t* tokens, float* out, int64_t out_stride,
                           cudaStream_t stream) {
  if (rows == 0) return;
  constexpr int kSummaryThreads = 1024;  // few rows of 128k logits: as many loads in flight as fit
  SummarizeLogitsKernel<<<static_cast<unsigned>(rows), kSummaryThreads, 0, stream>>>(
      logits, stride, cols, tokens, out, out_stride);
}

void LaunchRope(float* x, int64_t x_stride, int64_t rows, int64_t num_heads, int64_t head_dim,
                const int32_t* positions, const float* inv_freq, bool interleaved,
                cudaStream_t stream) {
  if (rows == 0) return;
  RopeKernel<<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(x, x_stride, num_heads,
                                                                   head_dim, positions, inv_freq,
                                                                   interleaved);
}

void LaunchAttention(const AttentionLaunch& a, cudaStream_t stream) {
  if (a.rows == 0) return;
  switch (a.kv_type) {
    case StorageType::kBF16:
      AttentionTyped<__nv_bfloat16>(a, stream);
      break;
    case StorageType::kF16:
      AttentionTyped<__half>(a, stream);
      break;
    case StorageType::kF32:
      AttentionTyped<float>(a, stream);
      break;
  }
}

}  // namespace verdict::engine::cuda
