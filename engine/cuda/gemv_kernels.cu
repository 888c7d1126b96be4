// SPDX-License-Identifier: Apache-2.0
// Matrix products our own kernels take from cuBLASLt where they time faster: skinny products (a
// warp per output column) for bf16/f16/FP8 weights, FP8 verification blocks on the tensor cores,
// and FP8 dequantization for cuBLASLt.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <cfloat>
#include <cstdint>

#include "engine/cuda/kernel_util.cuh"
#include "engine/cuda/kernels.h"
#include "engine/cuda/fp8_mma_math.h"
#include "engine/fp8.h"

namespace verdict::engine::cuda {
namespace {

// ---- skinny products ---------------------------------------------------------------------------

constexpr int kGemvThreads = 256;


// One warp per output column: the lanes stream the column's weight row in 16-byte loads (several
// in flight per lane), each against the m activation rows (L1-resident), then reduce.
template <typename T, int M>
__global__ void GemvKernel(const T* x, int64_t ldx, const T* w, float* out, int64_t ldout,
                           int64_t n, int64_t k, bool accumulate) {
  WaitForPredecessor();
  const int lane = threadIdx.x % 32;
  const int64_t column = blockIdx.x * int64_t{kGemvThreads / 32} + threadIdx.x / 32;
  if (column >= n) return;
  const T* row = w + column * k;
  float acc[M];
#pragma unroll
  for (int r = 0; r < M; ++r) acc[r] = 0.0f;
#pragma unroll 4
  for (int64_t i = lane * 8; i < k; i += 32 * 8) {
    float wf[8];
    Load8(row + i, wf);
#pragma unroll
    for (int r = 0; r < M; ++r) {
      float xf[8];
      Load8(x + r * ldx + i, xf);
#pragma unroll
      for (int j = 0; j < 8; ++j) acc[r] += wf[j] * xf[j];
    }
  }
#pragma unroll
  for (int r = 0; r < M; ++r) {
    const float sum = WarpSum(acc[r]);
    if (lane == 0) {
      float* o = out + r * ldout + column;
      *o = accumulate ? *o + sum : sum;
    }
  }
}

template <typename T>
void GemvTyped(const void* x, int64_t ldx, const void* w, float* out, int64_t ldout, int64_t m,
               int64_t n, int64_t k, bool accumulate, LaunchStream stream) {
  const unsigned blocks = static_cast<unsigned>((n + kGemvThreads / 32 - 1) / (kGemvThreads / 32));
  const T* xt = static_cast<const T*>(x);
  const T* wt = static_cast<const T*>(w);
  switch (m) {
#define VERDICT_GEMV_CASE(M)                                                                     \
  case M:                                                                                        \
    Launch(GemvKernel<T, M>, blocks, kGemvThreads, 0, stream, xt, ldx, wt, out, ldout, n, k, \
           accumulate);                                                                          \
    break;
    VERDICT_GEMV_CASE(1)
    VERDICT_GEMV_CASE(2)
    VERDICT_GEMV_CASE(3)
    VERDICT_GEMV_CASE(4)
    VERDICT_GEMV_CASE(5)
    VERDICT_GEMV_CASE(6)
    VERDICT_GEMV_CASE(7)
    VERDICT_GEMV_CASE(8)
#undef VERDICT_GEMV_CASE
    default:
      break;
  }
}

// 16 E4M3 codes (one 16-byte load) as floats, through the hardware's e4m3x2 -> f16x2 conversion
// (exact: every E4M3 value is an f16 value).
__device__ __forceinline__ void Load16Fp8(const uint8_t* p, float* out) {
  const uint4 raw = *reinterpret_cast<const uint4*>(p);
  const auto* pairs = reinterpret_cast<const __nv_fp8x2_storage_t*>(&raw);
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const __half2_raw h = __nv_cvt_fp8x2_to_halfraw2(pairs[i], __NV_E4M3);
    const float2 f = __half22float2(*reinterpret_cast<const __half2*>(&h));
    out[2 * i] = f.x;
    out[2 * i + 1] = f.y;
  }
}

// As GemvKernel for FP8 weights and bf16 activations: each lane takes 16 codes per step (inside one
// 128-value scale block), sums their products with each activation row, then applies the scale.
// A warp computes C adjacent columns: with several rows (M > 2) the activation loads, served from
// L1, would otherwise outweigh the weight bytes streamed from memory (per 512 codes of a column,
// M x 1 KiB of activations), so C = 4 reads each activation fragment once for four columns.
template <int M, int C>
__global__ void GemvFp8Kernel(const __nv_bfloat16* x, int64_t ldx, const uint8_t* w,
                              const float* scales, float* out, int64_t ldout, int64_t n, int64_t k,
                              bool accumulate) {
  WaitForPredecessor();
  const int lane = threadIdx.x % 32;
  const int64_t first_column = (blockIdx.x * int64_t{kGemvThreads / 32} + threadIdx.x / 32) * C;
  if (first_column >= n) return;
  const int columns = n - first_column < C ? static_cast<int>(n - first_column) : C;  // warp-uniform
  const int64_t blocks_per_row = (k + kFp8BlockSize - 1) / kFp8BlockSize;
  float acc[C][M];
#pragma unroll
  for (int c = 0; c < C; ++c) {
#pragma unroll
    for (int r = 0; r < M; ++r) acc[c][r] = 0.0f;
  }
#pragma unroll 2
  for (int64_t i = lane * 16; i < k; i += 32 * 16) {
    float wf[C][16];
    float scale[C] = {};
#pragma unroll
    for (int c = 0; c < C; ++c) {
      if (c < columns) {
        Load16Fp8(w + (first_column + c) * k + i, wf[c]);
        scale[c] = scales[(first_column + c) * blocks_per_row + i / kFp8BlockSize];
      }
    }
#pragma unroll
    for (int r = 0; r < M; ++r) {
      float xf[16];
      Load8(x + r * ldx + i, xf);
      Load8(x + r * ldx + i + 8, xf + 8);
#pragma unroll
      for (int c = 0; c < C; ++c) {
        if (c < columns) {
          float partial = 0.0f;
#pragma unroll
          for (int j = 0; j < 16; ++j) partial += wf[c][j] * xf[j];
          acc[c][r] += partial * scale[c];
        }
      }
    }
  }
#pragma unroll
  for (int c = 0; c < C; ++c) {
    if (c >= columns) break;
#pragma unroll
    for (int r = 0; r < M; ++r) {
      const float sum = WarpSum(acc[c][r]);
      if (lane == 0) {
        float* o = out + r * ldout + first_column + c;
        *o = accumulate ? *o + sum : sum;
      }
    }
  }
}

template <int C>
void GemvFp8Group(const __nv_bfloat16* x, int64_t ldx, const uint8_t* codes, const float* scales,
                  float* out, int64_t ldout, int64_t rows, int64_t n, int64_t k, bool accumulate,
                  LaunchStream stream) {
  const int64_t columns_per_block = (kGemvThreads / 32) * C;
  const unsigned blocks = static_cast<unsigned>((n + columns_per_block - 1) / columns_per_block);
  switch (rows) {
#define VERDICT_GEMV_FP8_CASE(M)                                                                 \
  case M:                                                                                        \
    Launch(GemvFp8Kernel<M, C>, blocks, kGemvThreads, 0, stream, x, ldx, codes, scales, out,     \
           ldout, n, k, accumulate);                                                             \
    break;
    VERDICT_GEMV_FP8_CASE(1)
    VERDICT_GEMV_FP8_CASE(2)
    VERDICT_GEMV_FP8_CASE(3)
    VERDICT_GEMV_FP8_CASE(4)
    VERDICT_GEMV_FP8_CASE(5)
    VERDICT_GEMV_FP8_CASE(6)
    VERDICT_GEMV_FP8_CASE(7)
    VERDICT_GEMV_FP8_CASE(8)
#undef VERDICT_GEMV_FP8_CASE
    default:
      break;
  }
}

// ---- FP8 tensor-core products (verification blocks) --------------------------------------------

// A block takes 16 weight rows; its warps split k (warp w takes steps w, w + kFp8MmaWarps, ...) and
// sum their accumulators in shared memory at the end. 16 rows per block keep the grid several
// blocks per SM deep for the smallest projections (4096 rows: 256 blocks).
constexpr int kFp8MmaWarps = 8;
// Tokens per pass: up to 4 token tiles of 8 (more would not fit the accumulators in registers).
constexpr int kFp8MmaMaxTiles = 4;
constexpr int64_t kFp8MmaTokensPerPass = 8 * kFp8MmaMaxTiles;


// Two E4M3 codes (the low 16 bits) as a bf16 pair, lower code in the lower half (exact: every E4M3
// value is a bf16 value).
__device__ __forceinline__ uint32_t Fp8PairToBf16x2(uint32_t codes) {
  const __half2_raw h =
      __nv_cvt_fp8x2_to_halfraw2(static_cast<__nv_fp8x2_storage_t>(codes & 0xffffu), __NV_E4M3);
  const float2 f = __half22float2(*reinterpret_cast<const __half2*>(&h));
  return PackBf16x2(f.x, f.y);
}


__device__ __forceinline__ uint32_t Word(const uint4& v, int i) {
  return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w;
}

// out[token, row] (+)= x[token, :] . dequantized w[row, :] for up to 8 * T tokens, on the tensor
// cores: operand placement in fp8_mma_math.h. Each 128-value step's partial sums take the rows'
// scales (as GemvFp8Kernel does). REQUIRES: k a multiple of 128; x rows 16-byte aligned.
template <int T>
__global__ void __launch_bounds__(kFp8MmaWarps * 32)
    Fp8MmaKernel(const __nv_bfloat16* x, int64_t ldx, const uint8_t* w, const float* scales,
                 float* out, int64_t ldout, int64_t m, int64_t n, int64_t k, bool accumulate) {
  WaitForPredecessor();
  constexpr int kValues = T * 4;  // accumulator registers per lane
  __shared__ float warp_sums[kFp8MmaWarps][32][kValues + 1];  // padded: lanes hit distinct banks
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  const int group = cuda_math::MmaGroup(lane);
  const int64_t first_row = blockIdx.x * int64_t{16};
  const int64_t steps = k / cuda_math::kMmaStepK;
  const int64_t lane_k = cuda_math::MmaLaneFirstK(lane);
  // The lane's weight rows g and g + 8, its token g of each tile: clamped into the matrices (rows
  // and tokens past the end are computed and never stored).
  int64_t rows[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int64_t r = first_row + group + 8 * h;
    rows[h] = r < n ? r : n - 1;
  }
  const __nv_bfloat16* x_lane[T];
#pragma unroll
  for (int t = 0; t < T; ++t) {
    const int64_t token = 8 * t + group;
    x_lane[t] = x + (token < m ? token : m - 1) * ldx + lane_k;
  }
  float acc[T][4] = {};
#pragma unroll 2
  for (int64_t step = warp; step < steps; step += kFp8MmaWarps) {
    const int64_t k0 = step * cuda_math::kMmaStepK;
    uint4 codes[2][2];  // [row g, g + 8][16 codes]: the lane's 32 codes of each row
    float scale[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const auto* p = reinterpret_cast<const uint4*>(w + rows[h] * k + k0 + lane_k);
      codes[h][0] = p[0];
      codes[h][1] = p[1];
      scale[h] = scales[rows[h] * steps + step];
    }
    float partial[T][4] = {};
#pragma unroll
    for (int pair_of_steps = 0; pair_of_steps < cuda_math::kMmaSubSteps / 2; ++pair_of_steps) {
      uint4 values[T];  // 8 activations of each token: two sub-steps
#pragma unroll
      for (int t = 0; t < T; ++t) {
        values[t] = *reinterpret_cast<const uint4*>(x_lane[t] + k0 + 8 * pair_of_steps);
      }
#pragma unroll
      for (int sub = 0; sub < 2; ++sub) {
        const int s = 2 * pair_of_steps + sub;
        uint32_t a[4];
#pragma unroll
        for (int reg = 0; reg < 4; ++reg) {
          const int offset = cuda_math::MmaPairOffset(s, cuda_math::MmaAPair(reg));  // code index
          const int h = (cuda_math::MmaARow(lane, reg) - group) / 8;  // row g or g + 8
          const uint32_t word = Word(codes[h][offset / 16], (offset % 16) / 4);
          a[reg] = Fp8PairToBf16x2(word >> (8 * (offset % 4)));
        }
#pragma unroll
        for (int t = 0; t < T; ++t) {
          const int offset0 = cuda_math::MmaPairOffset(s, cuda_math::MmaBPair(0)) % 8;
          const int offset1 = cuda_math::MmaPairOffset(s, cuda_math::MmaBPair(1)) % 8;
          MmaBf16(partial[t], a, Word(values[t], offset0 / 2), Word(values[t], offset1 / 2));
        }
      }
    }
#pragma unroll
    for (int t = 0; t < T; ++t) {
#pragma unroll
      for (int reg = 0; reg < 4; ++reg) {
        acc[t][reg] += partial[t][reg] * scale[(cuda_math::MmaAccRow(lane, reg) - group) / 8];
      }
    }
  }
#pragma unroll
  for (int t = 0; t < T; ++t) {
#pragma unroll
    for (int reg = 0; reg < 4; ++reg) warp_sums[warp][lane][4 * t + reg] = acc[t][reg];
  }
  __syncthreads();
  for (int i = threadIdx.x; i < 32 * kValues; i += blockDim.x) {
    const int source_lane = i / kValues;
    const int t = (i % kValues) / 4;
    const int reg = i % 4;
    float sum = 0.0f;
#pragma unroll
    for (int v = 0; v < kFp8MmaWarps; ++v) sum += warp_sums[v][source_lane][i % kValues];
    const int64_t row = first_row + cuda_math::MmaAccRow(source_lane, reg);
    const int64_t token = 8 * t + cuda_math::MmaAccCol(source_lane, reg);
    if (row < n && token < m) {
      float* o = out + token * ldout + row;
      *o = accumulate ? *o + sum : sum;
    }
  }
}

// Tokens in passes of up to 32 (each pass streams the weights again).
void Fp8Mma(const __nv_bfloat16* x, int64_t ldx, const uint8_t* codes, const float* scales,
            float* out, int64_t ldout, int64_t m, int64_t n, int64_t k, bool accumulate,
            LaunchStream stream) {
  const unsigned blocks = static_cast<unsigned>((n + 15) / 16);
  for (int64_t first = 0; first < m; first += kFp8MmaTokensPerPass) {
    const int64_t tokens = m - first < kFp8MmaTokensPerPass ? m - first : kFp8MmaTokensPerPass;
    const __nv_bfloat16* xt = x + first * ldx;
    float* o = out + first * ldout;
    switch ((tokens + 7) / 8) {
#define VERDICT_FP8_MMA_CASE(T)                                                                 \
  case T:                                                                                       \
    Launch(Fp8MmaKernel<T>, blocks, kFp8MmaWarps * 32, 0, stream, xt, ldx, codes, scales, o,     \
           ldout, tokens, n, k, accumulate);                                                    \
    break;
      VERDICT_FP8_MMA_CASE(1)
      VERDICT_FP8_MMA_CASE(2)
      VERDICT_FP8_MMA_CASE(3)
      VERDICT_FP8_MMA_CASE(4)
#undef VERDICT_FP8_MMA_CASE
      default:
        break;
    }
  }
}
static_assert(kFp8MmaMaxTiles == 4, "Fp8Mma's cases cover every tile count");

// Verification blocks and other m > 8 products run on the tensor cores (k a multiple of 128).
// Otherwise rows go in groups of 8: each group streams the weights again (from L2 when they fit).
// One or two rows keep a column per warp (a decode step needs every warp it can get to saturate
// memory).
void GemvFp8(const void* x, int64_t ldx, const void* w, const float* scales, float* out,
             int64_t ldout, int64_t m, int64_t n, int64_t k, bool accumulate, LaunchStream stream) {
  const uint8_t* codes = static_cast<const uint8_t*>(w);
  if (m > 8 && k % cuda_math::kMmaStepK == 0) {
    Fp8Mma(static_cast<const __nv_bfloat16*>(x), ldx, codes, scales, out, ldout, m, n, k,
           accumulate, stream);
    return;
  }
  for (int64_t first = 0; first < m; first += 8) {
    const auto* xt = static_cast<const __nv_bfloat16*>(x) + first * ldx;
    float* o = out + first * ldout;
    const int64_t rows = m - first < 8 ? m - first : 8;
    if (rows <= 2) {
      GemvFp8Group<1>(xt, ldx, codes, scales, o, ldout, rows, n, k, accumulate, stream);
    } else {
      GemvFp8Group<4>(xt, ldx, codes, scales, o, ldout, rows, n, k, accumulate, stream);
    }
  }
}

__global__ void DequantizeFp8Kernel(const uint8_t* codes, const float* scales, int64_t rows,
                                    int64_t cols, __nv_bfloat16* out) {
  WaitForPredecessor();
  const int64_t blocks_per_row = (cols + kFp8BlockSize - 1) / kFp8BlockSize;
  const int64_t n = rows * cols;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t r = i / cols;
    const int64_t c = i % cols;
    out[i] = __float2bfloat16_rn(Fp8E4M3ToF32(codes[i]) * scales[r * blocks_per_row + c / kFp8BlockSize]);
  }
}

}  // namespace

