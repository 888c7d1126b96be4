// SPDX-License-Identifier: Apache-2.0
// The coordinator move by move: scripted fake clients queue every call and the test answers them
// in the order it chooses, on a manual executor and a fake clock, so each test pins one order of
// replies (a verdict before the optimistic proposal, a proposal after a rollback, a shard error
// between two verdicts, a draft timeout, a failed open, a cancellation or shutdown with replies in
// flight). Nothing sleeps or polls. The same coordinator over the real worker cores is
// tests/integration/coordinator_in_process_test.cc.
#include "coordinator/coordinator.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "clients/testing/fake_worker_clients.h"
#include "common/testing/fake_clock.h"
#include "common/testing/manual_executor.h"
#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace verdict::coordinator {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::verdict::testing::StatusIs;

constexpr int64_t kContext = 256;

class CoordinatorStateTest : public ::testing::Test {
 protected:
  void Make(CoordinatorOptions options = {}) {
    options.target_context = kContext;
    options.draft_context = kContext;
    coordinator_ = std::make_unique<Coordinator>(options, &draft_, &target_, &executor_, &clock_);
  }

  // Starts a greedy generation of prompt {10, 11, 12} with window k and runs the loop.
  spec::SessionId Start(int64_t k = 3, int64_t max_new = 20, std::vector<int32_t> stops = {}) {
    GenerationRequest r;
    r.prompt = {10, 11, 12};
    r.max_new_tokens = max_new;
    r.stop_token_ids = std::move(stops);
    r.speculation.window.k = k;
    GenerationCallbacks cb;
    cb.on_tokens = [this](absl::Span<const int32_t> t) {
      tokens_.insert(tokens_.end(), t.begin(), t.end());
      return true;
    };
    cb.on_done = [this](absl::StatusOr<GenerationSummary> s) {
      ++done_calls_;
      summary_ = std::move(s);
    };
    absl::StatusOr<spec::SessionId> id = coordinator_->Start(std::move(r), std::move(cb));
    EXPECT_OK(id.status());
    Run();
    return id.value_or(spec::SessionId());
  }
  void Run() { executor_.RunUntilIdle(); }

  // Opens both sides: the coordinator then asks for the first proposal.
  void OpenBoth() {
    ASSERT_EQ(target_.opens.size(), 1u);
    ASSERT_EQ(draft_.opens.size(), 1u);
    target_.ReplyOpen();
    draft_.ReplyOpen();
    Run();
  }
  std::vector<int32_t> PendingBlockDraft(size_t i = 0) const { return target_.verifies.Peek(i).block.draft.tokens; }

  testing::ManualExecutor executor_;
  testing::FakeClock clock_;
  clients::testing::FakeDraftClient draft_;
  clients::testing::FakeTargetClient target_;
  std::unique_ptr<Coordinator> coordinator_;
  std::vector<int32_t> tokens_;
  absl::StatusOr<GenerationSummary> summary_ = absl::UnknownError("not done");
  int done_calls_ = 0;
};

TEST_F(CoordinatorStateTest, OpensBothSidesThenDraftsAndVerifiesThePromptWithTheFirstBlock) {
  Make();
  Start(/*k=*/3);
  const clients::testing::FakeTargetClient::OpenCall open = target_.opens.Peek();
  EXPECT_EQ(open.session.capacity, 3 + 20);
  EXPECT_EQ(open.session.params.policy, spec::Policy::kExact);
  EXPECT_FALSE(open.session.params.judge_threshold.has_value());  // the last shard's default
  EXPECT_THAT(draft_.opens.Peek().session.prompt, ElementsAre(10, 11, 12));
  EXPECT_FALSE(draft_.opens.Peek().session.record_distributions);  // only the KL rule needs them
  EXPECT_EQ(target_.verifies.size(), 0u);  // no block before the draft session is open
  OpenBoth();
  ASSERT_EQ(draft_.proposals.size(), 1u);
  const spec::ProposeRequest first = draft_.proposals.Peek().request;
  EXPECT_EQ(first.keep_length, 3);
  EXPECT_THAT(first.append_tokens, IsEmpty());
  EXPECT_EQ(first.num_tokens, 3);
  draft_.ReplyPropose({20, 21, 22});
  Run();
  ASSERT_EQ(target_.verifies.size(), 1u);
  const clients::testing::FakeTargetClient::VerifyCall v = target_.verifies.Peek();
  EXPECT_EQ(v.block.start_position, 0);
  EXPECT_EQ(v.block.num_tokens, 6);
  EXPECT_THAT(v.token_ids, ElementsAre(10, 11, 12, 20, 21, 22));
  // Pipelining: the next block is drafted while this one is verified, starting with the bonus guess.
  ASSERT_EQ(draft_.proposals.size(), 1u);
  const spec::ProposeRequest ahead = draft_.proposals.Peek().request;
  EXPECT_EQ(ahead.keep_length, 6);
  EXPECT_EQ(ahead.num_tokens, 4);
}

