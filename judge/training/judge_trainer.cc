// SPDX-License-Identifier: Apache-2.0
#include "judge/training/judge_trainer.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"

namespace verdict::judge {
namespace {

constexpr JudgeFeature kAllFeatures[] = {JudgeFeature::kTargetLogprob, JudgeFeature::kTargetEntropy,
                                         JudgeFeature::kDraftLogprob};

std::string ValidFeatureNames() {
  std::vector<std::string> names = {"hidden"};
  for (JudgeFeature f : kAllFeatures) names.emplace_back(JudgeFeatureName(f));
  return absl::StrJoin(names, ", ");
}

// One split's rows, and where each candidate extra sits in the dataset's extras.
struct SplitView {
  const char* name;       // "training", "validation", "test"
  const char* flag_hint;  // what to change when the split is too small
  const std::vector<int64_t>* rows;
};

int64_t CountPositives(const JudgeDataset& data, const std::vector<int64_t>& rows) {
  int64_t positives = 0;
  for (int64_t r : rows) positives += data.labels[r] != 0;
  return positives;
}

int64_t CountGroups(const JudgeDataset& data, const std::vector<int64_t>& rows) {
  std::set<int32_t> groups;
  for (int64_t r : rows) groups.insert(data.groups[r]);
  return static_cast<int64_t>(groups.size());
}

// Both classes must be present in `split` (the trainer and the threshold need them).
absl::Status CheckBothClasses(const JudgeDataset& data, const SplitView& split) {
  const int64_t n = static_cast<int64_t>(split.rows->size());
  if (n == 0) {
    return absl::FailedPreconditionError(absl::StrCat("the ", split.name, " split is empty; ", split.flag_hint));
  }
  const int64_t positives = CountPositives(data, *split.rows);
  if (positives == 0 || positives == n) {
    return absl::FailedPreconditionError(absl::StrCat("the ", split.name, " split has no ",
                                                      positives == 0 ? "positive" : "negative",
                                                      " examples; ", split.flag_hint));
  }
  return absl::OkStatus();
}

// The design matrix of `rows` for one candidate: hidden columns first, then the extras.
LabeledFeatures Assemble(const JudgeDataset& data, const std::vector<int64_t>& rows, bool hidden,
                         const std::vector<int64_t>& extra_columns) {
  const int64_t h = data.spec.hidden_size;
  const int64_t e = static_cast<int64_t>(data.spec.extra_feature_names.size());
  LabeledFeatures out;
  out.num_features = (hidden ? h : 0) + static_cast<int64_t>(extra_columns.size());
  out.x.reserve(rows.size() * out.num_features);
  out.y.reserve(rows.size());
  for (int64_t r : rows) {
    if (hidden) out.x.insert(out.x.end(), data.hidden.begin() + r * h, data.hidden.begin() + (r + 1) * h);
    for (int64_t c : extra_columns) out.x.push_back(data.extras[r * e + c]);
    out.y.push_back(data.labels[r]);
  }
  return out;
}

// The head's probabilities on `rows`, exactly as the runtime computes them.
std::vector<float> ScoreRows(const JudgeHead& head, const JudgeDataset& data, const std::vector<int64_t>& rows,
                             const std::vector<int64_t>& extra_columns) {
  const int64_t h = data.spec.hidden_size;
  const int64_t e = static_cast<int64_t>(data.spec.extra_feature_names.size());
  std::vector<float> extras(extra_columns.size());
  std::vector<float> scores;
  scores.reserve(rows.size());
  for (int64_t r : rows) {
    for (size_t j = 0; j < extra_columns.size(); ++j) extras[j] = data.extras[r * e + extra_columns[j]];
    scores.push_back(head.Probability(absl::MakeConstSpan(data.hidden.data() + r * h, h), extras));
  }
  return scores;
}

std::vector<uint8_t> Labels(const JudgeDataset& data, const std::vector<int64_t>& rows) {
  std::vector<uint8_t> labels;
  labels.reserve(rows.size());
  for (int64_t r : rows) labels.push_back(data.labels[r]);
  return labels;
}

// NaN (a missing class) becomes null rather than an invalid JSON number.
nlohmann::json Number(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); }

nlohmann::json MetricsJson(const BinaryMetrics& m) {
  return {{"count", m.count},         {"positives", m.positives}, {"true_pos", m.true_pos},
          {"false_pos", m.false_pos}, {"true_neg", m.true_neg},   {"false_neg", m.false_neg},
          {"precision", m.precision}, {"recall", m.recall},       {"f1", m.f1},
          {"accuracy", m.accuracy},   {"false_accept_rate", m.false_accept_rate}};
}

// Candidate `a` beats `b`: higher validation recall at the calibrated threshold, then higher
// validation AUC (a NaN AUC never wins a tie).
bool Better(const CandidateReport& a, const CandidateReport& b) {
  if (a.validation.recall != b.validation.recall) return a.validation.recall > b.validation.recall;
  const double auc_a = std::isnan(a.validation_auc) ? -1 : a.validation_auc;
  const double auc_b = std::isnan(b.validation_auc) ? -1 : b.validation_auc;
  return auc_a > auc_b;
}

absl::Status ValidateInputs(const JudgeDataset& data, const JudgeTrainOptions& options) {
  if (options.candidates.empty()) return absl::InvalidArgumentError("no candidate feature sets");
  for (const FeatureSet& set : options.candidates) {
    if (!set.hidden && set.extras.empty()) return absl::InvalidArgumentError("an empty candidate feature set");
  }
  if (!(options.max_false_accept_rate >= 0 && options.max_false_accept_rate <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("the maximum false-accept rate must be in [0, 1], got ", options.max_false_accept_rate));
  }
  if (!(options.validation_fraction > 0)) {
    return absl::InvalidArgumentError(
        "the validation fraction must be above 0: the validation split calibrates the threshold");
  }
  const int64_t h = data.spec.hidden_size;
  const int64_t e = static_cast<int64_t>(data.spec.extra_feature_names.size());
  if (data.rows <= 0) return absl::InvalidArgumentError("the dataset has no rows");
  if (h <= 0 || static_cast<int64_t>(data.hidden.size()) != data.rows * h ||
      static_cast<int64_t>(data.extras.size()) != data.rows * e ||
      static_cast<int64_t>(data.labels.size()) != data.rows ||
      static_cast<int64_t>(data.groups.size()) != data.rows) {
    return absl::InvalidArgumentError("the dataset's arrays do not match its row count and spec");
  }
  return absl::OkStatus();
}

}  // namespace

