// SPDX-License-Identifier: Apache-2.0
#include "security/file_reloader.h"

#include <cstdio>

namespace verdict::security {

FileReloader::~FileReloader() {
  stop_.Notify();
  if (thread_.joinable()) thread_.join();
}

void FileReloader::Add(std::string name, Reload reload) {
  absl::MutexLock lock(&mu_);
  entries_.push_back({std::move(name), std::move(reload), {}});
}

void FileReloader::Start(absl::Duration interval) {
  {
    absl::MutexLock lock(&mu_);
    if (entries_.empty() || thread_.joinable()) return;
  }
  thread_ = std::thread([this, interval] {
    while (!stop_.WaitForNotificationWithTimeout(interval)) ReloadAll();
  });
}

std::vector<FileReloader::Outcome> FileReloader::ReloadAll() {
  // One check at a time (the timer and an admin request may meet); the reloads are quick.
  absl::MutexLock lock(&mu_);
  std::vector<Outcome> outcomes;
  for (Entry& e : entries_) {
    absl::StatusOr<bool> r = e.reload();
    if (r.ok()) {
      if (*r) {
        ++changes_;
        std::fprintf(stderr, "%s: reloaded %s\n", log_prefix_.c_str(), e.name.c_str());
      }
      e.last_error.clear();
    } else {
      if (std::string message(r.status().message()); message != e.last_error) {
        ++refusals_;
        std::fprintf(stderr, "%s: %s\n", log_prefix_.c_str(), message.c_str());
        e.last_error = std::move(message);
      }
    }
    outcomes.push_back({e.name, std::move(r)});
  }
  return outcomes;
}

int64_t FileReloader::changes() const {
  absl::MutexLock lock(&mu_);
  return changes_;
}

int64_t FileReloader::refusals() const {
  absl::MutexLock lock(&mu_);
  return refusals_;
}

}  // namespace verdict::security
