// SPDX-License-Identifier: Apache-2.0
// verdict generate: stream text from one model (prompt -> prefill -> sampled decode), or from a
// target with a draft (speculative and judge decoding through the coordinator, in this process).
#include <algorithm>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/notification.h"
#include "nlohmann/json.hpp"
#include "common/status_macros.h"
#include "coordinator/coordinator.h"
#include "engine/generator.h"
#include "engine/tokenizer/chat_template.h"
#include "engine/tokenizer/detokenizer.h"
#include "judge/judge_head.h"
#include "judge/vocabulary_check.h"
#include "engine/ready_model.h"
#include "services/cli/cli_util.h"
#include "services/cli/commands.h"
#include "services/cli/speculation_util.h"
#include "spec/speculation_params.h"
#include "spec/speculation_stats.h"
#include "workers/in_process_clients.h"

namespace verdict::cli {
namespace {

struct GenerateFlags {
  std::string model;
  std::string prompt;
  std::string system;
  int64_t max_tokens = 128;
  std::optional<float> temperature;
  std::optional<int64_t> top_k;
  std::optional<float> top_p;
  uint64_t seed = 0;
  bool chat = false;
  std::string chat_template;  // a Jinja file; empty: the model's own
  PlacementFlags placement;
  bool quiet = false;
  // Speculative decoding.
  std::string draft;
  std::string policy;  // empty: "judge" with --judge, otherwise greedy/sampled from the sampling
  JudgeHeadFlags judge;
  DraftWindowFlags window{.k = "8"};
  float lossy_threshold = spec::kDefaultLossyThreshold;
  float typical_delta = spec::kDefaultTypicalDelta;
  bool stats_json = false;
};

void PrintSpeculativeStats(const spec::SpeculationStats& s, const std::string& policy, bool json) {
  if (json) {
    nlohmann::json j = spec::StatsJson(s);
    j["policy"] = policy;
    std::fprintf(stderr, "%s\n", j.dump().c_str());
    return;
  }
  std::fputs(spec::FormatStats(s, policy, "[verdict] ").c_str(), stderr);
}

absl::Status RunGenerate(const GenerateFlags& flags) {
  VERDICT_ASSIGN_OR_RETURN(engine::ReadyModel ready, OpenModel(flags.model, flags.placement));
  const engine::Tokenizer* tokenizer = ready.loaded.tokenizer.get();
  if (tokenizer == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("the model has no usable tokenizer: ", ready.loaded.tokenizer_error));
  }
  // The draft and judge head are checked before any work: a mismatch is a clear error up front.
  std::optional<engine::ReadyModel> draft;
  std::unique_ptr<judge::JudgeHead> head;
  if (!flags.draft.empty()) {
    VERDICT_ASSIGN_OR_RETURN(draft, OpenModel(flags.draft, flags.placement));
    VERDICT_RETURN_IF_ERROR(CheckDraftMatchesTarget(ready, *draft));
    if (!flags.judge.path.empty()) {
      VERDICT_ASSIGN_OR_RETURN(head, LoadJudgeHeadForTarget(ready, flags.judge.path, flags.judge.skip_fingerprint));
    }
  } else if (!flags.judge.path.empty() || !flags.policy.empty()) {
    return absl::InvalidArgumentError("--judge and --policy need a draft model (--draft)");
  }
  std::vector<int32_t> prompt;
  if (flags.chat) {
    std::vector<engine::ChatMessage> messages;
    if (!flags.system.empty()) messages.push_back({"system", flags.system});
    messages.push_back({"user", flags.prompt});
    VERDICT_ASSIGN_OR_RETURN(const engine::ChatPromptFormat chat,
                             engine::LoadChatPromptFormat(flags.model, *tokenizer, flags.chat_template));
    VERDICT_ASSIGN_OR_RETURN(prompt, chat.Encode(*tokenizer, messages, /*add_generation_prompt=*/true));
  } else {
    VERDICT_ASSIGN_OR_RETURN(prompt, tokenizer->Encode(flags.prompt, {/*add_bos=*/true,
                                                                       /*parse_special=*/false}));
  }
  // Sampling: explicit flags win, then the checkpoint's generation_config.json, then greedy.
  engine::GenerateOptions options;
  options.max_new_tokens = flags.max_tokens;
  options.sampling =
      engine::ResolveSampling(ready.loaded.generation, flags.temperature, flags.top_k, flags.top_p, flags.seed);
  options.stop_token_ids = engine::StopTokenIds(ready.loaded);

