// SPDX-License-Identifier: Apache-2.0
// A Llama-family decoder slice: layers [layer_begin, layer_end) of a model, plus the token
// embedding when the slice starts at layer 0 and the final norm + LM head when it ends at the last
// layer. A whole model is the slice [0, num_layers). One Forward() runs a ragged batch: several
// sequences, each with any number of new tokens on top of its KV cache (prefill, decode and
// verification blocks alike), sharing every matrix product across all tokens of the batch.
//
// Tensor parallelism (Megatron-style, optional): with a Communicator of W ranks, the slice of rank r
// holds attention heads and kv heads [r*H/W, (r+1)*H/W) and MLP intermediate columns
// [r*I/W, (r+1)*I/W); each layer all-reduces twice (after the attention output projection and after
// the MLP down projection). The last slice's LM head is split by vocabulary rows: logits
// summaries are merged across ranks with one small all-reduce, whole logits rows assembled with one
// all-reduce of the rows. Every rank of the group runs the same Forward() calls on its own thread
// and gets the same result (engine/tensor_parallel.h drives such a group).
//
// Weights are immutable after Create(); per-sequence state lives in KvCache objects. A ModelSlice
// and its caches are used from one thread at a time (the engine thread).
#ifndef VERDICT_ENGINE_MODEL_H_
#define VERDICT_ENGINE_MODEL_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/backend.h"
#include "engine/communicator.h"
#include "engine/io/weight_source.h"
#include "engine/kv_cache.h"
#include "engine/model_config.h"
#include "engine/sampler.h"

namespace verdict::engine {

struct SliceRange {
  int64_t layer_begin = 0;
  int64_t layer_end = -1;  // -1: up to the last layer
};


// What the last slice returns for each output row. The full logits row is what scoring, sampling
// with top-k/top-p and the KL rule need; greedy decisions, log-probabilities of given tokens,
// entropies and the judge's dot product need only the summaries and the probe, which the backend
// computes where the logits are (on a GPU: a few bytes per row instead of vocab_size floats).
struct OutputContents {
  bool logits = true;  // ForwardResult::logits
  bool hidden = true;  // ForwardResult::hidden (after the final norm)
  bool summaries = false;  // ForwardResult::summaries
  // The token whose logit (and so log-probability) each summary reports: one per output row, -1
  // for none; empty: none for any row.
  absl::Span<const int32_t> summary_tokens;
  // ForwardResult::probe: hidden . w for the probe vector w set with ModelSlice::SetHiddenProbe
  // (the judge head's weight), so the hidden states need not leave the backend either.
  bool probe = false;
  // ForwardResult::sampled: the sampled verification rule's numbers (Backend::DecideSampled), one
  // request per output row, whose proposals index the flat id/probability arrays (each proposal's
  // ids strictly ascending); empty: none. With a vocab-parallel LM head the ranks assemble whole
  // rows first (one all-reduce of the logits), as for `logits`.
  absl::Span<const math::SampledRowRequest> sampled_requests;
  absl::Span<const int32_t> proposal_ids;
  absl::Span<const float> proposal_probs;
  // With sampled_requests: ForwardResult::support_*: each row's distribution as the tokens with
  // p > 0 (a sampled draft's proposal), compacted where the logits are.
  bool sampled_supports = false;
};

// One forward pass over several sequences. One definition for the three kinds of caches a batch can
// name: a model slice's (KvCache: ForwardBatch), a tensor-parallel group's (TensorParallelKvCache:
// TensorParallelBatch) and a slice runner's (SequenceCache: RunnerBatch).
enum class BatchOutputs { kAll, kLastOfEachSequence, kSelectedRows };
template <typename Cache>
struct BatchOf {
  // One sequence of a batch: `num_tokens` new positions appended after cache->length().
  struct Sequence {
    Cache* cache = nullptr;
    int64_t num_tokens = 0;
  };
  std::vector<Sequence> sequences;
  // First slice: the new token ids of all sequences, concatenated in sequence order.
  absl::Span<const int32_t> token_ids;
  // Other slices: incoming activations [total tokens, hidden_size], row-major.
  absl::Span<const float> activations;
  // Last slice: which batch rows need outputs. kAll for scoring, kLastOfEachSequence for plain
  // generation (saves the LM head on prompt tokens), kSelectedRows for exactly `selected_rows`
  // (e.g. only the k + 1 rows of the verification blocks of a batch that also prefills prompts;
  // none at all is allowed and skips the LM head).
  using Outputs = BatchOutputs;
  Outputs outputs = Outputs::kAll;
  absl::Span<const int32_t> selected_rows;  // kSelectedRows: batch rows, strictly ascending
  // Last slice: what comes back to the host for each output row (see OutputContents).
  OutputContents contents;

