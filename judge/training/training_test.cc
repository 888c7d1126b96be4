// SPDX-License-Identifier: Apache-2.0
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "absl/status/status.h"
#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "judge/training/classifier_metrics.h"
#include "judge/training/logistic_regression.h"

namespace verdict::judge {
namespace {

using ::testing::HasSubstr;
using ::verdict::testing::StatusIs;

// ---------------------------------------------------------------------------------------------
// ComputeBinaryMetrics

TEST(BinaryMetricsTest, HandMadeCounts) {
  const std::vector<float> scores = {0.9f, 0.8f, 0.7f, 0.6f, 0.5f, 0.4f};
  const std::vector<uint8_t> labels = {1, 1, 0, 1, 0, 0};
  // Predicted positive: 0.9, 0.8, 0.7 (0.6 is not > 0.6).
  const BinaryMetrics m = ComputeBinaryMetrics(scores, labels, 0.6f);
  EXPECT_EQ(m.count, 6);
  EXPECT_EQ(m.positives, 3);
  EXPECT_EQ(m.negatives, 3);
  EXPECT_EQ(m.true_pos, 2);
  EXPECT_EQ(m.false_pos, 1);
  EXPECT_EQ(m.true_neg, 2);
  EXPECT_EQ(m.false_neg, 1);
  EXPECT_DOUBLE_EQ(m.precision, 2.0 / 3);
  EXPECT_DOUBLE_EQ(m.recall, 2.0 / 3);
  EXPECT_DOUBLE_EQ(m.f1, 2.0 / 3);
  EXPECT_DOUBLE_EQ(m.accuracy, 4.0 / 6);
  EXPECT_DOUBLE_EQ(m.false_accept_rate, 1.0 / 3);
}

TEST(BinaryMetricsTest, ThresholdIsStrict) {
  const std::vector<float> scores = {0.5f, 0.5f};
  const std::vector<uint8_t> labels = {1, 0};
  const BinaryMetrics at = ComputeBinaryMetrics(scores, labels, 0.5f);
  EXPECT_EQ(at.true_pos, 0);
  EXPECT_EQ(at.false_pos, 0);
  const BinaryMetrics below = ComputeBinaryMetrics(scores, labels, 0.4999f);
  EXPECT_EQ(below.true_pos, 1);
  EXPECT_EQ(below.false_pos, 1);
  EXPECT_DOUBLE_EQ(below.false_accept_rate, 1.0);
}

TEST(BinaryMetricsTest, ZeroDenominatorsGiveZero) {
  // Nothing predicted positive: precision, recall and f1 are 0.
  const std::vector<float> scores = {0.1f, 0.2f, 0.3f};
  const std::vector<uint8_t> labels = {1, 0, 1};
  const BinaryMetrics none = ComputeBinaryMetrics(scores, labels, 1.0f);
  EXPECT_EQ(none.true_pos + none.false_pos, 0);
  EXPECT_EQ(none.precision, 0.0);
  EXPECT_EQ(none.recall, 0.0);
  EXPECT_EQ(none.f1, 0.0);
  EXPECT_DOUBLE_EQ(none.accuracy, 1.0 / 3);
  EXPECT_EQ(none.false_accept_rate, 0.0);

  // No negatives: FAR is 0.
  const std::vector<uint8_t> all_pos = {1, 1, 1};
  const BinaryMetrics pos = ComputeBinaryMetrics(scores, all_pos, 0.0f);
  EXPECT_EQ(pos.negatives, 0);
  EXPECT_EQ(pos.false_accept_rate, 0.0);
  EXPECT_EQ(pos.precision, 1.0);
  EXPECT_EQ(pos.recall, 1.0);

  const BinaryMetrics empty = ComputeBinaryMetrics({}, {}, 0.5f);
  EXPECT_EQ(empty.count, 0);
  EXPECT_EQ(empty.accuracy, 0.0);
}

// ---------------------------------------------------------------------------------------------
// RocAuc

double BruteForceAuc(const std::vector<float>& s, const std::vector<uint8_t>& y) {
  double wins = 0;
  int64_t pairs = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    if (y[i] != 1) continue;
    for (size_t j = 0; j < s.size(); ++j) {
      if (y[j] != 0) continue;
      ++pairs;
      wins += s[i] > s[j] ? 1.0 : (s[i] == s[j] ? 0.5 : 0.0);
    }
  }
  return wins / static_cast<double>(pairs);
}

TEST(RocAucTest, MatchesBruteForceWithTies) {
  for (uint64_t seed = 1; seed <= 5; ++seed) {
    SCOPED_TRACE(::testing::Message() << "seed " << seed);
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> noise(0.0f, 1.0f);
    std::bernoulli_distribution coin(0.3);
    std::vector<float> scores;
    std::vector<uint8_t> labels;
    for (int i = 0; i < 700; ++i) {
      const uint8_t y = coin(rng) ? 1 : 0;
      // Rounded to a coarse grid so that many scores tie, across and within classes.
      scores.push_back(std::round((noise(rng) + (y ? 0.7f : 0.0f)) * 4.0f) / 4.0f);
      labels.push_back(y);
    }
    EXPECT_NEAR(RocAuc(scores, labels), BruteForceAuc(scores, labels), 1e-12);
  }
}

TEST(RocAucTest, PerfectReversedTiedAndMissingClass) {
  const std::vector<float> scores = {0.1f, 0.2f, 0.3f, 0.4f, 0.5f};
  EXPECT_DOUBLE_EQ(RocAuc(scores, std::vector<uint8_t>{0, 0, 1, 1, 1}), 1.0);
  EXPECT_DOUBLE_EQ(RocAuc(scores, std::vector<uint8_t>{1, 1, 1, 0, 0}), 0.0);
  EXPECT_DOUBLE_EQ(RocAuc(std::vector<float>(4, 0.3f), std::vector<uint8_t>{1, 0, 1, 0}), 0.5);
  EXPECT_TRUE(std::isnan(RocAuc(scores, std::vector<uint8_t>(5, 1))));
  EXPECT_TRUE(std::isnan(RocAuc(scores, std::vector<uint8_t>(5, 0))));
  EXPECT_TRUE(std::isnan(RocAuc({}, {})));
}

// ---------------------------------------------------------------------------------------------
// ThresholdForFalseAcceptRate

double FarAt(const std::vector<float>& s, const std::vector<uint8_t>& y, float t) {
  return ComputeBinaryMetrics(s, y, t).false_accept_rate;
}

float ThresholdOrNan(const std::vector<float>& s, const std::vector<uint8_t>& y, double target) {
  absl::StatusOr<float> t = ThresholdForFalseAcceptRate(s, y, target);
  EXPECT_OK(t.status());
  return t.ok() ? *t : std::numeric_limits<float>::quiet_NaN();
}

TEST(ThresholdForFarTest, HandMade) {
  const std::vector<float> scores = {0.1f, 0.2f, 0.3f, 0.4f, 0.05f, 0.35f};
  const std::vector<uint8_t> labels = {0, 0, 0, 0, 1, 1};
  EXPECT_EQ(ThresholdOrNan(scores, labels, 0.0), 0.4f);
  EXPECT_EQ(ThresholdOrNan(scores, labels, 0.2), 0.4f);
  EXPECT_EQ(ThresholdOrNan(scores, labels, 0.25), 0.3f);
  EXPECT_EQ(ThresholdOrNan(scores, labels, 0.5), 0.2f);
  EXPECT_EQ(ThresholdOrNan(scores, labels, 0.75), 0.1f);
  // Everything may be accepted: the smallest score (a positive here).
  EXPECT_EQ(ThresholdOrNan(scores, labels, 1.0), 0.05f);
}

TEST(ThresholdForFarTest, MeetsTargetAndIsMostPermissive) {
  std::mt19937_64 rng(7);
  std::normal_distribution<float> noise(0.0f, 1.0f);
  std::bernoulli_distribution coin(0.5);
  std::vector<float> scores;
  std::vector<uint8_t> labels;
  for (int i = 0; i < 2000; ++i) {
    const uint8_t y = coin(rng) ? 1 : 0;
    scores.push_back(std::round((noise(rng) + (y ? 1.0f : 0.0f)) * 20.0f) / 20.0f);  // ties
    labels.push_back(y);
  }
  for (double target : {0.0, 0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 0.9, 0.999, 1.0}) {
    SCOPED_TRACE(::testing::Message() << "target " << target);
    ASSERT_OK_AND_ASSIGN(const float t, ThresholdForFalseAcceptRate(scores, labels, target));
    EXPECT_NE(std::find(scores.begin(), scores.end(), t), scores.end()) << "not a candidate";
    EXPECT_LE(FarAt(scores, labels, t), target);
    // The next lower candidate must miss the target.
    float next_lower = -std::numeric_limits<float>::infinity();
    for (float s : scores) {
      if (s < t) next_lower = std::max(next_lower, s);
    }
    if (std::isfinite(next_lower)) {
      EXPECT_GT(FarAt(scores, labels, next_lower), target) << "next lower " << next_lower;
    } else {
      EXPECT_EQ(t, *std::min_element(scores.begin(), scores.end()));
    }
  }
}

TEST(ThresholdForFarTest, Errors) {
  const std::vector<float> scores = {0.1f, 0.2f};
  const std::vector<uint8_t> labels = {0, 1};
  for (double bad : {-0.01, 1.01, std::numeric_limits<double>::quiet_NaN()}) {
    EXPECT_THAT(ThresholdForFalseAcceptRate(scores, labels, bad),
                StatusIs(absl::StatusCode::kInvalidArgument));
  }
  EXPECT_THAT(ThresholdForFalseAcceptRate(scores, std::vector<uint8_t>{0}, 0.1),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ThresholdForFalseAcceptRate(scores, std::vector<uint8_t>{0, 2}, 0.1),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ThresholdForFalseAcceptRate(
                  std::vector<float>{0.1f, std::numeric_limits<float>::quiet_NaN()}, labels, 0.1),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ThresholdForFalseAcceptRate(scores, std::vector<uint8_t>{1, 1}, 0.1),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("no negative")));
  EXPECT_THAT(ThresholdForFalseAcceptRate({}, {}, 0.1),
              StatusIs(absl::StatusCode::kFailedPrecondition));
}

