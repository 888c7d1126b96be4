// SPDX-License-Identifier: Apache-2.0
// The KV row operations on every ISA this CPU has: stored 16-bit values equal the scalar
// round-to-nearest-even conversions bit for bit (engine/dtype.h, themselves checked against numpy
// and torch), and the reductions over stored rows equal a double-precision sum of the stored values.
#include "engine/kernels/kv_ops.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "engine/kernels/matmul.h"
#include "gtest/gtest.h"

namespace verdict::engine::kvops {
namespace {

std::vector<KernelIsa> SupportedIsas() {
  std::vector<KernelIsa> isas = {KernelIsa::kGeneric};
  if (BestSupportedKernelIsa() == KernelIsa::kAvx2) isas.push_back(KernelIsa::kAvx2);
  return isas;
}

class KvOpsTest : public ::testing::TestWithParam<KernelIsa> {
 protected:
  void SetUp() override { ASSERT_TRUE(SetKernelIsa(GetParam()).ok()); }
  void TearDown() override { ASSERT_TRUE(SetKernelIsa(BestSupportedKernelIsa()).ok()); }
};

double StoredValue(DType dtype, const std::vector<uint8_t>& row, int64_t i) {
  if (dtype == DType::kF32) {
    float f;
    std::memcpy(&f, row.data() + 4 * i, 4);
    return f;
  }
  uint16_t h;
  std::memcpy(&h, row.data() + 2 * i, 2);
  return dtype == DType::kF16 ? F16ToF32(h) : Bf16ToF32(h);
}

TEST_P(KvOpsTest, StoredValuesRoundToNearestEven) {
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  // Edge values: ties, overflow to infinity in f16, subnormals, signed zero, NaN, infinities.
  const std::vector<float> edges = {0.0f, -0.0f, 1.0f + 1.0f / 2048, 1.0f + 3.0f / 2048, 65504.0f, 65520.0f,
                                    1e6f, -1e-7f, 6e-8f, 3.0e38f, std::numeric_limits<float>::infinity(),
                                    -std::numeric_limits<float>::infinity(),
                                    std::numeric_limits<float>::quiet_NaN(), 1.00390625f, 1.01171875f};
  for (DType dtype : {DType::kF16, DType::kBF16}) {
    for (int64_t n : {1, 7, 8, 9, 16, 23, 64, 131}) {
      std::vector<float> src(n);
      for (int64_t i = 0; i < n; ++i) src[i] = i < static_cast<int64_t>(edges.size()) && n > 16 ? edges[i] : normal(rng);
      std::vector<uint16_t> got(n);
      KvRowOpsFor(dtype).store(src.data(), n, got.data());
      for (int64_t i = 0; i < n; ++i) {
        const uint16_t want = dtype == DType::kF16 ? F32ToF16(src[i]) : F32ToBf16(src[i]);
        if (std::isnan(src[i])) {
          const float back = dtype == DType::kF16 ? F16ToF32(got[i]) : Bf16ToF32(got[i]);
          EXPECT_TRUE(std::isnan(back)) << DTypeName(dtype) << " n=" << n << " i=" << i;
        } else {
          EXPECT_EQ(got[i], want) << DTypeName(dtype) << " n=" << n << " i=" << i << " value " << src[i];
        }
      }
    }
  }
}

TEST_P(KvOpsTest, DotAndAxpyReduceTheStoredValues) {
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16}) {
    for (int64_t n : {1, 5, 8, 15, 16, 17, 64, 128, 131}) {
      std::vector<float> q(n), values(n), out(n), out_ref(n);
      for (int64_t i = 0; i < n; ++i) {
        q[i] = normal(rng);
        values[i] = normal(rng);
        out[i] = normal(rng);
        out_ref[i] = out[i];
      }
      const KvRowOps& ops = KvRowOpsFor(dtype);
      std::vector<uint8_t> row(n * KvElementBytes(dtype));
      ops.store(values.data(), n, row.data());
      double dot = 0, magnitude = 0;
      for (int64_t i = 0; i < n; ++i) {
        dot += static_cast<double>(q[i]) * StoredValue(dtype, row, i);
        magnitude += std::abs(static_cast<double>(q[i]) * StoredValue(dtype, row, i));
      }
      EXPECT_NEAR(ops.dot(q.data(), row.data(), n), dot, 1e-6 * magnitude + 1e-30)
          << DTypeName(dtype) << " n=" << n;
      const float alpha = 0.37f;
      ops.axpy(alpha, row.data(), out.data(), n);
      for (int64_t i = 0; i < n; ++i) {
        const double want = out_ref[i] + static_cast<double>(alpha) * StoredValue(dtype, row, i);
        EXPECT_NEAR(out[i], want, 1e-6 * (std::abs(want) + 1)) << DTypeName(dtype) << " n=" << n << " i=" << i;
      }
    }
  }
}

TEST(KvOpsTypes, OnlyFloatTypesHoldAKvCache) {
  EXPECT_TRUE(IsKvElementType(DType::kF32));
  EXPECT_TRUE(IsKvElementType(DType::kF16));
  EXPECT_TRUE(IsKvElementType(DType::kBF16));
  EXPECT_FALSE(IsKvElementType(DType::kQ8_0));
  EXPECT_EQ(KvElementBytes(DType::kF16), 2u);
  EXPECT_EQ(KvElementBytes(DType::kF32), 4u);
}

INSTANTIATE_TEST_SUITE_P(Isas, KvOpsTest, ::testing::ValuesIn(SupportedIsas()),
                         [](const auto& info) { return info.param == KernelIsa::kAvx2 ? "Avx2" : "Generic"; });

}  // namespace
}  // namespace verdict::engine::kvops
