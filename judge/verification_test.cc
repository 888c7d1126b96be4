// SPDX-License-Identifier: Apache-2.0
// VerifyBlock on hand-made target outputs: each rule's decisions and reasons, the judge in both
// modes, the lossy baselines, the exactness of rejection sampling (statistical), and bad input.
#include "judge/verification.h"

#include <cmath>
#include <random>

#include "common/testing/chi_square.h"
#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace verdict::judge {
namespace {

using ::testing::ElementsAre;
using ::verdict::testing::ChiSquareTest;
using ::verdict::testing::StatusIs;

constexpr int64_t kVocab = 6;
constexpr int64_t kHidden = 4;

// Logits rows whose argmax is the given token (that token 3.0, others 0).
std::vector<float> ArgmaxRows(const std::vector<int32_t>& argmaxes) {
  std::vector<float> logits(argmaxes.size() * kVocab, 0.0f);
  for (size_t r = 0; r < argmaxes.size(); ++r) logits[r * kVocab + argmaxes[r]] = 3.0f;
  return logits;
}

// A judge whose score is driven by hidden[0]: sigmoid(10 * h0).
JudgeHead FirstCoordinateJudge() {
  JudgeHead head;
  head.weight = {10.0f, 0.0f, 0.0f, 0.0f};
  head.bias = 0.0f;
  head.threshold = 0.5f;
  return head;
}

// Hidden rows (k + 1) where row i + 1 (draft token i) has h0 = +1 if judge_ok[i] else -1.
std::vector<float> JudgeHidden(const std::vector<bool>& judge_ok) {
  std::vector<float> hidden((judge_ok.size() + 1) * kHidden, 0.0f);
  for (size_t i = 0; i < judge_ok.size(); ++i) hidden[(i + 1) * kHidden] = judge_ok[i] ? 1.0f : -1.0f;
  return hidden;
}

struct Block {
  DraftBlock draft;
  std::vector<float> logits;
  std::vector<float> hidden;
  VerifyInput Input() const {
    VerifyInput in;
    in.draft = &draft;
    in.target_logits = logits;
    in.target_hidden = hidden;
    in.vocab_size = kVocab;
    in.hidden_size = kHidden;
    return in;
  }
};

TEST(VerifyBlockTest, GreedyAcceptsWhileDraftMatchesArgmax) {
  Block b;
  b.draft.tokens = {1, 2, 3, 4};
  b.logits = ArgmaxRows({1, 2, 5, 4, 0});  // d3 = 3 but the target wants 5
  engine::Sampler rng({});
  ASSERT_OK_AND_ASSIGN(Verdict v, VerifyBlock({}, nullptr, b.Input(), rng));
  EXPECT_EQ(v.num_accepted, 2);
  EXPECT_EQ(v.next_token, 5);
  EXPECT_THAT(v.reasons, ElementsAre(AcceptReason::kExact, AcceptReason::kExact,
                                     AcceptReason::kRejected, AcceptReason::kNotReached));
  EXPECT_TRUE(v.judge_scores.empty());
  EXPECT_EQ(v.shadow_num_accepted, -1);
}

TEST(VerifyBlockTest, GreedyAllAcceptedAddsTheBonusToken) {
  Block b;
  b.draft.tokens = {1, 2};
  b.logits = ArgmaxRows({1, 2, 4});
  engine::Sampler rng({});
  ASSERT_OK_AND_ASSIGN(Verdict v, VerifyBlock({}, nullptr, b.Input(), rng));
  EXPECT_EQ(v.num_accepted, 2);
  EXPECT_EQ(v.next_token, 4);
  EXPECT_EQ(v.committed(), 3);
}

TEST(VerifyBlockTest, EmptyBlockGivesTheTargetsToken) {
  Block b;
  b.logits = ArgmaxRows({3});
  engine::Sampler rng({});
  ASSERT_OK_AND_ASSIGN(Verdict v, VerifyBlock({}, nullptr, b.Input(), rng));
  EXPECT_EQ(v.num_accepted, 0);
  EXPECT_EQ(v.next_token, 3);
}

TEST(VerifyBlockTest, JudgeAcceptsWhatTheExactRuleRejects) {
  Block b;
  b.draft.tokens = {1, 2, 3, 4};
  b.logits = ArgmaxRows({1, 0, 0, 4, 5});  // exact: accept, reject, reject, accept
  b.hidden = JudgeHidden({false, true, false, true});
  const JudgeHead head = FirstCoordinateJudge();
  VerificationConfig config;
  config.judge = JudgeMode::kOn;
  engine::Sampler rng({});
  ASSERT_OK_AND_ASSIGN(Verdict v, VerifyBlock(config, &head, b.Input(), rng));
  EXPECT_EQ(v.num_accepted, 2);
  EXPECT_EQ(v.next_token, 0);  // the target's own choice replaces d3
  EXPECT_THAT(v.reasons, ElementsAre(AcceptReason::kExact, AcceptReason::kJudge,
                                     AcceptReason::kRejected, AcceptReason::kNotReached));
  // The judge ran only where the exact rule rejected.
  ASSERT_EQ(v.judge_scores.size(), 4u);
  EXPECT_TRUE(std::isnan(v.judge_scores[0]));
  EXPECT_GT(v.judge_scores[1], 0.99f);
  EXPECT_LT(v.judge_scores[2], 0.01f);
}

TEST(VerifyBlockTest, JudgeThresholdAboveOneIsStandardVerification) {
  Block b;
  b.draft.tokens = {1, 2, 3};
  b.logits = ArgmaxRows({1, 0, 3, 2});
  b.hidden = JudgeHidden({true, true, true});
  const JudgeHead head = FirstCoordinateJudge();
  VerificationConfig config;
  config.judge = JudgeMode::kOn;
  config.judge_threshold = 1.01f;
  engine::Sampler rng({});
  ASSERT_OK_AND_ASSIGN(Verdict v, VerifyBlock(config, &head, b.Input(), rng));
  EXPECT_EQ(v.num_accepted, 1);
  EXPECT_EQ(v.next_token, 0);
}

TEST(VerifyBlockTest, ShadowJudgeReportsButDoesNotAccept) {
  Block b;
  b.draft.tokens = {1, 2, 3, 4};
  b.logits = ArgmaxRows({1, 0, 3, 0, 5});  // exact: accept, reject, accept, reject
  b.hidden = JudgeHidden({true, true, false, false});
  const JudgeHead head = FirstCoordinateJudge();
  VerificationConfig config;
  config.judge = JudgeMode::kShadow;
  engine::Sampler rng({});
  ASSERT_OK_AND_ASSIGN(Verdict v, VerifyBlock(config, &head, b.Input(), rng));
  EXPECT_EQ(v.num_accepted, 1);  // lossless: exactly the greedy verdict
  EXPECT_EQ(v.next_token, 0);
  // Judge decoding would have accepted d1 (both), d2 (judge only), d3 (exact only), then stopped at
  // d4 (neither).
  EXPECT_EQ(v.shadow_num_accepted, 3);
  EXPECT_EQ(v.shadow_both, 1);
  EXPECT_EQ(v.shadow_judge_only, 1);
  EXPECT_EQ(v.shadow_exact_only, 1);
}

TEST(VerifyBlockTest, LossyTargetProbabilityBaseline) {
  Block b;
  b.draft.tokens = {2, 3};
  // Row 0: the target prefers 1 (logit 1) but gives 2 a fair share (logit 0.5); row 1: 3 is
  // unlikely.
  b.logits.assign(3 * kVocab, 0.0f);
  b.logits[0 * kVocab + 1] = 1.0f;
  b.logits[0 * kVocab + 2] = 0.5f;
  b.logits[1 * kVocab + 0] = 5.0f;
  VerificationConfig config;
  config.lossy = LossyRule::kTargetProb;
  config.lossy_threshold = 0.15f;
  engine::Sampler rng({});
  ASSERT_OK_AND_ASSIGN(Verdict v, VerifyBlock(config, nullptr, b.Input(), rng));
  EXPECT_EQ(v.num_accepted, 1);
  EXPECT_EQ(v.reasons[0], AcceptReason::kLossy);
  EXPECT_EQ(v.next_token, 0);
  // p(2) in row 0 = e^0.5 / (e + e^0.5 + 4) ~= 0.20: a threshold above it rejects.
  config.lossy_threshold = 0.25f;
  ASSERT_OK_AND_ASSIGN(v, VerifyBlock(config, nullptr, b.Input(), rng));
  EXPECT_EQ(v.num_accepted, 0);
  EXPECT_EQ(v.next_token, 1);
}

TEST(VerifyBlockTest, TypicalAcceptanceUsesTheEntropy) {
  Block b;
  b.draft.tokens = {2};
  b.logits.assign(2 * kVocab, 0.0f);  // row 0 uniform: p(2) = 1/6, entropy log 6
  VerificationConfig config;
  config.lossy = LossyRule::kTypical;
  config.lossy_threshold = 0.3f;  // epsilon
  config.typical_delta = 0.5f;    // delta * exp(-H) = 0.5 / 6 = 0.083 < 1/6: accept
  engine::Sampler rng({});
  ASSERT_OK_AND_ASSIGN(Verdict v, VerifyBlock(config, nullptr, b.Input(), rng));
  EXPECT_EQ(v.num_accepted, 1);
  EXPECT_EQ(v.reasons[0], AcceptReason::kLossy);
  config.typical_delta = 1.5f;  // 1.5 / 6 = 0.25 > 1/6: reject
  ASSERT_OK_AND_ASSIGN(v, VerifyBlock(config, nullptr, b.Input(), rng));
  EXPECT_EQ(v.num_accepted, 0);
}

TEST(VerifyBlockTest, KlTokenClassAndOracleBaselines) {
  Block b;
  b.draft.tokens = {2, 3};
  b.logits = ArgmaxRows({1, 0, 0});  // the exact rule rejects both
  engine::Sampler rng({});
  // KL: the draft's distribution at d1 equals the target's, at d2 it is far from it.
  std::vector<float> p0(kVocab);
  double z = 0;
  for (int64_t j = 0; j < kVocab; ++j) z += std::exp(b.logits[j]);
  for (int64_t j = 0; j < kVocab; ++j) p0[j] = static_cast<float>(std::exp(b.logits[j]) / z);
  b.draft.distributions = p0;
  for (int64_t j = 0; j < kVocab; ++j) b.draft.distributions.push_back(j == 3 ? 0.95f : 0.01f);
  VerificationConfig kl;
  kl.lossy = LossyRule::kKl;
  kl.lossy_threshold = 0.01f;
  ASSERT_OK_AND_ASSIGN(Verdict v, VerifyBlock(kl, nullptr, b.Input(), rng));
  EXPECT_EQ(v.num_accepted, 1);
  EXPECT_EQ(v.reasons[0], AcceptReason::kLossy);
  Block no_dist = b;
  no_dist.draft.distributions.clear();
  EXPECT_THAT(VerifyBlock(kl, nullptr, no_dist.Input(), rng),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::HasSubstr("distributions")));

