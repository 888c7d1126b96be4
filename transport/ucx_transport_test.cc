// SPDX-License-Identifier: Apache-2.0
// UCX transport in one process: receivers and senders on their own UCP workers, on 127.0.0.1.
// Data-path tests run under every option set (tcp; shared memory without peer failure detection;
// shared memory listed with detection on, which UCX runs over tcp). Fault tests use tcp, the
// production setting. Every wait is bounded.
#include "transport/ucx_transport.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "transport/wire_format.h"
#include "transport/testing/ucx_test_util.h"

namespace verdict::transport {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;
using ::verdict::testing::StatusIs;
using testing::CheckFrame;
using testing::FrameCollector;
using testing::FrameId;
using testing::MakeFrame;

constexpr absl::Duration kWait = absl::Seconds(60);
constexpr size_t k64MiB = size_t{64} << 20;

std::unique_ptr<ActivationReceiver> MustListen(const UcxOptions& options, FrameCollector& collector) {
  absl::StatusOr<std::unique_ptr<ActivationReceiver>> receiver = ListenUcx(options, "127.0.0.1:0", collector.Handler());
  EXPECT_OK(receiver.status());
  return receiver.ok() ? *std::move(receiver) : nullptr;
}

// Checks that `items` are exactly frames 0..count-1 of `sender`, in order, intact.
void ExpectFramesInOrder(const std::vector<absl::StatusOr<Frame>>& items, int sender, int count) {
  int next = 0;
  for (const auto& item : items) {
    ASSERT_OK(item.status());
    ASSERT_OK_AND_ASSIGN(FrameId id, CheckFrame(*item));
    if (id.sender != sender) continue;
    ASSERT_EQ(id.index, next) << "sender " << sender;
    ++next;
  }
  EXPECT_EQ(next, count) << "sender " << sender;
}

int PortOf(const std::string& address) {
  int port = 0;
  EXPECT_TRUE(absl::SimpleAtoi(address.substr(address.rfind(':') + 1), &port)) << address;
  return port;
}

// A port nothing listens on: bound by us a moment ago, then released.
int UnusedPort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
  socklen_t length = sizeof(address);
  getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  close(fd);
  return ntohs(address.sin_port);
}

// Sends until Send fails (bounded), returning the failure.
absl::Status SendUntilFailure(ActivationSender& sender, size_t payload_bytes) {
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  for (int i = 0; i < 10000 && absl::Now() < deadline; ++i) {
    absl::Status status = sender.Send(MakeFrame(9, i, payload_bytes));
    if (!status.ok()) return status;
  }
  return absl::OkStatus();
}

// ----------------------------------------------------------------------------- data path

class UcxDataPathTest : public ::testing::TestWithParam<std::string> {
 protected:
  UcxOptions options() const { return testing::OptionsByName(GetParam()); }
};

TEST_P(UcxDataPathTest, EndpointUsesTheTransportsTheOptionsPromise) {
  FrameCollector collector;
  auto receiver = MustListen(options(), collector);
  ASSERT_NE(receiver, nullptr);
  ASSERT_OK_AND_ASSIGN(auto sender, ConnectUcx(options(), receiver->address()));
  const std::string lanes = internal::DescribeUcxEndpointForTesting(*sender);
  std::printf("[%s] sender endpoint:\n%s", GetParam().c_str(), lanes.c_str());
  if (options().peer_failure_detection) {
    // Peer failure detection rules shared memory out, whatever the TLS list says.
    EXPECT_THAT(lanes, AllOf(HasSubstr("tcp/lo"), Not(HasSubstr("sysv/")), Not(HasSubstr("posix/"))));
  } else {
    EXPECT_TRUE(lanes.find("sysv/") != std::string::npos || lanes.find("posix/") != std::string::npos) << lanes;
  }
}

