// SPDX-License-Identifier: Apache-2.0
// MatMul and GatherRows against a double-precision reference computed from the dequantized weights.
//
// Tolerance: |y - ref| <= kRelTol * sum_k |x[m, k]| |w[n, k]| (+ |y0| when accumulating). The
// kernels accumulate in f32 with 8 lanes and K-slices, so the error is a few ulps of that sum;
// kRelTol = 1e-5
// (~170 f32 ulps) leaves a wide margin at the K <= 544 used here while catching any indexing bug
// (a wrong element contributes ~1e-2 of the sum). The weights enter exactly: the reference uses the
// same bf16/f16/q8_0 values, dequantized in double, and no path quantizes the activations.
#include "engine/kernels/matmul.h"

#include "engine/ggml_quants.h"

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/dtype.h"
#include "engine/fp8.h"
#include "engine/kernels/matmul_internal.h"
#include "gtest/gtest.h"

namespace verdict::engine {
namespace {

using matmul_internal::Algo;

constexpr double kRelTol = 1e-5;
constexpr uint32_t kSeed = 20261107;

// A weight matrix in `dtype` plus its exact values as doubles.
struct TestWeight {
  DType dtype;
  int64_t rows;
  int64_t cols;
  std::vector<uint8_t> bytes;
  std::vector<double> values;  // [rows, cols], dequantized
  MatMulWeight view() const { return {bytes.data(), dtype, rows, cols}; }
};

// Reference q8_0 quantizer (as GGML): d = max|v| / 127, q = round(v / d), scale stored as f16.
void QuantizeRowQ8(const float* v, int64_t cols, uint8_t* out, double* dequant) {
  for (int64_t b = 0; b < cols / kQ8_0BlockSize; ++b) {
    const float* src = v + b * kQ8_0BlockSize;
    float amax = 0.0f;
    for (int i = 0; i < kQ8_0BlockSize; ++i) amax = std::max(amax, std::fabs(src[i]));
    const float d = amax / 127.0f;
    const float inv = d != 0.0f ? 1.0f / d : 0.0f;
    BlockQ8_0 block;
    block.scale_f16 = F32ToF16(d);
    const double scale = F16ToF32(block.scale_f16);
    for (int i = 0; i < kQ8_0BlockSize; ++i) {
      block.qs[i] = static_cast<int8_t>(std::lround(src[i] * inv));
      dequant[b * kQ8_0BlockSize + i] = scale * block.qs[i];
    }
    std::memcpy(out + b * sizeof(BlockQ8_0), &block, sizeof(block));
  }
}

// One row of random GGML blocks: random bits, with the f16 scales (and mins) set to small positive
// values so that every value is finite and the products stay in a sane range.
void RandomGgmlRow(DType dtype, int64_t cols, std::mt19937& rng, uint8_t* out) {
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_real_distribution<float> scale(0.002f, 0.05f);
  const size_t block_bytes = GgmlBlockBytes(dtype);
  for (int64_t b = 0; b < cols / GgmlBlockValues(dtype); ++b) {
    uint8_t* block = out + b * block_bytes;
    for (size_t i = 0; i < block_bytes; ++i) block[i] = static_cast<uint8_t>(byte(rng));
    auto set_f16 = [&](size_t offset) {
      const uint16_t h = F32ToF16(scale(rng));
      std::memcpy(block + offset, &h, 2);
    };
    switch (dtype) {
      case DType::kQ4_0:
      case DType::kQ5_0: set_f16(0); break;
      case DType::kQ6_K: set_f16(208); break;
      default: set_f16(0), set_f16(2); break;  // d and m / dmin
    }
  }
}

TestWeight MakeWeight(DType dtype, int64_t rows, int64_t cols, std::mt19937& rng) {
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  TestWeight w{dtype, rows, cols, {}, std::vector<double>(rows * cols)};
  w.bytes.resize(matmul_internal::WeightRowBytes(dtype, cols) * rows);
  std::vector<float> row(cols);
  for (int64_t n = 0; n < rows; ++n) {
    for (float& v : row) v = dist(rng);
    double* dq = w.values.data() + n * cols;
    switch (dtype) {
      case DType::kF32:
        std::memcpy(w.bytes.data() + n * cols * 4, row.data(), cols * 4);
        for (int64_t k = 0; k < cols; ++k) dq[k] = row[k];
        break;
      case DType::kBF16:
      case DType::kF16:
        for (int64_t k = 0; k < cols; ++k) {
          const uint16_t h = dtype == DType::kBF16 ? F32ToBf16(row[k]) : F32ToF16(row[k]);
          std::memcpy(w.bytes.data() + (n * cols + k) * 2, &h, 2);
          dq[k] = dtype == DType::kBF16 ? Bf16ToF32(h) : F16ToF32(h);
        }
        break;
      case DType::kQ8_0:
        QuantizeRowQ8(row.data(), cols,
                      w.bytes.data() + n * matmul_internal::WeightRowBytes(dtype, cols), dq);
        break;
      case DType::kF8E4M3Block: {  // dequantized by the definition: E4M3 value (fp8.h) * scale
        uint8_t* out = w.bytes.data() + n * matmul_internal::WeightRowBytes(dtype, cols);
        QuantizeFp8BlockRow(row.data(), cols, out);
        for (int64_t k = 0; k < cols; ++k) {
          float scale;
          std::memcpy(&scale, out + Fp8BlockScaleOffset(k), 4);
          dq[k] = static_cast<double>(Fp8E4M3ToF32(out[Fp8BlockValueOffset(k)])) * scale;
        }
        break;
      }
      case DType::kQ4_0:
      case DType::kQ4_1:
      case DType::kQ5_0:
      case DType::kQ5_1:
      case DType::kQ4_K:
      case DType::kQ5_K:
      case DType::kQ6_K: {  // random blocks with sane f16 scales; ggml_quants_test checks the values
        uint8_t* out = w.bytes.data() + n * matmul_internal::WeightRowBytes(dtype, cols);
        RandomGgmlRow(dtype, cols, rng, out);
        std::vector<float> values(cols);
        DequantizeGgmlRow(dtype, out, 0, cols, values.data());
        for (int64_t k = 0; k < cols; ++k) dq[k] = values[k];
        break;
      }
      case DType::kF8E4M3:
      case DType::kI32:
        break;
    }
  }
  return w;
}

struct Case {
  int64_t m, n, k, ldx, ldy;
  bool accumulate;
  std::vector<float> x;   // [m, ldx]
  std::vector<float> y0;  // [m, ldy] initial y (also the sentinel for the padding columns)
  std::vector<double> ref, bound;
};

Case MakeCase(const TestWeight& w, int64_t m, bool accumulate, std::mt19937& rng) {
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  Case c{m, w.rows, w.cols, w.cols + 5, w.rows + 3, accumulate, {}, {}, {}, {}};
  c.x.resize(m * c.ldx);
  for (float& v : c.x) v = dist(rng);
  c.y0.resize(m * c.ldy);
  for (float& v : c.y0) v = dist(rng);
  c.ref.assign(m * c.n, 0.0);
  c.bound.assign(m * c.n, 0.0);
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < c.n; ++j) {
      double s = 0, b = 0;
      for (int64_t k = 0; k < c.k; ++k) {
        const double p = static_cast<double>(c.x[i * c.ldx + k]) * w.values[j * c.k + k];
        s += p;
        b += std::fabs(p);
      }
      if (accumulate) {
        s += c.y0[i * c.ldy + j];
        b += std::fabs(c.y0[i * c.ldy + j]);
      }
      c.ref[i * c.n + j] = s;
      c.bound[i * c.n + j] = b;
    }
  }
  return c;
}

