// SPDX-License-Identifier: Apache-2.0
// GGML's block quantization formats as GGUF files store them (llama.cpp's ggml-common.h layouts):
// Q4_0, Q4_1, Q5_0, Q5_1 (blocks of 32 values) and the k-quants Q4_K, Q5_K, Q6_K (super-blocks of
// 256). Weights stay in these blocks in memory; the matrix kernels dequantize them to f32 slice by
// slice (engine/kernels/matmul.h). Dequantization follows ggml's reference formulas, so values
// equal the `gguf` Python package's gguf.quants.dequantize (the tests' reference).
// Pure functions; thread-safe.
#ifndef VERDICT_ENGINE_GGML_QUANTS_H_
#define VERDICT_ENGINE_GGML_QUANTS_H_

#include <cstddef>
#include <cstdint>

#include "engine/dtype.h"

namespace verdict::engine {

// Whether `dtype` is one of the block formats above (not Q8_0, which has its own kernels).
bool IsGgmlBlockQuant(DType dtype);
// Values per block (32 or 256) and bytes per block; REQUIRES IsGgmlBlockQuant(dtype).
int64_t GgmlBlockValues(DType dtype);
size_t GgmlBlockBytes(DType dtype);

// The 6-bit scale and min of sub-block j (0..7) from the 12 packed bytes of a Q4_K/Q5_K super-block.
inline void GgmlScaleMinK4(int j, const uint8_t* q, uint8_t* scale, uint8_t* min) {
  if (j < 4) {
    *scale = q[j] & 63;
    *min = q[j + 4] & 63;
  } else {
    *scale = (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4);
    *min = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

// out[0 .. num_blocks * GgmlBlockValues(dtype)) = the values of `num_blocks` consecutive blocks.
// REQUIRES IsGgmlBlockQuant(dtype).
void DequantizeGgmlBlocks(DType dtype, const uint8_t* blocks, int64_t num_blocks, float* out);

// `count` values of a row of `dtype` blocks from value k0 on: both multiples of the block size.
inline void DequantizeGgmlRow(DType dtype, const uint8_t* row, int64_t k0, int64_t count, float* out) {
  const int64_t per_block = GgmlBlockValues(dtype);
  DequantizeGgmlBlocks(dtype, row + static_cast<size_t>(k0 / per_block) * GgmlBlockBytes(dtype), count / per_block,
                       out);
}

}  // namespace verdict::engine

#endif  // VERDICT_ENGINE_GGML_QUANTS_H_