TEST_P(UcxDataPathTest, DeliversFramesInOrderAcrossEagerAndRendezvousSizes) {
  FrameCollector collector;
  auto receiver = MustListen(options(), collector);
  ASSERT_NE(receiver, nullptr);
  ASSERT_OK_AND_ASSIGN(auto sender, ConnectUcx(options(), receiver->address()));
  EXPECT_EQ(sender->peer(), receiver->address());
  // Empty, tiny, around the eager/rendezvous switch (~8-20 KiB), and well into rendezvous.
  const std::vector<size_t> sizes = {0, 1, 100, 8000, 8300, 20000, 30000, 100000, size_t{1} << 20};
  constexpr int kFrames = 300;
  for (int i = 0; i < kFrames; ++i) ASSERT_OK(sender->Send(MakeFrame(1, i, sizes[i % sizes.size()])));
  ASSERT_TRUE(collector.WaitForCount(kFrames, kWait)) << collector.count();
  ExpectFramesInOrder(collector.Items(), 1, kFrames);
}

TEST_P(UcxDataPathTest, EmptyFrameArrives) {
  FrameCollector collector;
  auto receiver = MustListen(options(), collector);
  ASSERT_NE(receiver, nullptr);
  ASSERT_OK_AND_ASSIGN(auto sender, ConnectUcx(options(), receiver->address()));
  ASSERT_OK(sender->Send(Frame{}));
  ASSERT_TRUE(collector.WaitForCount(1, kWait));
  ASSERT_OK(collector.Items()[0].status());
  EXPECT_TRUE(collector.Items()[0]->header.empty());
  EXPECT_TRUE(collector.Items()[0]->payload.empty());
}

TEST_P(UcxDataPathTest, HeaderLargerThanTheActiveMessageHeaderLimitArrivesIntact) {
  FrameCollector collector;
  auto receiver = MustListen(options(), collector);
  ASSERT_NE(receiver, nullptr);
  ASSERT_OK_AND_ASSIGN(auto sender, ConnectUcx(options(), receiver->address()));
  // 64 KiB of header is far above UCX's ~8 KiB AM header limit: it travels in the data, eagerly
  // with a small payload and by rendezvous with a large one.
  ASSERT_OK(sender->Send(MakeFrame(1, 0, 100, 64 << 10)));
  ASSERT_OK(sender->Send(MakeFrame(1, 1, 4 << 20, 64 << 10)));
  ASSERT_OK(sender->Send(MakeFrame(1, 2, 100, 100)));
  ASSERT_TRUE(collector.WaitForCount(3, kWait));
  ExpectFramesInOrder(collector.Items(), 1, 3);
}

TEST_P(UcxDataPathTest, SixtyFourMiBFramesArriveIntact) {
  FrameCollector collector;
  auto receiver = MustListen(options(), collector);
  ASSERT_NE(receiver, nullptr);
  ASSERT_OK_AND_ASSIGN(auto sender, ConnectUcx(options(), receiver->address()));
  constexpr int kFrames = 3;
  std::vector<Frame> frames;
  for (int i = 0; i < kFrames; ++i) frames.push_back(MakeFrame(1, i, k64MiB, 512));
  const absl::Time start = absl::Now();
  for (const Frame& frame : frames) ASSERT_OK(sender->Send(frame));
  ASSERT_TRUE(collector.WaitForCount(kFrames, kWait));
  const absl::Duration elapsed = absl::Now() - start;
  // Reported, not asserted: the machine is shared.
  std::printf("[%s] %d x 64 MiB frames in %s: %.2f GB/s (send to handler)\n", GetParam().c_str(), kFrames,
              absl::FormatDuration(elapsed).c_str(),
              kFrames * static_cast<double>(k64MiB) / absl::ToDoubleSeconds(elapsed) / 1e9);
  ExpectFramesInOrder(collector.Items(), 1, kFrames);
}

