// SPDX-License-Identifier: Apache-2.0
// The wire forms of the speculation vocabulary: a request's speculation settings with the server's
// defaults filled in, policies without a wire form refused, the statistics and shard blocks round
// trip, hostile values refused with INVALID_ARGUMENT.
#include "clients/grpc/wire_convert.h"

#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace verdict::wire {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::verdict::testing::StatusIs;

TEST(WireSpeculationTest, UnsetFieldsTakeTheServersDefaults) {
  v1::SpeculationParams p;
  ASSERT_OK_AND_ASSIGN(spec::SpeculationParams s, FromProto(p, {spec::Policy::kJudge, 12}));
  EXPECT_EQ(s.policy, spec::Policy::kJudge);
  EXPECT_EQ(s.window.k, 12);
  EXPECT_FALSE(s.window.adaptive);
  EXPECT_FALSE(s.judge_threshold.has_value());  // the last shard's head decides
  EXPECT_TRUE(s.speculate);

  p.set_policy(v1::VERIFICATION_POLICY_LOSSY_TYPICAL);
  p.set_adaptive_window(true);
  p.set_max_window(10);  // the start (12) is clamped into [1, 10]
  p.set_judge_threshold(0.25f);
  p.set_disable_speculation(true);
  ASSERT_OK_AND_ASSIGN(s, FromProto(p, {spec::Policy::kJudge, 12}));
  EXPECT_EQ(s.policy, spec::Policy::kLossyTypical);
  EXPECT_TRUE(s.window.adaptive);
  EXPECT_EQ(s.window.min_k, spec::DraftWindowOptions{}.min_k);
  EXPECT_EQ(s.window.max_k, 10);
  EXPECT_EQ(s.window.k, 10);
  EXPECT_EQ(s.judge_threshold, 0.25f);
  EXPECT_FALSE(s.speculate);
}

TEST(WireSpeculationTest, BadValuesAndPoliciesWithoutAWireForm) {
  v1::SpeculationParams p;
  p.set_draft_window(-3);
  EXPECT_THAT(FromProto(p, {}), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("positive")));
  p.Clear();
  p.set_policy(static_cast<v1::VerificationPolicy>(77));
  EXPECT_THAT(FromProto(p, {}), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("77")));
  // Adaptive bounds out of order (a max left unset means 64): an error, not std::clamp with lo > hi
  // (undefined behaviour; tests/fuzz wire_convert).
  p.Clear();
  p.set_adaptive_window(true);
  p.set_min_window(100);
  EXPECT_THAT(FromProto(p, {}), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("min (100) <= max (64)")));
  p.set_max_window(20);
  EXPECT_THAT(FromProto(p, {}), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("min (100) <= max (20)")));
  spec::SpeculationParams kl;
  kl.policy = spec::Policy::kLossyKl;
  v1::SpeculationParams out;
  EXPECT_THAT(ToProto(kl, &out), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("lossy-kl")));
}

TEST(WireSpeculationTest, EveryWirePolicyRoundTrips) {
  for (spec::Policy policy : spec::AllPolicies()) {
    if (!spec::HasWireForm(policy)) continue;
    spec::SpeculationParams s;
    s.policy = policy;
    s.lossy_threshold = 0.2f;
    s.window = {.k = 5, .adaptive = true, .min_k = 2, .max_k = 9};
    v1::SpeculationParams p;
    ASSERT_OK(ToProto(s, &p));
    ASSERT_OK_AND_ASSIGN(spec::SpeculationParams back, FromProto(p, {}));
    EXPECT_EQ(back.policy, policy);
    EXPECT_EQ(back.lossy_threshold, 0.2f);
    EXPECT_FALSE(back.judge_threshold.has_value());
    EXPECT_TRUE(back.window.adaptive);
    EXPECT_EQ(back.window.min_k, 2);
    EXPECT_EQ(back.window.max_k, 9);
    EXPECT_EQ(back.window.k, 5);
  }
}

