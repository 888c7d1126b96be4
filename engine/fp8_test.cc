// SPDX-License-Identifier: Apache-2.0
// FP8 E4M3 against PyTorch's float8_e4m3fn (tables written by tools/make_fixtures.py: the decoding
// of all 256 codes and the rounding of ~4400 values covering ties, subnormals and saturation), the
// kF8E4M3Block row layout and quantizer, and how checkpoint scale tensors are read.
#include <cmath>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "common/testing/status_matchers.h"
#include "engine/dtype.h"
#include "engine/fp8.h"
#include "engine/io/safetensors.h"
#include "engine/weight_uploader.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace verdict::engine {
namespace {

using ::testing::HasSubstr;
using ::verdict::testing::StatusIs;

const std::string kTables =
    std::string(VERDICT_SOURCE_DIR) + "/tests/fixtures/models/llama3_gqa/fp8/e4m3_reference.safetensors";

template <typename T>
std::vector<T> Values(const WeightSource& source, const std::string& name, DType dtype) {
  const WeightTensor* t = source.Find(name);
  if (t == nullptr || t->dtype != dtype) return {};
  std::vector<T> out(t->num_elements());
  std::memcpy(out.data(), t->data, out.size() * sizeof(T));
  return out;
}

TEST(Fp8Test, DecodesEveryCodeAsTorch) {
  ASSERT_OK_AND_ASSIGN(auto tables, OpenSafetensors(kTables));
  const std::vector<float> decode = Values<float>(*tables, "decode", DType::kF32);
  ASSERT_EQ(decode.size(), 256u);
  for (int code = 0; code < 256; ++code) {
    const float got = Fp8E4M3ToF32(static_cast<uint8_t>(code));
    if (std::isnan(decode[code])) {
      EXPECT_TRUE(std::isnan(got)) << "code " << code;
    } else {
      EXPECT_EQ(got, decode[code]) << "code " << code;
      EXPECT_EQ(std::signbit(got), std::signbit(decode[code])) << "code " << code;
    }
  }
  EXPECT_EQ(Fp8E4M3ToF32(0x7e), kFp8E4M3Max);
}

TEST(Fp8Test, RoundsAsTorch) {
  ASSERT_OK_AND_ASSIGN(auto tables, OpenSafetensors(kTables));
  const std::vector<float> input = Values<float>(*tables, "encode_input", DType::kF32);
  const std::vector<int32_t> expected = Values<int32_t>(*tables, "encode_output", DType::kI32);
  ASSERT_GT(input.size(), 4000u);
  ASSERT_EQ(input.size(), expected.size());
  int mismatches = 0;
  for (size_t i = 0; i < input.size(); ++i) {
    const int got = F32ToFp8E4M3(input[i]);
    if (got != expected[i] && ++mismatches <= 10) {
      ADD_FAILURE() << "value " << input[i] << " -> code " << got << ", torch " << expected[i];
    }
  }
  EXPECT_EQ(mismatches, 0);
  EXPECT_EQ(F32ToFp8E4M3(NAN) & 0x7f, kFp8E4M3NaN);
  EXPECT_EQ(F32ToFp8E4M3(INFINITY), 0x7e);  // saturates
  EXPECT_EQ(F32ToFp8E4M3(-INFINITY), 0xfe);
}

TEST(Fp8Test, BlockRowGeometry) {
  EXPECT_EQ(Fp8BlocksPerRow(1), 1);
  EXPECT_EQ(Fp8BlocksPerRow(128), 1);
  EXPECT_EQ(Fp8BlocksPerRow(129), 2);
  EXPECT_EQ(Fp8BlockRowBytes(4096), 4096 + 4 * 32);
  EXPECT_EQ(Fp8BlockRowBytes(200), 200 + 8);
  EXPECT_EQ(Fp8BlockScaleOffset(0), 0);
  EXPECT_EQ(Fp8BlockScaleOffset(127), 0);
  EXPECT_EQ(Fp8BlockScaleOffset(128), 132);
  EXPECT_EQ(Fp8BlockScaleOffset(300), 264);
  EXPECT_EQ(Fp8BlockValueOffset(0), 4);
  EXPECT_EQ(Fp8BlockValueOffset(127), 131);
  EXPECT_EQ(Fp8BlockValueOffset(128), 136);
  ASSERT_OK_AND_ASSIGN(const size_t bytes, DTypeByteSize(DType::kF8E4M3Block, 300));
  EXPECT_EQ(bytes, 300u + 12u);
}

// Each block's scale is its max |value| / 448, every value is within half an E4M3 step of the
// original, and the block's largest value maps to +-448 exactly.
TEST(Fp8Test, QuantizedRowsStayWithinHalfAStep) {
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const int64_t cols = 300;  // two full blocks and a partial one
  std::vector<float> values(cols);
  for (int64_t i = 0; i < cols; ++i) values[i] = normal(rng) * (i < 128 ? 1e-3f : i < 256 ? 10.0f : 1.0f);
  values[5] = 0;
  std::vector<uint8_t> row(Fp8BlockRowBytes(cols));
  QuantizeFp8BlockRow(values.data(), cols, row.data());
  std::vector<float> back(cols);
  DequantizeFp8BlockRow(row.data(), cols, back.data());
  for (int64_t b = 0; b < Fp8BlocksPerRow(cols); ++b) {
    const int64_t begin = b * kFp8BlockSize, end = std::min<int64_t>(cols, begin + kFp8BlockSize);
    float amax = 0;
    for (int64_t i = begin; i < end; ++i) amax = std::max(amax, std::fabs(values[i]));
    float scale;
    std::memcpy(&scale, row.data() + Fp8BlockScaleOffset(begin), 4);
    EXPECT_EQ(scale, amax / kFp8E4M3Max) << "block " << b;
    for (int64_t i = begin; i < end; ++i) {
      const float x = std::fabs(values[i]) / scale;
      // E4M3 steps: 2^-9 below 2^-6, else 2^(floor(log2 x) - 3).
      const float step = x < 0.015625f ? 0.001953125f : std::exp2(std::floor(std::log2(x)) - 3.0f);
      EXPECT_LE(std::fabs(back[i] - values[i]), 0.5f * step * scale * (1 + 1e-6f)) << "value " << i;
    }
  }
  EXPECT_EQ(back[5], 0.0f);
  std::vector<float> zeros(10, 0.0f);
  std::vector<uint8_t> zero_row(Fp8BlockRowBytes(10));
  QuantizeFp8BlockRow(zeros.data(), 10, zero_row.data());
  DequantizeFp8BlockRow(zero_row.data(), 10, back.data());
  for (int i = 0; i < 10; ++i) EXPECT_EQ(back[i], 0.0f);
}

// ---- scale tensors -------------------------------------------------------------------------------

class Tensors final : public WeightSource {
 public:
  void Add(const std::string& name, std::vector<int64_t> shape, DType dtype, std::vector<float> values) {
    Entry& e = entries_[name];
    e.bytes.resize(values.size() * (dtype == DType::kF32 ? 4 : 2));
    for (size_t i = 0; i < values.size(); ++i) {
      if (dtype == DType::kF32) {
        std::memcpy(e.bytes.data() + 4 * i, &values[i], 4);
      } else {
        const uint16_t h = dtype == DType::kBF16 ? F32ToBf16(values[i]) : F32ToF16(values[i]);
        std::memcpy(e.bytes.data() + 2 * i, &h, 2);
      }
    }
    e.tensor = WeightTensor{name, dtype, std::move(shape), e.bytes.data(), e.bytes.size()};
  }
  const WeightTensor* Find(absl::string_view name) const override {
    auto it = entries_.find(std::string(name));
    return it == entries_.end() ? nullptr : &it->second.tensor;
  }
  std::vector<std::string> Names() const override { return {}; }
  absl::string_view Format() const override { return "safetensors"; }

