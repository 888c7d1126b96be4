// SPDX-License-Identifier: Apache-2.0
#include "engine/model.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/rope.h"
#include "engine/weight_uploader.h"

namespace verdict::engine {

struct ModelSlice::Layer {
  std::unique_ptr<DeviceWeight> attn_norm, q, k, v, o, q_bias, k_bias, v_bias, o_bias;
  std::unique_ptr<DeviceWeight> mlp_norm, gate, up, down, gate_bias, up_bias, down_bias;
  // Backend::PrefersFusedProjections: q|k|v and gate|up stacked (then q/k/v and gate/up are null).
  std::unique_ptr<DeviceWeight> qkv, gate_up;
};

namespace {

// Tensor names in the two checkpoint families.
struct Names {
  bool gguf;
  std::string Embedding() const { return gguf ? "token_embd.weight" : "model.embed_tokens.weight"; }
  std::string FinalNorm() const { return gguf ? "output_norm.weight" : "model.norm.weight"; }
  std::string LmHead() const { return gguf ? "output.weight" : "lm_head.weight"; }
  std::string Layer(int64_t i, const char* hf, const char* gguf_name, const char* suffix) const {
    return gguf ? absl::StrCat("blk.", i, ".", gguf_name, ".", suffix)
                : absl::StrCat("model.layers.", i, ".", hf, ".", suffix);
  }
};

using Part = WeightPart;

absl::Status ValidateConfig(const LlamaConfig& c) {
  if (c.vocab_size <= 0 || c.hidden_size <= 0 || c.intermediate_size <= 0 || c.num_layers <= 0 ||
      c.num_heads <= 0 || c.num_kv_heads <= 0 || c.head_dim <= 0) {
    return absl::InvalidArgumentError("model config has a non-positive size");
  }
  if (c.num_heads % c.num_kv_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat("num_heads ", c.num_heads,
                                                   " is not a multiple of num_kv_heads ", c.num_kv_heads));
  }
  return absl::OkStatus();
}

// Returns `error` once the backend has finished the work enqueued so far (it may read host memory
// of this Forward() call).
absl::Status FailAfterSync(Backend* backend, absl::Status error) {
  backend->Synchronize().IgnoreError();
  return error;
}

}  // namespace

ModelSlice::ModelSlice(const LlamaConfig& config, int64_t layer_begin, int64_t layer_end,
                       Backend* backend)
    : config_(config), layer_begin_(layer_begin), layer_end_(layer_end), backend_(backend) {}

ModelSlice::~ModelSlice() = default;

absl::StatusOr<std::unique_ptr<ModelSlice>> ModelSlice::Create(const LlamaConfig& config,
                                                               const WeightSource& weights,
                                                               SliceRange range, Backend* backend) {
  return Create(config, weights, range, backend, TensorParallelConfig{});
}

