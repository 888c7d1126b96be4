// SPDX-License-Identifier: Apache-2.0
#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <random>
#include <map>
#include <vector>

#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace verdict::engine {
namespace {

using ::verdict::testing::StatusIs;

std::vector<double> Softmax(const std::vector<float>& logits, double temperature) {
  double max_logit = logits[0];
  for (float l : logits) max_logit = std::max<double>(max_logit, l);
  std::vector<double> p(logits.size());
  double total = 0;
  for (size_t i = 0; i < logits.size(); ++i) total += p[i] = std::exp((logits[i] - max_logit) / temperature);
  for (double& v : p) v /= total;
  return p;
}

TEST(SamplerTest, GreedyIsArgmaxWithFirstIndexOnTies) {
  EXPECT_EQ(Argmax(std::vector<float>{1, 3, 3, 2}), 1);
  Sampler sampler({/*temperature=*/0});
  ASSERT_OK_AND_ASSIGN(int32_t t, sampler.Sample(std::vector<float>{0.1f, -2, 5, 4.9f}));
  EXPECT_EQ(t, 2);
}

TEST(SamplerTest, DistributionMatchesSoftmaxWithTemperature) {
  const std::vector<float> logits = {1.0f, 2.0f, 0.5f, -1.0f, 3.0f};
  std::vector<float> probs;
  SamplingDistribution(logits, {0.7f, 0, 1.0f, 0}, &probs);
  const std::vector<double> expected = Softmax(logits, 0.7);
  for (size_t i = 0; i < logits.size(); ++i) EXPECT_NEAR(probs[i], expected[i], 1e-6);
}

TEST(SamplerTest, TopKKeepsTheKLargest) {
  const std::vector<float> logits = {1.0f, 2.0f, 0.5f, -1.0f, 3.0f};
  std::vector<float> probs;
  SamplingDistribution(logits, {1.0f, 2, 1.0f, 0}, &probs);
  const double z = std::exp(2.0) + std::exp(3.0);
  EXPECT_NEAR(probs[4], std::exp(3.0) / z, 1e-6);
  EXPECT_NEAR(probs[1], std::exp(2.0) / z, 1e-6);
  EXPECT_EQ(probs[0], 0.0f);
  EXPECT_EQ(probs[2], 0.0f);
  EXPECT_EQ(probs[3], 0.0f);
}

TEST(SamplerTest, TopPKeepsTheSmallestNucleusReachingP) {
  // Probabilities 0.5, 0.3, 0.15, 0.05 (log-space logits).
  const std::vector<float> logits = {std::log(0.3f), std::log(0.05f), std::log(0.5f), std::log(0.15f)};
  std::vector<float> probs;
  SamplingDistribution(logits, {1.0f, 0, 0.75f, 0}, &probs);  // 0.5 + 0.3 reaches 0.75
  EXPECT_NEAR(probs[2], 0.5 / 0.8, 1e-5);
  EXPECT_NEAR(probs[0], 0.3 / 0.8, 1e-5);
  EXPECT_EQ(probs[1], 0.0f);
  EXPECT_EQ(probs[3], 0.0f);
  SamplingDistribution(logits, {1.0f, 0, 0.81f, 0}, &probs);  // needs the third token
  EXPECT_NEAR(probs[3], 0.15 / 0.95, 1e-5);
  SamplingDistribution(logits, {1.0f, 0, 0.1f, 0}, &probs);  // at least one token survives
  EXPECT_NEAR(probs[2], 1.0, 1e-6);
}

// The filters written out the slow, obvious way (Hugging Face's order: temperature, top-k, then
// top-p over the sorted, renormalized top-k), against the sampler's partial sorts on large random
// vocabularies, including ties and nuclei larger than the first sorted head.
std::vector<double> ReferenceDistribution(const std::vector<float>& logits, const SamplingParams& p) {
  std::vector<int> order(logits.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int>(i);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return logits[a] > logits[b]; });
  if (p.top_k > 0 && static_cast<size_t>(p.top_k) < order.size()) order.resize(p.top_k);
  std::vector<double> w(order.size());
  double total = 0;
  for (size_t i = 0; i < order.size(); ++i) {
    total += w[i] = std::exp((double{logits[order[i]]} - logits[order[0]]) / p.temperature);
  }
  size_t keep = order.size();
  double cumulative = 0;
  for (size_t i = 0; i < order.size() && p.top_p < 1; ++i) {
    cumulative += w[i] / total;
    if (cumulative >= p.top_p) {
      keep = i + 1;
      break;
    }
  }
  double kept = 0;
  for (size_t i = 0; i < keep; ++i) kept += w[i];
  std::vector<double> probs(logits.size(), 0.0);
  for (size_t i = 0; i < keep; ++i) probs[order[i]] = w[i] / kept;
  return probs;
}