 private:
  struct Entry {
    std::vector<uint8_t> bytes;
    WeightTensor tensor;
  };
  std::map<std::string, Entry> entries_;
};

TEST(Fp8ScaleGridTest, ReadsEachScaling) {
  LlamaConfig config;
  Tensors t;
  t.Add("tensor.weight_scale", {1}, DType::kBF16, {0.5f});
  t.Add("scalar.weight_scale", {}, DType::kF32, {0.25f});
  t.Add("channel.weight_scale", {3, 1}, DType::kF32, {1, 2, 3});
  t.Add("flat_channel.weight_scale", {3}, DType::kF16, {1, 2, 3});
  t.Add("block.weight_scale_inv", {2, 2}, DType::kF32, {1, 2, 3, 4});  // [200, 256] in 128 x 128
  ASSERT_OK_AND_ASSIGN(Fp8ScaleGrid g, ReadFp8ScaleGrid(t, "tensor.weight", 3, 300, config));
  EXPECT_EQ(g.At(2, 299), 0.5f);
  ASSERT_OK_AND_ASSIGN(g, ReadFp8ScaleGrid(t, "scalar.weight", 3, 300, config));
  EXPECT_EQ(g.At(0, 0), 0.25f);
  ASSERT_OK_AND_ASSIGN(g, ReadFp8ScaleGrid(t, "channel.weight", 3, 300, config));
  EXPECT_EQ(g.At(0, 299), 1.0f);
  EXPECT_EQ(g.At(2, 0), 3.0f);
  ASSERT_OK_AND_ASSIGN(g, ReadFp8ScaleGrid(t, "flat_channel.weight", 3, 300, config));
  EXPECT_EQ(g.At(1, 150), 2.0f);
  ASSERT_OK_AND_ASSIGN(g, ReadFp8ScaleGrid(t, "block.weight", 200, 256, config));
  EXPECT_EQ(g.At(127, 127), 1.0f);
  EXPECT_EQ(g.At(127, 128), 2.0f);
  EXPECT_EQ(g.At(128, 0), 3.0f);
  EXPECT_EQ(g.At(199, 255), 4.0f);
  ASSERT_OK_AND_ASSIGN(g, ReadFp8ScaleGrid(t, "unscaled.weight", 4, 4, config));
  EXPECT_EQ(g.At(3, 3), 1.0f);
}

TEST(Fp8ScaleGridTest, RejectsScalesThatDoNotFit) {
  LlamaConfig config;
  Tensors t;
  t.Add("rows.weight_scale", {4, 1}, DType::kF32, {1, 2, 3, 4});
  t.Add("nan.weight_scale", {1}, DType::kF32, {NAN});
  t.Add("blocks.weight_scale_inv", {2, 3}, DType::kF32, {1, 2, 3, 4, 5, 6});
  t.Add("narrow.weight_scale_inv", {1, 4}, DType::kF32, {1, 2, 3, 4});
  EXPECT_THAT(ReadFp8ScaleGrid(t, "rows.weight", 3, 8, config).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("rows.weight_scale")));
  EXPECT_THAT(ReadFp8ScaleGrid(t, "nan.weight", 3, 8, config).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("non-finite")));
  EXPECT_THAT(ReadFp8ScaleGrid(t, "blocks.weight", 200, 256, config).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("128 x 128 block")));
  config.fp8_block_rows = 1;
  config.fp8_block_cols = 64;  // a 128-value engine block would straddle two scales
  EXPECT_THAT(ReadFp8ScaleGrid(t, "narrow.weight", 1, 256, config).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("blocks of 64 columns")));
}

}  // namespace
}  // namespace verdict::engine
