// SPDX-License-Identifier: Apache-2.0
// Target shards chained in one process, driven the way the coordinator drives them (self-describing
// blocks, rollback by start position), against the single-process references: greedy speculative
// output through 1, 2 and 4 shards equals engine::Generate's greedy output; judge verdicts equal
// judge::TargetSession's; several sessions batched together equal each alone; bad blocks fail
// alone and malformed batches fail whole. The same shards over tensor-parallel groups of 2 and 4 CPU
// ranks give the single slice's verdicts exactly and its activations within 1e-4.
#include "workers/target_shard.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>

#include "common/testing/relative_error.h"
#include "common/testing/status_matchers.h"
#include "engine/generator.h"
#include "engine/kernels/matmul.h"
#include "engine/slice_runner.h"
#include "engine/tensor_parallel.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "judge/speculative_session.h"
#include "judge/testing/generic_kernels.h"
#include "judge/testing/paired_models.h"
#include "workers/draft_worker.h"

namespace verdict::workers {
namespace {

using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::verdict::testing::StatusIs;

constexpr int64_t kCapacity = 160;

// The shards of one target and the draft worker, and a driver that runs sessions through them.
class ShardChainTest : public judge::testing::GenericKernelsTest {
 protected:
  void SetUp() override {
    backend_ = engine::CreateCpuBackend({.num_threads = 1});
    config_ = Config();
    target_weights_ = judge::testing::MakeWeights(config_, 1, 4.0f);
    draft_weights_ = judge::testing::MakeWeights(config_, 1, 4.0f, /*noise=*/0.04f, /*noise_seed=*/5);
    target_ = judge::testing::MakeModel(config_, *target_weights_, backend_.get());
    draft_ = judge::testing::MakeModel(config_, *draft_weights_, backend_.get());
    absl::StatusOr<std::unique_ptr<DraftWorker>> worker = DraftWorker::Create(draft_.get(), {});
    ASSERT_OK(worker.status());
    worker_ = std::move(*worker);
    std::mt19937 rng(3);
    for (int len : {1, 5, 12, 30}) {
      std::vector<int32_t> p(len);
      for (int32_t& t : p) t = static_cast<int32_t>(rng() % config_.vocab_size);
      prompts_.push_back(p);
    }
  }

  virtual engine::LlamaConfig Config() const {
    engine::LlamaConfig c = judge::testing::SmallConfig(64, /*context=*/kCapacity);
    c.num_layers = 4;
    return c;
  }

  // Splits the target at `cuts` (layer boundaries) into shards; `head` goes to the last one. Each
  // shard runs one ModelSlice (tensor_parallel 0) or a group of that many CPU ranks.
  void MakeShards(std::vector<int64_t> cuts, const judge::JudgeHead* head = nullptr, int tensor_parallel = 0,
                  const TargetShardOptions& options = {}) {
    shards_.clear();
    runners_.clear();
    slices_.clear();
    sent_activations_.clear();
    cuts.insert(cuts.begin(), 0);
    cuts.push_back(config_.num_layers);
    for (size_t i = 0; i + 1 < cuts.size(); ++i) {
      const engine::SliceRange range = {cuts[i], cuts[i + 1]};
      if (tensor_parallel == 0) {
        absl::StatusOr<std::unique_ptr<engine::ModelSlice>> slice =
            engine::ModelSlice::Create(config_, *target_weights_, range, backend_.get());
        ASSERT_OK(slice.status());
        slices_.push_back(std::move(*slice));
        runners_.push_back(engine::RunSingleSlice(slices_.back().get()));
      } else {
        absl::StatusOr<std::unique_ptr<engine::TensorParallelGroup>> group = engine::TensorParallelGroup::Create(
            config_, *target_weights_, range, tensor_parallel,
            [](int) -> absl::StatusOr<std::unique_ptr<engine::Backend>> {
              return engine::CreateCpuBackend(engine::CpuBackendOptions{/*num_threads=*/1});
            });
        ASSERT_OK(group.status());
        runners_.push_back(engine::RunTensorParallel(std::move(*group)));
        ASSERT_EQ(runners_.back()->world_size(), tensor_parallel);
      }
      const bool last = i + 2 == cuts.size();
      absl::StatusOr<std::unique_ptr<TargetShard>> shard =
          TargetShard::Create(runners_.back().get(), last ? head : nullptr, options);
      ASSERT_OK(shard.status());
      shards_.push_back(std::move(*shard));
    }
  }

  // One batch through every shard; returns the last shard's outcomes (and earlier failures). The
  // activations passed between shards are kept in sent_activations_.
  std::vector<spec::BlockOutcome> RunChain(ShardBatch batch) {
    std::vector<spec::BlockOutcome> outcomes;
    for (auto& shard : shards_) {
      ShardForwardResult r = shard->Forward(batch);
      outcomes.insert(outcomes.end(), r.outcomes.begin(), r.outcomes.end());
      batch = std::move(r.next);
      if (batch.blocks.empty()) break;
      sent_activations_.push_back(batch.activations);
    }
    return outcomes;
  }