TEST(WireStatsTest, StatisticsRoundTrip) {
  spec::SpeculationStats s;
  s.tokens = 40;
  s.target_passes = 7;
  s.target_only_passes = 2;
  s.proposed = 30;
  s.accepted_exact = 20;
  s.accepted_judge = 5;
  s.accepted_lossy = 1;
  s.accepted_histogram = {2, 0, 5};
  s.optimistic_blocks = 4;
  s.optimistic_hits = 3;
  s.draft_failures = 1;
  s.shadow_judge_only = 6;
  s.shadow_accepted = 9;
  s.shadow_exact_only = 2;
  s.shadow_both = 3;
  s.judge_head = "3f2a9c0b1d4e5f60@0.5";
  v1::SpeculationStats p;
  ToProto(s, &p);
  const spec::SpeculationStats back = FromProto(p);
  EXPECT_EQ(back.tokens, 40);
  EXPECT_EQ(back.target_passes, 7);
  EXPECT_EQ(back.target_only_passes, 2);
  EXPECT_EQ(back.proposed, 30);
  EXPECT_EQ(back.accepted_exact, 20);
  EXPECT_EQ(back.accepted_judge, 5);
  EXPECT_EQ(back.accepted_lossy, 1);
  EXPECT_THAT(back.accepted_histogram, ElementsAre(2, 0, 5));
  EXPECT_EQ(back.optimistic_blocks, 4);
  EXPECT_EQ(back.optimistic_hits, 3);
  EXPECT_EQ(back.draft_failures, 1);
  EXPECT_EQ(back.shadow_judge_only, 6);
  EXPECT_EQ(back.shadow_accepted, 9);
  EXPECT_EQ(back.shadow_exact_only, 2);
  EXPECT_EQ(back.shadow_both, 3);
  EXPECT_EQ(back.judge_head, "3f2a9c0b1d4e5f60@0.5");
}

// A judge-shadow verdict keeps what the shadow judge would have done (issue 21: it was lost over
// the wire, so a cluster always reported 0 tokens only the shadow judge would accept).
TEST(WireVerdictTest, ShadowVerdictsRoundTrip) {
  spec::Verdict v;
  v.num_accepted = 1;
  v.next_token = 7;
  v.reasons = {spec::AcceptReason::kExact, spec::AcceptReason::kRejected, spec::AcceptReason::kNotReached};
  v.judge_scores = {0.9f, 0.7f, 0.2f};
  v.shadow_num_accepted = 2;
  v.shadow_judge_only = 1;
  v.shadow_exact_only = 0;
  v.shadow_both = 1;
  v.judge_head = "0123456789abcdef@0.7";
  v1::BlockVerdict p;
  ToProto(v, &p);
  const spec::Verdict back = FromProto(p);
  EXPECT_EQ(back.num_accepted, 1);
  EXPECT_EQ(back.next_token, 7);
  EXPECT_EQ(back.reasons, v.reasons);
  EXPECT_EQ(back.judge_scores, v.judge_scores);
  EXPECT_EQ(back.shadow_num_accepted, 2);
  EXPECT_EQ(back.shadow_judge_only, 1);
  EXPECT_EQ(back.shadow_exact_only, 0);
  EXPECT_EQ(back.shadow_both, 1);
  EXPECT_EQ(back.judge_head, "0123456789abcdef@0.7");
}

TEST(WireBlockTest, ShardBlocksRoundTripWithTheirSessionId) {
  spec::ShardBlock b;
  b.session_id = spec::SessionId(42);
  b.step = 3;
  b.start_position = 10;
  b.num_tokens = 4;
  b.verify = true;
  b.draft.tokens = {5, 6, 7};
  v1::BlockHeader p;
  ToProto(b, &p);
  ASSERT_OK_AND_ASSIGN(spec::ShardBlock back, FromProto(p, /*vocab_size=*/100));
  EXPECT_EQ(back.session_id, spec::SessionId(42));
  EXPECT_EQ(back.step, 3u);
  EXPECT_THAT(back.draft.tokens, ElementsAre(5, 6, 7));
  p.mutable_draft()->set_tokens(0, 100);  // outside the vocabulary
  EXPECT_THAT(FromProto(p, 100), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("vocabulary")));
}

}  // namespace
}  // namespace verdict::wire
