// SPDX-License-Identifier: Apache-2.0
// verdict-coordinator: the client-facing service of a Verdict cluster (verdict.v1.Verdict). Talks
// to the draft worker and the target shards over gRPC (activations go shard to shard).
//   verdict-coordinator --config cluster.textproto
#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "CLI/CLI.hpp"
#include "clients/grpc/grpc_worker_clients.h"
#include "clients/grpc/wire_convert.h"
#include "common/status_macros.h"
#include "clients/chaos/rpc_chaos.h"
#include "coordinator/coordinator.h"
#include "coordinator/lease_renewer.h"
#include "engine/model_loader.h"
#include "httplib.h"
#include "services/admin/admin_server.h"
#include "services/admin/dashboard.h"
#include "services/bin/member_security.h"
#include "services/bin/server_main_util.h"
#include "services/config/cluster_config.h"
#include "services/coordinator/generation_service.h"
#include "services/openai/openai_server.h"
#include "verdict/v1/admin.pb.h"
#include "verdict/v1/target_shard.grpc.pb.h"

namespace {

// One value of a Prometheus text exposition ("name{labels} value"), or -1.
double ScrapeValue(const std::string& text, const std::string& series) {
  const size_t at = text.find("\n" + series + " ");
  if (at == std::string::npos) return -1;
  return std::strtod(text.c_str() + at + series.size() + 2, nullptr);
}

// A shard's forward-pass latency from its /metrics (mean and last, ms), or {-1, -1}. Under client
// TLS the admin endpoints speak HTTPS (verified against client_tls.ca_file, else the system's
// trust store); under admin tokens the coordinator presents VERDICT_ADMIN_TOKEN.
std::pair<double, double> ShardLatencyMs(const std::string& admin, int index, const verdict::v1::SecurityConfig& sec) {
  if (admin.empty() || admin.rfind(':') == std::string::npos) return {-1, -1};
  const bool tls = !sec.client_tls().cert_file().empty();
  httplib::Client http(absl::StrCat(tls ? "https://" : "http://", admin));
  if (tls && !sec.client_tls().ca_file().empty()) http.set_ca_cert_path(sec.client_tls().ca_file().c_str());
  if (const char* token = std::getenv("VERDICT_ADMIN_TOKEN"); token != nullptr && *token != '\0') {
    http.set_bearer_token_auth(token);
  }
  http.set_connection_timeout(0, 200000);
  http.set_read_timeout(0, 500000);
  auto res = http.Get("/metrics");
  if (!res || res->status != 200) return {-1, -1};
  const std::string label = "{shard=\"" + std::to_string(index) + "\"}";
  const double seconds = ScrapeValue(res->body, "verdict_shard_forward_seconds_total" + label);
  const double passes = ScrapeValue(res->body, "verdict_shard_forward_passes_total" + label);
  const double last = ScrapeValue(res->body, "verdict_shard_last_forward_seconds" + label);
  return {passes > 0 ? 1e3 * seconds / passes : 0.0, last >= 0 ? 1e3 * last : -1};
}

// What the coordinator learns from the members rather than from files: each shard's layout
// (checked against the config; one model, by fingerprint, layer count and vocabulary, across the
// shards), the target's context length, stop tokens and size, the judge on the last shard, and
// the draft's context and name. Waits for members that are still starting until `deadline`.
absl::Status LearnFromMembers(const verdict::v1::ClusterConfig& config, absl::Time deadline,
                              const verdict::services::MemberSecurity& security,
                              verdict::services::ServedModel* served,
                              verdict::coordinator::CoordinatorOptions* options) {
  using namespace verdict;
  v1::ShardDescription first;
  for (int i = 0; i < config.shards_size(); ++i) {
    const v1::TargetShardConfig& sc = config.shards(i);
    const std::string who = absl::StrCat("target shard ", i, " (", sc.listen(), ")");
    VERDICT_ASSIGN_OR_RETURN(v1::ShardDescription d, services::DescribeShard(sc.listen(), who, deadline,
                                                                                        security.ChannelTo(services::ShardRole(i))));
    if (d.shard_index() != i || d.num_shards() != config.shards_size() || d.layer_begin() != sc.layer_begin() ||
        d.layer_end() != sc.layer_end()) {
      return absl::FailedPreconditionError(absl::StrCat(
          who, " serves shard ", d.shard_index(), " of ", d.num_shards(), " (layers [", d.layer_begin(), ", ",
          d.layer_end(), ")); the config says shard ", i, " of ", config.shards_size(), " (layers [",
          sc.layer_begin(), ", ", sc.layer_end(), "))"));
    }
    if (i == 0) {
      first = d;
    } else if (d.model_fingerprint() != first.model_fingerprint() || d.num_layers() != first.num_layers() ||
               d.vocab_size() != first.vocab_size()) {
      return absl::FailedPreconditionError(absl::StrCat(
          who, " serves model ", d.model_fingerprint(), " (", d.num_layers(), " layers, ", d.vocab_size(),
          " tokens); target shard 0 serves ", first.model_fingerprint(), " (", first.num_layers(), " layers, ",
          first.vocab_size(), " tokens)"));
    }
    if (i + 1 == config.shards_size()) {
      served->has_judge = d.has_judge();
      served->judge_threshold = d.judge_threshold();
      served->judge_fingerprint = d.judge_fingerprint();
      served->judge_head = d.judge_head().id();
    }
  }
  VERDICT_RETURN_IF_ERROR(services::ValidateClusterConfig(config, first.num_layers()));
  served->vocab_size = first.vocab_size();
  served->context_length = first.context_length();
  served->parameters = first.parameters();
  served->stop_token_ids.assign(first.stop_token_ids().begin(), first.stop_token_ids().end());
  const v1::SamplingDefaults& d = first.sampling_defaults();
  served->sampling_defaults = {d.do_sample(), d.temperature(), d.top_k(), d.top_p()};
  options->target_context = first.context_length();
  if (served->tokenizer->vocab_size() > served->vocab_size) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the tokenizer has ", served->tokenizer->vocab_size(), " tokens; the target's vocabulary ",
        served->vocab_size));
  }
  if (config.has_draft()) {
    // Sessions decode target-only while the draft is down, so a draft that does not answer soon
    // after the shards does not hold the coordinator up: it is described by its config until then.
    const std::string who = absl::StrCat("the draft worker (", config.draft().listen(), ")");
    absl::StatusOr<v1::DraftDescription> described =
        services::DescribeDraft(config.draft().listen(), who, std::min(deadline, absl::Now() + absl::Seconds(10)),
                                security.ChannelTo(services::kDraftRole));
    if (!described.ok()) {
      std::fprintf(stderr, "verdict-coordinator: warning: %s; serving target-only until the draft answers\n",
                   std::string(described.status().message()).c_str());
      options->draft_context = first.context_length();
      served->draft_name = services::ModelBaseName(config.draft().model().path());
      return absl::OkStatus();
    }
    const v1::DraftDescription& d = *described;
    if (d.vocab_size() != first.vocab_size()) {
      return absl::FailedPreconditionError(absl::StrCat(who, " serves a vocabulary of ", d.vocab_size(),
                                                        " tokens; the target's has ", first.vocab_size()));
    }
    options->draft_context = d.context_length();
    served->draft_name = d.model_name();
  }
  return absl::OkStatus();
}

