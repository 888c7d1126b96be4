// SPDX-License-Identifier: Apache-2.0
#include "judge/eval/policy_eval.h"

#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/testing/status_matchers.h"
#include "engine/backend.h"
#include "engine/generator.h"
#include "engine/model_loader.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "judge/tasks/task_file.h"

namespace verdict::judge {
namespace {

// One fixed draft window of k tokens (ParseEvalPolicies takes a list).
std::vector<spec::DraftWindowOptions> OneWindow(int64_t k) {
  spec::DraftWindowOptions window;
  window.k = k;
  return {window};
}

using ::testing::HasSubstr;
using ::testing::Not;
using ::verdict::testing::StatusIs;

constexpr int64_t kMaxNewTokens = 32;

const char* const kPrompts[] = {
    "Once upon a time there was a little cat named Tom.",
    "Lily went to the park with her mom.",
    "Once upon a time, there was a little girl named Lily.",
    "One day, Ben found a shiny rock.",
};

// The demo target and draft, loaded once: every test reads them, none changes them.
class PolicyEvalTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    backend_ = engine::CreateCpuBackend({.num_threads = 1}).release();
    target_ = Open("tiny-stories", &target_loaded_).release();
    draft_ = Open("tiny-stories-draft", &draft_loaded_).release();
  }

  static std::unique_ptr<engine::ModelSlice> Open(const std::string& name,
                                                  engine::LoadedModel** loaded) {
    absl::StatusOr<engine::LoadedModel> model =
        engine::LoadModel(absl::StrCat(VERDICT_SOURCE_DIR, "/assets/models/", name));
    if (!model.ok()) {
      ADD_FAILURE() << model.status();
      return nullptr;
    }
    *loaded = new engine::LoadedModel(*std::move(model));
    absl::StatusOr<std::unique_ptr<engine::ModelSlice>> slice =
        engine::ModelSlice::Create((*loaded)->config, *(*loaded)->weights, {}, backend_);
    if (!slice.ok()) {
      ADD_FAILURE() << slice.status();
      return nullptr;
    }
    return *std::move(slice);
  }

  void SetUp() override {
    ASSERT_NE(target_, nullptr);
    ASSERT_NE(draft_, nullptr);
    ASSERT_NE(target_loaded_->tokenizer, nullptr);
    options_.max_new_tokens = kMaxNewTokens;
    options_.stop_token_ids = engine::StopTokenIds(*target_loaded_);
    options_.check = CheckMode::kReference;
  }

  const engine::Tokenizer& tokenizer() const { return *target_loaded_->tokenizer; }

  // A task file whose reference answer for each prompt is the target's own greedy continuation,
  // read back with ReadTaskFile (so the test also covers the file format users write).
  std::vector<TaskExample> GreedyContinuationTasks() {
    std::string contents;
    for (const char* prompt : kPrompts) {
      absl::StatusOr<std::vector<int32_t>> ids = tokenizer().Encode(prompt, {true, false});
      EXPECT_OK(ids);
      engine::GenerateOptions generate;
      generate.max_new_tokens = kMaxNewTokens;
      generate.stop_token_ids = options_.stop_token_ids;
      absl::StatusOr<engine::GenerateResult> out = engine::Generate(*target_, *ids, generate);
      EXPECT_OK(out);
      absl::StatusOr<std::string> answer =
          DecodeContinuation(tokenizer(), *ids, out->tokens, options_.stop_token_ids);
      EXPECT_OK(answer);
      EXPECT_FALSE(answer->empty());
      absl::StrAppend(&contents, nlohmann::json({{"prompt", prompt}, {"answer", *answer}}).dump(),
                      "\n");
    }
    const char* dir = std::getenv("TEST_TMPDIR");
    const std::string path =
        absl::StrCat(dir != nullptr ? dir : ::testing::TempDir(), "/policy_eval_tasks.jsonl");
    std::ofstream(path, std::ios::binary | std::ios::trunc) << contents;
    absl::StatusOr<TaskFile> file = ReadTaskFile(path);
    EXPECT_OK(file);
    return file.ok() ? file->examples : std::vector<TaskExample>{};
  }

