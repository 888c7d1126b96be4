// SPDX-License-Identifier: Apache-2.0
// verdict-draft: serves the cluster's draft model (verdict.v1.DraftWorker).
//   verdict-draft --config cluster.textproto [--threads N] [--bind ADDR | --bind-host HOST]
#include <cstdio>

#include "CLI/CLI.hpp"
#include "common/status_macros.h"
#include "absl/strings/str_cat.h"
#include "engine/ready_model.h"
#include "services/admin/admin_server.h"
#include "services/bin/member_security.h"
#include "services/bin/server_main_util.h"
#include "services/config/cluster_config.h"
#include "services/draft/draft_worker_service.h"
#include "workers/draft_worker_loop.h"

namespace {

int Run(const std::string& config_path, int threads, const verdict::services::BindOverrides& bind_flags, std::string device,
        bool fp8, std::string kv_cache) {
  using namespace verdict;
  services::BlockTerminationSignals();
  absl::StatusOr<v1::ClusterConfig> config = services::LoadClusterConfig(config_path);
  if (!config.ok()) return services::Fail("draft", config.status());
  if (!config->has_draft()) return services::Fail("draft", absl::InvalidArgumentError("the cluster config has no draft"));
  const v1::DraftWorkerConfig& dc = config->draft();
  absl::StatusOr<std::unique_ptr<services::MemberSecurity>> security =
      services::MemberSecurity::Create(*config, services::kDraftRole, "verdict-draft");
  if (!security.ok()) return services::Fail("draft", security.status());
  absl::StatusOr<services::BindAddresses> bind = services::DraftBindAddresses(dc, bind_flags);
  if (!bind.ok()) return services::Fail("draft", bind.status());
  if (device.empty()) device = dc.device().empty() ? "cpu" : dc.device();
  fp8 = fp8 || dc.fp8();
  if (kv_cache.empty()) kv_cache = dc.kv_cache().empty() ? "auto" : dc.kv_cache();
  absl::StatusOr<engine::KvCacheType> kv_type = engine::ParseKvCacheType(kv_cache);
  if (!kv_type.ok()) return services::Fail("draft", kv_type.status());
  absl::StatusOr<engine::ReadyModel> model =
      engine::OpenModel(dc.model().path(), threads > 0 ? threads : dc.threads(), device, fp8, *kv_type);
  if (!model.ok()) return services::Fail("draft", model.status());
  absl::StatusOr<std::unique_ptr<workers::DraftWorker>> worker =
      workers::DraftWorker::Create(model->model.get(), {.max_sessions = config->coordinator().max_sessions() * 2,
                                                        .max_kv_bytes = int64_t{dc.max_kv_memory_mb()} << 20});
  if (!worker.ok()) return services::Fail("draft", worker.status());
  // Each session has at most one proposal in flight: more queued than that is a flood.
  workers::DraftLoopOptions loop_options{.max_batch_tokens = dc.max_batch_tokens(),
                                         .session_lease = services::SessionLease(config->coordinator()),
                                         .max_queued = 4 * int64_t{config->coordinator().max_sessions()}};
  loop_options.on_lease_expired = [](uint32_t owner, int64_t sessions) {
    std::fprintf(stderr, "verdict-draft: released %lld sessions of coordinator %08x: its lease expired\n",
                 static_cast<long long>(sessions), owner);
  };
  workers::DraftWorkerLoop loop(std::move(*worker), loop_options);
  v1::DraftDescription description;
  description.set_model_name(services::ModelBaseName(dc.model().path()));
  description.set_vocab_size(static_cast<int32_t>(model->loaded.config.vocab_size));
  description.set_context_length(static_cast<int32_t>(model->loaded.config.max_position_embeddings));
  description.set_num_layers(static_cast<int32_t>(model->loaded.config.num_layers));
  description.set_hidden_size(static_cast<int32_t>(model->loaded.config.hidden_size));
  services::DraftWorkerService service(&loop, std::move(description));
  // Only the coordinator calls the draft worker.
  absl::StatusOr<std::unique_ptr<grpc::Server>> server = services::StartServer(
      bind->grpc, {&service}, (*security)->MemberServerCredentials({services::kCoordinatorRole}));
  if (!server.ok()) return services::Fail("draft", server.status());
  std::unique_ptr<services::AdminServer> admin;
  if (!bind->admin.empty()) {
    services::AdminHandlers h;
    h.metrics = [&loop] {
      const workers::DraftLoopStats st = loop.stats();
      std::vector<prometheus::MetricFamily> m;
      m.push_back(services::CounterFamily("verdict_draft_batches_total", "Batched proposal runs", st.batches));
      m.push_back(services::CounterFamily("verdict_draft_proposals_total", "Proposals", st.proposals));
      m.push_back(services::CounterFamily("verdict_draft_forward_passes_total", "Draft forward passes", st.forward_passes));
      m.push_back(services::GaugeFamily("verdict_draft_queue_depth", "Requests waiting", st.queue_depth));
      m.push_back(services::GaugeFamily("verdict_draft_sessions", "Open sessions", st.sessions));
      m.push_back(services::GaugeFamily("verdict_draft_kv_bytes", "KV cache memory held by the open sessions",
                                        st.kv_bytes));
      m.push_back(services::CounterFamily("verdict_draft_leases_expired_total",
                                          "Coordinators whose sessions were released for want of a lease renewal",
                                          st.leases_expired));
      m.push_back(services::CounterFamily("verdict_draft_sessions_released_by_lease_total",
                                          "Sessions released because their coordinator's lease expired",
                                          st.sessions_released_by_lease));
      m.push_back(services::CounterFamily("verdict_draft_refused_queue_full_total",
                                          "Opens and proposals refused because the queue was full", st.refused_queue_full));
      return m;
    };
    h.reload_credentials = [&security] { return (*security)->ReloadNowJson(); };
    absl::StatusOr<std::unique_ptr<services::AdminServer>> a =
        services::AdminServer::Start(bind->admin, std::move(h), (*security)->AdminHttp());
    if (!a.ok()) return services::Fail("draft", a.status());
    admin = std::move(*a);
  }
  (*security)->StartReloading();
  std::fprintf(stderr, "verdict-draft: serving %s on %s (%s)\n", dc.model().path().c_str(), bind->grpc.c_str(),
               (*security)->Describe().c_str());
  services::WaitForTerminationSignal();
  admin.reset();
  (*server)->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  std::fprintf(stderr, "verdict-draft: stopped\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"verdict-draft: the draft worker of a Verdict cluster"};
  std::string config, device;
  int threads = 0;
  app.add_option("--config", config, "cluster config (textproto or JSON)")->required();
  app.add_option("--threads", threads, "CPU threads (0: the config's, else all)");
  app.add_option("--device", device, "cpu, cuda or cuda:N (default: the config's, else cpu)");
  bool fp8 = false;
  app.add_flag("--fp8", fp8, verdict::engine::kFp8FlagHelp);
  std::string kv_cache;
  app.add_option("--kv-cache", kv_cache, verdict::engine::kKvCacheFlagHelp)
      ->check(CLI::IsMember(verdict::engine::KvCacheTypeNameList()));
  verdict::services::BindOverrides bind;
  verdict::services::AddBindFlags(app, verdict::services::BindEndpoints::kGrpcAndAdmin, &bind);
  CLI11_PARSE(app, argc, argv);
  return Run(config, threads, bind, device, fp8, kv_cache);
}
