// SPDX-License-Identifier: Apache-2.0
// Index and softmax math of the CUDA attention kernels (engine/cuda/attention_kernels.cu), written once as
// VERDICT_HOST_DEVICE functions so that the CPU test suite runs the same decomposition
// (engine/cuda/attention_math_test.cc): the paged KV layout, the flash-decoding split of a
// sequence into chunks, and the merge of per-chunk partial softmax results.
#ifndef VERDICT_ENGINE_CUDA_ATTENTION_MATH_H_
#define VERDICT_ENGINE_CUDA_ATTENTION_MATH_H_

#include <cmath>
#include <cstdint>

#include "engine/kernels/op_math.h"

namespace verdict::engine::cuda_math {

// Paged KV cache: a sequence's positions live in fixed-size blocks of `block_positions`; one block
// holds every layer of its slice: keys [layer][position in block][kv_dim], then values likewise.
struct KvBlockLayout {
  int64_t num_layers = 0;
  int64_t block_positions = 0;
  int64_t kv_dim = 0;  // num_kv_heads * head_dim

  VERDICT_HOST_DEVICE int64_t ElementsPerBlock() const {
    return 2 * num_layers * block_positions * kv_dim;
  }
  // Element offset, inside a block, of the key row (layer, position % block_positions).
  VERDICT_HOST_DEVICE int64_t KeyOffset(int64_t layer, int64_t position) const {
    return (layer * block_positions + position % block_positions) * kv_dim;
  }
  VERDICT_HOST_DEVICE int64_t ValueOffset(int64_t layer, int64_t position) const {
    return num_layers * block_positions * kv_dim + KeyOffset(layer, position);
  }
  // Index into the block table of the block holding `position`.
  VERDICT_HOST_DEVICE int64_t BlockIndex(int64_t position) const {
    return position / block_positions;
  }
};

// Flash-decoding: the keys [0, context) of one query are cut into `num_splits` chunks of
// `split_positions` (the last may be shorter or empty); chunk s covers [begin, end).
VERDICT_HOST_DEVICE inline void SplitRange(int64_t split, int64_t split_positions, int64_t context,
                                           int64_t& begin, int64_t& end) {
  begin = split * split_positions;
  end = begin + split_positions;
  if (end > context) end = context;
  if (begin > end) begin = end;
}

// A chunk's partial result: the max score m, sum of exp(score - m), and the unnormalised
// accumulation sum_j exp(score_j - m) * v_j (per output element, stored beside it).
// Weight of a chunk with max `chunk_max` once the global max is known (0 for an empty chunk).
VERDICT_HOST_DEVICE inline float ChunkWeight(float chunk_max, float global_max) {
  return chunk_max == -INFINITY ? 0.0f : expf(chunk_max - global_max);
}

// Scale applied to q.k (1 / sqrt(head_dim)), as the CPU backend computes it.
VERDICT_HOST_DEVICE inline float AttentionScale(int64_t head_dim) {
  return 1.0f / sqrtf(static_cast<float>(head_dim));
}

// Grouped-query attention: the kv head serving query head `head`.
VERDICT_HOST_DEVICE inline int64_t KvHeadOf(int64_t head, int64_t num_heads, int64_t num_kv_heads) {
  return head / (num_heads / num_kv_heads);
}

// Chooses the chunking for a batch whose longest query sees `max_context` keys: chunks of at least
// `min_split` positions (a multiple of 32), at most `max_splits` of them.
VERDICT_HOST_DEVICE inline void ChooseSplits(int64_t max_context, int64_t min_split,
                                             int64_t max_splits, int64_t& split_positions,
                                             int64_t& num_splits) {
  num_splits = (max_context + min_split - 1) / min_split;
  if (num_splits > max_splits) num_splits = max_splits;
  if (num_splits < 1) num_splits = 1;
  split_positions = (max_context + num_splits - 1) / num_splits;
  split_positions = (split_positions + 31) / 32 * 32;
  num_splits = (max_context + split_positions - 1) / split_positions;
  if (num_splits < 1) num_splits = 1;
}

// The chunk kernel shares each key/value tile it loads among several queries: the query heads of
// one GQA group (same kv head) and consecutive rows of one sequence, at most `max_queries` in all.
// Heads per block: the largest divisor of the group size not above max_queries.
VERDICT_HOST_DEVICE inline int64_t HeadsPerBlock(int64_t num_heads, int64_t num_kv_heads,
                                                 int64_t max_queries) {
  const int64_t group = num_heads / num_kv_heads;
  int64_t heads = group < max_queries ? group : max_queries;
  while (group % heads != 0) --heads;
  return heads;
}
// Rows per block once a block takes `heads_per_block` heads (queries = rows x heads).
VERDICT_HOST_DEVICE inline int64_t RowsPerBlock(int64_t heads_per_block, int64_t max_queries) {
  const int64_t rows = max_queries / heads_per_block;
  return rows < 1 ? 1 : rows;
}
// The chunk kernel also stores the batch's own keys and values into the paged cache (no separate
// launch): of the blocks that share a kv head and a run of rows, the block of chunk 0 whose first
// head starts the GQA group stores them, so each (row, kv head) is written exactly once.
VERDICT_HOST_DEVICE inline bool StoresKeysAndValues(int64_t first_head, int64_t split,
                                                    int64_t num_heads, int64_t num_kv_heads) {
  return split == 0 && first_head % (num_heads / num_kv_heads) == 0;
}
// The keys of the launch's own rows (rows from `launch_row_offset` on) may still be being stored
// by other blocks of the same launch: the kernel reads those from the batch's k and v (rounded to
// the cache's type, rotated again where the launch rotates). Keys before them are in the cache: an
// earlier step's, or rows of this batch stored by an earlier launch (a long prefill runs in several
// launches, in stream order), so a row re-reads at most one launch of batch keys. The batch row of
// `position` in a sequence whose first batch row `row_begin` sits at `start_pos`, or -1 where the
// key is read from the cache.
VERDICT_HOST_DEVICE inline int64_t BatchRowOfPosition(int64_t position, int64_t start_pos,
                                                      int64_t row_begin, int64_t launch_row_offset) {
  const int64_t stored_rows = launch_row_offset > row_begin ? launch_row_offset - row_begin : 0;
  return position >= start_pos + stored_rows ? row_begin + (position - start_pos) : -1;
}
// The chunks of one (run of rows, group of heads) count themselves done on a counter; the last
// to finish merges their partials (no separate combine launch). Counter of the run starting at
// launch-local row `local_row`, for head group `head_group` of `head_groups`.
VERDICT_HOST_DEVICE inline int64_t ChunkCounterIndex(int64_t local_row, int64_t head_group,
                                                     int64_t head_groups) {
  return local_row * head_groups + head_group;
}

// Online softmax over a chunk's key tiles: after a tile whose largest score is `tile_max`, the
// running max becomes NewMax and earlier sums and accumulations are scaled by ChunkWeight(old, new).
VERDICT_HOST_DEVICE inline float NewMax(float running_max, float tile_max) {
  return running_max > tile_max ? running_max : tile_max;
}
// Softmax weight of one score against the running max (0 while every key so far is masked).
VERDICT_HOST_DEVICE inline float ScoreWeight(float score, float running_max) {
  return running_max == -INFINITY ? 0.0f : expf(score - running_max);
}

// ---- tensor-core prefill attention (FlashPrefillKernel) ----
// A block takes kFlashTileRows consecutive query rows of one sequence (a warp per 16, the rows of
// its mma tiles) and one query head, and walks the keys its last row sees in tiles of
// kFlashTileKeys: S = Q K^T and O += P V on the tensor cores (bf16 operands, f32 accumulation),
// with the online softmax in between held in the accumulator registers. Every key comes from the
// cache (the batch's own keys are stored by a launch before it). Scores are kept in base-2 units
// (scaled by log2(e)) so each weight is one exp2.
inline constexpr int kFlashWarps = 4;
inline constexpr int64_t kFlashTileRows = 16 * kFlashWarps;
inline constexpr int64_t kFlashTileKeys = 64;
// Sequences shorter than a tile stay on the chunk kernel (decode, verification blocks: bound by
// reading the cache, which it splits over more blocks).
inline constexpr int64_t kFlashMinRows = kFlashTileRows;
inline constexpr float kLog2e = 1.4426950408889634f;

// Tiles of a sequence's rows (the last may be partial).
VERDICT_HOST_DEVICE inline int64_t FlashTilesOf(int64_t num_tokens) {
  return (num_tokens + kFlashTileRows - 1) / kFlashTileRows;
}
// Batch row computed for row `index` (0..kFlashTileRows-1) of the tile starting at batch row
// `tile_row`: rows past the sequence's last are computed as the last one (never stored), so every
// row of the tile attends to keys that exist.
VERDICT_HOST_DEVICE inline int64_t FlashRowOf(int64_t tile_row, int64_t index, int64_t sequence_end) {
  const int64_t row = tile_row + index;
  return row < sequence_end ? row : sequence_end - 1;
}
// Keys [0, FlashKeyEnd) the tile walks: up to its last row's position.
VERDICT_HOST_DEVICE inline int64_t FlashKeyEnd(int64_t tile_row, int64_t row_begin, int64_t num_tokens,
                                               int64_t start_pos) {
  const int64_t last = FlashRowOf(tile_row, kFlashTileRows - 1, row_begin + num_tokens);
  return start_pos + (last - row_begin) + 1;
}
// exp2(score - max) in base-2 score units; 0 while every key so far is masked (max = -inf).
VERDICT_HOST_DEVICE inline float Exp2Weight(float score, float max) {
  return max == -INFINITY ? 0.0f : exp2f(score - max);
}

}  // namespace verdict::engine::cuda_math

#endif  // VERDICT_ENGINE_CUDA_ATTENTION_MATH_H_