absl::StatusOr<std::unique_ptr<ModelSlice>> ModelSlice::Create(const LlamaConfig& config,
                                                               const WeightSource& weights,
                                                               SliceRange range, Backend* backend,
                                                               const TensorParallelConfig& tp) {
  VERDICT_RETURN_IF_ERROR(ValidateConfig(config));
  const int64_t end = range.layer_end < 0 ? config.num_layers : range.layer_end;
  if (range.layer_begin < 0 || range.layer_begin >= end || end > config.num_layers) {
    return absl::InvalidArgumentError(absl::StrCat("invalid layer range [", range.layer_begin, ", ",
                                                   end, ") for a model of ", config.num_layers,
                                                   " layers"));
  }
  const int world = tp.comm == nullptr ? 1 : tp.comm->size();
  const int rank = tp.comm == nullptr ? 0 : tp.comm->rank();
  for (const auto& [what, count] : {std::pair<const char*, int64_t>{"num_heads", config.num_heads},
                                    {"num_kv_heads", config.num_kv_heads},
                                    {"intermediate_size", config.intermediate_size}}) {
    if (count % world != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, " ", count, " is not divisible by the tensor-parallel size ", world,
                       " (every rank must hold an equal share)"));
    }
  }
  std::unique_ptr<ModelSlice> slice(new ModelSlice(config, range.layer_begin, end, backend));
  slice->comm_ = tp.comm;
  slice->tp_rank_ = rank;
  slice->tp_size_ = world;
  slice->local_heads_ = config.num_heads / world;
  slice->local_kv_heads_ = config.num_kv_heads / world;
  slice->local_intermediate_ = config.intermediate_size / world;
  if (tp.comm != nullptr) {
    VERDICT_ASSIGN_OR_RETURN(slice->agreement_buffer_, backend->Allocate(sizeof(float)));
  }
  const Names names{weights.Format() == "gguf"};
  const LlamaConfig& c = config;
  const int64_t q_dim = c.num_heads * c.head_dim;
  const int64_t kv_dim = c.num_kv_heads * c.head_dim;
  // This rank's rows of q (heads), k/v (kv heads) and gate/up (intermediate), and the matching
  // columns of o and down (whole ranges without tensor parallelism).
  const int64_t local_q = slice->local_heads_ * c.head_dim;
  const int64_t local_kv = slice->local_kv_heads_ * c.head_dim;
  const int64_t local_i = slice->local_intermediate_;
  const Part q_rows = Part::Rows(rank * local_q, local_q);
  const Part kv_rows = Part::Rows(rank * local_kv, local_kv);
  const Part i_rows = Part::Rows(rank * local_i, local_i);
  const Part q_cols = Part::Cols(rank * local_q, local_q);
  const Part kv_cols = Part::Cols(rank * local_kv, local_kv);
  const Part i_cols = Part::Cols(rank * local_i, local_i);
  WeightUploader up(weights, backend, config, &slice->owned_weight_bytes_);

  std::vector<float> freq_divisors;
  if (const WeightTensor* rf = weights.Find("rope_freqs.weight"); rf != nullptr) {
    if (rf->dtype != DType::kF32) return absl::InvalidArgumentError("rope_freqs.weight must be f32");
    const float* f = reinterpret_cast<const float*>(rf->data);
    freq_divisors.assign(f, f + rf->num_elements());
  }
  VERDICT_ASSIGN_OR_RETURN(slice->rope_, ComputeRopeParams(c, freq_divisors));

  // The embedding and the norms are replicated on every rank. The LM head is split by vocabulary
  // rows (vocab-parallel): with a 128k vocabulary it is as big as several layers, and each rank's
  // share of the logits is summarized where it is computed; only the summaries (or, when whole
  // rows are asked for, the rows) are combined across ranks (see Forward).
  slice->vocab_begin_ = rank * c.vocab_size / world;
  slice->local_vocab_ = (rank + 1) * c.vocab_size / world - slice->vocab_begin_;
  const Part vocab_rows = Part::Rows(slice->vocab_begin_, slice->local_vocab_);
  if (slice->is_first()) {
    VERDICT_ASSIGN_OR_RETURN(slice->embedding_, up.Get(names.Embedding(), c.vocab_size, c.hidden_size));
  }
  for (int64_t i = slice->layer_begin_; i < end; ++i) {
    auto layer = std::make_unique<Layer>();
    auto name = [&](const char* hf, const char* gguf, const char* suffix = "weight") {
      return names.Layer(i, hf, gguf, suffix);
    };
    VERDICT_ASSIGN_OR_RETURN(layer->attn_norm, up.Get(name("input_layernorm", "attn_norm"), 1, c.hidden_size));
    const std::string q_name = name("self_attn.q_proj", "attn_q");
    const std::string k_name = name("self_attn.k_proj", "attn_k");
    const std::string v_name = name("self_attn.v_proj", "attn_v");
    if (backend->PrefersFusedProjections()) {
      VERDICT_ASSIGN_OR_RETURN(layer->qkv, up.GetStacked({{q_name, q_dim, q_rows},
                                                          {k_name, kv_dim, kv_rows},
                                                          {v_name, kv_dim, kv_rows}},
                                                         c.hidden_size));
    }
    if (layer->qkv == nullptr) {
      VERDICT_ASSIGN_OR_RETURN(layer->q, up.Get(q_name, q_dim, c.hidden_size, q_rows, WeightUse::kProjection));
      VERDICT_ASSIGN_OR_RETURN(layer->k, up.Get(k_name, kv_dim, c.hidden_size, kv_rows, WeightUse::kProjection));
      VERDICT_ASSIGN_OR_RETURN(layer->v, up.Get(v_name, kv_dim, c.hidden_size, kv_rows, WeightUse::kProjection));
    }
    VERDICT_ASSIGN_OR_RETURN(layer->o, up.Get(name("self_attn.o_proj", "attn_output"), c.hidden_size, q_dim, q_cols, WeightUse::kProjection));
    VERDICT_ASSIGN_OR_RETURN(layer->q_bias, up.GetOptional(name("self_attn.q_proj", "attn_q", "bias"), 1, q_dim, q_cols));
    VERDICT_ASSIGN_OR_RETURN(layer->k_bias, up.GetOptional(name("self_attn.k_proj", "attn_k", "bias"), 1, kv_dim, kv_cols));
    VERDICT_ASSIGN_OR_RETURN(layer->v_bias, up.GetOptional(name("self_attn.v_proj", "attn_v", "bias"), 1, kv_dim, kv_cols));
    VERDICT_ASSIGN_OR_RETURN(layer->o_bias, up.GetOptional(name("self_attn.o_proj", "attn_output", "bias"), 1, c.hidden_size));
    VERDICT_ASSIGN_OR_RETURN(layer->mlp_norm, up.Get(name("post_attention_layernorm", "ffn_norm"), 1, c.hidden_size));
    const std::string gate_name = name("mlp.gate_proj", "ffn_gate");
    const std::string up_name = name("mlp.up_proj", "ffn_up");
    if (backend->PrefersFusedProjections()) {
      VERDICT_ASSIGN_OR_RETURN(layer->gate_up,
                               up.GetStacked({{gate_name, c.intermediate_size, i_rows},
                                              {up_name, c.intermediate_size, i_rows}},
                                             c.hidden_size));
    }
    if (layer->gate_up == nullptr) {
      VERDICT_ASSIGN_OR_RETURN(layer->gate, up.Get(gate_name, c.intermediate_size, c.hidden_size, i_rows, WeightUse::kProjection));
      VERDICT_ASSIGN_OR_RETURN(layer->up, up.Get(up_name, c.intermediate_size, c.hidden_size, i_rows, WeightUse::kProjection));
    }
    VERDICT_ASSIGN_OR_RETURN(layer->down, up.Get(name("mlp.down_proj", "ffn_down"), c.hidden_size, c.intermediate_size, i_cols, WeightUse::kProjection));
    VERDICT_ASSIGN_OR_RETURN(layer->gate_bias, up.GetOptional(name("mlp.gate_proj", "ffn_gate", "bias"), 1, c.intermediate_size, i_cols));
    VERDICT_ASSIGN_OR_RETURN(layer->up_bias, up.GetOptional(name("mlp.up_proj", "ffn_up", "bias"), 1, c.intermediate_size, i_cols));
    VERDICT_ASSIGN_OR_RETURN(layer->down_bias, up.GetOptional(name("mlp.down_proj", "ffn_down", "bias"), 1, c.hidden_size));
    slice->layers_.push_back(std::move(layer));
  }
  if (slice->is_last()) {
    VERDICT_ASSIGN_OR_RETURN(slice->final_norm_, up.Get(names.FinalNorm(), 1, c.hidden_size));
    const bool has_head = weights.Find(names.LmHead()) != nullptr;
    if (has_head) {
      VERDICT_ASSIGN_OR_RETURN(slice->lm_head_,
                               up.Get(names.LmHead(), c.vocab_size, c.hidden_size, vocab_rows));
      slice->lm_head_view_ = slice->lm_head_.get();
    } else if (c.tie_word_embeddings || names.gguf) {  // GGUF omits output.weight when tied
      if (slice->embedding_ != nullptr && slice->local_vocab_ == c.vocab_size) {
        slice->lm_head_view_ = slice->embedding_.get();
      } else {
        VERDICT_ASSIGN_OR_RETURN(slice->lm_head_,
                                 up.Get(names.Embedding(), c.vocab_size, c.hidden_size, vocab_rows));
        slice->lm_head_view_ = slice->lm_head_.get();
      }
    } else {
      return absl::NotFoundError(absl::StrCat("checkpoint has no tensor '", names.LmHead(),
                                              "' and tie_word_embeddings is false"));
    }
  }
  slice->weight_bytes_ = up.bytes();
  slice->streamed_weight_bytes_ = up.bytes();
  if (slice->embedding_ != nullptr && slice->lm_head_view_ != slice->embedding_.get()) {
    slice->streamed_weight_bytes_ -= slice->embedding_->size_bytes();
  }
  slice->num_parameters_ = up.params();
  return slice;
}