TEST_P(UcxDataPathTest, SeveralSendersToOneReceiverKeepTheirOwnOrder) {
  FrameCollector collector;
  auto receiver = MustListen(options(), collector);
  ASSERT_NE(receiver, nullptr);
  constexpr int kSenders = 4;
  constexpr int kFrames = 100;
  std::vector<std::thread> threads;
  std::vector<absl::Status> results(kSenders);
  for (int s = 0; s < kSenders; ++s) {
    threads.emplace_back([&, s] {
      absl::StatusOr<std::unique_ptr<ActivationSender>> sender = ConnectUcx(options(), receiver->address());
      if (!sender.ok()) {
        results[s] = sender.status();
        return;
      }
      for (int i = 0; i < kFrames && results[s].ok(); ++i) {
        results[s] = (*sender)->Send(MakeFrame(s, i, (i * 7919 + s * 104729) % (300 << 10)));
      }
    });
  }
  for (auto& thread : threads) thread.join();
  for (const absl::Status& result : results) ASSERT_OK(result);
  ASSERT_TRUE(collector.WaitForCount(kSenders * kFrames, kWait)) << collector.count();
  const auto items = collector.Items();
  EXPECT_EQ(items.size(), size_t{kSenders * kFrames});
  for (int s = 0; s < kSenders; ++s) ExpectFramesInOrder(items, s, kFrames);
}

TEST_P(UcxDataPathTest, SenderThatClosesBetweenFramesProducesNoHandlerCall) {
  FrameCollector collector;
  auto receiver = MustListen(options(), collector);
  ASSERT_NE(receiver, nullptr);
  {
    ASSERT_OK_AND_ASSIGN(auto first, ConnectUcx(options(), receiver->address()));
    for (int i = 0; i < 3; ++i) ASSERT_OK(first->Send(MakeFrame(1, i, 1 << 20)));
  }
  ASSERT_OK_AND_ASSIGN(auto second, ConnectUcx(options(), receiver->address()));
  ASSERT_OK(second->Send(MakeFrame(2, 0, 10)));
  ASSERT_TRUE(collector.WaitForCount(4, kWait));
  const auto items = collector.Items();
  ExpectFramesInOrder(items, 1, 3);
  ExpectFramesInOrder(items, 2, 1);
}

TEST_P(UcxDataPathTest, SenderWhosePeerIsGoneGetsUnavailableNamingTheAddress) {
  // Without peer failure detection only send_timeout notices; keep it short.
  UcxOptions options = this->options();
  options.send_timeout = absl::Seconds(2);
  for (size_t payload_bytes : {size_t{100}, size_t{8} << 20}) {
    SCOPED_TRACE(payload_bytes);
    FrameCollector collector;
    auto receiver = MustListen(options, collector);
    ASSERT_NE(receiver, nullptr);
    const std::string address = receiver->address();
    ASSERT_OK_AND_ASSIGN(auto sender, ConnectUcx(options, address));
    ASSERT_OK(sender->Send(MakeFrame(9, 0, payload_bytes)));
    receiver.reset();
    const absl::Time start = absl::Now();
    EXPECT_THAT(SendUntilFailure(*sender, payload_bytes),
                StatusIs(absl::StatusCode::kUnavailable, HasSubstr(address)));
    EXPECT_LT(absl::Now() - start, absl::Seconds(30));
    // And it stays failed.
    EXPECT_THAT(sender->Send(MakeFrame(9, 0, 10)), StatusIs(absl::StatusCode::kUnavailable, HasSubstr(address)));
  }
}

INSTANTIATE_TEST_SUITE_P(Transports, UcxDataPathTest, ::testing::Values("tcp", "shm", "shm+peer"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param == "tcp" ? std::string("Tcp")
                                  : info.param == "shm" ? std::string("SharedMemory")
                                                        : std::string("SharedMemoryListedWithPeerDetection");
                         });

// ----------------------------------------------------------------------------- framing errors

std::string Prefix(uint64_t header_bytes, uint64_t payload_bytes, uint64_t sequence = 0) {
  std::string out;
  internal::AppendFramePrefix({.flags = 0, .sequence = sequence, .header_bytes = header_bytes,
                               .payload_bytes = payload_bytes},
                              &out);
  return out;
}

