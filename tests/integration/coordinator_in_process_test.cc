// SPDX-License-Identifier: Apache-2.0
// Integration: the coordinator over in-process draft and target clients (the real worker cores and engine
// loops, no network): greedy output equals the target alone for every layout, window and
// pipelining mode; 32 concurrent sessions each equal their solo output; pipelined guesses hit; a
// failing draft degrades to target-only decoding and recovers; a failing shard fails only its
// session; cancellation releases every worker's state; bad requests are refused.
#include "clients/chaos/rpc_chaos.h"
#include "coordinator/coordinator.h"
#include "coordinator/lease_renewer.h"

#include <algorithm>
#include <cstdio>
#include <random>
#include <thread>

#include "absl/synchronization/notification.h"
#include "workers/in_process_clients.h"
#include "common/testing/status_matchers.h"
#include "engine/generator.h"
#include "engine/kernels/matmul.h"
#include "engine/slice_runner.h"
#include "judge/testing/reference_loop.h"
#include "spec/speculation_params.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "judge/testing/generic_kernels.h"
#include "judge/testing/paired_models.h"

namespace verdict::coordinator {
namespace {

using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::verdict::testing::StatusIs;

constexpr int64_t kContext = 192;

struct Outcome {
  std::vector<int32_t> tokens;
  absl::StatusOr<GenerationSummary> summary = absl::UnknownError("not done");
  int chunks = 0;
};

// Runs generations and waits for them.
class Waiter {
 public:
  GenerationCallbacks Callbacks(Outcome* out, absl::Notification* done, int stop_after_chunks = -1) {
    GenerationCallbacks cb;
    cb.on_tokens = [out, stop_after_chunks](absl::Span<const int32_t> tokens) {
      out->tokens.insert(out->tokens.end(), tokens.begin(), tokens.end());
      ++out->chunks;
      return stop_after_chunks < 0 || out->chunks < stop_after_chunks;
    };
    cb.on_done = [out, done](absl::StatusOr<GenerationSummary> summary) {
      out->summary = std::move(summary);
      done->Notify();
    };
    return cb;
  }
};

// A draft client that forwards to another one but can be made to fail (as a dead worker would).
class FlakyDraftClient : public clients::DraftClient {
 public:
  explicit FlakyDraftClient(clients::DraftClient* inner) : inner_(inner) {}
  void OpenSession(const clients::DraftSessionSpec& session, clients::StatusCallback done) override {
    if (down_) {
      done(absl::UnavailableError("draft worker 127.0.0.1:1 is down"));
      return;
    }
    inner_->OpenSession(session, std::move(done));
  }
  void Propose(const spec::ProposeRequest& request,
               std::function<void(absl::StatusOr<spec::Proposal>)> done) override {
    const int n = ++proposals_;
    if (down_ || (fail_from_ > 0 && n >= fail_from_ && (recover_at_ < 0 || n < recover_at_))) {
      if (recover_at_ < 0) down_ = true;
      done(absl::UnavailableError("draft worker 127.0.0.1:1 is down"));
      return;
    }
    inner_->Propose(request, std::move(done));
  }
  void CloseSession(spec::DraftSessionId id) override { inner_->CloseSession(id); }
  void RenewLease(const spec::LeaseRenewal& renewal) override { inner_->RenewLease(renewal); }
  std::atomic<int> fail_from_{0};
  std::atomic<int> recover_at_{-1};
  std::atomic<bool> down_{false};

 private:
  clients::DraftClient* inner_;
  std::atomic<int> proposals_{0};
};

// A target client whose verification fails for one session, as if a shard died under it.
class FailingTargetClient : public clients::TargetClient {
 public:
  explicit FailingTargetClient(clients::TargetClient* inner) : inner_(inner) {}
  void OpenSession(const clients::TargetSessionSpec& session, clients::StatusCallback done) override {
    inner_->OpenSession(session, std::move(done));
  }
  void Verify(const spec::ShardBlock& block, std::vector<int32_t> ids,
              std::function<void(spec::BlockOutcome)> done) override {
    // The n-th session this coordinator started (its ids carry the incarnation in the high bits).
    if ((block.session_id.value() & 0xffffffffu) == fail_session_ && block.step >= 3) {
      done({block.session_id, block.step, absl::UnavailableError("target shard 1 (127.0.0.1:2) is unreachable"), std::nullopt});
      return;
    }
    inner_->Verify(block, std::move(ids), std::move(done));
  }
  void CloseSession(spec::SessionId id) override { inner_->CloseSession(id); }
  void RenewLease(const spec::LeaseRenewal& renewal) override { inner_->RenewLease(renewal); }
  int num_shards() const override { return inner_->num_shards(); }
  std::atomic<uint64_t> fail_session_{0};