absl::StatusOr<std::unique_ptr<KvCache>> ModelSlice::NewKvCache(int64_t capacity) const {
  if (capacity > config_.max_position_embeddings) {
    return absl::InvalidArgumentError(absl::StrCat("KV cache capacity ", capacity,
                                                   " exceeds the model's context length ",
                                                   config_.max_position_embeddings));
  }
  return KvCache::Create(backend_,
                         KvShape{layer_end_ - layer_begin_, local_kv_heads_, config_.head_dim},
                         capacity);
}

absl::Status ModelSlice::SetHiddenProbe(absl::Span<const float> weight) {
  if (!is_last()) {
    return absl::FailedPreconditionError("only the last slice has final hidden states to probe");
  }
  if (static_cast<int64_t>(weight.size()) != config_.hidden_size) {
    return absl::InvalidArgumentError(absl::StrCat("a hidden-state probe of ", weight.size(),
                                                   " values for hidden size ", config_.hidden_size));
  }
  for (float v : weight) {
    if (!std::isfinite(v)) return absl::InvalidArgumentError("the hidden-state probe has a non-finite value");
  }
  auto bytes = std::make_unique<std::vector<uint8_t>>(weight.size() * sizeof(float));
  std::memcpy(bytes->data(), weight.data(), bytes->size());
  WeightTensor tensor;
  tensor.name = "hidden_probe";
  tensor.dtype = DType::kF32;
  tensor.shape = {config_.hidden_size};
  tensor.data = bytes->data();
  tensor.nbytes = bytes->size();
  VERDICT_ASSIGN_OR_RETURN(std::unique_ptr<DeviceWeight> probe,
                           backend_->UploadWeight(tensor, 1, config_.hidden_size));
  probe_.reset();  // before the bytes an old probe may view
  probe_bytes_ = std::move(bytes);
  probe_ = std::move(probe);
  return absl::OkStatus();
}

const float* ModelSlice::Zeros(int64_t count) {
  if (static_cast<int64_t>(zeros_host_.size()) < count) zeros_host_.assign(count, 0.0f);
  return zeros_host_.data();
}

bool ModelSlice::stacked_projections() const {
  return !layers_.empty() && layers_.front()->qkv != nullptr && layers_.front()->gate_up != nullptr;
}

bool ModelSlice::HiddenProbeIs(absl::Span<const float> weight) const {
  return probe_ != nullptr && probe_bytes_->size() == weight.size() * sizeof(float) &&
         std::memcmp(probe_bytes_->data(), weight.data(), probe_bytes_->size()) == 0;
}

