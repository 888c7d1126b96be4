// SPDX-License-Identifier: Apache-2.0
#include "engine/io/safetensors.h"

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "common/testing/status_matchers.h"
#include "engine/dtype.h"
#include "engine/io/io_test_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace verdict::engine {
namespace {

using io_testing::FixturePath;
using io_testing::MakeSafetensors;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::verdict::testing::StatusIs;

constexpr absl::StatusCode kInvalid = absl::StatusCode::kInvalidArgument;

void ExpectTensor(const WeightSource& src, const std::string& name, DType dtype,
                  std::vector<int64_t> shape) {
  const WeightTensor* t = src.Find(name);
  ASSERT_NE(t, nullptr) << name;
  EXPECT_EQ(t->name, name);
  EXPECT_EQ(t->dtype, dtype) << name;
  EXPECT_EQ(t->shape, shape) << name;
  EXPECT_EQ(t->nbytes, static_cast<size_t>(t->num_elements()) *
                           (dtype == DType::kF32 || dtype == DType::kI32 ? 4 : 2))
      << name;
  ASSERT_NE(t->data, nullptr);
}

float F32At(const WeightTensor& t, int64_t i) {
  float f;
  std::memcpy(&f, t.data + 4 * i, 4);
  return f;
}

// ---- Fixtures -------------------------------------------------------------------------------

void ExpectLlama3Tensors(const WeightSource& src, DType dtype) {
  EXPECT_EQ(src.Format(), "safetensors");
  const std::vector<std::string> names = src.Names();
  EXPECT_EQ(names.size(), 3u * 9u + 3u);
  EXPECT_TRUE(std::is_sorted(names.begin(), names.end()));
  ExpectTensor(src, "model.embed_tokens.weight", dtype, {448, 64});
  ExpectTensor(src, "lm_head.weight", dtype, {448, 64});
  ExpectTensor(src, "model.norm.weight", dtype, {64});
  for (int l = 0; l < 3; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    ExpectTensor(src, p + "input_layernorm.weight", dtype, {64});
    ExpectTensor(src, p + "post_attention_layernorm.weight", dtype, {64});
    ExpectTensor(src, p + "self_attn.q_proj.weight", dtype, {64, 64});
    ExpectTensor(src, p + "self_attn.k_proj.weight", dtype, {32, 64});
    ExpectTensor(src, p + "self_attn.v_proj.weight", dtype, {32, 64});
    ExpectTensor(src, p + "self_attn.o_proj.weight", dtype, {64, 64});
    ExpectTensor(src, p + "mlp.gate_proj.weight", dtype, {96, 64});
    ExpectTensor(src, p + "mlp.up_proj.weight", dtype, {96, 64});
    ExpectTensor(src, p + "mlp.down_proj.weight", dtype, {64, 96});
  }
  EXPECT_EQ(src.Find("model.layers.3.mlp.up_proj.weight"), nullptr);
  EXPECT_EQ(src.Find(""), nullptr);
}

TEST(SafetensorsFixtureTest, Llama3DirectoryFileShardedAndIndex) {
  for (const std::string rel : {"llama3_gqa", "llama3_gqa/model.safetensors", "llama3_gqa/sharded",
                                "llama3_gqa/sharded/model.safetensors.index.json"}) {
    SCOPED_TRACE(rel);
    ASSERT_OK_AND_ASSIGN(auto src, OpenSafetensors(FixturePath(rel)));
    ExpectLlama3Tensors(*src, DType::kF32);
  }
}

TEST(SafetensorsFixtureTest, ShardedMatchesSingleFileByteForByte) {
  ASSERT_OK_AND_ASSIGN(auto single, OpenSafetensors(FixturePath("llama3_gqa")));
  ASSERT_OK_AND_ASSIGN(auto sharded, OpenSafetensors(FixturePath("llama3_gqa/sharded")));
  ASSERT_EQ(single->Names(), sharded->Names());
  for (const std::string& name : single->Names()) {
    const WeightTensor* a = single->Find(name);
    const WeightTensor* b = sharded->Find(name);
    ASSERT_EQ(a->nbytes, b->nbytes);
    EXPECT_EQ(std::memcmp(a->data, b->data, a->nbytes), 0) << name;
  }
}

TEST(SafetensorsFixtureTest, Bf16IsTheRoundedF32Checkpoint) {
  ASSERT_OK_AND_ASSIGN(auto f32, OpenSafetensors(FixturePath("llama3_gqa")));
  ASSERT_OK_AND_ASSIGN(auto bf16, OpenSafetensors(FixturePath("llama3_gqa/bf16")));
  ExpectLlama3Tensors(*bf16, DType::kBF16);
  for (const std::string& name : f32->Names()) {
    const WeightTensor* a = f32->Find(name);
    const WeightTensor* b = bf16->Find(name);
    for (int64_t i = 0; i < a->num_elements(); ++i) {
      uint16_t h;
      std::memcpy(&h, b->data + 2 * i, 2);
      ASSERT_EQ(h, F32ToBf16(F32At(*a, i))) << name << "[" << i << "]";
    }
  }
}

TEST(SafetensorsFixtureTest, Llama2AndOddTied) {
  ASSERT_OK_AND_ASSIGN(auto mha, OpenSafetensors(FixturePath("llama2_mha")));
  EXPECT_EQ(mha->Names().size(), 2u * 9u + 3u);
  ExpectTensor(*mha, "model.embed_tokens.weight", DType::kF32, {384, 64});
  ExpectTensor(*mha, "model.layers.1.self_attn.k_proj.weight", DType::kF32, {64, 64});
  ExpectTensor(*mha, "model.layers.1.mlp.down_proj.weight", DType::kF32, {64, 96});

  ASSERT_OK_AND_ASSIGN(auto odd, OpenSafetensors(FixturePath("odd_tied/model.safetensors")));
  EXPECT_EQ(odd->Names().size(), 2u * 9u + 2u);
  EXPECT_EQ(odd->Find("lm_head.weight"), nullptr);  // tied
  ExpectTensor(*odd, "model.embed_tokens.weight", DType::kF32, {301, 96});
  ExpectTensor(*odd, "model.layers.0.self_attn.q_proj.weight", DType::kF32, {96, 96});
  ExpectTensor(*odd, "model.layers.0.self_attn.k_proj.weight", DType::kF32, {48, 96});
  ExpectTensor(*odd, "model.layers.0.mlp.gate_proj.weight", DType::kF32, {160, 96});
  ExpectTensor(*odd, "model.layers.0.mlp.down_proj.weight", DType::kF32, {96, 160});
}

TEST(SafetensorsFixtureTest, ReferenceOutputs) {
  ASSERT_OK_AND_ASSIGN(auto ref, OpenSafetensors(FixturePath("llama3_gqa/reference.safetensors")));
  ExpectTensor(*ref, "tokens_0", DType::kI32, {7});
  ExpectTensor(*ref, "tokens_2", DType::kI32, {44});
  ExpectTensor(*ref, "logits_0", DType::kF32, {7, 448});
  ExpectTensor(*ref, "hidden_2", DType::kF32, {44, 64});
  ExpectTensor(*ref, "logits_st_bf16_1", DType::kF32, {13, 448});
  ExpectTensor(*ref, "logits_gguf_q8_0_2", DType::kF32, {44, 448});
  int32_t bos;
  std::memcpy(&bos, ref->Find("tokens_0")->data, 4);
  EXPECT_EQ(bos, 443);
}

// ---- In-memory parsing ----------------------------------------------------------------------

std::vector<uint8_t> Bytes(size_t n) {
  std::vector<uint8_t> b(n);
  for (size_t i = 0; i < n; ++i) b[i] = static_cast<uint8_t>(i * 7 + 1);
  return b;
}

absl::StatusOr<SafetensorsFile> Parse(const std::string& header, size_t data_bytes) {
  const std::vector<uint8_t> file = MakeSafetensors(header, Bytes(data_bytes));
  // Copy into an exactly sized heap buffer so sanitizers see any overread.
  auto buf = std::make_unique<uint8_t[]>(file.size());
  std::memcpy(buf.get(), file.data(), file.size());
  auto result = ParseSafetensorsHeader(buf.get(), file.size(), "test");
  if (result.ok()) {  // pointers would dangle; keep only shape info
    for (WeightTensor& t : result->tensors) t.data = nullptr;
  }
  return result;
}

TEST(SafetensorsParseTest, ParsesTensorsAndMetadata) {
  const std::string header = R"({"__metadata__":{"format":"pt","n":"1"},)"
                             R"("b":{"dtype":"BF16","shape":[2,3],"data_offsets":[16,28]},)"
                             R"("a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                             R"("e":{"dtype":"F16","shape":[0,5],"data_offsets":[28,28]},)"
                             R"("i":{"dtype":"I32","shape":[],"data_offsets":[28,32]}}   )";
  ASSERT_OK_AND_ASSIGN(SafetensorsFile f, Parse(header, 32));
  ASSERT_EQ(f.tensors.size(), 4u);
  EXPECT_EQ(f.tensors[0].name, "a");
  EXPECT_EQ(f.tensors[1].name, "b");
  EXPECT_EQ(f.tensors[1].dtype, DType::kBF16);
  EXPECT_THAT(f.tensors[1].shape, ElementsAre(2, 3));
  EXPECT_EQ(f.tensors[1].nbytes, 12u);
  EXPECT_EQ(f.tensors[2].nbytes, 0u);
  EXPECT_EQ(f.tensors[3].dtype, DType::kI32);
  EXPECT_TRUE(f.tensors[3].shape.empty());  // a scalar
  EXPECT_EQ(f.data_offset, 8 + header.size());
  EXPECT_EQ(f.metadata.at("format"), "pt");
}

TEST(SafetensorsParseTest, DataPointsIntoBuffer) {
  const std::string header = R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})";
  const std::vector<uint8_t> file = MakeSafetensors(header, Bytes(12));
  ASSERT_OK_AND_ASSIGN(SafetensorsFile f, ParseSafetensorsHeader(file.data(), file.size()));
  EXPECT_EQ(f.tensors[0].data, file.data() + 8 + header.size() + 4);
}

