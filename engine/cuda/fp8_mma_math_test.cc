// SPDX-License-Identifier: Apache-2.0
// The FP8 tensor-core product's operand placement (fp8_mma_math.h) emulated on the CPU: each lane's
// registers are filled as the kernel fills them, then read back through the fragment layouts PTX
// documents for mma.m16n8k16 (written out here independently of the header), multiplied, and the
// accumulator tile mapped back to (weight row, token) as the kernel stores it. The result must be
// the plain product over a whole 128-value step.
#include "engine/cuda/fp8_mma_math.h"

#include <array>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace verdict::engine::cuda_math {
namespace {

using Pair = std::array<double, 2>;

TEST(Fp8MmaPlacementTest, EmulatedWarpComputesThePlainProduct) {
  std::mt19937 rng(5);
  std::uniform_real_distribution<double> uniform(-1.0, 1.0);
  constexpr int kRows = 16, kTokens = 8;
  std::vector<double> w(kRows * kMmaStepK), x(kTokens * kMmaStepK);
  for (double& v : w) v = uniform(rng);
  for (double& v : x) v = uniform(rng);

  double acc[32][4] = {};  // the lanes' accumulator registers
  std::vector<int> k_uses(kMmaStepK, 0);
  for (int s = 0; s < kMmaSubSteps; ++s) {
    // Registers as the kernel fills them.
    Pair a[32][4], b[32][2];
    for (int lane = 0; lane < 32; ++lane) {
      for (int reg = 0; reg < 4; ++reg) {
        const int k = MmaLaneFirstK(lane) + MmaPairOffset(s, MmaAPair(reg));
        const int row = MmaARow(lane, reg);
        a[lane][reg] = {w[row * kMmaStepK + k], w[row * kMmaStepK + k + 1]};
      }
      for (int reg = 0; reg < 2; ++reg) {
        const int k = MmaLaneFirstK(lane) + MmaPairOffset(s, MmaBPair(reg));
        b[lane][reg] = {x[MmaGroup(lane) * kMmaStepK + k], x[MmaGroup(lane) * kMmaStepK + k + 1]};
        ++k_uses[k];
        ++k_uses[k + 1];
      }
    }
    // What mma.sync.m16n8k16 sees (PTX ISA, "Matrix Fragments for mma.m16n8k16 with floating point
    // type"): A register r of lane l holds row l/4 + 8 (r % 2), columns 2 (l % 4 + 4 (r / 2)) + {0, 1};
    // B register r holds rows (k) 2 (l % 4 + 4 r) + {0, 1} of column l / 4.
    double tile_a[16][16], tile_b[16][8];
    for (int l = 0; l < 32; ++l) {
      for (int r = 0; r < 4; ++r) {
        for (int e = 0; e < 2; ++e) tile_a[l / 4 + 8 * (r % 2)][2 * (l % 4 + 4 * (r / 2)) + e] = a[l][r][e];
      }
      for (int r = 0; r < 2; ++r) {
        for (int e = 0; e < 2; ++e) tile_b[2 * (l % 4 + 4 * r) + e][l / 4] = b[l][r][e];
      }
    }
    // D register r of lane l is element (l/4 + 8 (r / 2), 2 (l % 4) + r % 2) of the 16 x 8 product.
    for (int l = 0; l < 32; ++l) {
      for (int r = 0; r < 4; ++r) {
        const int i = l / 4 + 8 * (r / 2), j = 2 * (l % 4) + r % 2;
        for (int kk = 0; kk < 16; ++kk) acc[l][r] += tile_a[i][kk] * tile_b[kk][j];
      }
    }
  }
  // Every k of the step reaches the B operand once per token.
  for (int k = 0; k < kMmaStepK; ++k) EXPECT_EQ(k_uses[k], kTokens) << "k " << k;
  // The accumulators, stored where the kernel stores them, are the product.
  std::vector<int> stored(kRows * kTokens, 0);
  for (int lane = 0; lane < 32; ++lane) {
    for (int reg = 0; reg < 4; ++reg) {
      const int row = MmaAccRow(lane, reg), token = MmaAccCol(lane, reg);
      ++stored[token * kRows + row];
      double expected = 0;
      for (int k = 0; k < kMmaStepK; ++k) expected += w[row * kMmaStepK + k] * x[token * kMmaStepK + k];
      EXPECT_NEAR(acc[lane][reg], expected, 1e-12) << "row " << row << " token " << token;
    }
  }
  for (int count : stored) EXPECT_EQ(count, 1);
}

// The lane's contiguous reads: sub-steps 2j and 2j + 1 take the 8 values [8j, 8j + 8) after
// MmaLaneFirstK (one 16-byte bf16 load), and sub-steps 4h..4h + 3 the 16 codes [16h, 16h + 16)
// (one 16-byte FP8 load), pair p of sub-step s at 4 s + 2 p.
TEST(Fp8MmaPlacementTest, SubStepsReadConsecutiveLoads) {
  for (int s = 0; s < kMmaSubSteps; ++s) {
    for (int pair = 0; pair < 2; ++pair) {
      const int offset = MmaPairOffset(s, pair);
      EXPECT_EQ(offset / 8, s / 2);
      EXPECT_EQ(offset / 16, s / 4);
      EXPECT_EQ(offset % 2, 0);
      EXPECT_LT(offset + 1, 32);
    }
  }
}

}  // namespace
}  // namespace verdict::engine::cuda_math
