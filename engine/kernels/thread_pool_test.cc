// SPDX-License-Identifier: Apache-2.0
#include "engine/kernels/thread_pool.h"

#include <algorithm>
#include <atomic>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "gtest/gtest.h"

namespace verdict::engine {
namespace {

struct Chunk {
  int64_t begin;
  int64_t end;
};

// Runs ParallelFor and returns the chunks in increasing order, checking each index is seen once.
std::vector<Chunk> RunAndCollect(ThreadPool& pool, int64_t n, int64_t grain) {
  std::mutex mu;
  std::vector<Chunk> chunks;
  std::vector<std::atomic<int>> hits(static_cast<size_t>(std::max<int64_t>(n, 0)));
  pool.ParallelFor(n, grain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) hits[i].fetch_add(1);
    std::lock_guard<std::mutex> lock(mu);
    chunks.push_back({begin, end});
  });
  for (int64_t i = 0; i < n; ++i) EXPECT_EQ(hits[i].load(), 1) << "index " << i;
  std::sort(chunks.begin(), chunks.end(),
            [](const Chunk& a, const Chunk& b) { return a.begin < b.begin; });
  return chunks;
}

TEST(ThreadPoolTest, CoversRangeExactlyOnceWithGrainRounding) {
  for (int threads : {1, 2, 3, 4}) {
    ThreadPool pool(threads);
    EXPECT_EQ(pool.num_threads(), threads);
    for (int64_t n : {1, 2, 3, 5, 7, 16, 100, 1001}) {
      for (int64_t grain : {1, 3, 8, 64}) {
        SCOPED_TRACE(testing::Message()
                     << "threads=" << threads << " n=" << n << " grain=" << grain);
        const std::vector<Chunk> chunks = RunAndCollect(pool, n, grain);
        const int64_t num_grains = (n + grain - 1) / grain;
        ASSERT_EQ(static_cast<int64_t>(chunks.size()), std::min<int64_t>(threads, num_grains));
        int64_t expected_begin = 0;
        int64_t min_grains = num_grains, max_grains = 0;
        for (size_t i = 0; i < chunks.size(); ++i) {
          EXPECT_EQ(chunks[i].begin, expected_begin);
          EXPECT_LT(chunks[i].begin, chunks[i].end);
          EXPECT_EQ(chunks[i].begin % grain, 0);
          if (i + 1 < chunks.size()) {
            EXPECT_EQ((chunks[i].end - chunks[i].begin) % grain, 0);
            const int64_t g = (chunks[i].end - chunks[i].begin) / grain;
            min_grains = std::min(min_grains, g);
            max_grains = std::max(max_grains, g);
          }
          expected_begin = chunks[i].end;
        }
        EXPECT_EQ(expected_begin, n);
        if (chunks.size() > 2) {
          EXPECT_LE(max_grains - min_grains, 1);
        }
      }
    }
  }
}

TEST(ThreadPoolTest, ZeroOrNegativeNCallsNothing) {
  for (int threads : {1, 2}) {
    ThreadPool pool(threads);
    int calls = 0;
    pool.ParallelFor(0, 1, [&](int64_t, int64_t) { ++calls; });
    pool.ParallelFor(-5, 4, [&](int64_t, int64_t) { ++calls; });
    EXPECT_EQ(calls, 0);
  }
}

TEST(ThreadPoolTest, FewerItemsThanThreads) {
  ThreadPool pool(4);
  const std::vector<Chunk> chunks = RunAndCollect(pool, 2, 1);
  ASSERT_EQ(chunks.size(), 2u);
  EXPECT_EQ(chunks[0].end, 1);
  EXPECT_EQ(chunks[1].end, 2);
}

TEST(ThreadPoolTest, CallerRunsFirstChunkAndWorkersRunTheRest) {
  ThreadPool pool(2);
  std::thread::id ids[2];
  pool.ParallelFor(2, 1, [&](int64_t begin, int64_t) { ids[begin] = std::this_thread::get_id(); });
  EXPECT_EQ(ids[0], std::this_thread::get_id());
  EXPECT_NE(ids[1], std::this_thread::get_id());
}

TEST(ThreadPoolTest, ManyBackToBackCalls) {
  for (int threads : {2, 3}) {
    ThreadPool pool(threads);
    std::atomic<int64_t> sum{0};
    int64_t expected = 0;
    for (int iter = 0; iter < 5000; ++iter) {
      const int64_t n = iter % 37;
      pool.ParallelFor(n, 1 + iter % 4, [&](int64_t begin, int64_t end) {
        int64_t s = 0;
        for (int64_t i = begin; i < end; ++i) s += i;
        sum.fetch_add(s);
      });
      expected += n * (n - 1) / 2;
    }
    EXPECT_EQ(sum.load(), expected);
  }
}

TEST(ThreadPoolTest, CreateAndDestroyRepeatedly) {
  for (int i = 0; i < 50; ++i) {
    ThreadPool pool(1 + i % 4);
    std::atomic<int> calls{0};
    if (i % 2 == 0) pool.ParallelFor(8, 1, [&](int64_t, int64_t) { calls.fetch_add(1); });
    EXPECT_EQ(calls.load(), i % 2 == 0 ? std::min(8, 1 + i % 4) : 0);
  }
}

}  // namespace
}  // namespace verdict::engine
