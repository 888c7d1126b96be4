// SPDX-License-Identifier: Apache-2.0
// The workers' engine loops under failures and floods. Coordinator leases: the bookkeeping on its
// own, and the draft worker's and a target shard's loops releasing exactly the sessions of an owner
// that stopped renewing (its KV caches freed, later requests for them answered NOT_FOUND naming the
// expired lease) and those a renewal no longer names (a lost close), while a renewing owner and
// lease-less ids (owner 0) keep theirs. Backpressure: a full queue refuses new work with
// RESOURCE_EXHAUSTED and still takes closes.
#include "workers/session_leases.h"

#include <memory>
#include <random>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "common/testing/status_matchers.h"
#include "engine/slice_runner.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "judge/testing/generic_kernels.h"
#include "judge/testing/paired_models.h"
#include "workers/draft_worker.h"
#include "workers/draft_worker_loop.h"
#include "workers/target_shard.h"
#include "workers/target_shard_loop.h"

namespace verdict::workers {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::verdict::testing::StatusIs;

constexpr uint32_t kDeadOwner = 0xdead0001;
constexpr uint32_t kLiveOwner = 0x11110002;

uint64_t Id(uint32_t owner, uint32_t n) { return (uint64_t{owner} << 32) | n; }

TEST(SessionLeasesTest, AnOwnerExpiresOneLeaseAfterItsLastRenewal) {
  const absl::Time t0 = absl::FromUnixSeconds(1000);
  SessionLeases leases(absl::Seconds(30));
  EXPECT_EQ(SessionLeases::OwnerOf(Id(kDeadOwner, 7)), kDeadOwner);
  EXPECT_EQ(leases.NextExpiry(), absl::InfiniteFuture());

  leases.Opened(Id(kDeadOwner, 1), t0);                      // the default lease starts
  leases.Opened(Id(kDeadOwner, 2), t0 + absl::Seconds(20));  // later sessions do not extend it
  EXPECT_TRUE(leases.Renew(kLiveOwner, absl::Seconds(10), {}, t0).empty());  // a renewal names its length
  leases.Opened(5, t0);  // owner 0 holds no lease
  EXPECT_TRUE(leases.Renew(0, absl::Seconds(1), {}, t0).empty());
  EXPECT_EQ(leases.NextExpiry(), t0 + absl::Seconds(10));

  EXPECT_TRUE(leases.Renew(kLiveOwner, absl::ZeroDuration(), {}, t0 + absl::Seconds(9)).empty());  // the default
  EXPECT_TRUE(leases.TakeExpired(t0 + absl::Seconds(29)).empty());
  EXPECT_THAT(leases.TakeExpired(t0 + absl::Seconds(30)), ElementsAre(kDeadOwner));
  EXPECT_TRUE(leases.RecentlyExpired(kDeadOwner));
  EXPECT_FALSE(leases.RecentlyExpired(kLiveOwner));
  EXPECT_TRUE(leases.TakeExpired(t0 + absl::Seconds(30)).empty());  // taken once
  EXPECT_EQ(leases.NextExpiry(), t0 + absl::Seconds(39));
  EXPECT_THAT(leases.TakeExpired(t0 + absl::Seconds(100)), ElementsAre(kLiveOwner));
  EXPECT_EQ(leases.NextExpiry(), absl::InfiniteFuture());

  // A coordinator that comes back starts afresh; its expired sessions are not remembered.
  EXPECT_TRUE(leases.Renew(kDeadOwner, absl::Seconds(5), {}, t0 + absl::Seconds(200)).empty());
  EXPECT_EQ(leases.NextExpiry(), t0 + absl::Seconds(205));
}

TEST(SessionLeasesTest, ARenewalReleasesSessionsItNoLongerNamesOnceALeaseOld) {
  const absl::Time t0 = absl::FromUnixSeconds(1000);
  const absl::Duration lease = absl::Seconds(10);
  SessionLeases leases(lease);
  leases.Opened(Id(kLiveOwner, 1), t0);                      // closed on the coordinator, close lost
  leases.Opened(Id(kLiveOwner, 2), t0);                      // still held
  leases.Opened(Id(kLiveOwner, 3), t0 + absl::Seconds(8));   // opened after the renewal's snapshot
  leases.Opened(Id(kLiveOwner, 4), t0);                      // closed properly
  leases.Closed(Id(kLiveOwner, 4));
  leases.Opened(Id(kDeadOwner, 1), t0);                      // another owner's: not this renewal's
  const uint64_t live[] = {Id(kLiveOwner, 2)};
  EXPECT_TRUE(leases.Renew(kLiveOwner, lease, live, t0 + absl::Seconds(9)).empty());  // none a lease old
  EXPECT_THAT(leases.Renew(kLiveOwner, lease, live, t0 + absl::Seconds(10)), ElementsAre(Id(kLiveOwner, 1)));
  EXPECT_TRUE(leases.Renew(kLiveOwner, lease, live, t0 + absl::Seconds(11)).empty());  // forgotten
  EXPECT_THAT(leases.Renew(kLiveOwner, lease, live, t0 + absl::Seconds(18)), ElementsAre(Id(kLiveOwner, 3)));
}

TEST(SessionLeasesTest, ZeroDefaultTurnsLeasesOff) {
  SessionLeases leases(absl::ZeroDuration());
  EXPECT_FALSE(leases.enabled());
  leases.Opened(Id(kDeadOwner, 1), absl::UnixEpoch());
  EXPECT_TRUE(leases.Renew(kDeadOwner, absl::Seconds(1), {}, absl::InfiniteFuture()).empty());
  EXPECT_EQ(leases.NextExpiry(), absl::InfiniteFuture());
  EXPECT_TRUE(leases.TakeExpired(absl::InfiniteFuture()).empty());
}

// The engine loops with real time and a short lease: polls are bounded by kPatience.
constexpr absl::Duration kLease = absl::Milliseconds(300);
constexpr absl::Duration kPatience = absl::Seconds(20);

class LeaseLoopTest : public judge::testing::GenericKernelsTest {
 protected:
  void SetUp() override {
    backend_ = engine::CreateCpuBackend({.num_threads = 1});
    config_ = judge::testing::SmallConfig(64, /*context=*/64);
    weights_ = judge::testing::MakeWeights(config_, 3, 4.0f);
    model_ = judge::testing::MakeModel(config_, *weights_, backend_.get());
  }