TEST(UcxTransportTest, FramesArrivingOutOfSequenceAreDeliveredInSequenceOrder) {
  // UCP does not promise ordered active messages; a sender that got ahead (here by hand) must not
  // reorder what the handler sees. Sequence 2 is large (rendezvous), 1 and 0 small (eager).
  FrameCollector collector;
  auto receiver = MustListen(testing::TcpOptions(), collector);
  ASSERT_NE(receiver, nullptr);
  ASSERT_OK_AND_ASSIGN(auto sender, ConnectUcx(testing::TcpOptions(), receiver->address()));
  for (int sequence : {2, 1, 0}) {
    const Frame frame = MakeFrame(1, sequence, sequence == 2 ? 1 << 20 : 100);
    ASSERT_OK(internal::SendRawMessageForTesting(
        *sender, Prefix(frame.header.size(), frame.payload.size(), sequence) + frame.header, frame.payload,
        /*stamp_sequence=*/false));
  }
  ASSERT_TRUE(collector.WaitForCount(3, kWait));
  ExpectFramesInOrder(collector.Items(), 1, 3);
}

TEST(UcxTransportTest, MalformedMessagesReachTheHandlerAsDataLossAndTheReceiverKeepsWorking) {
  UcxOptions options = testing::TcpOptions();
  options.max_frame_bytes = 1 << 20;
  FrameCollector collector;
  auto receiver = MustListen(options, collector);
  ASSERT_NE(receiver, nullptr);
  // The sender's own limit is the default, so it can send a frame the receiver refuses.
  ASSERT_OK_AND_ASSIGN(auto sender, ConnectUcx(testing::TcpOptions(), receiver->address()));
  ASSERT_OK_AND_ASSIGN(auto bystander, ConnectUcx(testing::TcpOptions(), receiver->address()));

  std::string bad_magic = Prefix(0, 4);
  bad_magic[0] = 'X';
  std::string bad_version = Prefix(0, 4);
  bad_version[4] = 9;
  struct Case {
    const char* name;
    std::string am_header;
    std::string data;
    bool stamp_sequence;
    const char* message;
  };
  const std::vector<Case> cases = {
      {"shorter than a prefix", "garbage", "data", false, "too short"},
      {"wrong magic", bad_magic, "data", false, "magic"},
      {"wrong version", bad_version, "data", false, "version"},
      {"header length off", Prefix(5, 4) + "abc", "data", true, "do not add up"},
      {"payload length off", Prefix(0, 100), std::string(50, 'x'), true, "do not add up"},
      // Large enough to go by rendezvous: refused before any data is pulled.
      {"rendezvous payload length off", Prefix(0, 1 << 19), std::string(1 << 20, 'x'), true, "do not add up"},
      {"over the receiver's limit", Prefix(0, 2 << 20), std::string(2 << 20, 'x'), true, "exceeds the limit"},
      {"sequence number already used", Prefix(0, 4, /*sequence=*/0), "data", false, "unexpected frame sequence"},
  };
  ASSERT_OK(sender->Send(MakeFrame(1, 0, 10)));  // uses sequence 0
  ASSERT_TRUE(collector.WaitForCount(1, kWait));
  size_t expected = 1;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    ASSERT_OK(internal::SendRawMessageForTesting(*sender, c.am_header, c.data, c.stamp_sequence));
    ++expected;
    ASSERT_TRUE(collector.WaitForCount(expected, kWait));
    EXPECT_THAT(collector.Items().back(), StatusIs(absl::StatusCode::kDataLoss, HasSubstr(c.message)));
  }
  // A well-formed frame over the limit, sent through Send: refused, and it keeps its place in the order.
  ASSERT_OK(sender->Send(MakeFrame(1, 1, 2 << 20)));
  ASSERT_TRUE(collector.WaitForCount(++expected, kWait));
  EXPECT_THAT(collector.Items().back(), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("exceeds the limit")));

  // The same sender and another one still get through.
  ASSERT_OK(sender->Send(MakeFrame(1, 2, 300 << 10)));
  ASSERT_OK(bystander->Send(MakeFrame(2, 0, 300 << 10)));
  ASSERT_TRUE(collector.WaitForCount(expected + 2, kWait));
  const auto items = collector.Items();
  for (size_t i = expected; i < items.size(); ++i) {
    ASSERT_OK(items[i].status());
    EXPECT_OK(CheckFrame(*items[i]));
  }
}

