// SPDX-License-Identifier: Apache-2.0
// A GoogleTest fixture base that runs a suite under the generic (portable) kernels and restores the
// previous kernel ISA afterwards. Their per-row results do not depend on how many rows a matrix
// product has, so a batched or block-wise computation gives bit-for-bit what a row-at-a-time one
// gives: speculative, distributed and batched outputs can then be compared exactly. Test-only.
#ifndef VERDICT_JUDGE_TESTING_GENERIC_KERNELS_H_
#define VERDICT_JUDGE_TESTING_GENERIC_KERNELS_H_

#include "common/testing/status_matchers.h"
#include "engine/kernels/matmul.h"
#include "gtest/gtest.h"

namespace verdict::judge::testing {

class GenericKernelsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    previous_isa_ = engine::ActiveKernelIsa();
    ASSERT_OK(engine::SetKernelIsa(engine::KernelIsa::kGeneric));
  }
  static void TearDownTestSuite() { ASSERT_OK(engine::SetKernelIsa(previous_isa_)); }

 private:
  static inline engine::KernelIsa previous_isa_ = engine::KernelIsa::kGeneric;
};

}  // namespace verdict::judge::testing

#endif  // VERDICT_JUDGE_TESTING_GENERIC_KERNELS_H_