TEST(SafetensorsParseTest, TooSmall) {
  const uint8_t b[4] = {0, 0, 0, 0};
  EXPECT_THAT(ParseSafetensorsHeader(b, sizeof(b)), StatusIs(kInvalid, HasSubstr("too small")));
  EXPECT_THAT(ParseSafetensorsHeader(nullptr, 0), StatusIs(kInvalid));
}

TEST(SafetensorsParseTest, HeaderLengthPastEndOfFile) {
  std::vector<uint8_t> file = MakeSafetensors(R"({})", {});
  file[0] = 200;
  EXPECT_THAT(ParseSafetensorsHeader(file.data(), file.size()),
              StatusIs(kInvalid, HasSubstr("past the end")));
}

TEST(SafetensorsParseTest, HugeHeaderLengthRejectedBeforeReading) {
  std::vector<uint8_t> file = MakeSafetensors(R"({})", {});
  for (int i = 0; i < 8; ++i) file[i] = 0xff;
  EXPECT_THAT(ParseSafetensorsHeader(file.data(), file.size()),
              StatusIs(kInvalid, HasSubstr("exceeds the limit")));
}

TEST(SafetensorsParseTest, BadJson) {
  EXPECT_THAT(Parse(R"({"a":{"dtype":"F32",)", 0), StatusIs(kInvalid, HasSubstr("not valid JSON")));
  EXPECT_THAT(Parse(R"([1,2])", 0), StatusIs(kInvalid, HasSubstr("not a JSON object")));
  EXPECT_THAT(Parse(std::string("{\"a\":\xff}"), 0), StatusIs(kInvalid));
  EXPECT_THAT(Parse(R"({"a":3})", 0), StatusIs(kInvalid, HasSubstr("not a JSON object")));
}

