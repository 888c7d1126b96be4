// SPDX-License-Identifier: Apache-2.0
// Speculative decoding end to end through the coordinator in one process (local::GenerateSpeculative),
// on small random models: greedy output identical to the target's
// own greedy output for every k in 1..64, sampled output distributed as the target's, the judge's
// limiting cases, KV rollback against recomputation, the adaptive window, and bad input.
#include "local/speculative_generation.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <random>

#include "absl/strings/str_cat.h"
#include "common/testing/chi_square.h"
#include "common/testing/status_matchers.h"
#include "engine/generator.h"
#include "engine/kernels/matmul.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "judge/speculative_session.h"
#include "judge/testing/generic_kernels.h"
#include "judge/testing/paired_models.h"
#include "judge/testing/reference_loop.h"

namespace verdict::judge {
namespace {

// Every test here decodes through the coordinator (local::GenerateSpeculative).
using local::GenerateSpeculative;

using ::testing::HasSubstr;
using ::verdict::testing::ChiSquareTest;
using ::verdict::testing::StatusIs;
using testing::MakeModel;
using testing::MakeWeights;
using testing::SmallConfig;

constexpr int64_t kMaxNew = 48;

std::vector<int32_t> GreedyReference(engine::ModelSlice& model, const std::vector<int32_t>& prompt,
                                     int64_t max_new, std::vector<int32_t> stops = {}) {
  engine::GenerateOptions options;
  options.max_new_tokens = max_new;
  options.stop_token_ids = std::move(stops);
  absl::StatusOr<engine::GenerateResult> r = engine::Generate(model, prompt, options);
  EXPECT_OK(r.status());
  return r.ok() ? r->tokens : std::vector<int32_t>{};
}

std::vector<float> FreshLastLogits(engine::ModelSlice& model, const std::vector<int32_t>& tokens);

SpeculativeOptions GreedyOptions(int64_t k) {
  SpeculativeOptions options;
  options.max_new_tokens = kMaxNew;
  options.window.k = k;
  return options;
}

// Target (vocab 64) and three drafts: a noisy copy (agrees often, not always), an exact copy, and
// an unrelated model (agrees rarely). Generic kernels: their per-row results do not depend on how
// many rows a matrix product has, so a verification block computes bit-for-bit what decoding does
// and greedy equality can be exact.
class SpeculativeTest : public testing::GenericKernelsTest {
 protected:
  void SetUp() override {
    backend_ = engine::CreateCpuBackend({.num_threads = 1});
    config_ = SmallConfig(64);
    target_weights_ = MakeWeights(config_, 1, 4.0f);
    noisy_weights_ = MakeWeights(config_, 1, 4.0f, /*noise=*/0.04f, /*noise_seed=*/5);
    unrelated_weights_ = MakeWeights(config_, 99, 4.0f);
    target_ = MakeModel(config_, *target_weights_, backend_.get());
    noisy_ = MakeModel(config_, *noisy_weights_, backend_.get());
    copy_ = MakeModel(config_, *target_weights_, backend_.get());
    unrelated_ = MakeModel(config_, *unrelated_weights_, backend_.get());
    std::mt19937 rng(3);
    for (int len : {1, 3, 7, 12}) {
      std::vector<int32_t> p(len);
      for (int32_t& t : p) t = static_cast<int32_t>(rng() % config_.vocab_size);
      prompts_.push_back(p);
    }
  }

