// SPDX-License-Identifier: Apache-2.0
// The speculation vocabulary: the policy-name table round-trips and refuses unknown names with the
// spellings it accepts; parameter validation; one pass recorded and two requests' statistics
// merged as the coordinator's totals need; the printer's JSON keys; the adaptive draft window.
#include <cmath>
#include <limits>
#include <type_traits>

#include "absl/container/flat_hash_set.h"

#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "spec/draft_block.h"
#include "spec/draft_window.h"
#include "spec/ids.h"
#include "spec/speculation_params.h"
#include "spec/speculation_stats.h"

namespace verdict::spec {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::verdict::testing::StatusIs;

TEST(PolicyNamesTest, EveryPolicyParsesBackFromItsName) {
  for (Policy p : AllPolicies()) {
    ASSERT_OK_AND_ASSIGN(PolicySpelling spelling, ParsePolicyName(PolicyName(p)));
    EXPECT_EQ(spelling.policy, p);
    EXPECT_FALSE(spelling.exact.has_value());
  }
  EXPECT_EQ(AllPolicies().size(), 6u);
  EXPECT_FALSE(HasWireForm(Policy::kLossyKl));
  EXPECT_TRUE(HasWireForm(Policy::kJudgeShadow));
  EXPECT_TRUE(IsLossy(Policy::kJudge));
  EXPECT_FALSE(IsLossy(Policy::kJudgeShadow));
}

TEST(PolicyNamesTest, ExactRuleSpellings) {
  ASSERT_OK_AND_ASSIGN(PolicySpelling greedy, ParsePolicyName("greedy"));
  EXPECT_EQ(greedy.policy, Policy::kExact);
  EXPECT_EQ(greedy.exact, ExactRule::kGreedy);
  ASSERT_OK_AND_ASSIGN(PolicySpelling sampled, ParsePolicyName("sampled"));
  EXPECT_EQ(sampled.exact, ExactRule::kSampled);
  ASSERT_OK_AND_ASSIGN(PolicySpelling standard, ParsePolicyName("standard"));
  EXPECT_EQ(standard.policy, Policy::kExact);
  EXPECT_FALSE(standard.exact.has_value());
  EXPECT_THAT(ParsePolicyName("fastest"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("unknown verification policy \"fastest\""), HasSubstr("judge-shadow"))));
}

TEST(PolicyNamesTest, LabelsNameTheExactRuleAndThePolicy) {
  EXPECT_EQ(PolicyLabel(Policy::kExact, ExactRule::kGreedy), "greedy");
  EXPECT_EQ(PolicyLabel(Policy::kExact, ExactRule::kSampled), "sampled");
  EXPECT_EQ(PolicyLabel(Policy::kJudge, ExactRule::kSampled), "sampled+judge");
  EXPECT_EQ(PolicyLabel(Policy::kLossyTypical, ExactRule::kGreedy), "greedy+lossy-typical");
  EXPECT_EQ(ExactRuleFor(SamplingParams{.temperature = 0.5f}), ExactRule::kSampled);
  EXPECT_EQ(ExactRuleFor(SamplingParams{}), ExactRule::kGreedy);
}

TEST(SpeculationParamsTest, ValidationNamesTheBadValue) {
  SpeculationParams ok;
  EXPECT_OK(ValidateSpeculationParams(ok));
  SpeculationParams p;
  p.judge_threshold = 1.5f;
  EXPECT_THAT(ValidateSpeculationParams(p), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("judge threshold")));
  p = {};
  p.judge_threshold = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THAT(ValidateSpeculationParams(p), StatusIs(absl::StatusCode::kInvalidArgument));
  p = {};
  p.lossy_threshold = -0.1f;
  EXPECT_THAT(ValidateSpeculationParams(p), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(">= 0")));
  p = {};
  p.policy = Policy::kLossyProb;
  p.lossy_threshold = 2.0f;  // a probability
  EXPECT_THAT(ValidateSpeculationParams(p), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("[0, 1]")));
  p.policy = Policy::kLossyKl;  // nats: may exceed 1
  EXPECT_OK(ValidateSpeculationParams(p));
  p = {};
  p.typical_delta = std::numeric_limits<float>::infinity();
  EXPECT_THAT(ValidateSpeculationParams(p), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("typical delta")));
  p = {};
  p.window.k = kMaxDraftTokens + 1;
  EXPECT_THAT(ValidateSpeculationParams(p), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("draft window")));
}