// on_pass sees each verified block with its verdict before the pass's tokens are streamed, and the
// statistics hold the waiting times of the first pass (it carries the prompt), the later passes and
// the proposals, by the injected clock.
TEST_F(CoordinatorStateTest, OnPassSeesEachBlockBeforeItsTokensAndTheWaitsAreTimed) {
  Make({.pipelined = false});
  GenerationRequest r;
  r.prompt = {10, 11, 12};
  r.max_new_tokens = 6;
  r.speculation.window.k = 2;
  std::vector<std::string> events;
  GenerationCallbacks cb;
  cb.on_pass = [&events](const spec::DraftBlock& block, const spec::Verdict& verdict) {
    events.push_back(absl::StrCat("pass ", block.tokens.size(), " accepted ", verdict.num_accepted));
  };
  cb.on_tokens = [&events](absl::Span<const int32_t> t) {
    events.push_back(absl::StrCat("tokens ", t.size()));
    return true;
  };
  cb.on_done = [this](absl::StatusOr<GenerationSummary> s) { summary_ = std::move(s); };
  ASSERT_OK(coordinator_->Start(std::move(r), std::move(cb)).status());
  Run();
  OpenBoth();
  clock_.Advance(absl::Milliseconds(3));  // drafting the first block
  draft_.ReplyPropose({20, 21});
  Run();
  clock_.Advance(absl::Milliseconds(50));  // the prompt's pass
  target_.ReplyVerdict(2, 22);
  Run();
  clock_.Advance(absl::Milliseconds(4));
  draft_.ReplyPropose({30, 31});
  Run();
  clock_.Advance(absl::Milliseconds(10));
  target_.ReplyVerdict(1, 40);
  Run();
  EXPECT_THAT(events, ElementsAre("pass 2 accepted 2", "tokens 3", "pass 2 accepted 1", "tokens 2"));
  events.clear();
  // One token left (max 6): a pass without draft tokens ends it.
  ASSERT_EQ(draft_.proposals.size(), 0u);
  clock_.Advance(absl::Milliseconds(10));
  target_.ReplyVerdict(0, 50);
  Run();
  ASSERT_OK(summary_.status());
  const spec::SpeculationStats& stats = summary_->stats;
  EXPECT_EQ(stats.prefill_time, absl::Milliseconds(50));
  EXPECT_EQ(stats.verify_time, absl::Milliseconds(20));
  EXPECT_EQ(stats.draft_time, absl::Milliseconds(7));
  EXPECT_EQ(stats.target_passes, 3);
  EXPECT_THAT(events, ElementsAre("pass 0 accepted 0", "tokens 1"));
}

// Session ids carry the coordinator's incarnation in their high bits (issue 21: a restarted
// coordinator numbered from 1 again and collided with sessions its predecessor left open).
TEST_F(CoordinatorStateTest, SessionIdsCarryTheIncarnation) {
  Make({.incarnation = 7});
  const spec::SessionId id = Start();
  EXPECT_EQ(id.value() >> 32, 7u);
  EXPECT_EQ(target_.opens.Peek().session.session_id.value() >> 32, 7u);
  EXPECT_EQ(draft_.opens.Peek().session.session_id.value() >> 32, 7u);
  // Unset, each coordinator picks its own.
  testing::ManualExecutor other_executor;
  Coordinator a({.target_context = kContext, .draft_context = kContext}, &draft_, &target_, &other_executor, &clock_);
  Coordinator b({.target_context = kContext, .draft_context = kContext}, &draft_, &target_, &other_executor, &clock_);
  GenerationRequest r;
  r.prompt = {1};
  r.max_new_tokens = 2;
  ASSERT_OK_AND_ASSIGN(spec::SessionId ia, a.Start(r, {}));
  ASSERT_OK_AND_ASSIGN(spec::SessionId ib, b.Start(r, {}));
  EXPECT_NE(ia.value() >> 32, 0u);
  EXPECT_NE(ia.value() >> 32, ib.value() >> 32);
}