// ----------------------------------------------------------------------------- errors

TEST(UcxTransportTest, SenderRefusesFramesOverItsLimitAndStaysUsable) {
  FrameCollector collector;
  auto receiver = MustListen(testing::TcpOptions(), collector);
  ASSERT_NE(receiver, nullptr);
  UcxOptions options = testing::TcpOptions();
  options.max_frame_bytes = 1000;
  ASSERT_OK_AND_ASSIGN(auto sender, ConnectUcx(options, receiver->address()));
  EXPECT_THAT(sender->Send(Frame{std::string(500, 'h'), std::string(501, 'p')}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("exceeds")));
  ASSERT_OK(sender->Send(MakeFrame(1, 0, 900)));
  ASSERT_TRUE(collector.WaitForCount(1, kWait));
  ExpectFramesInOrder(collector.Items(), 1, 1);
}

TEST(UcxTransportTest, BadAddressesAndOptionsAreInvalidArgument) {
  FrameCollector collector;
  for (const char* address : {"nohostport", "127.0.0.1", ":80", "127.0.0.1:http", "127.0.0.1:70000", "127.0.0.1:-1"}) {
    SCOPED_TRACE(address);
    EXPECT_THAT(ListenUcx(testing::TcpOptions(), address, collector.Handler()),
                StatusIs(absl::StatusCode::kInvalidArgument));
    EXPECT_THAT(ConnectUcx(testing::TcpOptions(), address), StatusIs(absl::StatusCode::kInvalidArgument));
  }
  // A well-formed name that does not resolve (yet: a peer's DNS record may appear later) is
  // kUnavailable, which callers retry, and the message names the host.
  EXPECT_THAT(ConnectUcx(testing::TcpOptions(), "no.such.host.invalid:80"),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("cannot resolve no.such.host.invalid")));
  EXPECT_THAT(ConnectUcx(testing::TcpOptions(), "127.0.0.1:0"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ListenUcx(testing::TcpOptions(), "127.0.0.1:0", nullptr), StatusIs(absl::StatusCode::kInvalidArgument));
  UcxOptions too_big = testing::TcpOptions();
  too_big.max_frame_bytes = kMaxFrameBytes + 1;
  EXPECT_THAT(ListenUcx(too_big, "127.0.0.1:0", collector.Handler()), StatusIs(absl::StatusCode::kInvalidArgument));
  UcxOptions no_time = testing::TcpOptions();
  no_time.send_timeout = absl::ZeroDuration();
  EXPECT_THAT(ConnectUcx(no_time, "127.0.0.1:1"), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(UcxTransportTest, ListeningOnATakenPortIsUnavailable) {
  FrameCollector collector;
  auto receiver = MustListen(testing::TcpOptions(), collector);
  ASSERT_NE(receiver, nullptr);
  EXPECT_THAT(ListenUcx(testing::TcpOptions(), receiver->address(), collector.Handler()),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr(receiver->address())));
}

TEST(UcxTransportTest, ConnectingWhereNothingListensIsUnavailableAndNamesTheAddress) {
  const std::string address = absl::StrCat("127.0.0.1:", UnusedPort());
  UcxOptions options = testing::TcpOptions();
  options.connect_timeout = absl::Seconds(5);
  const absl::Time start = absl::Now();
  EXPECT_THAT(ConnectUcx(options, address), StatusIs(absl::StatusCode::kUnavailable, HasSubstr(address)));
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
}

TEST(UcxTransportTest, ConnectionsBeyondTheReceiversLimitAreRejected) {
  UcxOptions options = testing::TcpOptions();
  options.max_connections = 1;
  FrameCollector collector;
  auto receiver = MustListen(options, collector);
  ASSERT_NE(receiver, nullptr);
  ASSERT_OK_AND_ASSIGN(auto first, ConnectUcx(testing::TcpOptions(), receiver->address()));
  EXPECT_THAT(ConnectUcx(testing::TcpOptions(), receiver->address()),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("rejected")));
  ASSERT_OK(first->Send(MakeFrame(1, 0, 10)));
  ASSERT_TRUE(collector.WaitForCount(1, kWait));
}