  std::unique_ptr<engine::Backend> backend_;
  engine::LlamaConfig config_;
  std::unique_ptr<testing::InMemoryWeights> target_weights_, noisy_weights_, unrelated_weights_;
  std::unique_ptr<engine::ModelSlice> target_, noisy_, copy_, unrelated_;
  std::vector<std::vector<int32_t>> prompts_;
};

// The evaluation-only rules (a token mask, an external oracle), which have no wire form, reach the
// last shard and decide as they do in the plain reference loop: the same tokens and statistics, with
// mismatches accepted by the rule, and on_verdict called once per target pass.
TEST_F(SpeculativeTest, EvaluationOnlyRulesReachTheShardAndMatchTheReferenceLoop) {
  auto even = std::make_shared<std::vector<uint8_t>>(config_.vocab_size, 0);
  for (int64_t t = 0; t < config_.vocab_size; t += 2) (*even)[t] = 1;
  int64_t lossy = 0;
  for (const bool oracle : {false, true}) {
    for (const auto& prompt : prompts_) {
      SCOPED_TRACE(absl::StrCat(oracle ? "oracle" : "token mask", ", prompt of ", prompt.size()));
      SpeculativeOptions options = GreedyOptions(6);
      if (oracle) {
        options.verification.lossy = LossyRule::kOracle;
        options.verification.oracle = [](absl::Span<const int32_t> prefix, int32_t token) {
          return (token + static_cast<int32_t>(prefix.size())) % 3 == 0;
        };
      } else {
        options.verification.lossy = LossyRule::kTokenMask;
        options.verification.lossy_token_mask = even;
      }
      int64_t verdicts = 0;
      options.on_verdict = [&verdicts](const spec::DraftBlock&, const spec::Verdict&) { ++verdicts; };
      ASSERT_OK_AND_ASSIGN(SpeculativeResult got, GenerateSpeculative(*target_, *unrelated_, prompt, options));
      EXPECT_EQ(verdicts, got.stats.target_passes);
      options.on_verdict = nullptr;
      ASSERT_OK_AND_ASSIGN(SpeculativeResult want,
                           testing::ReferenceSpeculativeLoop(*target_, *unrelated_, prompt, options));
      EXPECT_EQ(got.tokens, want.tokens);
      EXPECT_EQ(got.stats.target_passes, want.stats.target_passes);
      EXPECT_EQ(got.stats.accepted_exact, want.stats.accepted_exact);
      EXPECT_EQ(got.stats.accepted_lossy, want.stats.accepted_lossy);
      lossy += got.stats.accepted_lossy;
    }
  }
  EXPECT_GT(lossy, 0) << "the rules should accept some of the unrelated draft's tokens";
}

TEST_F(SpeculativeTest, GreedyOutputEqualsTargetGreedyForEveryK) {
  int64_t proposed = 0, accepted = 0;
  for (const auto& prompt : prompts_) {
    const std::vector<int32_t> reference = GreedyReference(*target_, prompt, kMaxNew);
    ASSERT_EQ(reference.size(), static_cast<size_t>(kMaxNew));
    for (int64_t k = 1; k <= 64; ++k) {
      for (engine::ModelSlice* draft : {noisy_.get(), unrelated_.get()}) {
        ASSERT_OK_AND_ASSIGN(SpeculativeResult r,
                             GenerateSpeculative(*target_, *draft, prompt, GreedyOptions(k)));
        ASSERT_EQ(r.tokens, reference) << "k=" << k << " prompt length " << prompt.size();
        const spec::SpeculationStats& s = r.stats;
        EXPECT_EQ(s.tokens, kMaxNew);
        EXPECT_EQ(s.accepted_judge + s.accepted_lossy, 0);
        int64_t passes = 0;
        for (int64_t h : s.accepted_histogram) passes += h;
        EXPECT_EQ(passes, s.target_passes);
        EXPECT_EQ(s.tokens, s.accepted_exact + s.target_passes);  // each pass adds one target token
        if (draft == noisy_.get()) {
          proposed += s.proposed;
          accepted += s.accepted_exact;
        }
      }
    }
  }
  // The pair must both agree and disagree often, or the test would prove little.
  const double rate = static_cast<double>(accepted) / proposed;
  EXPECT_GT(rate, 0.15);
  EXPECT_LT(rate, 0.9);
}

// The fast kernels (AVX2/FMA where the CPU has them) compute a block of rows with other summation
// orders than a single row, so logits differ in the last bits between verification and decoding.
// Greedy output must still be identical unless the target's top two logits are a numerical tie at
// the first divergence (then either token is the target's greedy choice within rounding).
TEST_F(SpeculativeTest, GreedyOutputEqualsTargetGreedyWithFastKernels) {
  ASSERT_OK(engine::SetKernelIsa(engine::BestSupportedKernelIsa()));
  int64_t ties = 0;
  for (const auto& prompt : prompts_) {
    const std::vector<int32_t> reference = GreedyReference(*target_, prompt, kMaxNew);
    for (int64_t k : {1, 2, 3, 5, 8, 13, 21, 34, 55, 64}) {
      ASSERT_OK_AND_ASSIGN(SpeculativeResult r, GenerateSpeculative(*target_, *noisy_, prompt, GreedyOptions(k)));
      if (r.tokens == reference) continue;
      size_t i = 0;
      while (i < reference.size() && r.tokens[i] == reference[i]) ++i;
      std::vector<int32_t> context = prompt;
      context.insert(context.end(), reference.begin(), reference.begin() + i);
      std::vector<float> logits = FreshLastLogits(*target_, context);
      std::sort(logits.begin(), logits.end(), std::greater<float>());
      EXPECT_LT(logits[0] - logits[1], 1e-4f * std::fabs(logits[0]) + 1e-5f)
          << "k=" << k << ": speculative output diverges at token " << i << " without a tie";
      ++ties;
    }
  }
  ASSERT_OK(engine::SetKernelIsa(engine::KernelIsa::kGeneric));
  RecordProperty("numerical_ties", static_cast<int>(ties));
}

TEST_F(SpeculativeTest, DraftEqualToTargetHasEverythingAccepted) {
  for (const auto& prompt : prompts_) {
    const std::vector<int32_t> reference = GreedyReference(*target_, prompt, kMaxNew);
    for (int64_t k : {1, 2, 5, 16, 47, 64}) {
      ASSERT_OK_AND_ASSIGN(SpeculativeResult r, GenerateSpeculative(*target_, *copy_, prompt, GreedyOptions(k)));
      EXPECT_EQ(r.tokens, reference);
      EXPECT_EQ(r.stats.accepted_exact, r.stats.proposed) << "k=" << k;
      // Every pass accepts its whole block; passes are as few as the window allows.
      const int64_t expected_passes = (kMaxNew + k) / (k + 1);
      EXPECT_EQ(r.stats.target_passes, expected_passes) << "k=" << k;
    }
  }
}

TEST_F(SpeculativeTest, StopTokenEndsGenerationWhereTheTargetStops) {
  const std::vector<int32_t>& prompt = prompts_[2];
  const std::vector<int32_t> full = GreedyReference(*target_, prompt, kMaxNew);
  const int32_t stop = full[9];
  const std::vector<int32_t> reference = GreedyReference(*target_, prompt, kMaxNew, {stop});
  for (int64_t k : {1, 4, 13, 64}) {
    SpeculativeOptions options = GreedyOptions(k);
    options.stop_token_ids = {stop};
    std::vector<int32_t> streamed;
    options.on_tokens = [&](absl::Span<const int32_t> tokens) {
      streamed.insert(streamed.end(), tokens.begin(), tokens.end());
      return true;
    };
    ASSERT_OK_AND_ASSIGN(SpeculativeResult r, GenerateSpeculative(*target_, *noisy_, prompt, options));
    EXPECT_EQ(r.tokens, reference);
    EXPECT_TRUE(r.stopped_by_token);
    EXPECT_EQ(streamed, reference);
  }
}

TEST_F(SpeculativeTest, AdaptiveWindowKeepsGreedyOutputExact) {
  for (const auto& prompt : prompts_) {
    const std::vector<int32_t> reference = GreedyReference(*target_, prompt, kMaxNew);
    for (engine::ModelSlice* draft : {noisy_.get(), copy_.get()}) {
      SpeculativeOptions options = GreedyOptions(4);
      options.window.adaptive = true;
      options.window.max_k = 64;
      ASSERT_OK_AND_ASSIGN(SpeculativeResult r, GenerateSpeculative(*target_, *draft, prompt, options));
      EXPECT_EQ(r.tokens, reference);
    }
  }
  // With a perfect draft the window grows, so passes are far fewer than with the fixed start.
  SpeculativeOptions options = GreedyOptions(2);
  options.window.adaptive = true;
  ASSERT_OK_AND_ASSIGN(SpeculativeResult r, GenerateSpeculative(*target_, *copy_, prompts_[0], options));
  EXPECT_LE(r.stats.target_passes, 7);
}

// ---- The judge's limiting cases ------------------------------------------------------------------

JudgeHead ConstantJudge(int64_t hidden, float bias, float threshold) {
  JudgeHead head;
  head.weight.assign(hidden, 0.01f);
  head.bias = bias;
  head.threshold = threshold;
  return head;
}

TEST_F(SpeculativeTest, JudgeThresholdAboveOneIsStandardVerification) {
  const JudgeHead head = ConstantJudge(config_.hidden_size, 5.0f, 1.01f);
  for (const auto& prompt : prompts_) {
    const std::vector<int32_t> reference = GreedyReference(*target_, prompt, kMaxNew);
    for (int64_t k : {3, 16, 64}) {
      SpeculativeOptions options = GreedyOptions(k);
      options.verification.judge = JudgeMode::kOn;
      options.verification.judge_threshold = head.threshold;
      options.head = &head;
      ASSERT_OK_AND_ASSIGN(SpeculativeResult r, GenerateSpeculative(*target_, *noisy_, prompt, options));
      EXPECT_EQ(r.tokens, reference);
      EXPECT_EQ(r.stats.accepted_judge, 0);
    }
  }
}

TEST_F(SpeculativeTest, JudgeThatAlwaysAcceptsReproducesTheDraft) {
  // Every drafted token is kept; only the bonus token after each block is the target's. Reference:
  // the draft's own greedy continuation of k tokens, then the target's greedy token, repeated.
  const JudgeHead head = ConstantJudge(config_.hidden_size, 50.0f, 0.5f);
  for (const auto& prompt : prompts_) {
    for (int64_t k : {1, 5, 64}) {
      std::vector<int32_t> sequence = prompt, expected;
      while (static_cast<int64_t>(expected.size()) < kMaxNew) {
        const int64_t n = std::min<int64_t>(k, kMaxNew - expected.size() - 1);
        if (n > 0) {
          const std::vector<int32_t> drafted = GreedyReference(*unrelated_, sequence, n);
          sequence.insert(sequence.end(), drafted.begin(), drafted.end());
          expected.insert(expected.end(), drafted.begin(), drafted.end());
        }
        const int32_t bonus = GreedyReference(*target_, sequence, 1)[0];
        sequence.push_back(bonus);
        expected.push_back(bonus);
      }
      SpeculativeOptions options = GreedyOptions(k);
      options.verification.judge = JudgeMode::kOn;
      options.head = &head;
      ASSERT_OK_AND_ASSIGN(SpeculativeResult r, GenerateSpeculative(*target_, *unrelated_, prompt, options));
      EXPECT_EQ(r.tokens, expected) << "k=" << k;
      EXPECT_EQ(r.stats.accepted_exact + r.stats.accepted_judge, r.stats.proposed);
      EXPECT_GT(r.stats.accepted_judge, 0);
    }
  }
}

TEST_F(SpeculativeTest, ShadowJudgeIsLosslessAndReportsWhatItWouldAccept) {
  const JudgeHead head = ConstantJudge(config_.hidden_size, 50.0f, 0.5f);  // would accept all
  const std::vector<int32_t> reference = GreedyReference(*target_, prompts_[1], kMaxNew);
  SpeculativeOptions options = GreedyOptions(8);
  options.verification.judge = JudgeMode::kShadow;
  options.head = &head;
  ASSERT_OK_AND_ASSIGN(SpeculativeResult r, GenerateSpeculative(*target_, *noisy_, prompts_[1], options));
  EXPECT_EQ(r.tokens, reference);
  EXPECT_EQ(r.stats.accepted_judge, 0);
  EXPECT_EQ(r.stats.shadow_accepted, r.stats.proposed);  // the judge would take every block whole
  EXPECT_GE(r.stats.shadow_both, r.stats.accepted_exact);
  EXPECT_EQ(r.stats.shadow_both + r.stats.shadow_judge_only, r.stats.shadow_accepted);
  EXPECT_GT(r.stats.shadow_judge_only, 0);
  EXPECT_EQ(r.stats.shadow_exact_only, 0);
}

// ---- KV rollback --------------------------------------------------------------------------------

// The logits of the last position of `tokens`, computed from scratch.
std::vector<float> FreshLastLogits(engine::ModelSlice& model, const std::vector<int32_t>& tokens) {
  auto cache = model.NewKvCache(static_cast<int64_t>(tokens.size()));
  EXPECT_OK(cache.status());
  engine::ForwardBatch batch;
  batch.sequences = {{cache->get(), static_cast<int64_t>(tokens.size())}};
  batch.token_ids = tokens;
  batch.outputs = engine::ForwardBatch::Outputs::kLastOfEachSequence;
  engine::ForwardResult r;
  EXPECT_OK(model.Forward(batch, &r));
  r.logits.resize(model.config().vocab_size);
  return r.logits;
}

TEST_F(SpeculativeTest, CachesAreRolledBackCorrectlyAfterEveryRejection) {
  ASSERT_OK_AND_ASSIGN(auto drafter, DraftSession::Create(noisy_.get(), {}, 400));
  ASSERT_OK_AND_ASSIGN(auto verifier, TargetSession::Create(target_.get(), {}, nullptr, 400, /*keep_full_outputs=*/true));
  const std::vector<int32_t>& prompt = prompts_[3];
  ASSERT_OK(drafter->Start(prompt));
  ASSERT_OK(verifier->Start(prompt));
  std::mt19937 rng(11);
  int rejections_mid_block = 0;
  for (int step = 0; step < 40; ++step) {
    const int64_t k = 1 + rng() % 12;
    ASSERT_OK_AND_ASSIGN(spec::DraftBlock block, drafter->Propose(k));
    // The draft's first proposal was computed on the rolled-back cache: it must equal a fresh pass.
    const std::vector<float> fresh_draft = FreshLastLogits(*noisy_, drafter->committed());
    EXPECT_EQ(block.tokens[0], engine::Argmax(fresh_draft));
    EXPECT_NEAR(block.logprobs[0], ComputeTokenStats(fresh_draft, block.tokens[0]).logprob, 1e-5);
    // Corrupt some blocks so that rejections land at every position.
    if (step % 3 == 1) block.tokens[rng() % k] = static_cast<int32_t>(rng() % config_.vocab_size);
    const std::vector<int32_t> before = verifier->committed();
    ASSERT_OK_AND_ASSIGN(spec::Verdict v, verifier->Verify(block));
    // Row 0 of the block came from the cache as left by the previous rollback.
    std::vector<float> row0(verifier->last_forward().logits.begin(),
                            verifier->last_forward().logits.begin() + config_.vocab_size);
    const std::vector<float> fresh_target = FreshLastLogits(*target_, before);
    for (int64_t i = 0; i < config_.vocab_size; ++i) ASSERT_NEAR(row0[i], fresh_target[i], 1e-5);
    if (v.num_accepted > 0 && v.num_accepted < k) ++rejections_mid_block;
    ASSERT_OK(drafter->Commit(v.num_accepted, v.next_token));
    EXPECT_EQ(verifier->committed(), drafter->committed());
    EXPECT_EQ(verifier->cache().length(), verifier->committed_length() - 1);
    EXPECT_LT(drafter->cache().length(), drafter->committed_length());
  }
  EXPECT_GT(rejections_mid_block, 3);
}

// ---- Sampled speculative decoding has the target's distribution ---------------------------------

// Exact joint distribution of the first two generated tokens under the target's sampling params.
std::vector<double> ExactTwoTokenDistribution(engine::ModelSlice& target, const std::vector<int32_t>& prompt,
                                              const engine::SamplingParams& params) {
  const int64_t v = target.config().vocab_size;
  std::vector<float> p1, p2;
  engine::SamplingDistribution(FreshLastLogits(target, prompt), params, &p1);
  std::vector<double> joint(v * v, 0.0);
  for (int64_t a = 0; a < v; ++a) {
    if (p1[a] == 0) continue;
    std::vector<int32_t> extended = prompt;
    extended.push_back(static_cast<int32_t>(a));
    engine::SamplingDistribution(FreshLastLogits(target, extended), params, &p2);
    for (int64_t b = 0; b < v; ++b) joint[a * v + b] = static_cast<double>(p1[a]) * p2[b];
  }
  return joint;
}

class SampledSpeculativeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    backend_ = engine::CreateCpuBackend({.num_threads = 1});
    config_ = SmallConfig(8);
    target_weights_ = MakeWeights(config_, 21, 1.5f);
    draft_weights_ = MakeWeights(config_, 21, 1.5f, /*noise=*/1.0f, /*noise_seed=*/3);
    target_ = MakeModel(config_, *target_weights_, backend_.get());
    draft_ = MakeModel(config_, *draft_weights_, backend_.get());
  }