  VerificationConfig mask;
  mask.lossy = LossyRule::kTokenMask;
  mask.lossy_token_mask = std::make_shared<std::vector<uint8_t>>(std::vector<uint8_t>{0, 0, 1, 1, 0, 0});
  ASSERT_OK_AND_ASSIGN(v, VerifyBlock(mask, nullptr, b.Input(), rng));
  EXPECT_EQ(v.num_accepted, 2);

  VerificationConfig oracle;
  oracle.lossy = LossyRule::kOracle;
  std::vector<std::vector<int32_t>> asked;
  oracle.oracle = [&](absl::Span<const int32_t> prefix, int32_t token) {
    std::vector<int32_t> seen(prefix.begin(), prefix.end());
    seen.push_back(token);
    asked.push_back(seen);
    return token == 2;
  };
  ASSERT_OK_AND_ASSIGN(v, VerifyBlock(oracle, nullptr, b.Input(), rng));
  EXPECT_EQ(v.num_accepted, 1);
  EXPECT_EQ(v.next_token, 0);
  EXPECT_THAT(asked, ElementsAre(ElementsAre(2), ElementsAre(2, 3)));
}

TEST(TokenStatsTest, MatchesDirectComputation) {
  const std::vector<float> logits = {0.5f, -1.0f, 2.0f, 0.0f};
  double z = 0;
  for (float l : logits) z += std::exp(l);
  double entropy = 0;
  for (float l : logits) {
    const double p = std::exp(l) / z;
    entropy -= p * std::log(p);
  }
  const TokenStats s = ComputeTokenStats(logits, 2);
  EXPECT_NEAR(s.logprob, 2.0 - std::log(z), 1e-6);
  EXPECT_NEAR(s.entropy, entropy, 1e-6);
}