  // A speculative session driven through the chain, as the coordinator does it.
  struct Driven {
    uint64_t id;
    std::vector<int32_t> committed;
    size_t prompt_length;
    uint64_t step = 0;
    bool started = false;
    spec::DraftBlock pending;  // the proposal under verification
    std::vector<spec::DraftBlock> blocks;  // every verified proposal
    std::vector<spec::Verdict> verdicts;
  };

  void Open(Driven& s, const judge::VerificationConfig& verification,
            const engine::SamplingParams& draft_sampling = {}) {
    for (auto& shard : shards_) ASSERT_OK(shard->OpenSession(spec::SessionId(s.id), kCapacity, verification));
    ASSERT_OK(worker_->OpenSession(spec::DraftSessionId(s.id), s.committed, draft_sampling, kCapacity));
  }

  // Proposes (after the previous verdict) and builds the session's next block.
  spec::ShardBlock NextBlock(Driven& s, int64_t k, std::vector<int32_t>* ids) {
    spec::ProposeRequest request{spec::DraftSessionId(s.id), ++s.step, static_cast<int64_t>(s.committed.size()), {}, k};
    if (s.started) {  // keep what was committed before the last token, append the last token
      request.keep_length = static_cast<int64_t>(s.committed.size()) - 1;
      request.append_tokens = {s.committed.back()};
    }
    absl::StatusOr<spec::Proposal> proposal = worker_->Propose(request);
    EXPECT_OK(proposal.status());
    s.pending = proposal->block;
    s.blocks.push_back(s.pending);
    spec::ShardBlock block;
    block.session_id = spec::SessionId(s.id);
    block.step = s.step;
    block.start_position = s.started ? static_cast<int64_t>(s.committed.size()) - 1 : 0;
    block.verify = true;
    block.draft = s.pending;
    ids->insert(ids->end(), s.committed.begin() + block.start_position, s.committed.end());
    ids->insert(ids->end(), s.pending.tokens.begin(), s.pending.tokens.end());
    block.num_tokens = static_cast<int64_t>(s.committed.size()) - block.start_position + k;
    s.started = true;
    return block;
  }

  void Apply(Driven& s, const spec::Verdict& v) {
    s.committed.insert(s.committed.end(), s.pending.tokens.begin(), s.pending.tokens.begin() + v.num_accepted);
    s.committed.push_back(v.next_token);
    s.verdicts.push_back(v);
  }

  // Runs all sessions together (one batch per step) until each has `max_new` new tokens.
  void Generate(std::vector<Driven>& sessions, int64_t k, int64_t max_new) {
    for (int guard = 0; guard < 1000; ++guard) {
      ShardBatch batch;
      std::vector<Driven*> in_batch;
      for (Driven& s : sessions) {
        if (static_cast<int64_t>(s.committed.size() - s.prompt_length) >= max_new) continue;
        batch.blocks.push_back(NextBlock(s, k, &batch.token_ids));
        in_batch.push_back(&s);
      }
      if (in_batch.empty()) return;
      std::vector<spec::BlockOutcome> outcomes = RunChain(std::move(batch));
      ASSERT_EQ(outcomes.size(), in_batch.size());
      for (size_t i = 0; i < outcomes.size(); ++i) {
        ASSERT_OK(outcomes[i].status);
        ASSERT_EQ(outcomes[i].session_id, spec::SessionId(in_batch[i]->id));
        ASSERT_TRUE(outcomes[i].verdict.has_value());
        Apply(*in_batch[i], *outcomes[i].verdict);
      }
    }
    FAIL() << "generation did not finish";
  }

  // A judge head with standard-normal weights (threshold 0.5).
  judge::JudgeHead RandomHead(uint32_t seed, float bias) const {
    judge::JudgeHead head;
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    for (int64_t i = 0; i < config_.hidden_size; ++i) head.weight.push_back(normal(rng));
    head.bias = bias;
    head.threshold = 0.5f;
    return head;
  }

  std::vector<int32_t> GreedyReference(const std::vector<int32_t>& prompt, int64_t max_new) {
    engine::GenerateOptions options;
    options.max_new_tokens = max_new;
    absl::StatusOr<engine::GenerateResult> r = engine::Generate(*target_, prompt, options);
    EXPECT_OK(r.status());
    return r.ok() ? r->tokens : std::vector<int32_t>{};
  }