TEST(UcxTransportTest, SendTimesOutAsUnavailableWhenTheReceiverStopsTakingData) {
  // The handler blocks, so the receiver's thread stops progressing; a rendezvous frame behind it
  // cannot complete. (Without peer failure detection this is how a dead receiver shows.)
  absl::Notification release;
  std::atomic<int> calls{0};
  auto receiver_or = ListenUcx(testing::TcpOptions(), "127.0.0.1:0", [&](absl::StatusOr<Frame>) {
    ++calls;
    release.WaitForNotificationWithTimeout(kWait);
  });
  ASSERT_OK(receiver_or.status());
  auto receiver = *std::move(receiver_or);
  UcxOptions options = testing::TcpOptions();
  options.send_timeout = absl::Milliseconds(500);
  ASSERT_OK_AND_ASSIGN(auto sender, ConnectUcx(options, receiver->address()));
  ASSERT_OK(sender->Send(MakeFrame(1, 0, 10)));
  const absl::Time start = absl::Now();
  const absl::Status status = SendUntilFailure(*sender, 4 << 20);
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kUnavailable, HasSubstr(receiver->address())));
  EXPECT_LT(absl::Now() - start, absl::Seconds(20));
  release.Notify();
}

TEST(UcxTransportTest, DestroyingTheReceiverUnderLoadStopsCleanly) {
  for (size_t payload_bytes : {size_t{1000}, size_t{16} << 20}) {
    SCOPED_TRACE(payload_bytes);
    std::atomic<bool> destroyed{false};
    std::atomic<int> calls_after_destroy{0};
    FrameCollector collector;
    auto receiver_or = ListenUcx(testing::TcpOptions(), "127.0.0.1:0", [&](absl::StatusOr<Frame> item) {
      if (destroyed) ++calls_after_destroy;
      collector.Handler()(std::move(item));
    });
    ASSERT_OK(receiver_or.status());
    auto receiver = *std::move(receiver_or);
    ASSERT_OK_AND_ASSIGN(auto sender, ConnectUcx(testing::TcpOptions(), receiver->address()));
    absl::Status send_status;
    std::thread sending([&] { send_status = SendUntilFailure(*sender, payload_bytes); });
    ASSERT_TRUE(collector.WaitForCount(3, kWait));
    const absl::Time start = absl::Now();
    receiver.reset();
    destroyed = true;
    EXPECT_LT(absl::Now() - start, absl::Seconds(10));
    sending.join();  // ends once the sender notices (bounded by SendUntilFailure)
    EXPECT_THAT(send_status, StatusIs(absl::StatusCode::kUnavailable));
    EXPECT_EQ(calls_after_destroy, 0);
    for (const auto& item : collector.Items()) {
      if (item.ok()) {
        EXPECT_OK(CheckFrame(*item));
      }
    }
  }
}

// ----------------------------------------------------------------------------- hostile TCP

// Connects a plain TCP socket to `port` and writes `bytes`; returns the socket (still open).
int WriteRawTcp(int port, const std::string& bytes) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  EXPECT_GE(fd, 0);
  timeval timeout{.tv_sec = 5, .tv_usec = 0};
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  size_t written = 0;
  for (int i = 0; i < 1000 && written < bytes.size(); ++i) {
    const ssize_t n = send(fd, bytes.data() + written, bytes.size() - written, MSG_NOSIGNAL);
    if (n <= 0) break;  // the receiver may hang up on garbage: fine
    written += static_cast<size_t>(n);
  }
  return fd;
}

