// SPDX-License-Identifier: Apache-2.0
#include "judge/training/logistic_regression.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "common/check.h"
#include "common/status_macros.h"

namespace verdict::judge {
namespace {

// Improvement a validation loss must show over the best so far to reset the patience counter.
constexpr double kMinValidationImprovement = 1e-9;
constexpr double kAdamBeta1 = 0.9;
constexpr double kAdamBeta2 = 0.999;
constexpr double kAdamEpsilon = 1e-8;
// How many rows ahead of the current one the minibatch loop prefetches.
constexpr int64_t kPrefetchRows = 4;

// Dot product with eight independent accumulators, so the loop vectorizes without
// reassociation flags (-ffast-math would also break the isfinite() checks).
float Dot(const float* a, const float* b, int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    for (int k = 0; k < 8; ++k) acc[k] += a[j + k] * b[j + k];
  }
  float total = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  for (; j < n; ++j) total += a[j] * b[j];
  return total;
}

// y += alpha * x
void Axpy(float alpha, const float* x, float* y, int64_t n) {
  for (int64_t j = 0; j < n; ++j) y[j] += alpha * x[j];
}

float Sigmoid(float z) {
  if (z >= 0) return 1.0f / (1.0f + std::exp(-z));
  const float e = std::exp(z);
  return e / (1.0f + e);
}

// log(1 + exp(z)) without overflow.
double Softplus(double z) { return std::max(z, 0.0) + std::log1p(std::exp(-std::abs(z))); }

// Log loss of logit z for label y: softplus(-z) if y == 1, softplus(z) if y == 0.
double LogitLoss(double z, uint8_t y) { return Softplus(y != 0 ? -z : z); }

absl::Status ValidateSet(const LabeledFeatures& data, absl::string_view name) {
  if (data.num_features <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, " set: num_features must be positive, got ", data.num_features));
  }
  if (data.rows() == 0) return absl::InvalidArgumentError(absl::StrCat(name, " set is empty"));
  if (static_cast<int64_t>(data.x.size()) != data.rows() * data.num_features) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, " set: x has ", data.x.size(), " values, expected rows (",
                     data.rows(), ") * num_features (", data.num_features, ")"));
  }
  for (int64_t r = 0; r < data.rows(); ++r) {
    if (data.y[r] > 1) {
      return absl::InvalidArgumentError(absl::StrCat(name, " set: label ",
                                                     static_cast<int>(data.y[r]), " at row ", r,
                                                     " is not 0 or 1"));
    }
    const float* row = data.x.data() + r * data.num_features;
    for (int64_t c = 0; c < data.num_features; ++c) {
      if (!std::isfinite(row[c])) {
        return absl::InvalidArgumentError(absl::StrCat(name, " set: feature at row ", r,
                                                       ", column ", c, " is not finite (",
                                                       row[c], ")"));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateOptions(const TrainingOptions& o) {
  if (!(o.l2 >= 0) || !std::isfinite(o.l2)) {
    return absl::InvalidArgumentError(absl::StrCat("l2 must be finite and >= 0, got ", o.l2));
  }
  if (!(o.learning_rate > 0) || !std::isfinite(o.learning_rate)) {
    return absl::InvalidArgumentError(
        absl::StrCat("learning_rate must be finite and > 0, got ", o.learning_rate));
  }
  if (o.max_epochs < 1) {
    return absl::InvalidArgumentError(absl::StrCat("max_epochs must be >= 1, got ", o.max_epochs));
  }
  if (o.batch_size < 0) {
    return absl::InvalidArgumentError(absl::StrCat("batch_size must be >= 0, got ", o.batch_size));
  }
  if (o.patience < 1) {
    return absl::InvalidArgumentError(absl::StrCat("patience must be >= 1, got ", o.patience));
  }
  return absl::OkStatus();
}

// (x - mean) / std, row-major, same shape as data.x.
std::vector<float> Standardize(const LabeledFeatures& data, const std::vector<float>& mean,
                               const std::vector<float>& inv_std) {
  const int64_t f = data.num_features;
  std::vector<float> out(data.x.size());
  for (int64_t r = 0; r < data.rows(); ++r) {
    const float* in = data.x.data() + r * f;
    float* o = out.data() + r * f;
    for (int64_t c = 0; c < f; ++c) o[c] = (in[c] - mean[c]) * inv_std[c];
  }
  return out;
}

// Weighted mean log loss of (w, b) over standardized rows.
double WeightedLoss(const std::vector<float>& xs, const std::vector<uint8_t>& y, int64_t f,
                    const std::vector<float>& w, float b, const double class_weight[2]) {
  double total = 0;
  double weight_sum = 0;
  for (size_t r = 0; r < y.size(); ++r) {
    const float z = b + Dot(w.data(), xs.data() + r * f, f);
    const double cw = class_weight[y[r]];
    total += cw * LogitLoss(z, y[r]);
    weight_sum += cw;
  }
  return total / weight_sum;
}

}  // namespace

float LogisticModel::Logit(absl::Span<const float> features) const {
  VERDICT_CHECK_MSG(features.size() == weight.size(), "feature count differs from the model's");
  return bias + Dot(weight.data(), features.data(), static_cast<int64_t>(weight.size()));
}

float LogisticModel::Probability(absl::Span<const float> features) const {
  return Sigmoid(Logit(features));
}

std::vector<float> LogisticModel::Score(const LabeledFeatures& data) const {
  VERDICT_CHECK_MSG(data.num_features == static_cast<int64_t>(weight.size()),
                    "feature count differs from the model's");
  VERDICT_CHECK_MSG(static_cast<int64_t>(data.x.size()) == data.rows() * data.num_features,
                    "x.size() != rows * num_features");
  std::vector<float> out(static_cast<size_t>(data.rows()));
  for (int64_t r = 0; r < data.rows(); ++r) out[r] = Probability(data.row(r));
  return out;
}

absl::StatusOr<LogisticModel> TrainLogisticRegression(const LabeledFeatures& train,
                                                      const LabeledFeatures& validation,
                                                      const TrainingOptions& options,
                                                      TrainingReport* report) {
  VERDICT_RETURN_IF_ERROR(ValidateOptions(options));
  VERDICT_RETURN_IF_ERROR(ValidateSet(train, "training"));
  VERDICT_RETURN_IF_ERROR(ValidateSet(validation, "validation"));
  if (train.num_features != validation.num_features) {
    return absl::InvalidArgumentError(
        absl::StrCat("training set has ", train.num_features, " features, validation set has ",
                     validation.num_features));
  }
  const int64_t f = train.num_features;
  const int64_t n = train.rows();
  int64_t num_pos = 0;
  for (uint8_t y : train.y) num_pos += y;
  const int64_t num_neg = n - num_pos;
  if (num_pos == 0 || num_neg == 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("training set has only one class (", num_pos, " positives, ", num_neg,
                     " negatives)"));
  }

  // Standardization from the training set (two passes, double accumulators).
  std::vector<double> mean_d(f, 0.0), var_d(f, 0.0);
  for (int64_t r = 0; r < n; ++r) {
    const float* row = train.x.data() + r * f;
    for (int64_t c = 0; c < f; ++c) mean_d[c] += row[c];
  }
  for (int64_t c = 0; c < f; ++c) mean_d[c] /= static_cast<double>(n);
  for (int64_t r = 0; r < n; ++r) {
    const float* row = train.x.data() + r * f;
    for (int64_t c = 0; c < f; ++c) {
      const double d = row[c] - mean_d[c];
      var_d[c] += d * d;
    }
  }
  std::vector<float> mean(f), stddev(f), inv_std(f);
  for (int64_t c = 0; c < f; ++c) {
    mean[c] = static_cast<float>(mean_d[c]);
    stddev[c] = std::max(static_cast<float>(std::sqrt(var_d[c] / static_cast<double>(n))),
                         kMinFeatureStd);
    inv_std[c] = 1.0f / stddev[c];
  }
  const std::vector<float> xs = Standardize(train, mean, inv_std);
  const std::vector<float> xv = Standardize(validation, mean, inv_std);

  double class_weight[2] = {1.0, 1.0};
  if (options.class_weighted) {
    class_weight[0] = static_cast<double>(n) / (2.0 * static_cast<double>(num_neg));
    class_weight[1] = static_cast<double>(n) / (2.0 * static_cast<double>(num_pos));
  }
  const float class_weight_f[2] = {static_cast<float>(class_weight[0]),
                                   static_cast<float>(class_weight[1])};

  // Parameters in standardized space; the bias starts at the weighted log-odds.
  std::vector<float> w(f, 0.0f);
  float b = static_cast<float>(std::log((class_weight[1] * static_cast<double>(num_pos)) /
                                        (class_weight[0] * static_cast<double>(num_neg))));
  std::vector<float> best_w = w;
  float best_b = b;
  double best_loss = WeightedLoss(xv, validation.y, f, w, b, class_weight);
  int64_t best_epoch = 0;

  // Adam state.
  std::vector<float> m_w(f, 0.0f), v_w(f, 0.0f), grad_w(f, 0.0f);
  double m_b = 0, v_b = 0;
  double beta1_pow = 1, beta2_pow = 1;

  const int64_t batch = options.batch_size == 0 ? n : std::min(options.batch_size, n);
  std::vector<uint32_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0u);
  std::mt19937_64 rng(options.seed);
  const float l2 = static_cast<float>(options.l2);
  const double lr = options.learning_rate;

  std::vector<double> train_loss, validation_loss;
  int64_t epoch = 0;
  while (epoch < options.max_epochs) {
    ++epoch;
    if (batch < n) {
      // Fisher-Yates with the engine's raw output: reproducible across standard libraries.
      for (int64_t i = n - 1; i > 0; --i) {
        const uint64_t j = rng() % static_cast<uint64_t>(i + 1);
        std::swap(order[i], order[j]);
      }
    }
    double epoch_loss = 0, epoch_weight = 0;
    for (int64_t start = 0; start < n; start += batch) {
      const int64_t end = std::min(start + batch, n);
      std::fill(grad_w.begin(), grad_w.end(), 0.0f);
      double grad_b = 0;
      for (int64_t k = start; k < end; ++k) {
        if (k + kPrefetchRows < end) {
          // Rows come in shuffled order, which the hardware prefetcher cannot follow.
          const float* ahead = xs.data() + static_cast<int64_t>(order[k + kPrefetchRows]) * f;
          for (int64_t c = 0; c < f; c += 16) __builtin_prefetch(ahead + c);
        }
        const uint32_t r = order[k];
        const float* row = xs.data() + static_cast<int64_t>(r) * f;
        const uint8_t y = train.y[r];
        const float z = b + Dot(w.data(), row, f);
        const float g = class_weight_f[y] * (Sigmoid(z) - static_cast<float>(y));
        Axpy(g, row, grad_w.data(), f);
        grad_b += g;
        epoch_loss += class_weight[y] * LogitLoss(z, y);
        epoch_weight += class_weight[y];
      }
      // Gradient of mean_i(cw_i * loss_i) + (l2 / 2) |w|^2, then one Adam step.
      const float inv_count = 1.0f / static_cast<float>(end - start);
      beta1_pow *= kAdamBeta1;
      beta2_pow *= kAdamBeta2;
      const float step = static_cast<float>(lr * std::sqrt(1 - beta2_pow) / (1 - beta1_pow));
      const float b1 = static_cast<float>(kAdamBeta1), b2 = static_cast<float>(kAdamBeta2);
      const float eps = static_cast<float>(kAdamEpsilon * std::sqrt(1 - beta2_pow));
      for (int64_t c = 0; c < f; ++c) {
        const float gc = grad_w[c] * inv_count + l2 * w[c];
        m_w[c] = b1 * m_w[c] + (1 - b1) * gc;
        v_w[c] = b2 * v_w[c] + (1 - b2) * gc * gc;
        w[c] -= step * m_w[c] / (std::sqrt(v_w[c]) + eps);
      }
      const double gb = grad_b * inv_count;
      m_b = kAdamBeta1 * m_b + (1 - kAdamBeta1) * gb;
      v_b = kAdamBeta2 * v_b + (1 - kAdamBeta2) * gb * gb;
      b -= static_cast<float>(step * m_b / (std::sqrt(v_b) + eps));
    }
    train_loss.push_back(epoch_loss / epoch_weight);
    const double val_loss = WeightedLoss(xv, validation.y, f, w, b, class_weight);
    validation_loss.push_back(val_loss);
    if (val_loss < best_loss - kMinValidationImprovement) {
      best_loss = val_loss;
      best_epoch = epoch;
      best_w = w;
      best_b = b;
    } else if (epoch - best_epoch >= options.patience) {
      break;
    }
  }

  // Fold the standardization in: w.(x - mean)/std + b = (w/std).x + (b - sum w*mean/std).
  LogisticModel model;
  model.weight.resize(f);
  double bias = best_b;
  for (int64_t c = 0; c < f; ++c) {
    const double wc = static_cast<double>(best_w[c]) / static_cast<double>(stddev[c]);
    model.weight[c] = static_cast<float>(wc);
    bias -= wc * static_cast<double>(mean[c]);
  }
  model.bias = static_cast<float>(bias);

  if (report != nullptr) {
    report->epochs_run = epoch;
    report->best_epoch = best_epoch;
    report->train_rows = n;
    report->validation_rows = validation.rows();
    report->best_validation_loss = best_loss;
    report->train_loss = std::move(train_loss);
    report->validation_loss = std::move(validation_loss);
    report->feature_mean = std::move(mean);
    report->feature_std = std::move(stddev);
  }
  return model;
}

}  // namespace verdict::judge