// ---- Rejection sampling is exact -------------------------------------------------------------------

// Draws d1, d2 from the draft distributions q0, q1, verifies them against fixed target rows p0, p1
// (the rows do not depend on the drafted tokens here), and counts the first committed token and,
// when there is one, the second. Both must follow the target: p0, then p1.
struct TwoTokenCounts {
  std::vector<int64_t> first, second;
};

TwoTokenCounts RunSampledVerification(const VerificationConfig& config, const std::vector<float>& q0,
                                      const std::vector<float>& q1, const std::vector<float>& logits,
                                      int trials) {
  TwoTokenCounts counts{std::vector<int64_t>(kVocab, 0), std::vector<int64_t>(kVocab, 0)};
  engine::Sampler draft_rng({.temperature = 1.0f, .seed = 7});
  engine::Sampler verify_rng({.temperature = 1.0f, .seed = 11});
  auto sparse = [](const std::vector<float>& q) {
    DraftDistribution d;
    for (int32_t i = 0; i < kVocab; ++i) {
      if (q[i] > 0) {
        d.ids.push_back(i);
        d.probs.push_back(q[i]);
      }
    }
    return d;
  };
  Block b;
  b.logits = logits;
  b.draft.proposals = {sparse(q0), sparse(q1)};
  for (int t = 0; t < trials; ++t) {
    b.draft.tokens = {draft_rng.SampleFrom(q0), draft_rng.SampleFrom(q1)};
    absl::StatusOr<Verdict> v = VerifyBlock(config, nullptr, b.Input(), verify_rng);
    EXPECT_OK(v.status());
    std::vector<int32_t> committed(b.draft.tokens.begin(), b.draft.tokens.begin() + v->num_accepted);
    committed.push_back(v->next_token);
    ++counts.first[committed[0]];
    if (committed.size() >= 2) ++counts.second[committed[1]];
  }
  return counts;
}

