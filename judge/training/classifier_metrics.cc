// SPDX-License-Identifier: Apache-2.0
#include "judge/training/classifier_metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <numeric>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "common/check.h"

namespace verdict::judge {
namespace {

double SafeDiv(double num, double den) { return den == 0 ? 0.0 : num / den; }

absl::Status ValidateScoresAndLabels(absl::Span<const float> scores,
                                     absl::Span<const uint8_t> labels) {
  if (scores.size() != labels.size()) {
    return absl::InvalidArgumentError(absl::StrCat("scores and labels differ in size: ",
                                                   scores.size(), " vs ", labels.size()));
  }
  for (size_t i = 0; i < scores.size(); ++i) {
    if (labels[i] > 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("label ", static_cast<int>(labels[i]), " at row ", i, " is not 0 or 1"));
    }
    if (std::isnan(scores[i])) {
      return absl::InvalidArgumentError(absl::StrCat("score at row ", i, " is NaN"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

BinaryMetrics ComputeBinaryMetrics(absl::Span<const float> scores,
                                   absl::Span<const uint8_t> labels, float threshold) {
  VERDICT_CHECK_MSG(scores.size() == labels.size(), "scores and labels differ in size");
  BinaryMetrics m;
  m.count = static_cast<int64_t>(scores.size());
  for (size_t i = 0; i < scores.size(); ++i) {
    const bool positive = labels[i] != 0;
    const bool predicted = scores[i] > threshold;  // false for NaN
    if (positive) {
      ++m.positives;
      if (predicted) {
        ++m.true_pos;
      } else {
        ++m.false_neg;
      }
    } else {
      ++m.negatives;
      if (predicted) {
        ++m.false_pos;
      } else {
        ++m.true_neg;
      }
    }
  }
  m.precision = SafeDiv(m.true_pos, m.true_pos + m.false_pos);
  m.recall = SafeDiv(m.true_pos, m.true_pos + m.false_neg);
  m.f1 = SafeDiv(2 * m.precision * m.recall, m.precision + m.recall);
  m.accuracy = SafeDiv(m.true_pos + m.true_neg, m.count);
  m.false_accept_rate = SafeDiv(m.false_pos, m.false_pos + m.true_neg);
  return m;
}

double RocAuc(absl::Span<const float> scores, absl::Span<const uint8_t> labels) {
  VERDICT_CHECK_MSG(scores.size() == labels.size(), "scores and labels differ in size");
  const size_t n = scores.size();
  int64_t num_pos = 0;
  for (uint8_t y : labels) num_pos += y != 0 ? 1 : 0;
  const int64_t num_neg = static_cast<int64_t>(n) - num_pos;
  if (num_pos == 0 || num_neg == 0) return std::numeric_limits<double>::quiet_NaN();

  std::vector<uint32_t> order(n);
  std::iota(order.begin(), order.end(), 0u);
  std::sort(order.begin(), order.end(),
            [&](uint32_t a, uint32_t b) { return scores[a] < scores[b]; });
  // Sum of the (1-based, tie-averaged) ranks of the positives.
  double positive_rank_sum = 0;
  size_t i = 0;
  while (i < n) {
    size_t j = i + 1;
    while (j < n && scores[order[j]] == scores[order[i]]) ++j;
    // Rows order[i..j) share one score; their ranks i+1..j average to (i+1+j)/2.
    const double average_rank = 0.5 * static_cast<double>(i + 1 + j);
    int64_t group_pos = 0;
    for (size_t k = i; k < j; ++k) group_pos += labels[order[k]] != 0 ? 1 : 0;
    positive_rank_sum += average_rank * static_cast<double>(group_pos);
    i = j;
  }
  const double np = static_cast<double>(num_pos);
  const double u = positive_rank_sum - np * (np + 1) / 2;
  return u / (np * static_cast<double>(num_neg));
}

absl::StatusOr<float> ThresholdForFalseAcceptRate(absl::Span<const float> scores,
                                                  absl::Span<const uint8_t> labels,
                                                  double max_false_accept_rate) {
  if (!(max_false_accept_rate >= 0.0 && max_false_accept_rate <= 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat("max_false_accept_rate must be in [0, 1], got ",
                                                   max_false_accept_rate));
  }
  if (absl::Status s = ValidateScoresAndLabels(scores, labels); !s.ok()) return s;
  std::vector<float> negative_scores;
  for (size_t i = 0; i < scores.size(); ++i) {
    if (labels[i] == 0) negative_scores.push_back(scores[i]);
  }
  if (negative_scores.empty()) {
    return absl::FailedPreconditionError("no negative examples to calibrate on");
  }
  const int64_t num_neg = static_cast<int64_t>(negative_scores.size());
  const double den = static_cast<double>(num_neg);
  // The largest number of accepted negatives k with k / num_neg <= target, evaluated exactly
  // the way a caller checking the result would (one double division).
  int64_t max_accepted = static_cast<int64_t>(std::floor(max_false_accept_rate * den));
  max_accepted = std::clamp<int64_t>(max_accepted, 0, num_neg);
  while (max_accepted > 0 && static_cast<double>(max_accepted) / den > max_false_accept_rate) {
    --max_accepted;
  }
  while (max_accepted < num_neg &&
         static_cast<double>(max_accepted + 1) / den <= max_false_accept_rate) {
    ++max_accepted;
  }
  if (max_accepted == num_neg) {
    // Every negative may be accepted: the most permissive candidate is the smallest score.
    return *std::min_element(scores.begin(), scores.end());
  }
  // With negatives sorted descending s_0 >= s_1 >= ..., #{neg > t} <= k iff t >= s_k, and s_k
  // is itself a candidate, so it is the smallest admissible one.
  std::nth_element(negative_scores.begin(), negative_scores.begin() + max_accepted,
                   negative_scores.end(), std::greater<float>());
  return negative_scores[max_accepted];
}

double LogLoss(absl::Span<const float> probabilities, absl::Span<const uint8_t> labels) {
  VERDICT_CHECK_MSG(probabilities.size() == labels.size(),
                    "probabilities and labels differ in size");
  if (probabilities.empty()) return std::numeric_limits<double>::quiet_NaN();
  double total = 0;
  for (size_t i = 0; i < probabilities.size(); ++i) {
    const double p =
        std::clamp(static_cast<double>(probabilities[i]), kLogLossEpsilon, 1.0 - kLogLossEpsilon);
    total -= labels[i] != 0 ? std::log(p) : std::log1p(-p);
  }
  return total / static_cast<double>(probabilities.size());
}

}  // namespace verdict::judge