TEST(SafetensorsParseTest, DuplicateTensorName) {
  EXPECT_THAT(Parse(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                    R"("a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                    8),
              StatusIs(kInvalid, HasSubstr("'a' twice")));
}

TEST(SafetensorsParseTest, UnsupportedDtypeListsSupportedOnes) {
  EXPECT_THAT(Parse(R"({"w":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}})", 8),
              StatusIs(kInvalid, HasSubstr("supported: F32, F16, BF16, F8_E4M3, I32")));
  EXPECT_THAT(Parse(R"({"w":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}})", 8),
              StatusIs(kInvalid, HasSubstr("'I64'")));
  EXPECT_THAT(Parse(R"({"w":{"dtype":"F8_E5M2","shape":[1],"data_offsets":[0,1]}})", 1),
              StatusIs(kInvalid, HasSubstr("'F8_E5M2'")));
}

TEST(SafetensorsParseTest, Fp8E4M3IsOneBytePerValue) {
  auto parsed = Parse(R"({"w":{"dtype":"F8_E4M3","shape":[2,3],"data_offsets":[0,6]}})", 6);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_THAT(Parse(R"({"w":{"dtype":"F8_E4M3","shape":[2,3],"data_offsets":[0,12]}})", 12),
              StatusIs(kInvalid));
}