  // Counts of the first two generated tokens over `runs` seeds.
  std::vector<int64_t> Sample(const SpeculativeOptions& base, int runs) {
    std::vector<int64_t> counts(config_.vocab_size * config_.vocab_size, 0);
    for (int seed = 0; seed < runs; ++seed) {
      SpeculativeOptions options = base;
      options.verification.target_sampling.seed = 1000 + seed;
      if (options.draft_sampling) options.draft_sampling->seed = 500000 + seed;
      absl::StatusOr<SpeculativeResult> r = GenerateSpeculative(*target_, *draft_, prompt_, options);
      EXPECT_OK(r.status());
      if (!r.ok() || r->tokens.size() < 2) continue;
      ++counts[r->tokens[0] * config_.vocab_size + r->tokens[1]];
    }
    return counts;
  }

  SpeculativeOptions Options(const engine::SamplingParams& params, int64_t k) {
    SpeculativeOptions options;
    options.max_new_tokens = 4;
    options.window.k = k;
    options.verification.exact = spec::ExactRule::kSampled;
    options.verification.target_sampling = params;
    return options;
  }

  std::unique_ptr<engine::Backend> backend_;
  engine::LlamaConfig config_;
  std::unique_ptr<testing::InMemoryWeights> target_weights_, draft_weights_;
  std::unique_ptr<engine::ModelSlice> target_, draft_;
  const std::vector<int32_t> prompt_ = {3, 1, 4};
};

