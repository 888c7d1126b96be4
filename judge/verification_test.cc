// SPDX-License-Identifier: Apache-2.0
// VerifyBlock on hand-made target outputs: each rule's decisions and reasons, the judge in both
// modes, the lossy baselines, the exactness of rejection sampling (statistical), and bad input.
#include "judge/verification.h"

#include <cmath>
#include <memory>
#include <random>

#include "absl/strings/str_cat.h"
#include "engine/backend.h"
#include "engine/kernels/op_math.h"

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
  spec::DraftBlock draft;
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

// PolicyOf undoes ToVerificationConfig's choice of rules for every named policy and sampling; the
// evaluation-only rules have no name.
TEST(PolicyOfTest, InvertsToVerificationConfig) {
  for (spec::Policy policy : spec::AllPolicies()) {
    for (float temperature : {0.0f, 0.7f}) {
      spec::SpeculationParams params;
      params.policy = policy;
      ASSERT_OK_AND_ASSIGN(VerificationConfig config,
                           ToVerificationConfig(params, {.temperature = temperature}, 0.5f));
      EXPECT_EQ(PolicyOf(config), policy) << spec::PolicyName(policy) << " at " << temperature;
    }
  }
  VerificationConfig oracle;
  oracle.lossy = LossyRule::kOracle;
  EXPECT_EQ(PolicyOf(oracle), spec::Policy::kExact);
  VerificationConfig mask;
  mask.lossy = LossyRule::kTokenMask;
  EXPECT_EQ(PolicyOf(mask), spec::Policy::kExact);
}

TEST(VerifyBlockTest, GreedyAcceptsWhileDraftMatchesArgmax) {
  Block b;
  b.draft.tokens = {1, 2, 3, 4};
  b.logits = ArgmaxRows({1, 2, 5, 4, 0});  // d3 = 3 but the target wants 5
  engine::Sampler rng({});
  ASSERT_OK_AND_ASSIGN(spec::Verdict v, VerifyBlock({}, nullptr, b.Input(), rng));
  EXPECT_EQ(v.num_accepted, 2);
  EXPECT_EQ(v.next_token, 5);
  EXPECT_THAT(v.reasons, ElementsAre(spec::AcceptReason::kExact, spec::AcceptReason::kExact,
                                     spec::AcceptReason::kRejected, spec::AcceptReason::kNotReached));
  EXPECT_TRUE(v.judge_scores.empty());
  EXPECT_EQ(v.shadow_num_accepted, -1);
}

TEST(VerifyBlockTest, GreedyAllAcceptedAddsTheBonusToken) {
  Block b;
  b.draft.tokens = {1, 2};
  b.logits = ArgmaxRows({1, 2, 4});
  engine::Sampler rng({});
  ASSERT_OK_AND_ASSIGN(spec::Verdict v, VerifyBlock({}, nullptr, b.Input(), rng));
  EXPECT_EQ(v.num_accepted, 2);
  EXPECT_EQ(v.next_token, 4);
  EXPECT_EQ(v.committed(), 3);
}

