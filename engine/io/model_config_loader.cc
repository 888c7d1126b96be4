// SPDX-License-Identifier: Apache-2.0
#include "engine/io/model_config_loader.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace verdict::engine {
namespace {

using Json = nlohmann::json;

// Sizes above this are rejected as implausible (and would overflow int32 indexing).
constexpr int64_t kMaxDim = std::numeric_limits<int32_t>::max();

// Names of the config fields in the source format, for error messages.
struct FieldNames {
  const char* vocab_size;
  const char* hidden_size;
  const char* intermediate_size;
  const char* num_layers;
  const char* num_heads;
  const char* num_kv_heads;
  const char* head_dim;
  const char* rms_norm_eps;
  const char* rope_theta;
  const char* max_position_embeddings;
  const char* rope_scaling;
};

constexpr FieldNames kConfigNames = {
    "vocab_size",   "hidden_size", "intermediate_size", "num_layers", "num_heads",
    "num_kv_heads", "head_dim",    "rms_norm_eps",      "rope_theta", "max_position_embeddings",
    "rope scaling"};
constexpr FieldNames kHfNames = {"vocab_size",
                                 "hidden_size",
                                 "intermediate_size",
                                 "num_hidden_layers",
                                 "num_attention_heads",
                                 "num_key_value_heads",
                                 "head_dim",
                                 "rms_norm_eps",
                                 "rope_theta",
                                 "max_position_embeddings",
                                 "rope_scaling"};
constexpr FieldNames kGgufNames = {
    "llama.vocab_size",           "llama.embedding_length",
    "llama.feed_forward_length",  "llama.block_count",
    "llama.attention.head_count", "llama.attention.head_count_kv",
    "llama.attention.key_length", "llama.attention.layer_norm_rms_epsilon",
    "llama.rope.freq_base",       "llama.context_length",
    "llama.rope.scaling"};

absl::Status Invalid(absl::string_view field, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", what));
}

absl::Status Validate(const LlamaConfig& c, const FieldNames& n, bool check_hidden_split) {
  auto positive = [](const char* field, int64_t v) -> absl::Status {
    if (v <= 0) return Invalid(field, absl::StrCat("must be positive, got ", v));
    if (v > kMaxDim) return Invalid(field, absl::StrCat("is implausibly large: ", v));
    return absl::OkStatus();
  };
  VERDICT_RETURN_IF_ERROR(positive(n.vocab_size, c.vocab_size));
  VERDICT_RETURN_IF_ERROR(positive(n.hidden_size, c.hidden_size));
  VERDICT_RETURN_IF_ERROR(positive(n.intermediate_size, c.intermediate_size));
  VERDICT_RETURN_IF_ERROR(positive(n.num_layers, c.num_layers));
  VERDICT_RETURN_IF_ERROR(positive(n.num_heads, c.num_heads));
  VERDICT_RETURN_IF_ERROR(positive(n.num_kv_heads, c.num_kv_heads));
  VERDICT_RETURN_IF_ERROR(positive(n.max_position_embeddings, c.max_position_embeddings));
  if (check_hidden_split && c.hidden_size % c.num_heads != 0) {
    return Invalid(n.num_heads, absl::StrCat(c.num_heads, " heads do not divide ", n.hidden_size,
                                             " ", c.hidden_size));
  }
  if (c.num_heads % c.num_kv_heads != 0) {
    return Invalid(n.num_kv_heads, absl::StrCat(c.num_kv_heads, " kv heads do not divide ",
                                                n.num_heads, " ", c.num_heads));
  }
  VERDICT_RETURN_IF_ERROR(positive(n.head_dim, c.head_dim));
  if (c.head_dim % 2 != 0) {
    return Invalid(n.head_dim,
                   absl::StrCat("must be even for rotary embeddings, got ", c.head_dim));
  }
  if (!(c.rms_norm_eps > 0.0f) || !std::isfinite(c.rms_norm_eps)) {
    return Invalid(n.rms_norm_eps, absl::StrCat("must be positive, got ", c.rms_norm_eps));
  }
  if (!(c.rope_theta > 0.0f) || !std::isfinite(c.rope_theta)) {
    return Invalid(n.rope_theta, absl::StrCat("must be positive, got ", c.rope_theta));
  }
  if (!(c.rope_linear_factor > 0.0f) || !std::isfinite(c.rope_linear_factor)) {
    return Invalid(n.rope_scaling,
                   absl::StrCat("factor must be positive, got ", c.rope_linear_factor));
  }
  if (c.has_llama3_rope_scaling) {
    const Llama3RopeScaling& s = c.llama3_rope_scaling;
    if (!(s.factor > 0.0f) || !std::isfinite(s.factor)) {
      return Invalid(n.rope_scaling, absl::StrCat("factor must be positive, got ", s.factor));
    }
    if (!(s.low_freq_factor > 0.0f) || !(s.high_freq_factor > s.low_freq_factor) ||
        !std::isfinite(s.high_freq_factor)) {
      return Invalid(n.rope_scaling,
                     absl::StrCat("need 0 < low_freq_factor < high_freq_factor, got ",
                                  s.low_freq_factor, " and ", s.high_freq_factor));
    }
    if (s.original_max_position_embeddings <= 0) {
      return Invalid(n.rope_scaling,
                     absl::StrCat("original_max_position_embeddings must be positive, got ",
                                  s.original_max_position_embeddings));
    }
  }
  return absl::OkStatus();
}

// ---- JSON helpers ---------------------------------------------------------------------------

absl::StatusOr<Json> ParseJsonObject(absl::string_view text, absl::string_view what) {
  Json json;
  try {
    json = Json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(what, " is not valid JSON: ", e.what()));
  }
  if (json.is_discarded())
    return absl::InvalidArgumentError(absl::StrCat(what, " is not valid JSON"));
  if (!json.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(what, " is not a JSON object"));
  }
  return json;
}

