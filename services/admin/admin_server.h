// SPDX-License-Identifier: Apache-2.0
// The admin HTTP endpoint every Verdict process serves (cpp-httplib on its own thread):
//   /healthz     200 while the process runs
//   /readyz      200 when the process can serve (its `ready` callback), 503 otherwise
//   /metrics     Prometheus text format, built at scrape time from the process's counters
//   /v1/status   JSON (the coordinator: verdict.v1.ClusterStatus, StatusJson below)
//   /dashboard   a self-contained HTML page (the coordinator)
//   POST /v1/admin/reload-credentials   re-reads certificates, keys and key files now (JSON result)
//   POST /v1/admin/judge   loads a judge head file or threshold without a restart (JSON result)
// With admin tokens configured (HttpSecurity::tokens) everything but /healthz and /readyz needs
// "Authorization: Bearer TOKEN" (401 without a valid one); probes stay open.
// Metrics are built from snapshots of the cores' own counters when scraped (no second set of
// counters to keep in step).
#ifndef VERDICT_SERVICES_ADMIN_ADMIN_SERVER_H_
#define VERDICT_SERVICES_ADMIN_ADMIN_SERVER_H_

#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "google/protobuf/message.h"
#include "prometheus/metric_family.h"
#include "services/admin/http_security.h"
#include "verdict/v1/target_shard.pb.h"

namespace httplib {
class Server;
}

namespace verdict::services {

// An answer of an admin request handled by the process: HTTP status and JSON body.
struct AdminReply {
  int status = 200;
  std::string json;
};

struct AdminHandlers {
  std::function<bool()> ready;                                 // default: always ready
  std::function<std::vector<prometheus::MetricFamily>()> metrics;
  std::function<std::string()> status_json;                    // empty: no /v1/status
  std::string dashboard_html;                                  // empty: no /dashboard
  // Re-reads the security files; returns the JSON answer (empty function: no such endpoint).
  std::function<std::string()> reload_credentials;
  // POST /v1/admin/judge {"path": "...", "threshold": 0.5}: load a judge head now (the last shard,
  // and the coordinator for the cluster); empty function: no such endpoint.
  std::function<AdminReply(const std::string& body)> reload_judge;
};

class AdminServer {
 public:
  // Listens on "HOST:PORT" (port 0 picks one). kUnavailable if it cannot bind.
  // `security`: HTTPS and admin tokens (default: plain HTTP, open).
  static absl::StatusOr<std::unique_ptr<AdminServer>> Start(const std::string& address, AdminHandlers handlers,
                                                            const HttpSecurity& security = {});
  ~AdminServer();  // stops serving and joins the thread
  int port() const { return port_; }

 private:
  AdminServer() = default;
  AdminHandlers handlers_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
};

// Building blocks for the metrics callbacks.
prometheus::MetricFamily CounterFamily(const std::string& name, const std::string& help, double value,
                                       std::vector<prometheus::ClientMetric::Label> labels = {});
prometheus::MetricFamily GaugeFamily(const std::string& name, const std::string& help, double value,
                                     std::vector<prometheus::ClientMetric::Label> labels = {});
// A histogram over small integers: counts[i] = observations of value i (e.g. accepted draft tokens
// per target pass), exposed with buckets le=0,1,2,...
prometheus::MetricFamily IntegerHistogramFamily(const std::string& name, const std::string& help,
                                                const std::vector<int64_t>& counts);
// Adds one labelled series to a family of the same type.
void AddSeries(prometheus::MetricFamily& family, double value, std::vector<prometheus::ClientMetric::Label> labels);

// {"error": message} with the HTTP status of the code (400 invalid, 404 not found, 409 failed
// precondition, 503 unavailable, else 500).
AdminReply ErrorReply(const absl::Status& status);
// The body of POST /v1/admin/judge: {"path": "...", "threshold": 0.5}, both optional.
absl::StatusOr<v1::ReloadJudgeRequest> ParseJudgeReloadBody(const std::string& body);

// A status message as /v1/status serves it: protobuf's JSON mapping with the proto field names and
// fields at their default values included (64-bit integers are strings, as the mapping says).
std::string StatusJson(const google::protobuf::Message& message);

}  // namespace verdict::services

#endif  // VERDICT_SERVICES_ADMIN_ADMIN_SERVER_H_