 private:
  clients::TargetClient* inner_;
};

class CoordinatorTest : public judge::testing::GenericKernelsTest {
 protected:
  void SetUp() override {
    backend_ = engine::CreateCpuBackend({.num_threads = 1});
    config_ = judge::testing::SmallConfig(64, kContext);
    config_.num_layers = 3;
    target_weights_ = judge::testing::MakeWeights(config_, 1, 4.0f);
    draft_weights_ = judge::testing::MakeWeights(config_, 1, 4.0f, /*noise=*/0.04f, /*noise_seed=*/5);
    target_ = judge::testing::MakeModel(config_, *target_weights_, backend_.get());
    draft_ = judge::testing::MakeModel(config_, *draft_weights_, backend_.get());
    std::mt19937 rng(3);
    for (int i = 0; i < 32; ++i) {
      std::vector<int32_t> p(1 + rng() % 20);
      for (int32_t& t : p) t = static_cast<int32_t>(rng() % config_.vocab_size);
      prompts_.push_back(p);
    }
  }

  // The cluster in this process: `num_shards` target shards and the draft worker. With a chaos spec
  // (clients/chaos/rpc_chaos.h) the coordinator's calls go through the fault injection, and the
  // workers hold sessions on short leases the coordinator renews.
  void Build(int num_shards, const engine::ModelSlice* draft_model = nullptr, CoordinatorOptions options = {},
             const std::string& chaos_spec = "") {
    renewer_.reset();
    coordinator_.reset();
    chaos_draft_.reset();
    chaos_target_.reset();
    chaos_.reset();
    target_client_.reset();
    draft_loop_.reset();
    runners_.clear();
    slices_.clear();
    std::vector<std::unique_ptr<workers::TargetShard>> shards;
    for (int i = 0; i < num_shards; ++i) {
      const int64_t begin = config_.num_layers * i / num_shards, end = config_.num_layers * (i + 1) / num_shards;
      slices_.push_back(std::move(*engine::ModelSlice::Create(config_, *target_weights_, {begin, end}, backend_.get())));
      runners_.push_back(engine::RunSingleSlice(slices_.back().get()));
      shards.push_back(std::move(*workers::TargetShard::Create(runners_.back().get(), nullptr, {})));
    }
    const absl::Duration lease = chaos_spec.empty() ? absl::ZeroDuration() : kChaosLease;
    target_client_ = std::make_unique<workers::InProcessTargetClient>(
        std::move(shards), workers::ShardLoopOptions{.session_lease = lease});
    engine::ModelSlice* d = const_cast<engine::ModelSlice*>(draft_model ? draft_model : draft_.get());
    draft_loop_ = std::make_unique<workers::DraftWorkerLoop>(std::move(*workers::DraftWorker::Create(d, {})),
                                                            workers::DraftLoopOptions{.session_lease = lease});
    draft_client_ = std::make_unique<workers::InProcessDraftClient>(draft_loop_.get());
    flaky_ = std::make_unique<FlakyDraftClient>(draft_client_.get());
    failing_ = std::make_unique<FailingTargetClient>(target_client_.get());
    options.target_context = kContext;
    options.draft_context = kContext;
    options.draft_retry_interval = absl::ZeroDuration();  // retry at the next step: deterministic
    clients::DraftClient* draft_calls = flaky_.get();
    clients::TargetClient* target_calls = failing_.get();
    if (!chaos_spec.empty()) {
      absl::StatusOr<clients::ChaosOptions> chaos = clients::ParseChaosSpec(chaos_spec);
      ASSERT_OK(chaos.status());
      chaos_ = std::make_unique<clients::RpcChaos>(*chaos);
      chaos_draft_ = std::make_unique<clients::ChaosDraftClient>(draft_calls, chaos_.get());
      chaos_target_ = std::make_unique<clients::ChaosTargetClient>(target_calls, chaos_.get());
      draft_calls = chaos_draft_.get();
      target_calls = chaos_target_.get();
    }
    coordinator_ = std::make_unique<Coordinator>(options, draft_calls, target_calls);
    if (!chaos_spec.empty()) {
      renewer_ = std::make_unique<LeaseRenewer>(coordinator_.get(), kChaosLease, draft_calls, target_calls);
    }
  }
  static constexpr absl::Duration kChaosLease = absl::Milliseconds(400);