TEST(SamplingParamsTest, ValidationAndTheDraftsSeed) {
  EXPECT_OK(ValidateSamplingParams({}));
  EXPECT_THAT(ValidateSamplingParams({.temperature = -1}), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ValidateSamplingParams({.top_p = 0}), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ValidateSamplingParams({.top_k = -2}), StatusIs(absl::StatusCode::kInvalidArgument));
  const SamplingParams target{.temperature = 0.8f, .top_k = 5, .top_p = 0.9f, .seed = 42};
  const SamplingParams draft = DefaultDraftSampling(target);
  EXPECT_EQ(draft.temperature, target.temperature);
  EXPECT_EQ(draft.top_k, target.top_k);
  EXPECT_NE(draft.seed, target.seed);
}

Verdict MakeVerdict(int32_t accepted, std::vector<AcceptReason> reasons) {
  Verdict v;
  v.num_accepted = accepted;
  v.next_token = 7;
  v.reasons = std::move(reasons);
  return v;
}

TEST(SpeculationStatsTest, RecordsPassesByRule) {
  SpeculationStats s;
  s.RecordPass(3, MakeVerdict(2, {AcceptReason::kExact, AcceptReason::kJudge, AcceptReason::kRejected}));
  s.RecordPass(2, MakeVerdict(2, {AcceptReason::kExact, AcceptReason::kLossy}));
  s.RecordPass(0, MakeVerdict(0, {}));
  EXPECT_EQ(s.target_passes, 3);
  EXPECT_EQ(s.target_only_passes, 1);
  EXPECT_EQ(s.proposed, 5);
  EXPECT_EQ(s.accepted_exact, 2);
  EXPECT_EQ(s.accepted_judge, 1);
  EXPECT_EQ(s.accepted_lossy, 1);
  EXPECT_EQ(s.full_blocks, 1);
  EXPECT_THAT(s.accepted_histogram, ElementsAre(1, 0, 2));
  Verdict shadow = MakeVerdict(1, {AcceptReason::kExact, AcceptReason::kRejected});
  shadow.shadow_num_accepted = 2;
  shadow.shadow_judge_only = 1;
  shadow.shadow_both = 1;
  s.RecordPass(2, shadow);
  EXPECT_EQ(s.shadow_accepted, 2);
  EXPECT_EQ(s.shadow_judge_only, 1);
  EXPECT_TRUE(s.has_shadow());
}

TEST(SpeculationStatsTest, MergeSumsEveryCounterAndWidensTheHistogram) {
  SpeculationStats a, b;
  a.tokens = 10;
  a.target_passes = 4;
  a.accepted_histogram = {1, 3};
  a.optimistic_blocks = 2;
  b.tokens = 5;
  b.target_passes = 1;
  b.accepted_histogram = {0, 0, 0, 1};
  b.optimistic_hits = 1;
  b.draft_failures = 2;
  b.degraded = true;
  b.total_time = absl::Seconds(2);
  a.Merge(b);
  EXPECT_EQ(a.tokens, 15);
  EXPECT_EQ(a.target_passes, 5);
  EXPECT_THAT(a.accepted_histogram, ElementsAre(1, 3, 0, 1));
  EXPECT_EQ(a.optimistic_blocks, 2);
  EXPECT_EQ(a.optimistic_hits, 1);
  EXPECT_EQ(a.draft_failures, 2);
  EXPECT_TRUE(a.degraded);
  EXPECT_EQ(a.total_time, absl::Seconds(2));
  EXPECT_DOUBLE_EQ(a.tokens_per_pass(), 3.0);
}

