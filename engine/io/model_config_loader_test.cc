// SPDX-License-Identifier: Apache-2.0
#include "engine/io/model_config_loader.h"

#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/status_macros.h"
#include "common/testing/status_matchers.h"
#include "engine/io/gguf.h"
#include "engine/io/io_test_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace verdict::engine {
namespace {

using io_testing::FixturePath;
using io_testing::GgufBuilder;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::verdict::testing::StatusIs;

constexpr absl::StatusCode kInvalid = absl::StatusCode::kInvalidArgument;
constexpr absl::StatusCode kUnimplemented = absl::StatusCode::kUnimplemented;

std::string ReadText(const std::string& path) {
  const std::vector<uint8_t> b = io_testing::ReadFileBytes(path);
  return std::string(b.begin(), b.end());
}

// ---- config.json from the fixtures ---------------------------------------------------------

TEST(HfConfigTest, Llama3LegacyRopeScaling) {
  ASSERT_OK_AND_ASSIGN(LlamaConfig c,
                       ParseHfConfig(ReadText(FixturePath("llama3_gqa/config.json"))));
  EXPECT_EQ(c.architecture, "llama");
  EXPECT_EQ(c.vocab_size, 448);
  EXPECT_EQ(c.hidden_size, 64);
  EXPECT_EQ(c.intermediate_size, 96);
  EXPECT_EQ(c.num_layers, 3);
  EXPECT_EQ(c.num_heads, 4);
  EXPECT_EQ(c.num_kv_heads, 2);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_FLOAT_EQ(c.rms_norm_eps, 1e-5f);
  EXPECT_FLOAT_EQ(c.rope_theta, 500000.0f);
  ASSERT_TRUE(c.has_llama3_rope_scaling);
  EXPECT_FLOAT_EQ(c.llama3_rope_scaling.factor, 8.0f);
  EXPECT_FLOAT_EQ(c.llama3_rope_scaling.low_freq_factor, 1.0f);
  EXPECT_FLOAT_EQ(c.llama3_rope_scaling.high_freq_factor, 4.0f);
  EXPECT_EQ(c.llama3_rope_scaling.original_max_position_embeddings, 40);
  EXPECT_FLOAT_EQ(c.rope_linear_factor, 1.0f);
  EXPECT_EQ(c.rope_style, RopeStyle::kHalfSplit);
  EXPECT_EQ(c.max_position_embeddings, 256);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_FALSE(c.attention_bias);
  EXPECT_FALSE(c.mlp_bias);
  EXPECT_EQ(c.bos_token_id, 443);
  EXPECT_THAT(c.eos_token_ids, ElementsAre(444, 447));
  EXPECT_EQ(c.torch_dtype, "float32");
  ASSERT_OK_AND_ASSIGN(LlamaConfig bf16,
                       ParseHfConfig(ReadText(FixturePath("llama3_gqa/bf16/config.json"))));
  EXPECT_EQ(bf16.torch_dtype, "bfloat16");
}

TEST(HfConfigTest, Transformers5RopeParameters) {
  // llama2_mha and odd_tied were written by transformers 5 ("rope_parameters", "dtype").
  ASSERT_OK_AND_ASSIGN(LlamaConfig c,
                       ParseHfConfig(ReadText(FixturePath("llama2_mha/config.json"))));
  EXPECT_EQ(c.vocab_size, 384);
  EXPECT_EQ(c.num_heads, 4);
  EXPECT_EQ(c.num_kv_heads, 4);
  EXPECT_EQ(c.num_layers, 2);
  EXPECT_FLOAT_EQ(c.rope_theta, 10000.0f);
  EXPECT_FALSE(c.has_llama3_rope_scaling);
  EXPECT_EQ(c.bos_token_id, 1);
  EXPECT_THAT(c.eos_token_ids, ElementsAre(2));
  EXPECT_EQ(c.torch_dtype, "float32");

  ASSERT_OK_AND_ASSIGN(LlamaConfig o, ParseHfConfig(ReadText(FixturePath("odd_tied/config.json"))));
  EXPECT_EQ(o.vocab_size, 301);
  EXPECT_EQ(o.hidden_size, 96);
  EXPECT_EQ(o.intermediate_size, 160);
  EXPECT_EQ(o.num_heads, 6);
  EXPECT_EQ(o.num_kv_heads, 3);
  EXPECT_EQ(o.head_dim, 16);
  EXPECT_TRUE(o.tie_word_embeddings);
  EXPECT_FLOAT_EQ(o.rms_norm_eps, 1e-6f);
}

TEST(GenerationConfigTest, Fixtures) {
  ASSERT_OK_AND_ASSIGN(
      GenerationDefaults g,
      ParseGenerationConfig(ReadText(FixturePath("llama3_gqa/generation_config.json"))));
  EXPECT_FLOAT_EQ(g.temperature, 0.6f);
  EXPECT_FLOAT_EQ(g.top_p, 0.9f);
  EXPECT_EQ(g.top_k, -1);
  EXPECT_TRUE(g.has_do_sample);
  EXPECT_TRUE(g.do_sample);
  EXPECT_EQ(g.bos_token_id, 443);
  EXPECT_THAT(g.eos_token_ids, ElementsAre(444, 447));

  ASSERT_OK_AND_ASSIGN(
      GenerationDefaults m,
      ParseGenerationConfig(ReadText(FixturePath("llama2_mha/generation_config.json"))));
  EXPECT_EQ(m.top_k, 40);
  EXPECT_THAT(m.eos_token_ids, ElementsAre(2));

  ASSERT_OK_AND_ASSIGN(
      GenerationDefaults o,
      ParseGenerationConfig(ReadText(FixturePath("odd_tied/generation_config.json"))));
  EXPECT_LT(o.temperature, 0.0f);
  EXPECT_LT(o.top_p, 0.0f);
  EXPECT_FALSE(o.has_do_sample);
}

TEST(GenerationConfigTest, Errors) {
  EXPECT_THAT(ParseGenerationConfig("{"), StatusIs(kInvalid));
  EXPECT_THAT(ParseGenerationConfig("[]"), StatusIs(kInvalid));
  EXPECT_THAT(ParseGenerationConfig(R"({"temperature":"hot"})"),
              StatusIs(kInvalid, HasSubstr("temperature")));
  EXPECT_THAT(ParseGenerationConfig(R"({"do_sample":1})"),
              StatusIs(kInvalid, HasSubstr("do_sample")));
  EXPECT_THAT(ParseGenerationConfig(R"({"eos_token_id":[1,"x"]})"),
              StatusIs(kInvalid, HasSubstr("eos_token_id")));
  ASSERT_OK_AND_ASSIGN(GenerationDefaults g,
                       ParseGenerationConfig(R"({"temperature":null,"top_k":0,"eos_token_id":7})"));
  EXPECT_LT(g.temperature, 0.0f);
  EXPECT_EQ(g.top_k, 0);
  EXPECT_THAT(g.eos_token_ids, ElementsAre(7));
}

// ---- config.json edge cases ----------------------------------------------------------------

nlohmann::json BaseConfig() {
  return nlohmann::json::parse(R"({
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64,
    "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
    "vocab_size": 100, "rms_norm_eps": 1e-5})");
}

