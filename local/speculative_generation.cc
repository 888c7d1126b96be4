// SPDX-License-Identifier: Apache-2.0
#include "local/speculative_generation.h"

#include <algorithm>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/status_macros.h"
#include "coordinator/coordinator.h"
#include "judge/speculative_session.h"
#include "workers/in_process_clients.h"

namespace verdict::local {
namespace {

// The checks the request gets before anything starts, with the errors callers rely on.
absl::Status ValidateRequest(const engine::ModelSlice& target, const engine::ModelSlice& draft,
                             absl::Span<const int32_t> prompt, const judge::SpeculativeOptions& options) {
  if (prompt.empty()) return absl::InvalidArgumentError("the prompt has no tokens");
  VERDICT_RETURN_IF_ERROR(judge::CheckCompatibleModels(target.config(), draft.config()));
  VERDICT_RETURN_IF_ERROR(spec::ValidateDraftWindowOptions(options.window));
  VERDICT_RETURN_IF_ERROR(judge::ValidateVerificationConfig(options.verification));
  const int64_t vocab = target.config().vocab_size;
  for (int32_t token : prompt) {
    if (token < 0 || token >= vocab) {
      return absl::InvalidArgumentError(
          absl::StrCat("prompt token ", token, " is outside the vocabulary of ", vocab, " tokens"));
    }
  }
  const int64_t context = target.config().max_position_embeddings;
  if (static_cast<int64_t>(prompt.size()) >= context) {
    return absl::InvalidArgumentError(
        absl::StrCat("prompt of ", prompt.size(), " tokens does not fit the context length ", context));
  }
  if (options.verification.judge != judge::JudgeMode::kOff) {
    if (options.head == nullptr) return absl::InvalidArgumentError("the judge policy needs a judge head");
    if (options.head->hidden_size() != target.config().hidden_size) {
      return absl::FailedPreconditionError(absl::StrCat("the judge head was trained for hidden size ",
                                                        options.head->hidden_size(), ", the target has ",
                                                        target.config().hidden_size));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<judge::SpeculativeResult> GenerateSpeculative(engine::ModelSlice& target, engine::ModelSlice& draft,
                                                             absl::Span<const int32_t> prompt,
                                                             const judge::SpeculativeOptions& options) {
  VERDICT_RETURN_IF_ERROR(ValidateRequest(target, draft, prompt, options));
  const judge::VerificationConfig verification = options.verification;
  workers::TargetShardOptions shard_options;
  shard_options.adjust_verification = [verification](judge::VerificationConfig* v) { *v = verification; };
  // The judge head only where the rules use it (the shard then keeps it as its probe).
  const judge::JudgeHead* head = verification.judge != judge::JudgeMode::kOff ? options.head : nullptr;
  VERDICT_ASSIGN_OR_RETURN(std::unique_ptr<workers::InProcessCluster> cluster,
                           workers::InProcessCluster::Create(&target, &draft, head, std::move(shard_options)));

  coordinator::GenerationRequest request;
  request.prompt.assign(prompt.begin(), prompt.end());
  request.max_new_tokens = std::max<int64_t>(options.max_new_tokens, 1);
  request.stop_token_ids = options.stop_token_ids;
  request.sampling = verification.target_sampling;
  request.draft_sampling = options.draft_sampling;
  // What the coordinator needs to know of the rules (whether the draft records its distributions,
  // the label in snapshots); the shard's rules are `verification` whatever this says.
  request.speculation.policy = judge::PolicyOf(verification);
  request.speculation.window = options.window;

  coordinator::CoordinatorOptions coordinator_options;
  coordinator_options.max_sessions = 1;
  coordinator_options.target_context = target.config().max_position_embeddings;
  coordinator_options.draft_context = draft.config().max_position_embeddings;
  coordinator_options.pipelined = false;

  judge::SpeculativeResult result;
  absl::StatusOr<coordinator::GenerationSummary> summary = absl::UnknownError("the generation did not end");
  {
    coordinator::Coordinator coordinator(coordinator_options, cluster->draft(), cluster->target());
    absl::Notification done;
    coordinator::GenerationCallbacks callbacks;
    callbacks.on_pass = options.on_verdict;
    callbacks.on_tokens = [&result, &options](absl::Span<const int32_t> tokens) {
      result.tokens.insert(result.tokens.end(), tokens.begin(), tokens.end());
      return !options.on_tokens || options.on_tokens(tokens);
    };
    callbacks.on_done = [&summary, &done](absl::StatusOr<coordinator::GenerationSummary> s) {
      summary = std::move(s);
      done.Notify();
    };
    VERDICT_RETURN_IF_ERROR(coordinator.Start(std::move(request), std::move(callbacks)).status());
    done.WaitForNotification();
  }
  VERDICT_RETURN_IF_ERROR(summary.status());
  result.stats = std::move(summary->stats);
  result.stats.draft_passes = cluster->draft_stats().forward_passes;
  const std::vector<int32_t>& stops = options.stop_token_ids;
  result.stopped_by_token = !result.tokens.empty() &&
                            std::find(stops.begin(), stops.end(), result.tokens.back()) != stops.end();
  return result;
}

}  // namespace verdict::local
