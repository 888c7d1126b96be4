// SPDX-License-Identifier: Apache-2.0
// Paged-KV attention: the chunk kernel (prefill, decode, verification; flash-decoding split) and
// prefill attention on the tensor cores. The chunk kernel runs in one of two forms:
// - four launches per layer, the path last measured on an H100 (run 10 in docs/gpu-notes.md):
//   RoPE (elementwise_kernels.cu), KvWriteKernel, the chunk kernel reading every key from the
//   cache, AttentionCombineKernel;
// - one launch (AttentionLaunch::one_launch, opt-in until a GPU run verifies it): the chunk
//   kernel stores and rotates the batch's keys itself and the last chunk of each run of rows
//   merges the partials.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <cfloat>
#include <cstdint>

#include "engine/cuda/kernel_util.cuh"
#include "engine/cuda/kernels.h"
#include "engine/cuda/attention_math.h"
#include "engine/cuda/mma_layout.h"
#include "engine/kernels/op_math.h"

namespace verdict::engine::cuda {
namespace {

// ---- attention ---------------------------------------------------------------------------------

// v as the cache stores it.
template <typename KvT>
__device__ __forceinline__ float RoundedTo(float v) {
  KvT stored;
  Store(&stored, v);
  return Load(&stored);
}

// cos and sin of rotary pair `pair` at batch row `row`'s position (as RopeKernel computes them).
__device__ __forceinline__ void RopeCosSin(const AttentionLaunch& a, int64_t row, int64_t pair,
                                           float& cos_v, float& sin_v) {
  const float angle = math::RopeAngle(a.rope_positions[row], a.rope_inv_freq[pair]);
  cos_v = cosf(angle);
  sin_v = sinf(angle);
}

// Element d of batch row `row` of x (the queries or the keys) in the head at `head_offset`, rotated
// if the launch rotates.
__device__ __forceinline__ float RotatedInput(const AttentionLaunch& a, const float* x,
                                              int64_t x_stride, int64_t row, int64_t head_offset,
                                              int64_t d) {
  const float* h = x + row * x_stride + head_offset;
  if (a.rope_positions == nullptr) return h[d];
  int64_t pair, partner;
  bool first;
  math::RopePairOfElement(d, a.head_dim, a.rope_interleaved, pair, partner, first);
  float cos_v, sin_v;
  RopeCosSin(a, row, pair, cos_v, sin_v);
  return math::RotatedElement(h[d], h[partner], first, cos_v, sin_v);
}
// The key's element (the same value whichever block computes it: stored into the cache by one,
// read from the batch by the others).
__device__ __forceinline__ float BatchKey(const AttentionLaunch& a, int64_t row, int64_t head_offset,
                                          int64_t d) {
  return RotatedInput(a, a.k, a.k_stride, row, head_offset, d);
}

// Four-launch form: one block per (row, 256 elements of the row's keys and values).
constexpr int kKvWriteThreads = 256;
template <typename KvT>
__global__ void KvWriteKernel(AttentionLaunch a) {
  WaitForPredecessor();
  const int64_t row = blockIdx.x;
  const int64_t e = blockIdx.y * int64_t{kKvWriteThreads} + threadIdx.x;
  if (e >= a.layout.kv_dim) return;
  const DeviceSequence seq = a.sequences[a.row_sequence[row]];
  const int64_t position = seq.start_pos + (row - seq.row_begin);
  KvT* block = reinterpret_cast<KvT*>(seq.block_table[a.layout.BlockIndex(position)]);
  Store(block + a.layout.KeyOffset(a.layer, position) + e, a.k[row * a.k_stride + e]);
  Store(block + a.layout.ValueOffset(a.layer, position) + e, a.v[row * a.v_stride + e]);
}

constexpr int kAttentionThreads = 128;
constexpr int kAttentionWarps = kAttentionThreads / 32;
// Queries (rows x heads of one kv head) sharing each key/value tile a block loads.
constexpr int kMaxTileQueries = 8;
// Accumulator groups of 4 dims (float4) a thread holds: queries x head_dim / 4 / threads.
constexpr int kMaxAccGroups = kMaxTileQueries * kMaxAttentionHeadDim / 4 / kAttentionThreads;

// Positions per key/value tile: two tiles of f32 [positions][head_dim] stay under 48 KiB of shared
// memory with the queries beside them.
__host__ __device__ constexpr int64_t TilePositions(int64_t head_dim) {
  return head_dim <= 128 ? 32 : 16;
}

// Shared-memory layout of the chunk kernel, in floats (block addresses after it, 8-byte aligned).
struct ChunkSharedLayout {
  int64_t tile, key_stride, q, keys, values, weights, stats, floats;
  __host__ __device__ explicit ChunkSharedLayout(int64_t head_dim) {
    tile = TilePositions(head_dim);
    // Padded by 4: float4 reads of consecutive keys by 8 lanes (one shared-memory phase) fall in
    // distinct banks, and rows stay 16-byte aligned.
    key_stride = head_dim + 4;
    q = 0;
    keys = q + kMaxTileQueries * head_dim;
    values = keys + tile * key_stride;
    weights = values + tile * head_dim;
    stats = weights + kMaxTileQueries * tile;  // running max, sum, correction per query
    floats = stats + 3 * kMaxTileQueries;
  }
};

// The last chunk of a run of rows to finish merges the chunks' partials of its queries into the
// output: a warp per query reads the chunks' maxima and sums (a lane per chunk), then every dim sums
// over the chunks. `split_weight`: kAttentionWarps x kMaxAttentionSplits floats of shared memory.
__device__ void MergeChunks(const AttentionLaunch& a, int64_t row, int64_t row_offset, int64_t queries,
                            int64_t first_head, int64_t heads_per_block, float* split_weight) {
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  const int64_t head_dim = a.head_dim;
  const int64_t entry = head_dim + 2;
  float* weights = split_weight + warp * kMaxAttentionSplits;
  for (int64_t query = warp; query < queries; query += kAttentionWarps) {
    const int64_t out_row = row + query / heads_per_block;
    const int64_t head = first_head + query % heads_per_block;
    // Written by other blocks of this launch: read through L2 (__ldcg), never a stale L1 line.
    const float* partials =
        a.partials + ((out_row - row_offset) * a.num_heads + head) * a.num_splits * entry;
    float local_max = -INFINITY;
    for (int64_t s = lane; s < a.num_splits; s += 32) {
      local_max = fmaxf(local_max, __ldcg(partials + s * entry + head_dim));
    }
    const float global_max = WarpReduce<MaxOp>(local_max);
    float local_sum = 0.0f;
    for (int64_t s = lane; s < a.num_splits; s += 32) {
      const float w = cuda_math::ChunkWeight(__ldcg(partials + s * entry + head_dim), global_max);
      weights[s] = w;
      local_sum += w * __ldcg(partials + s * entry + head_dim + 1);
    }
    const float denominator = WarpSum(local_sum);
    __syncwarp();
    float* out = a.out + out_row * a.out_stride + head * head_dim;
    const int64_t copy_offset = (out_row * a.num_heads + head) * head_dim;  // the copy is dense
    for (int64_t d = lane; d < head_dim; d += 32) {
      float acc = 0.0f;
#pragma unroll 4
      for (int64_t s = 0; s < a.num_splits; ++s) acc += weights[s] * __ldcg(partials + s * entry + d);
      const float y = acc / denominator;
      out[d] = y;
      if (a.out_copy16.data != nullptr) StoreCopy(a.out_copy16, copy_offset + d, y);
    }
    __syncwarp();  // weights are rewritten for the warp's next query
  }
}

// One block per (group of query heads of one kv head, chunk of keys, group of rows): every key and
// value of the chunk is read from the paged cache once per block and used by all its queries (the
// heads of a GQA group x consecutive rows of one sequence: a verification block's rows share it).
// Keys go through shared memory in tiles, with an online softmax across tiles; the result is the
// chunk's partial (unnormalised accumulation, max, sum) per (row, head), which the last chunk of
// the run to finish merges (MergeChunks). Partial layout: [row][head][split] x (head_dim + 2)
// floats. The kernel also stores the rows' own keys and values into the cache (see
// cuda_math::StoresKeysAndValues) and reads them from the batch, not from the cache; with
// rope_positions it rotates the queries and those keys as it loads them.
static_assert(kAttentionWarps * kMaxAttentionSplits <= TilePositions(8) * (8 + 4),
              "MergeChunks' weights fit in the smallest key tile (head_dim 8)");
template <typename KvT, bool kOneLaunch>
__global__ void AttentionChunkKernel(AttentionLaunch a, int64_t row_offset, int64_t row_end,
                                     int64_t heads_per_block, int64_t rows_per_block) {
  WaitForPredecessor();
  extern __shared__ float shared[];
  __shared__ bool last_chunk;
  const int64_t head_dim = a.head_dim;
  const ChunkSharedLayout layout(head_dim);
  float* q_s = shared + layout.q;
  float* keys = shared + layout.keys;
  float* values = shared + layout.values;
  float* weights = shared + layout.weights;
  float* running_max = shared + layout.stats;
  float* running_sum = running_max + kMaxTileQueries;
  float* correction = running_sum + kMaxTileQueries;
  auto* blocks = reinterpret_cast<const KvT**>(
      (reinterpret_cast<uintptr_t>(shared + layout.floats) + 7) & ~uintptr_t{7});

  const int64_t first_head = blockIdx.x * heads_per_block;
  const int64_t split = blockIdx.y;
  const int64_t kv_offset = cuda_math::KvHeadOf(first_head, a.num_heads, a.num_kv_heads) * head_dim;
  const float scale = cuda_math::AttentionScale(head_dim);
  const int64_t tile = layout.tile;
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  int64_t row = row_offset + blockIdx.z * rows_per_block;
  const int64_t rows_end = row + rows_per_block < row_end ? row + rows_per_block : row_end;

  // Rows of different sequences see different caches: one segment per sequence in the range.
  while (row < rows_end) {
    const DeviceSequence seq = a.sequences[a.row_sequence[row]];
    const int64_t seq_end = seq.row_begin + seq.num_tokens;
    const int64_t rows = (seq_end < rows_end ? seq_end : rows_end) - row;
    const int64_t queries = rows * heads_per_block;  // query i: row i / heads, head i % heads
    const int64_t first_position = seq.start_pos + (row - seq.row_begin);
    int64_t begin, end;  // keys the last row sees in this chunk (earlier rows see a prefix)
    cuda_math::SplitRange(split, a.split_positions, first_position + rows, begin, end);

    if (kOneLaunch && cuda_math::StoresKeysAndValues(first_head, split, a.num_heads, a.num_kv_heads)) {
      for (int64_t i = threadIdx.x; i < rows * head_dim; i += blockDim.x) {
        const int64_t r = row + i / head_dim;
        const int64_t position = first_position + i / head_dim;
        const int64_t d = i % head_dim;
        KvT* block = reinterpret_cast<KvT*>(seq.block_table[a.layout.BlockIndex(position)]);
        Store(block + a.layout.KeyOffset(a.layer, position) + kv_offset + d, BatchKey(a, r, kv_offset, d));
        Store(block + a.layout.ValueOffset(a.layer, position) + kv_offset + d,
              a.v[r * a.v_stride + kv_offset + d]);
      }
    }

    if (a.rope_positions == nullptr) {
      for (int64_t i = threadIdx.x; i < queries * head_dim; i += blockDim.x) {
        const int64_t query = i / head_dim;
        const int64_t r = row + query / heads_per_block;
        q_s[i] = a.q[r * a.q_stride + (first_head + query % heads_per_block) * head_dim + i % head_dim];
      }
    } else {  // a thread per rotated pair
      const int64_t half = head_dim / 2;
      for (int64_t i = threadIdx.x; i < queries * half; i += blockDim.x) {
        const int64_t query = i / half;
        const int64_t pair = i % half;
        const int64_t r = row + query / heads_per_block;
        const float* q = a.q + r * a.q_stride + (first_head + query % heads_per_block) * head_dim;
        int64_t first, second;
        math::RopePairIndices(pair, head_dim, a.rope_interleaved, first, second);
        float x0 = q[first], x1 = q[second];
        float cos_v, sin_v;
        RopeCosSin(a, r, pair, cos_v, sin_v);
        math::RotatePair(x0, x1, cos_v, sin_v);
        q_s[query * head_dim + first] = x0;
        q_s[query * head_dim + second] = x1;
      }
    }
    if (threadIdx.x < queries) {
      running_max[threadIdx.x] = -INFINITY;
      running_sum[threadIdx.x] = 0.0f;
    }
    const int64_t first_block = begin < end ? a.layout.BlockIndex(begin) : 0;
    const int64_t num_blocks = begin < end ? a.layout.BlockIndex(end - 1) - first_block + 1 : 0;
    for (int64_t i = threadIdx.x; i < num_blocks; i += blockDim.x) {
      blocks[i] = reinterpret_cast<const KvT*>(seq.block_table[first_block + i]);
    }
    const int64_t head_groups = head_dim / 4;
    float4 acc[kMaxAccGroups];
#pragma unroll
    for (int j = 0; j < kMaxAccGroups; ++j) acc[j] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);

    for (int64_t tile_begin = begin; tile_begin < end; tile_begin += tile) {
      const int64_t count = end - tile_begin < tile ? end - tile_begin : tile;
      __syncthreads();  // q, stats and block addresses written; the previous tile fully used
      // Load the tile's keys and values, 8 elements per thread and step (16-byte loads: head_dim is
      // a multiple of 8, so rows are 16-byte aligned in the pool).
      const int64_t groups = head_dim / 8;
      for (int64_t i = threadIdx.x; i < count * groups; i += blockDim.x) {
        const int64_t t = i / groups;
        const int64_t d = (i % groups) * 8;
        const int64_t p = tile_begin + t;
        float k8[8], v8[8];
        const int64_t batch_row =
            kOneLaunch ? cuda_math::BatchRowOfPosition(p, seq.start_pos, seq.row_begin, row_offset)
                       : -1;
        if (batch_row >= 0) {
#pragma unroll
          for (int j = 0; j < 8; ++j) {
            k8[j] = RoundedTo<KvT>(BatchKey(a, batch_row, kv_offset, d + j));
            v8[j] = RoundedTo<KvT>(a.v[batch_row * a.v_stride + kv_offset + d + j]);
          }
        } else {
          const KvT* base = blocks[a.layout.BlockIndex(p) - first_block];
          Load8(base + a.layout.KeyOffset(a.layer, p) + kv_offset + d, k8);
          Load8(base + a.layout.ValueOffset(a.layer, p) + kv_offset + d, v8);
        }
        auto* key4 = reinterpret_cast<float4*>(keys + t * layout.key_stride + d);
        auto* value4 = reinterpret_cast<float4*>(values + t * head_dim + d);
        key4[0] = make_float4(k8[0], k8[1], k8[2], k8[3]);
        key4[1] = make_float4(k8[4], k8[5], k8[6], k8[7]);
        value4[0] = make_float4(v8[0], v8[1], v8[2], v8[3]);
        value4[1] = make_float4(v8[4], v8[5], v8[6], v8[7]);
      }
      __syncthreads();
      // Scores, causal per row: query i's row sees positions <= its own.
      for (int64_t i = threadIdx.x; i < queries * tile; i += blockDim.x) {
        const int64_t query = i / tile;
        const int64_t t = i % tile;
        const int64_t p = tile_begin + t;
        float score = -INFINITY;
        if (t < count && p <= first_position + query / heads_per_block) {
          const auto* qv = reinterpret_cast<const float4*>(q_s + query * head_dim);
          const auto* kv = reinterpret_cast<const float4*>(keys + t * layout.key_stride);
          float dot = 0.0f;
#pragma unroll 4
          for (int64_t d = 0; d < head_dim / 4; ++d) {
            const float4 x = qv[d];
            const float4 y = kv[d];
            dot += x.x * y.x + x.y * y.y + x.z * y.z + x.w * y.w;
          }
          score = dot * scale;
        }
        weights[i] = score;
      }
      __syncthreads();
      // Online softmax: one warp per query (tile <= 32 positions: one per lane).
      for (int64_t query = warp; query < queries; query += kAttentionWarps) {
        float* w = weights + query * tile;
        const float score = lane < tile ? w[lane] : -INFINITY;
        const float tile_max = WarpReduce<MaxOp>(score);
        const float old_max = running_max[query];
        const float new_max = cuda_math::NewMax(old_max, tile_max);
        const float weight = cuda_math::ScoreWeight(score, new_max);
        const float tile_sum = WarpSum(weight);
        if (lane < tile) w[lane] = weight;
        if (lane == 0) {
          const float c = cuda_math::ChunkWeight(old_max, new_max);
          correction[query] = c;
          running_sum[query] = running_sum[query] * c + tile_sum;
          running_max[query] = new_max;
        }
      }
      __syncthreads();
      // Accumulate: thread owns 4-dim groups threadIdx.x + j * blockDim.x of [queries][head_dim].
#pragma unroll
      for (int j = 0; j < kMaxAccGroups; ++j) {
        const int64_t g = threadIdx.x + static_cast<int64_t>(j) * blockDim.x;
        if (g < queries * head_groups) {
          const int64_t query = g / head_groups;
          const auto* v4 = reinterpret_cast<const float4*>(values) + g % head_groups;
          const float* w = weights + query * tile;
          float4 sum = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll 4
          for (int64_t t = 0; t < count; ++t) {
            const float wt = w[t];
            const float4 v = v4[t * head_groups];
            sum.x += wt * v.x;
            sum.y += wt * v.y;
            sum.z += wt * v.z;
            sum.w += wt * v.w;
          }
          const float c = correction[query];
          acc[j] = make_float4(acc[j].x * c + sum.x, acc[j].y * c + sum.y, acc[j].z * c + sum.z,
                               acc[j].w * c + sum.w);
        }
      }
    }
    __syncthreads();  // running stats final
#pragma unroll
    for (int j = 0; j < kMaxAccGroups; ++j) {
      const int64_t g = threadIdx.x + static_cast<int64_t>(j) * blockDim.x;
      if (g < queries * head_groups) {
        const int64_t query = g / head_groups;
        const int64_t d = (g % head_groups) * 4;
        const int64_t local_row = row + query / heads_per_block - row_offset;
        const int64_t head = first_head + query % heads_per_block;
        float* partial = a.partials + ((local_row * a.num_heads + head) * a.num_splits + split) * (head_dim + 2);
        partial[d] = acc[j].x;  // (head_dim + 2)-float entries: not 16-byte aligned
        partial[d + 1] = acc[j].y;
        partial[d + 2] = acc[j].z;
        partial[d + 3] = acc[j].w;
        if (d == 0) {
          partial[head_dim] = running_max[query];
          partial[head_dim + 1] = running_sum[query];
        }
      }
    }
    if constexpr (kOneLaunch) {
      // Count this chunk done (partials visible device-wide first); the last one merges.
      __threadfence();
      __syncthreads();
      if (threadIdx.x == 0) {
        int* counter = a.chunk_counters +
                       cuda_math::ChunkCounterIndex(row - row_offset, blockIdx.x, gridDim.x);
        last_chunk = atomicAdd(counter, 1) == static_cast<int>(gridDim.y) - 1;
        if (last_chunk) *counter = 0;  // every chunk has counted: ready for the next launch
      }
      __syncthreads();
      if (last_chunk) {
        __threadfence();
        MergeChunks(a, row, row_offset, queries, first_head, heads_per_block, keys);
      }
    }
    row += rows;
    __syncthreads();  // before the next segment overwrites q, the stats and the key tile
  }
}

// Four-launch form: one block per (head, row) merges the splits' partials into the output. The
// splits' maxima and sums are read in parallel (one thread each), then every dim sums over them.
static_assert(kMaxAttentionSplits <= kAttentionThreads, "one thread per split");
__global__ void AttentionCombineKernel(AttentionLaunch a, int64_t row_offset) {
  WaitForPredecessor();
  __shared__ float split_weight[kMaxAttentionSplits];
  const int64_t head = blockIdx.x;
  const int64_t local_row = blockIdx.y;
  const int64_t row = row_offset + local_row;
  const int64_t head_dim = a.head_dim;
  const int64_t entry = head_dim + 2;
  const float* partials = a.partials + (local_row * a.num_heads + head) * a.num_splits * entry;
  const bool has_split = threadIdx.x < a.num_splits;
  const float split_max = has_split ? partials[threadIdx.x * entry + head_dim] : -INFINITY;
  const float global_max = BlockReduce<MaxOp>(split_max);
  const float weight = has_split ? cuda_math::ChunkWeight(split_max, global_max) : 0.0f;
  const float denominator = BlockSum(has_split ? weight * partials[threadIdx.x * entry + head_dim + 1] : 0.0f);
  if (has_split) split_weight[threadIdx.x] = weight;
  __syncthreads();
  float* out = a.out + row * a.out_stride + head * head_dim;
  const int64_t copy_offset = (row * a.num_heads + head) * head_dim;  // the copy is dense
  for (int64_t d = threadIdx.x; d < head_dim; d += blockDim.x) {
    float acc = 0.0f;
#pragma unroll 4
    for (int64_t s = 0; s < a.num_splits; ++s) acc += split_weight[s] * partials[s * entry + d];
    const float y = acc / denominator;
    out[d] = y;
    if (a.out_copy16.data != nullptr) StoreCopy(a.out_copy16, copy_offset + d, y);
  }
}

template <typename KvT>
void AttentionTyped(const AttentionLaunch& a, LaunchStream stream) {
  if (!a.one_launch) {
    const dim3 write_grid(static_cast<unsigned>(a.rows),
                          static_cast<unsigned>((a.layout.kv_dim + kKvWriteThreads - 1) / kKvWriteThreads));
    Launch(KvWriteKernel<KvT>, write_grid, kKvWriteThreads, 0, stream, a);
  }
  const int64_t heads = cuda_math::HeadsPerBlock(a.num_heads, a.num_kv_heads, kMaxTileQueries);
  const int64_t rows_per_block = cuda_math::RowsPerBlock(heads, kMaxTileQueries);
  const int64_t max_blocks = a.split_positions / a.layout.block_positions + 2;
  const size_t shared_bytes =
      ChunkSharedLayout(a.head_dim).floats * sizeof(float) + 8 + max_blocks * sizeof(void*);
  for (int64_t offset = 0; offset < a.rows; offset += a.partial_rows) {
    const int64_t rows = a.rows - offset < a.partial_rows ? a.rows - offset : a.partial_rows;
    const dim3 grid(static_cast<unsigned>(a.num_heads / heads), static_cast<unsigned>(a.num_splits),
                    static_cast<unsigned>((rows + rows_per_block - 1) / rows_per_block));
    if (a.one_launch) {
      Launch(AttentionChunkKernel<KvT, true>, grid, kAttentionThreads, shared_bytes, stream, a,
             offset, offset + rows, heads, rows_per_block);
    } else {
      Launch(AttentionChunkKernel<KvT, false>, grid, kAttentionThreads, shared_bytes, stream, a,
             offset, offset + rows, heads, rows_per_block);
      const dim3 combine_grid(static_cast<unsigned>(a.num_heads), static_cast<unsigned>(rows));
      Launch(AttentionCombineKernel, combine_grid, kAttentionThreads, 0, stream, a, offset);
    }
  }
}

// ---- tensor-core prefill attention ----------------------------------------------------------

// Stores the batch's keys (rotated where the launch rotates) and values into the paged cache, a
// block per row: the prefill kernel then reads every key from the cache.
template <typename KvT>
__global__ void StoreBatchKeysValuesKernel(AttentionLaunch a) {
  WaitForPredecessor();
  const int64_t row = blockIdx.x;
  const DeviceSequence seq = a.sequences[a.row_sequence[row]];
  const int64_t position = seq.start_pos + (row - seq.row_begin);
  KvT* block = reinterpret_cast<KvT*>(seq.block_table[a.layout.BlockIndex(position)]);
  KvT* keys = block + a.layout.KeyOffset(a.layer, position);
  KvT* values = block + a.layout.ValueOffset(a.layer, position);
  for (int64_t i = threadIdx.x; i < a.layout.kv_dim; i += blockDim.x) {
    const int64_t head_offset = i / a.head_dim * a.head_dim;
    Store(keys + i, BatchKey(a, row, head_offset, i - head_offset));
    Store(values + i, a.v[row * a.v_stride + i]);
  }
}

// Two consecutive bf16 values of shared memory as one mma operand register.
__device__ __forceinline__ uint32_t SharedPair(const __nv_bfloat16* p) {
  return *reinterpret_cast<const uint32_t*>(p);
}

// Eight bf16 elements, from `offset` on, of position p's key (or value) row in the cache as one
// 16-byte load; zeros from key_end on.
__device__ __forceinline__ uint4 CachedEights(const AttentionLaunch& a, const DeviceSequence& seq,
                                              int64_t p, int64_t key_end, bool values,
                                              int64_t offset) {
  if (p >= key_end) return make_uint4(0, 0, 0, 0);
  const auto* block = reinterpret_cast<const __nv_bfloat16*>(seq.block_table[a.layout.BlockIndex(p)]);
  const int64_t row = values ? a.layout.ValueOffset(a.layer, p) : a.layout.KeyOffset(a.layer, p);
  return *reinterpret_cast<const uint4*>(block + row + offset);
}

// Causal attention of one tile of a sequence's rows (cuda_math::kFlashTileRows, a warp per 16)
// for one query head, on the tensor cores: per key tile, S = Q K^T (m16n8k16, bf16 in, f32
// accumulate), the mask and the online softmax on S's registers, then O += P V with P taken from
// those registers as the A operand (operand placement: mma_layout.h; emulated on the CPU in
// attention_math_test). Keys come from the bf16 cache; values are stored transposed in shared
// memory so each B register is one 32-bit read. Rows are padded by 8 elements: a quad's reads of
// 8 keys (or 8 dims) then fall in 32 distinct banks.
template <int D>
__global__ void __launch_bounds__(cuda_math::kFlashWarps * 32)
    FlashPrefillKernel(AttentionLaunch a) {
  WaitForPredecessor();
  using cuda_math::kFlashTileKeys;
  constexpr int kKeys = static_cast<int>(kFlashTileKeys);
  constexpr int kKeyStride = D + 8;
  constexpr int kValueStride = kKeys + 8;
  __shared__ __align__(16) __nv_bfloat16 keys[kKeys * kKeyStride];
  __shared__ __align__(16) __nv_bfloat16 values_t[D * kValueStride];  // [dim][key]
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  const int32_t sequence = a.flash_tiles[2 * blockIdx.x];
  const int64_t tile_row = a.flash_tiles[2 * blockIdx.x + 1];
  const DeviceSequence seq = a.sequences[sequence];
  const int64_t sequence_end = seq.row_begin + seq.num_tokens;
  const int64_t head = blockIdx.y;
  const int64_t kv_offset = cuda_math::KvHeadOf(head, a.num_heads, a.num_kv_heads) * D;
  const int64_t key_end =
      cuda_math::FlashKeyEnd(tile_row, seq.row_begin, seq.num_tokens, seq.start_pos);
  const float scale = cuda_math::AttentionScale(D) * cuda_math::kLog2e;

  // The warp's query rows as A operands (rotated, rounded to bf16), and the lane's two rows'
  // positions (accumulator element e belongs to row half e / 2).
  uint32_t q_frag[D / 16][4];
#pragma unroll
  for (int kc = 0; kc < D / 16; ++kc) {
#pragma unroll
    for (int reg = 0; reg < 4; ++reg) {
      const int64_t row =
          cuda_math::FlashRowOf(tile_row, warp * 16 + cuda_math::MmaARow(lane, reg), sequence_end);
      const int64_t d = 16 * kc + cuda_math::MmaACol(lane, reg, 0);
      q_frag[kc][reg] = PackBf16x2(RotatedInput(a, a.q, a.q_stride, row, head * D, d),
                                   RotatedInput(a, a.q, a.q_stride, row, head * D, d + 1));
    }
  }
  int64_t positions[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int64_t row =
        cuda_math::FlashRowOf(tile_row, warp * 16 + cuda_math::MmaAccRow(lane, 2 * h), sequence_end);
    positions[h] = seq.start_pos + (row - seq.row_begin);
  }

  float o[D / 8][4] = {};
  float row_max[2] = {-INFINITY, -INFINITY};
  float row_sum[2] = {0.0f, 0.0f};  // over this lane's columns; the quad's sum at the end
  for (int64_t tile_begin = 0; tile_begin < key_end; tile_begin += kKeys) {
    __syncthreads();  // every warp is done with the previous tile
    // Keys row by row (consecutive threads along a key: coalesced); values key by key (consecutive
    // threads on consecutive keys: their transposed 2-byte stores hit distinct banks). Keys past
    // the tile's end are zeros (masked, and 0 x 0 in P V).
    for (int i = threadIdx.x; i < kKeys * (D / 8); i += blockDim.x) {
      const int key = i / (D / 8);
      const int d = i % (D / 8) * 8;
      *reinterpret_cast<uint4*>(keys + key * kKeyStride + d) =
          CachedEights(a, seq, tile_begin + key, key_end, /*values=*/false, kv_offset + d);
    }
    for (int i = threadIdx.x; i < kKeys * (D / 8); i += blockDim.x) {
      const int key = i % kKeys;
      const int d = i / kKeys * 8;
      const uint4 v8 = CachedEights(a, seq, tile_begin + key, key_end, /*values=*/true, kv_offset + d);
      const auto* v = reinterpret_cast<const __nv_bfloat16*>(&v8);
#pragma unroll
      for (int j = 0; j < 8; ++j) values_t[(d + j) * kValueStride + key] = v[j];
    }
    __syncthreads();

    // S = Q K^T for the warp's 16 rows x the tile's keys, 8 keys per accumulator tile.
    float s[kKeys / 8][4] = {};
#pragma unroll
    for (int j = 0; j < kKeys / 8; ++j) {
      const __nv_bfloat16* key_row = keys + (8 * j + cuda_math::MmaBCol(lane)) * kKeyStride;
#pragma unroll
      for (int kc = 0; kc < D / 16; ++kc) {
        MmaBf16(s[j], q_frag[kc], SharedPair(key_row + 16 * kc + cuda_math::MmaBRow(lane, 0, 0)),
                SharedPair(key_row + 16 * kc + cuda_math::MmaBRow(lane, 1, 0)));
      }
    }
    // Causal mask and scale; each row's max over the tile (its scores sit in one quad).
    float tile_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int j = 0; j < kKeys / 8; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int64_t key = tile_begin + 8 * j + cuda_math::MmaAccCol(lane, e);
        const float score = key <= positions[e / 2] ? s[j][e] * scale : -INFINITY;
        s[j][e] = score;
        tile_max[e / 2] = fmaxf(tile_max[e / 2], score);
      }
    }
    float correction[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const float new_max = cuda_math::NewMax(row_max[h], WarpReduce<MaxOp, 4>(tile_max[h]));
      correction[h] = cuda_math::Exp2Weight(row_max[h], new_max);
      row_max[h] = new_max;
      row_sum[h] *= correction[h];
    }
#pragma unroll
    for (int jd = 0; jd < D / 8; ++jd) {
#pragma unroll
      for (int e = 0; e < 4; ++e) o[jd][e] *= correction[e / 2];
    }
    // Weights, rounded to bf16 as the product sees them (the sums use the same values).
#pragma unroll
    for (int j = 0; j < kKeys / 8; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float rounded =
            RoundedTo<__nv_bfloat16>(cuda_math::Exp2Weight(s[j][e], row_max[e / 2]));
        s[j][e] = rounded;
        row_sum[e / 2] += rounded;
      }
    }
    // O += P V, 16 keys per product: P from two accumulator tiles, V^T rows from shared memory.
