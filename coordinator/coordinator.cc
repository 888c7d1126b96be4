// SPDX-License-Identifier: Apache-2.0
#include "coordinator/coordinator.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/status_macros.h"

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

namespace {

// The slice [from, from + count) of a draft block (tokens, log-probs, proposal distributions).
judge::DraftBlock Slice(const judge::DraftBlock& block, size_t from, size_t count) {
  judge::DraftBlock out;
  out.tokens.assign(block.tokens.begin() + from, block.tokens.begin() + from + count);
  if (!block.logprobs.empty()) {
    out.logprobs.assign(block.logprobs.begin() + from, block.logprobs.begin() + from + count);
  }
  if (!block.proposals.empty()) {
    out.proposals.assign(block.proposals.begin() + from, block.proposals.begin() + from + count);
  }
  return out;
}

}  // namespace

// A proposal and the sequence it continues: usable for committed tokens X iff X = context + the
// proposal's first j tokens for some j < its length (then its tokens from j on are the draft).
struct PendingProposal {
  std::vector<int32_t> context;
  workers::Proposal proposal;
  bool optimistic = false;
};

struct Coordinator::Session {
  uint64_t id = 0;
  GenerationRequest request;
  GenerationCallbacks callbacks;
  std::vector<int32_t> committed;  // prompt + generated
  int64_t prompt_length = 0;
  int64_t target_capacity = 0;
  int64_t draft_capacity = 0;
  engine::SamplingParams draft_sampling;
  judge::DraftWindow window{judge::DraftWindowOptions{}};
  uint64_t step = 0;
  absl::Time start;

  // In flight (the session is released only when nothing is).
  int opens_in_flight = 0;
  bool verifying = false;
  bool proposing = false;

  // Target side.
  bool target_open = false;
  bool target_started = false;  // the prompt went out with the first block
  judge::DraftBlock verifying_draft;

  // Draft side.
  enum class DraftState { kNone, kOpening, kReady, kFailed } draft_state = DraftState::kNone;
  uint64_t draft_session = 0;
  std::vector<int32_t> draft_sequence;  // mirror of the worker's sequence
  std::vector<int32_t> proposing_context;
  bool proposing_optimistic = false;
  std::optional<PendingProposal> ready;
  absl::Time draft_retry_at;

  bool done = false;
  GenerationStats stats;
};

Coordinator::Coordinator(const CoordinatorOptions& options, clients::DraftClient* draft,
                         clients::TargetClient* target)
    : options_(options), draft_(draft), target_(target) {}

Coordinator::~Coordinator() {
  loop_.Post([this] {
    std::vector<std::shared_ptr<Session>> all;
    for (auto& [id, s] : sessions_) all.push_back(s);
    for (auto& s : all) {
      if (!s->done) Fail(*s, absl::CancelledError("the coordinator is shutting down"));
      MaybeRelease(*s);
    }
  });
  // Wait (bounded) for the work in flight to come back, so no client calls back into a destroyed
  // coordinator; clients complete every call (deadlines, shutdown errors).
  for (int i = 0; i < 3000 && active_.load() > 0; ++i) absl::SleepFor(absl::Milliseconds(10));
}

