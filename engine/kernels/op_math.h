// SPDX-License-Identifier: Apache-2.0
// The per-element and per-row math of the decoder's small ops, written once so that a CPU executor
// and a CUDA kernel (engine/cuda/, a later backend) share it: everything here is a pure inline
// function marked VERDICT_HOST_DEVICE. Launch geometry, tiling and reductions stay outside.
#ifndef VERDICT_ENGINE_KERNELS_OP_MATH_H_
#define VERDICT_ENGINE_KERNELS_OP_MATH_H_

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define VERDICT_HOST_DEVICE __host__ __device__
#else
#define VERDICT_HOST_DEVICE
#endif

namespace verdict::engine::math {

// SiLU(g) * u, as Llama's SwiGLU MLP computes it in f32.
VERDICT_HOST_DEVICE inline float SiluMul(float gate, float up) {
  return gate / (1.0f + expf(-gate)) * up;
}

// 1 / sqrt(mean(x^2) + eps) given the sum of squares of n values.
VERDICT_HOST_DEVICE inline float RmsInverse(float sum_squares, int64_t n, float eps) {
  return 1.0f / sqrtf(sum_squares / static_cast<float>(n) + eps);
}

// Rotates the pair (a, b) by angle with precomputed cos/sin: (a cos - b sin, b cos + a sin).
VERDICT_HOST_DEVICE inline void RotatePair(float& a, float& b, float cos_v, float sin_v) {
  const float a0 = a;
  const float b0 = b;
  a = a0 * cos_v - b0 * sin_v;
  b = b0 * cos_v + a0 * sin_v;
}

// Indices of the i-th rotated pair within a head of `head_dim` (i < head_dim / 2).
VERDICT_HOST_DEVICE inline void RopePairIndices(int64_t i, int64_t head_dim, bool interleaved,
                                                int64_t& first, int64_t& second) {
  if (interleaved) {
    first = 2 * i;
    second = 2 * i + 1;
  } else {
    first = i;
    second = i + head_dim / 2;
  }
}

// Rotation angle of pair i at `position`, computed in f32 as Hugging Face does (position * inv_freq).
VERDICT_HOST_DEVICE inline float RopeAngle(int64_t position, float inv_freq) {
  return static_cast<float>(position) * inv_freq;
}

}  // namespace verdict::engine::math

#endif  // VERDICT_ENGINE_KERNELS_OP_MATH_H_