// Order 1: the verdict (everything accepted) arrives before the optimistic proposal; the proposal
// then continues the committed tokens exactly and goes straight to verification.
TEST_F(CoordinatorStateTest, VerdictBeforeTheOptimisticProposalStillUsesIt) {
  Make();
  const spec::SessionId id = Start(3);
  OpenBoth();
  draft_.ReplyPropose({20, 21, 22});
  Run();
  target_.ReplyVerdict(3, 23);  // all accepted, bonus 23
  Run();
  EXPECT_THAT(tokens_, ElementsAre(20, 21, 22, 23));
  EXPECT_EQ(target_.verifies.size(), 0u);  // waits for the proposal in flight (one per session)
  draft_.ReplyPropose({23, 30, 31, 32});   // the bonus guess held
  Run();
  ASSERT_EQ(target_.verifies.size(), 1u);
  const clients::testing::FakeTargetClient::VerifyCall v = target_.verifies.Peek();
  EXPECT_EQ(v.block.start_position, 6);
  EXPECT_THAT(v.token_ids, ElementsAre(23, 30, 31, 32));
  EXPECT_THAT(v.block.draft.tokens, ElementsAre(30, 31, 32));
  target_.ReplyVerdict(0, 40);
  Run();
  coordinator_->Cancel(id);
  Run();
  ASSERT_EQ(draft_.proposals.size(), 1u);
  draft_.FailPropose(absl::CancelledError("released"));
  Run();
  ASSERT_FALSE(summary_.ok());
  const CoordinatorTotals totals = coordinator_->Snapshot().totals;
  EXPECT_EQ(totals.stats.optimistic_hits, 1);
  EXPECT_EQ(totals.stats.target_passes, 2);
  EXPECT_EQ(totals.stats.accepted_exact, 3);
}

// Order 2: the verdict rejects part of the block; the optimistic proposal that arrives afterwards
// continues tokens that were not committed, so it is dropped and the draft rolls back (keep the
// committed prefix, append the target's token).
TEST_F(CoordinatorStateTest, ProposalAfterARollbackIsDroppedAndTheDraftRollsBack) {
  Make();
  Start(3);
  OpenBoth();
  draft_.ReplyPropose({20, 21, 22});
  Run();
  target_.ReplyVerdict(1, 50);  // 20 accepted, 21 rejected, the target says 50
  Run();
  EXPECT_THAT(tokens_, ElementsAre(20, 50));
  draft_.ReplyPropose({23, 30, 31, 32});  // drafted after 20 21 22: useless now
  Run();
  EXPECT_EQ(target_.verifies.size(), 0u);
  ASSERT_EQ(draft_.proposals.size(), 1u);
  const spec::ProposeRequest redraft = draft_.proposals.Peek().request;
  EXPECT_EQ(redraft.keep_length, 4);  // 10 11 12 20
  EXPECT_THAT(redraft.append_tokens, ElementsAre(50));
  EXPECT_EQ(redraft.num_tokens, 3);
  draft_.ReplyPropose({60, 61, 62});
  Run();
  ASSERT_EQ(target_.verifies.size(), 1u);
  EXPECT_THAT(target_.verifies.Peek().token_ids, ElementsAre(50, 60, 61, 62));
  EXPECT_EQ(coordinator_->Snapshot().sessions.size(), 1u);
  const CoordinatorSnapshot snap = coordinator_->Snapshot();
  EXPECT_EQ(snap.sessions[0].generated_tokens, 2);
  EXPECT_EQ(snap.sessions[0].policy, "greedy");
}