  // Calls `renew` every lease/6 until destroyed.
  class Renewer {
   public:
    explicit Renewer(std::function<void()> renew)
        : thread_([this, renew = std::move(renew)] {
            do renew();
            while (!stop_.WaitForNotificationWithTimeout(kLease / 6));
          }) {}
    ~Renewer() {
      stop_.Notify();
      thread_.join();
    }

   private:
    absl::Notification stop_;
    std::thread thread_;
  };

  struct Expiries {
    absl::Mutex mu;
    std::vector<std::pair<uint32_t, int64_t>> seen;
    void Add(uint32_t owner, int64_t sessions) {
      absl::MutexLock lock(&mu);
      seen.emplace_back(owner, sessions);
    }
    bool WaitFor(size_t n) {
      absl::MutexLock lock(&mu);
      auto done = [this, n]() ABSL_SHARED_LOCKS_REQUIRED(mu) { return seen.size() >= n; };
      return mu.AwaitWithTimeout(absl::Condition(&done), kPatience);
    }
  };

  std::unique_ptr<engine::Backend> backend_;
  engine::LlamaConfig config_;
  std::unique_ptr<judge::testing::InMemoryWeights> weights_;
  std::unique_ptr<engine::ModelSlice> model_;
};

TEST_F(LeaseLoopTest, DraftWorkerReleasesTheSessionsOfAnOwnerThatStoppedRenewing) {
  absl::StatusOr<std::unique_ptr<DraftWorker>> worker = DraftWorker::Create(model_.get(), {});
  ASSERT_OK(worker.status());
  Expiries expiries;
  DraftLoopOptions options{.session_lease = kLease};
  options.on_lease_expired = [&expiries](uint32_t owner, int64_t n) { expiries.Add(owner, n); };
  DraftWorkerLoop loop(std::move(*worker), options);

  auto open = [&loop](uint64_t id) {
    absl::Notification done;
    absl::Status result;
    loop.OpenSession(spec::DraftSessionId(id), {1, 2, 3}, {}, 32, false, [&](absl::Status s) {
      result = s;
      done.Notify();
    });
    done.WaitForNotification();
    return result;
  };
  Renewer renewer([&loop] { loop.RenewLease({kLiveOwner, kLease, {Id(kLiveOwner, 1), Id(kLiveOwner, 2)}}); });
  for (uint32_t n : {1, 2, 3}) ASSERT_OK(open(Id(kDeadOwner, n)));
  for (uint32_t n : {1, 2}) ASSERT_OK(open(Id(kLiveOwner, n)));
  ASSERT_OK(open(5));  // owner 0

  ASSERT_TRUE(expiries.WaitFor(1)) << "the dead owner's lease never expired";
  {
    absl::MutexLock lock(&expiries.mu);
    EXPECT_THAT(expiries.seen, ElementsAre(std::make_pair(kDeadOwner, int64_t{3})));
  }
  const DraftLoopStats stats = loop.stats();
  EXPECT_EQ(stats.leases_expired, 1);
  EXPECT_EQ(stats.sessions_released_by_lease, 3);
  EXPECT_EQ(stats.sessions, 3);  // the live owner's two and owner 0's

  absl::Notification proposed;
  absl::StatusOr<spec::Proposal> dead, live;
  loop.Propose({spec::DraftSessionId(Id(kDeadOwner, 2)), 1, 3, {}, 2},
               [&dead](absl::StatusOr<spec::Proposal> p) { dead = std::move(p); });
  loop.Propose({spec::DraftSessionId(Id(kLiveOwner, 1)), 1, 3, {}, 2}, [&](absl::StatusOr<spec::Proposal> p) {
    live = std::move(p);
    proposed.Notify();
  });
  proposed.WaitForNotification();
  EXPECT_THAT(dead.status(), StatusIs(absl::StatusCode::kNotFound, HasSubstr("lease expired")));
  ASSERT_OK(live.status());
  EXPECT_EQ(live->block.tokens.size(), 2u);
}

TEST_F(LeaseLoopTest, TargetShardReleasesTheSessionsOfAnOwnerThatStoppedRenewing) {
  std::unique_ptr<engine::SliceRunner> runner = engine::RunSingleSlice(model_.get());
  absl::StatusOr<std::unique_ptr<TargetShard>> shard = TargetShard::Create(runner.get(), nullptr, {});
  ASSERT_OK(shard.status());
  Expiries expiries;
  absl::Mutex outcomes_mu;
  std::vector<spec::BlockOutcome> outcomes;
  ShardLoopSinks sinks;
  sinks.on_outcome = [&](spec::BlockOutcome o) {
    absl::MutexLock lock(&outcomes_mu);
    outcomes.push_back(std::move(o));
  };
  ShardLoopOptions options{.session_lease = kLease};
  options.on_lease_expired = [&expiries](uint32_t owner, int64_t n) { expiries.Add(owner, n); };
  TargetShardLoop loop(std::move(*shard), options, sinks);

  auto open = [&loop](uint64_t id) {
    absl::Notification done;
    absl::Status result;
    loop.OpenSession(spec::SessionId(id), 32, {}, {}, [&](absl::Status s) {
      result = s;
      done.Notify();
    });
    done.WaitForNotification();
    return result;
  };
  // The live owner holds session 1; session 2's close was lost: the renewals release it.
  Renewer renewer([&loop] { loop.RenewLease({kLiveOwner, kLease, {Id(kLiveOwner, 1)}}); });
  for (uint32_t n : {1, 2}) ASSERT_OK(open(Id(kDeadOwner, n)));
  ASSERT_OK(open(Id(kLiveOwner, 1)));
  ASSERT_OK(open(Id(kLiveOwner, 2)));
  ASSERT_OK(open(9));  // owner 0

  ASSERT_TRUE(expiries.WaitFor(1)) << "the dead owner's lease never expired";
  {
    absl::MutexLock lock(&expiries.mu);
    EXPECT_THAT(expiries.seen, ElementsAre(std::make_pair(kDeadOwner, int64_t{2})));
  }
  for (int i = 0; i < 200 && loop.stats().sessions_released_by_lease < 3; ++i) absl::SleepFor(kLease / 10);
  EXPECT_EQ(loop.stats().sessions, 2);  // the live owner's first and owner 0's
  EXPECT_EQ(loop.stats().sessions_released_by_lease, 3);

  // A block for a released session fails naming the lease; the live owner's block is verified.
  for (uint64_t id : {Id(kDeadOwner, 1), Id(kLiveOwner, 1)}) {
    ShardBatch batch;
    spec::ShardBlock block;
    block.session_id = spec::SessionId(id);
    block.step = 1;
    block.start_position = 0;
    block.num_tokens = 3;
    block.verify = true;
    batch.blocks.push_back(block);
    batch.token_ids = {1, 2, 3};
    loop.Submit(std::move(batch));
  }
  auto both = [&]() ABSL_SHARED_LOCKS_REQUIRED(outcomes_mu) { return outcomes.size() >= 2; };
  absl::MutexLock lock(&outcomes_mu);
  ASSERT_TRUE(outcomes_mu.AwaitWithTimeout(absl::Condition(&both), kPatience));
  for (const spec::BlockOutcome& o : outcomes) {
    if (o.session_id.value() == Id(kDeadOwner, 1)) {
      EXPECT_THAT(o.status, StatusIs(absl::StatusCode::kNotFound, HasSubstr("lease expired")));
    } else {
      ASSERT_OK(o.status);
      EXPECT_TRUE(o.verdict.has_value());
    }
  }
}

TEST_F(LeaseLoopTest, AFullDraftQueueRefusesNewWorkButStillCloses) {
  absl::StatusOr<std::unique_ptr<DraftWorker>> worker = DraftWorker::Create(model_.get(), {});
  ASSERT_OK(worker.status());
  DraftWorkerLoop loop(std::move(*worker), {.max_queued = 2});
  // The first open's callback holds the engine thread, so what follows stays queued.
  absl::Notification holding, release, first_opened;
  loop.OpenSession(spec::DraftSessionId(1), {1, 2}, {}, 32, false, [&](absl::Status s) {
    EXPECT_OK(s);
    holding.Notify();
    release.WaitForNotification();
    first_opened.Notify();
  });
  holding.WaitForNotification();
  std::vector<absl::StatusOr<spec::Proposal>> results(4, absl::UnknownError("not answered"));
  absl::Mutex mu;
  int answered = 0;
  for (int i = 0; i < 4; ++i) {
    loop.Propose({spec::DraftSessionId(1), static_cast<uint64_t>(i + 1), 2, {}, 1},
                 [&, i](absl::StatusOr<spec::Proposal> p) {
                   absl::MutexLock lock(&mu);
                   results[i] = std::move(p);
                   ++answered;
                 });
  }
  loop.CloseSession(spec::DraftSessionId(1));  // never refused
  {
    absl::MutexLock lock(&mu);
    EXPECT_EQ(answered, 2);  // the last two were refused at once
    EXPECT_THAT(results[2].status(), StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("queue")));
    EXPECT_THAT(results[3].status(), StatusIs(absl::StatusCode::kResourceExhausted));
  }
  release.Notify();
  first_opened.WaitForNotification();
  auto all = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu) { return answered == 4; };
  absl::MutexLock lock(&mu);
  ASSERT_TRUE(mu.AwaitWithTimeout(absl::Condition(&all), kPatience));
  ASSERT_OK(results[0].status());  // the queued ones ran
  EXPECT_EQ(loop.stats().refused_queue_full, 2);
  for (int i = 0; i < 200 && loop.stats().sessions != 0; ++i) absl::SleepFor(absl::Milliseconds(10));
  EXPECT_EQ(loop.stats().sessions, 0);  // the close was queued past the limit
}