  std::unique_ptr<engine::Backend> backend_;
  engine::LlamaConfig config_;
  std::unique_ptr<judge::testing::InMemoryWeights> target_weights_, draft_weights_;
  std::unique_ptr<engine::ModelSlice> target_, draft_;
  std::vector<std::unique_ptr<engine::ModelSlice>> slices_;
  std::vector<std::unique_ptr<engine::SliceRunner>> runners_;  // one per shard
  std::vector<std::unique_ptr<TargetShard>> shards_;
  std::vector<std::vector<float>> sent_activations_;  // by RunChain, in order
  std::unique_ptr<DraftWorker> worker_;
  std::vector<std::vector<int32_t>> prompts_;
};

TEST_F(ShardChainTest, GreedyOutputThroughShardsEqualsTheTargetAlone) {
  constexpr int64_t kMaxNew = 40;
  const std::vector<std::vector<int64_t>> layouts = {{}, {2}, {1, 2, 3}};
  for (const auto& cuts : layouts) {
    for (int64_t k : {1, 3, 8, 17}) {
      MakeShards(cuts);
      worker_ = std::move(*DraftWorker::Create(draft_.get(), {}));
      std::vector<Driven> sessions;
      for (size_t i = 0; i < prompts_.size(); ++i) {
        sessions.push_back({i + 1, prompts_[i], prompts_[i].size()});
        Open(sessions.back(), {});
      }
      Generate(sessions, k, kMaxNew);
      int64_t accepted = 0, passes = 0;
      for (Driven& s : sessions) {
        std::vector<int32_t> got(s.committed.begin() + s.prompt_length, s.committed.end());
        got.resize(kMaxNew);
        EXPECT_THAT(got, ElementsAreArray(GreedyReference(prompts_[s.id - 1], kMaxNew)))
            << "shards " << cuts.size() + 1 << ", k " << k << ", prompt " << s.id - 1;
        for (const spec::Verdict& v : s.verdicts) accepted += v.num_accepted;
        passes += static_cast<int64_t>(s.verdicts.size());
      }
      if (k > 1) {  // the noisy draft agrees often but not always
        EXPECT_GT(accepted, 0);
        EXPECT_LT(accepted, passes * k);
      }
    }
  }
}

TEST_F(ShardChainTest, JudgeVerdictsEqualTheInProcessTargetSession) {
  judge::JudgeHead head = RandomHead(17, 0.5f);
  MakeShards({2}, &head);
  judge::VerificationConfig config;
  config.judge = judge::JudgeMode::kOn;
  config.judge_threshold = 0.6f;
  std::vector<Driven> sessions = {{1, prompts_[2], prompts_[2].size()}};
  Open(sessions[0], config);
  Generate(sessions, 6, 30);

  // Replay the same blocks through judge::TargetSession on the whole target.
  absl::StatusOr<std::unique_ptr<judge::TargetSession>> reference =
      judge::TargetSession::Create(target_.get(), config, &head, kCapacity);
  ASSERT_OK(reference.status());
  ASSERT_OK((*reference)->Start(prompts_[2]));
  int64_t judge_accepted = 0;
  ASSERT_EQ(sessions[0].blocks.size(), sessions[0].verdicts.size());
  for (size_t i = 0; i < sessions[0].blocks.size(); ++i) {
    absl::StatusOr<spec::Verdict> expected = (*reference)->Verify(sessions[0].blocks[i]);
    ASSERT_OK(expected.status());
    const spec::Verdict& got = sessions[0].verdicts[i];
    EXPECT_EQ(got.num_accepted, expected->num_accepted) << "block " << i;
    EXPECT_EQ(got.next_token, expected->next_token) << "block " << i;
    EXPECT_THAT(got.reasons, ElementsAreArray(expected->reasons)) << "block " << i;
    for (spec::AcceptReason r : got.reasons) judge_accepted += r == spec::AcceptReason::kJudge;
  }
  EXPECT_THAT((*reference)->committed(), ElementsAreArray(sessions[0].committed));
  EXPECT_GT(judge_accepted, 0) << "the random head should accept some mismatches at this threshold";
}

// A head swapped in (a live reload) judges the sessions opened after it; a session opened before
// keeps its head, also when both run in the same batches (the backend's probe then holds only the
// new head, so that batch reads hidden states back). Each session's verdicts equal the in-process
// target session with its own head, and name it.
TEST_F(ShardChainTest, ReplacedHeadJudgesOnlyTheSessionsOpenedAfterIt) {
  judge::JudgeHead first = RandomHead(17, 0.5f), second = RandomHead(31, 1.5f);
  first.id = "first";
  second.id = "second";
  MakeShards({2}, &first);
  judge::VerificationConfig config;
  config.judge = judge::JudgeMode::kOn;
  config.judge_threshold = 0.6f;
  std::vector<Driven> sessions = {{1, prompts_[2], prompts_[2].size()}, {2, prompts_[1], prompts_[1].size()}};
  Open(sessions[0], config);
  EXPECT_THAT(shards_[0]->ReplaceHead(std::make_shared<judge::JudgeHead>(second)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("last target shard")));
  judge::JudgeHead narrow = second;
  narrow.weight.pop_back();
  EXPECT_THAT(shards_.back()->ReplaceHead(std::make_shared<judge::JudgeHead>(narrow)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("hidden size")));
  ASSERT_OK(shards_.back()->ReplaceHead(std::make_shared<judge::JudgeHead>(second)));
  EXPECT_EQ(shards_.back()->head()->id, "second");
  Open(sessions[1], config);
  Generate(sessions, 6, 30);

  const judge::JudgeHead* heads[] = {&first, &second};
  for (int s = 0; s < 2; ++s) {
    absl::StatusOr<std::unique_ptr<judge::TargetSession>> reference =
        judge::TargetSession::Create(target_.get(), config, heads[s], kCapacity);
    ASSERT_OK(reference.status());
    ASSERT_OK((*reference)->Start(prompts_[s == 0 ? 2 : 1]));
    ASSERT_EQ(sessions[s].blocks.size(), sessions[s].verdicts.size());
    for (size_t i = 0; i < sessions[s].blocks.size(); ++i) {
      absl::StatusOr<spec::Verdict> expected = (*reference)->Verify(sessions[s].blocks[i]);
      ASSERT_OK(expected.status());
      const spec::Verdict& got = sessions[s].verdicts[i];
      EXPECT_EQ(got.num_accepted, expected->num_accepted) << "session " << s << " block " << i;
      EXPECT_THAT(got.reasons, ElementsAreArray(expected->reasons)) << "session " << s << " block " << i;
      EXPECT_EQ(got.judge_head, heads[s]->id);
    }
    EXPECT_THAT((*reference)->committed(), ElementsAreArray(sessions[s].committed)) << "session " << s;
  }
}

// The last shard decides greedy, judge, lossy and sampled policies from what the backend computes
// where the logits are (summaries, the judge's dot products, the sampled rule's decisions with the
// sessions' draws): no logits row reaches the host, and the verdicts equal those from the full rows.
TEST_F(ShardChainTest, VerdictsFromSummariesEqualThoseFromFullRows) {
  judge::JudgeHead head = RandomHead(23, 1.0f);
  head.extra_features = {judge::JudgeFeature::kTargetLogprob, judge::JudgeFeature::kTargetEntropy};
  head.extra_weight = {0.05f, -0.05f};
  std::vector<judge::VerificationConfig> configs(7);
  configs[1].judge = judge::JudgeMode::kOn;
  configs[1].judge_threshold = 0.05f;
  configs[2].judge = judge::JudgeMode::kShadow;
  configs[3].lossy = judge::LossyRule::kTypical;
  // Sampled: top-p with the judge (greedy drafts: q one-hot), top-k against a sampled draft's
  // proposals, plain temperature with the judge in shadow mode.
  for (int i : {4, 5, 6}) configs[i].exact = spec::ExactRule::kSampled;
  configs[4].target_sampling = {.temperature = 0.8f, .top_k = 0, .top_p = 0.9f, .seed = 3};
  configs[4].judge = judge::JudgeMode::kOn;
  configs[4].judge_threshold = 0.05f;
  configs[5].target_sampling = {.temperature = 1.0f, .top_k = 8, .top_p = 1.0f, .seed = 4};
  configs[6].target_sampling = {.temperature = 1.2f, .top_k = 0, .top_p = 1.0f, .seed = 5};
  configs[6].judge = judge::JudgeMode::kShadow;
  const engine::SamplingParams sampled_draft = {.temperature = 1.0f, .top_k = 20, .top_p = 1.0f, .seed = 9};
  std::vector<std::vector<Driven>> runs;
  std::vector<int64_t> rows_to_host;
  for (bool summaries : {false, true}) {
    MakeShards({2}, &head, 0, {.verify_from_summaries = summaries});
    worker_ = std::move(*DraftWorker::Create(draft_.get(), {}));
    std::vector<Driven> sessions;
    for (size_t i = 0; i < configs.size(); ++i) {
      sessions.push_back({i + 1, prompts_[i % prompts_.size()], prompts_[i % prompts_.size()].size()});
      Open(sessions.back(), configs[i], i == 5 ? sampled_draft : engine::SamplingParams{});
    }
    Generate(sessions, 7, 30);
    runs.push_back(std::move(sessions));
    rows_to_host.push_back(shards_.back()->logits_rows_to_host());
  }
  EXPECT_GT(rows_to_host[0], 0);
  EXPECT_EQ(rows_to_host[1], 0);
  int64_t by_judge = 0;
  for (size_t s = 0; s < configs.size(); ++s) {
    const Driven& full = runs[0][s];
    const Driven& lean = runs[1][s];
    ASSERT_EQ(full.verdicts.size(), lean.verdicts.size()) << "session " << s;
    EXPECT_THAT(lean.committed, ElementsAreArray(full.committed)) << "session " << s;
    for (size_t b = 0; b < full.verdicts.size(); ++b) {
      const spec::Verdict& a = full.verdicts[b];
      const spec::Verdict& v = lean.verdicts[b];
      EXPECT_EQ(v.num_accepted, a.num_accepted);
      EXPECT_EQ(v.next_token, a.next_token);
      EXPECT_THAT(v.reasons, ElementsAreArray(a.reasons));
      EXPECT_EQ(v.shadow_num_accepted, a.shadow_num_accepted);
      ASSERT_EQ(v.judge_scores.size(), a.judge_scores.size());
      for (size_t i = 0; i < a.judge_scores.size(); ++i) {
        if (!std::isnan(a.judge_scores[i])) {
          EXPECT_NEAR(v.judge_scores[i], a.judge_scores[i], 1e-5);
        }
      }
      for (spec::AcceptReason r : v.reasons) by_judge += r == spec::AcceptReason::kJudge;
    }
  }
  EXPECT_GT(by_judge, 0);
  // The sampled sessions rejected some tokens (so replacements were drawn) and accepted others.
  int64_t rejected = 0;
  int64_t accepted = 0;
  for (size_t s : {4, 5, 6}) {
    for (const spec::Verdict& v : runs[1][s].verdicts) {
      rejected += v.num_accepted < 7;
      accepted += v.num_accepted;
    }
  }
  EXPECT_GT(rejected, 0);
  EXPECT_GT(accepted, 0);
}

// Blocks that come with whole logits rows (sampled policies) are decided on several host threads;
// each session keeps its own random stream, so the verdicts do not depend on how many.
TEST_F(ShardChainTest, SampledVerdictsDoNotDependOnVerifyThreads) {
  std::vector<std::vector<Driven>> runs;
  for (int threads : {1, 4}) {
    MakeShards({2}, nullptr, 0, {.verify_from_summaries = false, .verify_threads = threads});
    worker_ = std::move(*DraftWorker::Create(draft_.get(), {}));
    std::vector<Driven> sessions;
    for (size_t i = 0; i < 4; ++i) {
      judge::VerificationConfig sampled;
      sampled.exact = spec::ExactRule::kSampled;
      sampled.target_sampling = {.temperature = 0.9f, .top_k = 0, .top_p = 0.95f, .seed = 100 + i};
      sessions.push_back({i + 1, prompts_[i], prompts_[i].size()});
      Open(sessions.back(), sampled);
    }
    Generate(sessions, 7, 30);
    EXPECT_GT(shards_.back()->logits_rows_to_host(), 0);
    runs.push_back(std::move(sessions));
  }
  for (size_t s = 0; s < runs[0].size(); ++s) {
    EXPECT_THAT(runs[1][s].committed, ElementsAreArray(runs[0][s].committed)) << "session " << s;
    ASSERT_EQ(runs[1][s].verdicts.size(), runs[0][s].verdicts.size()) << "session " << s;
    for (size_t b = 0; b < runs[0][s].verdicts.size(); ++b) {
      EXPECT_EQ(runs[1][s].verdicts[b].num_accepted, runs[0][s].verdicts[b].num_accepted);
      EXPECT_EQ(runs[1][s].verdicts[b].next_token, runs[0][s].verdicts[b].next_token);
    }
  }
}

TEST_F(ShardChainTest, BadBlocksFailAloneAndMalformedBatchesFailWhole) {
  MakeShards({2});
  for (uint64_t id : {1, 2}) {
    for (auto& shard : shards_) ASSERT_OK(shard->OpenSession(spec::SessionId(id), 16, {}));
  }
  auto block = [](uint64_t id, uint64_t step, int64_t start, int64_t n) {
    spec::ShardBlock b;
    b.session_id = spec::SessionId(id);
    b.step = step;
    b.start_position = start;
    b.num_tokens = n;
    b.verify = true;
    return b;
  };
  // Prefill 3 positions of session 1, then a batch of one good and several bad blocks.
  ShardBatch first;
  first.blocks = {block(1, 1, 0, 3)};
  first.token_ids = {1, 2, 3};
  std::vector<spec::BlockOutcome> o = RunChain(first);
  ASSERT_EQ(o.size(), 1u);
  ASSERT_OK(o[0].status);
  const int32_t greedy_next = o[0].verdict->next_token;

  ShardBatch mixed;
  mixed.blocks = {block(9, 1, 0, 1),    // unknown session
                  block(1, 1, 3, 1),    // step does not advance
                  block(1, 2, 5, 1),    // gap: 3 positions cached
                  block(2, 1, 0, 1)};   // fine
  mixed.blocks.push_back(block(1, 3, 3, 1));  // session 1 again in one batch... and fine on its own
  mixed.token_ids = {1, 2, 3, 4, 5};
  o = RunChain(mixed);
  ASSERT_EQ(o.size(), 5u);
  auto find = [&o](uint64_t id, uint64_t step) -> const spec::BlockOutcome* {
    for (const spec::BlockOutcome& b : o) {
      if (b.session_id == spec::SessionId(id) && b.step == step) return &b;
    }
    return nullptr;
  };
  EXPECT_THAT(find(9, 1)->status, StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(find(1, 1)->status, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("does not follow")));
  EXPECT_THAT(find(1, 2)->status, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("cached")));
  EXPECT_OK(find(2, 1)->status);
  EXPECT_OK(find(1, 3)->status);  // the first good block of session 1 in this batch
  (void)greedy_next;