TEST(SamplerTest, LargeVocabulariesMatchTheFullSortReference) {
  std::mt19937 rng(99);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  for (const SamplingParams& params :
       {SamplingParams{1.0f, 0, 1.0f, 0}, SamplingParams{0.7f, 0, 0.9f, 0},
        SamplingParams{1.3f, 0, 0.999f, 0}, SamplingParams{1.0f, 50, 1.0f, 0},
        SamplingParams{0.8f, 1000, 0.95f, 0}, SamplingParams{5.0f, 0, 0.99f, 0}}) {
    std::vector<float> logits(20000);
    for (float& l : logits) l = std::round(normal(rng) * 4) / 4;  // many ties
    std::vector<float> probs;
    SamplingDistribution(logits, params, &probs);
    const std::vector<double> expected = ReferenceDistribution(logits, params);
    size_t support = 0;
    for (size_t i = 0; i < logits.size(); ++i) {
      ASSERT_NEAR(probs[i], expected[i], 1e-6 + 1e-5 * expected[i])
          << "token " << i << " T=" << params.temperature << " top_k=" << params.top_k
          << " top_p=" << params.top_p;
      ASSERT_EQ(probs[i] > 0, expected[i] > 0) << "token " << i;
      support += probs[i] > 0;
    }
    std::printf("T=%.1f top_k=%lld top_p=%.3f: %zu tokens kept\n", params.temperature,
                (long long)params.top_k, params.top_p, support);
  }
}

// The device's radix selection orders logits by these keys: the float order, with -0 and +0 one key.
TEST(SamplerTest, LogitKeysFollowTheFloatOrder) {
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<float> ascending = {-inf, -3e38f, -2.5f, -1e-40f, 0.0f, 1e-40f, 1e-30f, 0.75f,
                                        1.0f, 2.5f, 3e38f, inf};
  for (size_t i = 0; i + 1 < ascending.size(); ++i) {
    EXPECT_LT(math::LogitKey(ascending[i]), math::LogitKey(ascending[i + 1])) << ascending[i];
  }
  for (float v : ascending) EXPECT_EQ(math::LogitFromKey(math::LogitKey(v)), v);
  EXPECT_EQ(math::LogitKey(-0.0f), math::LogitKey(0.0f));
  EXPECT_FALSE(std::signbit(math::LogitFromKey(math::LogitKey(-0.0f))));
}

TEST(SamplerTest, SampleWithUniformIsTheInverseCdfInIdOrder) {
  const std::vector<float> probs = {0.0f, 0.2f, 0.0f, 0.5f, 0.3f};
  EXPECT_EQ(SampleWithUniform(probs, 0.0), 1);
  EXPECT_EQ(SampleWithUniform(probs, 0.19), 1);
  EXPECT_EQ(SampleWithUniform(probs, 0.2), 3);
  EXPECT_EQ(SampleWithUniform(probs, 0.69), 3);
  EXPECT_EQ(SampleWithUniform(probs, 0.7), 4);
  EXPECT_EQ(SampleWithUniform(probs, 0.99999), 4);
  const std::vector<float> unnormalised = {0.0f, 2.0f, 0.0f, 5.0f, 3.0f, 0.0f};
  EXPECT_EQ(SampleWithUniform(unnormalised, 0.5), 3);
  EXPECT_EQ(SampleWithUniform(unnormalised, 0.9999999), 4);  // never the massless tail
}

