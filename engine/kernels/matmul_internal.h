// SPDX-License-Identifier: Apache-2.0
// Internals of MatMul shared by matmul.cc, the per-ISA kernel files, the tests and the benchmark:
// the per-ISA kernel table and an entry point that forces one algorithm. Not for other callers.
// Thread-safety: the kernels are pure functions of their arguments (thread-compatible).
#ifndef VERDICT_ENGINE_KERNELS_MATMUL_INTERNAL_H_
#define VERDICT_ENGINE_KERNELS_MATMUL_INTERNAL_H_

#include <cstddef>
#include <cstdint>

#include "engine/dtype.h"
#include "engine/kernels/matmul.h"

namespace verdict::engine::matmul_internal {

// One MatMul call, with the weight rows addressed as bytes.
struct GemmArgs {
  const float* x;  // [m, k], row stride ldx
  int64_t m;
  int64_t ldx;
  const uint8_t* w;  // [n, k] in `dtype`, row n at w + n * row_bytes
  DType dtype;
  int64_t k;
  size_t row_bytes;
  float* y;  // [m, n], row stride ldy
  int64_t ldy;
  bool accumulate;
};

// Computes y[:, n_begin:n_end) for all m rows of x.
using RowRangeKernel = void (*)(const GemmArgs& args, int64_t n_begin, int64_t n_end);

// Converts `count` weights of one row, starting at element k0, to f32: out[i] = w[row, k0 + i].
// REQUIRES for kQ8_0: k0 % 32 == 0 and count % 32 == 0.
using ConvertRowFn = void (*)(const uint8_t* row, DType dtype, int64_t k0, int64_t count,
                              float* out);

struct KernelTable {
  RowRangeKernel direct;  // streams each weight row once per group of <= 3 tokens
  RowRangeKernel panel;   // converts weight panels once, reuses them for all tokens
  ConvertRowFn convert_row;
};

const KernelTable& GenericKernels();
// nullptr where the AVX2 kernels are not compiled in (non-x86 builds).
const KernelTable* Avx2Kernels();
// The table of ActiveKernelIsa().
const KernelTable& ActiveKernels();

enum class Algo : uint8_t {
  kAuto,  // what MatMul does
  kDirect,
  kPanel,
  kBlas,
};

// The algorithm MatMul uses for `m` activation rows and weights of `dtype`.
Algo ChooseAlgo(DType dtype, int64_t m);

// MatMul with the algorithm forced (tests and benchmarks); same contract as MatMul.
void MatMulWithAlgo(Algo algo, const float* x, int64_t m, int64_t ldx, const MatMulWeight& w,
                    float* y, int64_t ldy, ThreadPool* pool, bool accumulate = false);

// Bytes of one weight row of `cols` elements.
size_t WeightRowBytes(DType dtype, int64_t cols);

}  // namespace verdict::engine::matmul_internal

#endif  // VERDICT_ENGINE_KERNELS_MATMUL_INTERNAL_H_