// ---------------------------------------------------------------------------------------------
// LogLoss

TEST(LogLossTest, ValuesAndClamping) {
  EXPECT_NEAR(LogLoss(std::vector<float>{0.5f, 0.5f}, std::vector<uint8_t>{1, 0}), std::log(2.0),
              1e-12);
  EXPECT_NEAR(LogLoss(std::vector<float>{0.8f}, std::vector<uint8_t>{1}),
              -std::log(static_cast<double>(0.8f)), 1e-12);
  EXPECT_NEAR(LogLoss(std::vector<float>{0.8f}, std::vector<uint8_t>{0}),
              -std::log1p(-static_cast<double>(0.8f)), 1e-12);
  // Confident mistakes cost -log(epsilon), not infinity.
  const double worst = LogLoss(std::vector<float>{0.0f, 1.0f}, std::vector<uint8_t>{1, 0});
  EXPECT_TRUE(std::isfinite(worst));
  EXPECT_NEAR(worst, -std::log(kLogLossEpsilon), 1e-3);
  EXPECT_LT(LogLoss(std::vector<float>{1.0f, 0.0f}, std::vector<uint8_t>{1, 0}), 1e-12);
  EXPECT_TRUE(std::isnan(LogLoss({}, {})));
}

// ---------------------------------------------------------------------------------------------
// TrainLogisticRegression

