// SPDX-License-Identifier: Apache-2.0
#include "coordinator/event_loop.h"

#include <algorithm>
#include <utility>

namespace verdict::coordinator {

EventLoop::EventLoop() { thread_ = std::thread([this] { Run(); }); }

EventLoop::~EventLoop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  thread_.join();
}

void EventLoop::Post(std::function<void()> fn) {
  absl::MutexLock lock(&mu_);
  if (!stopping_) queue_.push_back(std::move(fn));
}

void EventLoop::PostAfter(absl::Duration delay, std::function<void()> fn) {
  absl::MutexLock lock(&mu_);
  if (!stopping_) timers_.push_back({absl::Now() + delay, std::move(fn)});
}

void EventLoop::Run() {
  while (true) {
    std::deque<std::function<void()>> ready;
    bool stopping;
    {
      absl::MutexLock lock(&mu_);
      auto wake = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stopping_ || !queue_.empty(); };
      absl::Time deadline = absl::InfiniteFuture();
      for (const Timer& t : timers_) deadline = std::min(deadline, t.when);
      mu_.AwaitWithDeadline(absl::Condition(&wake), deadline);
      ready.swap(queue_);
      const absl::Time now = absl::Now();
      for (auto it = timers_.begin(); it != timers_.end();) {
        if (it->when <= now) {
          ready.push_back(std::move(it->fn));
          it = timers_.erase(it);
        } else {
          ++it;
        }
      }
      stopping = stopping_;
    }
    for (auto& fn : ready) fn();
    if (stopping) {
      absl::MutexLock lock(&mu_);
      if (queue_.empty()) return;
    }
  }
}

}  // namespace verdict::coordinator