TEST(SafetensorsParseTest, ShapeOffsetMismatch) {
  EXPECT_THAT(Parse(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8),
              StatusIs(kInvalid, HasSubstr("tensor 'w'")));
  EXPECT_THAT(Parse(R"({"w":{"dtype":"F16","shape":[3],"data_offsets":[0,8]}})", 8),
              StatusIs(kInvalid, HasSubstr("need 6 bytes")));
}

TEST(SafetensorsParseTest, OffsetsOutsideDataSection) {
  EXPECT_THAT(Parse(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 8),
              StatusIs(kInvalid, HasSubstr("past the data section")));
  EXPECT_THAT(Parse(R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[8,4]}})", 8),
              StatusIs(kInvalid, HasSubstr("reversed")));
  EXPECT_THAT(Parse(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}})", 8),
              StatusIs(kInvalid));
  EXPECT_THAT(Parse(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0]}})", 8),
              StatusIs(kInvalid));
}

TEST(SafetensorsParseTest, BadShapes) {
  EXPECT_THAT(Parse(R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 8),
              StatusIs(kInvalid, HasSubstr("non-negative")));
  EXPECT_THAT(Parse(R"({"w":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}})", 8),
              StatusIs(kInvalid));
  EXPECT_THAT(Parse(R"({"w":{"dtype":"F32","shape":"1","data_offsets":[0,4]}})", 8),
              StatusIs(kInvalid));
  // 2^32 * 2^32 elements: overflows u64.
  EXPECT_THAT(Parse(R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],)"
                    R"("data_offsets":[0,4]}})",
                    8),
              StatusIs(kInvalid, HasSubstr("overflow")));
  EXPECT_THAT(Parse(R"({"w":{"dtype":"F32","shape":[4611686018427387904],)"
                    R"("data_offsets":[0,4]}})",
                    8),
              StatusIs(kInvalid));
}

TEST(SafetensorsParseTest, MissingFields) {
  EXPECT_THAT(Parse(R"({"w":{"shape":[1],"data_offsets":[0,4]}})", 4),
              StatusIs(kInvalid, HasSubstr("dtype")));
  EXPECT_THAT(Parse(R"({"w":{"dtype":"F32","data_offsets":[0,4]}})", 4),
              StatusIs(kInvalid, HasSubstr("shape")));
  EXPECT_THAT(Parse(R"({"w":{"dtype":"F32","shape":[1]}})", 4),
              StatusIs(kInvalid, HasSubstr("data_offsets")));
  EXPECT_THAT(Parse(R"({"__metadata__":[1]})", 0), StatusIs(kInvalid, HasSubstr("__metadata__")));
}

TEST(SafetensorsParseTest, Overlap) {
  EXPECT_THAT(Parse(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                    R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                    12),
              StatusIs(kInvalid, HasSubstr("overlap")));
  // A small tensor entirely inside a larger one.
  EXPECT_THAT(Parse(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                    R"("b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]},)"
                    R"("c":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                    16),
              StatusIs(kInvalid, HasSubstr("overlap")));
  // Touching is fine.
  EXPECT_OK(Parse(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                  R"("b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
                  16));
}

// ---- Files, directories, shards -------------------------------------------------------------

TEST(SafetensorsOpenTest, MissingFileAndEmptyDirectory) {
  EXPECT_THAT(OpenSafetensors("/nonexistent/x.safetensors"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("/nonexistent/x.safetensors")));
  io_testing::TempDir dir;
  EXPECT_THAT(OpenSafetensors(dir.path()),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("model.safetensors")));
}

TEST(SafetensorsOpenTest, TruncatedFixtureNamesPath) {
  const std::vector<uint8_t> full =
      io_testing::ReadFileBytes(FixturePath("llama2_mha/model.safetensors"));
  io_testing::TempDir dir;
  const std::string path = dir.File("model.safetensors");
  // Cut inside the data section, inside the header, and inside the length prefix.
  for (size_t cut : {full.size() - 1, full.size() / 2, size_t{100}, size_t{5}, size_t{0}}) {
    io_testing::WriteFileBytes(path, std::vector<uint8_t>(full.begin(), full.begin() + cut));
    EXPECT_THAT(OpenSafetensors(path), StatusIs(kInvalid, HasSubstr(path))) << "cut at " << cut;
  }
}