TEST_F(SampledSpeculativeTest, TwoTokenDistributionIsTheTargets) {
  const engine::SamplingParams params{.temperature = 1.0f};
  const std::vector<double> exact = ExactTwoTokenDistribution(*target_, prompt_, params);
  for (int64_t k : {1, 3}) {
    const auto result = ChiSquareTest(Sample(Options(params, k), 6000), exact);
    EXPECT_GT(result.p_value, 1e-3) << "k=" << k << " chi2 " << result.statistic << " df "
                                    << result.degrees_of_freedom;
  }
}

TEST_F(SampledSpeculativeTest, TruncatedSamplingAndGreedyDraftAreExactToo) {
  const engine::SamplingParams params{.temperature = 0.7f, .top_k = 5, .top_p = 0.95f};
  const std::vector<double> exact = ExactTwoTokenDistribution(*target_, prompt_, params);
  SpeculativeOptions options = Options(params, 3);
  EXPECT_GT(ChiSquareTest(Sample(options, 5000), exact).p_value, 1e-3);
  options.draft_sampling = engine::SamplingParams{};  // greedy draft: one-hot proposals
  EXPECT_GT(ChiSquareTest(Sample(options, 5000), exact).p_value, 1e-3);
}

// A sampled draft proposes from what the backend computes (its draw and the compacted proposal),
// and that is what it would propose from the logits rows: a session recording full distributions
// takes the host path with the same seed.
TEST_F(SampledSpeculativeTest, DraftProposalsFromTheBackendEqualThoseFromTheRows) {
  for (const engine::SamplingParams& params :
       {engine::SamplingParams{.temperature = 1.0f, .seed = 5},
        engine::SamplingParams{.temperature = 0.8f, .top_k = 4, .top_p = 1.0f, .seed = 6},
        engine::SamplingParams{.temperature = 1.2f, .top_k = 0, .top_p = 0.8f, .seed = 7}}) {
    ASSERT_OK_AND_ASSIGN(auto lean, DraftSession::Create(draft_.get(), params, 64));
    ASSERT_OK_AND_ASSIGN(auto rows, DraftSession::Create(draft_.get(), params, 64, /*record_distributions=*/true));
    ASSERT_OK(lean->Start(prompt_));
    ASSERT_OK(rows->Start(prompt_));
    for (int step = 0; step < 4; ++step) {
      ASSERT_OK_AND_ASSIGN(spec::DraftBlock a, lean->Propose(5));
      ASSERT_OK_AND_ASSIGN(spec::DraftBlock b, rows->Propose(5));
      ASSERT_EQ(a.tokens, b.tokens) << "step " << step;
      ASSERT_EQ(a.proposals.size(), b.proposals.size());
      for (size_t i = 0; i < a.proposals.size(); ++i) {
        EXPECT_EQ(a.proposals[i].ids, b.proposals[i].ids);
        ASSERT_EQ(a.proposals[i].probs.size(), b.proposals[i].probs.size());
        for (size_t j = 0; j < a.proposals[i].probs.size(); ++j) {
          EXPECT_FLOAT_EQ(a.proposals[i].probs[j], b.proposals[i].probs[j]);
        }
        EXPECT_NEAR(a.logprobs[i], b.logprobs[i], 1e-5);
      }
      EXPECT_TRUE(a.distributions.empty());
      EXPECT_FALSE(b.distributions.empty());
      // Accept two tokens and correct the third, as a verdict would.
      const int32_t next = (a.tokens[2] + 1) % static_cast<int32_t>(config_.vocab_size);
      ASSERT_OK(lean->Commit(2, next));
      ASSERT_OK(rows->Commit(2, next));
    }
  }
}

