// SPDX-License-Identifier: Apache-2.0
// RPC fault injection: the spec parser (every fault, defaults, overrides, each kind of bad entry),
// the seeded stream (same seed, same faults; frequencies within binomial bounds) and what each
// fault does to a call, checked against scripted fake workers: whether the worker saw the request
// (once, twice or not at all) and what the caller heard (once, always).
#include "clients/chaos/rpc_chaos.h"

#include <cmath>

#include "absl/synchronization/notification.h"
#include "clients/testing/fake_worker_clients.h"
#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace verdict::clients {
namespace {

using ::testing::HasSubstr;
using ::verdict::testing::StatusIs;

constexpr int kPropose = static_cast<int>(ChaosMethod::kPropose);
constexpr int kVerify = static_cast<int>(ChaosMethod::kVerify);

double P(const ChaosOptions& o, ChaosMethod m, ChaosFault f) {
  return o.rules[static_cast<int>(m)].probability[static_cast<int>(f)];
}

TEST(ChaosSpecTest, ParsesEveryFaultWithDefaultsAndOverrides) {
  ASSERT_OK_AND_ASSIGN(ChaosOptions o,
                       ParseChaosSpec(" seed=42 ; *=drop_request:0.01, drop_reply:0.02,delay:0.03@5ms ;"
                                      "Verify=fail:0.1@DEADLINE_EXCEEDED,duplicate:0.04;Propose=drop_reply:0"));
  EXPECT_EQ(o.seed, 42u);
  EXPECT_TRUE(o.enabled());
  EXPECT_EQ(P(o, ChaosMethod::kOpenDraftSession, ChaosFault::kDropRequest), 0.01);
  EXPECT_EQ(P(o, ChaosMethod::kRenewTargetLease, ChaosFault::kDelay), 0.03);
  EXPECT_EQ(o.rules[kVerify].delay, absl::Milliseconds(5));
  EXPECT_EQ(P(o, ChaosMethod::kVerify, ChaosFault::kFail), 0.1);
  EXPECT_EQ(o.rules[kVerify].fail_code, absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(P(o, ChaosMethod::kVerify, ChaosFault::kDuplicate), 0.04);
  EXPECT_EQ(P(o, ChaosMethod::kPropose, ChaosFault::kDropReply), 0.0);  // overridden
  EXPECT_EQ(P(o, ChaosMethod::kPropose, ChaosFault::kDropRequest), 0.01);
  EXPECT_EQ(o.rules[kPropose].fail_code, absl::StatusCode::kUnavailable);  // the default code

  ASSERT_OK_AND_ASSIGN(ChaosOptions off, ParseChaosSpec(""));
  EXPECT_FALSE(off.enabled());
}

TEST(ChaosSpecTest, RefusesBadEntriesNamingThem) {
  for (const char* bad : {"seed=x", "Verify", "Nope=fail:0.1", "Verify=explode:0.1", "Verify=fail:1.5",
                          "Verify=fail:-0.1", "Verify=fail:0.1@NO_SUCH_CODE", "Verify=delay:0.1@soon",
                          "Verify=duplicate:0.1@3", "Verify=fail:0.6,drop_reply:0.6", "Verify=fail"}) {
    EXPECT_THAT(ParseChaosSpec(bad).status(), StatusIs(absl::StatusCode::kInvalidArgument)) << bad;
  }
  EXPECT_THAT(ParseChaosSpec("Verify=explode:0.1").status(), StatusIs(absl::StatusCode::kInvalidArgument,
                                                                      HasSubstr("explode")));
}

TEST(RpcChaosTest, TheSeedFixesTheFaultsAndTheirFrequencies) {
  ASSERT_OK_AND_ASSIGN(ChaosOptions o, ParseChaosSpec("seed=9;Verify=drop_reply:0.2,fail:0.1"));
  RpcChaos a(o), b(o);
  constexpr int kCalls = 20000;
  int drops = 0, fails = 0;
  for (int i = 0; i < kCalls; ++i) {
    const ChaosFault f = a.Decide(ChaosMethod::kVerify);
    ASSERT_EQ(f, b.Decide(ChaosMethod::kVerify)) << "call " << i;
    drops += f == ChaosFault::kDropReply;
    fails += f == ChaosFault::kFail;
    ASSERT_EQ(a.Decide(ChaosMethod::kPropose), ChaosFault::kNone);  // no rule: no fault
  }
  // Binomial bounds at 5 standard deviations.
  EXPECT_NEAR(drops, 0.2 * kCalls, 5 * std::sqrt(kCalls * 0.2 * 0.8));
  EXPECT_NEAR(fails, 0.1 * kCalls, 5 * std::sqrt(kCalls * 0.1 * 0.9));
  EXPECT_EQ(a.count(ChaosMethod::kVerify, ChaosFault::kDropReply), drops);
  EXPECT_EQ(a.total(ChaosFault::kFail), fails);
  EXPECT_THAT(a.Summary(), HasSubstr("drop_reply=" + std::to_string(drops)));
}

// One fault with probability 1 on every method.
class ChaosDecoratorTest : public ::testing::Test {
 protected:
  void Use(const std::string& fault) {
    absl::StatusOr<ChaosOptions> o = ParseChaosSpec("seed=1;*=" + fault + ":1" +
                                                    (fault == "delay" || fault == "drop_request" ? "@30ms" : ""));
    ASSERT_OK(o.status());
    chaos_ = std::make_unique<RpcChaos>(*o);
    draft_ = std::make_unique<ChaosDraftClient>(&fake_draft_, chaos_.get());
    target_ = std::make_unique<ChaosTargetClient>(&fake_target_, chaos_.get());
  }

  // Sends a block and returns what the caller heard (after `reply` answered the worker's calls).
  struct Heard {
    absl::Mutex mu;
    std::vector<spec::BlockOutcome> outcomes;
    size_t size() {
      absl::MutexLock lock(&mu);
      return outcomes.size();
    }
  };
  void Verify(Heard* heard) {
    spec::ShardBlock block;
    block.session_id = spec::SessionId(7);
    block.step = 3;
    block.num_tokens = 1;
    block.verify = true;
    target_->Verify(block, {5}, [heard](spec::BlockOutcome o) {
      absl::MutexLock lock(&heard->mu);
      heard->outcomes.push_back(std::move(o));
    });
  }
  static void WaitFor(const std::function<bool()>& ready) {
    for (int i = 0; i < 2000 && !ready(); ++i) absl::SleepFor(absl::Milliseconds(5));
    ASSERT_TRUE(ready());
  }

  testing::FakeDraftClient fake_draft_;
  testing::FakeTargetClient fake_target_;
  std::unique_ptr<RpcChaos> chaos_;
  std::unique_ptr<ChaosDraftClient> draft_;
  std::unique_ptr<ChaosTargetClient> target_;
};

TEST_F(ChaosDecoratorTest, DropRequestNeverReachesTheWorkerAndTheCallerHearsDeadlineExceeded) {
  Use("drop_request");
  Heard heard;
  Verify(&heard);
  WaitFor([&] { return heard.size() == 1; });
  EXPECT_EQ(fake_target_.verifies.size(), 0u);
  EXPECT_THAT(heard.outcomes[0].status, StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("request dropped")));
  EXPECT_EQ(heard.outcomes[0].step, 3u);
  draft_->CloseSession(spec::DraftSessionId(4));
  draft_->RenewLease({1, absl::Seconds(1), {}});
  EXPECT_TRUE(fake_draft_.closed().empty());
  EXPECT_EQ(fake_draft_.leases.size(), 0u);
}

TEST_F(ChaosDecoratorTest, DropReplyReachesTheWorkerButTheCallerHearsDeadlineExceeded) {
  Use("drop_reply");
  Heard heard;
  Verify(&heard);
  ASSERT_EQ(fake_target_.verifies.size(), 1u);
  EXPECT_EQ(heard.size(), 0u);
  fake_target_.ReplyVerdict(0, 9);
  ASSERT_EQ(heard.size(), 1u);
  EXPECT_THAT(heard.outcomes[0].status, StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("reply dropped")));
  EXPECT_FALSE(heard.outcomes[0].verdict.has_value());
  draft_->CloseSession(spec::DraftSessionId(4));  // no reply to drop: it goes through
  EXPECT_EQ(fake_draft_.closed().size(), 1u);
}

