// SPDX-License-Identifier: Apache-2.0
// Where the operands and the accumulator of a warp-level mma.sync.m16n8k16 (bf16/f16 in, f32
// accumulate) live among a warp's lanes, as PTX documents it ("Matrix Fragments for
// mma.m16n8k16"), written once as VERDICT_HOST_DEVICE functions: the CUDA kernels place their
// operands with them and the CPU tests emulate the warp through them (fp8_mma_math_test,
// attention_math_test). A is 16 x 16 (row-major: rows M, columns K), B 16 x 8 (rows K, columns N),
// the accumulator C 16 x 8. Each 32-bit register holds two 16-bit values, the lower-indexed in the
// lower half.
#ifndef VERDICT_ENGINE_CUDA_MMA_LAYOUT_H_
#define VERDICT_ENGINE_CUDA_MMA_LAYOUT_H_

#include "engine/kernels/op_math.h"

namespace verdict::engine::cuda_math {

// The lane's quad row (groupID) and position in the quad (threadID_in_group), as PTX names them.
VERDICT_HOST_DEVICE inline int MmaGroup(int lane) { return lane / 4; }
VERDICT_HOST_DEVICE inline int MmaQuad(int lane) { return lane % 4; }

// A register `reg` (0..3) of `lane`, half `half` (0: low, 1: high): row and column of A.
VERDICT_HOST_DEVICE inline int MmaARow(int lane, int reg) { return MmaGroup(lane) + 8 * (reg % 2); }
VERDICT_HOST_DEVICE inline int MmaACol(int lane, int reg, int half) {
  return 2 * MmaQuad(lane) + half + 8 * (reg / 2);
}
// B register `reg` (0..1), half `half`: row (k) and column (n) of B.
VERDICT_HOST_DEVICE inline int MmaBRow(int lane, int reg, int half) {
  return 2 * MmaQuad(lane) + half + 8 * reg;
}
VERDICT_HOST_DEVICE inline int MmaBCol(int lane) { return MmaGroup(lane); }
// Accumulator element `e` (0..3) of `lane`: row and column of C.
VERDICT_HOST_DEVICE inline int MmaAccRow(int lane, int e) { return MmaGroup(lane) + 8 * (e / 2); }
VERDICT_HOST_DEVICE inline int MmaAccCol(int lane, int e) { return 2 * MmaQuad(lane) + e % 2; }

// Two adjacent accumulator tiles (columns [16i, 16i + 16) of a 16-row result) are, lane by lane,
// the A operand of a product over those 16 columns (flash attention's P . V): A register `reg`,
// half `half` is element AccElementOfA of tile 2i + AccTileOfA.
VERDICT_HOST_DEVICE inline int AccTileOfA(int reg) { return reg / 2; }
VERDICT_HOST_DEVICE inline int AccElementOfA(int reg, int half) { return 2 * (reg % 2) + half; }

}  // namespace verdict::engine::cuda_math

#endif  // VERDICT_ENGINE_CUDA_MMA_LAYOUT_H_