std::string FeatureSet::Name() const {
  std::vector<std::string> parts;
  if (hidden) parts.emplace_back("hidden");
  for (JudgeFeature f : extras) parts.emplace_back(JudgeFeatureName(f));
  return absl::StrJoin(parts, "+");
}

absl::StatusOr<FeatureSet> ParseFeatureSet(absl::string_view text) {
  FeatureSet set;
  set.hidden = false;
  std::set<std::string> seen;
  for (absl::string_view part : absl::StrSplit(text, '+')) {
    const std::string name(absl::StripAsciiWhitespace(part));
    if (name.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("feature set \"", text, "\" has an empty feature name (valid: ",
                                                     ValidFeatureNames(), ")"));
    }
    if (!seen.insert(name).second) {
      return absl::InvalidArgumentError(absl::StrCat("feature set \"", text, "\" names \"", name, "\" twice"));
    }
    if (name == "hidden") {
      set.hidden = true;
      continue;
    }
    absl::StatusOr<JudgeFeature> feature = ParseJudgeFeature(name);
    if (!feature.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown judge feature \"", name, "\" (valid: ", ValidFeatureNames(), ")"));
    }
    set.extras.push_back(*feature);
  }
  return set;
}

std::vector<FeatureSet> AutoFeatureSets() {
  return {FeatureSet{true, {}},
          FeatureSet{true, {JudgeFeature::kTargetLogprob}},
          FeatureSet{true, {JudgeFeature::kTargetLogprob, JudgeFeature::kTargetEntropy, JudgeFeature::kDraftLogprob}}};
}

