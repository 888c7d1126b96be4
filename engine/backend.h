// SPDX-License-Identifier: Apache-2.0
// The compute backend interface. Model code (engine/model.h) expresses the forward pass only through
// these calls, so a backend that owns device memory and a stream (CUDA) implements the same ops
// asynchronously without any change to the model: buffers and weights are opaque handles, ops are
// enqueued in call order, and host-visible results exist only after CopyToHost + Synchronize.
//
// The CPU backend executes every op synchronously on the calling thread plus its thread pool.
// Thread-safety: a Backend is driven by one thread at a time (the engine thread of its process).
#ifndef VERDICT_ENGINE_BACKEND_H_
#define VERDICT_ENGINE_BACKEND_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "engine/dtype.h"
#include "engine/io/weight_source.h"
#include "engine/kernels/op_math.h"
#include "engine/kernels/sampling_math.h"

namespace verdict::engine {

class Communicator;

// Backend-owned memory (host RAM for the CPU backend, device memory for CUDA).
class DeviceBuffer {
 public:
  virtual ~DeviceBuffer() = default;
  virtual size_t size_bytes() const = 0;
  // Opaque address usable in TensorView; only the owning backend dereferences it.
  virtual void* data() = 0;
};

// A 2-D row-major view [rows, cols] of f32 activations in backend memory (row stride in elements).
struct TensorView {
  float* data = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t stride = 0;

  TensorView Rows(int64_t first, int64_t count) const {
    return TensorView{data + first * stride, count, cols, stride};
  }
  TensorView Cols(int64_t first, int64_t count) const {
    return TensorView{data + first, rows, count, stride};
  }
};

// A weight resident on the backend: 2-D [rows, cols] (a linear layer's [out, in]) or 1-D (cols only,
// rows == 1) in its storage dtype. Immutable once uploaded.
class DeviceWeight {
 public:
  virtual ~DeviceWeight() = default;
  virtual DType dtype() const = 0;
  virtual int64_t rows() const = 0;
  virtual int64_t cols() const = 0;
  virtual size_t size_bytes() const = 0;
};

// Per-sequence key/value storage for a range of layers: [layers][capacity][kv_heads * head_dim] for
// keys and values. Length bookkeeping lives in KvCache (engine/kv_cache.h); this is only memory.
class KvStorage {
 public:
  virtual ~KvStorage() = default;
  virtual int64_t capacity() const = 0;
  virtual size_t size_bytes() const = 0;
};

struct KvShape {
  int64_t num_layers = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
};

// One sequence's slice of a ragged batch for attention: its new tokens occupy rows
// [row_begin, row_begin + num_tokens) of the batch and positions [start_pos, start_pos + num_tokens).
struct AttentionSequence {
  KvStorage* kv = nullptr;
  int64_t row_begin = 0;
  int64_t num_tokens = 0;
  int64_t start_pos = 0;
};

// What a backend reports about one row of logits instead of the row itself (Backend::SummarizeLogits):
// enough for greedy decisions, token log-probabilities and entropies (the judge's features and the
// verification rules that need no full distribution), so a GPU need not copy 128k-wide rows to the
// host. All values are of the plain softmax (temperature 1).
struct LogitSummary {
  int32_t argmax = 0;         // first index of the largest logit (NaN never wins)
  float max_logit = 0;
  float log_sum_exp = 0;      // log sum_j e^(logit_j)
  float entropy = 0;          // of softmax(logits), nats
  int32_t token = -1;         // the token whose logit was asked for, -1 for none
  float token_logit = 0;      // NaN when token < 0