absl::StatusOr<LlamaConfig> ParseWith(const std::function<void(nlohmann::json&)>& edit) {
  nlohmann::json j = BaseConfig();
  edit(j);
  return ParseHfConfig(j.dump());
}

TEST(HfConfigTest, Defaults) {
  ASSERT_OK_AND_ASSIGN(LlamaConfig c, ParseWith([](nlohmann::json&) {}));
  EXPECT_EQ(c.num_kv_heads, 4);  // = heads
  EXPECT_EQ(c.head_dim, 16);     // = hidden / heads
  EXPECT_FLOAT_EQ(c.rope_theta, 10000.0f);
  EXPECT_EQ(c.max_position_embeddings, 2048);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_FALSE(c.has_llama3_rope_scaling);
  EXPECT_EQ(c.bos_token_id, -1);
  EXPECT_TRUE(c.eos_token_ids.empty());
  ASSERT_OK_AND_ASSIGN(LlamaConfig d,
                       ParseWith([](nlohmann::json& j) { j.erase("rms_norm_eps"); }));
  EXPECT_FLOAT_EQ(d.rms_norm_eps, 1e-6f);
}

TEST(HfConfigTest, Fp8QuantizationConfigs) {
  ASSERT_OK_AND_ASSIGN(LlamaConfig plain, ParseWith([](nlohmann::json&) {}));
  EXPECT_EQ(plain.quant_method, "");
  ASSERT_OK_AND_ASSIGN(LlamaConfig ct, ParseWith([](nlohmann::json& j) {
                         j["quantization_config"] = {{"quant_method", "compressed-tensors"},
                                                     {"format", "float-quantized"}};
                       }));
  EXPECT_EQ(ct.quant_method, "compressed-tensors");
  ASSERT_OK_AND_ASSIGN(LlamaConfig fbgemm, ParseWith([](nlohmann::json& j) {
                         j["quantization_config"] = {{"quant_method", "fbgemm_fp8"},
                                                     {"activation_scale_ub", 1200.0}};
                       }));
  EXPECT_EQ(fbgemm.quant_method, "fbgemm_fp8");
  EXPECT_EQ(fbgemm.fp8_block_rows, 128);
  ASSERT_OK_AND_ASSIGN(LlamaConfig blocks, ParseWith([](nlohmann::json& j) {
                         j["quantization_config"] = {{"quant_method", "fp8"},
                                                     {"weight_block_size", {64, 256}}};
                       }));
  EXPECT_EQ(blocks.fp8_block_rows, 64);
  EXPECT_EQ(blocks.fp8_block_cols, 256);
  // Integer formats and other float formats are refused up front, by name.
  EXPECT_THAT(ParseWith([](nlohmann::json& j) {
                j["quantization_config"] = {{"quant_method", "awq"}, {"bits", 4}};
              }),
              StatusIs(absl::StatusCode::kUnimplemented, HasSubstr("'awq' is not supported")));
  EXPECT_THAT(ParseWith([](nlohmann::json& j) {
                j["quantization_config"] = {{"quant_method", "compressed-tensors"},
                                            {"format", "pack-quantized"}};
              }),
              StatusIs(absl::StatusCode::kUnimplemented, HasSubstr("'pack-quantized'")));
  EXPECT_THAT(ParseWith([](nlohmann::json& j) {
                j["quantization_config"] = {{"quant_method", "fp8"}, {"weight_block_size", {128}}};
              }),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("weight_block_size")));
}