  static spec::DraftWindowOptions Window(int64_t k) {
    spec::DraftWindowOptions window;
    window.k = k;
    return window;
  }

  static engine::Backend* backend_;
  static engine::LoadedModel* target_loaded_;
  static engine::LoadedModel* draft_loaded_;
  static engine::ModelSlice* target_;
  static engine::ModelSlice* draft_;
  EvalOptions options_;
};

engine::Backend* PolicyEvalTest::backend_ = nullptr;
engine::LoadedModel* PolicyEvalTest::target_loaded_ = nullptr;
engine::LoadedModel* PolicyEvalTest::draft_loaded_ = nullptr;
engine::ModelSlice* PolicyEvalTest::target_ = nullptr;
engine::ModelSlice* PolicyEvalTest::draft_ = nullptr;

TEST_F(PolicyEvalTest, LosslessPoliciesReproduceTheTarget) {
  const std::vector<TaskExample> examples = GreedyContinuationTasks();
  ASSERT_EQ(examples.size(), std::size(kPrompts));
  ASSERT_OK_AND_ASSIGN(std::vector<EvalPolicy> policies,
                       ParseEvalPolicies("target,standard", {}, OneWindow(8), 0.5f, 0.3f));
  ASSERT_EQ(policies.size(), 2u);
  EXPECT_EQ(policies[1].name, "greedy");  // "standard" with greedy sampling

  int64_t progress_calls = 0;
  options_.progress = [&](const std::string&, int64_t done, int64_t total) {
    ++progress_calls;
    EXPECT_LE(done, total);
  };
  ASSERT_OK_AND_ASSIGN(std::vector<PolicyResult> results,
                       EvaluatePolicies(*target_, draft_, tokenizer(), examples, policies, options_));
  ASSERT_EQ(results.size(), 2u);
  EXPECT_EQ(progress_calls, 2 * static_cast<int64_t>(examples.size()));
  const PolicyResult& target = results[0];
  const PolicyResult& greedy = results[1];
  for (const PolicyResult& r : results) {
    SCOPED_TRACE(r.name);
    EXPECT_TRUE(r.lossless);
    EXPECT_EQ(r.examples, static_cast<int64_t>(examples.size()));
    EXPECT_EQ(r.correct, r.examples);
    EXPECT_DOUBLE_EQ(r.accuracy, 1.0);
    EXPECT_EQ(r.outputs.size(), examples.size());
    EXPECT_GT(r.stats.tokens, 0);
  }
  EXPECT_EQ(target.outputs, greedy.outputs);
  EXPECT_EQ(target.stats.tokens, greedy.stats.tokens);
  EXPECT_DOUBLE_EQ(target.tokens_per_pass, 1.0);
  EXPECT_EQ(target.stats.target_passes, target.stats.tokens);
  EXPECT_GT(greedy.tokens_per_pass, 1.0);
  EXPECT_LT(greedy.stats.target_passes, target.stats.target_passes);
  EXPECT_GT(greedy.stats.accepted_exact, 0);
  EXPECT_EQ(greedy.stats.accepted_judge + greedy.stats.accepted_lossy, 0);
  int64_t passes = 0;
  for (int64_t n : greedy.stats.accepted_histogram) passes += n;
  EXPECT_EQ(passes, greedy.stats.target_passes);

  const std::string table = FormatEvalTable(results);
  EXPECT_THAT(table, HasSubstr("tok/target pass"));
  EXPECT_THAT(table, HasSubstr("speedup"));
  EXPECT_THAT(table, HasSubstr("100.0% (4/4)"));
  const nlohmann::json json = EvalResultsToJson(results);
  ASSERT_EQ(json["policies"].size(), 2u);
  EXPECT_EQ(json["policies"][1]["name"], "greedy");
  EXPECT_EQ(json["policies"][1]["correct"], 4);
  EXPECT_TRUE(json["policies"][0].contains("speedup_vs_target"));
}

