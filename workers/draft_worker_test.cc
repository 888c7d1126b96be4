// SPDX-License-Identifier: Apache-2.0
// The draft worker's core against judge::DraftSession (the single-session reference): batched
// proposals of several sessions equal their one-at-a-time proposals, keep/append roll back and
// continue exactly like a fresh session on the same tokens, and every kind of bad request fails
// alone without touching other sessions.
#include "workers/draft_worker.h"

#include <random>

#include "common/testing/status_matchers.h"
#include "engine/kernels/matmul.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "judge/speculative_session.h"
#include "judge/testing/generic_kernels.h"
#include "judge/testing/paired_models.h"

namespace verdict::workers {
namespace {

using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::verdict::testing::StatusIs;

// Generic kernels: per-row results do not depend on the batch, so batched and single-session
// proposals can be compared exactly.
class DraftWorkerTest : public judge::testing::GenericKernelsTest {
 protected:
  void SetUp() override {
    backend_ = engine::CreateCpuBackend({.num_threads = 1});
    config_ = judge::testing::SmallConfig(64, /*context=*/128);
    weights_ = judge::testing::MakeWeights(config_, 7, 4.0f);
    model_ = judge::testing::MakeModel(config_, *weights_, backend_.get());
    std::mt19937 rng(11);
    for (int len : {1, 4, 9, 17}) {
      std::vector<int32_t> p(len);
      for (int32_t& t : p) t = static_cast<int32_t>(rng() % config_.vocab_size);
      prompts_.push_back(p);
    }
    absl::StatusOr<std::unique_ptr<DraftWorker>> worker = DraftWorker::Create(model_.get(), {});
    ASSERT_OK(worker.status());
    worker_ = std::move(*worker);
  }

  // What judge::DraftSession proposes after `tokens` (the reference).
  spec::DraftBlock Reference(const std::vector<int32_t>& tokens, int64_t k,
                              const engine::SamplingParams& sampling = {}) {
    absl::StatusOr<std::unique_ptr<judge::DraftSession>> s =
        judge::DraftSession::Create(model_.get(), sampling, 128);
    EXPECT_OK(s.status());
    EXPECT_OK((*s)->Start(tokens));
    absl::StatusOr<spec::DraftBlock> block = (*s)->Propose(k);
    EXPECT_OK(block.status());
    return block.ok() ? *block : spec::DraftBlock{};
  }

  static std::vector<int32_t> Concat(std::vector<int32_t> a, const std::vector<int32_t>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
  }