// The host executor of Backend::DecideSampled against the full-sort reference: p(token), and a
// replacement whose interval of the reference's inverse CDF (of max(0, p - q), or of p) holds the
// uniform draw, for many draws per row.
TEST(SamplerTest, DecideSampledRowMatchesTheReference) {
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  const int64_t vocab = 20000;
  struct Case {
    SamplingParams params;
    bool bonus;
    enum { kOneHot, kSparse, kTarget } proposal;
  };
  const std::vector<Case> cases = {
      {{1.0f, 0, 1.0f, 0}, false, Case::kSparse},  {{0.7f, 0, 0.9f, 0}, false, Case::kOneHot},
      {{1.0f, 50, 1.0f, 0}, false, Case::kSparse}, {{0.8f, 1000, 0.95f, 0}, false, Case::kSparse},
      {{0.9f, 0, 0.8f, 0}, true, Case::kOneHot},   {{1.0f, 0, 0.7f, 0}, false, Case::kTarget},
  };
  int64_t draws = 0;
  for (const Case& c : cases) {
    std::vector<float> logits(vocab);
    for (float& l : logits) l = std::round(normal(rng) * 4) / 4;  // many ties
    const std::vector<double> p = ReferenceDistribution(logits, c.params);
    // The draft token: among the target's likely tokens half the time, anywhere otherwise.
    int32_t token = c.bonus ? -1 : static_cast<int32_t>(rng() % vocab);
    if (!c.bonus && rng() % 2 == 0) token = Argmax(logits);
    std::vector<int32_t> ids;
    std::vector<float> probs;
    if (c.proposal == Case::kSparse) {
      double total = 0;
      for (int32_t id = 0; id < vocab; ++id) {
        if (id == token || rng() % 8 == 0) {
          ids.push_back(id);
          probs.push_back(static_cast<float>(uniform(rng) * (id == token ? 200 : 1)));
          total += probs.back();
        }
      }
      for (float& q : probs) q = static_cast<float>(q / total);
    } else if (c.proposal == Case::kTarget) {
      std::vector<float> dense;
      SamplingDistribution(logits, c.params, &dense);
      for (int32_t id = 0; id < vocab; ++id) {
        if (dense[id] > 0) {
          ids.push_back(id);
          probs.push_back(dense[id]);
        }
      }
    }
    // The reference residual (dense q: one-hot on the token without a proposal).
    std::vector<double> q(vocab, 0.0);
    if (!c.bonus && c.proposal == Case::kOneHot) q[token] = 1.0;
    for (size_t j = 0; j < ids.size(); ++j) q[ids[j]] = probs[j];
    std::vector<double> residual(vocab);
    double mass = 0;
    for (int64_t j = 0; j < vocab; ++j) mass += residual[j] = c.bonus ? p[j] : std::max(0.0, p[j] - q[j]);
    if (mass <= 1e-6) {  // p == q up to rounding: the draw comes from p
      residual = p;
      mass = 1.0;
    }
    std::vector<double> cdf(vocab + 1, 0.0);
    for (int64_t j = 0; j < vocab; ++j) cdf[j + 1] = cdf[j] + residual[j] / mass;
    for (int t = 0; t < 200; ++t) {
      math::SampledRowRequest request;
      request.temperature = c.params.temperature;
      request.top_k = static_cast<int32_t>(c.params.top_k);
      request.top_p = c.params.top_p;
      request.token = token;
      request.proposal_count = static_cast<int32_t>(ids.size());
      request.sample_uniform = uniform(rng);
      const SampledDecision d = DecideSampledRow(logits, request, ids, probs);
      if (!c.bonus) {
        ASSERT_NEAR(d.target_prob, p[token], 1e-6 + 1e-5 * p[token]);
      }
      ASSERT_GE(d.replacement, 0);
      ASSERT_LT(d.replacement, vocab);
      EXPECT_GT(residual[d.replacement], 0) << "a token without residual mass was drawn";
      EXPECT_LE(cdf[d.replacement] - 1e-6, request.sample_uniform);
      EXPECT_GE(cdf[d.replacement + 1] + 1e-6, request.sample_uniform);
      ++draws;
    }
  }
  EXPECT_EQ(draws, 200 * static_cast<int64_t>(cases.size()));
  // Greedy requests: one-hot on the argmax.
  const std::vector<float> row = {0.5f, 2.0f, 2.0f, -1.0f};
  math::SampledRowRequest greedy;
  greedy.token = 1;
  EXPECT_EQ(DecideSampledRow(row, greedy, {}, {}).replacement, 1);
  EXPECT_EQ(DecideSampledRow(row, greedy, {}, {}).target_prob, 1.0f);
  greedy.token = 2;
  EXPECT_EQ(DecideSampledRow(row, greedy, {}, {}).target_prob, 0.0f);
}