  GenerationRequest Request(const std::vector<int32_t>& prompt, int64_t k, int64_t max_new = 40) {
    GenerationRequest r;
    r.prompt = prompt;
    r.max_new_tokens = max_new;
    r.speculation.window.k = k;
    return r;
  }

  // Starts one generation per prompt at once (window 1 + i % 8, `max_new` tokens each).
  void StartEveryPrompt(int64_t max_new, std::vector<Outcome>* outs,
                        std::vector<std::unique_ptr<absl::Notification>>* done) {
    for (size_t i = 0; i < prompts_.size(); ++i) {
      done->push_back(std::make_unique<absl::Notification>());
      ASSERT_OK(coordinator_->Start(Request(prompts_[i], 1 + static_cast<int64_t>(i % 8), max_new),
                                    waiter_.Callbacks(&(*outs)[i], done->back().get()))
                    .status());
    }
  }

  Outcome Run(GenerationRequest request) {
    Outcome out;
    absl::Notification done;
    absl::StatusOr<spec::SessionId> id = coordinator_->Start(std::move(request), waiter_.Callbacks(&out, &done));
    EXPECT_OK(id.status());
    if (id.ok()) {
      EXPECT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(60)));
    }
    return out;
  }

  std::vector<int32_t> Greedy(const std::vector<int32_t>& prompt, int64_t max_new) {
    engine::GenerateOptions options;
    options.max_new_tokens = max_new;
    return engine::Generate(*target_, prompt, options)->tokens;
  }

  // Waits until every worker released its sessions (closing is asynchronous; a lost close waits
  // for a lease renewal).
  void ExpectAllReleased() {
    for (int i = 0; i < 1000; ++i) {
      const CoordinatorSnapshot snap = coordinator_->Snapshot();
      bool clean = snap.sessions.empty() && snap.releasing == 0 && draft_loop_->stats().sessions == 0 &&
                   draft_loop_->stats().queue_depth == 0;
      for (int s = 0; s < target_client_->num_shards(); ++s) clean = clean && target_client_->loop(s).stats().sessions == 0;
      if (clean) return;
      absl::SleepFor(absl::Milliseconds(10));
    }
    ADD_FAILURE() << "worker sessions were not released";
  }

  std::unique_ptr<engine::Backend> backend_;
  engine::LlamaConfig config_;
  std::unique_ptr<judge::testing::InMemoryWeights> target_weights_, draft_weights_;
  std::unique_ptr<engine::ModelSlice> target_, draft_;
  std::vector<std::unique_ptr<engine::ModelSlice>> slices_;
  std::vector<std::unique_ptr<engine::SliceRunner>> runners_;  // over slices_
  std::unique_ptr<workers::InProcessTargetClient> target_client_;
  std::unique_ptr<workers::DraftWorkerLoop> draft_loop_;
  std::unique_ptr<workers::InProcessDraftClient> draft_client_;
  std::unique_ptr<FlakyDraftClient> flaky_;
  std::unique_ptr<FailingTargetClient> failing_;
  std::unique_ptr<clients::RpcChaos> chaos_;
  std::unique_ptr<clients::ChaosDraftClient> chaos_draft_;
  std::unique_ptr<clients::ChaosTargetClient> chaos_target_;
  std::unique_ptr<Coordinator> coordinator_;
  std::unique_ptr<LeaseRenewer> renewer_;
  std::vector<std::vector<int32_t>> prompts_;
  Waiter waiter_;
};