TEST(VerifyBlockTest, EmptyBlockGivesTheTargetsToken) {
  Block b;
  b.logits = ArgmaxRows({3});
  engine::Sampler rng({});
  ASSERT_OK_AND_ASSIGN(spec::Verdict v, VerifyBlock({}, nullptr, b.Input(), rng));
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
  ASSERT_OK_AND_ASSIGN(spec::Verdict v, VerifyBlock(config, &head, b.Input(), rng));
  EXPECT_EQ(v.num_accepted, 2);
  EXPECT_EQ(v.next_token, 0);  // the target's own choice replaces d3
  EXPECT_THAT(v.reasons, ElementsAre(spec::AcceptReason::kExact, spec::AcceptReason::kJudge,
                                     spec::AcceptReason::kRejected, spec::AcceptReason::kNotReached));
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
  ASSERT_OK_AND_ASSIGN(spec::Verdict v, VerifyBlock(config, &head, b.Input(), rng));
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
  ASSERT_OK_AND_ASSIGN(spec::Verdict v, VerifyBlock(config, &head, b.Input(), rng));
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
  ASSERT_OK_AND_ASSIGN(spec::Verdict v, VerifyBlock(config, nullptr, b.Input(), rng));
  EXPECT_EQ(v.num_accepted, 1);
  EXPECT_EQ(v.reasons[0], spec::AcceptReason::kLossy);
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
  ASSERT_OK_AND_ASSIGN(spec::Verdict v, VerifyBlock(config, nullptr, b.Input(), rng));
  EXPECT_EQ(v.num_accepted, 1);
  EXPECT_EQ(v.reasons[0], spec::AcceptReason::kLossy);
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
  ASSERT_OK_AND_ASSIGN(spec::Verdict v, VerifyBlock(kl, nullptr, b.Input(), rng));
  EXPECT_EQ(v.num_accepted, 1);
  EXPECT_EQ(v.reasons[0], spec::AcceptReason::kLossy);
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
    spec::DraftDistribution d;
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
    absl::StatusOr<spec::Verdict> v = VerifyBlock(config, nullptr, b.Input(), verify_rng);
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
  config.exact = spec::ExactRule::kSampled;
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
  config.exact = spec::ExactRule::kSampled;
  config.target_sampling.temperature = 1.0f;
  config.lossy = LossyRule::kTargetProb;
  config.lossy_threshold = 0.1f;
  const TwoTokenCounts counts = RunSampledVerification(config, q0_, q1_, logits_, kTrials);
  EXPECT_LT(ChiSquareTest(counts.first, Softmax(logits_, 0)).p_value, 1e-6);
}

TEST_F(SampledVerificationTest, TopKTargetDistribution) {
  // With top-k = 3 the target distribution is the renormalised top 3 of each row.
  VerificationConfig config;
  config.exact = spec::ExactRule::kSampled;
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
  sampled.exact = spec::ExactRule::kSampled;
  sampled.target_sampling.temperature = 1.0f;
  b.draft.proposals = {{{1}, {1.0f}}, {{3}, {1.0f}}};  // d2 = 2 has probability 0 in its proposal
  EXPECT_THAT(VerifyBlock(sampled, nullptr, b.Input(), rng),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::HasSubstr("probability 0")));
  sampled.target_sampling.temperature = 0.0f;
  EXPECT_THAT(VerifyBlock(sampled, nullptr, b.Input(), rng), StatusIs(absl::StatusCode::kInvalidArgument));
  b.draft.tokens.assign(spec::kMaxDraftTokens + 1, 0);
  EXPECT_THAT(VerifyBlock({}, nullptr, b.Input(), rng), StatusIs(absl::StatusCode::kInvalidArgument));
}