TEST_F(LeaseLoopTest, AFullShardQueueFailsTheBlocksThatDoNotFit) {
  std::unique_ptr<engine::SliceRunner> runner = engine::RunSingleSlice(model_.get());
  absl::StatusOr<std::unique_ptr<TargetShard>> shard = TargetShard::Create(runner.get(), nullptr, {});
  ASSERT_OK(shard.status());
  absl::Mutex mu;
  std::vector<spec::BlockOutcome> outcomes;
  ShardLoopSinks sinks;
  sinks.on_outcome = [&](spec::BlockOutcome o) {
    absl::MutexLock lock(&mu);
    outcomes.push_back(std::move(o));
  };
  TargetShardLoop loop(std::move(*shard), {.max_queued_blocks = 2}, sinks);
  absl::Notification holding, release;
  loop.OpenSession(spec::SessionId(1), 32, {}, {}, [&](absl::Status s) {
    EXPECT_OK(s);
    holding.Notify();
    release.WaitForNotification();
  });
  holding.WaitForNotification();
  for (uint64_t step = 1; step <= 3; ++step) {
    ShardBatch batch;
    spec::ShardBlock block;
    block.session_id = spec::SessionId(1);
    block.step = step;
    block.start_position = 0;
    block.num_tokens = 1;
    block.verify = true;
    batch.blocks.push_back(block);
    batch.token_ids = {3};
    loop.Submit(std::move(batch));
  }
  {
    absl::MutexLock lock(&mu);
    ASSERT_EQ(outcomes.size(), 1u);  // the third block, refused at once
    EXPECT_EQ(outcomes[0].step, 3u);
    EXPECT_THAT(outcomes[0].status, StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("queue")));
  }
  absl::Status refused_open;
  loop.OpenSession(spec::SessionId(2), 32, {}, {}, [&](absl::Status s) { refused_open = s; });
  EXPECT_THAT(refused_open, StatusIs(absl::StatusCode::kResourceExhausted));
  release.Notify();
  auto all = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu) { return outcomes.size() == 3; };
  absl::MutexLock lock(&mu);
  ASSERT_TRUE(mu.AwaitWithTimeout(absl::Condition(&all), kPatience));
  EXPECT_OK(outcomes[1].status);  // the queued blocks ran
  EXPECT_EQ(loop.stats().refused_queue_full, 2);
}