TEST_F(CoordinatorTest, GreedyOutputEqualsTheTargetAloneForEveryLayoutAndWindow) {
  for (int shards : {1, 2, 3}) {
    for (bool pipelined : {true, false}) {
      Build(shards, nullptr, {.pipelined = pipelined});
      for (int64_t k : {1, 4, 9, 0}) {  // 0: adaptive
        for (int p = 0; p < 3; ++p) {
          GenerationRequest r = Request(prompts_[p], k == 0 ? 4 : k);
          r.speculation.window.adaptive = k == 0;
          Outcome out = Run(r);
          ASSERT_OK(out.summary.status());
          EXPECT_THAT(out.tokens, ElementsAreArray(Greedy(prompts_[p], 40)))
              << shards << " shards, pipelined " << pipelined << ", k " << k << ", prompt " << p;
          EXPECT_EQ(out.summary->finish_reason, FinishReason::kLength);
          EXPECT_EQ(out.summary->stats.tokens, 40);
          EXPECT_LT(out.summary->stats.target_passes, 40);  // speculation saved passes
          EXPECT_FALSE(out.summary->stats.degraded);
        }
      }
      ExpectAllReleased();
    }
  }
}

// Issue 21: every kind of fault on every coordinator-worker call at once (drops of requests and of
// replies, delays, duplicates, failures). The workers take a repeated open or block as the same one
// and the coordinator sends transient target failures again, so every session still ends with
// exactly the target's greedy output, or (when a call failed three times running) with a
// retryable code; nothing is left open on any worker, lost closes included.
TEST_F(CoordinatorTest, RpcFaultsNeitherCorruptNorLeakAnything) {
  Build(2, nullptr, {.max_sessions = 64},
        "seed=21;*=drop_request:0.02@1ms,drop_reply:0.02,delay:0.04@2ms,duplicate:0.05,fail:0.02");
  std::vector<Outcome> outs(prompts_.size());
  std::vector<std::unique_ptr<absl::Notification>> done;
  StartEveryPrompt(24, &outs, &done);
  int identical = 0;
  for (size_t i = 0; i < prompts_.size(); ++i) {
    ASSERT_TRUE(done[i]->WaitForNotificationWithTimeout(absl::Seconds(120))) << "session " << i << " hung";
    if (outs[i].summary.ok()) {
      EXPECT_THAT(outs[i].tokens, ElementsAreArray(Greedy(prompts_[i], 24))) << "session " << i;
      ++identical;
    } else {
      const absl::StatusCode code = outs[i].summary.status().code();
      EXPECT_TRUE(code == absl::StatusCode::kUnavailable || code == absl::StatusCode::kDeadlineExceeded)
          << outs[i].summary.status();
    }
  }
  std::printf("  %d of %zu sessions identical; faults injected: %s; target retries %lld\n", identical,
              prompts_.size(), chaos_->Summary().c_str(),
              static_cast<long long>(coordinator_->Snapshot().totals.target_retries));
  EXPECT_GE(identical, 28);
  for (clients::ChaosFault f : {clients::ChaosFault::kDropRequest, clients::ChaosFault::kDropReply,
                                clients::ChaosFault::kDelay, clients::ChaosFault::kDuplicate,
                                clients::ChaosFault::kFail}) {
    EXPECT_GT(chaos_->total(f), 0) << clients::ChaosFaultName(f);
  }
  EXPECT_GT(coordinator_->Snapshot().totals.target_retries, 0);
  ExpectAllReleased();
}

TEST_F(CoordinatorTest, PipelinedGuessesHitWhenTheDraftAgrees) {
  Build(2, target_.get());  // draft == target: every block is accepted whole
  Outcome out = Run(Request(prompts_[0], 5, 60));
  ASSERT_OK(out.summary.status());
  EXPECT_THAT(out.tokens, ElementsAreArray(Greedy(prompts_[0], 60)));
  const spec::SpeculationStats& st = out.summary->stats;
  EXPECT_EQ(st.target_passes, 10);  // 60 tokens, 6 per pass
  EXPECT_GE(st.optimistic_blocks, 8);
  EXPECT_GE(st.optimistic_hits, 8);  // guesses held: the next block went out with no draft wait
}

