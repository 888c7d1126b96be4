// SPDX-License-Identifier: Apache-2.0
#include "coordinator/coordinator.h"

#include <algorithm>
#include <random>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "common/status_macros.h"
#include "coordinator/event_loop.h"

namespace verdict::coordinator {

const char* FinishReasonName(FinishReason reason) {
  switch (reason) {
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kLength:
      return "length";
    case FinishReason::kContext:
      return "context";
  }
  return "unknown";
}

// Posts closures to the executor until it is closed, and runs each only if it is still open by
// then: a reply that arrives after shutdown touches nothing. Client callbacks hold it by
// shared_ptr, so it outlives the coordinator.
class Coordinator::Mailbox : public std::enable_shared_from_this<Mailbox> {
 public:
  explicit Mailbox(Executor* executor) : executor_(executor) {}

  void Post(std::function<void()> fn) {
    absl::MutexLock lock(&mu_);
    if (!open_) return;
    executor_->Post([self = shared_from_this(), fn = std::move(fn)] {
      if (self->is_open()) fn();
    });
  }
  void Close() {
    absl::MutexLock lock(&mu_);
    open_ = false;
  }

 private:
  bool is_open() {
    absl::MutexLock lock(&mu_);
    return open_;
  }

  absl::Mutex mu_;
  bool open_ ABSL_GUARDED_BY(mu_) = true;
  Executor* const executor_;
};

// A proposal and the sequence it continues: usable for committed tokens X iff X = context + the
// proposal's first j tokens for some j < its length (then its tokens from j on are the draft).
struct PendingProposal {
  std::vector<int32_t> context;
  spec::Proposal proposal;
  bool optimistic = false;
};

// One generation. Its phase (docs/architecture.md, "The coordinator's states"):
//   kOpening   --target open OK-->  kDecoding  --finished/failed/cancelled-->  kReleasing --> gone
//   kOpening   --target open failed / cancelled-->  kReleasing
// and, beside it, the draft side:
//   kNone (target-only) | kOpening --OK--> kReady --failure--> kFailed --retry interval--> kOpening
// A kReleasing session is erased (its worker sessions closed) once no reply is outstanding.
struct Coordinator::Session {
  enum class Phase { kOpening, kDecoding, kReleasing };
  enum class DraftState { kNone, kOpening, kReady, kFailed };

  spec::SessionId id;
  GenerationRequest request;
  GenerationCallbacks callbacks;
  Phase phase = Phase::kOpening;
  std::vector<int32_t> committed;  // prompt + generated
  int64_t prompt_length = 0;
  int64_t target_capacity = 0;
  int64_t draft_capacity = 0;
  spec::SamplingParams draft_sampling;
  spec::DraftWindow window{spec::DraftWindowOptions{}};
  uint64_t step = 0;
  absl::Time start;

  // Replies outstanding (the session is released only when none is).
  int opens_in_flight = 0;
  bool verifying = false;
  bool proposing = false;
  // When the request in flight went out (the statistics' waiting times).
  absl::Time verifying_since, proposing_since;

  // Target side.
  bool target_started = false;  // the prompt went out with the first block
  spec::DraftBlock verifying_draft;
  spec::ShardBlock verifying_block;  // what went out, for a retry
  std::vector<int32_t> verifying_ids;
  int target_attempts = 0;  // retries of the current open or block
  absl::Status transient_error;  // what the first retry answered

  // Draft side.
  DraftState draft_state = DraftState::kNone;
  spec::DraftSessionId draft_session;
  std::vector<int32_t> draft_sequence;  // mirror of the worker's sequence
  std::vector<int32_t> proposing_context;
  bool proposing_optimistic = false;
  std::optional<PendingProposal> ready;
  absl::Time draft_retry_at;

  spec::SpeculationStats stats;