  // Capacity, draft/id mismatch, too many draft tokens, ids outside the vocabulary.
  ShardBatch more;
  more.blocks = {block(2, 2, 1, 20)};
  more.token_ids.assign(20, 1);
  o = RunChain(more);
  EXPECT_THAT(o[0].status, StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("capacity")));
  ShardBatch mismatch;
  mismatch.blocks = {block(2, 3, 1, 3)};
  mismatch.blocks[0].draft.tokens = {7, 8};
  mismatch.token_ids = {5, 7, 9};
  o = RunChain(mismatch);
  EXPECT_THAT(o[0].status, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("draft tokens")));
  ShardBatch out_of_vocab;
  out_of_vocab.blocks = {block(2, 4, 1, 1)};
  out_of_vocab.token_ids = {64};
  o = RunChain(out_of_vocab);
  EXPECT_THAT(o[0].status, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("vocabulary")));

  // Malformed as a whole: ids or activations that do not match the blocks.
  ShardBatch short_ids;
  short_ids.blocks = {block(2, 5, 1, 2)};
  short_ids.token_ids = {1};
  o = RunChain(short_ids);
  EXPECT_THAT(o[0].status, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("token ids")));
  ShardBatch bad_activations;
  bad_activations.blocks = {block(2, 6, 1, 2)};
  bad_activations.activations.assign(2 * config_.hidden_size - 1, 0.5f);
  ShardForwardResult r = shards_[1]->Forward(bad_activations);
  ASSERT_EQ(r.outcomes.size(), 1u);
  EXPECT_THAT(r.outcomes[0].status, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("activation")));
  EXPECT_TRUE(r.next.blocks.empty());

  // After all that, session 2 still decodes exactly: continue it greedily and compare.
  ShardBatch next;
  next.blocks = {block(2, 7, 1, 1)};
  next.token_ids = {4};
  o = RunChain(next);
  ASSERT_OK(o[0].status);
  EXPECT_EQ(o[0].verdict->next_token, GreedyReference({4, 4}, 1)[0]);

  // Two valid blocks of one session in one batch: the second is refused, the first runs.
  ShardBatch twice;
  twice.blocks = {block(2, 8, 2, 1), block(2, 9, 3, 1)};
  twice.token_ids = {5, 6};
  o = RunChain(twice);
  ASSERT_EQ(o.size(), 2u);
  EXPECT_THAT(find(2, 9)->status, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("twice")));
  EXPECT_OK(find(2, 8)->status);
}