// Memory bounds: each session's KV cache is allocated whole at open, so the budget is enforced
// there: the open that would pass it is refused with RESOURCE_EXHAUSTED (naming the sizes), and
// closing, or releasing an owner's sessions, gives the memory back.
TEST_F(LeaseLoopTest, KvMemoryBoundsRefuseOpensUpFront) {
  std::unique_ptr<engine::SliceRunner> runner = engine::RunSingleSlice(model_.get());
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<engine::SequenceCache> probe, runner->NewCache(32));
  const int64_t per_session = static_cast<int64_t>(probe->size_bytes());
  probe.reset();
  ASSERT_GT(per_session, 0);

  ASSERT_OK_AND_ASSIGN(std::unique_ptr<TargetShard> shard,
                       TargetShard::Create(runner.get(), nullptr, {.max_kv_bytes = 3 * per_session}));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<DraftWorker> draft,
                       DraftWorker::Create(model_.get(), {.max_kv_bytes = 3 * per_session}));
  for (uint32_t n : {1, 2, 3}) {
    ASSERT_OK(shard->OpenSession(spec::SessionId(Id(kLiveOwner, n)), 32, {}, {}));
    ASSERT_OK(draft->OpenSession(spec::DraftSessionId(Id(kLiveOwner, n)), std::vector<int32_t>{1, 2}, {}, 32));
  }
  EXPECT_EQ(shard->kv_bytes(), 3 * per_session);
  EXPECT_EQ(draft->kv_bytes(), 3 * per_session);
  EXPECT_THAT(shard->OpenSession(spec::SessionId(9), 32, {}, {}),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("MiB")));
  EXPECT_THAT(draft->OpenSession(spec::DraftSessionId(9), std::vector<int32_t>{1}, {}, 32),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("MiB")));
  EXPECT_THAT(shard->OpenSession(spec::SessionId(10), 1, {}, {}),  // refused before allocating
              StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_EQ(shard->num_sessions(), 3);

  shard->CloseSession(spec::SessionId(Id(kLiveOwner, 1)));
  draft->CloseSession(spec::DraftSessionId(Id(kLiveOwner, 1)));
  EXPECT_EQ(shard->kv_bytes(), 2 * per_session);
  ASSERT_OK(shard->OpenSession(spec::SessionId(9), 32, {}, {}));
  ASSERT_OK(draft->OpenSession(spec::DraftSessionId(9), std::vector<int32_t>{1}, {}, 32));
  EXPECT_EQ(shard->CloseSessionsOf(kLiveOwner), 2);
  EXPECT_EQ(draft->CloseSessionsOf(kLiveOwner), 2);
  EXPECT_EQ(shard->kv_bytes(), per_session);
  EXPECT_EQ(draft->kv_bytes(), per_session);
}

}  // namespace
}  // namespace verdict::workers