absl::StatusOr<uint64_t> Coordinator::Start(GenerationRequest request, GenerationCallbacks callbacks) {
  const int64_t n = static_cast<int64_t>(request.prompt.size());
  if (n == 0) return absl::InvalidArgumentError("the prompt has no tokens");
  if (n >= options_.target_context) {
    return absl::InvalidArgumentError(absl::StrCat("the prompt has ", n, " tokens; the target's context holds ",
                                                   options_.target_context, " positions"));
  }
  if (request.max_new_tokens < 1) {
    return absl::InvalidArgumentError(absl::StrCat("max tokens must be >= 1, got ", request.max_new_tokens));
  }
  VERDICT_RETURN_IF_ERROR(judge::ValidateDraftWindowOptions(request.window));
  VERDICT_RETURN_IF_ERROR(judge::ValidateVerificationConfig(request.verification));
  if (active_.fetch_add(1) >= options_.max_sessions) {
    active_.fetch_sub(1);
    return absl::ResourceExhaustedError(
        absl::StrCat("the coordinator is serving its maximum of ", options_.max_sessions, " sessions"));
  }
  auto s = std::make_unique<Session>();
  s->id = next_id_.fetch_add(1);
  s->prompt_length = n;
  s->committed = request.prompt;
  const int64_t budget = n + request.max_new_tokens;
  s->target_capacity = std::min(options_.target_context, budget);
  s->draft_capacity = std::min(options_.draft_context, budget);
  if (request.draft_sampling.has_value()) {
    s->draft_sampling = *request.draft_sampling;
  } else {
    s->draft_sampling = request.verification.target_sampling;
    s->draft_sampling.seed = request.verification.target_sampling.seed ^ 0x9e3779b97f4a7c15ULL;
  }
  s->window = judge::DraftWindow(request.window);
  const int64_t max_k = request.window.adaptive ? request.window.max_k : request.window.k;
  s->stats.accepted_histogram.assign(max_k + 1, 0);
  if (draft_ == nullptr || n >= s->draft_capacity) request.speculate = false;
  s->request = std::move(request);
  s->callbacks = std::move(callbacks);
  s->start = absl::Now();
  const uint64_t id = s->id;
  loop_.Post([this, session = std::shared_ptr<Session>(std::move(s))] {
    sessions_.emplace(session->id, session);
    ++totals_.requests;
    Open(*session);
  });
  return id;
}

void Coordinator::Cancel(uint64_t session_id) {
  loop_.Post([this, session_id] {
    auto it = sessions_.find(session_id);
    if (it == sessions_.end() || it->second->done) return;
    Fail(*it->second, absl::CancelledError("the generation was cancelled"));
    MaybeRelease(*it->second);
  });
}

CoordinatorSnapshot Coordinator::Snapshot() {
  CoordinatorSnapshot snap;
  auto fill = [this, &snap] {
    const absl::Time now = absl::Now();
    for (const auto& [id, s] : sessions_) {
      if (s->done) {
        ++snap.releasing;
        continue;
      }
      snap.sessions.push_back({id, s->request.request_id, judge::PolicyName(s->request.verification),
                               s->prompt_length, s->stats.tokens, s->window.k(), s->stats.degraded,
                               now - s->start});
    }
    snap.totals = totals_;
  };
  if (loop_.InLoop()) {
    fill();
    return snap;
  }
  absl::Notification done;
  loop_.Post([&] {
    fill();
    done.Notify();
  });
  done.WaitForNotification();
  return snap;
}

void Coordinator::Open(Session& s) {
  const uint64_t id = s.id;
  ++s.opens_in_flight;
  target_->OpenSession({id, s.target_capacity, s.request.verification}, [this, id](absl::Status status) {
    loop_.Post([this, id, status] {
      auto it = sessions_.find(id);
      if (it == sessions_.end()) return;
      Session& s = *it->second;
      --s.opens_in_flight;
      if (!s.done) {
        if (!status.ok()) {
          Fail(s, status);
        } else {
          s.target_open = true;
          Advance(s);
        }
      }
      MaybeRelease(s);
    });
  });
  if (s.request.speculate) OpenDraftSession(s);
}

void Coordinator::OpenDraftSession(Session& s) {
  // A fresh draft-session id each time: a late answer for an abandoned one is recognisably stale.
  s.draft_state = Session::DraftState::kOpening;
  s.draft_session = next_draft_session_++;
  s.draft_sequence = s.committed;
  ++s.opens_in_flight;
  const uint64_t id = s.id, draft_session = s.draft_session;
  draft_->OpenSession({draft_session, s.committed, s.draft_sampling, s.draft_capacity},
                      [this, id, draft_session](absl::Status status) {
                        loop_.Post([this, id, draft_session, status] {
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
                          if (!s.done) Advance(s);
                          MaybeRelease(s);
                        });
                      });
}

int64_t Coordinator::WindowFor(const Session& s, int64_t committed, int64_t generated) const {
  if (!s.request.speculate || s.draft_state != Session::DraftState::kReady) return 0;
  const int64_t remaining = s.request.max_new_tokens - generated;
  // A pass commits up to k + 1 tokens: draft past neither max_new_tokens nor either context.
  int64_t k = std::min({s.window.k(), remaining - 1, s.target_capacity - committed,
                        s.draft_capacity - committed + 1});
  return std::max<int64_t>(k, 0);
}