// A planted linear problem in raw feature space: x_j = mean_j + scale_j * N(0, 1), with the
// separator's normal w* and offset b* chosen so that positives have base rate ~`positive_rate`
// (before noise). Label = (w*.x + b* + logit_noise > 0), then flipped with prob `flip`.
struct PlantedProblem {
  int64_t num_features;
  std::vector<float> mean, scale, w_star;
  float b_star = 0;
  double logit_noise = 0;  // std of N(0, .) added to the standardized margin
  double flip = 0;

  PlantedProblem(int64_t f, uint64_t seed, double positive_quantile_z)
      : num_features(f), mean(f), scale(f), w_star(f) {
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<float> u(0.5f, 3.0f);
    std::normal_distribution<float> n01(0.0f, 1.0f);
    // Standardized normal direction v (unit), raw normal w*_j = v_j / scale_j.
    double norm = 0;
    std::vector<float> v(f);
    for (int64_t j = 0; j < f; ++j) {
      v[j] = n01(rng);
      norm += v[j] * v[j];
    }
    norm = std::sqrt(norm);
    double offset = 0;
    for (int64_t j = 0; j < f; ++j) {
      mean[j] = 4.0f * n01(rng);
      scale[j] = u(rng);
      w_star[j] = static_cast<float>(v[j] / norm) / scale[j];
      offset += w_star[j] * mean[j];
    }
    // The standardized margin v.z ~ N(0, 1); shift so positives need margin > z.
    b_star = static_cast<float>(-offset - positive_quantile_z);
  }