// A block that reaches the shards twice (a retry after a lost reply, a duplicated request) runs
// again from the same state: the same verdict, even for sampled verification (its random stream is
// restored), and the session goes on exactly as one that saw each block once.
TEST_F(ShardChainTest, ARepeatedBlockGivesTheSameVerdictAndLeavesTheSameState) {
  MakeShards({2});
  judge::VerificationConfig sampled;
  sampled.exact = spec::ExactRule::kSampled;
  sampled.target_sampling = {.temperature = 1.0f, .seed = 7};
  const engine::SamplingParams draft_sampling{.temperature = 1.0f, .seed = 3};
  Driven once{.id = 1, .committed = prompts_[1], .prompt_length = prompts_[1].size()};
  Driven twice{.id = 2, .committed = prompts_[1], .prompt_length = prompts_[1].size()};
  Open(once, sampled, draft_sampling);
  Open(twice, sampled, draft_sampling);
  for (int b = 0; b < 10; ++b) {
    std::vector<int32_t> ids_once, ids_twice;
    ShardBatch a, c;
    a.blocks = {NextBlock(once, 4, &a.token_ids)};
    c.blocks = {NextBlock(twice, 4, &c.token_ids)};
    ASSERT_EQ(once.pending.tokens, twice.pending.tokens) << "block " << b;  // same seeds, same proposals
    std::vector<spec::BlockOutcome> first = RunChain(c);
    std::vector<spec::BlockOutcome> again = RunChain(c);  // the same block again
    std::vector<spec::BlockOutcome> reference = RunChain(a);
    ASSERT_EQ(first.size(), 1u);
    ASSERT_EQ(again.size(), 1u);
    ASSERT_EQ(reference.size(), 1u);
    ASSERT_OK(first[0].status);
    ASSERT_OK(again[0].status);
    ASSERT_OK(reference[0].status);
    EXPECT_EQ(again[0].verdict->num_accepted, first[0].verdict->num_accepted) << "block " << b;
    EXPECT_EQ(again[0].verdict->next_token, first[0].verdict->next_token) << "block " << b;
    EXPECT_EQ(again[0].verdict->reasons, first[0].verdict->reasons) << "block " << b;
    EXPECT_EQ(reference[0].verdict->num_accepted, first[0].verdict->num_accepted) << "block " << b;
    EXPECT_EQ(reference[0].verdict->next_token, first[0].verdict->next_token) << "block " << b;
    Apply(twice, *again[0].verdict);
    Apply(once, *reference[0].verdict);
    // A different block under an old step is still refused.
    ShardBatch stale = c;
    stale.blocks[0].draft.tokens[0] = (stale.blocks[0].draft.tokens[0] + 1) % static_cast<int32_t>(config_.vocab_size);
    stale.token_ids.back() = stale.blocks[0].draft.tokens.back();
    stale.token_ids[stale.token_ids.size() - stale.blocks[0].draft.tokens.size()] = stale.blocks[0].draft.tokens[0];
    std::vector<spec::BlockOutcome> refused = RunChain(stale);
    ASSERT_EQ(refused.size(), 1u);
    EXPECT_THAT(refused[0].status, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("does not follow")));
  }
  EXPECT_EQ(once.committed, twice.committed);
}