TEST_F(PolicyEvalTest, OracleDraftAndBaselineRows) {
  // References are the target's greedy answers. The oracle accepts exactly the draft tokens that
  // keep the answer a prefix of them, so it loses nothing and lets no wrong token through, while
  // accepting at least as much as the exact rule; accepting every mismatch does let wrong ones in.
  const std::vector<TaskExample> examples = GreedyContinuationTasks();
  std::vector<spec::DraftWindowOptions> windows = OneWindow(4);
  windows.push_back(OneWindow(8)[0]);
  ASSERT_OK_AND_ASSIGN(std::vector<EvalPolicy> policies,
                       ParseEvalPolicies("draft,greedy,oracle,lossy-prob@0,nondigit,lossy-kl@100", {},
                                         windows, 0.5f, 0.3f));
  ASSERT_EQ(policies.size(), 11u);  // draft + 5 speculative policies x 2 windows
  EXPECT_TRUE(policies[0].draft_only);
  EXPECT_EQ(policies[5].name, "lossy-prob@0");
  EXPECT_FLOAT_EQ(policies[5].threshold, 0.0f);
  EXPECT_EQ(policies[5].window.k, 4);
  EXPECT_EQ(policies[6].window.k, 8);
  ASSERT_OK_AND_ASSIGN(std::vector<PolicyResult> results,
                       EvaluatePolicies(*target_, draft_, tokenizer(), examples, policies, options_));
  const PolicyResult& draft = results[0];
  EXPECT_EQ(draft.stats.target_passes, 0);
  EXPECT_EQ(draft.k, 0);
  for (int i : {1, 2}) {
    const PolicyResult& greedy = results[i];
    const PolicyResult& oracle = results[i + 2];
    SCOPED_TRACE(oracle.name + " k=" + std::to_string(oracle.k));
    EXPECT_EQ(oracle.correct, oracle.examples);
    EXPECT_EQ(oracle.wrong_accepted, 0);
    EXPECT_FALSE(oracle.lossless);
    EXPECT_LE(oracle.stats.target_passes, greedy.stats.target_passes);
    EXPECT_EQ(greedy.wrong_accepted, 0);
    const PolicyResult& accept_all = results[i + 4];
    EXPECT_GT(accept_all.stats.accepted_lossy, 0);
    EXPECT_GT(accept_all.wrong_accepted, 0);
    // A KL bound of 100 nats accepts every mismatch, like p >= 0: the same decisions.
    EXPECT_EQ(results[i + 8].outputs, accept_all.outputs);
  }
  const nlohmann::json json = EvalResultsToJson(results);
  EXPECT_EQ(json["policies"][5]["policy"], "lossy-prob");
  EXPECT_EQ(json["policies"][5]["k"], 4);
  EXPECT_EQ(json["policies"][5]["threshold"], 0.0);
  EXPECT_TRUE(json["policies"][0]["k"].is_null());
  EXPECT_TRUE(json["policies"][1].contains("target_passes_per_answer"));
  EXPECT_THAT(FormatEvalTable(results), HasSubstr("wrong let through"));
}

TEST_F(PolicyEvalTest, LossyProbWithThresholdZeroAcceptsLossily) {
  const std::vector<TaskExample> examples = GreedyContinuationTasks();
  ASSERT_OK_AND_ASSIGN(std::vector<EvalPolicy> policies,
                       ParseEvalPolicies("lossy-prob", {}, OneWindow(8), 0.5f, /*lossy=*/0.0f));
  ASSERT_OK_AND_ASSIGN(std::vector<PolicyResult> results,
                       EvaluatePolicies(*target_, draft_, tokenizer(), examples, policies, options_));
  ASSERT_EQ(results.size(), 1u);
  EXPECT_FALSE(results[0].lossless);
  EXPECT_GT(results[0].stats.accepted_lossy, 0);
  // Every draft token is accepted, so each pass commits the whole block plus the bonus token
  // (less at the end).
  EXPECT_GT(results[0].tokens_per_pass, 4.0);
  EXPECT_THAT(FormatEvalTable(results), Not(HasSubstr("speedup")));
}