std::vector<double> Softmax(const std::vector<float>& logits, int64_t row) {
  std::vector<double> p(kVocab);
  double z = 0;
  for (int64_t i = 0; i < kVocab; ++i) z += p[i] = std::exp(logits[row * kVocab + i]);
  for (double& v : p) v /= z;
  return p;
}

class SampledVerificationTest : public ::testing::Test {
 protected:
  // Target rows (3: two draft tokens and the bonus) and draft distributions that differ from them:
  // q0 overweights token 0 and never proposes token 5 (so the residual must supply it).
  const std::vector<float> logits_ = {0.2f, 1.0f, -0.5f, 0.7f, 0.0f, 0.4f,   //
                                      1.2f, -1.0f, 0.3f, 0.3f, 0.8f, -0.2f,  //
                                      0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
  const std::vector<float> q0_ = {0.45f, 0.1f, 0.2f, 0.15f, 0.1f, 0.0f};
  const std::vector<float> q1_ = {0.1f, 0.3f, 0.1f, 0.2f, 0.2f, 0.1f};
  static constexpr int kTrials = 120000;
};

TEST_F(SampledVerificationTest, CommittedTokensFollowTheTargetDistribution) {
  VerificationConfig config;
  config.exact = ExactRule::kSampled;
  config.target_sampling.temperature = 1.0f;
  const TwoTokenCounts counts = RunSampledVerification(config, q0_, q1_, logits_, kTrials);
  const auto first = ChiSquareTest(counts.first, Softmax(logits_, 0));
  const auto second = ChiSquareTest(counts.second, Softmax(logits_, 1));
  EXPECT_GT(first.p_value, 1e-3) << "chi2 " << first.statistic << " df " << first.degrees_of_freedom;
  EXPECT_GT(second.p_value, 1e-3) << "chi2 " << second.statistic;
  EXPECT_GT(counts.first[5], 0) << "token 5 can only come from the residual";
}

TEST_F(SampledVerificationTest, TheTestDetectsAWrongAcceptanceRule) {
  // Accepting a mismatching token whenever the target gives it >= 10% is NOT rejection sampling;
  // the same test must reject it.
  VerificationConfig config;
  config.exact = ExactRule::kSampled;
  config.target_sampling.temperature = 1.0f;
  config.lossy = LossyRule::kTargetProb;
  config.lossy_threshold = 0.1f;
  const TwoTokenCounts counts = RunSampledVerification(config, q0_, q1_, logits_, kTrials);
  EXPECT_LT(ChiSquareTest(counts.first, Softmax(logits_, 0)).p_value, 1e-6);
}

TEST_F(SampledVerificationTest, TopKTargetDistribution) {
  // With top-k = 3 the target distribution is the renormalised top 3 of each row.
  VerificationConfig config;
  config.exact = ExactRule::kSampled;
  config.target_sampling = {.temperature = 0.8f, .top_k = 3};
  const TwoTokenCounts counts = RunSampledVerification(config, q0_, q1_, logits_, kTrials / 2);
  std::vector<float> expected;
  engine::SamplingDistribution(absl::MakeConstSpan(logits_).subspan(0, kVocab), config.target_sampling,
                               &expected);
  const auto first = ChiSquareTest(counts.first, std::vector<double>(expected.begin(), expected.end()));
  EXPECT_GT(first.p_value, 1e-3) << "chi2 " << first.statistic;
}

// ---- Bad input ---------------------------------------------------------------------------------------

TEST(VerifyBlockTest, RejectsMalformedBlocks) {
  engine::Sampler rng({});
  Block b;
  b.draft.tokens = {1, 2};
  b.logits = ArgmaxRows({1, 2});  // one row short
  EXPECT_THAT(VerifyBlock({}, nullptr, b.Input(), rng), StatusIs(absl::StatusCode::kInvalidArgument));
  b.logits = ArgmaxRows({1, 2, 3});
  b.draft.tokens = {1, 99};
  EXPECT_THAT(VerifyBlock({}, nullptr, b.Input(), rng), StatusIs(absl::StatusCode::kInvalidArgument));
  b.draft.tokens = {1, 2};
  VerificationConfig judge;
  judge.judge = JudgeMode::kOn;
  EXPECT_THAT(VerifyBlock(judge, nullptr, b.Input(), rng),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::HasSubstr("judge head")));
  const JudgeHead head = FirstCoordinateJudge();
  b.hidden.assign(2 * kHidden, 0.0f);  // one row short
  EXPECT_THAT(VerifyBlock(judge, &head, b.Input(), rng), StatusIs(absl::StatusCode::kInvalidArgument));
  VerificationConfig sampled;
  sampled.exact = ExactRule::kSampled;
  sampled.target_sampling.temperature = 1.0f;
  b.draft.proposals = {{{1}, {1.0f}}, {{3}, {1.0f}}};  // d2 = 2 has probability 0 in its proposal
  EXPECT_THAT(VerifyBlock(sampled, nullptr, b.Input(), rng),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::HasSubstr("probability 0")));
  sampled.target_sampling.temperature = 0.0f;
  EXPECT_THAT(VerifyBlock(sampled, nullptr, b.Input(), rng), StatusIs(absl::StatusCode::kInvalidArgument));
  b.draft.tokens.assign(kMaxDraftTokens + 1, 0);
  EXPECT_THAT(VerifyBlock({}, nullptr, b.Input(), rng), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(PolicyConfigTest, NamesMapToRules) {
  const engine::SamplingParams greedy;
  const engine::SamplingParams sampled{.temperature = 0.7f};
  ASSERT_OK_AND_ASSIGN(VerificationConfig c, PolicyConfig("judge", greedy));
  EXPECT_EQ(c.exact, ExactRule::kGreedy);
  EXPECT_EQ(c.judge, JudgeMode::kOn);
  ASSERT_OK_AND_ASSIGN(c, PolicyConfig("judge", sampled));
  EXPECT_EQ(c.exact, ExactRule::kSampled);
  EXPECT_EQ(PolicyName(c), "sampled+judge");
  ASSERT_OK_AND_ASSIGN(c, PolicyConfig("judge-shadow", greedy));
  EXPECT_TRUE(c.lossless());
  ASSERT_OK_AND_ASSIGN(c, PolicyConfig("lossy-prob", greedy));
  EXPECT_FALSE(c.lossless());
  EXPECT_THAT(PolicyConfig("sampled", greedy), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(PolicyConfig("fastest", greedy),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::HasSubstr("unknown verification policy")));
}

}  // namespace
}  // namespace verdict::judge