// Runs one configuration and returns a description of the first mismatch ("" if none).
std::string RunAndCompare(const Case& c, const TestWeight& w, Algo algo, ThreadPool* pool) {
  std::vector<float> y = c.y0;
  matmul_internal::MatMulWithAlgo(algo, c.x.data(), c.m, c.ldx, w.view(), y.data(), c.ldy, pool,
                                  c.accumulate);
  for (int64_t i = 0; i < c.m; ++i) {
    for (int64_t j = 0; j < c.ldy; ++j) {
      const float got = y[i * c.ldy + j];
      if (j >= c.n) {
        if (got != c.y0[i * c.ldy + j])
          return absl::StrCat("padding overwritten at m=", i, " n=", j);
        continue;
      }
      const double want = c.ref[i * c.n + j];
      const double tol = kRelTol * c.bound[i * c.n + j] + 1e-30;
      if (!(std::fabs(got - want) <= tol)) {
        return absl::StrCat("y[", i, ", ", j, "] = ", got, ", want ", want, " (tol ", tol, ")");
      }
    }
  }
  return "";
}

std::vector<KernelIsa> IsasToTest() {
  std::vector<KernelIsa> isas = {KernelIsa::kGeneric};
  if (BestSupportedKernelIsa() == KernelIsa::kAvx2) isas.push_back(KernelIsa::kAvx2);
  return isas;
}