  // Gives `to` this batch's ids or activations, output rows and contents: a batch of other caches
  // for the same pass (its sequences are the caller's to fill).
  template <typename OtherCache>
  void CopyAllButSequencesTo(BatchOf<OtherCache>* to) const {
    to->token_ids = token_ids;
    to->activations = activations;
    to->outputs = outputs;
    to->selected_rows = selected_rows;
    to->contents = contents;
  }
};
using ForwardBatch = BatchOf<KvCache>;
using SequenceInput = ForwardBatch::Sequence;

struct ForwardResult {
  // Non-last slices: activations [total tokens, hidden_size] for the next slice.
  std::vector<float> activations;
  // Last slice: for each output row (batch order), logits [vocab_size] and the final-layer hidden
  // state after the final norm [hidden_size] (the judge's input).
  std::vector<float> logits;
  std::vector<float> hidden;
  std::vector<int32_t> output_rows;  // batch row of each output
  // What OutputContents asked for beyond those (empty otherwise), one per output row.
  std::vector<LogitSummary> summaries;
  std::vector<float> probe;
  std::vector<SampledDecision> sampled;
  // OutputContents::sampled_supports: row i's ids (ascending) and probabilities are entries
  // [support_offsets[i], support_offsets[i + 1]) of support_ids / support_probs.
  std::vector<int64_t> support_offsets;
  std::vector<int32_t> support_ids;
  std::vector<float> support_probs;
};

// Splits every layer of a slice across the ranks of `comm` (see the file comment). nullptr: the
// slice holds the whole layers and communicates with nobody. A communicator of size 1 runs the split
// code path with one rank (the whole layers, an all-reduce that changes nothing).
struct TensorParallelConfig {
  Communicator* comm = nullptr;  // not owned; must outlive the slice
};

class ModelSlice {
 public:
  // Loads the slice's weights from `weights` (Hugging Face or GGUF tensor names) onto `backend`.
  // `weights` and `backend` must outlive the slice. Errors: kInvalidArgument for a bad layer range,
  // kNotFound for a missing tensor, kInvalidArgument for a tensor of the wrong shape or a dtype
  // the backend cannot use.
  static absl::StatusOr<std::unique_ptr<ModelSlice>> Create(const LlamaConfig& config,
                                                            const WeightSource& weights,
                                                            SliceRange range, Backend* backend);
  // The same, as rank tp.comm->rank() of a tensor-parallel group: this rank's share of the heads
  // and intermediate columns (row slices of q/k/v/gate/up and their biases, column slices of o and
  // down, rows [r*V/W, (r+1)*V/W) of the LM head (vocab-parallel); o/down biases, embedding and
  // norms whole). Column slices are owned host copies.
  // Further errors, kInvalidArgument: num_heads, num_kv_heads or intermediate_size not divisible
  // by the group size; a q8_0 column slice not starting and ending on a 32-value block boundary.
  static absl::StatusOr<std::unique_ptr<ModelSlice>> Create(const LlamaConfig& config,
                                                            const WeightSource& weights,
                                                            SliceRange range, Backend* backend,
                                                            const TensorParallelConfig& tp);
  ~ModelSlice();

  const LlamaConfig& config() const { return config_; }
  int64_t layer_begin() const { return layer_begin_; }
  int64_t layer_end() const { return layer_end_; }
  bool is_first() const { return layer_begin_ == 0; }
  bool is_last() const { return layer_end_ == config_.num_layers; }
  // Tensor parallelism: this rank, the group size (0 and 1 without a communicator) and the heads,
  // kv heads and intermediate columns this rank holds (the whole model's without one).
  int tp_rank() const { return tp_rank_; }
  int tp_size() const { return tp_size_; }
  int64_t local_num_heads() const { return local_heads_; }
  int64_t local_num_kv_heads() const { return local_kv_heads_; }
  int64_t local_intermediate_size() const { return local_intermediate_; }
  // The LM head rows (vocabulary ids) this rank computes logits for: all of them without tensor
  // parallelism, a 1/W share with it.
  int64_t local_vocab_begin() const { return vocab_begin_; }
  int64_t local_vocab_size() const { return local_vocab_; }
  // Bytes of weights this slice reads per forward pass (all its matrices once; with tensor
  // parallelism this rank's share, replicated tensors counted in full).
  size_t weight_bytes() const { return weight_bytes_; }
  // Bytes of weights one decode step streams from memory: every matrix except an untied input
  // embedding, of which a step reads one row. The memory-bandwidth floor of decoding.
  size_t streamed_weight_bytes() const { return streamed_weight_bytes_; }
  int64_t num_parameters() const { return num_parameters_; }
  // Whether q|k|v and gate|up run as stacked products (Backend::PrefersFusedProjections and
  // matching dtypes in the checkpoint).
  bool stacked_projections() const;

  // Sets the vector w of OutputContents::probe ([hidden_size], e.g. a judge head's weight; copied
  // to the backend). Last slice only. Errors: kFailedPrecondition on another slice,
  // kInvalidArgument for the wrong size or a non-finite value.
  absl::Status SetHiddenProbe(absl::Span<const float> weight);
  bool has_hidden_probe() const { return probe_ != nullptr; }
  // Whether the probe set is exactly `weight`.
  bool HiddenProbeIs(absl::Span<const float> weight) const;

  // A KV cache for this slice's layers (this rank's kv heads) holding up to `capacity` positions
  // (capacity <= max_position_embeddings).
  absl::StatusOr<std::unique_ptr<KvCache>> NewKvCache(int64_t capacity) const;