  engine::IncrementalDetokenizer detokenizer(tokenizer);
  if (!flags.chat) {
    // The prompt is echoed as typed; the detokenizer continues after it (SentencePiece vocabularies
    // must know the text does not start here, or the first word loses its leading space).
    VERDICT_RETURN_IF_ERROR(detokenizer.AddContext(prompt));
    std::fputs(flags.prompt.c_str(), stdout);
  }
  std::fflush(stdout);
  const std::vector<int32_t> stops = options.stop_token_ids;
  absl::Status stream_status;
  options.on_token = [&](int32_t token) {
    if (std::find(stops.begin(), stops.end(), token) != stops.end()) return true;
    absl::StatusOr<std::string> text = detokenizer.Add(token);
    if (!text.ok()) {
      stream_status = text.status();
      return false;
    }
    std::fwrite(text->data(), 1, text->size(), stdout);
    std::fflush(stdout);
    return true;
  };
  if (draft.has_value()) {
    // Speculative decoding: the same streaming, a block of tokens per target pass, through the
    // coordinator that serves clusters, over the target shard and draft worker cores in this
    // process.
    VERDICT_ASSIGN_OR_RETURN(std::vector<spec::DraftWindowOptions> windows,
                             ParseDraftWindows(flags.window, /*auto_start=*/8));
    if (windows.size() != 1) return absl::InvalidArgumentError("--k takes one window here");
    coordinator::GenerationRequest request;
    request.prompt = prompt;
    request.max_new_tokens = options.max_new_tokens;
    request.stop_token_ids = options.stop_token_ids;
    request.sampling = options.sampling;
    VERDICT_ASSIGN_OR_RETURN(spec::PolicySpelling policy,
                             spec::ParsePolicyName(!flags.policy.empty() ? flags.policy
                                                                         : spec::PolicyName(head != nullptr ? spec::Policy::kJudge
                                                                                                            : spec::Policy::kExact)));
    if (policy.exact == spec::ExactRule::kSampled && options.sampling.greedy()) {
      return absl::InvalidArgumentError("the sampled policy needs a sampling temperature > 0 (use --temperature)");
    }
    if (policy.exact == spec::ExactRule::kGreedy && !options.sampling.greedy()) {
      // Greedy verification of a sampling request: the target's argmax decides; the draft samples.
      request.draft_sampling = spec::DefaultDraftSampling(options.sampling);
      request.sampling.temperature = 0;
    }
    request.speculation.policy = policy.policy;
    request.speculation.judge_threshold = flags.judge.threshold;  // unset: the head's own
    request.speculation.lossy_threshold = flags.lossy_threshold;
    request.speculation.typical_delta = flags.typical_delta;
    request.speculation.window = windows[0];

    VERDICT_ASSIGN_OR_RETURN(std::unique_ptr<workers::InProcessCluster> cluster,
                             workers::InProcessCluster::Create(ready.model.get(), draft->model.get(), head.get()));
    coordinator::CoordinatorOptions coordinator_options;
    coordinator_options.max_sessions = 1;
    coordinator_options.target_context = ready.model->config().max_position_embeddings;
    coordinator_options.draft_context = draft->model->config().max_position_embeddings;
    const std::string label = spec::PolicyLabel(policy.policy, spec::ExactRuleFor(request.sampling));
    absl::StatusOr<coordinator::GenerationSummary> summary = absl::UnknownError("the generation did not end");
    {
      coordinator::Coordinator coordinator(coordinator_options, cluster->draft(), cluster->target());
      absl::Notification done;
      coordinator::GenerationCallbacks callbacks;
      callbacks.on_tokens = [&](absl::Span<const int32_t> tokens) {
        for (int32_t token : tokens) {
          if (!options.on_token(token)) return false;
        }
        return true;
      };
      callbacks.on_done = [&](absl::StatusOr<coordinator::GenerationSummary> result) {
        summary = std::move(result);
        done.Notify();
      };
      VERDICT_RETURN_IF_ERROR(coordinator.Start(std::move(request), std::move(callbacks)).status());
      done.WaitForNotification();
    }
    VERDICT_RETURN_IF_ERROR(summary.status());
    VERDICT_RETURN_IF_ERROR(stream_status);
    const std::string tail = detokenizer.Flush();
    std::fwrite(tail.data(), 1, tail.size(), stdout);
    std::fputc('\n', stdout);
    std::fflush(stdout);
    summary->stats.draft_passes = cluster->draft_stats().forward_passes;
    if (!flags.quiet || flags.stats_json) PrintSpeculativeStats(summary->stats, label, flags.stats_json);
    return absl::OkStatus();
  }
  VERDICT_ASSIGN_OR_RETURN(engine::GenerateResult result,
                           engine::Generate(*ready.model, prompt, options));
  VERDICT_RETURN_IF_ERROR(stream_status);
  const std::string tail = detokenizer.Flush();
  std::fwrite(tail.data(), 1, tail.size(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
  const double prefill_s = absl::ToDoubleSeconds(result.prefill_time);
  const double decode_s = absl::ToDoubleSeconds(result.decode_time);
  const size_t decoded = result.tokens.empty() ? 0 : result.tokens.size() - 1;
  if (flags.stats_json) {
    // The speculative statistics' keys that apply to the target alone (one pass per token).
    const double seconds = prefill_s + decode_s;
    const nlohmann::json stats = {{"policy", "target"},
                                  {"tokens", result.tokens.size()},
                                  {"target_passes", result.tokens.size()},
                                  {"prefill_seconds", prefill_s},
                                  {"decode_seconds", decode_s},
                                  {"seconds", seconds},
                                  {"tokens_per_second", result.tokens.size() / std::max(seconds, 1e-9)},
                                  {"decode_tokens_per_second", decoded / std::max(decode_s, 1e-9)}};
    std::fprintf(stderr, "%s\n", stats.dump().c_str());
  } else if (!flags.quiet) {
    std::fprintf(stderr,
                 "[verdict] prompt %zu tokens in %.3f s (%.1f tok/s); generated %zu tokens, "
                 "decode %.1f tok/s; stop: %s\n",
                 prompt.size(), prefill_s, prompt.size() / std::max(prefill_s, 1e-9),
                 result.tokens.size(), decoded / std::max(decode_s, 1e-9),
                 result.stopped_by_token ? "stop token" : "max tokens");
  }
  return absl::OkStatus();
}

}  // namespace

void AddGenerateCommand(CLI::App& app, int* exit_code) {
  auto flags = std::make_shared<GenerateFlags>();
  CLI::App* cmd = app.add_subcommand("generate", "Generate text from a prompt, streaming to stdout");
  cmd->add_option("--model", flags->model, "Hugging Face model directory or .gguf file")->required();
  cmd->add_option("--prompt", flags->prompt, "Prompt text")->required();
  cmd->add_option("--max-tokens", flags->max_tokens, "Maximum new tokens")->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 30));
  cmd->add_option("--temperature", flags->temperature, "Sampling temperature (0 = greedy)");
  cmd->add_option("--top-k", flags->top_k, "Keep the k most likely tokens (0 = off)");
  cmd->add_option("--top-p", flags->top_p, "Nucleus sampling mass (1 = off)");
  cmd->add_option("--seed", flags->seed, "Random seed (sampling is reproducible)")->capture_default_str();
  cmd->add_flag("--chat", flags->chat,
                "Wrap the prompt in the model's own chat template (tokenizer_config.json or GGUF metadata)");
  cmd->add_option("--chat-template", flags->chat_template,
                  "With --chat: a Jinja chat template file instead of the model's");
  cmd->add_option("--system", flags->system, "System message (with --chat)");
  AddPlacementFlags(cmd, &flags->placement);
  cmd->add_flag("--quiet", flags->quiet, "No statistics on stderr");
  cmd->add_option("--draft", flags->draft,
                  "Draft model (same vocabulary) for speculative decoding");
  cmd->add_option("--policy", flags->policy,
                  absl::StrCat("Verification policy: ", spec::PolicySpellings(),
                               " (default: judge with --judge, else exact: greedy or sampled by --temperature)"));
  AddJudgeHeadFlags(cmd, &flags->judge, "Judge head (.safetensors from `verdict judge train`)");
  AddDraftWindowFlags(cmd, &flags->window, "Draft window: tokens per block (1-256) or \"auto\" (adaptive)");
  cmd->add_option("--lossy-threshold", flags->lossy_threshold,
                  "lossy-prob: accept a mismatch if p_target(token) >= this; lossy-typical: epsilon")
      ->capture_default_str();
  cmd->add_option("--typical-delta", flags->typical_delta, "lossy-typical: delta")->capture_default_str();
  cmd->add_flag("--stats-json", flags->stats_json,
                "Statistics as one JSON line on stderr (speculation statistics, or the target alone's "
                "timing), also with --quiet");
  cmd->callback([flags, exit_code] {
    *exit_code = ExitCode(RunGenerate(*flags));
  });
}

}  // namespace verdict::cli