const char* IsaName(KernelIsa isa) { return isa == KernelIsa::kAvx2 ? "avx2" : "generic"; }

class MatMulTest : public testing::TestWithParam<DType> {
 protected:
  void TearDown() override { ASSERT_TRUE(SetKernelIsa(BestSupportedKernelIsa()).ok()); }
};

TEST_P(MatMulTest, MatchesReference) {
  const DType dtype = GetParam();
  const bool q8 = dtype == DType::kQ8_0 || (IsGgmlBlockQuant(dtype) && GgmlBlockValues(dtype) == 32);
  const bool k_quant = IsGgmlBlockQuant(dtype) && GgmlBlockValues(dtype) == 256;
  // (N, K): odd N, N below/above the 4-row tiles and 16-row panels, K crossing the 256 (panel)
  // and 512 (generic) slices; K % 32 == 0 for q8_0 and Q4_0..Q5_1, K % 256 == 0 for k-quants.
  const std::vector<std::pair<int64_t, int64_t>> shapes =
      k_quant ? std::vector<std::pair<int64_t, int64_t>>{{1, 256}, {7, 512}, {37, 768}, {21, 1280}}
      : q8 ? std::vector<std::pair<int64_t, int64_t>>{{1, 32},
                                                    {7, 64},
                                                    {37, 96},
                                                    {50, 288},
                                                    {21, 544}}
         : std::vector<std::pair<int64_t, int64_t>>{{1, 1},    {3, 7},    {7, 33}, {37, 100},
                                                    {50, 288}, {21, 520}, {18, 13}};
  const std::vector<int64_t> ms = {1, 2, 3, 5, 8, 9, 17, 33, 64, 130};
  ThreadPool pool1(1), pool2(2);
  std::mt19937 rng(kSeed);
  for (const auto& [n, k] : shapes) {
    const TestWeight w = MakeWeight(dtype, n, k, rng);
    for (int64_t m : ms) {
      for (bool accumulate : {false, true}) {
        const Case c = MakeCase(w, m, accumulate, rng);
        for (KernelIsa isa : IsasToTest()) {
          ASSERT_TRUE(SetKernelIsa(isa).ok());
          for (Algo algo : {Algo::kAuto, Algo::kDirect, Algo::kPanel, Algo::kBlas}) {
            for (ThreadPool* pool : {static_cast<ThreadPool*>(nullptr), &pool1, &pool2}) {
              const std::string err = RunAndCompare(c, w, algo, pool);
              ASSERT_EQ(err, "") << "seed=" << kSeed << " dtype=" << DTypeName(dtype)
                                 << " isa=" << IsaName(isa) << " algo=" << static_cast<int>(algo)
                                 << " threads=" << (pool ? pool->num_threads() : 0) << " m=" << m
                                 << " n=" << n << " k=" << k << " accumulate=" << accumulate;
            }
          }
        }
      }
    }
  }
}