  // Returns the data and, in clean_y, the labels before flipping.
  LabeledFeatures Sample(int64_t rows, uint64_t seed, std::vector<uint8_t>* clean_y = nullptr) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> n01(0.0, 1.0);
    std::bernoulli_distribution flipper(flip);
    LabeledFeatures d;
    d.num_features = num_features;
    d.x.resize(rows * num_features);
    d.y.resize(rows);
    if (clean_y != nullptr) clean_y->resize(rows);
    for (int64_t r = 0; r < rows; ++r) {
      double margin = b_star;
      for (int64_t j = 0; j < num_features; ++j) {
        const float x = mean[j] + scale[j] * static_cast<float>(n01(rng));
        d.x[r * num_features + j] = x;
        margin += static_cast<double>(w_star[j]) * x;
      }
      if (logit_noise > 0) margin += logit_noise * n01(rng);
      const uint8_t clean = margin > 0 ? 1 : 0;
      if (clean_y != nullptr) (*clean_y)[r] = clean;
      d.y[r] = (flip > 0 && flipper(rng)) ? 1 - clean : clean;
    }
    return d;
  }
};

double Cosine(const std::vector<float>& a, const std::vector<float>& b) {
  double ab = 0, aa = 0, bb = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    ab += static_cast<double>(a[i]) * b[i];
    aa += static_cast<double>(a[i]) * a[i];
    bb += static_cast<double>(b[i]) * b[i];
  }
  return ab / std::sqrt(aa * bb);
}

bool AllFinite(const LogisticModel& m) {
  if (!std::isfinite(m.bias)) return false;
  for (float w : m.weight) {
    if (!std::isfinite(w)) return false;
  }
  return true;
}

TEST(LogisticRegressionTest, RecoversPlantedSeparator) {
  PlantedProblem problem(20, /*seed=*/11, /*positive_quantile_z=*/0.3);
  const LabeledFeatures train = problem.Sample(20000, 1);
  const LabeledFeatures validation = problem.Sample(5000, 2);
  const LabeledFeatures test = problem.Sample(10000, 3);
  TrainingReport report;
  ASSERT_OK_AND_ASSIGN(const LogisticModel model,
                       TrainLogisticRegression(train, validation, TrainingOptions(), &report));
  ASSERT_TRUE(AllFinite(model));
  const double cosine = Cosine(model.weight, problem.w_star);
  const double auc = RocAuc(model.Score(test), test.y);
  const BinaryMetrics m = ComputeBinaryMetrics(model.Score(test), test.y, 0.5f);
  std::printf("planted: cosine %.5f auc %.5f acc %.4f epochs %lld best %lld val loss %.4f\n",
              cosine, auc, m.accuracy, static_cast<long long>(report.epochs_run),
              static_cast<long long>(report.best_epoch), report.best_validation_loss);
  EXPECT_GT(cosine, 0.99);
  EXPECT_GT(auc, 0.995);
  EXPECT_GT(m.accuracy, 0.97);

  EXPECT_EQ(report.train_rows, 20000);
  EXPECT_EQ(report.validation_rows, 5000);
  EXPECT_EQ(static_cast<int64_t>(report.train_loss.size()), report.epochs_run);
  EXPECT_EQ(static_cast<int64_t>(report.validation_loss.size()), report.epochs_run);
  ASSERT_GE(report.best_epoch, 1);
  EXPECT_EQ(report.best_validation_loss, report.validation_loss[report.best_epoch - 1]);
  EXPECT_LT(report.train_loss.back(), report.train_loss.front());
  ASSERT_EQ(report.feature_mean.size(), 20u);
  ASSERT_EQ(report.feature_std.size(), 20u);
  for (int j = 0; j < 20; ++j) {
    EXPECT_NEAR(report.feature_mean[j], problem.mean[j], 0.1f);
    EXPECT_NEAR(report.feature_std[j], problem.scale[j], 0.05f * problem.scale[j]);
  }
}