void Coordinator::Advance(Session& s) {
  if (s.done || !s.target_open) return;
  // The first block waits for the draft session (later reopenings do not hold decoding up).
  if (!s.target_started && s.draft_state == Session::DraftState::kOpening) return;
  const int64_t n = static_cast<int64_t>(s.committed.size());
  const int64_t generated = n - s.prompt_length;

  // The draft was down: try it again after the pause (catching up from the committed tokens).
  if (s.request.speculate && s.draft_state == Session::DraftState::kFailed && !s.proposing &&
      absl::Now() >= s.draft_retry_at) {
    OpenDraftSession(s);
  }

  if (s.verifying) {
    // Pipelining: draft the next block now, assuming this one is accepted whole.
    const int64_t k_v = static_cast<int64_t>(s.verifying_draft.tokens.size());
    if (options_.pipelined && k_v > 0 && !s.proposing && !s.ready.has_value() &&
        s.draft_state == Session::DraftState::kReady) {
      const int64_t next_committed = n + k_v + 1;
      const int64_t k_next = WindowFor(s, next_committed, next_committed - s.prompt_length);
      // The optimistic proposal starts with the guess of the bonus token.
      if (k_next >= 1 && next_committed - 1 + k_next <= s.draft_capacity) RequestProposal(s, true);
    }
    return;
  }

  const int64_t k = WindowFor(s, n, generated);
  if (k == 0) {
    SendBlock(s, {});
    return;
  }
  // A proposal that continues exactly the committed tokens?
  if (s.ready.has_value()) {
    PendingProposal ready = std::move(*s.ready);
    s.ready.reset();
    const std::vector<int32_t>& context = ready.context;
    const std::vector<int32_t>& tokens = ready.proposal.block.tokens;
    const int64_t j = n - static_cast<int64_t>(context.size());
    bool usable = j >= 0 && j < static_cast<int64_t>(tokens.size()) &&
                  std::equal(context.begin(), context.end(), s.committed.begin()) &&
                  std::equal(tokens.begin(), tokens.begin() + j, s.committed.begin() + context.size());
    if (usable) {
      const int64_t take = std::min<int64_t>(k, static_cast<int64_t>(tokens.size()) - j);
      if (ready.optimistic) ++s.stats.optimistic_hits;
      SendBlock(s, Slice(ready.proposal.block, j, take));
      return;
    }
  }
  if (!s.proposing) RequestProposal(s, false);
  // else: the proposal in flight is waited for (one per session); OnProposal advances again.
}

void Coordinator::RequestProposal(Session& s, bool optimistic) {
  workers::ProposeRequest request;
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
  s.proposing_optimistic = optimistic;
  const uint64_t id = s.id, draft_session = s.draft_session;
  draft_->Propose(request, [this, id, draft_session](absl::StatusOr<workers::Proposal> proposal) {
    loop_.Post([this, id, draft_session, proposal = std::move(proposal)]() mutable {
      OnProposal(id, draft_session, std::move(proposal));
    });
  });
}

void Coordinator::OnProposal(uint64_t id, uint64_t draft_session, absl::StatusOr<workers::Proposal> proposal) {
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return;
  Session& s = *it->second;
  s.proposing = false;
  if (draft_session != s.draft_session) {  // an answer for a draft session given up on
    MaybeRelease(s);
    return;
  }
  if (!proposal.ok()) {
    DraftFailed(s, proposal.status());
  } else {
    s.draft_sequence = s.proposing_context;
    s.draft_sequence.insert(s.draft_sequence.end(), proposal->block.tokens.begin(), proposal->block.tokens.end());
    s.ready = PendingProposal{std::move(s.proposing_context), std::move(*proposal), s.proposing_optimistic};
  }
  if (!s.done) Advance(s);
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
  s.draft_retry_at = absl::Now() + options_.draft_retry_interval;
}

