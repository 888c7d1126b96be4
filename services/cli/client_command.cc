// SPDX-License-Identifier: Apache-2.0
// verdict client generate|models: talk to a running coordinator (the client library in clients/).
#include <cstdlib>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <memory>
#include <optional>
#include <string>

#include "clients/grpc/wire_convert.h"
#include "clients/verdict_client.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"
#include "services/cli/cli_util.h"
#include "services/cli/commands.h"
#include "services/cli/speculation_util.h"
#include "spec/speculation_params.h"

namespace verdict::cli {
namespace {

struct ClientFlags {
  std::string addr = "127.0.0.1:50051";
  std::string prompt;
  std::string prompt_file;
  std::string model;
  int max_tokens = 0;
  std::string policy;
  DraftWindowFlags window;  // --k empty or 0: the server's default window
  std::optional<float> judge_threshold;
  std::optional<float> temperature;
  std::optional<int> top_k;
  std::optional<float> top_p;
  uint64_t seed = 0;
  std::vector<std::string> stop;
  bool no_speculation = false;
  bool ignore_eos = false;
  bool quiet = false;
  bool json = false;
  double timeout_s = 600;
  clients::ClientSecurity security;  // --tls-ca, --tls-cert, --tls-key, --tls-server-name, --api-key
};

// The client as the flags say; the API key may also come from VERDICT_API_KEY (keeps it out of
// the process list).
absl::StatusOr<std::unique_ptr<clients::VerdictClient>> Connect(const ClientFlags& flags) {
  clients::ClientSecurity security = flags.security;
  if (const char* key = std::getenv("VERDICT_API_KEY"); security.api_key.empty() && key != nullptr) {
    security.api_key = key;
  }
  return clients::VerdictClient::Connect(flags.addr, security);
}

void AddSecurityFlags(CLI::App* command, ClientFlags* flags) {
  command->add_option("--tls-ca", flags->security.tls_ca_file, "PEM CA bundle: connect with TLS, verifying the server");
  command->add_option("--tls-cert", flags->security.tls_cert_file, "client certificate (PEM), for servers that ask");
  command->add_option("--tls-key", flags->security.tls_key_file, "client certificate's key (PEM)");
  command->add_option("--tls-server-name", flags->security.server_name,
                      "name to verify the server's certificate for (default: the address's host)");
  command->add_option("--api-key", flags->security.api_key, "API key (default: $VERDICT_API_KEY)");
}

absl::StatusOr<v1::VerificationPolicy> ParsePolicy(const std::string& name) {
  if (name.empty()) return v1::VERIFICATION_POLICY_UNSPECIFIED;
  VERDICT_ASSIGN_OR_RETURN(spec::PolicySpelling spelling, spec::ParsePolicyName(name));
  return wire::ToProto(spelling.policy);
}

absl::Status RunGenerate(ClientFlags flags) {
  if (!flags.prompt_file.empty()) {
    std::ifstream in(flags.prompt_file, std::ios::binary);
    if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", flags.prompt_file));
    flags.prompt.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  VERDICT_ASSIGN_OR_RETURN(std::unique_ptr<clients::VerdictClient> connected, Connect(flags));
  clients::VerdictClient& client = *connected;
  v1::GenerateRequest request;
  request.set_model(flags.model);
  request.set_prompt(flags.prompt);
  request.set_max_tokens(flags.max_tokens);
  if (flags.temperature) request.mutable_sampling()->set_temperature(*flags.temperature);
  if (flags.top_k) request.mutable_sampling()->set_top_k(*flags.top_k);
  if (flags.top_p) request.mutable_sampling()->set_top_p(*flags.top_p);
  request.mutable_sampling()->set_seed(flags.seed);
  VERDICT_ASSIGN_OR_RETURN(v1::VerificationPolicy policy, ParsePolicy(flags.policy));
  v1::SpeculationParams* sp = request.mutable_speculation();
  sp->set_policy(policy);
  if (!flags.window.k.empty()) {
    // The syntax here, the values on the server (which answers INVALID_ARGUMENT for bad ones).
    VERDICT_ASSIGN_OR_RETURN(std::vector<spec::DraftWindowOptions> windows,
                             ParseDraftWindowSyntax(flags.window, /*auto_start=*/0));
    if (windows.size() != 1) return absl::InvalidArgumentError("--k takes one window here");
    const spec::DraftWindowOptions& w = windows[0];
    sp->set_adaptive_window(w.adaptive);
    if (w.adaptive) {  // starts at the server's default window, within the bounds
      sp->set_min_window(static_cast<int32_t>(w.min_k));
      sp->set_max_window(static_cast<int32_t>(w.max_k));
    } else {
      sp->set_draft_window(static_cast<int32_t>(w.k));
    }
  }
  if (flags.judge_threshold) sp->set_judge_threshold(*flags.judge_threshold);
  sp->set_disable_speculation(flags.no_speculation);
  request.set_ignore_eos(flags.ignore_eos);
  for (const std::string& s : flags.stop) request.add_stop(s);
  if (!flags.json) {
    std::fputs(flags.prompt.c_str(), stdout);
    std::fflush(stdout);
  }
  VERDICT_ASSIGN_OR_RETURN(
      clients::GenerateResult result,
      client.Generate(
          request,
          [&flags](const v1::GenerateResponse::Chunk& chunk) {
            if (flags.json) return;
            std::fwrite(chunk.text().data(), 1, chunk.text().size(), stdout);
            std::fflush(stdout);
          },
          absl::Seconds(flags.timeout_s)));
  const v1::GenerateResponse::Final& f = result.final;
  spec::SpeculationStats stats = wire::FromProto(f.stats());
  stats.tokens = f.usage().completion_tokens();
  stats.total_time = absl::Seconds(f.seconds());
  stats.degraded = f.degraded();
  if (flags.json) {
    nlohmann::json out = spec::StatsJson(stats);
    out.update({{"text", result.text},
                {"finish_reason", v1::FinishReason_Name(f.finish_reason())},
                {"prompt_tokens", f.usage().prompt_tokens()},
                {"completion_tokens", f.usage().completion_tokens()},
                {"policy", f.policy()}});
    std::printf("%s\n", out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    return absl::OkStatus();
  }
  std::fputc('\n', stdout);
  std::fflush(stdout);
  if (!flags.quiet) {
    std::fprintf(stderr, "[verdict] via the cluster: %s\n", v1::FinishReason_Name(f.finish_reason()).c_str());
    std::fputs(spec::FormatStats(stats, f.policy(), "[verdict] ").c_str(), stderr);
  }
  return absl::OkStatus();
}

absl::Status RunModels(const ClientFlags& flags) {
  VERDICT_ASSIGN_OR_RETURN(std::unique_ptr<clients::VerdictClient> client, Connect(flags));
  VERDICT_ASSIGN_OR_RETURN(v1::ListModelsResponse models, client->ListModels());
  for (const v1::ModelInfo& m : models.models()) {
    std::printf("%s: context %d, vocab %d, %d target shards, draft %s, judge %s (threshold %.3f)\n",
                m.name().c_str(), m.context_length(), m.vocab_size(), m.target_shards(),
                m.draft_model().empty() ? "none" : m.draft_model().c_str(), m.judge() ? "yes" : "no",
                m.judge_threshold());
  }
  return absl::OkStatus();
}

}  // namespace

void AddClientCommand(CLI::App& app, int* exit_code) {
  CLI::App* client = app.add_subcommand("client", "Talk to a running Verdict coordinator");
  client->require_subcommand(1);
  auto flags = std::make_shared<ClientFlags>();
  CLI::App* gen = client->add_subcommand("generate", "Stream a generation from the coordinator");
  gen->add_option("--addr", flags->addr, "coordinator address HOST:PORT")->capture_default_str();
  CLI::Option* prompt = gen->add_option("--prompt", flags->prompt, "prompt text");
  CLI::Option* prompt_file = gen->add_option("--prompt-file", flags->prompt_file, "read the prompt from a file");
  prompt->excludes(prompt_file);
  gen->add_option("--model", flags->model, "served model name (default: the server's)");
  gen->add_option("--max-tokens", flags->max_tokens, "tokens to generate at most (0: server default)");
  gen->add_option("--policy", flags->policy,
                  absl::StrCat("verification policy: ", spec::PolicySpellings(), " (the server's allow-list applies)"));
  AddDraftWindowFlags(gen, &flags->window, "draft window: tokens per block or \"auto\" (adaptive; default: the server's)");
  gen->add_option("--judge-threshold", flags->judge_threshold, "judge threshold (default: the head's)");
  gen->add_option("--temperature", flags->temperature, "sampling temperature (default greedy)");
  gen->add_option("--top-k", flags->top_k, "top-k");
  gen->add_option("--top-p", flags->top_p, "top-p");
  gen->add_option("--seed", flags->seed, "sampling seed (0: the server picks and reports one)");
  gen->add_option("--stop", flags->stop, "stop string (repeatable)");
  gen->add_flag("--no-speculation", flags->no_speculation, "decode with the target alone");
  gen->add_flag("--ignore-eos", flags->ignore_eos, "do not stop at the model's end-of-text tokens");
  gen->add_flag("--quiet", flags->quiet, "no statistics line");
  gen->add_flag("--json", flags->json, "print one JSON object instead of streaming");
  gen->add_option("--timeout", flags->timeout_s, "seconds before giving up")->capture_default_str();
  AddSecurityFlags(gen, flags.get());
  gen->callback([flags, exit_code, prompt, prompt_file] {
    if (prompt->count() == 0 && prompt_file->count() == 0) {
      *exit_code = ReportError(absl::InvalidArgumentError("give --prompt or --prompt-file"));
      return;
    }
    *exit_code = ExitCode(RunGenerate(*flags));
  });
  CLI::App* models = client->add_subcommand("models", "List the coordinator's models");
  models->add_option("--addr", flags->addr, "coordinator address HOST:PORT")->capture_default_str();
  AddSecurityFlags(models, flags.get());
  models->callback([flags, exit_code] { *exit_code = ExitCode(RunModels(*flags)); });
}

}  // namespace verdict::cli