TEST_F(ShardChainTest, CreateAndOpenErrors) {
  judge::JudgeHead head;
  head.weight.assign(config_.hidden_size, 0.1f);
  absl::StatusOr<std::unique_ptr<engine::ModelSlice>> first =
      engine::ModelSlice::Create(config_, *target_weights_, {0, 2}, backend_.get());
  ASSERT_OK(first.status());
  std::unique_ptr<engine::SliceRunner> first_runner = engine::RunSingleSlice(first->get());
  std::unique_ptr<engine::SliceRunner> target_runner = engine::RunSingleSlice(target_.get());
  EXPECT_THAT(TargetShard::Create(nullptr, nullptr, {}).status(), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(TargetShard::Create(first_runner.get(), &head, {}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("last target shard")));
  judge::JudgeHead wrong;
  wrong.weight.assign(7, 0.1f);
  EXPECT_THAT(TargetShard::Create(target_runner.get(), &wrong, {}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("hidden size")));

  absl::StatusOr<std::unique_ptr<TargetShard>> shard =
      TargetShard::Create(target_runner.get(), nullptr, {.max_sessions = 1});
  ASSERT_OK(shard.status());
  judge::VerificationConfig judge_config;
  judge_config.judge = judge::JudgeMode::kOn;
  EXPECT_THAT((*shard)->OpenSession(spec::SessionId(1), 16, judge_config),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("judge head")));
  EXPECT_THAT((*shard)->OpenSession(spec::SessionId(1), kCapacity + 1, {}), StatusIs(absl::StatusCode::kInvalidArgument));
  ASSERT_OK((*shard)->OpenSession(spec::SessionId(1), 16, {}));
  EXPECT_OK((*shard)->OpenSession(spec::SessionId(1), 16, {}));  // the same open again (a retry)
  EXPECT_THAT((*shard)->OpenSession(spec::SessionId(1), 32, {}), StatusIs(absl::StatusCode::kAlreadyExists));
  EXPECT_THAT((*shard)->OpenSession(spec::SessionId(2), 16, {}), StatusIs(absl::StatusCode::kResourceExhausted));
  (*shard)->CloseSession(spec::SessionId(1));
  (*shard)->CloseSession(spec::SessionId(1));
  EXPECT_OK((*shard)->OpenSession(spec::SessionId(2), 16, {}));
}

