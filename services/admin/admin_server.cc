// SPDX-License-Identifier: Apache-2.0
#include "services/admin/admin_server.h"

#include <limits>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/host_port.h"
#include "google/protobuf/util/json_util.h"
#include "httplib.h"
#include "nlohmann/json.hpp"
#include "prometheus/text_serializer.h"

namespace verdict::services {

absl::StatusOr<std::unique_ptr<AdminServer>> AdminServer::Start(const std::string& address, AdminHandlers handlers,
                                                                const HttpSecurity& security) {
  absl::StatusOr<HostPort> host_port = ParseHostPort(address, /*allow_port_zero=*/true);
  if (!host_port.ok()) return absl::InvalidArgumentError(absl::StrCat("admin ", host_port.status().message()));
  const std::string& host = host_port->host;
  const int port = host_port->port;
  std::unique_ptr<AdminServer> admin(new AdminServer());
  admin->handlers_ = std::move(handlers);
  absl::StatusOr<std::unique_ptr<httplib::Server>> server = MakeHttpServer(security);
  if (!server.ok()) return server.status();
  admin->server_ = *std::move(server);
  AdminServer* self = admin.get();
  httplib::Server& s = *admin->server_;
  if (const security::KeyRing* tokens = security.tokens; tokens != nullptr) {
    s.set_pre_routing_handler([tokens](const httplib::Request& req, httplib::Response& res) {
      if (req.path == "/healthz" || req.path == "/readyz") return httplib::Server::HandlerResponse::Unhandled;
      absl::StatusOr<std::shared_ptr<const security::ApiKey>> who =
          tokens->Authenticate(security::BearerToken(req.get_header_value("Authorization")));
      if (who.ok()) return httplib::Server::HandlerResponse::Unhandled;
      res.status = 401;
      res.set_header("WWW-Authenticate", "Bearer realm=\"verdict-admin\"");
      res.set_content(absl::StrCat("admin token required: ", who.status().message(), "\n"), "text/plain");
      return httplib::Server::HandlerResponse::Handled;
    });
  }
  s.Get("/healthz", [](const httplib::Request&, httplib::Response& res) { res.set_content("ok\n", "text/plain"); });
  s.Get("/readyz", [self](const httplib::Request&, httplib::Response& res) {
    const bool ready = !self->handlers_.ready || self->handlers_.ready();
    res.status = ready ? 200 : 503;
    res.set_content(ready ? "ready\n" : "not ready\n", "text/plain");
  });
  s.Get("/metrics", [self](const httplib::Request&, httplib::Response& res) {
    std::vector<prometheus::MetricFamily> families;
    if (self->handlers_.metrics) families = self->handlers_.metrics();
    res.set_content(prometheus::TextSerializer().Serialize(families), "text/plain; version=0.0.4");
  });
  if (admin->handlers_.status_json) {
    s.Get("/v1/status", [self](const httplib::Request&, httplib::Response& res) {
      res.set_content(self->handlers_.status_json(), "application/json");
    });
  }
  if (!admin->handlers_.dashboard_html.empty()) {
    s.Get("/dashboard", [self](const httplib::Request&, httplib::Response& res) {
      res.set_content(self->handlers_.dashboard_html, "text/html; charset=utf-8");
    });
  }
  if (admin->handlers_.reload_credentials) {
    s.Post("/v1/admin/reload-credentials", [self](const httplib::Request&, httplib::Response& res) {
      res.set_content(self->handlers_.reload_credentials(), "application/json");
    });
  }
  if (admin->handlers_.reload_judge) {
    s.Post("/v1/admin/judge", [self](const httplib::Request& req, httplib::Response& res) {
      AdminReply reply = self->handlers_.reload_judge(req.body);
      res.status = reply.status;
      res.set_content(reply.json, "application/json");
    });
  }
  if (port == 0) {
    admin->port_ = s.bind_to_any_port(host);
  } else {
    admin->port_ = s.bind_to_port(host, port) ? port : -1;
  }
  if (admin->port_ <= 0) return absl::UnavailableError(absl::StrCat("cannot listen on ", address, " (admin)"));
  admin->thread_ = std::thread([self] { self->server_->listen_after_bind(); });
  return admin;
}

AdminServer::~AdminServer() {
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
}

AdminReply ErrorReply(const absl::Status& status) {
  int code = 500;
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument: code = 400; break;
    case absl::StatusCode::kNotFound: code = 404; break;
    case absl::StatusCode::kFailedPrecondition: code = 409; break;
    case absl::StatusCode::kUnavailable: code = 503; break;
    default: break;
  }
  return {code, nlohmann::json{{"error", std::string(status.message())}}.dump() + "\n"};
}