TEST(LogisticRegressionTest, FoldedModelReproducesBestValidationLoss) {
  // Without class weights the report's validation loss is the plain log loss, so the raw-space
  // model (standardization folded in) must reproduce it.
  PlantedProblem problem(10, /*seed=*/5, /*positive_quantile_z=*/0.0);
  problem.logit_noise = 0.5;
  const LabeledFeatures train = problem.Sample(5000, 1);
  const LabeledFeatures validation = problem.Sample(2000, 2);
  TrainingOptions options;
  options.class_weighted = false;
  TrainingReport report;
  ASSERT_OK_AND_ASSIGN(const LogisticModel model,
                       TrainLogisticRegression(train, validation, options, &report));
  EXPECT_NEAR(LogLoss(model.Score(validation), validation.y), report.best_validation_loss, 1e-4);
  // Logit and Probability agree with Score.
  const std::vector<float> probs = model.Score(validation);
  const float z = model.Logit(validation.row(3));
  EXPECT_FLOAT_EQ(model.Probability(validation.row(3)), probs[3]);
  EXPECT_NEAR(probs[3], 1.0 / (1.0 + std::exp(-static_cast<double>(z))), 1e-6);
}

TEST(LogisticRegressionTest, LabelNoiseDegradesGracefully) {
  PlantedProblem problem(20, /*seed=*/12, /*positive_quantile_z=*/0.0);
  problem.flip = 0.2;
  const LabeledFeatures train = problem.Sample(20000, 1);
  const LabeledFeatures validation = problem.Sample(5000, 2);
  std::vector<uint8_t> clean_test_y;
  const LabeledFeatures test = problem.Sample(10000, 3, &clean_test_y);
  TrainingReport report;
  ASSERT_OK_AND_ASSIGN(const LogisticModel model,
                       TrainLogisticRegression(train, validation, TrainingOptions(), &report));
  ASSERT_TRUE(AllFinite(model));
  for (double loss : report.train_loss) ASSERT_TRUE(std::isfinite(loss));
  for (double loss : report.validation_loss) ASSERT_TRUE(std::isfinite(loss));
  const std::vector<float> scores = model.Score(test);
  const double clean_auc = RocAuc(scores, clean_test_y);
  const double noisy_auc = RocAuc(scores, test.y);
  const double cosine = Cosine(model.weight, problem.w_star);
  std::printf("noisy: cosine %.4f clean auc %.4f noisy auc %.4f (ceiling 0.80) epochs %lld\n",
              cosine, clean_auc, noisy_auc, static_cast<long long>(report.epochs_run));
  EXPECT_GT(clean_auc, 0.85);
  // Symmetric 20% flips cap the AUC against noisy labels at 0.64 + 0.32 / 2 = 0.80.
  EXPECT_GT(noisy_auc, 0.75);
  EXPECT_GT(cosine, 0.9);
  // Calibrated to the noise: validation loss is near the entropy of 20% flips (0.500 nats).
  EXPECT_LT(report.best_validation_loss, 0.6);
}

TEST(LogisticRegressionTest, ClassWeightingRecoversMinorityRecall) {
  // ~1:20 imbalance with overlapping classes (noisy margin).
  PlantedProblem problem(20, /*seed=*/13, /*positive_quantile_z=*/1.67);
  problem.logit_noise = 0.3;
  const LabeledFeatures train = problem.Sample(30000, 1);
  const LabeledFeatures validation = problem.Sample(6000, 2);
  const LabeledFeatures test = problem.Sample(20000, 3);
  int64_t positives = 0;
  for (uint8_t y : train.y) positives += y;
  const double rate = static_cast<double>(positives) / train.rows();
  ASSERT_GT(rate, 1.0 / 30);
  ASSERT_LT(rate, 1.0 / 14);

  ASSERT_OK_AND_ASSIGN(const LogisticModel weighted,
                       TrainLogisticRegression(train, validation, TrainingOptions(), nullptr));
  TrainingOptions unweighted_options;
  unweighted_options.class_weighted = false;
  ASSERT_OK_AND_ASSIGN(const LogisticModel unweighted,
                       TrainLogisticRegression(train, validation, unweighted_options, nullptr));
  const BinaryMetrics w = ComputeBinaryMetrics(weighted.Score(test), test.y, 0.5f);
  const BinaryMetrics u = ComputeBinaryMetrics(unweighted.Score(test), test.y, 0.5f);
  std::printf("imbalance %.4f: weighted recall %.4f FAR %.4f; unweighted recall %.4f FAR %.4f\n",
              rate, w.recall, w.false_accept_rate, u.recall, u.false_accept_rate);
  EXPECT_GE(w.recall, 0.9);
  EXPECT_GT(w.recall, u.recall);
  EXPECT_GT(RocAuc(weighted.Score(test), test.y), 0.98);
}

