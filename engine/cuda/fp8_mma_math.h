// SPDX-License-Identifier: Apache-2.0
// Operand placement of the FP8-weight tensor-core product (engine/cuda/gemv_kernels.cu,
// Fp8MmaKernel), written once as VERDICT_HOST_DEVICE functions so that the CPU test suite checks
// it (engine/cuda/fp8_mma_math_test.cc) by emulating the warp on the CPU.
//
// The kernel computes out[token, row] = sum_k x[token, k] * w[row, k] with warp-level
// mma.sync.m16n8k16 (bf16 in, f32 accumulate): the weights are operand A (16 rows per tile, codes
// converted to bf16 in registers, exact), the activations operand B (8 tokens per tile), so the
// accumulator tile is [16 weight rows x 8 tokens]. Which k a lane's register holds is free, as long
// as A and B agree: the kernel chooses the placement that lets each lane read its operands with
// wide contiguous loads. In one 128-value step (one FP8 scale block) lane (g = lane / 4,
// t = lane % 4) reads the 32 consecutive values [32t, 32t + 32) of weight rows g and g + 8 and of
// token g, and the step's eight mma.sync instructions s = 0..7 take four of them each:
// values 32t + 4s + {0, 1} where the instruction expects k = {2t, 2t + 1} and values
// 32t + 4s + {2, 3} where it expects k = {2t + 8, 2t + 9}.
#ifndef VERDICT_ENGINE_CUDA_FP8_MMA_MATH_H_
#define VERDICT_ENGINE_CUDA_FP8_MMA_MATH_H_

#include <cstdint>

#include "engine/cuda/mma_layout.h"
#include "engine/kernels/op_math.h"

namespace verdict::engine::cuda_math {

// Values of k per step: one FP8 scale block, so a step's partial sums take one scale per row.
inline constexpr int kMmaStepK = 128;
// mma.sync instructions per step (k = 16 each).
inline constexpr int kMmaSubSteps = kMmaStepK / 16;

// First of the 32 consecutive values (inside a step) the lane reads from each of its rows.
VERDICT_HOST_DEVICE inline int MmaLaneFirstK(int lane) { return 32 * MmaQuad(lane); }

// Offset, from MmaLaneFirstK, of the pair of values that sub-step s places in the lane's register
// half `pair` (0: where mma expects k = 2t, 2t + 1; 1: where it expects k = 2t + 8, 2t + 9).
VERDICT_HOST_DEVICE inline int MmaPairOffset(int sub_step, int pair) { return 4 * sub_step + 2 * pair; }

// Operand registers of one mma.sync: A register `reg` (0..3) of a lane holds a pair of values of
// weight row MmaARow (0..15 in the tile, mma_layout.h) at pair position MmaAPair; B register `reg`
// (0..1) holds the pair at position MmaBPair of the lane's token (MmaGroup).
VERDICT_HOST_DEVICE inline int MmaAPair(int reg) { return reg / 2; }
VERDICT_HOST_DEVICE inline int MmaBPair(int reg) { return reg; }

// The accumulator tile's element `reg` of `lane` is weight row MmaAccRow (0..15) and token
// MmaAccCol (0..7) of the [16 x 8] tile (mma_layout.h).

}  // namespace verdict::engine::cuda_math

#endif  // VERDICT_ENGINE_CUDA_FP8_MMA_MATH_H_