// The member `key` of `obj`, or nullptr when absent or null.
const Json* Member(const Json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

absl::StatusOr<int64_t> ToInt(const Json& v, absl::string_view field) {
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return Invalid(field, "integer out of range");
    }
    return static_cast<int64_t>(u);
  }
  if (v.is_number_integer()) return v.get<int64_t>();
  if (v.is_number_float()) {  // tolerate 8192.0
    const double d = v.get<double>();
    if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9.0e15) {
      return static_cast<int64_t>(d);
    }
  }
  return Invalid(field, absl::StrCat("expected an integer, got ", v.dump()));
}

absl::StatusOr<double> ToFloat(const Json& v, absl::string_view field) {
  if (v.is_number()) return v.get<double>();
  return Invalid(field, absl::StrCat("expected a number, got ", v.dump()));
}

absl::StatusOr<std::optional<int64_t>> OptInt(const Json& obj, const char* key,
                                              absl::string_view prefix = "") {
  const Json* v = Member(obj, key);
  if (v == nullptr) return std::optional<int64_t>();
  VERDICT_ASSIGN_OR_RETURN(const int64_t i, ToInt(*v, absl::StrCat(prefix, key)));
  return std::optional<int64_t>(i);
}

absl::StatusOr<int64_t> ReqInt(const Json& obj, const char* key, absl::string_view prefix = "") {
  VERDICT_ASSIGN_OR_RETURN(const std::optional<int64_t> v, OptInt(obj, key, prefix));
  if (!v.has_value()) return Invalid(absl::StrCat(prefix, key), "missing required field");
  return *v;
}

absl::StatusOr<std::optional<double>> OptFloat(const Json& obj, const char* key,
                                               absl::string_view prefix = "") {
  const Json* v = Member(obj, key);
  if (v == nullptr) return std::optional<double>();
  VERDICT_ASSIGN_OR_RETURN(const double d, ToFloat(*v, absl::StrCat(prefix, key)));
  return std::optional<double>(d);
}

absl::StatusOr<double> ReqFloat(const Json& obj, const char* key, absl::string_view prefix = "") {
  VERDICT_ASSIGN_OR_RETURN(const std::optional<double> v, OptFloat(obj, key, prefix));
  if (!v.has_value()) return Invalid(absl::StrCat(prefix, key), "missing required field");
  return *v;
}

absl::StatusOr<std::optional<bool>> OptBool(const Json& obj, const char* key) {
  const Json* v = Member(obj, key);
  if (v == nullptr) return std::optional<bool>();
  if (!v->is_boolean())
    return Invalid(key, absl::StrCat("expected true or false, got ", v->dump()));
  return std::optional<bool>(v->get<bool>());
}