TEST(SpeculationStatsTest, JsonAndTextCarryTheCounters) {
  SpeculationStats s;
  s.tokens = 9;
  s.RecordPass(4, MakeVerdict(3, {AcceptReason::kExact, AcceptReason::kExact, AcceptReason::kJudge,
                                  AcceptReason::kRejected}));
  s.total_time = absl::Milliseconds(500);
  const nlohmann::json j = StatsJson(s);
  EXPECT_EQ(j["tokens"], 9);
  EXPECT_EQ(j["target_passes"], 1);
  EXPECT_EQ(j["draft_tokens_proposed"], 4);
  EXPECT_EQ(j["accepted"]["exact"], 2);
  EXPECT_EQ(j["accepted"]["judge"], 1);
  EXPECT_EQ(j["accepted_length_histogram"], nlohmann::json({0, 0, 0, 1}));
  EXPECT_DOUBLE_EQ(j["seconds"].get<double>(), 0.5);
  EXPECT_DOUBLE_EQ(j["tokens_per_second"].get<double>(), 18.0);
  EXPECT_FALSE(j.contains("shadow"));
  const std::string text = FormatStats(s, "greedy+judge", "[x] ");
  EXPECT_THAT(text, HasSubstr("[x] speculative decoding, policy greedy+judge"));
  EXPECT_THAT(text, HasSubstr("accepted 3 (75.0%): exact 2, judge 1, lossy 0"));
  EXPECT_THAT(text, HasSubstr("(length:passes) 3:1"));
}

TEST(DraftBlockTest, SliceKeepsTokensLogprobsProposalsAndDistributions) {
  DraftBlock b;
  b.tokens = {1, 2, 3, 4};
  b.logprobs = {-0.1f, -0.2f, -0.3f, -0.4f};
  b.proposals.resize(4);
  b.proposals[2].ids = {3, 9};
  b.proposals[2].probs = {0.75f, 0.25f};
  b.distributions = {0.1f, 0.9f, 0.2f, 0.8f, 0.3f, 0.7f, 0.4f, 0.6f};  // vocabulary of 2
  const DraftBlock s = b.Slice(1, 2);
  EXPECT_THAT(s.distributions, ElementsAre(0.2f, 0.8f, 0.3f, 0.7f));
  EXPECT_THAT(s.tokens, ElementsAre(2, 3));
  EXPECT_THAT(s.logprobs, ElementsAre(-0.2f, -0.3f));
  ASSERT_EQ(s.proposals.size(), 2u);
  EXPECT_EQ(s.proposals[1].ProbOf(9), 0.25f);
  EXPECT_EQ(s.proposals[1].ProbOf(4), 0.0f);
  EXPECT_EQ(AcceptReasonName(AcceptReason::kNotReached), "not_reached");
}

// The two kinds of session ids cannot be passed for each other or for a bare integer.
static_assert(!std::is_convertible_v<uint64_t, SessionId>);
static_assert(!std::is_convertible_v<SessionId, DraftSessionId>);
static_assert(!std::is_convertible_v<DraftSessionId, uint64_t>);

TEST(IdsTest, CompareHashAndKeepTheirValue) {
  absl::flat_hash_set<SessionId> ids = {SessionId(3), SessionId(1), SessionId(3)};
  EXPECT_EQ(ids.size(), 2u);
  EXPECT_TRUE(ids.contains(SessionId(1)));
  EXPECT_LT(SessionId(1), SessionId(2));
  EXPECT_EQ(DraftSessionId(9).value(), 9u);
  EXPECT_EQ(SessionId(), SessionId(0));
}

TEST(DraftWindowTest, GrowsOnFullAcceptanceAndShrinksOnEarlyRejection) {
  DraftWindow fixed({.k = 8});
  fixed.Observe(8, 0);
  EXPECT_EQ(fixed.k(), 8);
  DraftWindow w({.k = 4, .adaptive = true, .min_k = 2, .max_k = 20});
  w.Observe(4, 4);
  EXPECT_EQ(w.k(), 6);
  w.Observe(6, 6);
  EXPECT_EQ(w.k(), 9);
  for (int i = 0; i < 10; ++i) w.Observe(w.k(), w.k());
  EXPECT_EQ(w.k(), 20);
  w.Observe(20, 0);  // halfway to 1.5: 10.75 -> 11
  EXPECT_EQ(w.k(), 11);
  for (int i = 0; i < 10; ++i) w.Observe(w.k(), 0);
  EXPECT_EQ(w.k(), 2);
  EXPECT_THAT(ValidateDraftWindowOptions({.k = 4, .adaptive = true, .min_k = 9, .max_k = 8}),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace verdict::spec
