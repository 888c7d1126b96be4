// SPDX-License-Identifier: Apache-2.0
#include "workers/target_shard.h"

#include <algorithm>
#include <thread>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "workers/session_leases.h"

namespace verdict::workers {

TargetShard::TargetShard(engine::SliceRunner* runner, std::shared_ptr<const judge::JudgeHead> head,
                         const TargetShardOptions& options)
    : runner_(runner),
      head_(std::move(head)),
      probe_head_(head_.get()),
      options_(options),
      kv_budget_(options.max_kv_bytes, "the target shard") {}

absl::StatusOr<std::unique_ptr<TargetShard>> TargetShard::Create(engine::SliceRunner* runner,
                                                                 const judge::JudgeHead* head,
                                                                 const TargetShardOptions& options) {
  // The caller keeps the head alive: a shared pointer that owns nothing.
  return Create(runner, std::shared_ptr<const judge::JudgeHead>(head, [](const judge::JudgeHead*) {}), options);
}

absl::Status TargetShard::ReplaceHead(std::shared_ptr<const judge::JudgeHead> head) {
  if (!runner_->is_last()) return absl::InvalidArgumentError("only the last target shard holds the judge head");
  if (head == nullptr) return absl::InvalidArgumentError("no judge head");
  if (head->hidden_size() != runner_->config().hidden_size) {
    return absl::InvalidArgumentError(absl::StrCat("the judge head was trained for hidden size ", head->hidden_size(),
                                                   ", the target has ", runner_->config().hidden_size));
  }
  VERDICT_RETURN_IF_ERROR(runner_->SetHiddenProbe(head->weight));
  head_ = std::move(head);
  probe_head_ = head_.get();
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<TargetShard>> TargetShard::Create(engine::SliceRunner* runner,
                                                                 std::shared_ptr<const judge::JudgeHead> head,
                                                                 const TargetShardOptions& options) {
  if (runner == nullptr) return absl::InvalidArgumentError("no target slice");
  if (head != nullptr) {
    if (!runner->is_last()) {
      return absl::InvalidArgumentError("only the last target shard holds the judge head");
    }
    if (head->hidden_size() != runner->config().hidden_size) {
      return absl::InvalidArgumentError(absl::StrCat("the judge head was trained for hidden size ",
                                                     head->hidden_size(), ", the target has ",
                                                     runner->config().hidden_size));
    }
  }
  if (options.max_sessions < 1) return absl::InvalidArgumentError("max_sessions must be >= 1");
  if (head != nullptr) VERDICT_RETURN_IF_ERROR(runner->SetHiddenProbe(head->weight));
  return std::unique_ptr<TargetShard>(new TargetShard(runner, std::move(head), options));
}

absl::Status TargetShard::OpenSession(spec::SessionId session_id, int64_t capacity,
                                      const spec::SpeculationParams& params,
                                      const spec::SamplingParams& target_sampling) {
  judge::VerificationConfig verification;
  if (is_last()) {
    VERDICT_ASSIGN_OR_RETURN(verification,
                             judge::ToVerificationConfig(params, target_sampling,
                                                         head_ != nullptr ? head_->threshold : verification.judge_threshold));
    if (options_.adjust_verification) options_.adjust_verification(&verification);
  }
  return OpenSession(session_id, capacity, verification);
}

absl::Status TargetShard::OpenSession(spec::SessionId session_id, int64_t capacity,
                                      const judge::VerificationConfig& verification) {
  if (auto it = sessions_.find(session_id); it != sessions_.end()) {
    // The same open again (a retry after a lost reply, a duplicated request) is fine.
    if (it->second->cache->capacity() == capacity) return absl::OkStatus();
    return absl::AlreadyExistsError(absl::StrCat("target session ", session_id.value(),
                                                 " is already open with another capacity"));
  }
  if (num_sessions() >= options_.max_sessions) {
    return absl::ResourceExhaustedError(
        absl::StrCat("the target shard holds its maximum of ", options_.max_sessions, " sessions"));
  }
  const int64_t context = runner_->config().max_position_embeddings;
  if (capacity < 1 || capacity > context) {
    return absl::InvalidArgumentError(
        absl::StrCat("session capacity ", capacity, " is outside [1, ", context, "]"));
  }
  if (is_last()) {
    VERDICT_RETURN_IF_ERROR(judge::ValidateVerificationConfig(verification));
    if (verification.judge != judge::JudgeMode::kOff && head_ == nullptr) {
      return absl::FailedPreconditionError("the judge policy needs a judge head; this shard has none");
    }
  }
  VERDICT_RETURN_IF_ERROR(kv_budget_.CheckCapacity(capacity));
  VERDICT_ASSIGN_OR_RETURN(std::unique_ptr<engine::SequenceCache> cache, runner_->NewCache(capacity));
  VERDICT_RETURN_IF_ERROR(kv_budget_.Reserve(static_cast<int64_t>(cache->size_bytes()), capacity));
  auto session = std::unique_ptr<Session>(new Session{std::move(cache), verification,
                                                      engine::Sampler(verification.target_sampling)});
  if (is_last() && verification.judge != judge::JudgeMode::kOff) session->head = head_;
  sessions_.emplace(session_id, std::move(session));
  return absl::OkStatus();
}

void TargetShard::CloseSession(spec::SessionId session_id) {
  auto it = sessions_.find(session_id);
  if (it == sessions_.end()) return;
  kv_budget_.Release(static_cast<int64_t>(it->second->cache->size_bytes()));
  sessions_.erase(it);
}

int64_t TargetShard::CloseSessionsOf(uint32_t owner) {
  return static_cast<int64_t>(absl::erase_if(sessions_, [this, owner](const auto& entry) {
    if (SessionLeases::OwnerOf(entry.first.value()) != owner) return false;
    kv_budget_.Release(static_cast<int64_t>(entry.second->cache->size_bytes()));
    return true;
  }));
}

int64_t TargetShard::cached_length(spec::SessionId session_id) const {
  auto it = sessions_.find(session_id);
  return it == sessions_.end() ? -1 : it->second->cache->length();
}

bool TargetShard::IsReplay(const spec::ShardBlock& block, const Session& session) {
  const spec::ShardBlock& last = session.last_block;
  return session.has_step && block.step == session.last_step && block.start_position == last.start_position &&
         block.num_tokens == last.num_tokens && block.verify == last.verify &&
         block.draft.tokens == last.draft.tokens;
}

absl::Status TargetShard::ValidateBlock(const spec::ShardBlock& block, const Session& session) const {
  if (session.has_step && block.step <= session.last_step && !IsReplay(block, session)) {
    return absl::InvalidArgumentError(absl::StrCat("session ", block.session_id.value(), ": step ", block.step,
                                                   " does not follow step ", session.last_step));
  }
  const engine::SequenceCache& cache = *session.cache;
  if (block.start_position < 0 || block.start_position > cache.length()) {
    return absl::InvalidArgumentError(absl::StrCat("session ", block.session_id.value(), ": the block starts at position ",
                                                   block.start_position, " but ", cache.length(),
                                                   " positions are cached"));
  }
  if (block.start_position + block.num_tokens > cache.capacity()) {
    return absl::ResourceExhaustedError(absl::StrCat("session ", block.session_id.value(), ": positions up to ",
                                                     block.start_position + block.num_tokens,
                                                     " do not fit its capacity of ", cache.capacity()));
  }
  const int64_t k = static_cast<int64_t>(block.draft.tokens.size());
  if (k > spec::kMaxDraftTokens) {
    return absl::InvalidArgumentError(absl::StrCat("draft block of ", k, " tokens exceeds the maximum of ",
                                                   spec::kMaxDraftTokens));
  }
  if (block.verify && k + 1 > block.num_tokens) {
    return absl::InvalidArgumentError(absl::StrCat("session ", block.session_id.value(), ": a block of ",
                                                   block.num_tokens, " positions cannot verify ", k,
                                                   " draft tokens"));
  }
  if (block.verify && is_last()) {
    // Checked before batching: the backend decides every block of a batch in one op, and one bad
    // proposal must fail its own session only.
    absl::Status draft = judge::ValidateDraftBlock(session.verification, block.draft,
                                                   runner_->config().vocab_size);
    if (!draft.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("session ", block.session_id.value(), ": ", draft.message()));
    }
  }
  return absl::OkStatus();
}

ShardForwardResult TargetShard::Forward(const ShardBatch& batch) {
  ShardForwardResult out;
  auto fail = [&out](const spec::ShardBlock& block, absl::Status status) {
    out.outcomes.push_back({block.session_id, block.step, std::move(status), std::nullopt});
  };
  const engine::LlamaConfig& config = runner_->config();
  const int64_t hidden = config.hidden_size;
  const int64_t vocab = config.vocab_size;

  // The batch as a whole: the blocks must account for every id or activation row.
  int64_t total = 0;
  absl::Status malformed;
  for (const spec::ShardBlock& b : batch.blocks) {
    if (b.num_tokens < 1 || b.num_tokens > config.max_position_embeddings) {
      malformed = absl::InvalidArgumentError(
          absl::StrCat("session ", b.session_id.value(), ": a block of ", b.num_tokens, " positions"));
      break;
    }
    total += b.num_tokens;
  }
  if (malformed.ok()) {
    if (is_first() && static_cast<int64_t>(batch.token_ids.size()) != total) {
      malformed = absl::InvalidArgumentError(absl::StrCat("the blocks have ", total, " positions but ",
                                                          batch.token_ids.size(), " token ids came"));
    } else if (!is_first() && static_cast<int64_t>(batch.activations.size()) != total * hidden) {
      malformed = absl::InvalidArgumentError(
          absl::StrCat("the blocks have ", total, " positions of hidden size ", hidden, " but ",
                       batch.activations.size(), " activation values came"));
    }
  }
  if (!malformed.ok()) {
    for (const spec::ShardBlock& b : batch.blocks) fail(b, malformed);
    return out;
  }

  // Each block on its own: the valid ones run, in order.
  struct Ready {
    const spec::ShardBlock* block;
    Session* session;
    int64_t input_row;  // first row of the block in the incoming batch
  };
  std::vector<Ready> ready;
  absl::flat_hash_set<spec::SessionId> seen;
  int64_t row = 0;
  for (const spec::ShardBlock& b : batch.blocks) {
    const int64_t input_row = row;
    row += b.num_tokens;
    auto it = sessions_.find(b.session_id);
    if (it == sessions_.end()) {
      fail(b, absl::NotFoundError(absl::StrCat("no target session ", b.session_id.value())));
      continue;
    }
    if (seen.contains(b.session_id)) {
      fail(b, absl::InvalidArgumentError(absl::StrCat("session ", b.session_id.value(), " appears twice in one batch")));
      continue;
    }
    absl::Status status = ValidateBlock(b, *it->second);
    if (status.ok() && is_first()) {
      absl::Span<const int32_t> ids = absl::MakeConstSpan(batch.token_ids).subspan(input_row, b.num_tokens);
      for (int32_t id : ids) {
        if (id < 0 || id >= vocab) {
          status = absl::InvalidArgumentError(absl::StrCat("session ", b.session_id.value(), ": token id ", id,
                                                           " is outside the vocabulary of ", vocab));
          break;
        }
      }
      const size_t k = b.draft.tokens.size();
      if (status.ok() && b.verify &&
          !std::equal(b.draft.tokens.begin(), b.draft.tokens.end(), ids.end() - k)) {
        status = absl::InvalidArgumentError(absl::StrCat(
            "session ", b.session_id.value(), ": the block's last ", k, " token ids are not its draft tokens"));
      }
    }
    if (!status.ok()) {
      fail(b, std::move(status));
      continue;
    }
    seen.insert(b.session_id);
    ready.push_back({&b, it->second.get(), input_row});
  }
  if (ready.empty()) return out;

  engine::RunnerBatch forward;
  std::vector<int32_t> ids;
  std::vector<float> activations;
  const bool all_ready = ready.size() == batch.blocks.size();
  for (const Ready& r : ready) {
    if (IsReplay(*r.block, *r.session)) {
      r.session->rng.set_stream(r.session->stream_before_last);
    } else {
      r.session->stream_before_last = r.session->rng.stream();
    }
    // Roll back whatever the session cached past the block's start (rejected draft tokens).
    (void)r.session->cache->Truncate(r.block->start_position);
    forward.sequences.push_back({r.session->cache.get(), r.block->num_tokens});
    if (all_ready) continue;  // the incoming arrays are used as they are
    if (is_first()) {
      ids.insert(ids.end(), batch.token_ids.begin() + r.input_row,
                 batch.token_ids.begin() + r.input_row + r.block->num_tokens);
    } else {
      activations.insert(activations.end(), batch.activations.begin() + r.input_row * hidden,
                         batch.activations.begin() + (r.input_row + r.block->num_tokens) * hidden);
    }
  }
  if (is_first()) {
    forward.token_ids = all_ready ? absl::MakeConstSpan(batch.token_ids) : absl::MakeConstSpan(ids);
  } else {
    forward.activations = all_ready ? absl::MakeConstSpan(batch.activations) : absl::MakeConstSpan(activations);
  }
  if (is_last()) {
    // Outputs only for the k + 1 rows of each verification block (none for prompt prefills), and
    // only what their policies need.
    forward.outputs = engine::ForwardBatch::Outputs::kSelectedRows;
    output_rows_.clear();
    verification_.Begin(options_.verify_from_summaries);
    int64_t block_row = 0;
    for (const Ready& r : ready) {
      const spec::ShardBlock& b = *r.block;
      if (b.verify) {
        const int64_t k = static_cast<int64_t>(b.draft.tokens.size());
        for (int64_t i = b.num_tokens - (k + 1); i < b.num_tokens; ++i) {
          output_rows_.push_back(static_cast<int32_t>(block_row + i));
        }
        verification_.Add(r.session->verification, b.draft, &r.session->rng);
      }
      block_row += b.num_tokens;
    }
    forward.selected_rows = output_rows_;
    // The backend's probe serves the blocks judged by the current head; a batch with a session still
    // on an earlier head (after ReplaceHead) takes hidden states to the host instead.
    bool probe_ready = probe_head_ != nullptr;
    for (const Ready& r : ready) {
      if (r.block->verify && r.session->head != nullptr && r.session->head.get() != probe_head_) probe_ready = false;
    }
    forward.contents = verification_.Contents(probe_ready);
  }
  if (absl::Status status = runner_->Forward(forward, &forward_); !status.ok()) {
    for (const Ready& r : ready) fail(*r.block, status);
    return out;
  }
  ++forward_passes_;
  for (const Ready& r : ready) {
    r.session->last_step = r.block->step;
    r.session->has_step = true;
    r.session->last_block = *r.block;
  }

  if (!is_last()) {
    for (const Ready& r : ready) out.next.blocks.push_back(*r.block);
    out.next.activations = std::move(forward_.activations);
    return out;
  }

  // Last shard: the output rows are the verification blocks' tails, in block order.
  logits_rows_to_host_ += static_cast<int64_t>(forward_.logits.size()) / vocab;
  struct Decision {
    const spec::ShardBlock* block;
    Session* session;
    judge::VerifyInput input;
    absl::StatusOr<spec::Verdict> verdict = absl::UnknownError("not decided");
  };
  std::vector<Decision> decisions;
  for (const Ready& r : ready) {
    if (!r.block->verify) continue;
    decisions.push_back({r.block, r.session, verification_.Input(decisions.size(), forward_, vocab, hidden)});
  }
  // Blocks of distinct sessions (checked above): independent inputs and random streams.
  auto decide = [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      Decision& d = decisions[i];
      d.verdict = judge::VerifyBlock(d.session->verification, d.session->head.get(), d.input, d.session->rng);
      if (d.verdict.ok() && d.session->head != nullptr) d.verdict->judge_head = d.session->head->id;
    }
  };
  const int64_t n = static_cast<int64_t>(decisions.size());
  const int threads = options_.verify_threads > 0
                          ? options_.verify_threads
                          : static_cast<int>(std::clamp(std::thread::hardware_concurrency(), 1u, 8u));
  if (n > 1 && !forward_.logits.empty() && threads > 1) {
    if (verify_pool_ == nullptr) verify_pool_ = std::make_unique<engine::ThreadPool>(threads);
    verify_pool_->ParallelFor(n, 1, decide);
  } else {
    decide(0, n);
  }
  size_t next = 0;
  for (const Ready& r : ready) {
    const spec::ShardBlock& b = *r.block;
    if (!b.verify) {
      out.outcomes.push_back({b.session_id, b.step, absl::OkStatus(), std::nullopt});
      continue;
    }
    Decision& d = decisions[next++];
    if (!d.verdict.ok()) {
      fail(b, d.verdict.status());
      continue;
    }
    out.outcomes.push_back({b.session_id, b.step, absl::OkStatus(), std::move(*d.verdict)});
  }
  return out;
}

}  // namespace verdict::workers