// The same shards over tensor-parallel groups of CPU ranks. Head counts divisible by 4: at 4 ranks
// each holds 2 heads and 1 kv head.
class TensorParallelShardTest : public ShardChainTest {
 protected:
  engine::LlamaConfig Config() const override {
    engine::LlamaConfig c = judge::testing::SmallConfig(64, /*context=*/kCapacity);
    c.num_layers = 4;
    c.num_heads = 8;
    c.num_kv_heads = 4;
    c.head_dim = 8;
    c.hidden_size = 64;
    c.intermediate_size = 128;
    return c;
  }

  // Greedy speculative generation of every prompt through shards cut at `cuts`, each shard over a
  // group of `tensor_parallel` ranks (0: one slice).
  std::vector<Driven> Run(const std::vector<int64_t>& cuts, int tensor_parallel, int64_t k, int64_t max_new) {
    MakeShards(cuts, nullptr, tensor_parallel);
    worker_ = std::move(*DraftWorker::Create(draft_.get(), {}));
    std::vector<Driven> sessions;
    for (size_t i = 0; i < prompts_.size(); ++i) {
      sessions.push_back({i + 1, prompts_[i], prompts_[i].size()});
      Open(sessions.back(), {});
    }
    Generate(sessions, k, max_new);
    return sessions;
  }
};

using ::verdict::testing::RelativeError;

// Tolerance of the activations: the split products sum in another order (W partial sums, then
// over ranks), a few ulps per layer (engine/tensor_parallel_test.cc).
constexpr double kActivationTolerance = 1e-4;

