// SPDX-License-Identifier: Apache-2.0
#include "engine/io/gguf.h"

#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "common/testing/status_matchers.h"
#include "engine/dtype.h"
#include "engine/io/io_test_util.h"
#include "engine/io/safetensors.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace verdict::engine {
namespace {

using io_testing::F32Bytes;
using io_testing::FixturePath;
using io_testing::GgufBuilder;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::verdict::testing::StatusIs;

constexpr absl::StatusCode kInvalid = absl::StatusCode::kInvalidArgument;
constexpr absl::StatusCode kNotFound = absl::StatusCode::kNotFound;

constexpr uint32_t kF32 = 0, kF16 = 1, kQ8_0 = 8, kQ4_K = 12, kBF16 = 30;

// Parses `bytes` from an exactly sized heap copy, so sanitizers catch any overread. Copies
// behind successful parses stay alive until the test binary exits (the result points into them).
absl::StatusOr<std::unique_ptr<GgufFile>> ParseBytes(const std::vector<uint8_t>& bytes) {
  static auto* keep = new std::vector<std::unique_ptr<uint8_t[]>>;
  auto buf = std::make_unique<uint8_t[]>(bytes.size());
  std::memcpy(buf.get(), bytes.data(), bytes.size());
  absl::StatusOr<std::unique_ptr<GgufFile>> result = GgufFile::Parse(buf.get(), bytes.size());
  if (result.ok()) keep->push_back(std::move(buf));
  return result;
}

float F32At(const WeightTensor& t, int64_t i) {
  float f;
  std::memcpy(&f, t.data + 4 * i, 4);
  return f;
}

// ---- Fixtures -------------------------------------------------------------------------------

struct FixtureSpec {
  std::string model;
  int layers;
  int64_t vocab, hidden, ffn, heads, kv_heads, head_dim;
  bool tied;
  bool rope_freqs;
};

const FixtureSpec kFixtures[] = {
    {"llama3_gqa", 3, 448, 64, 96, 4, 2, 16, false, true},
    {"llama2_mha", 2, 384, 64, 96, 4, 4, 16, false, false},
    {"odd_tied", 2, 301, 96, 160, 6, 3, 16, true, false},
};

DType Expected2D(const std::string& ftype) {
  if (ftype == "f16") return DType::kF16;
  if (ftype == "bf16") return DType::kBF16;
  if (ftype == "q8_0") return DType::kQ8_0;
  return DType::kF32;
}

TEST(GgufFixtureTest, TensorsOfEveryFileType) {
  for (const FixtureSpec& f : kFixtures) {
    for (const std::string ftype : {"f32", "f16", "bf16", "q8_0"}) {
      const std::string path = FixturePath(f.model + "/" + f.model + "-" + ftype + ".gguf");
      SCOPED_TRACE(path);
      ASSERT_OK_AND_ASSIGN(auto g, GgufFile::Open(path));
      EXPECT_EQ(g->Format(), "gguf");
      EXPECT_EQ(g->version(), 3u);
      EXPECT_EQ(g->alignment(), 32u);
      EXPECT_EQ(g->data_offset() % 32, 0u);
      const DType w = Expected2D(ftype);
      const size_t expected = 9u * f.layers + 2 + (f.tied ? 0 : 1) + (f.rope_freqs ? 1 : 0);
      EXPECT_EQ(g->Names().size(), expected);
      auto expect = [&](const std::string& name, DType dtype, std::vector<int64_t> shape) {
        const WeightTensor* t = g->Find(name);
        ASSERT_NE(t, nullptr) << name;
        EXPECT_EQ(t->dtype, dtype) << name;
        EXPECT_EQ(t->shape, shape) << name;
        ASSERT_OK_AND_ASSIGN(size_t nbytes, DTypeByteSize(dtype, t->num_elements()));
        EXPECT_EQ(t->nbytes, nbytes) << name;
        EXPECT_EQ((t->data - g->Find(g->Names()[0])->data) % 32, 0) << name;
      };
      expect("token_embd.weight", w, {f.vocab, f.hidden});
      expect("output_norm.weight", DType::kF32, {f.hidden});
      if (f.tied) {
        EXPECT_EQ(g->Find("output.weight"), nullptr);
      } else {
        expect("output.weight", w, {f.vocab, f.hidden});
      }
      if (f.rope_freqs) expect("rope_freqs.weight", DType::kF32, {f.head_dim / 2});
      for (int l = 0; l < f.layers; ++l) {
        const std::string p = "blk." + std::to_string(l) + ".";
        expect(p + "attn_norm.weight", DType::kF32, {f.hidden});
        expect(p + "ffn_norm.weight", DType::kF32, {f.hidden});
        expect(p + "attn_q.weight", w, {f.heads * f.head_dim, f.hidden});
        expect(p + "attn_k.weight", w, {f.kv_heads * f.head_dim, f.hidden});
        expect(p + "attn_v.weight", w, {f.kv_heads * f.head_dim, f.hidden});
        expect(p + "attn_output.weight", w, {f.hidden, f.heads * f.head_dim});
        expect(p + "ffn_gate.weight", w, {f.ffn, f.hidden});
        expect(p + "ffn_up.weight", w, {f.ffn, f.hidden});
        expect(p + "ffn_down.weight", w, {f.hidden, f.ffn});
      }
    }
  }
}

TEST(GgufFixtureTest, Llama3Metadata) {
  ASSERT_OK_AND_ASSIGN(auto g, GgufFile::Open(FixturePath("llama3_gqa/llama3_gqa-q8_0.gguf")));
  EXPECT_EQ(*g->GetString("general.architecture"), "llama");
  EXPECT_EQ(*g->GetInt("llama.block_count"), 3);
  EXPECT_EQ(*g->GetInt("llama.attention.head_count_kv"), 2);
  EXPECT_EQ(*g->GetInt("general.file_type"), 7);
  EXPECT_DOUBLE_EQ(*g->GetFloat("llama.rope.freq_base"), 500000.0);
  EXPECT_NEAR(*g->GetFloat("llama.attention.layer_norm_rms_epsilon"), 1e-5, 1e-12);
  EXPECT_EQ(*g->GetString("tokenizer.ggml.model"), "gpt2");
  EXPECT_EQ(*g->GetString("tokenizer.ggml.pre"), "llama-bpe");
  ASSERT_OK_AND_ASSIGN(std::vector<std::string> tokens, g->GetStringArray("tokenizer.ggml.tokens"));
  ASSERT_EQ(tokens.size(), 448u);
  EXPECT_EQ(tokens[443], "<|begin_of_text|>");
  EXPECT_EQ(tokens[447], "<|eot_id|>");
  ASSERT_OK_AND_ASSIGN(std::vector<int64_t> types, g->GetIntArray("tokenizer.ggml.token_type"));
  ASSERT_EQ(types.size(), 448u);
  EXPECT_EQ(types[0], 1);    // normal
  EXPECT_EQ(types[443], 3);  // control
  ASSERT_OK_AND_ASSIGN(std::vector<std::string> merges, g->GetStringArray("tokenizer.ggml.merges"));
  EXPECT_EQ(merges.size(), 448u - 256u - 5u);
  EXPECT_EQ(*g->GetInt("tokenizer.ggml.bos_token_id"), 443);
  EXPECT_EQ(*g->GetInt("tokenizer.ggml.eos_token_id"), 444);
  EXPECT_EQ(*g->GetInt("tokenizer.ggml.eot_token_id"), 447);
  EXPECT_TRUE(*g->GetBool("tokenizer.ggml.add_bos_token"));
  EXPECT_THAT(*g->GetString("tokenizer.chat_template"), HasSubstr("<|start_header_id|>"));
  const std::vector<std::string> keys = g->MetadataKeys();
  ASSERT_FALSE(keys.empty());
  EXPECT_EQ(keys[0], "general.architecture");  // file order

  // Typed access errors.
  EXPECT_THAT(g->GetInt("general.architecture"), StatusIs(kInvalid, HasSubstr("string")));
  EXPECT_THAT(g->GetString("llama.block_count"), StatusIs(kInvalid, HasSubstr("u32")));
  EXPECT_THAT(g->GetString("no.such.key"), StatusIs(kNotFound, HasSubstr("no.such.key")));
  EXPECT_THAT(g->GetStringArray("tokenizer.ggml.token_type"), StatusIs(kInvalid));
  EXPECT_THAT(g->GetIntArray("tokenizer.ggml.tokens"), StatusIs(kInvalid));
  EXPECT_THAT(g->GetBool("llama.block_count"), StatusIs(kInvalid));
  EXPECT_EQ(g->FindMetadata("no.such.key"), nullptr);
  ASSERT_NE(g->FindMetadata("tokenizer.ggml.tokens"), nullptr);
  EXPECT_TRUE(g->FindMetadata("tokenizer.ggml.tokens")->is_array());
  EXPECT_EQ(g->FindMetadata("tokenizer.ggml.tokens")->array_size(), 448u);
}

TEST(GgufFixtureTest, Llama2SentencePieceVocab) {
  ASSERT_OK_AND_ASSIGN(auto g, GgufFile::Open(FixturePath("llama2_mha/llama2_mha-f16.gguf")));
  EXPECT_EQ(*g->GetString("tokenizer.ggml.model"), "llama");
  ASSERT_OK_AND_ASSIGN(auto tokens, g->GetStringArray("tokenizer.ggml.tokens"));
  ASSERT_OK_AND_ASSIGN(auto scores, g->GetFloatArray("tokenizer.ggml.scores"));
  ASSERT_OK_AND_ASSIGN(auto types, g->GetIntArray("tokenizer.ggml.token_type"));
  ASSERT_EQ(tokens.size(), 384u);
  ASSERT_EQ(scores.size(), 384u);
  ASSERT_EQ(types.size(), 384u);
  EXPECT_EQ(tokens[0], "<unk>");
  EXPECT_EQ(tokens[1], "<s>");
  EXPECT_EQ(tokens[3], "<0x00>");
  EXPECT_EQ(tokens[258], "<0xFF>");
  EXPECT_EQ(types[0], 2);    // unknown
  EXPECT_EQ(types[3], 6);    // byte
  EXPECT_EQ(types[300], 1);  // normal
  EXPECT_GT(scores[259], scores[300]);
  EXPECT_EQ(*g->GetInt("tokenizer.ggml.unknown_token_id"), 0);
}

// The HF q/k rows as GGUF stores them: within each head, rows (j, j + d/2) -> (2j, 2j + 1).
int64_t PermutedRow(int64_t hf_row, int64_t head_dim) {
  const int64_t head = hf_row / head_dim, r = hf_row % head_dim, half = head_dim / 2;
  return head * head_dim + (r < half ? 2 * r : 2 * (r - half) + 1);
}

TEST(GgufFixtureTest, F32GgufHoldsTheSafetensorsWeightsWithQkPermuted) {
  for (const FixtureSpec& f : kFixtures) {
    SCOPED_TRACE(f.model);
    ASSERT_OK_AND_ASSIGN(auto st, OpenSafetensors(FixturePath(f.model)));
    ASSERT_OK_AND_ASSIGN(auto g,
                         GgufFile::Open(FixturePath(f.model + "/" + f.model + "-f32.gguf")));
    auto same = [&](const std::string& hf, const std::string& gg) {
      const WeightTensor* a = st->Find(hf);
      const WeightTensor* b = g->Find(gg);
      ASSERT_NE(a, nullptr);
      ASSERT_NE(b, nullptr);
      ASSERT_EQ(a->nbytes, b->nbytes);
      EXPECT_EQ(std::memcmp(a->data, b->data, a->nbytes), 0) << hf << " vs " << gg;
    };
    same("model.embed_tokens.weight", "token_embd.weight");
    same("model.norm.weight", "output_norm.weight");
    if (!f.tied) same("lm_head.weight", "output.weight");
    same("model.layers.1.self_attn.v_proj.weight", "blk.1.attn_v.weight");
    same("model.layers.1.mlp.down_proj.weight", "blk.1.ffn_down.weight");
    for (const auto& [proj, heads] : {std::pair<std::string, int64_t>{"q_proj", f.heads},
                                      std::pair<std::string, int64_t>{"k_proj", f.kv_heads}}) {
      const WeightTensor* a = st->Find("model.layers.1.self_attn." + proj + ".weight");
      const WeightTensor* b =
          g->Find(proj == "q_proj" ? "blk.1.attn_q.weight" : "blk.1.attn_k.weight");
      ASSERT_NE(a, nullptr);
      ASSERT_NE(b, nullptr);
      ASSERT_EQ(a->shape, b->shape);
      ASSERT_EQ(a->shape[0], heads * f.head_dim);
      const int64_t cols = a->shape[1];
      for (int64_t row = 0; row < a->shape[0]; ++row) {
        const int64_t grow = PermutedRow(row, f.head_dim);
        EXPECT_EQ(std::memcmp(a->data + 4 * row * cols, b->data + 4 * grow * cols, 4 * cols), 0)
            << proj << " row " << row;
      }
    }
  }
}

TEST(GgufFixtureTest, Q8_0DequantizesCloseToF32) {
  ASSERT_OK_AND_ASSIGN(auto f32, GgufFile::Open(FixturePath("odd_tied/odd_tied-f32.gguf")));
  ASSERT_OK_AND_ASSIGN(auto q8, GgufFile::Open(FixturePath("odd_tied/odd_tied-q8_0.gguf")));
  const WeightTensor* a = f32->Find("blk.0.ffn_down.weight");
  const WeightTensor* b = q8->Find("blk.0.ffn_down.weight");
  ASSERT_EQ(b->dtype, DType::kQ8_0);
  const int64_t blocks = b->num_elements() / kQ8_0BlockSize;
  ASSERT_EQ(b->nbytes, static_cast<size_t>(blocks) * sizeof(BlockQ8_0));
  for (int64_t i = 0; i < blocks; ++i) {
    BlockQ8_0 blk;
    std::memcpy(&blk, b->data + i * sizeof(BlockQ8_0), sizeof(blk));
    const float scale = F16ToF32(blk.scale_f16);
    for (int j = 0; j < kQ8_0BlockSize; ++j) {
      const float ref = F32At(*a, i * kQ8_0BlockSize + j);
      ASSERT_NEAR(scale * blk.qs[j], ref, scale * 0.5f + 1e-3f * std::fabs(ref)) << i << "," << j;
    }
  }
}

TEST(GgufFixtureTest, RopeFreqsAreLlama3Divisors) {
  ASSERT_OK_AND_ASSIGN(auto g, GgufFile::Open(FixturePath("llama3_gqa/llama3_gqa-f16.gguf")));
  const WeightTensor* t = g->Find("rope_freqs.weight");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(F32At(*t, 0), 1.0f);  // high frequency: unscaled
  EXPECT_GT(F32At(*t, 1), 1.0f);  // in the smoothing band
  EXPECT_LT(F32At(*t, 1), 8.0f);
  EXPECT_EQ(F32At(*t, 7), 8.0f);  // low frequency: divided by the factor
}

TEST(GgufFixtureTest, TruncatedFixtureAtEveryHeaderPrefix) {
  const std::vector<uint8_t> full =
      io_testing::ReadFileBytes(FixturePath("llama2_mha/llama2_mha-q8_0.gguf"));
  ASSERT_OK(ParseBytes(full).status());
  ASSERT_OK_AND_ASSIGN(auto g, ParseBytes(full));
  const size_t header = g->data_offset();
  for (size_t cut = 0; cut < header + 64; cut += (cut < 4096 ? 1 : 97)) {
    std::vector<uint8_t> part(full.begin(), full.begin() + cut);
    EXPECT_THAT(ParseBytes(part), StatusIs(kInvalid)) << "cut at " << cut;
  }
  // Cut in the last tensor's data.
  EXPECT_THAT(ParseBytes(std::vector<uint8_t>(full.begin(), full.end() - 1)),
              StatusIs(kInvalid, HasSubstr("past the end")));
}

TEST(GgufOpenTest, MissingFileIsNotFound) {
  EXPECT_THAT(GgufFile::Open("/nonexistent/m.gguf"),
              StatusIs(kNotFound, HasSubstr("/nonexistent/m.gguf")));
}

TEST(GgufOpenTest, ErrorsNameThePath) {
  io_testing::TempDir dir;
  io_testing::WriteFileBytes(dir.File("bad.gguf"), {'G', 'G', 'U', 'X', 3, 0, 0, 0});
  EXPECT_THAT(GgufFile::Open(dir.File("bad.gguf")),
              StatusIs(kInvalid, HasSubstr(dir.File("bad.gguf"))));
  io_testing::WriteFileBytes(dir.File("empty.gguf"), {});
  EXPECT_THAT(GgufFile::Open(dir.File("empty.gguf")), StatusIs(kInvalid, HasSubstr("too small")));
}

// ---- Synthetic files ------------------------------------------------------------------------

GgufBuilder Minimal() {
  GgufBuilder b;
  b.String("general.architecture", "llama")
      .Tensor("w", kF32, {4, 2}, F32Bytes({1, 2, 3, 4, 5, 6, 7, 8}))
      .Tensor("n", kF32, {4}, F32Bytes({-1, -2, -3, -4}));
  return b;
}

TEST(GgufParseTest, MinimalFile) {
  ASSERT_OK_AND_ASSIGN(auto g, ParseBytes(Minimal().Build()));
  EXPECT_THAT(g->Names(), ElementsAre("n", "w"));
  const WeightTensor* w = g->Find("w");
  EXPECT_THAT(w->shape, ElementsAre(2, 4));  // outermost-first
  EXPECT_EQ(w->nbytes, 32u);
  EXPECT_EQ(F32At(*w, 5), 6.0f);
  EXPECT_EQ(F32At(*g->Find("n"), 3), -4.0f);
}

TEST(GgufParseTest, EveryValueType) {
  GgufBuilder b;
  b.U8("u8", 200)
      .I8("i8", -5)
      .U16("u16", 60000)
      .I16("i16", -30000)
      .U32("u32", 4000000000u)
      .I32("i32", -7)
      .U64("u64", 1ull << 40)
      .I64("i64", -(1ll << 40))
      .F32("f32", 1.5f)
      .F64("f64", -2.25)
      .Bool("t", true)
      .Bool("f", false)
      .String("s", std::string("a\0b", 3))
      .StringArray("sa", {"x", "", "yz"})
      .I32Array("ia", {1, -2, 3})
      .F32Array("fa", {0.5f, 2})
      .U64("big", ~0ull);
  // Nested: array of 2 arrays of u8 ({1,2}, {}).
  std::vector<uint8_t> nested = GgufBuilder::Le(GgufBuilder::kArray, 4);
  io_testing::PutLe(&nested, 2, 8);
  io_testing::PutLe(&nested, GgufBuilder::kU8, 4);
  io_testing::PutLe(&nested, 2, 8);
  nested.push_back(1);
  nested.push_back(2);
  io_testing::PutLe(&nested, GgufBuilder::kU8, 4);
  io_testing::PutLe(&nested, 0, 8);
  b.Raw("nested", GgufBuilder::kArray, nested);
  ASSERT_OK_AND_ASSIGN(auto g, ParseBytes(b.Build()));
  EXPECT_EQ(*g->GetInt("u8"), 200);
  EXPECT_EQ(*g->GetInt("i8"), -5);
  EXPECT_EQ(*g->GetInt("u16"), 60000);
  EXPECT_EQ(*g->GetInt("i16"), -30000);
  EXPECT_EQ(*g->GetInt("u32"), 4000000000ll);
  EXPECT_EQ(*g->GetInt("i32"), -7);
  EXPECT_EQ(*g->GetInt("u64"), 1ll << 40);
  EXPECT_EQ(*g->GetInt("i64"), -(1ll << 40));
  EXPECT_EQ(*g->GetFloat("f32"), 1.5);
  EXPECT_EQ(*g->GetFloat("f64"), -2.25);
  EXPECT_EQ(*g->GetFloat("i32"), -7.0);  // integers convert to float
  EXPECT_TRUE(*g->GetBool("t"));
  EXPECT_FALSE(*g->GetBool("f"));
  EXPECT_EQ(*g->GetString("s"), std::string("a\0b", 3));
  EXPECT_THAT(*g->GetStringArray("sa"), ElementsAre("x", "", "yz"));
  EXPECT_THAT(*g->GetIntArray("ia"), ElementsAre(1, -2, 3));
  EXPECT_THAT(*g->GetFloatArray("ia"), ElementsAre(1.0f, -2.0f, 3.0f));
  EXPECT_THAT(*g->GetFloatArray("fa"), ElementsAre(0.5f, 2.0f));
  EXPECT_THAT(g->GetIntArray("fa"), StatusIs(kInvalid, HasSubstr("array of f32")));
  EXPECT_THAT(g->GetInt("big"), StatusIs(kInvalid, HasSubstr("int64")));
  EXPECT_THAT(g->GetInt("f32"), StatusIs(kInvalid));
  EXPECT_THAT(g->GetInt("sa"), StatusIs(kInvalid));
  const GgufValue* n = g->FindMetadata("nested");
  ASSERT_NE(n, nullptr);
  EXPECT_EQ(n->element_type(), GgufType::kArray);
  EXPECT_EQ(n->array_size(), 2u);
  EXPECT_THAT(g->GetIntArray("nested"), StatusIs(kInvalid));
  EXPECT_EQ(g->FindMetadata("ia")->DebugString(), "i32[3] {1, -2, 3}");
  EXPECT_EQ(g->FindMetadata("s")->DebugString(), "\"a\\x00b\"");
  EXPECT_EQ(g->MetadataKeys().size(), 18u);
}

TEST(GgufParseTest, BadMagic) {
  EXPECT_THAT(ParseBytes(Minimal().Magic(0x46554746).Build()),
              StatusIs(kInvalid, HasSubstr("magic")));
  EXPECT_THAT(GgufFile::Parse(nullptr, 0), StatusIs(kInvalid));
}

TEST(GgufParseTest, Versions) {
  EXPECT_OK(ParseBytes(Minimal().Version(2).Build()).status());
  for (uint32_t v : {0u, 1u, 4u, 0x03000000u}) {
    EXPECT_THAT(ParseBytes(Minimal().Version(v).Build()),
                StatusIs(kInvalid, HasSubstr("supported versions: 2, 3")))
        << v;
  }
}

TEST(GgufParseTest, UnsupportedTensorTypeNamesSupportedOnes) {
  GgufBuilder b;
  b.Tensor("blk.0.attn_q.weight", 10 /* Q2_K */, {256, 2}, std::vector<uint8_t>(168, 0));
  EXPECT_THAT(ParseBytes(b.Build()),
              StatusIs(kInvalid, ::testing::AllOf(HasSubstr("Q2_K"), HasSubstr("blk.0.attn_q.weight"),
                                                  HasSubstr("supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, "
                                                            "Q5_1, Q4_K, Q5_K, Q6_K"))));
  GgufBuilder c;
  c.Tensor("x", 9999, {4}, std::vector<uint8_t>(16, 0));
  EXPECT_THAT(ParseBytes(c.Build()), StatusIs(kInvalid, HasSubstr("type 9999")));
}

TEST(GgufParseTest, SupportedTensorTypes) {
  GgufBuilder b;
  b.Tensor("h", kF16, {3}, std::vector<uint8_t>(6, 0))
      .Tensor("b", kBF16, {2, 2}, std::vector<uint8_t>(8, 0))
      .Tensor("q", kQ8_0, {64, 2}, std::vector<uint8_t>(4 * 34, 0));
  ASSERT_OK_AND_ASSIGN(auto g, ParseBytes(b.Build()));
  EXPECT_EQ(g->Find("h")->dtype, DType::kF16);
  EXPECT_EQ(g->Find("b")->dtype, DType::kBF16);
  EXPECT_EQ(g->Find("q")->dtype, DType::kQ8_0);
  EXPECT_EQ(g->Find("q")->nbytes, 136u);
  EXPECT_THAT(g->Find("q")->shape, ElementsAre(2, 64));
}

TEST(GgufParseTest, BlockQuantizedTensorTypes) {
  GgufBuilder b;
  b.Tensor("q4_0", 2, {64, 1}, std::vector<uint8_t>(2 * 18, 0))
      .Tensor("q5_1", 7, {32, 3}, std::vector<uint8_t>(3 * 24, 0))
      .Tensor("q4_k", kQ4_K, {256, 2}, std::vector<uint8_t>(2 * 144, 0))
      .Tensor("q6_k", 14, {512, 1}, std::vector<uint8_t>(2 * 210, 0));
  ASSERT_OK_AND_ASSIGN(auto g, ParseBytes(b.Build()));
  EXPECT_EQ(g->Find("q4_0")->dtype, DType::kQ4_0);
  EXPECT_EQ(g->Find("q4_0")->nbytes, 36u);
  EXPECT_EQ(g->Find("q5_1")->dtype, DType::kQ5_1);
  EXPECT_EQ(g->Find("q5_1")->nbytes, 72u);
  EXPECT_EQ(g->Find("q4_k")->dtype, DType::kQ4_K);
  EXPECT_EQ(g->Find("q4_k")->nbytes, 288u);
  EXPECT_EQ(g->Find("q6_k")->dtype, DType::kQ6_K);
  EXPECT_EQ(g->Find("q6_k")->nbytes, 420u);
  GgufBuilder c;
  c.Tensor("blk.0.ffn_down.weight", kQ4_K, {128, 2}, std::vector<uint8_t>(144, 0));
  EXPECT_THAT(ParseBytes(c.Build()), StatusIs(kInvalid, ::testing::AllOf(HasSubstr("blk.0.ffn_down.weight"),
                                                                         HasSubstr("not a multiple of 256"))));
}

TEST(GgufParseTest, Q8_0RowNotMultipleOf32) {
  GgufBuilder b;
  b.Tensor("q", kQ8_0, {48, 2}, std::vector<uint8_t>(3 * 34, 0));
  EXPECT_THAT(ParseBytes(b.Build()), StatusIs(kInvalid, HasSubstr("multiple of 32")));
}

TEST(GgufParseTest, HostileCountsDoNotAllocate) {
  EXPECT_THAT(ParseBytes(Minimal().CountsOverride(2, ~0ull >> 1).Build()),
              StatusIs(kInvalid, HasSubstr("metadata count")));
  EXPECT_THAT(ParseBytes(Minimal().CountsOverride(~0ull, 1).Build()),
              StatusIs(kInvalid, HasSubstr("tensor count")));
  // A string claiming 2^60 bytes.
  GgufBuilder s;
  s.Raw("k", GgufBuilder::kString, GgufBuilder::Le(1ull << 60, 8));
  EXPECT_THAT(ParseBytes(s.Build()), StatusIs(kInvalid, HasSubstr("truncated string")));
  // An array claiming 2^61 u64 elements (2^64 bytes: the multiplication would overflow).
  std::vector<uint8_t> arr = GgufBuilder::Le(GgufBuilder::kU64, 4);
  io_testing::PutLe(&arr, 1ull << 61, 8);
  GgufBuilder a;
  a.Raw("k", GgufBuilder::kArray, arr);
  EXPECT_THAT(ParseBytes(a.Build()), StatusIs(kInvalid, HasSubstr("elements")));
  // A huge key length.
  std::vector<uint8_t> bytes = Minimal().Build();
  for (int i = 0; i < 8; ++i) bytes[24 + i] = 0xff;
  EXPECT_THAT(ParseBytes(bytes), StatusIs(kInvalid, HasSubstr("truncated metadata key")));
}

TEST(GgufParseTest, NestingDepthLimit) {
  // Arrays of one array each, 9 levels deep, innermost empty u8.
  std::vector<uint8_t> v;
  for (int i = 0; i < kGgufMaxArrayDepth + 1; ++i) {
    io_testing::PutLe(&v, GgufBuilder::kArray, 4);
    io_testing::PutLe(&v, 1, 8);
  }
  io_testing::PutLe(&v, GgufBuilder::kU8, 4);
  io_testing::PutLe(&v, 0, 8);
  GgufBuilder b;
  b.Raw("deep", GgufBuilder::kArray, v);
  EXPECT_THAT(ParseBytes(b.Build()), StatusIs(kInvalid, HasSubstr("deeper")));
}

TEST(GgufParseTest, UnknownValueTypes) {
  GgufBuilder b;
  b.Raw("k", 13, {0, 0, 0, 0});
  EXPECT_THAT(ParseBytes(b.Build()), StatusIs(kInvalid, HasSubstr("unknown value type 13")));
  GgufBuilder c;
  c.Raw("k", GgufBuilder::kArray, {99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0});
  EXPECT_THAT(ParseBytes(c.Build()), StatusIs(kInvalid, HasSubstr("unknown type 99")));
}

TEST(GgufParseTest, DuplicateKeysAndTensors) {
  GgufBuilder b;
  b.U32("k", 1).U32("k", 2);
  EXPECT_THAT(ParseBytes(b.Build()), StatusIs(kInvalid, HasSubstr("duplicate metadata key 'k'")));
  GgufBuilder c;
  c.Tensor("t", kF32, {1}, F32Bytes({1})).Tensor("t", kF32, {1}, F32Bytes({2}));
  EXPECT_THAT(ParseBytes(c.Build()), StatusIs(kInvalid, HasSubstr("duplicate tensor name 't'")));
}

TEST(GgufParseTest, Dimensions) {
  GgufBuilder b;
  b.Tensor("t", kF32, {1, 1, 1, 1, 1}, F32Bytes({1}));
  EXPECT_THAT(ParseBytes(b.Build()), StatusIs(kInvalid, HasSubstr("5 dimensions")));
  GgufBuilder c;
  c.Tensor("t", kF32, {}, F32Bytes({1}));
  EXPECT_THAT(ParseBytes(c.Build()), StatusIs(kInvalid, HasSubstr("0 dimensions")));
  GgufBuilder d;
  d.Tensor("t", kF32, {1ull << 32, 1ull << 32}, F32Bytes({1}));
  EXPECT_THAT(ParseBytes(d.Build()), StatusIs(kInvalid, HasSubstr("larger than the file")));
  GgufBuilder e;
  e.Tensor("t", kF32, {1ull << 63}, F32Bytes({1}));
  EXPECT_THAT(ParseBytes(e.Build()), StatusIs(kInvalid));
}

TEST(GgufParseTest, OffsetsAlignmentAndOverlap) {
  GgufBuilder mis;
  mis.TensorAt("t", kF32, {2}, 4).TrailingData(64);
  EXPECT_THAT(ParseBytes(mis.Build()),
              StatusIs(kInvalid, HasSubstr("not a multiple of the alignment")));
  GgufBuilder past;
  past.TensorAt("t", kF32, {16}, 32).TrailingData(64);
  EXPECT_THAT(ParseBytes(past.Build()), StatusIs(kInvalid, HasSubstr("past the end")));
  GgufBuilder far;
  far.TensorAt("t", kF32, {1}, 1ull << 62).TrailingData(64);
  EXPECT_THAT(ParseBytes(far.Build()), StatusIs(kInvalid, HasSubstr("past the end")));
  GgufBuilder overlap;
  overlap.TensorAt("a", kF32, {16}, 0).TensorAt("b", kF32, {4}, 32).TrailingData(128);
  EXPECT_THAT(ParseBytes(overlap.Build()), StatusIs(kInvalid, HasSubstr("overlap")));
  GgufBuilder same;
  same.TensorAt("a", kF32, {4}, 0).TensorAt("b", kF32, {4}, 0).TrailingData(64);
  EXPECT_THAT(ParseBytes(same.Build()), StatusIs(kInvalid, HasSubstr("overlap")));
  GgufBuilder ok;
  ok.TensorAt("a", kF32, {8}, 0)
      .TensorAt("b", kF32, {8}, 32)
      .TensorAt("e", kF32, {0}, 0)
      .TrailingData(64);
  EXPECT_OK(ParseBytes(ok.Build()).status());
}

TEST(GgufParseTest, CustomAlignment) {
  GgufBuilder b;
  b.Alignment(64)
      .U32("general.alignment", 64)
      .Tensor("a", kF32, {3}, F32Bytes({1, 2, 3}))
      .Tensor("b", kF32, {1}, F32Bytes({4}));
  ASSERT_OK_AND_ASSIGN(auto g, ParseBytes(b.Build()));
  EXPECT_EQ(g->alignment(), 64u);
  EXPECT_EQ(g->data_offset() % 64, 0u);
  EXPECT_EQ(F32At(*g->Find("b"), 0), 4.0f);

  GgufBuilder c;
  c.U32("general.alignment", 48);
  EXPECT_THAT(ParseBytes(c.Build()), StatusIs(kInvalid, HasSubstr("power of two")));
  GgufBuilder d;
  d.U32("general.alignment", 0);
  EXPECT_THAT(ParseBytes(d.Build()), StatusIs(kInvalid, HasSubstr("power of two")));
  GgufBuilder e;
  e.U64("general.alignment", 32);
  EXPECT_THAT(ParseBytes(e.Build()), StatusIs(kInvalid, HasSubstr("expected u32")));
}

TEST(GgufParseTest, MetadataOnlyFileNeedsNoDataSection) {
  GgufBuilder b;
  b.String("general.architecture", "llama").StringArray("tokenizer.ggml.tokens", {"a", "b"});
  ASSERT_OK_AND_ASSIGN(auto g, ParseBytes(b.Build()));
  EXPECT_TRUE(g->Names().empty());
}

}  // namespace
}  // namespace verdict::engine
