// SPDX-License-Identifier: Apache-2.0
#include "transport/in_process_transport.h"

#include <atomic>
#include <deque>
#include <string>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"

namespace verdict::transport {
namespace {

// The state both halves share; it lives until the later of the two is destroyed.
class Channel {
 public:
  Channel(std::string address, const InProcessOptions& options) : address_(std::move(address)), options_(options) {}

  const std::string& address() const { return address_; }

  absl::Status Push(const Frame& frame) {
    const uint64_t bytes = uint64_t{frame.header.size()} + frame.payload.size();
    if (bytes > options_.max_frame_bytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("frame of ", bytes, " bytes exceeds the limit of ", options_.max_frame_bytes));
    }
    Frame copy = frame;  // copied before waiting: the caller may reuse `frame` once Push returns
    absl::MutexLock lock(&mu_);
    const auto space_or_closed = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
      return closed_ || static_cast<int64_t>(queue_.size()) < options_.max_queued_frames;
    };
    if (!mu_.AwaitWithTimeout(absl::Condition(&space_or_closed), options_.send_timeout)) {
      return absl::DeadlineExceededError(
          absl::StrCat("in-process receiver ", address_, " did not take a frame within ",
                       absl::FormatDuration(options_.send_timeout)));
    }
    if (closed_) return absl::UnavailableError(absl::StrCat("in-process receiver ", address_, " is closed"));
    queue_.push_back(std::move(copy));
    return absl::OkStatus();
  }

  // Blocks until a frame is queued (true, frame moved to `out`) or the channel closes (false).
  bool Pop(Frame* out) {
    absl::MutexLock lock(&mu_);
    const auto ready = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return closed_ || !queue_.empty(); };
    mu_.Await(absl::Condition(&ready));
    if (closed_) return false;
    *out = std::move(queue_.front());
    queue_.pop_front();
    return true;
  }

  void Close() {
    absl::MutexLock lock(&mu_);
    closed_ = true;
    queue_.clear();
  }

 private:
  const std::string address_;
  const InProcessOptions options_;
  absl::Mutex mu_;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<Frame> queue_ ABSL_GUARDED_BY(mu_);
};

class InProcessSender final : public ActivationSender {
 public:
  explicit InProcessSender(std::shared_ptr<Channel> channel) : channel_(std::move(channel)) {}
  absl::Status Send(const Frame& frame) override { return channel_->Push(frame); }
  std::string peer() const override { return channel_->address(); }

 private:
  std::shared_ptr<Channel> channel_;
};

class InProcessReceiver final : public ActivationReceiver {
 public:
  InProcessReceiver(std::shared_ptr<Channel> channel, FrameHandler handler)
      : channel_(std::move(channel)), handler_(std::move(handler)), thread_([this] { Run(); }) {}

  // Closing wakes the thread; after join no handler call can happen.
  ~InProcessReceiver() override {
    channel_->Close();
    thread_.join();
  }

  std::string address() const override { return channel_->address(); }

 private:
  void Run() {
    Frame frame;
    while (channel_->Pop(&frame)) handler_(std::move(frame));
  }

  std::shared_ptr<Channel> channel_;
  FrameHandler handler_;
  std::thread thread_;  // last member: starts after the others are initialized
};

}  // namespace

InProcessChannel MakeInProcessChannel(FrameHandler handler, const InProcessOptions& options) {
  static std::atomic<uint64_t> next_id{0};
  auto channel = std::make_shared<Channel>(absl::StrCat("inprocess:", next_id++), options);
  InProcessChannel result;
  result.sender = std::make_unique<InProcessSender>(channel);
  result.receiver = std::make_unique<InProcessReceiver>(channel, std::move(handler));
  return result;
}

}  // namespace verdict::transport
