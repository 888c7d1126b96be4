// SPDX-License-Identifier: Apache-2.0
// Logistic-regression trainer for the judge head: a linear classifier over per-token features
// whose probability sigmoid(w.x + b) is compared with the runtime's acceptance threshold.
// Training standardizes the features (train mean/std), minimizes class-weighted log loss plus
// L2 on the weights with Adam over shuffled minibatches, stops early on validation loss, and
// folds the standardization back into (weight, bias) so inference works on raw features.
// Everything is deterministic for a given seed. Single-threaded; a LogisticModel is immutable
// once trained and safe to use from any thread; TrainLogisticRegression is reentrant.
#ifndef VERDICT_JUDGE_TRAINING_LOGISTIC_REGRESSION_H_
#define VERDICT_JUDGE_TRAINING_LOGISTIC_REGRESSION_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace verdict::judge {

// A dense labeled design matrix.
struct LabeledFeatures {
  int64_t num_features = 0;
  std::vector<float> x;    // rows() * num_features, row-major
  std::vector<uint8_t> y;  // rows(), each 0 (reject) or 1 (accept)

  // The number of rows: y.size().
  int64_t rows() const { return static_cast<int64_t>(y.size()); }
  // Row `r` of x. REQUIRES: 0 <= r < rows(), x.size() == rows() * num_features.
  absl::Span<const float> row(int64_t r) const {
    return absl::MakeConstSpan(x.data() + r * num_features, static_cast<size_t>(num_features));
  }
};

// A trained linear classifier in raw feature space (the standardization is folded in).
struct LogisticModel {
  std::vector<float> weight;
  float bias = 0;

  // bias + weight . features. REQUIRES: features.size() == weight.size() (checked).
  float Logit(absl::Span<const float> features) const;
  // sigmoid(Logit(features)).
  float Probability(absl::Span<const float> features) const;
  // Probability of every row. REQUIRES: data.num_features == weight.size() and
  // data.x.size() == data.rows() * data.num_features (checked).
  std::vector<float> Score(const LabeledFeatures& data) const;
};

struct TrainingOptions {
  double l2 = 1e-3;             // penalty (l2 / 2) * |w|^2 on the standardized weights, not bias
  double learning_rate = 0.05;  // Adam step size (beta1 0.9, beta2 0.999, eps 1e-8)
  int64_t max_epochs = 300;
  int64_t batch_size = 1024;    // 0 = full batch
  int64_t patience = 20;        // stop after this many epochs without validation improvement
  bool class_weighted = true;   // balanced weights n / (2 * n_c) from the training set
  uint64_t seed = 0;            // drives the per-epoch shuffles (std::mt19937_64)
};

struct TrainingReport {
  int64_t epochs_run = 0;
  int64_t best_epoch = 0;  // 1-based epoch whose parameters were kept (0: the initial ones)
  int64_t train_rows = 0;
  int64_t validation_rows = 0;
  double best_validation_loss = 0;
  // Per epoch, the weighted log loss only (no L2 term). train_loss[e] is the mean over epoch e
  // of each minibatch's loss evaluated before that minibatch's update; validation_loss[e] is
  // evaluated on the whole validation set after epoch e. Both use the training-set class
  // weights (all 1 without class weighting) and divide by the sum of the weights.
  std::vector<double> train_loss;
  std::vector<double> validation_loss;
  // The standardization used during training (std floored at kMinFeatureStd).
  std::vector<float> feature_mean;
  std::vector<float> feature_std;
};

inline constexpr float kMinFeatureStd = 1e-6f;

// Trains a class-weighted, L2-regularized logistic regression on `train`, early-stopping on the
// weighted log loss over `validation` (an improvement must beat the best loss by more than
// 1e-9), and returns the parameters of the best validation epoch in raw feature space.
// `report`, if not null, is overwritten with the training history on success; on error it is
// left untouched.
// Errors (nothing is trained): InvalidArgument if either set is empty, num_features <= 0, the
// two sets differ in num_features, x.size() != rows * num_features, a label is not 0 or 1, a
// feature is not finite (the message names the set, row and column), or an option is out of
// range (l2 < 0, learning_rate <= 0, max_epochs < 1, batch_size < 0, patience < 1);
// FailedPrecondition if the training set has only one class.
absl::StatusOr<LogisticModel> TrainLogisticRegression(const LabeledFeatures& train,
                                                      const LabeledFeatures& validation,
                                                      const TrainingOptions& options,
                                                      TrainingReport* report);

}  // namespace verdict::judge

#endif  // VERDICT_JUDGE_TRAINING_LOGISTIC_REGRESSION_H_