#pragma unroll
    for (int i = 0; i < kKeys / 16; ++i) {
      uint32_t p_frag[4];
#pragma unroll
      for (int reg = 0; reg < 4; ++reg) {
        const float* tile = s[2 * i + cuda_math::AccTileOfA(reg)];
        p_frag[reg] = PackBf16x2(tile[cuda_math::AccElementOfA(reg, 0)],
                                 tile[cuda_math::AccElementOfA(reg, 1)]);
      }
#pragma unroll
      for (int jd = 0; jd < D / 8; ++jd) {
        const __nv_bfloat16* value_row =
            values_t + (8 * jd + cuda_math::MmaBCol(lane)) * kValueStride + 16 * i;
        MmaBf16(o[jd], p_frag, SharedPair(value_row + cuda_math::MmaBRow(lane, 0, 0)),
                SharedPair(value_row + cuda_math::MmaBRow(lane, 1, 0)));
      }
    }
  }
#pragma unroll
  for (int h = 0; h < 2; ++h) row_sum[h] = WarpReduce<SumOp, 4>(row_sum[h]);
#pragma unroll
  for (int jd = 0; jd < D / 8; ++jd) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int64_t row = tile_row + warp * 16 + cuda_math::MmaAccRow(lane, e);
      if (row >= sequence_end) continue;
      const int64_t d = 8 * jd + cuda_math::MmaAccCol(lane, e);
      const float y = o[jd][e] / row_sum[e / 2];
      a.out[row * a.out_stride + head * D + d] = y;
      if (a.out_copy16.data != nullptr) {
        StoreCopy(a.out_copy16, (row * a.num_heads + head) * D + d, y);
      }
    }
  }
}

