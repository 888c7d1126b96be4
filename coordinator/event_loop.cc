// SPDX-License-Identifier: Apache-2.0
#include "coordinator/event_loop.h"

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

void EventLoop::Run() {
  while (true) {
    std::deque<std::function<void()>> ready;
    bool stopping;
    {
      absl::MutexLock lock(&mu_);
      auto wake = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stopping_ || !queue_.empty(); };
      mu_.Await(absl::Condition(&wake));
      ready.swap(queue_);
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
