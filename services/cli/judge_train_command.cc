// SPDX-License-Identifier: Apache-2.0
// verdict judge train: fit the judge head on a judge dataset (`verdict judge data`), calibrate its
// threshold to a false-accept rate on validation, report validation/test metrics per candidate
// feature set and save the chosen head (judge/training/judge_trainer.h).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"
#include "judge/dataset/judge_dataset.h"
#include "judge/judge_head.h"
#include "judge/training/judge_trainer.h"
#include "nlohmann/json.hpp"
#include "services/cli/cli_util.h"
#include "services/cli/commands.h"

namespace verdict::cli {
namespace {

struct JudgeTrainFlags {
  std::string data;
  std::string out;
  std::string features = "auto";
  double max_far = 0.05;
  double val_fraction = 0.15;
  double test_fraction = 0.15;
  double l2 = 1e-3;
  double lr = 0.05;
  int64_t epochs = 300;
  int64_t batch = 1024;
  uint64_t seed = 0;
  bool json = false;
};

std::string Rate(int64_t part, int64_t whole) {
  return whole > 0 ? absl::StrFormat("%.3f", static_cast<double>(part) / whole) : "-";
}

std::string Auc(double auc) { return std::isnan(auc) ? "-" : absl::StrFormat("%.4f", auc); }

void PrintTable(const std::string& data_dir, const judge::JudgeTrainReport& r) {
  std::printf("judge dataset %s: hidden size %lld, %lld rows\n", data_dir.c_str(),
              static_cast<long long>(r.hidden_size),
              static_cast<long long>(r.train_rows + r.validation_rows + r.test_rows));
  std::printf("  %-10s %10s %8s %14s\n", "split", "rows", "prompts", "positive rate");
  const struct {
    const char* name;
    int64_t rows, groups, positives;
  } splits[] = {{"train", r.train_rows, r.train_groups, r.train_positives},
                {"validation", r.validation_rows, r.validation_groups, r.validation_positives},
                {"test", r.test_rows, r.test_groups, r.test_positives}};
  for (const auto& s : splits) {
    std::printf("  %-10s %10lld %8lld %14s\n", s.name, static_cast<long long>(s.rows),
                static_cast<long long>(s.groups), Rate(s.positives, s.rows).c_str());
  }
  std::printf("\ncandidates (threshold: false-accept rate <= %.3f on validation; metrics on test)\n",
              r.options.max_false_accept_rate);
  size_t width = 8;
  for (const judge::CandidateReport& c : r.candidates) width = std::max(width, c.features.Name().size());
  const int w = static_cast<int>(width);
  std::printf("    %-*s %8s %8s %10s %9s %7s %7s %7s %9s\n", w, "features", "val AUC", "test AUC", "threshold",
              "precision", "recall", "F1", "FAR", "val recall");
  for (size_t i = 0; i < r.candidates.size(); ++i) {
    const judge::CandidateReport& c = r.candidates[i];
    const bool has_test = c.test.count > 0;
    auto metric = [has_test](double v) { return has_test ? absl::StrFormat("%.3f", v) : std::string("-"); };
    std::printf("  %c %-*s %8s %8s %10.6f %9s %7s %7s %7s %9.3f\n",
                static_cast<int>(i) == r.chosen ? '*' : ' ', w, c.features.Name().c_str(),
                Auc(c.validation_auc).c_str(), Auc(c.test_auc).c_str(), c.threshold,
                metric(c.test.precision).c_str(), metric(c.test.recall).c_str(), metric(c.test.f1).c_str(),
                metric(c.test.false_accept_rate).c_str(), c.validation.recall);
  }
  std::printf("  (* = chosen: highest validation recall at the false-accept target, ties by AUC)\n\n");
}

absl::Status RunJudgeTrain(const JudgeTrainFlags& flags) {
  judge::JudgeTrainOptions options;
  VERDICT_ASSIGN_OR_RETURN(options.candidates, judge::ParseFeatureSets(flags.features));
  options.max_false_accept_rate = flags.max_far;
  options.validation_fraction = flags.val_fraction;
  options.test_fraction = flags.test_fraction;
  options.seed = flags.seed;
  options.training.l2 = flags.l2;
  options.training.learning_rate = flags.lr;
  options.training.max_epochs = flags.epochs;
  options.training.batch_size = flags.batch;
  options.training.seed = flags.seed;
  const std::vector<std::string> dirs = absl::StrSplit(flags.data, ',', absl::SkipEmpty());
  VERDICT_ASSIGN_OR_RETURN(judge::JudgeDataset data, judge::LoadJudgeDatasets(dirs));
  judge::JudgeTrainReport report;
  VERDICT_ASSIGN_OR_RETURN(judge::JudgeHead head, judge::TrainJudgeHead(data, options, &report));
  VERDICT_RETURN_IF_ERROR(judge::SaveJudgeHead(head, flags.out));
  const judge::CandidateReport& chosen = report.candidates[report.chosen];
  if (flags.json) {
    nlohmann::json j = report.ToJson();
    j["head"] = flags.out;
    std::printf("%s\n", j.dump(2).c_str());
    return absl::OkStatus();
  }
  PrintTable(flags.data, report);
  std::printf("saved judge head to %s (features %s, threshold %.6f)\n", flags.out.c_str(),
              chosen.features.Name().c_str(), chosen.threshold);
  return absl::OkStatus();
}

}  // namespace

void AddJudgeTrainCommand(CLI::App& judge, int* exit_code) {
  auto flags = std::make_shared<JudgeTrainFlags>();
  CLI::App* cmd = judge.add_subcommand(
      "train", "Train the judge head on a judge dataset and calibrate its threshold to a false-accept rate");
  cmd->add_option("--data", flags->data, "Judge dataset directory (from `verdict judge data`); several, comma-separated, are trained on together")->required();
  cmd->add_option("--out", flags->out, "Judge head file to write (.safetensors)")->required();
  cmd->add_option("--features", flags->features,
                  "auto, or candidate feature sets SET[,SET...], each '+'-joined from hidden, target_logprob, "
                  "target_entropy, draft_logprob; the best on validation is kept")
      ->capture_default_str();
  cmd->add_option("--max-far", flags->max_far, "Largest false-accept rate on validation (sets the threshold)")
      ->capture_default_str()->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--val-fraction", flags->val_fraction, "Fraction of prompts for validation")
      ->capture_default_str()->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--test-fraction", flags->test_fraction, "Fraction of prompts for test (0 = none)")
      ->capture_default_str()->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--l2", flags->l2, "L2 penalty on the standardized weights")->capture_default_str();
  cmd->add_option("--lr", flags->lr, "Adam learning rate")->capture_default_str();
  cmd->add_option("--epochs", flags->epochs, "Maximum epochs (early stopping on validation loss)")
      ->capture_default_str();
  cmd->add_option("--batch", flags->batch, "Minibatch rows (0 = full batch)")->capture_default_str();
  cmd->add_option("--seed", flags->seed, "Seed of the split and the shuffles")->capture_default_str();
  cmd->add_flag("--json", flags->json, "Print the training report as JSON instead of the table");
  cmd->callback([flags, exit_code] { *exit_code = ExitCode(RunJudgeTrain(*flags)); });
}

}  // namespace verdict::cli