absl::StatusOr<std::optional<std::string>> OptString(const Json& obj, const char* key,
                                                     absl::string_view prefix = "") {
  const Json* v = Member(obj, key);
  if (v == nullptr) return std::optional<std::string>();
  if (!v->is_string()) {
    return Invalid(absl::StrCat(prefix, key), absl::StrCat("expected a string, got ", v->dump()));
  }
  return std::optional<std::string>(v->get<std::string>());
}

// An int, a list of ints, or absent/null (empty).
absl::StatusOr<std::vector<int64_t>> IntOrList(const Json& obj, const char* key) {
  std::vector<int64_t> out;
  const Json* v = Member(obj, key);
  if (v == nullptr) return out;
  if (v->is_array()) {
    for (const Json& e : *v) {
      VERDICT_ASSIGN_OR_RETURN(const int64_t i, ToInt(e, key));
      out.push_back(i);
    }
    return out;
  }
  VERDICT_ASSIGN_OR_RETURN(const int64_t i, ToInt(*v, key));
  out.push_back(i);
  return out;
}

// Reads the rope type and parameters from `scaling` (rope_scaling or rope_parameters).
absl::Status ParseRopeScaling(const Json& scaling, absl::string_view field, LlamaConfig* c) {
  const std::string prefix = absl::StrCat(field, ".");
  std::optional<std::string> type;
  VERDICT_ASSIGN_OR_RETURN(type, OptString(scaling, "rope_type", prefix));
  if (!type.has_value()) {
    VERDICT_ASSIGN_OR_RETURN(type, OptString(scaling, "type", prefix));
  }
  if (!type.has_value() || *type == "default") return absl::OkStatus();
  if (*type == "llama3") {
    c->has_llama3_rope_scaling = true;
    Llama3RopeScaling& s = c->llama3_rope_scaling;
    VERDICT_ASSIGN_OR_RETURN(const double factor, ReqFloat(scaling, "factor", prefix));
    VERDICT_ASSIGN_OR_RETURN(const double low, ReqFloat(scaling, "low_freq_factor", prefix));
    VERDICT_ASSIGN_OR_RETURN(const double high, ReqFloat(scaling, "high_freq_factor", prefix));
    VERDICT_ASSIGN_OR_RETURN(s.original_max_position_embeddings,
                             ReqInt(scaling, "original_max_position_embeddings", prefix));
    s.factor = static_cast<float>(factor);
    s.low_freq_factor = static_cast<float>(low);
    s.high_freq_factor = static_cast<float>(high);
    return absl::OkStatus();
  }
  if (*type == "linear") {
    VERDICT_ASSIGN_OR_RETURN(const double factor, ReqFloat(scaling, "factor", prefix));
    c->rope_linear_factor = static_cast<float>(factor);
    return absl::OkStatus();
  }
  return absl::UnimplementedError(absl::StrCat(field, ": rope type '", *type,
                                               "' is not supported (supported: default, "
                                               "llama3, linear)"));
}