TEST_F(CoordinatorTest, ThirtyTwoConcurrentSessionsEachEqualTheirSoloOutput) {
  Build(2, nullptr, {.max_sessions = 64});
  std::vector<Outcome> outs(prompts_.size());
  std::vector<std::unique_ptr<absl::Notification>> done;
  StartEveryPrompt(24, &outs, &done);
  for (size_t i = 0; i < prompts_.size(); ++i) {
    ASSERT_TRUE(done[i]->WaitForNotificationWithTimeout(absl::Seconds(120)));
    ASSERT_OK(outs[i].summary.status());
    EXPECT_THAT(outs[i].tokens, ElementsAreArray(Greedy(prompts_[i], 24))) << "session " << i;
  }
  // The shards batched blocks of different sessions together.
  EXPECT_LT(target_client_->loop(0).stats().forward_passes, target_client_->loop(0).stats().blocks);
  ExpectAllReleased();
  EXPECT_EQ(coordinator_->Snapshot().totals.requests, 32);
}

// Pipeline concurrency: while shard 1 runs some sessions' blocks, shard 0 runs others'. With these
// tiny models a forward pass takes ~0.1 ms, so one round of 32 sessions may by chance never
// overlap; rounds repeat (at most 8) until the shards' busy intervals intersect.
TEST_F(CoordinatorTest, ShardsWorkOnDifferentSessionsAtTheSameTime) {
  Build(2, nullptr, {.max_sessions = 64});
  int64_t overlap = 0, busy0 = 0;
  for (int round = 0; round < 8 && overlap == 0; ++round) {
    std::vector<Outcome> outs(prompts_.size());
    std::vector<std::unique_ptr<absl::Notification>> done;
    for (size_t i = 0; i < prompts_.size(); ++i) {
      done.push_back(std::make_unique<absl::Notification>());
      ASSERT_OK(coordinator_->Start(Request(prompts_[i], 4, 40), waiter_.Callbacks(&outs[i], done[i].get())).status());
    }
    for (auto& d : done) ASSERT_TRUE(d->WaitForNotificationWithTimeout(absl::Seconds(120)));
    const auto a = target_client_->loop(0).recent_forward_intervals();
    const auto b = target_client_->loop(1).recent_forward_intervals();
    busy0 = 0;
    for (const auto& [s0, e0] : a) {
      busy0 += e0 - s0;
      for (const auto& [s1, e1] : b) overlap += std::max<int64_t>(0, std::min(e0, e1) - std::max(s0, s1));
    }
  }
  std::printf("shard 0 busy %.2f ms, of which %.2f ms while shard 1 was busy too\n", busy0 / 1e3, overlap / 1e3);
  EXPECT_GT(overlap, 0);
}

TEST_F(CoordinatorTest, DraftFailureDegradesToTargetOnlyAndRecovers) {
  Build(2);
  flaky_->fail_from_ = 3;  // the worker goes down for good after two proposals
  Outcome out = Run(Request(prompts_[1], 4, 30));
  ASSERT_OK(out.summary.status());
  EXPECT_THAT(out.tokens, ElementsAreArray(Greedy(prompts_[1], 30)));
  EXPECT_TRUE(out.summary->stats.degraded);
  EXPECT_GT(out.summary->stats.target_only_passes, 10);
  EXPECT_GE(out.summary->stats.draft_failures, 1);

  Build(2);
  flaky_->fail_from_ = 3;
  flaky_->recover_at_ = 5;  // two failed proposals, then the worker answers again
  out = Run(Request(prompts_[1], 4, 40));
  ASSERT_OK(out.summary.status());
  EXPECT_THAT(out.tokens, ElementsAreArray(Greedy(prompts_[1], 40)));
  EXPECT_TRUE(out.summary->stats.degraded);
  EXPECT_GT(out.summary->stats.proposed, 8);  // speculation resumed after the reopen
  ExpectAllReleased();
}

