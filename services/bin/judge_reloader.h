// SPDX-License-Identifier: Apache-2.0
// Live judge reload on the last shard: loads a head file (or gives the current head a new
// threshold), checks its format and that it was trained for this target, names it (file hash and
// threshold) and has the engine loop swap it in between verification steps. A head that does not
// load or belongs to another target is refused and the old one keeps serving. Used by the
// ReloadJudge RPC (the coordinator's cluster-wide request) and the shard's own admin endpoint.
#ifndef VERDICT_SERVICES_BIN_JUDGE_RELOADER_H_
#define VERDICT_SERVICES_BIN_JUDGE_RELOADER_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "judge/judge_head.h"
#include "services/admin/admin_server.h"
#include "verdict/v1/target_shard.pb.h"

namespace verdict::services {

class JudgeReloader {
 public:
  // Swaps a head in on the engine loop and reports how it went (TargetShardLoop::ReplaceJudgeHead).
  using Replace = std::function<void(std::shared_ptr<const judge::JudgeHead>, std::function<void(absl::Status)>)>;

  // `model_fingerprint` and `hidden_size` are the target's (heads must match them).
  JudgeReloader(std::string model_fingerprint, int64_t hidden_size, Replace replace)
      : model_fingerprint_(std::move(model_fingerprint)), hidden_size_(hidden_size), replace_(std::move(replace)) {}

  // Loads the head the shard starts with (not swapped: the shard is created with it) and names it.
  absl::StatusOr<std::shared_ptr<judge::JudgeHead>> LoadInitial(const std::string& path,
                                                                std::optional<float> threshold);

  // Loads `path` (empty: the current head's file) with `threshold` (unset: the file's) and swaps
  // it in; blocks until the engine loop has. Errors: kNotFound, kInvalidArgument (the file),
  // kFailedPrecondition (another target, or no current head to take a threshold for).
  absl::StatusOr<v1::JudgeInfo> Reload(const std::string& path, std::optional<float> threshold);

  // The head in use for new sessions (empty id: none).
  v1::JudgeInfo current() const;
  int64_t reloads() const;
  int64_t refusals() const;

 private:
  absl::StatusOr<std::shared_ptr<judge::JudgeHead>> Load(const std::string& path, std::optional<float> threshold,
                                                         v1::JudgeInfo* info) const;

  const std::string model_fingerprint_;
  const int64_t hidden_size_;
  const Replace replace_;
  absl::Mutex reload_mu_;  // one reload at a time
  mutable absl::Mutex mu_;
  v1::JudgeInfo current_ ABSL_GUARDED_BY(mu_);
  int64_t reloads_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t refusals_ ABSL_GUARDED_BY(mu_) = 0;
};

// The admin endpoint's form of Reload: a JSON body {"path": "...", "threshold": 0.5} (both
// optional), answered with the JudgeInfo as JSON or ErrorReply's {"error": "..."}.
AdminReply ReloadJudgeFromAdmin(JudgeReloader& reloader, const std::string& body);
// As AdminReply for a Reload's result (the coordinator's forwarded request answers the same way).
AdminReply JudgeReply(const absl::StatusOr<v1::JudgeInfo>& info);
// verdict_judge_* series: the head in use (id, sha256 as labels), its threshold and load time,
// reloads and refusals.
void AppendJudgeMetrics(const v1::JudgeInfo& current, int64_t reloads, int64_t refusals,
                        std::vector<prometheus::MetricFamily>* metrics);
inline void AppendJudgeMetrics(const JudgeReloader& r, std::vector<prometheus::MetricFamily>* metrics) {
  AppendJudgeMetrics(r.current(), r.reloads(), r.refusals(), metrics);
}

}  // namespace verdict::services

#endif  // VERDICT_SERVICES_BIN_JUDGE_RELOADER_H_
