// SPDX-License-Identifier: Apache-2.0
// Fault injection between the coordinator and its workers (the idea of Ray's RPC chaos testing):
// decorators of DraftClient and TargetClient that, per method and at a given probability from a
// seeded stream, drop the request (the caller hears kDeadlineExceeded and the worker nothing), drop
// the reply (the worker did the work, the caller hears kDeadlineExceeded), delay the request,
// duplicate it (the worker gets it twice, the caller hears once) or fail it with a chosen code.
// Off by default; `verdict-coordinator` turns it on from CoordinatorConfig.rpc_chaos or the
// VERDICT_RPC_CHAOS environment variable (tests and the soak benchmark). The same decorators wrap
// the in-process clients in tests, so the coordinator's and workers' answers to each fault are
// checked without a network.
//
// Spec: entries separated by ';'. `seed=N`, and `METHOD=FAULT:PROBABILITY[@ARG],...` where METHOD
// is `*` or one of OpenDraftSession Propose CloseDraftSession RenewDraftLease OpenTargetSession
// Verify CloseTargetSession RenewTargetLease; FAULT is drop_request, drop_reply, delay (ARG: a
// duration such as 20ms, default 20ms), duplicate or fail (ARG: a gRPC code name such as
// UNAVAILABLE, the default). Later entries override earlier ones. Example:
//   seed=7;*=drop_reply:0.01,delay:0.05@10ms;Verify=fail:0.02@DEADLINE_EXCEEDED
#ifndef VERDICT_CLIENTS_CHAOS_RPC_CHAOS_H_
#define VERDICT_CLIENTS_CHAOS_RPC_CHAOS_H_

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "clients/worker_clients.h"

namespace verdict::clients {

enum class ChaosMethod {
  kOpenDraftSession,
  kPropose,
  kCloseDraftSession,
  kRenewDraftLease,
  kOpenTargetSession,
  kVerify,
  kCloseTargetSession,
  kRenewTargetLease,
};
inline constexpr int kNumChaosMethods = 8;

enum class ChaosFault { kNone, kDropRequest, kDropReply, kDelay, kDuplicate, kFail };
inline constexpr int kNumChaosFaults = 6;

const char* ChaosMethodName(ChaosMethod method);
const char* ChaosFaultName(ChaosFault fault);

struct ChaosRule {
  std::array<double, kNumChaosFaults> probability{};  // indexed by ChaosFault (kNone unused)
  absl::Duration delay = absl::Milliseconds(20);
  absl::StatusCode fail_code = absl::StatusCode::kUnavailable;
};

struct ChaosOptions {
  uint64_t seed = 1;
  std::array<ChaosRule, kNumChaosMethods> rules;
  bool enabled() const;
};

// Parses the spec above. kInvalidArgument naming the entry that is wrong.
absl::StatusOr<ChaosOptions> ParseChaosSpec(absl::string_view spec);

// The faults' shared state: the seeded stream, a timer thread for delays and the counts.
// Thread-safe.
class RpcChaos {
 public:
  explicit RpcChaos(const ChaosOptions& options);
  // Stops the timer; delayed calls not yet made are dropped.
  ~RpcChaos();

  // Which fault (or none) the next call of `method` gets.
  ChaosFault Decide(ChaosMethod method);
  const ChaosRule& rule(ChaosMethod method) const { return options_.rules[static_cast<int>(method)]; }
  // Runs `fn` on the timer thread after `delay`.
  void After(absl::Duration delay, std::function<void()> fn);

  // Faults injected so far, by method and fault.
  int64_t count(ChaosMethod method, ChaosFault fault) const;
  int64_t total(ChaosFault fault) const;
  // One line: "drop_request=N drop_reply=N delay=N duplicate=N fail=N" (the soak's table).
  std::string Summary() const;

 private:
  void RunTimer();

  const ChaosOptions options_;
  mutable absl::Mutex mu_;
  // One stream per method, so one method's faults do not depend on how often the others are called.
  std::array<std::mt19937_64, kNumChaosMethods> rng_ ABSL_GUARDED_BY(mu_);
  std::array<std::array<int64_t, kNumChaosFaults>, kNumChaosMethods> counts_ ABSL_GUARDED_BY(mu_){};
  std::multimap<absl::Time, std::function<void()>> timers_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread timer_;
};

// The decorators. `inner` and `chaos` must outlive them.
class ChaosDraftClient final : public DraftClient {
 public:
  ChaosDraftClient(DraftClient* inner, RpcChaos* chaos) : inner_(inner), chaos_(chaos) {}
  void OpenSession(const DraftSessionSpec& session, StatusCallback done) override;
  void Propose(const spec::ProposeRequest& request,
               std::function<void(absl::StatusOr<spec::Proposal>)> done) override;
  void CloseSession(spec::DraftSessionId session_id) override;
  void RenewLease(const spec::LeaseRenewal& renewal) override;

 private:
  DraftClient* inner_;
  RpcChaos* chaos_;
};

class ChaosTargetClient final : public TargetClient {
 public:
  ChaosTargetClient(TargetClient* inner, RpcChaos* chaos) : inner_(inner), chaos_(chaos) {}
  void OpenSession(const TargetSessionSpec& session, StatusCallback done) override;
  void Verify(const spec::ShardBlock& block, std::vector<int32_t> token_ids,
              std::function<void(spec::BlockOutcome)> done) override;
  void CloseSession(spec::SessionId session_id) override;
  void RenewLease(const spec::LeaseRenewal& renewal) override;
  int num_shards() const override { return inner_->num_shards(); }

 private:
  TargetClient* inner_;
  RpcChaos* chaos_;
};

}  // namespace verdict::clients

#endif  // VERDICT_CLIENTS_CHAOS_RPC_CHAOS_H_