void FlashPrefill(const AttentionLaunch& a, LaunchStream stream) {
  Launch(StoreBatchKeysValuesKernel<__nv_bfloat16>, dim3(static_cast<unsigned>(a.rows)), 128, 0,
         stream, a);
  const dim3 grid(static_cast<unsigned>(a.num_flash_tiles), static_cast<unsigned>(a.num_heads));
  if (a.head_dim == 64) {
    Launch(FlashPrefillKernel<64>, grid, cuda_math::kFlashWarps * 32, 0, stream, a);
  } else {
    Launch(FlashPrefillKernel<128>, grid, cuda_math::kFlashWarps * 32, 0, stream, a);
  }
}

}  // namespace

bool FlashPrefillApplies(StorageType kv_type, int64_t head_dim) {
  return kv_type == StorageType::kBF16 && (head_dim == 64 || head_dim == 128);
}

int64_t AttentionCounters(int64_t partial_rows, int64_t num_heads, int64_t num_kv_heads) {
  return partial_rows * (num_heads / cuda_math::HeadsPerBlock(num_heads, num_kv_heads, kMaxTileQueries));
}

void LaunchAttention(const AttentionLaunch& a, LaunchStream stream) {
  if (a.flash_tiles != nullptr) {
    FlashPrefill(a, stream);
    return;
  }
  if (a.rows == 0) return;
  switch (a.kv_type) {
    case StorageType::kBF16:
      AttentionTyped<__nv_bfloat16>(a, stream);
      break;
    case StorageType::kF16:
      AttentionTyped<__half>(a, stream);
      break;
    case StorageType::kF32:
      AttentionTyped<float>(a, stream);
      break;
    case StorageType::kF8E4M3:  // the KV cache is never FP8
      break;
  }
}

}  // namespace verdict::engine::cuda