TEST_F(SampledSpeculativeTest, TheTestRejectsAWrongAcceptanceRule) {
  const engine::SamplingParams params{.temperature = 1.0f};
  const std::vector<double> exact = ExactTwoTokenDistribution(*target_, prompt_, params);
  SpeculativeOptions options = Options(params, 3);
  options.verification.lossy = LossyRule::kTargetProb;  // accepts mismatches with p >= 0.15
  options.verification.lossy_threshold = 0.15f;
  EXPECT_LT(ChiSquareTest(Sample(options, 6000), exact).p_value, 1e-6);
}

// ---- Bad input ----------------------------------------------------------------------------------

TEST_F(SpeculativeTest, RejectsBadRequests) {
  const std::vector<int32_t>& prompt = prompts_[1];
  EXPECT_THAT(GenerateSpeculative(*target_, *noisy_, prompt, GreedyOptions(0)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("draft window")));
  EXPECT_THAT(GenerateSpeculative(*target_, *noisy_, prompt, GreedyOptions(spec::kMaxDraftTokens + 1)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("draft window")));
  EXPECT_THAT(GenerateSpeculative(*target_, *noisy_, {}, GreedyOptions(4)),
              StatusIs(absl::StatusCode::kInvalidArgument));
  std::vector<int32_t> too_long(config_.max_position_embeddings, 1);
  EXPECT_THAT(GenerateSpeculative(*target_, *noisy_, too_long, GreedyOptions(4)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("context length")));
  std::vector<int32_t> bad_token = {1, 2, 64};
  EXPECT_THAT(GenerateSpeculative(*target_, *noisy_, bad_token, GreedyOptions(4)),
              StatusIs(absl::StatusCode::kInvalidArgument));

  SpeculativeOptions judge = GreedyOptions(4);
  judge.verification.judge = JudgeMode::kOn;
  EXPECT_THAT(GenerateSpeculative(*target_, *noisy_, prompt, judge),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("judge head")));
  const JudgeHead wrong_size = ConstantJudge(config_.hidden_size + 1, 0.0f, 0.5f);
  judge.head = &wrong_size;
  EXPECT_THAT(GenerateSpeculative(*target_, *noisy_, prompt, judge),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("hidden size")));

  // A draft with another vocabulary.
  const engine::LlamaConfig other = SmallConfig(65);
  auto other_weights = MakeWeights(other, 1, 4.0f);
  auto other_model = MakeModel(other, *other_weights, backend_.get());
  EXPECT_THAT(GenerateSpeculative(*target_, *other_model, prompt, GreedyOptions(4)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("share a vocabulary")));
}