TEST_F(TensorParallelShardTest, VerdictsAndActivationsEqualTheSingleSlice) {
  constexpr int64_t kMaxNew = 24;
  constexpr int64_t kWindow = 4;
  for (const std::vector<int64_t>& cuts : std::vector<std::vector<int64_t>>{{}, {2}}) {
    const std::vector<Driven> reference = Run(cuts, 0, kWindow, kMaxNew);
    const std::vector<std::vector<float>> reference_activations = sent_activations_;
    EXPECT_EQ(reference_activations.empty(), cuts.empty());
    int64_t rollbacks = 0;
    for (const Driven& s : reference) {
      std::vector<int32_t> got(s.committed.begin() + s.prompt_length, s.committed.end());
      got.resize(kMaxNew);
      EXPECT_THAT(got, ElementsAreArray(GreedyReference(prompts_[s.id - 1], kMaxNew)));
      for (const spec::Verdict& v : s.verdicts) rollbacks += v.num_accepted < kWindow;
    }
    EXPECT_GT(rollbacks, 0) << "the noisy draft should have some draft tokens rejected";

    for (int tensor_parallel : {2, 4}) {
      SCOPED_TRACE(::testing::Message() << "shards " << cuts.size() + 1 << ", ranks " << tensor_parallel);
      const std::vector<Driven> got = Run(cuts, tensor_parallel, kWindow, kMaxNew);
      ASSERT_EQ(got.size(), reference.size());
      for (size_t i = 0; i < got.size(); ++i) {
        EXPECT_THAT(got[i].committed, ElementsAreArray(reference[i].committed)) << "prompt " << i;
        ASSERT_EQ(got[i].verdicts.size(), reference[i].verdicts.size()) << "prompt " << i;
        for (size_t b = 0; b < got[i].verdicts.size(); ++b) {
          const spec::Verdict& v = got[i].verdicts[b];
          const spec::Verdict& want = reference[i].verdicts[b];
          EXPECT_EQ(v.num_accepted, want.num_accepted) << "prompt " << i << ", block " << b;
          EXPECT_EQ(v.next_token, want.next_token) << "prompt " << i << ", block " << b;
          EXPECT_THAT(v.reasons, ElementsAreArray(want.reasons)) << "prompt " << i << ", block " << b;
        }
      }
      ASSERT_EQ(sent_activations_.size(), reference_activations.size());
      double worst = 0;
      for (size_t b = 0; b < sent_activations_.size(); ++b) {
        ASSERT_EQ(sent_activations_[b].size(), reference_activations[b].size()) << "batch " << b;
        worst = std::max(worst, RelativeError(sent_activations_[b], reference_activations[b]));
      }
      EXPECT_LE(worst, kActivationTolerance);
      if (!cuts.empty()) std::printf("  %d ranks: activations within %.2e of the single slice\n", tensor_parallel, worst);
    }
  }
}

TEST_F(TensorParallelShardTest, RunnersRefuseCachesOfAnotherRunner) {
  absl::StatusOr<std::unique_ptr<engine::TensorParallelGroup>> group = engine::TensorParallelGroup::Create(
      config_, *target_weights_, {0, config_.num_layers}, 2,
      [](int) -> absl::StatusOr<std::unique_ptr<engine::Backend>> {
        return engine::CreateCpuBackend(engine::CpuBackendOptions{/*num_threads=*/1});
      });
  ASSERT_OK(group.status());
  std::unique_ptr<engine::SliceRunner> split = engine::RunTensorParallel(std::move(*group));
  std::unique_ptr<engine::SliceRunner> whole = engine::RunSingleSlice(target_.get());
  EXPECT_TRUE(split->is_first() && split->is_last());
  EXPECT_EQ(split->config().hidden_size, whole->config().hidden_size);
  absl::StatusOr<std::unique_ptr<engine::SequenceCache>> split_cache = split->NewCache(8);
  absl::StatusOr<std::unique_ptr<engine::SequenceCache>> whole_cache = whole->NewCache(8);
  ASSERT_OK(split_cache.status());
  ASSERT_OK(whole_cache.status());
  EXPECT_EQ((*split_cache)->capacity(), 8);
  const std::vector<int32_t> ids = {1, 2, 3};
  engine::ForwardResult result;
  engine::RunnerBatch batch;
  batch.token_ids = ids;
  batch.sequences = {{whole_cache->get(), 3}};
  EXPECT_THAT(split->Forward(batch, &result), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("runner")));
  batch.sequences = {{split_cache->get(), 3}};
  EXPECT_THAT(whole->Forward(batch, &result), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("runner")));
  EXPECT_EQ((*whole_cache)->length(), 0);
  ASSERT_OK(split->Forward(batch, &result));
  EXPECT_EQ((*split_cache)->length(), 3);
  ASSERT_OK((*split_cache)->Truncate(1));
  EXPECT_EQ((*split_cache)->length(), 1);
  EXPECT_THAT((*split_cache)->Truncate(2), StatusIs(absl::StatusCode::kInvalidArgument));
  split_cache->reset();  // before its runner
}

}  // namespace
}  // namespace verdict::workers