TEST(LogisticRegressionTest, EarlyStoppingWhenValidationStalls) {
  // A weak signal in feature 0 plus 79 pure-noise features and few training rows: validation
  // loss improves for a few epochs, then the model overfits the noise and it stalls.
  std::mt19937_64 rng(3);
  std::normal_distribution<float> n01(0.0f, 1.0f);
  std::bernoulli_distribution coin(0.5);
  auto make = [&](int64_t rows) {
    LabeledFeatures d;
    d.num_features = 80;
    for (int64_t r = 0; r < rows; ++r) {
      const uint8_t y = coin(rng) ? 1 : 0;
      d.y.push_back(y);
      d.x.push_back(n01(rng) + (y ? 0.5f : -0.5f));
      for (int j = 1; j < 80; ++j) d.x.push_back(n01(rng));
    }
    return d;
  };
  const LabeledFeatures train = make(300);
  const LabeledFeatures validation = make(2000);
  TrainingOptions options;
  options.max_epochs = 1000;
  options.patience = 10;
  options.batch_size = 64;
  options.learning_rate = 0.01;
  options.l2 = 0;
  TrainingReport report;
  ASSERT_OK_AND_ASSIGN(const LogisticModel model,
                       TrainLogisticRegression(train, validation, options, &report));
  std::printf("early stop: epochs %lld best %lld best val %.4f last val %.4f\n",
              static_cast<long long>(report.epochs_run), static_cast<long long>(report.best_epoch),
              report.best_validation_loss, report.validation_loss.back());
  EXPECT_LT(report.epochs_run, options.max_epochs);
  EXPECT_GE(report.best_epoch, 1);
  EXPECT_EQ(report.epochs_run, report.best_epoch + options.patience);
  EXPECT_EQ(static_cast<int64_t>(report.validation_loss.size()), report.epochs_run);
  for (double loss : report.validation_loss) {
    EXPECT_GE(loss, report.best_validation_loss);
  }
  // The kept parameters are the best epoch's, not the last (overfit) epoch's.
  EXPECT_LT(report.best_validation_loss, report.validation_loss.back());
  EXPECT_NEAR(LogLoss(model.Score(validation), validation.y), report.best_validation_loss, 0.01);
  EXPECT_TRUE(AllFinite(model));
}

TEST(LogisticRegressionTest, FullBatchAndConstantFeature) {
  PlantedProblem problem(6, /*seed=*/21, /*positive_quantile_z=*/0.0);
  LabeledFeatures train = problem.Sample(3000, 1);
  LabeledFeatures validation = problem.Sample(1000, 2);
  // Append a constant column (std 0 -> floored) to both sets.
  auto add_constant = [](LabeledFeatures& d) {
    LabeledFeatures out;
    out.num_features = d.num_features + 1;
    out.y = d.y;
    for (int64_t r = 0; r < d.rows(); ++r) {
      for (float v : d.row(r)) out.x.push_back(v);
      out.x.push_back(7.0f);
    }
    d = out;
  };
  add_constant(train);
  add_constant(validation);
  TrainingOptions options;
  options.batch_size = 0;
  options.learning_rate = 0.1;
  TrainingReport report;
  ASSERT_OK_AND_ASSIGN(const LogisticModel model,
                       TrainLogisticRegression(train, validation, options, &report));
  ASSERT_TRUE(AllFinite(model));
  EXPECT_EQ(report.feature_std.back(), kMinFeatureStd);
  EXPECT_NEAR(model.weight.back(), 0.0f, 1e-3f);
  EXPECT_GT(RocAuc(model.Score(validation), validation.y), 0.99);
}