TEST(SamplerTest, SameSeedSameTokensDifferentSeedDifferentTokens) {
  std::vector<float> logits(50);
  for (size_t i = 0; i < logits.size(); ++i) logits[i] = std::sin(static_cast<float>(i));
  auto draw = [&](uint64_t seed) {
    Sampler s({1.0f, 0, 1.0f, seed});
    std::vector<int32_t> out;
    for (int i = 0; i < 64; ++i) out.push_back(s.Sample(logits).value());
    return out;
  };
  EXPECT_EQ(draw(42), draw(42));
  EXPECT_NE(draw(42), draw(43));
}

// Pearson chi-square goodness of fit of 40000 draws against the target distribution. With 7
// degrees of freedom the 99.99th percentile is 29.9; a broken sampler (off-by-one in the CDF,
// ignoring temperature or top-k) lands in the hundreds or thousands.
TEST(SamplerTest, DrawsFollowTheDistribution) {
  const std::vector<float> logits = {0.2f, 1.5f, -0.3f, 0.9f, 2.1f, -1.0f, 0.0f, 1.1f, -4.0f, 0.4f};
  const SamplingParams params{0.8f, 8, 1.0f, 1234};
  std::vector<float> probs;
  SamplingDistribution(logits, params, &probs);
  Sampler sampler(params);
  const int n = 40000;
  std::vector<int> counts(logits.size());
  for (int i = 0; i < n; ++i) ++counts[sampler.Sample(logits).value()];
  double chi2 = 0;
  int support = 0;
  for (size_t i = 0; i < logits.size(); ++i) {
    if (probs[i] == 0) {
      EXPECT_EQ(counts[i], 0) << "token " << i << " is outside the top-k";
      continue;
    }
    ++support;
    const double expected = n * probs[i];
    chi2 += (counts[i] - expected) * (counts[i] - expected) / expected;
  }
  EXPECT_EQ(support, 8);
  EXPECT_LT(chi2, 29.9);
}

TEST(SamplerTest, RejectsBadParametersAndLogits) {
  EXPECT_THAT(ValidateSamplingParams({-1.0f}), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ValidateSamplingParams({NAN}), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ValidateSamplingParams({1.0f, 0, 0.0f}), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ValidateSamplingParams({1.0f, 0, 1.5f}), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ValidateSamplingParams({1.0f, -3, 1.0f}), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_OK(ValidateSamplingParams({0.7f, 40, 0.9f}));
  Sampler sampler({1.0f});
  EXPECT_THAT(sampler.Sample({}), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(sampler.Sample(std::vector<float>{1.0f, NAN}), StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace verdict::engine