void Coordinator::SendBlock(Session& s, judge::DraftBlock draft) {
  const int64_t n = static_cast<int64_t>(s.committed.size());
  const int64_t k = static_cast<int64_t>(draft.tokens.size());
  workers::ShardBlock block;
  block.session_id = s.id;
  block.step = ++s.step;
  block.start_position = s.target_started ? n - 1 : 0;
  block.num_tokens = n - block.start_position + k;
  block.verify = true;
  std::vector<int32_t> ids(s.committed.begin() + block.start_position, s.committed.end());
  ids.insert(ids.end(), draft.tokens.begin(), draft.tokens.end());
  block.draft = draft;
  s.target_started = true;
  s.verifying = true;
  s.verifying_draft = std::move(draft);
  if (k == 0) ++s.stats.target_only_passes;
  const uint64_t id = s.id;
  target_->Verify(block, std::move(ids), [this, id](workers::BlockOutcome outcome) {
    loop_.Post([this, id, outcome = std::move(outcome)]() mutable { OnOutcome(id, std::move(outcome)); });
  });
  // With the block on its way, draft the next one (pipelining).
  Advance(s);
}

void Coordinator::OnOutcome(uint64_t id, workers::BlockOutcome outcome) {
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return;
  Session& s = *it->second;
  s.verifying = false;
  if (s.done) {
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
  const judge::Verdict& v = *outcome.verdict;
  const judge::DraftBlock& draft = s.verifying_draft;
  const int64_t k = static_cast<int64_t>(draft.tokens.size());
  if (v.num_accepted < 0 || v.num_accepted > k) {
    Fail(s, absl::InternalError(absl::StrCat("verdict accepts ", v.num_accepted, " of ", k, " tokens")));
    MaybeRelease(s);
    return;
  }
  GenerationStats& st = s.stats;
  if (st.tokens == 0) st.time_to_first_token = absl::Now() - s.start;
  ++st.target_passes;
  st.proposed += k;
  if (v.num_accepted < static_cast<int64_t>(st.accepted_histogram.size())) ++st.accepted_histogram[v.num_accepted];
  for (int32_t i = 0; i < v.num_accepted && i < static_cast<int32_t>(v.reasons.size()); ++i) {
    st.accepted_exact += v.reasons[i] == judge::AcceptReason::kExact;
    st.accepted_judge += v.reasons[i] == judge::AcceptReason::kJudge;
    st.accepted_lossy += v.reasons[i] == judge::AcceptReason::kLossy;
  }
  if (v.shadow_num_accepted >= 0) {
    st.shadow_accepted += v.shadow_num_accepted;
    st.shadow_judge_only += v.shadow_judge_only;
  }
  if (k > 0) s.window.Observe(k, v.num_accepted);

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
  s.done = true;
  s.stats.total_time = absl::Now() - s.start;
  Account(s.stats, false, false);
  GenerationSummary summary{reason, s.stats};
  if (s.callbacks.on_done) s.callbacks.on_done(std::move(summary));
}

void Coordinator::Fail(Session& s, absl::Status status) {
  s.done = true;
  s.stats.total_time = absl::Now() - s.start;
  Account(s.stats, status.code() != absl::StatusCode::kCancelled, status.code() == absl::StatusCode::kCancelled);
  if (s.callbacks.on_done) s.callbacks.on_done(std::move(status));
}

void Coordinator::MaybeRelease(Session& s) {
  if (!s.done || s.verifying || s.proposing || s.opens_in_flight > 0) return;
  target_->CloseSession(s.id);  // also after a failed open: some shards may have opened it
  if (s.draft_state == Session::DraftState::kReady) draft_->CloseSession(s.draft_session);
  const uint64_t id = s.id;
  sessions_.erase(id);  // `s` is gone from here on
  active_.fetch_sub(1);
}

void Coordinator::Account(const GenerationStats& st, bool failed, bool cancelled) {
  CoordinatorTotals& t = totals_;
  t.requests_failed += failed;
  t.requests_cancelled += cancelled;
  t.tokens += st.tokens;
  t.target_passes += st.target_passes;
  t.target_only_passes += st.target_only_passes;
  t.proposed += st.proposed;
  t.accepted_exact += st.accepted_exact;
  t.accepted_judge += st.accepted_judge;
  t.accepted_lossy += st.accepted_lossy;
  if (t.accepted_histogram.size() < st.accepted_histogram.size()) {
    t.accepted_histogram.resize(st.accepted_histogram.size(), 0);
  }
  for (size_t i = 0; i < st.accepted_histogram.size(); ++i) t.accepted_histogram[i] += st.accepted_histogram[i];
  t.optimistic_blocks += st.optimistic_blocks;
  t.optimistic_hits += st.optimistic_hits;
  t.draft_failures += st.draft_failures;
}

}  // namespace verdict::coordinator
