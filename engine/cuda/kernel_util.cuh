// SPDX-License-Identifier: Apache-2.0
// What the CUDA backend's kernel files share (internal to engine/cuda): typed loads and stores, the
// launch helper (programmatic dependent launch), warp and block reductions, 16-byte loads of eight
// values, and the bf16 tensor-core primitives. Device code; included by the *_kernels.cu files only.
#ifndef VERDICT_ENGINE_CUDA_KERNEL_UTIL_CUH_
#define VERDICT_ENGINE_CUDA_KERNEL_UTIL_CUH_

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <utility>

#include "engine/cuda/kernels.h"

namespace verdict::engine::cuda {

constexpr int kThreads = 256;

__device__ __forceinline__ float Load(const float* p) { return *p; }
__device__ __forceinline__ float Load(const __nv_bfloat16* p) { return __bfloat162float(*p); }
__device__ __forceinline__ float Load(const __half* p) { return __half2float(*p); }
__device__ __forceinline__ void Store(float* p, float v) { *p = v; }
__device__ __forceinline__ void Store(__nv_bfloat16* p, float v) { *p = __float2bfloat16_rn(v); }
__device__ __forceinline__ void Store(__half* p, float v) { *p = __float2half_rn(v); }
// First statement of every kernel: under programmatic dependent launch the kernel may start while
// the previous one on the stream still runs; this waits for it (a no-op otherwise).
__device__ __forceinline__ void WaitForPredecessor() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  cudaGridDependencySynchronize();
#endif
}

template <typename... Params, typename... Args>
void Launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared_bytes,
            LaunchStream stream, Args&&... args) {
  cudaLaunchConfig_t config = {};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = shared_bytes;
  config.stream = stream.stream;
  cudaLaunchAttribute attribute[1] = {};
  attribute[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute[0].val.programmaticStreamSerializationAllowed = stream.programmatic ? 1 : 0;
  config.attrs = attribute;
  config.numAttrs = 1;
  (void)cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...);  // errors: cudaGetLastError
}

// Element i of a 16-bit operand copy (a uniform branch on the type).
__device__ __forceinline__ void StoreCopy(const Copy16& copy, int64_t i, float v) {
  if (copy.type == StorageType::kBF16) {
    Store(static_cast<__nv_bfloat16*>(copy.data) + i, v);
  } else {
    Store(static_cast<__half*>(copy.data) + i, v);
  }
}

struct SumOp {
  __device__ float operator()(float a, float b) const { return a + b; }
  static constexpr float kIdentity = 0.0f;
};
struct MaxOp {
  __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
  static constexpr float kIdentity = -INFINITY;
};

// Reduction over aligned groups of kLanes lanes (the whole warp by default; 4: an mma quad, which
// holds one accumulator row); every lane of a group gets its group's result.
template <typename Op, int kLanes = 32>
__device__ __forceinline__ float WarpReduce(float v) {
  for (int offset = kLanes / 2; offset > 0; offset >>= 1) {
    v = Op()(v, __shfl_xor_sync(0xffffffffu, v, offset));
  }
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
inline __device__ float BlockSum(float v) { return BlockReduce<SumOp>(v); }

inline int Blocks(int64_t n, int threads = kThreads) {
  int64_t blocks = (n + threads - 1) / threads;
  if (blocks > 65535 * 16) blocks = 65535 * 16;
  return static_cast<int>(blocks < 1 ? 1 : blocks);
}

// 8 consecutive elements (16-byte aligned for 16-bit types, 32-byte for f32) as floats.
__device__ __forceinline__ void Load8(const float* p, float* out) {
  const float4 a = reinterpret_cast<const float4*>(p)[0];
  const float4 b = reinterpret_cast<const float4*>(p)[1];
  out[0] = a.x; out[1] = a.y; out[2] = a.z; out[3] = a.w;
  out[4] = b.x; out[5] = b.y; out[6] = b.z; out[7] = b.w;
}
__device__ __forceinline__ float2 ToFloat2(__nv_bfloat162 v) { return __bfloat1622float2(v); }
__device__ __forceinline__ float2 ToFloat2(__half2 v) { return __half22float2(v); }
// 8 16-bit values (one 16-byte load) as four pairs of type Pair.
template <typename Pair>
__device__ __forceinline__ void Load8Pairs(const void* p, float* out) {
  const uint4 raw = *reinterpret_cast<const uint4*>(p);
  const auto* pairs = reinterpret_cast<const Pair*>(&raw);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 f = ToFloat2(pairs[i]);
    out[2 * i] = f.x;
    out[2 * i + 1] = f.y;
  }
}
__device__ __forceinline__ void Load8(const __nv_bfloat16* p, float* out) {
  Load8Pairs<__nv_bfloat162>(p, out);
}
__device__ __forceinline__ void Load8(const __half* p, float* out) { Load8Pairs<__half2>(p, out); }

// Two floats rounded to bf16 as one mma operand register, `low` in the lower half.
__device__ __forceinline__ uint32_t PackBf16x2(float low, float high) {
  const __nv_bfloat162 pair = __floats2bfloat162_rn(low, high);
  return *reinterpret_cast<const uint32_t*>(&pair);
}

// d += a . b for one 16 x 16 (weights) by 16 x 8 (tokens) tile, bf16 in, f32 accumulate.
__device__ __forceinline__ void MmaBf16(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                        uint32_t b1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
}

}  // namespace verdict::engine::cuda

#endif  // VERDICT_ENGINE_CUDA_KERNEL_UTIL_CUH_