  std::unique_ptr<engine::Backend> backend_;
  engine::LlamaConfig config_;
  std::unique_ptr<judge::testing::InMemoryWeights> weights_;
  std::unique_ptr<engine::ModelSlice> model_;
  std::vector<std::vector<int32_t>> prompts_;
  std::unique_ptr<DraftWorker> worker_;
};

TEST_F(DraftWorkerTest, BatchedProposalsEqualSingleSessionProposals) {
  std::vector<spec::ProposeRequest> requests;
  for (size_t i = 0; i < prompts_.size(); ++i) {
    ASSERT_OK(worker_->OpenSession(spec::DraftSessionId(i), prompts_[i], {}, 128));
    // Different windows: sessions leave the batch at different steps.
    requests.push_back({spec::DraftSessionId(i), 1, static_cast<int64_t>(prompts_[i].size()), {}, static_cast<int64_t>(3 + 2 * i)});
  }
  std::vector<absl::StatusOr<spec::Proposal>> results = worker_->ProposeBatch(requests);
  ASSERT_EQ(results.size(), prompts_.size());
  for (size_t i = 0; i < prompts_.size(); ++i) {
    ASSERT_OK(results[i].status());
    const spec::DraftBlock expected = Reference(prompts_[i], requests[i].num_tokens);
    EXPECT_THAT(results[i]->block.tokens, ElementsAreArray(expected.tokens)) << "session " << i;
    ASSERT_EQ(results[i]->block.logprobs.size(), expected.logprobs.size());
    for (size_t j = 0; j < expected.logprobs.size(); ++j) {
      EXPECT_FLOAT_EQ(results[i]->block.logprobs[j], expected.logprobs[j]);
    }
    EXPECT_TRUE(results[i]->block.proposals.empty());  // greedy: q is one-hot
    EXPECT_EQ(results[i]->step, 1u);
    EXPECT_EQ(results[i]->sequence_length,
              static_cast<int64_t>(prompts_[i].size()) + requests[i].num_tokens);
    EXPECT_THAT(worker_->sequence(spec::DraftSessionId(i)), ElementsAreArray(Concat(prompts_[i], expected.tokens)));
  }
  // One pass per step of the longest proposal, not one per session and step.
  EXPECT_EQ(worker_->forward_passes(), requests.back().num_tokens);
}

TEST_F(DraftWorkerTest, RollbackAndOptimisticContinuationMatchAFreshSession) {
  const std::vector<int32_t>& prompt = prompts_[2];
  const int64_t n = static_cast<int64_t>(prompt.size());
  ASSERT_OK(worker_->OpenSession(spec::DraftSessionId(5), prompt, {}, 128));
  absl::StatusOr<spec::Proposal> first = worker_->Propose({spec::DraftSessionId(5), 1, n, {}, 6});
  ASSERT_OK(first.status());

  // Optimistic: keep the whole unverified block and continue from it.
  absl::StatusOr<spec::Proposal> ahead = worker_->Propose({spec::DraftSessionId(5), 2, n + 6, {}, 4});
  ASSERT_OK(ahead.status());
  const spec::DraftBlock ten = Reference(prompt, 10);
  EXPECT_THAT(Concat(first->block.tokens, ahead->block.tokens), ElementsAreArray(ten.tokens));

  // The verdict accepted 2 and corrected the third: keep n + 2, append the target's token.
  const int32_t correction = (first->block.tokens[2] + 1) % config_.vocab_size;
  absl::StatusOr<spec::Proposal> redo = worker_->Propose({spec::DraftSessionId(5), 3, n + 2, {correction}, 5});
  ASSERT_OK(redo.status());
  std::vector<int32_t> committed = prompt;
  committed.insert(committed.end(), first->block.tokens.begin(), first->block.tokens.begin() + 2);
  committed.push_back(correction);
  EXPECT_THAT(redo->block.tokens, ElementsAreArray(Reference(committed, 5).tokens));
  EXPECT_THAT(worker_->sequence(spec::DraftSessionId(5)), ElementsAreArray(Concat(committed, redo->block.tokens)));

  // Keeping less than the cached length (no append) re-reads the kept last token.
  absl::StatusOr<spec::Proposal> back = worker_->Propose({spec::DraftSessionId(5), 4, n, {}, 3});
  ASSERT_OK(back.status());
  EXPECT_THAT(back->block.tokens, ElementsAreArray(Reference(prompt, 3).tokens));
}

TEST_F(DraftWorkerTest, SampledProposalsCarryTheirDistributionAndRepeatWithTheSeed) {
  const engine::SamplingParams sampling{.temperature = 0.9f, .top_k = 20, .top_p = 0.95f, .seed = 42};
  ASSERT_OK(worker_->OpenSession(spec::DraftSessionId(1), prompts_[1], sampling, 128));
  absl::StatusOr<spec::Proposal> p = worker_->Propose({spec::DraftSessionId(1), 1, 4, {}, 8});
  ASSERT_OK(p.status());
  const spec::DraftBlock expected = Reference(prompts_[1], 8, sampling);
  EXPECT_THAT(p->block.tokens, ElementsAreArray(expected.tokens));
  ASSERT_EQ(p->block.proposals.size(), 8u);
  for (size_t i = 0; i < 8; ++i) {
    EXPECT_LE(p->block.proposals[i].ids.size(), 20u);
    EXPECT_GT(p->block.proposals[i].ProbOf(p->block.tokens[i]), 0.0f);
  }
}

TEST_F(DraftWorkerTest, BadRequestsFailAloneAndLeaveTheirSessionUnchanged) {
  for (uint64_t id : {1, 2}) ASSERT_OK(worker_->OpenSession(spec::DraftSessionId(id), prompts_[1], {}, 16));
  const std::vector<int32_t> before = worker_->sequence(spec::DraftSessionId(2));
  std::vector<spec::ProposeRequest> requests = {
      {spec::DraftSessionId(1), 1, 4, {}, 3},                    // fine
      {spec::DraftSessionId(9), 1, 1, {}, 3},                    // unknown session
      {spec::DraftSessionId(2), 1, 5, {}, 3},                    // keep beyond the sequence
      {spec::DraftSessionId(2), 1, 4, {}, 0},                    // window 0
      {spec::DraftSessionId(2), 1, 4, {}, spec::kMaxDraftTokens + 1},
      {spec::DraftSessionId(2), 1, 4, {64}, 3},                  // id outside the vocabulary
      {spec::DraftSessionId(2), 1, 4, {-1}, 3},
      {spec::DraftSessionId(2), 1, 4, {}, 14},                   // 4 + 14 - 1 > capacity 16
      {spec::DraftSessionId(2), 1, 0, {}, 3},                    // nothing to continue from
      {spec::DraftSessionId(1), 2, 4, {}, 3},                    // session 1 twice
  };
  std::vector<absl::StatusOr<spec::Proposal>> r = worker_->ProposeBatch(requests);
  EXPECT_OK(r[0].status());
  EXPECT_THAT(r[0]->block.tokens, ElementsAreArray(Reference(prompts_[1], 3).tokens));
  EXPECT_THAT(r[1].status(), StatusIs(absl::StatusCode::kNotFound, HasSubstr("9")));
  EXPECT_THAT(r[2].status(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("keep_length")));
  EXPECT_THAT(r[3].status(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("window")));
  EXPECT_THAT(r[4].status(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("window")));
  EXPECT_THAT(r[5].status(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("vocabulary")));
  EXPECT_THAT(r[6].status(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("vocabulary")));
  EXPECT_THAT(r[7].status(), StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("fit")));
  EXPECT_THAT(r[8].status(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("empty")));
  EXPECT_THAT(r[9].status(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("twice")));
  EXPECT_THAT(worker_->sequence(spec::DraftSessionId(2)), ElementsAreArray(before));
  // The failed session still works.
  absl::StatusOr<spec::Proposal> ok = worker_->Propose({spec::DraftSessionId(2), 2, 4, {}, 3});
  ASSERT_OK(ok.status());
  EXPECT_THAT(ok->block.tokens, ElementsAreArray(Reference(prompts_[1], 3).tokens));
}

TEST_F(DraftWorkerTest, SessionLifecycleErrors) {
  EXPECT_THAT(worker_->OpenSession(spec::DraftSessionId(1), {}, {}, 16), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no tokens")));
  EXPECT_THAT(worker_->OpenSession(spec::DraftSessionId(1), {70}, {}, 16), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("vocabulary")));
  EXPECT_THAT(worker_->OpenSession(spec::DraftSessionId(1), {1}, {.temperature = -1.0f}, 16),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(worker_->OpenSession(spec::DraftSessionId(1), {1}, {}, 0), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("capacity")));
  EXPECT_THAT(worker_->OpenSession(spec::DraftSessionId(1), {1}, {}, 129), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("capacity")));
  EXPECT_THAT(worker_->OpenSession(spec::DraftSessionId(1), {1, 2, 3}, {}, 2), StatusIs(absl::StatusCode::kResourceExhausted));
  ASSERT_OK(worker_->OpenSession(spec::DraftSessionId(1), {1, 2}, {}, 16));
  EXPECT_OK(worker_->OpenSession(spec::DraftSessionId(1), {1, 2}, {}, 16));  // the same open again (a retry)
  EXPECT_THAT(worker_->OpenSession(spec::DraftSessionId(1), {1, 3}, {}, 16), StatusIs(absl::StatusCode::kAlreadyExists));
  EXPECT_THAT(worker_->OpenSession(spec::DraftSessionId(1), {1, 2}, {}, 17), StatusIs(absl::StatusCode::kAlreadyExists));
  worker_->CloseSession(spec::DraftSessionId(1));
  worker_->CloseSession(spec::DraftSessionId(1));  // idempotent
  EXPECT_FALSE(worker_->has_session(spec::DraftSessionId(1)));
  EXPECT_THAT(worker_->Propose({spec::DraftSessionId(1), 1, 2, {}, 2}).status(), StatusIs(absl::StatusCode::kNotFound));