TEST(HfConfigTest, OptionalFields) {
  ASSERT_OK_AND_ASSIGN(LlamaConfig c, ParseWith([](nlohmann::json& j) {
                         j["num_key_value_heads"] = 1;
                         j["head_dim"] = 32;  // need not be hidden / heads
                         j["tie_word_embeddings"] = true;
                         j["attention_bias"] = true;
                         j["mlp_bias"] = true;
                         j["max_position_embeddings"] = 131072.0;  // integral float
                         j["eos_token_id"] = {128001, 128008, 128009};
                         j["bos_token_id"] = 128000;
                         j["rope_scaling"] = {{"type", "linear"}, {"factor", 4.0}};
                         j["dtype"] = "bfloat16";
                       }));
  EXPECT_EQ(c.num_kv_heads, 1);
  EXPECT_EQ(c.head_dim, 32);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_TRUE(c.attention_bias);
  EXPECT_TRUE(c.mlp_bias);
  EXPECT_EQ(c.max_position_embeddings, 131072);
  EXPECT_THAT(c.eos_token_ids, ElementsAre(128001, 128008, 128009));
  EXPECT_EQ(c.bos_token_id, 128000);
  EXPECT_FLOAT_EQ(c.rope_linear_factor, 4.0f);
  EXPECT_EQ(c.torch_dtype, "bfloat16");
}

