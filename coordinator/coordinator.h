// SPDX-License-Identifier: Apache-2.0
// The coordinator's core: sessions of speculative (or target-only) decoding driven over the
// asynchronous draft and target clients, with PIPELINED drafting. While block b of a session is
// being verified by the target shards, the draft worker already proposes block b+1 on the
// assumption that b is fully accepted, starting with its own guess of the target's bonus token; a
// verdict that confirms the assumption sends b+1 to verification at once, any other verdict drops
// it and the draft rolls back (keep the committed prefix, append the target's token).
//
// Many sessions are in flight at once; the workers batch what is ready across sessions. If the
// draft worker fails or times out, a session continues target-only (a block with no draft tokens
// asks the target for its next token) and retries the draft after a pause; a target failure ends
// the session with the shard's error. Token-level only: text, stop strings and the wire live in
// the service adapter (services/coordinator).
//
// A plain state machine (docs/architecture.md has the state diagram): all session state lives on
// one Executor (an EventLoop thread in production, a test-driven queue in tests); client callbacks
// only post to it. Time comes from an injected Clock. Each step first plans what a session does
// next from its state (Plan, no I/O) and then applies it (Apply: the client calls).
#ifndef VERDICT_COORDINATOR_COORDINATOR_H_
#define VERDICT_COORDINATOR_COORDINATOR_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "clients/worker_clients.h"
#include "common/clock.h"
#include "common/executor.h"
#include "spec/draft_window.h"
#include "spec/draft_block.h"
#include "spec/ids.h"
#include "spec/sampling_params.h"
#include "spec/speculation_params.h"
#include "spec/speculation_stats.h"

namespace verdict::coordinator {

class EventLoop;

struct CoordinatorOptions {
  int64_t max_sessions = 64;
  // Context lengths of the target and the draft (positions a session may use).
  int64_t target_context = 0;
  int64_t draft_context = 0;
  // Draft block b+1 while block b is verified.
  bool pipelined = true;
  // After a draft failure, a session decodes target-only and tries the draft again after this.
  absl::Duration draft_retry_interval = absl::Seconds(2);
  // The high 32 bits of every session id this coordinator gives out, so that a restarted
  // coordinator's sessions cannot collide with ones its predecessor left open on the workers.
  // 0: a random nonzero value chosen at construction.
  uint32_t incarnation = 0;
  // A target open or block that fails with a transient error (kUnavailable, kDeadlineExceeded: a
  // lost request or reply, a shard restarting) is sent again this many times before the session
  // fails. Safe because the workers treat a repeated open or block as the same one (same step:
  // the shards run it again from the same state).
  int target_retries = 2;
};

enum class FinishReason { kStop, kLength, kContext };
const char* FinishReasonName(FinishReason reason);

struct GenerationRequest {
  std::vector<int32_t> prompt;
  int64_t max_new_tokens = 128;
  std::vector<int32_t> stop_token_ids;  // end-of-text tokens included by the caller
  // The output distribution (greedy or sampled); the exact rule follows from it.
  spec::SamplingParams sampling;
  // Policy, thresholds (unset: the last shard's defaults), window, and whether to speculate.
  spec::SpeculationParams speculation;
  // The draft's sampling. Unset: spec::DefaultDraftSampling(sampling).
  std::optional<spec::SamplingParams> draft_sampling;
  std::string request_id;
};

struct GenerationSummary {
  FinishReason finish_reason = FinishReason::kLength;
  spec::SpeculationStats stats;
};

struct GenerationCallbacks {
  // The tokens each target pass commits (after stop-token and max-token truncation; a final stop
  // token included). Return false to end the generation (e.g. a stop string matched). Runs on the
  // coordinator's executor: keep it short.
  std::function<bool(absl::Span<const int32_t> tokens)> on_tokens;
  // Optional: after each target pass (before on_tokens), the block that was verified and its
  // verdict (the judge tools follow the acceptances with it). Runs on the executor.
  std::function<void(const spec::DraftBlock& block, const spec::Verdict& verdict)> on_pass;
  // Exactly once: the summary, or why the generation failed (kCancelled after Cancel or shutdown).
  std::function<void(absl::StatusOr<GenerationSummary>)> on_done;
};

struct SessionSnapshot {
  spec::SessionId id;
  std::string request_id;
  std::string policy;  // spec::PolicyLabel
  int64_t prompt_tokens = 0;
  int64_t generated_tokens = 0;
  int64_t draft_window = 0;
  bool degraded = false;
  absl::Duration age;
};

// Process totals since start (for /metrics and /v1/status).
struct CoordinatorTotals {
  int64_t requests = 0;
  int64_t requests_failed = 0;
  int64_t requests_cancelled = 0;
  int64_t target_retries = 0;  // target opens and blocks sent again after a transient error
  spec::SpeculationStats stats;  // of the requests that ended, merged
};

struct CoordinatorSnapshot {
  std::vector<SessionSnapshot> sessions;
  // Sessions whose generation ended but whose worker state is still being released.
  int64_t releasing = 0;
  CoordinatorTotals totals;
};

class Coordinator {
 public:
  // `target` must outlive the coordinator; `draft` too, or nullptr for target-only serving.
  // Runs on an EventLoop thread of its own and the real clock.
  Coordinator(const CoordinatorOptions& options, clients::DraftClient* draft, clients::TargetClient* target);
  // Runs on `executor` (which must outlive the coordinator) with time from `clock`.
  Coordinator(const CoordinatorOptions& options, clients::DraftClient* draft, clients::TargetClient* target,
              Executor* executor, Clock* clock);
  // Fails the remaining sessions with kCancelled and closes their worker sessions, without waiting
  // for the workers: replies that arrive later are dropped.
  ~Coordinator();