absl::StatusOr<std::vector<FeatureSet>> ParseFeatureSets(absl::string_view text) {
  if (absl::StripAsciiWhitespace(text) == "auto") return AutoFeatureSets();
  std::vector<FeatureSet> sets;
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    VERDICT_ASSIGN_OR_RETURN(FeatureSet set, ParseFeatureSet(part));
    sets.push_back(std::move(set));
  }
  return sets;
}

nlohmann::json JudgeTrainReport::ToJson() const {
  nlohmann::json candidate_json = nlohmann::json::array();
  for (const CandidateReport& c : candidates) {
    candidate_json.push_back({
        {"features", c.features.Name()},
        {"threshold", static_cast<double>(c.threshold)},
        {"validation_auc", Number(c.validation_auc)},
        {"test_auc", Number(c.test_auc)},
        {"validation", MetricsJson(c.validation)},
        {"test", MetricsJson(c.test)},
        {"training", {{"epochs_run", c.training.epochs_run},
                      {"best_epoch", c.training.best_epoch},
                      {"best_validation_loss", Number(c.training.best_validation_loss)}}},
    });
  }
  nlohmann::json candidate_names = nlohmann::json::array();
  for (const FeatureSet& set : options.candidates) candidate_names.push_back(set.Name());
  const TrainingOptions& t = options.training;
  nlohmann::json j = {
      {"data", {{"hidden_size", hidden_size},
                {"rows", {{"train", train_rows}, {"validation", validation_rows}, {"test", test_rows}}},
                {"positives", {{"train", train_positives}, {"validation", validation_positives}, {"test", test_positives}}},
                {"groups", {{"train", train_groups}, {"validation", validation_groups}, {"test", test_groups}}},
                {"info", dataset_info}}},
      {"options", {{"candidates", candidate_names},
                   {"max_false_accept_rate", options.max_false_accept_rate},
                   {"validation_fraction", options.validation_fraction},
                   {"test_fraction", options.test_fraction},
                   {"seed", options.seed},
                   {"training", {{"l2", t.l2},
                                 {"learning_rate", t.learning_rate},
                                 {"max_epochs", t.max_epochs},
                                 {"batch_size", t.batch_size},
                                 {"patience", t.patience},
                                 {"class_weighted", t.class_weighted},
                                 {"seed", t.seed}}}}},
      {"candidates", candidate_json},
      {"chosen", chosen},
  };
  if (chosen >= 0 && chosen < static_cast<int>(candidates.size())) {
    j["chosen_features"] = candidates[chosen].features.Name();
    j["threshold"] = static_cast<double>(candidates[chosen].threshold);
  }
  return j;
}