// The same blocks decided from full rows and from what a device would send instead (the backend's
// logits summaries, the judge's dot products): identical verdicts for every policy that allows it.
TEST(VerifyFromSummariesTest, SameVerdictsAsFromTheFullRows) {
  constexpr int64_t vocab = 50, hidden = 16;
  std::mt19937 gen(2024);
  std::normal_distribution<float> normal(0.0f, 1.5f);
  auto backend = engine::CreateCpuBackend({1});
  JudgeHead head;
  for (int64_t h = 0; h < hidden; ++h) head.weight.push_back(normal(gen) * 0.5f);
  head.bias = -0.3f;
  head.extra_features = {JudgeFeature::kTargetLogprob, JudgeFeature::kTargetEntropy,
                         JudgeFeature::kDraftLogprob};
  head.extra_weight = {0.8f, -0.2f, 0.3f};
  std::vector<VerificationConfig> configs(6);
  configs[1].judge = JudgeMode::kOn;
  configs[2].judge = JudgeMode::kShadow;
  configs[3].lossy = LossyRule::kTargetProb;
  configs[3].lossy_threshold = 0.1f;
  configs[4].lossy = LossyRule::kTypical;
  configs[5].lossy = LossyRule::kTokenMask;
  auto mask = std::make_shared<std::vector<uint8_t>>(vocab, 0);
  for (int64_t t = 0; t < vocab; t += 3) (*mask)[t] = 1;
  configs[5].lossy_token_mask = mask;
  int64_t decided = 0, judge_accepted = 0, lossy_accepted = 0;
  for (int trial = 0; trial < 200; ++trial) {
    const int64_t k = 1 + trial % 9;
    std::vector<float> logits((k + 1) * vocab), hidden_rows((k + 1) * hidden);
    for (float& v : logits) v = normal(gen);
    for (float& v : hidden_rows) v = normal(gen);
    spec::DraftBlock draft;
    for (int64_t i = 0; i < k; ++i) {
      // Mostly the target's argmax (long accepted runs), sometimes another token.
      const int32_t argmax = engine::Argmax(absl::MakeConstSpan(logits).subspan(i * vocab, vocab));
      draft.tokens.push_back(gen() % 3 == 0 ? static_cast<int32_t>(gen() % vocab) : argmax);
      draft.logprobs.push_back(-0.1f * static_cast<float>(gen() % 30));
    }
    // The device side: summaries of the k + 1 rows and the judge's dot products.
    std::vector<int32_t> tokens;
    AppendSummaryTokens(draft, &tokens);
    auto in = backend->Allocate(logits.size() * sizeof(float)).value();
    auto out = backend->Allocate((k + 1) * engine::kLogitSummaryWidth * sizeof(float)).value();
    engine::TensorView x{static_cast<float*>(in->data()), k + 1, vocab, vocab};
    engine::TensorView y{static_cast<float*>(out->data()), k + 1, engine::kLogitSummaryWidth,
                         engine::kLogitSummaryWidth};
    backend->CopyToDevice(logits.data(), x);
    backend->SummarizeLogits(x, tokens, y);
    std::vector<float> raw((k + 1) * engine::kLogitSummaryWidth);
    backend->CopyToHost(y, raw.data());
    ASSERT_OK(backend->Synchronize());
    std::vector<engine::LogitSummary> summaries;
    std::vector<float> dots;
    for (int64_t r = 0; r <= k; ++r) {
      summaries.push_back(engine::LogitSummary::FromRow(raw.data() + r * engine::kLogitSummaryWidth, tokens[r]));
      float dot = 0;
      for (int64_t h = 0; h < hidden; ++h) dot += head.weight[h] * hidden_rows[r * hidden + h];
      dots.push_back(dot);
    }
    for (size_t c = 0; c < configs.size(); ++c) {
      SCOPED_TRACE(absl::StrCat("trial ", trial, " policy ", PolicyName(configs[c])));
      ASSERT_TRUE(CanVerifyFromSummaries(configs[c]));
      VerifyInput rows;
      rows.draft = &draft;
      rows.target_logits = logits;
      rows.target_hidden = hidden_rows;
      rows.vocab_size = vocab;
      rows.hidden_size = hidden;
      VerifyInput lean = rows;
      lean.target_logits = {};
      lean.target_hidden = {};
      lean.target_summaries = summaries;
      lean.judge_dots = dots;
      engine::Sampler rng_rows({}), rng_lean({});
      ASSERT_OK_AND_ASSIGN(spec::Verdict a, VerifyBlock(configs[c], &head, rows, rng_rows));
      ASSERT_OK_AND_ASSIGN(spec::Verdict b, VerifyBlock(configs[c], &head, lean, rng_lean));
      EXPECT_EQ(a.num_accepted, b.num_accepted);
      EXPECT_EQ(a.next_token, b.next_token);
      EXPECT_EQ(a.reasons, b.reasons);
      EXPECT_EQ(a.shadow_num_accepted, b.shadow_num_accepted);
      ASSERT_EQ(a.judge_scores.size(), b.judge_scores.size());
      for (size_t i = 0; i < a.judge_scores.size(); ++i) {
        if (std::isnan(a.judge_scores[i])) {
          EXPECT_TRUE(std::isnan(b.judge_scores[i]));
        } else {
          EXPECT_NEAR(a.judge_scores[i], b.judge_scores[i], 1e-5);
        }
      }
      ++decided;
      for (spec::AcceptReason r : a.reasons) {
        judge_accepted += r == spec::AcceptReason::kJudge;
        lossy_accepted += r == spec::AcceptReason::kLossy;
      }
    }
  }
  // The blocks exercise the rules, not just the exact one.
  EXPECT_EQ(decided, 200 * 6);
  EXPECT_GT(judge_accepted, 20);
  EXPECT_GT(lossy_accepted, 20);
}