absl::Status ModelSlice::ValidateOutputs(const ForwardBatch& batch, int64_t total_tokens,
                                         int64_t* output_rows) const {
  switch (batch.outputs) {
    case ForwardBatch::Outputs::kAll:
      *output_rows = total_tokens;
      break;
    case ForwardBatch::Outputs::kLastOfEachSequence:
      *output_rows = static_cast<int64_t>(batch.sequences.size());
      break;
    case ForwardBatch::Outputs::kSelectedRows:
      for (size_t i = 0; i < batch.selected_rows.size(); ++i) {
        const int32_t row = batch.selected_rows[i];
        if (row < 0 || row >= total_tokens || (i > 0 && row <= batch.selected_rows[i - 1])) {
          return absl::InvalidArgumentError(absl::StrCat(
              "selected output rows must be strictly ascending rows of the batch of ", total_tokens,
              "; entry ", i, " is ", row));
        }
      }
      *output_rows = static_cast<int64_t>(batch.selected_rows.size());
      break;
  }
  if (!is_last()) return absl::OkStatus();
  const OutputContents& want = batch.contents;
  if (want.summaries) {
    if (config_.vocab_size > kMaxSummarizedVocab) {
      return absl::InvalidArgumentError(absl::StrCat("logits summaries support vocabularies up to ",
                                                     kMaxSummarizedVocab, " tokens"));
    }
    if (!want.summary_tokens.empty() &&
        static_cast<int64_t>(want.summary_tokens.size()) != *output_rows) {
      return absl::InvalidArgumentError(absl::StrCat(want.summary_tokens.size(),
                                                     " summary tokens for ", *output_rows,
                                                     " output rows"));
    }
    for (int32_t id : want.summary_tokens) {
      if (id < -1 || id >= config_.vocab_size) {
        return absl::InvalidArgumentError(
            absl::StrCat("summary token ", id, " is out of range [-1, ", config_.vocab_size, ")"));
      }
    }
  }
  if (want.probe && probe_ == nullptr) {
    return absl::InvalidArgumentError("a hidden-state probe was asked for but none is set");
  }
  if (!want.sampled_requests.empty()) {
    VERDICT_RETURN_IF_ERROR(ValidateSampledRequests(want, *output_rows));
  }
  return absl::OkStatus();
}

absl::Status ModelSlice::ValidateSampledRequests(const OutputContents& want, int64_t output_rows) const {
  const int64_t vocab = config_.vocab_size;
  if (vocab > kMaxSummarizedVocab) {
    return absl::InvalidArgumentError(absl::StrCat("sampled decisions support vocabularies up to ",
                                                   kMaxSummarizedVocab, " tokens"));
  }
  if (static_cast<int64_t>(want.sampled_requests.size()) != output_rows) {
    return absl::InvalidArgumentError(absl::StrCat(want.sampled_requests.size(),
                                                   " sampled-decision requests for ", output_rows,
                                                   " output rows"));
  }
  if (want.proposal_ids.size() != want.proposal_probs.size()) {
    return absl::InvalidArgumentError(absl::StrCat("proposal arrays of ", want.proposal_ids.size(),
                                                   " ids and ", want.proposal_probs.size(),
                                                   " probabilities"));
  }
  const int64_t entries = static_cast<int64_t>(want.proposal_ids.size());
  for (size_t i = 0; i < want.sampled_requests.size(); ++i) {
    const math::SampledRowRequest& r = want.sampled_requests[i];
    absl::Status status = ValidateSamplingParams(SamplingParamsOf(r));
    if (status.ok() && (r.token < -1 || r.token >= vocab)) {
      status = absl::InvalidArgumentError(
          absl::StrCat("token ", r.token, " is out of range [-1, ", vocab, ")"));
    }
    if (status.ok() && !(r.sample_uniform >= 0.0 && r.sample_uniform < 1.0)) {
      status = absl::InvalidArgumentError(
          absl::StrCat("the uniform draw ", r.sample_uniform, " is not in [0, 1)"));
    }
    if (status.ok() && (r.proposal_begin < 0 || r.proposal_count < 0 ||
                        int64_t{r.proposal_begin} + r.proposal_count > entries)) {
      status = absl::InvalidArgumentError(absl::StrCat("proposal entries [", r.proposal_begin, ", +",
                                                       r.proposal_count, ") are outside the ",
                                                       entries, " given"));
    }
    for (int32_t j = r.proposal_begin; status.ok() && j < r.proposal_begin + r.proposal_count; ++j) {
      const int32_t id = want.proposal_ids[j];
      const float p = want.proposal_probs[j];
      if (id < 0 || id >= vocab || (j > r.proposal_begin && id <= want.proposal_ids[j - 1]) ||
          !std::isfinite(p) || p < 0) {
        status = absl::InvalidArgumentError(absl::StrCat(
            "proposal entry ", j - r.proposal_begin, " (id ", id, ", p ", p,
            ") is not a probability of an id in the vocabulary, ids strictly ascending"));
      }
    }
    if (!status.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("sampled-decision request ", i, ": ", status.message()));
    }
  }
  return absl::OkStatus();
}

absl::Status ModelSlice::Validate(const ForwardBatch& batch, int64_t* total_tokens) const {
  if (batch.sequences.empty()) return absl::InvalidArgumentError("empty batch");
  int64_t total = 0;
  for (size_t s = 0; s < batch.sequences.size(); ++s) {
    const SequenceInput& seq = batch.sequences[s];
    if (seq.cache == nullptr || seq.num_tokens <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("sequence ", s, " of the batch has no cache or no new tokens"));
    }
    const KvShape& shape = seq.cache->shape();
    if (shape.num_layers != layer_end_ - layer_begin_ || shape.num_kv_heads != local_kv_heads_ ||
        shape.head_dim != config_.head_dim) {
      return absl::InvalidArgumentError(
          absl::StrCat("sequence ", s, " has a KV cache made for another model slice"));
    }
    if (seq.cache->length() + seq.num_tokens > config_.max_position_embeddings) {
      return absl::InvalidArgumentError(absl::StrCat(
          "sequence ", s, " would reach ", seq.cache->length() + seq.num_tokens,
          " positions, over the model's context length ", config_.max_position_embeddings));
    }
    VERDICT_RETURN_IF_ERROR(seq.cache->CheckRoom(seq.num_tokens));
    for (size_t other = 0; other < s; ++other) {
      if (batch.sequences[other].cache == seq.cache) {
        return absl::InvalidArgumentError("the same KV cache appears twice in one batch");
      }
    }
    total += seq.num_tokens;
  }
  if (is_first()) {
    if (static_cast<int64_t>(batch.token_ids.size()) != total) {
      return absl::InvalidArgumentError(absl::StrCat("batch has ", batch.token_ids.size(),
                                                     " token ids for ", total, " positions"));
    }
    for (int32_t id : batch.token_ids) {
      if (id < 0 || id >= config_.vocab_size) {
        return absl::InvalidArgumentError(
            absl::StrCat("token id ", id, " is out of range [0, ", config_.vocab_size, ")"));
      }
    }
  } else if (static_cast<int64_t>(batch.activations.size()) != total * config_.hidden_size) {
    return absl::InvalidArgumentError(absl::StrCat("batch has ", batch.activations.size(),
                                                   " activation values, expected ", total, " x ",
                                                   config_.hidden_size));
  }
  *total_tokens = total;
  return absl::OkStatus();
}

