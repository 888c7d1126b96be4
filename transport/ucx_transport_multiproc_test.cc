// SPDX-License-Identifier: Apache-2.0
// A sender in another process (ucx_transport_test_peer) connects, sends, and is SIGKILLed part-way
// through its stream of large frames; the receiver must carry on and serve a new sender. Every
// child is killed and reaped by PID, also when an assertion fails.
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "transport/testing/ucx_test_util.h"
#include "transport/ucx_transport.h"

extern char** environ;

namespace verdict::transport {
namespace {

using ::verdict::testing::StatusIs;
using testing::CheckFrame;
using testing::FrameCollector;
using testing::FrameId;
using testing::MakeFrame;

constexpr absl::Duration kWait = absl::Seconds(60);
constexpr int kPeerSender = 7;  // as in testing/ucx_test_peer.cc
constexpr int kLocalSender = 1;

// A child process, SIGKILLed and reaped when this goes out of scope.
class ChildProcess {
 public:
  explicit ChildProcess(const std::vector<std::string>& args) {
    std::vector<char*> argv;
    for (const std::string& arg : args) argv.push_back(const_cast<char*>(arg.c_str()));
    argv.push_back(nullptr);
    // posix_spawn, not fork: this process has UCX and gtest threads running.
    if (posix_spawn(&pid_, argv[0], nullptr, nullptr, argv.data(), environ) != 0) pid_ = -1;
  }
  ~ChildProcess() { KillAndReap(); }
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  bool running() const { return pid_ > 0; }

  // Returns the wait status.
  int KillAndReap() {
    if (pid_ <= 0) return status_;
    kill(pid_, SIGKILL);
    while (waitpid(pid_, &status_, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
    return status_;
  }

 private:
  pid_t pid_ = -1;
  int status_ = 0;
};

int CountFrom(const std::vector<absl::StatusOr<Frame>>& items, int sender) {
  int count = 0;
  for (const auto& item : items) {
    if (!item.ok()) continue;
    absl::StatusOr<FrameId> id = CheckFrame(*item);
    if (id.ok() && id->sender == sender) ++count;
  }
  return count;
}

class UcxMultiprocessTest : public ::testing::TestWithParam<std::string> {};

TEST_P(UcxMultiprocessTest, KilledSenderDoesNotTakeTheReceiverDown) {
  const UcxOptions options = testing::OptionsByName(GetParam());
  // Kill the peer right after its first (small) frame, i.e. as its first large frame starts, and
  // after one and after three large frames.
  for (int large_frames_before_kill : {0, 1, 3}) {
    SCOPED_TRACE(large_frames_before_kill);
    FrameCollector collector;
    auto receiver_or = ListenUcx(options, "127.0.0.1:0", collector.Handler());
    ASSERT_OK(receiver_or.status());
    auto receiver = *std::move(receiver_or);
    ChildProcess peer({VERDICT_BINARY_DIR "/bin/ucx_transport_test_peer", receiver->address(), GetParam(),
                       std::to_string(16 << 20), "40"});
    ASSERT_TRUE(peer.running());
    ASSERT_TRUE(collector.WaitUntil(
        [&](const auto& items) { return CountFrom(items, kPeerSender) >= 1 + large_frames_before_kill; }, kWait));
    const int wait_status = peer.KillAndReap();
    EXPECT_TRUE(WIFSIGNALED(wait_status) && WTERMSIG(wait_status) == SIGKILL) << "peer exited early: " << wait_status;

    // A new sender is served.
    ASSERT_OK_AND_ASSIGN(auto sender, ConnectUcx(options, receiver->address()));
    for (int i = 0; i < 3; ++i) ASSERT_OK(sender->Send(MakeFrame(kLocalSender, i, 1 << 20)));
    ASSERT_TRUE(collector.WaitUntil([](const auto& items) { return CountFrom(items, kLocalSender) == 3; }, kWait));

    // What the dead peer left: intact frames in order, and at most a kUnavailable for the frame
    // it was sending when it died.
    int next_peer_frame = 0, errors = 0;
    for (const auto& item : collector.Items()) {
      if (!item.ok()) {
        EXPECT_THAT(item, StatusIs(absl::StatusCode::kUnavailable));
        ++errors;
        continue;
      }
      ASSERT_OK_AND_ASSIGN(FrameId id, CheckFrame(*item));
      if (id.sender == kPeerSender) {
        EXPECT_EQ(id.index, next_peer_frame++);
      }
    }
    EXPECT_LE(errors, 1);
    std::printf("[%s] peer killed after %d frames: receiver got %d frames and %d errors from it\n", GetParam().c_str(),
                1 + large_frames_before_kill, next_peer_frame, errors);
  }
}

TEST_P(UcxMultiprocessTest, SenderInAnotherProcessDeliversInOrder) {
  const UcxOptions options = testing::OptionsByName(GetParam());
  FrameCollector collector;
  auto receiver_or = ListenUcx(options, "127.0.0.1:0", collector.Handler());
  ASSERT_OK(receiver_or.status());
  auto receiver = *std::move(receiver_or);
  ChildProcess peer({VERDICT_BINARY_DIR "/bin/ucx_transport_test_peer", receiver->address(), GetParam(),
                     std::to_string(4 << 20), "5"});
  ASSERT_TRUE(peer.running());
  ASSERT_TRUE(collector.WaitUntil([](const auto& items) { return items.size() >= 6; }, kWait));
  const auto items = collector.Items();
  for (int i = 0; i < 6; ++i) {
    ASSERT_OK(items[i].status());
    ASSERT_OK_AND_ASSIGN(FrameId id, CheckFrame(*items[i]));
    EXPECT_EQ(id.sender, kPeerSender);
    EXPECT_EQ(id.index, i);
  }
}

// "shm" runs without peer failure detection: it pins down that a killed sender cannot take the
// receiver down there either (UCX 1.13: the cma read from the dead process fails cleanly).
INSTANTIATE_TEST_SUITE_P(Transports, UcxMultiprocessTest, ::testing::Values("tcp", "shm"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param == "tcp" ? std::string("Tcp") : std::string("SharedMemory");
                         });

}  // namespace
}  // namespace verdict::transport