// The sampled rule decided from what a backend computes where the logits are (DecideSampled's
// numbers for the requests of AppendSampledRequests, with the uniforms drawn up front) gives the
// verdicts of the rule on the full rows with the same random stream: plain, top-k and top-p
// targets, greedy (one-hot) and sampled drafts, the judge on and in shadow mode.
TEST(VerifyFromSummariesTest, SampledDecisionsGiveTheVerdictsOfTheRows) {
  constexpr int64_t kBig = 300;  // a vocabulary with room for nuclei of many sizes
  std::mt19937 gen(17);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  const JudgeHead head = [] {
    JudgeHead h = FirstCoordinateJudge();
    h.extra_features = {JudgeFeature::kTargetLogprob};
    h.extra_weight = {0.1f};
    return h;
  }();
  int64_t rejections = 0;
  int64_t accepted = 0;
  for (int trial = 0; trial < 240; ++trial) {
    VerificationConfig config;
    config.exact = spec::ExactRule::kSampled;
    const engine::SamplingParams params[] = {{1.0f, 0, 1.0f, 0}, {0.7f, 20, 1.0f, 0},
                                             {0.9f, 0, 0.9f, 0}, {1.2f, 50, 0.8f, 0}};
    config.target_sampling = params[trial % 4];
    config.judge = trial % 3 == 0 ? JudgeMode::kOn : (trial % 3 == 1 ? JudgeMode::kShadow : JudgeMode::kOff);
    config.judge_threshold = 0.6f;
    const int64_t k = 1 + trial % 6;
    spec::DraftBlock draft;
    std::vector<float> logits((k + 1) * kBig);
    for (float& l : logits) l = normal(gen);
    const bool sampled_draft = trial % 2 == 0;
    for (int64_t i = 0; i < k; ++i) {
      if (!sampled_draft) {  // greedy draft: often the target's own argmax
        draft.tokens.push_back(gen() % 2 ? engine::Argmax(absl::MakeConstSpan(logits).subspan(i * kBig, kBig))
                                         : static_cast<int32_t>(gen() % kBig));
        continue;
      }
      spec::DraftDistribution q;
      double total = 0;
      for (int32_t id = 0; id < kBig; ++id) {
        if (gen() % 4 == 0) {
          q.ids.push_back(id);
          q.probs.push_back(std::exp(normal(gen)));
          total += q.probs.back();
        }
      }
      if (q.ids.empty()) {
        q.ids.push_back(7);
        q.probs.push_back(1.0f);
        total = 1.0;
      }
      for (float& p : q.probs) p = static_cast<float>(p / total);
      draft.tokens.push_back(q.ids[gen() % q.ids.size()]);
      draft.proposals.push_back(std::move(q));
    }
    std::vector<float> hidden((k + 1) * kHidden);
    for (float& h : hidden) h = normal(gen);
    VerifyInput rows;
    rows.draft = &draft;
    rows.target_logits = logits;
    rows.target_hidden = hidden;
    rows.vocab_size = kBig;
    rows.hidden_size = kHidden;
    engine::Sampler rng_rows({.temperature = 1.0f, .seed = static_cast<uint64_t>(trial)});
    ASSERT_OK_AND_ASSIGN(spec::Verdict want, VerifyBlock(config, &head, rows, rng_rows));

    // What the last shard does: draws, requests, the backend's decisions and summaries.
    engine::Sampler rng({.temperature = 1.0f, .seed = static_cast<uint64_t>(trial)});
    std::vector<double> uniforms;
    DrawVerificationUniforms(k, rng, &uniforms);
    std::vector<engine::math::SampledRowRequest> requests;
    std::vector<int32_t> ids;
    std::vector<float> probs;
    AppendSampledRequests(config.target_sampling, draft, uniforms, &requests, &ids, &probs);
    ASSERT_EQ(static_cast<int64_t>(requests.size()), k + 1);
    std::vector<engine::SampledDecision> decisions;
    std::vector<engine::LogitSummary> summaries;
    std::vector<int32_t> summary_tokens;
    AppendSummaryTokens(draft, &summary_tokens);
    for (int64_t r = 0; r <= k; ++r) {
      absl::Span<const float> row = absl::MakeConstSpan(logits).subspan(r * kBig, kBig);
      decisions.push_back(engine::DecideSampledRow(row, requests[r], ids, probs));
      const int32_t token = summary_tokens[r];
      summaries.push_back(engine::LogitSummary::FromStats(
          engine::math::ChunkLogitStats(row.data(), kBig, 0), token,
          token >= 0 ? row[token] : std::nanf("")));
    }
    std::vector<float> dots;
    for (int64_t r = 0; r <= k; ++r) {
      double dot = 0;
      for (int64_t h = 0; h < kHidden; ++h) dot += head.weight[h] * hidden[r * kHidden + h];
      dots.push_back(static_cast<float>(dot));
    }
    VerifyInput lean;
    lean.draft = &draft;
    lean.target_summaries = summaries;
    lean.target_sampled = decisions;
    lean.uniforms = uniforms;
    lean.judge_dots = dots;
    lean.vocab_size = kBig;
    lean.hidden_size = kHidden;
    engine::Sampler unused({});
    ASSERT_OK_AND_ASSIGN(spec::Verdict got, VerifyBlock(config, &head, lean, unused));
    EXPECT_EQ(got.num_accepted, want.num_accepted) << "trial " << trial;
    EXPECT_EQ(got.next_token, want.next_token) << "trial " << trial;
    EXPECT_THAT(got.reasons, ::testing::ElementsAreArray(want.reasons)) << "trial " << trial;
    EXPECT_EQ(got.shadow_num_accepted, want.shadow_num_accepted) << "trial " << trial;
    rejections += want.num_accepted < k;
    accepted += want.num_accepted;
  }
  EXPECT_GT(rejections, 20);
  EXPECT_GT(accepted, 20);
}