TEST_P(MatMulTest, LargerShapeOnThreeThreads) {
  const DType dtype = GetParam();
  std::mt19937 rng(kSeed + 1);
  const TestWeight w = MakeWeight(dtype, 203, 2048, rng);
  ThreadPool pool(3);
  for (int64_t m : {1, 4, 9, 49}) {
    const Case c = MakeCase(w, m, /*accumulate=*/false, rng);
    for (KernelIsa isa : IsasToTest()) {
      ASSERT_TRUE(SetKernelIsa(isa).ok());
      // K = 2048 sums more terms: allow the f32 error to grow with it.
      const std::string err = RunAndCompare(c, w, Algo::kAuto, &pool);
      EXPECT_EQ(err, "") << "isa=" << IsaName(isa) << " m=" << m;
    }
  }
}

TEST_P(MatMulTest, GatherRowsIsExact) {
  const DType dtype = GetParam();
  std::mt19937 rng(kSeed + 2);
  const int64_t cols = IsGgmlBlockQuant(dtype) ? 2 * GgmlBlockValues(dtype) : dtype == DType::kQ8_0 ? 96 : 45;
  const TestWeight w = MakeWeight(dtype, 11, cols, rng);
  const std::vector<int32_t> ids = {3, 0, 10, 3, 7};
  for (KernelIsa isa : IsasToTest()) {
    ASSERT_TRUE(SetKernelIsa(isa).ok());
    std::vector<float> out(ids.size() * cols, -1.0f);
    GatherRows(w.view(), ids, out.data());
    for (size_t i = 0; i < ids.size(); ++i) {
      for (int64_t k = 0; k < cols; ++k) {
        ASSERT_EQ(out[i * cols + k], static_cast<float>(w.values[ids[i] * cols + k]))
            << "isa=" << IsaName(isa) << " i=" << i << " k=" << k;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllDTypes, MatMulTest,
                         testing::Values(DType::kF32, DType::kF16, DType::kBF16, DType::kQ8_0,
                                         DType::kF8E4M3Block, DType::kQ4_0, DType::kQ4_1, DType::kQ5_0,
                                         DType::kQ5_1, DType::kQ4_K, DType::kQ5_K, DType::kQ6_K),
                         [](const testing::TestParamInfo<DType>& info) {
                           return std::string(DTypeName(info.param));
                         });

TEST(MatMulEdgeTest, ZeroKWritesZerosUnlessAccumulating) {
  std::vector<float> x(1), y = {5.0f, 6.0f};
  const float dummy = 0.0f;
  MatMul(x.data(), 1, 0, {&dummy, DType::kBF16, 2, 0}, y.data(), 2, nullptr, true);
  EXPECT_EQ(y, (std::vector<float>{5.0f, 6.0f}));
  MatMul(x.data(), 1, 0, {&dummy, DType::kBF16, 2, 0}, y.data(), 2, nullptr, false);
  EXPECT_EQ(y, (std::vector<float>{0.0f, 0.0f}));
}

TEST(MatMulEdgeTest, ZeroRowsIsANoOp) {
  float y = 3.0f;
  const float w = 1.0f;
  MatMul(nullptr, 0, 1, {&w, DType::kF32, 1, 1}, &y, 1, nullptr);
  EXPECT_EQ(y, 3.0f);
}

TEST(MatMulEdgeTest, ActiveIsaDefaultsToBestSupported) {
  if (std::getenv("VERDICT_KERNEL_ISA") != nullptr) GTEST_SKIP() << "VERDICT_KERNEL_ISA is set";
  EXPECT_EQ(ActiveKernelIsa(), BestSupportedKernelIsa());
}

}  // namespace
}  // namespace verdict::engine