// Order 3: a shard error between two verdicts fails the session with the shard's error after the
// first verdict's tokens; the workers' sessions are released only once the proposal still in
// flight has come back.
TEST_F(CoordinatorStateTest, ShardErrorBetweenTwoVerdictsFailsTheSessionAndReleasesItLater) {
  Make({.target_retries = 0});
  const spec::SessionId id = Start(2);
  OpenBoth();
  draft_.ReplyPropose({20, 21});
  Run();
  draft_.ReplyPropose({22, 30, 31});  // the optimistic proposal comes back first
  Run();
  target_.ReplyVerdict(2, 22);  // guess held: the next block goes out at once
  Run();
  ASSERT_EQ(target_.verifies.size(), 1u);
  EXPECT_THAT(PendingBlockDraft(), ElementsAre(30, 31));
  ASSERT_EQ(draft_.proposals.size(), 1u);  // drafting ahead again
  target_.FailVerify(absl::UnavailableError("target shard 1 (127.0.0.1:2) is unreachable"));
  Run();
  EXPECT_THAT(tokens_, ElementsAre(20, 21, 22));
  EXPECT_THAT(summary_.status(), StatusIs(absl::StatusCode::kUnavailable, HasSubstr("target shard 1")));
  EXPECT_THAT(target_.closed(), IsEmpty());  // a proposal is still in flight
  EXPECT_EQ(coordinator_->Snapshot().releasing, 1);
  draft_.ReplyPropose({32, 33, 34});
  Run();
  EXPECT_THAT(target_.closed(), ElementsAre(id));
  EXPECT_EQ(draft_.closed().size(), 1u);
  const CoordinatorSnapshot snap = coordinator_->Snapshot();
  EXPECT_EQ(snap.releasing, 0);
  EXPECT_EQ(snap.totals.requests_failed, 1);
  EXPECT_EQ(done_calls_, 1);
}

// Order 3b: transient target failures (a lost request or reply, a shard restarting) send the same
// block again, same step; the retries run out after target_retries and the session fails with the
// first error; a retry that finds the session gone reports the transient error that caused it.
TEST_F(CoordinatorStateTest, TransientTargetFailuresSendTheSameBlockAgain) {
  Make({.pipelined = false, .target_retries = 2});
  Start(2);
  OpenBoth();
  draft_.ReplyPropose({20, 21});
  Run();
  ASSERT_EQ(target_.verifies.size(), 1u);
  const spec::ShardBlock first = target_.verifies.Peek().block;
  target_.FailVerify(absl::DeadlineExceededError("injected fault: Verify reply dropped"));
  Run();
  ASSERT_EQ(target_.verifies.size(), 1u);
  const clients::testing::FakeTargetClient::VerifyCall again = target_.verifies.Peek();
  EXPECT_EQ(again.block.step, first.step);
  EXPECT_EQ(again.block.start_position, first.start_position);
  EXPECT_THAT(again.block.draft.tokens, ElementsAre(20, 21));
  EXPECT_THAT(again.token_ids, ElementsAre(10, 11, 12, 20, 21));
  target_.FailVerify(absl::UnavailableError("target shard 1 is restarting"));
  Run();
  target_.ReplyVerdict(2, 22);
  Run();
  EXPECT_THAT(tokens_, ElementsAre(20, 21, 22));
  EXPECT_EQ(coordinator_->Snapshot().totals.target_retries, 2);

  // The next block: three failures in a row end the session with the first one.
  draft_.ReplyPropose({23, 24});
  Run();
  ASSERT_EQ(target_.verifies.size(), 1u);
  target_.FailVerify(absl::UnavailableError("target shard 1 (127.0.0.1:2) is unreachable"));
  Run();
  target_.FailVerify(absl::DeadlineExceededError("no verdict in time"));
  Run();
  ASSERT_EQ(target_.verifies.size(), 1u);
  target_.FailVerify(absl::NotFoundError("no target session"));  // the restarted shard lost it
  Run();
  EXPECT_EQ(target_.verifies.size(), 0u);
  EXPECT_THAT(summary_.status(), StatusIs(absl::StatusCode::kUnavailable, HasSubstr("unreachable")));
  EXPECT_EQ(done_calls_, 1);
}

TEST_F(CoordinatorStateTest, TransientTargetOpenFailuresOpenAgainOthersFailAtOnce) {
  Make({.target_retries = 2});
  Start(3);
  target_.ReplyOpen(absl::DeadlineExceededError("injected fault: OpenTargetSession reply dropped"));
  Run();
  ASSERT_EQ(target_.opens.size(), 1u);  // opened again
  target_.ReplyOpen();
  draft_.ReplyOpen();
  Run();
  EXPECT_EQ(draft_.proposals.size(), 1u);  // decoding started
  EXPECT_EQ(done_calls_, 0);

  Start(3);  // a second session: a refusal is not retried
  target_.ReplyOpen(absl::ResourceExhaustedError("target shard 0 holds its maximum"));
  Run();
  EXPECT_EQ(target_.opens.size(), 0u);
  EXPECT_THAT(summary_.status(), StatusIs(absl::StatusCode::kResourceExhausted));
}