TEST(SafetensorsOpenTest, CorruptHeaderLength) {
  std::vector<uint8_t> bytes = io_testing::ReadFileBytes(FixturePath("odd_tied/model.safetensors"));
  io_testing::TempDir dir;
  bytes[0] ^= 0x40;  // header length off by 64: the JSON is cut or runs into data
  io_testing::WriteFileBytes(dir.File("m.safetensors"), bytes);
  EXPECT_THAT(OpenSafetensors(dir.File("m.safetensors")), StatusIs(kInvalid));
  bytes[0] ^= 0x40;
  bytes[6] = 0x01;  // 2^48 + n
  io_testing::WriteFileBytes(dir.File("m.safetensors"), bytes);
  EXPECT_THAT(OpenSafetensors(dir.File("m.safetensors")), StatusIs(kInvalid));
}

class ShardedTest : public ::testing::Test {
 protected:
  void WriteShard(const std::string& name, const std::string& header, size_t data_bytes) {
    io_testing::WriteFileBytes(dir_.File(name), MakeSafetensors(header, Bytes(data_bytes)));
  }
  void WriteIndex(const std::string& json) {
    io_testing::WriteFileText(dir_.File("model.safetensors.index.json"), json);
  }
  io_testing::TempDir dir_;
};

TEST_F(ShardedTest, OpensDirectoryWithIndex) {
  WriteShard("s1.safetensors", R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 4);
  WriteShard("s2.safetensors", R"({"b":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}})", 4);
  WriteIndex(
      R"({"metadata":{"total_size":8},"weight_map":{"a":"s1.safetensors","b":"s2.safetensors"}})");
  ASSERT_OK_AND_ASSIGN(auto src, OpenSafetensors(dir_.path()));
  EXPECT_THAT(src->Names(), ElementsAre("a", "b"));
  EXPECT_EQ(src->Find("b")->dtype, DType::kF16);
}

TEST_F(ShardedTest, DuplicateAcrossShards) {
  WriteShard("s1.safetensors", R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 4);
  WriteShard("s2.safetensors", R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 4);
  WriteIndex(R"({"weight_map":{"a":"s1.safetensors","b":"s2.safetensors"}})");
  EXPECT_THAT(OpenSafetensors(dir_.path()), StatusIs(kInvalid, HasSubstr("appears in both")));
}

TEST_F(ShardedTest, TensorMissingFromItsShard) {
  WriteShard("s1.safetensors", R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 4);
  WriteIndex(R"({"weight_map":{"a":"s1.safetensors","zz":"s1.safetensors"}})");
  EXPECT_THAT(OpenSafetensors(dir_.path()), StatusIs(kInvalid, HasSubstr("'zz'")));
}

TEST_F(ShardedTest, MissingShardFile) {
  WriteIndex(R"({"weight_map":{"a":"gone.safetensors"}})");
  EXPECT_THAT(OpenSafetensors(dir_.path()),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("gone.safetensors")));
}

TEST_F(ShardedTest, ShardNameWithPathIsRejected) {
  WriteIndex(R"({"weight_map":{"a":"../etc/passwd"}})");
  EXPECT_THAT(OpenSafetensors(dir_.path()), StatusIs(kInvalid, HasSubstr("plain file name")));
}

TEST_F(ShardedTest, BadIndex) {
  WriteIndex(R"({"weight_map":)");
  EXPECT_THAT(OpenSafetensors(dir_.path()), StatusIs(kInvalid, HasSubstr("not valid JSON")));
  WriteIndex(R"({"metadata":{}})");
  EXPECT_THAT(OpenSafetensors(dir_.File("model.safetensors.index.json")),
              StatusIs(kInvalid, HasSubstr("weight_map")));
  WriteIndex(R"({"weight_map":{"a":3}})");
  EXPECT_THAT(OpenSafetensors(dir_.path()), StatusIs(kInvalid));
  WriteIndex(R"({"weight_map":{}})");
  EXPECT_THAT(OpenSafetensors(dir_.path()), StatusIs(kInvalid, HasSubstr("empty")));
}

TEST_F(ShardedTest, BadShardNamesIndexPathInError) {
  WriteShard("s1.safetensors", R"({"a":{"dtype":"Q4","shape":[1],"data_offsets":[0,4]}})", 4);
  WriteIndex(R"({"weight_map":{"a":"s1.safetensors"}})");
  EXPECT_THAT(OpenSafetensors(dir_.path()),
              StatusIs(kInvalid, HasSubstr(dir_.File("s1.safetensors"))));
}

}  // namespace
}  // namespace verdict::engine