TEST_F(ChaosDecoratorTest, DuplicateReachesTheWorkerTwiceAndTheCallerHearsOnce) {
  Use("duplicate");
  Heard heard;
  Verify(&heard);
  ASSERT_EQ(fake_target_.verifies.size(), 2u);
  EXPECT_EQ(fake_target_.verifies.Peek(0).block.step, fake_target_.verifies.Peek(1).block.step);
  fake_target_.ReplyVerdict(0, 9);
  fake_target_.ReplyVerdict(0, 9);
  ASSERT_EQ(heard.size(), 1u);
  ASSERT_OK(heard.outcomes[0].status);
  EXPECT_EQ(heard.outcomes[0].verdict->next_token, 9);

  absl::Status opened = absl::UnknownError("not answered");
  int answers = 0;
  draft_->OpenSession({spec::DraftSessionId(4), {1}, {}, 8}, [&](absl::Status s) {
    opened = s;
    ++answers;
  });
  ASSERT_EQ(fake_draft_.opens.size(), 2u);
  fake_draft_.ReplyOpen(absl::OkStatus());
  fake_draft_.ReplyOpen(absl::AlreadyExistsError("the second"));
  EXPECT_EQ(answers, 1);
  ASSERT_OK(opened);
}

TEST_F(ChaosDecoratorTest, FailAnswersWithTheChosenCodeWithoutTheWorker) {
  Use("fail");
  Heard heard;
  Verify(&heard);
  ASSERT_EQ(heard.size(), 1u);
  EXPECT_THAT(heard.outcomes[0].status, StatusIs(absl::StatusCode::kUnavailable, HasSubstr("injected fault: Verify")));
  EXPECT_EQ(fake_target_.verifies.size(), 0u);
  absl::StatusOr<spec::Proposal> proposal;
  draft_->Propose({spec::DraftSessionId(4), 1, 1, {}, 2}, [&](absl::StatusOr<spec::Proposal> p) { proposal = p; });
  EXPECT_THAT(proposal.status(), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_EQ(fake_draft_.proposals.size(), 0u);
}

TEST_F(ChaosDecoratorTest, DelayHoldsTheRequestBack) {
  Use("delay");
  Heard heard;
  const absl::Time start = absl::Now();
  Verify(&heard);
  EXPECT_EQ(fake_target_.verifies.size(), 0u);  // not yet
  WaitFor([&] { return fake_target_.verifies.size() == 1; });
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(30));
  fake_target_.ReplyVerdict(0, 4);
  ASSERT_EQ(heard.size(), 1u);
  ASSERT_OK(heard.outcomes[0].status);
  EXPECT_EQ(chaos_->count(ChaosMethod::kVerify, ChaosFault::kDelay), 1);
}

}  // namespace
}  // namespace verdict::clients