// Order 4: the draft times out; the session goes on target-only (blocks without draft tokens) and
// reopens the draft from its committed tokens once the clock has passed the retry interval.
TEST_F(CoordinatorStateTest, DraftTimeoutDegradesToTargetOnlyAndRetriesAfterTheInterval) {
  Make({.draft_retry_interval = absl::Seconds(2)});
  Start(3, 8);
  OpenBoth();
  draft_.FailPropose(absl::DeadlineExceededError("the draft worker did not answer in time"));
  Run();
  ASSERT_EQ(target_.verifies.size(), 1u);
  EXPECT_THAT(PendingBlockDraft(), IsEmpty());
  EXPECT_THAT(target_.verifies.Peek().token_ids, ElementsAre(10, 11, 12));
  EXPECT_EQ(draft_.closed().size(), 1u);  // the failed draft session is given up
  target_.ReplyVerdict(0, 70);
  Run();
  ASSERT_EQ(target_.verifies.size(), 1u);  // still before the retry time: target-only again
  EXPECT_EQ(draft_.opens.size(), 0u);
  clock_.Advance(absl::Seconds(3));
  target_.ReplyVerdict(0, 71);
  Run();
  ASSERT_EQ(draft_.opens.size(), 1u);  // reopened from the committed tokens
  EXPECT_THAT(draft_.opens.Peek().session.prompt, ElementsAre(10, 11, 12, 70, 71));
  EXPECT_EQ(target_.verifies.size(), 1u);  // decoding does not wait for the reopening
  draft_.ReplyOpen();
  target_.ReplyVerdict(0, 72);
  Run();
  ASSERT_EQ(draft_.proposals.size(), 1u);
  // The worker has the tokens it was reopened with; it appends what was committed since.
  EXPECT_EQ(draft_.proposals.Peek().request.keep_length, 5);
  EXPECT_THAT(draft_.proposals.Peek().request.append_tokens, ElementsAre(72));
  EXPECT_THAT(tokens_, ElementsAre(70, 71, 72));
}

// Order 5: a target shard refuses the session; the generation fails with its error, and the draft
// session, whose open was still in flight, is closed when that open succeeds.
TEST_F(CoordinatorStateTest, FailedTargetOpenFailsTheSessionAndClosesTheDraftLater) {
  Make();
  const spec::SessionId id = Start(3);
  target_.ReplyOpen(absl::ResourceExhaustedError("target shard 0: the target shard holds its maximum"));
  Run();
  EXPECT_THAT(summary_.status(), StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("shard 0")));
  EXPECT_THAT(target_.closed(), IsEmpty());
  draft_.ReplyOpen();
  Run();
  EXPECT_THAT(target_.closed(), ElementsAre(id));  // some shards may have opened it
  EXPECT_EQ(draft_.closed().size(), 1u);
  EXPECT_EQ(target_.verifies.size(), 0u);
  EXPECT_EQ(draft_.proposals.size(), 0u);
}

// Order 6: the client cancels while a block is verified: the generation ends at once with
// kCancelled; the verdict that arrives later commits nothing and lets the session be released.
TEST_F(CoordinatorStateTest, CancelWhileVerifyingEndsAtOnceAndIgnoresTheLateVerdict) {
  Make({.pipelined = false});
  const spec::SessionId id = Start(2);
  OpenBoth();
  draft_.ReplyPropose({20, 21});
  Run();
  ASSERT_EQ(target_.verifies.size(), 1u);
  EXPECT_EQ(draft_.proposals.size(), 0u);  // not pipelined
  coordinator_->Cancel(id);
  Run();
  EXPECT_THAT(summary_.status(), StatusIs(absl::StatusCode::kCancelled));
  EXPECT_THAT(target_.closed(), IsEmpty());
  target_.ReplyVerdict(2, 22);
  Run();
  EXPECT_THAT(tokens_, IsEmpty());
  EXPECT_THAT(target_.closed(), ElementsAre(id));
  EXPECT_EQ(coordinator_->Snapshot().totals.requests_cancelled, 1);
  EXPECT_EQ(done_calls_, 1);
}