  // Starts a generation; its results arrive through `callbacks`. Thread-safe. Errors
  // (synchronous): kInvalidArgument (empty prompt, prompt not shorter than the target context,
  // max_new_tokens < 1, bad sampling, window or thresholds), kResourceExhausted (max_sessions in
  // flight).
  absl::StatusOr<spec::SessionId> Start(GenerationRequest request, GenerationCallbacks callbacks);
  // Ends the generation with kCancelled and releases its worker state. Unknown ids are ignored.
  void Cancel(spec::SessionId session_id);

  // From the executor's thread or any other (then it waits for the executor to answer).
  CoordinatorSnapshot Snapshot();

  // The high 32 bits of this coordinator's session ids (the owner its leases name).
  uint32_t incarnation() const { return options_.incarnation; }
  // The ids of the sessions this coordinator holds on the target shards and on the draft worker
  // (what its lease renewals name). From any thread, as Snapshot.
  struct LiveSessions {
    std::vector<uint64_t> target;
    std::vector<uint64_t> draft;
  };
  LiveSessions Live();

 private:
  struct Session;
  struct Action;
  // What client callbacks post through: after shutdown it drops what they post.
  class Mailbox;

  void Post(std::function<void()> fn);
  // Runs `fn` on the executor and waits for it (at once when called from the executor's thread).
  void RunOnExecutor(const std::function<void()>& fn);
  void Open(Session& s);
  void OpenTarget(Session& s);
  // Opens (or reopens after a failure) the session's draft session from its committed tokens.
  void OpenDraftSession(Session& s);
  // Plans and applies the session's next steps until it has to wait for a reply.
  void Advance(Session& s);
  Action Plan(const Session& s) const;
  void Apply(Session& s, Action action);
  void RequestProposal(Session& s, bool optimistic);
  void SendBlock(Session& s, spec::DraftBlock draft);
  // Sends the session's block under verification (again, on a retry).
  void DispatchBlock(Session& s);
  // Whether a failed target call is sent again (counting the attempt).
  bool RetryTarget(Session& s, const absl::Status& status);
  void OnProposal(spec::SessionId id, spec::DraftSessionId draft_session, absl::StatusOr<spec::Proposal> proposal);
  void OnOutcome(spec::SessionId id, spec::BlockOutcome outcome);
  void DraftFailed(Session& s, const absl::Status& status);
  // Tokens the next block may draft (0: target-only), given `committed` tokens so far.
  int64_t WindowFor(const Session& s, int64_t committed, int64_t generated) const;
  void Finish(Session& s, FinishReason reason);
  void Fail(Session& s, absl::Status status);
  void MaybeRelease(Session& s);
  void ReleaseWorkers(const Session& s);
  void Shutdown();

  CoordinatorOptions options_;
  clients::DraftClient* draft_;
  clients::TargetClient* target_;
  Clock* clock_;
  uint64_t incarnation_bits_ = 0;  // options_.incarnation << 32
  std::atomic<uint64_t> next_id_{1};
  std::atomic<int64_t> active_{0};  // sessions not yet released (admission control)
  // Executor-thread state.
  absl::flat_hash_map<spec::SessionId, std::shared_ptr<Session>> sessions_;
  CoordinatorTotals totals_;
  uint64_t next_draft_session_ = 1;
  std::shared_ptr<Mailbox> mailbox_;
  Executor* executor_;
  std::unique_ptr<EventLoop> own_loop_;  // last member: destroyed (joined) first
};

}  // namespace verdict::coordinator

#endif  // VERDICT_COORDINATOR_COORDINATOR_H_