  float TokenLogprob() const { return token_logit - log_sum_exp; }
  // Reads a row in the layout the backends write (engine/kernels/op_math.h, WriteLogitSummary).
  static LogitSummary FromRow(const float* row, int32_t token) {
    return FromStats(math::ReadLogitStats(row, 0), token, row[5]);
  }
  static LogitSummary FromStats(const math::LogitStats& stats, int32_t token, float token_logit) {
    const int32_t argmax = stats.best_index == math::kNoLogitIndex ? 0 : stats.best_index;
    return LogitSummary{argmax, stats.best, math::LogSumExp(stats), math::Entropy(stats), token,
                        token_logit};
  }
};
inline constexpr int64_t kLogitSummaryWidth = math::kLogitSummaryWidth;
// Largest vocabulary a summary can name exactly (the argmax travels as a float).
inline constexpr int64_t kMaxSummarizedVocab = int64_t{1} << 24;

// Precomputed rotary-embedding frequencies of one model.
struct RopeParams {
  std::vector<float> inv_freq;  // [head_dim / 2]
  bool interleaved = false;     // pairs (2i, 2i+1) instead of (i, i + d/2)
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual absl::string_view name() const = 0;

  // Whether UploadWeight copies the tensor's bytes (into device memory), so the caller may free
  // host buffers it built once UploadWeight returns. False for a backend that keeps zero-copy views
  // of the checkpoint (the CPU backend): those buffers must then outlive the weight.
  virtual bool CopiesWeights() const { return false; }
  // Whether ModelSlice should upload q|k|v and gate|up as single stacked matrices (one wide product
  // instead of two or three skinny ones, and fewer launches). Stacking needs a host copy of the
  // matrices, which a backend that keeps views of the checkpoint would have to keep forever.
  virtual bool PrefersFusedProjections() const { return false; }
  // Whether the model loader should quantize the layers' linear projections (q, k, v, o, gate, up,
  // down) of a 16/32-bit checkpoint to DType::kF8E4M3Block before UploadWeight (engine/fp8.h):
  // half the bytes of bf16 per decode step. Embeddings, the LM head, norms and biases never are.
  virtual bool QuantizesProjectionsToFp8() const { return false; }

  // --- memory ---------------------------------------------------------------------------------
  // Errors: kResourceExhausted when the backend is out of memory.
  virtual absl::StatusOr<std::unique_ptr<DeviceBuffer>> Allocate(size_t bytes) = 0;
  // Makes a checkpoint tensor available to ops. The CPU backend keeps a zero-copy view into the
  // memory map (the WeightSource must outlive the weight); 16-bit, q8_0 and fp8 weights stay as
  // stored. Tensors arrive in any float dtype but kF8E4M3 (the model loader converts those).
  // `as_rows`/`as_cols` reinterpret the shape (e.g. a 1-D norm weight is [1, n]).
  virtual absl::StatusOr<std::unique_ptr<DeviceWeight>> UploadWeight(const WeightTensor& tensor,
                                                                     int64_t as_rows,
                                                                     int64_t as_cols) = 0;
  virtual absl::StatusOr<std::unique_ptr<KvStorage>> AllocateKv(const KvShape& shape,
                                                                int64_t capacity) = 0;
  // Asynchronous copies (ordered with ops). `dst`/`src` host memory must stay valid until the
  // next Synchronize().
  virtual void CopyToDevice(const float* host, TensorView dst) = 0;
  virtual void CopyToHost(TensorView src, float* host) = 0;
  // Waits for all enqueued work. Returns the first asynchronous error, if any.
  virtual absl::Status Synchronize() = 0;