TEST(LogisticRegressionTest, DeterministicForSeed) {
  PlantedProblem problem(8, /*seed=*/31, /*positive_quantile_z=*/0.2);
  problem.logit_noise = 0.5;
  const LabeledFeatures train = problem.Sample(4000, 1);
  const LabeledFeatures validation = problem.Sample(1000, 2);
  TrainingOptions options;
  options.max_epochs = 30;
  options.batch_size = 256;
  options.seed = 42;
  ASSERT_OK_AND_ASSIGN(const LogisticModel a,
                       TrainLogisticRegression(train, validation, options, nullptr));
  ASSERT_OK_AND_ASSIGN(const LogisticModel b,
                       TrainLogisticRegression(train, validation, options, nullptr));
  EXPECT_EQ(a.weight, b.weight);
  EXPECT_EQ(a.bias, b.bias);
  options.seed = 43;
  ASSERT_OK_AND_ASSIGN(const LogisticModel c,
                       TrainLogisticRegression(train, validation, options, nullptr));
  EXPECT_NE(a.weight, c.weight);
}

TEST(LogisticRegressionTest, BadInputs) {
  PlantedProblem problem(4, /*seed=*/41, /*positive_quantile_z=*/0.0);
  const LabeledFeatures good = problem.Sample(100, 1);
  const TrainingOptions options;
  auto train_with = [&](const LabeledFeatures& t, const LabeledFeatures& v) {
    return TrainLogisticRegression(t, v, options, nullptr).status();
  };
  EXPECT_OK(train_with(good, good));

  LabeledFeatures empty;
  empty.num_features = 4;
  EXPECT_THAT(train_with(empty, good), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(train_with(good, empty), StatusIs(absl::StatusCode::kInvalidArgument));

  LabeledFeatures short_x = good;
  short_x.x.pop_back();
  EXPECT_THAT(train_with(short_x, good), StatusIs(absl::StatusCode::kInvalidArgument));

  LabeledFeatures wider = problem.Sample(10, 2);
  wider.num_features = 2;
  wider.x.resize(20);
  EXPECT_THAT(train_with(good, wider),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("features")));

  LabeledFeatures bad_label = good;
  bad_label.y[7] = 2;
  EXPECT_THAT(train_with(bad_label, good),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("row 7")));
  EXPECT_THAT(train_with(good, bad_label), StatusIs(absl::StatusCode::kInvalidArgument));

  LabeledFeatures nan_feature = good;
  nan_feature.x[3 * 4 + 1] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THAT(train_with(nan_feature, good),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("row 3, column 1")));
  LabeledFeatures inf_feature = good;
  inf_feature.x[5 * 4 + 2] = std::numeric_limits<float>::infinity();
  EXPECT_THAT(train_with(good, inf_feature),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("row 5, column 2")));

  LabeledFeatures one_class = good;
  std::fill(one_class.y.begin(), one_class.y.end(), 1);
  EXPECT_THAT(train_with(one_class, good), StatusIs(absl::StatusCode::kFailedPrecondition));
  // A one-class validation set is fine.
  EXPECT_OK(train_with(good, one_class));

  for (auto mutate : std::vector<void (*)(TrainingOptions&)>{
           [](TrainingOptions& o) { o.l2 = -1; },
           [](TrainingOptions& o) { o.learning_rate = 0; },
           [](TrainingOptions& o) { o.max_epochs = 0; },
           [](TrainingOptions& o) { o.batch_size = -1; },
           [](TrainingOptions& o) { o.patience = 0; }}) {
    TrainingOptions bad;
    mutate(bad);
    EXPECT_THAT(TrainLogisticRegression(good, good, bad, nullptr),
                StatusIs(absl::StatusCode::kInvalidArgument));
  }
}

// Throughput check at the target scale (200k x 130); run with --gtest_also_run_disabled_tests.
TEST(LogisticRegressionTest, DISABLED_Throughput200kBy130) {
  PlantedProblem problem(130, /*seed=*/51, /*positive_quantile_z=*/0.5);
  problem.logit_noise = 0.5;
  const LabeledFeatures train = problem.Sample(200000, 1);
  const LabeledFeatures validation = problem.Sample(20000, 2);
  TrainingOptions options;
  options.max_epochs = 30;
  options.patience = 1000;
  TrainingReport report;
  const auto start = std::chrono::steady_clock::now();
  ASSERT_OK_AND_ASSIGN(const LogisticModel model,
                       TrainLogisticRegression(train, validation, options, &report));
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("200k x 130: %lld epochs in %.2f s (%.3f s/epoch), val loss %.4f\n",
              static_cast<long long>(report.epochs_run), seconds,
              seconds / static_cast<double>(report.epochs_run), report.best_validation_loss);
  EXPECT_TRUE(AllFinite(model));
}

}  // namespace
}  // namespace verdict::judge
