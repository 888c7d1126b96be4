// SPDX-License-Identifier: Apache-2.0
#include "transport/in_process_transport.h"

#include <atomic>
#include <thread>

#include "absl/synchronization/notification.h"
#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "transport/testing/ucx_test_util.h"

namespace verdict::transport {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;
using ::verdict::testing::StatusIs;
using testing::CheckFrame;
using testing::FrameCollector;
using testing::MakeFrame;

constexpr absl::Duration kWait = absl::Seconds(30);

TEST(InProcessTransportTest, DeliversFramesInOrderOnTheReceiverThread) {
  FrameCollector collector;
  std::atomic<bool> on_caller_thread{false};
  const std::thread::id caller = std::this_thread::get_id();
  InProcessChannel channel = MakeInProcessChannel([&](absl::StatusOr<Frame> frame) {
    if (std::this_thread::get_id() == caller) on_caller_thread = true;
    collector.Handler()(std::move(frame));
  });
  EXPECT_THAT(channel.sender->peer(), StartsWith("inprocess:"));
  EXPECT_EQ(channel.sender->peer(), channel.receiver->address());
  constexpr int kFrames = 500;
  for (int i = 0; i < kFrames; ++i) ASSERT_OK(channel.sender->Send(MakeFrame(1, i, i % 7 * 1000)));
  ASSERT_TRUE(collector.WaitForCount(kFrames, kWait));
  const auto items = collector.Items();
  for (int i = 0; i < kFrames; ++i) {
    ASSERT_OK(items[i].status());
    ASSERT_OK_AND_ASSIGN(testing::FrameId id, CheckFrame(*items[i]));
    EXPECT_EQ(id.index, i);
  }
  EXPECT_FALSE(on_caller_thread);
}

TEST(InProcessTransportTest, LargeFrameArrivesIntact) {
  FrameCollector collector;
  InProcessChannel channel = MakeInProcessChannel(collector.Handler());
  ASSERT_OK(channel.sender->Send(MakeFrame(1, 0, size_t{64} << 20, 4096)));
  ASSERT_TRUE(collector.WaitForCount(1, kWait));
  ASSERT_OK(collector.Items()[0].status());
  EXPECT_OK(CheckFrame(*collector.Items()[0]));
}

TEST(InProcessTransportTest, RefusesFramesOverTheLimit) {
  FrameCollector collector;
  InProcessChannel channel = MakeInProcessChannel(collector.Handler(), {.max_frame_bytes = 100});
  EXPECT_THAT(channel.sender->Send(Frame{"h", std::string(100, 'x')}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("exceeds")));
  EXPECT_OK(channel.sender->Send(Frame{"h", std::string(99, 'x')}));
  ASSERT_TRUE(collector.WaitForCount(1, kWait));
}

TEST(InProcessTransportTest, ClosingTheReceiverMakesSendUnavailable) {
  FrameCollector collector;
  InProcessChannel channel = MakeInProcessChannel(collector.Handler());
  ASSERT_OK(channel.sender->Send(MakeFrame(1, 0, 10)));
  ASSERT_TRUE(collector.WaitForCount(1, kWait));
  const std::string address = channel.receiver->address();
  channel.receiver.reset();
  EXPECT_THAT(channel.sender->Send(MakeFrame(1, 1, 10)),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr(address)));
}

TEST(InProcessTransportTest, ClosingTheReceiverReleasesASenderBlockedOnAFullQueue) {
  absl::Notification release_handler;
  std::atomic<int> calls{0};
  InProcessChannel channel = MakeInProcessChannel(
      [&](absl::StatusOr<Frame>) {
        ++calls;
        release_handler.WaitForNotificationWithTimeout(kWait);
      },
      {.max_queued_frames = 2});
  // One frame sits in the blocked handler, two fill the queue; the fourth Send has to wait.
  absl::Status blocked_send;
  std::thread sender([&] {
    for (int i = 0; i < 4 && blocked_send.ok(); ++i) blocked_send = channel.sender->Send(MakeFrame(1, i, 10));
  });
  // Destroying the receiver closes the channel first, which fails the waiting Send, then joins the
  // thread once the handler returns.
  std::thread closer([&] { channel.receiver.reset(); });
  release_handler.Notify();
  closer.join();
  sender.join();
  // The blocked Send was released by the close (or got in before it), not by its 60 s timeout.
  EXPECT_TRUE(blocked_send.ok() || blocked_send.code() == absl::StatusCode::kUnavailable) << blocked_send;
  const int calls_at_close = calls;
  // Whether the fourth Send got in before the close depends on timing; once closed it cannot.
  EXPECT_THAT(channel.sender->Send(MakeFrame(1, 9, 10)), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_EQ(calls, calls_at_close);
  EXPECT_LE(calls, 4);
}

TEST(InProcessTransportTest, SendTimesOutWhenTheHandlerDoesNotKeepUp) {
  absl::Notification release_handler;
  InProcessChannel channel = MakeInProcessChannel(
      [&](absl::StatusOr<Frame>) { release_handler.WaitForNotificationWithTimeout(kWait); },
      {.max_queued_frames = 1, .send_timeout = absl::Milliseconds(50)});
  absl::Status status;
  // Frame 0 may sit in the handler, frame 1 in the queue; by frame 3 a Send must time out.
  for (int i = 0; i < 4 && status.ok(); ++i) status = channel.sender->Send(MakeFrame(1, i, 10));
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kDeadlineExceeded));
  release_handler.Notify();
}

TEST(InProcessTransportTest, DestroyingTheSenderFirstIsFine) {
  FrameCollector collector;
  InProcessChannel channel = MakeInProcessChannel(collector.Handler());
  ASSERT_OK(channel.sender->Send(MakeFrame(1, 0, 10)));
  channel.sender.reset();
  ASSERT_TRUE(collector.WaitForCount(1, kWait));
  channel.receiver.reset();
}

}  // namespace
}  // namespace verdict::transport