int Run(const std::string& config_path, const verdict::services::BindOverrides& bind_flags) {
  using namespace verdict;
  services::BlockTerminationSignals();
  absl::StatusOr<v1::ClusterConfig> config = services::LoadClusterConfig(config_path);
  if (!config.ok()) return services::Fail("coordinator", config.status());
  absl::StatusOr<services::BindAddresses> bind = services::CoordinatorBindAddresses(config->coordinator(), bind_flags);
  if (!bind.ok()) return services::Fail("coordinator", bind.status());
  // The only model file the coordinator opens: the tokenizer.
  const std::string tokenizer_path =
      config->target().tokenizer().empty() ? config->target().path() : config->target().tokenizer();
  absl::StatusOr<std::unique_ptr<engine::Tokenizer>> tokenizer = engine::LoadTokenizerAt(tokenizer_path);
  if (!tokenizer.ok()) {
    return services::Fail("coordinator", absl::Status(tokenizer.status().code(),
                                                      absl::StrCat("the target's tokenizer: ", tokenizer.status().message())));
  }
  const v1::CoordinatorConfig& cc = config->coordinator();
  absl::StatusOr<std::unique_ptr<services::MemberSecurity>> security =
      services::MemberSecurity::Create(*config, services::kCoordinatorRole, "verdict-coordinator");
  if (!security.ok()) return services::Fail("coordinator", security.status());

  services::ServedModel served;
  served.name =
      config->target().name().empty() ? services::ModelBaseName(config->target().path()) : config->target().name();
  served.tokenizer = tokenizer->get();
  absl::StatusOr<engine::ChatPromptFormat> chat =
      engine::LoadChatPromptFormat(tokenizer_path, **tokenizer, config->target().chat_template());
  if (chat.ok()) {
    served.chat_format = std::make_shared<const engine::ChatPromptFormat>(*std::move(chat));
  } else if (chat.status().code() == absl::StatusCode::kFailedPrecondition) {
    served.no_chat_format = std::string(chat.status().message());  // served without chat completions
  } else {
    return services::Fail("coordinator", chat.status());  // a template that does not parse
  }
  served.target_shards = config->shards_size();
  absl::StatusOr<spec::Policy> default_policy = wire::FromProto(cc.default_policy(), spec::Policy::kExact);
  if (!default_policy.ok()) return services::Fail("coordinator", default_policy.status());
  served.default_policy = *default_policy;
  for (int p : cc.allowed_policies()) {
    absl::StatusOr<spec::Policy> allowed = wire::FromProto(static_cast<v1::VerificationPolicy>(p), spec::Policy::kExact);
    if (!allowed.ok()) return services::Fail("coordinator", allowed.status());
    served.allowed_policies.push_back(*allowed);
  }
  served.default_draft_window = cc.default_draft_window();
  served.default_max_tokens = cc.default_max_tokens();
  coordinator::CoordinatorOptions options;
  options.max_sessions = cc.max_sessions();
  options.pipelined = cc.pipelined();
  // The layout, the judge and the draft come from the members themselves.
  const absl::Duration member_wait = absl::Seconds(cc.member_wait_seconds() > 0 ? cc.member_wait_seconds() : 120);
  if (absl::Status s = LearnFromMembers(*config, absl::Now() + member_wait, **security, &served, &options);
      !s.ok()) {
    return services::Fail("coordinator", s);
  }
  std::unique_ptr<clients::GrpcDraftClient> draft;
  if (config->has_draft()) {
    draft = std::make_unique<clients::GrpcDraftClient>(config->draft().listen(),
                                                       absl::Milliseconds(cc.draft_deadline_ms()), absl::Seconds(10),
                                                       (*security)->ChannelTo(services::kDraftRole));
  }
  std::vector<std::string> shards;
  for (const v1::TargetShardConfig& s : config->shards()) shards.push_back(s.listen());
  clients::GrpcTargetClientOptions target_options;
  for (int i = 0; i < config->shards_size(); ++i) {
    target_options.credentials.push_back((*security)->ChannelTo(services::ShardRole(i)));
  }
  clients::GrpcTargetClient target_client(shards, target_options);
  clients::DraftClient* draft_calls = draft.get();
  clients::TargetClient* target_calls = &target_client;
  // Fault injection for tests and the soak (off unless asked for): between the coordinator and the
  // gRPC clients, so the faults hit real workers.
  std::unique_ptr<clients::RpcChaos> chaos;
  std::unique_ptr<clients::ChaosDraftClient> chaos_draft;
  std::unique_ptr<clients::ChaosTargetClient> chaos_target;
  const char* chaos_env = std::getenv("VERDICT_RPC_CHAOS");
  if (const std::string spec = chaos_env != nullptr ? chaos_env : cc.rpc_chaos(); !spec.empty()) {
    absl::StatusOr<clients::ChaosOptions> chaos_options = clients::ParseChaosSpec(spec);
    if (!chaos_options.ok()) return services::Fail("coordinator", chaos_options.status());
    chaos = std::make_unique<clients::RpcChaos>(*chaos_options);
    if (draft != nullptr) chaos_draft = std::make_unique<clients::ChaosDraftClient>(draft.get(), chaos.get());
    chaos_target = std::make_unique<clients::ChaosTargetClient>(&target_client, chaos.get());
    draft_calls = chaos_draft.get();
    target_calls = chaos_target.get();
    std::fprintf(stderr, "verdict-coordinator: RPC fault injection on: %s\n", spec.c_str());
  }
  // Before the coordinator: sessions hold their API key's slot until the coordinator drops them.
  services::ClientAuth auth((*security)->api_keys());
  coordinator::Coordinator coordinator(options, draft_calls, target_calls);
  std::unique_ptr<coordinator::LeaseRenewer> lease_renewer;
  if (const absl::Duration lease = services::SessionLease(cc); lease > absl::ZeroDuration()) {
    lease_renewer = std::make_unique<coordinator::LeaseRenewer>(&coordinator, lease, draft_calls,
                                                                target_calls);
  }
  services::GenerationService service(&coordinator, served, &auth);
  absl::StatusOr<std::unique_ptr<grpc::Server>> server = services::StartServer(
      bind->grpc, {&service}, (*security)->ClientServerCredentials(), cc.max_request_bytes());
  if (!server.ok()) return services::Fail("coordinator", server.status());
  const absl::Time started = absl::Now();
  std::unique_ptr<services::AdminServer> admin;
  if (!bind->admin.empty()) {
    services::AdminHandlers h;
    h.ready = [&target_client] {
      for (int i = 0; i < target_client.num_shards(); ++i) {
        if (!target_client.connected(i)) return false;
      }
      return true;
    };
    h.metrics = [&coordinator, &target_client, &draft, &chaos, &auth, &security] {
      const coordinator::CoordinatorSnapshot snap = coordinator.Snapshot();
      const coordinator::CoordinatorTotals& totals = snap.totals;
      const spec::SpeculationStats& t = totals.stats;
      std::vector<prometheus::MetricFamily> m;
      m.push_back(services::CounterFamily("verdict_requests_total", "Generate requests started", totals.requests));
      m.push_back(services::CounterFamily("verdict_requests_failed_total", "Generate requests that failed", totals.requests_failed));
      m.push_back(services::CounterFamily("verdict_requests_cancelled_total", "Generate requests cancelled", totals.requests_cancelled));
      m.push_back(services::CounterFamily("verdict_target_retries_total",
                                          "Target opens and blocks sent again after a transient error",
                                          totals.target_retries));
      if (chaos != nullptr) {
        prometheus::MetricFamily faults = services::CounterFamily(
            "verdict_rpc_chaos_faults_total", "Faults injected into calls to the workers (tests only)",
            chaos->total(clients::ChaosFault::kDropRequest), {{"fault", "drop_request"}});
        for (clients::ChaosFault f : {clients::ChaosFault::kDropReply, clients::ChaosFault::kDelay,
                                      clients::ChaosFault::kDuplicate, clients::ChaosFault::kFail}) {
          services::AddSeries(faults, chaos->total(f), {{"fault", clients::ChaosFaultName(f)}});
        }
        m.push_back(faults);
      }
      m.push_back(services::CounterFamily("verdict_tokens_total", "Generated tokens", t.tokens));
      m.push_back(services::CounterFamily("verdict_target_passes_total", "Target verification passes", t.target_passes));
      m.push_back(services::CounterFamily("verdict_target_only_passes_total", "Passes without draft tokens", t.target_only_passes));
      m.push_back(services::CounterFamily("verdict_draft_tokens_proposed_total", "Draft tokens sent for verification", t.proposed));
      prometheus::MetricFamily acc = services::CounterFamily(
          "verdict_accepted_tokens_total", "Accepted draft tokens by rule", t.accepted_exact,
          {{"rule", std::string(spec::AcceptReasonName(spec::AcceptReason::kExact))}});
      services::AddSeries(acc, t.accepted_judge, {{"rule", std::string(spec::AcceptReasonName(spec::AcceptReason::kJudge))}});
      services::AddSeries(acc, t.accepted_lossy, {{"rule", std::string(spec::AcceptReasonName(spec::AcceptReason::kLossy))}});
      m.push_back(acc);
      m.push_back(services::IntegerHistogramFamily("verdict_accepted_per_pass", "Accepted draft tokens per target pass", t.accepted_histogram));
      m.push_back(services::CounterFamily("verdict_pipelined_guesses_total", "Blocks drafted ahead of a verdict", t.optimistic_blocks));
      m.push_back(services::CounterFamily("verdict_pipelined_hits_total", "Drafted-ahead blocks whose guess held", t.optimistic_hits));
      m.push_back(services::CounterFamily("verdict_draft_failures_total", "Draft worker failures seen by sessions", t.draft_failures));
      m.push_back(services::GaugeFamily("verdict_sessions", "Sessions in flight", snap.sessions.size()));
      if (auth.required()) {
        m.push_back(services::CounterFamily("verdict_auth_failures_total",
                                            "Client API requests without a valid API key", auth.unauthenticated()));
        prometheus::MetricFamily requests = services::CounterFamily(
            "verdict_key_requests_total", "Generations admitted, by API key name", 0, {{"key", ""}});
        prometheus::MetricFamily denied = services::CounterFamily(
            "verdict_key_denied_total", "Generations refused by the key's policies or session limit", 0, {{"key", ""}});
        prometheus::MetricFamily held = services::GaugeFamily("verdict_key_sessions", "Sessions held, by API key name",
                                                              0, {{"key", ""}});
        requests.metric.clear();
        denied.metric.clear();
        held.metric.clear();
        for (const services::ClientAuth::KeyCounts& k : auth.Snapshot()) {
          services::AddSeries(requests, k.requests, {{"key", k.name}});
          services::AddSeries(denied, k.denied, {{"key", k.name}});
          services::AddSeries(held, k.sessions, {{"key", k.name}});
        }
        m.push_back(requests);
        m.push_back(denied);
        m.push_back(held);
      }
      const verdict::security::FileReloader& reloader = (*security)->reloader();
      m.push_back(services::CounterFamily("verdict_credential_reloads_total",
                                          "Certificates, keys or key files replaced without a restart",
                                          reloader.changes()));
      m.push_back(services::CounterFamily("verdict_credential_reloads_refused_total",
                                          "Changed security files refused (the old ones kept)", reloader.refusals()));
      prometheus::MetricFamily up = services::GaugeFamily("verdict_member_up", "Cluster member reachable (1) or not (0)",
                                                          draft == nullptr ? 0 : draft->connected(), {{"member", "draft"}});
      for (int i = 0; i < target_client.num_shards(); ++i) {
        services::AddSeries(up, target_client.connected(i), {{"member", absl::StrCat("shard", i)}});
      }
      m.push_back(up);
      return m;
    };
    h.status_json = [&, started] {
      const coordinator::CoordinatorSnapshot snap = coordinator.Snapshot();
      v1::ClusterStatus status;
      status.set_cluster(config->name());
      status.set_uptime_seconds(absl::ToDoubleSeconds(absl::Now() - started));
      status.set_transport(config->transport().kind() == v1::TransportConfig::KIND_GRPC ? "grpc" : "ucx");
      wire::ToProto(snap.totals.stats, status.mutable_totals());
      status.set_requests(snap.totals.requests);
      status.set_requests_failed(snap.totals.requests_failed);
      status.set_requests_cancelled(snap.totals.requests_cancelled);
      v1::MemberStatus* me = status.add_members();
      me->set_role("coordinator");
      me->set_address(cc.listen());
      me->set_admin_address(cc.admin_listen());
      me->set_healthy(true);
      me->set_sessions(static_cast<int32_t>(snap.sessions.size()));
      if (draft) {
        v1::MemberStatus* d = status.add_members();
        d->set_role("draft");
        d->set_address(config->draft().listen());
        d->set_admin_address(config->draft().admin_listen());
        d->set_healthy(draft->connected());
      }
      for (int i = 0; i < config->shards_size(); ++i) {
        const v1::TargetShardConfig& sh = config->shards(i);
        const auto [mean_ms, last_ms] = ShardLatencyMs(sh.admin_listen(), i, config->security());
        v1::MemberStatus* m = status.add_members();
        m->set_role(absl::StrCat("shard ", i));
        m->set_shard_index(i);
        m->set_address(sh.listen());
        m->set_admin_address(sh.admin_listen());
        m->set_healthy(target_client.connected(i));
        m->set_layer_begin(sh.layer_begin());
        m->set_layer_end(sh.layer_end());
        m->set_layers(absl::StrCat("[", sh.layer_begin(), ", ", sh.layer_end(), ")"));
        m->set_forward_ms_mean(mean_ms);
        m->set_forward_ms_last(last_ms);
      }
      for (const coordinator::SessionSnapshot& x : snap.sessions) {
        v1::SessionStatus* ss = status.add_sessions();
        ss->set_session_id(x.id.value());
        ss->set_request_id(x.request_id);
        ss->set_policy(x.policy);
        ss->set_prompt_tokens(static_cast<int32_t>(x.prompt_tokens));
        ss->set_generated_tokens(static_cast<int32_t>(x.generated_tokens));
        ss->set_draft_window(static_cast<int32_t>(x.draft_window));
        ss->set_seconds(absl::ToDoubleSeconds(x.age));
        ss->set_degraded(x.degraded);
      }
      service.DescribeModel(status.add_models());
      return services::StatusJson(status);
    };
    h.dashboard_html = services::kDashboardHtml;
    h.reload_credentials = [&security] { return (*security)->ReloadNowJson(); };
    // A judge head for the cluster: the last shard loads and swaps it (over the member channel),
    // then the coordinator serves judge policies with it and describes it.
    h.reload_judge = [&](const std::string& body) -> services::AdminReply {
      absl::StatusOr<v1::ReloadJudgeRequest> request = services::ParseJudgeReloadBody(body);
      if (!request.ok()) return services::ErrorReply(request.status());
      const int last = config->shards_size() - 1;
      auto stub = v1::TargetShard::NewStub(grpc::CreateChannel(config->shards(last).listen(),
                                                               (*security)->ChannelTo(services::ShardRole(last))));
      grpc::ClientContext context;
      context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
      v1::JudgeInfo info;
      const grpc::Status status = stub->ReloadJudge(&context, *request, &info);
      if (!status.ok()) {
        return services::ErrorReply(absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                                                 absl::StrCat("target shard ", last, ": ", status.error_message())));
      }
      service.SetJudge(info);
      std::fprintf(stderr, "verdict-coordinator: judge head %s loaded from %s\n", info.id().c_str(),
                   info.path().c_str());
      return {200, services::StatusJson(info)};
    };
    absl::StatusOr<std::unique_ptr<services::AdminServer>> a =
        services::AdminServer::Start(bind->admin, std::move(h), (*security)->AdminHttp());
    if (!a.ok()) return services::Fail("coordinator", a.status());
    admin = std::move(*a);
  }
  std::unique_ptr<services::openai::OpenAiServer> http;
  if (!bind->http.empty()) {
    services::openai::OpenAiServerOptions http_options;
    http_options.threads = static_cast<int>(std::max<int64_t>(options.max_sessions, 64)) + 16;  // every session can stream
    const int timeout_s = cc.http_request_timeout_seconds() == 0 ? 600 : cc.http_request_timeout_seconds();
    http_options.request_timeout = timeout_s < 0 ? absl::InfiniteDuration() : absl::Seconds(timeout_s);
    http_options.security = (*security)->ApiHttp();
    absl::StatusOr<std::unique_ptr<services::openai::OpenAiServer>> h =
        services::openai::OpenAiServer::Start(bind->http, &coordinator, &service, http_options);
    if (!h.ok()) return services::Fail("coordinator", h.status());
    http = std::move(*h);
  }
  (*security)->StartReloading();
  std::fprintf(stderr, "verdict-coordinator: serving %s (%d target shards%s) on %s%s%s (%s)\n", served.name.c_str(),
               served.target_shards, draft ? absl::StrCat(", draft ", served.draft_name).c_str() : "", bind->grpc.c_str(),
               http != nullptr ? ", OpenAI HTTP API on " : "", bind->http.c_str(), (*security)->Describe().c_str());
  services::WaitForTerminationSignal();
  http.reset();
  admin.reset();
  (*server)->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  std::fprintf(stderr, "verdict-coordinator: stopped\n");
  // Nothing is served any more. Exit without running the destructors of the worker clients: their
  // fire-and-forget calls (lease renewals, session closes) can still be in flight, and tearing
  // them down at exit raced with gRPC's own shutdown ("assertion failed: prior > 0", SIGABRT after
  // a clean stop, about one stop in five under Slurm). The workers release this coordinator's
  // sessions when its lease lapses.
  std::fflush(nullptr);
  std::_Exit(0);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"verdict-coordinator: the client-facing service of a Verdict cluster"};
  std::string config;
  app.add_option("--config", config, "cluster config (textproto or JSON)")->required();
  verdict::services::BindOverrides bind;
  verdict::services::AddBindFlags(app, verdict::services::BindEndpoints::kWithHttp, &bind);
  CLI11_PARSE(app, argc, argv);
  return Run(config, bind);
}