// Order 7: a stop token inside the accepted tokens ends the generation there; the optimistic
// proposal still in flight is waited for before release.
TEST_F(CoordinatorStateTest, StopTokenInsideTheAcceptedTokensFinishesThere) {
  Make();
  const spec::SessionId id = Start(3, 20, /*stops=*/{21});
  OpenBoth();
  draft_.ReplyPropose({20, 21, 22});
  Run();
  target_.ReplyVerdict(3, 23);
  Run();
  EXPECT_THAT(tokens_, ElementsAre(20, 21));
  ASSERT_OK(summary_.status());
  EXPECT_EQ(summary_->finish_reason, FinishReason::kStop);
  EXPECT_EQ(summary_->stats.tokens, 2);
  EXPECT_THAT(target_.closed(), IsEmpty());
  draft_.ReplyPropose({23, 24, 25, 26});
  Run();
  EXPECT_THAT(target_.closed(), ElementsAre(id));
}

// Order 8: the coordinator is destroyed with replies in flight: the generation fails with
// kCancelled, every worker session is closed at once (no waiting for the workers), and replies
// that arrive afterwards touch nothing.
TEST_F(CoordinatorStateTest, ShutdownWithRepliesInFlightClosesEverythingWithoutWaiting) {
  Make();
  const spec::SessionId id = Start(3);
  OpenBoth();
  draft_.ReplyPropose({20, 21, 22});
  Run();
  ASSERT_EQ(target_.verifies.size(), 1u);
  ASSERT_EQ(draft_.proposals.size(), 1u);
  coordinator_.reset();
  EXPECT_THAT(summary_.status(), StatusIs(absl::StatusCode::kCancelled, HasSubstr("shutting down")));
  EXPECT_THAT(target_.closed(), ElementsAre(id));
  EXPECT_EQ(draft_.closed().size(), 1u);
  target_.ReplyVerdict(3, 23);
  draft_.ReplyPropose({23, 24, 25, 26});
  Run();
  EXPECT_THAT(tokens_, IsEmpty());
  EXPECT_EQ(done_calls_, 1);
}

TEST_F(CoordinatorStateTest, LengthAndContextLimitsEndTheGeneration) {
  Make();
  Start(4, /*max_new=*/3);
  OpenBoth();
  // A pass commits up to k + 1 tokens: with 3 tokens to go, the window is 2.
  ASSERT_EQ(draft_.proposals.size(), 1u);
  EXPECT_EQ(draft_.proposals.Peek().request.num_tokens, 2);
  draft_.ReplyPropose({20, 21});
  Run();
  target_.ReplyVerdict(2, 22);
  Run();
  ASSERT_OK(summary_.status());
  EXPECT_EQ(summary_->finish_reason, FinishReason::kLength);
  EXPECT_THAT(tokens_, ElementsAre(20, 21, 22));
}

TEST_F(CoordinatorStateTest, TheKlRuleAsksTheDraftForItsDistributions) {
  Make();
  GenerationRequest r;
  r.prompt = {1, 2};
  r.speculation.policy = spec::Policy::kLossyKl;
  ASSERT_OK(coordinator_->Start(std::move(r), {}).status());
  Run();
  ASSERT_EQ(draft_.opens.size(), 1u);
  EXPECT_TRUE(draft_.opens.Peek().session.record_distributions);
  EXPECT_EQ(target_.opens.Peek().session.params.policy, spec::Policy::kLossyKl);
}

TEST_F(CoordinatorStateTest, BadRequestsAreRefusedBeforeAnyCall) {
  Make({.max_sessions = 1});
  GenerationRequest r;
  r.prompt = {1};
  r.speculation.judge_threshold = 2.0f;
  EXPECT_THAT(coordinator_->Start(r, {}), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("judge threshold")));
  r.speculation.judge_threshold.reset();
  r.sampling.top_p = 0;
  EXPECT_THAT(coordinator_->Start(r, {}), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("top_p")));
  Run();
  EXPECT_EQ(target_.opens.size(), 0u);
  Start(2);
  r.sampling = {};
  EXPECT_THAT(coordinator_->Start(r, {}), StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("maximum")));
}

}  // namespace
}  // namespace verdict::coordinator
