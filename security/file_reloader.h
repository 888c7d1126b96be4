// SPDX-License-Identifier: Apache-2.0
// Re-reads a process's security files (certificates, keys, key files) on a timer and on request,
// without a restart: each registered reload says whether its files changed; a refusal (a broken new
// file, the old material kept) is logged once per distinct error, not at every tick.
#ifndef VERDICT_SECURITY_FILE_RELOADER_H_
#define VERDICT_SECURITY_FILE_RELOADER_H_

#include <cstdint>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

namespace verdict::security {

class FileReloader {
 public:
  using Reload = std::function<absl::StatusOr<bool>()>;  // true: changed and in use

  // `log_prefix` starts each log line ("verdict-shard").
  explicit FileReloader(std::string log_prefix) : log_prefix_(std::move(log_prefix)) {}
  ~FileReloader();  // stops the timer

  void Add(std::string name, Reload reload);
  // Starts checking every `interval` on a thread of its own (no-op without entries).
  void Start(absl::Duration interval);

  struct Outcome {
    std::string name;
    absl::StatusOr<bool> result;
  };
  // Checks every entry now (the admin request, and each tick).
  std::vector<Outcome> ReloadAll();

  int64_t changes() const;
  int64_t refusals() const;  // distinct refusals (a file that stays broken counts once)

 private:
  struct Entry {
    std::string name;
    Reload reload;
    std::string last_error;  // logged already
  };
  const std::string log_prefix_;
  mutable absl::Mutex mu_;
  std::vector<Entry> entries_ ABSL_GUARDED_BY(mu_);
  int64_t changes_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t refusals_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Notification stop_;
  std::thread thread_;
};

}  // namespace verdict::security

#endif  // VERDICT_SECURITY_FILE_RELOADER_H_
