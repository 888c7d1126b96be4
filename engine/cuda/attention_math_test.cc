// SPDX-License-Identifier: Apache-2.0
// The CUDA attention decomposition (paged KV layout, flash-decoding chunks, key tiles with an online
// softmax, partial-softmax merge; the tensor-core prefill's warps and their mma fragments) executed
// on the CPU with the same cuda_math functions the kernels use, against attention computed
// directly in double precision.
#include "engine/cuda/attention_math.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <random>
#include <vector>

#include "engine/cuda/mma_layout.h"
#include "engine/dtype.h"
#include "gtest/gtest.h"

namespace verdict::engine::cuda_math {
namespace {

TEST(ChooseSplitsTest, CoversTheContextWithBoundedChunks) {
  for (int64_t context : {1, 31, 32, 255, 256, 257, 1000, 4096, 100000, 131072}) {
    int64_t split = 0, splits = 0;
    ChooseSplits(context, 256, 64, split, splits);
    EXPECT_EQ(split % 32, 0) << context;
    EXPECT_LE(splits, 64) << context;
    EXPECT_GE(splits * split, context) << context;
    EXPECT_LT((splits - 1) * split, context) << context;  // no chunk entirely past the end
  }
}

TEST(KvBlockLayoutTest, EveryPositionHasItsOwnSlot) {
  const KvBlockLayout layout{3, 16, 8};
  std::vector<int> used(layout.ElementsPerBlock() * 4, 0);
  for (int64_t layer = 0; layer < 3; ++layer) {
    for (int64_t pos = 0; pos < 64; ++pos) {
      for (int64_t e = 0; e < 8; ++e) {
        ++used[layout.BlockIndex(pos) * layout.ElementsPerBlock() + layout.KeyOffset(layer, pos) + e];
        ++used[layout.BlockIndex(pos) * layout.ElementsPerBlock() + layout.ValueOffset(layer, pos) + e];
      }
    }
  }
  for (int u : used) EXPECT_EQ(u, 1);
}

// Attention of one query over `context` keys through blocks (scattered in a pool in reverse order,
// as a real pool hands them out) and chunks, merged with ChunkWeight.
TEST(SplitAttentionTest, MatchesDirectSoftmaxAttention) {
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const int64_t num_heads = 8, num_kv_heads = 2, head_dim = 64, layers = 2, layer = 1;
  const KvBlockLayout layout{layers, 16, num_kv_heads * head_dim};
  for (int64_t context : {1, 17, 300, 2100}) {
    const int64_t blocks = (context + 15) / 16;
    std::vector<float> pool(blocks * layout.ElementsPerBlock());
    std::vector<int64_t> table(blocks);
    for (int64_t b = 0; b < blocks; ++b) table[b] = (blocks - 1 - b) * layout.ElementsPerBlock();
    std::vector<float> keys(context * layout.kv_dim), values(keys.size());
    for (float& x : keys) x = normal(rng);
    for (float& x : values) x = normal(rng);
    for (int64_t p = 0; p < context; ++p) {
      for (int64_t e = 0; e < layout.kv_dim; ++e) {
        pool[table[layout.BlockIndex(p)] + layout.KeyOffset(layer, p) + e] = keys[p * layout.kv_dim + e];
        pool[table[layout.BlockIndex(p)] + layout.ValueOffset(layer, p) + e] = values[p * layout.kv_dim + e];
      }
    }
    int64_t split = 0, splits = 0;
    ChooseSplits(context, 64, 64, split, splits);
    for (int64_t head = 0; head < num_heads; ++head) {
      std::vector<float> q(head_dim);
      for (float& x : q) x = normal(rng);
      const int64_t kv = KvHeadOf(head, num_heads, num_kv_heads) * head_dim;
      // Reference: direct softmax in double.
      std::vector<double> scores(context);
      double max_score = -INFINITY;
      for (int64_t p = 0; p < context; ++p) {
        double dot = 0;
        for (int64_t d = 0; d < head_dim; ++d) dot += double{q[d]} * keys[p * layout.kv_dim + kv + d];
        scores[p] = dot / std::sqrt(double(head_dim));
        max_score = std::max(max_score, scores[p]);
      }
      std::vector<double> expected(head_dim, 0.0);
      double total = 0;
      for (int64_t p = 0; p < context; ++p) total += std::exp(scores[p] - max_score);
      for (int64_t p = 0; p < context; ++p) {
        const double w = std::exp(scores[p] - max_score) / total;
        for (int64_t d = 0; d < head_dim; ++d) expected[d] += w * values[p * layout.kv_dim + kv + d];
      }
      // The kernels' decomposition.
      std::vector<float> chunk_max(splits), chunk_sum(splits), acc(splits * head_dim, 0.0f);
      for (int64_t s = 0; s < splits; ++s) {
        int64_t begin, end;
        SplitRange(s, split, context, begin, end);
        std::vector<float> sc;
        float m = -INFINITY;
        for (int64_t p = begin; p < end; ++p) {
          const float* key = &pool[table[layout.BlockIndex(p)] + layout.KeyOffset(layer, p) + kv];
          float dot = 0;
          for (int64_t d = 0; d < head_dim; ++d) dot += q[d] * key[d];
          sc.push_back(dot * AttentionScale(head_dim));
          m = std::max(m, sc.back());
        }
        float sum = 0;
        for (int64_t p = begin; p < end; ++p) {
          const float e = expf(sc[p - begin] - m);
          sum += e;
          const float* value = &pool[table[layout.BlockIndex(p)] + layout.ValueOffset(layer, p) + kv];
          for (int64_t d = 0; d < head_dim; ++d) acc[s * head_dim + d] += e * value[d];
        }
        chunk_max[s] = begin < end ? m : -INFINITY;
        chunk_sum[s] = sum;
      }
      float global_max = -INFINITY;
      for (float m : chunk_max) global_max = std::max(global_max, m);
      float denominator = 0;
      for (int64_t s = 0; s < splits; ++s) denominator += ChunkWeight(chunk_max[s], global_max) * chunk_sum[s];
      for (int64_t d = 0; d < head_dim; ++d) {
        float out = 0;
        for (int64_t s = 0; s < splits; ++s) out += ChunkWeight(chunk_max[s], global_max) * acc[s * head_dim + d];
        out /= denominator;
        ASSERT_NEAR(out, expected[d], 2e-5) << "context " << context << " head " << head << " d " << d;
      }
    }
  }
}


TEST(ChunkGroupingTest, HeadsDivideTheGroupAndQueriesStayBounded) {
  struct Case {
    int64_t heads, kv_heads, expect_heads;
  };
  for (const Case& c : {Case{32, 8, 4}, Case{64, 8, 8}, Case{8, 8, 1}, Case{32, 1, 8}, Case{24, 2, 6},
                        Case{40, 4, 5}, Case{14, 2, 7}}) {
    const int64_t heads = HeadsPerBlock(c.heads, c.kv_heads, 8);
    EXPECT_EQ(heads, c.expect_heads) << c.heads << "/" << c.kv_heads;
    EXPECT_EQ((c.heads / c.kv_heads) % heads, 0);
    EXPECT_LE(heads * RowsPerBlock(heads, 8), 8);
    EXPECT_GE(RowsPerBlock(heads, 8), 1);
  }
}

// The chunk kernel's decomposition: consecutive rows of one sequence (a verification block) share a
// chunk's keys, which arrive in tiles with an online softmax across tiles and a causal mask per row;
// the chunks are then merged as the last chunk to finish does (MergeChunks). Against direct causal softmax attention in
// double precision.
TEST(TiledChunkAttentionTest, CausalRowsSharingTilesMatchDirectAttention) {
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const int64_t head_dim = 32;
  for (int64_t context : {1, 9, 40, 333, 1100}) {
    const int64_t rows = std::min<int64_t>(context, 9);  // the last `rows` positions are queries
    std::vector<float> keys(context * head_dim), values(keys.size()), q(rows * head_dim);
    for (float& x : keys) x = 3.0f * normal(rng);  // spread scores: tiles' maxima differ
    for (float& x : values) x = normal(rng);
    for (float& x : q) x = normal(rng);
    for (int64_t tile : {16, 32}) {
      int64_t split = 0, splits = 0;
      ChooseSplits(context, 32, 64, split, splits);
      std::vector<float> chunk_max(rows * splits), chunk_sum(rows * splits),
          acc(rows * splits * head_dim, 0.0f);
      const int64_t first_position = context - rows;
      for (int64_t s = 0; s < splits; ++s) {
        int64_t begin, end;
        SplitRange(s, split, context, begin, end);
        std::vector<float> running_max(rows, -INFINITY), running_sum(rows, 0.0f);
        for (int64_t tile_begin = begin; tile_begin < end; tile_begin += tile) {
          const int64_t count = std::min(tile, end - tile_begin);
          for (int64_t r = 0; r < rows; ++r) {
            std::vector<float> score(tile, -INFINITY);
            float tile_max = -INFINITY;
            for (int64_t t = 0; t < count; ++t) {
              const int64_t p = tile_begin + t;
              if (p > first_position + r) continue;
              float dot = 0;
              for (int64_t d = 0; d < head_dim; ++d) dot += q[r * head_dim + d] * keys[p * head_dim + d];
              score[t] = dot * AttentionScale(head_dim);
              tile_max = std::max(tile_max, score[t]);
            }
            const float new_max = NewMax(running_max[r], tile_max);
            const float correction = ChunkWeight(running_max[r], new_max);
            float tile_sum = 0;
            float* a = &acc[(r * splits + s) * head_dim];
            for (int64_t d = 0; d < head_dim; ++d) a[d] *= correction;
            for (int64_t t = 0; t < count; ++t) {
              const float w = ScoreWeight(score[t], new_max);
              tile_sum += w;
              for (int64_t d = 0; d < head_dim; ++d) a[d] += w * values[(tile_begin + t) * head_dim + d];
            }
            running_sum[r] = running_sum[r] * correction + tile_sum;
            running_max[r] = new_max;
          }
        }
        for (int64_t r = 0; r < rows; ++r) {
          chunk_max[r * splits + s] = running_max[r];
          chunk_sum[r * splits + s] = running_sum[r];
        }
      }
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t visible = first_position + r + 1;
        std::vector<double> scores(visible);
        double max_score = -INFINITY;
        for (int64_t p = 0; p < visible; ++p) {
          double dot = 0;
          for (int64_t d = 0; d < head_dim; ++d) dot += double{q[r * head_dim + d]} * keys[p * head_dim + d];
          scores[p] = dot / std::sqrt(double(head_dim));
          max_score = std::max(max_score, scores[p]);
        }
        double total = 0;
        for (double sc : scores) total += std::exp(sc - max_score);
        float global_max = -INFINITY;
        for (int64_t s = 0; s < splits; ++s) global_max = std::max(global_max, chunk_max[r * splits + s]);
        float denominator = 0;
        for (int64_t s = 0; s < splits; ++s) {
          denominator += ChunkWeight(chunk_max[r * splits + s], global_max) * chunk_sum[r * splits + s];
        }
        for (int64_t d = 0; d < head_dim; ++d) {
          double expected = 0;
          for (int64_t p = 0; p < visible; ++p) {
            expected += std::exp(scores[p] - max_score) / total * values[p * head_dim + d];
          }
          float out = 0;
          for (int64_t s = 0; s < splits; ++s) {
            out += ChunkWeight(chunk_max[r * splits + s], global_max) * acc[(r * splits + s) * head_dim + d];
          }
          ASSERT_NEAR(out / denominator, expected, 2e-5)
              << "context " << context << " tile " << tile << " row " << r << " d " << d;
        }
      }
    }
  }
}

// The attention kernel rotates keys element by element (each thread loads the element it needs and
// its partner): RopePairOfElement must invert RopePairIndices and RotatedElement must give exactly
// what RotatePair gives, so that keys rotated either way (stored by one block, read from the batch by
// another, or by the separate RoPE kernel) are the same floats.
TEST(RopeElementTest, ElementwiseRotationEqualsPairRotation) {
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (bool interleaved : {false, true}) {
    for (int64_t head_dim : {8, 64, 128}) {
      std::vector<float> x(head_dim);
      for (float& v : x) v = normal(rng);
      const float angle = normal(rng) * 100.0f;
      const float cos_v = std::cos(angle), sin_v = std::sin(angle);
      std::vector<float> by_pair = x;
      std::vector<int> seen(head_dim, 0);
      for (int64_t i = 0; i < head_dim / 2; ++i) {
        int64_t first, second;
        math::RopePairIndices(i, head_dim, interleaved, first, second);
        math::RotatePair(by_pair[first], by_pair[second], cos_v, sin_v);
        for (int64_t e : {first, second}) {
          int64_t pair, partner;
          bool is_first;
          math::RopePairOfElement(e, head_dim, interleaved, pair, partner, is_first);
          EXPECT_EQ(pair, i);
          EXPECT_EQ(partner, e == first ? second : first);
          EXPECT_EQ(is_first, e == first);
          ++seen[e];
        }
      }
      for (int64_t e = 0; e < head_dim; ++e) {
        EXPECT_EQ(seen[e], 1);
        int64_t pair, partner;
        bool is_first;
        math::RopePairOfElement(e, head_dim, interleaved, pair, partner, is_first);
        EXPECT_EQ(math::RotatedElement(x[e], x[partner], is_first, cos_v, sin_v), by_pair[e])
            << "element " << e << (interleaved ? " interleaved" : " half-split");
      }
    }
  }
}

// The chunk kernel's launch grid (head groups x chunks x groups of rows, one launch per
// `partial_rows` rows) walked on the CPU with the kernel's rules: each (row, kv head) of the batch
// is stored into the cache by exactly one block; every key a row attends to is either in the cache
// (from an earlier step or an earlier launch) or a row of this launch's batch rows (never a cache
// slot this launch is writing, and never a row an earlier launch stored: a long prefill re-reads
// at most one launch of batch keys); and each run of rows counts its chunks on its own counter,
// which receives exactly one count per chunk.
TEST(ChunkGridTest, StoresEachKeyOnceAndCountsEachRunsChunks) {
  struct Sequence {
    int64_t start_pos, num_tokens;
  };
  struct Case {
    int64_t heads, kv_heads, partial_rows;
    std::vector<Sequence> sequences;
  };
  const std::vector<Case> cases = {
      {32, 8, 1000, {{511, 1}}},                       // 8B decode, batch 1
      {32, 8, 1000, {{300, 17}, {0, 5}, {40, 1}}},     // verification blocks of three sequences
      {64, 8, 7, {{100, 17}, {9, 3}}},                 // 70B groups, rows over several launches
      {12, 4, 1000, {{0, 13}, {7, 2}}},                // groups of 3: two rows per block
      {8, 8, 3, {{0, 9}}},                             // no GQA, prefill in launches of 3 rows
  };
  constexpr int64_t kMaxQueries = 8, kMinSplit = 32, kMaxSplits = 64;
  for (const Case& c : cases) {
    std::vector<int64_t> row_sequence, row_begin;
    for (size_t s = 0; s < c.sequences.size(); ++s) {
      row_begin.push_back(static_cast<int64_t>(row_sequence.size()));
      for (int64_t i = 0; i < c.sequences[s].num_tokens; ++i) row_sequence.push_back(s);
    }
    const int64_t rows = static_cast<int64_t>(row_sequence.size());
    int64_t max_context = 1;
    for (const Sequence& q : c.sequences) max_context = std::max(max_context, q.start_pos + q.num_tokens);
    int64_t split_positions = 0, splits = 0;
    ChooseSplits(max_context, kMinSplit, kMaxSplits, split_positions, splits);
    const int64_t heads = HeadsPerBlock(c.heads, c.kv_heads, kMaxQueries);
    const int64_t rows_per_block = RowsPerBlock(heads, kMaxQueries);
    const int64_t head_groups = c.heads / heads;
    std::vector<int> stored(rows * c.kv_heads, 0);
    for (int64_t offset = 0; offset < rows; offset += c.partial_rows) {
      const int64_t launch_rows = std::min(c.partial_rows, rows - offset);
      std::vector<int> counts(c.partial_rows * head_groups, 0);
      const std::vector<int> stored_before = stored;  // by earlier launches (stream order)
      for (int64_t x = 0; x < head_groups; ++x) {
        for (int64_t split = 0; split < splits; ++split) {
          for (int64_t z = 0; z * rows_per_block < launch_rows; ++z) {
            int64_t row = offset + z * rows_per_block;
            const int64_t rows_end = std::min(row + rows_per_block, offset + launch_rows);
            while (row < rows_end) {
              const int64_t s = row_sequence[row];
              const Sequence& seq = c.sequences[s];
              const int64_t seg = std::min(row_begin[s] + seq.num_tokens, rows_end) - row;
              const int64_t first_position = seq.start_pos + (row - row_begin[s]);
              const int64_t first_head = x * heads;
              const int64_t kv_head = KvHeadOf(first_head, c.heads, c.kv_heads);
              if (StoresKeysAndValues(first_head, split, c.heads, c.kv_heads)) {
                for (int64_t r = row; r < row + seg; ++r) ++stored[r * c.kv_heads + kv_head];
              }
              int64_t begin, end;
              SplitRange(split, split_positions, first_position + seg, begin, end);
              for (int64_t p = begin; p < end; ++p) {
                const int64_t batch_row =
                    BatchRowOfPosition(p, seq.start_pos, row_begin[s], offset);
                if (batch_row >= 0) {  // a key of this launch's rows: the same sequence's row at p
                  ASSERT_GE(batch_row, offset);
                  ASSERT_LT(batch_row, row_begin[s] + seq.num_tokens);
                  ASSERT_EQ(row_sequence[batch_row], s);
                  ASSERT_EQ(seq.start_pos + (batch_row - row_begin[s]), p);
                } else if (p >= seq.start_pos) {  // a row of this batch an earlier launch stored
                  const int64_t r = row_begin[s] + (p - seq.start_pos);
                  ASSERT_LT(r, offset);
                  ASSERT_EQ(stored_before[r * c.kv_heads + kv_head], 1);
                }  // else: written by an earlier step
              }
              const int64_t counter = ChunkCounterIndex(row - offset, x, head_groups);
              ASSERT_GE(counter, 0);
              ASSERT_LT(counter, static_cast<int64_t>(counts.size()));
              ++counts[counter];
              row += seg;
            }
          }
        }
      }
      // Every counter in use saw one count per chunk (the last one merges and resets it).
      for (int count : counts) EXPECT_TRUE(count == 0 || count == splits) << count;
      EXPECT_GT(*std::max_element(counts.begin(), counts.end()), 0);
    }
    for (int s : stored) EXPECT_EQ(s, 1) << c.heads << "/" << c.kv_heads;
  }
}

// ---- tensor-core prefill, emulated warp by warp ------------------------------------------------

float RoundBf16(float x) { return Bf16ToF32(F32ToBf16(x)); }

// One warp's registers for one mma.sync.m16n8k16: A [lane][reg][half], B [lane][reg][half],
// the accumulator [lane][element].
struct WarpA {
  float v[32][4][2];
};
struct WarpB {
  float v[32][2][2];
};
using WarpAcc = std::array<std::array<float, 4>, 32>;

// The hardware's side: the fragments as PTX's figures for m16n8k16 draw them (written out here
// independently of mma_layout.h), multiplied in double precision. Every matrix element is set by
// exactly one (lane, register, half), so a placement the kernel gets wrong gives wrong products.
void EmulatedMma(const WarpA& a, const WarpB& b, WarpAcc& c) {
  double A[16][16], B[16][8];
  for (int lane = 0; lane < 32; ++lane) {
    const int g = lane / 4, t = lane % 4;
    for (int half = 0; half < 2; ++half) {
      A[g][2 * t + half] = a.v[lane][0][half];
      A[g + 8][2 * t + half] = a.v[lane][1][half];
      A[g][2 * t + 8 + half] = a.v[lane][2][half];
      A[g + 8][2 * t + 8 + half] = a.v[lane][3][half];
      B[2 * t + half][g] = b.v[lane][0][half];
      B[2 * t + 8 + half][g] = b.v[lane][1][half];
    }
  }
  for (int lane = 0; lane < 32; ++lane) {
    const int g = lane / 4, t = lane % 4;
    for (int e = 0; e < 4; ++e) {
      const int row = g + 8 * (e / 2), col = 2 * t + e % 2;
      double sum = c[lane][e];
      for (int k = 0; k < 16; ++k) sum += A[row][k] * B[k][col];
      c[lane][e] = static_cast<float>(sum);
    }
  }
}

// A value over the four lanes of each quad (a row's scores), combined in the order of the kernel's
// xor shuffles (lane distance 2, then 1).
template <typename Op>
float OverQuad(const std::array<float, 32>& v, int lane, Op op) {
  const int first = lane & ~3;
  return op(op(v[first], v[first + 2]), op(v[first + 1], v[first + 3]));
}

// FlashPrefillKernel for one sequence (its rows after `row_begin` other batch rows), every tile
// of rows and every warp, with the kernel's operand placement, mask, online softmax (in base-2
// units), bf16 rounding of q, the cache and the weights; against softmax attention in double over
// the same rounded q, keys and values. Each output element must be written exactly once.
void CheckFlashPrefill(int D, int64_t start_pos, int64_t num_tokens, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const int64_t row_begin = 3, sequence_end = row_begin + num_tokens;
  const int64_t context = start_pos + num_tokens;
  std::vector<float> keys(context * D), values(context * D), q(sequence_end * D);
  for (float& x : keys) x = RoundBf16(2.0f * normal(rng));
  for (float& x : values) x = RoundBf16(normal(rng));
  for (float& x : q) x = normal(rng);
  std::vector<float> out(sequence_end * D, NAN);
  std::vector<int> written(sequence_end * D, 0);
  const float scale = AttentionScale(D) * kLog2e;

  for (int64_t tile = 0; tile < FlashTilesOf(num_tokens); ++tile) {
    const int64_t tile_row = row_begin + tile * kFlashTileRows;
    const int64_t key_end = FlashKeyEnd(tile_row, row_begin, num_tokens, start_pos);
    for (int warp = 0; warp < kFlashWarps; ++warp) {
      std::vector<WarpA> q_frag(D / 16);
      std::array<std::array<int64_t, 2>, 32> positions;
      for (int lane = 0; lane < 32; ++lane) {
        for (int kc = 0; kc < D / 16; ++kc) {
          for (int reg = 0; reg < 4; ++reg) {
            const int64_t row = FlashRowOf(tile_row, warp * 16 + MmaARow(lane, reg), sequence_end);
            for (int half = 0; half < 2; ++half) {
              q_frag[kc].v[lane][reg][half] = RoundBf16(q[row * D + 16 * kc + MmaACol(lane, reg, half)]);
            }
          }
        }
        for (int h = 0; h < 2; ++h) {
          const int64_t row = FlashRowOf(tile_row, warp * 16 + MmaAccRow(lane, 2 * h), sequence_end);
          positions[lane][h] = start_pos + (row - row_begin);
        }
      }
      std::vector<WarpAcc> o(D / 8, WarpAcc{});
      std::array<std::array<float, 2>, 32> row_max, row_sum;
      for (auto& m : row_max) m = {-INFINITY, -INFINITY};
      for (auto& m : row_sum) m = {0.0f, 0.0f};
      for (int64_t tile_begin = 0; tile_begin < key_end; tile_begin += kFlashTileKeys) {
        // The tile as the kernel stages it: zeros past key_end.
        auto key_at = [&](int64_t k, int64_t d) {
          const int64_t p = tile_begin + k;
          return p < key_end ? keys[p * D + d] : 0.0f;
        };
        auto value_at = [&](int64_t k, int64_t d) {
          const int64_t p = tile_begin + k;
          return p < key_end ? values[p * D + d] : 0.0f;
        };
        std::vector<WarpAcc> s(kFlashTileKeys / 8, WarpAcc{});
        for (int j = 0; j < kFlashTileKeys / 8; ++j) {
          for (int kc = 0; kc < D / 16; ++kc) {
            WarpB b;
            for (int lane = 0; lane < 32; ++lane) {
              for (int reg = 0; reg < 2; ++reg) {
                for (int half = 0; half < 2; ++half) {
                  b.v[lane][reg][half] = key_at(8 * j + MmaBCol(lane), 16 * kc + MmaBRow(lane, reg, half));
                }
              }
            }
            EmulatedMma(q_frag[kc], b, s[j]);
          }
        }
        std::array<std::array<float, 32>, 2> tile_max;
        for (auto& m : tile_max) m.fill(-INFINITY);
        for (int j = 0; j < kFlashTileKeys / 8; ++j) {
          for (int lane = 0; lane < 32; ++lane) {
            for (int e = 0; e < 4; ++e) {
              const int64_t key = tile_begin + 8 * j + MmaAccCol(lane, e);
              const float score = key <= positions[lane][e / 2] ? s[j][lane][e] * scale : -INFINITY;
              s[j][lane][e] = score;
              tile_max[e / 2][lane] = std::max(tile_max[e / 2][lane], score);
            }
          }
        }
        std::array<std::array<float, 2>, 32> correction;
        for (int lane = 0; lane < 32; ++lane) {
          for (int h = 0; h < 2; ++h) {
            const float quad_max =
                OverQuad(tile_max[h], lane, [](float x, float y) { return std::max(x, y); });
            const float new_max = NewMax(row_max[lane][h], quad_max);
            correction[lane][h] = Exp2Weight(row_max[lane][h], new_max);
            row_max[lane][h] = new_max;
            row_sum[lane][h] *= correction[lane][h];
          }
        }
        for (WarpAcc& acc : o) {
          for (int lane = 0; lane < 32; ++lane) {
            for (int e = 0; e < 4; ++e) acc[lane][e] *= correction[lane][e / 2];
          }
        }
        for (WarpAcc& tile_s : s) {
          for (int lane = 0; lane < 32; ++lane) {
            for (int e = 0; e < 4; ++e) {
              const float w = RoundBf16(Exp2Weight(tile_s[lane][e], row_max[lane][e / 2]));
              tile_s[lane][e] = w;
              row_sum[lane][e / 2] += w;
            }
          }
        }
        for (int i = 0; i < kFlashTileKeys / 16; ++i) {
          WarpA p;
          for (int lane = 0; lane < 32; ++lane) {
            for (int reg = 0; reg < 4; ++reg) {
              for (int half = 0; half < 2; ++half) {
                p.v[lane][reg][half] = s[2 * i + AccTileOfA(reg)][lane][AccElementOfA(reg, half)];
              }
            }
          }
          for (int jd = 0; jd < D / 8; ++jd) {
            WarpB b;
            for (int lane = 0; lane < 32; ++lane) {
              for (int reg = 0; reg < 2; ++reg) {
                for (int half = 0; half < 2; ++half) {
                  b.v[lane][reg][half] = value_at(16 * i + MmaBRow(lane, reg, half), 8 * jd + MmaBCol(lane));
                }
              }
            }
            EmulatedMma(p, b, o[jd]);
          }
        }
      }
      for (int h = 0; h < 2; ++h) {
        std::array<float, 32> sums;
        for (int lane = 0; lane < 32; ++lane) sums[lane] = row_sum[lane][h];
        for (int lane = 0; lane < 32; ++lane) {
          row_sum[lane][h] = OverQuad(sums, lane, [](float x, float y) { return x + y; });
        }
      }
      for (int jd = 0; jd < D / 8; ++jd) {
        for (int lane = 0; lane < 32; ++lane) {
          for (int e = 0; e < 4; ++e) {
            const int64_t row = tile_row + warp * 16 + MmaAccRow(lane, e);
            if (row >= sequence_end) continue;
            const int64_t d = 8 * jd + MmaAccCol(lane, e);
            out[row * D + d] = o[jd][lane][e] / row_sum[lane][e / 2];
            ++written[row * D + d];
          }
        }
      }
    }
  }

  double max_error = 0, max_value = 0;
  for (int64_t row = row_begin; row < sequence_end; ++row) {
    const int64_t position = start_pos + (row - row_begin);
    std::vector<double> weights(position + 1);
    double max_score = -INFINITY, total = 0;
    for (int64_t p = 0; p <= position; ++p) {
      double dot = 0;
      for (int d = 0; d < D; ++d) dot += static_cast<double>(RoundBf16(q[row * D + d])) * keys[p * D + d];
      weights[p] = dot / std::sqrt(static_cast<double>(D));
      max_score = std::max(max_score, weights[p]);
    }
    for (double& w : weights) total += (w = std::exp(w - max_score));
    for (int d = 0; d < D; ++d) {
      double expected = 0;
      for (int64_t p = 0; p <= position; ++p) expected += weights[p] * values[p * D + d];
      expected /= total;
      ASSERT_EQ(written[row * D + d], 1) << "row " << row << " dim " << d;
      max_error = std::max(max_error, std::abs(out[row * D + d] - expected));
      max_value = std::max(max_value, std::abs(expected));
    }
  }
  // bf16 weights (8 significant bits) and queries: ~1e-3 of the output's scale; a misplaced
  // operand gives errors of order one.
  EXPECT_LT(max_error / max_value, 5e-3)
      << "D=" << D << " start_pos=" << start_pos << " tokens=" << num_tokens;
}

TEST(FlashPrefillTest, EmulatedWarpsMatchDirectAttention) {
  std::mt19937 rng(13);
  CheckFlashPrefill(64, 0, 64, rng);      // one full tile of rows and keys
  CheckFlashPrefill(64, 37, 150, rng);    // chunked prefill: rows and key tiles out of step
  CheckFlashPrefill(128, 0, 100, rng);    // a partial second tile of rows
  CheckFlashPrefill(128, 200, 70, rng);   // keys mostly from earlier steps
}

TEST(FlashPrefillTest, TilesCoverEveryRowAndReachTheirLastRowsKeys) {
  for (int64_t tokens : {1, 63, 64, 65, 200}) {
    const int64_t row_begin = 10, start_pos = 7;
    EXPECT_EQ(FlashTilesOf(tokens) * kFlashTileRows >= tokens, true);
    EXPECT_LT((FlashTilesOf(tokens) - 1) * kFlashTileRows, tokens);
    const int64_t last_tile = row_begin + (FlashTilesOf(tokens) - 1) * kFlashTileRows;
    EXPECT_EQ(FlashKeyEnd(last_tile, row_begin, tokens, start_pos), start_pos + tokens);
    EXPECT_EQ(FlashRowOf(last_tile, kFlashTileRows - 1, row_begin + tokens), row_begin + tokens - 1);
  }
}

}  // namespace
}  // namespace verdict::engine::cuda_math
