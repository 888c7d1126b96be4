// SPDX-License-Identifier: Apache-2.0
// verdict-coordinator: the client-facing service of a Verdict cluster (verdict.v1.Verdict). Talks
// to the draft worker and the target shards over gRPC (activations go shard to shard).
//   verdict-coordinator --config cluster.textproto
#include <cstdio>

#include "CLI/CLI.hpp"
#include "clients/grpc/grpc_worker_clients.h"
#include "coordinator/coordinator.h"
#include "engine/model_loader.h"
#include "judge/judge_head.h"
#include "services/bin/server_main_util.h"
#include "services/config/cluster_config.h"
#include "services/coordinator/generation_service.h"

namespace {

std::string BaseName(const std::string& path) {
  std::string p = path;
  while (!p.empty() && p.back() == '/') p.pop_back();
  const size_t slash = p.rfind('/');
  return slash == std::string::npos ? p : p.substr(slash + 1);
}

int Run(const std::string& config_path) {
  using namespace verdict;
  services::BlockTerminationSignals();
  absl::StatusOr<v1::ClusterConfig> config = services::LoadClusterConfig(config_path);
  if (!config.ok()) return services::Fail("coordinator", config.status());
  absl::StatusOr<engine::LoadedModel> target = engine::LoadModel(config->target().path());
  if (!target.ok()) return services::Fail("coordinator", target.status());
  if (target->tokenizer == nullptr) {
    return services::Fail("coordinator", absl::FailedPreconditionError(absl::StrCat(
                                             "the target has no tokenizer: ", target->tokenizer_error)));
  }
  if (absl::Status s = services::ValidateClusterConfig(*config, target->config.num_layers); !s.ok()) {
    return services::Fail("coordinator", s);
  }
  const v1::CoordinatorConfig& cc = config->coordinator();

  services::ServedModel served;
  served.name = config->target().name().empty() ? BaseName(config->target().path()) : config->target().name();
  served.tokenizer = target->tokenizer.get();
  served.config = target->config;
  served.stop_token_ids = engine::StopTokenIds(*target);
  served.target_shards = config->shards_size();
  served.default_policy = cc.default_policy() == v1::VERIFICATION_POLICY_UNSPECIFIED ? v1::VERIFICATION_POLICY_EXACT
                                                                                      : cc.default_policy();
  for (int p : cc.allowed_policies()) served.allowed_policies.push_back(static_cast<v1::VerificationPolicy>(p));
  served.default_draft_window = cc.default_draft_window();
  served.default_max_tokens = cc.default_max_tokens();
  const v1::TargetShardConfig& last = config->shards(config->shards_size() - 1);
  if (!last.judge_head().empty()) {
    absl::StatusOr<judge::JudgeHead> head = judge::LoadJudgeHead(last.judge_head());
    if (!head.ok()) return services::Fail("coordinator", head.status());
    served.has_judge = true;
    served.judge_threshold = last.has_judge_threshold() ? last.judge_threshold() : head->threshold;
    served.judge_fingerprint = head->target_fingerprint;
  }

  coordinator::CoordinatorOptions options;
  options.max_sessions = cc.max_sessions();
  options.target_context = target->config.max_position_embeddings;
  options.pipelined = cc.pipelined();
  std::unique_ptr<clients::GrpcDraftClient> draft;
  if (config->has_draft()) {
    absl::StatusOr<engine::LoadedModel> draft_model = engine::LoadModel(config->draft().model().path());
    if (!draft_model.ok()) return services::Fail("coordinator", draft_model.status());
    if (draft_model->config.vocab_size != target->config.vocab_size) {
      return services::Fail("coordinator", absl::InvalidArgumentError("the draft and target vocabularies differ"));
    }
    options.draft_context = draft_model->config.max_position_embeddings;
    served.draft_name = BaseName(config->draft().model().path());
    draft = std::make_unique<clients::GrpcDraftClient>(config->draft().listen(),
                                                       absl::Milliseconds(cc.draft_deadline_ms()));
  }
  std::vector<std::string> shards;
  for (const v1::TargetShardConfig& s : config->shards()) shards.push_back(s.listen());
  clients::GrpcTargetClient target_client(shards);
  coordinator::Coordinator coordinator(options, draft.get(), &target_client);
  services::GenerationService service(&coordinator, served);
  absl::StatusOr<std::unique_ptr<grpc::Server>> server =
      services::StartServer(cc.listen(), {&service}, cc.max_request_bytes());
  if (!server.ok()) return services::Fail("coordinator", server.status());
  std::fprintf(stderr, "verdict-coordinator: serving %s (%d target shards%s) on %s\n", served.name.c_str(),
               served.target_shards, draft ? ", draft " : "", cc.listen().c_str());
  services::WaitForTerminationSignal();
  (*server)->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  std::fprintf(stderr, "verdict-coordinator: stopped\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"verdict-coordinator: the client-facing service of a Verdict cluster"};
  std::string config;
  app.add_option("--config", config, "cluster config (textproto or JSON)")->required();
  CLI11_PARSE(app, argc, argv);
  return Run(config);
}