TEST_F(SpeculativeTest, SessionsRejectMisuse) {
  ASSERT_OK_AND_ASSIGN(auto drafter, DraftSession::Create(noisy_.get(), {}, 32));
  EXPECT_THAT(drafter->Propose(2), StatusIs(absl::StatusCode::kFailedPrecondition));
  ASSERT_OK(drafter->Start({1, 2, 3}));
  EXPECT_THAT(drafter->Propose(40), StatusIs(absl::StatusCode::kResourceExhausted));
  ASSERT_OK_AND_ASSIGN(spec::DraftBlock block, drafter->Propose(4));
  EXPECT_THAT(drafter->Propose(4), StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(drafter->Commit(5, 1), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(drafter->Commit(1, 64), StatusIs(absl::StatusCode::kInvalidArgument));
  ASSERT_OK(drafter->Commit(2, 7));
  EXPECT_EQ(drafter->committed_length(), 6);

  ASSERT_OK_AND_ASSIGN(auto verifier, TargetSession::Create(target_.get(), {}, nullptr, 8));
  ASSERT_OK(verifier->Start({1, 2, 3}));
  spec::DraftBlock big;
  big.tokens.assign(6, 1);
  EXPECT_THAT(verifier->Verify(big), StatusIs(absl::StatusCode::kResourceExhausted));
  big.tokens = {1, 70};
  EXPECT_THAT(verifier->Verify(big), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(verifier->committed_length(), 3);  // nothing changed
  EXPECT_EQ(verifier->cache().length(), 2);
}

}  // namespace
}  // namespace verdict::judge