TEST_F(CoordinatorTest, ShardFailureFailsOnlyItsSession) {
  Build(2);
  failing_->fail_session_ = 2;  // the second session started
  Outcome a, b;
  absl::Notification da, db;
  ASSERT_OK(coordinator_->Start(Request(prompts_[0], 3, 30), waiter_.Callbacks(&a, &da)).status());
  ASSERT_OK(coordinator_->Start(Request(prompts_[1], 3, 30), waiter_.Callbacks(&b, &db)).status());
  ASSERT_TRUE(da.WaitForNotificationWithTimeout(absl::Seconds(60)));
  ASSERT_TRUE(db.WaitForNotificationWithTimeout(absl::Seconds(60)));
  ASSERT_OK(a.summary.status());
  EXPECT_THAT(a.tokens, ElementsAreArray(Greedy(prompts_[0], 30)));
  EXPECT_THAT(b.summary.status(), StatusIs(absl::StatusCode::kUnavailable, HasSubstr("target shard 1")));
  ExpectAllReleased();
  // Later requests are fine.
  Outcome c = Run(Request(prompts_[2], 3, 20));
  ASSERT_OK(c.summary.status());
  EXPECT_THAT(c.tokens, ElementsAreArray(Greedy(prompts_[2], 20)));
  EXPECT_EQ(coordinator_->Snapshot().totals.requests_failed, 1);
}

TEST_F(CoordinatorTest, CancelAndEarlyStopReleaseEveryWorkersState) {
  Build(3);
  Outcome out;
  absl::Notification done;
  absl::StatusOr<spec::SessionId> id = coordinator_->Start(Request(prompts_[4], 2, 150), waiter_.Callbacks(&out, &done));
  ASSERT_OK(id.status());
  coordinator_->Cancel(*id);
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(60)));
  EXPECT_THAT(out.summary.status(), StatusIs(absl::StatusCode::kCancelled));
  ExpectAllReleased();
  coordinator_->Cancel(*id);  // unknown by now: ignored

  // A stop string in the text layer ends the generation after the second chunk.
  Outcome stopped;
  absl::Notification done2;
  ASSERT_OK(coordinator_->Start(Request(prompts_[5], 2, 100), waiter_.Callbacks(&stopped, &done2, 2)).status());
  ASSERT_TRUE(done2.WaitForNotificationWithTimeout(absl::Seconds(60)));
  ASSERT_OK(stopped.summary.status());
  EXPECT_EQ(stopped.summary->finish_reason, FinishReason::kStop);
  EXPECT_EQ(stopped.chunks, 2);
  ExpectAllReleased();

  // A stop token.
  const std::vector<int32_t> reference = Greedy(prompts_[6], 30);
  GenerationRequest r = Request(prompts_[6], 4, 30);
  r.stop_token_ids = {reference[10]};
  Outcome st = Run(r);
  ASSERT_OK(st.summary.status());
  EXPECT_EQ(st.summary->finish_reason, FinishReason::kStop);
  const auto first = std::find(reference.begin(), reference.end(), reference[10]);
  EXPECT_THAT(st.tokens, ElementsAreArray(std::vector<int32_t>(reference.begin(), first + 1)));
}

TEST_F(CoordinatorTest, BadRequestsAreRefused) {
  Build(1, nullptr, {.max_sessions = 1});
  Outcome out;
  absl::Notification done;
  EXPECT_THAT(coordinator_->Start(Request({}, 4), waiter_.Callbacks(&out, &done)).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no tokens")));
  EXPECT_THAT(coordinator_->Start(Request(std::vector<int32_t>(kContext, 1), 4), waiter_.Callbacks(&out, &done)).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("context")));
  EXPECT_THAT(coordinator_->Start(Request({1}, 4, 0), waiter_.Callbacks(&out, &done)).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("max tokens")));
  EXPECT_THAT(coordinator_->Start(Request({1}, 0), waiter_.Callbacks(&out, &done)).status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(coordinator_->Start(Request({1}, spec::kMaxDraftTokens + 1), waiter_.Callbacks(&out, &done)).status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
  // Session limit: one long generation holds the only slot.
  Outcome first;
  absl::Notification first_done;
  absl::StatusOr<spec::SessionId> id = coordinator_->Start(Request({1, 2}, 2, 150), waiter_.Callbacks(&first, &first_done));
  ASSERT_OK(id.status());
  EXPECT_THAT(coordinator_->Start(Request({1}, 2), waiter_.Callbacks(&out, &done)).status(),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("maximum")));
  coordinator_->Cancel(*id);
  ASSERT_TRUE(first_done.WaitForNotificationWithTimeout(absl::Seconds(60)));
  ExpectAllReleased();
  // A context-limited generation ends with kContext.
  Outcome ctx = Run(Request(std::vector<int32_t>(kContext - 5, 3), 2, 50));
  ASSERT_OK(ctx.summary.status());
  EXPECT_EQ(ctx.summary->finish_reason, FinishReason::kContext);
  EXPECT_EQ(ctx.tokens.size(), 5u);
}

