// SPDX-License-Identifier: Apache-2.0
// verdict-shard: serves one target shard of the cluster (verdict.v1.TargetShard): its layer range,
// and on the last shard the LM head, the judge and the verification policy. With tensor_parallel > 1
// in its config the layer range is split across that many backends (one per device).
//   verdict-shard --config cluster.textproto --shard N [--threads T] [--bind-host 0.0.0.0]
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "engine/cuda/cuda_backend.h"
#include "engine/model_loader.h"
#include "engine/ready_model.h"
#include "judge/judge_head.h"
#include "services/admin/admin_server.h"
#include "services/bin/member_security.h"
#include "services/bin/server_main_util.h"
#include "services/bin/judge_reloader.h"
#include "services/config/cluster_config.h"
#include "services/shard/activation_forwarder.h"
#include "services/shard/target_shard_service.h"
#include "transport/ucx_transport.h"
#include "workers/target_shard_loop.h"

namespace {

int Run(const std::string& config_path, const std::string& shard_flag, int threads, std::string device, bool fp8,
        std::string kv_cache, const verdict::services::BindOverrides& bind_flags) {
  using namespace verdict;
  services::BlockTerminationSignals();
  absl::StatusOr<v1::ClusterConfig> config = services::LoadClusterConfig(config_path);
  if (!config.ok()) return services::Fail("shard", config.status());
  absl::StatusOr<int> parsed_index = services::ParseShardIndex(shard_flag, config->shards_size());
  if (!parsed_index.ok()) return services::Fail("shard", parsed_index.status());
  const int index = *parsed_index;
  const std::string role = absl::StrCat("shard[", index, "]");
  absl::StatusOr<services::BindAddresses> bind = services::ShardBindAddresses(*config, index, bind_flags);
  if (!bind.ok()) return services::Fail(role, bind.status());
  const v1::TargetShardConfig& sc = config->shards(index);
  const bool last = index + 1 == config->shards_size();
  absl::StatusOr<std::unique_ptr<services::MemberSecurity>> security =
      services::MemberSecurity::Create(*config, services::ShardRole(index), "verdict-shard");
  if (!security.ok()) return services::Fail(role, security.status());
  absl::StatusOr<engine::LoadedModel> loaded = engine::LoadModel(config->target().path());
  if (!loaded.ok()) return services::Fail(role, loaded.status());
  if (absl::Status s = services::ValidateClusterConfig(*config, loaded->config.num_layers); !s.ok()) {
    return services::Fail(role, s);
  }
  if (device.empty()) device = sc.device().empty() ? "cpu" : sc.device();
  fp8 = fp8 || sc.fp8();
  if (kv_cache.empty()) kv_cache = sc.kv_cache().empty() ? "auto" : sc.kv_cache();
  absl::StatusOr<engine::KvCacheType> kv_type = engine::ParseKvCacheType(kv_cache);
  if (!kv_type.ok()) return services::Fail(role, kv_type.status());
  // One device per rank: the config's list, else the shard's device for every rank.
  const int ranks = std::max(1, sc.tensor_parallel());
  std::vector<std::string> rank_devices(sc.devices().begin(), sc.devices().end());
  if (rank_devices.empty()) rank_devices.assign(ranks, device);
  absl::StatusOr<engine::ReadySlice> ready = engine::OpenSliceRunner(
      *loaded, {sc.layer_begin(), sc.layer_end()}, rank_devices, threads > 0 ? threads : sc.threads(), fp8,
      *kv_type);
  if (!ready.ok()) return services::Fail(role, ready.status());
  std::unique_ptr<engine::SliceRunner>& runner = ready->runner;
  const std::vector<const engine::Backend*>& rank_backends = ready->rank_backends;  // admin GPU figures

  absl::StatusOr<std::string> fingerprint = judge::TargetFingerprint(loaded->config, *loaded->weights);
  if (!fingerprint.ok()) return services::Fail(role, fingerprint.status());
  services::ShardIdentity identity;
  identity.shard_index = index;
  identity.num_shards = config->shards_size();
  identity.layer_begin = sc.layer_begin();
  identity.layer_end = sc.layer_end();
  identity.num_layers = loaded->config.num_layers;
  identity.hidden_size = loaded->config.hidden_size;
  identity.vocab_size = loaded->config.vocab_size;
  identity.model_fingerprint = *fingerprint;
  identity.context_length = loaded->config.max_position_embeddings;
  identity.stop_token_ids = engine::StopTokenIds(*loaded);
  identity.sampling_defaults = engine::SamplingDefaultsOf(loaded->generation);
  for (const std::string& name : loaded->weights->Names()) {
    identity.parameters += loaded->weights->Find(name)->num_elements();
  }
  // The last shard can load a judge head at any time (JudgeReloader); the loop that swaps it in
  // exists once the shard does.
  workers::TargetShardLoop* engine_loop = nullptr;
  std::unique_ptr<services::JudgeReloader> judge_reloader;
  std::shared_ptr<const judge::JudgeHead> head;
  if (last) {
    judge_reloader = std::make_unique<services::JudgeReloader>(
        *fingerprint, loaded->config.hidden_size,
        [&engine_loop](std::shared_ptr<const judge::JudgeHead> h, std::function<void(absl::Status)> done) {
          engine_loop->ReplaceJudgeHead(std::move(h), std::move(done));
        });
  }
  if (last && !sc.judge_head().empty()) {
    absl::StatusOr<std::shared_ptr<judge::JudgeHead>> h = judge_reloader->LoadInitial(
        sc.judge_head(), sc.has_judge_threshold() ? std::optional<float>(sc.judge_threshold()) : std::nullopt);
    if (!h.ok()) return services::Fail(role, h.status());
    head = *std::move(h);
  }
  absl::StatusOr<std::unique_ptr<workers::TargetShard>> shard = workers::TargetShard::Create(
      runner.get(), head, {.max_sessions = config->coordinator().max_sessions() * 2,
                                         .max_kv_bytes = int64_t{sc.max_kv_memory_mb()} << 20});
  if (!shard.ok()) return services::Fail(role, shard.status());

  services::ShardEventHub events(index);
  const bool ucx = config->transport().kind() != v1::TransportConfig::KIND_GRPC;
  transport::UcxOptions ucx_options;
  ucx_options.tls = config->transport().ucx_tls();
  if (config->transport().has_ucx_peer_failure_detection()) {
    ucx_options.peer_failure_detection = config->transport().ucx_peer_failure_detection();
  }
  std::unique_ptr<services::ActivationForwarder> forwarder;
  if (!last) {
    services::ForwarderOptions f;
    f.from_shard = index;
    f.hidden_size = loaded->config.hidden_size;
    f.dtype = config->transport().dtype();
    f.use_ucx = ucx;
    f.next_data_address = config->shards(index + 1).data_listen();
    f.next_grpc_address = config->shards(index + 1).listen();
    f.grpc_credentials = (*security)->ChannelTo(services::ShardRole(index + 1));
    f.ucx = ucx_options;
    forwarder = std::make_unique<services::ActivationForwarder>(
        f, [&events](spec::BlockOutcome outcome) { events.Publish(outcome); });
  }
  workers::ShardLoopSinks sinks;
  if (forwarder) sinks.to_next = [&forwarder](workers::ShardBatch batch) { forwarder->Send(std::move(batch)); };
  sinks.on_outcome = [&events](spec::BlockOutcome outcome) { events.Publish(outcome); };
  // Each session has at most one block in flight: more queued than that is a flood.
  workers::ShardLoopOptions loop_options{.max_batch_tokens = sc.max_batch_tokens(),
                                         .session_lease = services::SessionLease(config->coordinator()),
                                         .max_queued_blocks = 4 * int64_t{config->coordinator().max_sessions()}};
  loop_options.on_lease_expired = [index](uint32_t owner, int64_t sessions) {
    std::fprintf(stderr, "verdict-shard: shard %d released %lld sessions of coordinator %08x: its lease expired\n",
                 index, static_cast<long long>(sessions), owner);
  };
  auto loop = std::make_unique<workers::TargetShardLoop>(std::move(*shard), loop_options, sinks);
  engine_loop = loop.get();
  services::ShardJudge shard_judge;
  if (judge_reloader != nullptr) {
    services::JudgeReloader* r = judge_reloader.get();
    shard_judge.reload = [r](const std::string& path, std::optional<float> threshold) { return r->Reload(path, threshold); };
    shard_judge.current = [r] { return r->current(); };
  }
  services::TargetShardService service(loop.get(), &events, identity, std::move(shard_judge));
  std::unique_ptr<transport::ActivationReceiver> receiver;
  if (index > 0 && ucx) {
    absl::StatusOr<std::unique_ptr<transport::ActivationReceiver>> r = transport::ListenUcx(
        ucx_options, bind->data,
        [&service](absl::StatusOr<transport::Frame> frame) { service.HandleActivationFrame(std::move(frame)); });
    if (!r.ok()) return services::Fail(role, r.status());
    receiver = std::move(*r);
  }
  // The coordinator calls every shard; a shard pushes activations to the next one.
  std::vector<std::string> callers = {services::kCoordinatorRole};
  if (index > 0) callers.push_back(services::ShardRole(index - 1));
  absl::StatusOr<std::unique_ptr<grpc::Server>> server =
      services::StartServer(bind->grpc, {&service}, (*security)->MemberServerCredentials(callers));
  if (!server.ok()) return services::Fail(role, server.status());
  std::unique_ptr<services::AdminServer> admin;
  if (!bind->admin.empty()) {
    services::AdminHandlers h;
    h.metrics = [&loop, &forwarder, &service, &events, &rank_backends, &judge_reloader, index] {
      const workers::ShardLoopStats st = loop->stats();
      const std::vector<prometheus::ClientMetric::Label> shard = {{"shard", absl::StrCat(index)}};
      std::vector<prometheus::MetricFamily> m;
      m.push_back(services::CounterFamily("verdict_shard_forward_passes_total", "Forward passes", st.forward_passes, shard));
      m.push_back(services::CounterFamily("verdict_shard_blocks_total", "Blocks run", st.blocks, shard));
      m.push_back(services::CounterFamily("verdict_shard_tokens_total", "Positions run", st.tokens, shard));
      m.push_back(services::CounterFamily("verdict_shard_forward_seconds_total", "Time in forward passes",
                                          st.forward_micros_total * 1e-6, shard));
      m.push_back(services::GaugeFamily("verdict_shard_last_forward_seconds", "Latency of the last forward pass",
                                        st.last_forward_micros * 1e-6, shard));
      m.push_back(services::CounterFamily("verdict_shard_logits_rows_to_host_total",
                                          "Logits rows copied to the host for verification (policies "
                                          "that need the full distribution: sampled, KL)",
                                          st.logits_rows_to_host, shard));
      m.push_back(services::GaugeFamily("verdict_shard_queue_depth", "Blocks waiting", st.queue_depth, shard));
      m.push_back(services::GaugeFamily("verdict_shard_sessions", "Open sessions", st.sessions, shard));
      m.push_back(services::GaugeFamily("verdict_shard_kv_bytes", "KV cache memory held by the open sessions",
                                        st.kv_bytes, shard));
      m.push_back(services::CounterFamily("verdict_shard_leases_expired_total",
                                          "Coordinators whose sessions were released for want of a lease renewal",
                                          st.leases_expired, shard));
      m.push_back(services::CounterFamily("verdict_shard_sessions_released_by_lease_total",
                                          "Sessions released because their coordinator's lease expired",
                                          st.sessions_released_by_lease, shard));
      m.push_back(services::CounterFamily("verdict_shard_refused_queue_full_total",
                                          "Opens and blocks refused because the queue was full", st.refused_queue_full,
                                          shard));
      m.push_back(services::CounterFamily("verdict_shard_rejected_payloads_total", "Activation payloads refused",
                                          service.rejected_payloads(), shard));
      if (judge_reloader != nullptr) services::AppendJudgeMetrics(*judge_reloader, &m);
      m.push_back(services::CounterFamily("verdict_shard_events_dropped_total", "Events dropped with no subscriber",
                                          events.dropped(), shard));
      // GPU figures of each rank's CUDA backend, as of its last step.
      std::vector<prometheus::MetricFamily> gpu;
      for (size_t r = 0; r < rank_backends.size(); ++r) {
        if (rank_backends[r]->name() != "cuda") continue;
        const engine::CudaBackendStats g = engine::GetCudaBackendStatsSnapshot(*rank_backends[r]);
        const std::vector<prometheus::ClientMetric::Label> labels = {{"shard", absl::StrCat(index)},
                                                                     {"rank", absl::StrCat(r)}};
        const std::vector<std::pair<const char*, double>> gauges = {
            {"verdict_gpu_memory_reserved_bytes", static_cast<double>(g.device_bytes_reserved)},
            {"verdict_gpu_memory_in_use_bytes", static_cast<double>(g.device_bytes_in_use)},
            {"verdict_gpu_kv_blocks_in_use", static_cast<double>(g.kv_blocks_in_use)},
            {"verdict_gpu_kv_blocks_total", static_cast<double>(g.kv_blocks_total)},
            {"verdict_gpu_graph_replays_total", static_cast<double>(g.graph_replays)},
            {"verdict_gpu_eager_steps_total", static_cast<double>(g.eager_steps)},
        };
        for (size_t i = 0; i < gauges.size(); ++i) {
          if (gpu.size() <= i) {
            const bool counter = absl::EndsWith(gauges[i].first, "_total");
            gpu.push_back(counter ? services::CounterFamily(gauges[i].first, "CUDA backend", gauges[i].second, labels)
                                  : services::GaugeFamily(gauges[i].first, "CUDA backend", gauges[i].second, labels));
          } else {
            services::AddSeries(gpu[i], gauges[i].second, labels);
          }
        }
      }
      for (auto& family : gpu) m.push_back(std::move(family));
      if (forwarder) {
        const services::ForwarderStats f = forwarder->stats();
        m.push_back(services::CounterFamily("verdict_transport_bytes_total", "Activation bytes sent", f.bytes, shard));
        m.push_back(services::CounterFamily("verdict_transport_batches_total", "Activation batches sent", f.batches, shard));
        m.push_back(services::CounterFamily("verdict_transport_send_seconds_total", "Time sending activations",
                                            f.send_micros_total * 1e-6, shard));
        m.push_back(services::CounterFamily("verdict_transport_failures_total", "Activation batches not delivered",
                                            f.failures, shard));
      }
      return m;
    };
    h.reload_credentials = [&security] { return (*security)->ReloadNowJson(); };
    if (judge_reloader != nullptr) {
      h.reload_judge = [&judge_reloader](const std::string& body) {
        return services::ReloadJudgeFromAdmin(*judge_reloader, body);
      };
    }
    absl::StatusOr<std::unique_ptr<services::AdminServer>> a =
        services::AdminServer::Start(bind->admin, std::move(h), (*security)->AdminHttp());
    if (!a.ok()) return services::Fail(role, a.status());
    admin = std::move(*a);
  }
  (*security)->StartReloading();
  std::fprintf(stderr, "verdict-shard: shard %d serving layers [%d, %d) on %s%s%s (%s; %s)\n", index,
               sc.layer_begin(), sc.layer_end(), bind->grpc.c_str(), receiver ? ", activations on " : "",
               receiver ? receiver->address().c_str() : "", absl::StrJoin(rank_devices, ", ").c_str(),
               (*security)->Describe().c_str());
  services::WaitForTerminationSignal();
  admin.reset();
  (*server)->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  receiver.reset();
  loop.reset();
  forwarder.reset();
  std::fprintf(stderr, "verdict-shard: shard %d stopped\n", index);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"verdict-shard: one target shard of a Verdict cluster"};
  std::string config;
  std::string shard;
  int threads = 0;
  std::string device;
  app.add_option("--config", config, "cluster config (textproto or JSON)")->required();
  // A string, so that an empty value ("--shard $UNSET_VARIABLE") is an error rather than 0.
  app.add_option("--shard", shard, "which shard of the config (0-based)")->required();
  app.add_option("--threads", threads, "CPU threads (0: the config's, else all)");
  app.add_option("--device", device,
                 "cpu, cuda or cuda:N (default: the config's, else cpu); with tensor parallelism every "
                 "rank's, unless the config lists devices");
  bool fp8 = false;
  app.add_flag("--fp8", fp8, verdict::engine::kFp8FlagHelp);
  std::string kv_cache;
  app.add_option("--kv-cache", kv_cache, verdict::engine::kKvCacheFlagHelp)
      ->check(CLI::IsMember(verdict::engine::KvCacheTypeNameList()));
  verdict::services::BindOverrides bind;
  verdict::services::AddBindFlags(app, verdict::services::BindEndpoints::kWithData, &bind);
  CLI11_PARSE(app, argc, argv);
  return Run(config, shard, threads, device, fp8, kv_cache, bind);
}