  bool done() const { return phase == Phase::kReleasing; }
};

// What a session does next (Plan), before any client is called (Apply).
struct Coordinator::Action {
  enum class Kind {
    kWait,           // a reply is needed first
    kReopenDraft,    // the draft failed a while ago: open it again from the committed tokens
    kProposeAhead,   // pipelining: draft the next block while this one is verified
    kPropose,        // draft the next block from the committed tokens
    kDropProposal,   // the ready proposal does not continue the committed tokens
    kVerify,         // send `draft` (empty: target-only) for verification
  };
  Kind kind = Kind::kWait;
  spec::DraftBlock draft;
  bool from_ready = false;  // kVerify: `draft` is (a slice of) the ready proposal
};

Coordinator::Coordinator(const CoordinatorOptions& options, clients::DraftClient* draft,
                         clients::TargetClient* target)
    : Coordinator(options, draft, target, nullptr, Clock::Real()) {}

Coordinator::Coordinator(const CoordinatorOptions& options, clients::DraftClient* draft,
                         clients::TargetClient* target, Executor* executor, Clock* clock)
    : options_(options), draft_(draft), target_(target), clock_(clock) {
  if (options_.incarnation == 0) {
    std::random_device random;
    while (options_.incarnation == 0) options_.incarnation = random();
  }
  incarnation_bits_ = uint64_t{options_.incarnation} << 32;
  if (executor == nullptr) {
    own_loop_ = std::make_unique<EventLoop>();
    executor = own_loop_.get();
  }
  executor_ = executor;
  mailbox_ = std::make_shared<Mailbox>(executor_);
}

Coordinator::~Coordinator() {
  RunOnExecutor([this] { Shutdown(); });
  mailbox_->Close();
}

void Coordinator::RunOnExecutor(const std::function<void()>& fn) {
  if (executor_->InLoop()) {
    fn();
    return;
  }
  absl::Notification done;
  Post([&fn, &done] {
    fn();
    done.Notify();
  });
  done.WaitForNotification();
}

void Coordinator::Shutdown() {
  std::vector<std::shared_ptr<Session>> all;
  for (auto& [id, s] : sessions_) all.push_back(s);
  for (auto& s : all) {
    if (!s->done()) Fail(*s, absl::CancelledError("the coordinator is shutting down"));
    ReleaseWorkers(*s);  // replies still in flight are dropped by the closed mailbox
    active_.fetch_sub(1);
  }
  sessions_.clear();
}

void Coordinator::Post(std::function<void()> fn) { mailbox_->Post(std::move(fn)); }

absl::StatusOr<spec::SessionId> Coordinator::Start(GenerationRequest request, GenerationCallbacks callbacks) {
  const int64_t n = static_cast<int64_t>(request.prompt.size());
  if (n == 0) return absl::InvalidArgumentError("the prompt has no tokens");
  if (n >= options_.target_context) {
    return absl::InvalidArgumentError(absl::StrCat("the prompt has ", n, " tokens; the target's context holds ",
                                                   options_.target_context, " positions"));
  }
  if (request.max_new_tokens < 1) {
    return absl::InvalidArgumentError(absl::StrCat("max tokens must be >= 1, got ", request.max_new_tokens));
  }
  VERDICT_RETURN_IF_ERROR(spec::ValidateSamplingParams(request.sampling));
  VERDICT_RETURN_IF_ERROR(spec::ValidateSpeculationParams(request.speculation));
  if (active_.fetch_add(1) >= options_.max_sessions) {
    active_.fetch_sub(1);
    return absl::ResourceExhaustedError(
        absl::StrCat("the coordinator is serving its maximum of ", options_.max_sessions, " sessions"));
  }
  auto s = std::make_shared<Session>();
  s->id = spec::SessionId(incarnation_bits_ | next_id_.fetch_add(1));
  s->prompt_length = n;
  s->committed = request.prompt;
  const int64_t budget = n + request.max_new_tokens;
  s->target_capacity = std::min(options_.target_context, budget);
  s->draft_capacity = std::min(options_.draft_context, budget);
  s->draft_sampling = request.draft_sampling.value_or(spec::DefaultDraftSampling(request.sampling));
  const spec::DraftWindowOptions& window = request.speculation.window;
  s->window = spec::DraftWindow(window);
  s->stats.accepted_histogram.assign((window.adaptive ? window.max_k : window.k) + 1, 0);
  if (draft_ == nullptr || n >= s->draft_capacity) request.speculation.speculate = false;
  s->request = std::move(request);
  s->callbacks = std::move(callbacks);
  s->start = clock_->Now();
  const spec::SessionId id = s->id;
  Post([this, session = std::move(s)] {
    sessions_.emplace(session->id, session);
    ++totals_.requests;
    Open(*session);
  });
  return id;
}

void Coordinator::Cancel(spec::SessionId session_id) {
  Post([this, session_id] {
    auto it = sessions_.find(session_id);
    if (it == sessions_.end() || it->second->done()) return;
    Fail(*it->second, absl::CancelledError("the generation was cancelled"));
    MaybeRelease(*it->second);
  });
}

CoordinatorSnapshot Coordinator::Snapshot() {
  CoordinatorSnapshot snap;
  auto fill = [this, &snap] {
    const absl::Time now = clock_->Now();
    for (const auto& [id, s] : sessions_) {
      if (s->done()) {
        ++snap.releasing;
        continue;
      }
      const GenerationRequest& r = s->request;
      snap.sessions.push_back({id, r.request_id,
                               spec::PolicyLabel(r.speculation.policy, spec::ExactRuleFor(r.sampling)),
                               s->prompt_length, s->stats.tokens, s->window.k(), s->stats.degraded, now - s->start});
    }
    snap.totals = totals_;
  };
  RunOnExecutor(fill);
  return snap;
}

Coordinator::LiveSessions Coordinator::Live() {
  LiveSessions live;
  auto fill = [this, &live] {
    for (const auto& [id, s] : sessions_) {
      live.target.push_back(id.value());
      if (s->draft_state == Session::DraftState::kOpening || s->draft_state == Session::DraftState::kReady) {
        live.draft.push_back(s->draft_session.value());
      }
    }
  };
  RunOnExecutor(fill);
  return live;
}

void Coordinator::Open(Session& s) {
  OpenTarget(s);
  if (s.request.speculation.speculate) OpenDraftSession(s);
}

bool Coordinator::RetryTarget(Session& s, const absl::Status& status) {
  const bool transient =
      status.code() == absl::StatusCode::kUnavailable || status.code() == absl::StatusCode::kDeadlineExceeded;
  if (!transient || s.done() || s.target_attempts >= options_.target_retries) return false;
  if (s.target_attempts == 0) s.transient_error = status;
  ++s.target_attempts;
  ++totals_.target_retries;
  return true;
}

void Coordinator::OpenTarget(Session& s) {
  const spec::SessionId id = s.id;
  ++s.opens_in_flight;
  std::shared_ptr<Mailbox> mailbox = mailbox_;
  target_->OpenSession({id, s.target_capacity, s.request.speculation, s.request.sampling},
                       [this, mailbox, id](absl::Status status) {
                         mailbox->Post([this, id, status] {
                           auto it = sessions_.find(id);
                           if (it == sessions_.end()) return;
                           Session& s = *it->second;
                           --s.opens_in_flight;
                           if (!s.done()) {
                             if (!status.ok() && RetryTarget(s, status)) {
                               OpenTarget(s);  // the shards accept the same open again
                               return;
                             }
                             s.target_attempts = 0;
                             if (!status.ok()) {
                               Fail(s, status);
                             } else {
                               s.phase = Session::Phase::kDecoding;
                               Advance(s);
                             }
                           }
                           MaybeRelease(s);
                         });
                       });
}

void Coordinator::OpenDraftSession(Session& s) {
  // A fresh draft-session id each time: a late answer for an abandoned one is recognisably stale.
  s.draft_state = Session::DraftState::kOpening;
  s.draft_session = spec::DraftSessionId(incarnation_bits_ | next_draft_session_++);
  s.draft_sequence = s.committed;
  ++s.opens_in_flight;
  const spec::SessionId id = s.id;
  const spec::DraftSessionId draft_session = s.draft_session;
  std::shared_ptr<Mailbox> mailbox = mailbox_;
  // The KL rule compares the target's distribution with the draft's whole one.
  const bool record_distributions = s.request.speculation.policy == spec::Policy::kLossyKl;
  draft_->OpenSession({draft_session, s.committed, s.draft_sampling, s.draft_capacity, record_distributions},
                      [this, mailbox, id, draft_session](absl::Status status) {
                        mailbox->Post([this, id, draft_session, status] {
                          auto it = sessions_.find(id);
                          if (it == sessions_.end()) {
                            if (status.ok()) draft_->CloseSession(draft_session);
                            return;
                          }
                          Session& s = *it->second;
                          --s.opens_in_flight;
                          if (status.ok()) {
                            s.draft_state = Session::DraftState::kReady;
                          } else {
                            DraftFailed(s, status);
                          }
                          if (!s.done()) Advance(s);
                          MaybeRelease(s);
                        });
                      });
}

int64_t Coordinator::WindowFor(const Session& s, int64_t committed, int64_t generated) const {
  if (!s.request.speculation.speculate || s.draft_state != Session::DraftState::kReady) return 0;
  const int64_t remaining = s.request.max_new_tokens - generated;
  // A pass commits up to k + 1 tokens: draft past neither max_new_tokens nor either context.
  int64_t k = std::min({s.window.k(), remaining - 1, s.target_capacity - committed,
                        s.draft_capacity - committed + 1});
  return std::max<int64_t>(k, 0);
}

Coordinator::Action Coordinator::Plan(const Session& s) const {
  using Kind = Action::Kind;
  if (s.phase != Session::Phase::kDecoding) return {};
  // The first block waits for the draft session (later reopenings do not hold decoding up).
  if (!s.target_started && s.draft_state == Session::DraftState::kOpening) return {};
  const int64_t n = static_cast<int64_t>(s.committed.size());

  // The draft was down: try it again after the pause (catching up from the committed tokens).
  if (s.request.speculation.speculate && s.draft_state == Session::DraftState::kFailed && !s.proposing &&
      clock_->Now() >= s.draft_retry_at) {
    return {Kind::kReopenDraft};
  }

  if (s.verifying) {
    // Pipelining: draft the next block now, assuming this one is accepted whole.
    const int64_t k_v = static_cast<int64_t>(s.verifying_draft.tokens.size());
    if (options_.pipelined && k_v > 0 && !s.proposing && !s.ready.has_value() &&
        s.draft_state == Session::DraftState::kReady) {
      const int64_t next_committed = n + k_v + 1;
      const int64_t k_next = WindowFor(s, next_committed, next_committed - s.prompt_length);
      // The optimistic proposal starts with the guess of the bonus token.
      if (k_next >= 1 && next_committed - 1 + k_next <= s.draft_capacity) return {Kind::kProposeAhead};
    }
    return {};
  }

  const int64_t k = WindowFor(s, n, n - s.prompt_length);
  if (k == 0) return {Kind::kVerify};
  // A proposal that continues exactly the committed tokens?
  if (s.ready.has_value()) {
    const std::vector<int32_t>& context = s.ready->context;
    const std::vector<int32_t>& tokens = s.ready->proposal.block.tokens;
    const int64_t j = n - static_cast<int64_t>(context.size());
    const bool usable = j >= 0 && j < static_cast<int64_t>(tokens.size()) &&
                        std::equal(context.begin(), context.end(), s.committed.begin()) &&
                        std::equal(tokens.begin(), tokens.begin() + j, s.committed.begin() + context.size());
    if (!usable) return {Kind::kDropProposal};
    const int64_t take = std::min<int64_t>(k, static_cast<int64_t>(tokens.size()) - j);
    return {Kind::kVerify, s.ready->proposal.block.Slice(j, take), /*from_ready=*/true};
  }
  if (!s.proposing) return {Kind::kPropose};
  return {};  // the proposal in flight is waited for (one per session); OnProposal advances again
}

void Coordinator::Apply(Session& s, Action action) {
  using Kind = Action::Kind;
  switch (action.kind) {
    case Kind::kWait:
      return;
    case Kind::kReopenDraft:
      OpenDraftSession(s);
      return;
    case Kind::kProposeAhead:
      RequestProposal(s, /*optimistic=*/true);
      return;
    case Kind::kPropose:
      RequestProposal(s, /*optimistic=*/false);
      return;
    case Kind::kDropProposal:
      s.ready.reset();
      return;
    case Kind::kVerify:
      if (action.from_ready) {
        if (s.ready->optimistic) ++s.stats.optimistic_hits;
        s.ready.reset();
      }
      SendBlock(s, std::move(action.draft));
      return;
  }
}

void Coordinator::Advance(Session& s) {
  // Each applied action changes the state Plan reads (a request in flight, a proposal dropped), so
  // this ends after a few steps with kWait.
  for (Action action = Plan(s); action.kind != Action::Kind::kWait; action = Plan(s)) {
    Apply(s, std::move(action));
  }
}

void Coordinator::RequestProposal(Session& s, bool optimistic) {
  spec::ProposeRequest request;
  request.session_id = s.draft_session;
  request.step = ++s.step;
  const int64_t n = static_cast<int64_t>(s.committed.size());
  if (optimistic) {
    // Continue after the block under verification: the committed tokens and its draft tokens are
    // the worker's sequence already; propose the bonus-token guess plus the next block.
    const int64_t k_v = static_cast<int64_t>(s.verifying_draft.tokens.size());
    request.keep_length = n + k_v;
    const int64_t next_committed = n + k_v + 1;
    request.num_tokens = WindowFor(s, next_committed, next_committed - s.prompt_length) + 1;
    s.proposing_context.assign(s.draft_sequence.begin(), s.draft_sequence.begin() + request.keep_length);
    ++s.stats.optimistic_blocks;
  } else {
    // Keep what the worker's sequence shares with the committed tokens, append the rest.
    int64_t keep = 0;
    const int64_t limit = std::min<int64_t>(n, static_cast<int64_t>(s.draft_sequence.size()));
    while (keep < limit && s.draft_sequence[keep] == s.committed[keep]) ++keep;
    request.keep_length = keep;
    request.append_tokens.assign(s.committed.begin() + keep, s.committed.end());
    request.num_tokens = WindowFor(s, n, n - s.prompt_length);
    s.proposing_context = s.committed;
  }
  s.proposing = true;
  s.proposing_since = clock_->Now();
  s.proposing_optimistic = optimistic;
  const spec::SessionId id = s.id;
  const spec::DraftSessionId draft_session = s.draft_session;
  std::shared_ptr<Mailbox> mailbox = mailbox_;
  draft_->Propose(request, [this, mailbox, id, draft_session](absl::StatusOr<spec::Proposal> proposal) {
    mailbox->Post([this, id, draft_session, proposal = std::move(proposal)]() mutable {
      OnProposal(id, draft_session, std::move(proposal));
    });
  });
}

void Coordinator::OnProposal(spec::SessionId id, spec::DraftSessionId draft_session,
                             absl::StatusOr<spec::Proposal> proposal) {
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return;
  Session& s = *it->second;
  s.proposing = false;
  if (draft_session != s.draft_session) {  // an answer for a draft session given up on
    MaybeRelease(s);
    return;
  }
  s.stats.draft_time += clock_->Now() - s.proposing_since;
  if (!proposal.ok()) {
    DraftFailed(s, proposal.status());
  } else {
    s.draft_sequence = s.proposing_context;
    s.draft_sequence.insert(s.draft_sequence.end(), proposal->block.tokens.begin(), proposal->block.tokens.end());
    s.ready = PendingProposal{std::move(s.proposing_context), std::move(*proposal), s.proposing_optimistic};
  }
  if (!s.done()) Advance(s);
  MaybeRelease(s);
}

void Coordinator::DraftFailed(Session& s, const absl::Status& status) {
  (void)status;
  ++s.stats.draft_failures;
  s.stats.degraded = true;
  s.ready.reset();
  if (s.draft_state == Session::DraftState::kReady || s.draft_state == Session::DraftState::kOpening) {
    draft_->CloseSession(s.draft_session);  // best effort; a restarted worker has lost it anyway
  }
  s.draft_state = Session::DraftState::kFailed;
  s.draft_retry_at = clock_->Now() + options_.draft_retry_interval;
}

void Coordinator::SendBlock(Session& s, spec::DraftBlock draft) {
  const int64_t n = static_cast<int64_t>(s.committed.size());
  const int64_t k = static_cast<int64_t>(draft.tokens.size());
  spec::ShardBlock block;
  block.session_id = s.id;
  block.step = ++s.step;
  block.start_position = s.target_started ? n - 1 : 0;
  block.num_tokens = n - block.start_position + k;
  block.verify = true;
  std::vector<int32_t> ids(s.committed.begin() + block.start_position, s.committed.end());
  ids.insert(ids.end(), draft.tokens.begin(), draft.tokens.end());
  block.draft = draft;
  s.target_started = true;
  s.verifying_since = clock_->Now();
  s.verifying_draft = std::move(draft);
  s.verifying_block = std::move(block);
  s.verifying_ids = std::move(ids);
  DispatchBlock(s);
}

void Coordinator::DispatchBlock(Session& s) {
  s.verifying = true;
  const spec::SessionId id = s.id;
  std::shared_ptr<Mailbox> mailbox = mailbox_;
  target_->Verify(s.verifying_block, s.verifying_ids, [this, mailbox, id](spec::BlockOutcome outcome) {
    mailbox->Post([this, id, outcome = std::move(outcome)]() mutable { OnOutcome(id, std::move(outcome)); });
  });
}

void Coordinator::OnOutcome(spec::SessionId id, spec::BlockOutcome outcome) {
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return;
  Session& s = *it->second;
  s.verifying = false;
  if (!outcome.status.ok() && RetryTarget(s, outcome.status)) {
    DispatchBlock(s);  // the shards run the same block again from the same state
    return;
  }
  if (!outcome.status.ok() && s.target_attempts > 0 && outcome.status.code() == absl::StatusCode::kNotFound) {
    // A retry found the session gone (a shard restarted and lost it): the first error says why.
    outcome.status = s.transient_error;
  }
  s.target_attempts = 0;
  // The first pass carries the prompt: its time is the prefill's.
  (s.stats.target_passes == 0 ? s.stats.prefill_time : s.stats.verify_time) +=
      clock_->Now() - s.verifying_since;
  if (s.done()) {
    MaybeRelease(s);
    return;
  }
  if (!outcome.status.ok()) {
    Fail(s, outcome.status);
    MaybeRelease(s);
    return;
  }
  if (!outcome.verdict.has_value()) {
    Fail(s, absl::InternalError("the last target shard returned no verdict"));
    MaybeRelease(s);
    return;
  }
  const spec::Verdict& v = *outcome.verdict;
  const spec::DraftBlock& draft = s.verifying_draft;
  const int64_t k = static_cast<int64_t>(draft.tokens.size());
  if (v.num_accepted < 0 || v.num_accepted > k) {
    Fail(s, absl::InternalError(absl::StrCat("verdict accepts ", v.num_accepted, " of ", k, " tokens")));
    MaybeRelease(s);
    return;
  }
  spec::SpeculationStats& st = s.stats;
  if (st.tokens == 0) st.time_to_first_token = clock_->Now() - s.start;
  st.RecordPass(k, v);
  if (k > 0) s.window.Observe(k, v.num_accepted);
  if (s.callbacks.on_pass) s.callbacks.on_pass(draft, v);

  std::vector<int32_t> emitted(draft.tokens.begin(), draft.tokens.begin() + v.num_accepted);
  emitted.push_back(v.next_token);
  s.committed.insert(s.committed.end(), emitted.begin(), emitted.end());
  // Cut at a stop token or max_new_tokens.
  size_t keep = 0;
  bool stopped = false;
  for (; keep < emitted.size(); ++keep) {
    if (st.tokens >= s.request.max_new_tokens) break;
    ++st.tokens;
    const std::vector<int32_t>& stops = s.request.stop_token_ids;
    if (std::find(stops.begin(), stops.end(), emitted[keep]) != stops.end()) {
      stopped = true;
      ++keep;
      break;
    }
  }
  if (keep > 0 && s.callbacks.on_tokens &&
      !s.callbacks.on_tokens(absl::MakeConstSpan(emitted).subspan(0, keep))) {
    stopped = true;
  }
  if (stopped) {
    Finish(s, FinishReason::kStop);
  } else if (st.tokens >= s.request.max_new_tokens) {
    Finish(s, FinishReason::kLength);
  } else if (static_cast<int64_t>(s.committed.size()) >= s.target_capacity) {
    Finish(s, FinishReason::kContext);
  } else {
    Advance(s);
  }
  MaybeRelease(s);
}

void Coordinator::Finish(Session& s, FinishReason reason) {
  s.phase = Session::Phase::kReleasing;
  s.stats.total_time = clock_->Now() - s.start;
  totals_.stats.Merge(s.stats);
  if (s.callbacks.on_done) s.callbacks.on_done(GenerationSummary{reason, s.stats});
}

void Coordinator::Fail(Session& s, absl::Status status) {
  s.phase = Session::Phase::kReleasing;
  s.stats.total_time = clock_->Now() - s.start;
  totals_.stats.Merge(s.stats);
  const bool cancelled = status.code() == absl::StatusCode::kCancelled;
  totals_.requests_failed += !cancelled;
  totals_.requests_cancelled += cancelled;
  if (s.callbacks.on_done) s.callbacks.on_done(std::move(status));
}

void Coordinator::ReleaseWorkers(const Session& s) {
  target_->CloseSession(s.id);  // also after a failed open: some shards may have opened it
  if (s.draft_state == Session::DraftState::kReady) draft_->CloseSession(s.draft_session);
}

void Coordinator::MaybeRelease(Session& s) {
  if (!s.done() || s.verifying || s.proposing || s.opens_in_flight > 0) return;
  ReleaseWorkers(s);
  sessions_.erase(s.id);  // `s` is gone from here on
  active_.fetch_sub(1);
}

}  // namespace verdict::coordinator