absl::StatusOr<JudgeHead> TrainJudgeHead(const JudgeDataset& data, const JudgeTrainOptions& options,
                                         JudgeTrainReport* report) {
  VERDICT_RETURN_IF_ERROR(ValidateInputs(data, options));
  // Every candidate's extras must exist before any training: a late failure would waste minutes.
  std::vector<std::vector<int64_t>> extra_columns;
  for (const FeatureSet& set : options.candidates) {
    std::vector<int64_t> columns;
    for (JudgeFeature f : set.extras) {
      const auto& names = data.spec.extra_feature_names;
      auto it = std::find(names.begin(), names.end(), JudgeFeatureName(f));
      if (it == names.end()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "the dataset has no feature \"", JudgeFeatureName(f), "\" (it has: hidden",
            names.empty() ? "" : ", ", absl::StrJoin(names, ", "), ")"));
      }
      columns.push_back(it - names.begin());
    }
    extra_columns.push_back(std::move(columns));
  }
  std::string fingerprint;
  if (auto it = data.spec.info.find("target_fingerprint");
      it != data.spec.info.end() && it->is_string() && !it->get<std::string>().empty()) {
    fingerprint = it->get<std::string>();
  } else {
    return absl::FailedPreconditionError("dataset has no target fingerprint (info.target_fingerprint)");
  }

  VERDICT_ASSIGN_OR_RETURN(DatasetSplit split, SplitByGroup(data, options.validation_fraction,
                                                            options.test_fraction, options.seed));
  const SplitView train{"training", "use more data or smaller --val-fraction / --test-fraction", &split.train};
  const SplitView validation{"validation", "use more data or a larger --val-fraction", &split.validation};
  VERDICT_RETURN_IF_ERROR(CheckBothClasses(data, train));
  VERDICT_RETURN_IF_ERROR(CheckBothClasses(data, validation));
  if (options.test_fraction > 0 && split.test.empty()) {
    return absl::FailedPreconditionError(
        "the test split is empty; use more data or a larger --test-fraction (or --test-fraction 0 to skip it)");
  }

  JudgeTrainReport result;
  result.hidden_size = data.spec.hidden_size;
  result.train_rows = static_cast<int64_t>(split.train.size());
  result.validation_rows = static_cast<int64_t>(split.validation.size());
  result.test_rows = static_cast<int64_t>(split.test.size());
  result.train_positives = CountPositives(data, split.train);
  result.validation_positives = CountPositives(data, split.validation);
  result.test_positives = CountPositives(data, split.test);
  result.train_groups = CountGroups(data, split.train);
  result.validation_groups = CountGroups(data, split.validation);
  result.test_groups = CountGroups(data, split.test);
  result.options = options;
  result.dataset_info = data.spec.info;

  const std::vector<uint8_t> validation_labels = Labels(data, split.validation);
  const std::vector<uint8_t> test_labels = Labels(data, split.test);
  std::vector<JudgeHead> heads;
  for (size_t c = 0; c < options.candidates.size(); ++c) {
    const FeatureSet& set = options.candidates[c];
    CandidateReport candidate;
    candidate.features = set;
    LogisticModel model;
    {
      // Scoped so that only one candidate's design matrices are alive at a time.
      const LabeledFeatures train_x = Assemble(data, split.train, set.hidden, extra_columns[c]);
      const LabeledFeatures validation_x = Assemble(data, split.validation, set.hidden, extra_columns[c]);
      absl::StatusOr<LogisticModel> trained =
          TrainLogisticRegression(train_x, validation_x, options.training, &candidate.training);
      if (!trained.ok()) {
        return absl::Status(trained.status().code(), absl::StrCat("training the judge head on features ",
                                                                  set.Name(), ": ", trained.status().message()));
      }
      model = *std::move(trained);
    }
    JudgeHead head;
    const int64_t h = data.spec.hidden_size;
    head.weight.assign(h, 0.0f);
    const int64_t offset = set.hidden ? h : 0;
    if (set.hidden) std::copy(model.weight.begin(), model.weight.begin() + h, head.weight.begin());
    head.extra_features = set.extras;
    head.extra_weight.assign(model.weight.begin() + offset, model.weight.end());
    head.bias = model.bias;
    head.target_fingerprint = fingerprint;

    const std::vector<float> validation_scores = ScoreRows(head, data, split.validation, extra_columns[c]);
    VERDICT_ASSIGN_OR_RETURN(candidate.threshold,
                             ThresholdForFalseAcceptRate(validation_scores, validation_labels,
                                                         options.max_false_accept_rate));
    head.threshold = candidate.threshold;
    candidate.validation = ComputeBinaryMetrics(validation_scores, validation_labels, candidate.threshold);
    candidate.validation_auc = RocAuc(validation_scores, validation_labels);
    const std::vector<float> test_scores = ScoreRows(head, data, split.test, extra_columns[c]);
    candidate.test = ComputeBinaryMetrics(test_scores, test_labels, candidate.threshold);
    candidate.test_auc = test_scores.empty() ? std::numeric_limits<double>::quiet_NaN()
                                             : RocAuc(test_scores, test_labels);
    result.candidates.push_back(std::move(candidate));
    heads.push_back(std::move(head));
  }
  result.chosen = 0;
  for (size_t c = 1; c < result.candidates.size(); ++c) {
    if (Better(result.candidates[c], result.candidates[result.chosen])) result.chosen = static_cast<int>(c);
  }
  JudgeHead head = std::move(heads[result.chosen]);
  head.training_json = result.ToJson().dump();
  if (report != nullptr) *report = std::move(result);
  return head;
}

}  // namespace verdict::judge
