// SPDX-License-Identifier: Apache-2.0
// Joins N asynchronous operations into one StatusCallback: `done` runs once, after the last one
// reported, with OK or the first error (e.g. opening a session on every target shard).
// Thread-safe: the parts may report from any thread.
#ifndef VERDICT_CLIENTS_STATUS_JOIN_H_
#define VERDICT_CLIENTS_STATUS_JOIN_H_

#include <memory>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "clients/worker_clients.h"

namespace verdict::clients {

class StatusJoin {
 public:
  static std::shared_ptr<StatusJoin> Create(int parts, StatusCallback done) {
    return std::shared_ptr<StatusJoin>(new StatusJoin(parts, std::move(done)));
  }
  // One part finished with `status` (already naming where it failed).
  void Report(const absl::Status& status) {
    StatusCallback finish;
    absl::Status result;
    {
      absl::MutexLock lock(&mu_);
      if (!status.ok() && status_.ok()) status_ = status;
      if (--remaining_ == 0) {
        finish = std::move(done_);
        result = status_;
      }
    }
    if (finish) finish(result);
  }

 private:
  StatusJoin(int parts, StatusCallback done) : remaining_(parts), done_(std::move(done)) {}
  absl::Mutex mu_;
  int remaining_ ABSL_GUARDED_BY(mu_);
  absl::Status status_ ABSL_GUARDED_BY(mu_);
  StatusCallback done_ ABSL_GUARDED_BY(mu_);
};

}  // namespace verdict::clients

#endif  // VERDICT_CLIENTS_STATUS_JOIN_H_