absl::StatusOr<v1::ReloadJudgeRequest> ParseJudgeReloadBody(const std::string& body) {
  const nlohmann::json request = nlohmann::json::parse(body.empty() ? "{}" : body, nullptr, /*allow_exceptions=*/false);
  if (!request.is_object()) {
    return absl::InvalidArgumentError("the body must be a JSON object {\"path\": ..., \"threshold\": ...}");
  }
  v1::ReloadJudgeRequest r;
  if (auto p = request.find("path"); p != request.end()) {
    if (!p->is_string()) return absl::InvalidArgumentError("\"path\" must be a string");
    r.set_path(p->get<std::string>());
  }
  if (auto t = request.find("threshold"); t != request.end()) {
    if (!t->is_number()) return absl::InvalidArgumentError("\"threshold\" must be a number");
    r.set_threshold(t->get<float>());
  }
  return r;
}

namespace {

prometheus::MetricFamily Family(const std::string& name, const std::string& help, prometheus::MetricType type) {
  prometheus::MetricFamily f;
  f.name = name;
  f.help = help;
  f.type = type;
  return f;
}

}  // namespace

void AddSeries(prometheus::MetricFamily& family, double value, std::vector<prometheus::ClientMetric::Label> labels) {
  prometheus::ClientMetric m;
  m.label = std::move(labels);
  if (family.type == prometheus::MetricType::Counter) {
    m.counter.value = value;
  } else {
    m.gauge.value = value;
  }
  family.metric.push_back(std::move(m));
}

prometheus::MetricFamily CounterFamily(const std::string& name, const std::string& help, double value,
                                       std::vector<prometheus::ClientMetric::Label> labels) {
  prometheus::MetricFamily f = Family(name, help, prometheus::MetricType::Counter);
  AddSeries(f, value, std::move(labels));
  return f;
}

prometheus::MetricFamily GaugeFamily(const std::string& name, const std::string& help, double value,
                                     std::vector<prometheus::ClientMetric::Label> labels) {
  prometheus::MetricFamily f = Family(name, help, prometheus::MetricType::Gauge);
  AddSeries(f, value, std::move(labels));
  return f;
}

prometheus::MetricFamily IntegerHistogramFamily(const std::string& name, const std::string& help,
                                                const std::vector<int64_t>& counts) {
  prometheus::MetricFamily f = Family(name, help, prometheus::MetricType::Histogram);
  prometheus::ClientMetric m;
  uint64_t cumulative = 0;
  double sum = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    cumulative += static_cast<uint64_t>(counts[i]);
    sum += static_cast<double>(i) * static_cast<double>(counts[i]);
    m.histogram.bucket.push_back({cumulative, static_cast<double>(i)});
  }
  m.histogram.bucket.push_back({cumulative, std::numeric_limits<double>::infinity()});
  m.histogram.sample_count = cumulative;
  m.histogram.sample_sum = sum;
  f.metric.push_back(std::move(m));
  return f;
}

std::string StatusJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  std::string json;
  const auto status = google::protobuf::util::MessageToJsonString(message, &json, options);
  // Serializing a well-formed message cannot fail; say so in the body rather than serve nothing.
  if (!status.ok()) return absl::StrCat("{\"error\": \"", std::string(status.message()), "\"}");
  return json;
}

}  // namespace verdict::services