  // Runs the batch. On success every sequence's cache has grown by its num_tokens.
  // Errors (nothing is computed and every cache is unchanged):
  //   kInvalidArgument: empty batch, token id out of range, wrong number of ids/activations, a
  //     sequence whose positions would pass max_position_embeddings, a cache of another slice,
  //     selected rows not ascending or out of the batch, summary tokens that do not match the
  //     output rows or the vocabulary, a probe without SetHiddenProbe;
  //   kResourceExhausted: a cache without room for its new tokens, or out of backend memory for
  //     the activation buffers (with tensor parallelism: on this or another rank).
  // Tensor parallelism: REQUIRES every rank to call Forward with the same batch (token ids,
  // activations, outputs, cache lengths) at the same time. An error of the communicator is returned
  // as is; the caches' lengths are then unchanged too (positions past them may have been written).
  absl::Status Forward(const ForwardBatch& batch, ForwardResult* result);

 private:
  struct Layer;
  ModelSlice(const LlamaConfig& config, int64_t layer_begin, int64_t layer_end, Backend* backend);
  absl::Status Validate(const ForwardBatch& batch, int64_t* total_tokens) const;
  absl::Status ValidateOutputs(const ForwardBatch& batch, int64_t total_tokens,
                               int64_t* output_rows) const;
  absl::Status ValidateSampledRequests(const OutputContents& want, int64_t output_rows) const;
  // The sampled rule for every output row from its logits row on the host (`rows`: [outputs,
  // vocab]), for backends that do not decide it themselves (Backend::DecidesSampledRows).
  void DecideSampledOnHost(const OutputContents& want, absl::Span<const float> rows,
                           ForwardResult* result) const;
  absl::Status EnsureWorkspace(int64_t tokens);
  absl::Status EnsureLogitsBuffer(int64_t rows);
  absl::Status EnsureSupportsBuffer(int64_t rows);
  absl::Status CopySupports(ForwardResult* result);
  absl::Status AgreeAcrossRanks(const absl::Status& local);
  // `count` zeros in host memory (valid until the next call; grown, never refilled).
  const float* Zeros(int64_t count);

  LlamaConfig config_;
  int64_t layer_begin_;
  int64_t layer_end_;
  Backend* backend_;
  RopeParams rope_;
  Communicator* comm_ = nullptr;  // tensor parallelism, else nullptr
  int tp_rank_ = 0;
  int tp_size_ = 1;
  int64_t local_heads_ = 0;
  int64_t local_kv_heads_ = 0;
  int64_t local_intermediate_ = 0;
  int64_t vocab_begin_ = 0;  // last slice: this rank's rows of the LM head
  int64_t local_vocab_ = 0;
  // Host copies of column-sliced weights. The CPU backend's DeviceWeights view them, so they are
  // declared before (destroyed after) the weights.
  std::vector<std::unique_ptr<std::vector<uint8_t>>> owned_weight_bytes_;
  std::unique_ptr<DeviceWeight> embedding_;   // first slice
  std::unique_ptr<DeviceWeight> final_norm_;  // last slice
  std::unique_ptr<DeviceWeight> lm_head_;     // last slice (untied)
  const DeviceWeight* lm_head_view_ = nullptr;  // lm_head_ or the tied embedding
  std::unique_ptr<std::vector<uint8_t>> probe_bytes_;  // what probe_ views on the CPU backend
  std::unique_ptr<DeviceWeight> probe_;               // [1, hidden_size] f32, last slice
  std::vector<std::unique_ptr<Layer>> layers_;
  size_t weight_bytes_ = 0;
  size_t streamed_weight_bytes_ = 0;
  int64_t num_parameters_ = 0;

  // Activation workspace, grown on demand (one buffer, carved into views).
  std::unique_ptr<DeviceBuffer> workspace_;
  int64_t workspace_tokens_ = 0;
  // Last slice: logits, summaries and probe values of the output rows, grown on demand (not per
  // forward: decode's hot path).
  std::unique_ptr<DeviceBuffer> logits_buffer_;
  int64_t logits_rows_ = 0;
  std::unique_ptr<DeviceBuffer> supports_buffer_;  // OutputContents::sampled_supports
  int64_t supports_rows_ = 0;
  std::vector<float> support_ids_host_;  // ids as the backend writes them (exact floats)
  std::vector<float> summary_host_;  // summaries as copied back, before decoding
  std::vector<float> sampled_host_;  // sampled decisions as copied back
  std::vector<float> sampled_rows_host_;  // logits rows for DecideSampledOnHost
  std::vector<float> zeros_host_;    // what split-head buffers start from before an all-reduce
  std::vector<int32_t> local_tokens_;  // summary tokens in this rank's vocabulary share
  // Tensor parallelism: one float in backend memory for the ranks' agreement on buffer growth.
  std::unique_ptr<DeviceBuffer> agreement_buffer_;
};

}  // namespace verdict::engine

#endif  // VERDICT_ENGINE_MODEL_H_
