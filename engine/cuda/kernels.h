// SPDX-License-Identifier: Apache-2.0
// Launchers of the CUDA backend's own kernels (internal to engine/cuda), defined one file per op
// family: summary_kernels.cu, sampling_kernels.cu, gemv_kernels.cu, elementwise_kernels.cu and
// attention_kernels.cu (their shared device helpers in kernel_util.cuh).
// Every pointer is device memory; every launcher enqueues on `stream` and returns at once (the
// "Buffers" lines list each buffer as direction, dtype [shape]; row strides are in elements). The
// per-element math comes from engine/kernels/op_math.h and engine/cuda/attention_math.h, shared
// with the CPU backend and the CPU tests; only launch geometry and reductions live in the kernels.
#ifndef VERDICT_ENGINE_CUDA_KERNELS_H_
#define VERDICT_ENGINE_CUDA_KERNELS_H_

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "engine/cuda/attention_math.h"
#include "engine/dtype.h"
#include "engine/kernels/sampling_math.h"

namespace verdict::engine::cuda {

// Storage type of the KV cache, of 16-bit matrix operands and of weights. kF8E4M3 is weights only:
// E4M3 codes [rows, cols] plus f32 scales [rows, ceil(cols / 128)] (engine/fp8.h), multiplied with
// bf16 activations.
enum class StorageType : uint8_t { kF32, kBF16, kF16, kF8E4M3 };
// Bytes per element (FP8: the codes only; their scales live beside them).
inline constexpr size_t ElementBytes(StorageType type) {
  return type == StorageType::kF32 ? 4 : type == StorageType::kF8E4M3 ? 1 : 2;
}

// Where the launchers enqueue. `programmatic`: launch with programmatic stream serialization
// (Hopper's programmatic dependent launch) so a kernel is scheduled while its predecessor finishes;
// every kernel here waits for its predecessor before its first memory access, so only the launch
// latency between consecutive kernels is hidden, never an ordering.
struct LaunchStream {
  cudaStream_t stream = nullptr;
  bool programmatic = false;
};

// out[r, :] = x[r, :] rounded to `type` (out is contiguous [rows, cols]).
// Buffers: x in f32 [rows, cols] (x_stride); out out `type` [rows, cols].
void LaunchConvertRows(const float* x, int64_t rows, int64_t cols, int64_t x_stride,
                       StorageType type, void* out, LaunchStream stream);
// out[i, :] = table[ids[i], :] as f32 (`scales`: an FP8 table's, else nullptr).
// Buffers: table in `type` [vocab, cols] (FP8: E4M3 codes with scales in f32 [vocab, cols / 128]);
// ids in int32 [n]; out out f32 [n, cols] (out_stride).
void LaunchEmbed(const void* table, StorageType type, const float* scales, int64_t cols,
                 const int32_t* ids, int64_t n, float* out, int64_t out_stride, LaunchStream stream);
// out[r, c] = bf16(E4M3 code[r, c] * scales[r, c / 128]): an FP8 matrix for cuBLASLt's bf16
// products (out contiguous [rows, cols]).
// Buffers: codes in E4M3 [rows, cols]; scales in f32 [rows, ceil(cols / 128)]; out out bf16.
void LaunchDequantizeFp8(const uint8_t* codes, const float* scales, int64_t rows, int64_t cols,
                         void* out, LaunchStream stream);
// The ops whose output feeds a matrix product can also write it rounded to the product's 16-bit
// operand type (contiguous [rows, cols]; data == nullptr: no copy), so the product skips its
// conversion pass. Rounding as LaunchConvertRows (round to nearest even).
struct Copy16 {
  void* data = nullptr;
  StorageType type = StorageType::kBF16;
};

// out = rms_norm(x) * w (and its 16-bit copy); with `residual` (else nullptr) x += residual first.
// Buffers: x in f32 [rows, cols] (x_stride), in/out with a residual; residual in f32 [rows, cols]
// (residual_stride) or nullptr; w in f32 [cols]; out out f32 [rows, cols] (out_stride);
// copy16.data out 16-bit [rows, cols] or nullptr.
void LaunchRmsNorm(float* x, int64_t x_stride, int64_t rows, int64_t cols, const float* residual,
                   int64_t residual_stride, const float* w, float eps, float* out,
                   int64_t out_stride, Copy16 copy16, LaunchStream stream);
// x[r, :] += bias.
// Buffers: x in/out f32 [rows, cols] (x_stride); bias in f32 [cols].
void LaunchAddBias(float* x, int64_t x_stride, int64_t rows, int64_t cols, const float* bias,
                   LaunchStream stream);
// y += x.
// Buffers: x in f32 [rows, cols] (x_stride); y in/out f32 [rows, cols] (y_stride).
void LaunchAdd(const float* x, int64_t x_stride, float* y, int64_t y_stride, int64_t rows,
               int64_t cols, LaunchStream stream);
// out = silu(gate) * up (and its 16-bit copy).
// Buffers: gate, up in f32 [rows, cols] (their strides); out out f32 [rows, cols] (out_stride);
// copy16.data out 16-bit [rows, cols] or nullptr.
void LaunchSiluMul(const float* gate, int64_t gate_stride, const float* up, int64_t up_stride,
                   float* out, int64_t out_stride, int64_t rows, int64_t cols, Copy16 copy16,
                   LaunchStream stream);
// dst[i, :] = src[rows[i], :].
// Buffers: src in f32 [*, cols] (src_stride); rows in int32 [n]; dst out f32 [n, cols]
// (dst_stride).
void LaunchGatherRows(const float* src, int64_t src_stride, int64_t cols, const int32_t* rows,
                      int64_t n, float* dst, int64_t dst_stride, LaunchStream stream);
// out[r, :] = the summary of logits row r (engine::LogitSummary's layout), with the logit of
// tokens[r] (tokens may be nullptr: no token). `scratch`: SummaryScratchBytes(rows, cols) of device
// memory for per-chunk statistics.
// Buffers: logits in f32 [rows, cols] (stride); tokens in int32 [rows] or nullptr; out out f32
// [rows, LogitSummary width] (out_stride); scratch: working memory, its contents undefined after.
int64_t SummaryScratchBytes(int64_t rows, int64_t cols);
void LaunchSummarizeLogits(const float* logits, int64_t stride, int64_t rows, int64_t cols,
                           const int32_t* tokens, float* out, int64_t out_stride, void* scratch,
                           LaunchStream stream);
// out[r, :] = the sampled verification rule's numbers for logits row r and requests[r], and with
// `supports` (nullptr: none) the row's compacted distribution (Backend::DecideSampled;
// engine/kernels/sampling_math.h), one block per row.
// Buffers: logits in f32 [rows, cols] (stride); requests in SampledRowRequest [rows]; proposal_ids
// in int32 and proposal_probs in f32 [the requests' proposal entries]; out out f32
// [rows, math::kSampledDecisionWidth] (out_stride); supports out f32 [rows, supports_stride] or
// nullptr.
void LaunchDecideSampled(const float* logits, int64_t stride, int64_t rows, int64_t cols,
                         const math::SampledRowRequest* requests, const int32_t* proposal_ids,
                         const float* proposal_probs, float* out, int64_t out_stride,
                         float* supports, int64_t supports_stride, LaunchStream stream);
// Rotary embedding in place on `heads` heads per row of one or two tensors (queries and keys of the
// same rows; heads == 0: no tensor).
struct RopeTarget {
  float* data = nullptr;
  int64_t stride = 0;
  int64_t heads = 0;
};
// Buffers: first.data, second.data in/out f32 [rows, heads * head_dim] (their strides); positions
// in int32 [rows]; inv_freq in f32 [head_dim / 2].
void LaunchRope(RopeTarget first, RopeTarget second, int64_t rows, int64_t head_dim,
                const int32_t* positions, const float* inv_freq, bool interleaved,
                LaunchStream stream);

// Skinny products for decode and short verification blocks: out[r, :] (+)= x[r, :] . w^T for
// r < m, one warp per output column streaming its weight row in 16-byte loads. 16-bit weights take
// x in the same type and m <= kGemvMaxRows; FP8 weights (`scales` theirs) take bf16 x and m up to
// kGemvMaxRowsFp8: up to 8 rows one warp per column (four columns for 3+ rows, so that activation
// reads from L1 do not outweigh the weights); 9+ rows, where k is a multiple of 128, on the tensor
// cores (codes converted to bf16 in registers, 16 weight rows x up to 32 tokens per pass), else in
// groups of 8 rows. LtMatMul times it beside cuBLASLt's algorithms.
inline constexpr int64_t kGemvMaxRows = 8;
inline constexpr int64_t kGemvMaxRowsFp8 = 64;
// True when LaunchGemv can run these operands (16-bit or FP8 weights, k and ldx multiples of 8 (16
// for FP8), 16-byte aligned).
bool GemvApplies(StorageType type, int64_t m, int64_t k, const void* x, int64_t ldx, const void* w);
// Buffers: x in `type` [m, k] (ldx; bf16 for FP8 weights); w in `type` [n, k] (FP8: E4M3 codes);
// scales in f32 [n, k / 128] (FP8 only, else nullptr); out out f32 [m, n] (ldout), in/out with
// `accumulate`.
void LaunchGemv(const void* x, int64_t ldx, const void* w, StorageType type, const float* scales,
                float* out, int64_t ldout, int64_t m, int64_t n, int64_t k, bool accumulate,
                LaunchStream stream);

// One sequence of an attention batch, as the kernels see it.
struct DeviceSequence {
  const uint64_t* block_table = nullptr;  // device addresses of the sequence's KV blocks
  int32_t row_begin = 0;
  int32_t num_tokens = 0;
  int32_t start_pos = 0;
  int32_t unused = 0;
};

struct AttentionLaunch {
  const float* q = nullptr;
  int64_t q_stride = 0;
  const float* k = nullptr;
  int64_t k_stride = 0;
  const float* v = nullptr;
  int64_t v_stride = 0;
  float* out = nullptr;
  int64_t out_stride = 0;
  Copy16 out_copy16;  // the output rounded for the next product (see Copy16)
  int64_t rows = 0;
  const int32_t* row_sequence = nullptr;   // [rows] index into sequences
  const DeviceSequence* sequences = nullptr;
  cuda_math::KvBlockLayout layout;
  StorageType kv_type = StorageType::kBF16;
  int64_t layer = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  // The chunk kernel's one-launch form (stores the keys and values, merges its own partials; opt-in
  // until verified on a GPU) instead of the measured four launches (KV write, chunk, combine).
  bool one_launch = false;
  // One-launch form only: rotary embedding applied as the kernel loads queries and new keys
  // (rope_positions: one per row; nullptr: q and k arrive rotated).
  const int32_t* rope_positions = nullptr;
  const float* rope_inv_freq = nullptr;  // [head_dim / 2]
  bool rope_interleaved = false;
  int64_t max_context = 0;  // longest key range of any row
  // Scratch for the flash-decoding partials: room for partial_rows * num_heads * num_splits
  // entries of (head_dim + 2) floats.
  float* partials = nullptr;
  int64_t partial_rows = 0;  // rows processed per launch of the split kernel
  // partial_rows * (num_heads / heads per block) counters, zero before the launch; the kernel
  // leaves them zero (the last chunk of each run of rows resets its counter).
  int* chunk_counters = nullptr;
  int64_t split_positions = 0;
  int64_t num_splits = 0;
  // Tensor-core prefill instead of the chunk kernel (see FlashPrefillApplies): one (sequence index,
  // first batch row) pair per tile of cuda_math::kFlashTileRows rows, the partials unused.
  const int32_t* flash_tiles = nullptr;
  int64_t num_flash_tiles = 0;
};

// Writes the rows' keys/values into the paged cache and computes causal GQA attention: per
// partial_rows rows, a KV-write, chunk and combine launch, or with one_launch a single launch (the
// chunks of each run of rows merge themselves); with flash_tiles,
// a launch storing the keys and values, then the tensor-core prefill kernel.
// Buffers (AttentionLaunch): q, k, v in f32 [rows, heads * head_dim] (their strides); out out f32
// [rows, num_heads * head_dim] (out_stride); out_copy16.data out 16-bit or nullptr; row_sequence in
// int32 [rows]; sequences in DeviceSequence [sequences]; the KV blocks their block tables name
// in/out (the launch stores the rows' keys and values at their positions); rope_positions in int32
// [rows]; rope_inv_freq in f32 [head_dim / 2]; partials: working memory; chunk_counters in/out
// (one_launch only; zero before and after); flash_tiles in int32 [num_flash_tiles, 2].
void LaunchAttention(const AttentionLaunch& a, LaunchStream stream);
// True when the tensor-core prefill kernel handles this cache type and head size (bf16 cache,
// head_dim 64 or 128: the Llama 3 models); callers give it only sequences of at least
// cuda_math::kFlashMinRows rows.
bool FlashPrefillApplies(StorageType kv_type, int64_t head_dim);
// Counters LaunchAttention needs for rows of `num_heads` heads with `num_heads / num_kv_heads`-
// head GQA groups, in partial_rows-row launches.
int64_t AttentionCounters(int64_t partial_rows, int64_t num_heads, int64_t num_kv_heads);

// Head dims the attention kernels support: multiples of 8 (16-byte key/value loads) up to 256.
inline constexpr int64_t kMaxAttentionHeadDim = 256;
inline bool AttentionSupportsHeadDim(int64_t head_dim) {
  return head_dim > 0 && head_dim <= kMaxAttentionHeadDim && head_dim % 8 == 0;
}
// Most chunks (flash-decoding splits) of one query's keys.
inline constexpr int64_t kMaxAttentionSplits = 64;

}  // namespace verdict::engine::cuda

#endif  // VERDICT_ENGINE_CUDA_KERNELS_H_