  absl::StatusOr<std::unique_ptr<DraftWorker>> small = DraftWorker::Create(model_.get(), {.max_sessions = 2});
  ASSERT_OK(small.status());
  ASSERT_OK((*small)->OpenSession(spec::DraftSessionId(1), {1}, {}, 8));
  ASSERT_OK((*small)->OpenSession(spec::DraftSessionId(2), {1}, {}, 8));
  EXPECT_THAT((*small)->OpenSession(spec::DraftSessionId(3), {1}, {}, 8), StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("maximum")));
  (*small)->CloseSession(spec::DraftSessionId(1));
  EXPECT_OK((*small)->OpenSession(spec::DraftSessionId(3), {1}, {}, 8));
}

// A proposal that reaches the worker twice (a retry after a lost reply, a duplicated request) is
// answered with the first one's tokens without running again, even for a sampled draft; a request
// that goes back in steps is refused; the session goes on exactly as one that saw each request once.
TEST_F(DraftWorkerTest, ARepeatedProposalGetsTheSameAnswerWithoutRunning) {
  const engine::SamplingParams sampled{.temperature = 1.0f, .seed = 5};
  ASSERT_OK(worker_->OpenSession(spec::DraftSessionId(1), prompts_[2], sampled, 128));
  ASSERT_OK(worker_->OpenSession(spec::DraftSessionId(2), prompts_[2], sampled, 128));
  const int64_t n = static_cast<int64_t>(prompts_[2].size());
  for (uint64_t step = 1; step <= 6; ++step) {
    const int64_t keep = n + static_cast<int64_t>(step - 1) * 2;  // every proposal kept
    ASSERT_OK_AND_ASSIGN(spec::Proposal first, worker_->Propose({spec::DraftSessionId(1), step, keep, {}, 2}));
    const int64_t passes = worker_->forward_passes();
    ASSERT_OK_AND_ASSIGN(spec::Proposal again, worker_->Propose({spec::DraftSessionId(1), step, keep, {}, 2}));
    EXPECT_EQ(worker_->forward_passes(), passes);  // nothing ran
    EXPECT_EQ(again.block.tokens, first.block.tokens);
    EXPECT_EQ(again.block.logprobs, first.block.logprobs);
    EXPECT_EQ(again.sequence_length, first.sequence_length);
    ASSERT_OK_AND_ASSIGN(spec::Proposal reference, worker_->Propose({spec::DraftSessionId(2), step, keep, {}, 2}));
    EXPECT_EQ(reference.block.tokens, first.block.tokens) << "step " << step;
    EXPECT_THAT(worker_->Propose({spec::DraftSessionId(1), step, keep, {}, 3}).status(),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("does not follow")));
    if (step > 1) {
      EXPECT_THAT(worker_->Propose({spec::DraftSessionId(1), step - 1, keep, {}, 2}).status(),
                  StatusIs(absl::StatusCode::kInvalidArgument));
    }
  }
  EXPECT_EQ(worker_->sequence(spec::DraftSessionId(1)), worker_->sequence(spec::DraftSessionId(2)));
}

}  // namespace
}  // namespace verdict::workers