  // --- ops (enqueued in order; all shapes are validated by the caller) -------------------------
  // out[i, :] = table[ids[i], :] as f32.
  virtual void Embed(const DeviceWeight& table, absl::Span<const int32_t> ids, TensorView out) = 0;
  // out = rms_norm(x) * weight (weight 1-D, f32 after upload).
  virtual void RmsNorm(TensorView x, const DeviceWeight& weight, float eps, TensorView out) = 0;
  // x += residual, then out = rms_norm(x) * weight: the residual add of a tensor-parallel layer
  // (its all-reduced output projection) fused into the next norm (one pass instead of two).
  virtual void AddRmsNorm(TensorView residual, TensorView x, const DeviceWeight& weight, float eps,
                          TensorView out) {
    Add(residual, x);
    RmsNorm(x, weight, eps, out);
  }
  // out[m, n] (+)= sum_k x[m, k] * w[n, k].
  virtual void MatMul(TensorView x, const DeviceWeight& w, TensorView out, bool accumulate) = 0;
  // x[m, :] += bias (1-D).
  virtual void AddBias(TensorView x, const DeviceWeight& bias) = 0;
  // Applies rotary embedding in place to `num_heads` heads of `head_dim` in each row of x, row i at
  // position positions[i].
  virtual void Rope(TensorView x, int64_t num_heads, int64_t head_dim,
                    absl::Span<const int32_t> positions, const RopeParams& rope) = 0;
  // Rope on a layer's queries and keys (same rows and positions); a backend may do both at once.
  virtual void RopeQueriesAndKeys(TensorView q, int64_t q_heads, TensorView k, int64_t k_heads,
                                  int64_t head_dim, absl::Span<const int32_t> positions,
                                  const RopeParams& rope) {
    Rope(q, q_heads, head_dim, positions, rope);
    Rope(k, k_heads, head_dim, positions, rope);
  }
  // Writes the rows' keys and values into each sequence's storage at its positions for `layer`,
  // then computes causal grouped-query attention of q over positions [0, start_pos + i] of the same
  // sequence. q/out: [tokens, num_heads * head_dim]; k/v: [tokens, num_kv_heads * head_dim].
  virtual void Attention(TensorView q, TensorView k, TensorView v, int64_t layer,
                         absl::Span<const AttentionSequence> sequences, int64_t num_heads,
                         int64_t num_kv_heads, int64_t head_dim, TensorView out) = 0;
  // RopeQueriesAndKeys, then Attention: what a layer does. A backend may rotate inside its attention
  // kernel instead (one launch fewer); q and k then keep their unrotated values, so callers must not
  // read them afterwards. `positions` as for Rope (one per row).
  virtual void RotaryAttention(TensorView q, TensorView k, TensorView v, int64_t layer,
                               absl::Span<const AttentionSequence> sequences, int64_t num_heads,
                               int64_t num_kv_heads, int64_t head_dim,
                               absl::Span<const int32_t> positions, const RopeParams& rope,
                               TensorView out) {
    RopeQueriesAndKeys(q, num_heads, k, num_kv_heads, head_dim, positions, rope);
    Attention(q, k, v, layer, sequences, num_heads, num_kv_heads, head_dim, out);
  }
  // out = silu(gate) * up, elementwise.
  virtual void SiluMul(TensorView gate, TensorView up, TensorView out) = 0;
  // y += x, elementwise.
  virtual void Add(TensorView x, TensorView y) = 0;
  // dst[i, :] = src[rows[i], :].
  virtual void GatherRows(TensorView src, absl::Span<const int32_t> rows, TensorView dst) = 0;
  // out[i, :] = the summary of logits row i (LogitSummary::FromRow's layout), with the logit of
  // tokens[i] (NaN where tokens[i] < 0; tokens empty: no token for any row). REQUIRES: out is
  // [logits.rows, kLogitSummaryWidth]; logits.cols <= kMaxSummarizedVocab; tokens empty or one per
  // row, each < logits.cols.
  virtual void SummarizeLogits(TensorView logits, absl::Span<const int32_t> tokens,
                               TensorView out) = 0;
  // Whether ModelSlice hands sampled rows to DecideSampled (true) or copies the logits rows to
  // the host and decides there with engine::DecideSampledRow (a backend whose device kernel is not
  // verified yet, or a test of that path).
  virtual bool DecidesSampledRows() const { return true; }
  // out[i, :] = the numbers of the sampled verification rule for logits row i and requests[i]
  // (math::SampledRowRequest; engine::SampledDecision::FromRow reads them): the probability of the
  // request's token under the row's sampling distribution (temperature, top-k, top-p) and a token
  // drawn with the request's uniform from max(0, p - q), q the draft's proposal in the flat
  // `proposal_ids`/`proposal_probs` arrays. What engine::DecideSampledRow computes on the host, so
  // that sampled verification needs no logits row on the host either.
  // `supports` (rows 0: none): also each row's distribution, its tokens with p > 0 compacted as
  // math::SupportRowWidth describes (engine::DecideSampledRow on the host): what a sampled draft
  // sends as its proposal, without the row leaving the device.
  // REQUIRES: out is [logits.rows, math::kSampledDecisionWidth], supports empty or
  // [logits.rows, math::SupportRowWidth(logits.cols)]; one valid request per row (ModelSlice::Forward
  // checks them); logits.cols <= kMaxSummarizedVocab.
  virtual void DecideSampled(TensorView logits, absl::Span<const math::SampledRowRequest> requests,
                             absl::Span<const int32_t> proposal_ids,
                             absl::Span<const float> proposal_probs, TensorView out,
                             TensorView supports) = 0;
  // Copies kv entries [from, from + count) of `from_storage` to `to_storage` (same shape): used to
  // fork a sequence (prefix sharing).
  virtual void CopyKv(const KvStorage& from_storage, KvStorage& to_storage, int64_t count) = 0;
  // x = the sum of x over the ranks of `comm` (tensor parallelism), in order with the other ops.
  // REQUIRES: x contiguous (stride == cols). A backend that runs ops synchronously returns the
  // collective's error here; an asynchronous one returns OK and reports errors at Synchronize().
  virtual absl::Status AllReduceSum(TensorView x, Communicator& comm) = 0;
};

// The element type of a KV cache. kAuto is the backend's own choice: f32 on the CPU (the reference
// numerics), bf16 on CUDA (f32 for f32 weights). f16 / bf16 on the CPU halve the cache's memory at a
// cost in accuracy that docs/performance.md measures.
enum class KvCacheType : uint8_t { kAuto, kF32, kF16, kBf16 };
// The names ParseKvCacheType accepts, for flag checks and config validation.
inline constexpr std::array<absl::string_view, 4> kKvCacheTypeNames = {"auto", "f32", "f16", "bf16"};
inline std::vector<std::string> KvCacheTypeNameList() {
  return std::vector<std::string>(kKvCacheTypeNames.begin(), kKvCacheTypeNames.end());
}
// "auto", "f32", "f16", "bf16". Errors: kInvalidArgument naming the text and the accepted names.
absl::StatusOr<KvCacheType> ParseKvCacheType(absl::string_view name);
absl::string_view KvCacheTypeName(KvCacheType type);
// The help text of every --kv-cache flag.
inline constexpr const char* kKvCacheFlagHelp =
    "KV cache element type: auto (CPU f32, CUDA bf16), f32, f16 or bf16 (16-bit: half the memory per "
    "token; CPU only)";

struct CpuBackendOptions {
  int num_threads = 0;  // 0: all hardware threads
  // Stacked q|k|v and gate|up products (PrefersFusedProjections). Off by default: the stacked
  // matrices would be host copies beside the memory-mapped checkpoint; tests turn it on to check
  // the stacked path against the separate one.
  bool fuse_projections = false;
  // Backend::QuantizesProjectionsToFp8: FP8 projections from any checkpoint (a check of the FP8 path
  // and a way to halve the memory of bf16 weights; the CPU kernels decode FP8 with a table).
  bool fp8_projections = false;
  // DecidesSampledRows() false: the model copies logits rows and decides the sampled rule itself,
  // the path a CUDA backend takes without CudaBackendOptions::device_sampling (tests check both).
  bool sampled_rows_on_host = false;
  KvCacheType kv_cache = KvCacheType::kAuto;  // kAuto: f32
};
std::unique_ptr<Backend> CreateCpuBackend(const CpuBackendOptions& options);

}  // namespace verdict::engine

#endif  // VERDICT_ENGINE_BACKEND_H_