TEST_F(PolicyEvalTest, JudgePolicyUsesTheHead) {
  const std::vector<TaskExample> examples = GreedyContinuationTasks();
  // A head that accepts everything: zero weights, a large bias.
  JudgeHead head;
  head.weight.assign(target_->config().hidden_size, 0.0f);
  head.bias = 10.0f;
  options_.head = &head;
  ASSERT_OK_AND_ASSIGN(std::vector<EvalPolicy> policies,
                       ParseEvalPolicies("judge,judge-shadow", {}, OneWindow(8), 0.5f, 0.3f));
  ASSERT_OK_AND_ASSIGN(std::vector<PolicyResult> results,
                       EvaluatePolicies(*target_, draft_, tokenizer(), examples, policies, options_));
  ASSERT_EQ(results.size(), 2u);
  EXPECT_FALSE(results[0].lossless);
  EXPECT_GT(results[0].stats.accepted_judge, 0);
  // Shadow mode reports the judge but never lets it accept: the greedy outputs, all correct.
  EXPECT_TRUE(results[1].lossless);
  EXPECT_EQ(results[1].stats.accepted_judge, 0);
  EXPECT_EQ(results[1].correct, results[1].examples);

  head.weight.push_back(0.0f);
  EXPECT_THAT(EvaluatePolicies(*target_, draft_, tokenizer(), examples, policies, options_),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("hidden states of size")));
}

TEST_F(PolicyEvalTest, ConfigurationErrorsComeFirst) {
  const std::vector<TaskExample> examples = {TaskExample{.id = "1", .line = 1, .prompt = "Hi",
                                                         .answers = {"x"}}};
  ASSERT_OK_AND_ASSIGN(std::vector<EvalPolicy> judge,
                       ParseEvalPolicies("target,judge", {}, OneWindow(8), 0.5f, 0.3f));
  EXPECT_THAT(EvaluatePolicies(*target_, draft_, tokenizer(), examples, judge, options_),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("needs --judge HEAD")));
  ASSERT_OK_AND_ASSIGN(std::vector<EvalPolicy> greedy,
                       ParseEvalPolicies("greedy", {}, OneWindow(8), 0.5f, 0.3f));
  EXPECT_THAT(EvaluatePolicies(*target_, nullptr, tokenizer(), examples, greedy, options_),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("draft")));
  EXPECT_THAT(EvaluatePolicies(*target_, draft_, tokenizer(), {}, greedy, options_),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(ParseEvalPoliciesTest, NamesAndErrors) {
  engine::SamplingParams sampled;
  sampled.temperature = 0.8f;
  ASSERT_OK_AND_ASSIGN(std::vector<EvalPolicy> policies,
                       ParseEvalPolicies(" target , standard,judge,lossy-typical", sampled, OneWindow(16),
                                         0.7f, 0.2f));
  ASSERT_EQ(policies.size(), 4u);
  EXPECT_TRUE(policies[0].target_only);
  EXPECT_EQ(policies[1].name, "sampled");
  EXPECT_EQ(policies[1].verification.exact, spec::ExactRule::kSampled);
  EXPECT_EQ(policies[2].verification.judge, JudgeMode::kOn);
  EXPECT_FLOAT_EQ(policies[2].verification.judge_threshold, 0.7f);
  EXPECT_EQ(policies[3].verification.lossy, LossyRule::kTypical);
  EXPECT_FLOAT_EQ(policies[3].verification.lossy_threshold, 0.2f);

  EXPECT_THAT(ParseEvalPolicies("target,fast", {}, OneWindow(16), 0.5f, 0.3f),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unknown policy \"fast\"")));
  EXPECT_THAT(ParseEvalPolicies("standard,greedy", {}, OneWindow(16), 0.5f, 0.3f),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("twice")));
  EXPECT_THAT(ParseEvalPolicies("sampled", {}, OneWindow(16), 0.5f, 0.3f),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ParseEvalPolicies(" , ", {}, OneWindow(16), 0.5f, 0.3f),
              StatusIs(absl::StatusCode::kInvalidArgument));
  spec::DraftWindowOptions bad_window;
  bad_window.k = 0;
  EXPECT_THAT(ParseEvalPolicies("greedy", {}, absl::MakeConstSpan(&bad_window, 1), 0.5f, 0.3f),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace verdict::judge