absl::Status ModelSlice::EnsureWorkspace(int64_t tokens) {
  if (tokens <= workspace_tokens_) return absl::OkStatus();
  const LlamaConfig& c = config_;
  // x, normed, gathered, q, attn, k, v, gate, up per token (this rank's heads and columns), and with
  // tensor parallelism the partial output projections that are all-reduced.
  const int64_t per_token = (comm_ != nullptr ? 4 : 3) * c.hidden_size +
                            2 * local_heads_ * c.head_dim + 2 * local_kv_heads_ * c.head_dim +
                            2 * local_intermediate_;
  VERDICT_ASSIGN_OR_RETURN(workspace_, backend_->Allocate(tokens * per_token * sizeof(float)));
  workspace_tokens_ = tokens;
  return absl::OkStatus();
}

absl::Status ModelSlice::EnsureLogitsBuffer(int64_t rows) {
  if (rows <= logits_rows_) return absl::OkStatus();
  // Per row: the logits (this rank's share, and with a split head the whole row assembled), a
  // summary per rank, the probe's value and a sampled decision.
  const int64_t assembled = local_vocab_ < config_.vocab_size ? config_.vocab_size : 0;
  const int64_t per_row =
      local_vocab_ + assembled + tp_size_ * kLogitSummaryWidth + 1 + math::kSampledDecisionWidth;
  VERDICT_ASSIGN_OR_RETURN(logits_buffer_, backend_->Allocate(rows * per_row * sizeof(float)));
  logits_rows_ = rows;
  return absl::OkStatus();
}

void ModelSlice::DecideSampledOnHost(const OutputContents& want, absl::Span<const float> rows,
                                     ForwardResult* result) const {
  const int64_t vocab = config_.vocab_size;
  if (want.sampled_supports) result->support_offsets.assign(1, 0);
  std::vector<float> probs;
  for (size_t i = 0; i < result->output_rows.size(); ++i) {
    const size_t before = result->support_ids.size();
    SampledDecision d = DecideSampledRow(
        rows.subspan(i * vocab, vocab), want.sampled_requests[i], want.proposal_ids,
        want.proposal_probs, want.sampled_supports ? &result->support_ids : nullptr,
        want.sampled_supports ? &result->support_probs : &probs);
    probs.clear();
    if (want.sampled_supports) {
      d.support_size = static_cast<int64_t>(result->support_ids.size() - before);
      result->support_offsets.push_back(static_cast<int64_t>(result->support_ids.size()));
    }
    result->sampled.push_back(d);
  }
}

absl::Status ModelSlice::CopySupports(ForwardResult* result) {
  // A second round of copies: only now are the supports' lengths known on the host.
  const int64_t vocab = config_.vocab_size;
  const int64_t width = math::SupportRowWidth(vocab);
  const int64_t m = static_cast<int64_t>(result->sampled.size());
  result->support_offsets.assign(1, 0);
  for (const SampledDecision& d : result->sampled) {
    if (d.support_size < 0 || d.support_size > vocab) {
      return absl::InternalError(absl::StrCat("the backend reported a support of ", d.support_size, " tokens"));
    }
    result->support_offsets.push_back(result->support_offsets.back() + d.support_size);
  }
  const int64_t total = result->support_offsets.back();
  support_ids_host_.resize(total);
  result->support_probs.resize(total);
  float* rows = static_cast<float*>(supports_buffer_->data());
  for (int64_t i = 0; i < m; ++i) {
    const int64_t n = result->sampled[i].support_size;
    if (n == 0) continue;
    const int64_t at = result->support_offsets[i];
    backend_->CopyToHost(TensorView{rows + i * width, 1, n, width},
                         support_ids_host_.data() + at);
    backend_->CopyToHost(TensorView{rows + i * width + vocab, 1, n, width},
                         result->support_probs.data() + at);
  }
  VERDICT_RETURN_IF_ERROR(backend_->Synchronize());
  result->support_ids.resize(total);
  for (int64_t j = 0; j < total; ++j) result->support_ids[j] = static_cast<int32_t>(support_ids_host_[j]);
  return absl::OkStatus();
}

absl::Status ModelSlice::EnsureSupportsBuffer(int64_t rows) {
  if (rows <= supports_rows_) return absl::OkStatus();
  VERDICT_ASSIGN_OR_RETURN(supports_buffer_,
                           backend_->Allocate(rows * math::SupportRowWidth(config_.vocab_size) * sizeof(float)));
  supports_rows_ = rows;
  return absl::OkStatus();
}

