// SPDX-License-Identifier: Apache-2.0
// The in-process communicator: all-reduce and all-gather against sums and concatenations computed
// directly, for 1, 2, 4 and 8 ranks, many rounds in a row; identical bits on every rank; length
// mismatches fail without hanging.
#include "engine/communicator.h"

#include <random>
#include <thread>

#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace verdict::engine {
namespace {

using ::testing::HasSubstr;
using ::verdict::testing::StatusIs;

// Runs fn(rank, communicator) on one thread per rank.
template <typename Fn>
void OnAllRanks(int size, Fn fn) {
  std::vector<std::unique_ptr<Communicator>> comms = CreateThreadCommunicators(size);
  std::vector<std::thread> threads;
  for (int r = 0; r < size; ++r) threads.emplace_back([&, r] { fn(r, *comms[r]); });
  for (auto& t : threads) t.join();
}

TEST(CommunicatorTest, AllReduceAndAllGatherMatchDirectComputation) {
  for (int size : {1, 2, 4, 8}) {
    constexpr int kRounds = 50;
    std::vector<std::vector<std::vector<float>>> inputs(kRounds, std::vector<std::vector<float>>(size));
    std::mt19937 rng(size);
    std::normal_distribution<float> normal;
    for (int round = 0; round < kRounds; ++round) {
      const size_t n = 1 + rng() % 300;
      for (int r = 0; r < size; ++r) {
        inputs[round][r].resize(n);
        for (float& v : inputs[round][r]) v = normal(rng);
      }
    }
    std::vector<std::vector<std::vector<float>>> reduced(size, std::vector<std::vector<float>>(kRounds));
    std::vector<std::vector<std::vector<float>>> gathered(size, std::vector<std::vector<float>>(kRounds));
    OnAllRanks(size, [&](int rank, Communicator& comm) {
      EXPECT_EQ(comm.rank(), rank);
      EXPECT_EQ(comm.size(), size);
      for (int round = 0; round < kRounds; ++round) {
        std::vector<float> data = inputs[round][rank];
        EXPECT_OK(comm.AllReduceSum(absl::MakeSpan(data)));
        reduced[rank][round] = data;
        std::vector<float> all(inputs[round][rank].size() * size);
        EXPECT_OK(comm.AllGather(inputs[round][rank], absl::MakeSpan(all)));
        gathered[rank][round] = all;
      }
    });
    for (int round = 0; round < kRounds; ++round) {
      const size_t n = inputs[round][0].size();
      std::vector<float> sum(n, 0.0f), concat;
      for (int r = 0; r < size; ++r) {
        for (size_t i = 0; i < n; ++i) sum[i] += inputs[round][r][i];
        concat.insert(concat.end(), inputs[round][r].begin(), inputs[round][r].end());
      }
      for (int r = 0; r < size; ++r) {
        EXPECT_EQ(reduced[r][round], sum) << size << " ranks, round " << round << ", rank " << r;  // same bits
        EXPECT_EQ(gathered[r][round], concat);
      }
    }
  }
}

TEST(CommunicatorTest, MismatchedLengthsFailOnEveryRankWithoutHanging) {
  OnAllRanks(4, [](int rank, Communicator& comm) {
    std::vector<float> data(rank == 2 ? 5 : 4, 1.0f);
    EXPECT_THAT(comm.AllReduceSum(absl::MakeSpan(data)),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("4, 4, 5, 4")));
    std::vector<float> send(3, 1.0f), recv(rank == 1 ? 11 : 12);
    const absl::Status s = comm.AllGather(send, absl::MakeSpan(recv));
    if (rank == 1) {
      EXPECT_THAT(s, StatusIs(absl::StatusCode::kInvalidArgument));
    } else {
      EXPECT_OK(s);
    }
    // The group still works afterwards.
    std::vector<float> ok(2, static_cast<float>(rank));
    EXPECT_OK(comm.AllReduceSum(absl::MakeSpan(ok)));
    EXPECT_EQ(ok, std::vector<float>(2, 6.0f));
  });
}

}  // namespace
}  // namespace verdict::engine