bool GemvApplies(StorageType type, int64_t m, int64_t k, const void* x, int64_t ldx, const void* w) {
  const bool fp8 = type == StorageType::kF8E4M3;
  const int64_t max_rows = fp8 ? kGemvMaxRowsFp8 : kGemvMaxRows;
  const int64_t multiple = fp8 ? 16 : 8;
  return type != StorageType::kF32 && m >= 1 && m <= max_rows && k % multiple == 0 &&
         ldx % 8 == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0 &&
         reinterpret_cast<uintptr_t>(w) % 16 == 0;
}

void LaunchGemv(const void* x, int64_t ldx, const void* w, StorageType type, const float* scales,
                float* out, int64_t ldout, int64_t m, int64_t n, int64_t k, bool accumulate,
                LaunchStream stream) {
  if (type == StorageType::kBF16) {
    GemvTyped<__nv_bfloat16>(x, ldx, w, out, ldout, m, n, k, accumulate, stream);
  } else if (type == StorageType::kF16) {
    GemvTyped<__half>(x, ldx, w, out, ldout, m, n, k, accumulate, stream);
  } else if (type == StorageType::kF8E4M3) {
    GemvFp8(x, ldx, w, scales, out, ldout, m, n, k, accumulate, stream);
  }
}

void LaunchDequantizeFp8(const uint8_t* codes, const float* scales, int64_t rows, int64_t cols,
                         void* out, LaunchStream stream) {
  if (rows * cols == 0) return;
  Launch(DequantizeFp8Kernel, Blocks(rows * cols), kThreads, 0, stream, codes, scales, rows, cols,
         static_cast<__nv_bfloat16*>(out));
}

}  // namespace verdict::engine::cuda
