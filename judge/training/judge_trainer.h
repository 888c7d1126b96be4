// SPDX-License-Identifier: Apache-2.0
// Trains a judge head from a judge dataset (`verdict judge data`): splits the rows by prompt
// into train / validation / test, fits one class-weighted logistic regression per candidate
// feature set (the hidden state and/or the scalar extras), calibrates each candidate's
// acceptance threshold on validation to a target false-accept rate, keeps the candidate with the
// best validation recall at that rate, and reports every candidate's metrics on validation and
// on the untouched test split. The returned JudgeHead is ready for SaveJudgeHead.
// Thresholds and metrics are computed with JudgeHead::Probability itself, so they describe
// exactly what the runtime will do. Deterministic for given options; reentrant; single-threaded.
#ifndef VERDICT_JUDGE_TRAINING_JUDGE_TRAINER_H_
#define VERDICT_JUDGE_TRAINING_JUDGE_TRAINER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "judge/dataset/judge_dataset.h"
#include "judge/judge_head.h"
#include "judge/training/classifier_metrics.h"
#include "judge/training/logistic_regression.h"
#include "nlohmann/json.hpp"

namespace verdict::judge {

// The inputs of one candidate head: the hidden state (all hidden_size columns) and/or named
// scalar extras, in this order.
struct FeatureSet {
  bool hidden = true;
  std::vector<JudgeFeature> extras;

  // "hidden", "hidden+target_logprob", "target_logprob+draft_logprob", ... (ParseFeatureSet's
  // syntax; the empty set gives "").
  std::string Name() const;
};

// "hidden+target_logprob" etc.: '+'-separated names among "hidden" and the JudgeFeature names,
// each at most once; the extras keep the order given.
// Errors: InvalidArgument for an empty set, an unknown name (the message lists the valid ones)
// or a repeated name.
absl::StatusOr<FeatureSet> ParseFeatureSet(absl::string_view text);

// The candidates of `--features auto`: hidden; hidden+target_logprob;
// hidden+target_logprob+target_entropy+draft_logprob.
std::vector<FeatureSet> AutoFeatureSets();

// "auto" -> AutoFeatureSets(); otherwise a ','-separated list of ParseFeatureSet strings.
// Errors: InvalidArgument as ParseFeatureSet, or for an empty list.
absl::StatusOr<std::vector<FeatureSet>> ParseFeatureSets(absl::string_view text);

struct JudgeTrainOptions {
  // At least one. With several, the one with the highest validation recall at its calibrated
  // threshold is kept (ties: the higher validation AUC, then the earlier candidate).
  std::vector<FeatureSet> candidates = {FeatureSet{}};
  // The threshold is the most permissive one whose validation false-accept rate is at most this.
  double max_false_accept_rate = 0.05;
  // Fractions of the prompts (groups), not rows; see SplitByGroup. test_fraction may be 0 (no
  // test metrics); validation_fraction may not (it calibrates the threshold).
  double validation_fraction = 0.15;
  double test_fraction = 0.15;
  uint64_t seed = 0;  // the split's seed (the trainer's shuffles use training.seed)
  TrainingOptions training;
};

struct CandidateReport {
  FeatureSet features;
  TrainingReport training;
  double validation_auc = 0;  // NaN when the split lacks a class
  double test_auc = 0;        // NaN when the test split is empty or lacks a class
  float threshold = 0;        // calibrated on validation
  BinaryMetrics validation;   // at `threshold`
  BinaryMetrics test;         // at `threshold` (all zero without a test split)
};

struct JudgeTrainReport {
  int64_t hidden_size = 0;
  int64_t train_rows = 0, validation_rows = 0, test_rows = 0;
  int64_t train_positives = 0, validation_positives = 0, test_positives = 0;
  int64_t train_groups = 0, validation_groups = 0, test_groups = 0;
  std::vector<CandidateReport> candidates;  // in the order of options.candidates
  int chosen = -1;                          // index into candidates
  JudgeTrainOptions options;
  nlohmann::json dataset_info = nlohmann::json::object();  // the dataset's spec.info

  // {"data": {split sizes, positives, groups, hidden_size, info}, "options": {...},
  //  "candidates": [{features, threshold, validation/test auc and metrics, training}...],
  //  "chosen": i, "chosen_features": "...", "threshold": t}. NaN values become null.
  nlohmann::json ToJson() const;
};

// Trains the judge head on `data` (see the file comment). The head's weight has
// data.spec.hidden_size entries (zeros when the chosen set has no hidden state), its extras are
// the chosen set's in order, its threshold the calibrated one, its target_fingerprint
// data.spec.info["target_fingerprint"], and its training_json the report's JSON.
// `report`, if not null, is overwritten on success and left untouched on error.
// Errors (nothing is returned): InvalidArgument for bad options (no candidates, fractions out of
// range, validation_fraction == 0, max_false_accept_rate outside [0, 1], or the trainer's
// options), an empty dataset or inconsistent array sizes, or a candidate feature the dataset
// does not have (named); FailedPrecondition when the dataset has no target fingerprint, or a
// split is empty or lacks a class the step needs (train: both; validation: both; the message
// says which split and which flag to change).
absl::StatusOr<JudgeHead> TrainJudgeHead(const JudgeDataset& data, const JudgeTrainOptions& options,
                                         JudgeTrainReport* report);

}  // namespace verdict::judge

#endif  // VERDICT_JUDGE_TRAINING_JUDGE_TRAINER_H_