absl::Status ModelSlice::AgreeAcrossRanks(const absl::Status& local) {
  float failed = local.ok() ? 0.0f : 1.0f;
  float failed_ranks = 0.0f;
  TensorView flag{static_cast<float*>(agreement_buffer_->data()), 1, 1, 1};
  backend_->CopyToDevice(&failed, flag);
  absl::Status status = backend_->AllReduceSum(flag, *comm_);
  if (status.ok()) {
    backend_->CopyToHost(flag, &failed_ranks);
    status = backend_->Synchronize();
  } else {
    backend_->Synchronize().IgnoreError();  // `failed` must outlive the copy
  }
  if (status.ok() && failed_ranks == 0.0f) return absl::OkStatus();
  // Start again from no buffers on every rank, so that all ranks keep making the same decision
  // about growing them (and so agreeing) in the next Forward().
  workspace_.reset();
  workspace_tokens_ = 0;
  logits_buffer_.reset();
  logits_rows_ = 0;
  supports_buffer_.reset();
  supports_rows_ = 0;
  if (!status.ok()) return status;
  if (!local.ok()) return local;
  return absl::ResourceExhaustedError(
      absl::StrCat(static_cast<int>(failed_ranks),
                   " other rank(s) of the tensor-parallel group could not allocate their "
                   "activation buffers"));
}

