// SPDX-License-Identifier: Apache-2.0
#include "services/bin/judge_reloader.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "security/api_keys.h"
#include "security/tls_material.h"

namespace verdict::services {

absl::StatusOr<std::shared_ptr<judge::JudgeHead>> JudgeReloader::Load(const std::string& path,
                                                                      std::optional<float> threshold,
                                                                      v1::JudgeInfo* info) const {
  absl::StatusOr<std::string> bytes = security::ReadFileToString(path);
  if (!bytes.ok()) return bytes.status();
  absl::StatusOr<judge::JudgeHead> head = judge::LoadJudgeHead(path);
  if (!head.ok()) return head.status();
  if (absl::Status s = judge::CheckHeadMatchesTarget(*head, model_fingerprint_, hidden_size_); !s.ok()) return s;
  if (threshold.has_value()) {
    if (!(*threshold > 0.0f && *threshold < 1.0f)) {
      return absl::InvalidArgumentError(absl::StrCat("judge threshold ", *threshold, " is outside (0, 1)"));
    }
    head->threshold = *threshold;
  }
  const std::string sha = security::Sha256Hex(*bytes);
  head->id = absl::StrFormat("%s@%g", sha.substr(0, 16), head->threshold);
  info->set_id(head->id);
  info->set_sha256(sha);
  info->set_threshold(head->threshold);
  info->set_path(path);
  info->set_target_fingerprint(head->target_fingerprint);
  info->set_loaded_unix_seconds(absl::ToUnixMicros(absl::Now()) * 1e-6);
  return std::make_shared<judge::JudgeHead>(*std::move(head));
}

absl::StatusOr<std::shared_ptr<judge::JudgeHead>> JudgeReloader::LoadInitial(const std::string& path,
                                                                             std::optional<float> threshold) {
  v1::JudgeInfo info;
  absl::StatusOr<std::shared_ptr<judge::JudgeHead>> head = Load(path, threshold, &info);
  if (!head.ok()) return head;
  absl::MutexLock lock(&mu_);
  current_ = info;
  return head;
}

absl::StatusOr<v1::JudgeInfo> JudgeReloader::Reload(const std::string& path, std::optional<float> threshold) {
  absl::MutexLock one_at_a_time(&reload_mu_);
  auto refuse = [this](absl::Status s) {
    absl::MutexLock lock(&mu_);
    ++refusals_;
    return s;
  };
  std::string file = path;
  if (file.empty()) {
    absl::MutexLock lock(&mu_);
    file = current_.path();
  }
  if (file.empty()) return refuse(absl::FailedPreconditionError("no judge head is loaded: name a head file"));
  v1::JudgeInfo info;
  absl::StatusOr<std::shared_ptr<judge::JudgeHead>> head = Load(file, threshold, &info);
  if (!head.ok()) {
    return refuse(absl::Status(head.status().code(),
                               absl::StrCat(head.status().message(), "; the judge head in use is unchanged")));
  }
  absl::Notification swapped;
  absl::Status status;
  replace_(*std::move(head), [&](absl::Status s) {
    status = std::move(s);
    swapped.Notify();
  });
  swapped.WaitForNotification();
  if (!status.ok()) return refuse(status);
  absl::MutexLock lock(&mu_);
  current_ = info;
  ++reloads_;
  return info;
}

AdminReply JudgeReply(const absl::StatusOr<v1::JudgeInfo>& info) {
  return info.ok() ? AdminReply{200, StatusJson(*info)} : ErrorReply(info.status());
}

AdminReply ReloadJudgeFromAdmin(JudgeReloader& reloader, const std::string& body) {
  absl::StatusOr<v1::ReloadJudgeRequest> request = ParseJudgeReloadBody(body);
  if (!request.ok()) return ErrorReply(request.status());
  return JudgeReply(reloader.Reload(
      request->path(), request->has_threshold() ? std::optional<float>(request->threshold()) : std::nullopt));
}

void AppendJudgeMetrics(const v1::JudgeInfo& current, int64_t reloads, int64_t refusals,
                        std::vector<prometheus::MetricFamily>* m) {
  if (!current.id().empty()) {
    m->push_back(GaugeFamily("verdict_judge_head_info", "The judge head in use for new sessions", 1,
                             {{"id", current.id()}, {"sha256", current.sha256()}}));
    m->push_back(GaugeFamily("verdict_judge_threshold", "The judge head's threshold", current.threshold()));
    m->push_back(GaugeFamily("verdict_judge_loaded_timestamp_seconds", "When the judge head in use was loaded",
                             current.loaded_unix_seconds()));
  }
  m->push_back(CounterFamily("verdict_judge_reloads_total", "Judge heads swapped in without a restart", reloads));
  m->push_back(CounterFamily("verdict_judge_reloads_refused_total",
                             "Judge reloads refused (the old head kept serving)", refusals));
}

v1::JudgeInfo JudgeReloader::current() const {
  absl::MutexLock lock(&mu_);
  return current_;
}

int64_t JudgeReloader::reloads() const {
  absl::MutexLock lock(&mu_);
  return reloads_;
}

int64_t JudgeReloader::refusals() const {
  absl::MutexLock lock(&mu_);
  return refusals_;
}

}  // namespace verdict::services
