// SPDX-License-Identifier: Apache-2.0
// The draft worker's core: one draft model and many sessions, each a token sequence with its own
// KV cache. A proposal names the prefix of the sequence to keep (rolling back is a KV-cache
// truncation), the tokens to append (the target's corrections or bonus tokens) and how many tokens
// to propose; the proposed tokens join the sequence, so the next proposal can continue from them
// (optimistic drafting while they are verified) or drop them.
//
// ProposeBatch runs the proposals of many sessions together: step j of every proposal that still
// needs tokens shares one forward pass (continuous batching; the first step also carries each
// session's not-yet-cached tokens, e.g. its prompt). No networking here: the gRPC service
// (services/draft) is a thin adapter, and tests drive this class directly.
//
// Not thread-safe: one engine thread calls everything (the service's batching loop).
#ifndef VERDICT_WORKERS_DRAFT_WORKER_H_
#define VERDICT_WORKERS_DRAFT_WORKER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/kv_cache.h"
#include "engine/model.h"
#include "engine/sampler.h"
#include "judge/verification.h"
#include "spec/messages.h"
#include "workers/kv_budget.h"

namespace verdict::workers {

struct DraftWorkerOptions {
  int64_t max_sessions = 256;
  // Memory bound: the KV caches of all sessions together (each allocated whole when its session
  // opens) may hold at most this many bytes; an open that would pass it is refused with
  // kResourceExhausted, so no session runs out of memory midway. 0: no bound.
  int64_t max_kv_bytes = 0;
};

class DraftWorker {
 public:
  // `draft` must be a whole model and outlive the worker. kInvalidArgument for a slice.
  static absl::StatusOr<std::unique_ptr<DraftWorker>> Create(engine::ModelSlice* draft,
                                                             const DraftWorkerOptions& options);

  // Opens a session over `prompt` (>= 1 token, ids in the vocabulary) with the draft's own
  // sampling. `capacity` bounds the sequence (prompt + generated + one block), at most the
  // model's context. Errors: kInvalidArgument (empty prompt, bad ids, invalid sampling, capacity
  // out of range), kAlreadyExists (id in use), kResourceExhausted (session limit; prompt longer
  // than the capacity). With `record_distributions` its proposals also carry the draft's whole
  // plain-softmax distribution at each token (spec::DraftBlock::distributions: what the KL rule
  // compares; its rows then come to the host).
  absl::Status OpenSession(spec::DraftSessionId session_id, absl::Span<const int32_t> prompt,
                           const engine::SamplingParams& sampling, int64_t capacity,
                           bool record_distributions = false);

  // Opening an open session again with the same arguments is fine (idempotent: a retried open);
  // with other arguments it is kAlreadyExists.
  //
  // Releases the session's cache. Unknown ids are fine (idempotent).
  void CloseSession(spec::DraftSessionId session_id);
  // Releases every session whose id's high 32 bits are `owner` (a coordinator incarnation whose
  // lease ran out: workers/session_leases.h). Returns how many there were.
  int64_t CloseSessionsOf(uint32_t owner);

  // Runs the requests together and returns one result per request, in order. A request that fails
  // validation (kNotFound: unknown session; kInvalidArgument: keep_length beyond the sequence,
  // bad ids, num_tokens out of range, the same session twice in one batch; kResourceExhausted:
  // the sequence would pass the capacity) leaves its session unchanged and does not affect the
  // others.
  std::vector<absl::StatusOr<spec::Proposal>> ProposeBatch(absl::Span<const spec::ProposeRequest> requests);
  absl::StatusOr<spec::Proposal> Propose(const spec::ProposeRequest& request);

  int64_t num_sessions() const { return static_cast<int64_t>(sessions_.size()); }
  int64_t kv_bytes() const { return kv_budget_.used(); }  // held by the open sessions
  bool has_session(spec::DraftSessionId session_id) const { return sessions_.contains(session_id); }
  // The session's current sequence (for tests and status), empty if unknown.
  std::vector<int32_t> sequence(spec::DraftSessionId session_id) const;
  // Positions of the session's sequence held in its KV cache, -1 if unknown.
  int64_t cached_length(spec::DraftSessionId session_id) const;
  int64_t forward_passes() const { return forward_passes_; }
  const engine::LlamaConfig& config() const { return draft_->config(); }

 private:
  struct Session {
    std::unique_ptr<engine::KvCache> cache;  // holds a prefix of `tokens`
    std::vector<int32_t> tokens;
    engine::Sampler sampler;
    bool record_distributions = false;
    int64_t capacity = 0;
    std::vector<int32_t> prompt;  // as opened (a repeated open must match it)
    // The last proposal and what asked for it: the same request again (a retry after a lost
    // reply, or a duplicated request) gets the same answer without running again. Requests must
    // not go back in steps. (Not kept for sessions that record distributions: those are large.)
    std::optional<spec::ProposeRequest> last_request;
    spec::Proposal last_proposal;
  };

  DraftWorker(engine::ModelSlice* draft, const DraftWorkerOptions& options);
  absl::Status Validate(const spec::ProposeRequest& request, const Session& session) const;

  engine::ModelSlice* draft_;
  DraftWorkerOptions options_;
  absl::flat_hash_map<spec::DraftSessionId, std::unique_ptr<Session>> sessions_;
  engine::ForwardResult forward_;
  std::vector<int32_t> feed_;
  std::vector<engine::math::SampledRowRequest> sample_requests_;  // the sampled rows of a step
  std::vector<float> probs_;  // scratch of the rows that record their distributions
  int64_t forward_passes_ = 0;
  KvBudget kv_budget_;
};

}  // namespace verdict::workers

#endif  // VERDICT_WORKERS_DRAFT_WORKER_H_
