// SPDX-License-Identifier: Apache-2.0
#include "transport/testing/ucx_test_util.h"

#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace verdict::transport::testing {
namespace {

// splitmix64: fast, and different for every (sender, index).
uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

std::string Pattern(int sender, int index, size_t bytes) {
  std::string out(bytes, '\0');
  uint64_t state = Mix((uint64_t(uint32_t(sender)) << 32) | uint32_t(index));
  size_t i = 0;
  for (; i + 8 <= bytes; i += 8) {
    state = Mix(state);
    std::memcpy(out.data() + i, &state, 8);
  }
  state = Mix(state);
  for (; i < bytes; ++i) out[i] = static_cast<char>(state >> (8 * (i % 8)));
  return out;
}

}  // namespace

Frame MakeFrame(int sender, int index, size_t payload_bytes, size_t header_bytes) {
  Frame frame;
  frame.header = absl::StrCat(sender, " ", index, " ", payload_bytes, " ", header_bytes, " ");
  if (frame.header.size() < header_bytes) frame.header += Pattern(-sender, index, header_bytes - frame.header.size());
  frame.payload = Pattern(sender, index, payload_bytes);
  return frame;
}

absl::StatusOr<FrameId> CheckFrame(const Frame& frame) {
  std::vector<std::string> fields = absl::StrSplit(frame.header.substr(0, 80), ' ');
  FrameId id;
  uint64_t payload_bytes = 0, header_bytes = 0;
  if (fields.size() < 5 || !absl::SimpleAtoi(fields[0], &id.sender) || !absl::SimpleAtoi(fields[1], &id.index) ||
      !absl::SimpleAtoi(fields[2], &payload_bytes) || !absl::SimpleAtoi(fields[3], &header_bytes)) {
    return absl::DataLossError(absl::StrCat("unparsable header (", frame.header.size(), " bytes)"));
  }
  const Frame expected = MakeFrame(id.sender, id.index, payload_bytes, header_bytes);
  if (frame.header != expected.header) {
    return absl::DataLossError(absl::StrCat("frame ", id.sender, "/", id.index, ": header differs"));
  }
  if (frame.payload.size() != expected.payload.size()) {
    return absl::DataLossError(absl::StrCat("frame ", id.sender, "/", id.index, ": payload has ",
                                            frame.payload.size(), " bytes, want ", expected.payload.size()));
  }
  if (frame.payload != expected.payload) {
    size_t i = 0;
    while (frame.payload[i] == expected.payload[i]) ++i;
    return absl::DataLossError(absl::StrCat("frame ", id.sender, "/", id.index, ": payload differs at byte ", i));
  }
  return id;
}

FrameHandler FrameCollector::Handler() {
  return [this](absl::StatusOr<Frame> item) {
    absl::MutexLock lock(&mu_);
    items_.push_back(std::move(item));
  };
}

bool FrameCollector::WaitForCount(size_t count, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  const auto enough = [this, count]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return items_.size() >= count; };
  return mu_.AwaitWithTimeout(absl::Condition(&enough), timeout);
}

bool FrameCollector::WaitUntil(const std::function<bool(const std::vector<absl::StatusOr<Frame>>&)>& done,
                               absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  const auto holds = [this, &done]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return done(items_); };
  return mu_.AwaitWithTimeout(absl::Condition(&holds), timeout);
}

std::vector<absl::StatusOr<Frame>> FrameCollector::Items() {
  absl::MutexLock lock(&mu_);
  return items_;
}

size_t FrameCollector::count() {
  absl::MutexLock lock(&mu_);
  return items_.size();
}

UcxOptions TcpOptions() {
  UcxOptions options;
  options.tls = "tcp";
  options.net_devices = "lo";
  options.connect_timeout = absl::Seconds(10);
  options.send_timeout = absl::Seconds(30);
  return options;
}

UcxOptions SharedMemoryOptions() {
  UcxOptions options = TcpOptions();
  options.tls = "posix,sysv,cma,tcp";
  options.peer_failure_detection = false;
  return options;
}

UcxOptions SharedMemoryWithPeerDetectionOptions() {
  UcxOptions options = TcpOptions();
  options.tls = "posix,sysv,cma,tcp";
  return options;
}

UcxOptions OptionsByName(const std::string& name) {
  if (name == "shm") return SharedMemoryOptions();
  if (name == "shm+peer") return SharedMemoryWithPeerDetectionOptions();
  return TcpOptions();
}

}  // namespace verdict::transport::testing