TEST(UcxTransportTest, GarbageBytesOnTheListenerPortDoNotCrashOrWedgeTheReceiver) {
  FrameCollector collector;
  auto receiver = MustListen(testing::TcpOptions(), collector);
  ASSERT_NE(receiver, nullptr);
  const int port = PortOf(receiver->address());
  std::mt19937_64 random(20261101);
  std::string noise(64 << 10, '\0');
  for (char& c : noise) c = static_cast<char>(random());
  const std::string zeros(4096, '\0');  // what aborted UCX 1.13's own sockaddr listener
  const std::string all_ones(4096, '\xff');
  const std::string hello = internal::EncodeHandshake(internal::kHelloMagic, {.worker_address = "not a UCX address"});
  std::string corrupt_hello = hello;
  corrupt_hello.back() ^= 1;
  std::string huge_hello = hello.substr(0, internal::kHandshakeHeaderBytes);
  huge_hello[14] = '\x7f';  // claims a 2 GiB worker address
  for (const std::string& bytes : {noise, zeros, all_ones, std::string("GET / HTTP/1.1\r\n\r\n"), corrupt_hello,
                                   huge_hello, hello + "trailing", std::string()}) {
    close(WriteRawTcp(port, bytes));
  }
  // Connections left hanging half-way: a partial hello, a header promising more, silence.
  std::vector<int> open_sockets = {WriteRawTcp(port, hello.substr(0, 5)),
                                   WriteRawTcp(port, hello.substr(0, internal::kHandshakeHeaderBytes + 3)),
                                   WriteRawTcp(port, "")};

  // A proper sender still gets through, while the hostile connections are open and after.
  {
    ASSERT_OK_AND_ASSIGN(auto sender, ConnectUcx(testing::TcpOptions(), receiver->address()));
    ASSERT_OK(sender->Send(MakeFrame(1, 0, 1 << 20)));
    ASSERT_TRUE(collector.WaitForCount(1, kWait));
  }
  for (int fd : open_sockets) close(fd);
  ASSERT_OK_AND_ASSIGN(auto sender, ConnectUcx(testing::TcpOptions(), receiver->address()));
  ASSERT_OK(sender->Send(MakeFrame(2, 0, 1000)));
  ASSERT_TRUE(collector.WaitForCount(2, kWait));
  const auto items = collector.Items();
  ASSERT_EQ(items.size(), 2u);  // garbage never reaches the handler
  ExpectFramesInOrder(items, 1, 1);
  ExpectFramesInOrder(items, 2, 1);
}

TEST(UcxTransportTest, ConnectingToSomethingElseIsUnavailable) {
  // A plain TCP server that answers garbage is not a receiver.
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  ASSERT_EQ(listen(fd, 4), 0);
  socklen_t length = sizeof(address);
  getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  const std::string target = absl::StrCat("127.0.0.1:", ntohs(address.sin_port));
  std::thread server([fd] {
    const int client = accept(fd, nullptr, nullptr);
    if (client < 0) return;
    const std::string reply = "HTTP/1.1 400 Bad Request\r\n\r\n";
    send(client, reply.data(), reply.size(), MSG_NOSIGNAL);
    char buffer[256];
    recv(client, buffer, sizeof(buffer), 0);  // until the sender gives up and closes
    close(client);
  });
  UcxOptions options = testing::TcpOptions();
  options.connect_timeout = absl::Seconds(5);
  EXPECT_THAT(ConnectUcx(options, target),
              StatusIs(absl::StatusCode::kUnavailable, AllOf(HasSubstr(target), HasSubstr("not a UCX"))));
  server.join();
  close(fd);
}

}  // namespace
}  // namespace verdict::transport
