// SPDX-License-Identifier: Apache-2.0
// Metrics for the judge head's binary classifier: confusion counts and the rates derived from
// them, ROC AUC, log loss, and calibration of the acceptance threshold to a target false-accept
// rate. The decision rule everywhere is the runtime's: accept (predict positive) iff
// score > threshold, strictly. Labels are 0 (negative: reject) or 1 (positive: accept).
// Pure functions over caller-owned spans; thread-safe.
#ifndef VERDICT_JUDGE_TRAINING_CLASSIFIER_METRICS_H_
#define VERDICT_JUDGE_TRAINING_CLASSIFIER_METRICS_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace verdict::judge {

// Confusion counts at one threshold and the rates derived from them. A rate whose denominator
// is zero is 0 (scikit-learn's zero_division=0): precision with no predicted positives, recall
// with no positives, f1 when precision + recall == 0, accuracy with no rows, and
// false_accept_rate with no negatives.
struct BinaryMetrics {
  int64_t count = 0;
  int64_t positives = 0;
  int64_t negatives = 0;
  int64_t true_pos = 0;
  int64_t false_pos = 0;
  int64_t true_neg = 0;
  int64_t false_neg = 0;
  double precision = 0;          // TP / (TP + FP)
  double recall = 0;             // TP / (TP + FN)
  double f1 = 0;                 // 2PR / (P + R)
  double accuracy = 0;           // (TP + TN) / count
  double false_accept_rate = 0;  // FP / (FP + TN)
};

// Confusion counts of the rule "predict positive iff scores[i] > threshold".
// REQUIRES: scores.size() == labels.size() (checked: aborts otherwise); labels are 0 or 1
// (any non-zero label counts as positive). A NaN score is never predicted positive.
BinaryMetrics ComputeBinaryMetrics(absl::Span<const float> scores,
                                   absl::Span<const uint8_t> labels, float threshold);

// Area under the ROC curve, computed exactly as the Mann-Whitney U statistic with tied scores
// given their average rank (a tied positive/negative pair counts 1/2). O(n log n).
// Returns NaN when there are no positives or no negatives.
// REQUIRES: scores.size() == labels.size() (checked); no NaN scores; labels 0 or 1 (non-zero
// counts as positive).
double RocAuc(absl::Span<const float> scores, absl::Span<const uint8_t> labels);

// The most permissive acceptance threshold meeting a false-accept-rate target: the smallest t
// among the candidate values {scores[i]} such that, with "accept iff score > t",
// FP / (FP + TN) <= max_false_accept_rate. With the strict rule the largest negative score is
// always a candidate with FAR 0, so a solution exists whenever there is a negative example.
// With max_false_accept_rate == 1 the result is the smallest score.
// Errors (nothing is computed): InvalidArgument if max_false_accept_rate is outside [0, 1] or
// NaN, if the sizes differ, if a label is not 0/1 or a score is NaN; FailedPrecondition if
// there are no negative examples.
absl::StatusOr<float> ThresholdForFalseAcceptRate(absl::Span<const float> scores,
                                                  absl::Span<const uint8_t> labels,
                                                  double max_false_accept_rate);

// Mean binary cross-entropy -[y log p + (1-y) log(1-p)] with p clamped to
// [kLogLossEpsilon, 1 - kLogLossEpsilon] (in double) so that a confident mistake costs a large
// finite amount. Returns NaN for empty input.
// REQUIRES: probabilities.size() == labels.size() (checked); labels 0 or 1.
inline constexpr double kLogLossEpsilon = 1e-15;
double LogLoss(absl::Span<const float> probabilities, absl::Span<const uint8_t> labels);

}  // namespace verdict::judge

#endif  // VERDICT_JUDGE_TRAINING_CLASSIFIER_METRICS_H_