// The FP8 weight formats we read (quantization_config of config.json): compressed-tensors
// "float-quantized" (llm-compressor, e.g. RedHatAI's *-FP8 models), fbgemm_fp8 (Meta's
// Llama-3.1-405B-FP8) and Hugging Face's block-scaled "fp8". The scales themselves are tensors
// beside each weight; activations are not quantized (input scales are ignored).
absl::Status ParseQuantization(const Json& q, LlamaConfig* c) {
  if (!q.is_object()) return Invalid("quantization_config", "expected an object");
  VERDICT_ASSIGN_OR_RETURN(const std::optional<std::string> method,
                           OptString(q, "quant_method", "quantization_config."));
  const std::string m = method.value_or("");
  if (m != "compressed-tensors" && m != "fbgemm_fp8" && m != "fp8") {
    return absl::UnimplementedError(absl::StrCat(
        "quantization method '", m, "' is not supported (supported: FP8 weights as "
        "compressed-tensors float-quantized, fbgemm_fp8 or fp8; or an unquantized checkpoint)"));
  }
  if (m == "compressed-tensors") {
    VERDICT_ASSIGN_OR_RETURN(const std::optional<std::string> format,
                             OptString(q, "format", "quantization_config."));
    if (format.has_value() && *format != "float-quantized" && *format != "naive-quantized") {
      return absl::UnimplementedError(absl::StrCat(
          "compressed-tensors format '", *format,
          "' is not supported (supported: float-quantized FP8 weights)"));
    }
  }
  if (const Json* block = Member(q, "weight_block_size"); block != nullptr && !block->is_null()) {
    if (!block->is_array() || block->size() != 2 || !(*block)[0].is_number_integer() ||
        !(*block)[1].is_number_integer() || (*block)[0].get<int64_t>() <= 0 ||
        (*block)[1].get<int64_t>() <= 0) {
      return Invalid("quantization_config.weight_block_size", "expected two positive integers");
    }
    c->fp8_block_rows = (*block)[0].get<int64_t>();
    c->fp8_block_cols = (*block)[1].get<int64_t>();
  }
  c->quant_method = m;
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateLlamaConfig(const LlamaConfig& config) {
  return Validate(config, kConfigNames, /*check_hidden_split=*/false);
}

absl::StatusOr<LlamaConfig> ParseHfConfig(absl::string_view json_text) {
  VERDICT_ASSIGN_OR_RETURN(const Json j, ParseJsonObject(json_text, "config.json"));
  LlamaConfig c;

  // Model family.
  VERDICT_ASSIGN_OR_RETURN(const std::optional<std::string> model_type, OptString(j, "model_type"));
  bool llama_arch = false;
  std::vector<std::string> archs;
  if (const Json* a = Member(j, "architectures"); a != nullptr) {
    if (!a->is_array()) return Invalid("architectures", "expected a list of strings");
    for (const Json& e : *a) {
      if (!e.is_string()) return Invalid("architectures", "expected a list of strings");
      archs.push_back(e.get<std::string>());
      if (archs.back() == "LlamaForCausalLM") llama_arch = true;
    }
  }
  if (model_type.has_value() && *model_type != "llama") {
    return absl::UnimplementedError(
        absl::StrCat("model_type '", *model_type, "' is not supported (supported: llama)"));
  }
  if (!model_type.has_value() && !llama_arch) {
    if (!archs.empty()) {
      return absl::UnimplementedError(absl::StrCat("architectures [", absl::StrJoin(archs, ", "),
                                                   "] are not supported (supported: "
                                                   "LlamaForCausalLM)"));
    }
    return Invalid("model_type", "missing (and no architectures): not a model config");
  }
  c.architecture = "llama";
  VERDICT_ASSIGN_OR_RETURN(const std::optional<std::string> act, OptString(j, "hidden_act"));
  if (act.has_value() && *act != "silu") {
    return absl::UnimplementedError(
        absl::StrCat("hidden_act '", *act, "' is not supported (supported: silu)"));
  }

  // Sizes.
  VERDICT_ASSIGN_OR_RETURN(c.vocab_size, ReqInt(j, "vocab_size"));
  VERDICT_ASSIGN_OR_RETURN(c.hidden_size, ReqInt(j, "hidden_size"));
  VERDICT_ASSIGN_OR_RETURN(c.intermediate_size, ReqInt(j, "intermediate_size"));
  VERDICT_ASSIGN_OR_RETURN(c.num_layers, ReqInt(j, "num_hidden_layers"));
  VERDICT_ASSIGN_OR_RETURN(c.num_heads, ReqInt(j, "num_attention_heads"));
  VERDICT_ASSIGN_OR_RETURN(const std::optional<int64_t> kv, OptInt(j, "num_key_value_heads"));
  c.num_kv_heads = kv.value_or(c.num_heads);
  VERDICT_ASSIGN_OR_RETURN(const std::optional<int64_t> head_dim, OptInt(j, "head_dim"));
  if (head_dim.has_value()) {
    c.head_dim = *head_dim;
  } else if (c.num_heads > 0) {
    c.head_dim = c.hidden_size / c.num_heads;
  }
  VERDICT_ASSIGN_OR_RETURN(const std::optional<double> eps, OptFloat(j, "rms_norm_eps"));
  c.rms_norm_eps = static_cast<float>(eps.value_or(1e-6));
  VERDICT_ASSIGN_OR_RETURN(const std::optional<int64_t> max_pos,
                           OptInt(j, "max_position_embeddings"));
  c.max_position_embeddings = max_pos.value_or(2048);
  VERDICT_ASSIGN_OR_RETURN(const std::optional<bool> tie, OptBool(j, "tie_word_embeddings"));
  c.tie_word_embeddings = tie.value_or(false);
  VERDICT_ASSIGN_OR_RETURN(const std::optional<bool> attn_bias, OptBool(j, "attention_bias"));
  c.attention_bias = attn_bias.value_or(false);
  VERDICT_ASSIGN_OR_RETURN(const std::optional<bool> mlp_bias, OptBool(j, "mlp_bias"));
  c.mlp_bias = mlp_bias.value_or(false);

  // RoPE: legacy rope_theta/rope_scaling, or transformers-5 rope_parameters.
  const Json* rope_scaling = Member(j, "rope_scaling");
  const Json* rope_params = Member(j, "rope_parameters");
  if (rope_scaling != nullptr && !rope_scaling->is_object()) {
    return Invalid("rope_scaling", "expected an object or null");
  }
  if (rope_params != nullptr && !rope_params->is_object()) {
    return Invalid("rope_parameters", "expected an object or null");
  }
  VERDICT_ASSIGN_OR_RETURN(std::optional<double> theta, OptFloat(j, "rope_theta"));
  if (!theta.has_value() && rope_params != nullptr) {
    VERDICT_ASSIGN_OR_RETURN(theta, OptFloat(*rope_params, "rope_theta", "rope_parameters."));
  }
  c.rope_theta = static_cast<float>(theta.value_or(10000.0));
  if (rope_scaling != nullptr) {
    VERDICT_RETURN_IF_ERROR(ParseRopeScaling(*rope_scaling, "rope_scaling", &c));
  } else if (rope_params != nullptr) {
    VERDICT_RETURN_IF_ERROR(ParseRopeScaling(*rope_params, "rope_parameters", &c));
  }

  // Special tokens and dtype.
  VERDICT_ASSIGN_OR_RETURN(const std::optional<int64_t> bos, OptInt(j, "bos_token_id"));
  c.bos_token_id = bos.value_or(-1);
  VERDICT_ASSIGN_OR_RETURN(c.eos_token_ids, IntOrList(j, "eos_token_id"));
  VERDICT_ASSIGN_OR_RETURN(std::optional<std::string> dtype, OptString(j, "torch_dtype"));
  if (!dtype.has_value()) {
    VERDICT_ASSIGN_OR_RETURN(dtype, OptString(j, "dtype"));
  }
  c.torch_dtype = dtype.value_or("");
  if (const Json* quant = Member(j, "quantization_config"); quant != nullptr && !quant->is_null()) {
    VERDICT_RETURN_IF_ERROR(ParseQuantization(*quant, &c));
  }

  VERDICT_RETURN_IF_ERROR(Validate(c, kHfNames, /*check_hidden_split=*/!head_dim.has_value()));
  return c;
}

absl::StatusOr<GenerationDefaults> ParseGenerationConfig(absl::string_view json_text) {
  VERDICT_ASSIGN_OR_RETURN(const Json j, ParseJsonObject(json_text, "generation_config.json"));
  GenerationDefaults g;
  VERDICT_ASSIGN_OR_RETURN(const std::optional<double> temperature, OptFloat(j, "temperature"));
  if (temperature.has_value()) g.temperature = static_cast<float>(*temperature);
  VERDICT_ASSIGN_OR_RETURN(const std::optional<double> top_p, OptFloat(j, "top_p"));
  if (top_p.has_value()) g.top_p = static_cast<float>(*top_p);
  VERDICT_ASSIGN_OR_RETURN(const std::optional<int64_t> top_k, OptInt(j, "top_k"));
  if (top_k.has_value()) g.top_k = *top_k;
  VERDICT_ASSIGN_OR_RETURN(const std::optional<bool> do_sample, OptBool(j, "do_sample"));
  if (do_sample.has_value()) {
    g.do_sample = *do_sample;
    g.has_do_sample = true;
  }
  VERDICT_ASSIGN_OR_RETURN(g.eos_token_ids, IntOrList(j, "eos_token_id"));
  VERDICT_ASSIGN_OR_RETURN(const std::optional<int64_t> bos, OptInt(j, "bos_token_id"));
  if (bos.has_value()) g.bos_token_id = *bos;
  return g;
}

namespace {

// An integer GGUF key; nullopt when absent. Present but mistyped is an error.
absl::StatusOr<std::optional<int64_t>> GgufOptInt(const GgufFile& f, const char* key) {
  if (f.FindMetadata(key) == nullptr) return std::optional<int64_t>();
  VERDICT_ASSIGN_OR_RETURN(const int64_t v, f.GetInt(key));
  return std::optional<int64_t>(v);
}

absl::StatusOr<int64_t> GgufReqInt(const GgufFile& f, const char* key) {
  VERDICT_ASSIGN_OR_RETURN(const std::optional<int64_t> v, GgufOptInt(f, key));
  if (!v.has_value()) return Invalid(key, "missing required GGUF metadata");
  return *v;
}

absl::StatusOr<std::optional<double>> GgufOptFloat(const GgufFile& f, const char* key) {
  if (f.FindMetadata(key) == nullptr) return std::optional<double>();
  VERDICT_ASSIGN_OR_RETURN(const double v, f.GetFloat(key));
  return std::optional<double>(v);
}

}  // namespace

absl::StatusOr<LlamaConfig> ConfigFromGguf(const GgufFile& f) {
  if (f.FindMetadata("general.architecture") == nullptr) {
    return Invalid("general.architecture", "missing required GGUF metadata");
  }
  VERDICT_ASSIGN_OR_RETURN(const std::string arch, f.GetString("general.architecture"));
  if (arch != "llama") {
    return absl::UnimplementedError(
        absl::StrCat("GGUF architecture '", arch, "' is not supported (supported: llama)"));
  }
  LlamaConfig c;
  c.architecture = "llama";
  c.rope_style = RopeStyle::kInterleaved;
  VERDICT_ASSIGN_OR_RETURN(c.max_position_embeddings, GgufReqInt(f, "llama.context_length"));
  VERDICT_ASSIGN_OR_RETURN(c.hidden_size, GgufReqInt(f, "llama.embedding_length"));
  VERDICT_ASSIGN_OR_RETURN(c.num_layers, GgufReqInt(f, "llama.block_count"));
  VERDICT_ASSIGN_OR_RETURN(c.intermediate_size, GgufReqInt(f, "llama.feed_forward_length"));
  VERDICT_ASSIGN_OR_RETURN(c.num_heads, GgufReqInt(f, "llama.attention.head_count"));
  VERDICT_ASSIGN_OR_RETURN(const std::optional<int64_t> kv,
                           GgufOptInt(f, "llama.attention.head_count_kv"));
  c.num_kv_heads = kv.value_or(c.num_heads);
  VERDICT_ASSIGN_OR_RETURN(const std::optional<int64_t> key_len,
                           GgufOptInt(f, "llama.attention.key_length"));
  VERDICT_ASSIGN_OR_RETURN(const std::optional<int64_t> value_len,
                           GgufOptInt(f, "llama.attention.value_length"));
  if (key_len.has_value()) {
    c.head_dim = *key_len;
  } else if (c.num_heads > 0) {
    c.head_dim = c.hidden_size / c.num_heads;
  }
  if (value_len.has_value() && key_len.has_value() && *value_len != *key_len) {
    return absl::UnimplementedError(absl::StrCat("llama.attention.value_length ", *value_len,
                                                 " differs from key_length ", *key_len));
  }
  VERDICT_ASSIGN_OR_RETURN(const std::optional<int64_t> rot,
                           GgufOptInt(f, "llama.rope.dimension_count"));
  if (rot.has_value() && *rot != c.head_dim) {
    return absl::UnimplementedError(absl::StrCat("llama.rope.dimension_count ", *rot,
                                                 " differs from the head dimension ", c.head_dim,
                                                 " (partial rotary embeddings)"));
  }
  VERDICT_ASSIGN_OR_RETURN(const std::optional<double> eps,
                           GgufOptFloat(f, "llama.attention.layer_norm_rms_epsilon"));
  if (!eps.has_value()) {
    return Invalid("llama.attention.layer_norm_rms_epsilon", "missing required GGUF metadata");
  }
  c.rms_norm_eps = static_cast<float>(*eps);
  VERDICT_ASSIGN_OR_RETURN(const std::optional<double> theta,
                           GgufOptFloat(f, "llama.rope.freq_base"));
  c.rope_theta = static_cast<float>(theta.value_or(10000.0));

  // Vocabulary size: metadata, else the token list, else the embedding table.
  VERDICT_ASSIGN_OR_RETURN(const std::optional<int64_t> vocab, GgufOptInt(f, "llama.vocab_size"));
  if (vocab.has_value()) {
    c.vocab_size = *vocab;
  } else if (const GgufValue* tokens = f.FindMetadata("tokenizer.ggml.tokens");
             tokens != nullptr && tokens->is_array()) {
    c.vocab_size = static_cast<int64_t>(tokens->array_size());
  } else if (const WeightTensor* emb = f.Find("token_embd.weight");
             emb != nullptr && emb->shape.size() == 2) {
    c.vocab_size = emb->shape[0];
  } else {
    return Invalid("llama.vocab_size",
                   "missing, and neither tokenizer.ggml.tokens nor token_embd.weight gives it");
  }

  // RoPE scaling: none or linear (Llama-3.1 scaling is the rope_freqs.weight tensor).
  if (f.FindMetadata("llama.rope.scaling.type") != nullptr) {
    VERDICT_ASSIGN_OR_RETURN(const std::string type, f.GetString("llama.rope.scaling.type"));
    if (type == "linear") {
      VERDICT_ASSIGN_OR_RETURN(const std::optional<double> factor,
                               GgufOptFloat(f, "llama.rope.scaling.factor"));
      if (!factor.has_value()) {
        return Invalid("llama.rope.scaling.factor", "missing for linear rope scaling");
      }
      c.rope_linear_factor = static_cast<float>(*factor);
    } else if (type != "none") {
      return absl::UnimplementedError(absl::StrCat("llama.rope.scaling.type '", type,
                                                   "' is not supported (supported: none, "
                                                   "linear)"));
    }
  } else {
    VERDICT_ASSIGN_OR_RETURN(const std::optional<double> scale,
                             GgufOptFloat(f, "llama.rope.scale_linear"));  // older files
    if (scale.has_value()) c.rope_linear_factor = static_cast<float>(*scale);
  }

  c.tie_word_embeddings = f.Find("output.weight") == nullptr;
  c.attention_bias = f.Find("blk.0.attn_q.bias") != nullptr;
  c.mlp_bias = f.Find("blk.0.ffn_up.bias") != nullptr;

  VERDICT_ASSIGN_OR_RETURN(const std::optional<int64_t> bos,
                           GgufOptInt(f, "tokenizer.ggml.bos_token_id"));
  c.bos_token_id = bos.value_or(-1);
  for (const char* key : {"tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id",
                          "tokenizer.ggml.eom_token_id"}) {
    VERDICT_ASSIGN_OR_RETURN(const std::optional<int64_t> id, GgufOptInt(f, key));
    if (!id.has_value()) continue;
    bool seen = false;
    for (int64_t e : c.eos_token_ids) seen = seen || e == *id;
    if (!seen) c.eos_token_ids.push_back(*id);
  }

  VERDICT_ASSIGN_OR_RETURN(const std::optional<int64_t> file_type,
                           GgufOptInt(f, "general.file_type"));
  if (file_type.has_value()) {
    switch (*file_type) {
      case 0: c.torch_dtype = "float32"; break;
      case 1: c.torch_dtype = "float16"; break;
      case 2: c.torch_dtype = "q4_0"; break;
      case 3: c.torch_dtype = "q4_1"; break;
      case 7: c.torch_dtype = "q8_0"; break;
      case 8: c.torch_dtype = "q5_0"; break;
      case 9: c.torch_dtype = "q5_1"; break;
      case 14: c.torch_dtype = "q4_k_s"; break;
      case 15: c.torch_dtype = "q4_k_m"; break;
      case 16: c.torch_dtype = "q5_k_s"; break;
      case 17: c.torch_dtype = "q5_k_m"; break;
      case 18: c.torch_dtype = "q6_k"; break;
      case 32: c.torch_dtype = "bfloat16"; break;
      default: break;
    }
  }

  VERDICT_RETURN_IF_ERROR(Validate(c, kGgufNames, /*check_hidden_split=*/!key_len.has_value()));
  return c;
}

}  // namespace verdict::engine
