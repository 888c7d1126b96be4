// SPDX-License-Identifier: Apache-2.0
// The CUDA attention decomposition (paged KV layout, flash-decoding chunks, partial-softmax merge)
// executed on the CPU with the same cuda_math functions the kernels use, against attention computed
// directly in double precision.
#include "engine/cuda/attention_math.h"

#include <cmath>
#include <random>
#include <vector>

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

}  // namespace
}  // namespace verdict::engine::cuda_math