TEST(HfConfigTest, RopeParametersAndDefaultType) {
  ASSERT_OK_AND_ASSIGN(LlamaConfig c, ParseWith([](nlohmann::json& j) {
                         j["rope_parameters"] = {
                             {"rope_type", "llama3"},   {"rope_theta", 500000.0},
                             {"factor", 32.0},          {"low_freq_factor", 1.0},
                             {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 8192}};
                       }));
  EXPECT_FLOAT_EQ(c.rope_theta, 500000.0f);
  EXPECT_TRUE(c.has_llama3_rope_scaling);
  EXPECT_FLOAT_EQ(c.llama3_rope_scaling.factor, 32.0f);
  ASSERT_OK_AND_ASSIGN(LlamaConfig d, ParseWith([](nlohmann::json& j) {
                         j["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 1e6}};
                         j["rope_scaling"] = nullptr;
                       }));
  EXPECT_FLOAT_EQ(d.rope_theta, 1e6f);
  EXPECT_FALSE(d.has_llama3_rope_scaling);
}

TEST(HfConfigTest, UnsupportedRopeTypeNamesIt) {
  EXPECT_THAT(ParseWith([](nlohmann::json& j) {
                j["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
              }),
              StatusIs(kUnimplemented, HasSubstr("'yarn'")));
  EXPECT_THAT(ParseWith([](nlohmann::json& j) {
                j["rope_scaling"] = {{"type", "dynamic"}, {"factor", 2.0}};
              }),
              StatusIs(kUnimplemented, HasSubstr("'dynamic'")));
}

TEST(HfConfigTest, BadRopeScaling) {
  EXPECT_THAT(ParseWith([](nlohmann::json& j) {
                j["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}};
              }),
              StatusIs(kInvalid, HasSubstr("rope_scaling.low_freq_factor")));
  EXPECT_THAT(ParseWith([](nlohmann::json& j) {
                j["rope_scaling"] = {{"rope_type", "llama3"},
                                     {"factor", 8.0},
                                     {"low_freq_factor", 4.0},
                                     {"high_freq_factor", 4.0},
                                     {"original_max_position_embeddings", 8192}};
              }),
              StatusIs(kInvalid, HasSubstr("low_freq_factor < high_freq_factor")));
  EXPECT_THAT(ParseWith([](nlohmann::json& j) {
                j["rope_scaling"] = {{"type", "linear"}, {"factor", 0.0}};
              }),
              StatusIs(kInvalid, HasSubstr("factor")));
  EXPECT_THAT(ParseWith([](nlohmann::json& j) { j["rope_scaling"] = "linear"; }),
              StatusIs(kInvalid, HasSubstr("rope_scaling")));
  EXPECT_THAT(ParseWith([](nlohmann::json& j) { j["rope_theta"] = -1.0; }),
              StatusIs(kInvalid, HasSubstr("rope_theta")));
}

TEST(HfConfigTest, MissingRequiredFieldsAreNamed) {
  for (const char* field : {"hidden_size", "intermediate_size", "num_hidden_layers",
                            "num_attention_heads", "vocab_size"}) {
    EXPECT_THAT(ParseWith([&](nlohmann::json& j) { j.erase(field); }),
                StatusIs(kInvalid, HasSubstr(field)))
        << field;
  }
}

TEST(HfConfigTest, NonsenseIsRejectedNamingTheField) {
  EXPECT_THAT(ParseWith([](nlohmann::json& j) { j["num_attention_heads"] = 5; }),
              StatusIs(kInvalid, HasSubstr("num_attention_heads")));
  EXPECT_THAT(ParseWith([](nlohmann::json& j) { j["num_key_value_heads"] = 3; }),
              StatusIs(kInvalid, HasSubstr("num_key_value_heads")));
  EXPECT_THAT(ParseWith([](nlohmann::json& j) { j["num_key_value_heads"] = 0; }),
              StatusIs(kInvalid, HasSubstr("num_key_value_heads")));
  EXPECT_THAT(ParseWith([](nlohmann::json& j) { j["hidden_size"] = -64; }),
              StatusIs(kInvalid, HasSubstr("hidden_size")));
  EXPECT_THAT(ParseWith([](nlohmann::json& j) { j["vocab_size"] = 0; }),
              StatusIs(kInvalid, HasSubstr("vocab_size")));
  EXPECT_THAT(ParseWith([](nlohmann::json& j) { j["num_hidden_layers"] = 1e12; }),
              StatusIs(kInvalid, HasSubstr("num_hidden_layers")));
  EXPECT_THAT(ParseWith([](nlohmann::json& j) { j["hidden_size"] = "64"; }),
              StatusIs(kInvalid, HasSubstr("hidden_size")));
  EXPECT_THAT(ParseWith([](nlohmann::json& j) { j["intermediate_size"] = 12.5; }),
              StatusIs(kInvalid, HasSubstr("intermediate_size")));
  EXPECT_THAT(ParseWith([](nlohmann::json& j) { j["head_dim"] = 15; }),
              StatusIs(kInvalid, HasSubstr("head_dim")));
  EXPECT_THAT(ParseWith([](nlohmann::json& j) { j["rms_norm_eps"] = 0; }),
              StatusIs(kInvalid, HasSubstr("rms_norm_eps")));
  EXPECT_THAT(ParseWith([](nlohmann::json& j) { j["tie_word_embeddings"] = "yes"; }),
              StatusIs(kInvalid, HasSubstr("tie_word_embeddings")));
  EXPECT_THAT(ParseWith([](nlohmann::json& j) {
                j["eos_token_id"] = {{"a", 1}};
              }),
              StatusIs(kInvalid, HasSubstr("eos_token_id")));
  EXPECT_THAT(ParseWith([](nlohmann::json& j) { j["vocab_size"] = 18446744073709551615ull; }),
              StatusIs(kInvalid, HasSubstr("vocab_size")));
}

TEST(HfConfigTest, OtherModelsAreUnimplemented) {
  EXPECT_THAT(ParseWith([](nlohmann::json& j) { j["model_type"] = "mistral"; }),
              StatusIs(kUnimplemented, HasSubstr("mistral")));
  EXPECT_THAT(ParseWith([](nlohmann::json& j) {
                j.erase("model_type");
                j["architectures"] = {"GPT2LMHeadModel"};
              }),
              StatusIs(kUnimplemented, HasSubstr("GPT2LMHeadModel")));
  EXPECT_THAT(ParseWith([](nlohmann::json& j) { j["hidden_act"] = "gelu"; }),
              StatusIs(kUnimplemented, HasSubstr("gelu")));
  EXPECT_OK(ParseWith([](nlohmann::json& j) { j.erase("model_type"); }).status());
  EXPECT_THAT(ParseWith([](nlohmann::json& j) {
                j.erase("model_type");
                j.erase("architectures");
              }),
              StatusIs(kInvalid, HasSubstr("model_type")));
}

TEST(HfConfigTest, BadJson) {
  EXPECT_THAT(ParseHfConfig(""), StatusIs(kInvalid, HasSubstr("not valid JSON")));
  EXPECT_THAT(ParseHfConfig("{\"hidden_size\": 64,}"), StatusIs(kInvalid));
  EXPECT_THAT(ParseHfConfig("[1]"), StatusIs(kInvalid, HasSubstr("not a JSON object")));
  EXPECT_THAT(ParseHfConfig("{\"a\": \"\xff\"}"), StatusIs(kInvalid));
}

// ---- GGUF ----------------------------------------------------------------------------------

TEST(GgufConfigTest, FixturesMatchTheirHfConfigs) {
  for (const std::string model : {"llama3_gqa", "llama2_mha", "odd_tied"}) {
    ASSERT_OK_AND_ASSIGN(LlamaConfig hf,
                         ParseHfConfig(ReadText(FixturePath(model + "/config.json"))));
    for (const std::string ftype : {"f32", "f16", "bf16", "q8_0"}) {
      SCOPED_TRACE(model + " " + ftype);
      ASSERT_OK_AND_ASSIGN(
          auto g, GgufFile::Open(FixturePath(model + "/" + model + "-" + ftype + ".gguf")));
      ASSERT_OK_AND_ASSIGN(LlamaConfig c, ConfigFromGguf(*g));
      EXPECT_EQ(c.architecture, "llama");
      EXPECT_EQ(c.vocab_size, hf.vocab_size);
      EXPECT_EQ(c.hidden_size, hf.hidden_size);
      EXPECT_EQ(c.intermediate_size, hf.intermediate_size);
      EXPECT_EQ(c.num_layers, hf.num_layers);
      EXPECT_EQ(c.num_heads, hf.num_heads);
      EXPECT_EQ(c.num_kv_heads, hf.num_kv_heads);
      EXPECT_EQ(c.head_dim, hf.head_dim);
      EXPECT_FLOAT_EQ(c.rms_norm_eps, hf.rms_norm_eps);
      EXPECT_FLOAT_EQ(c.rope_theta, hf.rope_theta);
      EXPECT_EQ(c.max_position_embeddings, hf.max_position_embeddings);
      EXPECT_EQ(c.tie_word_embeddings, hf.tie_word_embeddings);
      EXPECT_EQ(c.rope_style, RopeStyle::kInterleaved);
      EXPECT_FALSE(c.has_llama3_rope_scaling);  // carried by rope_freqs.weight instead
      EXPECT_FALSE(c.attention_bias);
      EXPECT_FALSE(c.mlp_bias);
      EXPECT_EQ(c.torch_dtype, ftype == "f32"    ? "float32"
                               : ftype == "f16"  ? "float16"
                               : ftype == "bf16" ? "bfloat16"
                                                 : "q8_0");
      if (model == "llama3_gqa") {
        EXPECT_EQ(c.bos_token_id, 443);
        EXPECT_THAT(c.eos_token_ids, ElementsAre(444, 447));  // eos, then eot
      } else if (model == "llama2_mha") {
        EXPECT_EQ(c.bos_token_id, 1);
        EXPECT_THAT(c.eos_token_ids, ElementsAre(2));
      } else {
        EXPECT_EQ(c.bos_token_id, -1);  // no tokenizer metadata
        EXPECT_TRUE(c.eos_token_ids.empty());
      }
    }
  }
}

GgufBuilder LlamaKeys(bool with_vocab_size = true) {
  GgufBuilder b;
  b.String("general.architecture", "llama")
      .U32("llama.context_length", 4096)
      .U32("llama.embedding_length", 64)
      .U32("llama.block_count", 2)
      .U32("llama.feed_forward_length", 128)
      .U32("llama.attention.head_count", 4)
      .U32("llama.attention.head_count_kv", 2)
      .F32("llama.attention.layer_norm_rms_epsilon", 1e-5f)
      .F32("llama.rope.freq_base", 10000.0f)
      .U32("llama.rope.dimension_count", 16);
  if (with_vocab_size) b.U32("llama.vocab_size", 32);
  return b;
}

absl::StatusOr<LlamaConfig> ConfigOf(const GgufBuilder& b) {
  static auto* keep = new std::vector<std::vector<uint8_t>>;
  keep->push_back(b.Build());
  VERDICT_ASSIGN_OR_RETURN(auto g, GgufFile::Parse(keep->back().data(), keep->back().size()));
  return ConfigFromGguf(*g);
}

TEST(GgufConfigTest, SyntheticMinimal) {
  ASSERT_OK_AND_ASSIGN(LlamaConfig c, ConfigOf(LlamaKeys()));
  EXPECT_EQ(c.vocab_size, 32);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_EQ(c.num_kv_heads, 2);
  EXPECT_EQ(c.max_position_embeddings, 4096);
  EXPECT_TRUE(c.tie_word_embeddings);  // no output.weight
  EXPECT_EQ(c.torch_dtype, "");
}

TEST(GgufConfigTest, VocabSizeFallbacks) {
  GgufBuilder tokens = LlamaKeys(false);
  tokens.StringArray("tokenizer.ggml.tokens", {"a", "b", "c"});
  ASSERT_OK_AND_ASSIGN(LlamaConfig c, ConfigOf(tokens));
  EXPECT_EQ(c.vocab_size, 3);

  GgufBuilder emb = LlamaKeys(false);
  emb.Tensor("token_embd.weight", 0, {64, 5}, std::vector<uint8_t>(64 * 5 * 4, 0))
      .Tensor("output.weight", 0, {64, 5}, std::vector<uint8_t>(64 * 5 * 4, 0))
      .Tensor("blk.0.attn_q.bias", 0, {64}, std::vector<uint8_t>(64 * 4, 0));
  ASSERT_OK_AND_ASSIGN(LlamaConfig d, ConfigOf(emb));
  EXPECT_EQ(d.vocab_size, 5);
  EXPECT_FALSE(d.tie_word_embeddings);
  EXPECT_TRUE(d.attention_bias);

  EXPECT_THAT(ConfigOf(LlamaKeys(false)), StatusIs(kInvalid, HasSubstr("llama.vocab_size")));
}

TEST(GgufConfigTest, RopeScaling) {
  GgufBuilder linear = LlamaKeys();
  linear.String("llama.rope.scaling.type", "linear").F32("llama.rope.scaling.factor", 2.0f);
  ASSERT_OK_AND_ASSIGN(LlamaConfig c, ConfigOf(linear));
  EXPECT_FLOAT_EQ(c.rope_linear_factor, 2.0f);

  GgufBuilder none = LlamaKeys();
  none.String("llama.rope.scaling.type", "none");
  ASSERT_OK_AND_ASSIGN(LlamaConfig n, ConfigOf(none));
  EXPECT_FLOAT_EQ(n.rope_linear_factor, 1.0f);

  GgufBuilder yarn = LlamaKeys();
  yarn.String("llama.rope.scaling.type", "yarn").F32("llama.rope.scaling.factor", 4.0f);
  EXPECT_THAT(ConfigOf(yarn), StatusIs(kUnimplemented, HasSubstr("'yarn'")));

  GgufBuilder no_factor = LlamaKeys();
  no_factor.String("llama.rope.scaling.type", "linear");
  EXPECT_THAT(ConfigOf(no_factor), StatusIs(kInvalid, HasSubstr("llama.rope.scaling.factor")));
}

TEST(GgufConfigTest, Errors) {
  GgufBuilder gpt2;
  gpt2.String("general.architecture", "gpt2");
  EXPECT_THAT(ConfigOf(gpt2), StatusIs(kUnimplemented, HasSubstr("gpt2")));
  EXPECT_THAT(ConfigOf(GgufBuilder()), StatusIs(kInvalid, HasSubstr("general.architecture")));

  GgufBuilder partial;
  partial.String("general.architecture", "llama").U32("llama.context_length", 4096);
  EXPECT_THAT(ConfigOf(partial), StatusIs(kInvalid, HasSubstr("llama.embedding_length")));

  GgufBuilder kv = LlamaKeys();
  kv.U32("llama.attention.head_count_kv", 3);  // duplicate key: the parser rejects it
  EXPECT_THAT(ConfigOf(kv), StatusIs(kInvalid, HasSubstr("duplicate")));

  GgufBuilder bad_kv;
  bad_kv.String("general.architecture", "llama")
      .U32("llama.context_length", 4096)
      .U32("llama.embedding_length", 64)
      .U32("llama.block_count", 2)
      .U32("llama.feed_forward_length", 128)
      .U32("llama.attention.head_count", 4)
      .U32("llama.attention.head_count_kv", 3)
      .F32("llama.attention.layer_norm_rms_epsilon", 1e-5f)
      .U32("llama.vocab_size", 8);
  EXPECT_THAT(ConfigOf(bad_kv), StatusIs(kInvalid, HasSubstr("llama.attention.head_count_kv")));

  GgufBuilder partial_rotary = LlamaKeys();
  partial_rotary.U32("llama.attention.key_length", 32);  // rope.dimension_count stays 16
  EXPECT_THAT(ConfigOf(partial_rotary), StatusIs(kUnimplemented, HasSubstr("partial rotary")));

  GgufBuilder typed;
  typed.String("general.architecture", "llama").String("llama.context_length", "4096");
  EXPECT_THAT(ConfigOf(typed), StatusIs(kInvalid, HasSubstr("llama.context_length")));

  GgufBuilder arch_type;
  arch_type.U32("general.architecture", 1);
  EXPECT_THAT(ConfigOf(arch_type), StatusIs(kInvalid, HasSubstr("general.architecture")));
}

TEST(ValidateLlamaConfigTest, NamesConfigFields) {
  LlamaConfig c;
  c.vocab_size = 10;
  c.hidden_size = 8;
  c.intermediate_size = 16;
  c.num_layers = 1;
  c.num_heads = 2;
  c.num_kv_heads = 2;
  c.head_dim = 4;
  EXPECT_OK(ValidateLlamaConfig(c));
  c.num_kv_heads = 3;
  EXPECT_THAT(ValidateLlamaConfig(c), StatusIs(kInvalid, HasSubstr("num_kv_heads")));
}

}  // namespace
}  // namespace verdict::engine
