// SPDX-License-Identifier: Apache-2.0
// Small f32 vector primitives for the CPU backend's elementwise ops and attention. Compiled for
// several ISAs (target_clones) and dispatched at load time; the shipped binary stays portable.
// Pure functions; thread-safe.
#ifndef VERDICT_ENGINE_KERNELS_VEC_OPS_H_
#define VERDICT_ENGINE_KERNELS_VEC_OPS_H_

#include <cstdint>

namespace verdict::engine::vec {

float Dot(const float* a, const float* b, int64_t n);
// y += alpha * x
void Axpy(float alpha, const float* x, float* y, int64_t n);
// sum of x[i]^2, accumulated in double.
double SumSquares(const float* x, int64_t n);

}  // namespace verdict::engine::vec

#endif  // VERDICT_ENGINE_KERNELS_VEC_OPS_H_