absl::Status ModelSlice::Forward(const ForwardBatch& batch, ForwardResult* result) {
  int64_t n = 0;
  int64_t output_rows = 0;
  VERDICT_RETURN_IF_ERROR(Validate(batch, &n));  // same outcome on every rank
  VERDICT_RETURN_IF_ERROR(ValidateOutputs(batch, n, &output_rows));
  const bool supports = is_last() && batch.contents.sampled_supports && !batch.contents.sampled_requests.empty();
  const bool grows = n > workspace_tokens_ || (is_last() && output_rows > logits_rows_) ||
                     (supports && output_rows > supports_rows_);
  absl::Status prepared = EnsureWorkspace(n);
  if (prepared.ok() && is_last()) prepared = EnsureLogitsBuffer(output_rows);
  if (prepared.ok() && supports) prepared = EnsureSupportsBuffer(output_rows);
  if (comm_ != nullptr && grows) {
    // An allocation can fail on one rank only; the others would then wait in the first all-reduce
    // forever. Ranks grow their buffers at the same calls (same batches), so they agree exactly
    // then: one extra one-float all-reduce per growth, none in the steady state.
    VERDICT_RETURN_IF_ERROR(AgreeAcrossRanks(prepared));
  } else {
    VERDICT_RETURN_IF_ERROR(prepared);
  }
  const LlamaConfig& c = config_;
  const int64_t q_dim = local_heads_ * c.head_dim;
  const int64_t kv_dim = local_kv_heads_ * c.head_dim;

  float* base = static_cast<float*>(workspace_->data());
  auto carve = [&](int64_t cols) {
    TensorView view{base, n, cols, cols};
    base += n * cols;
    return view;
  };
  TensorView x = carve(c.hidden_size);
  TensorView normed = carve(c.hidden_size);
  TensorView gathered = carve(c.hidden_size);
  // q, k and v share one region: side by side in each row when one stacked product writes them,
  // one after the other otherwise; gate and up likewise.
  TensorView qkv = carve(q_dim + 2 * kv_dim);
  TensorView attn = carve(q_dim);
  TensorView gate_up = carve(2 * local_intermediate_);
  auto part = [n](TensorView region, bool side_by_side, int64_t offset, int64_t width) {
    return side_by_side ? region.Cols(offset, width)
                        : TensorView{region.data + n * offset, n, width, width};
  };
  TensorView partial = comm_ != nullptr ? carve(c.hidden_size) : TensorView{};
  // Sums this rank's partial output projection over the ranks; its add to the residual stream is
  // left pending and fused into the next norm (without tensor parallelism the product accumulates
  // into x directly).
  bool pending_partial = false;
  auto project = [&](TensorView in, const DeviceWeight& w) -> absl::Status {
    if (comm_ == nullptr) {
      backend_->MatMul(in, w, x, /*accumulate=*/true);  // residual add fused
      return absl::OkStatus();
    }
    backend_->MatMul(in, w, partial, /*accumulate=*/false);
    VERDICT_RETURN_IF_ERROR(backend_->AllReduceSum(partial, *comm_));
    pending_partial = true;
    return absl::OkStatus();
  };
  // Anything else that reads x first adds the pending partial.
  auto settle = [&] {
    if (pending_partial) backend_->Add(partial, x);
    pending_partial = false;
  };
  auto norm = [&](const DeviceWeight& weight) {
    if (pending_partial) {
      backend_->AddRmsNorm(partial, x, weight, c.rms_norm_eps, normed);
    } else {
      backend_->RmsNorm(x, weight, c.rms_norm_eps, normed);
    }
    pending_partial = false;
  };

  std::vector<int32_t> positions(n);
  std::vector<AttentionSequence> attention_seqs;
  attention_seqs.reserve(batch.sequences.size());
  int64_t row = 0;
  for (const SequenceInput& seq : batch.sequences) {
    attention_seqs.push_back({seq.cache->storage(), row, seq.num_tokens, seq.cache->length()});
    for (int64_t i = 0; i < seq.num_tokens; ++i) {
      positions[row + i] = static_cast<int32_t>(seq.cache->length() + i);
    }
    row += seq.num_tokens;
  }

  if (is_first()) {
    backend_->Embed(*embedding_, batch.token_ids, x);
  } else {
    backend_->CopyToDevice(batch.activations.data(), x);
  }

  for (size_t li = 0; li < layers_.size(); ++li) {
    const Layer& L = *layers_[li];
    norm(*L.attn_norm);
    const bool stacked_qkv = L.qkv != nullptr;
    const TensorView q = part(qkv, stacked_qkv, 0, q_dim);
    const TensorView k = part(qkv, stacked_qkv, q_dim, kv_dim);
    const TensorView v = part(qkv, stacked_qkv, q_dim + kv_dim, kv_dim);
    if (L.qkv != nullptr) {
      backend_->MatMul(normed, *L.qkv, qkv, false);
    } else {
      backend_->MatMul(normed, *L.q, q, false);
      backend_->MatMul(normed, *L.k, k, false);
      backend_->MatMul(normed, *L.v, v, false);
    }
    if (L.q_bias) backend_->AddBias(q, *L.q_bias);
    if (L.k_bias) backend_->AddBias(k, *L.k_bias);
    if (L.v_bias) backend_->AddBias(v, *L.v_bias);
    backend_->RotaryAttention(q, k, v, static_cast<int64_t>(li), attention_seqs, local_heads_,
                              local_kv_heads_, c.head_dim, positions, rope_, attn);
    if (absl::Status s = project(attn, *L.o); !s.ok()) return FailAfterSync(backend_, s);
    if (L.o_bias) {
      settle();
      backend_->AddBias(x, *L.o_bias);  // once, after the sum over ranks
    }

    norm(*L.mlp_norm);
    const bool stacked_mlp = L.gate_up != nullptr;
    const TensorView gate = part(gate_up, stacked_mlp, 0, local_intermediate_);
    const TensorView up = part(gate_up, stacked_mlp, local_intermediate_, local_intermediate_);
    if (L.gate_up != nullptr) {
      backend_->MatMul(normed, *L.gate_up, gate_up, false);
    } else {
      backend_->MatMul(normed, *L.gate, gate, false);
      backend_->MatMul(normed, *L.up, up, false);
    }
    if (L.gate_bias) backend_->AddBias(gate, *L.gate_bias);
    if (L.up_bias) backend_->AddBias(up, *L.up_bias);
    backend_->SiluMul(gate, up, gate);
    if (absl::Status s = project(gate, *L.down); !s.ok()) return FailAfterSync(backend_, s);
    if (L.down_bias) {
      settle();
      backend_->AddBias(x, *L.down_bias);
    }
  }
  settle();

  result->activations.clear();
  result->logits.clear();
  result->hidden.clear();
  result->output_rows.clear();
  result->summaries.clear();
  result->probe.clear();
  result->sampled.clear();
  result->support_offsets.clear();
  result->support_ids.clear();
  result->support_probs.clear();
  const OutputContents& want = batch.contents;
  if (!is_last()) {
    result->activations.resize(n * c.hidden_size);
    backend_->CopyToHost(x, result->activations.data());
  } else {
    switch (batch.outputs) {
      case ForwardBatch::Outputs::kAll:
        for (int64_t r = 0; r < n; ++r) result->output_rows.push_back(static_cast<int32_t>(r));
        break;
      case ForwardBatch::Outputs::kLastOfEachSequence:
        for (const AttentionSequence& s : attention_seqs) {
          result->output_rows.push_back(static_cast<int32_t>(s.row_begin + s.num_tokens - 1));
        }
        break;
      case ForwardBatch::Outputs::kSelectedRows:
        result->output_rows.assign(batch.selected_rows.begin(), batch.selected_rows.end());
        break;
    }
    const int64_t m = static_cast<int64_t>(result->output_rows.size());
    TensorView selected = normed.Rows(0, m);
    if (m == n) {  // every row, in order (selected rows are strictly ascending)
      backend_->RmsNorm(x, *final_norm_, c.rms_norm_eps, normed);
    } else if (m > 0) {
      backend_->GatherRows(x, result->output_rows, gathered.Rows(0, m));
      backend_->RmsNorm(gathered.Rows(0, m), *final_norm_, c.rms_norm_eps, selected);
    }
    const bool split_head = local_vocab_ < c.vocab_size;
    float* out = m > 0 ? static_cast<float*>(logits_buffer_->data()) : nullptr;
    auto carve_out = [&](int64_t cols) {
      TensorView view{out, m, cols, cols};
      out += m * cols;
      return view;
    };
    TensorView local_logits = carve_out(local_vocab_);
    TensorView assembled = carve_out(split_head ? c.vocab_size : 0);
    TensorView summaries = carve_out(tp_size_ * kLogitSummaryWidth);
    TensorView probe = carve_out(1);
    TensorView sampled = carve_out(math::kSampledDecisionWidth);
    const bool want_sampled = !want.sampled_requests.empty();
    // A backend that does not decide the sampled rule where the logits are gets its rows copied to
    // the host, where engine::DecideSampledRow decides (after the step's Synchronize).
    const bool sampled_on_host = want_sampled && !backend_->DecidesSampledRows();
    // Whole rows: with a split head each rank writes its columns of a zeroed [m, vocab] buffer and
    // one all-reduce assembles them (x + 0 is exact). Summaries only: each rank summarizes its
    // columns into its slot of a zeroed [m, ranks x width] buffer, one small all-reduce, and the
    // host merges the ranks' statistics (exact for the argmax; sums merged as in the kernels).
    const bool whole_rows = want.logits || want_sampled || (want.summaries && !split_head);
    TensorView logits = split_head ? assembled : local_logits;
    if (m > 0 && whole_rows) {
      if (split_head) {
        backend_->CopyToDevice(Zeros(m * c.vocab_size), assembled);
        backend_->MatMul(selected, *lm_head_view_, assembled.Cols(vocab_begin_, local_vocab_), false);
        if (absl::Status s = backend_->AllReduceSum(assembled, *comm_); !s.ok()) {
          return FailAfterSync(backend_, s);
        }
      } else {
        backend_->MatMul(selected, *lm_head_view_, logits, false);
      }
    }
    if (m > 0 && want.hidden) {
      result->hidden.resize(m * c.hidden_size);
      backend_->CopyToHost(selected, result->hidden.data());
    }
    if (m > 0 && want.logits) {
      result->logits.resize(m * c.vocab_size);
      backend_->CopyToHost(logits, result->logits.data());
    } else if (m > 0 && sampled_on_host) {
      sampled_rows_host_.resize(m * c.vocab_size);
      backend_->CopyToHost(logits, sampled_rows_host_.data());
    }
    const bool merge_ranks = want.summaries && !whole_rows;
    if (m > 0 && want.summaries) {
      if (!merge_ranks) {
        backend_->SummarizeLogits(logits, want.summary_tokens, summaries.Cols(0, kLogitSummaryWidth));
      } else {
        backend_->MatMul(selected, *lm_head_view_, local_logits, false);
        local_tokens_.clear();
        for (int32_t t : want.summary_tokens) {
          local_tokens_.push_back(t >= vocab_begin_ && t < vocab_begin_ + local_vocab_
                                      ? static_cast<int32_t>(t - vocab_begin_)
                                      : -1);
        }
        backend_->CopyToDevice(Zeros(m * summaries.cols), summaries);
        backend_->SummarizeLogits(local_logits, local_tokens_,
                                  summaries.Cols(tp_rank_ * kLogitSummaryWidth, kLogitSummaryWidth));
        if (absl::Status s = backend_->AllReduceSum(summaries, *comm_); !s.ok()) {
          return FailAfterSync(backend_, s);
        }
      }
      const TensorView written = merge_ranks ? summaries : summaries.Cols(0, kLogitSummaryWidth);
      summary_host_.resize(m * written.cols);
      backend_->CopyToHost(written, summary_host_.data());
    }
    if (m > 0 && want_sampled && !sampled_on_host) {
      const int64_t support_width = math::SupportRowWidth(c.vocab_size);
      const TensorView supports =
          want.sampled_supports
              ? TensorView{static_cast<float*>(supports_buffer_->data()), m, support_width, support_width}
              : TensorView{};
      backend_->DecideSampled(logits, want.sampled_requests, want.proposal_ids, want.proposal_probs,
                              sampled, supports);
      sampled_host_.resize(m * math::kSampledDecisionWidth);
      backend_->CopyToHost(sampled, sampled_host_.data());
    }
    if (m > 0 && want.probe) {
      backend_->MatMul(selected, *probe_, probe, false);
      result->probe.resize(m);
      backend_->CopyToHost(probe, result->probe.data());
    }
  }
  VERDICT_RETURN_IF_ERROR(backend_->Synchronize());
  if (!result->output_rows.empty() && want.summaries) {
    const int64_t m = static_cast<int64_t>(result->output_rows.size());
    const int64_t width = static_cast<int64_t>(summary_host_.size()) / m;
    result->summaries.reserve(m);
    for (int64_t i = 0; i < m; ++i) {
      const int32_t token = want.summary_tokens.empty() ? -1 : want.summary_tokens[i];
      const float* row = summary_host_.data() + i * width;
      if (width == kLogitSummaryWidth) {
        result->summaries.push_back(LogitSummary::FromRow(row, token));
        continue;
      }
      // One summary per rank, in rank order (vocabulary order): merge them.
      math::LogitStats stats = math::EmptyLogitStats();
      float token_logit = std::numeric_limits<float>::quiet_NaN();
      for (int r = 0; r < tp_size_; ++r) {
        const float* part = row + r * kLogitSummaryWidth;
        const int64_t begin = r * c.vocab_size / tp_size_;
        const int64_t end = (r + 1) * c.vocab_size / tp_size_;
        math::MergeLogitStats(stats, math::ReadLogitStats(part, static_cast<int32_t>(begin)));
        if (token >= begin && token < end) token_logit = part[5];
      }
      result->summaries.push_back(LogitSummary::FromStats(stats, token, token_logit));
    }
  }
  if (!result->output_rows.empty() && !want.sampled_requests.empty() &&
      !backend_->DecidesSampledRows()) {
    DecideSampledOnHost(want, want.logits ? result->logits : sampled_rows_host_, result);
  } else if (!result->output_rows.empty() && !want.sampled_requests.empty()) {
    for (size_t i = 0; i < result->output_rows.size(); ++i) {
      result->sampled.push_back(
          SampledDecision::FromRow(sampled_host_.data() + i * math::kSampledDecisionWidth));
    }
    if (want.sampled_supports) VERDICT_RETURN_IF_ERROR(CopySupports(result));
  }
  for (const SequenceInput& seq : batch.sequences) seq.cache->Advance(seq.num_tokens);
  return absl::OkStatus();
}

}  // namespace verdict::engine