// `verdict generate --draft` and the judge evaluation run the coordinator over
// workers::InProcessCluster; the plain reference loop (judge::testing::ReferenceSpeculativeLoop)
// must agree with it, token for token and pass for pass, for every named policy, greedy and sampled
// (not pipelined: drafting ahead consumes the draft's random stream differently).
TEST_F(CoordinatorTest, EveryNamedPolicyEqualsTheInProcessDecoder) {
  judge::JudgeHead head;
  std::mt19937 rng(17);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (int64_t i = 0; i < config_.hidden_size; ++i) head.weight.push_back(normal(rng));
  head.bias = 0.5f;
  head.threshold = 0.6f;
  int64_t lossy_accepted = 0;
  for (const char* name : {"exact", "judge", "judge-shadow", "lossy-prob", "lossy-typical", "lossy-kl"}) {
    for (float temperature : {0.0f, 0.8f}) {
      SCOPED_TRACE(absl::StrCat(name, " at temperature ", temperature));
      ASSERT_OK_AND_ASSIGN(spec::PolicySpelling policy, spec::ParsePolicyName(name));
      const spec::SamplingParams sampling{.temperature = temperature, .top_k = 0, .top_p = 1.0f, .seed = 11};
      const float lossy_threshold = policy.policy == spec::Policy::kLossyKl ? 0.5f : 0.05f;
      ASSERT_OK_AND_ASSIGN(std::unique_ptr<workers::InProcessCluster> cluster,
                           workers::InProcessCluster::Create(target_.get(), draft_.get(), &head));
      Outcome out;
      {
        Coordinator coordinator({.max_sessions = 1, .target_context = kContext, .draft_context = kContext,
                                 .pipelined = false},
                                cluster->draft(), cluster->target());
        GenerationRequest r = Request(prompts_[3], 5, 30);
        r.sampling = sampling;
        r.speculation.policy = policy.policy;
        r.speculation.lossy_threshold = lossy_threshold;
        absl::Notification done;
        ASSERT_OK(coordinator.Start(std::move(r), waiter_.Callbacks(&out, &done)).status());
        ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(60)));
      }
      ASSERT_OK(out.summary.status());

      judge::SpeculativeOptions options;
      options.max_new_tokens = 30;
      ASSERT_OK_AND_ASSIGN(options.verification, judge::PolicyConfig(name, sampling));
      options.verification.judge_threshold = head.threshold;
      options.verification.lossy_threshold = lossy_threshold;
      options.head = &head;
      options.window.k = 5;
      ASSERT_OK_AND_ASSIGN(judge::SpeculativeResult reference,
                           judge::testing::ReferenceSpeculativeLoop(*target_, *draft_, prompts_[3], options));
      EXPECT_THAT(out.tokens, ElementsAreArray(reference.tokens));
      const spec::SpeculationStats& got = out.summary->stats;
      EXPECT_EQ(got.target_passes, reference.stats.target_passes);
      EXPECT_EQ(got.accepted_exact, reference.stats.accepted_exact);
      EXPECT_EQ(got.accepted_judge, reference.stats.accepted_judge);
      EXPECT_EQ(got.accepted_lossy, reference.stats.accepted_lossy);
      EXPECT_EQ(got.shadow_judge_only, reference.stats.shadow_judge_only);
      lossy_accepted += got.accepted_judge + got.accepted_lossy;
    }
  }
  EXPECT_GT(lossy_accepted, 0) << "the lossy policies should accept some mismatches here";
}

}  // namespace
}  // namespace verdict::coordinator
