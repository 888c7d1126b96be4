// SPDX-License-Identifier: Apache-2.0
#include "workers/draft_worker.h"

#include <algorithm>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "common/check.h"
#include "common/status_macros.h"
#include "workers/session_leases.h"
#include "judge/speculative_session.h"

namespace verdict::workers {
namespace {

absl::Status CheckTokenIds(absl::Span<const int32_t> ids, int64_t vocab_size, absl::string_view what) {
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat(what, " token ", i, " has id ", ids[i],
                                                     ", outside the vocabulary [0, ", vocab_size, ")"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

DraftWorker::DraftWorker(engine::ModelSlice* draft, const DraftWorkerOptions& options)
    : draft_(draft), options_(options), kv_budget_(options.max_kv_bytes, "the draft worker") {}

absl::StatusOr<std::unique_ptr<DraftWorker>> DraftWorker::Create(engine::ModelSlice* draft,
                                                                 const DraftWorkerOptions& options) {
  if (draft == nullptr || !draft->is_first() || !draft->is_last()) {
    return absl::InvalidArgumentError("the draft worker needs a whole model, not a slice");
  }
  if (options.max_sessions < 1) return absl::InvalidArgumentError("max_sessions must be >= 1");
  return std::unique_ptr<DraftWorker>(new DraftWorker(draft, options));
}

absl::Status DraftWorker::OpenSession(spec::DraftSessionId session_id, absl::Span<const int32_t> prompt,
                                      const engine::SamplingParams& sampling, int64_t capacity,
                                      bool record_distributions) {
  if (auto it = sessions_.find(session_id); it != sessions_.end()) {
    const Session& open = *it->second;
    if (open.capacity == capacity && open.record_distributions == record_distributions &&
        open.sampler.params() == sampling && std::equal(open.prompt.begin(), open.prompt.end(), prompt.begin(), prompt.end())) {
      return absl::OkStatus();  // the same open again
    }
    return absl::AlreadyExistsError(absl::StrCat("draft session ", session_id.value(),
                                                 " is already open with other arguments"));
  }
  if (num_sessions() >= options_.max_sessions) {
    return absl::ResourceExhaustedError(
        absl::StrCat("the draft worker holds its maximum of ", options_.max_sessions, " sessions"));
  }
  if (prompt.empty()) return absl::InvalidArgumentError("the prompt has no tokens");
  VERDICT_RETURN_IF_ERROR(CheckTokenIds(prompt, config().vocab_size, "prompt"));
  VERDICT_RETURN_IF_ERROR(engine::ValidateSamplingParams(sampling));
  if (capacity < 1 || capacity > config().max_position_embeddings) {
    return absl::InvalidArgumentError(absl::StrCat("session capacity ", capacity, " is outside [1, ",
                                                   config().max_position_embeddings, "]"));
  }
  if (static_cast<int64_t>(prompt.size()) > capacity) {
    return absl::ResourceExhaustedError(absl::StrCat("the prompt has ", prompt.size(),
                                                     " tokens, more than the session capacity ", capacity));
  }
  VERDICT_RETURN_IF_ERROR(kv_budget_.CheckCapacity(capacity));
  VERDICT_ASSIGN_OR_RETURN(std::unique_ptr<engine::KvCache> cache, draft_->NewKvCache(capacity));
  VERDICT_RETURN_IF_ERROR(kv_budget_.Reserve(static_cast<int64_t>(cache->size_bytes()), capacity));
  auto session = std::unique_ptr<Session>(
      new Session{std::move(cache), std::vector<int32_t>(prompt.begin(), prompt.end()),
                  engine::Sampler(sampling), record_distributions, capacity,
                  std::vector<int32_t>(prompt.begin(), prompt.end())});
  sessions_.emplace(session_id, std::move(session));
  return absl::OkStatus();
}

void DraftWorker::CloseSession(spec::DraftSessionId session_id) {
  auto it = sessions_.find(session_id);
  if (it == sessions_.end()) return;
  kv_budget_.Release(static_cast<int64_t>(it->second->cache->size_bytes()));
  sessions_.erase(it);
}

int64_t DraftWorker::CloseSessionsOf(uint32_t owner) {
  return static_cast<int64_t>(absl::erase_if(sessions_, [this, owner](const auto& entry) {
    if (SessionLeases::OwnerOf(entry.first.value()) != owner) return false;
    kv_budget_.Release(static_cast<int64_t>(entry.second->cache->size_bytes()));
    return true;
  }));
}

std::vector<int32_t> DraftWorker::sequence(spec::DraftSessionId session_id) const {
  auto it = sessions_.find(session_id);
  return it == sessions_.end() ? std::vector<int32_t>() : it->second->tokens;
}

int64_t DraftWorker::cached_length(spec::DraftSessionId session_id) const {
  auto it = sessions_.find(session_id);
  return it == sessions_.end() ? -1 : it->second->cache->length();
}

absl::Status DraftWorker::Validate(const spec::ProposeRequest& request, const Session& session) const {
  const int64_t length = static_cast<int64_t>(session.tokens.size());
  if (request.keep_length < 0 || request.keep_length > length) {
    return absl::InvalidArgumentError(absl::StrCat("keep_length ", request.keep_length,
                                                   " is outside the session's sequence of ", length, " tokens"));
  }
  if (request.num_tokens < 1 || request.num_tokens > spec::kMaxDraftTokens) {
    return absl::InvalidArgumentError(absl::StrCat("the draft window must be in [1, ", spec::kMaxDraftTokens,
                                                   "], got ", request.num_tokens));
  }
  const int64_t base = request.keep_length + static_cast<int64_t>(request.append_tokens.size());
  if (base < 1) return absl::InvalidArgumentError("nothing to continue from: the kept sequence is empty");
  VERDICT_RETURN_IF_ERROR(CheckTokenIds(request.append_tokens, config().vocab_size, "appended"));
  // The cache ends up holding every token but the last proposed one.
  if (base + request.num_tokens - 1 > session.cache->capacity()) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the session holds ", session.cache->capacity(), " positions; ", base, " tokens plus ",
        request.num_tokens, " proposed do not fit"));
  }
  return absl::OkStatus();
}

absl::StatusOr<spec::Proposal> DraftWorker::Propose(const spec::ProposeRequest& request) {
  return std::move(ProposeBatch(absl::MakeConstSpan(&request, 1))[0]);
}

std::vector<absl::StatusOr<spec::Proposal>> DraftWorker::ProposeBatch(
    absl::Span<const spec::ProposeRequest> requests) {
  std::vector<absl::StatusOr<spec::Proposal>> results(requests.size(), absl::UnknownError("not run"));
  struct Running {
    size_t request;
    Session* session;
    int64_t remaining;
    spec::Proposal proposal;
  };
  std::vector<Running> running;
  absl::flat_hash_set<spec::DraftSessionId> seen;
  for (size_t i = 0; i < requests.size(); ++i) {
    const spec::ProposeRequest& r = requests[i];
    auto it = sessions_.find(r.session_id);
    if (it == sessions_.end()) {
      results[i] = absl::NotFoundError(absl::StrCat("no draft session ", r.session_id.value()));
      continue;
    }
    if (seen.contains(r.session_id)) {
      results[i] = absl::InvalidArgumentError(
          absl::StrCat("draft session ", r.session_id.value(), " appears twice in one batch"));
      continue;
    }
    Session& s = *it->second;
    if (s.last_request.has_value() && r.step <= s.last_request->step) {
      const spec::ProposeRequest& last = *s.last_request;
      if (r.step == last.step && r.keep_length == last.keep_length && r.append_tokens == last.append_tokens &&
          r.num_tokens == last.num_tokens) {
        results[i] = s.last_proposal;  // a repeated request: the same answer, nothing runs
        seen.insert(r.session_id);
      } else {
        results[i] = absl::InvalidArgumentError(absl::StrCat("draft session ", r.session_id.value(), ": step ",
                                                             r.step, " does not follow step ", last.step));
      }
      continue;
    }
    if (absl::Status status = Validate(r, s); !status.ok()) {
      results[i] = std::move(status);
      continue;
    }
    seen.insert(r.session_id);
    // Roll back to the kept prefix and append; the cache must leave the last token unfed so that
    // the first forward pass has something to read logits from.
    s.tokens.resize(r.keep_length);
    s.tokens.insert(s.tokens.end(), r.append_tokens.begin(), r.append_tokens.end());
    const int64_t cached = std::min(s.cache->length(), static_cast<int64_t>(s.tokens.size()) - 1);
    VERDICT_CHECK(s.cache->Truncate(cached).ok());
    Running run{i, &s, r.num_tokens, {}};
    run.proposal.step = r.step;
    run.proposal.block.tokens.reserve(r.num_tokens);
    running.push_back(std::move(run));
  }

  std::vector<engine::SequenceInput> sequences;
  while (!running.empty()) {
    feed_.clear();
    sequences.clear();
    for (const Running& run : running) {
      const std::vector<int32_t>& tokens = run.session->tokens;
      const int64_t from = run.session->cache->length();
      feed_.insert(feed_.end(), tokens.begin() + from, tokens.end());
      sequences.push_back({run.session->cache.get(), static_cast<int64_t>(tokens.size()) - from});
    }
    engine::ForwardBatch batch;
    batch.sequences = sequences;
    batch.token_ids = feed_;
    batch.outputs = engine::ForwardBatch::Outputs::kLastOfEachSequence;
    // No row reaches the host: greedy sessions propose from the backend's row summaries, sampled
    // ones from its draws and compacted proposals (greedy rows in a mixed batch get greedy
    // requests, which they ignore). Sessions that record their distributions take whole rows.
    const auto greedy = [](const Running& run) { return run.session->sampler.params().greedy(); };
    const auto records = [](const Running& run) { return run.session->record_distributions; };
    batch.contents.logits = std::any_of(running.begin(), running.end(), records);
    batch.contents.hidden = false;
    batch.contents.summaries = true;
    sample_requests_.clear();
    if (!std::all_of(running.begin(), running.end(), greedy)) {
      for (Running& run : running) {
        // A recording session draws from its row on the host: its request draws nothing.
        sample_requests_.push_back(run.session->record_distributions ? engine::math::SampledRowRequest{}
                                                                      : judge::DraftSampleRequest(run.session->sampler));
      }
      batch.contents.sampled_requests = sample_requests_;
      batch.contents.sampled_supports = true;
    }
    if (absl::Status status = draft_->Forward(batch, &forward_); !status.ok()) {
      // Validation above makes this unexpected; each session keeps a consistent state (its cache
      // holds a prefix of its tokens), the proposals fail.
      for (Running& run : running) results[run.request] = status;
      return results;
    }
    ++forward_passes_;
    std::vector<Running> still;
    for (size_t j = 0; j < running.size(); ++j) {
      Running& run = running[j];
      int32_t token;
      if (run.session->record_distributions) {
        const int64_t vocab = config().vocab_size;
        token = judge::AppendDraftToken(absl::MakeConstSpan(forward_.logits).subspan(j * vocab, vocab),
                                        run.session->sampler, /*record_distribution=*/true, &probs_,
                                        &run.proposal.block);
      } else if (run.session->sampler.params().greedy()) {
        token = judge::AppendGreedyDraftToken(forward_.summaries[j], &run.proposal.block);
      } else {
        token = judge::AppendSampledDraftToken(forward_, j, &run.proposal.block);
      }
      run.session->tokens.push_back(token);
      if (--run.remaining > 0) {
        still.push_back(std::move(run));
      } else {
        run.proposal.sequence_length = static_cast<int64_t>(run.session->tokens.size());
        if (!run.session->record_distributions) {
          run.session->last_request = requests[run.request];
          run.session->last_proposal = run.proposal;
        }
        results[run.request] = std::move(run.proposal);
      }
    }
    running = std::move(still);
  }
  return results;
}

}  // namespace verdict::workers