TEST(VerifyFromSummariesTest, RejectsWhatSummariesCannotDecide) {
  Block b;
  b.draft.tokens = {1, 2};
  const std::vector<engine::LogitSummary> summaries = {
      {1, 3.0f, 3.5f, 1.0f, 1, 3.0f}, {2, 3.0f, 3.5f, 1.0f, 2, 3.0f}, {4, 3.0f, 3.5f, 1.0f, -1, 0.0f}};
  VerifyInput in;
  in.draft = &b.draft;
  in.target_summaries = summaries;
  in.vocab_size = kVocab;
  in.hidden_size = kHidden;
  engine::Sampler rng({});
  ASSERT_OK_AND_ASSIGN(spec::Verdict v, VerifyBlock({}, nullptr, in, rng));
  EXPECT_EQ(v.num_accepted, 2);
  EXPECT_EQ(v.next_token, 4);

  VerificationConfig sampled;
  sampled.exact = spec::ExactRule::kSampled;
  sampled.target_sampling.temperature = 1.0f;
  EXPECT_FALSE(CanVerifyFromSummaries(sampled));
  EXPECT_TRUE(CanVerifyWithoutLogits(sampled));
  EXPECT_THAT(VerifyBlock(sampled, nullptr, in, rng),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::HasSubstr("3 sampled decisions and 6 uniform draws")));
  VerificationConfig kl;
  kl.lossy = LossyRule::kKl;
  EXPECT_FALSE(CanVerifyFromSummaries(kl));
  EXPECT_FALSE(CanVerifyWithoutLogits(kl));

  const std::vector<engine::LogitSummary> wrong_token = {summaries[1], summaries[1], summaries[2]};
  in.target_summaries = wrong_token;
  EXPECT_THAT(VerifyBlock({}, nullptr, in, rng),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::HasSubstr("not draft token 0")));
  in.target_summaries = absl::MakeConstSpan(summaries).subspan(0, 2);
  EXPECT_THAT(VerifyBlock({}, nullptr, in, rng), StatusIs(absl::StatusCode::kInvalidArgument));

  in.target_summaries = summaries;
  VerificationConfig judge;
  judge.judge = JudgeMode::kOn;
  const JudgeHead head = FirstCoordinateJudge();
  const std::vector<float> two_dots = {0.0f, 1.0f};
  in.judge_dots = two_dots;
  EXPECT_THAT(VerifyBlock(judge, &head, in, rng),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::HasSubstr("judge dot products")));
}

TEST(PolicyConfigTest, NamesMapToRules) {
  const engine::SamplingParams greedy;
  const engine::SamplingParams sampled{.temperature = 0.7f};
  ASSERT_OK_AND_ASSIGN(VerificationConfig c, PolicyConfig("judge", greedy));
  EXPECT_EQ(c.exact, spec::ExactRule::kGreedy);
  EXPECT_EQ(c.judge, JudgeMode::kOn);
  ASSERT_OK_AND_ASSIGN(c, PolicyConfig("judge", sampled));
  EXPECT_EQ(c.exact, spec::ExactRule::kSampled);
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
